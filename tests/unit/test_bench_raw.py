"""Raw samples of every run, written per workload beside results.json."""

from __future__ import annotations

import json

from socksplice.tools.bench.files import render_raw
from socksplice.tools.bench.measuring import Run


def test_raw_keeps_every_run_with_its_repeat_and_samples() -> None:
    runs = [
        Run("rr-64B", "plain", {"p50_us": 30.0}, (29.0, 30.0, 31.0)),
        Run("rr-64B", "spliced", {"p50_us": 20.0}, (19.5, 20.0), bytes_redirected=128),
        Run("rr-64B", "plain", {"p50_us": 32.0}, (32.0,)),
    ]
    doc = json.loads(render_raw("rr-64B", runs))
    assert doc["workload"] == "rr-64B"
    assert [(r["path"], r["repeat"]) for r in doc["runs"]] == [("plain", 0), ("spliced", 0), ("plain", 1)]
    assert doc["runs"][0]["samples_us"] == [29.0, 30.0, 31.0] and doc["runs"][0]["samples"] == 3
    assert doc["runs"][1]["bytes_redirected"] == 128 and doc["runs"][1]["verdict"] is None
