"""SpliceBenchmark runs that cannot start: the real step handler over an in-memory API server.

``handlers.benchmark_step`` (the kopf timer's function) reads the run's objects through
``kubeapi.Kube`` from ``fakeapi`` and patches status through a real ``kopf.Patch``; the timer's
filter is matched by kopf's own registry, as kopf does before it spawns or stops a timer.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import kopf
import pytest
from kopf._cogs.structs.references import Resource
from kopf._core.engines import posting
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


def _step(body: dict[str, Any], events: list[posting.K8sEvent] | None = None) -> dict[str, Any]:
    """One step as kopf runs the sync timer: in a thread, with kopf's Event queue and settings."""

    async def run() -> dict[str, Any]:
        queue: asyncio.Queue[posting.K8sEvent] = asyncio.Queue()
        posting.event_queue_var.set(queue)
        posting.event_queue_loop_var.set(asyncio.get_running_loop())
        posting.settings_var.set(kopf.OperatorSettings())
        patch = kopf.Patch()
        await asyncio.to_thread(
            handlers.benchmark_step,
            body=kopf.Body(body),  # type: ignore[arg-type]
            patch=patch,
            logger=logging.getLogger("test"),
        )
        await asyncio.sleep(0)  # the thread's Events are queued through the loop
        if events is not None:
            events.extend(queue.get_nowait() for _ in range(queue.qsize()))
        return dict(patch.get("status") or {})

    return asyncio.run(run())


def _ago(seconds: float) -> str:
    return timestamp(datetime.now(UTC) - timedelta(seconds=seconds))


def test_a_run_on_a_node_that_does_not_exist_fails_at_once(api: FakeApi) -> None:
    body = copy.deepcopy(BODY)
    body["spec"]["nodeName"] = "nowhere"
    events: list[posting.K8sEvent] = []
    status = _step(body, events)
    assert status["phase"] == Phase.FAILED
    assert status["message"] == "node nowhere does not exist (spec.nodeName)"
    assert [(e.type, e.reason, e.message, e.ref["name"]) for e in events] == [
        ("Warning", "Phase", "Failed: node nowhere does not exist (spec.nodeName)", "ab")
    ]
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
