"""Run the demo: topology, agent, the sample SocketSplice (mode Auto), workloads A/B, a table.

Plain and Auto runs alternate (A B A B ...) against the same server processes. The agent
attaches when the sample SocketSplice is present in the manifests directory and detaches when it
is removed, and every run opens new connections, so each run is entirely plain or entirely under
Auto. An Auto run first *audits* the workload (a short unrecorded run on TCP, watched by the
observation programs), waits for the endpoint's verdict (the sample's evidence window is one
connection and one second), then measures: the new connections of a promoted endpoint are
spliced, those of a refused one stay on TCP. The verdict and its reason are kept with the run;
the byte counters of the data path show whether it was spliced.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from socksplice.api.nodestatus import EndpointStatus
from socksplice.bpf.loader import Datapath, DatapathSettings
from socksplice.local.podsfile import default_cluster
from socksplice.local.topology import LocalPod, LocalTopology
from socksplice.nodeagent.agent import Agent
from socksplice.nodeagent.localsource import LocalSource, StatusFile
from socksplice.nodeagent.settings import AgentSettings
from socksplice.tools.demo.workloads import WORKLOADS, Workload, figures
from socksplice.tools.workloads.loadgen import Server

log = logging.getLogger(__name__)

SAMPLE = Path(__file__).with_name("socketsplice.yaml")
"""The SocketSplice the demo applies (mode Auto, a one-connection, one-second evidence window)."""
SERVER_PORT = 9400
"""The first workload's server port; each workload has its own (its own endpoint, its own verdict)."""
MANIFEST = "socketsplice.yaml"
SETTLE_S = 0.2
"""Extra wait past the evidence window before the verdict is read (the agent's clock is time())."""


@dataclass(frozen=True)
class Verdict:
    """An endpoint's verdict as a run saw it: after the audit and after the measured run."""

    verdict: str
    reason: str
    after: str
    connections: int
    spliced_connections: int
    messages: int
    would_differ: dict[str, int]
    did_differ: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "reason": self.reason,
            "verdict_after_run": self.after,
            "connections": self.connections,
            "spliced_connections": self.spliced_connections,
            "messages": self.messages,
            "would_differ": self.would_differ,
            "did_differ": self.did_differ,
        }


@dataclass
class Run:
    mode: str  # "plain" or "auto"
    figures: dict[str, Any]
    bytes_redirected: int
    verdict: Verdict | None = None


@dataclass
class WorkloadResult:
    workload: Workload
    port: int = SERVER_PORT
    runs: list[Run] = field(default_factory=list)


@dataclass
class DemoEnv:
    topology: LocalTopology
    agent: Agent
    datapath: Datapath
    manifests: Path
    client: LocalPod
    server: LocalPod

    def apply(self, manifest: str | None) -> None:
        """Make ``manifest`` (YAML text) the only SocketSplice (``None``: none) and let the agent
        converge.

        Removing it detaches both pods, which drops their endpoints' records and evidence: the
        next Auto policy starts every endpoint afresh."""
        target = self.manifests / MANIFEST
        if manifest is not None:
            target.write_text(manifest)
        else:
            target.unlink(missing_ok=True)
        report = self.agent.step(force=True)
        want = 2 if manifest is not None else 0
        if report is None or report.errors or len(self.agent.reconciler.applied) != want:
            raise RuntimeError(f"agent did not converge: {report} (error: {self.agent.last_error})")

    def set_policy(self, on: bool) -> None:
        self.apply(SAMPLE.read_text() if on else None)

    def endpoint(self, port: int) -> EndpointStatus | None:
        """The client -> server endpoint on ``port`` after one more agent turn (None: not seen)."""
        self.agent.step()
        found = [e for e in self.agent.deciding.endpoints if e.port == port]
        return found[0] if found else None


def verdict_of(endpoint: EndpointStatus | None, after: EndpointStatus | None) -> Verdict:
    if endpoint is None:
        return Verdict("", "no connection of the endpoint was seen", "", 0, 0, 0, {}, {})
    last = after or endpoint
    return Verdict(
        endpoint.verdict,
        endpoint.reason,
        last.verdict,
        last.connections,
        last.spliced_connections,
        last.messages,
        dict(last.would_differ),
        dict(last.did_differ),
    )


def audit(
    env: DemoEnv, policy: str, port: int, warmup: Callable[[], object], window_s: float
) -> EndpointStatus | None:
    """Apply the Auto ``policy`` afresh, run ``warmup`` (on TCP, watched), wait out the evidence
    window and return the endpoint's verdict: the connections measured next follow it."""
    env.apply(None)
    env.apply(policy)
    warmup()
    env.endpoint(port)  # the agent's window starts when it first sees the endpoint: now
    started = time.monotonic()
    rest = window_s + SETTLE_S - (time.monotonic() - started)
    if rest > 0:
        time.sleep(rest)
    return env.endpoint(port)


@contextmanager
def demo_env(workdir: Path, *, observe: bool = True) -> Iterator[DemoEnv]:
    """Bring up the default local cluster, load the data path under a private pin name (with or
    without the observation programs), and the agent; tear everything down on exit (also on
    error and Ctrl-C)."""
    with ExitStack() as stack:
        topology = stack.enter_context(LocalTopology(default_cluster(), state_dir=workdir))
        settings = AgentSettings(
            node_name="demo",
            state_dir=workdir / "agent",
            datapath=DatapathSettings(name=f"socksplice-demo-{topology.run_id}", observe=observe),
            metrics_port=-1,
        )
        datapath = Datapath.load(settings.datapath)

        def unload() -> None:
            datapath.close()
            datapath.unpin()
            datapath.release_bpffs()

        stack.callback(unload)
        agent = Agent(settings, LocalSource(workdir, settings.node_name), datapath, StatusFile(workdir))
        stack.callback(agent.reconciler.detach_all)
        env = DemoEnv(
            topology,
            agent,
            datapath,
            workdir / "manifests",
            topology.pod("client", "demo"),
            topology.pod("server", "demo"),
        )
        env.apply(None)
        yield env


WINDOW_S = 1.0
"""The sample's evidenceWindow.seconds (socketsplice.yaml)."""


def run_workload(env: DemoEnv, workload: Workload, port: int, repeats: int, quick: bool) -> WorkloadResult:
    result = WorkloadResult(workload, port)
    host = str(env.server.ipv4)
    with Server(env.server, port, workload.server_mode, nonblock=workload.nonblock) as server:  # type: ignore[arg-type]
        for _ in range(repeats):
            for mode in ("plain", "auto"):
                seen: EndpointStatus | None = None
                if mode == "plain":
                    env.apply(None)
                else:
                    seen = audit(
                        env,
                        SAMPLE.read_text(),
                        server.port,
                        lambda: workload.run(env.client, host, server.port, True, warmup=True),  # type: ignore[arg-type]
                        WINDOW_S,
                    )
                before = env.datapath.totals()["bytes_redirected"]
                res = workload.run(env.client, host, server.port, quick)  # type: ignore[arg-type]
                after = env.datapath.totals()["bytes_redirected"]
                verdict = verdict_of(seen, env.endpoint(server.port)) if mode == "auto" else None
                result.runs.append(Run(mode, figures(res), after - before, verdict))
                log.info("demo: %s %s: %s %s", workload.name, mode, figures(res), verdict or "")
    env.apply(None)
    return result


def run_demo(quick: bool = False, repeats: int = 2) -> list[WorkloadResult]:
    base = Path("/run/socksplice")
    base.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="demo-", dir=base))
    try:
        with demo_env(workdir) as env:
            return [run_workload(env, w, SERVER_PORT + i, repeats, quick) for i, w in enumerate(WORKLOADS)]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
