"""The long-video pipeline family: `LongVideoExtensionPipeline` and its outputs (imported lazily)."""

from __future__ import annotations

from ..._lazy import attach_lazy


_LAZY_IMPORTS = {
    "LongVideoExtensionPipeline": "pipeline_longvideo_extension",
    "LongVideoClip": "pipeline_output",
    "LongVideoPipelineOutput": "pipeline_output",
    "GenerationState": "state",
    "LongVideoCall": "call",
    "ResumableRun": "state",
}

__all__ = sorted(_LAZY_IMPORTS)


__getattr__, __dir__ = attach_lazy(__name__, _LAZY_IMPORTS, globals())
