"""One run of one case on one path: start the client, collect its figures and CPU.

CPU cost counts both ends. On the TCP paths that is the client's own rusage (printed by sslg)
plus the server process's CPU time over the run, read from ``/proc/<pid>/stat`` (all threads);
iperf3 reports both ends itself. On the AF_UNIX path sslg serves the other end from a thread of
the client, so its rusage already covers both. On the ``unix2`` path the other end is an sslg
server process of its own in the server pod, counted from ``/proc`` like the TCP server. Softirq
work that the kernel accounts to no process (e.g. in ksoftirqd) is not counted on any path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path as FsPath

from socksplice.tools.bench.cases import Case, Path
from socksplice.tools.demo.running import Verdict
from socksplice.tools.workloads.iperf import run_iperf3
from socksplice.tools.workloads.loadgen import PodRunner, run_conc, run_crr, run_echo, run_rr, run_stream

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Target:
    """Where the client connects; ``server_pid`` is the process whose CPU counts as the server's
    (``None`` when the tool reports it itself). ``unix_path`` and ``unix_pid``: the same mode's
    AF_UNIX path-socket server for the ``unix2`` path (``None`` where there is none)."""

    host: str
    port: int
    server_pid: int | None
    unix_path: str | None = None
    unix_pid: int | None = None


@dataclass
class Run:
    """One run's figures by name, the latency samples for the CDF plots, and (filled in by the
    runner) the bytes the data path redirected while it ran and, on the ``auto`` path, the
    endpoint's verdict."""

    case: str
    path: Path
    figures: dict[str, float]
    samples_us: tuple[float, ...] = ()
    bytes_redirected: int = 0
    spurious_eagain: int = 0
    verdict: Verdict | None = None


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (every thread, live and exited)."""
    text = FsPath(f"/proc/{pid}/stat").read_text()
    # Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    rest = text[text.rindex(")") + 2 :].split()
    return (int(rest[11]) + int(rest[12])) / _TICKS


def _cpu_delta(pid: int | None, before: float | None) -> float:
    if pid is None or before is None:
        return 0.0
    return process_cpu_s(pid) - before


def measure(case: Case, path: Path, client: PodRunner, target: Target, *, samples: bool) -> Run:
    """Run ``case`` once over ``path``. The caller has already set the SocketSplice for it."""
    unix = path == "unix"
    upath = _unix_path(target, case) if path == "unix2" else None
    server_pid = None if unix else target.unix_pid if upath is not None else target.server_pid
    before = process_cpu_s(server_pid) if server_pid is not None else None
    host, port, nb = target.host, target.port, case.nonblock
    if case.kind in ("echo", "rr"):
        if case.kind == "echo":
            res = run_echo(
                client,
                host,
                port,
                case.size,
                case.count,
                samples=samples,
                unix=unix,
                nonblock=nb,
                unix_path=upath,
            )
        else:
            res = run_rr(
                client,
                host,
                port,
                case.size,
                case.size,
                case.count,
                samples=samples,
                unix=unix,
                nonblock=nb,
                unix_path=upath,
            )
        cpu = res.cpu_user_s + res.cpu_sys_s + _cpu_delta(server_pid, before)
        figs = _latency(res.p50_us, res.p90_us, res.p99_us, res.p999_us, res.max_us, res.mean_us)
        figs |= {"stalls": res.stalls, "cpu_us_per_transaction": cpu / res.count * 1e6}
        return Run(case.name, path, figs, res.samples_us, spurious_eagain=res.spurious_eagain)
    if case.kind == "stream":
        st = run_stream(client, host, port, case.size, case.seconds, unix=unix, nonblock=nb, unix_path=upath)
        cpu = st.cpu_user_s + st.cpu_sys_s + _cpu_delta(server_pid, before)
        figs = {"gbit_per_s": st.gbit_per_s, "cpu_s_per_gb": cpu / (st.bytes / 1e9) if st.bytes else 0.0}
        return Run(case.name, path, figs, spurious_eagain=st.spurious_eagain)
    if case.kind == "iperf3":
        ip = run_iperf3(client, host, port, case.size, case.seconds)
        cpu = (ip.sender_cpu_percent + ip.receiver_cpu_percent) / 100.0 * ip.seconds
        figs = {"gbit_per_s": ip.gbit_per_s, "cpu_s_per_gb": cpu / (ip.bytes / 1e9) if ip.bytes else 0.0}
        return Run(case.name, path, figs)
    if case.kind == "crr":
        rate = run_crr(
            client, host, port, case.seconds, size=case.size, close="server", samples=samples, unix_path=upath
        )
        cpu = rate.cpu_user_s + rate.cpu_sys_s + _cpu_delta(server_pid, before)
        figs = _latency(rate.p50_us, rate.p90_us, rate.p99_us, rate.p999_us, rate.max_us, rate.mean_us)
        figs |= {
            "connections_per_s": rate.connections_per_s,
            "stalls": rate.stalls,
            "cpu_us_per_transaction": cpu / max(rate.connections, 1) * 1e6,
        }
        return Run(case.name, path, figs, rate.samples_us, spurious_eagain=rate.spurious_eagain)
    conc = run_conc(client, host, port, case.connections, case.seconds, size=case.size)
    cpu = conc.cpu_user_s + conc.cpu_sys_s + _cpu_delta(server_pid, before)
    figs = _latency(conc.p50_us, conc.p90_us, conc.p99_us, conc.p999_us, conc.max_us, conc.mean_us)
    figs |= {
        "transactions_per_s": conc.transactions_per_s,
        "cpu_us_per_transaction": cpu / max(conc.transactions, 1) * 1e6,
    }
    return Run(case.name, path, figs)


UNIX2_KINDS = frozenset({"echo", "rr", "stream", "crr"})


def _unix_path(target: Target, case: Case) -> str:
    if case.kind not in UNIX2_KINDS:
        raise ValueError(f"{case.name}: {case.kind} has no unix2 path")
    if target.unix_path is None or target.unix_pid is None:
        raise ValueError(f"{case.name}: its server has no AF_UNIX twin for the unix2 path")
    return target.unix_path


def _latency(p50: float, p90: float, p99: float, p999: float, mx: float, mean: float) -> dict[str, float]:
    return {"p50_us": p50, "p90_us": p90, "p99_us": p99, "p999_us": p999, "max_us": mx, "mean_us": mean}
