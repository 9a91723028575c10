"""Shared helpers of the KV-cache tests: tiny transformer inputs, a forward at a RoPE offset, one recorded clip
(the `transformer` fixture: tests/attention/conftest.py)."""

from __future__ import annotations

import torch

from diffusers_longvid.attention import (
    CFGBranch,
    disable_cross_clip_kv_cache,
    enable_cross_clip_kv_cache,
    rope_frame_offset,
)


FRAMES, HEIGHT, WIDTH = 3, 8, 8  # latent size; patched grid (3, 4, 4) -> 48 tokens
TOKENS_PER_FRAME = (HEIGHT // 2) * (WIDTH // 2)


def make_inputs(seed: int, batch: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "hidden_states": torch.randn(batch, 16, FRAMES, HEIGHT, WIDTH, generator=g),
        "timestep": torch.tensor([500] * batch),
        "encoder_hidden_states": torch.randn(batch, 8, 32, generator=g),
    }


def run(transformer, inputs, offset: int = 0) -> torch.Tensor:
    with rope_frame_offset(transformer, offset):
        return transformer(**inputs).sample


def record_clip(transformer, cache, inputs, clip_id: int, offset: int, branch: CFGBranch = CFGBranch.COND) -> None:
    with cache.branch(branch), cache.recording():
        run(transformer, inputs, offset)
    cache.commit(clip_id)


def three_clips(transformer, config) -> list[torch.Tensor]:
    """Outputs of a 3-clip sequence (clip 2 attends clips 0 and 1), both CFG branches recorded."""
    cache = enable_cross_clip_kv_cache(transformer, config)
    outputs = []
    for clip in range(3):
        cache.select(cache.stored_clips())
        for branch in (CFGBranch.COND, CFGBranch.UNCOND):
            with cache.branch(branch):
                outputs.append(run(transformer, make_inputs(10 + clip), offset=3 * clip))
        with cache.recording():
            for branch in (CFGBranch.COND, CFGBranch.UNCOND):
                with cache.branch(branch):
                    run(transformer, make_inputs(clip), offset=3 * clip)
        cache.commit(clip)
    disable_cross_clip_kv_cache(transformer)
    return outputs
