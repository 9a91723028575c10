# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""`LongVideoCall`: the arguments of one call of `LongVideoExtensionPipeline`, validated once and carried through."""

from __future__ import annotations

import numbers
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback

from ...extension import num_latent_frames
from ...validation import check_float, is_int, validate_image, validate_video


__all__ = ["LongVideoCall"]

# a str prompt with `num_clips` is expanded into a list: bounded, so that a typo cannot allocate gigabytes
_MAX_CLIPS = 1_000_000
_OUTPUT_TYPES = ("np", "pil", "pt", "latent")


@dataclass(frozen=True)
class LongVideoCall:
    r"""
    The arguments of one call of [`LongVideoExtensionPipeline`] (`__call__` or `generate_clips`), by keyword name;
    see [`~LongVideoExtensionPipeline.__call__`] for each of them.

    [`~LongVideoExtensionPipeline.check_inputs`] validates a call once, before any model work, and returns it
    normalised: `prompts` holds the per-clip prompts (`None` when `prompt` is an iterator, read as the video goes),
    numbers are Python ints, `kv_cache_clips` / `max_cached_clips` / `max_sequence_length` left `None` take the
    pipeline's values, and `callback_on_step_end_tensor_inputs` those of a `PipelineCallback`. The clip loop reads
    only the normalised call.
    """

    prompt: str | list[str] | Iterable[str] | None
    negative_prompt: str | list[str] | None
    num_clips: int | None
    image: Any
    video: Any
    height: int
    width: int
    num_frames: int
    num_condition_frames: int
    num_inference_steps: int
    guidance_scale: float
    num_videos_per_prompt: int
    generator: torch.Generator | list[torch.Generator] | None
    latents: torch.Tensor | None
    output_type: str
    attention_kwargs: dict[str, Any] | None
    callback_on_step_end: Callable[..., Any] | PipelineCallback | MultiPipelineCallbacks | None
    callback_on_step_end_tensor_inputs: list[str]
    callback_on_clip_end: Callable[..., Any] | None
    max_sequence_length: int | None
    kv_cache_clips: int | None
    max_cached_clips: int | None
    clip_selector: Any
    kv_cache_config: Any
    state_dir: str | os.PathLike | None
    resume: bool
    batch_cfg_branches: bool
    prompts: list[str] | None = None

    @classmethod
    def from_arguments(cls, arguments: dict[str, Any]) -> LongVideoCall:
        """The call of a pipeline method's keyword arguments (its `locals()`; other names are left out)."""
        return cls(**{f.name: arguments[f.name] for f in fields(cls) if f.name in arguments})

    @property
    def batch_size(self) -> int:
        return self.num_videos_per_prompt

    @property
    def num_clips_known(self) -> int | None:
        """Number of clips of the video (`None` when the prompts come from an iterator)."""
        return None if self.prompts is None else len(self.prompts)

    @property
    def total_frames(self) -> int:
        """Frames of the stitched video (a known number of clips): `F + (N - 1)(F - k)`."""
        return self.num_frames + (self.num_clips_known - 1) * (self.num_frames - self.num_condition_frames)

    def negative_prompt_of(self, clip_index: int) -> str:
        """The negative prompt of clip `clip_index` (`""` when none is given)."""
        negative = self.negative_prompt
        return (negative[clip_index] if isinstance(negative, (list, tuple)) else negative) or ""

    def checked(self, pipeline: Any, allow_prompt_iterator: bool = False) -> LongVideoCall:
        """Check the arguments (types and ranges), then against what `pipeline`'s models impose. Returns the call with
        `prompts` set and Python ints (what [`~LongVideoExtensionPipeline.check_inputs`] returns).

        Raises:
            `TypeError` / `ValueError`: naming the argument in backticks.
        """
        if not isinstance(self.batch_cfg_branches, bool):
            raise TypeError(f"`batch_cfg_branches` must be a bool, got {type(self.batch_cfg_branches).__name__}.")
        prompts = self._checked_prompts(allow_prompt_iterator)
        for name in ("height", "width", "num_frames"):
            value = getattr(self, name)
            if not is_int(value, allow_numpy=True) or value < 1:
                raise TypeError(f"`{name}` must be a positive int, got {value!r}.")
        if not is_int(self.num_condition_frames, allow_numpy=True):
            raise TypeError(f"`num_condition_frames` must be an int, got {self.num_condition_frames!r}.")
        if not is_int(self.num_inference_steps, allow_numpy=True) or self.num_inference_steps < 1:
            raise ValueError(f"`num_inference_steps` must be a positive int, got {self.num_inference_steps!r}.")
        guidance_scale = self.guidance_scale
        if isinstance(guidance_scale, bool) or not isinstance(guidance_scale, numbers.Real):
            raise TypeError(f"`guidance_scale` must be a float, got {type(guidance_scale).__name__}.")
        check_float("guidance_scale", guidance_scale)  # NaN would silently turn CFG off, inf give a NaN video
        if not is_int(self.num_videos_per_prompt, allow_numpy=True) or self.num_videos_per_prompt < 1:
            raise ValueError(f"`num_videos_per_prompt` must be a positive int, got {self.num_videos_per_prompt!r}.")
        if not is_int(self.max_sequence_length, allow_numpy=True) or self.max_sequence_length < 1:
            raise ValueError(f"`max_sequence_length` must be a positive int, got {self.max_sequence_length!r}.")
        self._check_media_and_callbacks()
        if not is_int(self.kv_cache_clips, allow_numpy=True) or self.kv_cache_clips < 0:
            raise ValueError(f"`kv_cache_clips` must be an int >= 0, got {self.kv_cache_clips!r}.")
        if self.max_cached_clips is not None and (
            not is_int(self.max_cached_clips, allow_numpy=True) or self.max_cached_clips < 0
        ):
            raise ValueError(f"`max_cached_clips` must be `None` or an int >= 0, got {self.max_cached_clips!r}.")
        if self.kv_cache_clips > 0 and self.max_cached_clips == 0:
            raise ValueError("`max_cached_clips` must be >= 1 (or `None`) when `kv_cache_clips` > 0.")
        if not isinstance(self.resume, bool):
            raise TypeError(f"`resume` must be a bool, got {type(self.resume).__name__}.")
        if self.state_dir is not None and not isinstance(self.state_dir, (str, os.PathLike)):
            raise TypeError(
                f"`state_dir` must be a str or an os.PathLike folder, got {type(self.state_dir).__name__}."
            )
        if self.resume and self.state_dir is None:
            raise ValueError("`resume=True` needs `state_dir`, the folder the interrupted run saved its state to.")
        # numpy ints are accepted above; the clip loop works with Python ints
        ints = ("height", "width", "num_frames", "num_condition_frames", "num_inference_steps")
        ints += ("num_videos_per_prompt", "max_sequence_length", "kv_cache_clips")
        max_cached_clips = None if self.max_cached_clips is None else int(self.max_cached_clips)
        as_ints = {name: int(getattr(self, name)) for name in ints}
        call = replace(self, prompts=prompts, max_cached_clips=max_cached_clips, **as_ints)
        call._check_against_models(pipeline)
        return call

    def _check_against_models(self, pipeline: Any) -> None:
        """What the pipeline's models impose: the tokenizer's length, the VAE's frame and pixel strides, the
        transformer's patch size and input channels, the first clip's `latents` shape."""
        limit = pipeline.max_sequence_length_limit
        if self.max_sequence_length > limit:
            raise ValueError(
                f"`max_sequence_length` must be <= {limit} (the tokenizer's limit, at most 512 without one), got "
                f"{self.max_sequence_length}."
            )
        num_frames, num_condition_frames = self.num_frames, self.num_condition_frames
        scale_t = pipeline.vae_scale_factor_temporal
        if (num_frames - 1) % scale_t != 0:
            raise ValueError(
                f"`num_frames` must be {scale_t}k+1 (e.g. {1 + 4 * scale_t}, 81), got {num_frames}; the causal VAE "
                "maps 1 + 4k pixel frames to 1 + k latent frames."
            )
        if num_condition_frames < 1 or (num_condition_frames - 1) % scale_t != 0:
            raise ValueError(
                f"`num_condition_frames` must be 1 + {scale_t}j (1, {1 + scale_t}, {1 + 2 * scale_t}, ...), "
                f"got {num_condition_frames}."
            )
        if num_condition_frames >= num_frames:
            raise ValueError(
                f"`num_condition_frames` ({num_condition_frames}) must be smaller than `num_frames` ({num_frames}): "
                "every clip must add new frames."
            )
        patch_size, scale_s = pipeline.transformer.config.patch_size, pipeline.vae_scale_factor_spatial
        h_multiple, w_multiple = scale_s * patch_size[1], scale_s * patch_size[2]
        if self.height % h_multiple != 0 or self.width % w_multiple != 0:
            raise ValueError(
                f"`height` and `width` must be divisible by {h_multiple} and {w_multiple} (VAE scale "
                f"{scale_s} x patch {tuple(patch_size[1:])}), got {self.height} and {self.width}."
            )
        latent_stride = num_latent_frames(num_frames, scale_t) - num_latent_frames(num_condition_frames, scale_t)
        if latent_stride % patch_size[0] != 0:
            raise ValueError(
                f"`num_frames` - `num_condition_frames` must advance a whole number of temporal patches "
                f"({patch_size[0]} latent frames), got {latent_stride} latent frames."
            )

        latents = self.latents
        if latents is not None:
            if not isinstance(latents, torch.Tensor):
                raise TypeError(f"`latents` must be a torch.Tensor, got {type(latents).__name__}.")
            z_dim, frames = pipeline.vae.config.z_dim, num_latent_frames(num_frames, scale_t)
            expected = (self.batch_size, z_dim, frames, self.height // scale_s, self.width // scale_s)
            if tuple(latents.shape) != expected:
                raise ValueError(
                    f"`latents` (the first clip's noise) must have shape {expected}, got {tuple(latents.shape)}."
                )
            if not latents.dtype.is_floating_point:
                raise TypeError(f"`latents` must be a floating-point tensor, got {latents.dtype}.")
            if not bool(torch.isfinite(latents).all()):
                raise ValueError("`latents` holds NaN or infinite values.")

        tensor_inputs = self.callback_on_step_end_tensor_inputs
        if tensor_inputs is not None and not all(k in pipeline._callback_tensor_inputs for k in tensor_inputs):
            raise ValueError(
                f"`callback_on_step_end_tensor_inputs` has to be in {pipeline._callback_tensor_inputs}, but found "
                f"{[k for k in tensor_inputs if k not in pipeline._callback_tensor_inputs]}"
            )

        in_channels, z_dim = pipeline.transformer.config.in_channels, pipeline.vae.config.z_dim
        if in_channels not in (z_dim, 2 * z_dim + scale_t):
            raise ValueError(
                f"`transformer.config.in_channels` must be {z_dim} (T2V, replacement conditioning) or "
                f"{2 * z_dim + scale_t} (extension model), got {in_channels}."
            )

    def _checked_prompts(self, allow_prompt_iterator: bool) -> list[str] | None:
        """The per-clip prompts: a str is repeated `num_clips` times, a list is one prompt per clip."""
        prompt, num_clips, negative_prompt = self.prompt, self.num_clips, self.negative_prompt
        prompts: list[str] | None
        if num_clips is not None and (not is_int(num_clips, allow_numpy=True) or not 1 <= num_clips <= _MAX_CLIPS):
            raise ValueError(
                f"`num_clips` must be an int in [1, {_MAX_CLIPS}] (an iterator of prompts has no limit), got "
                f"{num_clips!r}."
            )
        if isinstance(prompt, str):
            prompts = [prompt] * (int(num_clips) if num_clips is not None else 1)
        elif isinstance(prompt, (list, tuple)):
            if len(prompt) == 0:
                raise ValueError("`prompt` is an empty list: pass one prompt per clip (at least one).")
            bad = [type(p).__name__ for p in prompt if not isinstance(p, str)]
            if bad:
                raise TypeError(
                    f"`prompt` must be a str or a list of str (one per clip), got a list holding {bad[0]}."
                )
            if num_clips is not None and num_clips != len(prompt):
                raise ValueError(
                    f"`num_clips={num_clips}` disagrees with `prompt`, a list of {len(prompt)} prompts (one per "
                    "clip). Pass `num_clips=None` with a list, or a single str prompt with `num_clips`."
                )
            prompts = list(prompt)
        elif allow_prompt_iterator and isinstance(prompt, Iterable) and not isinstance(prompt, (bytes, dict)):
            if num_clips is not None:
                raise ValueError(
                    "`num_clips` must be `None` when `prompt` is an iterator (the iterator sets the length)."
                )
            prompts = None
        elif prompt is None:
            raise ValueError("`prompt` is required: a str (with `num_clips`) or a list of str, one per clip.")
        else:
            accepted = "a str, a list of str" + (" or an iterable of str" if allow_prompt_iterator else "")
            raise TypeError(f"`prompt` must be {accepted}, got {type(prompt).__name__}.")

        if isinstance(negative_prompt, (list, tuple)):
            if prompts is None:
                raise ValueError("`negative_prompt` must be a str when `prompt` is an iterator.")
            if not all(isinstance(p, str) for p in negative_prompt):
                raise TypeError("`negative_prompt` must be a str or a list of str (one per clip).")
            if len(negative_prompt) != len(prompts):
                raise ValueError(
                    f"`negative_prompt` is a list of {len(negative_prompt)} but there are {len(prompts)} clips; "
                    "pass one str for all clips or one per clip."
                )
        elif negative_prompt is not None and not isinstance(negative_prompt, str):
            raise TypeError(f"`negative_prompt` must be a str or a list of str, got {type(negative_prompt).__name__}.")
        return prompts

    def _check_media_and_callbacks(self) -> None:
        if self.image is not None and self.video is not None:
            raise ValueError("Pass either `image` (image-to-long-video) or `video` (video continuation), not both.")
        # the one validation layer for media (`diffusers_longvid.validation`): layout, dtype rule, range, NaN
        if self.image is not None:
            validate_image(self.image, "image")
        if self.video is not None:
            validate_video(self.video, "video", num_last_frames=self.num_condition_frames)

        if self.output_type not in _OUTPUT_TYPES:
            raise ValueError(f"`output_type` must be one of {list(_OUTPUT_TYPES)}, got {self.output_type!r}.")

        generator, batch_size = self.generator, int(self.num_videos_per_prompt)
        if isinstance(generator, list):
            bad = [type(g).__name__ for g in generator if not isinstance(g, torch.Generator)]
            if bad:
                raise TypeError(
                    f"`generator` must be a torch.Generator or a list of them, got a list holding {bad[0]}."
                )
            if len(generator) != batch_size:
                raise ValueError(
                    f"`generator` is a list of {len(generator)} generators but the batch size "
                    f"(`num_videos_per_prompt`) is {batch_size}."
                )
        elif generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(
                f"`generator` must be a torch.Generator or a list of them, got {type(generator).__name__}."
            )

        if self.callback_on_step_end is not None and not callable(self.callback_on_step_end):
            raise TypeError("`callback_on_step_end` must be callable.")
        tensor_inputs = self.callback_on_step_end_tensor_inputs
        if tensor_inputs is not None and (
            not isinstance(tensor_inputs, (list, tuple)) or not all(isinstance(k, str) for k in tensor_inputs)
        ):
            raise TypeError(
                "`callback_on_step_end_tensor_inputs` must be a list of tensor names, got "
                f"{type(tensor_inputs).__name__}."
            )
        if self.callback_on_clip_end is not None and not callable(self.callback_on_clip_end):
            raise TypeError(
                "`callback_on_clip_end` must be callable: `callback_on_clip_end(pipe, clip_index, frames, info)`."
            )
