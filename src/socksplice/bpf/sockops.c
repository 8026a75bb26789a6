/* socksplice sockops program: attached to selected pods' cgroups.
 *
 * At ACTIVE/PASSIVE_ESTABLISHED it pairs the two ends of a connection by the client's address
 * and port plus both initial sequence numbers, which destination NAT (a ClusterIP) does not
 * rewrite. The end that arrives first waits in `pairs`;
 * the second end completes the pair, inserts itself into the SOCKHASH and tells the first end
 * who its peer is through `peer_of`. Only a socket that enters the SOCKHASH gets per-socket state
 * (`sk_state`, read by sk_msg): a connection left on TCP, watched for Auto or not, allocates none.
 * Any miss leaves the socket on plain TCP.
 *
 * Only sockets with a local, selected peer enter the SOCKHASH: the client end when a selected
 * listener on this node saw its SYN (`syn_hints`), the server end when it completes a pair. Every
 * socket in a SOCKHASH runs under tcp_bpf for its life, whose recvmsg differs from TCP's
 * (docs/hazards.md); a socket that can never be spliced is left on plain TCP entirely.
 *
 * Both ends of a connection between two selected pods are watched for Auto (`watch`), unless the
 * agent's verdict for the endpoint leaves its new connections unwatched (SS_V_UNWATCHED, and
 * SS_V_SAMPLED but for one in SS_SAMPLE_EVERY): then the client end only counts the connection
 * and records no pair, so the server end finds none and does nothing.
 */
#include "socksplice.h"

static __always_inline int ss_port_mode(const struct ss_pod_config *cfg, __u16 port)
{
	if (cfg->flags & SS_POD_SPLICE_ALL)
		return SS_MODE_SPLICE;
#pragma unroll
	for (int i = 0; i < SS_MAX_PORTS; i++)
		if (cfg->splice_ports[i] == port)
			return SS_MODE_SPLICE;
	if (cfg->flags & SS_POD_AUTO_ALL)
		return SS_MODE_AUTO;
#pragma unroll
	for (int i = 0; i < SS_MAX_PORTS; i++)
		if (cfg->auto_ports[i] == port)
			return SS_MODE_AUTO;
	if (cfg->flags & SS_POD_DRYRUN_ALL)
		return SS_MODE_DRYRUN;
#pragma unroll
	for (int i = 0; i < SS_MAX_PORTS; i++)
		if (cfg->dryrun_ports[i] == port)
			return SS_MODE_DRYRUN;
	return SS_MODE_NONE;
}

/* Canonical address: IPv4 as v4-mapped IPv6, so that IPv4 clients of dual-stack (AF_INET6)
 * listeners produce the same key on both ends. */
static __always_inline void ss_addr(struct bpf_sock_ops *skops, int remote, __u32 out[4])
{
	/* Every field is read unconditionally: a conditional read lets the compiler select a
	 * context pointer, which the verifier refuses. */
	__u32 r4 = SS_CTX_U32(skops->remote_ip4), l4 = SS_CTX_U32(skops->local_ip4);
	__u32 r6[4], l6[4];
#pragma unroll
	for (int i = 0; i < 4; i++) {
		r6[i] = SS_CTX_U32(skops->remote_ip6[i]);
		l6[i] = SS_CTX_U32(skops->local_ip6[i]);
	}
	if (skops->family == AF_INET) {
		out[0] = 0;
		out[1] = 0;
		out[2] = bpf_htonl(0x0000ffff);
		out[3] = remote ? r4 : l4;
		return;
	}
#pragma unroll
	for (int i = 0; i < 4; i++)
		out[i] = remote ? r6[i] : l6[i];
}

static __always_inline int ss_is_loopback(const __u32 a[4])
{
	if (a[0] != 0 || a[1] != 0)
		return 0;
	if (a[2] == bpf_htonl(0x0000ffff))
		return (bpf_ntohl(a[3]) >> 24) == 127;
	return a[2] == 0 && a[3] == bpf_htonl(1);
}

/* A spliced socket's TCP fallback (backpressure, the ratchet, a demotion) retransmits after a
 * same-node timeout, not the WAN default of 200 ms. Under backpressure the fallback segments reach a
 * receiver whose sk_rmem_alloc still counts the unread spliced backlog, above its sk_rcvbuf: TCP
 * drops them (TCPRcvQDrop, then beyond the zero window it advertised), and nothing but the
 * retransmission timer sends them again, because the receiver reads the spliced bytes without
 * sending a window update (tcp_bpf_recvmsg). With one CPU for both ends every fallback waited a
 * full RTO, 4x slower than TCP (docs/datapath-log.md section 12). The kernel accepts an RTO floor of
 * at least TCP_TIMEOUT_MIN (2 jiffies: 2 ms at HZ=1000, 8 ms at 250, 20 ms at 100), so the smallest
 * that this kernel's HZ accepts is taken; when none is (a kernel without TCP_BPF_RTO_MIN) the socket
 * keeps the default. The RTO never drops below the measured round-trip time plus its variance. */
static __always_inline void ss_same_node_rto(struct bpf_sock_ops *skops)
{
	int us = 2000;
	if (bpf_setsockopt(skops, SS_SOL_TCP, SS_TCP_BPF_RTO_MIN, &us, sizeof(us)) == 0)
		return;
	us = 8000;
	if (bpf_setsockopt(skops, SS_SOL_TCP, SS_TCP_BPF_RTO_MIN, &us, sizeof(us)) == 0)
		return;
	us = 20000;
	bpf_setsockopt(skops, SS_SOL_TCP, SS_TCP_BPF_RTO_MIN, &us, sizeof(us));
}

/* Enter the SOCKHASH with the socket state sk_msg reads: created here, on the branch that
 * splices, and nowhere else (no program reads socket storage of a socket outside the SOCKHASH, so
 * a connection left on TCP, watched or not, never allocates any). The state is complete before
 * the insertion: from then on sk_msg may run for the socket. NULL on a miss (counted): the socket
 * stays on TCP. */
static __always_inline struct ss_sock_state *ss_enter(struct bpf_sock_ops *skops, struct bpf_sock *sk, __u64 *id,
						      __u32 policy_slot, __u32 ep_slot, __u64 peer, __u64 peer_sk)
{
	struct ss_sock_state *st = sk_state.sk_storage_get(sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st) {
		ss_count(policy_slot, SS_C_ERR_STORAGE, 1);
		return 0;
	}
	st->id = *id;
	st->sk_addr = (__u64)sk; /* a privileged program may keep a kernel address as a number */
	st->policy_slot = policy_slot;
	st->endpoint_slot = ep_slot;
	st->peer = peer; /* the server end knows its peer; the client learns it in sk_msg (peer_of) */
	st->peer_sk = peer_sk;
	__u32 zero = 0;
	__u32 *epoch = policy_epoch.lookup(&zero);
	st->policy_epoch = epoch ? *epoch : 0;
	int rc = sock_hash.sock_hash_update(skops, id, BPF_ANY); /* bcc rewrites this call as a statement */
	if (rc != 0) {
		ss_count(policy_slot, SS_C_ERR_SOCKHASH_UPDATE, 1);
		return 0;
	}
	st->flags |= SS_SK_IN_MAP;
	ss_same_node_rto(skops);
	ss_count(policy_slot, SS_C_SOCKETS_ADDED, 1);
	return st;
}

/* A connection's mode is the lesser of its two ends' (SS_MODE_* are ordered). */
static __always_inline int ss_min_mode(int a, int b)
{
	return a < b ? a : b;
}

/* The agent's decision for an endpoint (NULL: none yet, watch every connection on TCP). */
static __always_inline struct ss_verdict *ss_verdict_of(int mode, const struct ss_endpoint_key *ep)
{
	if (mode != SS_MODE_AUTO && mode != SS_MODE_DRYRUN)
		return 0;
	return verdicts.lookup((void *)ep);
}

/* Whether a new connection of this endpoint enters the SOCKHASH, and its demotion slot: always in
 * SpliceRelaxedReceive (no slot: that mode never demotes), in Auto only when the agent promoted
 * the endpoint (`verdicts`). */
static __always_inline int ss_decide(int mode, const struct ss_verdict *v, __u32 *slot)
{
	*slot = 0;
	if (mode == SS_MODE_SPLICE)
		return 1;
	if (mode != SS_MODE_AUTO || !v || !(v->flags & SS_V_SPLICE) || v->slot == 0 || v->slot >= SS_ENDPOINT_SLOTS)
		return 0;
	__u32 s = v->slot;
	__u32 *d = demoted.lookup(&s);
	if (!d || *d) /* demoted since the agent last wrote the verdict */
		return 0;
	*slot = s;
	return 1;
}

/* Whether a new connection that stays on TCP goes unwatched: its endpoint is settled there for
 * good, or sampled (one connection in SS_SAMPLE_EVERY is watched). */
static __always_inline int ss_unwatched(int mode, const struct ss_verdict *v)
{
	if (mode == SS_MODE_SPLICE || !v)
		return 0;
	if (v->flags & SS_V_UNWATCHED)
		return 1;
	return (v->flags & SS_V_SAMPLED) && (bpf_get_prandom_u32() & (SS_SAMPLE_EVERY - 1)) != 0;
}

/* A connection left unwatched: counted by its client end, and nothing else is recorded for it
 * (no pair: its server end finds none and does nothing). */
static __always_inline void ss_count_unwatched(const struct ss_endpoint_key *ep, int mode, __u32 policy_slot)
{
	ss_count(policy_slot, mode == SS_MODE_DRYRUN ? SS_C_PAIRS_DRYRUN : SS_C_PAIRS_AUDIT, 1);
	struct ss_evidence_counts *ev = evidence.lookup((void *)ep);
	if (ev)
		ss_evidence_add(ev, SS_E_UNWATCHED_CONNECTIONS, 1);
}

/* Watch this socket of a connection between two selected pods: the observation programs look it
 * up by its struct sock address. SO_RCVLOWAT set before (or inherited from the listener) marks it
 * so that its receives read it (observe_recv.c). */
static __always_inline void ss_watch_sock(struct bpf_sock_ops *skops, __u64 sk_addr, const struct ss_endpoint_key *ep,
					  __u32 slot, __u32 flags, __u32 policy_slot)
{
	int lowat = 0;
	if (bpf_getsockopt(skops, 1 /* SOL_SOCKET */, 18 /* SO_RCVLOWAT */, &lowat, sizeof(lowat)) == 0 && lowat > 1)
		flags |= SS_W_RCVLOWAT;
	struct ss_watch w = {.slot = slot, .flags = flags};
	w.ep.server_netns = ep->server_netns;
	w.ep.client_netns = ep->client_netns;
	w.ep.port = ep->port;
	if (watch.update(&sk_addr, &w) != 0)
		ss_count(policy_slot, SS_C_ERR_WATCH, 1);
}

/* The server end counts the endpoint's connections (creating its evidence on the first). */
static __always_inline void ss_count_connection(const struct ss_endpoint_key *ep, int spliced, __u32 policy_slot)
{
	struct ss_evidence_counts *ev = evidence.lookup((void *)ep);
	if (!ev) {
		struct ss_evidence_counts zero = {};
		evidence.update((void *)ep, &zero); /* BPF_ANY: a racing creator only zeroes a new entry */
		ev = evidence.lookup((void *)ep);
		if (!ev) {
			ss_count(policy_slot, SS_C_ERR_WATCH, 1);
			return;
		}
	}
	ss_evidence_add(ev, SS_E_CONNECTIONS, 1);
	if (spliced)
		ss_evidence_add(ev, SS_E_SPLICED_CONNECTIONS, 1);
}

/* A request socket (the server end during the handshake): note that a selected listener here
 * saw this client's SYN, and in which mode it would splice the port (also none: the server end
 * then counts the pair as skipped for its port). */
static __always_inline void ss_note_syn(struct bpf_sock_ops *skops)
{
	__u64 netns = bpf_get_netns_cookie(skops);
	struct ss_pod_config *cfg = pod_config.lookup(&netns);
	if (!cfg)
		return;
	__u32 port = SS_CTX_U32(skops->local_port);
	int mode = ss_port_mode(cfg, port);
	struct ss_hint_key key = {};
	ss_addr(skops, 1, key.client_addr);
	key.client_port = bpf_ntohl(SS_CTX_U32(skops->remote_port));
	if (ss_is_loopback(key.client_addr))
		key.netns_scope = netns;
	struct ss_hint_val val = {.server_port = port, .server_mode = mode, .server_netns = netns};
	syn_hints.update(&key, &val);
}

int ss_sockops(struct bpf_sock_ops *skops)
{
	SS_BUILD_MARK();
	__u32 op = skops->op;
	__u32 family = skops->family;
	if (family != AF_INET && family != AF_INET6)
		return 1;
	/* RWND_INIT runs once per SYN (tcp_openreq_init_rwin, from tcp_conn_request) on every path,
	 * syncookies and fast open included; TIMEOUT_INIT, which follows it on most paths, would only
	 * write the same hint again. */
	if (op == BPF_SOCK_OPS_RWND_INIT && !skops->is_fullsock) {
		ss_note_syn(skops);
		return 1;
	}
	if (op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB && op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		return 1;
	struct bpf_sock *sk = skops->sk;
	if (!sk)
		return 1;

	int passive = op == BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB;
	__u64 netns = bpf_get_netns_cookie(skops);
	struct ss_pod_config *cfg = pod_config.lookup(&netns);
	if (!cfg) {
		ss_count(0, SS_C_NO_POD_CONFIG, 1);
		return 1;
	}
	__u32 slot = cfg->policy_slot;
	__u64 sk_addr = (__u64)sk; /* a privileged program may keep a kernel address as a number */

	struct ss_pair_key key = {};
	ss_addr(skops, passive, key.client_addr);
	__u32 local_port = SS_CTX_U32(skops->local_port);
	__u32 remote_port = bpf_ntohl(SS_CTX_U32(skops->remote_port));
	__u32 snd_nxt = SS_CTX_U32(skops->snd_nxt);
	__u32 rcv_nxt = SS_CTX_U32(skops->rcv_nxt);
	key.client_port = passive ? remote_port : local_port;
	key.client_seq = passive ? rcv_nxt : snd_nxt;
	key.server_seq = passive ? snd_nxt : rcv_nxt;

	if (ss_is_loopback(key.client_addr))
		key.netns_scope = netns;

	struct ss_pair_val *first = pairs.lookup(&key);
	if (!first) {
		/* First end: the client (its ESTABLISHED runs before it sends the handshake's last
		 * ACK, so before the server's). It waits for its peer only when a selected listener on
		 * this node saw its SYN; then, if both would splice, it enters the SOCKHASH now so that
		 * sk_msg sees its very first send (and keeps it on TCP if the peer is not there yet). */
		if (passive)
			return 1;
		struct ss_hint_key hkey = {.client_port = local_port, .netns_scope = key.netns_scope};
#pragma unroll
		for (int i = 0; i < 4; i++)
			hkey.client_addr[i] = key.client_addr[i];
		struct ss_hint_val *hint = syn_hints.lookup(&hkey);
		if (!hint) {
			/* No local, selected listener: the whole connection stays on TCP, outside the
			 * SOCKHASH (counted once per connection here; it never reaches sk_msg). */
			ss_count(slot, SS_C_CONNS_UNPAIRED, 1);
			return 1;
		}
		int mode = ss_min_mode(hint->server_mode, ss_port_mode(cfg, (__u16)hint->server_port));
		struct ss_endpoint_key ep = {.server_netns = hint->server_netns, .client_netns = netns, .port = hint->server_port};
		syn_hints.delete(&hkey);
		struct ss_verdict *verdict = ss_verdict_of(mode, &ep);
		__u32 ep_slot = 0;
		__u64 id = 0; /* the socket cookie, read only for a socket that enters the SOCKHASH */
		int splice = 0;
		if (mode != SS_MODE_NONE && ss_decide(mode, verdict, &ep_slot)) {
			id = ss_get_socket_cookie(skops);
			splice = ss_enter(skops, sk, &id, slot, ep_slot, 0, 0) != 0;
		} else if (mode != SS_MODE_NONE && ss_unwatched(mode, verdict)) {
			ss_count_unwatched(&ep, mode, slot);
			return 1;
		}
		/* The server end reads the peer's pod, port and decision from here; the cookie and
		 * address only when it splices. */
		struct ss_pair_val me = {.sock_id = id,
					 .sk_addr = sk_addr,
					 .netns = netns,
					 .local_port = local_port,
					 .passive = passive,
					 .spliced = splice};
		if (pairs.update(&key, &me) != 0)
			ss_count(slot, SS_C_ERR_PAIRS_UPDATE, 1); /* if spliced: its sends stay on TCP (unpaired) */
		if (mode == SS_MODE_NONE)
			return 1;
		if (splice)
			ss_watch_sock(skops, sk_addr, &ep, ep_slot, SS_W_SPLICED, slot);
		else
			ss_watch_sock(skops, sk_addr, &ep, 0, 0, slot);
		return 1;
	}

	/* Second end: the pair is complete. */
	__u64 peer_id = first->sock_id;
	__u64 peer_sk = first->sk_addr;
	__u64 peer_netns = first->netns;
	int first_spliced = first->spliced;
	__u16 server_port = passive ? local_port : first->local_port;
	pairs.delete(&key);

	struct ss_pod_config *peer_cfg = pod_config.lookup(&peer_netns);
	if (!peer_cfg) {
		ss_count(slot, SS_C_PAIRS_PEER_UNKNOWN, 1);
		return 1;
	}
	int mode = ss_min_mode(ss_port_mode(cfg, server_port), ss_port_mode(peer_cfg, server_port));
	if (mode == SS_MODE_NONE) {
		ss_count(slot, SS_C_PAIRS_PORT_SKIPPED, 1);
		return 1;
	}
	/* The second end is the server (the client always arrives first: see above). */
	struct ss_endpoint_key ep = {.server_netns = netns, .client_netns = peer_netns, .port = server_port};
	/* Splice only when the first end entered the SOCKHASH (its decision stands: a verdict written
	 * between the two ends' callbacks changes nothing for this connection). */
	if (!passive || !first_spliced || (mode != SS_MODE_SPLICE && mode != SS_MODE_AUTO)) {
		ss_count(slot, mode == SS_MODE_DRYRUN ? SS_C_PAIRS_DRYRUN : SS_C_PAIRS_AUDIT, 1);
		if (passive) {
			ss_watch_sock(skops, sk_addr, &ep, 0, SS_W_SERVER, slot);
			ss_count_connection(&ep, 0, slot);
		}
		return 1;
	}
	__u32 ep_slot = 0;
	ss_decide(mode, ss_verdict_of(mode, &ep), &ep_slot); /* the slot only: the first end's decision stands */
	__u64 id = ss_get_socket_cookie(skops);
	if (!ss_enter(skops, sk, &id, slot, ep_slot, peer_id, peer_sk)) {
		ss_watch_sock(skops, sk_addr, &ep, 0, SS_W_SERVER, slot);
		ss_count_connection(&ep, 0, slot);
		return 1;
	}
	/* Only now may the first end redirect to us: we are in the SOCKHASH. */
	struct ss_peer me = {.sock_id = id, .sk_addr = sk_addr};
	peer_of.update(&peer_id, &me);
	ss_count(slot, SS_C_PAIRS_SPLICED, 1);
	ss_watch_sock(skops, sk_addr, &ep, ep_slot, SS_W_SPLICED | SS_W_SERVER, slot);
	ss_count_connection(&ep, 1, slot);
	return 1;
}
