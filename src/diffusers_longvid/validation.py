# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""One validation layer for what users hand to the package: media (`image=` / `video=`) and numbers.

The pipeline's `check_inputs` and every `longvid` command go through these functions, so a bad input gets the same
clear error wherever it enters. Every error is a `TypeError` (wrong kind of object) or a `ValueError` (right kind,
wrong value), and its message names the argument in backticks. This module imports only numpy, torch and PIL.

Media conventions (one rule per type, nothing guessed from the values):

| input | layout | values |
| --- | --- | --- |
| `PIL.Image.Image` | any 8-bit mode (`RGB`, `RGBA`, `L`, `LA`, `P`, `PA`, `1`, `CMYK`, `YCbCr`) | converted to RGB; alpha is dropped |
| `np.ndarray` | channels last: image `(H, W)`, `(H, W, C)`, `(B, H, W, C)`; video `(F, H, W, C)`, `(B, F, H, W, C)` | integer dtypes: 8-bit values 0-255; float dtypes: 0-1 |
| `torch.Tensor` | channels first: image `(H, W)`, `(C, H, W)`, `(B, C, H, W)`; video `(F, C, H, W)`, `(B, F, C, H, W)` | as numpy |

`C` is 3 (RGB) or 1 (grey, repeated to RGB); 4 channels are refused (drop alpha with `[..., :3]`): an array has no
mode that says whether its 4th channel is alpha. Floats above 1 (0-255 floats) and negative floats ([-1, 1]) are
refused with the fix in the message, never rescaled silently; NaN / inf, empty axes (0 frames) and `bool` / complex /
object dtypes are refused. A video may also be a list of frames (PIL images, `(H, W, C)` arrays, `(C, H, W)` tensors)
or a list of such lists (a batch).

Validated media come back in a canonical form that diffusers' `VideoProcessor` reads without ambiguity: RGB PIL
images as given, or float32 arrays / tensors in `[0, 1]` with 3 channels and a batch axis.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import PIL.Image
import torch


__all__ = [
    "check_float",
    "check_int",
    "check_seed",
    "is_int",
    "load_image_file",
    "validate_image",
    "validate_video",
]

# PIL modes whose `convert("RGB")` is a faithful 8-bit RGB image
_PIL_MODES = {"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr"}
_PIL_ALPHA_MODES = {"LA", "La", "PA", "RGBA", "RGBa"}
# how far outside [0, 1] a float may be and still be taken as rounding (then clipped)
_FLOAT_TOLERANCE = 1e-3
# the largest seed `torch.Generator.manual_seed` takes
MAX_SEED = 2**64 - 1


# ------------------------------------------------------------------------------------------------------------ numbers
def check_float(
    name: str,
    value: Any,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
    allow_none: bool = False,
) -> float | None:
    """A finite real number (not a bool), optionally bounded; returned as `float`.

    Args:
        name (`str`): The argument's name for the message, e.g. `"guidance_scale"` or `"--fps"`.
        value: The value to check.
        minimum (`float`, *optional*): The smallest value accepted.
        maximum (`float`, *optional*): The largest value accepted.
        exclusive_minimum (`bool`, *optional*, defaults to `False`): Refuse `value == minimum` too.
        allow_none (`bool`, *optional*, defaults to `False`): Accept (and return) `None`.

    Raises:
        `TypeError`: not a real number. `ValueError`: NaN, infinite or out of bounds.
    """
    if value is None and allow_none:
        return None
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.dtype.is_complex:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a number, got {type(value).__name__}.")
    try:
        number = float(value)
    except OverflowError:
        raise ValueError(
            f"`{name}` must be a finite number, got an integer of {int(value).bit_length()} bits."
        ) from None
    if not math.isfinite(number):
        raise ValueError(f"`{name}` must be a finite number, got {number}.")
    if minimum is not None and (number < minimum or (exclusive_minimum and number == minimum)):
        relation = ">" if exclusive_minimum else ">="
        raise ValueError(f"`{name}` must be {relation} {minimum}, got {number}.")
    if maximum is not None and number > maximum:
        raise ValueError(f"`{name}` must be <= {maximum}, got {number}.")
    return number


def is_int(value: Any, allow_numpy: bool = False) -> bool:
    """Whether `value` is an integer: a Python `int` (with `allow_numpy`, also a numpy integer), never a `bool`.

    The one integer test of the package (configs that are saved as JSON keep `allow_numpy=False`)."""
    types = (numbers.Integral, np.integer) if allow_numpy else int
    return isinstance(value, types) and not isinstance(value, bool)


def check_int(
    name: str, value: Any, minimum: int | None = None, maximum: int | None = None, allow_none: bool = False
) -> int | None:
    """An integer (Python or numpy, not a bool), optionally bounded; returned as `int`.

    Raises:
        `TypeError`: not an integer. `ValueError`: out of bounds.
    """
    if value is None and allow_none:
        return None
    if not is_int(value, allow_numpy=True):
        raise TypeError(f"`{name}` must be an int, got {type(value).__name__}.")
    number = int(value)
    if minimum is not None and number < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {_short_int(number)}.")
    if maximum is not None and number > maximum:
        raise ValueError(f"`{name}` must be <= {maximum}, got {_short_int(number)}.")
    return number


def check_seed(name: str, value: Any) -> int:
    """A seed for `torch.Generator.manual_seed`: an int in `[0, 2**64 - 1]`."""
    return check_int(name, value, minimum=0, maximum=MAX_SEED)


def _short_int(number: int) -> str:
    text = str(number) if abs(number) < 10**30 else f"an integer of {number.bit_length()} bits"
    return text


# -------------------------------------------------------------------------------------------------------------- media
def validate_image(
    image: Any, name: str = "image"
) -> PIL.Image.Image | list[PIL.Image.Image] | np.ndarray | torch.Tensor:
    r"""
    Check an image (or a batch of images) and return it in canonical form.

    Args:
        image (`PIL.Image.Image`, `list[PIL.Image.Image]`, `np.ndarray` or `torch.Tensor`):
            See the module docstring for the accepted layouts and value ranges.
        name (`str`, *optional*, defaults to `"image"`): The argument's name in error messages.

    Returns:
        An RGB PIL image, a list of them, a float32 `(B, H, W, 3)` array or a float32 `(B, 3, H, W)` tensor in
        `[0, 1]`.

    Raises:
        `TypeError` / `ValueError`: naming `name`, with the accepted forms.
    """
    if isinstance(image, PIL.Image.Image):
        return _pil_rgb(image, name)
    if isinstance(image, (list, tuple)):
        if len(image) == 0:
            raise ValueError(f"`{name}` is an empty list: pass a PIL image, an array or a tensor.")
        if not all(isinstance(item, PIL.Image.Image) for item in image):
            kinds = sorted({type(item).__name__ for item in image})
            raise TypeError(f"`{name}` as a list must hold PIL images (a batch), got a list of {', '.join(kinds)}.")
        images = [_pil_rgb(item, f"{name}[{i}]") for i, item in enumerate(image)]
        _same_size(images, name)
        return images
    if isinstance(image, np.ndarray):
        array = _pixel_values(image, name)
        if array.ndim == 2:
            array = array[None, :, :, None]
        elif array.ndim == 3:
            array = array[None]
        elif array.ndim != 4:
            raise ValueError(
                f"`{name}` as an array must be (H, W), (H, W, 3) or (B, H, W, 3) (channels last), got shape "
                f"{tuple(image.shape)}."
            )
        return _channels(array, -1, name, tuple(image.shape), "(H, W, 3)")
    if isinstance(image, torch.Tensor):
        tensor = _pixel_values(image, name)
        if tensor.ndim == 2:
            tensor = tensor[None, None]
        elif tensor.ndim == 3:
            tensor = tensor[None]
        elif tensor.ndim != 4:
            raise ValueError(
                f"`{name}` as a tensor must be (H, W), (3, H, W) or (B, 3, H, W) (channels first), got shape "
                f"{tuple(image.shape)}."
            )
        return _channels(tensor, 1, name, tuple(image.shape), "(3, H, W)")
    raise TypeError(
        f"`{name}` must be a PIL image, a list of PIL images, a np.ndarray or a torch.Tensor, got "
        f"{type(image).__name__}."
    )


def validate_video(
    video: Any, name: str = "video", num_last_frames: int | None = None
) -> list[PIL.Image.Image] | list[list[PIL.Image.Image]] | np.ndarray | torch.Tensor:
    r"""
    Check a video (or a batch of videos) and return it in canonical form.

    Args:
        video (`list[PIL.Image.Image]`, `list[np.ndarray]`, `list[torch.Tensor]`, `np.ndarray` or `torch.Tensor`):
            Frames in time order; see the module docstring for the accepted layouts and value ranges. A list of such
            lists is a batch.
        name (`str`, *optional*, defaults to `"video"`): The argument's name in error messages.
        num_last_frames (`int`, *optional*):
            Check and return only the last `num_last_frames` frames (what conditions a clip), so that a long video
            is never converted whole; its layout is still checked.

    Returns:
        A list of RGB PIL frames, a list of such lists, a float32 `(B, F, H, W, 3)` array or a float32
        `(B, F, 3, H, W)` tensor in `[0, 1]`.

    Raises:
        `TypeError` / `ValueError`: naming `name`, with the accepted forms.
    """
    if num_last_frames is not None:
        num_last_frames = check_int("num_last_frames", num_last_frames, minimum=1)
    if isinstance(video, np.ndarray):
        if video.ndim not in (4, 5):
            hint = " (grey frames? add a channel axis: `video[..., None]`)" if video.ndim == 3 else ""
            raise ValueError(
                f"`{name}` as an array must be (F, H, W, 3) or (B, F, H, W, 3) (frames, channels last), got shape "
                f"{tuple(video.shape)}{hint}."
            )
        array = video[None] if video.ndim == 4 else video
        array = _pixel_values(array[:, -num_last_frames:] if num_last_frames else array, name)
        return _channels(array, -1, name, tuple(video.shape), "(F, H, W, 3)")
    if isinstance(video, torch.Tensor):
        if video.ndim not in (4, 5):
            raise ValueError(
                f"`{name}` as a tensor must be (F, 3, H, W) or (B, F, 3, H, W) (frames, channels first), got shape "
                f"{tuple(video.shape)}."
            )
        tensor = video[None] if video.ndim == 4 else video
        tensor = _pixel_values(tensor[:, -num_last_frames:] if num_last_frames else tensor, name)
        return _channels(tensor, 2, name, tuple(video.shape), "(F, 3, H, W)")
    if isinstance(video, (list, tuple)):
        if len(video) == 0:
            raise ValueError(f"`{name}` has 0 frames: pass at least one frame.")
        if all(isinstance(item, (list, tuple)) for item in video):  # a batch of frame lists
            videos = [_frame_list(item, f"{name}[{i}]", num_last_frames) for i, item in enumerate(video)]
            if any(isinstance(v, np.ndarray) for v in videos) or any(isinstance(v, torch.Tensor) for v in videos):
                raise TypeError(f"`{name}` as a batch (a list of lists) must hold PIL frames.")
            sizes = {(len(v), v[0].size) for v in videos}
            if len(sizes) > 1:
                raise ValueError(f"`{name}`: the videos of a batch must have the same frame count and size.")
            return videos
        return _frame_list(video, name, num_last_frames)
    raise TypeError(
        f"`{name}` must be a list of frames (PIL images, arrays or tensors), a np.ndarray or a torch.Tensor, got "
        f"{type(video).__name__}."
    )


def load_image_file(path: Any, name: str = "--image") -> PIL.Image.Image:
    """Open an image file and return it as a validated RGB PIL image (decoded now, not lazily).

    Raises:
        `ValueError`: the file is missing, a folder, or not an image PIL can decode.
    """
    import os

    text = os.fspath(path)
    if os.path.isdir(text):
        raise ValueError(f"`{name}` {text!r} is a folder, not an image file.")
    if not os.path.isfile(text):
        raise ValueError(f"`{name}` {text!r} does not exist.")
    try:
        with PIL.Image.open(text) as handle:
            handle.load()
            image = handle.copy()
    except (OSError, ValueError, SyntaxError, PIL.Image.DecompressionBombError) as error:
        raise ValueError(f"`{name}` {text!r} is not an image file that PIL can read ({error}).") from None
    return _pil_rgb(image, name)


# ------------------------------------------------------------------------------------------------------------ helpers
def _pil_rgb(image: PIL.Image.Image, name: str) -> PIL.Image.Image:
    if image.mode not in _PIL_MODES:
        raise ValueError(
            f"`{name}` is a PIL image of mode {image.mode!r}, not an 8-bit image: convert it to 'RGB' yourself "
            f"(accepted modes: {', '.join(sorted(_PIL_MODES))})."
        )
    if image.width < 1 or image.height < 1:
        raise ValueError(f"`{name}` is an empty image ({image.width}x{image.height}).")
    if image.mode == "RGB":
        return image
    # alpha is dropped (as `diffusers.utils.load_image` does): the model has no notion of transparency
    return image.convert("RGB")


def _same_size(images: list[PIL.Image.Image], name: str) -> None:
    sizes = {image.size for image in images}
    if len(sizes) > 1:
        raise ValueError(f"`{name}`: all images / frames must have the same size, got {sorted(sizes)}.")


def _frame_list(
    frames: Any, name: str, num_last_frames: int | None
) -> list[PIL.Image.Image] | np.ndarray | torch.Tensor:
    if len(frames) == 0:
        raise ValueError(f"`{name}` has 0 frames: pass at least one frame.")
    frames = list(frames)[-num_last_frames:] if num_last_frames else list(frames)
    if all(isinstance(f, PIL.Image.Image) for f in frames):
        images = [_pil_rgb(f, f"{name}[{i}]") for i, f in enumerate(frames)]
        _same_size(images, name)
        return images
    if all(isinstance(f, np.ndarray) for f in frames):
        if len({f.dtype for f in frames}) > 1:  # a uint8 frame beside a float frame: which rule would apply?
            raise ValueError(f"`{name}` as a list of arrays must hold frames of one dtype.")
        shapes = {f.shape for f in frames}
        if len(shapes) > 1 or frames[0].ndim not in (2, 3):
            raise ValueError(
                f"`{name}` as a list of arrays must hold (H, W, 3) frames of one shape, got shapes "
                f"{sorted(shapes)[:3]}."
            )
        stacked = np.stack([f if f.ndim == 3 else f[..., None] for f in frames])
        return validate_video(stacked, name)
    if all(isinstance(f, torch.Tensor) for f in frames):
        if len({f.dtype for f in frames}) > 1:
            raise ValueError(f"`{name}` as a list of tensors must hold frames of one dtype.")
        shapes = {tuple(f.shape) for f in frames}
        if len(shapes) > 1 or frames[0].ndim not in (2, 3):
            raise ValueError(
                f"`{name}` as a list of tensors must hold (3, H, W) frames of one shape, got shapes "
                f"{sorted(shapes)[:3]}."
            )
        stacked = torch.stack([f if f.ndim == 3 else f[None] for f in frames])
        return validate_video(stacked, name)
    kinds = sorted({type(f).__name__ for f in frames})
    raise TypeError(
        f"`{name}` as a list must hold frames of one kind (PIL images, np.ndarrays or torch.Tensors), got "
        f"{', '.join(kinds)}."
    )


def _pixel_values(data: np.ndarray | torch.Tensor, name: str) -> np.ndarray | torch.Tensor:
    """`data` as float32 in [0, 1] after the dtype's rule (integers: 0-255, floats: 0-1); any shape."""
    is_tensor = isinstance(data, torch.Tensor)
    if is_tensor:
        dtype_name = str(data.dtype).replace("torch.", "")
        if data.dtype == torch.bool or data.dtype.is_complex:
            raise TypeError(f"`{name}` has dtype {dtype_name}: pass uint8 (0-255) or float (0-1) pixel values.")
        is_float = data.dtype.is_floating_point
        data = data.detach()
    else:
        dtype_name = str(data.dtype)
        if data.dtype.kind not in "uif":
            raise TypeError(f"`{name}` has dtype {dtype_name}: pass uint8 (0-255) or float (0-1) pixel values.")
        is_float = data.dtype.kind == "f"
    if any(int(size) == 0 for size in data.shape):
        raise ValueError(f"`{name}` is empty (shape {tuple(data.shape)}): it has 0 frames, images or pixels.")
    if is_tensor:
        values = data.to(device="cpu", dtype=torch.float64 if is_float else torch.int64)
        low, high = float(values.min()), float(values.max())
        finite = bool(torch.isfinite(values).all()) if is_float else True
    else:
        values = data
        if is_float:
            finite = bool(np.isfinite(values).all())
            low, high = (float(np.nanmin(values)), float(np.nanmax(values))) if finite else (0.0, 0.0)
        else:
            low, high, finite = float(values.min()), float(values.max()), True
    if not finite:
        raise ValueError(f"`{name}` holds NaN or infinite values.")
    if not is_float:
        if low < 0 or high > 255:
            raise ValueError(
                f"`{name}` has integer dtype {dtype_name} with values in [{low:g}, {high:g}]: integer pixels are "
                "8-bit values in [0, 255]."
            )
        scaled = values.to(torch.float32) / 255.0 if is_tensor else values.astype(np.float32) / np.float32(255.0)
        return scaled
    if low < -_FLOAT_TOLERANCE or high > 1.0 + _FLOAT_TOLERANCE:
        if low >= 0 and high <= 255:
            hint = "they look like 0-255 values: pass `x / 255` or a uint8 array"
        elif low >= -1 - _FLOAT_TOLERANCE and high <= 1 + _FLOAT_TOLERANCE:
            hint = "they look like [-1, 1] values: pass `(x + 1) / 2`"
        else:
            hint = "float pixels are in [0, 1]"
        raise ValueError(f"`{name}` has float values in [{low:g}, {high:g}]; {hint}.")
    if is_tensor:
        return data.to(torch.float32).clamp(0.0, 1.0)
    return np.clip(data.astype(np.float32), 0.0, 1.0)


def _channels(data: np.ndarray | torch.Tensor, axis: int, name: str, shape: tuple[int, ...], layout: str):
    channels = int(data.shape[axis])
    if channels == 3:
        return data
    if channels == 1:
        if isinstance(data, torch.Tensor):
            return data.repeat_interleave(3, dim=axis)
        return np.repeat(data, 3, axis=axis)
    if channels == 4:
        fix = "`x[..., :3]`" if axis == -1 else f"`x[{', '.join([':'] * (axis % data.ndim))}, :3]`"
        raise ValueError(
            f"`{name}` has 4 channels (shape {shape}): drop the alpha channel with {fix}; an array's 4th channel "
            "is not taken as alpha."
        )
    side = "last" if axis == -1 else "first"
    raise ValueError(f"`{name}` must have 3 (RGB) or 1 (grey) channels {side}, like {layout}; got shape {shape}.")
