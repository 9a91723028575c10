"""The `longvid` command-line entry point.

Every sub-command lives in its own module under `diffusers_longvid.commands` and exposes
`register(subparsers)`, which adds an `argparse` sub-parser and sets `func` to a callable taking the parsed
`argparse.Namespace` and returning an exit code. Modules are discovered, so adding a command never edits this file.
Heavy imports (torch, diffusers) happen inside the command functions, so `longvid --help` is fast.

Errors: a user error (`ValueError`, `TypeError`, a missing file or optional dependency, ...) is one `error: ...` line
on stderr and exit code 2; any other exception is one `error: internal error ...` line and exit code 1. `--debug`
(anywhere on the command line) shows the traceback instead.
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
    parser.add_argument(
        "--debug", action="store_true", help="Show the traceback of an error (may also follow the command's flags)."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
    return parser


# exceptions that mean "the user asked for something that cannot be done": one `error:` line, exit code 2
_USER_ERRORS = (
    ValueError,
    TypeError,
    FileNotFoundError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
    ImportError,
)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [arg for arg in argv if arg != "--debug"]
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    from diffusers.utils import logging as dlogging

    dlogging.set_verbosity_debug() if args.verbose else dlogging.set_verbosity_info()
    args.debug = debug  # commands that print their own `error:` lines re-raise instead
    if debug:
        return int(args.func(args) or 0)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("error: interrupted.", file=sys.stderr)
        return 130
    except _USER_ERRORS as error:
        print(f"error: {_one_line(error)}", file=sys.stderr)
        return 2
    except OSError as error:  # disk full, permissions, a device gone: not a bug of ours, but not a usage error
        print(f"error: {_one_line(error)}", file=sys.stderr)
        return 1
    except Exception as error:  # noqa: BLE001 - the last resort of a CLI: never a raw traceback
        print(
            f"error: internal error ({type(error).__name__}: {_one_line(error)}); rerun with --debug for the traceback.",
            file=sys.stderr,
        )
        return 1


def _one_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return "; ".join(lines).replace(":; ", ": ") or type(error).__name__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
