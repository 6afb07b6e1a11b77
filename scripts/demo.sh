#!/usr/bin/env bash
# `make demo`: the whole secure lifecycle natively, on embedded defaults — a local OpenBao dev
# server, a tiny random SD1.x model and a synthetic dataset, imported through the sanitizer into a
# gocryptfs workspace, trained by `secure-trainer run`, sealed, unmounted, wiped. Needs root (FUSE).
set -euo pipefail
cd "$(dirname "$0")/.."
ST="$(pwd)/${VENV:-.venv}/bin/secure-trainer"
DEMO="$(pwd)/${DEMO_DIR:-.demo}"
STEPS="${DEMO_STEPS:-30}"
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 DO_NOT_TRACK=1

source scripts/demo-setup.sh
trap demo_cleanup EXIT
demo_site demo
echo "[demo] trainer runtime: a root-owned copy uid 10001 can run (built once, cached)"
demo_trainer_runtime  # sets POLICY (dev) and ST_TRAINER_PYTHON

[[ -d "$DEMO/src/model/diffusers" ]] || "$ST" dev tiny-model "$DEMO/src/model" >/dev/null
[[ -d "$DEMO/src/data/10_subject" ]] || "$ST" dev dataset "$DEMO/src/data" >/dev/null
# Non-members for the membership audit: same distribution, images the LoRA never sees.
[[ -d "$DEMO/src/holdout/10_subject" ]] || "${ST%/secure-trainer}/python" -c \
  'import sys; from pathlib import Path; from secure_trainer.devtools.synthetic_dataset import make_holdout; make_holdout(Path(sys.argv[1]))' \
  "$DEMO/src/holdout"

echo "[demo] import: sanitize the dataset into the encrypted workspace"
"$ST" workspace open >/dev/null
cp -r "$DEMO/src/model/diffusers" "$ST_MOUNTPOINT/models/tiny"
"$ST" data import "$DEMO/src/data" --name demo --workspace "$ST_MOUNTPOINT"
"$ST" data import "$DEMO/src/holdout" --name demo-holdout --workspace "$ST_MOUNTPOINT" >/dev/null
"$ST" workspace close >/dev/null


echo "[demo] run: policy → Vault → key → mount → audit → train → seal → unmount → wipe"
"$ST" run --policy "$POLICY" --pretrained_model_name_or_path models/tiny \
  --train_data_dir datasets/demo --caption_extension .txt --resolution 64 \
  --network_dim 8 --network_alpha 8 --learning_rate 1e-3 --train_batch_size 2 \
  --max_train_steps "$STEPS" --cache_latents --seed 42 --output_name demo-lora

echo "[demo] audit mia: membership inference on the demo LoRA, report kept inside the workspace"
"$ST" workspace open >/dev/null
LORA="$(ls -t "$ST_MOUNTPOINT"/runs/*/demo-lora.safetensors | head -n 1)"
"$ST" audit mia --lora "$LORA" --base "$ST_MOUNTPOINT/models/tiny" \
  --members "$ST_MOUNTPOINT/datasets/demo" --holdout "$ST_MOUNTPOINT/datasets/demo-holdout" \
  --caption-extension .txt --timesteps 8 --noises 2 --out "$(dirname "$LORA")/audit"
# Who trained: the run's own `train_start` record in the app audit log (hash-chained, in the
# store). The demo fails if it was root.
"${ST%/secure-trainer}/python" -c 'import json, sys
uid = [r for r in map(json.loads, open(sys.argv[1])) if r["event"] == "train_start"][-1]["fields"]["uid"]
print("[demo] the trainer ran as uid", uid, "(app audit log, train_start)")
sys.exit(1 if uid == 0 else 0)' \
  "$ST_MOUNTPOINT/audit/app.jsonl"
"$ST" workspace close >/dev/null
if mountpoint -q "$ST_MOUNTPOINT"; then
  echo "[demo] error: the workspace is still mounted" >&2
  exit 5
fi

echo "[demo] the LoRA exists only inside the encrypted store; open it with:"
echo "       ST_CIPHER_DIR=$ST_CIPHER_DIR ST_MOUNTPOINT=$ST_MOUNTPOINT secure-trainer workspace open"
