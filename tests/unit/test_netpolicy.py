"""Which NetworkPolicies could affect a pod, on recorded NetworkPolicy objects."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from socksplice.api.netpolicy import (
    NetworkPolicy,
    changed_views,
    could_affect,
    parse_network_policy,
    policy_view,
)
from socksplice.api.pods import PodRef
from socksplice.errors import InvalidSpec

FIXTURES = Path(__file__).with_name("fixtures") / "networkpolicies"


def recorded(name: str) -> NetworkPolicy:
    return parse_network_policy(yaml.safe_load((FIXTURES / f"{name}.yaml").read_text()), name)


def pod(namespace: str, name: str, **labels: str) -> PodRef:
    return PodRef(namespace=namespace, name=name, labels=tuple(sorted(labels.items())))


def test_the_documentation_example_affects_its_targets_and_any_pod_through_its_ip_blocks() -> None:
    p = recorded("test-network-policy")
    assert p.key == "default/test-network-policy"
    assert could_affect(p, pod("default", "db", role="db"), {})
    # An ipBlock may cover any pod's address: conservative.
    assert could_affect(p, pod("other", "x"), {})


def test_a_namespace_and_pod_selector_peer_selects_only_that_pair() -> None:
    p = recorded("allow-from-frontend-ns")
    ns = {"web": {"team": "frontend"}, "misc": {}}
    assert could_affect(p, pod("shop", "api-1", app="api"), ns)  # target
    assert could_affect(p, pod("web", "web-1", app="web"), ns)  # peer
    assert not could_affect(p, pod("web", "cache", app="cache"), ns)
    assert not could_affect(p, pod("misc", "web-1", app="web"), ns)
    assert not could_affect(p, pod("shop", "web-1", app="web"), {})  # shop has no team label


def test_an_empty_pod_selector_targets_every_pod_of_its_namespace_only() -> None:
    p = recorded("default-deny-all")
    assert could_affect(p, pod("shop", "anything"), {})
    assert not could_affect(p, pod("demo", "server", app="server"), {})


def test_views_change_when_a_policy_appears_is_edited_or_goes() -> None:
    server, client = pod("demo", "server", app="server"), pod("demo", "client", app="client")
    deny = parse_network_policy(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "deny-server", "namespace": "demo"},
            "spec": {"podSelector": {"matchLabels": {"app": "server"}}, "policyTypes": ["Ingress"]},
        }
    )
    before = {p.key: policy_view(p, [], {}) for p in (server, client)}
    after = {p.key: policy_view(p, [deny], {}) for p in (server, client)}
    assert changed_views(before, after) == {"demo/server": "NetworkPolicy changed: demo/deny-server"}
    edited = parse_network_policy(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "deny-server", "namespace": "demo"},
            "spec": {
                "podSelector": {"matchLabels": {"app": "server"}},
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}]}],
            },
        }
    )
    again = {p.key: policy_view(p, [edited], {}) for p in (server, client)}
    assert set(changed_views(after, again)) == {"demo/server", "demo/client"}
    gone = {p.key: policy_view(p, [], {}) for p in (server, client)}
    assert set(changed_views(again, gone)) == {"demo/server", "demo/client"}
    # A pod seen for the first time has nothing to hand back.
    assert changed_views({}, gone) == {}


def test_a_namespace_relabelled_changes_the_view_of_its_pods() -> None:
    p = recorded("allow-from-frontend-ns")
    web = pod("web", "web-1", app="web")
    before = {web.key: policy_view(web, [p], {"web": {}})}
    after = {web.key: policy_view(web, [p], {"web": {"team": "frontend"}})}
    assert changed_views(before, after) == {"web/web-1": "NetworkPolicy changed: shop/allow-from-frontend-ns"}


def test_a_server_side_field_alone_does_not_change_the_view() -> None:
    raw = yaml.safe_load((FIXTURES / "allow-from-frontend-ns.yaml").read_text())
    api = pod("shop", "api-1", app="api")
    first = policy_view(api, [parse_network_policy(raw)], {})
    raw["metadata"]["resourceVersion"] = "48999"
    assert policy_view(api, [parse_network_policy(raw)], {}) == first


def test_an_object_of_another_kind_is_refused_with_the_field() -> None:
    with pytest.raises(InvalidSpec, match="kind"):
        parse_network_policy({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}})
    with pytest.raises(InvalidSpec, match=r"spec.ingress\[0\].from\[0\].podSelector"):
        parse_network_policy(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": "x"},
                "spec": {"ingress": [{"from": [{"podSelector": {"matchLabels": {"a": 1}}}]}]},
            }
        )
