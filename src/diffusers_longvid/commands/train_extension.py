"""`longvid train-extension`: stage 1, the 36-channel video extension model."""

from __future__ import annotations

import argparse
import sys

DESCRIPTION = """\
Stage 1: fine-tune a Wan2.1 T2V transformer (all parameters) into the 36-channel video extension model, on short
captioned clips with a conditioning task drawn per example (first-k / last-k / first+last frames, or none).

Run it directly for one process, or under `accelerate launch` / `torchrun` for several (DDP; see
examples/training/ for FSDP and DeepSpeed configs). Every option can also come from --config FILE.yaml|json;
explicit flags win. The final weights go to <output-dir>/final: a complete LongVideoExtensionPipeline folder
(condition_fill="zeros") when --pretrained-model is given. See docs/training.md.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..training.config import ExtensionTrainConfig, add_config_arguments

    parser = subparsers.add_parser(
        "train-extension",
        help="Stage 1: fine-tune a Wan T2V transformer into the 36-channel video extension model.",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_arguments(parser, ExtensionTrainConfig)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..training.config import ExtensionTrainConfig, config_from_args
    from ..training.loop import run_training
    from ..training.manifest import ManifestError
    from ..training.stage1 import ExtensionTrainingSpec

    try:
        config = config_from_args(ExtensionTrainConfig, args)
        spec = ExtensionTrainingSpec(config)
    except (ValueError, TypeError, FileNotFoundError) as error:
        print(f"longvid train-extension: error: {error}", file=sys.stderr)
        return 2
    try:
        result = run_training(spec, config)
    except (ManifestError, FileNotFoundError) as error:  # bad data: raised before any model is loaded
        print(f"longvid train-extension: error: {error}", file=sys.stderr)
        return 2
    if result.final_dir is not None:
        print(f"stage 1 finished at step {result.global_step} on {result.num_processes} process(es); "
              f"weights in {result.final_dir}")
    return 0
