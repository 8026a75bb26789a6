/* socksplice sk_msg verdict program: attached to the SOCKHASH.
 *
 * Runs for every send on a socket in the SOCKHASH. Redirects the message into the peer
 * socket's receive queue when the connection is paired and this direction never used TCP;
 * otherwise passes it to TCP and sets the ratchet, so the direction stays on TCP for the
 * connection's life (a later redirected chunk would overtake bytes still in the TCP path).
 * Every decision is counted by reason. Any miss is SK_PASS: plain TCP.
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

int ss_sk_msg(struct sk_msg_md *msg)
{
	__u64 len = msg->size;
	struct bpf_sock *sk = msg->sk;
	if (!sk)
		return ss_fallback(0, 0, SS_C_FB_NO_STATE, len);
	struct ss_sock_state *st = sk_state.sk_storage_get(sk, 0, 0);
	if (!st)
		return ss_fallback(0, 0, SS_C_FB_NO_STATE, len);
	__u32 slot = st->policy_slot;
	if (st->flags & SS_SK_TX_TCP)
		return ss_fallback(st, slot, SS_C_FB_RATCHET, len);

	__u64 peer = st->peer;
	if (!peer) {
		__u64 *p = peer_of.lookup(&st->id);
		if (!p)
			return ss_fallback(st, slot, SS_C_FB_UNPAIRED, len);
		peer = *p;
		st->peer = peer;
		peer_of.delete(&st->id);
	}
	long verdict = sock_hash.msg_redirect_hash(msg, &peer, BPF_F_INGRESS);
	if (verdict != SK_PASS)
		return ss_fallback(st, slot, SS_C_FB_REDIRECT_ERROR, len);
	ss_count(slot, SS_C_MSGS_REDIRECTED, 1);
	ss_count(slot, SS_C_BYTES_REDIRECTED, len);
	return SK_PASS;
}
