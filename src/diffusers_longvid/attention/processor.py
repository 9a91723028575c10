# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""`CrossClipKVAttnProcessor`: Wan self-attention whose queries also attend to cached K/V of history clips.

Installed on `attn1` of the cached blocks by `enable_cross_clip_kv_cache`; removed (the exact previous processors
restored) by `disable_cross_clip_kv_cache`. No diffusers file or class is patched: this is an ordinary attention
processor, and its state lives in the shared `CrossClipKVCache`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from diffusers.hooks import HookRegistry, ModelHook
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.transformers.transformer_wan import _get_qkv_projections
from diffusers.utils import logging
from diffusers.utils.torch_utils import unwrap_module
from torch import nn

from .compile_op import cross_clip_attention, register_processor
from .kv_cache import CrossClipKVCache, CrossClipKVCacheConfig
from .rope import disable_rope_offset


logger = logging.get_logger(__name__)  # pylint: disable=invalid-name

__all__ = [
    "CrossClipKVAttnProcessor",
    "disable_cross_clip_kv_cache",
    "enable_cross_clip_kv_cache",
    "get_cross_clip_kv_cache",
]


def _apply_rotary_emb(hidden_states: torch.Tensor, freqs_cos: torch.Tensor, freqs_sin: torch.Tensor) -> torch.Tensor:
    # Identical to the closure inside diffusers' `WanAttnProcessor.__call__` (interleaved real rotation).
    x1, x2 = hidden_states.unflatten(-1, (-1, 2)).unbind(-1)
    cos = freqs_cos[..., 0::2]
    sin = freqs_sin[..., 1::2]
    out = torch.empty_like(hidden_states)
    out[..., 0::2] = x1 * cos - x2 * sin
    out[..., 1::2] = x1 * sin + x2 * cos
    return out.type_as(hidden_states)


class CrossClipKVAttnProcessor:
    r"""
    Self-attention processor for `WanAttention` (`attn1`) with a cross-clip KV cache.

    With no history selected (or while recording in `"clean"` mode) it computes exactly what diffusers'
    `WanAttnProcessor` computes. With history selected, the current queries attend to `[K_hist..., K_cur]` /
    `[V_hist..., V_cur]` in one softmax: bidirectional inside the current clip, causal across clips. History keys
    carry the RoPE of their own clip's positions, current keys/queries the current clip's (set by the transformer's
    rotary embedding, e.g. under `rope_frame_offset`), so attention sees true relative distances.

    Args:
        cache (`CrossClipKVCache`): The shared cache of the transformer.
        block_index (`int`): Index of the block whose `attn1` this processor serves.
        previous_processor (`object`, *optional*): The processor it replaced, restored by `disable_cross_clip_kv_cache`.
    """

    _attention_backend = None
    _parallel_config = None

    def __init__(self, cache: CrossClipKVCache, block_index: int, previous_processor: object | None = None) -> None:
        if not hasattr(F, "scaled_dot_product_attention"):
            raise ImportError("CrossClipKVAttnProcessor requires PyTorch 2.0 or higher.")
        self.cache = cache
        self.block_index = block_index
        self.previous_processor = previous_processor
        self._register()

    def _register(self) -> None:
        # the handle through which the compiled path (`compile_op.cross_clip_attention`) reaches this processor
        self._handle = register_processor(self)

    def __setstate__(self, state: dict) -> None:
        # a copy (`copy.deepcopy` of the transformer) is another processor: it must not share the handle
        self.__dict__.update(state)
        self._register()

    def __call__(
        self,
        attn: nn.Module,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        if encoder_hidden_states is not None:
            raise ValueError(
                "`CrossClipKVAttnProcessor` serves self-attention (`attn1`) only; it got `encoder_hidden_states`."
            )
        query, key, value = _get_qkv_projections(attn, hidden_states, None)

        query = attn.norm_q(query)
        key = attn.norm_k(key)

        query = query.unflatten(2, (attn.heads, -1))
        key = key.unflatten(2, (attn.heads, -1))
        value = value.unflatten(2, (attn.heads, -1))

        # Compressed history pools the keys before RoPE and rotates them at the pooled positions: keep both.
        pools = self.cache.config.pools_history and self.cache.is_recording
        unrotated_key = key if pools else None
        if rotary_emb is not None:
            query = _apply_rotary_emb(query, *rotary_emb)
            key = _apply_rotary_emb(key, *rotary_emb)

        if torch.compiler.is_compiling() and self._compiles_as_custom_op(attention_mask, pools):
            # No graph break: dynamo sees one opaque op.
            hidden_states = cross_clip_attention(query, key, value, self._handle)
        else:
            hidden_states = self._attend(
                query,
                key,
                value,
                attention_mask,
                unrotated_key=unrotated_key,
                rotary_emb=rotary_emb if pools else None,
            )
        hidden_states = hidden_states.flatten(2, 3)
        hidden_states = hidden_states.type_as(query)

        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        return hidden_states

    def _compiles_as_custom_op(self, attention_mask: torch.Tensor | None, pools: bool) -> bool:
        """Whether a compiled forward reaches the cache through the custom op (else dynamo breaks the graph there).
        Training keeps the break (the op has no autograd formula), and so does a pooled recording forward (once per
        clip), which needs the pre-RoPE keys."""
        return attention_mask is None and self._parallel_config is None and not torch.is_grad_enabled() and not pools

    def _attend(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None,
        unrotated_key: torch.Tensor | None = None,
        rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Attention of the current queries over `[selected history; current]` keys/values (records when asked;
        `unrotated_key` / `rotary_emb` serve compressed recording, see `CrossClipKVCache.attention_kv`)."""
        all_key, all_value = self.cache.attention_kv(
            self.block_index,
            key,
            value,
            context_parallel=self._parallel_config is not None,
            unrotated_key=unrotated_key,
            rotary_emb=rotary_emb,
        )
        with_history = all_key is not key
        if with_history and attention_mask is not None:
            raise NotImplementedError("`attention_mask` is not supported together with cross-clip history.")
        # proportional attention over pooled history (`config.proportional_attention`); None for dense history
        bias = self.cache.attention_bias(self.block_index, query, key.shape[1]) if with_history else None
        if with_history and self.cache.probes_attention:
            self.cache.observe_attention(self.block_index, query, all_key, bias=bias)
        return dispatch_attention_fn(
            query,
            all_key,
            all_value,
            attn_mask=attention_mask if bias is None else bias,
            dropout_p=0.0,
            is_causal=False,
            backend=self._attention_backend,
            parallel_config=None if with_history else self._parallel_config,
        )


def _blocks(transformer: nn.Module) -> nn.ModuleList:
    blocks = getattr(transformer, "blocks", None)
    if not isinstance(blocks, nn.ModuleList) or not all(hasattr(b, "attn1") for b in blocks):
        raise TypeError(
            f"`transformer` must be a Wan-style transformer with `blocks[i].attn1` (e.g. `WanTransformer3DModel`), "
            f"got {type(transformer).__name__}."
        )
    return blocks


def get_cross_clip_kv_cache(transformer: nn.Module) -> CrossClipKVCache | None:
    """The `CrossClipKVCache` installed on `transformer`, or `None`."""
    for block in _blocks(unwrap_module(transformer)):
        processor = block.attn1.processor
        if isinstance(processor, CrossClipKVAttnProcessor):
            return processor.cache
    return None


_TOKEN_GRID_HOOK = "longvid_cross_clip_token_grid"


class _TokenGridHook(ModelHook):
    """A diffusers `ModelHook` on the transformer: reports the patched `(frames, height, width)` grid of each forward's
    `hidden_states` to the cache (the attention processors only see the flattened tokens)."""

    def __init__(self, cache: CrossClipKVCache, patch_size: tuple[int, int, int]) -> None:
        super().__init__()
        self.cache = cache
        self.patch_size = tuple(patch_size)

    def pre_forward(self, module: nn.Module, *args: Any, **kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        hidden_states = kwargs.get("hidden_states", args[0] if args else None)
        if isinstance(hidden_states, torch.Tensor) and hidden_states.ndim == 5:
            p_t, p_h, p_w = self.patch_size
            _, _, frames, height, width = hidden_states.shape
            self.cache.set_token_grid(frames // p_t, height // p_h, width // p_w)
        return args, kwargs


def enable_cross_clip_kv_cache(
    transformer: nn.Module, config: CrossClipKVCacheConfig | None = None
) -> CrossClipKVCache:
    r"""
    Install `CrossClipKVAttnProcessor` on `attn1` of the cached blocks of a Wan transformer.

    Idempotent: enabling again with an equal config returns the installed cache unchanged. The processors it replaces
    are kept and restored exactly by `disable_cross_clip_kv_cache`; their attention backend (and parallel config) carry
    over, and `transformer.set_attention_backend(...)` called later reaches the new processors too.

    Args:
        transformer (`WanTransformer3DModel`): The transformer (compiled modules are unwrapped).
        config (`CrossClipKVCacheConfig`, *optional*): Defaults to `CrossClipKVCacheConfig()`.

    Returns:
        `CrossClipKVCache`: The cache shared by the installed processors.
    """
    if config is None:
        config = CrossClipKVCacheConfig()
    if not isinstance(config, CrossClipKVCacheConfig):
        raise TypeError(f"`config` must be a `CrossClipKVCacheConfig`, got {type(config).__name__}.")
    transformer = unwrap_module(transformer)
    blocks = _blocks(transformer)
    existing = get_cross_clip_kv_cache(transformer)
    if existing is not None:
        if existing.config == config:
            return existing
        raise ValueError(
            "A cross-clip KV cache with a different config is already installed on `transformer`; call "
            "`disable_cross_clip_kv_cache(transformer)` first."
        )
    block_indices = config.resolve_blocks(len(blocks))
    cache = CrossClipKVCache(config, block_indices)
    for index in block_indices:
        attn = blocks[index].attn1
        previous = attn.processor
        processor = CrossClipKVAttnProcessor(cache, index, previous_processor=previous)
        processor._attention_backend = getattr(previous, "_attention_backend", None)
        processor._parallel_config = getattr(previous, "_parallel_config", None)
        attn.set_processor(processor)
    patch_size = getattr(getattr(transformer, "config", None), "patch_size", None) or transformer.rope.patch_size
    HookRegistry.check_if_exists_or_initialize(transformer).register_hook(
        _TokenGridHook(cache, patch_size), _TOKEN_GRID_HOOK
    )
    logger.debug(f"Cross-clip KV cache enabled on blocks {list(block_indices)}.")
    return cache


def disable_cross_clip_kv_cache(transformer: nn.Module) -> None:
    """Remove the cross-clip KV processors, restore the processors they replaced, put back the rotary embedding that
    `rope_frame_offset` replaced (`disable_rope_offset`), and free the cache. No-op if absent."""
    transformer = unwrap_module(transformer)
    cache = None
    for block in _blocks(transformer):
        processor = block.attn1.processor
        if isinstance(processor, CrossClipKVAttnProcessor):
            cache = processor.cache
            previous = processor.previous_processor
            # An attention backend set while our processor was installed applies to the restored one as well.
            if previous is not None and hasattr(previous, "_attention_backend"):
                previous._attention_backend = processor._attention_backend
            block.attn1.set_processor(previous)
    disable_rope_offset(transformer)
    registry = getattr(transformer, "_diffusers_hook", None)
    if registry is not None and registry.get_hook(_TOKEN_GRID_HOOK) is not None:
        registry.remove_hook(_TOKEN_GRID_HOOK, recurse=False)
    if cache is not None:
        cache.clear()
