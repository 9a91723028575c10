"""average_frequency (AF, DESIGN §1): exact values on known spectra, invariances, layouts and errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from diffusers_longvid import average_frequency
from diffusers_longvid.evaluation.frequency import infer_video_layout


def checkerboard(size: int = 32) -> np.ndarray:
    return (np.indices((size, size)).sum(axis=0) % 2).astype(np.float64)


def random_video(frames=5, size=16, channels=3, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random((frames, size, size, channels))


def box_blur(image: np.ndarray, k: int = 5) -> np.ndarray:
    """Circular box blur along both axes (numpy only)."""
    out = image.copy()
    for axis in (0, 1):
        out = sum(np.roll(out, shift, axis=axis) for shift in range(-(k // 2), k // 2 + 1)) / k
    return out


def test_checkerboard_is_one():
    assert average_frequency(checkerboard()) == pytest.approx(1.0, abs=1e-12)


def test_axis_nyquist_stripes_are_one_over_sqrt_two():
    stripes = (np.indices((32, 32))[1] % 2).astype(np.float64)
    assert average_frequency(stripes) == pytest.approx(1 / math.sqrt(2), abs=1e-12)


@pytest.mark.parametrize("cycles", [1, 3, 8])
def test_single_cosine_has_its_radial_frequency(cycles):
    size = 64
    x = np.arange(size)
    image = np.cos(2 * np.pi * cycles * x / size)[None, :].repeat(size, axis=0)
    # frequency cycles/size cycles per pixel, normalised by |(0.5, 0.5)| = sqrt(0.5)
    assert average_frequency(image) == pytest.approx(cycles / size / math.sqrt(0.5), abs=1e-9)


def test_constant_video_is_zero_not_nan():
    assert average_frequency(np.full((4, 8, 8, 3), 0.7)) == 0.0
    assert average_frequency(torch.zeros(1, 3, 2, 8, 8)) == 0.0
    per_frame = average_frequency(np.stack([np.full((8, 8), 0.2), checkerboard(8)]), reduction="frame")
    np.testing.assert_allclose(per_frame, [[0.0, 1.0]], atol=1e-12)


def test_blur_lowers_af():
    image = np.random.default_rng(0).random((64, 64))
    blurred = box_blur(image)
    assert average_frequency(blurred) < average_frequency(image) - 0.1
    assert average_frequency(box_blur(blurred)) < average_frequency(blurred)


def test_brightness_and_contrast_invariance():
    video = random_video()
    np.testing.assert_allclose(average_frequency(3.0 * video - 1.0), average_frequency(video), rtol=1e-10)
    uint8 = (video * 255).round().astype(np.uint8)
    np.testing.assert_allclose(average_frequency(uint8), average_frequency(uint8 / 255.0), rtol=1e-10)


def test_all_layouts_agree():
    video = random_video(frames=5, size=16)  # (F, H, W, C)
    expected = average_frequency(video)
    batch = video[None]  # (B, F, H, W, C): diffusers output_type="np"
    as_torch = torch.from_numpy(batch)
    variants = {
        "BFHWC numpy": batch,
        "FHWC torch": torch.from_numpy(video),
        "BFCHW torch (output_type='pt')": as_torch.permute(0, 1, 4, 2, 3),
        "BCFHW torch (VAE layout)": as_torch.permute(0, 4, 1, 2, 3),
        "FCHW numpy": video.transpose(0, 3, 1, 2),
        "list of frames": list(video),
    }
    for name, variant in variants.items():
        assert average_frequency(variant) == pytest.approx(expected, rel=1e-12), name


def test_pil_frames_and_batches():
    video = (random_video(frames=3, size=16) * 255).round().astype(np.uint8)
    frames = [Image.fromarray(frame) for frame in video]
    expected = average_frequency(video)
    assert average_frequency(frames) == pytest.approx(expected, rel=1e-12)
    # output_type="pil" gives a list (batch) of lists of frames
    assert average_frequency([frames, frames]) == pytest.approx(expected, rel=1e-12)


def test_single_image_and_grayscale_layouts():
    image = random_video(frames=1, size=16)[0]  # (H, W, 3)
    assert average_frequency(image) == pytest.approx(average_frequency(image[None]), rel=1e-12)
    gray = image.mean(axis=-1)
    assert average_frequency(gray) == pytest.approx(average_frequency(gray[..., None]), rel=1e-12)
    video_fhw = random_video(frames=4, size=16, channels=1)[..., 0]  # (F, H, W)
    per_frame = average_frequency(video_fhw, reduction="frame")
    assert per_frame.shape == (1, 4)
    assert per_frame[0, 2] == pytest.approx(average_frequency(video_fhw[2]), rel=1e-12)


def test_grayscale_false_averages_channels():
    video = random_video(frames=2, size=16)
    per_channel = [average_frequency(video[..., c]) for c in range(3)]
    assert average_frequency(video, grayscale=False) == pytest.approx(np.mean(per_channel), rel=1e-12)
    luma = video @ np.array([0.299, 0.587, 0.114])
    assert average_frequency(video, grayscale=True) == pytest.approx(average_frequency(luma), rel=1e-12)


def test_reductions():
    blurred = box_blur(random_video(seed=1).transpose(1, 2, 0, 3)).transpose(2, 0, 1, 3)  # blur H, W of every frame
    videos = np.stack([random_video(seed=0), blurred])
    per_frame = average_frequency(videos, reduction="frame")
    per_video = average_frequency(videos, reduction="video")
    assert per_frame.shape == (2, 5) and per_video.shape == (2,)
    np.testing.assert_allclose(per_video, per_frame.mean(axis=1))
    assert average_frequency(videos) == pytest.approx(per_frame.mean())
    assert per_video[1] < per_video[0]


def test_explicit_layout_overrides_inference():
    # (3, 16, 16, 3) reads as FHWC; as CFHW the channels are the first dimension
    video = random_video(frames=3, size=16)
    as_cfhw = average_frequency(video, layout="CFHW", grayscale=False)
    expected = np.mean([average_frequency(video[c], layout="FHW") for c in range(3)])
    assert as_cfhw == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "shape, channel_first, layout",
    [
        ((16, 16), False, "HW"),
        ((16, 16, 3), False, "HWC"),
        ((4, 16, 16), False, "FHW"),
        ((4, 16, 16, 3), False, "FHWC"),
        ((3, 16, 16, 3), True, "CFHW"),  # torch: channel-first readings first
        ((5, 16, 16, 3), True, "FHWC"),
        ((3, 16, 16, 3), False, "FHWC"),
        ((4, 3, 16, 16), True, "FCHW"),
        ((3, 4, 16, 16), True, "CFHW"),
        ((1, 4, 16, 16, 3), False, "BFHWC"),
        ((1, 9, 3, 16, 16), True, "BFCHW"),
        ((1, 3, 9, 16, 16), True, "BCFHW"),
    ],
)
def test_layout_inference(shape, channel_first, layout):
    assert infer_video_layout(shape, channel_first=channel_first) == layout


def test_errors():
    with pytest.raises(ValueError, match="ambiguous"):
        average_frequency(torch.rand(1, 3, 3, 8, 8))
    with pytest.raises(ValueError, match="layout"):
        average_frequency(np.random.rand(2, 4, 8, 8, 8))
    with pytest.raises(ValueError, match="`layout`"):
        average_frequency(np.random.rand(8, 8), layout="XYZ")
    with pytest.raises(ValueError, match="needs 4 dimensions"):
        average_frequency(np.random.rand(8, 8), layout="FHWC")
    with pytest.raises(ValueError, match="channels"):
        average_frequency(np.random.rand(2, 8, 8, 5), layout="FHWC")
    with pytest.raises(ValueError, match="`reduction`"):
        average_frequency(np.random.rand(8, 8), reduction="sum")
    with pytest.raises(TypeError, match="`video`"):
        average_frequency("frames.mp4")
    with pytest.raises(ValueError, match="empty"):
        average_frequency([])
