"""Moved: `ClipMemory` lives in `diffusers_longvid.memory` (it drives both `attention/` and `selection/`).

This module keeps the old import path, `from diffusers_longvid.attention.memory import ClipMemory`, working.
"""

from ..memory import ClipMemory


__all__ = ["ClipMemory"]
