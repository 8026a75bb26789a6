"""``socksplice bench --observation``: what the observation programs cost per transaction.

Two measurements of rr-64B (one connection, 64 B request and response) on three paths: ``plain``
(no SocketSplice: the programs run and find the socket unwatched), ``auto`` (mode Auto: the
connection is watched and counted; the bench's workloads are refused and stay on TCP) and
``spliced`` (SpliceRelaxedReceive: watched and spliced).

1. A/B: each repeat builds the local cluster twice, with the data path loaded with and without
   the observation programs (``DatapathSettings(observe=False)``), in alternating order, and runs
   every path in each. The difference of the medians of CPU per transaction (both ends) and of
   the latency is the whole cost, the syscall-tracepoint overhead of the kernel included.
2. The kernel's own count (``progstats``): in the data path with observation, one more run per
   path with run-time statistics on; the programs' run time over the run divided by its
   transactions, and its share of the CPU per transaction measured in the same run.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import median
from typing import Any

from socksplice.tools.bench.cases import Case
from socksplice.tools.bench.cases import Path as BenchPath
from socksplice.tools.bench.measuring import Target
from socksplice.tools.bench.progstats import ProgStats, delta, observation_stats, run_time_stats
from socksplice.tools.bench.running import rotated, run_path
from socksplice.tools.demo.running import DemoEnv, demo_env
from socksplice.tools.workloads.loadgen import Server

PORT = 9401
PATHS: tuple[BenchPath, ...] = ("plain", "auto", "spliced")


def case(quick: bool) -> Case:
    return Case("rr-64B", "rr", 64, PATHS, count=5000 if quick else 20000)


@dataclass(frozen=True)
class Sample:
    path: str
    observe: bool
    cpu_us_per_transaction: float
    p50_us: float
    p99_us: float
    bytes_redirected: int
    prog_ns_per_transaction: float | None = None
    prog_runs_per_transaction: float | None = None
    programs: tuple[tuple[str, float], ...] = ()


def _one(env: DemoEnv, target: Target, c: Case, path: BenchPath, *, stats: bool) -> Sample:
    before: list[ProgStats] = []

    def ready() -> None:
        before.extend(observation_stats(env.datapath))

    run = run_path(env, target, c, path, ready if stats else None)
    figs = run.figures
    if not stats:
        return Sample(
            path, True, figs["cpu_us_per_transaction"], figs["p50_us"], figs["p99_us"], run.bytes_redirected
        )
    progs = delta(before, observation_stats(env.datapath))
    n = c.count
    return Sample(
        path,
        True,
        figs["cpu_us_per_transaction"],
        figs["p50_us"],
        figs["p99_us"],
        run.bytes_redirected,
        sum(p.run_time_ns for p in progs) / n,
        sum(p.run_cnt for p in progs) / n,
        tuple((p.name, round(p.run_time_ns / n, 1)) for p in progs if p.run_cnt),
    )


def _env_runs(workdir: Path, c: Case, observe: bool, repeat: int) -> list[Sample]:
    out: list[Sample] = []
    with demo_env(workdir, observe=observe) as env, Server(env.server, PORT, "rr") as srv:  # type: ignore[arg-type]
        target = Target(str(env.server.ipv4), srv.port, srv.pid)
        warm = Case("warmup", "rr", 64, PATHS, count=500)
        for path in PATHS:
            run_path(env, target, warm, path)
        for path in rotated(PATHS, repeat):
            s = _one(env, target, c, path, stats=False)
            out.append(replace(s, observe=observe))
        if observe:
            with run_time_stats():
                for path in PATHS:
                    out.append(_one(env, target, c, path, stats=True))
        env.apply(None)
    return out


def measure_observation(repeats: int, quick: bool) -> list[Sample]:
    base = Path("/run/socksplice")
    base.mkdir(parents=True, exist_ok=True)
    c = case(quick)
    samples: list[Sample] = []
    for repeat in range(repeats):
        for observe in rotated((True, False), repeat):  # type: ignore[arg-type]
            workdir = Path(tempfile.mkdtemp(prefix="bench-obs-", dir=base))
            try:
                got = _env_runs(workdir, c, bool(observe), repeat)
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
            for s in got:
                kind = "stats" if s.prog_ns_per_transaction is not None else f"observe={s.observe}"
                print(
                    f"bench: observation: {s.path} {kind}: CPU {s.cpu_us_per_transaction:.2f} µs/trans, "
                    f"p50 {s.p50_us:.2f} µs"
                    + (
                        f", programs {s.prog_ns_per_transaction:.0f} ns/trans"
                        if s.prog_ns_per_transaction
                        else ""
                    ),
                    file=sys.stderr,
                    flush=True,
                )
            samples.extend(got)
    return samples


def summarize_observation(samples: list[Sample]) -> dict[str, Any]:
    """Per path: medians with and without observation, their difference and share, and the
    kernel-counted program time per transaction and its share of the CPU per transaction."""
    out: dict[str, Any] = {}
    for path in PATHS:
        ab = {
            on: [
                s for s in samples if s.path == path and s.observe is on and s.prog_ns_per_transaction is None
            ]
            for on in (True, False)
        }
        stats = [s for s in samples if s.path == path and s.prog_ns_per_transaction is not None]
        entry: dict[str, Any] = {
            "runs": {"observe": len(ab[True]), "no_observe": len(ab[False]), "stats": len(stats)}
        }
        if ab[True] and ab[False]:
            on = {
                f: median(getattr(s, f) for s in ab[True])
                for f in ("cpu_us_per_transaction", "p50_us", "p99_us")
            }
            off = {
                f: median(getattr(s, f) for s in ab[False])
                for f in ("cpu_us_per_transaction", "p50_us", "p99_us")
            }
            entry["observe"] = {k: round(v, 3) for k, v in on.items()}
            entry["no_observe"] = {k: round(v, 3) for k, v in off.items()}
            cpu_off = off["cpu_us_per_transaction"]
            entry["cpu_difference_us"] = round(on["cpu_us_per_transaction"] - cpu_off, 3)
            entry["cpu_difference_share"] = (
                round((on["cpu_us_per_transaction"] - cpu_off) / cpu_off, 4) if cpu_off else None
            )
            entry["cpu_spread_us"] = {
                k: round(
                    max(s.cpu_us_per_transaction for s in v) - min(s.cpu_us_per_transaction for s in v), 3
                )
                for k, v in (("observe", ab[True]), ("no_observe", ab[False]))
            }
            entry["bytes_redirected"] = {
                "observe": sum(s.bytes_redirected for s in ab[True]),
                "no_observe": sum(s.bytes_redirected for s in ab[False]),
            }
        if stats:
            ns = median(s.prog_ns_per_transaction or 0.0 for s in stats)
            cpu = median(s.cpu_us_per_transaction for s in stats)
            entry["programs_ns_per_transaction"] = round(ns, 1)
            entry["program_runs_per_transaction"] = round(
                median(s.prog_runs_per_transaction or 0.0 for s in stats), 2
            )
            entry["programs_share_of_cpu"] = round(ns / (cpu * 1000), 4) if cpu else None
            last = stats[-1]
            entry["per_program_ns_per_transaction"] = dict(last.programs)
        out[path] = entry
    return out


def render_observation(summary: dict[str, Any]) -> str:
    lines = [
        "rr-64B: observation programs per transaction (CPU of both ends; medians)",
        f"{'path':<8} {'CPU µs/trans':>13} {'without':>9} {'difference':>11}"
        f" {'programs ns/trans':>18} {'share':>7}",
    ]
    for path, e in summary.items():
        on = e.get("observe", {}).get("cpu_us_per_transaction")
        off = e.get("no_observe", {}).get("cpu_us_per_transaction")
        diff = e.get("cpu_difference_share")
        ns = e.get("programs_ns_per_transaction")
        share = e.get("programs_share_of_cpu")
        lines.append(
            f"{path:<8} {on if on is not None else '-':>13} {off if off is not None else '-':>9}"
            f" {f'{diff * 100:+.1f} %' if diff is not None else '-':>11}"
            f" {ns if ns is not None else '-':>18} {f'{share * 100:.2f} %' if share is not None else '-':>7}"
        )
    lines.append(
        "difference: CPU with observation against a data path loaded without it (A/B, interleaved); "
        "programs: the kernel's run time of the observation programs (bpf_stats), its share of the CPU"
    )
    return "\n".join(lines)
