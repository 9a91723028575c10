# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""`longvid decompose`: draw the per-step clean estimates of one sampling run (the paper's Figure 2).

Also home of the pipeline-loading arguments shared with `longvid calibrate-trflow`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows `(default: X)` after each help, except for flags without a meaningful default (None / False)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def add_pipeline_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments that load a pipeline and set up its call (shared by the T-RFlow commands)."""
    group = parser.add_argument_group("pipeline")
    group.add_argument(
        "--model",
        required=True,
        help="Folder or Hub id of a diffusers Wan-style pipeline (loaded with `DiffusionPipeline.from_pretrained`), "
        "e.g. Wan-AI/Wan2.1-T2V-1.3B-Diffusers. Its scheduler must be flow matching (FlowMatchEuler, TRFlow, or "
        "the flow UniPC of the Wan checkpoints, whose flow_shift is used).",
    )
    group.add_argument(
        "--device",
        default="auto",
        help="Device to run on: auto (cuda, then mps, then cpu), cuda, cuda:1, mps or cpu.",
    )
    group.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16", "float16"],
        help="Weights dtype of the pipeline (the VAE always runs in float32, as diffusers recommends for Wan). "
        "auto: bfloat16 on CUDA, float32 elsewhere.",
    )
    group.add_argument(
        "--cpu-offload",
        action="store_true",
        help="Use `enable_model_cpu_offload()` instead of moving the whole pipeline to the device.",
    )
    group.add_argument("--negative-prompt", default=None, help="Negative prompt (default: the pipeline's own).")
    group.add_argument("--height", type=int, default=480, help="Frame height in pixels.")
    group.add_argument("--width", type=int, default=832, help="Frame width in pixels.")
    group.add_argument("--num-frames", type=int, default=81, help="Frames per video (4k + 1).")
    group.add_argument("--num-inference-steps", type=int, default=50, help="Steps of the full sampling schedule.")
    group.add_argument("--guidance-scale", type=float, default=5.0, help="Classifier-free guidance scale.")
    group.add_argument("--max-sequence-length", type=int, default=512, help="Maximum prompt length in tokens.")


def load_pipeline(args: argparse.Namespace) -> Any:
    """Load `args.model` on `args.device` with `args.dtype` (VAE in float32), progress bars on."""
    import torch
    from diffusers import DiffusionPipeline
    from diffusers.utils import deprecation_utils

    device = args.device
    if device == "auto":
        if torch.cuda.is_available():
            device = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            device = "mps"
        else:
            device = "cpu"
    dtype_name = args.dtype
    if dtype_name == "auto":
        dtype_name = "bfloat16" if torch.device(device).type == "cuda" else "float32"
    # the VAE stays in float32, as diffusers recommends for Wan (and AF is measured on its output)
    dtypes = {"default": getattr(torch, dtype_name), "vae": torch.float32}
    # recent diffusers renamed `torch_dtype` to `dtype` (and deprecate the old name)
    dtype_key = "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"
    pipe = DiffusionPipeline.from_pretrained(args.model, **{dtype_key: dtypes})
    if args.cpu_offload:
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    return pipe


def pipeline_call_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The pipeline call arguments given on the command line."""
    kwargs = {
        "height": args.height,
        "width": args.width,
        "num_frames": args.num_frames,
        "num_inference_steps": args.num_inference_steps,
        "guidance_scale": args.guidance_scale,
        "max_sequence_length": args.max_sequence_length,
    }
    if args.negative_prompt is not None:
        kwargs["negative_prompt"] = args.negative_prompt
    return kwargs


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "decompose",
        help="Decode every denoising step's clean estimate of one run into a PNG grid (paper Figure 2).",
        description="Run the pipeline once over its full schedule (plain Euler), decode the clean estimate "
        "x~_i = x_start - sigma_0 * v_i of every step and write a grid: one row per step, labelled with sigma, "
        "t = 1 - sigma and the T-RFlow weight under [--tau-low, --tau-high]; rows inside the window are framed. "
        "The last rows show the Euler output and the T-RFlow output of that window.",
        formatter_class=HelpFormatter,
    )
    add_pipeline_arguments(parser)
    parser.add_argument("--prompt", required=True, help="The text prompt.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the CPU generator of the initial noise.")
    parser.add_argument(
        "--tau-low", type=float, default=0.3, help="Start of the T-RFlow window (0 = pure noise, 1 = clean)."
    )
    parser.add_argument("--tau-high", type=float, default=0.7, help="End of the T-RFlow window.")
    parser.add_argument("--frames-per-row", type=int, default=4, help="Frames shown per step (evenly spaced).")
    parser.add_argument("--tile-height", type=int, default=128, help="Height of each frame in the grid, in pixels.")
    parser.add_argument(
        "--save-estimates",
        default=None,
        metavar="PATH",
        help="Also save the estimates (sigmas, weights, latents) with `torch.save` to PATH.",
    )
    parser.add_argument("--out", required=True, help="Path of the PNG grid to write.")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..decomposition import (
        decode_estimates,
        decode_latents,
        decompose_trajectory,
        ensemble_estimates,
        save_decomposition_grid,
        window_weights,
    )
    from ..schedulers.scheduling_trflow import TRFlowScheduler

    # fail on bad arguments before loading anything
    try:
        TRFlowScheduler._validate_window(args.tau_low, args.tau_high)
    except ValueError as error:
        print(f"longvid decompose: error: {error}", file=sys.stderr)
        return 2
    if not args.out.lower().endswith(".png"):
        print(f"longvid decompose: error: --out must be a .png path, got {args.out!r}.", file=sys.stderr)
        return 2

    pipe = load_pipeline(args)
    generator = torch.Generator("cpu").manual_seed(args.seed)
    estimates = decompose_trajectory(
        pipe,
        args.prompt,
        tau_low=args.tau_low,
        tau_high=args.tau_high,
        generator=generator,
        **pipeline_call_kwargs(args),
    )
    frames = decode_estimates(pipe, estimates)
    extra_rows = {
        "Euler [0, 1]": decode_latents(pipe, ensemble_estimates(estimates, window_weights(estimates, 0.0, 1.0))),
        f"T-RFlow [{args.tau_low:g}, {args.tau_high:g}]": decode_latents(pipe, ensemble_estimates(estimates)),
    }
    path = save_decomposition_grid(
        frames,
        [e.sigma for e in estimates],
        [e.weight for e in estimates],
        args.out,
        frames_per_row=args.frames_per_row,
        tile_height=args.tile_height,
        extra_rows=extra_rows,
        title=f"{args.prompt[:80]} | seed {args.seed} | T-RFlow window [{args.tau_low:g}, {args.tau_high:g}]",
    )
    if args.save_estimates:
        torch.save(
            {
                "sigmas": [e.sigma for e in estimates],
                "weights": [e.weight for e in estimates],
                "x_estimates": torch.stack([e.x_estimate for e in estimates]),
                "tau_low": args.tau_low,
                "tau_high": args.tau_high,
            },
            args.save_estimates,
        )
        print(f"Saved the estimates to {args.save_estimates}")
    print(f"Saved the decomposition of {len(estimates)} steps to {path}")
    return 0
