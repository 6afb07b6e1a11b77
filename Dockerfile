# secure-trainer — hardened, Kohya-compatible LoRA trainer image.
#
# Build: `make build-cpu` (CI, torch CPU) or `make build` (GPU, CUDA torch wheels). Both feed a
# hashed wheelhouse from the host (`make wheelhouse`), so the build needs no PyPI access and no
# TLS inside `docker build`; only the Debian mirror (apt) for the two `apt-get` steps.
# coupling: scripts/wheelhouse.sh stages the wheelhouse at .wheelhouse/<variant>/ and the lock at
# requirements/lock-<variant>.txt; scripts/inspect_image.py checks what this file promises
# (user, setuid allow-list, no pip, no caches); policies/ is read through ST_POLICY_DIR.

# checkov:skip=CKV_DOCKER_2: a batch training job, not a service; no endpoint to probe.
# checkov:skip=CKV_DOCKER_7: the base is a build arg: a local image id or a digest.

# Locally imported debootstrap base (`make base`) by default on air-gapped hosts; sites with a
# registry pass a digest-pinned reference, e.g. debian:bookworm-slim@sha256:...
ARG BASE_IMAGE=debian:bookworm-slim

# ---------------------------------------------------------------------------------------------
# builder: the only stage with pip and setuptools. It installs the hashed wheelhouse into
# /opt/venv (--no-index --require-hashes: nothing unpinned or unhashed can enter), builds our own
# package into the same venv, then strips pip/setuptools/wheel so the copied venv holds none.
FROM ${BASE_IMAGE} AS builder
ARG VARIANT=cpu
ENV DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
COPY requirements/lock-${VARIANT}.txt /build/lock.txt
COPY .wheelhouse/${VARIANT}/ /build/wheelhouse/
# SECURITY: --require-hashes makes every wheel match the lock byte for byte; --no-deps keeps pip
# from reaching past the lock, and `pip check` proves the lock is complete. torch's C++ tests,
# headers, cmake files and test/protoc binaries (~190 MB) are not needed to train; they go.
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-index --no-deps --require-hashes \
        --find-links /build/wheelhouse -r /build/lock.txt \
 && /opt/venv/bin/pip check \
 && sp="$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" \
 && rm -rf "$sp/torch/test" "$sp/torch/include" "$sp/torch/share/cmake" \
 && find "$sp/torch/bin" -mindepth 1 ! -name torch_shm_manager -exec rm -rf {} +
# The CenterFace face model (scripts/fetch-face-model.sh, by pinned hash; the code checks the
# hash again at every load: secure_trainer/privacy/face_model.py).
COPY .wheelhouse/models/centerface.onnx /opt/venv/share/secure-trainer/models/centerface.onnx
# Source after dependencies: a code change does not re-install torch.
COPY pyproject.toml /build/src/
COPY entrypoint/ /build/src/entrypoint/
COPY secure_trainer/ /build/src/secure_trainer/
RUN /opt/venv/bin/pip install --no-index --no-deps --no-build-isolation /build/src \
 && /opt/venv/bin/pip uninstall -y -q pip setuptools wheel \
 && find /opt/venv -name '__pycache__' -path '*/pip/*' -prune -exec rm -rf {} + \
 && rm -f /opt/venv/bin/pip* /opt/venv/bin/wheel /opt/venv/bin/activate* /opt/venv/bin/Activate.ps1

# ---------------------------------------------------------------------------------------------
# runtime: python, the FUSE/gocryptfs/auditd tools the lifecycle drives, tini as PID 1, the venv
# and the policies. No compiler, no pip, no curl; setuid bits only on fusermount3.
FROM ${BASE_IMAGE} AS runtime
ARG TRAINER_UID=10001
ARG TRAINER_GID=10001
ENV DEBIAN_FRONTEND=noninteractive
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 gocryptfs fuse3 auditd tini ca-certificates \
    libtcmalloc-minimal4 \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/cache/debconf/*-old /var/log/* \
           /usr/share/doc/* /usr/share/man/* /root/.cache
# SECURITY: the workspace is mounted by root with -allow_other so the training uid can read it;
# user_allow_other also lets a non-root start (USER below) mount through setuid fusermount3.
# Every other setuid/setgid bit goes (su, mount, passwd, chage, unix_chkpwd, ...), and no
# directory but /tmp (a tmpfs at run time) stays world-writable (/var/tmp, /run/lock).
# coupling: scripts/inspect_image.py SETID_ALLOW lists fusermount3 only.
RUN echo user_allow_other >> /etc/fuse.conf \
 && find / -xdev -type f -perm /6000 ! -path /usr/bin/fusermount3 -exec chmod ug-s {} + \
 && groupadd --system --gid "${TRAINER_GID}" trainer \
 && useradd --system --uid "${TRAINER_UID}" --gid trainer --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin trainer \
 && mkdir -p /workspace /cipher /run/secrets /state \
 && chmod 0755 /workspace /var/tmp /run/lock \
 && chmod 0711 /cipher \
 && chmod 0700 /state
COPY --from=builder /opt/venv /opt/venv
COPY policies/ /opt/secure-trainer/policies/
# The supervisor's state (run marker, loaded kernel rules, pre-mount journal) must outlive a
# `docker kill`, so the next start recovers the dead run: a volume, named in the documented
# `docker run -v secure-trainer-state:/state` (root-only 0700; never plaintext data). Without -v,
# docker gives an anonymous volume, still writable under --read-only.
VOLUME ["/state"]
# No secret here: only locations. Vault credentials arrive as read-only files at run time.
# ST_IN_CONTAINER=1: the image owns /tmp, /var/tmp and the caches, so a run wipes them at its end
# (coupling: entrypoint/run/wipe.py in_container; never trusted from /.dockerenv).
ENV PATH=/opt/venv/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    ST_IN_CONTAINER=1 \
    LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ST_POLICY_DIR=/opt/secure-trainer/policies \
    ST_CIPHER_DIR=/cipher \
    ST_MOUNTPOINT=/workspace \
    ST_STATE_DIR=/state \
    HF_HUB_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    DO_NOT_TRACK=1
# Sanity check: the console script starts and the heavy imports resolve in this runtime.
RUN secure-trainer --version \
 && python -c "import torch, diffusers, peft, hvac, cv2, celpy; print('torch', torch.__version__)" \
 && python -c "from secure_trainer.privacy.faces import FaceBlurrer; assert FaceBlurrer().detector == 'centerface'"
# Labels last: the revision and date change on every build and must not invalidate the
# cached apt and venv layers above.
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=https://example.invalid/secure-trainer
ARG VARIANT=cpu
LABEL org.opencontainers.image.title="secure-trainer" \
      org.opencontainers.image.description="Hardened Kohya-compatible LoRA trainer (${VARIANT})" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0"
# Non-root by default. The production run passes `--user 0:0` with a minimal cap set so root
# mounts the workspace and then drops to TRAINER_UID for training (see docs/container.md).
USER ${TRAINER_UID}:${TRAINER_GID}
WORKDIR /
ENTRYPOINT ["tini", "--", "secure-trainer"]
CMD ["run"]
