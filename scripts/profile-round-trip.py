"""Where a 64-byte request/response round trip spends its time: plain TCP, spliced, AF_UNIX.

Brings up the demo's two pods with the agent (tools.demo.running.demo_env, the bench's set-up),
then for each path and CPU placement runs ``sslg rr`` (64 B request, 64 B response, one
connection, blocking sockets) under ``perf record -a -g -e cpu-clock`` and reports per path:
round trips per second, CPU per round trip, and the nanoseconds per round trip of each kernel
bucket (syscall layer, tcp_bpf send, redirect, tcp_bpf receive, wakeup, scheduling, idle, copy,
allocation, TCP stack, AF_UNIX, BPF programs). A second, unprofiled run per path reads the
kernel's BPF run-time statistics: nanoseconds per program run and runs per round trip, and a
short run under ``perf record -e sched:sched_switch -g`` counts per round trip how often each
end left the CPU and what it blocked in (waiting for data, a socket lock owned by the other end,
preempted).

Paths: ``plain`` (no SocketSplice), ``spliced`` (mode SpliceRelaxedReceive), ``unix`` (``sslg rr
--unix``: a socketpair served by a thread of the client), ``unix2`` (``--unix-path``: a separate
server process in the server pod; needs an sslg that has the option, see ``--sslg``).
Placements: ``free`` (the scheduler's choice), ``same`` (both ends on CPU 0), ``split`` (client
on CPU 0, server on CPU 1; not for ``unix``, whose server is a thread of the client).

Samples are counted only inside the client's run (perf's clock is CLOCK_MONOTONIC) and by what
ran: the run's own client and server processes (by pid), idle, and everything else (other users
of the machine, their sslg processes included) apart. With the
timer-based cpu-clock event a sample that falls while interrupts are off is taken when they come
back on, so time in irq-off sections lands on the unlock or switch that re-enables them.

Run as root: ``.venv/bin/python scripts/profile-round-trip.py --seconds 3 --repeats 2``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from socksplice.tools.bench import progstats
from socksplice.tools.bench.placement import PLACEMENTS, PinnedPod, cpu_sets
from socksplice.tools.bench.policies import SPLICED
from socksplice.tools.demo.running import DemoEnv, demo_env
from socksplice.tools.workloads.loadgen import ENV_LOADGEN, Server, loadgen_path

PORT = 9401
PERIOD_NS = 100_000
"""cpu-clock sampling period: 10 kHz per CPU."""

# Each sample goes to the bucket of its innermost frame that matches a rule; frames that match
# no rule (or a transparent one) pass the sample on to their caller. Rules are tried in order.
TRANSPARENT = re.compile(
    r"^(_raw_spin_unlock_irqrestore|_raw_spin_unlock_irq|_raw_spin_unlock|_raw_spin_unlock_bh|"
    r"__local_bh_enable_ip|local_bh_enable)$"
)
"""Where irq-off time is sampled late (see the module docstring): the caller is charged instead."""
BPF_FRAME = re.compile(r"^bpf_prog_[0-9a-f]+_(\w+)")
RULES: list[tuple[str, re.Pattern[str]]] = [
    (
        "copy",
        re.compile(
            r"^(copy_user_\w+|rep_movs_alternative|_copy_to_iter|_copy_from_iter\w*|copy_page_to_iter|"
            r"copy_page_from_iter|__memcpy|memcpy\w*|memmove|simple_copy_to_iter|__skb_datagram_iter|"
            r"skb_copy_datagram_iter|csum_partial_copy\w*)$"
        ),
    ),
    (
        "alloc/free",
        re.compile(
            r"^(__?kmalloc\w*|kmem_cache_alloc\w*|kmem_cache_free|kfree\w*|__kfree_skb|kfree_skb\w*|"
            r"__alloc_skb|alloc_skb\w*|__alloc_pages\w*|alloc_pages\w*|__free_pages\w*|free_unref_page\w*|"
            r"__slab_free|___slab_alloc|__slab_alloc\w*|skb_release_\w+|sk_skb_reason_drop|consume_skb|"
            r"skb_page_frag_refill|sk_page_frag_refill|page_frag_\w+|__put_page|put_page|get_page_from_freelist|"
            r"rmqueue\w*|mod_objcg_state|obj_cgroup_\w+|__memcg_slab_\w+|memcg_slab_\w+|__mod_memcg\w*|"
            r"refill_obj_stock|drain_obj_stock|mem_cgroup_\w+|__sk_mem_\w+|sk_mem_\w+|sock_rfree|sock_wfree|"
            r"skb_set_owner_w|__sk_mem_raise_allocated|kmalloc_reserve|sock_alloc_send_pskb|alloc_skb_with_frags)$"
        ),
    ),
    (
        "bpf",
        re.compile(
            r"^(bpf_prog_\w+|__bpf_prog_\w+|bpf_trace_run\d+|__bpf_trace_\w+|bpf_msg_redirect_hash|"
            r"__sock_hash_lookup_elem|sock_hash_\w+|bpf_sk_storage_\w+|bpf_local_storage_\w+|"
            r"htab_map_\w+|__htab_map_\w+|array_map_\w+|bpf_probe_read_kernel\w*|copy_from_kernel_nofault\w*|"
            r"bpf_map_\w+|__bpf_\w+|bpf_get_\w+|sk_msg_is_readable)$"
        ),
    ),
    (
        "wakeup",
        re.compile(
            r"^(try_to_wake_up|wake_up_process|ttwu_\w+|__wake_up\w*|__wake_up_common\w*|"
            r"autoremove_wake_function|woken_wake_function|default_wake_function|pollwake|"
            r"ep_poll_callback|sock_def_readable|sk_psock_data_ready|select_task_rq\w*|"
            r"enqueue_task\w*|activate_task|enqueue_entity|place_entity|wakeup_preempt\w*|"
            r"check_preempt\w*|resched_curr\w*|sched_ttwu_pending|__smp_call_single_queue|"
            r"send_call_function_single_ipi|native_send_call_func_single_ipi|\w*send_IPI\w*|"
            r"generic_smp_call_function_single_interrupt|__flush_smp_call_function_queue|"
            r"flush_smp_call_function_queue|__sysvec_call_function_single|sysvec_call_function_single|"
            r"asm_sysvec_call_function_single|sysvec_reschedule_ipi|asm_sysvec_reschedule_ipi|"
            r"select_idle_\w+|available_idle_cpu|call_function_single_prep_ipi|kick_\w+)$"
        ),
    ),
    (
        "idle (halted)",
        re.compile(
            r"^(pv_native_safe_halt|native_safe_halt|default_idle|arch_cpu_idle|acpi_safe_halt|"
            r"acpi_idle_\w+|default_idle_call|mwait_idle\w*|poll_idle)$"
        ),
    ),
    (
        "idle loop (enter/exit)",
        re.compile(
            r"^(do_idle|cpu_startup_entry|cpuidle_\w+|tick_nohz_\w+|menu_\w+|schedule_idle|"
            r"start_secondary|rest_init|nohz_\w+|call_cpuidle|idle_cpu|"
            r"__tick_nohz_\w+|tick_nohz_idle_\w+|hrtimer_\w+|__hrtimer_\w+|clockevents_\w+|"
            r"lapic_next_\w+|sched_idle_\w+|pick_next_task_idle|put_prev_task_idle)$"
        ),
    ),
    (
        "scheduling",
        re.compile(
            r"^(schedule|__schedule|schedule_timeout|pick_next_task\w*|__pick_next_\w+|pick_\w+_entity|"
            r"dequeue_task\w*|dequeue_entity|dequeue_entities|deactivate_task|block_task|finish_task_switch\w*|"
            r"__switch_to\w*|switch_mm\w*|update_curr\w*|put_prev\w*|set_next_\w+|psi_\w+|update_load_avg|"
            r"update_cfs_\w+|__update_load_avg\w*|account_\w+|update_rq_clock\w*|sched_clock\w*|"
            r"prepare_task_switch|context_switch|raw_spin_rq_\w+|newidle_balance|sched_balance_\w+|"
            r"__calc_delta\w*|reweight_\w+|update_min_vruntime|avg_vruntime\w*|vruntime_\w+|"
            r"rseq_\w+|__rseq_\w+|perf_event_task_sched_\w+|__perf_event_task_sched_\w+|"
            r"membarrier_\w+|sched_tick|update_process_times|tick_sched_\w+)$"
        ),
    ),
    (
        "tcp_bpf receive",
        re.compile(
            r"^(tcp_bpf_recvmsg\w*|sk_msg_recvmsg|tcp_msg_wait_data|__tcp_bpf_recvmsg|"
            r"sk_psock_\w*recv\w*|sk_msg_page_\w+|sk_psock_queue_empty)$"
        ),
    ),
    (
        "redirect (peer ingress)",
        re.compile(
            r"^(tcp_bpf_sendmsg_redir|bpf_tcp_ingress|sk_psock_queue_msg|sk_msg_xfer\w*|"
            r"sk_msg_init|sk_psock_get\w*|sk_psock_put)$"
        ),
    ),
    (
        "tcp_bpf send",
        re.compile(
            r"^(tcp_bpf_sendmsg|tcp_bpf_send_verdict|sk_psock_msg_verdict|sk_msg_alloc|"
            r"sk_msg_memcopy_from_iter|sk_msg_return\w*|sk_msg_free\w*|__sk_msg_free|"
            r"sk_msg_trim|sk_msg_\w+|tcp_bpf_push\w*|tcp_bpf_\w+)$"
        ),
    ),
    (
        "locks (lock_sock, spin)",
        re.compile(
            r"^(lock_sock_nested|release_sock|__lock_sock|_raw_spin_lock\w*|"
            r"native_queued_spin_lock_slowpath|queued_spin_lock_slowpath|mutex_\w+|__mutex_\w+)$"
        ),
    ),
    (
        "AF_UNIX",
        re.compile(
            r"^(unix_\w+|maybe_add_creds|scm_\w+|__scm_\w+|skb_queue_tail|skb_dequeue|"
            r"skb_unlink|sock_def_write_space)$"
        ),
    ),
    (
        "TCP/IP stack",
        re.compile(
            r"^(tcp_\w+|__tcp_\w+|ip_\w+|__ip_\w+|ipv4_\w+|ip6_\w+|inet_\w+|__inet_\w+|raw_\w+|"
            r"netif_\w+|__netif_\w+|__napi_\w+|napi_\w+|net_rx_action|process_backlog|handle_softirqs|"
            r"__do_softirq|do_softirq\w*|__dev_queue_xmit|dev_\w+|__dev_\w+|veth_\w+|br_\w+|__br_\w+|"
            r"nf_\w+|__nf_\w+|ipt_\w+|skb_\w+|__skb_\w+|sch_direct_xmit|validate_xmit_\w+|"
            r"__qdisc_\w+|qdisc_\w+|pfifo_\w+|eth_\w+|sk_reset_timer|sk_stream_\w+|sk_filter\w*|"
            r"bpf_skops_\w+|__cgroup_bpf_run_filter\w*|dst_\w+|fib_\w+|rt_\w+|neigh_\w+|"
            r"sk_page_frag\w*|lock_timer_base|mod_timer|__mod_timer|csum_\w+|__sk_dst_check|"
            r"sk_forced_mem_schedule|sock_put|__sock_wfree|sk_wait_data|sk_wait_event)$"
        ),
    ),
    (
        "syscall + socket layer",
        re.compile(
            r"^(entry_SYSCALL_64\w*|do_syscall_64|syscall_exit_to_user_mode\w*|exit_to_user_mode\w*|"
            r"syscall_return_via_sysret|entry_SYSRETQ\w*|__x64_sys_\w+|__sys_\w+|ksys_\w+|vfs_\w+|"
            r"sock_\w+|__sock_\w+|security_\w+|apparmor_\w+|aa_\w+|fdget\w*|__fdget\w*|__fget\w*|fput|"
            r"fpregs_\w+|switch_fpu_\w+|restore_fpregs\w*|syscall_trace_enter|rw_verify_area|"
            r"import_\w+|__import_\w+|move_addr_to_\w+|__check_object_size\w*|check_heap_object|"
            r"__virt_addr_valid|syscall_enter_from_user_mode\w*|arch_exit_to_user_mode\w*|"
            r"__audit_\w+|audit_\w+|__rcu_read_\w+|rcu_\w+|__fsnotify_\w+|fsnotify\w*|"
            r"x64_sys_call|int80_\w+|srso_\w+|retbleed_\w+|__x86_return_thunk|__x86_indirect_\w+|"
            r"entry_untrain_ret|untrain_ret|clear_bhb_\w+|mds_\w+)$"
        ),
    ),
]
KERNEL_IP = re.compile(r"^ffff")
OTHER = "other kernel"
USER = "user space"
BUCKET_ORDER = [r[0] for r in RULES] + [OTHER, USER]


@dataclass
class Profile:
    """Samples of one run inside the client's time window, by bucket (sslg processes only), the
    idle and foreign (other processes) samples, and the top innermost kernel symbols."""

    sslg: Counter[str] = field(default_factory=Counter)
    bpf_progs: Counter[str] = field(default_factory=Counter)
    idle: Counter[str] = field(default_factory=Counter)
    foreign: int = 0
    total: int = 0
    leaf: Counter[str] = field(default_factory=Counter)
    unmatched: Counter[str] = field(default_factory=Counter)


def classify(frames: Sequence[tuple[str, str]]) -> tuple[str, str | None, str | None]:
    """(bucket, BPF program name if inside one, the first frame no rule matched)."""
    if not frames or not KERNEL_IP.match(frames[0][0]):
        return USER, None, None
    prog = next((m.group(1) for _, s in frames if (m := BPF_FRAME.match(s))), None)
    unmatched: str | None = None
    for ip, sym in frames:
        if not KERNEL_IP.match(ip):
            break
        if TRANSPARENT.match(sym):
            continue
        for bucket, rule in RULES:
            if rule.match(sym):
                if bucket == "bpf" or (prog is not None and bucket in ("copy", "alloc/free")):
                    return "bpf", prog, unmatched
                return bucket, None, unmatched
        if unmatched is None:
            unmatched = sym
    return OTHER, None, unmatched


HEAD = re.compile(r"^(.*?)\s+(\d+)/(\d+)\s+\[\d+\]\s+(\d+)\.(\d+):\s*(.*)$")
"""perf script's first line of a sample: comm, pid/tid, [cpu], time, the tracepoint's fields."""


def _samples(data: Path) -> Iterator[tuple[str, int, int, list[tuple[str, str]]]]:
    """(comm, pid, time ns, frames innermost first as (ip, symbol)) for each sample in ``data``."""
    argv = ["perf", "script", "-i", str(data), "-F", "comm,pid,tid,cpu,time,ip,sym", "--ns"]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as proc:
        assert proc.stdout is not None
        head: tuple[str, int, int] | None = None
        frames: list[tuple[str, str]] = []
        for line in proc.stdout:
            if not line.strip():
                if head is not None:
                    yield *head, frames
                head, frames = None, []
            elif line[0] in "\t ":
                parts = line.split(None, 1)
                sym = parts[1].strip() if len(parts) > 1 else "[unknown]"
                frames.append((parts[0], sym.split("+", 1)[0]))
            else:
                m = HEAD.match(line)
                if m:
                    t = int(m.group(4)) * 1_000_000_000 + int(m.group(5))
                    head = (m.group(1).strip(), int(m.group(2)), t)
        if head is not None:
            yield *head, frames


def profile(data: Path, start_ns: int, end_ns: int, pids: set[int]) -> Profile:
    """The samples of ``data`` in the window: of the processes ``pids`` (client and server) by
    bucket, idle, and the rest (other users of the machine, sslg processes of others included)."""
    prof = Profile()
    for comm, pid, t, frames in _samples(data):
        if not start_ns <= t <= end_ns:
            continue
        prof.total += 1
        if comm == "swapper":
            bucket, _, _ = classify(frames)
            prof.idle[bucket] += 1
        elif pid in pids:
            bucket, prog, unmatched = classify(frames)
            prof.sslg[bucket] += 1
            if prog is not None:
                prof.bpf_progs[prog] += 1
            if frames and KERNEL_IP.match(frames[0][0]):
                prof.leaf[frames[0][1]] += 1
            if bucket == OTHER and unmatched:
                prof.unmatched[unmatched] += 1
        else:
            prof.foreign += 1
    return prof


SWITCH_REASONS: list[tuple[str, re.Pattern[str]]] = [
    ("lock_sock: socket owned", re.compile(r"^__lock_sock$")),
    ("wait data: tcp_bpf", re.compile(r"^(tcp_msg_wait_data|tcp_bpf_recvmsg\w*)$")),
    ("wait data: TCP", re.compile(r"^(sk_wait_data|tcp_recvmsg\w*)$")),
    ("wait data: unix", re.compile(r"^(unix_stream_data_wait|unix_stream_read_generic)$")),
    ("mutex", re.compile(r"^(__mutex_lock\w*|mutex_lock\w*)$")),
    ("wait sndbuf", re.compile(r"^(sk_stream_wait_memory|sock_alloc_send_pskb)$")),
    (
        "preempted",
        re.compile(r"^(preempt_schedule\w*|irqentry_exit\w*|exit_to_user_mode\w*|\w*_cond_resched)$"),
    ),
]


def switch_reason(state: str, frames: Sequence[tuple[str, str]]) -> str:
    """Why an sslg task left the CPU: what it blocked in, from the sched_switch call chain."""
    if state.startswith("R"):
        return "preempted"
    for _, sym in frames:
        for reason, rule in SWITCH_REASONS:
            if rule.match(sym):
                return reason
    return next((s for _, s in frames if not s.startswith(("__schedule", "schedule"))), "?")


def switches(data: Path, start_ns: int, end_ns: int, pids: set[int]) -> tuple[Counter[str], int, int]:
    """(switch-outs of ``pids`` by reason, of those how many went straight to a thread of
    ``pids``, all switches) in the window."""
    argv = ["perf", "script", "-i", str(data), "-F", "comm,pid,tid,cpu,time,trace,ip,sym", "--ns"]
    out = subprocess.run(argv, capture_output=True, text=True).stdout
    ours: list[tuple[dict[str, str], list[tuple[str, str]]]] = []
    tids: set[str] = set()
    total = 0
    for block in out.split("\n\n"):
        lines = block.strip("\n").splitlines()
        m = HEAD.match(lines[0]) if lines else None
        if not m or not start_ns <= int(m.group(4)) * 1_000_000_000 + int(m.group(5)) <= end_ns:
            continue
        total += 1
        if int(m.group(2)) not in pids:
            continue
        tids.add(m.group(3))
        frames = []
        for line in lines[1:]:
            parts = line.split(None, 1)
            if len(parts) == 2:
                frames.append((parts[0], parts[1].strip().split("+", 1)[0]))
        ours.append((dict(re.findall(r"(\w+)=(\S+)", m.group(6))), frames))
    reasons: Counter[str] = Counter(switch_reason(f.get("prev_state", ""), fr) for f, fr in ours)
    direct = sum(1 for f, _ in ours if f.get("next_pid") in tids)
    return reasons, direct, total


@contextmanager
def rr_server(path: str, server: PinnedPod, sock: Path) -> Iterator[tuple[tuple[str, ...], int | None]]:
    """The rr server a path needs; yields the client's peer arguments and the server's pid
    (None on ``unix``, whose server is a thread of the client)."""
    if path == "unix":
        yield ("--unix",), None
        return
    if path == "unix2":
        with Server(server, 0, "rr", unix_path=sock) as srv:
            yield ("--unix-path", str(sock)), srv.pid
        return
    with Server(server, PORT, "rr") as srv:
        yield ("--host", server.ipv4, "--port", str(srv.port)), srv.pid


def rr_client(
    client: PinnedPod, sslg: Path, peer: Sequence[str], count: int
) -> tuple[dict[str, Any], int, int, int]:
    """One ``sslg rr`` run: its JSON, the CLOCK_MONOTONIC window it ran in, its pid."""
    argv = [str(sslg), "rr", *peer, "--req", "64", "--resp", "64", "--count", str(count), "--warmup", "1000"]
    start = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    proc = client.popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=300)
    end = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    if proc.returncode != 0:
        raise RuntimeError(f"sslg rr failed: {err.decode(errors='replace')}")
    return json.loads(out.decode().strip().splitlines()[-1]), start, end, proc.pid


@contextmanager
def perf_record(data: Path, event: str = "cpu-clock") -> Iterator[None]:
    argv = ["perf", "record", "-a", "-g", "-e", event, "-k", "CLOCK_MONOTONIC"]
    if event == "cpu-clock":
        argv += ["-c", str(PERIOD_NS)]
    proc = subprocess.Popen(
        [*argv, "-o", str(data)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.7)  # perf opens its events and mmaps before the measured run starts
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)


def set_path(env: DemoEnv, path: str) -> None:
    env.apply(SPLICED if path == "spliced" else None)


def bpf_stats(env: DemoEnv) -> dict[str, tuple[int, int]]:
    """Run time (ns) and run count of every data path program, now."""
    out = {}
    for name, fd in progstats.program_fds(env.datapath).items():
        _kind, _short, run_time, run_cnt = progstats.prog_info(fd)
        out[name] = (run_time, run_cnt)
    return out


@dataclass
class Result:
    path: str
    placement: str
    repeat: int
    count: int
    elapsed_s: float
    p50_us: float
    mean_us: float
    window_s: float
    prof: Profile
    bytes_redirected: int
    switch_count: int = 0
    switch_reasons: Counter[str] = field(default_factory=Counter)
    switch_direct: int = 0


def run_one(
    env: DemoEnv, path: str, placement: str, repeat: int, args: argparse.Namespace, work: Path
) -> Result:
    ccpu, scpu = cpu_sets(placement, os.sched_getaffinity(0))  # type: ignore[arg-type]
    client, server = PinnedPod(env.client, ccpu), PinnedPod(env.server, scpu)  # type: ignore[arg-type]
    if path == "unix":
        client = PinnedPod(env.client, ccpu if placement == "same" else None)  # type: ignore[arg-type]
    set_path(env, path)
    data = work / f"{path}-{placement}-{repeat}.data"
    with rr_server(path, server, work / "rr.sock") as (peer, server_pid):
        rr_client(client, args.sslg, peer, 2000)  # a short run first: the rate, and a warm path
        warm, _, _, _ = rr_client(client, args.sslg, peer, 20000)
        count = max(10000, int(20000 / warm["elapsed_s"] * args.seconds))
        before = env.datapath.totals()["bytes_redirected"]
        with perf_record(data):
            res, start, end, client_pid = rr_client(client, args.sslg, peer, count)
        redirected = env.datapath.totals()["bytes_redirected"] - before
        sched = work / f"{path}-{placement}-{repeat}.sched"
        with perf_record(sched, "sched:sched_switch"):
            sres, sstart, send, sclient_pid = rr_client(client, args.sslg, peer, args.switch_count)
    prof = profile(data, start, end, {client_pid, server_pid or client_pid})
    data.unlink()
    reasons, direct, _ = switches(sched, sstart, send, {sclient_pid, server_pid or sclient_pid})
    sched.unlink()
    return Result(
        path,
        placement,
        repeat,
        res["count"],
        res["elapsed_s"],
        res["p50_us"],
        res["mean_us"],
        (end - start) / 1e9,
        prof,
        redirected,
        sres["count"] + 1000,
        reasons,
        direct,
    )


def stats_run(env: DemoEnv, path: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """An unprofiled run with BPF run-time statistics on: ns per run, runs per round trip."""
    set_path(env, path)
    client, server = PinnedPod(env.client, None), PinnedPod(env.server, None)  # type: ignore[arg-type]
    with rr_server(path, server, work / "rr.sock") as (peer, _pid):
        rr_client(client, args.sslg, peer, 2000)
        with progstats.run_time_stats():
            before = bpf_stats(env)
            res, _, _, _ = rr_client(client, args.sslg, peer, args.stats_count)
            after = bpf_stats(env)
    out: dict[str, Any] = {"path": path, "count": res["count"], "p50_us": res["p50_us"], "progs": {}}
    n = res["count"] + 1000  # the warmup round trips run too
    for name, (t1, c1) in after.items():
        t0, c0 = before.get(name, (0, 0))
        if c1 > c0:
            out["progs"][name] = {
                "ns_per_run": (t1 - t0) / (c1 - c0),
                "runs_per_rt": (c1 - c0) / n,
                "ns_per_rt": (t1 - t0) / n,
            }
    return out


def summarize(results: list[Result]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str], list[Result]] = defaultdict(list)
    for r in results:
        groups[(r.path, r.placement)].append(r)
    rows = []
    for (path, placement), rs in groups.items():
        n = sum(r.count + 1000 for r in rs)
        per = PERIOD_NS / n
        sslg: Counter[str] = Counter()
        idle: Counter[str] = Counter()
        progs: Counter[str] = Counter()
        leaf: Counter[str] = Counter()
        unmatched: Counter[str] = Counter()
        foreign = total = 0
        for r in rs:
            sslg += r.prof.sslg
            idle += r.prof.idle
            progs += r.prof.bpf_progs
            leaf += r.prof.leaf
            unmatched += r.prof.unmatched
            foreign += r.prof.foreign
            total += r.prof.total
        rows.append(
            {
                "path": path,
                "placement": placement,
                "runs": len(rs),
                "rt_per_s": [round(r.count / r.elapsed_s) for r in rs],
                "p50_us": [r.p50_us for r in rs],
                "mean_us": [r.mean_us for r in rs],
                "wall_ns_per_rt": round(sum(r.elapsed_s for r in rs) / sum(r.count for r in rs) * 1e9),
                "sslg_cpu_ns_per_rt": round(sum(sslg.values()) * per),
                "idle_ns_per_rt": round(sum(idle.values()) * per),
                "foreign_ns_per_rt": round(foreign * per),
                "foreign_share": round(foreign / max(total, 1), 3),
                "bytes_redirected_per_rt": round(sum(r.bytes_redirected for r in rs) / n, 1),
                "buckets_ns_per_rt": {b: round(sslg[b] * per) for b in BUCKET_ORDER if sslg[b]},
                "idle_buckets_ns_per_rt": {b: round(idle[b] * per) for b in BUCKET_ORDER if idle[b]},
                "bpf_progs_ns_per_rt": {p: round(c * per) for p, c in progs.most_common()},
                "top_leaf_ns_per_rt": {s: round(c * per) for s, c in leaf.most_common(25)},
                "unmatched_ns_per_rt": {s: round(c * per) for s, c in unmatched.most_common(12)},
                "switches_per_rt": _per_rt_switches(rs),
                "switches_to_other_end_per_run": [round(r.switch_direct / r.switch_count, 3) for r in rs],
                "foreign_share_per_run": [round(r.prof.foreign / max(r.prof.total, 1), 3) for r in rs],
            }
        )
    return rows


def _per_rt_switches(rs: list[Result]) -> dict[str, float]:
    """sslg switch-outs per round trip by reason, and how many went straight to the other end."""
    n = sum(r.switch_count for r in rs)
    reasons: Counter[str] = Counter()
    for r in rs:
        reasons += r.switch_reasons
    out = {k: round(v / n, 3) for k, v in reasons.most_common()}
    out["total"] = round(sum(reasons.values()) / n, 3)
    out["to_other_end"] = round(sum(r.switch_direct for r in rs) / n, 3)
    return out


def print_table(rows: list[dict[str, Any]]) -> None:
    cols = ["wall", "cpu", "idle", *BUCKET_ORDER]
    print("ns per round trip (sslg processes; 'idle' = both CPUs' idle samples in the window)")
    print(f"{'path/placement':<16}" + "".join(f"{c[:10]:>11}" for c in cols))
    for row in sorted(rows, key=lambda r: (r["placement"], r["path"])):
        vals = [row["wall_ns_per_rt"], row["sslg_cpu_ns_per_rt"], row["idle_ns_per_rt"]]
        vals += [row["buckets_ns_per_rt"].get(b, 0) for b in BUCKET_ORDER]
        print(f"{row['path'] + '/' + row['placement']:<16}" + "".join(f"{v:>11}" for v in vals))
    print("sslg switch-outs per round trip, by what the task blocked in")
    for row in sorted(rows, key=lambda r: (r["placement"], r["path"])):
        print(f"{row['path'] + '/' + row['placement']:<16} {row['switches_per_rt']}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each profiled run")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--paths", default="plain,spliced,unix,unix2")
    parser.add_argument("--placements", default="free,same,split")
    parser.add_argument("--sslg", type=Path, default=None, help="sslg binary (default: the installed one)")
    parser.add_argument(
        "--switch-count", type=int, default=20_000, help="round trips of each sched_switch recording"
    )
    parser.add_argument("--stats-count", type=int, default=100_000, help="round trips of each BPF stats run")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON results here")
    args = parser.parse_args(argv)
    if args.sslg is not None:
        os.environ[ENV_LOADGEN] = str(args.sslg)  # the servers (workloads.Server) run the same binary
    args.sslg = args.sslg or loadgen_path()
    if os.geteuid() != 0:
        print("run as root", file=sys.stderr)
        return 2
    if shutil.which("perf") is None:
        print("needs perf on PATH (Debian: apt-get install linux-perf)", file=sys.stderr)
        return 2
    paths = args.paths.split(",")
    if "unix2" in paths:
        helptext = subprocess.run([str(args.sslg), "--help"], capture_output=True, text=True).stdout
        if "--unix-path" not in helptext:
            print(f"{args.sslg} has no --unix-path: the unix2 path is left out", file=sys.stderr)
            paths.remove("unix2")
    placements = args.placements.split(",")
    unknown = [p for p in placements if p not in PLACEMENTS]
    if unknown:
        parser.error(f"--placements: unknown {','.join(unknown)} (known: {','.join(PLACEMENTS)})")
    results: list[Result] = []
    stats: list[dict[str, Any]] = []
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="socksplice-rtprof-")))
        os.chmod(work, 0o755)
        env = stack.enter_context(demo_env(work / "cluster"))
        for repeat in range(args.repeats):
            k = repeat % len(paths)
            for path in paths[k:] + paths[:k]:
                for placement in placements:
                    if path == "unix" and placement == "split":
                        continue
                    r = run_one(env, path, placement, repeat, args, work)
                    results.append(r)
                    print(
                        f"{path}/{placement} #{repeat}: {r.count / r.elapsed_s:.0f} rt/s p50 {r.p50_us} us "
                        f"foreign {r.prof.foreign / max(r.prof.total, 1):.0%}",
                        file=sys.stderr,
                    )
        for path in paths:
            stats.append(stats_run(env, path, args, work))
        env.apply(None)
    rows = summarize(results)
    print_table(rows)
    print(json.dumps({"bpf_stats": stats}, indent=1))
    if args.out is not None:
        args.out.write_text(json.dumps({"rows": rows, "bpf_stats": stats}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
