#!/usr/bin/env python
# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""Continue an existing video: its last frames condition the first new clip, then the script goes on.

`pipe(prompts, video=frames)` takes the video's last `num_condition_frames` frames (fewer, `1 + 4j`, for a shorter
video) as the first frames of clip 0; they are part of the output. `--append` writes the input video followed by the
new frames only (the repeated condition frames dropped), resized to `--height` x `--width`.

Needs:
- real weights: a CUDA GPU (~10 GB in bf16 at 480p without history), an extension pipeline (`--model`, 36 channels)
  or the stock `Wan-AI/Wan2.1-T2V-1.3B-Diffusers` (training-free replacement conditioning, ~17 GB download); about
  4 minutes per 81-frame clip on an RTX 4090.
- `--tiny`: CPU only, no weights, a few seconds (tiny random model; a generated input video; frames are noise).

Examples:
    python examples/continue_video.py --video input.mp4 --prompts-file next.txt --append --out continued.mp4
    python examples/continue_video.py --video input.mp4 --model USER/EXTENSION --prompt "the fox runs on" --num-clips 3
    python examples/continue_video.py --tiny --append --out /tmp/tiny_continued.mp4
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, default=None, help="The video to continue (mp4, gif, ...).")
    parser.add_argument("--model", default="Wan-AI/Wan2.1-T2V-1.3B-Diffusers", help="Pipeline folder or Hub id.")
    parser.add_argument("--lora", default=None, help="Stage-2 K/V LoRA (folder or Hub id); turns the KV cache on.")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--prompts-file", type=Path, default=None, help="One prompt per new clip.")
    source.add_argument("--prompt", default="The scene continues, the camera slowly moving forward.")
    parser.add_argument("--num-clips", type=int, default=2, help="New clips with --prompt.")
    parser.add_argument("--append", action="store_true", help="Write the input video followed by the new frames.")
    parser.add_argument("--out", type=Path, default=Path("continued.mp4"))
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=832)
    parser.add_argument("--num-frames", type=int, default=81)
    parser.add_argument("--num-condition-frames", type=int, default=5)
    parser.add_argument("--num-inference-steps", type=int, default=50)
    parser.add_argument("--fps", type=float, default=16.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="Tiny random model on the CPU (no weights).")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.video is None and not args.tiny:
        print("error: `--video` is required (or `--tiny`).", file=sys.stderr)
        return 2
    if args.prompts_file is not None:
        lines = [line.strip() for line in args.prompts_file.read_text(encoding="utf-8").splitlines()]
        prompts = [line for line in lines if line and not line.startswith("#")]
    else:
        prompts = [args.prompt] * args.num_clips

    import numpy as np
    import PIL.Image
    import torch
    from diffusers.utils import load_video

    from diffusers_longvid import LongVideoExtensionPipeline, TRFlowScheduler
    from diffusers_longvid.video_io import StreamingVideoWriter

    if args.tiny:
        from diffusers_longvid.testing import get_dummy_components

        torch.set_num_threads(1)
        pipe, device = LongVideoExtensionPipeline(**get_dummy_components(in_channels=36), kv_cache_clips=0), "cpu"
        args.height, args.width, args.num_frames, args.num_condition_frames, args.num_inference_steps = 32, 32, 9, 5, 4
        max_sequence_length = 16
        # a square moving right on a grey background, 13 frames
        frames = np.full((13, args.height, args.width, 3), 128, dtype=np.uint8)
        for i in range(len(frames)):
            frames[i, 8:20, i : i + 12] = (220, 40, 40)
        video = [PIL.Image.fromarray(f) for f in frames]
    else:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        # the weights in `dtype` (bf16 on a GPU), the VAE in float32 (as diffusers recommends for Wan2.1)
        dtypes = {"default": dtype, "vae": torch.float32}
        pipe = LongVideoExtensionPipeline.from_pretrained(args.model, dtype=dtypes)
        video, max_sequence_length = load_video(str(args.video)), 512
    kv_cache_clips = 0
    if args.lora is not None:
        pipe.load_lora_weights(args.lora, adapter_name="kv")
        kv_cache_clips = 5
    pipe.scheduler = TRFlowScheduler.from_config(pipe.scheduler.config, tau_low=0.3, tau_high=0.7)
    pipe.to(device)

    with StreamingVideoWriter(args.out, fps=args.fps) as writer:
        if args.append:
            size = (args.width, args.height)
            writer.append(np.stack([np.asarray(f.convert("RGB").resize(size, PIL.Image.BICUBIC)) for f in video]))
        for clip in pipe.generate_clips(
            prompts,
            video=video,  # its last frames are the first frames of clip 0
            height=args.height,
            width=args.width,
            num_frames=args.num_frames,
            num_condition_frames=args.num_condition_frames,
            num_inference_steps=args.num_inference_steps,
            generator=torch.Generator("cpu").manual_seed(args.seed),
            max_sequence_length=max_sequence_length,
            kv_cache_clips=kv_cache_clips,
        ):
            # clip 0 starts with the input's last frames: drop them when appending to the input
            new_frames = clip.frames[0]
            if args.append and clip.clip_index == 0:
                new_frames = new_frames[clip.num_condition_frames :]
            writer.append(new_frames)
            print(f"clip {clip.clip_index}: {len(new_frames)} new frames, {clip.seconds:.1f} s")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
