"""`# Copied from diffusers.<module>.<object>[ with a->b, ...]` comments, checked as diffusers' utils/check_copies.py
does: the def or class under the comment must equal diffusers' installed source after the stated replacements.

The package has no such copies today (the pipeline borrows WanPipeline's methods instead; tests/test_diffusers_contract.py
checks their names and signatures). The check stands so that a comment added later is true or fails here.
"""

from __future__ import annotations

import importlib
import inspect
import re
import textwrap
from pathlib import Path

import pytest


SRC = Path(__file__).resolve().parents[1] / "src" / "diffusers_longvid"
COMMENT = re.compile(r"^(?P<indent>\s*)# Copied from (?P<target>diffusers(?:\.\w+)+)(?: with (?P<repl>.+))?$")


def _resolve(target: str):
    parts = target.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(target)


def _block(lines: list[str], start: int) -> str:
    """The def or class starting at `lines[start]` (decorators included), up to the next line at its indent or less."""
    indent = len(lines[start]) - len(lines[start].lstrip())
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or len(lines[end]) - len(lines[end].lstrip()) > indent):
        end += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return textwrap.dedent("\n".join(lines[start:end]))


def check_copies(text: str) -> list[str]:
    """The copies in `text` that differ from their diffusers source, as messages."""
    lines, problems = text.splitlines(), []
    for number, line in enumerate(lines):
        match = COMMENT.match(line)
        if not match:
            continue
        target = match["target"]
        ours = _block(lines, number + 1)
        theirs = textwrap.dedent(inspect.getsource(_resolve(target))).rstrip()
        for pair in (match["repl"] or "").split(","):
            if pair.strip():
                old, new = (p.strip() for p in pair.split("->"))
                theirs = theirs.replace(old, new)
        if ours != theirs:
            problems.append(f"line {number + 1}: not a copy of {target}")
    return problems


def test_every_copied_from_comment_is_a_true_copy():
    problems = []
    for path in sorted(SRC.rglob("*.py")):
        problems += [f"{path.relative_to(SRC.parent)} {p}" for p in check_copies(path.read_text(encoding="utf-8"))]
    assert not problems, "\n".join(problems)


def test_the_checker_finds_a_changed_copy():
    from diffusers.pipelines.wan.pipeline_wan import prompt_clean

    source = textwrap.dedent(inspect.getsource(prompt_clean)).rstrip()
    true_copy = "# Copied from diffusers.pipelines.wan.pipeline_wan.prompt_clean\n" + source
    assert check_copies(true_copy) == []
    renamed = "# Copied from diffusers.pipelines.wan.pipeline_wan.prompt_clean with prompt_clean->clean\n"
    assert check_copies(renamed + source.replace("prompt_clean", "clean")) == []
    assert check_copies(true_copy.replace("text", "txt")) == [
        "line 1: not a copy of diffusers.pipelines.wan.pipeline_wan.prompt_clean"
    ]
    with pytest.raises(AttributeError):
        check_copies("# Copied from diffusers.pipelines.wan.pipeline_wan.no_such_function\ndef f():\n    pass")
