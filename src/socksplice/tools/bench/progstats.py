"""What the data path's observation programs cost, as the kernel counts it.

With run-time statistics on (``BPF_ENABLE_STATS``, held by an fd: the same switch as
``sysctl kernel.bpf_stats_enabled=1``, and off again when the fd closes), the kernel adds up per
program the nanoseconds its runs took and how many runs there were (``bpf_prog_info``
``run_time_ns``, ``run_cnt``). The observation programs are the data path's tracepoint programs
(``bpf/observe_*.c``). They fire on every matching syscall or event of the whole machine, not
only the watched sockets', so a delta over a run includes whatever else ran meanwhile.
"""

from __future__ import annotations

import ctypes
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from socksplice.bpf.loader import Datapath
from socksplice.kernel import bpfsys

BPF_ENABLE_STATS = 32
BPF_STATS_RUN_TIME = 0
BPF_PROG_TYPE_TRACEPOINT = 5
BPF_PROG_TYPE_RAW_TRACEPOINT = 17
_INFO_SIZE = 256
_OFF_TYPE, _OFF_NAME, _OFF_RUN_TIME, _OFF_RUN_CNT = 0, 64, 192, 200


@dataclass(frozen=True)
class ProgStats:
    name: str
    run_time_ns: int
    run_cnt: int


@contextmanager
def run_time_stats() -> Iterator[None]:
    """Kernel run-time statistics on for the block (off again at its end, unless someone else
    also holds them on)."""
    fd = bpfsys.call(BPF_ENABLE_STATS, bpfsys.pack_attr("=I", BPF_STATS_RUN_TIME), "BPF_ENABLE_STATS")
    try:
        yield
    finally:
        os.close(fd)


def prog_info(fd: int) -> tuple[int, str, int, int]:
    """(program type, kernel name, run time ns, run count) of a program fd (``bpf_prog_info``)."""
    info = ctypes.create_string_buffer(_INFO_SIZE)
    attr = bpfsys.pack_attr("=IIQ", fd, _INFO_SIZE, ctypes.addressof(info))
    bpfsys.call(bpfsys.BPF_OBJ_GET_INFO_BY_FD, attr, "BPF_OBJ_GET_INFO_BY_FD")
    kind = struct.unpack_from("=I", info, _OFF_TYPE)[0]
    name = info.raw[_OFF_NAME : _OFF_NAME + 16].split(b"\0", 1)[0].decode()
    run_time, run_cnt = struct.unpack_from("=QQ", info, _OFF_RUN_TIME)
    return int(kind), name, int(run_time), int(run_cnt)


def program_fds(datapath: Datapath) -> dict[str, int]:
    """The fds of the data path's loaded programs by function name (bcc's ``funcs``)."""
    return datapath.program_fds()


def observation_stats(datapath: Datapath) -> list[ProgStats]:
    """Run time and run count of each observation (tracepoint) program, now."""
    out = []
    for name, fd in sorted(program_fds(datapath).items()):
        kind, _short, run_time, run_cnt = prog_info(fd)
        if kind in (BPF_PROG_TYPE_TRACEPOINT, BPF_PROG_TYPE_RAW_TRACEPOINT):
            short = name.removeprefix("tracepoint__").removeprefix("raw_tracepoint__")
            out.append(ProgStats(short, run_time, run_cnt))
    return out


def delta(before: list[ProgStats], after: list[ProgStats]) -> list[ProgStats]:
    old = {p.name: p for p in before}
    return [
        ProgStats(p.name, p.run_time_ns - old[p.name].run_time_ns, p.run_cnt - old[p.name].run_cnt)
        for p in after
        if p.name in old
    ]
