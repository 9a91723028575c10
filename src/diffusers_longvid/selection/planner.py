# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""Storage planning for the cross-clip KV cache: which clips to attend, store and evict, at constant memory.

Offline mode (all prompts known up front, DESIGN §3):

1. For each clip `n`, the *wanted* set is the selector's top `kv_cache_clips` over **all** earlier clips.
2. Storage follows: after clip `n` is generated, held clips with no later use are evicted, and clip `n` is stored only
   if some later clip wants it. While more than `max_cached_clips` are held, the clip whose next use lies farthest in
   the future is evicted (Belady's rule; ties evict the later clip; clip `n` itself may be the one not kept).
3. The *attended* set of clip `n` is its wanted set restricted to the clips held when it starts: a clip evicted by the
   cap is lost to every later clip that wanted it (no replacement is selected), and the plan records exactly that.

Streaming mode (prompts arrive one at a time): every clip is stored; clip `n` attends the selector's top
`kv_cache_clips` among the held clips; when more than `max_cached_clips` are held, the one least relevant to the
latest prompt is evicted (lowest selector score; scores within the selector's `tolerance` of the lowest count as ties
and evict the later clip, mirroring the selection rule that prefers earlier clips).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from diffusers.utils import logging

from .selectors import ClipSelector


logger = logging.get_logger(__name__)  # pylint: disable=invalid-name

__all__ = ["ClipPlan", "KVPlan", "KVStoragePlanner"]


@dataclass(frozen=True)
class ClipPlan:
    """What happens around clip `clip`.

    Attributes:
        clip (`int`): Clip index (0-based).
        prompt (`str`): Its prompt.
        wanted (`tuple[int, ...]`): The selector's choice among earlier clips (offline) / among held clips (streaming).
        attends (`tuple[int, ...]`): History clips actually attended (ascending): `wanted` minus clips already evicted.
        stored (`bool`): Whether its K/V are held after the clip.
        evicted (`tuple[int, ...]`): Clips whose K/V are freed at the end of this clip.
    """

    clip: int
    prompt: str
    wanted: tuple[int, ...]
    attends: tuple[int, ...]
    stored: bool
    evicted: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        """`{"clip", "prompt", "attends", "stored", "evicted"}` (JSON-serialisable)."""
        return {
            "clip": self.clip,
            "prompt": self.prompt,
            "attends": list(self.attends),
            "stored": self.stored,
            "evicted": list(self.evicted),
        }

    def to_state(self) -> dict[str, Any]:
        """`to_dict()` plus `"wanted"`: everything needed to rebuild the entry with `from_state`."""
        return {**self.to_dict(), "wanted": list(self.wanted)}

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> ClipPlan:
        """Inverse of `to_state` (a `to_dict()` without `"wanted"` takes `wanted = attends`)."""
        try:
            attends = tuple(int(c) for c in data["attends"])
            wanted = tuple(int(c) for c in data.get("wanted", attends))
            evicted = tuple(int(c) for c in data["evicted"])
            return cls(int(data["clip"]), str(data["prompt"]), wanted, attends, bool(data["stored"]), evicted)
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"Not a `ClipPlan` state: {data!r} ({error}).") from None


@dataclass(frozen=True)
class KVPlan:
    """A complete offline storage plan.

    Attributes:
        clips (`tuple[ClipPlan, ...]`): One entry per clip.
        kv_cache_clips (`int`): At most this many history clips are attended per clip.
        max_cached_clips (`int`): At most this many clips are held between clips.
    """

    clips: tuple[ClipPlan, ...]
    kv_cache_clips: int
    max_cached_clips: int

    def held_after(self, clip: int) -> tuple[int, ...]:
        """Clips held after clip `clip` ends."""
        held: set[int] = set()
        for entry in self.clips[: clip + 1]:
            held.difference_update(entry.evicted)
            if entry.stored:
                held.add(entry.clip)
        return tuple(sorted(held))

    @property
    def max_held(self) -> int:
        """The largest number of clips ever held between clips."""
        return max((len(self.held_after(n)) for n in range(len(self.clips))), default=0)

    def to_list(self) -> list[dict[str, Any]]:
        return [entry.to_dict() for entry in self.clips]


class KVStoragePlanner:
    r"""
    Plans which history clips each clip attends and which clips' K/V are stored or evicted (see the module docstring
    for the exact rules).

    Use `plan_offline(prompts)` for a pure plan, or drive it clip by clip: `start(prompts or None)`, then per clip
    `begin_clip(n, prompt)` -> attended ids, `stores(n)`, `end_clip(n)` -> the clip's `ClipPlan`.

    Args:
        selector (`ClipSelector`): Ranks candidate clips for a prompt.
        kv_cache_clips (`int`, *optional*, defaults to 5): History clips attended per clip (the paper uses 5).
        max_cached_clips (`int`, *optional*): Clips held at most between clips. Defaults to `kv_cache_clips`
            (constant memory).
    """

    def __init__(self, selector: ClipSelector, kv_cache_clips: int = 5, max_cached_clips: int | None = None) -> None:
        if not isinstance(selector, ClipSelector):
            raise TypeError(f"`selector` must be a `ClipSelector`, got {type(selector).__name__}.")
        if isinstance(kv_cache_clips, bool) or not isinstance(kv_cache_clips, int) or kv_cache_clips < 0:
            raise ValueError(f"`kv_cache_clips` must be an int >= 0, got {kv_cache_clips!r}.")
        if max_cached_clips is None:
            max_cached_clips = kv_cache_clips
        if isinstance(max_cached_clips, bool) or not isinstance(max_cached_clips, int) or max_cached_clips < 0:
            raise ValueError(f"`max_cached_clips` must be an int >= 0 or None, got {max_cached_clips!r}.")
        if kv_cache_clips > 0 and max_cached_clips == 0:
            raise ValueError("`max_cached_clips` must be >= 1 when `kv_cache_clips` > 0.")
        self.selector = selector
        self.kv_cache_clips = kv_cache_clips
        self.max_cached_clips = max_cached_clips
        self.start(None)

    # ------------------------------------------------------------------ offline
    def plan_offline(self, prompts: Sequence[str]) -> KVPlan:
        """The full plan for a video whose clip prompts are `prompts` (does not change the planner's state)."""
        prompts = _check_prompts(prompts)
        k, cap = self.kv_cache_clips, self.max_cached_clips
        wanted = [tuple(self.selector.select(p, prompts[:n], list(range(n)), k)) for n, p in enumerate(prompts)]
        uses: dict[int, list[int]] = {c: [] for c in range(len(prompts))}
        for n, chosen in enumerate(wanted):
            for c in chosen:
                uses[c].append(n)

        def next_use(clip: int, after: int) -> int | None:
            return next((m for m in uses[clip] if m > after), None)

        held: set[int] = set()
        entries = []
        for n, prompt in enumerate(prompts):
            attends = tuple(sorted(c for c in wanted[n] if c in held))
            evicted = [c for c in sorted(held) if next_use(c, n) is None]
            held.difference_update(evicted)
            stored = next_use(n, n) is not None
            if stored:
                held.add(n)
            while len(held) > cap:
                # Farthest next use first; on a tie, evict the later clip (earlier clips are preferred by selection).
                victim = max(held, key=lambda c: (next_use(c, n), c))
                held.remove(victim)
                if victim == n:
                    stored = False
                else:
                    evicted.append(victim)
            entries.append(ClipPlan(n, prompt, wanted[n], attends, stored, tuple(sorted(evicted))))
        lost = sum(len(e.wanted) - len(e.attends) for e in entries)
        if lost:
            logger.info(
                f"`max_cached_clips={cap}` drops {lost} wanted history attendances; raise it to keep them all."
            )
        return KVPlan(tuple(entries), k, cap)

    # ------------------------------------------------------------------ clip by clip
    def start(self, prompts: Sequence[str] | None) -> None:
        """Start a new video: offline mode with the full plan of `prompts`, or streaming mode when `None`."""
        self._plan = None if prompts is None else self.plan_offline(prompts)
        self._history: list[ClipPlan] = []
        self._held: dict[int, str] = {}  # clip id -> prompt
        self._current: tuple[int, str, tuple[int, ...]] | None = None

    @property
    def streaming(self) -> bool:
        return self._plan is None

    @property
    def plan(self) -> KVPlan | None:
        """The offline plan (`None` in streaming mode)."""
        return self._plan

    @property
    def history(self) -> list[ClipPlan]:
        """One `ClipPlan` per finished clip."""
        return list(self._history)

    @property
    def held(self) -> tuple[int, ...]:
        """Clips held now."""
        return tuple(sorted(self._held))

    def state_dict(self) -> dict[str, Any]:
        """The planner's progress through a video, JSON-serialisable: mode, limits, the offline plan, the finished
        clips and the held ones. `load_state_dict` restores it (e.g. to resume an interrupted generation). The
        selector is not part of it; resume with a selector of the same config."""
        if self._current is not None:
            raise RuntimeError(f"Clip {self._current[0]} has not ended; save the state between clips.")
        return {
            "mode": "streaming" if self._plan is None else "offline",
            "kv_cache_clips": self.kv_cache_clips,
            "max_cached_clips": self.max_cached_clips,
            "plan": None if self._plan is None else [entry.to_state() for entry in self._plan.clips],
            "history": [entry.to_state() for entry in self._history],
            "held": {str(clip): prompt for clip, prompt in sorted(self._held.items())},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the video saved by `state_dict()`: the next clip is `len(state["history"])`.

        Raises:
            `ValueError`: if the state was saved with other `kv_cache_clips` / `max_cached_clips`, or is malformed.
        """
        if not isinstance(state, dict) or state.get("mode") not in ("offline", "streaming"):
            raise ValueError("`state` must be a `KVStoragePlanner.state_dict()`.")
        for name in ("kv_cache_clips", "max_cached_clips"):
            if state.get(name) != getattr(self, name):
                raise ValueError(
                    f"`state` was saved with `{name}={state.get(name)}`, but this planner has "
                    f"`{name}={getattr(self, name)}`."
                )
        history = [ClipPlan.from_state(entry) for entry in state["history"]]
        if [entry.clip for entry in history] != list(range(len(history))):
            raise ValueError("`state['history']` must hold clips 0, 1, 2, ... in order.")
        plan = None
        if state["mode"] == "offline":
            entries = tuple(ClipPlan.from_state(entry) for entry in state["plan"])
            if [entry.clip for entry in entries] != list(range(len(entries))) or len(entries) < len(history):
                raise ValueError("`state['plan']` must hold clips 0, 1, 2, ... and cover the finished ones.")
            plan = KVPlan(entries, self.kv_cache_clips, self.max_cached_clips)
        self._plan = plan
        self._history = history
        self._held = {int(clip): str(prompt) for clip, prompt in state["held"].items()}
        self._current = None

    def begin_clip(self, clip_index: int, prompt: str) -> tuple[int, ...]:
        """The history clips clip `clip_index` attends (ascending). Clips must come in order 0, 1, 2, ..."""
        if self._current is not None:
            raise RuntimeError(f"Clip {self._current[0]} has not ended; call `end_clip({self._current[0]})` first.")
        expected = len(self._history)
        if clip_index != expected:
            raise ValueError(f"`clip_index` must be {expected} (clips come in order), got {clip_index}.")
        if not isinstance(prompt, str):
            raise TypeError(f"`prompt` must be a str, got {type(prompt).__name__}.")
        if self._plan is not None:
            if clip_index >= len(self._plan.clips):
                raise ValueError(
                    f"The plan covers {len(self._plan.clips)} clips; `clip_index` {clip_index} is past it."
                )
            entry = self._plan.clips[clip_index]
            if entry.prompt != prompt:
                raise ValueError(f"`prompt` of clip {clip_index} differs from the planned one: {entry.prompt!r}.")
            attends = entry.attends
        else:
            held = sorted(self._held)
            attends = tuple(self.selector.select(prompt, [self._held[c] for c in held], held, self.kv_cache_clips))
        self._current = (clip_index, prompt, attends)
        return attends

    def stores(self, clip_index: int) -> bool:
        """Whether clip `clip_index` (the current one) must be recorded. Always `True` in streaming mode."""
        if self.kv_cache_clips == 0:
            return False
        if self._plan is None:
            return True
        return self._plan.clips[clip_index].stored

    def end_clip(self, clip_index: int) -> ClipPlan:
        """Finish clip `clip_index`: apply its storage decisions and return its `ClipPlan`."""
        if self._current is None or self._current[0] != clip_index:
            raise RuntimeError(f"`end_clip({clip_index})` without a matching `begin_clip({clip_index}, ...)`.")
        _, prompt, attends = self._current
        self._current = None
        if self._plan is not None:
            entry = self._plan.clips[clip_index]
        else:
            entry = self._streaming_end(clip_index, prompt, attends)
        for c in entry.evicted:
            del self._held[c]
        if entry.stored:
            self._held[clip_index] = prompt
        self._history.append(entry)
        return entry

    def _streaming_end(self, clip_index: int, prompt: str, attends: tuple[int, ...]) -> ClipPlan:
        if self.kv_cache_clips == 0:
            return ClipPlan(clip_index, prompt, attends, attends, False, ())
        held = dict(self._held)
        held[clip_index] = prompt
        evicted = []
        stored = True
        tolerance = getattr(self.selector, "tolerance", 0.0)
        while len(held) > self.max_cached_clips:
            ids = sorted(held)
            scores = self.selector.scores(prompt, [held[c] for c in ids], ids)
            lowest = min(scores)
            victim = max(c for c, s in zip(ids, scores) if s <= lowest + tolerance)
            del held[victim]
            if victim == clip_index:
                stored = False
            else:
                evicted.append(victim)
        return ClipPlan(clip_index, prompt, attends, attends, stored, tuple(sorted(evicted)))


def _check_prompts(prompts: Sequence[str]) -> list[str]:
    if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
        raise TypeError("`prompts` must be a list of str (one per clip).")
    return list(prompts)
