"""Run scenarios between local pods, plain TCP then once per SocketSplice mode, and compare.

The environment is the default local cluster (demo/client, demo/server, the DNAT'ed service
198.18.1.1:80 → server:9400), the real data path under a private pin name, and the real agent.
"Plain" has no SocketSplice; each mode run applies one that selects both pods with that
``mode``. The data path's counters prove what each run did: bytes redirected (SpliceRelaxedReceive)
and connections paired (both modes).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from socksplice.api.socketsplice import Mode
from socksplice.bpf.loader import Datapath, DatapathSettings
from socksplice.local.podsfile import default_cluster
from socksplice.local.topology import LocalPod, LocalTopology
from socksplice.nodeagent.agent import Agent
from socksplice.nodeagent.localsource import LocalSource, StatusFile
from socksplice.nodeagent.settings import AgentSettings
from socksplice.tools.conformance import programs
from socksplice.tools.conformance.apps import APPS
from socksplice.tools.conformance.scenarios import Scenario

log = logging.getLogger(__name__)

PORT = 9400
TIMEOUT = 180.0
SPLICE = """\
apiVersion: socksplice.io/v1alpha1
kind: SocketSplice
metadata: {{name: conformance, namespace: demo}}
spec:
  podSelector: {{matchLabels: {{role: bench}}}}
  mode: {mode}
"""
MODES: tuple[Mode, ...] = (Mode.DRY_RUN, Mode.SPLICE)
"""Every mode, the default first."""


@dataclass
class Env:
    topology: LocalTopology
    datapath: Datapath
    agent: Agent
    manifests: Path

    def pod(self, name: str) -> LocalPod:
        return self.topology.pod(name, "demo")

    def set_mode(self, mode: Mode | None) -> None:
        """Apply the SocketSplice with ``mode`` to both pods, or remove it (None: plain TCP)."""
        target = self.manifests / "conformance.yaml"
        self.manifests.mkdir(parents=True, exist_ok=True)
        if mode is not None:
            target.write_text(SPLICE.format(mode=mode.value))
        else:
            target.unlink(missing_ok=True)
        self.agent.step(force=True)
        want = 2 if mode is not None else 0
        if len(self.agent.reconciler.applied) != want:
            raise RuntimeError(f"agent did not converge: {self.agent.last_error}")


@contextmanager
def conformance_env(workdir: Path, datapath: DatapathSettings | None = None) -> Iterator[Env]:
    """The default local cluster, the data path and the agent; all removed on exit."""
    with ExitStack() as stack:
        topology = stack.enter_context(LocalTopology(default_cluster(), state_dir=workdir))
        dp_settings = datapath or DatapathSettings(name=f"socksplice-conformance-{topology.run_id}")
        settings = AgentSettings(
            node_name="conformance", state_dir=workdir / "agent", datapath=dp_settings, metrics_port=-1
        )
        dp = Datapath.load(settings.datapath)

        def unload() -> None:
            dp.close()
            dp.unpin()
            dp.release_bpffs()

        stack.callback(unload)
        agent = Agent(settings, LocalSource(workdir, settings.node_name), dp, StatusFile(workdir))
        stack.callback(agent.reconciler.detach_all)
        for pod in topology.pods:  # churn reuses client ports; 10,000 connects queue at once
            pod.run(["sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1", "net.core.somaxconn=65535"])
        yield Env(topology, dp, agent, workdir / "manifests")


@dataclass
class Outcome:
    """One scenario in one mode, against the same scenario on plain TCP."""

    scenario: Scenario
    plain: Any = None
    spliced: Any = None
    """The trace with the SocketSplice of ``mode`` applied."""
    redirected: int = 0
    """Bytes the run redirected (0 in DryRun; in SpliceRelaxedReceive 0 would mean not spliced)."""
    mode: Mode = Mode.SPLICE
    paired: int = 0
    """Connections the run paired (spliced, or counted as spliceable in DryRun)."""
    left_in_map: int = 0
    """Sockets still in the SOCKHASH 10 s after the run ended (must be 0: baseline)."""
    expected: Any = None
    """For real programs: the trace of a correct run (a plain run that differs is broken)."""
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """A program of the plain run failed: the scenario itself is broken, not the splice."""
        if self.expected is not None and self.plain != self.expected:
            return True
        traces = self.plain if isinstance(self.plain, list) else [self.plain]
        return any(
            not isinstance(t, dict) or any(isinstance(v, dict) and "error" in v for v in t.values())
            for t in traces
        )

    @property
    def same(self) -> bool:
        dry_run_redirected = self.mode is Mode.DRY_RUN and self.redirected != 0
        return (
            not self.failed
            and self.plain == self.spliced
            and self.left_in_map == 0
            and not dry_run_redirected
        )


@dataclass(frozen=True)
class Endpoints:
    server: LocalPod
    bind: str
    listen_port: int
    client: LocalPod
    host: str
    port: int


def _endpoints(env: Env, s: Scenario) -> list[Endpoints]:
    """Where the server listens and the client connects, for each pair the scenario runs at once."""
    client, server = env.pod("client"), env.pod("server")
    if s.address == "pod-ipv6":
        return [Endpoints(server, "::", PORT, client, str(server.ipv6), PORT)]
    if s.address == "ipv4-listener":
        return [Endpoints(server, "0.0.0.0", PORT, client, str(server.ipv4), PORT)]
    if s.address == "service-vip":
        svc = env.topology.services[0]
        return [Endpoints(server, "::", svc.target_port, client, str(svc.vip), svc.port)]
    if s.address == "loopback-two-pods":
        return [Endpoints(p, "127.0.0.1", PORT + 100, p, "127.0.0.1", PORT + 100) for p in (client, server)]
    return [Endpoints(server, "::", PORT, client, str(server.ipv4), PORT)]


def _app(s: Scenario, *args: str) -> list[str]:
    return [sys.executable, "-m", f"socksplice.tools.conformance.{s.runner}", s.app, *args]


def _json_line(out: bytes) -> Any:
    lines = out.decode(errors="replace").strip().splitlines()
    return json.loads(lines[-1]) if lines else None


def run_once(env: Env, s: Scenario) -> Any:
    """Run the scenario's programs; returns their traces (one {client, server} per pair)."""
    traces: list[Any] = []
    with ExitStack() as stack:
        servers, clients = [], []
        pairs = _endpoints(env, s)
        for e in pairs:
            proc = e.server.popen(
                _app(s, "server", "--port", str(e.listen_port), "--bind", e.bind),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            stack.callback(_reap, proc)
            assert proc.stdout is not None
            ready = proc.stdout.readline().strip()
            if ready != b"READY":
                raise RuntimeError(f"{s.name}: server did not start: {ready!r}")
            servers.append(proc)
        for e in pairs:
            proc = e.client.popen(
                _app(s, "client", "--host", e.host, "--port", str(e.port)),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            stack.callback(_reap, proc)
            clients.append(proc)
        for c, srv in zip(clients, servers, strict=True):
            client_trace = _collect(c, TIMEOUT)
            failed = isinstance(client_trace, dict) and "error" in client_trace
            if s.runner == "programs" and srv.poll() is None:
                srv.terminate()  # a real server runs until told to stop, then prints its trace
            traces.append({"client": client_trace, "server": _collect(srv, 5.0 if failed else TIMEOUT)})
    return traces[0] if len(traces) == 1 else traces


def _collect(proc: subprocess.Popen[bytes], timeout: float) -> Any:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {"error": f"no result within {timeout:.0f}s"}
    if proc.returncode != 0:
        tail = err.decode(errors="replace").strip().splitlines()[-1:] or [""]
        return {"error": f"exit {proc.returncode}: {tail[0]}"}
    return _json_line(out)


def _settled(count: Callable[[], int], timeout: float = 10.0) -> int:
    """``count()`` once it reaches 0, or its value when ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    n = count()
    while n and time.monotonic() < deadline:
        time.sleep(0.1)
        n = count()
    return n


def _reap(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def run_scenarios(
    env: Env,
    scenarios: list[Scenario],
    modes: tuple[Mode, ...] = MODES,
    progress: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Every scenario plain, then every scenario in each mode (one policy change per mode).
    Returns one outcome per mode and scenario, mode by mode in the order of ``modes``."""
    for s in scenarios:
        if s.app not in (APPS if s.runner == "apps" else programs.PROGRAMS):
            raise ValueError(f"{s.name}: unknown {s.runner} entry {s.app}")
    env.set_mode(None)
    plain = [run_once(env, s) for s in scenarios]
    expected = [programs.expected(s.app) if s.runner == "programs" else None for s in scenarios]
    outcomes: list[Outcome] = []
    try:
        for mode in modes:
            env.set_mode(mode)
            for s, trace, correct in zip(scenarios, plain, expected, strict=True):
                before = env.datapath.totals()
                o = Outcome(s, trace, run_once(env, s), mode=mode, expected=correct)
                after = env.datapath.totals()
                o.redirected = after["bytes_redirected"] - before["bytes_redirected"]
                paired = "pairs_dryrun" if mode is Mode.DRY_RUN else "pairs_spliced"
                o.paired = after[paired] - before[paired]
                o.left_in_map = _settled(env.datapath.spliced_sockets)
                outcomes.append(o)
                if progress is not None:
                    progress(o)
    finally:
        env.set_mode(None)
    return outcomes


def run_suite(
    scenarios: list[Scenario],
    modes: tuple[Mode, ...] = MODES,
    progress: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    base = Path("/run/socksplice")
    base.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="conformance-", dir=base) as tmp,
        conformance_env(Path(tmp)) as env,
    ):
        return run_scenarios(env, scenarios, modes, progress)
