"""TRFlowScheduler: identities of DESIGN §1, config round trips, errors, and stock Wan pipelines."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from diffusers import (
    FlowMatchEulerDiscreteScheduler,
    UniPCMultistepScheduler,
    WanImageToVideoPipeline,
    WanPipeline,
)

from diffusers_longvid import TRFlowScheduler
from diffusers_longvid.testing import get_dummy_components


DIM = 24  # size of the toy "latent" of the fake velocity model


# ----------------------------------------------------------------------------- helpers
class FakeVelocityModel:
    """A deterministic velocity field `v(x, sigma) = A x + sigma * c` (fixed random linear map), counting calls."""

    def __init__(self, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.A = 0.5 * torch.randn(DIM, DIM, generator=generator, dtype=torch.float64) / DIM**0.5
        self.c = torch.randn(DIM, generator=generator, dtype=torch.float64)
        self.calls = 0

    def __call__(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        self.calls += 1
        x64 = x.to(torch.float64)
        return (x64 @ self.A.T + sigma * self.c).to(x.dtype)


def reference_sigmas(shift: float, num_steps: int) -> list[float]:
    """The FlowMatch schedule (with the terminal 0) from the stock scheduler, independent of T-RFlow code."""
    reference = FlowMatchEulerDiscreteScheduler(shift=shift)
    reference.set_timesteps(num_steps)
    return reference.sigmas.double().tolist()


def hand_weights(sigmas: list[float], tau_low: float, tau_high: float) -> list[float]:
    """Overlap of each step interval [sigma_{i+1}, sigma_i] with the window [1 - tau_high, 1 - tau_low], by hand."""
    lo, hi = 1.0 - tau_high, 1.0 - tau_low
    return [max(0.0, min(sigmas[i], hi) - max(sigmas[i + 1], lo)) for i in range(len(sigmas) - 1)]


def hand_ensemble(model, x_start, sigmas, weights, start=0, edits=None):
    """Euler trajectory in float64 and the closed-form T-RFlow result `sum w_i x~_i / sum w_i`.

    Returns (final, euler_states, number_of_model_calls): only steps up to the last positive weight are evaluated.
    """
    last = max(i for i, w in enumerate(weights) if w > 0)
    x = x_start.to(torch.float64)
    sigma_0 = sigmas[start]
    states, numerator, total = [], torch.zeros_like(x), 0.0
    for i in range(start, last + 1):
        if edits is not None and i in edits:
            x = x + edits[i]
        v = model(x, sigmas[i]).to(torch.float64)
        numerator += weights[i] * (x_start.double() - sigma_0 * v)
        total += weights[i]
        x = x + (sigmas[i + 1] - sigmas[i]) * v
        states.append(x)
    carried = sum(edits.values()) if edits else 0.0
    return numerator / total + carried, states, last + 1 - start


def run_scheduler(scheduler, model, x_start, start=0, edits=None):
    """Loop like a pipeline does; returns the final sample and every step() output."""
    timesteps = scheduler.timesteps[start:]
    if start:
        scheduler.set_begin_index(start)
    x = x_start.clone()
    outputs = []
    for n, t in enumerate(timesteps):
        if edits is not None and start + n in edits:
            x = x + edits[start + n].to(x.dtype)
        sigma = float(scheduler.sigmas[start + n])
        x = scheduler.step(model(x, sigma), t, x).prev_sample
        outputs.append(x)
    return x, outputs


def tiny_wan_inputs(seed: int = 0, steps: int = 6, output_type: str = "latent") -> dict:
    return dict(
        prompt="a red ball rolls",
        negative_prompt="blurry",
        height=16,
        width=16,
        num_frames=9,
        num_inference_steps=steps,
        guidance_scale=5.0,
        max_sequence_length=16,
        generator=torch.Generator("cpu").manual_seed(seed),
        output_type=output_type,
    )


@pytest.fixture(scope="module")
def wan_pipe():
    pipe = WanPipeline(**get_dummy_components(scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0)))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def count_forward_calls(module: torch.nn.Module) -> tuple[list[int], torch.utils.hooks.RemovableHandle]:
    calls: list[int] = []
    return calls, module.register_forward_pre_hook(lambda *_: calls.append(1))


# ----------------------------------------------------------------------------- identities
@pytest.mark.parametrize("output_type", ["latent", "np"])
def test_full_window_reproduces_flow_match_in_wan_pipeline(wan_pipe, output_type):
    wan_pipe.scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    expected = wan_pipe(**tiny_wan_inputs(output_type=output_type)).frames
    wan_pipe.scheduler = TRFlowScheduler.from_config(wan_pipe.scheduler.config, tau_low=0.0, tau_high=1.0)
    got = wan_pipe(**tiny_wan_inputs(output_type=output_type)).frames
    assert torch.allclose(torch.as_tensor(got), torch.as_tensor(expected), atol=1e-6, rtol=0)


@pytest.mark.parametrize("shift", [1.0, 3.0, 7.0])
@pytest.mark.parametrize("num_steps", [4, 10, 25])
@pytest.mark.parametrize("window", [(0.3, 0.7), (0.0, 1.0), (0.1, 0.45), (0.55, 1.0), (0.0, 0.2)])
def test_final_sample_is_the_closed_form_ensemble(shift, num_steps, window):
    tau_low, tau_high = window
    scheduler = TRFlowScheduler(shift=shift, tau_low=tau_low, tau_high=tau_high)
    scheduler.set_timesteps(num_steps)
    sigmas = reference_sigmas(shift, num_steps)
    assert torch.allclose(scheduler.sigmas.double(), torch.tensor(sigmas, dtype=torch.float64))
    weights = hand_weights(sigmas, tau_low, tau_high)

    x_start = torch.randn(DIM, generator=torch.Generator().manual_seed(1))
    expected, euler_states, expected_calls = hand_ensemble(FakeVelocityModel(), x_start, sigmas, weights)

    model = FakeVelocityModel()
    final, outputs = run_scheduler(scheduler, model, x_start)
    assert model.calls == expected_calls == max(i for i, w in enumerate(weights) if w > 0) + 1
    assert scheduler.num_evaluated_steps == expected_calls
    # intermediate step() results are plain Euler; the last one is the renormalised ensemble
    for got, want in zip(outputs[:-1], euler_states[:-1]):
        assert torch.allclose(got.double(), want, atol=1e-5, rtol=1e-5)
    assert torch.allclose(final.double(), expected, atol=1e-5, rtol=1e-5)
    if window == (0.0, 1.0):
        assert torch.allclose(final.double(), euler_states[-1], atol=1e-5, rtol=1e-5)


def test_weights_attribute_matches_hand_weights():
    scheduler = TRFlowScheduler(shift=3.0, tau_low=0.3, tau_high=0.7)
    scheduler.set_timesteps(12)
    expected = hand_weights(reference_sigmas(3.0, 12), 0.3, 0.7)
    assert torch.allclose(scheduler.weights, torch.tensor(expected, dtype=torch.float64), atol=1e-7)
    assert scheduler.weights.sum().item() == pytest.approx(0.4, abs=1e-6)
    assert len(scheduler.full_timesteps) == 12 and len(scheduler.sigmas) == 13


@pytest.mark.parametrize("window", [(0.3, 0.7), (0.0, 1.0), (0.2, 0.9)])
def test_ensemble_identity_with_begin_index(window):
    """sigma_0 < 1 (img2img-style start at step k): x_start and sigma_0 are those of the first evaluated step."""
    shift, num_steps, start = 2.0, 10, 3
    scheduler = TRFlowScheduler(shift=shift, tau_low=window[0], tau_high=window[1])
    scheduler.set_timesteps(num_steps)
    sigmas = reference_sigmas(shift, num_steps)
    weights = hand_weights(sigmas, *window)
    x_start = torch.randn(DIM, generator=torch.Generator().manual_seed(2))
    expected, _, calls = hand_ensemble(FakeVelocityModel(), x_start, sigmas, weights, start=start)
    model = FakeVelocityModel()
    final, _ = run_scheduler(scheduler, model, x_start, start=start)
    assert model.calls == calls
    assert torch.allclose(final.double(), expected, atol=1e-5, rtol=1e-5)


def test_ensemble_identity_with_custom_sigmas_below_one():
    custom = [0.8, 0.65, 0.5, 0.35, 0.2, 0.1]
    scheduler = TRFlowScheduler(shift=1.0, tau_low=0.3, tau_high=0.75)
    scheduler.set_timesteps(sigmas=custom)
    sigmas = custom + [0.0]
    assert torch.allclose(scheduler.sigmas.double(), torch.tensor(sigmas, dtype=torch.float64), atol=1e-6)
    weights = hand_weights(sigmas, 0.3, 0.75)
    x_start = torch.randn(DIM, generator=torch.Generator().manual_seed(3))
    expected, _, calls = hand_ensemble(FakeVelocityModel(), x_start, sigmas, weights)
    model = FakeVelocityModel()
    final, _ = run_scheduler(scheduler, model, x_start)
    assert model.calls == calls == 4  # the steps 0.2 -> 0.1 -> 0 lie below sigma_lo = 0.25
    assert torch.allclose(final.double(), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("window", [(0.3, 0.7), (0.0, 1.0)])
def test_latent_edits_between_steps_are_carried(window):
    """A pipeline that edits the latents between steps (callbacks, replacement conditioning) keeps its edits."""
    shift, num_steps = 3.0, 10
    generator = torch.Generator().manual_seed(4)
    edits = {2: 0.3 * torch.randn(DIM, generator=generator), 4: 0.3 * torch.randn(DIM, generator=generator)}
    x_start = torch.randn(DIM, generator=generator)
    sigmas = reference_sigmas(shift, num_steps)
    weights = hand_weights(sigmas, *window)
    expected, euler_states, _ = hand_ensemble(
        FakeVelocityModel(), x_start, sigmas, weights, edits={k: v.double() for k, v in edits.items()}
    )
    scheduler = TRFlowScheduler(shift=shift, tau_low=window[0], tau_high=window[1])
    scheduler.set_timesteps(num_steps)
    final, _ = run_scheduler(scheduler, FakeVelocityModel(), x_start, edits=edits)
    assert torch.allclose(final.double(), expected, atol=1e-5, rtol=1e-5)
    if window == (0.0, 1.0):
        reference = FlowMatchEulerDiscreteScheduler(shift=shift)
        reference.set_timesteps(num_steps)
        euler_final, _ = run_scheduler(reference, FakeVelocityModel(), x_start, edits=edits)
        assert torch.equal(final, euler_final)


def test_keep_estimates_records_every_evaluated_step():
    scheduler = TRFlowScheduler(shift=3.0, tau_low=0.3, tau_high=0.7)
    scheduler.keep_estimates = True
    scheduler.set_timesteps(8)
    x_start = torch.randn(DIM, generator=torch.Generator().manual_seed(5))
    model = FakeVelocityModel()
    final, _ = run_scheduler(scheduler, model, x_start)
    estimates = scheduler.step_estimates
    assert [e.step_index for e in estimates] == list(range(model.calls))
    weights = torch.tensor([e.weight for e in estimates], dtype=torch.float64)
    ensemble = sum(w * e.x_estimate.double() for w, e in zip(weights, estimates)) / weights.sum()
    assert torch.allclose(final.double(), ensemble, atol=1e-5)
    # a new set_timesteps starts a new run
    scheduler.set_timesteps(8)
    assert scheduler.step_estimates == []


def test_model_output_dtype_is_kept():
    scheduler = TRFlowScheduler(shift=3.0, tau_low=0.3, tau_high=0.7)
    scheduler.set_timesteps(6)
    x = torch.randn(2, DIM, dtype=torch.bfloat16)
    for t in scheduler.timesteps:
        x = scheduler.step(torch.randn(2, DIM, dtype=torch.bfloat16), t, x, return_dict=False)[0]
        assert x.dtype == torch.bfloat16


# ----------------------------------------------------------------------------- config
def test_save_and_load_round_trip(tmp_path):
    scheduler = TRFlowScheduler(shift=5.0, tau_low=0.25, tau_high=0.8, use_dynamic_shifting=False, base_shift=0.4)
    scheduler.save_pretrained(tmp_path)
    loaded = TRFlowScheduler.from_pretrained(tmp_path)
    assert isinstance(loaded, TRFlowScheduler)
    for key, value in scheduler.config.items():
        if not key.startswith("_"):
            assert loaded.config[key] == value, key
    assert (loaded.config.tau_low, loaded.config.tau_high) == (0.25, 0.8)
    again = TRFlowScheduler.from_config(loaded.config)
    assert dict(again.config) == dict(loaded.config)


def test_pipeline_with_trflow_scheduler_round_trips(tmp_path):
    """`model_index.json` names our module; the loader must find the scheduler's loading methods there."""
    from diffusers import DiffusionPipeline

    scheduler = TRFlowScheduler(shift=3.0, tau_low=0.25, tau_high=0.8)
    WanPipeline(**get_dummy_components(scheduler=scheduler)).save_pretrained(tmp_path)
    loaded = DiffusionPipeline.from_pretrained(tmp_path)
    assert type(loaded.scheduler) is TRFlowScheduler
    assert (loaded.scheduler.config.tau_low, loaded.scheduler.config.tau_high, loaded.scheduler.config.shift) == (
        0.25,
        0.8,
        3.0,
    )


def test_from_flow_match_config_keeps_parent_parameters():
    source = FlowMatchEulerDiscreteScheduler(shift=7.0, base_shift=0.3, max_shift=1.2, shift_terminal=0.05)
    scheduler = TRFlowScheduler.from_config(source.config, tau_low=0.2, tau_high=0.6)
    for key, value in source.config.items():
        if not key.startswith("_"):
            assert scheduler.config[key] == value, key
    assert (scheduler.config.tau_low, scheduler.config.tau_high) == (0.2, 0.6)
    source.set_timesteps(10)
    scheduler.set_timesteps(10)
    assert torch.equal(source.sigmas, scheduler.sigmas)


def test_from_wan_unipc_config_uses_flow_shift():
    """Wan2.1 diffusers checkpoints ship a flow UniPC scheduler: its `flow_shift` must become `shift`."""
    unipc = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    scheduler = TRFlowScheduler.from_config(unipc.config, tau_low=0.3, tau_high=0.7)
    assert scheduler.config.shift == 3.0
    explicit = TRFlowScheduler.from_config(unipc.config, shift=2.0)
    assert explicit.config.shift == 2.0
    with pytest.raises(ValueError, match="prediction_type"):
        TRFlowScheduler.from_config(UniPCMultistepScheduler(prediction_type="epsilon").config)


# ----------------------------------------------------------------------------- errors and warnings
@pytest.mark.parametrize("window", [(0.7, 0.3), (0.5, 0.5), (-0.1, 0.7), (0.3, 1.2)])
def test_bad_window_raises_value_error(window):
    with pytest.raises(ValueError, match=r"`tau_low`.*`tau_high`"):
        TRFlowScheduler(tau_low=window[0], tau_high=window[1])
    scheduler = TRFlowScheduler()
    with pytest.raises(ValueError, match="tau_low"):
        scheduler.set_window(*window)


@pytest.mark.parametrize("window", [("0.3", 0.7), (0.3, None), (True, 0.7)])
def test_wrong_window_type_raises_type_error(window):
    with pytest.raises(TypeError, match="tau_"):
        TRFlowScheduler(tau_low=window[0], tau_high=window[1])


def test_numpy_floats_are_accepted():
    scheduler = TRFlowScheduler(tau_low=np.float32(0.25), tau_high=np.float64(0.75))
    scheduler.set_timesteps(10)
    assert scheduler.sigma_window == pytest.approx((0.25, 0.75))


@pytest.mark.parametrize("shift", [0.15, 0.5, 1.0, 3.0])
def test_schedule_stays_in_range_for_shifts_below_one(shift):
    # found by `make fuzz`: shift=0.15 rounded the first sigma to 1.0000015 in float32 (timestep 1000.0015)
    scheduler = TRFlowScheduler(shift=shift)
    scheduler.set_timesteps(11)
    assert scheduler.sigmas.max() <= 1.0 and scheduler.sigmas.min() >= 0.0
    assert scheduler.timesteps.max() <= scheduler.config.num_train_timesteps and scheduler.timesteps.min() >= 0
    stock = FlowMatchEulerDiscreteScheduler(shift=shift)
    stock.set_timesteps(11)
    inside = stock.sigmas <= 1.0
    assert torch.equal(scheduler.sigmas[inside], stock.sigmas[inside])  # clamping leaves in-range values untouched


def test_window_without_a_step_raises():
    scheduler = TRFlowScheduler(shift=1.0, tau_low=0.0, tau_high=0.3)  # sigma in [0.7, 1]
    with pytest.raises(ValueError, match="holds no step"):
        scheduler.set_timesteps(sigmas=[0.5, 0.25])


def test_window_options_that_need_full_window():
    with pytest.raises(ValueError, match="stochastic_sampling"):
        TRFlowScheduler(tau_low=0.3, tau_high=0.7, stochastic_sampling=True)
    scheduler = TRFlowScheduler(tau_low=0.0, tau_high=1.0, stochastic_sampling=True)
    scheduler.set_window(0.3, 0.7)
    with pytest.raises(ValueError, match="stochastic_sampling"):
        scheduler.set_timesteps(10)


def test_step_before_set_timesteps_raises():
    with pytest.raises(ValueError, match="set_timesteps"):
        TRFlowScheduler().step(torch.zeros(2), 1000.0, torch.zeros(2))


def test_few_steps_in_window_logs_a_warning(caplog):
    caplog.set_level(logging.WARNING, logger="diffusers_longvid")
    scheduler = TRFlowScheduler(shift=5.0, tau_low=0.3, tau_high=0.7)
    scheduler.set_timesteps(4)
    assert "holds only 1 of 4 steps" in caplog.text
    caplog.clear()
    scheduler.set_timesteps(4)  # same schedule again (e.g. the next clip of a long video): warned once only
    assert "holds only" not in caplog.text
    scheduler.set_timesteps(30)
    assert "holds only" not in caplog.text
    caplog.clear()
    TRFlowScheduler(shift=5.0, tau_low=0.0, tau_high=1.0).set_timesteps(2)  # the full window is plain Euler
    assert "holds only" not in caplog.text


# ----------------------------------------------------------------------------- stock pipelines
def test_trflow_in_stock_wan_pipeline_saves_model_calls(wan_pipe):
    steps = 10
    wan_pipe.scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    calls, handle = count_forward_calls(wan_pipe.transformer)
    try:
        full = wan_pipe(**tiny_wan_inputs(steps=steps)).frames
        assert len(calls) == 2 * steps  # cond + uncond per step
        calls.clear()
        wan_pipe.scheduler = TRFlowScheduler.from_config(wan_pipe.scheduler.config, tau_low=0.3, tau_high=0.7)
        out = wan_pipe(**tiny_wan_inputs(steps=steps)).frames
    finally:
        handle.remove()
    weights = hand_weights(reference_sigmas(3.0, steps), 0.3, 0.7)
    evaluated = max(i for i, w in enumerate(weights) if w > 0) + 1
    assert evaluated < steps
    assert len(calls) == 2 * evaluated == 2 * wan_pipe.scheduler.num_evaluated_steps
    assert out.shape == full.shape and torch.isfinite(out).all()
    assert not torch.allclose(out, full)


def _tiny_clip_image_encoder():
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    config = CLIPVisionConfig(
        hidden_size=4,
        projection_dim=4,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=32,
        intermediate_size=16,
        patch_size=1,
    )
    encoder = CLIPVisionModelWithProjection(config).eval()
    try:  # transformers >= 5 without torchvision: the PIL backend, named explicitly to avoid a fallback warning
        from transformers import CLIPImageProcessorPil as processor_class
    except ImportError:
        processor_class = CLIPImageProcessor
    return encoder, processor_class(crop_size=32, size=32)


def test_trflow_in_stock_wan_image_to_video_pipeline():
    from PIL import Image

    encoder, processor = _tiny_clip_image_encoder()
    # as diffusers' own WanImageToVideoPipeline tests: 36 input channels, image embeddings of size 4
    components = get_dummy_components(
        in_channels=36, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), image_dim=4, added_kv_proj_dim=24
    )
    pipe = WanImageToVideoPipeline(**components, image_encoder=encoder, image_processor=processor)
    pipe.set_progress_bar_config(disable=True)
    # prompt embeddings instead of text: diffusers 0.42's I2V prompt cleaning needs the optional `ftfy`
    embeds = torch.randn(1, 16, 32, generator=torch.Generator().manual_seed(0))
    steps = 10

    def inputs():
        return dict(
            image=Image.new("RGB", (16, 16), (200, 40, 90)),
            prompt_embeds=embeds,
            negative_prompt_embeds=0.5 * embeds,
            height=16,
            width=16,
            num_frames=9,
            num_inference_steps=steps,
            guidance_scale=5.0,
            generator=torch.Generator("cpu").manual_seed(0),
            output_type="latent",
        )

    calls, handle = count_forward_calls(pipe.transformer)
    try:
        full = pipe(**inputs()).frames
        full_calls = len(calls)
        calls.clear()
        pipe.scheduler = TRFlowScheduler.from_config(pipe.scheduler.config, tau_low=0.0, tau_high=1.0)
        same = pipe(**inputs()).frames
        calls.clear()
        pipe.scheduler = TRFlowScheduler.from_config(pipe.scheduler.config, tau_low=0.3, tau_high=0.7)
        out = pipe(**inputs()).frames
    finally:
        handle.remove()
    assert full_calls == 2 * steps
    assert torch.allclose(same, full, atol=1e-6, rtol=0)
    assert len(calls) == 2 * pipe.scheduler.num_evaluated_steps < full_calls
    assert out.shape == full.shape and torch.isfinite(out).all()
