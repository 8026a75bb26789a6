"""The conformance suite's fast subset, plain vs spliced between local pods, and its rendering."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from socksplice.conformance import rendering
from socksplice.conformance.running import Outcome, run_suite
from socksplice.conformance.scenarios import SCENARIOS, select

NO_PAYLOAD = {"so-rcvtimeo"}  # no byte is ever sent: nothing to redirect
# When conntrack must remap the client port of a DNAT'ed connection (its tuple clashes with an
# earlier connection from the same port), the ends no longer pair and it stays on TCP (fail-open).
# test_datapath.py proves DNAT splicing itself.
MAY_STAY_ON_TCP = {"service-vip"}


@pytest.mark.kernel
def test_fast_subset_has_no_difference_beyond_the_documented_kernel_ones() -> None:
    outcomes = run_suite(select(full=False))
    assert [o.scenario.name for o in outcomes] == [s.name for s in select(full=False)]
    for o in outcomes:
        assert not o.failed, (o.scenario.name, o.plain)
        if o.scenario.name not in NO_PAYLOAD | MAY_STAY_ON_TCP:
            assert o.redirected > 0, f"{o.scenario.name}: the spliced run was not spliced"
    differing = {o.scenario.name for o in outcomes if not o.same}
    undocumented = differing - set(rendering.KNOWN_CAUSES)
    assert not undocumented, {o.scenario.name: (o.plain, o.spliced) for o in outcomes if not o.same}


def _outcome(name: str, plain: object, spliced: object, redirected: int = 10) -> Outcome:
    [scenario] = [s for s in SCENARIOS if s.name == name]
    return Outcome(scenario, plain, spliced, redirected)


def test_json_counts_differences_and_names_the_kernel_cause() -> None:
    outcomes = [
        _outcome("blocking-echo", {"client": {"eof": 0}}, {"client": {"eof": 0}}),
        _outcome("msg-waitall", {"client": {"n": 100000}}, {"client": {"n": 10000}}),
        _outcome("ipv6", {"client": {"error": "exit 1"}}, {"client": {"error": "exit 1"}}),
    ]
    doc = json.loads(json.dumps(rendering.document(outcomes, {})))
    assert doc["differences"] == 2  # a failed scenario is never "same"
    by_name = {s["name"]: s for s in doc["scenarios"]}
    assert by_name["blocking-echo"]["same"] is True and "cause" not in by_name["blocking-echo"]
    assert "MSG_WAITALL" in by_name["msg-waitall"]["cause"]
    assert by_name["ipv6"]["failed"] is True
    # the documented tcp_bpf difference is not a regression; the failed scenario is
    assert by_name["msg-waitall"]["documented"] is True and by_name["ipv6"]["documented"] is False
    assert doc["undocumentedDifferences"] == 1


def test_markdown_is_a_table_with_one_row_per_scenario(tmp_path: Path) -> None:
    outcomes = [
        _outcome("blocking-echo", {"client": {"eof": 0}}, {"client": {"eof": 0}}),
        _outcome("so-rcvlowat", {"client": {"r": 1000}}, {"client": {"r": 500}}),
    ]
    text = rendering.markdown(outcomes, {}, "socksplice conformance --markdown x.md")
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 3  # header + 2
    assert "**1 difference(s)**" in text
    assert "SO_RCVLOWAT" in text
    assert "DIFFERENT" in rendering.table(outcomes)
