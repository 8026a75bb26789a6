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


# --- Auto: endpoint verdicts, demoted endpoints, observation -------------------------------------


def _auto_body() -> dict[str, Any]:
    body = apifixtures.splice()
    body["spec"]["mode"] = "Auto"
    return body


def _endpoint(
    server: str, client: str, verdict: str, reason: str, since: str, port: int = 8080
) -> dict[str, Any]:
    return {
        "server": server,
        "client": client,
        "port": port,
        "policy": "demo/accel",
        "mode": "Auto",
        "verdict": verdict,
        "reason": reason,
        "since": since,
        "connections": 30,
        "splicedConnections": 25 if verdict != "Audit" else 0,
        "messages": 400,
        "bytes": 65536,
        "wouldDiffer": {"waitall": 2} if verdict == "Demoted" else {},
        "didDiffer": {},
    }


WAITALL = "MSG_WAITALL receives (2): tcp_bpf returns what has arrived instead of waiting for the full length"


def _auto_nodes(observation_b: str = "") -> dict[str, dict[str, Any]]:
    nodes = _fresh_node_b(1)
    a, b = nodes["node-a"], nodes["node-b"]
    a["policies"][0].update(
        {"mode": "Auto", "endpointsAudit": 1, "endpointsSpliced": 2, "endpointsDemoted": 1}
    )
    a["endpoints"] = [
        _endpoint("demo/server", "demo/client", "Demoted", WAITALL, "2025-05-02T09:09:00Z"),
        _endpoint(
            "demo/server", "demo/server", "Spliced", "evidence: 30 connections", "2025-05-02T09:08:00Z"
        ),
        # another SocketSplice's endpoint on the same node is not ours
        {
            **_endpoint("demo/server", "demo/client", "Demoted", "x", "2025-05-02T09:10:00Z"),
            "policy": "demo/other",
        },
    ]
    b["policies"][0].update(
        {"mode": "Auto", "endpointsAudit": 3, "endpointsSpliced": 0, "endpointsDemoted": 1}
    )
    b["endpoints"] = [
        _endpoint(
            "demo/db",
            "demo/client",
            "Demoted",
            "close with unread bytes (1): TCP sends RST",
            "2025-05-02T09:10:10Z",
            5432,
        )
    ]
    b["observation"] = observation_b
    return nodes


def test_auto_sums_endpoint_verdicts_and_lists_demoted_newest_first() -> None:
    status = _status(_auto_nodes(), _auto_body())
    assert status["endpoints"] == {"audit": 4, "spliced": 2, "demoted": 2}
    assert status["demoted"] == [
        {
            "node": "node-b",
            "server": "demo/db",
            "client": "demo/client",
            "port": 5432,
            "reason": "close with unread bytes (1): TCP sends RST",
            "since": "2025-05-02T09:10:10Z",
        },
        {
            "node": "node-a",
            "server": "demo/server",
            "client": "demo/client",
            "port": 8080,
            "reason": WAITALL,
            "since": "2025-05-02T09:09:00Z",
        },
    ]
    node_a = status["nodes"][0]
    assert (node_a["endpointsAudit"], node_a["endpointsSpliced"], node_a["endpointsDemoted"]) == (1, 2, 1)
    assert _conditions(status) == {
        "Ready": ("True", "Accelerated"),
        "Degraded": ("False", "AsExpected"),  # a demotion is Auto working, not a failure
        "Observing": ("True", "Observing"),
    }


def test_auto_status_matches_the_crd() -> None:
    from tests.unit.crdcheck import load_crd, schema_errors, schema_of

    schema = schema_of(load_crd("socketsplice.yaml"))["properties"]["status"]
    status = _status(_auto_nodes("tracefs is not mounted"), _auto_body())
    assert schema_errors(status, schema, ".status") == []
    node_schema = schema_of(load_crd("splicenode.yaml"))["properties"]["status"]
    for node in _auto_nodes("tracefs is not mounted").values():
        assert schema_errors(node, node_schema, ".status") == []


def test_the_demoted_list_is_bounded() -> None:
    from socksplice.api.status import MAX_DEMOTED

    nodes = _auto_nodes()
    nodes["node-a"]["endpoints"] = [
        _endpoint("demo/server", f"demo/client-{i:02}", "Demoted", WAITALL, f"2025-05-02T09:{i:02}:00Z")
        for i in range(30)
    ]
    nodes["node-a"]["policies"][0]["endpointsDemoted"] = 30
    status = _status(nodes, _auto_body())
    assert len(status["demoted"]) == MAX_DEMOTED == 20
    assert status["demoted"][0]["client"] == "demo/client-29"  # the newest
    assert status["endpoints"]["demoted"] == 31  # the count covers what the list leaves out


def test_observation_unavailable_says_auto_acts_as_dry_run() -> None:
    status = _status(
        _auto_nodes("tracepoint syscalls/sys_exit_recvmsg: tracefs is not mounted"), _auto_body()
    )
    observing = next(c for c in status["conditions"] if c["type"] == "Observing")
    assert (observing["status"], observing["reason"]) == ("False", "ObservationUnavailable")
    assert observing["message"] == (
        "node-b: tracepoint syscalls/sys_exit_recvmsg: tracefs is not mounted "
        "(Auto acts as DryRun there: nothing is spliced, endpoints stay Audit)"
    )
    assert status["nodes"][1]["observation"] == "tracepoint syscalls/sys_exit_recvmsg: tracefs is not mounted"
    assert "observation" not in status["nodes"][0]
    assert is_bad("Observing=False: ObservationUnavailable: node-b: ...")
    assert not is_bad("Observing=True: Observing: every node")


def test_dry_run_reports_observation_too() -> None:
    body = _auto_body()
    body["spec"]["mode"] = "DryRun"
    status = _status(_auto_nodes("no tracefs"), body)
    observing = next(c for c in status["conditions"] if c["type"] == "Observing")
    assert observing["message"] == "node-b: no tracefs (verdicts stay Audit there)"


def test_splice_relaxed_receive_has_no_observing_condition_and_zero_counts_from_old_agents() -> None:
    status = _status()
    assert [c["type"] for c in status["conditions"]] == ["Ready", "Degraded"]
    assert (status["endpoints"], status["demoted"]) == ({"audit": 0, "spliced": 0, "demoted": 0}, [])


def test_a_silent_node_s_endpoints_are_not_counted() -> None:
    nodes = _auto_nodes()
    nodes["node-b"]["heartbeatTime"] = "2025-05-02T08:00:00Z"
    status = _status(nodes, _auto_body())
    assert status["endpoints"] == {"audit": 1, "spliced": 2, "demoted": 1}
    assert [d["node"] for d in status["demoted"]] == ["node-a"]
