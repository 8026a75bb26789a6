/* socksplice observation: receive calls on watched sockets (tracepoint sock:sock_recv_length, and
 * the entry of the receive system calls to tell whether a blocking receive slept).
 *
 * Every socket of a connection between two selected pods is in `watch` (sockops.c), whatever the
 * mode. For each receive on one, this counts in the endpoint's `evidence` what tcp_bpf would
 * serve differently (would-differ: on plain and spliced sockets) and, on spliced sockets, the
 * results that did differ from TCP. tcp_bpf_recvmsg (net/ipv4/tcp_bpf.c) differs from
 * tcp_recvmsg in these ways, each counted here:
 * - a blocking receive with nothing queued waits once (tcp_msg_wait_data) and returns -EAGAIN
 *   when woken without data: its own FIN acknowledged (state change), a reset (error report), send
 *   space freed (write space), a signal. Whether such a wake comes is timing, not code path, so a
 *   blocking receive that sleeps at all is a would-differ (blocking_wait); on a spliced socket an
 *   EAGAIN from a blocking receive without SO_RCVTIMEO is a did-differ (blocking_eagain). Whether
 *   it slept: the thread's voluntary context switches (task_struct.nvcsw) at the system call's
 *   entry and at this tracepoint differ.
 * - MSG_WAITALL and SO_RCVLOWAT are not looked at (sk_msg_recvmsg returns what is queued).
 * A spliced socket that shows any of them demotes its endpoint at once (`demoted`): every live
 * connection of it moves to TCP at its next send (sk_msg.c). Kernel fields are read at offsets
 * from the running kernel's BTF (SS_OFF_*, loader.OBSERVE_FIELDS).
 */
#include "socksplice.h"

#define SS_MSG_PEEK 0x2
#define SS_MSG_DONTWAIT 0x40
#define SS_MSG_WAITALL 0x100
#define SS_EAGAIN 11
#define SS_RCV_SHUTDOWN 1
#define SS_LONG_MAX 0x7fffffffffffffffLL

/* The receive system call a thread is in: its voluntary context switches at entry and the length
 * it asked for (0: not known). Only threads of processes that received on a watched socket. */
struct ss_rx_entry {
	__u64 nvcsw;
	__u64 len;
	__u32 armed;
	__u32 pad;
};
BPF_TABLE("lru_hash", __u32, __u32, rx_processes, 16384);
BPF_TABLE("lru_hash", __u64, struct ss_rx_entry, rx_threads, 65536);

static __always_inline __u64 ss_nvcsw(void)
{
	return ss_read(bpf_get_current_task(), SS_OFF_TASK_NVCSW, 8);
}

static __always_inline int ss_rx_enter(__u64 len)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	if (!rx_processes.lookup(&tgid))
		return 0;
	struct ss_rx_entry e = {.nvcsw = ss_nvcsw(), .len = len, .armed = 1};
	rx_threads.update(&id, &e);
	return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_read) { return ss_rx_enter(args->count); }
TRACEPOINT_PROBE(syscalls, sys_enter_recvfrom) { return ss_rx_enter(args->size); }
TRACEPOINT_PROBE(syscalls, sys_enter_recvmsg) { return ss_rx_enter(0); }
TRACEPOINT_PROBE(syscalls, sys_enter_readv) { return ss_rx_enter(0); }

TRACEPOINT_PROBE(sock, sock_recv_length)
{
	__u64 sk = (__u64)args->sk;
	struct ss_watch *w = watch.lookup(&sk);
	if (!w)
		return 0;
	struct ss_evidence_counts *ev = evidence.lookup(&w->ep);
	if (!ev)
		return 0;
	int ret = args->ret, flags = args->flags;
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	struct ss_rx_entry *rx = rx_threads.lookup(&id);
	int waited = 0;
	__u64 asked = 0;
	if (rx && rx->armed) {
		waited = ss_nvcsw() != rx->nvcsw;
		asked = rx->len;
		rx->armed = 0;
	} else if (!rx) {
		__u32 one = 1;
		rx_processes.update(&tgid, &one); /* from its next receive on, this process is timed */
	}
	if (flags & SS_MSG_PEEK)
		return 0; /* peeking is served alike (sk_msg_recvmsg honours MSG_PEEK) */
	int spliced = w->flags & SS_W_SPLICED;
	int differ = 0;
	if (ret > 0) {
		ss_evidence_add(ev, SS_E_RECEIVES, 1);
		ss_evidence_add(ev, SS_E_BYTES, ret);
	}
	__u64 eof = ss_read(sk, SS_OFF_SK_SHUTDOWN, 1) >> SS_SHUTDOWN_SHIFT & SS_RCV_SHUTDOWN;
	if (!(flags & SS_MSG_DONTWAIT)) {
		ss_evidence_add(ev, SS_E_BLOCKING_RECEIVES, 1);
		if (waited) {
			ss_evidence_add(ev, SS_E_WOULD_BLOCKING_WAIT, 1);
			differ = 1;
		}
		if (spliced && ret == -SS_EAGAIN && (__s64)ss_read(sk, SS_OFF_SK_RCVTIMEO, 8) == SS_LONG_MAX) {
			ss_evidence_add(ev, SS_E_DID_BLOCKING_EAGAIN, 1);
			differ = 1;
		}
	}
	if (flags & SS_MSG_WAITALL) {
		ss_evidence_add(ev, SS_E_WOULD_WAITALL, 1);
		differ = 1;
		if (spliced && ret > 0 && (__u64)ret < asked && !eof)
			ss_evidence_add(ev, SS_E_DID_WAITALL_SHORT, 1);
	}
	__u32 lowat = ss_read(sk, SS_OFF_SK_RCVLOWAT, 4);
	if ((int)lowat > 1) {
		ss_evidence_add(ev, SS_E_WOULD_RCVLOWAT, 1);
		differ = 1;
		if (spliced && !(flags & SS_MSG_DONTWAIT) && ret > 0 && ret < (int)lowat && !eof)
			ss_evidence_add(ev, SS_E_DID_RCVLOWAT_SHORT, 1);
	}
	if (differ && spliced)
		ss_demote(w->slot);
	return 0;
}
