"""`examples/benchmarks/gpu_wan13b.py` at a tiny size on the CPU: it runs end to end, its history attention is exact, and
its FLOP count is the cost model's."""

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from diffusers_longvid.benchmarks.cost_model import (
    VideoShape,
    WanShape,
    flops_per_step,
    pooled_tokens_per_clip,
    selected_tokens_per_clip,
)


ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("gpu_wan13b", ROOT / "examples" / "benchmarks" / "gpu_wan13b.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tiny_inputs(bench, seed=0):
    size = bench.TINY_SIZE
    generator = torch.Generator().manual_seed(seed)
    latent_shape = (1, 16, (size["frames"] - 1) // 4 + 1, size["height"] // 8, size["width"] // 8)
    latents = torch.randn(latent_shape, generator=generator)
    text = torch.randn(1, size["text_len"], bench.TINY_CONFIG["text_dim"], generator=generator)
    tokens = latents.shape[2] * (latents.shape[3] // 2) * (latents.shape[4] // 2)
    return latents, torch.tensor([500.0]), text, tokens


def test_tiny_cpu_run_writes_the_table_and_json(bench, tmp_path, capsys):
    out = tmp_path / "bench.json"
    report = bench.main(["--tiny", "--device", "cpu", "--warmup", "1", "--steps", "2", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "| k | mode | ms / step (median)" in printed
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    assert report["dtype"] == "float32" and report["cfg_branches"] == 2 and report["tokens_per_clip"] == 48
    assert report["cached_blocks"] == [2, 3]
    assert report["flop_source"] == "diffusers_longvid.benchmarks.cost_model"
    runs = [(r["history_clips"], r["history_mode"]) for r in report["results"]]
    assert runs == [(0, "stock"), (5, "prealloc"), (5, "cat"), (5, "compressed")]
    shape = WanShape.from_config(bench.TINY_CONFIG, text_len=16)
    video = VideoShape(64, 64, 9)
    for r in report["results"]:
        assert len(r["ms_per_step"]) == 2 and all(ms > 0 for ms in r["ms_per_step"])
        assert r["peak_gib"] is None  # CPU: no CUDA allocator statistics
        history_tokens = r["history_tokens_per_clip"] or None
        expected = flops_per_step(
            shape, video, r["history_clips"], cached_blocks=2, history_tokens_per_clip=history_tokens
        ).total
        assert r["analytic_tflop_per_step"] * 1e12 == pytest.approx(expected, rel=1e-12)
        assert r["achieved_tflops"] == pytest.approx(expected / (r["ms_per_step_median"] * 1e-3) / 1e12)
    prealloc, cat, compressed = report["results"][1], report["results"][2], report["results"][3]
    # compressed history (default --history-pool 2,2,2 on the 3x4x4 grid): 2*2*2 tokens per clip, the cost model's
    assert compressed["history_tokens_per_clip"] == pooled_tokens_per_clip(shape, video, (2, 2, 2)) == 8
    assert report["history_pool"] == [2, 2, 2]
    assert compressed["history_kv_gib"] * 1024**3 == (5 * 8 + 48) * 32 * 4 * 2 * 2 * 2
    # prealloc holds the history plus a slot for the current clip; cat the history only (fp32, 2 blocks, 2 branches).
    assert cat["history_kv_gib"] * 1024**3 == 5 * 48 * 32 * 4 * 2 * 2 * 2
    assert prealloc["history_kv_gib"] * 1024**3 == 6 * 48 * 32 * 4 * 2 * 2 * 2
    assert prealloc["predicted_ratio_vs_k0"] == pytest.approx(
        flops_per_step(shape, video, 5, 2).total / flops_per_step(shape, video).total
    )


def test_selected_history_runs_with_the_cost_models_token_count(bench, tmp_path):
    report = bench.main(
        ["--tiny", "--device", "cpu", "--warmup", "0", "--steps", "1", "--history-pool", "none"]
        + ["--history-clips", "0,5", "--history-modes", "prealloc", "--history-keep-ratio", "0.25"]
    )
    runs = [(r["history_clips"], r["history_mode"]) for r in report["results"]]
    assert runs == [(0, "stock"), (5, "prealloc"), (5, "selected")]
    selected = report["results"][2]
    shape = WanShape.from_config(bench.TINY_CONFIG, text_len=16)
    assert selected["history_tokens_per_clip"] == selected_tokens_per_clip(shape, VideoShape(64, 64, 9), 0.25) == 12
    # no mask: the history buffer plus the current clip's slot (fp32, 2 blocks, 2 branches, K and V)
    assert selected["history_kv_gib"] * 1024**3 == (5 * 12 + 48) * 32 * 4 * 2 * 2 * 2
    with pytest.raises(SystemExit, match="--history-keep-ratio"):
        bench.main(["--tiny", "--device", "cpu", "--history-keep-ratio", "1.5"])


@pytest.mark.parametrize("mode", ["prealloc", "cat"])
def test_empty_history_reproduces_the_stock_model(bench, mode):
    model = bench.build_model(bench.TINY_CONFIG, torch.device("cpu"), torch.float32)
    latents, timestep, text, tokens = _tiny_inputs(bench)
    with torch.no_grad():
        expected = model(latents, timestep, text, return_dict=False)[0]
        bench.install_history(model, [2, 3], 0, tokens, 1, mode, torch.Generator().manual_seed(0))
        assert isinstance(model.blocks[3].attn1.processor, bench.HistoryKVAttnProcessor)
        got = model(latents, timestep, text, return_dict=False)[0]
        bench.remove_history(model, [2, 3])
        restored = model(latents, timestep, text, return_dict=False)[0]
    assert torch.equal(got, expected)  # same projections, same SDPA call: bit-identical
    assert torch.equal(restored, expected)


def test_history_attention_is_attention_over_the_concatenation(bench):
    model = bench.build_model(bench.TINY_CONFIG, torch.device("cpu"), torch.float32)
    attn = model.blocks[3].attn1
    generator = torch.Generator().manual_seed(1)
    hidden = torch.randn(1, 12, 32, generator=generator)
    cos, sin = torch.randn(1, 12, 1, 16, generator=generator), torch.randn(1, 12, 1, 16, generator=generator)
    history_k = [torch.randn(1, 20, 2, 16, generator=generator) for _ in range(2)]
    history_v = [torch.randn(1, 20, 2, 16, generator=generator) for _ in range(2)]

    # Reference, written out: softmax(q [K_h; K]^T / sqrt(d)) [V_h; V] for the selected branch.
    with torch.no_grad():
        q = bench._apply_rotary_emb(attn.norm_q(attn.to_q(hidden)).unflatten(2, (2, -1)), cos, sin)
        k = bench._apply_rotary_emb(attn.norm_k(attn.to_k(hidden)).unflatten(2, (2, -1)), cos, sin)
        v = attn.to_v(hidden).unflatten(2, (2, -1))
        keys, values = torch.cat([history_k[1], k], 1), torch.cat([history_v[1], v], 1)
        scores = torch.einsum("bqhd,bkhd->bhqk", q, keys) / math.sqrt(16)
        out = torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), values).flatten(2, 3)
        reference = attn.to_out[0](out)

        outputs = {}
        for mode in ("prealloc", "cat"):
            branch = bench.BranchSelector()
            processor = bench.HistoryKVAttnProcessor(history_k, history_v, branch, 12, mode)
            branch.index = 1
            outputs[mode] = processor(attn, hidden, rotary_emb=(cos, sin))
            branch.index = 0
            other = processor(attn, hidden, rotary_emb=(cos, sin))
        attn.fuse_projections()
        fused = processor(attn, hidden, rotary_emb=(cos, sin))
    for got in outputs.values():
        torch.testing.assert_close(got, reference, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(other, reference)  # branch 0 reads its own history
    torch.testing.assert_close(fused, other, rtol=1e-5, atol=1e-5)  # fused QKV is honoured
    with pytest.raises(ValueError, match="`mode`"):
        bench.HistoryKVAttnProcessor(history_k, history_v, bench.BranchSelector(), 12, "copy")


@pytest.mark.parametrize("full_size", [False, True])
@pytest.mark.parametrize("history_clips", [0, 1, 5])
def test_inline_flop_formula_matches_the_cost_model(bench, full_size, history_clips):
    config = bench.WAN21_T2V_1_3B_CONFIG if full_size else bench.TINY_CONFIG
    size = bench.FULL_SIZE if full_size else bench.TINY_SIZE
    shape = WanShape.from_config(config, text_len=size["text_len"])
    video = VideoShape(size["height"], size["width"], size["frames"])
    blocks = config["num_layers"] // 2
    expected = flops_per_step(shape, video, history_clips, blocks, cfg=False).total
    assert bench._inline_flops_per_forward(config, size, history_clips, blocks) == expected
    assert bench.analytic_flops_per_step(config, size, history_clips, blocks, True)[0] == 2 * expected


def test_bad_arguments_exit(bench):
    with pytest.raises(SystemExit):
        bench.main(["--tiny", "--device", "cpu", "--history-modes", "copy"])
    with pytest.raises(SystemExit):
        bench.main(["--tiny", "--device", "cpu", "--cached-blocks", "7"])
    with pytest.raises(SystemExit):
        bench.main(["--tiny", "--device", "cpu", "--history-clips", "-1"])
