"""The local front door: pods from a local topology, SocketSplices from a manifest directory.

Pods are turned into the same Pod API objects a cluster would return (``LocalPod.as_pod_object``)
and read with the same code as in a cluster; their kernel location comes from the
``socksplice.io/local-netns`` and ``socksplice.io/local-cgroup`` annotations local mode puts
on them. SocketSplice files are the YAML a user would ``kubectl apply``.

The directory is followed with inotify (``kernel.inotify``): ``topology.json`` and the manifests
are parsed again only after a change in them, so an idle agent does not re-read its files every
turn. The status file the agent writes next to them is not one of the names that count.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from socksplice.api.manifests import load_manifest_dir
from socksplice.api.nodestatus import NodeStatus
from socksplice.api.pods import PodRef, pod_ref_from_api
from socksplice.api.socketsplice import SocketSplice
from socksplice.errors import InvalidSpec, PermanentError
from socksplice.kernel.inotify import DirectoryWatch
from socksplice.local import netpolicies, state
from socksplice.nodeagent.snapshots import Snapshot
from socksplice.nodeagent.targets import PodLocation

NETNS_ANNOTATION = "socksplice.io/local-netns"
CGROUP_ANNOTATION = "socksplice.io/local-cgroup"
STATUS_FILE = "status.json"


def watch_local(directory: Path, poll_interval: float = 0.5) -> DirectoryWatch:
    """One watch over what local mode reads: ``topology.json`` in ``directory`` (only that name,
    not the status the agent writes there), ``manifests/`` and ``networkpolicies/`` (any entry)."""
    return DirectoryWatch(
        {
            directory: frozenset({state.STATE_FILE}),
            directory / state.MANIFESTS_DIR: None,
            directory / netpolicies.NETWORK_POLICIES_DIR: None,
        },
        poll_interval,
    )


def location_of(pod: dict[str, Any]) -> PodLocation | None:
    annotations = pod.get("metadata", {}).get("annotations") or {}
    netns, cgroup = annotations.get(NETNS_ANNOTATION), annotations.get(CGROUP_ANNOTATION)
    if not netns or not cgroup:
        return None
    return PodLocation(Path(cgroup), Path(netns))


class LocalSource:
    """``watch``: shared with ``LocalPolicies`` and the agent's loop (default: a watch of its own)."""

    def __init__(self, directory: Path, node_name: str, watch: DirectoryWatch | None = None) -> None:
        self.directory = directory
        self.node_name = node_name
        self.watch = watch if watch is not None else watch_local(directory)
        self._pods: tuple[tuple[PodRef, ...], dict[str, PodLocation]] | None = None
        self._splices: tuple[tuple[SocketSplice, ...], tuple[InvalidSpec, ...]] | None = None
        self._snapshot: Snapshot | None = None

    @property
    def manifests(self) -> Path:
        return self.directory / state.MANIFESTS_DIR

    def snapshot(self) -> Snapshot:
        """The pods and SocketSplices; each part read again only when its files changed (the
        same object back when nothing did). A failed read is tried again on the next call."""
        if self.watch.changed(self.directory):
            self._pods = None
        if self.watch.changed(self.manifests):
            self._splices = None
        if self._pods is None:
            self._snapshot, self._pods = None, self._read_pods()
        if self._splices is None:
            self.manifests.mkdir(parents=True, exist_ok=True)
            loaded, errors = load_manifest_dir(self.manifests)
            self._snapshot, self._splices = None, (tuple(loaded), tuple(errors))
        if self._snapshot is None:
            (pods, locations), (splices, rejected) = self._pods, self._splices
            self._snapshot = Snapshot(pods, splices, locations, rejected)
        return self._snapshot

    def _read_pods(self) -> tuple[tuple[PodRef, ...], dict[str, PodLocation]]:
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
        return pods, locations


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
