# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""`longvid eval`: VBench-style evaluation of a video or a folder of videos, per time window, with AF."""

from __future__ import annotations

import argparse
import sys


_DIMENSIONS = (
    "subject_consistency",
    "background_consistency",
    "motion_smoothness",
    "dynamic_degree",
    "aesthetic_quality",
    "imaging_quality",
)
_DTYPES = ("float32", "bfloat16", "float16")


def seconds(text: str) -> float | None:
    """A duration in seconds, or `None` for 'none' (argparse names this function in its error messages)."""
    return None if text.lower() == "none" else float(text)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="VBench-style scores of a video or folder (six dimensions per time window, slopes, AF) as JSON, "
        "Markdown and PNG.",
        description=(
            "Score a video (or every video file directly inside a folder) on the six VBench dimensions of the "
            "paper's Table 1 (subject and background consistency, motion smoothness, dynamic degree, aesthetic and "
            "imaging quality), per time window, with the least-squares slope of every metric per minute (error "
            "accumulation) and the paper's AF. Writes OUT/eval_results.json, OUT/eval_report.md and "
            "OUT/eval_windows.png. The offline backend needs no weights but gives proxies that are NOT comparable "
            "to published VBench numbers; the reference backend loads VBench's models (DINO, CLIP, LAION aesthetic "
            "head) from Hub ids or local folders. See docs/evaluation.md."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("video", metavar="VIDEO_OR_FOLDER", help="A video file, or a folder of video files.")
    parser.add_argument("--out", required=True, help="Report folder (created if needed).")
    parser.add_argument(
        "--backend",
        choices=("offline", "reference"),
        default="offline",
        help="'offline': classical proxies, no weights. 'reference': VBench's models through transformers.",
    )
    parser.add_argument(
        "--window-seconds",
        type=seconds,
        default=30.0,
        help="Length of the error-accumulation windows in seconds; 'none' for one window.",
    )
    parser.add_argument(
        "--clip-seconds",
        type=seconds,
        default=2.0,
        help="Length of VBench-Long's clips inside a window; 'none' scores each window as one clip.",
    )
    parser.add_argument("--fps", type=float, default=None, help="Override the frame rate read from the file.")
    parser.add_argument(
        "--dimensions",
        nargs="+",
        choices=_DIMENSIONS,
        default=None,
        metavar="DIM",
        help=f"Evaluate only these dimensions (default: all). Choices: {', '.join(_DIMENSIONS)}.",
    )
    parser.add_argument("--no-af", action="store_true", help="Do not compute AF, the average frequency.")
    parser.add_argument("--no-progress", action="store_true", help="Hide the progress bar.")
    parser.add_argument(
        "--flow-method",
        choices=("dis", "farneback"),
        default="dis",
        help="OpenCV optical flow for the motion dimensions.",
    )
    parser.add_argument(
        "--flow-preset", choices=("ultrafast", "fast", "medium"), default="medium", help="DIS optical-flow preset."
    )
    parser.add_argument(
        "--flow-max-short-side",
        type=int,
        default=256,
        help="Compute flow at this short side at most (0: full resolution).",
    )
    parser.add_argument("--batch-size", type=int, default=None, help="Frames per batch (offline 64, reference 16).")

    reference = parser.add_argument_group("reference backend (model ids or local folders)")
    reference.add_argument(
        "--subject-model", default="facebook/dino-vitb16", help="DINO ViT-B/16 for subject consistency."
    )
    reference.add_argument(
        "--background-model", default="openai/clip-vit-base-patch32", help="CLIP for background consistency."
    )
    reference.add_argument(
        "--aesthetic-clip-model",
        default="openai/clip-vit-large-patch14",
        help="CLIP ViT-L/14 under the LAION aesthetic head.",
    )
    reference.add_argument(
        "--aesthetic-head",
        default=None,
        help="Path of the LAION aesthetic head sa_0_4_vit_l_14_linear.pth (required for aesthetic_quality).",
    )
    reference.add_argument(
        "--imaging-model",
        default=None,
        help="MUSIQ module file, torch.export (.pt2) or TorchScript (RGB in [0, 1] -> MOS in [0, 100]); without it "
        "imaging quality is CLIP-IQA.",
    )
    reference.add_argument(
        "--iqa-clip-model", default=None, help="CLIP (with tokenizer) for CLIP-IQA; defaults to --background-model."
    )
    reference.add_argument(
        "--device", default=None, help="Device of the models (default: cuda if available, else cpu)."
    )
    reference.add_argument("--dtype", choices=_DTYPES, default="float32", help="Model dtype.")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    if not Path(args.video).exists():
        print(f"longvid eval: error: {args.video!r} does not exist.", file=sys.stderr)
        return 2
    if args.flow_max_short_side is not None and args.flow_max_short_side < 0:
        print("longvid eval: error: --flow-max-short-side must be >= 0.", file=sys.stderr)
        return 2

    import torch

    from ..evaluation import evaluate_video, write_eval_report
    from ..evaluation.reference import MissingEvaluationWeightsError

    backend_kwargs: dict = {
        "flow_method": args.flow_method,
        "flow_preset": args.flow_preset,
        "flow_max_short_side": args.flow_max_short_side or None,
    }
    if args.batch_size is not None:
        backend_kwargs["batch_size"] = args.batch_size
    if args.backend == "reference":
        backend_kwargs.update(
            subject_model=args.subject_model,
            background_model=args.background_model,
            aesthetic_clip_model=args.aesthetic_clip_model,
            aesthetic_head=args.aesthetic_head,
            imaging_model=args.imaging_model,
            iqa_clip_model=args.iqa_clip_model,
            device=args.device or ("cuda" if torch.cuda.is_available() else "cpu"),
            torch_dtype=getattr(torch, args.dtype),
        )
    try:
        result = evaluate_video(
            args.video,
            backend=args.backend,
            window_seconds=args.window_seconds,
            clip_seconds=args.clip_seconds,
            fps=args.fps,
            dimensions=args.dimensions,
            compute_af=not args.no_af,
            backend_kwargs=backend_kwargs,
            show_progress=not args.no_progress,
        )
    except (ValueError, TypeError, MissingEvaluationWeightsError, FileNotFoundError) as error:
        print(f"longvid eval: error: {error}", file=sys.stderr)
        return 2

    paths = write_eval_report(result, args.out)
    metrics = result.metrics
    rows = result.videos.values() if hasattr(result, "videos") else [result]
    print(f"{'video':<28}" + "".join(f"{m[:12]:>14}" for m in metrics))
    for row in rows:
        print(f"{row.name[:28]:<28}" + "".join(f"{_cell(row.scores.get(m)):>14}" for m in metrics))
    for name, reason in getattr(result, "skipped", {}).items():
        print(f"skipped {name}: {reason}")
    if result.proxies:
        print("Offline proxies: NOT comparable to published VBench numbers.")
    print("Written: " + ", ".join(str(p) for p in paths.values()))
    return 0


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
