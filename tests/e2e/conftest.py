"""The e2e suite: a real cluster (``KUBECONFIG``), opt-in with ``--with-e2e``; skipped otherwise.

It needs an image with socksplice and sslg (the project's ``Dockerfile``) that the nodes can pull,
named by ``SOCKSPLICE_E2E_IMAGE`` (on kind: ``kind load docker-image``). The fixtures apply the
CRDs (and remove those they created), run the operator on this machine as a subprocess watching
one throwaway namespace, and run the agent as a privileged hostPID pod on one node with the RBAC
the chart gives it. Everything is deleted afterwards. See docs/kubernetes.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
IMAGE_ENV = "SOCKSPLICE_E2E_IMAGE"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    missing = [n for n in ("KUBECONFIG", IMAGE_ENV) if not os.environ.get(n)]
    if not missing or not config.getoption("--with-e2e"):
        return
    skip = pytest.mark.skip(reason=f"e2e: set {' and '.join(missing)} (see docs/kubernetes.md)")
    for item in items:
        if "e2e" in item.keywords:
            item.add_marker(skip)


def wait_for(what: str, check: Callable[[], Any], timeout: float = 120.0, interval: float = 1.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r:.500})")


class Cluster:
    def __init__(self) -> None:
        from kubernetes import client, config

        config.load_kube_config()
        self.api = client.ApiClient()
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.ext = client.ApiextensionsV1Api(self.api)
        self.rbac = client.RbacAuthorizationV1Api(self.api)
        self.image = os.environ[IMAGE_ENV]

    def table(self, path: str) -> dict[str, Any]:
        """A list as ``kubectl get`` shows it: the server-side Table with the printer columns."""
        data, _, _ = self.api.call_api(
            path,
            "GET",
            header_params={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"},
            response_type="object",
            auth_settings=["BearerToken"],
            _return_http_data_only=False,
        )
        return dict(data)


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    return Cluster()


@pytest.fixture(scope="session")
def crds(cluster: Cluster) -> Iterator[None]:
    from kubernetes.client.exceptions import ApiException

    created = []
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        body = yaml.safe_load(path.read_text())
        try:
            cluster.ext.create_custom_resource_definition(body)
            created.append(body["metadata"]["name"])
        except ApiException as exc:
            if exc.status != 409:
                raise
            current = cluster.ext.read_custom_resource_definition(body["metadata"]["name"])
            body["metadata"]["resourceVersion"] = current.metadata.resource_version
            cluster.ext.replace_custom_resource_definition(body["metadata"]["name"], body)

    def established(name: str) -> bool:
        crd = cluster.ext.read_custom_resource_definition(name)
        return any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or [])

    for path in sorted((ROOT / "crds").glob("*.yaml")):
        name = yaml.safe_load(path.read_text())["metadata"]["name"]
        wait_for(f"CRD {name} established", lambda n=name: established(n), timeout=60)
    yield
    for name in created:
        cluster.ext.delete_custom_resource_definition(name)


@pytest.fixture(scope="session")
def namespace(cluster: Cluster, crds: None) -> Iterator[str]:
    name = f"socksplice-e2e-{uuid.uuid4().hex[:6]}"
    cluster.core.create_namespace({"metadata": {"name": name}})
    yield name
    cluster.core.delete_namespace(name)


@pytest.fixture(scope="session")
def node(cluster: Cluster) -> str:
    """A schedulable Linux node (the first one)."""
    for n in cluster.core.list_node().items:
        if not n.spec.unschedulable and (n.metadata.labels or {}).get("kubernetes.io/os", "linux") == "linux":
            return str(n.metadata.name)
    pytest.fail("no schedulable Linux node")


@pytest.fixture(scope="session")
def operator(namespace: str) -> Iterator[subprocess.Popen[bytes]]:
    """``socksplice operator`` on this machine, watching only the test namespace."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "socksplice.operator.main",
            "--namespace",
            namespace,
            "--liveness-port",
            "18080",
            "--metrics-port",
            "-1",
            "--host",
            "127.0.0.1",
        ],
    )
    time.sleep(2)
    assert proc.poll() is None, "the operator exited at start"
    yield proc
    proc.terminate()
    proc.wait(timeout=30)


AGENT_RULES = [
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["socksplice.io"], "resources": ["socketsplices"], "verbs": ["get", "list", "watch"]},
    {
        "apiGroups": ["socksplice.io"],
        "resources": ["splicenodes"],
        "verbs": ["get", "list", "watch", "create", "patch"],
    },
    {
        "apiGroups": ["socksplice.io"],
        "resources": ["splicenodes/status"],
        "verbs": ["get", "patch", "update"],
    },
]


def agent_pod(namespace: str, node: str, image: str) -> dict[str, Any]:
    def host(name: str, path: str) -> dict[str, Any]:
        return {"name": name, "hostPath": {"path": path}}

    return {
        "metadata": {
            "name": "socksplice-agent",
            "namespace": namespace,
            "labels": {"app": "socksplice-agent"},
        },
        "spec": {
            "nodeName": node,
            "hostPID": True,
            "serviceAccountName": "socksplice-agent",
            "containers": [
                {
                    "name": "agent",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "args": ["agent", "--node-name=$(NODE_NAME)", "--bpffs=/sys/fs/bpf"],
                    "env": [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                    "securityContext": {"privileged": True, "runAsUser": 0},
                    "volumeMounts": [
                        {"name": "cgroup", "mountPath": "/sys/fs/cgroup"},
                        {"name": "bpffs", "mountPath": "/sys/fs/bpf", "mountPropagation": "Bidirectional"},
                        {"name": "modules", "mountPath": "/lib/modules", "readOnly": True},
                        {"name": "usrsrc", "mountPath": "/usr/src", "readOnly": True},
                    ],
                }
            ],
            "volumes": [
                host("cgroup", "/sys/fs/cgroup"),
                host("bpffs", "/sys/fs/bpf"),
                host("modules", "/lib/modules"),
                host("usrsrc", "/usr/src"),
            ],
        },
    }


@pytest.fixture(scope="session")
def agent(cluster: Cluster, namespace: str, node: str) -> Iterator[str]:
    """The node agent on ``node``, with the agent's RBAC; yields the node name."""
    role = f"{namespace}-agent"
    cluster.core.create_namespaced_service_account(namespace, {"metadata": {"name": "socksplice-agent"}})
    cluster.rbac.create_cluster_role({"metadata": {"name": role}, "rules": AGENT_RULES})
    cluster.rbac.create_cluster_role_binding(
        {
            "metadata": {"name": role},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": "socksplice-agent", "namespace": namespace}],
        }
    )
    cluster.core.create_namespaced_pod(namespace, agent_pod(namespace, node, cluster.image))
    try:
        wait_for(
            f"SpliceNode {node} Ready",
            lambda: _ready(splicenode(cluster, node)),
            timeout=180,
            interval=2,
        )
        yield node
    finally:
        cluster.core.delete_namespaced_pod("socksplice-agent", namespace)
        if splicenode(cluster, node) is not None:
            cluster.custom.delete_cluster_custom_object("socksplice.io", "v1alpha1", "splicenodes", node)
        cluster.rbac.delete_cluster_role_binding(role)
        cluster.rbac.delete_cluster_role(role)


def splicenode(cluster: Cluster, node: str) -> dict[str, Any] | None:
    from kubernetes.client.exceptions import ApiException

    try:
        return dict(
            cluster.custom.get_cluster_custom_object("socksplice.io", "v1alpha1", "splicenodes", node)
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _ready(obj: Any) -> bool:
    conditions = ((obj or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
