"""Both stages in two real processes: `torchrun --nproc_per_node 2` with `--cpu` (DDP over gloo).

(`accelerate launch --cpu --num_processes 2` falls back to one process on this machine; torchrun starts two, and
accelerate's `Accelerator(cpu=True)` joins them, see DESIGN §6.) Each process reports its process count and a hash of
its trained weights: the test asserts 2 processes and identical weights, and that the saved final weights are those
weights. Stage 2 starts from the stage-1 output folder, as in real use.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _train_worker import (
    CLIPS_PER_VIDEO,
    OVERLAP,
    tiny_pipeline_folder,
    weights_hash,
    write_cache,
    write_media,
)


WORKER = Path(__file__).resolve().parent / "_train_worker.py"


def torchrun(stage, out, *args):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(WORKER),
        stage,
        str(out),
        *args,
    ]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-6000:]
    records = [json.loads((out / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    return records


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    pipeline = tiny_pipeline_folder(root / "pipeline")
    media = write_media(root / "media")
    return {
        "root": root,
        "pipeline": pipeline,
        "short": write_cache(pipeline, media["short"], root / "short", "short"),
        "long": write_cache(pipeline, media["long"], root / "long", "long"),
    }


# Two torchrun jobs at once on 2 cores were seen to hang a gloo rank: `make test` runs the group on one worker.
@pytest.mark.xdist_group(name="torchrun")
def test_two_processes_train_both_stages_to_identical_weights(data):
    from diffusers import WanTransformer3DModel

    root = data["root"]
    common = [
        "--max-train-steps",
        "3",
        "--train-batch-size",
        "1",
        "--learning-rate",
        "1e-3",
        "--report-to",
        "none",
        "--checkpointing-steps",
        "2",
        "--cpu",
    ]

    # stage 1: the T2V model becomes the extension model
    stage1 = root / "stage1"
    records = torchrun(
        "train-extension",
        root / "reports1",
        "--output-dir",
        str(stage1),
        "--pretrained-model",
        str(data["pipeline"]),
        "--latent-cache",
        str(data["short"]),
        *common,
    )
    assert (root / "reports1" / "num_processes.txt").read_text() == "2"
    assert [r["num_processes"] for r in records] == [2, 2] and [r["rank"] for r in records] == [0, 1]
    assert [r["global_step"] for r in records] == [3, 3]
    assert records[0]["hash"] == records[1]["hash"]
    saved = WanTransformer3DModel.from_pretrained(stage1 / "final", subfolder="transformer")
    assert weights_hash(saved) == records[0]["hash"]  # what was saved is what both processes hold
    base = WanTransformer3DModel.from_pretrained(data["pipeline"], subfolder="transformer")
    assert weights_hash(base) != records[0]["hash"]
    assert (stage1 / "checkpoints" / "checkpoint-2" / "trainer_state.json").is_file()
    assert (
        json.loads((stage1 / "checkpoints" / "checkpoint-2" / "trainer_state.json").read_text())["num_processes"] == 2
    )

    # stage 2: the K/V LoRA, on the stage-1 output folder
    stage2 = root / "stage2"
    records = torchrun(
        "train-causal-lora",
        root / "reports2",
        "--output-dir",
        str(stage2),
        "--pretrained-model",
        str(stage1 / "final"),
        "--latent-cache",
        str(data["long"]),
        "--num-condition-frames",
        str(OVERLAP),
        "--clips-per-video",
        str(CLIPS_PER_VIDEO),
        "--kv-cache-clips",
        "1",
        "--clip-selector",
        "recent",
        "--lora-rank",
        "4",
        *common,
    )
    assert (root / "reports2" / "num_processes.txt").read_text() == "2"
    assert [r["num_processes"] for r in records] == [2, 2]
    assert records[0]["hash"] == records[1]["hash"]
    assert (stage2 / "final" / "pytorch_lora_weights.safetensors").is_file()
