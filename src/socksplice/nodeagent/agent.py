"""The node agent's loop: desired state from a source, planned, converged into the kernel.

Local mode and cluster mode share everything here; they differ only in the ``Source`` that says
which pods exist, where they live in the kernel, and which SocketSplices apply, and in the
``StatusSink`` that publishes the node's status (a file locally, a SpliceNode in a cluster).
A normal shutdown keeps programs and pins: a restarted agent adopts them, and traffic is never
disturbed. Removing socksplice from a node is an explicit drain.

What each loop turn does, and how often (``AgentSettings``): a turn comes every ``poll_interval``
(0.5 s), and at once when the source's ``Wake`` reports a change (local mode: inotify on the
directory). The source is asked every turn (cached in both modes: a local directory is re-read only
after inotify saw it change, the cluster's watches keep theirs in memory); a changed snapshot
reconciles at once, an unchanged one every ``resync_interval``. Auto reads the evidence every turn
(one entry per endpoint) and decides only when it changed, an endpoint is still in Audit (its window
completes with time alone), pods or plans changed, or ``heartbeat_interval`` passed: otherwise the
decision would come out the same, and the full turn reads every demotion flag. The status is
published at once after a change, every ``status_interval`` while sockets, bytes or evidence move,
and every ``heartbeat_interval`` otherwise (the heartbeat).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from prometheus_client.registry import CollectorRegistry

from socksplice import __version__
from socksplice.api.drain import DrainReport, DrainRequest, DrainStatus
from socksplice.api.nodestatus import AUDIT, NodeStatus, PolicyStatus
from socksplice.api.planning import PodPlan, plan
from socksplice.bpf.layout import ENDPOINT_SLOTS
from socksplice.bpf.loader import EndpointTuple
from socksplice.errors import SockspliceError
from socksplice.nodeagent.deciding import Deciding, DecidingPort
from socksplice.nodeagent.draining import Drain, DrainPort, DrainSettings
from socksplice.nodeagent.endpoints import EndpointTable
from socksplice.nodeagent.metrics import DatapathCollector
from socksplice.nodeagent.policywatch import PolicyWatch
from socksplice.nodeagent.reconciling import DatapathPort, Reconciler, ReconcileReport
from socksplice.nodeagent.serving import serve
from socksplice.nodeagent.settings import AgentSettings
from socksplice.nodeagent.slots import SlotTable
from socksplice.nodeagent.snapshots import Snapshot, Source
from socksplice.nodeagent.targets import PodTarget

log = logging.getLogger(__name__)


class StatusSink(Protocol):
    def publish(self, status: NodeStatus) -> None: ...


class Wake(Protocol):
    """What ends the loop's sleep early: a change of the source (``kernel.inotify.DirectoryWatch``)."""

    def wait(self, timeout: float) -> bool: ...


class DrainInbox(Protocol):
    """Where drain requests come from and their ``status.drain`` goes (``cluster.drainrequest``)."""

    def take(self) -> DrainRequest | None: ...
    def report(self, status: DrainStatus) -> None: ...


class AgentDatapath(DatapathPort, DrainPort, DecidingPort, Protocol):
    """The part of ``bpf.loader.Datapath`` the agent uses."""

    adopted: bool
    load_seconds: float

    def counters(self) -> dict[int, dict[str, int]]: ...
    def totals(self) -> dict[str, int]: ...


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


@dataclass(frozen=True)
class Planned:
    """A snapshot and its plan, computed once per change."""

    snapshot: Snapshot
    plans: Mapping[str, PodPlan]


Evidence = Mapping[EndpointTuple, Mapping[str, int]]
Activity = tuple[int, int, Evidence | None]

DRAINING = "draining on request: not attaching"
DRAINED = "drained on request: not attaching (restart the agent to resume)"


class Agent:
    """The loop's owner: only the thread that calls ``step`` (``run``) touches the reconciler,
    the slot table and the agent's state; the HTTP thread only reads (``healthy``, ``ready``,
    the collector's immutable slot map)."""

    def __init__(
        self,
        settings: AgentSettings,
        source: Source,
        datapath: AgentDatapath,
        sink: StatusSink | None = None,
        drains: DrainInbox | None = None,
        policy_watch: PolicyWatch | None = None,
        wake: Wake | None = None,
    ) -> None:
        self.settings = settings
        self.source = source
        self.datapath = datapath
        self.sink = sink
        self.drains = drains
        self.policy_watch = policy_watch
        self.wake = wake
        self.handbacks: dict[str, tuple[datetime, str]] = {}
        self._policy_error = ""
        """Per SocketSplice: when a NetworkPolicy change last handed its connections back, and why."""
        self.slots = SlotTable(settings.state_dir / "slots.json", settings.datapath.max_policies)
        self.reconciler = Reconciler(datapath, self.slots, settings.state_dir / "applied.json")
        table = EndpointTable(settings.state_dir / "endpoints.json", ENDPOINT_SLOTS)
        self.deciding = Deciding(datapath, table)
        self.stats = AgentStats(sockhash_capacity=settings.datapath.sockhash_size)
        self.registry = CollectorRegistry()
        self.registry.register(
            DatapathCollector(
                datapath,
                self.stats,
                self.slots.policy_of,
                lambda: self.deciding.endpoints,
                lambda: datapath.observation,
            )
        )
        self.last_error = ""
        self.last_report: ReconcileReport | None = None
        self.planned: Planned | None = None
        self.drain_report: DrainReport | None = None
        self._drain: tuple[DrainRequest, Drain] | None = None
        self._last_fingerprint: int | None = None
        self._last_reconcile = 0.0
        self._last_publish = 0.0
        self._last_look = 0.0
        self._published_activity: Activity | None = None
        self._evidence: Evidence | None = None
        self._last_decide = 0.0
        self._heartbeat = time.monotonic()
        self._ready = False
        self.http_port: int | None = None

    @property
    def last_snapshot(self) -> Snapshot | None:
        return self.planned.snapshot if self.planned else None

    @property
    def draining(self) -> bool:
        """True from a drain request on: the agent never reconciles again (until restarted)."""
        return self._drain is not None or self.drain_report is not None

    # --- one step ---------------------------------------------------------------------------

    def step(self, force: bool = False) -> ReconcileReport | None:
        """Poll the source; reconcile when it changed or a resync is due. Returns the report if run.
        From a drain request on, drive the drain instead (a bounded look per step)."""
        self._heartbeat = time.monotonic()
        if self._drain_step():
            # Keep publishing (the heartbeat): a drained node says it is drained, not silent.
            if (
                self.sink is not None
                and time.monotonic() - self._last_publish >= self.settings.status_interval
            ):
                self._publish()
            return None
        try:
            snapshot = self.source.snapshot()
        except SockspliceError as exc:
            self.last_error = f"source: {exc}"
            log.error("agent: source failed: %s", exc)
            return None
        fp = snapshot.fingerprint()
        due = time.monotonic() - self._last_reconcile >= self.settings.resync_interval
        if not force and fp == self._last_fingerprint and not due:
            news = self._follow_policies(snapshot) | self._decide()
            if news or self._publish_due():
                self._publish()
            return None
        if self._last_fingerprint != fp:
            for err in snapshot.errors:
                log.error("manifest: rejected: %s", err)
        if self.planned is None or self.planned.snapshot != snapshot:
            self.planned = Planned(snapshot, plan(snapshot.pods, snapshot.splices))
        report = self.reconciler.reconcile(targets_for(snapshot, self.planned.plans))
        for result, n in report.attach_results.items():
            self.stats.attach_results[result] = self.stats.attach_results.get(result, 0) + n
        self.stats.attached_pods = len(self.reconciler.applied)
        problems = {**dict(snapshot.unlocated), **report.errors}
        self.last_error = "; ".join(f"{k}: {v}" for k, v in sorted(problems.items()))
        self.last_report = report
        self._last_fingerprint, self._last_reconcile = fp, time.monotonic()
        self._ready = not report.errors
        self._follow_policies(snapshot)
        self._decide(force=True)
        self._publish()
        return report

    def _follow_policies(self, snapshot: Snapshot) -> bool:
        """Hand spliced connections back to TCP when a NetworkPolicy that could affect a pod
        located on this node changed (``policywatch``); True when it did. Every located pod counts,
        attached or not: a detached pod's live connections stay spliced to their end."""
        if self.policy_watch is None:
            return False
        pods = [p for p in snapshot.pods if p.key in snapshot.locations]
        try:
            handback = self.policy_watch.step(pods, time.time())
        except (OSError, SockspliceError) as exc:
            if str(exc) != self._policy_error:  # once per reason, not every poll
                log.error("agent: NetworkPolicies not followed: %s", exc)
            self._policy_error = str(exc)
            return False
        self._policy_error = ""
        if handback is None:
            return False
        plans = self.planned.plans if self.planned else {}
        when = datetime.fromtimestamp(handback.at, UTC)
        for pod, reason in sorted(handback.pods.items()):
            for policy in plans[pod].policies if pod in plans else ():
                self.handbacks[policy] = (when, reason)
        return True

    def _decide(self, force: bool = False) -> bool:
        """Auto's turn (``deciding``); True when an endpoint was promoted or demoted. Skipped when
        its outcome cannot differ from the last one's (same evidence, no endpoint in Audit, same
        pods and plans: ``force`` after a reconcile), but for one turn every ``heartbeat_interval``
        that rewrites the verdicts and flags (repairs drift)."""
        try:
            evidence = self.datapath.evidence()  # one entry per endpoint: cheap, unlike the flags
        except SockspliceError as exc:
            log.error("agent: verdicts not updated: %s", exc)
            return False
        idle = (
            evidence == self._evidence
            and not any(e.verdict == AUDIT for e in self.deciding.endpoints)
            and time.monotonic() - self._last_decide < self.settings.heartbeat_interval
        )
        if idle and not force:
            return False
        self._evidence, self._last_decide = evidence, time.monotonic()
        plans = self.planned.plans if self.planned else {}
        pods = {a.cookie: key for key, a in self.reconciler.applied.items()}
        try:
            changes = self.deciding.step(pods, plans, time.time())
        except SockspliceError as exc:
            self._evidence = None  # decide again next turn
            log.error("agent: verdicts not updated: %s", exc)
            return False
        return any(c.new is not None and (c.old is None or c.new.verdict != c.old.verdict) for c in changes)

    def _drain_step(self) -> bool:
        """Start or advance a requested drain; True when the agent is draining (or drained)."""
        if self.drain_report is not None:
            return True
        if self._drain is None:
            request = self.drains.take() if self.drains is not None else None
            if request is None:
                return False
            self._ready, self.last_error = False, DRAINING
            assert self.drains is not None
            self.drains.report(DrainStatus.draining(request))
            try:
                running = Drain(
                    self.datapath, self.reconciler, settings=DrainSettings(timeout=request.timeout)
                )
            except SockspliceError as exc:
                self._finish_drain(request, None, f"drain: {exc}")
                return True
            self.stats.attached_pods = len(self.reconciler.applied)
            self._drain = (request, running)
        request, running = self._drain
        try:
            report = running.step()
        except SockspliceError as exc:
            self._finish_drain(request, None, f"drain: {exc}")
            return True
        if report is not None:
            self._finish_drain(request, report)
        return True

    def _finish_drain(self, request: DrainRequest, report: DrainReport | None, error: str = "") -> None:
        status = DrainStatus.finished(request, datetime.now(UTC), report, error)
        log.warning("drain: %s: %s", status.phase, status.message)
        self.drain_report = report if report is not None else DrainReport(errors=(error,))
        self._drain, self.last_error = None, DRAINED
        self.stats.attached_pods = len(self.reconciler.applied)
        if self.drains is not None:
            self.drains.report(status)

    def _activity(self, status: NodeStatus | None = None) -> Activity:
        """What an unchanged node's status shows moving: the spliced sockets, the bytes the data path
        moved (both directions, spliced or handed to TCP) and Auto's evidence. Read from the data
        path, or taken from ``status`` when one was just built from it."""
        sockets = status.spliced_sockets if status is not None else self.datapath.spliced_sockets()
        totals = status.totals if status is not None else self.datapath.totals()
        moved = totals.get("bytes_redirected", 0) + totals.get("bytes_fallback", 0)
        return sockets, moved, self._evidence

    def _publish_due(self) -> bool:
        """Whether an unchanged node publishes now: when its sockets, bytes or evidence moved (looked
        at every ``status_interval``), or for the heartbeat every ``heartbeat_interval``."""
        now = time.monotonic()
        if self.sink is None or now - self._last_look < self.settings.status_interval:
            return False
        if now - self._last_publish >= self.settings.heartbeat_interval:
            return True
        self._last_look = now
        return self._activity() != self._published_activity

    def _publish(self) -> None:
        if self.sink is None:
            return
        self._last_publish = self._last_look = time.monotonic()
        try:
            status = self.status()
            self._published_activity = self._activity(status)
            self.sink.publish(status)
        except (OSError, SockspliceError) as exc:
            log.error("agent: status not published: %s", exc)

    def status(self) -> NodeStatus:
        """The node's status: what a SpliceNode object carries (and the local status file)."""
        snapshot = self.last_snapshot
        plans = self.planned.plans if self.planned else {}
        counters = self.datapath.counters()
        by_policy = {self.slots.policy_of(slot): values for slot, values in counters.items() if slot}
        policies = []
        endpoints = self.deciding.endpoints
        for s in snapshot.splices if snapshot else ():
            matched = [k for k, p in plans.items() if s.key in p.policies]
            values = by_policy.get(s.key)
            verdicts = [e.verdict for e in endpoints if e.policy == s.key]
            policies.append(
                PolicyStatus(
                    name=s.key,
                    mode=str(s.spec.mode),
                    generation=s.generation,
                    matched_pods=len(matched),
                    attached_pods=len([k for k in matched if k in self.reconciler.applied]),
                    pairs_spliced=values["pairs_spliced"] if values else None,
                    bytes_redirected=values["bytes_redirected"] if values else None,
                    endpoints_audit=verdicts.count("Audit"),
                    endpoints_spliced=verdicts.count("Spliced"),
                    endpoints_demoted=verdicts.count("Demoted"),
                    policy_handbacks=values.get("policy_handbacks") if values else None,
                    handback_time=handback[0] if (handback := self.handbacks.get(s.key)) else None,
                    handback_reason=handback[1] if handback else "",
                )
            )
        return NodeStatus(
            node_name=self.settings.node_name,
            agent_version=__version__,
            kernel=os.uname().release,
            heartbeat_time=datetime.now(UTC),
            pods=tuple(sorted(self.reconciler.applied)),
            spliced_sockets=self.datapath.spliced_sockets(),
            totals=self.datapath.totals(),
            policies=tuple(policies),
            pin_dir=str(self.settings.datapath.pin_dir),
            adopted=self.datapath.adopted,
            manifest_errors=tuple(str(e) for e in (snapshot.errors if snapshot else ())),
            last_error=self.last_error,
            drain_phase=("Drained" if self.drain_report is not None else "Draining") if self.draining else "",
            endpoints=endpoints,
            observation=self.datapath.observation,
        )

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
        """Loop until ``stop`` is set (seen within one ``poll_interval``; a signal handler that also
        interrupts the ``wake`` ends it at once). Programs and pins stay when it returns."""
        self.start_http()
        self.step(force=True)
        while not stop.is_set():
            if self.wake is None:
                stop.wait(self.settings.poll_interval)
            else:
                self.wake.wait(self.settings.poll_interval)
            if not stop.is_set():
                self.step()
        if self.drain_report is not None:
            log.info("agent: stopped after a drain: programs detached, pins removed (%s)", self.last_error)
        else:
            log.info("agent: stopped; programs stay attached and maps pinned (spliced traffic continues)")
