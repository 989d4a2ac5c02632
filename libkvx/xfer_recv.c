/*
 * Push transfers, receiver side: reserve (with dedupe) on AllocateRequest,
 * admit AM chunks only into blocks reserved for that transfer (per-block
 * owner table), commit when the data is in place, fence on abort/expiry
 * and lift the fence only when the writer is quiesced or gone; hand the
 * request's blocks to the engine through kvx_node_recv().
 */
#include "node_int.h"

#include "log_int.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <xxhash.h>

#define RX_SLOT_NONE UINT32_MAX

void kvxi_rx_link(struct kvx_node *node, kvxi_rx_t *rx)
{
    rx->next = node->rxs;
    if (node->rxs != NULL) {
        node->rxs->prev = rx;
    }
    node->rxs = rx;
}

void kvxi_rx_free(kvxi_rx_t *rx)
{
    struct kvx_node *node = rx->node;

    if (rx->prev != NULL) {
        rx->prev->next = rx->next;
    } else if (node->rxs == rx) {
        node->rxs = rx->next;
    }
    if (rx->next != NULL) {
        rx->next->prev = rx->prev;
    }
    if (rx->slot != RX_SLOT_NONE) {
        node->rx_slots[rx->slot] = NULL;
    }
    if (rx->pull_x != NULL) {
        rx->pull_x->rx = NULL;
    }
    free(rx->refs);
    free(rx->hit);
    free(rx->checksums);
    free(rx);
}

void kvxi_rx_free_all(struct kvx_node *node)
{
    while (node->rxs != NULL) {
        kvxi_rx_free(node->rxs);
    }
}

static kvx_status_t rx_slot_take(struct kvx_node *node, kvxi_rx_t *rx)
{
    uint32_t slot, rnd = 0;

    for (slot = 0; slot < node->n_rx_slots; slot++) {
        if (node->rx_slots[slot] == NULL) {
            break;
        }
    }
    if (slot == node->n_rx_slots) {
        uint32_t n = node->n_rx_slots ? node->n_rx_slots * 2 : 16;
        kvxi_rx_t **s = realloc(node->rx_slots, n * sizeof(*s));

        if (s == NULL) {
            return KVX_ERR_NO_MEMORY;
        }
        memset(s + node->n_rx_slots, 0, (n - node->n_rx_slots) * sizeof(*s));
        node->rx_slots = s;
        node->n_rx_slots = n;
    }
    while (rnd == 0) {
        if (getrandom(&rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
            return KVX_ERR_IO;
        }
    }
    node->rx_slots[slot] = rx;
    rx->slot = slot;
    rx->tag = ((uint64_t)rnd << 32) | slot;
    return KVX_OK;
}

static void rx_release_slot(kvxi_rx_t *rx)
{
    if (rx->slot != RX_SLOT_NONE) {
        rx->node->rx_slots[rx->slot] = NULL;
        rx->slot = RX_SLOT_NONE;
    }
}

/* No more writes are admitted for @p rx (owner table cleared; the slot too,
 * unless admitted chunks are still landing: kvxi_rx_am_done() finds the rx
 * by it). */
static void rx_close_window(kvxi_rx_t *rx)
{
    struct kvx_node *node = rx->node;

    for (uint32_t i = 0; i < rx->n_blocks; i++) {
        if (!rx->hit[i] && node->owner[rx->refs[i].block] == rx) {
            node->owner[rx->refs[i].block] = NULL;
        }
    }
    if (rx->am_pending == 0) {
        rx_release_slot(rx);
    }
}

static kvxi_rx_t *rx_by_tag(struct kvx_node *node, uint64_t tag)
{
    uint32_t slot = (uint32_t)tag;
    kvxi_rx_t *rx;

    if (slot >= node->n_rx_slots) {
        return NULL;
    }
    rx = node->rx_slots[slot];
    return rx != NULL && rx->tag == tag ? rx : NULL;
}

/* The rx that admits writes under @p tag (RESERVED), or NULL. */
static kvxi_rx_t *rx_open_by_tag(struct kvx_node *node, uint64_t tag)
{
    kvxi_rx_t *rx = rx_by_tag(node, tag);

    return rx != NULL && rx->state == KVXI_RX_RESERVED ? rx : NULL;
}

kvxi_rx_t *kvxi_rx_find(struct kvx_peer *peer, uint64_t tid)
{
    for (kvxi_rx_t *rx = peer->node->rxs; rx != NULL; rx = rx->next) {
        if (rx->peer == peer && rx->transfer_id == tid) {
            return rx;
        }
    }
    return NULL;
}

/* Lifts the fence of a failed rx whose writer is quiesced (and frees it
 * when nobody will collect it), or, while admitted AM chunks may still
 * write into its blocks, once the last of them is done (kvxi_rx_am_done). */
static void rx_unfence(kvxi_rx_t *rx)
{
    if (rx->am_pending > 0) {
        if (!rx->unfence_deferred) {
            rx->unfence_deferred = 1;
            rx->late_deadline_ns =
                kvxi_node_now_ns() + rx->node->late_grace_ms * 1000000ull;
            kvxi_node_timer_rearm(rx->node);
        }
        return;
    }
    if (rx->fenced) {
        kvx_alloc_lease_unfence(rx->node->alloc, rx->lease);
        rx->fenced = 0;
        rx->lease = 0;
    }
    if (rx->reported || rx->superseded) {
        kvxi_rx_free(rx);
    }
}

/* Fails a reserved rx: no write is admitted any more, hits are unpinned,
 * the lease is fenced (already, when it expired), and lifted at once when
 * the writer is known to be quiesced. Returns 1 if @p rx was freed. */
static int rx_fail(kvxi_rx_t *rx, kvx_status_t status, int already_fenced,
                   int quiesced)
{
    struct kvx_node *node = rx->node;

    if (rx->state != KVXI_RX_RESERVED) {
        return 0;
    }
    rx->state = KVXI_RX_FAILED;
    rx->status = status;
    rx_close_window(rx);
    for (uint32_t i = 0; i < rx->n_blocks; i++) {
        if (rx->hit[i]) {
            kvx_alloc_unpin(node->alloc, rx->refs[i]);
        }
    }
    if (rx->lease != 0) {
        if (!already_fenced) {
            kvx_alloc_lease_abort(node->alloc, rx->lease);
        }
        rx->fenced = 1;
    }
    node->stats.transfers_failed++;
    kvxi_debug("node %s: incoming transfer %llu (request %llu) failed: %s",
               node->node_id, (unsigned long long)rx->transfer_id,
               (unsigned long long)rx->request_id, kvx_status_string(status));
    if (rx->pull_x != NULL) {
        kvxi_pull_rx_done(rx->pull_x, status);
    }
    if (quiesced) {
        int freeing = (rx->reported || rx->superseded) && rx->am_pending == 0;

        rx_unfence(rx);
        return freeing;
    }
    return 0;
}

kvx_status_t kvxi_peer_send_alloc_reply(struct kvx_peer *peer, uint64_t req_id,
                                        uint64_t deadline_us, uint64_t tid,
                                        kvx_status_t status, uint64_t lease,
                                        const kvx_block_ref_t *refs,
                                        const uint8_t *hit, uint32_t n)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT;
    Kvx__V1__AllocateReply r = KVX__V1__ALLOCATE_REPLY__INIT;
    Kvx__V1__BlockRefs br = KVX__V1__BLOCK_REFS__INIT;
    uint32_t *blocks = NULL, *gens = NULL;
    uint8_t *mask = NULL;
    kvx_status_t sent;

    r.status = (Kvx__V1__Status)kvxi_status_to_wire(status);
    r.transfer_id = tid;
    if (status == KVX_OK) {
        blocks = malloc(n * sizeof(*blocks));
        gens = malloc(n * sizeof(*gens));
        mask = calloc((n + 7) / 8, 1);
        if (blocks == NULL || gens == NULL || mask == NULL) {
            free(blocks);
            free(gens);
            free(mask);
            return KVX_ERR_NO_MEMORY;
        }
        for (uint32_t i = 0; i < n; i++) {
            blocks[i] = refs[i].block;
            gens[i] = refs[i].gen;
            if (hit != NULL) {
                mask[i / 8] |= (uint8_t)(hit[i] << (i % 8));
            }
        }
        r.lease_id = lease;
        r.block_count = n;
        br.n_blocks = br.n_gens = n;
        br.blocks = blocks;
        br.gens = gens;
        r.blocks = &br;
        r.hit_mask.data = mask;
        r.hit_mask.len = (n + 7) / 8;
    }
    env.request_id = req_id;
    env.deadline_us = deadline_us;
    env.body_case = KVX__V1__ENVELOPE__BODY_ALLOCATE_REPLY;
    env.allocate_reply = &r;
    sent = kvxi_peer_send(peer, &env);
    free(blocks);
    free(gens);
    free(mask);
    return sent;
}

static void rx_reply_alloc(struct kvx_peer *peer, uint64_t req_id, uint64_t tid,
                           kvx_status_t status, kvxi_rx_t *rx)
{
    kvx_status_t st = kvxi_peer_send_alloc_reply(
        peer, req_id, 0, tid, status, rx != NULL ? rx->tag : 0,
        rx != NULL ? rx->refs : NULL, rx != NULL ? rx->hit : NULL,
        rx != NULL ? rx->n_blocks : 0);

    if (st == KVX_ERR_NO_MEMORY) {
        kvxi_peer_send_error(peer, req_id, KVX_ERR_NO_MEMORY, "out of memory");
    }
}

kvxi_rx_t *kvxi_rx_by_request(struct kvx_node *node, uint64_t request_id)
{
    for (kvxi_rx_t *rx = node->rxs; rx != NULL; rx = rx->next) {
        if (rx->request_id == request_id && !rx->superseded && !rx->reported) {
            return rx;
        }
    }
    return NULL;
}

kvx_status_t kvxi_rx_reserve(struct kvx_node *node, kvxi_rx_t *rx,
                             const Kvx__V1__AllocateRequest *r)
{
    uint32_t lease_ms = r->lease_ms > 0 && r->lease_ms < node->lease_ms
                            ? r->lease_ms
                            : node->lease_ms;
    uint64_t deadline = kvxi_node_now_ns() + (uint64_t)lease_ms * 1000000ull;
    uint32_t n = r->block_count, n_hit = 0;
    kvx_status_t status;

    rx->refs = malloc(n * sizeof(*rx->refs));
    rx->hit = calloc(n, 1);
    if (rx->refs == NULL || rx->hit == NULL) {
        return KVX_ERR_NO_MEMORY;
    }
    if (n > node->layout.num_blocks) {
        return KVX_ERR_NO_SPACE; /* more than the whole pool */
    }
    if (r->keys.len > 0) {
        status = kvx_alloc_reserve_keyed(
            node->alloc, (const kvx_block_key_t *)(const void *)r->keys.data, n,
            deadline, &rx->lease, rx->refs, rx->hit, &n_hit);
    } else {
        status =
            kvx_alloc_reserve(node->alloc, n, deadline, &rx->lease, rx->refs);
    }
    if (status != KVX_OK) {
        return status;
    }
    rx->n_blocks = n;
    rx->n_miss = n - n_hit;
    node->stats.dedupe_hit_blocks += n_hit;
    if (rx->n_miss == 0) {
        rx->state = KVXI_RX_COMMITTED;
        return KVX_OK;
    }
    status = rx_slot_take(node, rx);
    if (status != KVX_OK) {
        for (uint32_t i = 0; i < n; i++) {
            if (rx->hit[i]) {
                kvx_alloc_unpin(node->alloc, rx->refs[i]);
            }
        }
        kvx_alloc_lease_abort(node->alloc, rx->lease);
        kvx_alloc_lease_unfence(node->alloc, rx->lease);
        return status;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (!rx->hit[i]) {
            node->owner[rx->refs[i].block] = rx;
        }
    }
    rx->max_bytes = (uint64_t)rx->n_miss * node->layout.block_bytes;
    return KVX_OK;
}

void kvxi_rx_on_alloc_request(struct kvx_peer *peer, const kvxi_envelope_t *env)
{
    const Kvx__V1__AllocateRequest *r = env->allocate_request;
    struct kvx_node *node = peer->node;
    kvxi_rx_t *rx, *old;
    kvx_status_t status;

    if (node->shutting_down) {
        status = KVX_ERR_PEER_DOWN;
    } else if (kvxi_tid_is_ours(peer, r->transfer_id)) {
        status = KVX_ERR_INVALID_PARAM; /* the peer must use its parity */
    } else if (r->mode != KVX__V1__TRANSFER_MODE__TRANSFER_MODE_PUSH) {
        status = KVX_ERR_NOT_SUPPORTED;
    } else if (kvxi_rx_find(peer, r->transfer_id) != NULL) {
        status = KVX_ERR_EXISTS;
    } else {
        status = KVX_OK;
    }
    old = status == KVX_OK ? kvxi_rx_by_request(node, r->request_id) : NULL;
    if (old != NULL && old->state != KVXI_RX_FAILED) {
        status = KVX_ERR_EXISTS;
    } else if (old != NULL) {
        old->superseded = 1; /* its failure is replaced by the retry */
        if (!old->fenced) {
            kvxi_rx_free(old);
        }
    }
    if (status != KVX_OK) {
        rx_reply_alloc(peer, env->request_id, r->transfer_id, status, NULL);
        return;
    }
    rx = calloc(1, sizeof(*rx));
    if (rx == NULL) {
        rx_reply_alloc(peer, env->request_id, r->transfer_id, KVX_ERR_NO_MEMORY,
                       NULL);
        return;
    }
    rx->node = node;
    rx->peer = peer;
    rx->slot = RX_SLOT_NONE;
    rx->transfer_id = r->transfer_id;
    rx->request_id = r->request_id;
    rx->status = KVX_INPROGRESS;
    rx->am = r->data_path == KVX__V1__DATA_PATH__DATA_PATH_AM;
    status = kvxi_rx_reserve(node, rx, r);
    if (status != KVX_OK) {
        free(rx->refs);
        free(rx->hit);
        free(rx);
        rx_reply_alloc(peer, env->request_id, r->transfer_id, status, NULL);
        return;
    }
    if (rx->state == KVXI_RX_COMMITTED) {
        rx->status = KVX_OK;
        node->stats.transfers_ok++;
    }
    kvxi_rx_link(node, rx);
    rx_reply_alloc(peer, env->request_id, r->transfer_id, KVX_OK, rx);
}

static void rx_send_commit_ack(struct kvx_peer *peer, uint64_t req_id,
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
static void rx_commit(kvxi_rx_t *rx, uint64_t req_id)
{
    struct kvx_node *node = rx->node;
    struct kvx_peer *peer = rx->peer;
    uint64_t tid = rx->transfer_id;
    kvx_status_t status;
    uint32_t bad;

    rx->commit_req_id = 0;
    if (rx->am_failed || (rx->am && rx->landed != rx->data_bytes)) {
        rx_fail(rx, KVX_ERR_IO, 0, 1);
        rx_send_commit_ack(peer, req_id, tid, KVX_ERR_IO, 0);
        return;
    }
    bad = rx->n_checksums > 0 ? rx_verify(rx) : 0;
    if (bad > 0) {
        kvxi_error("node %s: incoming transfer %llu (request %llu): %u of %u "
                   "block(s) failed their checksum",
                   node->node_id, (unsigned long long)tid,
                   (unsigned long long)rx->request_id, bad, rx->n_miss);
        /* The writer flushed before its Commit: quiesced, free at once. */
        rx_fail(rx, KVX_ERR_CORRUPT, 0, 1);
        rx_send_commit_ack(peer, req_id, tid, KVX_ERR_CORRUPT, bad);
        return;
    }
    status = kvx_alloc_lease_commit(node->alloc, rx->lease);
    if (status != KVX_OK) {
        rx_fail(rx, KVX_ERR_ABORTED, 1, 1);
        rx_send_commit_ack(peer, req_id, tid, KVX_ERR_ABORTED, 0);
        return;
    }
    rx_close_window(rx);
    rx->lease = 0;
    rx->state = KVXI_RX_COMMITTED;
    rx->status = KVX_OK;
    node->stats.transfers_ok++;
    node->stats.bytes_received += rx->data_bytes;
    rx_send_commit_ack(peer, req_id, tid, KVX_OK, 0);
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
        rx_send_commit_ack(peer, env->request_id, c->transfer_id, KVX_OK, 0);
        return;
    }
    if (rx->state == KVXI_RX_FAILED) {
        rx_send_commit_ack(peer, env->request_id, c->transfer_id,
                           KVX_ERR_ABORTED, 0);
        return;
    }
    if (c->lease_id != rx->tag) {
        rx_send_commit_ack(peer, env->request_id, c->transfer_id,
                           KVX_ERR_STALE_HANDLE, 0);
        return;
    }
    if (!rx_commit_refs_ok(rx, c->blocks) || c->data_bytes > rx->max_bytes ||
        rx->landed > c->data_bytes) {
        rx_fail(rx, KVX_ERR_PROTO_MALFORMED, 0, 1);
        rx_send_commit_ack(peer, env->request_id, c->transfer_id,
                           KVX_ERR_PROTO_MALFORMED, 0);
        return;
    }
    rx->data_bytes = c->data_bytes;
    if (c->n_checksums > 0 && rx->checksums == NULL) {
        /* validated: one per entry of blocks, i.e. one per missed block */
        rx->checksums = malloc(c->n_checksums * sizeof(*rx->checksums));
        if (rx->checksums == NULL) {
            rx_fail(rx, KVX_ERR_NO_MEMORY, 0, 1);
            rx_send_commit_ack(peer, env->request_id, c->transfer_id,
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
    rx_commit(rx, env->request_id);
}

static void rx_send_abort_ack(struct kvx_peer *peer, uint64_t req_id,
                              uint64_t tid)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT;
    Kvx__V1__AbortAck a = KVX__V1__ABORT_ACK__INIT;

    a.transfer_id = tid;
    a.fence_lifted = 1;
    env.request_id = req_id;
    env.body_case = KVX__V1__ENVELOPE__BODY_ABORT_ACK;
    env.abort_ack = &a;
    kvxi_peer_send(peer, &env);
}

void kvxi_rx_on_abort(struct kvx_peer *peer, const kvxi_envelope_t *env)
{
    const Kvx__V1__Abort *a = env->abort;
    kvxi_rx_t *rx = kvxi_rx_find(peer, a->transfer_id);
    kvx_status_t reason = kvxi_status_from_wire(a->reason);
    char text[96];

    if (rx == NULL) {
        snprintf(text, sizeof(text), "Abort: unknown transfer %llu",
                 (unsigned long long)a->transfer_id);
        kvxi_peer_send_error(peer, env->request_id, KVX_ERR_NOT_FOUND, text);
        return;
    }
    if (reason >= KVX_OK) {
        reason = KVX_ERR_ABORTED;
    }
    /* The writer sends Abort only after flushing: quiesced. */
    if (rx->state == KVXI_RX_RESERVED) {
        uint64_t pending = rx->commit_req_id;

        if (pending != 0) {
            rx_send_commit_ack(peer, pending, a->transfer_id, reason, 0);
        }
        rx_fail(rx, reason, 0, 1);
    } else if (rx->state == KVXI_RX_FAILED) {
        rx_unfence(rx);
    }
    rx_send_abort_ack(peer, env->request_id, a->transfer_id);
}

void kvxi_rx_on_abort_ack(struct kvx_peer *peer, const kvxi_envelope_t *env)
{
    const Kvx__V1__AbortAck *a = env->abort_ack;
    kvxi_rx_t *rx = kvxi_rx_find(peer, a->transfer_id);

    if (rx != NULL && rx->state == KVXI_RX_FAILED && a->writes_quiesced) {
        rx_unfence(rx);
    }
}

static void rx_expired_cb(kvx_lease_id_t lease, void *arg)
{
    struct kvx_node *node = arg;

    for (kvxi_rx_t *rx = node->rxs; rx != NULL; rx = rx->next) {
        if (rx->state == KVXI_RX_RESERVED && rx->lease == lease) {
            rx->status = KVX_ERR_TIMEOUT; /* marked; handled below */
            return;
        }
    }
}

void kvxi_rx_expire(struct kvx_node *node)
{
    kvxi_rx_t *rx, *next;
    uint32_t n = 0;

    kvx_alloc_expire(node->alloc, rx_expired_cb, node, &n);
    if (n == 0) {
        return;
    }
    for (rx = node->rxs; rx != NULL; rx = next) {
        struct kvx_peer *peer = rx->peer;
        int alive = peer != NULL && peer->status == KVX_OK;
        uint64_t tid = rx->transfer_id, tag = rx->tag;
        uint64_t pending = rx->commit_req_id;

        next = rx->next;
        if (rx->state != KVXI_RX_RESERVED || rx->status != KVX_ERR_TIMEOUT) {
            continue;
        }
        if (pending != 0) {
            rx_send_commit_ack(peer, pending, tid, KVX_ERR_TIMEOUT, 0);
        }
        if (rx_fail(rx, KVX_ERR_TIMEOUT, 1, !alive) || !alive) {
            continue;
        }
        {
            kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT;
            Kvx__V1__Abort a = KVX__V1__ABORT__INIT;

            a.transfer_id = tid;
            a.lease_id = tag;
            a.reason = (Kvx__V1__Status)kvxi_status_to_wire(KVX_ERR_TIMEOUT);
            a.message = (char *)"lease expired";
            env.body_case = KVX__V1__ENVELOPE__BODY_ABORT;
            env.abort = &a;
            kvxi_peer_send(peer, &env);
        }
    }
}

void kvxi_rx_peer_down(struct kvx_peer *peer, kvx_status_t status)
{
    kvxi_rx_t *rx, *next;

    for (rx = peer->node->rxs; rx != NULL; rx = next) {
        next = rx->next;
        if (rx->peer != peer) {
            continue;
        }
        rx->peer = NULL;
        if (rx->state == KVXI_RX_RESERVED) {
            rx_fail(rx, status, 0, 1);
        } else if (rx->state == KVXI_RX_FAILED) {
            rx_unfence(rx);
        }
    }
}

void *kvxi_rx_am_dest(uint64_t tag, uint64_t off, uint64_t len, void *arg)
{
    struct kvx_node *node = arg;
    kvxi_rx_t *rx = rx_open_by_tag(node, tag);
    uint64_t bb = node->layout.block_bytes;

    if (rx == NULL || len == 0 || off > node->layout.region_bytes ||
        len > node->layout.region_bytes - off) {
        return NULL;
    }
    for (uint64_t b = off / bb; b <= (off + len - 1) / bb; b++) {
        if (node->owner[b] != rx) {
            return NULL;
        }
    }
    rx->am_pending++; /* until kvxi_rx_am_done(), whatever happens to rx */
    return node->pool_base + off;
}

void kvxi_rx_am_done(uint64_t tag, uint64_t off, uint64_t len, uint32_t seq,
                     kvx_status_t status, void *arg)
{
    kvxi_rx_t *rx = rx_by_tag(arg, tag);

    (void)off;
    (void)seq;
    if (rx == NULL) {
        return;
    }
    if (rx->am_pending > 0) {
        rx->am_pending--;
    }
    if (rx->state != KVXI_RX_RESERVED) {
        /* A late chunk of a closed rx: the last one frees the slot and
         * lifts a fence that waited for it. */
        if (rx->am_pending == 0) {
            rx_release_slot(rx);
            if (rx->unfence_deferred) {
                rx->unfence_deferred = 0;
                rx_unfence(rx);
            }
        }
        return;
    }
    if (status != KVX_OK) {
        rx->am_failed = 1;
        return;
    }
    rx->landed += len;
    if (rx->commit_req_id != 0 && rx->landed >= rx->data_bytes) {
        rx_commit(rx, rx->commit_req_id);
    }
}

void kvxi_rx_give_up_late(kvxi_rx_t *rx)
{
    kvxi_warn("node %s: incoming transfer %llu (request %llu): %u AM "
              "chunk(s) UCX admitted never completed within %u ms of the "
              "failure: fence lifted",
              rx->node->node_id, (unsigned long long)rx->transfer_id,
              (unsigned long long)rx->request_id, rx->am_pending,
              rx->node->late_grace_ms);
    rx->node->stats.am_given_up += rx->am_pending;
    rx->am_pending = 0;
    rx->unfence_deferred = 0;
    rx_release_slot(rx);
    rx_unfence(rx);
}

void kvxi_rx_am_refused(uint64_t tag, uint64_t off, uint64_t len,
                        kvx_status_t reason, void *arg)
{
    struct kvx_node *node = arg;

    node->stats.am_refused++;
    kvxi_debug("node %s: AM chunk refused (tag %llx, off %llu, len %llu): %s",
               node->node_id, (unsigned long long)tag, (unsigned long long)off,
               (unsigned long long)len, kvx_status_string(reason));
}

kvx_status_t kvx_node_recv(kvx_node_h node, uint64_t request_id,
                           uint32_t timeout_ms, kvx_block_ref_t *refs,
                           uint32_t max, uint32_t *n_p)
{
    uint64_t end;
    kvxi_rx_t *rx;
    kvx_status_t status;

    if (node == NULL || n_p == NULL || (refs == NULL && max > 0)) {
        return KVX_ERR_INVALID_PARAM;
    }
    *n_p = 0;
    end = kvxi_node_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    for (;;) {
        uint64_t now;

        rx = kvxi_rx_by_request(node, request_id);
        if (rx == NULL) {
            return KVX_ERR_NOT_FOUND;
        }
        if (rx->state != KVXI_RX_RESERVED) {
            break;
        }
        now = kvxi_node_now_ns();
        if (now >= end) {
            return KVX_INPROGRESS;
        }
        kvx_node_progress(node, (uint32_t)((end - now + 999999) / 1000000ull));
    }
    if (rx->state == KVXI_RX_FAILED) {
        status = rx->status;
        rx->reported = 1;
        if (!rx->fenced) {
            kvxi_rx_free(rx);
        }
        return status;
    }
    *n_p = rx->n_blocks;
    if (max < rx->n_blocks) {
        return KVX_ERR_NO_SPACE;
    }
    memcpy(refs, rx->refs, rx->n_blocks * sizeof(*refs));
    kvxi_rx_free(rx);
    return KVX_OK;
}

kvx_status_t kvxi_rx_pull_commit(kvxi_rx_t *rx)
{
    struct kvx_node *node = rx->node;
    kvx_status_t status = KVX_OK;

    if (rx->state != KVXI_RX_RESERVED) {
        return rx->status;
    }
    if (rx->lease != 0) {
        status = kvx_alloc_lease_commit(node->alloc, rx->lease);
    }
    if (status != KVX_OK) {
        rx_fail(rx, KVX_ERR_ABORTED, 1, 1);
        return KVX_ERR_ABORTED;
    }
    rx_close_window(rx);
    rx->lease = 0;
    rx->state = KVXI_RX_COMMITTED;
    rx->status = KVX_OK;
    node->stats.transfers_ok++;
    node->stats.bytes_received +=
        (uint64_t)rx->n_miss * node->layout.block_bytes;
    return KVX_OK;
}

void kvxi_rx_pull_fail(kvxi_rx_t *rx, kvx_status_t status, int quiesced)
{
    rx_fail(rx, status, 0, quiesced);
}

void kvxi_rx_pull_quiesced(kvxi_rx_t *rx)
{
    if (rx->state == KVXI_RX_FAILED) {
        rx_unfence(rx);
    }
}
