/* socksplice observation: system calls that name a watched socket by file descriptor
 * (syscalls:sys_enter_splice, sys_enter_sendfile64, sys_enter_ioctl, sys_enter_setsockopt).
 *
 * splice(2) and sendfile(2) read a TCP socket through tcp_splice_read, which takes only TCP's
 * receive queue: bytes spliced into the socket's psock are not seen (the reader stalls). FIONREAD /
 * SIOCINQ counts only TCP's queue where tcp_bpf has no ioctl (added in 6.18.14 and 7.0; the loader
 * compiles that probe in only where the kernel lacks tcp_bpf_ioctl: SS_FIONREAD_DIFFERS). The
 * descriptor is resolved to its struct sock through the current task's file table, at offsets
 * from the running kernel's BTF; whatever is not a watched socket is not found in `watch`.
 */
#include "socksplice.h"

#define SS_FIONREAD 0x541B
#define SS_SOL_SOCKET 1
#define SS_SO_RCVLOWAT 18

static __always_inline __u64 ss_fd_sock(long fd)
{
	if (fd < 0)
		return 0;
	__u64 files = ss_read(bpf_get_current_task(), SS_OFF_TASK_FILES, 8);
	__u64 fdt = files ? ss_read(files, SS_OFF_FILES_FDT, 8) : 0;
	if (!fdt || (__u64)fd >= ss_read(fdt, SS_OFF_FDT_MAX_FDS, 4))
		return 0;
	__u64 table = ss_read(fdt, SS_OFF_FDT_FD, 8);
	__u64 file = table ? ss_read(table + (__u64)fd * 8, 0, 8) : 0;
	__u64 sock = file ? ss_read(file, SS_OFF_FILE_PRIVATE_DATA, 8) : 0;
	return sock ? ss_read(sock, SS_OFF_SOCKET_SK, 8) : 0;
}

static __always_inline int ss_fd_event(long fd, __u32 would, __u32 did)
{
	__u64 sk = ss_fd_sock(fd);
	struct ss_watch *w = sk ? watch.lookup(&sk) : 0;
	struct ss_evidence_counts *ev = w ? evidence.lookup(&w->ep) : 0;
	if (!ev)
		return 0;
	ss_evidence_add(ev, would, 1);
	if (w->flags & SS_W_SPLICED) {
		ss_evidence_add(ev, did, 1);
		ss_demote(w->slot);
	}
	return 0;
}

/* setsockopt(SO_RCVLOWAT) on a watched socket: from now on its receives read SO_RCVLOWAT
 * (observe_recv.c); sockops reads it at establishment for a value set before or inherited. */
TRACEPOINT_PROBE(syscalls, sys_enter_setsockopt)
{
	if (args->level != SS_SOL_SOCKET || args->optname != SS_SO_RCVLOWAT)
		return 0;
	__u64 sk = ss_fd_sock(args->fd);
	struct ss_watch *w = sk ? watch.lookup(&sk) : 0;
	if (w)
		w->flags |= SS_W_RCVLOWAT;
	return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_splice) { return ss_fd_event(args->fd_in, SS_E_WOULD_SPLICE, SS_E_DID_SPLICE); }
TRACEPOINT_PROBE(syscalls, sys_enter_sendfile64) { return ss_fd_event(args->in_fd, SS_E_WOULD_SPLICE, SS_E_DID_SPLICE); }
#if SS_FIONREAD_DIFFERS
TRACEPOINT_PROBE(syscalls, sys_enter_ioctl)
{
	if (args->cmd != SS_FIONREAD)
		return 0;
	return ss_fd_event(args->fd, SS_E_WOULD_FIONREAD, SS_E_DID_FIONREAD);
}
#endif
