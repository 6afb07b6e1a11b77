#!/usr/bin/env bash
# `make build-cpu` / `make build`: base image (make base) → hashed wheelhouse (make wheelhouse) →
# `docker build` of the Dockerfile for VARIANT=cpu|gpu → whole-image SBOM attached on top
# (scripts/sbom.sh: file + label digest; SBOM=0 skips it), tagged secure-trainer:<revision>-<variant>
# and secure-trainer:<variant>. Prints the image size; the last stdout line is the image tag.
set -euo pipefail
cd "$(dirname "$0")/.."
VARIANT="${VARIANT:-cpu}"
IMAGE="${IMAGE:-secure-trainer}"
DOCKER="${DOCKER:-docker}"
REVISION="${REVISION:-$(git rev-parse --short HEAD 2>/dev/null || echo dev)}"
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)"
bash scripts/dockerd.sh >/dev/null
BASE_IMAGE="${BASE_IMAGE:-$(bash scripts/base.sh | tail -1)}"
VARIANT="$VARIANT" bash scripts/wheelhouse.sh
tag="$IMAGE:$REVISION-$VARIANT"
start=$(date +%s)
mkdir -p build
# The legacy builder is what docker.io 20.10 offers without buildx; the Dockerfile needs nothing more.
DOCKER_BUILDKIT=0 "$DOCKER" build --quiet=false --force-rm \
  --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "VARIANT=$VARIANT" \
  --build-arg "VERSION=$VERSION" --build-arg "REVISION=$REVISION" \
  --build-arg "CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  --build-arg "SOURCE=${SOURCE:-https://example.invalid/secure-trainer}" \
  --iidfile "build/iid-$VARIANT" . >&2
built="$(cat "build/iid-$VARIANT")"
if [[ "${SBOM:-1}" == 1 ]]; then
  # The tags go to the image that carries the SBOM of the one just built, never to a bare one.
  bash scripts/sbom.sh "$built" "requirements/lock-$VARIANT.txt" "$tag" "$IMAGE:$VARIANT"
else
  "$DOCKER" tag "$built" "$tag" && "$DOCKER" tag "$built" "$IMAGE:$VARIANT"
fi
size=$("$DOCKER" image inspect -f '{{.Size}}' "$tag")
echo "[build] $tag: $((size / 1024 / 1024)) MiB ($size bytes), built in $(( $(date +%s) - start )) s" >&2
echo "$tag"
