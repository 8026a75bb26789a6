"""Events for SocketSplices whose spliced connections a NetworkPolicy change handed back to TCP.

An agent hands a pod's live spliced connections back to TCP when a NetworkPolicy that could affect
the pod changes (docs/networkpolicy.md), and records in its SpliceNode, per SocketSplice, the time
and reason of the last handback (``policies[].lastHandback``) and the directions handed back so far
(``policyHandbacks``). The operator posts one Normal Event ``HandedBackToTCP`` on the SocketSplice
per new ``lastHandback``. As for demotions (``demoting``), a node seen for the first time after an
operator restart announces only handbacks since the operator started.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from socksplice.api.nodestatus import PolicyStatus
from socksplice.operator.demoting import Notice

REASON = "HandedBackToTCP"


def last_handbacks(status: Mapping[str, Any] | None) -> dict[str, PolicyStatus]:
    """The SocketSplices of a SpliceNode ``status`` that carry a ``lastHandback``, by name."""
    out: dict[str, PolicyStatus] = {}
    for raw in (status or {}).get("policies") or []:
        if isinstance(raw, Mapping):
            p = PolicyStatus.from_dict(raw)
            if p.handback_time is not None:
                out[p.name] = p
    return out


def event_message(node: str, p: PolicyStatus) -> str:
    total = f" ({p.policy_handbacks} directions handed back so far)" if p.policy_handbacks is not None else ""
    return f"on {node}: spliced connections handed back to TCP{total}: {p.handback_reason}"


@dataclass
class Handbacks:
    """The last ``lastHandback`` seen per node and SocketSplice."""

    started: datetime | None = None
    seen: dict[str, dict[str, datetime]] = field(default_factory=dict)

    def update(self, node: str, status: Mapping[str, Any] | None) -> list[Notice]:
        if status is None:
            self.seen.pop(node, None)
            return []
        now = last_handbacks(status)
        before = self.seen.get(node)
        self.seen[node] = {k: p.handback_time for k, p in now.items() if p.handback_time is not None}
        out = []
        for key, p in sorted(now.items()):
            assert p.handback_time is not None
            if before is None:
                if self.started is None or p.handback_time < self.started:
                    continue
            elif before.get(key) == p.handback_time:
                continue
            out.append(Notice(key, event_message(node, p)))
        return out
