"""``kernel.inotify`` on a real inotify instance over a temporary directory: what wakes it (a new,
renamed, rewritten or deleted entry), what does not (names that do not count), directories that
appear later, and the fall-back to polling when inotify cannot be had."""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from pathlib import Path

import pytest

from socksplice.errors import KernelError
from socksplice.kernel import inotify
from socksplice.kernel.inotify import CHANGES, DirectoryWatch, Inotify


def settled(watch: DirectoryWatch, *directories: Path) -> DirectoryWatch:
    """The watch after its first asks (which always say yes)."""
    for d in directories:
        assert watch.changed(d)
    return watch


def test_the_raw_instance_reports_entries_by_name(tmp_path: Path) -> None:
    with Inotify() as ino:
        wd = ino.add_watch(tmp_path, CHANGES)
        assert ino.read() == []  # non-blocking: nothing queued
        (tmp_path / "a.yaml").write_text("x")
        os.rename(tmp_path / "a.yaml", tmp_path / "b.yaml")
        events = ino.read()
        assert {e.wd for e in events} == {wd}
        assert [e.name for e in events if e.mask & inotify.IN_CREATE] == ["a.yaml"]
        moved = [e for e in events if e.mask & (inotify.IN_MOVED_FROM | inotify.IN_MOVED_TO)]
        assert [e.name for e in moved] == ["a.yaml", "b.yaml"] and moved[0].cookie == moved[1].cookie


def test_create_rename_rewrite_and_delete_wake_it(tmp_path: Path) -> None:
    with settled(DirectoryWatch({tmp_path: None}, 0.5), tmp_path) as watch:
        assert not watch.changed(tmp_path)
        started = time.monotonic()
        assert not watch.wait(0.2)  # nothing: sleeps the whole timeout
        assert time.monotonic() - started >= 0.19
        file = tmp_path / "splice.yaml"
        for change in (
            lambda: file.write_text("a"),
            lambda: os.rename(file, tmp_path / "other.yaml"),
            lambda: (tmp_path / "other.yaml").write_text("b"),
            lambda: (tmp_path / "other.yaml").unlink(),
        ):
            change()
            assert watch.wait(5.0)
            assert watch.changed(tmp_path) and not watch.changed(tmp_path)


def test_a_change_from_another_thread_ends_the_wait_at_once(tmp_path: Path) -> None:
    with settled(DirectoryWatch({tmp_path: None}, 0.5), tmp_path) as watch:
        timer = threading.Timer(0.1, lambda: (tmp_path / "new.yaml").write_text("x"))
        timer.start()
        started = time.monotonic()
        assert watch.wait(10.0)
        assert time.monotonic() - started < 5.0
        timer.join()


def test_names_that_do_not_count_do_not_wake_it(tmp_path: Path) -> None:
    with settled(DirectoryWatch({tmp_path: frozenset({"topology.json"})}, 0.5), tmp_path) as watch:
        (tmp_path / "status.tmp").write_text("{}")
        os.replace(tmp_path / "status.tmp", tmp_path / "status.json")
        assert not watch.wait(0.2) and not watch.changed(tmp_path)
        (tmp_path / "topology.json").write_text("{}")
        assert watch.wait(5.0) and watch.changed(tmp_path)


def test_a_directory_created_later_is_watched_and_watched_again_when_recreated(tmp_path: Path) -> None:
    sub = tmp_path / "manifests"
    with settled(DirectoryWatch({tmp_path: frozenset(), sub: None}, 0.5), tmp_path, sub) as watch:
        assert not watch.changed(sub) and not watch.changed(tmp_path)
        sub.mkdir()
        assert watch.wait(5.0) and watch.changed(sub)
        (sub / "a.yaml").write_text("x")
        assert watch.wait(5.0) and watch.changed(sub)
        (sub / "a.yaml").unlink()
        sub.rmdir()
        assert watch.changed(sub)
        sub.mkdir()
        assert watch.changed(sub)
        (sub / "b.yaml").write_text("x")
        assert watch.changed(sub) and not watch.changed(sub)
        assert not watch.changed(tmp_path)  # the parent's own names: none count


def test_interrupt_ends_a_wait(tmp_path: Path) -> None:
    with settled(DirectoryWatch({tmp_path: None}, 0.5), tmp_path) as watch:
        watch.interrupt()
        started = time.monotonic()
        assert not watch.wait(10.0)
        assert time.monotonic() - started < 5.0


def test_no_watch_left_falls_back_to_polling_with_one_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(self: Inotify, path: Path, mask: int) -> int:
        raise KernelError(f"inotify: {path}: not watched: {os.strerror(errno.ENOSPC)}", errno.ENOSPC)

    monkeypatch.setattr(Inotify, "add_watch", refuse)
    with caplog.at_level(logging.WARNING), DirectoryWatch({tmp_path: None}, 0.05) as watch:
        assert watch.polling
        assert watch.changed(tmp_path) and watch.changed(tmp_path)  # every ask: read again
        started = time.monotonic()
        assert watch.wait(10.0)  # sleeps one poll interval
        assert time.monotonic() - started < 5.0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "polling" in warnings[0] and "No space left" in warnings[0]


def test_no_instance_falls_back_to_polling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: Inotify) -> None:
        raise KernelError("inotify: no instance: Too many open files", errno.EMFILE)

    monkeypatch.setattr(Inotify, "__init__", refuse)
    with DirectoryWatch({tmp_path: None}, 0.05) as watch:
        assert watch.polling and watch.changed(tmp_path) and watch.wait(1.0)


def test_a_missing_directory_without_a_watched_parent_is_polled(tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    with DirectoryWatch({gone: None}, 0.05) as watch:
        assert not watch.polling
        assert watch.changed(gone) and watch.changed(gone)
        gone.mkdir()
        assert watch.changed(gone)  # watched from the first ask that finds it
        assert not watch.changed(gone)
