"""evaluation/imageops.py against OpenCV, and the offline backend without OpenCV (only the motion dimensions need it)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from diffusers_longvid import utils
from diffusers_longvid.evaluation import evaluate_video, get_backend, imageops, offline
from diffusers_longvid.evaluation.offline import OfflineBackend


# float results: OpenCV and numpy sum in float32 in different orders
ATOL = 1e-3
SCORE_ATOL = 1e-4
STATIC_DIMENSIONS = ("subject_consistency", "background_consistency", "aesthetic_quality", "imaging_quality")
# (source (H, W), destination (h, w)): odd sizes, integer factors (2x2 has its own OpenCV path), fractional factors
RESIZES = [
    ((7, 9), (3, 4)),
    ((13, 17), (6, 8)),
    ((31, 45), (30, 44)),
    ((33, 99), (11, 33)),  # 3x3, but 99 / 33 is not exactly 3 in double: OpenCV's general path
    ((48, 64), (24, 32)),  # 2x2
    ((45, 60), (15, 20)),  # 3x3
    ((40, 50), (10, 10)),  # 4x5
    ((75, 530), (64, 452)),  # the offline backend's short side 64
    ((75, 530), (72, 512)),  # ... and long side 512
    ((97, 131), (1, 1)),
    ((17, 480), (9, 255)),
]
CV_BORDERS = {"reflect": "BORDER_REFLECT", "reflect_101": "BORDER_REFLECT_101"}


def _random(shape, dtype, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype == np.uint8:
        return rng.integers(0, 256, shape).astype(np.uint8)
    return (rng.random(shape) * 255).astype(dtype)


# ----------------------------------------------------------------------------------------- against OpenCV
@pytest.mark.parametrize("source, target", RESIZES)
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_resize_area_uint8_equals_opencv(source, target, channels):
    cv2 = pytest.importorskip("cv2")
    for seed, image in enumerate(
        [_random(source + (channels,), np.uint8), (_random(source + (channels,), np.uint8, 1) // 64 * 2)]
    ):  # random, and few levels (many exact .5 ties)
        image = image[..., 0] if channels == 1 else image
        expected = cv2.resize(image, target[::-1], interpolation=cv2.INTER_AREA)
        ours = imageops.resize_area(image, target, channels_last=channels != 1)
        assert ours.dtype == np.uint8 and ours.shape == expected.shape
        np.testing.assert_array_equal(ours, expected, err_msg=f"seed {seed}")


@pytest.mark.parametrize("source, target", RESIZES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_resize_area_float_matches_opencv(source, target, dtype):
    cv2 = pytest.importorskip("cv2")
    image = _random(source + (3,), dtype)
    expected = cv2.resize(image, target[::-1], interpolation=cv2.INTER_AREA)
    ours = imageops.resize_area(image, target)
    assert ours.dtype == expected.dtype
    np.testing.assert_allclose(ours, expected, rtol=0, atol=ATOL)


def test_resize_area_of_frames_equals_per_frame_opencv():
    cv2 = pytest.importorskip("cv2")
    frames = _random((5, 75, 130, 3), np.uint8)
    expected = np.stack([cv2.resize(f, (111, 64), interpolation=cv2.INTER_AREA) for f in frames])
    np.testing.assert_array_equal(imageops.resize_area(frames, (64, 111)), expected)


SIZES = [(1, 1), (2, 3), (5, 7), (11, 11), (13, 29), (33, 17), (64, 111)]


@pytest.mark.parametrize("size", SIZES)
def test_luma_matches_opencv(size):
    cv2 = pytest.importorskip("cv2")
    for dtype in (np.uint8, np.float32):
        rgb = _random(size + (3,), dtype).astype(np.float32)
        np.testing.assert_allclose(imageops.rgb_to_luma(rgb), cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), atol=ATOL)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("border", ["reflect", "reflect_101"])
def test_filters_match_opencv(size, border):
    cv2 = pytest.importorskip("cv2")
    cv_border = getattr(cv2, CV_BORDERS[border])
    rng = np.random.default_rng(3)
    gaussian = offline._gaussian_window(11, 1.5)
    for dtype in (np.uint8, np.float32):
        image = _random(size, dtype).astype(np.float32)
        for kx in (gaussian, gaussian[:5] / gaussian[:5].sum(), np.array([1.0, -2.0], np.float32)):
            ky = kx[::-1].copy()
            np.testing.assert_allclose(
                imageops.correlate_separable(image, kx, ky, border),
                cv2.sepFilter2D(image, -1, kx, ky, borderType=cv_border),
                atol=ATOL,
            )
        for ksize in ((1, 11), (11, 1), (3, 5), (4, 4)):  # (height, width)
            np.testing.assert_allclose(
                imageops.box_blur(image, ksize, border), cv2.blur(image, ksize[::-1], borderType=cv_border), atol=ATOL
            )
        laplacian = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
        for kernel in (laplacian, rng.standard_normal((3, 5)).astype(np.float32), np.ones((4, 2), np.float32)):
            np.testing.assert_allclose(
                imageops.correlate2d(image, kernel, border),
                cv2.filter2D(image, -1, kernel, borderType=cv_border),
                atol=ATOL,
            )
        for dx, dy in ((1, 0), (0, 1), (1, 1), (2, 0), (0, 2)):
            np.testing.assert_allclose(
                imageops.sobel(image, dx, dy, border),
                cv2.Sobel(image, -1, dx, dy, ksize=3, borderType=cv_border),
                atol=ATOL,
            )
        # stacks of images are filtered one by one
        stack = np.stack([image, image[::-1].copy()])
        np.testing.assert_allclose(imageops.sobel(stack, 1, 0)[1], cv2.Sobel(stack[1], -1, 1, 0, ksize=3), atol=ATOL)


# ------------------------------------------------------------------------------------------- without OpenCV
def test_resize_area_integer_factor_is_the_block_mean():
    image = _random((12, 15, 3), np.float64)
    expected = image.reshape(4, 3, 5, 3, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(imageops.resize_area(image, (4, 5)), expected, atol=1e-12)
    # uint8 rounds like OpenCV: half up on the 2x2 path, half to even elsewhere
    two_by_two = np.array([[2, 3], [2, 3]], np.uint8)  # mean 2.5
    assert imageops.resize_area(two_by_two, (1, 1), channels_last=False)[0, 0] == 3
    assert imageops.resize_area(two_by_two[..., None].repeat(2, -1), (1, 1)).tolist() == [[[2, 2]]]
    assert imageops.resize_area(np.array([[1, 2, 3, 6]], np.uint8), (1, 2), channels_last=False).tolist() == [[2, 4]]
    assert imageops.resize_area(np.full((3, 3), 7.5, np.float32), (1, 1), channels_last=False)[0, 0] == 7.5


def test_resize_area_fractional_factor_weights_by_coverage():
    row = np.array([[0.0, 3.0, 6.0]])  # two outputs of 1.5 pixels each: (0 + 3/2) / 1.5 and (3/2 + 6) / 1.5
    np.testing.assert_allclose(imageops.resize_area(row, (1, 2), channels_last=False), [[1.0, 5.0]], atol=1e-6)


def test_imageops_reject_bad_arguments():
    with pytest.raises(ValueError, match="size"):
        imageops.resize_area(np.zeros((4, 4, 3), np.uint8), (5, 4))
    with pytest.raises(ValueError, match="size"):
        imageops.resize_area(np.zeros((4, 4, 3), np.uint8), (0, 4))
    with pytest.raises(ValueError, match="axes"):
        imageops.resize_area(np.zeros((4, 3), np.uint8), (2, 2))
    with pytest.raises(ValueError, match="dtype"):
        imageops.resize_area(np.zeros((4, 4, 3), bool), (2, 2))
    with pytest.raises(ValueError, match="3 channels"):
        imageops.rgb_to_luma(np.zeros((4, 4, 4)))
    with pytest.raises(ValueError, match="border"):
        imageops.box_blur(np.zeros((4, 4)), (3, 3), border="wrap")
    with pytest.raises(ValueError, match="dx"):
        imageops.sobel(np.zeros((4, 4)), 0, 0)
    with pytest.raises(ValueError, match="ksize"):
        imageops.box_blur(np.zeros((4, 4)), (0, 3))


def _video(frames: int = 12, height: int = 75, width: int = 530) -> np.ndarray:
    """A moving colour texture with noise, large enough for every resize of the offline backend (64, 256, 512 px)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    video = []
    for i in range(frames):
        frame = np.stack(
            [
                128 + 100 * np.sin((xx + 3 * i) / 9.0),
                128 + 90 * np.cos((yy - 2 * i) / 5.0),
                xx * yy / (height * width),
            ],
            axis=-1,
        )
        video.append(np.clip(frame + rng.normal(0, 6, frame.shape), 0, 255).astype(np.uint8))
    return np.stack(video)


def _scores(video: np.ndarray, **kwargs) -> dict:
    result = evaluate_video(
        video,
        fps=8,
        window_seconds=None,
        clip_seconds=None,
        dimensions=STATIC_DIMENSIONS,
        show_progress=False,
        **kwargs,
    )
    return {**result.scores, **{f"window_{k}": v for k, v in result.windows[0].scores.items()}}


@pytest.fixture
def no_opencv(monkeypatch):
    """Make `cv2` unimportable, for `import cv2` and for the package's `require` / `is_available` check."""
    monkeypatch.setitem(sys.modules, "cv2", None)
    real = utils.is_available
    monkeypatch.setattr(utils, "is_available", lambda name: False if name == "cv2" else real(name))


def test_offline_backend_without_opencv_scores_as_with_it(monkeypatch):
    video = _video()
    with_cv2 = _scores(video)
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "cv2", None)
        real = utils.is_available
        patch.setattr(utils, "is_available", lambda name: False if name == "cv2" else real(name))
        with pytest.raises(ImportError):
            __import__("cv2")
        without_cv2 = _scores(video)
    assert without_cv2 == with_cv2  # one implementation: bit-identical whether OpenCV is installed or not
    assert set(STATIC_DIMENSIONS) <= set(without_cv2) and "average_frequency" in without_cv2


def test_offline_scores_match_the_opencv_implementation(monkeypatch):
    """The offline scores with imageops replaced by the OpenCV calls the backend used to make agree within 1e-4."""
    cv2 = pytest.importorskip("cv2")
    borders = {"reflect": cv2.BORDER_REFLECT, "reflect_101": cv2.BORDER_REFLECT_101}

    def resize(images, size, channels_last=True):
        return np.stack([cv2.resize(f, size[::-1], interpolation=cv2.INTER_AREA) for f in images])

    def luma(images):
        return np.stack([cv2.cvtColor(f.astype(np.float32), cv2.COLOR_RGB2GRAY) for f in images])

    def separable(images, kx, ky, border="reflect_101"):
        return np.stack([cv2.sepFilter2D(f, -1, kx, ky, borderType=borders[border]) for f in images])

    def blur(images, ksize, border="reflect_101"):
        return np.stack([cv2.blur(f, ksize[::-1], borderType=borders[border]) for f in images])

    def filter2d(images, kernel, border="reflect_101"):
        return np.stack([cv2.filter2D(f, -1, kernel, borderType=borders[border]) for f in images])

    def sobel(images, dx, dy, border="reflect_101"):
        return np.stack([cv2.Sobel(f, -1, dx, dy, ksize=3, borderType=borders[border]) for f in images])

    video = _video()
    ours = _scores(video)
    for name, fn in [
        ("resize_area", resize),
        ("rgb_to_luma", luma),
        ("correlate_separable", separable),
        ("box_blur", blur),
        ("correlate2d", filter2d),
        ("sobel", sobel),
    ]:
        monkeypatch.setattr(offline, name, fn)
    opencv = _scores(video)
    assert ours.keys() == opencv.keys()
    for key, value in ours.items():
        assert value == pytest.approx(opencv[key], abs=SCORE_ATOL), key
    # the uint8 area resize is exact, so the histogram feature is too
    assert ours["background_consistency"] == opencv["background_consistency"]


@pytest.mark.parametrize("dimension", ["motion_smoothness", "dynamic_degree"])
def test_motion_dimensions_without_opencv_name_the_extra(no_opencv, dimension):
    video = _video(frames=6, height=32, width=40)
    with pytest.raises(ImportError, match=r"opencv-python-headless.*diffusers-longvid\[eval\]"):
        evaluate_video(video, fps=8, dimensions=[dimension, "imaging_quality"], show_progress=False)
    with pytest.raises(ImportError, match=r"diffusers-longvid\[eval\]"):
        evaluate_video(video, fps=8, show_progress=False)  # the default: all six dimensions
    # raised before any frame is scored or any model is loaded
    with pytest.raises(ImportError, match=dimension):
        OfflineBackend(dimensions=[dimension])
    with pytest.raises(ImportError, match=r"diffusers-longvid\[eval\]"):
        get_backend("reference", dimensions=[dimension])
    with pytest.raises(ImportError, match=r"diffusers-longvid\[eval\]"):
        get_backend(OfflineBackend(dimensions=["imaging_quality"]), dimensions=[dimension])


def test_backend_without_motion_dimensions_builds_without_opencv(no_opencv):
    backend = get_backend("offline", dimensions=["subject_consistency"])
    assert backend.config()["flow"].startswith("OpenCV DIS")  # describing the flow needs no OpenCV
    assert "subject_consistency" in backend.methods()
