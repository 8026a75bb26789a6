# Shared by scripts/image-build.sh and scripts/image-test.sh (sourced, not run).
# SOCKSPLICE_ENGINE: podman (default when installed) or docker.
IMAGE="${SOCKSPLICE_IMAGE:-localhost/socksplice/socksplice:dev}"
ENGINE="${SOCKSPLICE_ENGINE:-$(command -v podman >/dev/null && echo podman || echo docker)}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# A cgroup for the engine's containers inside the one this shell runs in (the machine's own
# cgroup tree is not the engine's to write to); `build` and `run` each get their own.
cgroup_parent() {
  local own
  own="$(awk -F: '$3 != "/" {print $3; exit}' /proc/self/cgroup)"
  printf '%s/socksplice-%s\n' "${own%/}" "$1"
}

# Flags every podman call needs on this kind of machine (docker needs none of them).
engine_flags() {
  [[ "$ENGINE" == podman ]] || return 0
  printf '%s\n' --ulimit nofile=20000:20000 --ulimit nproc=32768:32768 --cgroup-parent "$(cgroup_parent "$1")"
}
