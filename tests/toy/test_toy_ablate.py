"""`diffusers_longvid.toy.ablate` and `longvid toy-ablate` on a tiny random pipeline."""

import json

import numpy as np
import pytest

from diffusers_longvid.cli import main
from diffusers_longvid.pipelines.longvideo.pipeline_longvideo_extension import LongVideoExtensionPipeline
from diffusers_longvid.schedulers.scheduling_trflow import TRFlowScheduler
from diffusers_longvid.selection import RecentSelector
from diffusers_longvid.testing import get_dummy_components
from diffusers_longvid.toy import random_script, render_script_clips
from diffusers_longvid.toy.ablate import (
    AblationConfig,
    AblationSample,
    ground_truth_evaluate,
    mean_std,
    run_ablation,
    table_variants,
)


CALLS = []  # (variant-independent) every value `tiny_metric` returned, in call order


def tiny_metric(frames, sample):
    """Mean brightness and error vs the ground truth, overall and per half of the video."""
    assert frames.shape == sample.ground_truth.frames.shape and len(sample.script) == 2
    half, fps = len(frames) // 2, sample.fps
    diff = np.abs(frames.astype(float) - sample.ground_truth.frames.astype(float))
    scores = {"brightness": float(frames.mean()), "mae": float(diff.mean())}
    CALLS.append(scores)
    windows = [
        {"start_seconds": s / fps, "end_seconds": e / fps, "scores": {"mae": float(diff[s:e].mean())}}
        for s, e in ((0, half), (half, len(frames)))
    ]
    return {"scores": scores, "windows": windows}


def _pipe():
    scheduler = TRFlowScheduler(shift=1.0, tau_low=0.0, tau_high=1.0)  # 4 steps: sigma .5 lies in [0.3, 0.7]
    return LongVideoExtensionPipeline(
        **get_dummy_components(in_channels=36, scheduler=scheduler), clip_selector=RecentSelector()
    )


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_toy_model")
    _pipe().save_pretrained(folder)
    return folder


TINY = ["--num-clips", "2", "--num-frames", "9", "--num-condition-frames", "1", "--num-inference-steps", "4"]
TINY += ["--size", "16", "--max-sequence-length", "16", "--window-seconds", "0.5"]


def test_cli_writes_report_with_right_statistics_and_resumes(model_dir, tmp_path):
    out = tmp_path / "ablation"
    argv = ["toy-ablate", "--model", str(model_dir), "--out", str(out), "--seeds", "0", "1", "--table", "kv"]
    argv += TINY + ["--evaluate-fn", "test_toy_ablate:tiny_metric"]
    CALLS.clear()
    assert main(argv) == 0
    assert len(CALLS) == 3 * 2  # 3 variants x 2 seeds
    for name in ("ablation.json", "ablation.md", "ablation_kv.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    report = json.loads((out / "ablation.json").read_text())
    assert report["command"].startswith(f"longvid toy-ablate --model {model_dir} --out {out} --seeds 0 1 --table kv")
    rows = report["tables"]["kv"]["variants"]
    assert [r["variant"]["name"] for r in rows] == ["ours", "no-KV", "no-KV-no-T-RFlow"]
    # plan order: variant outer, seed inner -> CALLS[2 * v + s]
    for v, row in enumerate(rows):
        for metric in ("brightness", "mae"):
            values = [CALLS[2 * v + s][metric] for s in range(2)]
            assert row["scores"][metric]["values"] == values
            assert row["scores"][metric]["mean"] == pytest.approx(np.mean(values))
            assert row["scores"][metric]["std"] == pytest.approx(np.std(values, ddof=1))
        assert len(row["windows"]) == 2
    # different seeds are different scripts and noise: the spread is not zero
    assert rows[0]["scores"]["brightness"]["std"] > 0
    markdown = (out / "ablation.md").read_text()
    assert report["command"] in markdown
    m = rows[1]["scores"]["mae"]
    assert f"{m['mean']:.4g} ± {m['std']:.2g}" in markdown

    # a rerun measures nothing and writes the same tables
    CALLS.clear()
    assert main(argv) == 0
    assert CALLS == []
    again = json.loads((out / "ablation.json").read_text())
    assert again["reused_runs"] == 6 and again["tables"] == report["tables"]
    # one more seed: only its three runs are new
    assert main(argv[:8] + ["2"] + argv[8:]) == 0
    assert len(CALLS) == 3


def test_tables_share_identical_runs_and_trflow_variants(tmp_path):
    pipe = _pipe()
    pipe.set_progress_bar_config(disable=True)
    config = AblationConfig(
        tables=["kv", "trflow"], seeds=[0], num_clips=2, num_frames=9, num_condition_frames=1, steps=4, size=16,
        calibrated_tau_low=0.2, max_sequence_length=16, window_seconds=0.5,
    )  # fmt: skip
    CALLS.clear()
    report = run_ablation(pipe, tmp_path, config=config, evaluate_fn=tiny_metric, show_progress=False)
    names = [r["variant"]["name"] for r in report["tables"]["trflow"]["variants"]]
    assert names == ["[0, 1] (Euler)", "[0, 0.7]", "[0.3, 0.7]", "[0.200, 0.7] (calibrated)"]
    # "[0.3, 0.7]" with the KV cache is "ours" of the kv table: generated once
    assert len(CALLS) == 3 + 4 - 1 and report["reused_runs"] == 1
    kv, tr = report["tables"]["kv"]["variants"][0], report["tables"]["trflow"]["variants"][2]
    assert kv["scores"] == tr["scores"]
    assert (pipe.scheduler.config.tau_low, pipe.scheduler.config.tau_high) == (0.0, 1.0)
    assert (tmp_path / "ablation_trflow.png").is_file()


def test_ground_truth_evaluate_and_statistics():
    script = random_script(2, seed=0)
    truth = render_script_clips(script, 9, 1, size=16)
    sample = AblationSample(script, truth, num_frames=9, num_condition_frames=1, fps=16, seed=0, window_seconds=0.5)
    perfect = ground_truth_evaluate(truth.frames, sample)
    assert perfect["scores"] == {"gt_mae": 0.0, "gt_psnr": float("inf")}
    spans = [(w["start_seconds"], w["end_seconds"]) for w in perfect["windows"]]
    assert spans == [(0.0, 0.5), (0.5, 1.0), (1.0, 17 / 16)]
    shifted = ground_truth_evaluate(np.clip(truth.frames.astype(int) + 10, 0, 255).astype(np.uint8), sample)
    assert 0 < shifted["scores"]["gt_mae"] <= 10
    assert mean_std([1.0, 2.0, 4.0]) == pytest.approx((7 / 3, np.std([1, 2, 4], ddof=1)))
    assert mean_std([3.0]) == (3.0, 0.0)
    assert mean_std([None, float("inf"), 1.0]) == (1.0, 0.0)


def test_bad_config():
    with pytest.raises(ValueError, match="`tables`"):
        AblationConfig(tables=["nope"])
    with pytest.raises(ValueError, match="`seeds`"):
        AblationConfig(seeds=[1, 1])
    with pytest.raises(ValueError, match="`calibrated_tau_low`"):
        AblationConfig(calibrated_tau_low=0.9)
    with pytest.raises(ValueError, match="`table`"):
        table_variants("nope")
    assert [v.kv_cache_clips for v in table_variants("long", kv_cache_clips=3)] == [3, 0, 0]


def test_toy_evaluator_adapter():
    from diffusers_longvid.toy.ablate import default_evaluate_fn, toy_evaluate

    assert default_evaluate_fn() is toy_evaluate
    script = random_script(3, seed=1)
    truth = render_script_clips(script, 9, 1, size=16, seed=1)
    sample = AblationSample(script, truth, num_frames=9, num_condition_frames=1, fps=16, seed=1, window_seconds=0.5)
    result = toy_evaluate(truth.frames, sample)
    assert result["scores"]["background_color_error"] == 0
    assert [w["start_seconds"] for w in result["windows"]] == [0.0, 0.5, 1.0, 1.5]
    assert all("start_s" not in w["scores"] and "psnr" in w["scores"] for w in result["windows"])
