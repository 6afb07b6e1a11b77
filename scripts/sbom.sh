#!/usr/bin/env bash
# Attach a whole-image CycloneDX SBOM to an image: `scripts/sbom.sh IMAGE_ID LOCK TAG...`.
# `docker save` the image to a tar (syft reads the archive, so it needs no docker socket), syft
# catalogs its Debian packages (dpkg database), the venv's distributions and Go binaries;
# supply/sbom.py adds the lock's wheel sha256 to every locked Python component and records
# IMAGE_ID; supply/sbom.Dockerfile adds the file and its sha256 as labels on top; the result gets
# every TAG. Syft comes from the hashed scan-tools lock (.venv-scan). Offline: no update check.
# Must never: tag an image whose SBOM was not generated from IMAGE_ID.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $# -ge 3 ]] || { echo "usage: scripts/sbom.sh IMAGE_ID LOCK TAG..." >&2; exit 2; }
described="$1" lock="$2"
shift 2
DOCKER="${DOCKER:-docker}"
SCAN_VENV="${SCAN_VENV:-.venv-scan}"
PYTHON="${PYTHON:-$( [[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3 )}"
SCAN_TOOLS_ONLY=1 bash scripts/scan.sh >/dev/null  # (re)installs the hashed tools if stale
work="$(mktemp -d "${TMPDIR:-/tmp}/st-sbom.XXXXXX")"
trap 'rm -rf "$work"' EXIT
start=$(date +%s)
"$DOCKER" save "$described" -o "$work/image.tar"
SYFT_CHECK_FOR_APP_UPDATE=false "$SCAN_VENV/bin/syft" scan -q \
  "docker-archive:$work/image.tar" --source-name secure-trainer \
  -o "cyclonedx-json=$work/syft.cdx.json"
rm -f "$work/image.tar"
mkdir -p "$work/ctx"
cp supply/sbom.Dockerfile "$work/ctx/Dockerfile"
"$PYTHON" -m supply.sbom finalize --syft "$work/syft.cdx.json" --lock "$lock" \
  --image-id "$described" --out "$work/ctx/sbom.cdx.json" >&2
chmod 0644 "$work/ctx/sbom.cdx.json"
digest=$(sha256sum "$work/ctx/sbom.cdx.json" | cut -d' ' -f1)
tags=()
for t in "$@"; do tags+=(-t "$t"); done
DOCKER_BUILDKIT=0 "$DOCKER" build -q --force-rm \
  --build-arg "DESCRIBED=$described" --build-arg "SBOM_SHA256=$digest" "${tags[@]}" \
  "$work/ctx" >&2
echo "[sbom] sha256 $digest for $described, attached in $(( $(date +%s) - start )) s" >&2
