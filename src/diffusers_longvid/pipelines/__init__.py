"""Pipelines of diffusers-longvid (imported lazily)."""

from __future__ import annotations

from .._lazy import attach_lazy


_LAZY_IMPORTS = {
    "LongVideoExtensionPipeline": "longvideo.pipeline_longvideo_extension",
    "LongVideoClip": "longvideo.pipeline_output",
    "LongVideoPipelineOutput": "longvideo.pipeline_output",
}

__all__ = sorted(_LAZY_IMPORTS)


__getattr__, __dir__ = attach_lazy(__name__, _LAZY_IMPORTS, globals())
