"""Pods, SocketSplices and snapshots for root-free tests of the agent, its reconciler and slots."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from socksplice.api.manifests import load_manifests
from socksplice.api.pods import PodRef
from socksplice.api.socketsplice import SocketSplice
from socksplice.nodeagent.snapshots import Snapshot
from socksplice.nodeagent.targets import PodLocation

SPLICE = """
apiVersion: socksplice.io/v1alpha1
kind: SocketSplice
metadata: {{name: {name}, namespace: demo}}
spec:
  podSelector: {{matchLabels: {{app: {app}}}}}
  mode: {mode}
"""


def pod(name: str, app: str = "web", namespace: str = "demo") -> PodRef:
    return PodRef(namespace, name, uid=f"uid-{name}", labels=(("app", app),), node_name="n", phase="Running")


def splice(name: str, app: str = "web", mode: str = "SpliceRelaxedReceive") -> SocketSplice:
    return load_manifests(SPLICE.format(name=name, app=app, mode=mode))[0]


def location(name: str, generation: int = 0, root: Path = Path("/fake")) -> PodLocation:
    """A pod's location; under a real ``root`` its cgroup directory exists (the pod is alive)."""
    loc = PodLocation(root / "cgroup" / f"{name}-{generation}", root / "netns" / f"{name}-{generation}")
    if root != Path("/fake"):
        loc.cgroup.mkdir(parents=True, exist_ok=True)
    return loc


def snapshot(
    pods: Iterable[PodRef],
    splices: Iterable[SocketSplice],
    locations: Mapping[str, PodLocation] | None = None,
    root: Path = Path("/fake"),
) -> Snapshot:
    pods = tuple(pods)
    locs = dict(locations) if locations is not None else {p.key: location(p.name, root=root) for p in pods}
    return Snapshot(pods, tuple(splices), locs)


class FixedSource:
    """A ``Source`` whose snapshot the test sets."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap
        self.calls = 0

    def snapshot(self) -> Snapshot:
        self.calls += 1
        return self.snap
