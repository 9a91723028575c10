# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""`longvid toy-eval`: score a generated toy-world video against the ground truth of its script."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _seconds(text: str) -> float | None:
    """A duration in seconds, or `None` for 'none'."""
    return None if text.lower() == "none" else float(text)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "toy-eval",
        help="Score a toy-world video against the ground truth of its script (JSON, Markdown, PNG).",
        description=(
            "Render the ground truth of SCRIPT with the pipeline's clip arithmetic and compare VIDEO with it, per "
            "time window and overall: background and object colour errors (sRGB 0-255), colour drift and re-entry "
            "colour correctness, sharpness ratio, high-frequency noise, AF, frame-to-frame difference and PSNR. "
            "Writes OUT/toy_eval.json, OUT/toy_eval.md and OUT/toy_eval.png. The clip arithmetic (frames per clip, "
            "condition frames, fps) is read from the `longvid generate` sidecar next to VIDEO (same name, .json) "
            "when there is one; flags override it. Without --video the ground truth itself is scored (a perfect "
            "score: a sanity check). See docs/toy.md."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--script", type=Path, required=True, help="The toy-world script JSON of the video.")
    parser.add_argument("--video", type=Path, default=None, help="The generated video; omitted: the ground truth.")
    parser.add_argument("--out", type=Path, required=True, help="Report folder (created if needed).")
    parser.add_argument("--num-frames", type=int, default=None, help="Frames per clip (default: sidecar, else 33).")
    parser.add_argument(
        "--num-condition-frames", type=int, default=None, help="Condition frames per clip (default: sidecar, else 5)."
    )
    parser.add_argument("--fps", type=int, default=None, help="Frame rate (default: sidecar, else 16).")
    parser.add_argument(
        "--window-seconds", type=_seconds, default=5.0, help="Length of the time windows; 'none' for one window."
    )
    parser.add_argument(
        "--render-seed", type=int, default=0, help="Seed of the ground-truth render (start states the script omits)."
    )
    parser.set_defaults(func=run)


def _read_sidecar(video: Path) -> dict | None:
    """The settings of a `longvid generate` sidecar next to `video`, or `None` (a script JSON there is not one)."""
    import json

    path = video.with_suffix(".json")
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(data, dict) and isinstance(data.get("settings"), dict) and "num_frames" in data["settings"]:
        return data
    return None


def run(args: argparse.Namespace) -> int:
    from ..toy import load_script, render_script_clips
    from ..toy.evaluate import evaluate_toy_video, write_toy_eval_report

    try:
        script = load_script(args.script)
    except (OSError, ValueError, TypeError) as error:
        print(f"error: `--script` {str(args.script)!r}: {error}", file=sys.stderr)
        return 2
    sidecar = _read_sidecar(args.video) if args.video is not None else None
    settings = sidecar["settings"] if sidecar else {}
    num_frames = args.num_frames if args.num_frames is not None else int(settings.get("num_frames") or 33)
    num_condition = (
        args.num_condition_frames
        if args.num_condition_frames is not None
        else int(settings.get("num_condition_frames") if settings.get("num_condition_frames") is not None else 5)
    )
    fps = args.fps if args.fps is not None else int(round(float(settings.get("fps") or 16)))
    if sidecar:
        print(f"clip arithmetic from {args.video.with_suffix('.json')}: F={num_frames}, k={num_condition}, fps={fps}")
        if sidecar.get("finished") is False:
            print("warning: the sidecar says generation did not finish; the video may lack clips.", file=sys.stderr)
        prompts = sidecar.get("prompts")
        if isinstance(prompts, list) and len(prompts) != len(script):
            print(
                f"warning: the sidecar lists {len(prompts)} prompts but the script has {len(script)} clips.",
                file=sys.stderr,
            )
    try:
        if args.video is None:
            # the ground truth scored against itself: render at the default size, as `longvid toy-render` does
            frames = render_script_clips(script, num_frames, num_condition, fps=fps, seed=args.render_seed).frames
            name = "ground truth"
        else:
            from ..evaluation.video import load_video

            frames, _ = load_video(args.video)
            name = str(args.video)
        result = evaluate_toy_video(
            frames,
            script,
            num_frames=num_frames,
            num_condition_frames=num_condition,
            fps=fps,
            seed=args.render_seed,
            window_seconds=args.window_seconds,
        )
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    paths = write_toy_eval_report(result, args.out)
    o = result.overall

    def fmt(value: float | None) -> str:
        return "–" if value is None else f"{value:.3f}"

    print(
        f"{name}: PSNR {fmt(o['psnr'])} dB, background colour error {fmt(o['background_color_error'])}, object "
        f"colour error {fmt(o['object_color_error'])}, re-entry accuracy {fmt(o['reentry_accuracy'])}, sharpness "
        f"ratio {fmt(o['sharpness_ratio'])}, HF noise {fmt(o['hf_noise'])}"
    )
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0
