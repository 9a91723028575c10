# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""Analysis and report files of `longvid bench`: the headline ratios, a Markdown report, JSON and PNG plots."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..utils import require
from .cost_model import (
    VideoShape,
    WanShape,
    flops_per_forward,
    pooled_tokens_per_clip,
    predicted_history_overhead_ratio,
    selected_tokens_per_clip,
    tokens_per_clip,
)
from .runner import BenchSettings


__all__ = [
    "BENCH_FILES",
    "CONSTANT_COST_TOLERANCE",
    "analyse",
    "markdown_report",
    "summary_markdown",
    "write_report",
]

BENCH_FILES: dict[str, str] = {
    "json": "bench_results.json",
    "markdown": "bench_report.md",
    "time_plot": "per_clip_time.png",
    "calls_plot": "model_calls.png",
    "memory_plot": "memory.png",
    "frame_plot": "seconds_per_frame.png",
}

# The bar: per-clip time over the last clips / over the first clips after warm-up.
CONSTANT_COST_TOLERANCE = 1.15

_MIB = 1024**2
_TIME_KEYS = ("seconds", "cpu_seconds", "transformer_seconds", "transformer_cpu_seconds")


def clock_keys(settings: BenchSettings) -> tuple[str, str, str]:
    """`(clip key, transformer key, label)` of the clock the checks use: CPU time on the CPU (a shared machine's load
    hardly changes it), wall time (synchronised) on an accelerator."""
    if settings.device == "cpu":
        return "cpu_seconds", "transformer_cpu_seconds", "CPU"
    return "seconds", "transformer_seconds", "wall"


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def _slope(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Least-squares slope of `ys` over `xs`."""
    if len(xs) < 2:
        return None
    mx, my = _mean(xs), _mean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return None if var == 0 else sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var


def _trend_ratio(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Value of the least-squares line at the last x over its value at the first x."""
    slope = _slope(xs, ys)
    if slope is None:
        return None
    mx, my = _mean(xs), _mean(ys)
    return _ratio(my + slope * (xs[-1] - mx), my + slope * (xs[0] - mx))


def _steady_indices(settings: BenchSettings, num_clips: int) -> list[int]:
    # The final clip is left out: the storage plan never records it (no later clip), so it runs fewer forwards.
    return list(range(min(settings.resolved_warmup_clips, num_clips - 1), num_clips - 1))


def _shapes(settings: BenchSettings, info: dict[str, Any]) -> tuple[WanShape, VideoShape]:
    shape = WanShape.from_config(info["transformer_config"], text_len=settings.max_sequence_length)
    video = VideoShape(
        settings.height,
        settings.width,
        settings.num_frames,
        vae_scale_factor_spatial=info["vae_scale_factor_spatial"],
        vae_scale_factor_temporal=info["vae_scale_factor_temporal"],
    )
    return shape, video


def _history_tokens(
    shape: WanShape, video: VideoShape, stride: int, pool: Sequence[int] = (1, 1, 1), keep_ratio: float = 1.0
) -> int:
    if keep_ratio != 1:
        return selected_tokens_per_clip(shape, video, keep_ratio)
    if tuple(pool) != (1, 1, 1):
        return pooled_tokens_per_clip(shape, video, pool)
    frames = video.latent_frames // shape.patch_size[0]
    return tokens_per_clip(shape, video) // frames * len(range(0, frames, stride))


def _samples_per_call(settings: BenchSettings, spec: dict[str, Any]) -> int:
    # batched CFG branches: one call runs both branches (results written before `batch_cfg` existed: two calls)
    return 2 if settings.cfg and spec.get("batch_cfg", False) else 1


def _clip_flops(settings: BenchSettings, info: dict[str, Any], spec: dict[str, Any], clip: dict[str, Any]) -> float:
    """Matmul FLOPs of one measured clip: its denoising forwards (with the history it attended) + its other ones."""
    shape, video = _shapes(settings, info)
    branches = 2 if settings.cfg else 1
    denoise_calls = info["evaluated_steps"] * branches  # in single-sample forwards
    other_calls = clip["model_calls"] * _samples_per_call(settings, spec) - denoise_calls  # recording forwards
    history = _history_tokens(
        shape,
        video,
        spec["history_frame_stride"],
        spec.get("history_pool", (1, 1, 1)),
        spec.get("history_keep_ratio", 1.0),
    )
    with_history = flops_per_forward(shape, video, clip["num_attended"], history_tokens_per_clip=history).total
    return denoise_calls * with_history + other_calls * flops_per_forward(shape, video).total


def _long_summary(settings: BenchSettings, run: dict[str, Any]) -> dict[str, Any]:
    clips = run["clips"]
    n = len(clips)
    w = settings.window
    steady = _steady_indices(settings, n)
    first = steady[:w]
    last = steady[-w:]
    summary: dict[str, Any] = {"steady_clips": [steady[0], steady[-1]] if steady else None}
    for key in _TIME_KEYS:
        series = [c[key] for c in clips]
        first_mean = _mean([series[i] for i in first])
        last_mean = _mean([series[i] for i in last])
        steady_mean = _mean([series[i] for i in steady])
        slope = _slope(steady, [series[i] for i in steady])
        summary[key] = {
            "steady_mean": steady_mean,
            "first_window_mean": first_mean,
            "last_window_mean": last_mean,
            "last_over_first": _ratio(last_mean, first_mean),
            "slope_per_clip": slope,
            "relative_slope_per_clip": _ratio(slope, steady_mean),
            # the least-squares line over all steady clips, last steady clip / first: a less noisy "last / first"
            "trend_last_over_first": _trend_ratio(steady, [series[i] for i in steady]),
            "total": sum(series),
        }
    calls = [c["model_calls"] for c in clips]
    frames = sum(c["new_frames"] for c in clips)
    kv = [c["kv_bytes"] for c in clips]
    held = [c["kv_stored_clips"] for c in clips[:-1]]
    fill = held.index(max(held)) if held and max(held) > 0 else None
    after_fill = kv[fill:-1] if fill is not None else []
    summary.update(
        {
            "first_window": [first[0], first[-1]] if first else None,
            "last_window": [last[0], last[-1]] if last else None,
            "model_calls_per_clip": sorted({calls[i] for i in steady}) if steady else sorted(set(calls)),
            "model_calls_total": sum(calls),
            "frames": frames,
            **{f"{key}_per_frame": sum(c[key] for c in clips) / frames for key in _TIME_KEYS},
            "kv_fill_clip": fill,
            "kv_bytes_after_fill_min": min(after_fill) if after_fill else 0,
            "kv_bytes_after_fill_max": max(after_fill) if after_fill else 0,
            "kv_bytes_flat_after_fill": bool(after_fill) and min(after_fill) == max(after_fill),
            "kv_bytes_last_clip": kv[-1],
            "kv_working_bytes_peak": max(c["kv_working_bytes_peak"] for c in clips),
            "rss_first_clip": clips[0]["rss_bytes"],
            "rss_last_clip": clips[-1]["rss_bytes"],
            "peak_rss": max(c["peak_rss_bytes"] for c in clips),
        }
    )
    return summary


def _fit_affine_cost(points: list[tuple[float, float, float]]) -> dict[str, Any] | None:
    """Least squares `seconds = a * calls + b * flops` (a fixed cost per forward plus a FLOP rate)."""
    if len(points) < 3:
        return None
    s_cc = sum(c * c for c, _, _ in points)
    s_cf = sum(c * f for c, f, _ in points)
    s_ff = sum(f * f for _, f, _ in points)
    s_cy = sum(c * y for c, _, y in points)
    s_fy = sum(f * y for _, f, y in points)
    det = s_cc * s_ff - s_cf * s_cf
    if det == 0:
        return None
    a = (s_cy * s_ff - s_fy * s_cf) / det
    b = (s_cc * s_fy - s_cf * s_cy) / det
    mean_y = _mean([y for _, _, y in points])
    ss_tot = sum((y - mean_y) ** 2 for _, _, y in points)
    ss_res = sum((y - a * c - b * f) ** 2 for c, f, y in points)
    return {
        "seconds_per_call": a,
        "seconds_per_flop": b,
        "effective_gflops": (1.0 / b / 1e9) if b > 0 else None,
        "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else None,
        "points": len(points),
    }


def analyse(result: dict[str, Any]) -> dict[str, Any]:
    r"""
    The figures of a benchmark result (`run_benchmark`'s `"runs"`): per-run summaries, ratios to plain chaining,
    the cost model's predictions, and the issue's checks.

    Steady state = clips from `warmup_clips` (default `kv_cache_clips`, the clips while the cache fills) to the
    second-to-last; the final clip is never recorded, so it runs fewer forwards and is left out. The constancy check
    compares the mean of the first `window` steady clips with the mean of the last `window`.
    """
    settings = BenchSettings.from_dict(result["settings"])
    clip_key, transformer_key, clock = clock_keys(settings)
    runs = result["runs"]
    summaries: dict[str, Any] = {}
    points: list[tuple[float, float, float]] = []
    flops: dict[str, list[float]] = {}
    for name, run in runs.items():
        if run.get("clips"):
            summaries[name] = _long_summary(settings, run)
            flops[name] = [_clip_flops(settings, run["info"], run["spec"], c) for c in run["clips"]]
            steady = _steady_indices(settings, len(run["clips"]))
            points += [
                (run["clips"][i]["model_calls"], flops[name][i], run["clips"][i][transformer_key]) for i in steady
            ]
        elif run.get("result"):
            res = run["result"]
            summaries[name] = {
                **{key: res[key] for key in _TIME_KEYS},
                **{f"{key}_per_frame": res[key] / res["frames"] for key in _TIME_KEYS},
                "model_calls_total": res["model_calls"],
                "frames": res["frames"],
                "model_calls_per_frame": res["model_calls"] / res["frames"],
                "peak_rss": res["peak_rss_bytes"],
            }
    fit = _fit_affine_cost(points)

    base = summaries.get("no_cache")
    for name, summary in summaries.items():
        if base is not None:
            for key in _TIME_KEYS:
                summary[f"{key}_per_frame_over_no_cache"] = _ratio(
                    summary[f"{key}_per_frame"], base[f"{key}_per_frame"]
                )
        if name not in flops:
            continue
        summary["model_calls_per_frame"] = summary["model_calls_total"] / summary["frames"]
        if base is None or name not in flops or "no_cache" not in flops:
            continue
        steady = _steady_indices(settings, len(runs[name]["clips"]))
        for key in _TIME_KEYS:
            summary[f"{key}_over_no_cache"] = _ratio(summary[key]["steady_mean"], base[key]["steady_mean"])
        # Load-normalised constancy: the per-clip ratio to plain chaining run at the same time (lockstep), whose work
        # is the same at every clip, so it probes the machine's speed at that moment.
        w = settings.window
        for key in ("seconds", "cpu_seconds"):
            ratios = [runs[name]["clips"][i][key] / runs["no_cache"]["clips"][i][key] for i in steady]
            summary[f"{key}_ratio_to_no_cache_last_over_first"] = _ratio(_mean(ratios[-w:]), _mean(ratios[:w]))
            summary[f"{key}_ratio_to_no_cache_trend_last_over_first"] = _trend_ratio(steady, ratios)
        ours_flops = sum(flops[name][i] for i in steady)
        plain_flops = sum(flops["no_cache"][i] for i in steady)
        summary["predicted_flop_ratio_over_no_cache"] = _ratio(ours_flops, plain_flops)
        if fit is not None:
            calls = sum(runs[name]["clips"][i]["model_calls"] for i in steady)
            plain_calls = sum(runs["no_cache"]["clips"][i]["model_calls"] for i in steady)
            a, b = fit["seconds_per_call"], fit["seconds_per_flop"]
            summary["predicted_affine_ratio_over_no_cache"] = _ratio(
                a * calls + b * ours_flops, a * plain_calls + b * plain_flops
            )

    analysis: dict[str, Any] = {"clock": clock, "runs": summaries, "affine_fit": fit, "checks": {}}
    checks = analysis["checks"]
    tolerance = settings.constant_cost_tolerance
    ours = summaries.get("ours")
    if ours is not None:
        ratio = ours[clip_key]["last_over_first"]
        checks["ours_constant_time"] = {
            "clock": clock,
            "value": ratio,
            "transformer_value": ours[transformer_key]["last_over_first"],
            "wall_value": ours["seconds"]["last_over_first"],
            "trend_value": ours[clip_key]["trend_last_over_first"],
            "normalised_trend_value": ours.get(f"{clip_key}_ratio_to_no_cache_trend_last_over_first"),
            "noise_floor_no_cache": (summaries.get("no_cache") or {}).get(clip_key, {}).get("last_over_first"),
            "normalised_value": ours.get(f"{clip_key}_ratio_to_no_cache_last_over_first"),
            "wall_normalised_value": ours.get("seconds_ratio_to_no_cache_last_over_first"),
            "target": f"<= {tolerance}",
            "passed": None if ratio is None else ratio <= tolerance,  # None: too few clips
        }
        checks["ours_kv_flat"] = {
            "value": [ours["kv_bytes_after_fill_min"], ours["kv_bytes_after_fill_max"]],
            "fill_clip": ours["kv_fill_clip"],
            "target": "min == max after the cache fills",
            "passed": ours["kv_bytes_flat_after_fill"],
        }
        info = runs["ours"]["info"]
        shape, video = _shapes(settings, info)
        checks["ours_overhead_vs_prediction"] = {
            "clock": clock,
            "measured_clip": ours.get(f"{clip_key}_over_no_cache"),
            "measured_transformer": ours.get(f"{transformer_key}_over_no_cache"),
            "measured_wall": ours.get("seconds_over_no_cache"),
            "predicted_history_overhead_ratio": predicted_history_overhead_ratio(
                shape, video, settings.kv_cache_clips, steps=info["evaluated_steps"]
            ),
            "predicted_flop_ratio": ours.get("predicted_flop_ratio_over_no_cache"),
            "predicted_affine_ratio": ours.get("predicted_affine_ratio_over_no_cache"),
        }
    full = summaries.get("full_history")
    if full is not None:
        ratio = full[clip_key]["last_over_first"]
        checks["full_history_grows"] = {
            "clock": clock,
            "value": ratio,
            "transformer_value": full[transformer_key]["last_over_first"],
            "trend_value": full[clip_key]["trend_last_over_first"],
            "normalised_trend_value": full.get(f"{clip_key}_ratio_to_no_cache_trend_last_over_first"),
            "normalised_value": full.get(f"{clip_key}_ratio_to_no_cache_last_over_first"),
            "wall_normalised_value": full.get("seconds_ratio_to_no_cache_last_over_first"),
            "slope_seconds_per_clip": full[clip_key]["slope_per_clip"],
            "target": f"> {tolerance} (outside the constant-cost band) with a positive slope",
            "passed": None if ratio is None else ratio > tolerance and (full[clip_key]["slope_per_clip"] or 0) > 0,
        }
    compressed = summaries.get("ours_compressed")
    if compressed is not None:
        ratio = compressed[clip_key]["last_over_first"]
        checks["compressed_constant_time"] = {
            "clock": clock,
            "value": ratio,
            "transformer_value": compressed[transformer_key]["last_over_first"],
            "normalised_value": compressed.get(f"{clip_key}_ratio_to_no_cache_last_over_first"),
            "target": f"<= {tolerance}",
            "passed": None if ratio is None else ratio <= tolerance,
        }
        checks["compressed_kv_flat"] = {
            "value": [compressed["kv_bytes_after_fill_min"], compressed["kv_bytes_after_fill_max"]],
            "fill_clip": compressed["kv_fill_clip"],
            "target": "min == max after the cache fills",
            "passed": compressed["kv_bytes_flat_after_fill"],
        }
    # Measured transformer-time ratio over plain chaining against the cost model's FLOP ratio, per cache run: they
    # agree where attention FLOPs dominate (the `attention` model), not where fixed per-forward costs do (`tiny`).
    agreement = {}
    for name, summary in summaries.items():
        measured = summary.get(f"{transformer_key}_over_no_cache")
        predicted = summary.get("predicted_flop_ratio_over_no_cache")
        if name == "no_cache" or measured is None or predicted is None:
            continue
        gap = measured / predicted - 1.0
        agreement[name] = {
            "measured_transformer": measured,
            "measured_clip": summary.get(f"{clip_key}_over_no_cache"),
            "predicted_flop_ratio": predicted,
            "relative_gap": gap,
            "passed": abs(gap) <= settings.prediction_tolerance,
        }
    if agreement:
        checks["prediction_agreement"] = {
            "clock": clock,
            "target": f"|measured / predicted - 1| <= {settings.prediction_tolerance}",
            "runs": agreement,
        }
    batched = summaries.get("ours_batched")
    if ours is not None and batched is not None:
        checks["batched_cfg"] = {
            "clock": clock,
            "transformer_ratio": _ratio(batched[transformer_key]["steady_mean"], ours[transformer_key]["steady_mean"]),
            "clip_ratio": _ratio(batched[clip_key]["steady_mean"], ours[clip_key]["steady_mean"]),
            "batched_calls_per_clip": batched["model_calls_per_clip"],
            "unbatched_calls_per_clip": ours["model_calls_per_clip"],
        }
    return analysis


# ---------------------------------------------------------------------------------------------------- Markdown
def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, float):
        if value == 0:
            return "0"
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.{digits}g}"
    return str(value)


def _mib(value: int | None) -> str:
    return "–" if value is None else f"{value / _MIB:,.1f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    align = [":---"] + ["---:"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(_fmt(c) if not isinstance(c, str) else c for c in row) + " |" for row in rows]
    return lines


def markdown_report(result: dict[str, Any], command: str | None = None, summary: bool = False) -> str:
    """The Markdown report of a benchmark result (what `bench_report.md` holds).

    With `summary=True`: no title, no per-clip table, and bold labels instead of headings, to paste into a document
    (`docs/performance.md` holds `summary_markdown` of `docs/bench/bench_results.json`).
    """

    def heading(text: str) -> list[str]:
        return [f"**{text}**" if summary else f"## {text}", ""]

    settings = BenchSettings.from_dict(result["settings"])
    clip_key, transformer_key, clock = clock_keys(settings)
    analysis = result["analysis"]
    runs, summaries, checks = result["runs"], analysis["runs"], analysis["checks"]
    env = result["environment"]
    first_info = next((r["info"] for r in runs.values() if r.get("info") and "transformer_config" in r["info"]), {})
    cfg = first_info.get("transformer_config", {})
    tolerance = settings.constant_cost_tolerance
    out = [] if summary else ["# `longvid bench`", ""]
    if command and not summary:
        out += ["```bash", command, "```", ""]
    out += [
        f"Model `{settings.model}`: {first_info.get('transformer_class', '?')} with "
        f"{first_info.get('transformer_parameters', 0):,} parameters ({cfg.get('num_layers')} layers, "
        f"{cfg.get('num_attention_heads')} heads x {cfg.get('attention_head_dim')}, ffn {cfg.get('ffn_dim')}, "
        f"{cfg.get('in_channels')} input channels, {first_info.get('transformer_dtype')}); {settings.height}x"
        f"{settings.width}, {settings.num_frames} frames per clip ({settings.num_condition_frames} condition "
        f"frames), {settings.num_inference_steps} steps, CFG {settings.guidance_scale}, {settings.num_clips} clips, "
        f"selector `{settings.selector}`, schedule `{settings.schedule}`, {settings.num_threads} thread(s) per run.",
        f"torch {env['torch']}, diffusers {env['diffusers']}, {env['platform']}, {env['cpu_count']} CPUs, "
        f"load average at start {[round(x, 1) for x in env.get('load_average') or []]}; "
        f"wall time {env['wall_seconds']:.0f} s.",
        "",
        f"Steady state: clips {settings.resolved_warmup_clips} to {settings.num_clips - 2} (after the cache fills; "
        "the final clip is never recorded and is left out). Times are per clip and include everything the "
        "pipeline does for it (text encoding, VAE encode of the condition, denoising, recording, VAE decode); "
        f'"transformer" is the transformer forwards alone. The checks use **{clock} time**'
        + (
            " (this process's CPU seconds, `time.process_time`, one torch thread per run): on a shared CPU the "
            "wall clock follows the machine's load, the CPU time hardly does."
            if clock == "CPU"
            else " (synchronised)."
        )
        + " Ratios are the figures to read; absolute times are context only.",
        "",
        *heading("Checks"),
    ]
    rows = []
    if "ours_constant_time" in checks:
        c = checks["ours_constant_time"]
        rows.append(
            [f"ours: {clock} time per clip, last 5 / first 5 steady clips", c["value"], c["target"], c["passed"]]
        )
        rows.append(
            [
                f"ours: the same, transformer {clock} time only",
                c["transformer_value"],
                c["target"],
                c["transformer_value"] is not None and c["transformer_value"] <= tolerance,
            ]
        )
        normalised = [(clock, c["normalised_value"])]
        if clock != "wall":
            normalised.append(("wall", c["wall_normalised_value"]))
        for label, value in normalised:
            rows.append(
                [
                    f"ours: {label} time per clip ÷ plain chaining's at the same clip (lockstep), last 5 / first 5",
                    value,
                    c["target"],
                    value is not None and value <= tolerance,
                ]
            )
        rows.append(
            [
                f"ours: fitted line over all steady clips, last / first ({clock}; ÷ plain chaining)",
                f"{_fmt(c['trend_value'])} ({_fmt(c['normalised_trend_value'])})",
                "–",
                "–",
            ]
        )
        rows.append(
            [
                f"noise floor: plain chaining's own {clock} time per clip, last 5 / first 5 (1 by construction)",
                c["noise_floor_no_cache"],
                "–",
                "–",
            ]
        )
        rows.append(
            [
                "ours: wall time per clip, last 5 / first 5 (context: follows the machine's load)",
                c["wall_value"],
                "–",
                "–",
            ]
        )
    if "ours_kv_flat" in checks:
        c = checks["ours_kv_flat"]
        rows.append(
            [
                f"ours: K/V bytes held from clip {c['fill_clip']} on (MiB, min-max)",
                f"{_mib(c['value'][0])}-{_mib(c['value'][1])}",
                c["target"],
                c["passed"],
            ]
        )
    if "full_history_grows" in checks:
        c = checks["full_history_grows"]
        rows.append(
            [
                f"full history: {clock} time per clip, last 5 / first 5 steady clips",
                c["value"],
                c["target"],
                c["passed"],
            ]
        )
        rows.append(
            [
                f"full history: {clock} time ÷ plain chaining's at the same clip, last 5 / first 5",
                c["normalised_value"],
                c["target"],
                c["normalised_value"] is not None and c["normalised_value"] > tolerance,
            ]
        )
        rows.append(
            [
                f"full history: fitted line over all steady clips, last / first ({clock}; ÷ plain chaining)",
                f"{_fmt(c['trend_value'])} ({_fmt(c['normalised_trend_value'])})",
                "–",
                "–",
            ]
        )
    if "compressed_constant_time" in checks:
        c = checks["compressed_constant_time"]
        rows.append(
            [f"compressed: {clock} time per clip, last 5 / first 5 steady clips", c["value"], c["target"], c["passed"]]
        )
        rows.append(
            [
                f"compressed: {clock} time ÷ plain chaining's at the same clip, last 5 / first 5",
                c["normalised_value"],
                c["target"],
                c["normalised_value"] is not None and c["normalised_value"] <= tolerance,
            ]
        )
        k = checks["compressed_kv_flat"]
        rows.append(
            [
                f"compressed: K/V bytes held from clip {k['fill_clip']} on (MiB, min-max)",
                f"{_mib(k['value'][0])}-{_mib(k['value'][1])}",
                k["target"],
                k["passed"],
            ]
        )
    out += _table(["check", "value", "target", "passed"], rows) + [""]
    if "prediction_agreement" in checks:
        c = checks["prediction_agreement"]
        out += [
            f"Measured ratio over plain chaining (steady clips, {clock} time) against the cost model's FLOP ratio for "
            f"the same shapes and forwards (target {c['target']}):",
            "",
            *_table(
                [
                    "run",
                    "measured, transformer",
                    "predicted (FLOPs)",
                    "measured / predicted - 1",
                    "measured, per clip",
                    "agrees",
                ],
                [
                    [
                        f"`{name}`",
                        r["measured_transformer"],
                        r["predicted_flop_ratio"],
                        f"{r['relative_gap']:+.3f}",
                        r["measured_clip"],
                        r["passed"],
                    ]
                    for name, r in c["runs"].items()
                ],
            ),
            "",
        ]
    if "batched_cfg" in checks:
        c = checks["batched_cfg"]
        out += [
            f"Batched CFG branches (`ours_batched`, one forward of batch 2 per step) ÷ two forwards (`ours`): "
            f"**{_fmt(c['transformer_ratio'])}x** transformer {clock} time, **{_fmt(c['clip_ratio'])}x** per clip "
            f"({', '.join(map(str, c['batched_calls_per_clip']))} vs "
            f"{', '.join(map(str, c['unbatched_calls_per_clip']))} transformer calls per clip).",
            "",
        ]
    if "ours_overhead_vs_prediction" in checks:
        c = checks["ours_overhead_vs_prediction"]
        out += [
            f"Overhead of ours over plain chaining (steady clips): measured **{_fmt(c['measured_clip'])}x** per clip "
            f"and **{_fmt(c['measured_transformer'])}x** transformer time ({clock}; wall per clip "
            f"{_fmt(c['measured_wall'])}x); cost model `predicted_history_overhead_ratio` "
            f"**{_fmt(c['predicted_history_overhead_ratio'])}x** (matmul FLOPs only); FLOPs plus a fixed cost per "
            f"forward, fitted on all runs (below): **{_fmt(c['predicted_affine_ratio'])}x**.",
            "",
        ]
    fit = analysis.get("affine_fit")
    if fit:
        out += [
            f"Fit over every steady clip of every run: transformer {clock} seconds = "
            f"{fit['seconds_per_call'] * 1e3:.2f} ms per forward + FLOPs / ({_fmt(fit['effective_gflops'])} "
            f"GFLOP/s), R² = {_fmt(fit['r2'])} ({fit['points']} clips).",
            "",
        ]

    out += heading("Runs")
    rows = []
    for name, s in summaries.items():
        label = runs[name]["spec"].get("label") or name
        per_frame = s[f"{clip_key}_per_frame"]
        per_frame_ratio = s.get(f"{clip_key}_per_frame_over_no_cache")
        if "steady_clips" in s:
            rows.append(
                [
                    f"`{name}`: {label}",
                    ", ".join(str(c) for c in s["model_calls_per_clip"]),
                    s[clip_key]["steady_mean"],
                    s["seconds"]["steady_mean"],
                    s[transformer_key]["steady_mean"],
                    per_frame,
                    s.get(f"{clip_key}_over_no_cache"),
                    s.get(f"{transformer_key}_over_no_cache"),
                    s.get("predicted_flop_ratio_over_no_cache"),
                    s[clip_key]["last_over_first"],
                    _mib(s["kv_bytes_after_fill_max"]),
                    _mib(s["peak_rss"]),
                ]
            )
        else:
            rows.append(
                [
                    f"`{name}`: {label}",
                    f"{s['model_calls_per_frame']:.2f} / frame",
                    "–",
                    "–",
                    "–",
                    per_frame,
                    per_frame_ratio,
                    s.get(f"{transformer_key}_per_frame_over_no_cache"),
                    "–",
                    "–",
                    "–",
                    _mib(s["peak_rss"]),
                ]
            )
    out += _table(
        [
            "run",
            "model calls / clip",
            f"{clock} s / clip",
            "wall s / clip",
            f"transformer {clock} s / clip",
            f"{clock} s / frame",
            "x no cache",
            "x no cache (transformer)",
            "x no cache (FLOPs)",
            "last 5 / first 5",
            "K/V held MiB",
            "peak RSS MiB",
        ],
        rows,
    )
    out += [
        "",
        "`x no cache` compares steady clips for the long-video runs and time per generated frame for the SkyReels "
        "rows. The SkyReels runs generate as many frames as one long-video run, with one prompt (its long mode "
        "takes one), after the long-video runs. K/V held: after the cache fills (the largest value for full history).",
        "",
    ]
    if "ours_trflow" in summaries and "ours" in summaries:
        t, e = summaries["ours_trflow"], summaries["ours"]
        out += [
            *heading("T-RFlow vs Euler (same `num_inference_steps`)"),
            *_table(
                [
                    "scheduler",
                    "evaluated steps",
                    "model calls / clip",
                    f"transformer {clock} s / clip",
                    f"{clock} s / clip",
                ],
                [
                    [
                        "Euler (`ours`)",
                        runs["ours"]["info"]["evaluated_steps"],
                        ", ".join(map(str, e["model_calls_per_clip"])),
                        e[transformer_key]["steady_mean"],
                        e[clip_key]["steady_mean"],
                    ],
                    [
                        f"T-RFlow [{settings.tau_low}, {settings.tau_high}] (`ours_trflow`)",
                        runs["ours_trflow"]["info"]["evaluated_steps"],
                        ", ".join(map(str, t["model_calls_per_clip"])),
                        t[transformer_key]["steady_mean"],
                        t[clip_key]["steady_mean"],
                    ],
                ],
            ),
            "",
            f"T-RFlow / Euler: "
            f"{_fmt(_ratio(t[transformer_key]['steady_mean'], e[transformer_key]['steady_mean']))}x transformer "
            f"time, {_fmt(_ratio(t[clip_key]['steady_mean'], e[clip_key]['steady_mean']))}x time per clip ({clock}).",
            "",
        ]
    long_names = [n for n in summaries if "steady_clips" in summaries[n]]
    if long_names and not summary:
        out += [
            "## Per clip",
            "",
            f"{clock} seconds per clip (transformer {clock} seconds) and K/V MiB held after the clip.",
            "",
        ]
        header = ["clip"] + [f"`{n}` s" for n in long_names] + [f"`{n}` K/V" for n in long_names]
        rows = []
        for i in range(settings.num_clips):
            row: list[Any] = [str(i)]
            for n in long_names:
                c = runs[n]["clips"][i]
                row.append(f"{c[clip_key]:.3f} ({c[transformer_key]:.3f})")
            for n in long_names:
                row.append(_mib(runs[n]["clips"][i]["kv_bytes"]))
            rows.append(row)
        out += _table(header, rows) + [""]
    return "\n".join(out)


def summary_markdown(result: dict[str, Any]) -> str:
    """The checks, runs and T-RFlow tables of a benchmark result, without title or per-clip table."""
    return markdown_report(result, summary=True)


# ---------------------------------------------------------------------------------------------------- plots
def _plots(result: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    require("matplotlib", "plots in benchmark reports")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    runs, summaries = result["runs"], result["analysis"]["runs"]
    long_names = [n for n, r in runs.items() if r.get("clips")]
    paths: dict[str, Path] = {}

    def save(fig: Figure, key: str) -> None:
        FigureCanvasAgg(fig)
        path = out_dir / BENCH_FILES[key]
        fig.savefig(path, dpi=110, bbox_inches="tight")
        paths[key] = path

    settings = BenchSettings.from_dict(result["settings"])
    clip_key, transformer_key, clock = clock_keys(settings)
    panels = [(clip_key, f"{clock} time per clip"), (transformer_key, f"transformer {clock} time per clip")]
    if clip_key != "seconds":
        panels.append(("seconds", "wall time per clip (follows the machine's load)"))
    fig = Figure(figsize=(5.5 * len(panels), 4))
    for ax, (key, title) in zip(fig.subplots(1, len(panels)), panels):
        for n in long_names:
            clips = runs[n]["clips"]
            ax.plot([c["clip"] for c in clips], [c[key] for c in clips], marker=".", label=n)
        ax.set_xlabel("clip index")
        ax.set_ylabel("seconds")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    fig.axes[0].legend(fontsize=8)
    save(fig, "time_plot")

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for n in long_names:
        clips = runs[n]["clips"]
        ax.plot([c["clip"] for c in clips], [c["model_calls"] for c in clips], marker=".", label=n)
    ax.set_xlabel("clip index")
    ax.set_ylabel("transformer forwards")
    ax.set_title("model calls per clip")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, "calls_plot")

    fig = Figure(figsize=(11, 4))
    ax_kv, ax_rss = fig.subplots(1, 2)
    for n in long_names:
        clips = runs[n]["clips"]
        x = [c["clip"] for c in clips]
        ax_kv.plot(x, [c["kv_bytes"] / _MIB for c in clips], marker=".", label=n)
        line = ax_rss.plot(x, [(c["rss_bytes"] or 0) / _MIB for c in clips], marker=".", label=f"{n} (current)")[0]
        ax_rss.plot(
            x, [c["peak_rss_bytes"] / _MIB for c in clips], linestyle="--", color=line.get_color(), label=f"{n} (peak)"
        )
    ax_kv.set_title("K/V bytes held after each clip")
    ax_kv.set_ylabel("MiB")
    ax_rss.set_title(
        "process RSS"
        + (" (one process for all runs)" if result["settings"]["schedule"] == "inline" else " (one process per run)")
    )
    ax_rss.set_ylabel("MiB")
    for ax in (ax_kv, ax_rss):
        ax.set_xlabel("clip index")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    save(fig, "memory_plot")

    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    names = list(summaries)
    ax.barh(names, [summaries[n][f"{clip_key}_per_frame"] for n in names])
    ax.invert_yaxis()
    ax.set_xlabel(f"{clock} seconds per generated frame")
    ax.set_title("time per generated frame")
    ax.grid(alpha=0.3, axis="x")
    save(fig, "frame_plot")
    return paths


def _strict_json(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict_json(v) for v in value]
    return value


def write_report(result: dict[str, Any], out_dir: str | os.PathLike, command: str | None = None) -> dict[str, Path]:
    r"""
    Write `bench_results.json`, `bench_report.md` and the PNG plots (`per_clip_time.png`, `model_calls.png`,
    `memory.png`, `seconds_per_frame.png`) of a `run_benchmark` result into `out_dir` (created if missing).

    Args:
        result (`dict`): `run_benchmark(...)`'s return value.
        out_dir (`str` or `os.PathLike`): The folder.
        command (`str`, *optional*): The command line, quoted at the top of the Markdown report.

    Returns:
        `dict[str, Path]`: The written files, keyed as `BENCH_FILES`.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    data = dict(result, command=command)
    paths["json"] = out / BENCH_FILES["json"]
    paths["json"].write_text(json.dumps(_strict_json(data), indent=2), encoding="utf-8")
    paths["markdown"] = out / BENCH_FILES["markdown"]
    paths["markdown"].write_text(markdown_report(result, command) + "\n", encoding="utf-8")
    paths.update(_plots(result, out))
    return paths
