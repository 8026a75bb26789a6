"""Pods from API objects, and planning: which pod gets which mode on which ports."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from socksplice.api import Mode, PodPlan, PodRef, Skip, SocketSplice, explain, plan, pod_ref_from_api
from socksplice.api.socketsplice import AutoSpec, EvidenceWindow, parse_socketsplice
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
    auto: dict[str, Any] | None = None,
) -> SocketSplice:
    """``mode=None`` leaves the field out (the default, Auto)."""
    spec: dict[str, Any] = {"podSelector": selector if selector is not None else {}}
    if ports is not None:
        spec["ports"] = ports
    if mode is not None:
        spec["mode"] = mode
    if auto is not None:
        spec["auto"] = auto
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


def test_omitted_mode_plans_auto() -> None:
    p = plan(pods(WEB), [splice("default", mode=None)])["shop/web-7d9f-abcde"]
    assert (p.auto_all, p.dryrun_all, p.splices) == (True, False, False)
    assert p.mode_for_port(80) is Mode.AUTO
    assert p.auto == AutoSpec()


def test_auto_on_some_ports() -> None:
    p = plan(pods(WEB), [splice("auto", mode="Auto", ports=[6379, 80])])["shop/web-7d9f-abcde"]
    assert p == PodPlan(auto_ports=frozenset({80, 6379}), policies=("shop/auto",), primary_policy="shop/auto")
    assert [p.mode_for_port(port) for port in (80, 6379, 81)] == [Mode.AUTO, Mode.AUTO, None]
    assert not p.splices  # Auto starts every endpoint on TCP: nothing is spliced by the plan alone


def test_precedence_splice_over_auto_over_dry_run() -> None:
    selecting = [
        splice("a-trial", mode="DryRun", ports=[80, 443, 9090, 5432]),
        splice("b-auto", mode="Auto", ports=[443, 9090], auto={"minMessagesPerConnection": 8}),
        splice("c-splice", mode="SpliceRelaxedReceive", ports=[9090]),
    ]
    p = plan(pods(WEB), selecting)["shop/web-7d9f-abcde"]
    assert (p.splice_ports, p.auto_ports, p.dryrun_ports) == ({9090}, {443}, {80, 5432})
    assert [p.mode_for_port(port) for port in (9090, 443, 80, 5432, 22)] == [
        Mode.SPLICE,
        Mode.AUTO,
        Mode.DRY_RUN,
        Mode.DRY_RUN,
        None,
    ]
    assert p.primary_policy == "shop/c-splice"
    assert p.auto == AutoSpec(min_messages_per_connection=8)  # the Auto policy's, not the DryRun one's


def test_auto_on_every_port_leaves_dry_run_nothing() -> None:
    selecting = [splice("a-trial", mode="DryRun"), splice("b-auto", mode=None, ports=None)]
    p = plan(pods(WEB), selecting)["shop/web-7d9f-abcde"]
    assert p == PodPlan(auto_all=True, policies=("shop/a-trial", "shop/b-auto"), primary_policy="shop/b-auto")
    assert p.mode_for_port(1) is Mode.AUTO


def test_splice_on_every_port_leaves_auto_nothing() -> None:
    selecting = [splice("a-auto", mode="Auto", ports=[80]), splice("z-all", mode="SpliceRelaxedReceive")]
    p = plan(pods(WEB), selecting)["shop/web-7d9f-abcde"]
    assert (p.splice_all, p.auto_all, p.auto_ports) == (True, False, frozenset())
    assert p.primary_policy == "shop/z-all"
    assert p.auto == AutoSpec()  # the Auto policy's settings (its defaults) are still carried


def test_auto_settings_come_from_the_first_auto_policy() -> None:
    selecting = [
        splice("b-auto", mode="Auto", ports=[80], auto={"evidenceWindow": {"connections": 5}}),
        splice("a-auto", mode="Auto", ports=[81], auto={"evidenceWindow": {"seconds": 7}}),
        splice("0-trial", mode="DryRun", auto={"minMessagesPerConnection": 0}),
    ]
    p = plan(pods(WEB), selecting)["shop/web-7d9f-abcde"]
    assert p.auto == AutoSpec(EvidenceWindow(20, 7), 4)
    assert (p.auto_ports, p.dryrun_all, p.dryrun_ports) == ({80, 81}, True, frozenset())
    assert p.primary_policy == "shop/a-auto"


def test_dry_run_carries_its_auto_settings() -> None:
    trial = splice("trial", mode="DryRun", auto={"evidenceWindow": {"connections": 3, "seconds": 10}})
    p = plan(pods(WEB), [trial])["shop/web-7d9f-abcde"]
    assert p.auto == AutoSpec(EvidenceWindow(3, 10), 4)
    assert p.mode_for_port(80) is Mode.DRY_RUN


def test_plans_that_act_the_same_compare_equal_with_auto() -> None:
    one = plan(pods(WEB), [splice("a", mode="Auto", ports=[80]), splice("b", mode="Auto")])
    two = plan(pods(WEB), [splice("a", mode="Auto")])
    assert one["shop/web-7d9f-abcde"].auto_all and one["shop/web-7d9f-abcde"].auto_ports == frozenset()
    assert (one["shop/web-7d9f-abcde"].auto_all, one["shop/web-7d9f-abcde"].auto_ports) == (
        two["shop/web-7d9f-abcde"].auto_all,
        two["shop/web-7d9f-abcde"].auto_ports,
    )
