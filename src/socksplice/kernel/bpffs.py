"""Make sure a BPF filesystem is mounted where pins live.

Like Cilium's init container, the agent mounts bpffs itself when the directory it wants to pin
under is not on one (``/sys/fs/bpf`` is a plain directory on some hosts).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from pathlib import Path

from socksplice.errors import KernelError

log = logging.getLogger(__name__)

PROC_MOUNTS = Path("/proc/mounts")


def mount_point_of(path: Path, mounts: Path = PROC_MOUNTS) -> tuple[Path, str] | None:
    """The deepest mount containing ``path`` and its filesystem type, from the mount table."""
    path = Path(os.path.realpath(path))
    best: tuple[Path, str] | None = None
    for line in mounts.read_text().splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        mnt = Path(fields[1].replace("\\040", " "))
        if (path == mnt or mnt in path.parents) and (best is None or len(str(mnt)) >= len(str(best[0]))):
            best = (mnt, fields[2])
    return best


def is_bpffs(path: Path) -> bool:
    found = mount_point_of(path)
    return found is not None and found[1] == "bpf"


def mount(target: Path) -> None:
    """Mount a bpffs at ``target`` (created if missing)."""
    target.mkdir(parents=True, exist_ok=True)
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.mount(b"bpf", str(target).encode(), b"bpf", 0, None) != 0:
        err = ctypes.get_errno()
        raise KernelError(f"bpffs {target}: mount failed: {os.strerror(err)}", err)


def ensure(pin_root: Path) -> bool:
    """Ensure ``pin_root`` lies on a bpffs; mount one at ``pin_root`` if not. True if mounted now."""
    if pin_root.exists() and is_bpffs(pin_root):
        return False
    log.warning("bpffs: %s is not on a BPF filesystem: mounting one there", pin_root)
    mount(pin_root)
    return True


def unmount(target: Path) -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.umount2(str(target).encode(), 0) != 0:
        err = ctypes.get_errno()
        raise KernelError(f"bpffs {target}: unmount failed: {os.strerror(err)}", err)
