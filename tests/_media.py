"""Small real video files for tests: moving coloured squares, with each frame's index written into its pixels.

The top quarter of every frame is a gray band whose two halves encode the frame index (left: `index % 16`, right:
`index // 16`, in steps of 16 gray levels), so a test can read back which source frame it got after lossy encoding,
resampling, resizing and center-cropping (`decode_frame_index`). Gray keeps the code in luma, which H.264 stores at
full resolution.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np


_SQUARE_COLOURS = ((220, 40, 40), (40, 200, 60), (50, 80, 230))


def make_test_frames(num_frames: int, height: int = 32, width: int = 48, seed: int = 0) -> np.ndarray:
    """`uint8` frames `(num_frames, height, width, 3)`: an index band on top, coloured squares moving below it."""
    if num_frames > 256:
        raise ValueError("the index band encodes at most 256 frames")
    rng = np.random.default_rng(seed)
    band = max(4, height // 4)
    size = max(2, min(height - band, width) // 4)
    starts = rng.integers(0, [height - band - size, width - size], size=(len(_SQUARE_COLOURS), 2))
    speeds = rng.integers(1, 4, size=(len(_SQUARE_COLOURS), 2))
    background = rng.integers(40, 90, size=3)
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for index in range(num_frames):
        frame = frames[index]
        frame[:] = background
        frame[:band, : width // 2] = 16 * (index % 16) + 8
        frame[:band, width // 2 :] = 16 * (index // 16) + 8
        for colour, start, speed in zip(_SQUARE_COLOURS, starts, speeds):
            y = band + (start[0] + speed[0] * index) % (height - band - size)
            x = (start[1] + speed[1] * index) % (width - size)
            frame[y : y + size, x : x + size] = colour
    return frames


def decode_frame_index(frame: Any) -> int:
    """The index written by `make_test_frames` into `frame`: `uint8` `(H, W, 3)`, or `float` `(3, H, W)` in [-1, 1].

    Works on center crops and resizes of the original frame as long as the band keeps a few pixels on each side of
    the center line.
    """
    array = np.asarray(frame, dtype=np.float64)
    if array.ndim == 3 and array.shape[0] == 3 and array.shape[-1] != 3:
        array = (array.transpose(1, 2, 0) + 1.0) * 127.5
    height, width = array.shape[:2]
    band = max(1, height // 4)
    rows = slice(band // 4, max(band // 4 + 1, band - band // 4))
    quarter = max(1, width // 8)
    low = array[rows, width // 2 - 3 * quarter : width // 2 - quarter].mean()
    high = array[rows, width // 2 + quarter : width // 2 + 3 * quarter].mean()
    return int(round((low - 8) / 16)) + 16 * int(round((high - 8) / 16))


def write_test_video(
    path: str | os.PathLike,
    frames: np.ndarray | None = None,
    *,
    num_frames: int = 17,
    height: int = 32,
    width: int = 48,
    fps: float = 8.0,
    seed: int = 0,
    faststart: bool = False,
) -> Path:
    """Write an H.264 mp4 with imageio: `frames` if given (`uint8` `(F, H, W, 3)`), else `make_test_frames(...)`.

    Args:
        faststart (`bool`, *optional*, defaults to `False`): Put the header (moov atom) at the start of the file, so a
            truncated copy still opens but holds fewer frames than its header says.
    """
    import imageio

    if frames is None:
        frames = make_test_frames(num_frames, height, width, seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    output_params = ["-movflags", "+faststart"] if faststart else None
    with imageio.get_writer(
        path,
        fps=fps,
        codec="libx264",
        quality=9,
        macro_block_size=1,
        ffmpeg_log_level="error",
        output_params=output_params,
    ) as writer:
        for frame in frames:
            writer.append_data(frame)
    return path


def write_truncated_video(path: str | os.PathLike, keep: float = 0.6, **kwargs: Any) -> Path:
    """A video whose header opens but whose frames stop early: `write_test_video(faststart=True)` cut to `keep`."""
    path = write_test_video(path, faststart=True, **kwargs)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def write_garbage_video(path: str | os.PathLike, num_bytes: int = 4096, seed: int = 0) -> Path:
    """A `.mp4` file of random bytes, which ffmpeg cannot open."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, num_bytes, dtype=np.uint8).tobytes())
    return path


def write_test_manifest(path: str | os.PathLike, entries: Iterable[dict[str, Any] | str]) -> Path:
    """Write a JSONL manifest: dictionaries are dumped as JSON, strings are written verbatim (for malformed lines).

    Video paths inside dictionaries are written as given (relative paths resolve against the manifest's folder).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [entry if isinstance(entry, str) else json.dumps(entry) for entry in entries]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def clips(*spans: Sequence[float], caption: str = "clip") -> list[dict[str, Any]]:
    """`clips((0, 2), (2, 4))` -> manifest clip objects with captions `"clip 0"`, `"clip 1"`, ..."""
    return [{"start": float(a), "end": float(b), "caption": f"{caption} {i}"} for i, (a, b) in enumerate(spans)]
