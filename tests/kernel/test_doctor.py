"""socksplice doctor on the real kernel: every check passes here, simulated gaps are fatal,
per-helper attribution works, and nothing (cgroup, pin, mount) is left behind.

Needs root, BPF, cgroup v2 and kernel headers (packaged ones are fine).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from socksplice.doctor import checks as checks_mod
from socksplice.doctor import probes, report
from socksplice.doctor.checks import PREFLIGHT, SIMULATE_ENV, SIMULATED_DETAIL, SPECS, Check
from socksplice.kernel import cgroup2

pytestmark = pytest.mark.kernel

if os.geteuid() != 0:
    pytest.skip("doctor kernel tests need root", allow_module_level=True)


def leftovers() -> list[str]:
    """Anything a doctor run could leave behind: temporary cgroups and private bpffs mounts."""
    found = [str(p) for p in cgroup2.find_root().glob(f"{probes.DOCTOR_CGROUP_PREFIX}*")]
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2] == "bpf" and "socksplice-doctor" in fields[1]:
            found.append(fields[1])
    return found


@pytest.fixture(scope="module")
def full_run() -> tuple[list[Check], float]:
    start = time.monotonic()
    checks = checks_mod.run_checks()
    return checks, time.monotonic() - start


@pytest.mark.kernel
def test_every_check_passes_here(full_run: tuple[list[Check], float]) -> None:
    checks, _ = full_run
    failed = [f"{c.name}: {c.detail}" for c in checks if not c.ok]
    assert failed == []
    assert [c.name for c in checks] == list(SPECS)
    assert all(c.fix == "" for c in checks)
    assert report.exit_code(checks) == 0
    assert report.render_text(checks).splitlines()[-1] == "acceleration: possible"


@pytest.mark.kernel
def test_full_run_is_fast(full_run: tuple[list[Check], float]) -> None:
    checks, seconds = full_run
    assert seconds < 15, f"doctor took {seconds:.1f}s"
    load = next(c for c in checks if c.name == "datapath.load")
    assert "loaded in" in load.detail


@pytest.mark.kernel
def test_nothing_left_behind(full_run: tuple[list[Check], float]) -> None:
    assert leftovers() == []


@pytest.mark.kernel
def test_preflight_is_cheap_and_passes() -> None:
    start = time.monotonic()
    checks = checks_mod.preflight()
    assert time.monotonic() - start < 2
    assert [c.name for c in checks] == list(PREFLIGHT)
    assert all(c.ok for c in checks), [c for c in checks if not c.ok]
    assert leftovers() == []


@pytest.mark.kernel
def test_simulated_missing_sockhash_is_fatal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(SIMULATE_ENV, "map.sockhash")
    assert report.main(["--no-load"]) == 1
    text = capsys.readouterr().out
    line = next(x for x in text.splitlines() if " map.sockhash " in x)
    assert line.startswith("FAIL map.sockhash")
    assert SIMULATED_DETAIL in line
    assert f"fix: {SPECS['map.sockhash'].fix}" in line
    assert text.splitlines()[-1] == "acceleration: NOT possible (1 fatal)"
    assert [c.name for c in checks_mod.fatal(checks_mod.preflight())] == ["map.sockhash"]
    assert leftovers() == []


@pytest.mark.kernel
def test_json_report(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(SIMULATE_ENV, "helper.sk_msg.msg_redirect_hash")
    assert report.main(["--json", "--no-load"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False
    assert [h["name"] for h in doc["hazards"]] == ["tcp_bpf.blocking_eagain"]
    assert doc["kernel"] == os.uname().release
    by_name = {c["name"]: c for c in doc["checks"]}
    assert "datapath.load" not in by_name
    assert set(by_name) == set(SPECS) - {"datapath.load"}
    bad = by_name["helper.sk_msg.msg_redirect_hash"]
    assert bad == {
        "name": "helper.sk_msg.msg_redirect_hash",
        "ok": False,
        "severity": "fatal",
        "detail": SIMULATED_DETAIL,
        "fix": SPECS["helper.sk_msg.msg_redirect_hash"].fix,
    }
    for c in doc["checks"]:
        assert set(c) == {"name", "ok", "severity", "detail", "fix"}


@pytest.mark.kernel
def test_a_refused_helper_is_named() -> None:
    """bpf_get_socket_cookie is not allowed in sk_msg on this kernel: the probe says which helper."""
    group = probes.ProbeGroup(
        name="negative",
        text=probes.PLAIN.text
        + """
int dr_sk_msg_get_socket_cookie(struct sk_msg_md *msg)
{
	dr_get_socket_cookie(msg);
	return SK_PASS;
}
""",
        probes=(
            probes.HelperProbe(
                "neg.get_netns_cookie", "dr_sk_msg_get_netns_cookie", "SK_MSG", "netns in SK_MSG"
            ),
            probes.HelperProbe(
                "neg.get_socket_cookie", "dr_sk_msg_get_socket_cookie", "SK_MSG", "cookie in SK_MSG"
            ),
        ),
    )
    results = probes.run_group(group)
    assert results["neg.get_netns_cookie"].ok
    refused = results["neg.get_socket_cookie"]
    assert not refused.ok
    assert "cannot use helper bpf_get_socket_cookie" in refused.detail


@pytest.mark.kernel
def test_a_compile_error_fails_every_probe_of_its_group() -> None:
    group = probes.ProbeGroup(
        name="broken",
        text="int dr_broken(struct bpf_sock_ops *skops) { return undeclared; }\n",
        probes=(probes.HelperProbe("neg.broken", "dr_broken", "SOCK_OPS", "broken"),),
        map_check="neg.map",
        map_name="none",
    )
    results = probes.run_group(group)
    assert set(results) == {"neg.broken", "neg.map"}
    assert not results["neg.broken"].ok
    assert "undeclared" in results["neg.broken"].detail
