"""The demo's workloads: each runs plain TCP and under Auto in the same run, interleaved A B A B.

Both ends use non-blocking sockets polled before each receive (sslg ``--nonblock``), as the
event-loop servers and clients Auto accepts do (nginx, Redis, Envoy, Go): Auto promotes them after
their audit pass, and the table shows what splicing gains. A blocking workload would be refused
(docs/auto.md): ``socksplice bench`` shows both kinds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from socksplice.tools.workloads.loadgen import PodRunner, run_rr, run_stream
from socksplice.tools.workloads.results import LatencyResult, StreamResult


@dataclass(frozen=True)
class Workload:
    name: str
    kind: str  # "rr" or "stream"
    size: int
    server_mode: str
    nonblock: bool = True

    def run(
        self, client: PodRunner, host: str, port: int, quick: bool, *, warmup: bool = False
    ) -> LatencyResult | StreamResult:
        """One run; ``warmup``: a short one (Auto's audit pass before the measured run)."""
        if self.kind == "rr":
            count = 200 if warmup else 2000 if quick else 20000
            return run_rr(
                client, host, port, req=self.size, resp=self.size, count=count, nonblock=self.nonblock
            )
        seconds = 0.2 if warmup else 1.0 if quick else 3.0
        return run_stream(client, host, port, write_size=self.size, seconds=seconds, nonblock=self.nonblock)


WORKLOADS: tuple[Workload, ...] = (
    Workload("rr-64B", "rr", 64, "rr"),
    Workload("rr-16KiB", "rr", 16384, "rr"),
    Workload("stream-1KiB", "stream", 1024, "sink"),
    Workload("stream-128KiB", "stream", 131072, "sink"),
)


def figures(result: LatencyResult | StreamResult) -> dict[str, Any]:
    """The figures the demo compares, by name."""
    if isinstance(result, LatencyResult):
        return {"p50_us": result.p50_us, "p99_us": result.p99_us, "mean_us": result.mean_us}
    return {"gbit_per_s": result.gbit_per_s, "bytes": result.bytes}


Runner = Callable[[Workload], LatencyResult | StreamResult]
