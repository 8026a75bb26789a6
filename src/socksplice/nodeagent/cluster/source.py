"""``ClusterSource``: the node's pods and all SocketSplices, kept current by two list+watch loops.

Pods are watched with ``fieldSelector=spec.nodeName=<node>`` (only this node's pods cross the
wire); SocketSplices in every namespace. Each loop lists, then watches from the list's
``resourceVersion`` with bookmarks, resumes from the last version when a watch ends, lists again
on 410 Gone and backs off on other errors (``watching``). ``snapshot`` refuses until both have
listed once, so a restarted agent never reconciles against an empty view (which would detach
every pod). Planning is the shared ``api.planning.plan``; only planned pods are located.
With ``drains`` (``drainrequest``), ``snapshot`` also refuses until the node's SpliceNode was
read once, and for good once a drain was requested on it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from socksplice.api.planning import PodPlan, plan
from socksplice.api.pods import PodRef, pod_ref_from_api
from socksplice.api.socketsplice import SocketSplice, parse_socketsplice
from socksplice.errors import InvalidSpec, TemporaryError
from socksplice.kubeapi.failures import Gone
from socksplice.nodeagent.cluster.drainrequest import DrainRequests
from socksplice.nodeagent.cluster.locating import Locator
from socksplice.nodeagent.cluster.watching import Backoff, Next, WatchState
from socksplice.nodeagent.snapshots import Snapshot
from socksplice.nodeagent.targets import PodLocation

log = logging.getLogger(__name__)

ListFn = Callable[[], Mapping[str, Any]]
WatchFn = Callable[[str], Iterable[Mapping[str, Any]]]


def run_watch(
    name: str, list_fn: ListFn, watch_fn: WatchFn, state: WatchState, stop: threading.Event
) -> None:
    """List and watch into ``state`` until ``stop`` is set. Never raises."""
    backoff = Backoff()
    while not stop.is_set():
        try:
            if not state.synced:
                state.relist(list_fn())
                log.info(
                    "watch %s: listed %d objects at %s", name, len(state.objects), state.resource_version
                )
            for event in watch_fn(state.resource_version):
                step = state.apply(event)
                if step is Next.RELIST:
                    log.info("watch %s: resourceVersion gone; listing again", name)
                    break
                if step is Next.BACKOFF:
                    raise TemporaryError(f"watch {name}: error event: {dict(event)!r:.300}")
                if stop.is_set():
                    return
            backoff.reset()
        except Gone:
            state.apply({"type": "ERROR", "object": {"code": 410}})
        except Exception as exc:  # the client raises many kinds; the loop must survive them all
            delay = backoff.next()
            log.error("watch %s: failed: %s; retrying in %.1fs", name, exc, delay)
            stop.wait(delay)


def _kube_fns(node: str) -> tuple[ListFn, WatchFn, ListFn, WatchFn]:
    """List and watch functions for pods on ``node`` and for all SocketSplices (``kubeapi.Kube``)."""
    from socksplice.kubeapi import Kube

    kube = Kube()
    fields = f"spec.nodeName={node}"
    return (
        lambda: kube.list_pods(fields=fields),
        lambda rv: kube.watch_pods(rv, fields=fields),
        kube.list_socketsplices,
        kube.watch_socketsplices,
    )


@dataclass(frozen=True)
class Parsed:
    """The watched objects read once per change: this node's pods, valid SocketSplices, errors, plans."""

    refs: tuple[PodRef, ...]
    objects: Mapping[str, Mapping[str, Any]]
    splices: tuple[SocketSplice, ...]
    errors: tuple[InvalidSpec, ...]
    plans: Mapping[str, PodPlan]


def parse_objects(
    node: str, pods: Iterable[Mapping[str, Any]], splices: Iterable[Mapping[str, Any]]
) -> Parsed:
    """Invalid SocketSplices become errors, not exceptions; malformed pods are skipped."""
    refs: list[PodRef] = []
    objects: dict[str, Mapping[str, Any]] = {}
    for obj in pods:
        try:
            ref = pod_ref_from_api(obj)
        except InvalidSpec:
            continue
        if ref.node_name == node:
            refs.append(ref)
            objects[ref.key] = obj
    parsed: list[SocketSplice] = []
    errors: list[InvalidSpec] = []
    for obj in splices:
        meta = obj.get("metadata") or {}
        try:
            parsed.append(parse_socketsplice(obj, f"SocketSplice {meta.get('namespace')}/{meta.get('name')}"))
        except InvalidSpec as exc:
            errors.append(exc)
    refs.sort(key=lambda r: r.key)
    parsed.sort(key=lambda s: s.key)
    return Parsed(tuple(refs), objects, tuple(parsed), tuple(errors), plan(refs, parsed))


def locate_planned(parsed: Parsed, locate: Callable[[Mapping[str, Any]], PodLocation | None]) -> Snapshot:
    """The snapshot, locating only planned pods (located again on every call: cgroups appear later)."""
    locations = {}
    for key in parsed.plans:
        loc = locate(parsed.objects[key])
        if loc is not None:
            locations[key] = loc
    return Snapshot(parsed.refs, parsed.splices, locations, parsed.errors)


def build_snapshot(
    node: str,
    pods: Iterable[Mapping[str, Any]],
    splices: Iterable[Mapping[str, Any]],
    locate: Callable[[Mapping[str, Any]], PodLocation | None],
) -> Snapshot:
    """Snapshot from the watched objects."""
    return locate_planned(parse_objects(node, pods, splices), locate)


class ClusterSource:
    def __init__(
        self,
        node: str,
        locator: Locator,
        fns: tuple[ListFn, WatchFn, ListFn, WatchFn] | None = None,
        drains: DrainRequests | None = None,
    ) -> None:
        self.node = node
        self.drains = drains
        self.locator = locator
        self.pods = WatchState()
        self.splices = WatchState()
        self.stop = threading.Event()
        self._fns = fns
        self._parsed: tuple[tuple[int, int], Parsed] | None = None

    def start(self) -> None:
        list_pods, watch_pods, list_splices, watch_splices = self._fns or _kube_fns(self.node)
        for name, lf, wf, state in (
            ("pods", list_pods, watch_pods, self.pods),
            ("socketsplices", list_splices, watch_splices, self.splices),
        ):
            threading.Thread(
                target=run_watch, args=(name, lf, wf, state, self.stop), name=f"watch-{name}", daemon=True
            ).start()
        if self.drains is not None:
            self.drains.start()

    def close(self) -> None:
        self.stop.set()
        if self.drains is not None:
            self.drains.stop.set()

    def snapshot(self) -> Snapshot:
        if self.drains is not None:
            self.drains.gate()  # no snapshot, so no reconcile, from a drain request on
        if not (self.pods.synced and self.splices.synced):
            raise TemporaryError("cluster: waiting for the first list of pods and SocketSplices")
        version = (self.pods.generation, self.splices.generation)
        if self._parsed is None or self._parsed[0] != version:
            pods, splices = list(self.pods.objects.values()), list(self.splices.objects.values())
            self._parsed = (version, parse_objects(self.node, pods, splices))
            self.locator.forget({str((p.get("metadata") or {}).get("uid")) for p in pods})
        snapshot = locate_planned(self._parsed[1], self.locator.locate)
        refused = self.locator.refused
        unlocated = tuple(
            (key, refused[uid])
            for key, obj in sorted(self._parsed[1].objects.items())
            if key in self._parsed[1].plans
            and (uid := str((obj.get("metadata") or {}).get("uid"))) in refused
        )
        return replace(snapshot, unlocated=unlocated) if unlocated else snapshot
