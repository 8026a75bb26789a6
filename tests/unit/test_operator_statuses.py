"""``following.Statuses``: one computation per burst of changes, and no write with an older view.

Indexes are plain mappings of the shape kopf's indexes have (key → iterable of values), filled
with recorded objects; the write is a coroutine the test holds open to interleave changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from prometheus_client.registry import CollectorRegistry

from socksplice.api.status import timestamp
from socksplice.operator.following import Statuses, find_splice
from socksplice.operator.metrics import OperatorMetrics
from socksplice.operator.rolling import pod_refs, status_nodes
from tests.unit.fixtures import recorded as apifixtures

KEY = "demo/accel"


def indexes() -> tuple[dict[str, list[Any]], dict[str, list[Any]], dict[str, list[dict[str, Any]]]]:
    pods: dict[str, list[Any]] = {}
    for ref in pod_refs(apifixtures.items("pods.json")):
        pods.setdefault(ref.namespace, []).append(ref)
    nodes = {}
    for name, status in apifixtures.node_statuses().items():
        status["heartbeatTime"] = timestamp(datetime.now(UTC))
        nodes[name] = [status]
    return {"demo": [apifixtures.splice()]}, pods, nodes


class Writes:
    """Records the statuses written; with ``hold_first``, the first write waits for ``gate``."""

    def __init__(self, hold_first: bool = False) -> None:
        self.statuses: list[dict[str, Any]] = []
        self.gate = asyncio.Event()
        self.held = hold_first

    async def __call__(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        if self.held:
            self.held = False
            await self.gate.wait()
        self.statuses.append(dict(status))


def statuses(writes: Writes) -> Statuses:
    s = Statuses(writes, lambda body, line, bad: None, OperatorMetrics(CollectorRegistry()))
    s.coalesce = 0.01
    return s


def test_a_burst_of_changes_is_computed_once() -> None:
    async def run() -> None:
        writes = Writes()
        s = statuses(writes)
        splices, pods, nodes = indexes()
        results = await asyncio.gather(*(s.refresh(KEY, splices, pods, nodes) for _ in range(10)))
        assert sum(r is not None for r in results) == 1
        assert len(writes.statuses) == 1
        assert s.on_node("node-b") == [KEY] and s.on_node("node-z") == []
        assert status_nodes(writes.statuses[0]) == {"node-a", "node-b"}
        # nothing changed: computed again, not written again
        assert await s.refresh(KEY, splices, pods, nodes) is not None
        assert len(writes.statuses) == 1

    asyncio.run(run())


def test_a_change_during_a_write_is_written_after_it() -> None:
    async def run() -> None:
        writes = Writes(hold_first=True)
        s = statuses(writes)
        splices, pods, nodes = indexes()
        first = asyncio.create_task(s.refresh(KEY, splices, pods, nodes))
        await asyncio.sleep(0.05)  # computed, its write held open
        pods["demo"] = [p for p in pods["demo"] if p.name != "db"]  # a pod deleted meanwhile
        second = asyncio.create_task(s.refresh(KEY, splices, pods, nodes))
        await asyncio.sleep(0.05)
        writes.gate.set()
        await asyncio.gather(first, second)
        assert [w["matchedPods"] for w in writes.statuses] == [3, 2]
        assert s.written[KEY]["matchedPods"] == 2

    asyncio.run(run())


def test_a_deleted_splice_is_forgotten() -> None:
    async def run() -> None:
        writes = Writes()
        s = statuses(writes)
        splices, pods, nodes = indexes()
        await s.refresh(KEY, splices, pods, nodes)
        assert find_splice(splices, KEY) is not None
        assert await s.refresh(KEY, {}, pods, nodes) is None
        assert KEY not in s.written

    asyncio.run(run())
