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
HEADERS_SRC=/usr/src  # where linux-headers-amd64 puts its trees
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
# chart mounts the node's /usr/src over the image's), holding only what bcc compiles the programs
# with: every header reachable by #include (followed in every branch of every #if, so a superset)
# from the headers the programs include (socksplice's BPF C and doctor's probes, in the installed
# package), the ones libbcc's built-in helpers.h includes, and include/linux/kconfig.h (bcc's
# -include), in every directory of bcc's -I list; plus each tree's top-level .config and Makefile. About
# 2 MB instead of 60: kbuild's scripts/, other architectures and driver headers are not copied.
copy_headers() {
  log "headers: copying what bcc includes from $HEADERS_SRC/linux-headers-* to $HEADERS_COPY"
  rm -rf "$HEADERS_COPY"
  mkdir -p "$HEADERS_COPY"
  local pkg libbcc
  pkg="$("$VENV/bin/python" -c 'import importlib.util as u; print(list(u.find_spec("socksplice").submodule_search_locations)[0])')"
  libbcc="$(ls /usr/lib/*-linux-gnu/libbcc.so.0 2>/dev/null | head -1)"
  "$VENV/bin/python" - "$HEADERS_SRC" "$HEADERS_COPY" "$pkg" "$libbcc" <<'PY'
import re, shutil, subprocess, sys
from pathlib import Path

src, dst, pkg, libbcc = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
include = re.compile(r'^\s*#\s*include(?:_next)?\s*[<"]([^>"]+)[>"]', re.M)
start = {"linux/kconfig.h"}
for f in pkg.rglob("*"):
    if f.suffix in (".c", ".h", ".py"):
        start.update(include.findall(f.read_text(errors="replace")))
if libbcc:
    strings = subprocess.run(["grep", "-aoE", r"#include <[^>]+>", libbcc], capture_output=True, text=True).stdout
    start.update(include.findall(strings))
order = ("arch/x86/include", "arch/x86/include/generated", "include", "arch/x86/include/uapi",
         "arch/x86/include/generated/uapi", "include/uapi", "include/generated/uapi")
for arch in sorted(src.glob("linux-headers-*-amd64")):
    common = Path(str(arch).rsplit("-", 1)[0] + "-common")
    trees = [t for t in (arch, common) if t.is_dir()]
    dirs = [t / d for d in order for t in trees]
    todo = [(None, n) for n in sorted(start)]
    seen: set[Path] = set()
    while todo:
        here, name = todo.pop()
        # Every match, not only the first: #include_next continues the search past the first.
        for f in ([here / name] if here else []) + [d / name for d in dirs]:
            if f.is_file() and f not in seen:
                seen.add(f)
                todo += [(f.parent, n) for n in include.findall(f.read_text(errors="replace"))]
    # .config and the Makefiles (Module.symvers is for building modules).
    seen.update(f for t in trees for f in t.iterdir() if f.is_file() and f.name != "Module.symvers")
    for f in seen:
        tree = next(t for t in trees if f.is_relative_to(t))
        out = dst / tree.name / f.relative_to(tree)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, out)
    print(f"install: headers: {len(seen)} files from {arch.name}", file=sys.stderr)
PY
}

install_apt
if [[ "$STAGE" != runtime ]]; then
  install_venv
  build_loadgen
fi
if [[ "$STAGE" == build ]]; then copy_headers; fi
log "done"
