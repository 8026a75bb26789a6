"""Prometheus metrics of the node agent, read from the BPF maps at scrape time.

Label values are bounded: a SocketSplice's namespace and name at most (policy slot owners), never
pod names or addresses. Counters are exported as ``_total`` counters in their base unit.

Auto mode's endpoints (``nodeagent.deciding``) are summed per SocketSplice: how many endpoints
hold each verdict, and the receive patterns their connections showed (would-differ and did-differ
kinds, ``bpf.layout``). An endpoint's counters are cumulative for its life; when it is dropped (its
pods are gone) its last counts stay in the SocketSplice's sum (``EvidenceTotals``), so the
``_total`` series only grow.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from socksplice import __version__
from socksplice.api.nodestatus import VERDICTS, EndpointStatus
from socksplice.bpf.layout import DID_KINDS, WOULD_KINDS

PAIR_OUTCOMES = {
    "pairs_spliced": "spliced",
    "pairs_dryrun": "dryrun",
    "pairs_audit": "audit",
    "pairs_port_skipped": "port_not_selected",
    "pairs_peer_unknown": "peer_unknown",
}
FALLBACK_REASONS = {
    "fallback_unpaired": "unpaired",
    "fallback_ratchet": "ratchet",
    "fallback_redirect_error": "redirect_error",
    "fallback_no_state": "no_state",
    "fallback_backpressure": "backpressure",
    "fallback_demoted": "demoted",
}
"""Why messages were passed to TCP (``reason`` of socksplice_fallback_messages_total), by counter."""
BACKPRESSURE_EVENTS = {
    "backpressure_entered": "entered",
    "backpressure_resumed": "resumed",
}
ERROR_KINDS = {
    "err_sockhash_update": "sockhash_update",
    "err_storage": "socket_storage",
    "err_pairs_update": "pairs_update",
    "no_pod_config": "no_pod_config",
    "err_watch": "watch",
}


EvidenceKey = tuple[str, str, str]
"""(policy namespace, policy name, kind)."""


def _policy_labels(policy: str) -> tuple[str, str]:
    namespace, _, name = policy.partition("/")
    return namespace, name


class EvidenceTotals:
    """Would-differ and did-differ counts summed per SocketSplice and kind, monotonic across
    endpoints that come and go.

    ``observe`` takes the current endpoints (each with cumulative counts). An endpoint gone since
    the previous call, or one whose counts went down (it was dropped and seen anew in between),
    keeps its last counts in a retired sum. Scrapes may run in parallel: a lock guards the state.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[tuple[str, str, str, int], tuple[Counter[EvidenceKey], Counter[EvidenceKey]]] = {}
        self._retired: tuple[Counter[EvidenceKey], Counter[EvidenceKey]] = (Counter(), Counter())

    def observe(
        self, endpoints: Iterable[EndpointStatus]
    ) -> tuple[Counter[EvidenceKey], Counter[EvidenceKey]]:
        """(would-differ, did-differ) totals by (policy namespace, policy, kind)."""
        current: dict[tuple[str, str, str, int], tuple[Counter[EvidenceKey], Counter[EvidenceKey]]] = {}
        for e in endpoints:
            would, did = current.setdefault(e.key, (Counter(), Counter()))
            labels = _policy_labels(e.policy)
            would.update({(*labels, k): n for k, n in e.would_differ.items()})
            did.update({(*labels, k): n for k, n in e.did_differ.items()})
        with self._lock:
            for key, (would, did) in self._last.items():
                now = current.get(key)
                if (
                    now is None
                    or any(now[0][k] < n for k, n in would.items())
                    or any(now[1][k] < n for k, n in did.items())
                ):
                    self._retired[0].update(would)
                    self._retired[1].update(did)
            self._last = current
            totals = (Counter(self._retired[0]), Counter(self._retired[1]))
        for would, did in current.values():
            totals[0].update(would)
            totals[1].update(did)
        return totals


class CounterSource(Protocol):
    load_seconds: float

    def counters(self) -> dict[int, dict[str, int]]: ...
    def spliced_sockets(self) -> int: ...


class AgentStats(Protocol):
    """Agent-side figures the collector reports next to the kernel's."""

    attached_pods: int
    attach_results: dict[str, int]
    sockhash_capacity: int


class DatapathCollector(Collector):
    """``endpoints`` returns Auto's current endpoints (``Deciding.endpoints``, replaced whole by the
    loop, so reading it here is safe); ``observation`` the data path's observation reason ("" =
    observing). Without ``observation``, ``socksplice_observation_available`` is not exported."""

    def __init__(
        self,
        datapath: CounterSource,
        stats: AgentStats,
        policy_of: Callable[[int], str],
        endpoints: Callable[[], Sequence[EndpointStatus]] = tuple,
        observation: Callable[[], str] | None = None,
    ) -> None:
        self._dp = datapath
        self._stats = stats
        self._policy_of = policy_of
        self._endpoints = endpoints
        self._observation = observation
        self._evidence = EvidenceTotals()

    def _labels(self, slot: int) -> list[str]:
        policy = self._policy_of(slot) if slot else ""
        namespace, _, name = policy.partition("/")
        return [namespace, name]

    def collect(self) -> Iterator[Metric]:
        per_slot = self._dp.counters()
        pl = ["policy_namespace", "policy"]
        sockets_added = CounterMetricFamily(
            "socksplice_sockets_added", "Sockets inserted into the SOCKHASH for splicing.", labels=pl
        )
        pairs = CounterMetricFamily(
            "socksplice_pairs",
            "Connections whose two local ends were paired, by outcome.",
            labels=[*pl, "outcome"],
        )
        unpaired = CounterMetricFamily(
            "socksplice_unpaired_connections",
            "Connections of selected pods left on plain TCP, outside the SOCKHASH, because no "
            "selected listener on this node saw their SYN (the peer is not a local, selected pod).",
            labels=pl,
        )
        msgs = CounterMetricFamily(
            "socksplice_redirected_messages", "Messages redirected socket-to-socket in the kernel.", labels=pl
        )
        byts = CounterMetricFamily(
            "socksplice_redirected_bytes", "Bytes redirected socket-to-socket in the kernel.", labels=pl
        )
        fb_msgs = CounterMetricFamily(
            "socksplice_fallback_messages",
            "Messages of spliceable sockets passed to TCP, by reason.",
            labels=[*pl, "reason"],
        )
        fb_bytes = CounterMetricFamily(
            "socksplice_fallback_bytes", "Bytes of spliceable sockets passed to TCP.", labels=pl
        )
        backpressure = CounterMetricFamily(
            "socksplice_backpressure_events",
            "Directions of spliced connections moved to TCP because the receiver held its unread "
            "limit (entered), and back to the splice once it read every TCP byte (resumed).",
            labels=[*pl, "event"],
        )
        handbacks = CounterMetricFamily(
            "socksplice_policy_handbacks",
            "Directions of spliced connections handed back to TCP by a NetworkPolicy change.",
            labels=pl,
        )
        errors = CounterMetricFamily(
            "socksplice_datapath_errors", "Data path errors by kind.", labels=[*pl, "kind"]
        )
        # Slots that map to the same labels (no policy, or a deleted SocketSplice: ``policy=""``)
        # are one series: their counters are summed, so each series is exported once.
        merged: dict[tuple[str, ...], Counter[str]] = {}
        for slot, slot_values in sorted(per_slot.items()):
            merged.setdefault(tuple(self._labels(slot)), Counter()).update(slot_values)
        for key, values in merged.items():
            labels = list(key)
            sockets_added.add_metric(labels, values["sockets_added"])
            for counter, outcome in PAIR_OUTCOMES.items():
                pairs.add_metric([*labels, outcome], values[counter])
            unpaired.add_metric(labels, values["conns_unpaired"])
            msgs.add_metric(labels, values["msgs_redirected"])
            byts.add_metric(labels, values["bytes_redirected"])
            for counter, reason in FALLBACK_REASONS.items():
                fb_msgs.add_metric([*labels, reason], values[counter])
            fb_bytes.add_metric(labels, values["bytes_fallback"])
            for counter, event in BACKPRESSURE_EVENTS.items():
                backpressure.add_metric([*labels, event], values[counter])
            handbacks.add_metric(labels, values["policy_handbacks"])
            for counter, kind in ERROR_KINDS.items():
                errors.add_metric([*labels, kind], values[counter])
        yield from (
            sockets_added,
            pairs,
            unpaired,
            msgs,
            byts,
            fb_msgs,
            fb_bytes,
            backpressure,
            handbacks,
            errors,
        )
        yield from self._collect_endpoints()

        spliced = self._dp.spliced_sockets()
        yield GaugeMetricFamily(
            "socksplice_spliced_sockets", "Sockets currently in the SOCKHASH.", value=spliced
        )
        cap = self._stats.sockhash_capacity
        yield GaugeMetricFamily(
            "socksplice_sockhash_fill_ratio",
            "SOCKHASH entries over its capacity (0..1).",
            value=spliced / cap if cap else 0.0,
        )
        yield GaugeMetricFamily(
            "socksplice_attached_pods",
            "Pods whose cgroup carries the sockops program.",
            value=self._stats.attached_pods,
        )
        attach = CounterMetricFamily(
            "socksplice_attach_operations", "Attach/detach operations by result.", labels=["result"]
        )
        for result, n in sorted(self._stats.attach_results.items()):
            attach.add_metric([result], n)
        yield attach
        yield GaugeMetricFamily(
            "socksplice_program_load_seconds",
            "Time to compile and load the BPF programs.",
            value=self._dp.load_seconds,
        )
        info = InfoMetricFamily("socksplice_build", "socksplice version and the node's kernel.")
        info.add_metric([], {"version": __version__, "kernel": os.uname().release})
        yield info

    def _collect_endpoints(self) -> Iterator[Metric]:
        pl = ["policy_namespace", "policy"]
        endpoints = tuple(self._endpoints())
        verdicts = GaugeMetricFamily(
            "socksplice_endpoints",
            "Endpoints (server pod and port, client pod) of Auto and DryRun SocketSplices, by verdict.",
            labels=[*pl, "verdict"],
        )
        would = CounterMetricFamily(
            "socksplice_receive_pattern_events",
            "Receive patterns that tcp_bpf serves differently from TCP (would-differ), seen on the "
            "endpoints' connections, by kind.",
            labels=[*pl, "kind"],
        )
        did = CounterMetricFamily(
            "socksplice_receive_differences",
            "Receives of spliced connections whose result differed from TCP's (did-differ), by kind.",
            labels=[*pl, "kind"],
        )
        by_verdict: dict[tuple[str, str], Counter[str]] = {}
        for e in endpoints:
            by_verdict.setdefault(_policy_labels(e.policy), Counter())[e.verdict] += 1
        would_totals, did_totals = self._evidence.observe(endpoints)
        policies = set(by_verdict) | {k[:2] for k in would_totals} | {k[:2] for k in did_totals}
        for labels in sorted(policies):
            for verdict in VERDICTS:
                verdicts.add_metric([*labels, verdict], by_verdict.get(labels, Counter())[verdict])
            for kind in WOULD_KINDS:
                would.add_metric([*labels, kind], would_totals[(*labels, kind)])
            for kind in DID_KINDS:
                did.add_metric([*labels, kind], did_totals[(*labels, kind)])
        yield from (verdicts, would, did)
        if self._observation is not None:
            yield GaugeMetricFamily(
                "socksplice_observation_available",
                "1 when the data path observes receive patterns (Auto can decide), 0 when it cannot "
                "(Auto then behaves as DryRun).",
                value=0 if self._observation() else 1,
            )
