/*
 * Helpers shared by test_xfer.c and test_xfer_fail.c (code in xfer_ut.c):
 * a pair of real nodes in one process over loopback, a receiver that
 * listens and a sender connected to it (node_ut.h's layout), pushes from
 * one to the other and bounded waits on their progress.
 */
#ifndef KVX_TEST_XFER_UT_H
#define KVX_TEST_XFER_UT_H

#include "node_ut.h"

#include "node_int.h"

#define XUT_N_MAX 64 /* blocks in most pools; refs xut_check_recv() takes */

typedef struct xut_pair {
    kvx_node_h rx, tx; /* receiver (listens), sender (connects) */
    kvx_peer_h peer;   /* tx -> rx */
    uint64_t bb;       /* block bytes */
} xut_pair_t;

/* Receiver "decode" with @p orx, sender "prefill" with @p otx, connected;
 * fails the test at once if they cannot start or connect. */
void xut_pair_open(xut_pair_t *p, const nut_opts_t *orx, const nut_opts_t *otx);
void xut_pair_close(xut_pair_t *p);

/* Collects request @p rid on the receiver and compares every block with
 * the sender's @p src; unpins what it collected. */
void xut_check_recv(xut_pair_t *p, uint64_t rid, const kvx_block_ref_t *src,
                    uint32_t n);

/* Pushes @p n refs of @p src as request @p rid (@p keys, @p deadline_ms
 * and @p flags when not NULL / 0); asserts that the push started. */
kvx_xfer_h xut_push(xut_pair_t *p, uint64_t rid, const kvx_block_ref_t *src,
                    uint32_t n, const kvx_block_key_t *keys,
                    uint32_t deadline_ms, uint32_t flags);

/* Progresses both nodes until @p x sent @p want bytes or @p ms passed (then
 * 20 ms more); returns the bytes sent. xut_wait_bytes(): NUT_WAIT_MS. */
uint64_t xut_wait_bytes_ms(xut_pair_t *p, kvx_xfer_h x, uint64_t want,
                           uint32_t ms);
uint64_t xut_wait_bytes(xut_pair_t *p, kvx_xfer_h x, uint64_t want);

/* A layerwise push of @p n blocks whose first @p layers layers (of
 * nut_layout()'s 4) are announced; returns once their bytes are sent. */
kvx_xfer_h xut_push_layers(xut_pair_t *p, uint64_t rid,
                           const kvx_block_ref_t *src, uint32_t n,
                           uint32_t deadline_ms, uint32_t layers);

/* Waits until the receiver has @p want free blocks (fence lifted): 1 if it
 * does within NUT_WAIT_MS. */
int xut_wait_free(xut_pair_t *p, uint32_t want);

#endif /* KVX_TEST_XFER_UT_H */
