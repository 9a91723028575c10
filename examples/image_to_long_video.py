#!/usr/bin/env python
# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""Image-to-long-video: an image becomes frame 0 of the first clip, then the script goes on clip by clip.

`pipe(prompts, image=image)` conditions clip 0 on the image (the extension model's first-frame task, or replacement
conditioning of latent frame 0 with a stock T2V model); every later clip is conditioned on the previous clip's last
frames and, with a stage-2 LoRA, on the K/V of selected earlier clips. No CLIP image encoder is involved: the image
enters through the VAE only, as in the paper.

Needs:
- real weights: a CUDA GPU (~10 GB in bf16 at 480p without history), `Wan-AI/Wan2.1-T2V-1.3B-Diffusers` (training-free,
  ~17 GB download) or your extension pipeline (`--model`) and K/V LoRA (`--lora`); about 4 minutes per 81-frame clip
  on an RTX 4090.
- `--tiny`: CPU only, no weights, a few seconds (tiny random model, a generated gradient image; frames are noise).

Examples:
    python examples/image_to_long_video.py --image fox.png --prompts-file examples/scripts/fox_in_snow.txt
    python examples/image_to_long_video.py --image fox.png --model USER/EXTENSION --lora USER/KV-LORA
    python examples/image_to_long_video.py --tiny --out /tmp/tiny_i2lv.mp4
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


DEFAULT_SCRIPT = Path(__file__).parent / "scripts" / "fox_in_snow.txt"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", type=Path, default=None, help="The first frame (any PIL-readable file).")
    parser.add_argument("--model", default="Wan-AI/Wan2.1-T2V-1.3B-Diffusers", help="Pipeline folder or Hub id.")
    parser.add_argument("--lora", default=None, help="Stage-2 K/V LoRA (folder or Hub id); turns the KV cache on.")
    parser.add_argument("--prompts-file", type=Path, default=DEFAULT_SCRIPT, help="One prompt per clip.")
    parser.add_argument("--out", type=Path, default=Path("image_to_long_video.mp4"))
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=832)
    parser.add_argument("--num-frames", type=int, default=81)
    parser.add_argument("--num-condition-frames", type=int, default=5)
    parser.add_argument("--num-inference-steps", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="Tiny random model on the CPU (no weights).")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.image is None and not args.tiny:
        print("error: `--image` is required (or `--tiny`).", file=sys.stderr)
        return 2
    lines = [line.strip() for line in args.prompts_file.read_text(encoding="utf-8").splitlines()]
    prompts = [line for line in lines if line and not line.startswith("#")]

    import numpy as np
    import PIL.Image
    import torch
    from diffusers.utils import load_image

    from diffusers_longvid import LongVideoExtensionPipeline, TRFlowScheduler
    from diffusers_longvid.video_io import StreamingVideoWriter

    if args.tiny:
        from diffusers_longvid.testing import get_dummy_components

        torch.set_num_threads(1)
        pipe, device = LongVideoExtensionPipeline(**get_dummy_components(in_channels=36), kv_cache_clips=0), "cpu"
        args.height, args.width, args.num_frames, args.num_condition_frames, args.num_inference_steps = 32, 32, 9, 1, 4
        prompts, max_sequence_length = prompts[:2], 16
        ramp = np.linspace(0, 255, args.width, dtype=np.uint8)
        image = PIL.Image.fromarray(np.stack([np.tile(ramp, (args.height, 1))] * 3, axis=-1))
    else:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        # the weights in `dtype` (bf16 on a GPU), the VAE in float32 (as diffusers recommends for Wan2.1)
        dtypes = {"default": dtype, "vae": torch.float32}
        pipe = LongVideoExtensionPipeline.from_pretrained(args.model, dtype=dtypes)
        image, max_sequence_length = load_image(str(args.image)), 512
    kv_cache_clips = 0
    if args.lora is not None:
        pipe.load_lora_weights(args.lora, adapter_name="kv")
        kv_cache_clips = 5  # selected by prompt similarity (the pipeline's default selector)
    pipe.scheduler = TRFlowScheduler.from_config(pipe.scheduler.config, tau_low=0.3, tau_high=0.7)
    pipe.to(device)

    with StreamingVideoWriter(args.out, fps=16) as writer:
        for clip in pipe.generate_clips(
            prompts,
            image=image,  # frame 0 of clip 0; the output starts with (the reconstruction of) this image
            height=args.height,
            width=args.width,
            num_frames=args.num_frames,
            num_condition_frames=args.num_condition_frames,
            num_inference_steps=args.num_inference_steps,
            generator=torch.Generator("cpu").manual_seed(args.seed),
            max_sequence_length=max_sequence_length,
            kv_cache_clips=kv_cache_clips,
        ):
            writer.append(clip.frames[0])
            print(f"clip {clip.clip_index}: frames {clip.frame_range}, {clip.seconds:.1f} s")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
