# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""Backend-independent parts of the VBench-style evaluation: dimension names, VBench's formulas, time windows, slopes.

Every formula here is the one VBench (Huang et al., CVPR 2024, https://github.com/Vchitect/VBench) uses; what the
backends change is only the model that produces features, per-frame scores or optical flow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


__all__ = [
    "DIMENSIONS",
    "METRICS",
    "CONSISTENCY_DIMENSIONS",
    "FRAME_DIMENSIONS",
    "MOTION_DIMENSIONS",
    "AVERAGE_FREQUENCY",
    "validate_dimensions",
    "vbench_consistency",
    "clip_bounds",
    "dynamic_degree_interval",
    "dynamic_degree_params",
    "fit_slope",
    "mean_or_none",
]

# The six dimensions of the paper's Table 1, in its column order.
DIMENSIONS: tuple[str, ...] = (
    "subject_consistency",
    "background_consistency",
    "motion_smoothness",
    "dynamic_degree",
    "aesthetic_quality",
    "imaging_quality",
)
# Dimensions scored from per-frame features compared with VBench's consistency formula.
CONSISTENCY_DIMENSIONS: tuple[str, ...] = ("subject_consistency", "background_consistency")
# Dimensions that are a mean of per-frame scores.
FRAME_DIMENSIONS: tuple[str, ...] = ("aesthetic_quality", "imaging_quality")
# Dimensions computed from optical flow.
MOTION_DIMENSIONS: tuple[str, ...] = ("motion_smoothness", "dynamic_degree")
# The paper's AF (Eq. 6): reported beside the six dimensions, per window and overall.
AVERAGE_FREQUENCY = "average_frequency"
METRICS: tuple[str, ...] = DIMENSIONS + (AVERAGE_FREQUENCY,)


def validate_dimensions(dimensions: Sequence[str] | None) -> tuple[str, ...]:
    """Check a user's dimension list and return it in the canonical (Table 1) order; `None` means all six."""
    if dimensions is None:
        return DIMENSIONS
    if isinstance(dimensions, str):
        dimensions = [dimensions]
    unknown = [d for d in dimensions if d not in DIMENSIONS]
    if unknown:
        raise ValueError(f"`dimensions` must be a subset of {list(DIMENSIONS)}, got unknown {unknown}.")
    if not dimensions:
        raise ValueError(f"`dimensions` must name at least one of {list(DIMENSIONS)}.")
    return tuple(d for d in DIMENSIONS if d in dimensions)


def vbench_consistency(similarity_to_previous: np.ndarray, similarity_to_first: np.ndarray) -> float:
    r"""VBench's subject/background consistency of one clip from its frame similarities.

    For frames `1 … F-1` of a clip, with `s(·,·)` the backend's similarity (cosine of DINO/CLIP features in VBench):

        score = mean_i ( max(0, s(f_{i-1}, f_i)) + max(0, s(f_0, f_i)) ) / 2

    Args:
        similarity_to_previous (`np.ndarray` of shape `(F - 1,)`): `s(f_{i-1}, f_i)` for `i = 1 … F-1`.
        similarity_to_first (`np.ndarray` of shape `(F - 1,)`): `s(f_0, f_i)` for `i = 1 … F-1`.
    """
    previous = np.clip(np.asarray(similarity_to_previous, dtype=np.float64), 0.0, None)
    first = np.clip(np.asarray(similarity_to_first, dtype=np.float64), 0.0, None)
    if previous.shape != first.shape or previous.size == 0:
        raise ValueError("Consistency needs at least two frames and one similarity per frame pair.")
    return float(np.mean((previous + first) / 2.0))


def clip_bounds(num_frames: int, clip_frames: int | None) -> list[tuple[int, int]]:
    """Split a window into VBench-Long's fixed-length clips.

    Like `vbench2_beta_long.utils.split_video_into_clips`: consecutive clips of `clip_frames` frames, and a shorter
    remainder is extended backwards (borrowing frames from the clip before) so that every clip has full length.
    A window shorter than one clip, or `clip_frames=None`, is a single clip.
    """
    if clip_frames is None or clip_frames >= num_frames:
        return [(0, num_frames)]
    full = num_frames // clip_frames
    bounds = [(i * clip_frames, (i + 1) * clip_frames) for i in range(full)]
    if num_frames % clip_frames:
        bounds.append((num_frames - clip_frames, num_frames))
    return bounds


def dynamic_degree_params(fps: float, height: int, width: int, num_sampled: int) -> tuple[float, int]:
    """VBench's dynamic-degree rule for one clip (`vbench/dynamic_degree.py`, `set_params`).

    Frames are first sampled to about 8 fps (every `max(1, round(fps / 8))`-th frame). A frame pair "moves" when the
    mean of its top-5 % optical-flow magnitudes exceeds `thres = max(1, 8 / fps) * 6 * min(H, W) / 256` pixels
    (6 px at a 256-pixel short side and 8 fps, scaled with resolution and with the frame gap), and the clip is
    dynamic when at least `count = round(4 * num_sampled / 16)` pairs move (4 of 16 frames in VBench's 2-second,
    8-fps clips). We clamp `count` to at least 1: VBench's `round(4 * 2 / 16) = 0` would call a 2-frame clip dynamic
    even when it is static.

    Returns:
        `tuple[float, int]`: the threshold in pixels and the number of moving pairs needed.
    """
    factor = max(1.0, 8.0 / fps)
    threshold = factor * 6.0 * (min(height, width) / 256.0)
    count = max(1, round(4 * (num_sampled / 16.0)))
    return threshold, count


def dynamic_degree_interval(fps: float) -> int:
    """The frame step VBench samples with before measuring motion: about 8 frames per second."""
    return max(1, round(fps / 8.0))


def fit_slope(x: Sequence[float], y: Sequence[float | None]) -> float | None:
    """Least-squares slope of `y` over `x`, skipping `None`/NaN values; `None` with fewer than two points."""
    points = [(float(a), float(b)) for a, b in zip(x, y) if b is not None and not math.isnan(b)]
    if len(points) < 2:
        return None
    xs = np.array([p[0] for p in points])
    ys = np.array([p[1] for p in points])
    dx = xs - xs.mean()
    denom = float(np.sum(dx * dx))
    if denom == 0.0:
        return None
    return float(np.sum(dx * (ys - ys.mean())) / denom)


def mean_or_none(values: Sequence[float | None]) -> float | None:
    """The mean of the values that are not `None`, or `None` when there are none."""
    kept = [float(v) for v in values if v is not None]
    return float(np.mean(kept)) if kept else None
