"""The blocking-EAGAIN hazard: the doctor's self-test, and the data path keeping unspliced
connections off tcp_bpf (where the hazard lives)."""

from __future__ import annotations

import pytest

from socksplice.doctor.checks import hazards
from socksplice.tools.conformance.running import Env, run_once
from socksplice.tools.conformance.scenarios import Scenario
from tests.kernel.splicing import SpliceEnv, splice_yaml

pytestmark = pytest.mark.kernel

SLOW_REPLY = Scenario("shutwr-slow-reply", "shutwr-slow-reply", "half-close, reply 50 ms after EOF")


def test_doctor_self_test_reports_the_hazard_with_its_outcome() -> None:
    [entry] = hazards()
    assert entry["name"] == "tcp_bpf.blocking_eagain"
    assert entry["present"] is not None, entry["detail"]
    assert entry["tries"] == 10
    if entry["present"]:
        assert "did not return the reply" in str(entry["detail"])


def test_connection_without_a_selected_peer_never_enters_the_sockhash(env: SpliceEnv) -> None:
    """Only the client is selected: its socket stays on plain TCP, so the half-close pattern that
    fails under tcp_bpf behaves exactly as TCP."""
    env.apply(splice_yaml(labels="{app: client}"))
    before = env.totals()
    trace = run_once(Env(env.topology, env.datapath, env.agent, env.manifests), SLOW_REPLY)
    after = env.totals()
    assert trace["client"] == {"reply=ok end=0": 20}
    assert after["sockets_added"] == before["sockets_added"]
    assert after["conns_unpaired"] - before["conns_unpaired"] == 20  # once per connection


def test_spliced_half_close_is_the_documented_difference(env: SpliceEnv) -> None:
    """Both selected: the same program is spliced; every outcome is the reply or EAGAIN."""
    env.apply(splice_yaml())
    trace = run_once(Env(env.topology, env.datapath, env.agent, env.manifests), SLOW_REPLY)
    assert set(trace["client"]) <= {"reply=ok end=0", "reply=0 end=EAGAIN"}
    assert sum(trace["client"].values()) == 20
    assert env.totals()["pairs_spliced"] == 20
