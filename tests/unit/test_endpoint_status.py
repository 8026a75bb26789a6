"""Endpoint verdicts in the SpliceNode status: the dict the agent writes, read back, and the CRD schema."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from socksplice.api.nodestatus import (
    MAX_ENDPOINTS,
    EndpointStatus,
    NodeStatus,
    PolicyStatus,
    bounded_endpoints,
)
from socksplice.api.socketsplice import GROUP, VERSION
from tests.unit.crdcheck import api_errors_for, load_crd, schema_errors, schema_of

NOW = datetime(2025, 5, 2, 9, 10, 30, tzinfo=UTC)
SCHEMA = schema_of(load_crd("splicenode.yaml"))["properties"]["status"]

# One endpoint as the agent writes it into a SpliceNode's status.endpoints.
DEMOTED_DICT: dict[str, Any] = {
    "server": "shop/redis-0",
    "client": "shop/web-7d9f-abcde",
    "port": 6379,
    "policy": "shop/cache",
    "mode": "Auto",
    "verdict": "Demoted",
    "reason": "blocking receives that wait (3): tcp_bpf returns EAGAIN when a wait is woken without data",
    "since": "2025-05-02T09:10:00Z",
    "connections": 42,
    "splicedConnections": 40,
    "messages": 900,
    "bytes": 123456,
    "wouldDiffer": {"blocking_receive": 3},
    "didDiffer": {},
}

DEMOTED = EndpointStatus(
    server="shop/redis-0",
    client="shop/web-7d9f-abcde",
    port=6379,
    policy="shop/cache",
    mode="Auto",
    verdict="Demoted",
    reason=DEMOTED_DICT["reason"],
    since=datetime(2025, 5, 2, 9, 10, tzinfo=UTC),
    connections=42,
    spliced_connections=40,
    messages=900,
    bytes=123456,
    would_differ={"blocking_receive": 3},
)

SPLICED = EndpointStatus("shop/api-0", "shop/web-7d9f-abcde", 8080, "shop/cache", "Auto", "Spliced", "ok")
AUDIT = EndpointStatus(
    "shop/api-0", "shop/api-0", 8080, "shop/cache", "Auto", "Audit", "evidence: 3 of 20 connections"
)

NODE = NodeStatus(
    node_name="node-a",
    heartbeat_time=NOW,
    pods=("shop/api-0", "shop/redis-0", "shop/web-7d9f-abcde"),
    policies=(
        PolicyStatus(
            "shop/cache", "Auto", 1, 3, 3, endpoints_audit=1, endpoints_spliced=1, endpoints_demoted=1
        ),
    ),
    endpoints=(DEMOTED, SPLICED, AUDIT),
)


def test_endpoint_reads_from_the_agents_dict() -> None:
    assert EndpointStatus.from_dict(DEMOTED_DICT) == DEMOTED
    assert DEMOTED.to_dict() == DEMOTED_DICT
    assert DEMOTED.describe() == "shop/web-7d9f-abcde -> shop/redis-0:6379"


def test_only_kinds_seen_are_kept() -> None:
    raw = {**DEMOTED_DICT, "wouldDiffer": {"blocking_receive": 3, "waitall": 0}, "didDiffer": {"splice": 0}}
    e = EndpointStatus.from_dict(raw)
    assert (e.would_differ, e.did_differ) == ({"blocking_receive": 3}, {})
    assert replace(e, did_differ={"fionread": 0, "splice": 2}).to_dict()["didDiffer"] == {"splice": 2}


def test_a_missing_since_and_counts_default() -> None:
    e = EndpointStatus.from_dict({"server": "a/s", "client": "a/c", "port": 80, "verdict": "Audit"})
    assert (e.since, e.connections, e.would_differ, e.mode) == (None, 0, {}, "Auto")
    assert "since" not in e.to_dict()


def test_node_status_round_trip_with_endpoints() -> None:
    raw = NODE.to_dict()
    assert [e["verdict"] for e in raw["endpoints"]] == ["Demoted", "Spliced", "Audit"]
    assert raw["observation"] == "" and raw["endpointsOmitted"] == 0
    assert raw["policies"][0] | {"name": ""} == {
        "name": "",
        "mode": "Auto",
        "generation": 1,
        "matchedPods": 3,
        "attachedPods": 3,
        "endpointsAudit": 1,
        "endpointsSpliced": 1,
        "endpointsDemoted": 1,
    }
    assert NodeStatus.from_dict(raw) == NODE
    blind = replace(
        NODE, observation="tracepoint syscalls/sys_exit_recvfrom: not found (tracefs not mounted)"
    )
    assert NodeStatus.from_dict(blind.to_dict()) == blind


def test_node_status_with_endpoints_matches_the_crd() -> None:
    raw = replace(NODE, observation="tracefs not mounted").to_dict()
    assert schema_errors(raw, SCHEMA, ".status") == []
    obj = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SpliceNode",
        "metadata": {"name": "node-a"},
        "status": raw,
    }
    assert api_errors_for(load_crd("splicenode.yaml"), obj) == []
    bad = replace(NODE, endpoints=(replace(DEMOTED, verdict="Maybe"),)).to_dict()
    assert schema_errors(bad, SCHEMA, ".status") == [
        ".status.endpoints[0].verdict: Unsupported value: 'Maybe'"
    ]


def test_the_list_is_bounded_demoted_first() -> None:
    many = tuple(
        EndpointStatus("shop/api-0", f"shop/client-{i:03}", 8080, "shop/cache", "Auto", "Audit")
        for i in range(250)
    )
    node = replace(NODE, endpoints=(*many, SPLICED, DEMOTED))
    raw = node.to_dict()
    assert len(raw["endpoints"]) == MAX_ENDPOINTS == SCHEMA["properties"]["endpoints"]["maxItems"]
    assert raw["endpointsOmitted"] == 52
    assert [e["verdict"] for e in raw["endpoints"][:3]] == ["Demoted", "Spliced", "Audit"]
    assert raw["endpoints"][2]["client"] == "shop/client-000"
    assert schema_errors(raw, SCHEMA, ".status") == []
    back = NodeStatus.from_dict(raw)
    assert (len(back.endpoints), back.endpoints_omitted) == (MAX_ENDPOINTS, 52)
    assert back.to_dict()["endpointsOmitted"] == 52  # what was left out stays counted
    listed, omitted = bounded_endpoints([AUDIT, DEMOTED], limit=1)
    assert (listed, omitted) == ([DEMOTED], 1)


def test_older_agents_statuses_read_with_no_endpoints() -> None:
    from tests.unit.fixtures import recorded as apifixtures

    for raw in apifixtures.node_statuses().values():
        node = NodeStatus.from_dict(raw)
        assert (node.endpoints, node.observation) == ((), "")
        assert all(p.endpoints_demoted == 0 for p in node.policies)
