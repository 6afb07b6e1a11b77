#!/usr/bin/env bash
# `make docker-demo`: the same embedded demo as `make demo`, but `secure-trainer run` runs inside
# the CPU image. Host side (native CLI, as in scripts/demo.sh): a dev OpenBao on 127.0.0.1, keys
# init, the tiny model and the synthetic dataset imported into the gocryptfs cipher dir. Container
# side: the production flags (root start with a minimal cap set, no-new-privileges, our seccomp
# profile, read-only root, tmpfs /tmp, /dev/fuse, AppRole files read-only), --network host only
# so the container reaches the loopback dev Vault. Needs root, docker and `make build-cpu`.
set -euo pipefail
cd "$(dirname "$0")/.."
ST="$(pwd)/${VENV:-.venv}/bin/secure-trainer"
DEMO="$(pwd)/${DEMO_DIR:-.demo}/docker"
STEPS="${DEMO_STEPS:-30}"
IMAGE_TAG="${IMAGE_TAG:-${IMAGE:-secure-trainer}:cpu}"
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 DO_NOT_TRACK=1

started="$(bash scripts/dockerd.sh)"
docker image inspect "$IMAGE_TAG" >/dev/null 2>&1 || IMAGE_TAG="$(VARIANT=cpu bash scripts/build.sh | tail -1)"

source scripts/demo-setup.sh
cleanup() {
  demo_cleanup
  if [[ "$started" == started* ]]; then kill "${started#started }" 2>/dev/null || true; fi
}
trap cleanup EXIT
demo_site docker-demo
[[ -d "$DEMO/src/model/diffusers" ]] || "$ST" dev tiny-model "$DEMO/src/model" >/dev/null
[[ -d "$DEMO/src/data/10_subject" ]] || "$ST" dev dataset "$DEMO/src/data" >/dev/null

echo "[docker-demo] import (host): sanitize the dataset into the encrypted workspace"
"$ST" workspace open >/dev/null
cp -r "$DEMO/src/model/diffusers" "$ST_MOUNTPOINT/models/tiny"
"$ST" data import "$DEMO/src/data" --name demo --workspace "$ST_MOUNTPOINT" >/dev/null
"$ST" workspace close >/dev/null

echo "[docker-demo] run in $IMAGE_TAG: policy → Vault → key → mount → audit → train → seal → unmount → wipe"
docker run --rm --network host \
  --user 0:0 --cap-drop ALL \
  --cap-add SYS_ADMIN --cap-add SETUID --cap-add SETGID --cap-add SETPCAP \
  --cap-add CHOWN --cap-add FOWNER --cap-add DAC_OVERRIDE --cap-add KILL \
  --security-opt no-new-privileges --security-opt "seccomp=$(pwd)/policies/seccomp.json" \
  --device /dev/fuse --read-only --tmpfs /tmp:rw,noexec,nosuid \
  -v "$ST_CIPHER_DIR:/cipher" \
  -v "$ST_VAULT_ROLE_ID_FILE:/run/secrets/role_id:ro" \
  -v "$ST_VAULT_SECRET_ID_FILE:/run/secrets/secret_id:ro" \
  -e VAULT_ADDR -e ST_VAULT_AUTH=approle \
  -e ST_VAULT_ROLE_ID_FILE=/run/secrets/role_id -e ST_VAULT_SECRET_ID_FILE=/run/secrets/secret_id \
  "$IMAGE_TAG" run --policy dev --pretrained_model_name_or_path models/tiny \
  --train_data_dir datasets/demo --caption_extension .txt --resolution 64 \
  --network_dim 8 --network_alpha 8 --learning_rate 1e-3 --train_batch_size 2 \
  --max_train_steps "$STEPS" --cache_latents --seed 42 --output_name demo-lora

echo "[docker-demo] the LoRA exists only inside the encrypted store ($ST_CIPHER_DIR); open it with:"
echo "       ST_CIPHER_DIR=$ST_CIPHER_DIR ST_MOUNTPOINT=$ST_MOUNTPOINT secure-trainer workspace open"
