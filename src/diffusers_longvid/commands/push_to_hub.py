# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""`longvid push-to-hub`: write a Hub-ready folder (weights, configs, model card, sample, eval table) and upload it."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "push-to-hub",
        help="Publish a K/V LoRA or an extension pipeline to the Hugging Face Hub, with a model card.",
        description=(
            "Write a Hub-ready folder — diffusers LoRA weights (pytorch_lora_weights.safetensors) and/or a complete "
            "LongVideoExtensionPipeline folder, training_info.json, a README.md model card with YAML metadata "
            "(library diffusers, base model, pipeline tag text-to-video, license, tags), a sample video and the "
            "`longvid eval` table — and upload it with huggingface_hub (create_repo + upload_folder). The folder "
            "loads exactly as the Hub id will: LongVideoExtensionPipeline.from_pretrained(folder) or "
            "pipe.load_lora_weights(folder). The token comes from --token, HF_TOKEN or the cached `hf auth login`."
        ),
    )
    parser.add_argument("--repo-id", required=True, help="The Hub repository, USER/NAME (created if missing).")
    parser.add_argument(
        "--lora",
        type=Path,
        default=None,
        help="Folder with pytorch_lora_weights.safetensors (e.g. runs/causal_lora/final) or the file itself.",
    )
    parser.add_argument(
        "--pipeline",
        type=Path,
        default=None,
        help="A LongVideoExtensionPipeline folder (e.g. runs/extension/final from train-extension --save-pipeline).",
    )
    parser.add_argument(
        "--base-model",
        default=None,
        help="The card's base_model: the pipeline a LoRA applies to, or the model a pipeline was fine-tuned from "
        "(default: training_info.json's base_model if it is a Hub id, else Wan-AI/Wan2.1-T2V-1.3B-Diffusers).",
    )
    parser.add_argument(
        "--sample-video",
        type=Path,
        default=None,
        help="A video (mp4) shown on the card; a `longvid generate` sidecar VIDEO.json next to it adds its script.",
    )
    parser.add_argument("--eval-results", type=Path, default=None, help="eval_results.json written by `longvid eval`.")
    parser.add_argument(
        "--training-data", default=None, help="A sentence or two on the training data, for the card (Markdown)."
    )
    parser.add_argument("--tags", nargs="+", default=[], metavar="TAG", help="Extra Hub tags.")
    parser.add_argument("--private", action="store_true", help="Create the repository private.")
    parser.add_argument("--token", default=None, help="Hub token with write access (default: HF_TOKEN, then login).")
    parser.add_argument("--commit-message", default=None, help="Commit message of the upload.")
    parser.add_argument("--revision", default=None, help="Branch to push to (default: main).")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="Write the folder here (must be new or empty) and keep it; default: a temporary folder. Required with "
        "--dry-run.",
    )
    parser.add_argument("--dry-run", action="store_true", help="Write the folder only; upload nothing.")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..hub import prepare_hub_folder, upload_hub_folder

    if args.lora is None and args.pipeline is None:
        print("error: pass `--lora FOLDER`, `--pipeline FOLDER`, or both.", file=sys.stderr)
        return 2
    if args.dry_run and args.out is None:
        print("error: `--dry-run` needs `--out FOLDER` (where the folder is written).", file=sys.stderr)
        return 2
    if not args.dry_run and args.token is None:
        from huggingface_hub import get_token

        if get_token() is None:  # fail before copying gigabytes
            print(
                "error: no Hub token found: pass `--token`, set `HF_TOKEN`, or run `hf auth login`; or use "
                "`--dry-run --out FOLDER`.",
                file=sys.stderr,
            )
            return 2

    with tempfile.TemporaryDirectory(prefix="longvid-hub-") as scratch:
        out = args.out if args.out is not None else Path(scratch) / "upload"
        try:
            folder = prepare_hub_folder(
                out,
                repo_id=args.repo_id,
                lora=args.lora,
                pipeline=args.pipeline,
                base_model=args.base_model,
                sample_video=args.sample_video,
                eval_results=args.eval_results,
                training_data=args.training_data,
                tags=args.tags,
            )
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(f"Wrote {folder.kind} folder {folder.path} ({len(folder.files)} files):")
        for name in folder.files:
            print(f"  {name}")
        if args.dry_run:
            print(f"Dry run: nothing uploaded. To upload the folder as is: `hf upload {args.repo_id} {folder.path}`.")
            return 0
        commit = upload_hub_folder(
            folder.path,
            args.repo_id,
            private=True if args.private else None,
            token=args.token,
            commit_message=args.commit_message,
            revision=args.revision,
        )
        print(f"Uploaded to https://huggingface.co/{args.repo_id} ({getattr(commit, 'commit_url', commit)}).")
    return 0
