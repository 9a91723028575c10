"""`longvid bench-report`: the summary tables of a `longvid bench --out` folder, as pasted into docs/performance.md."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench-report",
        help="Print the Markdown tables of a `longvid bench --out` folder (bench_results.json, optimisations.json).",
        description=(
            "Print the summary tables of FOLDER/bench_results.json and, when present, FOLDER/optimisations.json, "
            "exactly as docs/performance.md quotes them."
        ),
    )
    parser.add_argument("folder", type=Path, help="A `longvid bench --out` folder.")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..benchmarks.optimisations import optimisations_markdown
    from ..benchmarks.report import BENCH_FILES, summary_markdown

    results = args.folder / BENCH_FILES["json"]
    if results.is_file():
        print(summary_markdown(json.loads(results.read_text(encoding="utf-8"))))
    study = args.folder / "optimisations.json"
    if study.is_file():
        print(optimisations_markdown(json.loads(study.read_text(encoding="utf-8"))))
    return 0
