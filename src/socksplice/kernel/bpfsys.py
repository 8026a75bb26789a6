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


def map_create(map_type: int, key_size: int, value_size: int, max_entries: int) -> int:
    """BPF_MAP_CREATE without BTF; returns the map fd (the caller closes it)."""
    attr = pack_attr("=IIII", map_type, key_size, value_size, max_entries)
    return call(BPF_MAP_CREATE, attr, f"BPF_MAP_CREATE type {map_type}")


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


BPF_MAP_UPDATE_ELEM = 2
BPF_MAP_DELETE_ELEM = 3


def _elem_attr(
    map_fd: int, key: ctypes.Array[ctypes.c_char], value: int, flags: int
) -> ctypes.Array[ctypes.c_char]:
    return pack_attr("=IIQQQ", map_fd, 0, ctypes.addressof(key), value, flags)


def map_lookup(map_fd: int, key: bytes, value_size: int) -> bytes | None:
    """The value stored at ``key`` (``value_size`` bytes), None when there is none."""
    raw_key = ctypes.create_string_buffer(key, len(key))
    value = ctypes.create_string_buffer(value_size)
    attr = _elem_attr(map_fd, raw_key, ctypes.addressof(value), 0)
    ret = int(_libc.syscall(_SYS_BPF, BPF_MAP_LOOKUP_ELEM, attr, _ATTR_SIZE))
    if ret < 0:
        err = ctypes.get_errno()
        if err == 2:  # ENOENT
            return None
        raise KernelError(f"BPF_MAP_LOOKUP_ELEM: {os.strerror(err)} (errno {err})", err)
    return value.raw


def map_update(map_fd: int, key: bytes, value: bytes, flags: int = 0) -> None:
    """Store ``value`` at ``key`` (flags: BPF_ANY 0, BPF_NOEXIST 1, BPF_EXIST 2)."""
    raw_key = ctypes.create_string_buffer(key, len(key))
    raw_value = ctypes.create_string_buffer(value, len(value))
    call(
        BPF_MAP_UPDATE_ELEM,
        _elem_attr(map_fd, raw_key, ctypes.addressof(raw_value), flags),
        "BPF_MAP_UPDATE_ELEM",
    )


def map_delete(map_fd: int, key: bytes) -> bool:
    """Remove ``key``; False when it was not there."""
    raw_key = ctypes.create_string_buffer(key, len(key))
    ret = int(_libc.syscall(_SYS_BPF, BPF_MAP_DELETE_ELEM, _elem_attr(map_fd, raw_key, 0, 0), _ATTR_SIZE))
    if ret < 0:
        err = ctypes.get_errno()
        if err == 2:  # ENOENT
            return False
        raise KernelError(f"BPF_MAP_DELETE_ELEM: {os.strerror(err)} (errno {err})", err)
    return True


def map_info(map_fd: int) -> tuple[int, int, int, int]:
    """(map type, key size, value size, max entries) of a map fd (``struct bpf_map_info``)."""
    info = ctypes.create_string_buffer(256)
    call(
        BPF_OBJ_GET_INFO_BY_FD,
        pack_attr("=IIQ", map_fd, 256, ctypes.addressof(info)),
        "BPF_OBJ_GET_INFO_BY_FD",
    )
    map_type, _id, key_size, value_size, max_entries = struct.unpack_from("=IIIII", info, 0)
    return int(map_type), int(key_size), int(value_size), int(max_entries)


def possible_cpus(path: str = "/sys/devices/system/cpu/possible") -> int:
    """How many values a per-CPU map holds per key: the kernel's possible CPUs ("0-3,5")."""
    with open(path) as f:
        text = f.read().strip()
    count = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        count = max(count, int(hi or lo) + 1)
    return count


BPF_MAP_LOOKUP_BATCH = 24
BATCH = 1024
"""Entries asked for per BPF_MAP_LOOKUP_BATCH call (a hash bucket larger than this is retried
with room for it)."""


def map_lookup_batch_raw(
    map_fd: int, key_size: int, value_size: int, max_entries: int
) -> list[tuple[bytes, bytes, int]] | None:
    """Every entry of a map, BATCH per BPF_MAP_LOOKUP_BATCH call, as (keys, values, count) per
    call, packed as the kernel copies them (``value_size``: per key, all CPUs of a per-CPU map);
    None where the kernel has no batch for this map type."""
    out: list[tuple[bytes, bytes, int]] = []
    chunk = min(BATCH, max(max_entries, 1))
    tokens = (ctypes.create_string_buffer(8), ctypes.create_string_buffer(8))
    first = True
    while True:
        keys = ctypes.create_string_buffer(key_size * chunk)
        values = ctypes.create_string_buffer(value_size * chunk)
        in_batch = 0 if first else ctypes.addressof(tokens[0])
        attr = pack_attr(
            "=QQQQIIQQ",
            in_batch,
            ctypes.addressof(tokens[1]),
            ctypes.addressof(keys),
            ctypes.addressof(values),
            chunk,
            map_fd,
            0,
            0,
        )
        ret = int(_libc.syscall(_SYS_BPF, BPF_MAP_LOOKUP_BATCH, attr, _ATTR_SIZE))
        err = ctypes.get_errno() if ret < 0 else 0
        if err == 28 and chunk < max_entries:  # ENOSPC: one hash bucket holds more than chunk
            chunk = min(chunk * 4, max_entries)
            continue
        if err in (22, 95, 524) and first:  # EINVAL, EOPNOTSUPP, ENOTSUPP: no batch for this map here
            return None
        if err not in (0, 2):  # ENOENT: this was the last batch
            raise KernelError(f"BPF_MAP_LOOKUP_BATCH: {os.strerror(err)} (errno {err})", err)
        count = int(struct.unpack_from("=I", attr, 32)[0])
        if count:
            out.append((keys.raw[: key_size * count], values.raw[: value_size * count], count))
        if err == 2 or count == 0:
            return out
        ctypes.memmove(tokens[0], tokens[1], 8)
        first = False


def map_lookup_batch(
    map_fd: int, key_size: int, value_size: int, max_entries: int
) -> list[tuple[bytes, bytes]] | None:
    """Every (key, value) of a map (see :func:`map_lookup_batch_raw`); None without batches."""
    chunks = map_lookup_batch_raw(map_fd, key_size, value_size, max_entries)
    if chunks is None:
        return None
    return [
        (keys[i * key_size : (i + 1) * key_size], values[i * value_size : (i + 1) * value_size])
        for keys, values, count in chunks
        for i in range(count)
    ]
