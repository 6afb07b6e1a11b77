#!/usr/bin/env bash
# `make base`: a local Debian bookworm base image without any registry — `debootstrap
# --variant=minbase` into a temp root, packed as a tarball, then `docker import`. The tarball is
# cached (ST_CACHE, default /var/cache/secure-trainer) so a second run only re-imports it.
# Prints the image reference on its last line. Needs root, debootstrap and a Debian mirror.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${ST_CACHE:-/var/cache/secure-trainer}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE=bookworm
BASE_TAG="${BASE_TAG:-secure-trainer-base:$SUITE}"
# coupling: bump the version when the rootfs recipe below changes, so the cached tarball is redone.
RECIPE=2
TARBALL="$CACHE/base-$SUITE-minbase-r$RECIPE.tar"
DOCKER="${DOCKER:-docker}"

mkdir -p "$CACHE"
if ! "$DOCKER" image inspect "$BASE_TAG" >/dev/null 2>&1; then
  if [[ ! -s "$TARBALL" ]]; then
    root="$(mktemp -d "$CACHE/rootfs.XXXXXX")"
    trap 'rm -rf --one-file-system "$root"' EXIT
    echo "[base] debootstrap --variant=minbase $SUITE ($MIRROR)" >&2
    debootstrap --variant=minbase "$SUITE" "$root" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
      || { tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
    # Security and point-release updates reach `apt-get upgrade` in the Dockerfile.
    cat >"$root/etc/apt/sources.list" <<SRC
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb ${MIRROR%/debian}/debian-security $SUITE-security main
SRC
    # An image is not a booted system: no docs/man/locales beyond C, no apt caches.
    cat >"$root/etc/dpkg/dpkg.cfg.d/01-image-nodoc" <<'CFG'
path-exclude /usr/share/doc/*
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/doc/*/copyright
CFG
    printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
      >"$root/etc/apt/apt.conf.d/01-image-norecommends"
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
      "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/* \
      "$root"/var/log/* "$root"/root/.bash_history
    # Reproducible-ish tarball: sorted, numeric owners, fixed mtime of nothing in particular.
    tar --numeric-owner --sort=name -C "$root" -cf "$TARBALL.part" .
    mv "$TARBALL.part" "$TARBALL"
  fi
  echo "[base] docker import $TARBALL -> $BASE_TAG" >&2
  "$DOCKER" import --change 'CMD ["/bin/bash"]' \
    --message "debootstrap --variant=minbase $SUITE" "$TARBALL" "$BASE_TAG" >/dev/null
fi
echo "$BASE_TAG"
