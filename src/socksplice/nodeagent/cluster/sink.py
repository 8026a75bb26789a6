"""``SpliceNodeSink``: the agent's status as this node's SpliceNode (status subresource).

The object is named after the node and created on first publish, owned by the Node (an
ownerReference, so deleting the Node deletes its SpliceNode; without permission to read the Node
it is created without one); afterwards only its status is patched. The doctor's failed checks
and the hazards are measured once at start and carried in every publication. API errors become
TemporaryError (the agent logs them and tries again).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from socksplice.api.nodestatus import CheckResult, Hazard, NodeStatus
from socksplice.api.status import SPLICENODE_API_VERSION, SPLICENODE_KIND
from socksplice.errors import SockspliceError, TemporaryError
from socksplice.kubeapi import Kube

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
        doctor: Sequence[CheckResult] = (),
        hazards: Sequence[Hazard] = (),
        kube: Kube | None = None,
    ) -> None:
        self.node = node
        self.doctor = tuple(c for c in doctor if not c.ok)
        self.hazards = tuple(h for h in hazards if h.present)
        self.kube = kube if kube is not None else Kube()

    def node_uid(self) -> str:
        """The Node's uid, or "" when it cannot be read (the SpliceNode is then not owned)."""
        try:
            node = self.kube.get_node(self.node)
        except SockspliceError as exc:
            log.warning("SpliceNode %s: created without an owner: Node not readable: %s", self.node, exc)
            return ""
        return str(((node or {}).get("metadata") or {}).get("uid") or "")

    def publish(self, status: NodeStatus) -> None:
        """Merge-patch the status (``status.drain``, written by the drain, stays as it is)."""
        status = replace(status, doctor=self.doctor, hazards=self.hazards)
        body = {"status": status.to_dict()}
        try:
            if not self.kube.patch_splicenode_status(self.node, body):
                self.kube.create_splicenode(splicenode_object(self.node, self.node_uid()))
                self.kube.patch_splicenode_status(self.node, body)
        except SockspliceError as exc:
            raise TemporaryError(f"SpliceNode {self.node}: not written: {exc}") from exc
