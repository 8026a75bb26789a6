"""The list+watch state machine over a recorded watch stream, and the loop that drives it."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from socksplice.kubeapi import Gone
from socksplice.nodeagent.cluster.source import run_watch
from socksplice.nodeagent.cluster.watching import Backoff, Next, WatchState, object_key
from tests.unit.fixtures import recorded as apifixtures


def test_list_then_recorded_events() -> None:
    state = WatchState()
    state.relist(apifixtures.load("pods.json"))
    assert (state.synced, state.resource_version, len(state.objects)) == (True, "1234", 6)
    events = apifixtures.load("watch-pods.jsonl")
    results = [state.apply(e) for e in events]
    assert results == [Next.CONTINUE, Next.CONTINUE, Next.CONTINUE, Next.CONTINUE, Next.RELIST]
    assert "demo/web" in state.objects
    assert "demo/server" not in state.objects
    assert state.objects["demo/client"]["metadata"]["labels"] == {"app": "client"}
    assert (state.synced, state.resource_version) == (False, "")


def test_bookmark_moves_only_the_version() -> None:
    state = WatchState()
    state.relist(apifixtures.load("pods.json"))
    before = (dict(state.objects), state.generation)
    bookmark = apifixtures.load("watch-pods.jsonl")[2]
    assert state.apply(bookmark) is Next.CONTINUE
    assert state.resource_version == "1250"
    assert (state.objects, state.generation) == before


def test_generation_counts_real_changes() -> None:
    state = WatchState()
    state.relist(apifixtures.load("pods.json"))
    g = state.generation
    pod = apifixtures.items("pods.json")[0]
    state.apply({"type": "MODIFIED", "object": pod})  # the same object again
    assert state.generation == g
    state.apply({"type": "DELETED", "object": pod})
    state.apply({"type": "DELETED", "object": pod})  # already gone
    assert state.generation == g + 1
    state.relist(apifixtures.load("pods.json"))
    assert state.generation == g + 2


def test_other_errors_ask_for_backoff() -> None:
    state = WatchState(resource_version="5", synced=True)
    assert state.apply({"type": "ERROR", "object": {"code": 500, "message": "etcd"}}) is Next.BACKOFF
    assert (state.synced, state.resource_version) == (True, "5")
    assert state.apply({"type": "SURPRISE", "object": {}}) is Next.BACKOFF


def test_object_keys() -> None:
    assert object_key({"metadata": {"name": "a", "namespace": "n"}}) == "n/a"
    assert object_key({"metadata": {"name": "node-a"}}) == "node-a"


def test_backoff_doubles_to_the_cap() -> None:
    b = Backoff(initial=0.5, cap=4.0)
    assert [b.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    b.reset()
    assert b.next() == 0.5


class Server:
    """A scripted API server: list responses and watch streams, in order; records what was asked."""

    def __init__(
        self, lists: list[Mapping[str, Any]], streams: list[list[Mapping[str, Any]] | Exception]
    ) -> None:
        self.lists = lists
        self.streams = streams
        self.watched_from: list[str] = []
        self.stop = threading.Event()

    def list(self) -> Mapping[str, Any]:
        return self.lists.pop(0)

    def watch(self, rv: str) -> Iterable[Mapping[str, Any]]:
        self.watched_from.append(rv)
        if not self.streams:
            self.stop.set()
            return iter(())
        stream = self.streams.pop(0)
        if isinstance(stream, Exception):
            raise stream

        def events() -> Iterator[Mapping[str, Any]]:
            yield from stream

        return events()


def test_loop_relists_on_gone_and_resumes_from_versions() -> None:
    events = apifixtures.load("watch-pods.jsonl")
    relisted = apifixtures.load("pods.json")
    relisted["metadata"]["resourceVersion"] = "1500"
    server = Server(
        [apifixtures.load("pods.json"), relisted, relisted], [events[:3], events[3:], Gone("expired"), []]
    )
    state = WatchState()
    run_watch("pods", server.list, server.watch, state, server.stop)
    # 1234 (list) -> 1250 (bookmark) -> relist after the 410 event -> 1500 -> 410 raised -> relist
    assert server.watched_from == ["1234", "1250", "1500", "1500", "1500"]
    assert server.lists == []
    assert state.synced


def test_loop_backs_off_on_errors_and_recovers() -> None:
    server = Server([apifixtures.load("pods.json")], [RuntimeError("connection reset"), []])
    state = WatchState()
    stop = server.stop
    waits: list[float] = []
    real_wait = stop.wait

    def wait(timeout: float | None = None) -> bool:
        waits.append(timeout or 0.0)
        return real_wait(0)

    stop.wait = wait  # type: ignore[method-assign]
    run_watch("pods", server.list, server.watch, state, stop)
    assert waits == [0.5]
    assert server.watched_from == ["1234", "1234", "1234"]
