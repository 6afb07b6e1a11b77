#!/usr/bin/env bash
# Demo of the trainer alone: tiny random SD1.x model + synthetic dataset under .demo/, ~30 LoRA
# steps at 64 px on CPU, quiet output (progress numbers + one summary line). No network, no GPU.
# The lifecycle helper wraps this later with Vault, the encrypted workspace and audit.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${VENV:-.venv}/bin"
DEMO="${DEMO_DIR:-.demo}"
STEPS="${DEMO_STEPS:-30}"
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 DO_NOT_TRACK=1

mkdir -p "$DEMO"
if [[ ! -f "$DEMO/model/diffusers/model_index.json" ]]; then
  "$BIN/secure-trainer" dev tiny-model "$DEMO/model" >/dev/null
fi
if [[ ! -d "$DEMO/data/10_subject" ]]; then
  "$BIN/secure-trainer" dev dataset "$DEMO/data" >/dev/null
fi
rm -rf "$DEMO/output" "$DEMO/clean"

# Data enters only through the sanitizer: metadata stripped, names pseudonymised, captions PII-scanned.
# (Plaintext destination is for this native demo only; `run` imports into the encrypted workspace.)
"$BIN/secure-trainer" data sanitize "$DEMO/data" "$DEMO/clean" --unsafe-plaintext-dest 2>/dev/null

"$BIN/secure-trainer" train \
  --pretrained_model_name_or_path "$DEMO/model/diffusers" \
  --train_data_dir "$DEMO/clean" --caption_extension .txt --resolution 64 \
  --network_dim 8 --network_alpha 8 --learning_rate 1e-3 --train_batch_size 2 \
  --max_train_steps "$STEPS" --cache_latents --seed 42 \
  --output_dir "$DEMO/output" --output_name demo-lora

echo "LoRA written to $DEMO/output/demo-lora.safetensors"
