"""Regression tests of issue 15's bad-input cases below the CLI: the media validation layer, the pipeline's other
inputs, the scheduler config, the toy script validator, the manifest parser and the generation state."""

import json

import numpy as np
import PIL.Image
import pytest
import torch

from diffusers_longvid import LongVideoExtensionPipeline, TRFlowScheduler
from diffusers_longvid.pipelines.longvideo.state import GenerationState, GenerationStateError
from diffusers_longvid.testing import get_dummy_components
from diffusers_longvid.validation import check_float, check_seed, validate_image, validate_video


H = W = 16
KWARGS = dict(height=H, width=W, num_frames=9, num_condition_frames=5, num_inference_steps=2, max_sequence_length=16)


@pytest.fixture(scope="module")
def pipe():
    pipe = LongVideoExtensionPipeline(**get_dummy_components(in_channels=36), kv_cache_clips=0)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def frames_uint8(n=5, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, H, W, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------------------ media: one layer
def test_uint8_video_matches_the_pil_path_exactly(pipe, cpu_generator):
    """Issue 15 #1: a uint8 array (what `read_video` returns) was read as [0, 1], building the condition in
    [-1, 509]; float 0-1 arrays and tensors are the same video, so all four give the same frames."""
    video = frames_uint8()
    as_pil = [PIL.Image.fromarray(f) for f in video]
    condition = pipe.prepare_first_condition(None, video, H, W, 5, 1)
    assert condition.min() >= -1 and condition.max() <= 1
    torch.testing.assert_close(condition, pipe.prepare_first_condition(None, as_pil, H, W, 5, 1), rtol=0, atol=0)

    def run(v):
        return pipe("a", video=v, generator=cpu_generator(0), **KWARGS).frames

    reference = run(as_pil)
    for form in (video, video.astype(np.float32) / 255, torch.from_numpy(video).permute(0, 3, 1, 2) / 255.0):
        np.testing.assert_array_equal(run(form), reference)


@pytest.mark.parametrize(
    "video, error, match",
    [
        (np.zeros((5, H, W)), ValueError, r"`video`.*\(F, H, W, 3\).*channel axis"),  # (F, H, W)
        (np.zeros((H, W)), ValueError, r"`video`.*\(F, H, W, 3\)"),
        (np.zeros((5, H, W, 4), np.uint8), ValueError, r"`video` has 4 channels.*alpha"),
        (np.zeros((0, H, W, 3), np.uint8), ValueError, r"`video` is empty.*0 frames"),
        ([], ValueError, r"`video` has 0 frames"),
        (np.full((5, H, W, 3), 300, np.int64), ValueError, r"`video` has integer dtype int64.*\[0, 255\]"),
        (np.full((5, H, W, 3), 200.0), ValueError, r"`video`.*0-255 values.*x / 255"),
        (np.full((5, H, W, 3), np.nan), ValueError, r"`video` holds NaN"),
        (torch.full((5, 3, H, W), -0.5), ValueError, r"`video`.*\[-1, 1\].*\(x \+ 1\) / 2"),
        (np.zeros((5, H, W, 3), bool), TypeError, r"`video` has dtype bool"),
        ([PIL.Image.new("RGB", (8, 8)), np.zeros((8, 8, 3))], TypeError, r"`video`.*one kind"),
        ("clip.mp4", TypeError, r"`video` must be"),
    ],
)
def test_bad_videos_are_refused_naming_the_argument(pipe, video, error, match):
    with pytest.raises(error, match=match):
        pipe.generate_clips("a", video=video, **KWARGS)


@pytest.mark.parametrize(
    "image, error, match",
    [
        (np.zeros((3, H, W), np.uint8), ValueError, r"`image` must have 3 \(RGB\) or 1 \(grey\) channels last"),
        (np.zeros((H, W, 4), np.uint8), ValueError, r"`image` has 4 channels"),
        (np.zeros((H, W, 3), np.int64) + 256, ValueError, r"`image` has integer dtype"),
        (np.full((H, W, 3), np.inf, np.float32), ValueError, r"`image` holds NaN or infinite"),
        (PIL.Image.new("I", (H, W)), ValueError, r"`image` is a PIL image of mode 'I'"),
        (np.zeros((1, 1, 1, 1, 1)), ValueError, r"`image` as an array must be"),
    ],
)
def test_bad_images_are_refused_naming_the_argument(pipe, image, error, match):
    with pytest.raises(error, match=match):
        pipe.generate_clips("a", image=image, **KWARGS)


@pytest.mark.parametrize("mode", ["RGBA", "L", "P", "LA", "1", "CMYK"])
def test_pil_modes_become_rgb(pipe, mode):
    image = PIL.Image.new("RGB", (H, W), (200, 40, 90)).convert(mode)
    assert validate_image(image).mode == "RGB"
    condition = pipe.prepare_first_condition(image, None, H, W, 5, 1)
    assert condition.shape == (1, 3, 1, H, W)


def test_grey_arrays_and_integer_dtypes_follow_the_documented_rule():
    grey = np.arange(H * W, dtype=np.int64).reshape(H, W) % 256
    out = validate_image(grey)
    assert out.shape == (1, H, W, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0, ..., 1], grey.astype(np.float32) / 255)
    video = validate_video(torch.zeros(7, 1, H, W, dtype=torch.uint8), num_last_frames=5)
    assert video.shape == (1, 5, 3, H, W) and video.dtype == torch.float32
    # a long video is only converted for its last frames
    assert validate_video([PIL.Image.new("L", (4, 4))] * 100, num_last_frames=5) == [PIL.Image.new("RGB", (4, 4))] * 5


# ------------------------------------------------------------------------------------ the pipeline's other inputs
@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(guidance_scale=float("nan")), ValueError, "`guidance_scale` must be a finite"),
        (dict(guidance_scale=float("inf")), ValueError, "`guidance_scale` must be a finite"),
        (dict(latents=torch.full((1, 16, 3, 2, 2), float("nan"))), ValueError, "`latents` holds NaN"),
        (dict(generator=[0]), TypeError, "`generator`.*list holding int"),
        (dict(max_sequence_length=10**6), ValueError, r"`max_sequence_length` must be <= 512"),
    ],
)
def test_bad_numbers_are_refused_before_any_work(pipe, kwargs, error, match):
    with pytest.raises(error, match=match):
        pipe.generate_clips("a", **{**KWARGS, **kwargs})


def test_callback_returning_none_changes_nothing(pipe, cpu_generator):
    seen = []

    def observe(pipe, step, timestep, tensors):
        seen.append(step)  # returns None

    out = pipe("a", generator=cpu_generator(0), callback_on_step_end=observe, **KWARGS).frames
    np.testing.assert_array_equal(out, pipe("a", generator=cpu_generator(0), **KWARGS).frames)
    assert seen == [0, 1]
    with pytest.raises(TypeError, match="`callback_on_step_end` must return a dict"):
        pipe("a", generator=cpu_generator(0), callback_on_step_end=lambda *a: 3, **KWARGS)


def test_number_helpers():
    assert check_float("x", 2) == 2.0
    with pytest.raises(ValueError, match="`x` must be a finite number, got an integer"):
        check_float("x", 10**400)
    with pytest.raises(TypeError, match="`x` must be a number"):
        check_float("x", True)
    with pytest.raises(ValueError, match=r"`--seed` must be <= 18446744073709551615"):
        check_seed("--seed", 2**70)


# --------------------------------------------------------------------------------------------------- scheduler
@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(shift=-1.0), "`shift` must be > 0"),
        (dict(shift=0.0), "`shift` must be > 0"),
        (dict(shift=float("nan")), "`shift` must be a finite"),
        (dict(num_train_timesteps=0), "`num_train_timesteps` must be in \\[1, 10\\*\\*7\\]"),
    ],
)
def test_scheduler_config_is_validated(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TRFlowScheduler(**kwargs)
    with pytest.raises(ValueError, match=match):
        TRFlowScheduler.from_config(TRFlowScheduler().config, **kwargs)


# ---------------------------------------------------------------------------------------------- toy script
def script(**obj):
    return [{"background": "white", "objects": [{"shape": "circle", "color": "red", **obj}]}]


@pytest.mark.parametrize(
    "bad, error, match",
    [
        (script(heading=float("nan")), ValueError, r"heading` must be a number of degrees \(finite\)"),
        (script(heading=10**400), ValueError, r"heading` must be a number of degrees \(finite\)"),
        (script(heading="90"), TypeError, "heading` must be a number"),
        ([{"background": "white", "duration": float("inf")}], ValueError, r"duration` must be a positive"),
        ([{"background": "white", "duration": float("nan")}], ValueError, r"duration` must be a positive"),
        ([{"background": "white", "duration": 10**400}], ValueError, r"duration` must be a positive"),
        ([{"background": ["white"]}], ValueError, r"background` must be one of"),
        (script(motion=["stays"]), ValueError, r"motion` must be one of"),
        (script(position=[0.5, [1]]), ValueError, r"position` must be"),
        (script(position=[0.5, float("nan")]), ValueError, r"position` must be"),
        ([{"background": "white", 1: 2, "x": 3}], ValueError, r"unknown keys"),
    ],
)
def test_validate_script_raises_only_its_documented_errors(bad, error, match):
    from diffusers_longvid.toy.world import validate_script

    with pytest.raises(error, match=match):
        validate_script(bad)


# ------------------------------------------------------------------------------------------------- manifest
def test_manifest_errors_stay_manifest_errors_with_line_numbers(tmp_path):
    from diffusers_longvid.training.manifest import ManifestError, load_manifest

    (tmp_path / "a.mp4").write_bytes(b"")
    good = {"video": "a.mp4", "clips": [{"start": 0, "end": 1, "caption": "x"}]}
    lines = [
        json.dumps(good).encode(),
        b'{"video": "a.mp4", "clips": [{"start": 0, "end": 1' + b"0" * 400 + b', "caption": "x"}]}',  # 10**400
        json.dumps({"video": "v" * 5000 + ".mp4", "clips": good["clips"]}).encode(),  # too long for the OS
        b"[" * 100_000 + b"]" * 100_000,  # RecursionError in json
        b'{"video": "\xff\xfe.mp4", "clips": []}',  # not UTF-8
    ]
    manifest = tmp_path / "m.jsonl"
    manifest.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(ManifestError) as info:
        load_manifest(manifest, probe_durations=False)
    errors = dict(info.value.errors)
    assert sorted(errors) == [2, 3, 4, 5]
    assert "`end` must be a finite number" in errors[2] and "an int of" in errors[2]
    assert "not a usable path" in errors[3]
    assert "nested too deeply" in errors[4]
    assert "not UTF-8" in errors[5] and "line 5" in str(info.value)


# --------------------------------------------------------------------------------------------- state folder
@pytest.fixture(scope="module")
def state_dir(pipe, tmp_path_factory):
    folder = tmp_path_factory.mktemp("state")
    kwargs = {**KWARGS, "num_condition_frames": 1}
    list(pipe.generate_clips(["a", "b", "c"], generator=torch.Generator().manual_seed(0), state_dir=folder, **kwargs))
    return folder


def copy_state(state_dir, tmp_path):
    import shutil

    target = tmp_path / "copy"
    shutil.copytree(state_dir, target)
    return target


@pytest.mark.parametrize(
    "damage, match",
    [
        (
            lambda d: (d / "latents" / "clip_00001.safetensors").unlink(),
            r"'latents/clip_00001.safetensors' is missing",
        ),
        (
            lambda d: _flip_byte(d / "carry_00002.safetensors"),
            r"'carry_00002.safetensors' does not match its checksum",
        ),
        (lambda d: _truncate(d / "latents" / "clip_00000.safetensors"), r"'latents/clip_00000.safetensors' does not"),
        (lambda d: _edit_manifest(d, num_clips_done=99), r"`num_clips_done` is 99 but it records 3 clips"),
        (lambda d: _edit_manifest(d, num_clips_done="3"), r"`num_clips_done` is \"3\", not a int"),
        (lambda d: _edit_manifest(d, next_frame=5), r"`next_frame` is 5"),
        (lambda d: (d / "state.json").write_text("{"), r"state.json' is not valid JSON"),
    ],
)
def test_a_damaged_state_is_refused_naming_the_file(state_dir, tmp_path, damage, match):
    folder = copy_state(state_dir, tmp_path)
    assert GenerationState.load(folder).num_clips_done == 3
    damage(folder)
    with pytest.raises(GenerationStateError, match=match):
        GenerationState.load(folder)


def _flip_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path):
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def _edit_manifest(folder, **fields):
    manifest = json.loads((folder / "state.json").read_text())
    manifest.update(fields)
    (folder / "state.json").write_text(json.dumps(manifest))


def test_state_checksums_cover_every_named_file(state_dir):
    manifest = json.loads((state_dir / "state.json").read_text())
    assert sorted(manifest["checksums"]) == [
        "carry_00002.safetensors",
        *(f"latents/clip_{n:05d}.safetensors" for n in range(3)),
    ]
    assert all(len(v) == 64 for v in manifest["checksums"].values())
