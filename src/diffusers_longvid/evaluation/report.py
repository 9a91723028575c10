# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""Reports of an evaluation: JSON, a Markdown table and PNG plots of every metric over the time windows."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from ..utils import require
from .evaluate import REFERENCE_NOTE, EvalResult, EvalSuiteResult
from .metrics import AVERAGE_FREQUENCY


__all__ = ["write_eval_report", "format_markdown", "METRIC_LABELS", "PAPER_SCORES", "REPORT_FILES"]

# File names inside the report folder.
REPORT_FILES: dict[str, str] = {"json": "eval_results.json", "markdown": "eval_report.md", "plot": "eval_windows.png"}

METRIC_LABELS: dict[str, str] = {
    "subject_consistency": "Subject consistency",
    "background_consistency": "Background consistency",
    "motion_smoothness": "Motion smoothness",
    "dynamic_degree": "Dynamic degree",
    "aesthetic_quality": "Aesthetic quality",
    "imaging_quality": "Imaging quality",
    AVERAGE_FREQUENCY: "AF (average frequency)",
}
_SHORT_LABELS: dict[str, str] = {
    "subject_consistency": "subject",
    "background_consistency": "background",
    "motion_smoothness": "smoothness",
    "dynamic_degree": "dynamic",
    "aesthetic_quality": "aesthetic",
    "imaging_quality": "imaging",
    AVERAGE_FREQUENCY: "AF",
}
# The paper's Table 1 ("ours", Wan2.1-T2V-1.3B, 480p, 16 fps, single-shot long video, VBench), for context in
# reference-backend reports. Its imaging quality is MUSIQ.
PAPER_SCORES: dict[str, float] = {
    "subject_consistency": 0.9457,
    "background_consistency": 0.9691,
    "motion_smoothness": 0.9853,
    "dynamic_degree": 0.7569,
    "aesthetic_quality": 0.5358,
    "imaging_quality": 0.6620,
}


def _fmt(value: float | None, digits: int = 4, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _sanitize(value: Any) -> Any:
    """NaN/inf become `null`, so the file is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _sanitize(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_sanitize(v) for v in value]
    return value


def _label(metric: str, proxy_dimensions: list[str]) -> str:
    return METRIC_LABELS[metric] + (" †" if metric in proxy_dimensions else "")


def _note(result: EvalResult | EvalSuiteResult) -> str:
    if result.proxies:
        return (
            "> **Offline proxies — NOT comparable to published VBench numbers** (e.g. the paper's Table 1): classical "
            "image statistics stand in for VBench's models; compare runs with each other only. † marks a proxy."
        )
    return "> " + REFERENCE_NOTE + " † marks such a dimension."


def _video_sections(result: EvalResult, heading: str) -> list[str]:
    proxies = result.proxy_dimensions
    window = f"{result.window_seconds:g} s" if result.window_seconds else "whole video"
    clip = f"{result.clip_seconds:g} s" if result.clip_seconds else "whole window"
    lines = [
        f"{heading} {result.name}",
        "",
        f"Backend `{result.backend}` · {result.num_frames} frames at {result.fps:g} fps "
        f"({result.duration_seconds:.1f} s) · "
        f"{result.width}x{result.height} · windows: {window} · clips: {clip}",
        "",
        "| Metric | Overall | Slope / min | Method |",
        "| --- | ---: | ---: | --- |",
    ]
    for metric in result.metrics:
        method = result.methods.get(metric, "paper Eq. 6, spectral centroid of luma (0 = DC, 1 = Nyquist)")
        lines.append(
            f"| {_label(metric, proxies)} | {_fmt(result.scores[metric])} | "
            f"{_fmt(result.slopes.get(metric), signed=True)} | {method} |"
        )
    lines += ["", "Per window:", ""]
    header = "| Window | Time (s) | " + " | ".join(_SHORT_LABELS[m] for m in result.metrics) + " |"
    lines += [header, "| ---: | --- |" + " ---: |" * len(result.metrics)]
    for w in result.windows:
        cells = " | ".join(_fmt(w.scores.get(m)) for m in result.metrics)
        lines.append(f"| {w.index} | {w.start_seconds:.1f}–{w.end_seconds:.1f} | {cells} |")
    return lines + [""]


def format_markdown(result: EvalResult | EvalSuiteResult) -> str:
    """The Markdown report of an evaluation (what `write_eval_report` writes to `eval_report.md`)."""
    lines = ["# VBench-style evaluation", "", _note(result), ""]
    if isinstance(result, EvalSuiteResult):
        metrics = result.metrics
        lines += [
            f"## Summary ({len(result.videos)} videos, backend `{result.backend}`)",
            "",
            "| Video | " + " | ".join(_SHORT_LABELS[m] for m in metrics) + " |",
            "| --- |" + " ---: |" * len(metrics),
        ]
        for name, video in result.videos.items():
            lines.append(f"| {name} | " + " | ".join(_fmt(video.scores.get(m)) for m in metrics) + " |")
        lines.append("| **mean** | " + " | ".join(f"**{_fmt(result.scores.get(m))}**" for m in metrics) + " |")
        lines.append("| slope / min | " + " | ".join(_fmt(result.slopes.get(m), signed=True) for m in metrics) + " |")
        lines.append("")
        if result.skipped:
            lines += [f"Skipped {len(result.skipped)} file(s) that could not be read or evaluated:", ""]
            lines += [f"- `{name}`: {reason}" for name, reason in result.skipped.items()]
            lines.append("")
        for video in result.videos.values():
            lines += _video_sections(video, "##")
    else:
        lines += _video_sections(result, "##")
    if not result.proxies:
        lines += [
            "Paper, Table 1 (ours; Wan2.1-T2V-1.3B, 480p, 16 fps, VBench, MUSIQ for imaging quality), for context:",
            "",
            "| " + " | ".join(_SHORT_LABELS[m] for m in PAPER_SCORES) + " |",
            "|" + " ---: |" * len(PAPER_SCORES),
            "| " + " | ".join(f"{v:.4f}" for v in PAPER_SCORES.values()) + " |",
            "",
        ]
    return "\n".join(lines)


def _plot(result: EvalResult | EvalSuiteResult, path: Path) -> None:
    require("matplotlib", "plots in evaluation reports")
    # the object-oriented API: no pyplot, no global backend switch
    from matplotlib.figure import Figure

    videos = list(result.videos.values()) if isinstance(result, EvalSuiteResult) else [result]
    metrics = result.metrics
    columns = min(4, len(metrics))
    rows = math.ceil(len(metrics) / columns)
    figure = Figure(figsize=(3.6 * columns, 2.8 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        for video in videos:
            times, values = video.window_series(metric)
            points = [(t, v) for t, v in zip(times, values) if v is not None]
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3, label=video.name)
        ax.set_title(_label(metric, result.proxy_dimensions), fontsize=9)
        ax.set_xlabel("window centre (s)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.set_visible(False)
    if len(videos) > 1 and len(videos) <= 10:
        axes.flat[0].legend(fontsize=6)
    title = "VBench-style metrics per time window"
    figure.suptitle(title + (" — offline proxies, not comparable to VBench" if result.proxies else ""), fontsize=10)
    figure.savefig(path, dpi=110)


def write_eval_report(result: EvalResult | EvalSuiteResult, out_dir: str | os.PathLike) -> dict[str, Path]:
    r"""
    Write an evaluation's report: `eval_results.json`, `eval_report.md` and `eval_windows.png` (every metric over
    the time windows; one line per video for a folder).

    Args:
        result ([`EvalResult`] or [`EvalSuiteResult`]): What [`evaluate_video`] returned.
        out_dir (`str` or `os.PathLike`): The folder to write to (created if needed).

    Returns:
        `dict[str, Path]`: the written files, keyed `"json"`, `"markdown"` and `"plot"`.
    """
    if not isinstance(result, (EvalResult, EvalSuiteResult)):
        raise TypeError(f"`result` must be an `EvalResult` or `EvalSuiteResult`, got {type(result).__name__}.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {key: out / name for key, name in REPORT_FILES.items()}
    with open(paths["json"], "w", encoding="utf-8") as handle:
        json.dump(_sanitize(result.to_dict()), handle, indent=2, allow_nan=False)
        handle.write("\n")
    paths["markdown"].write_text(format_markdown(result), encoding="utf-8")
    _plot(result, paths["plot"])
    return paths
