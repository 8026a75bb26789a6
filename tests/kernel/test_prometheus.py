"""Every Grafana dashboard panel returns data from a real Prometheus scraping a real agent.

A Prometheus from the Debian ``prometheus`` package runs on loopback with a temporary config and
data directory. It scrapes the real agent (in-process, local mode, real BPF programs) while a
checked stream workload runs between two local pods through a SocketSplice. Then every panel
query and every template variable query of every dashboard in ``charts/socksplice/dashboards``
is evaluated through Prometheus's HTTP API; an error or an empty result fails the test (the
workload's connections also make one endpoint, so the endpoint panels have data).
Prometheus is stopped and its files removed afterwards.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from socksplice.nodeagent.serving import serve
from tests.kernel.splicing import SpliceEnv, echo_server, finish, splice_yaml, start_clients, wait_for

pytestmark = pytest.mark.kernel

DASHBOARDS = Path(__file__).resolve().parents[2] / "charts" / "socksplice" / "dashboards"
PORT = 9400
RATE_WINDOW = "30s"
"""Stands in for Grafana's ``$__rate_interval`` (scrapes are 1 s apart here)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Prometheus:
    """A Prometheus process on 127.0.0.1 scraping ``targets`` every second."""

    def __init__(self, workdir: Path, targets: list[str]) -> None:
        self.workdir = workdir
        self.port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "socksplice-agent", "static_configs": [{"targets": targets}]}],
        }
        (workdir / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
        self.log = open(workdir / "prometheus.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
            ],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )

    def get(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:  # 400/422: a bad query; the body says why
            return json.loads(exc.read())

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def query(self, expr: str) -> dict[str, Any]:
        answer: dict[str, Any] = self.get("/api/v1/query", query=expr)
        return answer

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture
def prometheus_bin() -> str:
    path = shutil.which("prometheus")
    if path is None:
        message = "prometheus not installed: apt-get install prometheus (the Debian package)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message} (CI=true: not skipping)", pytrace=False)
        pytest.skip(message)
    return path


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title / refId, expr) of every panel target."""
    return [
        (f"{panel['title']} / {target['refId']}", target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def substitute(expr: str, dashboard: dict[str, Any]) -> str:
    """Grafana's template variables as a dashboard opened with "All" selected would send them."""
    expr = expr.replace("$__rate_interval", RATE_WINDOW)
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            expr = expr.replace(f"${var['name']}", var["allValue"])
    assert "$" not in expr, f"unsubstituted variable in {expr}"
    return expr


LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\)$")


def variable_values(prom: Prometheus, dashboard: dict[str, Any], query: str) -> list[str]:
    """Evaluate a Grafana ``label_values(selector, label)`` variable query through /api/v1/series."""
    m = LABEL_VALUES.match(substitute(query, dashboard))
    assert m, f"variable query is not label_values(selector, label): {query}"
    answer = prom.get("/api/v1/series", **{"match[]": m["selector"]})
    assert answer["status"] == "success", answer
    return sorted({series[m["label"]] for series in answer["data"] if m["label"] in series})


@pytest.fixture
def prometheus(env: SpliceEnv, prometheus_bin: str, tmp_path: Path) -> Iterator[Prometheus]:
    server = serve("127.0.0.1", 0, env.agent.registry, env.agent.healthy, env.agent.ready)
    workdir = tmp_path / "prometheus"
    workdir.mkdir()
    prom = Prometheus(workdir, [f"127.0.0.1:{server.server_address[1]}"])
    try:
        wait_for(lambda: prom.proc.poll() is not None or prom.ready(), timeout=60)
        assert prom.proc.poll() is None, (workdir / "prometheus.log").read_text()
        yield prom
    finally:
        prom.stop()
        server.shutdown()
        server.server_close()
        shutil.rmtree(workdir, ignore_errors=True)


def scraped(prom: Prometheus, expr: str) -> bool:
    answer = prom.query(expr)
    return answer["status"] == "success" and bool(answer["data"]["result"])


def test_every_dashboard_panel_returns_data(env: SpliceEnv, prometheus: Prometheus) -> None:
    env.apply(splice_yaml())
    client, server = env.pod("client"), env.pod("server")
    with echo_server(server, PORT):
        clients = start_clients(client, str(server.ipv4), PORT, conns=4, nbytes=4 << 20, seconds=6.0)
        # Scrapes that see the traffic while it flows, then a few more.
        wait_for(lambda: scraped(prometheus, "socksplice_redirected_bytes_total > 0"), timeout=60)
        result = finish(clients)
        assert result["mismatches"] == 0 and result["errors"] == 0, result
        env.agent.step()  # the loop's turn: the endpoint's evidence read, its verdict recorded
        wait_for(lambda: scraped(prometheus, "count_over_time(socksplice_endpoints[1m]) >= 3"), timeout=60)
        wait_for(lambda: scraped(prometheus, "count_over_time(up[1m]) >= 5"), timeout=60)

    failures: list[str] = []
    evaluated = 0
    for name, dashboard in dashboards().items():
        for var in dashboard["templating"]["list"]:
            if var["type"] == "query" and not variable_values(prometheus, dashboard, var["query"]["query"]):
                failures.append(f"{name}: variable ${var['name']}: no values")
        for where, expr in panel_queries(dashboard):
            answer = prometheus.query(substitute(expr, dashboard))
            evaluated += 1
            if answer.get("status") != "success":
                failures.append(f"{name}: {where}: error {answer.get('error')}: {expr}")
            elif not answer["data"]["result"]:
                failures.append(f"{name}: {where}: no data: {expr}")
    assert not failures, "\n".join(failures)
    assert evaluated >= 20

    # The figures are the workload's: the node overview's spliced bytes are real traffic.
    spliced = prometheus.query("sum(socksplice_redirected_bytes_total)")["data"]["result"][0]["value"][1]
    assert float(spliced) >= 2 * 4 * (4 << 20)
    # The client's connections to the server's port are one endpoint, spliced (SpliceRelaxedReceive).
    [endpoints] = prometheus.query('sum(socksplice_endpoints{verdict="Spliced"})')["data"]["result"]
    assert float(endpoints["value"][1]) == 1, endpoints
    [observing] = prometheus.query("socksplice_observation_available")["data"]["result"]
    assert float(observing["value"][1]) == (0 if env.datapath.observation else 1)


def test_prometheus_reports_a_bad_panel_query(env: SpliceEnv, prometheus: Prometheus) -> None:
    """The check above would catch a broken query: Prometheus answers it with an error."""
    answer = prometheus.query("sum(rate(socksplice_redirected_bytes_total[$__rate_interval]))")
    assert answer["status"] == "error"
    wait_for(lambda: scraped(prometheus, "socksplice_build_info"), timeout=60)
    assert not prometheus.query("socksplice_no_such_metric_total")["data"]["result"]


def test_panel_queries_cover_every_exported_metric(env: SpliceEnv) -> None:
    """Each metric family the agent exports feeds at least one panel."""
    env.apply(splice_yaml())
    exported = {m.name for m in env.agent.registry.collect()}
    queried = " ".join(expr for d in dashboards().values() for _, expr in panel_queries(d))
    missing = [
        name
        for name in exported
        if not re.search(rf"\b{name}(_total|_info)?\b", queried)  # families drop _total/_info
    ]
    assert not missing, f"metrics with no panel: {missing}"
