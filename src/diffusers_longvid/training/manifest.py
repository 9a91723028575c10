"""The JSONL training manifest: one video per line, each with its captioned clips.

```json
{"video": "videos/0001.mp4", "clips": [{"start": 0.0, "end": 5.0, "caption": "a red fox runs"}, ...]}
```

`video` is a path relative to the manifest's folder, or absolute. Clip times are seconds, half-open `[start, end)`,
in time order and without overlap. Any other key, on a line or on a clip, is kept untouched in `metadata`.
`load_manifest` validates every line and raises one `ManifestError` that lists the first problem of every bad line,
with its line number, before any training starts.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diffusers.utils import logging

from ..video_io import VideoInfo, probe_video


logger = logging.get_logger(__name__)

# how many bad lines a `ManifestError` message spells out (all of them stay in `ManifestError.errors`)
_MAX_LISTED_ERRORS = 20

__all__ = [
    "ClipRecord",
    "ManifestError",
    "VideoInfo",
    "VideoRecord",
    "load_manifest",
    "probe_video",
    "write_manifest",
]


@dataclass(frozen=True)
class ClipRecord:
    """One captioned clip of a video.

    Args:
        start (`float`): Start time in seconds (inclusive).
        end (`float`): End time in seconds (exclusive).
        caption (`str`): The clip's caption, never empty.
        metadata (`dict`, *optional*): Every other key of the clip's JSON object.
    """

    start: float
    end: float
    caption: str
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class VideoRecord:
    """One manifest line: a video file and its captioned clips in time order.

    Args:
        path (`str`): Absolute path of the video file.
        clips (`tuple[ClipRecord, ...]`): The captioned clips, in time order.
        line (`int`): 1-based line number in the manifest, for error messages (not compared by `==`).
        info (`VideoInfo`, *optional*): The probed header, when `load_manifest(probe_durations=True)` could read it.
        metadata (`dict`, *optional*): Every other key of the line's JSON object.
    """

    path: str
    clips: tuple[ClipRecord, ...]
    line: int = field(default=0, compare=False)
    info: VideoInfo | None = None
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)


class ManifestError(ValueError):
    """A manifest failed validation. `errors` holds `(line_number, message)` for the first problem of each bad line."""

    def __init__(self, path: str | os.PathLike, errors: Sequence[tuple[int, str]]):
        self.path = str(path)
        self.errors = list(errors)
        listed = [f"  line {line}: {message}" for line, message in self.errors[:_MAX_LISTED_ERRORS]]
        if len(self.errors) > _MAX_LISTED_ERRORS:
            listed.append(f"  ... and {len(self.errors) - _MAX_LISTED_ERRORS} more bad lines")
        noun = "line" if len(self.errors) == 1 else "lines"
        super().__init__(f"Invalid manifest {self.path} ({len(self.errors)} bad {noun}):\n" + "\n".join(listed))


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float, e.g. `10**400` written out in the JSON
        return False


def _brief(value: Any) -> str:
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**30 else f"an int of {value.bit_length()} bits"
    return text if len(text) <= 60 else text[:57] + "..."


def _parse_clip(position: int, clip: Any) -> ClipRecord:
    """Validate one clip object; raise `ValueError` with a message (without the line number) if it is bad."""
    where = f"clip {position}"
    if not isinstance(clip, dict):
        raise ValueError(f"{where} must be an object with `start`, `end` and `caption`, got {type(clip).__name__}")
    missing = [key for key in ("start", "end", "caption") if key not in clip]
    if missing:
        raise ValueError(f"{where} is missing {', '.join(f'`{key}`' for key in missing)}")
    start, end, caption = clip["start"], clip["end"], clip["caption"]
    for key, value in (("start", start), ("end", end)):
        if not _is_number(value):
            raise ValueError(f"{where}: `{key}` must be a finite number of seconds, got {_brief(value)}")
    if not isinstance(caption, str):
        raise ValueError(f"{where}: `caption` must be a string, got {type(caption).__name__}")
    if not caption.strip():
        raise ValueError(f"{where}: `caption` is empty")
    if start < 0:
        raise ValueError(f"{where}: `start` must be >= 0, got {start}")
    if start >= end:
        raise ValueError(f"{where}: `start` ({start}) must be smaller than `end` ({end})")
    extra = {key: value for key, value in clip.items() if key not in ("start", "end", "caption")}
    return ClipRecord(start=float(start), end=float(end), caption=caption, metadata=extra)


def _parse_line(text: str, number: int, root: Path, allow_overlap: bool, check_files: bool) -> VideoRecord:
    """Validate one manifest line; raise `ValueError` with a message (without the line number) if it is bad."""
    try:
        entry = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"invalid JSON ({err.msg} at column {err.colno})") from None
    except RecursionError:
        raise ValueError("invalid JSON (nested too deeply)") from None
    if not isinstance(entry, dict):
        raise ValueError(f"expected a JSON object with `video` and `clips`, got {type(entry).__name__}")
    missing = [key for key in ("video", "clips") if key not in entry]
    if missing:
        raise ValueError(f"missing {', '.join(f'`{key}`' for key in missing)}")
    video, clips = entry["video"], entry["clips"]
    if not isinstance(video, str) or not video.strip():
        raise ValueError(f"`video` must be a non-empty path string, got {_brief(video)}")
    if "\x00" in video:
        raise ValueError("`video` holds a NUL character")
    if not isinstance(clips, list):
        raise ValueError(f"`clips` must be a list of clip objects, got {type(clips).__name__}")
    if not clips:
        raise ValueError("`clips` is empty")
    records = tuple(_parse_clip(position, clip) for position, clip in enumerate(clips))
    for position in range(1, len(records)):
        previous, current = records[position - 1], records[position]
        if current.start < previous.start:
            raise ValueError(f"clips must be in time order: clip {position} starts before clip {position - 1}")
        if not allow_overlap and current.start < previous.end:
            raise ValueError(
                f"clip {position} [{current.start}, {current.end}) overlaps clip {position - 1} "
                f"[{previous.start}, {previous.end})"
            )
    # abspath (not resolve) normalises `..` but keeps symlinked dataset folders as the user named them
    try:
        path = Path(os.path.abspath(root / Path(video).expanduser()))
    except RuntimeError as err:  # `~unknownuser/...`
        raise ValueError(f"`video` {_brief(video)}: {err}") from None
    if check_files:
        try:
            found = path.is_file()
        except OSError as err:  # e.g. a name too long for the file system: this line is bad, not the manifest
            raise ValueError(f"`video` {_brief(str(path))} is not a usable path ({err.strerror or err})") from None
        if not found:
            raise ValueError(f"video file not found: {_brief(str(path)) if len(str(path)) > 300 else path}")
    extra = {key: value for key, value in entry.items() if key not in ("video", "clips")}
    return VideoRecord(path=str(path), clips=records, line=number, metadata=extra)


def load_manifest(
    path: str | os.PathLike,
    check_files: bool = True,
    probe_durations: bool = True,
    allow_overlap: bool = False,
    num_probe_workers: int = 8,
) -> list[VideoRecord]:
    """Read and validate a JSONL training manifest.

    Every line is checked, and a single `ManifestError` (a `ValueError`) lists the first problem of every bad line with
    its line number: invalid JSON, a missing or mistyped key (`video` not a string, `clips` not a list, `start`/`end`
    not numbers, `caption` not a string), an empty caption, `start >= end`, a negative `start`, clips out of time order
    or overlapping, a missing video file, and a clip that ends after its video. Blank lines are ignored.

    A video that exists but that ffmpeg cannot read is *not* a manifest error: it is logged as a warning here and the
    datasets skip (and count) its items at training time, so one bad file among millions does not stop a run.

    Args:
        path (`str` or `os.PathLike`):
            The `.jsonl` manifest. Relative `video` paths are resolved against its folder.
        check_files (`bool`, *optional*, defaults to `True`):
            Check that every video file exists.
        probe_durations (`bool`, *optional*, defaults to `True`):
            Read every video's header with ffmpeg (no decoding, a few tens of ms per file, `num_probe_workers` files at
            a time) and reject clips that end after the video. Clips may overrun the header duration by less than one
            frame, since ffmpeg rounds durations to 10 ms. Needs `check_files=True`.
        allow_overlap (`bool`, *optional*, defaults to `False`):
            Accept overlapping clips (still in order of start time). Off by default: the long-video dataset needs one
            caption per moment, and overlapping short clips would weight their frames twice.
        num_probe_workers (`int`, *optional*, defaults to 8):
            Threads probing video headers (each runs one ffmpeg process).

    Returns:
        `list[VideoRecord]`: one record per non-blank line, in file order.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Manifest `{path}` does not exist.")
    if probe_durations and not check_files:
        raise ValueError("`probe_durations=True` needs `check_files=True`.")
    if num_probe_workers < 1:
        raise ValueError(f"`num_probe_workers` must be >= 1, got {num_probe_workers}.")
    root = path.resolve().parent

    records: list[VideoRecord] = []
    errors: dict[int, str] = {}
    # read as bytes and decode line by line: a bad byte is an error of its line, not of the whole file
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                errors[number] = f"not UTF-8 text (byte {err.object[err.start]:#04x} at column {err.start + 1})"
                continue
            if not text.strip():
                continue
            try:
                records.append(_parse_line(text, number, root, allow_overlap=allow_overlap, check_files=check_files))
            except ValueError as err:
                errors[number] = str(err)

    if probe_durations and records:
        with ThreadPoolExecutor(max_workers=min(num_probe_workers, len(records))) as pool:
            outcomes = list(pool.map(_probe_or_error, [record.path for record in records]))
        probed = []
        for record, outcome in zip(records, outcomes):
            if isinstance(outcome, OSError):
                logger.warning(
                    f"{path}, line {record.line}: {_first_line(outcome)}; its clips will be skipped and counted by "
                    "the datasets."
                )
                probed.append(record)
                continue
            tolerance = 1.0 / outcome.fps
            late = [i for i, clip in enumerate(record.clips) if clip.end > outcome.duration + tolerance]
            if late:
                clip = record.clips[late[0]]
                errors[record.line] = (
                    f"clip {late[0]} ends at {clip.end} s, after the end of {record.path} ({outcome.duration} s)"
                )
                continue
            probed.append(VideoRecord(record.path, record.clips, record.line, outcome, record.metadata))
        records = probed

    if errors:
        raise ManifestError(path, sorted(errors.items()))
    if not records:
        raise ValueError(f"Manifest `{path}` holds no videos.")
    return records


def _probe_or_error(path: str) -> VideoInfo | OSError:
    try:
        return probe_video(path)
    except OSError as err:
        return err


def write_manifest(path: str | os.PathLike, records: Sequence[VideoRecord], relative_to_manifest: bool = True) -> None:
    """Write records back to a JSONL manifest (the inverse of `load_manifest`, metadata included).

    Args:
        path (`str` or `os.PathLike`): The `.jsonl` file to write.
        records (`Sequence[VideoRecord]`): The videos to write, one line each.
        relative_to_manifest (`bool`, *optional*, defaults to `True`):
            Write video paths relative to the manifest's folder where possible, so the folder can be moved as a whole.
    """
    path = Path(path)
    root = path.resolve().parent
    lines = []
    for record in records:
        video = record.path
        if relative_to_manifest:
            try:
                video = os.path.relpath(video, root)
            except ValueError:  # another drive on Windows
                pass
        clips = [
            {"start": clip.start, "end": clip.end, "caption": clip.caption, **clip.metadata} for clip in record.clips
        ]
        lines.append(json.dumps({"video": video, "clips": clips, **record.metadata}, ensure_ascii=False))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
