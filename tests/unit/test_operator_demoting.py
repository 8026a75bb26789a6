"""EndpointDemoted Events: which endpoints a SpliceNode newly reports demoted (pure, on SpliceNode
dicts), and the Warning kopf queues on the SocketSplice when a SpliceNode watch event brings one."""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from socksplice.api.status import timestamp
from socksplice.operator import handlers
from socksplice.operator.demoting import (
    MAX_EVENTS_PER_UPDATE,
    Demotions,
    Notice,
    event_message,
    new_demotions,
)
from tests.unit.fakeapi import FakeApi
from tests.unit.fixtures import recorded as apifixtures
from tests.unit.test_operator_following import NODES, _fresh_nodes, _started, api  # noqa: F401

STARTED = datetime(2025, 5, 2, 9, 0, tzinfo=UTC)
WAIT = "blocking receives that wait (3): tcp_bpf returns EAGAIN when a wait is woken without data"


def _endpoint(client: str, verdict: str, since: str, policy: str = "demo/accel") -> dict[str, Any]:
    return {
        "server": "demo/server",
        "client": client,
        "port": 8080,
        "policy": policy,
        "mode": "Auto",
        "verdict": verdict,
        "reason": WAIT if verdict == "Demoted" else "evidence: 3 of 20 connections, 12 of 60 s",
        "since": since,
        "connections": 3,
        "splicedConnections": 1 if verdict == "Demoted" else 0,
        "messages": 40,
        "bytes": 4096,
        "wouldDiffer": {"blocking_receive": 3} if verdict == "Demoted" else {},
        "didDiffer": {},
    }


def _node_a(*endpoints: dict[str, Any]) -> dict[str, Any]:
    """node-a's recorded SpliceNode status with these endpoints."""
    status: dict[str, Any] = apifixtures.node_statuses()["node-a"]
    status["endpoints"] = list(endpoints)
    return status


def test_an_endpoint_turning_demoted_is_new() -> None:
    before = _node_a(_endpoint("demo/client", "Audit", "2025-05-02T09:05:00Z"))
    after = _node_a(_endpoint("demo/client", "Demoted", "2025-05-02T09:06:00Z"))
    fresh = new_demotions(before, after)
    assert [(e.client, e.reason) for e in fresh] == [("demo/client", WAIT)]
    assert new_demotions(after, copy.deepcopy(after)) == []  # the same status again: nothing new


def test_demoted_stays_demoted_without_new_events() -> None:
    one = _node_a(_endpoint("demo/client", "Demoted", "2025-05-02T09:06:00Z"))
    two = _node_a(
        _endpoint("demo/client", "Demoted", "2025-05-02T09:06:00Z"),
        _endpoint("demo/server", "Demoted", "2025-05-02T09:07:00Z"),
    )
    assert [e.client for e in new_demotions(one, two)] == ["demo/server"]
    # demoted again later (a new pod of the same name): its since changed, so it is new
    again = _node_a(_endpoint("demo/client", "Demoted", "2025-05-02T10:00:00Z"))
    assert [e.client for e in new_demotions(one, again)] == ["demo/client"]


def test_a_node_seen_first_announces_only_demotions_since_the_start() -> None:
    status = _node_a(
        _endpoint("demo/client", "Demoted", "2025-05-02T08:00:00Z"),
        _endpoint("demo/server", "Demoted", "2025-05-02T09:01:00Z"),
    )
    assert [e.client for e in new_demotions(None, status, STARTED)] == ["demo/server"]
    assert new_demotions(None, status) == []


def test_statuses_of_older_agents_have_no_demotions() -> None:
    for status in apifixtures.node_statuses().values():
        assert new_demotions(None, status, STARTED) == []
        assert new_demotions(status, status) == []


def test_the_message_names_the_endpoint_node_and_reason() -> None:
    (e,) = new_demotions(None, _node_a(_endpoint("demo/client", "Demoted", "2025-05-02T09:06:00Z")), STARTED)
    assert event_message("node-a", e) == f"demo/client -> demo/server:8080 on node-a: demoted to TCP: {WAIT}"


def test_demotions_remember_per_node_and_bound_the_events() -> None:
    d = Demotions(started=STARTED)
    assert d.update("node-a", _node_a()) == []
    many = [_endpoint(f"demo/c-{i:02}", "Demoted", "2025-05-02T09:06:00Z") for i in range(25)]
    many.append(_endpoint("demo/x", "Demoted", "2025-05-02T09:06:00Z", policy="demo/other"))
    notices = d.update("node-a", _node_a(*many))
    assert len(notices) == MAX_EVENTS_PER_UPDATE + 2
    assert notices[0].policy == "demo/accel" and notices[0].message.startswith(
        "demo/c-00 -> demo/server:8080"
    )
    assert notices[-2:] == [
        Notice(
            "demo/accel", "5 more endpoints demoted to TCP on node-a: see kubectl describe splicenode node-a"
        ),
        Notice(
            "demo/other", "1 more endpoints demoted to TCP on node-a: see kubectl describe splicenode node-a"
        ),
    ]
    assert d.update("node-a", _node_a(*many)) == []
    assert d.update("node-a", None) == []  # deleted: forgotten
    assert d.update("node-a", _node_a(*many[:1]))[0].message.startswith("demo/c-00")  # after the start


def test_a_splicenode_event_posts_endpoint_demoted_on_the_socketsplice(api: FakeApi) -> None:  # noqa: F811
    async def run() -> list[Any]:
        handlers.DEMOTIONS.seen.clear()
        op = await _started(api)
        while not op.queue.empty():
            op.queue.get_nowait()
        node_a = next(n for n in _fresh_nodes() if n["metadata"]["name"] == "node-a")
        now = timestamp(datetime.now(UTC) + timedelta(seconds=1))
        node_a["status"]["endpoints"] = [_endpoint("demo/client", "Demoted", now)]
        await op.event(NODES, "MODIFIED", node_a)
        await op.event(NODES, "MODIFIED", copy.deepcopy(node_a))  # no second Event for the same demotion
        return [op.queue.get_nowait() for _ in range(op.queue.qsize())]

    events = asyncio.run(run())
    demoted = [e for e in events if e.reason == "EndpointDemoted"]
    assert len(demoted) == 1, events
    event = demoted[0]
    assert event.type == "Warning"
    assert (event.ref["kind"], event.ref["namespace"], event.ref["name"]) == ("SocketSplice", "demo", "accel")
    assert event.message == f"demo/client -> demo/server:8080 on node-a: demoted to TCP: {WAIT}"
