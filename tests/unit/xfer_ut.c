/*
 * The push tests' pair of nodes and helpers (xfer_ut.h).
 */
#include "xfer_ut.h"

void xut_pair_open(xut_pair_t *p, const nut_opts_t *orx, const nut_opts_t *otx)
{
    memset(p, 0, sizeof(*p));
    CU_ASSERT_EQUAL_FATAL(nut_node("decode", orx, 1, &p->rx), KVX_OK);
    CU_ASSERT_EQUAL_FATAL(nut_node("prefill", otx, 0, &p->tx), KVX_OK);
    CU_ASSERT_EQUAL_FATAL(
        kvx_node_connect(p->tx, kvx_node_listen_addr(p->rx), &p->peer), KVX_OK);
    CU_ASSERT_EQUAL_FATAL(nut_wait_peer(p->rx, p->tx, p->peer), KVX_OK);
    p->bb = kvx_node_layout(p->tx)->block_bytes;
}

void xut_pair_close(xut_pair_t *p)
{
    kvx_node_destroy(p->tx);
    kvx_node_destroy(p->rx);
}

void xut_check_recv(xut_pair_t *p, uint64_t rid, const kvx_block_ref_t *src,
                    uint32_t n)
{
    kvx_block_ref_t got[XUT_N_MAX];
    uint32_t n_got = 0;

    CU_ASSERT_EQUAL_FATAL(
        kvx_node_recv(p->rx, rid, NUT_WAIT_MS, got, XUT_N_MAX, &n_got), KVX_OK);
    CU_ASSERT_EQUAL_FATAL(n_got, n);
    for (uint32_t i = 0; i < n; i++) {
        const void *a = kvx_pool_block_addr(kvx_node_pool(p->tx), src[i].block);
        const void *b = kvx_pool_block_addr(kvx_node_pool(p->rx), got[i].block);

        CU_ASSERT(memcmp(a, b, p->bb) == 0);
    }
    nut_unpin_all(p->rx, got, n_got);
    CU_ASSERT_EQUAL(kvx_node_recv(p->rx, rid, 0, got, XUT_N_MAX, &n_got),
                    KVX_ERR_NOT_FOUND);
}

kvx_xfer_h xut_push(xut_pair_t *p, uint64_t rid, const kvx_block_ref_t *src,
                    uint32_t n, const kvx_block_key_t *keys,
                    uint32_t deadline_ms, uint32_t flags)
{
    kvx_xfer_params_t xp = {
        .field_mask = KVX_XFER_PARAM_FIELD_REQUEST_ID |
                      KVX_XFER_PARAM_FIELD_BLOCKS | KVX_XFER_PARAM_FIELD_FLAGS,
        .request_id = rid,
        .blocks = src,
        .n_blocks = n,
        .keys = keys,
        .deadline_ms = deadline_ms,
        .flags = flags,
    };
    kvx_xfer_h x = NULL;

    if (keys != NULL) {
        xp.field_mask |= KVX_XFER_PARAM_FIELD_KEYS;
    }
    if (deadline_ms) {
        xp.field_mask |= KVX_XFER_PARAM_FIELD_DEADLINE;
    }
    CU_ASSERT_EQUAL(kvx_node_push(p->tx, p->peer, &xp, &x), KVX_OK);
    return x;
}

uint64_t xut_wait_bytes_ms(xut_pair_t *p, kvx_xfer_h x, uint64_t want,
                           uint32_t ms)
{
    kvx_xfer_attr_t attr;
    uint64_t end = kvx_clock_monotonic_ns(NULL) + ms * 1000000ull;

    do {
        kvx_node_progress(p->tx, 0);
        kvx_node_progress(p->rx, 1);
        kvx_xfer_query(x, &attr);
    } while (attr.bytes_sent < want && kvx_clock_monotonic_ns(NULL) < end);
    nut_spin(p->tx, p->rx, 20);
    kvx_xfer_query(x, &attr);
    return attr.bytes_sent;
}

uint64_t xut_wait_bytes(xut_pair_t *p, kvx_xfer_h x, uint64_t want)
{
    return xut_wait_bytes_ms(p, x, want, NUT_WAIT_MS);
}

kvx_xfer_h xut_push_layers(xut_pair_t *p, uint64_t rid,
                           const kvx_block_ref_t *src, uint32_t n,
                           uint32_t deadline_ms, uint32_t layers)
{
    kvx_xfer_h x =
        xut_push(p, rid, src, n, NULL, deadline_ms, KVX_XFER_FLAG_LAYERWISE);

    kvx_xfer_layer_ready(x, layers);
    xut_wait_bytes(p, x, (uint64_t)layers * n * p->bb / 4);
    return x;
}

int xut_wait_free(xut_pair_t *p, uint32_t want)
{
    uint64_t end = kvx_clock_monotonic_ns(NULL) + NUT_WAIT_MS * 1000000ull;

    while (nut_n_free(p->rx) != want && kvx_clock_monotonic_ns(NULL) < end) {
        kvx_node_progress(p->tx, 0);
        kvx_node_progress(p->rx, 1);
    }
    return nut_n_free(p->rx) == want;
}
