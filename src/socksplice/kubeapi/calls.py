"""``Kube``: the API calls of socksplice's roles, over one ``kubernetes`` ApiClient.

Objects travel as the API's camelCase JSON (reads use ``_preload_content=False`` and parse the
body), so what a role sees is what ``kubectl get -o json`` shows and what the tests record.
Every call runs inside ``failures.converted``: callers see ``TemporaryError``,
``PermanentError`` or ``Gone``, never ``ApiException``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypedDict, cast

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from socksplice.api.socketsplice import GROUP, PLURAL, VERSION
from socksplice.api.status import SPLICENODE_PLURAL
from socksplice.kubeapi.failures import CONFLICT, NOT_FOUND, converted

Object = dict[str, Any]
NETWORKPOLICIES = ("networking.k8s.io", "v1", "networkpolicies")
WATCH_TIMEOUT_SECONDS = 300


class WatchEvent(TypedDict):
    """One event of a watch: ``ADDED``, ``MODIFIED``, ``DELETED``, ``BOOKMARK`` or ``ERROR``."""

    type: str
    object: Object


def _json(response: Any) -> Any:
    return json.loads(response.data)


def _unless_absent(call: Callable[[], Any]) -> Object | None:
    """The object ``call`` reads, or None on 404."""
    try:
        return cast(Object, call())
    except ApiException as exc:
        if exc.status == NOT_FOUND:
            return None
        raise


def _done(call: Callable[[], Any], already: int) -> bool:
    """Run a write; False when the API answers ``already`` (409: it exists, 404: it is gone)."""
    try:
        call()
    except ApiException as exc:
        if exc.status == already:
            return False
        raise
    return True


class Kube:
    """Typed calls; ``api`` is a configured ``ApiClient`` (default: the one ``credentials.load`` set up)."""

    def __init__(self, api: client.ApiClient | None = None) -> None:
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    # --- reads ---------------------------------------------------------------------------------

    def list_pods(self, namespace: str = "", labels: str = "", fields: str = "") -> Object:
        """The pod list (``items``, ``metadata.resourceVersion``) of one namespace, or of all."""
        where = f"namespace {namespace}" if namespace else "all namespaces"
        with converted(f"list pods in {where}"):
            if namespace:
                r = self.core.list_namespaced_pod(
                    namespace, label_selector=labels, field_selector=fields, _preload_content=False
                )
            else:
                r = self.core.list_pod_for_all_namespaces(
                    label_selector=labels, field_selector=fields, _preload_content=False
                )
            return cast(Object, _json(r))

    def list_socketsplices(self) -> Object:
        with converted("list SocketSplices"):
            return cast(Object, self.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL))

    def list_splicenodes(self) -> Object:
        with converted("list SpliceNodes"):
            return cast(Object, self.custom.list_cluster_custom_object(GROUP, VERSION, SPLICENODE_PLURAL))

    def get_socketsplice(self, namespace: str, name: str) -> Object | None:
        with converted(f"get SocketSplice {namespace}/{name}"):
            return _unless_absent(
                lambda: self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
            )

    def get_splicenode(self, name: str) -> Object | None:
        with converted(f"get SpliceNode {name}"):
            return _unless_absent(
                lambda: self.custom.get_cluster_custom_object(GROUP, VERSION, SPLICENODE_PLURAL, name)
            )

    def get_job(self, namespace: str, name: str) -> Object | None:
        with converted(f"get Job {namespace}/{name}"):
            return _unless_absent(
                lambda: _json(self.batch.read_namespaced_job(name, namespace, _preload_content=False))
            )

    def get_node(self, name: str) -> Object | None:
        with converted(f"get Node {name}"):
            return _unless_absent(lambda: _json(self.core.read_node(name, _preload_content=False)))

    def pod_log(self, namespace: str, name: str) -> str:
        with converted(f"log of Pod {namespace}/{name}"):
            return str(self.core.read_namespaced_pod_log(name, namespace))

    # --- writes --------------------------------------------------------------------------------

    def create(self, obj: Mapping[str, Any]) -> bool:
        """Create a namespaced Pod, Job or SocketSplice; False when it already exists."""
        meta = obj["metadata"]
        ns, kind = meta["namespace"], obj["kind"]
        with converted(f"create {kind} {ns}/{meta['name']}"):
            if kind == "Pod":
                return _done(lambda: self.core.create_namespaced_pod(ns, cast(Any, obj)), CONFLICT)
            if kind == "Job":
                return _done(lambda: self.batch.create_namespaced_job(ns, cast(Any, obj)), CONFLICT)
            return _done(
                lambda: self.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, dict(obj)),
                CONFLICT,
            )

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        """Delete a Pod, Job (with its pods) or SocketSplice; False when it was already gone."""
        with converted(f"delete {kind} {namespace}/{name}"):
            if kind == "Pod":
                return _done(lambda: self.core.delete_namespaced_pod(name, namespace), NOT_FOUND)
            if kind == "Job":
                return _done(
                    lambda: self.batch.delete_namespaced_job(
                        name, namespace, propagation_policy="Background"
                    ),
                    NOT_FOUND,
                )
            return _done(
                lambda: self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name),
                NOT_FOUND,
            )

    def patch_socketsplice_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        """Merge ``status`` into the SocketSplice's status subresource."""
        with converted(f"patch status of SocketSplice {namespace}/{name}"):
            self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, PLURAL, name, {"status": dict(status)}
            )

    def create_splicenode(self, obj: Mapping[str, Any]) -> bool:
        """Create a SpliceNode; False when it already exists."""
        with converted(f"create SpliceNode {obj['metadata']['name']}"):
            return _done(
                lambda: self.custom.create_cluster_custom_object(
                    GROUP, VERSION, SPLICENODE_PLURAL, dict(obj)
                ),
                CONFLICT,
            )

    def patch_splicenode(self, name: str, body: Mapping[str, Any]) -> None:
        """Merge-patch a SpliceNode's metadata (the drain request annotations)."""
        with converted(f"patch SpliceNode {name}"):
            self.custom.patch_cluster_custom_object(GROUP, VERSION, SPLICENODE_PLURAL, name, dict(body))

    def patch_splicenode_status(self, name: str, body: Mapping[str, Any]) -> bool:
        """Merge ``body`` (``{"status": ...}``) into a SpliceNode's status; False when it is absent."""
        with converted(f"patch status of SpliceNode {name}"):
            return _done(
                lambda: self.custom.patch_cluster_custom_object_status(
                    GROUP, VERSION, SPLICENODE_PLURAL, name, dict(body)
                ),
                NOT_FOUND,
            )

    # --- watches -------------------------------------------------------------------------------

    def _events(self, what: str, func: Any, *args: Any, **kwargs: Any) -> Iterator[WatchEvent]:
        with converted(f"watch {what}"):
            stream = watch.Watch().stream  # type: ignore[no-untyped-call]
            for ev in stream(  # type: ignore[no-untyped-call]
                func, *args, allow_watch_bookmarks=True, timeout_seconds=WATCH_TIMEOUT_SECONDS, **kwargs
            ):
                yield {"type": str(ev["type"]), "object": ev.get("raw_object") or {}}

    def watch_pods(self, resource_version: str, fields: str = "") -> Iterator[WatchEvent]:
        """Pod events of all namespaces from ``resource_version`` (``Gone`` when it is too old)."""
        return self._events(
            "pods",
            self.core.list_pod_for_all_namespaces,
            field_selector=fields,
            resource_version=resource_version,
        )

    def list_networkpolicies(self) -> Object:
        """NetworkPolicies of all namespaces (``networking.k8s.io/v1``)."""
        with converted("list NetworkPolicies"):
            return cast(Object, self.custom.list_cluster_custom_object(*NETWORKPOLICIES))

    def watch_networkpolicies(self, resource_version: str) -> Iterator[WatchEvent]:
        return self._events(
            "NetworkPolicies",
            self.custom.list_cluster_custom_object,
            *NETWORKPOLICIES,
            resource_version=resource_version,
        )

    def list_namespaces(self) -> Object:
        with converted("list namespaces"):
            return cast(Object, _json(self.core.list_namespace(_preload_content=False)))

    def watch_namespaces(self, resource_version: str) -> Iterator[WatchEvent]:
        return self._events("namespaces", self.core.list_namespace, resource_version=resource_version)

    def watch_socketsplices(self, resource_version: str) -> Iterator[WatchEvent]:
        return self._events(
            "SocketSplices",
            self.custom.list_cluster_custom_object,
            GROUP,
            VERSION,
            PLURAL,
            resource_version=resource_version,
        )
