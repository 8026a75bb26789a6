"""``socksplice agent``: run the node agent.

With ``--local DIR`` it serves a local topology (files, followed with inotify); without it, the
cluster: pods of this node and SocketSplices from the API server, status to this node's SpliceNode
(needs ``NODE_NAME`` or ``--node-name``, and the host's PID namespace and cgroup2 hierarchy).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from socksplice.bpf.loader import Datapath, DatapathSettings
from socksplice.errors import KernelUnsupported, PermanentError, SockspliceError
from socksplice.kernel.inotify import DirectoryWatch
from socksplice.nodeagent.agent import Agent, StatusSink
from socksplice.nodeagent.localsource import LocalSource, StatusFile, watch_local
from socksplice.nodeagent.policywatch import LocalPolicies, PolicySource, PolicyWatch
from socksplice.nodeagent.settings import AgentSettings
from socksplice.nodeagent.snapshots import Source

log = logging.getLogger("socksplice.agent")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--local",
        type=Path,
        metavar="DIR",
        default=None,
        help="local mode: the local topology directory (pods + manifests/), e.g. /run/socksplice/local/demo; "
        "without it the agent runs in cluster mode",
    )
    p.add_argument(
        "--node-name",
        default=None,
        help="this node's name (default: 'local' in local mode, $NODE_NAME in cluster mode)",
    )
    p.add_argument(
        "--cgroup-root",
        type=Path,
        default=None,
        help="cluster mode: the host's cgroup2 hierarchy (default: the cgroup2 mount in /proc/mounts)",
    )
    p.add_argument(
        "--proc", type=Path, default=Path("/proc"), help="cluster mode: the host's /proc (hostPID)"
    )
    p.add_argument(
        "--state-dir", type=Path, default=AgentSettings.state_dir, help="agent state (default: %(default)s)"
    )
    p.add_argument(
        "--bpffs",
        type=Path,
        default=DatapathSettings.pin_root,
        help="bpffs directory for pins; mounted when missing (default: %(default)s)",
    )
    p.add_argument(
        "--pin-name", default=DatapathSettings.name, help="pin subdirectory (default: %(default)s)"
    )
    p.add_argument(
        "--no-observe",
        dest="observe",
        action="store_false",
        help="load without Auto mode's observation programs (Auto then behaves as DryRun on this node)",
    )
    p.add_argument(
        "--unread-limit",
        type=int,
        default=DatapathSettings.unread_limit,
        metavar="BYTES",
        help="backpressure: bytes a spliced receiver that did not set SO_RCVBUF may hold unread before "
        "that direction moves to TCP until its reader catches up (default: %(default)s)",
    )
    p.add_argument(
        "--node-tcp-memory-low",
        type=int,
        default=DatapathSettings.node_tcp_memory_low,
        metavar="PAGES",
        help="node TCP memory from which every spliced receiver is held to its own buffer "
        "(default: 0, the kernel's net.ipv4.tcp_mem[0])",
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        default=AgentSettings.metrics_port,
        help="port for /metrics, /healthz, /readyz; -1 disables (default: %(default)s)",
    )
    p.add_argument("--metrics-host", default=AgentSettings.metrics_host)
    p.add_argument(
        "--poll-interval",
        type=float,
        default=AgentSettings.poll_interval,
        help="seconds between loop turns (Auto's evidence; cluster mode's source); local mode's "
        "file changes are acted on at once (default: %(default)s)",
    )
    p.add_argument(
        "--status-interval",
        type=float,
        default=AgentSettings.status_interval,
        help="seconds between status publications while sockets or evidence move (default: %(default)s)",
    )
    p.add_argument(
        "--heartbeat-interval",
        type=float,
        default=AgentSettings.heartbeat_interval,
        help="seconds between status publications when nothing but the heartbeat changed "
        "(default: %(default)s)",
    )


def node_name_of(args: argparse.Namespace) -> str:
    if args.node_name:
        return str(args.node_name)
    if args.local is not None:
        return "local"
    name = os.environ.get("NODE_NAME", "")
    if not name:
        raise PermanentError("cluster mode needs the node name: set NODE_NAME or --node-name")
    return name


def settings_from(args: argparse.Namespace) -> AgentSettings:
    return AgentSettings(
        node_name=node_name_of(args),
        state_dir=args.state_dir,
        datapath=DatapathSettings(
            pin_root=args.bpffs,
            name=args.pin_name,
            unread_limit=args.unread_limit,
            node_tcp_memory_low=args.node_tcp_memory_low,
            observe=args.observe,
        ),
        metrics_host=args.metrics_host,
        metrics_port=args.metrics_port,
        poll_interval=args.poll_interval,
        status_interval=args.status_interval,
        heartbeat_interval=args.heartbeat_interval,
    )


def preflight() -> None:
    """Refuse clearly, before compiling anything, when this kernel or process cannot splice."""
    from socksplice.doctor.checks import fatal
    from socksplice.doctor.checks import preflight as checks

    failed = fatal(checks())
    if failed:
        lines = "; ".join(f"{c.name}: {c.detail} (fix: {c.fix})" for c in failed)
        raise KernelUnsupported(f"cannot accelerate on this node: {lines}")


def front_door(
    args: argparse.Namespace, settings: AgentSettings, watch: DirectoryWatch | None
) -> tuple[Source, StatusSink, str]:
    """The source and sink of the mode: files in ``--local DIR`` (followed by ``watch``), or the
    API server."""
    if args.local is not None:
        local = LocalSource(args.local, settings.node_name, watch)
        return local, StatusFile(args.local), str(args.local)
    from socksplice.nodeagent.cluster.main import cluster_front_door

    source, sink = cluster_front_door(settings.node_name, args.cgroup_root, args.proc)
    return source, sink, "the API server"


def run(args: argparse.Namespace) -> int:
    watch: DirectoryWatch | None = None
    try:
        settings = settings_from(args)
        if args.local is not None:
            watch = watch_local(args.local, settings.poll_interval)
        source, sink, where = front_door(args, settings, watch)
    except SockspliceError as exc:
        log.error("agent: %s", exc)
        if watch is not None:
            watch.close()
        return 1
    try:
        return _run(args, settings, source, sink, where, watch)
    finally:
        if watch is not None:
            watch.close()


def _run(
    args: argparse.Namespace,
    settings: AgentSettings,
    source: Source,
    sink: StatusSink,
    where: str,
    watch: DirectoryWatch | None,
) -> int:
    try:
        preflight()
        datapath = Datapath.load(settings.datapath)
    except KernelUnsupported as exc:
        log.error("agent: %s", exc)
        return 2
    except SockspliceError as exc:
        log.error("agent: start failed: %s", exc)
        return 1
    policies: PolicySource
    if args.local is not None:
        policies = LocalPolicies(args.local, watch)
    else:
        from socksplice.nodeagent.cluster.main import cluster_policies

        policies = cluster_policies()
    agent = Agent(
        settings,
        source,
        datapath,
        sink,
        policy_watch=PolicyWatch(policies, datapath, settings.state_dir / "policy_views.json"),
        wake=watch,
    )
    if args.local is None:
        from socksplice.nodeagent.cluster.main import bind_agent

        bind_agent(source, agent)  # drain requests (socksplice drain) drain with this agent
    stop = threading.Event()

    def on_signal(*_: object) -> None:
        stop.set()
        if watch is not None:
            watch.interrupt()  # the loop is asleep on the watch: end its sleep now

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    log.info("agent: node %s: watching %s", settings.node_name, where)
    try:
        agent.run(stop)
    finally:
        datapath.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="socksplice agent", description=__doc__)
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
