"""``--placement``: which CPUs the bench's client and server processes run on.

On a small VM a request/response round trip is dominated by where the scheduler puts its two
ends: on one CPU the reply is a context switch away; on two, the receiver's CPU may be idle and
must be woken (an IPI, and on a VM the host scheduling the halted vCPU again), which costs tens
of microseconds and varies from run to run and from host to host (docs/round-trip.md). ``free``
leaves it to the scheduler, as a pod without a CPU limit gets; ``same`` pins both pods to the
first CPU and ``split`` the client to the first and the server to the second, as the static CPU
manager pins a Guaranteed pod, so each path is measured under one placement, and a ratio does not
depend on where the scheduler happened to put a run. Every process a pod starts inherits its pin
(the ``unix`` path's server is a thread of the client: it follows the client).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from socksplice.tools.workloads.loadgen import PodRunner

Placement = Literal["free", "same", "split"]
PLACEMENTS: tuple[Placement, ...] = ("free", "same", "split")
CpuSet = frozenset[int] | None
"""The CPUs a pod's processes are pinned to; None: not pinned."""


@dataclass(frozen=True)
class PinnedPod:
    """A pod whose processes start pinned to ``cpus`` (None: wherever the scheduler puts them)."""

    pod: PodRunner
    cpus: CpuSet

    @property
    def name(self) -> str:
        return self.pod.name

    @property
    def ipv4(self) -> str:
        return str(self.pod.ipv4)

    @property
    def ipv6(self) -> str:
        return str(self.pod.ipv6)

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        cpus = self.cpus
        if cpus is None:
            return self.pod.popen(argv, **kwargs)
        user: Callable[[], object] | None = kwargs.pop("preexec_fn", None)

        def pin() -> None:
            os.sched_setaffinity(0, cpus)
            if user is not None:
                user()

        return self.pod.popen(argv, preexec_fn=pin, **kwargs)


def cpu_sets(
    placement: Placement, available: set[int]
) -> tuple[frozenset[int] | None, frozenset[int] | None]:
    """The client's and the server's CPUs for ``placement`` on a machine with ``available`` CPUs."""
    cpus = sorted(available)
    if placement == "free":
        return None, None
    if placement == "same":
        return frozenset(cpus[:1]), frozenset(cpus[:1])
    if len(cpus) < 2:
        raise ValueError(f"--placement split needs two CPUs; this process may use {len(cpus)}")
    return frozenset(cpus[:1]), frozenset(cpus[1:2])


def describe(
    placement: Placement, client: frozenset[int] | None, server: frozenset[int] | None
) -> dict[str, Any]:
    """What ``results.json`` records as ``placement``."""
    return {
        "mode": placement,
        "client_cpus": sorted(client) if client is not None else None,
        "server_cpus": sorted(server) if server is not None else None,
    }
