#!/usr/bin/env bash
# `make demo-llm`: private LoRA fine-tuning of a language model on embedded defaults — a local
# OpenBao dev server, a tiny random Llama and a synthetic text corpus with subjects and planted
# PII, imported through the text sanitizer into a gocryptfs workspace, then fine-tuned with
# user-level DP and canaries by `secure-trainer run --trainer llm` (policy, Vault, mount, audit,
# train, seal, unmount, wipe), then the canary memorization audit on the sealed adapter.
# Needs root (FUSE).
set -euo pipefail
cd "$(dirname "$0")/.."
ST="$(pwd)/${VENV:-.venv}/bin/secure-trainer"
DEMO="$(pwd)/${DEMO_DIR:-.demo-llm}"
STEPS="${DEMO_STEPS:-40}"
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 DO_NOT_TRACK=1

source scripts/demo-setup.sh
trap demo_cleanup EXIT

demo_site demo-llm
echo "[demo-llm] trainer runtime: a root-owned copy uid 10001 can run (built once, cached)"
demo_trainer_runtime  # sets POLICY (dev) and ST_TRAINER_PYTHON
"$ST" workspace open >/dev/null

[[ -f "$DEMO/src/model/config.json" ]] || "$ST" dev tiny-llm "$DEMO/src/model" >/dev/null
[[ -f "$DEMO/src/data/chat.jsonl" ]] || "$ST" dev text-dataset "$DEMO/src/data" >/dev/null
cp -r "$DEMO/src/model" "$ST_MOUNTPOINT/models/tiny-llm"

echo "[demo-llm] data import-text: PII redacted, duplicates dropped, counts only"
"$ST" data import-text "$DEMO/src/data/chat.jsonl" --name notes --workspace "$ST_MOUNTPOINT"
"$ST" workspace close >/dev/null

# The config: LLaMA-Factory keys, paths relative to the workspace; `run` picks output_dir.
cat > "$DEMO/site/llm.yaml" <<YAML
model_name_or_path: models/tiny-llm
dataset: datasets/notes/train.jsonl
lora_rank: 8
learning_rate: 0.01
max_steps: $STEPS
cutoff_len: 128
canaries: 3
dp: true
target_epsilon: 8
YAML
echo "[demo-llm] run --trainer llm: policy → Vault → key → mount → audit → train-llm --dp (ε target 8, 3 canaries) → seal → unmount → wipe"
"$ST" run --policy "$POLICY" --trainer llm "$DEMO/site/llm.yaml" --quiet

echo "[demo-llm] audit canary: exposure and extraction, adapter vs base (report inside the workspace)"
"$ST" workspace open >/dev/null
ADAPTER="$(dirname "$(ls -t "$ST_MOUNTPOINT"/runs/*/adapter_model.safetensors | head -n 1)")"
"$ST" audit canary --adapter "$ADAPTER" --base "$ST_MOUNTPOINT/models/tiny-llm" --candidates 200 \
  --out "$ADAPTER/audit"
"$ST" audit verify --manifest "$ADAPTER/manifest.json" >/dev/null
"$ST" workspace close >/dev/null
if mountpoint -q "$ST_MOUNTPOINT"; then
  echo "[demo-llm] error: the workspace is still mounted" >&2
  exit 5
fi
echo "[demo-llm] the adapter, its manifest and the canary report exist only inside the encrypted store; open it with:"
echo "       ST_CIPHER_DIR=$ST_CIPHER_DIR ST_MOUNTPOINT=$ST_MOUNTPOINT secure-trainer workspace open"
