#!/usr/bin/env python
# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""T-RFlow inside stock diffusers pipelines: `WanPipeline` (text-to-video) or `WanVideoToVideoPipeline` (--video).

One line swaps the scheduler; the pipeline loop is diffusers' own:

    pipe.scheduler = TRFlowScheduler.from_config(pipe.scheduler.config, tau_low=0.3, tau_high=0.7)

The steps after the window are never evaluated (fewer model calls), and the last evaluated step returns the
renormalised ensemble of the clean estimates inside the window. `--compare` also runs plain Euler with the same seed
and the checkpoint's shift, and prints the model calls and AF (the paper's average frequency) of both videos.
The same swap works in `WanImageToVideoPipeline` (tested in tests/schedulers/test_trflow_scheduler.py).

Needs:
- real weights: a CUDA GPU (~10 GB in bf16 at 480p), `Wan-AI/Wan2.1-T2V-1.3B-Diffusers` (~17 GB download);
  about 4 minutes per 81-frame video on an RTX 4090 (Wan2.1's own figure), twice that with --compare.
- `--tiny`: CPU only, no weights, a few seconds (a tiny random model: the frames are noise).

Examples:
    python examples/trflow_wan_pipeline.py --prompt "A bee on a flower, close-up" --compare --out bee.mp4
    python examples/trflow_wan_pipeline.py --video input.mp4 --strength 0.7 --prompt "..." --out v2v.mp4
    python examples/trflow_wan_pipeline.py --tiny --compare --out /tmp/tiny_trflow.mp4
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="Wan-AI/Wan2.1-T2V-1.3B-Diffusers", help="Wan2.1 T2V folder or Hub id.")
    parser.add_argument("--prompt", default="A bee on a flower, close-up, soft morning light.")
    parser.add_argument("--video", type=Path, default=None, help="Input video: run WanVideoToVideoPipeline instead.")
    parser.add_argument("--strength", type=float, default=0.7, help="Video-to-video strength (with --video).")
    parser.add_argument("--out", type=Path, default=Path("trflow.mp4"))
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=832)
    parser.add_argument("--num-frames", type=int, default=81)
    parser.add_argument("--num-inference-steps", type=int, default=50)
    parser.add_argument("--guidance-scale", type=float, default=5.0)
    parser.add_argument("--tau-low", type=float, default=0.3, help="Window start (0 = pure noise, 1 = clean).")
    parser.add_argument("--tau-high", type=float, default=0.7, help="Window end.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compare", action="store_true", help="Also run plain Euler; print model calls and AF.")
    parser.add_argument("--tiny", action="store_true", help="Tiny random model on the CPU (no weights).")
    return parser.parse_args(argv)


def load_pipeline(args: argparse.Namespace):
    import torch
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline, WanVideoToVideoPipeline

    cls = WanVideoToVideoPipeline if args.video is not None else WanPipeline
    if args.tiny:
        from diffusers_longvid.testing import get_dummy_components

        torch.set_num_threads(1)
        return cls(**get_dummy_components(scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0))), "cpu"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    vae = AutoencoderKLWan.from_pretrained(args.model, subfolder="vae", dtype=torch.float32)
    return cls.from_pretrained(args.model, vae=vae, dtype=dtype).to(device), device


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.video is not None and not args.video.is_file():
        print(f"error: `--video` {args.video} does not exist.", file=sys.stderr)
        return 2

    import torch
    from diffusers.utils import export_to_video, load_video

    from diffusers_longvid import TRFlowScheduler, average_frequency

    pipe, device = load_pipeline(args)
    if args.tiny:
        args.height, args.width, args.num_frames, args.num_inference_steps = 32, 32, 9, 10
    euler = pipe.scheduler  # the checkpoint's scheduler (Wan ships a flow UniPC; TRFlow reads its flow_shift)
    trflow = TRFlowScheduler.from_config(euler.config, tau_low=args.tau_low, tau_high=args.tau_high)
    kwargs = dict(
        prompt=args.prompt,
        height=args.height,
        width=args.width,
        num_frames=args.num_frames,
        num_inference_steps=args.num_inference_steps,
        guidance_scale=args.guidance_scale,
        output_type="np",
    )
    if args.tiny:
        kwargs["max_sequence_length"] = 16
    if args.video is not None:
        frames = load_video(str(args.video))[: args.num_frames]
        frames = frames[: 1 + 4 * ((len(frames) - 1) // 4)]  # the causal VAE takes 4k + 1 frames
        del kwargs["num_frames"]  # WanVideoToVideoPipeline takes the length of `video`
        kwargs.update(video=frames, strength=args.strength)

    calls = []
    handle = pipe.transformer.register_forward_pre_hook(lambda module, inputs: calls.append(1))
    runs = {"trflow": trflow}
    if args.compare:
        runs["euler"] = TRFlowScheduler.from_config(euler.config, tau_low=0.0, tau_high=1.0)  # = FlowMatch Euler
    try:
        for name, scheduler in runs.items():
            pipe.scheduler = scheduler
            calls.clear()
            video = pipe(**kwargs, generator=torch.Generator("cpu").manual_seed(args.seed)).frames[0]
            path = args.out if name == "trflow" else args.out.with_name(args.out.stem + "_euler" + args.out.suffix)
            export_to_video(list(video), str(path), fps=16)
            window = f"[{scheduler.config.tau_low}, {scheduler.config.tau_high}]"
            print(f"{name:6s} window {window}: {len(calls)} model calls, AF {average_frequency(video):.4f} -> {path}")
    finally:
        handle.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
