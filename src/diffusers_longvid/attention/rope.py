# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""RoPE temporal extrapolation for Wan (DESIGN §3).

Clip `n` of a long video sits at global latent-frame positions `offset_n + l`. `OffsetWanRotaryPosEmbed` is a
drop-in replacement for diffusers' `WanRotaryPosEmbed` whose temporal positions start at `frame_offset` instead of 0.

Policy past `rope_max_seq_len`: the stock module pre-computes a table of `rope_max_seq_len` positions and silently
breaks past it. This module computes the rotation angles on the fly in float64 from the integer positions, so any
offset works (infinite length) and every position is exact — no re-basing, no wrap-around. At offset 0 and within
the table it reproduces the stock table exactly (same frequencies, same interleaving).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


__all__ = ["OffsetWanRotaryPosEmbed", "disable_rope_offset", "enable_rope_offset", "rope_frame_offset"]


def _rope_angles(dim: int, positions: torch.Tensor, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    # Same frequencies as `get_1d_rotary_pos_embed(dim, ..., use_real=True, repeat_interleave_real=True)`.
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float64, device=positions.device)[: dim // 2] / dim))
    angles = torch.outer(positions.to(torch.float64), freqs)
    cos = angles.cos().repeat_interleave(2, dim=1)
    sin = angles.sin().repeat_interleave(2, dim=1)
    return cos.float(), sin.float()


class OffsetWanRotaryPosEmbed(nn.Module):
    r"""
    Wan's 3D rotary embedding with a temporal frame offset, computed on the fly for any position.

    Args:
        attention_head_dim (`int`): Channels per attention head.
        patch_size (`tuple[int, int, int]`): The transformer's `(t, h, w)` patch size.
        max_seq_len (`int`): The stock table size (`rope_max_seq_len`); kept for reference, not a limit here.
        theta (`float`, *optional*, defaults to 10000.0): RoPE base.

    Attributes:
        frame_offset (`int`): Global index (in patched latent frames) of the first frame of the current input.
    """

    def __init__(
        self, attention_head_dim: int, patch_size: tuple[int, int, int], max_seq_len: int, theta: float = 10000.0
    ) -> None:
        super().__init__()
        self.attention_head_dim = attention_head_dim
        self.patch_size = tuple(patch_size)
        self.max_seq_len = max_seq_len
        self.theta = theta
        self.h_dim = self.w_dim = 2 * (attention_head_dim // 6)
        self.t_dim = attention_head_dim - self.h_dim - self.w_dim
        self.frame_offset: int = 0

    @classmethod
    def from_stock(cls, rope: nn.Module) -> OffsetWanRotaryPosEmbed:
        """Build from a diffusers `WanRotaryPosEmbed` (same head dim, patch size and table size)."""
        return cls(rope.attention_head_dim, rope.patch_size, rope.max_seq_len)

    def positions_freqs(
        self, frame_positions: torch.Tensor, height: int, width: int, device: torch.device | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotary `(cos, sin)` of shape `(1, F*H*W, 1, head_dim)` for arbitrary temporal positions.

        Args:
            frame_positions (`torch.Tensor` of shape `(F,)`): Integer global temporal positions (patched frames).
            height (`int`), width (`int`): Patched spatial size.
        """
        device = device if device is not None else frame_positions.device
        frame_positions = frame_positions.to(device)
        num_frames = frame_positions.shape[0]
        cos_t, sin_t = _rope_angles(self.t_dim, frame_positions, self.theta)
        cos_h, sin_h = _rope_angles(self.h_dim, torch.arange(height, device=device), self.theta)
        cos_w, sin_w = _rope_angles(self.w_dim, torch.arange(width, device=device), self.theta)

        def grid(t: torch.Tensor, h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            t = t.view(num_frames, 1, 1, -1).expand(num_frames, height, width, -1)
            h = h.view(1, height, 1, -1).expand(num_frames, height, width, -1)
            w = w.view(1, 1, width, -1).expand(num_frames, height, width, -1)
            return torch.cat([t, h, w], dim=-1).reshape(1, num_frames * height * width, 1, -1)

        return grid(cos_t, cos_h, cos_w), grid(sin_t, sin_h, sin_w)

    # Not compiled: `frame_offset` changes every clip, and a compiled forward would recompile for each new value.
    @torch.compiler.disable
    def forward(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, _, num_frames, height, width = hidden_states.shape
        p_t, p_h, p_w = self.patch_size
        ppf, pph, ppw = num_frames // p_t, height // p_h, width // p_w
        positions = torch.arange(self.frame_offset, self.frame_offset + ppf, device=hidden_states.device)
        return self.positions_freqs(positions, pph, ppw, device=hidden_states.device)


def enable_rope_offset(transformer: nn.Module) -> OffsetWanRotaryPosEmbed:
    """Swap `transformer.rope` for an `OffsetWanRotaryPosEmbed` (idempotent; no diffusers file is edited).

    The replaced module is kept and put back by [`disable_rope_offset`] (which `disable_cross_clip_kv_cache`, and so
    `ClipMemory.close()`, call, and `LongVideoExtensionPipeline` at the end of every generation). The rope module holds no weights (its stock table is a non-persistent buffer), so
    `save_pretrained` / `from_pretrained` are unaffected.
    """
    rope = transformer.rope
    if isinstance(rope, OffsetWanRotaryPosEmbed):
        return rope
    new_rope = OffsetWanRotaryPosEmbed.from_stock(rope)
    # a plain attribute, not a submodule: the stock module stays out of `modules()` / `state_dict()`
    object.__setattr__(new_rope, "_replaced_rope", rope)
    transformer.rope = new_rope
    return new_rope


def disable_rope_offset(transformer: nn.Module) -> None:
    """Undo [`enable_rope_offset`]: put back the rotary embedding it replaced. No-op when none is installed."""
    rope = getattr(transformer, "rope", None)
    if not isinstance(rope, OffsetWanRotaryPosEmbed):
        return
    stock = getattr(rope, "_replaced_rope", None)
    if stock is None:  # e.g. an `OffsetWanRotaryPosEmbed` set by hand: rebuild diffusers' own
        from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed

        stock = WanRotaryPosEmbed(rope.attention_head_dim, rope.patch_size, rope.max_seq_len, rope.theta)
    # the kept module was not a submodule while replaced: it follows the transformer's `.to(device)` only now
    parameter = next(transformer.parameters(), None)
    if parameter is not None:
        stock = stock.to(parameter.device)
    transformer.rope = stock


@contextmanager
def rope_frame_offset(transformer: nn.Module, offset: int) -> Iterator[None]:
    """Run forwards of `transformer` with temporal RoPE positions starting at `offset` (installs the module)."""
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValueError(f"`offset` must be a non-negative int, got {offset!r}.")
    rope = enable_rope_offset(transformer)
    previous = rope.frame_offset
    rope.frame_offset = offset
    try:
        yield
    finally:
        rope.frame_offset = previous
