"""Typed results of the ``sslg`` load generator (one JSON object per run)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from socksplice.errors import PermanentError

JsonInput = str | bytes | Mapping[str, Any]


class ResultFormatError(PermanentError):
    """sslg printed something that is not the result it should have printed."""


def _load(data: JsonInput, kind: str) -> Mapping[str, Any]:
    if isinstance(data, str | bytes):
        try:
            obj = json.loads(data)
        except ValueError as exc:
            raise ResultFormatError(f"{kind}: not JSON: {data!r:.200}") from exc
    else:
        obj = data
    if not isinstance(obj, Mapping):
        raise ResultFormatError(f"{kind}: expected a JSON object, got {type(obj).__name__}")
    return obj


def _get(obj: Mapping[str, Any], key: str, kind: str) -> Any:
    try:
        return obj[key]
    except KeyError:
        raise ResultFormatError(f"{kind}: field {key!r} missing in {dict(obj)!r:.300}") from None


def _int(obj: Mapping[str, Any], key: str, kind: str) -> int:
    value = _get(obj, key, kind)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ResultFormatError(f"{kind}: field {key!r} must be an integer, got {value!r}")
    return value


def _float(obj: Mapping[str, Any], key: str, kind: str) -> float:
    value = _get(obj, key, kind)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ResultFormatError(f"{kind}: field {key!r} must be a number, got {value!r}")
    return float(value)


def _samples(obj: Mapping[str, Any], kind: str) -> tuple[float, ...]:
    raw = obj.get("samples_us", [])
    if not isinstance(raw, list):
        raise ResultFormatError(f"{kind}: field 'samples_us' must be a list")
    return tuple(float(v) for v in raw)


def _latency_fields(o: Mapping[str, Any], kind: str) -> dict[str, float]:
    """The latency distribution every sslg latency result carries (microseconds)."""
    return {f: _float(o, f, kind) for f in ("p50_us", "p90_us", "p99_us", "p999_us", "max_us", "mean_us")}


def _cpu_fields(o: Mapping[str, Any], kind: str) -> dict[str, float]:
    """The client's CPU time and the run's wall time (seconds)."""
    return {f: _float(o, f, kind) for f in ("cpu_user_s", "cpu_sys_s", "elapsed_s")}


@dataclass(frozen=True)
class LatencyResult:
    """Round-trip latency of ``sslg echo`` or ``sslg rr`` (microseconds; nearest-rank percentiles).

    ``size`` is the block size for echo and the request size for rr (``resp_size`` is the rr
    response size, ``None`` for echo). ``stalls`` counts round trips over 10 ms. CPU times are
    the client process's, over the measured rounds only (warm-up excluded).
    """

    workload: str
    size: int
    count: int
    p50_us: float
    p90_us: float
    p99_us: float
    p999_us: float
    max_us: float
    mean_us: float
    stalls: int
    cpu_user_s: float
    cpu_sys_s: float
    elapsed_s: float
    resp_size: int | None = None
    min_us: float = 0.0
    spurious_eagain: int = 0
    mismatched_blocks: int = 0
    samples_us: tuple[float, ...] = ()

    @classmethod
    def from_json(cls, data: JsonInput) -> Self:
        kind = "latency result"
        o = _load(data, kind)
        return cls(
            workload=str(_get(o, "workload", kind)),
            size=_int(o, "size", kind),
            count=_int(o, "count", kind),
            **_latency_fields(o, kind),
            stalls=_int(o, "stalls_over_10ms", kind),
            **_cpu_fields(o, kind),
            resp_size=_int(o, "resp", kind) if "resp" in o else None,
            min_us=_float(o, "min_us", kind) if "min_us" in o else 0.0,
            spurious_eagain=_int(o, "spurious_eagain", kind) if "spurious_eagain" in o else 0,
            mismatched_blocks=_int(o, "mismatched_blocks", kind) if "mismatched_blocks" in o else 0,
            samples_us=_samples(o, kind),
        )


@dataclass(frozen=True)
class StreamResult:
    """Throughput of ``sslg stream``: bytes the sink acknowledged by closing, over the whole run."""

    write_size: int
    bytes: int
    elapsed_s: float
    gbit_per_s: float
    cpu_user_s: float
    cpu_sys_s: float
    writes: int = 0
    spurious_eagain: int = 0

    @classmethod
    def from_json(cls, data: JsonInput) -> Self:
        kind = "stream result"
        o = _load(data, kind)
        return cls(
            write_size=_int(o, "write_size", kind),
            bytes=_int(o, "bytes", kind),
            elapsed_s=_float(o, "elapsed_s", kind),
            gbit_per_s=_float(o, "gbit_per_s", kind),
            cpu_user_s=_float(o, "cpu_user_s", kind),
            cpu_sys_s=_float(o, "cpu_sys_s", kind),
            writes=_int(o, "writes", kind) if "writes" in o else 0,
            spurious_eagain=_int(o, "spurious_eagain", kind) if "spurious_eagain" in o else 0,
        )


@dataclass(frozen=True)
class RateResult:
    """``sslg crr``: connect-request-reply-close rate and the latency of each whole cycle."""

    workload: str
    size: int
    connections: int
    connections_per_s: float
    p50_us: float
    p90_us: float
    p99_us: float
    p999_us: float
    max_us: float
    mean_us: float
    stalls: int
    cpu_user_s: float
    cpu_sys_s: float
    elapsed_s: float
    close: str = "client"
    spurious_eagain: int = 0
    samples_us: tuple[float, ...] = ()

    @classmethod
    def from_json(cls, data: JsonInput) -> Self:
        kind = "rate result"
        o = _load(data, kind)
        return cls(
            workload=str(_get(o, "workload", kind)),
            size=_int(o, "size", kind),
            connections=_int(o, "connections", kind),
            connections_per_s=_float(o, "connections_per_s", kind),
            **_latency_fields(o, kind),
            stalls=_int(o, "stalls_over_10ms", kind),
            **_cpu_fields(o, kind),
            close=str(o.get("close", "client")),
            spurious_eagain=_int(o, "spurious_eagain", kind) if "spurious_eagain" in o else 0,
            samples_us=_samples(o, kind),
        )


@dataclass(frozen=True)
class ConcResult:
    """``sslg conc``: many open connections, one request in flight on each; the latency of
    every transaction (request sent to response read, queueing included)."""

    size: int
    connections: int
    transactions: int
    transactions_per_s: float
    p50_us: float
    p90_us: float
    p99_us: float
    p999_us: float
    max_us: float
    mean_us: float
    cpu_user_s: float
    cpu_sys_s: float
    elapsed_s: float

    @classmethod
    def from_json(cls, data: JsonInput) -> Self:
        kind = "conc result"
        o = _load(data, kind)
        return cls(
            size=_int(o, "size", kind),
            connections=_int(o, "connections", kind),
            transactions=_int(o, "count", kind),
            transactions_per_s=_float(o, "transactions_per_s", kind),
            **_latency_fields(o, kind),
            **_cpu_fields(o, kind),
        )


@dataclass(frozen=True)
class CheckResult:
    """``sslg check``: a seeded pseudo-random stream echoed back and verified byte by byte."""

    bytes: int
    bytes_received: int
    mismatches: int
    first_mismatch_offset: int | None
    seed: int = 0
    extra_bytes: int = 0
    writes: int = 0
    reads: int = 0
    elapsed_s: float = 0.0
    spurious_eagain: int = 0

    @property
    def ok(self) -> bool:
        """Every byte came back, in order, and nothing more."""
        return self.mismatches == 0 and self.bytes_received == self.bytes and self.extra_bytes == 0

    @classmethod
    def from_json(cls, data: JsonInput) -> Self:
        kind = "check result"
        o = _load(data, kind)
        first = _get(o, "first_mismatch_offset", kind)
        if first is not None and (isinstance(first, bool) or not isinstance(first, int)):
            raise ResultFormatError(f"{kind}: first_mismatch_offset must be an integer or null")
        return cls(
            bytes=_int(o, "bytes", kind),
            bytes_received=_int(o, "bytes_received", kind),
            mismatches=_int(o, "mismatches", kind),
            first_mismatch_offset=first,
            seed=_int(o, "seed", kind) if "seed" in o else 0,
            extra_bytes=_int(o, "extra_bytes", kind) if "extra_bytes" in o else 0,
            writes=_int(o, "writes", kind) if "writes" in o else 0,
            reads=_int(o, "reads", kind) if "reads" in o else 0,
            elapsed_s=_float(o, "elapsed_s", kind) if "elapsed_s" in o else 0.0,
            spurious_eagain=_int(o, "spurious_eagain", kind) if "spurious_eagain" in o else 0,
        )


@dataclass(frozen=True)
class ServerResult:
    """What ``sslg server`` printed when it was stopped."""

    mode: str
    port: int
    connections: int
    active: int
    bytes_in: int
    bytes_out: int
    errors: int
    spurious_eagain: int
    transport: str = "tcp"
    """``tcp``, or ``unix2`` for a server on an AF_UNIX path socket (``--unix-path``)."""
    io: str = "blocking"

    @classmethod
    def from_json(cls, data: JsonInput) -> Self:
        kind = "server result"
        o = _load(data, kind)
        return cls(
            mode=str(_get(o, "mode", kind)),
            port=_int(o, "port", kind),
            connections=_int(o, "connections", kind),
            active=_int(o, "active", kind),
            bytes_in=_int(o, "bytes_in", kind),
            bytes_out=_int(o, "bytes_out", kind),
            errors=_int(o, "errors", kind),
            spurious_eagain=_int(o, "spurious_eagain", kind),
            transport=str(o.get("transport", "tcp")),
            io=str(o.get("io", "blocking")),
        )
