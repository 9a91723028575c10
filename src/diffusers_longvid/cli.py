"""The `longvid` command-line entry point.

Every sub-command lives in its own module under `diffusers_longvid.commands` and exposes
`register(subparsers)`, which adds an `argparse` sub-parser and sets `func` to a callable taking the parsed
`argparse.Namespace` and returning an exit code. Modules are discovered, so adding a command never edits this file.
Heavy imports (torch, diffusers) happen inside the command functions, so `longvid --help` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence

from . import __version__, commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="longvid",
        description="diffusers-longvid: long single-shot video generation (extension model, KV cache, T-RFlow).",
    )
    parser.add_argument("--version", action="version", version=f"diffusers-longvid {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="Log at DEBUG level.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from diffusers.utils import logging as dlogging

    dlogging.set_verbosity_debug() if args.verbose else dlogging.set_verbosity_info()
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
