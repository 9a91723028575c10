# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""Resumable long-video generation: the state written after every finished clip (`GenerationState`).

A state folder (`state_dir=` of [`LongVideoExtensionPipeline.generate_clips`], `longvid generate --state-dir`) holds

```
state.json                       manifest, replaced atomically last: progress, settings, KV plan, file names
carry_00002.safetensors          what clip 3 needs from clip 2: its last pixel frames and the generators' RNG states
latents/clip_00002.safetensors   the final latents of every finished clip (to re-decode finished clips)
kv/clip_00001.safetensors        the K/V of every history clip held by the KV cache: written once, deleted on eviction
```

Every file is written to a temporary name, flushed to disk and renamed; `state.json` is replaced only when the files
it names are complete, and the files it no longer names are deleted afterwards. An interruption at any moment
therefore leaves the state of the last finished clip (see `docs/pipeline.md`, "Resuming").
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers.utils import logging
from safetensors.torch import load_file, save_file

logger = logging.get_logger(__name__)  # pylint: disable=invalid-name

__all__ = ["GenerationState", "GenerationStateWriter", "tensor_fingerprint"]

STATE_FORMAT = "diffusers_longvid.generation_state"
STATE_VERSION = 1
MANIFEST_NAME = "state.json"
_KV_DIR = "kv"
_LATENTS_DIR = "latents"


def tensor_fingerprint(tensor: torch.Tensor | None) -> str | None:
    """SHA-256 of a tensor's dtype, shape and bytes (`None` for `None`): compares inputs across runs cheaply."""
    if tensor is None:
        return None
    tensor = tensor.detach().to("cpu").contiguous()
    digest = hashlib.sha256(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
    digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _jsonable(value: Any) -> Any:
    """`value` after a JSON round trip (tuples become lists, dtypes / paths / enums strings), for exact comparison."""

    def default(obj: Any) -> Any:
        if isinstance(obj, (torch.dtype, torch.device, os.PathLike)):
            return str(obj)
        if hasattr(obj, "value") and isinstance(obj.value, (str, int)):  # enums
            return obj.value
        if hasattr(obj, "to_dict"):
            return obj.to_dict()
        return repr(obj)

    return json.loads(json.dumps(value, default=default))


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _save_tensors_atomic(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    plain: dict[str, torch.Tensor] = {}
    storages: set[int] = set()
    for name, tensor in tensors.items():
        tensor = tensor.detach().to("cpu").contiguous()
        storage = tensor.untyped_storage()
        # safetensors refuses tensors sharing memory; views of larger buffers would also save the whole buffer
        if storage.data_ptr() in storages or storage.nbytes() != tensor.numel() * tensor.element_size():
            tensor = tensor.clone()
        storages.add(tensor.untyped_storage().data_ptr())
        plain[name] = tensor
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(plain, str(tmp), metadata={"format": STATE_FORMAT, **metadata})
    _fsync(tmp)
    os.replace(tmp, path)


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ValueError(f"The generation state is incomplete: {str(path)!r} is missing.")
    return load_file(str(path))


@dataclass
class GenerationState:
    r"""
    The state of a long-video generation after its clip `num_clips_done - 1`: everything the next clip needs to be
    generated exactly as in an uninterrupted run. Written by the pipeline after every finished clip when `state_dir`
    is given; read with `GenerationState.load(state_dir)`.

    Args:
        num_clips_done (`int`): Finished clips; the next clip to generate has this index.
        settings (`dict`):
            The call arguments (and model facts) that must be the same to resume, JSON-normalised: prompts,
            resolution, steps, guidance, KV-cache options, the scheduler's config, fingerprints of `image` / `video` /
            `latents`, ...
        prompts (`list[str]`): The prompts of the finished clips.
        clips (`list[dict]`): [`LongVideoClip.info`] of each finished clip.
        kv_plan (`list[dict]`): The KV storage plan summary so far (see [`LongVideoPipelineOutput`]).
        next_frame (`int`): First stitched frame of the next clip.
        latent_offset (`int`): Global latent index (RoPE temporal offset) of the next clip's first latent frame.
        condition_pixels (`torch.Tensor`, *optional*):
            The last `num_condition_frames` decoded frames of the last finished clip, `(batch, 3, k, height, width)`
            in `[-1, 1]`: the condition of the next clip.
        generator_states (`list[torch.Tensor]`): `generator.get_state()` of each generator after the last clip.
        generator_devices (`list[str]`): The device of each generator.
        device (`str`, *optional*): The execution device of the run (resuming elsewhere warns: last-bit differences).
        memory (`dict`, *optional*):
            The cross-clip memory without its tensors: the storage planner's state, the cached blocks and cache
            config, and which file holds each stored clip's K/V (`load_memory_state` reads them).
        state_dir (`Path`, *optional*): The folder the state was loaded from.
    """

    num_clips_done: int
    settings: dict[str, Any]
    prompts: list[str]
    clips: list[dict[str, Any]]
    kv_plan: list[dict[str, Any]]
    next_frame: int
    latent_offset: int
    condition_pixels: torch.Tensor | None
    generator_states: list[torch.Tensor] = field(default_factory=list)
    generator_devices: list[str] = field(default_factory=list)
    device: str | None = None
    memory: dict[str, Any] | None = None
    state_dir: Path | None = None

    # ------------------------------------------------------------------ reading
    @staticmethod
    def exists(state_dir: str | os.PathLike) -> bool:
        """Whether `state_dir` holds a saved generation state."""
        return (Path(state_dir) / MANIFEST_NAME).is_file()

    @classmethod
    def load(cls, state_dir: str | os.PathLike) -> GenerationState:
        """Read the manifest and the small tensors of a state folder (the K/V stay on disk until
        `load_memory_state`)."""
        state_dir = Path(state_dir)
        manifest_path = state_dir / MANIFEST_NAME
        if not manifest_path.is_file():
            raise ValueError(
                f"`state_dir` {str(state_dir)!r} holds no generation state ({MANIFEST_NAME} is missing)."
            )
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{str(manifest_path)!r} is not valid JSON: {error}.") from None
        if manifest.get("format") != STATE_FORMAT:
            raise ValueError(f"{str(manifest_path)!r} is not a diffusers-longvid generation state.")
        if manifest.get("version") != STATE_VERSION:
            raise ValueError(
                f"{str(manifest_path)!r} has state version {manifest.get('version')}; this version of "
                f"diffusers-longvid reads version {STATE_VERSION}."
            )
        carry = _load_tensors(state_dir / manifest["carry_file"])
        num_generators = int(manifest["num_generators"])
        return cls(
            num_clips_done=int(manifest["num_clips_done"]),
            settings=manifest["settings"],
            prompts=list(manifest["prompts"]),
            clips=list(manifest["clips"]),
            kv_plan=list(manifest["kv_plan"]),
            next_frame=int(manifest["next_frame"]),
            latent_offset=int(manifest["latent_offset"]),
            condition_pixels=carry.get("condition_pixels"),
            generator_states=[carry[f"generator.{i}"] for i in range(num_generators)],
            generator_devices=list(manifest["generator_devices"]),
            device=manifest.get("device"),
            memory=manifest.get("memory"),
            state_dir=state_dir,
        )

    def clip_latents(self, clip_index: int) -> torch.Tensor:
        """The final latents of finished clip `clip_index`, `(batch, 16, latent_frames, h, w)` on the CPU."""
        if not 0 <= clip_index < self.num_clips_done:
            raise ValueError(f"`clip_index` must be in [0, {self.num_clips_done}), got {clip_index}.")
        return _load_tensors(self._folder / _LATENTS_DIR / f"clip_{clip_index:05d}.safetensors")["latents"]

    def load_memory_state(self) -> dict[str, Any] | None:
        """The cross-clip memory with its K/V read from disk (CPU tensors), for `ClipMemory.import_state`."""
        if self.memory is None:
            return None
        clips = {
            int(clip): _load_tensors(self._folder / name) for clip, name in self.memory["cache"]["files"].items()
        }
        cache = {key: value for key, value in self.memory["cache"].items() if key != "files"}
        return {"planner": self.memory["planner"], "cache": {**cache, "clips": clips}}

    @property
    def _folder(self) -> Path:
        if self.state_dir is None:
            raise ValueError("This `GenerationState` was not loaded from a folder.")
        return self.state_dir

    def check_settings(self, settings: dict[str, Any]) -> None:
        """Raise a `ValueError` naming every setting that differs from the saved run.

        Args:
            settings (`dict`): The settings of the run that wants to resume (as the pipeline builds them).
        """
        current = _jsonable(settings)
        differing = [
            name for name in sorted(set(self.settings) | set(current)) if self.settings.get(name) != current.get(name)
        ]
        if not differing:
            return
        details = "; ".join(
            f"`{name}` (saved {_short(self.settings.get(name))}, now {_short(current.get(name))})"
            for name in differing
        )
        raise ValueError(
            f"Cannot resume from `state_dir` {str(self.state_dir)!r}: these settings differ from the saved run: "
            f"{details}. Pass the same arguments as the interrupted run, or start a new run in an empty `state_dir`."
        )


class GenerationStateWriter:
    r"""
    Writes the [`GenerationState`] into `state_dir` after every finished clip (used by the pipeline).

    Per clip it writes the clip's latents, the K/V of clips the KV cache stored since the last clip, a new carry file,
    then the manifest, and then deletes what the manifest no longer names (evicted clips' K/V, the previous carry).

    Args:
        state_dir (`str` or `os.PathLike`): The state folder (created).
        resumed (`GenerationState`, *optional*): The state a resumed run continues from; `None` starts a new state
            (the folder must not hold one).
    """

    def __init__(self, state_dir: str | os.PathLike, resumed: GenerationState | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if resumed is None:
            if GenerationState.exists(self.state_dir):
                raise ValueError(f"`state_dir` {str(self.state_dir)!r} already holds a generation state.")
            # files left by a run that never finished a clip are overwritten as the new run reaches them
            self._kv_files: dict[int, str] = {}
            self._carry_file: str | None = None
        else:
            files = (resumed.memory or {}).get("cache", {}).get("files", {})
            self._kv_files = {int(c): name for c, name in files.items()}
            manifest = json.loads((self.state_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
            self._carry_file = manifest["carry_file"]

    def write(
        self,
        state: GenerationState,
        clip_latents: torch.Tensor,
        memory_state: dict[str, Any] | None,
        generators: list[torch.Generator],
    ) -> None:
        """Save the state after clip `state.num_clips_done - 1`.

        Args:
            state (`GenerationState`): The state to save; its `memory`, `generator_states` and `generator_devices`
                are filled from the next arguments.
            clip_latents (`torch.Tensor`): The final latents of the clip just finished.
            memory_state (`dict`, *optional*): `ClipMemory.export_state()` (`None` without KV cache).
            generators (`list[torch.Generator]`): The generators whose states the next clip starts from.
        """
        clip = state.num_clips_done - 1
        folder = self.state_dir
        _save_tensors_atomic(
            folder / _LATENTS_DIR / f"clip_{clip:05d}.safetensors", {"latents": clip_latents}, {"clip": str(clip)}
        )

        memory_meta = None
        kv_files: dict[int, str] = {}
        if memory_state is not None:
            cache = memory_state["cache"]
            for stored_clip, tensors in cache["clips"].items():
                name = self._kv_files.get(stored_clip, f"{_KV_DIR}/clip_{stored_clip:05d}.safetensors")
                if stored_clip not in self._kv_files:  # a clip's K/V never change once stored: write them once
                    _save_tensors_atomic(folder / name, tensors, {"clip": str(stored_clip)})
                kv_files[stored_clip] = name
            memory_meta = {
                "planner": memory_state["planner"],
                "cache": {
                    "block_indices": list(cache["block_indices"]),
                    "config": cache["config"],
                    "files": {str(c): name for c, name in sorted(kv_files.items())},
                },
            }

        carry_file = f"carry_{clip:05d}.safetensors"
        carry = {f"generator.{i}": generator.get_state() for i, generator in enumerate(generators)}
        if state.condition_pixels is not None:
            carry["condition_pixels"] = state.condition_pixels
        _save_tensors_atomic(folder / carry_file, carry, {"clip": str(clip)})

        manifest = {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "num_clips_done": state.num_clips_done,
            "settings": _jsonable(state.settings),
            "prompts": list(state.prompts),
            "clips": _jsonable(state.clips),
            "kv_plan": _jsonable(state.kv_plan),
            "next_frame": state.next_frame,
            "latent_offset": state.latent_offset,
            "num_generators": len(generators),
            "generator_devices": [str(generator.device) for generator in generators],
            "device": state.device,
            "carry_file": carry_file,
            "memory": memory_meta,
        }
        _write_json_atomic(folder / MANIFEST_NAME, manifest)

        # only now is it safe to delete what the new manifest does not name
        for stale_clip in set(self._kv_files) - set(kv_files):
            (folder / self._kv_files[stale_clip]).unlink(missing_ok=True)
        if self._carry_file is not None and self._carry_file != carry_file:
            (folder / self._carry_file).unlink(missing_ok=True)
        self._kv_files, self._carry_file = kv_files, carry_file
        state.memory = memory_meta
        state.state_dir = folder
