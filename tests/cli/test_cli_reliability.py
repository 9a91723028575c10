"""Regression tests of issue 15's CLI cases: every user error is one `error:` line with exit code 2 (checked before
the model loads), a damaged resumable job is refused naming the file, and a failed run never replaces a result."""

import json

import numpy as np
import pytest

from diffusers_longvid import LongVideoExtensionPipeline
from diffusers_longvid.cli import main
from diffusers_longvid.testing import get_dummy_components
from diffusers_longvid.video_io import read_video, write_video


TINY = ["--height", "16", "--width", "16", "--num-frames", "9", "--num-inference-steps", "2", "--fps", "8"]
TINY += ["--max-sequence-length", "16", "--num-condition-frames", "1", "--device", "cpu", "--seed", "7"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_pipeline")
    LongVideoExtensionPipeline(**get_dummy_components(in_channels=36), kv_cache_clips=0).save_pretrained(folder)
    return str(folder)


@pytest.fixture
def no_model_load(monkeypatch):
    """Fails the test if a command gets as far as loading the model."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the bad flag was noticed")

    monkeypatch.setattr(LongVideoExtensionPipeline, "from_pretrained", refuse)


def one_error_line(capsys, *fragments):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def test_bad_flags_and_files_are_one_error_line_before_the_model_loads(tiny_model, tmp_path, capsys, no_model_load):
    a_file = tmp_path / "file.txt"
    a_file.write_text("not an image")
    folder = tmp_path / "folder"
    folder.mkdir()
    base = ["generate", "--model", tiny_model, "--prompt", "a", "--out", str(tmp_path / "v.mp4")] + TINY
    cases = [
        (["--out", str(folder)], ["`--out`", "is a folder"]),
        (["--out", str(a_file / "v.mp4")], ["`--out`", "which is a file"]),
        (["--out", str(tmp_path / "v.txt")], ["`--out`", ".mp4"]),
        (["--device", "bogus"], ["`--device` 'bogus'"]),
        (["--image", str(a_file)], ["`--image`", "not an image file"]),
        (["--image", str(folder)], ["`--image`", "is a folder"]),
        (["--video", str(a_file)], ["`--video`", "not a video file"]),
        (["--state-dir", str(a_file)], ["`--state-dir`", "is a file"]),
        (["--fps", "0"], ["`--fps` must be > 0.0"]),
        (["--fps", "nan"], ["`--fps` must be a finite number"]),
        (["--guidance-scale", "nan"], ["`--guidance-scale` must be a finite number"]),
        (["--seed", str(2**70)], ["`--seed` must be <= "]),
        (["--num-clips", "0"], ["`--num-clips` must be >= 1"]),
    ]
    for extra, fragments in cases:
        assert main(base + extra) == 2, extra
        one_error_line(capsys, *fragments)
    assert main(["generate", "--resume", str(a_file)]) == 2
    one_error_line(capsys, "`--resume`", "is a file")


def test_json_errors_name_the_file(tiny_model, tmp_path, capsys, no_model_load):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    (model / "preset.json").write_text("{not json")
    assert main(["generate", "--model", str(model), "--prompt", "a", "--out", str(tmp_path / "v.mp4")]) == 2
    one_error_line(capsys, "preset.json", "is not valid JSON")


def test_a_failed_run_never_replaces_the_previous_result(tiny_model, tmp_path, capsys):
    out = tmp_path / "v.mp4"
    base = ["generate", "--model", tiny_model, "--prompt", "a", "--out", str(out)] + TINY
    assert main(base) == 0
    video, sidecar = out.read_bytes(), out.with_suffix(".json").read_bytes()
    capsys.readouterr()
    assert main(base + ["--fps", "0"]) == 2  # issue 15: this used to overwrite the sidecar
    assert main(base + ["--num-frames", "8"]) == 2  # refused by the pipeline, after the model loaded
    assert out.read_bytes() == video and out.with_suffix(".json").read_bytes() == sidecar
    assert not out.with_name("v.partial.mp4").exists()


def test_debug_shows_the_traceback(tiny_model, tmp_path):
    with pytest.raises(ValueError, match="`--fps`"):
        main(["generate", "--model", tiny_model, "--prompt", "a", "--out", str(tmp_path / "v.mp4"), "--debug"]
             + TINY + ["--fps", "0"])  # fmt: skip


def test_unexpected_errors_are_one_line_too(capsys, monkeypatch):
    import diffusers_longvid.commands.generate as generate

    def boom(args):
        raise RuntimeError("simulated\nbug")

    monkeypatch.setattr(generate, "run", boom)  # `register` picks the module's `run` when the parser is built
    assert main(["generate", "--prompt", "a"]) == 1
    line = one_error_line(capsys, "internal error", "RuntimeError", "--debug")
    assert "simulated; bug" in line


# ----------------------------------------------------------------------------------------------------- resume
@pytest.fixture(scope="module")
def finished_job(tiny_model, tmp_path_factory):
    """A resumable 3-clip job, finished; tests copy it and damage the copy."""
    root = tmp_path_factory.mktemp("job")
    script = root / "script.txt"
    script.write_text("a ball\na cat\na dog\n")
    args = ["generate", "--model", tiny_model, "--prompts-file", str(script), "--out", str(root / "video.mp4")]
    assert main(args + TINY + ["--state-dir", str(root / "state")]) == 0
    return root


def copy_job(finished_job, tmp_path):
    import shutil

    shutil.copytree(finished_job, tmp_path / "job")
    return tmp_path / "job"


@pytest.mark.parametrize(
    "damage, fragments",
    [
        (
            lambda s: (s / "segments" / "clip_00001.mp4").write_bytes(
                (s / "segments" / "clip_00001.mp4").read_bytes()[:300]
            ),
            ["segments/clip_00001.mp4 does not match its checksum"],
        ),
        (lambda s: (s / "segments" / "clip_00002.mp4").unlink(), ["segments/clip_00002.mp4", "is missing"]),
        (lambda s: _flip(s / "carry_00002.safetensors"), ["'carry_00002.safetensors' does not match its checksum"]),
        (lambda s: _edit(s / "state.json", num_clips_done=99), ["`num_clips_done` is 99"]),
        (lambda s: (s / "cli.json").write_text("[1, 2"), ["cli.json", "is not valid JSON"]),
    ],
    ids=["truncated-segment", "deleted-segment", "flipped-carry", "num-clips-done-99", "corrupt-cli-json"],
)
def test_resume_of_a_damaged_job_is_refused_naming_the_file(
    finished_job, tmp_path, capsys, damage, fragments, monkeypatch
):
    job = copy_job(finished_job, tmp_path)
    good = (job / "video.mp4").read_bytes()
    damage(job / "state")
    monkeypatch.setattr(LongVideoExtensionPipeline, "from_pretrained", None)  # refused before the model loads
    assert main(["generate", "--resume", str(job / "state")]) == 2
    one_error_line(capsys, *fragments)
    assert (job / "video.mp4").read_bytes() == good  # the good mp4 is untouched


def _flip(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _edit(path, **fields):
    data = json.loads(path.read_text())
    data.update(fields)
    path.write_text(json.dumps(data))


def test_resume_refuses_a_flag_equal_to_its_default(finished_job, tmp_path, capsys, monkeypatch):
    job = copy_job(finished_job, tmp_path)
    monkeypatch.setattr(LongVideoExtensionPipeline, "from_pretrained", None)
    assert main(["generate", "--resume", str(job / "state"), "--seed", "0"]) == 2  # saved: 7
    one_error_line(capsys, "--seed 0 (saved: 7)")


def test_resume_of_a_finished_job_gives_the_same_mp4(finished_job, tmp_path, capsys):
    job = copy_job(finished_job, tmp_path)
    before = (job / "video.mp4").read_bytes()
    assert main(["generate", "--resume", str(job / "state")]) == 0
    assert (job / "video.mp4").read_bytes() == before
    assert read_video(job / "video.mp4").shape[0] == 9 + 8 + 8


def test_video_input_is_read_as_uint8_and_scaled(tiny_model, tmp_path):
    """`--video` goes through the same validation as `video=`: the uint8 frames of the file are 0-255 values."""
    frames = np.random.default_rng(0).random((5, 16, 16, 3))
    write_video(frames, tmp_path / "in.mp4", fps=8)
    out = tmp_path / "v.mp4"
    assert main(["generate", "--model", tiny_model, "--prompt", "a", "--out", str(out), "--video",
                 str(tmp_path / "in.mp4")] + TINY) == 0  # fmt: skip
    assert read_video(out).shape[0] == 9
