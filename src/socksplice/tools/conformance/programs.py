"""Real programs from Debian packages as conformance programs.

Run as ``python -m socksplice.tools.conformance.programs``:

    programs.py PROGRAM server --port P [--bind ADDR]   starts the real server; prints READY once the
                                                        port listens; on SIGTERM stops it, prints a trace
    programs.py PROGRAM client --host H --port P        runs the real client(s), prints a trace

Same shape as ``apps``: each role prints one JSON line (the trace) and exits 0, also when the
trace shows a failure; it exits 2 with a message on stderr only when the program cannot be run
at all (not installed, or an address it does not support). A trace holds only facts a correct
run always produces (exit codes, error counts, sizes, sha256 of content generated from a fixed
seed, booleans such as "completed some requests"), never rates, timings or request counts, so
the plain and the spliced run of a scenario give equal traces.

Programs: ``nginx-wrk``, ``nginx-curl`` (nginx serves static files), ``redis`` (redis-server and
redis-cli), ``redis-benchmark`` (redis-server and redis-benchmark), ``iperf3``, ``sockperf``. The
servers run in the foreground in their own session, with their files in a temporary directory;
they die with the wrapper.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from socksplice.tools.conformance.probing import Trace

SEED = 0x50C5
FILES: dict[str, int] = {"100.bin": 100, "16k.bin": 16 << 10, "1m.bin": 1 << 20}
"""The static files nginx serves: name → size; content is ``content(size)``."""
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
SELF_EXIT_TIMEOUT = 5.0
"""How long a server that ends by itself (iperf3 -1) may take to finish after the client did."""
RUN_TIMEOUT = 20.0
PR_SET_PDEATHSIG = 1


class Unavailable(Exception):
    """The program cannot be run at all here (not installed, unsupported address, did not start)."""


# ---- shared helpers ---------------------------------------------------------------------------


def content(size: int) -> bytes:
    """``size`` bytes of fixed pseudo-random content (the same in every process and run)."""
    return random.Random(SEED + size).randbytes(size)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def require(*binaries: str) -> None:
    missing = [b for b in binaries if shutil.which(b) is None]
    if missing:
        raise Unavailable(f"not installed: {', '.join(missing)} (run scripts/install.sh)")


@dataclass(frozen=True)
class Result:
    exit: int | str
    """The exit code, or "timeout" when the program was killed after ``timeout`` seconds."""
    stdout: bytes
    stderr: bytes

    @property
    def out(self) -> str:
        return self.stdout.decode(errors="replace")

    @property
    def err(self) -> str:
        return self.stderr.decode(errors="replace")


def run(argv: Sequence[str], timeout: float = RUN_TIMEOUT, stdin: bytes | None = None) -> Result:
    """Run ``argv`` to completion (killed after ``timeout`` seconds)."""
    try:
        p = subprocess.run(
            list(argv),
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        return Result("timeout", exc.stdout or b"", exc.stderr or b"")
    return Result(p.returncode, p.stdout, p.stderr)


def url(host: str, port: int, path: str) -> str:
    return f"http://[{host}]:{port}{path}" if ":" in host else f"http://{host}:{port}{path}"


def listening(port: int) -> bool:
    """Whether a TCP socket of this network namespace listens on ``port`` (/proc/net/tcp{,6}).

    Read instead of connecting: a probe connection would be a connection of its own, seen by the
    server (iperf3 -1 would take it for its one test) and by the data path."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            cols = row.split()
            if len(cols) > 3 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


def wait_listening(proc: subprocess.Popen[bytes], port: int, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not listening(port):
        if proc.poll() is not None:
            raise Unavailable(f"exited with {proc.returncode} before listening on port {port}")
        if time.monotonic() > deadline:
            raise Unavailable(f"not listening on port {port} after {timeout:.0f}s")
        time.sleep(0.05)


def count_lines(text: str, pattern: str) -> int:
    return sum(1 for line in text.splitlines() if re.search(pattern, line))


def _die_with_parent() -> None:
    """In the server's child before exec: its own session, SIGKILL when the wrapper dies."""
    os.setsid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


# ---- servers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerSpec:
    argv: list[str]
    stop_signal: signal.Signals = signal.SIGTERM
    exits_by_itself: bool = False
    """The server ends after its one client (iperf3 -1): on SIGTERM, first wait for that."""
    facts: Callable[[str, str], Trace] = field(default=lambda out, err: {})
    """Deterministic server-side facts from its stdout and stderr."""


def _stop(proc: subprocess.Popen[bytes], spec: ServerSpec) -> int | str:
    """Stop the server and its children; its exit code when it ended by itself, else how it stopped."""
    if spec.exits_by_itself:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(SELF_EXIT_TIMEOUT)
    if proc.poll() is not None:
        return proc.returncode
    _signal_group(proc, spec.stop_signal)
    try:
        proc.wait(STOP_TIMEOUT)
        return "stopped"
    except subprocess.TimeoutExpired:
        _signal_group(proc, signal.SIGKILL)
        proc.wait()
        return "killed"


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def serve(name: str, spec: ServerSpec, port: int, work: Path) -> Trace:
    """Start the server, print READY once it listens, wait for SIGTERM, stop it; its trace."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    out_path, err_path = work / "server.out", work / "server.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(
            spec.argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            cwd=work,
            preexec_fn=_die_with_parent,  # no thread runs yet
        )
    try:
        try:
            wait_listening(proc, port)
        except Unavailable as exc:
            said = err_path.read_text(errors="replace") + out_path.read_text(errors="replace")
            tail = said.strip().splitlines()[-1:] or [""]
            raise Unavailable(f"{spec.argv[0]}: {exc}: {tail[0]}") from None
        print("READY", flush=True)
        while not stop.wait(0.2):
            pass
        exit_ = _stop(proc, spec)
    finally:
        if proc.poll() is None:
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
    stdout = out_path.read_text(errors="replace")
    stderr = err_path.read_text(errors="replace")
    if stderr.strip():
        print(stderr.strip()[-2000:], file=sys.stderr)
    return {"program": name, "exit": exit_, **spec.facts(stdout, stderr)}


NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {work}/nginx.pid;
error_log stderr error;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {work}/client_body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000;
    server {{
        listen {listen};
        root {work}/www;
    }}
}}
"""


def nginx_listen(bind: str, port: int) -> str:
    if bind == "::":
        return f"[::]:{port} ipv6only=off"
    return f"[{bind}]:{port}" if ":" in bind else f"{bind}:{port}"


def nginx_facts(out: str, err: str) -> Trace:
    return {"log_errors": count_lines(err, r"\[(emerg|alert|crit|error)\]")}


def nginx_server(work: Path, port: int, bind: str) -> ServerSpec:
    require("nginx")
    www = work / "www"
    www.mkdir()
    for name, size in FILES.items():
        (www / name).write_bytes(content(size))
    conf = work / "nginx.conf"
    conf.write_text(NGINX_CONF.format(work=work, listen=nginx_listen(bind, port)))
    return ServerSpec(["nginx", "-e", "stderr", "-p", f"{work}/", "-c", str(conf)], facts=nginx_facts)


def redis_bind(bind: str) -> list[str]:
    """redis-server sets IPV6_V6ONLY: "::" becomes an IPv4 and an IPv6 wildcard listener."""
    return ["* -::*"] if bind == "::" else [bind]


def redis_server(work: Path, port: int, bind: str) -> ServerSpec:
    require("redis-server")
    argv = ["redis-server", "--port", str(port), "--bind", *redis_bind(bind)]
    argv += ["--save", "", "--appendonly", "no", "--protected-mode", "no", "--dir", str(work)]
    argv += ["--logfile", "", "--daemonize", "no"]
    return ServerSpec(argv)


def iperf3_facts(out: str, err: str) -> Trace:
    try:
        doc = json.loads(out)
    except json.JSONDecodeError:
        return {"json": False}
    return {"json": True, "reported_error": "error" in doc}


def iperf3_server(work: Path, port: int, bind: str) -> ServerSpec:
    require("iperf3")
    argv = ["iperf3", "-s", "-p", str(port), "-1", "-J"]
    if bind != "::":  # without -B iperf3 listens on [::] for IPv4 and IPv6
        argv += ["-B", bind]
    return ServerSpec(argv, exits_by_itself=True, facts=iperf3_facts)


def sockperf_address(address: str) -> str:
    """sockperf 3.7 speaks IPv4 only; a dual-stack "::" listener becomes 0.0.0.0."""
    if address == "::":
        return "0.0.0.0"
    if ":" in address:
        raise Unavailable(f"sockperf 3.7 does not support IPv6 ({address})")
    return address


def sockperf_facts(out: str, err: str) -> Trace:
    return {"errors": count_lines(out + err, r"ERROR")}


def sockperf_server(work: Path, port: int, bind: str) -> ServerSpec:
    require("sockperf")
    # --uc-reuseaddr: SO_REUSEADDR, or the listen fails while an earlier run's connections are in
    # TIME_WAIT (and sockperf still exits 0)
    argv = ["sockperf", "sr", "--tcp", "-p", str(port), "-i", sockperf_address(bind), "--uc-reuseaddr"]
    return ServerSpec(argv, stop_signal=signal.SIGINT, facts=sockperf_facts)


# ---- clients ----------------------------------------------------------------------------------

WRK_LUA = """\
local threads = {}
function setup(thread)
    table.insert(threads, thread)
end
function init(args)
    local f = assert(io.open("EXPECTED", "rb"))
    expected = f:read("*a")
    f:close()
    bad = 0
    started = os.time()
end
function delay()
    if os.time() - started >= QUIET_AFTER then
        return 60000
    end
    return 0
end
function response(status, headers, body)
    if status ~= 200 or body ~= expected then
        bad = bad + 1
    end
end
function done(summary, latency, requests)
    local n = 0
    for _, t in ipairs(threads) do
        n = n + t:get("bad")
    end
    io.write(string.format("BAD RESPONSES %d\\n", n))
end
"""
WRK_FILE = "16k.bin"
WRK_SECONDS = 3
WRK_QUIET_AFTER = 2
"""Seconds (wall clock, whole) after which wrk's connections send no new request: the last responses
arrive and are read before wrk closes, as an application that drains before it exits does (wrk
stopped mid-response would close sockets with unread bytes, which Auto refuses: TCP resets there,
tcp_bpf sends FIN)."""


def parse_wrk(out: str) -> Trace:
    """wrk's summary: it prints socket errors and non-2xx/3xx responses only when there are any."""
    requests = re.search(r"(\d+) requests in", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    bad = re.search(r"BAD RESPONSES (\d+)", out)
    counts = [int(n) for n in errors.groups()] if errors else [0, 0, 0, 0]
    return {
        "completed_requests": bool(requests and int(requests.group(1)) > 0),
        "socket_errors": dict(zip(("connect", "read", "write", "timeout"), counts, strict=True)),
        "non_2xx_3xx": int(non_2xx.group(1)) if non_2xx else 0,
        "bad_responses": int(bad.group(1)) if bad else None,
    }


def wrk_client(host: str, port: int, work: Path) -> Trace:
    """wrk, 2 threads x 32 keep-alive connections for 3 s, each body checked against the file;
    no request after ``WRK_QUIET_AFTER`` s, so no response is in flight when wrk closes."""
    require("wrk")
    expected = work / "expected.bin"
    expected.write_bytes(content(FILES[WRK_FILE]))
    script = work / "check.lua"
    script.write_text(WRK_LUA.replace("EXPECTED", str(expected)).replace("QUIET_AFTER", str(WRK_QUIET_AFTER)))
    target = url(host, port, f"/{WRK_FILE}")
    # --timeout above the quiet time: wrk counts a connection idle that long as a timeout
    argv = ["wrk", "-t2", "-c32", f"-d{WRK_SECONDS}s", "--timeout", f"{WRK_SECONDS + 2}s", "-s", str(script)]
    r = run([*argv, target])
    return {"exit": r.exit, **parse_wrk(r.out)}


CURL_FORMAT = "%{http_code} %{size_download} %{num_connects}\\n"
KEEPALIVE_ROUNDS = 3
RANGE = (1000, 1999)


@dataclass(frozen=True)
class Fetch:
    path: str
    expected: bytes
    byte_range: tuple[int, int] | None = None


def curl_fetches() -> tuple[list[Fetch], list[Fetch]]:
    """Over one keep-alive connection: every file, three times, then a range of the largest;
    then with HTTP/1.0 (a connection per request) every file once."""
    keepalive = [Fetch(f"/{n}", content(s)) for _ in range(KEEPALIVE_ROUNDS) for n, s in FILES.items()]
    lo, hi = RANGE
    keepalive.append(Fetch("/1m.bin", content(FILES["1m.bin"])[lo : hi + 1], RANGE))
    http10 = [Fetch(f"/{n}", content(s)) for n, s in FILES.items()]
    return keepalive, http10


def curl_argv(host: str, port: int, work: Path, fetches: list[Fetch], *options: str) -> list[str]:
    """One curl invocation for all ``fetches`` (``--next`` keeps the connection pool)."""
    argv = ["curl"]
    for i, f in enumerate(fetches):
        if i:
            argv.append("--next")
        argv += ["-sS", "--max-time", "5", "-w", CURL_FORMAT, "-o", str(work / f"body-{i}"), *options]
        if f.byte_range:
            argv += ["-r", f"{f.byte_range[0]}-{f.byte_range[1]}"]
        argv.append(url(host, port, f.path))
    return argv


def _fetch_name(f: Fetch) -> str:
    return f.path + (f" bytes={f.byte_range[0]}-{f.byte_range[1]}" if f.byte_range else "")


def _int(word: str) -> int | str:
    return int(word) if word.isdigit() else word


def curl_round(host: str, port: int, work: Path, fetches: list[Fetch], *options: str) -> Trace:
    for old in work.glob("body-*"):
        old.unlink()
    r = run(curl_argv(host, port, work, fetches, *options))
    written = r.out.splitlines()
    transfers = []
    for i, f in enumerate(fetches):
        body_path = work / f"body-{i}"
        body = body_path.read_bytes() if body_path.exists() else b""
        words = written[i].split() if i < len(written) else []
        code, size, connects = [*(_int(w) for w in words), None, None, None][:3]
        transfers.append(
            {
                "path": _fetch_name(f),
                "code": code,
                "size": size,
                "connects": connects,
                "sha256": sha(body),
                "expected": body == f.expected,
            }
        )
    return {"exit": r.exit, "transfers": transfers}


def curl_client(host: str, port: int, work: Path) -> Trace:
    require("curl")
    keepalive, http10 = curl_fetches()
    return {
        "keepalive": curl_round(host, port, work, keepalive),
        "http1.0": curl_round(host, port, work, http10, "--http1.0"),
    }


REDIS_VALUES = (1, 16 << 10, 1 << 20)
PIPE_KEYS = 10_000
BENCH_TESTS = "set,get,lpush,lpop"


def redis_pipe_input(n: int) -> bytes:
    """RESP for ``n`` SETs of 100-byte values (``redis-cli --pipe`` mass insertion)."""
    value = content(100)
    parts = []
    for i in range(n):
        key = f"pipe:{i}".encode()
        parts.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(key), key, len(value), value))
    return b"".join(parts)


def redis_values(cli: list[str]) -> Trace:
    """SET each value (binary, from stdin) and GET it back."""
    got: Trace = {}
    for size in REDIS_VALUES:
        value = content(size)
        key = f"value:{size}"
        put = run([*cli, "-x", "SET", key], stdin=value)
        back = run([*cli, "--raw", "GET", key])
        body = back.stdout[:-1] if back.stdout.endswith(b"\n") else back.stdout  # --raw appends \n
        got[str(size)] = {
            "set": put.out.strip() if put.exit == 0 else f"exit {put.exit}",
            "get_exit": back.exit,
            "sha256": sha(body),
            "expected": body == value,
        }
    return got


def redis_pipe(cli: list[str]) -> Trace:
    r = run([*cli, "--pipe"], stdin=redis_pipe_input(PIPE_KEYS))
    summary = re.search(r"errors: (\d+), replies: (\d+)", r.out)
    size = run([*cli, "DBSIZE"])
    return {
        "exit": r.exit,
        "errors": int(summary.group(1)) if summary else None,
        "replies": int(summary.group(2)) if summary else None,
        "dbsize": size.out.strip(),
    }


def parse_benchmark_csv(out: str) -> list[str]:
    """The test names of redis-benchmark --csv's rows (the header excluded)."""
    names = []
    for line in out.splitlines():
        m = re.match(r'^"([^"]+)","', line)
        if m and m.group(1) != "test":
            names.append(m.group(1))
    return sorted(names)


def redis_benchmark(host: str, port: int) -> Trace:
    argv = ["redis-benchmark", "-h", host, "-p", str(port), "-n", "20000", "-c", "20"]
    r = run([*argv, "-t", BENCH_TESTS, "--csv"])
    return {
        "exit": r.exit,
        "tests": parse_benchmark_csv(r.out),
        "error_printed": bool(re.search(r"error", r.out + r.err, re.IGNORECASE)),
    }


def redis_client(host: str, port: int, work: Path) -> Trace:
    """redis-cli: each value SET and read back, then a mass insertion (blocking reads)."""
    require("redis-cli")
    cli = ["redis-cli", "-h", host, "-p", str(port)]
    return {"values": redis_values(cli), "pipe": redis_pipe(cli)}


def redis_benchmark_client(host: str, port: int, work: Path) -> Trace:
    """redis-benchmark alone (its event loop reads non-blocking sockets), so that it is an
    endpoint of its own: in Auto, redis-cli's blocking reads would refuse the one they share."""
    require("redis-benchmark")
    return {"benchmark": redis_benchmark(host, port)}


def parse_iperf3(r: Result) -> Trace:
    """Facts of ``iperf3 -J``. Not "received == sent": iperf3 3.12's server stops counting at the
    end of the test with bytes still in flight, so they differ (by up to ~5 MiB) in about half of
    the runs on plain TCP loopback, with -t and with -n alike."""
    try:
        doc = json.loads(r.out)
    except json.JSONDecodeError:
        return {"exit": r.exit, "json": False}
    end = doc.get("end", {})
    sent = end.get("sum_sent", {}).get("bytes", 0)
    received = end.get("sum_received", {}).get("bytes", 0)
    return {
        "exit": r.exit,
        "json": True,
        "reported_error": "error" in doc,
        "received_some": received > 0,
        "received_at_most_sent": received <= sent,
    }


def iperf3_client(host: str, port: int, work: Path) -> Trace:
    require("iperf3")
    return parse_iperf3(run(["iperf3", "-c", host, "-p", str(port), "-t", "2", "-J"]))


SOCKPERF_SIZES = (64, 16384)
"""One ping-pong run whose message sizes vary at random between these (-m middle -r half-width):
a TCP run takes 2 s more than its -t (sockperf waits after connecting), and sockperf 3.7's server
answers only one of two clients that run at the same time, so one run covers the sizes."""


SOCKPERF_COUNTS = r"dropped messages = (\d+); # duplicated messages = (\d+); # out-of-order messages = (\d+)"


def parse_sockperf(r: Result) -> Trace:
    text = r.out + r.err
    m = re.search(SOCKPERF_COUNTS, text)
    counts: list[int | None] = [int(n) for n in m.groups()] if m else [None, None, None]
    return {
        "exit": r.exit,
        **dict(zip(("dropped", "duplicated", "out_of_order"), counts, strict=True)),
        "errors": count_lines(text, r"ERROR"),
    }


def sockperf_client(host: str, port: int, work: Path) -> Trace:
    require("sockperf")
    address = sockperf_address(host)
    lo, hi = SOCKPERF_SIZES
    middle, spread = (lo + hi) // 2, (hi - lo) // 2
    argv = ["sockperf", "pp", "--tcp", "-i", address, "-p", str(port), "-t", "2"]
    return parse_sockperf(run([*argv, "-m", str(middle), "-r", str(spread)]))


# ---- the command ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Program:
    name: str
    """The server program's name, in the server trace."""
    server: Callable[[Path, int, str], ServerSpec]
    client: Callable[[str, int, Path], Trace]
    expected_client: Callable[[], Trace]
    """The client trace of a correct run (every fact in a trace is the same in every correct run)."""
    expected_server: Trace
    binaries: tuple[str, ...]
    """Every executable both roles run."""


def _expected_curl_round(fetches: list[Fetch], keepalive: bool) -> Trace:
    transfers = [
        {
            "path": _fetch_name(f),
            "code": 206 if f.byte_range else 200,
            "size": len(f.expected),
            "connects": 1 if i == 0 or not keepalive else 0,
            "sha256": sha(f.expected),
            "expected": True,
        }
        for i, f in enumerate(fetches)
    ]
    return {"exit": 0, "transfers": transfers}


def expected_curl() -> Trace:
    keepalive, http10 = curl_fetches()
    return {
        "keepalive": _expected_curl_round(keepalive, keepalive=True),
        "http1.0": _expected_curl_round(http10, keepalive=False),
    }


def expected_redis() -> Trace:
    values = {
        str(size): {"set": "OK", "get_exit": 0, "sha256": sha(content(size)), "expected": True}
        for size in REDIS_VALUES
    }
    return {
        "values": values,
        "pipe": {"exit": 0, "errors": 0, "replies": PIPE_KEYS, "dbsize": str(PIPE_KEYS + len(REDIS_VALUES))},
    }


def expected_redis_benchmark() -> Trace:
    return {"benchmark": {"exit": 0, "tests": sorted(BENCH_TESTS.upper().split(",")), "error_printed": False}}


PROGRAMS: dict[str, Program] = {
    "nginx-wrk": Program(
        "nginx",
        nginx_server,
        wrk_client,
        lambda: {
            "exit": 0,
            "completed_requests": True,
            "socket_errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0},
            "non_2xx_3xx": 0,
            "bad_responses": 0,
        },
        {"program": "nginx", "exit": "stopped", "log_errors": 0},
        ("nginx", "wrk"),
    ),
    "nginx-curl": Program(
        "nginx",
        nginx_server,
        curl_client,
        expected_curl,
        {"program": "nginx", "exit": "stopped", "log_errors": 0},
        ("nginx", "curl"),
    ),
    "redis": Program(
        "redis-server",
        redis_server,
        redis_client,
        expected_redis,
        {"program": "redis-server", "exit": "stopped"},
        ("redis-server", "redis-cli"),
    ),
    "redis-benchmark": Program(
        "redis-server",
        redis_server,
        redis_benchmark_client,
        expected_redis_benchmark,
        {"program": "redis-server", "exit": "stopped"},
        ("redis-server", "redis-benchmark"),
    ),
    "iperf3": Program(
        "iperf3",
        iperf3_server,
        iperf3_client,
        lambda: {
            "exit": 0,
            "json": True,
            "reported_error": False,
            "received_some": True,
            "received_at_most_sent": True,
        },
        {"program": "iperf3", "exit": 0, "json": True, "reported_error": False},
        ("iperf3",),
    ),
    "sockperf": Program(
        "sockperf",
        sockperf_server,
        sockperf_client,
        lambda: {"exit": 0, "dropped": 0, "duplicated": 0, "out_of_order": 0, "errors": 0},
        {"program": "sockperf", "exit": "stopped", "errors": 0},
        ("sockperf",),
    ),
}


def expected(program: str) -> Trace:
    """``{"client": ..., "server": ...}`` of a correct run of ``program``."""
    p = PROGRAMS[program]
    return {"client": p.expected_client(), "server": p.expected_server}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="socksplice.tools.conformance.programs")
    p.add_argument("program", choices=sorted(PROGRAMS))
    p.add_argument("role", choices=["server", "client"])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--bind", default="::")
    a = p.parse_args(argv)
    program = PROGRAMS[a.program]
    try:
        with tempfile.TemporaryDirectory(prefix=f"socksplice-{a.program}-") as tmp:
            work = Path(tmp)
            if a.role == "server":
                trace = serve(program.name, program.server(work, a.port, a.bind), a.port, work)
            else:
                trace = program.client(a.host, a.port, work)
    except Unavailable as exc:
        print(f"{a.program} {a.role}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(trace, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
