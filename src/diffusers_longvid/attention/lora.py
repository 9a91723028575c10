# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""Stage-2 LoRA: peft LoRA on `attn1.to_k` / `attn1.to_v` of the cached blocks only (paper §3.3, DESIGN §3).

The adapters are ordinary diffusers/peft LoRA layers on `WanTransformer3DModel`, so the stock LoRA API applies:

```py
from peft.utils import get_peft_model_state_dict

add_kv_lora(transformer, rank=32)
...  # train
WanPipeline.save_lora_weights(out_dir, transformer_lora_layers=get_peft_model_state_dict(transformer))
pipe.load_lora_weights(out_dir, adapter_name="kv")  # any pipeline with `WanLoraLoaderMixin`
pipe.set_adapters(["kv"], [0.8]); pipe.fuse_lora()
```
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from diffusers.utils.torch_utils import unwrap_module
from torch import nn

from ..utils import require
from .kv_cache import CrossClipKVCacheConfig


__all__ = ["add_kv_lora", "kv_lora_config", "kv_lora_target_modules"]


def _resolve_blocks(transformer: nn.Module, blocks: Sequence[int] | None) -> tuple[int, ...]:
    module_list = getattr(unwrap_module(transformer), "blocks", None)
    if not isinstance(module_list, nn.ModuleList):
        raise TypeError(
            f"`transformer` must be a Wan-style transformer with `blocks`, got {type(transformer).__name__}."
        )
    return CrossClipKVCacheConfig(blocks=blocks).resolve_blocks(len(module_list))


def kv_lora_target_modules(transformer: nn.Module, blocks: Sequence[int] | None = None) -> list[str]:
    """`["blocks.{i}.attn1.to_k", "blocks.{i}.attn1.to_v", ...]` for the cached blocks.

    Args:
        transformer (`WanTransformer3DModel`): The transformer.
        blocks (`Sequence[int]`, *optional*): Block indices; defaults to the latter half, as the KV cache does.
    """
    return [f"blocks.{i}.attn1.{proj}" for i in _resolve_blocks(transformer, blocks) for proj in ("to_k", "to_v")]


def kv_lora_config(
    transformer: nn.Module,
    rank: int = 32,
    alpha: float | None = None,
    blocks: Sequence[int] | None = None,
    dropout: float = 0.0,
    init_lora_weights: bool | str = True,
    **lora_kwargs: Any,
):
    r"""
    A `peft.LoraConfig` targeting only `attn1.to_k` / `attn1.to_v` of the cached blocks.

    Args:
        transformer (`WanTransformer3DModel`): The transformer (only its block count is read).
        rank (`int`, *optional*, defaults to 32): LoRA rank `r`.
        alpha (`float`, *optional*): `lora_alpha`; defaults to `rank` (scale 1).
        blocks (`Sequence[int]`, *optional*): Block indices; defaults to the latter half.
        dropout (`float`, *optional*, defaults to 0.0): `lora_dropout`.
        init_lora_weights (`bool` or `str`, *optional*, defaults to `True`):
            peft's initialisation; `True` makes `lora_B` zero, so the adapted model starts equal to the base model.
        lora_kwargs: Further `LoraConfig` arguments (e.g. `use_dora=True`).
    """
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"`rank` must be an int >= 1, got {rank!r}.")
    if alpha is not None and (isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha <= 0):
        raise ValueError(f"`alpha` must be a positive number or None, got {alpha!r}.")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"`dropout` must be in [0, 1), got {dropout!r}.")
    if "target_modules" in lora_kwargs:
        raise ValueError("`target_modules` is fixed by `blocks`; do not pass it.")
    peft = require("peft", "K/V LoRA")
    return peft.LoraConfig(
        r=rank,
        lora_alpha=rank if alpha is None else alpha,
        lora_dropout=dropout,
        init_lora_weights=init_lora_weights,
        target_modules=kv_lora_target_modules(transformer, blocks),
        **lora_kwargs,
    )


def add_kv_lora(
    transformer: nn.Module,
    rank: int = 32,
    alpha: float | None = None,
    blocks: Sequence[int] | None = None,
    adapter_name: str = "default",
    **config_kwargs: Any,
):
    r"""
    Add a K/V LoRA adapter to `transformer` (`transformer.add_adapter(kv_lora_config(...))`) and return its config.

    Args:
        transformer (`WanTransformer3DModel`): The transformer; its QKV projections must not be fused (peft wraps
            `to_k` / `to_v`, which fused projections bypass).
        rank (`int`, *optional*, defaults to 32): LoRA rank.
        alpha (`float`, *optional*): `lora_alpha`; defaults to `rank`.
        blocks (`Sequence[int]`, *optional*): Block indices; defaults to the latter half.
        adapter_name (`str`, *optional*, defaults to `"default"`): peft adapter name.
        config_kwargs: Passed to `kv_lora_config` (`dropout`, `init_lora_weights`, other `LoraConfig` fields).
    """
    config = kv_lora_config(transformer, rank=rank, alpha=alpha, blocks=blocks, **config_kwargs)
    model = unwrap_module(transformer)
    for i in _resolve_blocks(model, blocks):
        if getattr(model.blocks[i].attn1, "fused_projections", False):
            raise ValueError(
                "`transformer` has fused QKV projections, which would bypass a LoRA on `to_k` / `to_v`; call "
                "`transformer.unfuse_qkv_projections()` first (fuse again after `fuse_lora()`)."
            )
    model.add_adapter(config, adapter_name=adapter_name)
    return config
