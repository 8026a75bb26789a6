"""What socksplice needs from a node, as named checks with a verdict, a severity and a fix.

``preflight()`` is cheap (no compiler, no bcc; a few syscalls and one cgroup directory): the agent
runs it before loading. ``run_checks()`` adds every map type, bpffs, headers, the netns cookie, each
BPF helper per program type (tiny bcc programs) and, unless told not to, a full load of the data
path into a private bpffs.

Testing aid: ``SOCKSPLICE_SIMULATE_MISSING`` (comma-separated check names, e.g. ``map.sockhash``)
makes those checks fail with the detail :data:`SIMULATED_DETAIL`, as on a kernel without them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from socksplice.doctor import probes
from socksplice.doctor.probes import ProbeResult

Severity = Literal["fatal", "warn", "info"]

SIMULATE_ENV = "SOCKSPLICE_SIMULATE_MISSING"
SIMULATED_DETAIL = f"simulated by {SIMULATE_ENV}"
DEFAULT_PIN_ROOT = Path("/sys/fs/bpf")
PRIVILEGES_FIRST = "fix `privileges` first and re-run (this may only be a lack of privileges)"

_UPGRADE = "upgrade the kernel: Linux 5.15 or newer allows every helper the data path uses"
_STREAM_PARSER = "use a kernel with CONFIG_BPF_STREAM_PARSER=y (Linux 4.18+)"


@dataclass(frozen=True)
class Check:
    name: str
    """Stable id, e.g. ``map.sockhash``; documented in docs/doctor.md."""
    ok: bool
    severity: Severity
    """``fatal``: socksplice cannot accelerate without it; ``warn``/``info``: it can."""
    detail: str
    """What was found."""
    fix: str
    """What to do; empty when ok."""


@dataclass(frozen=True)
class _Spec:
    severity: Severity
    fix: str


SPECS: dict[str, _Spec] = {
    "privileges": _Spec(
        "fatal",
        "run the agent as root with CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_SYS_PTRACE and CAP_SYSLOG "
        "(the chart's agent.capabilities; docs/install.md lists why each is needed)",
    ),
    "bpf.syscall": _Spec(
        "fatal",
        "use a kernel built with CONFIG_BPF_SYSCALL=y and make sure no seccomp profile blocks bpf(2) "
        "(the chart's seccompProfile RuntimeDefault allows it to a process with CAP_SYS_ADMIN; "
        "a custom profile must allow bpf)",
    ),
    "map.sockhash": _Spec(
        "fatal",
        "use a kernel with CONFIG_BPF_STREAM_PARSER=y (SOCKHASH, Linux 4.18+); "
        "socksplice cannot splice without it",
    ),
    "map.sk_storage": _Spec(
        "fatal", "use Linux 5.2 or newer (BPF_MAP_TYPE_SK_STORAGE) and a bcc that emits map BTF (bcc 0.12+)"
    ),
    "map.lru_hash": _Spec("fatal", "use Linux 4.10 or newer (BPF_MAP_TYPE_LRU_HASH)"),
    "map.percpu_array": _Spec("fatal", "use Linux 4.6 or newer (BPF_MAP_TYPE_PERCPU_ARRAY)"),
    "cgroup2.mount": _Spec(
        "fatal",
        "mount cgroup v2 (mount -t cgroup2 none /sys/fs/cgroup/unified) or boot with "
        "systemd.unified_cgroup_hierarchy=1; in a pod, mount the host's /sys/fs/cgroup",
    ),
    "cgroup2.attach_sockops": _Spec(
        "fatal",
        "use a kernel with CONFIG_CGROUP_BPF=y, give the agent CAP_NET_ADMIN (cgroup attach) and "
        "mount the host's cgroup2 hierarchy (hostPath /sys/fs/cgroup); no write access is needed",
    ),
    "bpffs": _Spec(
        "fatal",
        "mount a BPF filesystem at the pin root (mount -t bpf bpf /sys/fs/bpf), or let the agent mount it: "
        "it needs CAP_SYS_ADMIN and a kernel with CONFIG_BPF_SYSCALL=y",
    ),
    "netns.cookie": _Spec("fatal", "use Linux 5.14 or newer (SO_NETNS_COOKIE): pods are identified by it"),
    "headers": _Spec(
        "fatal",
        "install linux-headers-$(uname -r), or Debian's linux-headers-amd64 as a fallback "
        "(scripts/install.sh does), or set BCC_KERNEL_SOURCE to a headers tree",
    ),
    "bcc": _Spec("fatal", "install bcc's Python bindings and libbcc (Debian: python3-bpfcc)"),
    "helper.sockops.get_socket_cookie": _Spec("fatal", _UPGRADE),
    "helper.sockops.get_netns_cookie": _Spec("fatal", _UPGRADE),
    "ctx.sockops.snd_nxt_rcv_nxt": _Spec("fatal", _UPGRADE),
    "helper.sockops.sock_hash_update": _Spec("fatal", _STREAM_PARSER),
    "helper.sockops.sk_storage_get": _Spec("fatal", _UPGRADE),
    "helper.sk_msg.sk_storage_get": _Spec("fatal", _UPGRADE),
    "helper.sk_msg.msg_redirect_hash": _Spec("fatal", _STREAM_PARSER),
    "helper.sk_msg.get_netns_cookie": _Spec(
        "info", "nothing to do: the data path does not call it in sk_msg"
    ),
    "observation": _Spec(
        "warn",
        "mount tracefs (mount -t tracefs tracefs /sys/kernel/tracing; the agent does it itself with "
        "CAP_SYS_ADMIN) and use a kernel with sock:sock_recv_length (Linux 6.4+), syscall tracepoints "
        "(CONFIG_FTRACE_SYSCALLS) and BTF; without them Auto never promotes an endpoint (DryRun behaviour)",
    ),
    "datapath.load": _Spec(
        "fatal",
        "if every other check passes this is a socksplice bug on this kernel: "
        "report it with the output of `socksplice doctor --json`",
    ),
}

PREFLIGHT = ("privileges", "bpf.syscall", "map.sockhash", "cgroup2.mount", "cgroup2.attach_sockops")
BCC_DEPENDENT = frozenset(name for group in probes.GROUPS for name in probes.helper_checks(group)) | {
    "datapath.load"
}


def simulated_missing() -> frozenset[str]:
    """Check names listed in ``SOCKSPLICE_SIMULATE_MISSING``."""
    raw = os.environ.get(SIMULATE_ENV, "")
    return frozenset(part.strip() for part in raw.split(",") if part.strip())


def make_check(name: str, result: ProbeResult) -> Check:
    spec = SPECS[name]
    if name in simulated_missing():
        result = ProbeResult(False, SIMULATED_DETAIL)
    fix = "" if result.ok else (result.fix or spec.fix)
    return Check(name=name, ok=result.ok, severity=spec.severity, detail=result.detail, fix=fix)


def _run(name: str, probe: Callable[[], ProbeResult]) -> Check:
    if name in simulated_missing():
        return make_check(name, ProbeResult(False, SIMULATED_DETAIL))
    return make_check(name, probe())


def _finish(checks: Iterable[Check]) -> list[Check]:
    """Order as in SPECS; when privileges fail, point every other failure's fix at them first."""
    index = {name: i for i, name in enumerate(SPECS)}
    ordered = sorted(checks, key=lambda c: index.get(c.name, len(index)))
    if all(c.ok for c in ordered if c.name == "privileges"):
        return ordered
    return [
        c if c.ok or c.name == "privileges" else replace(c, fix=f"{PRIVILEGES_FIRST}; otherwise: {c.fix}")
        for c in ordered
    ]


def preflight() -> list[Check]:
    """Cheap checks the agent runs before loading: privileges, bpf(2), SOCKHASH, cgroup2."""
    return _finish(_preflight())


def _preflight() -> list[Check]:
    singles: dict[str, Callable[[], ProbeResult]] = {
        "privileges": probes.privileges,
        "bpf.syscall": probes.bpf_syscall,
        "map.sockhash": probes.sockhash,
        "cgroup2.mount": probes.cgroup2_mount,
        "cgroup2.attach_sockops": probes.cgroup2_attach_sockops,
    }
    return [_run(name, singles[name]) for name in PREFLIGHT]


def run_checks(include_load: bool = True, pin_root: Path = DEFAULT_PIN_ROOT) -> list[Check]:
    """Every check; ``include_load=False`` skips the full data-path load (the slowest check)."""
    checks = _preflight()
    checks += [
        _run("map.lru_hash", probes.lru_hash),
        _run("map.percpu_array", probes.percpu_array),
        _run("bpffs", lambda: probes.bpffs_status(pin_root)),
        _run("netns.cookie", probes.netns_cookie),
        _run("headers", probes.headers),
        _run("bcc", probes.bcc_available),
    ]
    blocked = [c.name for c in checks if c.name in ("headers", "bcc") and not c.ok]
    wanted = [name for name in BCC_DEPENDENT if include_load or name != "datapath.load"]
    if blocked:
        why = f"not run: {' and '.join(blocked)} failed"
        checks += [make_check(name, ProbeResult(False, why)) for name in wanted]
        return _finish(checks)
    for group in probes.GROUPS:
        results = probes.run_group(group)
        checks += [make_check(name, results[name]) for name in probes.helper_checks(group)]
    checks.append(_run("observation", probes.observation))
    if include_load:
        checks.append(_run("datapath.load", probes.datapath_load))
    return _finish(checks)


def fatal(checks: Iterable[Check]) -> list[Check]:
    """The failed checks without which socksplice cannot accelerate."""
    return [c for c in checks if not c.ok and c.severity == "fatal"]


def hazards() -> list[dict[str, object]]:
    """Behavioural hazards of the data path on this kernel, found by self-tests, not feature probes.

    A feature check says whether socksplice *can* splice here; a hazard says what changes for an
    application when it does, e.g. a blocking ``recv`` returning ``EAGAIN`` after the socket's
    own ``shutdown(SHUT_WR)`` (docs/hazards.md). Each entry is a JSON object with at least
    ``name`` (stable id), ``present`` (bool, or None when it could not be tested) and ``detail``.
    """
    from socksplice.doctor.hazards import blocking_eagain

    return [blocking_eagain()]
