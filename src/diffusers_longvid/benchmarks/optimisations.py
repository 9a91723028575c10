# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""Part 3 of issue 7: does each speed-up of the KV path hold, and does it help? Measured on the transformer directly.

Every study drives a transformer with the cross-clip KV cache installed and `k` recorded history clips per CFG
branch, at the benchmark's clip size, and returns plain dicts (JSON-ready):

- `history_buffer`: the selected history is gathered **once per clip** into a preallocated buffer (one buffer per
  block and branch whose storage never changes during the clip), stored K/V and buffers are in the **model dtype**
  (checked with a bfloat16 copy), and what a `torch.cat` per forward would cost instead.
- `fused_qkv`: `transformer.fuse_qkv_projections()` with history: same output, time per forward.
- `batched_cfg`: cond and uncond in one forward of batch 2 (`CrossClipKVCache.batched_branches`) against two
  forwards: same outputs and recorded K/V, time per denoising step.
- `compile`: `compile_repeated_blocks` (inductor) with and without the processor installed: graph breaks, graphs,
  time per forward, agreement with eager.

Timings alternate the variants round by round (A, B, A, B, ...) and report medians, so a burst of load from elsewhere
on a shared machine hits both.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from typing import Any

from diffusers.utils import logging

from .runner import BENCH_TINY_TRANSFORMER, BenchSettings, build_pipeline


logger = logging.get_logger(__name__)  # pylint: disable=invalid-name

__all__ = [
    "KVPathHarness",
    "alternate_timings",
    "optimisations_markdown",
    "predict_optimisations",
    "run_optimisation_study",
]


def alternate_timings(
    variants: dict[str, Callable[[], Any]],
    repeats: int,
    warmup: int = 2,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, Any]:
    r"""
    Time several zero-argument callables round-robin (the order rotates every round) and report medians.

    `clock` defaults to the wall clock; the studies pass `time.process_time` on the CPU (this process's CPU time,
    which a shared machine's load changes much less).

    Returns:
        `dict`: `{"median_seconds": {name: s}, "min_seconds": {name: s}, "ratio_to_first": {name: median of the
        per-round ratios to the first variant}, "repeats": repeats}`.
    """
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            variants[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            start = clock()
            variants[name]()
            times[name].append(clock() - start)
    first = names[0]
    return {
        "median_seconds": {n: statistics.median(t) for n, t in times.items()},
        "min_seconds": {n: min(t) for n, t in times.items()},
        "ratio_to_first": {n: statistics.median(b / a for a, b in zip(times[first], times[n])) for n in names},
        "repeats": repeats,
    }


class KVPathHarness:
    r"""
    A transformer with the cross-clip KV cache and `history_clips` recorded clips per CFG branch, fed one clip's
    inputs (the shapes of `settings`).

    Args:
        transformer (`WanTransformer3DModel`): The model (not modified beyond installing the cache).
        settings (`BenchSettings`): Clip size (`height`, `width`, `num_frames`), text length.
        history_clips (`int`): Clips recorded and selected.
        vae_scale_factor_spatial (`int`, *optional*, defaults to 8),
        vae_scale_factor_temporal (`int`, *optional*, defaults to 4): Latent size of a clip.
        seed (`int`, *optional*, defaults to 0): Seed of the random inputs.
    """

    def __init__(
        self,
        transformer: Any,
        settings: BenchSettings,
        history_clips: int,
        vae_scale_factor_spatial: int = 8,
        vae_scale_factor_temporal: int = 4,
        seed: int = 0,
    ) -> None:
        import torch

        from ..attention import CrossClipKVCacheConfig, enable_cross_clip_kv_cache

        self.transformer = transformer
        config = transformer.config
        generator = torch.Generator().manual_seed(seed)
        frames = (settings.num_frames - 1) // vae_scale_factor_temporal + 1
        shape = (
            1,
            config.in_channels,
            frames,
            settings.height // vae_scale_factor_spatial,
            settings.width // vae_scale_factor_spatial,
        )
        dtype, device = transformer.dtype, transformer.device
        self.latents = torch.randn(shape, generator=generator).to(device, dtype)
        self.embeds = {
            branch: torch.randn(1, settings.max_sequence_length, config.text_dim, generator=generator).to(
                device, dtype
            )
            for branch in ("cond", "uncond")
        }
        self.timestep = torch.tensor([500], device=device)
        self.cache = enable_cross_clip_kv_cache(transformer, CrossClipKVCacheConfig())
        self.history_clips = history_clips
        with torch.no_grad():
            for clip in range(history_clips):
                clean = torch.randn(shape, generator=generator).to(device, dtype)
                for branch in ("cond", "uncond"):
                    with self.cache.branch(branch), self.cache.recording():
                        self._forward(clean, self.embeds[branch], offset=clip)
                self.cache.commit(clip)
        self.offset = history_clips
        self.select()

    def select(self, clips: list[int] | None = None) -> None:
        self.cache.select(list(range(self.history_clips)) if clips is None else clips)

    def _forward(self, latents: Any, embeds: Any, offset: int, timestep: Any = None) -> Any:
        from ..attention import rope_frame_offset

        timestep = self.timestep.expand(latents.shape[0]) if timestep is None else timestep
        with rope_frame_offset(self.transformer, offset):
            return self.transformer(
                hidden_states=latents, timestep=timestep, encoder_hidden_states=embeds, return_dict=False
            )[0]

    def forward(self, branch: str) -> Any:
        """One forward of the current clip as CFG branch `branch`."""
        import torch

        with torch.no_grad(), self.cache.branch(branch):
            return self._forward(self.latents, self.embeds[branch], self.offset)

    def step_separate(self) -> tuple[Any, Any]:
        """One denoising step the way the pipeline runs it now: a cond and an uncond forward."""
        return self.forward("cond"), self.forward("uncond")

    def step_batched(self) -> tuple[Any, Any]:
        """One denoising step with both CFG branches in one forward of batch 2."""
        import torch

        with torch.no_grad(), self.cache.batched_branches(("cond", "uncond")):
            out = self._forward(
                torch.cat([self.latents, self.latents]),
                torch.cat([self.embeds["cond"], self.embeds["uncond"]]),
                self.offset,
            )
        return out.chunk(2)

    def close(self) -> None:
        from ..attention import disable_cross_clip_kv_cache

        disable_cross_clip_kv_cache(self.transformer)


def predict_optimisations(
    shape: Any,
    video: Any,
    history_clips: int = 5,
    dtype_bytes: int = 2,
    peak_tflops: float | None = None,
    bandwidth_tbps: float | None = None,
    seconds_per_call: float | None = None,
) -> dict[str, Any]:
    r"""
    What the cost model predicts for each part-3 change, per forward (one CFG branch) with `history_clips` clips.

    - `prealloc`: bytes a `torch.cat([history, current])` per cached block moves (read + write of history and
      current K and V) against the tail write of the preallocated buffer (current K and V only), and their time at
      `bandwidth_tbps` relative to the forward's compute bound.
    - `fused_qkv`: the FLOPs do not change; a fused projection reads its input once instead of three times (self-
      attention) / twice (text K/V of cross-attention): the activation bytes saved and their share of the bound.
    - `batched_cfg`: the FLOPs do not change. With `seconds_per_call` (a fixed host cost per forward, e.g. the
      benchmark's fit), one forward of batch 2 saves one such cost per step: the predicted step-time ratio.
    - `compile_graph_break`: a graph break is host overhead (a guard check and a Python resume per cached block and
      forward), which no FLOP or byte count models; it matters where a forward takes milliseconds, not seconds.

    Args:
        shape (`WanShape`), video (`VideoShape`): The transformer and the clip.
        history_clips (`int`, *optional*, defaults to 5): History clips attended.
        dtype_bytes (`int`, *optional*, defaults to 2): Bytes per element (bf16).
        peak_tflops (`float`, *optional*), bandwidth_tbps (`float`, *optional*): Device roofline; default H200.
        seconds_per_call (`float`, *optional*): Fixed cost per forward for the batched-CFG prediction.
    """
    from .cost_model import H200_BANDWIDTH_TBPS, H200_PEAK_TFLOPS, flops_per_forward, tokens_per_clip

    peak = (peak_tflops or H200_PEAK_TFLOPS) * 1e12
    bandwidth = (bandwidth_tbps or H200_BANDWIDTH_TBPS) * 1e12
    n, d = tokens_per_clip(shape, video), shape.dim
    blocks = len(shape.default_cached_blocks)
    forward = flops_per_forward(shape, video, history_clips).total
    compute = forward / peak
    cat = blocks * 2 * 2 * (history_clips + 1) * n * d * dtype_bytes  # K and V, read + write, per cached block
    tail = blocks * 2 * 2 * n * d * dtype_bytes
    fused_saved = shape.num_layers * (2 * n * d + 1 * shape.text_len * d) * dtype_bytes
    out = {
        "forward_flops": forward,
        "forward_compute_seconds": compute,
        "prealloc": {
            "cat_bytes": cat,
            "prealloc_bytes": tail,
            "cat_seconds": cat / bandwidth,
            "prealloc_seconds": tail / bandwidth,
            "saved_share_of_forward": (cat - tail) / bandwidth / compute,
        },
        "fused_qkv": {
            "flops_change": 0.0,
            "activation_bytes_saved": fused_saved,
            "saved_share_of_forward": fused_saved / bandwidth / compute,
        },
        "batched_cfg": {"flops_change": 0.0},
        "compile_graph_break": {"breaks_per_forward": blocks},
    }
    if seconds_per_call is not None:
        # step time = 2 (a + F/peak) separately, a + 2 F/peak batched (the per-call cost does not double)
        step = 2 * (seconds_per_call + compute)
        out["batched_cfg"]["predicted_step_ratio"] = (seconds_per_call + 2 * compute) / step
    return out


def _tiny_transformer(settings: BenchSettings):
    if settings.model == "tiny":
        from ..testing import get_tiny_transformer

        return get_tiny_transformer(in_channels=36, **BENCH_TINY_TRANSFORMER), 8, 4
    pipe = build_pipeline(settings)
    return pipe.transformer, pipe.vae_scale_factor_spatial, pipe.vae_scale_factor_temporal


def _clock(settings: BenchSettings) -> Callable[[], float]:
    return time.process_time if settings.device == "cpu" else _synchronized_wall_clock


def _synchronized_wall_clock() -> float:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter()


def _max_abs_diff(a: Any, b: Any) -> float:
    return float((a.float() - b.float()).abs().max())


def _study_history_buffer(transformer: Any, settings: BenchSettings, factors: tuple[int, int], repeats: int):
    import torch

    k = settings.kv_cache_clips
    harness = KVPathHarness(transformer, settings, k, *factors)
    steps = settings.num_inference_steps
    pointers: dict[Any, set[int]] = {}
    try:
        for _ in range(steps):
            for branch in ("cond", "uncond"):
                harness.forward(branch)
                for slot, window in harness.cache._windows.items():
                    if window is not None and window._buffer is not None:
                        pointers.setdefault(slot, set()).add(window._buffer.key.data_ptr())
        window = next(w for w in harness.cache._windows.values() if w is not None)
        history_len, buffer = window.history_len, window._buffer
        cur_len = buffer.key.shape[1] - history_len
        # What the buffer saves per forward and cached block: a cat re-copies the history, the buffer only the tail
        hist = torch.randn(1, history_len, *buffer.key.shape[2:], dtype=buffer.key.dtype)
        cur = torch.randn(1, cur_len, *buffer.key.shape[2:], dtype=buffer.key.dtype)
        target = torch.empty_like(buffer.key)
        timings = alternate_timings(
            {"cat": lambda: torch.cat([hist, cur], dim=1), "prealloc": lambda: target[:, history_len:].copy_(cur)},
            repeats=max(repeats, 20),
            clock=_clock(settings),
        )
        forward = alternate_timings(
            {"forward": lambda: harness.forward("cond")}, repeats=max(repeats // 2, 5), clock=_clock(settings)
        )
    finally:
        harness.close()
    per_forward = {
        name: 2 * len(harness.cache.block_indices) * seconds for name, seconds in timings["median_seconds"].items()
    }
    # bfloat16: stored K/V and the gathered buffer follow the model dtype
    bf16 = copy.deepcopy(transformer).to(torch.bfloat16)
    harness16 = KVPathHarness(bf16, settings, 1, *factors)
    try:
        harness16.forward("cond")
        stored = harness16.cache.get(0, harness16.cache.block_indices[0], "cond")
        window16 = next(w for w in harness16.cache._windows.values() if w is not None)
        dtypes = {
            "model": str(bf16.dtype),
            "stored_key": str(stored.key.dtype),
            "stored_value": str(stored.value.dtype),
            "buffer_key": str(window16._buffer.key.dtype),
        }
    finally:
        harness16.close()
    element = buffer.key.element_size()
    return {
        "steps": steps,
        "slots": len(pointers),
        "buffer_storages_per_slot": sorted({len(p) for p in pointers.values()}),
        "gathered_once_per_clip": all(len(p) == 1 for p in pointers.values()),
        "dtypes_bfloat16_model": dtypes,
        "model_dtype_kept": all(v == "torch.bfloat16" for v in dtypes.values()),
        "history_tokens": history_len,
        "current_tokens": cur_len,
        "predicted_bytes_per_tensor": {
            "cat": 2 * (history_len + cur_len) * buffer.key[0, 0].numel() * element,  # read + write everything
            "prealloc": 2 * cur_len * buffer.key[0, 0].numel() * element,
        },
        "seconds_per_tensor": timings["median_seconds"],
        "seconds_per_forward_kv": per_forward,
        "forward_seconds": forward["median_seconds"]["forward"],
        "cat_share_of_forward": per_forward["cat"] / forward["median_seconds"]["forward"],
    }


def _study_fused_qkv(transformer: Any, settings: BenchSettings, factors: tuple[int, int], repeats: int):
    k = settings.kv_cache_clips
    fused = copy.deepcopy(transformer)
    fused.fuse_qkv_projections()
    plain_h = KVPathHarness(transformer, settings, k, *factors)
    fused_h = KVPathHarness(fused, settings, k, *factors)
    try:
        diff = _max_abs_diff(plain_h.forward("cond"), fused_h.forward("cond"))
        timings = alternate_timings(
            {"unfused": lambda: plain_h.forward("cond"), "fused": lambda: fused_h.forward("cond")},
            repeats,
            clock=_clock(settings),
        )
    finally:
        plain_h.close()
        fused_h.close()
    return {
        "history_clips": k,
        "fused_attention_modules": sum(1 for m in fused.modules() if getattr(m, "fused_projections", False)),
        "max_abs_diff": diff,
        "median_seconds_per_forward": timings["median_seconds"],
        "fused_over_unfused": timings["ratio_to_first"]["fused"],
        "repeats": repeats,
    }


def _study_batched_cfg(transformer: Any, settings: BenchSettings, factors: tuple[int, int], repeats: int):
    import torch

    k = settings.kv_cache_clips
    harness = KVPathHarness(transformer, settings, k, *factors)
    try:
        cond, uncond = harness.step_separate()
        b_cond, b_uncond = harness.step_batched()
        diff = max(_max_abs_diff(cond, b_cond), _max_abs_diff(uncond, b_uncond))
        # recording both branches in one batched forward stores what two forwards store
        cache, block = harness.cache, harness.cache.block_indices[-1]
        clean = harness.latents
        with torch.no_grad():
            for branch in ("cond", "uncond"):
                with cache.branch(branch), cache.recording():
                    harness._forward(clean, harness.embeds[branch], harness.offset)
            cache.commit(1000)
            with cache.batched_branches(("cond", "uncond")), cache.recording():
                harness._forward(
                    torch.cat([clean, clean]),
                    torch.cat([harness.embeds["cond"], harness.embeds["uncond"]]),
                    harness.offset,
                )
            cache.commit(1001)
        record_diff = max(
            _max_abs_diff(cache.get(1000, block, b).key, cache.get(1001, block, b).key) for b in ("cond", "uncond")
        )
        cache.evict(1000)
        cache.evict(1001)
        harness.select()
        timings = alternate_timings(
            {"separate": harness.step_separate, "batched": harness.step_batched}, repeats, clock=_clock(settings)
        )
    finally:
        harness.close()
    return {
        "history_clips": k,
        "max_abs_diff_outputs": diff,
        "max_abs_diff_recorded_keys": record_diff,
        "median_seconds_per_step": timings["median_seconds"],
        "batched_over_separate": timings["ratio_to_first"]["batched"],
        "repeats": repeats,
    }


def _study_compile(transformer: Any, settings: BenchSettings, factors: tuple[int, int], repeats: int):
    """Eager vs `compile_repeated_blocks` (inductor): stock processors, ours with the graph break at the cache call
    (before), ours through the custom op (after), and the latter with `fullgraph=True`.

    Each variant is compiled on its own (dynamo reset in between, so no variant pays for another's guards) and timed
    round by round against an eager copy of itself, which doubles as a probe of the machine's speed at that moment.
    A new clip (recorded, committed, selected) must not add a graph.
    """
    import torch
    import torch._dynamo

    from ..attention.processor import CrossClipKVAttnProcessor

    class _GraphBreakKVAttnProcessor(CrossClipKVAttnProcessor):
        """The study's "before": a compiled forward breaks the graph at the cache call instead of the custom op."""

        def _compiles_as_custom_op(self, attention_mask, pools) -> bool:
            return False

    k = settings.kv_cache_clips
    variants = {
        "stock": (None, True, False),
        "ours_k0_custom_op": (0, True, False),
        f"ours_k{k}_graph_break": (k, False, False),
        f"ours_k{k}_custom_op": (k, True, False),
        f"ours_k{k}_custom_op_fullgraph": (k, True, True),
    }
    counters = torch._dynamo.utils.counters
    results: dict[str, Any] = {}
    for name, (history, custom_op, fullgraph) in variants.items():
        harnesses = []
        for _ in range(2):  # eager, compiled
            model = copy.deepcopy(transformer)
            harness = KVPathHarness(model, settings, history or 0, *factors)
            if history is None:
                harness.close()  # the same inputs through the stock processors
            if not custom_op:
                for block in harness.cache.block_indices:
                    processor = model.blocks[block].attn1.processor
                    if isinstance(processor, CrossClipKVAttnProcessor):
                        processor.__class__ = _GraphBreakKVAttnProcessor
            harnesses.append(harness)
        eager, compiled = harnesses

        def run(harness: KVPathHarness) -> Any:
            with torch.no_grad(), harness.cache.branch("cond"):
                return harness._forward(harness.latents, harness.embeds["cond"], harness.offset)

        torch._dynamo.reset()
        counters.clear()
        compiled.transformer.compile_repeated_blocks(backend="inductor", fullgraph=fullgraph)
        start = time.perf_counter()
        out = run(compiled)
        first_call = time.perf_counter() - start
        entry = {
            "history_clips": history,
            "custom_op": custom_op if history is not None else None,
            "fullgraph": fullgraph,
            "first_call_seconds": first_call,
            "graph_breaks": int(sum(counters["graph_break"].values())),
            "unique_graphs": int(counters["stats"]["unique_graphs"]),
            "max_abs_diff_vs_eager": _max_abs_diff(out, run(eager)),
        }
        timings = alternate_timings(
            {"eager": lambda eager=eager: run(eager), "compiled": lambda compiled=compiled: run(compiled)},
            repeats,
            clock=_clock(settings),
        )
        entry["eager_seconds_per_forward"] = timings["median_seconds"]["eager"]
        entry["compiled_seconds_per_forward"] = timings["median_seconds"]["compiled"]
        entry["compiled_over_eager"] = timings["ratio_to_first"]["compiled"]
        if history:
            graphs = counters["stats"]["unique_graphs"]
            with torch.no_grad():  # a new clip: record both branches, commit, attend it
                for branch in ("cond", "uncond"):
                    with compiled.cache.branch(branch), compiled.cache.recording():
                        compiled._forward(compiled.latents, compiled.embeds[branch], compiled.offset)
                compiled.cache.commit(10_000)
                compiled.select([10_000] + list(range(1, compiled.history_clips)))
                compiled.offset += 1
                compiled.forward("cond")
                compiled.forward("uncond")
            entry["graphs_added_by_a_new_clip"] = int(counters["stats"]["unique_graphs"] - graphs)
        for harness in harnesses:
            harness.close()
        results[name] = entry
    torch._dynamo.reset()
    before, after = results[f"ours_k{k}_graph_break"], results[f"ours_k{k}_custom_op"]
    results["custom_op_over_graph_break"] = {
        "compiled_seconds": after["compiled_seconds_per_forward"] / before["compiled_seconds_per_forward"],
        "compiled_over_eager": after["compiled_over_eager"] / before["compiled_over_eager"],
    }
    return results


def run_optimisation_study(
    settings: BenchSettings,
    repeats: int = 20,
    studies: tuple[str, ...] = ("history_buffer", "fused_qkv", "batched_cfg", "compile"),
    progress: bool = True,
    fit: dict[str, Any] | None = None,
) -> dict[str, Any]:
    r"""
    Run the part-3 studies on the benchmark's transformer (for `model="tiny"`: `BENCH_TINY_TRANSFORMER`) at the clip
    size of `settings`, with `settings.kv_cache_clips` history clips.

    Args:
        settings (`BenchSettings`): Model and clip size.
        repeats (`int`, *optional*, defaults to 20): Timed rounds per comparison.
        studies (`tuple[str, ...]`, *optional*): Any of `"history_buffer"`, `"fused_qkv"`, `"batched_cfg"`,
            `"compile"` (the slowest: inductor compiles three models).
        progress (`bool`, *optional*, defaults to `True`): Log each study as it starts.
        fit (`dict`, *optional*): The benchmark's `analysis["affine_fit"]` (fixed seconds per forward and effective
            FLOP rate of this machine), used to predict the tiny model's gains; without it only the FLOP/byte
            predictions are given.

    Returns:
        `dict`: One entry per study.
    """
    import torch

    known = ("history_buffer", "fused_qkv", "batched_cfg", "compile")
    unknown = [s for s in studies if s not in known]
    if unknown:
        raise ValueError(f"`studies` must be among {list(known)}, got {unknown}.")
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"`repeats` must be a positive int, got {repeats!r}.")
    torch.set_num_threads(settings.num_threads)
    transformer, spatial, temporal = _tiny_transformer(settings)
    transformer = transformer.to(settings.device).eval()
    functions = {
        "history_buffer": _study_history_buffer,
        "fused_qkv": _study_fused_qkv,
        "batched_cfg": _study_batched_cfg,
        "compile": _study_compile,
    }
    out: dict[str, Any] = {
        "settings": {
            "model": settings.model,
            "height": settings.height,
            "width": settings.width,
            "num_frames": settings.num_frames,
            "history_clips": settings.kv_cache_clips,
            "num_threads": settings.num_threads,
            "transformer": {k: v for k, v in dict(transformer.config).items() if not k.startswith("_")},
        }
    }
    from .cost_model import VideoShape, WanShape, wan21_t2v_1_3b

    k = settings.kv_cache_clips
    tiny_shape = WanShape.from_config(dict(transformer.config), text_len=settings.max_sequence_length)
    tiny_video = VideoShape(settings.height, settings.width, settings.num_frames, spatial, temporal)
    rate = fit.get("effective_gflops") if fit else None
    out["predictions"] = {
        # this CPU: the fitted FLOP rate and per-forward cost; 10 GB/s is an assumed single-core copy bandwidth
        "tiny_cpu": predict_optimisations(
            tiny_shape,
            tiny_video,
            k,
            dtype_bytes=4,
            peak_tflops=rate / 1e3 if rate else None,
            bandwidth_tbps=0.01,
            seconds_per_call=fit.get("seconds_per_call") if fit else None,
        ),
        "wan21_1_3b_480p_h200": predict_optimisations(wan21_t2v_1_3b(), VideoShape(480, 832, 81), k),
    }
    for name in studies:
        if progress:
            logger.warning(f"optimisation study: {name}")
        out[name] = functions[name](transformer, settings, (spatial, temporal), repeats)
    return out


def _ms(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds * 1e3:.3g} ms"


def _pct(share: float | None) -> str:
    return "–" if share is None else f"{share * 100:.2g} %"


def optimisations_markdown(study: dict[str, Any]) -> str:
    """A Markdown table of the part-3 studies: each change, its predictions, before / after, and the verdict."""
    big = study.get("predictions", {}).get("wan21_1_3b_480p_h200", {})
    tiny = study.get("predictions", {}).get("tiny_cpu", {})
    k = study.get("settings", {}).get("history_clips")
    rows = []
    if "history_buffer" in study:
        h, pb, pt = study["history_buffer"], big.get("prealloc", {}), tiny.get("prealloc", {})
        rows.append(
            [
                "history K/V gathered once per clip into a preallocated buffer; each forward writes only the current "
                "K/V into its tail (instead of `torch.cat` per block and step)",
                f"cat {pb.get('cat_bytes', 0) / 1e9:.1f} GB per forward ({_ms(pb.get('cat_seconds'))}) vs "
                f"{pb.get('prealloc_bytes', 0) / 1e9:.1f} GB ({_ms(pb.get('prealloc_seconds'))}): "
                f"{_pct(pb.get('saved_share_of_forward'))} of the compute bound",
                f"{_pct(pt.get('saved_share_of_forward'))} of a forward (10 GB/s assumed)",
                f"cat: {_ms(h['seconds_per_forward_kv']['cat'])} per forward "
                f"({_pct(h['cat_share_of_forward'])} of {_ms(h['forward_seconds'])})",
                f"{_ms(h['seconds_per_forward_kv']['prealloc'])}; one buffer storage per block and branch over "
                f"{h['steps']} steps: {'yes' if h['gathered_once_per_clip'] else '**no**'}",
                "kept (already in place; verified)",
            ]
        )
        rows.append(
            [
                "K/V stored and gathered in the model's dtype",
                "bf16: half the bytes of fp32 (the tables above assume it)",
                "–",
                "–",
                "bf16 model: stored K/V "
                + h["dtypes_bfloat16_model"]["stored_key"].replace("torch.", "")
                + ", buffer "
                + h["dtypes_bfloat16_model"]["buffer_key"].replace("torch.", ""),
                "kept (verified)",
            ]
        )
    if "fused_qkv" in study:
        f, pf = study["fused_qkv"], big.get("fused_qkv", {})
        rows.append(
            [
                "`transformer.fuse_qkv_projections()` with the processor installed",
                f"same FLOPs; {pf.get('activation_bytes_saved', 0) / 1e9:.1f} GB fewer activation reads per forward "
                f"({_pct(pf.get('saved_share_of_forward'))})",
                f"same FLOPs; {_pct(tiny.get('fused_qkv', {}).get('saved_share_of_forward'))}",
                f"unfused {_ms(f['median_seconds_per_forward']['unfused'])} per forward",
                f"fused {_ms(f['median_seconds_per_forward']['fused'])} ({f['fused_over_unfused']:.3f}x), "
                f"max abs diff {f['max_abs_diff']:.1g}, {f['fused_attention_modules']} attentions fused",
                "honoured (a user option; no gain measurable here)",
            ]
        )
    if "compile" in study:
        c = study["compile"]
        before = c.get(f"ours_k{k}_graph_break", {})
        after = c.get(f"ours_k{k}_custom_op", {})
        full = c.get(f"ours_k{k}_custom_op_fullgraph", {})
        stock = c.get("stock", {})
        diff = max(v.get("max_abs_diff_vs_eager", 0) for v in c.values() if isinstance(v, dict) and "fullgraph" in v)
        big_breaks = big.get("compile_graph_break", {}).get("breaks_per_forward")
        tiny_breaks = tiny.get("compile_graph_break", {}).get("breaks_per_forward")
        rows.append(
            [
                "`compile_repeated_blocks` (inductor) with the processor: the cache reached through the custom op "
                "`diffusers_longvid::cross_clip_attention` instead of a graph break at the cache call",
                f"host overhead, not in the FLOP/byte model: {big_breaks} breaks per forward against ~1 s of compute: "
                "negligible",
                f"{tiny_breaks} breaks per forward of ~20 ms: visible",
                f"graph break: {before.get('graph_breaks')} breaks while compiling, {before.get('unique_graphs')} graphs, "
                f"+{before.get('graphs_added_by_a_new_clip')} at a new clip, compiled / eager "
                f"{before.get('compiled_over_eager', 0):.3f}, `fullgraph=True` impossible",
                f"custom op: {after.get('graph_breaks')} breaks, {after.get('unique_graphs')} graphs, "
                f"+{after.get('graphs_added_by_a_new_clip')} at a new clip, compiled / eager "
                f"{after.get('compiled_over_eager', 0):.3f} (stock: {stock.get('compiled_over_eager', 0):.3f}); "
                f"`fullgraph=True` compiles ({full.get('compiled_over_eager', 0):.3f}); all equal eager to {diff:.1g}",
                "kept",
            ]
        )
    if "batched_cfg" in study:
        b = study["batched_cfg"]
        predicted = tiny.get("batched_cfg", {}).get("predicted_step_ratio")
        rows.append(
            [
                "CFG branches batched: cond and uncond in one forward of batch 2 (`CrossClipKVCache.batched_branches`), "
                "each branch attending its own history",
                "same FLOPs: ~1.00x per step (compute-bound), activations x2",
                f"{predicted:.3f}x per step (one fixed per-forward cost saved per step)"
                if predicted
                else "same FLOPs",
                f"two forwards: {_ms(b['median_seconds_per_step']['separate'])} per step",
                f"one forward: {_ms(b['median_seconds_per_step']['batched'])} ({b['batched_over_separate']:.3f}x); "
                f"outputs equal to {b['max_abs_diff_outputs']:.1g}, recorded K/V to {b['max_abs_diff_recorded_keys']:.1g}",
                "kept in the cache (opt-in); the pipeline does not use it yet",
            ]
        )
    header = [
        "change",
        "prediction, Wan2.1-1.3B 480p on H200",
        "prediction, this tiny model and CPU",
        "measured before",
        "measured after",
        "verdict",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
