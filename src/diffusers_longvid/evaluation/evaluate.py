# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""`evaluate_video`: VBench-style scores of any video, per time window, with error-accumulation slopes and AF.

How a video is scored (both backends):

1. The video is cut into consecutive **time windows** of `window_seconds` (30 s by default, as the paper's
   "imaging quality over 3 minutes" figure); a last window shorter than half a window joins the one before it.
2. Each window is cut into VBench-Long's fixed **clips** of `clip_seconds` (2 s; the last clip borrows frames from
   the one before so all clips have full length). Subject/background consistency, motion smoothness and dynamic
   degree are computed per clip with VBench's short-video formulas and averaged over the window's clips; aesthetic
   and imaging quality, and AF, are means over the window's frames.
3. The **overall** score of a dimension is the mean over all clips (clip dimensions) or all frames (frame dimensions
   and AF) of the video, which is how VBench-Long averages its clips.
4. **Error accumulation**: for every metric, the least-squares slope of the window scores over the window centre
   times, in score units **per minute** (negative = the video degrades as it goes on).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from diffusers.utils import logging

from .backend import EvaluationBackend
from .metrics import (
    AVERAGE_FREQUENCY,
    CONSISTENCY_DIMENSIONS,
    FRAME_DIMENSIONS,
    METRICS,
    MOTION_DIMENSIONS,
    clip_bounds,
    fit_slope,
    mean_or_none,
    validate_dimensions,
    vbench_consistency,
)
from .motion import PairwiseFlow, clip_dynamic_degree, clip_motion_smoothness, require_flow, to_gray
from .video import VideoSource, list_videos, open_video


logger = logging.get_logger(__name__)  # pylint: disable=invalid-name

__all__ = [
    "WindowResult",
    "EvalResult",
    "EvalSuiteResult",
    "evaluate_video",
    "get_backend",
    "load_eval_result",
    "BACKENDS",
]

BACKENDS: tuple[str, ...] = ("offline", "reference")

PROXY_NOTE = (
    "Offline proxies: classical image statistics standing in for VBench's models. They are NOT comparable to "
    "published VBench numbers (e.g. the paper's Table 1); compare runs with each other only."
)
REFERENCE_NOTE = (
    "Reference backend: VBench's models where available (DINO ViT-B/16, CLIP, LAION aesthetic head). Dimensions "
    "listed in `proxy_dimensions` use stand-ins (OpenCV flow instead of RAFT/AMT; CLIP-IQA instead of MUSIQ unless a "
    "MUSIQ module was given) and are not strictly comparable to published VBench numbers."
)


@dataclass
class WindowResult:
    r"""
    Scores of one time window.

    Args:
        index (`int`): Position of the window, from 0.
        start_frame (`int`), end_frame (`int`): Frame range `[start_frame, end_frame)`.
        start_seconds (`float`), end_seconds (`float`): The same range in seconds.
        num_clips (`int`): How many VBench-Long clips the window was cut into.
        scores (`dict[str, float | None]`): Every metric of `METRICS` that was computed (`None` where a window is
            too short for it, e.g. smoothness needs 3 frames).
    """

    index: int
    start_frame: int
    end_frame: int
    start_seconds: float
    end_seconds: float
    num_clips: int
    scores: dict[str, float | None]

    @property
    def center_seconds(self) -> float:
        return 0.5 * (self.start_seconds + self.end_seconds)


@dataclass
class EvalResult:
    r"""
    The evaluation of one video.

    Args:
        name (`str`): The video's label (file name for files).
        scores (`dict[str, float | None]`): Overall score of every evaluated dimension, and `"average_frequency"`.
        windows (`list[WindowResult]`): Per-window scores, in time order.
        slopes (`dict[str, float | None]`): Least-squares slope of each metric over the window centre times, per
            minute; `None` with fewer than two windows.
        backend (`str`): `"offline"` or `"reference"` (or a custom backend's name).
        proxies (`bool`): `True` when every dimension is an offline proxy (not comparable to published VBench).
        proxy_dimensions (`list[str]`): The dimensions computed with stand-ins for VBench's own models.
        methods (`dict[str, str]`): How each dimension was computed.
        num_frames (`int`), fps (`float`), height (`int`), width (`int`): The video.
        window_seconds (`float`, *optional*), clip_seconds (`float`, *optional*): The settings used.
        backend_config (`dict`): Model ids and other settings of the backend.
    """

    name: str
    scores: dict[str, float | None]
    windows: list[WindowResult]
    slopes: dict[str, float | None]
    backend: str
    proxies: bool
    proxy_dimensions: list[str]
    methods: dict[str, str]
    num_frames: int
    fps: float
    height: int
    width: int
    window_seconds: float | None
    clip_seconds: float | None
    backend_config: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_seconds(self) -> float:
        return self.num_frames / self.fps

    @property
    def average_frequency(self) -> float | None:
        """AF of the whole video (mean over frames), `None` if it was not computed."""
        return self.scores.get(AVERAGE_FREQUENCY)

    @property
    def metrics(self) -> list[str]:
        """The metrics present in `scores`, in report order."""
        return [m for m in METRICS if m in self.scores]

    def window_series(self, metric: str) -> tuple[list[float], list[float | None]]:
        """`(window centre times in seconds, window scores)` of one metric, e.g. for plotting."""
        return [w.center_seconds for w in self.windows], [w.scores.get(metric) for w in self.windows]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what `write_eval_report` writes), with a note on comparability."""
        data = asdict(self)
        data["duration_seconds"] = self.duration_seconds
        data["slope_unit"] = "score per minute"
        data["comparable_to_vbench"] = not self.proxy_dimensions
        data["note"] = PROXY_NOTE if self.proxies else REFERENCE_NOTE
        return data


@dataclass
class EvalSuiteResult:
    r"""
    The evaluation of a folder of videos.

    Args:
        videos (`dict[str, EvalResult]`): One result per video, keyed by file name.
        scores (`dict[str, float | None]`): Mean over videos of each overall score (VBench's dataset score).
        slopes (`dict[str, float | None]`): Mean over videos of each slope.
        backend (`str`), proxies (`bool`), proxy_dimensions (`list[str]`), methods (`dict[str, str]`): As in
            [`EvalResult`].
        skipped (`dict[str, str]`, *optional*): Files of the folder that could not be read or evaluated, with the
            reason; they are left out of the means.
    """

    videos: dict[str, EvalResult]
    scores: dict[str, float | None]
    slopes: dict[str, float | None]
    backend: str
    proxies: bool
    proxy_dimensions: list[str]
    methods: dict[str, str]
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def metrics(self) -> list[str]:
        return [m for m in METRICS if m in self.scores]

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "proxies": self.proxies,
            "proxy_dimensions": self.proxy_dimensions,
            "comparable_to_vbench": not self.proxy_dimensions,
            "note": PROXY_NOTE if self.proxies else REFERENCE_NOTE,
            "methods": self.methods,
            "num_videos": len(self.videos),
            "skipped": dict(self.skipped),
            "scores": self.scores,
            "slopes": self.slopes,
            "slope_unit": "score per minute",
            "videos": {name: result.to_dict() for name, result in self.videos.items()},
        }


def get_backend(
    backend: str | EvaluationBackend, dimensions: Sequence[str] | None = None, **backend_kwargs: Any
) -> EvaluationBackend:
    """Build a backend by name (`"offline"` or `"reference"`), or check a given backend instance.

    Args:
        backend (`str` or [`EvaluationBackend`]): The backend name or instance.
        dimensions (`Sequence[str]`, *optional*): Dimensions to evaluate; the backend loads only their models.
        backend_kwargs: Passed to the backend's constructor, e.g. `subject_model=...` for the reference backend.

    Raises:
        ImportError: A motion dimension (motion smoothness, dynamic degree) is requested and OpenCV, which they need,
            is not installed; raised before any model is loaded. The other dimensions run without OpenCV.
    """
    if any(d in MOTION_DIMENSIONS for d in validate_dimensions(dimensions)):
        require_flow()
    if isinstance(backend, EvaluationBackend):
        if backend_kwargs:
            raise ValueError("`backend_kwargs` can only be used with a backend name, not a backend instance.")
        missing = [d for d in validate_dimensions(dimensions) if d not in backend.dimensions]
        if dimensions is not None and missing:
            raise ValueError(f"The given backend was built without the dimensions {missing}.")
        return backend
    if backend == "offline":
        from .offline import OfflineBackend

        return OfflineBackend(dimensions=dimensions, **backend_kwargs)
    if backend == "reference":
        from .reference import ReferenceBackend

        return ReferenceBackend(dimensions=dimensions, **backend_kwargs)
    raise ValueError(f"`backend` must be one of {list(BACKENDS)} or an `EvaluationBackend`, got {backend!r}.")


def _frames_for(seconds: float | None, fps: float, argument: str) -> int | None:
    if seconds is None:
        return None
    frames = round(seconds * fps)
    if frames < 2:
        raise ValueError(f"`{argument}={seconds}` holds {frames} frame(s) at {fps:g} fps; it must hold at least 2.")
    return frames


def _iter_windows(source: VideoSource, window_frames: int | None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield `(start_frame, frames)` per window; a final chunk shorter than half a window joins the previous one."""
    size = window_frames if window_frames is not None else 1 << 62
    pending: np.ndarray | None = None
    start = 0
    for chunk in source.chunks(size):
        if pending is None:
            pending = chunk
        elif len(chunk) < size / 2:  # only the last chunk can be short
            pending = np.concatenate([pending, chunk])
        else:
            yield start, pending
            start += len(pending)
            pending = chunk
    if pending is not None:
        yield start, pending


def _repeat_first(features: Any, index: int, count: int) -> Any:
    first = features[index : index + 1]
    if hasattr(first, "expand"):  # torch
        return first.expand(count, *first.shape[1:])
    return np.broadcast_to(first, (count,) + tuple(first.shape[1:]))


@dataclass
class _Accumulator:
    """Overall scores: clip dimensions average over clips, frame dimensions and AF over frames."""

    clip_scores: dict[str, list[float]] = field(default_factory=dict)
    frame_sums: dict[str, float] = field(default_factory=dict)
    frame_counts: dict[str, int] = field(default_factory=dict)

    def add_clip(self, metric: str, value: float | None) -> None:
        if value is not None:
            self.clip_scores.setdefault(metric, []).append(value)

    def add_frames(self, metric: str, values: np.ndarray) -> None:
        self.frame_sums[metric] = self.frame_sums.get(metric, 0.0) + float(np.sum(values))
        self.frame_counts[metric] = self.frame_counts.get(metric, 0) + int(len(values))

    def result(self, metric: str) -> float | None:
        if metric in self.frame_counts:
            return self.frame_sums[metric] / self.frame_counts[metric]
        return mean_or_none(self.clip_scores.get(metric, []))


def _score_window(
    frames: np.ndarray,
    fps: float,
    backend: EvaluationBackend,
    dimensions: tuple[str, ...],
    clip_frames: int | None,
    compute_af: bool,
    totals: _Accumulator,
) -> tuple[dict[str, float | None], int]:
    num, height, width = frames.shape[:3]
    clips = clip_bounds(num, clip_frames)
    per_clip: dict[str, list[float | None]] = {d: [] for d in dimensions if d not in FRAME_DIMENSIONS}
    features = {d: backend.embed(frames, d) for d in dimensions if d in CONSISTENCY_DIMENSIONS}
    flow = None
    if "motion_smoothness" in dimensions or "dynamic_degree" in dimensions:
        flow = PairwiseFlow(to_gray(frames), backend.flow)

    for start, end in clips:
        for dimension, feats in features.items():
            value = None
            if end - start >= 2:
                previous = backend.similarity(dimension, feats[start : end - 1], feats[start + 1 : end])
                first = backend.similarity(
                    dimension, _repeat_first(feats, start, end - start - 1), feats[start + 1 : end]
                )
                value = vbench_consistency(previous, first)
            per_clip[dimension].append(value)
        if "motion_smoothness" in dimensions:
            per_clip["motion_smoothness"].append(clip_motion_smoothness(frames, flow, start, end))
        if "dynamic_degree" in dimensions:
            value, _ = clip_dynamic_degree(flow, start, end, fps, height, width)
            per_clip["dynamic_degree"].append(value)

    scores: dict[str, float | None] = {}
    for dimension in dimensions:
        if dimension in FRAME_DIMENSIONS:
            values = backend.frame_scores(frames, dimension)
            totals.add_frames(dimension, values)
            scores[dimension] = float(np.mean(values))
        else:
            for value in per_clip[dimension]:
                totals.add_clip(dimension, value)
            scores[dimension] = mean_or_none(per_clip[dimension])
    if compute_af:
        from ..frequency import average_frequency

        values = np.asarray(average_frequency(frames, layout="FHWC", reduction="frame"))[0]
        totals.add_frames(AVERAGE_FREQUENCY, values)
        scores[AVERAGE_FREQUENCY] = float(np.mean(values))
    return scores, len(clips)


def _evaluate_source(
    source: VideoSource,
    backend: EvaluationBackend,
    dimensions: tuple[str, ...],
    window_seconds: float | None,
    clip_seconds: float | None,
    compute_af: bool,
    show_progress: bool,
) -> EvalResult:
    fps = source.fps
    window_frames = _frames_for(window_seconds, fps, "window_seconds")
    clip_frames = _frames_for(clip_seconds, fps, "clip_seconds")
    totals = _Accumulator()
    windows: list[WindowResult] = []
    height = width = 0
    progress = logging.tqdm(
        total=source.num_frames_hint, unit="frame", desc=f"Evaluating {source.name}", disable=not show_progress
    )
    try:
        for index, (start, frames) in enumerate(_iter_windows(source, window_frames)):
            if index == 0 and len(frames) < 2:
                raise ValueError(f"`video` {source.name!r} must have at least 2 frames, got {len(frames)}.")
            height, width = frames.shape[1:3]
            scores, num_clips = _score_window(frames, fps, backend, dimensions, clip_frames, compute_af, totals)
            end = start + len(frames)
            windows.append(WindowResult(index, start, end, start / fps, end / fps, num_clips, scores))
            progress.update(len(frames))
    finally:
        progress.close()
    if not windows:
        raise ValueError(f"`video` {source.name!r} has no frames.")

    metrics = [m for m in METRICS if m in dimensions or (m == AVERAGE_FREQUENCY and compute_af)]
    times = [w.center_seconds / 60.0 for w in windows]
    return EvalResult(
        name=source.name,
        scores={m: totals.result(m) for m in metrics},
        windows=windows,
        slopes={m: fit_slope(times, [w.scores.get(m) for w in windows]) for m in metrics},
        backend=backend.name,
        proxies=backend.proxies,
        proxy_dimensions=[d for d in backend.proxy_dimensions() if d in dimensions],
        methods={d: m for d, m in backend.methods().items() if d in dimensions},
        num_frames=windows[-1].end_frame,
        fps=fps,
        height=int(height),
        width=int(width),
        window_seconds=window_seconds,
        clip_seconds=clip_seconds,
        backend_config=backend.config(),
    )


def _check_seconds(value: float | None, argument: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0):
        raise ValueError(f"`{argument}` must be a positive number of seconds or None, got {value!r}.")
    if value is not None and not math.isfinite(value):
        raise ValueError(f"`{argument}` must be finite, got {value!r}.")


def evaluate_video(
    video: Any,
    backend: str | EvaluationBackend = "offline",
    window_seconds: float | None = 30.0,
    fps: float | None = None,
    clip_seconds: float | None = 2.0,
    dimensions: Sequence[str] | None = None,
    compute_af: bool = True,
    backend_kwargs: dict[str, Any] | None = None,
    show_progress: bool = True,
    name: str | None = None,
) -> EvalResult | EvalSuiteResult:
    r"""
    Evaluate a video with VBench's long-video dimensions, per time window, with error-accumulation slopes and AF.

    See the module docstring for the windows/clips protocol and docs/evaluation.md for every formula.

    Args:
        video (`str`, `os.PathLike`, `np.ndarray`, `torch.Tensor` or `list[PIL.Image.Image]`):
            A video file (anything imageio's ffmpeg plugin reads), a folder (every video file directly inside is
            evaluated and an [`EvalSuiteResult`] returned), or frames: `(F, H, W, 3)` `uint8` or float in `[0, 1]`
            (diffusers' `output_type="np"`, batch dimension of 1 allowed), torch `(F, 3, H, W)` (`output_type="pt"`),
            or a list of PIL images.
        backend (`str` or [`EvaluationBackend`], *optional*, defaults to `"offline"`):
            `"offline"` (classical proxies, no weights, not comparable to published VBench numbers) or
            `"reference"` (VBench's models through transformers; needs their weights), or a backend instance.
        window_seconds (`float`, *optional*, defaults to 30.0):
            Length of the error-accumulation windows; `None` scores the whole video as one window.
        fps (`float`, *optional*):
            Frames per second. Defaults to the file's rate, and to 16 (Wan2.1) for in-memory frames.
        clip_seconds (`float`, *optional*, defaults to 2.0):
            Length of VBench-Long's clips inside a window; `None` scores each window as one clip.
        dimensions (`Sequence[str]`, *optional*):
            A subset of the six dimensions (default: all). The reference backend loads only the models they need.
        compute_af (`bool`, *optional*, defaults to `True`):
            Also compute AF, the paper's average frequency (Eq. 6), per window and overall.
        backend_kwargs (`dict`, *optional*):
            Passed to the backend's constructor when `backend` is a name, e.g.
            `{"subject_model": "/models/dino-vitb16", "aesthetic_head": "/models/sa_0_4_vit_l_14_linear.pth"}`.
        show_progress (`bool`, *optional*, defaults to `True`): Show a progress bar over frames.
        name (`str`, *optional*): Label of in-memory frames in reports (default `"video"`).

    Returns:
        [`EvalResult`] for one video, [`EvalSuiteResult`] for a folder.

    Example:

    ```py
    >>> from diffusers_longvid.evaluation import evaluate_video, write_eval_report

    >>> result = evaluate_video("long_video.mp4", backend="offline", window_seconds=30)
    >>> result.scores["imaging_quality"], result.slopes["imaging_quality"]  # overall, change per minute
    >>> write_eval_report(result, "eval_report")  # eval_results.json, eval_report.md, eval_windows.png
    ```
    """
    _check_seconds(window_seconds, "window_seconds")
    _check_seconds(clip_seconds, "clip_seconds")
    dims = validate_dimensions(dimensions)
    backend_kwargs = dict(backend_kwargs or {})
    if isinstance(backend, str) and backend not in BACKENDS:
        raise ValueError(f"`backend` must be one of {list(BACKENDS)} or an `EvaluationBackend`, got {backend!r}.")

    # read what can be read cheaply (paths, frame rates, array layouts) before any model is loaded
    skipped: dict[str, str] = {}
    if isinstance(video, (str, os.PathLike)) and Path(video).is_dir():
        paths = list_videos(video)
        if not paths:
            raise ValueError(f"The folder `video` {str(video)!r} holds no video files.")
        # one unreadable file of a folder is reported and left out, it does not abort the others
        sources = []
        for path in paths:
            try:
                sources.append(open_video(path, fps=fps))
            except _UNREADABLE as error:
                skipped[Path(path).name] = _reason(error)
        folder = True
    else:
        sources = [open_video(video, fps=fps, name=name)]
        folder = False

    evaluator = get_backend(backend, dimensions=dims, **backend_kwargs)
    if not folder:
        return _evaluate_source(sources[0], evaluator, dims, window_seconds, clip_seconds, compute_af, show_progress)
    results = []
    for source in sources:
        try:
            results.append(
                _evaluate_source(source, evaluator, dims, window_seconds, clip_seconds, compute_af, show_progress)
            )
        except _UNREADABLE as error:  # a file whose header reads but whose frames do not
            skipped[source.name] = _reason(error)
    for file_name, reason in skipped.items():
        logger.warning(f"Skipped {file_name!r} of {str(video)!r}: {reason}")
    if not results:
        listed = "; ".join(f"{n}: {r}" for n, r in skipped.items())
        raise ValueError(f"No video of the folder `video` {str(video)!r} could be evaluated ({listed}).")

    metrics = results[0].metrics
    return EvalSuiteResult(
        videos={r.name: r for r in results},
        scores={m: mean_or_none([r.scores.get(m) for r in results]) for m in metrics},
        slopes={m: mean_or_none([r.slopes.get(m) for r in results]) for m in metrics},
        backend=evaluator.name,
        proxies=evaluator.proxies,
        proxy_dimensions=results[0].proxy_dimensions,
        methods=results[0].methods,
        skipped=skipped,
    )


# What reading a damaged or foreign file raises (imageio/ffmpeg: OSError, RuntimeError; our checks: ValueError).
_UNREADABLE = (OSError, RuntimeError, ValueError, EOFError, IndexError)


def _reason(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]


def load_eval_result(path: str | os.PathLike) -> dict[str, Any]:
    """Read a JSON written by `write_eval_report` back as a dict."""
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)
