#!/usr/bin/env python
# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""A long single-shot video from a script file (one prompt per clip) on Wan2.1 weights.

Two modes:

- training-free (default): the stock `Wan-AI/Wan2.1-T2V-1.3B-Diffusers` (16 input channels). Clips are chained by
  replacement conditioning and sampled with T-RFlow; no KV memory (`--kv-cache-clips 0`), since the stock model was
  not fine-tuned to read history K/V.
- trained: `--model` a stage-1 extension pipeline (36 input channels) and `--lora` its stage-2 K/V LoRA (a folder or
  a Hub id), with the cross-clip KV cache (`--kv-cache-clips 5`, the paper's).

Needs:
- real weights: a CUDA GPU (the 1.3B model in bf16 needs ~10 GB at 480p without history; 5 history clips add
  ~28 GiB of K/V, or put them on the host with `--offload-kv`), the Hub weights (~17 GB, downloaded on first use) and
  `pip install "diffusers-longvid[offline-text]"` for the default prompt-similarity selector. Time: about 4 minutes
  per 81-frame clip on an RTX 4090 (Wan2.1's own figure for one clip), ~2.8x that per clip with 5 history clips.
- `--tiny`: CPU only, no weights, a few seconds: a tiny *random* model (the frames are noise); `--tiny extension`
  runs the trained path (36 channels, a random K/V LoRA loaded with `load_lora_weights`, KV cache on).

Examples:
    python examples/long_video.py --prompts-file examples/scripts/fox_in_snow.txt --out fox.mp4
    python examples/long_video.py --model USER/EXTENSION --lora USER/KV-LORA --kv-cache-clips 5 --out fox.mp4
    python examples/long_video.py --tiny --out /tmp/tiny.mp4
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path


DEFAULT_SCRIPT = Path(__file__).parent / "scripts" / "fox_in_snow.txt"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="Wan-AI/Wan2.1-T2V-1.3B-Diffusers", help="Pipeline folder or Hub id.")
    parser.add_argument("--lora", default=None, help="Stage-2 K/V LoRA: a folder or Hub id (load_lora_weights).")
    parser.add_argument("--prompts-file", type=Path, default=DEFAULT_SCRIPT, help="One prompt per clip.")
    parser.add_argument("--out", type=Path, default=Path("long_video.mp4"), help="Output mp4 (streamed clip by clip).")
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=832)
    parser.add_argument("--num-frames", type=int, default=81, help="Frames per clip (4k + 1).")
    parser.add_argument("--num-condition-frames", type=int, default=5, help="Frames carried into the next clip.")
    parser.add_argument("--num-inference-steps", type=int, default=50)
    parser.add_argument("--guidance-scale", type=float, default=5.0)
    parser.add_argument("--tau-low", type=float, default=0.3, help="T-RFlow window start (0 = noise, 1 = clean).")
    parser.add_argument("--tau-high", type=float, default=0.7, help="T-RFlow window end.")
    parser.add_argument(
        "--kv-cache-clips", type=int, default=None, help="History clips (default: 0, or 5 with --lora)."
    )
    parser.add_argument(
        "--selector",
        choices=("similarity", "recent"),
        default="similarity",
        help="History selection: prompt similarity (needs a sentence model) or the most recent clips.",
    )
    parser.add_argument("--offload-kv", action="store_true", help="Keep stored history K/V on the host (CPU).")
    parser.add_argument("--cpu-offload", action="store_true", help="enable_model_cpu_offload() (less GPU memory).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fps", type=float, default=16.0)
    parser.add_argument(
        "--tiny",
        nargs="?",
        const="t2v",
        choices=("t2v", "extension"),
        default=None,
        help="Tiny random model on the CPU (no weights): 't2v' (default) or 'extension'.",
    )
    return parser.parse_args(argv)


def read_script(path: Path) -> list[str]:
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    prompts = [line for line in lines if line and not line.startswith("#")]
    if not prompts:
        raise ValueError(f"`--prompts-file` {path} holds no prompt.")
    return prompts


def tiny_pipeline(kind: str, lora_dir: str):
    """A tiny random pipeline; 'extension' also saves a random K/V LoRA to `lora_dir` (loaded like a real one)."""
    import torch
    from peft.utils import get_peft_model_state_dict

    from diffusers_longvid import LongVideoExtensionPipeline, add_kv_lora
    from diffusers_longvid.testing import get_dummy_components, get_tiny_transformer

    in_channels = 36 if kind == "extension" else 16
    pipe = LongVideoExtensionPipeline(**get_dummy_components(in_channels=in_channels, num_layers=4))
    if kind == "extension":
        trained = get_tiny_transformer(in_channels=36, num_layers=4)
        add_kv_lora(trained, rank=4)
        with torch.no_grad():
            for name, param in trained.named_parameters():
                if "lora_B" in name:
                    param.normal_(std=0.1, generator=torch.Generator().manual_seed(0))
        layers = get_peft_model_state_dict(trained)
        LongVideoExtensionPipeline.save_lora_weights(lora_dir, transformer_lora_layers=layers)
    return pipe


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    prompts = read_script(args.prompts_file)

    import torch

    from diffusers_longvid import (
        CrossClipKVCacheConfig,
        LongVideoExtensionPipeline,
        PromptSimilaritySelector,
        RecentSelector,
        TRFlowScheduler,
    )
    from diffusers_longvid.video_io import StreamingVideoWriter

    with tempfile.TemporaryDirectory() as scratch:
        if args.tiny:
            torch.set_num_threads(1)
            pipe = tiny_pipeline(args.tiny, scratch)
            lora = scratch if args.tiny == "extension" else args.lora
            args.height, args.width, args.num_frames, args.num_condition_frames = 32, 32, 9, 1
            args.num_inference_steps, args.selector = 6, "recent"
            prompts = prompts[:3]
            device, max_sequence_length = "cpu", 16
        else:
            device = "cuda" if torch.cuda.is_available() else "cpu"
            dtype = torch.bfloat16 if device == "cuda" else torch.float32
            # the Wan VAE stays in float32, as diffusers recommends for Wan2.1
            pipe = LongVideoExtensionPipeline.from_pretrained(
                args.model, torch_dtype={"default": dtype, "vae": torch.float32}
            )
            lora, max_sequence_length = args.lora, 512
        if lora is not None:
            pipe.load_lora_weights(lora, adapter_name="kv")  # diffusers' LoRA loader; adapts attn1.to_k / to_v only

    kv_cache_clips = args.kv_cache_clips if args.kv_cache_clips is not None else (5 if lora is not None else 0)
    if kv_cache_clips > 0 and lora is None and pipe.conditioning_mode == "replacement":
        print("note: a stock T2V model was not trained to read history K/V (stage 2); the KV cache rarely helps it.")
    # keep the checkpoint's flow shift; only the window is ours
    pipe.scheduler = TRFlowScheduler.from_config(pipe.scheduler.config, tau_low=args.tau_low, tau_high=args.tau_high)
    if args.cpu_offload:
        pipe.enable_model_cpu_offload()
    else:
        pipe.to(device)
    selector = None
    if kv_cache_clips > 0:
        selector = PromptSimilaritySelector() if args.selector == "similarity" else RecentSelector()

    print(f"{len(prompts)} clips, {pipe.conditioning_mode} conditioning, {kv_cache_clips} history clips")
    with StreamingVideoWriter(args.out, fps=args.fps) as writer:
        for clip in pipe.generate_clips(
            prompts,
            height=args.height,
            width=args.width,
            num_frames=args.num_frames,
            num_condition_frames=args.num_condition_frames,
            num_inference_steps=args.num_inference_steps,
            guidance_scale=args.guidance_scale,
            generator=torch.Generator("cpu").manual_seed(args.seed),
            max_sequence_length=max_sequence_length,
            kv_cache_clips=kv_cache_clips,
            clip_selector=selector,
            kv_cache_config=CrossClipKVCacheConfig(offload_to_cpu=args.offload_kv),
        ):
            writer.append(clip.frames[0])  # on disk as soon as the clip is finished
            print(f"clip {clip.clip_index}: frames {clip.frame_range}, attends {clip.attends}, {clip.seconds:.1f} s")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
