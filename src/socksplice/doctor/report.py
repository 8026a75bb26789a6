"""Render doctor results for people (text) and machines (JSON); ``socksplice doctor`` itself."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict

from socksplice.doctor.checks import Check, fatal, hazards, run_checks

Hazard = Mapping[str, object]


def verdict(check: Check) -> str:
    """``OK``, ``FAIL`` (fatal), ``WARN`` or ``INFO`` (a failed check that does not block)."""
    if check.ok:
        return "OK"
    return {"fatal": "FAIL", "warn": "WARN"}.get(check.severity, "INFO")


def summary(checks: Sequence[Check]) -> str:
    failed = fatal(checks)
    if failed:
        return f"acceleration: NOT possible ({len(failed)} fatal)"
    return "acceleration: possible"


def render_text(checks: Sequence[Check]) -> str:
    """One line per check, then the summary line."""
    width = max((len(c.name) for c in checks), default=0)
    lines = []
    for c in checks:
        line = f"{verdict(c):<4} {c.name:<{width}}  {c.detail}"
        if c.fix:
            line += f" — fix: {c.fix}"
        lines.append(line.rstrip())
    lines.append(summary(checks))
    return "\n".join(lines) + "\n"


def render_json(checks: Sequence[Check], hazard_list: Sequence[Hazard] = ()) -> str:
    """``{"ok", "checks", "hazards", "kernel"}``; ``ok`` is false when any fatal check failed."""
    doc = {
        "ok": not fatal(checks),
        "checks": [asdict(c) for c in checks],
        "hazards": [dict(h) for h in hazard_list],
        "kernel": os.uname().release,
    }
    return json.dumps(doc, indent=2) + "\n"


def exit_code(checks: Sequence[Check]) -> int:
    """1 if any fatal check failed, else 0."""
    return 1 if fatal(checks) else 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="socksplice doctor",
        description="Check whether this node can run socksplice's data path, and say how to fix it if not.",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--no-load", action="store_true", help="skip compiling and loading the full data path")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    checks = run_checks(include_load=not args.no_load)
    if args.json:
        print(render_json(checks, hazards()), end="")
    else:
        print(render_text(checks), end="")
    return exit_code(checks)
