"""Uninstall and upgrade with live traffic: drain (detach, wait for spliced sockets to close,
unpin, report), and a new program version over the pinned maps."""

from __future__ import annotations

from dataclasses import replace

import pytest

from socksplice.bpf.loader import Datapath
from socksplice.nodeagent.agent import Agent
from socksplice.nodeagent.draining import DrainSettings, drain
from tests.kernel.splicing import SpliceEnv, echo_server, finish, splice_yaml, start_clients, wait_for

pytestmark = pytest.mark.kernel

PORT = 9400


def test_drain_waits_for_live_connections_then_unpins(env: SpliceEnv) -> None:
    env.apply(splice_yaml())
    client, server = env.pod("client"), env.pod("server")
    with echo_server(server, PORT):
        live = start_clients(client, str(server.ipv4), PORT, conns=50, nbytes=1 << 20, seconds=3.0)
        wait_for(lambda: env.datapath.spliced_sockets() == 100, timeout=30)
        report = drain(env.datapath, env.agent.reconciler, settings=DrainSettings(timeout=120, interval=0.1))
        result = finish(live, timeout=120)
    assert result["errors"] == 0 and result["mismatches"] == 0, result
    assert result["bytes_ok"] == 50 * (1 << 20)
    assert report.complete, report.to_dict()
    assert report.spliced_at_start == 100 and report.spliced_left == 0
    assert sorted(report.detached) == ["demo/client", "demo/server"]
    for pod in env.topology.pods:
        assert env.datapath.attached(pod.cgroup) == []
    assert "sock_hash" in report.unpinned
    assert not env.settings.datapath.pin_dir.exists()


def test_drain_timeout_reports_what_was_left_and_leftovers_finish_intact(env: SpliceEnv) -> None:
    env.apply(splice_yaml())
    client, server = env.pod("client"), env.pod("server")
    with echo_server(server, PORT):
        live = start_clients(client, str(server.ipv4), PORT, conns=20, nbytes=1 << 20, seconds=4.0)
        wait_for(lambda: env.datapath.spliced_sockets() == 40, timeout=30)
        report = drain(env.datapath, env.agent.reconciler, settings=DrainSettings(timeout=0.0))
        result = finish(live, timeout=120)
    assert not report.complete
    assert report.spliced_left == 40
    assert not env.settings.datapath.pin_dir.exists()
    # unpinned while spliced: those connections still finish with every byte, in order
    assert result["errors"] == 0 and result["mismatches"] == 0, result
    assert result["bytes_ok"] == 20 * (1 << 20)


def test_upgrade_replaces_programs_over_pinned_maps_with_live_connections(env: SpliceEnv) -> None:
    """A new program build (another SS_PROGRAM_TAG) adopts the pins while 200 connections run."""
    env.apply(splice_yaml())
    client, server = env.pod("client"), env.pod("server")
    old_ids = (env.datapath.sockops_id, env.datapath.sk_msg_id)
    settings = replace(env.settings, datapath=replace(env.settings.datapath, program_tag=2))
    with echo_server(server, PORT):
        live = start_clients(client, str(server.ipv4), PORT, conns=200, nbytes=1 << 20, seconds=3.0)
        wait_for(lambda: env.datapath.spliced_sockets() == 400, timeout=60)
        new = Datapath.load(settings.datapath)
        try:
            agent = Agent(settings, env.agent.source, new)
            agent.step(force=True)
            assert new.adopted
            assert (new.sockops_id, new.sk_msg_id) != old_ids
            for pod in env.topology.pods:
                assert new.attached(pod.cgroup) == [new.sockops_id]
            before = new.totals()["pairs_spliced"]
            fresh = finish(start_clients(client, str(server.ipv4), PORT, conns=4, nbytes=64 << 10))
            assert new.totals()["pairs_spliced"] - before == 4  # new connections: the new programs
            result = finish(live, timeout=180)
        finally:
            new.close()
    assert fresh["errors"] == 0 and fresh["mismatches"] == 0, fresh
    assert result["errors"] == 0 and result["mismatches"] == 0, result
    assert result["bytes_ok"] == 200 * (1 << 20)
