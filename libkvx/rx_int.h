/*
 * The push receiver's own helpers, shared by its files: xfer_recv.c
 * (reservation, failure and fences, kvx_node_recv), rx_am.c (the AM
 * admission window) and rx_commit.c (the Commit). struct kvxi_rx and the
 * handlers the node calls are in node_int.h.
 */
#ifndef KVX_RX_INT_H
#define KVX_RX_INT_H

#include "node_int.h"

/** kvxi_rx::slot of an rx that holds no slot. */
#define KVXI_RX_SLOT_NONE UINT32_MAX

/* rx_am.c */

/**
 * Gives @p rx a free slot of node->rx_slots (the table grows when full) and
 * a fresh tag: a random 32-bit number over the slot index.
 * @return KVX_OK; KVX_ERR_NO_MEMORY; KVX_ERR_IO (no random bytes).
 */
kvx_status_t kvxi_rx_slot_take(struct kvx_node *node, kvxi_rx_t *rx);

/** No more writes are admitted for @p rx: its owner table entries are
 *  cleared, and its slot too unless admitted AM chunks are still landing. */
void kvxi_rx_close_window(kvxi_rx_t *rx);

/* xfer_recv.c */

/** Lifts the fence of a failed @p rx whose writer is quiesced (and frees it
 *  when nobody will collect it), or defers that until admitted AM chunks
 *  are done. May free @p rx. */
void kvxi_rx_unfence(kvxi_rx_t *rx);

/**
 * Fails a reserved @p rx with @p status: no write is admitted any more,
 * hits are unpinned, the lease is fenced (@p already_fenced: it expired),
 * and the fence lifts at once when @p quiesced (the writer can no longer
 * write). No-op unless RESERVED.
 * @return 1 if @p rx was freed, else 0.
 */
int kvxi_rx_fail(kvxi_rx_t *rx, kvx_status_t status, int already_fenced,
                 int quiesced);

/* rx_commit.c */

/** Sends a CommitAck{@p status, @p mismatches} for @p tid answering
 *  @p req_id (nothing without a peer or with @p req_id 0). */
void kvxi_rx_send_commit_ack(struct kvx_peer *peer, uint64_t req_id,
                             uint64_t tid, kvx_status_t status,
                             uint32_t mismatches);

/** The sender's writes are complete (flushed, and for AM all bytes landed):
 *  verifies, commits the lease and answers the Commit @p req_id. */
void kvxi_rx_commit(kvxi_rx_t *rx, uint64_t req_id);

#endif /* KVX_RX_INT_H */
