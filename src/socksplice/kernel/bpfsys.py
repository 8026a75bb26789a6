"""The few bpf(2) commands socksplice needs beyond what bcc offers, as typed functions.

bcc's Python binding can load programs but cannot query a cgroup's attached programs, detach
without the original program fd, or walk a SOCKHASH; libbcc does not export libbpf's
wrappers. These calls use the syscall directly and raise KernelError with the errno kept.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import struct

from socksplice.errors import KernelError

_SYS_BPF = {"x86_64": 321, "aarch64": 280}.get(platform.machine(), 321)

BPF_MAP_CREATE = 0
BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_GET_NEXT_KEY = 4
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_LOAD = 5
BPF_OBJ_GET = 7
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_PROG_QUERY = 16

BPF_CGROUP_SOCK_OPS = 3
BPF_SK_MSG_VERDICT = 7

_ATTR_SIZE = 128
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.syscall.restype = ctypes.c_long


def call(cmd: int, attr: ctypes.Array[ctypes.c_char], what: str) -> int:
    """bpf(cmd, attr); raises KernelError naming ``what`` with the errno kept."""
    ret = int(_libc.syscall(_SYS_BPF, cmd, attr, _ATTR_SIZE))
    if ret < 0:
        err = ctypes.get_errno()
        raise KernelError(f"{what}: {os.strerror(err)} (errno {err})", err)
    return ret


def pack_attr(fmt: str, *values: int) -> ctypes.Array[ctypes.c_char]:
    """A zeroed bpf_attr with ``values`` packed at its start."""
    buf = ctypes.create_string_buffer(_ATTR_SIZE)
    struct.pack_into(fmt, buf, 0, *values)
    return buf


def prog_attach(target_fd: int, prog_fd: int, attach_type: int, flags: int = 0) -> None:
    """Attach; with ``flags=0`` a cgroup holds one program of the type and this replaces it."""
    call(BPF_PROG_ATTACH, pack_attr("=IIII", target_fd, prog_fd, attach_type, flags), "BPF_PROG_ATTACH")


def prog_detach(target_fd: int, attach_type: int, prog_fd: int = 0) -> None:
    call(BPF_PROG_DETACH, pack_attr("=III", target_fd, prog_fd, attach_type), "BPF_PROG_DETACH")


def prog_query(target_fd: int, attach_type: int, max_progs: int = 64) -> list[int]:
    """Ids of the programs attached to ``target_fd`` (a cgroup directory fd) for ``attach_type``."""
    ids = (ctypes.c_uint32 * max_progs)()
    attr = pack_attr("=IIIIQI", target_fd, attach_type, 0, 0, ctypes.addressof(ids), max_progs)
    call(BPF_PROG_QUERY, attr, "BPF_PROG_QUERY")
    count = struct.unpack_from("=I", attr, 24)[0]
    return [int(ids[i]) for i in range(min(count, max_progs))]


def obj_id(fd: int) -> int:
    """The kernel id of a program or map fd (both info structs start with type, id)."""
    info = ctypes.create_string_buffer(256)
    call(BPF_OBJ_GET_INFO_BY_FD, pack_attr("=IIQ", fd, 256, ctypes.addressof(info)), "BPF_OBJ_GET_INFO_BY_FD")
    return int(struct.unpack_from("=I", info, 4)[0])


def obj_get(path: str) -> int:
    """Open a pinned object; returns a new fd."""
    raw = ctypes.create_string_buffer(path.encode())
    return call(BPF_OBJ_GET, pack_attr("=QII", ctypes.addressof(raw), 0, 0), f"BPF_OBJ_GET {path}")


def map_keys(map_fd: int, key_size: int, limit: int = 1 << 24) -> list[bytes]:
    """Every key of a map, by BPF_MAP_GET_NEXT_KEY (works for SOCKHASH, which bcc cannot read)."""
    keys: list[bytes] = []
    cur = ctypes.create_string_buffer(key_size)
    nxt = ctypes.create_string_buffer(key_size)
    first = True
    while len(keys) < limit:
        attr = pack_attr("=IIQQ", map_fd, 0, 0 if first else ctypes.addressof(cur), ctypes.addressof(nxt))
        ret = int(_libc.syscall(_SYS_BPF, BPF_MAP_GET_NEXT_KEY, attr, _ATTR_SIZE))
        if ret < 0:
            err = ctypes.get_errno()
            if err == 2:  # ENOENT: no more keys
                break
            raise KernelError(f"BPF_MAP_GET_NEXT_KEY: {os.strerror(err)}", err)
        keys.append(nxt.raw)
        ctypes.memmove(cur, nxt, key_size)
        first = False
    return keys
