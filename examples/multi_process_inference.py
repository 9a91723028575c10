#!/usr/bin/env python
# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""Many long videos on several GPUs: one pipeline per process, videos split with accelerate.

Every process loads the pipeline on its own device and takes its share of the jobs with
`PartialState().split_between_processes(jobs)`; each video depends only on its script and its seed, so the result is
the same whatever the number of processes. Each process writes its videos (`NAME.mp4` and `NAME.json`, which records
the rank that made it); the main process writes `summary.json` at the end. One long video is never split across
GPUs here: that would need context parallelism, which the cross-clip KV cache does not support yet
(docs/troubleshooting.md).

Jobs: a JSONL file, one video per line, `{"name": "fox_0", "prompts": ["...", "..."], "seed": 0}`; or
`--prompts-file script.txt --num-videos N` (the same script with seeds 0..N-1).

Needs:
- real weights: N CUDA GPUs (each ~10 GB in bf16 at 480p without history), the weights of `--model` (and `--lora`);
  each GPU runs ~4 minutes per 81-frame clip (RTX 4090 figure).
- `--tiny`: CPU only, no weights, seconds (tiny random model; frames are noise). On the CPU, start two processes with
  `torchrun` (`accelerate launch --cpu --num_processes 2` starts only one on some machines).

Examples:
    accelerate launch --num_processes 8 examples/multi_process_inference.py --jobs jobs.jsonl --out videos/
    torchrun --nproc_per_node 2 examples/multi_process_inference.py --tiny --num-videos 4 --out /tmp/tiny_videos
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


DEFAULT_SCRIPT = Path(__file__).parent / "scripts" / "fox_in_snow.txt"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="Wan-AI/Wan2.1-T2V-1.3B-Diffusers", help="Pipeline folder or Hub id.")
    parser.add_argument("--lora", default=None, help="Stage-2 K/V LoRA (folder or Hub id); turns the KV cache on.")
    parser.add_argument("--jobs", type=Path, default=None, help="JSONL: one video per line (name, prompts, seed).")
    parser.add_argument("--prompts-file", type=Path, default=DEFAULT_SCRIPT, help="The script, without --jobs.")
    parser.add_argument("--num-videos", type=int, default=2, help="Videos of --prompts-file (seeds 0..N-1).")
    parser.add_argument("--out", type=Path, required=True, help="Output folder.")
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=832)
    parser.add_argument("--num-frames", type=int, default=81)
    parser.add_argument("--num-condition-frames", type=int, default=5)
    parser.add_argument("--num-inference-steps", type=int, default=50)
    parser.add_argument("--save-frames", action="store_true", help="Also save each video's frames as NAME.npy.")
    parser.add_argument("--tiny", action="store_true", help="Tiny random model on the CPU (no weights).")
    return parser.parse_args(argv)


def read_jobs(args: argparse.Namespace) -> list[dict]:
    if args.jobs is not None:
        jobs = [json.loads(line) for line in args.jobs.read_text(encoding="utf-8").splitlines() if line.strip()]
        for number, job in enumerate(jobs, 1):
            if not isinstance(job.get("name"), str) or not isinstance(job.get("prompts"), list):
                raise ValueError(f"`--jobs` line {number}: needs a `name` (str) and `prompts` (list of str).")
            job.setdefault("seed", number - 1)
        return jobs
    lines = [line.strip() for line in args.prompts_file.read_text(encoding="utf-8").splitlines()]
    prompts = [line for line in lines if line and not line.startswith("#")]
    return [{"name": f"video_{seed:03d}", "prompts": prompts, "seed": seed} for seed in range(args.num_videos)]


def build_pipeline(args: argparse.Namespace):
    """The pipeline, on the CPU (the caller moves it to its process's device)."""
    import torch

    from diffusers_longvid import LongVideoExtensionPipeline, TRFlowScheduler

    if args.tiny:
        from diffusers_longvid.testing import get_dummy_components

        torch.set_num_threads(1)
        args.height, args.width, args.num_frames, args.num_condition_frames, args.num_inference_steps = 32, 32, 9, 1, 4
        pipe = LongVideoExtensionPipeline(**get_dummy_components(in_channels=36), kv_cache_clips=0)
    else:
        dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
        # the weights in `dtype` (bf16 on a GPU), the VAE in float32 (as diffusers recommends for Wan2.1)
        dtypes = {"default": dtype, "vae": torch.float32}
        pipe = LongVideoExtensionPipeline.from_pretrained(args.model, dtype=dtypes)
        if args.lora is not None:
            pipe.load_lora_weights(args.lora, adapter_name="kv")
    pipe.scheduler = TRFlowScheduler.from_config(pipe.scheduler.config, tau_low=0.3, tau_high=0.7)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate_video(pipe, job: dict, args: argparse.Namespace):
    """One video of `job`, as `(frames, height, width, 3)` floats in [0, 1]: a function of the job alone."""
    import torch

    prompts = job["prompts"][:3] if args.tiny else job["prompts"]
    output = pipe(
        prompts,
        height=args.height,
        width=args.width,
        num_frames=args.num_frames,
        num_condition_frames=args.num_condition_frames,
        num_inference_steps=args.num_inference_steps,
        generator=torch.Generator("cpu").manual_seed(int(job["seed"])),
        max_sequence_length=16 if args.tiny else 512,
        kv_cache_clips=5 if args.lora is not None else 0,
    )
    return output.frames[0]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    jobs = read_jobs(args)

    import numpy as np
    import torch
    from accelerate import PartialState
    from diffusers.utils import export_to_video

    state = PartialState(cpu=args.tiny or not torch.cuda.is_available())
    pipe = build_pipeline(args).to(state.device)
    args.out.mkdir(parents=True, exist_ok=True)
    with state.split_between_processes(jobs) as my_jobs:
        for job in my_jobs:
            frames = generate_video(pipe, job, args)
            export_to_video(list(frames), str(args.out / f"{job['name']}.mp4"), fps=16)
            if args.save_frames:
                np.save(args.out / f"{job['name']}.npy", frames)
            record = {
                **job,
                "rank": state.process_index,
                "num_processes": state.num_processes,
                "num_frames": int(frames.shape[0]),
            }
            (args.out / f"{job['name']}.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
            print(f"[rank {state.process_index}/{state.num_processes}] {job['name']}: {frames.shape[0]} frames")
    state.wait_for_everyone()
    if state.is_main_process:
        records = [json.loads((args.out / f"{job['name']}.json").read_text(encoding="utf-8")) for job in jobs]
        summary = {"num_processes": state.num_processes, "videos": {r["name"]: r["rank"] for r in records}}
        (args.out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
