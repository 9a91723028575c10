"""`longvid toy-ablate`: the paper's ablations (Tables 2-4) in miniature on the toy world, over several seeds."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "toy-ablate",
        help="Ablate the KV cache and T-RFlow on the toy world (mean ± std over seeds).",
        description=(
            "Generate random toy-world scripts with the full method and its ablations, measure them against the "
            "ground truth, and write ablation.json, ablation.md and ablation_<table>.png to --out. Results are kept "
            "per (table, variant, seed) under --out/runs and reused by a rerun with the same settings."
        ),
    )
    parser.add_argument("--model", required=True, help="A pipeline folder, or `toy` for the built-in toy preset.")
    parser.add_argument("--out", type=Path, required=True, help="Output folder.")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2], help="One random script and noise per seed."
    )
    parser.add_argument("--table", choices=["kv", "trflow", "long", "all"], default="all", help="Which ablation.")
    parser.add_argument("--num-clips", type=int, default=8, help="Clips per video of the kv and trflow tables.")
    parser.add_argument("--long-num-clips", type=int, default=40, help="Clips per video of the long table.")
    parser.add_argument("--num-frames", type=int, default=33, help="Frames per clip (4k + 1).")
    parser.add_argument("--num-condition-frames", type=int, default=5, help="Condition frames per clip (1 + 4j).")
    parser.add_argument("--num-inference-steps", type=int, default=12)
    parser.add_argument("--size", type=int, default=64, help="Frame side in pixels.")
    parser.add_argument("--guidance-scale", type=float, default=3.0)
    parser.add_argument("--max-sequence-length", type=int, default=64, help="Tokens per prompt.")
    parser.add_argument("--kv-cache-clips", type=int, default=5, help="History clips of the full method.")
    parser.add_argument("--tau-high", type=float, default=0.7, help="Upper end of the T-RFlow windows.")
    parser.add_argument(
        "--calibrated-tau-low",
        type=float,
        default=None,
        help="tau_low of the calibrated window (default: calibrate it on the model when the trflow table runs).",
    )
    parser.add_argument("--window-seconds", type=float, default=10.0, help="Length of the metric time windows.")
    parser.add_argument(
        "--evaluator",
        choices=["auto", "toy", "offline", "gt"],
        default="auto",
        help="Metrics: the toy-world evaluator (toy), ground-truth pixel errors plus offline VBench proxies and AF "
        "(offline), ground-truth pixel errors only (gt); auto = toy if installed, else offline.",
    )
    parser.add_argument(
        "--evaluate-fn",
        default=None,
        metavar="MODULE:FUNCTION",
        help="A custom `evaluate_fn(frames, sample)` (see diffusers_longvid.toy.ablate); overrides --evaluator.",
    )
    parser.add_argument(
        "--start-from-ground-truth",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Condition clip 0 on the ground truth's first condition frames (video continuation), so that object "
        "positions and colours are known at t = 0 and the mask-based metrics measure how they are kept.",
    )
    parser.add_argument("--device", default="cpu", help="Device of the pipeline (e.g. cpu, cuda).")
    parser.set_defaults(func=run)


def _command_line(args: argparse.Namespace) -> str:
    """The canonical command that reproduces this run (every option spelled out)."""
    parts = ["longvid", "toy-ablate", "--model", args.model, "--out", str(args.out), "--seeds"]
    parts += [str(s) for s in args.seeds]
    parts += ["--table", args.table, "--num-clips", str(args.num_clips), "--long-num-clips", str(args.long_num_clips)]
    parts += ["--num-frames", str(args.num_frames), "--num-condition-frames", str(args.num_condition_frames)]
    parts += ["--num-inference-steps", str(args.num_inference_steps), "--size", str(args.size)]
    parts += ["--guidance-scale", f"{args.guidance_scale:g}", "--kv-cache-clips", str(args.kv_cache_clips)]
    parts += ["--tau-high", f"{args.tau_high:g}", "--window-seconds", f"{args.window_seconds:g}"]
    parts += ["--max-sequence-length", str(args.max_sequence_length)]
    if args.calibrated_tau_low is not None:
        parts += ["--calibrated-tau-low", repr(args.calibrated_tau_low)]
    parts += ["--evaluate-fn", args.evaluate_fn] if args.evaluate_fn else ["--evaluator", args.evaluator]
    return shlex.join(parts)


def _evaluate_fn(args: argparse.Namespace):
    import importlib

    from ..toy import ablate

    if args.evaluate_fn:
        module, _, name = args.evaluate_fn.partition(":")
        if not module or not name:
            raise ValueError(f"`--evaluate-fn` must be MODULE:FUNCTION, got {args.evaluate_fn!r}.")
        return getattr(importlib.import_module(module), name)
    if args.evaluator == "toy":
        return ablate.toy_evaluate
    if args.evaluator == "offline":
        return ablate.offline_evaluate
    if args.evaluator == "gt":
        return ablate.ground_truth_evaluate
    return ablate.default_evaluate_fn()


def run(args: argparse.Namespace) -> int:
    import sys

    from ..toy.ablate import TABLES, AblationConfig, run_ablation

    try:
        config = AblationConfig(
            tables=list(TABLES) if args.table == "all" else [args.table],
            seeds=args.seeds,
            num_clips=args.num_clips,
            long_num_clips=args.long_num_clips,
            num_frames=args.num_frames,
            num_condition_frames=args.num_condition_frames,
            steps=args.num_inference_steps,
            size=args.size,
            guidance_scale=args.guidance_scale,
            kv_cache_clips=args.kv_cache_clips,
            tau_high=args.tau_high,
            calibrated_tau_low=args.calibrated_tau_low,
            window_seconds=args.window_seconds,
            max_sequence_length=args.max_sequence_length,
            start_from_ground_truth=args.start_from_ground_truth,
        )
        evaluate_fn = _evaluate_fn(args)
    except (ValueError, ImportError, AttributeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    from ..pipelines.longvideo.pipeline_longvideo_extension import LongVideoExtensionPipeline
    from ..presets import resolve_model
    from ..schedulers.scheduling_trflow import TRFlowScheduler

    try:
        model_path = resolve_model(args.model)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Loading {model_path} ...")
    try:
        pipe = LongVideoExtensionPipeline.from_pretrained(model_path)
    except (OSError, ValueError) as error:
        print(f"error: could not load a pipeline from `--model {args.model}`: {error}", file=sys.stderr)
        return 2
    if not isinstance(pipe.scheduler, TRFlowScheduler):
        # keep the checkpoint's schedule; the window is set per variant
        pipe.scheduler = TRFlowScheduler.from_config(pipe.scheduler.config, tau_low=0.0, tau_high=1.0)
    pipe.to(args.device)
    pipe.set_progress_bar_config(disable=True)

    command = _command_line(args)
    report = run_ablation(pipe, args.out, config=config, evaluate_fn=evaluate_fn, command=command, model=args.model)
    print(
        f"Wrote {args.out / 'ablation.json'}, {args.out / 'ablation.md'} and the plots "
        f"({report['reused_runs']} runs reused)."
    )
    print(f"Reproduce with: {command}")
    return 0
