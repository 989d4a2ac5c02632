/*
 * UCX data path, part 2: posts (RMA put/get or AM sends of planner
 * segments, a window of operations in flight, a closing flush) and the AM
 * receive handler that lands chunks straight in the owner's destination.
 *
 * No allocation per segment: a post carries a fixed array of operation
 * contexts (with the AM headers), rendezvous receive contexts are pooled,
 * and post objects are recycled.
 */
#include "ucx_impl_int.h"

#include "log_int.h"

#include <endian.h>
#include <stdlib.h>
#include <string.h>

static void ucx_post_kick(struct kvxi_ucx_post *post)
{
    if (!post->queued_kick) {
        post->queued_kick = 1;
        ucx_list_push(&post->ucx->kick, &post->q_link);
    }
}

static void ucx_post_fail(struct kvxi_ucx_post *post, kvx_status_t status)
{
    if (post->status == KVX_OK) {
        post->status = status;
    }
}

/* One data operation of @p post finished (UCX callback context). */
static void ucx_op_cb(void *request, ucs_status_t s, void *user_data)
{
    ucx_op_t *op = user_data;
    struct kvxi_ucx_post *post = op->post;

    ucp_request_free(request);
    op->busy = 0;
    kvxi_ucx_gather_put(post->ucx, op);
    post->inflight--;
    post->free_ops[post->n_free_ops++] = op->idx;
    if (s != UCS_OK) {
        ucx_post_fail(post, kvxi_ucx_status(s));
    }
    if (post->state == UCX_POST_OPEN) {
        ucx_post_kick(post);
    }
}

static void ucx_flush_cb(void *request, ucs_status_t s, void *user_data)
{
    struct kvxi_ucx_post *post = user_data;

    ucp_request_free(request);
    post->flush_pending = 0;
    post->flushed = 1;
    if (s != UCS_OK) {
        ucx_post_fail(post, kvxi_ucx_status(s));
    }
    if (post->state == UCX_POST_OPEN) {
        ucx_post_kick(post);
    }
}

/*
 * Issues the next operation: a whole segment (RMA) or one chunk (AM). The
 * operation counts as in flight before the call, in case UCX completes it
 * through the callback before returning.
 */
static kvx_status_t ucx_issue_one(struct kvxi_ucx_post *post)
{
    struct kvxi_ucx_ep *ep = post->ep;
    const kvx_segment_t *seg = &post->segs[post->seg_idx];
    ucx_op_t *op = &post->ops[post->free_ops[--post->n_free_ops]];
    ucp_request_param_t param = {
        .op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK |
                        UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_MEMH,
        .cb.send = ucx_op_cb,
        .user_data = op,
        .memh = post->mem->memh,
    };
    kvxi_ucx_stats_t *st = &post->ucx->stats;
    ucs_status_ptr_t sp;
    size_t end;

    op->busy = 1;
    post->inflight++;
    if (post->mode == KVXI_UCX_MODE_RMA && post->dir == KVXI_UCX_PUSH) {
        st->put_bytes += seg->len;
        post->seg_idx++;
        sp = ucp_put_nbx(ep->ep, post->mem->base + seg->src_off, seg->len,
                         ep->peer_base + seg->dst_off, ep->rkey, &param);
    } else if (post->mode == KVXI_UCX_MODE_RMA) {
        st->get_bytes += seg->len;
        post->seg_idx++;
        sp = ucp_get_nbx(ep->ep, post->mem->base + seg->dst_off, seg->len,
                         ep->peer_base + seg->src_off, ep->rkey, &param);
    } else if (kvxi_ucx_gather_span(post, &end) >= 2) {
        sp = kvxi_ucx_gather_send(post, op, end, &param);
    } else {
        uint64_t left = seg->len - post->seg_pos;
        uint64_t chunk =
            left < post->ucx->am_chunk ? left : post->ucx->am_chunk;
        const char *src = post->mem->base + seg->src_off + post->seg_pos;

        op->hdr.magic = htole32(UCX_AM_MAGIC);
        op->hdr.seq = htole32(post->seq++);
        op->hdr.transfer_id = htole64(post->transfer_id);
        op->hdr.dst_off = htole64(seg->dst_off + post->seg_pos);
        op->hdr.len = htole64(chunk);
        st->am_tx_chunks++;
        st->am_tx_bytes += chunk;
        if (chunk <= KVXI_UCX_AM_EAGER_MAX) {
            /* one-way: no rendezvous round trip per small chunk */
            param.op_attr_mask |= UCP_OP_ATTR_FIELD_FLAGS;
            param.flags = UCP_AM_SEND_FLAG_EAGER;
        }
        post->seg_pos += chunk;
        if (post->seg_pos == seg->len) {
            post->seg_idx++;
            post->seg_pos = 0;
        }
        sp = ucp_am_send_nbx(ep->ep, UCX_AM_ID, &op->hdr, sizeof(op->hdr), src,
                             chunk, &param);
    }
    if ((sp != NULL && !UCS_PTR_IS_ERR(sp)) || !op->busy) {
        return KVX_OK; /* the callback ends it (maybe already has) */
    }
    op->busy = 0;
    kvxi_ucx_gather_put(post->ucx, op);
    post->inflight--;
    post->free_ops[post->n_free_ops++] = op->idx;
    return sp == NULL ? KVX_OK : kvxi_ucx_status(UCS_PTR_STATUS(sp));
}

static void ucx_issue_flush(struct kvxi_ucx_post *post)
{
    ucp_request_param_t param = {
        .op_attr_mask =
            UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA,
        .cb.send = ucx_flush_cb,
        .user_data = post,
    };
    ucs_status_ptr_t sp;

    post->flush_pending = 1;
    sp = ucp_ep_flush_nbx(post->ep->ep, &param);
    if (sp == NULL || UCS_PTR_IS_ERR(sp)) {
        post->flush_pending = 0;
        post->flushed = 1;
        if (sp != NULL) {
            ucx_post_fail(post, kvxi_ucx_status(UCS_PTR_STATUS(sp)));
        }
    }
}

/* Issues what the window allows, then the flush, then finishes. */
static void ucx_post_advance(struct kvxi_ucx_post *post)
{
    uint32_t window = post->ucx->window;
    int all_issued;

    if (post->state != UCX_POST_OPEN) {
        return;
    }
    while (!post->stopping && post->status == KVX_OK &&
           post->inflight < window && post->seg_idx < post->n_segs) {
        kvx_status_t status;

        if (post->segs[post->seg_idx].len == 0) {
            post->seg_idx++;
            continue;
        }
        if ((status = ucx_issue_one(post)) != KVX_OK) {
            kvxi_warn("ucx: post %p: operation failed: %s", (void *)post,
                      kvx_status_string(status));
            ucx_post_fail(post, status);
        }
    }
    all_issued = post->seg_idx == post->n_segs;
    /* The flush is what makes a push remotely complete before commit. */
    if (all_issued && !post->stopping && post->status == KVX_OK &&
        post->dir == KVXI_UCX_PUSH && !post->flushed && !post->flush_pending) {
        ucx_issue_flush(post);
    }
    if (post->inflight != 0 || post->flush_pending) {
        return;
    }
    if (post->stopping || post->status != KVX_OK || post->flushed ||
        (all_issued && post->dir == KVXI_UCX_PULL)) {
        if (post->queued_kick) { /* kicked from a callback inside a call */
            ucx_list_del(&post->q_link);
            post->queued_kick = 0;
        }
        post->state = UCX_POST_DONE;
        ucx_list_push(&post->ucx->done, &post->q_link);
    }
}

unsigned kvxi_ucx_run_kicks(struct kvxi_ucx *ucx)
{
    unsigned n = 0;

    while (!ucx_list_empty(&ucx->kick)) {
        struct kvxi_ucx_post *post =
            UCX_CONTAINER(ucx->kick.next, struct kvxi_ucx_post, q_link);

        ucx_list_del(&post->q_link);
        post->queued_kick = 0;
        ucx_post_advance(post);
        n++;
    }
    return n;
}

/* Takes @p post off its ep and calls its callback; recycles it unless UCX
   may still call back into it. */
static void ucx_post_complete(struct kvxi_ucx_post *post)
{
    struct kvxi_ucx *ucx = post->ucx;
    kvxi_ucx_post_cb_t cb = post->cb;
    kvx_status_t status = post->status;
    void *arg = post->arg;

    ucx_list_del(&post->ep_link);
    ucx_list_del(&post->q_link);
    post->queued_kick = 0;
    post->ep = NULL;
    post->mem->users--;
    if (post->inflight != 0 || post->flush_pending) {
        kvxi_error("ucx: post %p: %u operations still in UCX after close",
                   (void *)post, post->inflight);
        post->state = UCX_POST_ZOMBIE;
        ucx_list_push(&ucx->zombie, &post->q_link);
    } else {
        post->state = UCX_POST_FREE;
        ucx_list_push(&ucx->free, &post->q_link);
    }
    if (status == KVX_OK) {
        ucx->stats.posts_ok++;
    } else {
        ucx->stats.posts_failed++;
    }
    cb(status, arg);
}

unsigned kvxi_ucx_deliver(struct kvxi_ucx *ucx)
{
    unsigned n = 0;

    while (!ucx_list_empty(&ucx->done)) {
        ucx_post_complete(
            UCX_CONTAINER(ucx->done.next, struct kvxi_ucx_post, q_link));
        n++;
    }
    return n;
}

void kvxi_ucx_posts_stop(struct kvxi_ucx_ep *ep, kvx_status_t status)
{
    for (ucx_link_t *l = ep->posts.next; l != &ep->posts; l = l->next) {
        struct kvxi_ucx_post *post =
            UCX_CONTAINER(l, struct kvxi_ucx_post, ep_link);

        if (post->state == UCX_POST_OPEN) {
            post->stopping = 1;
            ucx_post_fail(post, status);
            ucx_post_kick(post);
        }
    }
}

int kvxi_ucx_posts_busy(const struct kvxi_ucx_ep *ep)
{
    for (const ucx_link_t *l = ep->posts.next; l != &ep->posts; l = l->next) {
        const struct kvxi_ucx_post *post =
            UCX_CONTAINER(l, const struct kvxi_ucx_post, ep_link);

        if (post->inflight != 0 || post->flush_pending) {
            return 1;
        }
    }
    return 0;
}

void kvxi_ucx_posts_detach(struct kvxi_ucx_ep *ep)
{
    while (!ucx_list_empty(&ep->posts)) {
        ucx_post_complete(
            UCX_CONTAINER(ep->posts.next, struct kvxi_ucx_post, ep_link));
    }
}

void kvxi_ucx_posts_free_all(struct kvxi_ucx *ucx)
{
    ucx_link_t *heads[] = {&ucx->free, &ucx->zombie};
    ucx_link_t *rx_heads[] = {&ucx->rx_free, &ucx->rx_busy};

    for (size_t i = 0; i < 2; i++) {
        while (!ucx_list_empty(heads[i])) {
            ucx_link_t *l = heads[i]->next;

            ucx_list_del(l);
            free(UCX_CONTAINER(l, struct kvxi_ucx_post, q_link));
        }
        while (!ucx_list_empty(rx_heads[i])) {
            ucx_link_t *l = rx_heads[i]->next;

            ucx_list_del(l);
            free(UCX_CONTAINER(l, ucx_rx_t, link));
        }
    }
}

/* Checks every segment against the local region and the peer region. */
static kvx_status_t ucx_post_check(const struct kvxi_ucx_ep *ep,
                                   const kvxi_ucx_post_params_t *p)
{
    uint64_t local_len = p->mem->len, peer_len = ep->peer_len;

    for (size_t i = 0; i < p->n_segs; i++) {
        const kvx_segment_t *s = &p->segs[i];
        uint64_t loc = p->dir == KVXI_UCX_PUSH ? s->src_off : s->dst_off;
        uint64_t rem = p->dir == KVXI_UCX_PUSH ? s->dst_off : s->src_off;

        if (s->len > local_len || loc > local_len - s->len ||
            (peer_len != 0 && (s->len > peer_len || rem > peer_len - s->len))) {
            kvxi_error("ucx: post: segment %zu (src %llu, dst %llu, len %llu) "
                       "outside the %s region",
                       i, (unsigned long long)s->src_off,
                       (unsigned long long)s->dst_off,
                       (unsigned long long)s->len,
                       s->len > local_len || loc > local_len - s->len ? "local"
                                                                      : "peer");
            return KVX_ERR_OUT_OF_RANGE;
        }
    }
    return KVX_OK;
}

static struct kvxi_ucx_post *ucx_post_get(struct kvxi_ucx *ucx)
{
    struct kvxi_ucx_post *post;

    if (!ucx_list_empty(&ucx->free)) {
        post = UCX_CONTAINER(ucx->free.next, struct kvxi_ucx_post, q_link);
        ucx_list_del(&post->q_link);
        return post;
    }
    post = malloc(sizeof(*post));
    if (post == NULL) {
        kvxi_error("ucx: post: out of memory");
    }
    return post;
}

kvx_status_t kvxi_ucx_post(kvxi_ucx_ep_h ep,
                           const kvxi_ucx_post_params_t *params,
                           kvxi_ucx_post_h *post_p)
{
    struct kvxi_ucx_post *post;
    kvx_status_t status;

    if (ep == NULL || params == NULL || params->cb == NULL ||
        params->mem == NULL || params->mem->ucx != ep->ucx ||
        (params->segs == NULL && params->n_segs != 0) ||
        (params->dir != KVXI_UCX_PUSH && params->dir != KVXI_UCX_PULL)) {
        kvxi_error("ucx: post: invalid argument");
        return KVX_ERR_INVALID_PARAM;
    }
    if (ep->status != KVX_OK) {
        return ep->status;
    }
    if (params->dir == KVXI_UCX_PULL && ep->mode != KVXI_UCX_MODE_RMA) {
        kvxi_error("ucx: post: pull needs an RMA endpoint (ep %p is %s)",
                   (void *)ep, kvxi_ucx_mode_string(ep->mode));
        return KVX_ERR_NOT_SUPPORTED;
    }
    if ((status = ucx_post_check(ep, params)) != KVX_OK) {
        return status;
    }
    if ((post = ucx_post_get(ep->ucx)) == NULL) {
        return KVX_ERR_NO_MEMORY;
    }
    post->ucx = ep->ucx;
    post->ep = ep;
    post->mem = params->mem;
    post->queued_kick = 0;
    post->state = UCX_POST_OPEN;
    post->stopping = post->flush_pending = post->flushed = 0;
    post->dir = params->dir;
    post->mode = ep->mode;
    post->segs = params->segs;
    post->n_segs = params->n_segs;
    post->seg_idx = 0;
    post->seg_pos = 0;
    post->seq = 0;
    post->inflight = 0;
    post->status = KVX_OK;
    post->transfer_id = params->transfer_id;
    post->cb = params->cb;
    post->arg = params->arg;
    post->n_free_ops = ep->ucx->window;
    for (uint32_t i = 0; i < ep->ucx->window; i++) {
        post->free_ops[i] = i;
        post->ops[i].post = post;
        post->ops[i].idx = i;
        post->ops[i].gather = NULL;
    }
    ucx_list_init(&post->q_link);
    ucx_list_push(&ep->posts, &post->ep_link);
    post->mem->users++;
    ucx_post_advance(post);
    if (post_p != NULL) {
        *post_p = post;
    }
    return KVX_OK;
}

kvx_status_t kvxi_ucx_cancel(kvxi_ucx_post_h post)
{
    if (post == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    if (post->state != UCX_POST_OPEN) {
        return KVX_ERR_BAD_STATE;
    }
    post->stopping = 1;
    ucx_post_fail(post, KVX_ERR_ABORTED);
    ucx_post_kick(post);
    return KVX_OK;
}

/* ---- AM receive ---- */

void kvxi_ucx_am_done(struct kvxi_ucx *ucx, const ucx_am_hdr_t *h,
                      kvx_status_t status)
{
    if (status == KVX_OK) {
        ucx->stats.am_rx_bytes += h->len;
    } else {
        ucx->stats.am_rx_failed++;
    }
    if (ucx->am_done_cb != NULL && !ucx->destroying) {
        ucx->am_done_cb(h->transfer_id, h->dst_off, h->len, h->seq, status,
                        ucx->cb_arg);
    }
}

static void ucx_rx_put(ucx_rx_t *rx)
{
    ucx_list_del(&rx->link);
    ucx_list_push(&rx->ucx->rx_free, &rx->link);
}

static void ucx_am_rndv_cb(void *request, ucs_status_t s, size_t length,
                           void *user_data)
{
    ucx_rx_t *rx = user_data;
    ucx_am_hdr_t h = rx->hdr;

    (void)length;
    ucp_request_free(request);
    rx->busy = 0;
    ucx_rx_put(rx);
    kvxi_ucx_am_done(rx->ucx, &h, kvxi_ucx_status(s));
}

/* Receives a rendezvous chunk straight into @p dst. */
static ucs_status_t ucx_am_recv_rndv(struct kvxi_ucx *ucx,
                                     const ucx_am_hdr_t *h, void *data,
                                     void *dst)
{
    ucp_request_param_t rp = {
        .op_attr_mask =
            UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA,
        .cb.recv_am = ucx_am_rndv_cb,
    };
    ucs_status_ptr_t sp;
    ucx_rx_t *rx;

    if (!ucx_list_empty(&ucx->rx_free)) {
        rx = UCX_CONTAINER(ucx->rx_free.next, ucx_rx_t, link);
        ucx_list_del(&rx->link);
    } else if ((rx = malloc(sizeof(*rx))) == NULL) {
        kvxi_error("ucx: AM receive: out of memory");
        ucx->stats.am_rx_failed++;
        return UCS_ERR_NO_MEMORY; /* the sender's post fails */
    }
    rx->ucx = ucx;
    rx->hdr = *h;
    rx->busy = 1;
    ucx_list_push(&ucx->rx_busy, &rx->link);
    rp.user_data = rx;
    sp = ucp_am_recv_data_nbx(ucx->worker, data, dst, h->len, &rp);
    if ((sp == NULL || UCS_PTR_IS_ERR(sp)) && rx->busy) {
        rx->busy = 0;
        ucx_rx_put(rx);
        kvxi_ucx_am_done(
            ucx, h, sp == NULL ? KVX_OK : kvxi_ucx_status(UCS_PTR_STATUS(sp)));
    }
    return UCS_OK;
}

ucs_status_t kvxi_ucx_am_recv(void *arg, const void *header,
                              size_t header_length, void *data, size_t length,
                              const ucp_am_recv_param_t *param)
{
    struct kvxi_ucx *ucx = arg;
    int rndv = (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) != 0;
    ucx_am_hdr_t h = {0};
    kvx_status_t reason = KVX_ERR_PROTO_MALFORMED;
    void *dst = NULL;

    if (header != NULL && header_length == sizeof(h)) {
        memcpy(&h, header, sizeof(h));
        h.magic = le32toh(h.magic);
        h.seq = le32toh(h.seq);
        h.transfer_id = le64toh(h.transfer_id);
        h.dst_off = le64toh(h.dst_off);
        h.len = le64toh(h.len);
        if (h.magic == UCX_AM_MAGIC_GATHER && !rndv) {
            kvxi_ucx_gather_recv(ucx, &h, data, length);
            return UCS_OK;
        }
        if (h.magic == UCX_AM_MAGIC && h.len == length && h.len != 0) {
            reason = KVX_ERR_OUT_OF_RANGE;
            if (ucx->am_dest_cb != NULL && !ucx->destroying) {
                dst = ucx->am_dest_cb(h.transfer_id, h.dst_off, h.len,
                                      ucx->cb_arg);
            }
        }
    }
    if (dst == NULL) {
        if (reason == KVX_ERR_OUT_OF_RANGE) {
            ucx->stats.am_rx_refused++;
        } else {
            ucx->stats.am_rx_malformed++;
        }
        kvxi_debug("ucx: AM chunk (transfer %llu, dst %llu, len %zu) "
                   "dropped: %s",
                   (unsigned long long)h.transfer_id,
                   (unsigned long long)h.dst_off, length,
                   kvx_status_string(reason));
        if (ucx->am_refused_cb != NULL && !ucx->destroying) {
            ucx->am_refused_cb(h.transfer_id, h.dst_off, h.len, reason,
                               ucx->cb_arg);
        }
        /* A rendezvous sender learns the refusal from its completion. */
        return rndv ? UCS_ERR_REJECTED : UCS_OK;
    }
    if (!rndv) {
        ucx->stats.am_rx_eager++;
        memcpy(dst, data, length);
        kvxi_ucx_am_done(ucx, &h, KVX_OK);
        return UCS_OK;
    }
    ucx->stats.am_rx_rndv++;
    return ucx_am_recv_rndv(ucx, &h, data, dst);
}
