"""Find the cgroup v2 hierarchy and manage directories in it.

Hosts may mount cgroup2 at ``/sys/fs/cgroup`` (unified) or at ``/sys/fs/cgroup/unified``
(hybrid, next to the v1 controllers). socksplice only ever creates directories and moves
processes in the cgroup2 hierarchy; v1 hierarchies carry the machine's own accounting.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from socksplice.errors import KernelError, KernelUnsupported

PROC_MOUNTS = Path("/proc/mounts")


def find_root(mounts: Path = PROC_MOUNTS) -> Path:
    """Return the mount point of the cgroup2 hierarchy, or raise KernelUnsupported."""
    try:
        text = mounts.read_text()
    except OSError as exc:
        raise KernelUnsupported(f"{mounts}: cannot read mount table: {exc}") from exc
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2] == "cgroup2":
            return Path(fields[1].replace("\\040", " "))
    raise KernelUnsupported(
        "cgroup2: no cgroup v2 hierarchy is mounted; mount one "
        "(mount -t cgroup2 none /sys/fs/cgroup/unified) or boot with systemd.unified_cgroup_hierarchy=1"
    )


def ensure_dir(path: Path) -> Path:
    """Create a cgroup directory (and parents); existing is fine."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise KernelError(f"cgroup {path}: cannot create: {exc.strerror}", exc.errno) from exc
    return path


def remove_tree(path: Path) -> None:
    """Remove a cgroup directory and its empty descendants, deepest first; gone is fine.

    A cgroup with live processes cannot be removed (EBUSY): that is reported, not hidden.
    """
    if not path.exists():
        return
    for dirpath, _dirnames, _files in sorted(os.walk(path), key=lambda t: -len(t[0])):
        try:
            os.rmdir(dirpath)
        except FileNotFoundError:
            continue
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                continue
            raise KernelError(f"cgroup {dirpath}: cannot remove: {exc.strerror}", exc.errno) from exc


def move_self(path: Path) -> None:
    """Move the calling process into cgroup ``path`` (used in a child before exec)."""
    (path / "cgroup.procs").write_text("0\n")
