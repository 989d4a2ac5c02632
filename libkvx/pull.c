/*
 * Pull transfers, puller side (see pull_hold.c for the flow): reserve the
 * destination with dedupe, AllocateRequest{PULL}, then RMA get of the
 * missing blocks or, over AM, grant the holder the reservation and let it
 * push; commit locally and Release the holder's read hold.
 */
#include "node_int.h"

#include "log_int.h"

#include <stdlib.h>
#include <string.h>

#define PULL_FIELDS_ALL                                                        \
    (KVX_PULL_PARAM_FIELD_REQUEST_ID | KVX_PULL_PARAM_FIELD_N_BLOCKS |         \
     KVX_PULL_PARAM_FIELD_KEYS | KVX_PULL_PARAM_FIELD_DEADLINE |               \
     KVX_PULL_PARAM_FIELD_FLAGS)

static void pull_send_release(struct kvx_xfer *x)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT;
    Kvx__V1__Release rel = KVX__V1__RELEASE__INIT;
    Kvx__V1__BlockRefs refs = KVX__V1__BLOCK_REFS__INIT;
    uint32_t *blocks, *gens;

    if (x->dst == NULL || x->peer == NULL || x->peer->status != KVX_OK) {
        return;
    }
    blocks = malloc(x->n_blocks * sizeof(*blocks));
    gens = malloc(x->n_blocks * sizeof(*gens));
    if (blocks != NULL && gens != NULL) {
        for (uint32_t i = 0; i < x->n_blocks; i++) {
            blocks[i] = x->dst[i].block;
            gens[i] = x->dst[i].gen;
        }
        refs.n_blocks = refs.n_gens = x->n_blocks;
        refs.blocks = blocks;
        refs.gens = gens;
        rel.transfer_id = x->transfer_id;
        rel.blocks = &refs;
        env.body_case = KVX__V1__ENVELOPE__BODY_RELEASE;
        env.release = &rel;
        kvxi_peer_send(x->peer, &env);
    }
    free(blocks);
    free(gens);
}

/* Ends the pull (no post in flight): the holder drops its read hold. */
static void pull_finish(struct kvx_xfer *x, kvx_status_t status)
{
    pull_send_release(x);
    kvxi_xfer_finish(x, status);
}

void kvxi_pull_rx_done(struct kvx_xfer *x, kvx_status_t status)
{
    if (x->state == KVXI_XFER_DONE || x->state == KVXI_XFER_STOPPING) {
        return;
    }
    if (status == KVX_OK) {
        if (x->bytes_sent == 0) {
            x->bytes_sent = (uint64_t)x->n_miss * x->node->layout.block_bytes;
        }
        pull_finish(x, KVX_OK);
        return;
    }
    x->stop_status = status;
    if (x->posts > 0) {
        x->state = KVXI_XFER_STOPPING;
        for (kvxi_xfer_post_t *p = x->post_list; p != NULL; p = p->next) {
            kvxi_ucx_cancel(p->post);
        }
        return;
    }
    pull_finish(x, status);
}

void kvxi_pull_stop(struct kvx_xfer *x, kvx_status_t status)
{
    kvxi_rx_t *rx = x->rx;
    int writer_may_run;

    if (x->state == KVXI_XFER_DONE || x->state == KVXI_XFER_STOPPING) {
        return;
    }
    if (rx == NULL || rx->state != KVXI_RX_RESERVED) {
        kvxi_pull_rx_done(x, status);
        return;
    }
    /* Over AM the holder may still be writing into our blocks once we
     * granted them: fence until it acks the Abort (or goes away). */
    writer_may_run = rx->am && x->state == KVXI_XFER_RUNNING;
    if (writer_may_run && x->peer != NULL && x->peer->status == KVX_OK) {
        kvxi_pull_send_abort(x->peer, x->transfer_id, rx->tag, status);
    }
    kvxi_rx_pull_fail(rx, status, !writer_may_run && x->posts == 0);
}

static void pull_post_cb(kvx_status_t status, void *arg)
{
    kvxi_xfer_post_t *p = arg;
    struct kvx_xfer *x = p->xfer;
    kvx_status_t st;

    kvxi_xfer_post_unlink(p);
    if (status == KVX_OK) {
        x->bytes_sent += p->bytes;
    }
    free(p->segs);
    free(p);
    if (x->state == KVXI_XFER_STOPPING) {
        if (x->posts == 0) {
            if (x->rx != NULL) {
                kvxi_rx_pull_quiesced(x->rx);
            }
            pull_finish(x, x->stop_status);
        }
        return;
    }
    if (x->state != KVXI_XFER_RUNNING) {
        return;
    }
    if (status != KVX_OK) {
        kvxi_pull_stop(x, status);
        return;
    }
    st = x->rx != NULL ? kvxi_rx_pull_commit(x->rx) : KVX_ERR_ABORTED;
    if (st == KVX_OK) {
        kvxi_pull_rx_done(x, KVX_OK);
    } else {
        kvxi_pull_rx_done(x, st);
    }
}

static kvx_status_t pull_post(struct kvx_xfer *x)
{
    kvx_plan_request_t req = {
        .src = &x->peer->info->layout,
        .dst = &x->node->layout,
        .src_blocks = x->miss_src,
        .n_src_blocks = x->n_miss,
        .dst_blocks = x->miss_dst,
        .n_dst_blocks = x->n_miss,
    };
    const kvx_segment_t *segs;
    kvx_status_t status;
    size_t n = 0;

    status = kvx_plan_build(x->node->plan, &req);
    if (status != KVX_OK) {
        return status;
    }
    segs = kvx_plan_segments(x->node->plan, &n);
    return kvxi_xfer_post(x, KVXI_UCX_PULL, segs, n, x->transfer_id,
                          pull_post_cb);
}

/* AM: grant the holder our reservation; it pushes into it and commits. */
static kvx_status_t pull_send_grant(struct kvx_xfer *x)
{
    kvxi_rx_t *rx = x->rx;
    uint64_t now = kvxi_node_now_ns();
    uint64_t deadline_us =
        x->deadline_ns > now ? (x->deadline_ns - now) / 1000 + 1 : 1;

    return kvxi_peer_send_alloc_reply(x->peer, 0, deadline_us, x->transfer_id,
                                      KVX_OK, rx->tag, rx->refs, rx->hit,
                                      x->n_blocks);
}

static kvx_status_t pull_take_reply(struct kvx_xfer *x,
                                    const Kvx__V1__AllocateReply *r)
{
    const kvx_layout_t *hl = &x->peer->info->layout;
    kvxi_rx_t *rx = x->rx;
    uint32_t n = x->n_blocks, j = 0;

    if (r->block_count != n || r->blocks == NULL || r->blocks->n_blocks != n) {
        return KVX_ERR_PROTO_MALFORMED;
    }
    x->dst = malloc(n * sizeof(*x->dst));
    x->miss_src = malloc(n * sizeof(uint32_t));
    x->miss_dst = malloc(n * sizeof(uint32_t));
    if (x->dst == NULL || x->miss_src == NULL || x->miss_dst == NULL) {
        free(x->dst);
        x->dst = NULL;
        return KVX_ERR_NO_MEMORY;
    }
    for (uint32_t i = 0; i < n; i++) {
        x->dst[i].block = r->blocks->blocks[i];
        x->dst[i].gen = r->blocks->gens[i];
    }
    for (uint32_t i = 0; i < n; i++) {
        if (x->dst[i].block >= hl->num_blocks) {
            return KVX_ERR_PROTO_MALFORMED;
        }
        if (!rx->hit[i]) {
            x->miss_src[j] = x->dst[i].block;
            x->miss_dst[j] = rx->refs[i].block;
            j++;
        }
    }
    x->n_miss = j;
    x->n_hit = n - j;
    return KVX_OK;
}

void kvxi_pull_on_reply(struct kvx_xfer *x, const kvxi_envelope_t *env)
{
    const Kvx__V1__AllocateReply *r = env->allocate_reply;
    kvx_status_t status = kvxi_status_from_wire(r->status);

    if (x->state != KVXI_XFER_ALLOCATING) {
        return;
    }
    if (status == KVX_OK && x->rx == NULL) {
        status = KVX_ERR_ABORTED;
    }
    if (status == KVX_OK) {
        status = pull_take_reply(x, r);
    }
    if (status != KVX_OK) {
        kvxi_pull_stop(x, status);
        return;
    }
    x->t_alloc = kvxi_node_now_ns();
    if (x->n_miss == 0) {
        status = kvxi_rx_pull_commit(x->rx);
        kvxi_pull_rx_done(x, status);
        return;
    }
    x->state = KVXI_XFER_RUNNING;
    if (x->transport == KVX_TRANSPORT_RMA) {
        status = pull_post(x);
    } else {
        status = pull_send_grant(x);
    }
    if (status != KVX_OK) {
        kvxi_pull_stop(x, status);
    }
}

/* Reserves the destination (dedupe with @p keys, may be NULL). */
static kvx_status_t rx_pull_start(struct kvx_peer *peer, uint64_t tid,
                                  uint64_t request_id, uint32_t n,
                                  const kvx_block_key_t *keys, int am,
                                  kvxi_rx_t **rx_p)
{
    struct kvx_node *node = peer->node;
    Kvx__V1__AllocateRequest r = KVX__V1__ALLOCATE_REQUEST__INIT;
    kvxi_rx_t *rx, *old = kvxi_rx_by_request(node, request_id);
    kvx_status_t status;

    if (old != NULL && old->state != KVXI_RX_FAILED) {
        return KVX_ERR_EXISTS;
    }
    rx = calloc(1, sizeof(*rx));
    if (rx == NULL) {
        return KVX_ERR_NO_MEMORY;
    }
    rx->node = node;
    rx->peer = peer;
    rx->slot = UINT32_MAX;
    rx->transfer_id = tid;
    rx->request_id = request_id;
    rx->status = KVX_INPROGRESS;
    rx->am = am;
    rx->pull = 1;
    r.block_count = n;
    if (keys != NULL) {
        r.keys.data = (uint8_t *)(uintptr_t)keys;
        r.keys.len = (size_t)n * KVXI_KEY_LEN;
    }
    status = kvxi_rx_reserve(node, rx, &r);
    if (status != KVX_OK) {
        free(rx->refs);
        free(rx->hit);
        free(rx);
        return status;
    }
    if (old != NULL) {
        old->superseded = 1;
        if (!old->fenced) {
            kvxi_rx_free(old);
        }
    }
    /* Collectable only once the holder answered and the data is in. */
    rx->state = KVXI_RX_RESERVED;
    kvxi_rx_link(node, rx);
    *rx_p = rx;
    return KVX_OK;
}

kvx_status_t kvx_node_pull(kvx_node_h node, kvx_peer_h peer,
                           const kvx_pull_params_t *p, kvx_xfer_h *xfer_p)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT;
    Kvx__V1__AllocateRequest r = KVX__V1__ALLOCATE_REQUEST__INIT;
    Kvx__V1__BlockRefs refs = KVX__V1__BLOCK_REFS__INIT;
    uint32_t *blocks = NULL, *gens = NULL;
    struct kvx_xfer *x;
    uint32_t deadline_ms;
    kvx_status_t status;

    if (node == NULL || peer == NULL || xfer_p == NULL || p == NULL ||
        peer->node != node || (p->field_mask & ~(uint64_t)PULL_FIELDS_ALL) ||
        !(p->field_mask & KVX_PULL_PARAM_FIELD_REQUEST_ID) ||
        !(p->field_mask & KVX_PULL_PARAM_FIELD_N_BLOCKS) || p->n_blocks == 0 ||
        p->n_blocks > KVXI_NODE_XFER_BLOCKS_MAX ||
        ((p->field_mask & KVX_PULL_PARAM_FIELD_KEYS) && p->keys == NULL)) {
        return KVX_ERR_INVALID_PARAM;
    }
    if ((p->field_mask & KVX_PULL_PARAM_FIELD_FLAGS) && p->flags != 0) {
        return KVX_ERR_NOT_SUPPORTED;
    }
    if (node->shutting_down || peer->status == KVX_INPROGRESS) {
        return KVX_ERR_BAD_STATE;
    }
    if (peer->status != KVX_OK) {
        return peer->status; /* it failed (e.g. PEER_DOWN): reconnect */
    }
    deadline_ms =
        (p->field_mask & KVX_PULL_PARAM_FIELD_DEADLINE) && p->deadline_ms > 0
            ? p->deadline_ms
            : KVXI_NODE_DEADLINE_MS_DEFAULT;
    x = calloc(1, sizeof(*x));
    if (x == NULL) {
        return KVX_ERR_NO_MEMORY;
    }
    x->node = node;
    x->peer = peer;
    x->pull = 1;
    x->n_blocks = p->n_blocks;
    x->request_id = p->request_id;
    x->transport = peer->transport;
    x->transfer_id = (peer->next_transfer++ << 1) | (peer->is_client ? 1 : 0);
    status = rx_pull_start(peer, x->transfer_id, p->request_id, p->n_blocks,
                           (p->field_mask & KVX_PULL_PARAM_FIELD_KEYS) ? p->keys
                                                                       : NULL,
                           peer->transport != KVX_TRANSPORT_RMA, &x->rx);
    if (status != KVX_OK) {
        free(x);
        return status;
    }
    x->rx->pull_x = x;
    x->t_start = kvxi_node_now_ns();
    x->deadline_ns = x->t_start + (uint64_t)deadline_ms * 1000000ull;
    x->status = KVX_INPROGRESS;
    x->state = KVXI_XFER_ALLOCATING;
    x->layer_ready = node->layout.num_layers;
    /* src_blocks: the refs we reserved (PULL needs block_count of them;
     * the holder answers with its own). */
    blocks = malloc(x->n_blocks * sizeof(*blocks));
    gens = malloc(x->n_blocks * sizeof(*gens));
    status = blocks != NULL && gens != NULL ? KVX_OK : KVX_ERR_NO_MEMORY;
    if (status == KVX_OK) {
        for (uint32_t i = 0; i < x->n_blocks; i++) {
            blocks[i] = x->rx->refs[i].block;
            gens[i] = x->rx->refs[i].gen;
        }
        refs.n_blocks = refs.n_gens = x->n_blocks;
        refs.blocks = blocks;
        refs.gens = gens;
        r.transfer_id = x->transfer_id;
        r.block_count = x->n_blocks;
        r.lease_ms =
            deadline_ms < KVXI_LEASE_MS_MAX ? deadline_ms : KVXI_LEASE_MS_MAX;
        r.mode = KVX__V1__TRANSFER_MODE__TRANSFER_MODE_PULL;
        r.data_path = x->transport == KVX_TRANSPORT_RMA
                          ? KVX__V1__DATA_PATH__DATA_PATH_RMA
                          : KVX__V1__DATA_PATH__DATA_PATH_AM;
        r.src_blocks = &refs;
        r.request_id = x->request_id;
        env.deadline_us = (uint64_t)deadline_ms * 1000;
        env.body_case = KVX__V1__ENVELOPE__BODY_ALLOCATE_REQUEST;
        env.allocate_request = &r;
        status = kvxi_peer_send(peer, &env);
    }
    free(blocks);
    free(gens);
    if (status != KVX_OK) {
        kvxi_rx_t *rx = x->rx;

        rx->pull_x = NULL;
        rx->reported = 1; /* nobody will collect it: freed once quiesced */
        kvxi_rx_pull_fail(rx, status, 1);
        free(x);
        return status;
    }
    x->alloc_req_id = env.request_id;
    x->next = node->xfers;
    if (node->xfers != NULL) {
        node->xfers->prev = x;
    }
    node->xfers = x;
    kvxi_node_timer_rearm(node);
    *xfer_p = x;
    return KVX_OK;
}
