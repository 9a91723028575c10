"""The analytic cost model against a hand count, against torch's FLOP counter on real modules, and against the
bytes of real K/V tensors."""

import importlib.util
from pathlib import Path

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from diffusers_longvid.benchmarks.cost_model import (
    FlopBreakdown,
    VideoShape,
    WanShape,
    cost_table,
    flop_breakdown_table,
    flops_per_clip,
    flops_per_forward,
    flops_per_step,
    kv_bytes_per_history_clip,
    lower_bound_time_per_clip,
    markdown_table,
    predicted_history_overhead_ratio,
    recording_forward_flops,
    tokens_per_clip,
    wan21_t2v_1_3b,
)


ROOT = Path(__file__).resolve().parents[2]
WAN_480P = VideoShape(height=480, width=832, frames=81)


def _load_bench_script():
    spec = importlib.util.spec_from_file_location("gpu_wan13b", ROOT / "examples" / "benchmarks" / "gpu_wan13b.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _wan13b_config():
    from diffusers import WanTransformer3DModel

    with torch.device("meta"):
        return WanTransformer3DModel(**_load_bench_script().WAN21_T2V_1_3B_CONFIG)


def _count(model, *inputs):
    # The math SDPA backend is made of `bmm`s that FlopCounterMode counts (the fused CPU kernel is not counted).
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(*inputs, return_dict=False)
    per_op = {str(op): flops for op, flops in counter.get_flop_counts()["Global"].items()}
    return counter.get_total_flops(), per_op


# A tiny shape small enough to count by hand: dim 8 (2 heads x 4), ffn 16, 2 layers, text 3 tokens of width 6,
# 4 latent channels, patch (1, 2, 2); a 32x32, 5-frame clip -> latents 2x4x4 -> N = 2*2*2 = 8 tokens.
HAND_SHAPE = WanShape(
    dim=8,
    heads=2,
    head_dim=4,
    ffn_dim=16,
    num_layers=2,
    text_dim=6,
    text_len=3,
    in_channels=4,
    out_channels=4,
    freq_dim=8,
)
HAND_VIDEO = VideoShape(height=32, width=32, frames=5)


def test_hand_count_of_a_tiny_shape():
    assert tokens_per_clip(HAND_SHAPE, HAND_VIDEO) == 8
    flops = flops_per_forward(HAND_SHAPE, HAND_VIDEO, history_clips=2)
    # 2 layers x 6 linears (q, k, v, out of attn1; q, out of attn2) x 2 x 8 tokens x 8 x 8
    assert flops.projections == 2 * 6 * 2 * 8 * 8 * 8 == 12288
    # 2 layers x 2 linears (k, v of attn2) x 2 x 3 text tokens x 8 x 8
    assert flops.text_projections == 1536
    # 2 layers x (up 8->16 and down 16->8) x 2 x 8 tokens
    assert flops.ffn == 2 * 2 * 2 * 8 * 8 * 16 == 8192
    # 2 layers x (QK^T and PV) x 2 x 8 queries x 8 keys x 8 channels
    assert flops.self_attention == 4096
    # 2 layers x 2 x 2 x 8 queries x 3 text keys x 8
    assert flops.cross_attention == 1536
    # 1 cached block (the latter half of 2) x 2 x 2 x 8 queries x (2 clips x 8) keys x 8
    assert flops.history_attention == 4096
    # patch embedding 2*8*(4*1*2*2)*8 = 2048; time embedder 2*(8*8 + 8*8) = 256; time_proj 2*8*48 = 768;
    # text embedder 2*3*(6*8 + 8*8) = 672; proj_out 2*8*8*(4*1*2*2) = 2048
    assert flops.embeddings == 2048 + 256 + 768 + 672 + 2048 == 5792
    assert flops.total == 12288 + 1536 + 8192 + 4096 + 1536 + 4096 + 5792
    assert flops_per_step(HAND_SHAPE, HAND_VIDEO, history_clips=2).total == 2 * flops.total
    assert flops_per_step(HAND_SHAPE, HAND_VIDEO, history_clips=2, cfg=False) == flops


def test_wan21_constant_matches_a_real_1_3b_transformer_config():
    model = _wan13b_config()
    assert WanShape.from_config(model.config) == wan21_t2v_1_3b()
    assert wan21_t2v_1_3b().num_parameters() == sum(p.numel() for p in model.parameters()) == 1_418_996_800
    assert wan21_t2v_1_3b().default_cached_blocks == tuple(range(15, 30))
    assert tokens_per_clip(wan21_t2v_1_3b(), WAN_480P) == 21 * 30 * 52 == 32760


@pytest.mark.parametrize("in_channels", [16, 36])
def test_matches_flop_counter_on_a_tiny_real_transformer(in_channels):
    from diffusers_longvid.testing import get_tiny_transformer

    # Non-square latents (3 x 6 x 8) and an odd text length catch a swapped height/width or token count.
    model = get_tiny_transformer(in_channels=in_channels, num_layers=3)
    video = VideoShape(height=48, width=64, frames=9)
    text_len = 7
    shape = WanShape.from_config(model.config, text_len=text_len)
    assert shape.num_parameters() == sum(p.numel() for p in model.parameters())
    latents = torch.randn(1, in_channels, video.latent_frames, video.latent_height, video.latent_width)
    total, per_op = _count(model, latents, torch.tensor([500]), torch.randn(1, text_len, model.config.text_dim))
    analytic = flops_per_forward(shape, video)
    # Matmul FLOPs only, on both sides, so the counts agree exactly (no tolerance needed).
    assert total == analytic.total
    assert per_op["aten.bmm"] == analytic.self_attention + analytic.cross_attention
    n, d = tokens_per_clip(shape, video), shape.dim
    assert per_op["aten.convolution"] == 2 * n * in_channels * 4 * d


def test_matches_flop_counter_on_the_full_size_1_3b_at_480p():
    # The real 1.3B module on the meta device: torch counts every op at full size without computing anything.
    model = _wan13b_config()
    latents = torch.empty(1, 16, 21, 60, 104, device="meta")
    text = torch.empty(1, 512, 4096, device="meta")
    total, _ = _count(model, latents, torch.tensor([500], device="meta"), text)
    assert total == flops_per_forward(wan21_t2v_1_3b(), WAN_480P).total == 283_001_787_777_024


@pytest.mark.parametrize("history_clips", [1, 3])
def test_history_attention_flops_match_flop_counter(history_clips):
    bench = _load_bench_script()
    from diffusers_longvid.testing import get_tiny_transformer

    model = get_tiny_transformer(num_layers=4)
    video = VideoShape(height=32, width=48, frames=5)
    shape = WanShape.from_config(model.config, text_len=5)
    n = tokens_per_clip(shape, video)
    cached = shape.default_cached_blocks
    bench.install_history(model, cached, history_clips, n, 1, "prealloc", torch.Generator().manual_seed(0))
    latents = torch.randn(1, 16, video.latent_frames, video.latent_height, video.latent_width)
    total, _ = _count(model, latents, torch.tensor([500]), torch.randn(1, 5, model.config.text_dim))
    assert total == flops_per_forward(shape, video, history_clips=history_clips, cached_blocks=cached).total


def test_history_cost_is_linear_in_k_and_the_only_term_that_grows():
    shape = wan21_t2v_1_3b()
    base = flops_per_forward(shape, WAN_480P)
    one = flops_per_forward(shape, WAN_480P, history_clips=1)
    assert base.history_attention == 0
    for k in (2, 5, 30):
        flops = flops_per_forward(shape, WAN_480P, history_clips=k)
        assert flops.history_attention == k * one.history_attention
        assert flops.total - base.total == k * one.history_attention
        assert flops.self_attention == base.self_attention and flops.ffn == base.ffn
    # 15 cached blocks of 4*N*N*dim each, for one full history clip.
    n = 32760
    assert one.history_attention == 15 * 4 * n * n * 1536
    # Fewer cached blocks or subsampled history frames scale it down proportionally.
    assert flops_per_forward(shape, WAN_480P, 1, cached_blocks=5).history_attention == one.history_attention / 3
    half = flops_per_forward(shape, WAN_480P, 1, history_tokens_per_clip=n // 2)
    assert half.history_attention == one.history_attention / 2
    assert flops_per_forward(shape, WAN_480P, 1, cached_blocks=[0, 29]) == flops_per_forward(
        shape, WAN_480P, 1, cached_blocks=2
    )


def test_flop_breakdown_arithmetic():
    a = FlopBreakdown(projections=1.0, ffn=2.0)
    b = FlopBreakdown(ffn=3.0, embeddings=4.0)
    assert (a + b) == FlopBreakdown(projections=1.0, ffn=5.0, embeddings=4.0)
    assert (a + b).as_dict()["total"] == 10.0
    assert (2 * a).total == (a * 2).total == 6.0


def test_kv_bytes_match_the_real_k_v_of_a_tiny_model():
    bench = _load_bench_script()
    from diffusers.models.transformers.transformer_wan import WanAttnProcessor

    class Capture(WanAttnProcessor):
        # Records the K (after norm_k and RoPE) and V that the stock processor attends over.
        def __init__(self, store):
            super().__init__()
            self.store = store

        def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
            key = attn.norm_k(attn.to_k(hidden_states)).unflatten(2, (attn.heads, -1))
            key = bench._apply_rotary_emb(key, *rotary_emb)
            value = attn.to_v(hidden_states).unflatten(2, (attn.heads, -1))
            self.store += [key, value]
            return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)

    config = {**bench.TINY_CONFIG, "num_layers": 4}
    model = bench.build_model(config, torch.device("cpu"), torch.bfloat16)
    video = VideoShape(height=32, width=48, frames=9)
    shape = WanShape.from_config(model.config, text_len=6)
    store = []
    for index in shape.default_cached_blocks:
        model.blocks[index].attn1.set_processor(Capture(store))
    latents = torch.randn(1, 16, video.latent_frames, video.latent_height, video.latent_width, dtype=torch.bfloat16)
    with torch.no_grad():
        for _ in ("cond", "uncond"):
            model(latents, torch.tensor([0.0]), torch.randn(1, 6, 32, dtype=torch.bfloat16), return_dict=False)
    assert all(t.dtype == torch.bfloat16 for t in store)
    measured = sum(t.numel() * t.element_size() for t in store)
    kv = kv_bytes_per_history_clip(shape, video, dtype_bytes=2)
    assert (kv.num_cached_blocks, kv.branches) == (2, 2)
    assert measured == kv.total == 2 * kv.per_branch
    assert store[0].numel() * 2 * 2 == kv.per_block  # K and V of one block, one branch
    assert kv_bytes_per_history_clip(shape, video, cfg=False).total == kv.per_branch


def test_kv_bytes_of_wan_1_3b_at_480p():
    kv = kv_bytes_per_history_clip(wan21_t2v_1_3b(), WAN_480P)
    assert kv.per_block == 2 * 32760 * 1536 * 2
    assert kv.per_branch == 15 * kv.per_block
    assert kv.total == 2 * kv.per_branch
    assert kv_bytes_per_history_clip(wan21_t2v_1_3b(), WAN_480P, dtype_bytes=4).total == 2 * kv.total


def test_lower_bound_is_the_roofline_of_the_counted_flops_and_bytes():
    shape, steps = wan21_t2v_1_3b(), 50
    cost = lower_bound_time_per_clip(shape, WAN_480P, steps, history_clips=5)
    flops = flops_per_clip(shape, WAN_480P, steps, history_clips=5)
    assert cost.flops == flops
    assert cost.forwards == 2 * steps + 2
    assert cost.compute_seconds == pytest.approx(flops.total / 790e12)
    kv = kv_bytes_per_history_clip(shape, WAN_480P)
    weights = shape.num_parameters() * 2
    assert cost.bytes_moved == 102 * weights + 100 * 5 * kv.per_branch + kv.total
    assert cost.memory_seconds == pytest.approx(cost.bytes_moved / 4.3e12)
    assert cost.seconds == max(cost.compute_seconds, cost.memory_seconds) and cost.bound == "compute"
    assert cost.kv_bytes_held == 5 * kv.total
    # A machine with unlimited compute is memory-bound.
    fast = lower_bound_time_per_clip(shape, WAN_480P, steps, peak_tflops=1e12)
    assert fast.bound == "memory" and fast.seconds == fast.memory_seconds
    # Recording during the last step instead: no extra forwards, no flops beyond the denoising steps.
    last_step = lower_bound_time_per_clip(shape, WAN_480P, steps, recording_forward=False)
    assert last_step.forwards == 100
    assert last_step.flops == flops_per_step(shape, WAN_480P, 5) * steps
    assert recording_forward_flops(shape, WAN_480P) == flops_per_forward(shape, WAN_480P) * 2


def test_predicted_overhead_ratio():
    shape, video = WanShape.from_config(_load_bench_script().TINY_CONFIG, text_len=16), VideoShape(64, 64, 9)
    per_forward = predicted_history_overhead_ratio(shape, video, 5)
    assert per_forward == flops_per_forward(shape, video, 5).total / flops_per_forward(shape, video).total
    steps = 4
    per_clip = predicted_history_overhead_ratio(shape, video, 5, steps=steps)
    base = flops_per_forward(shape, video).total
    assert per_clip == pytest.approx((steps * flops_per_forward(shape, video, 5).total + base) / (steps * base))
    assert predicted_history_overhead_ratio(shape, video, 5, steps=steps, recording_forward=False) == pytest.approx(
        per_forward
    )
    assert predicted_history_overhead_ratio(shape, video, 0) == 1.0


def test_cost_table_rows_and_markdown():
    rows = cost_table(wan21_t2v_1_3b(), WAN_480P, steps=50, history_clips=(0, 5))
    assert [r["history clips k"] for r in rows] == [0, 5]
    assert rows[0]["× plain chaining"] == 1.0 and rows[0]["K/V held (GiB)"] == 0 and rows[0]["forwards / clip"] == 100
    assert rows[1]["× plain chaining"] > 1 and rows[1]["forwards / clip"] == 102
    table = markdown_table(rows)
    assert table.splitlines()[0].startswith("| history clips k | TFLOP / step")
    assert len(table.splitlines()) == 4
    breakdown = flop_breakdown_table(wan21_t2v_1_3b(), WAN_480P, 5)
    assert breakdown[-1]["component"] == "total" and breakdown[-1]["share, k = 5"] == 1.0
    with pytest.raises(ValueError, match="`rows`"):
        markdown_table([])


def test_docs_hold_the_current_markdown_output(capsys):
    from diffusers_longvid.cli import main

    assert main(["cost-model", "--markdown"]) == 0
    generated = capsys.readouterr().out.strip()
    assert "**32,760 tokens**" in generated
    docs = (ROOT / "docs" / "performance.md").read_text()
    assert "longvid cost-model --markdown" in docs
    assert generated in docs, "docs/performance.md is stale: paste the output of the command above"


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: VideoShape(480, 830, 81), "`height` and `width`"),
        (lambda: VideoShape(480, 832, 80), "`frames - 1`"),
        (lambda: VideoShape(0, 832, 81), "`height`"),
        (lambda: WanShape(dim=10, heads=2, head_dim=4, ffn_dim=8, num_layers=2, text_dim=4), "`dim` must equal"),
        (lambda: WanShape(8, 2, 4, 8, 2, 4, patch_size=(1, 2)), "`patch_size`"),
        (lambda: WanShape.from_config({"image_dim": 1280, "added_kv_proj_dim": 5120}), "`image_dim`"),
        (lambda: tokens_per_clip(WanShape(8, 2, 4, 8, 2, 4, patch_size=(1, 3, 3)), HAND_VIDEO), "`patch_size`"),
        (lambda: flops_per_forward(HAND_SHAPE, HAND_VIDEO, history_clips=-1), "`history_clips`"),
        (lambda: flops_per_forward(HAND_SHAPE, HAND_VIDEO, 1, cached_blocks=3), "`cached_blocks`"),
        (lambda: flops_per_forward(HAND_SHAPE, HAND_VIDEO, 1, cached_blocks=[1, 1]), "`cached_blocks`"),
        (lambda: flops_per_forward(HAND_SHAPE, HAND_VIDEO, 1, history_tokens_per_clip=0), "`history_tokens_per"),
        (lambda: flops_per_clip(HAND_SHAPE, HAND_VIDEO, steps=0), "`steps`"),
        (lambda: kv_bytes_per_history_clip(HAND_SHAPE, HAND_VIDEO, dtype_bytes=0), "`dtype_bytes`"),
        (lambda: lower_bound_time_per_clip(HAND_SHAPE, HAND_VIDEO, 4, peak_tflops=0), "`peak_tflops`"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(make, match):
    with pytest.raises(ValueError, match=match):
        make()
