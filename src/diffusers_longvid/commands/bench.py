# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""`longvid bench`: per-clip cost of ours against plain chaining, full history, sparse history and SkyReels-V2.

Writes `bench_results.json`, `bench_report.md` and PNG plots to `--out`; with `--optimisations` also
`optimisations.json` (the part-3 studies of the KV path). See `docs/performance.md`.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints, got {text!r}") from None


def _name_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="Benchmark the per-clip cost of the KV cache against the alternatives (JSON, Markdown, PNG).",
        description=(
            "Generate the same long video with ours (k selected history clips), plain chaining, full history, "
            "sparse history and T-RFlow, clip by clip in lockstep (one worker process per run), plus diffusers' "
            "SkyReels-V2 diffusion forcing on a transformer of the same size; report per-clip time, model calls, "
            "K/V bytes and RSS, and the ratios. The tiny model has random weights: timing only."
        ),
    )
    parser.add_argument("--out", type=Path, required=True, help="Folder for the JSON, Markdown and PNG files.")
    parser.add_argument(
        "--model",
        default="tiny",
        help="`tiny` (random: 4 layers, 4 heads x 32, ffn 256, 36 input channels), `attention` (random: 2 layers, 4 "
        "heads x 64, ffn 512, patch 1x1x1: attention FLOPs dominate; use --height 128 --width 128), `toy` (the toy "
        "preset) or a local pipeline folder.",
    )
    parser.add_argument("--num-clips", type=int, default=30, help="Clips per long-video run (>= 2).")
    parser.add_argument(
        "--history-pool",
        type=lambda text: tuple(int(v) for v in text.split(",")),
        default=(2, 2, 2),
        help="`history_pool` (t,h,w) of `ours_compressed` (default 2,2,2).",
    )
    parser.add_argument(
        "--history-keep-ratio",
        type=float,
        default=1.0,
        help="Below 1: `ours_compressed` keeps this share of each history clip's tokens (token selection, "
        "`history_keep_ratio`) instead of pooling with --history-pool.",
    )
    parser.add_argument(
        "--constant-cost-tolerance", type=float, default=1.15, help="Target of the constant-cost checks."
    )
    parser.add_argument(
        "--prediction-tolerance",
        type=float,
        default=0.15,
        help="Allowed relative gap between measured and predicted ratios over plain chaining.",
    )
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--num-frames", type=int, default=33, help="Frames per clip (4k+1).")
    parser.add_argument("--num-condition-frames", type=int, default=5, help="Frames conditioning the next clip.")
    parser.add_argument("--num-inference-steps", type=int, default=8, help="Steps of every run's schedule.")
    parser.add_argument("--guidance-scale", type=float, default=5.0)
    parser.add_argument("--kv-cache-clips", type=int, default=5, help="History clips of `ours` (paper: 5).")
    parser.add_argument("--full-history-clips", type=int, default=10_000, help="`kv_cache_clips` of `full_history`.")
    parser.add_argument("--history-frame-stride", type=int, default=2, help="Frame stride of `ours_sparse`.")
    parser.add_argument("--selector", default="recent", choices=("recent", "prompt"))
    parser.add_argument("--tau-low", type=float, default=0.3, help="T-RFlow window of `ours_trflow`.")
    parser.add_argument("--tau-high", type=float, default=0.7)
    parser.add_argument(
        "--skyreels-ar-steps",
        type=_int_list,
        default=[0, 2],
        help="One SkyReels-V2 run per value (0 = synchronous); empty string = none.",
    )
    parser.add_argument("--runs", type=_name_list, default=None, help="Comma-separated subset of the runs.")
    parser.add_argument(
        "--schedule",
        default="interleaved",
        choices=("interleaved", "sequential", "inline"),
        help="interleaved: a worker per run, clips in lockstep (default); sequential: one run after another (big "
        "models); inline: no worker processes.",
    )
    parser.add_argument("--warmup-clips", type=int, default=None, help="Default: --kv-cache-clips.")
    parser.add_argument("--window", type=int, default=5, help="Clips averaged at the start and end (constancy).")
    parser.add_argument("--prompts-file", type=Path, default=None, help="One prompt per line (cycled).")
    parser.add_argument("--max-sequence-length", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker.")
    parser.add_argument(
        "--optimisations",
        action="store_true",
        help="Also run the part-3 studies of the KV path (history buffer, fused QKV, batched CFG, torch.compile).",
    )
    parser.add_argument(
        "--only-optimisations",
        action="store_true",
        help="Run only the part-3 studies (their predictions use the fit of OUT/bench_results.json when present).",
    )
    parser.add_argument("--no-compile", action="store_true", help="Skip the torch.compile study (the slowest).")
    parser.add_argument("--repeats", type=int, default=20, help="Timed rounds per optimisation comparison.")
    parser.add_argument("--strict", action="store_true", help="Exit with 1 when a check of the report fails.")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def _read_prompts(path: Path | None) -> list[str] | None:
    if path is None:
        return None
    if not path.is_file():
        raise ValueError(f"`--prompts-file` {str(path)!r} does not exist.")
    prompts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    prompts = [p for p in prompts if p and not p.startswith("#")]
    if not prompts:
        raise ValueError(f"`--prompts-file` {str(path)!r} holds no prompt.")
    return prompts


def run(args: argparse.Namespace) -> int:
    from ..benchmarks.runner import BenchSettings

    command = "longvid " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    try:
        settings = BenchSettings(
            model=args.model,
            num_clips=args.num_clips,
            height=args.height,
            width=args.width,
            num_frames=args.num_frames,
            num_condition_frames=args.num_condition_frames,
            num_inference_steps=args.num_inference_steps,
            guidance_scale=args.guidance_scale,
            kv_cache_clips=args.kv_cache_clips,
            full_history_clips=args.full_history_clips,
            history_frame_stride=args.history_frame_stride,
            selector=args.selector,
            tau_low=args.tau_low,
            tau_high=args.tau_high,
            skyreels_ar_steps=args.skyreels_ar_steps,
            max_sequence_length=args.max_sequence_length,
            prompts=_read_prompts(args.prompts_file),
            runs=args.runs,
            schedule=args.schedule,
            warmup_clips=args.warmup_clips,
            window=args.window,
            seed=args.seed,
            device=args.device,
            dtype=args.dtype,
            num_threads=args.threads,
            history_pool=args.history_pool if args.history_keep_ratio == 1 else (1, 1, 1),
            history_keep_ratio=args.history_keep_ratio,
            constant_cost_tolerance=args.constant_cost_tolerance,
            prediction_tolerance=args.prediction_tolerance,
        )
        if args.repeats < 1:
            raise ValueError(f"`--repeats` must be >= 1, got {args.repeats}.")
        if args.model == "toy":
            from ..presets import get_preset_path

            try:
                get_preset_path("toy")
            except FileNotFoundError as error:
                raise ValueError(f"`--model toy`: {error}") from error
        elif args.model not in ("tiny", "attention") and not (Path(args.model) / "model_index.json").is_file():
            raise ValueError(
                f"`--model` must be 'tiny', 'attention', 'toy' or a local pipeline folder, got {args.model!r}."
            )
    except (ValueError, TypeError) as error:
        print(f"longvid bench: error: {error}", file=sys.stderr)
        return 2

    args.out.mkdir(parents=True, exist_ok=True)
    if settings.schedule == "inline" or args.optimisations or args.only_optimisations:
        import torch

        torch.set_num_threads(args.threads)  # worker processes set their own
    failed = False
    fit = None
    if not args.only_optimisations:
        from ..benchmarks.report import write_report
        from ..benchmarks.runner import run_benchmark

        result = run_benchmark(settings, progress=not args.no_progress)
        paths = write_report(result, args.out, command=command)
        checks = result["analysis"]["checks"]
        fit = result["analysis"].get("affine_fit")
        for name, check in checks.items():
            if "passed" in check:
                status = {True: "PASS", False: "FAIL", None: "N/A "}[check["passed"]]  # N/A: too few clips
                print(f"{status}  {name}: {check['value']} (target {check['target']})")
                failed |= check["passed"] is False
        for name, row in checks.get("prediction_agreement", {}).get("runs", {}).items():
            print(
                f"{name} / no cache: measured {row['measured_transformer']:.3f}x transformer, predicted "
                f"{row['predicted_flop_ratio']:.3f}x (FLOPs), gap {row['relative_gap']:+.3f}"
            )
        overhead = checks.get("ours_overhead_vs_prediction")
        if overhead and overhead["measured_clip"] is not None:  # needs the `no_cache` run
            print(
                f"ours / no cache ({overhead['clock']} time): {overhead['measured_clip']:.3f}x per clip, "
                f"{overhead['measured_transformer']:.3f}x transformer; predicted "
                f"{overhead['predicted_history_overhead_ratio']:.3f}x (FLOPs)"
            )
        for path in paths.values():
            print(path)
    if args.optimisations or args.only_optimisations:
        from ..benchmarks.optimisations import run_optimisation_study
        from ..benchmarks.report import BENCH_FILES

        previous = args.out / BENCH_FILES["json"]
        if fit is None and previous.is_file():
            fit = json.loads(previous.read_text(encoding="utf-8")).get("analysis", {}).get("affine_fit")

        studies = ("history_buffer", "fused_qkv", "batched_cfg") + (() if args.no_compile else ("compile",))
        study = run_optimisation_study(
            settings, repeats=args.repeats, studies=studies, progress=not args.no_progress, fit=fit
        )
        path = args.out / "optimisations.json"
        path.write_text(json.dumps(dict(study, command=command), indent=2, default=str), encoding="utf-8")
        print(path)
    return 1 if (args.strict and failed) else 0
