"""`socksplice demo` end to end: the table's JSON shape and that the spliced runs were spliced."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.kernel


def test_demo_quick_json() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "socksplice.cli", "demo", "--quick", "--repeats", "1", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    names = [w["workload"] for w in doc["workloads"]]
    assert names == ["rr-64B", "rr-16KiB", "stream-1KiB", "stream-128KiB"]
    for w in doc["workloads"]:
        assert w["plain"]["bytes_redirected"] == 0
        assert w["spliced"]["bytes_redirected"] > 0
        assert all(v is not None and v > 0 for v in w["ratio"].values())
