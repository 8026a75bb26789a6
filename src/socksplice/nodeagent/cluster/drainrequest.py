"""Drain on request: ``socksplice drain`` annotates this node's SpliceNode, the agent drains.

The protocol (annotations, phases, ``status.drain``) is ``api.drain``. ``DrainRequests`` is the
cluster side of it: a thread polls this node's SpliceNode (``get``; the agent may not list
SpliceNodes) until a request it has not answered appears (``drain_wanted``), and keeps it.
The agent's own loop takes the request (``take``), runs the node drain
(``nodeagent.draining.Drain``: detach everywhere, wait bounded for the SOCKHASH to empty,
unpin) a step per loop turn, so ``/healthz`` stays fresh and nothing else touches the
reconciler, and reports ``status.drain`` through ``report`` (``Draining``, then ``Drained``,
``TimedOut`` or ``Failed``). A request is answered once ``status.drain`` reports it finished, so
a restarted agent neither drains twice nor forgets a drain it was killed in the middle of.
The source asks ``gate`` before every snapshot: no snapshot before the SpliceNode was read once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from socksplice.api.drain import DrainRequest, DrainStatus, drain_wanted
from socksplice.api.status import timestamp
from socksplice.errors import TemporaryError

log = logging.getLogger(__name__)

POLL_SECONDS = 5.0

GetNode = Callable[[], Mapping[str, Any] | None]
PatchStatus = Callable[[dict[str, Any]], None]


class DrainRequests:
    """Polls this node's SpliceNode for drain requests; hands one to the agent's loop."""

    def __init__(self, node: str, get_node: GetNode, patch_status: PatchStatus) -> None:
        self.node = node
        self.get_node = get_node
        self.patch_status = patch_status
        self.checked = threading.Event()
        self.stop = threading.Event()
        self.last_drain: datetime | None = None
        self._lock = threading.Lock()
        self._request: DrainRequest | None = None
        self._taken = False

    def start(self) -> None:
        threading.Thread(target=self._poll, name="drain-requests", daemon=True).start()

    def _poll(self) -> None:
        while not self.stop.is_set() and self.request is None:
            self.check()
            self.stop.wait(POLL_SECONDS)

    @property
    def request(self) -> DrainRequest | None:
        with self._lock:
            return self._request

    def check(self) -> None:
        """Read the SpliceNode once; keep the request it carries for the agent. Never raises."""
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
            if wanted is None or self._request is not None:
                return
            self._request = wanted
        log.warning(
            "drain: requested at %s: no more attaching; draining this node", timestamp(wanted.requested_at)
        )

    def take(self) -> DrainRequest | None:
        """The request to drain for, once (the agent's loop calls this every turn)."""
        with self._lock:
            if self._request is None or self._taken:
                return None
            self._taken = True
            return self._request

    def gate(self) -> None:
        """Before every snapshot: refuse until the SpliceNode was read once, and from a request on."""
        if not self.checked.is_set():
            raise TemporaryError(f"cluster: waiting for the first read of SpliceNode {self.node}")
        if self.request is not None:
            raise TemporaryError("drain requested: not attaching")

    def report(self, status: DrainStatus) -> None:
        """Write ``status.drain``; a write that fails is logged (the drain itself goes on)."""
        try:
            self.patch_status({"status": {"drain": status.to_dict()}})
        except Exception as exc:  # reported in the log; the drain itself is done
            log.error("drain: status.drain of SpliceNode %s not written: %s", self.node, exc)
        if status.phase.finished:
            self.last_drain = status.requested_at


def kube_fns(node: str) -> tuple[GetNode, PatchStatus]:
    """Get this node's SpliceNode (None when absent) and merge-patch its status (``kubeapi.Kube``)."""
    from socksplice.kubeapi import Kube

    kube = Kube()

    def patch_status(body: dict[str, Any]) -> None:
        if not kube.patch_splicenode_status(node, body):
            raise TemporaryError(f"SpliceNode {node}: status.drain not written: the SpliceNode is absent")

    return lambda: kube.get_splicenode(node), patch_status
