"""Cluster mode's snapshot and locating: recorded API objects, fixture /proc trees, and (kernel)
a real process in its own network namespace inside a real cgroup2 pod directory."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from socksplice.api.nodestatus import NodeStatus
from socksplice.errors import TemporaryError
from socksplice.nodeagent.cluster.cgroups import FsTree
from socksplice.nodeagent.cluster.locating import Locator, netns_of, qos_classes
from socksplice.nodeagent.cluster.sink import SpliceNodeSink, splicenode_object
from socksplice.nodeagent.cluster.source import ClusterSource, build_snapshot
from socksplice.nodeagent.targets import PodLocation
from tests.unit.fakeapi import FakeApi
from tests.unit.fixtures import recorded as apifixtures

UID = "6f1c2a3e-0d4b-4c8e-9a61-2b7f5e8d9c01"
SELF_NETNS = Path("/proc/self/ns/net")
"""The test's own netns stands for the host's: on a sandboxed test host even root may not read
PID 1's (EACCES), and the locator then locates nothing (``test_an_unreadable_host_netns...``)."""


def _locate_client(pod: Mapping[str, Any]) -> PodLocation | None:
    if pod["metadata"]["uid"] == UID:
        return PodLocation(Path("/sys/fs/cgroup/kubepods/burstable/pod" + UID), Path("/proc/4242/ns/net"))
    return None


def test_snapshot_of_node_a() -> None:
    invalid = apifixtures.splice()
    invalid["metadata"]["name"] = "broken"
    invalid["spec"]["ports"] = [80, 80]
    splices = [apifixtures.splice(), invalid]
    snap = build_snapshot("node-a", apifixtures.items("pods.json"), splices, _locate_client)
    assert [p.key for p in snap.pods] == [
        "demo/client",
        "demo/migrate",
        "demo/node-exporter",
        "demo/server",
        "other/client",
    ]
    assert [s.key for s in snap.splices] == ["demo/accel"]
    assert [e.field for e in snap.errors] == ["spec.ports[1]"]
    assert "SocketSplice demo/broken" in str(snap.errors[0])
    assert dict(snap.locations) == {"demo/client": _locate_client(apifixtures.items("pods.json")[0])}


def test_source_waits_for_the_first_lists(tmp_path: Path) -> None:
    source = ClusterSource("node-a", Locator(tmp_path, tmp_path))
    with pytest.raises(TemporaryError, match="waiting for the first list"):
        source.snapshot()
    source.pods.relist(apifixtures.load("pods.json"))
    with pytest.raises(TemporaryError):
        source.snapshot()
    source.splices.relist(apifixtures.load("socketsplices.json"))
    snap = source.snapshot()
    assert len(snap.pods) == 5 and len(snap.splices) == 1
    assert snap.locations == {}  # nothing in this empty cgroup tree


def test_qos_classes() -> None:
    pod = apifixtures.items("pods.json")[0]
    assert qos_classes(pod) == ("Burstable",)
    del pod["status"]["qosClass"]
    assert qos_classes(pod) == ("Guaranteed", "Burstable", "BestEffort")


def test_splicenode_object() -> None:
    obj = splicenode_object("node-a")
    assert (obj["kind"], obj["metadata"]["name"], obj["spec"]) == ("SpliceNode", "node-a", {})
    assert "ownerReferences" not in obj["metadata"]


def test_splicenode_is_owned_by_its_node() -> None:
    [owner] = splicenode_object("node-a", "6c1d0f55-9a2e-4c1b-8d33-0e7f3a2b9c10")["metadata"][
        "ownerReferences"
    ]
    assert owner == {
        "apiVersion": "v1",
        "kind": "Node",
        "name": "node-a",
        "uid": "6c1d0f55-9a2e-4c1b-8d33-0e7f3a2b9c10",
    }


def _proc_tree(tmp_path: Path) -> tuple[Path, Path]:
    """A fixture /proc: pid 1 (host netns), 200 shares the host's netns (like conmon), 100 its own."""
    proc = tmp_path / "proc"
    for pid in ("1", "100"):
        (proc / pid / "ns").mkdir(parents=True)
        (proc / pid / "ns" / "net").write_text("")
    (proc / "200" / "ns").mkdir(parents=True)
    os.link(proc / "1" / "ns" / "net", proc / "200" / "ns" / "net")
    cg = tmp_path / "cgroup"
    pod = (
        cg
        / "kubepods.slice"
        / "kubepods-burstable.slice"
        / f"kubepods-burstable-pod{UID.replace('-', '_')}.slice"
    )
    (pod / "cri-containerd-aaa.scope").mkdir(parents=True)
    (pod / "cri-containerd-aaa.scope" / "cgroup.procs").write_text("200\n100\n")
    return proc, cg


def test_netns_skips_the_hosts(tmp_path: Path) -> None:
    proc, cg = _proc_tree(tmp_path)
    locator = Locator(cg, proc)
    pod = apifixtures.items("pods.json")[0]
    location = locator.locate(pod)
    assert location is not None
    assert location.netns == proc / "100" / "ns" / "net"
    assert location.cgroup.name == f"kubepods-burstable-pod{UID.replace('-', '_')}.slice"
    # only the host's netns left: not located
    (location.cgroup / "cri-containerd-aaa.scope" / "cgroup.procs").write_text("200\n")
    (proc / "100" / "ns" / "net").unlink()
    assert locator.locate(pod) is None


def test_an_unreadable_host_netns_locates_no_pod(tmp_path: Path) -> None:
    """Fail closed: without /proc/1/ns/net (EACCES without SYS_PTRACE) no process can be proven
    to be outside the host's netns, so the pod is not located, and the reason is kept."""
    proc, cg = _proc_tree(tmp_path)
    (proc / "1" / "ns" / "net").unlink()
    (proc / "1" / "ns" / "net").symlink_to(proc / "1" / "ns" / "unreadable")
    locator = Locator(cg, proc)
    pod = apifixtures.items("pods.json")[0]
    assert locator.locate(pod) is None
    assert "the host's network namespace cannot be read" in locator.refused[UID]
    assert str(proc / "1" / "ns" / "net") in locator.refused[UID]
    locator.forget(set())
    assert locator.refused == {}


def test_a_pod_refused_by_the_host_netns_guard_is_named_in_the_snapshot(tmp_path: Path) -> None:
    """The reason reaches the agent (and from it the SpliceNode's lastError), not only the log."""
    proc, cg = _proc_tree(tmp_path)
    (proc / "1" / "ns" / "net").unlink()
    (proc / "1" / "ns" / "net").symlink_to(proc / "1" / "ns" / "unreadable")
    source = ClusterSource("node-a", Locator(cg, proc))
    source.pods.relist(apifixtures.load("pods.json"))
    source.splices.relist(apifixtures.load("socketsplices.json"))
    snap = source.snapshot()
    assert snap.locations == {}
    assert [key for key, _ in snap.unlocated] == ["demo/client"]
    assert "the host's network namespace cannot be read" in dict(snap.unlocated)["demo/client"]


@pytest.mark.kernel
def test_real_process_in_its_own_netns(tmp_path: Path) -> None:
    from socksplice.kernel import cgroup2

    root = cgroup2.find_root() / f"socksplice-test-locate-{os.getpid()}"
    pod_dir = root / "kubepods" / "burstable" / f"pod{UID}"
    container = pod_dir / "c0ffee"
    cgroup2.ensure_dir(container)
    proc = subprocess.Popen(["unshare", "--net", "sleep", "60"])
    try:
        (container / "cgroup.procs").write_text(str(proc.pid))
        deadline = time.monotonic() + 10
        while os.readlink(f"/proc/{proc.pid}/ns/net") == os.readlink("/proc/self/ns/net"):
            assert time.monotonic() < deadline, "unshare did not enter a new netns"
            time.sleep(0.01)
        found = netns_of(root, FsTree(root), pod_dir.relative_to(root), host_ns=SELF_NETNS)
        assert found == Path(f"/proc/{proc.pid}/ns/net")
        location = Locator(root, host_ns=SELF_NETNS).locate(apifixtures.items("pods.json")[0])
        assert location == PodLocation(pod_dir, found)
    finally:
        proc.kill()
        proc.wait()
        cgroup2.remove_tree(root)


@pytest.mark.parametrize("readable", [True, False])
def test_first_publish_creates_the_splicenode_owned_by_its_node(readable: bool) -> None:
    api = FakeApi()
    uid = "6c1d0f55-9a2e-4c1b-8d33-0e7f3a2b9c10"
    if readable:
        api.add("nodes", {"metadata": {"name": "node-a", "uid": uid}})
    else:
        api.fail["GET", "nodes"] = 403
    sink = SpliceNodeSink("node-a", kube=api.kube())
    sink.publish(NodeStatus("node-a", spliced_sockets=0))
    sink.publish(NodeStatus("node-a", spliced_sockets=2))
    created = api.get("splicenodes", "node-a")
    assert created is not None
    owners = created["metadata"].get("ownerReferences", [])
    assert [o["uid"] for o in owners] == ([uid] if readable else [])
    assert created["status"]["splicedSockets"] == 2
    # patch (404), get Node, create, patch; then one patch
    assert api.counts() == {"PATCH splicenodes": 3, "GET nodes": 1, "POST splicenodes": 1}


def test_publish_failure_is_temporary_and_names_the_object() -> None:
    api = FakeApi()
    api.fail["PATCH", "splicenodes"] = 503
    with pytest.raises(TemporaryError, match=r"SpliceNode node-a: not written: .*node-a: 503"):
        SpliceNodeSink("node-a", kube=api.kube()).publish(NodeStatus("node-a"))


def test_the_agents_watch_lists_watches_and_lists_again_after_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    """The agent's pod watch through the real client: list, watch from the list's version, 410 → list."""
    import threading

    from socksplice import kubeapi
    from socksplice.nodeagent.cluster.source import _kube_fns, run_watch
    from socksplice.nodeagent.cluster.watching import WatchState

    api = FakeApi()
    for pod in apifixtures.items("pods.json"):
        api.add("pods", pod)
    api.watches["pods"] = apifixtures.load("watch-pods.jsonl")
    monkeypatch.setattr(kubeapi, "Kube", api.kube)
    list_pods, watch_pods, _, _ = _kube_fns("node-a")
    state, stop = WatchState(), threading.Event()
    loop = threading.Thread(target=run_watch, args=("pods", list_pods, watch_pods, state, stop))
    loop.start()
    try:
        for _ in range(500):
            if sum(q.get("watch") == ["true"] for q in api.queries) >= 2:
                break
            threading.Event().wait(0.01)
    finally:
        stop.set()
        loop.join(5)
    lists = [q for q in api.queries if q.get("watch") != ["true"]]
    watches = [q for q in api.queries if q.get("watch") == ["true"]]
    assert len(lists) >= 2  # listed again after the 410
    assert all(q["fieldSelector"] == ["spec.nodeName=node-a"] for q in api.queries)
    assert watches[0]["resourceVersion"] == ["1"]  # the list's resourceVersion
    assert state.synced
    assert "client" in {o["metadata"]["name"] for o in state.objects.values()}
