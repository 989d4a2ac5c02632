/*
 * UCX data path, part 3: gathered active messages. Over the AM path each
 * segment would be one message, and a small one costs a whole send (a
 * system call over tcp): scattered 4 KiB blocks, or the (block, layer)
 * slices of a layer-wise push. Consecutive whole segments that together
 * fit an eager message (KVXI_UCX_AM_EAGER_MAX with their piece table) go
 * as one: the sender gathers them with a UCP iov, the receiver (which gets
 * eager messages whole) lands each piece as if it had come alone: admitted
 * by am_dest_cb, copied, done; a refused piece does not stop the others.
 */
#include "ucx_impl_int.h"

#include "log_int.h"

#include <endian.h>
#include <stdlib.h>
#include <string.h>

uint32_t kvxi_ucx_gather_span(const struct kvxi_ucx_post *post, size_t *end_p)
{
    uint64_t used = 0;
    uint32_t n = 0;
    size_t i;

    if (post->seg_pos != 0) {
        return 0; /* inside a split segment */
    }
    for (i = post->seg_idx; i < post->n_segs && n < UCX_GATHER_MAX; i++) {
        uint64_t len = post->segs[i].len;

        if (len == 0) {
            continue;
        }
        if (len > KVXI_UCX_AM_EAGER_MAX ||
            used + (n + 1) * sizeof(ucx_piece_t) + len >
                KVXI_UCX_AM_EAGER_MAX) {
            break;
        }
        used += len;
        n++;
    }
    *end_p = i;
    return n;
}

static ucx_gather_t *gather_get(struct kvxi_ucx *ucx)
{
    ucx_gather_t *g;

    if (!ucx_list_empty(&ucx->gathers)) {
        g = UCX_CONTAINER(ucx->gathers.next, ucx_gather_t, link);
        ucx_list_del(&g->link);
    } else if ((g = malloc(sizeof(*g))) == NULL) {
        return NULL;
    }
    ucx_list_push(&ucx->gathers_busy, &g->link);
    return g;
}

void kvxi_ucx_gather_put(struct kvxi_ucx *ucx, ucx_op_t *op)
{
    if (op->gather != NULL) {
        ucx_list_del(&op->gather->link);
        ucx_list_push(&ucx->gathers, &op->gather->link);
        op->gather = NULL;
    }
}

ucs_status_ptr_t kvxi_ucx_gather_send(struct kvxi_ucx_post *post, ucx_op_t *op,
                                      size_t end, ucp_request_param_t *param)
{
    ucx_gather_t *g = gather_get(post->ucx);
    kvxi_ucx_stats_t *st = &post->ucx->stats;
    uint64_t bytes = 0;
    uint32_t n = 0;

    if (g == NULL) {
        return UCS_STATUS_PTR(UCS_ERR_NO_MEMORY);
    }
    for (size_t i = post->seg_idx; i < end; i++) {
        const kvx_segment_t *s = &post->segs[i];

        if (s->len == 0) {
            continue;
        }
        g->pieces[n].dst_off = htole64(s->dst_off);
        g->pieces[n].len = htole64(s->len);
        g->iov[n + 1].buffer = post->mem->base + s->src_off;
        g->iov[n + 1].length = s->len;
        bytes += s->len;
        n++;
    }
    g->iov[0].buffer = g->pieces;
    g->iov[0].length = n * sizeof(ucx_piece_t);
    op->gather = g;
    op->hdr.magic = htole32(UCX_AM_MAGIC_GATHER);
    op->hdr.seq = htole32(post->seq++);
    op->hdr.transfer_id = htole64(post->transfer_id);
    op->hdr.dst_off = htole64(n);
    op->hdr.len = htole64(bytes + g->iov[0].length);
    post->seg_idx = end;
    st->am_tx_chunks++;
    st->am_tx_gathers++;
    st->am_tx_bytes += bytes;
    /* the piece table is not in the registered region: no memh */
    param->op_attr_mask &= ~(uint32_t)UCP_OP_ATTR_FIELD_MEMH;
    param->op_attr_mask |= UCP_OP_ATTR_FIELD_DATATYPE | UCP_OP_ATTR_FIELD_FLAGS;
    param->datatype = ucp_dt_make_iov();
    param->flags = UCP_AM_SEND_FLAG_EAGER;
    return ucp_am_send_nbx(post->ep->ep, UCX_AM_ID, &op->hdr, sizeof(op->hdr),
                           g->iov, n + 1, param);
}

/* The piece table of a gathered message, checked against its length:
 * the number of pieces, or 0 when malformed. */
static uint32_t gather_check(const ucx_am_hdr_t *h, const void *data,
                             size_t length)
{
    const char *p = data;
    uint64_t n = h->dst_off, total = 0;

    if (n == 0 || n > UCX_GATHER_MAX || h->len != length ||
        length < n * sizeof(ucx_piece_t)) {
        return 0;
    }
    for (uint64_t k = 0; k < n; k++) {
        ucx_piece_t pc;

        memcpy(&pc, p + k * sizeof(pc), sizeof(pc));
        pc.len = le64toh(pc.len);
        if (pc.len == 0 || pc.len > length) {
            return 0;
        }
        total += pc.len;
    }
    return total == length - n * sizeof(ucx_piece_t) ? (uint32_t)n : 0;
}

void kvxi_ucx_gather_recv(struct kvxi_ucx *ucx, const ucx_am_hdr_t *h,
                          const void *data, size_t length)
{
    uint32_t n = gather_check(h, data, length);
    const char *src = (const char *)data + n * sizeof(ucx_piece_t);

    if (n == 0) {
        ucx->stats.am_rx_malformed++;
        kvxi_debug("ucx: gathered AM (transfer %llu, %zu bytes) dropped: "
                   "malformed piece table",
                   (unsigned long long)h->transfer_id, length);
        if (ucx->am_refused_cb != NULL && !ucx->destroying) {
            ucx->am_refused_cb(h->transfer_id, 0, length,
                               KVX_ERR_PROTO_MALFORMED, ucx->cb_arg);
        }
        return;
    }
    ucx->stats.am_rx_gathers++;
    for (uint32_t k = 0; k < n; k++) {
        ucx_am_hdr_t ph = *h;
        ucx_piece_t pc;
        void *dst = NULL;

        memcpy(&pc, (const char *)data + k * sizeof(pc), sizeof(pc));
        ph.dst_off = le64toh(pc.dst_off);
        ph.len = le64toh(pc.len);
        if (ucx->am_dest_cb != NULL && !ucx->destroying) {
            dst = ucx->am_dest_cb(ph.transfer_id, ph.dst_off, ph.len,
                                  ucx->cb_arg);
        }
        if (dst == NULL) {
            ucx->stats.am_rx_refused++;
            if (ucx->am_refused_cb != NULL && !ucx->destroying) {
                ucx->am_refused_cb(ph.transfer_id, ph.dst_off, ph.len,
                                   KVX_ERR_OUT_OF_RANGE, ucx->cb_arg);
            }
        } else {
            ucx->stats.am_rx_eager++;
            memcpy(dst, src, ph.len);
            kvxi_ucx_am_done(ucx, &ph, KVX_OK);
        }
        src += ph.len;
    }
}

void kvxi_ucx_gathers_free_all(struct kvxi_ucx *ucx)
{
    ucx_link_t *heads[] = {&ucx->gathers, &ucx->gathers_busy};

    for (size_t i = 0; i < 2; i++) {
        while (!ucx_list_empty(heads[i])) {
            ucx_link_t *l = heads[i]->next;

            ucx_list_del(l);
            free(UCX_CONTAINER(l, ucx_gather_t, link));
        }
    }
}
