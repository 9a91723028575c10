"""The memory benchmark's metric (`toy.memory`), the memory world's scripts and the attention-share probe."""

import json

import numpy as np
import pytest
import torch

from diffusers_longvid.attention import ClipMemory, CrossClipKVCacheConfig, rope_frame_offset
from diffusers_longvid.memory import ProbedClipPlan, clip_plan_from_dict
from diffusers_longvid.selection import RecentSelector
from diffusers_longvid.testing import get_tiny_transformer
from diffusers_longvid.toy import COLORS, MEMORY_COLORS, is_reentry, memory_script, render_script_clips
from diffusers_longvid.toy.memory import (
    MemoryBenchmarkConfig,
    format_memory_markdown,
    memory_benchmark_scripts,
    score_memory_video,
    summarise_records,
)


F, K = 17, 5


@pytest.fixture(scope="module")
def scripts():
    return memory_benchmark_scripts(0, MemoryBenchmarkConfig(num_scripts=4))


# ------------------------------------------------------------------ scripts of the memory world
def test_memory_script_layout():
    for seed in range(40):
        script = memory_script(5, seed=seed, clips_after=1)
        assert len(script) == 6
        flags = [f[0] for f in is_reentry(script)]
        assert flags.index(True) == 4 and sum(flags) == 1  # one comeback, in clip num_clips - 1
        visible = [c["objects"][0]["visible"] for c in script]
        assert not visible[3]  # away for at least one whole clip
        assert script[4]["objects"][0]["motion"] in ("enters_left", "enters_right")
        color, shape = script[0]["objects"][0]["color"], script[0]["objects"][0]["shape"]
        assert color in MEMORY_COLORS
        assert color not in script[4]["prompt"] and shape in script[4]["prompt"]
        assert color in script[5]["prompt"]  # named again after the comeback
        named = [c["prompt"] for c, v in zip(script[:4], visible[:4]) if v]
        assert named and all(color in p for p in named)


def test_memory_script_is_deterministic_and_has_late_entries():
    assert memory_script(6, seed=3) == memory_script(6, seed=3)
    motions = [memory_script(6, seed=s)[0]["objects"][0]["visible"] for s in range(60)]
    assert 0 < motions.count(False) < 60  # some scripts start empty and the object enters, named


def test_memory_script_errors():
    with pytest.raises(ValueError, match="num_clips"):
        memory_script(3)
    with pytest.raises(ValueError, match="size_range"):
        memory_script(5, size_range=(0.1, 0.5))
    with pytest.raises(ValueError, match="away_clips"):
        memory_script(5, away_clips=(0, 1))


# ------------------------------------------------------------------ the metric
def test_ground_truth_scores_perfect(scripts):
    for script in scripts:
        truth = render_script_clips(script, F, K)
        summary = summarise_records(score_memory_video(truth.frames, script, F, K))
        assert summary["reentry_clips"] == 1 and summary["named_clips"] >= 2
        for metric in ("named_presence", "named_color", "reentry_presence", "reentry_color"):
            assert summary[metric] == 1.0, metric


def test_colour_swapped_copy_scores_zero_colour(scripts):
    for script in scripts:
        truth = render_script_clips(script, F, K, return_masks=True)
        target = truth.object_colors[0]
        for other in (c for c in MEMORY_COLORS if c != target):
            frames = truth.frames.copy()
            frames[truth.masks[:, 0]] = COLORS[other]
            summary = summarise_records(score_memory_video(frames, script, F, K))
            assert summary["named_color"] == 0.0 and summary["reentry_color"] == 0.0
            assert summary["named_presence"] == 1.0 and summary["reentry_presence"] == 1.0


def test_shifted_copy_keeps_its_colour(scripts):
    for script in scripts:
        truth = render_script_clips(script, F, K)
        for shift in (6, -9):
            frames = np.roll(truth.frames, shift, axis=1)  # drawn in the wrong place
            summary = summarise_records(score_memory_video(frames, script, F, K))
            assert summary["named_color"] == 1.0 and summary["reentry_color"] == 1.0
            assert summary["reentry_presence"] == 1.0


def test_empty_video_scores_absent(scripts):
    script = scripts[0]
    from diffusers_longvid.toy.memory import _background_script

    frames = render_script_clips(_background_script(script), F, K).frames  # the background alone
    records = score_memory_video(frames, script, F, K)
    summary = summarise_records(records)
    assert summary["named_presence"] == 0.0 and summary["reentry_presence"] == 0.0
    assert all(r["color"] is None and not r["color_correct"] for r in records)


def test_score_errors(scripts):
    truth = render_script_clips(scripts[0], F, K)
    with pytest.raises(ValueError, match="frames"):
        score_memory_video(truth.frames[:-1], scripts[0], F, K)
    with pytest.raises(ValueError, match="uint8"):
        score_memory_video(truth.frames.astype(np.float32), scripts[0], F, K)
    with pytest.raises(ValueError, match="palette"):
        score_memory_video(truth.frames, scripts[0], F, K, palette=("black", "white"))
    with pytest.raises(ValueError, match="kv_cache_clips"):
        MemoryBenchmarkConfig(kv_cache_clips=0)


def test_markdown_has_table_and_chance():
    entry = {"mean": 0.5, "std": 0.1, "per_seed": [0.4, 0.6]}
    table = {
        name: dict.fromkeys(("named_presence", "named_color", "reentry_presence", "reentry_color"), entry)
        for name in ("ours", "no-KV")
    }
    report = {
        "config": MemoryBenchmarkConfig().to_dict(),
        "chance": 1 / 6,
        "table": table,
        "attention": {"3": {"object_clips": 0.2, "other_clips": 0.1, "current": 0.7}},
    }
    text = format_memory_markdown(report)
    assert "0.500 ± 0.100" in text and "chance 0.167" in text and "| 3 | 0.200 | 0.100 | 0.700 |" in text


# ------------------------------------------------------------------ the attention-share probe
def _run_clips(memory, transformer, num_clips=4, steps=2):
    """Generate `num_clips` clips as the pipeline does; returns what `end_clip` returned for each."""
    ended = []
    for n in range(num_clips):
        g = torch.Generator().manual_seed(n)
        inputs = {
            "hidden_states": torch.randn(1, 16, 2, 4, 4, generator=g),
            "encoder_hidden_states": torch.randn(1, 8, 32, generator=g),
        }
        memory.begin_clip(n, f"clip {n}")
        with rope_frame_offset(transformer, 2 * n):
            for step in range(steps):
                for branch in ("cond", "uncond"):
                    with memory.branch(branch):
                        transformer(timestep=torch.tensor([900 - 400 * step]), **inputs)
            for branch in ("cond", "uncond"):
                if not memory.stores_current_clip:
                    continue
                with memory.branch(branch), memory.recording():
                    transformer(timestep=torch.tensor([0]), **inputs)
        ended.append(memory.end_clip(n))
    return ended


@torch.no_grad()
def test_attention_shares_sum_to_one_and_match_explicit_softmax():
    transformer = get_tiny_transformer(num_layers=4)
    memory = ClipMemory(
        transformer,
        kv_cache_clips=5,
        clip_selector=RecentSelector(),
        config=CrossClipKVCacheConfig(probe_attention=True),
    )
    memory.plan([f"clip {n}" for n in range(4)])
    ended = _run_clips(memory, transformer)
    plan = memory.plan_summary()
    assert plan[0]["attention"] == {}  # clip 0 attends no history
    # typed: the shares are a field of the entries `end_clip` returned, and survive a JSON round trip
    assert all(isinstance(entry, ProbedClipPlan) for entry in ended) and memory.clip_plans() == ended
    assert [entry.to_dict() for entry in ended] == plan and ended[2].attention == memory.attention_shares(2)
    assert [clip_plan_from_dict(json.loads(json.dumps(entry))) for entry in plan] == ended
    for entry in plan[1:]:
        shares = entry["attention"]
        assert sorted(shares) == list(memory.cache.block_indices)
        for block in shares.values():
            assert sorted(block["history"]) == entry["attends"]
            assert block["forwards"] == 2  # the cond denoising forwards; uncond and recording excluded
            total = sum(block["history"].values()) + block["current"]
            assert total == pytest.approx(1.0, abs=1e-6)
            assert all(0.0 < v < 1.0 for v in block["history"].values())
    memory.close()


@torch.no_grad()
def test_probe_against_hand_computed_softmax():
    from diffusers_longvid.attention.kv_cache import CrossClipKVCache, KVPair

    config = CrossClipKVCacheConfig(blocks=[0], probe_attention=True)
    cache = CrossClipKVCache(config, (0,))
    g = torch.Generator().manual_seed(0)
    hist = [KVPair(torch.randn(1, n, 2, 4, generator=g), torch.randn(1, n, 2, 4, generator=g)) for n in (3, 5)]
    for clip, kv in zip((7, 9), hist):
        cache._pending = {(cache.current_branch, 0): kv}
        cache.commit(clip)
    cache.select([7, 9])
    q, k, v = (torch.randn(1, 4, 2, 4, generator=g) for _ in range(3))
    all_k, _ = cache.attention_kv(0, k, v)
    assert cache.probes_attention
    cache.observe_attention(0, q, all_k, chunk_size=3)  # chunks of 3 queries: 3 + 1
    shares = cache.pop_attention_shares()[0]
    probs = torch.einsum("bshd,bthd->bhst", q, all_k).mul(4**-0.5).softmax(-1)
    expected = [probs[..., :3].sum(-1).mean(), probs[..., 3:8].sum(-1).mean(), probs[..., 8:].sum(-1).mean()]
    assert shares["history"][7] == pytest.approx(float(expected[0]), abs=1e-6)
    assert shares["history"][9] == pytest.approx(float(expected[1]), abs=1e-6)
    assert shares["current"] == pytest.approx(float(expected[2]), abs=1e-6)
    assert cache.pop_attention_shares() == {}  # popped


@torch.no_grad()
def test_probe_off_costs_nothing_and_cache_off_has_no_history_share():
    transformer = get_tiny_transformer(num_layers=4)
    memory = ClipMemory(transformer, kv_cache_clips=5, clip_selector=RecentSelector())
    memory.plan([f"clip {n}" for n in range(3)])
    calls = []
    original = memory.cache.observe_attention
    memory.cache.observe_attention = lambda *a, **k: calls.append(a) or original(*a, **k)
    _run_clips(memory, transformer, num_clips=3)
    assert calls == [] and all("attention" not in e for e in memory.plan_summary())
    memory.close()
    off = ClipMemory(transformer, kv_cache_clips=0, config=CrossClipKVCacheConfig(probe_attention=True))
    assert not off.active and off.attention_shares(1) == {} and off.plan_summary() == []


def test_probe_attention_config_round_trip():
    config = CrossClipKVCacheConfig(probe_attention=True)
    assert CrossClipKVCacheConfig.from_dict(config.to_dict()) == config
    with pytest.raises(TypeError, match="probe_attention"):
        CrossClipKVCacheConfig(probe_attention=1)
