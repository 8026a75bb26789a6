"""Drain on request: ``socksplice drain`` annotates this node's SpliceNode, the agent drains.

``socksplice drain --all-nodes`` (the chart's pre-delete hook) sets
``socksplice.io/drain-requested: <RFC 3339>`` (and ``socksplice.io/drain-timeout-seconds``) on
every SpliceNode. ``drain_wanted`` decides, from this node's SpliceNode and the last request the
agent answered, whether to drain now; a request is answered once ``status.drain`` reports a
finished phase for it, so a restarted agent neither drains twice nor forgets a drain it was
killed in the middle of.

``DrainRequests`` is the wiring: a thread polls the SpliceNode (``get``; the agent may not list
SpliceNodes), the source asks ``gate`` before every snapshot. From the request on the agent
never reconciles again (``gate`` refuses), the existing node drain
(``nodeagent.draining.drain``: detach everywhere, wait bounded for the SOCKHASH to empty, unpin)
runs in a thread on the agent's own data path and reconciler, and ``status.drain`` is published
(``Draining``, then ``Drained``, ``TimedOut`` or ``Failed``). The agent's loop, and so
``/healthz``, keeps running: the DaemonSet is not restarted mid-drain.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from socksplice.api.status import parse_timestamp, timestamp
from socksplice.errors import TemporaryError

log = logging.getLogger(__name__)

ANNOTATION = "socksplice.io/drain-requested"
TIMEOUT_ANNOTATION = "socksplice.io/drain-timeout-seconds"
DRAINING = "Draining"
FINISHED = ("Drained", "TimedOut", "Failed")
DEFAULT_TIMEOUT = 120.0
MAX_TIMEOUT = 3600.0
POLL_SECONDS = 5.0
REFUSE_PAUSE = 5.0
"""Seconds ``gate`` waits before refusing from a request on: the agent logs every refusal; its
heartbeat window (``Agent.healthy``) is at least 10 s, so /healthz stays fresh."""
MAX_MESSAGE = 1024


def _annotations(splicenode: Mapping[str, Any]) -> Mapping[str, Any]:
    return (splicenode.get("metadata") or {}).get("annotations") or {}


def requested_at(splicenode: Mapping[str, Any]) -> datetime | None:
    """The time in ``socksplice.io/drain-requested``; None when absent or not RFC 3339."""
    return parse_timestamp(_annotations(splicenode).get(ANNOTATION))


def requested_timeout(splicenode: Mapping[str, Any], default: float = DEFAULT_TIMEOUT) -> float:
    """Seconds to wait for spliced sockets, from ``socksplice.io/drain-timeout-seconds`` (bounded)."""
    try:
        value = float(_annotations(splicenode).get(TIMEOUT_ANNOTATION, default))
    except (TypeError, ValueError):
        return default
    return min(max(value, 0.0), MAX_TIMEOUT) if value == value else default


def answered_at(splicenode: Mapping[str, Any]) -> datetime | None:
    """The request a finished ``status.drain`` answers (None while none finished)."""
    drain = (splicenode.get("status") or {}).get("drain") or {}
    if drain.get("phase") not in FINISHED:
        return None
    return parse_timestamp(drain.get("requestedAt"))


def drain_wanted(splicenode: Mapping[str, Any], last_drain: datetime | None) -> datetime | None:
    """The request to drain for now, or None: a request newer than both ``last_drain`` (what this
    agent process drained for) and the request ``status.drain`` reports finished."""
    requested = requested_at(splicenode)
    if requested is None:
        return None
    done = [t for t in (last_drain, answered_at(splicenode)) if t is not None]
    if done and requested <= max(done):
        return None
    return requested


def drain_status(
    requested: datetime,
    phase: str,
    finished: datetime | None = None,
    report: Mapping[str, Any] | None = None,
    error: str = "",
) -> dict[str, Any]:
    """``status.drain`` for a request: ``report`` is ``DrainReport.to_dict()`` when it finished."""
    status: dict[str, Any] = {"phase": phase, "requestedAt": timestamp(requested)}
    if finished is not None:
        status["finishedAt"] = timestamp(finished)
    if report is not None:
        status["socketsLeft"] = int(report.get("spliced_left", 0))
        parts = [
            f"detached {len(report.get('detached') or [])}",
            f"{int(report.get('spliced_at_start', 0))} spliced at start",
            f"{status['socketsLeft']} left after {float(report.get('waited_seconds', 0.0)):.1f}s",
            f"unpinned {len(report.get('unpinned') or [])}",
        ]
        errors = [str(e) for e in report.get("errors") or []]
        error = "; ".join([*errors, error] if error else errors)
        status["message"] = ", ".join(parts) + (f"; errors: {error}" if error else "")
    elif error:
        status["message"] = error
    if "message" in status:
        status["message"] = status["message"][:MAX_MESSAGE]
    return status


def finished_phase(report: Mapping[str, Any]) -> str:
    """``Failed`` on errors, ``TimedOut`` when spliced sockets were left, else ``Drained``."""
    if report.get("errors"):
        return "Failed"
    if int(report.get("spliced_left", 0)):
        return "TimedOut"
    return "Drained"


class Drainable(Protocol):
    """What the drain needs of the agent (``nodeagent.agent.Agent``)."""

    datapath: Any
    reconciler: Any


GetNode = Callable[[], Mapping[str, Any] | None]
PatchStatus = Callable[[dict[str, Any]], None]
RunDrain = Callable[[float], Mapping[str, Any]]


class DrainRequests:
    """Polls this node's SpliceNode for drain requests; drains once one arrives."""

    def __init__(self, node: str, get_node: GetNode, patch_status: PatchStatus) -> None:
        self.node = node
        self.get_node = get_node
        self.patch_status = patch_status
        self.run_drain: RunDrain | None = None
        self.checked = threading.Event()
        self.stop = threading.Event()
        self.last_drain: datetime | None = None
        self.request: datetime | None = None
        self.done = threading.Event()
        self._lock = threading.Lock()

    def bind(self, agent: Drainable) -> None:
        """Drain with the running agent's own data path and reconciler."""
        from socksplice.nodeagent.draining import DrainSettings, drain

        def run(timeout: float) -> Mapping[str, Any]:
            return drain(agent.datapath, agent.reconciler, (), DrainSettings(timeout=timeout)).to_dict()

        self.run_drain = run

    def start(self) -> None:
        threading.Thread(target=self._poll, name="drain-requests", daemon=True).start()

    def _poll(self) -> None:
        while not self.stop.is_set() and self.request is None:
            self.check()
            self.stop.wait(POLL_SECONDS)

    def check(self) -> None:
        """Read the SpliceNode once; start the drain when it asks for one. Never raises."""
        try:
            obj = self.get_node()
        except Exception as exc:  # the client raises many kinds; polling must go on
            log.error("drain: SpliceNode %s not read: %s", self.node, exc)
            obj = None
        finally:
            self.checked.set()
        if obj is None:
            return
        wanted = drain_wanted(obj, self.last_drain)
        with self._lock:
            if wanted is None or self.request is not None:
                return
            self.request = wanted
        log.warning("drain: requested at %s: no more attaching; draining this node", timestamp(wanted))
        threading.Thread(
            target=self._drain, args=(wanted, requested_timeout(obj)), name="drain", daemon=True
        ).start()

    def gate(self) -> None:
        """Before every snapshot: refuse until the SpliceNode was read once, and from a request on."""
        if not self.checked.is_set():
            raise TemporaryError(f"cluster: waiting for the first read of SpliceNode {self.node}")
        if self.request is None:
            return
        self.stop.wait(REFUSE_PAUSE)
        if self.done.is_set():
            raise TemporaryError("drained on request: not attaching (restart the agent to resume)")
        raise TemporaryError("draining on request: not attaching")

    def _publish(self, status: dict[str, Any]) -> None:
        try:
            self.patch_status({"status": {"drain": status}})
        except Exception as exc:  # reported in the log; the drain itself is done
            log.error("drain: status.drain of SpliceNode %s not written: %s", self.node, exc)

    def _drain(self, requested: datetime, timeout: float) -> None:
        self._publish(drain_status(requested, DRAINING))
        try:
            if self.run_drain is None:
                raise TemporaryError("the agent is not bound to the drain")
            report = dict(self.run_drain(timeout))
            status = drain_status(requested, finished_phase(report), datetime.now(UTC), report)
        except Exception as exc:  # a failed drain is reported, never fatal to the agent
            log.error("drain: failed: %s", exc)
            status = drain_status(requested, "Failed", datetime.now(UTC), error=f"drain: {exc}")
        log.warning("drain: %s: %s", status["phase"], status.get("message", ""))
        self._publish(status)
        self.last_drain = requested
        self.done.set()


def kube_fns(node: str) -> tuple[GetNode, PatchStatus]:
    """Get this node's SpliceNode (None when absent) and merge-patch its status (``kubeapi.Kube``)."""
    from socksplice.kubeapi import Kube

    kube = Kube()

    def patch_status(body: dict[str, Any]) -> None:
        if not kube.patch_splicenode_status(node, body):
            raise TemporaryError(f"SpliceNode {node}: status.drain not written: the SpliceNode is absent")

    return lambda: kube.get_splicenode(node), patch_status
