# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""Ground truth vs the method vs its ablations on one toy script: generation, a side-by-side mp4, a contact sheet.

```py
>>> from diffusers_longvid.toy import random_script
>>> from diffusers_longvid.toy.compare import ground_truth_frames, run_variants
>>> from diffusers_longvid.toy.compare import write_contact_sheet, write_side_by_side

>>> script = random_script(8, seed=0)
>>> videos = {"ground truth": ground_truth_frames(script, num_frames=33, num_condition_frames=5, size=64)}
>>> videos.update(run_variants(pipe, script, seed=0, num_frames=33, num_condition_frames=5, steps=12, size=64))
>>> write_side_by_side(videos, "compare.mp4", fps=16, upscale=4)
>>> write_contact_sheet(videos, "compare.png", every_seconds=4.0, fps=16, upscale=2)
```

The variants differ only in the KV cache and the T-RFlow window; the noise (`seed`), prompts, clip arithmetic and
every other argument are shared, so any difference between the videos comes from the two mechanisms.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from diffusers.utils import logging


logger = logging.get_logger(__name__)

GROUND_TRUTH = "ground truth"


@dataclass(frozen=True)
class Variant:
    r"""
    One configuration of the long-video method to compare.

    Args:
        name (`str`): Label in tables, plots and video panels.
        kv_cache_clips (`int`): History clips attended through the cross-clip KV cache (`0` = no KV cache).
        tau_low (`float`), tau_high (`float`): The T-RFlow window; `[0, 1]` is plain Euler (no T-RFlow).
    """

    name: str
    kv_cache_clips: int
    tau_low: float
    tau_high: float

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"`name` must be a non-empty string, got {self.name!r}.")
        kv = self.kv_cache_clips
        if not isinstance(kv, int) or isinstance(kv, bool) or kv < 0:
            raise ValueError(f"`kv_cache_clips` must be an integer >= 0, got {self.kv_cache_clips!r}.")
        if not 0.0 <= float(self.tau_low) < float(self.tau_high) <= 1.0:
            raise ValueError(
                f"The window must satisfy 0 <= `tau_low` < `tau_high` <= 1, got [{self.tau_low}, {self.tau_high}]."
            )

    @property
    def uses_trflow(self) -> bool:
        return not (float(self.tau_low) == 0.0 and float(self.tau_high) == 1.0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


DEFAULT_VARIANTS: tuple[Variant, ...] = (
    Variant("ours", kv_cache_clips=5, tau_low=0.3, tau_high=0.7),
    Variant("no-KV", kv_cache_clips=0, tau_low=0.3, tau_high=0.7),
    Variant("no-KV-no-T-RFlow", kv_cache_clips=0, tau_low=0.0, tau_high=1.0),
)


def _check_variants(variants: Sequence[Variant]) -> list[Variant]:
    variants = list(variants)
    if not variants or not all(isinstance(v, Variant) for v in variants):
        raise TypeError("`variants` must be a non-empty sequence of `Variant`.")
    names = [v.name for v in variants]
    if len(set(names)) != len(names) or GROUND_TRUTH in names:
        raise ValueError(f"`variants` need unique names other than {GROUND_TRUTH!r}, got {names}.")
    return variants


def script_prompts(script: Sequence[dict[str, Any]]) -> list[str]:
    """The prompt of every clip of a toy script (written from the script where a clip has none)."""
    from .scripts import describe_script

    written = describe_script(script)
    return [clip.get("prompt") or text for clip, text in zip(script, written)]


def ground_truth_frames(
    script: Sequence[dict[str, Any]],
    num_frames: int,
    num_condition_frames: int,
    size: int = 64,
    fps: int = 16,
    seed: int = 0,
) -> np.ndarray:
    r"""
    The ground-truth frames of `script` with the extension pipeline's clip arithmetic, so that they align frame for
    frame with a generated video of the same clips (`num_frames + (N - 1) * (num_frames - num_condition_frames)`).

    Args:
        script (`list[dict]`): The toy script.
        num_frames (`int`), num_condition_frames (`int`): As passed to the pipeline.
        size (`int`, *optional*, defaults to 64): Frame side in pixels.
        fps (`int`, *optional*, defaults to 16): Frame rate.
        seed (`int`, *optional*, defaults to 0): Render seed (see `render_script`).

    Returns:
        `np.ndarray`: `(frames, size, size, 3)` `uint8`.
    """
    from .world import render_script_clips

    video = render_script_clips(script, num_frames, num_condition_frames, fps=fps, size=size, seed=seed)
    return video.frames


def run_variants(
    pipe: Any,
    script: Sequence[dict[str, Any]],
    variants: Sequence[Variant] = DEFAULT_VARIANTS,
    seed: int = 0,
    num_frames: int = 33,
    num_condition_frames: int = 5,
    steps: int = 12,
    size: int = 64,
    guidance_scale: float = 3.0,
    generator_device: str = "cpu",
    **pipe_kwargs: Any,
) -> dict[str, np.ndarray]:
    r"""
    Generate the same toy script once per variant, with the same noise.

    The pipeline's scheduler must be a [`~diffusers_longvid.TRFlowScheduler`]; its window is set per variant with
    `set_window` and restored afterwards (also on error).

    Args:
        pipe ([`LongVideoExtensionPipeline`]): The pipeline.
        script (`list[dict]`): The toy script; clip `n`'s prompt drives generated clip `n`.
        variants (`Sequence[Variant]`, *optional*, defaults to `DEFAULT_VARIANTS`): What to generate.
        seed (`int`, *optional*, defaults to 0):
            Every variant gets `torch.Generator(generator_device).manual_seed(seed)`.
        num_frames (`int`, *optional*, defaults to 33), num_condition_frames (`int`, *optional*, defaults to 5):
            The clip arithmetic.
        steps (`int`, *optional*, defaults to 12): `num_inference_steps`.
        size (`int`, *optional*, defaults to 64): Frame height and width (the toy world is square).
        guidance_scale (`float`, *optional*, defaults to 3.0): Classifier-free guidance scale.
        generator_device (`str`, *optional*, defaults to `"cpu"`): Device of the seeded generator.
        pipe_kwargs: Other pipeline arguments (`max_sequence_length`, `clip_selector`, `negative_prompt`, ...).

    Returns:
        `dict[str, np.ndarray]`: Variant name -> `(frames, H, W, 3)` `uint8`, in the order of `variants`.
    """
    import torch

    from ..schedulers.scheduling_trflow import TRFlowScheduler
    from ..video_io import to_uint8_frames

    variants = _check_variants(variants)
    if not isinstance(getattr(pipe, "scheduler", None), TRFlowScheduler):
        raise TypeError(
            f"`pipe.scheduler` must be a `TRFlowScheduler` (to switch the window per variant), got "
            f"{type(getattr(pipe, 'scheduler', None)).__name__}."
        )
    reserved = [k for k in ("prompt", "generator", "kv_cache_clips", "output_type", "return_dict") if k in pipe_kwargs]
    if reserved:
        raise ValueError(f"`{reserved[0]}` is set by `run_variants`; do not pass it.")
    prompts = script_prompts(script)
    scheduler = pipe.scheduler
    saved_window = (float(scheduler.config.tau_low), float(scheduler.config.tau_high))
    videos: dict[str, np.ndarray] = {}
    try:
        for variant in variants:
            logger.info(
                f"Variant {variant.name!r}: kv_cache_clips={variant.kv_cache_clips}, "
                f"window [{variant.tau_low}, {variant.tau_high}], {len(prompts)} clips"
            )
            scheduler.set_window(variant.tau_low, variant.tau_high)
            out = pipe(
                prompts,
                height=size,
                width=size,
                num_frames=num_frames,
                num_condition_frames=num_condition_frames,
                num_inference_steps=steps,
                guidance_scale=guidance_scale,
                generator=torch.Generator(generator_device).manual_seed(seed),
                kv_cache_clips=variant.kv_cache_clips,
                output_type="np",
                **pipe_kwargs,
            )
            videos[variant.name] = to_uint8_frames(out.frames, batch_index=0)
    finally:
        scheduler.set_window(*saved_window)
    return videos


def _check_videos(videos: Mapping[str, Any]) -> dict[str, np.ndarray]:
    from ..video_io import to_uint8_frames

    if not isinstance(videos, Mapping) or not videos:
        raise TypeError("`videos` must be a non-empty mapping of name -> frames.")
    arrays = {str(name): to_uint8_frames(frames) for name, frames in videos.items()}
    shapes = {name: a.shape for name, a in arrays.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"Every video in `videos` must have the same shape (frames, H, W, 3), got {shapes}.")
    return arrays


def _check_upscale(upscale: int) -> None:
    if not isinstance(upscale, int) or isinstance(upscale, bool) or upscale < 1:
        raise ValueError(f"`upscale` must be a positive integer, got {upscale!r}.")


def _label_strip(text: str, width: int, height: int, font_size: int | None = None) -> np.ndarray:
    """A black strip `(height, width, 3)` with `text` in white, drawn with PIL's default font (clipped if too long)."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (width, height), (0, 0, 0))
    draw = ImageDraw.Draw(image)
    try:
        font = ImageFont.load_default(size=font_size or max(8, height - 4))
    except TypeError:  # Pillow < 10.1 has one fixed-size default font
        font = ImageFont.load_default()
    draw.text((2, 1), text, fill=(255, 255, 255), font=font)
    return np.asarray(image)


def _label_height(panel_width: int) -> int:
    # readable at 64 px panels and up, never taller than needed
    return int(np.clip(panel_width // 8, 10, 20))


def write_side_by_side(
    videos: Mapping[str, Any],
    path: str | os.PathLike,
    fps: float = 16,
    labels: bool = True,
    upscale: int = 1,
) -> str:
    r"""
    Write the videos next to each other, left to right in the order of `videos`, as one mp4.

    Args:
        videos (`Mapping[str, frames]`): Name -> frames (anything [`~diffusers_longvid.video_io.to_uint8_frames`]
            takes), all of the same shape; put the ground truth first.
        path (`str` or `os.PathLike`): Output file.
        fps (`float`, *optional*, defaults to 16): Frame rate.
        labels (`bool`, *optional*, defaults to `True`): Draw each name on a strip above its panel; the video is
            then taller than the frames by the strip height, and exactly `len(videos) * W * upscale` wide.
        upscale (`int`, *optional*, defaults to 1): Nearest-neighbour upscaling of every panel.

    Returns:
        `str`: The path.
    """
    from ..video_io import StreamingVideoWriter

    arrays = _check_videos(videos)
    _check_upscale(upscale)
    if fps <= 0:
        raise ValueError(f"`fps` must be positive, got {fps!r}.")
    panels = [np.repeat(np.repeat(a, upscale, axis=1), upscale, axis=2) if upscale > 1 else a for a in arrays.values()]
    width = panels[0].shape[2]
    if labels:
        height = _label_height(width)
        strips = [_label_strip(name, width, height) for name in arrays]
        panels = [np.concatenate([np.broadcast_to(s, (len(p), *s.shape)), p], axis=1) for s, p in zip(strips, panels)]
    frames = np.concatenate(panels, axis=2)
    with StreamingVideoWriter(path, fps=fps) as writer:
        # in pieces: a long video side by side is many times the size of one video
        for start in range(0, len(frames), 64):
            writer.append(np.ascontiguousarray(frames[start : start + 64]))
    return os.fspath(path)


def contact_sheet_frame_indices(num_frames: int, every_seconds: float, fps: float) -> list[int]:
    """Frames at `0, every_seconds, 2 * every_seconds, ...` seconds (and never past the last frame)."""
    if every_seconds <= 0 or fps <= 0:
        raise ValueError(f"`every_seconds` and `fps` must be positive, got {every_seconds!r} and {fps!r}.")
    step = every_seconds * fps
    count = int(np.floor((num_frames - 1) / step + 1e-9)) + 1 if num_frames > 0 else 0
    return [min(num_frames - 1, int(round(i * step))) for i in range(count)]


def write_contact_sheet(
    videos: Mapping[str, Any],
    path: str | os.PathLike,
    every_seconds: float = 2.0,
    fps: float = 16,
    upscale: int = 1,
    labels: bool = True,
) -> str:
    r"""
    Write a PNG grid: one row per video (in the order of `videos`), one column per time step of `every_seconds`.

    With `labels`, a column on the left names the rows and a strip on top gives each column's time; the image is
    `(strip + rows * H * upscale)` high and `(name column + columns * W * upscale)` wide, with
    `columns = len(contact_sheet_frame_indices(...))`. Without labels it is exactly the grid of frames.

    Args:
        videos (`Mapping[str, frames]`): Name -> frames, all of the same shape.
        path (`str` or `os.PathLike`): Output `.png` file; its folder is created.
        every_seconds (`float`, *optional*, defaults to 2.0): Time between columns.
        fps (`float`, *optional*, defaults to 16): Frame rate of the videos.
        upscale (`int`, *optional*, defaults to 1): Nearest-neighbour upscaling of every frame.
        labels (`bool`, *optional*, defaults to `True`): Draw the row names and column times.

    Returns:
        `str`: The path.
    """
    from PIL import Image

    arrays = _check_videos(videos)
    _check_upscale(upscale)
    num_frames, height, width = next(iter(arrays.values())).shape[:3]
    indices = contact_sheet_frame_indices(num_frames, every_seconds, fps)
    h, w = height * upscale, width * upscale
    rows = []
    for frames in arrays.values():
        picked = frames[indices]
        if upscale > 1:
            picked = np.repeat(np.repeat(picked, upscale, axis=1), upscale, axis=2)
        rows.append(np.concatenate(list(picked), axis=1))
    grid = np.concatenate(rows, axis=0)
    if labels:
        strip = _label_height(w)
        font_size = max(8, strip - 4)
        name_width = int(0.6 * font_size * max(len(name) for name in arrays)) + 6
        names = np.concatenate([_label_strip(name, name_width, h, font_size) for name in arrays], axis=0)
        grid = np.concatenate([names, grid], axis=1)
        times = [_label_strip("", name_width, strip)] + [_label_strip(f"{i / fps:.1f}s", w, strip) for i in indices]
        grid = np.concatenate([np.concatenate(times, axis=1), grid], axis=0)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    Image.fromarray(grid).save(os.fspath(path))
    return os.fspath(path)


def write_comparison(
    pipe: Any,
    script: Sequence[dict[str, Any]],
    out_dir: str | os.PathLike,
    variants: Sequence[Variant] = DEFAULT_VARIANTS,
    seed: int = 0,
    num_frames: int = 33,
    num_condition_frames: int = 5,
    steps: int = 12,
    size: int = 64,
    fps: int = 16,
    every_seconds: float = 4.0,
    upscale: int = 4,
    **pipe_kwargs: Any,
) -> dict[str, str]:
    r"""
    Ground truth vs every variant of `script`: writes `comparison.mp4` (side by side, labelled) and
    `comparison.png` (contact sheet) to `out_dir`. Arguments as in [`run_variants`], [`write_side_by_side`] and
    [`write_contact_sheet`]; `seed` is also the render seed of the ground truth.

    Returns:
        `dict[str, str]`: `{"video": ..., "contact_sheet": ...}`, the paths.
    """
    os.makedirs(out_dir, exist_ok=True)
    truth = ground_truth_frames(script, num_frames, num_condition_frames, size=size, fps=fps, seed=seed)
    videos = {GROUND_TRUTH: truth}
    generated = run_variants(
        pipe,
        script,
        variants,
        seed=seed,
        num_frames=num_frames,
        num_condition_frames=num_condition_frames,
        steps=steps,
        size=size,
        **pipe_kwargs,
    )
    videos.update(generated)
    return {
        "video": write_side_by_side(videos, os.path.join(out_dir, "comparison.mp4"), fps=fps, upscale=upscale),
        "contact_sheet": write_contact_sheet(
            videos, os.path.join(out_dir, "comparison.png"), every_seconds=every_seconds, fps=fps, upscale=upscale
        ),
    }
