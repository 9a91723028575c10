# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""Writing videos, including clip-by-clip streaming to an mp4 while a long video is being generated.

[`StreamingVideoWriter`] appends frames to an mp4 through `imageio` + `imageio-ffmpeg` as each clip is finished. The
mp4 is written *fragmented* by default (`-movflags +frag_keyframe+empty_moov`), so the file is playable up to the
last complete fragment even if the process is killed; an exception inside a `with` block closes the file cleanly, so
everything appended so far is kept.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import numpy as np
import PIL.Image

from .utils import require


__all__ = ["StreamingVideoWriter", "concat_videos", "read_video", "to_uint8_frames", "write_video"]


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


def concat_videos(paths: Sequence[str | os.PathLike], path: str | os.PathLike) -> str:
    r"""
    Join video files of the same codec, size and frame rate (e.g. the per-clip segments of a resumable
    `longvid generate`) into one, by stream copy: nothing is re-encoded, so the result decodes to exactly the
    segments' frames, one after the other. The output replaces `path` atomically. Returns the path.

    Args:
        paths (`Sequence[str | os.PathLike]`): The segments, in order (at least one).
        path (`str` or `os.PathLike`): The output file; its container follows its extension.
    """
    if not paths:
        raise ValueError("`paths` must name at least one video.")
    missing = [os.fspath(p) for p in paths if not os.path.isfile(p)]
    if missing:
        raise ValueError(f"`paths` holds files that do not exist: {missing}.")
    imageio_ffmpeg = require("imageio_ffmpeg", "Joining mp4 videos")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    root, ext = os.path.splitext(path)
    tmp = f"{root}.partial{ext}"
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as listing:
        for segment in paths:
            # the concat demuxer's quoting: inside '...', a quote is written '\''
            quoted = os.path.abspath(os.fspath(segment)).replace("'", "'\\''")
            listing.write(f"file '{quoted}'\n")
    try:
        command = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "concat", "-safe", "0"]
        command += ["-i", listing.name, "-c", "copy", "-map", "0", tmp]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"ffmpeg could not join {len(paths)} videos into {path!r}: {result.stderr.strip()}")
        os.replace(tmp, path)
    finally:
        os.unlink(listing.name)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
