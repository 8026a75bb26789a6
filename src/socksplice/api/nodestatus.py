"""The node status: what one node's agent reports, in one shape for a SpliceNode's ``status``
(``crds/splicenode.yaml``) and local mode's ``status.json``.

The agent builds a ``NodeStatus`` (``nodeagent.agent.Agent.status``); sinks write
``to_dict()``; readers (the operator's roll-up, ``socksplice local status``, tests) may parse it
back with ``from_dict``. The ``Ready`` condition is derived from the other fields.
``status.drain`` is written by the drain (``api.drain``) and is not part of a publication.

``endpoints`` carries the verdict of each endpoint (server pod, server port, client pod) of Auto
and DryRun (``nodeagent.verdicts`` decides; ``docs/auto.md``). The list is bounded
(``MAX_ENDPOINTS``): demoted endpoints first, then spliced, then audited, each in key order; what
does not fit is counted in ``endpointsOmitted``. The per-policy counts (``PolicyStatus``) cover
every endpoint, listed or not.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from socksplice.api.socketsplice import DEFAULT_MODE
from socksplice.api.status import MAX_MESSAGE, READY, parse_timestamp, timestamp

AUDIT = "Audit"
SPLICED = "Spliced"
DEMOTED = "Demoted"
VERDICTS = (AUDIT, SPLICED, DEMOTED)
"""Verdicts of an endpoint, as ``nodeagent.verdicts.Verdict`` spells them."""

MAX_ENDPOINTS = 200
"""Endpoints a SpliceNode status lists at most (the object stays well under etcd's 1.5 MiB)."""
MAX_REASON = 256
"""Characters of an endpoint's reason kept."""


@dataclass(frozen=True)
class PolicyStatus:
    """One SocketSplice on this node: the pods it selects and what the data path counted for it."""

    name: str  # namespace/name
    mode: str
    generation: int = 0
    matched_pods: int = 0
    attached_pods: int = 0
    pairs_spliced: int | None = None
    bytes_redirected: int | None = None
    endpoints_audit: int = 0
    endpoints_spliced: int = 0
    endpoints_demoted: int = 0
    """Endpoints of this SocketSplice on this node by verdict (all of them, listed or not)."""
    policy_handbacks: int | None = None
    """Directions of spliced connections handed back to TCP by NetworkPolicy changes (counter)."""
    handback_time: datetime | None = None
    """When a NetworkPolicy change last handed this SocketSplice's connections back to TCP."""
    handback_reason: str = ""
    """Why: the NetworkPolicies whose change could affect its pods."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "mode": self.mode,
            "generation": self.generation,
            "matchedPods": self.matched_pods,
            "attachedPods": self.attached_pods,
            "endpointsAudit": self.endpoints_audit,
            "endpointsSpliced": self.endpoints_spliced,
            "endpointsDemoted": self.endpoints_demoted,
        }
        if self.pairs_spliced is not None:
            out["pairsSpliced"] = self.pairs_spliced
        if self.bytes_redirected is not None:
            out["bytesRedirected"] = self.bytes_redirected
        if self.policy_handbacks is not None:
            out["policyHandbacks"] = self.policy_handbacks
        if self.handback_time is not None:
            out["lastHandback"] = {
                "time": timestamp(self.handback_time),
                "reason": self.handback_reason[:MAX_MESSAGE],
            }
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> PolicyStatus:
        def count(key: str) -> int | None:
            return int(raw[key]) if key in raw else None

        return cls(
            str(raw.get("name", "")),
            str(raw.get("mode", DEFAULT_MODE.value)),
            int(raw.get("generation", 0)),
            int(raw.get("matchedPods", 0)),
            int(raw.get("attachedPods", 0)),
            count("pairsSpliced"),
            count("bytesRedirected"),
            int(raw.get("endpointsAudit", 0)),
            int(raw.get("endpointsSpliced", 0)),
            int(raw.get("endpointsDemoted", 0)),
            count("policyHandbacks"),
            parse_timestamp((raw.get("lastHandback") or {}).get("time")),
            str((raw.get("lastHandback") or {}).get("reason") or ""),
        )


def _kinds(raw: object) -> dict[str, int]:
    """A would/did-differ mapping: kinds with a count above 0 only."""
    if not isinstance(raw, Mapping):
        return {}
    return {str(k): int(v) for k, v in raw.items() if int(v) > 0}


@dataclass(frozen=True)
class EndpointStatus:
    """One endpoint on this node: a client pod's connections to a server pod's port, and its verdict.

    ``server`` and ``client`` are pod keys (``namespace/name``; the same for a loopback connection
    inside one pod), ``policy`` the SocketSplice (``namespace/name``) that decides it.
    ``connections`` counts every connection, watched or not; ``messages`` are receive calls that
    returned data, ``bytes`` bytes received, both ends, on watched connections, since the endpoint
    first appeared (``since``). ``would_differ`` and ``did_differ`` hold the receive patterns seen
    that tcp_bpf serves differently from TCP (kind to count, kinds above 0 only; docs/auto.md).
    """

    server: str
    client: str
    port: int
    policy: str = ""
    mode: str = DEFAULT_MODE.value
    verdict: str = AUDIT
    reason: str = ""
    since: datetime | None = None
    connections: int = 0
    spliced_connections: int = 0
    messages: int = 0
    bytes: int = 0
    would_differ: Mapping[str, int] = field(default_factory=dict)
    did_differ: Mapping[str, int] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str, int]:
        """(policy, server, client, port): what names the endpoint across statuses."""
        return self.policy, self.server, self.client, self.port

    def describe(self) -> str:
        """``shop/client -> shop/redis:6379``."""
        return f"{self.client} -> {self.server}:{self.port}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "server": self.server,
            "client": self.client,
            "port": self.port,
            "policy": self.policy,
            "mode": self.mode,
            "verdict": self.verdict,
            "reason": self.reason[:MAX_REASON],
            "connections": self.connections,
            "splicedConnections": self.spliced_connections,
            "messages": self.messages,
            "bytes": self.bytes,
            "wouldDiffer": _kinds(self.would_differ),
            "didDiffer": _kinds(self.did_differ),
        }
        if self.since is not None:
            out["since"] = timestamp(self.since)
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> EndpointStatus:
        return cls(
            server=str(raw.get("server", "")),
            client=str(raw.get("client", "")),
            port=int(raw.get("port", 0)),
            policy=str(raw.get("policy", "")),
            mode=str(raw.get("mode", DEFAULT_MODE.value)),
            verdict=str(raw.get("verdict", AUDIT)),
            reason=str(raw.get("reason") or ""),
            since=parse_timestamp(raw.get("since")),
            connections=int(raw.get("connections", 0)),
            spliced_connections=int(raw.get("splicedConnections", 0)),
            messages=int(raw.get("messages", 0)),
            bytes=int(raw.get("bytes", 0)),
            would_differ=_kinds(raw.get("wouldDiffer")),
            did_differ=_kinds(raw.get("didDiffer")),
        )


def _listing_order(e: EndpointStatus) -> tuple[int, str, str, int, str]:
    rank = {DEMOTED: 0, SPLICED: 1}.get(e.verdict, 2)
    return rank, e.policy, e.server, e.port, e.client


def bounded_endpoints(
    endpoints: Iterable[EndpointStatus], limit: int = MAX_ENDPOINTS
) -> tuple[list[EndpointStatus], int]:
    """The endpoints a status lists (demoted first, then spliced, then audited) and how many are left out."""
    ordered = sorted(endpoints, key=_listing_order)
    return ordered[:limit], max(0, len(ordered) - limit)


@dataclass(frozen=True)
class CheckResult:
    """A failed doctor check (``doctor.checks.Check``) as the node carries it."""

    name: str
    ok: bool = False
    severity: str = "warn"
    detail: str = ""
    fix: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "severity": self.severity,
            "detail": self.detail,
            "fix": self.fix,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> CheckResult:
        return cls(
            str(raw.get("name", "")),
            bool(raw.get("ok", False)),
            str(raw.get("severity", "warn")),
            str(raw.get("detail", "")),
            str(raw.get("fix", "")),
        )


@dataclass(frozen=True)
class Hazard:
    """A behavioural hazard present on this kernel (``doctor.checks.hazards``)."""

    name: str
    present: bool = True
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "present": self.present, "detail": self.detail}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Hazard:
        return cls(str(raw.get("name", "")), bool(raw.get("present")), str(raw.get("detail", "")))


@dataclass(frozen=True)
class NodeStatus:
    node_name: str
    agent_version: str = ""
    kernel: str = ""
    heartbeat_time: datetime | None = None
    pods: tuple[str, ...] = ()
    """Attached pods (namespace/name), sorted."""
    spliced_sockets: int = 0
    totals: Mapping[str, int] = field(default_factory=dict)
    policies: tuple[PolicyStatus, ...] = ()
    pin_dir: str = ""
    adopted: bool = False
    doctor: tuple[CheckResult, ...] = ()
    """Failed checks only."""
    hazards: tuple[Hazard, ...] = ()
    """Present hazards only."""
    manifest_errors: tuple[str, ...] = ()
    last_error: str = ""
    drain_phase: str = ""
    """``Draining`` or ``Drained`` from a drain request on (the node attaches nothing then)."""
    endpoints: tuple[EndpointStatus, ...] = ()
    """Endpoints of Auto and DryRun SocketSplices with their verdicts (listed at most ``MAX_ENDPOINTS``)."""
    observation: str = ""
    """Empty when the data path observes receive patterns; else why not (Auto then acts as DryRun)."""
    endpoints_omitted: int = 0
    """Endpoints left out of an earlier listing (read back from ``endpointsOmitted``)."""

    @property
    def attached_pods(self) -> int:
        return len(self.pods)

    def policy(self, name: str) -> PolicyStatus | None:
        return next((p for p in self.policies if p.name == name), None)

    def ready(self) -> tuple[str, str, str]:
        """The ``Ready`` condition: (status, reason, message)."""
        fatal = [c.name for c in self.doctor if c.severity == "fatal"]
        if fatal:
            return "False", "KernelUnsupported", "failed checks: " + ", ".join(fatal)
        if self.drain_phase:
            return "False", self.drain_phase, f"{self.last_error}; {self.attached_pods} pods attached"
        if self.last_error:
            return "False", "ReconcileFailed", self.last_error
        return "True", "Reconciled", f"{self.attached_pods} pods attached"

    def to_dict(self) -> dict[str, Any]:
        """The SpliceNode ``status`` (and ``status.json``)."""
        ready = self.ready()
        listed, omitted = bounded_endpoints(self.endpoints)
        out: dict[str, Any] = {
            "nodeName": self.node_name,
            "agentVersion": self.agent_version,
            "kernel": self.kernel,
            "attachedPods": self.attached_pods,
            "pods": sorted(self.pods),
            "splicedSockets": self.spliced_sockets,
            "totals": {str(k): int(v) for k, v in self.totals.items()},
            "policies": [p.to_dict() for p in sorted(self.policies, key=lambda p: p.name)],
            "datapath": {"pinDir": self.pin_dir, "adopted": self.adopted},
            "doctor": [c.to_dict() for c in self.doctor],
            "hazards": [h.to_dict() for h in self.hazards],
            "manifestErrors": list(self.manifest_errors),
            "lastError": self.last_error[:MAX_MESSAGE],
            "observation": self.observation[:MAX_MESSAGE],
            "endpoints": [e.to_dict() for e in listed],
            "endpointsOmitted": omitted + self.endpoints_omitted,
            "conditions": [
                {"type": READY, "status": ready[0], "reason": ready[1], "message": ready[2][:MAX_MESSAGE]}
            ],
        }
        if self.heartbeat_time is not None:
            out["heartbeatTime"] = timestamp(self.heartbeat_time)
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> NodeStatus:
        datapath = raw.get("datapath") or {}
        return cls(
            node_name=str(raw.get("nodeName", "")),
            agent_version=str(raw.get("agentVersion", "")),
            kernel=str(raw.get("kernel", "")),
            heartbeat_time=parse_timestamp(raw.get("heartbeatTime")),
            pods=tuple(sorted(str(p) for p in raw.get("pods") or [])),
            spliced_sockets=int(raw.get("splicedSockets", 0)),
            totals={str(k): int(v) for k, v in (raw.get("totals") or {}).items()},
            policies=tuple(PolicyStatus.from_dict(p) for p in raw.get("policies") or []),
            pin_dir=str(datapath.get("pinDir", "")),
            adopted=bool(datapath.get("adopted", False)),
            doctor=tuple(CheckResult.from_dict(c) for c in raw.get("doctor") or []),
            hazards=tuple(Hazard.from_dict(h) for h in raw.get("hazards") or []),
            manifest_errors=tuple(str(e) for e in raw.get("manifestErrors") or []),
            last_error=str(raw.get("lastError") or ""),
            endpoints=tuple(EndpointStatus.from_dict(e) for e in raw.get("endpoints") or []),
            observation=str(raw.get("observation") or ""),
            endpoints_omitted=int(raw.get("endpointsOmitted") or 0),
        )
