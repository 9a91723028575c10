"""`longvid train-toy-vae`: train (or resume training) the toy world's `AutoencoderKLWan`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


# option -> field of `ToyVAETrainingConfig`; an option left out keeps the recipe's default (see docs/toy.md).
_FIELDS: dict[str, tuple[type, str]] = {
    "steps": (int, "Total optimisation steps, single-frame ones included."),
    "stop_at": (int, "Stop (with a checkpoint) at this step, keeping the schedule of --steps."),
    "image_steps": (int, "Leading single-frame steps (the causal first-frame path)."),
    "image_batch_size": (int, "Frames per single-frame step."),
    "batch_size": (int, "Clips per video step."),
    "num_frames": (int, "Frames per training clip (1 + 4n)."),
    "learning_rate": (float, "Peak AdamW learning rate."),
    "warmup_steps": (int, "Linear warm-up steps."),
    "kl_weight": (float, "Weight of the KL term (per latent element)."),
    "l1_weight": (float, "Weight of the L1 reconstruction loss."),
    "mse_weight": (float, "Weight of the MSE reconstruction loss."),
    "seed": (int, "Seed of the initialisation and of every step's data."),
    "size": (int, "Frame side in pixels (a multiple of 8)."),
    "max_objects": (int, "At most this many objects per training clip."),
    "eval_clips": (int, "Clips in the held-out set."),
    "eval_frames": (int, "Frames per held-out clip (1 + 4n)."),
    "eval_every": (int, "Evaluate the held-out PSNR every this many steps."),
    "log_every": (int, "Log the training loss every this many steps."),
    "checkpoint_every": (int, "Checkpoint every this many steps."),
    "checkpoint_minutes": (float, "Also checkpoint when this many minutes passed since the last save (0: off)."),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train-toy-vae",
        help="Train the toy world's AutoencoderKLWan, with checkpoints, resume and a held-out PSNR curve.",
        description=(
            "Train the toy VAE (a narrow AutoencoderKLWan, 8x spatial / 4x temporal, 16 latent channels) on freshly "
            "rendered toy clips. Checkpoints go to OUT/checkpoint-*, the latest weights (with latents_mean / "
            "latents_std measured on toy data) to OUT/vae, the loss and PSNR curve to OUT/metrics.jsonl. Options "
            "left out keep the recipe's defaults (`ToyVAETrainingConfig`)."
        ),
    )
    parser.add_argument("--out", type=Path, required=True, help="Output folder.")
    resume = parser.add_mutually_exclusive_group()
    resume.add_argument(
        "--resume",
        dest="resume",
        action="store_true",
        default=True,
        help="Continue from the latest checkpoint in --out (the default).",
    )
    resume.add_argument("--no-resume", dest="resume", action="store_false", help="Start from scratch.")
    for name, (kind, text) in _FIELDS.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None, dest=name, help=text)
    parser.add_argument("--lr-schedule", choices=["constant", "cosine"], default=None, help="After the warm-up.")
    posterior = parser.add_mutually_exclusive_group()
    posterior.add_argument(
        "--sample-posterior",
        dest="sample_posterior",
        action="store_true",
        default=None,
        help="Decode posterior samples.",
    )
    posterior.add_argument(
        "--mode-posterior", dest="sample_posterior", action="store_false", help="Decode the posterior mode."
    )
    parser.add_argument(
        "--decoder-only",
        action="store_true",
        default=None,
        dest="decoder_only",
        help="Freeze the encoder and train the decoder only: latents (and caches of them) stay valid.",
    )
    parser.add_argument("--base-dim", type=int, default=None, help="Override the VAE's base width.")
    parser.add_argument("--num-threads", type=int, default=1, help="torch CPU threads (default 1).")
    parser.add_argument(
        "--init-from",
        type=Path,
        default=None,
        help="Warm start from a saved toy VAE folder (e.g. the preset's vae/) when --out has no checkpoint yet.",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..toy.vae import train_toy_vae

    torch.set_num_threads(args.num_threads)
    overrides = {name: getattr(args, name) for name in (*_FIELDS, "lr_schedule", "sample_posterior", "decoder_only")}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if args.base_dim is not None:
        overrides["model"] = {"base_dim": args.base_dim}
    result = train_toy_vae(args.out, resume=args.resume, init_from=args.init_from, **overrides)
    print(json.dumps(result, indent=1))
    return 0
