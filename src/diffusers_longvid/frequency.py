# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""AF, the average frequency of a video (paper Eq. 6, DESIGN §1): the spectral centroid of its frames.

For every frame (grayscale, or every channel), with `F = FFT2(frame)` and the DC term excluded,

    AF(frame) = sum_{u,v} r(u, v) * |F(u, v)| / sum_{u,v} |F(u, v)|

where `r(u, v) = sqrt(f_u^2 + f_v^2) / sqrt(0.5^2 + 0.5^2)` is the radial frequency (`f` in cycles per pixel, as
`numpy.fft.fftfreq` gives it) normalised to 1 at the two-dimensional Nyquist frequency `(0.5, 0.5)`: 0 is DC, 1 the
pixel checkerboard (the highest frequency a pixel grid holds), `1/sqrt(2)` stripes at the Nyquist frequency of one
axis. So AF lies in `[0, 1]`, and it is invariant to brightness and contrast (`a * video + b`, `a != 0`).

The video's AF is the mean over frames (and over channels when `grayscale=False`). A frame or channel without any
variation has an empty non-DC spectrum: its AF is defined as `0.0` (no NaN), so a constant video has AF 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch


__all__ = ["average_frequency", "infer_video_layout", "VIDEO_LAYOUTS"]

# Layouts understood by `average_frequency`: B = batch, F = frames, C = channels, H, W = height, width.
VIDEO_LAYOUTS: tuple[str, ...] = ("HW", "HWC", "FHW", "FHWC", "FCHW", "CFHW", "BFHWC", "BFCHW", "BCFHW")

_CHANNELS = (1, 3)
# ITU-R BT.601 luma, what PIL's `convert("L")` uses
_LUMA = (0.299, 0.587, 0.114)
# frames per FFT batch: bounds the memory of the complex spectrum for long, large videos
_FRAME_CHUNK = 16


def infer_video_layout(shape: Sequence[int], channel_first: bool = False) -> str:
    r"""
    Guess the layout of an array of the given shape (see [`average_frequency`] for the rules).

    Args:
        shape (`Sequence[int]`): The array's shape.
        channel_first (`bool`, *optional*, defaults to `False`):
            Try the channel-first readings of a 4-D or 5-D array (`FCHW`, `CFHW`, `BFCHW`, `BCFHW`) before the
            channel-last one (`FHWC`, `BFHWC`): what a torch tensor from diffusers normally is. A 3-D array is always
            read as `"HWC"` when its last dimension is 1 or 3, else as `"FHW"`.

    Returns:
        `str`: one of `VIDEO_LAYOUTS`.
    """
    shape = tuple(int(n) for n in shape)
    ndim = len(shape)
    if ndim == 2:
        return "HW"
    if ndim == 3:
        return "HWC" if shape[-1] in _CHANNELS else "FHW"
    if ndim == 4:
        first = [name for name, dim in (("FCHW", 1), ("CFHW", 0)) if shape[dim] in _CHANNELS]
        last = "FHWC" if shape[-1] in _CHANNELS else None
    elif ndim == 5:
        first = [name for name, dim in (("BFCHW", 2), ("BCFHW", 1)) if shape[dim] in _CHANNELS]
        last = "BFHWC" if shape[-1] in _CHANNELS else None
    else:
        raise ValueError(f"`video` must have 2 to 5 dimensions, got shape {shape}.")

    if last is not None and not channel_first:
        return last
    if len(first) == 2:
        raise ValueError(
            f"The layout of `video` with shape {shape} is ambiguous ({' or '.join(first)}). Pass `layout=` explicitly."
        )
    if first:
        return first[0]
    if last is not None:
        return last
    raise ValueError(
        f"Cannot infer the layout of `video` with shape {shape}: no dimension of size 1 or 3 where a channel "
        f"dimension can be. Pass `layout=` (one of {', '.join(VIDEO_LAYOUTS)})."
    )


def _to_tensor(video: Any) -> tuple[torch.Tensor, bool]:
    """The video as a tensor, and whether it came as a torch tensor (channel-first by default)."""
    if isinstance(video, torch.Tensor):
        return video.detach(), True
    if isinstance(video, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(video)), False
    if isinstance(video, (list, tuple)):
        if len(video) == 0:
            raise ValueError("`video` is an empty list.")
        try:
            from PIL import Image
        except ImportError:  # pragma: no cover - Pillow comes with diffusers
            Image = None
        if Image is not None and isinstance(video[0], Image.Image):
            # one video as PIL frames -> (F, H, W, 3)
            return torch.from_numpy(np.stack([np.asarray(frame.convert("RGB")) for frame in video])), False
        # a batch (e.g. diffusers' `output_type="pil"`: a list of lists of PIL frames) or a list of arrays
        tensors = [_to_tensor(item) for item in video]
        if len({tuple(t.shape) for t, _ in tensors}) != 1:
            raise ValueError("All items of the list `video` must have the same shape.")
        return torch.stack([t for t, _ in tensors]), tensors[0][1]
    raise TypeError(
        f"`video` must be a `numpy.ndarray`, a `torch.Tensor` or a list of PIL images, got {type(video).__name__}."
    )


def _to_bfchw(video: torch.Tensor, layout: str) -> torch.Tensor:
    """Permute/unsqueeze to (B, F, C, H, W)."""
    target = "BFCHW"
    for axis in ("B", "F", "C"):
        if axis not in layout:
            video = video.unsqueeze(0)
            layout = axis + layout
    return video.permute(*[layout.index(axis) for axis in target])


def _frame_af(frames: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """AF of each (..., H, W) plane; 0 for a plane without variation."""
    flat = frames.flatten(-2)
    constant = flat.amax(dim=-1) == flat.amin(dim=-1)
    # subtracting the mean removes the DC term (up to rounding); it is zeroed below anyway
    centred = frames - frames.mean(dim=(-2, -1), keepdim=True)
    magnitude = torch.fft.fft2(centred).abs()
    magnitude[..., 0, 0] = 0.0
    total = magnitude.sum(dim=(-2, -1))
    weighted = (magnitude * radius).sum(dim=(-2, -1))
    af = weighted / torch.where(constant | (total == 0), torch.ones_like(total), total)
    return torch.where(constant | (total == 0), torch.zeros_like(af), af)


def average_frequency(
    video: np.ndarray | torch.Tensor | Sequence[Any],
    layout: str | None = None,
    grayscale: bool = True,
    reduction: Literal["mean", "video", "frame"] = "mean",
) -> float | np.ndarray:
    r"""
    AF, the average frequency of a video or image: the spectral centroid of its frames (paper Eq. 6).

    See the module docstring for the formula. Higher means more high-frequency content (sharper, noisier); a blurred
    video has a lower AF than the original, a constant one 0.

    Args:
        video (`np.ndarray`, `torch.Tensor`, `list[PIL.Image.Image]` or a list of those):
            The frames, in any value range (AF does not depend on it). A list of PIL images is one video (read as
            `FHWC`); a list of lists of PIL images (diffusers' `output_type="pil"`) or of arrays/tensors is stacked
            along a new first dimension.
        layout (`str`, *optional*):
            The dimension order, one of `"HW"`, `"HWC"`, `"FHW"`, `"FHWC"`, `"FCHW"`, `"CFHW"`, `"BFHWC"`
            (diffusers' `output_type="np"`), `"BFCHW"` (diffusers' `output_type="pt"`), `"BCFHW"` (the VAE's output).
            If not given it is inferred from the shape, with channels of size 1 or 3:
            2-D is `HW`; 3-D is `HWC` if the last dimension is 1 or 3, else `FHW`; 4-D and 5-D read a last dimension
            of 1 or 3 as channels for numpy arrays and PIL input, and `FCHW`/`BFCHW` (then `CFHW`/`BCFHW`) first for
            torch tensors. When two channel-first readings both fit (e.g. a torch tensor of shape `(1, 3, 3, H, W)`),
            a `ValueError` asks for `layout`.
        grayscale (`bool`, *optional*, defaults to `True`):
            Convert RGB frames to luma (ITU-R BT.601) before the FFT. If `False`, every channel is measured and the
            channels are averaged. Ignored for single-channel input.
        reduction (`str`, *optional*, defaults to `"mean"`):
            `"mean"` returns one `float` (the mean over videos and frames), `"video"` an array of shape `(B,)`,
            `"frame"` an array of shape `(B, F)`.

    Returns:
        `float` or `np.ndarray` (float64): the AF, in `[0, 1]`.
    """
    if layout is not None and layout not in VIDEO_LAYOUTS:
        raise ValueError(f"`layout` must be one of {', '.join(VIDEO_LAYOUTS)}, got {layout!r}.")
    if reduction not in ("mean", "video", "frame"):
        raise ValueError(f"`reduction` must be 'mean', 'video' or 'frame', got {reduction!r}.")
    tensor, is_torch = _to_tensor(video)
    if layout is None:
        layout = infer_video_layout(tensor.shape, channel_first=is_torch)
    elif tensor.ndim != len(layout):
        raise ValueError(
            f"`layout={layout!r}` needs {len(layout)} dimensions, but `video` has shape {tuple(tensor.shape)}."
        )
    channels = tensor.shape[layout.index("C")] if "C" in layout else 1
    if channels not in _CHANNELS:
        raise ValueError(
            f"`video` with `layout={layout!r}` has {channels} channels; 1 (grayscale) or 3 (RGB) are supported."
        )
    frames = _to_bfchw(tensor, layout)
    height, width = frames.shape[-2:]
    if height < 2 and width < 2:
        raise ValueError(f"Frames of `video` must be at least 2 pixels in one dimension, got {height}x{width}.")

    # MPS has no float64; elsewhere float64 keeps the sums over large frames exact enough
    dtype = torch.float32 if frames.device.type == "mps" else torch.float64
    fu = torch.fft.fftfreq(height, dtype=dtype, device=frames.device)
    fv = torch.fft.fftfreq(width, dtype=dtype, device=frames.device)
    radius = torch.sqrt(fu[:, None] ** 2 + fv[None, :] ** 2) / math.sqrt(0.5)

    batch, num_frames = frames.shape[:2]
    per_frame = torch.empty(batch, num_frames, dtype=dtype)
    for start in range(0, num_frames, _FRAME_CHUNK):
        chunk = frames[:, start : start + _FRAME_CHUNK].to(dtype)
        if channels == 3 and grayscale:
            luma = torch.tensor(_LUMA, dtype=dtype, device=chunk.device).view(1, 1, 3, 1, 1)
            chunk = (chunk * luma).sum(dim=2, keepdim=True)
        per_frame[:, start : start + _FRAME_CHUNK] = _frame_af(chunk, radius).mean(dim=2).cpu()

    result = per_frame.numpy()
    if reduction == "frame":
        return result
    if reduction == "video":
        return result.mean(axis=1)
    return float(result.mean())
