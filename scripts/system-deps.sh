#!/usr/bin/env bash
# Debian packages the trainer's secure envelope and its tests need. Idempotent.
set -euo pipefail
pkgs=(gocryptfs fuse3 auditd docker.io debootstrap iproute2 libtcmalloc-minimal4)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# FUSE: let a root-made mount be visible to the unprivileged training user (see README).
if [ -f /etc/fuse.conf ] && ! grep -q '^user_allow_other' /etc/fuse.conf; then
  echo user_allow_other >> /etc/fuse.conf
fi
