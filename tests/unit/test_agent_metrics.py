"""The agent's /metrics after SocketSplices are deleted: every series once, each counter monotonic.

The collector reads per-slot counters from a stand-in for the BPF maps and slot owners from a
table that forgets deleted SocketSplices (as the slot allocator does); /metrics is scraped over
HTTP from the agent's own server (``serving.serve``) on loopback.
"""

from __future__ import annotations

import urllib.request
from collections import Counter, defaultdict

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from socksplice.nodeagent.metrics import DatapathCollector
from socksplice.nodeagent.serving import serve


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
