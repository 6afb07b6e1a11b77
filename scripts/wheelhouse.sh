#!/usr/bin/env bash
# `make wheelhouse VARIANT=cpu|gpu`: download every wheel of requirements/lock-<variant>.txt into
# a cache keyed on the lock's sha256 (ST_CACHE, default /var/cache/secure-trainer), verified
# against the lock's hashes, then stage it (hard links) at .wheelhouse/<variant>/ for the build
# context. A cache hit needs no network. Regenerate the lock with `python scripts/lock.py <variant>`.
set -euo pipefail
cd "$(dirname "$0")/.."
VARIANT="${VARIANT:-cpu}"
CACHE="${ST_CACHE:-/var/cache/secure-trainer}"
LOCK="requirements/lock-$VARIANT.txt"
PYTHON="${PYTHON:-$( [[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3 )}"
[[ -f "$LOCK" ]] || { echo "missing $LOCK: run python scripts/lock.py $VARIANT" >&2; exit 2; }
key="$(sha256sum "$LOCK" | cut -c1-16)"
house="$CACHE/wheelhouse-$VARIANT-$key"
if [[ ! -f "$house/.complete" ]]; then
  echo "[wheelhouse] downloading $LOCK into $house" >&2
  mkdir -p "$house"
  # SECURITY: --require-hashes: a wheel that does not match the lock is refused, not cached.
  "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --require-hashes \
    --dest "$house" -r "$LOCK"
  touch "$house/.complete"
fi
stage=".wheelhouse/$VARIANT"
rm -rf "$stage"
mkdir -p "$stage"
# Hard links when the cache shares the filesystem (instant), copies otherwise.
cp -al "$house"/*.whl "$stage"/ 2>/dev/null || cp "$house"/*.whl "$stage"/
# The face detector's model for the image (Dockerfile copies it), by pinned hash, cached.
PYTHON="$PYTHON" bash scripts/fetch-face-model.sh .wheelhouse/models
echo "[wheelhouse] $(ls "$stage" | wc -l) wheels, $(du -sh "$stage" | cut -f1) at $stage (lock $key)" >&2
