"""The node status: what one node's agent reports, in one shape for a SpliceNode's ``status``
(``crds/splicenode.yaml``) and local mode's ``status.json``.

The agent builds a ``NodeStatus`` (``nodeagent.agent.Agent.status``); sinks write
``to_dict()``; readers (the operator's roll-up, ``socksplice local status``, tests) may parse it
back with ``from_dict``. The ``Ready`` condition is derived from the other fields.
``status.drain`` is written by the drain (``api.drain``) and is not part of a publication.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from socksplice.api.status import MAX_MESSAGE, READY, parse_timestamp, timestamp


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

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "mode": self.mode,
            "generation": self.generation,
            "matchedPods": self.matched_pods,
            "attachedPods": self.attached_pods,
        }
        if self.pairs_spliced is not None:
            out["pairsSpliced"] = self.pairs_spliced
        if self.bytes_redirected is not None:
            out["bytesRedirected"] = self.bytes_redirected
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> PolicyStatus:
        def count(key: str) -> int | None:
            return int(raw[key]) if key in raw else None

        return cls(
            str(raw.get("name", "")),
            str(raw.get("mode", "DryRun")),
            int(raw.get("generation", 0)),
            int(raw.get("matchedPods", 0)),
            int(raw.get("attachedPods", 0)),
            count("pairsSpliced"),
            count("bytesRedirected"),
        )


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
        )
