"""Property-based fuzzing (hypothesis) of everything that parses user input: the pipeline's arguments (media
included), the media validation layer, the scheduler config, the toy script validator, the training manifest and the
generation state folder.

Each property: the code either accepts the input and returns a well-formed result, or raises one of the package's
documented exceptions (`TypeError` / `ValueError` and their subclasses `ManifestError`, `GenerationStateError`) whose
message names the argument. Nothing else may escape (no IndexError, OverflowError, AttributeError, ...).

Profiles: `suite` (the default, derandomised, `SUITE_EXAMPLES` per property) and `fuzz` (`LONGVID_FUZZ=1`,
`FUZZ_EXAMPLES` per property; `make fuzz`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from diffusers_longvid import LongVideoExtensionPipeline, TRFlowScheduler
from diffusers_longvid.pipelines.longvideo.state import GenerationState, GenerationStateError
from diffusers_longvid.selection import RecentSelector
from diffusers_longvid.testing import get_dummy_components
from diffusers_longvid.toy.world import validate_script
from diffusers_longvid.training.manifest import ManifestError, load_manifest
from diffusers_longvid.validation import validate_image, validate_video


SUITE_EXAMPLES = 50
FUZZ_EXAMPLES = 1700
_common = dict(deadline=None, database=None, suppress_health_check=list(HealthCheck))
settings.register_profile("suite", max_examples=SUITE_EXAMPLES, derandomize=True, **_common)
settings.register_profile("fuzz", max_examples=FUZZ_EXAMPLES, **_common)
settings.load_profile("fuzz" if os.environ.get("LONGVID_FUZZ") == "1" else "suite")

H = W = 16
KWARGS = dict(height=H, width=W, num_frames=9, num_condition_frames=5, num_inference_steps=2, max_sequence_length=16)


@pytest.fixture(scope="module")
def pipe():
    pipe = LongVideoExtensionPipeline(
        **get_dummy_components(in_channels=36), kv_cache_clips=2, max_cached_clips=2, clip_selector=RecentSelector()
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("state_dirs")


def expect_named_error(error: BaseException, *names: str) -> None:
    """`error` is a documented exception whose message names one of `names` in backticks."""
    assert isinstance(error, (TypeError, ValueError)), f"{type(error).__name__}: {error}"
    message = str(error)
    assert any(f"`{name}" in message for name in names), (names, message)


# ------------------------------------------------------------------------------------------------------ media
_DTYPES = [np.uint8, np.int8, np.uint16, np.int32, np.int64, np.float16, np.float32, np.float64, np.bool_]
_MODES = ["RGB", "RGBA", "L", "LA", "P", "1", "CMYK", "YCbCr", "I", "F", "I;16"]


@st.composite
def arrays(draw, min_dims=0, max_dims=6):
    dtype = draw(st.sampled_from(_DTYPES))
    shape = draw(hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=0, max_side=5))
    shape = tuple(3 if draw(st.booleans()) and i == len(shape) - 1 else s for i, s in enumerate(shape))
    if np.dtype(dtype).kind == "f":
        kind = draw(st.sampled_from(["unit", "byte", "signed", "any"]))
        elements = {
            "unit": st.floats(0, 1, width=16),
            "byte": st.floats(0, 255, width=16),
            "signed": st.floats(-1, 1, width=16),
            "any": st.floats(allow_nan=True, allow_infinity=True, width=16),
        }[kind]
        return draw(hnp.arrays(dtype, shape, elements=elements))
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        high = min(draw(st.sampled_from([255, int(info.max)])), int(info.max))
        return draw(hnp.arrays(dtype, shape, elements=st.integers(max(int(info.min), -3), high)))
    return draw(hnp.arrays(dtype, shape))


@st.composite
def pil_images(draw):
    mode = draw(st.sampled_from(_MODES))
    size = (draw(st.integers(0, 6)), draw(st.integers(0, 6)))
    return PIL.Image.new(mode, size)


def tensors(strategy=None):
    return (strategy if strategy is not None else arrays()).map(lambda a: torch.from_numpy(np.ascontiguousarray(a)))


media = st.one_of(
    arrays(),
    tensors(),
    pil_images(),
    st.lists(pil_images(), max_size=4),
    st.lists(arrays(2, 3), max_size=4),
    st.lists(tensors(arrays(2, 3)), max_size=3),
    st.lists(st.lists(pil_images(), min_size=1, max_size=2), min_size=1, max_size=2),
    st.lists(st.one_of(pil_images(), arrays(3, 3)), min_size=2, max_size=3),
    st.none(),
    st.text(max_size=3),
    st.integers(),
)


def _canonical(result) -> None:
    """A validated image / video: RGB PIL, or float32 in [0, 1] with 3 channels and a batch axis."""
    items = result if isinstance(result, list) else [result]
    for item in items:
        if isinstance(item, list):
            assert all(isinstance(f, PIL.Image.Image) and f.mode == "RGB" for f in item)
        elif isinstance(item, PIL.Image.Image):
            assert item.mode == "RGB" and item.width > 0 and item.height > 0
        else:
            values = item.numpy() if isinstance(item, torch.Tensor) else item
            assert values.dtype == np.float32 and values.ndim in (4, 5) and 0 not in values.shape
            assert np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1
            channel_axis = -1 if isinstance(item, np.ndarray) else (1 if values.ndim == 4 else 2)
            assert values.shape[channel_axis] == 3


@given(value=media, kind=st.sampled_from(["image", "video"]))
def test_media_validation_accepts_only_well_formed_media(value, kind):
    check = validate_image if kind == "image" else validate_video
    try:
        result = check(value, kind)
    except Exception as error:  # noqa: BLE001 - the property is about which exceptions escape
        expect_named_error(error, kind)
        return
    _canonical(result)
    if isinstance(value, np.ndarray) and value.dtype == np.uint8:  # the documented rule: uint8 is 0-255
        np.testing.assert_allclose(result.reshape(-1)[: value.size].max() * 255, value.max(), atol=1e-3)


@given(value=media, kind=st.sampled_from(["image", "video"]))
def test_first_condition_is_in_range_or_refused(pipe, value, kind):
    try:
        clips = pipe.generate_clips("a", **{kind: value}, **KWARGS)
    except Exception as error:  # noqa: BLE001
        expect_named_error(error, kind, "num_condition_frames")
        return
    clips.close()
    if value is not None:
        condition = pipe.prepare_first_condition(*((value, None) if kind == "image" else (None, value)), H, W, 5, 1)
        assert condition.dtype == torch.float32 and condition.shape[:2] == (1, 3) and condition.shape[3:] == (H, W)
        assert torch.isfinite(condition).all() and condition.min() >= -1 and condition.max() <= 1


# --------------------------------------------------------------------------------------- the pipeline's arguments
hostile = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 40),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4),
    st.lists(st.one_of(st.integers(-2, 3), st.text(max_size=3), st.none()), max_size=3),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    st.just(torch.Generator()),
    st.builds(lambda shape: torch.full(shape, float("nan")), st.just((1, 16, 3, 2, 2))),
    st.builds(torch.randn, st.just((1, 16, 3, 2, 2))),
)
ARGUMENTS = [
    "prompt", "negative_prompt", "num_clips", "height", "width", "num_frames", "num_condition_frames",
    "num_inference_steps", "guidance_scale", "num_videos_per_prompt", "generator", "latents", "output_type",
    "callback_on_step_end", "callback_on_step_end_tensor_inputs", "callback_on_clip_end", "max_sequence_length",
    "kv_cache_clips", "max_cached_clips", "resume", "state_dir",
]  # fmt: skip


@given(name=st.sampled_from(ARGUMENTS), value=hostile)
def test_pipeline_arguments_are_validated_naming_the_argument(pipe, scratch, name, value):
    if name == "state_dir" and isinstance(value, str):
        # a str is a valid folder name: keep it out of the working directory
        value = str(scratch / ("d" + "".join(c for c in value if c.isalnum())))
    call = {"prompt": ["a", "b"], **KWARGS, name: value}
    try:
        clips = pipe.generate_clips(**call)
    except Exception as error:  # noqa: BLE001
        # a wrong value may be named together with the argument it conflicts with
        related = {"num_frames": ["num_condition_frames"], "num_condition_frames": ["num_frames"],
                   "num_videos_per_prompt": ["generator", "latents"], "prompt": ["num_clips", "negative_prompt"],
                   "num_clips": ["prompt"], "max_cached_clips": ["kv_cache_clips"], "kv_cache_clips": [],
                   "height": ["latents", "width"], "width": ["latents", "height"], "resume": ["state_dir"],
                   "num_inference_steps": []}  # fmt: skip
        expect_named_error(error, name, *related.get(name, []))
        return
    clips.close()


# --------------------------------------------------------------------------------------------- scheduler config
numbers = st.one_of(
    st.integers(-5, 2000), st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=True), st.booleans(),
    st.text(max_size=2), st.none(),
)  # fmt: skip


@given(
    shift=numbers, num_train_timesteps=numbers, tau_low=numbers, tau_high=numbers, steps=st.integers(1, 30),
    which=st.sets(st.sampled_from(["shift", "num_train_timesteps", "tau_low", "tau_high"]), min_size=1),
)  # fmt: skip
def test_scheduler_config_is_validated_and_schedules_stay_in_range(
    shift, num_train_timesteps, tau_low, tau_high, steps, which
):
    values = {"shift": shift, "num_train_timesteps": num_train_timesteps, "tau_low": tau_low, "tau_high": tau_high}
    config = {key: values[key] for key in which}
    try:
        scheduler = TRFlowScheduler(**config)
    except Exception as error:  # noqa: BLE001
        expect_named_error(error, *config)
        return
    try:
        scheduler.set_timesteps(steps)
    except ValueError as error:  # a valid but extreme shift can leave no step in the window: said so, naming it
        assert "window" in str(error) and "tau_low" in str(error)
        return
    timesteps = scheduler.timesteps
    total = scheduler.config.num_train_timesteps
    assert torch.isfinite(timesteps).all() and timesteps.min() >= 0 and timesteps.max() <= total
    assert torch.isfinite(scheduler.sigmas).all() and scheduler.sigmas.min() >= 0 and scheduler.sigmas.max() <= 1


# ------------------------------------------------------------------------------------------------- toy scripts
json_values = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(-5, 5), st.integers(min_value=-(10**400), max_value=10**400),
        st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6),
        st.sampled_from(["white", "red", "circle", "square", "stays", "bounces", "enters_left", "exits_right", "none"]),
    ),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=6,
)  # fmt: skip
CLIP_KEYS = ["prompt", "background", "texture", "objects", "duration", "junk"]
OBJECT_KEYS = ["shape", "color", "visible", "motion", "position", "size", "heading", 3]


@st.composite
def scripts(draw):
    clips = []
    for _ in range(draw(st.integers(1, 3))):
        clip = {"background": "white", "objects": [{"shape": "circle", "color": "red"}]}
        for _ in range(draw(st.integers(0, 3))):
            objects = clip.get("objects")
            has_object = isinstance(objects, list) and objects and isinstance(objects[0], dict)
            target = clip if draw(st.booleans()) or not has_object else objects[0]
            keys = CLIP_KEYS if target is clip else OBJECT_KEYS
            target[draw(st.sampled_from(keys))] = draw(json_values)
        clips.append(clip)
    return draw(st.one_of(st.just(clips), json_values)) if draw(st.integers(0, 9)) == 0 else clips


@given(script=scripts())
def test_validate_script_raises_only_its_documented_errors(script):
    try:
        clips = validate_script(script)
    except Exception as error:  # noqa: BLE001
        expect_named_error(error, "script")
        return
    for clip in clips:
        assert np.isfinite(clip.get("duration", 1.0))
        for obj in clip["objects"]:
            assert np.isfinite(obj.get("heading", 0.0)) and np.isfinite(obj.get("size", 0.1))


# ----------------------------------------------------------------------------------------------------- manifest
@st.composite
def manifest_lines(draw):
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return draw(st.binary(max_size=40))
    if kind == 1:
        return json.dumps(draw(json_values), allow_nan=True).encode()
    clip = {"start": 0, "end": 1, "caption": "a"}
    for _ in range(draw(st.integers(0, 2))):
        clip[draw(st.sampled_from(["start", "end", "caption", "x"]))] = draw(json_values)
    entry = {"video": draw(st.sampled_from(["a.mp4", "missing.mp4", "v" * 5000, "~nobody_xyz/a.mp4", "a\x00b"])),
             "clips": [clip] * draw(st.integers(0, 2))}  # fmt: skip
    if kind == 2:
        entry[draw(st.sampled_from(["video", "clips"]))] = draw(json_values)
    if kind == 3:
        return b"[" * draw(st.integers(900, 5000)) + b"]"
    return json.dumps(entry, allow_nan=True).encode()


@given(lines=st.lists(manifest_lines(), min_size=1, max_size=5))
def test_manifest_parser_raises_only_manifest_errors_with_line_numbers(lines):
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "a.mp4").write_bytes(b"")
        path = Path(folder) / "m.jsonl"
        path.write_bytes(b"\n".join(line.replace(b"\n", b" ") for line in lines) + b"\n")
        try:
            records = load_manifest(path, probe_durations=False)
        except ManifestError as error:
            assert error.errors and all(1 <= line <= len(lines) for line, _ in error.errors)
            return
        except ValueError as error:
            assert "holds no videos" in str(error)
            return
    assert all(record.clips and Path(record.path).name == "a.mp4" for record in records)


# ------------------------------------------------------------------------------------------------ state folders
@pytest.fixture(scope="module")
def state_template(pipe, tmp_path_factory):
    folder = tmp_path_factory.mktemp("state_template")
    kwargs = {**KWARGS, "num_condition_frames": 1}
    list(pipe.generate_clips(["a", "b", "c"], generator=torch.Generator().manual_seed(0), state_dir=folder, **kwargs))
    return folder


MANIFEST_FIELDS = ["num_clips_done", "clips", "prompts", "next_frame", "latent_offset", "num_generators",
                   "generator_devices", "carry_file", "memory", "checksums", "settings", "version", "format"]  # fmt: skip


@given(
    action=st.sampled_from(["delete", "truncate", "flip", "field", "subfield", "garbage"]),
    which=st.integers(0, 100),
    position=st.floats(0, 1),
    value=json_values,
)
def test_state_loading_raises_only_generation_state_errors(state_template, action, which, position, value):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "state"
        shutil.copytree(state_template, folder)
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        target = files[which % len(files)]
        manifest_path = folder / "state.json"
        manifest = json.loads(manifest_path.read_text())
        data = target.read_bytes()
        changed_bytes = False
        if action == "delete":
            target.unlink()
            changed_bytes = target.name != "state.json"
        elif action == "truncate" and data:
            target.write_bytes(data[: int(position * (len(data) - 1))])
            changed_bytes = True
        elif action == "flip" and data:
            index = int(position * (len(data) - 1))
            target.write_bytes(data[:index] + bytes([data[index] ^ 0x5A]) + data[index + 1 :])
            changed_bytes = True
        elif action == "field":
            manifest[MANIFEST_FIELDS[which % len(MANIFEST_FIELDS)]] = value
            manifest_path.write_text(json.dumps(manifest, allow_nan=True))
        elif action == "subfield":
            key = MANIFEST_FIELDS[which % 4]
            if isinstance(manifest[key], list) and manifest[key]:
                manifest[key][which % len(manifest[key])] = value
            manifest_path.write_text(json.dumps(manifest, allow_nan=True))
        else:
            manifest_path.write_bytes(json.dumps(value, allow_nan=True).encode()[:200])
        note(f"{action} {target.relative_to(folder)}")
        try:
            state = GenerationState.load(folder)
            state.load_memory_state()
            latents = [state.clip_latents(i) for i in range(state.num_clips_done)]
        except GenerationStateError as error:
            assert str(folder) in str(error) or "state.json" in str(error)
            return
        # what loads is complete: every clip's latents and the carry, and no damaged byte went unnoticed
        tracked = target.name == "state.json" or target.parent.name in ("latents", "kv") or "carry" in target.name
        assert not (changed_bytes and tracked and target.name != "state.json"), f"{action} {target} went unnoticed"
        assert len(latents) == state.num_clips_done == len(state.clips)
