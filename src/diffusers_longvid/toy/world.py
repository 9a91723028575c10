# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""A procedural toy world: long single-shot videos of flat-colour shapes rendered from a script.

A *script* is a list of clips; each clip is a dict

    {"prompt": str, "background": colour name, "texture": "plain" | "stripes" | "dots" | "checks",
     "objects": [{"shape": ..., "color": ..., "visible": bool, "motion": ...}, ...], "duration": seconds}

(`prompt`, `texture`, `duration`, `visible` and `motion` are optional). Every clip lists the same objects in the same
order (the list index is the object's identity) with the same shape and colour; the objects keep their state (position,
size, bounce direction) from one clip to the next, so the whole script is one continuous shot.

Motions are *clip-relative*: "moves_right" moves an object by `MOVE_DISTANCE` frame widths over the clip whatever the
clip's length, "exits_left" takes it fully out of frame by the clip's last frame, and so on. The state at every clip
boundary therefore depends only on the script (and the seed, for unspecified start positions and bounce directions),
never on the frame rate, the resolution or the clip lengths; those only change how densely the shot is sampled.

Coordinates are fractions of the frame side (x to the right, y down). An object's `size` is its half-extent.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


__all__ = [
    "BACKGROUND_COLORS",
    "COLORS",
    "MOTIONS",
    "OBJECT_COLORS",
    "SHAPES",
    "TEXTURES",
    "ToyVideo",
    "clip_frame_ranges",
    "render_script",
    "render_script_clips",
    "validate_script",
]

# Named colours (sRGB, 0-255). Object colours are saturated and far apart; background colours contrast with all
# of them.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "orange": (245, 140, 20),
    "yellow": (240, 220, 40),
    "green": (40, 190, 60),
    "cyan": (40, 210, 220),
    "blue": (40, 80, 230),
    "purple": (150, 60, 210),
    "pink": (250, 130, 190),
    "black": (15, 15, 15),
    "white": (240, 240, 240),
    "gray": (120, 120, 120),
    "navy": (20, 30, 90),
    "brown": (100, 60, 30),
    "beige": (225, 210, 170),
}
OBJECT_COLORS: tuple[str, ...] = ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink")
BACKGROUND_COLORS: tuple[str, ...] = ("black", "white", "gray", "navy", "brown", "beige")
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond")
TEXTURES: tuple[str, ...] = ("plain", "stripes", "dots", "checks")
MOTIONS: tuple[str, ...] = (
    "stays",
    "moves_left",
    "moves_right",
    "moves_up",
    "moves_down",
    "bounces",
    "grows",
    "shrinks",
    "exits_left",
    "exits_right",
    "enters_left",
    "enters_right",
)
# Motion of an object that is out of frame for the whole clip.
HIDDEN_MOTION = "none"

MOVE_DISTANCE = 0.3  # frame widths per clip for moves_*
BOUNCE_DISTANCE = 0.6  # path length per clip for bounces
GROW_FACTOR = 1.5  # size ratio per clip for grows / shrinks
MIN_SIZE, MAX_SIZE = 0.07, 0.2
DEFAULT_SIZE = 0.12
ENTER_DEPTH = 0.3  # an entering object stops this far (its centre, in frame widths) from the edge it came from
OFFSCREEN_MARGIN = 0.03  # how far past the edge an object that left the frame sits (beyond its own extent)
FADE_FRACTION = 0.25  # a background change cross-fades over this fraction of the clip
TEXTURE_PERIOD = 0.25  # texture period in frame widths (16 px at 64x64)


@dataclass
class _ObjectState:
    x: float
    y: float
    size: float
    vx: float
    vy: float
    on_screen: bool


@dataclass
class ToyVideo:
    """A rendered toy video and its per-frame ground truth.

    Args:
        frames (`np.ndarray` of shape `(T, H, W, 3)`, `uint8`): The video.
        fps (`int`): Frame rate it was rendered for.
        prompts (`list[str]`): One prompt per clip.
        clip_ranges (`list[tuple[int, int]]`):
            Frame range `[start, end)` of each clip. In a clip-aligned render (`render_script_clips`) consecutive
            ranges overlap by the condition frames.
        frame_clip (`np.ndarray` of shape `(T,)`, `int`): The clip whose script drives each frame.
        background (`list[str]`): Background colour name per clip.
        background_rgb (`np.ndarray` of shape `(T, 3)`, `float32`): Base background colour per frame (blended while a
            background change cross-fades), 0-255.
        object_shapes (`list[str]`), object_colors (`list[str]`): Per object.
        object_rgb (`np.ndarray` of shape `(O, 3)`, `uint8`): Per object.
        visible (`np.ndarray` of shape `(T, O)`, `bool`): The object covers at least one pixel (unoccluded, coverage
            >= 0.5) in the frame.
        pixel_count (`np.ndarray` of shape `(T, O)`, `int`): Its number of such pixels.
        bbox (`np.ndarray` of shape `(T, O, 4)`, `float32`): `[x0, y0, x1, y1]` in pixels, clipped to the frame (all
            zero when not visible).
        center (`np.ndarray` of shape `(T, O, 2)`, `float32`): Centre `(x, y)` in frame fractions (may lie outside).
        size (`np.ndarray` of shape `(T, O)`, `float32`): Half-extent in frame fractions.
        masks (`np.ndarray` of shape `(T, O, H, W)`, `bool`, *optional*): The pixels counted in `pixel_count`; only
            when rendered with `return_masks=True`.
    """

    frames: np.ndarray
    fps: int
    prompts: list[str]
    clip_ranges: list[tuple[int, int]]
    frame_clip: np.ndarray
    background: list[str]
    background_rgb: np.ndarray
    object_shapes: list[str]
    object_colors: list[str]
    object_rgb: np.ndarray
    visible: np.ndarray
    pixel_count: np.ndarray
    bbox: np.ndarray
    center: np.ndarray
    size: np.ndarray
    masks: np.ndarray | None = field(default=None, repr=False)

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def num_clips(self) -> int:
        return len(self.clip_ranges)

    def clip_frames(self, index: int) -> np.ndarray:
        """The frames of clip `index`, condition frames included (a view, not a copy)."""
        start, end = self.clip_ranges[index]
        return self.frames[start:end]

    def metadata(self) -> dict[str, Any]:
        """Everything but the frames and masks, as JSON-serialisable lists."""
        return {
            "fps": self.fps,
            "num_frames": self.num_frames,
            "prompts": list(self.prompts),
            "clip_ranges": [list(r) for r in self.clip_ranges],
            "frame_clip": self.frame_clip.tolist(),
            "background": list(self.background),
            "background_rgb": np.round(self.background_rgb, 2).tolist(),
            "object_shapes": list(self.object_shapes),
            "object_colors": list(self.object_colors),
            "object_rgb": self.object_rgb.tolist(),
            "visible": self.visible.tolist(),
            "pixel_count": self.pixel_count.tolist(),
            "bbox": np.round(self.bbox, 3).tolist(),
            "center": np.round(self.center, 5).tolist(),
            "size": np.round(self.size, 5).tolist(),
        }


# ---------------------------------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------------------------------


def _check_color(value: Any, where: str) -> str:
    if not isinstance(value, str) or value not in COLORS:
        raise ValueError(f"`{where}` must be one of {sorted(COLORS)}, got {_brief(value)}.")
    return value


def _brief(value: Any) -> str:
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**30 else f"an int of {value.bit_length()} bits"
    return text if len(text) <= 60 else text[:57] + "..."


def _finite(value: Any, where: str, what: str) -> float:
    """A finite real number (not a bool) as float; a `ValueError` naming `where` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"`{where}` must be {what}, got {_brief(value)}.")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ValueError(f"`{where}` must be {what} (finite), got {_brief(value)}.")
    return number


def _unknown_keys(keys: set[Any]) -> list[str]:
    return sorted(repr(key) if not isinstance(key, str) else key for key in keys)


def validate_script(script: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Check a script and return a normalised deep copy with every optional key filled in.

    Defaults: `texture="plain"`, `visible=True`, `motion="stays"` for a visible object and `"none"` for a hidden one.
    `prompt` and `duration` are kept only when given. Object `position` (`[x, y]`, frame fractions), `size` (half
    extent, frame fractions) and `heading` (start direction of `bounces`, degrees, 0 = right, 90 = down) may be given
    in the first clip only, as the start state; what is not given is drawn from the render seed.

    Raises:
        `TypeError` / `ValueError`: naming the offending key, with the accepted values.
    """
    if isinstance(script, dict) and "clips" in script:
        script = script["clips"]
    if not isinstance(script, Sequence) or isinstance(script, (str, bytes)):
        raise TypeError(f"`script` must be a list of clip dicts, got {type(script).__name__}.")
    if len(script) == 0:
        raise ValueError("`script` must contain at least one clip.")
    clips: list[dict[str, Any]] = []
    identity: list[tuple[str, str]] | None = None
    on_screen: list[bool] | None = None
    for n, clip in enumerate(script):
        if not isinstance(clip, dict):
            raise TypeError(f"`script[{n}]` must be a dict, got {type(clip).__name__}.")
        unknown = set(clip) - {"prompt", "background", "texture", "objects", "duration"}
        if unknown:
            raise ValueError(f"`script[{n}]` has unknown keys {_unknown_keys(unknown)}.")
        out: dict[str, Any] = {}
        if "prompt" in clip:
            if not isinstance(clip["prompt"], str):
                raise TypeError(f"`script[{n}].prompt` must be a string.")
            out["prompt"] = clip["prompt"]
        if "background" not in clip:
            raise ValueError(f"`script[{n}].background` is required (one of {sorted(COLORS)}).")
        out["background"] = _check_color(clip["background"], f"script[{n}].background")
        out["texture"] = clip.get("texture", "plain")
        if not isinstance(out["texture"], str) or out["texture"] not in TEXTURES:
            raise ValueError(f"`script[{n}].texture` must be one of {list(TEXTURES)}, got {_brief(out['texture'])}.")
        if "duration" in clip and clip["duration"] is not None:
            duration = clip["duration"]
            if isinstance(duration, bool) or not isinstance(duration, (int, float)):
                raise ValueError(
                    f"`script[{n}].duration` must be a positive number of seconds, got {_brief(duration)}."
                )
            duration = _finite(duration, f"script[{n}].duration", "a positive number of seconds")
            if duration <= 0:
                raise ValueError(f"`script[{n}].duration` must be a positive number of seconds, got {duration!r}.")
            out["duration"] = duration
        objects = clip.get("objects", [])
        if not isinstance(objects, list):
            raise TypeError(f"`script[{n}].objects` must be a list.")
        if identity is None:
            identity = []
            for i, obj in enumerate(objects):
                if not isinstance(obj, dict):
                    raise TypeError(f"`script[{n}].objects[{i}]` must be a dict.")
                identity.append((obj.get("shape"), obj.get("color")))
            on_screen = [None] * len(objects)  # type: ignore[list-item]
        if len(objects) != len(identity):
            raise ValueError(
                f"`script[{n}].objects` lists {len(objects)} objects but clip 0 lists {len(identity)}: every clip "
                "must list the same objects in the same order (use `visible: false` for an object out of frame)."
            )
        out["objects"] = []
        for i, obj in enumerate(objects):
            where = f"script[{n}].objects[{i}]"
            if not isinstance(obj, dict):
                raise TypeError(f"`{where}` must be a dict.")
            unknown = set(obj) - {"shape", "color", "visible", "motion", "position", "size", "heading"}
            if unknown:
                raise ValueError(f"`{where}` has unknown keys {_unknown_keys(unknown)}.")
            shape = obj.get("shape")
            if not isinstance(shape, str) or shape not in SHAPES:
                raise ValueError(f"`{where}.shape` must be one of {list(SHAPES)}, got {_brief(shape)}.")
            color = _check_color(obj.get("color"), f"{where}.color")
            if (shape, color) != identity[i]:
                raise ValueError(
                    f"`{where}` is a {color} {shape} but in clip 0 it is a {identity[i][1]} {identity[i][0]}: an "
                    "object keeps its shape and colour for the whole script."
                )
            visible = obj.get("visible", True)
            if not isinstance(visible, bool):
                raise TypeError(f"`{where}.visible` must be a bool, got {visible!r}.")
            motion = obj.get("motion", "stays" if visible else HIDDEN_MOTION)
            if not isinstance(motion, str):
                raise ValueError(f"`{where}.motion` must be one of {list(MOTIONS)}, got {_brief(motion)}.")
            if visible and motion not in MOTIONS:
                raise ValueError(f"`{where}.motion` must be one of {list(MOTIONS)}, got {motion!r}.")
            if not visible and motion != HIDDEN_MOTION:
                raise ValueError(f"`{where}` is not visible, so its `motion` must be {HIDDEN_MOTION!r} or omitted.")
            # The object's state at the start of the clip decides which motions make sense.
            starts_on = on_screen[i] if on_screen[i] is not None else (visible and not motion.startswith("enters"))
            if motion.startswith("enters") and starts_on:
                raise ValueError(f"`{where}.motion` is {motion!r} but the object is already in frame.")
            if visible and not motion.startswith("enters") and not starts_on:
                raise ValueError(
                    f"`{where}` is out of frame at the start of the clip: it must come back with 'enters_left' or "
                    f"'enters_right' (got {motion!r}) or stay `visible: false`."
                )
            entry: dict[str, Any] = {"shape": shape, "color": color, "visible": visible, "motion": motion}
            for key in ("position", "size", "heading"):
                if key in obj:
                    if n > 0:
                        raise ValueError(f"`{where}.{key}` may only be given in the first clip (the start state).")
                    entry[key] = obj[key]
            if "position" in entry:
                pos = entry["position"]
                if not (
                    isinstance(pos, (list, tuple))
                    and len(pos) == 2
                    and all(isinstance(p, (int, float)) and not isinstance(p, bool) for p in pos)
                    and all(0.0 <= p <= 1.0 for p in pos)  # NaN fails this too
                ):
                    raise ValueError(f"`{where}.position` must be `[x, y]` with both in [0, 1], got {_brief(pos)}.")
                entry["position"] = [float(pos[0]), float(pos[1])]
            if "size" in entry:
                size = entry["size"]
                if isinstance(size, bool) or not isinstance(size, (int, float)) or not MIN_SIZE <= size <= MAX_SIZE:
                    raise ValueError(
                        f"`{where}.size` must be a number in [{MIN_SIZE}, {MAX_SIZE}], got {_brief(size)}."
                    )
                entry["size"] = float(size)
            if "heading" in entry:
                # NaN would render every object black, inf crash the renderer
                entry["heading"] = _finite(entry["heading"], f"{where}.heading", "a number of degrees")
            on_screen[i] = visible and not motion.startswith("exits")
            out["objects"].append(entry)
        clips.append(out)
    return clips


# ---------------------------------------------------------------------------------------------------------------------
# Simulation: object state as a function of the progress p in (0, 1] through a clip
# ---------------------------------------------------------------------------------------------------------------------


def _initial_states(clip0: dict[str, Any], rng: np.random.Generator) -> list[_ObjectState]:
    states = []
    for obj in clip0["objects"]:
        size = obj.get("size", DEFAULT_SIZE)
        if "position" in obj:
            x, y = obj["position"]
        else:
            x, y = rng.uniform(0.25, 0.75, size=2)
        angle = rng.uniform(math.radians(25), math.radians(65)) + rng.integers(4) * math.pi / 2
        if "heading" in obj:
            angle = math.radians(obj["heading"])
        starts_on = obj["visible"] and not obj["motion"].startswith("enters")
        if not starts_on:
            sides = {"enters_left": -1, "enters_right": 1}
            side = sides[obj["motion"]] if obj["motion"] in sides else rng.choice([-1, 1])
            x = -size - OFFSCREEN_MARGIN if side < 0 else 1 + size + OFFSCREEN_MARGIN
        else:
            x, y = float(np.clip(x, size, 1 - size)), float(np.clip(y, size, 1 - size))
        states.append(_ObjectState(float(x), float(y), float(size), math.cos(angle), math.sin(angle), starts_on))
    return states


def _fold(u: np.ndarray, length: float) -> tuple[np.ndarray, np.ndarray]:
    """Reflect a coordinate into `[0, length]` (a billiard); returns the position and the slope sign (+1 / -1)."""
    m = np.mod(u, 2 * length)
    return length - np.abs(m - length), np.where(m < length, 1.0, -1.0)


def _object_track(
    state: _ObjectState, motion: str, progress: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, _ObjectState]:
    """Centre `x, y` and `size` of an object at the given clip progress values, and its state at the clip's end."""
    p = np.asarray(progress, dtype=np.float64)
    ones = np.ones_like(p)
    x0, y0, s0 = state.x, state.y, state.size
    end = copy.copy(state)
    if motion in (HIDDEN_MOTION, "stays"):
        return x0 * ones, y0 * ones, s0 * ones, end
    if motion.startswith("moves_"):
        dx, dy = {"moves_left": (-1, 0), "moves_right": (1, 0), "moves_up": (0, -1), "moves_down": (0, 1)}[motion]
        x = np.clip(x0 + dx * MOVE_DISTANCE * p, s0, 1 - s0)
        y = np.clip(y0 + dy * MOVE_DISTANCE * p, s0, 1 - s0)
        end.x = float(np.clip(x0 + dx * MOVE_DISTANCE, s0, 1 - s0))
        end.y = float(np.clip(y0 + dy * MOVE_DISTANCE, s0, 1 - s0))
        return x, y, s0 * ones, end
    if motion == "bounces":
        length = 1.0 - 2.0 * s0
        norm = math.hypot(state.vx, state.vy) or 1.0
        vx, vy = state.vx / norm, state.vy / norm
        ux, sx = _fold((x0 - s0) + vx * BOUNCE_DISTANCE * np.append(p, 1.0), length)
        uy, sy = _fold((y0 - s0) + vy * BOUNCE_DISTANCE * np.append(p, 1.0), length)
        end.x, end.y = float(ux[-1] + s0), float(uy[-1] + s0)
        end.vx, end.vy = float(vx * sx[-1]), float(vy * sy[-1])
        return ux[:-1] + s0, uy[:-1] + s0, s0 * ones, end
    if motion in ("grows", "shrinks"):
        factor = GROW_FACTOR if motion == "grows" else 1.0 / GROW_FACTOR
        pe = np.append(p, 1.0)
        s = np.clip(s0 * factor**pe, MIN_SIZE, MAX_SIZE)
        x, y = np.clip(x0, s, 1 - s), np.clip(y0, s, 1 - s)
        end.x, end.y, end.size = float(x[-1]), float(y[-1]), float(s[-1])
        return x[:-1], y[:-1], s[:-1], end
    if motion.startswith("exits_"):
        target = -s0 - OFFSCREEN_MARGIN if motion == "exits_left" else 1 + s0 + OFFSCREEN_MARGIN
        end.x, end.on_screen = float(target), False
        return x0 + (target - x0) * p, y0 * ones, s0 * ones, end
    if motion.startswith("enters_"):
        left = motion == "enters_left"
        start = -s0 - OFFSCREEN_MARGIN if left else 1 + s0 + OFFSCREEN_MARGIN
        target = max(ENTER_DEPTH, s0) if left else min(1 - ENTER_DEPTH, 1 - s0)
        y = float(np.clip(y0, s0, 1 - s0))
        end.x, end.y, end.on_screen = float(target), y, True
        # An object that keeps bouncing after it comes back should head into the frame, not straight back out.
        end.vx = abs(state.vx) if left else -abs(state.vx)
        return start + (target - start) * p, y * ones, s0 * ones, end
    raise ValueError(f"`motion` must be one of {list(MOTIONS)} or {HIDDEN_MOTION!r}, got {motion!r}.")


# ---------------------------------------------------------------------------------------------------------------------
# Rasterisation (vectorised over frames; anti-aliased through signed distances)
# ---------------------------------------------------------------------------------------------------------------------


def _shape_sdf(shape: str, dx: np.ndarray, dy: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Signed distance (frame fractions, negative inside) of a shape of half-extent `s` centred at the origin."""
    if shape == "circle":
        return np.sqrt(dx * dx + dy * dy) - s
    if shape == "square":
        qx, qy = np.abs(dx) - s, np.abs(dy) - s
        outside = np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2)
        return outside + np.minimum(np.maximum(qx, qy), 0)
    if shape == "diamond":
        return (np.abs(dx) + np.abs(dy) - 1.2 * s) / math.sqrt(2)
    if shape == "triangle":
        # Equilateral triangle pointing up (Inigo Quilez's exact SDF), half-side r; image y points down.
        r = 1.1 * s
        k = math.sqrt(3.0)
        px = np.abs(dx) - r
        py = -dy + r / k
        flip = px + k * py > 0
        px, py = np.where(flip, (px - k * py) / 2, px), np.where(flip, (-k * px - py) / 2, py)
        px = px - np.clip(px, -2 * r, 0)
        return -np.sqrt(px * px + py * py) * np.sign(py)
    raise ValueError(f"`shape` must be one of {list(SHAPES)}, got {shape!r}.")


def _shape_extent(shape: str, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Offsets (left, top, right, bottom) of the shape's bounding box from its centre, frame fractions."""
    if shape == "triangle":
        r = 1.1 * s
        return -r, -2 * r / math.sqrt(3), r, r / math.sqrt(3)
    e = 1.2 * s if shape == "diamond" else s
    return -e, -e, e, e


def _background_image(color: str, texture: str, size: int) -> np.ndarray:
    base = np.asarray(COLORS[color], dtype=np.float32)
    image = np.broadcast_to(base, (size, size, 3)).copy()
    if texture == "plain":
        return image
    # The pattern is the base colour pushed 30% towards white (dark backgrounds) or black (light ones).
    luma = 0.299 * base[0] + 0.587 * base[1] + 0.114 * base[2]
    shade = base + 0.3 * ((255.0 if luma < 128 else 0.0) - base)
    c = (np.arange(size, dtype=np.float32) + 0.5) / size / TEXTURE_PERIOD
    u, v = np.meshgrid(c, c, indexing="xy")
    if texture == "stripes":
        mask = np.clip((np.abs(np.mod(u, 1.0) - 0.5) - 0.25) * size * TEXTURE_PERIOD + 0.5, 0, 1)
    elif texture == "dots":
        d = np.sqrt((np.mod(u, 1.0) - 0.5) ** 2 + (np.mod(v, 1.0) - 0.5) ** 2)
        mask = np.clip((0.18 - d) * size * TEXTURE_PERIOD + 0.5, 0, 1)
    elif texture == "checks":
        mask = ((np.floor(u) + np.floor(v)) % 2).astype(np.float32)
    else:
        raise ValueError(f"`texture` must be one of {list(TEXTURES)}, got {texture!r}.")
    return image + mask[..., None] * (shade - base)


def clip_frame_ranges(num_clips: int, num_frames: int, num_condition_frames: int) -> list[tuple[int, int]]:
    """Frame ranges of the clips of a long video as the extension pipeline makes it.

    Clip `n` covers frames `[n * (F - k), n * (F - k) + F)`: its first `k` frames repeat the last `k` of clip `n - 1`
    (the condition), so the video has `F + (N - 1) * (F - k)` frames.

    Args:
        num_clips (`int`): `N`, at least 1.
        num_frames (`int`): `F`, frames per clip.
        num_condition_frames (`int`): `k`, `0 <= k < F`.
    """
    if not isinstance(num_clips, int) or num_clips < 1:
        raise ValueError(f"`num_clips` must be a positive integer, got {num_clips!r}.")
    if not isinstance(num_frames, int) or num_frames < 1:
        raise ValueError(f"`num_frames` must be a positive integer, got {num_frames!r}.")
    if not isinstance(num_condition_frames, int) or not 0 <= num_condition_frames < num_frames:
        raise ValueError(
            f"`num_condition_frames` must be an integer in [0, num_frames={num_frames}), got {num_condition_frames!r}."
        )
    stride = num_frames - num_condition_frames
    return [(n * stride, n * stride + num_frames) for n in range(num_clips)]


def _render(
    clips: list[dict[str, Any]],
    new_frames: list[int],
    size: int,
    seed: int,
    return_masks: bool,
) -> dict[str, Any]:
    """Render the clips, clip `n` contributing `new_frames[n]` frames after those of the clips before it."""
    rng = np.random.default_rng(seed)
    states = _initial_states(clips[0], rng)
    num_objects = len(states)
    shapes = [o["shape"] for o in clips[0]["objects"]]
    colors = [o["color"] for o in clips[0]["objects"]]
    rgb = np.asarray([COLORS[c] for c in colors], dtype=np.float32).reshape(num_objects, 3)
    total = int(sum(new_frames))
    frames = np.empty((total, size, size, 3), dtype=np.uint8)
    frame_clip = np.empty(total, dtype=np.int64)
    background_rgb = np.empty((total, 3), dtype=np.float32)
    center = np.zeros((total, num_objects, 2), dtype=np.float32)
    obj_size = np.zeros((total, num_objects), dtype=np.float32)
    bbox = np.zeros((total, num_objects, 4), dtype=np.float32)
    pixel_count = np.zeros((total, num_objects), dtype=np.int64)
    masks = np.zeros((total, num_objects, size, size), dtype=bool) if return_masks else None
    grid = (np.arange(size, dtype=np.float32) + 0.5) / size
    gx, gy = grid[None, None, :], grid[None, :, None]
    previous_bg: np.ndarray | None = None
    start = 0
    for n, (clip, count) in enumerate(zip(clips, new_frames)):
        stop = start + count
        frame_clip[start:stop] = n
        if count == 0:
            continue
        # Frame j of a clip with m new frames shows the state at progress (j + 1) / m: its last frame is the clip's
        # end state, and the frame before its first one is the previous clip's end state.
        progress = np.arange(1, count + 1, dtype=np.float64) / count
        bg = _background_image(clip["background"], clip["texture"], size)
        base = np.asarray(COLORS[clip["background"]], dtype=np.float32)
        image = np.broadcast_to(bg, (count, size, size, 3)).astype(np.float32)
        background_rgb[start:stop] = base
        if previous_bg is not None and (clip["background"], clip["texture"]) != (
            clips[n - 1]["background"],
            clips[n - 1]["texture"],
        ):
            w = np.clip(progress / FADE_FRACTION, 0.0, 1.0).astype(np.float32)
            image = previous_bg[None] + w[:, None, None, None] * (image - previous_bg[None])
            prev_base = np.asarray(COLORS[clips[n - 1]["background"]], dtype=np.float32)
            background_rgb[start:stop] = prev_base[None] + w[:, None] * (base - prev_base)[None]
        previous_bg = bg
        covered = np.zeros((count, size, size), dtype=np.float32)
        alphas = []
        for i, obj in enumerate(clip["objects"]):
            x, y, s, states[i] = _object_track(states[i], obj["motion"], progress)
            center[start:stop, i, 0], center[start:stop, i, 1], obj_size[start:stop, i] = x, y, s
            # float32 rasterisation: twice as fast as float64 and far below a pixel's precision at any sane size.
            xs, ys, ss = (np.asarray(a, dtype=np.float32)[:, None, None] for a in (x, y, s))
            sdf = _shape_sdf(obj["shape"], gx - xs, gy - ys, ss)
            alpha = np.clip(0.5 - sdf * size, 0.0, 1.0).astype(np.float32)
            image += alpha[..., None] * (rgb[i] - image)
            alphas.append(alpha)
            l, t, r, b = _shape_extent(obj["shape"], s)
            bbox[start:stop, i] = np.stack(
                [
                    np.clip((x + l) * size, 0, size),
                    np.clip((y + t) * size, 0, size),
                    np.clip((x + r) * size, 0, size),
                    np.clip((y + b) * size, 0, size),
                ],
                axis=-1,
            )
        # Visibility counts the pixels an object owns after the objects drawn over it (later in the list).
        for i in reversed(range(num_objects)):
            own = (alphas[i] >= 0.5) & (covered < 0.5)
            pixel_count[start:stop, i] = own.reshape(count, -1).sum(axis=1)
            if masks is not None:
                masks[start:stop, i] = own
            covered = np.maximum(covered, alphas[i])
        frames[start:stop] = np.clip(np.rint(image), 0, 255).astype(np.uint8)
        start = stop
    visible = pixel_count > 0
    bbox[~visible] = 0.0
    return {
        "frames": frames,
        "frame_clip": frame_clip,
        "background": [c["background"] for c in clips],
        "background_rgb": background_rgb,
        "object_shapes": shapes,
        "object_colors": colors,
        "object_rgb": rgb.astype(np.uint8),
        "visible": visible,
        "pixel_count": pixel_count,
        "bbox": bbox,
        "center": center,
        "size": obj_size,
        "masks": masks,
    }


def _prompts(clips: list[dict[str, Any]]) -> list[str]:
    from .scripts import describe_script

    generated = describe_script(clips)
    return [clip.get("prompt", generated[n]) for n, clip in enumerate(clips)]


def _check_size(size: int) -> None:
    if not isinstance(size, int) or isinstance(size, bool) or size < 8:
        raise ValueError(f"`size` must be an integer >= 8, got {size!r}.")


def render_script(
    script: Sequence[dict[str, Any]],
    fps: int = 16,
    size: int = 64,
    clip_seconds: float = 2.0,
    seed: int = 0,
    return_masks: bool = False,
) -> ToyVideo:
    """Render a script as one continuous shot.

    Args:
        script (`list[dict]`): The clips (see the module docstring and `validate_script`).
        fps (`int`, *optional*, defaults to 16): Frames per second.
        size (`int`, *optional*, defaults to 64): Frame height and width in pixels.
        clip_seconds (`float`, *optional*, defaults to 2.0): Length of a clip without its own `duration`.
        seed (`int`, *optional*, defaults to 0): Picks start positions not given by the script and bounce directions.
        return_masks (`bool`, *optional*, defaults to `False`): Also return the per-object pixel masks.

    Returns:
        [`ToyVideo`]: clip `n` holds `round(duration_n * fps)` frames (at least 1) and the clips do not overlap.
    """
    if not isinstance(fps, int) or isinstance(fps, bool) or fps < 1:
        raise ValueError(f"`fps` must be a positive integer, got {fps!r}.")
    _check_size(size)
    if not isinstance(clip_seconds, (int, float)) or clip_seconds <= 0:
        raise ValueError(f"`clip_seconds` must be a positive number, got {clip_seconds!r}.")
    clips = validate_script(script)
    counts = [max(1, int(round(c.get("duration", clip_seconds) * fps))) for c in clips]
    out = _render(clips, counts, size, seed, return_masks)
    bounds = np.cumsum([0] + counts)
    ranges = [(int(bounds[n]), int(bounds[n + 1])) for n in range(len(clips))]
    return ToyVideo(fps=fps, prompts=_prompts(clips), clip_ranges=ranges, **out)


def render_script_clips(
    script: Sequence[dict[str, Any]],
    num_frames: int = 33,
    num_condition_frames: int = 5,
    fps: int = 16,
    size: int = 64,
    seed: int = 0,
    return_masks: bool = False,
) -> ToyVideo:
    """Render exactly the frames that the extension pipeline's clip arithmetic produces.

    Clip `n` covers frames `[n * (F - k), n * (F - k) + F)` (see `clip_frame_ranges`). Clip 0 is driven by the first
    clip of the script over its `F` frames; clip `n > 0` by clip `n` of the script over its `F - k` new frames (its
    first `k` frames are the previous clip's last `k`). Durations in the script are ignored.

    Args:
        script (`list[dict]`): The clips.
        num_frames (`int`, *optional*, defaults to 33): `F`, frames per clip.
        num_condition_frames (`int`, *optional*, defaults to 5): `k`, condition frames per clip (`0 <= k < F`).
        fps (`int`, *optional*, defaults to 16): Stored in the result; motions are clip-relative.
        size (`int`, *optional*, defaults to 64): Frame height and width in pixels.
        seed (`int`, *optional*, defaults to 0): As in `render_script`.
        return_masks (`bool`, *optional*, defaults to `False`): Also return the per-object pixel masks.
    """
    clips = validate_script(script)
    ranges = clip_frame_ranges(len(clips), num_frames, num_condition_frames)
    _check_size(size)
    counts = [num_frames] + [num_frames - num_condition_frames] * (len(clips) - 1)
    out = _render(clips, counts, size, seed, return_masks)
    return ToyVideo(fps=fps, prompts=_prompts(clips), clip_ranges=ranges, **out)
