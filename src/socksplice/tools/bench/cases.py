"""The benchmark matrix: which workloads run, on which paths, for how long.

A *path* is how bytes travel between the client and the server: ``plain`` (TCP between the two
pods, no SocketSplice), ``spliced`` (the same with a SocketSplice in mode SpliceRelaxedReceive:
every connection spliced), ``auto`` (a SocketSplice in mode Auto: the workload is audited on TCP
first and its connections are spliced only if Auto promotes the endpoint), ``unix`` (an
AF_UNIX socketpair inside the client pod, its other end served by a thread of the client: the
in-kernel socket-to-socket copy a splice cannot beat) and ``unix2`` (the same copy between two
processes in the two pods, as the TCP paths run: a client in the client pod connects to an sslg
server in the server pod through an AF_UNIX path socket in the bench's work directory). The
AF_UNIX paths run only where they mean something: echo, rr and stream; crr also runs on
``unix2``, whose connect/accept/close over a path socket is the floor for a connection's setup
and teardown (a socketpair has no connect to compare).

A case named ``...-nb`` runs sslg with ``--nonblock`` at both ends (O_NONBLOCK sockets, a poll()
before each receive: an event-loop application). Auto refuses every blocking receive, so only
these workloads can be promoted on the ``auto`` path; their blocking twins show Auto refusing and
staying at TCP speed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

Kind = Literal["echo", "rr", "stream", "iperf3", "crr", "conc"]
Path = Literal["plain", "spliced", "auto", "unix", "unix2"]

TCP_PATHS: tuple[Path, ...] = ("plain", "spliced", "auto")
ALL_PATHS: tuple[Path, ...] = ("plain", "spliced", "auto", "unix", "unix2")
CONNECT_PATHS: tuple[Path, ...] = (*TCP_PATHS, "unix2")
"""crr's paths: a socketpair has no connect, so only the two-process AF_UNIX reference."""

KIB = 1024
MIB = 1024 * KIB


@dataclass(frozen=True)
class Case:
    """One workload of the matrix. ``size`` is the block, request/response, write or message
    size in bytes; ``count`` rounds (echo, rr) or ``seconds`` (the others); ``connections`` for
    conc; ``nonblock``: sslg's event-loop I/O at both ends (echo, rr, stream)."""

    name: str
    kind: Kind
    size: int
    paths: tuple[Path, ...]
    count: int = 0
    seconds: float = 0.0
    connections: int = 0
    nonblock: bool = False

    @property
    def latency(self) -> bool:
        """Whether the case reports per-round latencies (and stalls)."""
        return self.kind in ("echo", "rr", "crr", "conc")


def audit_pass(case: Case) -> Case:
    """The short run of ``case`` that Auto audits before an ``auto`` run is measured: enough
    connections and messages for the bench's evidence window (one connection, one second)."""
    if case.kind in ("echo", "rr"):
        return replace(case, count=min(case.count, 200))
    if case.kind == "iperf3":
        return replace(case, seconds=1.0)  # iperf3 -t takes whole seconds
    return replace(case, seconds=min(case.seconds, 0.2))


def _label(size: int) -> str:
    if size >= MIB and size % MIB == 0:
        return f"{size // MIB}MiB"
    if size >= KIB and size % KIB == 0:
        return f"{size // KIB}KiB"
    return f"{size}B"


def matrix(quick: bool) -> list[Case]:
    """Every case, with counts and durations for a quick (< 3 minutes in all) or a full run."""
    q = quick
    rounds = 2000 if q else 20000
    stream_s = 0.5 if q else 2.0
    cases = [
        Case("echo-16KiB", "echo", 16 * KIB, ALL_PATHS, count=rounds),
        Case("echo-16KiB-nb", "echo", 16 * KIB, ALL_PATHS, count=rounds, nonblock=True),
        Case("echo-2MiB", "echo", 2 * MIB, ALL_PATHS, count=100 if q else 1000),
    ]
    for size in (64, KIB, 16 * KIB, 64 * KIB):
        cases.append(Case(f"rr-{_label(size)}", "rr", size, ALL_PATHS, count=rounds))
        if size == 64:
            cases.append(Case("rr-64B-nb", "rr", size, ALL_PATHS, count=rounds, nonblock=True))
    for size in (KIB, 16 * KIB, 128 * KIB, MIB):
        cases.append(Case(f"stream-{_label(size)}", "stream", size, ALL_PATHS, seconds=stream_s))
        if size == 128 * KIB:
            cases.append(Case("stream-128KiB-nb", "stream", size, ALL_PATHS, seconds=stream_s, nonblock=True))
    for size in (KIB, 16 * KIB, 128 * KIB, MIB):
        cases.append(Case(f"iperf3-{_label(size)}", "iperf3", size, TCP_PATHS, seconds=1.0 if q else 3.0))
    cases.append(Case("crr-64B", "crr", 64, CONNECT_PATHS, seconds=0.5 if q else 2.0))
    for n in (100, 1000):
        cases.append(Case(f"conc-{n}", "conc", 64, TCP_PATHS, seconds=0.5 if q else 3.0, connections=n))
    return cases
