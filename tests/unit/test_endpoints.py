"""EndpointTable: verdicts per endpoint, demotion slots, and the JSON file that keeps them across restarts."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from socksplice.api.socketsplice import AutoSpec, EvidenceWindow, Mode
from socksplice.bpf.layout import EVIDENCE, V_SAMPLED, V_SPLICE, V_UNWATCHED
from socksplice.bpf.loader import EndpointDecision
from socksplice.nodeagent.endpoints import Change, EndpointTable
from socksplice.nodeagent.verdicts import EndpointKey, Verdict, transition

T0 = 1_700_000_000.0
FAST = AutoSpec(EvidenceWindow(connections=2, seconds=10), min_messages_per_connection=1)
A = EndpointKey(4097, 4113, 8080)
B = EndpointKey(4097, 4129, 8080)
C = EndpointKey(4145, 4145, 6379)  # loopback inside one pod
D = EndpointKey(4161, 4113, 443)


def counts(connections: int, receives: int, **kinds: int) -> dict[str, int]:
    base = {
        "connections": connections,
        "spliced_connections": 0,
        "receives": receives,
        "bytes": 10 * receives,
    }
    base = {name: 0 for name in EVIDENCE} | base
    base.update(kinds)
    return base


class Policies:
    """policy_for over a plain dict: what the agent derives from its pod plans."""

    def __init__(self, by_key: dict[EndpointKey, tuple[str, Mode, AutoSpec]]) -> None:
        self.by_key = by_key

    def __call__(self, key: EndpointKey) -> tuple[str, Mode, AutoSpec] | None:
        return self.by_key.get(key)


def auto_for(*keys: EndpointKey) -> Policies:
    return Policies({k: ("shop/cart", Mode.AUTO, FAST) for k in keys})


def busy(*keys: EndpointKey, n: int = 5) -> dict[EndpointKey, dict[str, int]]:
    return {k: counts(n, 10 * n) for k in keys}


def promote(table: EndpointTable, *keys: EndpointKey, policies: Policies | None = None) -> list[Change]:
    """First sight at T0, promotion at T0 + 10."""
    policies = policies or auto_for(*keys)
    table.update(busy(*keys, n=1), policy_for=policies, observation="", now=T0)
    return table.update(busy(*keys), policy_for=policies, observation="", now=T0 + 10)


def test_a_promoted_endpoint_gets_a_slot_and_the_change_says_so() -> None:
    table = EndpointTable(None, max_slots=8)
    first = table.update(busy(A, n=1), policy_for=auto_for(A), observation="", now=T0)
    assert [(c.key, c.old, c.new.verdict if c.new else None) for c in first] == [(A, None, Verdict.AUDIT)]
    assert table.spliced_slots() == {}
    # Progress inside Audit is no decision: no change, but the record shows the latest counts and reason.
    assert table.update(busy(A, n=2), policy_for=auto_for(A), observation="", now=T0 + 5) == []
    record = table.get(A)
    assert record is not None and record.last_counts["connections"] == 2
    assert record.reason == "evidence: 2 of 2 connections, 5 of 10 s"
    changes = table.update(busy(A), policy_for=auto_for(A), observation="", now=T0 + 10)
    assert len(changes) == 1 and transition(changes[0].old, changes[0].new) == "promoted"
    assert table.spliced_slots() == {A: 1} and table.demoted_slots() == set()
    assert [r.key for r in table.records()] == [A]


def test_slots_go_round_robin_so_a_freed_slot_is_reused_as_late_as_possible() -> None:
    table = EndpointTable(None, max_slots=4)  # slots 1..3
    promote(table, A, B)
    assert table.spliced_slots() == {A: 1, B: 2}
    # A's pods are no longer selected: dropped, its slot freed; C takes 3, not the freed 1.
    policies = auto_for(B, C)
    table.update(busy(B, C, n=1), policy_for=policies, observation="", now=T0 + 20)
    changes = table.update(busy(B, C), policy_for=policies, observation="", now=T0 + 30)
    assert table.spliced_slots() == {B: 2, C: 3}
    assert [(c.key, c.new.slot if c.new else None) for c in changes] == [(C, 3)]
    # Now that every slot was used once, the freed 1 comes back.
    policies = auto_for(B, C, D)
    table.update(busy(B, C, D, n=1), policy_for=policies, observation="", now=T0 + 40)
    table.update(busy(B, C, D), policy_for=policies, observation="", now=T0 + 50)
    assert table.spliced_slots() == {B: 2, C: 3, D: 1}


def test_when_every_slot_is_taken_the_endpoint_waits_on_tcp() -> None:
    table = EndpointTable(None, max_slots=2)  # one slot
    promote(table, A, B)
    assert table.spliced_slots() == {A: 1}
    waiting = table.get(B)
    assert waiting is not None and waiting.verdict == Verdict.AUDIT and waiting.slot == 0
    assert (
        waiting.reason == "would splice, but all 1 endpoint slots are in use: stays on TCP until one is freed"
    )
    # A goes away (absent from the evidence): B gets the slot on the next turn.
    table.update(busy(B), policy_for=auto_for(A, B), observation="", now=T0 + 20)
    assert table.spliced_slots() == {B: 1} and table.get(A) is None


def test_a_demoted_endpoint_keeps_its_slot_until_it_is_dropped() -> None:
    table = EndpointTable(None, max_slots=4)
    promote(table, A, B)
    evidence = busy(A, B) | {A: counts(6, 60, did_blocking_eagain=1)}
    changes = table.update(evidence, policy_for=auto_for(A, B), observation="", now=T0 + 20)
    assert [(c.key, transition(c.old, c.new)) for c in changes] == [(A, "demoted")]
    assert table.spliced_slots() == {B: 2} and table.demoted_slots() == {1}
    # More evidence later: still Demoted, still holding the slot; no change reported.
    evidence = busy(A, B) | {A: counts(9, 90, did_blocking_eagain=4, would_waitall=1)}
    assert table.update(evidence, policy_for=auto_for(A, B), observation="", now=T0 + 30) == []
    assert table.demoted_slots() == {1}
    changes = table.update(busy(B), policy_for=auto_for(A, B), observation="", now=T0 + 40)
    assert [(c.key, c.new) for c in changes] == [(A, None)]
    assert table.demoted_slots() == set()


def test_an_endpoint_demoted_while_audited_never_holds_a_slot() -> None:
    table = EndpointTable(None, max_slots=4)
    table.update({A: counts(1, 10, would_splice=1)}, policy_for=auto_for(A), observation="", now=T0)
    record = table.get(A)
    assert record is not None and (record.verdict, record.slot) == (Verdict.DEMOTED, 0)
    assert table.demoted_slots() == set()


def test_only_auto_spliced_endpoints_hold_slots() -> None:
    table = EndpointTable(None, max_slots=8)
    policies = Policies(
        {
            A: ("shop/relaxed", Mode.SPLICE, AutoSpec()),
            B: ("shop/watch", Mode.DRY_RUN, FAST),
            C: ("shop/cart", Mode.AUTO, FAST),
        }
    )
    promote(table, A, B, C, policies=policies)
    verdicts = {r.key: (r.verdict, r.slot) for r in table.records()}
    assert verdicts == {A: (Verdict.SPLICED, 0), B: (Verdict.AUDIT, 0), C: (Verdict.SPLICED, 1)}
    assert table.spliced_slots() == {C: 1}
    # C's policy turns to DryRun: back to TCP, its slot freed.
    policies.by_key[C] = ("shop/cart", Mode.DRY_RUN, FAST)
    changes = table.update(busy(A, B, C), policy_for=policies, observation="", now=T0 + 20)
    assert [(c.key, c.new.verdict if c.new else None, c.new.slot if c.new else None) for c in changes] == [
        (C, Verdict.AUDIT, 0)
    ]
    assert table.spliced_slots() == {}


def test_lost_observation_puts_auto_endpoints_back_on_tcp() -> None:
    table = EndpointTable(None, max_slots=8)
    promote(table, A)
    changes = table.update(busy(A), policy_for=auto_for(A), observation="no BTF for tcp_bpf", now=T0 + 20)
    assert len(changes) == 1 and changes[0].new is not None
    assert changes[0].new.reason == "observation unavailable: no BTF for tcp_bpf"
    assert table.spliced_slots() == {}


def test_a_restart_keeps_verdicts_slots_and_the_reuse_order(tmp_path: Path) -> None:
    path = tmp_path / "state" / "endpoints.json"
    table = EndpointTable(path, max_slots=8)
    promote(table, A, B, C)
    table.update(
        busy(B, C) | {C: counts(6, 60, would_rcvlowat=2)},
        policy_for=auto_for(B, C),
        observation="",
        now=T0 + 20,
    )
    assert table.spliced_slots() == {B: 2} and table.demoted_slots() == {3}
    assert not path.with_suffix(".tmp").exists()

    again = EndpointTable(path, max_slots=8)
    assert again.records() == table.records()
    assert again.spliced_slots() == {B: 2} and again.demoted_slots() == {3}
    c = again.get(C)
    assert c is not None and c.reason.startswith("would_rcvlowat (2): SO_RCVLOWAT above 1")
    assert (c.first_seen, c.since) == (T0, T0 + 20)
    # After the restart the same evidence changes nothing, and a new endpoint takes 4, not the freed 1.
    assert (
        again.update(
            busy(B) | {C: counts(6, 60, would_rcvlowat=2)},
            policy_for=auto_for(B, C),
            observation="",
            now=T0 + 30,
        )
        == []
    )
    promote(again, B, D, policies=auto_for(B, D))
    assert again.spliced_slots() == {B: 2, D: 4}
    data = json.loads(path.read_text())
    assert data["version"] == 1 and data["next"] == 5
    assert [e["port"] for e in data["endpoints"]] == [8080, 443]  # by key: C was dropped
    assert data["endpoints"][0] == {
        "server_netns": 4097,
        "client_netns": 4129,
        "port": 8080,
        "policy": "shop/cart",
        "mode": "Auto",
        "verdict": "Spliced",
        "reason": "promoted: 5 connections in 10 s, 10.0 messages per connection",
        "first_seen": T0,
        "since": T0 + 10,
        "slot": 2,
        "counts": counts(5, 50),
        "sampled": False,
        "window_start": None,
        "window_base": {},
    }


@pytest.mark.parametrize(
    "text",
    ["{not json", "[]", '{"endpoints": [{"port": 80}]}', '{"endpoints": [{"mode": "Sometimes"}]}', ""],
)
def test_a_corrupt_file_starts_empty_with_one_warning(
    tmp_path: Path, text: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "endpoints.json"
    path.write_text(text)
    with caplog.at_level(logging.WARNING, logger="socksplice.nodeagent.endpoints"):
        table = EndpointTable(path, max_slots=8)
    assert table.records() == ()
    assert len(caplog.records) == 1
    assert caplog.records[0].getMessage().startswith(f"endpoints {path}: corrupt, starting empty: ")
    promote(table, A)  # and it works (and rewrites the file) from there
    assert EndpointTable(path, max_slots=8).spliced_slots() == {A: 1}


def test_a_missing_file_starts_empty_quietly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        table = EndpointTable(tmp_path / "endpoints.json", max_slots=8)
    assert table.records() == () and caplog.records == []
    assert table.update({}, policy_for=auto_for(), observation="", now=T0) == []
    assert not (tmp_path / "endpoints.json").exists()  # nothing changed, nothing written


def test_a_slot_beyond_a_smaller_capacity_is_given_again(tmp_path: Path) -> None:
    path = tmp_path / "endpoints.json"
    big = EndpointTable(path, max_slots=16)
    promote(big, A, B, C, D)
    assert big.spliced_slots() == {A: 1, B: 2, C: 3, D: 4}
    small = EndpointTable(path, max_slots=4)  # slots 1..3
    assert small.spliced_slots() == {A: 1, B: 2, C: 3}
    small.update(busy(A, B, C, D), policy_for=auto_for(A, B, C, D), observation="", now=T0 + 20)
    d = small.get(D)
    assert d is not None and (d.verdict, d.slot) == (Verdict.AUDIT, 0)  # every slot is taken


def test_the_datapath_verdicts_splice_promoted_sample_short_and_leave_demoted_unwatched(
    tmp_path: Path,
) -> None:
    path = tmp_path / "endpoints.json"
    table = EndpointTable(path, max_slots=8)
    keys = (A, B, C)
    table.update(busy(*keys, n=1), policy_for=auto_for(*keys), observation="", now=T0)
    assert table.datapath_verdicts() == {}  # every endpoint in its first window: all watched
    evidence = {A: counts(5, 50), B: counts(5, 2), C: counts(5, 50, would_waitall=1)}
    changes = table.update(evidence, policy_for=auto_for(*keys), observation="", now=T0 + 10)
    assert [(c.key, c.new.verdict if c.new else None) for c in changes] == [
        (A, Verdict.SPLICED),
        (B, Verdict.AUDIT),  # sampled now: a decision that is saved
        (C, Verdict.DEMOTED),
    ]
    assert table.datapath_verdicts() == {
        A: EndpointDecision(V_SPLICE, 1),
        B: EndpointDecision(V_SAMPLED),
        C: EndpointDecision(V_UNWATCHED),
    }
    # A restart keeps the sampling and its window.
    again = EndpointTable(path, max_slots=8)
    assert again.datapath_verdicts() == table.datapath_verdicts()
    b = again.get(B)
    assert b is not None and (b.sampled, b.window_start, dict(b.window_base)) == (True, T0 + 10, counts(5, 2))
