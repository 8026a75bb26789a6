"""Agent lifecycle with live traffic: SIGKILL and restart, SocketSplice deletion.

Each event happens while CONNS connections (2 * CONNS spliced sockets) are in the middle of
NBYTES-long verified streams: every byte must arrive intact, in order, on every connection, and
every connection must finish within a bound."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from socksplice.bpf.loader import Datapath, DatapathSettings
from socksplice.local.topology import LocalTopology
from tests.kernel.splicing import (
    FRESH_BYTES,
    LIVE_BYTES,
    LIVE_CONNS,
    SpliceEnv,
    assert_all_spliced,
    assert_streams_intact,
    echo_server,
    finish,
    splice_yaml,
    start_clients,
    wait_for,
)

pytestmark = pytest.mark.kernel

PORT = 9400
CONNS = LIVE_CONNS
NBYTES = LIVE_BYTES


def spawn_agent(argv: list[str], topology: LocalTopology) -> subprocess.Popen[bytes]:
    """The agent's log goes to a file (a pipe nobody reads would block a chatty agent)."""
    assert topology.state_dir is not None
    with open(topology.state_dir / "agent.log", "ab") as log:
        return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log)


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
        p = spawn_agent(argv, topology)
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
        wait_for(lambda: status(topology).get("attachedPods", 0) == 2, timeout=60)
        with echo_server(server, PORT):
            live = start_clients(client, str(server.ipv4), PORT, conns=CONNS, nbytes=NBYTES, seconds=10.0)
            wait_for(lambda: status(topology).get("splicedSockets", 0) == 2 * CONNS, timeout=60)
            killed = time.monotonic()
            procs[0].send_signal(signal.SIGKILL)
            procs[0].wait()
            assert live.poll() is None  # the agent died in the middle of the transfers
            os.unlink(topology.state_dir / "status.json")
            procs.append(spawn_agent(list(procs[0].args), topology))  # type: ignore[arg-type]
            wait_for(lambda: status(topology).get("attachedPods", 0) == 2, timeout=60)
            print(f"restart: agent back after {time.monotonic() - killed:.1f}s")
            st = status(topology)
            assert st["datapath"]["adopted"] is True  # type: ignore[index]
            assert st["splicedSockets"] == 2 * CONNS  # the new agent adopted every spliced socket
            assert live.poll() is None  # ... and came back while they were still running
            result = finish(live, timeout=120)
            print("live:", {k: v for k, v in result.items() if k != "stderr"})
            assert_streams_intact(result, CONNS, NBYTES)
            # new connections after the restart are spliced by the new programs
            after_restart = finish(start_clients(client, str(server.ipv4), PORT, conns=2, nbytes=FRESH_BYTES))
            assert_streams_intact(after_restart, 2, FRESH_BYTES)
        dp = Datapath.load(DatapathSettings(pin_root=pin_root, name=f"t-{topology.run_id}"))
        try:
            for pod in topology.pods:
                assert len(dp.attached(pod.cgroup)) == 1  # replaced, never duplicated
            totals = dp.totals()
            wait_for(lambda: dp.spliced_sockets() == 0, timeout=10)  # the kernel removed them on close
        finally:
            dp.close()
    # every connection was spliced, and every byte of both directions went through the splice
    assert_all_spliced(totals, CONNS + 2, CONNS * NBYTES + 2 * FRESH_BYTES)


def test_deleting_the_socketsplice_stops_new_splicing_and_existing_finish(env: SpliceEnv) -> None:
    env.apply(splice_yaml())
    client, server = env.pod("client"), env.pod("server")
    start = env.totals()
    with echo_server(server, PORT):
        live = start_clients(client, str(server.ipv4), PORT, conns=CONNS, nbytes=NBYTES, seconds=6.0)
        wait_for(lambda: env.datapath.spliced_sockets() == 2 * CONNS, timeout=60)
        env.delete()
        assert live.poll() is None  # deleted in the middle of the transfers
        assert env.agent.reconciler.applied == {}
        for pod in env.topology.pods:
            assert env.datapath.attached(pod.cgroup) == []
        before = env.totals()
        fresh = finish(start_clients(client, str(server.ipv4), PORT, conns=2, nbytes=FRESH_BYTES))
        mid = env.totals()
        assert env.datapath.spliced_sockets() == 2 * CONNS  # the fresh ones never entered
        result = finish(live, timeout=120)
        print("live:", {k: v for k, v in result.items() if k != "stderr"})
    end = env.totals()
    assert_streams_intact(fresh, 2, FRESH_BYTES)
    assert mid["pairs_spliced"] == before["pairs_spliced"]  # new connections: plain TCP
    assert mid["sockets_added"] == before["sockets_added"]
    assert_streams_intact(result, CONNS, NBYTES)
    # every live connection was spliced, and stayed spliced to the end: every byte, both ways
    assert_all_spliced(end, CONNS, CONNS * NBYTES, start)
    wait_for(lambda: env.datapath.spliced_sockets() == 0, timeout=10)  # the kernel removed them on close
