/*
 * Push transfers, receiver side: reserve (with dedupe) on AllocateRequest,
 * fail a transfer and fence its lease on abort/expiry, lifting the fence
 * only when the writer is quiesced or gone; hand the request's blocks to
 * the engine through kvx_node_recv(). AM chunks are admitted only into
 * blocks reserved for their transfer (rx_am.c); the Commit is checked and
 * applied in rx_commit.c; uncollected requests are released by rx_hold.c.
 */
#include "rx_int.h"

#include "log_int.h"

#include <stdlib.h>
#include <string.h>

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
    if (rx->slot != KVXI_RX_SLOT_NONE) {
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
void kvxi_rx_unfence(kvxi_rx_t *rx)
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
int kvxi_rx_fail(kvxi_rx_t *rx, kvx_status_t status, int already_fenced,
                 int quiesced)
{
    struct kvx_node *node = rx->node;

    if (rx->state != KVXI_RX_RESERVED) {
        return 0;
    }
    rx->state = KVXI_RX_FAILED;
    rx->status = status;
    kvxi_rx_close_window(rx);
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

        kvxi_rx_unfence(rx);
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
    status = kvxi_rx_slot_take(node, rx);
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
    rx->slot = KVXI_RX_SLOT_NONE;
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
            kvxi_rx_send_commit_ack(peer, pending, a->transfer_id, reason, 0);
        }
        kvxi_rx_fail(rx, reason, 0, 1);
    } else if (rx->state == KVXI_RX_FAILED) {
        kvxi_rx_unfence(rx);
    }
    rx_send_abort_ack(peer, env->request_id, a->transfer_id);
}

void kvxi_rx_on_abort_ack(struct kvx_peer *peer, const kvxi_envelope_t *env)
{
    const Kvx__V1__AbortAck *a = env->abort_ack;
    kvxi_rx_t *rx = kvxi_rx_find(peer, a->transfer_id);

    if (rx != NULL && rx->state == KVXI_RX_FAILED && a->writes_quiesced) {
        kvxi_rx_unfence(rx);
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
            kvxi_rx_send_commit_ack(peer, pending, tid, KVX_ERR_TIMEOUT, 0);
        }
        if (kvxi_rx_fail(rx, KVX_ERR_TIMEOUT, 1, !alive) || !alive) {
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
            kvxi_rx_fail(rx, status, 0, 1);
        } else if (rx->state == KVXI_RX_FAILED) {
            kvxi_rx_unfence(rx);
        }
    }
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
        kvxi_rx_fail(rx, KVX_ERR_ABORTED, 1, 1);
        return KVX_ERR_ABORTED;
    }
    kvxi_rx_close_window(rx);
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
    kvxi_rx_fail(rx, status, 0, quiesced);
}

void kvxi_rx_pull_quiesced(kvxi_rx_t *rx)
{
    if (rx->state == KVXI_RX_FAILED) {
        kvxi_rx_unfence(rx);
    }
}
