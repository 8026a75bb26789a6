"""One list+watch as a pure state machine over event dicts (the API's watch JSON).

``relist`` loads a list response; ``apply`` takes one watch event and says what to do next.
ADDED/MODIFIED store the object and advance ``resource_version``; DELETED removes it; BOOKMARK
only advances ``resource_version`` (``allowWatchBookmarks``); an ERROR event with code 410
(Gone: the version is too old) drops the cache's claim to be current, so the caller lists
again; any other ERROR asks for a backoff. ``Backoff`` doubles a delay up to a cap.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Next(StrEnum):
    CONTINUE = "continue"
    RELIST = "relist"
    BACKOFF = "backoff"


def object_key(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta.get('name')}" if ns else str(meta.get("name"))


@dataclass
class WatchState:
    """The objects of one resource as last seen, and where the watch resumes."""

    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    resource_version: str = ""
    synced: bool = False
    generation: int = 0
    """Bumped on every change of ``objects`` (cheap change detection for the source)."""

    def relist(self, body: Mapping[str, Any]) -> None:
        items = body.get("items") or []
        new = {object_key(o): dict(o) for o in items}
        if new != self.objects:
            self.generation += 1
        self.objects = new
        self.resource_version = str((body.get("metadata") or {}).get("resourceVersion") or "")
        self.synced = True

    def apply(self, event: Mapping[str, Any]) -> Next:
        kind = event.get("type")
        obj = event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                self.synced = False
                self.resource_version = ""
                return Next.RELIST
            return Next.BACKOFF
        rv = str((obj.get("metadata") or {}).get("resourceVersion") or "")
        if kind == "BOOKMARK":
            self.resource_version = rv or self.resource_version
            return Next.CONTINUE
        key = object_key(obj)
        if kind in ("ADDED", "MODIFIED"):
            if self.objects.get(key) != obj:
                self.objects[key] = dict(obj)
                self.generation += 1
        elif kind == "DELETED":
            if self.objects.pop(key, None) is not None:
                self.generation += 1
        else:
            return Next.BACKOFF
        self.resource_version = rv or self.resource_version
        return Next.CONTINUE


@dataclass
class Backoff:
    """Delays for retries: ``initial``, doubling to ``cap`` seconds; ``reset`` after a success."""

    initial: float = 0.5
    cap: float = 30.0
    failures: int = 0

    def next(self) -> float:
        delay = min(self.cap, self.initial * 2.0**self.failures)
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0
