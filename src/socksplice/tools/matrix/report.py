"""The matrix's results as JSON, a text table, and ``docs/kernels.md``.

One result per kernel: ``{"kernel", "release", "where", "ok", "seconds", "error", "checks"}``,
where ``checks`` is the document of :mod:`.checks` (absent when the kernel could not be booted,
then ``error`` says why). "Splicing safe" (for mode SpliceRelaxedReceive) is a verdict derived
from the checks: the doctor says acceleration is possible, no self-test hazard is present, and
the agent, the data-path tests and the conformance suite (when the project has one) pass.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

Result = dict[str, Any]
INTRO = (
    "Each kernel runs the same checks (`socksplice.tools.matrix.checks`): `socksplice doctor --json`, "
    "the agent in local mode until it attaches the demo pods, the data-path tests, and "
    "`socksplice conformance --json` when the project has it. Conformance passes when the "
    "default mode (Auto) and DryRun show no difference from plain TCP and SpliceRelaxedReceive none "
    "beyond the documented ones (docs/hazards.md). Debian's cloud kernels boot "
    "under qemu (TCG) from an image built from Debian packages; `running` is this machine's "
    "kernel, checked in place. See `src/socksplice/tools/matrix/__init__.py`."
)
STEPS = ("doctor", "agent", "datapath", "conformance")


def steps(result: Result) -> dict[str, Any]:
    checks = result.get("checks") or {}
    found: dict[str, Any] = checks.get("steps", {})
    return found


def doctor_report(result: Result) -> dict[str, Any]:
    report: dict[str, Any] = steps(result).get("doctor", {}).get("report") or {}
    return report


def hazards(result: Result) -> list[dict[str, Any]]:
    return [h for h in doctor_report(result).get("hazards", []) if h.get("present")]


def failures(result: Result) -> list[str]:
    """Why this kernel failed, one line each (empty when it passed)."""
    if result.get("error"):
        return [str(result["error"]).splitlines()[0]]
    return [f"{name}: {s.get('detail', '')}" for name, s in steps(result).items() if s.get("ok") is False]


def splicing_safe(result: Result) -> bool:
    return not failures(result) and bool(steps(result)) and not hazards(result)


def summarize(result: Result) -> Result:
    return {**result, "ok": not failures(result), "splicing_safe": splicing_safe(result)}


def render_json(results: Sequence[Result], command: str) -> str:
    return json.dumps({"command": command, "kernels": [summarize(r) for r in results]}, indent=2) + "\n"


def _mark(ok: object) -> str:
    return {True: "pass", False: "FAIL", None: "skipped"}.get(ok if isinstance(ok, bool) else None, "skipped")


def _cell(result: Result, step: str) -> str:
    if result.get("error"):
        return "not run"
    s = steps(result).get(step)
    if s is None:
        return "not run"
    return f"{_mark(s.get('ok'))} ({s.get('seconds', 0):.0f} s)"


def render_text(results: Sequence[Result]) -> str:
    lines = [f"{'kernel':<8} {'release':<30} " + " ".join(f"{s:<14}" for s in STEPS) + " safe"]
    for r in results:
        cells = " ".join(f"{_cell(r, s):<14}" for s in STEPS)
        lines.append(f"{r['kernel']:<8} {r.get('release', ''):<30} {cells} {splicing_safe(r)}")
        lines += [f"  {r['kernel']}: {line}" for line in failures(r)]
    return "\n".join(lines) + "\n"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in row) + " |" for row in rows]
    return out


def _doctor_rows(results: Sequence[Result]) -> list[list[str]]:
    names: list[str] = []
    for r in results:
        names += [c["name"] for c in doctor_report(r).get("checks", []) if c["name"] not in names]
    rows = []
    for name in names:
        row = [f"`{name}`"]
        for r in results:
            found = [c for c in doctor_report(r).get("checks", []) if c["name"] == name]
            row.append(
                ("OK" if found[0]["ok"] else f"{found[0]['severity']}: {found[0]['detail']}")
                if found
                else "—"
            )
        rows.append(row)
    return rows


def _test_rows(results: Sequence[Result]) -> list[list[str]]:
    names: list[str] = []
    for r in results:
        names += [t["name"] for t in steps(r).get("datapath", {}).get("tests", []) if t["name"] not in names]
    rows = []
    for name in names:
        row = [f"`{name.rsplit('::', 1)[-1]}`"]
        for r in results:
            found = [t for t in steps(r).get("datapath", {}).get("tests", []) if t["name"] == name]
            row.append(found[0]["outcome"] if found else "—")
        rows.append(row)
    return rows


def render_markdown(results: Sequence[Result], command: str, timings: str) -> str:
    cols = [f"{r['kernel']} (`{r.get('release', '?')}`)" for r in results]
    out = [
        "# Kernels socksplice was checked on",
        "",
        "Generated by one run of the committed code (do not edit by hand):",
        "",
        f"```sh\n{command}\n```",
        "",
        INTRO,
        "",
        "## Summary",
        "",
    ]
    summary_rows = [
        ["doctor: acceleration possible", *(_cell(r, "doctor") for r in results)],
        ["agent in local mode", *(_cell(r, "agent") for r in results)],
        ["data-path tests", *(_cell(r, "datapath") for r in results)],
        ["conformance", *(_cell(r, "conformance") for r in results)],
        [
            "hazards found by self-test",
            *(", ".join(h["name"] for h in hazards(r)) or "none" for r in results),
        ],
        [
            "**SpliceRelaxedReceive: no failure, no hazard**",
            *("yes" if splicing_safe(r) else "**no**" for r in results),
        ],
    ]
    out += _table(["", *cols], summary_rows)
    notes = [(r["kernel"], line) for r in results for line in failures(r)]
    conformance_notes = {
        r["kernel"]: steps(r)["conformance"]["detail"]
        for r in results
        if steps(r).get("conformance", {}).get("ok") is None and "conformance" in steps(r)
    }
    if notes or conformance_notes:
        out += [
            "",
            *[f"- {k}: {line}" for k, line in notes],
            *[f"- {k}: conformance {d}" for k, d in conformance_notes.items()],
        ]
    out += ["", "## Doctor verdicts", "", *_table(["check", *cols], _doctor_rows(results))]
    hz = [(r["kernel"], h) for r in results for h in doctor_report(r).get("hazards", [])]
    out += ["", "## Hazards found by self-test", ""]
    if hz:
        out += _table(
            ["kernel", "hazard", "present", "detail"],
            [[k, h["name"], str(h["present"]), str(h.get("detail", ""))] for k, h in hz],
        )
    else:
        out += ["The doctor reported no self-test hazards on any kernel (its JSON `hazards` list was empty)."]
    command_used = next((s["datapath"].get("command") for r in results if "datapath" in (s := steps(r))), "")
    out += [
        "",
        "## Data-path tests",
        "",
        f"`{command_used}`",
        "",
        *_table(["test", *cols], _test_rows(results)),
    ]
    out += ["", "## Timings", "", timings, ""]
    return "\n".join(out)
