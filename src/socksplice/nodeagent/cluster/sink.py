"""``SpliceNodeSink``: the agent's status as this node's SpliceNode (status subresource).

The object is named after the node and created on first publish; afterwards only its status is
patched. The doctor's failed checks and the hazards are measured once at start and carried in
every publication. API errors become TemporaryError (the agent logs them and tries again).
"""

from __future__ import annotations

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


def splicenode_object(node: str) -> dict[str, Any]:
    return {
        "apiVersion": SPLICENODE_API_VERSION,
        "kind": SPLICENODE_KIND,
        "metadata": {"name": node, "labels": {"app.kubernetes.io/part-of": "socksplice"}},
        "spec": {},
    }


class SpliceNodeSink:
    def __init__(
        self,
        node: str,
        doctor: Sequence[Mapping[str, Any]] = (),
        hazards: Sequence[Mapping[str, Any]] = (),
        api: Any = None,
    ) -> None:
        from kubernetes import client

        self.node = node
        self.doctor = list(doctor)
        self.hazards = list(hazards)
        self.api = api if api is not None else client.CustomObjectsApi()

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
                    GROUP, VERSION, SPLICENODE_PLURAL, splicenode_object(self.node)
                )
                self.api.patch_cluster_custom_object_status(
                    GROUP, VERSION, SPLICENODE_PLURAL, self.node, body
                )
        except ApiException as exc:
            raise TemporaryError(f"SpliceNode {self.node}: not written: {exc.status} {exc.reason}") from exc
