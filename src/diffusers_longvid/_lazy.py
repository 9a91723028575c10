"""Lazy attribute access for package `__init__` modules (PEP 562), shared by every subpackage.

Importing a package costs nothing heavy: a public name is imported from its module at first access.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from typing import Any


def attach_lazy(
    package: str,
    mapping: dict[str, str],
    namespace: dict[str, Any],
    moved: dict[str, str] | None = None,
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """`(__getattr__, __dir__)` for `package`, whose public name `X` lives in submodule `mapping[X]` (relative).

    `moved` maps names that were public here and now live elsewhere to their new module (absolute): they still
    resolve, with a `FutureWarning` naming the new import path, and are not listed by `dir()`.
    """
    public = sorted(mapping)
    moved = moved or {}

    def __getattr__(name: str) -> Any:
        module_name = mapping.get(name)
        if module_name is not None:
            value = getattr(importlib.import_module(f".{module_name}", package), name)
            namespace[name] = value  # later accesses skip __getattr__
            return value
        new_home = moved.get(name)
        if new_home is not None:
            warnings.warn(
                f"`{package}.{name}` moved: import it with `from {new_home} import {name}` (the top-level "
                f"package exports the product API only).",
                FutureWarning,
                stacklevel=2,
            )
            return getattr(importlib.import_module(new_home), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return list(namespace.get("__all__", public))

    return __getattr__, __dir__
