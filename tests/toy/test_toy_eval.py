"""`evaluate_toy_video` and `longvid toy-eval`: exact scores on the ground truth and on known corruptions of it."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from diffusers_longvid.cli import main
from diffusers_longvid.toy import COLORS, is_reentry, render_script_clips, save_script
from diffusers_longvid.toy.evaluate import METRICS, PSNR_CAP, TOY_EVAL_FILES, evaluate_toy_video


F, K = 9, 1  # 3 clips -> 9 + 2 * 8 = 25 frames

# navy background, a red circle that leaves the frame and comes back (clip 2: a re-entry), a blue square that stays
SCRIPT = [
    {
        "background": "navy",
        "texture": "stripes",
        "objects": [
            {"shape": "circle", "color": "red", "motion": "moves_right", "position": [0.3, 0.55], "size": 0.15},
            {"shape": "square", "color": "blue", "motion": "stays", "position": [0.7, 0.25], "size": 0.12},
        ],
    },
    {
        "background": "navy",
        "texture": "stripes",
        "objects": [
            {"shape": "circle", "color": "red", "motion": "exits_right"},
            {"shape": "square", "color": "blue", "motion": "stays"},
        ],
    },
    {
        "background": "navy",
        "texture": "stripes",
        "objects": [
            {"shape": "circle", "color": "red", "motion": "enters_left"},
            {"shape": "square", "color": "blue", "motion": "moves_down"},
        ],
    },
]


@pytest.fixture(scope="module")
def gt():
    return render_script_clips(SCRIPT, F, K, return_masks=True)


def evaluate(frames, **kwargs):
    return evaluate_toy_video(frames, SCRIPT, num_frames=F, num_condition_frames=K, window_seconds=0.5, **kwargs)


def box_blur(frames: np.ndarray) -> np.ndarray:
    f = frames.astype(np.float32)
    p = np.pad(f, [(0, 0), (1, 1), (1, 1), (0, 0)], mode="edge")
    h, w = f.shape[1:3]
    return sum(p[:, i : i + h, j : j + w] for i in range(3) for j in range(3)) / 9.0


def test_script_has_a_reentry(gt):
    assert is_reentry(SCRIPT)[2] == [True, False]
    assert gt.num_frames == 25


def test_ground_truth_scores_perfect(gt):
    result = evaluate(gt.frames)
    o = result.overall
    assert set(o) == set(METRICS)
    for name in (
        "background_color_error",
        "background_pixel_error",
        "object_color_error",
        "object_color_drift",
        "reentry_color_error",
        "hf_noise",
    ):
        assert o[name] == 0.0, name
    assert o["psnr"] == PSNR_CAP
    assert o["sharpness_ratio"] == 1.0 and o["reentry_accuracy"] == 1.0
    assert o["af"] == o["af_gt"] > 0 and o["frame_difference"] == o["frame_difference_gt"] > 0
    assert len(result.windows) == math.ceil(25 / 8)  # 0.5 s windows at 16 fps
    for window in result.windows:
        assert window["psnr"] == PSNR_CAP and window["sharpness_ratio"] == 1.0 and window["object_color_error"] == 0
    [event] = result.reentries
    assert (event["clip"], event["color"], event["nearest_color"], event["correct"]) == (2, "red", "red", True)
    assert event["frames_measured"] > 0


def test_colour_shift_is_measured_exactly(gt):
    shift = np.asarray([10, -10, 10])  # |shift| = sqrt(300); no channel of this script clips
    shifted = (gt.frames.astype(int) + shift).astype(np.uint8)
    assert (gt.frames.astype(int) + shift).min() >= 0 and (gt.frames.astype(int) + shift).max() <= 255
    o = evaluate(shifted).overall
    for name in ("background_color_error", "background_pixel_error", "object_color_error", "reentry_color_error"):
        assert o[name] == pytest.approx(math.sqrt(300), abs=1e-3), name
    assert o["object_color_drift"] == 0.0  # consistently wrong is still consistent
    assert o["reentry_accuracy"] == 1.0  # 17 RGB units off is still nearest to red
    assert o["psnr"] == pytest.approx(10 * math.log10(255**2 / 100), abs=1e-3)
    assert o["sharpness_ratio"] == pytest.approx(1.0, abs=1e-3) and o["hf_noise"] == 0.0


def test_blur_lowers_and_unsharp_mask_raises_the_sharpness_ratio(gt):
    f = gt.frames.astype(np.float32)
    blurred = np.rint(box_blur(gt.frames)).astype(np.uint8)
    sharpened = np.clip(np.rint(f + 1.5 * (f - box_blur(gt.frames))), 0, 255).astype(np.uint8)
    b, s = evaluate(blurred).overall, evaluate(sharpened).overall
    assert b["sharpness_ratio"] < 0.7 and b["af"] < b["af_gt"]
    assert s["sharpness_ratio"] > 1.5 and s["af"] > s["af_gt"]
    # 3x3 filters leave regions flat over 5x5 flat, so neither is "noise"
    assert b["hf_noise"] == 0.0 and s["hf_noise"] == 0.0
    # object colours are read two pixels inside the edge: a slight blur does not make them wrong
    assert b["object_color_error"] < 1.0 and b["reentry_accuracy"] == 1.0


def test_noise_raises_hf_noise_by_the_expected_amount(gt):
    sigma = 6.0
    noise = np.random.default_rng(0).normal(0, sigma, gt.frames.shape)
    noisy = np.clip(np.rint(gt.frames + noise), 0, 255).astype(np.uint8)
    o = evaluate(noisy).overall
    # pixel minus its 3x3 mean keeps 8/9 of iid noise's variance
    assert o["hf_noise"] == pytest.approx(sigma * math.sqrt(8 / 9), rel=0.1)
    assert o["background_color_error"] < 1.0 < o["background_pixel_error"]  # the mean colour is still right
    assert o["sharpness_ratio"] > 1.0 and o["frame_difference"] > o["frame_difference_gt"]


def test_colour_change_after_reentry_fails_the_reentry_metric(gt):
    frames = gt.frames.copy()
    after = np.nonzero(gt.frame_clip >= 2)[0]
    green = np.asarray(COLORS["green"], dtype=np.uint8)
    for t in after:
        frames[t][gt.masks[t, 0]] = green  # the red circle comes back green
    result = evaluate(frames)
    [event] = result.reentries
    assert event["correct"] is False and event["nearest_color"] == "green"
    red_to_green = float(np.linalg.norm(np.subtract(COLORS["red"], COLORS["green"])))
    assert event["error"] == pytest.approx(red_to_green, abs=0.01)
    assert result.overall["reentry_accuracy"] == 0.0
    assert result.overall["reentry_color_error"] == pytest.approx(red_to_green, abs=0.01)
    assert result.overall["object_color_drift"] > 0
    circle, square = result.objects
    assert circle["first_rgb"] == [220.0, 40.0, 40.0] and square["color_error"] == 0.0
    # the windows before the re-entry are untouched
    first = result.windows[0]
    assert first["object_color_error"] == 0.0 and first["reentry_color_error"] is None


def test_bad_input_names_the_argument(gt):
    with pytest.raises(ValueError, match=r"`generated_frames` has 24 frames .* make 25"):
        evaluate(gt.frames[:-1])
    with pytest.raises(ValueError, match="`generated_frames` must have square frames"):
        evaluate(gt.frames[:, :, :32])
    with pytest.raises(ValueError, match="`window_seconds`"):
        evaluate_toy_video(gt.frames, SCRIPT, num_frames=F, num_condition_frames=K, window_seconds=0)
    with pytest.raises(ValueError, match="`reference_frames`"):
        evaluate(gt.frames, reference_frames=gt.frames[:5])


def test_cli_writes_three_files_and_reads_the_sidecar(gt, tmp_path, capsys):
    import imageio  # a core dependency: it must import, not skip

    script = tmp_path / "script.json"
    save_script(SCRIPT, script)
    common = ["toy-eval", "--script", str(script), "--num-frames", str(F), "--num-condition-frames", str(K)]
    assert main([*common, "--out", str(tmp_path / "gt")]) == 0
    files = {key: tmp_path / "gt" / name for key, name in TOY_EVAL_FILES.items()}
    assert all(path.is_file() and path.stat().st_size > 0 for path in files.values())
    report = json.loads(files["json"].read_text())
    assert report["overall"]["psnr"] == PSNR_CAP and report["overall"]["object_color_error"] == 0.0
    assert "| Re-entry colour accuracy (`reentry_accuracy`) | 1 |" in files["markdown"].read_text()
    assert files["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # a "generated" mp4 with a generate-style sidecar: the clip arithmetic comes from the sidecar
    video = tmp_path / "generated.mp4"
    imageio.mimwrite(video, list(gt.frames), fps=16, codec="libx264", quality=9, macro_block_size=1)
    sidecar = {"prompts": gt.prompts, "settings": {"num_frames": F, "num_condition_frames": K, "fps": 16.0}}
    video.with_suffix(".json").write_text(json.dumps(sidecar))
    assert main(["toy-eval", "--script", str(script), "--video", str(video), "--out", str(tmp_path / "mp4")]) == 0
    assert f"F={F}, k={K}" in capsys.readouterr().out
    mp4 = json.loads((tmp_path / "mp4" / TOY_EVAL_FILES["json"]).read_text())["overall"]
    assert 30 < mp4["psnr"] < PSNR_CAP and mp4["reentry_accuracy"] == 1.0 and mp4["object_color_error"] < 10
    # without the sidecar the defaults (F=33, k=5) do not fit the 25 frames: a clear error, exit code 2
    video.with_suffix(".json").unlink()
    assert main(["toy-eval", "--script", str(script), "--video", str(video), "--out", str(tmp_path / "bad")]) == 2
    assert "`generated_frames` has 25 frames" in capsys.readouterr().err
