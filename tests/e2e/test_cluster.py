"""End to end on a real cluster: CRDs applied, operator and agent running, pods selected, status
rolled up, printer columns filled, and TCP between two pods on one node spliced."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import Cluster, splicenode, wait_for

pytestmark = pytest.mark.e2e

GROUP, VERSION = "socksplice.io", "v1alpha1"


def _pod(name: str, node: str, image: str, args: list[str], labels: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "nodeName": node,
            "restartPolicy": "Never",
            "containers": [
                {"name": "main", "image": image, "imagePullPolicy": "IfNotPresent", "command": args}
            ],
        },
    }


def _splice(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    return dict(cluster.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "socketsplices", name))


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == kind), {})


def _columns(table: dict[str, Any], name: str) -> dict[str, Any]:
    headers = [c["name"].upper() for c in table["columnDefinitions"]]
    row = next(r for r in table["rows"] if r["object"]["metadata"]["name"] == name)
    return dict(zip(headers, row["cells"], strict=True))


def test_selected_pods_are_spliced(cluster: Cluster, namespace: str, agent: str, operator: Any) -> None:
    labels = {"app": "e2e", "socksplice": "on"}
    cluster.core.create_namespaced_pod(
        namespace,
        _pod("server", agent, cluster.image, ["sslg", "server", "--port", "9400", "--mode", "sink"], labels),
    )
    cluster.custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "socketsplices",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "SocketSplice",
            "metadata": {"name": "e2e"},
            "spec": {"podSelector": {"matchLabels": {"socksplice": "on"}}, "mode": "SpliceRelaxedReceive"},
        },
    )
    server_ip = wait_for(
        "server pod IP",
        lambda: cluster.core.read_namespaced_pod("server", namespace).status.pod_ip,
    )
    status = wait_for(
        "SocketSplice e2e Ready with the server attached",
        lambda: (
            (s := _splice(cluster, namespace, "e2e"))
            and _condition(s, "Ready").get("status") == "True"
            and s["status"].get("acceleratedPods") == 1
            and s
        ),
    )["status"]
    assert status["observedGeneration"] == 1
    assert [n["name"] for n in status["nodes"]] == [agent]
    assert _condition(_splice(cluster, namespace, "e2e"), "Degraded")["status"] == "False"
    # the condition change was posted as an Event on the SocketSplice (kubectl describe shows it)
    events = wait_for(
        "an Event for Ready=True on the SocketSplice",
        lambda: [
            e
            for e in cluster.core.list_namespaced_event(
                namespace, field_selector="involvedObject.kind=SocketSplice,involvedObject.name=e2e"
            ).items
            if e.reason == "Status" and (e.message or "").startswith("Ready=True")
        ],
        timeout=30,
    )
    assert events[0].type == "Normal"

    # the client is selected too; it waits so that the agent attaches before it connects
    client_args = [
        "sh",
        "-c",
        f"sleep 5; sslg stream --host {server_ip} --port 9400 --write 16384 --seconds 2",
    ]
    cluster.core.create_namespaced_pod(namespace, _pod("client", agent, cluster.image, client_args, labels))
    wait_for(
        "client pod Succeeded",
        lambda: cluster.core.read_namespaced_pod("client", namespace).status.phase == "Succeeded",
        timeout=180,
    )
    node_status = wait_for(
        "spliced pairs counted on the node",
        lambda: next(
            (
                p
                for p in ((splicenode(cluster, agent) or {}).get("status") or {}).get("policies") or []
                if p["name"] == f"{namespace}/e2e" and p.get("pairsSpliced", 0) >= 1
            ),
            None,
        ),
        timeout=60,
        interval=2,
    )
    assert node_status["bytesRedirected"] > 0

    columns = _columns(cluster.table(f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/socketsplices"), "e2e")
    assert (columns["MODE"], columns["READY"]) == ("SpliceRelaxedReceive", "True")
    assert columns["NODES"] == 1
    node_columns = _columns(cluster.table(f"/apis/{GROUP}/{VERSION}/splicenodes"), agent)
    assert node_columns["READY"] == "True"
    assert node_columns["PODS"] >= 1
    assert node_columns["KERNEL"]


def test_benchmark_runs_plain_then_spliced(
    cluster: Cluster, namespace: str, agent: str, operator: Any
) -> None:
    cluster.custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "splicebenchmarks",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "SpliceBenchmark",
            "metadata": {"name": "ab"},
            "spec": {"nodeName": agent, "image": cluster.image, "durationSeconds": 3},
        },
    )

    def finished() -> dict[str, Any] | None:
        obj = cluster.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "splicebenchmarks", "ab")
        status = obj.get("status") or {}
        return status if status.get("phase") in ("Succeeded", "Failed") else None

    status = wait_for("SpliceBenchmark ab finished", finished, timeout=600, interval=5)
    assert status["phase"] == "Succeeded", status.get("message")
    assert {(r["workload"], r["metric"]) for r in status["results"]} == {
        ("rr-64", "p50_us"),
        ("rr-64", "p99_us"),
        ("stream-16k", "gbit_per_s"),
    }
    assert all(r["plain"] > 0 and r["spliced"] > 0 for r in status["results"])
    wait_for(
        "benchmark server pod removed",
        lambda: (
            not cluster.core.list_namespaced_pod(
                namespace, label_selector="socksplice.io/benchmark=ab,socksplice.io/benchmark-role=server"
            ).items
        ),
        timeout=120,
    )
