#!/usr/bin/env bash
# Installs what `socksplice kernel-matrix` needs on the host (Debian 12): qemu (TCG, no KVM
# needed), debootstrap for the guest root filesystem, e2fsprogs for `mkfs.ext4 -d`, and dpkg-dev
# tools already present on Debian. The guest image itself is built by the matrix on first use
# and cached under /var/cache/socksplice/matrix. Idempotent: re-running is quick.
#
#   scripts/kernel-matrix-install.sh
#   SOCKSPLICE_SKIP_APT=1 ...     # skip apt (packages already present)
set -euo pipefail

APT_PACKAGES=(
  qemu-system-x86     # qemu-system-x86_64 (TCG)
  debootstrap         # the guest's Debian root filesystem
  e2fsprogs           # mkfs.ext4 -d: pack a directory into an image without a loop mount
  apt dpkg            # apt-get download, dpkg-deb -x for the kernels' packages
  kmod                # depmod for the guest's modules
)

log() { printf 'kernel-matrix-install: %s\n' "$*" >&2; }

if [[ "${SOCKSPLICE_SKIP_APT:-0}" == 1 ]]; then log "apt: skipped (SOCKSPLICE_SKIP_APT=1)"; exit 0; fi
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
export DEBIAN_FRONTEND=noninteractive
# The matrix picks the newest cloud kernels from apt's lists: refresh them when they know none.
if ((${#missing[@]} > 0)) || [[ -z "$(apt-cache search --names-only '^linux-image-6\.12\.[0-9]+\+deb12-cloud-amd64$')" ]]; then
  apt-get update -qq
fi
if ((${#missing[@]} == 0)); then log "apt: all ${#APT_PACKAGES[@]} packages present"; exit 0; fi
log "apt: installing ${missing[*]}"
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
log "done"
