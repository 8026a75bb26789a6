#!/usr/bin/env bash
# Builds the image from the Dockerfile with podman (or docker): `make image`.
# The host's pip configuration, local package indexes and CA certificates are mounted into the
# build's RUN steps (podman build -v), so pip inside the build reaches the same index as on the
# host; nothing of them is left in the image.
#
#   scripts/image-build.sh                     # -> $SOCKSPLICE_IMAGE (default below)
#   SOCKSPLICE_BASE_IMAGE=debian:12-slim ...   # base image (default: the local debootstrap one)
set -euo pipefail
# shellcheck source=scripts/image-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/image-common.sh"
BASE="${SOCKSPLICE_BASE_IMAGE:-localhost/socksplice-base:bookworm}"

mounts=()
if [[ "$ENGINE" == podman ]]; then
  for f in /etc/pip.conf "$HOME/.config/pip/pip.conf"; do
    [[ -f "$f" ]] && mounts+=(-v "$f:${f/#$HOME//root}:ro")
  done
  # Local directories named by pip's configuration (find-links, file:// indexes).
  while read -r dir; do
    [[ -d "$dir" ]] && mounts+=(-v "$dir:$dir:ro")
  done < <( { cat /etc/pip.conf "$HOME/.config/pip/pip.conf" 2>/dev/null; env | grep '^PIP_'; } \
            | grep -oE '(file://)?/[^ ]+' | sed 's|^file://||; s|/simple/\?$||' | sort -u)
  # The host's CA bundle beside the image's own /etc/ssl/certs (which ca-certificates writes).
  cert="${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}"
  if [[ -f "$cert" ]]; then
    mounts+=(-v "$(realpath "$cert"):/run/host-ca.crt:ro" --build-arg PIP_CERT=/run/host-ca.crt)
  fi
fi

start=$(date +%s)
mapfile -t flags < <(engine_flags build)
"$ENGINE" build "${flags[@]}" "${mounts[@]}" --build-arg "BASE=$BASE" -t "$IMAGE" -f "$ROOT/Dockerfile" "$ROOT"
printf 'image-build: %s built in %ss\n' "$IMAGE" "$(( $(date +%s) - start ))" >&2
"$ENGINE" image ls "$IMAGE" >&2
