"""The long-video pipeline family: `LongVideoExtensionPipeline` and its outputs (imported lazily)."""

from __future__ import annotations

import importlib
from typing import Any

_LAZY_IMPORTS = {
    "LongVideoExtensionPipeline": "pipeline_longvideo_extension",
    "LongVideoClip": "pipeline_output",
    "LongVideoPipelineOutput": "pipeline_output",
    "GenerationState": "state",
}

__all__ = sorted(_LAZY_IMPORTS)


def __getattr__(name: str) -> Any:
    module_name = _LAZY_IMPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module_name}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
