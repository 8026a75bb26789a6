"""Every CRD in crds/ as the API server would check it: the CRD itself, printer columns that point
at real fields, defaults, CEL rules, and the status documents the agent and operator write."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from socksplice.api.nodestatus import CheckResult, Hazard, NodeStatus, PolicyStatus
from socksplice.api.pods import pod_ref_from_api
from socksplice.api.socketsplice import GROUP, VERSION, parse_socketsplice
from socksplice.api.status import rollup
from socksplice.operator import benchmarks
from tests.unit.crdcheck import (
    CRD_DIR,
    HAVE_CEL,
    api_errors_for,
    load_crd,
    schema_errors,
    schema_of,
    structural_problems,
)
from tests.unit.fixtures import recorded as apifixtures

CRDS = sorted(p.name for p in CRD_DIR.glob("*.yaml"))
NOW = datetime(2025, 5, 2, 9, 10, 30, tzinfo=UTC)


def test_the_three_crds_exist() -> None:
    assert CRDS == ["socketsplice.yaml", "splicebenchmark.yaml", "splicenode.yaml"]


@pytest.mark.parametrize("name", CRDS)
def test_crd_is_accepted(name: str) -> None:
    crd = load_crd(name)
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    spec = crd["spec"]
    assert spec["group"] == GROUP
    assert crd["metadata"]["name"] == f"{spec['names']['plural']}.{GROUP}"
    assert [(v["name"], v["served"], v["storage"]) for v in spec["versions"]] == [(VERSION, True, True)]
    assert spec["versions"][0]["subresources"] == {"status": {}}
    assert "socksplice" in spec["names"]["categories"]
    assert structural_problems(schema_of(crd)) == []


def _resolves(schema: dict[str, Any], json_path: str) -> bool:
    node = schema
    for part in re.sub(r"\[\?\(.*?\)\]", "[]", json_path).lstrip(".").split("."):
        name = part.split("[")[0]
        if name == "metadata":
            return True
        props = node.get("properties", {})
        if name not in props:
            return False
        node = props[name]
        if "[" in part:
            node = node["items"]
    return True


@pytest.mark.parametrize("name", CRDS)
def test_printer_columns_point_at_fields(name: str) -> None:
    crd = load_crd(name)
    columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
    assert columns[-1] == {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
    for column in columns:
        assert column["type"] in ("string", "integer", "number", "boolean", "date")
        assert _resolves(schema_of(crd), column["jsonPath"]), column


def test_splicenode_columns_tell_what_is_happening() -> None:
    columns = [
        c["name"].upper()
        for c in load_crd("splicenode.yaml")["spec"]["versions"][0]["additionalPrinterColumns"]
    ]
    assert columns == [
        "READY",
        "PODS",
        "SOCKETS",
        "KERNEL",
        "AGENT",
        "HEARTBEAT",
        "LAST-ERROR",
        "DRAIN",
        "OBSERVATION",
        "AGE",
    ]
    crd = load_crd("splicenode.yaml")
    assert crd["spec"]["scope"] == "Cluster"


# --- SpliceNode -------------------------------------------------------------------------------


AGENT_STATUS = NodeStatus(
    node_name="node-a",
    agent_version="0.1.0",
    kernel="6.18.0-1-amd64",
    heartbeat_time=NOW,
    pods=("demo/client", "demo/server"),
    spliced_sockets=4,
    totals={"pairs_spliced": 10, "fail_open": 1},
    policies=(PolicyStatus("demo/accel", "SpliceRelaxedReceive", 2, 2, 2, 10, 123456),),
    pin_dir="/sys/fs/bpf/socksplice",
    adopted=True,
)


def _splicenode(status: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SpliceNode",
        "metadata": {"name": "node-a"},
        "status": status,
    }


def test_splicenode_status_matches_the_schema() -> None:
    crd = load_crd("splicenode.yaml")
    status = replace(
        AGENT_STATUS,
        doctor=(CheckResult("helper.x", False, "warn", "missing", "upgrade"),),
        hazards=(Hazard("eagain", True, "d"),),
    ).to_dict()
    assert schema_errors(status, schema_of(crd)["properties"]["status"], ".status") == []
    assert api_errors_for(crd, _splicenode(status)) == []
    assert status["heartbeatTime"] == "2025-05-02T09:10:30Z"
    assert status["attachedPods"] == 2 and status["pods"] == ["demo/client", "demo/server"]
    assert [c["name"] for c in status["doctor"]] == ["helper.x"]
    assert status["conditions"][0]["status"] == "True"


def test_splicenode_status_reads_back() -> None:
    for status in [AGENT_STATUS, *map(NodeStatus.from_dict, apifixtures.node_statuses().values())]:
        assert NodeStatus.from_dict(status.to_dict()) == status


def test_splicenode_ready_says_why_not() -> None:
    failing = replace(AGENT_STATUS, last_error="demo/client: attach: EPERM").to_dict()
    assert failing["conditions"][0] | {"message": ""} == {
        "type": "Ready",
        "status": "False",
        "reason": "ReconcileFailed",
        "message": "",
    }
    assert failing["lastError"] == "demo/client: attach: EPERM"
    fatal = (CheckResult("map.sockhash", False, "fatal", "EINVAL", "upgrade"),)
    refused = replace(AGENT_STATUS, doctor=fatal).to_dict()
    assert refused["conditions"][0]["reason"] == "KernelUnsupported"
    assert refused["conditions"][0]["message"] == "failed checks: map.sockhash"


def test_splicenode_fixtures_match_the_schema() -> None:
    schema = schema_of(load_crd("splicenode.yaml"))["properties"]["status"]
    for status in apifixtures.node_statuses().values():
        assert schema_errors(status, schema, ".status") == []


# --- SocketSplice status as rolled up -----------------------------------------------------------


def test_rollup_matches_the_socketsplice_status_schema() -> None:
    splice = parse_socketsplice(apifixtures.splice())
    pods = [pod_ref_from_api(p) for p in apifixtures.items("pods.json")]
    status = rollup(splice, pods, apifixtures.node_statuses(), [], NOW)
    schema = schema_of(load_crd("socketsplice.yaml"))["properties"]["status"]
    assert schema_errors(status, schema, ".status") == []


# --- SpliceBenchmark ----------------------------------------------------------------------------


def _bench(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SpliceBenchmark",
        "metadata": {"name": "b", "namespace": "n"},
        "spec": spec,
    }


BENCH_CRD = load_crd("splicebenchmark.yaml")


def test_benchmark_defaults() -> None:
    from tests.unit.crdcheck import prune_nulls_and_default

    body = prune_nulls_and_default(
        _bench({"nodeName": "node-a", "image": "socksplice:dev"}), schema_of(BENCH_CRD)
    )
    assert api_errors_for(BENCH_CRD, body) == []
    assert body["spec"]["durationSeconds"] == 10
    assert body["spec"]["settleSeconds"] == 5
    assert [w["name"] for w in body["spec"]["workloads"]] == ["rr-64", "stream-16k"]
    parsed = benchmarks.parse_benchmark({**body, "metadata": {"name": "b", "namespace": "n", "uid": "u"}})
    assert parsed.workloads[0] == benchmarks.Workload("rr-64", "rr", 64, 20000)


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ({"image": "i"}, ".spec.nodeName: Required value"),
        (
            {"nodeName": "n", "image": "i", "durationSeconds": 0},
            ".spec.durationSeconds: should be greater than or equal to 1",
        ),
        ({"nodeName": "n", "image": "i", "workloads": []}, ".spec.workloads: should have at least 1 items"),
        (
            {"nodeName": "n", "image": "i", "workloads": [{"name": "x", "type": "udp", "size": 1}]},
            ".spec.workloads[0].type: Unsupported value: 'udp'",
        ),
        (
            {"nodeName": "n", "image": "i", "workloads": [{"name": "X", "type": "rr", "size": 64}]},
            ".spec.workloads[0].name: should match",
        ),
        (
            {
                "nodeName": "n",
                "image": "i",
                "workloads": [
                    {"name": "a", "type": "rr", "size": 8},
                    {"name": "a", "type": "stream", "size": 8},
                ],
            },
            ".spec.workloads[1]: Duplicate value",
        ),
    ],
)
def test_benchmark_invalid_specs_are_rejected(spec: dict[str, Any], error: str) -> None:
    errors = api_errors_for(BENCH_CRD, _bench(spec))
    assert any(e.startswith(error) for e in errors), errors


def test_benchmark_cel_rr_needs_the_header() -> None:
    if not HAVE_CEL:
        pytest.skip("cel-python is not installed")
    spec = {"nodeName": "n", "image": "i", "workloads": [{"name": "tiny", "type": "rr", "size": 4}]}
    assert api_errors_for(BENCH_CRD, _bench(spec)) == [
        ".spec.workloads[0].size: Invalid value: rr requests carry an 8-byte header: size must be at least 8"
    ]
    spec["workloads"] = [{"name": "tiny", "type": "stream", "size": 4}]
    assert api_errors_for(BENCH_CRD, _bench(spec)) == []


def test_benchmark_spec_is_immutable_rule_compiles() -> None:
    if not HAVE_CEL:
        pytest.skip("cel-python is not installed")
    import celpy
    from celpy.adapter import json_to_cel

    rule = schema_of(BENCH_CRD)["properties"]["spec"]["x-kubernetes-validations"][0]["rule"]
    env = celpy.Environment()
    program = env.program(env.compile(rule))
    old = {"nodeName": "a", "image": "i"}
    assert bool(program.evaluate({"self": json_to_cel(old), "oldSelf": json_to_cel(old)}))
    assert not bool(
        program.evaluate({"self": json_to_cel({**old, "nodeName": "b"}), "oldSelf": json_to_cel(old)})
    )


def test_benchmark_results_match_the_status_schema() -> None:
    w = (benchmarks.Workload("rr-64", "rr", 64), benchmarks.Workload("stream-16k", "stream", 16384))
    plain = {"rr-64": {"p50_us": 20.0, "p99_us": 60.0}, "stream-16k": {"gbit_per_s": 5.0}}
    spliced = {"rr-64": {"p50_us": 8.0, "p99_us": 70.0}, "stream-16k": {"gbit_per_s": 20.0}}
    status = {
        "phase": "Succeeded",
        "message": "3 results",
        "plain": plain,
        "results": benchmarks.results_table(w, plain, spliced),
    }
    assert schema_errors(status, schema_of(BENCH_CRD)["properties"]["status"], ".status") == []
