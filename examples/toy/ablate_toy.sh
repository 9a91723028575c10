#!/usr/bin/env bash
# The paper's Tables 2-4 in miniature on the built-in toy preset (docs/results.md). CPU, ~20 minutes on 2 cores.
# Resumable: finished (table, variant, seed) runs in $OUT/runs are reused.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-docs/results}
export HF_HUB_OFFLINE=1
# clip 0 continues the ground truth's first 5 frames (--start-from-ground-truth, the default); 16-clip videos
# (12.8 s) for Tables 2-3, 48 clips (36.8 s) for Table 4; seeds 0-2 (one random script and noise per seed)
"$PY" -m diffusers_longvid.cli toy-ablate --model "${MODEL:-toy}" --out "$OUT" --seeds 0 1 2 \
  --num-clips 16 --long-num-clips 48 --num-frames 17 --num-condition-frames 5 --num-inference-steps 16 \
  --guidance-scale 2.0 --max-sequence-length 64 --window-seconds 6 --evaluator toy
