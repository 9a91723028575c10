#!/usr/bin/env bash
# Train the built-in `toy` model from scratch on this kind of machine (CPU, 1 thread per job).
# Every step is resumable: re-run this script after any stop and each stage continues from its last checkpoint.
#
#   bash examples/toy/train_toy.sh            # outputs under runs/ (git-ignored)
#   RUNS=/somewhere/else bash examples/toy/train_toy.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

PY=${PY:-.venv/bin/python}
RUNS=${RUNS:-runs}
export HF_HUB_OFFLINE=1
mkdir -p "$RUNS"

# ---------------------------------------------------------------------------------------------------------------
# 1. Toy VAE: a narrow AutoencoderKLWan (base_dim 16, 8x spatial / 4x temporal, 16 latent channels), 2000
#    single-frame steps then 3000 five-frame steps, inflated init, L1 + MSE, cosine lr from 1e-3.
#    2-3 hours on one free core. Checkpoints: $RUNS/toy_vae/checkpoint-*; the latest weights, with latents_mean /
#    latents_std measured on toy data: $RUNS/toy_vae/vae; the PSNR curve: $RUNS/toy_vae/metrics.jsonl.
#    To run it detached (it survives the shell):
#      nohup setsid $PY -m diffusers_longvid.cli train-toy-vae --out $RUNS/toy_vae --steps 5000 --resume \
#        --num-threads 1 > $RUNS/toy_vae.log 2>&1 &
# ---------------------------------------------------------------------------------------------------------------
# The shipped VAE is this recipe stopped at step 3250 (held-out PSNR 24.4 dB; see docs/toy.md for why not 5000).
"$PY" -m diffusers_longvid.cli train-toy-vae --out "$RUNS/toy_vae" --steps 5000 --stop-at 3250 --resume --num-threads 1

# ---------------------------------------------------------------------------------------------------------------
# 1b. Decoder-only fine-tune (optional): the encoder is frozen, so latents cached from "$RUNS/toy_vae/vae" stay valid
#     while the decoder improves. It gained 0.01 dB in 250 steps here and the shipped preset does not use it.
#       nohup setsid $PY -m diffusers_longvid.cli train-toy-vae --out $RUNS/toy_vae_dec --init-from $RUNS/toy_vae/vae \
#         --decoder-only --steps 4000 --image-steps 0 --learning-rate 3e-4 --warmup-steps 50 --num-threads 1 &
# ---------------------------------------------------------------------------------------------------------------

# ---------------------------------------------------------------------------------------------------------------
# 2. Data: 480 random 8-clip scripts (1-3 objects, exits and re-entries, background changes), rendered with the
#    pipeline's clip arithmetic (17-frame clips, 5 condition frames, 64x64, 16 fps): 3840 clips, ~8 min.
# ---------------------------------------------------------------------------------------------------------------
"$PY" -m diffusers_longvid.cli toy-data --out "$RUNS/toy_data" --num-videos 480 --num-clips 8 --num-frames 17 \
  --num-condition-frames 5

# 3. The untrained starting pipeline: 36-channel toy transformer (1.81 M params), the toy VAE, all-MiniLM-L6-v2 cut
#    to 3 layers and the toy world's 196 WordPiece tokens, TRFlowScheduler(shift=3).
[ -f "$RUNS/toy_init/model_index.json" ] || "$PY" -m diffusers_longvid.cli toy-init --out "$RUNS/toy_init" \
  --vae "$RUNS/toy_vae/vae"

# 4. One latent cache for both stages (each clip of each long video encoded on its own), ~11 min on 2 threads.
"$PY" -m diffusers_longvid.cli cache-latents --kind long --manifest "$RUNS/toy_data/long.jsonl" \
  --model "$RUNS/toy_init" --out "$RUNS/toy_cache" --height 64 --width 64 --fps 16 --num-frames 17 \
  --overlap-frames 5 --max-sequence-length 64 --no-probe

# 5. Stage 1: the extension model, every clip of the cache an example (first-k / last-k / first+last / none).
"$PY" -m diffusers_longvid.cli train-extension --config examples/toy/stage1.yaml \
  --pretrained-model "$RUNS/toy_init" --latent-cache "$RUNS/toy_cache" --output-dir "$RUNS/toy_stage1" --resume latest

# 6. Stage 2: LoRA on K/V of blocks 3-5 with cross-clip history (4 consecutive clips per example).
"$PY" -m diffusers_longvid.cli train-causal-lora --config examples/toy/stage2.yaml \
  --pretrained-model "$RUNS/toy_stage1/final" --latent-cache "$RUNS/toy_cache" --output-dir "$RUNS/toy_stage2" \
  --resume latest

# 7. The first preset (v1, shipped until the memory world): stage 1 + fused stage-2 LoRA, float16 safetensors
#    (loaded as float32), <= 25 MB. It keeps stage 1's VAE (the one the latents were cached with);
#    VAE_FOR_PRESET=$RUNS/toy_vae_dec/vae swaps in a decoder fine-tuned with step 1b. The v1 preset is also in the git
#    history:  mkdir -p runs/toy_v1 && git archive b5cf25f src/diffusers_longvid/presets/toy | tar -x -C runs/toy_v1 \
#      --strip-components 4    (then steps 1-7 can be skipped).
VAE_FOR_PRESET=${VAE_FOR_PRESET:-$RUNS/toy_vae/vae}
[ -f "$RUNS/toy_v1/model_index.json" ] || "$PY" -m diffusers_longvid.cli toy-assemble \
  --pipeline "$RUNS/toy_stage1/final" --lora "$RUNS/toy_stage2/final" --vae "$VAE_FOR_PRESET" --out "$RUNS/toy_v1"

# ---------------------------------------------------------------------------------------------------------------
# The memory world (the shipped preset, docs/toy.md "The memory world"): one large object of 6 colours that is
# named, leaves, stays away 1-2 clips and comes back with a colour-free prompt.
# 8. Data: 840 memory_script videos of 6 clips (comeback in clip 4, named again in clip 5), half on plain
#    backgrounds, half with any texture and background changes: ~1 min. Latent cache with v1's VAE/text encoder:
#    ~10 min. (v2 was trained on the first 420 of these videos; toy-data's seeds count up from --seed, so they are
#    the same.)
"$PY" -m diffusers_longvid.cli toy-data --out "$RUNS/mem_data" --num-videos 840 --num-clips 6 --world memory \
  --seed 1000
"$PY" -m diffusers_longvid.cli cache-latents --kind long --manifest "$RUNS/mem_data/long.jsonl" \
  --model "$RUNS/toy_v1" --out "$RUNS/mem_cache" --height 64 --width 64 --fps 16 --num-frames 17 \
  --overlap-frames 5 --max-sequence-length 64 --no-probe
# 9. Stage 1 warm-started from v1's transformer: 5000 steps x 8 (~9 min on a free machine).
"$PY" -m diffusers_longvid.cli train-extension --config examples/toy/stage1_memory.yaml \
  --pretrained-model "$RUNS/toy_v1" --latent-cache "$RUNS/mem_cache" --output-dir "$RUNS/mem_stage1" --resume latest
# 10. Stage 2: K/V LoRA on blocks 3-5, every example a 5-clip piece whose target is the comeback, gradients through
#     the history (3000 steps x 4, ~17 min on a free machine).
"$PY" -m diffusers_longvid.cli train-causal-lora --config examples/toy/stage2_memory.yaml \
  --pretrained-model "$RUNS/mem_stage1/final" --latent-cache "$RUNS/mem_cache" --output-dir "$RUNS/mem_stage2" \
  --resume latest
# 11. Preset v2 (shipped until v3): stage 1 + fused stage-2 LoRA. It is also in the git history (then steps 9-10 can
#     be skipped):  mkdir -p runs/toy_v2 && git archive b37952f src/diffusers_longvid/presets/toy | \
#       tar -x -C runs/toy_v2 --strip-components 4
[ -f "$RUNS/toy_v2/model_index.json" ] || "$PY" -m diffusers_longvid.cli toy-assemble \
  --pipeline "$RUNS/mem_stage1/final" --lora "$RUNS/mem_stage2/final" --out "$RUNS/toy_v2"
# 12. Stage 1c: 8000 more steps from v2's transformer with the novelty-weighted loss (docs/toy.md; ~14 min alone).
"$PY" -m diffusers_longvid.cli train-extension --config examples/toy/stage1c_memory.yaml \
  --pretrained-model "$RUNS/toy_v2" --latent-cache "$RUNS/mem_cache" --output-dir "$RUNS/mem_stage1c" --resume latest
# 13. Stage 2 again on stage 1c, novelty-weighted, 4000 steps x 4 (~21 min alone).
"$PY" -m diffusers_longvid.cli train-causal-lora --config examples/toy/stage2c_memory.yaml \
  --pretrained-model "$RUNS/mem_stage1c/final" --latent-cache "$RUNS/mem_cache" --output-dir "$RUNS/mem_stage2c" \
  --resume latest
# 14. Preset v3 (shipped until v4). It is also in the git history (then steps 12-13 can be skipped):
#       mkdir -p runs/toy_v3 && git archive 88a7dca src/diffusers_longvid/presets/toy | \
#         tar -x -C runs/toy_v3 --strip-components 4
[ -f "$RUNS/toy_v3/model_index.json" ] || "$PY" -m diffusers_longvid.cli toy-assemble \
  --pipeline "$RUNS/mem_stage1c/final" --lora "$RUNS/mem_stage2c/final" --out "$RUNS/toy_v3"
# 15. 240 random-world videos (1-3 objects, exits, re-entries, background changes: the world of docs/results.md's Tables 2-4; seeds from 5000, so
#     the tables' scripts 0-2 are not among them) and their latent cache (~4 + ~5 min).
"$PY" -m diffusers_longvid.cli toy-data --out "$RUNS/toy_data_v4" --num-videos 240 --num-clips 8 --num-frames 17 \
  --num-condition-frames 5 --seed 5000
"$PY" -m diffusers_longvid.cli cache-latents --kind long --manifest "$RUNS/toy_data_v4/long.jsonl" \
  --model "$RUNS/toy_v1" --out "$RUNS/toy_cache_v4" --height 64 --width 64 --fps 16 --num-frames 17 \
  --overlap-frames 5 --max-sequence-length 64 --no-probe
# 16. Stage 1d: 12 000 more steps from v3's transformer on both caches, novelty-weighted.
"$PY" -m diffusers_longvid.cli train-extension --config examples/toy/stage1d_memory.yaml \
  --pretrained-model "$RUNS/toy_v3" --latent-cache "$RUNS/mem_cache" --extra-latent-caches "$RUNS/toy_cache_v4" \
  --output-dir "$RUNS/mem_stage1d" --resume latest
# Stage 2 on the memory-world cache and the random-world cache together (steps 17, 20, 22):
#   stage2_on_both_caches CONFIG PRETRAINED OUTPUT_DIR
stage2_on_both_caches() {
  "$PY" -m diffusers_longvid.cli train-causal-lora --config "$1" --pretrained-model "$2" \
    --latent-cache "$RUNS/mem_cache" --extra-latent-caches "$RUNS/toy_cache_v4" --output-dir "$3" --resume latest
}
# 17. Stage 2d: a fresh K/V LoRA, sliding targets (away / comeback / named again, and random-world continuations).
stage2_on_both_caches examples/toy/stage2d_memory.yaml "$RUNS/mem_stage1d/final" "$RUNS/mem_stage2d"
# 18. The shipped preset (v4).
"$PY" -m diffusers_longvid.cli toy-assemble --pipeline "$RUNS/mem_stage1d/final" --lora "$RUNS/mem_stage2d/final" \
  --out "${PRESET_OUT:-src/diffusers_longvid/presets/toy}"
# 19-21. Candidate v5 (docs/toy.md "Candidate v5", not shipped yet; RUN_V5=1 to train it): stage 1e with the plain
#     loss from the shipped v4 preset, the random-world cache at twice its share; stage 2e = stage 2d's recipe on it.
if [ "${RUN_V5:-0}" = 1 ]; then
  "$PY" -m diffusers_longvid.cli train-extension --config examples/toy/stage1e_memory.yaml \
    --pretrained-model src/diffusers_longvid/presets/toy --latent-cache "$RUNS/mem_cache" \
    --extra-latent-caches "$RUNS/toy_cache_v4" "$RUNS/toy_cache_v4" --output-dir "$RUNS/mem_stage1e" --resume latest
  stage2_on_both_caches examples/toy/stage2e_memory.yaml "$RUNS/mem_stage1e/final" "$RUNS/mem_stage2e"
  "$PY" -m diffusers_longvid.cli toy-assemble --pipeline "$RUNS/mem_stage1e/final" --lora "$RUNS/mem_stage2e/final" \
    --out "$RUNS/toy_v5"
fi
# 22. A K/V LoRA for compressed history (issue 14; docs/kv_cache.md, RUN_POOLED=1 to train it): stage 2 on top of the
#     shipped preset with the history pooled as at generation, history_pool=(2, 2, 2) (16 min 25 s alone on the
#     machine, 3.1 steps/s). The committed result is examples/toy/lora_pooled_222/; benchmark it with
#       longvid toy-memory --model toy --lora examples/toy/lora_pooled_222 --kv-cache-config '{"history_pool": [2, 2, 2]}'
if [ "${RUN_POOLED:-0}" = 1 ]; then
  stage2_on_both_caches examples/toy/stage2p_pooled.yaml src/diffusers_longvid/presets/toy "$RUNS/pool_stage2p"
fi
# 23. A K/V LoRA for compressed history by token selection (issue 14; docs/kv_cache.md "Compressed history by token
#     selection", RUN_SELECTED=1 to train it): stage 2 on top of the shipped preset with history_keep_ratio=0.15 as at
#     generation. The committed result is examples/toy/lora_selected_015/; benchmark it with
#       longvid toy-memory --model toy --lora examples/toy/lora_selected_015 --kv-cache-config '{"history_keep_ratio": 0.15}'
if [ "${RUN_SELECTED:-0}" = 1 ]; then
  stage2_on_both_caches examples/toy/stage2s_selected.yaml src/diffusers_longvid/presets/toy "$RUNS/sel_stage2s"
fi
echo "Toy preset written; try: longvid generate --model toy --prompt 'A red circle moves to the right on a navy background.' --num-clips 4 --out toy.mp4" >&2
