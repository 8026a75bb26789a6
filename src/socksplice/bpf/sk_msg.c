/* socksplice sk_msg verdict program: attached to the SOCKHASH.
 *
 * Runs for every send on a socket in the SOCKHASH. Redirects the message into the peer
 * socket's receive queue when the connection is paired and this direction never used TCP;
 * otherwise passes it to TCP and sets the ratchet, so the direction stays on TCP for the
 * connection's life (a later redirected chunk would overtake bytes still in the TCP path).
 * Every decision is counted by reason. Any miss is SK_PASS: plain TCP. In Auto, a connection of an
 * endpoint that was demoted (its flag in `demoted`, set by the observation programs or the agent)
 * moves to TCP the same way, at its next send, and so does every connection established before the
 * agent last bumped the NetworkPolicy epoch (`policy_epoch`, docs/networkpolicy.md).
 *
 * Backpressure: a redirected message is queued on the peer by bpf_tcp_ingress (tcp_bpf.c), which
 * charges the peer's sk_rmem_alloc but never compares it with sk_rcvbuf, and the sender's memory
 * is released at once: nothing makes the sender wait. So before each redirect the program reads
 * the peer's sk_rmem_alloc (what it holds unread, spliced and TCP); when the message would take it
 * past the limit, the direction moves to TCP, whose window then makes the sender block or get EAGAIN as with any TCP peer. It comes back
 * only when no TCP byte of it can still be overtaken: the sender's write_seq equals the peer's
 * rcv_nxt (everything written reached the peer) and the peer's copied_seq (the application read
 * it all; tcp_bpf_recvmsg serves queued redirected bytes first and counts only TCP bytes in
 * copied_seq). The limit is what TCP lets the receiver hold: its sk_rcvbuf, or up to SS_UNREAD_LIMIT
 * while it did not set SO_RCVBUF and the node's TCP memory is below tcp_mem[0] (an autotuned TCP
 * receiver's buffer grows towards tcp_rmem[2]; a spliced one's does not). Fields are read with bpf_probe_read_kernel at offsets from the running kernel's BTF.
 */
#include "socksplice.h"

static __always_inline int ss_fallback(struct ss_sock_state *st, __u32 slot, __u32 reason, __u64 len)
{
	if (st)
		st->flags |= SS_SK_TX_TCP;
	ss_count(slot, reason, 1);
	ss_count(slot, SS_C_MSGS_FALLBACK, 1);
	ss_count(slot, SS_C_BYTES_FALLBACK, len);
	return SK_PASS;
}

/* The receiver may hold more than its sk_rcvbuf (up to SS_UNREAD_LIMIT) only when it did not set
 * SO_RCVBUF and the node's TCP memory is below tcp_mem[0] (or SS_NODE_TCP_MEM_LOW pages when set),
 * where TCP itself starts to regulate memory
 * (the protocol's memory_allocated and sysctl_mem, reached through sk_prot: no kernel symbol
 * addresses needed). */
static __always_inline __u64 ss_unread_limit(__u64 peer_sk, __u64 rcvbuf)
{
	__u64 locks = ss_read(peer_sk, SS_OFF_SK_USERLOCKS, 1) >> SS_USERLOCKS_SHIFT;
	if ((locks & SS_SOCK_RCVBUF_LOCK) || rcvbuf >= SS_UNREAD_LIMIT)
		return rcvbuf;
	__u64 prot = ss_read(peer_sk, SS_OFF_SK_PROT, 8);
	__u64 allocated = prot ? ss_read(prot, SS_OFF_PROTO_MEMORY_ALLOCATED, 8) : 0;
	__u64 sysctl_mem = prot ? ss_read(prot, SS_OFF_PROTO_SYSCTL_MEM, 8) : 0;
	if (!allocated || !sysctl_mem)
		return rcvbuf; /* cannot check the node: fail closed, TCP's own limit */
	__s64 pages = (__s64)ss_read(allocated, 0, 8);
	__s64 low = SS_NODE_TCP_MEM_LOW ? SS_NODE_TCP_MEM_LOW : (__s64)ss_read(sysctl_mem, 0, 8);
	if (pages >= low)
		return rcvbuf;
	return SS_UNREAD_LIMIT;
}

/* 0: redirect; 1: pass to TCP (the direction is, or now goes, under backpressure). */
static __always_inline int ss_backpressure(struct ss_sock_state *st, __u32 slot, __u64 len)
{
	if (!st->sk_addr || !st->peer_sk)
		return 1; /* the limit cannot be checked: fail closed, to TCP */
	/* Reading kernel memory costs about 90 ns a read on this machine kind: outside backpressure
	 * the peer is looked at once per SS_CHECK_EVERY bytes, so the limit may be passed by less
	 * than that, and small messages pay almost nothing. */
	if (!(st->flags & SS_SK_BACKPRESSURE) && st->unchecked + len < SS_CHECK_EVERY) {
		st->unchecked += len;
		return 0;
	}
	st->unchecked = 0;
	__u64 unread = ss_read(st->peer_sk, SS_OFF_SK_RMEM_ALLOC, 4);
	__u64 rcvbuf = ss_read(st->peer_sk, SS_OFF_SK_RCVBUF, 4);
	if (!(st->flags & SS_SK_BACKPRESSURE)) {
		if (unread + len <= rcvbuf || unread + len <= ss_unread_limit(st->peer_sk, rcvbuf))
			return 0;
		st->flags |= SS_SK_BACKPRESSURE;
		ss_count(slot, SS_C_BACKPRESSURE_ENTERED, 1);
		return 1;
	}
	__u64 written = ss_read(st->sk_addr, SS_OFF_TP_WRITE_SEQ, 4);
	if (written != ss_read(st->peer_sk, SS_OFF_TP_RCV_NXT, 4) ||
	    written != ss_read(st->peer_sk, SS_OFF_TP_COPIED_SEQ, 4) ||
	    unread + len > ss_unread_limit(st->peer_sk, rcvbuf) / 2)
		return 1;
	st->flags &= ~SS_SK_BACKPRESSURE;
	ss_count(slot, SS_C_BACKPRESSURE_RESUMED, 1);
	return 0;
}

int ss_sk_msg(struct sk_msg_md *msg)
{
	SS_BUILD_MARK();
	__u64 len = msg->size;
	struct bpf_sock *sk = msg->sk;
	if (!sk)
		return ss_fallback(0, 0, SS_C_FALLBACK_NO_STATE, len);
	struct ss_sock_state *st = sk_state.sk_storage_get(sk, 0, 0);
	if (!st)
		return ss_fallback(0, 0, SS_C_FALLBACK_NO_STATE, len);
	__u32 slot = st->policy_slot;
	if (st->flags & SS_SK_TX_TCP)
		return ss_fallback(st, slot, SS_C_FALLBACK_RATCHET, len);
	if (st->endpoint_slot) {
		/* Auto: the endpoint was demoted (an application of it saw, or would see, tcp_bpf's
		 * receive differences): this direction moves to TCP for good, like the ratchet. */
		__u32 ep_slot = st->endpoint_slot;
		__u32 *d = demoted.lookup(&ep_slot);
		if (d && *d)
			return ss_fallback(st, slot, SS_C_FALLBACK_DEMOTED, len);
	}

	/* A NetworkPolicy change since this connection was established: its sends go through TCP from
	 * now on, where the CNI enforces policy per packet (the ratchet: nothing redirected before
	 * is overtaken). Both ends check, so both directions move. */
	__u32 zero = 0;
	__u32 *epoch = policy_epoch.lookup(&zero);
	if (epoch && *epoch != st->policy_epoch)
		return ss_fallback(st, slot, SS_C_POLICY_HANDBACKS, len);

	__u64 peer = st->peer;
	if (!peer) {
		struct ss_peer *p = peer_of.lookup(&st->id);
		if (!p) /* the peer has not completed the pair yet (counted per message here; a
			 * connection with no local peer at all never reaches sk_msg: sockops counts it) */
			return ss_fallback(st, slot, SS_C_FALLBACK_UNPAIRED, len);
		peer = p->sock_id;
		st->peer = peer;
		st->peer_sk = p->sk_addr;
		peer_of.delete(&st->id);
	}
	if (ss_backpressure(st, slot, len)) {
		/* No ratchet here: ss_backpressure decides when this direction may come back. */
		ss_count(slot, SS_C_FALLBACK_BACKPRESSURE, 1);
		ss_count(slot, SS_C_MSGS_FALLBACK, 1);
		ss_count(slot, SS_C_BYTES_FALLBACK, len);
		return SK_PASS;
	}
	long verdict = sock_hash.msg_redirect_hash(msg, &peer, BPF_F_INGRESS);
	if (verdict != SK_PASS)
		return ss_fallback(st, slot, SS_C_FALLBACK_REDIRECT_ERROR, len);
	ss_count(slot, SS_C_MSGS_REDIRECTED, 1);
	ss_count(slot, SS_C_BYTES_REDIRECTED, len);
	return SK_PASS;
}
