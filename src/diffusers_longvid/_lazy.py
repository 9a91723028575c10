"""Lazy attribute access for package `__init__` modules (PEP 562), shared by every subpackage.

Importing a package costs nothing heavy: a public name is imported from its module at first access.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def attach_lazy(
    package: str, mapping: dict[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """`(__getattr__, __dir__)` for `package`, whose public name `X` lives in submodule `mapping[X]` (relative)."""
    public = sorted(mapping)

    def __getattr__(name: str) -> Any:
        module_name = mapping.get(name)
        if module_name is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{module_name}", package), name)
        namespace[name] = value  # later accesses skip __getattr__
        return value

    def __dir__() -> list[str]:
        return list(namespace.get("__all__", public))

    return __getattr__, __dir__
