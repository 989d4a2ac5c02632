/*
 * The push sender's own helpers, shared by its files: xfer_send.c
 * (kvx_node_push, the AllocateReply and CommitAck, the transfer's life),
 * xfer_post.c (posting layer ranges, the Commit) and xfer_stop.c (failure,
 * deadlines, aborts, lost peers). struct kvx_xfer and the handlers the node
 * calls are in node_int.h.
 */
#ifndef KVX_XFER_INT_H
#define KVX_XFER_INT_H

#include "node_int.h"

/* xfer_send.c */

/** Hands @p status to the caller (kvx_xfer_test/wait/query), once: the
 *  first status reported stays. */
void kvxi_xfer_report(struct kvx_xfer *x, kvx_status_t status);

/* xfer_post.c */

/**
 * Posts @p n segments of @p x on the push path under the receiver's lease
 * (its AM tag); n 0 posts a flush. Completes through the sender's post
 * callback, which settles @p x.
 * @return what kvxi_xfer_post() returns.
 */
kvx_status_t kvxi_xfer_post_push(struct kvx_xfer *x, const kvx_segment_t *segs,
                                 size_t n);

/** Posts the announced layers not posted yet of a RUNNING @p x; sends the
 *  Commit once every layer is posted and no post is in flight. */
void kvxi_xfer_pump(struct kvx_xfer *x);

/* xfer_stop.c */

/** After a post ended or @p x stopped: a RUNNING transfer pumps; a
 *  STOPPING one with no post left flushes, tells the receiver (Abort or
 *  AbortAck) and finishes. May free @p x (released). */
void kvxi_xfer_settle(struct kvx_xfer *x);

#endif /* KVX_XFER_INT_H */
