"""One video reader and one frame conversion (`video_io`), which the evaluation and the training datasets call."""

from __future__ import annotations

import imageio
import numpy as np
import PIL.Image
import pytest
import torch
from _media import write_test_video, write_truncated_video

from diffusers_longvid.evaluation import video as eval_video
from diffusers_longvid.training.datasets import read_video_frames
from diffusers_longvid.video_io import VideoInfo, iter_video_frames, probe_video, read_video, to_uint8_frames


def _imageio_frames(path) -> np.ndarray:
    """What `read_video` and the evaluation's reader returned before they shared `iter_video_frames`."""
    reader = imageio.get_reader(str(path), format="FFMPEG")
    try:
        return np.stack([np.asarray(frame) for frame in reader])
    finally:
        reader.close()


def test_one_reader_gives_imageios_frames_whole_chunked_and_seeking(tmp_path):
    path = write_test_video(tmp_path / "a.mp4", num_frames=20, fps=8.0)
    expected = _imageio_frames(path)
    assert expected.shape == (20, 32, 48, 3)
    np.testing.assert_array_equal(read_video(path), expected)
    np.testing.assert_array_equal(np.stack(list(iter_video_frames(path))), expected)
    np.testing.assert_array_equal(np.stack(list(iter_video_frames(path, max_frames=5))), expected[:5])
    source = eval_video.open_video(path)
    chunks = list(source.chunks(6))
    assert [len(c) for c in chunks] == [6, 6, 6, 2]
    np.testing.assert_array_equal(np.concatenate(chunks), expected)
    # the training reader seeks (half a frame early) and resamples; at the file's own rate it is the identity
    np.testing.assert_array_equal(read_video_frames(path, 1.0, 4, 8.0), expected[8:12])
    seeked = np.stack(list(iter_video_frames(path, start=(8 - 0.5) / 8.0, max_frames=4)))
    np.testing.assert_array_equal(seeked, expected[8:12])


def test_reader_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_video(tmp_path / "missing.mp4")
    (tmp_path / "garbage.mp4").write_bytes(b"not a video" * 100)
    with pytest.raises(OSError):
        read_video(tmp_path / "garbage.mp4")
    truncated = write_truncated_video(tmp_path / "t.mp4", num_frames=40, fps=16)
    assert 0 < len(read_video(truncated)) < 40  # lenient: what decodes
    with pytest.raises(ValueError, match="max_frames"):
        next(iter_video_frames(truncated, max_frames=-1))


def test_one_header_reader_for_training_and_evaluation(tmp_path):
    import diffusers_longvid
    from diffusers_longvid.training import manifest

    path = write_test_video(tmp_path / "a.mp4", num_frames=20, fps=8.0)
    info = probe_video(path)
    assert isinstance(info, VideoInfo) and (info.fps, info.width, info.height, info.num_frames) == (8.0, 48, 32, 20)
    assert manifest.probe_video is probe_video and diffusers_longvid.probe_video is probe_video
    assert eval_video.open_video(path).num_frames_hint == 20 and eval_video.open_video(path).fps == 8.0
    (tmp_path / "garbage.mp4").write_bytes(b"not a video" * 100)
    with pytest.raises(OSError, match="ffmpeg cannot read"):
        probe_video(tmp_path / "garbage.mp4")
    with pytest.raises(ValueError, match="Cannot read the frame rate .*; pass `fps`"):
        eval_video.open_video(tmp_path / "garbage.mp4")
    assert eval_video.open_video(tmp_path / "garbage.mp4", fps=4.0).num_frames_hint is None


def test_to_uint8_frames_strict_and_lenient():
    rng = np.random.default_rng(0)
    video = rng.integers(0, 256, (3, 4, 5, 3), dtype=np.uint8)
    floats = video.astype(np.float32) / 255.0
    forms = {
        "uint8": video,
        "float": floats,
        "torch fchw": torch.from_numpy(floats).permute(0, 3, 1, 2),
        "torch uint8": torch.from_numpy(video).permute(0, 3, 1, 2),
        "pil": [PIL.Image.fromarray(frame) for frame in video],
        "arrays": list(floats),
        "numpy fchw": floats.transpose(0, 3, 1, 2),
    }
    for strict in (False, True):
        for label, frames in forms.items():
            np.testing.assert_array_equal(to_uint8_frames(frames, strict=strict), video, err_msg=label)
        np.testing.assert_array_equal(to_uint8_frames(floats[None], batch_index=0, strict=strict), video)
        np.testing.assert_array_equal(to_uint8_frames([forms["pil"]], batch_index=0, strict=strict), video)
        grey = to_uint8_frames(video[..., 0], strict=strict)
        assert grey.shape == (3, 4, 5, 3) and (grey == video[..., :1]).all()
        with pytest.raises(ValueError, match="`batch_index`"):
            to_uint8_frames(floats[None], strict=strict)
    # lenient (writing) clips and passes odd inputs through; strict (measuring) raises, naming the argument
    np.testing.assert_array_equal(to_uint8_frames(floats * 2 - 0.5), np.rint(np.clip(floats * 2 - 0.5, 0, 1) * 255))
    assert to_uint8_frames([]).shape == (0, 0, 0, 3)
    assert to_uint8_frames(np.zeros((1, 4, 5, 4), np.uint8)).shape == (1, 4, 5, 4)
    with pytest.raises(ValueError, match=r"`clip` must hold values in \[0, 1\]"):
        to_uint8_frames(floats * 255, strict=True, name="clip")
    with pytest.raises(ValueError, match="empty list"):
        to_uint8_frames([], strict=True)
    with pytest.raises(ValueError, match="1 or 3 channels"):
        to_uint8_frames(np.zeros((1, 4, 5, 4), np.uint8), strict=True)
    with pytest.raises(TypeError, match="uint8 or floating point"):
        to_uint8_frames(video.astype(np.int64), strict=True)


def test_the_evaluation_conversion_is_the_strict_one():
    video = np.random.default_rng(1).random((3, 4, 5, 3)).astype(np.float32)
    np.testing.assert_array_equal(eval_video.to_uint8_frames(video), to_uint8_frames(video, strict=True))
    np.testing.assert_array_equal(eval_video.to_uint8_frames(video[None]), to_uint8_frames(video, strict=True))
    with pytest.raises(ValueError, match="batch of 2 videos"):
        eval_video.to_uint8_frames(np.stack([video, video]))
    with pytest.raises(ValueError, match=r"`generated` must hold values in \[0, 1\]"):
        eval_video.to_uint8_frames(video * 255, name="generated")
    with pytest.raises(TypeError, match="`video`"):
        eval_video.to_uint8_frames(12)
