/* socksplice observation: receive calls on watched sockets (raw tracepoint sock_recv_length).
 *
 * Every socket of a connection between two selected pods is in `watch` (sockops.c), whatever the
 * mode. For each receive on one, this counts what tcp_bpf would serve differently (would-differ:
 * on plain and spliced sockets) and, on spliced sockets, the results that did differ from TCP.
 * tcp_bpf_recvmsg (net/ipv4/tcp_bpf.c) differs from tcp_recvmsg in these ways, each counted here:
 * - a blocking receive with nothing queued waits once (tcp_msg_wait_data) and returns -EAGAIN
 *   when woken without data: its own FIN acknowledged (state change), a reset (error report), send
 *   space freed (write space), a signal. Whether such a wake comes is timing, not code path, and
 *   whether a blocking receive found data queued cannot be seen when it returns (and a hook on
 *   every receive system call of the node costs more than the budget), so every receive without
 *   MSG_DONTWAIT is a would-differ (blocking_receive); on a spliced socket an EAGAIN from a
 *   blocking receive without SO_RCVTIMEO is a did-differ (blocking_eagain). The socket layer folds
 *   O_NONBLOCK into flags as MSG_DONTWAIT, so event-loop applications never count here.
 * - MSG_WAITALL and SO_RCVLOWAT are not looked at (sk_msg_recvmsg returns what is queued). The
 *   length asked for is not an argument of the tracepoint: a MSG_WAITALL receive on a spliced
 *   socket that returned data before EOF counts as waitall_short. SO_RCVLOWAT is read only on
 *   sockets that set it (SS_W_RCVLOWAT: sockops and observe_fd.c's setsockopt watch).
 * A spliced socket that shows any of them demotes its endpoint at once (`demoted`): every live
 * connection of it moves to TCP at its next send (sk_msg.c). Receives, bytes and further blocking
 * receives are counted in the socket's `watch` entry and added to `evidence` every
 * SS_W_FLUSH_EVERY receives and when the socket is destroyed (observe_close.c); any difference
 * goes to `evidence` at once. A raw tracepoint: no event record is built for it.
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
	if (ret > 0) {
		w->receives += 1;
		w->bytes += ret;
	}
	int spliced = w->flags & SS_W_SPLICED;
	int blocking = !(flags & SS_MSG_DONTWAIT);
	int now = w->receives >= SS_W_FLUSH_EVERY; /* go to `evidence` now */
	if (blocking) {
		w->blocking += 1;
		if (!(w->flags & SS_W_BLOCKING)) {
			w->flags |= SS_W_BLOCKING;
			now = 1;
		}
	}
	__u32 seen = 0; /* bit (1 << SS_E_*) per difference seen in this receive */
	if (spliced && blocking && ret == -SS_EAGAIN && (__s64)ss_read(sk, SS_OFF_SK_RCVTIMEO, 8) == SS_LONG_MAX)
		seen |= 1 << SS_E_DID_BLOCKING_EAGAIN;
	if (flags & SS_MSG_WAITALL) {
		seen |= 1 << SS_E_WOULD_WAITALL;
		if (spliced && ret > 0 && !ss_eof(sk))
			seen |= 1 << SS_E_DID_WAITALL_SHORT;
	}
	if (w->flags & SS_W_RCVLOWAT) {
		int lowat = (int)ss_read(sk, SS_OFF_SK_RCVLOWAT, 4);
		if (lowat > 1) {
			seen |= 1 << SS_E_WOULD_RCVLOWAT;
			if (spliced && blocking && ret > 0 && ret < lowat && !ss_eof(sk))
				seen |= 1 << SS_E_DID_RCVLOWAT_SHORT;
		}
	}
	if (!now && !seen)
		return 0;
	struct ss_evidence_counts *ev = evidence.lookup(&w->ep);
	if (!ev)
		return 0;
	ss_flush_watch(ev, w);
	if (seen & (1 << SS_E_DID_BLOCKING_EAGAIN))
		ss_evidence_add(ev, SS_E_DID_BLOCKING_EAGAIN, 1);
	if (seen & (1 << SS_E_WOULD_WAITALL))
		ss_evidence_add(ev, SS_E_WOULD_WAITALL, 1);
	if (seen & (1 << SS_E_DID_WAITALL_SHORT))
		ss_evidence_add(ev, SS_E_DID_WAITALL_SHORT, 1);
	if (seen & (1 << SS_E_WOULD_RCVLOWAT))
		ss_evidence_add(ev, SS_E_WOULD_RCVLOWAT, 1);
	if (seen & (1 << SS_E_DID_RCVLOWAT_SHORT))
		ss_evidence_add(ev, SS_E_DID_RCVLOWAT_SHORT, 1);
	if (spliced && (seen || blocking))
		ss_demote(w->slot);
	return 0;
}
