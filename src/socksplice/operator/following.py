"""SocketSplice status following the watched Pods and SpliceNodes.

kopf keeps three indexes current from its watches (``handlers``): pods by namespace (as
``PodRef``), SpliceNode status by node, SocketSplices by namespace. A change of a Pod can only
affect the SocketSplices of its namespace (they select pods of their own namespace only); a
change of a SpliceNode only those whose last status names that node. ``Statuses.refresh``
recomputes one SocketSplice from the indexes (``rolling.splice_status``, pure) and writes its
status subresource only when it changed: the API sees one status patch per real change, never a
list.

Runs on kopf's event loop, so the indexes never change under a computation. Changes within
``COALESCE_SECONDS`` are computed once (a rolling update of 100 pods is one recomputation per
affected SocketSplice, not 100). One computation and write at a time per SocketSplice, each from
the indexes as they are when it starts, so a later write never carries an older view.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from socksplice.api.pods import PodRef
from socksplice.errors import SockspliceError
from socksplice.operator.metrics import OperatorMetrics
from socksplice.operator.rolling import Outcome, changed, is_bad, splice_status, status_nodes

log = logging.getLogger(__name__)

COALESCE_SECONDS = 0.2

Body = Mapping[str, Any]
WriteStatus = Callable[[str, str, Mapping[str, Any]], Awaitable[None]]
PostEvent = Callable[[Body, str, bool], None]
"""Post a line about a SocketSplice as an Event (``True``: a Warning)."""


def splice_key(body: Body) -> str:
    meta = body.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"


def find_splice(splices: Mapping[str, Iterable[Body]], key: str) -> Body | None:
    """The SocketSplice ``namespace/name`` in the SocketSplice index (by namespace)."""
    namespace = key.split("/", 1)[0]
    for body in splices.get(namespace, ()):
        if splice_key(body) == key:
            return body
    return None


class Statuses:
    """What was last written per SocketSplice, and the serialised recomputation of each."""

    def __init__(self, write: WriteStatus, post: PostEvent, metrics: OperatorMetrics) -> None:
        self.write = write
        self.post = post
        self.metrics = metrics
        self.written: dict[str, dict[str, Any]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._pending: set[str] = set()
        self.coalesce = COALESCE_SECONDS

    def on_node(self, node: str) -> list[str]:
        """SocketSplices whose last status names ``node`` (a change of its SpliceNode affects them)."""
        return sorted(k for k, status in self.written.items() if node in status_nodes(status))

    def forget(self, key: str) -> None:
        self.written.pop(key, None)
        self._locks.pop(key, None)

    async def refresh(
        self,
        key: str,
        splices: Mapping[str, Iterable[Body]],
        pods: Mapping[str, Iterable[PodRef]],
        nodes: Mapping[str, Iterable[Mapping[str, Any]]],
    ) -> Outcome | None:
        """Recompute ``key`` from the indexes and write its status if it changed (None: coalesced
        into a computation already waiting, or the SocketSplice is gone). Never raises."""
        if key in self._pending:
            return None
        self._pending.add(key)
        try:
            await asyncio.sleep(self.coalesce)
        finally:
            self._pending.discard(key)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            body = find_splice(splices, key)
            if body is None:
                self.forget(key)
                return None
            return await self._recompute(key, body, pods, nodes)

    async def _recompute(
        self,
        key: str,
        body: Body,
        pods: Mapping[str, Iterable[PodRef]],
        nodes: Mapping[str, Iterable[Mapping[str, Any]]],
    ) -> Outcome | None:
        current = self.written.get(key) or dict(body.get("status") or {})
        namespace, name = key.split("/", 1)
        by_node = {node: next(iter(store), {}) for node, store in nodes.items()}
        outcome = splice_status(
            {**body, "status": current}, pods.get(namespace, ()), by_node, datetime.now(UTC)
        )
        if changed(current, outcome.status):
            try:
                await self.write(namespace, name, outcome.status)
            except SockspliceError as exc:
                self.metrics.count("SocketSplice", "error")
                log.error("SocketSplice %s: status not written: %s", key, exc)
                return None
            self.written[key] = {**current, **outcome.status}
        else:
            self.written.setdefault(key, current)
        self.metrics.count("SocketSplice", outcome.result)
        for line in outcome.events:
            self.post(body, line, is_bad(line))
        return outcome
