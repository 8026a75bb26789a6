"""The Helm chart, rendered and linted by the real Helm engine (helm-python-sdk embeds Helm v4; no
helm binary, no cluster), every rendered object validated against the Kubernetes schemas
(kubernetes-validate), and what matters asserted: RBAC verbs, mounts, probes, labels, hooks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

try:
    import helm_python as helm
    import kubernetes_validate  # type: ignore[import-untyped]
    from helm_python import _native
except ImportError as exc:  # dev dependencies; CI must not pass by skipping the chart
    if os.environ.get("CI", "").lower() == "true":
        raise
    pytest.skip(f"chart tests need the dev dependencies: {exc}", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "socksplice"
EXAMPLES = sorted((CHART / "examples").glob("*.yaml"))
KUBE_VERSIONS = ("1.27.0", "1.37.0")  # the chart's minimum (Chart.yaml kubeVersion) and the newest
MONITORING = ("monitoring.coreos.com/v1/ServiceMonitor", "monitoring.coreos.com/v1/PodMonitor")
RELEASE, NAMESPACE = "ss", "socksplice-system"
COMMON_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
)
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection", "*"}

Obj = dict[str, Any]


def render(values: Obj | None = None, api_versions: tuple[str, ...] = ()) -> dict[str, str]:
    """Template path -> rendered text. ``api_versions`` are added to .Capabilities.APIVersions
    (the SDK's ``Chart.render`` does not expose that option; the engine's own does)."""
    opts = {"name": RELEASE, "namespace": NAMESPACE, "is_install": True, "api_versions": list(api_versions)}
    with helm.Chart.load(CHART) as chart:
        out: dict[str, str] = json.loads(
            _native.call_string("helm_render", chart._raw(), json.dumps(values or {}), json.dumps(opts))
        )
    return out


def objects(rendered: dict[str, str]) -> list[Obj]:
    docs: list[Obj] = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def find(objs: list[Obj], kind: str, suffix: str = "") -> Obj:
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"].endswith(suffix)]
    assert len(found) == 1, f"{kind} *{suffix}: {[o['metadata']['name'] for o in found]}"
    return found[0]


def hook_of(obj: Obj) -> str | None:
    annotations: dict[str, str] = obj["metadata"].get("annotations") or {}
    return annotations.get("helm.sh/hook")


def validate(objs: list[Obj]) -> None:
    for obj in objs:
        what = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            # prometheus-operator kinds are not in the Kubernetes schemas: check their shape here.
            assert obj["kind"] in ("ServiceMonitor", "PodMonitor"), what
            assert obj["spec"]["selector"]["matchLabels"], what
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{what} invalid for Kubernetes {version}: {exc.message} at {list(exc.path)}")


def example_values(path: Path) -> Obj:
    loaded: Obj = yaml.safe_load(path.read_text()) or {}
    return loaded


@pytest.fixture(scope="module")
def default_objs() -> list[Obj]:
    return objects(render())


# --- render, lint, validate -------------------------------------------------------------------


def test_default_values_render_lint_and_validate(default_objs: list[Obj]) -> None:
    report = helm.lint(CHART, None, strict=True, namespace=NAMESPACE)
    assert not report["errors"], report
    assert not [m for m in report["messages"] if m["severity"] >= 2], report
    validate(default_objs)
    kinds = sorted(f"{o['kind']}/{o['metadata']['name']}" for o in default_objs if hook_of(o) is None)
    assert kinds == sorted(
        [
            f"ClusterRole/{RELEASE}-socksplice-agent",
            f"ClusterRole/{RELEASE}-socksplice-operator",
            f"ClusterRoleBinding/{RELEASE}-socksplice-agent",
            f"ClusterRoleBinding/{RELEASE}-socksplice-operator",
            f"ConfigMap/{RELEASE}-socksplice-dashboard-node-overview",
            f"ConfigMap/{RELEASE}-socksplice-dashboard-socketsplice",
            f"DaemonSet/{RELEASE}-socksplice-agent",
            f"Deployment/{RELEASE}-socksplice-operator",
            f"Service/{RELEASE}-socksplice-agent-metrics",
            f"Service/{RELEASE}-socksplice-operator-metrics",
            f"ServiceAccount/{RELEASE}-socksplice-agent",
            f"ServiceAccount/{RELEASE}-socksplice-operator",
            *(f"CustomResourceDefinition/{name}" for name in source_crds()),
        ]
    )


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_documented_example_renders_lints_and_validates(example: Path) -> None:
    values = example_values(example)
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(values)
    report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE)
    assert not report["errors"], report
    assert not [m for m in report["messages"] if m["severity"] >= 2], report
    objs = objects(render(values, api_versions=MONITORING))
    assert objs
    validate(objs)


def test_examples_are_documented() -> None:
    install = (ROOT / "docs" / "install.md").read_text()
    assert len(EXAMPLES) >= 3
    for example in EXAMPLES:
        assert f"examples/{example.name}" in install, f"{example.name} is not in docs/install.md"


@pytest.mark.parametrize(
    "values",
    [
        {"agnet": {}},
        {"agent": {"privilegd": True}},
        {"metrics": {"serviceMonitor": {"enabled": True, "intervall": "10s"}}},
        {"agent": {"capabilities": ["cap_bpf"]}},
        {"image": {"pullPolicy": "Sometimes"}},
        {"agent": {"maxUnavailable": 0}},
    ],
    ids=["unknown-top", "unknown-nested", "unknown-deep", "bad-capability", "bad-enum", "zero-unavailable"],
)
def test_schema_rejects_bad_values(values: Obj) -> None:
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmValuesError):
        chart.validate_schema(values)
    with pytest.raises(helm.HelmError):
        render(values)


# --- CRDs: one source ---------------------------------------------------------------------------


def source_crds() -> dict[str, Obj]:
    crds: dict[str, Obj] = {}
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                crds[doc["metadata"]["name"]] = doc
    return crds


def test_chart_keeps_no_copy_of_the_crds() -> None:
    link = CHART / "files" / "crds"
    assert link.is_symlink() and link.resolve() == (ROOT / "crds").resolve()
    assert not (CHART / "crds").exists()
    copies = [p for p in CHART.rglob("*.yaml") if "kind: CustomResourceDefinition" in p.read_text()]
    assert copies == [], copies


def test_rendered_crds_are_the_repository_crds(default_objs: list[Obj]) -> None:
    rendered = {o["metadata"]["name"]: o for o in default_objs if o["kind"] == "CustomResourceDefinition"}
    source = source_crds()
    assert source and set(rendered) == set(source)
    for name, crd in rendered.items():
        assert crd["spec"] == source[name]["spec"], name
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_packaged_chart_carries_the_crds(tmp_path: Path) -> None:
    """``helm package`` follows the link: a chart installed from a repository has the CRDs too."""
    with helm.Chart.load(CHART) as chart:
        archive = chart.save(tmp_path)
    with helm.Chart.load(archive) as packaged:
        rendered = packaged.render(name=RELEASE, namespace=NAMESPACE)
    crds = [o for o in objects(rendered) if o["kind"] == "CustomResourceDefinition"]
    assert {o["metadata"]["name"] for o in crds} == set(source_crds())


def test_image_pull_secrets_reach_every_pod() -> None:
    objs = objects(render({"imagePullSecrets": [{"name": "regcred"}]}))
    pods = list(pod_templates(objs))
    assert len(pods) == 4  # agent, operator, drain job, test pod
    for owner, template in pods:
        assert template["spec"]["imagePullSecrets"] == [{"name": "regcred"}], owner["metadata"]["name"]


def test_crd_values_install_and_keep() -> None:
    not_kept = objects(render({"crds": {"keep": False}}))
    crds = [o for o in not_kept if o["kind"] == "CustomResourceDefinition"]
    assert crds and all(
        "helm.sh/resource-policy" not in (o["metadata"].get("annotations") or {}) for o in crds
    )
    assert not [
        o for o in objects(render({"crds": {"install": False}})) if o["kind"] == "CustomResourceDefinition"
    ]


# --- the agent ----------------------------------------------------------------------------------


def agent_container(objs: list[Obj]) -> tuple[Obj, Obj]:
    ds = find(objs, "DaemonSet", "-agent")
    pod = ds["spec"]["template"]["spec"]
    return pod, pod["containers"][0]


def test_agent_daemonset_least_privilege_mounts_and_probes(default_objs: list[Obj]) -> None:
    ds = find(default_objs, "DaemonSet", "-agent")
    assert ds["spec"]["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}
    pod, c = agent_container(default_objs)
    assert pod["priorityClassName"] == "system-node-critical"
    assert pod["serviceAccountName"] == f"{RELEASE}-socksplice-agent"
    assert pod.get("hostNetwork") is not True
    sc = c["securityContext"]
    assert sc["privileged"] is False and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {
        "drop": ["ALL"],
        "add": ["SYS_ADMIN", "NET_ADMIN", "SYS_PTRACE", "SYSLOG"],
    }
    assert sc["readOnlyRootFilesystem"] is True
    env = {e["name"]: e for e in c["env"]}
    assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert "--node-name=$(NODE_NAME)" in c["args"] and c["args"][0] == "agent"

    volumes = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    for path, ro in (
        ("/sys/fs/cgroup", False),
        ("/sys/fs/bpf", False),
        ("/lib/modules", True),
        ("/usr/src", True),
    ):
        assert volumes[mounts[path]["name"]] == path
        assert mounts[path].get("readOnly", False) is ro, path
    assert mounts["/sys/fs/bpf"]["mountPropagation"] == "HostToContainer"

    port = c["ports"][0]
    assert port == {"name": "metrics", "containerPort": 9750, "protocol": "TCP"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"


def test_agent_privileged_is_a_value() -> None:
    objs = objects(render({"agent": {"privileged": True, "maxUnavailable": "25%", "metricsPort": 9999}}))
    ds = find(objs, "DaemonSet", "-agent")
    assert ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] == "25%"
    _, c = agent_container(objs)
    assert c["securityContext"]["privileged"] is True
    assert "capabilities" not in c["securityContext"]
    bpffs = next(m for m in c["volumeMounts"] if m["mountPath"] == "/sys/fs/bpf")
    assert bpffs["mountPropagation"] == "Bidirectional"  # only privileged containers may
    assert "--metrics-port=9999" in c["args"] and c["ports"][0]["containerPort"] == 9999


# --- the operator -------------------------------------------------------------------------------


def test_operator_deployment_single_recreate_non_root(default_objs: list[Obj]) -> None:
    dep = find(default_objs, "Deployment", "-operator")
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"] == {"type": "Recreate"}
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["args"] == ["operator", "--liveness-port=8080", "--metrics-port=9751"]
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"healthz": 8080, "metrics": 9751}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert not [
        o for o in objects(render({"operator": {"enabled": False}})) if "operator" in o["metadata"]["name"]
    ]


# --- RBAC -----------------------------------------------------------------------------------------


def rules_of(objs: list[Obj], kind: str, suffix: str) -> dict[str, set[str]]:
    """resource -> verbs, over every rule of one role."""
    out: dict[str, set[str]] = {}
    for rule in find(objs, kind, suffix)["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                key = f"{group or 'core'}/{resource}"
                out.setdefault(key, set()).update(rule["verbs"])
    return out


def test_agent_rbac_reads_pods_and_splices_writes_only_splicenodes(default_objs: list[Obj]) -> None:
    rules = rules_of(default_objs, "ClusterRole", "-agent")
    assert rules == {
        "core/pods": {"get", "list", "watch"},
        "core/nodes": {"get"},  # the uid that makes its Node own the SpliceNode
        "networking.k8s.io/networkpolicies": {"list", "watch"},  # handbacks on policy changes
        "core/namespaces": {"list", "watch"},  # the labels namespaceSelectors read
        "socksplice.io/socketsplices": {"get", "list", "watch"},
        "socksplice.io/splicenodes": {"get", "list", "watch", "create"},
        "socksplice.io/splicenodes/status": {"get", "update", "patch"},
    }


def test_operator_rbac(default_objs: list[Obj]) -> None:
    rules = rules_of(default_objs, "ClusterRole", "-operator")
    assert rules["socksplice.io/splicenodes"] == {"list", "watch"}  # kopf's index; agents own them
    assert rules["socksplice.io/socketsplices/status"] == {"get", "patch", "update"}
    # a benchmark's spliced run applies (and removes) its own SocketSplice
    read_write = {"get", "list", "watch", "patch", "update"}
    assert rules["socksplice.io/socketsplices"] == read_write | {"create", "delete"}
    assert rules["socksplice.io/splicebenchmarks"] == read_write
    assert rules["batch/jobs"] == {"get", "create", "delete"}  # a benchmark's clients, read by name
    # list+watch: kopf's pod index (SocketSplice status follows pod events); a benchmark's server
    assert rules["core/pods"] == {"list", "watch", "create", "delete"}
    assert rules["core/nodes"] == {"get"}  # a benchmark's spec.nodeName, looked up while Pending
    assert not any(r.endswith("/secrets") for r in rules)


def test_no_role_uses_wildcards_or_touches_secrets(default_objs: list[Obj]) -> None:
    roles = [o for o in default_objs if o["kind"] in ("ClusterRole", "Role")]
    assert len(roles) == 4  # agent, operator, drain hook, test hook
    for role in roles:
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], role["metadata"]["name"]
            assert "secrets" not in rule["resources"], role["metadata"]["name"]


def test_each_service_account_is_bound_to_its_own_role(default_objs: list[Obj]) -> None:
    bindings = [o for o in default_objs if o["kind"] in ("ClusterRoleBinding", "RoleBinding")]
    accounts = {o["metadata"]["name"] for o in default_objs if o["kind"] == "ServiceAccount"}
    assert len(bindings) == len(accounts) == 4
    for b in bindings:
        (subject,) = b["subjects"]
        assert subject["name"] in accounts and subject["namespace"] == NAMESPACE
        assert b["roleRef"]["name"] == b["metadata"]["name"] == subject["name"]


# --- labels, services, monitors, dashboards ------------------------------------------------------


def pod_templates(objs: list[Obj]) -> Iterator[tuple[Obj, Obj]]:
    for o in objs:
        if o["kind"] in ("DaemonSet", "Deployment", "Job"):
            yield o, o["spec"]["template"]
        elif o["kind"] == "Pod":
            yield o, o


def test_every_object_carries_the_common_labels(default_objs: list[Obj]) -> None:
    for o in default_objs:
        labels = o["metadata"].get("labels") or {}
        assert all(k in labels for k in COMMON_LABELS), (o["kind"], o["metadata"]["name"], labels)
        assert labels["app.kubernetes.io/instance"] == RELEASE
    for owner, template in pod_templates(default_objs):
        labels = template["metadata"]["labels"]
        assert all(k in labels for k in COMMON_LABELS), owner["metadata"]["name"]
        selector = owner["spec"].get("selector", {}).get("matchLabels", {})
        assert selector.items() <= labels.items()


def test_metrics_services_select_their_pods(default_objs: list[Obj]) -> None:
    for component in ("agent", "operator"):
        svc = find(default_objs, "Service", f"-{component}-metrics")
        owner = find(default_objs, "DaemonSet" if component == "agent" else "Deployment", f"-{component}")
        assert svc["spec"]["selector"].items() <= owner["spec"]["template"]["metadata"]["labels"].items()
        assert svc["spec"]["ports"][0]["targetPort"] == "metrics"
    assert find(default_objs, "Service", "-agent-metrics")["spec"]["clusterIP"] == "None"


def test_monitors_only_where_the_api_serves_them() -> None:
    values = {"metrics": {"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}}}
    without = render(values)
    assert not [o for o in objects(without) if o["apiVersion"].startswith("monitoring.coreos.com")]
    notes = next(text for path, text in without.items() if path.endswith("NOTES.txt"))
    assert "does not serve\nmonitoring.coreos.com/v1 ServiceMonitor" in notes
    objs = objects(render(values, api_versions=MONITORING))
    sm, pm = find(objs, "ServiceMonitor"), find(objs, "PodMonitor")
    assert sm["spec"]["endpoints"][0]["port"] == "metrics"
    assert pm["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    agent_labels = find(objs, "Service", "-agent-metrics")["metadata"]["labels"]
    assert sm["spec"]["selector"]["matchLabels"].items() <= agent_labels.items()
    assert not [o for o in objects(render(api_versions=MONITORING)) if o["kind"].endswith("Monitor")]


def test_dashboards_are_labelled_configmaps_with_the_json(default_objs: list[Obj]) -> None:
    files = sorted((CHART / "dashboards").glob("*.json"))
    maps = [o for o in default_objs if o["kind"] == "ConfigMap" and "-dashboard-" in o["metadata"]["name"]]
    assert len(maps) == len(files) >= 2
    uids = set()
    for path in files:
        cm = find(default_objs, "ConfigMap", f"-dashboard-{path.stem}")
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert json.loads(cm["data"][path.name]) == json.loads(path.read_text())
        uids.add(json.loads(path.read_text())["uid"])
    assert len(uids) == len(files)
    custom = objects(
        render({"dashboards": {"label": "dash", "labelValue": "yes", "namespace": "monitoring"}})
    )
    cm = find(custom, "ConfigMap", "-dashboard-socketsplice")
    assert cm["metadata"]["labels"]["dash"] == "yes" and "grafana_dashboard" not in cm["metadata"]["labels"]
    assert cm["metadata"]["namespace"] == "monitoring"


# --- hooks ---------------------------------------------------------------------------------------


def test_pre_delete_hook_drains_the_agents(default_objs: list[Obj]) -> None:
    hooked = [o for o in default_objs if hook_of(o) == "pre-delete"]
    assert sorted(o["kind"] for o in hooked) == ["ClusterRole", "ClusterRoleBinding", "Job", "ServiceAccount"]
    job = find(default_objs, "Job", "-drain")
    c = job["spec"]["template"]["spec"]["containers"][0]
    assert c["args"] == ["drain", "--all-nodes", "--timeout=120"]
    assert job["spec"]["activeDeadlineSeconds"] > 120
    assert rules_of(default_objs, "ClusterRole", "-drain") == {
        "socksplice.io/splicenodes": {"get", "list", "watch", "patch"}
    }
    assert not [o for o in objects(render({"drain": {"enabled": False}})) if hook_of(o) == "pre-delete"]


def test_helm_test_runs_a_splicebenchmark(default_objs: list[Obj]) -> None:
    pod = find(default_objs, "Pod", "-test-benchmark")
    assert hook_of(pod) == "test"
    script = pod["spec"]["containers"][0]["args"][0]
    compile(script, "helm-test", "exec")  # the embedded script is valid Python
    assert '"kind": "SpliceBenchmark"' in script
    rules = rules_of(default_objs, "Role", "-test-benchmark")
    assert rules == {"socksplice.io/splicebenchmarks": {"create", "get", "delete"}}
    node = objects(render({"tests": {"benchmark": {"node": "worker-1"}}}))
    env = {e["name"]: e for e in find(node, "Pod", "-test-benchmark")["spec"]["containers"][0]["env"]}
    assert env["BENCHMARK_NODE"] == {"name": "BENCHMARK_NODE", "value": "worker-1"}
    env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
    assert env["BENCHMARK_NODE"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert env["SOCKSPLICE_IMAGE"]["value"] == "socksplice/socksplice:0.1.0"
    assert '"nodeName": os.environ["BENCHMARK_NODE"]' in script


# --- generated docs ------------------------------------------------------------------------------


def test_values_reference_is_up_to_date() -> None:
    gen = CHART / "gen_values_doc.py"
    done = subprocess.run([sys.executable, str(gen), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_metrics_doc_lists_every_panel_query_and_metric() -> None:
    doc = (ROOT / "docs" / "metrics.md").read_text()
    for path in sorted((CHART / "dashboards").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            assert panel["title"] in doc, panel["title"]
            for target in panel["targets"]:
                assert target["expr"] in doc, f"{path.name}: {panel['title']}: query not in docs/metrics.md"
    for name in exported_metric_names():
        assert f"`{name}`" in doc, f"{name} is not in docs/metrics.md"


class _Datapath:
    """A stand-in for the BPF maps: one policy slot, every counter present."""

    load_seconds = 1.5

    def counters(self) -> dict[int, dict[str, int]]:
        return {1: defaultdict(int)}

    def spliced_sockets(self) -> int:
        return 0


class _Stats:
    attached_pods = 0
    attach_results = {"attached": 1}  # noqa: RUF012 - read-only here
    sockhash_capacity = 1


def exported_metric_names() -> list[str]:
    """Sample names of every family the agent's collector exports (as Prometheus sees them)."""
    from prometheus_client import CollectorRegistry, generate_latest

    from socksplice.nodeagent.metrics import DatapathCollector

    registry = CollectorRegistry()
    registry.register(DatapathCollector(_Datapath(), _Stats(), lambda slot: "demo/web"))
    text = generate_latest(registry).decode()
    names = sorted({line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")})
    families = {"counter": "_total", "info": "_info"}
    types = {line.split()[2]: line.split()[3] for line in text.splitlines() if line.startswith("# TYPE")}
    return [n + (families.get(types[n], "") if not n.endswith(("_total", "_info")) else "") for n in names]
