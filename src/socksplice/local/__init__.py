"""Local mode: netns + cgroup2 "pods" on one machine standing in for pods on one node.

``podsfile`` parses the LocalPods document, ``topology`` realizes it with pyroute2,
``services`` adds ClusterIP-like DNAT, ``state`` writes it down for other processes
(the node agent's ``--local DIR``) and for cleanup after crashes. See docs/local-mode.md.
"""

from socksplice.local.podsfile import (
    DEFAULT_LOCAL_PODS_YAML,
    LocalCluster,
    PodSpec,
    ServiceSpec,
    default_cluster,
    load_local_pods,
    parse_local_pods,
)
from socksplice.local.state import cleanup_stale, load, save
from socksplice.local.topology import LocalPod, LocalTopology

__all__ = [
    "DEFAULT_LOCAL_PODS_YAML",
    "LocalCluster",
    "LocalPod",
    "LocalTopology",
    "PodSpec",
    "ServiceSpec",
    "cleanup_stale",
    "default_cluster",
    "load",
    "load_local_pods",
    "parse_local_pods",
    "save",
]
