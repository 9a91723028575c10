"""`longvid cost-model`: the analytic cost of Wan2.1-T2V-1.3B with the cross-clip KV cache (no torch needed)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..benchmarks.cost_model import H200_BANDWIDTH_TBPS, H200_PEAK_TFLOPS

    parser = subparsers.add_parser(
        "cost-model",
        help="Analytic FLOPs / K/V bytes / roofline lower bound per clip of Wan2.1-T2V-1.3B with the KV cache.",
        description=(
            "Analytic FLOP / K/V-bytes / roofline cost of Wan2.1-T2V-1.3B with the cross-clip KV cache, from shapes "
            "only. --markdown prints the tables of docs/performance.md."
        ),
    )
    parser.add_argument("--markdown", action="store_true", help="Print the Markdown tables of docs/performance.md.")
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=832)
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--steps", type=int, default=50, help="Denoising steps per clip (Wan's default 50).")
    parser.add_argument("--history-clips", type=int, default=5, help="k, the history clips attended (paper: 5).")
    parser.add_argument("--shift", type=float, default=3.0, help="Flow shift for the T-RFlow step count (480p: 3).")
    parser.add_argument("--peak-tflops", type=float, default=H200_PEAK_TFLOPS)
    parser.add_argument("--bandwidth-tbps", type=float, default=H200_BANDWIDTH_TBPS)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..benchmarks.cost_model import (
        _GIB,
        _TERA,
        VideoShape,
        lower_bound_time_per_clip,
        markdown_report,
        wan21_t2v_1_3b,
    )

    if args.history_clips < 1:
        raise ValueError(f"`--history-clips` must be at least 1, got {args.history_clips}.")
    if args.markdown:
        print(
            markdown_report(
                args.height,
                args.width,
                args.frames,
                args.steps,
                args.history_clips,
                args.shift,
                peak_tflops=args.peak_tflops,
                bandwidth_tbps=args.bandwidth_tbps,
            )  # fmt: skip
        )
        return 0
    clip = lower_bound_time_per_clip(
        wan21_t2v_1_3b(), VideoShape(args.height, args.width, args.frames), args.steps,
        history_clips=args.history_clips, peak_tflops=args.peak_tflops, bandwidth_tbps=args.bandwidth_tbps,
    )  # fmt: skip
    print(
        f"lower bound per clip: {clip.seconds:.1f} s ({clip.bound}-bound), {clip.flops.total / _TERA:,.0f} TFLOP, "
        f"{clip.kv_bytes_held / _GIB:.1f} GiB K/V held; pass --markdown for the tables"
    )
    return 0
