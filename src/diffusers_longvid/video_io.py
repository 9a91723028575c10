# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""Reading and writing videos, including clip-by-clip streaming to an mp4 while a long video is being generated.

[`StreamingVideoWriter`] appends frames to an mp4 through `imageio` + `imageio-ffmpeg` as each clip is finished. The
mp4 is written *fragmented* by default (`-movflags +frag_keyframe+empty_moov`), so the file is playable up to the
last complete fragment even if the process is killed; an exception inside a `with` block closes the file cleanly, so
everything appended so far is kept.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np
import PIL.Image

from .utils import require


__all__ = [
    "StreamingVideoWriter",
    "VideoInfo",
    "concat_videos",
    "iter_video_frames",
    "probe_video",
    "read_video",
    "to_uint8_frames",
    "write_video",
]


_CHANNELS = (1, 3)
# float frames may overshoot [0, 1] by this much (rounding) before `strict` conversion calls them out of range
_FLOAT_TOLERANCE = 1e-3


def _is_torch_tensor(value: Any) -> bool:
    # without importing torch: a numpy-only caller never pays for it
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")


def to_uint8_frames(
    frames: Any, batch_index: int | None = None, *, strict: bool = False, name: str = "frames"
) -> np.ndarray:
    r"""
    Convert frames to a `uint8` array of shape `(frames, height, width, 3)`: the one frame conversion of the package
    (the writers here, and `diffusers_longvid.evaluation.video.to_uint8_frames` with `strict=True`).

    Args:
        frames: One of: a `np.ndarray` `(frames, H, W, C)` (or `(frames, C, H, W)`, or `(frames, H, W)` grey), a
            `torch.Tensor` `(frames, C, H, W)` (or channels last), a list of PIL images or of `(H, W, C)` arrays /
            `(C, H, W)` tensors, or the batched forms the pipeline returns (`(batch, frames, ...)` arrays/tensors, a
            list of lists of PIL images) together with `batch_index`. `uint8` values are used as they are, floating
            point values are in `[0, 1]`; one channel is repeated into three.
        batch_index (`int`, *optional*): Which video of a batch to take. Required for batched input, ignored for
            unbatched input.
        strict (`bool`, *optional*, defaults to `False`):
            What happens to frames outside those rules. `False` (writing): float values are clipped to `[0, 1]`,
            other numeric dtypes are read as floats, an empty list gives 0 frames and other channel counts pass
            through. `True` (measuring): float values outside `[0, 1]` (beyond rounding) or not finite, dtypes other
            than `uint8` / floating point, an empty list and channel counts other than 1 or 3 raise.
        name (`str`, *optional*, defaults to `"frames"`): The argument's name in error messages.
    """
    if isinstance(frames, (list, tuple)) and frames and all(isinstance(f, (list, tuple)) for f in frames):
        if batch_index is None:
            raise ValueError(f"`{name}` is a batch (a list of lists of PIL images): pass `batch_index`.")
        frames = frames[batch_index]
    if isinstance(frames, (list, tuple)):
        if not frames:
            if strict:
                raise ValueError(f"`{name}` is an empty list.")
            return np.zeros((0, 0, 0, 3), np.uint8)
        converted = []
        for frame in frames:
            if isinstance(frame, PIL.Image.Image):
                converted.append(np.asarray(frame.convert("RGB")))
            elif isinstance(frame, np.ndarray) or _is_torch_tensor(frame):
                converted.append(to_uint8_frames(frame[None], strict=strict, name=name)[0])
            else:
                raise TypeError(
                    f"`{name}` as a list must hold PIL images or arrays, got an item of type {type(frame).__name__}."
                )
        if len({f.shape for f in converted}) != 1:
            raise ValueError(f"All frames of `{name}` must have the same size.")
        return np.stack(converted)
    if _is_torch_tensor(frames):
        tensor = frames.detach().cpu()
        array = (tensor.float() if tensor.dtype.is_floating_point else tensor).numpy()
    elif isinstance(frames, np.ndarray):
        array = frames
    else:
        raise TypeError(
            f"`{name}` must be a np.ndarray, a torch.Tensor or a list of PIL images, got {type(frames).__name__}."
        )

    if array.ndim == 5:
        if batch_index is None:
            raise ValueError(f"`{name}` has a batch dimension (shape {array.shape}): pass `batch_index`.")
        array = array[batch_index]
    if array.ndim == 3:  # grey frames
        array = array[..., None]
    if array.ndim != 4:
        raise ValueError(f"`{name}` must have shape (frames, height, width, channels), got {array.shape}.")
    if array.shape[1] in _CHANNELS and array.shape[-1] not in _CHANNELS:  # channels first
        array = array.transpose(0, 2, 3, 1)
    if strict and array.shape[-1] not in _CHANNELS:
        raise ValueError(f"`{name}` must have 1 or 3 channels, last or second, got shape {array.shape}.")

    if array.dtype != np.uint8:
        if strict and not np.issubdtype(array.dtype, np.floating):
            raise TypeError(f"`{name}` must be uint8 or floating point, got dtype {array.dtype}.")
        if strict:
            low, high = float(np.nanmin(array)), float(np.nanmax(array))
            if not (np.isfinite(low) and np.isfinite(high)) or low < -_FLOAT_TOLERANCE or high > 1 + _FLOAT_TOLERANCE:
                raise ValueError(
                    f"Floating-point `{name}` must hold values in [0, 1], got [{low:.4g}, {high:.4g}]. Convert a "
                    "[-1, 1] video with `(video + 1) / 2`, or pass `uint8` frames."
                )
        array = np.rint(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return np.ascontiguousarray(array)


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


def iter_video_frames(
    path: str | os.PathLike, start: float = 0.0, max_frames: int | None = None
) -> Iterator[np.ndarray]:
    r"""
    Decode a video file frame by frame with ffmpeg (through `imageio-ffmpeg`): the one video reader of the package
    ([`read_video`], the evaluation's chunked reader and the training datasets' seeking reader use it).

    Args:
        path (`str` or `os.PathLike`): The video file.
        start (`float`, *optional*, defaults to 0): Seconds to seek to before decoding (ffmpeg's accurate input
            seek, `-ss`); 0 decodes from the first frame.
        max_frames (`int`, *optional*): Stop after this many frames (`-frames:v`); all frames when `None`.

    Yields:
        `np.ndarray`: RGB `uint8` frames `(height, width, 3)`, read-only views of ffmpeg's output (copy one to keep
        it writable).

    Raises:
        `FileNotFoundError`: no such file. `OSError`: ffmpeg cannot open it (no video stream, not a video).
        `RuntimeError`: a frame cannot be decoded (e.g. a truncated file, depending on where it ends).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No video file at {path!r}.")
    if max_frames is not None and max_frames < 0:
        raise ValueError(f"`max_frames` must be >= 0 or None, got {max_frames}.")
    imageio_ffmpeg = require("imageio_ffmpeg", "Reading videos")
    input_params = ["-ss", f"{start:.6f}"] if start > 0 else []
    output_params = ["-frames:v", str(max_frames)] if max_frames is not None else []
    reader = imageio_ffmpeg.read_frames(path, input_params=input_params, output_params=output_params)
    try:
        width, height = next(reader)["size"]
        for buffer in reader:
            yield np.frombuffer(buffer, dtype=np.uint8).reshape(height, width, 3)
    finally:
        reader.close()


@dataclass(frozen=True)
class VideoInfo:
    """What the container header says about a video's video stream.

    Args:
        fps (`float`): Frames per second of the video stream.
        duration (`float`): Duration in seconds (container header, rounded by ffmpeg to 10 ms).
        width (`int`): Frame width in pixels, after ffmpeg's automatic rotation.
        height (`int`): Frame height in pixels, after ffmpeg's automatic rotation.
    """

    fps: float
    duration: float
    width: int
    height: int

    @property
    def num_frames(self) -> int:
        """Estimated number of frames, `round(duration * fps)`: exact for constant-frame-rate files."""
        return max(1, round(self.duration * self.fps))


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Read a video's frame rate, duration and size from its header, without decoding frames (the package's one
    header reader: training manifests and the evaluation use it).

    Args:
        path (`str` or `os.PathLike`): The video file.

    Raises:
        `OSError`: if ffmpeg cannot read the file or finds no video stream with a frame rate and duration.
    """
    imageio_ffmpeg = require("imageio_ffmpeg", "Reading videos")
    reader = imageio_ffmpeg.read_frames(os.fspath(path))
    try:
        meta = next(reader)
    except (OSError, RuntimeError, StopIteration) as err:
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise OSError(f"ffmpeg cannot read {path}: {first_line}") from err
    finally:
        reader.close()
    fps, duration, size = meta.get("fps"), meta.get("duration"), meta.get("size")
    if not fps or not duration or not size or not (fps > 0 and duration > 0):
        raise OSError(f"{path} has no video stream with a frame rate and a duration (fps={fps}, duration={duration}).")
    return VideoInfo(fps=float(fps), duration=float(duration), width=int(size[0]), height=int(size[1]))


def read_video(path: str | os.PathLike) -> np.ndarray:
    """Read every frame of a video file as a `uint8` array `(frames, height, width, 3)` (see [`iter_video_frames`]
    for the errors); a file without frames gives shape `(0, 0, 0, 3)`."""
    frames = list(iter_video_frames(path))
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
