# Sourced by scripts/demo.sh, demo-llm.sh and docker-demo.sh: the site every demo starts from.
# Expects ST (the CLI) and DEMO (the demo's folder). `demo_site TAG` makes a fresh site: a local
# OpenBao dev server (127.0.0.1, AppRole + KV v2), the ST_* workspace env, `keys init` (a random
# passphrase in Vault KV v2 and a gocryptfs cipher dir). `demo_cleanup` closes the workspace and
# stops that server; callers run it from their EXIT trap. `demo_policy` sets POLICY (below).
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

# The venv of a native checkout lives where the unprivileged uid may not reach it (e.g. /root):
# then the demo trains as the invoking user, under a site profile that only warns about it.
demo_policy() {
  POLICY=dev
  if ! "${ST%/secure-trainer}/python" -c 'import sys; from pathlib import Path; from entrypoint.run.trainer_child import usable_by; sys.exit(0 if usable_by(Path(sys.executable), 10001) else 1)'; then
    export ST_TRAIN_UID=none
    POLICY="$DEMO/site/native-dev.yaml"
    printf 'name: native-dev\ndescription: native demo, venv not reachable by the training uid\nextends: dev\noverride:\n  - id: process.non_root\n    action: warn\n' > "$POLICY"
  fi
}
