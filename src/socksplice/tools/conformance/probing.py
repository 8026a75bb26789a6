"""Helpers for the in-pod programs: record each call's outcome the way an application sees it.

A trace is a JSON object. Calls record their return value or the errno's name, never timings, so
that a plain and a spliced run of the same scenario produce equal traces when the application
could not tell them apart.
"""

from __future__ import annotations

import errno
import hashlib
import select
import socket
from collections.abc import Callable
from typing import Any

Trace = dict[str, Any]
CHUNK = 65536


def error_name(exc: OSError) -> str:
    """``ECONNRESET`` etc.; a socket timeout is the EAGAIN the kernel returned."""
    if isinstance(exc, TimeoutError) and exc.errno is None:
        return "EAGAIN(timeout)"
    return errno.errorcode.get(exc.errno or 0, str(exc.errno))


def outcome(fn: Callable[[], Any]) -> Any:
    """The call's return value (bytes as their length), or the errno's name for an OSError."""
    try:
        value = fn()
    except OSError as exc:
        return error_name(exc)
    if isinstance(value, bytes | bytearray):
        return len(value)
    return value


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def pattern(n: int, seed: int = 0) -> bytes:
    """``n`` bytes whose order matters (a counter stream), cheap to build."""
    block = bytes((i * 7 + seed) & 0xFF for i in range(251))
    return (block * (n // 251 + 1))[:n]


def read_to_eof(s: socket.socket, limit: int = 1 << 30) -> tuple[bytes, Any]:
    """Read until EOF or an error; returns the bytes and the final call's outcome (0 or an errno)."""
    got = bytearray()
    while len(got) < limit:
        try:
            chunk = s.recv(CHUNK)
        except OSError as exc:
            return bytes(got), error_name(exc)
        if not chunk:
            return bytes(got), 0
        got += chunk
    return bytes(got), "limit"


def read_exact(s: socket.socket, n: int) -> tuple[bytes, Any]:
    got = bytearray()
    while len(got) < n:
        try:
            chunk = s.recv(min(CHUNK, n - len(got)))
        except OSError as exc:
            return bytes(got), error_name(exc)
        if not chunk:
            return bytes(got), 0
        got += chunk
    return bytes(got), "ok"


POLL_NAMES = (
    (select.POLLIN, "IN"),
    (select.POLLOUT, "OUT"),
    (select.POLLERR, "ERR"),
    (select.POLLHUP, "HUP"),
    (select.POLLRDHUP, "RDHUP"),
)


def poll_mask(s: socket.socket, timeout_ms: int, events: int | None = None) -> str:
    """The readiness poll(2) reports, as names (``IN|RDHUP``), or ``-`` when none within the timeout."""
    p = select.poll()
    p.register(s, events if events is not None else select.POLLIN | select.POLLRDHUP)
    ready = p.poll(timeout_ms)
    if not ready:
        return "-"
    mask = ready[0][1]
    return "|".join(name for bit, name in POLL_NAMES if mask & bit) or str(mask)
