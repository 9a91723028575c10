# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""`ClipMemory`: the cross-clip KV cache, clip selection and storage planning behind one object (the pipeline's view).

It drives both `attention/` (the cache and its processors) and `selection/` (which clips to attend and keep), so it
lives above them, in neither; `diffusers_longvid.attention.memory` / `diffusers_longvid.attention.ClipMemory` stay
importable (re-exports).

Per clip `n` the pipeline calls `begin_clip(n, prompt)`, runs its forwards under `branch("cond")` /
`branch("uncond")`, records under `recording()` (the last denoising step, or one extra clean forward at timestep 0)
and calls `end_clip(n)`, which returns the clip's `ClipPlan` (a `ProbedClipPlan`, with the measured attention
shares, under `CrossClipKVCacheConfig(probe_attention=True)`). See `docs/kv_cache.md`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch
from diffusers.utils import logging
from torch import nn
from typing_extensions import Self

from .attention.kv_cache import CFGBranch, CrossClipKVCache, CrossClipKVCacheConfig, RecordMode
from .attention.processor import disable_cross_clip_kv_cache, enable_cross_clip_kv_cache, get_cross_clip_kv_cache
from .selection.planner import ClipPlan, KVPlan, KVStoragePlanner
from .selection.selectors import ClipSelector
from .validation import is_int


logger = logging.get_logger(__name__)  # pylint: disable=invalid-name

__all__ = ["ClipMemory", "ProbedClipPlan", "clip_plan_from_dict"]


@dataclass(frozen=True)
class ProbedClipPlan(ClipPlan):
    """A [`ClipPlan`] with the attention shares measured while its clip was generated
    (`CrossClipKVCacheConfig(probe_attention=True)`).

    Attributes:
        attention (`dict[int, dict]`): Per cached block, `{"history": {clip: share}, "current": share, "forwards": n}`
            (see [`ClipMemory.attention_shares`]); empty when the clip attended no history.
    """

    attention: dict[int, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """`ClipPlan.to_dict()` plus `"attention"` (a copy; JSON-serialisable once its int keys become strings)."""
        attention = {block: {**shares, "history": dict(shares["history"])} for block, shares in self.attention.items()}
        return {**super().to_dict(), "attention": attention}

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> ProbedClipPlan:
        """Inverse of `to_state` / `to_dict`, also after a JSON round trip (block and clip keys back to ints)."""
        entry = super().from_state(data)
        try:
            attention = {
                int(block): {
                    "history": {int(clip): float(share) for clip, share in shares["history"].items()},
                    "current": float(shares["current"]),
                    "forwards": int(shares["forwards"]),
                }
                for block, shares in data.get("attention", {}).items()
            }
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            raise ValueError(f"Not a `ProbedClipPlan` state: {data!r} ({error}).") from None
        return replace(entry, attention=attention)


def clip_plan_from_dict(data: dict[str, Any]) -> ClipPlan:
    """The typed entry of one `kv_plan` dict (`ClipPlan.to_dict()`, e.g. read back from JSON): a [`ProbedClipPlan`]
    when it has `"attention"`, else a `ClipPlan`. Raises `ValueError` for anything else."""
    if not isinstance(data, dict):
        raise ValueError(f"Not a `ClipPlan` dict: {data!r}.")
    return ProbedClipPlan.from_state(data) if "attention" in data else ClipPlan.from_state(data)


class ClipMemory:
    r"""
    Everything the pipeline needs from the cross-clip KV cache and clip selection, behind one object.

    Constructing it installs `CrossClipKVAttnProcessor` on `attn1` of the cached blocks (`enable_cross_clip_kv_cache`);
    `close()` (or leaving a `with ClipMemory(...)` block) restores the previous processors and frees the K/V.

    Args:
        transformer (`WanTransformer3DModel`): The transformer whose self-attention gets the cache.
        kv_cache_clips (`int`, *optional*, defaults to 5):
            History clips attended per clip (the paper uses 5). `0` makes the memory inactive: nothing is installed
            and every method is a no-op.
        max_cached_clips (`int`, *optional*):
            Clips whose K/V are held at most between clips. Defaults to `kv_cache_clips` (constant memory).
        clip_selector (`ClipSelector`, *optional*):
            Ranks history clips for a prompt. Defaults to `PromptSimilaritySelector()` (offline all-MiniLM-L6-v2);
            pass `RecentSelector()` to need no sentence model.
        config (`CrossClipKVCacheConfig`, *optional*):
            Cached blocks, record mode, frame subsampling, CPU offload. Defaults to `CrossClipKVCacheConfig()`.
    """

    def __init__(
        self,
        transformer: nn.Module,
        kv_cache_clips: int = 5,
        max_cached_clips: int | None = None,
        clip_selector: ClipSelector | None = None,
        config: CrossClipKVCacheConfig | None = None,
    ) -> None:
        if not is_int(kv_cache_clips) or kv_cache_clips < 0:
            raise ValueError(f"`kv_cache_clips` must be an int >= 0, got {kv_cache_clips!r}.")
        if config is None:
            config = CrossClipKVCacheConfig()
        if not isinstance(config, CrossClipKVCacheConfig):
            raise TypeError(f"`config` must be a `CrossClipKVCacheConfig`, got {type(config).__name__}.")
        if clip_selector is not None and not isinstance(clip_selector, ClipSelector):
            raise TypeError(f"`clip_selector` must be a `ClipSelector` or None, got {type(clip_selector).__name__}.")
        self.transformer = transformer
        self.config = config
        self.kv_cache_clips = kv_cache_clips
        self._cache: CrossClipKVCache | None = None
        self._planner: KVStoragePlanner | None = None
        self._current: int | None = None
        self._planned = False
        self._attention: dict[int, dict[int, dict[str, Any]]] = {}
        if kv_cache_clips == 0:
            return
        if clip_selector is None:
            from .selection.selectors import PromptSimilaritySelector

            try:
                clip_selector = PromptSimilaritySelector()
            except ImportError as error:
                raise ImportError(f"{error} Or pass `clip_selector=RecentSelector()`, which needs no model.") from None
        # Validates kv_cache_clips / max_cached_clips before anything is installed.
        self._planner = KVStoragePlanner(clip_selector, kv_cache_clips, max_cached_clips)
        if get_cross_clip_kv_cache(transformer) is not None:
            # A previous memory that was not closed: its stored clips must not leak into this video.
            logger.warning("A cross-clip KV cache was already installed on `transformer`; replacing it.")
            disable_cross_clip_kv_cache(transformer)
        self._cache = enable_cross_clip_kv_cache(transformer, config)

    # ------------------------------------------------------------------ properties
    @property
    def active(self) -> bool:
        """`False` when `kv_cache_clips == 0` (or after `close()`)."""
        return self._cache is not None

    @property
    def cache(self) -> CrossClipKVCache | None:
        """The underlying `CrossClipKVCache` (`None` when inactive)."""
        return self._cache

    @property
    def selector(self) -> ClipSelector | None:
        return None if self._planner is None else self._planner.selector

    @property
    def max_cached_clips(self) -> int:
        return 0 if self._planner is None else self._planner.max_cached_clips

    @property
    def record_from_last_step(self) -> bool:
        """Whether K/V are recorded during the last denoising step (`record_mode="last_step"`) instead of by an
        extra clean forward."""
        return self.config.record_mode is RecordMode.LAST_STEP

    @property
    def stores_current_clip(self) -> bool:
        """Whether the plan stores the clip begun last; when `False` its recording forward(s) can be skipped."""
        if not self.active or self._current is None:
            return False
        return self._planner.stores(self._current)

    @property
    def storage_plan(self) -> KVPlan | None:
        """The full offline plan (after `plan(prompts)`), `None` in streaming mode or when inactive."""
        return None if self._planner is None else self._planner.plan

    # ------------------------------------------------------------------ the clip loop
    def plan(self, prompts: list[str] | None) -> None:
        """Start a video. `prompts` (one per clip) known up front -> offline storage plan; `None` -> streaming mode.

        Frees any K/V of a previous video.
        """
        if not self.active:
            return
        if self._current is not None:
            raise RuntimeError(f"Clip {self._current} has not ended; call `end_clip({self._current})` first.")
        self._planner.start(prompts)
        self._cache.clear()
        self._attention = {}
        self._planned = True

    def begin_clip(self, clip_index: int, prompt: str) -> list[int]:
        """Select the history of clip `clip_index` and return the attended clip indices (ascending).

        Must be called before the clip's denoising loop. Without a prior `plan(...)` the memory runs in streaming mode.
        """
        if not self.active:
            return []
        if not self._planned:
            self.plan(None)
        attends = self._planner.begin_clip(clip_index, prompt)
        self._cache.discard_pending()
        self._cache.select(attends)
        self._current = clip_index
        return list(attends)

    def branch(self, name: str | CFGBranch) -> AbstractContextManager[None]:
        """The CFG branch (`"cond"` or `"uncond"`) of the forwards run inside. Forwards outside any branch are cond."""
        if not self.active:
            CFGBranch(name)  # still validate the name
            return nullcontext()
        return self._cache.branch(name)

    @contextmanager
    def recording(self) -> Iterator[None]:
        """Forwards run inside record the K/V of the current clip (only if the plan stores it).

        In `"clean"` mode history is not attended while recording, so a clip's K/V depend on that clip alone (as in
        stage-2 training); in `"last_step"` mode history is attended as in the other denoising steps.
        """
        if not self.active:
            yield
            return
        if self._current is None:
            raise RuntimeError("`recording()` outside a clip: call `begin_clip(n, prompt)` first.")
        if not self._planner.stores(self._current):
            yield
            return
        with self._cache.recording():
            yield

    def end_clip(self, clip_index: int) -> ClipPlan | None:
        """Store / evict per plan. Afterwards at most `max_cached_clips` clips are held.

        Returns:
            The clip's [`ClipPlan`] (a [`ProbedClipPlan`] with `probe_attention=True`); `None` when inactive.
        """
        if not self.active:
            return None
        if self._current != clip_index:
            raise RuntimeError(f"`end_clip({clip_index})` without a matching `begin_clip({clip_index}, ...)`.")
        stores = self._planner.stores(clip_index)
        if stores and not self._cache.has_pending:
            raise RuntimeError(
                f"The plan stores clip {clip_index} but no K/V were recorded: run its recording forward(s) inside "
                "`memory.recording()` before `end_clip`."
            )
        if self.config.probe_attention:
            self._attention[clip_index] = self._cache.pop_attention_shares()
        entry = self._planner.end_clip(clip_index)
        self._cache.release_working_memory()
        for clip in entry.evicted:
            self._cache.evict(clip)
        if entry.stored:
            self._cache.commit(clip_index)
        else:
            self._cache.discard_pending()
        self._cache.select(())
        self._current = None
        held = self._cache.stored_clips()
        if len(held) > self._planner.max_cached_clips or held != list(self._planner.held):
            raise RuntimeError(f"KV memory out of sync with the plan: holds {held}, plan {self._planner.held}.")
        return self._reported(entry)

    # ------------------------------------------------------------------ saving and restoring (resumable generation)
    def export_state(self) -> dict[str, Any] | None:
        """The memory between two clips: `{"planner": planner state (JSON), "cache": CrossClipKVCache.export_state()}`.

        The K/V tensors are the stored ones (not copies). `None` when inactive. `import_state` continues from it.
        """
        if not self.active:
            return None
        if self._current is not None:
            raise RuntimeError(f"Clip {self._current} has not ended; export the state between clips.")
        return {"planner": self._planner.state_dict(), "cache": self._cache.export_state()}

    def import_state(self, state: dict[str, Any], device: torch.device | str | None = None) -> None:
        """Continue a video from `export_state()` (instead of `plan(...)`): the next clip is the first unfinished one.

        Args:
            state (`dict`): `export_state()` output, possibly after a save/load round trip.
            device (`torch.device` or `str`, *optional*):
                Device of the transformer's forwards, where the K/V go unless the config offloads them to the CPU.

        Raises:
            `ValueError`: if the state does not fit this memory (other `kv_cache_clips` / `max_cached_clips`, other
                cached blocks or recorded frames) or its K/V disagree with its plan.
        """
        if not self.active:
            raise ValueError("This `ClipMemory` is inactive (`kv_cache_clips=0`); it cannot take a saved state.")
        if self._current is not None:
            raise RuntimeError(f"Clip {self._current} has not ended; call `end_clip({self._current})` first.")
        if not isinstance(state, dict) or "planner" not in state or "cache" not in state:
            raise ValueError("`state` must be a `ClipMemory.export_state()` dict.")
        self._planner.load_state_dict(state["planner"])
        self._cache.import_state(state["cache"], device=device)
        stored, held = self._cache.stored_clips(), list(self._planner.held)
        if stored != held:
            self._cache.clear()
            raise ValueError(f"`state` holds K/V of clips {stored}, but its plan holds clips {held}.")
        self._planned = True

    # ------------------------------------------------------------------ reporting
    def clip_plans(self) -> list[ClipPlan]:
        """The [`ClipPlan`] of every finished clip, in order: what `end_clip` returned for each ([`ProbedClipPlan`]s
        with `CrossClipKVCacheConfig(probe_attention=True)`; clips restored by `import_state` then carry no shares)."""
        if self._planner is None:
            return []
        return [self._reported(entry) for entry in self._planner.history]

    def plan_summary(self) -> list[dict[str, Any]]:
        """`clip_plans()` as dicts: `{"clip", "prompt", "attends", "stored", "evicted"}`, plus `"attention"` with
        `CrossClipKVCacheConfig(probe_attention=True)`: `{block: {"history": {clip: share}, "current": share,
        "forwards": n}}` (see `attention_shares`)."""
        return [entry.to_dict() for entry in self.clip_plans()]

    def _reported(self, entry: ClipPlan) -> ClipPlan:
        """The planner's entry of a clip as reported: with its attention shares when the probe is on."""
        if not self.config.probe_attention:
            return entry
        plan = {f.name: getattr(entry, f.name) for f in fields(ClipPlan)}
        return ProbedClipPlan(**plan, attention=self.attention_shares(entry.clip))

    def attention_shares(self, clip_index: int) -> dict[int, dict[str, Any]]:
        """With `CrossClipKVCacheConfig(probe_attention=True)`: per cached block, the share of the attention mass that
        clip `clip_index`'s queries (cond branch, mean over its denoising forwards) put on each history clip it
        attended and on itself; the shares of a block sum to 1. Empty when the probe is off or the clip attended no
        history."""
        return {block: dict(value) for block, value in self._attention.get(clip_index, {}).items()}

    def kv_bytes(self) -> int:
        """Bytes of K/V currently stored (excluding the current clip's gathered working buffers)."""
        return 0 if self._cache is None else self._cache.nbytes()

    def stored_clips(self) -> list[int]:
        return [] if self._cache is None else self._cache.stored_clips()

    def close(self) -> None:
        """Remove the processors (restoring the previous ones) and free all K/V. Idempotent."""
        if self._cache is None:
            return
        if get_cross_clip_kv_cache(self.transformer) is self._cache:
            disable_cross_clip_kv_cache(self.transformer)
        self._cache.clear()
        self._cache = None
        self._current = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        if not self.active:
            return "ClipMemory(active=False)"
        return (
            f"ClipMemory(kv_cache_clips={self.kv_cache_clips}, max_cached_clips={self.max_cached_clips}, "
            f"blocks={list(self._cache.block_indices)}, record_mode={self.config.record_mode.value!r}, "
            f"stored={self.stored_clips()})"
        )
