"""Stable policy slots: which counter slot in the BPF maps belongs to which SocketSplice.

Counters live in pinned maps and survive agent restarts, so the slot assignment must too: it is
kept as JSON in the agent's state directory. Slot 0 means "no policy". A slot freed by a deleted
SocketSplice is reused only after every other slot was used once, so that a new policy does not
inherit a recent policy's counters.

Only the agent's loop changes the table. Other threads (the metrics scrape) call ``policy_of``,
which reads an immutable slot-to-policy map that each change replaces whole.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType


class SlotTable:
    def __init__(self, path: Path | None, capacity: int) -> None:
        self._path = path
        self._capacity = capacity
        self._slots: dict[str, int] = {}
        self._next = 1
        if path is not None and path.exists():
            data = json.loads(path.read_text())
            self._slots = {str(k): int(v) for k, v in data.get("slots", {}).items()}
            self._next = int(data.get("next", 1))
        self._by_slot: Mapping[int, str] = self._snapshot()

    def slot(self, policy: str) -> int:
        """The slot of ``policy`` (``namespace/name``), assigning one if needed; 0 when full or empty."""
        if not policy:
            return 0
        if policy in self._slots:
            return self._slots[policy]
        used = set(self._slots.values())
        for _ in range(self._capacity):
            candidate = self._next
            self._next = self._next + 1 if self._next + 1 < self._capacity else 1
            if candidate not in used:
                self._slots[policy] = candidate
                self._changed()
                return candidate
        return 0

    def release_except(self, keep: set[str]) -> None:
        gone = [p for p in self._slots if p not in keep]
        for p in gone:
            del self._slots[p]
        if gone:
            self._changed()

    def policy_of(self, slot: int) -> str:
        """The policy holding ``slot`` ("" for none). Safe from any thread."""
        return self._by_slot.get(slot, "")

    def _snapshot(self) -> Mapping[int, str]:
        return MappingProxyType({s: p for p, s in self._slots.items()})

    def _changed(self) -> None:
        self._by_slot = self._snapshot()  # one reference assignment: readers see old or new, whole
        self._save()

    def _save(self) -> None:
        if self._path is None:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"slots": self._slots, "next": self._next}, sort_keys=True))
        os.replace(tmp, self._path)
