"""Real programs from Debian packages (``socksplice.tools.conformance.programs``) between two local pods:
plain TCP, then spliced (SpliceRelaxedReceive). Each run's traces must be those of a correct run,
and equal: the programs cannot tell the splice from TCP. The parsers of the programs' output are
tested in tests/unit/test_conformance_programs.py (no kernel needed)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from socksplice.local import LocalTopology, default_cluster
from socksplice.tools.conformance.programs import PROGRAMS, expected
from tests.conftest import require_kernel
from tests.kernel.splicing import SpliceEnv, private_bpffs, splice_env, splice_yaml

PORT = 9400
CLIENT_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def programs_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpliceEnv]:
    """One topology and agent for every program (loading the data path once saves time)."""
    require_kernel()
    tmp = tmp_path_factory.mktemp("programs")
    topology = LocalTopology(default_cluster(), state_dir=tmp / "state").up()
    try:
        with private_bpffs(tmp / "bpffs") as pin_root, splice_env(topology, pin_root, tmp / "agent") as env:
            yield env
    finally:
        topology.down()


def require_binaries(program: str) -> None:
    missing = [b for b in PROGRAMS[program].binaries if shutil.which(b) is None]
    if missing:
        message = f"not installed: {', '.join(missing)} (scripts/install.sh installs them)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message} (CI=true: not skipping)", pytrace=False)
        pytest.skip(message)


def _argv(program: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "socksplice.tools.conformance.programs", program, *args]


def _last_json(out: bytes) -> Any:
    return json.loads(out.decode().strip().splitlines()[-1])


def run_program(env: SpliceEnv, program: str) -> dict[str, Any]:
    """Server in demo/server (a [::] listener), client in demo/client to its IPv4 address."""
    server, client = env.pod("server"), env.pod("client")
    srv = server.popen(
        _argv(program, "server", "--port", str(PORT), "--bind", "::"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert srv.stdout is not None and srv.stderr is not None
        line = srv.stdout.readline()
        assert line.strip() == b"READY", (line, srv.stderr.read().decode(errors="replace"))
        cli = client.popen(
            _argv(program, "client", "--host", str(server.ipv4), "--port", str(PORT)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            out, err = cli.communicate(timeout=CLIENT_TIMEOUT)
        finally:
            if cli.poll() is None:
                cli.kill()
                cli.wait()
        assert cli.returncode == 0, err.decode(errors="replace")
        srv.send_signal(signal.SIGTERM)
        sout, serr = srv.communicate(timeout=30)
        assert srv.returncode == 0, serr.decode(errors="replace")
        return {"client": _last_json(out), "server": _last_json(sout)}
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait()


def settled_map(env: SpliceEnv, timeout: float = 10.0) -> int:
    """Sockets left in the SOCKHASH once the programs are gone (0 within ``timeout``)."""
    deadline = time.monotonic() + timeout
    while (n := env.datapath.spliced_sockets()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return n


@pytest.mark.kernel
@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_real_program_sees_no_difference_when_spliced(programs_env: SpliceEnv, program: str) -> None:
    require_binaries(program)
    env = programs_env
    want = expected(program)
    plain = run_program(env, program)
    assert plain == want, "the program failed on plain TCP"
    env.apply(splice_yaml())
    try:
        before = env.totals()["bytes_redirected"]
        spliced = run_program(env, program)
        redirected = env.totals()["bytes_redirected"] - before
    finally:
        env.delete()
    assert redirected > 0, "the spliced run was not spliced"
    assert spliced == plain
    assert settled_map(env) == 0
