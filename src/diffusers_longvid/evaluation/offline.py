# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""The offline evaluation backend: classical image statistics in place of VBench's networks.

It needs no weights and runs anywhere, deterministically. Its numbers are **proxies**: they move in the same
direction as VBench's dimensions on the same kind of change (a static video is consistent, blur lowers imaging
quality, ...), but they are **not comparable to published VBench scores** (e.g. the paper's Table 1). Use them to
compare runs with each other, and the reference backend to compare with papers.

| dimension | VBench model | offline proxy |
| --- | --- | --- |
| subject consistency | DINO ViT-B/16 features, cosine | SSIM of luma at a short side of <= 64 px |
| background consistency | CLIP ViT-B/32 features, cosine | spatial colour histogram (2x2 cells, 4^3 soft RGB bins), Bhattacharyya coefficient |
| aesthetic quality | LAION aesthetic head on CLIP ViT-L/14 | colourfulness (Hasler & Süsstrunk) and RMS contrast |
| imaging quality | MUSIQ (SPAQ) | sharpness (1 - blur effect, Crété-Roffet) times a noise factor (Immerkær) |

Motion smoothness and dynamic degree use OpenCV flow in both backends (see `motion.py`); they are the only
dimensions that need OpenCV (the `[eval]` extra). The other four use the numpy image operations of `imageops.py`
(area resize, luma, Gaussian / box / Sobel filters), which reproduce the OpenCV calls this backend used to make and
are used whether OpenCV is installed or not, so the scores do not depend on it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from .backend import EvaluationBackend
from .imageops import box_blur, correlate2d, correlate_separable, resize_area, rgb_to_luma, sobel
from .metrics import CONSISTENCY_DIMENSIONS, FRAME_DIMENSIONS, MOTION_DIMENSIONS
from .motion import require_flow


__all__ = [
    "OfflineBackend",
    "ssim_features",
    "ssim_similarity",
    "colour_layout_histograms",
    "colourfulness",
    "rms_contrast",
    "blur_effect",
    "noise_sigma",
    "aesthetic_proxy",
    "imaging_quality_proxy",
]

# SSIM (Wang et al. 2004): 11x11 Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03 on a 0..255 range.
_SSIM_SIGMA = 1.5
_SSIM_WINDOW = 11
_SSIM_C1 = (0.01 * 255.0) ** 2
_SSIM_C2 = (0.03 * 255.0) ** 2
SUBJECT_SHORT_SIDE = 64
BACKGROUND_SHORT_SIDE = 64
HISTOGRAM_BINS = 4
HISTOGRAM_GRID = 2
AESTHETIC_LONG_SIDE = 256
# VBench's imaging-quality preprocessing ("longer"): the long side is brought down to 512 pixels.
IMAGING_LONG_SIDE = 512
# Hasler & Süsstrunk's "extremely colourful" level; colourfulness is divided by it and clipped to 1.
COLOURFULNESS_SCALE = 109.0
# Noise factor 1 / (1 + (sigma / NOISE_SIGMA_REF)^2): halves the score at a noise std of 5 grey levels.
NOISE_SIGMA_REF = 5.0
# Crété-Roffet blur-effect re-blur length (skimage's default `h_size`).
BLUR_LENGTH = 11


def _resize_frames(frames: np.ndarray, short_side: int | None = None, long_side: int | None = None) -> np.ndarray:
    """Area-downscale `(F, H, W[, C])` frames so the short (or long) side is at most the given size; never upscale."""
    height, width = frames.shape[1:3]
    if short_side is not None:
        scale = short_side / min(height, width)
    elif long_side is not None:
        scale = long_side / max(height, width)
    else:
        return frames
    if scale >= 1.0:
        return frames
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    return resize_area(frames, size, channels_last=frames.ndim == 4)


def _luma(frames: np.ndarray) -> np.ndarray:
    """`uint8` RGB `(F, H, W, 3)` to float32 luma `(F, H, W)` in 0..255 (BT.601)."""
    return rgb_to_luma(frames)


def _gaussian_window(size: int, sigma: float) -> np.ndarray:
    coords = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    kernel = np.exp(-(coords**2) / (2 * sigma**2))
    return (kernel / kernel.sum()).astype(np.float32)


def _gaussian_filter_valid(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Separable Gaussian filtering of `(N, H, W)` float32, keeping only the 'valid' area (no border effects)."""
    offset = (kernel.size - 1) // 2
    height, width = x.shape[1:]
    out = correlate_separable(x, kernel, kernel, border="reflect")
    return out[:, offset : height - offset, offset : width - offset]


def ssim_features(frames: np.ndarray, short_side: int = SUBJECT_SHORT_SIDE) -> np.ndarray:
    """The per-frame input of [`ssim_similarity`]: luma in 0..255, area-downscaled to a short side of `short_side`.

    Returns:
        `np.ndarray` of shape `(F, h, w)`, float32.
    """
    return _luma(_resize_frames(frames, short_side=short_side))


def ssim_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean SSIM (Wang et al. 2004) of each pair of frames `a[i]`, `b[i]` (`(N, h, w)` luma): `(N,)`, 1 if identical.

    11x11 Gaussian window (sigma 1.5, smaller for frames under 11 px), 'valid' filtering, `K1 = 0.01`, `K2 = 0.03`.
    """
    a, b = np.broadcast_arrays(np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32))
    size = min(_SSIM_WINDOW, a.shape[-2], a.shape[-1])
    size -= 1 - size % 2  # odd
    kernel = _gaussian_window(size, _SSIM_SIGMA)
    mu_x, mu_y = _gaussian_filter_valid(a, kernel), _gaussian_filter_valid(b, kernel)
    var_x = np.maximum(_gaussian_filter_valid(a * a, kernel) - mu_x**2, 0)
    var_y = np.maximum(_gaussian_filter_valid(b * b, kernel) - mu_y**2, 0)
    cov = _gaussian_filter_valid(a * b, kernel) - mu_x * mu_y
    ssim = ((2 * mu_x * mu_y + _SSIM_C1) * (2 * cov + _SSIM_C2)) / (
        (mu_x**2 + mu_y**2 + _SSIM_C1) * (var_x + var_y + _SSIM_C2)
    )
    return ssim.mean(axis=(1, 2), dtype=np.float64)


def colour_layout_histograms(
    frames: np.ndarray,
    bins: int = HISTOGRAM_BINS,
    grid: int = HISTOGRAM_GRID,
    short_side: int = BACKGROUND_SHORT_SIDE,
) -> np.ndarray:
    r"""Spatial colour histograms: a joint RGB histogram with soft (trilinear) binning in each cell of a grid.

    Each cell's histogram is normalised to sum 1 and square-rooted, and the concatenation divided by
    `sqrt(grid**2)`, so the dot product of two features is the mean over cells of the Bhattacharyya coefficient
    `sum sqrt(p q)` (1 for identical colour layouts, 0 for disjoint colours).

    Returns:
        `np.ndarray` of shape `(F, grid * grid * bins**3)`, float64, unit L2 norm per row.
    """
    small = _resize_frames(frames, short_side=short_side).astype(np.float64)
    num, height, width = small.shape[:3]
    # bin coordinate of each value, bin centres at 0 .. bins-1
    position = np.clip(small / 255.0 * bins - 0.5, 0.0, bins - 1)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, bins - 1)
    weight_high = position - low
    rows = np.minimum(np.arange(height) * grid // height, grid - 1)
    cols = np.minimum(np.arange(width) * grid // width, grid - 1)
    cell = (rows[:, None] * grid + cols[None, :])[None].repeat(num, axis=0)
    base = (np.arange(num)[:, None, None] * grid * grid + cell) * bins**3

    histogram = np.zeros(num * grid * grid * bins**3)
    for corner in range(8):
        index = base.copy()
        weight = np.ones((num, height, width))
        for channel in range(3):
            use_high = (corner >> channel) & 1
            idx = high[..., channel] if use_high else low[..., channel]
            w = weight_high[..., channel] if use_high else 1.0 - weight_high[..., channel]
            index = index + idx * bins ** (2 - channel)
            weight = weight * w
        histogram += np.bincount(index.ravel(), weights=weight.ravel(), minlength=histogram.size)
    histogram = histogram.reshape(num, grid * grid, bins**3)
    histogram /= histogram.sum(axis=-1, keepdims=True)
    return (np.sqrt(histogram) / math.sqrt(grid * grid)).reshape(num, -1)


def colourfulness(frames: np.ndarray) -> np.ndarray:
    r"""Hasler & Süsstrunk (2003) colourfulness of `uint8` RGB frames: `(F,)`, 0 for gray, ~109 "extremely colourful".

    With `rg = R - G`, `yb = (R + G) / 2 - B`: `M = sqrt(std(rg)^2 + std(yb)^2) + 0.3 sqrt(mean(rg)^2 + mean(yb)^2)`.
    """
    rgb = frames.astype(np.float64)
    rg = rgb[..., 0] - rgb[..., 1]
    yb = 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
    axes = (1, 2)
    std = np.sqrt(rg.var(axis=axes) + yb.var(axis=axes))
    mean = np.sqrt(rg.mean(axis=axes) ** 2 + yb.mean(axis=axes) ** 2)
    return std + 0.3 * mean


def rms_contrast(frames: np.ndarray) -> np.ndarray:
    """RMS contrast: the standard deviation of luma in `[0, 1]`, `(F,)`; at most 0.5."""
    return (_luma(frames) / 255.0).std(axis=(1, 2)).astype(np.float64)


def blur_effect(luma: np.ndarray, length: int = BLUR_LENGTH) -> np.ndarray:
    r"""Crété-Roffet et al. (2007) no-reference blur effect of luma frames `(F, H, W)`: `(F,)` in `[0, 1]`.

    Re-blur the frame along each axis with a box filter of `length`; a sharp frame loses much of its
    neighbour-difference variation `D`, an already blurred one little. Per axis
    `blur = (sum D_F - sum max(0, D_F - D_B)) / sum D_F` (a border of `length` pixels left out where the frame is
    large enough, as scikit-image does), and the result is the larger of the two axes. 0 is sharp, 1 is maximally
    blurred (a flat frame counts as 1).
    """
    luma = np.asarray(luma, dtype=np.float32)
    results = []
    for axis, ksize in ((1, (length, 1)), (2, (1, length))):  # ksize is (height, width)
        blurred = box_blur(luma, ksize, border="reflect")
        d_frame = np.abs(np.diff(luma, axis=axis))
        d_blur = np.abs(np.diff(blurred, axis=axis))
        variation = np.maximum(0.0, d_frame - d_blur)
        crop = [slice(None)] * 3
        for a in (1, 2):
            n = d_frame.shape[a]
            margin = length if n > 4 * length else 0
            crop[a] = slice(margin, n - margin)
        s_frame = d_frame[tuple(crop)].sum(axis=(1, 2), dtype=np.float64)
        s_var = variation[tuple(crop)].sum(axis=(1, 2), dtype=np.float64)
        results.append(np.where(s_frame > 0, (s_frame - s_var) / np.where(s_frame > 0, s_frame, 1.0), 1.0))
    return np.maximum(results[0], results[1])


def noise_sigma(luma: np.ndarray, edge_fraction: float = 0.1) -> np.ndarray:
    r"""Immerkær (1996) fast noise estimate of luma frames `(F, H, W)` in grey levels: `(F,)`.

    `sigma = sqrt(pi / 2) / 6 * mean |I * N|` with the Laplacian-difference mask
    `N = [[1, -2, 1], [-2, 4, -2], [1, -2, 1]]`, averaged over the non-edge pixels (the `edge_fraction` of pixels
    with the largest Sobel gradient are excluded, as in Tai & Yang 2008), so structure is not read as noise.
    """
    luma = np.asarray(luma, dtype=np.float32)
    if min(luma.shape[1:]) < 3:
        return np.zeros(len(luma))
    mask = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)
    inner = (slice(1, -1), slice(1, -1))
    inner = (slice(None),) + inner
    response = np.abs(correlate2d(luma, mask, border="reflect"))[inner]
    gradient = np.hypot(sobel(luma, 1, 0), sobel(luma, 0, 1))[inner]
    response = response.reshape(len(luma), -1).astype(np.float64)
    gradient = gradient.reshape(len(luma), -1)
    threshold = np.quantile(gradient, 1.0 - edge_fraction, axis=1, keepdims=True)
    keep = gradient <= threshold
    total = np.where(keep, response, 0.0).sum(axis=1)
    count = np.maximum(keep.sum(axis=1), 1)
    return math.sqrt(math.pi / 2.0) / 6.0 * total / count


def aesthetic_proxy(frames: np.ndarray) -> np.ndarray:
    r"""Offline aesthetic proxy of `uint8` RGB frames: `(F,)` in `[0, 1]`.

        aesthetic = ( min(1, colourfulness / 109) + min(1, 2 * rms_contrast) ) / 2

    Gray flat frames score 0; a colourful, contrasted frame scores high. This is not the LAION aesthetic predictor.
    """
    small = _resize_frames(frames, long_side=AESTHETIC_LONG_SIDE)
    colour = np.minimum(1.0, colourfulness(small) / COLOURFULNESS_SCALE)
    contrast = np.minimum(1.0, 2.0 * rms_contrast(small))
    return 0.5 * (colour + contrast)


def imaging_quality_proxy(frames: np.ndarray) -> np.ndarray:
    r"""Offline imaging-quality proxy of `uint8` RGB frames: `(F,)` in `[0, 1]`.

        imaging = (1 - blur_effect) / (1 + (noise_sigma / 5)^2)

    computed on luma after VBench's "longer" preprocessing (long side at most 512 px). Blur lowers the first
    factor, noise the second; flat frames score 0. This is not MUSIQ.
    """
    luma = _luma(_resize_frames(frames, long_side=IMAGING_LONG_SIDE))
    sharpness = 1.0 - blur_effect(luma)
    noise = noise_sigma(luma)
    return sharpness / (1.0 + (noise / NOISE_SIGMA_REF) ** 2)


class OfflineBackend(EvaluationBackend):
    r"""
    VBench-style evaluation without weights: classical proxies (see the module docstring), not comparable to
    published VBench numbers. Deterministic. Only the motion dimensions (motion smoothness, dynamic degree) need
    OpenCV (`pip install "diffusers-longvid[eval]"`); the other four run on numpy alone.

    Args:
        dimensions (`Sequence[str]`, *optional*): The dimensions to evaluate (default: all six).
        batch_size (`int`, *optional*, defaults to 64): Frames processed at once by the per-frame statistics.
        flow_method, flow_preset, flow_max_short_side: See [`EvaluationBackend`].
    """

    name = "offline"
    proxies = True

    def __init__(
        self,
        dimensions: Sequence[str] | None = None,
        batch_size: int = 64,
        flow_method: Literal["dis", "farneback"] = "dis",
        flow_preset: Literal["ultrafast", "fast", "medium"] = "medium",
        flow_max_short_side: int | None = 256,
    ) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}.")
        super().__init__(
            dimensions=dimensions,
            flow_method=flow_method,
            flow_preset=flow_preset,
            flow_max_short_side=flow_max_short_side,
        )
        self.batch_size = batch_size
        if any(d in MOTION_DIMENSIONS for d in self.dimensions):
            require_flow()  # fail here, before any frame is read, not at the first motion clip

    def _batched(self, fn, frames: np.ndarray) -> np.ndarray:
        return np.concatenate([fn(frames[i : i + self.batch_size]) for i in range(0, len(frames), self.batch_size)])

    def embed(self, frames: np.ndarray, dimension: str) -> Any:
        self._check_dimension(dimension, CONSISTENCY_DIMENSIONS)
        fn = ssim_features if dimension == "subject_consistency" else colour_layout_histograms
        return self._batched(fn, frames)

    def similarity(self, dimension: str, a: Any, b: Any) -> np.ndarray:
        self._check_dimension(dimension, CONSISTENCY_DIMENSIONS)
        if dimension == "subject_consistency":
            return ssim_similarity(a, b)
        return np.einsum("nd,nd->n", a, b)

    def frame_scores(self, frames: np.ndarray, dimension: str) -> np.ndarray:
        self._check_dimension(dimension, FRAME_DIMENSIONS)
        fn = aesthetic_proxy if dimension == "aesthetic_quality" else imaging_quality_proxy
        return self._batched(fn, frames).astype(np.float64)

    def methods(self) -> dict[str, str]:
        flow = self.flow.describe()
        return {
            "subject_consistency": "proxy: SSIM of luma (short side <= 64 px) in VBench's consistency formula",
            "background_consistency": "proxy: 2x2 spatial soft RGB histograms (4^3 bins), Bhattacharyya coefficient, "
            "in VBench's consistency formula",
            "motion_smoothness": f"VBench's formula; odd frames interpolated by warping along {flow} (not AMT)",
            "dynamic_degree": f"VBench's rule on {flow} (not RAFT)",
            "aesthetic_quality": "proxy: (min(1, colourfulness/109) + min(1, 2*RMS contrast)) / 2",
            "imaging_quality": "proxy: (1 - Crete-Roffet blur effect) / (1 + (Immerkaer noise sigma / 5)^2)",
        }

    def config(self) -> dict[str, Any]:
        return {**super().config(), "batch_size": self.batch_size}
