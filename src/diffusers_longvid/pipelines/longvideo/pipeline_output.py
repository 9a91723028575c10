# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers.utils import BaseOutput


__all__ = ["LongVideoClip", "LongVideoPipelineOutput"]


@dataclass
class LongVideoPipelineOutput(BaseOutput):
    r"""
    Output class of [`LongVideoExtensionPipeline`].

    Args:
        frames (`np.ndarray`, `torch.Tensor`, `list[list[PIL.Image.Image]]` or `list[torch.Tensor]`):
            The stitched long video, `F + (N - 1)(F - k)` frames for `N` clips of `F` frames with `k` condition frames.
            `np.ndarray` of shape `(batch, frames, height, width, 3)` (`output_type="np"`, float in [0, 1]),
            `torch.Tensor` of shape `(batch, frames, 3, height, width)` (`"pt"`), a list (one per video) of lists of
            PIL images (`"pil"`), or, for `output_type="latent"`, the list of the `N` per-clip latents (each
            `(batch, 16, latent_frames, h, w)`, on the CPU). Per-clip latents are not stitched: each is decodable on
            its own with the causal VAE, a concatenation is not.
        clip_frame_ranges (`list[tuple[int, int]]`):
            For each clip, the `[start, end)` range of stitched frames it contributed (clip 0 all its frames, the
            others all but their first `k` condition frames).
        kv_plan (`list[dict]`):
            One dict per clip: `{"clip", "prompt", "attends", "stored", "evicted"}` — which history clips its
            generation attended through the cross-clip KV cache, whether its K/V were stored, what was evicted.
            Empty `attends` everywhere when the KV cache is off.
        prompts (`list[str]`): The prompt of each clip.
        clip_seconds (`list[float]`): Wall-clock seconds spent on each clip (denoising and decoding).
    """

    frames: np.ndarray | torch.Tensor | list[list[PIL.Image.Image]] | list[torch.Tensor]
    clip_frame_ranges: list[tuple[int, int]] = field(default_factory=list)
    kv_plan: list[dict[str, Any]] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)
    clip_seconds: list[float] = field(default_factory=list)

    @classmethod
    def from_clips(
        cls, clips: Iterable[LongVideoClip], output_type: str, num_videos: int, total_frames: int
    ) -> LongVideoPipelineOutput:
        r"""
        Stitch the clips of a video, as they come, into one output.

        Args:
            clips (`Iterable[LongVideoClip]`): The clips in order (consumed one at a time).
            output_type (`str`): Their `output_type` (`"np"`, `"pt"`, `"pil"` or `"latent"`).
            num_videos (`int`): The batch size (`num_videos_per_prompt`).
            total_frames (`int`):
                Frames of the whole video: `"np"` / `"pt"` frames are written into one buffer of this length,
                allocated once, so that stitching never holds two copies of the video; an interrupted video is cut
                to the frames it has.
        """
        stitched = None
        pil_videos: list[list[PIL.Image.Image]] = [[] for _ in range(num_videos)]
        latents_per_clip: list[torch.Tensor] = []
        ranges: list[tuple[int, int]] = []
        prompts: list[str] = []
        seconds: list[float] = []
        kv_plan: list[dict[str, Any]] = []
        for clip in clips:
            start, end = clip.frame_range
            if output_type == "latent":
                latents_per_clip.append(clip.frames)
            elif output_type == "pil":
                for video_frames, new_frames in zip(pil_videos, clip.frames):
                    video_frames.extend(new_frames)
            else:
                if stitched is None:
                    shape = (clip.frames.shape[0], total_frames, *clip.frames.shape[2:])
                    if output_type == "np":
                        stitched = np.empty(shape, dtype=clip.frames.dtype)
                    else:
                        stitched = torch.empty(shape, dtype=clip.frames.dtype)
                stitched[:, start:end] = clip.frames
            ranges.append((start, end))
            prompts.append(clip.prompt)
            seconds.append(clip.seconds)
            kv_plan = clip.kv_plan

        if output_type == "latent":
            frames = latents_per_clip
        elif output_type == "pil":
            frames = pil_videos
        else:
            frames = stitched[:, : ranges[-1][1]]  # shorter only if interrupted
        return cls(frames=frames, clip_frame_ranges=ranges, kv_plan=kv_plan, prompts=prompts, clip_seconds=seconds)


@dataclass
class LongVideoClip(BaseOutput):
    r"""
    One finished clip, as yielded by [`LongVideoExtensionPipeline.generate_clips`].

    Args:
        clip_index (`int`): 0-based index of the clip.
        prompt (`str`): Its prompt.
        frames (`np.ndarray`, `torch.Tensor`, `list[list[PIL.Image.Image]]`):
            The frames this clip adds to the long video (its condition frames dropped for clips after the first), in
            the requested `output_type`: `(batch, frames, height, width, 3)` for `"np"`, `(batch, frames, 3, height,
            width)` for `"pt"`, a list of lists of PIL images for `"pil"`, and the clip's latents for `"latent"`.
        frame_range (`tuple[int, int]`): `[start, end)` of these frames in the stitched video.
        latents (`torch.Tensor`): The clip's final (normalised) latents, `(batch, 16, latent_frames, h, w)`, on CPU.
        latent_offset (`int`): Global latent index of the clip's first latent frame (its RoPE temporal offset).
        num_condition_frames (`int`): Pixel frames of the clip that were given (and dropped from `frames` for n > 0).
        attends (`list[int]`): History clips attended through the cross-clip KV cache (empty when it is off).
        seconds (`float`): Wall-clock seconds spent on the clip.
        kv_plan (`list[dict]`): The KV storage plan summary of all clips so far (see [`LongVideoPipelineOutput`]).
    """

    clip_index: int
    prompt: str
    frames: np.ndarray | torch.Tensor | list[list[PIL.Image.Image]]
    frame_range: tuple[int, int]
    latents: torch.Tensor
    latent_offset: int
    num_condition_frames: int
    attends: list[int] = field(default_factory=list)
    seconds: float = 0.0
    kv_plan: list[dict[str, Any]] = field(default_factory=list)

    @property
    def info(self) -> dict[str, Any]:
        """JSON-serialisable summary (what `callback_on_clip_end` receives as `info`)."""
        return {
            "clip": self.clip_index,
            "prompt": self.prompt,
            "frame_range": list(self.frame_range),
            "latent_offset": self.latent_offset,
            "num_condition_frames": self.num_condition_frames,
            "attends": list(self.attends),
            "seconds": self.seconds,
        }
