"""Each kernel counter (bpf/layout.py COUNTERS) is exported as exactly one /metrics sample, so
figures counted apart in the programs stay apart in Prometheus; Auto mode's endpoints are summed
per SocketSplice, by verdict and by evidence kind, with bounded labels and growing counters."""

from __future__ import annotations

import dataclasses

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from socksplice.api.nodestatus import EndpointStatus
from socksplice.bpf.layout import COUNTERS, DID_KINDS, WOULD_KINDS
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


# --- Auto mode's endpoints ------------------------------------------------------------------------


def endpoint(server: str, client: str, port: int, policy: str, verdict: str, **raw: object) -> EndpointStatus:
    """An endpoint as a SpliceNode status carries it (camelCase dict), read back."""
    return EndpointStatus.from_dict(
        {"server": server, "client": client, "port": port, "policy": policy, "mode": "Auto"}
        | {"verdict": verdict, "connections": 20, "messages": 400}
        | raw
    )


def scrape(collector: DatapathCollector) -> list[tuple[str, dict[str, str], float]]:
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    return [(s.name, s.labels, s.value) for f in text_string_to_metric_families(text) for s in f.samples]


def values(
    scraped: list[tuple[str, dict[str, str], float]], name: str, label: str
) -> dict[tuple[str, str], float]:
    """``name``'s samples as {(policy, label value): value}."""
    return {
        (f"{labels['policy_namespace']}/{labels['policy']}", labels[label]): v
        for n, labels, v in scraped
        if n == name
    }


SHOP = [
    endpoint("shop/redis-0", "shop/api-0", 6379, "shop/cache", "Spliced"),
    endpoint(
        "shop/redis-0", "shop/api-1", 6379, "shop/cache", "Demoted", wouldDiffer={"blocking_receive": 3}
    ),
    endpoint(
        "shop/redis-0",
        "shop/api-2",
        6379,
        "shop/cache",
        "Demoted",
        wouldDiffer={"blocking_receive": 2, "waitall": 1},
        didDiffer={"blocking_eagain": 1},
    ),
    endpoint("web/db-0", "web/app-0", 5432, "web/db", "Audit", reason="evidence: 3 of 20 connections"),
]


def test_endpoints_by_verdict_and_evidence_summed_per_socketsplice() -> None:
    scraped = scrape(DatapathCollector(_Datapath(), _Stats(), lambda slot: "demo/web", lambda: SHOP))
    assert values(scraped, "socksplice_endpoints", "verdict") == {
        ("shop/cache", "Audit"): 0,
        ("shop/cache", "Spliced"): 1,
        ("shop/cache", "Demoted"): 2,
        ("web/db", "Audit"): 1,
        ("web/db", "Spliced"): 0,
        ("web/db", "Demoted"): 0,
    }
    would = values(scraped, "socksplice_receive_pattern_events_total", "kind")
    assert {k for p, k in would if p == "shop/cache"} == set(WOULD_KINDS)  # every kind, 0 included
    assert would["shop/cache", "blocking_receive"] == 5 and would["shop/cache", "waitall"] == 1
    assert would["shop/cache", "rcvlowat"] == 0 and would["web/db", "blocking_receive"] == 0
    did = values(scraped, "socksplice_receive_differences_total", "kind")
    assert {k for p, k in did if p == "web/db"} == set(DID_KINDS)
    assert did["shop/cache", "blocking_eagain"] == 1 and sum(did.values()) == 1


def test_endpoint_metrics_carry_no_pod_names_or_ports() -> None:
    scraped = scrape(DatapathCollector(_Datapath(), _Stats(), lambda slot: "demo/web", lambda: SHOP))
    label_values = {v for name, labels, _ in scraped for v in labels.values()}
    assert not [v for v in label_values if "redis" in v or "api-" in v or v in ("6379", "5432")]
    assert {
        tuple(sorted(labels))
        for name, labels, _ in scraped
        if name.startswith(("socksplice_endpoints", "socksplice_receive_"))
    } == {("policy", "policy_namespace", "verdict"), ("kind", "policy", "policy_namespace")}


def test_evidence_counters_keep_growing_when_endpoints_go() -> None:
    current = list(SHOP)
    collector = DatapathCollector(_Datapath(), _Stats(), lambda slot: "", lambda: tuple(current))
    first = values(scrape(collector), "socksplice_receive_pattern_events_total", "kind")
    del current[1]  # shop/api-1's pod is gone: its endpoint is dropped
    current[1] = dataclasses.replace(current[1], would_differ={"blocking_receive": 4, "waitall": 1})
    second = values(scrape(collector), "socksplice_receive_pattern_events_total", "kind")
    assert second["shop/cache", "blocking_receive"] == 3 + 4
    current.clear()  # every pod gone; then shop/api-2 comes back with fresh counters
    third_scrape = scrape(collector)
    third = values(third_scrape, "socksplice_receive_pattern_events_total", "kind")
    # shop/cache has no endpoint left: 0 endpoints, and its counters keep what was counted.
    assert set(values(third_scrape, "socksplice_endpoints", "verdict").values()) == {0}
    assert third["shop/cache", "blocking_receive"] == 3 + 4
    current.append(dataclasses.replace(SHOP[2], would_differ={"blocking_receive": 1}))
    fourth = values(scrape(collector), "socksplice_receive_pattern_events_total", "kind")
    assert fourth["shop/cache", "blocking_receive"] == 3 + 4 + 1
    for before, after in ((first, second), (second, third), (third, fourth)):
        # a series may only go (web/db: no endpoint and nothing ever counted), never shrink
        assert all(after[k] >= v for k, v in before.items() if k in after), (before, after)
        assert all(v == 0 for k, v in before.items() if k not in after)


@pytest.mark.parametrize(("reason", "available"), [("", 1), ("tracefs not mounted", 0)])
def test_observation_available(reason: str, available: int) -> None:
    scraped = scrape(DatapathCollector(_Datapath(), _Stats(), lambda slot: "", tuple, lambda: reason))
    assert [v for n, _, v in scraped if n == "socksplice_observation_available"] == [available]


def test_no_endpoints_no_series_and_no_observation_without_its_source() -> None:
    scraped = scrape(DatapathCollector(_Datapath(), _Stats(), lambda slot: ""))
    assert not [n for n, _, _ in scraped if "endpoints" in n or "receive" in n or "observation" in n]
