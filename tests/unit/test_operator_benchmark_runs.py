"""SpliceBenchmark runs that cannot start: the real step handler over an in-memory API server.

``handlers.benchmark_step`` (the kopf timer's function) reads the run's objects through
``kubeapi.Kube`` from ``fakeapi`` and patches status through a real ``kopf.Patch``; the timer's
filter is matched by kopf's own registry, as kopf does before it spawns or stops a timer.
"""

from __future__ import annotations

import copy
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import kopf
import pytest
from kopf._cogs.structs.references import Resource
from kopf._core.intents import causes

from socksplice.api.status import timestamp
from socksplice.operator import handlers
from socksplice.operator.benchmarks import Facts, Phase, advance, parse_benchmark
from tests.unit.fakeapi import FakeApi
from tests.unit.test_operator_benchmarks import BODY

BENCHMARKS = Resource(
    "socksplice.io", "v1alpha1", "splicebenchmarks", kind="SpliceBenchmark", namespaced=True
)
STUCK = {"name": "rr-64", "image": "socksplice:dev", "imageID": "", "ready": False, "restartCount": 0}
NODE_A = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-a", "uid": "4f1c"}}


@pytest.fixture
def api() -> Any:
    fake = FakeApi()
    handlers._kube = fake.kube()
    yield fake
    handlers._kube = None


def _step(body: dict[str, Any]) -> dict[str, Any]:
    patch = kopf.Patch()
    handlers.benchmark_step(body=kopf.Body(body), patch=patch, logger=logging.getLogger("test"))  # type: ignore[arg-type]
    return dict(patch.get("status") or {})


def _ago(seconds: float) -> str:
    return timestamp(datetime.now(UTC) - timedelta(seconds=seconds))


def test_a_run_on_a_node_that_does_not_exist_fails_at_once(api: FakeApi) -> None:
    body = copy.deepcopy(BODY)
    body["spec"]["nodeName"] = "nowhere"
    status = _step(body)
    assert status["phase"] == Phase.FAILED
    assert status["message"] == "node nowhere does not exist (spec.nodeName)"
    assert ("POST", "/api/v1/namespaces/bench/pods") not in api.requests


def test_a_server_pod_that_never_runs_fails_after_the_start_timeout(api: FakeApi) -> None:
    api.add("nodes", NODE_A)
    waiting = {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "socksplice:dev"'}
    api.add(
        "pods",
        {
            "metadata": {
                "name": "ab-server",
                "namespace": "bench",
                "labels": {"socksplice.io/benchmark": "ab"},
            },
            "status": {"phase": "Pending", "containerStatuses": [STUCK | {"state": {"waiting": waiting}}]},
        },
    )
    api.objects["pods"][("bench", "ab-server")]["metadata"]["labels"]["socksplice.io/benchmark-role"] = (
        "server"
    )
    body = copy.deepcopy(BODY)
    body["status"] = {"phase": "Pending", "startTime": _ago(60), "phaseTime": _ago(60)}
    assert _step(body) == {}  # still within the 300 s default
    body["status"] = {"phase": "Pending", "startTime": _ago(301), "phaseTime": _ago(301)}
    status = _step(body)
    assert status["phase"] == Phase.FAILED
    assert status["message"] == (
        "server pod ab-server not running after 300s: "
        'ImagePullBackOff: Back-off pulling image "socksplice:dev"'
    )
    assert ("DELETE", "/api/v1/namespaces/bench/pods/ab-server") in api.requests


def test_a_splicesocket_that_never_becomes_ready_fails_after_the_start_timeout() -> None:
    b = parse_benchmark({**BODY, "spec": {**BODY["spec"], "startTimeoutSeconds": 60}})
    facts = Facts(server_phase="Running", server_ip="10.244.1.6", plain_job="Succeeded", splice_ready=False)
    assert advance(b, {"phase": "Splicing"}, facts).status == {}
    late = Facts(**{**facts.__dict__, "waited": 61.0})
    step = advance(b, {"phase": "Splicing"}, late)
    assert step.status["phase"] == Phase.FAILED
    assert step.status["message"].startswith("SocketSplice ab-splice not Ready after 60s")


def _timers_for(status: dict[str, Any]) -> list[str]:
    registry = kopf.get_default_registry()
    cause = causes.SpawningCause(
        logger=logging.getLogger("test"),
        indices={},  # type: ignore[arg-type]
        memo=kopf.Memo(),
        resource=BENCHMARKS,
        patch=kopf.Patch(),
        body=kopf.Body({**BODY, "status": status}),  # type: ignore[arg-type]
        reset=False,
    )
    return [h.id for h in registry._spawning.get_handlers(cause)]


def test_finished_runs_stop_their_step_timer() -> None:
    step_timer = [t for t in _timers_for({}) if "benchmark_step" in t]
    assert step_timer
    assert step_timer == [t for t in _timers_for({"phase": "Splicing"}) if "benchmark_step" in t]
    for phase in ("Succeeded", "Failed"):
        assert not [t for t in _timers_for({"phase": phase}) if "benchmark_step" in t]
