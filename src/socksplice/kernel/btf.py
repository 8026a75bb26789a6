"""Struct member offsets of the running kernel, read from its BTF (``/sys/kernel/btf/vmlinux``).

The BPF programs are compiled by bcc against whatever kernel headers are installed (on this
machine kind, Debian's packaged 6.1 headers on a newer kernel), so ``offsetof`` in C would give
another kernel's layout. Every kernel struct field a program reads is therefore located here, in
the running kernel's own type information, and handed to the compiler as a ``-D`` constant.

Only what that needs is parsed: the BTF header, the type section (every kind's record length, so
the walk stays aligned) and the string section. Named members and members of anonymous structs
and unions (``sock.sk_backlog.rmem_alloc``) resolve; bit-fields report their bit offset and size.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from socksplice.errors import KernelUnsupported

VMLINUX = Path("/sys/kernel/btf/vmlinux")
_MAGIC = 0xEB9F

_KIND_INT, _KIND_ARRAY, _KIND_STRUCT, _KIND_UNION, _KIND_ENUM = 1, 3, 4, 5, 6
_KIND_TYPEDEF, _KIND_VOLATILE, _KIND_CONST, _KIND_RESTRICT = 8, 9, 10, 11
_KIND_FUNC_PROTO, _KIND_VAR, _KIND_DATASEC, _KIND_DECL_TAG, _KIND_TYPE_TAG, _KIND_ENUM64 = (
    13,
    14,
    15,
    17,
    18,
    19,
)
_KIND_PTR, _KIND_FLOAT = 2, 16
_SIZED = {_KIND_INT, _KIND_STRUCT, _KIND_UNION, _KIND_ENUM, _KIND_ENUM64, _KIND_FLOAT}
_MODIFIERS = {_KIND_TYPEDEF, _KIND_VOLATILE, _KIND_CONST, _KIND_RESTRICT, _KIND_TYPE_TAG}


def _extra_bytes(kind: int, vlen: int) -> int:
    """Bytes that follow a type's 12-byte common record, by kind (include/uapi/linux/btf.h)."""
    if kind in (_KIND_INT, _KIND_VAR, _KIND_DECL_TAG):
        return 4
    if kind == _KIND_ARRAY:
        return 12
    if kind in (_KIND_STRUCT, _KIND_UNION, _KIND_DATASEC, _KIND_ENUM64):
        return 12 * vlen
    if kind in (_KIND_ENUM, _KIND_FUNC_PROTO):
        return 8 * vlen
    return 0


@dataclass(frozen=True)
class _Type:
    kind: int
    name: str
    size_or_type: int
    kind_flag: bool
    members: tuple[tuple[str, int, int], ...]  # (name, type id, raw offset) for structs and unions


@dataclass(frozen=True)
class Member:
    """Where a member sits: ``offset`` in bytes from the struct's start; bit-fields also have
    ``bit_offset`` (within the byte at ``offset``) and ``bit_size``; ``size`` is the byte size of
    a plain member (0 for bit-fields)."""

    offset: int
    size: int
    bit_offset: int = 0
    bit_size: int = 0


_RUNNING: dict[Path, Btf] = {}


class Btf:
    """The parsed type section of one BTF blob."""

    def __init__(self, blob: bytes, source: str = "BTF") -> None:
        self.source = source
        if len(blob) < 24:
            raise KernelUnsupported(f"{source}: too short for a BTF header")
        magic, _version, _flags, hdr_len = struct.unpack_from("<HBBI", blob, 0)
        if magic != _MAGIC:
            raise KernelUnsupported(f"{source}: not BTF (magic {magic:#x}; big-endian BTF is not read)")
        type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", blob, 8)
        self._blob = blob
        self._strings = blob[hdr_len + str_off : hdr_len + str_off + str_len]
        # One pass records where each type's record starts and names the structs and unions;
        # a type's members are decoded only when a lookup reaches it.
        self._offsets: list[int] = [-1]  # type id 0 is void
        self._parsed: dict[int, _Type] = {}
        self._by_name: dict[str, int] = {}
        record = struct.Struct("<III")
        strings = self._strings
        pos, end = hdr_len + type_off, hdr_len + type_off + type_len
        while pos < end:
            name_off, info, _ = record.unpack_from(blob, pos)
            kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
            if kind in (_KIND_STRUCT, _KIND_UNION) and name_off:
                name = _string(strings, name_off)
                if name not in self._by_name:
                    self._by_name[name] = len(self._offsets)
            self._offsets.append(pos)
            pos += 12 + _extra_bytes(kind, vlen)

    def _type(self, type_id: int) -> _Type | None:
        if not 0 < type_id < len(self._offsets):
            return None
        t = self._parsed.get(type_id)
        if t is None:
            blob, pos = self._blob, self._offsets[type_id]
            name_off, info, size_or_type = struct.unpack_from("<III", blob, pos)
            kind, vlen, kind_flag = (info >> 24) & 0x1F, info & 0xFFFF, bool(info >> 31)
            members: tuple[tuple[str, int, int], ...] = ()
            if kind in (_KIND_STRUCT, _KIND_UNION):
                members = tuple(
                    (_string(self._strings, m_name), m_type, m_off)
                    for m_name, m_type, m_off in struct.iter_unpack(
                        "<III", blob[pos + 12 : pos + 12 + 12 * vlen]
                    )
                )
            t = self._parsed[type_id] = _Type(
                kind, _string(self._strings, name_off), size_or_type, kind_flag, members
            )
        return t

    @classmethod
    def running(cls, path: Path = VMLINUX) -> Btf:
        """The running kernel's BTF, parsed once per process and path (about 0.2 s here):
        the running kernel does not change under a process."""
        cached = _RUNNING.get(path)
        if cached is not None:
            return cached
        try:
            parsed = _RUNNING[path] = cls(path.read_bytes(), str(path))
            return parsed
        except OSError as exc:
            raise KernelUnsupported(
                f"{path}: cannot read the kernel's BTF ({exc.strerror}); a kernel built with "
                "CONFIG_DEBUG_INFO_BTF=y is needed to read kernel struct fields at their real offsets"
            ) from exc

    def _resolve(self, type_id: int) -> _Type | None:
        t = self._type(type_id)
        while t is not None and t.kind in _MODIFIERS:
            t = self._type(t.size_or_type)
        return t

    def _size(self, type_id: int) -> int:
        t = self._resolve(type_id)
        if t is None:
            return 0
        if t.kind == _KIND_PTR:
            return 8
        return t.size_or_type if t.kind in _SIZED else 0  # arrays are never read whole here

    def _find(self, struct_id: int, name: str, base_bits: int) -> tuple[int, int, int, int] | None:
        """(bit offset, type id, bit-field size, kind_flag raw) of ``name`` in a struct, looking
        through anonymous members."""
        t = self._resolve(struct_id)
        if t is None or t.kind not in (_KIND_STRUCT, _KIND_UNION):
            return None
        for m_name, m_type, raw in t.members:
            bits = raw & 0xFFFFFF if t.kind_flag else raw
            bit_size = raw >> 24 if t.kind_flag else 0
            if m_name == name:
                return base_bits + bits, m_type, bit_size, 0
            if not m_name:
                found = self._find(m_type, name, base_bits + bits)
                if found is not None:
                    return found
        return None

    def member(self, struct_name: str, path: str) -> Member:
        """The member ``path`` (dotted: ``sk_backlog.rmem_alloc``) of ``struct struct_name``."""
        type_id = self._by_name.get(struct_name)
        if type_id is None:
            raise KernelUnsupported(f"{self.source}: no struct {struct_name}")
        bits, bit_size = 0, 0
        for part in path.split("."):
            found = self._find(type_id, part, bits)
            if found is None:
                raise KernelUnsupported(f"{self.source}: struct {struct_name} has no member {path}")
            bits, type_id, bit_size, _ = found
        if bit_size:
            return Member(offset=bits // 8, size=0, bit_offset=bits % 8, bit_size=bit_size)
        if bits % 8:
            raise KernelUnsupported(f"{self.source}: {struct_name}.{path} is not byte-aligned")
        return Member(offset=bits // 8, size=self._size(type_id))


def _string(strings: bytes, offset: int) -> str:
    end = strings.find(b"\0", offset)
    return strings[offset : end if end >= 0 else len(strings)].decode("ascii", "replace")
