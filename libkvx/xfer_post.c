/*
 * Push transfers, sender side: posting. The announced layers not posted
 * yet are planned (kvx_plan_build over the missed blocks) and posted on
 * the peer's endpoint as one post per layer range; when every layer is
 * posted and every post completed, the Commit goes out, with the XXH3
 * checksum of each missed block when asked for.
 */
#include "xfer_int.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

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
    kvxi_xfer_settle(x);
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
    uint64_t t0;

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
    t0 = kvxi_node_now_ns();
    status = kvxi_ucx_post(x->peer->ep, &pp, &p->post);
    x->post_ns += kvxi_node_now_ns() - t0;
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

kvx_status_t kvxi_xfer_post_push(struct kvx_xfer *x, const kvx_segment_t *segs,
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
    uint64_t left;
    kvx_status_t status;
    uint32_t j = 0;

    x->t_data = kvxi_node_now_ns(); /* every post completed, flushed */
    left = (x->deadline_ns - x->t_data) / 1000;

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
    x->t_commit = kvxi_node_now_ns();
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
void kvxi_xfer_pump(struct kvx_xfer *x)
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
            status = kvxi_xfer_post_push(x, segs, n);
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
