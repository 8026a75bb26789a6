"""API types shared by the operator, the node agent and local mode.

Pure functions over Kubernetes-shaped dicts: no Kubernetes client, no kernel. This layer imports
only the standard library, PyYAML and ``socksplice.errors``.
"""

from socksplice.api.manifests import load_manifest_dir, load_manifests
from socksplice.api.planning import PodPlan, Skip, explain, plan
from socksplice.api.pods import PodRef, pod_ref_from_api
from socksplice.api.selectors import LabelSelector, Operator, Requirement, parse_label_selector
from socksplice.api.socketsplice import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    Mode,
    SocketSplice,
    SpliceSpec,
    parse_socketsplice,
)

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "LabelSelector",
    "Mode",
    "Operator",
    "PodPlan",
    "PodRef",
    "Requirement",
    "Skip",
    "SocketSplice",
    "SpliceSpec",
    "explain",
    "load_manifest_dir",
    "load_manifests",
    "parse_label_selector",
    "parse_socketsplice",
    "plan",
    "pod_ref_from_api",
]
