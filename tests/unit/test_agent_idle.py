"""The idle agent, root-free: a turn with nothing new reads Auto's evidence but not every demotion
flag, publishes only when sockets or evidence moved or the heartbeat is due, and a local change
wakes the loop at once instead of at its next poll."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from socksplice.bpf.loader import DatapathSettings
from socksplice.kernel import netns
from socksplice.local import state
from socksplice.nodeagent.agent import Agent
from socksplice.nodeagent.localsource import LocalSource, StatusFile, watch_local
from socksplice.nodeagent.policywatch import LocalPolicies, PolicyWatch
from socksplice.nodeagent.settings import AgentSettings
from tests.unit.agentworld import FixedSource, pod, snapshot, splice
from tests.unit.fakedatapath import FakeDatapath, fake_cookie
from tests.unit.test_local_source import SPLICE, up


@pytest.fixture(autouse=True)
def _cookies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netns, "cookie", fake_cookie)


class Reading(FakeDatapath):
    """Counts the dear reads: every demotion flag (a full Auto turn) and the counters (a status)."""

    def __init__(self) -> None:
        super().__init__()
        self.flag_reads = self.counter_reads = 0

    def demoted_slots(self) -> set[int]:
        self.flag_reads += 1
        return super().demoted_slots()

    def counters(self) -> dict[int, dict[str, int]]:
        self.counter_reads += 1
        return super().counters()


def settings(tmp_path: Path, **kw: Any) -> AgentSettings:
    base = AgentSettings(state_dir=tmp_path / "state", datapath=DatapathSettings(), metrics_port=-1)
    return dataclasses.replace(base, **kw)


class Epoch:
    def __init__(self) -> None:
        self.epoch = 0

    def bump_policy_epoch(self) -> int:
        self.epoch += 1
        return self.epoch


def test_an_idle_turn_decides_and_publishes_only_when_something_moved(tmp_path: Path) -> None:
    dp = Reading()
    agent = Agent(
        settings(tmp_path, resync_interval=3600, status_interval=0, heartbeat_interval=3600),
        FixedSource(snapshot([pod("a")], [splice("s", mode="Auto")], root=tmp_path)),
        dp,
        StatusFile(tmp_path),
    )
    agent.step()
    flags, counters = dp.flag_reads, dp.counter_reads
    for _ in range(5):
        agent.step()
    assert (dp.flag_reads, dp.counter_reads) == (flags, counters)  # nothing moved: nothing read
    dp.endpoint_evidence = {(1, 2, 80): {"connections": 1}}
    agent.step()
    assert dp.flag_reads == flags + 1 and dp.counter_reads > counters  # decided, then published
    agent.step()  # the endpoint is of no pod here: its evidence was forgotten, which is a change too
    flags, counters = dp.flag_reads, dp.counter_reads
    dp.sockets = 2
    agent.step()
    assert dp.flag_reads == flags and dp.counter_reads > counters  # sockets moved: published
    counters = dp.counter_reads
    agent.step()
    assert dp.counter_reads == counters
    agent._last_publish -= 3600  # the heartbeat is due
    agent.step()
    assert dp.counter_reads > counters


def test_a_local_change_is_acted_on_at_once_not_at_the_next_poll(tmp_path: Path) -> None:
    up(tmp_path)
    for p in state.load(tmp_path).pods:
        p.cgroup.mkdir(parents=True)
    dp = FakeDatapath()
    stop = threading.Event()
    with watch_local(tmp_path, poll_interval=60) as watch:
        agent = Agent(
            settings(tmp_path, poll_interval=60),
            LocalSource(tmp_path, "local", watch),
            dp,
            StatusFile(tmp_path),
            policy_watch=PolicyWatch(LocalPolicies(tmp_path, watch), Epoch()),
            wake=watch,
        )
        loop = threading.Thread(target=agent.run, args=(stop,))
        loop.start()
        try:
            deadline = time.monotonic() + 10
            while agent.last_snapshot is None and time.monotonic() < deadline:
                time.sleep(0.02)
            assert dp.attached == set()
            (tmp_path / "manifests" / "bench.yaml").write_text(SPLICE)
            while len(dp.attached) < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert len(dp.attached) == 2  # well before the 60 s poll
        finally:
            stop.set()
            watch.interrupt()
            loop.join(10)
        assert not loop.is_alive()
