"""Prometheus metrics of the node agent, read from the BPF maps at scrape time.

Label values are bounded: a SocketSplice's namespace and name at most (policy slot owners), never
pod names or addresses. Counters are exported as ``_total`` counters in their base unit.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from socksplice import __version__

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
    def __init__(self, datapath: CounterSource, stats: AgentStats, policy_of: Callable[[int], str]) -> None:
        self._dp = datapath
        self._stats = stats
        self._policy_of = policy_of

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
            for counter, kind in ERROR_KINDS.items():
                errors.add_metric([*labels, kind], values[counter])
        yield from (sockets_added, pairs, unpaired, msgs, byts, fb_msgs, fb_bytes, backpressure, errors)

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
