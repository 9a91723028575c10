# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""`longvid generate`: generate a long video clip by clip, streaming each finished clip to an mp4.

Next to `video.mp4` it writes `video.json` (rewritten after every clip): the prompts, seed, settings, per-clip
timings and frame ranges, and the KV storage plan. A stopped job keeps the clips it finished, and its sidecar says
which.

With `--state-dir DIR` the job is resumable: after every clip the pipeline's `GenerationState` is saved in `DIR`,
each clip is encoded as its own segment (`DIR/segments/`) and the mp4 is re-joined from the segments by stream copy.
`longvid generate --resume DIR` continues an interrupted job with its saved arguments and gives the same mp4, frame
for frame, as an uninterrupted run.

Nothing is replaced until it is good: every flag and input file is checked before the model loads; while the job
runs, the video and sidecar grow as `video.partial.mp4` / `video.partial.json`, which replace `video.mp4` /
`video.json` atomically when the last clip is done (a failed or stopped run never overwrites a previous result). A
resumable job's segments have SHA-256 checksums (`segments/checksums.json`), verified with the state before
`--resume` does any work.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from ..utils import GENERATION_DEFAULTS as _GENERATION_DEFAULTS
from ..utils import write_json_atomic
from ..validation import check_float, check_int, check_seed


_DTYPES = ("auto", "float32", "bfloat16", "float16")
# the arguments saved by a resumable job and restored by --resume (tau_low / tau_high as resolved for the scheduler)
_SAVED_ARGS = (
    "model",
    "negative_prompt",
    "image",
    "video",
    "height",
    "width",
    "num_frames",
    "num_condition_frames",
    "num_inference_steps",
    "guidance_scale",
    "seed",
    "out",
    "fps",
    "tau_low",
    "tau_high",
    "kv_cache_clips",
    "max_cached_clips",
    "max_sequence_length",
    "device",
    "dtype",
    "cpu_offload",
)
# may differ on --resume: where the mp4 goes and where the job runs do not change the video
_OVERRIDABLE_ON_RESUME = ("out", "device", "cpu_offload")
_PATH_ARGS = ("image", "video", "out")
_JOB_FILE = "cli.json"
_SEGMENTS_DIR = "segments"
_SEGMENT_CHECKSUMS = "checksums.json"
_VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv")
# the flags whose parser default is `None` (so that `--resume` sees which were given) and their real defaults
_CLI_DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "out": Path("video.mp4"),
    "device": "auto",
    "dtype": "auto",
    "cpu_offload": False,
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="Generate a long video (one prompt per clip) and stream it to an mp4.",
        description=(
            "Generate a long video clip by clip with LongVideoExtensionPipeline. Each clip is appended to the mp4 as "
            "soon as it is finished; a JSON sidecar (same name, .json) records prompts, settings, timings and the "
            "KV plan. Options marked * default to the model folder's preset.json when it has one (the built-in "
            "`toy` preset does), else to the value shown."
        ),
    )
    parser.add_argument(
        "--model",
        default=None,
        help="Local folder or Hub id of a pipeline (an extension model, or a stock Wan2.1 T2V checkpoint for the "
        "training-free mode); `toy` uses the built-in toy preset. Required unless --resume.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--prompts-file",
        type=Path,
        help="Text file with one clip prompt per line (blank lines and lines starting with # are skipped). This or "
        "--prompt is required unless --resume.",
    )
    source.add_argument("--prompt", help="One prompt used for every clip (see --num-clips).")
    parser.add_argument("--num-clips", type=int, default=None, help="Number of clips with --prompt (default 1).")
    parser.add_argument("--negative-prompt", default=None, help="Negative prompt for all clips.")
    parser.add_argument("--image", type=Path, default=None, help="Image to start from (image-to-long-video).")
    parser.add_argument(
        "--video", type=Path, default=None, help="Video to continue (its last frames condition clip 0)."
    )
    parser.add_argument("--height", type=int, default=None, help="Frame height (multiple of 16; default 480*).")
    parser.add_argument("--width", type=int, default=None, help="Frame width (multiple of 16; default 832*).")
    parser.add_argument("--num-frames", type=int, default=None, help="Frames per clip (4k+1; default 81*).")
    parser.add_argument(
        "--num-condition-frames",
        type=int,
        default=None,
        help="Frames of the previous clip that condition the next (1+4j; default 5*).",
    )
    parser.add_argument(
        "--num-inference-steps", type=int, default=None, help="Steps of the full schedule per clip (default 50*)."
    )
    parser.add_argument(
        "--guidance-scale", type=float, default=None, help="Classifier-free guidance scale (default 5.0*)."
    )
    parser.add_argument("--seed", type=int, default=None, help="Seed of the (CPU) generator (default 0).")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="Output mp4 (default video.mp4); the sidecar is written next to it as .json. Both grow as "
        "NAME.partial.mp4 / NAME.partial.json while the job runs and replace NAME.mp4 / NAME.json when it is done.",
    )
    parser.add_argument("--fps", type=float, default=None, help="Frames per second of the mp4 (default 16*).")
    parser.add_argument(
        "--tau-low",
        type=float,
        default=None,
        help="T-RFlow window start (0 = pure noise, 1 = clean); default: the scheduler's, or 0.3.",
    )
    parser.add_argument(
        "--tau-high", type=float, default=None, help="T-RFlow window end; default: the scheduler's, or 0.7."
    )
    parser.add_argument(
        "--kv-cache-clips",
        type=int,
        default=None,
        help="History clips attended through the KV cache (0 = off; default: the pipeline's config).",
    )
    parser.add_argument(
        "--max-cached-clips", type=int, default=None, help="Most history clips held in the KV cache at once."
    )
    parser.add_argument(
        "--max-sequence-length",
        type=int,
        default=None,
        help="Tokens per prompt (default: the tokenizer's model_max_length, at most 512).",
    )
    parser.add_argument(
        "--device", default=None, help="`auto` (the default: cuda if available), `cpu`, `cuda`, `cuda:1`, `mps`."
    )
    parser.add_argument(
        "--dtype",
        default=None,
        choices=_DTYPES,
        help="Weights dtype (`auto`: bfloat16 on GPU, float32 on CPU; the VAE stays float32).",
    )
    parser.add_argument(
        "--cpu-offload", action="store_true", default=None, help="Use `enable_model_cpu_offload` (GPU memory saver)."
    )
    resumable = parser.add_mutually_exclusive_group()
    resumable.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="Make the job resumable: save the generation state (RNG, condition frames, KV cache and plan, latents) "
        "and a video segment per clip in this folder after every clip; the mp4 is joined from the segments.",
    )
    resumable.add_argument(
        "--resume",
        type=Path,
        default=None,
        metavar="STATE_DIR",
        help="Continue the interrupted job whose --state-dir was STATE_DIR (or a folder holding it as `state/`), "
        "with its saved arguments; other flags may only change --out, --device and --cpu-offload.",
    )
    parser.set_defaults(func=run)


def _read_prompts(args: argparse.Namespace) -> list[str]:
    if args.prompts_file is not None:
        if args.num_clips is not None:
            raise ValueError("`--num-clips` is only used with `--prompt`; with `--prompts-file` every line is a clip.")
        if args.prompts_file.is_dir():
            raise ValueError(f"`--prompts-file` {str(args.prompts_file)!r} is a folder, not a text file.")
        if not args.prompts_file.is_file():
            raise ValueError(f"`--prompts-file` {str(args.prompts_file)!r} does not exist.")
        try:
            text = args.prompts_file.read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise ValueError(f"`--prompts-file` {str(args.prompts_file)!r} is not UTF-8 text ({error}).") from None
        lines = [line.strip() for line in text.splitlines()]
        prompts = [line for line in lines if line and not line.startswith("#")]
        if not prompts:
            raise ValueError(f"`--prompts-file` {str(args.prompts_file)!r} holds no prompt.")
        return prompts
    num_clips = 1 if args.num_clips is None else args.num_clips
    check_int("--num-clips", num_clips, minimum=1, maximum=10**7)
    return [args.prompt] * num_clips


def _apply_model_defaults(opts: argparse.Namespace, model_path: str) -> None:
    """Fill the sampling options left out with the model's `preset.json` (a local folder's), else Wan's defaults
    (`diffusers_longvid.utils.GENERATION_DEFAULTS`)."""
    preset: dict[str, Any] = {}
    preset_file = Path(model_path) / "preset.json"
    if preset_file.is_file():
        preset = _read_json(preset_file)
    for name, default in _GENERATION_DEFAULTS.items():
        if getattr(opts, name, None) is None:
            setattr(opts, name, preset.get(name, default))


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a file; a `ValueError` naming the file otherwise."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        raise ValueError(f"{str(path)!r} is not valid JSON: {error}.") from None
    except OSError as error:
        raise ValueError(f"{str(path)!r} cannot be read: {error}.") from None
    if not isinstance(data, dict):
        raise ValueError(f"{str(path)!r} must hold a JSON object, got {type(data).__name__}.")
    return data


def _partial(path: Path) -> Path:
    """Where a job's output grows until it is done: `video.mp4` -> `video.partial.mp4`."""
    return path.with_name(f"{path.stem}.partial{path.suffix}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _check_options(opts: argparse.Namespace) -> None:
    """Every flag that could fail late (after the model loads, or after clip 1), checked now."""
    opts.fps = check_float("--fps", opts.fps, minimum=0.0, exclusive_minimum=True)
    opts.seed = check_seed("--seed", opts.seed)
    opts.guidance_scale = check_float("--guidance-scale", opts.guidance_scale)
    for flag in ("tau_low", "tau_high"):
        check_float(f"--{flag.replace('_', '-')}", getattr(opts, flag), 0.0, 1.0, allow_none=True)
    for flag in ("height", "width", "num_frames", "num_condition_frames", "num_inference_steps"):
        check_int(f"--{flag.replace('_', '-')}", getattr(opts, flag), minimum=1)
    check_int("--max-sequence-length", opts.max_sequence_length, minimum=1, allow_none=True)
    for flag in ("kv_cache_clips", "max_cached_clips"):
        check_int(f"--{flag.replace('_', '-')}", getattr(opts, flag), minimum=0, allow_none=True)
    if opts.image is not None and opts.video is not None:
        raise ValueError("Pass either `--image` or `--video`, not both.")
    _check_out(Path(opts.out))


def _check_out(out: Path) -> None:
    try:
        if out.is_dir():
            raise ValueError(
                f"`--out` {str(out)!r} is a folder: name the video file, e.g. {str(out / 'video.mp4')!r}."
            )
        if out.suffix.lower() not in _VIDEO_SUFFIXES:
            raise ValueError(f"`--out` {str(out)!r} must end with one of {', '.join(_VIDEO_SUFFIXES)}.")
        if out.with_suffix(".json").is_dir():
            raise ValueError(f"`--out` {str(out)!r}: its sidecar {str(out.with_suffix('.json'))!r} is a folder.")
        ancestor = out.absolute().parent
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise ValueError(f"`--out` {str(out)!r} is under {str(ancestor)!r}, which is a file, not a folder.")
        if not os.access(ancestor, os.W_OK):
            raise ValueError(f"`--out` {str(out)!r}: the folder {str(ancestor)!r} is not writable.")
    except OSError as error:  # e.g. a name too long for the file system
        raise ValueError(f"`--out` {str(out)[:200]!r} is not a usable path: {error.strerror or error}.") from None


def _resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"`--device` {name!r} is not a device: use auto, cpu, cuda, cuda:N or mps.") from None
    if device.type == "cpu":
        return name
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"`--device {name}`: no CUDA GPU is available here (use `--device cpu`).")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"`--device {name}`: there are {torch.cuda.device_count()} CUDA devices.")
        return name
    if device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"`--device {name}`: MPS is not available here.")
        return name
    raise ValueError(f"`--device` {name!r}: only cpu, cuda, cuda:N and mps are supported.")


def _load_inputs(opts: argparse.Namespace) -> tuple[Any, Any]:
    """`--image` / `--video` decoded and validated now (the same rules as the pipeline's `image=` / `video=`)."""
    from ..validation import load_image_file, validate_video

    image = video = None
    if opts.image is not None:
        image = load_image_file(opts.image, "--image")
    if opts.video is not None:
        path = Path(opts.video)
        if path.is_dir():
            raise ValueError(f"`--video` {str(path)!r} is a folder, not a video file.")
        if not path.is_file():
            raise ValueError(f"`--video` {str(path)!r} does not exist.")
        from ..video_io import read_video

        try:
            video = read_video(path)
        except (OSError, RuntimeError, ValueError, IndexError, StopIteration) as error:
            reason = " ".join(str(error).split())[:200] or type(error).__name__
            raise ValueError(f"`--video` {str(path)!r} is not a video file ffmpeg can read ({reason}).") from None
        if len(video) == 0:
            raise ValueError(f"`--video` {str(path)!r} has 0 frames.")
        validate_video(video, "--video", num_last_frames=opts.num_condition_frames)
    return image, video


def _write_segment_checksum(segments: Path, name: str, checksum: str) -> None:
    path = segments / _SEGMENT_CHECKSUMS
    checksums = _read_json(path) if path.is_file() else {}
    checksums[name] = checksum
    write_json_atomic(path, checksums)


def _verify_segments(state_dir: Path, num_clips_done: int) -> None:
    """Every finished clip's segment is there and matches the checksum saved when it was written."""
    segments = state_dir / _SEGMENTS_DIR
    checksum_file = segments / _SEGMENT_CHECKSUMS
    checksums = _read_json(checksum_file) if checksum_file.is_file() else None
    for n in range(num_clips_done):
        name = f"clip_{n:05d}.mp4"
        if not (segments / name).is_file():
            raise ValueError(
                f"`--resume` {str(state_dir)!r} is damaged: the segment {_SEGMENTS_DIR}/{name} of finished clip {n} "
                "is missing. Restore it, or start a new job with a new --state-dir."
            )
        if checksums is not None and checksums.get(name) != _sha256(segments / name):
            raise ValueError(
                f"`--resume` {str(state_dir)!r} is damaged: the segment {_SEGMENTS_DIR}/{name} does not match its "
                "checksum (truncated or changed). Restore it, or start a new job with a new --state-dir."
            )


def _find_state_dir(path: Path) -> Path:
    from ..pipelines.longvideo.state import GenerationState

    if path.exists() and not path.is_dir():
        raise ValueError(f"`--resume` {str(path)!r} is a file, not a state folder.")
    for candidate in (path, path / "state"):
        if GenerationState.exists(candidate):
            if not (candidate / _JOB_FILE).is_file():
                raise ValueError(
                    f"`--resume` {str(candidate)!r} holds a generation state but no {_JOB_FILE}: it was not written "
                    "by `longvid generate --state-dir`; resume it from Python with `generate_clips(..., resume=True)`."
                )
            return candidate
    raise ValueError(f"`--resume` {str(path)!r} holds no generation state (no state.json there or in `state/`).")


def _saved_job(args: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    """The state folder and the saved arguments of the job that `--resume` continues, with the allowed overrides."""
    state_dir = _find_state_dir(args.resume)
    job_file = state_dir / _JOB_FILE
    job = _read_json(job_file)
    saved = job.get("args")
    if (
        not isinstance(saved, dict)
        or set(_SAVED_ARGS) - set(saved)
        or not isinstance(job.get("prompts"), list)
        or not all(isinstance(p, str) for p in job["prompts"])
        or not isinstance(job.get("resumes"), list)
    ):
        raise ValueError(f"{str(job_file)!r} is damaged: it lacks the saved arguments, prompts or resumes.")
    conflicts = []
    for name in _SAVED_ARGS:
        given = getattr(args, name)
        if given is None:
            continue  # not given on the command line: the saved value is used
        given = _saved_value(name, given)
        if name in _OVERRIDABLE_ON_RESUME:
            saved[name] = given
        elif given != saved[name]:
            conflicts.append(f"--{name.replace('_', '-')} {given} (saved: {saved[name]})")
    if args.prompt is not None or args.prompts_file is not None:
        if _read_prompts(args) != job["prompts"]:
            conflicts.append("the prompts (saved: " + json.dumps(job["prompts"])[:80] + ")")
    if conflicts:
        raise ValueError(
            f"`--resume` continues the saved job with its own arguments; these differ: {'; '.join(conflicts)}. Drop "
            "them, or start a new job with a new --state-dir."
        )
    job["args"] = saved
    return state_dir, job


def _new_job(args: argparse.Namespace) -> dict[str, Any]:
    if args.model is None:
        raise ValueError("`--model` is required (unless `--resume`).")
    for name, default in _CLI_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    if args.prompt is None and args.prompts_file is None:
        raise ValueError("One of `--prompts-file` or `--prompt` is required (unless `--resume`).")
    prompts = _read_prompts(args)
    if args.state_dir is not None:
        from ..pipelines.longvideo.state import GenerationState

        if args.state_dir.exists() and not args.state_dir.is_dir():
            raise ValueError(f"`--state-dir` {str(args.state_dir)!r} is a file, not a folder.")
        if GenerationState.exists(args.state_dir):
            raise ValueError(
                f"`--state-dir` {str(args.state_dir)!r} already holds the state of a job: continue it with "
                f"`longvid generate --resume {args.state_dir}`, or choose an empty folder."
            )
    saved = {name: _saved_value(name, getattr(args, name)) for name in _SAVED_ARGS}
    return {"args": saved, "prompts": prompts, "resumes": []}


def _saved_value(name: str, value: Any) -> Any:
    # paths are saved absolute, so that `--resume` works from any working directory
    if value is None or (name not in _PATH_ARGS and name != "model"):
        return value
    path = Path(value)
    if name == "model" and not path.exists():
        return value  # a Hub id or `toy`
    return str(path.resolve())


def run(args: argparse.Namespace) -> int:
    from ..pipelines.longvideo.state import GenerationState

    # 1. Everything that can be checked without the model: flags, files, the saved state (checksums included)
    try:
        if args.resume is not None:
            state_dir, job = _saved_job(args)
        else:
            state_dir, job = args.state_dir, _new_job(args)
        opts = argparse.Namespace(**job["args"])
        prompts = job["prompts"]
        from ..presets import resolve_model

        model_path = resolve_model(opts.model)
        _apply_model_defaults(opts, model_path)
        _check_options(opts)
        device = _resolve_device(opts.device)
        resumed = None
        if args.resume is not None:
            resumed = GenerationState.load(state_dir)  # verifies every file against its checksum
            if resumed.num_clips_done > len(prompts):
                raise ValueError(
                    f"`--resume` {str(state_dir)!r} is inconsistent: {resumed.num_clips_done} clips done of a "
                    f"{len(prompts)}-clip script."
                )
            _verify_segments(Path(state_dir), resumed.num_clips_done)
        image, video = _load_inputs(opts)
    except ValueError as error:
        if getattr(args, "debug", False):
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2

    import torch

    from ..pipelines.longvideo.pipeline_longvideo_extension import LongVideoExtensionPipeline
    from ..schedulers.scheduling_trflow import TRFlowScheduler
    from ..video_io import StreamingVideoWriter, concat_videos, write_video

    dtype_name = opts.dtype if opts.dtype != "auto" else ("bfloat16" if str(device).startswith("cuda") else "float32")
    dtype = getattr(torch, dtype_name)

    print(f"Loading {model_path} ({dtype_name}, {device}) ...")
    try:
        pipe = LongVideoExtensionPipeline.from_pretrained(model_path, dtype={"default": dtype, "vae": torch.float32})
    except (OSError, ValueError) as error:
        if getattr(args, "debug", False):
            raise
        print(f"error: could not load a pipeline from `--model {opts.model}`: {error}", file=sys.stderr)
        return 2

    # T-RFlow: keep the scheduler's window unless overridden; a non-T-RFlow scheduler is converted (paper defaults)
    scheduler = pipe.scheduler
    if isinstance(scheduler, TRFlowScheduler):
        tau_low = scheduler.config.tau_low if opts.tau_low is None else opts.tau_low
        tau_high = scheduler.config.tau_high if opts.tau_high is None else opts.tau_high
    else:
        tau_low = 0.3 if opts.tau_low is None else opts.tau_low
        tau_high = 0.7 if opts.tau_high is None else opts.tau_high
    opts.tau_low, opts.tau_high = float(tau_low), float(tau_high)
    try:
        pipe.scheduler = TRFlowScheduler.from_config(scheduler.config, tau_low=opts.tau_low, tau_high=opts.tau_high)
    except (TypeError, ValueError) as error:
        if getattr(args, "debug", False):
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    if opts.cpu_offload:
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)

    out_path = Path(opts.out)
    sidecar_path = out_path.with_suffix(".json")
    # the job's output grows under partial names and replaces `out` / its sidecar only when the job is done
    partial_path, partial_sidecar = _partial(out_path), _partial(sidecar_path)
    settings = {
        "height": opts.height,
        "width": opts.width,
        "num_frames": opts.num_frames,
        "num_condition_frames": opts.num_condition_frames,
        "num_inference_steps": opts.num_inference_steps,
        "guidance_scale": opts.guidance_scale,
        "tau_low": opts.tau_low,
        "tau_high": opts.tau_high,
        "kv_cache_clips": pipe.config.kv_cache_clips if opts.kv_cache_clips is None else opts.kv_cache_clips,
        "max_cached_clips": pipe.config.max_cached_clips if opts.max_cached_clips is None else opts.max_cached_clips,
        "max_sequence_length": opts.max_sequence_length or pipe.default_max_sequence_length,
        "fps": opts.fps,
        "device": str(device),
        "dtype": dtype_name,
        "conditioning_mode": pipe.conditioning_mode,
        "image": opts.image,
        "video": opts.video,
    }
    record: dict[str, Any] = {
        "model": opts.model,
        "prompts": prompts,
        "negative_prompt": opts.negative_prompt,
        "seed": opts.seed,
        "settings": settings,
        "video": out_path.name,
        "num_frames_written": 0,
        "finished": False,
        "clips": [],
        "kv_plan": [],
    }

    if state_dir is not None:
        record["state_dir"] = str(state_dir)
        if resumed is not None:
            job["resumes"].append(resumed.num_clips_done)
            # the sidecar continues: the finished clips as the state saved them
            record["clips"] = [dict(info) for info in resumed.clips]
            record["kv_plan"] = [dict(entry) for entry in resumed.kv_plan]
            record["num_frames_written"] = resumed.next_frame
        record["resumed_at_clips"] = list(job["resumes"])

    segments = None if state_dir is None else Path(state_dir) / _SEGMENTS_DIR

    def write_segment(_pipe, clip_index: int, frames, info: dict[str, Any]) -> None:
        # runs before the pipeline saves its state: a clip in the state always has its (checksummed) segment
        name = f"clip_{clip_index:05d}.mp4"
        tmp = segments / f"clip_{clip_index:05d}.partial.mp4"
        write_video(frames[0], tmp, fps=opts.fps)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        checksum = _sha256(tmp)
        os.replace(tmp, segments / name)
        _write_segment_checksum(segments, name, checksum)

    try:
        clips = pipe.generate_clips(
            prompt=prompts,
            negative_prompt=opts.negative_prompt,
            image=image,
            video=video,
            height=opts.height,
            width=opts.width,
            num_frames=opts.num_frames,
            num_condition_frames=opts.num_condition_frames,
            num_inference_steps=opts.num_inference_steps,
            guidance_scale=opts.guidance_scale,
            generator=torch.Generator("cpu").manual_seed(opts.seed),
            output_type="np",
            max_sequence_length=opts.max_sequence_length,
            kv_cache_clips=opts.kv_cache_clips,
            max_cached_clips=opts.max_cached_clips,
            callback_on_clip_end=write_segment if segments is not None else None,
            state_dir=state_dir,
            resume=resumed is not None,
        )
    except (TypeError, ValueError) as error:
        if getattr(args, "debug", False):
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    if state_dir is not None:
        job["args"] = vars(opts)
        write_json_atomic(Path(state_dir) / _JOB_FILE, job)

    out_path.parent.mkdir(parents=True, exist_ok=True)
    total = opts.num_frames + (len(prompts) - 1) * (opts.num_frames - opts.num_condition_frames)
    first = 0 if resumed is None else resumed.num_clips_done
    action = "Generating" if resumed is None else f"Resuming at clip {first + 1} of"
    print(f"{action} {len(prompts)} clips ({total} frames) to {out_path} ...")
    start = time.perf_counter()
    write_json_atomic(partial_sidecar, record)
    try:
        if segments is None:
            with StreamingVideoWriter(partial_path, fps=opts.fps) as writer:
                for clip in clips:
                    writer.append(clip.frames[0])
                    _clip_done(record, clip, writer.num_frames, partial_sidecar, len(prompts))
        else:
            for clip in clips:
                # one segment per clip (written by `write_segment`), joined without re-encoding
                concat_videos([segments / f"clip_{n:05d}.mp4" for n in range(clip.clip_index + 1)], partial_path)
                _clip_done(record, clip, clip.frame_range[1], partial_sidecar, len(prompts))
            if first == len(prompts):  # resumed a job that had finished every clip
                concat_videos([segments / f"clip_{n:05d}.mp4" for n in range(len(prompts))], partial_path)
    except KeyboardInterrupt:
        done = len(record["clips"])
        hint = f" Continue with `longvid generate --resume {state_dir}`." if state_dir is not None else ""
        print(f"\nInterrupted after {done} of {len(prompts)} clips; {partial_path} holds them.{hint}", file=sys.stderr)
        return 130
    record["finished"] = True
    record["total_seconds"] = time.perf_counter() - start
    write_json_atomic(partial_sidecar, record)
    # the finished job replaces the previous result: the video first, then the sidecar that describes it
    os.replace(partial_path, out_path)
    os.replace(partial_sidecar, sidecar_path)
    print(f"Wrote {out_path} ({record['num_frames_written']} frames) and {sidecar_path}.")
    return 0


def _clip_done(record: dict[str, Any], clip, num_frames_written: int, sidecar_path: Path, num_clips: int) -> None:
    record["clips"].append(clip.info)
    record["kv_plan"] = clip.kv_plan
    record["num_frames_written"] = num_frames_written
    write_json_atomic(sidecar_path, record)
    print(
        f"clip {clip.clip_index + 1}/{num_clips}: frames {clip.frame_range[0]}-{clip.frame_range[1] - 1} "
        f"in {clip.seconds:.1f} s, attends {clip.attends}"
    )
