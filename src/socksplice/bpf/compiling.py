"""The short-lived compiler: ``python -m socksplice.bpf.compiling FD`` compiles and loads the
programs with bcc, pins the maps (bcc creates or adopts them at their pins), and hands the loaded
programs back over the AF_UNIX socket ``FD`` as file descriptors, then exits.

bcc keeps LLVM and clang in the process that compiles (well over 100 MB resident), so the agent
never imports bcc: it reads :class:`Request` (JSON on stdin), and sends back one message, JSON
(:class:`Reply`) with the fds attached (``SCM_RIGHTS``): every program (in ``programs`` order),
then the perf events that attach the observation programs to their tracepoints (in
``tracepoints`` order). The child leaves without bcc's clean-up (``os._exit``), which would
detach those tracepoints; the agent's copies of the fds keep programs and attachments alive.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from socksplice.bpf import headers as headers_mod
from socksplice.bpf.programs import DatapathSettings, build_cflags, observation_support, program_source
from socksplice.errors import KernelUnsupported

log = logging.getLogger(__name__)

MAIN_PROGRAMS = ("ss_sockops", "ss_sk_msg")


@dataclass(frozen=True)
class Reply:
    ok: bool
    error: str = ""
    unsupported: bool = False
    """The error means this kernel cannot run the programs (KernelUnsupported), not a failure."""
    programs: list[str] = field(default_factory=list)
    tracepoints: list[str] = field(default_factory=list)
    observation: str = ""
    headers: str = ""

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Reply:
        data: dict[str, Any] = json.loads(raw)
        return cls(**data)


def settings_to_json(settings: DatapathSettings) -> str:
    data = asdict(settings)
    data["pin_root"] = str(settings.pin_root)
    return json.dumps(data)


def settings_from_json(text: str) -> DatapathSettings:
    data = json.loads(text)
    data["pin_root"] = Path(data["pin_root"])
    return DatapathSettings(**data)


def compile_and_load(settings: DatapathSettings) -> tuple[Reply, list[int]]:
    """Compile, load and attach the observation programs; the reply and the fds to send."""
    hdrs = headers_mod.ensure()
    from bcc import BPF  # imported here only: this process exits when the programs are loaded

    observe_flags, observation = (
        observation_support() if settings.observe else ([], "observation is turned off")
    )
    source = program_source(observe=bool(observe_flags))
    bpf = BPF(text=source.encode(), cflags=build_cflags(settings) + observe_flags)
    for name in MAIN_PROGRAMS:
        bpf.load_func(name.encode(), bpf.SOCK_OPS if name == "ss_sockops" else bpf.SK_MSG)
    programs = [name.decode() for name in bpf.funcs]
    fds = [int(bpf.funcs[name.encode()].fd) for name in programs]
    # the perf events (tracepoints) and links (raw tracepoints) that attach the observation programs
    attachments = {**bpf.tracepoint_fds, **bpf.raw_tracepoint_fds}
    tracepoints = [tp.decode() if isinstance(tp, bytes) else str(tp) for tp in attachments]
    fds += [int(fd) for fd in attachments.values()]
    reply = Reply(
        ok=True, programs=programs, tracepoints=tracepoints, observation=observation, headers=hdrs.description
    )
    return reply, fds


def main(argv: list[str]) -> int:
    sock = socket.socket(fileno=int(argv[0]))
    try:
        settings = settings_from_json(sys.stdin.read())
        reply, fds = compile_and_load(settings)
    except KernelUnsupported as exc:
        reply, fds = Reply(ok=False, error=str(exc), unsupported=True), []
    except Exception as exc:  # bcc raises bare Exception for compile and load failures
        reply, fds = Reply(ok=False, error=str(exc) or type(exc).__name__), []
    socket.send_fds(sock, [reply.to_json()], fds)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # not bcc's atexit clean-up: it would detach the tracepoints the agent now holds


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
