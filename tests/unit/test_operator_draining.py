"""``socksplice drain`` (operator/draining.py) on the recorded SpliceNodes: the merge patch it
sends, what it reads back from ``status.drain``, and the exit code of the whole run."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from socksplice.api.drain import REQUESTED_ANNOTATION
from socksplice.operator import draining
from tests.unit.crdcheck import api_errors_for, load_crd, schema_errors, schema_of
from tests.unit.fixtures import recorded as apifixtures

REQUESTED = datetime(2025, 5, 2, 9, 30, 0, tzinfo=UTC)
STAMP = "2025-05-02T09:30:00Z"


def merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch, as the API server applies it."""
    if not isinstance(patch, Mapping):
        return patch
    out = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge(out.get(key), value)
    return out


def nodes() -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in apifixtures.items("splicenodes.json")}


def reported(obj: dict[str, Any], drain: dict[str, Any]) -> dict[str, Any]:
    return merge(obj, {"status": {"drain": drain}})  # type: ignore[no-any-return]


def test_patch_annotates_the_request_and_timeout() -> None:
    patch = draining.drain_patch(REQUESTED, 120)
    assert patch == {
        "metadata": {
            "annotations": {
                "socksplice.io/drain-requested": STAMP,
                "socksplice.io/drain-timeout-seconds": "120",
            }
        }
    }
    node = merge(nodes()["node-a"], patch)
    assert node["metadata"]["name"] == "node-a"
    assert node["status"] == nodes()["node-a"]["status"]  # a merge patch leaves the status alone
    assert api_errors_for(load_crd("splicenode.yaml"), node) == []


def test_no_drain_status_is_pending() -> None:
    for obj in nodes().values():
        assert draining.node_drain(obj, REQUESTED) == draining.NodeDrain(obj["metadata"]["name"], "Pending")


def test_an_older_drain_does_not_answer_this_request() -> None:
    old = {"phase": "Drained", "requestedAt": "2025-05-01T10:00:00Z", "socketsLeft": 0}
    assert draining.node_drain(reported(nodes()["node-a"], old), REQUESTED).phase == "Pending"


@pytest.mark.parametrize(
    ("drain", "phase", "left", "finished"),
    [
        ({"phase": "Draining", "requestedAt": STAMP}, "Draining", None, False),
        (
            {
                "phase": "Drained",
                "requestedAt": STAMP,
                "finishedAt": "2025-05-02T09:30:07Z",
                "socketsLeft": 0,
                "message": "detached 2, 6 spliced at start, 0 left after 6.5s, unpinned 5",
            },
            "Drained",
            0,
            True,
        ),
        (
            {
                "phase": "TimedOut",
                "requestedAt": STAMP,
                "finishedAt": "2025-05-02T09:32:01Z",
                "socketsLeft": 4,
            },
            "TimedOut",
            4,
            True,
        ),
        ({"phase": "Failed", "requestedAt": STAMP, "message": "drain: EPERM"}, "Failed", None, True),
    ],
)
def test_reads_the_phase_of_this_request(
    drain: dict[str, Any], phase: str, left: int | None, finished: bool
) -> None:
    obj = reported(nodes()["node-a"], drain)
    schema = schema_of(load_crd("splicenode.yaml"))["properties"]["status"]
    assert schema_errors(obj["status"], schema, ".status") == []
    got = draining.node_drain(obj, REQUESTED)
    assert (got.node, got.phase, got.sockets_left, got.finished) == ("node-a", phase, left, finished)
    assert got.message == drain.get("message", "")


def test_exit_code() -> None:
    ok = draining.NodeDrain("node-a", "Drained", 0)
    assert draining.exit_code([]) == 0
    assert draining.exit_code([ok, draining.NodeDrain("node-b", "Drained", 0)]) == 0
    for bad in ("TimedOut", "Failed", "Pending", "Draining", "NoReport"):
        assert draining.exit_code([ok, draining.NodeDrain("node-b", bad)]) == 3


def test_unfinished_nodes_become_no_report() -> None:
    drains = draining.unanswered(
        [draining.NodeDrain("node-a", "Drained", 0), draining.NodeDrain("node-b", "Draining")], 150.0
    )
    assert [d.phase for d in drains] == ["Drained", "NoReport"]
    assert drains[1].message == "no finished drain after 150s (last: Draining)"


def test_select() -> None:
    objs = list(nodes().values())
    assert [o["metadata"]["name"] for o in draining.select(objs, [])] == ["node-a", "node-b"]
    assert [o["metadata"]["name"] for o in draining.select(objs, ["node-b"])] == ["node-b"]
    with pytest.raises(ValueError, match="no SpliceNode for: node-z"):
        draining.select(objs, ["node-b", "node-z"])


class FakeApi:
    """SpliceNodes in memory; ``agents`` answer a request after ``lag`` polls."""

    def __init__(self, answers: dict[str, dict[str, Any]], lag: int = 1) -> None:
        self.objects = nodes()
        self.answers = answers
        self.lag = lag
        self.patches: list[tuple[str, dict[str, Any]]] = []
        self.lists = 0

    def splicenodes(self) -> list[dict[str, Any]]:
        self.lists += 1
        if self.lists > self.lag:
            for name, drain in self.answers.items():
                self.objects[name] = reported(self.objects[name], drain)
        return json.loads(json.dumps(list(self.objects.values())))  # type: ignore[no-any-return]

    def patch(self, name: str, body: dict[str, Any]) -> None:
        self.patches.append((name, body))
        self.objects[name] = merge(self.objects[name], body)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


def _run(api: FakeApi, names: list[str], timeout: float = 120) -> tuple[list[draining.NodeDrain], float]:
    clock = Clock()
    drains, requested, waited = draining.run(
        api, names, timeout, now=lambda: REQUESTED.replace(microsecond=123), sleep=clock.sleep, clock=clock
    )
    assert requested == REQUESTED
    return drains, waited


def test_run_waits_for_every_node() -> None:
    done = {"phase": "Drained", "requestedAt": STAMP, "socketsLeft": 0}
    api = FakeApi({"node-a": done, "node-b": done}, lag=2)
    drains, waited = _run(api, [])
    assert [n for n, _ in api.patches] == ["node-a", "node-b"]
    assert all(api.objects[n]["metadata"]["annotations"][REQUESTED_ANNOTATION] == STAMP for n in api.objects)
    assert [(d.node, d.phase) for d in drains] == [("node-a", "Drained"), ("node-b", "Drained")]
    assert waited == draining.POLL_SECONDS  # the list that selects, one poll before the answers, one after
    assert draining.exit_code(drains) == 0
    summary = draining.summary(drains, REQUESTED, waited)
    assert summary["drained"] is True and summary["requestedAt"] == STAMP
    assert summary["nodes"][0] == {
        "node": "node-a",
        "phase": "Drained",
        "sockets_left": 0,
        "finished_at": "",
        "message": "",
    }


def test_run_gives_up_on_a_silent_agent() -> None:
    api = FakeApi({"node-a": {"phase": "TimedOut", "requestedAt": STAMP, "socketsLeft": 2}})
    drains, waited = _run(api, [], timeout=10)
    assert [(d.node, d.phase) for d in drains] == [("node-a", "TimedOut"), ("node-b", "NoReport")]
    assert waited >= 10 + draining.REPORT_GRACE
    assert draining.exit_code(drains) == 3
    assert draining.render_line(drains[0]) == "node-a  TimedOut  2 sockets left"


def test_run_only_the_named_nodes() -> None:
    api = FakeApi({"node-b": {"phase": "Drained", "requestedAt": STAMP, "socketsLeft": 0}})
    drains, _ = _run(api, ["node-b"])
    assert [n for n, _ in api.patches] == ["node-b"]
    assert "annotations" not in api.objects["node-a"]["metadata"]
    assert [(d.node, d.phase) for d in drains] == [("node-b", "Drained")]


def test_cli_needs_a_selection() -> None:
    with pytest.raises(SystemExit) as exc:
        draining.main(["--timeout=5"])
    assert exc.value.code == 2


def test_the_drain_command_annotates_through_the_adaptor() -> None:
    from tests.unit.fakeapi import FakeApi

    fake = FakeApi()
    for node in apifixtures.items("splicenodes.json"):
        fake.add("splicenodes", node)
    api = draining.Api.__new__(draining.Api)
    api.kube = fake.kube()
    clock = iter(range(0, 10_000, 100))
    drains, requested, _ = draining.run(api, [], 0.0, sleep=lambda _s: None, clock=lambda: float(next(clock)))
    assert {d.phase for d in drains} == {draining.NO_REPORT}
    for name in ("node-a", "node-b"):
        obj = fake.get("splicenodes", name)
        assert obj is not None
        assert obj["metadata"]["annotations"][REQUESTED_ANNOTATION] == draining.timestamp(requested)
    assert fake.counts()["PATCH splicenodes"] == 2
