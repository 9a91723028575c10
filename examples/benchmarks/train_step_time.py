# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""Step time and peak memory of the two trainers (`docs/training.md`), on random weights, through `run_training`.

Builds a random Wan pipeline folder (tiny VAE and text encoder; the transformer of the chosen preset), writes small
mp4 files, caches their latents with `cache_latents`, and trains stage 1 (`extension`) or stage 2 (`causal_lora`)
for `--steps` optimiser steps from the latent cache, as `longvid train-*` would. It reports the median wall time of
the steps after `--warmup` (from one `compute_loss` call to the next: forward, backward and optimiser step) and the
peak resident memory of the training process (`resource.getrusage(...).ru_maxrss`, which includes the Python
interpreter and the libraries, about 0.3 GiB), before and after training. The inputs are built in a child process,
and with `--all` each preset and stage runs in its own process, so one peak does not hide another.

Presets (DESIGN §6):

- `tiny`: the test suite's model (dim 64 = 2 heads x 32, 2 layers, ffn 128, text_dim 32), 16x16 frames, stage 1
  9-frame clips at batch 2, stage 2 5-frame clips, 3 clips per example (2 history), batch 2.
- `toy`: dim 128 = 2 heads x 64, 6 layers, ffn 512, 36 input channels, text_dim 384, 64x64 frames, 17-frame clips
  (5 latent frames of 8x8, 80 tokens), batch 8; stage 2: 6 clips per example (5 history clips, as the paper), clips
  overlapping by 5 frames.

    python examples/benchmarks/train_step_time.py --all --out train_step_time.json
    python examples/benchmarks/train_step_time.py --preset toy --stage causal_lora --steps 4
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "transformer": {"num_attention_heads": 2, "attention_head_dim": 32, "ffn_dim": 128, "num_layers": 2},
        "text_dim": 32,
        "size": 16,
        "fps": 8.0,
        "extension": {"num_frames": 9, "batch": 2},
        "causal_lora": {"num_frames": 5, "overlap": 1, "clips": 3, "batch": 2},
    },
    "toy": {
        "transformer": {"num_attention_heads": 2, "attention_head_dim": 64, "ffn_dim": 512, "num_layers": 6},
        "text_dim": 384,
        "size": 64,
        "fps": 16.0,
        "extension": {"num_frames": 17, "batch": 8},
        "causal_lora": {"num_frames": 17, "overlap": 5, "clips": 6, "batch": 8},
    },
}


def _max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _build_inputs(preset: dict[str, Any], stage: str, root: Path) -> tuple[Path, Path]:
    """A random pipeline folder and a latent cache of synthetic mp4 files for `stage`."""
    import numpy as np
    from diffusers import WanPipeline

    from diffusers_longvid.testing import get_dummy_components, get_tiny_text_encoder
    from diffusers_longvid.training.datasets import LongVideoDataset, ShortClipDataset
    from diffusers_longvid.training.latent_cache import cache_latents
    from diffusers_longvid.video_io import write_video

    # stage 1 converts a T2V model (16 channels); stage 2 trains on an extension model (36)
    in_channels = 16 if stage == "extension" else 36
    components = get_dummy_components(in_channels=in_channels, text_dim=preset["text_dim"], **preset["transformer"])
    components["text_encoder"] = get_tiny_text_encoder(d_model=preset["text_dim"])
    pipeline = root / "pipeline"
    WanPipeline(**components).save_pretrained(pipeline)

    size, fps, options = preset["size"], preset["fps"], preset[stage]
    frames = options["num_frames"]
    if stage == "causal_lora":
        frames = frames + (options["clips"] - 1) * (frames - options["overlap"])
    duration = frames / fps + 0.25
    batch = options["batch"]
    rng = np.random.default_rng(0)
    lines = []
    for i in range(batch):
        count = int(round(duration * fps)) + 1
        video = rng.integers(0, 255, size=(count, size, size, 3), dtype=np.uint8)
        path = root / f"video{i}.mp4"
        write_video(video, path, fps=fps)
        if stage == "extension":
            clips = [{"start": 0.0, "end": duration - 0.1, "caption": f"clip {i}"}]
        else:
            step = (duration - 0.1) / options["clips"]
            clips = [
                {"start": j * step, "end": (j + 1) * step, "caption": f"clip {i} part {j}"}
                for j in range(options["clips"])
            ]
        lines.append(json.dumps({"video": path.name, "clips": clips}))
    manifest = root / "train.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    if stage == "extension":
        dataset = ShortClipDataset(str(manifest), size, size, fps=fps, num_frames=options["num_frames"])
    else:
        dataset = LongVideoDataset(
            str(manifest),
            size,
            size,
            num_frames=options["num_frames"],
            overlap_frames=options["overlap"],
            fps=fps,
            max_clips=options["clips"],
            min_clips=options["clips"],
        )
    cache = root / "cache"
    cache_latents(
        dataset,
        cache,
        components["vae"],
        components["text_encoder"],
        components["tokenizer"],
        max_sequence_length=32,
        show_progress=False,
    )
    return pipeline, cache


def run_one(
    preset_name: str, stage: str, steps: int, warmup: int, gradient_checkpointing: bool, threads: int = 1
) -> dict[str, Any]:
    import torch

    torch.set_num_threads(threads)
    from diffusers_longvid.training.config import CausalLoRATrainConfig, ExtensionTrainConfig
    from diffusers_longvid.training.loop import run_training
    from diffusers_longvid.training.stage1 import ExtensionTrainingSpec
    from diffusers_longvid.training.stage2 import CausalLoRATrainingSpec

    preset = PRESETS[preset_name]
    options = preset[stage]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # the inputs are built in a child process, so that this process's peak memory is the training's
        subprocess.run(
            [sys.executable, __file__, "--preset", preset_name, "--stage", stage, "--prepare", str(root)],
            check=True,
            capture_output=True,
        )
        pipeline, cache = root / "pipeline", root / "cache"
        common = dict(
            output_dir=str(root / "run"),
            pretrained_model=str(pipeline),
            latent_cache=str(cache),
            train_batch_size=options["batch"],
            max_train_steps=warmup + steps,
            learning_rate=1e-4,
            report_to="none",
            checkpointing_steps=0,
            save_pipeline=False,
            cpu=True,
            gradient_checkpointing=gradient_checkpointing,
        )
        if stage == "extension":
            config = ExtensionTrainConfig(**common)
            spec = ExtensionTrainingSpec(config)
        else:
            config = CausalLoRATrainConfig(
                **common,
                num_condition_frames=options["overlap"],
                clips_per_video=options["clips"],
                kv_cache_clips=options["clips"] - 1,
                clip_selector="recent",
                lora_rank=16,
            )
            spec = CausalLoRATrainingSpec(config)
        starts: list[float] = []
        compute_loss = spec.compute_loss

        def timed_loss(model, batch, generator):
            starts.append(time.perf_counter())
            return compute_loss(model, batch, generator)

        spec.compute_loss = timed_loss
        rss_before = _max_rss_mib()
        result = run_training(spec, config)
        end = time.perf_counter()
        starts.append(end)
        step_times = [b - a for a, b in zip(starts, starts[1:])][warmup:-1] or [end - starts[-2]]
        model = result.model
        return {
            "preset": preset_name,
            "stage": stage,
            "batch": options["batch"],
            "num_frames": options["num_frames"],
            "size": preset["size"],
            "clips_per_example": options.get("clips"),
            "gradient_checkpointing": gradient_checkpointing,
            "params": sum(p.numel() for p in model.parameters()),
            "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "steps_timed": len(step_times),
            "step_s_median": statistics.median(step_times),
            "step_s_min": min(step_times),
            "max_rss_mib_before_training": round(rss_before, 1),
            "max_rss_mib": round(_max_rss_mib(), 1),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "machine": platform.processor() or platform.machine(),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--stage", choices=("extension", "causal_lora"), default="extension")
    parser.add_argument("--steps", type=int, default=5, help="Timed optimiser steps.")
    parser.add_argument("--warmup", type=int, default=2, help="Untimed first steps.")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: robust timings on a shared CPU).")
    parser.add_argument("--prepare", type=Path, default=None, help=argparse.SUPPRESS)  # internal: build inputs only
    parser.add_argument("--all", action="store_true", help="Every preset and stage, each in its own process.")
    parser.add_argument("--out", type=Path, default=None, help="Write the results as JSON.")
    args = parser.parse_args(argv)
    if args.prepare is not None:
        import torch

        torch.set_num_threads(1)
        _build_inputs(PRESETS[args.preset], args.stage, args.prepare)
        return 0
    if args.all:
        rows = []
        for preset in PRESETS:
            for stage in ("extension", "causal_lora"):
                command = [
                    sys.executable,
                    __file__,
                    "--preset",
                    preset,
                    "--stage",
                    stage,
                    "--steps",
                    str(args.steps),
                    "--warmup",
                    str(args.warmup),
                    "--threads",
                    str(args.threads),
                ]
                if args.gradient_checkpointing:
                    command.append("--gradient-checkpointing")
                output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
                rows.append(json.loads(output.strip().splitlines()[-1]))
                print(json.dumps(rows[-1]), flush=True)
    else:
        rows = [run_one(args.preset, args.stage, args.steps, args.warmup, args.gradient_checkpointing, args.threads)]
        print(json.dumps(rows[0]))
    if args.out is not None:
        args.out.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
