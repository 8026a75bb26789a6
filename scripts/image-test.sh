#!/usr/bin/env bash
# Runs the image the way the chart runs the agent and checks it: `make image-test`.
#   1. doctor  inside the container with the agent's securityContext from the chart: root, the
#              capabilities of charts/socksplice/values.yaml (agent.capabilities) and nothing
#              else, no privilege escalation, the runtime's default seccomp profile, read-only
#              root, hostPID, and the chart's mounts (/sys/fs/cgroup, /sys/fs/bpf, /lib/modules
#              and /usr/src read-only, /run/socksplice, an empty /tmp). Must pass; then once
#              more with an empty /usr/src and /lib/modules, so bcc uses the image's headers.
#   2. agent   the same container running `socksplice agent --local DIR` for two local pods
#              built on the host (`socksplice local up`): it must attach and splice an iperf3
#              transfer between them (status.json: bytes redirected > 0).
#   3. demo    `socksplice demo --quick` in the image. The demo is not what the chart runs: it
#              creates network namespaces and cgroups, so it runs privileged.
# Afterwards nothing may be left: no pins under the test's pin directory, no sockops program
# attached at the cgroup2 root, no local pods.
set -euo pipefail
# shellcheck source=scripts/image-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/image-common.sh"
HOST_PY="${SOCKSPLICE_HOST_PYTHON:-$ROOT/.venv/bin/python}"
LOCAL_DIR=/run/socksplice/local/imagetest
PIN_NAME=socksplice-imagetest
NAME=socksplice-imagetest-agent
STATE_DIR=/run/socksplice/imagetest-agent

log() { printf 'image-test: %s\n' "$*" >&2; }
fail() { log "FAIL: $*"; exit 1; }

mapfile -t CAPS < <("$HOST_PY" -c 'import yaml,sys; v=yaml.safe_load(open(sys.argv[1])); print("\n".join(v["agent"]["capabilities"]))' "$ROOT/charts/socksplice/values.yaml")
mapfile -t FLAGS < <(engine_flags run)
AS_CHART=(--user 0:0 --cap-drop ALL)
for c in "${CAPS[@]}"; do AS_CHART+=(--cap-add "$c"); done
AS_CHART+=(--security-opt no-new-privileges --read-only --pid host --network none
  -v /sys/fs/cgroup:/sys/fs/cgroup -v /sys/fs/bpf:/sys/fs/bpf -v /lib/modules:/lib/modules:ro
  -v /usr/src:/usr/src:ro -v /run/socksplice:/run/socksplice --tmpfs /tmp)
# Local pods are named network namespaces: the agent finds them in /run/netns (in a cluster it
# finds pods through /proc/PID/ns/net instead, with hostPID).
LOCAL_PODS=(-v /run/netns:/run/netns:rslave)
log "capabilities from the chart: ${CAPS[*]}"

cleanup() {
  "$ENGINE" rm -f "$NAME" >/dev/null 2>&1 || true
  "$ROOT/.venv/bin/socksplice" local down --dir "$LOCAL_DIR" >/dev/null 2>&1 || true
  rm -rf "/sys/fs/bpf/$PIN_NAME" "$STATE_DIR"
}
trap cleanup EXIT
mkdir -p /run/socksplice

t0=$(date +%s)
log "doctor with the chart's securityContext"
"$ENGINE" run --rm "${FLAGS[@]}" "${AS_CHART[@]}" "$IMAGE" doctor || fail "doctor"
# A node without kernel headers (its /usr/src and /lib/modules empty): bcc compiles and loads
# with the image's own trimmed copy in /opt/socksplice/kernel-headers.
log "doctor on a node without headers: the image's packaged copy"
empty="$(mktemp -d)"
NO_HEADERS=()
for a in "${AS_CHART[@]}"; do
  case "$a" in /usr/src:*) NO_HEADERS+=("$empty:/usr/src:ro") ;; /lib/modules:*) NO_HEADERS+=("$empty:/lib/modules:ro") ;; *) NO_HEADERS+=("$a") ;; esac
done
out="$("$ENGINE" run --rm "${FLAGS[@]}" "${NO_HEADERS[@]}" "$IMAGE" doctor 2>&1)" || { printf '%s\n' "$out" >&2; fail "doctor with the packaged headers"; }
rmdir "$empty"
printf '%s\n' "$out" | grep -E '^OK   (headers|bcc|datapath)|^acceleration' >&2
printf '%s\n' "$out" | grep -q 'packaged linux-headers-' || fail "doctor did not use the image's packaged headers"
t1=$(date +%s)

log "agent: two local pods, the agent in the image"
"$ROOT/.venv/bin/socksplice" local up --dir "$LOCAL_DIR" >/dev/null
# The demo's SocketSplice with mode SpliceRelaxedReceive (as the chart's SpliceBenchmark splices
# its pods): under Auto, iperf3 is demoted (it closes with unread bytes), so nothing is spliced.
manifest="$(mktemp --suffix=.yaml)"
sed -e 's/^  mode: Auto$/  mode: SpliceRelaxedReceive/' -e '/^  auto:$/,$d' \
  "$ROOT/src/socksplice/tools/demo/socketsplice.yaml" >"$manifest"
grep -q '^  mode: SpliceRelaxedReceive$' "$manifest" || fail "demo SocketSplice: no 'mode: Auto' line to replace"
"$ROOT/.venv/bin/socksplice" local apply --dir "$LOCAL_DIR" -f "$manifest" >/dev/null
rm -f "$manifest"
"$ENGINE" run -d --name "$NAME" "${FLAGS[@]}" "${AS_CHART[@]}" "${LOCAL_PODS[@]}" "$IMAGE" \
  agent --local "$LOCAL_DIR" --state-dir "$STATE_DIR" --bpffs /sys/fs/bpf --pin-name "$PIN_NAME" \
  --metrics-port -1 >/dev/null
status="$LOCAL_DIR/status.json"
server_ip="$("$HOST_PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print([p["ipv4"] for p in d["cluster"]["pods"] if p["name"]=="server"][0])' "$LOCAL_DIR/topology.json")"
for _ in $(seq 120); do
  [[ -f "$status" ]] && grep -Eq '"attachedPods": [2-9]' "$status" && break
  "$ENGINE" ps -q --filter "name=$NAME" | grep -q . || { "$ENGINE" logs "$NAME" >&2; fail "agent exited"; }
  sleep 1
done
sleep 3
redirected=0
for transfer in 1 2; do
  "$ROOT/.venv/bin/socksplice" local exec --dir "$LOCAL_DIR" -n demo server -- iperf3 -s -1 -p 5201 >/dev/null 2>&1 &
  sleep 1
  "$ROOT/.venv/bin/socksplice" local exec --dir "$LOCAL_DIR" -n demo client -- iperf3 -c "$server_ip" -p 5201 -t 2 >/dev/null \
    || { "$ENGINE" logs "$NAME" >&2; fail "iperf3 between the pods"; }
  wait
  sleep 3
  redirected="$("$HOST_PY" - "$status" <<'PY'
import json, sys
def walk(x):
    if isinstance(x, dict):
        for k, v in x.items():
            if "redirect" in k.lower() and isinstance(v, int):
                yield v
            yield from walk(v)
    elif isinstance(x, list):
        for v in x:
            yield from walk(v)
print(sum(walk(json.load(open(sys.argv[1])))))
PY
)"
  log "agent: transfer $transfer: bytes redirected: $redirected"
  if ((redirected > 0)); then break; fi
done
log "agent: bytes redirected: $redirected"
if ! ((redirected > 0)); then "$ENGINE" logs "$NAME" >&2; cat "$status" >&2; fail "nothing spliced"; fi
"$ENGINE" stop -t 30 "$NAME" >/dev/null
"$ENGINE" logs "$NAME" 2>&1 | tail -3 >&2
"$ENGINE" rm "$NAME" >/dev/null
log "agent-drain in the image: detach, wait for spliced sockets, unpin"
"$ENGINE" run --rm "${FLAGS[@]}" "${AS_CHART[@]}" "$IMAGE" \
  agent-drain --state-dir "$STATE_DIR" --bpffs /sys/fs/bpf --pin-name "$PIN_NAME" --timeout 30 >&2 \
  || fail "agent-drain"
"$ROOT/.venv/bin/socksplice" local down --dir "$LOCAL_DIR" >/dev/null
t2=$(date +%s)

log "demo in the image (privileged: it builds its own netns pods and cgroups)"
"$ENGINE" run --rm "${FLAGS[@]}" --privileged --user 0:0 --pid host -v /sys/fs/cgroup:/sys/fs/cgroup -v /sys/fs/bpf:/sys/fs/bpf \
  -v /run/socksplice:/run/socksplice "$IMAGE" demo --quick --repeats 1 || fail "demo"
t3=$(date +%s)

log "nothing left behind"
[[ -z "$(ls -A "/sys/fs/bpf/$PIN_NAME" 2>/dev/null)" ]] || fail "pins left under /sys/fs/bpf/$PIN_NAME"
"$HOST_PY" - <<'PY' || fail "a sockops program is still attached at the cgroup2 root"
import os, sys
from socksplice.kernel import bpfsys, cgroup2
fd = os.open(cgroup2.find_root(), os.O_RDONLY | os.O_DIRECTORY)
sys.exit(1 if bpfsys.prog_query(fd, bpfsys.BPF_CGROUP_SOCK_OPS) else 0)
PY
log "passed: doctor $((t1 - t0))s, agent $((t2 - t1))s, demo $((t3 - t2))s"
