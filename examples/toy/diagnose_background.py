# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""Where does a toy model's background colour error (docs/results.md, Tables 2-4) come from?

For each model, generates Table 2's scripts (`random_script(16, seed, num_objects=2)`, the full method: KV cache 5,
the preset's T-RFlow window, clip 0 continuing the ground truth's first 5 frames) twice: as they are, and with every
object removed (the same backgrounds, textures and background changes, prompts rewritten). It reports, per model and
seed:

- `background_color_error`, `psnr`, `object_color_error`: `longvid toy-eval`'s metrics;
- `spurious_share`: the share of ground-truth background pixels whose generated colour is more than 80 (sRGB
  distance) from the ground truth's, i.e. where the model drew something object-like (or a wrong background) over
  the background; 80 is below the distance of the two closest object colours (83) and of any object colour to any
  background colour of the world.

Writes `diagnosis.json`, `diagnosis.md` and `sheet_seed<s>.png` (last frame of every clip: ground truth, then one row
per model) to `--out`.

    python examples/toy/diagnose_background.py --models v1=runs/toy_v1 v4=toy --out runs/diagnose_background
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np


logger = logging.getLogger("diagnose_background")

SPURIOUS_DISTANCE = 80.0
F, K, CLIPS, SIZE = 17, 5, 16, 64


def _scripts(seed: int) -> dict[str, list[dict]]:
    from diffusers_longvid.toy.scripts import random_script, write_prompts

    script = random_script(CLIPS, seed=seed, num_objects=2)
    empty = [{k: v for k, v in dict(clip, objects=[]).items() if k != "prompt"} for clip in script]
    return {"with objects": script, "objects removed": write_prompts(empty)}


def _load(path: str):
    from diffusers_longvid.pipelines.longvideo.pipeline_longvideo_extension import LongVideoExtensionPipeline
    from diffusers_longvid.presets import resolve_model
    from diffusers_longvid.schedulers.scheduling_trflow import TRFlowScheduler

    pipe = LongVideoExtensionPipeline.from_pretrained(resolve_model(path))
    if not isinstance(pipe.scheduler, TRFlowScheduler):
        pipe.scheduler = TRFlowScheduler.from_config(pipe.scheduler.config, tau_low=0.0, tau_high=1.0)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _measure(pipe, script: list[dict], seed: int) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    from diffusers_longvid.toy.ablate import ground_truth_start, table_variants
    from diffusers_longvid.toy.compare import run_variants
    from diffusers_longvid.toy.evaluate import _any3, evaluate_toy_video
    from diffusers_longvid.toy.world import render_script_clips

    ours = table_variants("kv")[0]
    truth = render_script_clips(script, F, K, fps=16, size=SIZE, seed=seed, return_masks=True)
    frames = run_variants(
        pipe,
        script,
        [ours],
        seed=seed,
        num_frames=F,
        num_condition_frames=K,
        steps=16,
        size=SIZE,
        guidance_scale=2.0,
        max_sequence_length=64,
        video=ground_truth_start(truth.frames, K),
    )[ours.name]
    result = evaluate_toy_video(frames, script, num_frames=F, num_condition_frames=K, seed=seed, window_seconds=None)
    masks = truth.masks
    background = ~_any3(masks.any(axis=1)) if masks.shape[1] else np.ones(truth.frames.shape[:3], dtype=bool)
    dist = np.linalg.norm(frames.astype(np.float32) - truth.frames.astype(np.float32), axis=-1)
    spurious = float((background & (dist > SPURIOUS_DISTANCE)).sum() / background.sum())
    metrics = {
        "background_color_error": result.overall["background_color_error"],
        "psnr": result.overall["psnr"],
        "object_color_error": result.overall["object_color_error"],
        "spurious_share": round(spurious, 4),
    }
    return metrics, frames, truth.frames


def _sheet(rows: list[np.ndarray], path: Path) -> None:
    from PIL import Image

    last = [F - 1 + (F - K) * c for c in range(CLIPS)]
    image = np.concatenate([np.concatenate([r[i] for i in last], axis=1) for r in rows], axis=0)
    Image.fromarray(image).resize((image.shape[1] * 2, image.shape[0] * 2), Image.NEAREST).save(path)


def _markdown(report: dict) -> str:
    lines = [
        "| model | scripts | background colour error (per seed) | mean | spurious share (mean) | PSNR (mean) |",
        "|---|---|---|---|---|---|",
    ]
    for model, kinds in report["results"].items():
        for kind, seeds in kinds.items():
            bg = [s["background_color_error"] for s in seeds.values()]
            sp = [s["spurious_share"] for s in seeds.values()]
            ps = [s["psnr"] for s in seeds.values()]
            lines.append(
                f"| {model} | {kind} | {' / '.join(f'{b:.1f}' for b in bg)} | {np.mean(bg):.2f} | "
                f"{np.mean(sp):.3f} | {np.mean(ps):.1f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", required=True, help="name=path (a folder or a preset name)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(2)
    args.out.mkdir(parents=True, exist_ok=True)
    models = dict(m.split("=", 1) for m in args.models)
    report: dict = {"models": models, "seeds": args.seeds, "spurious_distance": SPURIOUS_DISTANCE, "results": {}}
    sheets: dict[int, list[np.ndarray]] = {}
    for name, path in models.items():
        pipe = _load(path)
        report["results"][name] = {}
        for seed in args.seeds:
            for kind, script in _scripts(seed).items():
                start = time.time()
                metrics, frames, truth = _measure(pipe, script, seed)
                report["results"][name].setdefault(kind, {})[str(seed)] = metrics
                logger.info(f"{name} / {kind} / seed {seed}: {metrics} ({time.time() - start:.0f} s)")
                if kind == "with objects":
                    sheets.setdefault(seed, [truth]).append(frames)
    for seed, rows in sheets.items():
        _sheet(rows, args.out / f"sheet_seed{seed}.png")
    (args.out / "diagnosis.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / "diagnosis.md").write_text(_markdown(report))
    logger.info(_markdown(report))


if __name__ == "__main__":
    main()
