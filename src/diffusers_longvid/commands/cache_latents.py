"""`longvid cache-latents`: encode a manifest's clips and captions once into safetensors shards."""

from __future__ import annotations

import argparse
import sys


_DTYPES = ("float32", "bfloat16", "float16")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "cache-latents",
        help="Encode a manifest's clips (VAE) and captions (text encoder) once into safetensors shards.",
        description=(
            "Decode the videos of a JSONL manifest, encode every clip with the pipeline's VAE (normalised latents) "
            "and every caption with its text encoder (as WanPipeline.encode_prompt), and write them to "
            "OUT/shard-*.safetensors with OUT/index.json. Running it again with the same arguments keeps the "
            "complete shards and encodes the rest. Read the cache with CachedShortClipDataset (--kind short) or "
            "CachedLongVideoDataset (--kind long). See docs/data.md."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--manifest", required=True, help="JSONL manifest (one video per line, captioned clips).")
    parser.add_argument(
        "--model",
        required=True,
        help="Diffusers pipeline folder or Hub id with vae/, text_encoder/ and tokenizer/ subfolders "
        "(e.g. Wan-AI/Wan2.1-T2V-1.3B-Diffusers).",
    )
    parser.add_argument("--out", required=True, help="Output cache folder.")
    parser.add_argument(
        "--kind",
        choices=("short", "long"),
        default="short",
        help="'short': one item per captioned clip (stage 1). 'long': one item per long video split into "
        "overlapping clips (stage 2).",
    )
    parser.add_argument("--height", type=int, required=True, help="Frame height (a multiple of 16 for Wan).")
    parser.add_argument("--width", type=int, required=True, help="Frame width (a multiple of 16 for Wan).")
    parser.add_argument("--fps", type=float, default=16.0, help="Frame rate to resample to.")
    parser.add_argument(
        "--num-frames",
        type=int,
        default=None,
        help="Frames per clip, 4k+1 (e.g. 81). Required with --kind long. With --kind short, omit it to keep each "
        "clip's own length (at most --max-duration); clips shorter than it are left out.",
    )
    parser.add_argument(
        "--min-duration",
        type=float,
        default=2.0,
        help="--kind short without --num-frames: shortest clip kept, in seconds.",
    )
    parser.add_argument(
        "--max-duration", type=float, default=5.0, help="--kind short without --num-frames: longest clip, in seconds."
    )
    parser.add_argument(
        "--overlap-frames", type=int, default=5, help="--kind long: frames shared by consecutive clips, 4j+1."
    )
    parser.add_argument(
        "--max-clips", type=int, default=None, help="--kind long: cut longer videos into items of this many clips."
    )
    parser.add_argument("--min-clips", type=int, default=2, help="--kind long: fewest clips per item.")
    parser.add_argument("--max-sequence-length", type=int, default=512, help="Token budget of the captions.")
    parser.add_argument("--shard-size", type=int, default=64, help="Items per shard.")
    parser.add_argument(
        "--save-dtype", choices=_DTYPES, default="float32", help="Storage dtype of latents and embeddings."
    )
    parser.add_argument("--vae-dtype", choices=_DTYPES, default="float32", help="Compute dtype of the VAE.")
    parser.add_argument(
        "--text-encoder-dtype",
        choices=("auto",) + _DTYPES,
        default="auto",
        help="Compute dtype of the text encoder; 'auto' is bfloat16 on CUDA, float32 otherwise.",
    )
    parser.add_argument(
        "--sample-mode", choices=("argmax", "sample"), default="argmax", help="Posterior mode or a sample."
    )
    parser.add_argument("--seed", type=int, default=0, help="With --sample-mode sample: item i uses seed + i.")
    parser.add_argument("--device", default=None, help="Torch device; defaults to cuda when available, else cpu.")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers decoding videos.")
    parser.add_argument("--revision", default=None, help="Model revision on the Hub.")
    parser.add_argument(
        "--no-probe", action="store_true", help="Do not read video headers when validating the manifest."
    )
    parser.add_argument("--overwrite", action="store_true", help="Replace a cache made with other arguments in --out.")
    parser.add_argument("--no-progress", action="store_true", help="Hide the progress bar.")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..training.datasets import LongVideoDataset, ShortClipDataset
    from ..training.latent_cache import cache_latents, load_encoders
    from ..training.manifest import load_manifest

    if args.kind == "long" and args.num_frames is None:
        print("longvid cache-latents: error: --kind long needs --num-frames (e.g. 81).", file=sys.stderr)
        return 2
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    text_dtype = args.text_encoder_dtype
    if text_dtype == "auto":
        text_dtype = "bfloat16" if device.type == "cuda" else "float32"

    # validate the data before loading any model
    records = load_manifest(args.manifest, probe_durations=not args.no_probe)
    if args.kind == "short":
        dataset = ShortClipDataset(
            records,
            args.height,
            args.width,
            fps=args.fps,
            num_frames=args.num_frames,
            min_duration=args.min_duration,
            max_duration=args.max_duration,
        )
    else:
        dataset = LongVideoDataset(
            records,
            args.height,
            args.width,
            num_frames=args.num_frames,
            overlap_frames=args.overlap_frames,
            fps=args.fps,
            max_clips=args.max_clips,
            min_clips=args.min_clips,
        )
    dataset.manifest_path = str(args.manifest)

    vae, text_encoder, tokenizer = load_encoders(
        args.model, args.revision, getattr(torch, args.vae_dtype), getattr(torch, text_dtype)
    )
    vae.to(device)
    text_encoder.to(device)
    summary = cache_latents(
        dataset,
        args.out,
        vae,
        text_encoder,
        tokenizer,
        model_id=args.model,
        max_sequence_length=args.max_sequence_length,
        shard_size=args.shard_size,
        save_dtype=args.save_dtype,
        sample_mode=args.sample_mode,
        seed=args.seed,
        num_workers=args.num_workers,
        overwrite=args.overwrite,
        show_progress=not args.no_progress,
    )
    print(
        f"Cached {summary.num_items} items in {summary.num_shards} shards at {summary.output_dir} "
        f"({summary.num_reused_shards} shards kept from an earlier run, {summary.num_skipped} items skipped)."
    )
    return 0
