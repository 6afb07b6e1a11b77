# The SBOM stage (scripts/sbom.sh): the image below plus its CycloneDX SBOM as a file, and the
# file's sha256 and the described image's id as labels. One COPY layer, nothing else changes
# (user, entrypoint, env are inherited), so the SBOM still describes every package of this image.
# coupling: supply/sbom.py (check), scripts/scan.sh, tests/container/test_image_sbom.py.
# checkov:skip=CKV_DOCKER_2: a batch training job, not a service; no endpoint to probe.
# checkov:skip=CKV_DOCKER_3: USER is inherited from the image below (trainer, uid 10001).
# checkov:skip=CKV_DOCKER_7: the base is the image id just built (sha256:...), never a tag.
ARG DESCRIBED
FROM ${DESCRIBED}
ARG SBOM_SHA256
ARG DESCRIBED
COPY sbom.cdx.json /usr/share/secure-trainer/sbom.cdx.json
LABEL io.secure-trainer.sbom.path="/usr/share/secure-trainer/sbom.cdx.json" \
      io.secure-trainer.sbom.sha256="${SBOM_SHA256}" \
      io.secure-trainer.sbom.image="${DESCRIBED}" \
      io.secure-trainer.sbom.format="CycloneDX JSON (syft 1.18.1, lock hashes)"
