# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""`longvid generate`: generate a long video clip by clip, streaming each finished clip to an mp4.

Next to `video.mp4` it writes `video.json` (rewritten after every clip): the prompts, seed, settings, per-clip
timings and frame ranges, and the KV storage plan. A stopped job keeps the clips it finished, and its sidecar says
which.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

_DTYPES = ("auto", "float32", "bfloat16", "float16")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="Generate a long video (one prompt per clip) and stream it to an mp4.",
        description=(
            "Generate a long video clip by clip with LongVideoExtensionPipeline. Each clip is appended to the mp4 as "
            "soon as it is finished; a JSON sidecar (same name, .json) records prompts, settings, timings and the "
            "KV plan."
        ),
    )
    parser.add_argument(
        "--model",
        required=True,
        help="Local folder or Hub id of a pipeline (an extension model, or a stock Wan2.1 T2V checkpoint for the "
        "training-free mode); `toy` uses the built-in toy preset.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--prompts-file",
        type=Path,
        help="Text file with one clip prompt per line (blank lines and lines starting with # are skipped).",
    )
    source.add_argument("--prompt", help="One prompt used for every clip (see --num-clips).")
    parser.add_argument("--num-clips", type=int, default=None, help="Number of clips with --prompt (default 1).")
    parser.add_argument("--negative-prompt", default=None, help="Negative prompt for all clips.")
    parser.add_argument("--image", type=Path, default=None, help="Image to start from (image-to-long-video).")
    parser.add_argument(
        "--video", type=Path, default=None, help="Video to continue (its last frames condition clip 0)."
    )
    parser.add_argument("--height", type=int, default=480, help="Frame height (multiple of 16).")
    parser.add_argument("--width", type=int, default=832, help="Frame width (multiple of 16).")
    parser.add_argument("--num-frames", type=int, default=81, help="Frames per clip (4k+1).")
    parser.add_argument(
        "--num-condition-frames",
        type=int,
        default=5,
        help="Frames of the previous clip that condition the next (1+4j).",
    )
    parser.add_argument("--num-inference-steps", type=int, default=50, help="Steps of the full schedule per clip.")
    parser.add_argument("--guidance-scale", type=float, default=5.0, help="Classifier-free guidance scale.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the (CPU) generator.")
    parser.add_argument(
        "--out", type=Path, default=Path("video.mp4"), help="Output mp4; the sidecar is written next to it as .json."
    )
    parser.add_argument("--fps", type=float, default=16.0, help="Frames per second of the mp4.")
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
    parser.add_argument("--max-sequence-length", type=int, default=512, help="Tokens per prompt.")
    parser.add_argument("--device", default="auto", help="`auto` (cuda if available), `cpu`, `cuda`, `cuda:1`, ...")
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=_DTYPES,
        help="Weights dtype (`auto`: bfloat16 on GPU, float32 on CPU; the VAE stays float32).",
    )
    parser.add_argument(
        "--cpu-offload", action="store_true", help="Use `enable_model_cpu_offload` (GPU memory saver)."
    )
    parser.set_defaults(func=run)


def _read_prompts(args: argparse.Namespace) -> list[str]:
    if args.prompts_file is not None:
        if args.num_clips is not None:
            raise ValueError("`--num-clips` is only used with `--prompt`; with `--prompts-file` every line is a clip.")
        if not args.prompts_file.is_file():
            raise ValueError(f"`--prompts-file` {str(args.prompts_file)!r} does not exist.")
        lines = [line.strip() for line in args.prompts_file.read_text(encoding="utf-8").splitlines()]
        prompts = [line for line in lines if line and not line.startswith("#")]
        if not prompts:
            raise ValueError(f"`--prompts-file` {str(args.prompts_file)!r} holds no prompt.")
        return prompts
    num_clips = 1 if args.num_clips is None else args.num_clips
    if num_clips < 1:
        raise ValueError(f"`--num-clips` must be >= 1, got {num_clips}.")
    return [args.prompt] * num_clips


def _resolve_model(model: str) -> str:
    if model != "toy":
        return model
    from ..presets import get_preset_path

    try:
        return get_preset_path("toy")
    except FileNotFoundError as error:
        raise ValueError(f"`--model toy`: {error}") from error


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def run(args: argparse.Namespace) -> int:
    try:
        prompts = _read_prompts(args)
        model_path = _resolve_model(args.model)
        if args.image is not None and args.video is not None:
            raise ValueError("Pass either `--image` or `--video`, not both.")
        for flag, path in (("--image", args.image), ("--video", args.video)):
            if path is not None and not path.is_file():
                raise ValueError(f"`{flag}` {str(path)!r} does not exist.")
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    import torch

    from ..pipelines.longvideo.pipeline_longvideo_extension import LongVideoExtensionPipeline
    from ..schedulers.scheduling_trflow import TRFlowScheduler
    from ..video_io import StreamingVideoWriter

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    dtype_name = args.dtype if args.dtype != "auto" else ("bfloat16" if str(device).startswith("cuda") else "float32")
    dtype = getattr(torch, dtype_name)

    print(f"Loading {model_path} ({dtype_name}, {device}) ...")
    try:
        pipe = LongVideoExtensionPipeline.from_pretrained(
            model_path, torch_dtype={"default": dtype, "vae": torch.float32}
        )
    except (OSError, ValueError) as error:
        print(f"error: could not load a pipeline from `--model {args.model}`: {error}", file=sys.stderr)
        return 2

    # T-RFlow: keep the scheduler's window unless overridden; a non-T-RFlow scheduler is converted (paper defaults)
    scheduler = pipe.scheduler
    if isinstance(scheduler, TRFlowScheduler):
        tau_low = scheduler.config.tau_low if args.tau_low is None else args.tau_low
        tau_high = scheduler.config.tau_high if args.tau_high is None else args.tau_high
    else:
        tau_low = 0.3 if args.tau_low is None else args.tau_low
        tau_high = 0.7 if args.tau_high is None else args.tau_high
    try:
        pipe.scheduler = TRFlowScheduler.from_config(
            scheduler.config, tau_low=float(tau_low), tau_high=float(tau_high)
        )
    except (TypeError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.cpu_offload:
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)

    image = video = None
    if args.image is not None:
        from diffusers.utils import load_image

        image = load_image(str(args.image))
    if args.video is not None:
        from diffusers.utils import load_video

        video = load_video(str(args.video))

    out_path = args.out
    sidecar_path = out_path.with_suffix(".json")
    settings = {
        "height": args.height,
        "width": args.width,
        "num_frames": args.num_frames,
        "num_condition_frames": args.num_condition_frames,
        "num_inference_steps": args.num_inference_steps,
        "guidance_scale": args.guidance_scale,
        "tau_low": float(tau_low),
        "tau_high": float(tau_high),
        "kv_cache_clips": pipe.config.kv_cache_clips if args.kv_cache_clips is None else args.kv_cache_clips,
        "max_cached_clips": pipe.config.max_cached_clips if args.max_cached_clips is None else args.max_cached_clips,
        "max_sequence_length": args.max_sequence_length,
        "fps": args.fps,
        "device": str(device),
        "dtype": dtype_name,
        "conditioning_mode": pipe.conditioning_mode,
        "image": str(args.image) if args.image is not None else None,
        "video": str(args.video) if args.video is not None else None,
    }
    record: dict[str, Any] = {
        "model": args.model,
        "prompts": prompts,
        "negative_prompt": args.negative_prompt,
        "seed": args.seed,
        "settings": settings,
        "video": out_path.name,
        "num_frames_written": 0,
        "finished": False,
        "clips": [],
        "kv_plan": [],
    }

    try:
        clips = pipe.generate_clips(
            prompt=prompts,
            negative_prompt=args.negative_prompt,
            image=image,
            video=video,
            height=args.height,
            width=args.width,
            num_frames=args.num_frames,
            num_condition_frames=args.num_condition_frames,
            num_inference_steps=args.num_inference_steps,
            guidance_scale=args.guidance_scale,
            generator=torch.Generator("cpu").manual_seed(args.seed),
            output_type="np",
            max_sequence_length=args.max_sequence_length,
            kv_cache_clips=args.kv_cache_clips,
            max_cached_clips=args.max_cached_clips,
        )
    except (TypeError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    out_path.parent.mkdir(parents=True, exist_ok=True)
    total = args.num_frames + (len(prompts) - 1) * (args.num_frames - args.num_condition_frames)
    print(f"Generating {len(prompts)} clips ({total} frames) to {out_path} ...")
    start = time.perf_counter()
    _write_json(sidecar_path, record)
    with StreamingVideoWriter(out_path, fps=args.fps) as writer:
        for clip in clips:
            writer.append(clip.frames[0])
            record["clips"].append(clip.info)
            record["kv_plan"] = clip.kv_plan
            record["num_frames_written"] = writer.num_frames
            _write_json(sidecar_path, record)
            print(
                f"clip {clip.clip_index + 1}/{len(prompts)}: frames {clip.frame_range[0]}-{clip.frame_range[1] - 1} "
                f"in {clip.seconds:.1f} s, attends {clip.attends}"
            )
    record["finished"] = True
    record["total_seconds"] = time.perf_counter() - start
    _write_json(sidecar_path, record)
    print(f"Wrote {out_path} ({record['num_frames_written']} frames) and {sidecar_path}.")
    return 0
