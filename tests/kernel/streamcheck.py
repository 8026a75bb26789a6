"""Sequence-checked TCP streams for data path tests; runs inside a local pod.

    python streamcheck.py server --port P [--bind ADDR]
    python streamcheck.py client --host H --port P --conns N --bytes B [--seconds S] [--bind-port Q]
                                 [--timeout T]

Both ends are one thread each around an epoll loop (``selectors``) with non-blocking sockets, so
thousands of connections need no threads; the open-file limit is raised to what they need.

The client opens N connections at once; each sends B bytes of its own stream in random-sized
writes (1 B to 64 KiB, each a separate ``send``) starting right after the handshake, and verifies
the echo byte by byte as it arrives. Stream ``i`` is a window of a shared random pool starting at
``i * STRIDE`` (a prime), so no two streams are alike at the same offset and a misplaced, dropped,
duplicated or reordered byte shows. With --seconds the writes of each connection are spread over
that many seconds (long-lived connections for restart and policy-change tests). A connection not
finished when --timeout seconds have passed (default: S + 120) is counted as stuck and the client
stops. Prints one JSON line: conns, connected, finished, stuck, bytes_ok, mismatches, errors,
elapsed (seconds). ``finished`` counts connections that ended in any way (verified, mismatch or
error); ``bytes_ok`` only bytes of streams that arrived complete and identical.

The server echoes each connection with non-blocking I/O (it stops reading a connection while an
echo is pending, so a slow client slows only its own stream) and closes it after the client's EOF
once everything is echoed.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import heapq
import json
import random
import resource
import selectors
import socket
import sys
import time

STRIDE = 4099
"""Offset between consecutive streams in the pool (prime: never a multiple of a write size)."""
MAX_WRITE = 65536
READ_SIZE = 1 << 18
REPORT = 3
"""How many errors, mismatches and stuck connections are described on stderr."""


def raise_nofile(need: int) -> None:
    """Raise RLIMIT_NOFILE so that ``need`` descriptors fit (the soft default is often 1024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return
    if hard == resource.RLIM_INFINITY or hard >= need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
        return
    try:  # raising the hard limit needs CAP_SYS_RESOURCE
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        print(f"open files limited to {hard} (hard limit), {need} wanted", file=sys.stderr, flush=True)


def stream_pool(conns: int, nbytes: int) -> bytes:
    return random.Random(0x5EED).randbytes(nbytes + conns * STRIDE)


def note(counts: dict[str, int], kind: str, message: str) -> None:
    counts[kind] += 1
    if counts[kind] <= REPORT:
        print(message, file=sys.stderr, flush=True)


# --- server ----------------------------------------------------------------------------------


class Echo:
    __slots__ = ("pending", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.pending = memoryview(b"")


def listener(port: int, bind: str, backlog: int = 4096) -> tuple[socket.socket, selectors.BaseSelector]:
    """A non-blocking listener (dual-stack for an IPv6 address) registered in a new selector."""
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    ls = socket.socket(family, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        ls.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    ls.bind((bind, port))
    ls.listen(backlog)
    ls.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(ls, selectors.EVENT_READ, None)
    return ls, sel


def serve(port: int, bind: str) -> None:
    raise_nofile(1 << 14)
    ls, sel = listener(port, bind)
    counts = {"errors": 0}
    print("READY", flush=True)

    def close(e: Echo) -> None:
        sel.unregister(e.sock)
        e.sock.close()

    while True:
        for key, _ in sel.select():
            e: Echo | None = key.data
            if e is None:
                while True:
                    try:
                        c, _ = ls.accept()
                    except BlockingIOError:
                        break
                    c.setblocking(False)
                    sel.register(c, selectors.EVENT_READ, Echo(c))
                continue
            try:
                if e.pending:
                    e.pending = e.pending[e.sock.send(e.pending) :]
                    if not e.pending:
                        sel.modify(e.sock, selectors.EVENT_READ, e)
                    continue
                data = e.sock.recv(READ_SIZE)
                if not data:  # the client's EOF, and everything was echoed: close
                    close(e)
                    continue
                try:
                    sent = e.sock.send(data)
                except BlockingIOError:
                    sent = 0
                if sent < len(data):
                    e.pending = memoryview(data)[sent:]
                    sel.modify(e.sock, selectors.EVENT_WRITE, e)
            except BlockingIOError:
                continue  # a wakeup without data (tcp_bpf may do that): poll again
            except OSError as exc:
                note(counts, "errors", f"server: {exc!r}")
                close(e)


# --- client ----------------------------------------------------------------------------------


class Stream:
    __slots__ = ("chunk_end", "due", "events", "i", "off", "received", "rng", "sent", "sock", "started")

    def __init__(self, i: int, sock: socket.socket) -> None:
        self.i = i
        self.sock = sock
        self.off = i * STRIDE
        self.rng = random.Random(-i - 1)
        self.sent = 0
        self.chunk_end = 0  # the write in progress ends here (a send may take part of it)
        self.received = 0
        self.started = 0.0  # when the handshake completed (0: connecting)
        self.due = 0.0  # when the paced next write may start (0: now)
        self.events = selectors.EVENT_WRITE

    def describe(self) -> str:
        state = "connecting" if not self.started else "open"
        return f"conn {self.i}: {state}, sent {self.sent}, received {self.received}"


def client(
    host: str, port: int, conns: int, nbytes: int, seconds: float, bind_port: int, timeout: float
) -> dict[str, float]:
    raise_nofile(conns + 64)
    pool = stream_pool(conns, nbytes)
    view = memoryview(pool)
    counts = {"connected": 0, "finished": 0, "stuck": 0, "bytes_ok": 0, "mismatches": 0, "errors": 0}
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sel = selectors.DefaultSelector()
    timers: list[tuple[float, int, Stream]] = []  # paced streams waiting for their next write
    open_streams: set[Stream] = set()
    begin = time.monotonic()
    deadline = begin + timeout

    def end(s: Stream, kind: str | None = None, message: str = "") -> None:
        if kind is not None:
            note(counts, kind, f"{s.describe()}: {message}")
        elif s.received == nbytes:
            counts["bytes_ok"] += nbytes
        else:
            note(counts, "mismatches", f"{s.describe()}: EOF after {s.received} of {nbytes} bytes")
        counts["finished"] += 1
        open_streams.discard(s)
        sel.unregister(s.sock)
        s.sock.close()

    def want(s: Stream, events: int) -> None:
        if events != s.events:
            s.events = events
            sel.modify(s.sock, events, s)

    def write(s: Stream, now: float) -> None:
        """Send what is due: unpaced, one write per call (the loop comes back while writable)."""
        while True:
            if s.sent == s.chunk_end:  # start the next write
                s.chunk_end = s.sent + min(nbytes - s.sent, s.rng.randint(1, MAX_WRITE))
                if seconds:
                    s.due = s.started + seconds * s.sent / nbytes
            if s.due > now:
                heapq.heappush(timers, (s.due, s.i, s))
                want(s, selectors.EVENT_READ)
                return
            with contextlib.suppress(BlockingIOError):
                s.sent += s.sock.send(view[s.off + s.sent : s.off + s.chunk_end])
            if s.sent == nbytes:
                s.sock.shutdown(socket.SHUT_WR)
                want(s, selectors.EVENT_READ)
                return
            if s.sent < s.chunk_end or not seconds:
                want(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
                return

    def read(s: Stream) -> None:
        try:
            data = s.sock.recv(READ_SIZE)
        except BlockingIOError:
            return  # a wakeup without data (tcp_bpf may do that): poll again
        if not data:
            end(s)
            return
        start = s.off + s.received
        if s.received + len(data) > nbytes or data != pool[start : start + len(data)]:
            end(s, "mismatches", f"{len(data)} bytes at offset {s.received} differ from what was sent")
            return
        s.received += len(data)

    for i in range(conns):
        sock = socket.socket(family, socket.SOCK_STREAM)
        s = Stream(i, sock)
        try:
            sock.setblocking(False)
            if bind_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(("", bind_port))
            rc = sock.connect_ex((host, port))
            if rc not in (0, errno.EINPROGRESS):
                raise OSError(rc, f"connect: {errno.errorcode.get(rc, rc)}")
        except OSError as exc:
            note(counts, "errors", f"{s.describe()}: {exc!r}")
            counts["finished"] += 1
            sock.close()
            continue
        sel.register(sock, selectors.EVENT_WRITE, s)
        open_streams.add(s)

    while open_streams:
        now = time.monotonic()
        if now >= deadline:
            break
        wait = deadline - now
        if timers:
            wait = min(wait, max(0.0, timers[0][0] - now))
        for key, mask in sel.select(wait):
            s = key.data
            try:
                if not s.started:
                    err = s.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        raise OSError(err, f"connect: {errno.errorcode.get(err, err)}")
                    s.started = time.monotonic()
                    counts["connected"] += 1
                    write(s, s.started)
                    continue
                if mask & selectors.EVENT_READ:
                    read(s)
                if s in open_streams and mask & selectors.EVENT_WRITE:
                    write(s, time.monotonic())
            except OSError as exc:
                if s in open_streams:
                    end(s, "errors", repr(exc))
        now = time.monotonic()
        while timers and timers[0][0] <= now:
            _, _, s = heapq.heappop(timers)
            if s in open_streams:
                try:
                    write(s, now)
                except OSError as exc:
                    end(s, "errors", repr(exc))

    for s in sorted(open_streams, key=lambda s: s.i):
        note(counts, "stuck", f"{s.describe()}: not finished after {timeout}s")
        s.sock.close()
    return {"conns": conns, **counts, "elapsed": round(time.monotonic() - begin, 3)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("role", choices=["server", "client"])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--bind", default="::")
    p.add_argument("--conns", type=int, default=1)
    p.add_argument("--bytes", type=int, default=1 << 20)
    p.add_argument("--seconds", type=float, default=0.0)
    p.add_argument("--bind-port", type=int, default=0)
    p.add_argument("--timeout", type=float, default=None, help="default: --seconds + 120")
    a = p.parse_args()
    if a.role == "server":
        serve(a.port, a.bind)
    else:
        timeout = a.seconds + 120 if a.timeout is None else a.timeout
        result = client(a.host, a.port, a.conns, a.bytes, a.seconds, a.bind_port, timeout)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
