# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""The `diffusers_longvid::cross_clip_attention` custom op: the cross-clip KV path under `torch.compile`.

Under torch.compile the cache (Python state: selection, recording flag, dicts of tensors) is reached through one opaque
custom op per cached block instead of a graph break. A custom op cannot take a Python object, so it gets its processor
as a handle tensor (dynamo would specialise a Python int), resolved through the weak table of this module: a dropped
processor does not stay alive through it, and it holds no cache data. This module is that op and that table only.
"""

from __future__ import annotations

import itertools
import weakref
from typing import Protocol

import torch


__all__ = ["cross_clip_attention", "register_processor"]


class _Attends(Protocol):
    def _attend(self, query, key, value, attention_mask) -> torch.Tensor: ...


_PROCESSORS: weakref.WeakValueDictionary[int, _Attends] = weakref.WeakValueDictionary()
_HANDLES = itertools.count()


def register_processor(processor: _Attends) -> torch.Tensor:
    """A new handle (0-d int64 tensor) for `processor`, which `cross_clip_attention` resolves while it is alive."""
    handle = torch.tensor(next(_HANDLES))
    _PROCESSORS[int(handle)] = processor
    return handle


@torch.library.custom_op("diffusers_longvid::cross_clip_attention", mutates_args=())
def _cross_clip_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, handle: torch.Tensor
) -> torch.Tensor:
    """`CrossClipKVAttnProcessor._attend` of the processor `handle` names (the compiled path), `(B, S, H, D)`."""
    return _PROCESSORS[int(handle)]._attend(query, key, value, None).contiguous()


@_cross_clip_attention.register_fake
def _(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, handle: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(query)


def cross_clip_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, handle: torch.Tensor
) -> torch.Tensor:
    """Attention of the processor `handle` names, as one op dynamo does not trace into (no graph break)."""
    return torch.ops.diffusers_longvid.cross_clip_attention(query, key, value, handle)
