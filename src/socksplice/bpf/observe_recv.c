/* socksplice observation: receive calls on watched sockets (raw tracepoint sock_recv_length).
 *
 * Every socket of a connection between two selected pods is in `watch` (sockops.c), whatever the
 * mode. For each receive on one, this counts in the endpoint's `evidence` what tcp_bpf would
 * serve differently (would-differ: on plain and spliced sockets) and, on spliced sockets, the
 * results that did differ from TCP. tcp_bpf_recvmsg (net/ipv4/tcp_bpf.c) differs from
 * tcp_recvmsg in these ways, each counted here:
 * - a blocking receive with nothing queued waits once (tcp_msg_wait_data) and returns -EAGAIN
 *   when woken without data: its own FIN acknowledged (state change), a reset (error report), send
 *   space freed (write space), a signal. Whether such a wake comes is timing, not code path, and
 *   whether a blocking receive found data queued cannot be seen without a hook on every receive
 *   system call of the node, so every receive without MSG_DONTWAIT is a would-differ
 *   (blocking_receive); on a spliced socket an EAGAIN from a blocking receive without
 *   SO_RCVTIMEO is a did-differ (blocking_eagain). The socket layer folds O_NONBLOCK into flags as
 *   MSG_DONTWAIT, so event-loop applications never count here.
 * - MSG_WAITALL and SO_RCVLOWAT are not looked at (sk_msg_recvmsg returns what is queued). The
 *   length asked for is not an argument of the tracepoint: a MSG_WAITALL receive on a spliced
 *   socket that returned data before EOF counts as waitall_short.
 * A spliced socket that shows any of them demotes its endpoint at once (`demoted`): every live
 * connection of it moves to TCP at its next send (sk_msg.c). A raw tracepoint: no event record is
 * built for it (cheaper than a perf tracepoint); kernel fields are read at offsets from the running
 * kernel's BTF (SS_OFF_*, loader.OBSERVE_FIELDS).
 */
#include "socksplice.h"

#define SS_MSG_PEEK 0x2
#define SS_MSG_DONTWAIT 0x40
#define SS_MSG_WAITALL 0x100
#define SS_EAGAIN 11
#define SS_RCV_SHUTDOWN 1
#define SS_LONG_MAX 0x7fffffffffffffffLL

static __always_inline int ss_eof(__u64 sk)
{
	return ss_read(sk, SS_OFF_SK_SHUTDOWN, 1) >> SS_SHUTDOWN_SHIFT & SS_RCV_SHUTDOWN;
}

/* TP_PROTO(struct sock *sk, int ret, int flags) */
RAW_TRACEPOINT_PROBE(sock_recv_length)
{
	__u64 sk = ctx->args[0];
	int ret = (int)ctx->args[1], flags = (int)ctx->args[2];
	if (flags & SS_MSG_PEEK)
		return 0; /* peeking is served alike (sk_msg_recvmsg honours MSG_PEEK) */
	struct ss_watch *w = watch.lookup(&sk);
	if (!w)
		return 0;
	struct ss_evidence_counts *ev = evidence.lookup(&w->ep);
	if (!ev)
		return 0;
	int spliced = w->flags & SS_W_SPLICED;
	int differ = 0;
	if (ret > 0) {
		ss_evidence_add(ev, SS_E_RECEIVES, 1);
		ss_evidence_add(ev, SS_E_BYTES, ret);
	}
	if (!(flags & SS_MSG_DONTWAIT)) {
		ss_evidence_add(ev, SS_E_WOULD_BLOCKING_RECEIVE, 1);
		differ = 1;
		if (spliced && ret == -SS_EAGAIN && (__s64)ss_read(sk, SS_OFF_SK_RCVTIMEO, 8) == SS_LONG_MAX)
			ss_evidence_add(ev, SS_E_DID_BLOCKING_EAGAIN, 1);
	}
	if (flags & SS_MSG_WAITALL) {
		ss_evidence_add(ev, SS_E_WOULD_WAITALL, 1);
		differ = 1;
		if (spliced && ret > 0 && !ss_eof(sk))
			ss_evidence_add(ev, SS_E_DID_WAITALL_SHORT, 1);
	}
	int lowat = (int)ss_read(sk, SS_OFF_SK_RCVLOWAT, 4);
	if (lowat > 1) {
		ss_evidence_add(ev, SS_E_WOULD_RCVLOWAT, 1);
		differ = 1;
		if (spliced && !(flags & SS_MSG_DONTWAIT) && ret > 0 && ret < lowat && !ss_eof(sk))
			ss_evidence_add(ev, SS_E_DID_RCVLOWAT_SHORT, 1);
	}
	if (differ && spliced)
		ss_demote(w->slot);
	return 0;
}
