"""`diffusers_longvid.toy.compare`: variants on one script, side-by-side mp4 and contact sheet."""

import numpy as np
import pytest
from PIL import Image

from diffusers_longvid.pipelines.longvideo.pipeline_longvideo_extension import LongVideoExtensionPipeline
from diffusers_longvid.schedulers.scheduling_trflow import TRFlowScheduler
from diffusers_longvid.selection import RecentSelector
from diffusers_longvid.testing import get_dummy_components
from diffusers_longvid.toy import random_script
from diffusers_longvid.toy.compare import (
    DEFAULT_VARIANTS,
    GROUND_TRUTH,
    Variant,
    contact_sheet_frame_indices,
    ground_truth_frames,
    run_variants,
    write_contact_sheet,
    write_side_by_side,
)
from diffusers_longvid.video_io import read_video


F, K, SIZE = 9, 1, 16
CALL = dict(num_frames=F, num_condition_frames=K, steps=4, size=SIZE, max_sequence_length=16)


@pytest.fixture(scope="module")
def pipe():
    # shift 1 and 4 steps: sigmas 1, .75, .5, .25 -> the window [0.3, 0.7] holds a step
    scheduler = TRFlowScheduler(shift=1.0, tau_low=0.1, tau_high=0.9)
    pipe = LongVideoExtensionPipeline(
        **get_dummy_components(in_channels=36, scheduler=scheduler), clip_selector=RecentSelector()
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def videos(pipe):
    script = random_script(3, seed=0)
    out = {GROUND_TRUTH: ground_truth_frames(script, F, K, size=SIZE)}
    out.update(run_variants(pipe, script, seed=0, **CALL))
    return out


def test_variants_restore_window_and_match_ground_truth(pipe, videos):
    assert (pipe.scheduler.config.tau_low, pipe.scheduler.config.tau_high) == (0.1, 0.9)
    assert list(videos) == [GROUND_TRUTH] + [v.name for v in DEFAULT_VARIANTS]
    expected = (F + 2 * (F - K), SIZE, SIZE, 3)
    assert {name: v.shape for name, v in videos.items()} == dict.fromkeys(videos, expected)
    assert all(v.dtype == np.uint8 for v in videos.values())
    # same noise, different mechanisms: clip 0 has no history, so "ours" and "no-KV" agree on it exactly
    np.testing.assert_array_equal(videos["ours"][:F], videos["no-KV"][:F])
    assert np.abs(videos["ours"][F:].astype(int) - videos["no-KV"][F:]).max() > 0
    assert np.abs(videos["no-KV"].astype(int) - videos["no-KV-no-T-RFlow"]).max() > 0


def test_run_variants_is_deterministic_and_restores_on_error(pipe, videos):
    script = random_script(3, seed=0)
    again = run_variants(pipe, script, [DEFAULT_VARIANTS[2]], seed=0, **CALL)
    np.testing.assert_array_equal(again["no-KV-no-T-RFlow"], videos["no-KV-no-T-RFlow"])
    with pytest.raises(ValueError):  # 9 frames cannot take 2 condition frames (1 + 4j): fails inside the pipeline
        run_variants(pipe, script, [DEFAULT_VARIANTS[0]], seed=0, **{**CALL, "num_condition_frames": 2})
    assert (pipe.scheduler.config.tau_low, pipe.scheduler.config.tau_high) == (0.1, 0.9)


def test_bad_arguments():
    with pytest.raises(ValueError, match="`kv_cache_clips`"):
        Variant("x", -1, 0.3, 0.7)
    with pytest.raises(ValueError, match="`tau_low`"):
        Variant("x", 0, 0.7, 0.3)
    with pytest.raises(ValueError, match="unique names"):
        run_variants(None, [], [DEFAULT_VARIANTS[0], DEFAULT_VARIANTS[0]])
    with pytest.raises(ValueError, match="same shape"):
        write_side_by_side({"a": np.zeros((2, 8, 8, 3), np.uint8), "b": np.zeros((3, 8, 8, 3), np.uint8)}, "x.mp4")


def test_side_by_side_decodes_to_panels(videos, tmp_path):
    path = write_side_by_side(videos, tmp_path / "sbs.mp4", fps=16, labels=False, upscale=2)
    frames = read_video(path)
    n = len(videos)
    assert frames.shape == (len(videos[GROUND_TRUTH]), SIZE * 2, n * SIZE * 2, 3)
    # the first panel is the ground truth (lossy codec: compare coarsely)
    truth = np.repeat(np.repeat(videos[GROUND_TRUTH], 2, axis=1), 2, axis=2).astype(float)
    assert np.abs(frames[:, :, : SIZE * 2].astype(float) - truth).mean() < 12

    labelled = read_video(write_side_by_side(videos, tmp_path / "labelled.mp4", upscale=4))
    assert labelled.shape[2] == n * SIZE * 4 and labelled.shape[1] > SIZE * 4
    strip = labelled.shape[1] - SIZE * 4
    assert labelled[:, :strip].mean() < labelled[:, strip:].mean()  # a dark strip with text over bright frames
    assert labelled[:, :strip].max() > 128  # the text


def test_contact_sheet_size(videos, tmp_path):
    num_frames = len(videos[GROUND_TRUTH])  # 25 frames at 16 fps
    indices = contact_sheet_frame_indices(num_frames, every_seconds=0.5, fps=16)
    assert indices == [0, 8, 16, 24]
    path = write_contact_sheet(videos, tmp_path / "sheet.png", every_seconds=0.5, fps=16, upscale=2, labels=False)
    image = np.asarray(Image.open(path))
    assert image.shape == (len(videos) * SIZE * 2, len(indices) * SIZE * 2, 3)
    second = np.repeat(np.repeat(videos[GROUND_TRUTH][8], 2, axis=0), 2, axis=1)
    np.testing.assert_array_equal(image[: SIZE * 2, SIZE * 2 : SIZE * 4], second)  # PNG is lossless
    labelled = Image.open(write_contact_sheet(videos, tmp_path / "labelled.png", every_seconds=0.5, fps=16, upscale=2))
    assert labelled.height > image.shape[0] and labelled.width > image.shape[1]


def test_write_comparison(pipe, videos, tmp_path):
    from diffusers_longvid.toy.compare import write_comparison

    paths = write_comparison(pipe, random_script(3, seed=0), tmp_path, every_seconds=0.5, upscale=1, **CALL)
    frames = read_video(paths["video"])
    assert frames.shape[0] == len(videos[GROUND_TRUTH]) and frames.shape[2] == len(videos) * SIZE
    assert Image.open(paths["contact_sheet"]).height > len(videos) * SIZE
