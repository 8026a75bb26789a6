"""Self-test for the blocking-EAGAIN hazard of sockets under tcp_bpf (docs/hazards.md).

Both ends of a loopback TCP connection (in this process's network namespace) go into a private
SOCKHASH whose sk_msg program redirects every send into the peer's receive queue, as socksplice
does. The client sends a request, shuts down its write side and blocks in ``recv``; the server
replies 50 ms after EOF, so the ACK of the client's FIN arrives first. On a kernel whose
``tcp_bpf_recvmsg`` waits only once (``tcp_msg_wait_data``), that wakeup returns ``EAGAIN`` from
the blocking ``recv``. Nothing is pinned or attached to a cgroup; everything is released after.
"""

from __future__ import annotations

import ctypes
import errno
import socket
import threading
import time
from typing import Any

from socksplice.bpf import headers
from socksplice.errors import SockspliceError
from socksplice.kernel import bpfsys

TRIES = 10
REPLY_DELAY = 0.05

PROGRAM = b"""
#include <uapi/linux/bpf.h>
BPF_SOCKHASH(hz_hash, u64, 16);
int hz_sk_msg(struct sk_msg_md *msg)
{
    u64 peer = bpf_ntohl(msg->remote_port);
    if (hz_hash.msg_redirect_hash(msg, &peer, BPF_F_INGRESS) != SK_PASS)
        return SK_PASS;
    return SK_PASS;
}
"""


def _insert(lib: Any, map_fd: int, port: int, sock: socket.socket) -> None:
    key, value = ctypes.c_uint64(port), ctypes.c_uint32(sock.fileno())
    if lib.bpf_update_elem(map_fd, ctypes.byref(key), ctypes.byref(value), 0) != 0:
        raise OSError(ctypes.get_errno(), f"sockhash update for port {port}")


def _one(lib: Any, map_fd: int, listener: socket.socket) -> str:
    client = socket.create_connection(listener.getsockname()[:2])
    server, _ = listener.accept()
    try:
        _insert(lib, map_fd, server.getsockname()[1], server)
        _insert(lib, map_fd, client.getsockname()[1], client)

        def serve() -> None:
            while server.recv(4096):
                pass
            time.sleep(REPLY_DELAY)
            server.sendall(b"reply")
            server.close()

        t = threading.Thread(target=serve)
        t.start()
        client.sendall(b"request")
        client.shutdown(socket.SHUT_WR)
        try:
            got = client.recv(100)
            result = "ok" if got == b"reply" else f"short:{len(got)}"
        except BlockingIOError:
            result = "EAGAIN"
        except OSError as exc:
            result = errno.errorcode.get(exc.errno or 0, str(exc))
        t.join()
        return result
    finally:
        client.close()
        server.close()


def blocking_eagain() -> dict[str, object]:
    """Run the self-test; the result is one entry of ``checks.hazards()``."""
    entry: dict[str, object] = {
        "name": "tcp_bpf.blocking_eagain",
        "affects": "blocking sockets that wait in recv while a wakeup without data arrives: "
        "shutdown(SHUT_WR) then recv of the reply; a reset while blocked in recv",
    }
    try:
        from bcc import BPF, lib  # imported late: importing bcc needs libbcc
    except ImportError as exc:
        return {**entry, "present": None, "detail": f"not tested: bcc unavailable ({exc})"}
    try:
        headers.ensure()
    except SockspliceError as exc:
        return {**entry, "present": None, "detail": f"not tested: {exc}"}
    try:
        bpf = BPF(text=PROGRAM)
    except Exception as exc:  # bcc raises bare Exception
        return {**entry, "present": None, "detail": f"not tested: cannot load the test program: {exc}"}
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        prog = bpf.load_func(b"hz_sk_msg", BPF.SK_MSG)
        map_fd = int(lib.bpf_table_fd(bpf.module, b"hz_hash"))
        bpfsys.prog_attach(map_fd, prog.fd, bpfsys.BPF_SK_MSG_VERDICT)
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        results = [_one(lib, map_fd, listener) for _ in range(TRIES)]
    except Exception as exc:
        return {**entry, "present": None, "detail": f"not tested: {exc}"}
    finally:
        listener.close()
        bpf.cleanup()
    bad = sum(1 for r in results if r != "ok")
    return {
        **entry,
        "present": bad > 0,
        "tries": TRIES,
        "eagain": results.count("EAGAIN"),
        "detail": f"{bad} of {TRIES} blocking recv calls after shutdown(SHUT_WR) did not return the reply"
        + (f" ({', '.join(sorted(set(results) - {'ok'}))})" if bad else ""),
    }
