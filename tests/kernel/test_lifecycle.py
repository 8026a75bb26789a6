"""Agent lifecycle with live traffic: SIGKILL and restart, SocketSplice deletion."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from socksplice.bpf.loader import Datapath, DatapathSettings
from socksplice.local.topology import LocalTopology
from tests.kernel.splicing import SpliceEnv, echo_server, finish, splice_yaml, start_clients, wait_for

pytestmark = pytest.mark.kernel

PORT = 9400


@contextmanager
def agent_process(
    topology: LocalTopology, pin_root: Path, state_dir: Path
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Runs `socksplice agent --local` as its own process; yields a list so tests can restart it."""
    assert topology.state_dir is not None
    argv = [
        sys.executable,
        "-m",
        "socksplice.cli",
        "agent",
        "--local",
        str(topology.state_dir),
        "--bpffs",
        str(pin_root),
        "--pin-name",
        f"t-{topology.run_id}",
        "--state-dir",
        str(state_dir),
        "--metrics-port",
        "-1",
        "--poll-interval",
        "0.1",
        "--status-interval",
        "0.2",
        "--node-name",
        "test",
    ]
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        procs.append(p)
        return p

    start()
    try:
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(timeout=10)
        # a normal shutdown keeps programs and pins: remove them as a drain would
        dp = Datapath.load(DatapathSettings(pin_root=pin_root, name=f"t-{topology.run_id}"))
        for pod in topology.pods:
            if pod.cgroup.exists():
                dp.detach(pod.cgroup)
        dp.close()
        dp.unpin()


def status(topology: LocalTopology) -> dict[str, object]:
    assert topology.state_dir is not None
    path = topology.state_dir / "status.json"
    return json.loads(path.read_text()) if path.exists() else {}


def test_sigkill_and_restart_loses_nothing(topology: LocalTopology, pin_root: Path, tmp_path: Path) -> None:
    assert topology.state_dir is not None
    (topology.state_dir / "manifests" / "bench.yaml").write_text(splice_yaml())
    client, server = topology.pod("client", "demo"), topology.pod("server", "demo")
    argv_state = tmp_path / "agent"
    with agent_process(topology, pin_root, argv_state) as procs:
        wait_for(lambda: len(status(topology).get("attachedPods", [])) == 2, timeout=60)
        with echo_server(server, PORT):
            clients = start_clients(client, str(server.ipv4), PORT, conns=100, nbytes=2 << 20, seconds=4.0)
            wait_for(lambda: status(topology).get("splicedSockets", 0) == 200, timeout=30)
            procs[0].send_signal(signal.SIGKILL)
            procs[0].wait()
            os.unlink(topology.state_dir / "status.json")
            procs.append(subprocess.Popen(procs[0].args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
            wait_for(lambda: len(status(topology).get("attachedPods", [])) == 2, timeout=60)
            st = status(topology)
            assert st["datapath"]["adopted"] is True  # type: ignore[index]
            result = finish(clients, timeout=180)
            assert result["errors"] == 0 and result["mismatches"] == 0, result
            assert result["bytes_ok"] == 100 * (2 << 20)
            # new connections after the restart are spliced by the new programs
            after_restart = finish(start_clients(client, str(server.ipv4), PORT, conns=2, nbytes=64 << 10))
            assert after_restart["mismatches"] == 0
        dp = Datapath.load(DatapathSettings(pin_root=pin_root, name=f"t-{topology.run_id}"))
        try:
            for pod in topology.pods:
                assert len(dp.attached(pod.cgroup)) == 1  # replaced, never duplicated
            assert dp.totals()["pairs_spliced"] >= 102
        finally:
            dp.close()


def test_deleting_the_socketsplice_stops_new_splicing_and_existing_finish(env: SpliceEnv) -> None:
    env.apply(splice_yaml())
    client, server = env.pod("client"), env.pod("server")
    with echo_server(server, PORT):
        live = start_clients(client, str(server.ipv4), PORT, conns=50, nbytes=1 << 20, seconds=3.0)
        wait_for(lambda: env.datapath.spliced_sockets() == 100, timeout=30)
        env.delete()
        assert env.agent.reconciler.applied == {}
        for pod in env.topology.pods:
            assert env.datapath.attached(pod.cgroup) == []
        before = env.totals()
        fresh = finish(start_clients(client, str(server.ipv4), PORT, conns=2, nbytes=64 << 10))
        mid = env.totals()
        result = finish(live, timeout=120)
    assert fresh["mismatches"] == 0 and fresh["errors"] == 0
    assert mid["pairs_spliced"] == before["pairs_spliced"]  # new connections: plain TCP
    assert result["errors"] == 0 and result["mismatches"] == 0, result
    assert result["bytes_ok"] == 50 * (1 << 20)
    assert env.totals()["bytes_redirected"] > mid["bytes_redirected"]  # existing ones stayed spliced
    wait_for(lambda: env.datapath.spliced_sockets() == 0, timeout=10)  # the kernel removed them on close
