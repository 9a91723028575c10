"""`make demo` / `python -m diffusers_longvid.demo`: a long video from a multi-clip script, on CPU, offline.

With the built-in toy preset (`diffusers_longvid.presets.get_preset_path("toy")`, trained by
`examples/toy/train_toy.sh`) the demo generates a memory-world script (`memory_script(..., episodes=16)`: one object,
named with its colour, that leaves the frame and comes back 16 times with prompts that do not name its colour, on a
plain background), continuing the ground truth's first 5 frames, three ways plus the ground truth, and writes to `--out`:

- `toy_long_video.mp4` — our method (KV cache over 5 prompt-selected history clips + T-RFlow), with its
  `toy_long_video.json` sidecar;
- `comparison.mp4` — ground truth | ours | no KV cache | no KV cache and no T-RFlow, side by side, labelled;
- `comparison.png` — a contact sheet of the same four rows, a frame every 4 seconds;
- `comebacks.png` — one row per comeback: the object before it left, then the comeback clip's last frame in the
  ground truth, ours, no KV, no KV and no T-RFlow (only a model that remembers can get the colour right);
- `toy_script.json` (the script) and `report/` (`longvid toy-eval` of every variant against the ground truth:
  `toy_eval_<variant>.json|md|png`, and `summary.md` with the memory benchmark's presence / colour scores of each
  variant on this script).

Without the preset (a source checkout whose preset was removed), the demo runs the same user path — a pipeline folder
loaded with `from_pretrained` and `longvid generate` — on a tiny *randomly initialised* model: the frames are noise,
but the clip loop, RoPE offsets, KV cache, prompt-similarity selection, T-RFlow, streaming mp4 writer and JSON sidecar
all run for real.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


logger = logging.getLogger("diffusers_longvid.demo")

#: Seed and comebacks of the demo's toy script (see `demo_toy_script`).
DEMO_SCRIPT_SEED = 7
DEMO_EPISODES = 16

DEMO_SCRIPT = [
    "a red circle moves right across a blue background",
    "the red circle bounces near the right edge",
    "a green square enters from the left",
    "the green square and the red circle stay still",
    "the red circle leaves the frame to the right",
    "the shape comes back from the right",
    "the red circle moves left across the blue background",
    "the green square grows",
]


def demo_toy_script(
    num_clips: int | None = None, seed: int = DEMO_SCRIPT_SEED, episodes: int = DEMO_EPISODES
) -> list[dict[str, Any]]:
    """The demo's toy script: `memory_script(5, seed, clips_after=1, episodes=episodes)`, the memory benchmark's
    world (plain background, no background changes): one object seen, gone and back `episodes` times (the comeback
    prompts omit its colour). `num_clips` keeps only the first clips.

    With textured backgrounds or background changes the toy preset loses the object's colour at the first change and
    named prompts do not bring it back (docs/results.md, "Reproducing one video by eye"), so such a script would show
    the toy model's drawing errors, not its memory."""
    from .toy import memory_script

    script = memory_script(5, seed=seed, clips_after=1, episodes=episodes)
    return script[:num_clips] if num_clips else script


def _untrained_pipeline_folder(root: Path) -> Path:
    """Save a tiny random `LongVideoExtensionPipeline` (16-channel T2V transformer) to `root` once."""
    folder = root / "untrained_tiny_model"
    if (folder / "model_index.json").is_file():
        return folder
    from .pipelines.longvideo.pipeline_longvideo_extension import LongVideoExtensionPipeline
    from .schedulers.scheduling_trflow import TRFlowScheduler
    from .testing import get_dummy_components

    components = get_dummy_components(scheduler=TRFlowScheduler(shift=3.0, tau_low=0.3, tau_high=0.7))
    pipe = LongVideoExtensionPipeline(**components)
    pipe.save_pretrained(folder)
    return folder


def run_toy_demo(out: Path, num_clips: int | None = None, steps: int | None = None) -> dict[str, Any]:
    """Generate the demo script with the toy preset four ways and write the files listed in the module docstring.

    Args:
        out (`Path`): Output folder.
        num_clips (`int`, *optional*): Clips of the demo script to generate (default: all 81, 61 s).
        steps (`int`, *optional*): Denoising steps per clip (default: the preset's).

    Returns:
        `dict`: the written paths and, per variant, the overall toy-eval metrics.
    """
    import numpy as np

    from .pipelines.longvideo.pipeline_longvideo_extension import LongVideoExtensionPipeline
    from .presets import get_preset_path
    from .toy import is_reentry, save_script
    from .toy.ablate import ground_truth_start
    from .toy.compare import (
        DEFAULT_VARIANTS,
        GROUND_TRUTH,
        ground_truth_frames,
        run_variants,
        write_contact_sheet,
        write_side_by_side,
    )
    from .toy.evaluate import evaluate_toy_video, write_toy_eval_report
    from .toy.memory import MemoryBenchmarkConfig, score_memory_video, summarise_records, write_memory_contact_sheet
    from .toy.preset import load_preset_settings
    from .video_io import write_video

    out.mkdir(parents=True, exist_ok=True)
    path = get_preset_path("toy")
    settings = load_preset_settings(path)
    script = demo_toy_script(num_clips)
    save_script(script, out / "toy_script.json")
    F, k, fps = settings["num_frames"], settings["num_condition_frames"], settings["fps"]
    steps = steps or settings["num_inference_steps"]
    num_frames_total = F + (len(script) - 1) * (F - k)
    logger.info(
        f"Toy demo: {len(script)} clips of {F} frames ({k} shared) = {num_frames_total} frames "
        f"({num_frames_total / fps:.1f} s at {fps} fps), {steps} steps per clip, 3 variants + ground truth."
    )
    pipe = LongVideoExtensionPipeline.from_pretrained(path)
    start = time.time()
    truth = ground_truth_frames(script, F, k, size=settings["height"], fps=fps, seed=0)
    # clip 0 continues the ground truth's first k frames, so positions and colours are known at t = 0 and the
    # report measures how each variant keeps them (see `AblationConfig.start_from_ground_truth`)
    videos = run_variants(
        pipe,
        script,
        DEFAULT_VARIANTS,
        seed=0,
        num_frames=F,
        num_condition_frames=k,
        steps=steps,
        size=settings["height"],
        guidance_scale=settings["guidance_scale"],
        max_sequence_length=settings["max_sequence_length"],
        video=ground_truth_start(truth, k),
    )
    seconds = time.time() - start
    ours = videos[DEFAULT_VARIANTS[0].name]
    write_video(ours, out / "toy_long_video.mp4", fps=fps)
    sidecar = {
        "model": "toy",
        "preset": path,
        "script": "toy_script.json",
        "frames": int(ours.shape[0]),
        "seconds": ours.shape[0] / fps,
        "settings": {**settings, "num_inference_steps": steps},
        "variant": DEFAULT_VARIANTS[0].to_dict(),
        "generation_seconds_all_variants": round(seconds, 1),
    }
    (out / "toy_long_video.json").write_text(json.dumps(sidecar, indent=1) + "\n")
    panels = {GROUND_TRUTH: truth, **videos}
    comparison = write_side_by_side(panels, out / "comparison.mp4", fps=fps, upscale=4)
    sheet = write_contact_sheet(panels, out / "comparison.png", every_seconds=4.0, fps=fps, upscale=2)
    memory_config = MemoryBenchmarkConfig(num_frames=F, num_condition_frames=k, size=settings["height"], fps=fps)
    comebacks = None
    if any(flags[0] for flags in is_reentry(script)):
        comebacks = str(write_memory_contact_sheet([(script, truth, videos)], out / "comebacks.png", memory_config))

    report_dir = out / "report"
    summary: dict[str, Any] = {}
    lines = [
        "| variant | named presence | named colour | re-entry presence | re-entry colour | background colour "
        "error | sharpness ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, frames in videos.items():
        result = evaluate_toy_video(np.asarray(frames), script, num_frames=F, num_condition_frames=k, fps=fps)
        slug = name.lower().replace(" ", "-")
        write_toy_eval_report(result, report_dir / slug)
        o = result.overall
        m = summarise_records(score_memory_video(np.asarray(frames), script, F, k))
        summary[name] = {**o, "memory": m}
        lines.append(
            f"| {name} | {_fmt(m['named_presence'])} | {_fmt(m['named_color'])} | {_fmt(m['reentry_presence'])} | "
            f"{_fmt(m['reentry_color'])} | {_fmt(o.get('background_color_error'))} | "
            f"{_fmt(o.get('sharpness_ratio'))} |"
        )
    (report_dir / "summary.md").write_text("\n".join(lines) + "\n")
    logger.info("\n" + "\n".join(lines))
    logger.info(f"Wrote {out / 'toy_long_video.mp4'}, {comparison}, {sheet} and {report_dir}.")
    return {
        "video": str(out / "toy_long_video.mp4"),
        "comparison": comparison,
        "contact_sheet": sheet,
        "comebacks": comebacks,
        "report": str(report_dir),
        "metrics": summary,
        "seconds": seconds,
    }


def _fmt(value: Any) -> str:
    return "–" if value is None else f"{value:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m diffusers_longvid.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=Path("demo_output"), help="Output folder.")
    parser.add_argument("--num-clips", type=int, default=None, help="Clips to generate (default: the whole script).")
    parser.add_argument("--steps", type=int, default=None, help="Denoising steps per clip (default: the preset's).")
    args = parser.parse_args(argv)
    if args.num_clips is not None and args.num_clips < 1:
        parser.error(f"`--num-clips` must be >= 1, got {args.num_clips}.")
    if args.steps is not None and args.steps < 1:
        parser.error(f"`--steps` must be >= 1, got {args.steps}.")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)

    from .presets import get_preset_path

    try:
        get_preset_path("toy")
    except FileNotFoundError:
        pass
    else:
        run_toy_demo(args.out, num_clips=args.num_clips, steps=args.steps)
        return 0

    model = str(_untrained_pipeline_folder(args.out))
    logger.warning(
        "The trained toy preset is missing: generating with a tiny RANDOMLY INITIALISED model. The video is noise "
        "from an untrained model; the long-video machinery around it is real."
    )
    script = DEMO_SCRIPT[: args.num_clips] if args.num_clips else DEMO_SCRIPT
    prompts_file = args.out / "script.txt"
    prompts_file.write_text("\n".join(script) + "\n")
    video = args.out / "untrained_long_video.mp4"
    # the user's own path: the `longvid generate` command, in a process of its own (nothing imports the CLI)
    completed = subprocess.run(
        [
            sys.executable, "-m", "diffusers_longvid.cli", "generate",
            "--model", model,
            "--prompts-file", str(prompts_file),
            "--height", "32", "--width", "32",
            "--num-frames", "33", "--num-condition-frames", "5",
            "--num-inference-steps", "12", "--guidance-scale", "3.0",
            "--seed", "0", "--out", str(video),
            "--kv-cache-clips", "5",
        ],
        check=False,
    )  # fmt: skip
    return completed.returncode


if __name__ == "__main__":
    sys.exit(main())
