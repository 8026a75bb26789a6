"""iperf3 in pods: a standard tool's stream throughput beside sslg's.

``iperf3 -s`` listens on ``[::]`` with IPV6_V6ONLY off (dual-stack), so IPv4 clients arrive
v4-mapped — the listener shape the data path must key correctly. The client runs with ``-J``
and prints one JSON document; :func:`run_iperf3` reads the receiver's throughput and both
ends' CPU utilisation from it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from types import TracebackType
from typing import IO, Any, Self

from socksplice.errors import PermanentError
from socksplice.tools.workloads.loadgen import LoadgenError, PodRunner


class IperfMissing(PermanentError):
    """iperf3 is not installed (scripts/install.sh installs it)."""


def iperf3_path() -> str:
    found = shutil.which("iperf3")
    if found is None:
        raise IperfMissing("iperf3 is not installed: apt-get install iperf3 (scripts/install.sh does it)")
    return found


@dataclass(frozen=True)
class IperfResult:
    """One ``iperf3 -c`` run: bytes the receiver counted, and CPU utilisation in percent of one
    CPU-second per second of each end (iperf3's ``cpu_utilization_percent``)."""

    write_size: int
    bytes: int
    seconds: float
    gbit_per_s: float
    sender_cpu_percent: float
    receiver_cpu_percent: float

    @classmethod
    def from_json(cls, write_size: int, doc: dict[str, Any]) -> Self:
        try:
            received = doc["end"]["sum_received"]
            cpu = doc["end"]["cpu_utilization_percent"]
            return cls(
                write_size=write_size,
                bytes=int(received["bytes"]),
                seconds=float(received["seconds"]),
                gbit_per_s=float(received["bits_per_second"]) / 1e9,
                sender_cpu_percent=float(cpu["host_total"]),
                receiver_cpu_percent=float(cpu["remote_total"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PermanentError(f"iperf3: unexpected JSON ({exc}): {json.dumps(doc)[:300]}") from exc


class IperfServer:
    """``iperf3 -s -p PORT`` in a pod (dual-stack ``[::]`` listener), as a context manager."""

    def __init__(self, runner: PodRunner, port: int, ready_timeout: float = 10.0) -> None:
        self.runner = runner
        self.port = port
        self.ready_timeout = ready_timeout
        self.argv = [iperf3_path(), "-s", "-p", str(port), "--forceflush"]
        self._proc: subprocess.Popen[bytes] | None = None
        # Output goes to a file: a pipe nobody drains would block the server after a few runs.
        self._log: IO[bytes] | None = None

    def __enter__(self) -> Self:
        self._log = tempfile.TemporaryFile(prefix="iperf3-server-")
        self._proc = self.runner.popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log
        )
        deadline = time.monotonic() + self.ready_timeout
        # iperf3 prints "Server listening on PORT" once the socket listens.
        while b"listening" not in self._output():
            if time.monotonic() > deadline or self._proc.poll() is not None:
                seen = self._output().decode(errors="replace")
                self.close()
                raise LoadgenError("iperf3 server did not start", self.argv, self._proc.returncode, seen)
            time.sleep(0.05)
        return self

    def _output(self) -> bytes:
        if self._log is None:
            return b""
        self._log.seek(0)
        return self._log.read()

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def run_iperf3(
    runner: PodRunner, host: str, port: int, write_size: int, seconds: float, *, timeout: float | None = None
) -> IperfResult:
    """One TCP stream, ``write_size``-byte writes (``-l``), for ``seconds`` (``-t``)."""
    argv = [iperf3_path(), "-c", host, "-p", str(port), "-l", str(write_size), "-t", f"{seconds:g}", "-J"]
    proc = runner.popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=timeout if timeout is not None else seconds + 30.0)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise LoadgenError(
            "iperf3 client timed out", argv, proc.returncode, err.decode(errors="replace")
        ) from None
    try:
        doc = json.loads(out)
    except ValueError as exc:
        raise LoadgenError(
            f"iperf3 printed no JSON: {out!r:.300}", argv, proc.returncode, err.decode()
        ) from exc
    if proc.returncode != 0 or "error" in doc:
        raise LoadgenError(f"iperf3 failed: {doc.get('error')}", argv, proc.returncode, err.decode())
    return IperfResult.from_json(write_size, doc)
