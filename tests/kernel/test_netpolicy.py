"""A NetworkPolicy change hands live spliced connections back to TCP, where a per-packet filter
(standing in for a CNI that enforces NetworkPolicy per packet) then stops them as it stops plain TCP.

Real netns pods, the real programs and agent; the NetworkPolicy comes through the local source
(``<dir>/networkpolicies/``, as ``socksplice local apply -f`` writes it)."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from socksplice.local import netpolicies
from socksplice.local.topology import LocalTopology
from socksplice.nodeagent.policywatch import LocalPolicies, PolicyWatch
from tests.kernel.splicing import (
    SpliceEnv,
    assert_streams_intact,
    echo_server,
    finish,
    run_clients,
    splice_yaml,
    start_clients,
    wait_for,
)

pytestmark = pytest.mark.kernel

PORT = 9400
DENY_SERVER = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "NetworkPolicy",
    "metadata": {"name": "deny-server", "namespace": "demo"},
    "spec": {"podSelector": {"matchLabels": {"app": "server"}}, "policyTypes": ["Ingress"]},
}


def following(env: SpliceEnv) -> SpliceEnv:
    assert env.topology.state_dir is not None
    env.agent.policy_watch = PolicyWatch(LocalPolicies(env.topology.state_dir), env.datapath)
    return env


def apply_policy(env: SpliceEnv) -> None:
    assert env.topology.state_dir is not None
    netpolicies.write(env.topology.state_dir, [DENY_SERVER], "test")


def tcp_bytes_received(env: SpliceEnv) -> int:
    """Bytes the server pod's sockets received through TCP (``ss``: bytes_received)."""
    out = env.pod("server").run(["ss", "-tinH", "state", "established"], check=True).stdout.decode()
    return sum(int(w.split(":")[1]) for w in out.split() if w.startswith("bytes_received:"))


def delivered(env: SpliceEnv) -> int:
    """Bytes that reached the server pod's sockets either way: redirected, or through TCP."""
    return env.totals()["bytes_redirected"] + tcp_bytes_received(env)


@contextmanager
def dropping(topology: LocalTopology, a: str, b: str) -> Iterator[None]:
    """An iptables rule in the node netns that drops the pair's packets both ways."""
    rule = ["FORWARD", "-s", a, "-d", b, "-j", "DROP"]
    back = ["FORWARD", "-s", b, "-d", a, "-j", "DROP"]
    base = ["ip", "netns", "exec", topology.node_netns, "iptables", "-w"]
    for r in (rule, back):
        subprocess.run([*base, "-I", *r], check=True)
    try:
        yield
    finally:
        for r in (rule, back):
            subprocess.run([*base, "-D", *r], check=False)


def test_a_policy_change_hands_spliced_connections_to_tcp_where_a_packet_filter_stops_them(
    env: SpliceEnv,
) -> None:
    env = following(env)
    env.apply(splice_yaml())
    server, client = env.pod("server"), env.pod("client")
    conns, nbytes = 50, 2 << 20
    with echo_server(server, PORT):
        streams = start_clients(client, str(server.ipv4), PORT, conns=conns, nbytes=nbytes, seconds=12)
        wait_for(lambda: env.totals()["pairs_spliced"] >= conns, timeout=30)
        wait_for(lambda: env.totals()["bytes_redirected"] > 4 << 20, timeout=30)
        apply_policy(env)
        env.agent.step()  # the agent's next poll
        assert env.agent.policy_watch is not None and env.agent.policy_watch.handbacks == 1
        # Every direction sends again within a write interval: each is handed back once.
        wait_for(lambda: env.totals()["policy_handbacks"] >= 2 * conns, timeout=5)
        policy = env.agent.status().policy("demo/bench")
        assert policy is not None and (policy.policy_handbacks or 0) >= 2 * conns, policy
        assert policy.handback_reason == "NetworkPolicy changed: demo/deny-server", policy
        redirected = env.totals()["bytes_redirected"]
        time.sleep(1.0)
        assert env.totals()["bytes_redirected"] == redirected, "bytes still redirected after the handback"
        # Now on TCP, the per-packet filter stops them, as it stops a plain TCP connection.
        with dropping(env.topology, str(client.ipv4), str(server.ipv4)):
            time.sleep(0.3)
            before = delivered(env)
            time.sleep(1.5)
            assert delivered(env) == before, "bytes delivered through the packet filter"
        # The filter lifted, TCP retransmits: every stream completes intact.
        result = finish(streams, timeout=120)
        assert_streams_intact(result, conns, nbytes)
        assert env.totals()["bytes_redirected"] == redirected
        # New connections are admitted by their handshake as ever, and spliced again.
        spliced = env.totals()["pairs_spliced"]
        fresh = run_clients(client, str(server.ipv4), PORT, conns=2, nbytes=64 << 10)
        assert_streams_intact(fresh, 2, 64 << 10)
        assert env.totals()["pairs_spliced"] == spliced + 2
        assert env.totals()["bytes_redirected"] > redirected


def test_auto_a_promoted_endpoints_connections_are_handed_back_and_it_stays_promoted(env: SpliceEnv) -> None:
    """Auto: a handback is not a demotion. Live connections move to TCP; the endpoint keeps its
    verdict, so connections opened after the change are spliced again."""
    from tests.kernel.test_auto import auto_yaml, promoted, verdict

    if env.datapath.observation:
        pytest.skip(f"observation unavailable on this kernel: {env.datapath.observation}")
    env = following(env)
    env.apply(auto_yaml())
    server, client = env.pod("server"), env.pod("client")
    conns, nbytes = 20, 1 << 20
    with echo_server(server, PORT):
        promoted(env)
        streams = start_clients(client, str(server.ipv4), PORT, conns=conns, nbytes=nbytes, seconds=6)
        wait_for(lambda: env.totals()["pairs_spliced"] >= conns, timeout=30)
        wait_for(lambda: env.totals()["bytes_redirected"] > 2 << 20, timeout=30)
        apply_policy(env)
        env.agent.step()
        wait_for(lambda: env.totals()["policy_handbacks"] >= 2 * conns, timeout=5)
        redirected = env.totals()["bytes_redirected"]
        assert_streams_intact(finish(streams), conns, nbytes)
        assert env.totals()["bytes_redirected"] == redirected
        assert verdict(env) == "Spliced"
        fresh = run_clients(client, str(server.ipv4), PORT, conns=2, nbytes=64 << 10)
        assert_streams_intact(fresh, 2, 64 << 10)
        assert env.totals()["bytes_redirected"] > redirected


def test_a_plain_tcp_connection_is_stopped_by_the_same_filter(env: SpliceEnv) -> None:
    """The reference: without socksplice, the same rule stops the same streams."""
    server, client = env.pod("server"), env.pod("client")
    with echo_server(server, PORT):
        streams = start_clients(client, str(server.ipv4), PORT, conns=5, nbytes=1 << 20, seconds=6)
        wait_for(lambda: tcp_bytes_received(env) > 256 << 10, timeout=30)
        with dropping(env.topology, str(client.ipv4), str(server.ipv4)):
            time.sleep(0.3)
            before = tcp_bytes_received(env)
            time.sleep(1.5)
            assert tcp_bytes_received(env) == before
        assert_streams_intact(finish(streams), 5, 1 << 20)


def test_handover_delay_over_1000_connections(env: SpliceEnv) -> None:
    """From writing the NetworkPolicy to each direction's handback, with the agent running its loop
    (poll every 0.5 s): printed as p50/p99 over the 2,000 directions of 1,000 connections."""
    env = following(env)
    env.apply(splice_yaml())
    server, client = env.pod("server"), env.pod("client")
    conns = 1000
    with echo_server(server, PORT):
        streams = start_clients(client, str(server.ipv4), PORT, conns=conns, nbytes=1 << 20, seconds=15)
        wait_for(lambda: env.totals()["pairs_spliced"] >= conns, timeout=60)
        wait_for(lambda: env.totals()["bytes_redirected"] > 64 << 20, timeout=60)
        stop = threading.Event()
        loop = threading.Thread(target=env.agent.run, args=(stop,), daemon=True)
        loop.start()
        time.sleep(0.7)  # the loop's first forced step is done
        slot = env.agent.slots.slot("demo/bench")
        t0, wall0 = time.monotonic(), time.time()
        apply_policy(env)
        seen: list[tuple[float, int, int]] = []  # (since the write, handbacks, bytes redirected)
        while time.monotonic() - t0 < 10:
            values = env.datapath.counters([slot])[slot]
            seen.append((time.monotonic() - t0, values["policy_handbacks"], values["bytes_redirected"]))
            if values["policy_handbacks"] >= 2 * conns:
                break
            time.sleep(0.001)
        stop.set()
        loop.join(timeout=10)
        result = finish(streams, timeout=180)
    assert_streams_intact(result, conns, 1 << 20)
    watch = env.agent.policy_watch
    assert watch is not None and watch.last is not None
    bumped = watch.last.at - wall0
    total = seen[-1][1]
    assert total == 2 * conns, seen[-1]
    last_redirect = next(t for t, _, b in seen if b == seen[-1][2])

    def when(share: float) -> float:
        return next(t for t, n, _ in seen if n >= share * total)

    print(
        f"\nhandover delay over {conns} connections ({total} directions), from the NetworkPolicy "
        f"written: p50 {when(0.5) * 1000:.0f} ms, p99 {when(0.99) * 1000:.0f} ms, all "
        f"{seen[-1][0] * 1000:.0f} ms; epoch bumped at {bumped * 1000:.0f} ms (agent poll 0.5 s), "
        f"first handback {when(1 / total) * 1000:.0f} ms, last byte redirected by "
        f"{last_redirect * 1000:.0f} ms; {len(seen)} samples"
    )
