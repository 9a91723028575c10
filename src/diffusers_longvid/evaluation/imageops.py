# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""The plain image operations of the offline backend in numpy, so that only the motion dimensions need OpenCV.

Each function reproduces one OpenCV call the offline proxies used to make, and is tested against it
(tests/evaluation/test_imageops.py):

| here | OpenCV | agreement |
| --- | --- | --- |
| [`resize_area`] | `cv2.resize(..., interpolation=cv2.INTER_AREA)` (downscaling) | `uint8`: identical; float: rounding |
| [`rgb_to_luma`] | `cv2.cvtColor(float32, cv2.COLOR_RGB2GRAY)` | float32 rounding |
| [`correlate_separable`] | `cv2.sepFilter2D(float32, -1, kx, ky)` | float32 rounding |
| [`correlate2d`] | `cv2.filter2D(float32, -1, kernel)` | float32 rounding |
| [`box_blur`] | `cv2.blur(float32, ksize)` | float32 rounding |
| [`sobel`] | `cv2.Sobel(float32, -1, dx, dy, ksize=3)` | float32 rounding |

"float32 rounding": the sums are taken in float32 as OpenCV does, in a different order, so results differ by a few
units in the last place (measured on 0..255 inputs: at most 6e-5 where the outputs stay in 0..255 — luma, float
resize, Gaussian, box — and 5e-4 for Sobel / Laplacian-type outputs in the thousands; the tests allow 1e-3). The
offline scores of a video agree with the former OpenCV implementation to ~1e-6.

[`resize_area`] follows OpenCV's area interpolation step by step: each destination pixel is the average of the
source pixels its footprint covers, weighted by the covered fraction (OpenCV's `computeResizeAreaTab` weights, in
float32), summed in OpenCV's order in float32 and, for `uint8`, rounded half to even; integer factors take
OpenCV's block-mean path (an exact integer sum, `(sum + 2) >> 2` for 2x2 blocks of 1, 3 or 4 channels, else
`round(sum * (1 / area))` in float32). For `uint8` images the result is **identical** to OpenCV's; for float32
it agrees to float32 rounding.

The borders are OpenCV's: `"reflect"` (`cv2.BORDER_REFLECT`, `fedcba|abcdef|fedcba`, numpy's `"symmetric"`) and
`"reflect_101"` (`cv2.BORDER_REFLECT_101`, OpenCV's default, `fedcb|abcdef|edcba`, numpy's `"reflect"`).
One implementation is used whether OpenCV is installed or not, so scores never depend on it.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np


__all__ = ["resize_area", "rgb_to_luma", "correlate_separable", "correlate2d", "box_blur", "sobel"]

Border = Literal["reflect", "reflect_101"]
_NUMPY_PAD_MODE = {"reflect": "symmetric", "reflect_101": "reflect"}
# ITU-R BT.601 luma weights, as OpenCV's float RGB2GRAY (R, G, B).
_LUMA_WEIGHTS = (np.float32(0.299), np.float32(0.587), np.float32(0.114))


def _area_taps(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OpenCV's `computeResizeAreaTab` for one axis: `(index, weight, valid)`, each `(dst, taps)`, in source order."""
    scale = 1.0 / (dst / src)  # OpenCV: scale_x = 1. / inv_scale_x, inv_scale_x = (double)dsize / ssize
    taps: list[list[tuple[int, np.float32]]] = []
    for dx in range(dst):
        fsx1 = dx * scale
        fsx2 = fsx1 + scale
        cell = min(scale, src - fsx1)
        sx1, sx2 = math.ceil(fsx1), math.floor(fsx2)
        sx2 = min(sx2, src - 1)
        sx1 = min(sx1, sx2)
        row = []
        if sx1 - fsx1 > 1e-3:
            row.append((sx1 - 1, np.float32((sx1 - fsx1) / cell)))
        row.extend((sx, np.float32(1.0 / cell)) for sx in range(sx1, sx2))
        if fsx2 - sx2 > 1e-3:
            row.append((sx2, np.float32(min(min(fsx2 - sx2, 1.0), cell) / cell)))
        taps.append(row)
    width = max(len(row) for row in taps)
    index = np.zeros((dst, width), dtype=np.int64)
    weight = np.zeros((dst, width), dtype=np.float32)
    valid = np.zeros((dst, width), dtype=bool)
    for dx, row in enumerate(taps):
        for k, (sx, alpha) in enumerate(row):
            index[dx, k], weight[dx, k], valid[dx, k] = sx, alpha, True
    return index, weight, valid


def _weighted_taps(
    x: np.ndarray,
    axis: int,
    index: np.ndarray,
    weight: np.ndarray,
    valid: np.ndarray,
    work: type = np.float32,
    channels: int = 1,
) -> np.ndarray:
    """`sum_k x[index[:, k]] * weight[:, k]` along `axis` of 3-D `x`, tap by tap in `work` precision (OpenCV's order).

    With `channels > 1` the axis interleaves `channels` values per position (`W * C`). Integer `x` is converted to
    `work` exactly, inside the products. The missing taps of a row (rows have different tap counts) add
    `x[index[:, 0]] * 0`, which changes no finite sum; they are masked instead when `x` holds non-finite values.
    """
    finite = np.issubdtype(x.dtype, np.integer) or bool(np.isfinite(x).all())
    offsets = np.arange(channels)
    shape = [1, 1, 1]
    shape[axis] = index.shape[0] * channels
    out = term = None
    for k in range(index.shape[1]):
        rows = np.where(valid[:, k], index[:, k], index[:, 0])
        columns = (rows[:, None] * channels + offsets).reshape(-1)
        coefficients = np.repeat(np.where(valid[:, k], weight[:, k], 0).astype(work), channels).reshape(shape)
        gathered = np.take(x, columns, axis=axis)
        target = np.multiply(gathered, coefficients, out=term if k >= 2 else None, dtype=work)
        if not finite and not valid[:, k].all():
            target[(slice(None),) * axis + (np.repeat(~valid[:, k], channels),)] = 0
        if k == 0:
            out = target
        else:
            out += target
            term = target
    return out


def _round_to(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """OpenCV's `saturate_cast`: round half to even and clip for integer types, a plain cast otherwise."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype)


def resize_area(images: np.ndarray, size: tuple[int, int], channels_last: bool = True) -> np.ndarray:
    """Downscale images with area interpolation, as `cv2.resize(image, (width, height), interpolation=INTER_AREA)`.

    Args:
        images (`np.ndarray`): `uint8` or floating images, `(..., H, W, C)` when `channels_last`, else `(..., H, W)`;
            leading axes (frames) are resized independently.
        size (`tuple[int, int]`): The output `(height, width)` (numpy order, not OpenCV's `(width, height)`), each
            at least 1 and at most the input's.
        channels_last (`bool`, *optional*, defaults to `True`): Whether the last axis holds channels.

    Returns:
        `np.ndarray` of the input's dtype (float64 stays float64, other floats become float32), `(..., h, w[, C])`.
        `uint8` results equal OpenCV's exactly; float results agree to float32 rounding.
    """
    images = np.asarray(images)
    if images.dtype == np.bool_ or not (
        np.issubdtype(images.dtype, np.integer) or np.issubdtype(images.dtype, np.floating)
    ):
        raise ValueError(f"`images` must hold integers or floats, got dtype {images.dtype}.")
    h_axis = images.ndim - (3 if channels_last else 2)
    if h_axis < 0:
        raise ValueError(f"`images` must have at least {3 if channels_last else 2} axes, got shape {images.shape}.")
    w_axis = h_axis + 1
    src_h, src_w = images.shape[h_axis], images.shape[w_axis]
    dst_h, dst_w = (int(s) for s in size)
    if not (1 <= dst_h <= src_h and 1 <= dst_w <= src_w):
        raise ValueError(f"`size` {tuple(size)} must be between (1, 1) and the input size {(src_h, src_w)}.")
    # integers keep their type; float64 stays float64, other floats become float32 (OpenCV has no float16 resize)
    floating_not_64 = np.issubdtype(images.dtype, np.floating) and images.dtype != np.float64
    out_dtype = np.dtype(np.float32) if floating_not_64 else images.dtype
    if (dst_h, dst_w) == (src_h, src_w):
        return images.astype(out_dtype, copy=True)
    work = np.float64 if images.dtype == np.float64 else np.float32

    scale_x, scale_y = 1.0 / (dst_w / src_w), 1.0 / (dst_h / src_h)
    iscale_x, iscale_y = round(scale_x), round(scale_y)
    if abs(scale_x - iscale_x) < np.finfo(np.float64).eps and abs(scale_y - iscale_y) < np.finfo(np.float64).eps:
        return _resize_area_integer(images, h_axis, iscale_y, iscale_x, channels_last, out_dtype, work)

    x_taps = _area_taps(src_w, dst_w)
    y_taps = _area_taps(src_h, dst_h)
    lead = images.shape[:h_axis]
    channels = images.shape[-1] if channels_last else 1
    flat = images.reshape((-1, src_h, src_w * channels))
    rows = _weighted_taps(flat, 2, *x_taps, work=work, channels=channels)  # OpenCV: each source row first
    out = _weighted_taps(rows, 1, *y_taps, work=work)
    return _round_to(out, out_dtype).reshape(lead + (dst_h, dst_w) + ((channels,) if channels_last else ()))


def _resize_area_integer(
    images: np.ndarray, h_axis: int, fy: int, fx: int, channels_last: bool, out_dtype: np.dtype, work: type
) -> np.ndarray:
    """OpenCV's `resizeAreaFast`: the mean of each `fy x fx` block (the size divides exactly)."""
    shape = images.shape
    blocks = images.reshape(
        shape[:h_axis] + (shape[h_axis] // fy, fy, shape[h_axis + 1] // fx, fx) + shape[h_axis + 2 :]
    )
    row_axis, col_axis = h_axis + 1, h_axis + 3
    area = fx * fy
    if np.issubdtype(images.dtype, np.integer):
        total = blocks.sum(axis=(row_axis, col_axis), dtype=np.int64)
        channels = shape[-1] if channels_last else 1
        if images.dtype == np.uint8 and fx == fy == 2 and channels in (1, 3, 4):  # OpenCV's SIMD path
            return ((total + 2) >> 2).astype(out_dtype)
        return _round_to(total.astype(np.float32) * (np.float32(1) / np.float32(area)), out_dtype)
    # float: OpenCV sums the block row by row, in groups of four, in the working precision
    values = np.moveaxis(blocks, (row_axis, col_axis), (-2, -1)).astype(work, copy=False)
    values = values.reshape(values.shape[:-2] + (area,))
    total = None
    for k in range(0, area - area % 4, 4):
        group = values[..., k] + values[..., k + 1] + values[..., k + 2] + values[..., k + 3]
        total = group if total is None else total + group
    for k in range(area - area % 4, area):
        total = values[..., k] if total is None else total + values[..., k]
    return (total * (work(1) / work(area))).astype(out_dtype)


def rgb_to_luma(images: np.ndarray) -> np.ndarray:
    """BT.601 luma of RGB images `(..., 3)`: `0.299 R + 0.587 G + 0.114 B` in float32, as OpenCV's `RGB2GRAY` on float32.

    Returns:
        `np.ndarray` float32 `(...)`, in the input's range.
    """
    images = np.asarray(images)
    if images.shape[-1:] != (3,):
        raise ValueError(f"`images` must have 3 channels (RGB) in the last axis, got shape {images.shape}.")
    rgb = images.astype(np.float32, copy=False)
    r, g, b = _LUMA_WEIGHTS
    return rgb[..., 0] * r + rgb[..., 1] * g + rgb[..., 2] * b


def _pad(images: np.ndarray, before: tuple[int, int], after: tuple[int, int], border: Border) -> np.ndarray:
    if border not in _NUMPY_PAD_MODE:
        raise ValueError(f"`border` must be one of {list(_NUMPY_PAD_MODE)}, got {border!r}.")
    widths = [(0, 0)] * (images.ndim - 2) + [(before[0], after[0]), (before[1], after[1])]
    return np.pad(images, widths, mode=_NUMPY_PAD_MODE[border])


def _as_image_stack(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim < 2:
        raise ValueError(f"`images` must have at least 2 axes (..., H, W), got shape {images.shape}.")
    return images


def _check_kernel(kernel: np.ndarray, name: str, ndim: int) -> np.ndarray:
    kernel = np.asarray(kernel, dtype=np.float32)
    kernel = kernel.reshape(-1) if ndim == 1 else kernel
    if kernel.ndim != ndim or kernel.size == 0:
        raise ValueError(f"`{name}` must be a non-empty {ndim}-D kernel, got shape {np.shape(kernel)}.")
    return kernel


def _correlate_axis(padded: np.ndarray, kernel: np.ndarray, axis: int, length: int) -> np.ndarray:
    """Valid 1-D correlation of `padded` along `axis` (float32 accumulation, as OpenCV), `length` outputs."""
    out = np.zeros(padded.shape[:axis] + (length,) + padded.shape[axis + 1 :], dtype=np.float32)
    for k, coefficient in enumerate(kernel):
        if coefficient != 0:
            out += coefficient * np.take(padded, np.arange(k, k + length), axis=axis)
    return out


def correlate_separable(
    images: np.ndarray, kernel_x: np.ndarray, kernel_y: np.ndarray, border: Border = "reflect_101"
) -> np.ndarray:
    """Separable correlation, as `cv2.sepFilter2D(image, -1, kernel_x, kernel_y, borderType=...)`.

    Row kernel `kernel_x` along the width, then column kernel `kernel_y` along the height, anchored at their centre
    (`len // 2`), not flipped (correlation, as OpenCV).

    Args:
        images (`np.ndarray`): `(..., H, W)`; leading axes are independent images.
        kernel_x (`np.ndarray`), kernel_y (`np.ndarray`): 1-D kernels.
        border (`str`, *optional*, defaults to `"reflect_101"`): `"reflect"` or `"reflect_101"` (see the module).

    Returns:
        `np.ndarray` float32 `(..., H, W)` (accumulated in float32, as OpenCV).
    """
    images = _as_image_stack(images)
    kx, ky = _check_kernel(kernel_x, "kernel_x", 1), _check_kernel(kernel_y, "kernel_y", 1)
    height, width = images.shape[-2:]
    ay, ax = ky.size // 2, kx.size // 2
    padded = _pad(images.astype(np.float32), (ay, ax), (ky.size - 1 - ay, kx.size - 1 - ax), border)
    rows = _correlate_axis(padded, kx, padded.ndim - 1, width)
    return _correlate_axis(rows, ky, padded.ndim - 2, height).astype(np.float32)


def correlate2d(images: np.ndarray, kernel: np.ndarray, border: Border = "reflect_101") -> np.ndarray:
    """2-D correlation, as `cv2.filter2D(image, -1, kernel, borderType=...)` (anchor at the centre, not flipped).

    Args:
        images (`np.ndarray`): `(..., H, W)`.
        kernel (`np.ndarray`): 2-D kernel `(kh, kw)`.
        border (`str`, *optional*, defaults to `"reflect_101"`): `"reflect"` or `"reflect_101"`.

    Returns:
        `np.ndarray` float32 `(..., H, W)` (accumulated in float32, as OpenCV).
    """
    images = _as_image_stack(images)
    kernel = _check_kernel(kernel, "kernel", 2)
    height, width = images.shape[-2:]
    kh, kw = kernel.shape
    ay, ax = kh // 2, kw // 2
    padded = _pad(images.astype(np.float32), (ay, ax), (kh - 1 - ay, kw - 1 - ax), border)
    out = np.zeros(images.shape, dtype=np.float32)
    for i in range(kh):
        for j in range(kw):
            if kernel[i, j] != 0:
                out += kernel[i, j] * padded[..., i : i + height, j : j + width]
    return out.astype(np.float32)


def box_blur(images: np.ndarray, ksize: tuple[int, int], border: Border = "reflect_101") -> np.ndarray:
    """Normalised box filter, as `cv2.blur(image, (kw, kh), borderType=...)`: the mean over a `kh x kw` window.

    Args:
        images (`np.ndarray`): `(..., H, W)`.
        ksize (`tuple[int, int]`): The window `(height, width)` (numpy order, not OpenCV's `(width, height)`).
        border (`str`, *optional*, defaults to `"reflect_101"`): `"reflect"` or `"reflect_101"`.

    Returns:
        `np.ndarray` float32 `(..., H, W)`.
    """
    kh, kw = (int(k) for k in ksize)
    if kh < 1 or kw < 1:
        raise ValueError(f"`ksize` must be positive, got {tuple(ksize)}.")
    return correlate_separable(images, np.full(kw, 1.0 / kw), np.full(kh, 1.0 / kh), border)


_SOBEL_3 = {0: (1.0, 2.0, 1.0), 1: (-1.0, 0.0, 1.0), 2: (1.0, -2.0, 1.0)}


def sobel(images: np.ndarray, dx: int, dy: int, border: Border = "reflect_101") -> np.ndarray:
    """3x3 Sobel derivative, as `cv2.Sobel(image, -1, dx, dy, ksize=3, borderType=...)` (scale 1, no delta).

    Args:
        images (`np.ndarray`): `(..., H, W)`.
        dx (`int`), dy (`int`): Derivative orders along the width and the height, each 0, 1 or 2, not both 0.
        border (`str`, *optional*, defaults to `"reflect_101"`): `"reflect"` or `"reflect_101"` (OpenCV's default).

    Returns:
        `np.ndarray` float32 `(..., H, W)`.
    """
    if dx not in _SOBEL_3 or dy not in _SOBEL_3 or dx + dy == 0:
        raise ValueError(f"`dx` and `dy` must be 0, 1 or 2 and not both 0, got {dx!r}, {dy!r}.")
    return correlate_separable(images, np.array(_SOBEL_3[dx]), np.array(_SOBEL_3[dy]), border)
