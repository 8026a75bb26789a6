"""Run the demo: topology, agent, the sample SocketSplice, workloads A/B, a table, teardown.

Plain and spliced runs alternate (A B A B ...) against the same server processes: the agent
attaches when the sample SocketSplice is present in the manifests directory and detaches when it
is removed, and every run opens new connections, so each run is entirely plain or entirely
spliced. The byte counters of the data path show which one it was.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
SERVER_PORT = 9400


@dataclass
class Run:
    mode: str  # "plain" or "spliced"
    figures: dict[str, Any]
    bytes_redirected: int


@dataclass
class WorkloadResult:
    workload: Workload
    runs: list[Run] = field(default_factory=list)


@dataclass
class DemoEnv:
    topology: LocalTopology
    agent: Agent
    datapath: Datapath
    manifests: Path
    client: LocalPod
    server: LocalPod

    def set_policy(self, on: bool) -> None:
        target = self.manifests / SAMPLE.name
        if on:
            shutil.copyfile(SAMPLE, target)
        else:
            target.unlink(missing_ok=True)
        report = self.agent.step(force=True)
        want = 2 if on else 0
        if report is None or report.errors or len(self.agent.reconciler.applied) != want:
            raise RuntimeError(f"agent did not converge: {report} (error: {self.agent.last_error})")


@contextmanager
def demo_env(workdir: Path) -> Iterator[DemoEnv]:
    """Bring up the default local cluster, load the data path under a private pin name, and the
    agent; tear everything down on exit (also on error and Ctrl-C)."""
    with ExitStack() as stack:
        topology = stack.enter_context(LocalTopology(default_cluster(), state_dir=workdir))
        settings = AgentSettings(
            node_name="demo",
            state_dir=workdir / "agent",
            datapath=DatapathSettings(name=f"socksplice-demo-{topology.run_id}"),
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
        env.set_policy(False)
        yield env


def run_workload(env: DemoEnv, workload: Workload, repeats: int, quick: bool) -> WorkloadResult:
    result = WorkloadResult(workload)
    with Server(env.server, SERVER_PORT, workload.server_mode) as server:  # type: ignore[arg-type]
        for _ in range(repeats):
            for mode in ("plain", "spliced"):
                env.set_policy(mode == "spliced")
                before = env.datapath.totals()["bytes_redirected"]
                res = workload.run(env.client, str(env.server.ipv4), server.port, quick)  # type: ignore[arg-type]
                after = env.datapath.totals()["bytes_redirected"]
                result.runs.append(Run(mode, figures(res), after - before))
                log.info("demo: %s %s: %s", workload.name, mode, figures(res))
    env.set_policy(False)
    return result


def run_demo(quick: bool = False, repeats: int = 2) -> list[WorkloadResult]:
    base = Path("/run/socksplice")
    base.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="demo-", dir=base))
    try:
        with demo_env(workdir) as env:
            return [run_workload(env, w, repeats, quick) for w in WORKLOADS]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
