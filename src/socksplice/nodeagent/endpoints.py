"""The endpoint table: every watched endpoint's verdict, persisted so restarts keep decisions.

Each loop turn the agent reads the data path's evidence counters and calls ``update``, which runs
``verdicts.decide`` for every endpoint, drops endpoints that are gone (absent from the evidence, or
whose pods no SocketSplice selects any more) and gives each Auto-mode Spliced endpoint a slot: the
index of its demotion flag in the data path. A Demoted endpoint keeps its slot until it is
dropped (its flag stays set meanwhile); every other endpoint holds none. Slots go round-robin over
1..max_slots-1, so a freed slot is reused as late as possible.

The table is written (JSON, tmp + rename) when a decision changes: an endpoint added or dropped,
or its verdict, mode, policy, slot, sampling or evidence window. Counts and progress reasons are
refreshed every turn in memory and are written with the next decision. A missing file starts
empty; so does a corrupt one, with one warning line.

Only the agent's loop calls ``update``; other threads read ``records`` and the slot maps, which
each update replaces whole.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from socksplice.api.socketsplice import AutoSpec, Mode
from socksplice.bpf.layout import V_SAMPLED, V_SPLICE, V_UNWATCHED
from socksplice.bpf.loader import EndpointDecision
from socksplice.nodeagent.verdicts import EndpointKey, EndpointRecord, Verdict, decide

log = logging.getLogger(__name__)

FORMAT_VERSION = 1

PolicyFor = Callable[[EndpointKey], tuple[str, Mode, AutoSpec] | None]
"""The policy key, mode and AutoSpec that apply to an endpoint; None when its pods are no longer selected."""


@dataclass(frozen=True)
class Change:
    """One endpoint's decision changed: ``old`` None when it is new, ``new`` None when it was dropped."""

    key: EndpointKey
    old: EndpointRecord | None
    new: EndpointRecord | None


def _decision(r: EndpointRecord) -> tuple[object, ...]:
    return (r.policy, r.mode, r.verdict, r.slot, r.sampled, r.window_start)


class EndpointTable:
    def __init__(self, path: Path | None, max_slots: int) -> None:
        self._path = path
        self._max_slots = max_slots
        self._next = 1
        self._records: Mapping[EndpointKey, EndpointRecord] = MappingProxyType({})
        if path is not None:
            self._load(path)

    def records(self) -> tuple[EndpointRecord, ...]:
        """Every record, ordered by key. Safe from any thread."""
        records = self._records
        return tuple(records[k] for k in sorted(records))

    def get(self, key: EndpointKey) -> EndpointRecord | None:
        return self._records.get(key)

    def spliced_slots(self) -> dict[EndpointKey, int]:
        """Auto-mode Spliced endpoints and their slots: what the data path's verdict map must hold."""
        return {
            k: r.slot
            for k, r in self._records.items()
            if r.verdict == Verdict.SPLICED and r.mode == Mode.AUTO and r.slot > 0
        }

    def datapath_verdicts(self) -> dict[EndpointKey, EndpointDecision]:
        """What the data path's verdict map must hold: Auto-mode Spliced endpoints (splice, with
        their slots), Demoted ones (not watched) and sampled Audit ones."""
        out: dict[EndpointKey, EndpointDecision] = {
            k: EndpointDecision(V_SPLICE, slot) for k, slot in self.spliced_slots().items()
        }
        for k, r in self._records.items():
            if r.verdict == Verdict.DEMOTED:
                out[k] = EndpointDecision(V_UNWATCHED)
            elif r.verdict == Verdict.AUDIT and r.sampled:
                out[k] = EndpointDecision(V_SAMPLED)
        return out

    def demoted_slots(self) -> set[int]:
        """Slots still held by Demoted endpoints (not free for reuse)."""
        return {r.slot for r in self._records.values() if r.verdict == Verdict.DEMOTED and r.slot > 0}

    def update(
        self,
        evidence: Mapping[EndpointKey, Mapping[str, int]],
        *,
        policy_for: PolicyFor,
        observation: str,
        now: float,
    ) -> list[Change]:
        """Decide every endpoint in ``evidence``; drop the others. Returns the changed decisions."""
        old = self._records
        new: dict[EndpointKey, EndpointRecord] = {}
        used = {r.slot for r in old.values() if r.slot > 0}
        for key in sorted(evidence):
            applies = policy_for(key)
            if applies is None:
                continue
            policy, mode, auto = applies
            record = decide(
                old.get(key),
                key,
                evidence[key],
                mode=mode,
                auto=auto,
                policy=policy,
                observation=observation,
                now=now,
            )
            new[key] = record
        # Free the slots no longer held (and those of dropped endpoints) before allocating.
        for key, record in new.items():
            if record.slot and not _holds_slot(record):
                used.discard(record.slot)
                new[key] = _with(record, slot=0)
        for key in old.keys() - new.keys():
            used.discard(old[key].slot)
        for key, record in new.items():
            if record.verdict == Verdict.SPLICED and record.mode == Mode.AUTO and record.slot == 0:
                slot = self._allocate(used)
                if slot:
                    used.add(slot)
                    new[key] = _with(record, slot=slot)
                else:
                    previous = old.get(key)
                    verdict_since = previous.since if previous and previous.verdict == Verdict.AUDIT else now
                    new[key] = _with(
                        record,
                        verdict=Verdict.AUDIT,
                        since=verdict_since,
                        reason=(
                            f"would splice, but all {self._max_slots - 1} endpoint slots are in use: "
                            "stays on TCP until one is freed"
                        ),
                    )
        changes = [
            Change(k, old.get(k), new.get(k))
            for k in sorted(old.keys() | new.keys())
            if k not in old or k not in new or _decision(old[k]) != _decision(new[k])
        ]
        self._records = MappingProxyType(new)  # one reference assignment: readers see old or new, whole
        if changes:
            self._save()
        return changes

    def _allocate(self, used: set[int]) -> int:
        for _ in range(self._max_slots - 1):
            candidate = self._next
            self._next = candidate + 1 if candidate + 1 < self._max_slots else 1
            if candidate not in used:
                return candidate
        return 0

    def _load(self, path: Path) -> None:
        try:
            text = path.read_text()
        except FileNotFoundError:
            return
        except OSError as e:
            log.warning("endpoints %s: unreadable, starting empty: %s", path, e)
            return
        try:
            data = json.loads(text)
            records = [_record_from(item) for item in data["endpoints"]]
            next_slot = int(data.get("next", 1))
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            log.warning("endpoints %s: corrupt, starting empty: %s: %s", path, type(e).__name__, e)
            return
        self._next = next_slot if 1 <= next_slot < self._max_slots else 1
        # A slot beyond a smaller capacity is no slot: a Spliced endpoint gets a new one next turn.
        self._records = MappingProxyType(
            {r.key: r if 0 <= r.slot < self._max_slots else _with(r, slot=0) for r in records}
        )

    def _save(self) -> None:
        if self._path is None:
            return
        data = {
            "version": FORMAT_VERSION,
            "next": self._next,
            "endpoints": [_record_to(r) for r in self.records()],
        }
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, sort_keys=True))
        os.replace(tmp, self._path)


def _holds_slot(record: EndpointRecord) -> bool:
    if record.verdict == Verdict.DEMOTED:
        return True  # its demotion flag stays set until the record is dropped
    return record.verdict == Verdict.SPLICED and record.mode == Mode.AUTO


def _with(record: EndpointRecord, **changes: Any) -> EndpointRecord:
    return replace(record, **changes)


def _record_to(r: EndpointRecord) -> dict[str, Any]:
    return {
        "server_netns": r.key.server_netns,
        "client_netns": r.key.client_netns,
        "port": r.key.port,
        "policy": r.policy,
        "mode": r.mode.value,
        "verdict": r.verdict.value,
        "reason": r.reason,
        "first_seen": r.first_seen,
        "since": r.since,
        "slot": r.slot,
        "counts": dict(r.last_counts),
        "sampled": r.sampled,
        "window_start": r.window_start,
        "window_base": dict(r.window_base),
    }


def _record_from(item: Mapping[str, Any]) -> EndpointRecord:
    counts, base = item.get("counts", {}), item.get("window_base", {})
    for name, value in (("counts", counts), ("window_base", base)):
        if not isinstance(value, dict):
            raise TypeError(f"{name} must be an object, got {type(value).__name__}")
    start = item.get("window_start")
    return EndpointRecord(
        key=EndpointKey(int(item["server_netns"]), int(item["client_netns"]), int(item["port"])),
        policy=str(item["policy"]),
        mode=Mode(item["mode"]),
        verdict=Verdict(item["verdict"]),
        reason=str(item["reason"]),
        first_seen=float(item["first_seen"]),
        since=float(item["since"]),
        slot=int(item["slot"]),
        last_counts=MappingProxyType({str(k): int(v) for k, v in counts.items()}),
        sampled=bool(item.get("sampled", False)),
        window_start=None if start is None else float(start),
        window_base=MappingProxyType({str(k): int(v) for k, v in base.items()}),
    )
