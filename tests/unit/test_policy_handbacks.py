"""NetworkPolicy handbacks in status: the SpliceNode entry, the SocketSplice roll-up (both checked
against the CRDs) and the ``HandedBackToTCP`` Events the operator posts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from socksplice.api.nodestatus import PolicyStatus
from socksplice.operator.handingback import Handbacks
from tests.unit.crdcheck import load_crd, schema_errors, schema_of
from tests.unit.test_operator_rollup import _fresh_node_b, _status

REASON = "NetworkPolicy changed: demo/deny-server"


def handed_back(nodes: dict[str, dict[str, Any]], when: str = "2025-05-02T09:10:00Z") -> None:
    nodes["node-a"]["policies"][0].update(
        {"policyHandbacks": 100, "lastHandback": {"time": when, "reason": REASON}}
    )


def test_a_policy_status_round_trips_its_handback() -> None:
    p = PolicyStatus(
        "demo/accel",
        "SpliceRelaxedReceive",
        policy_handbacks=4,
        handback_time=datetime(2025, 5, 2, 9, 10, tzinfo=UTC),
        handback_reason=REASON,
    )
    raw = p.to_dict()
    assert raw["policyHandbacks"] == 4
    assert raw["lastHandback"] == {"time": "2025-05-02T09:10:00Z", "reason": REASON}
    assert PolicyStatus.from_dict(raw) == p


def test_the_rollup_carries_each_nodes_handbacks_and_matches_the_crds() -> None:
    nodes = _fresh_node_b(1)
    handed_back(nodes)
    status = _status(nodes)
    [a] = [n for n in status["nodes"] if n["name"] == "node-a"]
    assert a["policyHandbacks"] == 100 and a["lastHandback"]["reason"] == REASON
    schema = schema_of(load_crd("socketsplice.yaml"))["properties"]["status"]
    assert schema_errors(status, schema, ".status") == []
    node_schema = schema_of(load_crd("splicenode.yaml"))["properties"]["status"]
    for node in nodes.values():
        assert schema_errors(node, node_schema, ".status") == []


def test_one_event_per_new_handback_and_none_for_old_ones_after_a_restart() -> None:
    nodes = _fresh_node_b(1)
    handed_back(nodes)
    status = nodes["node-a"]
    key = status["policies"][0]["name"]
    # An operator started after the handback: not announced again.
    assert Handbacks(started=datetime(2025, 5, 2, 9, 11, tzinfo=UTC)).update("node-a", status) == []
    events = Handbacks(started=datetime(2025, 5, 2, 9, 0, tzinfo=UTC))
    [notice] = events.update("node-a", status)
    assert notice.policy == key
    assert (
        notice.message
        == f"on node-a: spliced connections handed back to TCP (100 directions handed back so far): {REASON}"
    )
    assert events.update("node-a", status) == []  # the same handback: once
    handed_back(nodes, "2025-05-02T09:12:00Z")
    assert len(events.update("node-a", nodes["node-a"])) == 1  # another change
    assert events.update("node-a", None) == []
