"""`longvid train-causal-lora`: stage 2, LoRA on K/V of the cached blocks with cross-clip history."""

from __future__ import annotations

import argparse
import sys

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
    from ..training.config import CausalLoRATrainConfig, add_config_arguments

    parser = subparsers.add_parser(
        "train-causal-lora",
        help="Stage 2: LoRA on self-attention K/V of the cached blocks, trained with cross-clip history K/V.",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_arguments(parser, CausalLoRATrainConfig)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..training.config import CausalLoRATrainConfig, config_from_args
    from ..training.loop import run_training
    from ..training.manifest import ManifestError
    from ..training.stage2 import CausalLoRATrainingSpec

    try:
        config = config_from_args(CausalLoRATrainConfig, args)
        spec = CausalLoRATrainingSpec(config)
    except (ValueError, TypeError, FileNotFoundError) as error:
        print(f"longvid train-causal-lora: error: {error}", file=sys.stderr)
        return 2
    try:
        result = run_training(spec, config)
    except (ManifestError, FileNotFoundError) as error:  # bad data: raised before any model is loaded
        print(f"longvid train-causal-lora: error: {error}", file=sys.stderr)
        return 2
    if result.final_dir is not None:
        print(f"stage 2 finished at step {result.global_step} on {result.num_processes} process(es); "
              f"LoRA in {result.final_dir}")
    return 0
