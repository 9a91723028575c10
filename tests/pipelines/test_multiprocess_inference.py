"""Many videos over processes with accelerate (`examples/multi_process_inference.py`), two real CPU processes.

`accelerate launch --cpu --num_processes 2` starts a single process on this machine (DESIGN §6), so the two gloo
processes are started with `torchrun`; the script itself only uses `accelerate.PartialState`.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "multi_process_inference.py"
JOBS = [
    {"name": "fox", "prompts": ["a red fox trots", "the fox stops"], "seed": 3},
    {"name": "cat", "prompts": ["a cat sleeps", "the cat wakes up"], "seed": 7},
]


def load_example():
    spec = importlib.util.spec_from_file_location("multi_process_inference", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Two torchrun jobs at once on 2 cores were seen to hang a gloo rank: `make test` runs the group on one worker.
@pytest.mark.xdist_group(name="torchrun")
def test_two_processes_split_the_videos_and_match_a_single_process(tmp_path):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("\n".join(json.dumps(job) for job in JOBS) + "\n")
    out = tmp_path / "videos"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(SCRIPT),
        "--tiny",
        "--jobs",
        str(jobs),
        "--out",
        str(out),
        "--save-frames",
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    # both ranks ran, each made its share, and the main process saw both
    records = {job["name"]: json.loads((out / f"{job['name']}.json").read_text()) for job in JOBS}
    assert {name: record["rank"] for name, record in records.items()} == {"fox": 0, "cat": 1}
    assert all(record["num_processes"] == 2 for record in records.values())
    summary = json.loads((out / "summary.json").read_text())
    assert summary == {"num_processes": 2, "videos": {"fox": 0, "cat": 1}}
    assert all((out / f"{job['name']}.mp4").stat().st_size > 0 for job in JOBS)

    # every video equals the one a single process makes for the same job (same seed)
    example = load_example()
    args = example.parse_args(["--tiny", "--jobs", str(jobs), "--out", str(tmp_path / "single")])
    pipe = example.build_pipeline(args)
    for job in example.read_jobs(args):
        expected = example.generate_video(pipe, job, args)
        assert expected.shape == (9 + 8, 32, 32, 3)
        np.testing.assert_allclose(np.load(out / f"{job['name']}.npy"), expected, rtol=0, atol=1e-6)
