"""Scenario programs about receive options and readiness: MSG_PEEK, MSG_WAITALL, FIONREAD,
SO_RCVLOWAT, SO_RCVTIMEO, and poll(2) masks through data, EOF and the peer's half-close."""

from __future__ import annotations

import fcntl
import socket
import struct
import termios
import time
from collections.abc import Callable

from socksplice.tools.conformance.probing import Trace, outcome, poll_mask, read_to_eof

Connect = Callable[[], socket.socket]


def _inq(s: socket.socket) -> int:
    raw = fcntl.ioctl(s.fileno(), termios.FIONREAD, b"\0\0\0\0")
    return int(struct.unpack("i", raw)[0])


def _finish(s: socket.socket) -> None:
    s.shutdown(socket.SHUT_WR)
    read_to_eof(s)
    s.close()


def _drain_and_close(c: socket.socket) -> None:
    read_to_eof(c)
    c.close()


def serve_hello(c: socket.socket) -> Trace:
    c.sendall(b"hello world")
    _drain_and_close(c)
    return {}


def client_peek(connect: Connect) -> Trace:
    s = connect()
    ready = poll_mask(s, 5000)
    first = s.recv(5, socket.MSG_PEEK)
    again = s.recv(5, socket.MSG_PEEK)
    whole = s.recv(100)
    _finish(s)
    return {"poll": ready, "peek": first.decode(), "peek_again": again.decode(), "recv": whole.decode()}


def serve_trickle(c: socket.socket) -> Trace:
    for i in range(10):
        c.sendall(bytes([i]) * 10000)
        time.sleep(0.02)
    _drain_and_close(c)
    return {}


def client_waitall(connect: Connect) -> Trace:
    s = connect()
    got = s.recv(100000, socket.MSG_WAITALL)
    _finish(s)
    return {"waitall_returned": len(got)}


def serve_3000(c: socket.socket) -> Trace:
    c.sendall(b"z" * 3000)
    _drain_and_close(c)
    return {}


def client_fionread(connect: Connect) -> Trace:
    s = connect()
    poll_mask(s, 5000)
    deadline = time.monotonic() + 2.0
    inq = _inq(s)
    while inq < 3000 and time.monotonic() < deadline:
        time.sleep(0.01)
        inq = _inq(s)
    got = len(s.recv(3000))
    after = _inq(s)
    _finish(s)
    return {"fionread": inq, "recv": got, "fionread_after": after}


def serve_two_halves(c: socket.socket) -> Trace:
    c.sendall(b"a" * 500)
    time.sleep(0.1)
    c.sendall(b"b" * 500)
    _drain_and_close(c)
    return {}


def client_rcvlowat(connect: Connect) -> Trace:
    s = connect()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1000)
    got = len(s.recv(2000))
    _finish(s)
    return {"recv_with_lowat_1000": got}


def serve_silent(c: socket.socket) -> Trace:
    _drain_and_close(c)
    return {}


def client_rcvtimeo(connect: Connect) -> Trace:
    s = connect()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 200000))
    first = outcome(lambda: s.recv(100))
    _finish(s)
    return {"recv": first}


def serve_readiness(c: socket.socket) -> Trace:
    go = c.recv(10)
    c.sendall(b"d" * 100)
    go2 = c.recv(10)
    c.shutdown(socket.SHUT_WR)
    _drain_and_close(c)
    return {"go": len(go), "go2": len(go2)}


def client_readiness(connect: Connect) -> Trace:
    s = connect()
    trace: Trace = {"idle": poll_mask(s, 0)}
    s.sendall(b"go")
    trace["data"] = poll_mask(s, 5000)
    trace["recv"] = len(s.recv(1000))
    trace["drained"] = poll_mask(s, 0)
    s.sendall(b"go2")
    trace["peer_shut"] = poll_mask(s, 5000)
    trace["eof"] = outcome(lambda: s.recv(100))
    _finish(s)
    return trace
