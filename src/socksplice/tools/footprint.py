"""``socksplice footprint``: what the node agent costs the node it runs on.

Builds the default local pods in a directory of its own, applies the demo's SocketSplice, starts
``socksplice agent --local DIR`` as a new process (exactly what a user runs), and reports:

- ``start_to_attach_s``: from the agent's exec to its sockops program attached to the first
  selected pod's cgroup (read from the kernel with BPF_PROG_QUERY);
- ``rss_mb`` / ``hwm_mb``: the agent's resident memory (``VmRSS``) after it settled, and its
  peak (``VmHWM``); a child the agent runs to compile the programs is counted in neither;
- ``idle_cpu_pct``: user + system CPU of the agent over ``--seconds`` with nothing changing, as a
  percentage of one core.

The agent, its pods and its pins are removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from socksplice.errors import SockspliceError
from socksplice.kernel import bpfsys
from socksplice.local import state
from socksplice.tools.demo.running import SAMPLE

TICK_HZ = os.sysconf("SC_CLK_TCK")
SETTLE_S = 5.0
"""Wait after the first attach before reading memory and starting the idle window."""


@dataclass(frozen=True)
class Footprint:
    start_to_attach_s: float
    rss_mb: float
    hwm_mb: float
    idle_cpu_pct: float
    idle_seconds: float


def _cli() -> list[str]:
    return [sys.executable, "-m", "socksplice.cli"]


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _cpu_ticks(pid: int, children: bool = False) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # after the comm: state is fields[0]; utime, stime, cutime, cstime are stat fields 14-17
    own = int(fields[11]) + int(fields[12])
    return own + (int(fields[13]) + int(fields[14]) if children else 0)


def _attached(cgroups: list[Path]) -> bool:
    for cg in cgroups:
        fd = os.open(cg, os.O_RDONLY | os.O_DIRECTORY)
        try:
            if bpfsys.prog_query(fd, bpfsys.BPF_CGROUP_SOCK_OPS):
                return True
        finally:
            os.close(fd)
    return False


def measure(seconds: float, timeout: float = 60.0) -> Footprint:
    base = Path("/run/socksplice/local")
    base.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="footprint-", dir=base))
    pin_name = f"socksplice-footprint-{os.getpid()}"
    agent: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run([*_cli(), "local", "up", "--dir", str(directory)], check=True, capture_output=True)
        subprocess.run(
            [*_cli(), "local", "apply", "-f", str(SAMPLE), "--dir", str(directory)],
            check=True,
            capture_output=True,
        )
        cgroups = [p.cgroup for p in state.load(directory).pods]
        log = (directory / "agent.log").open("wb")
        start = time.monotonic()
        agent = subprocess.Popen(
            [*_cli(), "agent", "--local", str(directory), "--pin-name", pin_name, "--metrics-port", "-1"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        while not _attached(cgroups):
            if agent.poll() is not None or time.monotonic() - start > timeout:
                raise SockspliceError(f"agent did not attach within {timeout:.0f} s (log: {log.name})")
            time.sleep(0.01)
        attach_s = time.monotonic() - start
        time.sleep(SETTLE_S)
        rss = _status_kb(agent.pid, "VmRSS")
        hwm = _status_kb(agent.pid, "VmHWM")
        t0, c0 = time.monotonic(), _cpu_ticks(agent.pid)
        time.sleep(seconds)
        t1, c1 = time.monotonic(), _cpu_ticks(agent.pid)
        return Footprint(
            start_to_attach_s=round(attach_s, 3),
            rss_mb=round(rss / 1024, 1),
            hwm_mb=round(hwm / 1024, 1),
            idle_cpu_pct=round(100.0 * (c1 - c0) / TICK_HZ / (t1 - t0), 2),
            idle_seconds=round(t1 - t0, 1),
        )
    finally:
        if agent is not None and agent.poll() is None:
            agent.send_signal(signal.SIGTERM)
            try:
                agent.wait(timeout=20)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait()
        subprocess.run([*_cli(), "local", "down", "--dir", str(directory)], capture_output=True)
        _unpin(pin_name)
        shutil.rmtree(directory, ignore_errors=True)


def _unpin(pin_name: str) -> None:
    root = Path("/sys/fs/bpf") / pin_name
    if root.exists():
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="socksplice footprint", description=__doc__)
    p.add_argument("--seconds", type=float, default=60.0, help="idle window (default: %(default)s)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    fp = measure(args.seconds)
    if args.json:
        print(json.dumps(asdict(fp), indent=2))
    else:
        print(
            f"agent: start to first attach {fp.start_to_attach_s:.2f} s, RSS {fp.rss_mb:.1f} MB "
            f"(peak {fp.hwm_mb:.1f} MB), idle CPU {fp.idle_cpu_pct:.2f} % of a core "
            f"over {fp.idle_seconds:.0f} s"
        )
    return 0
