"""Shared helpers of the KV-cache tests: tiny transformer inputs, a forward at a RoPE offset, one recorded clip
(the `transformer` fixture: tests/attention/conftest.py)."""

from __future__ import annotations

import torch

from diffusers_longvid.attention import CFGBranch, rope_frame_offset


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
