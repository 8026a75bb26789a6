"""Auto mode's verdicts: whether one endpoint is audited, spliced or demoted, from its evidence.

An endpoint is one server pod, one server port and one client pod (``EndpointKey``). The data
path counts what each endpoint's connections do (``socksplice.bpf.layout.EVIDENCE``, cumulative
since the endpoint first appeared). ``decide`` turns one loop turn's counts into the next
``EndpointRecord``; it is pure: no kernel, no clock, no slot allocation (``endpoints.EndpointTable``
allocates the data path's demotion slots and persists the records).

The rules (docs/socketsplice.md):

- ``SpliceRelaxedReceive`` splices every connection, whatever the evidence.
- A demoted endpoint stays demoted for its life: no flapping between TCP and splicing.
- Without observation (the node cannot watch receives) Auto behaves as DryRun: Audit.
- Any receive pattern that tcp_bpf serves differently (``would_*``), or any result that did differ
  on a spliced socket (``did_*``), demotes.
- An audited endpoint is promoted when the evidence window is full (enough connections *and*
  enough seconds since it was first seen) and its connections carry enough messages to gain from
  splicing. Once spliced, the cost is not judged again (damping); only a demotion ends it.
- An audited endpoint whose full window shows connections too short to gain stays on TCP
  *sampled*: one new connection in ``SAMPLE_EVERY`` is watched, the others cost nothing but their
  count. Each full sampled window is judged again; when the sampled connections carry enough
  messages, every connection is watched again for a new window before any promotion. A Demoted
  endpoint's new connections are not watched at all (its verdict is for life).
- DryRun takes the same decisions but never reports Spliced: a would-be promotion stays Audit
  with a reason that says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from socksplice.api.socketsplice import AutoSpec, Mode
from socksplice.bpf.layout import DID_KINDS, SAMPLE_EVERY, WOULD_KINDS


class Verdict(StrEnum):
    AUDIT = "Audit"
    """Connections stay on TCP and are watched."""
    SPLICED = "Spliced"
    """Connections are redirected (tcp_bpf serves the receiver)."""
    DEMOTED = "Demoted"
    """Evidence showed that tcp_bpf would serve (or did serve) this application differently; TCP for good."""


@dataclass(frozen=True, order=True)
class EndpointKey:
    """Server pod's netns cookie, client pod's netns cookie, server port (server == client on loopback)."""

    server_netns: int
    client_netns: int
    port: int


@dataclass(frozen=True)
class EndpointRecord:
    key: EndpointKey
    policy: str
    """The SocketSplice (``namespace/name``) whose mode and settings applied."""
    mode: Mode
    verdict: Verdict
    reason: str
    first_seen: float
    """Epoch seconds when the agent first saw the endpoint."""
    since: float
    """Epoch seconds when the current verdict was taken."""
    slot: int = 0
    """The data path's demotion flag index (Auto, Spliced or Demoted); 0 = none."""
    last_counts: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    """The evidence counters of the latest turn."""
    sampled: bool = False
    """Audit only: judged too short to gain, so one new connection in ``SAMPLE_EVERY`` is watched."""
    window_start: float | None = None
    """Epoch seconds when the current evidence window began (None: at ``first_seen``)."""
    window_base: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    """The evidence counters when the current window began (the window judges what came since)."""


KIND_REASONS: Mapping[str, str] = MappingProxyType(
    {
        "would_blocking_receive": (
            "blocking receives a wake-up without data can end (after its own shutdown, on a reset, "
            "error or signal, or on a socket that sent enough to fill its send buffer): tcp_bpf then "
            "returns EAGAIN where TCP keeps waiting"
        ),
        "would_waitall": "MSG_WAITALL: tcp_bpf returns what is queued",
        "would_rcvlowat": "SO_RCVLOWAT above 1: tcp_bpf ignores it",
        "would_splice": "splice(2)/sendfile(2) reads only TCP's queue, not spliced bytes",
        "would_close_unread": "close with unread bytes: TCP resets, tcp_bpf sends FIN",
        "would_fionread": "FIONREAD counts only TCP's queue on this kernel",
        "did_blocking_eagain": (
            "happened: a blocking receive without SO_RCVTIMEO returned EAGAIN "
            "where TCP would have kept waiting"
        ),
        "did_waitall_short": (
            "happened: a MSG_WAITALL receive returned what was queued before EOF, "
            "where TCP waits for all it was asked"
        ),
        "did_rcvlowat_short": (
            "happened: a receive returned fewer bytes than SO_RCVLOWAT where TCP would have waited"
        ),
        "did_splice": "happened: splice(2)/sendfile(2) read only TCP's queue and missed spliced bytes",
        "did_close_unread": "happened: a close with unread bytes sent FIN where TCP would have reset",
        "did_fionread": "happened: FIONREAD counted only TCP's queue and missed spliced bytes",
    }
)
"""One sentence per evidence counter: what the application does and what tcp_bpf does differently."""

FORCED_REASON = "SpliceRelaxedReceive splices every connection"


def would_differ(counts: Mapping[str, int]) -> dict[str, int]:
    """The would-differ kinds (names without ``would_``) counted at least once."""
    return {k: counts[f"would_{k}"] for k in WOULD_KINDS if counts.get(f"would_{k}", 0) > 0}


def did_differ(counts: Mapping[str, int]) -> dict[str, int]:
    """The did-differ kinds (names without ``did_``) counted at least once."""
    return {k: counts[f"did_{k}"] for k in DID_KINDS if counts.get(f"did_{k}", 0) > 0}


def differ_reason(counts: Mapping[str, int]) -> str:
    """Names the first kind seen (did-differ first) with its count, then the others; "" when none."""
    seen = [(f"did_{k}", n) for k, n in did_differ(counts).items()]
    seen += [(f"would_{k}", n) for k, n in would_differ(counts).items()]
    if not seen:
        return ""
    (first, n), rest = seen[0], seen[1:]
    reason = f"{first} ({n}): {KIND_REASONS[first]}"
    if rest:
        reason += "; also " + ", ".join(f"{name} ({m})" for name, m in rest)
    return reason


@dataclass(frozen=True)
class _Judgement:
    full: bool
    """The evidence window is complete: enough (watched) connections and enough seconds."""
    short: bool
    """Full, and its connections carry too few messages to gain from splicing."""
    why: str


def _judge(counts: Mapping[str, int], auto: AutoSpec, age: float) -> _Judgement:
    """Whether the evidence window is full and the connections long enough, and why (not).

    ``counts`` are the window's own (since it began); only watched connections count."""
    window = auto.evidence_window
    connections = counts.get("connections", 0)
    seconds = max(0, int(age))
    if connections < window.connections or age < window.seconds:
        return _Judgement(
            False,
            False,
            f"evidence: {min(connections, window.connections)} of {window.connections} connections, "
            f"{min(seconds, window.seconds)} of {window.seconds} s",
        )
    per_connection = counts.get("receives", 0) / connections if connections else 0.0
    if per_connection < auto.min_messages_per_connection:
        return _Judgement(
            True,
            True,
            f"short connections: {per_connection:.1f} messages per connection, "
            f"fewer than {auto.min_messages_per_connection}: splicing would not pay",
        )
    return _Judgement(
        True, False, f"{connections} connections in {seconds} s, {per_connection:.1f} messages per connection"
    )


SAMPLED_NOTE = f"1 in {SAMPLE_EVERY} new connections watched"


@dataclass(frozen=True)
class _Outcome:
    verdict: Verdict
    reason: str
    sampled: bool = False
    restart: bool = False
    """A new evidence window begins now, from the current counts."""


def window_counts(counts: Mapping[str, int], base: Mapping[str, int]) -> dict[str, int]:
    """What the counters gained since ``base``; all of them when one went back (new maps)."""
    if any(counts.get(k, 0) < v for k, v in base.items()):
        return dict(counts)
    return {k: v - base.get(k, 0) for k, v in counts.items()}


def decide(
    record: EndpointRecord | None,
    key: EndpointKey,
    counts: Mapping[str, int],
    *,
    mode: Mode,
    auto: AutoSpec,
    policy: str,
    observation: str,
    now: float,
) -> EndpointRecord:
    """The endpoint's record after this turn. ``observation`` is "" when available, else why not.

    ``slot`` is carried over unchanged: the table allocates and frees slots."""
    first_seen = record.first_seen if record is not None else now
    start = first_seen
    base: Mapping[str, int] = MappingProxyType({})
    if record is not None:
        start = record.window_start if record.window_start is not None else first_seen
        base = record.window_base
    outcome = _verdict(
        record,
        counts,
        window_counts(counts, base),
        mode=mode,
        auto=auto,
        observation=observation,
        age=now - start,
    )
    if outcome.restart:
        start, base = now, MappingProxyType(dict(counts))
    since = record.since if record is not None and record.verdict == outcome.verdict else now
    return EndpointRecord(
        key=key,
        policy=policy,
        mode=mode,
        verdict=outcome.verdict,
        reason=outcome.reason,
        first_seen=first_seen,
        since=since,
        slot=record.slot if record is not None else 0,
        last_counts=MappingProxyType(dict(counts)),
        sampled=outcome.sampled,
        window_start=None if start == first_seen else start,
        window_base=base,
    )


def _verdict(
    record: EndpointRecord | None,
    counts: Mapping[str, int],
    window: Mapping[str, int],
    *,
    mode: Mode,
    auto: AutoSpec,
    observation: str,
    age: float,
) -> _Outcome:
    if mode == Mode.SPLICE:
        return _Outcome(Verdict.SPLICED, FORCED_REASON)
    if record is not None and record.verdict == Verdict.DEMOTED:
        # Sticky: the reason keeps the evidence that demoted it.
        return _Outcome(Verdict.DEMOTED, record.reason)
    if observation:
        return _Outcome(Verdict.AUDIT, f"observation unavailable: {observation}")
    differ = differ_reason(counts)
    if differ:
        return _Outcome(Verdict.DEMOTED, differ)
    if (
        mode == Mode.AUTO
        and record is not None
        and record.mode == Mode.AUTO
        and record.verdict == Verdict.SPLICED
    ):
        return _Outcome(Verdict.SPLICED, record.reason)  # damping: the cost is not judged again
    judged = _judge(window, auto, age)
    if record is not None and record.sampled and record.verdict == Verdict.AUDIT:
        if not judged.full:  # the sampled window goes on; the reason keeps the last judgement
            head = record.reason.split(f"; {SAMPLED_NOTE}")[0]
            return _Outcome(Verdict.AUDIT, f"{head}; {SAMPLED_NOTE} ({judged.why})", sampled=True)
        if judged.short:  # still short: a new sampled window
            return _Outcome(Verdict.AUDIT, f"{judged.why}; {SAMPLED_NOTE}", sampled=True, restart=True)
        # The sampled connections grew longer: watch every connection again, for a new window,
        # before any promotion.
        return _Outcome(
            Verdict.AUDIT,
            f"sampled connections grew longer ({judged.why}): every new connection watched again, "
            "for a new evidence window",
            restart=True,
        )
    if not judged.full:
        return _Outcome(Verdict.AUDIT, judged.why)
    if judged.short:
        return _Outcome(Verdict.AUDIT, f"{judged.why}; {SAMPLED_NOTE}", sampled=True, restart=True)
    if mode == Mode.DRY_RUN:
        return _Outcome(Verdict.AUDIT, f"DryRun: would splice ({judged.why})")
    return _Outcome(Verdict.SPLICED, f"promoted: {judged.why}")


def transition(old: EndpointRecord | None, new: EndpointRecord | None) -> str | None:
    """Names a change worth a log line and an Event ("promoted", "demoted"), else None.

    A forced Spliced (SpliceRelaxedReceive) is the policy's choice, not news."""
    if new is None:
        return None
    was = old.verdict if old is not None else None
    if new.verdict == Verdict.DEMOTED and was != Verdict.DEMOTED:
        return "demoted"
    if (
        new.verdict == Verdict.SPLICED
        and new.mode == Mode.AUTO
        and (was != Verdict.SPLICED or old is None or old.mode != Mode.AUTO)
    ):
        return "promoted"
    return None
