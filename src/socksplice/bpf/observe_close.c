/* socksplice observation: how watched sockets close (raw tracepoints inet_sock_set_state and
 * tcp_destroy_sock).
 *
 * close(2) with unread bytes makes TCP reset the connection (__tcp_close: "data was lost"), which
 * the peer sees as ECONNRESET. On a spliced socket the unread bytes sit in the psock, not in TCP's
 * receive queue, so TCP sends FIN and the peer sees EOF. __tcp_close sets sk_shutdown to
 * SHUTDOWN_MASK and empties TCP's receive queue before it changes the state, so:
 * - a change to CLOSE from an open state while sk_shutdown is SHUTDOWN_MASK, TCP's queue is empty,
 *   TCP bytes were unread (rcv_nxt past copied_seq, less the peer's FIN when it came: SOCK_DONE) and
 *   no error is set (a received reset also ends in CLOSE) is a close that threw bytes away:
 *   would-differ close_unread. (Entering TIME_WAIT also moves a full socket to CLOSE, its queue
 *   still holding what the application did not read yet: not a close.)
 * - on a spliced socket, a change to FIN_WAIT1 or LAST_ACK after sock_map_close dropped the psock
 *   (sk_user_data is empty: a close, not a shutdown) while it still holds receive memory
 *   (sk_rmem_alloc: the psock's unread messages, charged to it since 6.12.8/6.1.y and freed only
 *   after an RCU grace period; TCP's own queue was emptied): did-differ close_unread.
 * tcp_destroy_sock adds what the socket still counted to its endpoint's evidence and forgets the
 * socket (its address may be reused).
 */
#include "socksplice.h"

#define SS_TCP_ESTABLISHED 1
#define SS_TCP_FIN_WAIT1 4
#define SS_TCP_FIN_WAIT2 5
#define SS_TCP_CLOSE 7
#define SS_TCP_CLOSE_WAIT 8
#define SS_TCP_LAST_ACK 9
#define SS_SHUTDOWN_MASK 3
#define SS_SOCK_DONE 1 /* enum sock_flags: the peer's FIN arrived (tcp_fin) */

/* TP_PROTO(const struct sock *sk, const int oldstate, const int newstate); only TCP sockets are in
 * `watch`. */
RAW_TRACEPOINT_PROBE(inet_sock_set_state)
{
	int from = (int)ctx->args[1], to = (int)ctx->args[2];
	if (to != SS_TCP_FIN_WAIT1 && to != SS_TCP_LAST_ACK && to != SS_TCP_CLOSE)
		return 0; /* the only changes looked at below: no map look for the others, on any socket */
	__u64 sk = ctx->args[0];
	struct ss_watch *w = watch.lookup(&sk);
	if (!w)
		return 0;
	/* The endpoint's evidence is looked up only when there is something to count (most changes
	 * of a watched socket count nothing); without it nothing is counted nor demoted, as before
	 * the endpoint's first connection created it. */
	struct ss_evidence_counts *ev;
	__u32 shutdown = ss_read(sk, SS_OFF_SK_SHUTDOWN, 1) >> SS_SHUTDOWN_SHIFT & SS_SHUTDOWN_MASK;
	if (shutdown == 2 /* SEND_SHUTDOWN only: shutdown(SHUT_WR) */ && (w->flags & SS_W_BLOCKING) &&
	    (to == SS_TCP_FIN_WAIT1 || to == SS_TCP_LAST_ACK)) {
		/* A socket that receives blocking shuts down sending: a receive blocked now, in another
		 * thread, is woken when the FIN is acknowledged (observe_recv.c, case 1). */
		ev = evidence.lookup(&w->ep);
		if (!ev)
			return 0;
		ss_evidence_add(ev, SS_E_WOULD_BLOCKING_RECEIVE, 1);
		if (w->flags & SS_W_SPLICED)
			ss_demote(w->slot);
		return 0;
	}
	if (shutdown != SS_SHUTDOWN_MASK)
		return 0; /* not closed, nor shut down both ways */
	if (to == SS_TCP_CLOSE &&
	    (from == SS_TCP_ESTABLISHED || from == SS_TCP_CLOSE_WAIT || from == SS_TCP_FIN_WAIT1 || from == SS_TCP_FIN_WAIT2) &&
	    ss_read(sk, SS_OFF_SK_ERR, 4) == 0 && ss_read(sk, SS_OFF_SK_RCVQ_LEN, 4) == 0) {
		__u32 unread = (__u32)ss_read(sk, SS_OFF_TP_RCV_NXT, 4) - (__u32)ss_read(sk, SS_OFF_TP_COPIED_SEQ, 4);
		if (ss_read(sk, SS_OFF_SK_FLAGS, 8) & (1 << SS_SOCK_DONE))
			unread -= 1; /* the peer's FIN takes a sequence number */
		if ((int)unread > 0) {
			ev = evidence.lookup(&w->ep);
			if (ev)
				ss_evidence_add(ev, SS_E_WOULD_CLOSE_UNREAD, 1);
		}
		return 0;
	}
	if ((w->flags & SS_W_SPLICED) && (to == SS_TCP_FIN_WAIT1 || to == SS_TCP_LAST_ACK) &&
	    ss_read(sk, SS_OFF_SK_USER_DATA, 8) == 0 && (int)ss_read(sk, SS_OFF_SK_RMEM_ALLOC, 4) > 0) {
		ev = evidence.lookup(&w->ep);
		if (!ev)
			return 0;
		ss_evidence_add(ev, SS_E_WOULD_CLOSE_UNREAD, 1);
		ss_evidence_add(ev, SS_E_DID_CLOSE_UNREAD, 1);
		ss_demote(w->slot);
	}
	return 0;
}

/* TP_PROTO(struct sock *sk) */
RAW_TRACEPOINT_PROBE(tcp_destroy_sock)
{
	__u64 sk = ctx->args[0];
	struct ss_watch *w = watch.lookup(&sk);
	if (!w)
		return 0;
	struct ss_evidence_counts *ev = evidence.lookup(&w->ep);
	if (ev)
		ss_flush_watch(ev, w); /* what the socket counted since its last flush */
	watch.delete(&sk);
	return 0;
}
