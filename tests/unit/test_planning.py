"""Pods from API objects, and planning: which pod gets which mode on which ports."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from socksplice.api import Mode, PodPlan, PodRef, Skip, SocketSplice, explain, plan, pod_ref_from_api
from socksplice.api.socketsplice import parse_socketsplice
from socksplice.errors import InvalidSpec


def pod_object(
    name: str,
    namespace: str = "shop",
    labels: dict[str, str] | None = None,
    *,
    phase: str = "Running",
    host_network: bool = False,
    node: str = "node-a",
    ip: str = "198.18.1.10",
) -> dict[str, Any]:
    """A Pod as `kubectl get pod -o json` returns it (trimmed of fields socksplice never reads)."""
    spec: dict[str, Any] = {
        "containers": [
            {
                "name": "main",
                "image": "registry.example/web:1.4",
                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                "resources": {},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "imagePullPolicy": "IfNotPresent",
            }
        ],
        "dnsPolicy": "ClusterFirst",
        "enableServiceLinks": True,
        "nodeName": node,
        "preemptionPolicy": "PreemptLowerPriority",
        "priority": 0,
        "restartPolicy": "Always",
        "schedulerName": "default-scheduler",
        "securityContext": {},
        "serviceAccountName": "default",
        "terminationGracePeriodSeconds": 30,
    }
    if host_network:
        spec["hostNetwork"] = True
        spec["dnsPolicy"] = "ClusterFirstWithHostNet"
    host_ip = "198.18.0.2"
    pod_ip = host_ip if host_network else ip
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "creationTimestamp": "2025-05-02T09:10:11Z",
            "generateName": f"{name.rsplit('-', 1)[0]}-",
            "labels": dict(labels or {}),
            "name": name,
            "namespace": namespace,
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "blockOwnerDeletion": True,
                    "controller": True,
                    "kind": "ReplicaSet",
                    "name": name.rsplit("-", 1)[0],
                    "uid": "0a9d3c55-7c1e-4d9a-8f7b-2b1c0e6d5a41",
                }
            ],
            "resourceVersion": "183211",
            "uid": f"uid-{namespace}-{name}",
        },
        "spec": spec,
        "status": {
            "conditions": [
                {
                    "lastProbeTime": None,
                    "lastTransitionTime": "2025-05-02T09:10:11Z",
                    "status": "True",
                    "type": "Ready",
                }
            ],
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}],
            "phase": phase,
            "podIP": pod_ip,
            "podIPs": [{"ip": pod_ip}],
            "qosClass": "BestEffort",
            "startTime": "2025-05-02T09:10:11Z",
        },
    }


def splice(
    name: str,
    namespace: str = "shop",
    selector: dict[str, Any] | None = None,
    ports: list[int] | None = None,
    mode: str | None = "SpliceRelaxedReceive",
) -> SocketSplice:
    """``mode=None`` leaves the field out (the default, DryRun)."""
    spec: dict[str, Any] = {"podSelector": selector if selector is not None else {}}
    if ports is not None:
        spec["ports"] = ports
    if mode is not None:
        spec["mode"] = mode
    return parse_socketsplice(
        {
            "apiVersion": "socksplice.io/v1alpha1",
            "kind": "SocketSplice",
            "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}", "generation": 1},
            "spec": spec,
        }
    )


def pods(*objects: dict[str, Any]) -> list[PodRef]:
    return [pod_ref_from_api(o) for o in objects]


WEB = pod_object("web-7d9f-abcde", labels={"app": "web", "tier": "frontend"})
API = pod_object("api-5c6b-fghij", labels={"app": "api", "tier": "backend"}, ip="198.18.1.11")
DB = pod_object("db-0", labels={"app": "db", "tier": "backend"}, ip="198.18.1.12")


# ---------------------------------------------------------------------------------------------
# PodRef


def test_pod_ref_from_api() -> None:
    ref = pod_ref_from_api(WEB)
    assert ref == PodRef(
        namespace="shop",
        name="web-7d9f-abcde",
        uid="uid-shop-web-7d9f-abcde",
        labels=(("app", "web"), ("tier", "frontend")),
        node_name="node-a",
        phase="Running",
        host_network=False,
        pod_ips=("198.18.1.10",),
    )
    assert ref.key == "shop/web-7d9f-abcde"
    assert ref.labels_dict() == {"app": "web", "tier": "frontend"}
    hash(ref)


def test_pod_ref_dual_stack_and_fallback() -> None:
    dual = copy.deepcopy(WEB)
    dual["status"]["podIPs"] = [{"ip": "198.18.1.10"}, {"ip": "2001:db8::a"}, {"ip": "198.18.1.10"}]
    assert pod_ref_from_api(dual).pod_ips == ("198.18.1.10", "2001:db8::a")
    old = copy.deepcopy(WEB)
    del old["status"]["podIPs"]
    assert pod_ref_from_api(old).pod_ips == ("198.18.1.10",)


def test_pod_ref_pending_unscheduled() -> None:
    # A pod just created: no nodeName, no labels, no status yet.
    obj = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "shop", "uid": "u"},
        "spec": {},
    }
    ref = pod_ref_from_api(obj)
    assert (ref.node_name, ref.phase, ref.pod_ips, ref.labels, ref.host_network) == (
        "",
        "Pending",
        (),
        (),
        False,
    )


def test_pod_ref_host_network() -> None:
    ref = pod_ref_from_api(pod_object("node-exporter-x", labels={"app": "web"}, host_network=True))
    assert ref.host_network
    assert ref.pod_ips == ("198.18.0.2",)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda o: o.__setitem__("metadata", None), "metadata"),
        (lambda o: o["metadata"].__delitem__("name"), "metadata.name"),
        (lambda o: o["metadata"].__setitem__("labels", ["app=web"]), "metadata.labels"),
        (lambda o: o["spec"].__setitem__("hostNetwork", "true"), "spec.hostNetwork"),
        (lambda o: o["status"].__setitem__("podIPs", "198.18.1.10"), "status.podIPs"),
        (lambda o: o["status"].__setitem__("phase", 3), "status.phase"),
    ],
)
def test_pod_ref_rejects_malformed(mutate: Any, field: str) -> None:
    obj = copy.deepcopy(WEB)
    mutate(obj)
    with pytest.raises(InvalidSpec) as info:
        pod_ref_from_api(obj)
    assert info.value.field == field


# ---------------------------------------------------------------------------------------------
# plan


def test_unselected_pods_are_absent() -> None:
    result = plan(pods(WEB, API, DB), [splice("web", selector={"matchLabels": {"app": "web"}})])
    assert list(result) == ["shop/web-7d9f-abcde"]


def test_no_splices_no_plans() -> None:
    assert plan(pods(WEB, API), []) == {}


def test_single_splice_all_ports() -> None:
    result = plan(pods(WEB), [splice("all")])
    assert result["shop/web-7d9f-abcde"] == PodPlan(
        splice_all=True, policies=("shop/all",), primary_policy="shop/all"
    )
    p = result["shop/web-7d9f-abcde"]
    assert p.mode_for_port(1) is Mode.SPLICE
    assert p.mode_for_port(65535) is Mode.SPLICE
    assert p.splices


def test_ports_limit_the_plan() -> None:
    p = plan(pods(WEB), [splice("web", ports=[80, 443])])["shop/web-7d9f-abcde"]
    assert (p.splice_all, p.splice_ports) == (False, frozenset({80, 443}))
    assert p.mode_for_port(80) is Mode.SPLICE
    assert p.mode_for_port(8080) is None


def test_dry_run_only() -> None:
    p = plan(pods(WEB), [splice("trial", mode="DryRun", ports=[80])])["shop/web-7d9f-abcde"]
    assert p == PodPlan(dryrun_ports=frozenset({80}), policies=("shop/trial",), primary_policy="shop/trial")
    assert p.mode_for_port(80) is Mode.DRY_RUN
    assert p.mode_for_port(81) is None
    assert not p.splices


def test_union_of_ports_and_modes() -> None:
    splices = [
        splice("b-web", selector={"matchLabels": {"app": "web"}}, ports=[80]),
        splice("a-frontend", selector={"matchLabels": {"tier": "frontend"}}, ports=[443, 80]),
        splice("c-trial", selector={}, mode="DryRun", ports=[80, 9090]),
        splice("d-trial-all", selector={"matchLabels": {"tier": "backend"}}, mode="DryRun"),
    ]
    result = plan(pods(WEB, API), splices)
    web = result["shop/web-7d9f-abcde"]
    assert web.policies == ("shop/a-frontend", "shop/b-web", "shop/c-trial")
    assert web.primary_policy == "shop/a-frontend"
    assert web.splice_ports == frozenset({80, 443})
    assert web.dryrun_ports == frozenset({9090})  # 80 is spliced, so not also dry-run
    assert not web.splice_all and not web.dryrun_all
    assert [web.mode_for_port(p) for p in (80, 443, 9090, 22)] == [
        Mode.SPLICE,
        Mode.SPLICE,
        Mode.DRY_RUN,
        None,
    ]

    api = result["shop/api-5c6b-fghij"]
    assert api.policies == ("shop/c-trial", "shop/d-trial-all")
    assert api.primary_policy == "shop/c-trial"  # no SpliceRelaxedReceive policy: first DryRun one
    assert api.dryrun_all and api.dryrun_ports == frozenset()
    assert api.mode_for_port(12345) is Mode.DRY_RUN


def test_splice_all_wins_over_everything() -> None:
    splices = [
        splice("x-all"),
        splice("a-ports", ports=[80]),
        splice("b-trial", mode="DryRun"),
    ]
    p = plan(pods(WEB), splices)["shop/web-7d9f-abcde"]
    assert p == PodPlan(
        splice_all=True,
        policies=("shop/a-ports", "shop/b-trial", "shop/x-all"),
        primary_policy="shop/a-ports",
    )


def test_plans_are_equal_for_equal_behaviour() -> None:
    # Same effect whichever order the API lists objects in.
    a = [splice("one", ports=[80]), splice("two", ports=[443], mode="DryRun")]
    assert plan(pods(WEB), a) == plan(pods(WEB), list(reversed(a)))


def test_namespace_isolation() -> None:
    other_web = pod_object("web-1", namespace="other", labels={"app": "web"}, ip="198.18.2.10")
    splices = [splice("web", namespace="shop", selector={"matchLabels": {"app": "web"}})]
    result = plan(pods(WEB, other_web), splices)
    assert list(result) == ["shop/web-7d9f-abcde"]
    # An empty selector is "every pod of my namespace", never of the cluster.
    result = plan(pods(WEB, other_web), [splice("all", namespace="other")])
    assert list(result) == ["other/web-1"]


def test_same_name_in_two_namespaces() -> None:
    a = pod_object("web-1", namespace="a", labels={"app": "web"})
    b = pod_object("web-1", namespace="b", labels={"app": "web"})
    result = plan(pods(a, b), [splice("s", namespace="a"), splice("s", namespace="b", mode="DryRun")])
    assert result["a/web-1"].primary_policy == "a/s" and result["a/web-1"].splice_all
    assert result["b/web-1"].primary_policy == "b/s" and result["b/web-1"].dryrun_all


def test_host_network_and_finished_pods_are_never_selected() -> None:
    host = pod_object("exporter-1", labels={"app": "web"}, host_network=True)
    done = pod_object("web-job-1", labels={"app": "web"}, phase="Succeeded")
    failed = pod_object("web-job-2", labels={"app": "web"}, phase="Failed")
    pending = pod_object("web-new-1", labels={"app": "web"}, phase="Pending")
    unknown = pod_object("web-lost-1", labels={"app": "web"}, phase="Unknown")
    result = plan(pods(WEB, host, done, failed, pending, unknown), [splice("web")])
    assert sorted(result) == ["shop/web-7d9f-abcde", "shop/web-lost-1", "shop/web-new-1"]


def test_explain_lists_skipped_pods() -> None:
    host = pod_object("exporter-1", labels={"app": "web"}, host_network=True)
    done = pod_object("web-job-1", labels={"app": "web"}, phase="Succeeded")
    elsewhere = pod_object("exporter-2", namespace="other", labels={"app": "web"}, host_network=True)
    unmatched = pod_object("db-1", labels={"app": "db"}, host_network=True)
    splices = [
        splice("web", selector={"matchLabels": {"app": "web"}}),
        splice("all", mode="DryRun"),
    ]
    assert explain(pods(WEB, host, done, elsewhere, unmatched), splices) == [
        ("shop/all", "shop/db-1", Skip.HOST_NETWORK),
        ("shop/all", "shop/exporter-1", Skip.HOST_NETWORK),
        ("shop/all", "shop/web-job-1", Skip.FINISHED),
        ("shop/web", "shop/exporter-1", Skip.HOST_NETWORK),
        ("shop/web", "shop/web-job-1", Skip.FINISHED),
    ]
    assert [str(s) for s in Skip] == ["HostNetwork", "PodFinished"]


def test_plan_accepts_iterators() -> None:
    result = plan((p for p in pods(WEB)), (s for s in [splice("web")]))
    assert list(result) == ["shop/web-7d9f-abcde"]


def test_omitted_mode_plans_dry_run() -> None:
    p = plan(pods(WEB), [splice("default", mode=None)])["shop/web-7d9f-abcde"]
    assert (p.dryrun_all, p.splices) == (True, False)
