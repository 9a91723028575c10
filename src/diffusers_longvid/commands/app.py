# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""`longvid app`: the Gradio web app (script editor, streamed generation, the memory, downloads); see docs/app.md."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "app",
        help="A web app (Gradio) to write a script clip by clip and watch the long video being generated.",
        description=(
            "Start the Gradio web app: a script editor (one row per clip, toy scripts with their comeback prompts), "
            "the model's settings, generation that streams each finished clip into the page with Stop and Resume, "
            "which earlier clips each clip attended (the KV plan) and, for the toy, a side by side with no KV "
            "cache on the same noise; downloads of the mp4, its JSON sidecar and the script. Works offline on the "
            'built-in toy preset. Needs `pip install "diffusers-longvid[app]"`.'
        ),
    )
    parser.add_argument(
        "--model", default="toy", help="The model the page starts with: `toy`, a pipeline folder or a Hub id."
    )
    parser.add_argument("--host", default="127.0.0.1", help="Address to listen on (`0.0.0.0`: every interface).")
    parser.add_argument("--port", type=int, default=None, help="Port (default: 7860, or the next free one).")
    parser.add_argument("--share", action="store_true", help="Also open a public Gradio link (needs the internet).")
    parser.add_argument(
        "--jobs-dir",
        type=Path,
        default=None,
        help="Folder of the per-session job folders (default: longvid_app_jobs in the system's temporary folder).",
    )
    parser.add_argument("--max-clips", type=int, default=200, help="Most clips of one script.")
    parser.add_argument("--device", default="auto", help="`auto` (cuda if available), `cpu`, `cuda`, `cuda:1`, ...")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.max_clips < 1:
        print(f"error: `--max-clips` must be >= 1, got {args.max_clips}.", file=sys.stderr)
        return 2
    try:
        from ..app.ui import import_gradio, launch_app

        import_gradio()
    except ImportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    launch_app(
        model=args.model,
        host=args.host,
        port=args.port,
        share=args.share,
        jobs_dir=args.jobs_dir,
        max_clips=args.max_clips,
        device=args.device,
    )
    return 0
