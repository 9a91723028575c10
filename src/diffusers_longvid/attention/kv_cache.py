# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""Cross-clip KV cache: the typed state behind `CrossClipKVAttnProcessor` (DESIGN §3, paper §3.3).

For every stored history clip the cache holds, per cached block and per CFG branch, the self-attention key (after
`norm_k`, rotated at the clip's own temporal positions) and value, shaped `(batch, tokens, heads, head_dim)` as
diffusers' `dispatch_attention_fn` expects. The clips selected for the current clip are gathered once per clip into
one contiguous per-block, per-branch buffer; each forward only appends the current clip's keys/values after it.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import torch
from diffusers.utils import logging

from ..validation import is_int


logger = logging.get_logger(__name__)  # pylint: disable=invalid-name

__all__ = ["CFGBranch", "CrossClipKVCache", "CrossClipKVCacheConfig", "KVPair", "RecordMode", "default_cached_blocks"]


class CFGBranch(enum.Enum):
    """The classifier-free-guidance branch a forward belongs to. Cond and uncond K/V are stored apart."""

    COND = "cond"
    UNCOND = "uncond"


class RecordMode(enum.Enum):
    """When the K/V of a finished clip are recorded.

    - `CLEAN`: one extra forward of the clip's clean latent at timestep 0 (what stage-2 training sees). History is not
      attended while recording, so the K/V of a clip depend on that clip alone.
    - `LAST_STEP`: during the last denoising step (the paper's choice, no extra forward). History is attended.
    """

    CLEAN = "clean"
    LAST_STEP = "last_step"


# Largest pooling window per axis: the centroid rotation (mean of the window's RoPE phasors, renormalised) is exact
# while a window spans less than a full turn of the fastest RoPE frequency (1 rad per position): n < 2 * pi.
_MAX_POOL = 6


def default_cached_blocks(num_layers: int) -> tuple[int, ...]:
    """The latter half of the blocks, `blocks[num_layers // 2:]` (the paper's choice)."""
    return tuple(range(num_layers // 2, num_layers))


@dataclass
class CrossClipKVCacheConfig:
    r"""
    Configuration of the cross-clip KV cache.

    Args:
        blocks (`Sequence[int]`, *optional*):
            Indices of the transformer blocks whose self-attention (`attn1`) reads and records the cache. Defaults to
            the latter half, `range(num_layers // 2, num_layers)`. Negative indices count from the end.
        record_mode (`RecordMode` or `str`, *optional*, defaults to `"clean"`):
            `"clean"`: the pipeline runs one extra forward of the finished clip's clean latent at timestep 0 inside
            `recording()`, and history is not attended during it. `"last_step"`: the last denoising step's forwards
            record (history attended, no extra forward).
        history_frame_stride (`int`, *optional*, defaults to 1):
            Keep only every `history_frame_stride`-th latent frame of a recorded clip (patched frames `0, s, 2s, ...`),
            dropping the tokens of the others. Reduces memory and attention cost by about this factor.
        history_frame_indices (`Sequence[int]`, *optional*):
            Explicit latent-frame indices (patched frames, relative to the clip, negatives count from the end) to keep
            instead of a stride. Mutually exclusive with `history_frame_stride > 1`.
        offload_to_cpu (`bool`, *optional*, defaults to `False`):
            Keep stored K/V on the CPU (pinned memory when CUDA is available); only the clips selected for the current
            clip are copied to the device, once per clip.
        probe_attention (`bool`, *optional*, defaults to `False`):
            Diagnosis: measure, per cached block, the share of softmax attention mass that the current clip's queries
            put on each attended history clip and on the current clip (cond branch, averaged over queries, heads and
            the denoising forwards; recording forwards excluded). It costs one extra `Q K^T` per cached block and
            forward (computed in query chunks); off, it costs nothing. Read the shares with
            `CrossClipKVCache.pop_attention_shares()`, or in the pipeline's `kv_plan` (`"attention"`).
        history_pool (`Sequence[int]`, *optional*, defaults to `(1, 1, 1)`):
            Compressed history: average a recorded clip's keys and values over windows of `(t, h, w)` patched
            tokens (frames, rows, columns; partial windows at the edges average the tokens they hold) before storing
            them, so a clip keeps `ceil(F/t) * ceil(H/h) * ceil(W/w)` tokens. Keys are pooled **before** RoPE (after
            `norm_k`) and then rotated at the window's centroid position, so a pooled key sits where the tokens it
            summarises sit and the RoPE relativity of the dense cache is kept. `(1, 1, 1)` is the dense cache (the
            same code path, bit-identical). Each entry at most 6 (the centroid rotation is exact only while a window
            spans less than one turn of RoPE's fastest frequency). Not combinable with frame subsampling.
        proportional_attention (`bool`, *optional*, defaults to `True`):
            With `history_pool`, add `log(n)` to the attention logit of every pooled key that stands for `n` tokens
            (proportional attention, as in token merging), so a pooled window gets the softmax mass its `n` tokens
            would get in the dense cache: a window of identical tokens is attended exactly as densely. Without it,
            pooled history holds `1/n` of the keys and gets a correspondingly smaller share of the attention than
            the dense history the model was trained with. No effect on dense history (no bias is built).
        history_keep_ratio (`float`, *optional*, defaults to `1.0`):
            Compressed history by token selection: keep `ceil(history_keep_ratio * tokens)` of a recorded clip's
            tokens, chosen separately in every cached block (and batch row and CFG branch) as the tokens whose values
            deviate most from the clip's mean value (squared L2 distance over heads and channels): what stands out
            of the clip (objects) rather than what repeats (a plain background). Kept tokens keep their keys exactly
            as rotated at their own positions, so the RoPE relativity of the dense cache holds with no
            approximation. `1.0` is the dense cache (the same code path, bit-identical). Not combinable with
            `history_pool` or frame subsampling.
    """

    blocks: Sequence[int] | None = None
    record_mode: RecordMode | str = RecordMode.CLEAN
    history_frame_stride: int = 1
    history_frame_indices: Sequence[int] | None = None
    offload_to_cpu: bool = False
    probe_attention: bool = False
    history_pool: Sequence[int] = (1, 1, 1)
    proportional_attention: bool = True
    history_keep_ratio: float = 1.0

    def __post_init__(self) -> None:
        if self.blocks is not None:
            if isinstance(self.blocks, (str, bytes)) or not all(is_int(b) for b in self.blocks):
                raise TypeError(f"`blocks` must be a sequence of ints or None, got {self.blocks!r}.")
            self.blocks = tuple(int(b) for b in self.blocks)
            if not self.blocks:
                raise ValueError("`blocks` must name at least one block (or be None for the latter half).")
        try:
            self.record_mode = RecordMode(self.record_mode)
        except ValueError:
            accepted = ", ".join(repr(m.value) for m in RecordMode)
            raise ValueError(f"`record_mode` must be one of {accepted}, got {self.record_mode!r}.") from None
        if not is_int(self.history_frame_stride) or self.history_frame_stride < 1:
            raise ValueError(f"`history_frame_stride` must be an int >= 1, got {self.history_frame_stride!r}.")
        if self.history_frame_indices is not None:
            indices = self.history_frame_indices
            if isinstance(indices, (str, bytes)) or not all(is_int(i) for i in indices) or not indices:
                raise ValueError(f"`history_frame_indices` must be a non-empty sequence of ints, got {indices!r}.")
            if self.history_frame_stride != 1:
                raise ValueError("Pass either `history_frame_stride` or `history_frame_indices`, not both.")
            self.history_frame_indices = tuple(int(i) for i in indices)
        if not isinstance(self.offload_to_cpu, bool):
            raise TypeError(f"`offload_to_cpu` must be a bool, got {self.offload_to_cpu!r}.")
        if not isinstance(self.probe_attention, bool):
            raise TypeError(f"`probe_attention` must be a bool, got {self.probe_attention!r}.")
        if not isinstance(self.proportional_attention, bool):
            raise TypeError(f"`proportional_attention` must be a bool, got {self.proportional_attention!r}.")
        pool = self.history_pool
        if (
            isinstance(pool, (str, bytes))
            or not isinstance(pool, Sequence)
            or len(pool) != 3
            or not all(is_int(p) and 1 <= p <= _MAX_POOL for p in pool)
        ):
            raise ValueError(
                f"`history_pool` must be three ints `(t, h, w)` in [1, {_MAX_POOL}], got {self.history_pool!r}."
            )
        self.history_pool = tuple(int(p) for p in pool)
        if self.pools_history and self.subsamples_frames:
            raise ValueError(
                "`history_pool` cannot be combined with `history_frame_stride` / `history_frame_indices`: pool "
                "frames with its first entry instead."
            )
        ratio = self.history_keep_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 < ratio <= 1.0:
            raise ValueError(f"`history_keep_ratio` must be a number in (0, 1], got {ratio!r}.")
        self.history_keep_ratio = float(ratio)
        if self.selects_tokens and (self.pools_history or self.subsamples_frames):
            raise ValueError(
                "`history_keep_ratio` cannot be combined with `history_pool` or `history_frame_stride` / "
                "`history_frame_indices`: choose one way of compressing history."
            )

    @property
    def subsamples_frames(self) -> bool:
        """Whether recorded clips keep only some of their latent frames."""
        return self.history_frame_stride != 1 or self.history_frame_indices is not None

    @property
    def pools_history(self) -> bool:
        """Whether recorded clips are stored compressed (`history_pool` other than `(1, 1, 1)`)."""
        return self.history_pool != (1, 1, 1)

    @property
    def selects_tokens(self) -> bool:
        """Whether recorded clips keep only their most salient tokens (`history_keep_ratio` below 1)."""
        return self.history_keep_ratio < 1.0

    def kept_token_count(self, num_tokens: int) -> int:
        """How many of a recorded clip's `num_tokens` tokens `history_keep_ratio` keeps: `ceil(ratio * tokens)`
        (at least 1; the product is rounded to 9 decimals first, so `0.15 * 80` keeps 12, not 13)."""
        return max(1, math.ceil(round(self.history_keep_ratio * num_tokens, 9)))

    def pooled_grid(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """The patched `(frames, height, width)` grid a recorded clip of this grid is stored at."""
        t, h, w = self.history_pool
        return (-(-frames // t), -(-height // h), -(-width // w))

    def pooled_token_counts(self, frames: int, height: int, width: int) -> torch.Tensor:
        """How many patched tokens each stored token of a recorded clip of this grid stands for (frame-major, the
        order of the stored tokens; windows at the far edges hold fewer), as a float32 tensor."""
        per_axis = []
        for n, p in zip((frames, height, width), self.history_pool):
            k = min(p, n)
            per_axis.append(torch.tensor([k] * (n // k) + ([n % k] if n % k else []), dtype=torch.float32))
        t, h, w = per_axis
        return (t[:, None, None] * h[None, :, None] * w[None, None, :]).reshape(-1)

    def resolve_blocks(self, num_layers: int) -> tuple[int, ...]:
        """The sorted, non-negative block indices for a transformer with `num_layers` blocks."""
        if self.blocks is None:
            blocks = default_cached_blocks(num_layers)
            if not blocks:
                raise ValueError(f"A transformer with {num_layers} blocks has no latter half to cache.")
            return blocks
        resolved = []
        for block in self.blocks:
            index = block + num_layers if block < 0 else block
            if not 0 <= index < num_layers:
                raise ValueError(f"`blocks` entry {block} is out of range for a transformer with {num_layers} blocks.")
            resolved.append(index)
        return tuple(sorted(set(resolved)))

    def kept_frames(self, num_frames: int) -> tuple[int, ...]:
        """The latent frames (patched, relative to the clip) that a recorded clip keeps."""
        if self.history_frame_indices is None:
            return tuple(range(0, num_frames, self.history_frame_stride))
        kept = set()
        for i in self.history_frame_indices:
            if not -num_frames <= i < num_frames:
                raise ValueError(
                    f"`history_frame_indices` entry {i} is out of range for a clip of {num_frames} latent frames."
                )
            kept.add(i % num_frames)
        return tuple(sorted(kept))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (enums as their values, sequences as lists)."""
        data = asdict(self)
        data["record_mode"] = self.record_mode.value
        for name in ("blocks", "history_frame_indices", "history_pool"):
            if data[name] is not None:
                data[name] = list(data[name])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CrossClipKVCacheConfig:
        """Inverse of `to_dict` (also of dicts written before a field existed: missing fields take their defaults)."""
        return cls(**data)


@dataclass
class KVPair:
    """Key and value of one block, one branch, one clip: `(batch, tokens, heads, head_dim)` each."""

    key: torch.Tensor
    value: torch.Tensor

    @property
    def num_tokens(self) -> int:
        return self.key.shape[1]

    @property
    def nbytes(self) -> int:
        return self.key.numel() * self.key.element_size() + self.value.numel() * self.value.element_size()


# (branch, block index): the key of one recorded K/V pair inside a clip.
_Slot = tuple[CFGBranch, int]


class _HistoryWindow:
    """`[history K/V ..., current K/V]` of one block for the current clip, for one CFG branch or for several branches
    stacked on the batch axis (`groups[i]` is the history of batch rows `[i * rows, (i + 1) * rows)`).

    Without autograd the history is copied once into a preallocated buffer and each forward writes the current K/V
    into its tail (no re-copy of the history). With autograd enabled (training) the history is concatenated once and
    each forward concatenates the current K/V after it, so gradients flow and no tensor saved for backward is
    overwritten.
    """

    def __init__(self, groups: list[list[KVPair]]) -> None:
        lengths = [sum(kv.num_tokens for kv in group) for group in groups]
        if len(set(lengths)) != 1:
            raise RuntimeError(
                f"CFG branches batched together must attend the same number of history tokens, got {lengths}: record "
                "every branch of every stored clip."
            )
        self.groups = groups
        self.history_len = lengths[0]
        self._buffer: KVPair | None = None
        self._gathered: list[KVPair] | None = None
        # proportional attention over pooled history: log token counts of the history keys, and the bias built
        # from them for the current shape / dtype / device
        self.history_log_counts: torch.Tensor | None = None
        self._bias: torch.Tensor | None = None

    def attention_bias(self, query: torch.Tensor, num_current: int) -> torch.Tensor:
        """The additive attention bias `(1, 1, 1, history + current)`: `history_log_counts` on the history keys, 0 on
        the current ones, in the dtype and on the device of `query` (built once per clip and shape)."""
        length = self.history_len + num_current
        bias = self._bias
        if bias is None or bias.shape[-1] != length or bias.dtype != query.dtype or bias.device != query.device:
            bias = torch.zeros(length, dtype=torch.float32)
            bias[: self.history_len] = self.history_log_counts
            bias = self._bias = bias.to(device=query.device, dtype=query.dtype).view(1, 1, 1, length)
        return bias

    def extend(self, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self._rows_per_group(key.shape[0])
        if torch.is_grad_enabled() and (key.requires_grad or value.requires_grad or self._history_requires_grad()):
            return self._extend_differentiable(key, value, rows)
        batch, cur_len = key.shape[0], key.shape[1]
        shape = (batch, self.history_len + cur_len, *key.shape[2:])
        buffer = self._buffer
        if (
            buffer is None
            or buffer.key.shape != shape
            or buffer.key.dtype != key.dtype
            or buffer.key.device != key.device
        ):
            buffer = self._buffer = self._allocate(shape, key, value, rows)
        buffer.key[:, self.history_len :].copy_(key)
        buffer.value[:, self.history_len :].copy_(value)
        return buffer.key, buffer.value

    def _rows_per_group(self, batch: int) -> int:
        if batch % len(self.groups):
            raise ValueError(
                f"A batch of {batch} cannot hold {len(self.groups)} CFG branches stacked on the batch axis."
            )
        return batch // len(self.groups)

    def _history_requires_grad(self) -> bool:
        return any(kv.key.requires_grad or kv.value.requires_grad for group in self.groups for kv in group)

    def _allocate(self, shape: tuple[int, ...], key: torch.Tensor, value: torch.Tensor, rows: int) -> KVPair:
        buf_k = torch.empty(shape, dtype=key.dtype, device=key.device)
        buf_v = torch.empty(shape, dtype=value.dtype, device=value.device)
        for g, group in enumerate(self.groups):
            row = slice(g * rows, (g + 1) * rows)
            start = 0
            for kv in group:
                _check_batch(kv.key.shape[0], rows)
                end = start + kv.num_tokens
                # `copy_` moves (non-blocking from pinned CPU memory), casts and broadcasts a batch of 1.
                buf_k[row, start:end].copy_(kv.key, non_blocking=True)
                buf_v[row, start:end].copy_(kv.value, non_blocking=True)
                start = end
        return KVPair(buf_k, buf_v)

    def _extend_differentiable(
        self, key: torch.Tensor, value: torch.Tensor, rows: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        gathered = self._gathered
        if gathered is None or gathered[0].key.device != key.device or gathered[0].key.dtype != key.dtype:
            gathered = self._gathered = [
                KVPair(
                    torch.cat([kv.key.to(device=key.device, dtype=key.dtype) for kv in group], dim=1),
                    torch.cat([kv.value.to(device=value.device, dtype=value.dtype) for kv in group], dim=1),
                )
                for group in self.groups
            ]
        for pair in gathered:
            _check_batch(pair.key.shape[0], rows)
        hist_k = [pair.key.expand(rows, *pair.key.shape[1:]) for pair in gathered]
        hist_v = [pair.value.expand(rows, *pair.value.shape[1:]) for pair in gathered]
        hist_k = hist_k[0] if len(hist_k) == 1 else torch.cat(hist_k, dim=0)
        hist_v = hist_v[0] if len(hist_v) == 1 else torch.cat(hist_v, dim=0)
        return torch.cat([hist_k, key], dim=1), torch.cat([hist_v, value], dim=1)

    @property
    def nbytes(self) -> int:
        pairs = ([self._buffer] if self._buffer is not None else []) + list(self._gathered or [])
        return sum(pair.nbytes for pair in pairs)


class CrossClipKVCache:
    r"""
    Stored K/V of history clips, the current selection, and the recording / CFG-branch state read by every
    `CrossClipKVAttnProcessor` of one transformer. Create it with `enable_cross_clip_kv_cache`.

    Typical use for one clip (what `ClipMemory` does):

    ```py
    cache.select([0, 3])  # history attended by the coming forwards (gathered once, on first use)
    with cache.branch("cond"):
        transformer(...)  # queries attend to [K_0, K_3, K_current]
    with cache.branch("cond"), cache.recording():
        transformer(...)  # records the current clip's K/V (pending)
    cache.commit(clip_id=5)  # pending K/V become history clip 5
    ```

    Args:
        config (`CrossClipKVCacheConfig`): The cache configuration.
        block_indices (`Sequence[int]`): The (resolved) indices of the cached blocks.
    """

    def __init__(self, config: CrossClipKVCacheConfig, block_indices: Sequence[int]) -> None:
        self.config = config
        self.block_indices: tuple[int, ...] = tuple(block_indices)
        self._stored: dict[int, dict[_Slot, KVPair]] = {}
        self._pending: dict[_Slot, KVPair] = {}
        self._selected: tuple[int, ...] = ()
        # keyed by (branch, block), or (branches, block) for CFG branches batched together
        self._windows: dict[tuple[CFGBranch | tuple[CFGBranch, ...], int], _HistoryWindow | None] = {}
        self._branch = CFGBranch.COND
        self._batched: tuple[CFGBranch, ...] | None = None  # CFG branches stacked on the batch axis, if any
        self._recording = False
        self._attend_history = True
        self._token_grid: tuple[int, int, int] | None = None
        self._branches_seen: set[CFGBranch] = set()  # branches that ran forwards since the last commit/discard
        self._kept_index: tuple[tuple[int, int, int, torch.device], torch.Tensor | None] | None = None
        # attention probe (config.probe_attention): block -> [sum of per-segment shares, number of forwards]
        self._attention_sums: dict[int, list[Any]] = {}
        # `_token_grid` is set before each transformer forward by the diffusers hook `enable_cross_clip_kv_cache`
        # registers (`_TokenGridHook`).

    # ------------------------------------------------------------------ state read by the processors
    @property
    def current_branch(self) -> CFGBranch:
        """The CFG branch of the forwards running now (`COND` outside any `branch(...)` context)."""
        return self._branch

    @property
    def batched_branches_active(self) -> tuple[CFGBranch, ...] | None:
        """The CFG branches stacked on the batch axis of the running forwards (`batched_branches`), or `None`."""
        return self._batched

    @property
    def is_recording(self) -> bool:
        return self._recording

    @property
    def selected(self) -> tuple[int, ...]:
        """Ids of the history clips the current clip attends to."""
        return self._selected

    @property
    def token_grid(self) -> tuple[int, int, int] | None:
        """Patched `(frames, height, width)` of the latest transformer input (set by the forward pre-hook)."""
        return self._token_grid

    @torch.compiler.disable
    def set_token_grid(self, frames: int, height: int, width: int) -> None:
        """Record the patched grid of the current input; tokens are ordered frame-major `(f, h, w)` after patchify.

        `enable_cross_clip_kv_cache` installs a forward pre-hook on the transformer that calls this on every forward.
        Call it yourself only when you drive the processors without the transformer.
        """
        self._token_grid = (int(frames), int(height), int(width))

    # ------------------------------------------------------------------ context managers
    @contextmanager
    def branch(self, branch: CFGBranch | str) -> Iterator[None]:
        """Run the enclosed forwards as CFG branch `branch` (`"cond"` / `"uncond"` or a `CFGBranch`)."""
        branch = _parse_branch(branch)
        previous, self._branch = self._branch, branch
        try:
            yield
        finally:
            self._branch = previous

    @contextmanager
    def batched_branches(
        self, branches: Sequence[CFGBranch | str] = (CFGBranch.COND, CFGBranch.UNCOND)
    ) -> Iterator[None]:
        """Run the enclosed forwards with several CFG branches stacked on the batch axis (one forward instead of one
        per branch): batch rows `[i * B, (i + 1) * B)` belong to `branches[i]`, e.g. `cat([x_cond, x_uncond])`.

        Each branch's rows attend that branch's history, and a recording forward stores each branch's rows as that
        branch's K/V, exactly as separate `branch(...)` forwards would. Inside, `branch(...)` has no effect.

        Args:
            branches (`Sequence[CFGBranch | str]`, *optional*, defaults to `("cond", "uncond")`):
                The branches in batch order, each at most once.
        """
        parsed = tuple(_parse_branch(b) for b in branches)
        if not parsed or len(set(parsed)) != len(parsed):
            raise ValueError(f"`branches` must name distinct CFG branches, got {list(branches)!r}.")
        previous, self._batched = self._batched, parsed
        try:
            yield
        finally:
            self._batched = previous

    @contextmanager
    def recording(self, attend_history: bool | None = None) -> Iterator[None]:
        """Record the K/V of the enclosed forwards as the pending (current) clip.

        Args:
            attend_history (`bool`, *optional*):
                Whether the recorded forwards also attend the selected history. Defaults to `False` in `"clean"`
                record mode and `True` in `"last_step"` mode.
        """
        if attend_history is None:
            attend_history = self.config.record_mode is RecordMode.LAST_STEP
        previous = (self._recording, self._attend_history)
        self._recording, self._attend_history = True, attend_history
        try:
            yield
        finally:
            self._recording, self._attend_history = previous

    # ------------------------------------------------------------------ selection and storage
    def select(self, clip_ids: Sequence[int]) -> None:
        """Set the history attended by the coming forwards. Drops the previous clip's gathered buffers.

        The gathering itself happens once per block and branch, at the first forward that needs it (so the device and
        dtype are those of the forward, which also works with model CPU offload).
        """
        clip_ids = tuple(int(c) for c in clip_ids)
        missing = [c for c in clip_ids if c not in self._stored]
        if missing:
            raise ValueError(f"`clip_ids` {missing} are not stored; stored clips: {self.stored_clips()}.")
        if len(set(clip_ids)) != len(clip_ids):
            raise ValueError(f"`clip_ids` must not repeat a clip, got {list(clip_ids)}.")
        self._selected = clip_ids
        self._windows = {}
        self._attention_sums = {}

    def release_working_memory(self) -> None:
        """Free the gathered history buffers of the current clip (the selection is kept and re-gathered on use)."""
        self._windows = {}

    def commit(self, clip_id: int) -> None:
        """Store the pending recording as history clip `clip_id` (moved to the CPU if `offload_to_cpu`)."""
        if not self._pending:
            raise RuntimeError(
                f"No K/V were recorded for clip {clip_id}: run its recording forward(s) inside `recording()` first."
            )
        if clip_id in self._stored:
            raise ValueError(f"Clip {clip_id} is already stored; evict it first.")
        for branch in {b for b, _ in self._pending}:
            missing = [i for i in self.block_indices if (branch, i) not in self._pending]
            if missing:
                raise RuntimeError(f"The {branch.value} recording of clip {clip_id} lacks blocks {missing}.")
        unrecorded = self._branches_seen - {b for b, _ in self._pending}
        if unrecorded:
            names = sorted(b.value for b in unrecorded)
            logger.warning(
                f"Clip {clip_id} ran {names} forwards but recorded no K/V for them: later {names} forwards will attend "
                "no history of this clip. Record every CFG branch inside `recording()`."
            )
        self._stored[clip_id] = {slot: self._to_storage(kv) for slot, kv in self._pending.items()}
        self._pending = {}
        self._branches_seen = set()

    def discard_pending(self) -> None:
        """Drop the pending recording (the plan does not store this clip)."""
        self._pending = {}
        self._branches_seen = set()

    def evict(self, clip_id: int) -> None:
        """Free the K/V of stored clip `clip_id`."""
        if self._stored.pop(clip_id, None) is None:
            raise ValueError(f"Clip {clip_id} is not stored; stored clips: {self.stored_clips()}.")
        if clip_id in self._selected:
            self._selected = tuple(c for c in self._selected if c != clip_id)
            self._windows = {}

    def clear(self) -> None:
        """Drop everything: stored clips, pending recording, selection and buffers."""
        self._stored = {}
        self._pending = {}
        self._selected = ()
        self._windows = {}
        self._branches_seen = set()

    def stored_clips(self) -> list[int]:
        return sorted(self._stored)

    @property
    def has_pending(self) -> bool:
        return bool(self._pending)

    def get(self, clip_id: int, block_index: int, branch: CFGBranch | str = CFGBranch.COND) -> KVPair:
        """The stored K/V of one clip, block and branch."""
        try:
            return self._stored[clip_id][(_parse_branch(branch), block_index)]
        except KeyError:
            raise KeyError(f"No K/V stored for clip {clip_id}, block {block_index}, branch {branch!r}.") from None

    def nbytes(self) -> int:
        """Bytes of stored K/V (on whatever device they live)."""
        return sum(kv.nbytes for clip in self._stored.values() for kv in clip.values())

    def working_nbytes(self) -> int:
        """Bytes of the current clip's gathered history buffers plus the pending recording (device working set)."""
        windows = sum(w.nbytes for w in self._windows.values() if w is not None)
        return windows + sum(kv.nbytes for kv in self._pending.values())

    def num_tensors(self) -> int:
        """Number of stored K and V tensors (2 per clip, cached block and recorded branch)."""
        return 2 * sum(len(clip) for clip in self._stored.values())

    # ------------------------------------------------------------------ processor-facing
    # Opaque to torch.compile: the cache is Python state (selected clip ids, recording flag, dicts of tensors) that
    # dynamo would otherwise guard on and recompile for at every clip. Compiled inference reaches it through the
    # processor's custom op (no graph break); with autograd enabled the call is a graph break per cached block.
    @torch.compiler.disable
    def attention_kv(
        self,
        block_index: int,
        key: torch.Tensor,
        value: torch.Tensor,
        context_parallel: bool = False,
        unrotated_key: torch.Tensor | None = None,
        rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """What the processor of block `block_index` calls: records the current K/V when recording, and returns the
        keys/values to attend (`extend`).

        Args:
            block_index (`int`): The calling block.
            key (`torch.Tensor`), value (`torch.Tensor`): Current K (after `norm_k` and RoPE) and V,
                `(batch, tokens, heads, head_dim)`.
            context_parallel (`bool`, *optional*, defaults to `False`): Whether the processor runs under context
                parallelism, which the cache does not support (raises when recording or attending history).
            unrotated_key (`torch.Tensor`, *optional*), rotary_emb (`tuple[torch.Tensor, torch.Tensor]`, *optional*):
                The current K before RoPE (after `norm_k`) and the `(cos, sin)` it was rotated with. Needed only
                when recording with `config.history_pool` (keys are pooled before RoPE and rotated at the pooled
                positions); `rotary_emb=None` means no RoPE.
        """
        if context_parallel and (self._recording or self.uses_history()):
            # Every rank sees a shard of the sequence: a recorded clip would be a shard, and history would have to be
            # exchanged between ranks like the current keys. Not implemented.
            raise NotImplementedError("The cross-clip KV cache does not support context parallelism.")
        self._branches_seen.update(self._batched or (self._branch,))
        if self._recording:
            self.record(block_index, key, value, unrotated_key=unrotated_key, rotary_emb=rotary_emb)
        return self.extend(block_index, key, value)

    def record(
        self,
        block_index: int,
        key: torch.Tensor,
        value: torch.Tensor,
        unrotated_key: torch.Tensor | None = None,
        rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        """Keep the current clip's K/V of block `block_index` in the pending recording (frame-subsampled or pooled
        if the config says so; pooling needs `unrotated_key`, see `attention_kv`)."""
        owned = False  # whether key / value are new tensors already (not views of the forward's)
        if self.config.pools_history:
            key, value = self._pool_kv(key, value, unrotated_key, rotary_emb)
            owned = True
        elif self.config.selects_tokens:
            key, value = self._select_kv(key, value)
            owned = True
        else:
            index = self._kept_token_index(key)
            if index is not None:  # index_select makes new tensors
                key, value = key.index_select(1, index), value.index_select(1, index)
                owned = True
        if self._batched is None:
            if not owned:
                key, value = _own(key), _own(value)
            self._pending[(self._branch, block_index)] = KVPair(key, value)
            return
        if key.shape[0] % len(self._batched):
            raise ValueError(
                f"A batch of {key.shape[0]} cannot hold {len(self._batched)} CFG branches stacked on the batch axis."
            )
        # one tensor of its own per branch (chunks are views of one storage, which savers of the state refuse)
        for branch, k, v in zip(self._batched, key.chunk(len(self._batched)), value.chunk(len(self._batched))):
            self._pending[(branch, block_index)] = KVPair(_own(k), _own(v))

    def extend(self, block_index: int, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`[selected history K/V ..., current K/V]` along the token axis, or the inputs unchanged without history."""
        if not self.uses_history():
            return key, value
        slot = (self._batched or self._branch, block_index)
        if slot not in self._windows:
            groups = []
            for branch in self._batched or (self._branch,):
                key_of = (branch, block_index)
                groups.append([self._stored[c][key_of] for c in self._selected if key_of in self._stored[c]])
            self._windows[slot] = _HistoryWindow(groups) if any(groups) else None
        window = self._windows[slot]
        if window is None:
            return key, value
        return window.extend(key, value)

    def attention_bias(self, block_index: int, query: torch.Tensor, num_current: int) -> torch.Tensor | None:
        """The additive bias the processor of block `block_index` adds to the attention logits over
        `[history..., current]` (`config.proportional_attention` with `history_pool`: `log` of the tokens each
        pooled history key stands for), or `None` (dense history, proportional attention off, or no history).

        Args:
            block_index (`int`): The calling block.
            query (`torch.Tensor`): Current queries, `(batch, tokens, heads, head_dim)` (dtype and device of the bias).
            num_current (`int`): Current keys, after the history ones.
        """
        if not (self.config.pools_history and self.config.proportional_attention) or not self.uses_history():
            return None
        window = self._windows.get((self._batched or self._branch, block_index))
        if window is None:
            return None
        if window.history_log_counts is None:
            frames, height, width = self._checked_grid(num_current, "Proportional attention")
            counts = self.config.pooled_token_counts(frames, height, width)
            for kv in window.groups[0]:
                if kv.num_tokens != counts.numel():
                    raise RuntimeError(
                        f"A history clip holds {kv.num_tokens} pooled tokens, a clip of the current token grid "
                        f"{self._token_grid} pools to {counts.numel()}: history recorded at another size."
                    )
            window.history_log_counts = counts.log().repeat(len(window.groups[0]))
        return window.attention_bias(query, num_current)

    @property
    def probes_attention(self) -> bool:
        """Whether the processors should report attention shares now (`config.probe_attention`, history attended,
        not recording, a cond-branch forward)."""
        return (
            self.config.probe_attention
            and self.uses_history()
            and not self._recording
            and CFGBranch.COND in (self._batched or (self._branch,))
        )

    @torch.compiler.disable
    @torch.no_grad()
    def observe_attention(
        self,
        block_index: int,
        query: torch.Tensor,
        key: torch.Tensor,
        chunk_size: int = 1024,
        bias: torch.Tensor | None = None,
    ) -> None:
        """Accumulate the attention shares of one forward of block `block_index` (the processor calls this when
        `probes_attention`).

        Args:
            block_index (`int`): The calling block.
            query (`torch.Tensor`): Current queries after `norm_q` and RoPE, `(batch, tokens, heads, head_dim)`.
            key (`torch.Tensor`): The keys attended, `[history..., current]`, as returned by `attention_kv`.
            chunk_size (`int`, *optional*, defaults to 1024): Queries per `Q K^T` chunk (bounds the probe's memory).
            bias (`torch.Tensor`, *optional*): The additive logit bias the forward attends with (`attention_bias`).
        """
        branches = self._batched or (self._branch,)
        slot = (self._batched or self._branch, block_index)
        window = self._windows.get(slot)
        if window is None:
            return
        group = branches.index(CFGBranch.COND)
        rows = query.shape[0] // len(branches)
        q = query[group * rows : (group + 1) * rows].float()
        k = key[group * rows : (group + 1) * rows].float()
        lengths = [kv.num_tokens for kv in window.groups[group]] + [query.shape[1]]
        if sum(lengths) != k.shape[1]:
            raise RuntimeError(f"Attention probe: {k.shape[1]} keys but segments of {lengths} tokens.")
        bounds = torch.tensor([0, *lengths], device=k.device).cumsum(0).tolist()
        scale = q.shape[-1] ** -0.5
        totals = torch.zeros(len(lengths), dtype=torch.float64, device=k.device)
        bias = None if bias is None else bias.float()
        for start in range(0, q.shape[1], chunk_size):
            scores = torch.einsum("bshd,bthd->bhst", q[:, start : start + chunk_size], k) * scale
            if bias is not None:
                scores = scores + bias
            probs = scores.softmax(dim=-1)
            for i in range(len(lengths)):
                totals[i] += probs[..., bounds[i] : bounds[i + 1]].sum(dtype=torch.float64)
        totals /= q.shape[0] * q.shape[1] * q.shape[2]
        clip_ids = [c for c in self._selected if (CFGBranch.COND, block_index) in self._stored[c]]
        entry = self._attention_sums.setdefault(block_index, [clip_ids, torch.zeros_like(totals), 0])
        if entry[0] != clip_ids:
            raise RuntimeError("Attention probe: the attended clips changed within a clip; pop the shares first.")
        entry[1] += totals
        entry[2] += 1

    def pop_attention_shares(self) -> dict[int, dict[str, Any]]:
        """The attention shares measured since the last call (`config.probe_attention`), and reset them.

        Returns:
            `dict`: `{block_index: {"history": {clip_id: share}, "current": share, "forwards": n}}`, the shares of one
            block summing to 1 (mean over the cond-branch forwards that attended history); empty when nothing was
            measured (probe off, or no history attended).
        """
        out = {}
        for block, (clip_ids, totals, count) in sorted(self._attention_sums.items()):
            mean = (totals / max(count, 1)).tolist()
            out[block] = {
                "history": {int(c): float(v) for c, v in zip(clip_ids, mean[:-1])},
                "current": float(mean[-1]),
                "forwards": int(count),
            }
        self._attention_sums = {}
        return out

    def uses_history(self) -> bool:
        """Whether forwards run now attend any history (ignoring which branches were recorded)."""
        return bool(self._selected) and not (self._recording and not self._attend_history)

    # ------------------------------------------------------------------ internals
    def _checked_grid(self, num_tokens: int, what: str) -> tuple[int, int, int]:
        if self._token_grid is None:
            raise RuntimeError(
                f"{what} needs the token grid: run the transformer (whose pre-hook reports it) or call "
                "`set_token_grid(frames, height, width)`."
            )
        frames, height, width = self._token_grid
        if frames * height * width != num_tokens:
            raise RuntimeError(
                f"The token grid {self._token_grid} does not match the {num_tokens} tokens seen by the processor "
                "(is the sequence split, e.g. by context parallelism?)."
            )
        return self._token_grid

    def _pool_kv(
        self,
        key: torch.Tensor,
        value: torch.Tensor,
        unrotated_key: torch.Tensor | None,
        rotary_emb: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Compressed history (`config.history_pool`): window means of the pre-RoPE keys and of the values, the keys
        then rotated at each window's centroid position. Returns new tensors in the dtype of `key`."""
        if unrotated_key is None:
            if rotary_emb is not None:
                raise ValueError("Pooling rotated keys needs `unrotated_key` (the keys before RoPE).")
            unrotated_key = key  # no RoPE: the keys are their own pre-RoPE keys
        grid = self._checked_grid(key.shape[1], "Pooling history (`history_pool`)")
        pool = self.config.history_pool
        pooled_key = _pool_tokens(unrotated_key.float(), grid, pool)
        pooled_value = _pool_tokens(value.float(), grid, pool).to(value.dtype)
        if rotary_emb is not None:
            cos, sin = (_pool_tokens(f.float().expand(1, -1, 1, -1), grid, pool) for f in rotary_emb)
            # The mean of the window's rotations e^{i p w} is r * e^{i c w}, c the centroid of the positions p and
            # r = sinc-like > 0 while the window spans < 2 pi / w (every RoPE channel depends on one axis only):
            # renormalised, it is exactly the rotation at the centroid.
            norm = torch.sqrt(cos.square() + sin.square()).clamp_min(torch.finfo(cos.dtype).tiny)
            pooled_key = _rotate(pooled_key, cos / norm, sin / norm)
        return pooled_key.to(key.dtype), pooled_value

    def _select_kv(self, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Compressed history by token selection (`config.history_keep_ratio`): per batch row, the tokens whose values
        deviate most from the clip's mean value, in their original order. Returns new tensors (`gather`)."""
        kept = self.config.kept_token_count(key.shape[1])  # ceil(r * tokens) <= tokens for r <= 1
        with torch.no_grad():
            v = value.float()
            saliency = (v - v.mean(dim=1, keepdim=True)).square().sum(dim=(2, 3))  # (batch, tokens)
            index = saliency.topk(kept, dim=1).indices.sort(dim=1).values
        index = index[:, :, None, None].expand(-1, -1, key.shape[2], key.shape[3])
        return key.gather(1, index), value.gather(1, index)

    def _kept_token_index(self, key: torch.Tensor) -> torch.Tensor | None:
        if not self.config.subsamples_frames:
            return None
        frames, height, width = self._checked_grid(key.shape[1], "Frame subsampling")
        cache_key = (frames, height, width, key.device)
        if self._kept_index is None or self._kept_index[0] != cache_key:
            kept = self.config.kept_frames(frames)
            if len(kept) == frames:
                index = None
            else:
                tokens = height * width
                index = torch.tensor(kept, device=key.device)[:, None] * tokens + torch.arange(
                    tokens, device=key.device
                )
                index = index.flatten()
            self._kept_index = (cache_key, index)
        return self._kept_index[1]

    def _to_storage(self, kv: KVPair) -> KVPair:
        if not self.config.offload_to_cpu or kv.key.device.type == "cpu":
            return kv
        if kv.key.requires_grad or kv.value.requires_grad:
            return KVPair(kv.key.to("cpu"), kv.value.to("cpu"))
        pin = torch.cuda.is_available()

        def to_host(t: torch.Tensor) -> torch.Tensor:
            host = torch.empty(t.shape, dtype=t.dtype, device="cpu", pin_memory=pin)
            host.copy_(t)
            return host

        return KVPair(to_host(kv.key), to_host(kv.value))

    # ------------------------------------------------------------------ saving and restoring (resumable generation)
    def export_state(self) -> dict[str, Any]:
        """The stored history as plain tensors and metadata (the current selection and recording are not part of it).

        Returns a dict `{"block_indices": [...], "config": config.to_dict(), "clips": {clip_id: {name: tensor}}}`,
        `name` being `"{branch}.{block}.key"` / `"{branch}.{block}.value"` (e.g. `"uncond.3.value"`). The tensors are
        the stored ones, not copies: save them before the cache changes. `import_state` restores them.
        """
        clips = {}
        for clip_id, slots in sorted(self._stored.items()):
            tensors = {}
            for (branch, block), kv in sorted(slots.items(), key=lambda item: (item[0][0].value, item[0][1])):
                tensors[f"{branch.value}.{block}.key"] = kv.key
                tensors[f"{branch.value}.{block}.value"] = kv.value
            clips[clip_id] = tensors
        return {"block_indices": list(self.block_indices), "config": self.config.to_dict(), "clips": clips}

    def import_state(self, state: dict[str, Any], device: torch.device | str | None = None) -> None:
        """Replace everything stored by `state` (from `export_state`, possibly after a save/load round trip).

        Args:
            state (`dict`): `export_state()` output.
            device (`torch.device` or `str`, *optional*):
                Where the K/V go when the config does not offload them to the CPU (the device the forwards run on);
                `None` keeps them where they are.

        Raises:
            `ValueError`: if `state` was exported from a cache of other blocks or other recorded frames, or is
                malformed.
        """
        if list(state.get("block_indices", ())) != list(self.block_indices):
            raise ValueError(
                f"`state` holds K/V of blocks {list(state.get('block_indices', ()))}, this cache serves blocks "
                f"{list(self.block_indices)}."
            )
        saved = state.get("config", {})
        # states written before `history_pool` / `history_keep_ratio` existed are dense
        defaults = {"history_pool": [1, 1, 1], "history_keep_ratio": 1.0}
        for name in ("history_frame_stride", "history_frame_indices", "history_pool", "history_keep_ratio"):
            if saved.get(name, defaults.get(name)) != self.config.to_dict()[name]:
                raise ValueError(
                    f"`state` was recorded with `{name}={saved.get(name)!r}`, this cache uses "
                    f"`{name}={self.config.to_dict()[name]!r}`."
                )
        pin = self.config.offload_to_cpu and torch.cuda.is_available()

        def _place(tensor: torch.Tensor) -> torch.Tensor:
            if self.config.offload_to_cpu:  # stored on the host, pinned for the per-clip copies to the device
                tensor = tensor.to("cpu")
                return tensor.pin_memory() if pin and not tensor.is_pinned() else tensor
            return tensor if device is None else tensor.to(device)

        stored: dict[int, dict[_Slot, KVPair]] = {}
        for clip_id, tensors in state["clips"].items():
            slots: dict[_Slot, dict[str, torch.Tensor]] = {}
            for name, tensor in tensors.items():
                try:
                    branch, block, kind = name.split(".")
                    slot = (_parse_branch(branch), int(block))
                except ValueError:
                    raise ValueError(f"`state` tensor name {name!r} is not '<branch>.<block>.<key|value>'.") from None
                if kind not in ("key", "value") or slot[1] not in self.block_indices:
                    raise ValueError(f"`state` tensor name {name!r} is not '<branch>.<block>.<key|value>'.")
                slots.setdefault(slot, {})[kind] = _place(tensor)
            pairs = {}
            for slot, kv in slots.items():
                if set(kv) != {"key", "value"}:
                    raise ValueError(
                        f"`state` clip {clip_id} lacks the key or the value of {slot[0].value} block {slot[1]}."
                    )
                pairs[slot] = KVPair(kv["key"], kv["value"])
            stored[int(clip_id)] = pairs
        self.clear()
        self._stored = stored


def _parse_branch(branch: CFGBranch | str) -> CFGBranch:
    if isinstance(branch, CFGBranch):
        return branch
    try:
        return CFGBranch(branch)
    except ValueError:
        accepted = ", ".join(repr(b.value) for b in CFGBranch)
        raise ValueError(f"`branch` must be one of {accepted} or a `CFGBranch`, got {branch!r}.") from None


def _pool_tokens(x: torch.Tensor, grid: tuple[int, int, int], pool: tuple[int, int, int]) -> torch.Tensor:
    """Window means of frame-major tokens: `(B, F*H*W, heads, d)` -> `(B, F'*H'*W', heads, d)` (partial windows at
    the far edges average the tokens they hold)."""
    batch, _, heads, dim = x.shape
    frames, height, width = grid
    volume = x.reshape(batch, frames, height, width, heads * dim).permute(0, 4, 1, 2, 3)
    # a window larger than the grid is the whole axis (same count, ceil(n / p) = 1)
    kernel = tuple(min(p, n) for p, n in zip(pool, grid))
    pooled = torch.nn.functional.avg_pool3d(volume, kernel, stride=kernel, ceil_mode=True, count_include_pad=False)
    return pooled.permute(0, 2, 3, 4, 1).reshape(batch, -1, heads, dim)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # Wan's interleaved real rotation (as in `WanAttnProcessor`), with (cos, sin) given per token.
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    out = torch.empty_like(x)
    out[..., 0::2] = x1 * cos[..., 0::2] - x2 * sin[..., 1::2]
    out[..., 1::2] = x1 * sin[..., 1::2] + x2 * cos[..., 0::2]
    return out


def _own(tensor: torch.Tensor) -> torch.Tensor:
    """A contiguous tensor with storage of its own. The recorded K/V outlive the forward, and under torch.compile the
    processor's inputs are buffers of the compiled graph that it may reuse for later ops."""
    return tensor.clone(memory_format=torch.contiguous_format)


def _check_batch(history_batch: int, batch: int) -> None:
    if history_batch not in (1, batch):
        raise ValueError(
            f"History K/V were recorded with batch size {history_batch}, which does not broadcast to the current "
            f"batch size {batch}; record with batch size 1 or {batch}."
        )
