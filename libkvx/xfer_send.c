/*
 * Push transfers, sender side: pin the source blocks, AllocateRequest,
 * post the missed blocks' segments layer range by layer range, Commit;
 * on failure stop posting, flush, and tell the receiver (Abort / AbortAck)
 * so it can lift its fence.
 */
#include "node_int.h"

#include "log_int.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define XFER_PARAM_FIELDS_ALL                                                  \
    (KVX_XFER_PARAM_FIELD_REQUEST_ID | KVX_XFER_PARAM_FIELD_BLOCKS |           \
     KVX_XFER_PARAM_FIELD_KEYS | KVX_XFER_PARAM_FIELD_DEADLINE |               \
     KVX_XFER_PARAM_FIELD_FLAGS)
#define XFER_FLAGS_ALL (KVX_XFER_FLAG_LAYERWISE | KVX_XFER_FLAG_CHECKSUM)

static void xfer_settle(struct kvx_xfer *x);

void kvxi_xfer_link(struct kvx_node *node, struct kvx_xfer *x)
{
    x->next = node->xfers;
    if (node->xfers != NULL) {
        node->xfers->prev = x;
    }
    node->xfers = x;
}

static void xfer_unlink(struct kvx_xfer *x)
{
    struct kvx_node *node = x->node;

    if (x->prev != NULL) {
        x->prev->next = x->next;
    } else if (node->xfers == x) {
        node->xfers = x->next;
    }
    if (x->next != NULL) {
        x->next->prev = x->prev;
    }
    x->next = x->prev = NULL;
}

static void xfer_unpin(struct kvx_xfer *x, uint32_t n)
{
    if (x->pull) {
        return; /* a pull pins nothing of its own: its rx holds the refs */
    }
    for (uint32_t i = 0; i < n; i++) {
        kvx_alloc_unpin(x->node->alloc, x->src[i]);
    }
}

void kvxi_xfer_free(struct kvx_xfer *x)
{
    kvxi_xfer_post_t *p, *next;

    if (x == NULL) {
        return;
    }
    if (x->state != KVXI_XFER_DONE && x->src != NULL) {
        xfer_unpin(x, x->n_blocks);
    }
    for (p = x->post_list; p != NULL; p = next) {
        next = p->next;
        free(p->segs);
        free(p);
    }
    xfer_unlink(x);
    if (x->rx != NULL) {
        x->rx->pull_x = NULL;
    }
    free(x->src);
    free(x->dst);
    free(x->hit);
    free(x->miss_src);
    free(x->miss_dst);
    free(x);
}

/* Hands the outcome to the caller (kvx_xfer_test/wait/query), once. */
static void xfer_report(struct kvx_xfer *x, kvx_status_t status)
{
    if (x->status == KVX_INPROGRESS) {
        x->status = status;
        x->t_end = kvxi_node_now_ns();
    }
}

void kvxi_xfer_finish(struct kvx_xfer *x, kvx_status_t status)
{
    struct kvx_node *node = x->node;

    if (x->state == KVXI_XFER_DONE) {
        return;
    }
    x->state = KVXI_XFER_DONE;
    xfer_report(x, status);
    xfer_unpin(x, x->n_blocks);
    if (status == KVX_OK) {
        node->stats.transfers_ok++;
    } else {
        node->stats.transfers_failed++;
    }
    kvxi_debug("node %s: transfer %llu (request %llu) ended: %s", node->node_id,
               (unsigned long long)x->transfer_id,
               (unsigned long long)x->request_id, kvx_status_string(status));
    if (x->released) {
        kvxi_xfer_free(x);
    }
}

static void xfer_post_cb(kvx_status_t status, void *arg)
{
    kvxi_xfer_post_t *p = arg;
    struct kvx_xfer *x = p->xfer;

    kvxi_xfer_post_unlink(p);
    if (p->n_segs == 0 && x->flushing) {
        x->flushing = 0;
        x->flushed = 1;
    } else if (status == KVX_OK) {
        x->bytes_sent += p->bytes;
        x->node->stats.bytes_sent += p->bytes;
    } else if (x->state != KVXI_XFER_STOPPING && x->state != KVXI_XFER_DONE) {
        kvxi_xfer_stop(x, status, 1);
    }
    free(p->segs);
    free(p);
    xfer_settle(x);
}

void kvxi_xfer_post_unlink(kvxi_xfer_post_t *p)
{
    struct kvx_xfer *x = p->xfer;
    kvxi_xfer_post_t **pp;

    for (pp = &x->post_list; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    }
    x->posts--;
}

kvx_status_t kvxi_xfer_post(struct kvx_xfer *x, kvxi_ucx_dir_t dir,
                            const kvx_segment_t *segs, size_t n,
                            uint64_t transfer_id, kvxi_ucx_post_cb_t cb)
{
    kvxi_xfer_post_t *p = calloc(1, sizeof(*p));
    kvxi_ucx_post_params_t pp = {.dir = dir};
    kvx_status_t status;

    if (p == NULL) {
        return KVX_ERR_NO_MEMORY;
    }
    if (n > 0) {
        p->segs = malloc(n * sizeof(*segs));
        if (p->segs == NULL) {
            free(p);
            return KVX_ERR_NO_MEMORY;
        }
        memcpy(p->segs, segs, n * sizeof(*segs));
    }
    p->n_segs = n;
    p->xfer = x;
    for (size_t i = 0; i < n; i++) {
        p->bytes += segs[i].len;
    }
    pp.mem = x->node->mem;
    pp.segs = p->segs;
    pp.n_segs = n;
    pp.transfer_id = transfer_id;
    pp.cb = cb;
    pp.arg = p;
    status = kvxi_ucx_post(x->peer->ep, &pp, &p->post);
    if (status != KVX_OK) {
        free(p->segs);
        free(p);
        return status;
    }
    p->next = x->post_list;
    x->post_list = p;
    x->posts++;
    x->segments += (uint32_t)n;
    return KVX_OK;
}

static kvx_status_t xfer_post(struct kvx_xfer *x, const kvx_segment_t *segs,
                              size_t n)
{
    return kvxi_xfer_post(x, KVXI_UCX_PUSH, segs, n, x->lease, xfer_post_cb);
}

static void xfer_send_commit(struct kvx_xfer *x)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT;
    Kvx__V1__Commit c = KVX__V1__COMMIT__INIT;
    Kvx__V1__BlockRefs refs = KVX__V1__BLOCK_REFS__INIT;
    uint32_t *gens = malloc(x->n_miss * sizeof(*gens));
    uint64_t *sums = NULL;
    uint64_t left = (x->deadline_ns - kvxi_node_now_ns()) / 1000;
    kvx_status_t status;
    uint32_t j = 0;

    if (x->flags & KVX_XFER_FLAG_CHECKSUM) {
        sums = malloc(x->n_miss * sizeof(*sums));
    }
    if (gens == NULL || ((x->flags & KVX_XFER_FLAG_CHECKSUM) && sums == NULL)) {
        free(gens);
        free(sums);
        kvxi_xfer_stop(x, KVX_ERR_NO_MEMORY, 1);
        return;
    }
    for (uint32_t i = 0; i < x->n_blocks; i++) {
        if (!x->hit[i]) {
            gens[j++] = x->dst[i].gen;
        }
    }
    /* Over the whole source block, now that every layer is written: what
     * the receiver's block must hold after the planner's segments. */
    for (j = 0; sums != NULL && j < x->n_miss; j++) {
        sums[j] =
            XXH3_64bits(kvx_pool_block_addr(x->node->pool, x->miss_src[j]),
                        (size_t)x->node->layout.block_bytes);
    }
    refs.n_blocks = x->n_miss;
    refs.blocks = x->miss_dst;
    refs.n_gens = x->n_miss;
    refs.gens = gens;
    c.transfer_id = x->transfer_id;
    c.lease_id = x->lease;
    c.blocks = &refs;
    c.data_bytes = x->bytes_sent;
    if (sums != NULL) {
        c.n_checksums = x->n_miss;
        c.checksums = sums;
    }
    env.deadline_us = left > 0 ? left : 1;
    env.body_case = KVX__V1__ENVELOPE__BODY_COMMIT;
    env.commit = &c;
    status = kvxi_peer_send(x->peer, &env);
    free(gens);
    free(sums);
    if (status != KVX_OK) {
        kvxi_xfer_stop(x, status, 1);
        return;
    }
    x->commit_req_id = env.request_id;
    x->state = KVXI_XFER_COMMITTING;
}

/* Posts the announced layers not posted yet; commits when all are done. */
static void xfer_pump(struct kvx_xfer *x)
{
    const kvx_layout_t *src = &x->node->layout;
    kvx_plan_request_t req = {
        .field_mask = KVX_PLAN_REQ_FIELD_LAYERS,
        .src = src,
        .dst = &x->peer->info->layout,
        .src_blocks = x->miss_src,
        .n_src_blocks = x->n_miss,
        .dst_blocks = x->miss_dst,
        .n_dst_blocks = x->n_miss,
    };
    kvx_plan_h plan = x->node->plan;
    const kvx_segment_t *segs;
    kvx_status_t status;
    size_t n;

    if (x->state != KVXI_XFER_RUNNING) {
        return;
    }
    if (x->layer_posted < x->layer_ready) {
        req.layer_begin = x->layer_posted;
        req.layer_end = x->layer_ready;
        status = kvx_plan_build(plan, &req);
        if (status == KVX_OK) {
            segs = kvx_plan_segments(plan, &n);
            status = xfer_post(x, segs, n);
        }
        if (status != KVX_OK) {
            kvxi_xfer_stop(x, status, 1);
            return;
        }
        x->layer_posted = x->layer_ready;
    }
    if (x->layer_posted == src->num_layers && x->posts == 0) {
        xfer_send_commit(x);
    }
}

static void xfer_send_abort(struct kvx_xfer *x)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT;
    Kvx__V1__Abort a = KVX__V1__ABORT__INIT;

    a.transfer_id = x->transfer_id;
    a.lease_id = x->lease;
    a.reason = (Kvx__V1__Status)kvxi_status_to_wire(x->stop_status);
    a.message = (char *)kvx_status_string(x->stop_status);
    env.body_case = KVX__V1__ENVELOPE__BODY_ABORT;
    env.abort = &a;
    kvxi_peer_send(x->peer, &env);
}

static void xfer_send_abort_ack(struct kvx_peer *peer, uint64_t tid,
                                uint64_t req_id)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT;
    Kvx__V1__AbortAck a = KVX__V1__ABORT_ACK__INIT;

    a.transfer_id = tid;
    a.writes_quiesced = 1;
    env.request_id = req_id;
    env.body_case = KVX__V1__ENVELOPE__BODY_ABORT_ACK;
    env.abort_ack = &a;
    kvxi_peer_send(peer, &env);
}

static void xfer_settle(struct kvx_xfer *x)
{
    int peer_ok = x->peer != NULL && x->peer->status == KVX_OK;

    if (x->state == KVXI_XFER_RUNNING) {
        xfer_pump(x);
        return;
    }
    if (x->state != KVXI_XFER_STOPPING || x->posts > 0) {
        return;
    }
    /* Every post ended; flush so that no write of ours is still on the way
     * before promising "quiesced". */
    if (peer_ok && x->layer_posted > 0 && !x->flushed && x->peer->ep != NULL &&
        (x->send_abort || x->abort_ack_req != 0)) {
        if (xfer_post(x, NULL, 0) == KVX_OK) {
            x->flushing = 1;
            return;
        }
    }
    if (peer_ok && x->abort_ack_req != 0) {
        xfer_send_abort_ack(x->peer, x->transfer_id, x->abort_ack_req);
    } else if (peer_ok && x->send_abort) {
        xfer_send_abort(x);
    }
    kvxi_xfer_finish(x, x->stop_status);
}

void kvxi_xfer_stop(struct kvx_xfer *x, kvx_status_t status, int tell)
{
    if (x->pull) {
        kvxi_pull_stop(x, status);
        return;
    }
    if (x->state == KVXI_XFER_DONE || x->state == KVXI_XFER_STOPPING) {
        return;
    }
    x->state = KVXI_XFER_STOPPING;
    x->stop_status = status;
    x->send_abort = tell;
    /* The caller learns the failure now: sends in flight may stay in UCX
     * until the link returns or the peer is declared down (3 heartbeats,
     * then the bounded endpoint close), which must not hold the transfer
     * past its deadline. The source pins stay until the writes are
     * quiesced (kvxi_xfer_finish), and so does the receiver's fence. */
    xfer_report(x, status);
    for (kvxi_xfer_post_t *p = x->post_list; p != NULL; p = p->next) {
        if (p->n_segs > 0) {
            kvxi_ucx_cancel(p->post);
        }
    }
    xfer_settle(x);
}

struct kvx_xfer *kvxi_xfer_find(struct kvx_peer *peer, uint64_t tid)
{
    for (struct kvx_xfer *x = peer->node->xfers; x != NULL; x = x->next) {
        if (x->peer == peer && x->transfer_id == tid) {
            return x;
        }
    }
    return NULL;
}

static kvx_status_t xfer_take_reply(struct kvx_xfer *x,
                                    const Kvx__V1__AllocateReply *r)
{
    const kvx_layout_t *dl = &x->peer->info->layout;
    uint32_t n = x->n_blocks, j = 0;

    if (r->block_count != n || r->blocks == NULL || r->blocks->n_blocks != n) {
        return KVX_ERR_PROTO_MALFORMED;
    }
    x->dst = malloc(n * sizeof(*x->dst));
    x->hit = calloc(n, 1);
    x->miss_src = malloc(n * sizeof(uint32_t));
    x->miss_dst = malloc(n * sizeof(uint32_t));
    if (x->dst == NULL || x->hit == NULL || x->miss_src == NULL ||
        x->miss_dst == NULL) {
        return KVX_ERR_NO_MEMORY;
    }
    for (uint32_t i = 0; i < n; i++) {
        x->dst[i].block = r->blocks->blocks[i];
        x->dst[i].gen = r->blocks->gens[i];
        x->hit[i] = (r->hit_mask.data[i / 8] >> (i % 8)) & 1u;
        if (x->dst[i].block >= dl->num_blocks) {
            return KVX_ERR_PROTO_MALFORMED;
        }
        if (!x->hit[i]) {
            x->miss_src[j] = x->src[i].block;
            x->miss_dst[j] = x->dst[i].block;
            j++;
        }
    }
    x->n_miss = j;
    x->n_hit = n - j;
    x->lease = r->lease_id;
    return KVX_OK;
}

void kvxi_xfer_on_reply(struct kvx_peer *peer, struct kvx_xfer *x,
                        const Kvx__V1__AllocateReply *r)
{
    kvx_status_t status;

    status = kvxi_status_from_wire(r->status);
    if (status != KVX_OK) {
        kvxi_xfer_stop(x, status, 0);
        return;
    }
    status = xfer_take_reply(x, r);
    if (status != KVX_OK) {
        kvxi_xfer_stop(x, status, 1);
        return;
    }
    peer->node->stats.dedupe_hit_blocks += x->n_hit;
    x->transport = peer->transport;
    if (x->n_miss == 0) {
        kvxi_xfer_finish(x, KVX_OK);
        return;
    }
    x->state = KVXI_XFER_RUNNING;
    xfer_pump(x);
}

void kvxi_xfer_on_alloc_reply(struct kvx_peer *peer, const kvxi_envelope_t *env)
{
    const Kvx__V1__AllocateReply *r = env->allocate_reply;
    struct kvx_xfer *x = kvxi_xfer_find(peer, r->transfer_id);

    if (x != NULL && x->pull) {
        kvxi_pull_on_reply(x, env);
        return;
    }
    if (x == NULL || x->state != KVXI_XFER_ALLOCATING) {
        kvxi_debug("node %s: AllocateReply for transfer %llu ignored",
                   peer->node->node_id, (unsigned long long)r->transfer_id);
        return;
    }
    kvxi_xfer_on_reply(peer, x, r);
}

void kvxi_xfer_on_commit_ack(struct kvx_peer *peer, const kvxi_envelope_t *env)
{
    const Kvx__V1__CommitAck *a = env->commit_ack;
    struct kvx_xfer *x = kvxi_xfer_find(peer, a->transfer_id);

    kvx_status_t status;

    if (x == NULL || x->state != KVXI_XFER_COMMITTING) {
        return;
    }
    status = kvxi_status_from_wire(a->status);
    x->checksum_mismatches = a->checksum_mismatches;
    if (status == KVX_ERR_CORRUPT) {
        kvxi_error("node %s: transfer %llu (request %llu): %u block(s) "
                   "failed their checksum on peer %s",
                   peer->node->node_id, (unsigned long long)x->transfer_id,
                   (unsigned long long)x->request_id, a->checksum_mismatches,
                   peer->addr);
    }
    kvxi_xfer_finish(x, status);
}

void kvxi_xfer_on_abort(struct kvx_peer *peer, const kvxi_envelope_t *env)
{
    const Kvx__V1__Abort *a = env->abort;
    struct kvx_xfer *x = kvxi_xfer_find(peer, a->transfer_id);
    kvx_status_t reason = kvxi_status_from_wire(a->reason);

    if (x == NULL || x->state == KVXI_XFER_DONE) {
        /* Nothing of ours is in flight for it. */
        xfer_send_abort_ack(peer, a->transfer_id, env->request_id);
        return;
    }
    if (reason >= KVX_OK) {
        reason = KVX_ERR_ABORTED;
    }
    x->abort_ack_req = env->request_id;
    if (x->state == KVXI_XFER_STOPPING) {
        xfer_settle(x);
        return;
    }
    kvxi_xfer_stop(x, reason, 0);
}

void kvxi_xfer_on_error(struct kvx_peer *peer, const kvxi_envelope_t *env)
{
    const Kvx__V1__Error *e = env->error;
    kvx_status_t code = kvxi_status_from_wire(e->code);

    for (struct kvx_xfer *x = peer->node->xfers; x != NULL; x = x->next) {
        if (x->peer == peer && x->state != KVXI_XFER_DONE &&
            (x->alloc_req_id == e->request_id ||
             x->commit_req_id == e->request_id)) {
            kvxi_xfer_stop(x, code < KVX_OK ? code : KVX_ERR_PEER_REFUSED, 0);
            return;
        }
    }
    kvxi_warn("node %s: peer %s: error %s: %s", peer->node->node_id, peer->addr,
              kvx_status_string(code), e->message != NULL ? e->message : "");
}

void kvxi_xfer_check_deadlines(struct kvx_node *node, uint64_t now,
                               uint64_t *next_p)
{
    struct kvx_xfer *x, *next;

    for (x = node->xfers; x != NULL; x = next) {
        next = x->next;
        if (x->state == KVXI_XFER_DONE || x->state == KVXI_XFER_STOPPING) {
            continue;
        }
        if (now != 0 && x->deadline_ns <= now) {
            kvxi_xfer_stop(x, KVX_ERR_TIMEOUT, 1);
        } else if (x->deadline_ns < *next_p) {
            *next_p = x->deadline_ns;
        }
    }
    kvxi_pull_check_leases(node, now, next_p);
}

void kvxi_xfer_peer_down(struct kvx_peer *peer, kvx_status_t status)
{
    struct kvx_xfer *x, *next;

    for (x = peer->node->xfers; x != NULL; x = next) {
        next = x->next;
        if (x->peer == peer) {
            kvxi_xfer_stop(x, status, 0);
        }
    }
}

void kvxi_xfer_detach_peer(struct kvx_peer *peer)
{
    struct kvx_xfer *x, *next;

    for (x = peer->node->xfers; x != NULL; x = next) {
        next = x->next;
        if (x->peer != peer) {
            continue;
        }
        if (x->state != KVXI_XFER_DONE) {
            x->posts = 0;
            kvxi_xfer_finish(x, x->state == KVXI_XFER_STOPPING
                                    ? x->stop_status
                                    : KVX_ERR_PEER_DOWN);
            if (x->released) {
                continue; /* freed */
            }
        }
        x->peer = NULL;
    }
}

static kvx_status_t xfer_check_params(const kvx_xfer_params_t *p)
{
    if (p == NULL || (p->field_mask & ~(uint64_t)XFER_PARAM_FIELDS_ALL) ||
        !(p->field_mask & KVX_XFER_PARAM_FIELD_REQUEST_ID) ||
        !(p->field_mask & KVX_XFER_PARAM_FIELD_BLOCKS) || p->blocks == NULL ||
        p->n_blocks == 0 || p->n_blocks > KVXI_NODE_XFER_BLOCKS_MAX ||
        ((p->field_mask & KVX_XFER_PARAM_FIELD_KEYS) && p->keys == NULL) ||
        ((p->field_mask & KVX_XFER_PARAM_FIELD_FLAGS) &&
         (p->flags & ~(uint32_t)XFER_FLAGS_ALL))) {
        return KVX_ERR_INVALID_PARAM;
    }
    return KVX_OK;
}

/* Checksums are of whole blocks: both pools must arrange a block's bytes
 * the same way (the compatibility hash already matched the rest). */
static int xfer_same_block_bytes(const kvx_layout_t *a, const kvx_layout_t *b)
{
    return a->block_bytes == b->block_bytes &&
           a->block_tokens == b->block_tokens && a->kv_heads == b->kv_heads &&
           a->head_start == b->head_start && a->order == b->order &&
           a->token_order == b->token_order &&
           a->stride_layer == b->stride_layer &&
           a->stride_part == b->stride_part &&
           a->stride_token == b->stride_token &&
           a->stride_head == b->stride_head;
}

/* Every ref must be READY at its generation; pins each. */
kvx_status_t kvxi_xfer_pin_sources(struct kvx_xfer *x)
{
    kvx_alloc_h alloc = x->node->alloc;
    kvx_block_info_t info;
    kvx_status_t status;

    for (uint32_t i = 0; i < x->n_blocks; i++) {
        status = kvx_alloc_block_query(alloc, x->src[i].block, &info);
        if (status == KVX_OK && info.gen != x->src[i].gen) {
            status = KVX_ERR_STALE_HANDLE;
        } else if (status == KVX_OK && info.state != KVX_BLOCK_READY) {
            status = KVX_ERR_BAD_STATE;
        }
        if (status == KVX_OK) {
            status = kvx_alloc_pin(alloc, x->src[i]);
        }
        if (status != KVX_OK) {
            kvxi_error("node %s: push: block ref %u (gen %u): %s",
                       x->node->node_id, x->src[i].block, x->src[i].gen,
                       kvx_status_string(status));
            xfer_unpin(x, i);
            return status;
        }
    }
    return KVX_OK;
}

static kvx_status_t xfer_send_alloc(struct kvx_xfer *x,
                                    const kvx_xfer_params_t *p,
                                    uint32_t deadline_ms)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT;
    Kvx__V1__AllocateRequest r = KVX__V1__ALLOCATE_REQUEST__INIT;
    kvx_status_t status;

    r.transfer_id = x->transfer_id;
    r.block_count = x->n_blocks;
    if (p->field_mask & KVX_XFER_PARAM_FIELD_KEYS) {
        r.keys.data = (uint8_t *)p->keys;
        r.keys.len = (size_t)x->n_blocks * KVXI_KEY_LEN;
    }
    r.lease_ms =
        deadline_ms < KVXI_LEASE_MS_MAX ? deadline_ms : KVXI_LEASE_MS_MAX;
    r.mode = KVX__V1__TRANSFER_MODE__TRANSFER_MODE_PUSH;
    r.data_path = x->peer->transport == KVX_TRANSPORT_RMA
                      ? KVX__V1__DATA_PATH__DATA_PATH_RMA
                      : KVX__V1__DATA_PATH__DATA_PATH_AM;
    r.request_id = x->request_id;
    env.deadline_us = (uint64_t)deadline_ms * 1000;
    env.body_case = KVX__V1__ENVELOPE__BODY_ALLOCATE_REQUEST;
    env.allocate_request = &r;
    status = kvxi_peer_send(x->peer, &env);
    if (status == KVX_OK) {
        x->alloc_req_id = env.request_id;
    }
    return status;
}

kvx_status_t kvx_node_push(kvx_node_h node, kvx_peer_h peer,
                           const kvx_xfer_params_t *params, kvx_xfer_h *xfer_p)
{
    struct kvx_xfer *x;
    uint32_t deadline_ms;
    kvx_status_t status;

    if (node == NULL || peer == NULL || xfer_p == NULL || peer->node != node ||
        xfer_check_params(params) != KVX_OK) {
        return KVX_ERR_INVALID_PARAM;
    }
    if (node->shutting_down || peer->status == KVX_INPROGRESS) {
        return KVX_ERR_BAD_STATE;
    }
    if (peer->status != KVX_OK) {
        return peer->status; /* it failed (e.g. PEER_DOWN): reconnect */
    }
    if ((params->field_mask & KVX_XFER_PARAM_FIELD_FLAGS) &&
        (params->flags & KVX_XFER_FLAG_CHECKSUM) &&
        !xfer_same_block_bytes(&node->layout, &peer->info->layout)) {
        kvxi_error("node %s: push: checksums need the peer %s to arrange "
                   "blocks as we do",
                   node->node_id, peer->addr);
        return KVX_ERR_NOT_SUPPORTED;
    }
    deadline_ms = (params->field_mask & KVX_XFER_PARAM_FIELD_DEADLINE) &&
                          params->deadline_ms > 0
                      ? params->deadline_ms
                      : KVXI_NODE_DEADLINE_MS_DEFAULT;
    x = calloc(1, sizeof(*x));
    if (x == NULL) {
        return KVX_ERR_NO_MEMORY;
    }
    x->node = node;
    x->peer = peer;
    x->n_blocks = params->n_blocks;
    x->request_id = params->request_id;
    x->flags =
        (params->field_mask & KVX_XFER_PARAM_FIELD_FLAGS) ? params->flags : 0;
    x->src = malloc(x->n_blocks * sizeof(*x->src));
    if (x->src == NULL) {
        free(x);
        return KVX_ERR_NO_MEMORY;
    }
    memcpy(x->src, params->blocks, x->n_blocks * sizeof(*x->src));
    status = kvxi_xfer_pin_sources(x);
    if (status != KVX_OK) {
        free(x->src);
        free(x);
        return status;
    }
    x->transfer_id = (peer->next_transfer++ << 1) | (peer->is_client ? 1 : 0);
    x->t_start = kvxi_node_now_ns();
    x->deadline_ns = x->t_start + (uint64_t)deadline_ms * 1000000ull;
    x->status = KVX_INPROGRESS;
    x->state = KVXI_XFER_ALLOCATING;
    x->transport = peer->transport;
    x->layer_ready =
        (x->flags & KVX_XFER_FLAG_LAYERWISE) ? 0 : node->layout.num_layers;
    status = xfer_send_alloc(x, params, deadline_ms);
    if (status != KVX_OK) {
        xfer_unpin(x, x->n_blocks);
        free(x->src);
        free(x);
        return status;
    }
    kvxi_xfer_link(node, x);
    kvxi_node_timer_rearm(node);
    *xfer_p = x;
    return KVX_OK;
}

kvx_status_t kvx_xfer_layer_ready(kvx_xfer_h x, uint32_t layer_end)
{
    if (x == NULL || x->pull || !(x->flags & KVX_XFER_FLAG_LAYERWISE) ||
        layer_end > x->node->layout.num_layers || layer_end < x->layer_ready) {
        return KVX_ERR_INVALID_PARAM;
    }
    if (x->state == KVXI_XFER_DONE || x->state == KVXI_XFER_STOPPING) {
        return KVX_ERR_BAD_STATE;
    }
    x->layer_ready = layer_end;
    xfer_pump(x);
    return KVX_OK;
}

kvx_status_t kvx_xfer_test(kvx_xfer_h x)
{
    return x != NULL ? x->status : KVX_ERR_INVALID_PARAM;
}

kvx_status_t kvx_xfer_wait(kvx_xfer_h x, uint32_t timeout_ms)
{
    uint64_t end;

    if (x == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    end = kvxi_node_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    while (x->status == KVX_INPROGRESS) {
        uint64_t now = kvxi_node_now_ns();

        if (now >= end) {
            break;
        }
        kvx_node_progress(x->node,
                          (uint32_t)((end - now + 999999) / 1000000ull));
    }
    return x->status;
}

kvx_status_t kvx_xfer_query(kvx_xfer_h x, kvx_xfer_attr_t *attr)
{
    if (x == NULL || attr == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    memset(attr, 0, sizeof(*attr));
    attr->status = x->status;
    attr->n_blocks = x->n_blocks;
    attr->blocks_hit = x->n_hit;
    attr->blocks_sent = x->status == KVX_OK ? x->n_miss : 0;
    attr->bytes_sent = x->bytes_sent;
    attr->segments = x->segments;
    attr->transport = x->transport;
    attr->checksum_mismatches = x->checksum_mismatches;
    attr->elapsed_ns =
        (x->status != KVX_INPROGRESS ? x->t_end : kvxi_node_now_ns()) -
        x->t_start;
    return KVX_OK;
}

kvx_status_t kvx_xfer_abort(kvx_xfer_h x)
{
    if (x == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    /* Once the Commit is out the receiver commits whatever we say now: the
     * transfer ends with its answer, which both sides then agree on. */
    if (x->state == KVXI_XFER_DONE || x->state == KVXI_XFER_STOPPING ||
        x->state == KVXI_XFER_COMMITTING) {
        return KVX_ERR_BAD_STATE;
    }
    kvxi_xfer_stop(x, KVX_ERR_ABORTED, 1);
    return KVX_OK;
}

void kvx_xfer_release(kvx_xfer_h x)
{
    if (x == NULL) {
        return;
    }
    if (x->state == KVXI_XFER_DONE) {
        kvxi_xfer_free(x);
        return;
    }
    x->released = 1;
    kvxi_xfer_stop(x, KVX_ERR_ABORTED, 1);
}
