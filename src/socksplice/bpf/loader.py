"""Compile, load, pin and attach socksplice's BPF programs with bcc.

Lifecycle (docs/architecture.md, safety rule 5): maps are pinned under ``<pin_root>/<name>/v<layout>``; a new
loader adopts existing pins instead of creating maps, so an agent restart or upgrade keeps every
spliced socket and its state. Programs are replaced, never the maps. The sk_msg program is
attached to the SOCKHASH (the map holds it); the sockops program is attached per pod cgroup
with flags 0, so a cgroup holds at most one socksplice program and re-attaching replaces it.
Programs attached this way outlive the loading process: ``detach`` is explicit.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from socksplice.bpf import headers as headers_mod
from socksplice.bpf.layout import (
    COUNTERS,
    ENDPOINT_SLOTS,
    EVIDENCE,
    LAYOUT_VERSION,
    NR_COUNTERS,
    EndpointKeyStruct,
    EvidenceStruct,
    PodConfigStruct,
    PodDatapathConfig,
    VerdictStruct,
)
from socksplice.errors import KernelError, KernelUnsupported
from socksplice.kernel import bpffs, bpfsys, tracefs
from socksplice.kernel.btf import Btf

log = logging.getLogger(__name__)

SOURCE_DIR = Path(__file__).resolve().parent
SOURCES = ("socksplice.h", "sockops.c", "sk_msg.c")
OBSERVE_SOURCES = ("observe_recv.c", "observe_fd.c", "observe_close.c")
"""The observation programs (tracepoints), compiled in only where the kernel has what they need."""
PINNED_MAPS = (
    "sock_hash",
    "sk_state",
    "pod_config",
    "pairs",
    "syn_hints",
    "peer_of",
    "counters",
    "verdicts",
    "evidence",
    "demoted",
    "policy_epoch",
    "watch",
)
TRACEPOINTS = (
    "sock:sock_recv_length",
    "sock:inet_sock_set_state",
    "tcp:tcp_destroy_sock",
    "syscalls:sys_enter_splice",
    "syscalls:sys_enter_sendfile64",
    "syscalls:sys_enter_ioctl",
    "syscalls:sys_enter_setsockopt",
)
"""What the observation programs attach to (docs/auto.md)."""
EndpointTuple = tuple[int, int, int]
"""(server netns cookie, client netns cookie, server port): an endpoint as the data path keys it."""

AttachOutcome = Literal["attached", "replaced", "unchanged"]


@dataclass(frozen=True)
class DatapathSettings:
    """Where pins live and how large the maps are (compiled in as -D knobs)."""

    pin_root: Path = Path("/sys/fs/bpf")
    """bpffs directory holding the pins; a bpffs is mounted there when it is not on one."""
    name: str = "socksplice"
    """Subdirectory of ``pin_root``; tests use a unique name per run."""
    sockhash_size: int = 65536
    """Maximum spliced sockets on the node (two per connection)."""
    pairs_size: int = 16384
    """Connection ends waiting for their peer (LRU)."""
    pods_size: int = 1024
    """Maximum selected pods on the node."""
    max_policies: int = 256
    """Policy slots for per-SocketSplice counters (slot 0 is 'none')."""
    unread_limit: int = 4 << 20
    """Backpressure: bytes a spliced receiver may hold unread before that direction of the
    connection moves to TCP until its reader has caught up. A receiver that set ``SO_RCVBUF`` is
    held to that buffer instead, as TCP holds it."""
    node_tcp_memory_low: int = 0
    """Pages of node-wide TCP memory from which a spliced receiver is held to its own buffer
    (``sk_rcvbuf``) again. 0: the kernel's ``net.ipv4.tcp_mem[0]``, below which TCP itself
    does not regulate memory."""
    observe: bool = True
    """Load the observation programs (Auto mode needs them) where the kernel supports them."""
    program_tag: int = 0
    """Compiled in as SS_PROGRAM_TAG, an instruction of each program: a build that differs from
    another only by this number is other bytecode (another kernel program tag) over the same
    pinned maps, a new program version (upgrade tests use it)."""

    @property
    def pin_base(self) -> Path:
        """Compiled in as SS_PIN_BASE; the header adds ``v<SS_LAYOUT_VERSION>`` to name the pin directory."""
        return self.pin_root / self.name

    @property
    def pin_dir(self) -> Path:
        return self.pin_base / f"v{LAYOUT_VERSION}"


def _discard_failed(settings: DatapathSettings, adopted: bool) -> None:
    """After a failed load: remove what it pinned, unless it was adopting an existing data path
    (whose pins hold live sockets). Without a SOCKHASH pin nothing was ever attached to these maps."""
    if not adopted:
        for pin in settings.pin_dir.glob("*"):
            pin.unlink(missing_ok=True)
    for d in (settings.pin_dir, settings.pin_base):
        try:
            d.rmdir()
        except OSError:
            return  # not empty (another version's pins) or already gone


def program_source(observe: bool = False) -> str:
    """One translation unit: bcc only treats functions of its main file as programs."""
    parts = []
    for name in SOURCES + (OBSERVE_SOURCES if observe else ()):
        text = (SOURCE_DIR / name).read_text().replace('#include "socksplice.h"', "")
        parts.append(f'#line 1 "{name}"\n{text}\n')
    return "".join(parts)


KERNEL_FIELDS = {
    "SS_OFF_SK_RMEM_ALLOC": ("sock", "sk_backlog.rmem_alloc", 4),
    "SS_OFF_SK_RCVBUF": ("sock", "sk_rcvbuf", 4),
    "SS_OFF_TP_WRITE_SEQ": ("tcp_sock", "write_seq", 4),
    "SS_OFF_TP_RCV_NXT": ("tcp_sock", "rcv_nxt", 4),
    "SS_OFF_TP_COPIED_SEQ": ("tcp_sock", "copied_seq", 4),
    "SS_OFF_SK_PROT": ("sock", "__sk_common.skc_prot", 8),
    "SS_OFF_PROTO_MEMORY_ALLOCATED": ("proto", "memory_allocated", 8),
    "SS_OFF_PROTO_SYSCTL_MEM": ("proto", "sysctl_mem", 8),
}
"""Kernel struct fields the programs read (backpressure), located in the running kernel's BTF."""


def kernel_field_cflags(btf: Btf | None = None) -> list[str]:
    """``-D`` offsets of :data:`KERNEL_FIELDS` in this kernel (KernelUnsupported without BTF)."""
    btf = btf or Btf.running()
    return _field_cflags(btf, KERNEL_FIELDS) + _byte_field(btf, "sk_userlocks", "SK_USERLOCKS")


OBSERVE_FIELDS = {
    "SS_OFF_TASK_FILES": ("task_struct", "files", 8),
    "SS_OFF_FILES_FDT": ("files_struct", "fdt", 8),
    "SS_OFF_FDT_MAX_FDS": ("fdtable", "max_fds", 4),
    "SS_OFF_FDT_FD": ("fdtable", "fd", 8),
    "SS_OFF_FILE_PRIVATE_DATA": ("file", "private_data", 8),
    "SS_OFF_SOCKET_SK": ("socket", "sk", 8),
    "SS_OFF_SK_RCVLOWAT": ("sock", "sk_rcvlowat", 4),
    "SS_OFF_SK_RCVTIMEO": ("sock", "sk_rcvtimeo", 8),
    "SS_OFF_SK_ERR": ("sock", "sk_err", 4),
    "SS_OFF_SK_FLAGS": ("sock", "__sk_common.skc_flags", 8),
    "SS_OFF_SK_RCVQ_LEN": ("sock", "sk_receive_queue.qlen", 4),
    "SS_OFF_SK_USER_DATA": ("sock", "sk_user_data", 8),
    "SS_OFF_SK_SNDBUF": ("sock", "sk_sndbuf", 4),
    "SS_OFF_TP_BYTES_SENT": ("tcp_sock", "bytes_sent", 8),
}
"""Kernel struct fields the observation programs read, located in the running kernel's BTF."""


def _field_cflags(btf: Btf, fields: dict[str, tuple[str, str, int]]) -> list[str]:
    out = []
    for macro, (struct_name, member, size) in fields.items():
        m = btf.member(struct_name, member)
        if m.size != size:
            raise KernelUnsupported(
                f"{struct_name}.{member} is {m.size} bytes here; the programs read {size}"
            )
        out.append(f"-D{macro}={m.offset}")
    return out


def _byte_field(btf: Btf, member: str, macro: str) -> list[str]:
    """A ``struct sock`` member the programs read as one byte (a bit-field on older kernels)."""
    m = btf.member("sock", member)
    if m.size not in (0, 1) or m.bit_offset + m.bit_size > 8:
        raise KernelUnsupported(f"sock.{member} is laid out as {m} here; the programs read one byte")
    return [f"-DSS_OFF_{macro}={m.offset}", f"-DSS_{macro.removeprefix('SK_')}_SHIFT={m.bit_offset}"]


def observe_cflags(btf: Btf | None = None) -> list[str]:
    """``-D`` flags of the observation programs (KernelUnsupported where a field is missing)."""
    btf = btf or Btf.running()
    return [
        "-DSS_OBSERVE=1",
        *_field_cflags(btf, OBSERVE_FIELDS),
        *_byte_field(btf, "sk_shutdown", "SK_SHUTDOWN"),
        f"-DSS_FIONREAD_DIFFERS={0 if kernel_has_symbol('tcp_bpf_ioctl') else 1}",
    ]


def kernel_has_symbol(name: str, kallsyms: Path = Path("/proc/kallsyms")) -> bool:
    """Whether the running kernel has function ``name`` (from /proc/kallsyms)."""
    try:
        with kallsyms.open() as f:
            return any(line.split()[2:3] == [name] for line in f)
    except OSError:
        return False


def observation_support(btf: Btf | None = None) -> tuple[list[str], str]:
    """(cflags, "") where the observation programs can run here, else ([], the reason)."""
    try:
        events = tracefs.ensure()
    except KernelError as exc:
        return [], str(exc)
    missing = tracefs.missing(TRACEPOINTS, events)
    if missing:
        return [], f"this kernel lacks the tracepoint(s) {', '.join(missing)}"
    try:
        return observe_cflags(btf), ""
    except KernelUnsupported as exc:
        return [], str(exc)


def _cflags(settings: DatapathSettings) -> list[str]:
    return [
        f'-DSS_PIN_BASE="{settings.pin_base}"',
        f"-DSS_SOCKHASH_SIZE={settings.sockhash_size}",
        f"-DSS_PAIRS_SIZE={settings.pairs_size}",
        f"-DSS_PODS_SIZE={settings.pods_size}",
        f"-DSS_MAX_POLICIES={settings.max_policies}",
        f"-DSS_PROGRAM_TAG={settings.program_tag}",
        f"-DSS_UNREAD_LIMIT={settings.unread_limit}",
        f"-DSS_NODE_TCP_MEM_LOW={settings.node_tcp_memory_low}",
        *kernel_field_cflags(),
        "-Wno-unused-function",
    ]


def _endpoint_struct(key: EndpointTuple) -> EndpointKeyStruct:
    return EndpointKeyStruct(server_netns=key[0], client_netns=key[1], port=key[2])


def _endpoint_tuple(raw_key: object) -> EndpointTuple:
    """A key of the ``verdicts`` or ``evidence`` map as the tuple the agent uses."""
    k = EndpointKeyStruct.from_buffer_copy(bytes(raw_key))  # type: ignore[call-overload]
    return int(k.server_netns), int(k.client_netns), int(k.port)


@contextmanager
def _cgroup_fd(cgroup: Path) -> Iterator[int]:
    try:
        fd = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise KernelError(f"cgroup {cgroup}: cannot open: {exc.strerror}", exc.errno) from exc
    try:
        yield fd
    finally:
        os.close(fd)


class Datapath:
    """The loaded programs and their pinned maps. Create with :meth:`load`."""

    def __init__(
        self, bpf: Any, settings: DatapathSettings, adopted: bool, load_seconds: float, observation: str = ""
    ) -> None:
        self._bpf = bpf
        self.observation = observation
        """Empty when the observation programs run; else why not (Auto then behaves as DryRun)."""
        self.settings = settings
        self.adopted = adopted
        self.load_seconds = load_seconds
        self.mounted_bpffs = False  # True when load() mounted the bpffs at pin_root itself
        self._sockops = bpf.load_func(b"ss_sockops", bpf.SOCK_OPS)
        self._sk_msg = bpf.load_func(b"ss_sk_msg", bpf.SK_MSG)
        self.sockops_id = bpfsys.obj_id(self._sockops.fd)
        self.sk_msg_id = bpfsys.obj_id(self._sk_msg.fd)
        self._sockhash_fd = self._table_fd("sock_hash")
        bpfsys.prog_attach(self._sockhash_fd, self._sk_msg.fd, bpfsys.BPF_SK_MSG_VERDICT)
        self._pods = bpf[b"pod_config"]
        self._counters = bpf[b"counters"]
        self._verdicts = bpf[b"verdicts"]
        self._evidence = bpf[b"evidence"]
        self._demoted = bpf[b"demoted"]
        self._policy_epoch = bpf[b"policy_epoch"]
        if ctypes.sizeof(self._pods.Leaf) != ctypes.sizeof(PodConfigStruct):
            raise KernelError(
                "layout: struct ss_pod_config differs between bpf/socksplice.h and bpf/layout.py"
            )
        if not (settings.pin_dir / "sock_hash").exists():
            raise KernelError(
                f"layout: the maps are not pinned in {settings.pin_dir}: SS_LAYOUT_VERSION in "
                f"bpf/socksplice.h differs from LAYOUT_VERSION {LAYOUT_VERSION} in bpf/layout.py"
            )

    @classmethod
    def load(cls, settings: DatapathSettings = DatapathSettings()) -> Datapath:
        """Compile and load; adopt pinned maps when present. Raises KernelUnsupported/KernelError."""
        if os.geteuid() != 0:
            raise KernelUnsupported(
                "BPF: loading programs needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN)"
            )
        hdrs = headers_mod.ensure()
        log.info("datapath: headers: %s", hdrs.description)
        settings.pin_root.mkdir(parents=True, exist_ok=True)
        mounted = bpffs.ensure(settings.pin_root)
        settings.pin_dir.mkdir(parents=True, exist_ok=True)
        adopted = (settings.pin_dir / "sock_hash").exists()
        start = time.monotonic()
        try:
            from bcc import BPF  # imported late: importing bcc needs libbcc

            observe_flags, observation = (
                observation_support() if settings.observe else ([], "observation is turned off")
            )
            if observation:
                log.warning("datapath: observation: unavailable: %s (Auto behaves as DryRun)", observation)
            source = program_source(observe=bool(observe_flags))
            bpf = BPF(text=source.encode(), cflags=_cflags(settings) + observe_flags)
            dp = cls(bpf, settings, adopted, 0.0, observation)
        except KernelError:
            _discard_failed(settings, adopted)
            raise
        except Exception as exc:  # bcc raises bare Exception for compile and load failures
            _discard_failed(settings, adopted)
            raise KernelError(f"datapath: load failed: {exc}") from exc
        dp.load_seconds = time.monotonic() - start
        dp.mounted_bpffs = mounted
        log.info(
            "datapath: %s pins at %s in %.2fs (sockops id %d, sk_msg id %d)",
            "adopted" if adopted else "created",
            settings.pin_dir,
            dp.load_seconds,
            dp.sockops_id,
            dp.sk_msg_id,
        )
        return dp

    def program_fds(self) -> dict[str, int]:
        """The fds of every loaded program by function name (sockops, sk_msg, the observation
        programs), e.g. to read the kernel's run-time statistics of each."""
        return {name.decode(): int(f.fd) for name, f in self._bpf.funcs.items()}

    def _table_fd(self, name: str) -> int:
        from bcc import lib

        fd = int(lib.bpf_table_fd(self._bpf.module, name.encode()))
        if fd < 0:
            raise KernelError(f"datapath: map {name} not found")
        return fd

    # --- cgroups -------------------------------------------------------------------------

    def attached(self, cgroup: Path) -> list[int]:
        """Ids of the sockops programs attached to ``cgroup`` itself."""
        with _cgroup_fd(cgroup) as fd:
            return bpfsys.prog_query(fd, bpfsys.BPF_CGROUP_SOCK_OPS)

    def attach(self, cgroup: Path) -> AttachOutcome:
        """Ensure our sockops program is the one attached to ``cgroup``. Idempotent."""
        with _cgroup_fd(cgroup) as fd:
            current = bpfsys.prog_query(fd, bpfsys.BPF_CGROUP_SOCK_OPS)
            if current == [self.sockops_id]:
                return "unchanged"
            try:
                bpfsys.prog_attach(fd, self._sockops.fd, bpfsys.BPF_CGROUP_SOCK_OPS, 0)
            except KernelError as exc:
                raise KernelError(f"cgroup {cgroup}: attach sockops: {exc}", exc.errno) from exc
        return "replaced" if current else "attached"

    def detach(self, cgroup: Path) -> bool:
        """Detach whatever sockops program is attached to ``cgroup``. False if none was (or it is gone)."""
        try:
            with _cgroup_fd(cgroup) as fd:
                if not bpfsys.prog_query(fd, bpfsys.BPF_CGROUP_SOCK_OPS):
                    return False
                bpfsys.prog_detach(fd, bpfsys.BPF_CGROUP_SOCK_OPS)
        except KernelError as exc:
            if exc.errno in (errno.ENOENT, errno.ENODEV):
                return False
            raise
        return True

    # --- pod configuration ---------------------------------------------------------------

    def set_pod(self, netns_cookie: int, config: PodDatapathConfig) -> None:
        raw = bytes(config.to_struct())
        self._pods[self._pods.Key(netns_cookie)] = self._pods.Leaf.from_buffer_copy(raw)

    def delete_pod(self, netns_cookie: int) -> bool:
        try:
            del self._pods[self._pods.Key(netns_cookie)]
        except KeyError:
            return False
        return True

    def pods(self) -> dict[int, PodDatapathConfig]:
        out = {}
        for k, v in self._pods.items():
            out[int(k.value)] = PodDatapathConfig.from_struct(PodConfigStruct.from_buffer_copy(bytes(v)))
        return out

    # --- Auto: evidence and verdicts ------------------------------------------------------

    def evidence(self) -> dict[EndpointTuple, dict[str, int]]:
        """Per endpoint, what the observation programs counted (docs/auto.md)."""
        out: dict[EndpointTuple, dict[str, int]] = {}
        for k, per_cpu in self._evidence.items():  # a per-CPU map: one leaf per CPU, summed
            sums = [0] * len(EVIDENCE)
            for leaf in per_cpu:
                counts = EvidenceStruct.from_buffer_copy(bytes(leaf))
                for i in range(len(EVIDENCE)):
                    sums[i] += int(counts.n[i])
            out[_endpoint_tuple(k)] = dict(zip(EVIDENCE, sums, strict=True))
        return out

    def forget_endpoints(self, keys: list[EndpointTuple]) -> None:
        """Drop evidence and verdicts of endpoints whose pods are gone."""
        for key in keys:
            raw = bytes(_endpoint_struct(key))
            for table in (self._evidence, self._verdicts):
                try:
                    del table[table.Key.from_buffer_copy(raw)]
                except KeyError:
                    continue

    def set_verdicts(self, spliced: dict[EndpointTuple, int]) -> None:
        """Make ``verdicts`` hold exactly ``spliced`` (endpoint -> demotion slot): new connections of
        those endpoints are spliced, of every other endpoint not."""
        current: dict[EndpointTuple, int] = {}
        for k, v in self._verdicts.items():
            current[_endpoint_tuple(k)] = int(VerdictStruct.from_buffer_copy(bytes(v)).slot)
        for key in current.keys() - spliced.keys():
            try:
                del self._verdicts[self._verdicts.Key.from_buffer_copy(bytes(_endpoint_struct(key)))]
            except KeyError:
                continue
        for key, slot in spliced.items():
            if current.get(key) == slot:
                continue
            if not 0 < slot < ENDPOINT_SLOTS:
                raise ValueError(f"endpoint slot {slot} is outside 1..{ENDPOINT_SLOTS - 1}")
            leaf = bytes(VerdictStruct(splice=1, slot=slot))
            self._verdicts[self._verdicts.Key.from_buffer_copy(bytes(_endpoint_struct(key)))] = (
                self._verdicts.Leaf.from_buffer_copy(leaf)
            )

    def demoted_slots(self) -> set[int]:
        """Slots whose demotion flag is set (by the observation programs, or :meth:`set_demoted`)."""
        return {int(k.value) for k, v in self._demoted.items() if int(v.value)}

    def set_demoted(self, slot: int, demoted: bool) -> None:
        """Set or clear a slot's demotion flag (cleared when the slot is given to a new endpoint)."""
        self._demoted[self._demoted.Key(slot)] = self._demoted.Leaf(1 if demoted else 0)

    # --- observation ---------------------------------------------------------------------

    def policy_epoch(self) -> int:
        """The node's NetworkPolicy epoch: connections established under another one send via TCP."""
        return int(self._policy_epoch[self._policy_epoch.Key(0)].value)

    def bump_policy_epoch(self) -> int:
        """Hand every spliced connection established until now back to TCP at its next send
        (sk_msg.c compares the epoch each socket recorded at establishment); returns the new epoch."""
        epoch = (self.policy_epoch() + 1) & 0xFFFFFFFF
        self._policy_epoch[self._policy_epoch.Key(0)] = self._policy_epoch.Leaf(epoch)
        return epoch

    def counters(self, slots: range | list[int] | None = None) -> dict[int, dict[str, int]]:
        """Counter sums over CPUs, per policy slot (default: every slot with a non-zero counter)."""
        wanted = range(self.settings.max_policies) if slots is None else slots
        out: dict[int, dict[str, int]] = {}
        for slot in wanted:
            values = {}
            for i, name in enumerate(COUNTERS):
                values[name] = int(self._counters.sum(self._counters.Key(slot * NR_COUNTERS + i)).value)
            if slots is not None or any(values.values()):
                out[slot] = values
        return out

    def totals(self) -> dict[str, int]:
        """Counters summed over every policy slot."""
        total = dict.fromkeys(COUNTERS, 0)
        for values in self.counters().values():
            for name, n in values.items():
                total[name] += n
        return total

    def spliced_sockets(self) -> int:
        """Sockets currently in the SOCKHASH (the kernel removes them itself on close)."""
        return len(bpfsys.map_keys(self._sockhash_fd, 8))

    # --- teardown ------------------------------------------------------------------------

    def close(self) -> None:
        """Release our fds. Pins, cgroup attachments and spliced sockets stay."""
        self._bpf.cleanup()

    def unpin(self) -> list[str]:
        """Remove the pins (after a drain). Returns the names removed."""
        removed = []
        for name in PINNED_MAPS:
            path = self.settings.pin_dir / name
            try:
                path.unlink()
                removed.append(name)
            except FileNotFoundError:
                continue
        for d in (self.settings.pin_dir, self.settings.pin_dir.parent):
            try:
                d.rmdir()
            except OSError:
                break
        return removed

    def release_bpffs(self) -> bool:
        """Unmount the bpffs that load() mounted, if nothing else is pinned there. True if unmounted."""
        root = self.settings.pin_root
        kernel_entries = {"maps.debug", "progs.debug"}  # iterators every bpffs shows (BPF_PRELOAD)
        if not self.mounted_bpffs or any(p.name not in kernel_entries for p in root.iterdir()):
            return False
        bpffs.unmount(root)
        self.mounted_bpffs = False
        return True
