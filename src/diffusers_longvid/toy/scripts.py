# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""Scripts of the toy world: plain-English prompts written from a script, and random long scripts.

Prompts name an object by colour and shape ("a red circle", then "the red circle") except when an object that was
already seen comes back into frame: "the circle comes back from the left". That prompt does not say the colour, so
only a model that remembers the earlier clips can draw it right (the paper's attribute-drift case).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from .world import (
    BACKGROUND_COLORS,
    HIDDEN_MOTION,
    MAX_SIZE,
    MIN_SIZE,
    MOVE_DISTANCE,
    OBJECT_COLORS,
    SHAPES,
    TEXTURES,
    _initial_states,
    _object_track,
    validate_script,
)


__all__ = [
    "MEMORY_COLORS",
    "describe_script",
    "is_reentry",
    "load_script",
    "memory_script",
    "random_script",
    "save_script",
    "write_prompts",
]

# The object colours of the memory world (`memory_script`): six of `OBJECT_COLORS`, at least 130 sRGB units apart
# (orange and purple are left out: 83 from yellow and 113 from blue), so a colour drawn through the soft toy VAE is
# still unambiguous. Chance of guessing one is 1/6.
MEMORY_COLORS: tuple[str, ...] = ("red", "yellow", "green", "cyan", "blue", "pink")

_MOTION_PHRASES = {
    "stays": "stays still",
    "moves_left": "moves to the left",
    "moves_right": "moves to the right",
    "moves_up": "moves up",
    "moves_down": "moves down",
    "bounces": "bounces around",
    "grows": "grows bigger",
    "shrinks": "shrinks",
    "exits_left": "leaves the frame to the left",
    "exits_right": "leaves the frame to the right",
    "enters_left": "enters from the left",
    "enters_right": "enters from the right",
}
_REENTRY_PHRASES = {"enters_left": "comes back from the left", "enters_right": "comes back from the right"}
_TEXTURE_PHRASES = {
    "plain": "",
    "stripes": " with stripes",
    "dots": " with dots",
    "checks": " with a checkered pattern",
}


def _background_phrase(clip: dict[str, Any]) -> str:
    return f"a {clip['background']} background{_TEXTURE_PHRASES[clip['texture']]}"


def _join(parts: list[str]) -> str:
    if len(parts) <= 2:
        return " and ".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def is_reentry(script: Sequence[dict[str, Any]]) -> list[list[bool]]:
    """For each clip and object: whether the object comes back into frame after having been seen in an earlier clip."""
    clips = validate_script(script)
    seen = [False] * len(clips[0]["objects"])
    flags = []
    for clip in clips:
        flags.append([seen[i] and o["motion"].startswith("enters") for i, o in enumerate(clip["objects"])])
        seen = [seen[i] or o["visible"] for i, o in enumerate(clip["objects"])]
    return flags


def describe_script(script: Sequence[dict[str, Any]]) -> list[str]:
    """Write one plain-English prompt per clip from what the script says happens in it.

    An object is "a <colour> <shape>" on its first appearance, "the <colour> <shape>" afterwards, and just "the
    <shape>" in the clip where it comes back into frame after it was seen before (the colour is left out on purpose).
    Objects out of frame for the whole clip are not mentioned. A background change is described.

    Args:
        script (`list[dict]`): The clips; their `prompt` keys, if any, are ignored.

    Returns:
        `list[str]`: One prompt per clip.
    """
    clips = validate_script(script)
    reentry = is_reentry(clips)
    seen = [False] * len(clips[0]["objects"])
    prompts = []
    for n, clip in enumerate(clips):
        parts = []
        for i, obj in enumerate(clip["objects"]):
            if not obj["visible"]:
                continue
            if reentry[n][i]:
                parts.append(f"the {obj['shape']} {_REENTRY_PHRASES[obj['motion']]}")
            else:
                article = "the" if seen[i] else "an" if obj["color"][0] in "aeiou" else "a"
                parts.append(f"{article} {obj['color']} {obj['shape']} {_MOTION_PHRASES[obj['motion']]}")
            seen[i] = True
        background = _background_phrase(clip)
        previous = clips[n - 1] if n > 0 else clip
        changed = (clip["background"], clip["texture"]) != (previous["background"], previous["texture"])
        if parts:
            text = f"{_join(parts)} {'as the background changes to' if changed else 'on'} {background}."
        else:
            text = f"the empty background changes to {background}." if changed else f"an empty {background[2:]}."
        prompts.append(text[0].upper() + text[1:])
    return prompts


def write_prompts(script: Sequence[dict[str, Any]], overwrite: bool = True) -> list[dict[str, Any]]:
    """Return a normalised copy of `script` with every clip's `prompt` written by `describe_script`.

    Args:
        script (`list[dict]`): The clips.
        overwrite (`bool`, *optional*, defaults to `True`): Replace prompts already present; when `False` only missing
            prompts are filled in.
    """
    clips = validate_script(script)
    # The prompt goes first in each clip, so a saved script reads like a shot list.
    return [
        {
            "prompt": prompt if overwrite or "prompt" not in clip else clip["prompt"],
            **{k: v for k, v in clip.items() if k != "prompt"},
        }
        for clip, prompt in zip(clips, describe_script(clips))
    ]


def _pick(rng: np.random.Generator, options: dict[str, float]) -> str:
    names = list(options)
    weights = np.asarray([options[k] for k in names], dtype=np.float64)
    return names[int(rng.choice(len(names), p=weights / weights.sum()))]


def _moves_with_room(state: Any, weight: float) -> dict[str, float]:
    """`moves_*` motions with room for at least half their distance, each with `weight` (dict order kept)."""
    rooms = (
        ("moves_left", state.x - state.size),
        ("moves_right", 1 - state.size - state.x),
        ("moves_up", state.y - state.size),
        ("moves_down", 1 - state.size - state.y),
    )
    return {name: weight for name, room in rooms if room >= 0.5 * MOVE_DISTANCE}


def _start_positions(rng: np.random.Generator, count: int, sizes: np.ndarray) -> list[list[float]]:
    """Start positions that do not overlap when possible (a few rejection-sampling tries)."""
    positions: list[np.ndarray] = []
    for i in range(count):
        best, best_gap = None, -math.inf
        for _ in range(20):
            p = rng.uniform(0.22, 0.78, size=2)
            gap = min((np.abs(p - q).max() - sizes[i] - sizes[j] for j, q in enumerate(positions)), default=math.inf)
            if gap > best_gap:
                best, best_gap = p, gap
            if gap > 0.05:
                break
        positions.append(best)
    return [[round(float(p[0]), 4), round(float(p[1]), 4)] for p in positions]


def random_script(
    num_clips: int,
    seed: int = 0,
    num_objects: int = 2,
    exit_probability: float = 0.15,
    background_change_probability: float = 0.1,
    ensure_reentry: bool = True,
    shapes: Sequence[str] = SHAPES,
    object_colors: Sequence[str] = OBJECT_COLORS,
    background_colors: Sequence[str] = BACKGROUND_COLORS,
    textures: Sequence[str] = TEXTURES,
) -> list[dict[str, Any]]:
    """A random long script with prompts, objects that leave the frame and come back, and occasional background
    changes.

    Every object has its own shape (so "the circle comes back" is unambiguous) and colour, and all are in frame in
    clip 0. An object in frame leaves it (towards the nearer side) with probability `exit_probability`, stays out for
    0-3 clips and comes back from a random side; the other motions are picked among those that have room to happen.
    The start positions, sizes and bounce headings are written into clip 0, so the rendering does not depend on the
    render seed.

    Args:
        num_clips (`int`): Number of clips, at least 1.
        seed (`int`, *optional*, defaults to 0): Seed of the generator; the same arguments give the same script.
        num_objects (`int`, *optional*, defaults to 2): Objects in the scene, `1 <= num_objects <= len(shapes)`.
        exit_probability (`float`, *optional*, defaults to 0.15): Per clip and object in frame.
        background_change_probability (`float`, *optional*, defaults to 0.1): Per clip after the first.
        ensure_reentry (`bool`, *optional*, defaults to `True`): With at least 3 clips, force one exit and re-entry if
            chance produced none.
        shapes, object_colors, background_colors, textures (`Sequence[str]`, *optional*): What to draw from.

    Returns:
        `list[dict]`: The script (validated, prompts written).
    """
    if not isinstance(num_clips, int) or num_clips < 1:
        raise ValueError(f"`num_clips` must be a positive integer, got {num_clips!r}.")
    if not isinstance(num_objects, int) or not 1 <= num_objects <= min(len(shapes), len(object_colors)):
        raise ValueError(
            f"`num_objects` must be an integer in [1, {min(len(shapes), len(object_colors))}] (one shape and one "
            f"colour per object), got {num_objects!r}."
        )
    for name, p in (
        ("exit_probability", exit_probability),
        ("background_change_probability", background_change_probability),
    ):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"`{name}` must be in [0, 1], got {p!r}.")
    for name, values, allowed in (
        ("shapes", shapes, SHAPES),
        ("object_colors", object_colors, None),
        ("background_colors", background_colors, None),
        ("textures", textures, TEXTURES),
    ):
        if len(values) == 0:
            raise ValueError(f"`{name}` must not be empty.")
        if allowed is not None and not set(values) <= set(allowed):
            raise ValueError(f"`{name}` must be a subset of {list(allowed)}, got {list(values)}.")
    rng = np.random.default_rng(seed)
    obj_shapes = [str(s) for s in rng.choice(list(shapes), size=num_objects, replace=False)]
    obj_colors = [str(c) for c in rng.choice(list(object_colors), size=num_objects, replace=False)]
    sizes = np.round(rng.uniform(0.09, 0.14, size=num_objects), 4)
    positions = _start_positions(rng, num_objects, sizes)
    headings = [round(float(rng.uniform(25, 65) + 90 * rng.integers(4)), 2) for _ in range(num_objects)]
    background, texture = str(rng.choice(list(background_colors))), str(rng.choice(list(textures)))

    start = {
        "objects": [
            {"shape": s, "color": c, "visible": True, "motion": "stays", "position": p, "size": float(z), "heading": h}
            for s, c, p, z, h in zip(obj_shapes, obj_colors, positions, sizes, headings)
        ]
    }
    states = _initial_states(start, np.random.default_rng(0))
    hidden_for = [0] * num_objects
    reentries = 0
    clips: list[dict[str, Any]] = []
    one = np.ones(1)
    for n in range(num_clips):
        if n > 0 and rng.random() < background_change_probability:
            background = str(rng.choice([c for c in background_colors if c != background] or list(background_colors)))
            texture = str(rng.choice(list(textures)))
        last_chance = ensure_reentry and num_clips >= 3 and reentries == 0
        force_exit = last_chance and n == num_clips - 2 and all(s.on_screen for s in states)
        force_exit_index = int(rng.integers(num_objects)) if force_exit else -1
        objects = []
        for i, state in enumerate(states):
            if state.on_screen:
                can_exit = 1 <= n < num_clips - 1
                if i == force_exit_index or (can_exit and rng.random() < exit_probability):
                    motion = "exits_left" if state.x < 0.5 else "exits_right"
                else:
                    options = {"stays": 1.0, "bounces": 1.5, **_moves_with_room(state, 1.0)}
                    if state.size * 1.2 <= MAX_SIZE:
                        options["grows"] = 0.5
                    if state.size / 1.2 >= MIN_SIZE:
                        options["shrinks"] = 0.5
                    motion = _pick(rng, options)
            else:
                hidden_for[i] += 1
                must = hidden_for[i] > 3 or (last_chance and n == num_clips - 1)
                if must or (hidden_for[i] > 1 and rng.random() < 0.5) or (hidden_for[i] == 1 and rng.random() < 0.25):
                    motion = "enters_left" if rng.random() < 0.5 else "enters_right"
                    hidden_for[i] = 0
                    reentries += 1
                else:
                    motion = HIDDEN_MOTION
            visible = motion != HIDDEN_MOTION
            entry = {"shape": obj_shapes[i], "color": obj_colors[i], "visible": visible, "motion": motion}
            if n == 0:
                entry.update(position=positions[i], size=float(sizes[i]), heading=headings[i])
            objects.append(entry)
            *_, states[i] = _object_track(state, motion, one)
        clips.append({"background": background, "texture": texture, "objects": objects})
    return write_prompts(clips)


def memory_script(
    num_clips: int = 5,
    seed: int = 0,
    clips_after: int = 0,
    away_clips: tuple[int, int] = (1, 2),
    late_entry_probability: float = 0.25,
    size_range: tuple[float, float] = (0.16, 0.2),
    shapes: Sequence[str] = SHAPES,
    object_colors: Sequence[str] = MEMORY_COLORS,
    background_colors: Sequence[str] = BACKGROUND_COLORS,
    textures: Sequence[str] = ("plain",),
    background_change_probability: float = 0.0,
    episodes: int = 1,
) -> list[dict[str, Any]]:
    """A re-entry script of the memory world: one large object is seen with its colour named, leaves the frame,
    stays away, and comes back in clip `num_clips - 1` with a prompt that names only its shape.

    The layout, from the end: the comeback clip (`enters_left` / `enters_right`, a random side), `a` hidden clips
    (`a` drawn from `away_clips`), the exit clip (towards the nearer side; the object is visible in it and named with
    its colour), and before it clips where the object stays or moves. With probability `late_entry_probability`
    (and room for it) the object is out of frame at the start and *enters* named with its colour ("A red circle
    enters from the left") in a clip before the exit: a new object that the prompt names. `clips_after` clips follow
    the comeback, in which the prompt names the object with its colour again ("the red circle stays still").

    Args:
        num_clips (`int`, *optional*, defaults to 5): Clips up to and including the comeback, at least
            `3 + away_clips[0]`.
        seed (`int`, *optional*, defaults to 0): Seed; the same arguments give the same script.
        clips_after (`int`, *optional*, defaults to 0): Clips after the comeback.
        away_clips (`tuple[int, int]`, *optional*, defaults to `(1, 2)`): Inclusive range of whole clips away.
        late_entry_probability (`float`, *optional*, defaults to 0.25): See above.
        size_range (`tuple[float, float]`, *optional*, defaults to `(0.16, 0.2)`): Half-extent range, within the
            world's `[0.07, 0.2]`.
        shapes, object_colors, background_colors, textures (`Sequence[str]`, *optional*): What to draw from.
        background_change_probability (`float`, *optional*, defaults to 0): Per clip after the first.
        episodes (`int`, *optional*, defaults to 1): With more than one, after the first comeback the object stays
            in frame for 1-2 clips, leaves again, stays away and comes back again, `episodes - 1` more times (the
            extra cycles are drawn from their own generator, so the first `num_clips` clips do not change), then the
            `clips_after` clips follow.

    Returns:
        `list[dict]`: The script (validated, prompts written).
    """
    if not isinstance(num_clips, int) or isinstance(num_clips, bool):
        raise TypeError(f"`num_clips` must be an int, got {type(num_clips).__name__}.")
    if not isinstance(clips_after, int) or clips_after < 0:
        raise ValueError(f"`clips_after` must be an int >= 0, got {clips_after!r}.")
    if not isinstance(episodes, int) or isinstance(episodes, bool) or episodes < 1:
        raise ValueError(f"`episodes` must be an int >= 1, got {episodes!r}.")
    lo_away, hi_away = (int(a) for a in away_clips)
    if not 1 <= lo_away <= hi_away:
        raise ValueError(f"`away_clips` must be `(low, high)` with 1 <= low <= high, got {away_clips!r}.")
    if num_clips < 3 + lo_away:
        raise ValueError(
            f"`num_clips` must be >= {3 + lo_away} (seen, exit, {lo_away} away, comeback), got {num_clips}."
        )
    lo_size, hi_size = (float(z) for z in size_range)
    if not MIN_SIZE <= lo_size <= hi_size <= MAX_SIZE:
        raise ValueError(f"`size_range` must lie in [{MIN_SIZE}, {MAX_SIZE}] with low <= high, got {size_range!r}.")
    for name, p in (
        ("late_entry_probability", late_entry_probability),
        ("background_change_probability", background_change_probability),
    ):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"`{name}` must be in [0, 1], got {p!r}.")
    for name, values in (
        ("shapes", shapes),
        ("object_colors", object_colors),
        ("background_colors", background_colors),
        ("textures", textures),
    ):
        if len(values) == 0:
            raise ValueError(f"`{name}` must not be empty.")
    rng = np.random.default_rng(seed)
    shape, color = str(rng.choice(list(shapes))), str(rng.choice(list(object_colors)))
    size = round(float(rng.uniform(lo_size, hi_size)), 4)
    margin = size + 0.04
    position = [round(float(rng.uniform(margin, 1 - margin)), 4), round(float(rng.uniform(margin, 1 - margin)), 4)]
    away = int(rng.integers(lo_away, min(hi_away, num_clips - 3) + 1))
    comeback = num_clips - 1
    exit_clip = comeback - away - 1
    # a late entry needs a clip before the exit to enter in (one motion per clip)
    entry_clip = int(rng.integers(1, exit_clip + 1)) if exit_clip >= 1 and rng.random() < late_entry_probability else 0
    background, texture = str(rng.choice(list(background_colors))), str(rng.choice(list(textures)))
    clip0_visible = entry_clip == 0
    state = _initial_states(
        {
            "objects": [
                {
                    "visible": clip0_visible,
                    "motion": "stays" if clip0_visible else HIDDEN_MOTION,
                    "position": position,
                    "size": size,
                }
            ]
        },
        np.random.default_rng(0),
    )[0]
    if clip0_visible:
        state.x, state.y = position
    # later cycles: (exit clip, comeback clip) pairs after the first comeback
    cycles_rng = np.random.default_rng([seed, 1])
    exits, comebacks, end = {exit_clip}, {comeback}, comeback
    for _ in range(episodes - 1):
        leave = end + int(cycles_rng.integers(1, 3)) + 1
        end = leave + int(cycles_rng.integers(lo_away, hi_away + 1)) + 1
        exits.add(leave)
        comebacks.add(end)
    one = np.ones(1)
    clips: list[dict[str, Any]] = []
    away_clips_set = {n for e in exits for n in range(e + 1, min(c for c in comebacks if c > e))}
    for n in range(end + 1 + clips_after):
        if n > 0 and rng.random() < background_change_probability:
            background = str(rng.choice([c for c in background_colors if c != background] or list(background_colors)))
            texture = str(rng.choice(list(textures)))
        if n < entry_clip or n in away_clips_set:
            motion = HIDDEN_MOTION
        elif n in comebacks or (n == entry_clip and not clip0_visible):
            motion = "enters_left" if rng.random() < 0.5 else "enters_right"
        elif n in exits:
            motion = "exits_left" if state.x < 0.5 else "exits_right"
        else:
            motion = _pick(rng, {"stays": 1.0, **_moves_with_room(state, 0.5)})
        entry: dict[str, Any] = {"shape": shape, "color": color, "visible": motion != HIDDEN_MOTION, "motion": motion}
        if n == 0:
            entry.update(position=position, size=size)
        clips.append({"background": background, "texture": texture, "objects": [entry]})
        *_, state = _object_track(state, motion, one)
    return write_prompts(clips)


def save_script(script: Sequence[dict[str, Any]], path: str | os.PathLike) -> None:
    """Validate `script` and write it as indented JSON."""
    clips = validate_script(script)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(clips, f, indent=1)
        f.write("\n")


def load_script(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read and validate a script JSON file (a list of clips, or `{"clips": [...]}`)."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    return validate_script(data)
