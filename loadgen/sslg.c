/*
 * sslg — socksplice load generator.
 *
 * One small C program with subcommands (server, echo, rr, stream, crr, check). Every client
 * prints ONE JSON object on stdout when it finishes; the server prints "READY <port>" first
 * and its JSON when it gets SIGTERM/SIGINT. Errors go to stderr with a non-zero exit status.
 * See README.md in this folder for the CLI and the wire formats.
 *
 * Blocking calls loop on EINTR and on partial reads/writes. An EAGAIN on a *blocking* socket
 * (the sockmap hazard described in DESIGN.md: tcp_bpf_recvmsg returns -EAGAIN after a wakeup
 * with nothing queued) is not treated as an error: the call waits in poll() and retries, and
 * every occurrence is counted in "spurious_eagain" so a run shows whether it happened.
 *
 * --nonblock (server and clients): every socket is O_NONBLOCK, as in an event-loop
 * application. Each receive is preceded by poll(POLLIN), and a send that returns EAGAIN waits in
 * poll(POLLOUT); the kernel passes MSG_DONTWAIT for such sockets, so no receive ever sleeps in the
 * socket. An EAGAIN from a receive that poll() reported readable counts in "spurious_eagain".
 *
 * --unix-path P (server and clients): an AF_UNIX SOCK_STREAM socket bound to the path P instead
 * of TCP, so the AF_UNIX reference can run as two processes, like the TCP paths.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define KIB 1024ULL
#define MIB (1024ULL * KIB)
#define GIB (1024ULL * MIB)
#define SERVER_BUF (256 * KIB)
#define RR_HDR 8                    /* u32 BE response size, u32 BE request size */
#define RR_MAX (1ULL << 30)         /* largest request or response the rr server accepts */
#define RR_CLOSE 0x80000000U        /* flag in the request-size word: server closes after replying */
#ifndef ECHO_BLOCKING_MAX
#define ECHO_BLOCKING_MAX (64 * KIB) /* above this, echo interleaves writes and reads */
#endif
#define CHECK_MAX_IO (64 * KIB)
#define STALL_NS (10ULL * 1000 * 1000)

static atomic_uint_fast64_t g_eagain; /* EAGAIN seen on blocking sockets (or after poll said readable) */
static bool g_nonblock;               /* --nonblock: O_NONBLOCK sockets, poll() before each receive */
static void raise_nofile(void);
struct opts;
static const char *transport(const struct opts *o);

/* ------------------------------------------------------------------------------------------ */
/* errors and small utilities                                                                 */

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...)
{
	va_list ap;
	fputs("sslg: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void warnx_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void warnx_(const char *fmt, ...)
{
	va_list ap;
	fputs("sslg: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		die("out of memory (%zu bytes)", n);
	return p;
}

static double tv_s(struct timeval tv)
{
	return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

struct cpu {
	double user_s, sys_s;
};

static struct cpu cpu_now(void)
{
	struct rusage ru;
	struct cpu c = {0, 0};
	if (getrusage(RUSAGE_SELF, &ru) == 0) {
		c.user_s = tv_s(ru.ru_utime);
		c.sys_s = tv_s(ru.ru_stime);
	}
	return c;
}

/* Parses a non-negative integer with an optional binary suffix: 16K, 2M, 1G (also KiB/MiB/GiB). */
static uint64_t parse_size(const char *opt, const char *s)
{
	char *end;
	errno = 0;
	if (!s || !*s || *s == '-')
		die("--%s: expected a non-negative integer, got '%s'", opt, s ? s : "");
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s)
		die("--%s: expected a non-negative integer, got '%s'", opt, s);
	uint64_t mul = 1;
	if (*end) {
		switch (*end) {
		case 'k': case 'K': mul = KIB; break;
		case 'm': case 'M': mul = MIB; break;
		case 'g': case 'G': mul = GIB; break;
		default: die("--%s: bad suffix in '%s' (use K, M or G)", opt, s);
		}
		end++;
		if (*end == 'i' && end[1] == 'B')
			end += 2;
		else if (*end == 'B')
			end++;
		if (*end)
			die("--%s: bad suffix in '%s' (use K, M or G)", opt, s);
	}
	if (mul > 1 && v > UINT64_MAX / mul)
		die("--%s: '%s' is too large", opt, s);
	return (uint64_t)v * mul;
}

static double parse_seconds(const char *opt, const char *s)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || !(v > 0) || !isfinite(v))
		die("--%s: expected a positive number of seconds, got '%s'", opt, s);
	return v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* ------------------------------------------------------------------------------------------ */
/* I/O that survives EINTR, partial transfers and spurious EAGAIN                              */

static void wait_fd(int fd, short events)
{
	struct pollfd p = {.fd = fd, .events = events, .revents = 0};
	while (poll(&p, 1, -1) < 0 && errno == EINTR)
		;
}

/* Writes all n bytes. Returns 0, or -1 with errno set. */
static int write_all(int fd, const void *buf, size_t n)
{
	const char *p = buf;
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				if (!g_nonblock) /* a full send buffer is routine for a non-blocking socket */
					atomic_fetch_add(&g_eagain, 1);
				wait_fd(fd, POLLOUT);
				continue;
			}
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* One read of up to n bytes. Returns >0 bytes, 0 at EOF, -1 with errno set. With --nonblock
 * the socket is O_NONBLOCK and poll() says it is readable before the receive, as an event loop
 * would. */
static ssize_t read_some(int fd, void *buf, size_t n)
{
	for (;;) {
		if (g_nonblock)
			wait_fd(fd, POLLIN);
		ssize_t r = recv(fd, buf, n, 0);
		if (r >= 0)
			return r;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			atomic_fetch_add(&g_eagain, 1);
			wait_fd(fd, POLLIN);
			continue;
		}
		return -1;
	}
}

/* Reads exactly n bytes unless EOF comes first. Returns bytes read (< n at EOF), -1 on error. */
static ssize_t read_full(int fd, void *buf, size_t n)
{
	char *p = buf;
	size_t got = 0;
	while (got < n) {
		ssize_t r = read_some(fd, p + got, n - got);
		if (r < 0)
			return -1;
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

static void set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		die("fcntl(O_NONBLOCK): %s", strerror(errno));
}

static const char *io_style(void)
{
	return g_nonblock ? "nonblocking" : "blocking";
}

static void set_nodelay(int fd)
{
	int one = 1;
	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
		die("setsockopt(TCP_NODELAY): %s", strerror(errno));
}

static struct addrinfo *resolve(const char *host, const char *port)
{
	struct addrinfo hints, *res = NULL;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	int rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0)
		die("cannot resolve %s port %s: %s", host, port, gai_strerror(rc));
	return res;
}

/* Connects one socket to ai. Returns fd, or -1 with errno set. */
static int connect_ai(const struct addrinfo *ai, bool nodelay)
{
	int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
	if (fd < 0)
		return -1;
	if (nodelay && ai->ai_family != AF_UNIX) /* TCP_NODELAY is a TCP option */
		set_nodelay(fd);
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		if (errno != EINTR) {
			int e = errno;
			close(fd);
			errno = e;
			return -1;
		}
		/* Interrupted: the connect continues in the background; wait for its outcome. */
		int err = 0;
		socklen_t len = sizeof(err);
		wait_fd(fd, POLLOUT);
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
			close(fd);
			errno = err ? err : errno;
			return -1;
		}
	}
	if (g_nonblock)
		set_nonblock(fd); /* connected with a blocking connect(); every receive and send after it is non-blocking */
	return fd;
}

/* Connects to host:port, trying every address getaddrinfo returns. Dies on failure. */
static int connect_to(const char *host, const char *port, bool nodelay, const struct addrinfo **used,
		      struct addrinfo **list)
{
	struct addrinfo *res = resolve(host, port);
	int last = 0;
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		int fd = connect_ai(ai, nodelay);
		if (fd >= 0) {
			if (used && list) {
				*used = ai;
				*list = res;
			} else {
				freeaddrinfo(res);
			}
			return fd;
		}
		last = errno;
	}
	die("cannot connect to %s port %s: %s", host, port, strerror(last));
}

/* ------------------------------------------------------------------------------------------ */
/* options                                                                                    */

struct opts {
	const char *host, *port, *bind, *mode, *close_by, *unix_path;
	int v6only;
	uint64_t size, count, warmup, req, resp, write_size, bytes, seed;
	double seconds;
	bool samples, unix_pair, nonblock;
	uint64_t connections;
	bool have_connections;
	bool have_size, have_count, have_req, have_resp, have_write, have_bytes, have_seconds;
};

enum {
	O_HOST = 1000, O_PORT, O_BIND, O_MODE, O_V6ONLY, O_SIZE, O_COUNT, O_WARMUP, O_REQ, O_RESP,
	O_WRITE, O_SECONDS, O_BYTES, O_SEED, O_SAMPLES, O_CLOSE, O_HELP, O_UNIX, O_CONNECTIONS, OPT_NONBLOCK,
	O_UNIX_PATH,
};

static const struct option long_opts[] = {
	{"host", required_argument, NULL, O_HOST},       {"port", required_argument, NULL, O_PORT},
	{"bind", required_argument, NULL, O_BIND},       {"mode", required_argument, NULL, O_MODE},
	{"v6only", required_argument, NULL, O_V6ONLY},   {"size", required_argument, NULL, O_SIZE},
	{"count", required_argument, NULL, O_COUNT},     {"warmup", required_argument, NULL, O_WARMUP},
	{"req", required_argument, NULL, O_REQ},         {"resp", required_argument, NULL, O_RESP},
	{"write", required_argument, NULL, O_WRITE},     {"seconds", required_argument, NULL, O_SECONDS},
	{"bytes", required_argument, NULL, O_BYTES},     {"seed", required_argument, NULL, O_SEED},
	{"samples", no_argument, NULL, O_SAMPLES},       {"close", required_argument, NULL, O_CLOSE},
	{"help", no_argument, NULL, O_HELP},             {"unix", no_argument, NULL, O_UNIX},
	{"connections", required_argument, NULL, O_CONNECTIONS},
	{"nonblock", no_argument, NULL, OPT_NONBLOCK},
	{"unix-path", required_argument, NULL, O_UNIX_PATH},
	{NULL, 0, NULL, 0},
};

static const char usage_text[] =
	"usage:\n"
	"  sslg server (--port P [--bind ADDR] [--v6only 0|1] | --unix-path P) [--mode echo|sink|rr|check]\n"
	"              [--nonblock]\n"
	"  sslg echo   (--host H --port P | --unix | --unix-path P) --size BYTES --count N [--warmup W] [--samples]\n"
	"              [--nonblock]\n"
	"  sslg rr     (--host H --port P | --unix | --unix-path P) --req BYTES --resp BYTES --count N [--warmup W]\n"
	"              [--samples] [--nonblock]\n"
	"  sslg stream (--host H --port P | --unix | --unix-path P) --write BYTES --seconds S [--nonblock]\n"
	"  sslg crr    (--host H --port P | --unix-path P) --seconds S [--size B] [--close client|server] [--samples]\n"
	"  sslg conc   (--host H --port P | --unix-path P) --connections N --seconds S [--size B] [--samples]\n"
	"  sslg check  (--host H --port P | --unix-path P) --bytes N [--seed S] [--nonblock]\n"
	"sizes accept K, M, G suffixes (binary). --port 0 lets the server pick a free port.\n"
	"--unix-path P: an AF_UNIX stream socket at the path P instead of TCP (the server creates it).\n"
	"--nonblock (server, echo, rr, stream, check): O_NONBLOCK sockets, poll() before each receive.\n";

static void usage(int code) __attribute__((noreturn));
static void usage(int code)
{
	fputs(usage_text, code ? stderr : stdout);
	exit(code);
}

static void parse_opts(int argc, char **argv, struct opts *o)
{
	memset(o, 0, sizeof(*o));
	o->mode = "echo";
	o->close_by = "client";
	o->warmup = 10;
	o->seed = 1;
	optind = 1;
	int c;
	while ((c = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
		switch (c) {
		case O_HOST: o->host = optarg; break;
		case O_PORT: o->port = optarg; break;
		case O_BIND: o->bind = optarg; break;
		case O_MODE: o->mode = optarg; break;
		case O_V6ONLY:
			if (strcmp(optarg, "0") && strcmp(optarg, "1"))
				die("--v6only: expected 0 or 1, got '%s'", optarg);
			o->v6only = optarg[0] == '1';
			break;
		case O_SIZE: o->size = parse_size("size", optarg); o->have_size = true; break;
		case O_COUNT: o->count = parse_size("count", optarg); o->have_count = true; break;
		case O_WARMUP: o->warmup = parse_size("warmup", optarg); break;
		case O_REQ: o->req = parse_size("req", optarg); o->have_req = true; break;
		case O_RESP: o->resp = parse_size("resp", optarg); o->have_resp = true; break;
		case O_WRITE: o->write_size = parse_size("write", optarg); o->have_write = true; break;
		case O_SECONDS: o->seconds = parse_seconds("seconds", optarg); o->have_seconds = true; break;
		case O_BYTES: o->bytes = parse_size("bytes", optarg); o->have_bytes = true; break;
		case O_SEED: o->seed = parse_size("seed", optarg); break;
		case O_SAMPLES: o->samples = true; break;
		case O_UNIX: o->unix_pair = true; break;
		case O_UNIX_PATH:
			if (!*optarg || strlen(optarg) >= sizeof(((struct sockaddr_un *)0)->sun_path))
				die("--unix-path: expected a path of 1 .. %zu bytes",
				    sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
			o->unix_path = optarg;
			break;
		case OPT_NONBLOCK: o->nonblock = true; break;
		case O_CONNECTIONS:
			o->connections = parse_size("connections", optarg);
			o->have_connections = true;
			break;
		case O_CLOSE:
			if (strcmp(optarg, "client") && strcmp(optarg, "server"))
				die("--close: expected client or server, got '%s'", optarg);
			o->close_by = optarg;
			break;
		case O_HELP: usage(0);
		default: usage(2);
		}
	}
	if (optind < argc)
		die("unexpected argument '%s'", argv[optind]);
	if (o->unix_path && (o->unix_pair || o->host || o->port || o->bind))
		die("--unix-path replaces --host, --port, --bind and --unix");
	if (o->port) {
		uint64_t p = parse_size("port", o->port);
		if (p > 65535)
			die("--port: %" PRIu64 " is out of range", p);
	}
}

static void need(bool have, const char *cmd, const char *opt)
{
	if (!have)
		die("%s: --%s is required", cmd, opt);
}

/* ------------------------------------------------------------------------------------------ */
/* latency statistics and JSON                                                                */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted s[0..n), q in per-mille (500 = p50, 999 = p99.9). */
static uint64_t pct(const uint64_t *s, size_t n, unsigned permille)
{
	if (n == 0)
		return 0;
	size_t rank = (size_t)(((uint64_t)permille * n + 999) / 1000);
	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return s[rank - 1];
}

static double us(uint64_t ns)
{
	return (double)ns / 1000.0;
}

/* Prints the latency fields shared by echo, rr and crr (no braces). Sorts samples in place
 * after printing them in recorded order when wanted. */
static void print_latency_fields(uint64_t *s, size_t n, struct cpu c0, struct cpu c1, uint64_t elapsed_ns,
				 bool with_samples)
{
	if (with_samples) {
		printf(",\"samples_us\":[");
		for (size_t i = 0; i < n; i++)
			printf("%s%.3f", i ? "," : "", us(s[i]));
		printf("]");
	}
	qsort(s, n, sizeof(*s), cmp_u64);
	long double sum = 0;
	uint64_t stalls = 0;
	for (size_t i = 0; i < n; i++) {
		sum += s[i];
		if (s[i] > STALL_NS)
			stalls++;
	}
	double mean = n ? (double)(sum / n) / 1000.0 : 0.0;
	printf(",\"p50_us\":%.3f,\"p90_us\":%.3f,\"p99_us\":%.3f,\"p999_us\":%.3f,\"max_us\":%.3f,\"min_us\":%.3f"
	       ",\"mean_us\":%.3f,\"stalls_over_10ms\":%" PRIu64
	       ",\"cpu_user_s\":%.6f,\"cpu_sys_s\":%.6f,\"elapsed_s\":%.6f,\"spurious_eagain\":%" PRIu64,
	       us(pct(s, n, 500)), us(pct(s, n, 900)), us(pct(s, n, 990)), us(pct(s, n, 999)),
	       n ? us(s[n - 1]) : 0.0, n ? us(s[0]) : 0.0, mean, stalls, c1.user_s - c0.user_s,
	       c1.sys_s - c0.sys_s, (double)elapsed_ns / 1e9, (uint64_t)atomic_load(&g_eagain));
}

/* ------------------------------------------------------------------------------------------ */
/* server                                                                                     */

enum srv_mode { M_ECHO, M_SINK, M_RR };

static atomic_uint_fast64_t s_conns, s_active, s_in, s_out, s_errors;

struct conn {
	int fd;
	enum srv_mode mode;
};

static void conn_error(const char *what)
{
	int e = errno;
	atomic_fetch_add(&s_errors, 1);
	/* Peers that reset are routine under load; log everything else. */
	if (e != ECONNRESET && e != EPIPE)
		warnx_("connection: %s: %s", what, strerror(e));
}

static void serve_echo(int fd, char *buf)
{
	for (;;) {
		ssize_t r = read_some(fd, buf, SERVER_BUF);
		if (r < 0) {
			conn_error("read");
			return;
		}
		if (r == 0)
			return;
		atomic_fetch_add(&s_in, (uint64_t)r);
		if (write_all(fd, buf, (size_t)r) < 0) {
			conn_error("write");
			return;
		}
		atomic_fetch_add(&s_out, (uint64_t)r);
	}
}

static void serve_sink(int fd, char *buf)
{
	for (;;) {
		ssize_t r = read_some(fd, buf, SERVER_BUF);
		if (r < 0) {
			conn_error("read");
			return;
		}
		if (r == 0)
			return;
		atomic_fetch_add(&s_in, (uint64_t)r);
	}
}

static void serve_rr(int fd, char *buf)
{
	memset(buf, 'r', SERVER_BUF);
	for (;;) {
		uint8_t hdr[RR_HDR];
		ssize_t r = read_full(fd, hdr, RR_HDR);
		if (r < 0) {
			conn_error("read");
			return;
		}
		if (r == 0)
			return; /* clean close between requests */
		atomic_fetch_add(&s_in, (uint64_t)r);
		if (r < RR_HDR) {
			atomic_fetch_add(&s_errors, 1);
			warnx_("rr: connection closed inside a request header");
			return;
		}
		uint32_t req_word = get_be32(hdr + 4);
		bool close_after = (req_word & RR_CLOSE) != 0;
		uint64_t resp = get_be32(hdr), req = req_word & ~RR_CLOSE;
		if (req < RR_HDR || req > RR_MAX || resp > RR_MAX) {
			atomic_fetch_add(&s_errors, 1);
			warnx_("rr: bad request header (request %" PRIu64 " bytes, response %" PRIu64 " bytes)",
			       req, resp);
			return;
		}
		for (uint64_t left = req - RR_HDR; left > 0;) {
			size_t want = left < SERVER_BUF ? (size_t)left : SERVER_BUF;
			r = read_full(fd, buf, want);
			if (r < 0) {
				conn_error("read");
				return;
			}
			atomic_fetch_add(&s_in, (uint64_t)r);
			if ((size_t)r < want) {
				atomic_fetch_add(&s_errors, 1);
				warnx_("rr: connection closed inside a request body");
				return;
			}
			left -= (uint64_t)r;
		}
		for (uint64_t left = resp; left > 0;) {
			size_t n = left < SERVER_BUF ? (size_t)left : SERVER_BUF;
			if (write_all(fd, buf, n) < 0) {
				conn_error("write");
				return;
			}
			atomic_fetch_add(&s_out, n);
			left -= n;
		}
		if (close_after)
			return;
	}
}

static void *conn_thread(void *arg)
{
	struct conn c = *(struct conn *)arg;
	free(arg);
	char *buf = xmalloc(SERVER_BUF);
	switch (c.mode) {
	case M_ECHO: serve_echo(c.fd, buf); break;
	case M_SINK: serve_sink(c.fd, buf); break;
	case M_RR: serve_rr(c.fd, buf); break;
	}
	free(buf);
	close(c.fd);
	atomic_fetch_sub(&s_active, 1);
	return NULL;
}

/* The TCP listener of `sslg server --port`; *port gets the port it is bound to. */
static int listen_tcp(const struct opts *o, int *port)
{
	const char *bind_addr = o->bind ? o->bind : "::";
	struct addrinfo hints, *res = NULL;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
	int rc = getaddrinfo(bind_addr, o->port, &hints, &res);
	if (rc != 0)
		die("server: --bind %s: %s (give a numeric IPv4 or IPv6 address)", bind_addr, gai_strerror(rc));

	int lfd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP);
	if (lfd < 0)
		die("server: socket: %s", strerror(errno));
	int one = 1;
	if (setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		die("server: SO_REUSEADDR: %s", strerror(errno));
	if (res->ai_family == AF_INET6) {
		int v6only = o->v6only;
		if (setsockopt(lfd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only)) < 0)
			die("server: IPV6_V6ONLY: %s", strerror(errno));
	}
	if (bind(lfd, res->ai_addr, res->ai_addrlen) < 0)
		die("server: bind %s port %s: %s", bind_addr, o->port, strerror(errno));
	freeaddrinfo(res);
	if (listen(lfd, 4096) < 0)
		die("server: listen: %s", strerror(errno));

	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (getsockname(lfd, (struct sockaddr *)&ss, &sl) < 0)
		die("server: getsockname: %s", strerror(errno));
	*port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
					       : ((struct sockaddr_in *)&ss)->sin_port);
	return lfd;
}

static struct sockaddr_un unix_addr(const char *path)
{
	struct sockaddr_un sa;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, strlen(path)); /* parse_opts checked that it fits with its NUL */
	return sa;
}

/* The AF_UNIX listener of `sslg server --unix-path`. A stale socket left at the path by an
 * earlier server (nobody accepts on it) is removed first; a live one, or anything that is not a
 * socket, is an error and is left alone. */
static int listen_unix(const char *path)
{
	struct stat st;
	struct sockaddr_un sa = unix_addr(path);
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			die("server: --unix-path %s exists and is not a socket", path);
		int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (probe < 0)
			die("server: socket(AF_UNIX): %s", strerror(errno));
		bool live = connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0;
		close(probe);
		if (live)
			die("server: another server is listening on %s", path);
		if (unlink(path) < 0)
			die("server: removing the stale socket %s: %s", path, strerror(errno));
	}
	int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		die("server: socket(AF_UNIX): %s", strerror(errno));
	if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("server: bind %s: %s", path, strerror(errno));
	if (listen(lfd, 4096) < 0)
		die("server: listen: %s", strerror(errno));
	return lfd;
}

static int cmd_server(const struct opts *o)
{
	if (!o->unix_path)
		need(o->port != NULL, "server", "port");
	raise_nofile();
	enum srv_mode mode;
	if (!strcmp(o->mode, "echo") || !strcmp(o->mode, "check"))
		mode = M_ECHO;
	else if (!strcmp(o->mode, "sink"))
		mode = M_SINK;
	else if (!strcmp(o->mode, "rr"))
		mode = M_RR;
	else
		die("server: --mode must be echo, sink, rr or check, got '%s'", o->mode);

	int port = 0; /* an AF_UNIX server reports port 0 */
	int lfd = o->unix_path ? listen_unix(o->unix_path) : listen_tcp(o, &port);

	/* SIGTERM/SIGINT arrive on a signalfd; every thread inherits the blocked mask. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0)
		die("server: pthread_sigmask failed");
	int sfd = signalfd(-1, &set, SFD_CLOEXEC);
	if (sfd < 0)
		die("server: signalfd: %s", strerror(errno));

	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 * KIB);

	printf("READY %d\n", port);
	fflush(stdout);

	for (;;) {
		struct pollfd p[2] = {{.fd = lfd, .events = POLLIN, .revents = 0},
				      {.fd = sfd, .events = POLLIN, .revents = 0}};
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			die("server: poll: %s", strerror(errno));
		}
		if (p[1].revents)
			break;
		if (!p[0].revents)
			continue;
		int cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | (g_nonblock ? SOCK_NONBLOCK : 0));
		if (cfd < 0) {
			if (errno == EINTR || errno == ECONNABORTED || errno == EAGAIN || errno == EPROTO)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				atomic_fetch_add(&s_errors, 1);
				warnx_("server: accept: %s (backing off)", strerror(errno));
				usleep(10000);
				continue;
			}
			die("server: accept: %s", strerror(errno));
		}
		if (!o->unix_path)
			set_nodelay(cfd);
		atomic_fetch_add(&s_conns, 1);
		atomic_fetch_add(&s_active, 1);
		struct conn *c = xmalloc(sizeof(*c));
		c->fd = cfd;
		c->mode = mode;
		pthread_t t;
		int e = pthread_create(&t, &attr, conn_thread, c);
		if (e != 0) {
			warnx_("server: pthread_create: %s (connection dropped)", strerror(e));
			atomic_fetch_add(&s_errors, 1);
			atomic_fetch_sub(&s_active, 1);
			close(cfd);
			free(c);
		}
	}
	if (o->unix_path)
		unlink(o->unix_path); /* the next server at this path starts clean */
	printf("{\"mode\":\"%s\",\"transport\":\"%s\",\"io\":\"%s\",\"port\":%d,\"connections\":%" PRIu64
	       ",\"active\":%" PRIu64 ",\"bytes_in\":%" PRIu64 ",\"bytes_out\":%" PRIu64 ",\"errors\":%" PRIu64
	       ",\"spurious_eagain\":%" PRIu64 "}\n",
	       o->mode, transport(o), io_style(), port, (uint64_t)atomic_load(&s_conns), (uint64_t)atomic_load(&s_active),
	       (uint64_t)atomic_load(&s_in), (uint64_t)atomic_load(&s_out), (uint64_t)atomic_load(&s_errors),
	       (uint64_t)atomic_load(&g_eagain));
	fflush(stdout);
	_exit(0); /* connection threads may still be blocked; do not wait for them */
}

/* ------------------------------------------------------------------------------------------ */
/* the peer of a client: a TCP connection, or the AF_UNIX reference                            */

static void need_peer(const struct opts *o, const char *cmd)
{
	if (o->unix_pair || o->unix_path)
		return;
	need(o->host != NULL, cmd, "host");
	need(o->port != NULL, cmd, "port");
}

/* For the clients that open connections of their own (crr, conc, check): no --unix. */
static void need_address(const struct opts *o, const char *cmd)
{
	if (o->unix_pair)
		die("%s: --unix is an option of echo, rr and stream only (use --unix-path)", cmd);
	need_peer(o, cmd);
}

/* Connects to the server: the --unix-path socket, or host:port (every address getaddrinfo
 * returns). *used and *list as for connect_to; for --unix-path *list is NULL and *used a static
 * address, so callers free *list only when it is set. Dies on failure. */
static int connect_server(const struct opts *o, bool nodelay, const struct addrinfo **used,
			  struct addrinfo **list)
{
	if (!o->unix_path)
		return connect_to(o->host, o->port, nodelay, used, list);
	static struct sockaddr_un sa;
	static struct addrinfo ai;
	sa = unix_addr(o->unix_path);
	ai.ai_family = AF_UNIX;
	ai.ai_socktype = SOCK_STREAM;
	ai.ai_protocol = 0;
	ai.ai_addr = (struct sockaddr *)&sa;
	ai.ai_addrlen = sizeof(sa);
	int fd = connect_ai(&ai, nodelay);
	if (fd < 0)
		die("cannot connect to %s: %s", o->unix_path, strerror(errno));
	if (used && list) {
		*used = &ai;
		*list = NULL;
	}
	return fd;
}

static void free_server_list(struct addrinfo *list)
{
	if (list)
		freeaddrinfo(list);
}

/* With --unix: an AF_UNIX socketpair whose other end is served by a thread of this process in
 * the given server mode (the same code as `sslg server`), so the reference path is an in-kernel
 * socket-to-socket copy and RUSAGE_SELF covers both ends. Otherwise a connection to the server:
 * TCP, or AF_UNIX with --unix-path. */
static int open_peer(const struct opts *o, enum srv_mode mode, bool nodelay)
{
	if (!o->unix_pair)
		return connect_server(o, nodelay, NULL, NULL);
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (g_nonblock ? SOCK_NONBLOCK : 0), 0, sv) < 0)
		die("socketpair: %s", strerror(errno));
	struct conn *c = xmalloc(sizeof(*c));
	c->fd = sv[1];
	c->mode = mode;
	atomic_fetch_add(&s_active, 1);
	pthread_t t;
	int e = pthread_create(&t, NULL, conn_thread, c);
	if (e != 0)
		die("pthread_create: %s", strerror(e));
	pthread_detach(t);
	return sv[0];
}

/* "unix": the socketpair served by this process; "unix2": a path socket to a server process. */
static const char *transport(const struct opts *o)
{
	return o->unix_pair ? "unix" : o->unix_path ? "unix2" : "tcp";
}

/* Lifts the open-files soft limit to the hard limit (1,000 connections need more than 1024). */
static void raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* ------------------------------------------------------------------------------------------ */
/* echo                                                                                       */

/* Sends size bytes and reads them back while writing, so blocks larger than the socket
 * buffers cannot deadlock against a blocking echo server. */
static void echo_interleaved(int fd, const char *buf, char *rbuf, size_t size)
{
	size_t wr = 0, rd = 0;
	while (rd < size) {
		struct pollfd p = {.fd = fd, .events = (short)(POLLIN | (wr < size ? POLLOUT : 0)), .revents = 0};
		if (poll(&p, 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			die("echo: poll: %s", strerror(errno));
		}
		if (wr < size && (p.revents & (POLLOUT | POLLERR | POLLHUP))) {
			ssize_t w = send(fd, buf + wr, size - wr, MSG_DONTWAIT | MSG_NOSIGNAL);
			if (w > 0)
				wr += (size_t)w;
			else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				die("echo: send: %s", strerror(errno));
		}
		if (p.revents & (POLLIN | POLLERR | POLLHUP)) {
			ssize_t r = recv(fd, rbuf + rd, size - rd, MSG_DONTWAIT);
			if (r > 0)
				rd += (size_t)r;
			else if (r == 0)
				die("echo: server closed the connection after %zu of %zu bytes", rd, size);
			else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				die("echo: recv: %s", strerror(errno));
		}
	}
}

static int cmd_echo(const struct opts *o)
{
	need_peer(o, "echo");
	need(o->have_size, "echo", "size");
	need(o->have_count, "echo", "count");
	if (o->size < 1 || o->size > RR_MAX)
		die("echo: --size must be 1 .. %llu", (unsigned long long)RR_MAX);
	if (o->count < 1)
		die("echo: --count must be at least 1");
	size_t size = (size_t)o->size;
	bool blocking = size <= ECHO_BLOCKING_MAX;
	int fd = open_peer(o, M_ECHO, true);
	char *buf = xmalloc(size), *rbuf = xmalloc(size);
	for (size_t i = 0; i < size; i++)
		buf[i] = (char)(i * 131 + 7);
	uint64_t *s = xmalloc(sizeof(uint64_t) * o->count);
	uint64_t mismatches = 0, t_start = 0;
	struct cpu c0 = cpu_now();
	for (uint64_t i = 0; i < o->warmup + o->count; i++) {
		if (i == o->warmup) {
			c0 = cpu_now();
			t_start = now_ns();
		}
		memcpy(buf, &i, size < sizeof(i) ? size : sizeof(i)); /* a stale block cannot pass */
		uint64_t t0 = now_ns();
		if (blocking) {
			if (write_all(fd, buf, size) < 0)
				die("echo: send: %s", strerror(errno));
			ssize_t r = read_full(fd, rbuf, size);
			if (r < 0)
				die("echo: recv: %s", strerror(errno));
			if ((size_t)r < size)
				die("echo: server closed the connection after %zd of %zu bytes", r, size);
		} else {
			echo_interleaved(fd, buf, rbuf, size);
		}
		uint64_t t1 = now_ns();
		if (i >= o->warmup)
			s[i - o->warmup] = t1 - t0;
		if (memcmp(buf, rbuf, size) != 0)
			mismatches++;
	}
	uint64_t elapsed = now_ns() - t_start;
	struct cpu c1 = cpu_now();
	close(fd);
	printf("{\"workload\":\"echo\",\"transport\":\"%s\",\"io\":\"%s\",\"size\":%zu,\"count\":%" PRIu64
	       ",\"warmup\":%" PRIu64 ",\"method\":\"%s\",\"mismatched_blocks\":%" PRIu64,
	       transport(o), io_style(), size, o->count, o->warmup,
	       blocking ? (g_nonblock ? "write-then-read" : "blocking") : "interleaved", mismatches);
	print_latency_fields(s, o->count, c0, c1, elapsed, o->samples);
	printf("}\n");
	free(s);
	free(buf);
	free(rbuf);
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* rr                                                                                         */

static int cmd_rr(const struct opts *o)
{
	need_peer(o, "rr");
	need(o->have_req, "rr", "req");
	need(o->have_resp, "rr", "resp");
	need(o->have_count, "rr", "count");
	if (o->req < RR_HDR || o->req > RR_MAX)
		die("rr: --req must be %d .. %llu (the request carries an %d-byte header)", RR_HDR,
		    (unsigned long long)RR_MAX, RR_HDR);
	if (o->resp < 1 || o->resp > RR_MAX)
		die("rr: --resp must be 1 .. %llu", (unsigned long long)RR_MAX);
	if (o->count < 1)
		die("rr: --count must be at least 1");
	size_t req = (size_t)o->req, resp = (size_t)o->resp;
	int fd = open_peer(o, M_RR, true);
	uint8_t *qbuf = xmalloc(req);
	char *rbuf = xmalloc(resp);
	memset(qbuf, 'q', req);
	put_be32(qbuf, (uint32_t)resp);
	put_be32(qbuf + 4, (uint32_t)req);
	uint64_t *s = xmalloc(sizeof(uint64_t) * o->count);
	uint64_t t_start = 0;
	struct cpu c0 = cpu_now();
	for (uint64_t i = 0; i < o->warmup + o->count; i++) {
		if (i == o->warmup) {
			c0 = cpu_now();
			t_start = now_ns();
		}
		uint64_t t0 = now_ns();
		if (write_all(fd, qbuf, req) < 0)
			die("rr: send: %s", strerror(errno));
		ssize_t r = read_full(fd, rbuf, resp);
		if (r < 0)
			die("rr: recv: %s", strerror(errno));
		if ((size_t)r < resp)
			die("rr: server closed the connection after %zd of %zu response bytes"
			    " (is it running with --mode rr?)", r, resp);
		uint64_t t1 = now_ns();
		if (i >= o->warmup)
			s[i - o->warmup] = t1 - t0;
	}
	uint64_t elapsed = now_ns() - t_start;
	struct cpu c1 = cpu_now();
	close(fd);
	printf("{\"workload\":\"rr\",\"transport\":\"%s\",\"io\":\"%s\",\"size\":%zu,\"req\":%zu,\"resp\":%zu"
	       ",\"count\":%" PRIu64 ",\"warmup\":%" PRIu64,
	       transport(o), io_style(), req, req, resp, o->count, o->warmup);
	print_latency_fields(s, o->count, c0, c1, elapsed, o->samples);
	printf("}\n");
	free(s);
	free(qbuf);
	free(rbuf);
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* stream                                                                                     */

static int cmd_stream(const struct opts *o)
{
	need_peer(o, "stream");
	need(o->have_write, "stream", "write");
	need(o->have_seconds, "stream", "seconds");
	if (o->write_size < 1 || o->write_size > RR_MAX)
		die("stream: --write must be 1 .. %llu", (unsigned long long)RR_MAX);
	size_t wsize = (size_t)o->write_size;
	int fd = open_peer(o, M_SINK, false);
	char *buf = xmalloc(wsize);
	memset(buf, 's', wsize);
	uint64_t bytes = 0, writes = 0;
	struct cpu c0 = cpu_now();
	uint64_t t0 = now_ns();
	uint64_t deadline = t0 + (uint64_t)(o->seconds * 1e9);
	while (now_ns() < deadline) {
		if (write_all(fd, buf, wsize) < 0)
			die("stream: send after %" PRIu64 " bytes: %s", bytes, strerror(errno));
		bytes += wsize;
		writes++;
	}
	uint64_t t_sent = now_ns();
	/* Count only delivered bytes: half-close, then wait for the sink to close after EOF. */
	if (shutdown(fd, SHUT_WR) < 0)
		die("stream: shutdown: %s", strerror(errno));
	uint64_t unexpected = 0;
	for (;;) {
		ssize_t r = read_some(fd, buf, wsize);
		if (r < 0)
			die("stream: waiting for the server to close: %s", strerror(errno));
		if (r == 0)
			break;
		unexpected += (uint64_t)r;
	}
	uint64_t t1 = now_ns();
	struct cpu c1 = cpu_now();
	close(fd);
	double el = (double)(t1 - t0) / 1e9;
	printf("{\"workload\":\"stream\",\"transport\":\"%s\",\"io\":\"%s\",\"write_size\":%zu,\"writes\":%" PRIu64 ",\"bytes\":%" PRIu64
	       ",\"elapsed_s\":%.6f,\"send_elapsed_s\":%.6f,\"gbit_per_s\":%.4f,\"cpu_user_s\":%.6f"
	       ",\"cpu_sys_s\":%.6f,\"unexpected_bytes_in\":%" PRIu64 ",\"spurious_eagain\":%" PRIu64 "}\n",
	       transport(o), io_style(), wsize, writes, bytes, el, (double)(t_sent - t0) / 1e9, el > 0 ? (double)bytes * 8 / el / 1e9 : 0.0,
	       c1.user_s - c0.user_s, c1.sys_s - c0.sys_s, unexpected, (uint64_t)atomic_load(&g_eagain));
	free(buf);
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* crr                                                                                        */

static int cmd_crr(const struct opts *o)
{
	need_address(o, "crr");
	need(o->have_seconds, "crr", "seconds");
	uint64_t size64 = o->have_size ? o->size : 64;
	if (size64 < RR_HDR || size64 > RR_MAX)
		die("crr: --size must be %d .. %llu", RR_HDR, (unsigned long long)RR_MAX);
	size_t size = (size_t)size64;
	uint8_t *qbuf = xmalloc(size);
	char *rbuf = xmalloc(size);
	memset(qbuf, 'c', size);
	put_be32(qbuf, (uint32_t)size);
	bool server_closes = !strcmp(o->close_by, "server");
	put_be32(qbuf + 4, (uint32_t)size | (server_closes ? RR_CLOSE : 0));

	/* Resolve once: the loop measures the connections, not the resolver. */
	const struct addrinfo *ai = NULL;
	struct addrinfo *list = NULL;
	int fd = connect_server(o, true, &ai, &list);
	close(fd);

	size_t cap = 4096, n = 0;
	uint64_t *s = xmalloc(sizeof(uint64_t) * cap);
	struct cpu c0 = cpu_now();
	uint64_t t_start = now_ns();
	uint64_t deadline = t_start + (uint64_t)(o->seconds * 1e9);
	for (uint64_t t0 = t_start; t0 < deadline; t0 = now_ns()) {
		fd = connect_ai(ai, true);
		if (fd < 0)
			die("crr: connect #%zu: %s%s", n + 1, strerror(errno),
			    errno == EADDRNOTAVAIL ? " (local ports exhausted: TIME_WAIT; shorten --seconds)" : "");
		if (write_all(fd, qbuf, size) < 0)
			die("crr: send on connection #%zu: %s", n + 1, strerror(errno));
		ssize_t r = read_full(fd, rbuf, size);
		if (r < 0)
			die("crr: recv on connection #%zu: %s", n + 1, strerror(errno));
		if ((size_t)r < size)
			die("crr: server closed connection #%zu after %zd of %zu bytes (is it --mode rr?)", n + 1,
			    r, size);
		if (server_closes) {
			/* The server closes after its reply (TIME_WAIT lands on its side): wait for EOF. */
			r = read_some(fd, rbuf, size);
			if (r < 0)
				die("crr: waiting for the server to close connection #%zu: %s", n + 1, strerror(errno));
			if (r > 0)
				die("crr: unexpected bytes after the reply on connection #%zu", n + 1);
		}
		if (close(fd) < 0 && errno != EINTR)
			die("crr: close: %s", strerror(errno));
		uint64_t t1 = now_ns();
		if (n == cap) {
			cap *= 2;
			uint64_t *ns = realloc(s, sizeof(uint64_t) * cap);
			if (!ns)
				die("out of memory");
			s = ns;
		}
		s[n++] = t1 - t0;
	}
	uint64_t elapsed = now_ns() - t_start;
	struct cpu c1 = cpu_now();
	free_server_list(list);
	printf("{\"workload\":\"crr\",\"transport\":\"%s\",\"size\":%zu,\"close\":\"%s\",\"count\":%zu,\"connections\":%zu"
	       ",\"connections_per_s\":%.1f",
	       transport(o), size, o->close_by, n, n, elapsed ? (double)n / ((double)elapsed / 1e9) : 0.0);
	print_latency_fields(s, n, c0, c1, elapsed, o->samples);
	printf("}\n");
	free(s);
	free(qbuf);
	free(rbuf);
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* conc: many concurrent connections, one outstanding request each                            */

struct cconn {
	int fd;
	size_t sent, got; /* progress of the current request and response */
	uint64_t t0;
};

static int cmd_conc(const struct opts *o)
{
	need_address(o, "conc");
	need(o->have_connections, "conc", "connections");
	need(o->have_seconds, "conc", "seconds");
	uint64_t size64 = o->have_size ? o->size : 64;
	if (size64 < RR_HDR || size64 > 64 * KIB)
		die("conc: --size must be %d .. %llu", RR_HDR, 64 * KIB);
	if (o->connections < 1 || o->connections > 100000)
		die("conc: --connections must be 1 .. 100000");
	raise_nofile();
	size_t size = (size_t)size64, n = (size_t)o->connections;
	uint8_t *qbuf = xmalloc(size);
	char *rbuf = xmalloc(size);
	memset(qbuf, 'n', size);
	put_be32(qbuf, (uint32_t)size);
	put_be32(qbuf + 4, (uint32_t)size);

	/* Open every connection first (blocking connects), then run them all at once. */
	const struct addrinfo *ai = NULL;
	struct addrinfo *list = NULL;
	struct cconn *cs = xmalloc(sizeof(*cs) * n);
	cs[0].fd = connect_server(o, true, &ai, &list);
	for (size_t i = 1; i < n; i++) {
		cs[i].fd = connect_ai(ai, true);
		if (cs[i].fd < 0)
			die("conc: connect #%zu: %s", i + 1, strerror(errno));
	}
	free_server_list(list);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		die("conc: epoll_create1: %s", strerror(errno));
	for (size_t i = 0; i < n; i++) {
		int fl = fcntl(cs[i].fd, F_GETFL);
		if (fl < 0 || fcntl(cs[i].fd, F_SETFL, fl | O_NONBLOCK) < 0)
			die("conc: O_NONBLOCK: %s", strerror(errno));
		struct epoll_event ev = {.events = EPOLLIN, .data.u64 = i};
		if (epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev) < 0)
			die("conc: epoll_ctl: %s", strerror(errno));
	}

	size_t cap = 65536, ns = 0;
	uint64_t *s = xmalloc(sizeof(uint64_t) * cap);
	struct epoll_event *evs = xmalloc(sizeof(*evs) * 256);
	struct cpu c0 = cpu_now();
	uint64_t t_start = now_ns(), deadline = t_start + (uint64_t)(o->seconds * 1e9);
	/* Send every first request; a request fits the socket buffer (<= 64 KiB), so a short
	 * write only happens under memory pressure and is finished on EPOLLOUT. */
	for (size_t i = 0; i < n; i++) {
		cs[i].t0 = now_ns();
		cs[i].sent = cs[i].got = 0;
	}
	size_t pending_out = n;
	bool *want_out = calloc(n, sizeof(bool));
	if (!want_out)
		die("out of memory");
	for (size_t i = 0; i < n; i++)
		want_out[i] = true;
	bool stopping = false;
	size_t live = n; /* connections with a request in flight */
	while (live > 0) {
		/* Push pending request bytes. */
		if (pending_out) {
			for (size_t i = 0; i < n; i++) {
				if (!want_out[i])
					continue;
				ssize_t w = send(cs[i].fd, qbuf + cs[i].sent, size - cs[i].sent, MSG_NOSIGNAL);
				if (w < 0 && errno != EAGAIN && errno != EINTR)
					die("conc: send: %s", strerror(errno));
				if (w > 0)
					cs[i].sent += (size_t)w;
				if (cs[i].sent == size) {
					want_out[i] = false;
					pending_out--;
				}
			}
		}
		int k = epoll_wait(ep, evs, 256, pending_out ? 1 : 1000);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			die("conc: epoll_wait: %s", strerror(errno));
		}
		uint64_t now = now_ns();
		if (now >= deadline)
			stopping = true;
		for (int j = 0; j < k; j++) {
			size_t i = (size_t)evs[j].data.u64;
			struct cconn *c = &cs[i];
			for (;;) {
				ssize_t r = recv(c->fd, rbuf, size - c->got, 0);
				if (r < 0) {
					if (errno == EAGAIN || errno == EINTR)
						break;
					die("conc: recv: %s", strerror(errno));
				}
				if (r == 0)
					die("conc: server closed connection #%zu (is it --mode rr?)", i + 1);
				c->got += (size_t)r;
				if (c->got < size)
					continue;
				uint64_t t1 = now_ns();
				if (ns == cap) {
					cap *= 2;
					uint64_t *nsamp = realloc(s, sizeof(uint64_t) * cap);
					if (!nsamp)
						die("out of memory");
					s = nsamp;
				}
				s[ns++] = t1 - c->t0;
				if (stopping) {
					live--;
					break;
				}
				c->t0 = t1;
				c->got = 0;
				ssize_t w = send(c->fd, qbuf, size, MSG_NOSIGNAL);
				if (w < 0 && errno != EAGAIN && errno != EINTR)
					die("conc: send: %s", strerror(errno));
				c->sent = w > 0 ? (size_t)w : 0;
				if (c->sent < size) {
					want_out[i] = true;
					pending_out++;
				}
				break;
			}
		}
	}
	uint64_t elapsed = now_ns() - t_start;
	struct cpu c1 = cpu_now();
	for (size_t i = 0; i < n; i++)
		close(cs[i].fd);
	close(ep);
	printf("{\"workload\":\"conc\",\"transport\":\"%s\",\"size\":%zu,\"connections\":%zu,\"count\":%zu"
	       ",\"transactions_per_s\":%.1f",
	       transport(o), size, n, ns, elapsed ? (double)ns / ((double)elapsed / 1e9) : 0.0);
	print_latency_fields(s, ns, c0, c1, elapsed, o->samples);
	printf("}\n");
	free(want_out);
	free(evs);
	free(cs);
	free(s);
	free(qbuf);
	free(rbuf);
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* check                                                                                      */

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

/* xorshift64*: the byte stream and the I/O sizes. */
struct rng {
	uint64_t s;
	uint64_t cur;
	unsigned left;
};

static void rng_seed(struct rng *r, uint64_t seed)
{
	uint64_t x = seed;
	r->s = splitmix64(&x);
	if (r->s == 0)
		r->s = 1;
	r->cur = 0;
	r->left = 0;
}

static uint64_t rng_next(struct rng *r)
{
	uint64_t x = r->s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	r->s = x;
	return x * 0x2545F4914F6CDD1DULL;
}

static void rng_fill(struct rng *r, uint8_t *buf, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (r->left == 0) {
			r->cur = rng_next(r);
			r->left = 8;
		}
		buf[i] = (uint8_t)r->cur;
		r->cur >>= 8;
		r->left--;
	}
}

/* 1 .. 64 KiB, log-uniform so that small I/O is as common as large. */
static size_t rng_io_size(struct rng *r)
{
	uint64_t v = rng_next(r);
	unsigned bits = (unsigned)(v % 17); /* 0 .. 16 */
	return 1 + (size_t)((v >> 8) % (1ULL << bits));
}

struct check_writer {
	int fd;
	uint64_t bytes, seed, writes;
};

static void *check_writer_thread(void *arg)
{
	struct check_writer *w = arg;
	struct rng data, sizes;
	rng_seed(&data, w->seed);
	rng_seed(&sizes, w->seed ^ 0xA5A5A5A5DEADBEEFULL);
	uint8_t *buf = xmalloc(CHECK_MAX_IO);
	for (uint64_t sent = 0; sent < w->bytes;) {
		size_t n = rng_io_size(&sizes);
		if (n > w->bytes - sent)
			n = (size_t)(w->bytes - sent);
		rng_fill(&data, buf, n);
		if (write_all(w->fd, buf, n) < 0)
			die("check: send at offset %" PRIu64 ": %s", sent, strerror(errno));
		sent += n;
		w->writes++;
	}
	if (shutdown(w->fd, SHUT_WR) < 0)
		die("check: shutdown: %s", strerror(errno));
	free(buf);
	return NULL;
}

static int cmd_check(const struct opts *o)
{
	need_address(o, "check");
	need(o->have_bytes, "check", "bytes");
	int fd = connect_server(o, false, NULL, NULL);
	struct check_writer w = {.fd = fd, .bytes = o->bytes, .seed = o->seed, .writes = 0};
	uint64_t t0 = now_ns();
	pthread_t t;
	int e = pthread_create(&t, NULL, check_writer_thread, &w);
	if (e != 0)
		die("check: pthread_create: %s", strerror(e));

	struct rng data, sizes;
	rng_seed(&data, o->seed);
	rng_seed(&sizes, o->seed ^ 0x5A5A5A5AFEEDF00DULL);
	uint8_t *got = xmalloc(CHECK_MAX_IO), *want = xmalloc(CHECK_MAX_IO);
	uint64_t received = 0, mismatches = 0, reads = 0, extra = 0;
	int64_t first = -1;
	for (;;) {
		size_t n = rng_io_size(&sizes);
		ssize_t r = read_some(fd, got, n);
		if (r < 0)
			die("check: recv at offset %" PRIu64 ": %s", received, strerror(errno));
		if (r == 0)
			break;
		reads++;
		size_t valid = (size_t)r;
		if (received + valid > o->bytes) {
			extra += received + valid - o->bytes;
			valid = (size_t)(o->bytes - received);
		}
		rng_fill(&data, want, valid);
		if (memcmp(got, want, valid) != 0) {
			for (size_t i = 0; i < valid; i++) {
				if (got[i] != want[i]) {
					if (first < 0)
						first = (int64_t)(received + i);
					mismatches++;
				}
			}
		}
		received += valid;
	}
	pthread_join(t, NULL);
	uint64_t t1 = now_ns();
	close(fd);
	double el = (double)(t1 - t0) / 1e9;
	printf("{\"workload\":\"check\",\"transport\":\"%s\",\"io\":\"%s\",\"bytes\":%" PRIu64 ",\"seed\":%" PRIu64
	       ",\"bytes_received\":%" PRIu64 ",\"extra_bytes\":%" PRIu64 ",\"mismatches\":%" PRIu64
	       ",\"first_mismatch_offset\":",
	       transport(o), io_style(), o->bytes, o->seed, received, extra, mismatches);
	if (first < 0)
		printf("null");
	else
		printf("%" PRId64, first);
	printf(",\"writes\":%" PRIu64 ",\"reads\":%" PRIu64 ",\"elapsed_s\":%.6f,\"spurious_eagain\":%" PRIu64 "}\n",
	       w.writes, reads, el, (uint64_t)atomic_load(&g_eagain));
	free(got);
	free(want);
	return 0;
}

/* ------------------------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	if (argc < 2)
		usage(2);
	const char *cmd = argv[1];
	if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help"))
		usage(0);
	struct opts o;
	parse_opts(argc - 1, argv + 1, &o);
	if (o.nonblock && (!strcmp(cmd, "crr") || !strcmp(cmd, "conc")))
		die("%s: --nonblock is not an option of %s%s", cmd, cmd, strcmp(cmd, "conc") ? "" : " (its client is non-blocking already)");
	g_nonblock = o.nonblock;
	int rc;
	if (!strcmp(cmd, "server"))
		rc = cmd_server(&o);
	else if (!strcmp(cmd, "echo"))
		rc = cmd_echo(&o);
	else if (!strcmp(cmd, "rr"))
		rc = cmd_rr(&o);
	else if (!strcmp(cmd, "stream"))
		rc = cmd_stream(&o);
	else if (!strcmp(cmd, "crr"))
		rc = cmd_crr(&o);
	else if (!strcmp(cmd, "check"))
		rc = cmd_check(&o);
	else if (!strcmp(cmd, "conc"))
		rc = cmd_conc(&o);
	else {
		fprintf(stderr, "sslg: unknown command '%s'\n", cmd);
		usage(2);
	}
	if (fflush(stdout) != 0)
		die("writing the result: %s", strerror(errno));
	return rc;
}
