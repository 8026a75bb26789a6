"""``socksplice agent``: run the node agent (local mode: ``--local DIR``)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from socksplice.bpf.loader import Datapath, DatapathSettings
from socksplice.errors import KernelUnsupported, SockspliceError
from socksplice.nodeagent.agent import Agent
from socksplice.nodeagent.localsource import LocalSource, StatusFile
from socksplice.nodeagent.settings import AgentSettings

log = logging.getLogger("socksplice.agent")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--local",
        type=Path,
        metavar="DIR",
        required=True,
        help="local mode: the local topology directory (pods + manifests/), e.g. /run/socksplice/local/demo",
    )
    p.add_argument("--node-name", default="local", help="this node's name (default: %(default)s)")
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
        "--metrics-port",
        type=int,
        default=AgentSettings.metrics_port,
        help="port for /metrics, /healthz, /readyz; -1 disables (default: %(default)s)",
    )
    p.add_argument("--metrics-host", default=AgentSettings.metrics_host)
    p.add_argument("--poll-interval", type=float, default=AgentSettings.poll_interval, help="seconds")
    p.add_argument("--status-interval", type=float, default=AgentSettings.status_interval, help="seconds")


def settings_from(args: argparse.Namespace) -> AgentSettings:
    return AgentSettings(
        node_name=args.node_name,
        state_dir=args.state_dir,
        datapath=DatapathSettings(pin_root=args.bpffs, name=args.pin_name),
        metrics_host=args.metrics_host,
        metrics_port=args.metrics_port,
        poll_interval=args.poll_interval,
        status_interval=args.status_interval,
    )


def preflight() -> None:
    """Refuse clearly, before compiling anything, when this kernel or process cannot splice."""
    from socksplice.doctor.checks import fatal
    from socksplice.doctor.checks import preflight as checks

    failed = fatal(checks())
    if failed:
        lines = "; ".join(f"{c.name}: {c.detail} (fix: {c.fix})" for c in failed)
        raise KernelUnsupported(f"cannot accelerate on this node: {lines}")


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    try:
        preflight()
        datapath = Datapath.load(settings.datapath)
    except KernelUnsupported as exc:
        log.error("agent: %s", exc)
        return 2
    except SockspliceError as exc:
        log.error("agent: start failed: %s", exc)
        return 1
    agent = Agent(settings, LocalSource(args.local, settings.node_name), datapath, StatusFile(args.local))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log.info("agent: node %s: watching %s", settings.node_name, args.local)
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
