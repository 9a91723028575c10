"""What `longvid train-extension` and `longvid train-causal-lora` share: flags from a config dataclass, one run."""

from __future__ import annotations

import argparse
import importlib
import sys


def register_stage(
    subparsers: argparse._SubParsersAction, name: str, help: str, description: str, config_path: str, spec_path: str
) -> None:
    """Add the sub-command `name` whose flags are the fields of the config class at `config_path` (`module:Class`)."""
    from ..training.config import add_config_arguments

    parser = subparsers.add_parser(
        name, help=help, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_config_arguments(parser, _load(config_path))
    parser.set_defaults(func=lambda args: run_stage(args, name, config_path, spec_path))


def _load(path: str) -> type:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module, __package__), attr)


def run_stage(args: argparse.Namespace, name: str, config_path: str, spec_path: str) -> int:
    """Build the config and the spec (bad options exit 2 before any model loads), then train."""
    from ..training.config import config_from_args
    from ..training.loop import run_training
    from ..training.manifest import ManifestError

    try:
        config = config_from_args(_load(config_path), args)
        spec = _load(spec_path)(config)
    except (ValueError, TypeError, FileNotFoundError) as error:
        print(f"longvid {name}: error: {error}", file=sys.stderr)
        return 2
    try:
        result = run_training(spec, config)
    except (ManifestError, FileNotFoundError) as error:  # bad data: raised before any model is loaded
        print(f"longvid {name}: error: {error}", file=sys.stderr)
        return 2
    if result.final_dir is not None:
        print(
            f"{name} finished at step {result.global_step} on {result.num_processes} process(es); "
            f"weights in {result.final_dir}"
        )
    return 0
