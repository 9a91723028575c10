"""VBench-style evaluation: formulas, the offline backend on videos whose answer is known, windows, reports, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image


cv2 = pytest.importorskip("cv2")

from diffusers_longvid.evaluation import evaluate_video, write_eval_report  # noqa: E402
from diffusers_longvid.evaluation.evaluate import EvalResult, EvalSuiteResult  # noqa: E402
from diffusers_longvid.evaluation.metrics import (  # noqa: E402
    DIMENSIONS,
    clip_bounds,
    dynamic_degree_params,
    fit_slope,
    vbench_consistency,
)
from diffusers_longvid.evaluation.motion import interpolate_midframe  # noqa: E402
from diffusers_longvid.evaluation.offline import (  # noqa: E402
    colour_layout_histograms,
    imaging_quality_proxy,
    ssim_features,
    ssim_similarity,
)


SIZE = 48


def texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth random colour texture (bicubic upsampling of 4x4-pixel noise)."""
    base = np.random.default_rng(seed).random((height // 4 + 1, width // 4 + 1, 3)).astype(np.float32)
    return (np.clip(cv2.resize(base, (width, height), interpolation=cv2.INTER_CUBIC), 0, 1) * 255).astype(np.uint8)


def static_video(frames: int = 16) -> np.ndarray:
    return np.repeat(texture(SIZE, SIZE)[None], frames, axis=0)


def panning_video(frames: int = 24, speed: int = 1) -> np.ndarray:
    """A slow camera pan over a wide texture: consistent, smooth, below the dynamic threshold at 1 px/frame."""
    wide = texture(SIZE, SIZE + frames * speed, seed=1)
    return np.stack([wide[:, i * speed : i * speed + SIZE] for i in range(frames)])


def moving_square(frames: int = 24, speed: int = 3) -> np.ndarray:
    video = np.full((frames, SIZE, SIZE, 3), 40, np.uint8)
    for i in range(frames):
        x = 2 + (i * speed) % (SIZE - 14)
        video[i, 16:28, x : x + 12] = (220, 60, 30)
    return video


def offline(video, **kwargs) -> EvalResult:
    kwargs.setdefault("fps", 8)
    kwargs.setdefault("show_progress", False)
    return evaluate_video(video, backend="offline", **kwargs)


# ----------------------------------------------------------------------------------------------------- formulas
def test_vbench_consistency_formula():
    # mean of (max(0, prev) + max(0, first)) / 2; negative similarities count as 0
    assert vbench_consistency(np.array([1.0, 0.5]), np.array([1.0, -0.2])) == pytest.approx((1.0 + 0.25) / 2)
    with pytest.raises(ValueError):
        vbench_consistency(np.array([]), np.array([]))


def test_clip_bounds_borrow_like_vbench_long():
    assert clip_bounds(10, 4) == [(0, 4), (4, 8), (6, 10)]
    assert clip_bounds(8, 4) == [(0, 4), (4, 8)]
    assert clip_bounds(3, 4) == [(0, 3)]
    assert clip_bounds(7, None) == [(0, 7)]


def test_dynamic_degree_params_match_vbench():
    # 256-px short side at 8 fps: 6 px; 16 sampled frames need 4 moving pairs
    assert dynamic_degree_params(8.0, 256, 448, 16) == (6.0, 4)
    # 4 fps doubles the threshold, 512 px doubles it again; count is clamped to at least 1
    assert dynamic_degree_params(4.0, 512, 512, 2) == (24.0, 1)


def test_fit_slope_is_exact_on_a_line_and_skips_missing():
    assert fit_slope([0, 1, 2, 3], [1.0, 0.5, 0.0, -0.5]) == pytest.approx(-0.5)
    assert fit_slope([0, 1, 2], [1.0, None, 3.0]) == pytest.approx(1.0)
    assert fit_slope([0], [1.0]) is None


def test_interpolate_midframe_exact_for_uniform_translation():
    frame0 = texture(SIZE, SIZE + 4, seed=3)[:, :SIZE]
    shifted = texture(SIZE, SIZE + 4, seed=3)
    frame1 = shifted[:, 2 : SIZE + 2]  # content moves 2 px to the left
    middle_truth = shifted[:, 1 : SIZE + 1]
    flow01 = np.zeros((SIZE, SIZE, 2), np.float32)
    flow01[..., 0] = -2.0
    middle = interpolate_midframe(frame0, frame1, flow01, -flow01)
    np.testing.assert_array_equal(middle[:, 3:-3], middle_truth[:, 3:-3])


def test_ssim_and_histogram_similarity_are_one_for_identical_frames():
    frames = np.stack([texture(SIZE, SIZE, seed=s) for s in range(3)])
    feats = ssim_features(frames)
    np.testing.assert_allclose(ssim_similarity(feats, feats), 1.0, atol=1e-6)
    assert ssim_similarity(feats[:1], feats[1:]).max() < 0.9
    hist = colour_layout_histograms(frames)
    np.testing.assert_allclose(np.linalg.norm(hist, axis=1), 1.0, atol=1e-9)
    np.testing.assert_allclose(np.einsum("nd,nd->n", hist, hist), 1.0, atol=1e-9)


# --------------------------------------------------------------------------------------- known-answer videos
def test_static_video_is_perfectly_consistent_and_smooth_and_not_dynamic():
    result = offline(static_video())
    assert result.scores["dynamic_degree"] == 0.0
    assert result.scores["motion_smoothness"] == pytest.approx(1.0, abs=1e-9)
    assert result.scores["subject_consistency"] == pytest.approx(1.0, abs=1e-6)
    assert result.scores["background_consistency"] == pytest.approx(1.0, abs=1e-9)
    for dimension in ("aesthetic_quality", "imaging_quality"):
        assert 0.0 < result.scores[dimension] < 1.0


def test_moving_square_is_dynamic():
    result = offline(moving_square(), dimensions=["dynamic_degree", "motion_smoothness"], compute_af=False)
    assert result.scores["dynamic_degree"] == 1.0
    assert result.scores["motion_smoothness"] > 0.99
    assert set(result.scores) == {"dynamic_degree", "motion_smoothness"}


def test_shuffled_frames_lower_smoothness_and_consistency():
    video = panning_video()
    shuffled = video[np.random.default_rng(0).permutation(len(video))]
    ordered, mixed = offline(video, compute_af=False), offline(shuffled, compute_af=False)
    assert ordered.scores["dynamic_degree"] == 0.0  # 1 px/frame is below VBench's 1.1 px threshold at 48 px
    for dimension in ("motion_smoothness", "subject_consistency", "background_consistency"):
        assert mixed.scores[dimension] < ordered.scores[dimension] - 0.005, dimension
    assert mixed.scores["motion_smoothness"] < 0.9 < ordered.scores["motion_smoothness"]


def test_blur_and_noise_lower_imaging_quality():
    clean = np.stack([texture(SIZE * 2, SIZE * 2, seed=s) for s in range(4)])
    blurred = np.stack([cv2.GaussianBlur(f, (0, 0), 2.0) for f in clean])
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 12, clean.shape), 0, 255).astype(np.uint8)
    scores = {k: imaging_quality_proxy(v).mean() for k, v in dict(clean=clean, blur=blurred, noise=noisy).items()}
    assert scores["blur"] < scores["clean"] - 0.03
    assert scores["noise"] < scores["clean"] - 0.2
    flat = np.full((2, 32, 32, 3), 128, np.uint8)
    assert imaging_quality_proxy(flat).tolist() == [0.0, 0.0]
    # through the public interface, on a video
    result_clean = offline(clean, dimensions=["imaging_quality"], compute_af=False)
    result_noisy = offline(noisy, dimensions=["imaging_quality"], compute_af=False)
    assert result_noisy.scores["imaging_quality"] < result_clean.scores["imaging_quality"]


def test_offline_backend_is_deterministic():
    video = moving_square(16)
    first, second = offline(video).to_dict(), offline(video).to_dict()
    assert first == second


# ---------------------------------------------------------------------------------------- windows and inputs
def test_windows_slopes_and_af_per_window():
    # three 1-second windows at 8 fps; the last one gets noisier and noisier
    rng = np.random.default_rng(0)
    video = panning_video(26)
    noise = np.linspace(0, 30, len(video))[:, None, None, None] * rng.standard_normal(video.shape)
    degraded = np.clip(video + noise, 0, 255).astype(np.uint8)
    result = offline(degraded, window_seconds=1.0, clip_seconds=None)
    # 26 frames = 8 + 8 + 8 + 2: the 2-frame tail (< half a window) joins the third window
    assert [(w.start_frame, w.end_frame) for w in result.windows] == [(0, 8), (8, 16), (16, 26)]
    assert result.windows[2].end_seconds == pytest.approx(26 / 8)
    assert [w.num_clips for w in result.windows] == [1, 1, 1]
    assert result.num_frames == 26 and result.fps == 8
    assert result.slopes["imaging_quality"] < 0
    assert result.slopes["average_frequency"] > 0  # noise adds high frequencies
    assert all(w.scores["average_frequency"] is not None for w in result.windows)
    # overall frame metrics are frame-weighted means of the windows
    weights = [w.end_frame - w.start_frame for w in result.windows]
    expected = np.average([w.scores["imaging_quality"] for w in result.windows], weights=weights)
    assert result.scores["imaging_quality"] == pytest.approx(expected)
    # overall clip metrics are the mean over clips (here one clip per window)
    assert result.scores["subject_consistency"] == pytest.approx(
        np.mean([w.scores["subject_consistency"] for w in result.windows])
    )
    assert result.average_frequency == result.scores["average_frequency"]


def test_input_formats_give_the_same_scores():
    video = moving_square(12)
    reference = offline(video, compute_af=False).scores
    variants = {
        "float": video.astype(np.float32) / 255.0,
        "batched": video[None],
        "torch_fchw": torch.from_numpy(video).permute(0, 3, 1, 2).float() / 255.0,
        "pil": [Image.fromarray(frame) for frame in video],
    }
    for name, variant in variants.items():
        assert offline(variant, compute_af=False).scores == reference, name


def test_bad_inputs_raise_clear_errors():
    video = moving_square(8)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        offline(video.astype(np.float32))  # 0..255 floats
    with pytest.raises(ValueError, match="batch of 2"):
        offline(np.stack([video, video]))
    with pytest.raises(ValueError, match="`backend`"):
        evaluate_video(video, backend="vbench")
    with pytest.raises(ValueError, match="`window_seconds`"):
        offline(video, window_seconds=-1)
    with pytest.raises(ValueError, match="`dimensions`"):
        offline(video, dimensions=["temporal_flickering"])
    with pytest.raises(ValueError, match="at least 2"):
        offline(video, window_seconds=0.1)
    with pytest.raises(TypeError, match="`video`"):
        offline(12)
    with pytest.raises(FileNotFoundError):
        offline("does/not/exist.mp4")


# ------------------------------------------------------------------------------------------------ reports, CLI
def _write_mp4(path, video, fps=8):
    import imageio.v3 as iio

    iio.imwrite(path, video, fps=fps)


def test_report_files_and_proxy_labels(tmp_path):
    result = offline(moving_square(16), window_seconds=1.0, compute_af=True)
    paths = write_eval_report(result, tmp_path / "report")
    data = json.loads(paths["json"].read_text())
    assert data["backend"] == "offline" and data["proxies"] is True and data["comparable_to_vbench"] is False
    assert "NOT comparable" in data["note"]
    assert len(data["windows"]) == 2 and set(DIMENSIONS) <= set(data["scores"])
    markdown = paths["markdown"].read_text()
    assert "NOT comparable to published VBench numbers" in markdown
    assert "| Imaging quality † |" in markdown and "Per window" in markdown
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_writes_three_files_for_a_video_and_a_folder(tmp_path, capsys):
    from diffusers_longvid.cli import main

    videos = tmp_path / "videos"
    videos.mkdir()
    _write_mp4(videos / "a.mp4", moving_square(16, speed=3))
    _write_mp4(videos / "b.mp4", static_video(16))
    (videos / "notes.txt").write_text("not a video")

    out = tmp_path / "single"
    args = ["eval", str(videos / "a.mp4"), "--out", str(out), "--window-seconds", "1", "--no-progress"]
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["eval_report.md", "eval_results.json", "eval_windows.png"]
    data = json.loads((out / "eval_results.json").read_text())
    assert data["fps"] == 8 and data["num_frames"] == 16 and data["scores"]["dynamic_degree"] == 1.0

    out = tmp_path / "folder"
    assert (
        main(["eval", str(videos), "--out", str(out), "--no-progress", "--no-af", "--dimensions", "dynamic_degree"])
        == 0
    )
    data = json.loads((out / "eval_results.json").read_text())
    assert sorted(data["videos"]) == ["a.mp4", "b.mp4"]
    assert data["videos"]["b.mp4"]["scores"] == {"dynamic_degree": 0.0}
    assert data["scores"]["dynamic_degree"] == pytest.approx(0.5)  # mean over videos
    assert "| **mean** |" in (out / "eval_report.md").read_text()
    assert "NOT comparable" in capsys.readouterr().out

    assert main(["eval", str(tmp_path / "missing.mp4"), "--out", str(out)]) == 2


def test_cli_help_lists_every_flag(capsys):
    from diffusers_longvid.cli import main

    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    text = capsys.readouterr().out
    for flag in (
        "--out", "--backend", "--window-seconds", "--clip-seconds", "--fps", "--dimensions", "--no-af",
        "--subject-model", "--background-model", "--aesthetic-clip-model", "--aesthetic-head", "--imaging-model",
        "--iqa-clip-model", "--device", "--dtype", "--flow-method", "--batch-size",
    ):  # fmt: skip
        assert flag in text, flag


def test_folder_result_type(tmp_path):
    _write_mp4(tmp_path / "x.mp4", moving_square(16))
    result = evaluate_video(tmp_path, dimensions=["dynamic_degree"], compute_af=False, show_progress=False)
    assert isinstance(result, EvalSuiteResult) and list(result.videos) == ["x.mp4"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no video files"):
        evaluate_video(empty)


def test_an_unreadable_file_is_skipped_not_fatal_for_a_folder(tmp_path):
    _write_mp4(tmp_path / "good.mp4", moving_square(16))
    (tmp_path / "garbage.mp4").write_bytes(b"not a video at all" * 100)
    good = (tmp_path / "good.mp4").read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(good[: len(good) // 3])
    result = evaluate_video(tmp_path, dimensions=["dynamic_degree"], compute_af=False, show_progress=False)
    assert list(result.videos) == ["good.mp4"]
    assert set(result.skipped) == {"garbage.mp4", "truncated.mp4"}
    assert all(reason.split(":")[0].endswith("Error") for reason in result.skipped.values())
    alone = evaluate_video(tmp_path / "good.mp4", dimensions=["dynamic_degree"], compute_af=False, show_progress=False)
    assert result.scores == alone.scores  # the means are over the readable videos only
    paths = write_eval_report(result, tmp_path / "report")
    assert "garbage.mp4" in paths["markdown"].read_text()
    data = json.loads((tmp_path / "report" / "eval_results.json").read_text())
    assert set(data["skipped"]) == {"garbage.mp4", "truncated.mp4"} and data["num_videos"] == 1

    (tmp_path / "good.mp4").unlink()
    with pytest.raises(ValueError, match="No video of the folder .* could be evaluated .*garbage.mp4"):
        evaluate_video(tmp_path, dimensions=["dynamic_degree"], compute_af=False, show_progress=False)
