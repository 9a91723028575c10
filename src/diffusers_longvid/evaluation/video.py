# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""Video input for the evaluation: files (read with `video_io.iter_video_frames`, streamed), folders, arrays, tensors.

Everything is normalised to RGB `uint8` frames of shape `(F, H, W, 3)`, which is what VBench's models see after
reading an mp4. Files are read chunk by chunk, so a long video never has to fit in memory at once.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..video_io import iter_video_frames, probe_video
from ..video_io import to_uint8_frames as _to_uint8_frames


__all__ = [
    "VIDEO_EXTENSIONS",
    "DEFAULT_FPS",
    "VideoSource",
    "open_video",
    "list_videos",
    "to_uint8_frames",
    "load_video",
]

# Suffixes a folder is scanned for (anything the imageio ffmpeg plugin reads).
VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".mov", ".webm", ".mkv", ".avi")
# Wan2.1 generates 16 frames per second; in-memory frames carry no frame rate, so this is the default.
DEFAULT_FPS = 16.0


def to_uint8_frames(video: Any, name: str = "video") -> np.ndarray:
    """Normalise in-memory frames to a `uint8` array of shape `(F, H, W, 3)`: `diffusers_longvid.video_io`'s
    `to_uint8_frames` with `strict=True` (values out of range raise instead of being clipped), for one video.

    Args:
        video (`np.ndarray`, `torch.Tensor`, `list[PIL.Image.Image]` or `list[np.ndarray]`):
            One video. Arrays may be `(F, H, W, 3)`, `(F, H, W, 1)`, `(F, H, W)` (grayscale) or, for torch tensors
            (diffusers' `output_type="pt"`), `(F, 3, H, W)`; a leading batch dimension of size 1 is dropped.
            `uint8` values are used as they are; floating-point values must lie in `[0, 1]` (diffusers'
            `output_type="np"`/`"pt"`) and are rounded to `uint8`.
        name (`str`, *optional*, defaults to `"video"`): The argument name used in error messages.
    """
    if isinstance(video, (list, tuple)) and video and all(isinstance(item, (list, tuple)) for item in video):
        batch = len(video)
    else:
        shape = getattr(video, "shape", ())
        batch = shape[0] if len(shape) == 5 else 1
    if batch != 1:
        raise ValueError(f"`{name}` holds a batch of {batch} videos; evaluate one at a time, e.g. `{name}[i]`.")
    return _to_uint8_frames(video, batch_index=0, strict=True, name=name)  # (`batch_index` only picks from a batch)


@dataclass
class VideoSource:
    """A video to evaluate: its name, frame rate and a way to read its frames in chunks.

    Args:
        name (`str`): A label for reports (the file name for files).
        fps (`float`): Frames per second.
        path (`str`, *optional*): The file it is read from; `None` for in-memory frames.
        frames (`np.ndarray`, *optional*): In-memory `uint8` frames `(F, H, W, 3)`; `None` for files.
        num_frames_hint (`int`, *optional*): The expected number of frames (for progress bars only).
    """

    name: str
    fps: float
    path: str | None = None
    frames: np.ndarray | None = field(default=None, repr=False)
    num_frames_hint: int | None = None

    def chunks(self, size: int) -> Iterator[np.ndarray]:
        """Yield consecutive `uint8` chunks of `size` frames (the last one may be shorter)."""
        if self.frames is not None:
            for start in range(0, len(self.frames), size):
                yield self.frames[start : start + size]
            return
        buffer: list[np.ndarray] = []
        for frame in iter_video_frames(self.path):
            buffer.append(frame)
            if len(buffer) == size:
                yield np.stack(buffer)
                buffer = []
        if buffer:
            yield np.stack(buffer)


def open_video(video: Any, fps: float | None = None, name: str | None = None) -> VideoSource:
    """Wrap a video file or in-memory frames as a [`VideoSource`].

    Args:
        video (`str`, `os.PathLike`, `np.ndarray`, `torch.Tensor` or `list`): A video file, or frames as accepted by
            [`to_uint8_frames`].
        fps (`float`, *optional*): Frames per second. Defaults to the file's rate, and to 16 (Wan2.1's rate) for
            in-memory frames.
        name (`str`, *optional*): A label for reports; defaults to the file name or `"video"`.
    """
    if fps is not None and (not isinstance(fps, (int, float)) or not math.isfinite(fps) or fps <= 0):
        raise ValueError(f"`fps` must be a positive number, got {fps!r}.")
    if isinstance(video, (str, os.PathLike)):
        path = Path(video)
        if not path.is_file():
            raise FileNotFoundError(f"`video` {str(path)!r} is not a file.")
        try:
            info = probe_video(path)
        except OSError as error:
            if fps is None:
                raise ValueError(f"Cannot read the frame rate of {str(path)!r} ({error}); pass `fps`.") from error
            info = None  # decoding will tell whether the file is readable at all
        rate = float(fps) if fps is not None else info.fps
        hint = info.num_frames if info is not None else None
        return VideoSource(name=name or path.name, fps=rate, path=str(path), num_frames_hint=hint)
    frames = to_uint8_frames(video)
    return VideoSource(
        name=name or "video",
        fps=float(fps) if fps is not None else DEFAULT_FPS,
        frames=frames,
        num_frames_hint=len(frames),
    )


def load_video(path: str | os.PathLike, fps: float | None = None) -> tuple[np.ndarray, float]:
    """Read a whole video file into memory: `uint8` frames `(F, H, W, 3)` and its frame rate."""
    source = open_video(path, fps=fps)
    return np.concatenate(list(source.chunks(256))), source.fps


def list_videos(folder: str | os.PathLike, extensions: Sequence[str] = VIDEO_EXTENSIONS) -> list[Path]:
    """The video files directly inside `folder`, sorted by name (not recursive)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"{str(folder)!r} is not a folder.")
    lowered = tuple(e.lower() for e in extensions)
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in lowered)
