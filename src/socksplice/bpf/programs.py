"""What the programs are made of, and how they are compiled for this kernel and these settings.

Shared by the agent (:mod:`socksplice.bpf.loader`, which never imports bcc) and the short-lived
compiler (:mod:`socksplice.bpf.compiling`): sources, pinned map names, tracepoints, the
settings compiled in as ``-D`` knobs, and the kernel struct offsets read from BTF.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from socksplice.bpf.layout import LAYOUT_VERSION
from socksplice.errors import KernelError, KernelUnsupported
from socksplice.kernel import tracefs
from socksplice.kernel.btf import Btf

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


def build_cflags(settings: DatapathSettings) -> list[str]:
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
