"""Cluster mode on the real kernel: the same Agent, Reconciler and BPF data path as local mode,
fed by ``ClusterSource`` (list responses in the API's JSON, a cgroup laid out as the kubelet's
cgroupfs driver does, a process in its own network namespace). The pod's own loopback traffic
is spliced, and what the agent publishes is a valid SpliceNode status."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from socksplice.api.nodestatus import NodeStatus
from socksplice.bpf.loader import Datapath, DatapathSettings
from socksplice.nodeagent.agent import Agent
from socksplice.nodeagent.cluster.locating import Locator
from socksplice.nodeagent.cluster.source import ClusterSource
from socksplice.nodeagent.settings import AgentSettings
from tests.unit.crdcheck import load_crd, schema_errors, schema_of

UID = "7a7b7c7d-0000-4000-8000-00000000c0de"
NODE = "node-t"

POD: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "web", "namespace": "demo", "uid": UID, "labels": {"app": "web"}},
    "spec": {"nodeName": NODE, "containers": [{"name": "web", "image": "registry.local/web:1"}]},
    "status": {"phase": "Running", "qosClass": "Burstable", "podIP": "198.18.9.9"},
}
SPLICE: dict[str, Any] = {
    "apiVersion": "socksplice.io/v1alpha1",
    "kind": "SocketSplice",
    "metadata": {"name": "web", "namespace": "demo", "uid": "u-1", "generation": 1},
    "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "mode": "SpliceRelaxedReceive"},
}


class Published:
    def __init__(self) -> None:
        self.statuses: list[NodeStatus] = []

    def publish(self, status: NodeStatus) -> None:
        self.statuses.append(status)


@pytest.fixture
def pod_cgroup() -> Iterator[tuple[Path, Path]]:
    """(cgroup root, container cgroup) shaped like the cgroupfs driver's, removed afterwards."""
    from socksplice.kernel import cgroup2

    root = cgroup2.find_root() / f"socksplice-test-cluster-{os.getpid()}"
    container = root / "kubepods" / "burstable" / f"pod{UID}" / "c0"
    cgroup2.ensure_dir(container)
    try:
        yield root, container
    finally:
        cgroup2.remove_tree(root)


def _in_pod(container: Path, holder: int, argv: list[str]) -> list[str]:
    """argv run inside the pod: in its container cgroup and its network namespace."""
    script = f'echo $$ > {container}/cgroup.procs && exec nsenter --net=/proc/{holder}/ns/net "$@"'
    return ["sh", "-c", script, "sh", *argv]


@pytest.mark.kernel
def test_cluster_mode_splices_a_pods_traffic(tmp_path: Path, pod_cgroup: tuple[Path, Path]) -> None:
    from socksplice.tools.workloads.loadgen import LoadgenMissing, loadgen_path
    from tests.kernel.splicing import private_bpffs, wait_for

    try:
        sslg = str(loadgen_path())
    except LoadgenMissing as exc:
        pytest.skip(str(exc))
    root, container = pod_cgroup
    stop = threading.Event()

    def idle(_rv: str) -> Iterable[Mapping[str, Any]]:
        stop.wait(5)
        return ()

    fns = (
        lambda: {"metadata": {"resourceVersion": "10"}, "items": [POD]},
        idle,
        lambda: {"metadata": {"resourceVersion": "20"}, "items": [SPLICE]},
        idle,
    )
    holder = subprocess.Popen(["unshare", "--net", "sleep", "300"])
    procs: list[subprocess.Popen[bytes]] = [holder]
    with private_bpffs(tmp_path / "bpffs") as pin_root:
        settings = AgentSettings(
            node_name=NODE,
            state_dir=tmp_path / "agent",
            datapath=DatapathSettings(pin_root=pin_root, name=f"t-cluster-{os.getpid()}"),
            metrics_port=-1,
        )
        datapath = Datapath.load(settings.datapath)
        # the test's netns stands for the host's (a sandboxed test host may hide PID 1's)
        source = ClusterSource(NODE, Locator(root, host_ns=Path("/proc/self/ns/net")), fns)
        sink = Published()
        try:
            (container / "cgroup.procs").write_text(str(holder.pid))
            wait_for(lambda: os.readlink(f"/proc/{holder.pid}/ns/net") != os.readlink("/proc/self/ns/net"))
            subprocess.run(
                ["nsenter", f"--net=/proc/{holder.pid}/ns/net", "ip", "link", "set", "lo", "up"], check=True
            )
            source.start()
            wait_for(lambda: source.pods.synced and source.splices.synced)
            agent = Agent(settings, source, datapath, sink)
            report = agent.step(force=True)
            assert report is not None and report.attached == ["demo/web"], report
            assert datapath.attached(root / "kubepods" / "burstable" / f"pod{UID}")

            server = subprocess.Popen(
                _in_pod(container, holder.pid, [sslg, "server", "--port", "9400", "--mode", "sink"]),
                stdout=subprocess.PIPE,
            )
            procs.append(server)
            assert server.stdout is not None
            server.stdout.readline()  # the server prints its port once it listens
            client = subprocess.run(
                _in_pod(
                    container,
                    holder.pid,
                    [
                        sslg,
                        "stream",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        "9400",
                        "--write",
                        "16384",
                        "--seconds",
                        "1",
                    ],
                ),
                capture_output=True,
                timeout=60,
                check=True,
            )
            assert b"gbit_per_s" in client.stdout
            assert datapath.totals()["pairs_spliced"] >= 1

            agent.step(force=True)
            status = sink.statuses[-1]
            assert status.pods == ("demo/web",)
            policy = status.policy("demo/web")
            assert policy is not None and (policy.pairs_spliced or 0) >= 1
            node = status.to_dict()
            schema = schema_of(load_crd("splicenode.yaml"))["properties"]["status"]
            assert schema_errors(node, schema, ".status") == []
            assert node["conditions"][0]["status"] == "True"
        finally:
            stop.set()
            source.close()
            for p in procs:
                p.kill()
                p.wait()
            datapath.detach(root / "kubepods" / "burstable" / f"pod{UID}")
            datapath.close()
            datapath.unpin()
