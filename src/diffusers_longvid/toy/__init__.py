"""The procedural toy world (renderer, scripts, prompts) and the toy VAE used by the built-in `toy` preset.

`world` and `scripts` need only numpy; `vae` imports torch and diffusers when it is imported itself.
"""

from .scripts import (
    MEMORY_COLORS,
    describe_script,
    is_reentry,
    load_script,
    memory_script,
    random_script,
    save_script,
    write_prompts,
)
from .world import (
    BACKGROUND_COLORS,
    COLORS,
    MOTIONS,
    OBJECT_COLORS,
    SHAPES,
    TEXTURES,
    ToyVideo,
    clip_frame_ranges,
    render_script,
    render_script_clips,
    validate_script,
)


__all__ = [
    "BACKGROUND_COLORS",
    "COLORS",
    "MEMORY_COLORS",
    "MOTIONS",
    "OBJECT_COLORS",
    "SHAPES",
    "TEXTURES",
    "ToyVideo",
    "clip_frame_ranges",
    "describe_script",
    "is_reentry",
    "load_script",
    "memory_script",
    "random_script",
    "render_script",
    "render_script_clips",
    "save_script",
    "validate_script",
    "write_prompts",
]
