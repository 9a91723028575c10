"""`longvid train-extension`: stage 1, the 36-channel video extension model."""

from __future__ import annotations

import argparse

from ._training import register_stage


DESCRIPTION = """\
Stage 1: fine-tune a Wan2.1 T2V transformer (all parameters) into the 36-channel video extension model, on short
captioned clips with a conditioning task drawn per example (first-k / last-k / first+last frames, or none).

Run it directly for one process, or under `accelerate launch` / `torchrun` for several (DDP; see
examples/training/ for FSDP and DeepSpeed configs). Every option can also come from --config FILE.yaml|json;
explicit flags win. The final weights go to <output-dir>/final: a complete LongVideoExtensionPipeline folder
(condition_fill="zeros") when --pretrained-model is given. See docs/training.md.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    register_stage(
        subparsers,
        "train-extension",
        help="Stage 1: fine-tune a Wan T2V transformer into the 36-channel video extension model.",
        description=DESCRIPTION,
        config_path="..training.config:ExtensionTrainConfig",
        spec_path="..training.stage1:ExtensionTrainingSpec",
    )
