#!/usr/bin/env bash
# `make demo-llm`: private LoRA fine-tuning of a language model on embedded defaults — a local
# OpenBao dev server, a tiny random Llama and a synthetic text corpus with subjects and planted
# PII, imported through the text sanitizer into a gocryptfs workspace, fine-tuned with
# user-level DP and canaries inside that workspace, then the canary memorization audit.
# Needs root (FUSE). Not yet through `secure-trainer run` (docs/llm.md says what is missing).
set -euo pipefail
cd "$(dirname "$0")/.."
ST="$(pwd)/${VENV:-.venv}/bin/secure-trainer"
DEMO="$(pwd)/${DEMO_DIR:-.demo-llm}"
STEPS="${DEMO_STEPS:-40}"
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 DO_NOT_TRACK=1

rm -rf "$DEMO/site"
mkdir -p "$DEMO/site" "$DEMO/src"
VAULT_DIR="$DEMO/site/vault"
cleanup() {
  "$ST" workspace close >/dev/null 2>&1 || true
  "$ST" dev vault --stop --workdir "$VAULT_DIR" >/dev/null 2>&1 || true
}
trap cleanup EXIT

echo "[demo-llm] local OpenBao dev server, keys init, workspace open"
eval "$("$ST" dev vault --workdir "$VAULT_DIR" | grep '^export ')"
export ST_CIPHER_DIR="$DEMO/site/cipher" ST_MOUNTPOINT="$DEMO/site/mnt" ST_STATE_DIR="$DEMO/site/state"
mkdir -p "$ST_MOUNTPOINT"
"$ST" keys init >/dev/null
"$ST" workspace open >/dev/null

[[ -f "$DEMO/src/model/config.json" ]] || "$ST" dev tiny-llm "$DEMO/src/model" >/dev/null
[[ -f "$DEMO/src/data/chat.jsonl" ]] || "$ST" dev text-dataset "$DEMO/src/data" >/dev/null
cp -r "$DEMO/src/model" "$ST_MOUNTPOINT/models/tiny-llm"

echo "[demo-llm] data import-text: PII redacted, duplicates dropped, counts only"
"$ST" data import-text "$DEMO/src/data/chat.jsonl" --name notes --workspace "$ST_MOUNTPOINT"

echo "[demo-llm] train-llm --dp (user-level, ε target 8) with 3 planted canaries"
OUT="$ST_MOUNTPOINT/runs/demo-llm"
"$ST" train-llm --model_name_or_path "$ST_MOUNTPOINT/models/tiny-llm" \
  --dataset "$ST_MOUNTPOINT/datasets/notes/train.jsonl" --output_dir "$OUT" \
  --overwrite_output_dir true --lora_rank 8 --learning_rate 1e-2 --max_steps "$STEPS" \
  --cutoff_len 128 --canaries 3 --dp true --target_epsilon 8 --quiet

echo "[demo-llm] audit canary: exposure and extraction, adapter vs base (report inside the workspace)"
"$ST" audit canary --adapter "$OUT" --base "$ST_MOUNTPOINT/models/tiny-llm" --candidates 200
"$ST" workspace close >/dev/null
if mountpoint -q "$ST_MOUNTPOINT"; then
  echo "[demo-llm] error: the workspace is still mounted" >&2
  exit 5
fi
echo "[demo-llm] the adapter exists only inside the encrypted store; open it with:"
echo "       ST_CIPHER_DIR=$ST_CIPHER_DIR ST_MOUNTPOINT=$ST_MOUNTPOINT secure-trainer workspace open"
