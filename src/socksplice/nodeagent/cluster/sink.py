"""``SpliceNodeSink``: the agent's status as this node's SpliceNode (status subresource).

The object is named after the node and created on first publish, owned by the Node (an
ownerReference, so deleting the Node deletes its SpliceNode; without permission to read the Node
it is created without one); afterwards only its status is patched. The doctor's failed checks
and the hazards are measured once at start and carried in every publication. API errors become
TemporaryError (the agent logs them and tries again).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from socksplice.api.socketsplice import GROUP, VERSION
from socksplice.api.status import (
    SPLICENODE_API_VERSION,
    SPLICENODE_KIND,
    SPLICENODE_PLURAL,
    splicenode_status,
)
from socksplice.errors import TemporaryError

log = logging.getLogger(__name__)


def splicenode_object(node: str, node_uid: str = "") -> dict[str, Any]:
    """The SpliceNode for ``node``; with the Node's ``node_uid``, owned by it."""
    metadata: dict[str, Any] = {"name": node, "labels": {"app.kubernetes.io/part-of": "socksplice"}}
    if node_uid:
        metadata["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": node, "uid": node_uid}]
    return {"apiVersion": SPLICENODE_API_VERSION, "kind": SPLICENODE_KIND, "metadata": metadata, "spec": {}}


class SpliceNodeSink:
    def __init__(
        self,
        node: str,
        doctor: Sequence[Mapping[str, Any]] = (),
        hazards: Sequence[Mapping[str, Any]] = (),
        api: Any = None,
        core: Any = None,
    ) -> None:
        from kubernetes import client

        self.node = node
        self.doctor = list(doctor)
        self.hazards = list(hazards)
        self.api = api if api is not None else client.CustomObjectsApi()
        self.core = core if core is not None else client.CoreV1Api()

    def node_uid(self) -> str:
        """The Node's uid, or "" when it cannot be read (the SpliceNode is then not owned)."""
        from kubernetes.client.exceptions import ApiException

        try:
            metadata = self.core.read_node(self.node).metadata
            return str(metadata.uid or "") if metadata is not None else ""
        except ApiException as exc:
            log.warning(
                "SpliceNode %s: created without an owner: Node not readable: %s", self.node, exc.status
            )
            return ""

    def publish(self, status: dict[str, Any]) -> None:
        from kubernetes.client.exceptions import ApiException

        body = {"status": splicenode_status(status, datetime.now(UTC), self.doctor, self.hazards)}
        try:
            try:
                self.api.patch_cluster_custom_object_status(
                    GROUP, VERSION, SPLICENODE_PLURAL, self.node, body
                )
            except ApiException as exc:
                if exc.status != 404:
                    raise
                self.api.create_cluster_custom_object(
                    GROUP, VERSION, SPLICENODE_PLURAL, splicenode_object(self.node, self.node_uid())
                )
                self.api.patch_cluster_custom_object_status(
                    GROUP, VERSION, SPLICENODE_PLURAL, self.node, body
                )
        except ApiException as exc:
            raise TemporaryError(f"SpliceNode {self.node}: not written: {exc.status} {exc.reason}") from exc
