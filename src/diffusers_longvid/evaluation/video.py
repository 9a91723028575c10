# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""Video input for the evaluation: files (read with imageio, streamed), folders of files, arrays and tensors.

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

from ..utils import require


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
_CHANNELS = (1, 3)


def _is_torch_tensor(value: Any) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")


def to_uint8_frames(video: Any, name: str = "video") -> np.ndarray:
    """Normalise in-memory frames to a `uint8` array of shape `(F, H, W, 3)`.

    Args:
        video (`np.ndarray`, `torch.Tensor`, `list[PIL.Image.Image]` or `list[np.ndarray]`):
            One video. Arrays may be `(F, H, W, 3)`, `(F, H, W, 1)`, `(F, H, W)` (grayscale) or, for torch tensors
            (diffusers' `output_type="pt"`), `(F, 3, H, W)`; a leading batch dimension of size 1 is dropped.
            `uint8` values are used as they are; floating-point values must lie in `[0, 1]` (diffusers'
            `output_type="np"`/`"pt"`) and are rounded to `uint8`.
        name (`str`, *optional*, defaults to `"video"`): The argument name used in error messages.
    """
    channel_first = False
    if _is_torch_tensor(video):
        array = video.detach().cpu()
        if array.dtype.is_floating_point:
            array = array.float()
        array = array.numpy()
        channel_first = True
    elif isinstance(video, np.ndarray):
        array = video
    elif isinstance(video, (list, tuple)):
        if len(video) == 0:
            raise ValueError(f"`{name}` is an empty list.")
        frames = []
        for frame in video:
            if hasattr(frame, "convert") and hasattr(frame, "size"):  # a PIL image
                frames.append(np.asarray(frame.convert("RGB")))
            elif isinstance(frame, np.ndarray) or _is_torch_tensor(frame):
                frames.append(to_uint8_frames(frame[None], name=name)[0])
            else:
                raise TypeError(
                    f"`{name}` must be a list of PIL images or arrays, got an item of type {type(frame).__name__}."
                )
        if len({f.shape for f in frames}) != 1:
            raise ValueError(f"All frames of `{name}` must have the same size.")
        return np.stack(frames)
    else:
        raise TypeError(
            f"`{name}` must be a path, a folder, a `numpy.ndarray`, a `torch.Tensor` or a list of PIL images, "
            f"got {type(video).__name__}."
        )

    if array.ndim == 5:
        if array.shape[0] != 1:
            raise ValueError(
                f"`{name}` holds a batch of {array.shape[0]} videos (shape {array.shape}); evaluate one at a time, "
                f"e.g. `{name}[i]`."
            )
        array = array[0]
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4:
        raise ValueError(f"`{name}` must have shape (F, H, W, 3) or (F, 3, H, W), got {array.shape}.")
    if channel_first and array.shape[1] in _CHANNELS and array.shape[-1] not in _CHANNELS:
        array = array.transpose(0, 2, 3, 1)
    elif array.shape[-1] not in _CHANNELS and array.shape[1] in _CHANNELS:
        array = array.transpose(0, 2, 3, 1)
    if array.shape[-1] not in _CHANNELS:
        raise ValueError(
            f"`{name}` must have 1 or 3 channels, in the last dimension or (torch) the second; got {array.shape}."
        )

    if array.dtype == np.uint8:
        frames = array
    elif np.issubdtype(array.dtype, np.floating):
        low, high = float(np.nanmin(array)), float(np.nanmax(array))
        if not (np.isfinite(low) and np.isfinite(high)) or low < -1e-3 or high > 1.0 + 1e-3:
            raise ValueError(
                f"Floating-point `{name}` must hold values in [0, 1], got [{low:.4g}, {high:.4g}]. Convert a [-1, 1] "
                f"video with `(video + 1) / 2`, or pass `uint8` frames."
            )
        frames = np.rint(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)
    else:
        raise TypeError(f"`{name}` must be uint8 or floating point, got dtype {array.dtype}.")
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    return np.ascontiguousarray(frames)


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
        imageio = require("imageio", "reading video files for evaluation")
        reader = imageio.v2.get_reader(self.path, format="FFMPEG")
        try:
            buffer: list[np.ndarray] = []
            for frame in reader:
                frame = np.asarray(frame)
                if frame.ndim == 2:
                    frame = np.repeat(frame[..., None], 3, axis=-1)
                buffer.append(frame[..., :3])
                if len(buffer) == size:
                    yield np.stack(buffer)
                    buffer = []
            if buffer:
                yield np.stack(buffer)
        finally:
            reader.close()


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
        imageio = require("imageio", "reading video files for evaluation")
        reader = imageio.v2.get_reader(str(path), format="FFMPEG")
        try:
            meta = reader.get_meta_data()
        finally:
            reader.close()
        file_fps = float(meta.get("fps") or 0.0)
        if fps is None and file_fps <= 0:
            raise ValueError(f"Cannot read the frame rate of {str(path)!r}; pass `fps`.")
        rate = float(fps) if fps is not None else file_fps
        duration = float(meta.get("duration") or 0.0)
        hint = round(duration * file_fps) if duration > 0 and file_fps > 0 else None
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
