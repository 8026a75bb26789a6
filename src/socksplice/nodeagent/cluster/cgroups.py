"""Where the kubelet put a pod's cgroup, for both cgroup drivers. Pure over a directory tree.

The kubelet names the pod-level cgroup from the pod's UID and QoS class, under its cgroup root
(``/`` by default; kind runs kubelets with ``--cgroup-root=/kubelet``)::

    cgroupfs driver:  kubepods/burstable/pod<uid>
    systemd driver:   kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice

(Guaranteed pods sit directly under ``kubepods``; systemd unit names use ``_`` for the UID's
``-``.) The runtime adds one child per container: ``cri-containerd-<id>.scope`` (containerd),
``crio-<id>.scope`` and ``crio-conmon-<id>.scope`` (CRI-O, systemd driver) or a bare ``<id>``
(cgroupfs driver). Attaching at the pod level covers every container and its restarts.
``resolve`` tries the known names first and falls back to a bounded search for the UID.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

QOS_CLASSES = ("Guaranteed", "Burstable", "BestEffort")
DEFAULT_ROOTS: tuple[tuple[str, ...], ...] = ((), ("kubelet",))
"""Kubelet cgroup roots tried, as path components: ``/`` and kind's ``/kubelet``."""
SEARCH_DEPTH = 5


class Tree(Protocol):
    """A read-only view of a cgroup2 hierarchy; paths are relative to its root."""

    def is_dir(self, path: PurePosixPath) -> bool: ...
    def children(self, path: PurePosixPath) -> list[str]: ...


class FsTree:
    """The real hierarchy under ``root`` (e.g. ``/sys/fs/cgroup`` or a host mount of it)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def is_dir(self, path: PurePosixPath) -> bool:
        return (self.root / path).is_dir()

    def children(self, path: PurePosixPath) -> list[str]:
        try:
            return sorted(e.name for e in os.scandir(self.root / path) if e.is_dir(follow_symlinks=False))
        except OSError:
            return []


class ListingTree:
    """A recorded hierarchy: one directory per line, relative to the root (``find . -type d``)."""

    def __init__(self, lines: Iterable[str]) -> None:
        self.dirs: set[PurePosixPath] = {PurePosixPath(".")}
        for line in lines:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            p = PurePosixPath(line.removeprefix("./"))
            self.dirs.add(p)
            self.dirs.update(p.parents)

    def is_dir(self, path: PurePosixPath) -> bool:
        return path in self.dirs

    def children(self, path: PurePosixPath) -> list[str]:
        return sorted(d.name for d in self.dirs if d.parent == path and d != path)


@dataclass(frozen=True)
class Resolution:
    path: PurePosixPath
    """The pod-level cgroup directory, relative to the tree's root."""
    driver: str
    """``systemd`` or ``cgroupfs``."""
    runtime: str
    """``containerd``, ``cri-o`` or ``unknown`` (from the container directories' names)."""


def _components(qos: str, root: Sequence[str]) -> list[str]:
    parts = [*root, "kubepods"]
    if qos in ("Burstable", "BestEffort"):
        parts.append(qos.lower())
    return parts


def systemd_path(components: Sequence[str]) -> PurePosixPath:
    """systemd slice nesting: each level is named by the dash-joined components down to it."""
    return PurePosixPath(*("-".join(components[: i + 1]) + ".slice" for i in range(len(components))))


def candidates(
    uid: str, qos: str, roots: Iterable[Sequence[str]] = DEFAULT_ROOTS
) -> list[tuple[str, PurePosixPath]]:
    """(driver, path) where the kubelet would put this pod, for every root and both drivers."""
    out = []
    for root in roots:
        parts = _components(qos, root)
        out.append(("systemd", systemd_path([*parts, "pod" + uid.replace("-", "_")])))
        out.append(("cgroupfs", PurePosixPath(*parts, "pod" + uid)))
    return out


def runtime_of(container_dirs: Iterable[str]) -> str:
    names = list(container_dirs)
    if any(n.startswith("cri-containerd-") for n in names):
        return "containerd"
    if any(n.startswith(("crio-", "crio-conmon-")) for n in names):
        return "cri-o"
    return "unknown"


def _matches(name: str, uid: str) -> bool:
    return name == f"pod{uid}" or name.endswith(f"pod{uid.replace('-', '_')}.slice")


def _search(tree: Tree, uid: str) -> PurePosixPath | None:
    level = [PurePosixPath(".")]
    for _ in range(SEARCH_DEPTH):
        following = []
        for d in level:
            for name in tree.children(d):
                if _matches(name, uid):
                    return d / name
                following.append(d / name)
        level = following
    return None


def resolve(
    tree: Tree, uid: str, qos: str, roots: Iterable[Sequence[str]] = DEFAULT_ROOTS
) -> Resolution | None:
    """The pod-level cgroup of the pod with ``uid`` and QoS class ``qos``, or None (not created yet)."""
    if not uid:
        return None
    found: tuple[str, PurePosixPath] | None = None
    for driver, path in candidates(uid, qos, roots):
        if tree.is_dir(path):
            found = (driver, path)
            break
    if found is None:
        searched = _search(tree, uid)
        if searched is None:
            return None
        found = ("systemd" if searched.name.endswith(".slice") else "cgroupfs", searched)
    driver, path = found
    return Resolution(path, driver, runtime_of(tree.children(path)))


def container_dirs(tree: Tree, pod: PurePosixPath) -> list[PurePosixPath]:
    """The pod's container cgroups that hold application processes (CRI-O's conmon excluded:
    it runs in the host's network namespace)."""
    return [pod / n for n in tree.children(pod) if not n.startswith("crio-conmon-")]
