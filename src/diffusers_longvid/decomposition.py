# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""Decomposition of a rectified-flow sampling run into its per-step clean estimates (the paper's Figure 2).

Euler sampling from `x_start` at `sigma_0` ends at `sum_i (Delta_i / sigma_0) * x~_i` with
`x~_i = x_start - sigma_0 * v_i` (DESIGN §1). [`decompose_trajectory`] runs a Wan-style pipeline once over the full
schedule and returns every `x~_i` with its T-RFlow weight for a window; [`ensemble_estimates`] recombines them (with
the weights of *any* window, without running the model again), [`decode_estimates`] turns them into frames with the
pipeline's VAE and [`save_decomposition_grid`] draws the figure.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from diffusers.schedulers.scheduling_flow_match_euler_discrete import FlowMatchEulerDiscreteScheduler
from diffusers.utils import logging

from .extension import denormalize_latents
from .schedulers.scheduling_trflow import TRFlowScheduler, TRFlowStepEstimate, trflow_weights


logger = logging.get_logger(__name__)  # pylint: disable=invalid-name

__all__ = [
    "decode_estimates",
    "decode_latents",
    "decompose_trajectory",
    "ensemble_estimates",
    "save_decomposition_grid",
    "window_weights",
]

# arguments of the pipeline call that the decomposition sets itself
_RESERVED_PIPE_KWARGS = ("output_type", "return_dict")


def _full_window_scheduler(scheduler: Any) -> TRFlowScheduler:
    """A `TRFlowScheduler` with the window [0, 1] and the schedule of `scheduler` (FlowMatch or flow UniPC)."""
    config = getattr(scheduler, "config", None)
    is_flow_config = config is not None and (
        config.get("prediction_type") == "flow_prediction" or bool(config.get("use_flow_sigmas", False))
    )
    if not isinstance(scheduler, FlowMatchEulerDiscreteScheduler) and not is_flow_config:
        raise TypeError(
            "`pipe.scheduler` must be a flow-matching scheduler (`FlowMatchEulerDiscreteScheduler`, "
            f"`TRFlowScheduler`, or a `UniPCMultistepScheduler` with `use_flow_sigmas=True`), got {type(scheduler).__name__}."
        )
    if not isinstance(scheduler, FlowMatchEulerDiscreteScheduler):
        logger.info(
            f"`pipe.scheduler` is a {type(scheduler).__name__}: decomposing the Euler trajectory of the same shift, "
            "which is what `TRFlowScheduler` samples."
        )
    probe = TRFlowScheduler.from_config(scheduler.config, tau_low=0.0, tau_high=1.0)
    probe.keep_estimates = True
    return probe


def window_weights(estimates: Sequence[TRFlowStepEstimate], tau_low: float, tau_high: float) -> torch.Tensor:
    r"""
    T-RFlow weights of the steps of a decomposition for another window, without running the model.

    The step intervals are `[sigma_{i+1}, sigma_i]` with the terminal `sigma_N = 0` of flow-matching schedules.

    Args:
        estimates (`list[TRFlowStepEstimate]`): The output of [`decompose_trajectory`] (all steps of a full run).
        tau_low (`float`), tau_high (`float`): The window, as fractions of the trajectory (0 = noise, 1 = clean).

    Returns:
        `torch.Tensor` of shape `(len(estimates),)`, float64.
    """
    TRFlowScheduler._validate_window(tau_low, tau_high)
    if len(estimates) == 0:
        raise ValueError("`estimates` is empty.")
    sigmas = torch.tensor([e.sigma for e in estimates] + [0.0], dtype=torch.float64)
    return trflow_weights(sigmas, 1.0 - float(tau_high), 1.0 - float(tau_low))


def ensemble_estimates(
    estimates: Sequence[TRFlowStepEstimate], weights: Sequence[float] | torch.Tensor | None = None
) -> torch.Tensor:
    r"""
    The weighted ensemble `sum_i w_i * x~_i / sum_i w_i` of the clean estimates (float32, on the CPU).

    With the weights of [`decompose_trajectory`] (the default) this is the latent that `TRFlowScheduler` with the same
    window returns; with `window_weights(estimates, 0, 1)` it is the plain Euler output.

    Args:
        estimates (`list[TRFlowStepEstimate]`): Output of [`decompose_trajectory`].
        weights (`list[float]` or `torch.Tensor`, *optional*): One weight per estimate; defaults to `e.weight`.
    """
    if len(estimates) == 0:
        raise ValueError("`estimates` is empty.")
    if weights is None:
        weights = [e.weight for e in estimates]
    weights = torch.as_tensor(weights, dtype=torch.float64).flatten()
    if weights.numel() != len(estimates):
        raise ValueError(f"`weights` has {weights.numel()} entries for {len(estimates)} estimates.")
    if bool((weights < 0).any()) or float(weights.sum()) <= 0:
        raise ValueError("`weights` must be non-negative with a positive sum (the window holds no step).")
    total = float(weights.sum())
    result = torch.zeros_like(estimates[0].x_estimate, dtype=torch.float32)
    for estimate, weight in zip(estimates, weights.tolist()):
        if weight > 0:
            result.add_(estimate.x_estimate.to(torch.float32), alpha=weight / total)
    return result


@torch.no_grad()
def decompose_trajectory(
    pipe: Any,
    prompt: str | list[str] | None = None,
    tau_low: float = 0.3,
    tau_high: float = 0.7,
    **pipe_kwargs: Any,
) -> list[TRFlowStepEstimate]:
    r"""
    Run a Wan-style pipeline once over the full schedule and return every step's clean estimate.

    The pipeline's scheduler is temporarily replaced by a [`TRFlowScheduler`] with the window `[0, 1]` (plain Euler,
    every step evaluated) and the same schedule, with `keep_estimates=True`; the original scheduler is restored
    afterwards, also on error. Works with any pipeline that loops over `scheduler.timesteps` and accepts
    `output_type="latent"` (`WanPipeline`, `WanImageToVideoPipeline`, ours).

    Args:
        pipe (`DiffusionPipeline`):
            The pipeline. Its scheduler must be a flow-matching one: `FlowMatchEulerDiscreteScheduler`,
            `TRFlowScheduler`, or the flow `UniPCMultistepScheduler` of the Wan checkpoints (whose `flow_shift` is
            used; the decomposed trajectory is the Euler one).
        prompt (`str` or `list[str]`, *optional*): Passed to the pipeline as `prompt=`.
        tau_low (`float`, *optional*, defaults to 0.3), tau_high (`float`, *optional*, defaults to 0.7):
            The window whose weights are stored in the returned estimates (fractions of the trajectory, 0 = noise,
            1 = clean). The run itself does not depend on it; use [`window_weights`] for other windows.
        pipe_kwargs:
            Any other argument of the pipeline call (`negative_prompt`, `height`, `width`, `num_frames`,
            `num_inference_steps`, `guidance_scale`, `generator`, `image`, ...). `output_type` and `return_dict`
            are set here.

    Returns:
        `list[TRFlowStepEstimate]`: one per evaluated step, in order, with `sigma`, `weight` (the un-normalised
        T-RFlow weight under `[tau_low, tau_high]`) and `x_estimate` (latent, float32, on the CPU, shape of the
        pipeline's latents).
    """
    TRFlowScheduler._validate_window(tau_low, tau_high)
    reserved = [k for k in _RESERVED_PIPE_KWARGS if k in pipe_kwargs]
    if reserved:
        raise ValueError(f"`{reserved[0]}` is set by `decompose_trajectory`; do not pass it.")
    if getattr(pipe, "scheduler", None) is None:
        raise TypeError(f"`pipe` must be a diffusers pipeline with a `scheduler`, got {type(pipe).__name__}.")
    probe = _full_window_scheduler(pipe.scheduler)

    original = pipe.scheduler
    pipe.scheduler = probe
    try:
        pipe(prompt=prompt, output_type="latent", return_dict=False, **pipe_kwargs)
    finally:
        pipe.scheduler = original
    if not probe.step_estimates:
        raise RuntimeError("The pipeline made no scheduler step; nothing to decompose.")

    weights = trflow_weights(probe.sigmas, 1.0 - float(tau_high), 1.0 - float(tau_low))
    estimates = [
        TRFlowStepEstimate(
            step_index=e.step_index, sigma=e.sigma, weight=float(weights[e.step_index]), x_estimate=e.x_estimate
        )
        for e in probe.step_estimates
    ]
    kept = sum(e.weight > 0 for e in estimates)
    if kept == 0:
        logger.warning(f"The window `tau_low={tau_low}`, `tau_high={tau_high}` holds none of the evaluated steps.")
    elif kept < 3:
        logger.warning(f"The window `tau_low={tau_low}`, `tau_high={tau_high}` holds only {kept} steps.")
    return estimates


def _execution_device(pipe: Any, module: torch.nn.Module) -> torch.device:
    try:
        from diffusers.utils.torch_utils import get_module_execution_device
    except ImportError:  # older diffusers
        return getattr(pipe, "_execution_device", None) or next(module.parameters()).device
    return get_module_execution_device(module)


@torch.no_grad()
def decode_latents(pipe: Any, latents: torch.Tensor, output_type: str = "np") -> Any:
    r"""
    Decode Wan latents to frames exactly as `WanPipeline` does (`denormalize_latents`, VAE decode, postprocess).

    Args:
        pipe (`DiffusionPipeline`): A pipeline with a Wan `vae` (`AutoencoderKLWan`, with `latents_mean` and
            `latents_std` in its config) and, optionally, a `video_processor`.
        latents (`torch.Tensor` of shape `(B, C, F, H, W)`): Normalised latents, as the pipeline's denoising loop has
            them.
        output_type (`str`, *optional*, defaults to `"np"`): `"np"` (`(B, F, H, W, 3)` in `[0, 1]`), `"pt"`
            (`(B, F, 3, H, W)`) or `"pil"`.
    """
    vae = getattr(pipe, "vae", None)
    if vae is None:
        raise TypeError("`pipe` has no `vae` to decode with.")
    config = vae.config
    if getattr(config, "latents_mean", None) is None or getattr(config, "latents_std", None) is None:
        raise ValueError("`pipe.vae.config` needs `latents_mean` and `latents_std` (a Wan VAE).")
    if latents.ndim != 5 or latents.shape[1] != config.z_dim:
        raise ValueError(f"`latents` must have shape (B, {config.z_dim}, F, H, W), got {tuple(latents.shape)}.")
    device = _execution_device(pipe, vae)
    latents = latents.to(device, vae.dtype)
    video = vae.decode(denormalize_latents(vae, latents), return_dict=False)[0]
    processor = getattr(pipe, "video_processor", None)
    if processor is None:
        from diffusers.video_processor import VideoProcessor

        processor = VideoProcessor(vae_scale_factor=getattr(pipe, "vae_scale_factor_spatial", 8))
    return processor.postprocess_video(video, output_type=output_type)


def decode_estimates(pipe: Any, estimates: Sequence[TRFlowStepEstimate], output_type: str = "np") -> list[Any]:
    r"""
    Decode every clean estimate of a decomposition to frames (one VAE decode per step, with a progress bar).

    Args:
        pipe (`DiffusionPipeline`): The pipeline that made the estimates (its `vae` is used).
        estimates (`list[TRFlowStepEstimate]`): Output of [`decompose_trajectory`].
        output_type (`str`, *optional*, defaults to `"np"`): As in [`decode_latents`].

    Returns:
        `list`: one decoded video per estimate (for `"np"`, arrays of shape `(B, F, H, W, 3)` in `[0, 1]`).
    """
    iterator = pipe.progress_bar(estimates) if hasattr(pipe, "progress_bar") else estimates
    return [decode_latents(pipe, e.x_estimate, output_type=output_type) for e in iterator]


def _uint8_frames(video: Any, video_index: int) -> np.ndarray:
    """One video of a decoded output as `(F, H, W, 3)` uint8; floats are read as `[0, 1]`."""
    from .frequency import _to_bfchw, _to_tensor, infer_video_layout

    tensor, is_torch = _to_tensor(video)
    layout = infer_video_layout(tensor.shape, channel_first=is_torch)
    frames = _to_bfchw(tensor, layout)
    if not 0 <= video_index < frames.shape[0]:
        raise ValueError(f"`video_index={video_index}` is out of range for a batch of {frames.shape[0]} videos.")
    frames = frames[video_index].permute(0, 2, 3, 1).cpu()
    if frames.dtype.is_floating_point:
        frames = (frames.float().clamp(0, 1) * 255).round()
    frames = frames.to(torch.uint8).numpy()
    return np.repeat(frames, 3, axis=-1) if frames.shape[-1] == 1 else frames


def save_decomposition_grid(
    frames_per_step: Sequence[Any],
    sigmas: Sequence[float],
    weights: Sequence[float],
    path: str | os.PathLike,
    frames_per_row: int = 4,
    tile_height: int = 128,
    video_index: int = 0,
    extra_rows: Mapping[str, Any] | None = None,
    title: str | None = None,
) -> str:
    r"""
    Save the paper's Figure 2: one row per denoising step showing a few frames of its decoded clean estimate.

    Each row is labelled with the step, its `sigma`, the paper's `t = 1 - sigma` and its T-RFlow weight (absolute and
    as a share of the ensemble). Rows inside the window (weight > 0) get a green border; the others a grey label.

    Args:
        frames_per_step (`list`): One decoded video per step, e.g. the output of [`decode_estimates`]: arrays or
            tensors in the layouts of `average_frequency` (floats in `[0, 1]` or uint8), or lists of PIL images.
        sigmas (`list[float]`): The noise level of each step.
        weights (`list[float]`): The T-RFlow weight of each step.
        path (`str` or `os.PathLike`): Where to write the PNG.
        frames_per_row (`int`, *optional*, defaults to 4): How many frames (evenly spaced in time) per row.
        tile_height (`int`, *optional*, defaults to 128): Height of each frame in the grid, in pixels.
        video_index (`int`, *optional*, defaults to 0): Which video of a batch to show.
        extra_rows (`dict[str, video]`, *optional*): Rows appended at the bottom, labelled by their key
            (e.g. `{"Euler": ..., "T-RFlow": ...}`).
        title (`str`, *optional*): A line written above the grid.

    Returns:
        `str`: the path written.
    """
    from PIL import Image, ImageDraw, ImageFont

    if not (len(frames_per_step) == len(sigmas) == len(weights)) or len(frames_per_step) == 0:
        raise ValueError(
            "`frames_per_step`, `sigmas` and `weights` must be non-empty and of equal length, got "
            f"{len(frames_per_step)}, {len(sigmas)} and {len(weights)}."
        )
    if frames_per_row < 1:
        raise ValueError(f"`frames_per_row` must be >= 1, got {frames_per_row}.")
    if tile_height < 8:
        raise ValueError(f"`tile_height` must be >= 8, got {tile_height}.")

    total_weight = float(sum(weights))
    rows: list[tuple[list[str], np.ndarray, bool | None]] = []
    for step, (video, sigma, weight) in enumerate(zip(frames_per_step, sigmas, weights)):
        share = f" ({100 * weight / total_weight:.0f}%)" if total_weight > 0 else ""
        label = [f"step {step}", f"sigma = {sigma:.3f}", f"t = {1 - sigma:.3f}", f"w = {weight:.3f}{share}"]
        rows.append((label, _uint8_frames(video, video_index), weight > 0))
    for name, video in (extra_rows or {}).items():
        rows.append(([str(name)], _uint8_frames(video, video_index), None))

    num_frames, height, width = rows[0][1].shape[:3]
    tile_width = max(1, round(width * tile_height / height))
    picks = sorted(set(np.linspace(0, num_frames - 1, min(frames_per_row, num_frames)).round().astype(int).tolist()))
    try:
        font = ImageFont.load_default(size=max(10, tile_height // 9))
    except TypeError:  # Pillow < 10.1 has no sized default font
        font = ImageFont.load_default()
    label_width, border, header = max(150, tile_height + 24), 3, (28 if title else 0)
    row_height = tile_height + 2 * border
    grid_size = (label_width + len(picks) * (tile_width + border) + border, header + len(rows) * row_height)
    grid = Image.new("RGB", grid_size, "white")
    draw = ImageDraw.Draw(grid)
    if title:
        draw.text((border, 6), title, fill="black", font=font)

    for row, (label, frames, kept) in enumerate(rows):
        top = header + row * row_height
        if frames.shape[1:3] != (height, width):
            raise ValueError("All videos of the grid must have the same frame size.")
        colour = "black" if kept is None or kept else (150, 150, 150)
        line_height = max(12, math.ceil(font.size * 1.25)) if hasattr(font, "size") else 12
        for n, text in enumerate(label):
            draw.text((6, top + border + 4 + n * line_height), text, fill=colour, font=font)
        if kept:
            draw.rectangle(
                [label_width - border, top, grid.width - 1, top + row_height - 1], outline=(0, 170, 60), width=border
            )
        for col, index in enumerate(picks):
            tile = Image.fromarray(frames[min(index, frames.shape[0] - 1)])
            resample = Image.NEAREST if tile_height >= height else Image.BICUBIC
            tile = tile.resize((tile_width, tile_height), resample)
            grid.paste(tile, (label_width + col * (tile_width + border), top + border))

    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    grid.save(path, format="PNG")
    return path
