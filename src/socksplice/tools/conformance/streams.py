"""Scenario programs about byte streams: echo, request/response, duplex, write sizes, slow readers,
sendfile and splice(2). Each pair is a server handler (one accepted connection) and a client."""

from __future__ import annotations

import contextlib
import os
import select
import selectors
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from socksplice.tools.conformance.probing import (
    CHUNK,
    Trace,
    digest,
    outcome,
    pattern,
    poll_mask,
    read_exact,
    read_to_eof,
)

Connect = Callable[[], socket.socket]


def serve_echo(c: socket.socket) -> Trace:
    total = 0
    while True:
        data = c.recv(CHUNK)
        if not data:
            break
        total += len(data)
        c.sendall(data)
    c.close()
    return {"echoed": total}


def _expect(c: socket.socket) -> int:
    """Length prefix of a sized transfer: the client never half-closes, so the reply and EOF are
    independent of the shutdown(SHUT_WR) hazard (that one has its own scenarios)."""
    header, _ = read_exact(c, 8)
    return int.from_bytes(header, "big") if len(header) == 8 else 0


def _reply_and_close(c: socket.socket, n: int) -> Any:
    c.sendall(str(n).encode().rjust(12))
    _, last = read_to_eof(c)
    c.close()
    return last


def serve_sink(c: socket.socket) -> Trace:
    data, status = read_exact(c, _expect(c))
    last = _reply_and_close(c, len(data))
    return {"bytes": len(data), "digest": digest(data), "status": status, "eof": last}


def serve_slow_sink(c: socket.socket) -> Trace:
    want = _expect(c)
    got = bytearray()
    while len(got) < want:
        chunk = c.recv(min(CHUNK, want - len(got)))
        if not chunk:
            break
        got += chunk
        time.sleep(0.002)
    last = _reply_and_close(c, len(got))
    return {"bytes": len(got), "digest": digest(bytes(got)), "eof": last}


def client_blocking_echo(connect: Connect) -> Trace:
    """Blocking send/recv rounds. The client closes without a half-close: half-close followed by
    a blocking read is the hazard with its own scenarios (closing.py)."""
    s = connect()
    data = pattern(1 << 20)
    out = bytearray()
    for off in range(0, len(data), 4096):
        s.sendall(data[off : off + 4096])
        part, _ = read_exact(s, 4096)
        out += part
    s.close()
    return {"echo_ok": bytes(out) == data}


def client_epoll_echo(connect: Connect) -> Trace:
    """Non-blocking I/O driven by epoll; EAGAIN is a normal answer here and is not recorded."""
    s = connect()
    s.setblocking(False)
    data = pattern(4 << 20, 3)
    sel = selectors.EpollSelector()
    sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
    sent, got, eof = 0, bytearray(), False
    while not eof:
        for _, events in sel.select(timeout=10):
            if events & selectors.EVENT_WRITE and sent < len(data):
                with contextlib.suppress(BlockingIOError):
                    sent += s.send(data[sent : sent + CHUNK])
                if sent == len(data):
                    s.shutdown(socket.SHUT_WR)
                    sel.modify(s, selectors.EVENT_READ)
            if events & selectors.EVENT_READ:
                try:
                    chunk = s.recv(CHUNK)
                except BlockingIOError:
                    continue
                if not chunk:
                    eof = True
                got += chunk
    sel.close()
    s.close()
    return {"sent": sent, "echo_ok": bytes(got) == data}


def serve_epoll_echo(c: socket.socket) -> Trace:
    """Echo with non-blocking I/O driven by epoll, so no receive of this end ever waits for data
    (Auto accepts such an endpoint). Reads pause while 256 KiB wait to be sent back."""
    c.setblocking(False)
    sel = selectors.EpollSelector()
    sel.register(c, selectors.EVENT_READ)
    pending, total, eof = bytearray(), 0, False
    while not eof or pending:
        ready = sel.select(timeout=EPOLL_IDLE)
        if not ready:
            break  # the peer went silent: give up like a server with an idle timeout
        for _, events in ready:
            if events & selectors.EVENT_READ:
                with contextlib.suppress(BlockingIOError):
                    chunk = c.recv(CHUNK)
                    eof = not chunk
                    total += len(chunk)
                    pending += chunk
            if pending:
                with contextlib.suppress(BlockingIOError):
                    del pending[: c.send(pending)]
        want = (selectors.EVENT_READ if not eof and len(pending) < 4 * CHUNK else 0) | (
            selectors.EVENT_WRITE if pending else 0
        )
        if want:
            sel.modify(c, want)
    sel.close()
    c.close()
    return {"echoed": total}


EPOLL_IDLE = 10.0
"""Seconds an epoll program waits for its peer before it gives up."""
ROUNDS = 500


def _send_nonblocking(s: socket.socket, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[s.send(view) :]
        except BlockingIOError:
            select.select([], [s], [], EPOLL_IDLE)


def client_epoll_request_response(connect: Connect) -> Trace:
    """Request/response rounds on a non-blocking socket: epoll says when the response is there."""
    s = connect()
    s.setblocking(False)
    sel = selectors.EpollSelector()
    sel.register(s, selectors.EVENT_READ)
    bad, done = 0, 0
    for i in range(ROUNDS):
        req = pattern(100, i)
        _send_nonblocking(s, req)
        resp = bytearray()
        while len(resp) < len(req) and sel.select(timeout=EPOLL_IDLE):
            try:
                chunk = s.recv(len(req) - len(resp))
            except BlockingIOError:
                continue
            if not chunk:
                break
            resp += chunk
        if len(resp) < len(req):
            break
        bad += resp != req
        done += 1
    sel.close()
    s.close()
    return {"rounds": done, "bad": bad}


def client_request_response(connect: Connect) -> Trace:
    s = connect()
    bad = 0
    for i in range(500):
        req = pattern(100, i)
        s.sendall(req)
        resp, _ = read_exact(s, 100)
        bad += resp != req
    s.close()
    return {"rounds": 500, "bad": bad}


def client_full_duplex(connect: Connect) -> Trace:
    """A writer thread and a reader thread on one blocking socket (no half-close, see above)."""
    s = connect()
    data = pattern(8 << 20, 5)
    result: Trace = {}

    def writer() -> None:
        result["write"] = outcome(lambda: s.sendall(data))

    w = threading.Thread(target=writer)
    w.start()
    got, status = read_exact(s, len(data))
    w.join()
    s.close()
    result.update(echo_ok=got == data, received=len(got), status=status)
    return result


def _sized(connect: Connect, data: bytes, send: Callable[[socket.socket], int]) -> Trace:
    s = connect()
    s.sendall(len(data).to_bytes(8, "big"))
    sent = send(s)
    reply, status = read_exact(s, 12)
    s.close()
    return {"sent": sent, "reply": reply.decode().strip(), "status": status}


def _send_writes(connect: Connect, data: bytes, size: int) -> Trace:
    def send(s: socket.socket) -> int:
        for off in range(0, len(data), size):
            s.sendall(data[off : off + size])
        return len(data)

    return _sized(connect, data, send)


def client_one_byte_writes(connect: Connect) -> Trace:
    return _send_writes(connect, pattern(20000, 1), 1)


def client_big_writes(connect: Connect) -> Trace:
    return _send_writes(connect, pattern(32 << 20, 2), 8 << 20)


def client_slow_reader(connect: Connect) -> Trace:
    """The server reads slowly: sendall must block, never fail or lose bytes."""
    return _send_writes(connect, pattern(8 << 20, 4), 1 << 20)


STOPPED_READER_BYTES = 64 << 20
"""What the stopped-reader client offers: far more than TCP ever buffers for one connection."""
STOPPED_READER_PAUSE = 1.5
"""Seconds the stopped reader reads nothing."""
STOPPED_READER_BACKLOG = 8 << 20
"""The most a stopped reader may be left holding: TCP holds about its receive buffer (128 KiB by
default), a spliced receiver at most its backpressure limit (4 MiB by default); without a limit
the whole 64 MiB would be queued."""
SO_MEMINFO = 55
_MEMINFO_RMEM_ALLOC = 0


def unread_backlog(c: socket.socket) -> int:
    """Bytes the kernel holds for this socket's reader: ``SO_MEMINFO``'s ``sk_rmem_alloc``, which
    counts redirected bytes as well as TCP's (``sk_rcvbuf`` is no bound: the kernel raises it
    towards ``sk_rmem_alloc`` when TCP bytes arrive behind a spliced backlog)."""
    raw = c.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, 9 * 4)
    return int.from_bytes(raw[_MEMINFO_RMEM_ALLOC * 4 : _MEMINFO_RMEM_ALLOC * 4 + 4], "little")


def serve_stopped_reader(c: socket.socket) -> Trace:
    """Reads nothing for a while, measures what the kernel holds for it, then reads everything.
    TCP holds about the receive buffer (its window closes); a spliced socket is held to its
    backpressure limit."""
    want = _expect(c)
    time.sleep(STOPPED_READER_PAUSE)
    backlog = unread_backlog(c)
    data, status = read_exact(c, want)
    last = _reply_and_close(c, len(data))
    return {
        "bytes": len(data),
        "digest": digest(data),
        "status": status,
        "eof": last,
        "backlog_at_most_8mib": backlog <= STOPPED_READER_BACKLOG,
    }


def client_stopped_reader(connect: Connect) -> Trace:
    """Non-blocking writes into a reader that stopped: TCP answers EAGAIN once its buffers are
    full, long before 64 MiB; then the rest goes with blocking writes."""
    data = pattern(STOPPED_READER_BYTES, 9)

    def send(s: socket.socket) -> int:
        s.setblocking(False)
        sent, eagain = 0, False
        deadline = time.monotonic() + STOPPED_READER_PAUSE / 2
        while sent < len(data) and time.monotonic() < deadline:
            try:
                sent += s.send(data[sent : sent + CHUNK])
            except BlockingIOError:
                eagain = True
                break
        s.setblocking(True)
        s.sendall(data[sent:])
        results["eagain_before_64mib"] = eagain
        return len(data)

    results: dict[str, Any] = {}
    trace = _sized(connect, data, send)
    return {**trace, **results}


def client_sendfile(connect: Connect) -> Trace:
    data = pattern(4 << 20, 6)
    with tempfile.TemporaryFile() as f:
        f.write(data)
        f.flush()

        def send(s: socket.socket) -> int:
            sent = 0
            while sent < len(data):
                n = os.sendfile(s.fileno(), f.fileno(), sent, len(data) - sent)
                if n == 0:
                    break
                sent += n
            return sent

        return {**_sized(connect, data, send), "digest": digest(data)}


def serve_splice_to_pipe(c: socket.socket) -> Trace:
    """splice(2) from the socket into a pipe until EOF; no progress for 5 s is recorded as a stall."""
    want = _expect(c)
    c.setblocking(False)  # tcp_splice_read blocks on the socket unless the socket is non-blocking
    r, w = os.pipe()
    got = bytearray()
    end = "complete"
    last_progress = time.monotonic()
    try:
        while len(got) < want:
            if poll_mask(c, 5000) == "-":
                end = "stalled"
                break
            try:
                n = os.splice(c.fileno(), w, min(CHUNK, want - len(got)), flags=os.SPLICE_F_NONBLOCK)
            except BlockingIOError:
                if time.monotonic() - last_progress > 5.0:
                    end = "stalled"
                    break
                time.sleep(0.001)
                continue
            if n == 0:
                end = "eof"
                break
            last_progress = time.monotonic()
            got += os.read(r, n)
    finally:
        os.close(r)
        os.close(w)
    c.setblocking(True)
    _reply_and_close(c, len(got))
    return {"bytes": len(got), "digest": digest(bytes(got)), "end": end}


def client_to_splice(connect: Connect) -> Trace:
    return _send_writes(connect, pattern(1 << 20, 7), 65536)
