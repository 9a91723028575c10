# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""Optical flow, dynamic degree and motion smoothness (VBench's formulas, classical OpenCV flow).

VBench measures motion with RAFT (dynamic degree) and interpolates frames with AMT (motion smoothness). Both need
torchvision-era model code and weights; here the flow is OpenCV's DIS (or Farneback) and the in-between frame is
obtained by warping the two neighbours along that flow. Both backends use this module, and it is the only part of
the evaluation that needs OpenCV (`pip install "diffusers-longvid[eval]"`): [`FlowEstimator`] imports it on first use,
and [`require_flow`] checks for it up front when a motion dimension is requested.
"""

from __future__ import annotations

from types import ModuleType
from typing import Literal

import numpy as np

from ..utils import require
from .metrics import dynamic_degree_interval, dynamic_degree_params


__all__ = [
    "FlowEstimator",
    "require_flow",
    "PairwiseFlow",
    "to_gray",
    "top_flow_magnitude",
    "interpolate_midframe",
    "clip_dynamic_degree",
    "clip_motion_smoothness",
]


_FLOW_FEATURE = (
    "Optical flow for the motion dimensions (`motion_smoothness`, `dynamic_degree`; leave them out of `dimensions` "
    "to evaluate the others without it)"
)


def require_flow() -> ModuleType:
    """OpenCV (`cv2`), which the motion dimensions need, or an `ImportError` naming the `[eval]` extra."""
    return require("cv2", _FLOW_FEATURE)


def to_gray(frames: np.ndarray) -> np.ndarray:
    """RGB `uint8` frames `(F, H, W, 3)` to `uint8` luma `(F, H, W)` (ITU-R BT.601, OpenCV's `RGB2GRAY`)."""
    cv2 = require_flow()
    return np.stack([cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in frames])


class FlowEstimator:
    r"""Dense optical flow between two grayscale frames with OpenCV.

    Args:
        method (`str`, *optional*, defaults to `"dis"`):
            `"dis"` (Dense Inverse Search, Kroeger et al. 2016) or `"farneback"` (Farnebäck 2003).
        preset (`str`, *optional*, defaults to `"medium"`):
            DIS preset: `"ultrafast"`, `"fast"` or `"medium"`. Ignored for Farneback.
        max_short_side (`int`, *optional*, defaults to 256):
            Frames whose short side is larger are downscaled (area interpolation) to this short side before the flow
            is computed, and the flow is scaled back to full-resolution pixels. VBench's motion thresholds are defined
            relative to a 256-pixel short side, so little is lost, and 480p runs ~4x faster. `None` keeps full size.

    OpenCV is imported on first use, not here, so a backend evaluating no motion dimension runs without it.
    """

    _PRESETS = {"ultrafast": 0, "fast": 1, "medium": 2}

    def __init__(
        self,
        method: Literal["dis", "farneback"] = "dis",
        preset: Literal["ultrafast", "fast", "medium"] = "medium",
        max_short_side: int | None = 256,
    ) -> None:
        if method not in ("dis", "farneback"):
            raise ValueError(f"`method` must be 'dis' or 'farneback', got {method!r}.")
        if preset not in self._PRESETS:
            raise ValueError(f"`preset` must be one of {list(self._PRESETS)}, got {preset!r}.")
        if max_short_side is not None and (not isinstance(max_short_side, int) or max_short_side < 8):
            raise ValueError(f"`max_short_side` must be an integer >= 8 or None, got {max_short_side!r}.")
        self.method = method
        self.preset = preset
        self.max_short_side = max_short_side
        self._dis = None

    @property
    def cv2(self) -> ModuleType:
        """The `cv2` module, imported on first use (an `ImportError` naming the `[eval]` extra without it)."""
        return require_flow()

    def describe(self) -> str:
        size = f", short side <= {self.max_short_side} px" if self.max_short_side else ""
        name = f"OpenCV DIS ({self.preset})" if self.method == "dis" else "OpenCV Farneback"
        return f"{name} optical flow{size}"

    def _flow(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        cv2 = self.cv2
        if self.method == "farneback":
            return cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        if self._dis is None:
            self._dis = cv2.DISOpticalFlow_create(self._PRESETS[self.preset])
        return self._dis.calc(a, b, None)

    def working_size(self, height: int, width: int) -> tuple[int, int]:
        """`(height, width)` at which the flow of `height x width` frames is computed."""
        short = min(height, width)
        if self.max_short_side is None or short <= self.max_short_side:
            return height, width
        scale = self.max_short_side / short
        return max(1, round(height * scale)), max(1, round(width * scale))

    def prepare(self, gray: np.ndarray) -> np.ndarray:
        """Bring `uint8` grayscale frames `(F, H, W)` to the working size (area interpolation)."""
        height, width = gray.shape[1:]
        size = self.working_size(height, width)
        if size == (height, width):
            return gray
        return np.stack([self.cv2.resize(frame, size[::-1], interpolation=self.cv2.INTER_AREA) for frame in gray])

    def flow_prepared(self, a: np.ndarray, b: np.ndarray, height: int, width: int) -> np.ndarray:
        """Flow between two [`prepare`]d frames, in full-resolution pixels but still at the working size."""
        flow = self._flow(a, b)
        small_h, small_w = a.shape
        if (small_h, small_w) != (height, width):
            flow[..., 0] *= width / small_w
            flow[..., 1] *= height / small_h
        return flow

    def upsample(self, flow: np.ndarray, height: int, width: int) -> np.ndarray:
        """A [`flow_prepared`] flow resized to `height x width` (bilinear)."""
        if flow.shape[:2] == (height, width):
            return flow
        return self.cv2.resize(flow, (width, height), interpolation=self.cv2.INTER_LINEAR)

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Flow from `a` to `b` (`uint8`, `(H, W)`): `(H, W, 2)` float32, `b(x + flow(x)) ≈ a(x)`, in pixels."""
        height, width = a.shape
        small = self.prepare(np.stack([a, b]))
        return self.upsample(self.flow_prepared(small[0], small[1], height, width), height, width)


class PairwiseFlow:
    """Memoised flow between frames of one window (dynamic degree and smoothness share many pairs).

    Args:
        gray (`np.ndarray`): `uint8` grayscale frames `(F, H, W)` of the window.
        estimator ([`FlowEstimator`]): Computes the flow; each frame is brought to its working size once.
    """

    def __init__(self, gray: np.ndarray, estimator: FlowEstimator) -> None:
        self.height, self.width = gray.shape[1:]
        self.estimator = estimator
        self._small = estimator.prepare(gray)
        self._cache: dict[tuple[int, int], np.ndarray] = {}

    def working(self, i: int, j: int) -> np.ndarray:
        """Flow from frame `i` to frame `j` at the working size, in full-resolution pixels (enough for magnitudes)."""
        key = (i, j)
        if key not in self._cache:
            self._cache[key] = self.estimator.flow_prepared(self._small[i], self._small[j], self.height, self.width)
        return self._cache[key]

    def __call__(self, i: int, j: int) -> np.ndarray:
        """Flow from frame `i` to frame `j`: `(H, W, 2)` float32 in full-resolution pixels."""
        return self.estimator.upsample(self.working(i, j), self.height, self.width)


def top_flow_magnitude(flow: np.ndarray, fraction: float = 0.05) -> float:
    """VBench's motion score of a frame pair: the mean of the largest `fraction` of flow magnitudes."""
    magnitude = np.sqrt(np.square(flow[..., 0]) + np.square(flow[..., 1])).ravel()
    cut = max(1, int(magnitude.size * fraction))
    return float(np.partition(magnitude, magnitude.size - cut)[-cut:].mean())


def clip_dynamic_degree(
    flow: PairwiseFlow, start: int, end: int, fps: float, height: int, width: int
) -> tuple[float | None, list[float]]:
    """VBench's dynamic degree of frames `[start, end)`: 1.0 if the clip moves, else 0.0, and the pair scores.

    See [`~evaluation.metrics.dynamic_degree_params`] for the rule. `None` when fewer than two frames remain after
    sampling to ~8 fps.
    """
    indices = list(range(start, end, dynamic_degree_interval(fps)))
    if len(indices) < 2:
        return None, []
    threshold, count = dynamic_degree_params(fps, height, width, len(indices))
    scores = [top_flow_magnitude(flow.working(i, j)) for i, j in zip(indices[:-1], indices[1:])]
    moving = sum(score > threshold for score in scores)
    return (1.0 if moving >= count else 0.0), scores


def interpolate_midframe(
    frame0: np.ndarray, frame1: np.ndarray, flow01: np.ndarray, flow10: np.ndarray, cv2=None
) -> np.ndarray:
    r"""The frame half-way between `frame0` and `frame1`, by bidirectional backward warping.

    With flows `F01`, `F10` between the two frames, the flow from the middle frame to each neighbour is approximated
    as in Super SloMo (Jiang et al. 2018) at `t = 1/2`: `F_t0 = (F10 - F01) / 4`, `F_t1 = (F01 - F10) / 4`. Each
    neighbour is warped to the middle along its flow (bilinear, borders replicated) and the two are averaged.
    Exact for a static scene (the average of two identical frames) and for uniform linear motion.

    Returns:
        `np.ndarray`: `uint8` `(H, W, 3)`.
    """
    cv2 = cv2 or require("cv2", "frame interpolation for motion smoothness")
    height, width = frame0.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    flow_t0 = (flow10 - flow01) * 0.25
    flow_t1 = (flow01 - flow10) * 0.25
    warped0 = cv2.remap(
        frame0, grid_x + flow_t0[..., 0], grid_y + flow_t0[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    warped1 = cv2.remap(
        frame1, grid_x + flow_t1[..., 0], grid_y + flow_t1[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return cv2.addWeighted(warped0, 0.5, warped1, 0.5, 0.0)


def clip_motion_smoothness(frames: np.ndarray, flow: PairwiseFlow, start: int, end: int) -> float | None:
    r"""VBench's motion smoothness of frames `[start, end)`, with flow warping in place of AMT.

    The even frames `0, 2, 4, …` of the clip are kept, every odd frame `2k + 1` is re-created from its neighbours
    `2k` and `2k + 2`, and

        score = (255 - mean |interpolated - original|) / 255

    over all re-created frames, pixels and channels (`uint8` values). 1 means the motion is perfectly predictable
    from its neighbours. `None` for clips of fewer than 3 frames.
    """
    if end - start < 3:
        return None
    cv2 = require("cv2", "frame interpolation for motion smoothness")
    errors = []
    for left in range(start, end - 2, 2):
        right = left + 2
        middle = interpolate_midframe(frames[left], frames[right], flow(left, right), flow(right, left), cv2=cv2)
        errors.append(cv2.absdiff(middle, frames[left + 1]).mean())
    return float((255.0 - np.mean(errors)) / 255.0)
