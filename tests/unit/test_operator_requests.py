"""API requests of the operator for 100 SocketSplices over 1,000 pods (the figure in docs/kubernetes.md).

Ten namespaces of 100 pods on ten nodes, ten SocketSplices per namespace, each selecting ten
pods. The events go through kopf's real indexing and dispatch (``test_operator_following``);
every request the operator's handlers send reaches the in-memory API server and is counted.
One minute of a steady cluster is each agent's status every 5 s (the agent's default
``status_interval``: 120 SpliceNode events) and one pod replaced per namespace.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from socksplice.api.status import timestamp
from socksplice.operator import handlers
from tests.unit.fakeapi import FakeApi
from tests.unit.test_operator_following import NODES, PODS, SPLICES, Operator, api  # noqa: F401

NAMESPACES, PODS_PER_NS, SPLICES_PER_NS, NODE_COUNT = 10, 100, 10, 10


def pod(ns: int, i: int, uid: str = "") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"p{i}",
            "namespace": f"ns{ns}",
            "uid": uid or f"u{ns}-{i}",
            "labels": {"app": f"a{i % SPLICES_PER_NS}"},
        },
        "spec": {"nodeName": f"node{i % NODE_COUNT}"},
        "status": {"phase": "Running", "podIP": f"198.18.{ns}.{i + 1}"},
    }


def splice(ns: int, j: int) -> dict[str, Any]:
    return {
        "apiVersion": "socksplice.io/v1alpha1",
        "kind": "SocketSplice",
        "metadata": {"name": f"s{j}", "namespace": f"ns{ns}", "uid": f"s{ns}-{j}", "generation": 1},
        "spec": {"podSelector": {"matchLabels": {"app": f"a{j}"}}, "mode": "SpliceRelaxedReceive"},
    }


def splicenode(n: int) -> dict[str, Any]:
    policies = [
        {"name": f"ns{ns}/s{j}", "mode": "SpliceRelaxedReceive", "generation": 1, "matchedPods": 1}
        | {"attachedPods": 1}
        for ns in range(NAMESPACES)
        for j in range(SPLICES_PER_NS)
    ]
    status = {"nodeName": f"node{n}", "heartbeatTime": timestamp(datetime.now(UTC)), "policies": policies}
    return {
        "apiVersion": "socksplice.io/v1alpha1",
        "kind": "SpliceNode",
        "metadata": {"name": f"node{n}"},
    } | {"status": status}


def test_requests_per_minute_of_a_steady_cluster(api: FakeApi) -> None:  # noqa: F811
    async def run() -> dict[str, int]:
        op = Operator(api)
        op.start()
        for ns in range(NAMESPACES):
            for i in range(PODS_PER_NS):
                await op.event(PODS, "ADDED", pod(ns, i), settle=False)
        for n in range(NODE_COUNT):
            await op.event(NODES, "ADDED", splicenode(n), settle=False)
        for ns in range(NAMESPACES):
            for j in range(SPLICES_PER_NS):
                api.add("socketsplices", splice(ns, j))
                await op.event(SPLICES, "ADDED", splice(ns, j))
                await op.splice(f"ns{ns}/s{j}")
        started = len(api.requests)
        assert started == NAMESPACES * SPLICES_PER_NS  # one status write each, no reads
        for _ in range(12):  # one minute of heartbeats
            for n in range(NODE_COUNT):
                await op.event(NODES, "MODIFIED", splicenode(n))
        for ns in range(NAMESPACES):  # one pod replaced per namespace (same labels, new uid)
            await op.event(PODS, "DELETED", pod(ns, 0))
            await op.event(PODS, "ADDED", pod(ns, 0, uid=f"new-{ns}"))
        return {"minute": len(api.requests) - started}

    t0 = time.monotonic()
    figures = asyncio.run(run())
    print(f"requests in the minute: {figures['minute']}; {time.monotonic() - t0:.1f}s")
    assert figures["minute"] <= 2 * NAMESPACES  # a write per SocketSplice whose status changed
    assert handlers.RESYNC_SECONDS >= 30
