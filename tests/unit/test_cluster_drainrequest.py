"""The agent's side of ``socksplice drain`` (nodeagent/cluster/drainrequest.py) on the recorded
SpliceNodes: when to drain, what ``status.drain`` says, and that the source stops reconciling."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from socksplice.errors import TemporaryError
from socksplice.nodeagent.cluster import drainrequest as dr
from socksplice.nodeagent.cluster.locating import Locator
from socksplice.nodeagent.cluster.source import ClusterSource
from socksplice.operator import draining as cli
from tests.unit.crdcheck import api_errors_for, load_crd, schema_errors, schema_of
from tests.unit.fixtures import recorded as apifixtures

REQUESTED = datetime(2025, 5, 2, 9, 30, 0, tzinfo=UTC)
STAMP = "2025-05-02T09:30:00Z"
FINISHED_AT = datetime(2025, 5, 2, 9, 30, 7, tzinfo=UTC)
SCHEMA = schema_of(load_crd("splicenode.yaml"))["properties"]["status"]


def node(name: str = "node-a") -> dict[str, Any]:
    return next(o for o in apifixtures.items("splicenodes.json") if o["metadata"]["name"] == name)


def requested(obj: dict[str, Any], when: datetime = REQUESTED, timeout: float = 120) -> dict[str, Any]:
    """The object after ``socksplice drain`` patched it (its own patch builder)."""
    annotations = cli.drain_patch(when, timeout)["metadata"]["annotations"]
    obj["metadata"].setdefault("annotations", {}).update(annotations)
    return obj


def with_drain(obj: dict[str, Any], drain: dict[str, Any]) -> dict[str, Any]:
    obj["status"]["drain"] = drain
    return obj


REPORT: dict[str, Any] = {
    "detached": ["demo/client", "demo/server"],
    "spliced_at_start": 6,
    "spliced_left": 0,
    "waited_seconds": 6.5,
    "unpinned": ["/sys/fs/bpf/socksplice/v1"],
    "errors": [],
    "complete": True,
}


def test_both_sides_agree_on_the_annotations_and_phases() -> None:
    assert (dr.ANNOTATION, dr.TIMEOUT_ANNOTATION) == (cli.ANNOTATION, cli.TIMEOUT_ANNOTATION)
    assert dr.FINISHED == cli.FINISHED
    assert set(SCHEMA["properties"]["drain"]["properties"]["phase"]["enum"]) == {dr.DRAINING, *dr.FINISHED}


def test_no_annotation_no_drain() -> None:
    for name in ("node-a", "node-b"):
        assert dr.drain_wanted(node(name), None) is None


def test_a_request_drains_once() -> None:
    obj = requested(node())
    assert dr.drain_wanted(obj, None) == REQUESTED
    assert dr.drain_wanted(obj, REQUESTED) is None  # this process drained for it
    assert dr.drain_wanted(obj, REQUESTED - timedelta(hours=1)) == REQUESTED  # a newer request


def test_a_finished_drain_in_the_status_answers_the_request() -> None:
    """A restarted agent (a new process: no last drain) does not drain again."""
    obj = with_drain(requested(node()), dr.drain_status(REQUESTED, "Drained", FINISHED_AT, REPORT))
    assert dr.drain_wanted(obj, None) is None
    newer = requested(obj, REQUESTED + timedelta(minutes=5))
    assert dr.drain_wanted(newer, None) == REQUESTED + timedelta(minutes=5)


def test_an_unfinished_drain_is_done_again() -> None:
    """The agent was killed while draining: the next one drains before it attaches anything."""
    obj = with_drain(requested(node()), dr.drain_status(REQUESTED, dr.DRAINING))
    assert dr.drain_wanted(obj, None) == REQUESTED


def test_a_malformed_annotation_is_ignored() -> None:
    obj = node()
    obj["metadata"]["annotations"] = {dr.ANNOTATION: "yesterday"}
    assert dr.drain_wanted(obj, None) is None


@pytest.mark.parametrize(
    ("value", "timeout"), [("120", 120.0), ("0", 0.0), ("-5", 0.0), ("1e9", 3600.0), ("x", 120.0)]
)
def test_requested_timeout(value: str, timeout: float) -> None:
    obj = node()
    obj["metadata"]["annotations"] = {dr.TIMEOUT_ANNOTATION: value}
    assert dr.requested_timeout(obj) == timeout
    assert dr.requested_timeout(node()) == dr.DEFAULT_TIMEOUT


@pytest.mark.parametrize(
    ("report", "phase", "left"),
    [
        (REPORT, "Drained", 0),
        ({**REPORT, "spliced_left": 2, "complete": False}, "TimedOut", 2),
        ({**REPORT, "errors": ["detach: EPERM"], "complete": False}, "Failed", 0),
    ],
)
def test_status_after_the_drain(report: dict[str, Any], phase: str, left: int) -> None:
    assert dr.finished_phase(report) == phase
    status = dr.drain_status(REQUESTED, phase, FINISHED_AT, report)
    assert status["phase"] == phase and status["socketsLeft"] == left
    assert status["requestedAt"] == STAMP and status["finishedAt"] == "2025-05-02T09:30:07Z"
    obj = with_drain(requested(node()), status)
    assert schema_errors(obj["status"], SCHEMA, ".status") == []
    assert api_errors_for(load_crd("splicenode.yaml"), obj) == []
    # what socksplice drain reads back
    seen = cli.node_drain(obj, REQUESTED)
    assert (seen.phase, seen.sockets_left, seen.finished) == (phase, left, True)


def test_status_messages() -> None:
    status = dr.drain_status(REQUESTED, "Drained", FINISHED_AT, REPORT)
    assert status["message"] == "detached 2, 6 spliced at start, 0 left after 6.5s, unpinned 1"
    failed = dr.drain_status(REQUESTED, "Failed", FINISHED_AT, error="drain: boom" + "x" * 2000)
    assert failed["message"].startswith("drain: boom") and len(failed["message"]) == dr.MAX_MESSAGE
    assert "socketsLeft" not in failed
    assert dr.drain_status(REQUESTED, dr.DRAINING) == {"phase": "Draining", "requestedAt": STAMP}


class FakeNode:
    """This node's SpliceNode as the API server keeps it; status patches are merged in."""

    def __init__(self, obj: dict[str, Any] | None) -> None:
        self.obj = obj
        self.patches: list[dict[str, Any]] = []

    def get(self) -> Mapping[str, Any] | None:
        return self.obj

    def patch_status(self, body: dict[str, Any]) -> None:
        self.patches.append(body)
        assert self.obj is not None
        self.obj["status"].update(body["status"])


def _requests(fake: FakeNode, monkeypatch: pytest.MonkeyPatch) -> dr.DrainRequests:
    monkeypatch.setattr(dr, "REFUSE_PAUSE", 0.0)
    return dr.DrainRequests("node-a", fake.get, fake.patch_status)


def test_gate_waits_for_the_first_read_then_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    reqs = _requests(FakeNode(node()), monkeypatch)
    with pytest.raises(TemporaryError, match="first read of SpliceNode node-a"):
        reqs.gate()
    reqs.check()
    reqs.gate()
    assert reqs.request is None


def test_absent_or_unreadable_splicenode_does_not_block(monkeypatch: pytest.MonkeyPatch) -> None:
    reqs = _requests(FakeNode(None), monkeypatch)
    reqs.check()
    reqs.gate()

    def boom() -> Mapping[str, Any] | None:
        raise RuntimeError("403 Forbidden")

    broken = dr.DrainRequests("node-a", boom, FakeNode(None).patch_status)
    broken.check()
    broken.gate()


def test_a_request_stops_reconciling_drains_and_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeNode(requested(node(), timeout=7))
    reqs = _requests(fake, monkeypatch)
    release = threading.Event()
    timeouts: list[float] = []

    def run_drain(timeout: float) -> Mapping[str, Any]:
        timeouts.append(timeout)
        release.wait(5)
        return REPORT

    reqs.run_drain = run_drain
    source = ClusterSource("node-a", Locator(Path("/nonexistent"), Path("/nonexistent")), drains=reqs)
    source.pods.synced = source.splices.synced = True
    reqs.check()
    with pytest.raises(TemporaryError, match="draining on request"):
        source.snapshot()
    release.set()
    assert reqs.done.wait(5)
    with pytest.raises(TemporaryError, match="drained on request"):
        source.snapshot()
    assert timeouts == [7.0]
    assert [p["status"]["drain"]["phase"] for p in fake.patches] == ["Draining", "Drained"]
    assert reqs.last_drain == REQUESTED
    assert fake.obj is not None and dr.drain_wanted(fake.obj, None) is None
    assert cli.node_drain(fake.obj, REQUESTED).phase == "Drained"
    reqs.check()  # the same request again: nothing new
    assert len(fake.patches) == 2


def test_an_unbound_or_failing_drain_reports_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeNode(requested(node()))
    reqs = _requests(fake, monkeypatch)
    reqs.check()
    assert reqs.done.wait(5)
    final = fake.patches[-1]["status"]["drain"]
    assert final["phase"] == "Failed" and "not bound" in final["message"]
    assert schema_errors(fake.obj["status"] if fake.obj else {}, SCHEMA, ".status") == []


def test_bind_drains_with_the_agents_own_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    import socksplice.nodeagent.draining as nodedrain

    seen: list[Any] = []

    def drain(datapath: Any, reconciler: Any, extra: Any, settings: Any) -> nodedrain.DrainReport:
        seen.append((datapath, reconciler, tuple(extra), settings.timeout))
        return nodedrain.DrainReport(detached=["demo/client"], spliced_at_start=1)

    monkeypatch.setattr(nodedrain, "drain", drain)

    class AgentLike:
        datapath = "dp"
        reconciler = "rc"

    reqs = dr.DrainRequests("node-a", FakeNode(None).get, FakeNode(None).patch_status)
    reqs.bind(AgentLike())
    assert reqs.run_drain is not None
    report = reqs.run_drain(9.0)
    assert seen == [("dp", "rc", (), 9.0)]
    assert report["detached"] == ["demo/client"] and report["complete"] is True
