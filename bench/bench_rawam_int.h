/*
 * kvx-bench rawam, inside: the wire header, the two sides' state and the
 * helpers both processes use (bench_rawam_side.c), the receiver child
 * (bench_rawam_rx.c). The sender and the command are in bench_rawam.c.
 */
#ifndef KVX_BENCH_RAWAM_INT_H
#define KVX_BENCH_RAWAM_INT_H

#include "bench_rawam.h"

#include <ucp/api/ucp.h>

#include <stdint.h>
#include <sys/types.h>

#define RAWAM_AM_ID 17u         /* libkvx's */
#define RAWAM_MAGIC 0x5241574du /* "RAWM" */
#define RAWAM_ADDR_MAX 65536u   /* a worker address, bytes */
#define RAWAM_CLOSE_S 2.0       /* endpoint close, then the receiver's exit */
#define RAWAM_RX_SPARE_S 10.0   /* the receiver's own limit, past timeout_s */
#define RAWAM_CHECK_EVERY 256u  /* progress calls between clock checks */

/* On the wire: 32 bytes, as libkvx's header. */
typedef struct rawam_hdr {
    uint32_t magic;
    uint32_t seq;
    uint64_t unused; /* libkvx's transfer id */
    uint64_t off;    /* in both regions */
    uint64_t len;
} rawam_hdr_t;

/* The receiver's first message: 'A' and its worker address follows, or
 * 'E' and why. */
typedef struct rawam_hello {
    char what;
    char why[187];
    uint32_t addr_len;
} rawam_hello_t;

/* One side: its context, worker and registered region. */
typedef struct rawam_side {
    ucp_context_h ctx;
    ucp_worker_h worker;
    ucp_mem_h memh;
    char *base;
    size_t len;
} rawam_side_t;

/* The receiver's state, its AM handler's argument. */
typedef struct rawam_rx {
    rawam_side_t *side;
    uint64_t landed; /* messages in place */
    uint64_t bad;    /* refused, or a rendezvous receive that failed */
} rawam_rx_t;

struct rawam_tx;

/* One send in flight: its header lives until the send completes. */
typedef struct rawam_op {
    rawam_hdr_t hdr;
    struct rawam_tx *tx;
    uint32_t idx;
} rawam_op_t;

typedef struct rawam_tx {
    rawam_side_t *side;
    ucp_ep_h ep;
    size_t msg, slots;
    rawam_op_t ops[KVXI_RAWAM_WINDOW];
    uint32_t free_ops[KVXI_RAWAM_WINDOW];
    uint32_t n_free;
    ucs_status_t status; /* of the first send that failed */
} rawam_tx_t;

double kvxi_rawam_now_s(void);
void kvxi_rawam_side_close(rawam_side_t *s);
/* Maps the region, then a context (UCP_FEATURE_AM only) and a worker over
 * TLS on lo, with AM_CB (if any) as the handler. 0, or -1 with why. */
int kvxi_rawam_side_open(rawam_side_t *s, const char *tls, size_t len, int fill,
                         ucp_am_recv_callback_t am_cb, void *am_arg, char *why,
                         size_t why_len);
/* The receiver child (bench_rawam_rx.c): never returns. Writes 'W' once
 * WARM messages arrived, 'D' once TOTAL did ('E' when one was bad). */
void kvxi_rawam_rx_main(pid_t parent, const char *tls, size_t footprint,
                        uint64_t warm, uint64_t total, unsigned timeout_s,
                        int fd);
/* Kills the receiver by PID unless it exits within GRACE_S; reaps it. */
void kvxi_rawam_rx_reap(pid_t pid, double grace_s);

#endif
