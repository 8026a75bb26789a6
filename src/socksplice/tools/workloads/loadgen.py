"""Run the ``sslg`` load generator (loadgen/sslg.c) in "pods" and parse what it prints.

Every wrapper but ``run_crr`` and ``run_conc`` takes ``nonblock``: sslg's ``--nonblock``, O_NONBLOCK
sockets with a poll() before each receive (an event-loop application, which Auto can promote);
the default is the blocking I/O the earlier figures were measured with. A non-blocking client
belongs with a non-blocking server (``Server(..., nonblock=True)``).

``unix_path`` (the server and every client): sslg's ``--unix-path``, an AF_UNIX stream socket at
that path instead of TCP. Path sockets are found through the file system, not the network
namespace, so a client in one pod reaches a server in another through a directory both see.

A :class:`PodRunner` starts processes inside one pod (a network namespace + cgroup pair in
local mode, the host itself in :class:`HostRunner`). Its ``popen`` must *exec* the argv it
is given (``ip netns exec``, ``nsenter`` without ``--fork`` do) or forward signals, because
:class:`Server` stops the server with SIGTERM and reads the JSON it prints on the way out.
"""

from __future__ import annotations

import json
import os
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, Protocol, Self

from socksplice.errors import PermanentError, SockspliceError
from socksplice.tools.workloads.results import (
    CheckResult,
    ConcResult,
    LatencyResult,
    RateResult,
    ServerResult,
    StreamResult,
)

ENV_LOADGEN = "SOCKSPLICE_LOADGEN"
ServerMode = Literal["echo", "sink", "rr", "check"]
CloseBy = Literal["client", "server"]

_STDERR_TAIL = 4000


class LoadgenMissing(PermanentError):
    """The sslg binary was not found."""


class LoadgenError(SockspliceError):
    """An sslg process failed, timed out or printed no result. Carries the command and stderr."""

    def __init__(self, message: str, argv: Sequence[str], returncode: int | None, stderr: str) -> None:
        cmd = shlex.join(argv)
        text = f"{message}\n  command: {cmd}\n  exit code: {returncode}"
        if stderr.strip():
            text += "\n  stderr: " + stderr.strip()[-_STDERR_TAIL:]
        super().__init__(text)
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stderr = stderr


class PodRunner(Protocol):
    """Starts processes inside one pod. ``ipv4``/``ipv6`` are the pod's addresses."""

    @property
    def name(self) -> str: ...

    @property
    def ipv4(self) -> str: ...

    @property
    def ipv6(self) -> str: ...

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]: ...


@dataclass(frozen=True)
class HostRunner:
    """Runs on the host itself (loopback tests): 127.0.0.1 and ::1."""

    name: str = "host"
    ipv4: str = "127.0.0.1"
    ipv6: str = "::1"

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(list(argv), **kwargs)


def loadgen_path() -> Path:
    """The sslg binary: ``$SOCKSPLICE_LOADGEN`` if set, else ``sslg`` beside the running Python
    (scripts/install.sh installs it into the virtual environment's ``bin``), else on PATH."""
    override = os.environ.get(ENV_LOADGEN)
    if override:
        path = Path(override)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise LoadgenMissing(f"{ENV_LOADGEN}={override} is not an executable file")
        return path
    beside = Path(sys.executable).parent / "sslg"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("sslg")
    if found:
        return Path(found)
    raise LoadgenMissing(
        f"the sslg load generator is not installed: looked for ${ENV_LOADGEN}, {beside} and sslg on PATH; "
        "build and install it with scripts/install.sh (or `make -C loadgen` and put loadgen/bin on PATH)"
    )


def _read_tail(f: IO[bytes]) -> str:
    f.seek(0)
    return f.read().decode(errors="replace")


def _last_json(stdout: str) -> Any:
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError("no JSON object in the output")


class Server:
    """``sslg server`` in a pod, as a context manager.

    ``port=0`` lets the server choose a free port; :attr:`port` holds the real one once
    started. On exit the server gets SIGTERM and :attr:`result` holds its counters.
    ``nonblock=True``: every accepted socket is O_NONBLOCK, polled before each receive.
    ``unix_path``: listen on an AF_UNIX socket at that path instead (``port``, ``bind`` and
    ``v6only`` are not used; :attr:`port` is 0); sslg removes it when it stops.
    """

    def __init__(
        self,
        runner: PodRunner,
        port: int = 0,
        mode: ServerMode = "echo",
        *,
        bind: str | None = None,
        v6only: bool = False,
        nonblock: bool = False,
        unix_path: str | os.PathLike[str] | None = None,
        ready_timeout: float = 10.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self.runner = runner
        self.mode = mode
        self.bind = bind
        self.v6only = v6only
        self.nonblock = nonblock
        self.unix_path = None if unix_path is None else os.fspath(unix_path)
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.result: ServerResult | None = None
        self._requested_port = port
        self._port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._stdout_rest = b""
        self.argv: list[str] = []

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("server not started")
        return self._port

    @property
    def pid(self) -> int:
        """The server process's pid (the pod runner execs sslg, so this is sslg itself)."""
        if self._proc is None:
            raise RuntimeError("server not started")
        return self._proc.pid

    def start(self) -> Self:
        if self._proc is not None:
            raise RuntimeError("server already started")
        self.argv = [str(loadgen_path()), "server", "--mode", self.mode]
        if self.unix_path is not None:
            self.argv += ["--unix-path", self.unix_path]
        else:
            self.argv += ["--port", str(self._requested_port), "--v6only", "1" if self.v6only else "0"]
            if self.bind is not None:
                self.argv += ["--bind", self.bind]
        if self.nonblock:
            self.argv.append("--nonblock")
        # stderr goes to a file: a pipe nobody reads would block a chatty server. It lives as
        # long as the server does and is closed by stop()/_kill().
        self._stderr = tempfile.TemporaryFile(prefix="sslg-server-")  # noqa: SIM115
        self._proc = self.runner.popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr
        )
        try:
            self._port = self._wait_ready()
        except BaseException:
            self._kill()
            raise
        return self

    def _wait_ready(self) -> int:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        deadline = time.monotonic() + self.ready_timeout
        buf = b""
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._error(f"sslg server did not print READY within {self.ready_timeout:g}s")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                self._proc.wait(timeout=self.stop_timeout)
                raise self._error("sslg server exited before it was ready")
            buf += chunk
        line, _, self._stdout_rest = buf.partition(b"\n")
        words = line.decode(errors="replace").split()
        if len(words) != 2 or words[0] != "READY" or not words[1].isdigit():
            raise self._error(f"sslg server printed {line!r} instead of 'READY <port>'")
        return int(words[1])

    def stop(self) -> ServerResult:
        """SIGTERM the server and parse its final JSON."""
        proc = self._proc
        if proc is None:
            raise RuntimeError("server not started")
        if self.result is not None:
            return self.result
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            self._kill()
            raise self._error(f"sslg server did not exit within {self.stop_timeout:g}s of SIGTERM") from None
        stdout = (self._stdout_rest + (out or b"")).decode(errors="replace")
        try:
            if proc.returncode != 0:
                raise self._error("sslg server failed")
            try:
                self.result = ServerResult.from_json(_last_json(stdout))
            except (ValueError, SockspliceError) as exc:
                raise self._error(f"sslg server printed no result ({exc}); stdout: {stdout!r:.300}") from exc
        finally:
            self._close_stderr()
        return self.result

    def stderr_text(self) -> str:
        return _read_tail(self._stderr) if self._stderr is not None else ""

    def _error(self, message: str) -> LoadgenError:
        rc = self._proc.returncode if self._proc is not None else None
        return LoadgenError(message, self.argv, rc, self.stderr_text())

    def _kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.communicate()
        self._close_stderr()

    def _close_stderr(self) -> None:
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.stop()
            return
        # Already failing: stop quietly, keep the original exception.
        try:
            self.stop()
        except (SockspliceError, RuntimeError, OSError):
            self._kill()


def _run_client(runner: PodRunner, args: Sequence[str], timeout: float) -> Any:
    argv = [str(loadgen_path()), *args]
    proc = runner.popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise LoadgenError(
            f"sslg {args[0]} timed out after {timeout:g}s",
            argv,
            proc.returncode,
            err.decode(errors="replace"),
        ) from None
    stderr = err.decode(errors="replace")
    if proc.returncode != 0:
        raise LoadgenError(f"sslg {args[0]} failed", argv, proc.returncode, stderr)
    try:
        return _last_json(out.decode(errors="replace"))
    except ValueError as exc:
        raise LoadgenError(f"sslg {args[0]} printed no JSON result: {out!r:.300}", argv, 0, stderr) from exc


def _common(host: str, port: int, unix_path: str | os.PathLike[str] | None = None) -> list[str]:
    if unix_path is not None:
        return ["--unix-path", os.fspath(unix_path)]
    return ["--host", host, "--port", str(port)]


def _peer(
    host: str,
    port: int,
    unix: bool,
    nonblock: bool = False,
    unix_path: str | os.PathLike[str] | None = None,
) -> list[str]:
    # --unix: the AF_UNIX socketpair reference; sslg serves the other end itself.
    peer = ["--unix"] if unix else _common(host, port, unix_path)
    return peer + (["--nonblock"] if nonblock else [])


def run_echo(
    runner: PodRunner,
    host: str,
    port: int,
    size: int,
    count: int,
    *,
    warmup: int = 10,
    samples: bool = False,
    unix: bool = False,
    nonblock: bool = False,
    unix_path: str | os.PathLike[str] | None = None,
    timeout: float = 120.0,
) -> LatencyResult:
    """One connection to an echo server: send ``size`` bytes, read them back, ``count`` times.
    ``unix=True`` runs the same over an AF_UNIX socketpair (``host``/``port`` are ignored);
    ``unix_path`` over a path socket to ``Server(unix_path=...)``."""
    args = [
        "echo",
        *_peer(host, port, unix, nonblock, unix_path),
        "--size",
        str(size),
        "--count",
        str(count),
        "--warmup",
        str(warmup),
    ]
    if samples:
        args.append("--samples")
    return LatencyResult.from_json(_run_client(runner, args, timeout))


def run_rr(
    runner: PodRunner,
    host: str,
    port: int,
    req: int,
    resp: int,
    count: int,
    *,
    warmup: int = 10,
    samples: bool = False,
    unix: bool = False,
    nonblock: bool = False,
    unix_path: str | os.PathLike[str] | None = None,
    timeout: float = 120.0,
) -> LatencyResult:
    """Request/response against ``Server(mode="rr")``; ``req`` >= 8 (the header).
    ``unix=True``: over an AF_UNIX socketpair instead (``host``/``port`` are ignored);
    ``unix_path`` over a path socket to ``Server(unix_path=...)``."""
    args = [
        "rr",
        *_peer(host, port, unix, nonblock, unix_path),
        "--req",
        str(req),
        "--resp",
        str(resp),
        "--count",
        str(count),
        "--warmup",
        str(warmup),
    ]
    if samples:
        args.append("--samples")
    return LatencyResult.from_json(_run_client(runner, args, timeout))


def run_stream(
    runner: PodRunner,
    host: str,
    port: int,
    write_size: int,
    seconds: float,
    *,
    unix: bool = False,
    nonblock: bool = False,
    unix_path: str | os.PathLike[str] | None = None,
    timeout: float | None = None,
) -> StreamResult:
    """Writes of ``write_size`` bytes to ``Server(mode="sink")`` for ``seconds`` (blocking, or
    with ``nonblock`` polled when the send buffer is full).
    ``unix=True``: over an AF_UNIX socketpair instead (``host``/``port`` are ignored);
    ``unix_path`` over a path socket to ``Server(unix_path=...)``."""
    args = [
        "stream",
        *_peer(host, port, unix, nonblock, unix_path),
        "--write",
        str(write_size),
        "--seconds",
        f"{seconds:g}",
    ]
    limit = timeout if timeout is not None else seconds + 60.0
    return StreamResult.from_json(_run_client(runner, args, limit))


def run_crr(
    runner: PodRunner,
    host: str,
    port: int,
    seconds: float,
    *,
    size: int = 64,
    close: CloseBy = "client",
    samples: bool = False,
    unix_path: str | os.PathLike[str] | None = None,
    timeout: float | None = None,
) -> RateResult:
    """Connect, send ``size`` bytes, read ``size`` bytes, close; repeated for ``seconds``
    against ``Server(mode="rr")``. ``close="server"`` puts TIME_WAIT on the server side (use it
    for long runs between namespaces, where the client would otherwise run out of ports).
    ``unix_path``: connections to an AF_UNIX path socket instead (no TIME_WAIT at all)."""
    args = [
        "crr",
        *_common(host, port, unix_path),
        "--seconds",
        f"{seconds:g}",
        "--size",
        str(size),
        "--close",
        close,
    ]
    if samples:
        args.append("--samples")
    limit = timeout if timeout is not None else seconds + 60.0
    return RateResult.from_json(_run_client(runner, args, limit))


def run_conc(
    runner: PodRunner,
    host: str,
    port: int,
    connections: int,
    seconds: float,
    *,
    size: int = 64,
    timeout: float | None = None,
) -> ConcResult:
    """``connections`` open connections to ``Server(mode="rr")``, each with one ``size``-byte
    request in flight at a time (epoll, one client thread), for ``seconds``."""
    args = [
        "conc",
        *_common(host, port),
        "--connections",
        str(connections),
        "--seconds",
        f"{seconds:g}",
        "--size",
        str(size),
    ]
    limit = timeout if timeout is not None else seconds + 60.0
    return ConcResult.from_json(_run_client(runner, args, limit))


def run_check(
    runner: PodRunner,
    host: str,
    port: int,
    nbytes: int,
    *,
    seed: int = 1,
    nonblock: bool = False,
    timeout: float = 300.0,
) -> CheckResult:
    """Integrity: ``nbytes`` of a seeded stream through an echo server, verified byte by byte.
    Returns the result even when bytes differ; look at :attr:`CheckResult.ok`."""
    args = ["check", *_peer(host, port, False, nonblock), "--bytes", str(nbytes), "--seed", str(seed)]
    return CheckResult.from_json(_run_client(runner, args, timeout))
