"""ClipMemory: the pipeline-facing clip loop, constant memory, causality and record modes."""

from collections.abc import Sequence
from contextlib import nullcontext

import pytest
import torch
from diffusers.models.transformers.transformer_wan import WanAttnProcessor

from diffusers_longvid.attention import ClipMemory, CrossClipKVCacheConfig, get_cross_clip_kv_cache, rope_frame_offset
from diffusers_longvid.selection import ClipPlan, ClipSelector, RecentSelector
from diffusers_longvid.testing import get_tiny_transformer


class WordOverlapSelector(ClipSelector):
    """Deterministic fake: Jaccard overlap of the prompts' word sets."""

    config_type = "word_overlap"
    tolerance = 0.0

    def scores(self, query_prompt: str, candidate_prompts: Sequence[str], candidate_ids: Sequence[int]) -> list[float]:
        q = set(query_prompt.split())
        return [len(q & set(c.split())) / len(q | set(c.split())) for c in candidate_prompts]

    def to_config(self):
        return {"type": self.config_type}


TOPICS = ["a red car drives", "a cat sleeps", "a bird flies high", "waves hit the rocks", "a dog runs", "snow falls"]


def make_inputs(clip: int, frames: int = 2, size: int = 4) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(clip)
    return {
        "hidden_states": torch.randn(1, 16, frames, size, size, generator=g),
        "encoder_hidden_states": torch.randn(1, 8, 32, generator=g),
    }


def generate_clip(memory, transformer, n, prompt, inputs, offset, steps=2, ended=None):
    """What the pipeline does for one clip (two CFG branches, `steps` denoising forwards, then recording); the clip's
    `ClipPlan` (what `end_clip` returns) is appended to `ended` if given."""
    attended = memory.begin_clip(n, prompt)
    outputs = {}
    with rope_frame_offset(transformer, offset):
        for step in range(steps):
            last = step == steps - 1
            for branch in ("cond", "uncond"):
                record = memory.recording() if (last and memory.record_from_last_step) else nullcontext()
                with memory.branch(branch), record:
                    outputs[branch] = transformer(timestep=torch.tensor([900 - 400 * step]), **inputs).sample
        if not memory.record_from_last_step and memory.stores_current_clip:
            for branch in ("cond", "uncond"):
                with memory.branch(branch), memory.recording():
                    transformer(timestep=torch.tensor([0]), **inputs)
    entry = memory.end_clip(n)
    if ended is not None:
        ended.append(entry)
    return attended, outputs


@pytest.fixture(scope="module")
def transformer():
    return get_tiny_transformer(num_layers=4)


@pytest.mark.parametrize("streaming", [False, True], ids=["offline", "streaming"])
@torch.no_grad()
def test_constant_memory_over_30_clips(transformer, streaming):
    prompts = [TOPICS[(n * 7 + n // 4) % len(TOPICS)] + (" again" if n % 3 == 0 else "") for n in range(30)]
    memory = ClipMemory(transformer, kv_cache_clips=5, max_cached_clips=5, clip_selector=WordOverlapSelector())
    memory.plan(None if streaming else prompts)
    # 2 latent frames of 2x2 patches = 8 tokens, 2 heads x 12 dims, fp32: K and V per block per branch.
    per_clip_bytes = 2 * 8 * 24 * 4 * len(memory.cache.block_indices) * 2
    held_before: list[int] = []
    ended = []
    for n, prompt in enumerate(prompts):
        attended, _ = generate_clip(memory, transformer, n, prompt, make_inputs(n), offset=2 * n, ended=ended)
        assert set(attended) <= set(held_before) and len(attended) <= 5
        held = memory.stored_clips()
        assert len(held) <= 5
        assert memory.cache.num_tensors() == len(held) * 2 * len(memory.cache.block_indices) * 2
        assert memory.kv_bytes() == len(held) * per_clip_bytes
        held_before = held
    summary = memory.plan_summary()
    assert [s["clip"] for s in summary] == list(range(30))
    assert set(summary[0]) == {"clip", "prompt", "attends", "stored", "evicted"}
    # typed: `end_clip` returns each clip's `ClipPlan`, `clip_plans()` all of them, `plan_summary()` their dicts
    plans = memory.clip_plans()
    assert all(type(entry) is ClipPlan for entry in plans) and [e.to_dict() for e in plans] == summary
    assert [entry.clip for entry in ended] == list(range(30)) and ended == plans
    if streaming:
        assert all(len(s["attends"]) == min(n, 5) for n, s in enumerate(summary))
    else:
        assert memory.storage_plan.max_held <= 5 and not summary[-1]["stored"]
    memory.close()
    assert get_cross_clip_kv_cache(transformer) is None
    assert all(type(b.attn1.processor) is WanAttnProcessor for b in transformer.blocks)


@pytest.mark.parametrize("record_mode", ["clean", "last_step"])
@torch.no_grad()
def test_causality_later_clips_never_change_earlier_kv(transformer, record_mode):
    config = CrossClipKVCacheConfig(record_mode=record_mode)

    def run_video(inputs_per_clip):
        memory = ClipMemory(transformer, kv_cache_clips=2, clip_selector=RecentSelector(), config=config)
        memory.plan(None)
        snapshots = []
        for n, inputs in enumerate(inputs_per_clip):
            generate_clip(memory, transformer, n, f"clip {n}", inputs, offset=2 * n)
            snapshots.append({b: memory.cache.get(n, b, "cond").key.clone() for b in memory.cache.block_indices})
            # Everything stored earlier is unchanged by this clip (nothing writes into stored K/V).
            for m in memory.stored_clips():
                for b, key in snapshots[m].items():
                    assert torch.equal(memory.cache.get(m, b, "cond").key, key)
        memory.close()
        return snapshots

    a = run_video([make_inputs(0), make_inputs(1), make_inputs(2)])
    b = run_video([make_inputs(0), make_inputs(1), make_inputs(7)])  # a different clip 2
    c = run_video([make_inputs(5), make_inputs(1), make_inputs(2)])  # a different clip 0
    for block in a[0]:
        assert torch.equal(a[0][block], b[0][block]) and torch.equal(a[1][block], b[1][block])
        assert not torch.equal(a[2][block], b[2][block])
    # "clean": a clip's K/V depend on that clip alone. "last_step": recorded while attending its history, so the
    # keys of block 3 (whose input passed through block 2's history attention) depend on clip 0; block 2's do not.
    assert torch.equal(a[1][2], c[1][2])
    assert torch.equal(a[1][3], c[1][3]) == (record_mode == "clean")


@torch.no_grad()
def test_recording_attends_history_only_in_last_step_mode(transformer):
    for mode, attends_while_recording in [("clean", False), ("last_step", True)]:
        memory = ClipMemory(
            transformer,
            kv_cache_clips=1,
            clip_selector=RecentSelector(),
            config=CrossClipKVCacheConfig(record_mode=mode),
        )
        assert memory.record_from_last_step == (mode == "last_step")
        memory.plan(["first", "second", "third"])
        generate_clip(memory, transformer, 0, "first", make_inputs(0), offset=0)
        assert memory.begin_clip(1, "second") == [0]
        inputs = make_inputs(1)
        with rope_frame_offset(transformer, 2):
            with_history = transformer(timestep=torch.tensor([0]), **inputs).sample
            assert memory.stores_current_clip
            with memory.recording():
                recorded = transformer(timestep=torch.tensor([0]), **inputs).sample
        assert torch.equal(recorded, with_history) == attends_while_recording
        memory.end_clip(1)
        assert memory.begin_clip(2, "third") == [1]
        assert not memory.stores_current_clip  # the last clip is never used again
        with memory.recording():  # so recording is a no-op
            transformer(timestep=torch.tensor([0]), **make_inputs(2))
        assert not memory.cache.has_pending
        memory.end_clip(2)
        assert memory.stored_clips() == []
        memory.close()


@torch.no_grad()
def test_misuse_raises_and_inactive_memory_is_a_no_op(transformer):
    memory = ClipMemory(transformer, kv_cache_clips=2, clip_selector=RecentSelector())
    memory.plan(["a", "b", "c"])
    with pytest.raises(ValueError, match="`clip_index` must be 0"):
        memory.begin_clip(1, "b")
    with pytest.raises(ValueError, match="differs from the planned"):
        memory.begin_clip(0, "not a")
    memory.begin_clip(0, "a")
    with pytest.raises(RuntimeError, match="no K/V were recorded"):
        memory.end_clip(0)
    memory.close()
    memory.close()

    # An unclosed memory is replaced, not shared: its stored clips cannot leak into a new video.
    first = ClipMemory(transformer, kv_cache_clips=1, clip_selector=RecentSelector())
    generate_clip(first, transformer, 0, "a", make_inputs(0), offset=0)
    second = ClipMemory(transformer, kv_cache_clips=1, clip_selector=RecentSelector())
    assert second.stored_clips() == [] and second.begin_clip(0, "a") == []
    second.close()
    assert all(type(b.attn1.processor) is WanAttnProcessor for b in transformer.blocks)

    with pytest.raises(ValueError, match="`kv_cache_clips`"):
        ClipMemory(transformer, kv_cache_clips=-1)
    with pytest.raises(TypeError, match="`clip_selector`"):
        ClipMemory(transformer, clip_selector="recent")
    inactive = ClipMemory(transformer, kv_cache_clips=0)
    assert not inactive.active and get_cross_clip_kv_cache(transformer) is None
    inactive.plan(["a"])
    assert inactive.begin_clip(0, "a") == []
    with inactive.branch("uncond"), inactive.recording():
        pass
    assert inactive.end_clip(0) is None
    assert inactive.plan_summary() == [] and inactive.clip_plans() == [] and inactive.kv_bytes() == 0
    with ClipMemory(transformer, kv_cache_clips=1, clip_selector=RecentSelector()) as scoped:
        assert scoped.active
    assert not scoped.active and get_cross_clip_kv_cache(transformer) is None
