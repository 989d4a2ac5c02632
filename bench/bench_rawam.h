/*
 * kvx-bench rawam: a raw UCP active-message stream between this process and
 * a forked receiver on this host, shaped like libkvx's AM pushes (a 32-byte
 * header that carries the destination offset, UCP_AM_SEND_FLAG_EAGER up to
 * 256 KiB, a UCP_AM_FLAG_WHOLE_MSG handler, rendezvous data received straight
 * into the destination, 128 sends in flight) but over a FOOTPRINT of
 * distinct bytes on each side. ucx_perftest ucp_am_bw sends one buffer into
 * one buffer, which stay in the CPU cache; a KV push of a long request
 * moves hundreds of MiB of cache-cold blocks. Both figures in one run show
 * how much of the gap between kvx and ucx_perftest is the cache.
 */
#ifndef KVX_BENCH_RAWAM_H
#define KVX_BENCH_RAWAM_H

#include <stddef.h>

#define KVXI_RAWAM_WINDOW 128u               /* sends in flight (libkvx's) */
#define KVXI_RAWAM_EAGER_MAX (256u << 10)    /* libkvx's eager rule */
#define KVXI_RAWAM_MSG_MAX ((size_t)1 << 30) /* one message */
#define KVXI_RAWAM_FOOTPRINT_MAX ((size_t)8 << 30) /* per side */

/*
 * Runs one stream over UCX_TLS=tls and UCX_NET_DEVICES=lo. Both sides map
 * and pre-fault a region of FOOTPRINT bytes (rounded down to a multiple of
 * MSG; a memfd shared mapping with 4 KiB pages, as libkvx's pool) and
 * busy-poll their workers. Message i goes from offset (i * msg) % footprint
 * of the sender's region to the same offset of the receiver's. After one
 * warm-up pass over the footprint, ITERS messages are timed from the first
 * send until the receiver says it has them all: *bps_p = iters * msg / time.
 *
 * Bounded: after timeout_s the receiver is killed. The receiver is killed
 * by PID and reaped on every path. Returns 0, or -1 with the reason in WHY
 * ("UCX cannot start: ...", "timed out after S s", ...).
 */
int kvxi_rawam_run(const char *tls, size_t msg, size_t footprint,
                   unsigned iters, unsigned timeout_s, double *bps_p, char *why,
                   size_t why_len);

/* `kvx-bench rawam ...`: returns the exit code (0, 1 failed, 2 bad input). */
int kvxi_rawam_main(int argc, char **argv);

#endif
