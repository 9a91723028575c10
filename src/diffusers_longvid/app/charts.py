# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""The memory made visible: which earlier clips each clip attended through the cross-clip KV cache (the KV plan)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np


__all__ = ["kv_plan_chart", "kv_plan_markdown", "kv_plan_matrix"]

_ATTENDED = (37, 99, 235)  # blue: clip n attended clip m
_STORED = (22, 163, 74)  # green diagonal: the clip's K/V were stored for later clips
_CURRENT = (203, 213, 225)  # grey diagonal: the clip itself, not stored
_EMPTY = (248, 250, 252)
_GRID = (226, 232, 240)
_PENDING = (254, 243, 199)  # amber row: not generated yet


def kv_plan_matrix(kv_plan: Sequence[dict[str, Any]], num_clips: int | None = None) -> np.ndarray:
    r"""
    The KV plan as a matrix: `M[n, m] = 1` where clip `n` attended clip `m` (`m < n`), `M[n, n] = 2` where clip `n`'s
    K/V were stored, else `M[n, n] = 3` for a generated clip; `0` elsewhere, rows of clips not generated yet all `0`.

    Args:
        kv_plan (`list[dict]`): Entries `{"clip", "attends", "stored", ...}` (`LongVideoClip.kv_plan`, a sidecar's).
        num_clips (`int`, *optional*): Size of the matrix (the script's length); defaults to the plan's.
    """
    size = max([int(e["clip"]) + 1 for e in kv_plan] + [num_clips or 0])
    matrix = np.zeros((size, size), dtype=np.int8)
    for entry in kv_plan:
        n = int(entry["clip"])
        for m in entry.get("attends") or []:
            if 0 <= int(m) < size:
                matrix[n, int(m)] = 1
        matrix[n, n] = 2 if entry.get("stored") else 3
    return matrix


def kv_plan_chart(
    kv_plan: Sequence[dict[str, Any]], path: str | os.PathLike, num_clips: int | None = None, max_side: int = 480
) -> str:
    r"""
    Draw the KV plan as a PNG: one row per clip, one column per earlier clip; a blue cell where the row's clip
    attended the column's clip, the diagonal green where the clip's K/V were stored for later clips.

    Args:
        kv_plan (`list[dict]`): As for [`kv_plan_matrix`].
        path (`str` or `os.PathLike`): Output PNG.
        num_clips (`int`, *optional*): The script's length (rows of clips not generated yet are drawn empty).
        max_side (`int`, *optional*, defaults to 480): Largest side of the grid in pixels.

    Returns:
        `str`: The path.
    """
    from PIL import Image, ImageDraw, ImageFont

    matrix = kv_plan_matrix(kv_plan, num_clips)
    size = max(1, len(matrix))
    cell = int(np.clip(max_side // size, 4, 28))
    margin = 34 if cell >= 12 else 22
    side = margin + size * cell + 2
    try:
        font = ImageFont.load_default(size=11)
    except TypeError:  # Pillow < 10.1: one fixed-size default font
        font = ImageFont.load_default()
    legend = ((_ATTENDED, "attended"), (_STORED, "K/V stored"), (_PENDING, "not yet"))
    legend_width = 4 + sum(26 + int(font.getlength(text)) for _, text in legend)
    image = Image.new("RGB", (max(side + 8, legend_width), side + 24), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    done = {int(e["clip"]) for e in kv_plan}
    label_every = max(1, int(np.ceil(16 / cell)))
    for n in range(size):
        for m in range(size):
            value = matrix[n, m]
            if n not in done:
                colour = _PENDING if m == n else _EMPTY
            else:
                colour = {1: _ATTENDED, 2: _STORED, 3: _CURRENT}.get(int(value), _EMPTY)
            x0, y0 = margin + m * cell, margin + n * cell
            draw.rectangle([x0, y0, x0 + cell - 1, y0 + cell - 1], fill=colour, outline=_GRID if cell >= 8 else None)
        if n % label_every == 0:
            draw.text((2, margin + n * cell + max(0, cell // 2 - 6)), str(n), fill=(51, 65, 85), font=font)
            draw.text((margin + n * cell + max(0, cell // 2 - 4), margin - 14), str(n), fill=(51, 65, 85), font=font)
    draw.text((2, 2), "clip", fill=(51, 65, 85), font=font)
    x, y = 4, side + 4
    for colour, text in legend:
        draw.rectangle([x, y + 2, x + 10, y + 12], fill=colour)
        draw.text((x + 14, y), text, fill=(51, 65, 85), font=font)
        x += 26 + int(font.getlength(text))
    image.save(os.fspath(path))
    return os.fspath(path)


def kv_plan_markdown(kv_plan: Sequence[dict[str, Any]]) -> str:
    """The KV plan as a Markdown table: clip, the clips it attended, whether its K/V were stored, what was evicted."""
    if not kv_plan:
        return "_No clip generated yet._"
    lines = ["| clip | attended | K/V stored | evicted |", "| --- | --- | --- | --- |"]
    for entry in kv_plan:
        attends = ", ".join(str(m) for m in entry.get("attends") or []) or "—"
        evicted = ", ".join(str(m) for m in entry.get("evicted") or []) or "—"
        lines.append(f"| {entry['clip']} | {attends} | {'yes' if entry.get('stored') else 'no'} | {evicted} |")
    return "\n".join(lines)
