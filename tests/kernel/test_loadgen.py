"""sslg on loopback through the Python wrappers: every mode works and reports sane counts.

Correctness only, no timing assertions. Needs gcc/make (builds loadgen/ if needed) and
loopback IPv4 + IPv6; no root.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from socksplice.tools.workloads import (
    HostRunner,
    LoadgenError,
    Server,
    run_check,
    run_crr,
    run_echo,
    run_rr,
    run_stream,
)
from socksplice.tools.workloads.loadgen import ENV_LOADGEN, loadgen_path

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).resolve().parents[2]
HOST = HostRunner()
KIB = 1024
MIB = 1024 * KIB


@pytest.fixture(scope="module", autouse=True)
def built_loadgen() -> Iterator[Path]:
    if os.environ.get(ENV_LOADGEN):
        yield Path(os.environ[ENV_LOADGEN])
        return
    if shutil.which("make") is None or shutil.which(os.environ.get("CC", "cc")) is None:
        pytest.skip("make and a C compiler are needed to build loadgen/")
    proc = subprocess.run(["make", "-C", str(ROOT / "loadgen")], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"make -C loadgen failed:\n{proc.stdout}\n{proc.stderr}"
    binary = ROOT / "loadgen" / "bin" / "sslg"
    assert binary.is_file()
    yield binary


@pytest.fixture(scope="module")
def ipv6_loopback() -> None:
    inet6 = Path("/proc/net/if_inet6")
    if not inet6.exists() or not inet6.read_text().strip():
        pytest.skip("no IPv6 on this host")


def test_echo_16k() -> None:
    with Server(HOST, 0, "echo") as srv:
        r = run_echo(HOST, HOST.ipv4, srv.port, 16 * KIB, 200)
    assert r.workload == "echo" and r.size == 16 * KIB and r.count == 200
    assert 0 < r.p50_us <= r.p90_us <= r.p99_us <= r.p999_us <= r.max_us
    assert r.mismatched_blocks == 0
    assert srv.result is not None
    assert srv.result.connections == 1
    # 10 warm-up rounds plus 200 measured ones, each echoed in full.
    assert srv.result.bytes_in == srv.result.bytes_out == 210 * 16 * KIB


def test_echo_2m_with_samples() -> None:
    with Server(HOST, 0, "echo") as srv:
        r = run_echo(HOST, HOST.ipv4, srv.port, 2 * MIB, 10, warmup=2, samples=True)
    assert r.size == 2 * MIB and r.count == 10 and len(r.samples_us) == 10
    assert r.p50_us > 0 and r.mismatched_blocks == 0
    assert srv.result is not None and srv.result.bytes_out == 12 * 2 * MIB


def test_rr_64_64() -> None:
    with Server(HOST, 0, "rr") as srv:
        r = run_rr(HOST, HOST.ipv4, srv.port, 64, 64, 1000)
    assert r.workload == "rr" and r.size == 64 and r.resp_size == 64 and r.count == 1000
    assert r.p50_us > 0
    assert srv.result is not None and srv.result.errors == 0
    assert srv.result.bytes_in == srv.result.bytes_out == 1010 * 64


def test_stream_16k() -> None:
    with Server(HOST, 0, "sink") as srv:
        r = run_stream(HOST, HOST.ipv4, srv.port, 16 * KIB, 1.0)
    assert r.write_size == 16 * KIB and r.bytes > 0 and r.bytes % (16 * KIB) == 0
    assert r.elapsed_s >= 1.0 and r.gbit_per_s > 0
    # Delivered means delivered: the sink read every byte before it closed.
    assert srv.result is not None and srv.result.bytes_in == r.bytes


@pytest.mark.parametrize("close", ["client", "server"])
def test_crr(close: str) -> None:
    with Server(HOST, 0, "rr") as srv:
        r = run_crr(HOST, HOST.ipv4, srv.port, 1.0, close="server" if close == "server" else "client")
    assert r.workload == "crr" and r.close == close
    assert r.connections > 0 and r.connections_per_s > 0 and r.p50_us > 0
    assert srv.result is not None and srv.result.errors == 0
    # One probe connection resolves the address before the timed loop.
    assert srv.result.connections == r.connections + 1


def test_check_32m() -> None:
    with Server(HOST, 0, "check") as srv:
        r = run_check(HOST, HOST.ipv4, srv.port, 32 * MIB, seed=42)
    assert r.ok, r
    assert r.bytes == r.bytes_received == 32 * MIB
    assert r.mismatches == 0 and r.first_mismatch_offset is None
    assert r.writes > 1 and r.reads > 1


def test_ipv6_client_dual_stack_server(ipv6_loopback: None) -> None:
    with Server(HOST, 0, "echo") as srv:
        e = run_echo(HOST, HOST.ipv6, srv.port, 16 * KIB, 50)
        c = run_check(HOST, HOST.ipv6, srv.port, 4 * MIB, seed=6)
    assert e.p50_us > 0 and c.ok


def test_ipv4_client_on_v6_any_server(ipv6_loopback: None) -> None:
    # The default listener is AF_INET6 [::] with v6only 0: the IPv4 client arrives v4-mapped.
    with Server(HOST, 0, "rr") as srv:
        r = run_rr(HOST, "127.0.0.1", srv.port, 64, 64, 100)
        c = run_check(HOST, "127.0.0.1", srv.port, 0)
    assert r.count == 100 and r.p50_us > 0
    assert c.ok and c.bytes == 0
    assert srv.result is not None and srv.result.connections == 2


def test_v6only_server_refuses_ipv4(ipv6_loopback: None) -> None:
    with Server(HOST, 0, "echo", v6only=True) as srv:
        with pytest.raises(LoadgenError, match="cannot connect"):
            run_echo(HOST, "127.0.0.1", srv.port, 64, 1, timeout=30)
        assert run_echo(HOST, "::1", srv.port, 64, 1).count == 1


def test_ipv4_only_server() -> None:
    with Server(HOST, 0, "echo", bind="0.0.0.0") as srv:
        r = run_echo(HOST, "127.0.0.1", srv.port, 1024, 20)
    assert r.count == 20


def test_errors_name_command_and_stderr() -> None:
    with Server(HOST, 0, "echo") as srv, pytest.raises(LoadgenError) as info:
        run_rr(HOST, HOST.ipv4, srv.port, 4, 64, 1)
    err = info.value
    assert err.returncode == 1 and "--req" in err.stderr
    assert "command:" in str(err) and "sslg" in str(err)


def test_server_ready_timeout_names_stderr() -> None:
    with Server(HOST, 0, "echo") as first, pytest.raises(LoadgenError, match="Address already in use"):
        Server(HOST, first.port, "echo", bind="::").start()


def _socket_flags(pid: int) -> list[int]:
    """The open-file flags of every socket the process holds (from /proc/<pid>/fdinfo)."""
    flags = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if not os.readlink(fd).startswith("socket:"):
                continue
            info = Path(f"/proc/{pid}/fdinfo/{fd.name}").read_text()
        except FileNotFoundError:
            continue
        flags.append(int(next(ln.split()[1] for ln in info.splitlines() if ln.startswith("flags:")), 8))
    return flags


@pytest.mark.parametrize("nonblock", [False, True])
def test_nonblock_server_sockets_are_o_nonblock(nonblock: bool) -> None:
    with (
        Server(HOST, 0, "echo", nonblock=nonblock) as srv,
        socket.create_connection(("127.0.0.1", srv.port)) as c,
    ):
        c.sendall(b"x")
        assert c.recv(1) == b"x"  # accepted and served: the connection's socket is open
        accepted = [f for f in _socket_flags(srv.pid) if f & os.O_NONBLOCK]
        # The listener is blocking in both modes (it waits in poll()); accepted sockets follow --nonblock.
        assert len(accepted) == (1 if nonblock else 0), _socket_flags(srv.pid)


def test_nonblock_every_mode() -> None:
    with Server(HOST, 0, "echo", nonblock=True) as echo:
        small = run_echo(HOST, HOST.ipv4, echo.port, 16 * KIB, 200, nonblock=True)
        large = run_echo(HOST, HOST.ipv4, echo.port, 2 * MIB, 5, warmup=1, nonblock=True)
        chk = run_check(HOST, HOST.ipv4, echo.port, 16 * MIB, seed=3, nonblock=True)
    assert small.count == 200 and small.mismatched_blocks == 0 and large.mismatched_blocks == 0
    assert chk.ok, chk
    assert echo.result is not None and echo.result.errors == 0 and echo.result.connections == 3
    with Server(HOST, 0, "rr", nonblock=True) as rr:
        r = run_rr(HOST, HOST.ipv4, rr.port, 64, 1024, 1000, nonblock=True)
    assert r.count == 1000 and r.resp_size == 1024
    assert rr.result is not None and rr.result.bytes_in == 1010 * 64 and rr.result.bytes_out == 1010 * 1024
    with Server(HOST, 0, "sink", nonblock=True) as sink:
        st = run_stream(HOST, HOST.ipv4, sink.port, 128 * KIB, 0.3, nonblock=True)
    assert st.bytes > 0 and sink.result is not None and sink.result.bytes_in == st.bytes
    # Without splicing no receive after poll() said readable finds nothing.
    assert small.spurious_eagain == r.spurious_eagain == st.spurious_eagain == 0


def test_nonblock_says_so_in_the_json(built_loadgen: Path) -> None:
    sslg = str(loadgen_path())
    out = subprocess.run(
        [sslg, "rr", "--unix", "--req", "64", "--resp", "64", "--count", "10", "--nonblock"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert '"io":"nonblocking"' in out and '"transport":"unix"' in out
    out = subprocess.run(
        [sslg, "echo", "--unix", "--size", "64", "--count", "10"], capture_output=True, text=True, check=True
    ).stdout
    assert '"io":"blocking"' in out and '"method":"blocking"' in out
    crr = subprocess.run(
        [sslg, "crr", "--host", "127.0.0.1", "--port", "1", "--seconds", "1", "--nonblock"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert crr.returncode == 1 and "--nonblock is not an option of crr" in crr.stderr


def _corrupting_echo(listener: socket.socket, flip_at: int) -> None:
    conn, _ = listener.accept()
    with conn:
        offset = 0
        while data := conn.recv(65536):
            if offset <= flip_at < offset + len(data):
                buf = bytearray(data)
                buf[flip_at - offset] ^= 0xFF
                data = bytes(buf)
            conn.sendall(data)
            offset += len(data)


def test_check_detects_a_flipped_byte() -> None:
    # The checker must be able to fail: an echo server that flips exactly one byte.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        t = threading.Thread(target=_corrupting_echo, args=(listener, 300_000), daemon=True)
        t.start()
        r = run_check(HOST, "127.0.0.1", port, 1 * MIB, seed=9, timeout=60)
        t.join(timeout=10)
    assert not r.ok
    assert r.mismatches == 1 and r.first_mismatch_offset == 300_000
    assert r.bytes_received == 1 * MIB
