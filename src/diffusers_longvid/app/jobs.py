# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""Generation jobs of the app, without any UI: one folder per job, streamed clip by clip, stoppable and resumable.

A job folder holds:

| file | what |
| --- | --- |
| `job.json` | the model, script and settings (what Resume reuses) |
| `script.json` / `script.txt` | the script (toy script / prompts file) |
| `state/` | the pipeline's `GenerationState` after every finished clip (`generate_clips(state_dir=...)`) |
| `state/segments/clip_NNNNN.mp4` | each finished clip's new frames, written by `callback_on_clip_end` |
| `video.mp4`, `video.json` | the long video so far (the segments joined by stream copy) and its sidecar |
| `kv_plan.png` | which earlier clips each clip attended |
| `no_kv.mp4`, `side_by_side.mp4` | the comparison without the KV cache on the same noise (on request) |

A job runs in its own thread ([`GenerationJob.start`]) and publishes its progress as [`JobProgress`] snapshots;
[`GenerationJob.stop`] interrupts it at the next denoising step. The interrupted clip is dropped (the pipeline does
not save it), every finished clip stays in `video.mp4`, and `run(resume=True)` continues from the saved state
exactly as an uninterrupted run would have gone on.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from diffusers.utils import logging

from ..utils import write_json_atomic
from .errors import AppInputError
from .models import PipelineCache
from .script import EditedScript, check_prompt_lengths


logger = logging.get_logger(__name__)

__all__ = ["GenerationJob", "JobProgress", "JobRegistry", "JobSettings"]

_STATE_DIR = "state"
_SEGMENTS_DIR = "segments"
_JOB_FILE = "job.json"


def _to_int(value: Any, what: str) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise AppInputError(f"{what} must be a whole number, got {value!r}.") from None
    if number != number or number != int(number):
        raise AppInputError(f"{what} must be a whole number, got {value!r}.")
    return int(number)


def _to_float(value: Any, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise AppInputError(f"{what} must be a number, got {value!r}.") from None
    if number != number:
        raise AppInputError(f"{what} must be a number, got {value!r}.")
    return number


@dataclass
class JobSettings:
    r"""
    The sampling settings of a job (the page's settings panel).

    Args:
        height (`int`), width (`int`): Frame size (multiples of 16 for Wan2.1).
        num_frames (`int`): Frames per clip (`4k + 1`).
        num_condition_frames (`int`): Frames of the previous clip conditioning the next (`1 + 4j`).
        num_inference_steps (`int`): Steps of the full schedule per clip.
        guidance_scale (`float`): Classifier-free guidance scale.
        fps (`float`): Frame rate of the mp4.
        seed (`int`, *optional*, defaults to 0): Seed of the CPU generator (the noise).
        kv_cache (`bool`, *optional*, defaults to `True`): Attend earlier clips through the cross-clip KV cache.
        kv_cache_clips (`int`, *optional*, defaults to 5): History clips attended when `kv_cache` is on.
        tau_low (`float`, *optional*, defaults to 0.3), tau_high (`float`, *optional*, defaults to 0.7):
            The T-RFlow window (`[0, 1]` is plain Euler).
        max_sequence_length (`int`, *optional*): Tokens per prompt; `None`: the pipeline's default.
        negative_prompt (`str`, *optional*): Negative prompt of every clip.
    """

    height: int
    width: int
    num_frames: int
    num_condition_frames: int
    num_inference_steps: int
    guidance_scale: float
    fps: float
    seed: int = 0
    kv_cache: bool = True
    kv_cache_clips: int = 5
    tau_low: float = 0.3
    tau_high: float = 0.7
    max_sequence_length: int | None = None
    negative_prompt: str | None = None

    @classmethod
    def from_values(cls, **values: Any) -> JobSettings:
        """Settings from the page's raw values (numbers may come as floats or strings), checked; `AppInputError`
        names the setting that is wrong."""
        labels = {
            "height": "Height",
            "width": "Width",
            "num_frames": "Frames per clip",
            "num_condition_frames": "Condition frames",
            "num_inference_steps": "Steps",
            "seed": "Seed",
            "kv_cache_clips": "KV cache clips",
            "max_sequence_length": "Max sequence length",
        }
        kwargs: dict[str, Any] = {}
        for name, label in labels.items():
            value = values.get(name)
            if name == "max_sequence_length" and value in (None, "", 0):
                kwargs[name] = None
                continue
            kwargs[name] = _to_int(value, label)
        for name, label in (("guidance_scale", "Guidance scale"), ("fps", "FPS")):
            kwargs[name] = _to_float(values.get(name), label)
        for name, label in (("tau_low", "T-RFlow window start"), ("tau_high", "T-RFlow window end")):
            kwargs[name] = _to_float(values.get(name), label)
        kwargs["kv_cache"] = bool(values.get("kv_cache", True))
        negative = values.get("negative_prompt")
        kwargs["negative_prompt"] = negative.strip() or None if isinstance(negative, str) else None
        settings = cls(**kwargs)
        settings.check()
        return settings

    def check(self) -> None:
        """Raise [`AppInputError`] for values no model takes (model-specific sizes are checked by the pipeline)."""
        for name in ("height", "width", "num_frames", "num_condition_frames", "num_inference_steps"):
            if getattr(self, name) < 1:
                raise AppInputError(f"`{name}` must be at least 1, got {getattr(self, name)}.")
        if self.fps <= 0:
            raise AppInputError(f"FPS must be positive, got {self.fps}.")
        if not 0.0 <= self.tau_low < self.tau_high <= 1.0:
            raise AppInputError(
                f"The T-RFlow window must satisfy 0 <= start < end <= 1, got [{self.tau_low}, {self.tau_high}] "
                "([0, 1] is plain Euler)."
            )
        if self.kv_cache and self.kv_cache_clips < 1:
            raise AppInputError("With the KV cache on, `KV cache clips` must be at least 1 (or turn the cache off).")
        if self.max_sequence_length is not None and self.max_sequence_length < 1:
            raise AppInputError(f"The max sequence length must be at least 1, got {self.max_sequence_length}.")

    @property
    def effective_kv_cache_clips(self) -> int:
        return self.kv_cache_clips if self.kv_cache else 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class JobProgress:
    r"""
    A snapshot of a job, for the page.

    Args:
        job_id (`str`): The job's id (its folder's name).
        folder (`str`): The job folder.
        status (`str`): `new`, `waiting` (for the model), `running`, `stopped`, `finished` or `failed`.
        message (`str`): One line for the person (what happened, what to do).
        num_clips (`int`): Clips of the script.
        clips (`list[dict]`): `LongVideoClip.info` of every finished clip.
        kv_plan (`list[dict]`): The KV plan so far (`clip`, `attends`, `stored`, `evicted`).
        current_clip (`int`, *optional*): The clip being generated.
        step (`int`), num_steps (`int`): Denoising steps done / evaluated in the current clip.
        phase (`str`): `generate` or `compare` (the no-KV comparison).
        video (`str`, *optional*): The mp4 of the finished clips.
        segments (`list[str]`): One mp4 per finished clip.
        sidecar (`str`, *optional*), script (`str`, *optional*): The JSON sidecar and the script file.
        comparison (`str`, *optional*): The side-by-side mp4 (ground truth for a toy script, KV cache, no KV).
        version (`int`): Grows with every change.
    """

    job_id: str
    folder: str
    status: str = "new"
    message: str = ""
    num_clips: int = 0
    clips: list[dict[str, Any]] = field(default_factory=list)
    kv_plan: list[dict[str, Any]] = field(default_factory=list)
    current_clip: int | None = None
    step: int = 0
    num_steps: int = 0
    phase: str = "generate"
    video: str | None = None
    segments: list[str] = field(default_factory=list)
    sidecar: str | None = None
    script: str | None = None
    comparison: str | None = None
    version: int = 0

    @property
    def active(self) -> bool:
        return self.status in ("waiting", "running")


class GenerationJob:
    r"""
    One long-video job in its own folder.

    Args:
        folder (`str` or `os.PathLike`): The job folder (created).
        model (`str`): `toy`, a pipeline folder or a Hub id.
        script ([`EditedScript`]): The prompts (and toy script).
        settings ([`JobSettings`]): The sampling settings.
    """

    def __init__(self, folder: str | os.PathLike, model: str, script: EditedScript, settings: JobSettings) -> None:
        self.folder = Path(folder)
        self.model = model
        self.script = script
        self.settings = settings
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._progress = JobProgress(job_id=self.folder.name, folder=str(self.folder), num_clips=len(script.prompts))
        self.folder.mkdir(parents=True, exist_ok=True)
        if not (self.folder / _JOB_FILE).is_file():
            write_json_atomic(
                self.folder / _JOB_FILE,
                {
                    "model": model,
                    "prompts": script.prompts,
                    "toy_script": script.toy_script,
                    "settings": settings.to_dict(),
                },
            )
        self._progress.script = self._write_script()
        self._load_finished()

    # ------------------------------------------------------------------ files
    @classmethod
    def open(cls, folder: str | os.PathLike) -> GenerationJob:
        """The job saved in `folder` (its `job.json`), with the clips it finished."""
        path = Path(folder) / _JOB_FILE
        if not path.is_file():
            raise AppInputError(f"{folder} holds no job (no {_JOB_FILE}).")
        job = json.loads(path.read_text(encoding="utf-8"))
        script = EditedScript(prompts=list(job["prompts"]), toy_script=job.get("toy_script"))
        return cls(folder, job["model"], script, JobSettings(**job["settings"]))

    @property
    def state_dir(self) -> Path:
        return self.folder / _STATE_DIR

    @property
    def video_path(self) -> Path:
        return self.folder / "video.mp4"

    @property
    def sidecar_path(self) -> Path:
        return self.folder / "video.json"

    def _segment(self, clip_index: int) -> Path:
        return self.state_dir / _SEGMENTS_DIR / f"clip_{clip_index:05d}.mp4"

    def _write_script(self) -> str:
        if self.script.is_toy:
            path = self.folder / "script.json"
            path.write_text(json.dumps(self.script.toy_script, indent=1) + "\n", encoding="utf-8")
        else:
            path = self.folder / "script.txt"
            path.write_text("".join(p.replace("\n", " ") + "\n" for p in self.script.prompts), encoding="utf-8")
        return str(path)

    def _load_finished(self) -> None:
        """Progress of the clips a previous run of this job saved (after a stop, or when reopened)."""
        from ..pipelines.longvideo.state import GenerationState

        if not GenerationState.exists(self.state_dir):
            return
        state = GenerationState.load(self.state_dir)
        done = state.num_clips_done
        self._progress.clips = [dict(info) for info in state.clips]
        self._progress.kv_plan = [dict(entry) for entry in state.kv_plan]
        self._progress.segments = [str(self._segment(n)) for n in range(done)]
        self._progress.video = str(self.video_path) if self.video_path.is_file() else None
        self._progress.sidecar = str(self.sidecar_path) if self.sidecar_path.is_file() else None
        finished = done >= len(self.script.prompts)
        self._progress.status = "finished" if finished else "stopped"
        self._progress.message = (
            f"Finished all {done} clips." if finished else f"Stopped after {done} of {len(self.script.prompts)} clips."
        )

    # ------------------------------------------------------------------ progress
    def snapshot(self) -> JobProgress:
        """A copy of the job's progress."""
        with self._changed:
            return replace(
                self._progress,
                clips=list(self._progress.clips),
                kv_plan=list(self._progress.kv_plan),
                segments=list(self._progress.segments),
            )

    def wait(self, version: int, timeout: float = 0.5) -> JobProgress:
        """Block until the progress is newer than `version` (or `timeout` seconds) and return a snapshot."""
        with self._changed:
            self._changed.wait_for(lambda: self._progress.version > version, timeout=timeout)
        return self.snapshot()

    def _update(self, **changes: Any) -> None:
        with self._changed:
            for name, value in changes.items():
                setattr(self._progress, name, value)
            self._progress.version += 1
            self._changed.notify_all()

    def stop(self) -> None:
        """Ask the job to stop at its next denoising step; finished clips are kept."""
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, models: PipelineCache, resume: bool = False, compare: bool = False) -> threading.Thread:
        r"""
        Run [`~GenerationJob.run`] (or [`~GenerationJob.run_comparison`] with `compare=True`) in a new thread.

        Raises:
            [`AppInputError`]: The job is already running.
        """
        if self.running:
            raise AppInputError("This job is already running: stop it first.")
        self._stop.clear()
        self._update(status="waiting", message="Waiting for the model (another job may be running).")
        target = self.run_comparison if compare else self.run
        kwargs = {} if compare else {"resume": resume}
        self._thread = threading.Thread(target=target, args=(models,), kwargs=kwargs, daemon=True)
        self._thread.start()
        return self._thread

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    # ------------------------------------------------------------------ generation
    def _pipeline_kwargs(self, pipe: Any) -> dict[str, Any]:
        import torch

        s = self.settings
        return {
            "prompt": list(self.script.prompts),
            "negative_prompt": s.negative_prompt,
            "height": s.height,
            "width": s.width,
            "num_frames": s.num_frames,
            "num_condition_frames": s.num_condition_frames,
            "num_inference_steps": s.num_inference_steps,
            "guidance_scale": s.guidance_scale,
            "generator": torch.Generator("cpu").manual_seed(s.seed),
            "output_type": "np",
            "max_sequence_length": s.max_sequence_length or pipe.default_max_sequence_length,
            "kv_cache_clips": s.effective_kv_cache_clips,
        }

    def _prepare(self, pipe: Any) -> None:
        """Checks that need the model: prompt lengths, the T-RFlow window on its scheduler."""
        max_length = self.settings.max_sequence_length or pipe.default_max_sequence_length
        check_prompt_lengths(self.script.prompts, pipe.tokenizer, max_length)
        try:
            pipe.scheduler.set_window(self.settings.tau_low, self.settings.tau_high)
        except ValueError as error:
            raise AppInputError(f"The T-RFlow window is not valid: {error}") from error

    def _on_step(self, pipe: Any, step: int, timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        self._update(step=step + 1, num_steps=int(pipe.num_timesteps or 0), current_clip=pipe.current_clip_index)
        if self._stop.is_set():
            pipe._interrupt = True  # diffusers' interruption: the clip is dropped, finished clips are kept
        return callback_kwargs

    def _record(self, settings: dict[str, Any], resumes: list[int], finished: bool) -> dict[str, Any]:
        progress = self._progress
        return {
            "model": self.model,
            "prompts": self.script.prompts,
            "toy_script": self.script.toy_script,
            "negative_prompt": self.settings.negative_prompt,
            "seed": self.settings.seed,
            "settings": settings,
            "video": self.video_path.name,
            "num_frames_written": progress.clips[-1]["frame_range"][1] if progress.clips else 0,
            "finished": finished,
            "clips": progress.clips,
            "kv_plan": progress.kv_plan,
            "state_dir": str(self.state_dir),
            "resumed_at_clips": resumes,
        }

    def run(self, models: PipelineCache, resume: bool = False) -> JobProgress:
        r"""
        Generate the job's clips (blocking), streaming each finished clip into the job folder.

        Args:
            models ([`PipelineCache`]): Where the pipeline comes from.
            resume (`bool`, *optional*, defaults to `False`): Continue from the saved state (a fresh start when no
                clip was saved yet).

        Returns:
            [`JobProgress`]: The final snapshot. Errors never escape: bad input ends the job `failed` with its message,
            anything else with a one-line message (the traceback goes to the log).
        """
        from ..pipelines.longvideo.state import GenerationState
        from ..video_io import concat_videos, write_video

        self._update(phase="generate", status="waiting", step=0, num_steps=0, current_clip=None)
        try:
            loaded = models.get(self.model)
            with loaded.lock:
                pipe = loaded.pipe
                if self._stop.is_set():
                    self._finish_stopped()
                    return self.snapshot()
                self._prepare(pipe)
                resume = resume and GenerationState.exists(self.state_dir)
                if not resume and GenerationState.exists(self.state_dir):
                    raise AppInputError("This job already has finished clips: Resume it, or start a new job.")
                num_clips = len(self.script.prompts)
                resumes: list[int] = []
                if resume:
                    self._load_finished()
                    previous = {}
                    if self.sidecar_path.is_file():
                        previous = json.loads(self.sidecar_path.read_text(encoding="utf-8"))
                    resumes = list(previous.get("resumed_at_clips") or []) + [len(self._progress.clips)]
                    if len(self._progress.clips) >= num_clips:
                        self._update(status="finished", message=f"All {num_clips} clips are done: nothing to resume.")
                        return self.snapshot()
                else:
                    self._update(clips=[], kv_plan=[], segments=[], video=None)
                settings = self.settings.to_dict()
                settings.update(device=loaded.device, conditioning_mode=pipe.conditioning_mode)
                first = len(self._progress.clips)
                verb = f"Resuming at clip {first}" if resume else "Generating"
                self._update(status="running", message=f"{verb} ({num_clips} clips) ...")

                def write_segment(_pipe: Any, clip_index: int, frames: Any, info: dict[str, Any]) -> None:
                    # before the pipeline saves its state: a clip in the state always has its segment
                    if not _pipe.interrupt:
                        write_video(frames[0], self._segment(clip_index), fps=self.settings.fps)

                try:
                    clips = pipe.generate_clips(
                        **self._pipeline_kwargs(pipe),
                        callback_on_step_end=self._on_step,
                        callback_on_clip_end=write_segment,
                        state_dir=str(self.state_dir),
                        resume=resume,
                    )
                except (TypeError, ValueError) as error:
                    raise AppInputError(f"The model cannot take these settings: {error}") from error
                write_json_atomic(self.sidecar_path, self._record(settings, resumes, False))
                start = time.perf_counter()
                try:
                    for clip in clips:
                        if pipe.interrupt:
                            break  # the interrupted clip: not saved, not shown
                        concat_videos([self._segment(n) for n in range(clip.clip_index + 1)], self.video_path)
                        with self._changed:
                            self._progress.clips.append(clip.info)
                            self._progress.kv_plan = [dict(e) for e in clip.kv_plan]
                            self._progress.segments.append(str(self._segment(clip.clip_index)))
                        write_json_atomic(self.sidecar_path, self._record(settings, resumes, False))
                        self._update(
                            video=str(self.video_path),
                            sidecar=str(self.sidecar_path),
                            step=0,
                            message=f"Clip {clip.clip_index} of {num_clips} done in {clip.seconds:.1f} s.",
                        )
                        if self._stop.is_set():
                            break
                finally:
                    clips.close()
                done = len(self._progress.clips)
                if done < num_clips:
                    self._finish_stopped()
                    return self.snapshot()
                record = self._record(settings, resumes, True)
                record["total_seconds"] = time.perf_counter() - start
                write_json_atomic(self.sidecar_path, record)
                self._update(
                    status="finished",
                    current_clip=None,
                    message=f"Finished all {num_clips} clips ({self.video_path.name}).",
                )
        except AppInputError as error:
            self._update(status="failed", current_clip=None, message=str(error))
        except Exception as error:  # a page shows one line, the log the traceback
            logger.exception(f"Job {self.folder.name} failed")
            done = len(self._progress.clips)
            self._update(
                status="failed",
                current_clip=None,
                message=f"Generation failed ({type(error).__name__}: {error}). The {done} finished clips are kept; "
                "Resume continues from them.",
            )
        return self.snapshot()

    def _finish_stopped(self) -> None:
        done, total = len(self._progress.clips), len(self.script.prompts)
        hint = " Resume continues from there." if done else ""
        self._update(status="stopped", current_clip=None, message=f"Stopped after {done} of {total} clips.{hint}")

    def run_comparison(self, models: PipelineCache) -> JobProgress:
        r"""
        Generate the same script without the KV cache on the same noise (same seed and settings), and write
        `side_by_side.mp4`: the ground truth (a toy script at a square size), the job's video (KV cache) and no KV.

        Returns:
            [`JobProgress`]: The final snapshot (errors end it `failed`, as in [`~GenerationJob.run`]).
        """
        from ..toy.compare import ground_truth_frames, write_side_by_side
        from ..video_io import StreamingVideoWriter, read_video

        num_clips = len(self.script.prompts)
        self._update(phase="compare", status="waiting", step=0, num_steps=0, current_clip=None)
        try:
            if len(self._progress.clips) < num_clips:
                raise AppInputError("Finish the video first (Resume it): the comparison needs every clip.")
            if not self.settings.kv_cache:
                raise AppInputError("This video was made without the KV cache already: turn it on for a comparison.")
            loaded = models.get(self.model)
            with loaded.lock:
                pipe = loaded.pipe
                self._prepare(pipe)
                self._update(status="running", message="Comparison: the same script without the KV cache ...")
                kwargs = self._pipeline_kwargs(pipe)
                kwargs["kv_cache_clips"] = 0
                no_kv_path = self.folder / "no_kv.mp4"
                clips = pipe.generate_clips(**kwargs, callback_on_step_end=self._on_step)
                try:
                    with StreamingVideoWriter(no_kv_path, fps=self.settings.fps) as writer:
                        for clip in clips:
                            if pipe.interrupt:
                                break
                            writer.append(clip.frames[0])
                            self._update(step=0, message=f"Comparison: clip {clip.clip_index} of {num_clips} done.")
                            if self._stop.is_set():
                                break
                finally:
                    clips.close()
                if self._stop.is_set():
                    self._update(status="finished", phase="generate", message="Comparison stopped.")
                    return self.snapshot()
            videos = {}
            s = self.settings
            if self.script.is_toy and s.height == s.width:
                videos["ground truth"] = ground_truth_frames(
                    self.script.toy_script, s.num_frames, s.num_condition_frames, size=s.height, fps=int(round(s.fps))
                )
            videos["KV cache"] = read_video(self.video_path)
            videos["no KV"] = read_video(no_kv_path)
            path = write_side_by_side(
                videos, self.folder / "side_by_side.mp4", fps=s.fps, upscale=max(1, 256 // max(s.width, 1))
            )
            self._update(
                status="finished",
                phase="generate",
                comparison=path,
                message="Side by side: " + " | ".join(videos) + " (same noise).",
            )
        except AppInputError as error:
            self._update(status="failed" if not self._progress.clips else "finished", message=str(error))
        except Exception as error:
            logger.exception(f"Comparison of job {self.folder.name} failed")
            self._update(status="finished", message=f"The comparison failed ({type(error).__name__}: {error}).")
        return self.snapshot()


_SAFE = re.compile(r"[^A-Za-z0-9_-]")


class JobRegistry:
    r"""
    The jobs of every browser session: each session gets its own folder `root/<session>/<job id>/` and its own
    current job, so two users never share or stop each other's job.

    Args:
        root (`str` or `os.PathLike`): Folder of all job folders (created).
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._jobs: dict[str, GenerationJob] = {}
        self._lock = threading.Lock()

    @staticmethod
    def session_key(session: str | None) -> str:
        key = _SAFE.sub("", session or "")[:64]
        return key or "anonymous"

    def new_job(self, session: str | None, model: str, script: EditedScript, settings: JobSettings) -> GenerationJob:
        """A new job of `session` (its previous job, if any, is kept on disk); refused while one is running."""
        key = self.session_key(session)
        self._settle(self.current(session))
        with self._lock:
            current = self._jobs.get(key)
            if current is not None and current.running:
                raise AppInputError("Your previous job is still running: stop it first (or wait for it).")
            job_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
            job = GenerationJob(self.root / key / job_id, model, script, settings)
            self._jobs[key] = job
            return job

    @staticmethod
    def _settle(job: GenerationJob | None, timeout: float = 30.0) -> None:
        """Let a job that was asked to stop finish stopping (it ends at its next denoising step)."""
        if job is not None and job.running and job.stop_requested:
            job.join(timeout)

    def adopt(self, session: str | None, job: GenerationJob) -> GenerationJob:
        """Make `job` (e.g. reopened from its folder after a page reload) the current job of `session`."""
        self._settle(self.current(session))
        with self._lock:
            current = self._jobs.get(self.session_key(session))
            if current is not None and current.running and current is not job:
                raise AppInputError("Your current job is still running: stop it first.")
            self._jobs[self.session_key(session)] = job
            return job

    def current(self, session: str | None) -> GenerationJob | None:
        """The last job of `session`."""
        with self._lock:
            return self._jobs.get(self.session_key(session))

    def stop(self, session: str | None) -> bool:
        """Stop the running job of `session` (and only its own). Returns whether one was running."""
        job = self.current(session)
        if job is None or not job.running:
            return False
        job.stop()
        return True
