"""Cross-clip attention for Wan: KV cache, its attention processor, clip memory, K/V LoRA and RoPE offsets."""

from .kv_cache import CFGBranch, CrossClipKVCache, CrossClipKVCacheConfig, KVPair, RecordMode, default_cached_blocks
from .lora import add_kv_lora, kv_lora_config, kv_lora_target_modules
from .memory import ClipMemory
from .processor import (
    CrossClipKVAttnProcessor,
    disable_cross_clip_kv_cache,
    enable_cross_clip_kv_cache,
    get_cross_clip_kv_cache,
)
from .rope import OffsetWanRotaryPosEmbed, enable_rope_offset, rope_frame_offset

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
    "enable_cross_clip_kv_cache",
    "enable_rope_offset",
    "get_cross_clip_kv_cache",
    "kv_lora_config",
    "kv_lora_target_modules",
    "rope_frame_offset",
]
