"""What the suite compares: each scenario names an in-pod program (``apps.APPS``) and where the
client connects. Pure data; ``running`` realizes it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Address = Literal["pod-ipv4", "pod-ipv6", "ipv4-listener", "service-vip", "loopback-two-pods"]
Suite = Literal["fast", "full"]
Runner = Literal["apps", "programs"]
"""``apps``: the suite's own Python programs; ``programs``: real programs from Debian packages
(``socksplice.tools.conformance.programs``: their servers run until SIGTERM)."""


@dataclass(frozen=True)
class Scenario:
    name: str
    app: str
    """Key of ``apps.APPS``."""
    what: str
    """One line for the table: what the application does."""
    address: Address = "pod-ipv4"
    suite: Suite = "fast"
    runner: Runner = "apps"


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("blocking-echo", "blocking-echo", "blocking send/recv, 4 KiB echo rounds, 1 MiB"),
    Scenario("epoll-echo", "epoll-echo", "both ends non-blocking, driven by epoll, 4 MiB echoed"),
    Scenario("request-response", "request-response", "500 rounds of 100 B request / 100 B response"),
    Scenario(
        "epoll-request-response",
        "epoll-request-response",
        "500 rounds of 100 B request / response, both ends non-blocking with epoll",
    ),
    Scenario("full-duplex", "full-duplex", "writer thread and reader thread on one socket, 8 MiB"),
    Scenario(
        "shutwr-then-read", "shutwr-then-read", "shutdown(SHUT_WR), blocking recv of the reply (100 conns)"
    ),
    Scenario("shutwr-slow-reply", "shutwr-slow-reply", "as above, server replies 50 ms after EOF (20 conns)"),
    Scenario("close-while-blocked", "close-while-blocked", "server closes while client is blocked in recv"),
    Scenario("rst-while-blocked", "rst-while-blocked", "server resets (SO_LINGER 0) while client is in recv"),
    Scenario("close-with-unread", "close-with-unread", "server closes with client bytes unread"),
    Scenario("one-byte-writes", "one-byte-writes", "20,000 one-byte writes"),
    Scenario("8mib-writes", "8mib-writes", "8 MiB writes, 32 MiB in total"),
    Scenario("slow-reader", "slow-reader", "server reads slowly; sender must block, never fail"),
    Scenario(
        "stopped-reader",
        "stopped-reader",
        "server reads nothing for 1.5 s: the sender gets EAGAIN, the backlog stays TCP-sized",
    ),
    Scenario("msg-peek", "msg-peek", "recv(MSG_PEEK) twice, then recv"),
    Scenario("msg-waitall", "msg-waitall", "recv(100000, MSG_WAITALL) while the peer trickles"),
    Scenario("fionread", "fionread", "ioctl(FIONREAD/SIOCINQ) before and after recv"),
    Scenario("so-rcvlowat", "so-rcvlowat", "SO_RCVLOWAT 1000, peer sends 500 + 500"),
    Scenario("so-rcvtimeo", "so-rcvtimeo", "SO_RCVTIMEO 200 ms, no data"),
    Scenario("poll-readiness", "poll-readiness", "poll masks: idle, data, drained, peer half-closed"),
    Scenario("sendfile", "sendfile", "sendfile(2) of a 4 MiB file into the socket"),
    Scenario("splice-to-pipe", "splice-to-pipe", "splice(2) from the socket into a pipe"),
    Scenario("service-vip", "blocking-echo", "echo through a DNAT'ed virtual IP", "service-vip"),
    Scenario("loopback-two-pods", "blocking-echo", "127.0.0.1 in two pods at once", "loopback-two-pods"),
    Scenario("ipv4-client-dual-stack", "blocking-echo", "IPv4 client of a [::] listener", "pod-ipv4"),
    Scenario("ipv4-listener", "blocking-echo", "IPv4 client of a 0.0.0.0 listener", "ipv4-listener"),
    Scenario("ipv6", "blocking-echo", "IPv6 client and listener", "pod-ipv6"),
    Scenario(
        "concurrent-10000",
        "concurrent-10000",
        "10,000 connections open at once, 1 KiB echo each",
        suite="full",
    ),
    Scenario(
        "churn-1000-per-s",
        "churn-1000-per-s",
        "1,000 connections/s for 60 s: connect, echo, close",
        suite="full",
    ),
    Scenario(
        "nginx-wrk",
        "nginx-wrk",
        "nginx, wrk -t2 -c32 -d3s keep-alive, every 16 KiB body checked",
        suite="full",
        runner="programs",
    ),
    Scenario(
        "nginx-curl",
        "nginx-curl",
        "curl against nginx: keep-alive, a byte range, HTTP/1.0; sha256 of each body",
        suite="full",
        runner="programs",
    ),
    Scenario(
        "redis",
        "redis",
        "redis-server: redis-cli 1 B-1 MiB SET/GET, redis-cli --pipe 10,000 keys",
        suite="full",
        runner="programs",
    ),
    Scenario(
        "redis-benchmark",
        "redis-benchmark",
        "redis-server: redis-benchmark -c 20, SET/GET/LPUSH/LPOP",
        suite="full",
        runner="programs",
    ),
    Scenario("iperf3", "iperf3", "iperf3 -t 2 -J, server iperf3 -s -1", suite="full", runner="programs"),
    Scenario(
        "sockperf",
        "sockperf",
        "sockperf ping-pong 2 s, 64 B-16 KiB messages: none dropped, duplicated or reordered",
        suite="full",
        runner="programs",
    ),
)


def port(s: Scenario, base: int) -> int:
    """The port ``s`` listens on: ``base`` + 1 + its place in ``SCENARIOS`` (``base`` for one that is
    not listed), so each scenario is an endpoint of its own: Auto decides per endpoint, and a
    decision (a refusal is final) must not carry over to the next scenario."""
    return base + 1 + SCENARIOS.index(s) if s in SCENARIOS else base


def select(full: bool, names: list[str] | None = None) -> list[Scenario]:
    chosen = [s for s in SCENARIOS if full or s.suite == "fast"]
    if names:
        unknown = set(names) - {s.name for s in SCENARIOS}
        if unknown:
            raise ValueError(f"unknown scenario(s): {', '.join(sorted(unknown))}")
        chosen = [s for s in chosen if s.name in names]
    return chosen
