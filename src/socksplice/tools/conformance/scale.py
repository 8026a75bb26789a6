"""Scenario programs about scale, for the full suite: many concurrent connections, and churn
(connections opened, used once and closed at a steady rate). One epoll loop per side."""

from __future__ import annotations

import resource
import selectors
import socket
import time
from collections import Counter
from collections.abc import Callable

from socksplice.tools.conformance.probing import Trace, error_name, pattern

Connect = Callable[[], socket.socket]
CONCURRENT = 10000
CHURN_RATE = 1000
CHURN_SECONDS = 60
MESSAGE = 1024


def raise_fd_limit(n: int = 65536) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(max(soft, n), hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def echo_loop(ls: socket.socket, conns: int) -> Trace:
    """Accept ``conns`` connections and echo each until its EOF, all in one epoll loop."""
    raise_fd_limit()
    ls.setblocking(False)
    sel = selectors.EpollSelector()
    sel.register(ls, selectors.EVENT_READ)
    accepted = closed = 0
    errors: Counter[str] = Counter()
    while closed < conns:
        for key, _ in sel.select(timeout=60):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if sock is ls:
                try:
                    c, _ = ls.accept()
                except BlockingIOError:
                    continue
                c.setblocking(False)
                sel.register(c, selectors.EVENT_READ)
                accepted += 1
                continue
            try:
                data = sock.recv(65536)
                if data:
                    sock.sendall(data)  # small messages: the send buffer always has room
                    continue
            except OSError as exc:
                errors[error_name(exc)] += 1
            sel.unregister(sock)
            sock.close()
            closed += 1
    sel.close()
    return {"accepted": accepted, "closed": closed, "errors": dict(errors)}


def client_concurrent(connect: Connect) -> Trace:
    """Open CONCURRENT connections, all alive at once; each sends MESSAGE bytes and checks the echo."""
    raise_fd_limit()
    socks = [connect() for _ in range(CONCURRENT)]
    ok, errors = 0, Counter[str]()
    for i, s in enumerate(socks):
        s.sendall(pattern(MESSAGE, i))
    for i, s in enumerate(socks):
        try:
            got = bytearray()
            while len(got) < MESSAGE:
                chunk = s.recv(MESSAGE - len(got))
                if not chunk:
                    break
                got += chunk
            ok += bytes(got) == pattern(MESSAGE, i)
        except OSError as exc:
            errors[error_name(exc)] += 1
    for s in socks:
        s.close()
    return {"conns": CONCURRENT, "echo_ok": ok, "errors": dict(errors)}


def client_churn(connect: Connect) -> Trace:
    """CHURN_RATE connections per second for CHURN_SECONDS: connect, one echo, close."""
    ok, errors = 0, Counter[str]()
    total = CHURN_RATE * CHURN_SECONDS
    start = time.monotonic()
    for i in range(total):
        delay = start + i / CHURN_RATE - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        try:
            with connect() as s:
                s.sendall(pattern(100, i))
                ok += s.recv(100) == pattern(100, i)
        except OSError as exc:
            errors[error_name(exc)] += 1
    return {"conns": total, "echo_ok": ok, "errors": dict(errors)}
