"""The node agent's loop: desired state from a source, planned, converged into the kernel.

Local mode and cluster mode share everything here; they differ only in the ``Source`` that says
which pods exist, where they live in the kernel, and which SocketSplices apply, and in the
``StatusSink`` that publishes the node's status (a file locally, a SpliceNode in a cluster).
A normal shutdown keeps programs and pins: a restarted agent adopts them, and traffic is never
disturbed. Removing socksplice from a node is an explicit drain.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client.registry import CollectorRegistry

from socksplice import __version__
from socksplice.api.planning import PodPlan, plan
from socksplice.api.pods import PodRef
from socksplice.api.socketsplice import SocketSplice
from socksplice.bpf.loader import Datapath
from socksplice.errors import InvalidSpec, SockspliceError
from socksplice.nodeagent.metrics import DatapathCollector
from socksplice.nodeagent.reconciling import Reconciler, ReconcileReport
from socksplice.nodeagent.serving import serve
from socksplice.nodeagent.settings import AgentSettings
from socksplice.nodeagent.slots import SlotTable
from socksplice.nodeagent.targets import PodLocation, PodTarget

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    """Everything the agent needs to know about its node at one moment."""

    pods: tuple[PodRef, ...]
    splices: tuple[SocketSplice, ...]
    locations: Mapping[str, PodLocation]
    errors: tuple[InvalidSpec, ...] = ()

    def fingerprint(self) -> int:
        return hash(
            (self.pods, self.splices, tuple(sorted(self.locations.items())), tuple(map(str, self.errors)))
        )


class Source(Protocol):
    def snapshot(self) -> Snapshot: ...


class StatusSink(Protocol):
    def publish(self, status: dict[str, Any]) -> None: ...


@dataclass
class AgentStats:
    attached_pods: int = 0
    attach_results: dict[str, int] = field(default_factory=dict)
    sockhash_capacity: int = 0


def targets_for(snapshot: Snapshot, plans: Mapping[str, PodPlan]) -> list[PodTarget]:
    """Planned pods that this node can locate in its kernel."""
    return [
        PodTarget(key, snapshot.locations[key], p) for key, p in plans.items() if key in snapshot.locations
    ]


class Agent:
    def __init__(
        self, settings: AgentSettings, source: Source, datapath: Datapath, sink: StatusSink | None = None
    ) -> None:
        self.settings = settings
        self.source = source
        self.datapath = datapath
        self.sink = sink
        self.slots = SlotTable(settings.state_dir / "slots.json", settings.datapath.max_policies)
        self.reconciler = Reconciler(datapath, self.slots, settings.state_dir / "applied.json")
        self.stats = AgentStats(sockhash_capacity=settings.datapath.sockhash_size)
        self.registry = CollectorRegistry()
        self.registry.register(DatapathCollector(datapath, self.stats, self.slots.policy_of))
        self.last_error = ""
        self.last_report: ReconcileReport | None = None
        self.last_snapshot: Snapshot | None = None
        self._last_fingerprint: int | None = None
        self._last_reconcile = 0.0
        self._last_publish = 0.0
        self._heartbeat = time.monotonic()
        self._ready = False
        self.http_port: int | None = None

    # --- one step ---------------------------------------------------------------------------

    def step(self, force: bool = False) -> ReconcileReport | None:
        """Poll the source; reconcile when it changed or a resync is due. Returns the report if run."""
        self._heartbeat = time.monotonic()
        try:
            snapshot = self.source.snapshot()
        except SockspliceError as exc:
            self.last_error = f"source: {exc}"
            log.error("agent: source failed: %s", exc)
            return None
        fp = snapshot.fingerprint()
        due = time.monotonic() - self._last_reconcile >= self.settings.resync_interval
        if not force and fp == self._last_fingerprint and not due:
            if (
                self.sink is not None
                and time.monotonic() - self._last_publish >= self.settings.status_interval
            ):
                self._publish()
            return None
        for err in snapshot.errors:
            if self._last_fingerprint != fp:
                log.error("manifest: rejected: %s", err)
        plans = plan(snapshot.pods, snapshot.splices)
        report = self.reconciler.reconcile(targets_for(snapshot, plans))
        for result, n in report.attach_results.items():
            self.stats.attach_results[result] = self.stats.attach_results.get(result, 0) + n
        self.stats.attached_pods = len(self.reconciler.applied)
        self.last_error = "; ".join(f"{k}: {v}" for k, v in sorted(report.errors.items()))
        self.last_report, self.last_snapshot = report, snapshot
        self._last_fingerprint, self._last_reconcile = fp, time.monotonic()
        self._ready = not report.errors
        self._publish(plans)
        return report

    def _publish(self, plans: Mapping[str, PodPlan] | None = None) -> None:
        if self.sink is None:
            return
        self._last_publish = time.monotonic()
        try:
            self.sink.publish(self.status(plans))
        except (OSError, SockspliceError) as exc:
            log.error("agent: status not published: %s", exc)

    def status(self, plans: Mapping[str, PodPlan] | None = None) -> dict[str, Any]:
        """The node's status: what a SpliceNode object carries (and the local status file)."""
        snapshot = self.last_snapshot
        if plans is None:
            plans = plan(snapshot.pods, snapshot.splices) if snapshot else {}
        per_policy: dict[str, dict[str, Any]] = {}
        for s in snapshot.splices if snapshot else ():
            matched = [k for k, p in plans.items() if s.key in p.policies]
            per_policy[s.key] = {
                "mode": str(s.spec.mode),
                "generation": s.generation,
                "matchedPods": len(matched),
                "attachedPods": len([k for k in matched if k in self.reconciler.applied]),
            }
        counters = self.datapath.counters()
        for slot, values in counters.items():
            policy = self.slots.policy_of(slot)
            if policy in per_policy:
                per_policy[policy]["pairsSpliced"] = values["pairs_spliced"]
                per_policy[policy]["bytesRedirected"] = values["bytes_redirected"]
        return {
            "node": self.settings.node_name,
            "agentVersion": __version__,
            "kernel": os.uname().release,
            "datapath": {
                "pinDir": str(self.settings.datapath.pin_dir),
                "adopted": self.datapath.adopted,
                "loadSeconds": round(self.datapath.load_seconds, 3),
            },
            "attachedPods": sorted(self.reconciler.applied),
            "splicedSockets": self.datapath.spliced_sockets(),
            "totals": self.datapath.totals(),
            "policies": per_policy,
            "manifestErrors": [str(e) for e in (snapshot.errors if snapshot else ())],
            "lastError": self.last_error,
            "updated": time.time(),
        }

    # --- running ----------------------------------------------------------------------------

    def healthy(self) -> bool:
        return time.monotonic() - self._heartbeat < max(10.0, 20 * self.settings.poll_interval)

    def ready(self) -> bool:
        return self._ready

    def start_http(self) -> None:
        if self.settings.metrics_port < 0:
            return
        server = serve(
            self.settings.metrics_host, self.settings.metrics_port, self.registry, self.healthy, self.ready
        )
        self.http_port = int(server.server_address[1])
        log.info("agent: serving /metrics, /healthz, /readyz on port %d", self.http_port)

    def run(self, stop: threading.Event) -> None:
        """Loop until ``stop`` is set. Programs and pins stay when it returns."""
        self.start_http()
        self.step(force=True)
        while not stop.wait(self.settings.poll_interval):
            self.step()
        log.info("agent: stopped; programs stay attached and maps pinned (spliced traffic continues)")
