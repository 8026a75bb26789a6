"""SocketSplice status rolled up from recorded Pods and SpliceNodes (tests/unit/fixtures/api)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from socksplice.api.status import rollup, set_condition
from socksplice.operator.rolling import is_bad, splice_status, transitions
from tests.unit.fixtures import recorded as apifixtures

NOW = datetime(2025, 5, 2, 9, 10, 30, tzinfo=UTC)


def _status(
    nodes: dict[str, dict[str, Any]] | None = None, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    outcome = splice_status(
        body or apifixtures.splice(),
        apifixtures.items("pods.json"),
        apifixtures.node_statuses() if nodes is None else nodes,
        NOW,
    )
    assert outcome.result == "ok"
    return outcome.status


def _conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def _fresh_node_b(attached: int, **extra: Any) -> dict[str, dict[str, Any]]:
    nodes = apifixtures.node_statuses()
    nodes["node-b"]["heartbeatTime"] = "2025-05-02T09:10:00Z"
    nodes["node-b"]["policies"] = [
        {
            "name": "demo/accel",
            "mode": "SpliceRelaxedReceive",
            "generation": 2,
            "matchedPods": 1,
            "attachedPods": attached,
        }
    ]
    nodes["node-b"].update(extra)
    return nodes


def test_silent_agent_makes_the_splice_not_ready() -> None:
    status = _status()
    assert status["observedGeneration"] == 2
    assert (status["matchedPods"], status["acceleratedPods"], status["nodeCount"]) == (3, 2, 2)
    assert status["nodes"] == [
        {
            "name": "node-a",
            "matchedPods": 2,
            "attachedPods": 2,
            "mode": "SpliceRelaxedReceive",
            "pairsSpliced": 3,
        },
        {
            "name": "node-b",
            "matchedPods": 1,
            "attachedPods": 0,
            "mode": "SpliceRelaxedReceive",
            "message": "agent silent since 2025-05-02T08:00:00Z",
        },
    ]
    assert _conditions(status) == {"Ready": ("False", "AgentMissing"), "Degraded": ("True", "AgentMissing")}
    ready = status["conditions"][0]
    assert ready["message"] == "2/3 pods attached; node-b: 0/1 attached"
    assert ready["lastTransitionTime"] == "2025-05-02T09:10:30Z"


def test_every_pod_attached_is_ready() -> None:
    status = _status(_fresh_node_b(attached=1))
    assert (status["matchedPods"], status["acceleratedPods"]) == (3, 3)
    assert _conditions(status) == {"Ready": ("True", "Accelerated"), "Degraded": ("False", "AsExpected")}
    assert status["conditions"][0]["message"] == "3/3 pods attached on 2 node(s)"


def test_agent_still_attaching() -> None:
    status = _status(_fresh_node_b(attached=0))
    assert _conditions(status) == {"Ready": ("False", "Attaching"), "Degraded": ("False", "AsExpected")}


def test_agent_error_and_kernel_refusal_degrade() -> None:
    status = _status(_fresh_node_b(attached=1, lastError="demo/db: attach: EPERM"))
    assert _conditions(status)["Degraded"] == ("True", "AgentError")
    assert status["conditions"][1]["message"] == "node-b: demo/db: attach: EPERM"
    nodes = _fresh_node_b(attached=0, doctor=[{"name": "map.sockhash", "ok": False, "severity": "fatal"}])
    status = _status(nodes)
    assert status["nodes"][1]["message"] == "kernel cannot splice: map.sockhash"


def test_node_without_splicenode() -> None:
    nodes = apifixtures.node_statuses()
    del nodes["node-b"]
    status = _status(nodes)
    assert status["nodes"][1]["message"] == "no SpliceNode: is the agent running on this node?"


def test_attached_is_capped_at_matched() -> None:
    nodes = _fresh_node_b(attached=5)
    assert _status(nodes)["acceleratedPods"] == 3


def test_nothing_selected_is_ready() -> None:
    body = apifixtures.splice()
    body["spec"]["podSelector"] = {"matchLabels": {"app": "nope"}}
    status = _status(body=body)
    assert (status["matchedPods"], status["nodeCount"], status["nodes"]) == (0, 0, [])
    assert _conditions(status)["Ready"] == ("True", "NoPodsSelected")


def test_transition_time_kept_while_status_holds() -> None:
    first = _status()
    body = apifixtures.splice()
    body["status"] = first
    later = splice_status(
        body, apifixtures.items("pods.json"), apifixtures.node_statuses(), NOW + timedelta(seconds=30)
    )
    assert later.status["conditions"] == first["conditions"]
    assert later.events == ()
    recovered = splice_status(
        body, apifixtures.items("pods.json"), _fresh_node_b(1), NOW + timedelta(seconds=60)
    )
    ready = recovered.status["conditions"][0]
    assert ready["lastTransitionTime"] == "2025-05-02T09:11:30Z"
    assert recovered.events == (
        "Ready=True: Accelerated: 3/3 pods attached on 2 node(s)",
        "Degraded=False: AsExpected: no agent reports a problem",
    )


def test_invalid_spec_gets_a_condition() -> None:
    body = apifixtures.splice()
    body["spec"]["ports"] = [80, 80]
    outcome = splice_status(body, apifixtures.items("pods.json"), {}, NOW)
    assert outcome.result == "invalid"
    ready = outcome.status["conditions"][0]
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert "spec.ports[1]: duplicate port 80" in ready["message"]


def test_set_condition_and_transitions() -> None:
    old = [set_condition([], "Ready", "True", "Accelerated", "m", 1, NOW)]
    same = set_condition(old, "Ready", "True", "Accelerated", "other message", 2, NOW + timedelta(hours=1))
    assert same["lastTransitionTime"] == "2025-05-02T09:10:30Z"
    assert same["observedGeneration"] == 2
    assert transitions(old, [same]) == ()
    assert transitions(old, [{**same, "reason": "Attaching", "status": "False"}]) == (
        "Ready=False: Attaching: other message",
    )


def test_rollup_ignores_pods_of_other_namespaces() -> None:
    from socksplice.api.pods import pod_ref_from_api
    from socksplice.api.socketsplice import parse_socketsplice

    body = apifixtures.splice()
    body["metadata"]["namespace"] = "other"
    status = rollup(
        parse_socketsplice(body), [pod_ref_from_api(p) for p in apifixtures.items("pods.json")], {}, [], NOW
    )
    assert (status["matchedPods"], [n["name"] for n in status["nodes"]]) == (1, ["node-a"])


def test_warning_events() -> None:
    assert is_bad("Ready=False: AgentMissing: x")
    assert is_bad("Degraded=True: AgentError: y")
    assert not is_bad("Degraded=False: AsExpected: no agent reports a problem")
    assert not is_bad("Ready=True: Accelerated: 3/3")
