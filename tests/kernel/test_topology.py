"""Local topology on the real kernel: reachability, cgroup/netns membership, DNAT, teardown."""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from socksplice.errors import InvalidSpec
from socksplice.kernel import cgroup2
from socksplice.local import LocalCluster, LocalPod, LocalTopology, default_cluster, parse_local_pods, state

SERVER = """
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
l = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind((host, port)); l.listen(); l.settimeout(10)
print("ready", flush=True)
a, peer = l.accept()
a.sendall(a.recv(100).upper())
print(peer[0], peer[1], flush=True)
"""

CLIENT = """
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
s.sendall(b"ping")
reply = s.recv(100).decode()
me, peer = s.getsockname(), s.getpeername()
print(reply, me[0], me[1], peer[0], peer[1])
"""


def serve_once(pod: LocalPod, host: str, port: int) -> subprocess.Popen[bytes]:
    proc = pod.popen(["python3", "-c", SERVER, host, str(port)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"ready"
    return proc


def connect(pod: LocalPod, host: str, port: int) -> tuple[str, str, int, str, int]:
    out = pod.run(["python3", "-c", CLIENT, host, str(port)], timeout=15).stdout.decode().split()
    return out[0], out[1], int(out[2]), out[3], int(out[4])


def served_peer(proc: subprocess.Popen[bytes]) -> tuple[str, int]:
    out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0
    host, port = out.decode().split()
    return host, int(port)


def kernel_leftovers(topo: LocalTopology) -> list[str]:
    """Every object of ``topo`` that still exists (empty when down() was complete)."""
    left = [f"netns {p.name}" for p in Path("/run/netns").glob(f"ss-{topo.run_id}-*")]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    left += [f"root link {topo.bridge}" for line in links.splitlines() if topo.bridge in line]
    nat = subprocess.run(["iptables", "-w", "5", "-t", "nat", "-S"], capture_output=True, text=True).stdout
    left += [f"root chain {line}" for line in nat.splitlines() if f"SS-{topo.run_id}" in line]
    if topo.cgroup_parent.exists():
        left.append(f"cgroup {topo.cgroup_parent}")
    if (topo.registry_dir / f"{topo.run_id}.json").exists():
        left.append(f"registry entry {topo.run_id}")
    return left


@pytest.mark.kernel
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_pods_reach_each_other_over_tcp(topology: LocalTopology, family: str) -> None:
    client, server = topology.pod("client", "demo"), topology.pod("server", "demo")
    server_ip, client_ip = str(getattr(server, family)), str(getattr(client, family))
    proc = serve_once(server, server_ip, 9500)
    reply, local_ip, local_port, peer_ip, peer_port = connect(client, server_ip, 9500)
    assert reply == "PING"
    assert (local_ip, peer_ip, peer_port) == (client_ip, server_ip, 9500)
    assert served_peer(proc) == (client_ip, local_port)


@pytest.mark.kernel
def test_popen_runs_in_pod_cgroup_and_netns(topology: LocalTopology) -> None:
    pod = topology.pod("client", "demo")
    code = "import sys, time; print('ready', flush=True); time.sleep(30)"
    proc = pod.popen(["python3", "-c", code], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        lines = Path(f"/proc/{proc.pid}/cgroup").read_text().splitlines()
        unified = next(line for line in lines if line.startswith("0::"))
        assert unified == "0::/" + str(pod.cgroup.relative_to(cgroup2.find_root()))
        assert os.stat(f"/proc/{proc.pid}/ns/net").st_ino == os.stat(pod.netns_path).st_ino
        assert os.stat(f"/proc/{proc.pid}/ns/net").st_ino != os.stat("/proc/self/ns/net").st_ino
        assert str(proc.pid) in (pod.cgroup / "cgroup.procs").read_text().split()
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.kernel
def test_service_dnat_keeps_client_address(topology: LocalTopology) -> None:
    client, server = topology.pod("client", "demo"), topology.pod("server", "demo")
    proc = serve_once(server, "0.0.0.0", 9400)
    reply, local_ip, local_port, peer_ip, peer_port = connect(client, "198.18.1.1", 80)
    assert reply == "PING"
    assert (peer_ip, peer_port) == ("198.18.1.1", 80)  # the client sees the VIP
    assert served_peer(proc) == (str(client.ipv4), local_port)  # the server sees the real client
    assert local_ip == str(client.ipv4)


@pytest.mark.kernel
def test_service_hairpin_reaches_own_pod(topology: LocalTopology) -> None:
    server = topology.pod("server", "demo")
    proc = serve_once(server, "0.0.0.0", 9400)
    reply, *_ = connect(server, "198.18.1.1", 80)
    assert reply == "PING"
    served_peer(proc)


@pytest.mark.kernel
def test_two_topologies_coexist(make_topology: Callable[[LocalCluster], LocalTopology]) -> None:
    first, second = make_topology(default_cluster()), make_topology(default_cluster())
    assert first.run_id != second.run_id and first.bridge != second.bridge
    servers = [serve_once(t.pod("server", "demo"), "0.0.0.0", 9400) for t in (first, second)]
    for topo, proc in zip((first, second), servers, strict=True):
        reply, _, port, peer_ip, _ = connect(topo.pod("client", "demo"), "198.18.1.1", 80)
        assert (reply, peer_ip) == ("PING", "198.18.1.1")
        assert served_peer(proc) == ("198.18.0.10", port)


@pytest.mark.kernel
def test_down_removes_everything(require_kernel: None, tmp_path: Path) -> None:
    topo = LocalTopology(default_cluster(), state_dir=tmp_path / "state").up()
    try:
        assert topo.is_up and (tmp_path / "state" / "topology.json").exists()
        assert all(p.netns_path.exists() and p.cgroup.is_dir() for p in topo.pods)
        lingering = topo.pod("server", "demo").popen(["sleep", "60"])  # down() must kill it
    finally:
        topo.down()
    assert lingering.wait(timeout=10) == -signal.SIGKILL
    assert kernel_leftovers(topo) == []
    assert not (tmp_path / "state" / "topology.json").exists()
    assert (tmp_path / "state" / "manifests").is_dir()  # the user's manifests stay
    topo.down()  # idempotent


@pytest.mark.kernel
def test_down_after_load_from_state_file(require_kernel: None, tmp_path: Path) -> None:
    directory = tmp_path / "state"
    topo = LocalTopology(default_cluster(), state_dir=directory).up()
    try:
        record = json.loads((directory / "topology.json").read_text())
        assert record["run_id"] == topo.run_id and record["owner_pid"] == os.getpid()
        assert {(p["namespace"], p["name"], p["netns_path"]) for p in record["pods"]} == {
            ("demo", p.name, str(p.netns_path)) for p in topo.pods
        }
        loaded = state.load(directory)
        assert loaded.run_id == topo.run_id and loaded.is_up
        assert loaded.pods == topo.pods
        loaded.up()  # reconnecting never recreates
        assert loaded.pod("client", "demo").run(["true"]).returncode == 0
        loaded.down()
        assert kernel_leftovers(topo) == []
    finally:
        topo.down()


@pytest.mark.kernel
def test_up_and_down_are_idempotent_and_repeatable(require_kernel: None) -> None:
    for _ in range(2):
        topo = LocalTopology(default_cluster())
        with topo:
            topo.up()
            proc = serve_once(topo.pod("server", "demo"), "0.0.0.0", 9400)
            assert connect(topo.pod("client", "demo"), "198.18.1.1", 80)[0] == "PING"
            served_peer(proc)
        topo.down()
        assert kernel_leftovers(topo) == []


@pytest.mark.kernel
def test_cleanup_stale_removes_only_dead_runs(topology: LocalTopology) -> None:
    code = (
        "import time; from socksplice.local import LocalTopology, default_cluster\n"
        "t = LocalTopology(default_cluster()).up(); print(t.run_id, flush=True); time.sleep(60)"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert child.stdout is not None
    run_id = child.stdout.readline().decode().strip()
    child.kill()
    child.wait()
    dead = state.read_record(state.REGISTRY_DIR / f"{run_id}.json")
    assert Path("/run/netns", dead.node_netns).exists()
    removed = state.cleanup_stale()
    assert run_id in removed and topology.run_id not in removed
    assert kernel_leftovers(LocalTopology.from_record(dead)) == []
    assert topology.is_up and topology.pod("client", "demo").run(["true"]).returncode == 0


@pytest.mark.kernel
def test_as_pod_object_is_a_pod(topology: LocalTopology) -> None:
    obj = topology.pod("client", "demo").as_pod_object("node-a")
    assert (obj["apiVersion"], obj["kind"]) == ("v1", "Pod")
    meta = obj["metadata"]
    assert (meta["name"], meta["namespace"]) == ("client", "demo")
    assert meta["labels"] == {"app": "client", "role": "bench"}
    assert meta["uid"] == topology.pod("client", "demo").as_pod_object("x")["metadata"]["uid"]
    assert meta["uid"] != topology.pod("server", "demo").as_pod_object("node-a")["metadata"]["uid"]
    assert (obj["spec"]["nodeName"], obj["spec"]["hostNetwork"]) == ("node-a", False)
    assert obj["status"]["phase"] == "Running" and obj["status"]["podIP"] == "198.18.0.10"
    assert [i["ip"] for i in obj["status"]["podIPs"]] == ["198.18.0.10", "2001:2::10"]


# --- the LocalPods document (pure) ----------------------------------------------------------


def doc(pods: list[dict[str, object]], services: list[dict[str, object]] | None = None) -> dict[str, object]:
    out: dict[str, object] = {"apiVersion": "socksplice.io/v1alpha1", "kind": "LocalPods", "pods": pods}
    if services is not None:
        out["services"] = services
    return out


def test_default_document_and_address_assignment() -> None:
    cluster = default_cluster()
    assert cluster.name == "demo"
    assert [(p.namespace, p.name, str(p.ipv4), str(p.ipv6)) for p in cluster.pods] == [
        ("demo", "client", "198.18.0.10", "2001:2::10"),
        ("demo", "server", "198.18.0.11", "2001:2::11"),
    ]
    (svc,) = cluster.services
    assert (str(svc.ipv4), svc.port, svc.target_pod, svc.target_port) == ("198.18.1.1", 80, "server", 9400)
    mixed = parse_local_pods(doc([{"name": "a"}, {"name": "b", "ipv4": "198.18.0.10"}]))
    assert mixed.name == "default" and mixed.pods[0].namespace == "default"
    assert [p.ipv4 for p in mixed.pods] == [ipaddress.IPv4Address(a) for a in ("198.18.0.11", "198.18.0.10")]


@pytest.mark.parametrize(
    ("document", "field"),
    [
        (doc([{"name": "a"}, {"name": "a"}]), "pods[1].name"),
        (doc([{"name": "a", "ipv4": "10.0.0.1"}]), "pods[0].ipv4"),
        (doc([{"name": "a", "ipv4": "198.18.0.1"}]), "pods[0].ipv4"),
        (doc([{"name": "a", "ipv6": "2001:db8::1"}]), "pods[0].ipv6"),
        (doc([{"name": "a", "labels": {"app": "has space"}}]), "pods[0].labels.app"),
        (doc([{"name": "a", "labels": {"-bad": "x"}}]), "pods[0].labels.-bad"),
        (doc([{"name": "a", "colour": "red"}]), "pods[0].colour"),
        (
            doc([{"name": "a"}], [{"name": "s", "ipv4": "198.18.0.50", "port": 80, "targetPod": "a"}]),
            "services[0].ipv4",
        ),
        (
            doc([{"name": "a"}], [{"name": "s", "ipv4": "198.20.0.1", "port": 80, "targetPod": "a"}]),
            "services[0].ipv4",
        ),
        (
            doc([{"name": "a"}], [{"name": "s", "ipv4": "198.18.1.1", "port": 80, "targetPod": "b"}]),
            "services[0].targetPod",
        ),
        (
            doc([{"name": "a"}], [{"name": "s", "ipv4": "198.18.1.1", "port": 0, "targetPod": "a"}]),
            "services[0].port",
        ),
    ],
)
def test_invalid_documents_name_the_field(document: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidSpec) as info:
        parse_local_pods(document, "pods.yaml")
    assert info.value.field == field
    assert str(info.value).startswith("pods.yaml: ")
