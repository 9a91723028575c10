"""`longvid generate` and the streaming mp4 writer."""

import json

import numpy as np
import pytest
import torch

from diffusers_longvid import LongVideoExtensionPipeline
from diffusers_longvid.cli import main
from diffusers_longvid.testing import get_dummy_components
from diffusers_longvid.video_io import StreamingVideoWriter, read_video, to_uint8_frames


TINY = ["--height", "16", "--width", "16", "--num-frames", "9", "--num-inference-steps", "2"]
TINY += ["--max-sequence-length", "16", "--num-condition-frames", "1", "--device", "cpu"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_pipeline")
    pipe = LongVideoExtensionPipeline(**get_dummy_components(in_channels=36), kv_cache_clips=0)
    pipe.save_pretrained(folder)
    return str(folder)


def test_generate_streams_clips_and_writes_the_sidecar(tiny_model, tmp_path, capsys):
    prompts = tmp_path / "script.txt"
    prompts.write_text("a ball rolls\n\n# a comment\nthe ball stops\na cat looks\n")
    out = tmp_path / "out" / "video.mp4"
    args = ["generate", "--model", tiny_model, "--prompts-file", str(prompts), "--out", str(out), "--seed", "3"]
    assert main(args + TINY + ["--tau-low", "0", "--tau-high", "1", "--fps", "8"]) == 0

    frames = read_video(out)
    assert frames.shape == (9 + 8 + 8, 16, 16, 3)
    record = json.loads((tmp_path / "out" / "video.json").read_text())
    assert record["prompts"] == ["a ball rolls", "the ball stops", "a cat looks"]
    assert record["seed"] == 3 and record["finished"] is True and record["num_frames_written"] == 25
    assert record["settings"]["num_frames"] == 9 and record["settings"]["tau_low"] == 0.0
    assert record["settings"]["conditioning_mode"] == "concat" and record["settings"]["kv_cache_clips"] == 0
    assert [c["frame_range"] for c in record["clips"]] == [[0, 9], [9, 17], [17, 25]]
    assert all(c["seconds"] > 0 for c in record["clips"]) and record["total_seconds"] > 0
    assert [entry["clip"] for entry in record["kv_plan"]] == [0, 1, 2]
    assert "clip 3/3" in capsys.readouterr().out


def test_generate_prompt_and_num_clips_match_the_pipeline(tiny_model, tmp_path, monkeypatch):
    import diffusers_longvid.video_io as video_io

    appended = []

    class RecordingWriter(video_io.StreamingVideoWriter):
        def append(self, frames):
            appended.append(np.array(frames))
            return super().append(frames)

    monkeypatch.setattr(video_io, "StreamingVideoWriter", RecordingWriter)
    out = tmp_path / "same.mp4"
    args = ["generate", "--model", tiny_model, "--prompt", "a red ball", "--num-clips", "2", "--out", str(out)]
    assert main(args + TINY + ["--seed", "7", "--tau-low", "0", "--tau-high", "1"]) == 0
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["prompts"] == ["a red ball", "a red ball"]
    assert read_video(out).shape == (17, 16, 16, 3)

    # what was streamed is exactly what the pipeline makes for the same seed and settings
    pipe = LongVideoExtensionPipeline.from_pretrained(tiny_model)
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(
        "a red ball",
        num_clips=2,
        height=16,
        width=16,
        num_frames=9,
        num_condition_frames=1,
        num_inference_steps=2,
        max_sequence_length=16,
        generator=torch.Generator().manual_seed(7),
    ).frames[0]
    assert [len(a) for a in appended] == [9, 8]
    np.testing.assert_allclose(np.concatenate(appended), expected, atol=1e-5)


def test_generate_errors(tiny_model, tmp_path, capsys):
    out = str(tmp_path / "x.mp4")
    base = ["generate", "--model", tiny_model, "--out", out] + TINY
    assert main(base + ["--prompts-file", str(tmp_path / "missing.txt")]) == 2
    assert "`--prompts-file`" in capsys.readouterr().err
    assert main(base + ["--prompt", "a", "--num-frames", "8"]) == 2  # later flag wins: 8 is not 4k+1
    assert "`num_frames`" in capsys.readouterr().err
    assert main(["generate", "--model", str(tmp_path / "nowhere"), "--prompt", "a", "--out", out]) == 2
    assert "could not load" in capsys.readouterr().err


def test_generate_toy_preset_missing_is_a_clear_error(tmp_path, capsys, monkeypatch):
    import diffusers_longvid.presets as presets

    monkeypatch.setattr(presets, "_PRESET_ROOT", tmp_path / "no-presets")  # a checkout whose preset was removed
    with pytest.raises(FileNotFoundError, match="train_toy.sh"):
        presets.get_preset_path("toy")
    assert main(["generate", "--model", "toy", "--prompt", "a", "--out", str(tmp_path / "t.mp4")]) == 2
    assert "`--model toy`" in capsys.readouterr().err


def test_streaming_writer_keeps_finished_clips_when_a_later_clip_raises(tmp_path):
    pipe = LongVideoExtensionPipeline(**get_dummy_components(in_channels=36), kv_cache_clips=0)
    pipe.set_progress_bar_config(disable=True)

    def fail_in_clip_2(pipe, step, timestep, tensors):
        if pipe.current_clip_index == 2:
            raise RuntimeError("out of memory (simulated)")
        return {}

    path = tmp_path / "partial.mp4"
    written = []
    with pytest.raises(RuntimeError, match="simulated"):
        with StreamingVideoWriter(path, fps=8) as writer:
            for clip in pipe.generate_clips(
                ["a", "b", "c", "d"],
                height=16,
                width=16,
                num_frames=9,
                num_condition_frames=1,
                num_inference_steps=2,
                max_sequence_length=16,
                callback_on_step_end=fail_in_clip_2,
                generator=torch.Generator().manual_seed(0),
            ):
                writer.append(clip.frames)  # a batch: the writer takes video `batch_index=0`
                written.append(clip.clip_index)
    assert written == [0, 1]
    assert read_video(path).shape == (9 + 8, 16, 16, 3)
    assert pipe.current_clip_index is None  # the generator cleaned up


def test_to_uint8_frames_forms():
    frames = np.linspace(0, 1, 2 * 4 * 4 * 3, dtype=np.float32).reshape(2, 4, 4, 3)
    as_uint8 = to_uint8_frames(frames)
    assert as_uint8.dtype == np.uint8 and as_uint8.shape == (2, 4, 4, 3) and as_uint8.max() == 255
    np.testing.assert_array_equal(to_uint8_frames(torch.from_numpy(frames).permute(0, 3, 1, 2)), as_uint8)
    np.testing.assert_array_equal(to_uint8_frames(frames[None], batch_index=0), as_uint8)
    with pytest.raises(ValueError, match="`batch_index`"):
        to_uint8_frames(frames[None])
