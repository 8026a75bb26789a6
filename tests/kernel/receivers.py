"""Clients with one receive pattern each, for Auto mode tests; runs inside a local pod.

    python receivers.py --host H --port P --pattern blocking|waitall [--conns N] [--rounds R]

Against an echo server (streamcheck.py server): each connection sends R requests of 100 bytes and
reads each echo back, one connection after another, then closes. ``blocking``: a plain blocking
``recv`` loop (it waits for each echo); ``waitall``: one ``recv(100, MSG_WAITALL)`` per echo.
Prints one JSON line: conns, ok (echoes that came back whole), errors (by errno name).
"""

from __future__ import annotations

import argparse
import errno
import json
import socket


def exchange(host: str, port: int, pattern: str, rounds: int) -> int:
    ok = 0
    with socket.create_connection((host, port), timeout=30) as s:
        s.settimeout(None)  # blocking, no SO_RCVTIMEO
        for i in range(rounds):
            payload = bytes([i % 256]) * 100
            s.sendall(payload)
            got = b""
            while len(got) < len(payload):
                if pattern == "waitall":
                    chunk = s.recv(len(payload) - len(got), socket.MSG_WAITALL)
                else:
                    chunk = s.recv(len(payload) - len(got))
                if not chunk:
                    return ok
                got += chunk
            ok += got == payload
        s.shutdown(socket.SHUT_WR)
        while s.recv(4096):
            pass
    return ok


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--pattern", choices=["blocking", "waitall"], required=True)
    p.add_argument("--conns", type=int, default=1)
    p.add_argument("--rounds", type=int, default=20)
    a = p.parse_args()
    ok, errors = 0, {}
    for _ in range(a.conns):
        try:
            ok += exchange(a.host, a.port, a.pattern, a.rounds)
        except OSError as exc:
            name = errno.errorcode.get(exc.errno or 0, str(exc))
            errors[name] = errors.get(name, 0) + 1
    print(json.dumps({"conns": a.conns, "ok": ok, "errors": errors}))


if __name__ == "__main__":
    main()
