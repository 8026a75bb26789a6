"""Test harness for the data path: a private bpffs, the real agent on a local topology, and
in-pod helpers. Used by the data path and lifecycle tests."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from socksplice.bpf.loader import Datapath, DatapathSettings
from socksplice.kernel import bpffs
from socksplice.local.topology import LocalPod, LocalTopology
from socksplice.nodeagent.agent import Agent
from socksplice.nodeagent.localsource import LocalSource, StatusFile
from socksplice.nodeagent.settings import AgentSettings

STREAMCHECK = Path(__file__).with_name("streamcheck.py")

SPLICE_YAML = """\
apiVersion: socksplice.io/v1alpha1
kind: SocketSplice
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  podSelector: {{matchLabels: {labels}}}
  mode: {mode}
{extra}"""


def splice_yaml(
    name: str = "bench",
    namespace: str = "demo",
    labels: str = "{role: bench}",
    mode: str = "SpliceRelaxedReceive",
    ports: list[int] | None = None,
) -> str:
    extra = f"  ports: {ports}\n" if ports else ""
    return SPLICE_YAML.format(name=name, namespace=namespace, labels=labels, mode=mode, extra=extra)


@contextmanager
def private_bpffs(root: Path) -> Iterator[Path]:
    root.mkdir(parents=True, exist_ok=True)
    bpffs.mount(root)
    try:
        yield root
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)


@dataclass
class SpliceEnv:
    topology: LocalTopology
    settings: AgentSettings
    datapath: Datapath
    agent: Agent

    @property
    def manifests(self) -> Path:
        assert self.topology.state_dir is not None
        return self.topology.state_dir / "manifests"

    def apply(self, yaml_text: str, name: str = "bench") -> None:
        self.manifests.mkdir(parents=True, exist_ok=True)
        (self.manifests / f"{name}.yaml").write_text(yaml_text)
        self.agent.step(force=True)

    def delete(self, name: str = "bench") -> None:
        (self.manifests / f"{name}.yaml").unlink()
        self.agent.step(force=True)

    def totals(self) -> dict[str, int]:
        return self.datapath.totals()

    def pod(self, name: str, namespace: str = "demo") -> LocalPod:
        return self.topology.pod(name, namespace)


def agent_settings(
    topology: LocalTopology, pin_root: Path, state_dir: Path, **datapath: int
) -> AgentSettings:
    """Test agent settings; ``datapath`` overrides DatapathSettings fields (limits, sizes)."""
    return AgentSettings(
        node_name="test",
        state_dir=state_dir,
        datapath=DatapathSettings(pin_root=pin_root, name=f"t-{topology.run_id}", **datapath),
        metrics_port=-1,
    )


@contextmanager
def splice_env(
    topology: LocalTopology, pin_root: Path, state_dir: Path, **datapath: int
) -> Iterator[SpliceEnv]:
    settings = agent_settings(topology, pin_root, state_dir, **datapath)
    datapath = Datapath.load(settings.datapath)
    assert topology.state_dir is not None
    agent = Agent(settings, LocalSource(topology.state_dir, "test"), datapath, StatusFile(topology.state_dir))
    try:
        yield SpliceEnv(topology, settings, datapath, agent)
    finally:
        for pod in topology.pods:
            if pod.cgroup.exists():
                datapath.detach(pod.cgroup)
        datapath.close()
        datapath.unpin()


@contextmanager
def echo_server(pod: LocalPod, port: int, bind: str = "::") -> Iterator[subprocess.Popen[bytes]]:
    proc = pod.popen(
        [sys.executable, str(STREAMCHECK), "server", "--port", str(port), "--bind", bind],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == b"READY", (line, proc.stderr.read() if proc.stderr else b"")
        yield proc
    finally:
        proc.kill()
        proc.wait()


def start_clients(
    pod: LocalPod,
    host: str,
    port: int,
    conns: int = 1,
    nbytes: int = 1 << 20,
    seconds: float = 0.0,
    bind_port: int = 0,
    timeout: float | None = None,
) -> subprocess.Popen[bytes]:
    """Start streamcheck's client in ``pod``: ``conns`` verified streams of ``nbytes`` each, their
    writes spread over ``seconds``; connections not finished after ``timeout`` seconds (default:
    ``seconds`` + 120) count as stuck."""
    argv = [
        sys.executable,
        str(STREAMCHECK),
        "client",
        "--host",
        host,
        "--port",
        str(port),
        "--conns",
        str(conns),
        "--bytes",
        str(nbytes),
        "--seconds",
        str(seconds),
        "--bind-port",
        str(bind_port),
    ]
    if timeout is not None:
        argv += ["--timeout", str(timeout)]
    return pod.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen[bytes], timeout: float = 120.0) -> dict[str, int]:
    """Wait for a client started by :func:`start_clients`; returns its JSON result (and "stderr").
    A client still running after ``timeout`` seconds is killed and the test fails."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"streamcheck client still running after {timeout}s: {err.decode()}") from None
    assert proc.returncode == 0, err.decode()
    result: dict[str, int] = json.loads(out.decode().strip().splitlines()[-1])
    result["stderr"] = err.decode()  # type: ignore[assignment]
    return result


def assert_streams_intact(result: dict[str, int], conns: int, nbytes: int) -> None:
    """Every connection of a :func:`finish` result ended, none stuck, every byte arrived intact."""
    assert result["errors"] == 0 and result["mismatches"] == 0, result
    assert result["connected"] == conns and result["finished"] == conns, result
    assert result["stuck"] == 0, result
    assert result["bytes_ok"] == conns * nbytes, result


LIVE_CONNS = 1000
"""Connections running verified streams through each lifecycle event (drain, upgrade, restart, ...)."""
LIVE_BYTES = 1 << 20
"""Bytes each of them sends (and gets echoed back)."""
FRESH_BYTES = 64 << 10
"""Bytes of each connection opened after an event, to see how new connections are treated."""


def assert_all_spliced(
    end: dict[str, int], conns: int, stream_bytes: int, start: dict[str, int] | None = None
) -> None:
    """Between the data path counters ``start`` (None: fresh maps) and ``end``, every connection
    was paired and spliced, and every byte of its streams (``stream_bytes`` over all connections,
    each way) was redirected: none went through TCP."""
    s = start or dict.fromkeys(end, 0)
    assert end["pairs_spliced"] - s["pairs_spliced"] == conns, end
    assert end["sockets_added"] - s["sockets_added"] == 2 * conns, end
    assert end["bytes_redirected"] - s["bytes_redirected"] == 2 * stream_bytes, end
    assert end["msgs_fallback"] == s["msgs_fallback"], end


def run_clients(pod: LocalPod, host: str, port: int, **kwargs: int | float) -> dict[str, int]:
    return finish(start_clients(pod, host, port, **kwargs))  # type: ignore[arg-type]


def wait_for(predicate: object, timeout: float = 10.0, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {predicate}")
