"""Run the matrix in the demo's local cluster: every case, every path, interleaved, repeated.

Reuses :func:`socksplice.tools.demo.running.demo_env` (two netns pods, the agent, the bench's
SocketSplices, ``policies``, applied between runs). Within a repeat the paths run in turn (plain,
spliced, auto, unix, unix2), and the order rotates from one repeat to the next, so slow drift of
the machine lands on every path alike. Every run opens new connections, so a run is entirely
plain or entirely spliced; the data path's byte counter records which.

Beside each TCP sslg server the server pod runs a twin of the same mode and I/O style listening
on an AF_UNIX path socket in the bench's work directory (``<mode>[-nb].sock``): pods share the
file system, and a path socket is found through it, not through the network namespace, so the
client pod reaches it. The ``unix2`` runs use it; the AF_UNIX paths need no SocketSplice and
leave the policy as it is.

An ``auto`` run starts from no SocketSplice (the endpoint's record and evidence are dropped),
applies the Auto policy, runs the case's audit pass (``cases.audit_pass``, unrecorded, on TCP),
waits out the evidence window, reads the endpoint's verdict, then measures: a promoted
endpoint's new connections are spliced, a refused one's stay on TCP.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path as FsPath

from socksplice.tools.bench.cases import Case, Kind, Path, audit_pass
from socksplice.tools.bench.measuring import Run, Target, measure
from socksplice.tools.bench.placement import PinnedPod, Placement, cpu_sets
from socksplice.tools.bench.policies import AUTO, AUTO_WINDOW_S, SPLICED
from socksplice.tools.demo.running import DemoEnv, audit, verdict_of
from socksplice.tools.workloads.iperf import IperfServer
from socksplice.tools.workloads.loadgen import PodRunner, Server, ServerMode

log = logging.getLogger(__name__)

SSLG_PORTS: dict[ServerMode, int] = {"echo": 9400, "rr": 9401, "sink": 9402}
IPERF3_PORT = 9403
SSLG_NB_PORTS: dict[ServerMode, int] = {"echo": 9404, "rr": 9405, "sink": 9406}
"""The ``--nonblock`` servers of the ``-nb`` cases: their own ports, so their endpoints (and
Auto's verdicts on them) are apart from the blocking workloads'."""
SERVER_MODE: dict[Kind, ServerMode] = {
    "echo": "echo",
    "rr": "rr",
    "crr": "rr",
    "conc": "rr",
    "stream": "sink",
}

Progress = Callable[[Run], None]


@dataclass
class CaseResult:
    case: Case
    runs: list[Run] = field(default_factory=list)


def rotated(paths: tuple[Path, ...], repeat: int) -> tuple[Path, ...]:
    """The order of the paths in the given repeat: A B C, B C A, C A B, ..."""
    k = repeat % len(paths)
    return paths[k:] + paths[:k]


def target_key(case: Case) -> str:
    """The server a case runs against: ``iperf3``, an sslg mode, or ``<mode>-nb``."""
    if case.kind == "iperf3":
        return "iperf3"
    mode = SERVER_MODE[case.kind]
    return f"{mode}-nb" if case.nonblock else mode


def socket_dir(env: DemoEnv) -> FsPath:
    """Where the AF_UNIX twins listen: the run's work directory, seen by both pods."""
    if env.topology.state_dir is None:
        raise RuntimeError("the bench's cluster has no work directory for its AF_UNIX sockets")
    return env.topology.state_dir


@contextmanager
def servers(env: DemoEnv, pod: PodRunner | None = None) -> Iterator[dict[str, Target]]:
    """sslg servers (echo, rr, sink; blocking and ``--nonblock``; each on TCP and on an AF_UNIX
    path socket) and an iperf3 server in the server pod (``pod``: the server pod as the run's
    placement starts its processes), for the whole run."""
    server: PodRunner = pod if pod is not None else env.server  # type: ignore[assignment]
    host = str(env.server.ipv4)
    sockets = socket_dir(env)
    with ExitStack() as stack:
        targets: dict[str, Target] = {}
        for nonblock, ports in ((False, SSLG_PORTS), (True, SSLG_NB_PORTS)):
            for mode, port in ports.items():
                key = f"{mode}-nb" if nonblock else mode
                srv = stack.enter_context(Server(server, port, mode, nonblock=nonblock))
                path = sockets / f"{key}.sock"
                twin = stack.enter_context(Server(server, mode=mode, nonblock=nonblock, unix_path=path))
                targets[key] = Target(host, srv.port, srv.pid, str(path), twin.pid)
        stack.enter_context(IperfServer(server, IPERF3_PORT))
        targets["iperf3"] = Target(host, IPERF3_PORT, None)
        yield targets


def run_case(
    env: DemoEnv,
    targets: dict[str, Target],
    case: Case,
    repeats: int,
    progress: Progress | None = None,
    client: PodRunner | None = None,
) -> CaseResult:
    result = CaseResult(case)
    target = targets[target_key(case)]
    for repeat in range(repeats):
        for path in rotated(case.paths, repeat):
            run = run_path(env, target, case, path, client=client)
            result.runs.append(run)
            log.info("bench: %s %s: %s", case.name, path, run.figures)
            if progress is not None:
                progress(run)
    env.apply(None)
    return result


def run_path(
    env: DemoEnv,
    target: Target,
    case: Case,
    path: Path,
    ready: Callable[[], None] | None = None,
    client: PodRunner | None = None,
) -> Run:
    """One recorded run of ``case`` over ``path``, with the policy the path needs; ``ready`` is
    called just before the measured run starts (after Auto's audit pass). ``client``: the client
    pod as the run's placement starts its processes (default: the demo's client pod)."""
    pod: PodRunner = client if client is not None else env.client  # type: ignore[assignment]
    seen = None
    if path == "plain":
        env.apply(None)
    elif path == "spliced":
        env.apply(SPLICED)
    elif path == "auto":
        short = audit_pass(case)
        seen = audit(
            env,
            AUTO,
            target.port,
            lambda: measure(short, path, pod, target, samples=False),
            # audit() counts the window from before the audit pass, the agent from the first turn
            # that sees the endpoint (after the pass): a timed pass adds its duration.
            AUTO_WINDOW_S + short.seconds,
        )
    if ready is not None:
        ready()
    before = env.datapath.totals()["bytes_redirected"]
    run = measure(case, path, pod, target, samples=case.latency)
    run.bytes_redirected = env.datapath.totals()["bytes_redirected"] - before
    if path == "auto":
        run.verdict = verdict_of(seen, env.endpoint(target.port))
    return run


WARMUP = (
    Case("warmup-rr", "rr", 64 * 1024, ("plain", "spliced", "unix", "unix2"), count=500),
    Case("warmup-stream", "stream", 128 * 1024, ("plain", "spliced", "unix", "unix2"), seconds=0.3),
)
"""Run once, unrecorded, before the matrix: the first runs in a fresh cluster are slower on
every path (measured: rr 64 KiB p50 42 µs on the first spliced run, 20 µs on the next ones)."""


def run_matrix(
    env: DemoEnv,
    cases: list[Case],
    repeats: int,
    progress: Progress | None = None,
    placement: Placement = "free",
) -> list[CaseResult]:
    client_cpus, server_cpus = cpu_sets(placement, os.sched_getaffinity(0))
    client = PinnedPod(env.client, client_cpus)  # type: ignore[arg-type]
    server = PinnedPod(env.server, server_cpus)  # type: ignore[arg-type]
    with servers(env, server) as targets:
        for case in WARMUP:
            run_case(env, targets, case, 1, client=client)
        return [run_case(env, targets, case, repeats, progress, client) for case in cases]
