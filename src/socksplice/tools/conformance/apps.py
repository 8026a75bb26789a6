"""The program each scenario runs inside a pod (``python -m socksplice.tools.conformance.apps``).

    apps.py APP server --port P [--bind ADDR] --conns N   prints READY, serves N connections, prints a trace
    apps.py APP client --host H --port P                  runs the client, prints a trace

A trace is one JSON line; server traces of identical connections are counted, not listed, so
that accept order does not matter.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from socksplice.tools.conformance import closing, options, scale, streams
from socksplice.tools.conformance.probing import Trace

ServerFn = Callable[[socket.socket], Trace]
ClientFn = Callable[[Callable[[], socket.socket]], Trace]
LoopFn = Callable[[socket.socket, int], Trace]


def _per_connection(c: socket.socket) -> Trace:
    raise AssertionError("served by the app's loop")


@dataclass(frozen=True)
class App:
    server: ServerFn
    client: ClientFn
    conns: int = 1
    """Connections the client opens (the server accepts exactly that many)."""
    loop: LoopFn | None = None
    """Serves every connection itself (one epoll loop) instead of a thread per connection."""


APPS: dict[str, App] = {
    "blocking-echo": App(streams.serve_echo, streams.client_blocking_echo),
    "epoll-echo": App(streams.serve_epoll_echo, streams.client_epoll_echo),
    "request-response": App(streams.serve_echo, streams.client_request_response),
    "epoll-request-response": App(streams.serve_epoll_echo, streams.client_epoll_request_response),
    "full-duplex": App(streams.serve_echo, streams.client_full_duplex),
    "one-byte-writes": App(streams.serve_sink, streams.client_one_byte_writes),
    "8mib-writes": App(streams.serve_sink, streams.client_big_writes),
    "slow-reader": App(streams.serve_slow_sink, streams.client_slow_reader),
    "stopped-reader": App(streams.serve_stopped_reader, streams.client_stopped_reader),
    "sendfile": App(streams.serve_sink, streams.client_sendfile),
    "splice-to-pipe": App(streams.serve_splice_to_pipe, streams.client_to_splice),
    "shutwr-then-read": App(
        closing.serve_reply_after_eof, closing.client_shutwr_then_read, closing.HALF_CLOSE_CONNS
    ),
    "shutwr-slow-reply": App(
        closing.serve_slow_reply_after_eof, closing.client_shutwr_then_slow_reply, closing.BLOCKED_CONNS
    ),
    "close-while-blocked": App(closing.serve_close_later, closing.client_blocked_recv, closing.BLOCKED_CONNS),
    "rst-while-blocked": App(closing.serve_reset_later, closing.client_blocked_recv, closing.BLOCKED_CONNS),
    "close-with-unread": App(closing.serve_close_unread, closing.client_close_unread, closing.BLOCKED_CONNS),
    "msg-peek": App(options.serve_hello, options.client_peek),
    "msg-waitall": App(options.serve_trickle, options.client_waitall),
    "fionread": App(options.serve_3000, options.client_fionread),
    "so-rcvlowat": App(options.serve_two_halves, options.client_rcvlowat),
    "so-rcvtimeo": App(options.serve_silent, options.client_rcvtimeo),
    "poll-readiness": App(options.serve_readiness, options.client_readiness),
    "concurrent-10000": App(_per_connection, scale.client_concurrent, scale.CONCURRENT, scale.echo_loop),
    "churn-1000-per-s": App(
        _per_connection, scale.client_churn, scale.CHURN_RATE * scale.CHURN_SECONDS, scale.echo_loop
    ),
}


def serve(app: App, port: int, bind: str, conns: int) -> Trace:
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    ls = socket.socket(family, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        ls.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    ls.bind((bind, port))
    ls.listen(65535)
    print("READY", flush=True)
    if app.loop is not None:
        return app.loop(ls, conns)
    seen: Counter[str] = Counter()
    lock = threading.Lock()

    def handle(c: socket.socket) -> None:
        try:
            trace = app.server(c)
        except OSError as exc:
            trace = {"error": type(exc).__name__}
        with lock:
            seen[json.dumps(trace, sort_keys=True)] += 1

    threads = []
    for _ in range(conns):
        c, _ = ls.accept()
        t = threading.Thread(target=handle, args=(c,))
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    ls.close()
    return dict(sorted(seen.items()))


def connector(host: str, port: int) -> Callable[[], socket.socket]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET

    def connect() -> socket.socket:
        s = socket.socket(family, socket.SOCK_STREAM)
        s.connect((host, port))
        return s

    return connect


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="socksplice.tools.conformance.apps")
    p.add_argument("app", choices=sorted(APPS))
    p.add_argument("role", choices=["server", "client"])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--bind", default="::")
    a = p.parse_args(argv)
    app = APPS[a.app]
    if a.role == "server":
        trace = serve(app, a.port, a.bind, app.conns)
    else:
        trace = app.client(connector(a.host, a.port))
    print(json.dumps(trace, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
