"""Cross-clip attention for Wan: KV cache, its attention processor, K/V LoRA and RoPE offsets.

`ClipMemory` (cache + clip selection behind one object) lives in `diffusers_longvid.memory`; it is still reachable
here, lazily (it imports this package, so an eager import would be circular).
"""

from typing import TYPE_CHECKING

from .._lazy import attach_lazy
from .kv_cache import CFGBranch, CrossClipKVCache, CrossClipKVCacheConfig, KVPair, RecordMode, default_cached_blocks
from .lora import add_kv_lora, kv_lora_config, kv_lora_target_modules
from .processor import (
    CrossClipKVAttnProcessor,
    disable_cross_clip_kv_cache,
    enable_cross_clip_kv_cache,
    get_cross_clip_kv_cache,
)
from .rope import OffsetWanRotaryPosEmbed, disable_rope_offset, enable_rope_offset, rope_frame_offset


__all__ = [
    "CFGBranch",
    "ClipMemory",
    "CrossClipKVAttnProcessor",
    "CrossClipKVCache",
    "CrossClipKVCacheConfig",
    "KVPair",
    "OffsetWanRotaryPosEmbed",
    "RecordMode",
    "add_kv_lora",
    "default_cached_blocks",
    "disable_cross_clip_kv_cache",
    "disable_rope_offset",
    "enable_cross_clip_kv_cache",
    "enable_rope_offset",
    "get_cross_clip_kv_cache",
    "kv_lora_config",
    "kv_lora_target_modules",
    "rope_frame_offset",
]

__getattr__, __dir__ = attach_lazy(__name__, {"ClipMemory": "memory"}, globals())

if TYPE_CHECKING:  # pragma: no cover
    from ..memory import ClipMemory  # noqa: F401
