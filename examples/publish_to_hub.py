#!/usr/bin/env python
# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""Publish trained weights to the Hugging Face Hub with a model card (the Python side of `longvid push-to-hub`).

1. `prepare_hub_folder` writes the repository as a folder: the LoRA (`pytorch_lora_weights.safetensors`) and/or the
   complete pipeline, `training_info.json`, `README.md` (model card with YAML metadata: library `diffusers`, base
   model, pipeline tag `text-to-video`, license, tags), `samples/` and `eval/eval_results.json`.
2. `--verify` loads that folder the way users will load the Hub id (`load_lora_weights` / `from_pretrained`).
3. Without `--dry-run`, `upload_hub_folder` runs `create_repo(exist_ok=True)` and `upload_folder` (token: `--token`,
   `HF_TOKEN` or `hf auth login`).

Needs: CPU only, no GPU. Network and a write token only for the upload. `--tiny` makes a tiny random K/V LoRA and
publishes it with `--dry-run` (seconds, offline).

Examples:
    python examples/publish_to_hub.py --repo-id me/wan21-kv-lora --lora runs/causal_lora/final \\
        --base-model me/wan21-extension --sample-video fox.mp4 --eval-results eval_report/eval_results.json \\
        --out hub_upload --dry-run --verify
    python examples/publish_to_hub.py --tiny --out /tmp/tiny_hub --verify
    longvid push-to-hub --repo-id me/wan21-kv-lora --lora runs/causal_lora/final --private   # the same, CLI
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo-id", default=None, help="USER/NAME on the Hub.")
    parser.add_argument("--lora", type=Path, default=None, help="Folder with pytorch_lora_weights.safetensors.")
    parser.add_argument("--pipeline", type=Path, default=None, help="A LongVideoExtensionPipeline folder.")
    parser.add_argument("--base-model", default=None, help="The pipeline the LoRA applies to (the card's base_model).")
    parser.add_argument("--sample-video", type=Path, default=None)
    parser.add_argument("--eval-results", type=Path, default=None, help="eval_results.json from `longvid eval`.")
    parser.add_argument("--out", type=Path, required=True, help="The folder to write (new or empty).")
    parser.add_argument("--dry-run", action="store_true", help="Write (and verify) the folder; upload nothing.")
    parser.add_argument("--verify", action="store_true", help="Load the folder as the Hub id will be loaded.")
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--token", default=None)
    parser.add_argument("--tiny", action="store_true", help="Publish a tiny random K/V LoRA, as a dry run.")
    return parser.parse_args(argv)


def make_tiny_lora(folder: Path) -> None:
    from peft.utils import get_peft_model_state_dict

    from diffusers_longvid import LongVideoExtensionPipeline, add_kv_lora
    from diffusers_longvid.testing import get_tiny_transformer

    transformer = get_tiny_transformer(in_channels=36, num_layers=4)
    add_kv_lora(transformer, rank=4)
    LongVideoExtensionPipeline.save_lora_weights(
        str(folder), transformer_lora_layers=get_peft_model_state_dict(transformer)
    )


def verify(folder, kind: str) -> None:
    from diffusers_longvid import LongVideoExtensionPipeline

    if "pipeline" in kind:
        pipe = LongVideoExtensionPipeline.from_pretrained(folder.path)  # what from_pretrained("USER/NAME") runs
        print(f"verified: from_pretrained -> {pipe.conditioning_mode} mode, {type(pipe.scheduler).__name__}")
    if "lora" in kind:
        # the loader's own parsing of the file (no base model needed): what load_lora_weights("USER/NAME") reads
        state_dict = LongVideoExtensionPipeline.lora_state_dict(str(folder.path))
        print(f"verified: load_lora_weights reads {len(state_dict)} tensors")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from diffusers_longvid.hub import prepare_hub_folder, upload_hub_folder

    with tempfile.TemporaryDirectory() as scratch:
        if args.tiny:
            args.repo_id = args.repo_id or "me/tiny-kv-lora"
            args.lora, args.dry_run = Path(scratch), True
            make_tiny_lora(args.lora)
        if args.repo_id is None:
            print("error: `--repo-id` is required.", file=sys.stderr)
            return 2
        folder = prepare_hub_folder(
            args.out,
            repo_id=args.repo_id,
            lora=args.lora,
            pipeline=args.pipeline,
            base_model=args.base_model,
            sample_video=args.sample_video,
            eval_results=args.eval_results,
        )
    print(f"wrote {folder.path}: {', '.join(folder.files)}")
    print(f"card metadata: {folder.card.data.to_dict()}")
    if args.verify:
        verify(folder, folder.kind)
    if args.dry_run:
        return 0
    commit = upload_hub_folder(folder.path, args.repo_id, private=True if args.private else None, token=args.token)
    print(f"uploaded: {commit.commit_url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
