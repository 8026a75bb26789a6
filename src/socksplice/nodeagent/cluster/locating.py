"""A pod's place in this node's kernel: its pod-level cgroup and its network namespace.

The cgroup comes from ``cgroups.resolve``; the network namespace is that of a process in one of
the pod's containers (``/proc/PID/ns/net``; the agent runs with ``hostPID``). A process in the
host's network namespace is never taken (CRI-O's conmon sits in the pod's cgroup; a
``hostNetwork`` pod is never planned anyway). The oldest process wins: usually the sandbox's
pause process, which lives as long as the pod.

The comparison fails closed: when the host's network namespace (``/proc/1/ns/net``) cannot be
read (no ``SYS_PTRACE``, no ``hostPID``), no process can be proven to be outside it, so no pod is
located; ``Locator.refused`` keeps the reason per pod.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from socksplice.errors import KernelError
from socksplice.nodeagent.cluster import cgroups
from socksplice.nodeagent.targets import PodLocation

log = logging.getLogger(__name__)


def _inode(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _pids(cgroup_dir: Path) -> list[int]:
    try:
        text = (cgroup_dir / "cgroup.procs").read_text()
    except OSError:
        return []
    return sorted(int(t) for t in text.split() if t.isdigit())


def netns_of(
    cgroup_root: Path,
    tree: cgroups.Tree,
    pod: PurePosixPath,
    proc: Path = Path("/proc"),
    host_ns: Path | None = None,
) -> Path | None:
    """``/proc/PID/ns/net`` of the oldest pod process not in the host's netns, or None. Raises
    KernelError when the host's netns (``host_ns``, default ``PROC/1/ns/net``) cannot be read
    (nothing can be compared with it)."""
    host_ns = host_ns or proc / "1" / "ns" / "net"
    try:
        st = os.stat(host_ns)
    except OSError as exc:
        raise KernelError(
            f"{host_ns}: {exc.strerror}: the host's network namespace cannot be read, so no pod "
            "can be proven not to share it (the agent needs hostPID and SYS_PTRACE)",
            exc.errno,
        ) from exc
    host = (st.st_dev, st.st_ino)
    pids = sorted({pid for d in cgroups.container_dirs(tree, pod) for pid in _pids(cgroup_root / d)})
    for pid in pids:
        ns = proc / str(pid) / "ns" / "net"
        ino = _inode(ns)
        if ino is not None and ino != host:
            return ns
    return None


def qos_classes(pod: Mapping[str, Any]) -> tuple[str, ...]:
    """The pod's QoS class from ``status.qosClass``; every class when the API has not set it yet."""
    qos = (pod.get("status") or {}).get("qosClass")
    return (qos,) if qos in cgroups.QOS_CLASSES else cgroups.QOS_CLASSES


class Locator:
    """Finds pods in the kernel; remembers answers while their netns and cgroup still exist."""

    def __init__(self, cgroup_root: Path, proc: Path = Path("/proc"), host_ns: Path | None = None) -> None:
        self.cgroup_root = cgroup_root
        self.proc = proc
        self.host_ns = host_ns
        self.tree = cgroups.FsTree(cgroup_root)
        self._cache: dict[str, PodLocation] = {}
        self.refused: dict[str, str] = {}
        """Pod uid → why it was not located although its cgroup exists (fail-closed guards)."""

    def locate(self, pod: Mapping[str, Any]) -> PodLocation | None:
        uid = str((pod.get("metadata") or {}).get("uid") or "")
        cached = self._cache.get(uid)
        if cached is not None and cached.cgroup.is_dir() and _inode(cached.netns) is not None:
            return cached
        self._cache.pop(uid, None)
        for qos in qos_classes(pod):
            found = cgroups.resolve(self.tree, uid, qos)
            if found is None:
                continue
            try:
                ns = netns_of(self.cgroup_root, self.tree, found.path, self.proc, self.host_ns)
            except KernelError as exc:
                if self.refused.get(uid) != str(exc):
                    log.error("pod %s: not attached: %s", uid, exc)
                self.refused[uid] = str(exc)
                return None
            self.refused.pop(uid, None)
            if ns is None:
                return None
            location = PodLocation(self.cgroup_root / found.path, ns)
            self._cache[uid] = location
            return location
        return None

    def forget(self, live_uids: set[str]) -> None:
        for uid in set(self._cache) - live_uids:
            del self._cache[uid]
        for uid in set(self.refused) - live_uids:
            del self.refused[uid]
