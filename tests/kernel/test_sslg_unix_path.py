"""``sslg --unix-path`` between two pods: a client in one network namespace reaches a server in
another through an AF_UNIX path socket (the bench's ``unix2`` path). Path sockets are found
through the file system, which the pods share, not through the network namespace."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from socksplice.local.topology import LocalTopology
from socksplice.tools.workloads import LoadgenError, Server, run_crr, run_rr, run_stream
from socksplice.tools.workloads.loadgen import ENV_LOADGEN

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def fresh_loadgen(monkeypatch: pytest.MonkeyPatch) -> None:
    """This checkout's sslg (an installed one may predate --unix-path)."""
    if os.environ.get(ENV_LOADGEN):
        return
    if shutil.which("make") is None or shutil.which(os.environ.get("CC", "cc")) is None:
        pytest.skip("make and a C compiler are needed to build loadgen/")
    proc = subprocess.run(["make", "-C", str(ROOT / "loadgen")], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"make -C loadgen failed:\n{proc.stdout}\n{proc.stderr}"
    monkeypatch.setenv(ENV_LOADGEN, str(ROOT / "loadgen" / "bin" / "sslg"))


def test_rr_and_crr_between_two_pods(topology: LocalTopology, tmp_path: Path) -> None:
    client, server = topology.pod("client", "demo"), topology.pod("server", "demo")
    sock = tmp_path / "rr.sock"
    with Server(server, mode="rr", unix_path=sock) as srv:  # type: ignore[arg-type]
        assert srv.port == 0 and sock.is_socket()
        rr = run_rr(client, "", 0, 64, 1024, 200, unix_path=sock)  # type: ignore[arg-type]
        crr = run_crr(client, "", 0, 0.2, close="server", unix_path=sock)  # type: ignore[arg-type]
    assert rr.count == 200 and rr.resp_size == 1024
    assert crr.connections >= 1
    assert srv.result is not None and srv.result.errors == 0 and srv.result.transport == "unix2"
    assert srv.result.connections == 1 + crr.connections + 1  # rr, crr's probe, crr's connections
    assert srv.result.bytes_out == 1024 * (200 + 10) + 64 * crr.connections  # rounds + warm-up, replies
    assert not sock.exists()  # the server removes its socket when it stops


def test_non_blocking_stream_between_two_pods(topology: LocalTopology, tmp_path: Path) -> None:
    client, server = topology.pod("client", "demo"), topology.pod("server", "demo")
    sock = tmp_path / "sink.sock"
    with Server(server, mode="sink", nonblock=True, unix_path=sock) as srv:  # type: ignore[arg-type]
        st = run_stream(client, "", 0, 128 * 1024, 0.2, nonblock=True, unix_path=sock)  # type: ignore[arg-type]
    assert st.bytes > 0 and st.bytes == st.writes * 128 * 1024
    assert srv.result is not None and srv.result.bytes_in == st.bytes and srv.result.io == "nonblocking"


def test_a_live_socket_is_not_taken_over_and_a_stale_one_is(topology: LocalTopology, tmp_path: Path) -> None:
    server = topology.pod("server", "demo")
    sock = tmp_path / "rr.sock"
    with (
        Server(server, mode="rr", unix_path=sock),  # type: ignore[arg-type]
        pytest.raises(LoadgenError, match="another server is listening"),
    ):
        Server(server, mode="rr", unix_path=sock).start()  # type: ignore[arg-type]
    # A socket nobody listens on (a server that was killed) is replaced.
    stale = subprocess.run(
        ["python3", "-c", f"import socket; socket.socket(socket.AF_UNIX).bind({str(sock)!r})"], check=True
    )
    assert stale.returncode == 0 and sock.is_socket()
    with Server(server, mode="rr", unix_path=sock) as srv:  # type: ignore[arg-type]
        run_rr(server, "", 0, 64, 64, 10, unix_path=sock)  # type: ignore[arg-type]
    assert srv.result is not None and srv.result.connections == 1
