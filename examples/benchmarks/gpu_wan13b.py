# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""Real-size timing of Wan2.1-T2V-1.3B with and without cross-clip history attention (issue 7, part 4).

Builds a `WanTransformer3DModel` with the Wan2.1-T2V-1.3B config and **random weights** (timing does not depend on
the weights; nothing is downloaded), in bf16 like `from_pretrained(dtype=torch.bfloat16)` (the model's
`_keep_in_fp32_modules` stay fp32), and times denoising steps at 480p / 81 frames (32,760 tokens):

- `k = 0`: the stock model and its `WanAttnProcessor` (plain clip chaining);
- `k > 0`: the self-attention of the cached blocks (the latter half by default) attends to `k` history clips of
  random, preallocated K/V per CFG branch, through `HistoryKVAttnProcessor` defined in this file.

The history processor is this script's own plain-torch one, not the package's: it keeps the script self-contained
(it runs from a bare copy with only torch and diffusers) and independent of how the package's cache is built. Two
ways of joining history and current K/V are timed: `prealloc` (the history is written once into a buffer with room
for the current clip, whose K/V are copied into its tail at each call) and `cat` (`torch.cat` at every call). A
third, `compressed`, is `prealloc` with the token count of compressed history (`--history-pool`, default 2,2,2:
`CrossClipKVCacheConfig(history_pool=(2, 2, 2))`, 4,290 tokens per history clip at 480p instead of 32,760), with
the additive `(1, 1, 1, keys)` mask of its proportional attention (`log 8` on the history keys), since a mask changes
which SDPA kernel runs; the attention cost depends on the token count only, so random K/V of that length time it.

Each step is one forward per CFG branch (two with guidance, as `WanPipeline` runs them), timed with CUDA events
after warm-up steps. The table gives ms per step, peak GiB allocated, and achieved TFLOP/s against the analytic
matmul FLOPs of `diffusers_longvid.benchmarks.cost_model` (a copy of its formula is used where the package cannot
be imported). Run on a GPU (about 2-4 minutes on an H200):

    python examples/benchmarks/gpu_wan13b.py --out gpu_wan13b.json

and on a CPU at a tiny size (what the test suite does):

    python examples/benchmarks/gpu_wan13b.py --tiny --device cpu --out tiny.json
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F


# Wan2.1-T2V-1.3B, as in diffusers' scripts/convert_wan_to_diffusers.py ("Wan-T2V-1.3B").
WAN21_T2V_1_3B_CONFIG: dict[str, Any] = {
    "patch_size": (1, 2, 2),
    "num_attention_heads": 12,
    "attention_head_dim": 128,
    "in_channels": 16,
    "out_channels": 16,
    "text_dim": 4096,
    "freq_dim": 256,
    "ffn_dim": 8960,
    "num_layers": 30,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
}
# Same structure, a few hundred thousand parameters, for CPU tests.
TINY_CONFIG: dict[str, Any] = {
    **WAN21_T2V_1_3B_CONFIG,
    "num_attention_heads": 2,
    "attention_head_dim": 16,
    "text_dim": 32,
    "ffn_dim": 64,
    "num_layers": 4,
    "rope_max_seq_len": 64,
}
FULL_SIZE = {"height": 480, "width": 832, "frames": 81, "text_len": 512}
TINY_SIZE = {"height": 64, "width": 64, "frames": 9, "text_len": 16}
VAE_SPATIAL, VAE_TEMPORAL = 8, 4
_GIB = 1024**3


def _apply_rotary_emb(hidden_states: torch.Tensor, freqs_cos: torch.Tensor, freqs_sin: torch.Tensor) -> torch.Tensor:
    # Identical to the rotation inside diffusers' `WanAttnProcessor`.
    x1, x2 = hidden_states.unflatten(-1, (-1, 2)).unbind(-1)
    cos = freqs_cos[..., 0::2]
    sin = freqs_sin[..., 1::2]
    out = torch.empty_like(hidden_states)
    out[..., 0::2] = x1 * cos - x2 * sin
    out[..., 1::2] = x1 * sin + x2 * cos
    return out.type_as(hidden_states)


class BranchSelector:
    """Which CFG branch's history the processors read; the benchmark loop sets `index` before each forward."""

    def __init__(self) -> None:
        self.index = 0


class HistoryKVAttnProcessor:
    r"""
    Self-attention whose queries attend to `[K_history, K_current]` (bidirectional, no mask), for the benchmark.

    Projections, `norm_q`/`norm_k` and RoPE are those of diffusers' `WanAttnProcessor` (fused QKV honoured); with
    no history it returns the stock output.

    Args:
        history_keys (`list[torch.Tensor]`), history_values (`list[torch.Tensor]`):
            Per CFG branch, the history K and V, shape `(batch, history_tokens, heads, head_dim)`.
        branch (`BranchSelector`): Selects the branch read at each call.
        current_tokens (`int`): Tokens of the current clip (the tail of the preallocated buffers).
        mode (`str`, *optional*, defaults to `"prealloc"`):
            `"prealloc"`: history copied once into buffers with room for the current K/V, which each call writes
            into the tail; `"cat"`: `torch.cat([history, current])` at every call.
        history_bias (`float`, *optional*): Added to the logits of every history key, as an additive
            `(1, 1, 1, keys)` attention mask: the proportional attention of compressed history (`log` of the tokens
            a pooled key stands for, `CrossClipKVCacheConfig(proportional_attention=True)`), which makes SDPA pick a
            kernel that takes a mask. `None`: no mask (dense history).
    """

    def __init__(
        self,
        history_keys: list[torch.Tensor],
        history_values: list[torch.Tensor],
        branch: BranchSelector,
        current_tokens: int,
        mode: str = "prealloc",
        history_bias: float | None = None,
    ) -> None:
        if mode not in ("prealloc", "cat"):
            raise ValueError(f"`mode` must be 'prealloc' or 'cat', got {mode!r}.")
        self.mask = None
        if history_bias is not None:
            history = history_keys[0].shape[1]
            self.mask = history_keys[0].new_zeros(1, 1, 1, history + current_tokens)
            self.mask[..., :history] = history_bias
        self.mode = mode
        self.branch = branch
        self.current_tokens = current_tokens
        if mode == "prealloc":
            self.keys = [self._buffer(k, current_tokens) for k in history_keys]
            self.values = [self._buffer(v, current_tokens) for v in history_values]
        else:
            self.keys, self.values = list(history_keys), list(history_values)

    @staticmethod
    def _buffer(history: torch.Tensor, current_tokens: int) -> torch.Tensor:
        batch, tokens, heads, head_dim = history.shape
        buffer = history.new_empty(batch, tokens + current_tokens, heads, head_dim)
        buffer[:, :tokens] = history
        return buffer

    def nbytes(self) -> int:
        """Bytes held for history (and, with `prealloc`, the current clip's slot) over all branches."""
        return sum(t.numel() * t.element_size() for t in self.keys + self.values)

    def __call__(
        self,
        attn: torch.nn.Module,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        if getattr(attn, "fused_projections", False):
            query, key, value = attn.to_qkv(hidden_states).chunk(3, dim=-1)
        else:
            query, key, value = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
        query = attn.norm_q(query).unflatten(2, (attn.heads, -1))
        key = attn.norm_k(key).unflatten(2, (attn.heads, -1))
        value = value.unflatten(2, (attn.heads, -1))
        if rotary_emb is not None:
            query = _apply_rotary_emb(query, *rotary_emb)
            key = _apply_rotary_emb(key, *rotary_emb)

        keys, values = self.keys[self.branch.index], self.values[self.branch.index]
        if self.mode == "prealloc":
            if key.shape[1] != self.current_tokens:
                raise ValueError(f"Expected {self.current_tokens} current tokens, got {key.shape[1]}.")
            keys[:, -self.current_tokens :] = key
            values[:, -self.current_tokens :] = value
        else:
            keys, values = torch.cat([keys, key], dim=1), torch.cat([values, value], dim=1)

        hidden_states = F.scaled_dot_product_attention(
            query.transpose(1, 2),
            keys.transpose(1, 2),
            values.transpose(1, 2),
            attn_mask=self.mask,
            dropout_p=0.0,
            is_causal=False,
        )
        hidden_states = hidden_states.transpose(1, 2).flatten(2, 3).type_as(query)
        hidden_states = attn.to_out[0](hidden_states)
        return attn.to_out[1](hidden_states)


def build_model(config: dict[str, Any], device: torch.device, dtype: torch.dtype, seed: int = 0) -> torch.nn.Module:
    """A random-weight `WanTransformer3DModel` on `device`, cast as `from_pretrained(dtype=dtype)` would."""
    from diffusers import WanTransformer3DModel

    torch.manual_seed(seed)
    with torch.device(device):
        model = WanTransformer3DModel(**config)
    # Cast like `from_pretrained(dtype=dtype)`: tensors of the modules named in `_keep_in_fp32_modules` (rope
    # tables, time embedder, norms, modulation tables) stay in float32.
    keep = set(getattr(model, "_keep_in_fp32_modules", None) or ())
    for module_name, module in model.named_modules():
        for local, tensor in list(module._parameters.items()) + list(module._buffers.items()):
            full_name = f"{module_name}.{local}" if module_name else local
            if tensor is None or not tensor.is_floating_point():
                continue
            target = torch.float32 if keep.intersection(full_name.split(".")) else dtype
            if local in module._parameters:
                tensor.data = tensor.data.to(target)
            else:
                module._buffers[local] = tensor.to(target)
    return model.eval()


def install_history(
    model: torch.nn.Module,
    cached_blocks: Sequence[int],
    history_clips: int,
    tokens: int,
    branches: int,
    mode: str,
    generator: torch.Generator,
    history_tokens: int | None = None,
    history_bias: float | None = None,
) -> tuple[list[HistoryKVAttnProcessor], BranchSelector]:
    """Put a `HistoryKVAttnProcessor` with random history K/V on `attn1` of each cached block (`history_tokens` per
    history clip, default `tokens`: fewer for compressed history, whose attention costs what its token count says;
    `history_bias`: its proportional-attention logit bias, see `HistoryKVAttnProcessor`)."""
    heads, head_dim = model.config.num_attention_heads, model.config.attention_head_dim
    dtype = model.blocks[0].attn1.to_k.weight.dtype
    device = model.blocks[0].attn1.to_k.weight.device
    branch = BranchSelector()
    processors = []
    for index in cached_blocks:
        shape = (1, history_clips * (tokens if history_tokens is None else history_tokens), heads, head_dim)
        keys = [torch.randn(shape, generator=generator, device=device, dtype=dtype) for _ in range(branches)]
        values = [torch.randn(shape, generator=generator, device=device, dtype=dtype) for _ in range(branches)]
        processor = HistoryKVAttnProcessor(keys, values, branch, tokens, mode, history_bias)
        del keys, values
        model.blocks[index].attn1.set_processor(processor)
        processors.append(processor)
    return processors, branch


def remove_history(model: torch.nn.Module, cached_blocks: Sequence[int]) -> None:
    from diffusers.models.transformers.transformer_wan import WanAttnProcessor

    for index in cached_blocks:
        model.blocks[index].attn1.set_processor(WanAttnProcessor())


def analytic_flops_per_step(
    config: dict[str, Any],
    size: dict[str, int],
    history_clips: int,
    num_cached_blocks: int,
    cfg: bool,
    history_tokens: int | None = None,
) -> tuple[float, str]:
    """Matmul FLOPs of one denoising step (multiply-add = 2), and where the formula came from."""
    try:
        from diffusers_longvid.benchmarks.cost_model import VideoShape, WanShape, flops_per_step

        source = "diffusers_longvid.benchmarks.cost_model"
    except ImportError:
        flops_per_step = None
        source = "inline copy of cost_model.flops_per_forward"
    if flops_per_step is not None:
        shape = WanShape.from_config(config, text_len=size["text_len"])
        video = VideoShape(size["height"], size["width"], size["frames"], VAE_SPATIAL, VAE_TEMPORAL)
        flops = flops_per_step(shape, video, history_clips, num_cached_blocks, history_tokens, cfg=cfg).total
        return flops, source
    flops = _inline_flops_per_forward(config, size, history_clips, num_cached_blocks, history_tokens)
    return flops * (2 if cfg else 1), source


def _inline_flops_per_forward(
    config: dict[str, Any],
    size: dict[str, int],
    history_clips: int,
    num_cached_blocks: int,
    history_tokens: int | None = None,
) -> float:
    # The formula of `cost_model.flops_per_forward` (the test suite checks that both agree), for a bare copy.
    p_t, p_h, p_w = config["patch_size"]
    latent = ((size["frames"] - 1) // VAE_TEMPORAL + 1, size["height"] // VAE_SPATIAL, size["width"] // VAE_SPATIAL)
    n = (latent[0] // p_t) * (latent[1] // p_h) * (latent[2] // p_w)
    d = config["num_attention_heads"] * config["attention_head_dim"]
    layers, text, patch = config["num_layers"], size["text_len"], p_t * p_h * p_w
    blocks = layers * (12 * n * d * d + 4 * text * d * d + 4 * n * d * config["ffn_dim"] + 4 * n * n * d)
    m = n if history_tokens is None else history_tokens
    blocks += layers * 4 * n * text * d + num_cached_blocks * 4 * n * history_clips * m * d
    embeddings = 2 * n * config["in_channels"] * patch * d + 2 * (config["freq_dim"] * d + d * d) + 12 * d * d
    embeddings += 2 * text * (config["text_dim"] * d + d * d) + 2 * n * d * config["out_channels"] * patch
    return float(blocks + embeddings)


def _import_cost_model_from_checkout() -> None:
    # Run from a checkout without installing the package: make `src/` importable (cost_model needs only stdlib).
    src = Path(__file__).resolve().parents[2] / "src"
    if (src / "diffusers_longvid").is_dir() and str(src) not in sys.path:
        sys.path.insert(0, str(src))


class _Timer:
    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def __enter__(self) -> _Timer:
        if self.cuda:
            self.start, self.end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            self.start.record()
        else:
            self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.cuda:
            self.end.record()
        else:
            self.ms = (time.perf_counter() - self.t0) * 1e3

    def elapsed_ms(self) -> float:
        if self.cuda:
            self.end.synchronize()
            return self.start.elapsed_time(self.end)
        return self.ms


def time_steps(
    model: torch.nn.Module,
    latents: torch.Tensor,
    timestep: torch.Tensor,
    prompt_embeds: list[torch.Tensor],
    branch: BranchSelector | None,
    warmup: int,
    steps: int,
    guidance_scale: float = 5.0,
) -> list[float]:
    """Milliseconds of each timed denoising step (one forward per branch, then the CFG combination)."""
    device = latents.device
    times = []
    for i in range(warmup + steps):
        with _Timer(device) as timer:
            predictions = []
            for index, embeds in enumerate(prompt_embeds):
                if branch is not None:
                    branch.index = index
                predictions.append(model(latents, timestep, embeds, return_dict=False)[0])
            if len(predictions) == 2:
                noise_pred = predictions[1] + guidance_scale * (predictions[0] - predictions[1])
            else:
                noise_pred = predictions[0]
        del noise_pred, predictions
        if i >= warmup:
            times.append(timer.elapsed_ms())
    return times


def _parse_ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected non-negative integers, got {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="Tiny random model and 64x64x9 clip (CPU tests).")
    parser.add_argument("--device", default=None, help="Defaults to cuda when available, else cpu.")
    parser.add_argument(
        "--dtype",
        default=None,
        choices=["bfloat16", "float16", "float32"],
        help="Defaults to bfloat16 on cuda, float32 on cpu (CPU bf16 kernels are slow and not what is measured).",
    )
    parser.add_argument("--height", type=int, default=None, help="Pixels (default 480; tiny 64).")
    parser.add_argument("--width", type=int, default=None, help="Pixels (default 832; tiny 64).")
    parser.add_argument("--frames", type=int, default=None, help="Pixel frames per clip (default 81; tiny 9).")
    parser.add_argument("--history-clips", type=_parse_ints, default=[0, 5], help="Comma-separated k (default 0,5).")
    parser.add_argument(
        "--history-modes", default="prealloc,cat", help="Comma-separated: prealloc, cat (default both)."
    )
    parser.add_argument(
        "--cached-blocks", type=_parse_ints, default=None, help="Block indices (default: the latter half)."
    )
    parser.add_argument(
        "--history-pool",
        default="2,2,2",
        help="history_pool (t,h,w) of the compressed-history runs (k > 0, preallocated), or 'none' (default 2,2,2).",
    )
    parser.add_argument(
        "--history-keep-ratio",
        type=float,
        default=None,
        help="Also time `selected` runs: preallocated history of ceil(ratio * tokens) tokens per clip, no mask "
        "(`CrossClipKVCacheConfig(history_keep_ratio=ratio)`, token selection), e.g. 0.15.",
    )
    parser.add_argument("--no-cfg", action="store_true", help="One forward per step instead of two.")
    parser.add_argument("--warmup", type=int, default=2, help="Untimed steps per configuration.")
    parser.add_argument("--steps", type=int, default=5, help="Timed steps per configuration.")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="Write the results as JSON here.")
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; print the table, write `--out`, and return the results."""
    args = build_parser().parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype_name = args.dtype or ("bfloat16" if device.type == "cuda" else "float32")
    dtype = getattr(torch, dtype_name)
    config = dict(TINY_CONFIG if args.tiny else WAN21_T2V_1_3B_CONFIG)
    size = dict(TINY_SIZE if args.tiny else FULL_SIZE)
    size.update({k: getattr(args, k) for k in ("height", "width", "frames") if getattr(args, k) is not None})
    modes = [m.strip() for m in args.history_modes.split(",") if m.strip()]
    if not modes or any(m not in ("prealloc", "cat") for m in modes):
        raise SystemExit(f"--history-modes must list 'prealloc' and/or 'cat', got {args.history_modes!r}")
    if size["height"] % 16 or size["width"] % 16 or (size["frames"] - 1) % VAE_TEMPORAL:
        raise SystemExit("--height/--width must be multiples of 16 and --frames - 1 a multiple of 4")
    if args.steps < 1 or args.warmup < 0:
        raise SystemExit("--steps must be >= 1 and --warmup >= 0")
    layers = config["num_layers"]
    cached_blocks = args.cached_blocks if args.cached_blocks is not None else list(range(layers // 2, layers))
    if any(i >= layers for i in cached_blocks):
        raise SystemExit(f"--cached-blocks must be < num_layers ({layers}), got {cached_blocks}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    _import_cost_model_from_checkout()

    branches = 1 if args.no_cfg else 2
    latent_shape = (
        1,
        config["in_channels"],
        (size["frames"] - 1) // VAE_TEMPORAL + 1,
        size["height"] // VAE_SPATIAL,
        size["width"] // VAE_SPATIAL,
    )
    p_t, p_h, p_w = config["patch_size"]
    grid = (latent_shape[2] // p_t, latent_shape[3] // p_h, latent_shape[4] // p_w)
    tokens = grid[0] * grid[1] * grid[2]
    pool = None
    if args.history_pool.strip().lower() != "none":
        pool = _parse_ints(args.history_pool)
        if len(pool) != 3 or any(p < 1 for p in pool):
            raise SystemExit(f"--history-pool must be three ints >= 1 or 'none', got {args.history_pool!r}")
    # tokens a compressed history clip keeps (`cost_model.pooled_tokens_per_clip`)
    pooled_tokens = None if pool is None else math.prod(-(-n // p) for n, p in zip(grid, pool))
    selected_tokens = None
    if args.history_keep_ratio is not None:
        if not 0 < args.history_keep_ratio <= 1:
            raise SystemExit(f"--history-keep-ratio must be in (0, 1], got {args.history_keep_ratio!r}")
        # tokens a selected history clip keeps (`cost_model.selected_tokens_per_clip`)
        selected_tokens = max(1, math.ceil(round(args.history_keep_ratio * tokens, 9)))

    t0 = time.perf_counter()
    model = build_model(config, device, dtype, args.seed)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    build_s = time.perf_counter() - t0
    generator = torch.Generator(device).manual_seed(args.seed)
    latents = torch.randn(latent_shape, generator=generator, device=device, dtype=dtype)
    timestep = torch.full((1,), 500.0, device=device)
    prompt_embeds = [
        torch.randn(1, size["text_len"], config["text_dim"], generator=generator, device=device, dtype=dtype)
        for _ in range(branches)
    ]

    runs: list[tuple[int, str]] = []
    for k in args.history_clips:
        runs += [(0, "stock")] if k == 0 else [(k, mode) for mode in modes]
    if pooled_tokens is not None:
        runs += [(k, "compressed") for k in args.history_clips if k > 0]
    if selected_tokens is not None:
        runs += [(k, "selected") for k in args.history_clips if k > 0]
    results = []
    with torch.no_grad():
        for k, mode in runs:
            processors, branch = [], None
            history_tokens = {"compressed": pooled_tokens, "selected": selected_tokens}.get(mode)
            if k > 0:
                processors, branch = install_history(
                    model,
                    cached_blocks,
                    k,
                    tokens,
                    branches,
                    "prealloc" if mode in ("compressed", "selected") else mode,
                    generator,
                    history_tokens,
                    math.log(math.prod(pool)) if mode == "compressed" else None,
                )
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
            times = time_steps(model, latents, timestep, prompt_embeds, branch, args.warmup, args.steps)
            flops, source = analytic_flops_per_step(
                config, size, k, len(cached_blocks), not args.no_cfg, history_tokens
            )
            median_ms = statistics.median(times)
            results.append(
                {
                    "history_clips": k,
                    "history_mode": mode,
                    "history_tokens_per_clip": (history_tokens or tokens) if k > 0 else 0,
                    "ms_per_step": times,
                    "ms_per_step_median": median_ms,
                    "ms_per_step_min": min(times),
                    "ms_per_forward_median": median_ms / branches,
                    "peak_gib": torch.cuda.max_memory_allocated(device) / _GIB if device.type == "cuda" else None,
                    "history_kv_gib": sum(p.nbytes() for p in processors) / _GIB,
                    "analytic_tflop_per_step": flops / 1e12,
                    "achieved_tflops": flops / (median_ms * 1e-3) / 1e12,
                }
            )
            if k > 0:
                remove_history(model, cached_blocks)
            del processors, branch

    baseline = next((r for r in results if r["history_clips"] == 0), None)
    for r in results:
        if baseline is not None:
            r["measured_ratio_vs_k0"] = r["ms_per_step_median"] / baseline["ms_per_step_median"]
            r["predicted_ratio_vs_k0"] = r["analytic_tflop_per_step"] / baseline["analytic_tflop_per_step"]
    report = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "diffusers": __import__("diffusers").__version__,
        "dtype": dtype_name,
        "cuda_matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "sdpa_enabled": {
            "flash": torch.backends.cuda.flash_sdp_enabled(),
            "mem_efficient": torch.backends.cuda.mem_efficient_sdp_enabled(),
            "cudnn": torch.backends.cuda.cudnn_sdp_enabled(),
            "math": torch.backends.cuda.math_sdp_enabled(),
        },
        "tiny": args.tiny,
        "config": {**config, "patch_size": list(config["patch_size"])},
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "size": size,
        "tokens_per_clip": tokens,
        "cached_blocks": cached_blocks,
        "history_pool": None if pool is None else list(pool),
        "cfg_branches": branches,
        "warmup_steps": args.warmup,
        "timed_steps": args.steps,
        "build_seconds": build_s,
        "flop_source": source if results else None,
        "flop_convention": "matmul FLOPs, multiply-add = 2 (torch.utils.flop_counter convention)",
        "results": results,
    }
    _print_table(report)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
    return report


def _print_table(report: dict[str, Any]) -> None:
    size = report["size"]
    print(
        f"{report['device']}, torch {report['torch']}, diffusers {report['diffusers']}, {report['dtype']}: "
        f"{report['num_parameters'] / 1e6:,.1f} M params, {size['width']}x{size['height']}x{size['frames']} "
        f"({report['tokens_per_clip']:,} tokens), {report['cfg_branches']} forward(s) per step, "
        f"history in {len(report['cached_blocks'])} blocks, {report['timed_steps']} timed steps"
    )
    columns = [
        "k",
        "mode",
        "ms / step (median)",
        "ms / forward",
        "peak GiB",
        "history K/V GiB",
        "TFLOP / step",
        "TFLOP/s",
        "x k=0 (measured / predicted)",
    ]
    print("| " + " | ".join(columns) + " |")
    print("|---|---|" + "---:|" * (len(columns) - 2))
    for r in report["results"]:
        peak = f"{r['peak_gib']:.1f}" if r["peak_gib"] is not None else "n/a"
        ratio = "-"
        if "measured_ratio_vs_k0" in r:
            ratio = f"{r['measured_ratio_vs_k0']:.2f} / {r['predicted_ratio_vs_k0']:.2f}"
        print(
            f"| {r['history_clips']} | {r['history_mode']} | {r['ms_per_step_median']:.1f} | "
            f"{r['ms_per_forward_median']:.1f} | {peak} | {r['history_kv_gib']:.3g} | "
            f"{r['analytic_tflop_per_step']:.4g} | {r['achieved_tflops']:.4g} | {ratio} |"
        )


if __name__ == "__main__":
    main()
