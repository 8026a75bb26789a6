"""decide: Auto mode's verdict per endpoint, from the data path's cumulative evidence counters."""

from __future__ import annotations

from dataclasses import replace

import pytest

from socksplice.api.socketsplice import AutoSpec, EvidenceWindow, Mode
from socksplice.bpf.layout import EVIDENCE
from socksplice.nodeagent.verdicts import (
    KIND_REASONS,
    EndpointKey,
    EndpointRecord,
    Verdict,
    decide,
    did_differ,
    transition,
    window_counts,
    would_differ,
)

KEY = EndpointKey(server_netns=4097, client_netns=4113, port=8080)
AUTO = AutoSpec()  # 20 connections, 60 s, 4 messages per connection
T0 = 1_700_000_000.0


def counts(connections: int = 0, receives: int = 0, **kinds: int) -> dict[str, int]:
    """A full counter set as the data path reports it (every EVIDENCE name, zero unless given)."""
    base = {
        "connections": connections,
        "spliced_connections": 0,
        "receives": receives,
        "bytes": 100 * receives,
    }
    base = {name: 0 for name in EVIDENCE} | base
    for name, n in kinds.items():
        assert name in base, name
        base[name] = n
    return base


def step(
    record: EndpointRecord | None,
    c: dict[str, int],
    now: float,
    mode: Mode = Mode.AUTO,
    auto: AutoSpec = AUTO,
    observation: str = "",
) -> EndpointRecord:
    return decide(record, KEY, c, mode=mode, auto=auto, policy="shop/cart", observation=observation, now=now)


def test_a_new_endpoint_is_audited_and_says_how_much_evidence_is_missing() -> None:
    r = step(None, counts(3, 30), T0)
    assert (r.verdict, r.reason) == (Verdict.AUDIT, "evidence: 3 of 20 connections, 0 of 60 s")
    assert (r.first_seen, r.since, r.slot, r.policy, r.mode) == (T0, T0, 0, "shop/cart", Mode.AUTO)
    assert r.last_counts["connections"] == 3
    r = step(r, counts(5, 50), T0 + 12.7)
    assert r.reason == "evidence: 5 of 20 connections, 12 of 60 s"
    assert (r.first_seen, r.since) == (T0, T0)  # still Audit: the verdict's time does not move


def test_promotion_needs_both_the_connections_and_the_seconds() -> None:
    r = step(None, counts(1, 10), T0)
    r = step(r, counts(25, 250), T0 + 30)  # connections enough, seconds not
    assert (r.verdict, r.reason) == (Verdict.AUDIT, "evidence: 20 of 20 connections, 30 of 60 s")
    slow = step(step(None, counts(1, 10), T0), counts(19, 190), T0 + 600)  # seconds enough, connections not
    assert (slow.verdict, slow.reason) == (Verdict.AUDIT, "evidence: 19 of 20 connections, 60 of 60 s")
    r = step(r, counts(25, 250), T0 + 60)
    assert r.verdict == Verdict.SPLICED
    assert r.reason == "promoted: 25 connections in 60 s, 10.0 messages per connection"
    assert (r.since, r.first_seen) == (T0 + 60, T0)
    assert transition(None, r) == "promoted"


SHORT = "short connections: 1.5 messages per connection, fewer than 4: splicing would not pay"


def test_short_connections_stay_on_tcp_sampled_and_are_judged_again_per_window() -> None:
    r = step(None, counts(1, 1), T0)
    r = step(r, counts(40, 60), T0 + 120)
    assert (r.verdict, r.sampled) == (Verdict.AUDIT, True)
    assert r.reason == f"{SHORT}; 1 in 16 new connections watched"
    assert (r.window_start, dict(r.window_base)) == (T0 + 120, counts(40, 60))  # a sampled window begins
    # While it fills, the reason keeps the judgement and says how far the window is.
    r = step(r, counts(45, 70), T0 + 150)
    assert r.sampled and r.reason == (
        f"{SHORT}; 1 in 16 new connections watched (evidence: 5 of 20 connections, 30 of 60 s)"
    )
    # A full sampled window, still short: another one.
    r = step(r, counts(60, 90), T0 + 180)
    assert (r.sampled, r.window_start, r.reason) == (
        True,
        T0 + 180,
        f"{SHORT}; 1 in 16 new connections watched",
    )
    # The sampled connections grew longer: every connection is watched again for a new window,
    # and only that window can promote.
    r = step(r, counts(80, 290), T0 + 240)
    assert (r.verdict, r.sampled, r.window_start) == (Verdict.AUDIT, False, T0 + 240)
    assert r.reason == (
        "sampled connections grew longer (20 connections in 60 s, 10.0 messages per connection): "
        "every new connection watched again, for a new evidence window"
    )
    r = step(r, counts(90, 390), T0 + 270)
    assert (r.verdict, r.reason) == (Verdict.AUDIT, "evidence: 10 of 20 connections, 30 of 60 s")
    r = step(r, counts(100, 490), T0 + 300)
    assert r.verdict == Verdict.SPLICED
    assert r.reason == "promoted: 20 connections in 60 s, 10.0 messages per connection"
    assert transition(None, r) == "promoted"
    # A zero minimum promotes even connections that carry nothing.
    none = AutoSpec(EvidenceWindow(connections=1, seconds=1), min_messages_per_connection=0)
    r = step(step(None, counts(1, 0), T0, auto=none), counts(1, 0), T0 + 1, auto=none)
    assert r.verdict == Verdict.SPLICED


def test_a_difference_in_a_sampled_connection_demotes() -> None:
    r = step(step(None, counts(1, 1), T0), counts(40, 60), T0 + 120)
    assert r.sampled
    r = step(r, counts(41, 62, would_waitall=1), T0 + 130)
    assert (r.verdict, r.sampled) == (Verdict.DEMOTED, False)


def test_counters_that_went_back_start_the_window_from_zero() -> None:
    """New maps (a layout upgrade) restart the evidence: the window judges what they hold."""
    r = step(step(None, counts(1, 1), T0), counts(40, 60), T0 + 120)
    assert window_counts(counts(3, 30), r.window_base) == counts(3, 30)
    assert window_counts(counts(45, 70), r.window_base)["connections"] == 5
    r = step(r, counts(20, 200), T0 + 200)
    assert (r.sampled, r.verdict) == (False, Verdict.AUDIT)
    assert r.reason.startswith("sampled connections grew longer (20 connections in 80 s, 10.0")


def test_once_spliced_the_cost_is_not_judged_again() -> None:
    r = step(step(None, counts(1, 10), T0), counts(20, 200), T0 + 60)
    assert r.verdict == Verdict.SPLICED
    later = step(r, counts(1000, 1100), T0 + 600)  # now 1.1 per connection: still Spliced
    assert (later.verdict, later.reason, later.since) == (Verdict.SPLICED, r.reason, r.since)
    assert transition(r, later) is None


@pytest.mark.parametrize(
    ("counter", "sentence"),
    [
        ("would_blocking_receive", "blocking receives a wake-up without data can end"),
        ("would_waitall", "MSG_WAITALL: tcp_bpf returns what is queued"),
        ("would_rcvlowat", "SO_RCVLOWAT above 1: tcp_bpf ignores it"),
        ("would_splice", "splice(2)/sendfile(2) reads only TCP's queue, not spliced bytes"),
        ("would_close_unread", "close with unread bytes: TCP resets, tcp_bpf sends FIN"),
        ("would_fionread", "FIONREAD counts only TCP's queue on this kernel"),
        ("did_blocking_eagain", "happened: a blocking receive without SO_RCVTIMEO returned EAGAIN"),
        ("did_waitall_short", "happened: a MSG_WAITALL receive returned what was queued before EOF"),
        ("did_rcvlowat_short", "happened: a receive returned fewer bytes than SO_RCVLOWAT"),
        ("did_splice", "happened: splice(2)/sendfile(2) read only TCP's queue"),
        ("did_close_unread", "happened: a close with unread bytes sent FIN"),
        ("did_fionread", "happened: FIONREAD counted only TCP's queue"),
    ],
)
def test_each_kind_demotes_and_names_itself_with_its_count(counter: str, sentence: str) -> None:
    audited = step(None, counts(2, 20), T0)
    r = step(audited, counts(3, 30, **{counter: 3}), T0 + 5)
    assert r.verdict == Verdict.DEMOTED
    assert r.reason.startswith(f"{counter} (3): {sentence}")
    assert r.reason == f"{counter} (3): {KIND_REASONS[counter]}"
    assert r.since == T0 + 5
    assert transition(audited, r) == "demoted"
    spliced = step(step(None, counts(1, 10), T0), counts(20, 200), T0 + 60)
    r = step(spliced, counts(21, 210, **{counter: 1}), T0 + 61)  # a spliced endpoint is demoted too
    assert r.verdict == Verdict.DEMOTED and transition(spliced, r) == "demoted"


def test_the_reason_puts_what_did_differ_first_and_lists_the_rest() -> None:
    c = counts(5, 50, would_waitall=2, did_fionread=1, would_fionread=4)
    r = step(None, c, T0)
    assert (
        r.reason
        == f"did_fionread (1): {KIND_REASONS['did_fionread']}; also would_waitall (2), would_fionread (4)"
    )
    assert would_differ(c) == {"waitall": 2, "fionread": 4}
    assert did_differ(c) == {"fionread": 1}
    assert would_differ(counts(5, 50)) == {} and did_differ({}) == {}


def test_demotion_is_sticky() -> None:
    r = step(None, counts(2, 20, would_close_unread=1), T0)
    assert r.verdict == Verdict.DEMOTED
    more = step(r, counts(80, 8000, would_close_unread=5, did_close_unread=2), T0 + 600)
    assert (more.verdict, more.reason, more.since) == (Verdict.DEMOTED, r.reason, T0)  # the first evidence
    assert transition(r, more) is None
    # Even counts back at zero (a data path that lost them) do not promote a demoted endpoint.
    assert step(more, counts(100, 10000), T0 + 900).verdict == Verdict.DEMOTED
    # Nor does a lost observation turn it into Audit, or DryRun.
    assert step(more, counts(100, 10000), T0 + 900, observation="no BTF").verdict == Verdict.DEMOTED
    assert step(more, counts(100, 10000), T0 + 900, mode=Mode.DRY_RUN).verdict == Verdict.DEMOTED


def test_splice_relaxed_receive_is_forced_spliced_and_never_demoted() -> None:
    r = step(None, counts(1, 1), T0, mode=Mode.SPLICE)
    assert (r.verdict, r.reason) == (Verdict.SPLICED, "SpliceRelaxedReceive splices every connection")
    r2 = step(
        r, counts(2, 2, did_blocking_eagain=3, would_waitall=1), T0 + 1, mode=Mode.SPLICE, observation="x"
    )
    assert (r2.verdict, r2.reason, r2.since) == (Verdict.SPLICED, r.reason, T0)
    assert transition(None, r) is None  # the policy's choice, not news
    # Back to Auto: the evidence gathered meanwhile counts.
    assert step(r2, counts(3, 3, did_blocking_eagain=3), T0 + 2).verdict == Verdict.DEMOTED
    # A forced Spliced is not an earned one: Auto judges the endpoint afresh.
    back = step(r, counts(2, 2), T0 + 2)
    assert (back.verdict, back.reason) == (Verdict.AUDIT, "evidence: 2 of 20 connections, 2 of 60 s")


def test_dry_run_reports_what_it_would_do_but_never_spliced() -> None:
    r = step(None, counts(1, 10), T0, mode=Mode.DRY_RUN)
    assert (r.verdict, r.reason) == (Verdict.AUDIT, "evidence: 1 of 20 connections, 0 of 60 s")
    r = step(r, counts(20, 200), T0 + 60, mode=Mode.DRY_RUN)
    assert r.verdict == Verdict.AUDIT
    assert r.reason == "DryRun: would splice (20 connections in 60 s, 10.0 messages per connection)"
    assert transition(None, r) is None
    demoted = step(r, counts(21, 210, would_rcvlowat=1), T0 + 61, mode=Mode.DRY_RUN)
    assert demoted.verdict == Verdict.DEMOTED  # what Auto would have done
    # An Auto-spliced endpoint under DryRun goes back to TCP.
    spliced = step(step(None, counts(1, 10), T0), counts(20, 200), T0 + 60)
    assert step(spliced, counts(21, 210), T0 + 61, mode=Mode.DRY_RUN).verdict == Verdict.AUDIT
    # ...and switching DryRun to Auto promotes at once when the window is already full.
    assert step(r, counts(20, 200), T0 + 62).verdict == Verdict.SPLICED


def test_without_observation_auto_behaves_as_dry_run() -> None:
    no = "tracepoint sys_enter_recvfrom: not attachable on this kernel"
    r = step(None, counts(30, 300), T0, observation=no)
    assert (r.verdict, r.reason) == (Verdict.AUDIT, f"observation unavailable: {no}")
    r = step(r, counts(40, 400), T0 + 120, observation=no)
    assert r.verdict == Verdict.AUDIT
    spliced = step(step(None, counts(1, 10), T0), counts(20, 200), T0 + 60)
    lost = step(spliced, counts(21, 210), T0 + 61, observation=no)  # nothing could demote it: back to TCP
    assert (lost.verdict, lost.reason) == (Verdict.AUDIT, f"observation unavailable: {no}")
    assert step(lost, counts(22, 220), T0 + 62).verdict == Verdict.SPLICED  # back: the window is full


def test_decide_keeps_the_slot_and_stores_the_inputs() -> None:
    r = step(step(None, counts(1, 10), T0), counts(20, 200), T0 + 60)
    held = replace(r, slot=7)
    after = decide(
        held,
        KEY,
        counts(30, 300),
        mode=Mode.AUTO,
        auto=AUTO,
        policy="shop/cart-v2",
        observation="",
        now=T0 + 70,
    )
    assert (after.slot, after.policy) == (7, "shop/cart-v2")
    demoted = step(held, counts(31, 310, did_splice=1), T0 + 71)
    assert demoted.slot == 7  # the table, not decide, frees slots


def test_every_differ_counter_of_the_layout_has_one_sentence() -> None:
    differ = [name for name in EVIDENCE if name.startswith(("would_", "did_"))]
    assert sorted(KIND_REASONS) == sorted(differ)
    assert all(s and "\n" not in s for s in KIND_REASONS.values())
