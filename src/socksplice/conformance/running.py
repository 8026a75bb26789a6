"""Run scenarios twice between local pods, plain TCP then spliced, and compare the traces.

The environment is the default local cluster (demo/client, demo/server, the DNAT'ed service
198.18.1.1:80 → server:9400), the real data path under a private pin name, and the real agent.
"Plain" has no SocketSplice; "spliced" applies one that selects both pods. The redirected byte
counter of each spliced run proves it was spliced.
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

from socksplice.bpf.loader import Datapath, DatapathSettings
from socksplice.conformance.apps import APPS
from socksplice.conformance.scenarios import Scenario
from socksplice.local.podsfile import default_cluster
from socksplice.local.topology import LocalPod, LocalTopology
from socksplice.nodeagent.agent import Agent
from socksplice.nodeagent.localsource import LocalSource, StatusFile
from socksplice.nodeagent.settings import AgentSettings

log = logging.getLogger(__name__)

PORT = 9400
TIMEOUT = 180.0
SPLICE = """\
apiVersion: socksplice.io/v1alpha1
kind: SocketSplice
metadata: {name: conformance, namespace: demo}
spec:
  podSelector: {matchLabels: {role: bench}}
  mode: SpliceRelaxedReceive
"""


@dataclass
class Env:
    topology: LocalTopology
    datapath: Datapath
    agent: Agent
    manifests: Path

    def pod(self, name: str) -> LocalPod:
        return self.topology.pod(name, "demo")

    def set_spliced(self, on: bool) -> None:
        target = self.manifests / "conformance.yaml"
        self.manifests.mkdir(parents=True, exist_ok=True)
        if on:
            target.write_text(SPLICE)
        else:
            target.unlink(missing_ok=True)
        self.agent.step(force=True)
        want = 2 if on else 0
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
    scenario: Scenario
    plain: Any = None
    spliced: Any = None
    redirected: int = 0
    """Bytes the spliced run redirected (0 would mean it was not spliced at all)."""
    left_in_map: int = 0
    """Sockets still in the SOCKHASH 10 s after the spliced run ended (must be 0: baseline)."""
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """A program of the plain run failed: the scenario itself is broken, not the splice."""
        traces = self.plain if isinstance(self.plain, list) else [self.plain]
        return any(
            not isinstance(t, dict) or any(isinstance(v, dict) and "error" in v for v in t.values())
            for t in traces
        )

    @property
    def same(self) -> bool:
        return not self.failed and self.plain == self.spliced and self.left_in_map == 0


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


def _app(app: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "socksplice.conformance.apps", app, *args]


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
                _app(s.app, "server", "--port", str(e.listen_port), "--bind", e.bind),
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
                _app(s.app, "client", "--host", e.host, "--port", str(e.port)),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            stack.callback(_reap, proc)
            clients.append(proc)
        for c, srv in zip(clients, servers, strict=True):
            client_trace = _collect(c, TIMEOUT)
            failed = isinstance(client_trace, dict) and "error" in client_trace
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
    env: Env, scenarios: list[Scenario], progress: Callable[[Outcome], None] | None = None
) -> list[Outcome]:
    """Every scenario plain, then every scenario spliced (one policy change each way)."""
    for s in scenarios:
        if s.app not in APPS:
            raise ValueError(f"{s.name}: unknown app {s.app}")
    outcomes = [Outcome(s) for s in scenarios]
    env.set_spliced(False)
    for o in outcomes:
        o.plain = run_once(env, o.scenario)
    env.set_spliced(True)
    try:
        for o in outcomes:
            before = env.datapath.totals()["bytes_redirected"]
            o.spliced = run_once(env, o.scenario)
            o.redirected = env.datapath.totals()["bytes_redirected"] - before
            o.left_in_map = _settled(env.datapath.spliced_sockets)
            if progress is not None:
                progress(o)
    finally:
        env.set_spliced(False)
    return outcomes


def run_suite(scenarios: list[Scenario], progress: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    base = Path("/run/socksplice")
    base.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="conformance-", dir=base) as tmp,
        conformance_env(Path(tmp)) as env,
    ):
        return run_scenarios(env, scenarios, progress)
