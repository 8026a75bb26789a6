"""The drain protocol (api/drain.py) on the recorded SpliceNodes, and the agent's side of
``socksplice drain`` (nodeagent/cluster/drainrequest.py): when to drain, what ``status.drain``
says, that the source stops reconciling, and that the agent's own loop runs the drain."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from socksplice.api import drain as proto
from socksplice.api.drain import DrainPhase, DrainReport, DrainRequest, DrainStatus, drain_wanted
from socksplice.bpf.loader import DatapathSettings
from socksplice.errors import TemporaryError
from socksplice.kernel import netns
from socksplice.nodeagent.agent import Agent
from socksplice.nodeagent.cluster import drainrequest as dr
from socksplice.nodeagent.cluster.locating import Locator
from socksplice.nodeagent.cluster.source import ClusterSource
from socksplice.nodeagent.settings import AgentSettings
from socksplice.operator import draining as cli
from tests.unit.agentworld import FixedSource, pod, snapshot, splice
from tests.unit.crdcheck import api_errors_for, load_crd, schema_errors, schema_of
from tests.unit.fakedatapath import FakeDatapath, fake_cookie
from tests.unit.fixtures import recorded as apifixtures

REQUESTED = datetime(2025, 5, 2, 9, 30, 0, tzinfo=UTC)
STAMP = "2025-05-02T09:30:00Z"
FINISHED_AT = datetime(2025, 5, 2, 9, 30, 7, tzinfo=UTC)
SCHEMA = schema_of(load_crd("splicenode.yaml"))["properties"]["status"]
REQUEST = DrainRequest(REQUESTED, 120.0)


def node(name: str = "node-a") -> dict[str, Any]:
    return next(o for o in apifixtures.items("splicenodes.json") if o["metadata"]["name"] == name)


def requested(obj: dict[str, Any], when: datetime = REQUESTED, timeout: float = 120) -> dict[str, Any]:
    """The object after ``socksplice drain`` patched it (its own patch builder)."""
    annotations = cli.drain_patch(when, timeout)["metadata"]["annotations"]
    obj["metadata"].setdefault("annotations", {}).update(annotations)
    return obj


def with_drain(obj: dict[str, Any], drain: DrainStatus) -> dict[str, Any]:
    obj["status"]["drain"] = drain.to_dict()
    return obj


REPORT = DrainReport(
    detached=("demo/client", "demo/server"),
    spliced_at_start=6,
    spliced_left=0,
    waited_seconds=6.5,
    unpinned=("/sys/fs/bpf/socksplice/v1",),
)


def test_the_phases_are_the_schemas() -> None:
    assert {str(p) for p in DrainPhase} == set(SCHEMA["properties"]["drain"]["properties"]["phase"]["enum"])
    assert {"Drained", "TimedOut", "Failed"} == cli.FINISHED_PHASES


def test_no_annotation_no_drain() -> None:
    for name in ("node-a", "node-b"):
        assert drain_wanted(node(name), None) is None


def test_a_request_drains_once() -> None:
    obj = requested(node())
    assert drain_wanted(obj, None) == REQUEST
    assert drain_wanted(obj, REQUESTED) is None  # this process drained for it
    assert drain_wanted(obj, REQUESTED - timedelta(hours=1)) == REQUEST  # a newer request


def test_a_finished_drain_in_the_status_answers_the_request() -> None:
    """A restarted agent (a new process: no last drain) does not drain again."""
    obj = with_drain(requested(node()), DrainStatus.finished(REQUEST, FINISHED_AT, REPORT))
    assert drain_wanted(obj, None) is None
    newer = requested(obj, REQUESTED + timedelta(minutes=5))
    assert drain_wanted(newer, None) == DrainRequest(REQUESTED + timedelta(minutes=5))


def test_an_unfinished_drain_is_done_again() -> None:
    """The agent was killed while draining: the next one drains before it attaches anything."""
    obj = with_drain(requested(node()), DrainStatus.draining(REQUEST))
    assert drain_wanted(obj, None) == REQUEST


def test_a_malformed_annotation_is_ignored() -> None:
    obj = node()
    obj["metadata"]["annotations"] = {proto.REQUESTED_ANNOTATION: "yesterday"}
    assert drain_wanted(obj, None) is None


@pytest.mark.parametrize(
    ("value", "timeout"), [("120", 120.0), ("0", 0.0), ("-5", 0.0), ("1e9", 3600.0), ("x", 120.0)]
)
def test_requested_timeout(value: str, timeout: float) -> None:
    obj = node()
    obj["metadata"]["annotations"] = {proto.REQUESTED_ANNOTATION: STAMP, proto.TIMEOUT_ANNOTATION: value}
    request = DrainRequest.of(obj)
    assert request is not None and request.timeout == timeout
    assert DrainRequest.of(requested(node())) == REQUEST


@pytest.mark.parametrize(
    ("report", "phase", "left"),
    [
        (REPORT, "Drained", 0),
        (DrainReport(REPORT.detached, 6, 2, 6.5, REPORT.unpinned), "TimedOut", 2),
        (DrainReport(REPORT.detached, 6, 0, 6.5, REPORT.unpinned, ("detach: EPERM",)), "Failed", 0),
    ],
)
def test_status_after_the_drain(report: DrainReport, phase: str, left: int) -> None:
    assert report.phase == phase
    status = DrainStatus.finished(REQUEST, FINISHED_AT, report)
    raw = status.to_dict()
    assert raw["phase"] == phase and raw["socketsLeft"] == left
    assert raw["requestedAt"] == STAMP and raw["finishedAt"] == "2025-05-02T09:30:07Z"
    assert DrainStatus.from_dict(raw) == status
    obj = with_drain(requested(node()), status)
    assert schema_errors(obj["status"], SCHEMA, ".status") == []
    assert api_errors_for(load_crd("splicenode.yaml"), obj) == []
    # what socksplice drain reads back
    seen = cli.node_drain(obj, REQUESTED)
    assert (seen.phase, seen.sockets_left, seen.finished) == (phase, left, True)


def test_status_messages() -> None:
    status = DrainStatus.finished(REQUEST, FINISHED_AT, REPORT).to_dict()
    assert status["message"] == "detached 2, 6 spliced at start, 0 left after 6.5s, unpinned 1"
    failed = DrainStatus.finished(REQUEST, FINISHED_AT, error="drain: boom" + "x" * 2000).to_dict()
    assert failed["message"].startswith("drain: boom") and len(failed["message"]) == proto.MAX_MESSAGE
    assert failed["phase"] == "Failed" and "socketsLeft" not in failed
    assert DrainStatus.draining(REQUEST).to_dict() == {"phase": "Draining", "requestedAt": STAMP}
    assert REPORT.to_dict()["complete"] is True and REPORT.to_dict()["detached"] == REPORT.detached


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

    def phases(self) -> list[str]:
        return [p["status"]["drain"]["phase"] for p in self.patches]


def test_gate_waits_for_the_first_read_then_passes() -> None:
    reqs = dr.DrainRequests("node-a", FakeNode(node()).get, FakeNode(node()).patch_status)
    with pytest.raises(TemporaryError, match="first read of SpliceNode node-a"):
        reqs.gate()
    reqs.check()
    reqs.gate()
    assert reqs.request is None and reqs.take() is None


def test_absent_or_unreadable_splicenode_does_not_block() -> None:
    reqs = dr.DrainRequests("node-a", FakeNode(None).get, FakeNode(None).patch_status)
    reqs.check()
    reqs.gate()

    def boom() -> Mapping[str, Any] | None:
        raise RuntimeError("403 Forbidden")

    broken = dr.DrainRequests("node-a", boom, FakeNode(None).patch_status)
    broken.check()
    broken.gate()


def test_a_request_stops_the_source_and_is_taken_once() -> None:
    fake = FakeNode(requested(node(), timeout=7))
    reqs = dr.DrainRequests("node-a", fake.get, fake.patch_status)
    source = ClusterSource("node-a", Locator(Path("/nonexistent"), Path("/nonexistent")), drains=reqs)
    source.pods.synced = source.splices.synced = True
    reqs.check()
    with pytest.raises(TemporaryError, match="drain requested"):
        source.snapshot()
    assert reqs.take() == DrainRequest(REQUESTED, 7.0)
    assert reqs.take() is None
    reqs.check()  # the same request again: nothing new
    assert reqs.take() is None


def _agent(
    tmp_path: Path, fake: FakeNode, dp: FakeDatapath, monkeypatch: pytest.MonkeyPatch
) -> tuple[Agent, dr.DrainRequests]:
    monkeypatch.setattr(netns, "cookie", fake_cookie)
    reqs = dr.DrainRequests("node-a", fake.get, fake.patch_status)
    reqs.check()
    settings = AgentSettings(node_name="node-a", state_dir=tmp_path / "state", datapath=DatapathSettings())
    source = FixedSource(snapshot([pod("a")], [splice("s")], root=tmp_path))
    return Agent(settings, source, dp, drains=reqs), reqs


def test_the_agents_loop_drains_and_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake, dp = FakeNode(node()), FakeDatapath()
    agent, reqs = _agent(tmp_path, fake, dp, monkeypatch)
    assert agent.step(force=True) is not None and len(dp.attached) == 1
    requested(fake.obj or {}, timeout=30)
    reqs.check()
    dp.sockets = 3  # spliced sockets still open: the drain waits, a step at a time
    assert agent.step(force=True) is None
    assert dp.attached == set() and agent.reconciler.applied == {}
    assert fake.phases() == ["Draining"] and agent.draining and not agent.ready()
    assert agent.healthy()  # the loop goes on: /healthz stays fresh
    dp.sockets = 0
    agent.step()
    assert fake.phases() == ["Draining", "Drained"] and dp.unpinned
    assert fake.obj is not None and drain_wanted(fake.obj, None) is None
    assert cli.node_drain(fake.obj, REQUESTED).phase == "Drained"
    assert schema_errors(fake.obj["status"], SCHEMA, ".status") == []
    calls = len(dp.calls)
    agent.step(force=True)  # drained: never attaches again
    assert len(dp.calls) == calls and "drained on request" in agent.last_error


def test_a_drain_that_times_out_reports_what_was_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, dp = FakeNode(requested(node(), timeout=0)), FakeDatapath()
    agent, _ = _agent(tmp_path, fake, dp, monkeypatch)
    dp.sockets = 2
    agent.step()
    final = fake.patches[-1]["status"]["drain"]
    assert final["phase"] == "TimedOut" and final["socketsLeft"] == 2
