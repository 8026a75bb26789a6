"""Scenario programs about how a connection ends: half-close and a reply, close or reset while the
peer is blocked in ``recv``, close with unread data. The ones that race the kernel's wakeups run
many connections and count each outcome."""

from __future__ import annotations

import socket
import struct
import time
from collections import Counter
from collections.abc import Callable
from functools import partial

from socksplice.tools.conformance.probing import Trace, outcome, pattern, read_exact, read_to_eof

Connect = Callable[[], socket.socket]
HALF_CLOSE_CONNS = 100
BLOCKED_CONNS = 20
REPLY = pattern(1000, 9)


def serve_reply_after_eof(c: socket.socket) -> Trace:
    data, last = read_to_eof(c)
    c.sendall(REPLY)
    c.close()
    return {"request": len(data), "last": last}


def serve_slow_reply_after_eof(c: socket.socket) -> Trace:
    data, last = read_to_eof(c)
    time.sleep(0.05)
    c.sendall(REPLY)
    c.close()
    return {"request": len(data), "last": last}


def _half_close(connect: Connect, conns: int) -> Trace:
    seen: Counter[str] = Counter()
    for i in range(conns):
        s = connect()
        s.sendall(pattern(100, i))
        s.shutdown(socket.SHUT_WR)
        reply, last = read_to_eof(s)
        s.close()
        seen[f"reply={'ok' if reply == REPLY else len(reply)} end={last}"] += 1
    return dict(sorted(seen.items()))


def client_shutwr_then_read(connect: Connect) -> Trace:
    return _half_close(connect, HALF_CLOSE_CONNS)


def client_shutwr_then_slow_reply(connect: Connect) -> Trace:
    return _half_close(connect, BLOCKED_CONNS)


def serve_close_later(c: socket.socket) -> Trace:
    got = outcome(lambda: c.recv(10))
    time.sleep(0.05)
    c.close()
    return {"recv": got}


def serve_reset_later(c: socket.socket) -> Trace:
    got = outcome(lambda: c.recv(10))
    time.sleep(0.05)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
    return {"recv": got}


def client_blocked_recv(connect: Connect) -> Trace:
    """Blocked in recv when the peer closes (or resets): the first and the next recv."""
    seen: Counter[str] = Counter()
    for _ in range(BLOCKED_CONNS):
        s = connect()
        s.sendall(b"x" * 10)
        first = outcome(partial(s.recv, 100))
        second = outcome(partial(s.recv, 100))
        s.close()
        seen[f"first={first} second={second}"] += 1
    return dict(sorted(seen.items()))


def serve_close_unread(c: socket.socket) -> Trace:
    got, _ = read_exact(c, 10)
    time.sleep(0.1)  # the rest of the client's bytes arrive, unread
    c.close()
    return {"read": len(got)}


def client_close_unread(connect: Connect) -> Trace:
    """The peer closes with our bytes unread: TCP answers with RST, which we see here."""
    seen: Counter[str] = Counter()
    for _ in range(BLOCKED_CONNS):
        s = connect()
        s.sendall(pattern(64 << 10))
        time.sleep(0.2)
        rest, last = read_to_eof(s)
        sent = outcome(partial(s.send, b"after"))
        s.close()
        seen[f"recv_bytes={len(rest)} recv_end={last} send={sent}"] += 1
    return dict(sorted(seen.items()))
