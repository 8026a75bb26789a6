"""`socksplice demo` end to end: the JSON shape, the verdicts Auto reached per endpoint, and that
an Auto run was spliced exactly when its endpoint was promoted."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.kernel

NAMES = ["rr-64B", "rr-16KiB", "stream-1KiB", "stream-128KiB"]


def test_demo_quick_json() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "socksplice.cli", "demo", "--quick", "--repeats", "1", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert "mode Auto" in doc["policy"]
    assert [w["workload"] for w in doc["workloads"]] == NAMES
    assert [e["workload"] for e in doc["endpoints"]] == NAMES
    assert len({e["port"] for e in doc["endpoints"]}) == len(NAMES)  # one endpoint per workload
    endpoints = {e["workload"]: e for e in doc["endpoints"]}
    for w in doc["workloads"]:
        e = endpoints[w["workload"]]
        assert e["verdict"] in ("Audit", "Spliced", "Demoted"), e
        assert e["reason"] and e["connections"] >= 1 and e["messages"] > 0, e
        assert (e["server"], e["client"]) == ("demo/server", "demo/client")
        assert w["plain"]["bytes_redirected"] == 0
        spliced = w["auto"]["bytes_redirected"] > 0
        assert spliced == (e["verdict"] == "Spliced" == e["verdict_after_run"]), (w, e)
        if e["verdict"] == "Demoted":
            assert e["would_differ"] or e["did_differ"], e
        assert all(v is not None and v > 0 for v in w["ratio"].values())
