"""Shared helpers of the trainer tests, and the worker that `torchrun` starts in tests/training/test_train_ddp.py.

Helpers (the autouse fixture that resets accelerate's state is in tests/training/conftest.py): a tiny random pipeline folder, small real mp4 files with their manifests (one for short clips, one for long
videos), latent caches of them, and a hash of a model's weights.

As a script (`torchrun --nproc_per_node 2 tests/training/_train_worker.py STAGE OUT_DIR ARGS...`), each process runs one
training stage through the CLI on the CPU (gloo), then writes `OUT_DIR/rank<r>.json` with its process count and a hash
of its trained weights; rank 0 also writes `OUT_DIR/num_processes.txt`.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for _media

from _media import write_test_manifest, write_test_video  # noqa: E402


FPS = 8.0
SIZE = 16  # frames are 16x16: 2x2 latents, 1 token per latent frame with patch (1, 2, 2)
SHORT_FRAMES = 9  # 3 latent frames
LONG_FRAMES, OVERLAP, CLIPS_PER_VIDEO = 5, 1, 3  # stage 2: 2 latent frames per clip, stride 1
PROMPTS = ["a red square slides right", "a green square falls", "a red square slides left", "a blue square rises"]


def tiny_pipeline_folder(folder: Path) -> Path:
    """Save a tiny random Wan T2V pipeline (16 input channels, TRFlowScheduler) to `folder`."""
    from diffusers import WanPipeline

    from diffusers_longvid.testing import get_dummy_components

    WanPipeline(**get_dummy_components(attention_head_dim=32, ffn_dim=128)).save_pretrained(folder)
    return folder


def write_media(root: Path) -> dict[str, Path]:
    """Two small mp4 files and two manifests: `short.jsonl` (4 captioned clips of 1.25 s) and `long.jsonl` (two
    videos of 4 contiguous captioned clips, each giving `CLIPS_PER_VIDEO` pipeline clips)."""
    root.mkdir(parents=True, exist_ok=True)
    videos = [
        write_test_video(root / f"video{i}.mp4", num_frames=24, height=24, width=24, fps=FPS, seed=i) for i in range(2)
    ]
    short = write_test_manifest(
        root / "short.jsonl",
        [
            {
                "video": v.name,
                "clips": [
                    {"start": 0.0, "end": 1.25, "caption": PROMPTS[2 * i]},
                    {"start": 1.25, "end": 2.5, "caption": PROMPTS[2 * i + 1]},
                ],
            }
            for i, v in enumerate(videos)
        ],
    )
    # (T - F) // (F - k) + 1 = (16 - 5) // 4 + 1 = 3 clips from 2 s of contiguous captions at 8 fps
    long = write_test_manifest(
        root / "long.jsonl",
        [
            {
                "video": v.name,
                "clips": [{"start": 0.5 * j, "end": 0.5 * (j + 1), "caption": PROMPTS[(j + i) % 4]} for j in range(4)],
            }
            for i, v in enumerate(videos)
        ],
    )
    return {"short": short, "long": long}


def write_cache(pipeline: Path, manifest: Path, out: Path, kind: str) -> Path:
    """`longvid cache-latents` of `manifest` with the tiny pipeline's VAE and text encoder."""
    from diffusers_longvid.cli import main

    frames = (
        ["--num-frames", str(SHORT_FRAMES)]
        if kind == "short"
        else [
            "--num-frames",
            str(LONG_FRAMES),
            "--overlap-frames",
            str(OVERLAP),
            "--max-clips",
            str(CLIPS_PER_VIDEO),
            "--min-clips",
            str(CLIPS_PER_VIDEO),
        ]
    )
    code = main(
        [
            "cache-latents",
            "--manifest",
            str(manifest),
            "--model",
            str(pipeline),
            "--out",
            str(out),
            "--kind",
            kind,
            "--height",
            str(SIZE),
            "--width",
            str(SIZE),
            "--fps",
            str(FPS),
            "--max-sequence-length",
            "16",
            "--no-progress",
            *frames,
        ]
    )
    assert code == 0
    return out


def weights_hash(model: torch.nn.Module, trainable_only: bool = False) -> str:
    """SHA-256 of a model's parameters (names and exact bytes)."""
    digest = hashlib.sha256()
    for name, param in sorted(model.named_parameters()):
        if trainable_only and not param.requires_grad:
            continue
        digest.update(name.encode())
        digest.update(param.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def main(argv: list[str]) -> int:
    stage, out_dir, *train_args = argv
    torch.set_num_threads(1)
    from accelerate import PartialState

    from diffusers_longvid.cli import build_parser
    from diffusers_longvid.training.config import CausalLoRATrainConfig, ExtensionTrainConfig, config_from_args
    from diffusers_longvid.training.loop import run_training
    from diffusers_longvid.training.stage1 import ExtensionTrainingSpec
    from diffusers_longvid.training.stage2 import CausalLoRATrainingSpec

    # the CLI's own parser and config, so the flags are exactly those of `longvid STAGE`
    config_cls, spec_cls = {
        "train-extension": (ExtensionTrainConfig, ExtensionTrainingSpec),
        "train-causal-lora": (CausalLoRATrainConfig, CausalLoRATrainingSpec),
    }[stage]
    config = config_from_args(config_cls, build_parser().parse_args([stage, *train_args]))
    result = run_training(spec_cls(config), config)

    state = PartialState()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "rank": state.process_index,
        "num_processes": result.num_processes,
        "global_step": result.global_step,
        "hash": weights_hash(result.model),  # every parameter of this process's copy, trained or frozen
    }
    (out / f"rank{state.process_index}.json").write_text(json.dumps(record))
    if state.is_main_process:
        (out / "num_processes.txt").write_text(str(result.num_processes))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
