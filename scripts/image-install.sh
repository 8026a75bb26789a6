#!/usr/bin/env bash
# Installs what `make image` and `make image-test` need on a Debian 12 machine, idempotently:
# podman and runc from Debian, the containers.conf settings this machine needs, and a local
# Debian 12 base image built with debootstrap and imported with `podman import` (no image
# registry is needed: the Dockerfile's BASE is this local image).
#
#   scripts/image-install.sh                 # podman + settings + base image
#   SOCKSPLICE_BASE_IMAGE=name:tag ...       # the base image name (default below)
set -euo pipefail

BASE_IMAGE="${SOCKSPLICE_BASE_IMAGE:-localhost/socksplice-base:bookworm}"
MIRROR="${SOCKSPLICE_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
CONF=/etc/containers/containers.conf.d/50-socksplice.conf

log() { printf 'image-install: %s\n' "$*" >&2; }

install_packages() {
  local wanted=(podman runc debootstrap) missing=() p
  for p in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]} == 0)); then log "apt: podman, runc and debootstrap present"; return; fi
  log "apt: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Virtual machines of this kind have no systemd user session and no journald socket for
# podman: cgroups through cgroupfs, events into a file, and runc (crun lacks cgroup v1 here).
write_conf() {
  mkdir -p "$(dirname "$CONF")"
  cat >"$CONF.new" <<'CONFEOF'
# Written by socksplice scripts/image-install.sh
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
CONFEOF
  mv "$CONF.new" "$CONF"
  log "conf: $CONF"
}

import_base() {
  if podman image exists "$BASE_IMAGE"; then log "base: $BASE_IMAGE present"; return; fi
  local dir
  dir="$(mktemp -d /var/tmp/socksplice-base.XXXXXX)"
  trap 'rm -rf "$dir"' RETURN
  log "base: debootstrap --variant=minbase bookworm from $MIRROR"
  debootstrap --variant=minbase bookworm "$dir" "$MIRROR" >/dev/null
  # Lean from the first layer: no package docs, manuals, translations or info pages, now or from
  # any package installed later (dpkg path-exclude rules, kept in the image), and no apt caches.
  printf 'path-exclude=/usr/share/%s/*\n' doc man locale info >"$dir/etc/dpkg/dpkg.cfg.d/01-socksplice-slim"
  printf 'path-include=/usr/share/doc/*/copyright\n' >>"$dir/etc/dpkg/dpkg.cfg.d/01-socksplice-slim"
  find "$dir"/usr/share/doc -mindepth 1 ! -name copyright ! -type d -delete
  rm -rf "$dir"/usr/share/man/* "$dir"/usr/share/locale/* "$dir"/usr/share/info/*
  rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/cache/apt/*.bin "$dir"/var/lib/apt/lists/* \
    "$dir"/var/log/* "$dir"/var/cache/debconf/*-old
  tar -C "$dir" -c . | podman import --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
  log "base: imported $BASE_IMAGE"
}

install_packages
write_conf
import_base
log "done"
