"""Each kernel counter (bpf/layout.py COUNTERS) is exported as exactly one /metrics sample, so
figures counted apart in the programs stay apart in Prometheus."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from socksplice.bpf.layout import COUNTERS
from socksplice.nodeagent.metrics import DatapathCollector

NOT_EXPORTED = {"msgs_fallback"}
"""The sum of the fallback reasons, each of which is exported (``reason`` label)."""


class _Datapath:
    """One policy slot whose counter number i holds the distinct value 1000 + i."""

    load_seconds = 0.1

    def counters(self) -> dict[int, dict[str, int]]:
        return {1: {name: 1000 + i for i, name in enumerate(COUNTERS)}}

    def spliced_sockets(self) -> int:
        return 0


class _Stats:
    attached_pods = 0
    attach_results: dict[str, int] = {}  # noqa: RUF012 - read-only here
    sockhash_capacity = 1


def samples() -> list[tuple[str, dict[str, str], float]]:
    registry = CollectorRegistry()
    registry.register(DatapathCollector(_Datapath(), _Stats(), lambda slot: "demo/web"))
    text = generate_latest(registry).decode()
    return [(s.name, s.labels, s.value) for f in text_string_to_metric_families(text) for s in f.samples]


def where(counter: str) -> list[tuple[str, dict[str, str]]]:
    value = 1000 + COUNTERS.index(counter)
    return [(name, labels) for name, labels, v in samples() if v == value]


def test_every_counter_is_exactly_one_sample() -> None:
    for counter in COUNTERS:
        found = where(counter)
        assert len(found) == (0 if counter in NOT_EXPORTED else 1), (counter, found)


def test_unpaired_connections_and_unpaired_messages_are_different_metrics() -> None:
    [(conns, conn_labels)] = where("conns_unpaired")
    [(msgs, msg_labels)] = where("fallback_unpaired")
    assert conns == "socksplice_unpaired_connections_total"
    assert conn_labels == {"policy_namespace": "demo", "policy": "web"}
    assert msgs == "socksplice_fallback_messages_total"
    assert msg_labels["reason"] == "unpaired"
