"""Status documents shared by the agent (writes SpliceNode) and the operator (rolls them up).

Pure functions over plain dicts, the shapes the API server stores (``crds/splicenode.yaml``,
``crds/socketsplice.yaml``):

- a SpliceNode ``status`` is ``api.nodestatus.NodeStatus`` (written by the agents; the agent
  never writes a SocketSplice), its ``status.drain`` is ``api.drain.DrainStatus``.
- ``rollup`` computes a SocketSplice ``status`` from the operator's own plan (which pods the
  selector matches, on which node) and the SpliceNodes of those nodes (what each agent attached).
- ``set_condition`` keeps ``lastTransitionTime`` when a condition's status does not change.

For Auto and DryRun the roll-up also answers "is my app safe to splice, and why not": endpoint
counts by verdict summed over the nodes (``endpoints``), the most recent demoted endpoints with
their reasons (``demoted``, at most ``MAX_DEMOTED``), and the ``Observing`` condition, False when
some node cannot observe receive patterns (Auto acts as DryRun there).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from socksplice.api.planning import plan
from socksplice.api.pods import PodRef
from socksplice.api.socketsplice import GROUP, VERSION, Mode, SocketSplice

SPLICENODE_KIND = "SpliceNode"
SPLICENODE_PLURAL = "splicenodes"
SPLICENODE_API_VERSION = f"{GROUP}/{VERSION}"

READY = "Ready"
DEGRADED = "Degraded"
OBSERVING = "Observing"
"""Auto and DryRun only: True when every node with selected pods observes receive patterns."""
OBSERVATION_UNAVAILABLE = "ObservationUnavailable"
MAX_DEMOTED = 20
"""Demoted endpoints a SocketSplice status lists (newest first); ``endpoints.demoted`` counts all."""
MAX_MESSAGE = 1024
"""Characters of a condition message kept (the whole list of problems can be long)."""


def timestamp(when: datetime) -> str:
    """RFC 3339, seconds, UTC (``metav1.Time``)."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------
# SocketSplice roll-up (operator side)


def set_condition(
    previous: Iterable[Mapping[str, Any]],
    kind: str,
    status: str,
    reason: str,
    message: str,
    generation: int,
    now: datetime,
) -> dict[str, Any]:
    """A condition; ``lastTransitionTime`` carries over from ``previous`` when ``status`` is the same."""
    since = timestamp(now)
    for old in previous:
        if old.get("type") == kind and old.get("status") == status and old.get("lastTransitionTime"):
            since = str(old["lastTransitionTime"])
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message[:MAX_MESSAGE],
        "lastTransitionTime": since,
        "observedGeneration": generation,
    }


@dataclass(frozen=True)
class NodeView:
    """One node as the roll-up sees it: pods the operator's plan puts there, and the agent's entry."""

    name: str
    matched: int
    attached: int
    pairs: int | None
    agent_seen: bool
    agent_generation: int
    problem: str
    endpoints: Mapping[str, int] | None = None
    """Endpoint counts by verdict (``audit``, ``spliced``, ``demoted``), None when the agent gives none."""
    observation: str = ""
    """Why this node's data path cannot observe receive patterns, empty when it can."""
    demoted: tuple[dict[str, Any], ...] = ()
    """The node's listed demoted endpoints of this SocketSplice, as ``status.demoted`` entries."""
    handbacks: int | None = None
    """Directions of spliced connections handed back to TCP by NetworkPolicy changes."""
    last_handback: Mapping[str, Any] | None = None
    """The node's ``lastHandback`` (time, reason) for this SocketSplice."""


_COUNTS = (("audit", "endpointsAudit"), ("spliced", "endpointsSpliced"), ("demoted", "endpointsDemoted"))


def _policy_entry(node: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    for p in node.get("policies") or []:
        if isinstance(p, Mapping) and p.get("name") == key:
            return p
    return None


def _demoted(node_name: str, node: Mapping[str, Any], key: str) -> tuple[dict[str, Any], ...]:
    # imported here: api.nodestatus reads this module's timestamp helpers at import
    from socksplice.api.nodestatus import DEMOTED, EndpointStatus

    out = []
    for raw in node.get("endpoints") or []:
        if not isinstance(raw, Mapping):
            continue
        e = EndpointStatus.from_dict(raw)
        if e.policy != key or e.verdict != DEMOTED:
            continue
        entry: dict[str, Any] = {
            "node": node_name,
            "server": e.server,
            "client": e.client,
            "port": e.port,
            "reason": e.reason[:MAX_MESSAGE],
        }
        if e.since is not None:
            entry["since"] = timestamp(e.since)
        out.append(entry)
    return tuple(out)


def _node_view(
    name: str, matched: int, node: Mapping[str, Any] | None, key: str, now: datetime, stale_after: float
) -> NodeView:
    if node is None:
        return NodeView(name, matched, 0, None, False, 0, "no SpliceNode: is the agent running on this node?")
    beat = parse_timestamp(node.get("heartbeatTime"))
    if beat is None or (now - beat).total_seconds() > stale_after:
        when = node.get("heartbeatTime") or "never"
        return NodeView(name, matched, 0, None, False, 0, f"agent silent since {when}")
    entry = _policy_entry(node, key)
    attached = int(entry.get("attachedPods", 0)) if entry else 0
    pairs = int(entry["pairsSpliced"]) if entry and "pairsSpliced" in entry else None
    generation = int(entry.get("generation", 0)) if entry else 0
    problem = str(node.get("lastError") or "")
    fatal = [c.get("name", "?") for c in node.get("doctor") or [] if c.get("severity") == "fatal"]
    if fatal:
        problem = "kernel cannot splice: " + ", ".join(map(str, fatal))
    counts = None
    if entry and any(field in entry for _, field in _COUNTS):
        counts = {name: int(entry.get(field) or 0) for name, field in _COUNTS}
    return NodeView(
        name,
        matched,
        min(attached, matched),
        pairs,
        True,
        generation,
        problem,
        counts,
        str(node.get("observation") or ""),
        _demoted(name, node, key),
        int(entry["policyHandbacks"]) if entry and "policyHandbacks" in entry else None,
        dict(entry["lastHandback"]) if entry and isinstance(entry.get("lastHandback"), Mapping) else None,
    )


def _newest_first(entry: Mapping[str, Any]) -> tuple[float, str, str, int, str]:
    since = parse_timestamp(entry.get("since"))
    return (
        -since.timestamp() if since else 0.0,
        str(entry["node"]),
        str(entry["server"]),
        int(entry["port"]),
        str(entry["client"]),
    )


def _observing(splice: SocketSplice, views: list[NodeView]) -> tuple[str, str, str]:
    blind = [v for v in views if v.agent_seen and v.observation]
    if not blind:
        return "True", "Observing", "every node with selected pods observes how their endpoints receive"
    acts = (
        "Auto acts as DryRun there: nothing is spliced, endpoints stay Audit"
        if splice.spec.mode is Mode.AUTO
        else "verdicts stay Audit there"
    )
    return (
        "False",
        OBSERVATION_UNAVAILABLE,
        "; ".join(f"{v.name}: {v.observation}" for v in blind) + f" ({acts})",
    )


def rollup(
    splice: SocketSplice,
    pods: Iterable[PodRef],
    nodes: Mapping[str, Mapping[str, Any]],
    previous: Iterable[Mapping[str, Any]],
    now: datetime,
    stale_after: float = 120.0,
) -> dict[str, Any]:
    """The SocketSplice ``status`` from the pods of its namespace and the SpliceNode statuses by node.

    Matched pods are the operator's own plan (the same ``plan`` the agents run); accelerated pods
    are what each node's agent reports attached for this SocketSplice, capped at the matched count.
    Ready is True when every matched pod is attached (or none is matched); Degraded is True when
    an agent on a node with matched pods is missing, silent, failing, or cannot splice. Auto and
    DryRun add Observing (False, reason ``ObservationUnavailable``, when a node's agent reports that
    its data path cannot observe receive patterns). ``endpoints`` sums the nodes' endpoint counts by
    verdict; ``demoted`` lists the newest ``MAX_DEMOTED`` demoted endpoints the nodes list.
    """
    previous = list(previous)
    pod_list = [p for p in pods if p.namespace == splice.namespace]
    plans = plan(pod_list, [splice])
    per_node: dict[str, int] = {}
    for pod in pod_list:
        if pod.key in plans:
            per_node[pod.node_name or "(unscheduled)"] = per_node.get(pod.node_name or "(unscheduled)", 0) + 1
    views = [
        _node_view(name, n, nodes.get(name), splice.key, now, stale_after)
        for name, n in sorted(per_node.items())
    ]
    matched = sum(v.matched for v in views)
    accelerated = sum(v.attached for v in views)
    entries = []
    for v in views:
        entry: dict[str, Any] = {
            "name": v.name,
            "matchedPods": v.matched,
            "attachedPods": v.attached,
            "mode": str(splice.spec.mode),
        }
        if v.pairs is not None:
            entry["pairsSpliced"] = v.pairs
        if v.endpoints is not None:
            entry.update({field: v.endpoints[name] for name, field in _COUNTS})
        if v.handbacks is not None:
            entry["policyHandbacks"] = v.handbacks
        if v.last_handback is not None:
            entry["lastHandback"] = dict(v.last_handback)
        if v.observation:
            entry["observation"] = v.observation[:MAX_MESSAGE]
        if v.problem:
            entry["message"] = v.problem[:MAX_MESSAGE]
        entries.append(entry)
    endpoints = {name: sum((v.endpoints or {}).get(name, 0) for v in views) for name, _ in _COUNTS}
    demoted = sorted((d for v in views for d in v.demoted), key=_newest_first)[:MAX_DEMOTED]
    scheduled = [v for v in views if v.name != "(unscheduled)"]
    missing = [v for v in scheduled if v.attached < v.matched]
    problems = [v for v in scheduled if v.problem]
    if matched == 0:
        ready = ("True", "NoPodsSelected", "the podSelector matches no running pod in this namespace")
    elif not missing and len(scheduled) == len(views):
        ready = ("True", "Accelerated", f"{accelerated}/{matched} pods attached on {len(views)} node(s)")
    else:
        reason = "AgentMissing" if any(not v.agent_seen for v in missing) else "Attaching"
        detail = "; ".join(f"{v.name}: {v.attached}/{v.matched} attached" for v in missing) or (
            "some selected pods are not scheduled yet"
        )
        ready = ("False", reason, f"{accelerated}/{matched} pods attached; {detail}")
    if problems:
        reason = "AgentMissing" if any(not v.agent_seen for v in problems) else "AgentError"
        degraded = ("True", reason, "; ".join(f"{v.name}: {v.problem}" for v in problems))
    else:
        degraded = ("False", "AsExpected", "no agent reports a problem")
    gen = splice.generation
    conditions = [
        set_condition(previous, READY, *ready, gen, now),
        set_condition(previous, DEGRADED, *degraded, gen, now),
    ]
    if splice.spec.mode is not Mode.SPLICE:
        conditions.append(set_condition(previous, OBSERVING, *_observing(splice, views), gen, now))
    return {
        "observedGeneration": gen,
        "matchedPods": matched,
        "acceleratedPods": accelerated,
        "nodeCount": len(entries),
        "nodes": entries,
        "endpoints": endpoints,
        "demoted": demoted,
        "conditions": conditions,
    }
