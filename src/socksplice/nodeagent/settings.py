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
    """Seconds between loop turns: Auto reads its evidence at each (a new endpoint's window starts
    when it is first seen), cluster mode asks its source. Local mode's file changes wake the loop
    at once (inotify); without inotify, the files are read again at each turn."""
    resync_interval: float = 30.0
    """Seconds between full reconciles when nothing changed (repairs drift)."""
    status_interval: float = 5.0
    """Seconds between looks at whether the spliced sockets or Auto's evidence moved; the status
    is published when they did (and at once after any change of pods, plans or verdicts)."""
    heartbeat_interval: float = 30.0
    """Seconds between status publications when nothing but the heartbeat changed, and between
    Auto turns that rewrite unchanged verdicts (well below the operator's 120 s staleness)."""
