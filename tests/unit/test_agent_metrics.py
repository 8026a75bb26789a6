"""The agent's /metrics after SocketSplices are deleted: every series once, each counter monotonic;
and Auto mode's endpoints as the agent decided them.

The collector reads per-slot counters from a stand-in for the BPF maps and slot owners from a
table that forgets deleted SocketSplices (as the slot allocator does); /metrics is scraped over
HTTP from the agent's own server (``serving.serve``) on loopback.
"""

from __future__ import annotations

import urllib.request
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from socksplice.bpf.layout import EVIDENCE
from socksplice.bpf.loader import DatapathSettings
from socksplice.kernel import netns
from socksplice.nodeagent.agent import Agent
from socksplice.nodeagent.metrics import DatapathCollector
from socksplice.nodeagent.serving import serve
from socksplice.nodeagent.settings import AgentSettings
from tests.unit.agentworld import FixedSource, location, pod, snapshot, splice
from tests.unit.fakedatapath import FakeDatapath, fake_cookie


class _Datapath:
    """Per-slot kernel counters: slot 0 (no policy) and one slot per SocketSplice ever created."""

    load_seconds = 0.1

    def __init__(self) -> None:
        self.slots: dict[int, dict[str, int]] = {}

    def count(self, slot: int, n: int) -> None:
        values = self.slots.setdefault(slot, defaultdict(int))
        values["bytes_redirected"] += n
        values["pairs_spliced"] += 1

    def counters(self) -> dict[int, dict[str, int]]:
        return self.slots

    def spliced_sockets(self) -> int:
        return 0


class _Stats:
    attached_pods = 0
    attach_results: dict[str, int] = {}  # noqa: RUF012 - read-only here
    sockhash_capacity = 1


def _scrape(port: int) -> list[tuple[str, tuple[tuple[str, str], ...], float]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return [
        (s.name, tuple(sorted(s.labels.items())), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def test_series_stay_unique_and_monotonic_after_socketsplices_are_deleted() -> None:
    dp = _Datapath()
    owners = {1: "demo/a", 2: "demo/b", 3: "demo/c"}
    for slot in (0, 1, 2, 3):
        dp.count(slot, 100 * (slot + 1))
    registry = CollectorRegistry()
    registry.register(DatapathCollector(dp, _Stats(), lambda slot: owners.get(slot, "")))
    server = serve("127.0.0.1", 0, registry, lambda: True, lambda: True)
    try:
        port = server.server_address[1]
        before = _scrape(port)
        del owners[2], owners[3]  # two SocketSplices deleted; their slots keep their counters
        after = _scrape(port)
        dp.count(3, 7)
        later = _scrape(port)
    finally:
        server.shutdown()
        server.server_close()

    for scrape in (before, after, later):
        series = Counter((name, labels) for name, labels, _ in scrape)
        assert [s for s, n in series.items() if n > 1] == []
    redirected = {
        labels: value for name, labels, value in after if name == "socksplice_redirected_bytes_total"
    }
    unowned = (("policy", ""), ("policy_namespace", ""))
    assert redirected[unowned] == 100 + 300 + 400  # slot 0 and the two deleted SocketSplices
    assert redirected[(("policy", "a"), ("policy_namespace", "demo"))] == 200
    previous = {(n, labels): v for n, labels, v in after}
    for name, labels, value in later:
        if name.endswith("_total") and (name, labels) in previous:
            assert value >= previous[name, labels], (name, labels)


def test_the_agent_exports_its_endpoints_verdicts_and_observation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An Auto SocketSplice over two pods: one endpoint audited, one demoted by a blocking reader."""
    monkeypatch.setattr(netns, "cookie", fake_cookie)
    dp = FakeDatapath()
    server, client, other = (fake_cookie(location(n, root=tmp_path).netns) for n in ("db", "app", "job"))
    quiet = dict.fromkeys(EVIDENCE, 0) | {"connections": 3, "receives": 30}
    dp.endpoint_evidence = {
        (server, client, 5432): quiet,
        (server, other, 5432): quiet | {"would_blocking_receive": 2},
    }
    settings = AgentSettings(
        node_name="node-a", state_dir=tmp_path / "state", datapath=DatapathSettings(), metrics_port=-1
    )
    snap = snapshot([pod("db"), pod("app"), pod("job")], [splice("auto", mode="Auto")], root=tmp_path)
    agent = Agent(settings, FixedSource(snap), dp)
    agent.step()
    assert sorted(e.verdict for e in agent.deciding.endpoints) == ["Audit", "Demoted"]

    server_ = serve("127.0.0.1", 0, agent.registry, lambda: True, lambda: True)
    try:
        port = server_.server_address[1]
        observing = {(name, labels): value for name, labels, value in _scrape(port)}
        dp.observation = "tracefs not mounted"
        blind = {(name, labels): value for name, labels, value in _scrape(port)}
    finally:
        server_.shutdown()
        server_.server_close()
    policy = (("policy", "auto"), ("policy_namespace", "demo"))
    assert observing["socksplice_endpoints", (*policy, ("verdict", "Audit"))] == 1
    assert observing["socksplice_endpoints", (*policy, ("verdict", "Demoted"))] == 1
    assert observing["socksplice_receive_pattern_events_total", (("kind", "blocking_receive"), *policy)] == 2
    assert observing["socksplice_receive_differences_total", (("kind", "blocking_eagain"), *policy)] == 0
    assert observing["socksplice_observation_available", ()] == 1
    assert blind["socksplice_observation_available", ()] == 0
