"""The ``socksplice`` command: one entry point, subcommands imported on use.

``demo`` and ``agent`` are parsed here. Every other subcommand owns its parser: it is handed all
of its arguments, options included, through a ``main(argv)`` found by module path.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable

from socksplice import __version__
from socksplice.errors import KernelUnsupported, SockspliceError

# name -> (module whose main(argv) runs it, help)
PASSTHROUGH: dict[str, tuple[str, str]] = {
    "bench": ("socksplice.tools.bench.main", "plain TCP vs spliced vs AF_UNIX, interleaved, with repeats"),
    "conformance": (
        "socksplice.tools.conformance.command",
        "plain vs spliced: does the application see any difference?",
    ),
    "doctor": ("socksplice.doctor.report", "can this node splice? one verdict per capability"),
    "local": ("socksplice.local.commands", "local mode: netns pods on this machine"),
    "operator": (
        "socksplice.operator.main",
        "run the kopf operator (SocketSplice status, SpliceBenchmark runs)",
    ),
    "drain": (
        "socksplice.operator.draining",
        "uninstall from the cluster: every agent drains (the chart's pre-delete hook)",
    ),
    "agent-drain": (
        "socksplice.nodeagent.draining",
        "uninstall from this node: detach, wait for spliced sockets, unpin",
    ),
    "footprint": (
        "socksplice.tools.footprint",
        "what the node agent costs: start to first attach, resident memory, idle CPU",
    ),
    "kernel-matrix": (
        "socksplice.tools.matrix.main",
        "run socksplice's checks on Debian 6.1/6.12 kernels under qemu and on this one",
    ),
}
LOUD = ("agent", "operator")  # long-running roles log at INFO
# Commands that load BPF, create network namespaces or cgroups: they need root (docs/install.md).
NEEDS_ROOT = frozenset(
    {"demo", "agent", "bench", "conformance", "doctor", "local", "agent-drain", "footprint"}
)
ROOT_HINT = (
    "needs root with CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_SYS_PTRACE and CAP_SYSLOG "
    "(docs/install.md, capabilities)"
)


def _demo(args: argparse.Namespace) -> int:
    from socksplice.tools.demo.running import run_demo
    from socksplice.tools.demo.table import render_json, render_text

    results = run_demo(quick=args.quick, repeats=args.repeats)
    print(render_json(results) if args.json else render_text(results))
    return 0


def _agent(args: argparse.Namespace) -> int:
    from socksplice.nodeagent.main import run

    return run(args)


def _passthrough(module: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        main: Callable[[list[str]], int] = importlib.import_module(module).main
        return int(main(args.rest))

    return run


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="socksplice", description="Splice same-node pod TCP in the kernel.")
    p.add_argument("--version", action="version", version=f"socksplice {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    sub = p.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo", help="local pods, the agent, a SocketSplice and a plain-vs-spliced benchmark"
    )
    demo.add_argument("--json", action="store_true", help="print one JSON document")
    demo.add_argument("--quick", action="store_true", help="shorter runs")
    demo.add_argument(
        "--repeats", type=int, default=2, help="A/B repetitions per workload (default: %(default)s)"
    )
    demo.set_defaults(func=_demo)

    from socksplice.nodeagent.main import add_arguments

    agent = sub.add_parser("agent", help="run the node agent")
    add_arguments(agent)
    agent.set_defaults(func=_agent)

    for name, (module, help_text) in PASSTHROUGH.items():
        # prefix_chars="\0": no argument looks like an option here, so all reach the subcommand
        sp = sub.add_parser(name, help=help_text, add_help=False, prefix_chars="\0")
        sp.add_argument("rest", nargs="*")
        sp.set_defaults(func=_passthrough(module))
    return p


def _wants_help(args: argparse.Namespace) -> bool:
    rest: list[str] = getattr(args, "rest", [])
    return "-h" in rest or "--help" in rest


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename is not None:
        what = f"{exc.filename}: {exc.strerror}"
        if isinstance(exc, PermissionError) and os.geteuid() != 0:
            what += f" (euid {os.geteuid()}: {ROOT_HINT})"
        return what
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def main(argv: list[str] | None = None) -> int:
    """Run one command. Every failure ends in one line on stderr and a non-zero exit, never a
    traceback (``--verbose`` logs it): 1 for an error, 2 when the kernel lacks something."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO if args.command in LOUD else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    prefix = f"socksplice {args.command}"
    if args.command in NEEDS_ROOT and os.geteuid() != 0 and not _wants_help(args):
        print(f"{prefix}: not root (euid {os.geteuid()}): {ROOT_HINT}", file=sys.stderr)
        return 1
    try:
        return int(args.func(args))
    except SockspliceError as exc:
        print(f"{prefix}: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2 if isinstance(exc, KernelUnsupported) else 1
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted; cleaned up", file=sys.stderr)
        return 130
    except Exception as exc:  # the last boundary: one line, the traceback only with --verbose
        logging.getLogger("socksplice").debug("%s: failed", prefix, exc_info=True)
        print(f"{prefix}: {_one_line(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
