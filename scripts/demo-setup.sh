# Sourced by scripts/demo.sh, demo-llm.sh and docker-demo.sh: the site every demo starts from.
# Expects ST (the CLI) and DEMO (the demo's folder). `demo_site TAG` makes a fresh site: a local
# OpenBao dev server (127.0.0.1, AppRole + KV v2), the ST_* workspace env, `keys init` (a random
# passphrase in Vault KV v2 and a gocryptfs cipher dir). `demo_cleanup` closes the workspace and
# stops that server; callers run it from their EXIT trap. `demo_trainer_runtime` (below) sets
# POLICY and the trainer's interpreter.
VAULT_DIR="$DEMO/site/vault"

demo_cleanup() {
  "$ST" workspace close >/dev/null 2>&1 || true
  "$ST" dev vault --stop --workdir "$VAULT_DIR" >/dev/null 2>&1 || true
}

demo_site() {
  rm -rf "$DEMO/site"
  mkdir -p "$DEMO/site" "$DEMO/src"
  echo "[$1] local OpenBao dev server (127.0.0.1, AppRole + KV v2), keys init"
  eval "$("$ST" dev vault --workdir "$VAULT_DIR" | grep '^export ')"
  export ST_CIPHER_DIR="$DEMO/site/cipher" ST_MOUNTPOINT="$DEMO/site/mnt" ST_STATE_DIR="$DEMO/site/state"
  mkdir -p "$ST_MOUNTPOINT"
  "$ST" keys init >/dev/null
}

# The trainer's interpreter: the checkout's venv usually lives where the training uid (10001)
# cannot reach it (e.g. under /root), so the child runs from a root-owned read-only runtime
# (scripts/trainer-runtime.sh, cached; `run` checks it) and the demo keeps the shipped `dev`
# profile: the trainer drops to uid 10001. Sets POLICY and exports ST_TRAINER_PYTHON.
demo_trainer_runtime() {
  POLICY=dev
  ST_TRAINER_PYTHON="$(bash scripts/trainer-runtime.sh)"
  export ST_TRAINER_PYTHON
}
