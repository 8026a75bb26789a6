"""The conformance suite's fast subset (plain vs each SocketSplice mode, local pods) and its rendering."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from socksplice.api.socketsplice import Mode
from socksplice.tools.conformance import rendering
from socksplice.tools.conformance.running import Outcome, run_suite
from socksplice.tools.conformance.scenarios import SCENARIOS, select

NO_PAYLOAD = {"so-rcvtimeo"}  # no byte is ever sent: nothing to redirect
# When conntrack must remap the client port of a DNAT'ed connection (its tuple clashes with an
# earlier connection from the same port), the ends no longer pair and it stays on TCP (fail-open).
# test_datapath.py proves DNAT splicing itself.
MAY_STAY_ON_TCP = {"service-vip"}


@pytest.mark.kernel
def test_fast_subset_default_mode_is_tcp_and_splicing_differs_only_as_documented() -> None:
    scenarios = select(full=False)
    outcomes = run_suite(scenarios)
    grouped = rendering.by_mode(outcomes)
    assert list(grouped) == [Mode.DRY_RUN, Mode.SPLICE]
    for mode, group in grouped.items():
        assert [o.scenario.name for o in group] == [s.name for s in scenarios]
        for o in group:
            assert not o.failed, (mode, o.scenario.name, o.plain)
            if o.scenario.name not in MAY_STAY_ON_TCP:
                assert o.paired > 0, f"{mode} {o.scenario.name}: no connection was paired"
    dry_run = grouped[Mode.DRY_RUN]
    assert all(o.redirected == 0 for o in dry_run)
    assert {o.scenario.name: (o.plain, o.spliced) for o in dry_run if not o.same} == {}
    for o in grouped[Mode.SPLICE]:
        if o.scenario.name not in NO_PAYLOAD | MAY_STAY_ON_TCP:
            assert o.redirected > 0, f"{o.scenario.name}: the spliced run was not spliced"
    undocumented = {o.scenario.name: (o.plain, o.spliced) for o in grouped[Mode.SPLICE] if not o.same}
    assert not (set(undocumented) - set(rendering.KNOWN_CAUSES)), undocumented


def _outcome(name: str, plain: object, spliced: object, mode: Mode = Mode.SPLICE) -> Outcome:
    [scenario] = [s for s in SCENARIOS if s.name == name]
    return Outcome(
        scenario, plain, spliced, redirected=0 if mode is Mode.DRY_RUN else 10, mode=mode, paired=1
    )


def test_json_counts_differences_per_mode_and_names_the_kernel_cause() -> None:
    outcomes = [
        _outcome("blocking-echo", {"client": {"eof": 0}}, {"client": {"eof": 0}}, Mode.DRY_RUN),
        _outcome("msg-waitall", {"client": {"n": 100000}}, {"client": {"n": 100000}}, Mode.DRY_RUN),
        _outcome("blocking-echo", {"client": {"eof": 0}}, {"client": {"eof": 0}}),
        _outcome("msg-waitall", {"client": {"n": 100000}}, {"client": {"n": 10000}}),
        _outcome("ipv6", {"client": {"error": "exit 1"}}, {"client": {"error": "exit 1"}}),
    ]
    doc = json.loads(json.dumps(rendering.document(outcomes, {})))
    assert (doc["defaultMode"], doc["differences"], doc["undocumentedDifferences"]) == ("DryRun", 0, 1)
    dry, splice = doc["modes"]
    assert (dry["mode"], dry["default"], dry["differences"]) == ("DryRun", True, 0)
    assert (splice["mode"], splice["differences"], splice["undocumentedDifferences"]) == (
        "SpliceRelaxedReceive",
        2,  # a failed scenario is never "same"
        1,
    )
    by_name = {s["name"]: s for s in splice["scenarios"]}
    assert by_name["blocking-echo"]["same"] is True and "cause" not in by_name["blocking-echo"]
    assert "MSG_WAITALL" in by_name["msg-waitall"]["cause"]
    assert by_name["ipv6"]["failed"] is True
    # the documented tcp_bpf difference is not a regression; the failed scenario is
    assert by_name["msg-waitall"]["documented"] is True and by_name["ipv6"]["documented"] is False


def test_a_default_mode_difference_is_never_documented() -> None:
    differing = _outcome("msg-waitall", {"client": {"n": 100000}}, {"client": {"n": 10000}}, Mode.DRY_RUN)
    redirected = _outcome("blocking-echo", {"client": {"eof": 0}}, {"client": {"eof": 0}}, Mode.DRY_RUN)
    redirected.redirected = 1  # DryRun must never redirect, even when the bytes come out right
    assert not rendering.documented(differing) and not redirected.same
    assert rendering.undocumented([differing, redirected]) == 2


def test_markdown_has_a_table_per_mode_with_one_row_per_scenario(tmp_path: Path) -> None:
    outcomes = [
        _outcome("blocking-echo", {"client": {"eof": 0}}, {"client": {"eof": 0}}, Mode.DRY_RUN),
        _outcome("so-rcvlowat", {"client": {"r": 1000}}, {"client": {"r": 1000}}, Mode.DRY_RUN),
        _outcome("blocking-echo", {"client": {"eof": 0}}, {"client": {"eof": 0}}),
        _outcome("so-rcvlowat", {"client": {"r": 1000}}, {"client": {"r": 500}}),
    ]
    text = rendering.markdown(outcomes, "socksplice conformance --markdown x.md")
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 6  # (header + 2) per mode
    assert "## DryRun (default)" in text and "## SpliceRelaxedReceive (opt-in)" in text
    assert "**0 difference(s)**" in text and "**1 difference(s)**" in text
    assert "SO_RCVLOWAT" in text
    assert "DIFFERENT" in rendering.table(outcomes)
