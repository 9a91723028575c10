# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""The interface every evaluation backend implements (offline proxies, reference VBench models)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np

from .metrics import validate_dimensions
from .motion import FlowEstimator


__all__ = ["EvaluationBackend"]


class EvaluationBackend(ABC):
    r"""
    What the evaluation loop needs from a backend: per-frame features and their similarity (consistency
    dimensions), per-frame scores (aesthetic and imaging quality) and optical flow (motion dimensions).

    The formulas that turn these into VBench scores live in [`evaluate_video`], so that both backends are scored the
    same way. Subclasses load their models in `__init__`, before any frame is read, so a missing model fails early.

    Args:
        dimensions (`Sequence[str]`, *optional*):
            The dimensions this backend will be asked for (default: all six); models of the others are not loaded.
        flow_method (`str`, *optional*, defaults to `"dis"`): `"dis"` or `"farneback"`, see [`FlowEstimator`].
        flow_preset (`str`, *optional*, defaults to `"medium"`): DIS preset, see [`FlowEstimator`].
        flow_max_short_side (`int`, *optional*, defaults to 256): Working resolution of the flow, see
            [`FlowEstimator`].
    """

    name: ClassVar[str]
    # Whether every dimension of this backend is a proxy (not comparable to published VBench numbers).
    proxies: ClassVar[bool]

    def __init__(
        self,
        dimensions: Sequence[str] | None = None,
        flow_method: Literal["dis", "farneback"] = "dis",
        flow_preset: Literal["ultrafast", "fast", "medium"] = "medium",
        flow_max_short_side: int | None = 256,
    ) -> None:
        self.dimensions = validate_dimensions(dimensions)
        self.flow = FlowEstimator(method=flow_method, preset=flow_preset, max_short_side=flow_max_short_side)

    @abstractmethod
    def embed(self, frames: np.ndarray, dimension: str) -> Any:
        """Per-frame features for a consistency dimension: an array or tensor whose first axis is the frame.

        Args:
            frames (`np.ndarray`): `uint8` frames `(F, H, W, 3)`.
            dimension (`str`): One of `CONSISTENCY_DIMENSIONS`.
        """

    @abstractmethod
    def similarity(self, dimension: str, a: Any, b: Any) -> np.ndarray:
        """Row-wise similarity of two equally long slices of [`embed`] output: `(N,)` float64 (1 = identical)."""

    @abstractmethod
    def frame_scores(self, frames: np.ndarray, dimension: str) -> np.ndarray:
        """Per-frame scores in `[0, 1]` for a frame dimension (`aesthetic_quality` or `imaging_quality`): `(F,)`."""

    @abstractmethod
    def methods(self) -> dict[str, str]:
        """A one-line description of how each of this backend's dimensions is computed (for reports)."""

    def proxy_dimensions(self) -> list[str]:
        """The dimensions computed with proxies or stand-ins for VBench's own models (all of them offline)."""
        return list(self.dimensions) if self.proxies else []

    def config(self) -> dict[str, Any]:
        """JSON-ready settings of this backend (model ids, flow), written into reports."""
        return {"flow": self.flow.describe()}

    @staticmethod
    def _check_dimension(dimension: str, allowed: Sequence[str]) -> None:
        if dimension not in allowed:
            raise ValueError(f"`dimension` must be one of {list(allowed)}, got {dimension!r}.")
