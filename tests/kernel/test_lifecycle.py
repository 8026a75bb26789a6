"""Agent lifecycle with live traffic: SIGKILL and restart, upgrade to a new program build over the
pinned maps, SocketSplice deletion.

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
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from socksplice.bpf.loader import Datapath, DatapathSettings
from socksplice.bpf.programs import PINNED_MAPS
from socksplice.kernel import bpfsys
from socksplice.local.topology import LocalTopology
from socksplice.nodeagent.agent import Agent
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


def prog_info(prog_id: int) -> dict[str, Any]:
    """The kernel's bpf_prog_info of a program as bpftool shows it: id, name and tag (a hash of its
    instructions, so two builds with other bytecode have other tags)."""
    out = subprocess.run(
        ["bpftool", "-j", "prog", "show", "id", str(prog_id)], check=True, capture_output=True, text=True
    ).stdout
    info: dict[str, Any] = json.loads(out)
    return info


def pinned_map_ids(pin_dir: Path) -> dict[str, int]:
    """Kernel ids of the maps pinned in ``pin_dir``: the same ids mean the same map objects."""
    ids = {}
    for name in PINNED_MAPS:
        fd = bpfsys.obj_get(str(pin_dir / name))
        try:
            ids[name] = bpfsys.obj_id(fd)
        finally:
            os.close(fd)
    return ids


def sk_msg_attached(pin_dir: Path) -> list[int]:
    """Ids of the sk_msg programs attached to the pinned SOCKHASH."""
    fd = bpfsys.obj_get(str(pin_dir / "sock_hash"))
    try:
        return bpfsys.prog_query(fd, bpfsys.BPF_SK_MSG_VERDICT)
    finally:
        os.close(fd)


def test_upgrade_replaces_programs_over_pinned_maps_with_live_connections(env: SpliceEnv) -> None:
    """A new program build (another SS_PROGRAM_TAG, so other instructions) adopts the pins while
    CONNS connections run: the new programs are the ones attached, over the same map objects."""
    env.apply(splice_yaml())
    client, server = env.pod("client"), env.pod("server")
    pin_dir = env.settings.datapath.pin_dir
    old = {"sockops": prog_info(env.datapath.sockops_id), "sk_msg": prog_info(env.datapath.sk_msg_id)}
    maps = pinned_map_ids(pin_dir)
    tag = env.settings.datapath.program_tag + 1
    settings = replace(env.settings, datapath=replace(env.settings.datapath, program_tag=tag))
    start = env.totals()
    with echo_server(server, PORT):
        live = start_clients(client, str(server.ipv4), PORT, conns=CONNS, nbytes=NBYTES, seconds=10.0)
        wait_for(lambda: env.datapath.spliced_sockets() == 2 * CONNS, timeout=60)
        new = Datapath.load(settings.datapath)
        try:
            agent = Agent(settings, env.agent.source, new)
            agent.step(force=True)
            assert live.poll() is None  # upgraded in the middle of the transfers
            print(f"upgrade: new programs loaded in {new.load_seconds:.1f}s")
            upgraded = {"sockops": prog_info(new.sockops_id), "sk_msg": prog_info(new.sk_msg_id)}
            for kind in ("sockops", "sk_msg"):
                print(f"upgrade: {kind}: id {old[kind]['id']} tag {old[kind]['tag']}", end=" ")
                print(f"-> id {upgraded[kind]['id']} tag {upgraded[kind]['tag']}")
                assert upgraded[kind]["tag"] != old[kind]["tag"]  # other bytecode, not only another id
            assert new.adopted
            assert pinned_map_ids(pin_dir) == maps  # the very maps the old programs used
            assert new.spliced_sockets() == 2 * CONNS
            for pod in env.topology.pods:
                assert new.attached(pod.cgroup) == [new.sockops_id]
            assert sk_msg_attached(pin_dir) == [new.sk_msg_id]
            before = new.totals()["pairs_spliced"]
            fresh = finish(start_clients(client, str(server.ipv4), PORT, conns=4, nbytes=FRESH_BYTES))
            assert new.totals()["pairs_spliced"] - before == 4  # new connections: the new programs
            result = finish(live, timeout=120)
            print("live:", {k: v for k, v in result.items() if k != "stderr"})
            end = new.totals()
        finally:
            new.close()
    assert_streams_intact(fresh, 4, FRESH_BYTES)
    assert_streams_intact(result, CONNS, NBYTES)
    assert_all_spliced(end, CONNS + 4, CONNS * NBYTES + 4 * FRESH_BYTES, start)
