#!/usr/bin/env python
# Copyright 2026 The diffusers-longvid contributors. Licensed under the Apache License, Version 2.0.
"""Evaluate long videos and compare them: VBench's six dimensions per time window, their slopes, and AF.

Typical use: the same script generated with and without the KV cache, or with and without T-RFlow. Each video gets
its report folder (`eval_results.json`, `eval_report.md`, `eval_windows.png`, as `longvid eval` writes), and the
script prints one table with every video's overall scores and slopes per minute (negative = degrades over time).
The JSON is what `longvid push-to-hub --eval-results` puts on a model card.

Needs: CPU only, `pip install "diffusers-longvid[eval]"` (OpenCV; no weights) for the default offline backend, whose
numbers are proxies and NOT comparable to published VBench numbers; `--backend reference` loads VBench's models
(DINO, CLIP, the LAION aesthetic head; see docs/evaluation.md). Time: about a second per few hundred small frames
with the offline backend; the optical flow dominates at 480p.

Examples:
    python examples/evaluate_long_video.py with_kv.mp4 without_kv.mp4 --out eval_reports
    longvid eval with_kv.mp4 --out eval_report            # the same for one video, from the CLI
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("videos", nargs="+", type=Path, help="Video files to evaluate and compare.")
    parser.add_argument("--out", type=Path, default=Path("eval_reports"), help="One report folder per video inside.")
    parser.add_argument("--backend", choices=("offline", "reference"), default="offline")
    parser.add_argument("--window-seconds", type=float, default=30.0, help="Length of the error-accumulation windows.")
    parser.add_argument("--fps", type=float, default=None, help="Override the files' frame rate.")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    missing = [str(v) for v in args.videos if not v.is_file()]
    if missing:
        print(f"error: not a file: {', '.join(missing)}", file=sys.stderr)
        return 2

    from diffusers_longvid.evaluation import evaluate_video, write_eval_report
    from diffusers_longvid.evaluation.report import METRIC_LABELS

    results = {}
    for path in args.videos:
        result = evaluate_video(path, backend=args.backend, window_seconds=args.window_seconds, fps=args.fps)
        files = write_eval_report(result, args.out / path.stem)
        results[path.name] = result
        print(f"{path.name}: {result.num_frames} frames, {len(result.windows)} windows -> {files['json']}")

    metrics = next(iter(results.values())).metrics
    print("\n| metric | " + " | ".join(f"{name} (score / slope per min)" for name in results) + " |")
    print("| --- |" + " --- |" * len(results))
    for metric in metrics:
        cells = []
        for result in results.values():
            score, slope = result.scores.get(metric), result.slopes.get(metric)
            score_text = "–" if score is None else f"{score:.4f}"
            cells.append(score_text + " / " + ("–" if slope is None else f"{slope:+.4f}"))
        print(f"| {METRIC_LABELS[metric]} | " + " | ".join(cells) + " |")
    if any(result.proxies for result in results.values()):
        print("\nOffline proxies: compare these videos with each other only, not with published VBench numbers.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
