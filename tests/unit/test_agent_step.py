"""Agent.step invariants, root-free: when it reconciles (changes, resync, force), the plan once
per change, the status it publishes (one shape for status.json and a SpliceNode), restarts."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from socksplice.api.nodestatus import NodeStatus
from socksplice.bpf.loader import DatapathSettings
from socksplice.errors import TemporaryError
from socksplice.kernel import netns
from socksplice.nodeagent import agent as agentmod
from socksplice.nodeagent.agent import Agent
from socksplice.nodeagent.localsource import StatusFile
from socksplice.nodeagent.settings import AgentSettings
from socksplice.nodeagent.snapshots import Snapshot
from tests.unit.agentworld import FixedSource, pod, snapshot, splice
from tests.unit.crdcheck import load_crd, schema_errors, schema_of
from tests.unit.fakedatapath import FakeDatapath, fake_cookie

SCHEMA = schema_of(load_crd("splicenode.yaml"))["properties"]["status"]


@pytest.fixture(autouse=True)
def _cookies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netns, "cookie", fake_cookie)


def make(tmp_path: Path, snap: Snapshot, dp: FakeDatapath | None = None, **kw: float) -> Agent:
    settings = AgentSettings(
        node_name="node-a", state_dir=tmp_path / "state", datapath=DatapathSettings(), metrics_port=-1, **kw
    )
    return Agent(settings, FixedSource(snap), dp or FakeDatapath(), StatusFile(tmp_path))


def test_reconciles_on_change_on_resync_and_when_forced(tmp_path: Path) -> None:
    snap = snapshot([pod("a")], [splice("s")], root=tmp_path)
    agent = make(tmp_path, snap, resync_interval=3600)
    assert agent.step() is not None  # the first step always reconciles
    assert agent.step() is None  # nothing changed, no resync due
    assert agent.step(force=True) is not None
    assert isinstance(agent.source, FixedSource)
    agent.source.snap = snapshot([pod("a"), pod("b")], [splice("s")], root=tmp_path)
    report = agent.step()
    assert report is not None and report.attached == ["demo/b"]
    resyncing = make(tmp_path / "other", snap, resync_interval=0)
    resyncing.step()
    assert resyncing.step() is not None  # resync due on every step


def test_the_plan_is_computed_once_per_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = agentmod.plan

    def counting(*args: object) -> object:
        calls.append(1)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(agentmod, "plan", counting)
    agent = make(tmp_path, snapshot([pod("a")], [splice("s")], root=tmp_path), resync_interval=0)
    agent.step()
    agent.status()
    agent.step()  # resync: same snapshot, same plan
    assert len(calls) == 1


def test_status_file_has_the_splicenode_shape(tmp_path: Path) -> None:
    dp = FakeDatapath()
    dp.slot_counters = {1: {"pairs_spliced": 3, "bytes_redirected": 100}}
    agent = make(tmp_path, snapshot([pod("a"), pod("b", app="db")], [splice("s")], root=tmp_path), dp)
    agent.step()
    raw = json.loads((tmp_path / "status.json").read_text())
    assert schema_errors(raw, SCHEMA, ".status") == []
    status = NodeStatus.from_dict(raw)
    assert status.pods == ("demo/a",) and raw["attachedPods"] == 1
    policy = status.policy("demo/s")
    assert policy is not None and (policy.matched_pods, policy.attached_pods) == (1, 1)
    assert (policy.pairs_spliced, policy.bytes_redirected) == (3, 100)
    assert raw["conditions"][0]["status"] == "True" and status.node_name == "node-a"


def test_a_source_failure_reconciles_nothing(tmp_path: Path) -> None:
    class Failing:
        def snapshot(self) -> Snapshot:
            raise TemporaryError("cluster: waiting for the first list")

    dp = FakeDatapath()
    settings = AgentSettings(state_dir=tmp_path, datapath=DatapathSettings(), metrics_port=-1)
    agent = Agent(settings, Failing(), dp)
    assert agent.step(force=True) is None
    assert dp.calls == [] and agent.last_error.startswith("source: ") and not agent.ready()


def test_a_restarted_agent_detaches_what_went_away_while_it_was_down(tmp_path: Path) -> None:
    dp = FakeDatapath()
    both = snapshot([pod("a"), pod("b")], [splice("s")], root=tmp_path)
    make(tmp_path, both, dp).step()
    assert len(dp.attached) == 2
    restarted = make(tmp_path, snapshot([pod("b")], [splice("s")], root=tmp_path), dp)
    report = restarted.step()
    assert report is not None and report.detached == ["demo/a"]
    assert restarted.slots.policy_of(1) == "demo/s"  # the slot (and its counters) kept its policy


def test_an_attach_error_is_not_ready_and_reported(tmp_path: Path) -> None:
    dp = FakeDatapath()
    agent = make(tmp_path, snapshot([pod("a")], [splice("s")], root=tmp_path), dp)

    def refuse(cgroup: Path) -> None:
        raise TemporaryError(f"{cgroup}: EPERM")

    dp.on_attach = refuse
    agent.step()
    assert not agent.ready() and "demo/a" in agent.last_error
    status = agent.status().to_dict()
    assert status["conditions"][0]["reason"] == "ReconcileFailed"


def test_a_pod_a_guard_refused_to_locate_is_named_in_the_status(tmp_path: Path) -> None:
    snap = snapshot([pod("a"), pod("b")], [splice("s")], root=tmp_path)
    refused = "the host's network namespace cannot be read (/proc/1/ns/net: Permission denied)"
    located = {k: v for k, v in snap.locations.items() if k != "demo/b"}
    agent = make(tmp_path, dataclasses.replace(snap, locations=located, unlocated=(("demo/b", refused),)))
    report = agent.step(force=True)
    assert report is not None and report.attached == ["demo/a"]
    status = agent.status()
    assert f"demo/b: {refused}" in status.last_error
    assert status.to_dict()["lastError"] == status.last_error
