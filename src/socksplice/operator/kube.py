"""The operator's API calls, as plain dicts (the shapes the pure functions take).

Lists are read raw (``_preload_content=False``), so objects are the API's camelCase JSON, the
same dicts the unit tests record. Creating what already exists and deleting what is gone both
succeed (``ensure`` style).
"""

from __future__ import annotations

import json
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from socksplice.api.socketsplice import GROUP, PLURAL, VERSION
from socksplice.api.status import SPLICENODE_PLURAL


def _json(response: Any) -> Any:
    return json.loads(response.data)


class Kube:
    def __init__(self, api: client.ApiClient | None = None) -> None:
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    def pods(self, namespace: str, selector: str = "") -> list[dict[str, Any]]:
        items = _json(
            self.core.list_namespaced_pod(namespace, label_selector=selector, _preload_content=False)
        )["items"]
        return list(items)

    def splicenodes(self) -> dict[str, dict[str, Any]]:
        """SpliceNode status by node name."""
        body = cast(dict[str, Any], self.custom.list_cluster_custom_object(GROUP, VERSION, SPLICENODE_PLURAL))
        return {o["metadata"]["name"]: o.get("status") or {} for o in body.get("items", [])}

    def socketsplice(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            obj = cast(
                dict[str, Any],
                self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name),
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return obj

    def job_state(self, namespace: str, name: str) -> str | None:
        """``Active``, ``Succeeded``, ``Failed``, or None when the Job does not exist."""
        try:
            job = _json(self.batch.read_namespaced_job(name, namespace, _preload_content=False))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        status = job.get("status") or {}
        if status.get("succeeded"):
            return "Succeeded"
        if status.get("failed"):
            return "Failed"
        return "Active"

    def job_log(self, namespace: str, job: str) -> str:
        pods = self.pods(namespace, f"job-name={job}")
        if not pods:
            return ""
        name = pods[0]["metadata"]["name"]
        return str(self.core.read_namespaced_pod_log(name, namespace))

    def create(self, obj: dict[str, Any]) -> None:
        ns = obj["metadata"]["namespace"]
        try:
            if obj["kind"] == "Pod":
                self.core.create_namespaced_pod(ns, cast(Any, obj))
            elif obj["kind"] == "Job":
                self.batch.create_namespaced_job(ns, cast(Any, obj))
            else:
                self.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, obj)
        except ApiException as exc:
            if exc.status != 409:
                raise

    def delete(self, kind: str, namespace: str, name: str) -> None:
        try:
            if kind == "Pod":
                self.core.delete_namespaced_pod(name, namespace)
            elif kind == "Job":
                self.batch.delete_namespaced_job(name, namespace, propagation_policy="Background")
            else:
                self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as exc:
            if exc.status != 404:
                raise
