"""Network namespace identity as BPF sees it.

``bpf_get_netns_cookie`` in sockops returns a 64-bit cookie per network namespace; user space
reads the same value with ``getsockopt(SO_NETNS_COOKIE)`` on a socket created inside it. A pod's
cookie is how the BPF programs find that pod's configuration.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import socket
import struct
import threading
from pathlib import Path

from socksplice.errors import KernelError, KernelUnsupported

SO_NETNS_COOKIE = 71
CLONE_NEWNET = 0x40000000


def _cookie_here() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            raw = s.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8)
        except OSError as exc:
            raise KernelUnsupported(
                f"SO_NETNS_COOKIE: not supported by this kernel ({exc.strerror}); "
                "Linux 5.14 or newer is needed"
            ) from exc
    return int(struct.unpack("=Q", raw)[0])


def cookie(netns_path: Path | None = None) -> int:
    """The netns cookie of ``netns_path`` (``/run/netns/X`` or ``/proc/PID/ns/net``), or of our own.

    Enters the namespace in a short-lived thread (setns is per thread), so the caller's
    namespace never changes.
    """
    if netns_path is None:
        return _cookie_here()
    result: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            fd = os.open(netns_path, os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise KernelError(f"netns {netns_path}: setns failed: {os.strerror(err)}", err)
            finally:
                os.close(fd)
            result.append(_cookie_here())
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=worker, name="netns-cookie")
    t.start()
    t.join()
    if errors:
        exc = errors[0]
        if isinstance(exc, OSError):
            raise KernelError(f"netns {netns_path}: {exc.strerror}", exc.errno) from exc
        raise exc
    return result[0]
