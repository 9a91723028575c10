"""Clip selection (which history clips a clip attends) and KV storage planning."""

from .planner import ClipPlan, KVPlan, KVStoragePlanner
from .selectors import (
    ClipSelector,
    PromptSimilaritySelector,
    RecentSelector,
    offline_minilm_path,
    select_top_k,
    selector_from_config,
)


__all__ = [
    "ClipPlan",
    "ClipSelector",
    "KVPlan",
    "KVStoragePlanner",
    "PromptSimilaritySelector",
    "RecentSelector",
    "offline_minilm_path",
    "select_top_k",
    "selector_from_config",
]
