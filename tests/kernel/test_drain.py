"""Uninstall with live traffic: drain (detach, wait for spliced sockets to close, unpin, report).

Each event happens while CONNS connections (2 * CONNS spliced sockets) are in the middle of
NBYTES-long verified streams: every byte must arrive intact, in order, on every connection, and
every connection must finish within a bound."""

from __future__ import annotations

import errno
import os

import pytest

from socksplice.bpf.programs import PINNED_MAPS
from socksplice.errors import KernelError
from socksplice.kernel import bpfsys
from socksplice.nodeagent.draining import DrainSettings, drain
from tests.kernel.splicing import (
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

BPF_PROG_GET_FD_BY_ID = 13
BPF_MAP_GET_FD_BY_ID = 14


def exists(cmd: int, obj_id: int) -> bool:
    """Whether the kernel still has the program or map with this id (held by anything at all)."""
    try:
        fd = bpfsys.call(cmd, bpfsys.pack_attr("=I", obj_id), "get fd by id")
    except KernelError as exc:
        if exc.errno == errno.ENOENT:
            return False
        raise
    os.close(fd)
    return True


def kernel_objects(env: SpliceEnv) -> list[tuple[int, int]]:
    """(get-fd-by-id command, id) of the data path's two programs and every pinned map."""
    dp = env.datapath
    objects = [(BPF_PROG_GET_FD_BY_ID, dp.sockops_id), (BPF_PROG_GET_FD_BY_ID, dp.sk_msg_id)]
    for name in PINNED_MAPS:
        fd = bpfsys.obj_get(str(env.settings.datapath.pin_dir / name))
        try:
            objects.append((BPF_MAP_GET_FD_BY_ID, bpfsys.obj_id(fd)))
        finally:
            os.close(fd)
    return objects


def test_drain_waits_for_live_connections_then_unpins(env: SpliceEnv) -> None:
    env.apply(splice_yaml())
    client, server = env.pod("client"), env.pod("server")
    objects = kernel_objects(env)
    start = env.totals()
    with echo_server(server, PORT):
        live = start_clients(client, str(server.ipv4), PORT, conns=CONNS, nbytes=NBYTES, seconds=6.0)
        wait_for(lambda: env.datapath.spliced_sockets() == 2 * CONNS, timeout=60)
        assert live.poll() is None  # the drain starts in the middle of the transfers
        report = drain(env.datapath, env.agent.reconciler, settings=DrainSettings(timeout=120, interval=0.1))
        result = finish(live, timeout=120)
        print("live:", {k: v for k, v in result.items() if k != "stderr"})
    print("drain:", report.to_dict())
    assert_streams_intact(result, CONNS, NBYTES)
    assert_all_spliced(env.totals(), CONNS, CONNS * NBYTES, start)
    assert report.complete, report.to_dict()
    assert report.spliced_at_start == 2 * CONNS and report.spliced_left == 0
    assert report.waited_seconds > 0.5  # it waited for the live connections to close
    assert sorted(report.detached) == ["demo/client", "demo/server"]
    for pod in env.topology.pods:
        assert env.datapath.attached(pod.cgroup) == []
    assert sorted(report.unpinned) == sorted(PINNED_MAPS)
    assert not (env.settings.datapath.pin_root / env.settings.datapath.name).exists()
    # once the agent lets go of its fds (drain_node closes the data path), nothing is left at all
    env.datapath.close()
    wait_for(lambda: not any(exists(cmd, i) for cmd, i in objects), timeout=10)


def test_drain_timeout_reports_what_was_left_and_leftovers_finish_intact(env: SpliceEnv) -> None:
    env.apply(splice_yaml())
    client, server = env.pod("client"), env.pod("server")
    objects = kernel_objects(env)
    start = env.totals()
    with echo_server(server, PORT):
        live = start_clients(client, str(server.ipv4), PORT, conns=CONNS, nbytes=NBYTES, seconds=6.0)
        wait_for(lambda: env.datapath.spliced_sockets() == 2 * CONNS, timeout=60)
        report = drain(env.datapath, env.agent.reconciler, settings=DrainSettings(timeout=0.0))
        assert live.poll() is None  # drained and unpinned in the middle of the transfers
        result = finish(live, timeout=120)
        print("live:", {k: v for k, v in result.items() if k != "stderr"})
    print("drain:", report.to_dict())
    assert not report.complete
    assert report.spliced_at_start == 2 * CONNS and report.spliced_left == 2 * CONNS
    assert sorted(report.detached) == ["demo/client", "demo/server"]
    assert sorted(report.unpinned) == sorted(PINNED_MAPS)
    assert not env.settings.datapath.pin_dir.exists()
    # unpinned while spliced: those connections still finish with every byte, in order, spliced
    assert_streams_intact(result, CONNS, NBYTES)
    assert_all_spliced(env.totals(), CONNS, CONNS * NBYTES, start)
    wait_for(lambda: env.datapath.spliced_sockets() == 0, timeout=10)  # the kernel removed them on close
    env.datapath.close()
    wait_for(lambda: not any(exists(cmd, i) for cmd, i in objects), timeout=10)
