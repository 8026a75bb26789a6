#!/usr/bin/env bash
# Installs everything socksplice needs on a Debian 12 machine (and in the container image):
# system packages (bcc, kernel headers fallback, iproute2, benchmark tools, a C compiler),
# the C load generators, and a Python virtual environment in .venv that can import
# Debian's `bcc` module. Idempotent: re-running it converges and is quick.
#
#   scripts/install.sh            # system packages + venv + load generators
#   SOCKSPLICE_SKIP_APT=1 ...     # skip apt (packages already present)
#   SOCKSPLICE_DEV=0 ...          # runtime only: no test tools (the container image)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SOCKSPLICE_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"

# The one list of system packages; the Dockerfile calls this script so both stay in step.
APT_PACKAGES=(
  python3-venv                        # the virtual environment (python3 itself comes with bcc)
  python3-bpfcc libbpfcc bpftool      # bcc runtime and its Python binding
  linux-headers-amd64                 # packaged kernel headers, the fallback when the kernel has none
  iproute2 iptables                   # netns, veth, bridges, DNAT for local mode
  gcc make libc6-dev                  # C load generators
  sockperf iperf3                     # standard benchmark tools
)
# Only for tests (SOCKSPLICE_DEV=1, the default): the image does not carry them.
APT_DEV_PACKAGES=(
  prometheus                          # tests/kernel/test_prometheus.py scrapes a real agent
)
DEV="${SOCKSPLICE_DEV:-1}"

log() { printf 'install: %s\n' "$*" >&2; }

install_apt() {
  if [[ "${SOCKSPLICE_SKIP_APT:-0}" == 1 ]]; then log "apt: skipped (SOCKSPLICE_SKIP_APT=1)"; return; fi
  local missing=() wanted=("${APT_PACKAGES[@]}")
  [[ "$DEV" == 1 ]] && wanted+=("${APT_DEV_PACKAGES[@]}")
  for p in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]} == 0)); then log "apt: all ${#wanted[@]} packages present"; return; fi
  log "apt: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_venv() {
  if [[ ! -x "$VENV/bin/python" ]]; then
    log "venv: creating $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  # Debian's bcc binding is pure Python over libbcc: expose just that package to the venv.
  local site
  site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  local bcc_dir=/usr/lib/python3/dist-packages/bcc
  if [[ -d "$bcc_dir" ]]; then ln -sfn "$bcc_dir" "$site/bcc"; else log "venv: $bcc_dir missing (python3-bpfcc not installed?)"; fi
  local stamp="$VENV/.socksplice-deps"
  local want
  want="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)-dev$DEV"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then log "venv: python dependencies up to date"; return; fi
  log "venv: installing socksplice and its python dependencies"
  "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
  if [[ "$DEV" == 1 ]]; then
    "$VENV/bin/python" -m pip install -q -e "$ROOT[dev]"
  else
    "$VENV/bin/python" -m pip install -q "$ROOT"
  fi
  echo "$want" >"$stamp"
}

build_loadgen() {
  log "loadgen: building"
  make -s -C "$ROOT/loadgen"
}

install_apt
install_venv
build_loadgen
log "done"
