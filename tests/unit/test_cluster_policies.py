"""The agent's NetworkPolicy and Namespace watches through the real Kubernetes client."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from socksplice import kubeapi
from socksplice.errors import TemporaryError
from socksplice.nodeagent.cluster.policies import ClusterPolicies, parse_policies
from tests.unit.fakeapi import FakeApi

FIXTURES = Path(__file__).with_name("fixtures") / "networkpolicies"


def recorded(name: str) -> dict[str, Any]:
    obj: dict[str, Any] = yaml.safe_load((FIXTURES / f"{name}.yaml").read_text())
    return obj


def namespace(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def test_list_items_without_kind_are_read_and_a_bad_policy_is_reported() -> None:
    good = recorded("allow-from-frontend-ns")
    del good["apiVersion"], good["kind"]  # list items carry neither
    bad = {
        "metadata": {"name": "bad", "namespace": "shop"},
        "spec": {"podSelector": {"matchLabels": {"a": 1}}},
    }
    snap = parse_policies([good, bad], [namespace("web", team="frontend")])
    assert [p.key for p in snap.policies] == ["shop/allow-from-frontend-ns"]
    assert [e.field for e in snap.errors] == ["spec.podSelector.matchLabels[a]"]
    assert snap.namespaces == {"web": {"team": "frontend"}}


def test_the_watches_list_then_follow_namespace_labels(monkeypatch: pytest.MonkeyPatch) -> None:
    api = FakeApi()
    api.add("networkpolicies", recorded("allow-from-frontend-ns"))
    api.add("namespaces", namespace("web"))
    api.watches["namespaces"] = [{"type": "MODIFIED", "object": namespace("web", team="frontend")}]
    monkeypatch.setattr(kubeapi, "Kube", api.kube)
    policies = ClusterPolicies()
    with pytest.raises(TemporaryError, match="waiting for the first list"):
        policies.policies()
    policies.start()
    try:
        for _ in range(500):
            try:
                if policies.policies().namespaces.get("web") == {"team": "frontend"}:
                    break
            except TemporaryError:
                pass
            threading.Event().wait(0.01)
    finally:
        policies.close()
    snap = policies.policies()
    assert [p.key for p in snap.policies] == ["shop/allow-from-frontend-ns"]
    assert snap.namespaces == {"web": {"team": "frontend"}}
    paths = {path for _, path in api.requests}
    assert {"/apis/networking.k8s.io/v1/networkpolicies", "/api/v1/namespaces"} <= paths
