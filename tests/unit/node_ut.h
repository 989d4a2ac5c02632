/*
 * Helpers shared by test_node.c and the push tests (xfer_ut.h): two real
 * nodes in one process over loopback, Llama-like small layout, bounded
 * waits (source blocks also for tests/integration/test_hostile.c).
 */
#ifndef KVX_TEST_NODE_UT_H
#define KVX_TEST_NODE_UT_H

#include "ut.h"

#include <kvx/kvx.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NUT_TLS_TCP "tcp"
#define NUT_TLS_SHM "posix,sysv,cma,self"
#define NUT_WAIT_MS 10000u

/* 4 layers, K+V, 2 heads, head_dim 64, bf16, 16-token blocks: 4 KiB per
 * (block, layer, part), 32 KiB per block. */
static inline kvx_layout_params_t nut_layout(uint32_t num_blocks)
{
    kvx_layout_params_t lp = {
        .field_mask = KVX_LAYOUT_PARAM_FIELD_NUM_LAYERS |
                      KVX_LAYOUT_PARAM_FIELD_BLOCK_TOKENS |
                      KVX_LAYOUT_PARAM_FIELD_KV_HEADS |
                      KVX_LAYOUT_PARAM_FIELD_HEAD_DIM |
                      KVX_LAYOUT_PARAM_FIELD_DTYPE_SIZE |
                      KVX_LAYOUT_PARAM_FIELD_NUM_BLOCKS,
        .num_layers = 4,
        .block_tokens = 16,
        .kv_heads = 2,
        .head_dim = 64,
        .dtype_size = 2,
        .num_blocks = num_blocks,
    };
    return lp;
}

typedef struct nut_opts {
    const char *tls;
    kvx_transport_t transport;
    const char *secret;
    uint32_t num_blocks;
    uint32_t head_dim;
    uint32_t lease_ms;
    uint32_t hold_ms;
    uint64_t am_chunk;
} nut_opts_t;

static inline kvx_status_t nut_node(const char *id, const nut_opts_t *o,
                                    int listen, kvx_node_h *node_p)
{
    kvx_layout_params_t lp = nut_layout(o->num_blocks ? o->num_blocks : 64);
    kvx_node_params_t np = {
        .field_mask = KVX_NODE_PARAM_FIELD_NODE_ID |
                      KVX_NODE_PARAM_FIELD_LAYOUT |
                      KVX_NODE_PARAM_FIELD_TRANSPORT,
        .node_id = id,
        .layout = &lp,
        .transport = o->transport,
    };

    if (o->head_dim) {
        lp.head_dim = o->head_dim;
    }
    if (listen) {
        np.field_mask |= KVX_NODE_PARAM_FIELD_LISTEN;
        np.listen = "127.0.0.1:0";
    }
    if (o->tls != NULL) {
        np.field_mask |= KVX_NODE_PARAM_FIELD_UCX_TLS;
        np.ucx_tls = o->tls;
    }
    if (o->secret != NULL) {
        np.field_mask |= KVX_NODE_PARAM_FIELD_SECRET;
        np.secret = o->secret;
        np.secret_len = strlen(o->secret);
    }
    if (o->lease_ms) {
        np.field_mask |= KVX_NODE_PARAM_FIELD_LEASE;
        np.lease_ms = o->lease_ms;
    }
    if (o->hold_ms) {
        np.field_mask |= KVX_NODE_PARAM_FIELD_HOLD;
        np.hold_ms = o->hold_ms;
    }
    if (o->am_chunk) {
        np.field_mask |= KVX_NODE_PARAM_FIELD_AM_CHUNK;
        np.am_chunk = o->am_chunk;
    }
    return kvx_node_create(&np, node_p);
}

/* Progresses both nodes until @p peer is connected or failed. */
static inline kvx_status_t nut_wait_peer(kvx_node_h a, kvx_node_h b,
                                         kvx_peer_h peer)
{
    uint64_t end = kvx_clock_monotonic_ns(NULL) + NUT_WAIT_MS * 1000000ull;

    while (kvx_peer_status(peer) == KVX_INPROGRESS &&
           kvx_clock_monotonic_ns(NULL) < end) {
        kvx_node_progress(a, 1);
        kvx_node_progress(b, 1);
    }
    /* let the acceptor finish its side too */
    for (int i = 0; i < 20; i++) {
        kvx_node_progress(a, 0);
        kvx_node_progress(b, 1);
    }
    return kvx_peer_status(peer);
}

/* Progresses both nodes until @p x ends. */
static inline kvx_status_t nut_wait_xfer(kvx_node_h a, kvx_node_h b,
                                         kvx_xfer_h x, uint32_t ms)
{
    uint64_t end = kvx_clock_monotonic_ns(NULL) + ms * 1000000ull;

    while (kvx_xfer_test(x) == KVX_INPROGRESS &&
           kvx_clock_monotonic_ns(NULL) < end) {
        kvx_node_progress(a, 0);
        kvx_node_progress(b, 1);
    }
    return kvx_xfer_test(x);
}

static inline void nut_spin(kvx_node_h a, kvx_node_h b, uint32_t ms)
{
    uint64_t end = kvx_clock_monotonic_ns(NULL) + ms * 1000000ull;

    while (kvx_clock_monotonic_ns(NULL) < end) {
        if (a != NULL) {
            kvx_node_progress(a, 0);
        }
        if (b != NULL) {
            kvx_node_progress(b, 1);
        }
    }
}

/* Log callback printing warnings and errors (debug with KVX_TEST_VERBOSE). */
static inline void nut_log(kvx_log_level_t level, const char *msg, void *arg)
{
    (void)arg;
    fprintf(stderr, "[kvx %d] %s\n", (int)level, msg);
}

static inline int nut_init(void)
{
    kvx_node_h n = NULL;
    nut_opts_t o = {0};

    setenv("UCX_NET_DEVICES", "lo", 0);
    kvx_log_set_cb(nut_log, NULL,
                   getenv("KVX_TEST_VERBOSE") ? KVX_LOG_DEBUG : KVX_LOG_ERROR);
    if (nut_node("probe", &o, 0, &n) != KVX_OK) {
        fprintf(stderr, "UCX cannot start: skipping\n");
        return 0;
    }
    kvx_node_destroy(n);
    return 1;
}

/* Blocks a reservation could take now (FREE + CACHED). */
static inline uint32_t nut_n_free(kvx_node_h node)
{
    kvx_alloc_attr_t a;

    kvx_alloc_query(kvx_node_alloc(node), &a);
    return a.n_free + a.n_cached;
}

/* Reserves, fills and commits @p n source blocks (READY, one pin each). */
static inline void nut_make_src(kvx_node_h node, uint32_t n,
                                kvx_block_ref_t *refs, uint32_t seed)
{
    kvx_alloc_h alloc = kvx_node_alloc(node);
    uint64_t bb = kvx_node_layout(node)->block_bytes;
    kvx_lease_id_t lease;

    CU_ASSERT_EQUAL_FATAL(
        kvx_alloc_reserve(alloc, n,
                          kvx_clock_monotonic_ns(NULL) + 60000000000ull, &lease,
                          refs),
        KVX_OK);
    CU_ASSERT_EQUAL_FATAL(kvx_alloc_lease_commit(alloc, lease), KVX_OK);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t *w = kvx_pool_block_addr(kvx_node_pool(node), refs[i].block);

        for (uint64_t j = 0; j < bb / 4; j++) {
            w[j] = (seed + i) * 2654435761u ^ (uint32_t)j;
        }
    }
}

static inline void nut_unpin_all(kvx_node_h node, const kvx_block_ref_t *refs,
                                 uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        CU_ASSERT_EQUAL(kvx_alloc_unpin(kvx_node_alloc(node), refs[i]), KVX_OK);
    }
}

/* The value of the named counter @p name of @p st: 1 with *value_p, or 0
 * when the node does not report it. */
static inline int nut_counter(const kvx_node_stats_t *st, const char *name,
                              uint64_t *value_p)
{
    for (uint32_t i = 0; i < st->n_counters; i++) {
        if (strcmp(st->counters[i].name, name) == 0) {
            *value_p = st->counters[i].value;
            return 1;
        }
    }
    return 0;
}

#endif /* KVX_TEST_NODE_UT_H */
