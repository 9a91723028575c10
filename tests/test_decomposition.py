"""Trajectory decomposition, T-RFlow calibration of tau_low, and their CLIs, on a tiny random WanPipeline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DiffusionPipeline,
    FlowMatchEulerDiscreteScheduler,
    UniPCMultistepScheduler,
    WanPipeline,
)
from PIL import Image

from diffusers_longvid import TRFlowScheduler, average_frequency
from diffusers_longvid.cli import build_parser, main
from diffusers_longvid.decomposition import (
    decode_estimates,
    decode_latents,
    decompose_trajectory,
    ensemble_estimates,
    save_decomposition_grid,
    window_weights,
)
from diffusers_longvid.schedulers.calibration import calibrate_tau_low, search_matching_value
from diffusers_longvid.schedulers.scheduling_trflow import TRFlowStepEstimate
from diffusers_longvid.testing import get_dummy_components


STEPS = 8
CALL = dict(
    negative_prompt="blurry",
    height=16,
    width=16,
    num_frames=9,
    num_inference_steps=STEPS,
    guidance_scale=5.0,
    max_sequence_length=16,
)


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator("cpu").manual_seed(seed)


def hand_weights(sigmas, tau_low, tau_high):
    lo, hi = 1.0 - tau_high, 1.0 - tau_low
    return [max(0.0, min(sigmas[i], hi) - max(sigmas[i + 1], lo)) for i in range(len(sigmas) - 1)]


@pytest.fixture(scope="module")
def pipe():
    pipe = WanPipeline(**get_dummy_components(scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0)))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def estimates(pipe):
    return decompose_trajectory(pipe, "a red ball", tau_low=0.3, tau_high=0.7, generator=generator(), **CALL)


def run_latents(pipe, scheduler, seed=0, prompt="a red ball"):
    original = pipe.scheduler
    pipe.scheduler = scheduler
    try:
        return pipe(prompt, generator=generator(seed), output_type="latent", **CALL).frames
    finally:
        pipe.scheduler = original


# ----------------------------------------------------------------------------- decomposition
def test_decomposition_has_every_step_and_window_weights(pipe, estimates):
    reference = FlowMatchEulerDiscreteScheduler(shift=3.0)
    reference.set_timesteps(STEPS)
    sigmas = reference.sigmas.double().tolist()
    assert [e.step_index for e in estimates] == list(range(STEPS))
    np.testing.assert_allclose([e.sigma for e in estimates], sigmas[:-1], atol=1e-7)
    np.testing.assert_allclose([e.weight for e in estimates], hand_weights(sigmas, 0.3, 0.7), atol=1e-7)
    assert estimates[0].x_estimate.shape == (1, 16, 3, 2, 2) and estimates[0].x_estimate.dtype == torch.float32
    # the pipeline's own scheduler is back in place, untouched
    assert type(pipe.scheduler) is FlowMatchEulerDiscreteScheduler


def test_ensemble_of_estimates_reproduces_trflow_and_euler(pipe, estimates):
    trflow = run_latents(pipe, TRFlowScheduler.from_config(pipe.scheduler.config, tau_low=0.3, tau_high=0.7))
    torch.testing.assert_close(ensemble_estimates(estimates), trflow, atol=1e-5, rtol=1e-5)
    euler = run_latents(pipe, FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config))
    full = ensemble_estimates(estimates, window_weights(estimates, 0.0, 1.0))
    torch.testing.assert_close(full, euler, atol=1e-5, rtol=1e-5)
    # any other window, from the same run, without the model
    other = run_latents(pipe, TRFlowScheduler.from_config(pipe.scheduler.config, tau_low=0.1, tau_high=0.9))
    recombined = ensemble_estimates(estimates, window_weights(estimates, 0.1, 0.9))
    torch.testing.assert_close(recombined, other, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(trflow, euler, atol=1e-3)


def test_decomposition_with_the_wan_unipc_scheduler_uses_its_flow_shift(pipe, estimates):
    unipc = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    pipe_unipc = WanPipeline(**{**pipe.components, "scheduler": unipc})
    pipe_unipc.set_progress_bar_config(disable=True)
    again = decompose_trajectory(pipe_unipc, "a red ball", tau_low=0.3, tau_high=0.7, generator=generator(), **CALL)
    assert isinstance(pipe_unipc.scheduler, UniPCMultistepScheduler)
    assert [e.sigma for e in again] == [e.sigma for e in estimates]
    torch.testing.assert_close(ensemble_estimates(again), ensemble_estimates(estimates))


def test_decomposition_errors_and_scheduler_restored_on_error(pipe):
    original = pipe.scheduler
    with pytest.raises(TypeError):
        decompose_trajectory(pipe, "x", generator=generator(), not_an_argument=1, **CALL)
    assert pipe.scheduler is original
    with pytest.raises(ValueError, match="`output_type`"):
        decompose_trajectory(pipe, "x", output_type="np")
    with pytest.raises(ValueError, match="tau_low"):
        decompose_trajectory(pipe, "x", tau_low=0.8, tau_high=0.2)
    ddim = WanPipeline(**{**pipe.components, "scheduler": DDIMScheduler()})
    with pytest.raises(TypeError, match="flow-matching"):
        decompose_trajectory(ddim, "x", **CALL)
    with pytest.raises(ValueError, match="empty"):
        ensemble_estimates([])
    single = [TRFlowStepEstimate(step_index=0, sigma=1.0, weight=0.0, x_estimate=torch.zeros(1))]
    with pytest.raises(ValueError, match="positive sum"):
        ensemble_estimates(single)


def test_decoding_matches_the_pipeline_output(pipe, estimates):
    original = pipe.scheduler
    pipe.scheduler = TRFlowScheduler.from_config(original.config, tau_low=0.3, tau_high=0.7)
    try:
        trflow_pipe_output = pipe("a red ball", generator=generator(), output_type="np", **CALL).frames
    finally:
        pipe.scheduler = original
    decoded = decode_latents(pipe, ensemble_estimates(estimates))
    np.testing.assert_allclose(decoded, trflow_pipe_output, atol=1e-5)

    frames = decode_estimates(pipe, estimates[:3])
    assert len(frames) == 3
    assert frames[0].shape == (1, 9, 16, 16, 3) and 0.0 <= frames[0].min() and frames[0].max() <= 1.0
    with pytest.raises(ValueError, match="latents"):
        decode_latents(pipe, torch.zeros(1, 4, 3, 2, 2))


def test_decomposition_grid_png(pipe, estimates, tmp_path):
    frames = decode_estimates(pipe, estimates)
    path = save_decomposition_grid(
        frames,
        [e.sigma for e in estimates],
        [e.weight for e in estimates],
        tmp_path / "sub" / "grid.png",
        frames_per_row=3,
        tile_height=32,
        extra_rows={"T-RFlow": decode_latents(pipe, ensemble_estimates(estimates))},
        title="window [0.3, 0.7]",
    )
    image = Image.open(path)
    assert image.format == "PNG"
    row_height = 32 + 2 * 3
    assert image.height == 28 + (STEPS + 1) * row_height  # header, one row per step, one extra row
    # kept rows (weight > 0) are framed in green, dropped ones are not
    pixels = np.asarray(image.convert("RGB"))
    label_width = max(150, 32 + 24)
    for row, estimate in enumerate(estimates):
        top = 28 + row * row_height
        is_green = tuple(pixels[top + 1, label_width - 2]) == (0, 170, 60)
        assert is_green == (estimate.weight > 0), row
    with pytest.raises(ValueError, match="equal length"):
        save_decomposition_grid(frames, [0.5], [0.1], tmp_path / "bad.png")


# ----------------------------------------------------------------------------- calibration
def test_search_matching_value_bisects_a_bracketed_root():
    low, high = 0.0, 0.69
    x, fx, trace = search_matching_value(lambda t: t**2 - 0.1, low, high, tol=1e-6, max_iter=40)
    assert abs(fx) <= 1e-6 and x == pytest.approx(0.1**0.5, abs=1e-5)
    assert trace[:2] == [(0.0, -0.1), (0.69, pytest.approx(0.69**2 - 0.1))]


def test_search_matching_value_grid_fallback_and_unreachable_target():
    # not bracketed by the ends (a bump in the middle): the grid finds the sign change
    def bump(t):
        return 0.05 - (t - 0.3) ** 2

    x, fx, trace = search_matching_value(bump, 0.0, 0.6, tol=1e-6, max_iter=40, grid_size=7)
    assert abs(fx) <= 1e-6 and abs(bump(x)) <= 1e-6 and len(trace) > 7
    # unreachable: returns the closest evaluated point, fx != 0
    x, fx, trace = search_matching_value(lambda t: 1.0 + t, 0.0, 0.5, tol=1e-3, grid_size=5)
    assert (x, fx) == (0.0, 1.0) and [t for t, _ in trace] == [0.0, 0.5, 0.125, 0.25, 0.375]


def test_calibrate_tau_low_on_the_tiny_pipeline(pipe):
    kwargs = dict(prompts=["a red ball", "a cat"], seeds=[0, 1], tau_high=0.7, tol=1e-4, max_iter=8, grid_size=5)
    result = calibrate_tau_low(pipe, **kwargs, **CALL)
    assert type(pipe.scheduler) is FlowMatchEulerDiscreteScheduler
    assert 0.0 <= result.tau_low < 0.7 and result.tau_high == 0.7
    assert (result.tau_low, result.af) in result.trace
    best = min(abs(af - result.target_af) for _, af in result.trace)
    assert abs(result.af - result.target_af) == best
    assert result.converged == (best <= 1e-4)
    assert len(result.target_af_per_sample) == len(result.af_per_sample) == 4
    assert result.num_steps_in_window >= 1
    json.dumps(result.to_dict())

    # the target is the AF of real Euler runs, the result that of real T-RFlow runs with the chosen window
    def pipeline_af(scheduler):
        values = []
        original = pipe.scheduler
        pipe.scheduler = scheduler
        try:
            for prompt in kwargs["prompts"]:
                for seed in kwargs["seeds"]:
                    video = pipe(prompt, generator=generator(seed), output_type="np", **CALL).frames
                    values.append(average_frequency(video))
        finally:
            pipe.scheduler = original
        return values

    euler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    np.testing.assert_allclose(pipeline_af(euler), result.target_af_per_sample, atol=1e-5)
    trflow = TRFlowScheduler(shift=3.0, tau_low=result.tau_low, tau_high=0.7)
    np.testing.assert_allclose(pipeline_af(trflow), result.af_per_sample, atol=1e-5)

    # deterministic
    again = calibrate_tau_low(pipe, **kwargs, **CALL)
    assert again.tau_low == result.tau_low and again.trace == result.trace


def test_calibrate_tau_low_validates_before_running(pipe):
    for bad, match in [
        (dict(prompts=[]), "prompts"),
        (dict(prompts="x", seeds=[]), "seeds"),
        (dict(prompts="x", seeds=["0"]), "seeds"),
        (dict(prompts="x", tau_high=1.5), "tau_high"),
        (dict(prompts="x", tau_high=0.7, search=(0.2, 0.8)), "search"),
        (dict(prompts="x", tol=0), "tol"),
        (dict(prompts="x", grid_size=1), "grid_size"),
        (dict(prompts="x", generator=generator()), "generator"),
    ]:
        with pytest.raises((ValueError, TypeError), match=match):
            calibrate_tau_low(pipe, **bad)


# ----------------------------------------------------------------------------- CLIs
@pytest.fixture(scope="module")
def saved_pipeline(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-wan")
    WanPipeline(**get_dummy_components(scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0))).save_pretrained(folder)
    return str(folder)


CLI_COMMON = [
    "--height", "16", "--width", "16", "--num-frames", "9", "--num-inference-steps", "6",
    "--max-sequence-length", "16", "--device", "cpu", "--negative-prompt", "blurry",
]  # fmt: skip


def test_cli_decompose(saved_pipeline, tmp_path):
    out = tmp_path / "grid.png"
    code = main(
        ["decompose", "--model", saved_pipeline, *CLI_COMMON, "--prompt", "a red ball", "--seed", "1",
         "--tau-low", "0.2", "--tau-high", "0.8", "--frames-per-row", "2", "--tile-height", "32",
         "--out", str(out), "--save-estimates", str(tmp_path / "est.pt")]
    )  # fmt: skip
    assert code == 0
    image = Image.open(out)
    assert image.format == "PNG" and image.height == 28 + (6 + 2) * (32 + 6)  # 6 steps + Euler + T-RFlow rows
    saved = torch.load(tmp_path / "est.pt")
    assert saved["x_estimates"].shape[0] == 6 and len(saved["weights"]) == 6
    np.testing.assert_allclose(sum(saved["weights"]), 0.6, atol=1e-6)
    assert main(["decompose", "--model", saved_pipeline, "--prompt", "x", "--tau-low", "0.9", "--tau-high", "0.1",
                 "--out", str(tmp_path / "bad.png")]) == 2  # fmt: skip


def test_cli_calibrate_trflow(saved_pipeline, tmp_path):
    loaded = DiffusionPipeline.from_pretrained(saved_pipeline)
    assert isinstance(loaded, WanPipeline) and type(loaded.scheduler) is FlowMatchEulerDiscreteScheduler
    out = tmp_path / "result.json"
    code = main(
        ["calibrate-trflow", "--model", saved_pipeline, *CLI_COMMON, "--prompt", "a red ball", "a cat",
         "--seeds", "0", "1", "--tau-high", "0.7", "--tol", "1e-4", "--max-iter", "4", "--grid-size", "3",
         "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    data = json.loads(out.read_text())
    assert data["tau_high"] == 0.7 and 0.0 <= data["tau_low"] < 0.7
    assert data["prompts"] == ["a red ball", "a cat"] and data["seeds"] == [0, 1]
    assert {"tau_low": data["tau_low"], "af": data["af"]} in data["trace"]
    assert len(data["target_af_per_sample"]) == 4
    assert main(["calibrate-trflow", "--model", saved_pipeline, "--prompt", "x", "--tau-high", "0.7",
                 "--search", "0.5", "0.9", "--out", str(out)]) == 2  # fmt: skip


@pytest.mark.parametrize("command", ["decompose", "calibrate-trflow"])
def test_cli_every_flag_is_documented(command, capsys):
    parser = build_parser()
    subparser = parser._subparsers._group_actions[0].choices[command]
    for action in subparser._actions:
        assert action.help, f"{command}: {action.option_strings} has no help"
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    for action in subparser._actions:
        for flag in action.option_strings:
            assert flag in text
