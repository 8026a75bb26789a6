"""The node agent's settings: one typed object, parsed once from CLI flags and environment."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from socksplice.bpf.loader import DatapathSettings


@dataclass(frozen=True)
class AgentSettings:
    node_name: str = "local"
    """This node's name (``NODE_NAME`` from the downward API in a cluster)."""
    state_dir: Path = Path("/run/socksplice/agent")
    """Where the agent keeps its policy slot table and what it attached (survives restarts)."""
    datapath: DatapathSettings = field(default_factory=DatapathSettings)
    """Pin location and map sizes."""
    metrics_host: str = "0.0.0.0"
    metrics_port: int = 9750
    """Port for /metrics, /healthz, /readyz; 0 picks a free port, -1 disables the server."""
    poll_interval: float = 0.5
    """Seconds between polls of the local source for changes."""
    resync_interval: float = 30.0
    """Seconds between full reconciles when nothing changed (repairs drift)."""
    status_interval: float = 5.0
    """Seconds between status publications when nothing changed (socket counts move anyway)."""
