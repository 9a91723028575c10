# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""`longvid calibrate-trflow`: choose T-RFlow's `tau_low` by matching the average frequency of plain Euler."""

from __future__ import annotations

import argparse
import json
import os
import sys

from .decompose import HelpFormatter, add_pipeline_arguments, load_pipeline, pipeline_call_kwargs


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "calibrate-trflow",
        help="Find the T-RFlow tau_low whose videos match the average frequency (AF) of the untruncated sampler.",
        description="With --tau-high fixed, search tau_low so that the mean AF of the videos made with the window "
        "[tau_low, tau_high] equals the mean AF of the videos made with [0, 1] (same prompts and seeds). The model "
        "runs once per (prompt, seed); every candidate only costs VAE decodes. Writes a JSON with the chosen "
        "tau_low, the target AF, the AF reached and the search trace.",
        formatter_class=HelpFormatter,
    )
    add_pipeline_arguments(parser)
    parser.add_argument("--prompt", required=True, nargs="+", help="One or more prompts (quote each one).")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="Seeds; every prompt runs with every seed.")
    parser.add_argument("--tau-high", type=float, default=0.7, help="The fixed end of the window (1 = clean).")
    parser.add_argument(
        "--search",
        type=float,
        nargs=2,
        default=None,
        metavar=("LOW", "HIGH"),
        help="Interval of tau_low to search (default: 0 to tau_high - 0.01).",
    )
    parser.add_argument("--tol", type=float, default=1e-3, help="Accepted absolute AF difference.")
    parser.add_argument("--max-iter", type=int, default=12, help="Bisection steps at most.")
    parser.add_argument(
        "--grid-size", type=int, default=9, help="Points of the grid scanned when the search ends do not bracket."
    )
    parser.add_argument(
        "--color-af",
        action="store_true",
        help="Measure AF on every RGB channel (averaged) instead of on luma.",
    )
    parser.add_argument("--out", required=True, help="Path of the JSON result to write.")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..schedulers.calibration import _validate, calibrate_tau_low

    # fail on bad arguments before loading anything
    try:
        _validate(args.prompt, args.seeds, args.tau_high, args.search, args.tol, args.max_iter, args.grid_size)
    except (TypeError, ValueError) as error:
        print(f"longvid calibrate-trflow: error: {error}", file=sys.stderr)
        return 2

    pipe = load_pipeline(args)
    result = calibrate_tau_low(
        pipe,
        args.prompt,
        seeds=args.seeds,
        tau_high=args.tau_high,
        search=tuple(args.search) if args.search else None,
        tol=args.tol,
        max_iter=args.max_iter,
        grid_size=args.grid_size,
        grayscale=not args.color_af,
        **pipeline_call_kwargs(args),
    )
    data = {
        **result.to_dict(),
        "model": args.model,
        "prompts": args.prompt,
        "seeds": args.seeds,
        "pipeline_kwargs": pipeline_call_kwargs(args),
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2)

    print(f"{'tau_low':>10}  {'AF':>10}  {'AF - target':>12}")
    for tau_low, af in sorted(result.trace):
        marker = "  <- chosen" if tau_low == result.tau_low else ""
        print(f"{tau_low:10.5f}  {af:10.6f}  {af - result.target_af:+12.6f}{marker}")
    status = "matched" if result.converged else f"not matched within --tol {args.tol}; closest"
    print(
        f"Target AF (window [0, 1]): {result.target_af:.6f}. tau_low = {result.tau_low:.5f} ({status}), "
        f"window [{result.tau_low:.4f}, {result.tau_high:.4f}] holds {result.num_steps_in_window} steps. "
        f"Written to {args.out}"
    )
    return 0
