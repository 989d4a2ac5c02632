/*
 * Push transfers, receiver side: the Commit. Checks that it names the
 * transfer's lease and exactly its missed blocks, waits for AM bytes still
 * landing, verifies the XXH3 checksums of the written blocks when the
 * sender sent them, commits the lease and answers with a CommitAck.
 */
#include "rx_int.h"

#include "log_int.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

void kvxi_rx_send_commit_ack(struct kvx_peer *peer, uint64_t req_id,
                             uint64_t tid, kvx_status_t status,
                             uint32_t mismatches)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT;
    Kvx__V1__CommitAck a = KVX__V1__COMMIT_ACK__INIT;

    a.status = (Kvx__V1__Status)kvxi_status_to_wire(status);
    a.transfer_id = tid;
    a.checksum_mismatches = mismatches;
    env.request_id = req_id;
    env.body_case = KVX__V1__ENVELOPE__BODY_COMMIT_ACK;
    env.commit_ack = &a;
    if (peer != NULL && req_id != 0) {
        kvxi_peer_send(peer, &env);
    }
}

void kvxi_xfer_test_corrupt(struct kvx_node *node, int on)
{
    node->test_corrupt = on;
}

/* Recomputes the written blocks' checksums; returns how many differ. */
static uint32_t rx_verify(kvxi_rx_t *rx)
{
    struct kvx_node *node = rx->node;
    uint32_t bad = 0, j = 0;

    for (uint32_t i = 0; i < rx->n_blocks; i++) {
        uint8_t *b;

        if (rx->hit[i]) {
            continue;
        }
        b = kvx_pool_block_addr(node->pool, rx->refs[i].block);
        if (node->test_corrupt && j == 0) {
            b[node->layout.block_bytes / 2] ^= 0x5a;
        }
        if (XXH3_64bits(b, (size_t)node->layout.block_bytes) !=
            rx->checksums[j]) {
            bad++;
        }
        j++;
    }
    node->stats.blocks_verified += j - bad;
    node->stats.checksum_mismatches += bad;
    return bad;
}

/* The sender's writes are complete (flushed, and for AM all bytes landed). */
void kvxi_rx_commit(kvxi_rx_t *rx, uint64_t req_id)
{
    struct kvx_node *node = rx->node;
    struct kvx_peer *peer = rx->peer;
    uint64_t tid = rx->transfer_id;
    kvx_status_t status;
    uint32_t bad;

    rx->commit_req_id = 0;
    if (rx->am_failed || (rx->am && rx->landed != rx->data_bytes)) {
        kvxi_rx_fail(rx, KVX_ERR_IO, 0, 1);
        kvxi_rx_send_commit_ack(peer, req_id, tid, KVX_ERR_IO, 0);
        return;
    }
    bad = rx->n_checksums > 0 ? rx_verify(rx) : 0;
    if (bad > 0) {
        kvxi_error("node %s: incoming transfer %llu (request %llu): %u of %u "
                   "block(s) failed their checksum",
                   node->node_id, (unsigned long long)tid,
                   (unsigned long long)rx->request_id, bad, rx->n_miss);
        /* The writer flushed before its Commit: quiesced, free at once. */
        kvxi_rx_fail(rx, KVX_ERR_CORRUPT, 0, 1);
        kvxi_rx_send_commit_ack(peer, req_id, tid, KVX_ERR_CORRUPT, bad);
        return;
    }
    status = kvx_alloc_lease_commit(node->alloc, rx->lease);
    if (status != KVX_OK) {
        kvxi_rx_fail(rx, KVX_ERR_ABORTED, 1, 1);
        kvxi_rx_send_commit_ack(peer, req_id, tid, KVX_ERR_ABORTED, 0);
        return;
    }
    kvxi_rx_close_window(rx);
    rx->lease = 0;
    rx->state = KVXI_RX_COMMITTED;
    rx->status = KVX_OK;
    node->stats.transfers_ok++;
    node->stats.bytes_received += rx->data_bytes;
    kvxi_rx_send_commit_ack(peer, req_id, tid, KVX_OK, 0);
    if (rx->pull_x != NULL) {
        kvxi_pull_rx_done(rx->pull_x, KVX_OK);
    }
}

static int rx_commit_refs_ok(const kvxi_rx_t *rx, const Kvx__V1__BlockRefs *b)
{
    uint32_t j = 0;

    if (b == NULL || b->n_blocks != rx->n_miss) {
        return 0;
    }
    for (uint32_t i = 0; i < rx->n_blocks; i++) {
        if (rx->hit[i]) {
            continue;
        }
        if (b->blocks[j] != rx->refs[i].block ||
            b->gens[j] != rx->refs[i].gen) {
            return 0;
        }
        j++;
    }
    return 1;
}

void kvxi_rx_on_commit(struct kvx_peer *peer, const kvxi_envelope_t *env)
{
    const Kvx__V1__Commit *c = env->commit;
    kvxi_rx_t *rx = kvxi_rx_find(peer, c->transfer_id);
    char text[96];

    if (rx != NULL && !rx->pull && kvxi_tid_is_ours(peer, c->transfer_id)) {
        rx = NULL;
    }
    if (rx == NULL) {
        snprintf(text, sizeof(text), "Commit: unknown transfer %llu",
                 (unsigned long long)c->transfer_id);
        kvxi_peer_send_error(peer, env->request_id, KVX_ERR_NOT_FOUND, text);
        return;
    }
    if (rx->state == KVXI_RX_COMMITTED) {
        kvxi_rx_send_commit_ack(peer, env->request_id, c->transfer_id, KVX_OK,
                                0);
        return;
    }
    if (rx->state == KVXI_RX_FAILED) {
        kvxi_rx_send_commit_ack(peer, env->request_id, c->transfer_id,
                                KVX_ERR_ABORTED, 0);
        return;
    }
    if (c->lease_id != rx->tag) {
        kvxi_rx_send_commit_ack(peer, env->request_id, c->transfer_id,
                                KVX_ERR_STALE_HANDLE, 0);
        return;
    }
    if (!rx_commit_refs_ok(rx, c->blocks) || c->data_bytes > rx->max_bytes ||
        rx->landed > c->data_bytes) {
        kvxi_rx_fail(rx, KVX_ERR_PROTO_MALFORMED, 0, 1);
        kvxi_rx_send_commit_ack(peer, env->request_id, c->transfer_id,
                                KVX_ERR_PROTO_MALFORMED, 0);
        return;
    }
    rx->data_bytes = c->data_bytes;
    if (c->n_checksums > 0 && rx->checksums == NULL) {
        /* validated: one per entry of blocks, i.e. one per missed block */
        rx->checksums = malloc(c->n_checksums * sizeof(*rx->checksums));
        if (rx->checksums == NULL) {
            kvxi_rx_fail(rx, KVX_ERR_NO_MEMORY, 0, 1);
            kvxi_rx_send_commit_ack(peer, env->request_id, c->transfer_id,
                                    KVX_ERR_NO_MEMORY, 0);
            return;
        }
        memcpy(rx->checksums, c->checksums,
               c->n_checksums * sizeof(*rx->checksums));
        rx->n_checksums = (uint32_t)c->n_checksums;
    }
    if (rx->am && rx->landed < rx->data_bytes) {
        rx->commit_req_id = env->request_id; /* wait for the AM bytes */
        return;
    }
    kvxi_rx_commit(rx, env->request_id);
}
