/* socksplice observation: receive calls on watched sockets (raw tracepoint sock_recv_length).
 *
 * Every socket of a connection between two selected pods is in `watch` (sockops.c), whatever the
 * mode. For each receive on one, this counts what tcp_bpf would serve differently (would-differ:
 * on plain and spliced sockets) and, on spliced sockets, the results that did differ from TCP.
 * tcp_bpf_recvmsg (net/ipv4/tcp_bpf.c) differs from tcp_recvmsg in these ways, each counted here:
 * - a blocking receive with nothing queued waits once (tcp_msg_wait_data, one sk_wait_event) and
 *   returns -EAGAIN when woken without data; tcp_recvmsg waits again. The socket's wait queue is
 *   woken without data by (1) sk_state_change when its own FIN is acknowledged (after
 *   shutdown(SHUT_WR)), (2) sk_error_report on a reset or another error, (3) a signal (TCP restarts
 *   the call or returns EINTR), (4) sk_write_space when space frees in its send buffer after a send
 *   found it full (SOCK_NOSPACE). Arrival of data, or of the peer's FIN (queued on TCP's receive
 *   queue), ends the wait with data. So a blocking receive (without MSG_DONTWAIT) is a would-differ
 *   (blocking_receive) when: its socket has shut down sending (1); it returned an error other than
 *   SO_RCVTIMEO's EAGAIN, a reset, an error or an interrupted call: -ERESTARTSYS is seen here before
 *   the restart (2, 3); or its socket has sent a quarter of its send buffer or more in all
 *   (tcp_sock.bytes_sent against sk_sndbuf: below that a send cannot have found the buffer full, 4).
 *   A blocking request/response client that sends little and reads its replies before it closes
 *   passes; a shutdown(SHUT_WR) then read, a reset while blocked, a bulk writer that then reads
 *   blocking, a reader beside a writer thread do not. On a spliced socket an EAGAIN from a
 *   blocking receive without SO_RCVTIMEO is a did-differ (blocking_eagain): the residual risk of a
 *   reset or signal that comes only after the endpoint was promoted.
 * - MSG_WAITALL and SO_RCVLOWAT are not looked at (sk_msg_recvmsg returns what is queued). The
 *   length asked for is not an argument of the tracepoint: a MSG_WAITALL receive on a spliced
 *   socket that returned data before EOF counts as waitall_short. SO_RCVLOWAT is read only on
 *   sockets that set it (SS_W_RCVLOWAT: sockops and observe_fd.c's setsockopt watch).
 * A spliced socket that shows any of them demotes its endpoint at once (`demoted`): every live
 * connection of it moves to TCP at its next send (sk_msg.c). Receives and bytes are counted in the
 * socket's `watch` entry and added to `evidence` every SS_W_FLUSH_EVERY receives and when the
 * socket is destroyed (observe_close.c); any difference goes to `evidence` at once. A raw
 * tracepoint: no event record is built for it.
 */
#include "socksplice.h"

#define SS_MSG_PEEK 0x2
#define SS_MSG_DONTWAIT 0x40
#define SS_MSG_WAITALL 0x100
#define SS_EAGAIN 11
#define SS_RCV_SHUTDOWN 1
#define SS_SEND_SHUTDOWN 2
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
	__u32 seen = 0; /* bit (1 << SS_E_*) per difference seen in this receive */
	if (blocking) {
		w->flags |= SS_W_BLOCKING; /* observe_close.c: a later shutdown(SHUT_WR) is a risk */
		int timeo_eagain = 0;
		if (ret == -SS_EAGAIN) {
			int forever = (__s64)ss_read(sk, SS_OFF_SK_RCVTIMEO, 8) == SS_LONG_MAX;
			if (spliced && forever)
				seen |= 1 << SS_E_DID_BLOCKING_EAGAIN;
			timeo_eagain = !forever;
		}
		if ((ret < 0 && !timeo_eagain) || (ss_read(sk, SS_OFF_SK_SHUTDOWN, 1) >> SS_SHUTDOWN_SHIFT & SS_SEND_SHUTDOWN) ||
		    ss_read(sk, SS_OFF_TP_BYTES_SENT, 8) * 4 >= ss_read(sk, SS_OFF_SK_SNDBUF, 4))
			seen |= 1 << SS_E_WOULD_BLOCKING_RECEIVE;
	}
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
	if (seen & (1 << SS_E_WOULD_BLOCKING_RECEIVE))
		ss_evidence_add(ev, SS_E_WOULD_BLOCKING_RECEIVE, 1);
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
	if (spliced && seen)
		ss_demote(w->slot);
	return 0;
}
