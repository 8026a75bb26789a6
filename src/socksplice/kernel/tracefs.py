"""Make sure tracefs is mounted, and tell which tracepoints this kernel has.

The observation programs attach to tracepoints, whose formats bcc reads from tracefs. Like bpffs,
tracefs is not mounted on every host (it is not here): the agent mounts it at
``/sys/kernel/tracing`` when it finds none there or under debugfs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from socksplice.errors import KernelError
from socksplice.kernel.bpffs import mount_point_of

log = logging.getLogger(__name__)

TRACEFS = Path("/sys/kernel/tracing")
DEBUGFS_TRACING = Path("/sys/kernel/debug/tracing")


def events_dir() -> Path | None:
    """The mounted tracefs ``events`` directory, or None."""
    for root in (TRACEFS, DEBUGFS_TRACING):
        found = mount_point_of(root) if root.exists() else None
        if found is not None and found[1] == "tracefs" and (root / "events").is_dir():
            return root / "events"
    return None


def ensure() -> Path:
    """The ``events`` directory, mounting tracefs at /sys/kernel/tracing if none is mounted."""
    found = events_dir()
    if found is not None:
        return found
    log.warning("tracefs: not mounted: mounting one at %s", TRACEFS)
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.mount(b"tracefs", str(TRACEFS).encode(), b"tracefs", 0, None) != 0:
        err = ctypes.get_errno()
        raise KernelError(f"tracefs {TRACEFS}: mount failed: {os.strerror(err)}", err)
    found = events_dir()
    if found is None:
        raise KernelError(f"tracefs {TRACEFS}: mounted, but it has no events directory")
    return found


def missing(tracepoints: Iterable[str], events: Path) -> list[str]:
    """Which of ``category:name`` tracepoints ``events`` lacks."""
    return [tp for tp in tracepoints if not (events / tp.replace(":", "/", 1) / "format").exists()]
