"""A BPF map opened by fd, read and written with bpf(2) alone (no bcc, no compiler in memory).

Keys and values are bytes; callers give them meaning with the ``ctypes`` structures of
``bpf/layout.py``. Per-CPU maps hold one value per possible CPU, each rounded up to 8 bytes, as
the kernel copies them out.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from socksplice.errors import KernelError
from socksplice.kernel import bpfsys

PERCPU_TYPES = frozenset({5, 6, 10})
"""BPF_MAP_TYPE_PERCPU_HASH, BPF_MAP_TYPE_PERCPU_ARRAY, BPF_MAP_TYPE_LRU_PERCPU_HASH."""


class BpfMap:
    """One map fd (owned: :meth:`close` closes it), with its sizes read from the kernel."""

    def __init__(self, fd: int, name: str = "") -> None:
        self.fd = fd
        self.name = name
        self.map_type, self.key_size, self.value_size, self.max_entries = bpfsys.map_info(fd)
        self.percpu = self.map_type in PERCPU_TYPES
        self._cpus = bpfsys.possible_cpus() if self.percpu else 1
        self._stride = (self.value_size + 7) & ~7 if self.percpu else self.value_size

    @classmethod
    def pinned(cls, path: str, name: str = "") -> BpfMap:
        return cls(bpfsys.obj_get(path), name or os.path.basename(path))

    def _key(self, key: bytes) -> bytes:
        if len(key) != self.key_size:
            raise KernelError(f"map {self.name}: key of {len(key)} bytes, the map's are {self.key_size}")
        return key

    def lookup(self, key: bytes) -> bytes | None:
        """The value at ``key`` (for a per-CPU map, the first CPU's; see :meth:`lookup_percpu`)."""
        if self.percpu:
            values = self.lookup_percpu(key)
            return values[0] if values else None
        return bpfsys.map_lookup(self.fd, self._key(key), self.value_size)

    def lookup_percpu(self, key: bytes) -> list[bytes] | None:
        """One value per possible CPU (one value for a map that is not per-CPU), None when ``key``
        is absent."""
        raw = bpfsys.map_lookup(self.fd, self._key(key), self._stride * self._cpus)
        return None if raw is None else self._split(raw)

    def update(self, key: bytes, value: bytes) -> None:
        if len(value) != self.value_size or self.percpu:
            raise KernelError(
                f"map {self.name}: value of {len(value)} bytes, the map's are {self.value_size}"
            )
        bpfsys.map_update(self.fd, self._key(key), value)

    def update_percpu(self, key: bytes, values: list[bytes]) -> None:
        """Store one value per possible CPU (a per-CPU map)."""
        if not self.percpu or len(values) != self._cpus or any(len(v) != self.value_size for v in values):
            raise KernelError(
                f"map {self.name}: {len(values)} values for {self._cpus} CPUs of {self.value_size} bytes each"
            )
        pad = bytes(self._stride - self.value_size)
        bpfsys.map_update(self.fd, self._key(key), b"".join(v + pad for v in values))

    def delete(self, key: bytes) -> bool:
        return bpfsys.map_delete(self.fd, self._key(key))

    def keys(self) -> list[bytes]:
        return bpfsys.map_keys(self.fd, self.key_size)

    def _batch(self) -> list[tuple[bytes, bytes]] | None:
        """Every (key, raw value) in one BPF_MAP_LOOKUP_BATCH; None where the kernel has no batch
        for this map type (then the map is walked key by key)."""
        return bpfsys.map_lookup_batch(self.fd, self.key_size, self._stride * self._cpus, self.max_entries)

    def _split(self, raw: bytes) -> list[bytes]:
        return [raw[i * self._stride : i * self._stride + self.value_size] for i in range(self._cpus)]

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) present now (a per-CPU map: the first CPU's value)."""
        for key, values in self.items_percpu():
            yield key, values[0]

    def items_percpu(self) -> Iterator[tuple[bytes, list[bytes]]]:
        """Every (key, one value per CPU) present now; one value for a map that is not per-CPU."""
        batch = self._batch()
        if batch is not None:
            for key, raw in batch:
                yield key, self._split(raw)
            return
        for key in self.keys():  # a key deleted while walking is skipped
            values = self.lookup_percpu(key)
            if values is not None:
                yield key, values

    def array_percpu_sums(self) -> list[int]:
        """A per-CPU array of 8-byte counters: every index summed over CPUs, read in batches."""
        if not self.percpu or self.value_size != 8:
            raise KernelError(f"map {self.name}: not a per-CPU array of 8-byte counters")
        sums = [0] * self.max_entries
        chunks = bpfsys.map_lookup_batch_raw(self.fd, self.key_size, 8 * self._cpus, self.max_entries)
        if chunks is None:
            for key, values in self.items_percpu():
                sums[int.from_bytes(key, "little")] = sum(int.from_bytes(v, "little") for v in values)
            return sums
        cpus = self._cpus
        for raw_keys, raw_values, count in chunks:
            index = memoryview(raw_keys).cast("I")
            counts = memoryview(raw_values).cast("Q")
            for i in range(count):
                sums[index[i]] = sum(counts[i * cpus : (i + 1) * cpus])
        return sums

    def array_u32_values(self) -> list[int]:
        """An array of 4-byte values, every index, read in batches."""
        if self.percpu or self.value_size != 4 or self.key_size != 4:
            raise KernelError(f"map {self.name}: not an array of 4-byte values")
        out = [0] * self.max_entries
        chunks = bpfsys.map_lookup_batch_raw(self.fd, 4, 4, self.max_entries)
        if chunks is None:
            for key, value in self.items():
                out[int.from_bytes(key, "little")] = int.from_bytes(value, "little")
            return out
        for keys, values, count in chunks:
            index, vals = memoryview(keys).cast("I"), memoryview(values).cast("I")
            for i in range(count):
                out[index[i]] = vals[i]
        return out

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
