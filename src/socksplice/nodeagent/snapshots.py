"""What a source tells the agent: the node's pods, their kernel locations and the SocketSplices.

Sources (``localsource``, ``cluster.source``) produce ``Snapshot``s; the agent (``agent``)
consumes them. Both depend on this module, never on each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from socksplice.api.pods import PodRef
from socksplice.api.socketsplice import SocketSplice
from socksplice.errors import InvalidSpec
from socksplice.nodeagent.targets import PodLocation


@dataclass(frozen=True)
class Snapshot:
    """Everything the agent needs to know about its node at one moment."""

    pods: tuple[PodRef, ...]
    splices: tuple[SocketSplice, ...]
    locations: Mapping[str, PodLocation]
    errors: tuple[InvalidSpec, ...] = ()
    unlocated: tuple[tuple[str, str], ...] = ()
    """Planned pods (``namespace/name``) a fail-closed guard refused to locate, with the reason
    (for example: this node's own network namespace cannot be read, so a pod in it could not be
    told apart). They are not attached; the reason goes into the node's status."""

    def fingerprint(self) -> int:
        return hash(
            (
                self.pods,
                self.splices,
                tuple(sorted(self.locations.items())),
                tuple(map(str, self.errors)),
                self.unlocated,
            )
        )


class Source(Protocol):
    def snapshot(self) -> Snapshot: ...
