"""`socksplice local apply/delete` with NetworkPolicies, and the agent's view of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from socksplice.api.pods import PodRef
from socksplice.errors import InvalidSpec, PermanentError
from socksplice.local import commands, netpolicies
from socksplice.local.state import MANIFESTS_DIR
from socksplice.nodeagent.policywatch import LocalPolicies, PolicyWatch

FIXTURES = Path(__file__).with_name("fixtures") / "networkpolicies"
SPLICE_AND_POLICY = """\
apiVersion: socksplice.io/v1alpha1
kind: SocketSplice
metadata: {name: bench, namespace: demo}
spec:
  podSelector: {matchLabels: {role: bench}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-server, namespace: demo}
spec:
  podSelector: {matchLabels: {app: server}}
  policyTypes: [Ingress]
"""


class Epoch:
    def __init__(self) -> None:
        self.value = 0

    def bump_policy_epoch(self) -> int:
        self.value += 1
        return self.value


def test_apply_writes_socketsplices_and_networkpolicies_apart_and_delete_removes_one(tmp_path: Path) -> None:
    manifest = tmp_path / "in.yaml"
    manifest.write_text(SPLICE_AND_POLICY)
    assert commands.main(["apply", "-f", str(manifest), "--dir", str(tmp_path)]) == 0
    assert (tmp_path / MANIFESTS_DIR / "demo_bench.yaml").exists()
    assert "NetworkPolicy" not in (tmp_path / MANIFESTS_DIR / "demo_bench.yaml").read_text()
    policies, errors = netpolicies.load_dir(tmp_path / netpolicies.NETWORK_POLICIES_DIR)
    assert [p.key for p in policies] == ["demo/deny-server"] and errors == []
    delete = ["delete", "networkpolicy", "deny-server", "-n", "demo", "--dir", str(tmp_path)]
    assert commands.main(delete) == 0
    assert netpolicies.load_dir(tmp_path / netpolicies.NETWORK_POLICIES_DIR) == ([], [])
    with pytest.raises(PermanentError, match="networkpolicy demo/deny-server: not found"):
        commands.main(delete)


def test_apply_refuses_an_invalid_networkpolicy_before_writing_anything(tmp_path: Path) -> None:
    manifest = tmp_path / "in.yaml"
    manifest.write_text(SPLICE_AND_POLICY.replace("{app: server}", "{app: 1}"))
    with pytest.raises(InvalidSpec, match=r"spec\.podSelector"):
        commands.main(["apply", "-f", str(manifest), "--dir", str(tmp_path)])
    assert not (tmp_path / MANIFESTS_DIR).exists()
    assert not (tmp_path / netpolicies.NETWORK_POLICIES_DIR).exists()


def test_the_watch_bumps_the_epoch_once_per_change_that_could_affect_a_located_pod(tmp_path: Path) -> None:
    server = PodRef("demo", "server", labels=(("app", "server"),))
    client = PodRef("demo", "client", labels=(("app", "client"),))
    epoch = Epoch()
    watch = PolicyWatch(LocalPolicies(tmp_path), epoch)
    assert watch.step([server, client], 1.0) is None  # the first look only records the views
    doc = (FIXTURES / "default-deny-all.yaml").read_text()
    target = tmp_path / netpolicies.NETWORK_POLICIES_DIR
    target.mkdir()
    (target / "shop.yaml").write_text(doc)  # another namespace, no peers: cannot affect demo
    assert watch.step([server, client], 2.0) is None and epoch.value == 0
    (target / "demo.yaml").write_text(doc.replace("namespace: shop", "namespace: demo"))
    handback = watch.step([server, client], 3.0)
    assert handback is not None and epoch.value == 1
    assert dict(handback.pods) == {
        "demo/server": "NetworkPolicy changed: demo/default-deny-all",
        "demo/client": "NetworkPolicy changed: demo/default-deny-all",
    }
    assert watch.step([server, client], 4.0) is None and epoch.value == 1  # unchanged: nothing
    (target / "demo.yaml").unlink()
    assert watch.step([server, client], 5.0) is not None and epoch.value == 2  # deleted: a change too


def test_local_status_says_when_and_why_connections_were_handed_back() -> None:
    from datetime import UTC, datetime

    from socksplice.api.nodestatus import NodeStatus, PolicyStatus
    from socksplice.local.commands import describe_status

    policy = PolicyStatus(
        "demo/bench",
        "SpliceRelaxedReceive",
        policy_handbacks=100,
        handback_time=datetime(2026, 12, 2, 9, 10, tzinfo=UTC),
        handback_reason="NetworkPolicy changed: demo/deny-server",
    )
    lines = describe_status(NodeStatus("local", policies=(policy,)).to_dict())
    assert (
        "    handed back to TCP: 100 directions; last at 2026-12-02T09:10:00+00:00: "
        "NetworkPolicy changed: demo/deny-server"
    ) in lines


def _policy_dir(root: Path) -> Path:
    target = root / netpolicies.NETWORK_POLICIES_DIR
    target.mkdir(exist_ok=True)
    return target


SERVER = PodRef("demo", "server", labels=(("app", "server"),))
CLIENT = PodRef("demo", "client", labels=(("app", "client"),))


def test_a_change_made_while_the_agent_was_down_is_handed_back_at_its_first_look(tmp_path: Path) -> None:
    views = tmp_path / "state" / "policy_views.json"
    first = PolicyWatch(LocalPolicies(tmp_path), Epoch(), views)
    assert first.step([SERVER, CLIENT], 1.0) is None  # a first start: nothing on record
    assert views.exists()
    doc = (FIXTURES / "default-deny-all.yaml").read_text().replace("namespace: shop", "namespace: demo")
    (_policy_dir(tmp_path) / "demo.yaml").write_text(doc)  # while no agent runs
    epoch = Epoch()
    restarted = PolicyWatch(LocalPolicies(tmp_path), epoch, views)
    handback = restarted.step([SERVER, CLIENT], 2.0)
    assert handback is not None and epoch.value == 1
    assert dict(handback.pods)["demo/server"] == "NetworkPolicy changed: demo/default-deny-all"
    again = PolicyWatch(LocalPolicies(tmp_path), epoch, views)
    assert again.step([SERVER, CLIENT], 3.0) is None and epoch.value == 1  # nothing new since


def test_a_pod_located_only_after_the_restart_is_compared_with_its_view_on_record(tmp_path: Path) -> None:
    views = tmp_path / "policy_views.json"
    assert PolicyWatch(LocalPolicies(tmp_path), Epoch(), views).step([SERVER, CLIENT], 1.0) is None
    doc = (FIXTURES / "default-deny-all.yaml").read_text().replace("namespace: shop", "namespace: demo")
    (_policy_dir(tmp_path) / "demo.yaml").write_text(doc)
    epoch = Epoch()
    restarted = PolicyWatch(LocalPolicies(tmp_path), epoch, views)
    assert restarted.step([], 2.0) is None  # not located yet: its view on record is kept
    assert restarted.step([SERVER], 3.0) is not None and epoch.value == 1


def test_views_on_record_that_cannot_be_read_hand_back_every_located_pod(tmp_path: Path) -> None:
    views = tmp_path / "policy_views.json"
    views.write_text("{not json")
    epoch = Epoch()
    watch = PolicyWatch(LocalPolicies(tmp_path), epoch, views)
    handback = watch.step([SERVER, CLIENT], 1.0)
    assert handback is not None and epoch.value == 1  # it cannot check: it fails closed
    assert set(handback.pods) == {"demo/server", "demo/client"}
    assert watch.step([SERVER, CLIENT], 2.0) is None and epoch.value == 1
