"""kernel.btf on a BTF blob built here (layout of include/uapi/linux/btf.h) and on this kernel's."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from socksplice.errors import KernelUnsupported
from socksplice.kernel.btf import VMLINUX, Btf, Member


def _blob() -> bytes:
    """Types: 1 int (4 bytes), 2 anonymous struct {int x; int y;}, 3 struct outer {int a;
    <anon 2>; bit-fields lo:3, hi:5 after it}, 4 const -> 3, 5 typedef outer_t -> 4, 6 func proto
    (skipped, 2 params), 7 struct plain {int p;} with kind_flag 0."""
    names = b"\0int\0x\0y\0outer\0a\0lo\0hi\0outer_t\0plain\0p\0"

    def off(name: str) -> int:
        return names.index(b"\0" + name.encode() + b"\0") + 1

    t = b""
    t += struct.pack("<III", off("int"), 1 << 24, 4) + struct.pack("<I", 32)
    t += struct.pack("<III", 0, (4 << 24) | 2, 8) + struct.pack("<IIIIII", off("x"), 1, 0, off("y"), 1, 32)
    kf = 1 << 31
    t += struct.pack("<III", off("outer"), kf | (4 << 24) | 4, 16)
    t += struct.pack("<III", off("a"), 1, 0)
    t += struct.pack("<III", 0, 2, 32)
    t += struct.pack("<III", off("lo"), 1, (3 << 24) | 96)
    t += struct.pack("<III", off("hi"), 1, (5 << 24) | 99)
    t += struct.pack("<III", 0, 10 << 24, 3)
    t += struct.pack("<III", off("outer_t"), 8 << 24, 4)
    t += struct.pack("<III", 0, (13 << 24) | 2, 1) + struct.pack("<IIII", 0, 1, 0, 1)
    t += struct.pack("<III", off("plain"), (4 << 24) | 1, 4) + struct.pack("<III", off("p"), 1, 0)
    header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(t), len(t), len(names))
    return header + t + names


def test_members_through_anonymous_structs_and_bitfields() -> None:
    btf = Btf(_blob())
    assert btf.member("outer", "a") == Member(offset=0, size=4)
    assert btf.member("outer", "y") == Member(offset=8, size=4)
    assert btf.member("outer", "lo") == Member(offset=12, size=0, bit_offset=0, bit_size=3)
    assert btf.member("outer", "hi") == Member(offset=12, size=0, bit_offset=3, bit_size=5)
    assert btf.member("plain", "p") == Member(offset=0, size=4)


def test_missing_struct_or_member_is_reported_with_names() -> None:
    btf = Btf(_blob(), "test.btf")
    with pytest.raises(KernelUnsupported, match=r"test\.btf: no struct nosuch"):
        btf.member("nosuch", "a")
    with pytest.raises(KernelUnsupported, match="struct outer has no member b"):
        btf.member("outer", "b")


def test_not_btf_is_rejected() -> None:
    with pytest.raises(KernelUnsupported, match="not BTF"):
        Btf(b"\0" * 32)


def test_unreadable_file_says_what_is_needed(tmp_path: Path) -> None:
    with pytest.raises(KernelUnsupported, match="CONFIG_DEBUG_INFO_BTF"):
        Btf.running(tmp_path / "absent")


@pytest.mark.skipif(not VMLINUX.exists(), reason="this kernel has no /sys/kernel/btf/vmlinux")
def test_running_kernel_socket_fields() -> None:
    btf = Btf.running()
    rcvbuf = btf.member("sock", "sk_rcvbuf")
    rmem = btf.member("sock", "sk_backlog.rmem_alloc")
    assert rcvbuf.size == 4 and rmem.size == 4
    assert 0 < rmem.offset < 1024 and 0 < rcvbuf.offset < 1024
    assert btf.member("tcp_sock", "inet_conn").offset == 0  # a tcp_sock starts with its struct sock
