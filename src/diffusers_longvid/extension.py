# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""The video extension model (paper §3.3, DESIGN §2): conditioning layout and T2V -> extension conversion.

An extension transformer takes 36 input channels, concatenated in the Wan2.1-I2V order of diffusers:

    [noisy latent z (16) | mask m (4) | condition latent c (16)]

- The mask is built per *pixel* frame (1 = known, 0 = to generate), the first frame's value is repeated
  `vae_scale_factor_temporal` (4) times, and the result is folded to 4 channels per latent frame, exactly as
  `WanImageToVideoPipeline.prepare_latents` does. Latent frame 0 covers pixel frame 0 (all 4 channels); latent frame
  `l >= 1` covers pixel frames `4(l-1)+1 ... 4l`, one per channel.
- The condition latent is the VAE encoding of a pixel video of the clip's length holding the known frames at their
  positions and zeros (mid-grey in `[-1, 1]`) elsewhere, normalised with the VAE's `latents_mean` / `latents_std`.

A stock 16-channel T2V transformer can extend videos without training through *replacement conditioning*: before
each step the known latent frames of `x_sigma` are overwritten with `(1 - sigma) c + sigma eps` (`eps` fixed per clip)
and `c` is written into the result (see [`ExtensionCondition.replace_known`]).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from diffusers.utils import logging
from diffusers.utils.torch_utils import get_module_execution_device
from torch import nn


logger = logging.get_logger(__name__)  # pylint: disable=invalid-name

__all__ = [
    "ExtensionCondition",
    "apply_replacement_conditioning",
    "convert_t2v_to_extension",
    "denormalize_latents",
    "extension_mask",
    "known_latent_frames",
    "normalize_latents",
    "num_latent_frames",
    "prepare_extension_condition",
    "prepare_extension_condition_from_latents",
]

ConditionFill = Literal["vae", "zeros"]


def num_latent_frames(num_frames: int, temporal_scale: int = 4) -> int:
    """Latent frames of a `num_frames`-frame clip under Wan's causal VAE (`num_frames = 1 + temporal_scale * m`)."""
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        raise ValueError(f"`num_frames` must be a positive int, got {num_frames!r}.")
    if (num_frames - 1) % temporal_scale != 0:
        raise ValueError(
            f"`num_frames` must be {temporal_scale}k+1 (the causal VAE's frame counts: 1, {1 + temporal_scale}, "
            f"{1 + 2 * temporal_scale}, ...), got {num_frames}."
        )
    return (num_frames - 1) // temporal_scale + 1


def _pixel_frames_of_latent(latent_index: int, temporal_scale: int) -> range:
    if latent_index == 0:
        return range(0, 1)
    return range(temporal_scale * (latent_index - 1) + 1, temporal_scale * latent_index + 1)


def _check_known_indices(known_frame_indices: Sequence[int], num_frames: int) -> tuple[int, ...]:
    if isinstance(known_frame_indices, (str, bytes)) or not isinstance(known_frame_indices, Sequence):
        raise TypeError(f"`known_frame_indices` must be a sequence of ints, got {type(known_frame_indices).__name__}.")
    indices = []
    for index in known_frame_indices:
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"`known_frame_indices` must hold ints, got {index!r}.")
        if not 0 <= index < num_frames:
            raise ValueError(
                f"`known_frame_indices` must lie in [0, {num_frames - 1}] (`num_frames={num_frames}`), got {index}."
            )
        indices.append(index)
    if len(set(indices)) != len(indices):
        raise ValueError(f"`known_frame_indices` must not repeat a frame, got {list(known_frame_indices)}.")
    return tuple(sorted(indices))


def known_latent_frames(
    known_frame_indices: Sequence[int], num_frames: int, temporal_scale: int = 4
) -> tuple[int, ...]:
    """Latent frames whose pixel frames are *all* known (the frames replacement conditioning overwrites).

    For the first `k = 1 + 4j` pixel frames this is `(0, ..., j)`.
    """
    known = set(_check_known_indices(known_frame_indices, num_frames))
    latent_count = num_latent_frames(num_frames, temporal_scale)
    return tuple(
        index
        for index in range(latent_count)
        if all(p in known for p in _pixel_frames_of_latent(index, temporal_scale))
    )


def extension_mask(
    known_frame_indices: Sequence[int],
    num_frames: int,
    latent_height: int,
    latent_width: int,
    batch_size: int = 1,
    temporal_scale: int = 4,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    r"""
    The Wan2.1-I2V mask for known pixel frames, folded to `temporal_scale` channels per latent frame.

    Args:
        known_frame_indices (`Sequence[int]`): Pixel frames that are given (mask 1); the others are generated (0).
        num_frames (`int`): Pixel frames of the clip (`temporal_scale * m + 1`).
        latent_height (`int`), latent_width (`int`): Latent spatial size.
        batch_size (`int`, *optional*, defaults to 1): Batch size of the returned mask.
        temporal_scale (`int`, *optional*, defaults to 4): The VAE's `scale_factor_temporal`.

    Returns:
        `torch.Tensor` of shape `(batch_size, temporal_scale, num_latent_frames, latent_height, latent_width)`.
    """
    indices = _check_known_indices(known_frame_indices, num_frames)
    latent_count = num_latent_frames(num_frames, temporal_scale)
    per_frame = torch.zeros(num_frames, dtype=dtype, device=device)
    if indices:
        per_frame[list(indices)] = 1
    # same folding as `WanImageToVideoPipeline.prepare_latents`: repeat the first frame, then 4 frames per latent
    per_frame = torch.cat([per_frame[:1].repeat(temporal_scale), per_frame[1:]])
    folded = per_frame.view(latent_count, temporal_scale).transpose(0, 1)
    return (
        folded.view(1, temporal_scale, latent_count, 1, 1)
        .expand(batch_size, temporal_scale, latent_count, latent_height, latent_width)
        .contiguous()
    )


def _latent_stats(vae, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`(latents_mean, 1 / latents_std)` of `vae`, shaped `(C, 1, 1, 1)` to broadcast over `(B,) C, F, H, W`."""
    z_dim = vae.config.z_dim
    if latents.ndim not in (4, 5) or latents.shape[-4] != z_dim:
        raise ValueError(
            f"`latents` must be shaped (C, F, H, W) or (B, C, F, H, W) with C = vae.config.z_dim = {z_dim}, "
            f"got {tuple(latents.shape)}."
        )
    mean = torch.tensor(vae.config.latents_mean).view(z_dim, 1, 1, 1).to(latents.device, latents.dtype)
    inv_std = 1.0 / torch.tensor(vae.config.latents_std).view(z_dim, 1, 1, 1).to(latents.device, latents.dtype)
    return mean, inv_std


def normalize_latents(vae, latents: torch.Tensor) -> torch.Tensor:
    """VAE latents -> the transformer's latent space: `(latents - latents_mean) * (1 / latents_std)`, per channel.

    Bit for bit the arithmetic of `WanImageToVideoPipeline.prepare_latents` (tested against diffusers' source).
    Works on `(C, F, H, W)` and `(B, C, F, H, W)`.

    Args:
        vae (`AutoencoderKLWan`): Supplies `config.latents_mean`, `config.latents_std` and `config.z_dim`.
        latents (`torch.Tensor`): Raw latents from `vae.encode(...)`.
    """
    mean, inv_std = _latent_stats(vae, latents)
    return (latents - mean) * inv_std


def denormalize_latents(vae, latents: torch.Tensor) -> torch.Tensor:
    """Inverse of [`normalize_latents`], before `vae.decode`: `latents / (1 / latents_std) + latents_mean`, bit for
    bit the arithmetic of `WanPipeline.__call__`."""
    mean, inv_std = _latent_stats(vae, latents)
    return latents / inv_std + mean


@dataclass
class ExtensionCondition:
    r"""
    The conditioning of one clip: which frames are known and what the transformer sees of them.

    Args:
        mask (`torch.Tensor` of shape `(batch, 4, latent_frames, latent_height, latent_width)`):
            The Wan2.1-I2V mask (1 = known pixel frame), folded to 4 channels per latent frame.
        condition_latent (`torch.Tensor` of shape `(batch, 16, latent_frames, latent_height, latent_width)`):
            The normalised latent of the condition video (known frames at their positions).
        known_frame_indices (`tuple[int, ...]`): Known pixel frames, sorted.
        known_latent_frames (`tuple[int, ...]`):
            Latent frames whose pixel frames are all known (overwritten by replacement conditioning).
        num_frames (`int`): Pixel frames of the clip.
        fill (`str`): How the unknown latent frames of `condition_latent` were filled: `"vae"` (VAE encoding of the
            zero-padded pixel video, Wan2.1-I2V) or `"zeros"` (zero latents, as when built from cached latents).
    """

    mask: torch.Tensor
    condition_latent: torch.Tensor
    known_frame_indices: tuple[int, ...]
    known_latent_frames: tuple[int, ...]
    num_frames: int
    fill: str = "vae"

    @property
    def num_known_frames(self) -> int:
        return len(self.known_frame_indices)

    @property
    def num_latent_frames(self) -> int:
        return self.condition_latent.shape[2]

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> ExtensionCondition:
        """A copy with both tensors moved/cast (like `torch.Tensor.to`)."""
        return ExtensionCondition(
            mask=self.mask.to(device=device, dtype=dtype),
            condition_latent=self.condition_latent.to(device=device, dtype=dtype),
            known_frame_indices=self.known_frame_indices,
            known_latent_frames=self.known_latent_frames,
            num_frames=self.num_frames,
            fill=self.fill,
        )

    def model_input(self, latents: torch.Tensor) -> torch.Tensor:
        """The 36-channel transformer input `[latents | mask | condition_latent]` (same dtype/device as `latents`)."""
        if latents.shape[0] != self.mask.shape[0] or latents.shape[2:] != self.mask.shape[2:]:
            raise ValueError(
                f"`latents` of shape {tuple(latents.shape)} do not match the condition of shape "
                f"{tuple(self.condition_latent.shape)}."
            )
        mask = self.mask.to(device=latents.device, dtype=latents.dtype)
        condition = self.condition_latent.to(device=latents.device, dtype=latents.dtype)
        return torch.cat([latents, mask, condition], dim=1)

    def replace_known(self, latents: torch.Tensor, sigma: float, noise: torch.Tensor | None = None) -> torch.Tensor:
        r"""
        Replacement conditioning: the known latent frames of `latents` set to `(1 - sigma) c + sigma noise`.

        Args:
            latents (`torch.Tensor`): `x_sigma`, shape `(batch, 16, latent_frames, h, w)`; not modified in place.
            sigma (`float`): The current noise level (0 writes `c` itself, for the final result).
            noise (`torch.Tensor`, *optional*): `eps` for the known frames, shape
                `(batch, 16, len(known_latent_frames), h, w)`; keep it fixed for the whole clip. Needed when
                `sigma > 0`.
        """
        return apply_replacement_conditioning(latents, self, sigma, noise)


def apply_replacement_conditioning(
    latents: torch.Tensor, condition: ExtensionCondition, sigma: float, noise: torch.Tensor | None = None
) -> torch.Tensor:
    """Functional form of [`ExtensionCondition.replace_known`] (DESIGN §2, training-free fallback)."""
    frames = list(condition.known_latent_frames)
    if not frames:
        return latents
    sigma = float(sigma)
    clean = condition.condition_latent[:, :, frames].to(device=latents.device, dtype=torch.float32)
    if sigma > 0:
        if noise is None:
            raise ValueError("`noise` is required for replacement conditioning at `sigma > 0`.")
        if noise.shape != clean.shape:
            raise ValueError(f"`noise` must have shape {tuple(clean.shape)}, got {tuple(noise.shape)}.")
        value = (1.0 - sigma) * clean + sigma * noise.to(device=latents.device, dtype=torch.float32)
    else:
        value = clean
    out = latents.clone()
    out[:, :, frames] = value.to(latents.dtype)
    return out


def _place_known_frames(video: torch.Tensor, indices: tuple[int, ...], num_frames: int) -> torch.Tensor:
    if video.ndim != 5:
        raise ValueError(
            "`video` must be a 5D tensor `(batch, channels, frames, height, width)` in [-1, 1], got shape "
            f"{tuple(video.shape)}."
        )
    frames = video.shape[2]
    if frames == num_frames:
        out = torch.zeros_like(video)
        if indices:
            out[:, :, list(indices)] = video[:, :, list(indices)]
        return out
    if frames == len(indices):
        out = video.new_zeros(video.shape[0], video.shape[1], num_frames, video.shape[3], video.shape[4])
        if indices:
            out[:, :, list(indices)] = video
        return out
    raise ValueError(
        f"`video` has {frames} frames: pass either the whole clip (`num_frames={num_frames}` frames) or only the "
        f"known frames ({len(indices)}, one per entry of `known_frame_indices`)."
    )


@torch.no_grad()
def prepare_extension_condition(
    vae,
    video: torch.Tensor,
    known_frame_indices: Sequence[int],
    num_frames: int,
    fill: ConditionFill = "vae",
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> ExtensionCondition:
    r"""
    Build the mask and the condition latent of a clip from known pixel frames at any positions (first k, last k,
    first + last, none), in the Wan2.1-I2V layout.

    Args:
        vae ([`~diffusers.AutoencoderKLWan`]): The VAE (its `scale_factor_temporal`, `latents_mean`/`latents_std`).
        video (`torch.Tensor` of shape `(batch, 3, T, height, width)`, values in `[-1, 1]`):
            Either the whole clip (`T == num_frames`; frames not in `known_frame_indices` are ignored) or only the
            known frames (`T == len(known_frame_indices)`, in the order of the sorted indices). With no known frame,
            pass a `T == 0` tensor (it still gives the batch size and the spatial size).
        known_frame_indices (`Sequence[int]`): Known pixel frames, e.g. `range(k)` (first k), `range(F - k, F)`
            (last k), `[0, F - 1]` (first + last) or `[]` (no condition).
        num_frames (`int`): Pixel frames of the clip, `4m + 1`.
        fill (`str`, *optional*, defaults to `"vae"`):
            `"vae"`: encode the zero-padded pixel video (Wan2.1-I2V; DESIGN §2). `"zeros"`: keep only the latent
            frames whose pixel frames are all known and set the others to 0; this equals
            [`prepare_extension_condition_from_latents`] on clean latents for first-k conditions (the VAE is causal),
            so it is the layout to sample with when a model was trained on cached latents. It only encodes the video
            up to the last known latent frame.
        device (`torch.device`, *optional*): Where to put the result (defaults to the VAE's execution device).
        dtype (`torch.dtype`, *optional*, defaults to `torch.float32`): dtype of the result.

    Returns:
        [`ExtensionCondition`]
    """
    if fill not in ("vae", "zeros"):
        raise ValueError(f"`fill` must be one of ['vae', 'zeros'], got {fill!r}.")
    if not isinstance(video, torch.Tensor):
        raise TypeError(f"`video` must be a torch.Tensor in [-1, 1], got {type(video).__name__}.")
    temporal_scale = vae.config.scale_factor_temporal
    spatial_scale = vae.config.scale_factor_spatial
    latent_count = num_latent_frames(num_frames, temporal_scale)
    indices = _check_known_indices(known_frame_indices, num_frames)
    full_latents = known_latent_frames(indices, num_frames, temporal_scale)
    condition_video = _place_known_frames(video, indices, num_frames)
    batch_size, _, _, height, width = condition_video.shape
    latent_height, latent_width = height // spatial_scale, width // spatial_scale

    vae_device = get_module_execution_device(vae)
    device = device if device is not None else vae_device

    if fill == "zeros":
        condition = torch.zeros(
            batch_size, vae.config.z_dim, latent_count, latent_height, latent_width, device=device, dtype=dtype
        )
        if full_latents:
            # causal VAE: latent frames up to `last` depend only on the pixel frames up to its last pixel frame
            last = max(full_latents)
            pixel_end = _pixel_frames_of_latent(last, temporal_scale)[-1] + 1
            encoded = _encode(vae, condition_video[:, :, :pixel_end], vae_device)
            encoded = normalize_latents(vae, encoded.to(device=device, dtype=torch.float32)).to(dtype)
            condition[:, :, list(full_latents)] = encoded[:, :, list(full_latents)]
    else:
        encoded = _encode(vae, condition_video, vae_device)
        condition = normalize_latents(vae, encoded.to(device=device, dtype=torch.float32)).to(dtype)

    mask = extension_mask(indices, num_frames, latent_height, latent_width, batch_size, temporal_scale, dtype, device)
    return ExtensionCondition(
        mask=mask,
        condition_latent=condition,
        known_frame_indices=indices,
        known_latent_frames=full_latents,
        num_frames=num_frames,
        fill=fill,
    )


def _encode(vae, video: torch.Tensor, vae_device) -> torch.Tensor:
    # `argmax` (the posterior mode), as `WanImageToVideoPipeline` does for its condition: deterministic
    output = vae.encode(video.to(device=vae_device, dtype=vae.dtype))
    return output.latent_dist.mode() if hasattr(output, "latent_dist") else output.latents


def prepare_extension_condition_from_latents(
    latents: torch.Tensor,
    known_frame_indices: Sequence[int],
    num_frames: int | None = None,
    temporal_scale: int = 4,
) -> ExtensionCondition:
    r"""
    Latent-space variant of [`prepare_extension_condition`] for trainers with already-encoded (normalised) clip
    latents: the mask is the same; the condition latent keeps the latent frames whose pixel frames are all known and is
    0 elsewhere (the paper's "compress the condition frames, pad with zero frames"; `fill="zeros"`).

    For first-k conditions (`k = 1 + 4j`) the kept latent frames equal those of the pixel variant exactly (the VAE is
    causal); other latent frames are 0 where the pixel variant with `fill="vae"` has the encoding of the zero padding.
    Both are masked out, but a model sees different inputs: sample with the layout it was trained on (the pipeline's
    `condition_fill` config).

    Args:
        latents (`torch.Tensor` of shape `(batch, 16, latent_frames, h, w)`): Normalised clean latents of the clip.
        known_frame_indices (`Sequence[int]`): Known pixel frames.
        num_frames (`int`, *optional*):
            Pixel frames of the clip; defaults to `temporal_scale * (latent_frames - 1) + 1`.
        temporal_scale (`int`, *optional*, defaults to 4): The VAE's `scale_factor_temporal`.
    """
    if not isinstance(latents, torch.Tensor) or latents.ndim != 5:
        raise ValueError("`latents` must be a 5D tensor `(batch, channels, latent_frames, height, width)`.")
    batch_size, _, latent_count, latent_height, latent_width = latents.shape
    if num_frames is None:
        num_frames = temporal_scale * (latent_count - 1) + 1
    if num_latent_frames(num_frames, temporal_scale) != latent_count:
        raise ValueError(
            f"`num_frames={num_frames}` gives {num_latent_frames(num_frames, temporal_scale)} latent frames but "
            f"`latents` has {latent_count}."
        )
    indices = _check_known_indices(known_frame_indices, num_frames)
    full_latents = known_latent_frames(indices, num_frames, temporal_scale)
    condition = torch.zeros_like(latents)
    if full_latents:
        condition[:, :, list(full_latents)] = latents[:, :, list(full_latents)]
    mask = extension_mask(
        indices, num_frames, latent_height, latent_width, batch_size, temporal_scale, latents.dtype, latents.device
    )
    return ExtensionCondition(
        mask=mask,
        condition_latent=condition,
        known_frame_indices=indices,
        known_latent_frames=full_latents,
        num_frames=num_frames,
        fill="zeros",
    )


@torch.no_grad()
def convert_t2v_to_extension(transformer: nn.Module, in_channels: int = 36) -> nn.Module:
    r"""
    Turn a text-to-video `WanTransformer3DModel` into a video extension model, in place.

    `patch_embedding` becomes a `Conv3d` with `in_channels` inputs: the weights of the original channels are copied,
    the new ones (mask and condition latent) are zero, the bias is copied. The converted model is therefore exactly the
    T2V model at initialisation, whatever the mask and condition. `config.in_channels` is updated (and `out_channels`
    pinned) so `save_pretrained` / `from_pretrained` round-trip.

    Args:
        transformer ([`~diffusers.WanTransformer3DModel`]): The T2V transformer (16 input channels).
        in_channels (`int`, *optional*, defaults to 36): `16 (latent) + 4 (mask) + 16 (condition latent)`.

    Returns:
        The same transformer, converted. A transformer that already has `in_channels` inputs is returned unchanged.
    """
    old = transformer.patch_embedding
    if not isinstance(old, nn.Conv3d):
        raise TypeError(f"`transformer.patch_embedding` must be an `nn.Conv3d`, got {type(old).__name__}.")
    if old.in_channels == in_channels:
        logger.info(f"The transformer already has {in_channels} input channels; nothing to convert.")
        return transformer
    if in_channels < old.in_channels:
        raise ValueError(
            f"`in_channels` ({in_channels}) must be larger than the transformer's current {old.in_channels} input "
            "channels."
        )
    new = nn.Conv3d(
        in_channels,
        old.out_channels,
        kernel_size=old.kernel_size,
        stride=old.stride,
        padding=old.padding,
        dilation=old.dilation,
        groups=old.groups,
        bias=old.bias is not None,
        padding_mode=old.padding_mode,
        device=old.weight.device,
        dtype=old.weight.dtype,
    )
    new.weight.zero_()
    new.weight[:, : old.in_channels].copy_(old.weight)
    if old.bias is not None:
        new.bias.copy_(old.bias)
    new.weight.requires_grad_(old.weight.requires_grad)
    if new.bias is not None:
        new.bias.requires_grad_(old.bias.requires_grad)
    transformer.patch_embedding = new
    # `out_channels=None` means "same as in_channels" in diffusers: pin it so the output stays 16 channels
    out_channels = transformer.config.out_channels or transformer.config.in_channels
    transformer.register_to_config(in_channels=in_channels, out_channels=out_channels)
    return transformer
