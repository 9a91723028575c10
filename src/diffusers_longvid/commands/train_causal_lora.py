"""`longvid train-causal-lora`: stage 2, LoRA on K/V of the cached blocks with cross-clip history."""

from __future__ import annotations

import argparse

from ._training import register_stage


DESCRIPTION = """\
Stage 2: train a LoRA on the self-attention K/V projections of the cached blocks of the stage-1 extension model, on
long captioned videos cut into consecutive clips: the last clip of each example attends the K/V of the history clips
the selector picks (prompt similarity, as at inference), recorded from their clean latents. Every other weight is
left unchanged.

Run it directly for one process, or under `accelerate launch` / `torchrun` for several (DDP; see
examples/training/ for FSDP and DeepSpeed configs). Every option can also come from --config FILE.yaml|json;
explicit flags win. The LoRA goes to <output-dir>/final/pytorch_lora_weights.safetensors (diffusers format, for
LongVideoExtensionPipeline.load_lora_weights). See docs/training.md.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    register_stage(
        subparsers,
        "train-causal-lora",
        help="Stage 2: LoRA on self-attention K/V of the cached blocks, trained with cross-clip history K/V.",
        description=DESCRIPTION,
        config_path="..training.config:CausalLoRATrainConfig",
        spec_path="..training.stage2:CausalLoRATrainingSpec",
    )
