"""The kernel matrix: socksplice's own checks on Debian's 6.1 and 6.12 cloud kernels under qemu.

The matrix test boots both kernels (side by side) from the cached image, runs the doctor, the
agent in local mode and the data-path tests inside each, and fails naming every kernel that
failed. First run builds the image (debootstrap, about a minute); later runs reuse it. Needs
root, qemu-system-x86_64 and debootstrap (scripts/kernel-matrix-install.sh).

The other tests check the matrix's pure parts on real inputs (apt's package names, a tar
written by ``tar``, a recorded result document).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from socksplice.tools.matrix import guest, kernels, report
from socksplice.tools.matrix.errors import MatrixError
from socksplice.tools.matrix.image import DEFAULT_CACHE
from socksplice.tools.matrix.main import run_matrix

ROOT = Path(__file__).resolve().parents[2]

MATRIX_KERNELS = ["6.1", "6.12"]
TOOLS = ("qemu-system-x86_64", "debootstrap", "mkfs.ext4", "dpkg-deb", "apt-get")


def test_newest_build_is_chosen_by_abi_number() -> None:
    names = [
        "linux-image-6.1.0-9-cloud-amd64",
        "linux-image-6.1.0-41-cloud-amd64",
        "linux-image-6.1.0-41-cloud-amd64-dbg",
        "linux-image-6.12.9+deb12-cloud-amd64",
    ]
    assert kernels.newest(names, kernels.LINES["6.1"]) == "6.1.0-41-cloud-amd64"
    assert kernels.newest(names, kernels.LINES["6.12"]) == "6.12.9+deb12-cloud-amd64"
    with pytest.raises(MatrixError, match="no package matches"):
        kernels.newest(["linux-image-amd64"], kernels.LINES["6.1"])


def test_kernel_list_is_validated() -> None:
    assert kernels.parse_kernels("6.12, running,6.12") == ["6.12", "running"]
    with pytest.raises(MatrixError, match="unknown"):
        kernels.parse_kernels("5.10")


def test_results_are_read_from_the_tar_the_guest_writes(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "checks.json").write_text(json.dumps({"release": "x", "steps": {}}))
    disk = guest.make_results_disk(tmp_path / "results.img")
    subprocess.run(["tar", "-C", tmp_path / "out", "-cf", disk, "./checks.json"], check=True)
    assert guest.read_results(disk) == {"release": "x", "steps": {}}
    with pytest.raises(MatrixError, match="wrote no results"):
        guest.read_results(guest.make_results_disk(tmp_path / "empty.img"))


def _recorded(datapath_ok: bool) -> dict[str, Any]:
    step = {"ok": True, "seconds": 1.0, "detail": "fine"}
    tests = [{"name": "tests.kernel.test_datapath::test_x", "outcome": "passed" if datapath_ok else "failed"}]
    doctor = {"ok": True, "checks": [{"name": "map.sockhash", "ok": True, "severity": "fatal", "detail": ""}]}
    return {
        "kernel": "6.1",
        "release": "6.1.0-1-cloud-amd64",
        "checks": {
            "steps": {
                "doctor": {**step, "report": {**doctor, "hazards": []}},
                "agent": step,
                "datapath": {**step, "ok": datapath_ok, "detail": "1 failed", "tests": tests},
                "conformance": {"ok": None, "seconds": 0.1, "detail": "skipped: no command"},
            }
        },
    }


def test_report_names_the_failing_kernel_and_step() -> None:
    good, bad = _recorded(True), _recorded(False)
    assert report.failures(good) == [] and report.splicing_safe(good)
    assert report.failures(bad) == ["datapath: 1 failed"] and not report.splicing_safe(bad)
    markdown = report.render_markdown([good], "socksplice kernel-matrix", "Wall time: 1 s.")
    assert "| `map.sockhash` | OK |" in markdown and "skipped: no command" in markdown
    assert "  6.1: datapath: 1 failed" in report.render_text([bad])


def _require_tools() -> None:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if not missing:
        return
    message = f"kernel matrix needs {', '.join(missing)} (scripts/kernel-matrix-install.sh)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message} (CI=true: not skipping)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def matrix() -> dict[str, dict[str, Any]]:
    _require_tools()
    results, _ = run_matrix(MATRIX_KERNELS, ROOT, full=False, cache=DEFAULT_CACHE, timeout=2400)
    return {r["kernel"]: r for r in results}


@pytest.mark.kernel
@pytest.mark.matrix
@pytest.mark.parametrize("kernel", MATRIX_KERNELS)
def test_kernel_passes_the_fast_subset(matrix: dict[str, dict[str, Any]], kernel: str) -> None:
    result = matrix[kernel]
    failed = report.failures(result)
    assert not failed, f"kernel {kernel} ({result.get('release')}): " + "; ".join(failed)
    assert report.steps(result)["datapath"]["tests"], f"kernel {kernel}: no data-path test ran"
