"""Reconciler invariants, root-free with a fake data path: configuration before attach, detach
before the configuration is deleted, recreated pods, restart from applied.json, resync."""

from __future__ import annotations

from pathlib import Path

import pytest

from socksplice.api.planning import plan
from socksplice.kernel import netns
from socksplice.nodeagent.reconciling import Reconciler
from socksplice.nodeagent.slots import SlotTable
from socksplice.nodeagent.targets import PodLocation, PodTarget
from tests.unit.agentworld import location, pod, splice
from tests.unit.fakedatapath import FakeDatapath, fake_cookie


@pytest.fixture(autouse=True)
def _cookies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netns, "cookie", fake_cookie)


def targets(
    names: list[str], loc: dict[str, PodLocation], mode: str = "SpliceRelaxedReceive"
) -> list[PodTarget]:
    plans = plan([pod(n) for n in names], [splice("s", mode=mode)])
    return [PodTarget(f"demo/{n}", loc[n], plans[f"demo/{n}"]) for n in names]


def world(tmp_path: Path) -> tuple[FakeDatapath, Reconciler, dict[str, PodLocation]]:
    dp = FakeDatapath()
    rec = Reconciler(dp, SlotTable(tmp_path / "slots.json", 8), tmp_path / "applied.json")
    return dp, rec, {n: location(n, root=tmp_path) for n in ("a", "b")}


def test_configuration_is_written_before_the_attach(tmp_path: Path) -> None:
    dp, rec, loc = world(tmp_path)
    report = rec.reconcile(targets(["a"], loc))
    assert report.attached == ["demo/a"] and report.attach_results == {"attached": 1}
    assert dp.calls == [("set_pod", fake_cookie(loc["a"].netns)), ("attach", loc["a"].cgroup)]
    assert dp.pods[fake_cookie(loc["a"].netns)].policy_slot == 1


def test_detach_comes_before_deleting_the_configuration(tmp_path: Path) -> None:
    dp, rec, loc = world(tmp_path)
    rec.reconcile(targets(["a"], loc))
    dp.calls.clear()
    report = rec.reconcile([])
    assert report.detached == ["demo/a"]
    assert dp.calls == [("detach", loc["a"].cgroup), ("delete_pod", fake_cookie(loc["a"].netns))]
    assert dp.attached == set() and dp.pods == {}


def test_a_pod_whose_cgroup_is_gone_is_forgotten_without_a_detach(tmp_path: Path) -> None:
    dp, rec, loc = world(tmp_path)
    rec.reconcile(targets(["a"], loc))
    loc["a"].cgroup.rmdir()  # the pod was deleted: the kernel dropped its cgroup and attachment
    dp.calls.clear()
    rec.reconcile([])
    assert dp.calls == [("delete_pod", fake_cookie(loc["a"].netns))] and rec.applied == {}


def test_resync_is_idempotent_and_repairs_drift(tmp_path: Path) -> None:
    dp, rec, loc = world(tmp_path)
    rec.reconcile(targets(["a", "b"], loc))
    dp.calls.clear()
    report = rec.reconcile(targets(["a", "b"], loc))
    assert report.attached == report.updated == report.detached == []
    assert [c for c, _ in dp.calls] == ["attach", "attach"]  # no configuration rewritten
    assert report.attach_results == {"unchanged": 2}
    dp.attached.discard(loc["a"].cgroup)  # someone detached it behind the agent's back
    rec.reconcile(targets(["a", "b"], loc))
    assert dp.attached == {loc["a"].cgroup, loc["b"].cgroup}


def test_a_changed_plan_updates_the_configuration_in_place(tmp_path: Path) -> None:
    dp, rec, loc = world(tmp_path)
    rec.reconcile(targets(["a"], loc))
    report = rec.reconcile(targets(["a"], loc, mode="DryRun"))
    assert report.updated == ["demo/a"]
    cfg = dp.pods[fake_cookie(loc["a"].netns)]
    assert cfg.dryrun_all and not cfg.splice_all


def test_a_recreated_pod_moves_to_its_new_location(tmp_path: Path) -> None:
    dp, rec, loc = world(tmp_path)
    rec.reconcile(targets(["a"], loc))
    old = loc["a"]
    new = location("a", generation=1, root=tmp_path)
    report = rec.reconcile(targets(["a"], {"a": new}))
    assert report.detached == ["demo/a"] and report.attached == ["demo/a"]
    assert dp.attached == {new.cgroup}
    assert set(dp.pods) == {fake_cookie(new.netns)}  # the old netns's configuration is gone
    assert rec.applied["demo/a"].location == new
    assert fake_cookie(old.netns) not in dp.pods


def test_a_recreated_pod_waits_while_its_old_location_cannot_be_detached(tmp_path: Path) -> None:
    dp, rec, loc = world(tmp_path)
    rec.reconcile(targets(["a"], loc))
    dp.failing_detach = {loc["a"].cgroup}
    new = location("a", generation=1, root=tmp_path)
    report = rec.reconcile(targets(["a"], {"a": new}))
    assert "demo/a" in report.errors and rec.applied["demo/a"].location == loc["a"]
    assert new.cgroup not in dp.attached
    dp.failing_detach = set()
    rec.reconcile(targets(["a"], {"a": new}))
    assert dp.attached == {new.cgroup} and rec.applied["demo/a"].location == new


def test_a_restarted_reconciler_detaches_what_stopped_being_selected(tmp_path: Path) -> None:
    dp, rec, loc = world(tmp_path)
    rec.reconcile(targets(["a", "b"], loc))
    restarted = Reconciler(dp, SlotTable(tmp_path / "slots.json", 8), tmp_path / "applied.json")
    assert restarted.applied == rec.applied
    dp.calls.clear()
    report = restarted.reconcile(targets(["b"], loc))
    assert report.detached == ["demo/a"] and report.attached == []
    assert ("set_pod", fake_cookie(loc["b"].netns)) not in dp.calls  # b's configuration is kept


def test_state_of_agents_before_0_2_loads(tmp_path: Path) -> None:
    (tmp_path / "applied.json").write_text(
        '{"demo/a": {"cgroup": "/c", "netns": "/n", "cookie": 7, "config": {"policy_slot": 1,'
        ' "enforce_all": true, "enforce_ports": [], "dryrun_all": false, "dryrun_ports": [80]}}}'
    )
    rec = Reconciler(FakeDatapath(), SlotTable(None, 8), tmp_path / "applied.json")
    cfg = rec.applied["demo/a"].config
    assert cfg.splice_all and cfg.dryrun_ports == (80,)


def test_slots_of_deleted_policies_are_released(tmp_path: Path) -> None:
    slots = SlotTable(None, 8)
    rec = Reconciler(FakeDatapath(), slots)
    rec.reconcile(targets(["a"], {"a": location("a", root=tmp_path)}))
    assert slots.policy_of(1) == "demo/s"
    rec.reconcile([])
    assert slots.policy_of(1) == ""
