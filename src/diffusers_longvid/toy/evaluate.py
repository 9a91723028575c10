# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""Evaluation of a generated toy-world video against the ground truth rendered from the same script.

The ground truth is `render_script_clips(script, num_frames, num_condition_frames)`: the same clip arithmetic as the
extension pipeline, so frame `t` of the generated video is compared with frame `t` of the render. Every metric is
computed per time window and over the whole video (pooled over all frames, not averaged over windows).

Colours are compared in sRGB, 0-255, with the Euclidean distance (a shift of `+d` on one channel is a distance of
`d`; the closest two object colours of the palette, yellow and orange, are 83 apart).

| metric | what | perfect |
|---|---|---|
| `psnr` | PSNR vs the ground truth, dB (capped at `PSNR_CAP`) | `PSNR_CAP` |
| `background_color_error` | distance of the mean generated colour of the GT background pixels to GT's, per frame | 0 |
| `background_pixel_error` | mean per-pixel colour distance on the GT background pixels (texture, noise count) | 0 |
| `object_color_error` | distance of the mean generated colour inside the object to its GT colour, per frame | 0 |
| `object_color_drift` | the same distance to the object's own generated colour at its first appearance | 0 |
| `reentry_color_error` | `object_color_error` in the clips where an object comes back (`is_reentry`) | 0 |
| `reentry_accuracy` | fraction of re-entries whose generated colour is nearest to the right named colour | 1 |
| `sharpness_ratio` | gradient energy (luma) generated / GT; > 1 over-sharpened, < 1 blurry | 1 |
| `hf_noise` | RMS of the high-pass residual (pixel minus 3x3 mean) where GT is constant over 5x5 | 0 |
| `af`, `af_gt` | AF (average frequency, paper Eq. 6) of the generated and GT frames | `af == af_gt` |
| `frame_difference`, `frame_difference_gt` | mean absolute difference of consecutive frames, 0-255 | equal |

Object pixels are those of the GT mask where the GT frame shows exactly the object's colour, two pixels inside the
mask's edge (one when the object is too small for two), so the anti-aliased rim and a slight blur of it are left out;
background pixels are those at least one pixel away from every object mask. A (frame, object) pair needs
`min_object_pixels` such pixels to count.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..utils import require
from .scripts import is_reentry
from .world import COLORS, ToyVideo, render_script_clips, validate_script


__all__ = [
    "METRICS",
    "PSNR_CAP",
    "TOY_EVAL_FILES",
    "ToyEvalResult",
    "evaluate_toy_video",
    "format_toy_eval_markdown",
    "write_toy_eval_report",
]

PSNR_CAP = 100.0  # dB; an exact copy has an infinite PSNR, which neither JSON nor a plot can hold
TOY_EVAL_FILES: dict[str, str] = {"json": "toy_eval.json", "markdown": "toy_eval.md", "plot": "toy_eval.png"}

# name -> (label, what a perfect video scores)
METRICS: dict[str, tuple[str, str]] = {
    "psnr": ("PSNR vs GT (dB)", f"{PSNR_CAP:g} (cap)"),
    "background_color_error": ("Background colour error (RGB)", "0"),
    "background_pixel_error": ("Background pixel error (RGB)", "0"),
    "object_color_error": ("Object colour error vs GT (RGB)", "0"),
    "object_color_drift": ("Object colour drift vs first appearance (RGB)", "0"),
    "reentry_color_error": ("Re-entry colour error (RGB)", "0"),
    "reentry_accuracy": ("Re-entry colour accuracy", "1"),
    "sharpness_ratio": ("Sharpness ratio (gradient energy gen/GT)", "1"),
    "hf_noise": ("HF noise on flat regions (RMS, RGB)", "0"),
    "af": ("AF (generated)", "= af_gt"),
    "af_gt": ("AF (ground truth)", "–"),
    "frame_difference": ("Frame difference (generated)", "= frame_difference_gt"),
    "frame_difference_gt": ("Frame difference (ground truth)", "–"),
}
_LUMA = np.asarray([0.299, 0.587, 0.114], dtype=np.float32)
_CHUNK = 64  # frames per processing chunk: bounds the float32 intermediates


@dataclass
class ToyEvalResult:
    """What [`evaluate_toy_video`] measured.

    Args:
        overall (`dict[str, float | None]`): Every metric of `METRICS` over the whole video (`None` where it has no
            data, e.g. no re-entry in the script).
        windows (`list[dict]`): One dict per time window: `start_frame`, `end_frame`, `start_s`, `end_s` and the
            metrics (no `reentry_accuracy`, which is counted per re-entry).
        reentries (`list[dict]`): One dict per re-entry (clip, object): shape, GT colour, mean generated colour,
            nearest named colour, error, `correct`.
        objects (`list[dict]`): Per object: shape, colour, first clip seen, generated colour at its first appearance,
            mean error and drift.
        settings (`dict`): The clip arithmetic, frame rate, window length, colour space.
    """

    overall: dict[str, float | None]
    windows: list[dict[str, Any]]
    reentries: list[dict[str, Any]]
    objects: list[dict[str, Any]]
    settings: dict[str, Any] = field(default_factory=dict)

    def window_series(self, metric: str) -> tuple[list[float], list[float | None]]:
        """Window centres (seconds) and the metric's value in each window."""
        if metric not in METRICS:
            raise ValueError(f"`metric` must be one of {list(METRICS)}, got {metric!r}.")
        centres = [(w["start_s"] + w["end_s"]) / 2 for w in self.windows]
        return centres, [w.get(metric) for w in self.windows]

    def to_dict(self) -> dict[str, Any]:
        return {
            "settings": self.settings,
            "overall": self.overall,
            "windows": self.windows,
            "reentries": self.reentries,
            "objects": self.objects,
        }


def _box3(x: np.ndarray) -> np.ndarray:
    """3x3 mean over the (H, W) axes 1 and 2 of `(T, H, W, ...)`, edge-padded."""
    pad = [(0, 0), (1, 1), (1, 1)] + [(0, 0)] * (x.ndim - 3)
    p = np.pad(x, pad, mode="edge")
    h, w = x.shape[1:3]
    return sum(p[:, i : i + h, j : j + w] for i in range(3) for j in range(3)) / 9.0


def _any3(mask: np.ndarray) -> np.ndarray:
    """3x3 dilation of boolean `(..., H, W)`."""
    p = np.pad(mask, [(0, 0)] * (mask.ndim - 2) + [(1, 1), (1, 1)])
    h, w = mask.shape[-2:]
    out = np.zeros_like(mask)
    for i in range(3):
        for j in range(3):
            out |= p[..., i : i + h, j : j + w]
    return out


def _all3(mask: np.ndarray) -> np.ndarray:
    """3x3 erosion of boolean `(..., H, W)`; outside the frame counts as inside (edge-touching objects keep pixels)."""
    p = np.pad(mask, [(0, 0)] * (mask.ndim - 2) + [(1, 1), (1, 1)], constant_values=True)
    h, w = mask.shape[-2:]
    out = np.ones_like(mask)
    for i in range(3):
        for j in range(3):
            out &= p[..., i : i + h, j : j + w]
    return out


def _flat(frames: np.ndarray) -> np.ndarray:
    """Pixels of `(T, H, W, 3)` equal to all 8 neighbours (edge-padded): the high-pass residual of the frame is 0."""
    h, w = frames.shape[1:3]
    p = np.pad(frames, [(0, 0), (1, 1), (1, 1), (0, 0)], mode="edge")
    out = np.ones(frames.shape[:3], dtype=bool)
    for i in range(3):
        for j in range(3):
            out &= (p[:, i : i + h, j : j + w] == frames).all(axis=-1)
    return out


def _gradient_energy(luma: np.ndarray) -> np.ndarray:
    """Per frame: sum of squared horizontal and vertical forward differences of `(T, H, W)`."""
    dx = np.diff(luma, axis=2)
    dy = np.diff(luma, axis=1)
    return (dx * dx).sum(axis=(1, 2)) + (dy * dy).sum(axis=(1, 2))


def _nearest_color(rgb: np.ndarray) -> str:
    names = list(COLORS)
    table = np.asarray([COLORS[n] for n in names], dtype=np.float64)
    return names[int(np.argmin(np.linalg.norm(table - rgb[None], axis=1)))]


def _ratio(num: float, den: float) -> float | None:
    if den > 0:
        return float(num / den)
    return 1.0 if num == 0 else None


def _psnr(sq_sum: float, count: int) -> float | None:
    if count == 0:
        return None
    mse = sq_sum / count
    return PSNR_CAP if mse <= 0 else float(min(PSNR_CAP, 10.0 * math.log10(255.0**2 / mse)))


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if values.size else None


def evaluate_toy_video(
    generated_frames: Any,
    script: Sequence[dict[str, Any]],
    num_frames: int = 33,
    num_condition_frames: int = 5,
    fps: int = 16,
    seed: int = 0,
    window_seconds: float | None = 5.0,
    reference_frames: Any | None = None,
    min_object_pixels: int = 4,
) -> ToyEvalResult:
    r"""
    Score a generated toy-world video against the ground truth rendered from its script (see the module docstring for
    the metrics).

    Args:
        generated_frames (`np.ndarray`, `torch.Tensor` or `list[PIL.Image.Image]`):
            The generated video, `(T, H, W, 3)` `uint8` (or anything `evaluation.video.to_uint8_frames` reads), square
            frames of the size to render the ground truth at. `T` must be `num_frames + (N - 1) * (num_frames -
            num_condition_frames)` for a script of `N` clips.
        script (`list[dict]`): The script the video was generated from (its prompts).
        num_frames (`int`, *optional*, defaults to 33): Frames per clip, as given to the pipeline.
        num_condition_frames (`int`, *optional*, defaults to 5): Condition frames per clip, as given to the pipeline.
        fps (`int`, *optional*, defaults to 16): Frame rate, for the time windows.
        seed (`int`, *optional*, defaults to 0): Render seed (only matters for start states the script leaves open).
        window_seconds (`float`, *optional*, defaults to 5.0): Length of the time windows; `None` for one window.
        reference_frames (*optional*): Frames to use as the ground-truth *pixels* instead of the render (e.g. the
            render after a VAE round trip, so the VAE's own blur is not charged to the generator); masks, colours and
            flat regions still come from the render. Same shape as the render.
        min_object_pixels (`int`, *optional*, defaults to 4): Pixels an object needs in a frame to be measured.

    Returns:
        [`ToyEvalResult`]
    """
    from ..evaluation.video import to_uint8_frames

    clips = validate_script(script)
    if not isinstance(fps, int) or isinstance(fps, bool) or fps < 1:
        raise ValueError(f"`fps` must be a positive integer, got {fps!r}.")
    if window_seconds is not None and (not isinstance(window_seconds, (int, float)) or not window_seconds > 0):
        raise ValueError(f"`window_seconds` must be a positive number of seconds or None, got {window_seconds!r}.")
    if not isinstance(min_object_pixels, int) or min_object_pixels < 1:
        raise ValueError(f"`min_object_pixels` must be a positive integer, got {min_object_pixels!r}.")
    if (
        not isinstance(num_frames, int)
        or not isinstance(num_condition_frames, int)
        or not (0 <= num_condition_frames < num_frames)
    ):
        raise ValueError(
            f"`num_frames` and `num_condition_frames` must be integers with 0 <= num_condition_frames < num_frames, "
            f"got {num_frames!r} and {num_condition_frames!r}."
        )
    generated = to_uint8_frames(generated_frames, name="generated_frames")
    expected = num_frames + (len(clips) - 1) * (num_frames - num_condition_frames)
    if generated.shape[0] != expected:
        raise ValueError(
            f"`generated_frames` has {generated.shape[0]} frames but the script's {len(clips)} clips with "
            f"`num_frames={num_frames}` and `num_condition_frames={num_condition_frames}` make {expected} "
            f"(F + (N - 1)(F - k)); pass the `num_frames` / `num_condition_frames` the video was generated with."
        )
    height, width = generated.shape[1:3]
    if height != width:
        raise ValueError(f"`generated_frames` must have square frames (the toy world's), got {height}x{width}.")

    gt = render_script_clips(
        clips, num_frames, num_condition_frames, fps=fps, size=int(height), seed=seed, return_masks=True
    )
    reference = gt.frames
    if reference_frames is not None:
        reference = to_uint8_frames(reference_frames, name="reference_frames")
        if reference.shape != gt.frames.shape:
            raise ValueError(
                f"`reference_frames` must have the ground truth's shape {gt.frames.shape}, got {reference.shape}."
            )
    per_frame, object_rgb = _frame_statistics(generated, reference, gt, min_object_pixels)
    return _summarise(per_frame, object_rgb, gt, clips, fps, window_seconds, num_frames, num_condition_frames, seed)


def _frame_statistics(
    generated: np.ndarray, reference: np.ndarray, gt: ToyVideo, min_object_pixels: int
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-frame sums and counts (so windows and the whole video pool them exactly) and per (frame, object) mean
    generated colours (NaN where the object is not measured)."""
    from tqdm.auto import tqdm

    from ..frequency import average_frequency

    total, size = gt.num_frames, gt.frames.shape[1]
    num_objects = len(gt.object_colors)
    keys = (
        "sq_err",
        "bg_pixel_dist",
        "bg_count",
        "bg_color_err",
        "grad_gen",
        "grad_ref",
        "hf_sq",
        "hf_count",
        "diff_gen",
        "diff_ref",
        "af",
        "af_gt",
    )
    stats = {k: np.zeros(total, dtype=np.float64) for k in keys}
    object_rgb = np.full((total, num_objects, 3), np.nan, dtype=np.float64)
    gt_colors = gt.object_rgb.astype(np.float32)
    starts = range(0, total, _CHUNK)
    # a bar only for long videos (about 15 s of 64x64 frames and up), where evaluation takes seconds
    for start in tqdm(starts, desc="toy-eval", unit="chunk", leave=False, disable=len(starts) < 4):
        stop = min(total, start + _CHUNK)
        # one frame of overlap for the frame differences
        lo = max(0, start - 1)
        g_all = generated[lo:stop].astype(np.float32)
        r_all = reference[lo:stop].astype(np.float32)
        # the difference to the previous frame is stored at the later frame (frame 0 has none)
        stats["diff_gen"][lo + 1 : stop] = np.abs(np.diff(g_all, axis=0)).mean(axis=(1, 2, 3))
        stats["diff_ref"][lo + 1 : stop] = np.abs(np.diff(r_all, axis=0)).mean(axis=(1, 2, 3))
        g, r = g_all[start - lo :], r_all[start - lo :]
        render = gt.frames[start:stop]
        masks = gt.masks[start:stop]  # (t, O, H, W)
        stats["sq_err"][start:stop] = ((g - r) ** 2).sum(axis=(1, 2, 3))

        # background: at least one pixel away from every object mask
        background = ~_any3(masks.any(axis=1)) if num_objects else np.ones(render.shape[:3], dtype=bool)
        dist = np.linalg.norm(g - r, axis=-1)
        count = background.sum(axis=(1, 2))
        stats["bg_count"][start:stop] = count
        stats["bg_pixel_dist"][start:stop] = (dist * background).sum(axis=(1, 2))
        safe = np.maximum(count, 1)[:, None]
        mean_g = (g * background[..., None]).sum(axis=(1, 2)) / safe
        mean_r = (r * background[..., None]).sum(axis=(1, 2)) / safe
        stats["bg_color_err"][start:stop] = np.where(count > 0, np.linalg.norm(mean_g - mean_r, axis=-1), 0.0)

        # objects: mask interior where the render shows exactly the object's colour
        if num_objects:
            exact = (render[:, None].astype(np.float32) == gt_colors[None, :, None, None]).all(axis=-1)
            inner = _all3(masks) & masks & exact
            # two pixels in where the object is big enough, so a slight blur of its rim does not shift its colour
            deeper = _all3(inner)
            use_deeper = deeper.sum(axis=(2, 3)) >= min_object_pixels
            inner = np.where(use_deeper[..., None, None], deeper, inner)
            n_px = inner.sum(axis=(2, 3))
            sums = np.einsum("tohw,thwc->toc", inner.astype(np.float32), g)
            valid = n_px >= min_object_pixels
            means = sums / np.maximum(n_px, 1)[..., None]
            object_rgb[start:stop] = np.where(valid[..., None], means, np.nan)

        # sharpness: gradient energy of luma
        stats["grad_gen"][start:stop] = _gradient_energy(g @ _LUMA)
        stats["grad_ref"][start:stop] = _gradient_energy(r @ _LUMA)

        # high-frequency noise on regions where the render is constant over the 3x3 neighbourhood
        # constant over 5x5: a pixel's 3x3 residual then never reaches an edge, even after a 3x3 blur or sharpening
        flat = _all3(_flat(render))
        residual = g - _box3(g)
        stats["hf_sq"][start:stop] = ((residual**2).sum(axis=-1) * flat).sum(axis=(1, 2))
        stats["hf_count"][start:stop] = flat.sum(axis=(1, 2)) * 3

        stats["af"][start:stop] = average_frequency(generated[start:stop], layout="FHWC", reduction="frame")[0]
        stats["af_gt"][start:stop] = average_frequency(reference[start:stop], layout="FHWC", reduction="frame")[0]
    stats["pixels"] = np.full(total, size * size * 3, dtype=np.float64)
    return stats, object_rgb


def _round(value: Any, digits: int = 4) -> Any:
    if isinstance(value, float):
        return round(value, digits) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _round(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_round(v, digits) for v in value]
    return value


def _summarise(
    stats: dict[str, np.ndarray],
    object_rgb: np.ndarray,
    gt: ToyVideo,
    clips: list[dict[str, Any]],
    fps: int,
    window_seconds: float | None,
    num_frames: int,
    num_condition_frames: int,
    seed: int,
) -> ToyEvalResult:
    total = gt.num_frames
    gt_rgb = gt.object_rgb.astype(np.float64)
    num_objects = len(gt.object_colors)
    valid = ~np.isnan(object_rgb[..., 0])
    error = np.linalg.norm(object_rgb - gt_rgb[None], axis=-1)  # NaN where not measured
    reentry_flags = np.asarray(is_reentry(clips), dtype=bool).reshape(len(clips), num_objects)
    reentry = reentry_flags[gt.frame_clip]  # (T, O)

    # each object's generated colour at its first appearance: the measured frames of the first clip it is measured in
    reference = np.full((num_objects, 3), np.nan)
    objects = []
    for o in range(num_objects):
        first_clip = None
        if valid[:, o].any():
            first_clip = int(gt.frame_clip[np.argmax(valid[:, o])])
            frames = valid[:, o] & (gt.frame_clip == first_clip)
            reference[o] = object_rgb[frames, o].mean(axis=0)
        objects.append(
            {
                "index": o,
                "shape": gt.object_shapes[o],
                "color": gt.object_colors[o],
                "gt_rgb": gt_rgb[o].tolist(),
                "first_clip": first_clip,
                "first_rgb": None if first_clip is None else reference[o].tolist(),
            }
        )
    drift = np.linalg.norm(object_rgb - reference[None], axis=-1)
    for o, entry in enumerate(objects):
        entry["color_error"] = _mean(error[valid[:, o], o])
        entry["color_drift"] = _mean(drift[valid[:, o], o])

    reentries = []
    for c, o in zip(*np.nonzero(reentry_flags)):
        frames = valid[:, o] & (gt.frame_clip == c)
        event: dict[str, Any] = {
            "clip": int(c),
            "object": int(o),
            "shape": gt.object_shapes[o],
            "color": gt.object_colors[o],
            "frames_measured": int(frames.sum()),
        }
        if frames.any():
            mean = object_rgb[frames, o].mean(axis=0)
            nearest = _nearest_color(mean)
            event.update(
                generated_rgb=mean.tolist(),
                nearest_color=nearest,
                error=_mean(error[frames, o]),
                correct=nearest == gt.object_colors[o],
            )
        else:
            event.update(generated_rgb=None, nearest_color=None, error=None, correct=None)
        reentries.append(event)

    def window(a: int, b: int) -> dict[str, Any]:
        sl = slice(a, b)
        pair = valid[sl]
        bg = stats["bg_count"][sl] > 0
        hf_count = stats["hf_count"][sl].sum()
        diff = slice(max(a, 1), b)
        return {
            "psnr": _psnr(stats["sq_err"][sl].sum(), int(stats["pixels"][sl].sum())),
            "background_color_error": _mean(stats["bg_color_err"][sl][bg]),
            "background_pixel_error": _ratio(stats["bg_pixel_dist"][sl].sum(), stats["bg_count"][sl].sum())
            if bg.any()
            else None,
            "object_color_error": _mean(error[sl][pair]),
            "object_color_drift": _mean(drift[sl][pair]),
            "reentry_color_error": _mean(error[sl][pair & reentry[sl]]),
            "sharpness_ratio": _ratio(stats["grad_gen"][sl].sum(), stats["grad_ref"][sl].sum()),
            "hf_noise": float(math.sqrt(stats["hf_sq"][sl].sum() / hf_count)) if hf_count > 0 else None,
            "af": _mean(stats["af"][sl]),
            "af_gt": _mean(stats["af_gt"][sl]),
            "frame_difference": _mean(stats["diff_gen"][diff]),
            "frame_difference_gt": _mean(stats["diff_ref"][diff]),
        }

    length = total if window_seconds is None else max(1, int(round(window_seconds * fps)))
    windows = []
    for a in range(0, total, length):
        b = min(total, a + length)
        windows.append({"start_frame": a, "end_frame": b, "start_s": a / fps, "end_s": b / fps, **window(a, b)})
    overall = window(0, total)
    measured = [e["correct"] for e in reentries if e["correct"] is not None]
    overall["reentry_accuracy"] = float(np.mean(measured)) if measured else None
    overall = {name: overall.get(name) for name in METRICS}
    settings = {
        "num_clips": len(clips),
        "num_frames": num_frames,
        "num_condition_frames": num_condition_frames,
        "total_frames": total,
        "fps": fps,
        "size": int(gt.frames.shape[1]),
        "render_seed": seed,
        "window_seconds": window_seconds,
        "window_frames": length,
        "color_space": "sRGB 0-255, Euclidean distance",
        "psnr_cap_db": PSNR_CAP,
    }
    return ToyEvalResult(
        overall=_round(overall),
        windows=_round(windows),
        reentries=_round(reentries, 2),
        objects=_round(objects, 2),
        settings=settings,
    )


# ---------------------------------------------------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def format_toy_eval_markdown(result: ToyEvalResult) -> str:
    """The report as Markdown: settings, the overall table, the per-window table, re-entries and objects."""
    s = result.settings
    lines = [
        "# Toy-world evaluation against the ground truth",
        "",
        f"{s.get('num_clips')} clips, F = {s.get('num_frames')}, k = {s.get('num_condition_frames')}, "
        f"{s.get('total_frames')} frames at {s.get('fps')} fps, {s.get('size')}×{s.get('size')}; windows of "
        f"{s.get('window_frames')} frames. Colours: {s.get('color_space')}.",
        "",
        "| metric | value | perfect |",
        "|---|---|---|",
    ]
    lines += [
        f"| {label} (`{name}`) | {_fmt(result.overall.get(name))} | {perfect} |"
        for name, (label, perfect) in METRICS.items()
    ]
    columns = [name for name in METRICS if name != "reentry_accuracy"]
    lines += ["", "## Per window", "", "| window (s) | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for w in result.windows:
        cells = " | ".join(_fmt(w.get(c)) for c in columns)
        lines.append(f"| {w['start_s']:.1f}–{w['end_s']:.1f} | {cells} |")
    lines += ["", "## Re-entries (prompt without the colour)", ""]
    if result.reentries:
        lines += [
            "| clip | object | GT colour | generated RGB | nearest colour | error | correct |",
            "|---|---|---|---|---|---|---|",
        ]
        for e in result.reentries:
            values = e["generated_rgb"]
            rgb = "–" if values is None else "(" + ", ".join(f"{v:.0f}" for v in values) + ")"
            lines.append(
                f"| {e['clip']} | {e['shape']} | {e['color']} | {rgb} | {_fmt(e['nearest_color'])} | "
                f"{_fmt(e['error'])} | {_fmt(e['correct'])} |"
            )
    else:
        lines.append("The script has no re-entry.")
    lines += [
        "",
        "## Objects",
        "",
        "| object | GT colour | first clip | colour error | drift vs first appearance |",
        "|---|---|---|---|---|",
    ]
    for o in result.objects:
        lines.append(
            f"| {o['color']} {o['shape']} | {o['color']} | {_fmt(o['first_clip'])} | {_fmt(o['color_error'])} "
            f"| {_fmt(o['color_drift'])} |"
        )
    return "\n".join(lines) + "\n"


def _plot(result: ToyEvalResult, path: Path) -> None:
    require("matplotlib", "plots in toy evaluation reports")
    from matplotlib.figure import Figure

    panels = [
        ("PSNR vs GT (dB)", ["psnr"], None),
        ("Background colour error (RGB)", ["background_color_error", "background_pixel_error"], 0.0),
        ("Object colour (RGB)", ["object_color_error", "object_color_drift", "reentry_color_error"], 0.0),
        ("Sharpness ratio (gen/GT)", ["sharpness_ratio"], 1.0),
        ("HF noise on flat regions (RGB)", ["hf_noise"], 0.0),
        ("AF", ["af", "af_gt"], None),
        ("Frame difference (RGB)", ["frame_difference", "frame_difference_gt"], None),
    ]
    figure = Figure(figsize=(14, 6), layout="constrained")
    axes = figure.subplots(2, 4, squeeze=False)
    for ax, (title, names, ideal) in zip(axes.flat, panels):
        for name in names:
            times, values = result.window_series(name)
            points = [(t, v) for t, v in zip(times, values) if v is not None]
            if points:
                style = "--" if name.endswith("_gt") else "-"
                ax.plot([p[0] for p in points], [p[1] for p in points], style, marker="o", markersize=3, label=name)
        if ideal is not None:
            ax.axhline(ideal, color="gray", linewidth=0.8, linestyle=":")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("window centre (s)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if len(names) > 1:
            ax.legend(fontsize=6)
    axes.flat[-1].set_visible(False)
    figure.suptitle("Toy-world metrics vs ground truth per time window", fontsize=10)
    figure.savefig(path, dpi=100)


def write_toy_eval_report(result: ToyEvalResult, out_dir: str | os.PathLike) -> dict[str, Path]:
    r"""
    Write `toy_eval.json`, `toy_eval.md` and `toy_eval.png` (metrics vs time) into `out_dir` (created if needed).

    Args:
        result ([`ToyEvalResult`]): What [`evaluate_toy_video`] returned.
        out_dir (`str` or `os.PathLike`): The report folder.

    Returns:
        `dict[str, Path]`: the written files, keyed `"json"`, `"markdown"` and `"plot"`.
    """
    if not isinstance(result, ToyEvalResult):
        raise TypeError(f"`result` must be a `ToyEvalResult`, got {type(result).__name__}.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {key: out / name for key, name in TOY_EVAL_FILES.items()}
    with open(paths["json"], "w", encoding="utf-8") as handle:
        json.dump(result.to_dict(), handle, indent=1, allow_nan=False)
        handle.write("\n")
    paths["markdown"].write_text(format_toy_eval_markdown(result), encoding="utf-8")
    _plot(result, paths["plot"])
    return paths
