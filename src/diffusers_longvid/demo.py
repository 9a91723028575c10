"""`make demo` / `python -m diffusers_longvid.demo`: a long video from a multi-clip script, on CPU, offline.

With the built-in toy preset (`diffusers_longvid.presets.get_preset_path("toy")`) present, the demo generates the
toy world's script with it. Until that preset is trained and shipped, the demo runs the same user path — a pipeline
folder loaded with `from_pretrained` and `longvid generate` — on a tiny *randomly initialised* model: the frames are
noise from an untrained model, but the clip loop, RoPE offsets, KV cache, prompt-similarity selection, T-RFlow,
streaming mp4 writer and JSON sidecar all run for real.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

logger = logging.getLogger("diffusers_longvid.demo")

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m diffusers_longvid.demo", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("demo_output"), help="Output folder.")
    parser.add_argument("--num-clips", type=int, default=None, help="Clips to generate (default: the whole script).")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)

    from . import cli
    from .presets import get_preset_path

    try:
        model = get_preset_path("toy")
        trained = True
    except FileNotFoundError:
        model = str(_untrained_pipeline_folder(args.out))
        trained = False
        logger.warning(
            "The trained toy preset is not shipped yet: generating with a tiny RANDOMLY INITIALISED model. The video "
            "is noise from an untrained model; the long-video machinery around it is real."
        )
    script = DEMO_SCRIPT[: args.num_clips] if args.num_clips else DEMO_SCRIPT
    prompts_file = args.out / "script.txt"
    prompts_file.write_text("\n".join(script) + "\n")
    video = args.out / ("toy_long_video.mp4" if trained else "untrained_long_video.mp4")
    size = "64" if trained else "32"
    code = cli.main(
        [
            "generate",
            "--model", model,
            "--prompts-file", str(prompts_file),
            "--height", size, "--width", size,
            "--num-frames", "33", "--num-condition-frames", "5",
            "--num-inference-steps", "12", "--guidance-scale", "3.0",
            "--seed", "0", "--out", str(video),
            "--kv-cache-clips", "5",
        ]
    )  # fmt: skip
    return code


if __name__ == "__main__":
    sys.exit(main())
