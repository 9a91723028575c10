"""Our pieces inside diffusers' own tools: T-RFlow in WanVideoToVideoPipeline, CPU offload hooks, VAE tiling/slicing,
LoRA stacking with a style LoRA, step callbacks, bf16 loading."""

import numpy as np
import PIL.Image
import pytest
import torch
from _pipes import call_kwargs, make_pipe
from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline, WanVideoToVideoPipeline
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict

from diffusers_longvid import (
    LongVideoExtensionPipeline,
    RecentSelector,
    TRFlowScheduler,
    add_kv_lora,
    trflow_weights,
)
from diffusers_longvid.testing import get_dummy_components, get_tiny_transformer


PROMPTS = ["a red ball rolls", "the ball bounces", "a cat looks at it"]


def count_calls(module):
    calls = []
    return calls, module.register_forward_pre_hook(lambda m, args: calls.append(1))


# -------------------------------------------------------------------------------------- T-RFlow in video-to-video
def test_trflow_in_stock_wan_video_to_video_pipeline():
    pipe = WanVideoToVideoPipeline(**get_dummy_components(scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0)))
    pipe.set_progress_bar_config(disable=True)
    frames = np.random.default_rng(0).integers(0, 255, size=(9, 16, 16, 3), dtype=np.uint8)
    embeds = torch.randn(1, 16, 32, generator=torch.Generator().manual_seed(0))
    steps, strength = 10, 0.7

    def run(scheduler):
        pipe.scheduler = scheduler
        return pipe(
            video=[PIL.Image.fromarray(f) for f in frames],
            prompt_embeds=embeds,
            negative_prompt_embeds=0.5 * embeds,
            height=16,
            width=16,
            num_inference_steps=steps,
            strength=strength,
            guidance_scale=5.0,
            generator=torch.Generator().manual_seed(0),
            output_type="latent",
        ).frames

    calls, handle = count_calls(pipe.transformer)
    try:
        euler = run(FlowMatchEulerDiscreteScheduler(shift=3.0))
        euler_calls = len(calls)
        full = TRFlowScheduler.from_config(pipe.scheduler.config, tau_low=0.0, tau_high=1.0)
        full.keep_estimates = True
        same = run(full)
        estimates = full.step_estimates
        calls.clear()
        window = TRFlowScheduler.from_config(pipe.scheduler.config, tau_low=0.3, tau_high=0.7)
        out = run(window)
    finally:
        handle.remove()

    # strength 0.7 of 10 steps: the run starts at step 3, below sigma = 1
    t_start = steps - int(steps * strength)
    assert euler_calls == 2 * (steps - t_start)
    torch.testing.assert_close(same, euler, rtol=0, atol=1e-6)  # the full window is FlowMatch Euler
    assert [e.step_index for e in estimates] == list(range(t_start, steps))
    # the window's result is the renormalised ensemble of the same run's clean estimates x~_i = x_start - sigma_0 v_i
    weights = trflow_weights(window.sigmas, 0.3, 0.7)
    w = torch.tensor([float(weights[e.step_index]) for e in estimates])
    expected = sum(wi * e.x_estimate for wi, e in zip(w, estimates)) / w.sum()
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    assert len(calls) == 2 * (window.num_evaluated_steps - t_start) < euler_calls  # steps after the window skipped


# ------------------------------------------------------------------------------------------------------- offload
@pytest.fixture(scope="module")
def reference_with_history():
    """Three clips, each later clip attending the history K/V (a cached block: `num_layers=2` caches block 1)."""
    out = make_pipe(kv_cache_clips=2, clip_selector=RecentSelector())(PROMPTS, **call_kwargs())
    assert [entry["attends"] for entry in out.kv_plan] == [[], [0], [0, 1]]
    return out.frames


def test_model_cpu_offload_with_the_kv_cache(reference_with_history):
    pipe = make_pipe(kv_cache_clips=2, clip_selector=RecentSelector())
    # diffusers refuses to pick the CPU by itself; an explicit device runs accelerate's hooks there
    pipe.enable_model_cpu_offload(device="cpu")
    hooked = [name for name in ("text_encoder", "transformer", "vae") if hasattr(getattr(pipe, name), "_hf_hook")]
    assert hooked == ["text_encoder", "transformer", "vae"]
    out = pipe(PROMPTS, **call_kwargs())
    np.testing.assert_array_equal(out.frames, reference_with_history)
    assert [entry["attends"] for entry in out.kv_plan] == [[], [0], [0, 1]]


def test_sequential_offload_hooks_with_the_kv_cache(reference_with_history):
    # the hooks `enable_sequential_cpu_offload` installs (accelerate's `cpu_offload`: weights on `meta`, loaded per
    # submodule at each forward), with an execution device of "cpu"; see the next test for the public method
    from accelerate import cpu_offload

    pipe = make_pipe(kv_cache_clips=2, clip_selector=RecentSelector())
    for name in ("text_encoder", "transformer", "vae"):
        cpu_offload(getattr(pipe, name), execution_device=torch.device("cpu"), offload_buffers=False)
    assert pipe.transformer.blocks[1].attn1.to_k.weight.device.type == "meta"
    out = pipe(PROMPTS, **call_kwargs())
    np.testing.assert_array_equal(out.frames, reference_with_history)


def _call_with_sequential_offload(pipe, prompt, **kwargs):
    pipe.enable_sequential_cpu_offload(device="cpu")
    try:
        return pipe(prompt, **kwargs), None
    except Exception as error:
        return None, error


def test_enable_sequential_cpu_offload_on_cpu_behaves_as_stock_wan():
    # The public method on the CPU: diffusers turns device="cpu" into 'cpu:0' and accelerate's hooks then fail in
    # `set_module_tensor_to_device` for stock WanPipeline too (upstream, not ours; it needs an accelerator). What is ours
    # is parity with stock WanPipeline: the same error where it fails, the same frames as without offload where it runs.
    stock = WanPipeline(**get_dummy_components(scheduler=FlowMatchEulerDiscreteScheduler()))
    stock.set_progress_bar_config(disable=True)
    stock_kwargs = {k: v for k, v in call_kwargs().items() if k != "num_condition_frames"}
    _, stock_error = _call_with_sequential_offload(stock, PROMPTS[0], **stock_kwargs)

    reference = make_pipe(clip_selector=RecentSelector())(PROMPTS[:1], **call_kwargs()).frames
    out, error = _call_with_sequential_offload(make_pipe(clip_selector=RecentSelector()), PROMPTS[:1], **call_kwargs())
    if stock_error is not None:
        assert type(error) is type(stock_error), f"stock WanPipeline raised {stock_error!r}, ours {error!r}"
    else:
        assert error is None, f"stock WanPipeline runs with sequential offload on the CPU, ours raised {error!r}"
        np.testing.assert_array_equal(out.frames, reference)


# --------------------------------------------------------------------------------------------- VAE tiling, slicing
def test_vae_slicing_gives_the_same_videos():
    pipe = make_pipe(clip_selector=RecentSelector())
    reference = pipe(PROMPTS[:2], **call_kwargs(num_videos_per_prompt=2)).frames
    pipe.vae.enable_slicing()
    sliced = pipe(PROMPTS[:2], **call_kwargs(num_videos_per_prompt=2)).frames
    assert sliced.shape == reference.shape == (2, 17, 16, 16, 3)
    np.testing.assert_allclose(sliced, reference, atol=1e-5)


def test_vae_tiling_gives_close_videos():
    pipe = make_pipe(clip_selector=RecentSelector())
    size = dict(height=48, width=48)
    reference = pipe(PROMPTS[:2], **call_kwargs(**size)).frames
    # tiles smaller than the frames (defaults are 256 px), overlapping by 16 px: encode and decode both tile
    pipe.vae.enable_tiling(
        tile_sample_min_height=32, tile_sample_min_width=32, tile_sample_stride_height=16, tile_sample_stride_width=16
    )
    tiled = pipe(PROMPTS[:2], **call_kwargs(**size)).frames
    assert tiled.shape == reference.shape == (1, 17, 48, 48, 3)
    difference = np.abs(tiled - reference)
    # blended tile seams of a random tiny VAE: measured max 0.15, mean 0.005 (frames in [0, 1])
    assert difference.mean() < 0.02 and difference.max() < 0.3
    assert difference.max() > 0  # tiling really happened


# ------------------------------------------------------------------------------------------------- LoRA stacking
def _randomize_lora(transformer, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in transformer.named_parameters():
            if "lora_B" in name:
                param.copy_(0.5 * torch.randn(param.shape, generator=g))


@pytest.fixture(scope="module")
def lora_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("loras")
    kv = get_tiny_transformer(in_channels=36, num_layers=4)
    add_kv_lora(kv, rank=4)  # attn1.to_k / to_v of blocks 2-3
    _randomize_lora(kv, 0)
    LongVideoExtensionPipeline.save_lora_weights(root / "kv", transformer_lora_layers=get_peft_model_state_dict(kv))
    style = get_tiny_transformer(in_channels=36, num_layers=4)
    # a user's style LoRA on other modules of every block
    style.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["attn2.to_q", "attn2.to_out.0", "ffn.net.2"]))
    _randomize_lora(style, 1)
    LongVideoExtensionPipeline.save_lora_weights(
        root / "style", transformer_lora_layers=get_peft_model_state_dict(style)
    )
    return root / "kv", root / "style"


@pytest.mark.filterwarnings("ignore:Already found a `peft_config` attribute:UserWarning")  # two adapters: intended
def test_kv_lora_stacks_with_a_style_lora(lora_dirs):
    pipe = make_pipe(components={"num_layers": 4}, kv_cache_clips=1, clip_selector=RecentSelector())

    def run():
        return torch.cat(pipe(PROMPTS[:2], **call_kwargs(output_type="latent")).frames, dim=2)

    base = run()
    pipe.load_lora_weights(lora_dirs[0], adapter_name="kv")
    pipe.load_lora_weights(lora_dirs[1], adapter_name="style")
    assert pipe.get_list_adapters() == {"transformer": ["kv", "style"]}
    pipe.set_adapters(["kv", "style"], [1.0, 0.5])
    assert pipe.get_active_adapters() == ["kv", "style"]
    both = run()
    pipe.set_adapters("kv")
    kv_only = run()
    pipe.set_adapters(["kv", "style"], [1.0, 0.0])
    torch.testing.assert_close(run(), kv_only, rtol=0, atol=0)  # a weight of 0 is no adapter
    pipe.set_adapters(["kv", "style"], [0.0, 0.0])
    torch.testing.assert_close(run(), base, rtol=0, atol=0)
    assert (both - kv_only).abs().max() > 1e-2 and (kv_only - base).abs().max() > 1e-2

    # fusing both at their weights gives the unfused result; unfusing restores the adapters
    pipe.set_adapters(["kv", "style"], [1.0, 0.5])
    pipe.fuse_lora(adapter_names=["kv", "style"])
    torch.testing.assert_close(run(), both, rtol=0, atol=1e-5)
    pipe.unfuse_lora()
    torch.testing.assert_close(run(), both, rtol=0, atol=1e-5)


# ----------------------------------------------------------------------------------------------------- callbacks
def test_callback_on_step_end_can_edit_latents_per_clip():
    pipe = make_pipe(36, clip_selector=RecentSelector())
    seen = []

    def zero_clip_0(pipeline, step, timestep, callback_kwargs):
        seen.append((pipeline.current_clip_index, step, tuple(callback_kwargs["latents"].shape)))
        if pipeline.current_clip_index == 0 and step == pipeline.num_timesteps - 1:
            return {"latents": torch.zeros_like(callback_kwargs["latents"])}
        return {}

    plain = list(pipe.generate_clips(PROMPTS[:2], **call_kwargs(output_type="latent")))
    edited = list(
        pipe.generate_clips(PROMPTS[:2], **call_kwargs(output_type="latent"), callback_on_step_end=zero_clip_0)
    )
    assert seen == [(c, s, (1, 16, 3, 2, 2)) for c in (0, 1) for s in (0, 1)]
    assert torch.count_nonzero(edited[0].latents) == 0  # the callback's latents are the clip's result
    assert torch.count_nonzero(plain[0].latents) > 0
    # clip 1 is conditioned on the (edited) clip 0, so it changes too; same noise draws otherwise
    assert not torch.allclose(edited[1].latents, plain[1].latents)


# ---------------------------------------------------------------------------------------------------------- bf16
# we spell it `dtype=` (diffusers >= 0.42), so the deprecation of `torch_dtype=` must not fire
@pytest.mark.filterwarnings("error:`torch_dtype` is deprecated:FutureWarning")
def test_bfloat16_loading_of_a_saved_pipeline(tmp_path):
    make_pipe(36, clip_selector=RecentSelector()).save_pretrained(tmp_path)
    reference = LongVideoExtensionPipeline.from_pretrained(tmp_path, kv_cache_clips=1, clip_selector=RecentSelector())
    reference.set_progress_bar_config(disable=True)
    expected = reference(PROMPTS[:2], **call_kwargs()).frames

    pipe = LongVideoExtensionPipeline.from_pretrained(
        tmp_path, dtype=torch.bfloat16, kv_cache_clips=1, clip_selector=RecentSelector()
    )
    pipe.set_progress_bar_config(disable=True)
    assert {pipe.transformer.dtype, pipe.text_encoder.dtype, pipe.vae.dtype} == {torch.bfloat16}
    out = pipe(PROMPTS[:2], **call_kwargs())
    assert out.frames.dtype == np.float32 and np.isfinite(out.frames).all()
    assert out.kv_plan[1]["attends"] == [0]  # bf16 history K/V were stored and attended
    assert np.abs(out.frames - expected).mean() < 0.02  # bf16 rounding only

    mixed = LongVideoExtensionPipeline.from_pretrained(
        tmp_path, dtype={"default": torch.bfloat16, "vae": torch.float32}, kv_cache_clips=0
    )
    assert mixed.transformer.dtype == torch.bfloat16 and mixed.vae.dtype == torch.float32
    mixed.set_progress_bar_config(disable=True)
    assert np.isfinite(mixed(PROMPTS[:2], **call_kwargs()).frames).all()
