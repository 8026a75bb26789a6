"""SlotTable: stable slots across restarts, reuse only after every other slot was used once."""

from __future__ import annotations

import json
from pathlib import Path

from socksplice.nodeagent.slots import SlotTable


def test_slots_are_stable_and_zero_means_none() -> None:
    slots = SlotTable(None, 8)
    assert slots.slot("") == 0
    a, b = slots.slot("demo/a"), slots.slot("demo/b")
    assert (a, b) == (1, 2) and slots.slot("demo/a") == 1
    assert slots.policy_of(1) == "demo/a" and slots.policy_of(2) == "demo/b"
    assert slots.policy_of(0) == "" and slots.policy_of(7) == ""


def test_a_freed_slot_is_reused_only_after_every_other_was_used() -> None:
    slots = SlotTable(None, 4)  # slots 1..3
    assert [slots.slot(p) for p in ("a", "b")] == [1, 2]
    slots.release_except({"b"})
    assert slots.policy_of(1) == ""
    assert slots.slot("c") == 3  # not the freed 1: a new policy must not inherit a's counters
    assert slots.slot("d") == 1  # now every slot was used once
    assert slots.slot("e") == 0  # full


def test_restart_keeps_assignments_and_the_reuse_order(tmp_path: Path) -> None:
    path = tmp_path / "slots.json"
    slots = SlotTable(path, 8)
    slots.slot("demo/a")
    slots.slot("demo/b")
    slots.release_except({"demo/b"})
    again = SlotTable(path, 8)
    assert again.policy_of(2) == "demo/b" and again.policy_of(1) == ""
    assert again.slot("demo/c") == 3  # the next slot survives the restart too
    assert json.loads(path.read_text()) == {"next": 4, "slots": {"demo/b": 2, "demo/c": 3}}


def test_policy_of_sees_each_change_whole() -> None:
    slots = SlotTable(None, 8)
    reader = slots.policy_of
    slots.slot("demo/a")
    assert reader(1) == "demo/a"
    slots.release_except(set())
    assert reader(1) == ""
