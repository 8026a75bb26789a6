"""The agent as a user meets it: metrics over HTTP, status, clear refusals, rejected manifests."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.kernel.splicing import SpliceEnv, echo_server, run_clients, splice_yaml

pytestmark = pytest.mark.kernel


def scrape(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_health_and_readiness_over_http(env: SpliceEnv) -> None:
    object.__setattr__(env.agent.settings, "metrics_port", 0)  # any free port
    object.__setattr__(env.agent.settings, "metrics_host", "127.0.0.1")
    env.agent.start_http()
    assert env.agent.http_port
    env.apply(splice_yaml())
    client, server = env.pod("client"), env.pod("server")
    with echo_server(server, 9400):
        result = run_clients(client, str(server.ipv4), 9400, conns=2, nbytes=128 << 10)
    assert result["mismatches"] == 0
    code, text = scrape(env.agent.http_port, "/metrics")
    assert code == 200
    labels = {"policy_namespace": "demo", "policy": "bench"}
    assert metric(text, "socksplice_redirected_bytes_total", **labels) == 2 * 2 * (128 << 10)
    assert metric(text, "socksplice_pairs_total", outcome="spliced", **labels) == 2
    assert metric(text, "socksplice_attached_pods") == 2
    assert metric(text, "socksplice_program_load_seconds") > 0
    assert 'socksplice_build_info{kernel="' in text
    assert 'pod="' not in text and 'ip="' not in text  # bounded labels only
    assert scrape(env.agent.http_port, "/healthz")[0] == 200
    assert scrape(env.agent.http_port, "/readyz")[0] == 200


def test_status_reports_policies_and_rejected_manifests(env: SpliceEnv) -> None:
    env.apply(splice_yaml())
    (env.manifests / "broken.yaml").write_text(
        splice_yaml(name="broken").replace("SpliceRelaxedReceive", "splicerelaxedreceive")
    )
    env.agent.step(force=True)
    status = env.agent.status()
    assert status.pods == ("demo/client", "demo/server")
    bench = status.policy("demo/bench")
    assert bench is not None and bench.attached_pods == 2
    [error] = status.manifest_errors
    assert "broken.yaml" in error and "spec.mode" in error and "DryRun" in error


def run_agent(
    tmp_path: Path, *extra: str, env: dict[str, str] | None = None, user: str | None = None
) -> subprocess.CompletedProcess[str]:
    argv = [
        sys.executable,
        "-m",
        "socksplice.cli",
        "agent",
        "--local",
        str(tmp_path),
        "--metrics-port",
        "-1",
        "--state-dir",
        str(tmp_path / "state"),
        *extra,
    ]
    if user:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", "--inh-caps=-all", *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})})


def test_kernel_without_sockmap_is_refused_clearly(tmp_path: Path) -> None:
    done = run_agent(tmp_path, env={"SOCKSPLICE_SIMULATE_MISSING": "map.sockhash"})
    assert done.returncode == 2, done.stderr
    assert "cannot accelerate on this node" in done.stderr
    assert "map.sockhash" in done.stderr


def test_not_root_is_refused_clearly(tmp_path: Path) -> None:
    tmp_path.chmod(0o777)
    done = run_agent(tmp_path, user="65534")
    assert done.returncode == 1, done.stderr
    assert "not root" in done.stderr and "CAP_SYS_ADMIN" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_local_apply_rejects_a_malformed_socketsplice(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(splice_yaml(ports=[0]))
    done = subprocess.run(
        [sys.executable, "-m", "socksplice.cli", "local", "apply", "-f", str(bad), "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "spec.ports[0]" in done.stderr
    assert not (tmp_path / "manifests").exists() or not any((tmp_path / "manifests").iterdir())
