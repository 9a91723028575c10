# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""Writing videos, including clip-by-clip streaming to an mp4 while a long video is being generated.

[`StreamingVideoWriter`] appends frames to an mp4 through `imageio` + `imageio-ffmpeg` as each clip is finished. The
mp4 is written *fragmented* by default (`-movflags +frag_keyframe+empty_moov`), so the file is playable up to the
last complete fragment even if the process is killed; an exception inside a `with` block closes the file cleanly, so
everything appended so far is kept.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import numpy as np
import PIL.Image

from .utils import require

__all__ = ["StreamingVideoWriter", "read_video", "to_uint8_frames", "write_video"]


def to_uint8_frames(frames: Any, batch_index: int | None = None) -> np.ndarray:
    r"""
    Convert frames to a `uint8` array of shape `(frames, height, width, 3)`.

    Args:
        frames: One of: a `np.ndarray` `(frames, H, W, C)` (float in [0, 1] or uint8), a `torch.Tensor`
            `(frames, C, H, W)` (float in [0, 1]), a list of PIL images, or the batched forms the pipeline returns
            (`(batch, frames, ...)` arrays/tensors, a list of lists of PIL images) together with `batch_index`.
        batch_index (`int`, *optional*): Which video of a batch to take. Required for batched input.
    """
    if isinstance(frames, list) and frames and isinstance(frames[0], list):
        if batch_index is None:
            raise ValueError("`frames` is a batch (a list of lists of PIL images): pass `batch_index`.")
        frames = frames[batch_index]
    if isinstance(frames, list):
        if not all(isinstance(f, PIL.Image.Image) for f in frames):
            raise TypeError("`frames` as a list must hold PIL images.")
        return np.stack([np.asarray(f.convert("RGB")) for f in frames]) if frames else np.zeros((0, 0, 0, 3), np.uint8)
    if not isinstance(frames, np.ndarray):
        import torch

        if not isinstance(frames, torch.Tensor):
            raise TypeError(
                f"`frames` must be a np.ndarray, a torch.Tensor or a list of PIL images, got {type(frames).__name__}."
            )
        channels_first = frames.ndim in (4, 5) and frames.shape[-3] in (1, 3) and frames.shape[-1] not in (1, 3)
        frames = frames.detach().float().cpu()
        if channels_first:
            frames = frames.movedim(-3, -1)
        frames = frames.numpy()
    if frames.ndim == 5:
        if batch_index is None:
            raise ValueError(f"`frames` has a batch dimension (shape {frames.shape}): pass `batch_index`.")
        frames = frames[batch_index]
    if frames.ndim != 4:
        raise ValueError(f"`frames` must have shape `(frames, height, width, channels)`, got {frames.shape}.")
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    if frames.dtype == np.uint8:
        return frames
    return (np.clip(frames, 0.0, 1.0) * 255.0).round().astype(np.uint8)


class StreamingVideoWriter:
    r"""
    Append frames to a video file (mp4 by default) as they are produced, e.g. clip by clip:

    ```py
    >>> with StreamingVideoWriter("long.mp4", fps=16) as writer:
    ...     for clip in pipe.generate_clips(prompts, ...):
    ...         writer.append(clip.frames[0])
    ```

    Args:
        path (`str` or `os.PathLike`): Output file; its folder is created.
        fps (`float`, *optional*, defaults to 16): Frames per second (Wan2.1 generates at 16 fps).
        codec (`str`, *optional*, defaults to `"libx264"`): ffmpeg codec.
        quality (`float`, *optional*, defaults to 8): imageio's quality, 0 (worst) to 10 (best).
        fragmented (`bool`, *optional*, defaults to `True`):
            Write a fragmented mp4, playable up to the last fragment even if the process dies before `close()`.
        macro_block_size (`int`, *optional*, defaults to 2): Frame sizes are padded to multiples of this (yuv420p
            needs even sizes).
        batch_index (`int`, *optional*, defaults to 0): Which video to take when `append` receives a batch.
        ffmpeg_params (`list[str]`, *optional*): Extra ffmpeg output parameters.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fps: float = 16,
        codec: str = "libx264",
        quality: float | None = 8,
        fragmented: bool = True,
        macro_block_size: int = 2,
        batch_index: int = 0,
        ffmpeg_params: Sequence[str] | None = None,
    ) -> None:
        if fps <= 0:
            raise ValueError(f"`fps` must be positive, got {fps}.")
        self.path = os.fspath(path)
        self.fps = fps
        self.codec = codec
        self.quality = quality
        self.fragmented = fragmented
        self.macro_block_size = macro_block_size
        self.batch_index = batch_index
        self.ffmpeg_params = list(ffmpeg_params or [])
        self.num_frames = 0
        self.num_appends = 0
        self._writer = None
        self._closed = False

    def _open(self) -> None:
        imageio = require("imageio", "Writing videos")
        require("imageio_ffmpeg", "Writing mp4 videos")
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        params = list(self.ffmpeg_params)
        if self.fragmented and self.path.lower().endswith((".mp4", ".mov", ".m4v")):
            params += ["-movflags", "+frag_keyframe+empty_moov+default_base_moof"]
        self._writer = imageio.get_writer(
            self.path,
            format="FFMPEG",
            mode="I",
            fps=self.fps,
            codec=self.codec,
            quality=self.quality,
            macro_block_size=self.macro_block_size,
            ffmpeg_params=params or None,
            ffmpeg_log_level="error",
        )

    def append(self, frames: Any) -> int:
        """Append frames (any form accepted by [`to_uint8_frames`]); returns the number of frames written so far."""
        if self._closed:
            raise ValueError(f"The writer of {self.path!r} is closed.")
        array = to_uint8_frames(frames, batch_index=self.batch_index)
        if len(array) == 0:
            return self.num_frames
        if self._writer is None:
            self._open()
        for frame in array:
            self._writer.append_data(frame)
        self.num_frames += len(array)
        self.num_appends += 1
        return self.num_frames

    def close(self) -> None:
        """Finish the file (idempotent)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._closed = True

    def __enter__(self) -> StreamingVideoWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        # also on an exception: what was appended stays in a valid file
        self.close()


def write_video(
    frames: Any, path: str | os.PathLike, fps: float = 16, batch_index: int | None = None, **kwargs
) -> str:
    """Write a whole video at once (see [`StreamingVideoWriter`] for `kwargs`). Returns the path."""
    array = to_uint8_frames(frames, batch_index=batch_index)
    with StreamingVideoWriter(path, fps=fps, batch_index=0, **kwargs) as writer:
        writer.append(array)
    return os.fspath(path)


def read_video(path: str | os.PathLike) -> np.ndarray:
    """Read every frame of a video file as a `uint8` array `(frames, height, width, 3)`."""
    imageio = require("imageio", "Reading videos")
    require("imageio_ffmpeg", "Reading mp4 videos")
    reader = imageio.get_reader(os.fspath(path), format="FFMPEG")
    try:
        frames = [np.asarray(frame) for frame in reader]
    finally:
        reader.close()
    if not frames:
        return np.zeros((0, 0, 0, 3), dtype=np.uint8)
    return np.stack(frames)
