"""``socksplice conformance [--json] [--full] [--mode MODE ...] [--markdown FILE] [--scenario NAME ...]``.

Runs each scenario between local pods (root, BPF, netns needed) on plain TCP and in each
SocketSplice mode (default: all, Auto first; in Auto an evidence pass, then the measured one),
prints a table per mode (or one JSON document with ``--json``), optionally writes
docs/conformance.md. Exits 0 when the default mode (Auto) and DryRun show no difference and every
SpliceRelaxedReceive difference is a documented one (docs/hazards.md: a known property of the
kernel's tcp_bpf); 1 on any other difference or a scenario that failed to run (a regression); 2
when it cannot run. ``--strict`` exits 1 on any difference at all.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from pathlib import Path

from socksplice.bpf.loader import DatapathSettings
from socksplice.errors import SockspliceError
from socksplice.tools.conformance import rendering
from socksplice.tools.conformance.running import MODES, Outcome, run_suite
from socksplice.tools.conformance.scenarios import select

log = logging.getLogger(__name__)


def data_path_mode() -> dict[str, object]:
    """The data path settings the suite ran with (the defaults a node runs)."""
    d = DatapathSettings()
    return {"sockhashSize": d.sockhash_size, "pairsSize": d.pairs_size}


def on_sigterm(owner: int) -> None:
    """SIGTERM unwinds like Ctrl-C, so pods, programs and pins are removed. Only in ``owner``:
    a forked helper (pyroute2 forks to enter a netns) that is terminated must not run the
    owner's cleanup, or it would delete the pods being built."""

    def handler(signum: int, frame: object) -> None:
        if os.getpid() != owner:
            os._exit(128 + signum)
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="socksplice conformance", description=__doc__)
    p.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    p.add_argument("--full", action="store_true", help="also run the long scenarios")
    p.add_argument("--markdown", type=Path, metavar="FILE", help="write the result as Markdown to FILE")
    p.add_argument("--scenario", action="append", metavar="NAME", help="run only these (repeatable)")
    p.add_argument(
        "--mode",
        action="append",
        choices=[m.value for m in MODES],
        help="run only these SocketSplice modes (repeatable; default: all)",
    )
    p.add_argument("--strict", action="store_true", help="exit 1 on any difference, documented or not")
    a = p.parse_args(argv)
    on_sigterm(os.getpid())
    try:
        scenarios = select(a.full, a.scenario)
    except ValueError as exc:
        p.error(str(exc))

    def progress(o: Outcome) -> None:
        if not a.json:
            print(f"{o.mode.value} {o.scenario.name}: {rendering.verdict(o)}", file=sys.stderr, flush=True)

    modes = tuple(m for m in MODES if a.mode is None or m.value in a.mode)
    try:
        outcomes = run_suite(scenarios, modes, progress)
    except SockspliceError as exc:
        print(f"conformance: cannot run: {exc}", file=sys.stderr)
        return 2
    data_path = data_path_mode()
    if a.json:
        print(json.dumps(rendering.document(outcomes, data_path), indent=2, sort_keys=True))
    else:
        print(rendering.table(outcomes))
    if a.markdown:
        only = "".join(f" --mode {m.value}" for m in modes) if a.mode else ""
        cmd = "socksplice conformance" + (" --full" if a.full else "") + only + f" --markdown {a.markdown}"
        a.markdown.write_text(rendering.markdown(outcomes, cmd))
    if a.strict:
        return 0 if rendering.differences(outcomes) == 0 else 1
    return 0 if rendering.undocumented(outcomes) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
