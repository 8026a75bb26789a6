"""SocketSplice status from the API's objects: the pure part of the SocketSplice handler.

``splice_status`` parses the object (a spec the API server let through but the parser rejects
still gets a clear condition), rolls up the pods and SpliceNodes (``api.status.rollup``) and
names the condition transitions worth an Event.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from socksplice.api.pods import PodRef, pod_ref_from_api
from socksplice.api.socketsplice import parse_socketsplice
from socksplice.api.status import DEGRADED, OBSERVING, READY, rollup, set_condition
from socksplice.errors import InvalidSpec


@dataclass(frozen=True)
class Outcome:
    status: dict[str, Any]
    result: str  # ok | invalid
    events: tuple[str, ...]  # "Type=Status: reason: message", one per changed condition


def _conditions(status: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    return list((status or {}).get("conditions") or [])


def transitions(old: Iterable[Mapping[str, Any]], new: Iterable[Mapping[str, Any]]) -> tuple[str, ...]:
    """A line per condition whose status or reason changed."""
    before = {c.get("type"): (c.get("status"), c.get("reason")) for c in old}
    return tuple(
        f"{c['type']}={c['status']}: {c['reason']}: {c['message']}"
        for c in new
        if before.get(c["type"]) != (c["status"], c["reason"])
    )


def is_bad(event: str) -> bool:
    """True for a transition worth a Warning Event: Ready or Observing turned False, Degraded turned True."""
    head = event.split(":", 1)[0]
    return head in (f"{READY}=False", f"{DEGRADED}=True", f"{OBSERVING}=False")


def pod_refs(objects: Iterable[Mapping[str, Any] | PodRef]) -> list[PodRef]:
    """Pods that parse (``PodRef`` as they are); a malformed Pod object is skipped (it cannot be planned)."""
    refs = []
    for obj in objects:
        if isinstance(obj, PodRef):
            refs.append(obj)
            continue
        try:
            refs.append(pod_ref_from_api(obj))
        except InvalidSpec:
            continue
    return refs


def splice_status(
    body: Mapping[str, Any],
    pods: Iterable[Mapping[str, Any] | PodRef],
    nodes: Mapping[str, Mapping[str, Any]],
    now: datetime,
    stale_after: float = 120.0,
) -> Outcome:
    previous = _conditions(body.get("status"))
    generation = int((body.get("metadata") or {}).get("generation") or 0)
    try:
        splice = parse_socketsplice(body)
    except InvalidSpec as exc:
        conditions = [
            set_condition(previous, READY, "False", "InvalidSpec", str(exc), generation, now),
            set_condition(previous, DEGRADED, "True", "InvalidSpec", str(exc), generation, now),
        ]
        invalid: dict[str, Any] = {"observedGeneration": generation, "conditions": conditions}
        return Outcome(invalid, "invalid", transitions(previous, conditions))
    status = rollup(splice, pod_refs(pods), nodes, previous, now, stale_after)
    new: list[dict[str, Any]] = status["conditions"]
    return Outcome(status, "ok", transitions(previous, new))


def status_nodes(status: Mapping[str, Any] | None) -> frozenset[str]:
    """The nodes a SocketSplice status names (``status.nodes[].name``): whose SpliceNode affects it."""
    return frozenset(str(n.get("name")) for n in (status or {}).get("nodes") or [] if isinstance(n, Mapping))


def changed(current: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """True when merging ``new`` into ``current`` would change it (a status patch is worth sending)."""
    return any((current or {}).get(k) != v for k, v in new.items())
