"""LongVideoExtensionPipeline: clip loop, stitching, conditioning modes, RoPE offsets, memory calls, save/load."""

import json
from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np
import PIL.Image
import pytest
import torch
from _pipes import F, H, W, call_kwargs, make_pipe

from diffusers_longvid import LongVideoExtensionPipeline, LongVideoPipelineOutput, TRFlowScheduler
from diffusers_longvid.attention.rope import OffsetWanRotaryPosEmbed
from diffusers_longvid.extension import denormalize_latents, prepare_extension_condition
from diffusers_longvid.selection import ClipPlan, RecentSelector
from diffusers_longvid.testing import get_dummy_components


PROMPTS = ["a red ball rolls", "the ball bounces", "the ball stops", "a cat looks at it", "the cat sleeps"]


def decode_np(pipe, latents):
    with torch.no_grad():
        video = pipe.vae.decode(denormalize_latents(pipe.vae, latents), return_dict=False)[0]
    return video, pipe.video_processor.postprocess_video(video, output_type="np")


@pytest.mark.parametrize("in_channels, mode", [(36, "concat"), (16, "replacement")])
def test_five_clips_give_41_frames_in_both_modes(in_channels, mode, pipe36, pipe16):
    pipe = pipe36 if in_channels == 36 else pipe16
    assert pipe.conditioning_mode == mode
    out = pipe(PROMPTS, **call_kwargs())
    assert isinstance(out, LongVideoPipelineOutput)
    assert out.frames.shape == (1, 9 + 4 * 8, H, W, 3)  # F + (N - 1)(F - k)
    assert out.frames.dtype == np.float32 and np.isfinite(out.frames).all()
    assert 0.0 <= out.frames.min() and out.frames.max() <= 1.0
    assert out.clip_frame_ranges == [(0, 9), (9, 17), (17, 25), (25, 33), (33, 41)]
    assert out.prompts == PROMPTS and len(out.clip_seconds) == 5
    assert [entry["clip"] for entry in out.kv_plan] == [0, 1, 2, 3, 4]
    assert all(entry["attends"] == [] for entry in out.kv_plan)  # KV cache off


@pytest.mark.parametrize("num_condition_frames", [1, 5])
def test_stitching_drops_exactly_the_condition_frames(pipe36, num_condition_frames):
    k = num_condition_frames
    seen = []
    out = pipe36(
        PROMPTS[:3],
        **call_kwargs(num_condition_frames=k),
        callback_on_clip_end=lambda pipe, index, frames, info: seen.append((index, frames.copy(), info)),
    )
    assert [index for index, _, _ in seen] == [0, 1, 2]
    assert out.frames.shape[1] == F + 2 * (F - k)
    for index, frames, info in seen:
        start, end = out.clip_frame_ranges[index]
        assert tuple(info["frame_range"]) == (start, end) and info["prompt"] == PROMPTS[index]
        assert frames.shape[1] == (F if index == 0 else F - k) == end - start
        np.testing.assert_array_equal(out.frames[:, start:end], frames)  # each kept frame comes from its clip

    # the frames dropped are exactly the clip's first k (its condition), none else
    clips = list(pipe36.generate_clips(PROMPTS[:3], **call_kwargs(num_condition_frames=k)))
    for clip in clips:
        pixels, decoded = decode_np(pipe36, clip.latents)
        dropped = 0 if clip.clip_index == 0 else k
        np.testing.assert_allclose(clip.frames, decoded[:, dropped:], atol=1e-5)
        assert clip.num_condition_frames == (0 if clip.clip_index == 0 else k)


def test_replacement_mode_writes_the_previous_clips_last_frames(pipe16):
    # 16 channels: the known latent frames of clip n are exactly the encoding of clip n-1's last k frames
    clips = list(pipe16.generate_clips(PROMPTS[:3], **call_kwargs(num_condition_frames=5), output_type="latent"))
    for previous, clip in zip(clips, clips[1:]):
        pixels, _ = decode_np(pipe16, previous.latents)
        expected = prepare_extension_condition(pipe16.vae, pixels[:, :, -5:], list(range(5)), F, fill="zeros")
        torch.testing.assert_close(clip.latents[:, :, :2], expected.condition_latent[:, :, :2], rtol=1e-5, atol=1e-5)


def test_per_clip_prompts_reach_the_text_encoder_in_order(pipe36, monkeypatch):
    calls = []
    original = pipe36.encode_prompt

    def spy(*args, **kwargs):
        calls.append((kwargs["prompt"], kwargs["negative_prompt"]))
        return original(*args, **kwargs)

    monkeypatch.setattr(pipe36, "encode_prompt", spy)
    pipe36(PROMPTS, negative_prompt=["n0", "n1", "n2", "n3", "n4"], **call_kwargs())
    assert calls == [(p, f"n{i}") for i, p in enumerate(PROMPTS)]
    calls.clear()
    pipe36("the same prompt", num_clips=3, **call_kwargs())
    assert [prompt for prompt, _ in calls] == ["the same prompt"] * 3


def test_determinism_and_seeds(pipe36):
    a = pipe36(PROMPTS[:2], **call_kwargs(seed=0)).frames
    b = pipe36(PROMPTS[:2], **call_kwargs(seed=0)).frames
    c = pipe36(PROMPTS[:2], **call_kwargs(seed=1)).frames
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3


def test_first_clip_latents_and_step_callback(pipe36):
    latents = torch.randn(1, 16, 3, 2, 2, generator=torch.Generator().manual_seed(3))
    steps = []

    def on_step(pipe, i, t, tensors):
        steps.append((pipe.current_clip_index, i))
        assert tensors["latents"].shape == (1, 16, 3, 2, 2)
        return {}

    a = pipe36(PROMPTS[:2], **call_kwargs(seed=0), latents=latents, callback_on_step_end=on_step).frames
    b = pipe36(PROMPTS[:2], **call_kwargs(seed=5), latents=latents).frames
    np.testing.assert_array_equal(a[:, :9], b[:, :9])  # clip 0 only depends on `latents`
    assert steps == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_output_types_and_tuple(pipe36):
    reference = pipe36(PROMPTS[:2], **call_kwargs()).frames
    pt = pipe36(PROMPTS[:2], **call_kwargs(), output_type="pt").frames
    assert pt.shape == (1, 17, 3, H, W) and pt.device.type == "cpu"
    np.testing.assert_allclose(pt.permute(0, 1, 3, 4, 2).numpy(), reference, atol=1e-6)
    pil = pipe36(PROMPTS[:2], **call_kwargs(), output_type="pil").frames
    assert len(pil) == 1 and len(pil[0]) == 17 and isinstance(pil[0][0], PIL.Image.Image)
    latent = pipe36(PROMPTS[:2], **call_kwargs(), output_type="latent").frames
    assert isinstance(latent, list) and [tuple(x.shape) for x in latent] == [(1, 16, 3, 2, 2)] * 2
    frames, ranges, kv_plan = pipe36(PROMPTS[:2], **call_kwargs(), return_dict=False)
    np.testing.assert_array_equal(frames, reference)
    assert ranges == [(0, 9), (9, 17)] and len(kv_plan) == 2


def test_batch_via_num_videos_per_prompt(pipe36):
    generators = [torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)]
    out = pipe36(PROMPTS[:2], **call_kwargs(generator=generators), num_videos_per_prompt=2)
    assert out.frames.shape == (2, 17, H, W, 3)
    assert np.abs(out.frames[0] - out.frames[1]).max() > 1e-3


def test_rope_offsets_run_past_rope_max_seq_len():
    pipe = make_pipe(36, components={"rope_max_seq_len": 4})
    offsets = []
    pipe.transformer.register_forward_pre_hook(lambda module, args: offsets.append(module.rope.frame_offset))
    out = pipe(PROMPTS, **call_kwargs(guidance_scale=1.0))  # no CFG: one forward per step
    assert out.frames.shape[1] == 41 and np.isfinite(out.frames).all()
    # clip n starts at latent n * (L - Lc) = 2n: the last clip reaches position 10 > rope_max_seq_len = 4
    assert offsets == [0, 0, 2, 2, 4, 4, 6, 6, 8, 8]
    assert not isinstance(pipe.transformer.rope, OffsetWanRotaryPosEmbed)  # the stock module is back


@pytest.mark.parametrize("mode", ["image", "video"])
def test_image_to_long_video_and_video_continuation(pipe16, mode):
    rng = np.random.default_rng(0)
    if mode == "image":
        given = PIL.Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
        pixels = pipe16.video_processor.preprocess(given, height=H, width=W).unsqueeze(2)
        k0 = 1
    else:
        given = rng.random((7, H, W, 3)).astype(np.float32)  # 7 frames: its last 5 condition clip 0
        pixels = pipe16.video_processor.preprocess_video(given, height=H, width=W)[:, :, -5:]
        k0 = 5
    clips = list(pipe16.generate_clips(PROMPTS[:2], **call_kwargs(num_condition_frames=5), **{mode: given}))
    assert [c.frame_range for c in clips] == [(0, 9), (9, 13)]
    assert clips[0].num_condition_frames == k0
    # replacement mode: clip 0 carries the given frames' latent exactly
    expected = prepare_extension_condition(pipe16.vae, pixels, list(range(k0)), F, fill="zeros")
    known = list(expected.known_latent_frames)
    torch.testing.assert_close(
        clips[0].latents[:, :, known], expected.condition_latent[:, :, known], rtol=1e-5, atol=1e-5
    )
    out = make_pipe(36)(PROMPTS[:2], **call_kwargs(num_condition_frames=5), **{mode: given})
    assert out.frames.shape == (1, 13, H, W, 3)


def _bad_inputs():
    g = torch.Generator()
    return [
        (dict(num_frames=8), ValueError, "`num_frames`"),
        (dict(num_frames="9"), TypeError, "`num_frames`"),
        (dict(num_condition_frames=2), ValueError, "`num_condition_frames`"),
        (dict(num_condition_frames=9), ValueError, "`num_condition_frames`"),
        (dict(num_condition_frames=1.0), TypeError, "`num_condition_frames`"),
        (dict(height=24), ValueError, "`height`"),
        (dict(width=40), ValueError, "`width`"),
        (dict(prompt=[]), ValueError, "`prompt`"),
        (dict(prompt=None), ValueError, "`prompt`"),
        (dict(prompt=7), TypeError, "`prompt`"),
        (dict(prompt=["a", 3]), TypeError, "`prompt`"),
        (dict(num_clips=3), ValueError, "`num_clips`"),
        (dict(prompt="a", num_clips=0), ValueError, "`num_clips`"),
        (dict(negative_prompt=["x"]), ValueError, "`negative_prompt`"),
        (dict(negative_prompt=3), TypeError, "`negative_prompt`"),
        (dict(image=np.zeros((H, W, 3)), video=np.zeros((3, H, W, 3))), ValueError, "`image`.*`video`"),
        (dict(image="frame.png"), TypeError, "`image`"),
        (dict(video="clip.mp4"), TypeError, "`video`"),
        (dict(callback_on_step_end_tensor_inputs=["noise_pred"]), ValueError, "`callback_on_step_end_tensor_inputs`"),
        (dict(callback_on_step_end="no"), TypeError, "`callback_on_step_end`"),
        (dict(callback_on_clip_end=3), TypeError, "`callback_on_clip_end`"),
        (dict(output_type="mp4"), ValueError, "`output_type`"),
        (dict(generator=[g, g]), ValueError, "`generator`"),
        (dict(generator=0), TypeError, "`generator`"),
        (dict(latents=torch.zeros(1, 16, 2, 2, 2)), ValueError, "`latents`"),
        (dict(num_inference_steps=0), ValueError, "`num_inference_steps`"),
        (dict(guidance_scale="5"), TypeError, "`guidance_scale`"),
        (dict(num_videos_per_prompt=0), ValueError, "`num_videos_per_prompt`"),
        (dict(max_sequence_length=0), ValueError, "`max_sequence_length`"),
        (dict(kv_cache_clips=-1), ValueError, "`kv_cache_clips`"),
        (dict(max_cached_clips=-2), ValueError, "`max_cached_clips`"),
        (dict(kv_cache_clips=2, max_cached_clips=0), ValueError, "`max_cached_clips`"),
    ]


@pytest.mark.parametrize("overrides, error, match", _bad_inputs())
def test_check_inputs_errors_name_the_argument_before_model_work(pipe36, overrides, error, match):
    model_calls = []
    handle = pipe36.transformer.register_forward_pre_hook(lambda *args: model_calls.append(1))
    te_handle = pipe36.text_encoder.register_forward_pre_hook(lambda *args: model_calls.append(1))
    vae_handle = pipe36.vae.register_forward_pre_hook(lambda *args: model_calls.append(1))
    try:
        kwargs = call_kwargs()
        kwargs["prompt"] = PROMPTS[:2]
        kwargs.update(overrides)
        with pytest.raises(error, match=match):
            pipe36(**kwargs)
        with pytest.raises(error, match=match):
            pipe36.generate_clips(**kwargs)  # raised on the call itself, before the first clip is asked for
    finally:
        handle.remove()
        te_handle.remove()
        vae_handle.remove()
    assert model_calls == []


def test_transformer_channels_are_checked():
    pipe = make_pipe(16)
    pipe.transformer.register_to_config(in_channels=20)
    with pytest.raises(ValueError, match="in_channels"):
        pipe(PROMPTS[:1], **call_kwargs())


def test_save_pretrained_round_trip(tmp_path):
    pipe = make_pipe(36)
    pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["_class_name"] == "LongVideoExtensionPipeline"
    assert index["scheduler"] == ["diffusers_longvid.schedulers.scheduling_trflow", "TRFlowScheduler"]
    assert index["kv_cache_clips"] == 0 and index["condition_fill"] == "vae"
    loaded = LongVideoExtensionPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert isinstance(loaded.scheduler, TRFlowScheduler)
    assert loaded.config.kv_cache_clips == 0 and loaded.transformer.config.in_channels == 36
    a = pipe(PROMPTS[:2], **call_kwargs()).frames
    b = loaded(PROMPTS[:2], **call_kwargs()).frames
    # same weights; BLAS rounding may differ with the loaded tensors' memory alignment (~1e-7)
    np.testing.assert_allclose(a, b, atol=1e-5)


class FakeClipMemory:
    """Records the pipeline's calls and the state every transformer forward runs in."""

    instances = []

    def __init__(self, transformer, kv_cache_clips=5, max_cached_clips=None, clip_selector=None, config=None):
        self.events = [("init", kv_cache_clips, max_cached_clips, clip_selector)]
        self.kv_cache_clips = kv_cache_clips
        self.record_from_last_step = bool(getattr(config, "record_from_last_step", False))
        self._branch, self._recording, self._summary = None, False, []
        self._handle = transformer.register_forward_pre_hook(self._on_forward, with_kwargs=True)
        FakeClipMemory.instances.append(self)

    @property
    def active(self):
        return self.kv_cache_clips > 0

    def _on_forward(self, module, args, kwargs):
        timestep = float(kwargs["timestep"][0])
        self.events.append(("forward", self._branch, self._recording, timestep == 0.0, module.rope.frame_offset))

    def plan(self, prompts):
        self.events.append(("plan", prompts))

    def begin_clip(self, clip_index, prompt):
        self.events.append(("begin", clip_index, prompt))
        attends = list(range(max(0, clip_index - 2), clip_index))
        self._summary.append({"clip": clip_index, "prompt": prompt, "attends": attends, "stored": True, "evicted": []})
        return attends

    @contextmanager
    def branch(self, name):
        previous, self._branch = self._branch, name
        try:
            yield
        finally:
            self._branch = previous

    @contextmanager
    def recording(self):
        self._recording = True
        try:
            yield
        finally:
            self._recording = False

    def end_clip(self, clip_index):
        self.events.append(("end", clip_index))
        return ClipPlan.from_state(self._summary[clip_index])

    def plan_summary(self):
        return [dict(entry) for entry in self._summary]

    def close(self):
        self._handle.remove()
        self.events.append(("close",))


@pytest.mark.parametrize("record_from_last_step", [False, True])
def test_clip_memory_call_order(record_from_last_step):
    pipe = make_pipe(36)
    pipe._clip_memory_factory = FakeClipMemory
    selector = object()
    config = SimpleNamespace(record_from_last_step=record_from_last_step)
    out = pipe(
        PROMPTS[:3],
        **call_kwargs(),
        kv_cache_clips=2,
        max_cached_clips=3,
        clip_selector=selector,
        kv_cache_config=config,
    )
    memory = FakeClipMemory.instances[-1]
    events = memory.events
    assert events[0] == ("init", 2, 3, selector)
    assert events[1] == ("plan", PROMPTS[:3])
    assert events[-1] == ("close",)

    expected = [("init", 2, 3, selector), ("plan", PROMPTS[:3])]
    for n in range(3):
        offset = 2 * n
        expected.append(("begin", n, PROMPTS[n]))
        for step in range(2):
            recording = record_from_last_step and step == 1
            expected += [
                ("forward", "cond", recording, False, offset),
                ("forward", "uncond", recording, False, offset),
            ]
        if not record_from_last_step:  # one extra forward per CFG branch of the clean clip at t = 0
            expected += [("forward", "cond", True, True, offset), ("forward", "uncond", True, True, offset)]
        expected.append(("end", n))
    expected.append(("close",))
    assert events == expected
    assert out.kv_plan == memory.plan_summary() and [e["attends"] for e in out.kv_plan] == [[], [0], [0, 1]]
    assert out.frames.shape[1] == 25


def test_clip_memory_not_built_without_kv_cache(pipe36):
    built = []
    pipe36._clip_memory_factory = lambda *args, **kwargs: built.append(1)
    try:
        pipe36(PROMPTS[:2], **call_kwargs(), kv_cache_clips=0)
    finally:
        pipe36._clip_memory_factory = None
    assert built == []


def test_real_clip_memory_with_recent_selector(tmp_path):
    from diffusers_longvid.attention.kv_cache import CrossClipKVCacheConfig
    from diffusers_longvid.selection import RecentSelector

    pipe = make_pipe(36)
    without = pipe(PROMPTS[:3], **call_kwargs()).frames
    out = pipe(PROMPTS[:3], **call_kwargs(), kv_cache_clips=2, clip_selector=RecentSelector())
    assert [entry["attends"] for entry in out.kv_plan] == [[], [0], [0, 1]]
    # an empty history is exactly the stock attention; attending history changes the later clips
    np.testing.assert_array_equal(out.frames[:, :9], without[:, :9])
    # (a tiny random model attends history weakly: ~3e-5 here, far above float32 rounding of ~1e-7)
    assert np.abs(out.frames[:, 9:] - without[:, 9:]).max() > 1e-6
    assert get_kv_processors(pipe) == 0  # the memory was closed: stock processors are back

    # selector and KV-cache settings are part of the pipeline config and survive save/load
    saved = LongVideoExtensionPipeline(
        **{name: getattr(pipe, name) for name in ("tokenizer", "text_encoder", "vae", "scheduler", "transformer")},
        kv_cache_clips=2,
        clip_selector=RecentSelector(),
        kv_cache_config=CrossClipKVCacheConfig(record_mode="last_step"),
    )
    saved.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["clip_selector"] == {"type": "recent"} and index["kv_cache_config"]["record_mode"] == "last_step"
    loaded = LongVideoExtensionPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    last_step = loaded(PROMPTS[:3], **call_kwargs())
    assert [entry["attends"] for entry in last_step.kv_plan] == [[], [0], [0, 1]]
    assert last_step.frames.shape == (1, 25, H, W, 3)


@pytest.mark.parametrize("kv_cache_clips", [0, 2])
def test_a_generation_puts_the_stock_rotary_embedding_back(kv_cache_clips):
    # the clip loop swaps in the RoPE offset module; after a generation (finished, failed or dropped) the
    # transformer has its own rotary embedding again, the same object, with or without the KV cache
    pipe = make_pipe(36)
    stock = pipe.transformer.rope
    memory_kwargs = dict(kv_cache_clips=kv_cache_clips, clip_selector=RecentSelector() if kv_cache_clips else None)
    pipe(PROMPTS[:2], **call_kwargs(), **memory_kwargs)
    assert pipe.transformer.rope is stock

    def crash(pipe, step, timestep, tensors):
        raise RuntimeError("simulated failure")

    with pytest.raises(RuntimeError, match="simulated failure"):
        pipe(PROMPTS[:2], **call_kwargs(), callback_on_step_end=crash, **memory_kwargs)
    assert pipe.transformer.rope is stock

    clips = pipe.generate_clips(PROMPTS[:3], **call_kwargs(), **memory_kwargs)
    next(clips)
    assert isinstance(pipe.transformer.rope, OffsetWanRotaryPosEmbed)  # while the video is being generated
    clips.close()
    assert pipe.transformer.rope is stock


def get_kv_processors(pipe):
    return sum(
        type(m.processor).__name__ != "WanAttnProcessor" for m in pipe.transformer.modules() if hasattr(m, "processor")
    )


def test_real_clip_memory_default_selector():
    pipe = make_pipe(36)
    prompts = ["a red ball on grass", "a cat sleeping on a sofa", "a red ball rolls on the grass"]
    out = pipe(prompts, **call_kwargs(), kv_cache_clips=1)
    assert [entry["clip"] for entry in out.kv_plan] == [0, 1, 2]
    assert out.kv_plan[0]["attends"] == [] and out.kv_plan[2]["attends"] == [0]  # the ball clip, by prompt similarity


def test_one_unconditioned_clip_equals_stock_wan_pipeline(tmp_path):
    # a stock Wan2.1 T2V folder loads as is (training-free mode), and one clip without condition is WanPipeline
    from diffusers import UniPCMultistepScheduler, WanPipeline

    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    wan = WanPipeline(**get_dummy_components(in_channels=16, scheduler=scheduler))
    wan.save_pretrained(tmp_path)
    pipe = LongVideoExtensionPipeline.from_pretrained(tmp_path, kv_cache_clips=0)
    pipe.set_progress_bar_config(disable=True)
    wan.set_progress_bar_config(disable=True)
    assert pipe.conditioning_mode == "replacement" and isinstance(pipe.scheduler, UniPCMultistepScheduler)
    three = pipe("a ball", num_clips=3, **call_kwargs())
    assert three.frames.shape == (1, 25, H, W, 3)

    kwargs = dict(height=H, width=W, num_frames=F, num_inference_steps=3, max_sequence_length=16)
    for p in (wan, pipe):
        p.scheduler = TRFlowScheduler(shift=3.0, tau_low=0.0, tau_high=1.0)
    expected = wan("a ball", generator=torch.Generator().manual_seed(0), **kwargs).frames
    ours = pipe("a ball", generator=torch.Generator().manual_seed(0), num_condition_frames=1, **kwargs).frames
    np.testing.assert_allclose(ours, expected, atol=1e-5)


def test_streaming_prompts_from_an_iterator():
    pipe = make_pipe(36)
    pipe._clip_memory_factory = FakeClipMemory

    def script():
        yield "first"
        yield "second"

    clips = list(pipe.generate_clips(script(), **call_kwargs(), kv_cache_clips=1))
    assert [(c.clip_index, c.prompt, c.frame_range) for c in clips] == [(0, "first", (0, 9)), (1, "second", (9, 17))]
    events = FakeClipMemory.instances[-1].events
    assert events[1] == ("plan", None)  # prompts not known up front: streaming storage plan
    with pytest.raises(ValueError, match="`num_clips`"):
        pipe.generate_clips(script(), num_clips=2, **call_kwargs())
    with pytest.raises(TypeError, match="`prompt`"):
        pipe(script(), **call_kwargs())  # `__call__` takes a str or a list


def test_interrupt_stops_after_the_current_clip(pipe36):
    def interrupt_in_clip_1(pipe, step, timestep, tensors):
        if pipe.current_clip_index == 1:
            pipe._interrupt = True
        return {}

    out = pipe36(PROMPTS, **call_kwargs(), callback_on_step_end=interrupt_in_clip_1)
    assert out.clip_frame_ranges == [(0, 9), (9, 17)] and out.frames.shape[1] == 17


@pytest.mark.parametrize("fill", ["vae", "zeros"])
def test_known_latent_frames_are_the_condition_exactly(fill):
    """The model is not trained to reproduce fully known frames (stage 1 leaves them out of the loss): the clip's
    known latent frames are set to the condition latent, so a continued video's frames come back as given."""
    from diffusers_longvid.extension import prepare_extension_condition

    pipe = make_pipe(36)
    pipe.register_to_config(condition_fill=fill)
    with torch.no_grad():  # weights on the zero-initialised channels, so the model output differs from the condition
        pipe.transformer.patch_embedding.weight.normal_(0, 0.05, generator=torch.Generator().manual_seed(0))
    video = torch.rand(5, 3, H, W, generator=torch.Generator().manual_seed(1))
    clip = next(iter(pipe.generate_clips("a red circle", **call_kwargs(num_condition_frames=5), video=video)))
    pixels = pipe.video_processor.preprocess_video(video.unsqueeze(0), height=H, width=W)
    condition = prepare_extension_condition(pipe.vae, pixels, list(range(5)), F, fill=fill)
    assert list(condition.known_latent_frames) == [0, 1]
    latents = clip.latents
    torch.testing.assert_close(latents[:, :, :2].float(), condition.condition_latent[:, :, :2].float())
    assert not torch.allclose(latents[:, :, 2:].float(), condition.condition_latent[:, :, 2:].float())
