"""What runs on each kernel of the matrix: the project's own commands and tests, as subprocesses.

``python -m socksplice.tools.matrix.checks --out FILE [--full]`` runs, in the project directory:

1. ``socksplice doctor --json``: verdicts per check and the self-test hazards;
2. the agent in local mode: ``local up``, ``agent --local``, ``local apply`` of the demo
   SocketSplice, until ``status.json`` lists both demo pods attached, then SIGTERM and ``local down``;
3. the data-path tests, ``pytest -m kernel tests/kernel/test_datapath.py`` (``--full``: every
   kernel test except the matrix's own), with ``CI=true`` so a missing capability fails, not skips;
4. ``socksplice conformance --json`` (``--full`` passed on when asked), skipped with a note when
   this project has no such command.

Each step is bounded in time and recorded as ``{"ok", "seconds", "detail", ...}``; ``ok`` is
``null`` for a skipped step. The same module checks the running kernel in place and every kernel
under qemu (:mod:`.guest`), so all columns come from one code path.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

Step = dict[str, Any]
CLI = [sys.executable, "-m", "socksplice.cli"]
STEP_TIMEOUT = 900.0
AGENT_READY_TIMEOUT = 120.0
SELF_TEST = "tests/kernel/test_kernel_matrix.py"
"""The matrix's own test, never run inside the matrix."""
AGENT_ARGS = ("--metrics-port", "-1", "--poll-interval", "0.5", "--status-interval", "0.5")
DEMO_SPLICE = Path("src/socksplice/tools/demo/socketsplice.yaml")


def _proc(cmd: list[str], timeout: float = STEP_TIMEOUT) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            cmd, capture_output=True, text=True, errors="replace", timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        return subprocess.CompletedProcess(cmd, -1, out, f"timed out after {timeout:.0f} s")


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


DOCTOR_MODULE = [
    sys.executable,
    "-c",
    "import sys; from socksplice.doctor import main; sys.exit(main(['--json']))",
]


def doctor() -> Step:
    """``socksplice doctor --json``; through the doctor's own ``main`` when the CLI rejects ``--json``."""
    done = _proc([*CLI, "doctor", "--json"])
    via = "socksplice doctor --json"
    if done.returncode == 2 and "unrecognized arguments" in done.stderr:
        done, via = _proc(DOCTOR_MODULE), "socksplice.doctor.main(['--json']) (the CLI rejected --json)"
    try:
        report = json.loads(done.stdout)
    except ValueError:
        return {
            "ok": False,
            "detail": f"exit {done.returncode}: {_tail(done.stderr)}",
            "report": None,
            "via": via,
        }
    failed = [c["name"] for c in report.get("checks", []) if not c["ok"] and c["severity"] == "fatal"]
    detail = "acceleration possible" if report.get("ok") else f"fatal: {', '.join(failed)}"
    return {"ok": bool(report.get("ok")), "detail": detail, "report": report, "via": via}


def agent(project: Path) -> Step:
    """The agent in local mode on the embedded demo cluster, until both demo pods are attached."""
    with tempfile.TemporaryDirectory(prefix="socksplice-matrix-agent-") as tmp:
        local, pins = Path(tmp, "local"), Path(tmp, "bpffs")
        up = _proc([*CLI, "local", "up", "--dir", str(local)])
        if up.returncode != 0:
            return {"ok": False, "detail": f"local up: exit {up.returncode}: {_tail(up.stderr)}"}
        proc = None
        try:
            proc = subprocess.Popen(
                [
                    *CLI,
                    "agent",
                    "--local",
                    str(local),
                    "--state-dir",
                    f"{tmp}/state",
                    "--bpffs",
                    str(pins),
                    *AGENT_ARGS,
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
            )
            applied = _proc([*CLI, "local", "apply", "-f", str(project / DEMO_SPLICE), "--dir", str(local)])
            if applied.returncode != 0:
                return {"ok": False, "detail": f"local apply: {_tail(applied.stderr)}"}
            attached = _wait_attached(local / "status.json", proc)
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=60)
            if attached is None:
                return {"ok": False, "detail": f"no pod attached; agent exit {proc.returncode}: {_tail(out)}"}
            ok = proc.returncode == 0
            return {"ok": ok, "detail": f"attached {', '.join(attached)}; agent exit {proc.returncode}"}
        finally:
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
            _proc([*CLI, "local", "down", "--dir", str(local)])
            subprocess.run(["umount", "-l", str(pins)], capture_output=True, check=False)


def _wait_attached(status: Path, proc: subprocess.Popen[str]) -> list[str] | None:
    deadline = time.monotonic() + AGENT_READY_TIMEOUT
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            pods = json.loads(status.read_text()).get("pods", [])
        except (OSError, ValueError):
            pods = []
        if len(pods) >= 2:
            return [str(p) for p in pods]
        time.sleep(0.5)
    return None


FAST = "selected_pair or unselected_side or dual-stack or dnat or loopback or epoll_endpoint"
"""The data-path tests of the fast subset: selection, a dual-stack listener, DNAT, netns collisions,
and Auto mode's promotion of an epoll endpoint (or, where the kernel cannot observe, its DryRun
behaviour with the reason)."""


def pytest_step(full: bool) -> Step:
    with tempfile.TemporaryDirectory(prefix="socksplice-matrix-pytest-") as tmp:
        junit = Path(tmp, "junit.xml")
        # The fast subset keeps bcc compiles few: each one takes 15-30 s under TCG.
        target = (
            ["tests/kernel", f"--ignore={SELF_TEST}"]
            if full
            else ["tests/kernel/test_datapath.py", "tests/kernel/test_auto.py", "-k", FAST]
        )
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "kernel"]
        done = _proc([*cmd, f"--junitxml={junit}", f"--basetemp={tmp}/t", *target], timeout=3 * STEP_TIMEOUT)
        tests = parse_junit(junit) if junit.exists() else []
    failed = [t for t in tests if t["outcome"] in ("failed", "error")]
    passed = sum(t["outcome"] == "passed" for t in tests)
    ok = done.returncode == 0 and bool(tests)
    detail = f"{passed} passed, {len(failed)} failed" + (
        "" if tests else f": {_tail(done.stdout + done.stderr)}"
    )
    return {"ok": ok, "detail": detail, "tests": tests, "command": " ".join(["pytest", *cmd[3:], *target])}


def parse_junit(path: Path) -> list[dict[str, str]]:
    """One ``{"name", "outcome", "message"}`` per test case of a JUnit XML file."""
    out = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            el = case.find(tag)
            if el is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                message = (el.get("message") or "")[:500]
                break
        out.append(
            {
                "name": f"{case.get('classname', '')}::{case.get('name', '')}",
                "outcome": outcome,
                "message": message,
            }
        )
    return out


def conformance(full: bool) -> Step:
    help_ = _proc([*CLI, "conformance", "--help"], timeout=60)
    if help_.returncode != 0:
        return {"ok": None, "detail": "skipped: this project has no `socksplice conformance` command"}
    extra = ["--full"] if full and "--full" in help_.stdout else []
    done = _proc([*CLI, "conformance", "--json", *extra], timeout=3 * STEP_TIMEOUT)
    try:
        report: Any = json.loads(done.stdout)
    except ValueError:
        report = None
    # exit 0: none in Auto or DryRun, none beyond the documented tcp_bpf ones in SpliceRelaxedReceive
    # (docs/hazards.md); 1: a new one
    detail = f"exit {done.returncode}" + ("" if report is not None else f": {_tail(done.stderr)}")
    if isinstance(report, dict):
        differing = [
            f"{m.get('mode')}/{s['name']}" + ("" if s.get("documented") else " (NEW)")
            for m in report.get("modes", [])
            for s in m.get("scenarios", [])
            if not s.get("same")
        ]
        detail += f"; {len(differing)} difference(s): {', '.join(differing) or 'none'}"
    return {"ok": done.returncode == 0, "detail": detail, "report": report}


def timed(fn: Callable[[], Step]) -> Step:
    start = time.monotonic()
    try:
        step = fn()
    except Exception as exc:  # a crashing step is a result for this kernel, not the end of the run
        step = {"ok": False, "detail": f"crashed: {type(exc).__name__}: {exc}"}
    step["seconds"] = round(time.monotonic() - start, 1)
    return step


def run_all(project: Path, full: bool) -> dict[str, Any]:
    os.chdir(project)
    steps = {
        "doctor": timed(doctor),
        "agent": timed(lambda: agent(project)),
        "datapath": timed(lambda: pytest_step(full)),
        "conformance": timed(lambda: conformance(full)),
    }
    return {"release": platform.release(), "full": full, "steps": steps}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m socksplice.tools.matrix.checks", description=__doc__)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--full", action="store_true")
    p.add_argument("--project", type=Path, default=Path.cwd())
    args = p.parse_args(argv)
    doc = run_all(args.project.resolve(), args.full)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    return 0 if all(s["ok"] is not False for s in doc["steps"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
