# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""The script editor's model, without any UI: one row per clip, edits, and reading / writing script files.

A row is `[clip, prompt, comeback, toy clip]`, all strings: the 0-based clip number (the numbering of the KV plan),
the prompt, for a toy-world clip the objects that come back into frame in it (their prompt does not name their
colour, see `diffusers_longvid.toy.describe_script`), and the toy clip itself as compact JSON (empty for a plain
prompt). A script is either all plain prompts or all toy clips.

Files: a prompts file (`.txt`, one prompt per line, blank and `#` lines skipped, as `longvid generate
--prompts-file`), a toy script (`.json`, a list of clips or `{"clips": [...]}`), a JSON list of prompts, or the
JSON sidecar of a video made by `longvid generate` or this app (its `prompts`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import AppInputError


__all__ = [
    "COLUMNS",
    "EditedScript",
    "add_row",
    "check_prompt_lengths",
    "load_script_file",
    "move_row",
    "normalise_rows",
    "random_toy_rows",
    "refresh_rows",
    "remove_row",
    "rewrite_toy_prompts",
    "rows_from_prompts",
    "rows_from_toy_script",
    "save_script_file",
    "script_from_rows",
]

COLUMNS = ["clip", "prompt", "comeback", "toy clip (JSON)"]
_PROMPT, _COMEBACK, _TOY = 1, 2, 3


@dataclass
class EditedScript:
    r"""
    What the editor holds, checked and ready to generate.

    Args:
        prompts (`list[str]`): One prompt per clip.
        toy_script (`list[dict]`, *optional*): The toy-world clips (with their prompts), or `None` for plain prompts.
    """

    prompts: list[str]
    toy_script: list[dict[str, Any]] | None = None

    @property
    def is_toy(self) -> bool:
        return self.toy_script is not None


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value != value:  # NaN: an empty cell of a pandas frame
        return ""
    return str(value).strip()


def normalise_rows(rows: Any) -> list[list[str]]:
    """Rows as lists of 4 stripped strings, from a list of lists or a pandas `DataFrame`; rows with neither a prompt
    nor a toy clip are dropped and clips are renumbered."""
    if rows is None:
        return []
    if hasattr(rows, "values") and hasattr(rows, "columns"):  # a pandas DataFrame
        rows = rows.values.tolist()
    out = []
    for row in rows:
        row = list(row) if isinstance(row, (list, tuple)) else [row]
        cells = [_cell(v) for v in row[: len(COLUMNS)]] + [""] * (len(COLUMNS) - len(row))
        if cells[_PROMPT] or cells[_TOY]:
            out.append(cells)
    for n, row in enumerate(out):
        row[0] = str(n)
    return out


def rows_from_prompts(prompts: Sequence[str]) -> list[list[str]]:
    """One plain-prompt row per prompt."""
    return normalise_rows([["", p, "", ""] for p in prompts])


def _comebacks(clips: list[dict[str, Any]]) -> list[str]:
    from ..toy import is_reentry

    flags = is_reentry(clips)
    return [
        ", ".join(f"the {obj['shape']} (colour not in the prompt)" for obj, back in zip(clip["objects"], row) if back)
        for clip, row in zip(clips, flags)
    ]


def _validate_toy(clips: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from ..toy import validate_script

    try:
        return validate_script(clips)
    except (TypeError, ValueError) as error:
        raise AppInputError(f"The toy script is not valid (script[n] is clip n): {error}") from error


def rows_from_toy_script(script: Any, rewrite_prompts: bool = True) -> list[list[str]]:
    r"""
    Rows of a toy-world script.

    Args:
        script (`list[dict]` or `dict`): The clips, or `{"clips": [...]}`.
        rewrite_prompts (`bool`, *optional*, defaults to `True`):
            Write every prompt with `describe_script` (the comeback clips' prompts leave the colour out); `False`
            keeps the prompts the script has and writes only the missing ones.
    """
    from ..toy import describe_script

    if isinstance(script, dict) and "clips" in script:
        script = script["clips"]
    clips = _validate_toy(script)
    written = describe_script(clips)
    comebacks = _comebacks(clips)
    rows = []
    for clip, text, comeback in zip(clips, written, comebacks):
        prompt = text if rewrite_prompts or not clip.get("prompt") else clip["prompt"]
        body = {k: v for k, v in clip.items() if k != "prompt"}
        rows.append(["", prompt, comeback, json.dumps(body, separators=(", ", ": "))])
    return normalise_rows(rows)


def random_toy_rows(num_clips: int, seed: int = 0) -> list[list[str]]:
    """Rows of `diffusers_longvid.toy.random_script(num_clips, seed=seed)` (objects leave and come back)."""
    from ..toy import random_script

    num_clips = _as_int(num_clips, "The number of clips")
    if num_clips < 1:
        raise AppInputError(f"The number of clips must be at least 1, got {num_clips}.")
    return rows_from_toy_script(random_script(num_clips, seed=_as_int(seed, "The script seed")))


def _as_int(value: Any, what: str) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise AppInputError(f"{what} must be a whole number, got {value!r}.") from None
    if number != int(number):
        raise AppInputError(f"{what} must be a whole number, got {value!r}.")
    return int(number)


def _toy_clips(rows: list[list[str]]) -> list[dict[str, Any]] | None:
    """The rows' toy clips (with their prompts), `None` when no row has one."""
    with_toy = [row for row in rows if row[_TOY]]
    if not with_toy:
        return None
    if len(with_toy) != len(rows):
        missing = next(row[0] for row in rows if not row[_TOY])
        raise AppInputError(
            f"Clip {missing} has no toy clip but other clips have one: a script is either all plain prompts or all "
            "toy clips. Fill in its toy clip or clear the toy clip column."
        )
    clips = []
    for row in rows:
        try:
            clip = json.loads(row[_TOY])
        except json.JSONDecodeError as error:
            raise AppInputError(
                f"The toy clip of clip {row[0]} is not valid JSON: {error.msg} (column {error.colno})."
            ) from error
        if not isinstance(clip, dict):
            raise AppInputError(f"The toy clip of clip {row[0]} must be a JSON object, got {type(clip).__name__}.")
        clip = dict(clip)
        clip.pop("prompt", None)
        if row[_PROMPT]:
            clip["prompt"] = row[_PROMPT]
        clips.append(clip)
    return clips


def refresh_rows(rows: Any) -> list[list[str]]:
    """Renumber the rows and recompute the comeback column (it depends on the order of the toy clips)."""
    rows = normalise_rows(rows)
    try:
        clips = _toy_clips(rows)
        comebacks = _comebacks(_validate_toy(clips)) if clips is not None else None
    except AppInputError:
        return rows  # an invalid script is reported when it is used; editing goes on
    for n, row in enumerate(rows):
        row[_COMEBACK] = comebacks[n] if comebacks is not None else ""
    return rows


def rewrite_toy_prompts(rows: Any) -> list[list[str]]:
    """Write every toy clip's prompt with `describe_script` (comebacks without their colour)."""
    rows = normalise_rows(rows)
    clips = _toy_clips(rows)
    if clips is None:
        raise AppInputError("The script has no toy clips: only a toy script's prompts can be written from it.")
    return rows_from_toy_script(clips, rewrite_prompts=True)


def script_from_rows(rows: Any, max_clips: int | None = None) -> EditedScript:
    r"""
    Check the editor's rows and return the script to generate.

    Args:
        rows (`list[list[str]]` or `DataFrame`): The editor's rows.
        max_clips (`int`, *optional*): Most clips accepted (a shared server's limit).

    Raises:
        [`AppInputError`]: An empty script, a clip without a prompt, an invalid toy clip, too many clips.
    """
    rows = normalise_rows(rows)
    if not rows:
        raise AppInputError("The script is empty: add at least one clip with a prompt.")
    if max_clips is not None and len(rows) > max_clips:
        raise AppInputError(f"The script has {len(rows)} clips; this app takes at most {max_clips}.")
    clips = _toy_clips(rows)
    if clips is None:
        return EditedScript(prompts=[row[_PROMPT] for row in rows])
    from ..toy import describe_script

    clips = _validate_toy(clips)
    written = describe_script(clips)
    for clip, text in zip(clips, written):
        if not clip.get("prompt"):
            clip["prompt"] = text  # an empty prompt of a toy clip is written from the clip
    return EditedScript(prompts=[clip["prompt"] for clip in clips], toy_script=clips)


def add_row(rows: Any, after: Any = None) -> list[list[str]]:
    """Insert a copy of clip `after` right after it (at the end, a copy of the last clip, when `after` is empty);
    an empty script gets one empty row."""
    rows = normalise_rows(rows)
    if not rows:
        return [["0", "", "", ""]]
    index = len(rows) - 1 if after in (None, "") else _row_index(rows, after)
    rows.insert(index + 1, list(rows[index]))
    return refresh_rows(rows)


def remove_row(rows: Any, index: Any) -> list[list[str]]:
    """Remove clip `index`."""
    rows = normalise_rows(rows)
    del rows[_row_index(rows, index)]
    return refresh_rows(rows)


def move_row(rows: Any, index: Any, offset: int) -> list[list[str]]:
    """Move clip `index` by `offset` places (-1: up, 1: down), clamped to the script."""
    rows = normalise_rows(rows)
    n = _row_index(rows, index)
    target = max(0, min(len(rows) - 1, n + int(offset)))
    rows.insert(target, rows.pop(n))
    return refresh_rows(rows)


def _row_index(rows: list[list[str]], index: Any) -> int:
    if not rows:
        raise AppInputError("The script is empty.")
    n = _as_int(index, "The clip number")
    if not 0 <= n < len(rows):
        raise AppInputError(f"There is no clip {n}: the script has clips 0 to {len(rows) - 1}.")
    return n


def load_script_file(path: str | os.PathLike) -> list[list[str]]:
    """Rows from a prompts file, a toy script, a JSON list of prompts or a video's JSON sidecar (see the module)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise AppInputError(f"Could not read {path.name}: {error}") from error
    if path.suffix.lower() != ".json":
        lines = [line.strip() for line in text.splitlines()]
        prompts = [line for line in lines if line and not line.startswith("#")]
        if not prompts:
            raise AppInputError(f"{path.name} holds no prompt (one prompt per line; # lines are comments).")
        return rows_from_prompts(prompts)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise AppInputError(f"{path.name} is not valid JSON: {error.msg} (line {error.lineno}).") from error
    if isinstance(data, dict) and isinstance(data.get("toy_script"), list):
        data = data["toy_script"]  # a sidecar of a toy job: its script
    elif isinstance(data, dict) and isinstance(data.get("prompts"), list):
        data = data["prompts"]  # a sidecar
    if isinstance(data, list) and data and all(isinstance(p, str) for p in data):
        return rows_from_prompts(data)
    if isinstance(data, (list, dict)):
        return rows_from_toy_script(data, rewrite_prompts=False)
    raise AppInputError(
        f"{path.name} is neither a toy script (a list of clips), a list of prompts nor a video's JSON sidecar."
    )


def save_script_file(rows: Any, folder: str | os.PathLike, name: str = "script") -> str:
    """Write the script to `folder/name.json` (a toy script) or `folder/name.txt` (prompts). Returns the path."""
    script = script_from_rows(rows)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if script.is_toy:
        path = folder / f"{name}.json"
        path.write_text(json.dumps(script.toy_script, indent=1) + "\n", encoding="utf-8")
    else:
        path = folder / f"{name}.txt"
        path.write_text("".join(p.replace("\n", " ") + "\n" for p in script.prompts), encoding="utf-8")
    return str(path)


def check_prompt_lengths(prompts: Sequence[str], tokenizer: Any, max_sequence_length: int) -> None:
    r"""
    Refuse prompts the text encoder would cut: the pipeline truncates silently at `max_sequence_length` tokens.

    Args:
        prompts (`list[str]`): One per clip.
        tokenizer: The pipeline's tokenizer.
        max_sequence_length (`int`): Tokens the pipeline reads per prompt.

    Raises:
        [`AppInputError`]: Naming every clip whose prompt is too long, with its token count.
    """
    too_long = []
    for n, prompt in enumerate(prompts):
        count = len(tokenizer(prompt, add_special_tokens=True)["input_ids"])
        if count > max_sequence_length:
            too_long.append(f"clip {n} ({count} tokens)")
    if too_long:
        raise AppInputError(
            f"Prompts over the tokenizer limit of {max_sequence_length} tokens (they would be cut): "
            f"{', '.join(too_long)}. Shorten them, or raise the max sequence length if the model takes more."
        )
