"""Verified one-way streams into readers that read slowly; runs inside a local pod.

    python slowsink.py server --port P --conns N --bytes B --rate R [--bind ADDR]
    python slowsink.py client --host H --port P --conns N --bytes B

The client opens N connections at once and, in one epoll loop with non-blocking sockets, writes
B bytes into each (stream ``i`` is a window of a shared random pool, as in streamcheck.py), after
an 8-byte header carrying ``i``; then it closes. It counts every send error by errno name (the
point: a sender into a slow reader must block or get EAGAIN, never ENOMEM) and prints one JSON
line: conns, connected, finished, errors ({errno name: count}), elapsed.

The server accepts N connections and reads each at most R bytes per second (a token bucket per
connection, one epoll loop), comparing every byte with what stream ``i`` must carry. It prints
one JSON line when all N ended: conns, finished, bytes_ok, mismatches, errors.
"""

from __future__ import annotations

import argparse
import errno
import json
import selectors
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from streamcheck import STRIDE, listener, raise_nofile, stream_pool

WRITE = 65536
READ = 65536
TICK = 0.01


class Reader:
    __slots__ = ("expected", "header", "index", "ok", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.header = b""
        self.index = -1
        self.ok = 0  # bytes verified so far
        self.expected = memoryview(b"")


def serve(port: int, bind: str, conns: int, nbytes: int, rate: float) -> None:
    raise_nofile(conns + 64)
    pool = memoryview(stream_pool(conns, nbytes))
    ls, sel = listener(port, bind, 1024)
    print("READY", flush=True)
    readers: list[Reader] = []
    finished = bytes_ok = mismatches = errors = accepted = 0
    budget_per_tick = max(1, int(rate * TICK))
    while finished < conns:
        tick_end = time.monotonic() + TICK
        for key, _ in sel.select(timeout=TICK):
            if key.data is None:
                while accepted < conns:
                    try:
                        c, _ = ls.accept()
                    except BlockingIOError:
                        break
                    c.setblocking(False)
                    readers.append(Reader(c))
                    accepted += 1
        for r in list(readers):
            budget = budget_per_tick
            try:
                while budget > 0:
                    want = 8 - len(r.header) if r.index < 0 else min(READ, budget)
                    data = r.sock.recv(want)
                    if not data:
                        if r.index < 0 or r.ok != nbytes:
                            mismatches += 1
                        else:
                            bytes_ok += r.ok
                        raise EOFError
                    if r.index < 0:
                        r.header += data
                        if len(r.header) == 8:
                            r.index = int.from_bytes(r.header, "big")
                            r.expected = pool[r.index * STRIDE : r.index * STRIDE + nbytes]
                        continue
                    budget -= len(data)
                    if r.ok + len(data) > nbytes or r.expected[r.ok : r.ok + len(data)] != data:
                        mismatches += 1
                        raise EOFError
                    r.ok += len(data)
            except BlockingIOError:
                continue
            except (EOFError, OSError) as exc:
                if isinstance(exc, OSError):
                    errors += 1
                readers.remove(r)
                r.sock.close()
                finished += 1
        time.sleep(max(0.0, tick_end - time.monotonic()))
    result = {
        "conns": conns,
        "finished": finished,
        "bytes_ok": bytes_ok,
        "mismatches": mismatches,
        "errors": errors,
    }
    print(json.dumps(result), flush=True)


def client(host: str, port: int, conns: int, nbytes: int) -> None:
    raise_nofile(conns + 64)
    pool = memoryview(stream_pool(conns, nbytes))
    sel = selectors.DefaultSelector()
    errors: dict[str, int] = {}
    start = time.monotonic()
    connected = 0
    pending: dict[socket.socket, memoryview] = {}
    for i in range(conns):
        s = socket.create_connection((host, port))
        connected += 1
        s.setblocking(False)
        stream = i.to_bytes(8, "big") + bytes(pool[i * STRIDE : i * STRIDE + nbytes])
        pending[s] = memoryview(stream)
        sel.register(s, selectors.EVENT_WRITE)
    finished = 0
    while pending:
        for key, _ in sel.select(timeout=1.0):
            s = key.fileobj
            assert isinstance(s, socket.socket)
            left = pending[s]
            try:
                sent = s.send(left[:WRITE])
            except BlockingIOError:
                continue
            except OSError as exc:
                name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
                errors[name] = errors.get(name, 0) + 1
                sent = len(left)
                print(f"client: send: {exc!r}", file=sys.stderr, flush=True)
            if sent < len(left):
                pending[s] = left[sent:]
                continue
            del pending[s]
            sel.unregister(s)
            s.close()
            finished += 1
    result = {
        "conns": conns,
        "connected": connected,
        "finished": finished,
        "errors": errors,
        "elapsed": round(time.monotonic() - start, 3),
    }
    print(json.dumps(result), flush=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("role", choices=["server", "client"])
    p.add_argument("--host", default="")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--bind", default="::")
    p.add_argument("--conns", type=int, required=True)
    p.add_argument("--bytes", type=int, required=True)
    p.add_argument("--rate", type=float, default=8 << 20, help="bytes per second each reader takes")
    a = p.parse_args()
    if a.role == "server":
        serve(a.port, a.bind, a.conns, a.bytes, a.rate)
    else:
        client(a.host, a.port, a.conns, a.bytes)


if __name__ == "__main__":
    main()
