"""Pixel datasets that decode the manifest's videos: short clips (stage 1) and long videos split into clips (stage 2).

Both decode lazily with ffmpeg (through `imageio-ffmpeg`): an item seeks to its start time and decodes only its own
frames. Frames are resampled to the target frame rate by nearest timestamp, resized (bilinear, antialiased) so that
they cover the target size, center-cropped, and returned as `float32` in `[-1, 1]`, shaped `(C, F, H, W)` as
`AutoencoderKLWan.encode` expects. Frame counts are always valid for the causal VAE: `4k + 1`.

A video that cannot be decoded never stops an epoch: the failure is logged, the next readable item is returned in its
place (so batches keep their size, which DDP needs), and the replacement is counted in `dataset.num_skipped`, which
therefore grows by the number of unreadable items every epoch. An item that failed once is not decoded again by that
process (`dataset.failed_items` holds the reasons). `DataLoader` workers hold copies of the dataset, so every item also
carries `num_skipped` (1 for a replacement, else 0) and `index` (the item actually returned): `collate_video_batch`
sums the former, and a trainer adds it up across workers and processes.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.utils import logging

from ..video_io import iter_video_frames
from .manifest import VideoInfo, VideoRecord, load_manifest, probe_video


logger = logging.get_logger(__name__)

# Wan's causal VAE keeps the first frame and compresses every following 4 frames into one latent frame.
VAE_TEMPORAL_COMPRESSION = 4
# resize this many frames at a time, which bounds memory for long, high-resolution sources
_RESIZE_CHUNK = 16
_EPS = 1e-6


class VideoDecodeError(RuntimeError):
    """A video could not be opened or held fewer frames than its item needs (corrupt or truncated file)."""


# --------------------------------------------------------------------------------------------------------------------
# frame arithmetic


def is_valid_num_frames(num_frames: int, temporal_compression: int = VAE_TEMPORAL_COMPRESSION) -> bool:
    """Whether a causal VAE can encode `num_frames` frames: `num_frames = 1 + temporal_compression * k`, `k >= 0`."""
    return num_frames >= 1 and (num_frames - 1) % temporal_compression == 0


def largest_valid_num_frames(num_frames: int, temporal_compression: int = VAE_TEMPORAL_COMPRESSION) -> int:
    """The largest valid frame count (`1 + temporal_compression * k`) not above `num_frames`; 0 if `num_frames < 1`."""
    if num_frames < 1:
        return 0
    return (num_frames - 1) // temporal_compression * temporal_compression + 1


def num_frames_in_span(start: float, end: float, fps: float) -> int:
    """How many frames of a `fps` grid starting at `start` fall in the half-open span `[start, end)`."""
    return max(0, math.ceil((end - start) * fps - _EPS))


def source_frame_indices(
    start: float, num_frames: int, fps: float, source_fps: float, num_source_frames: int | None = None
) -> list[int]:
    """Source frames sampled at the target frame rate, by nearest timestamp.

    Target frame `j` is at time `start + j / fps`; source frame `i` is at time `i / source_fps`. Each target frame
    takes the source frame closest in time (ties go to the later frame), clamped to the last source frame. With
    `fps == source_fps` and `start` on a source frame, this is the identity on consecutive frames.

    Args:
        start (`float`): Time of the first target frame, in seconds.
        num_frames (`int`): Number of target frames.
        fps (`float`): Target frame rate.
        source_fps (`float`): Frame rate of the video.
        num_source_frames (`int`, *optional*): Number of frames in the video, to clamp the last indices.
    """
    indices = [math.floor((start + j / fps) * source_fps + 0.5 + _EPS) for j in range(num_frames)]
    if num_source_frames is not None:
        indices = [min(index, num_source_frames - 1) for index in indices]
    return indices


# --------------------------------------------------------------------------------------------------------------------
# decoding and preprocessing


def read_video_frames(
    path: str | os.PathLike, start: float, num_frames: int, fps: float, info: VideoInfo | None = None
) -> np.ndarray:
    """Decode `num_frames` frames at `fps` from time `start`, seeking instead of decoding from the beginning (with
    `diffusers_longvid.video_io.iter_video_frames`; this adds the frame-rate resampling and the strict frame count).

    Args:
        path (`str` or `os.PathLike`): The video file.
        start (`float`): Time of the first frame, in seconds.
        num_frames (`int`): Number of frames to return.
        fps (`float`): Frame rate to sample at (nearest source frame by timestamp, see `source_frame_indices`).
        info (`VideoInfo`, *optional*): The video's header, if already probed (saves one ffmpeg start).

    Returns:
        `np.ndarray`: `uint8` RGB frames of shape `(num_frames, height, width, 3)`.

    Raises:
        `VideoDecodeError`: if the file cannot be read or holds fewer frames than requested (truncated or corrupt).
    """
    if num_frames < 1:
        raise ValueError(f"`num_frames` must be >= 1, got {num_frames}.")
    if info is None:
        try:
            info = probe_video(path)
        except OSError as err:
            raise VideoDecodeError(str(err)) from err
    if start < 0:
        raise ValueError(f"`start` must be >= 0, got {start}.")
    indices = source_frame_indices(start, num_frames, fps, info.fps)
    # one frame past the header's estimate is rounding (see below); more is a request past the end of the video
    if indices[-1] > info.num_frames:
        raise VideoDecodeError(
            f"{path}: frames up to {start + (num_frames - 1) / fps:.3f} s were requested, but the video lasts "
            f"{info.duration} s."
        )
    indices = [min(index, info.num_frames - 1) for index in indices]
    first, count = indices[0], indices[-1] - indices[0] + 1
    # Seek half a frame early: ffmpeg's accurate seek drops frames stamped before the target, and the printed
    # timestamp of frame `first` may round up past its true time.
    seek = (first - 0.5) / info.fps if first > 0 else 0.0
    needed = {index - first for index in indices}
    kept: dict[int, np.ndarray] = {}
    decoded, last = 0, None
    try:
        for offset, last in enumerate(iter_video_frames(path, start=seek, max_frames=count)):
            decoded = offset + 1
            if offset in needed:
                kept[offset] = last
    except (OSError, RuntimeError) as err:
        message = str(err).strip().splitlines()
        raise VideoDecodeError(f"ffmpeg failed on {path}: {message[0] if message else type(err).__name__}") from err
    # Container durations are rounded, so a video can end one frame before the estimate: that last frame is then
    # taken from its predecessor. Anything shorter is a truncated or corrupt file.
    if decoded == 0 or decoded < count - 1:
        raise VideoDecodeError(
            f"{path}: expected {count} frames from frame {first} ({first / info.fps:.3f} s), decoded {decoded}; "
            "the file is truncated or corrupt."
        )
    # np.stack copies, so frames repeated by frame-rate upsampling become independent
    return np.stack([kept.get(index - first, last) for index in indices])


def resize_center_crop(frames: np.ndarray | torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize frames to cover `height x width` (aspect ratio kept) and crop the center; scale to `[-1, 1]`.

    Args:
        frames (`np.ndarray` or `torch.Tensor`): `uint8` RGB frames of shape `(F, H, W, 3)`.
        height (`int`): Output height.
        width (`int`): Output width.

    Returns:
        `torch.Tensor`: `float32` of shape `(3, F, height, width)` in `[-1, 1]`.
    """
    if height < 1 or width < 1:
        raise ValueError(f"`height` and `width` must be positive, got {height}x{width}.")
    frames = torch.as_tensor(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"`frames` must be shaped (F, H, W, 3), got {tuple(frames.shape)}.")
    num_frames, source_height, source_width = frames.shape[:3]
    scale = max(height / source_height, width / source_width)
    resized_height = max(height, round(source_height * scale))
    resized_width = max(width, round(source_width * scale))
    top, left = (resized_height - height) // 2, (resized_width - width) // 2
    out = torch.empty(3, num_frames, height, width, dtype=torch.float32)
    for begin in range(0, num_frames, _RESIZE_CHUNK):
        chunk = frames[begin : begin + _RESIZE_CHUNK].permute(0, 3, 1, 2).float()
        if (resized_height, resized_width) != (source_height, source_width):
            chunk = F.interpolate(
                chunk, size=(resized_height, resized_width), mode="bilinear", antialias=True, align_corners=False
            )
        chunk = chunk[:, :, top : top + height, left : left + width]
        out[:, begin : begin + chunk.shape[0]] = (chunk / 127.5 - 1.0).clamp_(-1.0, 1.0).permute(1, 0, 2, 3)
    return out


def collate_video_batch(batch: Sequence[dict[str, Any] | None]) -> dict[str, Any] | None:
    """Collate dataset items: tensors are stacked, `num_skipped` is summed, everything else becomes a list.

    `None` items (from user datasets that drop bad items) are left out; an all-`None` batch gives `None`.

    Raises:
        `ValueError`: if tensors under one key differ in shape (variable frame counts need `batch_size=1`, or a fixed
            `num_frames`).
    """
    items = [item for item in batch if item is not None]
    if not items:
        return None
    out: dict[str, Any] = {}
    for key in items[0]:
        values = [item[key] for item in items]
        if isinstance(values[0], torch.Tensor):
            shapes = sorted({tuple(value.shape) for value in values})
            if len(shapes) > 1:
                raise ValueError(
                    f"Cannot batch `{key}`: shapes {shapes} differ. Use `batch_size=1`, or give the dataset a fixed "
                    "`num_frames`."
                )
            out[key] = torch.stack(values)
        elif key == "num_skipped":
            out[key] = sum(values)
        else:
            out[key] = values
    return out


# --------------------------------------------------------------------------------------------------------------------
# datasets


class _ManifestVideoDataset(torch.utils.data.Dataset):
    """Shared by the pixel datasets: the manifest, header cache, decoding, and skip-and-replace of unreadable items."""

    def __init__(
        self,
        manifest: str | os.PathLike | Sequence[VideoRecord],
        height: int,
        width: int,
        fps: float,
        temporal_compression: int,
    ):
        for name, value in (("height", height), ("width", width), ("temporal_compression", temporal_compression)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
        if not (isinstance(fps, (int, float)) and fps > 0):
            raise ValueError(f"`fps` must be a positive number, got {fps!r}.")
        if isinstance(manifest, (str, os.PathLike)):
            self.manifest_path: str | None = str(manifest)
            self.videos: list[VideoRecord] = load_manifest(manifest)
        else:
            self.manifest_path = None
            self.videos = list(manifest)
            if not all(isinstance(record, VideoRecord) for record in self.videos):
                raise TypeError("`manifest` must be a path to a JSONL manifest or a sequence of `VideoRecord`.")
        self.height, self.width, self.fps = height, width, float(fps)
        self.temporal_compression = temporal_compression
        self.num_skipped = 0
        # item index -> reason; per process (each DataLoader worker keeps its own)
        self.failed_items: dict[int, str] = {}
        self._infos: dict[int, VideoInfo] = {}

    def __len__(self) -> int:
        raise NotImplementedError

    def load_item(self, index: int) -> dict[str, Any]:
        """Decode item `index` exactly; raises `VideoDecodeError` instead of skipping."""
        raise NotImplementedError

    def describe(self, index: int) -> dict[str, Any]:
        """What item `index` holds (video, clips, times, frame counts, captions), without decoding anything."""
        raise NotImplementedError

    def _video_info(self, video_index: int) -> VideoInfo:
        info = self._infos.get(video_index) or self.videos[video_index].info
        if info is None:
            try:
                info = probe_video(self.videos[video_index].path)
            except OSError as err:
                raise VideoDecodeError(str(err)) from err
        self._infos[video_index] = info
        return info

    def _decode(self, video_index: int, start: float, num_frames: int) -> torch.Tensor:
        path = self.videos[video_index].path
        frames = read_video_frames(path, start, num_frames, self.fps, info=self._video_info(video_index))
        return resize_center_crop(frames, self.height, self.width)

    def __getitem__(self, index: int) -> dict[str, Any]:
        length = len(self)
        if index < 0:
            index += length
        if not 0 <= index < length:
            raise IndexError(f"index {index} is out of range for a dataset of {length} items")
        for attempt in range(length):
            candidate = (index + attempt) % length
            if candidate in self.failed_items:  # known bad in this process: do not decode it again
                continue
            try:
                item = self.load_item(candidate)
            except VideoDecodeError as err:
                self.failed_items[candidate] = str(err)
                logger.warning(f"Skipping item {candidate}: {err}")
                continue
            replaced = candidate != index
            if replaced:
                self.num_skipped += 1
                logger.debug(f"Item {index} is unreadable; returning item {candidate} in its place.")
            item["index"] = candidate
            item["num_skipped"] = int(replaced)
            return item
        reasons = "; ".join(sorted(set(self.failed_items.values()))[:3])
        raise RuntimeError(f"None of the {length} items of this dataset could be decoded: {reasons}")


@dataclass(frozen=True)
class _ShortClip:
    video_index: int
    clip_index: int
    available_frames: int  # frames of the clip at the target fps


class ShortClipDataset(_ManifestVideoDataset):
    r"""Stage-1 data: one item per captioned clip of the manifest, decoded at a fixed size and frame rate.

    Each item is a window inside one captioned clip, of a frame count valid for the causal VAE (`4k + 1`):

    - `clip_sampling="clip"`: the window starts at the clip's start; it holds `num_frames` frames if given, otherwise
      as many valid frames as fit in the clip, at most `max_duration` worth.
    - `clip_sampling="random"`: the window starts at a random frame of the clip, and (when `num_frames` is not given)
      its length is drawn among the valid counts between `min_duration` and `max_duration` worth. The draw depends
      only on `(seed, epoch, index)`: call `set_epoch` each epoch for fresh windows, reproducibly across workers and
      resumed runs.

    A duration `d` stands for `round(d * fps) + 1` frames (Wan's "5 s at 16 fps" is 81 frames), rounded to a valid
    count: up for `min_duration`, down for `max_duration`. A clip spans `[start, end)`, so a 5.0 s clip holds 80 frames
    at 16 fps and gives at most 77. Clips too short for the smallest window are left out (counted in
    `num_too_short`).

    Items are dictionaries: `pixel_values` (`float32`, `(3, F, height, width)`, in `[-1, 1]`), `caption`,
    `video_path`, `video_index`, `clip_index`, `start` (seconds of the first frame), `num_frames`, `fps`, and `index` /
    `num_skipped` (see the module docstring for skipping).

    Args:
        manifest (`str`, `os.PathLike` or `Sequence[VideoRecord]`):
            A JSONL manifest (validated with `load_manifest`) or records already loaded.
        height (`int`): Output height in pixels (a multiple of 16 for Wan: VAE x8, patch x2).
        width (`int`): Output width in pixels (a multiple of 16 for Wan).
        fps (`float`, *optional*, defaults to 16.0): Output frame rate; Wan2.1 was trained at 16 fps.
        num_frames (`int`, *optional*): A fixed frame count (`4k + 1`) for every item, so items can be batched.
        clip_sampling (`str`, *optional*, defaults to `"clip"`): `"clip"` or `"random"`, see above.
        min_duration (`float`, *optional*, defaults to 2.0): Shortest window in seconds when `num_frames` is not given.
        max_duration (`float`, *optional*, defaults to 5.0): Longest window in seconds when `num_frames` is not given.
        seed (`int`, *optional*, defaults to 0): Seed of the random windows.
        temporal_compression (`int`, *optional*, defaults to 4):
            The VAE's temporal factor (`vae.config.scale_factor_temporal`).
    """

    def __init__(
        self,
        manifest: str | os.PathLike | Sequence[VideoRecord],
        height: int,
        width: int,
        fps: float = 16.0,
        num_frames: int | None = None,
        clip_sampling: str = "clip",
        min_duration: float = 2.0,
        max_duration: float = 5.0,
        seed: int = 0,
        temporal_compression: int = VAE_TEMPORAL_COMPRESSION,
    ):
        if clip_sampling not in ("clip", "random"):
            raise ValueError(f"`clip_sampling` must be 'clip' or 'random', got {clip_sampling!r}.")
        if num_frames is not None and not is_valid_num_frames(num_frames, temporal_compression):
            raise ValueError(
                f"`num_frames` must be 1 + {temporal_compression} * k for the causal VAE (e.g. 49 or 81), "
                f"got {num_frames}."
            )
        if not 0 < min_duration <= max_duration:
            raise ValueError(f"Need 0 < `min_duration` <= `max_duration`, got {min_duration} and {max_duration}.")
        super().__init__(manifest, height, width, fps, temporal_compression)
        self.num_frames, self.clip_sampling, self.seed, self.epoch = num_frames, clip_sampling, seed, 0
        self.min_duration, self.max_duration = min_duration, max_duration
        if num_frames is None:
            factor = temporal_compression
            self.min_frames = -(-(round(min_duration * self.fps)) // factor) * factor + 1
            self.max_frames = largest_valid_num_frames(round(max_duration * self.fps) + 1, factor)
            if self.min_frames > self.max_frames:
                raise ValueError(
                    f"No valid frame count lies between `min_duration` ({min_duration} s) and `max_duration` "
                    f"({max_duration} s) at {self.fps} fps."
                )
        else:
            self.min_frames = self.max_frames = num_frames

        self.clips: list[_ShortClip] = []
        self.num_too_short = 0
        for video_index, record in enumerate(self.videos):
            for clip_index, clip in enumerate(record.clips):
                available = num_frames_in_span(clip.start, clip.end, self.fps)
                if available < self.min_frames:
                    self.num_too_short += 1
                    continue
                self.clips.append(_ShortClip(video_index, clip_index, available))
        if self.num_too_short:
            logger.info(
                f"{self.num_too_short} clips hold fewer than {self.min_frames} frames at {self.fps} fps and are "
                "left out."
            )
        if not self.clips:
            raise ValueError(f"No clip of the manifest holds {self.min_frames} frames at {self.fps} fps.")

    def __len__(self) -> int:
        return len(self.clips)

    def set_epoch(self, epoch: int) -> None:
        """Choose the random windows of epoch `epoch` (with `clip_sampling="random"`)."""
        self.epoch = epoch

    def _window(self, index: int) -> tuple[float, int]:
        """(start time, frame count) of item `index`."""
        entry = self.clips[index]
        clip = self.videos[entry.video_index].clips[entry.clip_index]
        longest = largest_valid_num_frames(min(entry.available_frames, self.max_frames), self.temporal_compression)
        if self.clip_sampling == "clip":
            return clip.start, longest
        rng = random.Random(f"{self.seed}-{self.epoch}-{index}")
        num_frames = rng.randrange(self.min_frames, longest + 1, self.temporal_compression)
        offset = rng.randint(0, entry.available_frames - num_frames)
        return clip.start + offset / self.fps, num_frames

    def describe(self, index: int) -> dict[str, Any]:
        entry = self.clips[index]
        start, num_frames = self._window(index)
        return {
            "video_path": self.videos[entry.video_index].path,
            "video_index": entry.video_index,
            "clip_index": entry.clip_index,
            "caption": self.videos[entry.video_index].clips[entry.clip_index].caption,
            "start": start,
            "num_frames": num_frames,
            "fps": self.fps,
        }

    def load_item(self, index: int) -> dict[str, Any]:
        item = self.describe(index)
        item["pixel_values"] = self._decode(item["video_index"], item["start"], item["num_frames"])
        return item


@dataclass(frozen=True)
class _LongVideo:
    video_index: int
    clip_indices: tuple[int, ...]  # the manifest clips of this contiguous run
    start: float  # time of the run's frame 0
    first_window: int  # index, within the run, of this item's first clip
    num_windows: int
    captions: tuple[int, ...]  # per window: the manifest clip whose caption it takes


class LongVideoDataset(_ManifestVideoDataset):
    r"""Stage-2 data: one item is one long video split into consecutive clips, as the pipeline generates them.

    Every clip has `num_frames` (`F`) frames and starts on the last `overlap_frames` (`k`) frames of the clip before
    it, which is how the pipeline stitches: clip `n` covers frames `[n * (F - k), n * (F - k) + F)` of the video at
    `fps`, so its first `k` frames are the previous clip's last `k` (its condition frames). Each clip takes the caption
    of the manifest clip that overlaps it most (ties go to the earlier one).

    A long video is a run of manifest clips that follow each other without a gap (at most `max_gap` seconds between
    one's end and the next one's start); a gap starts a new run, since no caption describes it. A run gives
    `N = (T - F) // (F - k) + 1` clips, `T` its frame count at `fps`; runs with fewer than `min_clips` are left out
    (counted in `num_too_short`). With `max_clips`, a longer run is cut into items of `max_clips` consecutive clips
    (a last piece shorter than `min_clips` is dropped).

    Items are dictionaries: `pixel_values` (`float32`, `(N, 3, F, height, width)`, in `[-1, 1]`; clip `n` is
    `pixel_values[n]` and its condition frames are `pixel_values[n - 1][:, -k:]`), `captions` (`N` strings),
    `caption_indices` (manifest clip of each caption), `clip_starts` (first frame of each clip, counted from the
    item's first frame: `n * (F - k)`), `clip_times` (seconds of each clip's first frame in the video),
    `first_clip_index` (index of the item's first clip within its run, for RoPE offsets), `video_path`,
    `video_index`, `num_frames`, `overlap_frames`, `fps`, and `index` / `num_skipped`. Items differ in `N`: use
    `batch_size=1`, or `max_clips` with `min_clips == max_clips`.

    Args:
        manifest (`str`, `os.PathLike` or `Sequence[VideoRecord]`): A JSONL manifest or records already loaded.
        height (`int`): Output height in pixels.
        width (`int`): Output width in pixels.
        num_frames (`int`, *optional*, defaults to 81): Frames per clip, `4k + 1`.
        overlap_frames (`int`, *optional*, defaults to 5): Frames shared by consecutive clips (the condition
            frames), `4j + 1` and smaller than `num_frames`.
        fps (`float`, *optional*, defaults to 16.0): Output frame rate.
        max_clips (`int`, *optional*): Cut longer runs into items of this many clips (bounds memory per item).
        min_clips (`int`, *optional*, defaults to 2): Fewest clips per item; 2 gives every item one history clip.
        sliding (`bool`, *optional*, defaults to `False`):
            Overlapping items instead of cut pieces: one item ends at every clip of a run from the `min_clips`-th on,
            holding the up to `max_clips` clips that end there, so every such clip is the last (a stage-2 target)
            of one item. Needs `max_clips`.
        max_gap (`float`, *optional*): Largest gap in seconds between captioned clips of one run; defaults to half a
            frame at `fps`.
        temporal_compression (`int`, *optional*, defaults to 4): The VAE's temporal factor.
    """

    def __init__(
        self,
        manifest: str | os.PathLike | Sequence[VideoRecord],
        height: int,
        width: int,
        num_frames: int = 81,
        overlap_frames: int = 5,
        fps: float = 16.0,
        max_clips: int | None = None,
        min_clips: int = 2,
        max_gap: float | None = None,
        temporal_compression: int = VAE_TEMPORAL_COMPRESSION,
        sliding: bool = False,
    ):
        if not is_valid_num_frames(num_frames, temporal_compression):
            raise ValueError(f"`num_frames` must be 1 + {temporal_compression} * k (e.g. 81), got {num_frames}.")
        if not is_valid_num_frames(overlap_frames, temporal_compression) or overlap_frames >= num_frames:
            raise ValueError(
                f"`overlap_frames` must be 1 + {temporal_compression} * j and smaller than `num_frames` "
                f"({num_frames}), got {overlap_frames}."
            )
        if min_clips < 1 or (max_clips is not None and max_clips < min_clips):
            raise ValueError(f"Need 1 <= `min_clips` <= `max_clips`, got {min_clips} and {max_clips}.")
        if sliding and max_clips is None:
            raise ValueError("`sliding=True` needs `max_clips` (the most clips of one item).")
        super().__init__(manifest, height, width, fps, temporal_compression)
        self.num_frames, self.overlap_frames = num_frames, overlap_frames
        self.max_clips, self.min_clips, self.sliding = max_clips, min_clips, sliding
        self.max_gap = 0.5 / self.fps if max_gap is None else max_gap
        stride = num_frames - overlap_frames

        self.items: list[_LongVideo] = []
        self.num_too_short = 0
        for video_index, record in enumerate(self.videos):
            if any(b.start < a.end - _EPS for a, b in zip(record.clips, record.clips[1:])):
                raise ValueError(f"{record.path} (line {record.line}): overlapping clips cannot form a long video.")
            for run in self._runs(record):
                start, end = record.clips[run[0]].start, record.clips[run[-1]].end
                total = num_frames_in_span(start, end, self.fps)
                num_windows = (total - num_frames) // stride + 1 if total >= num_frames else 0
                if num_windows < min_clips:
                    self.num_too_short += 1
                    continue
                captions = tuple(self._caption_of(record, run, start, n * stride) for n in range(num_windows))
                size = max_clips or num_windows
                if sliding:
                    starts = [max(0, last - size + 1) for last in range(min_clips - 1, num_windows)]
                    pieces = [
                        (first, last - first + 1) for first, last in zip(starts, range(min_clips - 1, num_windows))
                    ]
                else:
                    pieces = [(first, min(size, num_windows - first)) for first in range(0, num_windows, size)]
                kept = [(first, count) for first, count in pieces if count >= min_clips]
                self.num_too_short += len(pieces) - len(kept)
                for first, count in kept:
                    self.items.append(
                        _LongVideo(video_index, tuple(run), start, first, count, captions[first : first + count])
                    )
        if self.num_too_short:
            logger.info(f"{self.num_too_short} runs of captioned clips hold fewer than {min_clips} clips; left out.")
        if not self.items:
            raise ValueError(
                f"No video of the manifest holds {min_clips} clips of {num_frames} frames (overlap {overlap_frames}) "
                f"at {self.fps} fps."
            )

    def _runs(self, record: VideoRecord) -> list[list[int]]:
        runs: list[list[int]] = []
        for index, clip in enumerate(record.clips):
            if runs and clip.start - record.clips[runs[-1][-1]].end <= self.max_gap + _EPS:
                runs[-1].append(index)
            else:
                runs.append([index])
        return runs

    def _caption_of(self, record: VideoRecord, run: list[int], run_start: float, first_frame: int) -> int:
        begin = run_start + first_frame / self.fps
        end = begin + self.num_frames / self.fps
        overlaps = [min(end, record.clips[i].end) - max(begin, record.clips[i].start) for i in run]
        best = max(overlaps)
        return run[next(position for position, value in enumerate(overlaps) if value >= best - _EPS)]

    def __len__(self) -> int:
        return len(self.items)

    def describe(self, index: int) -> dict[str, Any]:
        entry = self.items[index]
        record = self.videos[entry.video_index]
        stride = self.num_frames - self.overlap_frames
        first_frame = entry.first_window * stride
        clip_starts = [n * stride for n in range(entry.num_windows)]
        return {
            "video_path": record.path,
            "video_index": entry.video_index,
            "first_clip_index": entry.first_window,
            "captions": [record.clips[i].caption for i in entry.captions],
            "caption_indices": list(entry.captions),
            "clip_starts": clip_starts,
            "clip_times": [entry.start + (first_frame + s) / self.fps for s in clip_starts],
            "start": entry.start + first_frame / self.fps,
            "num_clips": entry.num_windows,
            "num_frames": self.num_frames,
            "overlap_frames": self.overlap_frames,
            "fps": self.fps,
        }

    def load_item(self, index: int) -> dict[str, Any]:
        item = self.describe(index)
        span = item["clip_starts"][-1] + self.num_frames
        video = self._decode(item["video_index"], item["start"], span)
        item["pixel_values"] = torch.stack([video[:, s : s + self.num_frames] for s in item["clip_starts"]])
        return item
