#!/usr/bin/env bash
# Installs everything socksplice needs on a Debian 12 machine (and in the container image):
# system packages (bcc, kernel headers fallback, iproute2, benchmark tools, a C compiler),
# the C load generators, and a Python virtual environment in .venv that can import
# Debian's `bcc` module. Idempotent: re-running it converges and is quick.
#
#   scripts/install.sh            # system packages + venv + load generators
#   SOCKSPLICE_SKIP_APT=1 ...     # skip apt (packages already present)
#   SOCKSPLICE_DEV=0 ...          # runtime only: no test tools (the container image)
#   SOCKSPLICE_STAGE=build ...    # the image's build stage: everything, plus the kernel headers
#                                 #   copied to $SOCKSPLICE_HEADERS_COPY (runtime stage's fallback)
#   SOCKSPLICE_STAGE=runtime ...  # the image's runtime stage: the runtime packages only; the
#                                 #   venv and load generators come from the build stage
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SOCKSPLICE_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"

# The lists of system packages; the Dockerfile calls this script so both stay in step.
# What the commands need to run (bcc compiles BPF C with its own clang/LLVM in libbcc: no gcc):
APT_PACKAGES=(
  python3-bpfcc libbpfcc bpftool      # bcc runtime and its Python binding (python3 comes with it)
  iproute2 iptables                   # netns, veth, bridges, DNAT for local mode
  procps                              # sysctl (the demo and local mode set net.* sysctls)
  sockperf iperf3                     # standard benchmark tools
)
# What building needs: the venv, the C load generators, the packaged kernel headers (the
# fallback when the kernel has none; linux-headers-amd64 pulls gcc in, so the image's runtime
# stage takes a copy of the headers instead of the package).
APT_BUILD_PACKAGES=(
  python3-venv                        # the virtual environment
  gcc make libc6-dev                  # C load generators
  linux-headers-amd64                 # packaged kernel headers
)
# Only for tests (SOCKSPLICE_DEV=1, the default): the image does not carry them.
APT_DEV_PACKAGES=(
  prometheus                          # tests/kernel/test_prometheus.py scrapes a real agent
  nginx wrk curl                      # conformance programs (socksplice.tools.conformance.programs):
  redis-server redis-tools            #   nginx + wrk/curl, redis-server + redis-cli/-benchmark
)
# Debian's nginx, redis-server and prometheus packages enable a system service and start it on
# install (ports 80, 6379, 9090). The tests start their own instances inside pods and need only
# the binaries, so a package this script installs must leave no daemon running, now or after a
# reboot: apt runs with service starts denied (a temporary /usr/sbin/policy-rc.d that answers
# 101, which invoke-rc.d and deb-systemd-invoke honour; an existing one, such as a container's,
# is kept as it is) and, under systemd, the units below are then disabled and stopped. Only
# units of packages installed by this run are touched: a machine's own nginx keeps its service.
declare -A SERVICE_UNITS=([nginx]=nginx [redis-server]=redis-server [prometheus]=prometheus)
DEV="${SOCKSPLICE_DEV:-1}"
STAGE="${SOCKSPLICE_STAGE:-all}"
HEADERS_COPY="${SOCKSPLICE_HEADERS_COPY:-/opt/socksplice/kernel-headers}"
case "$STAGE" in all|build|runtime) ;; *) echo "install: SOCKSPLICE_STAGE must be all, build or runtime" >&2; exit 2;; esac

log() { printf 'install: %s\n' "$*" >&2; }

install_apt() {
  if [[ "${SOCKSPLICE_SKIP_APT:-0}" == 1 ]]; then log "apt: skipped (SOCKSPLICE_SKIP_APT=1)"; return; fi
  local missing=() wanted=("${APT_PACKAGES[@]}")
  [[ "$STAGE" != runtime ]] && wanted+=("${APT_BUILD_PACKAGES[@]}")
  [[ "$DEV" == 1 ]] && wanted+=("${APT_DEV_PACKAGES[@]}")
  for p in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]} == 0)); then log "apt: all ${#wanted[@]} packages present"; return; fi
  log "apt: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  local policy=/usr/sbin/policy-rc.d own_policy=0
  if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\n# socksplice install.sh: no service starts during this install\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    own_policy=1
  fi
  local rc=0
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || rc=$?
  if [[ "$own_policy" == 1 ]]; then rm -f "$policy"; trap - EXIT; fi
  ((rc == 0)) || return "$rc"
  disable_services "${missing[@]}"
}

disable_services() {
  local p units=()
  for p in "$@"; do
    if [[ -n "${SERVICE_UNITS[$p]:-}" ]]; then units+=("${SERVICE_UNITS[$p]}.service"); fi
  done
  ((${#units[@]} > 0)) || return 0
  if [[ -d /run/systemd/system ]]; then
    log "apt: disabling the system services ${units[*]} (tests run their own instances)"
    systemctl disable --now --quiet "${units[@]}" || log "apt: could not disable ${units[*]}"
  fi
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
  # Installed beside the venv's python, where socksplice.tools.workloads looks for it.
  install -m 755 "$ROOT/loadgen/bin/sslg" "$VENV/bin/sslg"
}

# The runtime stage's fallback headers: one copy of the packaged trees, outside /usr/src (the
# chart mounts the node's /usr/src over the image's).
copy_headers() {
  log "headers: copying /usr/src/linux-headers-* to $HEADERS_COPY"
  rm -rf "$HEADERS_COPY"
  mkdir -p "$HEADERS_COPY"
  cp -a /usr/src/linux-headers-* "$HEADERS_COPY/"
  # bcc includes only this machine's architecture: the other architectures' trees go.
  local arch
  for arch in "$HEADERS_COPY"/linux-headers-*-common/arch/*; do
    [[ "$(basename "$arch")" == x86 ]] || rm -rf "$arch"
  done
}

install_apt
if [[ "$STAGE" != runtime ]]; then
  install_venv
  build_loadgen
fi
if [[ "$STAGE" == build ]]; then copy_headers; fi
log "done"
