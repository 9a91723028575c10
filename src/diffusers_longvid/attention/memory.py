"""Moved: `ClipMemory` lives in `diffusers_longvid.memory` (it drives both `attention/` and `selection/`).

This module keeps the old import path, `from diffusers_longvid.attention.memory import ClipMemory`, working (and
re-exports the memory's typed plan entries, `ProbedClipPlan` / `clip_plan_from_dict`).
"""

from ..memory import ClipMemory, ProbedClipPlan, clip_plan_from_dict


__all__ = ["ClipMemory", "ProbedClipPlan", "clip_plan_from_dict"]
