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

`state.json` also holds the SHA-256 of every file it names, and `GenerationState.load` verifies them all (and the
manifest's own consistency) before any work: a missing, truncated or edited file is a `GenerationStateError` naming
it, never a silently different video (see `docs/reliability.md`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from diffusers.utils import logging
from safetensors.torch import load_file, save_file

from ...memory import clip_plan_from_dict
from ...selection.planner import ClipPlan
from ...utils import write_json_atomic
from .pipeline_output import LongVideoClip


if TYPE_CHECKING:
    from .call import LongVideoCall

logger = logging.get_logger(__name__)  # pylint: disable=invalid-name

__all__ = [
    "GenerationState",
    "GenerationStateError",
    "GenerationStateWriter",
    "ResumableRun",
    "file_sha256",
    "tensor_fingerprint",
]

STATE_FORMAT = "diffusers_longvid.generation_state"
STATE_VERSION = 1
MANIFEST_NAME = "state.json"
_KV_DIR = "kv"
_LATENTS_DIR = "latents"


class GenerationStateError(ValueError):
    """A state folder is missing, damaged or inconsistent; the message names the file (and what is wrong with it)."""


def file_sha256(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


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


def _save_tensors_atomic(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> str:
    """Write a safetensors file atomically; returns its SHA-256."""
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
    checksum = file_sha256(tmp)
    os.replace(tmp, path)
    return checksum


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise GenerationStateError(f"The generation state is incomplete: {str(path)!r} is missing.")
    try:
        return load_file(str(path))
    except Exception as error:  # safetensors raises its own SafetensorError (not an OSError) for a damaged file
        raise GenerationStateError(f"The generation state file {str(path)!r} cannot be read: {error}.") from None


def _clip_plans(entries: list[Any], path: Path) -> list[ClipPlan]:
    """The manifest's `kv_plan` dicts as typed entries."""
    try:
        return [clip_plan_from_dict(entry) for entry in entries]
    except ValueError as error:
        raise GenerationStateError(f"{str(path)!r} is damaged: an entry of `kv_plan` is unreadable. {error}") from None


def _manifest_field(manifest: dict[str, Any], key: str, kind: type | tuple[type, ...], path: Path) -> Any:
    value = manifest.get(key)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        raise GenerationStateError(
            f"{str(path)!r} is damaged: `{key}` is {_short(value, 40)}, not a {getattr(kind, '__name__', kind)}."
        )
    return value


def _check_manifest(manifest: dict[str, Any], path: Path) -> None:
    """The manifest's own consistency: counts, frame ranges and the files it must name."""
    done = _manifest_field(manifest, "num_clips_done", int, path)
    clips = _manifest_field(manifest, "clips", list, path)
    prompts = _manifest_field(manifest, "prompts", list, path)
    _manifest_field(manifest, "settings", dict, path)
    _manifest_field(manifest, "kv_plan", list, path)
    next_frame = _manifest_field(manifest, "next_frame", int, path)
    _manifest_field(manifest, "latent_offset", int, path)
    num_generators = _manifest_field(manifest, "num_generators", int, path)
    devices = _manifest_field(manifest, "generator_devices", list, path)
    carry = _manifest_field(manifest, "carry_file", str, path)
    if done < 1 or done != len(clips) or done != len(prompts):
        raise GenerationStateError(
            f"{str(path)!r} is inconsistent: `num_clips_done` is {done} but it records {len(clips)} clips and "
            f"{len(prompts)} prompts."
        )
    script = manifest["settings"].get("prompt")
    if isinstance(script, list) and done > len(script):
        raise GenerationStateError(
            f"{str(path)!r} is inconsistent: `num_clips_done` is {done} but the script has {len(script)} clips."
        )
    last = clips[-1] if isinstance(clips[-1], dict) else {}
    frame_range = last.get("frame_range")
    if not (isinstance(frame_range, list) and len(frame_range) == 2 and frame_range[1] == next_frame):
        raise GenerationStateError(
            f"{str(path)!r} is inconsistent: `next_frame` is {next_frame} but the last clip ends at "
            f"{_short(frame_range, 40)}."
        )
    if num_generators < 1 or num_generators != len(devices):
        raise GenerationStateError(
            f"{str(path)!r} is inconsistent: {num_generators} generators, {len(devices)} devices."
        )
    if not all(isinstance(device, str) for device in devices):
        raise GenerationStateError(f"{str(path)!r} is damaged: `generator_devices` must be device names.")
    for device in devices:
        try:
            torch.device(device)
        except (RuntimeError, TypeError, ValueError):
            raise GenerationStateError(f"{str(path)!r} is damaged: {device!r} is not a device.") from None
    if manifest["latent_offset"] < 0:
        raise GenerationStateError(f"{str(path)!r} is damaged: `latent_offset` is negative.")
    if not all(isinstance(p, str) for p in prompts) or not all(isinstance(c, dict) for c in clips):
        raise GenerationStateError(f"{str(path)!r} is damaged: `prompts` must be strings and `clips` objects.")
    if carry != f"carry_{done - 1:05d}.safetensors":
        raise GenerationStateError(f"{str(path)!r} is inconsistent: `carry_file` {carry!r} is not clip {done - 1}'s.")


def _named_files(manifest: dict[str, Any]) -> list[str]:
    """Every file of the state folder that the manifest needs, relative to the folder."""
    names = [manifest["carry_file"]]
    names += [f"{_LATENTS_DIR}/clip_{clip:05d}.safetensors" for clip in range(manifest["num_clips_done"])]
    memory = manifest.get("memory") or {}
    cache = memory.get("cache") if isinstance(memory, dict) else None
    files = cache.get("files") if isinstance(cache, dict) else None
    if memory and not (isinstance(files, dict) and all(isinstance(name, str) for name in files.values())):
        raise GenerationStateError(f"{MANIFEST_NAME} is damaged: `memory.cache.files` is not a map of file names.")
    names += list((files or {}).values())
    return names


def _verify_files(state_dir: Path, manifest: dict[str, Any]) -> None:
    checksums = manifest.get("checksums")
    if checksums is None:
        logger.warning(
            f"The generation state in {str(state_dir)!r} has no checksums (written by an older version): its files "
            "are only checked to exist."
        )
        checksums = {}
    elif not isinstance(checksums, dict):
        raise GenerationStateError(f"{str(state_dir / MANIFEST_NAME)!r} is damaged: `checksums` is not an object.")
    for name in _named_files(manifest):
        if not isinstance(name, str) or os.path.isabs(name) or ".." in Path(name).parts:
            raise GenerationStateError(
                f"{str(state_dir / MANIFEST_NAME)!r} names a file outside the folder: {name!r}."
            )
        path = state_dir / name
        if not path.is_file():
            raise GenerationStateError(
                f"The generation state in {str(state_dir)!r} is damaged: {name!r} is missing. Start a new job in an "
                "empty state folder (or restore the file)."
            )
        expected = checksums.get(name)
        if checksums and expected is None:
            raise GenerationStateError(f"{str(state_dir / MANIFEST_NAME)!r} is damaged: no checksum for {name!r}.")
        if expected is not None and file_sha256(path) != expected:
            raise GenerationStateError(
                f"The generation state in {str(state_dir)!r} is damaged: {name!r} does not match its checksum (it was "
                "truncated or changed after it was written). Start a new job in an empty state folder (or restore "
                "the file)."
            )


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
        clip_plans (`list[ClipPlan]`):
            The KV storage plan of each finished clip ([`ProbedClipPlan`] with the attention probe on); `kv_plan` is
            the same as dicts.
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
    clip_plans: list[ClipPlan]
    next_frame: int
    latent_offset: int
    condition_pixels: torch.Tensor | None
    generator_states: list[torch.Tensor] = field(default_factory=list)
    generator_devices: list[str] = field(default_factory=list)
    device: str | None = None
    memory: dict[str, Any] | None = None
    state_dir: Path | None = None

    @classmethod
    def initial(
        cls,
        condition_pixels: torch.Tensor | None,
        settings: dict[str, Any] | None = None,
        device: str | None = None,
    ) -> GenerationState:
        """The state before clip 0 (no clip finished): where a new run starts. `condition_pixels` are the frames
        given to condition the first clip (`image` / `video`), or `None`."""
        return cls(
            num_clips_done=0,
            settings=settings if settings is not None else {},
            prompts=[],
            clips=[],
            clip_plans=[],
            next_frame=0,
            latent_offset=0,
            condition_pixels=condition_pixels,
            device=device,
        )

    @property
    def kv_plan(self) -> list[dict[str, Any]]:
        """The KV storage plan summary so far, one dict per finished clip (see [`LongVideoPipelineOutput`]): the
        `to_dict()` of `clip_plans`."""
        return [entry.to_dict() for entry in self.clip_plans]

    # ------------------------------------------------------------------ reading
    @staticmethod
    def exists(state_dir: str | os.PathLike) -> bool:
        """Whether `state_dir` holds a saved generation state."""
        return (Path(state_dir) / MANIFEST_NAME).is_file()

    @classmethod
    def load(cls, state_dir: str | os.PathLike, verify: bool = True) -> GenerationState:
        """Read the manifest and the small tensors of a state folder (the K/V stay on disk until
        `load_memory_state`).

        Args:
            state_dir (`str` or `os.PathLike`): The state folder.
            verify (`bool`, *optional*, defaults to `True`):
                Check every file the manifest names against its SHA-256 (latents, carry, K/V) before returning.

        Raises:
            `GenerationStateError` (a `ValueError`): the folder holds no state, or a file is missing, damaged or
            inconsistent with the manifest; the message names it.
        """
        state_dir = Path(state_dir)
        manifest_path = state_dir / MANIFEST_NAME
        if state_dir.exists() and not state_dir.is_dir():
            raise GenerationStateError(f"`state_dir` {str(state_dir)!r} is a file, not a folder.")
        if not manifest_path.is_file():
            raise GenerationStateError(
                f"`state_dir` {str(state_dir)!r} holds no generation state ({MANIFEST_NAME} is missing)."
            )
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
            raise GenerationStateError(f"{str(manifest_path)!r} is not valid JSON: {error}.") from None
        if not isinstance(manifest, dict) or manifest.get("format") != STATE_FORMAT:
            raise GenerationStateError(f"{str(manifest_path)!r} is not a diffusers-longvid generation state.")
        if manifest.get("version") != STATE_VERSION:
            raise GenerationStateError(
                f"{str(manifest_path)!r} has state version {manifest.get('version')}; this version of "
                f"diffusers-longvid reads version {STATE_VERSION}."
            )
        _check_manifest(manifest, manifest_path)
        if verify:
            _verify_files(state_dir, manifest)
        carry = _load_tensors(state_dir / manifest["carry_file"])
        num_generators = int(manifest["num_generators"])
        missing = [f"generator.{i}" for i in range(num_generators) if f"generator.{i}" not in carry]
        if missing:
            raise GenerationStateError(f"{str(state_dir / manifest['carry_file'])!r} lacks {missing[0]!r}.")
        return cls(
            num_clips_done=int(manifest["num_clips_done"]),
            settings=manifest["settings"],
            prompts=list(manifest["prompts"]),
            clips=list(manifest["clips"]),
            clip_plans=_clip_plans(manifest["kv_plan"], manifest_path),
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
        try:
            files = self.memory["cache"]["files"]
            clips = {int(clip): _load_tensors(self._folder / name) for clip, name in files.items()}
            cache = {key: value for key, value in self.memory["cache"].items() if key != "files"}
            return {"planner": self.memory["planner"], "cache": {**cache, "clips": clips}}
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            if isinstance(error, GenerationStateError):
                raise
            raise GenerationStateError(
                f"The `memory` of the generation state in {str(self.state_dir)!r} is damaged ({error!r})."
            ) from None

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
            self._checksums: dict[str, str] = {}
        else:
            files = (resumed.memory or {}).get("cache", {}).get("files", {})
            self._kv_files = {int(c): name for c, name in files.items()}
            manifest = json.loads((self.state_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
            self._carry_file = manifest["carry_file"]
            self._checksums = dict(manifest.get("checksums") or {})
            for name in _named_files(manifest):  # an older state without checksums: hash what it has now
                if name not in self._checksums:
                    self._checksums[name] = file_sha256(self.state_dir / name)

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
        checksums = dict(self._checksums)
        latents_file = f"{_LATENTS_DIR}/clip_{clip:05d}.safetensors"
        checksums[latents_file] = _save_tensors_atomic(
            folder / latents_file, {"latents": clip_latents}, {"clip": str(clip)}
        )

        memory_meta = None
        kv_files: dict[int, str] = {}
        if memory_state is not None:
            cache = memory_state["cache"]
            for stored_clip, tensors in cache["clips"].items():
                name = self._kv_files.get(stored_clip, f"{_KV_DIR}/clip_{stored_clip:05d}.safetensors")
                if stored_clip not in self._kv_files:  # a clip's K/V never change once stored: write them once
                    checksums[name] = _save_tensors_atomic(folder / name, tensors, {"clip": str(stored_clip)})
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
        checksums[carry_file] = _save_tensors_atomic(folder / carry_file, carry, {"clip": str(clip)})
        named = {carry_file, *kv_files.values()} | {
            f"{_LATENTS_DIR}/clip_{c:05d}.safetensors" for c in range(state.num_clips_done)
        }
        checksums = {name: checksums[name] for name in sorted(named) if name in checksums}

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
            "checksums": checksums,
        }
        write_json_atomic(folder / MANIFEST_NAME, manifest)

        # only now is it safe to delete what the new manifest does not name
        for stale_clip in set(self._kv_files) - set(kv_files):
            (folder / self._kv_files[stale_clip]).unlink(missing_ok=True)
        if self._carry_file is not None and self._carry_file != carry_file:
            (folder / self._carry_file).unlink(missing_ok=True)
        self._kv_files, self._carry_file, self._checksums = kv_files, carry_file, checksums
        state.memory = memory_meta
        state.state_dir = folder


class ResumableRun:
    r"""
    The resumable side of one generation (`state_dir=` / `resume=` of the pipeline): the saved state a resumed run
    continues from, the settings that must not change, and the writer that saves the state after every clip.

    The pipeline opens it before any model work (`ResumableRun(state_dir, resume)`, then `generators` and `open`);
    the clip loop then calls `restore` (a resumed run), `remaining_prompts` and, after every finished clip, `save`.

    Args:
        state_dir (`str` or `os.PathLike`): The state folder.
        resume (`bool`): Continue the state saved in `state_dir`; otherwise the folder must not hold one.

    Raises:
        `GenerationStateError`: `resume=True` and the folder holds no readable state. `ValueError`: `resume=False`
        and the folder already holds a state.
    """

    def __init__(self, state_dir: str | os.PathLike, resume: bool) -> None:
        self.state_dir = state_dir
        self.resumed: GenerationState | None = None
        if resume:
            self.resumed = GenerationState.load(state_dir)
        elif GenerationState.exists(state_dir):
            raise ValueError(
                f"`state_dir` {str(state_dir)!r} already holds the state of a run: pass `resume=True` to continue "
                "it, or choose an empty folder."
            )
        self.settings: dict[str, Any] = {}
        self._writer: GenerationStateWriter | None = None

    def generators(
        self, generator: torch.Generator | list[torch.Generator] | None
    ) -> torch.Generator | list[torch.Generator]:
        """The generator(s) of the run. Every clip's noise must be reproducible from a saved RNG state, so without a
        `generator` a new run gets its own CPU generator (seeded from torch's global RNG), and a resumed run gets
        generators on the saved devices. The saved RNG states are set by `restore`."""
        resumed = self.resumed
        if resumed is None:
            if generator is None:
                generator = torch.Generator("cpu").manual_seed(int(torch.randint(0, 2**62, (1,)).item()))
            return generator
        if generator is None:
            generators = [torch.Generator(device) for device in resumed.generator_devices]
            return generators if resumed.settings.get("generator", {}).get("list") else generators[0]
        for g, device in zip(generator if isinstance(generator, list) else [generator], resumed.generator_devices):
            if torch.device(g.device).type != torch.device(device).type:
                raise ValueError(
                    f"`generator` is on {g.device} but the interrupted run's was on {device}: an RNG state restores "
                    "only on the same device type."
                )
        return generator

    @staticmethod
    def settings_of(
        call: LongVideoCall,
        pipeline: Any,
        first_condition: torch.Tensor | None,
        clip_selector: Any = None,
        kv_cache_config: Any = None,
    ) -> dict[str, Any]:
        """What must be equal for a resumed run to continue the interrupted one exactly, keyed by argument name.
        Model weights are not hashed (too slow for a 1.3B model); their configs, dtypes and LoRA adapters are
        compared.

        Args:
            call (`LongVideoCall`): The checked call (with the run's generators).
            pipeline (`LongVideoExtensionPipeline`): Its components and `condition_fill` are part of the settings.
            first_condition (`torch.Tensor`, *optional*): The frames conditioning the first clip (fingerprinted).
            clip_selector (`ClipSelector`, *optional*): The selector of the run (`None` without KV cache).
            kv_cache_config (`CrossClipKVCacheConfig`, *optional*): The cache config of the run (`None` without).
        """

        def component(module: Any) -> dict[str, Any]:
            config = getattr(module, "config", {}) or {}
            entry = {
                "class": type(module).__name__,
                "config": {k: v for k, v in dict(config).items() if not k.startswith("_")},
                "dtype": str(getattr(module, "dtype", None)),
            }
            peft_config = getattr(module, "peft_config", None)
            if peft_config:
                entry["lora_adapters"] = sorted(peft_config)
            return entry

        generator = call.generator
        generators = generator if isinstance(generator, list) else [generator]
        fingerprint = tensor_fingerprint(first_condition)
        return {
            "prompt": call.prompts,  # `None` for an iterator: its prompts are compared clip by clip
            "negative_prompt": call.negative_prompt,
            "height": call.height,
            "width": call.width,
            "num_frames": call.num_frames,
            "num_condition_frames": call.num_condition_frames,
            "num_inference_steps": call.num_inference_steps,
            "guidance_scale": float(call.guidance_scale),
            "num_videos_per_prompt": call.num_videos_per_prompt,
            "generator": {"count": len(generators), "list": isinstance(generator, list)},
            "image": fingerprint if call.image is not None else None,
            "video": fingerprint if call.image is None else None,
            "latents": tensor_fingerprint(call.latents),
            "attention_kwargs": call.attention_kwargs,
            "max_sequence_length": call.max_sequence_length,
            "kv_cache_clips": call.kv_cache_clips,
            "max_cached_clips": call.max_cached_clips,
            "clip_selector": None if clip_selector is None else clip_selector.to_config(),
            "kv_cache_config": None if kv_cache_config is None else kv_cache_config.to_dict(),
            "condition_fill": pipeline.config.condition_fill,
            "scheduler": component(pipeline.scheduler),
            "transformer": component(pipeline.transformer),
            "vae": component(pipeline.vae),
            "text_encoder": {"class": type(pipeline.text_encoder).__name__, "dtype": str(pipeline.text_encoder.dtype)},
        }

    def open(self, settings: dict[str, Any], device: str) -> None:
        """Check `settings` against the saved run's (a resumed run) and open the state writer.

        Args:
            settings (`dict`): What must be equal for a resumed run to continue the interrupted one exactly.
            device (`str`): The execution device of this run.
        """
        self.settings = settings
        resumed = self.resumed
        if resumed is not None:
            resumed.check_settings(settings)
            if resumed.device is not None and resumed.device != device:
                logger.warning(
                    f"Resuming on {device} a run saved on {resumed.device}: the remaining clips may differ from "
                    "an uninterrupted run in the last bits of floating-point rounding."
                )
        self._writer = GenerationStateWriter(self.state_dir, resumed)

    @staticmethod
    def check_memory(memory: Any) -> None:
        """A resumable run saves the cross-clip memory after every clip: it must have `export_state`."""
        if memory is not None and not hasattr(memory, "export_state"):
            raise TypeError(f"`state_dir` needs a clip memory with `export_state`; {type(memory).__name__} has none.")

    def restore(
        self,
        memory: Any,
        generators: list[torch.Generator],
        device: torch.device,
        vae_device: torch.device,
    ) -> GenerationState:
        """Continue where the interrupted run stopped: its memory, RNG states, condition frames and progress.

        Returns:
            `GenerationState`: the position the clip loop continues from (a copy of the saved state, with the
            condition frames on `vae_device`).
        """
        resumed = self.resumed
        if memory is not None:
            memory.import_state(resumed.load_memory_state(), device=device)
        for generator, saved_state in zip(generators, resumed.generator_states):
            generator.set_state(saved_state)
        return replace(
            resumed,
            settings=self.settings,
            prompts=list(resumed.prompts),
            clips=[dict(info) for info in resumed.clips],
            clip_plans=list(resumed.clip_plans),
            condition_pixels=resumed.condition_pixels.to(vae_device),
            device=str(device),
        )

    def remaining_prompts(self, prompts: list[str] | None, prompt_source: Iterator[str]) -> Iterator[str]:
        """The prompts of the clips not finished yet. An iterator yields the whole script again: its first prompts
        must be those of the finished clips (a `ValueError` names the first that differs)."""
        resumed = self.resumed
        if prompts is not None:
            return iter(prompts[resumed.num_clips_done :])
        for clip_index, saved_prompt in enumerate(resumed.prompts):
            clip_prompt = next(prompt_source, None)
            if clip_prompt != saved_prompt:
                raise ValueError(
                    f"`prompt` yields {clip_prompt!r} for clip {clip_index}, but the interrupted run had "
                    f"{saved_prompt!r}: yield the same script from its first clip."
                )
        return prompt_source

    def save(
        self,
        position: GenerationState,
        clip: LongVideoClip,
        memory_state: dict[str, Any] | None,
        generators: list[torch.Generator],
    ) -> None:
        """Record the finished `clip` in `position` (whose counters the clip loop has advanced) and write it.

        Args:
            position (`GenerationState`): The state after `clip`.
            clip (`LongVideoClip`): The clip just finished.
            memory_state (`dict`, *optional*): `ClipMemory.export_state()` (`None` without KV cache).
            generators (`list[torch.Generator]`): The generators whose states the next clip starts from.
        """
        position.prompts.append(clip.prompt)
        position.clips.append(clip.info)
        self._writer.write(position, clip_latents=clip.latents, memory_state=memory_state, generators=generators)

    def finished_clips(self, clip_frames: Callable[[torch.Tensor, int], Any]) -> Iterator[LongVideoClip]:
        """The clips the saved state has finished, re-decoded from their saved latents (what `__call__` returns for
        them when resuming; the same device gives the same frames).

        Args:
            clip_frames (`Callable`): `clip_frames(latents, dropped)` -> the frames of a clip's latents with its first
                `dropped` frames left out, in the call's `output_type`.
        """
        state = self.resumed
        if state is None:
            return
        for clip_index, info in enumerate(state.clips):
            latents = state.clip_latents(clip_index)
            dropped = 0 if clip_index == 0 else int(info["num_condition_frames"])
            yield LongVideoClip(
                clip_index=clip_index,
                prompt=info["prompt"],
                frames=clip_frames(latents, dropped),
                frame_range=tuple(info["frame_range"]),
                latents=latents,
                latent_offset=int(info["latent_offset"]),
                num_condition_frames=int(info["num_condition_frames"]),
                attends=list(info["attends"]),
                seconds=float(info["seconds"]),
                kv_plan=[entry.to_dict() for entry in state.clip_plans[: clip_index + 1]],
            )
