"""The ``socksplice`` command: one entry point, subcommands imported on use."""

from __future__ import annotations

import argparse
import logging
import sys

from socksplice import __version__
from socksplice.errors import SockspliceError


def _demo(args: argparse.Namespace) -> int:
    from socksplice.demo.running import run_demo
    from socksplice.demo.table import render_json, render_text

    results = run_demo(quick=args.quick, repeats=args.repeats)
    print(render_json(results) if args.json else render_text(results))
    return 0


def _agent(args: argparse.Namespace) -> int:
    from socksplice.nodeagent.main import run

    return run(args)


def _doctor(args: argparse.Namespace) -> int:
    from socksplice.doctor.report import main

    return main(args.rest)


def _bench(args: argparse.Namespace) -> int:
    from socksplice.bench.main import main

    return main(args.rest)


def _conformance(args: argparse.Namespace) -> int:
    from socksplice.conformance.command import main

    return main(args.rest)


def _drain(args: argparse.Namespace) -> int:
    from socksplice.nodeagent.draining import main

    return main(args.rest)


def _kernel_matrix(args: argparse.Namespace) -> int:
    from socksplice.matrix.main import main

    return main(args.rest)


def _operator(args: argparse.Namespace) -> int:
    from socksplice.operator.main import main

    return main(args.rest)


def _local(args: argparse.Namespace) -> int:
    from socksplice.local.commands import main

    return main(args.rest)


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

    bench = sub.add_parser(
        "bench",
        help="plain TCP vs spliced vs AF_UNIX, interleaved, with repeats",
        add_help=False,
        prefix_chars="\0",
    )
    bench.add_argument("rest", nargs="*")
    bench.set_defaults(func=_bench)

    conf = sub.add_parser(
        "conformance",
        help="plain vs spliced: does the application see any difference?",
        add_help=False,
        prefix_chars="\0",
    )
    conf.add_argument("rest", nargs="*")
    conf.set_defaults(func=_conformance)

    drain = sub.add_parser(
        "agent-drain",
        help="uninstall from this node: detach, wait for spliced sockets, unpin",
        add_help=False,
        prefix_chars="\0",
    )
    drain.add_argument("rest", nargs="*")
    drain.set_defaults(func=_drain)

    from socksplice.nodeagent.main import add_arguments

    agent = sub.add_parser("agent", help="run the node agent")
    add_arguments(agent)
    agent.set_defaults(func=_agent)

    doctor = sub.add_parser(
        "doctor", help="can this node splice? one verdict per capability", add_help=False, prefix_chars="\0"
    )
    doctor.add_argument("rest", nargs="*")
    doctor.set_defaults(func=_doctor)

    op = sub.add_parser(
        "operator",
        help="run the kopf operator (SocketSplice status, SpliceBenchmark runs)",
        add_help=False,
        prefix_chars="\0",
    )
    op.add_argument("rest", nargs="*")
    op.set_defaults(func=_operator)

    km = sub.add_parser(
        "kernel-matrix",
        help="run socksplice's checks on Debian 6.1/6.12 kernels under qemu and on this one",
        add_help=False,
        prefix_chars="\0",
    )
    km.add_argument("rest", nargs="*")
    km.set_defaults(func=_kernel_matrix)

    local = sub.add_parser(
        "local", help="local mode: netns pods on this machine", add_help=False, prefix_chars="\0"
    )
    local.add_argument("rest", nargs="*")
    local.set_defaults(func=_local)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet = logging.WARNING if args.command not in ("agent", "operator") else logging.INFO
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else quiet,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except SockspliceError as exc:
        print(f"socksplice {args.command}: {exc}", file=sys.stderr)
        return 2 if exc.__class__.__name__ == "KernelUnsupported" else 1
    except KeyboardInterrupt:
        print(f"socksplice {args.command}: interrupted; cleaned up", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

__all__ = ["build_parser", "main"]
