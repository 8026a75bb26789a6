"""The drain protocol between ``socksplice drain`` (operator side) and the node agents.

``socksplice drain`` annotates a SpliceNode with ``socksplice.io/drain-requested: <RFC 3339>``
and ``socksplice.io/drain-timeout-seconds`` (``DrainRequest.patch``). That node's agent stops
attaching, detaches everywhere, waits (bounded) for its SOCKHASH to empty, unpins, and reports
in ``status.drain`` (``DrainStatus``): ``Draining``, then ``Drained``, ``TimedOut`` or
``Failed`` (``DrainPhase``). A request is answered once ``status.drain`` reports a finished
phase for it. ``DrainReport`` is what one node's drain did (also ``socksplice agent-drain``'s
output).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from socksplice.api.status import parse_timestamp, timestamp

REQUESTED_ANNOTATION = "socksplice.io/drain-requested"
TIMEOUT_ANNOTATION = "socksplice.io/drain-timeout-seconds"
DEFAULT_TIMEOUT = 120.0
MAX_TIMEOUT = 3600.0
MAX_MESSAGE = 1024


class DrainPhase(StrEnum):
    """``status.drain.phase`` (``crds/splicenode.yaml``)."""

    DRAINING = "Draining"
    DRAINED = "Drained"
    TIMED_OUT = "TimedOut"
    FAILED = "Failed"

    @property
    def finished(self) -> bool:
        return self is not DrainPhase.DRAINING


def _annotations(splicenode: Mapping[str, Any]) -> Mapping[str, Any]:
    return (splicenode.get("metadata") or {}).get("annotations") or {}


def _timeout(raw: object, default: float) -> float:
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default
    return min(max(value, 0.0), MAX_TIMEOUT) if value == value else default


@dataclass(frozen=True)
class DrainRequest:
    """A request to drain one node: when it was made and how long to wait for spliced sockets."""

    requested_at: datetime
    timeout: float = DEFAULT_TIMEOUT

    @classmethod
    def of(cls, splicenode: Mapping[str, Any]) -> DrainRequest | None:
        """The request in a SpliceNode's annotations; None when absent or not RFC 3339. The
        timeout is bounded to [0, ``MAX_TIMEOUT``]; unreadable means ``DEFAULT_TIMEOUT``."""
        annotations = _annotations(splicenode)
        when = parse_timestamp(annotations.get(REQUESTED_ANNOTATION))
        if when is None:
            return None
        return cls(when, _timeout(annotations.get(TIMEOUT_ANNOTATION, DEFAULT_TIMEOUT), DEFAULT_TIMEOUT))

    def patch(self) -> dict[str, Any]:
        """The merge patch that asks a SpliceNode's agent to drain."""
        return {
            "metadata": {
                "annotations": {
                    REQUESTED_ANNOTATION: timestamp(self.requested_at),
                    TIMEOUT_ANNOTATION: str(int(self.timeout)),
                }
            }
        }


@dataclass(frozen=True)
class DrainReport:
    """What one node's drain did."""

    detached: tuple[str, ...] = ()
    """Pods (namespace/name) and cgroups the program was detached from."""
    spliced_at_start: int = 0
    spliced_left: int = 0
    """Sockets still in the SOCKHASH when the pins were removed (0 after a complete drain)."""
    waited_seconds: float = 0.0
    unpinned: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        return self.spliced_left == 0 and not self.errors

    @property
    def phase(self) -> DrainPhase:
        """``Failed`` on errors, ``TimedOut`` when spliced sockets were left, else ``Drained``."""
        if self.errors:
            return DrainPhase.FAILED
        return DrainPhase.TIMED_OUT if self.spliced_left else DrainPhase.DRAINED

    def summary(self) -> str:
        return (
            f"detached {len(self.detached)}, {self.spliced_at_start} spliced at start, "
            f"{self.spliced_left} left after {self.waited_seconds:.1f}s, unpinned {len(self.unpinned)}"
        )

    def to_dict(self) -> dict[str, Any]:
        """The report as ``socksplice agent-drain`` prints it."""
        return {**asdict(self), "complete": self.complete}


@dataclass(frozen=True)
class DrainStatus:
    """``status.drain`` of a SpliceNode: the last requested drain and what it left."""

    phase: DrainPhase
    requested_at: datetime
    finished_at: datetime | None = None
    sockets_left: int | None = None
    message: str = ""

    @classmethod
    def draining(cls, request: DrainRequest) -> DrainStatus:
        return cls(DrainPhase.DRAINING, request.requested_at)

    @classmethod
    def finished(
        cls, request: DrainRequest, when: datetime, report: DrainReport | None = None, error: str = ""
    ) -> DrainStatus:
        """The final status: from ``report``, or ``Failed`` with ``error`` when there is none."""
        if report is None:
            return cls(DrainPhase.FAILED, request.requested_at, when, None, error[:MAX_MESSAGE])
        errors = "; ".join([*report.errors, error] if error else report.errors)
        message = report.summary() + (f"; errors: {errors}" if errors else "")
        phase = DrainPhase.FAILED if error else report.phase
        return cls(phase, request.requested_at, when, report.spliced_left, message[:MAX_MESSAGE])

    def answers(self, request: DrainRequest) -> bool:
        """True when this status reports ``request`` (or a later one) finished."""
        return self.phase.finished and self.requested_at >= request.requested_at

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"phase": str(self.phase), "requestedAt": timestamp(self.requested_at)}
        if self.finished_at is not None:
            out["finishedAt"] = timestamp(self.finished_at)
        if self.sockets_left is not None:
            out["socketsLeft"] = self.sockets_left
        if self.message:
            out["message"] = self.message[:MAX_MESSAGE]
        return out

    @classmethod
    def from_dict(cls, raw: object) -> DrainStatus | None:
        """A ``status.drain`` as the API server stores it; None when absent or unreadable."""
        if not isinstance(raw, Mapping):
            return None
        try:
            phase = DrainPhase(str(raw.get("phase")))
        except ValueError:
            return None
        requested = parse_timestamp(raw.get("requestedAt"))
        if requested is None:
            return None
        left = raw.get("socketsLeft")
        return cls(
            phase,
            requested,
            parse_timestamp(raw.get("finishedAt")),
            left if isinstance(left, int) and not isinstance(left, bool) else None,
            str(raw.get("message") or ""),
        )

    @classmethod
    def of(cls, splicenode: Mapping[str, Any]) -> DrainStatus | None:
        return cls.from_dict((splicenode.get("status") or {}).get("drain"))


def drain_wanted(splicenode: Mapping[str, Any], last_drain: datetime | None) -> DrainRequest | None:
    """The request to drain for now, or None: a request newer than both ``last_drain`` (what this
    agent process drained for) and the request ``status.drain`` reports finished."""
    request = DrainRequest.of(splicenode)
    if request is None:
        return None
    status = DrainStatus.of(splicenode)
    if status is not None and status.answers(request):
        return None
    if last_drain is not None and request.requested_at <= last_drain:
        return None
    return request
