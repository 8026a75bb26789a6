"""The host record of a bench run: steal and load from /proc/stat and /proc/loadavg text."""

from __future__ import annotations

from pathlib import Path

from socksplice.tools.bench.machine import (
    cpu_shares,
    during,
    idle_state,
    parse_cpu_times,
    parse_loadavg,
    snapshot,
)

STAT_A = "cpu  100 0 50 800 10 0 0 40 0 0\ncpu0 50 0 25 400 5 0 0 20 0 0\nintr 1\n"
STAT_B = "cpu  160 0 70 880 10 0 10 70 0 0\ncpu0 80 0 35 440 5 0 5 35 0 0\nintr 2\n"


def test_parse_cpu_times_reads_the_aggregate_line() -> None:
    t = parse_cpu_times(STAT_A)
    assert t["user"] == 100 and t["idle"] == 800 and t["steal"] == 40


def test_cpu_shares_from_deltas() -> None:
    # deltas: user 60, system 20, idle 80, softirq 10, steal 30 -> total 200
    shares = cpu_shares(parse_cpu_times(STAT_A), parse_cpu_times(STAT_B))
    assert shares == {"steal_pct": 15.0, "idle_pct": 40.0, "busy_pct": 45.0}


def test_cpu_shares_without_elapsed_time_are_zero() -> None:
    t = parse_cpu_times(STAT_A)
    assert cpu_shares(t, t)["steal_pct"] == 0.0


def test_parse_loadavg() -> None:
    assert parse_loadavg("1.50 0.75 0.25 3/200 4242\n") == [1.5, 0.75, 0.25]


def test_during_on_this_machine() -> None:
    assert Path("/proc/stat").exists()
    d = during(snapshot(), snapshot())
    assert 0.0 <= float(d["steal_pct"]) <= 100.0  # type: ignore[arg-type]
    assert len(d["loadavg_start"]) == 3  # type: ignore[arg-type]


def test_the_idle_state_names_the_driver_and_the_halt_poll(tmp_path: Path) -> None:
    (tmp_path / "devices/system/cpu/cpuidle").mkdir(parents=True)
    (tmp_path / "devices/system/cpu/cpuidle/current_driver").write_text("haltpoll\n")
    assert idle_state(tmp_path) == {"cpuidle_driver": "haltpoll", "guest_halt_poll_ns": None}
    (tmp_path / "module/haltpoll/parameters").mkdir(parents=True)
    (tmp_path / "module/haltpoll/parameters/guest_halt_poll_ns").write_text("200000\n")
    assert idle_state(tmp_path) == {"cpuidle_driver": "haltpoll", "guest_halt_poll_ns": 200000}
