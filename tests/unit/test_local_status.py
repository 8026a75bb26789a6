"""``socksplice local status`` and ``local apply``'s mode hints, root-free: the status is what the
agent writes (``NodeStatus.to_dict``, a SpliceNode's ``status``), read from ``status.json``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from socksplice.api.nodestatus import EndpointStatus, NodeStatus, PolicyStatus
from socksplice.api.socketsplice import Mode
from socksplice.local import commands
from socksplice.local.commands import MODE_HINTS, describe_status

SINCE = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)
ENDPOINTS = (
    EndpointStatus(
        server="shop/redis-0",
        client="shop/api-0",
        port=6379,
        policy="shop/cache",
        mode="Auto",
        verdict="Spliced",
        reason="evidence: 20 connections in 61 s, 40.0 messages per connection",
        since=SINCE,
        connections=20,
        spliced_connections=18,
        messages=800,
        bytes=65536,
    ),
    EndpointStatus(
        server="shop/redis-0",
        client="shop/worker-0",
        port=6379,
        policy="shop/cache",
        mode="Auto",
        verdict="Demoted",
        reason="blocking receives that wait (3): tcp_bpf returns EAGAIN when a wait is woken without data",
        since=SINCE,
        connections=4,
        messages=9,
        bytes=900,
        would_differ={"blocking_receive": 3, "waitall": 1},
        did_differ={"blocking_eagain": 1},
    ),
)


def node(**kw: object) -> dict[str, object]:
    status = NodeStatus(
        node_name="local",
        agent_version="0.1.0",
        kernel="6.12.0",
        heartbeat_time=SINCE,
        pods=("shop/api-0", "shop/redis-0", "shop/worker-0"),
        policies=(
            PolicyStatus("shop/cache", "Auto", 1, 3, 3, 18, 65536, endpoints_spliced=1, endpoints_demoted=1),
        ),
        endpoints=ENDPOINTS,
        **kw,  # type: ignore[arg-type]
    )
    return status.to_dict()


def test_each_endpoint_with_its_verdict_reason_and_counts() -> None:
    text = "\n".join(describe_status(node(), ["shop_cache.yaml"]))
    assert "node local: Ready=True (Reconciled: 3 pods attached)" in text
    assert "manifests: shop_cache.yaml" in text
    assert "shop/cache  Auto  pods 3 attached of 3; endpoints 0 Audit, 1 Spliced, 1 Demoted" in text
    assert "endpoints: 2" in text
    lines = describe_status(node())
    demoted = lines.index("  shop/worker-0 -> shop/redis-0:6379  Demoted  (shop/cache, Auto)")
    assert lines[demoted + 1] == f"      reason: {ENDPOINTS[1].reason}"
    assert lines[demoted + 2] == (
        "      connections 4 (0 spliced), messages 9, bytes 900; "
        "would differ: blocking_receive 3, waitall 1; did differ: blocking_eagain 1"
    )
    spliced = lines.index("  shop/api-0 -> shop/redis-0:6379  Spliced  (shop/cache, Auto)")
    assert lines[spliced + 2].endswith("would differ: none; did differ: none")
    assert "connections 20 (18 spliced), messages 800" in lines[spliced + 2]
    assert demoted < spliced  # status.json lists demoted endpoints first
    assert not [line for line in lines if "observation" in line]  # observing: nothing to say


def test_the_observation_reason_when_the_node_cannot_observe() -> None:
    lines = describe_status(node(observation="sock:sock_recv_length missing (Linux 6.4+)"))
    assert (
        "observation unavailable: sock:sock_recv_length missing (Linux 6.4+); "
        "Auto behaves as DryRun here (every endpoint stays on TCP)"
    ) in lines


def test_endpoints_left_out_of_the_listing_are_counted() -> None:
    raw = node()
    raw["endpointsOmitted"] = 5
    lines = describe_status(raw)
    assert "endpoints: 7" in lines
    assert lines[-1].startswith("  (5 more not listed: status.json lists 200 at most")


def test_status_reads_status_json_and_json_prints_it_unchanged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert commands.main(["status", "--dir", str(tmp_path)]) == 0
    assert "no status yet: is the agent running?" in capsys.readouterr().out
    assert commands.main(["status", "--dir", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"agent": "no status.json yet: is the agent running?"}

    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "shop_cache.yaml").write_text("")
    (tmp_path / "manifests" / ".hidden.yaml").write_text("")
    text = json.dumps(node(), indent=2) + "\n"
    (tmp_path / "status.json").write_text(text)
    assert commands.main(["status", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "manifests: shop_cache.yaml\n" in out
    assert "shop/worker-0 -> shop/redis-0:6379  Demoted" in out
    assert commands.main(["status", "--dir", str(tmp_path), "--json"]) == 0
    assert capsys.readouterr().out == text


SPLICE = """apiVersion: socksplice.io/v1alpha1
kind: SocketSplice
metadata: {{name: web, namespace: demo}}
spec:
  podSelector: {{matchLabels: {{app: web}}}}
{mode}"""


@pytest.mark.parametrize("mode", [None, Mode.AUTO, Mode.DRY_RUN, Mode.SPLICE])
def test_apply_says_what_the_mode_does(
    mode: Mode | None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "web.yaml"
    manifest.write_text(SPLICE.format(mode=f"  mode: {mode}\n" if mode else ""))
    assert commands.main(["apply", "-f", str(manifest), "--dir", str(tmp_path / "local")]) == 0
    out, err = capsys.readouterr()
    shown = mode or Mode.AUTO  # Auto is the default
    assert f"mode {shown})" in out
    assert err == f"  web: {MODE_HINTS[shown]}\n"


def test_mode_hints() -> None:
    assert set(MODE_HINTS) == set(Mode)
    assert "only audits" in MODE_HINTS[Mode.DRY_RUN] and "splices nothing" in MODE_HINTS[Mode.DRY_RUN]
    assert f"{Mode.AUTO} (the default)" in MODE_HINTS[Mode.DRY_RUN]
    assert "splices every connection" in MODE_HINTS[Mode.SPLICE]
    assert "local status" in MODE_HINTS[Mode.AUTO]
