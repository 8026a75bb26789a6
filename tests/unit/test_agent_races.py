"""Defects of the agent's concurrency and bookkeeping, each reproduced root-free with a fake data path:
a drain request arriving mid-reconcile, a scrape reading the slot table while the loop changes it,
and a failed detach."""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from socksplice.bpf.loader import DatapathSettings
from socksplice.kernel import netns
from socksplice.nodeagent.agent import Agent
from socksplice.nodeagent.cluster import drainrequest as dr
from socksplice.nodeagent.reconciling import Reconciler
from socksplice.nodeagent.settings import AgentSettings
from socksplice.nodeagent.slots import SlotTable
from socksplice.operator import draining as cli
from tests.unit.agentworld import FixedSource, location, pod, snapshot, splice
from tests.unit.fakedatapath import FakeDatapath, fake_cookie
from tests.unit.fixtures import recorded as apifixtures


@pytest.fixture(autouse=True)
def _cookies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netns, "cookie", fake_cookie)


def settings(tmp_path: Path) -> AgentSettings:
    return AgentSettings(
        node_name="node-a", state_dir=tmp_path / "state", datapath=DatapathSettings(), metrics_port=-1
    )


class SpliceNodeApi:
    """This node's SpliceNode: the drain request appears when ``request`` is called."""

    def __init__(self) -> None:
        self.obj = next(o for o in apifixtures.items("splicenodes.json") if o["metadata"]["name"] == "node-a")
        self.patches: list[dict[str, Any]] = []

    def request(self) -> None:
        patch = cli.drain_patch(cli.datetime.now(cli.UTC).replace(microsecond=0), 0)
        self.obj["metadata"].setdefault("annotations", {}).update(patch["metadata"]["annotations"])

    def get(self) -> Mapping[str, Any] | None:
        return self.obj

    def patch_status(self, body: dict[str, Any]) -> None:
        self.patches.append(body)
        self.obj["status"].update(body["status"])

    def phases(self) -> list[str]:
        return [p["status"]["drain"]["phase"] for p in self.patches]


class GatedSource(FixedSource):
    def __init__(self, reqs: dr.DrainRequests, *args: Any) -> None:
        super().__init__(*args)
        self.reqs = reqs

    def snapshot(self) -> Any:
        self.reqs.gate()
        return super().snapshot()


def test_a_drain_request_during_a_reconcile_leaves_no_pod_attached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The request arrives (the SpliceNode poll sees it) while the loop is attaching a pod: after
    the drain reports finished, no program may be attached and no pod recorded as applied."""
    api, dp = SpliceNodeApi(), FakeDatapath()
    reqs = dr.DrainRequests("node-a", api.get, api.patch_status)
    reqs.check()
    source = GatedSource(reqs, snapshot([pod("a"), pod("b")], [splice("s")], root=tmp_path))
    agent = Agent(settings(tmp_path), source, dp, drains=reqs)

    def request_mid_attach(cgroup: Path) -> None:
        if dp.on_attach is not None and cgroup == location("a", root=tmp_path).cgroup:
            dp.on_attach = None
            api.request()
            reqs.check()  # the poll thread's read, at this very moment
            time.sleep(0.5)  # the attach syscall takes its time

    dp.on_attach = request_mid_attach
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not (api.patches and api.phases()[-1] != "Draining"):
        agent.step()
        time.sleep(0.01)
    assert api.phases() == ["Draining", "Drained"]
    assert dp.attached == set()
    assert agent.reconciler.applied == {}
    assert Reconciler(FakeDatapath(), SlotTable(None, 8), tmp_path / "state" / "applied.json").applied == {}


def test_a_scrape_reads_slots_while_the_loop_changes_them() -> None:
    """The HTTP thread maps slots to policies while the loop assigns and releases slots."""
    slots = SlotTable(None, 4096)
    names = [f"demo/p{i}" for i in range(3000)]
    for n in names:
        slots.slot(n)
    stop = threading.Event()
    failures: list[BaseException] = []

    def scrape() -> None:
        while not stop.is_set():
            try:
                slots.policy_of(0)  # a miss walks the whole table
            except BaseException as exc:
                failures.append(exc)
                return

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    thread = threading.Thread(target=scrape)
    thread.start()
    try:
        deadline = time.monotonic() + 1
        i = 0
        while time.monotonic() < deadline and not failures:
            slots.release_except(set(names[:-1]))
            slots.slot(names[-1 - i % 2])
            i += 1
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(old)
    assert failures == []


def _world(tmp_path: Path) -> tuple[FakeDatapath, Reconciler, Iterator[Any]]:
    dp = FakeDatapath()
    return dp, Reconciler(dp, SlotTable(None, 8), tmp_path / "applied.json"), iter(())


def test_a_failed_detach_is_kept_retried_and_seen_by_the_drain(tmp_path: Path) -> None:
    from socksplice.nodeagent.targets import PodTarget

    dp, rec, _ = _world(tmp_path)
    cg = tmp_path / "cgroup-a"
    cg.mkdir()  # the pod's cgroup still exists: the program really is attached there
    loc = type(location("a"))(cg, Path("/fake/netns/a"))
    from socksplice.api.planning import plan

    plans = plan([pod("a")], [splice("s")])
    rec.reconcile([PodTarget("demo/a", loc, plans["demo/a"])])
    assert dp.attached == {cg}
    dp.failing_detach = {cg}
    report = rec.reconcile([])  # no longer selected, but the detach fails
    assert "demo/a" in report.errors
    assert "demo/a" in rec.applied, "the record of a still-attached program was dropped"
    assert fake_cookie(loc.netns) in dp.pods, "configuration deleted while the program is attached"
    restarted = Reconciler(dp, SlotTable(None, 8), tmp_path / "applied.json")
    assert "demo/a" in restarted.applied
    drained = rec.detach_all()  # the drain sees it and reports it not detached
    assert "demo/a" in drained.errors and drained.detached == []
    dp.failing_detach = set()
    report = rec.reconcile([])  # a later reconcile retries
    assert report.detached == ["demo/a"] and not report.errors
    assert dp.attached == set() and dp.pods == {} and rec.applied == {}


class Published:
    def __init__(self) -> None:
        self.statuses: list[Any] = []

    def publish(self, status: Any) -> None:
        self.statuses.append(status)


def test_after_a_drain_the_status_keeps_coming_and_says_drained(tmp_path: Path) -> None:
    """A drained agent is not silent (its heartbeat goes on), its SpliceNode says Drained with no
    pod attached, and /readyz is false."""
    api, dp, sink = SpliceNodeApi(), FakeDatapath(), Published()
    reqs = dr.DrainRequests("node-a", api.get, api.patch_status)
    reqs.check()
    source = GatedSource(reqs, snapshot([pod("a"), pod("b")], [splice("s")], root=tmp_path))
    s = dataclasses.replace(settings(tmp_path), status_interval=0.0)
    agent = Agent(s, source, dp, sink, drains=reqs)
    agent.step(force=True)
    assert sink.statuses[-1].to_dict()["attachedPods"] == 2
    api.request()
    reqs.check()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and api.phases()[-1:] != ["Drained"]:
        agent.step()
    before = len(sink.statuses)
    agent.step()
    agent.step()
    assert len(sink.statuses) >= before + 2  # the heartbeat goes on
    last = sink.statuses[-1].to_dict()
    assert last["attachedPods"] == 0 and last["pods"] == []
    assert last["conditions"][0]["status"] == "False" and last["conditions"][0]["reason"] == "Drained"
    assert agent.stats.attached_pods == 0 and not agent.ready()
