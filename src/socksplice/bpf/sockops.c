/* socksplice sockops program: attached to selected pods' cgroups.
 *
 * At ACTIVE/PASSIVE_ESTABLISHED it records per-socket state and pairs the two ends of a
 * connection by the client's address and port plus both initial sequence numbers, which
 * destination NAT (a ClusterIP) does not rewrite. The end that arrives first waits in `pairs`;
 * the second end completes the pair, inserts itself into the SOCKHASH and tells the first end
 * who its peer is through `peer_of`. Any miss leaves the socket on plain TCP.
 *
 * Only sockets with a local, selected peer enter the SOCKHASH: the client end when a selected
 * listener on this node saw its SYN (`syn_hints`), the server end when it completes a pair. Every
 * socket in a SOCKHASH runs under tcp_bpf for its life, whose recvmsg differs from TCP's
 * (docs/hazards.md); a socket that can never be spliced is left on plain TCP entirely.
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

static __always_inline int ss_insert(struct bpf_sock_ops *skops, struct ss_sock_state *st, __u64 *id)
{
	int rc = sock_hash.sock_hash_update(skops, id, BPF_ANY);
	if (rc != 0) {
		ss_count(st->policy_slot, SS_C_ERR_SOCKHASH_UPDATE, 1);
		return -1;
	}
	st->flags |= SS_SK_IN_MAP;
	ss_count(st->policy_slot, SS_C_SOCKETS_ADDED, 1);
	return 0;
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
	struct ss_hint_val val = {.server_port = port, .server_mode = mode};
	syn_hints.update(&key, &val);
}

int ss_sockops(struct bpf_sock_ops *skops)
{
	SS_BUILD_MARK();
	__u32 op = skops->op;
	__u32 family = skops->family;
	if (family != AF_INET && family != AF_INET6)
		return 1;
	if ((op == BPF_SOCK_OPS_TIMEOUT_INIT || op == BPF_SOCK_OPS_RWND_INIT) && !skops->is_fullsock) {
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
	struct ss_sock_state *st = sk_state.sk_storage_get(sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st) {
		ss_count(slot, SS_C_ERR_STORAGE, 1);
		return 1;
	}
	__u64 id = ss_get_socket_cookie(skops);
	st->id = id;
	st->sk_addr = (__u64)sk; /* a privileged program may keep a kernel address as a number */
	st->policy_slot = slot;

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
		int theirs = hint->server_mode;
		int mine = ss_port_mode(cfg, (__u16)hint->server_port);
		syn_hints.delete(&hkey);
		struct ss_pair_val me = {
			.sock_id = id, .sk_addr = st->sk_addr, .netns = netns, .local_port = local_port, .passive = passive};
		int rc = pairs.update(&key, &me);
		if (rc != 0) {
			ss_count(slot, SS_C_ERR_PAIRS_UPDATE, 1);
			return 1;
		}
		if (mine == SS_MODE_SPLICE && theirs == SS_MODE_SPLICE)
			ss_insert(skops, st, &id);
		return 1;
	}

	/* Second end: the pair is complete. */
	__u64 peer_id = first->sock_id;
	__u64 peer_sk = first->sk_addr;
	__u64 peer_netns = first->netns;
	__u16 server_port = passive ? local_port : first->local_port;
	pairs.delete(&key);

	struct ss_pod_config *peer_cfg = pod_config.lookup(&peer_netns);
	if (!peer_cfg) {
		ss_count(slot, SS_C_PAIRS_PEER_UNKNOWN, 1);
		return 1;
	}
	int mine = ss_port_mode(cfg, server_port);
	int theirs = ss_port_mode(peer_cfg, server_port);
	if (mine == SS_MODE_NONE || theirs == SS_MODE_NONE) {
		ss_count(slot, SS_C_PAIRS_PORT_SKIPPED, 1);
		return 1;
	}
	if (mine == SS_MODE_DRYRUN || theirs == SS_MODE_DRYRUN) {
		ss_count(slot, SS_C_PAIRS_DRYRUN, 1);
		return 1;
	}
	if (ss_insert(skops, st, &id) != 0)
		return 1;
	st->peer = peer_id;
	st->peer_sk = peer_sk;
	/* Only now may the first end redirect to us: we are in the SOCKHASH. */
	struct ss_peer me = {.sock_id = id, .sk_addr = st->sk_addr};
	peer_of.update(&peer_id, &me);
	ss_count(slot, SS_C_PAIRS_SPLICED, 1);
	return 1;
}
