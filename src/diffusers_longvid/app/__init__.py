# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""`longvid app`: a Gradio web app to write a long video's script clip by clip and watch it being generated.

Tooling, not product: it imports the pipeline and the toy world, and nothing in the product imports it. Gradio is
the optional extra `[app]` (`pip install "diffusers-longvid[app]"`), imported only by `build_app` / `launch_app`;
`script`, `jobs`, `models` and `charts` work without it (and are tested so). See docs/app.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import attach_lazy


_LAZY_IMPORTS: dict[str, str] = {
    "AppContext": "ui",
    "AppInputError": "errors",
    "EditedScript": "script",
    "GenerationJob": "jobs",
    "JobProgress": "jobs",
    "JobRegistry": "jobs",
    "JobSettings": "jobs",
    "PipelineCache": "models",
    "build_app": "ui",
    "kv_plan_chart": "charts",
    "launch_app": "ui",
    "model_defaults": "models",
}
__all__ = sorted(_LAZY_IMPORTS)
__getattr__, __dir__ = attach_lazy(__name__, _LAZY_IMPORTS, globals())

if TYPE_CHECKING:  # pragma: no cover
    from .charts import kv_plan_chart
    from .errors import AppInputError
    from .jobs import GenerationJob, JobProgress, JobRegistry, JobSettings
    from .models import PipelineCache, model_defaults
    from .script import EditedScript
    from .ui import AppContext, build_app, launch_app
