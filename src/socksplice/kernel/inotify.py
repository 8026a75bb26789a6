"""Follow changes in a few directories with inotify(7), so a loop can sleep until one changes.

``Inotify`` is the kernel object (``inotify_init1(IN_CLOEXEC | IN_NONBLOCK)``, its fd usable with
``select``/``poll``). ``DirectoryWatch`` follows a set of directories that may not exist yet: a
missing directory is seen to appear by its parent's watch and watched from then on; one that is
deleted or moved away is watched again when it comes back. Each directory may name the entries it
cares about, so that a program's own writes next to them (a status file) do not wake it.

When inotify cannot be had (no instance or no watch left: ``fs.inotify.max_user_instances`` or
``max_user_watches``, ENOSPC/EMFILE), the watch falls back to polling: it logs one line and from
then on says every directory changed on every turn, as a polling loop would see it.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import logging
import os
import select
import struct
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from socksplice.errors import KernelError

log = logging.getLogger(__name__)

IN_MODIFY = 0x00000002
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_CLOEXEC = os.O_CLOEXEC
IN_NONBLOCK = os.O_NONBLOCK

CHANGES = IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_MOVED_FROM | IN_CLOSE_WRITE | IN_MODIFY
"""What changes a directory's entries or a file's content in it."""
DIRECTORY_MASK = CHANGES | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR

_HEADER = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then the name)
_READ_SIZE = 64 * 1024

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.inotify_init1.argtypes = [ctypes.c_int]
_libc.inotify_init1.restype = ctypes.c_int
_libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
_libc.inotify_add_watch.restype = ctypes.c_int
_libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.inotify_rm_watch.restype = ctypes.c_int


@dataclass(frozen=True)
class Event:
    wd: int
    """The watch the event is for (-1 for IN_Q_OVERFLOW)."""
    mask: int
    cookie: int
    """Pairs an IN_MOVED_FROM with its IN_MOVED_TO."""
    name: str
    """The entry in the watched directory; "" for an event on the directory itself."""


class Inotify:
    """One inotify instance; close it (or use it as a context manager) to release the fd."""

    def __init__(self) -> None:
        fd = _libc.inotify_init1(IN_CLOEXEC | IN_NONBLOCK)
        if fd < 0:
            err = ctypes.get_errno()
            raise KernelError(f"inotify: no instance: {os.strerror(err)}", err)
        self.fd = int(fd)
        self._release = weakref.finalize(self, os.close, fd)  # also when dropped unclosed

    def fileno(self) -> int:
        return self.fd

    def add_watch(self, path: Path, mask: int) -> int:
        """Watch ``path``; returns the watch descriptor (the same one again for a watched inode)."""
        wd = _libc.inotify_add_watch(self.fd, os.fsencode(path), mask)
        if wd < 0:
            err = ctypes.get_errno()
            raise KernelError(f"inotify: {path}: not watched: {os.strerror(err)}", err)
        return int(wd)

    def rm_watch(self, wd: int) -> None:
        """Stop a watch; one the kernel already removed (EINVAL) is fine."""
        if _libc.inotify_rm_watch(self.fd, wd) < 0 and ctypes.get_errno() != errno.EINVAL:
            err = ctypes.get_errno()
            raise KernelError(f"inotify: watch {wd}: not removed: {os.strerror(err)}", err)

    def read(self) -> list[Event]:
        """The queued events; [] when there are none (the fd is non-blocking)."""
        events: list[Event] = []
        while True:
            try:
                buf = os.read(self.fd, _READ_SIZE)
            except BlockingIOError:
                return events  # the queue is empty
            offset = 0
            while offset + _HEADER.size <= len(buf):
                wd, mask, cookie, length = _HEADER.unpack_from(buf, offset)
                offset += _HEADER.size
                name = buf[offset : offset + length].rstrip(b"\0")
                offset += length
                events.append(Event(wd, mask, cookie, os.fsdecode(name)))

    def close(self) -> None:
        self._release()
        self.fd = -1

    def __enter__(self) -> Inotify:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


_MISSING = frozenset({errno.ENOENT, errno.ENOTDIR})
_SELF = ""
"""The pending name that stands for "the directory itself changed (or may have)"."""


class DirectoryWatch:
    """Tells, per directory, whether it changed since it was last asked (``changed``), and sleeps
    until one did (``wait``). ``directories`` maps each directory to the entry names that count
    (None: every entry). A directory that is itself one of the others' entries counts for its
    parent only through its own watch. The loop thread owns it; ``interrupt`` may be called from a
    signal handler."""

    def __init__(self, directories: Mapping[Path, frozenset[str] | None], poll_interval: float) -> None:
        self.interest = dict(directories)
        self.poll_interval = poll_interval
        self.polling = False
        self._inotify: Inotify | None = None
        self._paths: dict[int, Path] = {}
        self._watched: dict[Path, int] = {}
        self._pending: dict[Path, set[str]] = {d: {_SELF} for d in self.interest}  # all read at start
        self._unseen = True
        """A change that counts came since ``wait`` last returned (perhaps pumped by ``changed``)."""
        self._interrupt_r, self._interrupt_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._release = weakref.finalize(self, _close_pipe, self._interrupt_r, self._interrupt_w)
        try:
            self._inotify = Inotify()
        except KernelError as exc:
            self._fall_back(exc)
        self._ensure()

    # --- asking -----------------------------------------------------------------------------

    def changed(self, directory: Path) -> bool:
        """Whether ``directory`` changed (in an entry that counts) since the last ask; the first
        ask says yes. Reads what the kernel queued first, so a change made before the call is seen."""
        self._pump()
        if self._uncovered(directory):
            self._ensure()  # it may exist by now
        if self.polling or self._uncovered(directory):
            return True
        pending = self._pending.get(directory, set())
        self._pending[directory] = set()
        if self._unseen and not any(self._counts(d, names) for d, names in self._pending.items()):
            self._unseen = False  # every change that counts has been asked for
        return self._counts(directory, pending)

    def wait(self, timeout: float) -> bool:
        """Sleep until a change that counts, ``interrupt``, or ``timeout`` seconds; True when
        something counts (the caller then asks ``changed``). Polling: sleeps at most one
        ``poll_interval`` and says yes."""
        deadline = time.monotonic() + timeout
        while True:
            self._pump()
            if any(self._uncovered(d) for d in self.interest):
                self._ensure()
            if self.polling or any(self._uncovered(d) for d in self.interest):
                time.sleep(max(0.0, min(self.poll_interval, deadline - time.monotonic())))
                return True
            if self._unseen:
                self._unseen = False
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            assert self._inotify is not None
            readable, _, _ = select.select([self._inotify.fd, self._interrupt_r], [], [], left)
            if self._interrupt_r in readable:
                self._drain_interrupts()
                return False

    def interrupt(self) -> None:
        """End a ``wait`` now (async-signal-safe: one write to a pipe)."""
        with contextlib.suppress(BlockingIOError):  # full: already interrupted
            os.write(self._interrupt_w, b"\0")

    def close(self) -> None:
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None
        self._release()

    def __enter__(self) -> DirectoryWatch:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- inside -----------------------------------------------------------------------------

    def _mark(self, directory: Path, name: str) -> None:
        self._pending[directory].add(name)
        if self._counts(directory, {name}):
            self._unseen = True

    def _counts(self, directory: Path, pending: set[str]) -> bool:
        names = self.interest.get(directory)
        return bool(pending) and (names is None or _SELF in pending or not pending.isdisjoint(names))

    def _uncovered(self, directory: Path) -> bool:
        """Neither watched nor seen to appear by a watched parent: only polling can tell."""
        return directory not in self._watched and directory.parent not in self._watched

    def _fall_back(self, exc: KernelError) -> None:
        log.warning("inotify: unavailable, polling every %gs instead: %s", self.poll_interval, exc)
        self.polling = True
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None
        self._paths.clear()
        self._watched.clear()

    def _ensure(self) -> None:
        """Watch every directory that exists and is not watched yet (parents first, so that one
        created in between is seen by its parent's watch)."""
        for directory in sorted(self.interest, key=lambda p: len(p.parts)):
            if self._inotify is None:
                return
            if directory in self._watched:
                continue
            try:
                wd = self._inotify.add_watch(directory, DIRECTORY_MASK)
            except KernelError as exc:
                if exc.errno in _MISSING:
                    continue
                self._fall_back(exc)  # a limit (ENOSPC), EACCES...: polling still works
                return
            self._paths[wd], self._watched[directory] = directory, wd
            self._mark(directory, _SELF)  # entries may have come before the watch

    def _pump(self) -> None:
        """Turn the queued events into pending names (and watches for directories that appeared)."""
        if self._inotify is None:
            return
        events = self._inotify.read()
        rewatch = False
        for event in events:
            if event.mask & IN_Q_OVERFLOW:
                for d in self._pending:
                    self._mark(d, _SELF)
                continue
            directory = self._paths.get(event.wd)
            if directory is None:
                continue
            if event.mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF):
                self._mark(directory, _SELF)
                if event.mask & IN_MOVE_SELF:
                    self._inotify.rm_watch(event.wd)  # it follows the inode: watch the path again
                if event.mask & (IN_IGNORED | IN_MOVE_SELF):
                    del self._paths[event.wd], self._watched[directory]
                    rewatch = True
                continue
            self._mark(directory, event.name)
            child = directory / event.name
            if child in self.interest:
                self._mark(child, _SELF)
                rewatch = rewatch or child not in self._watched
        if rewatch:
            self._ensure()

    def _drain_interrupts(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._interrupt_r, 64):
                pass


def _close_pipe(r: int, w: int) -> None:
    os.close(r)
    os.close(w)
