"""SocketSplice status following watch events, through kopf's own event processing.

Recorded Pods, SpliceNodes and SocketSplices go through ``kopf``'s real indexing and
``on.event`` dispatch (``process_resource_event``, the function kopf's watch loop calls for
each event); the status is written through ``kubeapi.Kube`` into an in-memory API server
(``fakeapi``), which also counts every request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import kopf
import pytest
from kopf._cogs.structs.references import Resource
from kopf._core.engines import indexing, posting
from kopf._core.reactor import inventory, processing

from socksplice.api.status import timestamp
from socksplice.operator import following, handlers
from tests.unit.fakeapi import FakeApi
from tests.unit.fixtures import recorded as apifixtures

PODS = Resource("", "v1", "pods", kind="Pod", namespaced=True)
NODES = Resource("socksplice.io", "v1alpha1", "splicenodes", kind="SpliceNode", namespaced=False)
SPLICES = Resource("socksplice.io", "v1alpha1", "socketsplices", kind="SocketSplice", namespaced=True)


class Operator:
    """kopf's registry of ``handlers``, its indexes, and the fake API the status is written to."""

    def __init__(self, api: FakeApi) -> None:
        self.api = api
        self.registry = kopf.get_default_registry()
        self.indexers = indexing.OperatorIndexers()
        self.indexers.ensure(self.registry._indexing.get_all_handlers())
        self.memories = inventory.ResourceMemories()
        self.settings = kopf.OperatorSettings()
        self.queue: asyncio.Queue[Any] = asyncio.Queue()

    def start(self) -> None:
        """Inside the running loop: where kopf's posting of Events finds its queue and settings."""
        posting.event_queue_var.set(self.queue)
        posting.event_queue_loop_var.set(asyncio.get_running_loop())
        posting.settings_var.set(self.settings)

    async def event(self, resource: Resource, kind: str, obj: dict[str, Any], settle: bool = True) -> None:
        """One watch event; for SocketSplices only indexing (their own handlers patch through kopf)."""
        if resource is SPLICES:
            await indexing.index_resource(
                indexers=self.indexers,
                registry=self.registry,
                settings=self.settings,
                resource=resource,
                raw_event={"type": kind, "object": obj},  # type: ignore[typeddict-item]
                memory=indexing.IndexingMemory(),
                logger=handlers.log,
                memo=kopf.Memo(),
                body=kopf.Body(obj),  # type: ignore[arg-type]
            )
            return
        await processing.process_resource_event(
            lifecycle=kopf.lifecycles.all_at_once,
            indexers=self.indexers,
            registry=self.registry,
            settings=self.settings,
            memories=self.memories,
            memobase=kopf.Memo(),
            resource=resource,
            raw_event={"type": kind, "object": obj},  # type: ignore[typeddict-item]
            event_queue=self.queue,
            no_throttling=True,
        )
        if settle:  # let the coalesced recomputations run
            await asyncio.sleep(handlers.STATUSES.coalesce * 2)

    async def splice(self, key: str) -> None:
        """What ``splice_changed`` does on create/resume, with the indexes kopf keeps."""
        indices = self.indexers.indices
        await handlers._refresh([key], {k: indices[k] for k in indices})


@pytest.fixture
def api() -> Iterator[FakeApi]:
    fake = FakeApi()
    handlers._kube = fake.kube()
    handlers.STATUSES.written.clear()
    handlers.STATUSES.coalesce = 0.01
    yield fake
    handlers._kube = None
    handlers.STATUSES.coalesce = following.COALESCE_SECONDS


def _fresh_nodes() -> list[dict[str, Any]]:
    nodes = apifixtures.items("splicenodes.json")
    for n in nodes:
        n["status"]["heartbeatTime"] = timestamp(datetime.now(UTC))
    return nodes


async def _started(api: FakeApi) -> Operator:
    op = Operator(api)
    op.start()
    for pod in apifixtures.items("pods.json"):
        await op.event(PODS, "ADDED", pod)
    for node in _fresh_nodes():
        await op.event(NODES, "ADDED", node)
    for splice in apifixtures.items("socketsplices.json"):
        api.add("socketsplices", splice)
        await op.event(SPLICES, "ADDED", splice)
        await op.splice(following.splice_key(splice))
    return op


def _status(api: FakeApi, name: str = "accel") -> dict[str, Any]:
    obj = api.get("socketsplices", name, "demo")
    assert obj is not None
    return dict(obj.get("status") or {})


def test_a_splicenode_change_updates_only_the_splices_on_that_node(api: FakeApi) -> None:
    async def run() -> None:
        op = await _started(api)
        before = _status(api)
        writes = api.counts()["PATCH socketsplices"]
        node_b = next(n for n in _fresh_nodes() if n["metadata"]["name"] == "node-b")
        node_b["status"]["lastError"] = "attach failed: EPERM"
        await op.event(NODES, "MODIFIED", node_b)
        after = _status(api)
        assert before["conditions"] != after["conditions"]
        degraded = next(c for c in after["conditions"] if c["type"] == "Degraded")
        assert degraded["status"] == "True" and "node-b: attach failed: EPERM" in degraded["message"]
        assert api.counts()["PATCH socketsplices"] == writes + 1
        # the same heartbeat again changes nothing: no write
        await op.event(NODES, "MODIFIED", node_b)
        assert api.counts()["PATCH socketsplices"] == writes + 1
        assert not any(m == "GET" for m, _ in api.requests)

    asyncio.run(run())


def test_a_pod_event_recomputes_the_splices_of_its_namespace(api: FakeApi) -> None:
    async def run() -> None:
        op = await _started(api)
        matched = _status(api)["matchedPods"]
        pod = next(p for p in apifixtures.items("pods.json") if p["metadata"]["name"] == "db")
        await op.event(PODS, "DELETED", pod)
        assert _status(api)["matchedPods"] == matched - 1
        await op.event(PODS, "ADDED", pod)
        assert _status(api)["matchedPods"] == matched
        assert not any(m == "GET" for m, _ in api.requests)

    asyncio.run(run())


def test_transitions_become_events_on_the_socketsplice(api: FakeApi) -> None:
    async def run() -> None:
        op = await _started(api)
        while not op.queue.empty():
            op.queue.get_nowait()
        node_b = next(n for n in _fresh_nodes() if n["metadata"]["name"] == "node-b")
        node_b["status"]["lastError"] = "attach failed: EPERM"
        await op.event(NODES, "MODIFIED", node_b)
        events = [op.queue.get_nowait() for _ in range(op.queue.qsize())]
        assert any(e.type == "Warning" and e.message.startswith("Degraded=True") for e in events)
        assert {e.ref["name"] for e in events} == {"accel"}

    asyncio.run(run())
