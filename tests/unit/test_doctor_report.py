"""Rendering, verdicts and exit codes of the doctor on constructed check lists (no kernel)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from socksplice.doctor import checks as checks_mod
from socksplice.doctor import probes, report
from socksplice.doctor.checks import SIMULATE_ENV, SIMULATED_DETAIL, SPECS, Check, fatal, make_check
from socksplice.doctor.probes import ProbeResult, reason_from_log


def ok(name: str, detail: str = "fine") -> Check:
    return Check(name=name, ok=True, severity="fatal", detail=detail, fix="")


def failed(name: str, severity: checks_mod.Severity = "fatal") -> Check:
    return Check(name=name, ok=False, severity=severity, detail=f"{name} missing", fix=f"install {name}")


def test_all_ok_text() -> None:
    text = report.render_text([ok("bpf.syscall"), ok("map.sockhash", "SOCKHASH created")])
    lines = text.splitlines()
    assert lines[0] == "OK   bpf.syscall   fine"
    assert lines[1] == "OK   map.sockhash  SOCKHASH created"
    assert lines[-1] == "acceleration: possible"
    assert "fix:" not in text


def test_fatal_failure_text_names_check_and_fix() -> None:
    text = report.render_text([ok("privileges"), failed("map.sockhash")])
    line = next(x for x in text.splitlines() if "map.sockhash" in x)
    assert line.startswith("FAIL map.sockhash")
    assert line.endswith("map.sockhash missing — fix: install map.sockhash")
    assert text.splitlines()[-1] == "acceleration: NOT possible (1 fatal)"


def test_warn_and_info_do_not_block() -> None:
    checks = [ok("headers"), failed("bpffs", "warn"), failed("helper.sk_msg.get_netns_cookie", "info")]
    lines = report.render_text(checks).splitlines()
    assert lines[1].startswith("WARN bpffs")
    assert lines[2].startswith("INFO helper.sk_msg.get_netns_cookie")
    assert lines[-1] == "acceleration: possible"
    assert report.exit_code(checks) == 0
    assert fatal(checks) == []


def test_counts_every_fatal() -> None:
    checks = [failed("a"), failed("b"), failed("c", "warn"), ok("d")]
    assert report.render_text(checks).splitlines()[-1] == "acceleration: NOT possible (2 fatal)"
    assert [c.name for c in fatal(checks)] == ["a", "b"]
    assert report.exit_code(checks) == 1


def test_empty_list() -> None:
    assert report.render_text([]) == "acceleration: possible\n"
    assert report.exit_code([]) == 0


def test_json_shape() -> None:
    checks = [ok("bpf.syscall"), failed("map.sockhash")]
    doc = json.loads(report.render_json(checks))
    assert set(doc) == {"ok", "checks", "hazards", "kernel"}
    assert doc["ok"] is False
    assert doc["hazards"] == []
    assert doc["kernel"] == os.uname().release
    assert doc["checks"][1] == {
        "name": "map.sockhash",
        "ok": False,
        "severity": "fatal",
        "detail": "map.sockhash missing",
        "fix": "install map.sockhash",
    }
    assert json.loads(report.render_json([ok("x")]))["ok"] is True


def test_json_carries_hazards() -> None:
    hazard = {"name": "recv.blocking_eagain", "present": True, "detail": "12 of 100"}
    doc = json.loads(report.render_json([ok("x")], [hazard]))
    assert doc["hazards"] == [hazard]


def test_make_check_uses_spec_severity_and_fix() -> None:
    good = make_check("map.sockhash", ProbeResult(True, "created"))
    assert good == Check("map.sockhash", True, "fatal", "created", "")
    bad = make_check("helper.sk_msg.get_netns_cookie", ProbeResult(False, "refused"))
    assert bad.severity == "info"
    assert bad.fix == SPECS["helper.sk_msg.get_netns_cookie"].fix
    own_fix = make_check("headers", ProbeResult(False, "none", fix="apt install x"))
    assert own_fix.fix == "apt install x"


def test_simulation_overrides_a_passing_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SIMULATE_ENV, " map.sockhash , bpffs")
    assert checks_mod.simulated_missing() == {"map.sockhash", "bpffs"}
    sim = make_check("map.sockhash", ProbeResult(True, "created"))
    assert not sim.ok
    assert sim.detail == SIMULATED_DETAIL
    assert sim.fix == SPECS["map.sockhash"].fix
    assert make_check("bpf.syscall", ProbeResult(True, "works")).ok


def test_every_check_has_a_fix_and_is_documented() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "doctor.md").read_text()
    for name, spec in SPECS.items():
        assert spec.fix, name
        assert f"`{name}`" in doc, f"{name} is not documented in docs/doctor.md"


def test_reason_from_verifier_log() -> None:
    log = (
        "bpf: Failed to load program: Invalid argument\n"
        "0: R1=ctx() R10=fp0\n"
        "0: (85) call bpf_get_socket_cookie#46\n"
        "program of this type cannot use helper bpf_get_socket_cookie#46\n"
        "processed 1 insns (limit 1000000) max_states_per_insn 0 total_states 0\n"
    )
    assert reason_from_log(log) == "program of this type cannot use helper bpf_get_socket_cookie#46"
    assert reason_from_log("/virtual/main.c:3:5: error: use of undeclared identifier 'x'\n").endswith(
        "use of undeclared identifier 'x'"
    )
    assert reason_from_log("") == ""


def test_main_text_and_json(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[bool] = []

    def fake_run_checks(include_load: bool = True) -> list[Check]:
        seen.append(include_load)
        return [ok("bpf.syscall"), failed("map.sockhash")]

    monkeypatch.setattr(report, "run_checks", fake_run_checks)
    assert report.main(["--no-load"]) == 1
    out = capsys.readouterr().out
    assert "FAIL map.sockhash" in out
    assert out.rstrip().endswith("acceleration: NOT possible (1 fatal)")
    assert report.main(["--json"]) == 1
    assert json.loads(capsys.readouterr().out)["ok"] is False
    assert seen == [False, True]


def test_privileges_names_missing_capabilities(tmp_path: Path) -> None:
    status = tmp_path / "status"
    status.write_text("Name:\tx\nCapEff:\t0000000000001000\n")  # CAP_NET_ADMIN only
    result = probes.privileges(status)
    assert not result.ok
    assert "missing CAP_SYS_PTRACE (reading /proc/PID/ns/net" in result.detail
    assert "CAP_SYS_ADMIN (BPF program loads" in result.detail
    assert "CAP_SYSLOG (bcc finds bpf_probe_read_kernel" in result.detail
    status.write_text("Name:\tx\n")
    assert not probes.privileges(status).ok
    assert not probes.privileges(tmp_path / "absent").ok


def test_bpffs_supported_reads_proc_filesystems(tmp_path: Path) -> None:
    fs = tmp_path / "filesystems"
    fs.write_text("nodev\tsysfs\nnodev\tbpf\n\text4\n")
    assert probes.bpffs_supported(fs)
    fs.write_text("nodev\tsysfs\n\text4\n")
    assert not probes.bpffs_supported(fs)
    assert not probes.bpffs_supported(tmp_path / "absent")


def test_failed_privileges_come_first_in_every_fix() -> None:
    checks = checks_mod._finish([failed("map.sockhash"), ok("cgroup2.mount"), failed("privileges")])
    assert [c.name for c in checks] == ["privileges", "map.sockhash", "cgroup2.mount"]
    assert checks[0].fix == "install privileges"
    assert checks[1].fix.startswith(checks_mod.PRIVILEGES_FIRST)
    assert checks[1].fix.endswith("otherwise: install map.sockhash")
    assert checks[2].fix == ""
