# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""VBench-style evaluation of any video (six dimensions per time window, error-accumulation slopes, AF).

`evaluate_video(video, backend="offline" | "reference")` returns an `EvalResult`; `write_eval_report` writes it as
JSON, Markdown and PNG. The offline backend needs no weights but gives proxies that are not comparable to published
VBench numbers; the reference backend loads VBench's models through transformers. Names are imported lazily, so
importing this package loads neither OpenCV nor transformers.
"""

from __future__ import annotations

from .._lazy import attach_lazy


# public name -> module (relative to this package)
_LAZY_IMPORTS: dict[str, str] = {
    "evaluate_video": "evaluate",
    "get_backend": "evaluate",
    "load_eval_result": "evaluate",
    "EvalResult": "evaluate",
    "EvalSuiteResult": "evaluate",
    "WindowResult": "evaluate",
    "write_eval_report": "report",
    "format_markdown": "report",
    "EvaluationBackend": "backend",
    "OfflineBackend": "offline",
    "ReferenceBackend": "reference",
    "LaionAestheticHead": "reference",
    "MissingEvaluationWeightsError": "reference",
    "FlowEstimator": "motion",
    "DIMENSIONS": "metrics",
    "METRICS": "metrics",
    "open_video": "video",
    "load_video": "video",
    "average_frequency": "frequency",
}

__all__ = sorted(_LAZY_IMPORTS)


__getattr__, __dir__ = attach_lazy(__name__, _LAZY_IMPORTS, globals())
