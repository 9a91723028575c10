"""`longvid toy-render`: render a toy-world script (or a random one) to an mp4."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "toy-render",
        help="Render a toy-world script (JSON) or a random script to an mp4.",
        description=(
            "Render the ground truth of a toy-world script. With --random N a random N-clip script is generated "
            "(seeded by --seed) and written next to the video as <out>.json."
        ),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--script", type=Path, help="Script JSON file (a list of clips).")
    source.add_argument("--random", type=int, metavar="N", help="Generate a random script of N clips.")
    parser.add_argument("--out", type=Path, required=True, help="Output .mp4 path.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the random script and of the render.")
    parser.add_argument("--num-objects", type=int, default=2, help="Objects in a random script.")
    parser.add_argument("--fps", type=int, default=16)
    parser.add_argument("--size", type=int, default=64, help="Frame side in pixels.")
    parser.add_argument("--clip-seconds", type=float, default=2.0, help="Length of a clip without a `duration`.")
    parser.add_argument(
        "--num-frames",
        type=int,
        default=None,
        help="Render clip-aligned like the extension pipeline: F frames per clip (needs --condition-frames).",
    )
    parser.add_argument("--condition-frames", type=int, default=None, help="k condition frames per clip.")
    parser.add_argument("--upscale", type=int, default=1, help="Nearest-neighbour upscaling of the written video.")
    parser.add_argument(
        "--metadata", action="store_true", help="Also write the per-frame ground truth as <out>.meta.json."
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    import numpy as np

    from ..toy import load_script, random_script, render_script, render_script_clips, save_script
    from ..utils import require

    if (args.num_frames is None) != (args.condition_frames is None):
        raise SystemExit("error: --num-frames and --condition-frames go together.")
    if args.upscale < 1:
        raise SystemExit("error: --upscale must be >= 1.")
    if args.random is not None:
        script = random_script(args.random, seed=args.seed, num_objects=args.num_objects)
    else:
        script = load_script(args.script)
    if args.num_frames is not None:
        video = render_script_clips(
            script, args.num_frames, args.condition_frames, fps=args.fps, size=args.size, seed=args.seed
        )
    else:
        video = render_script(script, fps=args.fps, size=args.size, clip_seconds=args.clip_seconds, seed=args.seed)
    imageio = require("imageio", "Writing videos")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frames = video.frames
    if args.upscale > 1:
        frames = np.repeat(np.repeat(frames, args.upscale, axis=1), args.upscale, axis=2)
    imageio.mimwrite(args.out, list(frames), fps=args.fps, codec="libx264", quality=9, macro_block_size=1)
    seconds = video.num_frames / args.fps
    print(f"wrote {args.out} ({video.num_frames} frames, {seconds:.1f} s, {video.num_clips} clips)")
    if args.random is not None:
        script_path = args.out.with_suffix(".json")
        save_script(script, script_path)
        print(f"wrote {script_path}")
    if args.metadata:
        meta_path = args.out.with_suffix(".meta.json")
        meta_path.write_text(json.dumps(video.metadata()) + "\n", encoding="utf-8")
        print(f"wrote {meta_path}")
    return 0
