"""Fault test: `longvid generate --state-dir` killed with SIGKILL at random points, each kill followed by
`--resume`, ends with an mp4 byte-identical to an uninterrupted run's.

Each child process pays torch's and diffusers' import (seconds), so the test runs only when asked: `make fuzz`
(`LONGVID_FUZZ_KILLS=20`), or `LONGVID_SLOW_TESTS=1` (one kill). Kills land in the model loading,
in a clip's denoising, in the writing of a segment or of the state, and between clips: half of them are timed from
the process start, half from the moment it reports a finished clip.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from diffusers_longvid.cli import main


NUM_KILLS = int(os.environ.get("LONGVID_FUZZ_KILLS", "1"))
pytestmark = pytest.mark.skipif(
    "LONGVID_FUZZ_KILLS" not in os.environ and os.environ.get("LONGVID_SLOW_TESTS") != "1",
    reason="kill -9 fault test: `make fuzz` or LONGVID_SLOW_TESTS=1",
)
PROMPTS = ["a red ball rolls", "a cat sleeps", "the red ball bounces", "the cat wakes up", "the ball stops"]
TINY = ["--height", "16", "--width", "16", "--num-frames", "9", "--num-inference-steps", "3", "--fps", "8"]
TINY += ["--max-sequence-length", "16", "--num-condition-frames", "1", "--device", "cpu", "--seed", "5"]


@pytest.fixture(scope="module")
def kv_model(tmp_path_factory):
    from diffusers_longvid import LongVideoExtensionPipeline
    from diffusers_longvid.selection import RecentSelector
    from diffusers_longvid.testing import get_dummy_components

    folder = tmp_path_factory.mktemp("kill_model")
    pipe = LongVideoExtensionPipeline(
        **get_dummy_components(in_channels=36), kv_cache_clips=2, max_cached_clips=2, clip_selector=RecentSelector()
    )
    pipe.save_pretrained(folder)
    return str(folder)


def _env() -> dict[str, str]:
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONUNBUFFERED="1",
    )
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _command(args: list[str]) -> list[str]:
    # one torch thread in the child, as in this process (conftest), so that both runs compute the same bits
    code = "import sys, torch; torch.set_num_threads(1); from diffusers_longvid.cli import main; sys.exit(main())"
    return [sys.executable, "-c", code, *args]


def _run_and_kill(args: list[str], rng: random.Random, log: Path) -> bool:
    """Start `longvid ARGS`, SIGKILL it at a random point; returns whether it finished before the kill."""
    with open(log, "ab") as out:
        process = subprocess.Popen(_command(args), stdout=subprocess.PIPE, stderr=out, env=_env())
    from_clip = rng.random() < 0.5
    deadline = time.monotonic() + (rng.uniform(0.5, 8.0) if not from_clip else 600)
    delay_after_clip = rng.uniform(0.0, 0.6)
    os.set_blocking(process.stdout.fileno(), False)
    buffer = b""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return process.returncode == 0
        chunk = process.stdout.read() or b""
        buffer += chunk
        if from_clip and b"clip " in buffer:
            deadline = min(deadline, time.monotonic() + delay_after_clip)
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return False


def test_kill_9_and_resume_gives_the_same_mp4(kv_model, tmp_path):
    script = tmp_path / "script.txt"
    script.write_text("\n".join(PROMPTS) + "\n")
    base = ["generate", "--model", kv_model, "--prompts-file", str(script)] + TINY
    straight = tmp_path / "straight"
    assert main(base + ["--out", str(straight / "video.mp4"), "--state-dir", str(straight / "state")]) == 0
    expected = (straight / "video.mp4").read_bytes()

    rng = random.Random(int(os.environ.get("LONGVID_FUZZ_SEED", "0")))
    log = tmp_path / "children.log"
    out, state = tmp_path / "run" / "video.mp4", tmp_path / "run" / "state"
    kills = finished = 0
    while kills < NUM_KILLS:
        resuming = (state / "state.json").is_file()
        args = (
            ["generate", "--resume", str(state)] if resuming else base + ["--out", str(out), "--state-dir", str(state)]
        )
        if _run_and_kill(args, rng, log):
            finished += 1
            # a job finished before its kill: start over, so that every kill hits a running job
            (tmp_path / "run").rename(tmp_path / f"finished_{finished}")
            assert (tmp_path / f"finished_{finished}" / "video.mp4").read_bytes() == expected
        else:
            kills += 1
    resuming = (state / "state.json").is_file()
    args = ["generate", "--resume", str(state)] if resuming else base + ["--out", str(out), "--state-dir", str(state)]
    result = subprocess.run(_command(args), capture_output=True, env=_env())
    assert result.returncode == 0, result.stderr.decode()[-2000:] + log.read_text(errors="replace")[-2000:]
    assert out.read_bytes() == expected
    assert not out.with_name("video.partial.mp4").exists()
