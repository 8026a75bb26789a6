"""Probes of what this kernel and process can do for socksplice's data path.

Every probe returns a :class:`ProbeResult` and never raises: an unsupported kernel, a missing
library or missing privileges are results, not crashes. Probes clean up everything they create
(maps, programs, cgroup directories, bpffs mounts) before returning.

The raw bpf(2) commands here (``BPF_MAP_CREATE``, ``BPF_PROG_LOAD``) complement
:mod:`socksplice.kernel.bpfsys`; they exist so the cheap probes need neither bcc nor headers.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import struct
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from socksplice.errors import KernelError, SockspliceError
from socksplice.kernel import bpffs, bpfsys, cgroup2, netns

# --- result -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    detail: str
    fix: str = ""
    """A fix specific to what was found; empty means the check's standard fix applies."""


def _guarded(what: str, fn: Callable[[], ProbeResult]) -> ProbeResult:
    try:
        return fn()
    except Exception as exc:  # a probe must never crash the doctor
        return ProbeResult(False, f"{what}: unexpected error: {type(exc).__name__}: {exc}")


# --- raw bpf(2) ---------------------------------------------------------------------------------

BPF_MAP_TYPE_ARRAY = 2
BPF_MAP_TYPE_PERCPU_ARRAY = 6
BPF_MAP_TYPE_LRU_HASH = 9
BPF_MAP_TYPE_SOCKHASH = 18
BPF_MAP_TYPE_SK_STORAGE = 24

BPF_PROG_TYPE_SOCK_OPS = 13


# r0 = 1; exit  (a sockops program that does nothing)
_RETURN_ONE = struct.pack("=BBhi", 0xB7, 0, 0, 1) + struct.pack("=BBhi", 0x95, 0, 0, 0)


def load_trivial_sockops() -> int:
    """BPF_PROG_LOAD of a two-instruction sockops program; returns the program fd."""
    insns = ctypes.create_string_buffer(_RETURN_ONE, len(_RETURN_ONE))
    license_ = ctypes.create_string_buffer(b"GPL")
    attr = bpfsys.pack_attr(
        "=IIQQ",
        BPF_PROG_TYPE_SOCK_OPS,
        len(_RETURN_ONE) // 8,
        ctypes.addressof(insns),
        ctypes.addressof(license_),
    )
    return bpfsys.call(bpfsys.BPF_PROG_LOAD, attr, "BPF_PROG_LOAD sockops")


# --- privileges ---------------------------------------------------------------------------------

CAP_NET_ADMIN = 12
CAP_SYS_PTRACE = 19
CAP_SYS_ADMIN = 21
CAP_SYSLOG = 34
# What the agent needs each capability for; docs/install.md has the same table, with how each
# was tested. CAP_BPF and CAP_PERFMON are not listed: CAP_SYS_ADMIN covers both.
NEEDED_CAPS: dict[int, tuple[str, str]] = {
    CAP_SYS_ADMIN: ("CAP_SYS_ADMIN", "BPF program loads and maps, bpffs mounts, setns into pod netns"),
    CAP_NET_ADMIN: ("CAP_NET_ADMIN", "cgroup sockops attach and the local pods' veths and routes"),
    CAP_SYS_PTRACE: ("CAP_SYS_PTRACE", "reading /proc/PID/ns/net of pod processes (cluster mode)"),
    CAP_SYSLOG: (
        "CAP_SYSLOG",
        "bcc finds bpf_probe_read_kernel in /proc/kallsyms (addresses read as 0 without it, "
        "and sk_msg programs then fail to load)",
    ),
}


def effective_caps(status: Path = Path("/proc/self/status")) -> int | None:
    try:
        for line in status.read_text().splitlines():
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    except (OSError, ValueError):
        return None
    return None


def privileges(status: Path = Path("/proc/self/status")) -> ProbeResult:
    euid = os.geteuid()
    caps = effective_caps(status)
    if caps is None:
        return ProbeResult(False, f"euid {euid}; cannot read CapEff from {status}")
    have = [name for bit, (name, _why) in sorted(NEEDED_CAPS.items()) if caps >> bit & 1]
    missing = [f"{name} ({why})" for bit, (name, why) in sorted(NEEDED_CAPS.items()) if not caps >> bit & 1]
    detail = f"euid {euid}, effective {', '.join(have) or 'none of the capabilities the agent needs'}"
    problems = []
    if euid != 0:
        problems.append("not root (the loader refuses to run as non-root)")
    if missing:
        problems.append(f"missing {'; '.join(missing)}")
    if problems:
        return ProbeResult(False, f"{detail}; {'; '.join(problems)}")
    return ProbeResult(True, detail)


# --- bpf syscall and maps -----------------------------------------------------------------------


def bpf_syscall() -> ProbeResult:
    def run() -> ProbeResult:
        try:
            fd = bpfsys.map_create(BPF_MAP_TYPE_ARRAY, 4, 4, 1)
        except KernelError as exc:
            return ProbeResult(False, f"bpf(2) unusable: {exc}")
        os.close(fd)
        return ProbeResult(True, "bpf(2) BPF_MAP_CREATE of a 1-entry ARRAY works")

    return _guarded("bpf(2)", run)


def map_type(map_type_id: int, label: str, key_size: int, value_size: int) -> ProbeResult:
    def run() -> ProbeResult:
        try:
            fd = bpfsys.map_create(map_type_id, key_size, value_size, 4)
        except KernelError as exc:
            return ProbeResult(False, f"{label} (type {map_type_id}) cannot be created: {exc}")
        os.close(fd)
        return ProbeResult(
            True, f"{label} (type {map_type_id}, key {key_size} / value {value_size} B) created"
        )

    return _guarded(label, run)


def sockhash() -> ProbeResult:
    return map_type(BPF_MAP_TYPE_SOCKHASH, "SOCKHASH", 8, 4)


def lru_hash() -> ProbeResult:
    return map_type(BPF_MAP_TYPE_LRU_HASH, "LRU_HASH", 8, 8)


def percpu_array() -> ProbeResult:
    return map_type(BPF_MAP_TYPE_PERCPU_ARRAY, "PERCPU_ARRAY", 4, 8)


# --- cgroup v2 ----------------------------------------------------------------------------------

DOCTOR_CGROUP_PREFIX = "socksplice-doctor-"
BPF_F_ALLOW_MULTI = 2  # linux/bpf.h: several programs of one type on one cgroup


def cgroup2_mount() -> ProbeResult:
    def run() -> ProbeResult:
        try:
            root = cgroup2.find_root()
        except SockspliceError as exc:
            return ProbeResult(False, str(exc))
        return ProbeResult(True, f"cgroup2 mounted at {root}")

    return _guarded("cgroup2", run)


def cgroup2_attach_sockops() -> ProbeResult:
    """Attach a trivial sockops program, query it and detach it again.

    The program goes on a temporary cgroup when one can be created at the cgroup2 root. The root
    is mode 0555: without CAP_DAC_OVERRIDE (the chart does not grant it) even root cannot create
    one there, and the agent never needs to, since it attaches to the pods' existing cgroups. The
    test then attaches the program beside any others at the root itself (``BPF_F_ALLOW_MULTI``;
    it returns 1 and changes nothing for the sockets that run it) and detaches it at once.
    """

    def run() -> ProbeResult:
        try:
            root = cgroup2.find_root()
        except SockspliceError as exc:
            return ProbeResult(False, f"no cgroup2 hierarchy: {exc}")
        path = root / f"{DOCTOR_CGROUP_PREFIX}{os.getpid()}"
        try:
            path.mkdir(exist_ok=True)
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                return ProbeResult(False, f"cannot create {path}: {exc.strerror}")
            return _attach_query_detach(root, BPF_F_ALLOW_MULTI, f"at {root}, no cgroup created")
        try:
            return _attach_query_detach(path, 0, f"temporary cgroup in {root}")
        finally:
            with suppress(SockspliceError):
                cgroup2.remove_tree(path)

    return _guarded("cgroup2 attach", run)


_ATTACH_EPERM = (
    "BPF_PROG_ATTACH needs CAP_NET_ADMIN (and CAP_BPF or CAP_SYS_ADMIN to load); "
    "with BPF_F_ALLOW_MULTI it also fails when a program was attached at that cgroup without it"
)


def _attach_query_detach(path: Path, flags: int, where: str) -> ProbeResult:
    try:
        prog_fd = load_trivial_sockops()
    except KernelError as exc:
        return ProbeResult(False, f"cannot load a sockops program: {exc}")
    try:
        cg_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        os.close(prog_fd)
        return ProbeResult(False, f"cannot open {path}: {exc.strerror}")
    attached = False
    detach_fd = prog_fd if flags else 0
    try:
        prog_id = bpfsys.obj_id(prog_fd)
        bpfsys.prog_attach(cg_fd, prog_fd, bpfsys.BPF_CGROUP_SOCK_OPS, flags)
        attached = True
        ids = bpfsys.prog_query(cg_fd, bpfsys.BPF_CGROUP_SOCK_OPS)
        if prog_id not in ids:
            return ProbeResult(False, f"attached program {prog_id} to {path} but query returned {ids}")
        bpfsys.prog_detach(cg_fd, bpfsys.BPF_CGROUP_SOCK_OPS, detach_fd)
        attached = False
        return ProbeResult(True, f"sockops attach, query and detach work ({where})")
    except KernelError as exc:
        hint = f" ({_ATTACH_EPERM})" if exc.errno == errno.EPERM else ""
        return ProbeResult(False, f"{path}: {exc}{hint}")
    except SockspliceError as exc:
        return ProbeResult(False, f"{path}: {exc}")
    finally:
        if attached:
            with suppress(SockspliceError):
                bpfsys.prog_detach(cg_fd, bpfsys.BPF_CGROUP_SOCK_OPS, detach_fd)
        os.close(cg_fd)
        os.close(prog_fd)


# --- bpffs --------------------------------------------------------------------------------------


def bpffs_supported(filesystems: Path = Path("/proc/filesystems")) -> bool:
    try:
        return any(line.split()[-1:] == ["bpf"] for line in filesystems.read_text().splitlines())
    except OSError:
        return False


@contextmanager
def private_bpffs() -> Iterator[Path]:
    """A bpffs mounted on a fresh temporary directory; unmounted and removed afterwards."""
    target = Path(tempfile.mkdtemp(prefix="socksplice-doctor-bpffs-"))
    mounted = False
    try:
        bpffs.mount(target)
        mounted = True
        yield target
    finally:
        if mounted:
            bpffs.unmount(target)
        target.rmdir()


def bpffs_status(pin_root: Path) -> ProbeResult:
    def run() -> ProbeResult:
        if pin_root.exists() and bpffs.is_bpffs(pin_root):
            return ProbeResult(True, f"{pin_root} is on a bpffs")
        if not bpffs_supported():
            return ProbeResult(False, "the kernel has no bpf filesystem (no 'bpf' in /proc/filesystems)")
        try:
            with private_bpffs():
                pass
        except SockspliceError as exc:
            return ProbeResult(False, f"{pin_root} is not on a bpffs and a bpffs cannot be mounted: {exc}")
        return ProbeResult(True, f"{pin_root} is not on a bpffs: will be mounted by the agent (mount tested)")

    return _guarded("bpffs", run)


# --- headers, netns cookie ----------------------------------------------------------------------


def headers() -> ProbeResult:
    def run() -> ProbeResult:
        from socksplice.bpf import headers as headers_mod

        try:
            found = headers_mod.ensure()
        except SockspliceError as exc:
            return ProbeResult(False, str(exc))
        except Exception as exc:  # the merge runs cp; any failure means no headers
            return ProbeResult(False, f"packaged headers could not be prepared: {exc}")
        return ProbeResult(True, found.description)

    return _guarded("headers", run)


def netns_cookie() -> ProbeResult:
    def run() -> ProbeResult:
        try:
            value = netns.cookie()
        except SockspliceError as exc:
            return ProbeResult(False, str(exc))
        return ProbeResult(True, f"SO_NETNS_COOKIE works (this namespace: {value})")

    return _guarded("netns cookie", run)


def bcc_available() -> ProbeResult:
    def run() -> ProbeResult:
        try:
            import bcc
        except Exception as exc:  # ImportError, or OSError from loading libbcc
            return ProbeResult(False, f"cannot import bcc: {exc}")
        version = getattr(bcc, "__version__", "unknown version")
        return ProbeResult(True, f"bcc {version} ({Path(bcc.__file__ or '?').parent})")

    return _guarded("bcc", run)


# --- helpers per program type (bcc) -------------------------------------------------------------


@dataclass(frozen=True)
class HelperProbe:
    check: str
    """Check name, e.g. ``helper.sockops.get_netns_cookie``."""
    func: str
    """Function in the probe's C text."""
    prog_type: str
    """``SOCK_OPS`` or ``SK_MSG`` (a bcc ``BPF`` attribute)."""
    what: str


@dataclass(frozen=True)
class ProbeGroup:
    """One bcc compile; each function is loaded separately so a failure names its helper."""

    name: str
    text: str
    probes: tuple[HelperProbe, ...]
    map_check: str = ""
    """Check reported for the group's map (created when bcc loads the module), if any."""
    map_name: str = ""


_PRELUDE = "#include <uapi/linux/bpf.h>\n"

PLAIN = ProbeGroup(
    name="plain",
    text=_PRELUDE
    + r"""
static __u64 (*dr_get_socket_cookie)(void *ctx) = (void *)BPF_FUNC_get_socket_cookie;
int dr_sockops_get_socket_cookie(struct bpf_sock_ops *skops)
{
	dr_get_socket_cookie(skops);
	return 1;
}
int dr_sockops_get_netns_cookie(struct bpf_sock_ops *skops)
{
	bpf_get_netns_cookie(skops);
	return 1;
}
int dr_sockops_seq(struct bpf_sock_ops *skops)
{
	__u32 snd = *(volatile __u32 *)&skops->snd_nxt;
	__u32 rcv = *(volatile __u32 *)&skops->rcv_nxt;
	return 1;
}
int dr_sk_msg_get_netns_cookie(struct sk_msg_md *msg)
{
	bpf_get_netns_cookie(msg);
	return SK_PASS;
}
""",
    probes=(
        HelperProbe(
            "helper.sockops.get_socket_cookie",
            "dr_sockops_get_socket_cookie",
            "SOCK_OPS",
            "bpf_get_socket_cookie in SOCK_OPS",
        ),
        HelperProbe(
            "helper.sockops.get_netns_cookie",
            "dr_sockops_get_netns_cookie",
            "SOCK_OPS",
            "bpf_get_netns_cookie in SOCK_OPS",
        ),
        HelperProbe(
            "ctx.sockops.snd_nxt_rcv_nxt",
            "dr_sockops_seq",
            "SOCK_OPS",
            "reading bpf_sock_ops.snd_nxt and rcv_nxt",
        ),
        HelperProbe(
            "helper.sk_msg.get_netns_cookie",
            "dr_sk_msg_get_netns_cookie",
            "SK_MSG",
            "bpf_get_netns_cookie in SK_MSG",
        ),
    ),
)

SOCKHASH = ProbeGroup(
    name="sockhash",
    text=_PRELUDE
    + r"""
BPF_SOCKHASH(dr_hash, __u64, 16);
int dr_sockops_sock_hash_update(struct bpf_sock_ops *skops)
{
	__u64 key = 1;
	int rc = dr_hash.sock_hash_update(skops, &key, BPF_ANY);
	return 1;
}
int dr_sk_msg_msg_redirect_hash(struct sk_msg_md *msg)
{
	__u64 key = 1;
	long verdict = dr_hash.msg_redirect_hash(msg, &key, BPF_F_INGRESS);
	return SK_PASS;
}
""",
    probes=(
        HelperProbe(
            "helper.sockops.sock_hash_update",
            "dr_sockops_sock_hash_update",
            "SOCK_OPS",
            "bpf_sock_hash_update in SOCK_OPS",
        ),
        HelperProbe(
            "helper.sk_msg.msg_redirect_hash",
            "dr_sk_msg_msg_redirect_hash",
            "SK_MSG",
            "bpf_msg_redirect_hash in SK_MSG",
        ),
    ),
)

SK_STORAGE = ProbeGroup(
    name="sk_storage",
    text=_PRELUDE
    + r"""
BPF_SK_STORAGE(dr_store, __u64);
int dr_sockops_sk_storage_get(struct bpf_sock_ops *skops)
{
	struct bpf_sock *sk = skops->sk;
	if (!sk)
		return 1;
	__u64 *v = dr_store.sk_storage_get(sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (v)
		*v = 1;
	return 1;
}
int dr_sk_msg_sk_storage_get(struct sk_msg_md *msg)
{
	struct bpf_sock *sk = msg->sk;
	if (!sk)
		return SK_PASS;
	__u64 *v = dr_store.sk_storage_get(sk, 0, 0);
	if (v)
		*v += 1;
	return SK_PASS;
}
""",
    probes=(
        HelperProbe(
            "helper.sockops.sk_storage_get",
            "dr_sockops_sk_storage_get",
            "SOCK_OPS",
            "bpf_sk_storage_get(F_CREATE) on skops->sk",
        ),
        HelperProbe(
            "helper.sk_msg.sk_storage_get",
            "dr_sk_msg_sk_storage_get",
            "SK_MSG",
            "bpf_sk_storage_get on msg->sk",
        ),
    ),
    map_check="map.sk_storage",
    map_name="dr_store",
)

GROUPS = (PLAIN, SOCKHASH, SK_STORAGE)


@contextmanager
def captured_stderr() -> Iterator[list[str]]:
    """Capture fd 2 (clang diagnostics and verifier logs from libbcc); the text is appended on exit."""
    out: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield out
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            out.append(tmp.read().decode(errors="replace"))


_LOG_NOISE = (
    "processed ",
    "verification time",
    "stack depth",
    "bpf: Failed to load program",
    "In file included",
)


def reason_from_log(log: str) -> str:
    """The line of a verifier log or clang output that says why, e.g. 'cannot use helper ...'."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    for line in lines:
        if "error:" in line:
            return line
    for line in reversed(lines):
        if line[0].isdigit() or line.startswith(_LOG_NOISE) or line.startswith(";"):
            continue
        return line
    return ""


def _describe(exc: BaseException, log: str) -> str:
    reason = reason_from_log(log)
    return f"{exc}: {reason}" if reason and reason not in str(exc) else str(exc)


def run_group(group: ProbeGroup) -> dict[str, ProbeResult]:
    """Compile the group's text once, then load each function alone. Never raises."""
    results: dict[str, ProbeResult] = {}
    try:
        from bcc import BPF
    except Exception as exc:
        return _all_failed(group, f"not run: cannot import bcc: {exc}")
    bpf, failure = _compile(BPF, group.text)
    if bpf is None:
        return _all_failed(group, f"probe program did not compile or its map could not be created: {failure}")
    try:
        if group.map_check:
            results[group.map_check] = _map_fd_result(bpf, group)
        for probe in group.probes:
            results[probe.check] = _load_one(bpf, probe)
    except Exception as exc:
        for probe in group.probes:
            results.setdefault(probe.check, ProbeResult(False, f"{probe.what}: probe error: {exc}"))
    finally:
        with suppress(Exception):
            bpf.cleanup()
    return results


def _compile(bpf_class: Any, text: str) -> tuple[Any, str]:
    """(BPF object, "") or (None, why): bcc raises bare Exception for compile and map failures."""
    with captured_stderr() as log:
        try:
            return bpf_class(text=text.encode()), ""
        except Exception as exc:
            failure = exc
    return None, _describe(failure, "".join(log))


def _map_fd_result(bpf: Any, group: ProbeGroup) -> ProbeResult:
    from bcc import lib

    fd = int(lib.bpf_table_fd(bpf.module, group.map_name.encode()))
    if fd < 0:
        return ProbeResult(False, f"bcc loaded the probe but map {group.map_name} has no fd")
    return ProbeResult(True, "SK_STORAGE map created by bcc (with BTF)")


def _load_one(bpf: Any, probe: HelperProbe) -> ProbeResult:
    prog_type = getattr(bpf, probe.prog_type)
    with captured_stderr() as log:
        try:
            bpf.load_func(probe.func.encode(), prog_type)
        except Exception as exc:
            failure: BaseException | None = exc
        else:
            failure = None
    if failure is not None:
        return ProbeResult(False, f"{probe.what}: refused: {_describe(failure, ''.join(log))}")
    return ProbeResult(True, f"{probe.what}: verifier accepts")


def _all_failed(group: ProbeGroup, detail: str) -> dict[str, ProbeResult]:
    results = {p.check: ProbeResult(False, f"{p.what}: {detail}") for p in group.probes}
    if group.map_check:
        results[group.map_check] = ProbeResult(False, detail)
    return results


def helper_checks(group: ProbeGroup) -> list[str]:
    names = [group.map_check] if group.map_check else []
    return names + [p.check for p in group.probes]


# --- full data path -----------------------------------------------------------------------------


def observation() -> ProbeResult:
    """Whether Auto mode's observation programs can run here: tracefs, tracepoints, BTF fields."""

    def run() -> ProbeResult:
        from socksplice.bpf.programs import TRACEPOINTS, kernel_has_symbol, observation_support

        _, reason = observation_support()
        if reason:
            return ProbeResult(False, f"{reason}: Auto mode behaves as DryRun on this node")
        fionread = "served by tcp_bpf" if kernel_has_symbol("tcp_bpf_ioctl") else "watched (no tcp_bpf_ioctl)"
        found = f"{len(TRACEPOINTS)} tracepoints and their BTF fields found"
        return ProbeResult(True, f"{found}; FIONREAD {fionread}")

    return _guarded("observation", run)


def datapath_load() -> ProbeResult:
    """Compile and load the real programs into a private bpffs, then release and unpin everything."""

    def run() -> ProbeResult:
        try:
            with private_bpffs() as root:
                return _load_datapath(root)
        except SockspliceError as exc:
            return ProbeResult(False, f"cannot mount a private bpffs for the trial load: {exc}")

    return _guarded("datapath", run)


def _load_datapath(pin_root: Path) -> ProbeResult:
    from socksplice.bpf.loader import Datapath, DatapathSettings

    with captured_stderr() as log:
        try:
            dp = Datapath.load(DatapathSettings(pin_root=pin_root, name="doctor"))
        except Exception as exc:  # KernelError/KernelUnsupported, or anything bcc raises
            failure: BaseException = exc
        else:
            try:
                dp.close()
            finally:
                dp.unpin()
            return ProbeResult(
                True,
                f"sockops + sk_msg compiled and loaded in {dp.load_seconds:.2f}s "
                f"(program ids {dp.sockops_id}/{dp.sk_msg_id})",
            )
    return ProbeResult(False, f"data path did not load: {_describe(failure, ''.join(log))}")
