# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""Which model the app runs: resolving `toy` / a folder / a Hub id, its sampling defaults, and a loaded-pipeline cache.

One pipeline is held at a time (a Wan2.1 model is large) and every generation runs under its lock: jobs of several
users wait for each other instead of sharing the model's KV cache and scheduler state.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diffusers.utils import logging

from .errors import AppInputError


logger = logging.get_logger(__name__)

__all__ = ["LoadedModel", "PipelineCache", "model_defaults", "resolve_model"]


def resolve_model(model: str | None) -> str:
    r"""
    The folder or Hub id to load for `model`.

    Args:
        model (`str`): `toy` (the built-in toy preset), a local pipeline folder, or a Hub id (`owner/name`).

    Raises:
        [`AppInputError`]: An empty name, a missing folder, a folder that is not a pipeline, a missing toy preset.
    """
    model = (model or "").strip()
    if not model:
        raise AppInputError("The model is empty: write `toy`, a pipeline folder or a Hub id (owner/name).")
    if model == "toy":
        from ..presets import get_preset_path

        try:
            return get_preset_path("toy")
        except FileNotFoundError as error:
            raise AppInputError(f"The built-in toy preset is missing: {error}") from error
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise AppInputError(
                f"`{model}` is a folder but not a pipeline: it has no model_index.json (save one with "
                "`pipe.save_pretrained(folder)`)."
            )
        return str(path)
    if path.exists():
        raise AppInputError(f"`{model}` is a file, not a pipeline folder.")
    looks_like_hub_id = model.count("/") == 1 and not model.startswith((".", "/", "~")) and " " not in model
    if not looks_like_hub_id:
        raise AppInputError(f"`{model}` is neither a folder that exists nor a Hub id (owner/name).")
    return model


# the settings' defaults where the model folder says nothing (those of `longvid generate`)
def _generation_defaults() -> dict[str, Any]:
    from ..utils import GENERATION_DEFAULTS

    return dict(GENERATION_DEFAULTS)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def model_defaults(model: str) -> dict[str, Any]:
    r"""
    The settings the page starts with for `model`: the folder's `preset.json` (the toy preset has one) over the
    defaults of `longvid generate`, the KV cache clips of `model_index.json` and the T-RFlow window of the scheduler's
    config. A Hub id gets the generic defaults (nothing is downloaded for them).

    Returns:
        `dict`: `height`, `width`, `num_frames`, `num_condition_frames`, `num_inference_steps`, `guidance_scale`,
        `fps`, `max_sequence_length`, `kv_cache_clips`, `tau_low`, `tau_high`.
    """
    path = Path(resolve_model(model))
    defaults = _generation_defaults()
    defaults.update(kv_cache_clips=5, tau_low=0.3, tau_high=0.7)
    if path.is_dir():
        preset = _read_json(path / "preset.json")
        defaults.update({k: v for k, v in preset.items() if k in defaults})
        index = _read_json(path / "model_index.json")
        if isinstance(index.get("kv_cache_clips"), int):
            defaults["kv_cache_clips"] = index["kv_cache_clips"]
        scheduler = _read_json(path / "scheduler" / "scheduler_config.json")
        for key in ("tau_low", "tau_high"):
            if isinstance(scheduler.get(key), (int, float)):
                defaults[key] = float(scheduler[key])
    return defaults


@dataclass
class LoadedModel:
    r"""
    A loaded pipeline and the lock every generation on it holds.

    Args:
        name (`str`): What the user wrote (`toy`, a folder, a Hub id).
        path (`str`): What was loaded.
        pipe ([`LongVideoExtensionPipeline`]): The pipeline, its scheduler a `TRFlowScheduler`.
        device (`str`): Where it runs.
        lock (`threading.Lock`): Held by the job generating with it.
    """

    name: str
    path: str
    pipe: Any
    device: str
    lock: threading.Lock = field(default_factory=threading.Lock)


class PipelineCache:
    r"""
    Loads pipelines on demand and keeps the last one.

    Args:
        device (`str`, *optional*, defaults to `"auto"`): `auto` (cuda if available), `cpu`, `cuda`, ...
        dtype (`str`, *optional*, defaults to `"auto"`): `auto` (bfloat16 on GPU, float32 on CPU), `float32`, ...
    """

    def __init__(self, device: str = "auto", dtype: str = "auto") -> None:
        self.device = device
        self.dtype = dtype
        self._loaded: LoadedModel | None = None
        self._lock = threading.Lock()

    def get(self, model: str) -> LoadedModel:
        """The loaded pipeline of `model`, loading it (and dropping the previous one) when needed."""
        path = resolve_model(model)
        with self._lock:
            if self._loaded is not None and self._loaded.path == path:
                return self._loaded
            if self._loaded is not None:
                # never drop a model a job is generating with, and drop it before loading the next (GPU memory)
                with self._loaded.lock:
                    self._loaded = None
                self._free_memory()
            self._loaded = self._load(model, path)
            return self._loaded

    @staticmethod
    def _free_memory() -> None:
        import gc

        import torch

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def put(self, loaded: LoadedModel) -> None:
        """Use an already loaded pipeline (e.g. one a test prepared) for `loaded.path`."""
        with self._lock:
            self._loaded = loaded

    def _load(self, model: str, path: str) -> LoadedModel:
        import torch

        from ..pipelines.longvideo.pipeline_longvideo_extension import LongVideoExtensionPipeline
        from ..schedulers.scheduling_trflow import TRFlowScheduler

        device = ("cuda" if torch.cuda.is_available() else "cpu") if self.device == "auto" else self.device
        dtype_name = self.dtype if self.dtype != "auto" else ("bfloat16" if device.startswith("cuda") else "float32")
        logger.info(f"Loading {path} ({dtype_name}, {device})")
        try:
            pipe = LongVideoExtensionPipeline.from_pretrained(
                path, dtype={"default": getattr(torch, dtype_name), "vae": torch.float32}
            )
        except (OSError, ValueError, TypeError, KeyError) as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise AppInputError(f"Could not load a pipeline from `{model}`: {first_line}") from error
        if not isinstance(pipe.scheduler, TRFlowScheduler):
            # e.g. Wan's UniPC: T-RFlow with its shift kept, the paper's window (as `longvid generate` does)
            pipe.scheduler = TRFlowScheduler.from_config(pipe.scheduler.config, tau_low=0.3, tau_high=0.7)
        pipe.set_progress_bar_config(disable=True)
        pipe.to(device)
        return LoadedModel(name=model, path=path, pipe=pipe, device=device)
