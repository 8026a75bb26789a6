"""Events for endpoints that a SpliceNode newly reports demoted: the pure part.

An agent demotes an endpoint (a client pod's connections to a server pod's port) when the data
path saw a receive pattern that tcp_bpf serves differently from TCP; the verdict is sticky. The
operator tells the owner of the SocketSplice once per demotion, with a Warning Event
``EndpointDemoted`` on the SocketSplice whose message names the endpoint, the node and the reason.

``new_demotions`` compares two statuses of one SpliceNode. ``Demotions`` remembers the last
status seen per node (the operator's memory, not the API's): after an operator restart, the first
status of a node counts as new only the demotions whose ``since`` is after the operator started,
so a restart does not repeat the Events of old demotions. An endpoint that leaves the bounded list
(``api.nodestatus.MAX_ENDPOINTS``) and comes back is not new either while its ``since`` holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from socksplice.api.nodestatus import DEMOTED, EndpointStatus

REASON = "EndpointDemoted"
MAX_EVENTS_PER_UPDATE = 20
"""Events posted for one SpliceNode change at most; the rest are summed up in one more."""

Key = tuple[str, str, str, int]


def demoted(status: Mapping[str, Any] | None) -> dict[Key, EndpointStatus]:
    """The demoted endpoints a SpliceNode ``status`` lists, by (policy, server, client, port)."""
    out: dict[Key, EndpointStatus] = {}
    for raw in (status or {}).get("endpoints") or []:
        if isinstance(raw, Mapping) and raw.get("verdict") == DEMOTED:
            e = EndpointStatus.from_dict(raw)
            out[e.key] = e
    return out


def new_demotions(
    before: Mapping[str, Any] | None, after: Mapping[str, Any], not_before: datetime | None = None
) -> list[EndpointStatus]:
    """Endpoints demoted in ``after`` that ``before`` did not list as demoted, in key order.

    ``before`` None means the node was not seen yet: then only demotions since ``not_before``
    count (none without it), so old demotions are not announced again.
    """
    now = demoted(after)
    if before is None:
        if not_before is None:
            return []
        return [e for k, e in sorted(now.items()) if e.since is not None and e.since >= not_before]
    old = demoted(before)
    return [e for k, e in sorted(now.items()) if k not in old or old[k].since != e.since]


def event_message(node: str, e: EndpointStatus) -> str:
    """``shop/web -> shop/redis:6379 on node-a: demoted to TCP: <reason>``."""
    return f"{e.describe()} on {node}: demoted to TCP: {e.reason}"


@dataclass(frozen=True)
class Notice:
    """One Event to post: on the SocketSplice ``policy`` (``namespace/name``)."""

    policy: str
    message: str


def notices(node: str, fresh: list[EndpointStatus], limit: int = MAX_EVENTS_PER_UPDATE) -> list[Notice]:
    """Events for ``fresh`` demotions: one each up to ``limit``, then one per SocketSplice for the rest."""
    out = [Notice(e.policy, event_message(node, e)) for e in fresh[:limit]]
    rest: dict[str, int] = {}
    for e in fresh[limit:]:
        rest[e.policy] = rest.get(e.policy, 0) + 1
    out += [
        Notice(policy, f"{n} more endpoints demoted to TCP on {node}: see kubectl describe splicenode {node}")
        for policy, n in sorted(rest.items())
    ]
    return out


@dataclass
class Demotions:
    """The last SpliceNode status seen per node, to tell newly demoted endpoints apart."""

    started: datetime | None = None
    """When the operator started: a node seen for the first time announces demotions since then."""
    seen: dict[str, dict[str, Any]] = field(default_factory=dict)

    def update(self, node: str, status: Mapping[str, Any] | None) -> list[Notice]:
        """Record ``status`` (None: the SpliceNode is gone) and return the Events it calls for."""
        if status is None:
            self.seen.pop(node, None)
            return []
        fresh = new_demotions(self.seen.get(node), status, self.started)
        self.seen[node] = {
            "endpoints": [
                e
                for e in status.get("endpoints") or []
                if isinstance(e, Mapping) and e.get("verdict") == DEMOTED
            ]
        }
        return notices(node, fresh)
