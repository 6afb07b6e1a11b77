#!/usr/bin/env bash
# `make trainer-runtime`: the interpreter a native `run` starts its training child with
# (ST_TRAINER_PYTHON=$ST_RUNTIME/bin/python). A native checkout's venv usually lives where the
# training uid (10001) cannot reach it (e.g. /root/.pyenv, a 0700 home), so this builds a venv
# under a root-owned 0755 path (default /opt/secure-trainer/runtime): its base is a root-owned
# interpreter of the same Python version that uid 10001 can reach, its site-packages a copy of
# the dev venv's (installed by `make install` with the lock as constraints) without the editable
# hook, plus a non-editable install of this checkout. Everything ends root-owned and unwritable by
# group and others; `run` refuses a runtime that is not (entrypoint/run/runtime.py).
# Cached: the package copy is redone only when the lock, pyproject.toml or the venv's package set
# change, the project install only when its sources change. Needs root. Prints the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV_PY="$(pwd)/${VENV:-.venv}/bin/python"
RUNTIME="${ST_RUNTIME:-/opt/secure-trainer/runtime}"
LOCK="${DEV_LOCK:-requirements/lock-cpu.txt}"
TRAIN_UID="${ST_RUNTIME_UID:-10001}"
log() { echo "[trainer-runtime] $*" >&2; }

[[ $EUID -eq 0 ]] || { log "needs root (the runtime must be root-owned)"; exit 2; }
[[ -x "$VENV_PY" ]] || { log "no venv at ${VENV:-.venv}: run make install first"; exit 2; }
umask 022

# The base: the venv's own base interpreter if uid $TRAIN_UID may run it safely, else a system
# interpreter of the same major.minor (the site-packages hold cp3XY extension modules).
BASE="$("$VENV_PY" - "$TRAIN_UID" <<'PY'
import os, sys
from pathlib import Path
from entrypoint.run.runtime import runtime_problem
uid = int(sys.argv[1])
ver = f"python{sys.version_info.major}.{sys.version_info.minor}"
for cand in (os.path.realpath(sys._base_executable), f"/usr/bin/{ver}", f"/usr/local/bin/{ver}"):
    if os.path.isfile(cand) and runtime_problem(Path(cand), uid) is None:
        print(cand)
        break
PY
)"
if [[ -z "$BASE" ]]; then
  log "no root-owned python$("$VENV_PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])') reachable by uid $TRAIN_UID (install the distribution's python3 package)"
  exit 2
fi
SITE_REL="$("$VENV_PY" -c 'import sys; print("lib/python%d.%d/site-packages" % sys.version_info[:2])')"
SRC_SITE="$("$VENV_PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"

# Cache keys: what the package copy depends on, and what the project install depends on.
PKG_KEY="$( { echo "$BASE"; sha256sum "$LOCK" pyproject.toml;
  "$VENV_PY" -c 'import importlib.metadata as m; print(sorted(f"{d.name}=={d.version}" for d in m.distributions()))'; } | sha256sum | cut -c1-16)"
SRC_KEY="$(find pyproject.toml entrypoint secure_trainer -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 \
  | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)"

if [[ -f "$RUNTIME/.pkg-key" && "$(cat "$RUNTIME/.pkg-key")" == "$PKG_KEY" \
      && -f "$RUNTIME/.src-key" && "$(cat "$RUNTIME/.src-key")" == "$SRC_KEY" ]]; then
  echo "$RUNTIME/bin/python"
  exit 0
fi

install -d -m 0755 -o root -g root "$(dirname "$RUNTIME")"
if [[ ! -f "$RUNTIME/.pkg-key" || "$(cat "$RUNTIME/.pkg-key")" != "$PKG_KEY" ]]; then
  log "copying the venv's packages to $RUNTIME (once per lock/package change)"
  rm -rf "$RUNTIME"
  "$BASE" -m venv --without-pip "$RUNTIME"
  cp -a --reflink=auto "$SRC_SITE/." "$RUNTIME/$SITE_REL/"
  # The editable hook points into this checkout: the runtime gets its own copy below.
  rm -rf "$RUNTIME/$SITE_REL"/__editable__*secure_trainer* "$RUNTIME/$SITE_REL"/secure_trainer-*.dist-info
  echo "$PKG_KEY" > "$RUNTIME/.pkg-key"
  rm -f "$RUNTIME/.src-key"
fi

log "installing this checkout (non-editable) into $RUNTIME"
build="$(mktemp -d)"
trap 'rm -rf "$build"' EXIT
# A copy of the sources: setuptools' build files never land in the checkout.
cp -r pyproject.toml entrypoint secure_trainer "$build/"
find "$build" -name __pycache__ -prune -exec rm -rf {} +
if ! out="$("$RUNTIME/bin/python" -m pip install -q --no-deps --no-build-isolation --no-index \
      --force-reinstall --disable-pip-version-check "$build" 2>&1)"; then
  echo "$out" >&2  # setuptools' deprecation notes only when the install fails
  exit 1
fi

chown -R root:root "$RUNTIME"
chmod -R a+rX,go-w "$RUNTIME"
# The same check `run` makes, then the trainer's imports as the training uid itself.
"$VENV_PY" -c 'import sys; from pathlib import Path; from entrypoint.run.runtime import check_trainer_python; check_trainer_python(Path(sys.argv[1]), int(sys.argv[2]))' \
  "$RUNTIME/bin/python" "$TRAIN_UID"
(cd / && setpriv --reuid="$TRAIN_UID" --regid="$TRAIN_UID" --clear-groups -- \
  "$RUNTIME/bin/python" -I -c 'import entrypoint.cli, secure_trainer.train.loop, torch, diffusers, peft')
echo "$SRC_KEY" > "$RUNTIME/.src-key"
chmod 0644 "$RUNTIME/.src-key"
echo "$RUNTIME/bin/python"
