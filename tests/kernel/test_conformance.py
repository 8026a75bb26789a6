"""The conformance suite's fast subset (plain vs each SocketSplice mode, local pods) and its rendering."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from socksplice.api.nodestatus import EndpointStatus
from socksplice.api.socketsplice import Mode
from socksplice.tools.conformance import rendering
from socksplice.tools.conformance.running import MODES, Outcome, conformance_env, run_scenarios, verdict_of
from socksplice.tools.conformance.scenarios import SCENARIOS, port, select

NO_PAYLOAD = {"so-rcvtimeo"}  # no byte is ever sent: nothing to redirect
# When conntrack must remap the client port of a DNAT'ed connection (its tuple clashes with an
# earlier connection from the same port), the ends no longer pair and it stays on TCP (fail-open).
# test_datapath.py proves DNAT splicing itself.
MAY_STAY_ON_TCP = {"service-vip"}
AUTO_SPLICED = ("epoll-echo", "epoll-request-response")
"""Both ends epoll: Auto must splice them."""
AUTO_DEMOTED = ("blocking-echo", "msg-waitall")
"""A blocking reader that waits, MSG_WAITALL: Auto must refuse them (they stay on TCP)."""


@pytest.mark.kernel
def test_fast_subset_default_mode_is_tcp_and_splicing_differs_only_as_documented() -> None:
    """Every fast scenario in DryRun and SpliceRelaxedReceive; in Auto (two passes each, the
    slower mode) the scenarios that must be spliced and some that must be refused."""
    scenarios = select(full=False)
    auto = [s for s in scenarios if s.name in AUTO_SPLICED + AUTO_DEMOTED]
    base = Path("/run/socksplice")
    base.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="conformance-", dir=base) as tmp,
        conformance_env(Path(tmp)) as env,
    ):
        outcomes = run_scenarios(env, auto, (Mode.AUTO,))
        outcomes += run_scenarios(env, scenarios, (Mode.DRY_RUN, Mode.SPLICE))
        observation = env.datapath.observation
    grouped = rendering.by_mode(outcomes)
    assert list(grouped) == [Mode.AUTO, Mode.DRY_RUN, Mode.SPLICE] == list(MODES)
    for mode, group in grouped.items():
        assert [o.scenario.name for o in group] == [
            s.name for s in (auto if mode is Mode.AUTO else scenarios)
        ]
        for o in group:
            assert not o.failed, (mode, o.scenario.name, o.plain)
            if mode is not Mode.AUTO and o.scenario.name not in MAY_STAY_ON_TCP:
                assert o.paired > 0, f"{mode} {o.scenario.name}: no connection was paired"
    for o in grouped[Mode.AUTO]:
        assert o.same, (o.scenario.name, o.verdict, o.reason, o.audited, o.plain, o.spliced)
        if observation:  # this kernel cannot watch receives: Auto behaves as DryRun
            assert (o.verdict, o.redirected) == ("Audit", 0) and "observation unavailable" in o.reason
        elif o.scenario.name in AUTO_SPLICED:
            assert (o.verdict, o.verdict_after) == ("Spliced", "Spliced"), (o.scenario.name, o.reason)
            assert o.redirected > 0 and o.paired > 0, o.scenario.name
        else:
            assert (o.verdict, o.redirected, o.paired) == ("Demoted", 0, 0), (o.scenario.name, o.reason)
    dry_run = grouped[Mode.DRY_RUN]
    assert all(o.redirected == 0 for o in dry_run)
    assert {o.scenario.name: (o.plain, o.spliced) for o in dry_run if not o.same} == {}
    for o in grouped[Mode.SPLICE]:
        if o.scenario.name not in NO_PAYLOAD | MAY_STAY_ON_TCP:
            assert o.redirected > 0, f"{o.scenario.name}: the spliced run was not spliced"
    undocumented = {o.scenario.name: (o.plain, o.spliced) for o in grouped[Mode.SPLICE] if not o.same}
    assert not (set(undocumented) - set(rendering.KNOWN_CAUSES)), undocumented


def _outcome(name: str, plain: object, spliced: object, mode: Mode = Mode.SPLICE, **kw: object) -> Outcome:
    [scenario] = [s for s in SCENARIOS if s.name == name]
    o = Outcome(scenario, plain, spliced, redirected=0 if mode is Mode.DRY_RUN else 10, mode=mode, paired=1)
    for k, v in kw.items():
        setattr(o, k, v)
    return o


def _auto(name: str, plain: object, spliced: object, verdict: str, **kw: object) -> Outcome:
    redirected = 10 if verdict == "Spliced" else 0
    kw = {"audited": plain, "verdict_after": verdict, "redirected": redirected, **kw}
    return _outcome(name, plain, spliced, Mode.AUTO, verdict=verdict, reason=f"{verdict} because", **kw)


def test_json_counts_differences_per_mode_and_names_the_kernel_cause() -> None:
    outcomes = [
        _auto("epoll-echo", {"client": {"ok": 1}}, {"client": {"ok": 1}}, "Spliced"),
        _auto("blocking-echo", {"client": {"eof": 0}}, {"client": {"eof": 0}}, "Demoted"),
        _outcome("blocking-echo", {"client": {"eof": 0}}, {"client": {"eof": 0}}, Mode.DRY_RUN),
        _outcome("msg-waitall", {"client": {"n": 100000}}, {"client": {"n": 100000}}, Mode.DRY_RUN),
        _outcome("blocking-echo", {"client": {"eof": 0}}, {"client": {"eof": 0}}),
        _outcome(
            "msg-waitall",
            {"client": {"n": 100000}},
            {"client": {"n": 10000}},
            did_differ={"waitall_short": 1},
        ),
        _outcome("ipv6", {"client": {"error": "exit 1"}}, {"client": {"error": "exit 1"}}),
    ]
    doc = json.loads(json.dumps(rendering.document(outcomes, {})))
    assert (doc["defaultMode"], doc["differences"], doc["undocumentedDifferences"]) == ("Auto", 0, 1)
    auto, dry, splice = doc["modes"]
    assert (auto["mode"], auto["default"], auto["differences"]) == ("Auto", True, 0)
    assert (dry["mode"], dry["default"], dry["differences"]) == ("DryRun", False, 0)
    assert (splice["mode"], splice["differences"], splice["undocumentedDifferences"]) == (
        "SpliceRelaxedReceive",
        2,  # a failed scenario is never "same"
        1,
    )
    auto_by_name = {s["name"]: s for s in auto["scenarios"]}
    assert [auto_by_name[n]["verdict"] for n in ("epoll-echo", "blocking-echo")] == ["Spliced", "Demoted"]
    assert auto_by_name["epoll-echo"]["reason"] == "Spliced because"
    assert auto_by_name["epoll-echo"]["redirectedBytes"] == 10 and auto_by_name["epoll-echo"]["auditedSame"]
    by_name = {s["name"]: s for s in splice["scenarios"]}
    assert by_name["blocking-echo"]["same"] is True and "cause" not in by_name["blocking-echo"]
    assert "MSG_WAITALL" in by_name["msg-waitall"]["cause"]
    assert by_name["ipv6"]["failed"] is True
    # the documented tcp_bpf difference is not a regression; the failed scenario is
    assert by_name["msg-waitall"]["documented"] is True and by_name["ipv6"]["documented"] is False
    # did-differ counters: reported beside the comparison
    assert by_name["msg-waitall"]["didDiffer"] == {"waitall_short": 1}
    assert [by_name[n]["didDifferAgrees"] for n in ("blocking-echo", "msg-waitall", "ipv6")] == [
        True,
        True,
        None,
    ]
    assert doc["didDifferDisagreements"] == []


def test_any_auto_or_dry_run_difference_fails_and_did_differ_disagreements_are_listed() -> None:
    differing = _outcome("msg-waitall", {"client": {"n": 100000}}, {"client": {"n": 10000}}, Mode.DRY_RUN)
    redirected = _outcome("blocking-echo", {"client": {"eof": 0}}, {"client": {"eof": 0}}, Mode.DRY_RUN)
    redirected.redirected = 1  # DryRun must never redirect, even when the bytes come out right
    auto_differing = _auto("msg-waitall", {"client": {"n": 100000}}, {"client": {"n": 10000}}, "Spliced")
    auto_leak = _auto(
        "blocking-echo", {"client": {"eof": 0}}, {"client": {"eof": 0}}, "Demoted", redirected=5
    )
    audit_differs = _auto(
        "epoll-echo", {"client": {"ok": 1}}, {"client": {"ok": 1}}, "Spliced", audited={"client": {"ok": 0}}
    )
    assert not rendering.documented(differing) and not redirected.same
    assert not auto_leak.same and "redirected although the endpoint was Demoted" in rendering.cause(auto_leak)
    assert not audit_differs.same and "evidence pass" in rendering.cause(audit_differs)
    assert rendering.undocumented([differing, redirected, auto_differing, auto_leak, audit_differs]) == 5
    silent = _outcome("so-rcvlowat", {"client": {"r": 1000}}, {"client": {"r": 500}})
    counted_same = _outcome(
        "blocking-echo", {"client": {"e": 0}}, {"client": {"e": 0}}, did_differ={"splice": 2}
    )
    assert [o.scenario.name for o in rendering.disagreements([silent, counted_same])] == [
        "so-rcvlowat",
        "blocking-echo",
    ]
    assert rendering.did_differ_cell(counted_same) == "splice 2, DISAGREES"


def test_verdict_of_joins_the_endpoints_of_a_scenario() -> None:
    one = EndpointStatus(server="demo/client", client="demo/client", port=9401, verdict="Spliced", reason="a")
    two = EndpointStatus(server="demo/server", client="demo/server", port=9401, verdict="Demoted", reason="b")
    assert verdict_of((one, two)) == ("Demoted/Spliced", "a; b")
    assert verdict_of((one, one)) == ("Spliced", "a")
    assert verdict_of(()) == ("none", "no endpoint was observed")


def test_each_scenario_listens_on_a_port_of_its_own() -> None:
    ports = [port(s, 9400) for s in SCENARIOS]
    assert len(set(ports)) == len(SCENARIOS) and 9400 not in ports  # 9400: the service's target port


def test_markdown_has_a_table_per_mode_with_one_row_per_scenario(tmp_path: Path) -> None:
    outcomes = [
        _auto("epoll-echo", {"client": {"ok": 1}}, {"client": {"ok": 1}}, "Spliced"),
        _auto("blocking-echo", {"client": {"eof": 0}}, {"client": {"eof": 0}}, "Demoted"),
        _outcome("blocking-echo", {"client": {"eof": 0}}, {"client": {"eof": 0}}, Mode.DRY_RUN),
        _outcome("so-rcvlowat", {"client": {"r": 1000}}, {"client": {"r": 1000}}, Mode.DRY_RUN),
        _outcome("blocking-echo", {"client": {"eof": 0}}, {"client": {"eof": 0}}),
        _outcome(
            "so-rcvlowat", {"client": {"r": 1000}}, {"client": {"r": 500}}, did_differ={"rcvlowat_short": 1}
        ),
    ]
    text = rendering.markdown(outcomes, "socksplice conformance --markdown x.md")
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 9  # (header + 2) per mode
    assert (
        "## Auto (default)" in text and "## DryRun\n" in text and "## SpliceRelaxedReceive (opt-in)" in text
    )
    assert "| verdict | reason |" in text and "| Spliced | Spliced because |" in text
    assert "| did differ |" in text and "rcvlowat_short 1, agrees" in text
    assert "minMessagesPerConnection: 0" in text
    assert text.count("**0 difference(s)**") == 2 and "**1 difference(s)**" in text
    assert "SO_RCVLOWAT" in text
    assert "DIFFERENT" in rendering.table(outcomes) and "Demoted" in rendering.table(outcomes)
