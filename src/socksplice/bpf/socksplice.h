/* socksplice: what the sockops and sk_msg programs share with each other and with the agent.
 *
 * Two parts. The first is the ABI: every constant, struct and counter that lives in a pinned map
 * (so a new build of the programs, or of the agent, reads what an older one wrote). bpf/layout.py
 * mirrors what the agent uses of it, and tests/unit/test_bpf_abi.py compiles this part with the C
 * compiler (-DSS_ABI_ONLY) and checks the mirror and the recorded ABI of this SS_LAYOUT_VERSION
 * against it. Any change to the ABI bumps SS_LAYOUT_VERSION (and LAYOUT_VERSION in layout.py): the
 * pins live under a directory named after it (SS_PIN_DIR below), so an agent never adopts maps it
 * cannot read.
 *
 * The second part, for the programs only (bcc), declares the maps and helpers. Knobs arrive as -D
 * cflags from the loader: SS_PIN_BASE (bpffs directory <pin_root>/<name>, string),
 * SS_SOCKHASH_SIZE, SS_PAIRS_SIZE, SS_PODS_SIZE, SS_MAX_POLICIES, SS_PROGRAM_TAG (a build number
 * compiled into the programs, never the maps: programs of another tag are other programs that
 * adopt the same pins), SS_UNREAD_LIMIT (backpressure: unread bytes a receiver that did not set
 * SO_RCVBUF may hold), and where the kernel fields backpressure reads are, taken from the running
 * kernel's BTF (socksplice.kernel.btf), never from the headers bcc compiles against:
 * SS_OFF_SK_RMEM_ALLOC, SS_OFF_SK_RCVBUF, SS_OFF_SK_USERLOCKS with SS_USERLOCKS_SHIFT (a bit-field
 * on some kernels), SS_OFF_TP_WRITE_SEQ, SS_OFF_TP_RCV_NXT, SS_OFF_TP_COPIED_SEQ, SS_OFF_SK_PROT,
 * SS_OFF_PROTO_MEMORY_ALLOCATED, SS_OFF_PROTO_SYSCTL_MEM.
 */
#ifndef SOCKSPLICE_H
#define SOCKSPLICE_H

#include <linux/types.h>

/* ---- ABI: shared with the agent and with other builds over the same pins ------------------- */

#define SS_LAYOUT_VERSION 7

#define SS_MAX_PORTS 16

/* pod_config.flags */
#define SS_POD_SPLICE_ALL 0x1 /* every server port is spliced */
#define SS_POD_DRYRUN_ALL 0x2  /* every server port is counted as "would splice" */
#define SS_POD_AUTO_ALL 0x4    /* every server port is spliced once its endpoint is proven (Auto) */

/* Per pod (keyed by the pod's network namespace cookie), written by the agent. */
struct ss_pod_config {
	__u32 flags;
	__u32 policy_slot; /* counters are attributed to this policy slot (0 = none) */
	__u16 splice_ports[SS_MAX_PORTS]; /* 0 terminates */
	__u16 dryrun_ports[SS_MAX_PORTS];
	__u16 auto_ports[SS_MAX_PORTS];
};

/* Identifies one TCP connection from both ends, across destination NAT: the client's
 * address and port (which DNAT does not rewrite) and both initial sequence numbers. */
struct ss_pair_key {
	__u32 client_addr[4]; /* canonical: IPv4 as v4-mapped IPv6, network order */
	__u32 client_port;    /* host order */
	__u32 client_seq;     /* client's snd_nxt at establishment == server's rcv_nxt */
	__u32 server_seq;     /* client's rcv_nxt at establishment == server's snd_nxt */
	__u32 pad;
	__u64 netns_scope;    /* loopback connections: the netns cookie (two pods may use the same
	                       * loopback tuple at once); 0 otherwise (ends may sit in different netns) */
};

/* The end that reached ESTABLISHED first, waiting for its peer. */
struct ss_pair_val {
	__u64 sock_id;  /* socket cookie */
	__u64 sk_addr;  /* its struct sock (kernel address, read only with bpf_probe_read_kernel) */
	__u64 netns;    /* its network namespace cookie */
	__u32 local_port;
	__u32 passive;  /* 1 if it is the server end */
	__u32 spliced;  /* 1 if the first end entered the SOCKHASH: the second end follows its decision */
	__u32 pad;
};

/* A selected pod's listener saw this client's SYN (written at the request socket's RWND_INIT
 * callback). The client end enters the SOCKHASH only when its SYN was seen
 * by a local, selected listener: a socket that never gets a local peer never runs under tcp_bpf
 * (whose recvmsg has the blocking-EAGAIN hazard, docs/hazards.md). */
struct ss_hint_key {
	__u32 client_addr[4]; /* canonical, as in ss_pair_key */
	__u32 client_port;    /* host order */
	__u32 pad;
	__u64 netns_scope;    /* as in ss_pair_key */
};

struct ss_hint_val {
	__u32 server_port; /* the listener's real port (the client may see a DNAT'ed one) */
	__u32 server_mode; /* SS_MODE_* of the listener's pod for that port */
	__u64 server_netns; /* the listener's network namespace cookie (names the endpoint) */
};

/* Ordered: a connection gets the lesser of its two ends' modes. */
#define SS_MODE_NONE 0
#define SS_MODE_DRYRUN 1
#define SS_MODE_AUTO 2
#define SS_MODE_SPLICE 3

/* An endpoint: a server pod's port and one client pod that connects to it, the unit of Auto's
 * decision. Both pods by network namespace cookie (the same pod for loopback connections). */
struct ss_endpoint_key {
	__u64 server_netns;
	__u64 client_netns;
	__u32 port; /* the server's real port */
	__u32 pad;
};

#define SS_ENDPOINT_SLOTS 4096 /* demotion flags (`demoted`); slot 0 means none */

/* ss_verdict.flags: what the agent decided for an endpoint's new connections. */
#define SS_V_SPLICE 0x1    /* Auto promoted it: new connections enter the SOCKHASH (with `slot`) */
#define SS_V_UNWATCHED 0x2 /* settled on TCP for good (Demoted): new connections are not watched */
#define SS_V_SAMPLED 0x4   /* on TCP, judged too short to gain: one new connection in
			    * SS_SAMPLE_EVERY is watched, the others are not */
#define SS_SAMPLE_EVERY 16 /* a power of two */

/* Written by the agent for an endpoint it has decided (no entry: watch every new connection on
 * TCP). A connection not watched is counted once, by its client end, as unwatched_connections. */
struct ss_verdict {
	__u32 flags; /* SS_V_* */
	__u32 slot;  /* SS_V_SPLICE: index into `demoted` (1..SS_ENDPOINT_SLOTS-1) */
};

/* A socket of a watched connection (every connection between two selected pods), keyed by its
 * struct sock address, which is what tracepoints report: written by sockops, read by the
 * observation programs, deleted when the kernel destroys the socket. */
#define SS_W_SPLICED 0x1  /* the socket is in the SOCKHASH (its receives follow tcp_bpf) */
#define SS_W_SERVER 0x2   /* the server end */
#define SS_W_RCVLOWAT 0x4 /* SO_RCVLOWAT was set on it (or inherited): its receives read it */
#define SS_W_BLOCKING 0x8 /* it had a blocking receive (observe_close.c: then shutting down sending is a risk) */
#define SS_W_FLUSH_EVERY 64 /* receives counted in the socket's entry before they go to `evidence` */
struct ss_watch {
	struct ss_endpoint_key ep;
	__u32 slot;  /* the endpoint's demotion flag (0: none, as in SpliceRelaxedReceive) */
	__u32 flags; /* SS_W_* */
	/* Counted here, added to the endpoint's `evidence` every SS_W_FLUSH_EVERY receives and when
	 * the socket is destroyed: one map look per receive instead of two. */
	__u32 receives;
	__u32 pad;
	__u64 bytes;
};

/* Per endpoint, counted by the programs since the endpoint's first connection (never reset):
 * activity, then receive patterns tcp_bpf would serve differently (seen on any watched socket),
 * then results an application got that TCP would not have given (spliced sockets only). */
enum ss_evidence {
	SS_E_CONNECTIONS = 0,    /* watched connections (counted by their server end) */
	SS_E_SPLICED_CONNECTIONS,
	SS_E_UNWATCHED_CONNECTIONS, /* connections left on TCP unwatched (SS_V_UNWATCHED, SS_V_SAMPLED):
				     * not in `connections`, and their receives are not counted */
	SS_E_RECEIVES,           /* receive calls that returned data */
	SS_E_BYTES,              /* bytes those returned */
	SS_E_WOULD_BLOCKING_RECEIVE, /* a blocking receive that a wake-up without data can end (tcp_bpf:
	                              * EAGAIN): after its own shutdown, ended by an error or a signal, or
	                              * on a socket that sent enough to fill its send buffer (observe_recv.c) */
	SS_E_WOULD_WAITALL,      /* MSG_WAITALL (tcp_bpf returns what is queued) */
	SS_E_WOULD_RCVLOWAT,     /* a receive with SO_RCVLOWAT > 1 (tcp_bpf ignores it) */
	SS_E_WOULD_SPLICE,       /* splice(2) or sendfile(2) reading the socket (reads TCP's queue only) */
	SS_E_WOULD_CLOSE_UNREAD, /* close with unread bytes (TCP resets; tcp_bpf would send FIN) */
	SS_E_WOULD_FIONREAD,     /* FIONREAD/SIOCINQ where tcp_bpf has no ioctl (counts TCP's queue only) */
	SS_E_DID_BLOCKING_EAGAIN, /* a blocking receive returned EAGAIN with no SO_RCVTIMEO */
	SS_E_DID_WAITALL_SHORT,  /* MSG_WAITALL returned less than asked, before EOF */
	SS_E_DID_RCVLOWAT_SHORT, /* a blocking receive returned less than SO_RCVLOWAT */
	SS_E_DID_SPLICE,         /* splice(2)/sendfile(2) from a spliced socket */
	SS_E_DID_CLOSE_UNREAD,   /* close with unread spliced bytes (FIN where TCP resets) */
	SS_E_DID_FIONREAD,       /* FIONREAD/SIOCINQ on a spliced socket where tcp_bpf has no ioctl */
	SS_NR_EVIDENCE,
};

struct ss_evidence_counts {
	__u64 n[SS_NR_EVIDENCE];
};

/* Per-socket state in socket-local storage: written by sockops for sockets it inserts into the
 * SOCKHASH (no other socket has any), read by sk_msg. */
#define SS_SK_IN_MAP 0x1 /* socket was inserted into the SOCKHASH */
#define SS_SK_TX_TCP 0x2 /* ratchet: this direction sent payload through TCP; stays there */
#define SS_SK_BACKPRESSURE 0x4 /* the peer's unread bytes reached the limit: this direction is on
				* TCP until every byte it sent through TCP was read (sk_msg.c) */

struct ss_sock_state {
	__u64 id;      /* socket cookie (sk_msg cannot read cookies itself) */
	__u64 peer;    /* peer's socket cookie, 0 until paired */
	__u64 sk_addr; /* this socket's struct sock, recorded by sockops */
	__u64 peer_sk; /* the peer's struct sock, 0 until paired */
	__u32 flags;
	__u32 policy_slot;
	__u32 unchecked; /* bytes redirected since the peer's backlog was last read (sk_msg.c) */
	__u32 endpoint_slot; /* Auto: the endpoint's demotion flag in `demoted` (0: none) */
	__u32 policy_epoch;  /* `policy_epoch` when sockops saw the connection established: a later
			      * NetworkPolicy change (the agent bumps the epoch) hands it back to TCP */
	__u32 pad;
};

/* What the second end of a pair tells the first (peer_of, keyed by the first end's cookie). */
struct ss_peer {
	__u64 sock_id;
	__u64 sk_addr;
};

/* Per-CPU counters, indexed policy_slot * SS_NR_COUNTERS + counter. Per connection: */
enum ss_counter {
	SS_C_SOCKETS_ADDED = 0,       /* sockets inserted into the SOCKHASH */
	SS_C_PAIRS_SPLICED,           /* connections whose two ends were paired for splicing */
	SS_C_PAIRS_DRYRUN,            /* connections that would have been spliced (DryRun) */
	SS_C_PAIRS_AUDIT,             /* Auto: connections of endpoints not (yet) promoted, on TCP */
	SS_C_PAIRS_PORT_SKIPPED,      /* both ends local and selected, server port not selected */
	SS_C_PAIRS_PEER_UNKNOWN,      /* paired with a socket whose pod has no config any more */
	SS_C_CONNS_UNPAIRED,          /* client ends left on TCP, outside the SOCKHASH, because no
	                               * selected listener on this node saw their SYN (sockops) */
	/* Per message (sk_msg): */
	SS_C_MSGS_REDIRECTED,
	SS_C_BYTES_REDIRECTED,
	SS_C_MSGS_FALLBACK,           /* messages passed to TCP, all reasons below */
	SS_C_BYTES_FALLBACK,
	SS_C_FALLBACK_UNPAIRED,       /* the peer has not completed the pair yet: the ratchet engages */
	SS_C_FALLBACK_RATCHET,        /* direction already on TCP */
	SS_C_FALLBACK_REDIRECT_ERROR, /* peer no longer in the SOCKHASH */
	SS_C_FALLBACK_NO_STATE,       /* socket without socksplice state */
	SS_C_FALLBACK_BACKPRESSURE,   /* the peer's unread bytes are at the limit, or TCP bytes of
	                               * this direction are still unread */
	SS_C_BACKPRESSURE_ENTERED,    /* directions moved to TCP by backpressure */
	SS_C_BACKPRESSURE_RESUMED,    /* directions back on the splice after every TCP byte was read */
	SS_C_FALLBACK_DEMOTED,        /* Auto: the endpoint was demoted; this direction is on TCP */
	SS_C_POLICY_HANDBACKS,        /* directions handed back to TCP by a NetworkPolicy change (the
	                               * policy epoch moved since the connection was established),
	                               * each counted once: later sends count as ratchet */
	/* Errors (each fails open to TCP): */
	SS_C_ERR_SOCKHASH_UPDATE,     /* could not insert a socket (map full?) */
	SS_C_ERR_STORAGE,             /* could not create socket storage */
	SS_C_ERR_PAIRS_UPDATE,        /* could not record a waiting end (map full?) */
	SS_C_NO_POD_CONFIG,           /* sockops ran for a socket whose pod has no config */
	SS_C_ERR_WATCH,               /* could not watch a connection (watch or evidence map full?) */
	SS_NR_COUNTERS,
};

/* ---- The programs' own part: maps, knobs and helpers (bcc only) ---------------------------- */
#ifndef SS_ABI_ONLY

#include <uapi/linux/bpf.h>
#include <linux/socket.h>

#ifndef SS_PIN_BASE
#error "SS_PIN_BASE must be given by the loader"
#endif
#define SS_STR_(x) #x
#define SS_STR(x) SS_STR_(x)
/* The layout version names the pin directory: <pin_root>/<name>/v<SS_LAYOUT_VERSION>. */
#define SS_PIN_DIR SS_PIN_BASE "/v" SS_STR(SS_LAYOUT_VERSION)

#ifndef SS_SOCKHASH_SIZE
#define SS_SOCKHASH_SIZE 65536
#endif
#ifndef SS_PAIRS_SIZE
#define SS_PAIRS_SIZE 16384
#endif
#ifndef SS_PODS_SIZE
#define SS_PODS_SIZE 1024
#endif
#ifndef SS_PROGRAM_TAG
#define SS_PROGRAM_TAG 0
#endif
#ifndef SS_MAX_POLICIES
#define SS_MAX_POLICIES 256
#endif
#ifndef SS_ENDPOINTS_SIZE
#define SS_ENDPOINTS_SIZE 16384
#endif

#define SS_SOL_TCP 6 /* SOL_TCP (IPPROTO_TCP) */
#define SS_TCP_BPF_RTO_MIN 1004 /* uapi bpf.h, since Linux 5.10 */
#define SS_CHECK_EVERY (64 << 10) /* backpressure: bytes between looks at the peer's backlog */
#ifndef SS_UNREAD_LIMIT
#define SS_UNREAD_LIMIT (4 << 20)
#endif
#ifndef SS_NODE_TCP_MEM_LOW
#define SS_NODE_TCP_MEM_LOW 0 /* pages; 0: the kernel's tcp_mem[0] */
#endif
#define SS_SOCK_RCVBUF_LOCK 2 /* include/net/sock.h */
#if !defined(SS_OFF_SK_RMEM_ALLOC) || !defined(SS_OFF_SK_RCVBUF) || !defined(SS_OFF_SK_USERLOCKS) || \
	!defined(SS_USERLOCKS_SHIFT) || !defined(SS_OFF_TP_WRITE_SEQ) || !defined(SS_OFF_TP_RCV_NXT) || \
	!defined(SS_OFF_TP_COPIED_SEQ) || !defined(SS_OFF_SK_PROT) || !defined(SS_OFF_PROTO_MEMORY_ALLOCATED) || \
	!defined(SS_OFF_PROTO_SYSCTL_MEM)
#error "the loader must give the kernel field offsets (SS_OFF_*) from the running kernel's BTF"
#endif
#ifndef SS_OBSERVE
#define SS_OBSERVE 0 /* 1: the observation programs are compiled in (observe_*.c), with their SS_OFF_* */
#endif
#ifndef SS_FIONREAD_DIFFERS
#define SS_FIONREAD_DIFFERS 0
#endif

BPF_TABLE_PINNED("hash", __u64, struct ss_pod_config, pod_config, SS_PODS_SIZE, SS_PIN_DIR "/pod_config");
BPF_TABLE_PINNED("lru_hash", struct ss_pair_key, struct ss_pair_val, pairs, SS_PAIRS_SIZE, SS_PIN_DIR "/pairs");
BPF_TABLE_PINNED("lru_hash", struct ss_hint_key, struct ss_hint_val, syn_hints, SS_PAIRS_SIZE,
		 SS_PIN_DIR "/syn_hints");
BPF_TABLE_PINNED("lru_hash", __u64, struct ss_peer, peer_of, SS_PAIRS_SIZE, SS_PIN_DIR "/peer_of");
BPF_TABLE_PINNED("percpu_array", __u32, __u64, counters, SS_MAX_POLICIES * SS_NR_COUNTERS,
		 SS_PIN_DIR "/counters");
BPF_TABLE_PINNED("hash", struct ss_endpoint_key, struct ss_verdict, verdicts, SS_ENDPOINTS_SIZE,
		 SS_PIN_DIR "/verdicts");
BPF_TABLE_PINNED("percpu_hash", struct ss_endpoint_key, struct ss_evidence_counts, evidence, SS_ENDPOINTS_SIZE,
		 SS_PIN_DIR "/evidence");
BPF_TABLE_PINNED("array", __u32, __u32, demoted, SS_ENDPOINT_SLOTS, SS_PIN_DIR "/demoted");
/* One entry: the node's NetworkPolicy epoch, bumped by the agent when a NetworkPolicy change could
 * affect a spliced pod; a connection established under an older epoch sends through TCP. */
BPF_TABLE_PINNED("array", __u32, __u32, policy_epoch, 1, SS_PIN_DIR "/policy_epoch");
BPF_TABLE_PINNED("lru_hash", __u64, struct ss_watch, watch, SS_SOCKHASH_SIZE, SS_PIN_DIR "/watch");

/* BPF_SOCKHASH and BPF_SK_STORAGE, pinned (bcc has no pinned variant of either). */
struct sock_hash_table_t {
	__u64 key;
	int leaf;
	int (*update)(__u64 *, int *);
	int (*delete)(__u64 *);
	int (*sock_hash_update)(void *, void *, __u64);
	int (*msg_redirect_hash)(void *, void *, __u64);
	int (*sk_redirect_hash)(void *, void *, __u64);
	__u32 max_entries;
};
__attribute__((section("maps/sockhash:" SS_PIN_DIR "/sock_hash")))
struct sock_hash_table_t sock_hash = {.max_entries = SS_SOCKHASH_SIZE};
BPF_ANNOTATE_KV_PAIR(sock_hash, __u64, int);

struct sk_state_table_t {
	int key;
	struct ss_sock_state leaf;
	void *(*sk_storage_get)(void *, void *, int);
	int (*sk_storage_delete)(void *);
	__u32 flags;
};
__attribute__((section("maps/sk_storage:" SS_PIN_DIR "/sk_state")))
struct sk_state_table_t sk_state = {.flags = BPF_F_NO_PREALLOC};
BPF_ANNOTATE_KV_PAIR(sk_state, int, struct ss_sock_state);

/* bcc 0.26 declares bpf_get_socket_cookie as returning u32; the helper returns the full u64. */
static __u64 (*ss_get_socket_cookie)(void *ctx) = (void *)BPF_FUNC_get_socket_cookie;

/* Context fields must be read with their own width: the verifier rejects a compiler-merged
 * 64-bit load of two adjacent 32-bit fields. */
#define SS_CTX_U32(field) (*(volatile __u32 *)&(field))

/* The build (SS_PROGRAM_TAG) as an instruction of each program, which does nothing else: two
 * builds that differ only by their tag are other bytecode, so the kernel gives them other program
 * tags (bpf_prog_info.tag hashes the instructions) and an upgrade really replaces the programs. */
#define SS_BUILD_MARK() asm volatile("" : : "r"((__u64)SS_PROGRAM_TAG))

static __always_inline void ss_count(__u32 slot, __u32 counter, __u64 n)
{
	if (slot >= SS_MAX_POLICIES)
		slot = 0;
	__u32 idx = slot * SS_NR_COUNTERS + counter;
	__u64 *v = counters.lookup(&idx);
	if (v)
		*v += n;
}

/* Read kernel memory at a BTF offset (a miss reads 0). Little-endian: a 1- or 4-byte read fills
 * the low bytes. */
static __always_inline __u64 ss_read(__u64 addr, __u32 off, __u32 size)
{
	__u64 v = 0;
	bpf_probe_read_kernel(&v, size & 0xf, (void *)(addr + off));
	return v;
}

/* Add what a socket's `watch` entry counted to its endpoint's evidence, and start again. */
static __always_inline void ss_flush_watch(struct ss_evidence_counts *ev, struct ss_watch *w)
{
	ev->n[SS_E_RECEIVES] += w->receives;
	ev->n[SS_E_BYTES] += w->bytes;
	w->receives = 0;
	w->bytes = 0;
}

/* Demote an endpoint's live connections: each moves to TCP at its next send (sk_msg.c). */
static __always_inline void ss_demote(__u32 slot)
{
	if (slot == 0 || slot >= SS_ENDPOINT_SLOTS)
		return;
	__u32 *d = demoted.lookup(&slot);
	if (d)
		*d = 1;
}

/* `evidence` is per CPU (the two ends of an endpoint count on different CPUs without sharing a
 * cache line, and without atomics); the agent sums the CPUs. */
static __always_inline void ss_evidence_add(struct ss_evidence_counts *ev, __u32 kind, __u64 n)
{
	if (kind < SS_NR_EVIDENCE)
		ev->n[kind] += n;
}

#endif /* SS_ABI_ONLY */
#endif /* SOCKSPLICE_H */
