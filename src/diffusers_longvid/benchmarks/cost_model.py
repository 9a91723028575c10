# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""Analytic cost model of a Wan2.1 transformer with the cross-clip KV cache (issue 7, part 2).

Everything here is arithmetic on shapes: no torch, no weights. It counts what one `WanTransformer3DModel` forward
(diffusers 0.42, text-to-video, no image cross-attention) does, block by block, and what the KV cache adds.

Conventions:

- **FLOPs are matmul FLOPs**, a multiply-add counted as 2 FLOPs (so a `(m, k) @ (k, n)` product costs `2·m·k·n`).
  Every `nn.Linear`, the patch-embedding `Conv3d` (a matmul over patches) and both products of attention
  (`Q·Kᵀ` and `P·V`) are counted. Bias adds, RMS/LayerNorms, RoPE, GELU, softmax, the AdaLN modulation and the
  residual adds are not: they cost O(tokens·dim) per op against O(tokens·dim²) for a projection, and softmax costs
  a few FLOPs per score against `4·head_dim` (= 512 for Wan) matmul FLOPs per score. This is the convention of
  `torch.utils.flop_counter.FlopCounterMode`, and the tests check the count against it exactly.
- One **forward** is one transformer call on one sample (batch 1). A **denoising step** with classifier-free
  guidance is two forwards (the cond and the uncond branch), as `WanPipeline` runs them; `cfg=False` is one.
- Attention of `n_q` queries over `n_k` keys of width `dim = heads·head_dim` costs `2·n_q·n_k·dim` for `Q·Kᵀ`
  plus the same for `P·V`: `4·n_q·n_k·dim`. With `k` history clips of `M` tokens each, a cached block's
  self-attention sees `k·M` extra keys, so the **extra** history cost is `4·N·k·M·dim` per cached block:
  linear in `k`, and the only term that depends on `k`.
- **K/V bytes**: per history clip, per cached block and per CFG branch, K and V of shape `(M, dim)` each:
  `2·M·dim·dtype_bytes`.
- **Lower-bound time** (roofline): `max(FLOPs / peak, bytes / bandwidth)` over a whole clip, where the bytes are
  the compulsory traffic only: the weights read once per forward, the history K/V read once per forward that
  attends to them, and the recorded K/V written once. Activations, which a fused kernel keeps on chip only in part,
  are left out, so the real time is above this bound (how far above is what `examples/benchmarks/gpu_wan13b.py`
  measures).
- **Recording**: by default one extra forward per CFG branch per clip at timestep 0 on the finished clip's clean
  latent (DESIGN §3), assumed not to attend to history (its K/V do not depend on the selection);
  `recording_forward=False` models recording during the last denoising step instead (no extra forward).

Regenerate the tables of `docs/performance.md` with:

    longvid cost-model --markdown
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any


__all__ = [
    "COMPRESSED_HISTORY_OPTIONS",
    "ClipCost",
    "FlopBreakdown",
    "KVCacheBytes",
    "VideoShape",
    "WanShape",
    "compressed_history_table",
    "cost_table",
    "flop_breakdown_table",
    "flops_per_clip",
    "flops_per_forward",
    "flops_per_step",
    "kv_bytes_per_history_clip",
    "lower_bound_time_per_clip",
    "markdown_report",
    "markdown_table",
    "pooled_tokens_per_clip",
    "predicted_history_overhead_ratio",
    "recording_forward_flops",
    "selected_tokens_per_clip",
    "tokens_per_clip",
    "wan21_t2v_1_3b",
]

H200_PEAK_TFLOPS = 790.0
H200_BANDWIDTH_TBPS = 4.3


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")


@dataclass(frozen=True)
class WanShape:
    r"""
    The shapes of a Wan2.1 text-to-video `WanTransformer3DModel` that its cost depends on.

    Args:
        dim (`int`): Hidden width, `heads * head_dim` (diffusers' `inner_dim`).
        heads (`int`): Attention heads (`num_attention_heads`).
        head_dim (`int`): Channels per head (`attention_head_dim`).
        ffn_dim (`int`): Inner width of the feed-forward network.
        num_layers (`int`): Number of transformer blocks.
        text_dim (`int`): Width of the text encoder's output (4096 for UMT5-XXL), projected to `dim` by the
            condition embedder.
        text_len (`int`, *optional*, defaults to 512): Text tokens per prompt (Wan pads prompts to 512).
        patch_size (`tuple[int, int, int]`, *optional*, defaults to `(1, 2, 2)`): `(t, h, w)` patch of the embedding.
        in_channels (`int`, *optional*, defaults to 16): Input latent channels (36 for the extension model).
        out_channels (`int`, *optional*, defaults to 16): Output channels.
        freq_dim (`int`, *optional*, defaults to 256): Width of the sinusoidal timestep embedding.
        cross_attn_norm (`bool`, *optional*, defaults to `True`): Whether blocks have an affine norm before
            cross-attention (it changes the parameter count only).
    """

    dim: int
    heads: int
    head_dim: int
    ffn_dim: int
    num_layers: int
    text_dim: int
    text_len: int = 512
    patch_size: tuple[int, int, int] = (1, 2, 2)
    in_channels: int = 16
    out_channels: int = 16
    freq_dim: int = 256
    cross_attn_norm: bool = True

    def __post_init__(self) -> None:
        for field in (
            "dim",
            "heads",
            "head_dim",
            "ffn_dim",
            "num_layers",
            "text_dim",
            "text_len",
            "in_channels",
            "out_channels",
            "freq_dim",
        ):
            _check_positive_int(field, getattr(self, field))
        if self.dim != self.heads * self.head_dim:
            raise ValueError(
                f"`dim` must equal `heads * head_dim` ({self.heads} * {self.head_dim} = {self.heads * self.head_dim}),"
                f" got {self.dim}."
            )
        patch = tuple(self.patch_size)
        if len(patch) != 3 or any(isinstance(p, bool) or not isinstance(p, int) or p <= 0 for p in patch):
            raise ValueError(f"`patch_size` must be three positive integers `(t, h, w)`, got {self.patch_size!r}.")
        object.__setattr__(self, "patch_size", patch)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], text_len: int = 512) -> WanShape:
        r"""
        The shape of a `WanTransformer3DModel` from its config (`transformer.config` or a `config.json` dict).

        Args:
            config (`Mapping[str, Any]`): The transformer's config.
            text_len (`int`, *optional*, defaults to 512): Text tokens per prompt (not part of the config).

        Raises:
            `ValueError`: for an image-conditioned config (`image_dim` / `added_kv_proj_dim` set), whose extra
            image cross-attention this model does not count.
        """
        if config.get("image_dim") is not None or config.get("added_kv_proj_dim") is not None:
            raise ValueError(
                "`config` has `image_dim`/`added_kv_proj_dim` set (Wan I2V image cross-attention), which the cost "
                "model does not count; only text-conditioned Wan2.1 transformers are supported."
            )
        heads = int(config.get("num_attention_heads", 40))
        head_dim = int(config.get("attention_head_dim", 128))
        in_channels = int(config.get("in_channels", 16))
        return cls(
            dim=heads * head_dim,
            heads=heads,
            head_dim=head_dim,
            ffn_dim=int(config.get("ffn_dim", 13824)),
            num_layers=int(config.get("num_layers", 40)),
            text_dim=int(config.get("text_dim", 4096)),
            text_len=text_len,
            patch_size=tuple(int(p) for p in config.get("patch_size", (1, 2, 2))),
            in_channels=in_channels,
            out_channels=int(config.get("out_channels") or in_channels),
            freq_dim=int(config.get("freq_dim", 256)),
            cross_attn_norm=bool(config.get("cross_attn_norm", True)),
        )

    @property
    def default_cached_blocks(self) -> tuple[int, ...]:
        """The blocks holding the KV cache by default: the latter half, `blocks[num_layers // 2:]` (DESIGN §3)."""
        return tuple(range(self.num_layers // 2, self.num_layers))

    def num_parameters(self) -> int:
        """Parameters of the matching `WanTransformer3DModel` (biases, norms and modulation tables included)."""
        d, f, patch = self.dim, self.ffn_dim, math.prod(self.patch_size)
        attention = 4 * (d * d + d) + 2 * d  # q, k, v, out (+ biases) and the norm_q / norm_k weights
        block = 2 * attention + d * f + f + f * d + d + 6 * d  # attn1, attn2, ffn, scale_shift_table
        if self.cross_attn_norm:
            block += 2 * d  # affine norm2
        patch_embedding = self.in_channels * patch * d + d
        time_embedder = (self.freq_dim * d + d) + (d * d + d)
        time_proj = d * 6 * d + 6 * d
        text_embedder = (self.text_dim * d + d) + (d * d + d)
        proj_out = d * self.out_channels * patch + self.out_channels * patch
        head = 2 * d  # final scale_shift_table
        return self.num_layers * block + patch_embedding + time_embedder + time_proj + text_embedder + proj_out + head


def wan21_t2v_1_3b(in_channels: int = 16) -> WanShape:
    r"""
    The shape of Wan2.1-T2V-1.3B (`Wan-AI/Wan2.1-T2V-1.3B-Diffusers`, transformer 1,418,996,800 parameters).

    Source: the `"Wan-T2V-1.3B"` entry of diffusers' `scripts/convert_wan_to_diffusers.py` (the script that made the
    Diffusers checkpoint): 12 heads of 128, ffn 8960, 30 layers, text_dim 4096, freq_dim 256, patch (1, 2, 2),
    16 in / 16 out channels, `cross_attn_norm=True`; it matches the original Wan `t2v_1.3b` config (dim 1536,
    text_len 512).

    Args:
        in_channels (`int`, *optional*, defaults to 16): 16 for the stock T2V model, 36 for the extension model
            (noisy latent, mask and condition latent, DESIGN §2).
    """
    return WanShape(
        dim=1536,
        heads=12,
        head_dim=128,
        ffn_dim=8960,
        num_layers=30,
        text_dim=4096,
        text_len=512,
        patch_size=(1, 2, 2),
        in_channels=in_channels,
        out_channels=16,
        freq_dim=256,
        cross_attn_norm=True,
    )


@dataclass(frozen=True)
class VideoShape:
    r"""
    A clip in pixel space and the VAE factors that map it to latents.

    Args:
        height (`int`): Pixel height (480 for Wan 480p).
        width (`int`): Pixel width (832 for Wan 480p).
        frames (`int`): Pixel frames per clip; `frames - 1` must be divisible by `vae_scale_factor_temporal`
            (81 for a 5 s Wan clip).
        vae_scale_factor_spatial (`int`, *optional*, defaults to 8): Spatial downsampling of the VAE.
        vae_scale_factor_temporal (`int`, *optional*, defaults to 4): Temporal downsampling of the causal VAE.
    """

    height: int
    width: int
    frames: int
    vae_scale_factor_spatial: int = 8
    vae_scale_factor_temporal: int = 4

    def __post_init__(self) -> None:
        for field in ("height", "width", "frames", "vae_scale_factor_spatial", "vae_scale_factor_temporal"):
            _check_positive_int(field, getattr(self, field))
        if self.height % self.vae_scale_factor_spatial or self.width % self.vae_scale_factor_spatial:
            raise ValueError(
                f"`height` and `width` must be divisible by `vae_scale_factor_spatial` "
                f"({self.vae_scale_factor_spatial}), got {self.height}x{self.width}."
            )
        if (self.frames - 1) % self.vae_scale_factor_temporal:
            raise ValueError(
                f"`frames - 1` must be divisible by `vae_scale_factor_temporal` ({self.vae_scale_factor_temporal}), "
                f"got frames={self.frames}."
            )

    @property
    def latent_frames(self) -> int:
        return (self.frames - 1) // self.vae_scale_factor_temporal + 1

    @property
    def latent_height(self) -> int:
        return self.height // self.vae_scale_factor_spatial

    @property
    def latent_width(self) -> int:
        return self.width // self.vae_scale_factor_spatial


def tokens_per_clip(shape: WanShape, video: VideoShape) -> int:
    r"""
    Video tokens of one clip: `(latent_frames / p_t) · (latent_height / p_h) · (latent_width / p_w)`.

    For Wan2.1 at 832x480 and 81 frames: 21 · 30 · 52 = 32760.

    Raises:
        `ValueError`: if the latent size is not divisible by `shape.patch_size`.
    """
    latent = (video.latent_frames, video.latent_height, video.latent_width)
    if any(size % p for size, p in zip(latent, shape.patch_size)):
        raise ValueError(
            f"The latent size (frames, height, width) = {latent} of `video` must be divisible by `patch_size` "
            f"{shape.patch_size}."
        )
    return math.prod(size // p for size, p in zip(latent, shape.patch_size))


def pooled_tokens_per_clip(shape: WanShape, video: VideoShape, history_pool: Sequence[int] = (1, 1, 1)) -> int:
    r"""
    Tokens `M` a history clip keeps with compressed history (`CrossClipKVCacheConfig(history_pool=(t, h, w))`):
    `ceil(F/t) · ceil(H/h) · ceil(W/w)` over the patched grid `(F, H, W)` of `tokens_per_clip` (partial windows at the
    edges are kept). Pass it as `history_tokens_per_clip` to the other functions.

    For Wan2.1 at 832x480 and 81 frames (grid 21 × 30 × 52) and `(2, 2, 2)`: 11 · 15 · 26 = 4290.

    Args:
        shape (`WanShape`), video (`VideoShape`): The transformer and the clip.
        history_pool (`Sequence[int]`, *optional*, defaults to `(1, 1, 1)`): Window in patched tokens `(t, h, w)`.
    """
    pool = tuple(history_pool)
    if len(pool) != 3:
        raise ValueError(f"`history_pool` must be three positive integers `(t, h, w)`, got {history_pool!r}.")
    for p in pool:
        _check_positive_int("history_pool", p)
    tokens_per_clip(shape, video)  # validates divisibility by the patch
    grid = (
        video.latent_frames // shape.patch_size[0],
        video.latent_height // shape.patch_size[1],
        video.latent_width // shape.patch_size[2],
    )
    return math.prod(-(-size // p) for size, p in zip(grid, pool))


def selected_tokens_per_clip(shape: WanShape, video: VideoShape, keep_ratio: float = 1.0) -> int:
    r"""
    Tokens `M` a history clip keeps with token selection (`CrossClipKVCacheConfig(history_keep_ratio=r)`):
    `ceil(r · tokens_per_clip)`, the product rounded to 9 decimals first, at least 1 (the cache's
    `kept_token_count`). Pass it as `history_tokens_per_clip` to the other functions.

    For Wan2.1 at 832x480 and 81 frames (32,760 tokens) and `r = 0.15`: 4914.

    Args:
        shape (`WanShape`), video (`VideoShape`): The transformer and the clip.
        keep_ratio (`float`, *optional*, defaults to `1.0`): The share of a clip's tokens kept, in (0, 1].
    """
    if isinstance(keep_ratio, bool) or not isinstance(keep_ratio, (int, float)) or not 0.0 < keep_ratio <= 1.0:
        raise ValueError(f"`keep_ratio` must be a number in (0, 1], got {keep_ratio!r}.")
    return max(1, math.ceil(round(keep_ratio * tokens_per_clip(shape, video), 9)))


def _num_cached_blocks(shape: WanShape, cached_blocks: int | Sequence[int] | None) -> int:
    if cached_blocks is None:
        return len(shape.default_cached_blocks)
    if isinstance(cached_blocks, int) and not isinstance(cached_blocks, bool):
        if not 0 <= cached_blocks <= shape.num_layers:
            raise ValueError(
                f"`cached_blocks` as a count must be in [0, {shape.num_layers}] (`num_layers`), got {cached_blocks}."
            )
        return cached_blocks
    indices = list(cached_blocks)
    if len(set(indices)) != len(indices) or any(
        isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < shape.num_layers for i in indices
    ):
        raise ValueError(
            f"`cached_blocks` must be distinct block indices in [0, {shape.num_layers}), a count, or None (the "
            f"latter half), got {cached_blocks!r}."
        )
    return len(indices)


def _history_tokens(shape: WanShape, video: VideoShape, history_tokens_per_clip: int | None) -> int:
    if history_tokens_per_clip is None:
        return tokens_per_clip(shape, video)
    _check_positive_int("history_tokens_per_clip", history_tokens_per_clip)
    return history_tokens_per_clip


def _check_history_clips(history_clips: int) -> None:
    if isinstance(history_clips, bool) or not isinstance(history_clips, int) or history_clips < 0:
        raise ValueError(f"`history_clips` must be a non-negative integer, got {history_clips!r}.")


@dataclass(frozen=True)
class FlopBreakdown:
    r"""
    Matmul FLOPs (multiply-add = 2) split by where they are spent.

    Args:
        projections (`float`): Linear layers over the video tokens inside the blocks: self-attention q, k, v, out
            and cross-attention q, out (`12·N·dim²` per block).
        text_projections (`float`): Cross-attention k, v over the text tokens (`4·text_len·dim²` per block); the
            same at every step of a clip, so they could be computed once per clip.
        ffn (`float`): Feed-forward up and down projections (`4·N·dim·ffn_dim` per block).
        self_attention (`float`): `Q·Kᵀ` and `P·V` over the clip's own tokens (`4·N²·dim` per block).
        cross_attention (`float`): `Q·Kᵀ` and `P·V` over the text tokens (`4·N·text_len·dim` per block).
        history_attention (`float`): The extra `Q·Kᵀ` and `P·V` over the history keys in the cached blocks
            (`4·N·k·M·dim` per cached block).
        embeddings (`float`): Patch embedding, timestep and text embedders, time projection and `proj_out`.
    """

    projections: float = 0.0
    text_projections: float = 0.0
    ffn: float = 0.0
    self_attention: float = 0.0
    cross_attention: float = 0.0
    history_attention: float = 0.0
    embeddings: float = 0.0

    @property
    def total(self) -> float:
        return sum(getattr(self, f.name) for f in fields(self))

    def as_dict(self) -> dict[str, float]:
        """The components and the total, in FLOPs."""
        return {**asdict(self), "total": self.total}

    def __add__(self, other: FlopBreakdown) -> FlopBreakdown:
        if not isinstance(other, FlopBreakdown):
            return NotImplemented
        return FlopBreakdown(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    def __mul__(self, factor: float) -> FlopBreakdown:
        if not isinstance(factor, (int, float)) or isinstance(factor, bool):
            return NotImplemented
        return FlopBreakdown(**{f.name: getattr(self, f.name) * factor for f in fields(self)})

    __rmul__ = __mul__


def flops_per_forward(
    shape: WanShape,
    video: VideoShape,
    history_clips: int = 0,
    cached_blocks: int | Sequence[int] | None = None,
    history_tokens_per_clip: int | None = None,
) -> FlopBreakdown:
    r"""
    Matmul FLOPs of one transformer forward on one sample (one CFG branch of one denoising step).

    Args:
        shape (`WanShape`): The transformer.
        video (`VideoShape`): The clip.
        history_clips (`int`, *optional*, defaults to 0): History clips `k` attended in the cached blocks.
        cached_blocks (`int` or `Sequence[int]`, *optional*):
            The blocks that attend to history: block indices, or a count. Defaults to the latter half.
        history_tokens_per_clip (`int`, *optional*):
            Tokens `M` kept per history clip; defaults to a whole clip (`tokens_per_clip`). Smaller with sparse
            (subsampled) history frames.
    """
    _check_history_clips(history_clips)
    n = tokens_per_clip(shape, video)
    m = _history_tokens(shape, video, history_tokens_per_clip)
    blocks = _num_cached_blocks(shape, cached_blocks)
    d, layers, text = shape.dim, shape.num_layers, shape.text_len
    patch = math.prod(shape.patch_size)
    embeddings = (
        2 * n * shape.in_channels * patch * d  # patch embedding (Conv3d with stride = kernel)
        + 2 * (shape.freq_dim * d + d * d)  # time_embedder: linear_1, linear_2
        + 2 * d * 6 * d  # time_proj to the 6 modulation vectors
        + 2 * text * (shape.text_dim * d + d * d)  # text_embedder: linear_1, linear_2 over the text tokens
        + 2 * n * d * shape.out_channels * patch  # proj_out
    )
    return FlopBreakdown(
        projections=float(layers * 12 * n * d * d),
        text_projections=float(layers * 4 * text * d * d),
        ffn=float(layers * 4 * n * d * shape.ffn_dim),
        self_attention=float(layers * 4 * n * n * d),
        cross_attention=float(layers * 4 * n * text * d),
        history_attention=float(blocks * 4 * n * history_clips * m * d),
        embeddings=float(embeddings),
    )


def flops_per_step(
    shape: WanShape,
    video: VideoShape,
    history_clips: int = 0,
    cached_blocks: int | Sequence[int] | None = None,
    history_tokens_per_clip: int | None = None,
    cfg: bool = True,
) -> FlopBreakdown:
    r"""
    Matmul FLOPs of one denoising step: `flops_per_forward` times the number of CFG branches.

    Args:
        shape, video, history_clips, cached_blocks, history_tokens_per_clip: As in [`flops_per_forward`].
        cfg (`bool`, *optional*, defaults to `True`): Classifier-free guidance (two forwards per step).
    """
    return flops_per_forward(shape, video, history_clips, cached_blocks, history_tokens_per_clip) * (2 if cfg else 1)


def recording_forward_flops(shape: WanShape, video: VideoShape, cfg: bool = True) -> FlopBreakdown:
    r"""
    FLOPs of recording a finished clip's K/V: one extra forward per CFG branch at timestep 0, without history.

    Args:
        shape (`WanShape`), video (`VideoShape`): The transformer and the clip.
        cfg (`bool`, *optional*, defaults to `True`): Record both branches (cond and uncond K/V differ).
    """
    return flops_per_forward(shape, video) * (2 if cfg else 1)


def flops_per_clip(
    shape: WanShape,
    video: VideoShape,
    steps: int,
    cfg: bool = True,
    history_clips: int = 0,
    cached_blocks: int | Sequence[int] | None = None,
    history_tokens_per_clip: int | None = None,
    recording_forward: bool = True,
) -> FlopBreakdown:
    r"""
    Matmul FLOPs of generating one clip: `steps` denoising steps, plus the recording forwards.

    Args:
        steps (`int`): Evaluated denoising steps (with T-RFlow, the truncated count, `len(scheduler.timesteps)`).
        recording_forward (`bool`, *optional*, defaults to `True`): Add the extra recording forward per branch
            (DESIGN §3's default); `False` when recording during the last denoising step, or without a cache.
        shape, video, cfg, history_clips, cached_blocks, history_tokens_per_clip: As in [`flops_per_step`].
    """
    _check_positive_int("steps", steps)
    total = flops_per_step(shape, video, history_clips, cached_blocks, history_tokens_per_clip, cfg) * steps
    if recording_forward:
        total = total + recording_forward_flops(shape, video, cfg)
    return total


@dataclass(frozen=True)
class KVCacheBytes:
    r"""
    Bytes of the K and V of one history clip.

    Args:
        per_block (`int`): K and V of one cached block, one CFG branch: `2 · M · dim · dtype_bytes`.
        num_cached_blocks (`int`): Blocks that hold a cache.
        branches (`int`): CFG branches stored (2 with guidance, 1 without).
    """

    per_block: int
    num_cached_blocks: int
    branches: int

    @property
    def per_branch(self) -> int:
        """All cached blocks, one CFG branch."""
        return self.per_block * self.num_cached_blocks

    @property
    def total(self) -> int:
        """All cached blocks, every branch: what storing one history clip costs."""
        return self.per_branch * self.branches


def kv_bytes_per_history_clip(
    shape: WanShape,
    video: VideoShape,
    dtype_bytes: int = 2,
    cached_blocks: int | Sequence[int] | None = None,
    history_tokens_per_clip: int | None = None,
    cfg: bool = True,
) -> KVCacheBytes:
    r"""
    Memory of the K/V stored for one history clip: per cached block and branch, per branch, and in total.

    Args:
        dtype_bytes (`int`, *optional*, defaults to 2): Bytes per element (2 for bf16/fp16, 4 for fp32).
        cfg (`bool`, *optional*, defaults to `True`): Store cond and uncond K/V.
        shape, video, cached_blocks, history_tokens_per_clip: As in [`flops_per_forward`].
    """
    _check_positive_int("dtype_bytes", dtype_bytes)
    m = _history_tokens(shape, video, history_tokens_per_clip)
    return KVCacheBytes(
        per_block=2 * m * shape.dim * dtype_bytes,
        num_cached_blocks=_num_cached_blocks(shape, cached_blocks),
        branches=2 if cfg else 1,
    )


@dataclass(frozen=True)
class ClipCost:
    r"""
    Roofline lower bound of the time to generate one clip.

    Args:
        steps (`int`): Denoising steps.
        forwards (`int`): Transformer calls (denoising and recording).
        flops (`FlopBreakdown`): Matmul FLOPs of the clip (recording included).
        bytes_moved (`float`): Compulsory memory traffic: weights per forward, history K/V reads, K/V writes.
        kv_bytes_held (`int`): K/V held for the attended history clips (all branches).
        compute_seconds (`float`): `flops.total / peak`.
        memory_seconds (`float`): `bytes_moved / bandwidth`.
    """

    steps: int
    forwards: int
    flops: FlopBreakdown
    bytes_moved: float
    kv_bytes_held: int
    compute_seconds: float
    memory_seconds: float

    @property
    def seconds(self) -> float:
        """The lower bound: `max(compute_seconds, memory_seconds)`."""
        return max(self.compute_seconds, self.memory_seconds)

    @property
    def bound(self) -> str:
        """`"compute"` or `"memory"`: which side of the roofline limits the clip."""
        return "compute" if self.compute_seconds >= self.memory_seconds else "memory"


def lower_bound_time_per_clip(
    shape: WanShape,
    video: VideoShape,
    steps: int,
    cfg: bool = True,
    history_clips: int = 5,
    peak_tflops: float = H200_PEAK_TFLOPS,
    bandwidth_tbps: float = H200_BANDWIDTH_TBPS,
    dtype_bytes: int = 2,
    cached_blocks: int | Sequence[int] | None = None,
    history_tokens_per_clip: int | None = None,
    recording_forward: bool = True,
) -> ClipCost:
    r"""
    Roofline lower bound of the time per clip: `max(FLOPs / peak, compulsory bytes / bandwidth)`.

    The bytes are the weights read once per forward (`num_parameters · dtype_bytes`), each attended history clip's
    K/V read once per forward (`history_clips · KVCacheBytes.per_branch`), and the clip's own K/V written once per
    branch when a cache is in use. Activation traffic is not counted (see the module docstring).

    Args:
        steps (`int`): Evaluated denoising steps per clip.
        cfg (`bool`, *optional*, defaults to `True`): Classifier-free guidance.
        history_clips (`int`, *optional*, defaults to 5): History clips attended (the paper's `k = 5`).
        peak_tflops (`float`, *optional*, defaults to 790): Dense bf16 matmul peak, TFLOP/s (H200, from issue 7).
        bandwidth_tbps (`float`, *optional*, defaults to 4.3): Memory bandwidth, TB/s (H200, from issue 7).
        dtype_bytes (`int`, *optional*, defaults to 2): Bytes per weight and K/V element (bf16).
        recording_forward (`bool`, *optional*, defaults to `True`): Count the extra recording forward per branch.
        shape, video, cached_blocks, history_tokens_per_clip: As in [`flops_per_forward`].
    """
    if not peak_tflops > 0 or not bandwidth_tbps > 0:
        raise ValueError(
            f"`peak_tflops` and `bandwidth_tbps` must be positive, got {peak_tflops!r} and {bandwidth_tbps!r}."
        )
    flops = flops_per_clip(
        shape, video, steps, cfg, history_clips, cached_blocks, history_tokens_per_clip, recording_forward
    )
    kv = kv_bytes_per_history_clip(shape, video, dtype_bytes, cached_blocks, history_tokens_per_clip, cfg)
    branches = kv.branches
    denoising_forwards = steps * branches
    recording_forwards = branches if recording_forward else 0
    weights = shape.num_parameters() * dtype_bytes
    bytes_moved = (
        (denoising_forwards + recording_forwards) * weights
        + denoising_forwards * history_clips * kv.per_branch
        + (kv.total if recording_forward else 0)
    )
    return ClipCost(
        steps=steps,
        forwards=denoising_forwards + recording_forwards,
        flops=flops,
        bytes_moved=float(bytes_moved),
        kv_bytes_held=history_clips * kv.total,
        compute_seconds=flops.total / (peak_tflops * 1e12),
        memory_seconds=bytes_moved / (bandwidth_tbps * 1e12),
    )


def predicted_history_overhead_ratio(
    shape: WanShape,
    video: VideoShape,
    history_clips: int = 5,
    steps: int | None = None,
    recording_forward: bool = True,
    cached_blocks: int | Sequence[int] | None = None,
    history_tokens_per_clip: int | None = None,
) -> float:
    r"""
    Predicted cost of the KV cache relative to plain clip chaining, as a FLOP ratio (the same for both CFG modes).

    Compare it with a measured time ratio (ours ÷ no cache) on the same shapes: on a GPU at full size the two should
    agree when the run is compute-bound; on a tiny CPU model fixed per-call overheads pull the measured ratio
    towards 1.

    Args:
        history_clips (`int`, *optional*, defaults to 5): History clips attended.
        steps (`int`, *optional*):
            `None` compares one denoising forward with and without history. With a step count, compares whole clips:
            `steps` forwards with history plus the recording forward (if `recording_forward`) against `steps`
            forwards without.
        recording_forward (`bool`, *optional*, defaults to `True`): Used only with `steps`.
        shape, video, cached_blocks, history_tokens_per_clip: As in [`flops_per_forward`].
    """
    if steps is None:
        with_history = flops_per_forward(shape, video, history_clips, cached_blocks, history_tokens_per_clip)
        return with_history.total / flops_per_forward(shape, video).total
    ours = flops_per_clip(
        shape, video, steps, False, history_clips, cached_blocks, history_tokens_per_clip, recording_forward
    )
    plain = flops_per_clip(shape, video, steps, False, recording_forward=False)
    return ours.total / plain.total


_TERA = 1e12
_GIB = 1024**3


def cost_table(
    shape: WanShape,
    video: VideoShape,
    steps: int = 50,
    history_clips: Sequence[int] = (0, 1, 3, 5),
    cfg: bool = True,
    peak_tflops: float = H200_PEAK_TFLOPS,
    bandwidth_tbps: float = H200_BANDWIDTH_TBPS,
    dtype_bytes: int = 2,
    cached_blocks: int | Sequence[int] | None = None,
    history_tokens_per_clip: int | None = None,
) -> list[dict[str, Any]]:
    r"""
    One row per history size `k`: FLOPs per step, K/V held, lower-bound time per step and per clip.

    `k = 0` is plain clip chaining (no cache, no recording forward); `k > 0` includes the recording forward.
    Arguments as in [`lower_bound_time_per_clip`]; `history_clips` lists the `k` of each row.
    """
    rows = []
    for k in history_clips:
        uses_cache = k > 0
        step = flops_per_step(shape, video, k, cached_blocks, history_tokens_per_clip, cfg)
        clip = lower_bound_time_per_clip(
            shape,
            video,
            steps,
            cfg,
            k,
            peak_tflops,
            bandwidth_tbps,
            dtype_bytes,
            cached_blocks,
            history_tokens_per_clip,
            recording_forward=uses_cache,
        )
        plain = lower_bound_time_per_clip(
            shape, video, steps, cfg, 0, peak_tflops, bandwidth_tbps, dtype_bytes, recording_forward=False
        )
        kv = kv_bytes_per_history_clip(shape, video, dtype_bytes, cached_blocks, history_tokens_per_clip, cfg)
        step_bytes = kv.branches * (shape.num_parameters() * dtype_bytes + k * kv.per_branch)
        step_seconds = max(step.total / (peak_tflops * _TERA), step_bytes / (bandwidth_tbps * _TERA))
        rows.append(
            {
                "history clips k": k,
                "TFLOP / step": step.total / _TERA,
                "of which history": step.history_attention / _TERA,
                "K/V held (GiB)": clip.kv_bytes_held / _GIB,
                "forwards / clip": clip.forwards,
                "TFLOP / clip": clip.flops.total / _TERA,
                "bound": clip.bound,
                "lower bound s / step": step_seconds,
                "lower bound s / clip": clip.seconds,
                "memory-traffic s / clip": clip.memory_seconds,
                "× plain chaining": clip.seconds / plain.seconds,
            }
        )
    return rows


def flop_breakdown_table(
    shape: WanShape,
    video: VideoShape,
    history_clips: int = 5,
    cached_blocks: int | Sequence[int] | None = None,
    history_tokens_per_clip: int | None = None,
) -> list[dict[str, Any]]:
    r"""
    Rows of one forward's FLOPs by component, without history and with `history_clips` history clips.
    """
    plain = flops_per_forward(shape, video).as_dict()
    ours = flops_per_forward(shape, video, history_clips, cached_blocks, history_tokens_per_clip).as_dict()
    return [
        {
            "component": name.replace("_", " "),
            "TFLOP, no history": plain[name] / _TERA,
            f"TFLOP, k = {history_clips}": ours[name] / _TERA,
            f"share, k = {history_clips}": ours[name] / ours["total"],
        }
        for name in plain
    ]


# The compressed-history options tabulated by `--markdown`: (history_pool `(t, h, w)` or a history_keep_ratio,
# cached blocks or None for the default).
COMPRESSED_HISTORY_OPTIONS: tuple[tuple[tuple[int, int, int] | float, int | None], ...] = (
    ((1, 1, 1), None),
    ((1, 2, 2), None),
    ((2, 2, 2), None),
    ((1, 4, 4), None),
    ((4, 2, 2), None),
    ((1, 2, 2), 8),
    ((2, 1, 1), None),
    ((6, 1, 1), None),
    ((6, 1, 1), 12),
    (0.15, None),
    (0.25, None),
)


def compressed_history_table(
    shape: WanShape,
    video: VideoShape,
    steps: int = 50,
    history_clips: int = 5,
    options: Sequence[tuple[Sequence[int] | float, int | None]] = COMPRESSED_HISTORY_OPTIONS,
    cfg: bool = True,
    peak_tflops: float = H200_PEAK_TFLOPS,
    bandwidth_tbps: float = H200_BANDWIDTH_TBPS,
    dtype_bytes: int = 2,
) -> list[dict[str, Any]]:
    r"""
    One row per compressed-history option `(history, cached_blocks)`: tokens kept per history clip, K/V held by
    `history_clips` clips, and the cost per clip relative to plain chaining (FLOP ratio, recording forward included).

    `history` is a `history_pool` window `(t, h, w)` (`(1, 1, 1)` = dense) or a `history_keep_ratio` (a float);
    `cached_blocks=None` is the latter half (the default); an int `c` caches the last `c` blocks.
    """
    rows = []
    plain = lower_bound_time_per_clip(
        shape, video, steps, cfg, 0, peak_tflops, bandwidth_tbps, dtype_bytes, recording_forward=False
    )
    for history, blocks in options:
        if isinstance(history, (int, float)) and not isinstance(history, bool):
            m = selected_tokens_per_clip(shape, video, history)
            label = "dense" if history == 1 else f"history_keep_ratio={history:g}"
        else:
            m = pooled_tokens_per_clip(shape, video, history)
            label = "dense" if tuple(history) == (1, 1, 1) else f"history_pool={tuple(history)}"
        clip = lower_bound_time_per_clip(
            shape, video, steps, cfg, history_clips, peak_tflops, bandwidth_tbps, dtype_bytes, blocks, m
        )
        ratio = clip.flops.total / plain.flops.total
        gib = clip.kv_bytes_held / _GIB
        rows.append(
            {
                "history": label,
                "cached blocks": len(shape.default_cached_blocks) if blocks is None else blocks,
                "tokens / history clip": m,
                "K/V held (GiB)": gib,
                "lower bound s / clip": clip.seconds,
                "× plain chaining": ratio,
                "meets ≤ 1.3× and ≤ 6 GiB": "yes" if ratio <= 1.3 and gib <= 6 else "no",
            }
        )
    return rows


def _format_cell(value: Any) -> str:
    if not isinstance(value, float):
        return str(value)
    if value == 0:
        return "0"
    if abs(value) < 1e-3:
        return f"{value:.2e}"
    return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.3g}"


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Format rows (dicts sharing their keys) as a GitHub Markdown table."""
    if not rows:
        raise ValueError("`rows` must hold at least one row.")
    columns = list(rows[0])
    align = [":---" if isinstance(rows[0][c], str) else "---:" for c in columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(_format_cell(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def _trflow_steps(steps: int, shift: float, tau_low: float, tau_high: float) -> int | None:
    try:
        from ..schedulers.scheduling_trflow import TRFlowScheduler
    except ImportError:  # torch / diffusers missing: the table then omits the T-RFlow row
        return None
    scheduler = TRFlowScheduler(shift=shift, tau_low=tau_low, tau_high=tau_high)
    scheduler.set_timesteps(steps)
    return len(scheduler.timesteps)


def markdown_report(
    height: int = 480,
    width: int = 832,
    frames: int = 81,
    steps: int = 50,
    history_clips: int = 5,
    shift: float = 3.0,
    peak_tflops: float = H200_PEAK_TFLOPS,
    bandwidth_tbps: float = H200_BANDWIDTH_TBPS,
) -> str:
    """The Markdown tables of `docs/performance.md` (`longvid cost-model --markdown`) for Wan2.1-T2V-1.3B."""
    if history_clips < 1:
        raise ValueError(f"`history_clips` must be at least 1, got {history_clips}.")
    shape = wan21_t2v_1_3b()
    video = VideoShape(height=height, width=width, frames=frames)
    n = tokens_per_clip(shape, video)
    kv = kv_bytes_per_history_clip(shape, video, dtype_bytes=2)
    common = dict(peak_tflops=peak_tflops, bandwidth_tbps=bandwidth_tbps)
    out = [
        f"Wan2.1-T2V-1.3B ({shape.num_parameters():,} parameters), {video.width}x{video.height}, {video.frames} "
        f"frames -> {video.latent_frames}x{video.latent_height}x{video.latent_width} latents -> **{n:,} tokens** "
        f"per clip, {shape.text_len} text tokens; KV cache in blocks {shape.default_cached_blocks[0]}-"
        f"{shape.default_cached_blocks[-1]} ({len(shape.default_cached_blocks)} blocks); bf16; CFG (2 forwards per "
        f"step); roofline at {peak_tflops:g} TFLOP/s and {bandwidth_tbps:g} TB/s.",
        "",
        f"**One forward (one CFG branch), by component** (k = {history_clips}):",
        "",
        markdown_table(flop_breakdown_table(shape, video, history_clips)),
        "",
        "**K/V of one history clip** (bf16): "
        f"{kv.per_block / 2**20:,.1f} MiB per block and branch, {kv.per_branch / _GIB:.2f} GiB per branch "
        f"({kv.num_cached_blocks} blocks), {kv.total / _GIB:.2f} GiB with both CFG branches; "
        f"k = {history_clips} holds {history_clips * kv.total / _GIB:.1f} GiB.",
        "",
        f"**Per step and per clip, {steps} steps** (`k = 0` is plain chaining; `k > 0` adds one recording "
        "forward per branch per clip):",
        "",
        markdown_table(cost_table(shape, video, steps, (0, 1, 3, history_clips), **common)),
    ]
    trflow = _trflow_steps(steps, shift, 0.3, 0.7)
    if trflow is not None:
        out += [
            "",
            f"**With T-RFlow** (`tau` window [0.3, 0.7], shift {shift:g}): {trflow} of {steps} steps are "
            "evaluated (`len(TRFlowScheduler.timesteps)`):",
            "",
            markdown_table(cost_table(shape, video, trflow, (0, history_clips), **common)),
        ]
    out += [
        "",
        f"**Compressed history** (`CrossClipKVCacheConfig(history_pool=(t, h, w))` or "
        f"`CrossClipKVCacheConfig(history_keep_ratio=r)`, k = {history_clips}, "
        f"{steps} steps, CFG, recording forward included; target ≤ 1.3× plain chaining and ≤ 6 GiB):",
        "",
        markdown_table(compressed_history_table(shape, video, steps, history_clips, **common)),
    ]
    ratio = predicted_history_overhead_ratio(shape, video, history_clips)
    ratio_clip = predicted_history_overhead_ratio(shape, video, history_clips, steps=steps)
    out += [
        "",
        f"Predicted overhead of k = {history_clips} (FLOP ratio): {ratio:.3f}x per forward, {ratio_clip:.3f}x "
        f"per clip of {steps} steps with the recording forward.",
    ]
    return "\n".join(out)
