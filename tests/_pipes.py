"""Shared helpers of the pipeline tests: a tiny random `LongVideoExtensionPipeline` and the call arguments of a
16x16, 9-frame, 2-step clip (fixtures built on them: tests/pipelines/conftest.py)."""

from __future__ import annotations

from typing import Any

import torch

from diffusers_longvid import LongVideoExtensionPipeline
from diffusers_longvid.testing import get_dummy_components


F, H, W = 9, 16, 16  # 9 frames = 3 latent frames of 2x2


def make_pipe(in_channels: int = 36, components: dict[str, Any] | None = None, **config: Any):
    """A tiny random pipeline; `components` go to `get_dummy_components` (transformer sizes), `config` to the
    pipeline (`kv_cache_clips` defaults to 0), progress bars off."""
    config = {"kv_cache_clips": 0, **config}
    pipe = LongVideoExtensionPipeline(**get_dummy_components(in_channels=in_channels, **(components or {})), **config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def call_kwargs(seed: int = 0, **overrides: Any) -> dict[str, Any]:
    """Call arguments of a 16x16, 9-frame, 2-step clip with CFG, a fresh CPU generator seeded `seed`."""
    kwargs = dict(
        height=H,
        width=W,
        num_frames=F,
        num_condition_frames=1,
        num_inference_steps=2,
        guidance_scale=5.0,
        max_sequence_length=16,
        generator=torch.Generator().manual_seed(seed),
    )
    kwargs.update(overrides)
    return kwargs
