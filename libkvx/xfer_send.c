/*
 * Push transfers, sender side: kvx_node_push() pins the source blocks and
 * sends the AllocateRequest; the receiver's AllocateReply names the
 * destination blocks and dedupe hits; the transfer ends with the
 * CommitAck. Posting the missed blocks layer range by layer range and the
 * Commit are in xfer_post.c; stopping on failure, deadline, abort or a
 * lost peer (flush, then Abort / AbortAck so the receiver can lift its
 * fence) in xfer_stop.c.
 */
#include "xfer_int.h"

#include "log_int.h"

#include <stdlib.h>
#include <string.h>

#define XFER_PARAM_FIELDS_ALL                                                  \
    (KVX_XFER_PARAM_FIELD_REQUEST_ID | KVX_XFER_PARAM_FIELD_BLOCKS |           \
     KVX_XFER_PARAM_FIELD_KEYS | KVX_XFER_PARAM_FIELD_DEADLINE |               \
     KVX_XFER_PARAM_FIELD_FLAGS)
#define XFER_FLAGS_ALL (KVX_XFER_FLAG_LAYERWISE | KVX_XFER_FLAG_CHECKSUM)

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
void kvxi_xfer_report(struct kvx_xfer *x, kvx_status_t status)
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
    kvxi_xfer_report(x, status);
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
    x->t_alloc = kvxi_node_now_ns();
    peer->node->stats.dedupe_hit_blocks += x->n_hit;
    x->transport = peer->transport;
    if (x->n_miss == 0) {
        kvxi_xfer_finish(x, KVX_OK);
        return;
    }
    x->state = KVXI_XFER_RUNNING;
    kvxi_xfer_pump(x);
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
    x->t_commit_ack = kvxi_node_now_ns();
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
    kvxi_xfer_pump(x);
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

/* to - from, or 0 when either end was not reached. */
static uint64_t xfer_span_ns(uint64_t from, uint64_t to)
{
    return from != 0 && to >= from ? to - from : 0;
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
    attr->alloc_ns = xfer_span_ns(x->t_start, x->t_alloc);
    attr->post_ns = x->post_ns;
    attr->data_ns = xfer_span_ns(x->t_alloc, x->t_data);
    attr->commit_ns = xfer_span_ns(x->t_commit, x->t_commit_ack);
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
