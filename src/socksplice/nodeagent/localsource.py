"""The local front door: pods from a local topology, SocketSplices from a manifest directory.

Pods are turned into the same Pod API objects a cluster would return (``LocalPod.as_pod_object``)
and read with the same code as in a cluster; their kernel location comes from the
``socksplice.io/local-netns`` and ``socksplice.io/local-cgroup`` annotations local mode puts
on them. SocketSplice files are the YAML a user would ``kubectl apply``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from socksplice.api.manifests import load_manifest_dir
from socksplice.api.nodestatus import NodeStatus
from socksplice.api.pods import pod_ref_from_api
from socksplice.errors import PermanentError
from socksplice.local import state
from socksplice.nodeagent.snapshots import Snapshot
from socksplice.nodeagent.targets import PodLocation

NETNS_ANNOTATION = "socksplice.io/local-netns"
CGROUP_ANNOTATION = "socksplice.io/local-cgroup"
STATUS_FILE = "status.json"


def location_of(pod: dict[str, Any]) -> PodLocation | None:
    annotations = pod.get("metadata", {}).get("annotations") or {}
    netns, cgroup = annotations.get(NETNS_ANNOTATION), annotations.get(CGROUP_ANNOTATION)
    if not netns or not cgroup:
        return None
    return PodLocation(Path(cgroup), Path(netns))


class LocalSource:
    def __init__(self, directory: Path, node_name: str) -> None:
        self.directory = directory
        self.node_name = node_name

    @property
    def manifests(self) -> Path:
        return self.directory / state.MANIFESTS_DIR

    def snapshot(self) -> Snapshot:
        if not (self.directory / state.STATE_FILE).exists():
            raise PermanentError(
                f"{self.directory}: no local topology here; create one with `socksplice local up`"
            )
        topology = state.load(self.directory)
        objects = [p.as_pod_object(self.node_name) for p in topology.pods]
        pods = tuple(pod_ref_from_api(o) for o in objects)
        locations = {}
        for ref, obj in zip(pods, objects, strict=True):
            loc = location_of(obj)
            if loc is not None:
                locations[ref.key] = loc
        self.manifests.mkdir(parents=True, exist_ok=True)
        splices, errors = load_manifest_dir(self.manifests)
        return Snapshot(pods, tuple(splices), locations, tuple(errors))


class StatusFile:
    """Publishes the node status as ``status.json`` in the local directory: a SpliceNode's
    ``status``, in the same shape (``api.nodestatus``)."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / STATUS_FILE

    def publish(self, status: NodeStatus) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(status.to_dict(), indent=2, sort_keys=True))
        os.replace(tmp, self.path)

    def read(self) -> NodeStatus | None:
        """The last published status; None when there is none (yet)."""
        try:
            return NodeStatus.from_dict(json.loads(self.path.read_text()))
        except (OSError, ValueError):
            return None
