"""Run scenarios between local pods, plain TCP then once per SocketSplice mode, and compare.

The environment is the default local cluster (demo/client, demo/server, the DNAT'ed service
198.18.1.1:80 → server:9400), the real data path under a private pin name, and the real agent.
"Plain" has no SocketSplice; each mode run applies one that selects both pods with that
``mode``. The data path's counters prove what each run did: bytes redirected (Auto and
SpliceRelaxedReceive) and connections paired.

In Auto each scenario runs twice: an evidence pass (audited, on TCP), then, once the agent reached a
verdict for the scenario's endpoints, the measured pass that is compared with plain TCP. The
suite's SocketSplice shortens the evidence window to one connection and one second and disables
the cost rule (``minMessagesPerConnection: 0``), so that every scenario whose receive pattern
tcp_bpf serves like TCP gets spliced, however few messages it exchanges. Each scenario listens on
a port of its own (``scenarios.port``): a port is an endpoint, and a refusal is final.
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

from socksplice.api.nodestatus import EndpointStatus
from socksplice.api.socketsplice import Mode
from socksplice.bpf.loader import Datapath, DatapathSettings
from socksplice.local.podsfile import default_cluster
from socksplice.local.topology import LocalPod, LocalTopology
from socksplice.nodeagent.agent import Agent
from socksplice.nodeagent.localsource import LocalSource, StatusFile
from socksplice.nodeagent.settings import AgentSettings
from socksplice.nodeagent.verdicts import Verdict, did_differ, would_differ
from socksplice.tools.conformance import programs
from socksplice.tools.conformance.apps import APPS
from socksplice.tools.conformance.scenarios import Scenario, port

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
  auto:
    evidenceWindow: {{connections: 1, seconds: 1}}
    minMessagesPerConnection: 0
"""
MODES: tuple[Mode, ...] = (Mode.AUTO, Mode.DRY_RUN, Mode.SPLICE)
"""Every mode, the default first."""
DEFAULT_MODE = Mode.AUTO
VERDICT_TIMEOUT = 10.0
"""Seconds Auto's measured pass waits for the verdicts after the evidence pass (the window is 1 s)."""


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
    audited: Any = None
    """Auto: the trace of the evidence pass (on TCP, watched); it must equal plain as well."""
    verdict: str = ""
    """Auto: the verdict of the scenario's endpoints when the measured pass started ("Spliced",
    "Demoted", "Audit"; several joined by "/"; "none" when no endpoint was seen)."""
    reason: str = ""
    verdict_after: str = ""
    """Auto: the verdict once the measured pass ended (a spliced endpoint may be demoted in it)."""
    did_differ: dict[str, int] = field(default_factory=dict)
    """Did-differ counts (kind → n) the scenario's endpoints gained in the measured pass."""
    would_differ: dict[str, int] = field(default_factory=dict)
    """Would-differ counts (kind → n) the scenario's endpoints gained in the measured pass."""

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
    def unspliced_redirected(self) -> bool:
        """Bytes redirected where nothing may be: in DryRun, or in Auto for an endpoint not Spliced."""
        if self.mode is Mode.DRY_RUN:
            return self.redirected != 0
        if self.mode is Mode.AUTO:
            return Verdict.SPLICED.value not in self.verdict and self.redirected != 0
        return False

    @property
    def audit_differs(self) -> bool:
        """Auto's evidence pass (on TCP) gave another trace than plain TCP."""
        return self.mode is Mode.AUTO and self.audited is not None and self.audited != self.plain

    @property
    def same(self) -> bool:
        return (
            not self.failed
            and self.plain == self.spliced
            and self.left_in_map == 0
            and not self.unspliced_redirected
            and not self.audit_differs
        )

    @property
    def did_differ_agrees(self) -> bool | None:
        """Whether the did-differ counters tell what the comparison saw (a trace that differs has
        a count above 0, a same one none); None where it does not apply (a plain run failed)."""
        if self.failed:
            return None
        differs = bool(self.plain != self.spliced)
        return (sum(self.did_differ.values()) > 0) == differs


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
    if s.address == "service-vip":
        svc = env.topology.services[0]
        return [Endpoints(server, "::", svc.target_port, client, str(svc.vip), svc.port)]
    own = port(s, PORT)
    if s.address == "pod-ipv6":
        return [Endpoints(server, "::", own, client, str(server.ipv6), own)]
    if s.address == "ipv4-listener":
        return [Endpoints(server, "0.0.0.0", own, client, str(server.ipv4), own)]
    if s.address == "loopback-two-pods":
        return [Endpoints(p, "127.0.0.1", own, p, "127.0.0.1", own) for p in (client, server)]
    return [Endpoints(server, "::", own, client, str(server.ipv4), own)]


def _ports(env: Env, s: Scenario) -> set[int]:
    return {n for e in _endpoints(env, s) for n in (e.listen_port, e.port)}


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


def endpoint_statuses(env: Env, ports: set[int]) -> tuple[EndpointStatus, ...]:
    """The agent's endpoints on ``ports`` after one loop turn."""
    env.agent.step()
    return tuple(e for e in env.agent.deciding.endpoints if e.port in ports)


def await_verdicts(env: Env, ports: set[int], timeout: float = VERDICT_TIMEOUT) -> tuple[EndpointStatus, ...]:
    """The endpoints on ``ports`` once none is in Audit any more, or as they are after ``timeout``.
    Without observation (``Datapath.observation`` says why) Audit is final: no wait."""
    deadline = time.monotonic() + (timeout if not env.datapath.observation else 0.0)
    found = endpoint_statuses(env, ports)
    while (not found or any(e.verdict == Verdict.AUDIT for e in found)) and time.monotonic() < deadline:
        time.sleep(0.2)
        found = endpoint_statuses(env, ports)
    return found


def verdict_of(found: tuple[EndpointStatus, ...]) -> tuple[str, str]:
    """(verdict, reason) of a scenario's endpoints: distinct values joined ("/" and "; ")."""
    if not found:
        return "none", "no endpoint was observed"
    verdicts = sorted({e.verdict for e in found})
    reasons = list(dict.fromkeys(e.reason for e in found if e.reason))
    return "/".join(verdicts), "; ".join(reasons)


def _evidence(env: Env, ports: set[int]) -> dict[str, int]:
    """The data path's evidence counters summed over the endpoints on ``ports``."""
    total: dict[str, int] = {}
    for (_, _, p), counts in env.datapath.evidence().items():
        if p in ports:
            for name, n in counts.items():
                total[name] = total.get(name, 0) + n
    return total


def _gained(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: n - before.get(k, 0) for k, n in after.items() if n - before.get(k, 0) > 0}


def measure(env: Env, s: Scenario, mode: Mode, plain: Any, expected: Any = None) -> Outcome:
    """One scenario in ``mode`` (already applied), against its ``plain`` trace."""
    o = Outcome(s, plain, mode=mode, expected=expected)
    ports = _ports(env, s)
    if mode is Mode.AUTO:
        o.audited = run_once(env, s)
        o.verdict, o.reason = verdict_of(await_verdicts(env, ports))
    before, evidence_before = env.datapath.totals(), _evidence(env, ports)
    o.spliced = run_once(env, s)
    after = env.datapath.totals()
    o.redirected = after["bytes_redirected"] - before["bytes_redirected"]
    paired = "pairs_dryrun" if mode is Mode.DRY_RUN else "pairs_spliced"
    o.paired = after[paired] - before[paired]
    o.left_in_map = _settled(env.datapath.spliced_sockets)
    if mode is not Mode.DRY_RUN:
        gained = _gained(evidence_before, _evidence(env, ports))
        o.did_differ, o.would_differ = did_differ(gained), would_differ(gained)
    if mode is Mode.AUTO:
        o.verdict_after, _ = verdict_of(endpoint_statuses(env, ports))
    return o


def run_scenarios(
    env: Env,
    scenarios: list[Scenario],
    modes: tuple[Mode, ...] = MODES,
    progress: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Every scenario plain, then every scenario in each mode (one policy change per mode; the
    policy is removed in between, so a mode starts with no endpoint record of another).
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
            env.set_mode(None)
            env.set_mode(mode)
            for s, trace, correct in zip(scenarios, plain, expected, strict=True):
                o = measure(env, s, mode, trace, correct)
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
