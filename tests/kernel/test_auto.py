"""Auto mode on real pods: endpoints are audited on TCP, promoted when their receive pattern is one
tcp_bpf serves identically, refused (demoted) when it is not, and a demoted endpoint's live
connections move to TCP with no byte lost or reordered."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from socksplice.api.nodestatus import EndpointStatus
from socksplice.local.topology import LocalTopology
from tests.kernel.splicing import (
    SpliceEnv,
    echo_server,
    finish,
    run_clients,
    splice_env,
    splice_yaml,
    start_clients,
    wait_for,
)

pytestmark = pytest.mark.kernel

RECEIVERS = Path(__file__).with_name("receivers.py")
AUTO = """\
  auto:
    evidenceWindow: {connections: 2, seconds: 1}
    minMessagesPerConnection: 2
"""
PORT = 9400


def auto_yaml() -> str:
    return splice_yaml(mode="Auto") + AUTO


def endpoints(env: SpliceEnv) -> list[EndpointStatus]:
    env.agent.step()
    return [e for e in env.agent.deciding.endpoints if e.port == PORT]


def port_evidence(env: SpliceEnv) -> list[dict[str, int]]:
    """The data path's evidence counters of the endpoints of PORT."""
    return [counts for key, counts in env.datapath.evidence().items() if key[2] == PORT]


def verdict(env: SpliceEnv) -> str:
    found = endpoints(env)
    assert len(found) == 1, found
    return found[0].verdict


def receivers(env: SpliceEnv, pattern: str, conns: int = 3) -> dict[str, object]:
    out = env.pod("client").run(
        [
            sys.executable,
            str(RECEIVERS),
            "--host",
            str(env.pod("server").ipv4),
            "--port",
            str(PORT),
            "--pattern",
            pattern,
            "--conns",
            str(conns),
        ],
        timeout=120,
        check=True,
    )
    return json.loads(out.stdout)


def audit_passes(env: SpliceEnv, *, conns: int, nbytes: int) -> None:
    """Two passes of echo clients, each followed by the evidence window's second."""
    server = env.pod("server")
    for _ in range(2):
        result = run_clients(env.pod("client"), str(server.ipv4), PORT, conns=conns, nbytes=nbytes)
        assert result["mismatches"] == 0 and result["finished"] == conns, result
        time.sleep(1.1)


def promoted(env: SpliceEnv) -> None:
    """Audit an epoll echo endpoint over its window, then wait for its promotion."""
    server = env.pod("server")
    result = run_clients(env.pod("client"), str(server.ipv4), PORT, conns=4, nbytes=256 << 10)
    assert result["mismatches"] == 0 and result["finished"] == 4
    assert env.totals()["bytes_redirected"] == 0  # audit: on TCP
    assert verdict(env) == "Audit", endpoints(env)
    time.sleep(1.1)
    wait_for(lambda: verdict(env) == "Spliced", timeout=10)


def test_an_epoll_endpoint_is_audited_on_tcp_then_promoted_and_spliced(env: SpliceEnv) -> None:
    """Also in the kernel matrix: where the kernel cannot observe (before 6.4: no
    sock:sock_recv_length), Auto behaves as DryRun, with the reason."""
    env.apply(auto_yaml())
    server = env.pod("server")
    if env.datapath.observation:
        with echo_server(server, PORT):
            audit_passes(env, conns=4, nbytes=64 << 10)
            [e] = endpoints(env)
        assert e.verdict == "Audit" and "observation unavailable" in e.reason, e
        assert env.totals()["bytes_redirected"] == 0
        assert env.agent.status().observation == env.datapath.observation
        return
    with echo_server(server, PORT):
        promoted(env)
        result = run_clients(env.pod("client"), str(server.ipv4), PORT, conns=4, nbytes=256 << 10)
        assert result["mismatches"] == 0 and result["bytes_ok"] == 4 * (256 << 10)
        assert env.totals()["bytes_redirected"] == 2 * 4 * (256 << 10)
        [e] = endpoints(env)
        assert e.would_differ == {} and e.did_differ == {}
        assert e.connections == 8 and e.spliced_connections == 4
    status = env.agent.status()
    [policy] = status.policies
    assert (policy.endpoints_spliced, policy.endpoints_demoted) == (1, 0)


@pytest.fixture
def observing(env: SpliceEnv) -> SpliceEnv:
    if env.datapath.observation:
        pytest.skip(f"observation unavailable on this kernel: {env.datapath.observation}")
    return env


def test_a_blocking_reader_that_waits_is_refused(observing: SpliceEnv) -> None:
    env = observing
    env.apply(auto_yaml())
    with echo_server(env.pod("server"), PORT):
        result = receivers(env, "blocking", conns=3)
        assert result["ok"] == 3 * 20 and result["errors"] == {}
        wait_for(lambda: verdict(env) == "Demoted")
        [e] = endpoints(env)
        assert e.would_differ.get("blocking_receive", 0) > 0, e
        assert "blocking" in e.reason
        [before] = port_evidence(env)
        time.sleep(1.1)
        receivers(env, "blocking", conns=3)
        assert verdict(env) == "Demoted"  # sticky: never promoted again
        # A Demoted endpoint's new connections are not watched: counted, nothing else.
        [after] = port_evidence(env)
        assert after["unwatched_connections"] == before["unwatched_connections"] + 3, after
        assert {k: after[k] for k in ("connections", "receives", "would_blocking_receive")} == {
            k: before[k] for k in ("connections", "receives", "would_blocking_receive")
        }
        [e] = endpoints(env)
        assert e.connections == after["connections"] + after["unwatched_connections"]
    assert env.totals()["bytes_redirected"] == 0


def test_short_connections_are_sampled_on_tcp(observing: SpliceEnv) -> None:
    """An endpoint whose connections are too short to gain stays on TCP with one new connection
    in 16 watched; every connection still delivers all its bytes."""
    env = observing
    env.apply(
        splice_yaml(mode="Auto")
        + AUTO.replace("minMessagesPerConnection: 2", "minMessagesPerConnection: 1000")
    )
    server = env.pod("server")
    with echo_server(server, PORT):
        audit_passes(env, conns=2, nbytes=4 << 10)
        wait_for(lambda: "1 in 16 new connections watched" in endpoints(env)[0].reason, timeout=10)
        [before] = port_evidence(env)
        result = run_clients(env.pod("client"), str(server.ipv4), PORT, conns=64, nbytes=4 << 10)
        assert result["mismatches"] == 0 and result["bytes_ok"] == 64 * (4 << 10), result
        [after] = port_evidence(env)
    unwatched = after["unwatched_connections"] - before["unwatched_connections"]
    watched = after["connections"] - before["connections"]
    assert unwatched + watched == 64 and 40 <= unwatched < 64, (watched, unwatched)
    [e] = endpoints(env)
    assert e.verdict == "Audit" and e.connections == after["connections"] + after["unwatched_connections"]
    assert env.totals()["bytes_redirected"] == 0


def test_msg_waitall_is_refused(observing: SpliceEnv) -> None:
    env = observing
    env.apply(auto_yaml())
    with echo_server(env.pod("server"), PORT):
        receivers(env, "waitall", conns=3)
        wait_for(lambda: verdict(env) == "Demoted")
        [e] = endpoints(env)
        assert e.would_differ.get("waitall", 0) > 0, e
    assert env.totals()["bytes_redirected"] == 0


def test_a_demoted_endpoints_live_connections_move_to_tcp_losing_nothing(observing: SpliceEnv) -> None:
    """1,000 concurrent checksummed streams of a promoted endpoint; a MSG_WAITALL receive on another
    spliced connection of the same endpoint demotes it mid-stream."""
    env = observing
    env.apply(auto_yaml())
    server = env.pod("server")
    with echo_server(server, PORT):
        promoted(env)
        before = env.totals()["bytes_redirected"]
        streams = start_clients(
            env.pod("client"), str(server.ipv4), PORT, conns=1000, nbytes=64 << 10, seconds=6
        )
        wait_for(lambda: env.totals()["bytes_redirected"] > before + (1 << 20), timeout=30)
        receivers(env, "waitall", conns=1)
        wait_for(lambda: verdict(env) == "Demoted", timeout=10)
        result = finish(streams)
    assert result["connected"] == 1000 and result["stuck"] == 0 and result["errors"] == 0, result
    assert result["mismatches"] == 0 and result["bytes_ok"] == 1000 * (64 << 10), result
    totals = env.totals()
    assert totals["fallback_demoted"] > 0, totals
    assert totals["bytes_redirected"] > before


def test_without_observation_auto_behaves_as_dryrun(
    topology: LocalTopology, pin_root: Path, tmp_path: Path
) -> None:
    """Observation turned off (as on a kernel without the tracepoints): every endpoint stays in Audit
    with the reason, nothing is spliced, and the node says why."""
    with splice_env(topology, pin_root, tmp_path / "agent", observe=False) as env:
        assert env.datapath.observation == "observation is turned off"
        env.apply(auto_yaml())
        server = env.pod("server")
        with echo_server(server, PORT):
            audit_passes(env, conns=2, nbytes=64 << 10)
            [e] = endpoints(env)
        assert e.verdict == "Audit" and e.reason.startswith("observation unavailable"), e
        assert env.totals()["bytes_redirected"] == 0
        assert env.agent.status().observation == "observation is turned off"
