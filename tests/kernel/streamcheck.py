"""Sequence-checked TCP streams for data path tests; runs inside a local pod.

    python streamcheck.py server --port P [--bind ADDR]
    python streamcheck.py client --host H --port P --conns N --bytes B [--seconds S] [--bind-port Q]

The client opens N connections at once; each sends B bytes of a stream seeded by its index in
random-sized writes starting right after connect(), while a reader thread verifies the echo byte
by byte. With --seconds the writes are spread over that many seconds (long-lived connections for
restart and policy-change tests). Prints one JSON line: conns, bytes_ok, mismatches, errors.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import sys
import threading
import time


def stream_bytes(seed: int, n: int) -> bytes:
    return random.Random(seed).randbytes(n)


def serve(port: int, bind: str) -> None:
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    ls = socket.socket(family, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        ls.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    ls.bind((bind, port))
    ls.listen(4096)
    print("READY", flush=True)

    def echo(c: socket.socket) -> None:
        with c:
            while True:
                data = c.recv(65536)
                if not data:
                    break
                c.sendall(data)

    while True:
        c, _ = ls.accept()
        threading.Thread(target=echo, args=(c,), daemon=True).start()


def client(host: str, port: int, conns: int, nbytes: int, seconds: float, bind_port: int) -> dict[str, int]:
    results = {"conns": conns, "bytes_ok": 0, "mismatches": 0, "errors": 0}
    lock = threading.Lock()
    start = threading.Barrier(conns)

    def one(i: int) -> None:
        data = stream_bytes(i + 1, nbytes)
        rng = random.Random(-i - 1)
        try:
            s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
            if bind_port:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("", bind_port))
            start.wait(timeout=60)
            s.connect((host, port))
            s.settimeout(120)

            def writer() -> None:
                off = 0
                pause = seconds / max(1, nbytes // 32768) if seconds else 0.0
                while off < nbytes:
                    n = min(nbytes - off, rng.randint(1, 65536))
                    s.sendall(data[off : off + n])
                    off += n
                    if pause:
                        time.sleep(pause * n / 32768)
                s.shutdown(socket.SHUT_WR)

            w = threading.Thread(target=writer)
            w.start()
            got = bytearray()
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
            w.join()
            s.close()
            with lock:
                if bytes(got) == data:
                    results["bytes_ok"] += len(got)
                else:
                    results["mismatches"] += 1
        except Exception as exc:  # counted, and the first few reported
            with lock:
                results["errors"] += 1
                if results["errors"] <= 3:
                    print(f"conn {i}: {exc!r}", file=sys.stderr)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


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
    a = p.parse_args()
    if a.role == "server":
        serve(a.port, a.bind)
    else:
        print(json.dumps(client(a.host, a.port, a.conns, a.bytes, a.seconds, a.bind_port)), flush=True)


if __name__ == "__main__":
    main()
