"""`longvid model-card`: print (or write) the project's root model card, rendered by `hub.render_model_card`."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "model-card",
        help="Print the root model card (what `model_card.md` holds), rendered from the same text as pushed cards.",
        description="Render `diffusers_longvid.hub.render_model_card()` without weights: the root `model_card.md`.",
    )
    parser.add_argument("--out", type=Path, default=None, help="Write to this file instead of standard output.")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..hub import render_model_card

    card = str(render_model_card())
    if args.out is not None:
        args.out.write_text(card, encoding="utf-8")
    else:
        print(card, end="")
    return 0
