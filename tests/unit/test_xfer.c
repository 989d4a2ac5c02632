/*
 * Unit tests for libkvx/xfer_send.c and xfer_recv.c: push transfers between
 * two real nodes in one process over loopback, under TCP (AM) and shared
 * memory (RMA), with dedupe, layer-wise announcements, deadlines, aborts,
 * a peer that goes away and a hostile AM writer. Exit 77 if UCX cannot
 * start.
 */
#include "node_ut.h"

#include "node_int.h"

#define N_MAX 64

typedef struct pair {
    kvx_node_h rx, tx; /* receiver (listens), sender (connects) */
    kvx_peer_h peer;   /* tx -> rx */
    uint64_t bb;       /* block bytes */
} pair_t;

static double tput_am, tput_rma;

static void pair_open(pair_t *p, const nut_opts_t *orx, const nut_opts_t *otx)
{
    memset(p, 0, sizeof(*p));
    CU_ASSERT_EQUAL_FATAL(nut_node("decode", orx, 1, &p->rx), KVX_OK);
    CU_ASSERT_EQUAL_FATAL(nut_node("prefill", otx, 0, &p->tx), KVX_OK);
    CU_ASSERT_EQUAL_FATAL(
        kvx_node_connect(p->tx, kvx_node_listen_addr(p->rx), &p->peer), KVX_OK);
    CU_ASSERT_EQUAL_FATAL(nut_wait_peer(p->rx, p->tx, p->peer), KVX_OK);
    p->bb = kvx_node_layout(p->tx)->block_bytes;
}

static void pair_close(pair_t *p)
{
    kvx_node_destroy(p->tx);
    kvx_node_destroy(p->rx);
}

/* Collects request @p rid on the receiver and compares every block. */
static void check_recv(pair_t *p, uint64_t rid, const kvx_block_ref_t *src,
                       uint32_t n)
{
    kvx_block_ref_t got[N_MAX];
    uint32_t n_got = 0;

    CU_ASSERT_EQUAL_FATAL(
        kvx_node_recv(p->rx, rid, NUT_WAIT_MS, got, N_MAX, &n_got), KVX_OK);
    CU_ASSERT_EQUAL_FATAL(n_got, n);
    for (uint32_t i = 0; i < n; i++) {
        const void *a = kvx_pool_block_addr(kvx_node_pool(p->tx), src[i].block);
        const void *b = kvx_pool_block_addr(kvx_node_pool(p->rx), got[i].block);

        CU_ASSERT(memcmp(a, b, p->bb) == 0);
    }
    nut_unpin_all(p->rx, got, n_got);
    CU_ASSERT_EQUAL(kvx_node_recv(p->rx, rid, 0, got, N_MAX, &n_got),
                    KVX_ERR_NOT_FOUND);
}

static kvx_xfer_h push(pair_t *p, uint64_t rid, const kvx_block_ref_t *src,
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

static void push_roundtrip(const char *tls, kvx_transport_t force,
                           kvx_transport_t expect, double *tput)
{
    nut_opts_t o = {.tls = tls, .transport = force, .num_blocks = N_MAX};
    kvx_block_ref_t src[48];
    kvx_xfer_attr_t attr;
    uint32_t free_tx, free_rx;
    kvx_xfer_h x;
    pair_t p;

    pair_open(&p, &o, &o);
    CU_ASSERT_EQUAL(kvx_peer_transport(p.peer), expect);
    free_rx = nut_n_free(p.rx);
    free_tx = nut_n_free(p.tx);
    nut_make_src(p.tx, 48, src, 7);
    x = push(&p, 42, src, 48, NULL, 0, 0);
    CU_ASSERT_EQUAL(nut_wait_xfer(p.tx, p.rx, x, NUT_WAIT_MS), KVX_OK);
    CU_ASSERT_EQUAL(kvx_xfer_query(x, &attr), KVX_OK);
    CU_ASSERT_EQUAL(attr.transport, expect);
    CU_ASSERT_EQUAL(attr.blocks_sent, 48);
    CU_ASSERT_EQUAL(attr.blocks_hit, 0);
    CU_ASSERT_EQUAL(attr.bytes_sent, 48 * p.bb);
    if (tput != NULL && attr.elapsed_ns > 0) {
        *tput = (double)attr.bytes_sent / (double)attr.elapsed_ns;
    }
    kvx_xfer_release(x);
    check_recv(&p, 42, src, 48);
    nut_unpin_all(p.tx, src, 48);
    CU_ASSERT_EQUAL(nut_n_free(p.tx), free_tx);
    CU_ASSERT_EQUAL(nut_n_free(p.rx), free_rx);
    pair_close(&p);
}

static void test_xfer_push_tcp_am(void)
{
    push_roundtrip(NUT_TLS_TCP, KVX_TRANSPORT_AUTO, KVX_TRANSPORT_AM, &tput_am);
}

static void test_xfer_push_shm_rma(void)
{
    push_roundtrip(NUT_TLS_SHM, KVX_TRANSPORT_AUTO, KVX_TRANSPORT_RMA,
                   &tput_rma);
}

static void test_xfer_push_forced(void)
{
    push_roundtrip(NUT_TLS_TCP, KVX_TRANSPORT_RMA, KVX_TRANSPORT_RMA, NULL);
    push_roundtrip(NUT_TLS_SHM, KVX_TRANSPORT_AM, KVX_TRANSPORT_AM, NULL);
}

static void test_xfer_dedupe(void)
{
    nut_opts_t o = {.tls = NUT_TLS_TCP, .num_blocks = N_MAX};
    kvx_block_key_t keys[6];
    kvx_block_ref_t src[6];
    kvx_xfer_attr_t attr;
    kvx_xfer_h x;
    pair_t p;

    memset(keys, 0, sizeof(keys));
    for (int i = 0; i < 6; i++) {
        keys[i].bytes[0] = (uint8_t)(i + 1);
        keys[i].bytes[15] = 0x5a;
    }
    pair_open(&p, &o, &o);
    nut_make_src(p.tx, 6, src, 100);
    x = push(&p, 1, src, 4, keys, 0, 0);
    CU_ASSERT_EQUAL(nut_wait_xfer(p.tx, p.rx, x, NUT_WAIT_MS), KVX_OK);
    kvx_xfer_query(x, &attr);
    CU_ASSERT_EQUAL(attr.blocks_hit, 0);
    kvx_xfer_release(x);
    check_recv(&p, 1, src, 4); /* unpinned: the 4 blocks stay CACHED */
    x = push(&p, 2, src, 6, keys, 0, 0);
    CU_ASSERT_EQUAL(nut_wait_xfer(p.tx, p.rx, x, NUT_WAIT_MS), KVX_OK);
    kvx_xfer_query(x, &attr);
    CU_ASSERT_EQUAL(attr.blocks_hit, 4);
    CU_ASSERT_EQUAL(attr.blocks_sent, 2);
    CU_ASSERT_EQUAL(attr.bytes_sent, 2 * p.bb);
    kvx_xfer_release(x);
    check_recv(&p, 2, src, 6);
    CU_ASSERT_EQUAL(p.rx->stats.dedupe_hit_blocks, 4);
    nut_unpin_all(p.tx, src, 6);
    pair_close(&p);
}

/* hold_ms: a committed request nobody collects is released; its keyed
 * blocks stay CACHED and serve the next push's dedupe. */
static void test_xfer_hold(void)
{
    nut_opts_t orx = {.tls = NUT_TLS_TCP, .num_blocks = N_MAX, .hold_ms = 200};
    nut_opts_t otx = {.tls = NUT_TLS_TCP, .num_blocks = N_MAX};
    kvx_block_ref_t src[4], got[4];
    kvx_block_key_t keys[4];
    kvx_xfer_attr_t attr;
    kvx_alloc_attr_t a;
    uint32_t n_got = 0;
    kvx_xfer_h x;
    pair_t p;

    memset(keys, 0, sizeof(keys));
    for (int i = 0; i < 4; i++) {
        keys[i].bytes[0] = (uint8_t)(i + 1);
        keys[i].bytes[15] = 0x6b;
    }
    pair_open(&p, &orx, &otx);
    nut_make_src(p.tx, 4, src, 200);
    x = push(&p, 5, src, 4, keys, 0, 0);
    CU_ASSERT_EQUAL(nut_wait_xfer(p.tx, p.rx, x, NUT_WAIT_MS), KVX_OK);
    kvx_xfer_release(x);
    kvx_alloc_query(kvx_node_alloc(p.rx), &a);
    CU_ASSERT_EQUAL(a.n_ready, 4); /* held for the engine */
    nut_spin(p.tx, p.rx, 400);
    kvx_alloc_query(kvx_node_alloc(p.rx), &a);
    CU_ASSERT_EQUAL(a.n_cached, 4);
    CU_ASSERT_EQUAL(a.n_ready, 0);
    CU_ASSERT_EQUAL(kvx_node_recv(p.rx, 5, 0, got, 4, &n_got),
                    KVX_ERR_NOT_FOUND);
    x = push(&p, 6, src, 4, keys, 0, 0);
    CU_ASSERT_EQUAL(nut_wait_xfer(p.tx, p.rx, x, NUT_WAIT_MS), KVX_OK);
    kvx_xfer_query(x, &attr);
    CU_ASSERT_EQUAL(attr.blocks_hit, 4);
    CU_ASSERT_EQUAL(attr.blocks_sent, 0);
    kvx_xfer_release(x);
    check_recv(&p, 6, src, 4);
    nut_unpin_all(p.tx, src, 4);
    pair_close(&p);
}

static uint64_t wait_bytes_ms(pair_t *p, kvx_xfer_h x, uint64_t want,
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

static uint64_t wait_bytes(pair_t *p, kvx_xfer_h x, uint64_t want)
{
    return wait_bytes_ms(p, x, want, NUT_WAIT_MS);
}

/* A layerwise push of @p n blocks whose first @p layers layers (of
 * nut_layout()'s 4) are announced; returns once their bytes are sent. */
static kvx_xfer_h push_layers(pair_t *p, uint64_t rid,
                              const kvx_block_ref_t *src, uint32_t n,
                              uint32_t deadline_ms, uint32_t layers)
{
    kvx_xfer_h x =
        push(p, rid, src, n, NULL, deadline_ms, KVX_XFER_FLAG_LAYERWISE);

    kvx_xfer_layer_ready(x, layers);
    wait_bytes(p, x, (uint64_t)layers * n * p->bb / 4);
    return x;
}

static void layerwise(const char *tls)
{
    nut_opts_t o = {.tls = tls, .num_blocks = N_MAX};
    kvx_block_ref_t src[8];
    uint64_t layer_bytes;
    kvx_xfer_h x;
    pair_t p;

    pair_open(&p, &o, &o);
    layer_bytes = 8 * p.bb / 4;
    nut_make_src(p.tx, 8, src, 3);
    x = push(&p, 9, src, 8, NULL, 0, KVX_XFER_FLAG_LAYERWISE);
    CU_ASSERT_EQUAL(wait_bytes_ms(&p, x, 1, 200), 0); /* nothing announced */
    CU_ASSERT_EQUAL(kvx_xfer_layer_ready(x, 1), KVX_OK);
    CU_ASSERT_EQUAL(wait_bytes(&p, x, layer_bytes), layer_bytes);
    CU_ASSERT_EQUAL(kvx_xfer_layer_ready(x, 0), KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_xfer_layer_ready(x, 3), KVX_OK);
    CU_ASSERT_EQUAL(wait_bytes(&p, x, 3 * layer_bytes), 3 * layer_bytes);
    CU_ASSERT_EQUAL(kvx_xfer_test(x), KVX_INPROGRESS);
    CU_ASSERT_EQUAL(kvx_xfer_layer_ready(x, 5), KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_xfer_layer_ready(x, 4), KVX_OK);
    CU_ASSERT_EQUAL(nut_wait_xfer(p.tx, p.rx, x, NUT_WAIT_MS), KVX_OK);
    CU_ASSERT_EQUAL(kvx_xfer_layer_ready(x, 4), KVX_ERR_BAD_STATE);
    kvx_xfer_release(x);
    check_recv(&p, 9, src, 8);
    nut_unpin_all(p.tx, src, 8);
    pair_close(&p);
}

static void test_xfer_layerwise(void)
{
    layerwise(NUT_TLS_TCP);
    layerwise(NUT_TLS_SHM);
}

static void test_xfer_no_space(void)
{
    nut_opts_t orx = {.tls = NUT_TLS_TCP, .num_blocks = 4};
    nut_opts_t otx = {.tls = NUT_TLS_TCP, .num_blocks = N_MAX};
    kvx_block_ref_t src[8];
    uint32_t free_tx, free_rx, n;
    kvx_xfer_h x;
    pair_t p;

    pair_open(&p, &orx, &otx);
    free_rx = nut_n_free(p.rx);
    free_tx = nut_n_free(p.tx);
    nut_make_src(p.tx, 8, src, 1);
    x = push(&p, 5, src, 8, NULL, 0, 0);
    CU_ASSERT_EQUAL(nut_wait_xfer(p.tx, p.rx, x, NUT_WAIT_MS),
                    KVX_ERR_NO_SPACE);
    kvx_xfer_release(x);
    nut_unpin_all(p.tx, src, 8);
    CU_ASSERT_EQUAL(nut_n_free(p.tx), free_tx);
    CU_ASSERT_EQUAL(nut_n_free(p.rx), free_rx);
    CU_ASSERT_EQUAL(kvx_node_recv(p.rx, 5, 0, NULL, 0, &n), KVX_ERR_NOT_FOUND);
    pair_close(&p);
}

/* Waits until the receiver's blocks are all back (fence lifted). */
static int wait_free(pair_t *p, uint32_t want)
{
    uint64_t end = kvx_clock_monotonic_ns(NULL) + NUT_WAIT_MS * 1000000ull;

    while (nut_n_free(p->rx) != want && kvx_clock_monotonic_ns(NULL) < end) {
        kvx_node_progress(p->tx, 0);
        kvx_node_progress(p->rx, 1);
    }
    return nut_n_free(p->rx) == want;
}

static void test_xfer_deadline(void)
{
    nut_opts_t o = {.tls = NUT_TLS_TCP, .num_blocks = N_MAX};
    kvx_block_ref_t src[4];
    uint32_t free_rx, free_tx, n;
    uint64_t t0;
    kvx_xfer_h x;
    pair_t p;

    pair_open(&p, &o, &o);
    free_rx = nut_n_free(p.rx);
    free_tx = nut_n_free(p.tx);
    nut_make_src(p.tx, 4, src, 11);
    t0 = kvx_clock_monotonic_ns(NULL);
    x = push(&p, 77, src, 4, NULL, 200, KVX_XFER_FLAG_LAYERWISE);
    CU_ASSERT_EQUAL(kvx_xfer_layer_ready(x, 1), KVX_OK);
    CU_ASSERT_EQUAL(nut_wait_xfer(p.tx, p.rx, x, NUT_WAIT_MS), KVX_ERR_TIMEOUT);
    CU_ASSERT(kvx_clock_monotonic_ns(NULL) - t0 < 2000000000ull);
    CU_ASSERT(wait_free(&p, free_rx));
    CU_ASSERT_EQUAL(kvx_node_recv(p.rx, 77, 0, NULL, 0, &n), KVX_ERR_TIMEOUT);
    CU_ASSERT_EQUAL(kvx_node_recv(p.rx, 77, 0, NULL, 0, &n), KVX_ERR_NOT_FOUND);
    kvx_xfer_release(x);
    nut_unpin_all(p.tx, src, 4);
    CU_ASSERT_EQUAL(nut_n_free(p.tx), free_tx);
    pair_close(&p);
}

/* A receiver that stops reading mid-push, as behind a link that went
 * down: UCX cannot finish (or recall) the sends in flight, yet the push
 * ends by its deadline with KVX_ERR_TIMEOUT. Its source blocks stay pinned
 * while UCX may still read them; once the receiver runs again the writes
 * quiesce and both pools get every block back. */
static void test_xfer_deadline_hung_peer(void)
{
    nut_opts_t o = {.tls = NUT_TLS_TCP, .num_blocks = N_MAX};
    kvx_block_ref_t src[48];
    kvx_block_info_t info;
    uint32_t free_rx, free_tx, n;
    uint64_t t0, end;
    kvx_xfer_h x;
    pair_t p;

    pair_open(&p, &o, &o);
    free_rx = nut_n_free(p.rx);
    free_tx = nut_n_free(p.tx);
    nut_make_src(p.tx, 48, src, 14);
    t0 = kvx_clock_monotonic_ns(NULL);
    x = push(&p, 80, src, 48, NULL, 300, 0);
    /* both run until the allocation is answered and 1.5 MiB is posted */
    end = t0 + NUT_WAIT_MS * 1000000ull;
    while (x->state == KVXI_XFER_ALLOCATING &&
           kvx_clock_monotonic_ns(NULL) < end) {
        kvx_node_progress(p.tx, 0);
        kvx_node_progress(p.rx, 1);
    }
    CU_ASSERT_EQUAL_FATAL(x->state, KVXI_XFER_RUNNING);
    /* the receiver hangs: only the sender runs, for less than the 3
     * heartbeats that would declare the receiver down */
    end = t0 + 1500 * 1000000ull;
    while (kvx_xfer_test(x) == KVX_INPROGRESS &&
           kvx_clock_monotonic_ns(NULL) < end) {
        kvx_node_progress(p.tx, 1);
    }
    CU_ASSERT_EQUAL(kvx_xfer_test(x), KVX_ERR_TIMEOUT);
    CU_ASSERT(kvx_clock_monotonic_ns(NULL) - t0 < 1000 * 1000000ull);
    if (x->posts > 0) { /* UCX still holds the sends: sources stay pinned */
        CU_ASSERT_EQUAL(
            kvx_alloc_block_query(kvx_node_alloc(p.tx), src[0].block, &info),
            KVX_OK);
        CU_ASSERT_EQUAL(info.pins, 2);
    }
    kvx_xfer_release(x); /* freed once it settles */
    nut_unpin_all(p.tx, src, 48);
    CU_ASSERT(wait_free(&p, free_rx));
    end = kvx_clock_monotonic_ns(NULL) + NUT_WAIT_MS * 1000000ull;
    while (nut_n_free(p.tx) != free_tx && kvx_clock_monotonic_ns(NULL) < end) {
        kvx_node_progress(p.tx, 1);
        kvx_node_progress(p.rx, 0);
    }
    CU_ASSERT_EQUAL(nut_n_free(p.tx), free_tx);
    CU_ASSERT_EQUAL(kvx_node_recv(p.rx, 80, 0, NULL, 0, &n), KVX_ERR_TIMEOUT);
    CU_ASSERT_EQUAL(kvx_peer_status(p.peer), KVX_OK);
    pair_close(&p);
}

static void test_xfer_sender_abort(void)
{
    nut_opts_t o = {.tls = NUT_TLS_SHM, .num_blocks = N_MAX};
    kvx_block_ref_t src[4];
    uint32_t free_rx, n;
    kvx_xfer_h x;
    pair_t p;

    pair_open(&p, &o, &o);
    free_rx = nut_n_free(p.rx);
    nut_make_src(p.tx, 4, src, 12);
    x = push_layers(&p, 78, src, 4, 0, 2);
    CU_ASSERT_EQUAL(kvx_xfer_abort(x), KVX_OK);
    CU_ASSERT_EQUAL(nut_wait_xfer(p.tx, p.rx, x, NUT_WAIT_MS), KVX_ERR_ABORTED);
    CU_ASSERT_EQUAL(kvx_xfer_abort(x), KVX_ERR_BAD_STATE);
    CU_ASSERT(wait_free(&p, free_rx));
    CU_ASSERT_EQUAL(kvx_node_recv(p.rx, 78, 0, NULL, 0, &n), KVX_ERR_ABORTED);
    kvx_xfer_release(x);
    nut_unpin_all(p.tx, src, 4);
    pair_close(&p);
}

/* An AM chunk admitted into a transfer's block (a rendezvous receive UCX
 * still runs) keeps the block fenced after the transfer fails, even when
 * the sender says it is quiesced, until the chunk is done; only then may
 * the block be reused. Before, the fence lifted at once and a late chunk
 * could land in a block already given to another transfer (the netns
 * fault test saw a checksum failure after a link outage). */
static void test_xfer_late_am_chunk(void)
{
    nut_opts_t o = {.tls = NUT_TLS_TCP, .num_blocks = N_MAX};
    kvx_block_ref_t src[2];
    uint32_t free_rx, n;
    uint64_t tag, off;
    kvxi_rx_t *rx;
    kvx_xfer_h x;
    pair_t p;

    pair_open(&p, &o, &o);
    free_rx = nut_n_free(p.rx);
    nut_make_src(p.tx, 2, src, 16);
    x = push(&p, 82, src, 2, NULL, 0, KVX_XFER_FLAG_LAYERWISE);
    nut_spin(p.tx, p.rx, 50);
    CU_ASSERT_EQUAL_FATAL(x->state, KVXI_XFER_RUNNING);
    rx = p.rx->rxs;
    CU_ASSERT_PTR_NOT_NULL_FATAL(rx);
    tag = rx->tag;
    off = (uint64_t)rx->refs[0].block * p.bb;
    /* UCX hands a rendezvous chunk its destination... */
    CU_ASSERT_PTR_NOT_NULL_FATAL(kvxi_rx_am_dest(tag, off, 4096, p.rx));
    CU_ASSERT_EQUAL(kvx_xfer_abort(x), KVX_OK);
    CU_ASSERT_EQUAL(nut_wait_xfer(p.tx, p.rx, x, NUT_WAIT_MS), KVX_ERR_ABORTED);
    nut_spin(p.tx, p.rx, 50);
    CU_ASSERT_EQUAL(kvx_node_recv(p.rx, 82, 0, NULL, 0, &n), KVX_ERR_ABORTED);
    /* ...so the blocks stay fenced: no other chunk is admitted */
    CU_ASSERT_EQUAL(nut_n_free(p.rx), free_rx - 2);
    CU_ASSERT_PTR_NULL(kvxi_rx_am_dest(tag, off, 4096, p.rx));
    /* ...until its data is in */
    kvxi_rx_am_done(tag, off, 4096, 0, KVX_OK, p.rx);
    CU_ASSERT(wait_free(&p, free_rx));
    CU_ASSERT_PTR_NULL(kvxi_rx_am_dest(tag, off, 4096, p.rx));
    kvx_xfer_release(x);

    /* a chunk UCX never completes is given up after the grace */
    p.rx->late_grace_ms = 300;
    x = push(&p, 83, src, 2, NULL, 0, KVX_XFER_FLAG_LAYERWISE);
    nut_spin(p.tx, p.rx, 50);
    CU_ASSERT_EQUAL_FATAL(x->state, KVXI_XFER_RUNNING);
    rx = p.rx->rxs;
    CU_ASSERT_PTR_NOT_NULL_FATAL(rx);
    tag = rx->tag;
    off = (uint64_t)rx->refs[0].block * p.bb;
    CU_ASSERT_PTR_NOT_NULL_FATAL(kvxi_rx_am_dest(tag, off, 4096, p.rx));
    CU_ASSERT_EQUAL(kvx_xfer_abort(x), KVX_OK);
    CU_ASSERT_EQUAL(nut_wait_xfer(p.tx, p.rx, x, NUT_WAIT_MS), KVX_ERR_ABORTED);
    nut_spin(p.tx, p.rx, 50);
    CU_ASSERT_EQUAL(nut_n_free(p.rx), free_rx - 2);
    CU_ASSERT(wait_free(&p, free_rx));
    CU_ASSERT_EQUAL(p.rx->stats.am_given_up, 1);
    kvxi_rx_am_done(tag, off, 4096, 0, KVX_OK, p.rx); /* too late: ignored */
    CU_ASSERT_EQUAL(nut_n_free(p.rx), free_rx);
    CU_ASSERT_EQUAL(kvx_node_recv(p.rx, 83, 0, NULL, 0, &n), KVX_ERR_ABORTED);
    kvx_xfer_release(x);
    nut_unpin_all(p.tx, src, 2);
    pair_close(&p);
}

/* An abort after the Commit went out is refused: the receiver commits
 * whatever the sender says now, so the push ends with its answer and both
 * sides agree. It used to end ABORTED for a request the receiver had
 * committed (the fault suite's abort test found it). */
static void test_xfer_abort_committing(void)
{
    nut_opts_t o = {.tls = NUT_TLS_TCP, .num_blocks = N_MAX};
    uint64_t end = kvx_clock_monotonic_ns(NULL) + NUT_WAIT_MS * 1000000ull;
    kvx_block_ref_t src[2];
    kvx_xfer_h x;
    pair_t p;

    pair_open(&p, &o, &o);
    nut_make_src(p.tx, 2, src, 13);
    x = push(&p, 79, src, 2, NULL, 0, 0);
    /* the receiver is not progressed once the Commit is out: no CommitAck */
    while (x->state != KVXI_XFER_COMMITTING &&
           kvx_clock_monotonic_ns(NULL) < end) {
        kvx_node_progress(p.tx, 0);
        if (x->state != KVXI_XFER_COMMITTING) {
            kvx_node_progress(p.rx, 0);
        }
    }
    CU_ASSERT_EQUAL_FATAL(x->state, KVXI_XFER_COMMITTING);
    CU_ASSERT_EQUAL(kvx_xfer_abort(x), KVX_ERR_BAD_STATE);
    CU_ASSERT_EQUAL(nut_wait_xfer(p.tx, p.rx, x, NUT_WAIT_MS), KVX_OK);
    check_recv(&p, 79, src, 2);
    kvx_xfer_release(x);
    nut_unpin_all(p.tx, src, 2);
    pair_close(&p);
}

/* hold_ms also ends a failure nobody collects: an aborted request the
 * receiver's engine never asks about is forgotten after hold_ms (it used to
 * stay for the node's life, one record per cancelled request; the soak test
 * found them piling up). */
static void test_xfer_hold_failed(void)
{
    nut_opts_t orx = {.tls = NUT_TLS_TCP, .num_blocks = N_MAX, .hold_ms = 200};
    nut_opts_t otx = {.tls = NUT_TLS_TCP, .num_blocks = N_MAX};
    kvx_block_ref_t src[4];
    kvx_node_stats_t st;
    uint32_t free_rx, n;
    uint64_t v = 99;
    kvx_xfer_h x;
    pair_t p;

    pair_open(&p, &orx, &otx);
    free_rx = nut_n_free(p.rx);
    nut_make_src(p.tx, 4, src, 22);
    x = push_layers(&p, 82, src, 4, 0, 1);
    CU_ASSERT_EQUAL(kvx_xfer_abort(x), KVX_OK);
    CU_ASSERT_EQUAL(nut_wait_xfer(p.tx, p.rx, x, NUT_WAIT_MS), KVX_ERR_ABORTED);
    kvx_xfer_release(x);
    CU_ASSERT(wait_free(&p, free_rx));
    CU_ASSERT_EQUAL(kvx_node_stats(p.rx, &st), KVX_OK);
    CU_ASSERT(nut_counter(&st, "xfers.uncollected", &v));
    CU_ASSERT_EQUAL(v, 1); /* the failure waits for kvx_node_recv() */
    nut_spin(p.tx, p.rx, 400);
    CU_ASSERT_EQUAL(kvx_node_stats(p.rx, &st), KVX_OK);
    CU_ASSERT(nut_counter(&st, "xfers.uncollected", &v));
    CU_ASSERT_EQUAL(v, 0);
    CU_ASSERT_PTR_NULL(p.rx->rxs);
    CU_ASSERT_EQUAL(kvx_node_recv(p.rx, 82, 0, NULL, 0, &n), KVX_ERR_NOT_FOUND);
    nut_unpin_all(p.tx, src, 4);
    pair_close(&p);
}

static void test_xfer_peer_down(void)
{
    nut_opts_t o = {.tls = NUT_TLS_TCP, .num_blocks = N_MAX};
    kvx_block_ref_t src[4];
    kvx_xfer_params_t again = {
        .field_mask =
            KVX_XFER_PARAM_FIELD_REQUEST_ID | KVX_XFER_PARAM_FIELD_BLOCKS,
        .request_id = 81,
        .blocks = src,
        .n_blocks = 4,
    };
    uint32_t free_tx;
    uint64_t t0;
    kvx_xfer_h x;
    pair_t p;

    pair_open(&p, &o, &o);
    free_tx = nut_n_free(p.tx);
    nut_make_src(p.tx, 4, src, 13);
    x = push_layers(&p, 79, src, 4, 5000, 1);
    kvx_node_destroy(p.rx);
    t0 = kvx_clock_monotonic_ns(NULL);
    CU_ASSERT_EQUAL(kvx_xfer_wait(x, NUT_WAIT_MS), KVX_ERR_PEER_DOWN);
    CU_ASSERT(kvx_clock_monotonic_ns(NULL) - t0 < 5000000000ull);
    CU_ASSERT_EQUAL(kvx_peer_status(p.peer), KVX_ERR_PEER_DOWN);
    kvx_xfer_release(x);
    /* a push on the dead peer names its failure (connect again) */
    x = NULL;
    CU_ASSERT_EQUAL(kvx_node_push(p.tx, p.peer, &again, &x), KVX_ERR_PEER_DOWN);
    CU_ASSERT_PTR_NULL(x);
    nut_unpin_all(p.tx, src, 4);
    CU_ASSERT_EQUAL(nut_n_free(p.tx), free_tx);
    kvx_node_destroy(p.tx);
}

static void test_xfer_stale_ref(void)
{
    nut_opts_t o = {.tls = NUT_TLS_TCP, .num_blocks = N_MAX};
    kvx_xfer_params_t xp = {
        .field_mask =
            KVX_XFER_PARAM_FIELD_REQUEST_ID | KVX_XFER_PARAM_FIELD_BLOCKS,
        .request_id = 80,
        .n_blocks = 2,
    };
    kvx_block_ref_t src[2], bad[2];
    kvx_xfer_h x = NULL;
    uint32_t n, free_rx;
    pair_t p;

    pair_open(&p, &o, &o);
    free_rx = nut_n_free(p.rx);
    nut_make_src(p.tx, 2, src, 14);
    bad[0] = src[0];
    bad[1] = src[1];
    bad[1].gen++;
    xp.blocks = bad;
    CU_ASSERT_EQUAL(kvx_node_push(p.tx, p.peer, &xp, &x), KVX_ERR_STALE_HANDLE);
    CU_ASSERT_PTR_NULL(x);
    bad[1].gen--;
    bad[1].block = N_MAX + 5;
    CU_ASSERT_EQUAL(kvx_node_push(p.tx, p.peer, &xp, &x), KVX_ERR_OUT_OF_RANGE);
    bad[1].block = 10; /* FREE */
    bad[1].gen = 1;
    CU_ASSERT_EQUAL(kvx_node_push(p.tx, p.peer, &xp, &x), KVX_ERR_BAD_STATE);
    xp.n_blocks = 0;
    CU_ASSERT_EQUAL(kvx_node_push(p.tx, p.peer, &xp, &x),
                    KVX_ERR_INVALID_PARAM);
    nut_spin(p.tx, p.rx, 50);
    CU_ASSERT_EQUAL(kvx_node_recv(p.rx, 80, 0, NULL, 0, &n), KVX_ERR_NOT_FOUND);
    CU_ASSERT_EQUAL(nut_n_free(p.rx), free_rx);
    CU_ASSERT_EQUAL(p.tx->stats.bytes_sent, 0);
    /* the source pins are unchanged: one each */
    nut_unpin_all(p.tx, src, 2);
    CU_ASSERT_EQUAL(kvx_node_recv(p.rx, 12345, 0, NULL, 0, &n),
                    KVX_ERR_NOT_FOUND);
    pair_close(&p);
}

static void mal_post_cb(kvx_status_t status, void *arg)
{
    (void)status;
    *(int *)arg = 1;
}

static void test_xfer_malicious_am(void)
{
    nut_opts_t o = {.tls = NUT_TLS_TCP, .num_blocks = N_MAX};
    kvxi_ucx_params_t up = {.field_mask = KVXI_UCX_PARAM_FIELD_TLS,
                            .tls = NUT_TLS_TCP};
    kvx_block_ref_t src[2];
    kvxi_ucx_h evil;
    kvxi_ucx_mem_h mem;
    kvxi_ucx_ep_h ep;
    kvx_segment_t seg;
    kvxi_ucx_ep_params_t ep_params = {
        .field_mask = KVXI_UCX_EP_FIELD_ADDRESS | KVXI_UCX_EP_FIELD_MODE,
        .mode = KVXI_UCX_MODE_AM,
    };
    kvxi_ucx_post_params_t pp = {.dir = KVXI_UCX_PUSH};
    static uint8_t buf[1 << 16];
    uint8_t *victim, zero[4096];
    int done = 0;
    uint64_t end;
    kvx_xfer_h x;
    pair_t p;

    pair_open(&p, &o, &o);
    nut_make_src(p.tx, 2, src, 15);
    x = push(&p, 81, src, 2, NULL, 0, KVX_XFER_FLAG_LAYERWISE);
    nut_spin(p.tx, p.rx, 50);
    CU_ASSERT_EQUAL_FATAL(x->state, KVXI_XFER_RUNNING);
    victim = kvx_pool_block_addr(kvx_node_pool(p.rx), N_MAX - 1);
    memset(zero, 0, sizeof(zero));
    memset(victim, 0, sizeof(zero));
    memset(buf, 0xab, sizeof(buf));
    CU_ASSERT_EQUAL_FATAL(kvxi_ucx_create(&up, &evil), KVX_OK);
    CU_ASSERT_EQUAL_FATAL(
        kvxi_ucx_mem_reg(evil, buf, sizeof(buf), KVX_MEM_HOST, &mem), KVX_OK);
    ep_params.address = p.rx->ident.memory.worker_address;
    ep_params.address_len = p.rx->ident.memory.worker_address_len;
    CU_ASSERT_EQUAL_FATAL(kvxi_ucx_ep_create(evil, &ep_params, &ep), KVX_OK);
    /* the transfer's valid tag, but a block it does not own */
    seg.src_off = 0;
    seg.dst_off = (uint64_t)(N_MAX - 1) * p.bb;
    seg.len = sizeof(zero);
    pp.mem = mem;
    pp.segs = &seg;
    pp.n_segs = 1;
    pp.transfer_id = x->lease;
    pp.cb = mal_post_cb;
    pp.arg = &done;
    CU_ASSERT_EQUAL_FATAL(kvxi_ucx_post(ep, &pp, NULL), KVX_OK);
    end = kvx_clock_monotonic_ns(NULL) + NUT_WAIT_MS * 1000000ull;
    while ((!done || p.rx->stats.am_refused == 0) &&
           kvx_clock_monotonic_ns(NULL) < end) {
        kvxi_ucx_progress(evil);
        kvx_node_progress(p.rx, 0);
        kvx_node_progress(p.tx, 0);
    }
    CU_ASSERT(p.rx->stats.am_refused >= 1);
    CU_ASSERT(memcmp(victim, zero, sizeof(zero)) == 0);
    kvxi_ucx_ep_destroy(ep);
    kvxi_ucx_mem_dereg(mem);
    kvxi_ucx_destroy(evil);
    /* the real transfer is unaffected */
    CU_ASSERT_EQUAL(kvx_xfer_layer_ready(x, 4), KVX_OK);
    CU_ASSERT_EQUAL(nut_wait_xfer(p.tx, p.rx, x, NUT_WAIT_MS), KVX_OK);
    kvx_xfer_release(x);
    check_recv(&p, 81, src, 2);
    nut_unpin_all(p.tx, src, 2);
    pair_close(&p);
}

/* A checksummed push passes over both data paths, layer-wise too, and the
 * receiver verified every block it was sent (hits are not checked). */
static void checksum_ok(const char *tls, uint32_t flags)
{
    nut_opts_t o = {.tls = tls, .num_blocks = N_MAX};
    kvx_block_key_t keys[6];
    kvx_block_ref_t src[6];
    kvx_node_stats_t st;
    kvx_xfer_attr_t attr;
    kvx_xfer_h x;
    pair_t p;

    memset(keys, 0, sizeof(keys));
    for (int i = 0; i < 6; i++) {
        keys[i].bytes[0] = (uint8_t)(i + 1);
        keys[i].bytes[1] = (uint8_t)flags;
    }
    pair_open(&p, &o, &o);
    nut_make_src(p.tx, 6, src, 21);
    x = push(&p, 30, src, 4, keys, 0, flags | KVX_XFER_FLAG_CHECKSUM);
    if (flags & KVX_XFER_FLAG_LAYERWISE) {
        for (uint32_t l = 1; l <= 4; l++) {
            CU_ASSERT_EQUAL(kvx_xfer_layer_ready(x, l), KVX_OK);
            nut_spin(p.tx, p.rx, 5);
        }
    }
    CU_ASSERT_EQUAL(nut_wait_xfer(p.tx, p.rx, x, NUT_WAIT_MS), KVX_OK);
    kvx_xfer_query(x, &attr);
    CU_ASSERT_EQUAL(attr.checksum_mismatches, 0);
    kvx_xfer_release(x);
    check_recv(&p, 30, src, 4);
    x = push(&p, 31, src, 6, keys, 0, flags | KVX_XFER_FLAG_CHECKSUM);
    if (flags & KVX_XFER_FLAG_LAYERWISE) {
        CU_ASSERT_EQUAL(kvx_xfer_layer_ready(x, 4), KVX_OK);
    }
    CU_ASSERT_EQUAL(nut_wait_xfer(p.tx, p.rx, x, NUT_WAIT_MS), KVX_OK);
    kvx_xfer_query(x, &attr);
    CU_ASSERT_EQUAL(attr.blocks_hit, 4);
    CU_ASSERT_EQUAL(attr.blocks_sent, 2);
    kvx_xfer_release(x);
    check_recv(&p, 31, src, 6);
    CU_ASSERT_EQUAL(p.rx->stats.blocks_verified, 6);
    CU_ASSERT_EQUAL(p.rx->stats.checksum_mismatches, 0);
    CU_ASSERT_EQUAL(kvx_node_stats(p.rx, &st), KVX_OK);
    CU_ASSERT_EQUAL(st.transfers_ok, 2);
    CU_ASSERT_EQUAL(st.dedupe_hit_blocks, 4);
    CU_ASSERT_EQUAL(st.bytes_received, 6 * p.bb);
    CU_ASSERT_EQUAL(st.blocks_total, N_MAX);
    CU_ASSERT_EQUAL(kvx_node_stats(p.tx, &st), KVX_OK);
    CU_ASSERT_EQUAL(st.bytes_sent, 6 * p.bb);
    nut_unpin_all(p.tx, src, 6);
    pair_close(&p);
}

static void test_xfer_checksum_ok(void)
{
    checksum_ok(NUT_TLS_TCP, 0);
    checksum_ok(NUT_TLS_SHM, 0);
    checksum_ok(NUT_TLS_TCP, KVX_XFER_FLAG_LAYERWISE);
    checksum_ok(NUT_TLS_SHM, KVX_XFER_FLAG_LAYERWISE);
}

/* A byte flipped on the receiver before verification: KVX_ERR_CORRUPT on
 * both sides, the blocks come back, and a clean retry succeeds. */
static void checksum_corrupt(const char *tls)
{
    nut_opts_t o = {.tls = tls, .num_blocks = N_MAX};
    kvx_block_ref_t src[4];
    kvx_xfer_attr_t attr;
    uint32_t free_rx, n;
    kvx_xfer_h x;
    pair_t p;

    pair_open(&p, &o, &o);
    free_rx = nut_n_free(p.rx);
    nut_make_src(p.tx, 4, src, 22);
    kvxi_xfer_test_corrupt(p.rx, 1);
    x = push(&p, 40, src, 4, NULL, 0, KVX_XFER_FLAG_CHECKSUM);
    CU_ASSERT_EQUAL(nut_wait_xfer(p.tx, p.rx, x, NUT_WAIT_MS), KVX_ERR_CORRUPT);
    kvx_xfer_query(x, &attr);
    CU_ASSERT_EQUAL(attr.status, KVX_ERR_CORRUPT);
    CU_ASSERT_EQUAL(attr.checksum_mismatches, 1);
    kvx_xfer_release(x);
    CU_ASSERT_EQUAL(kvx_node_recv(p.rx, 40, NUT_WAIT_MS, NULL, 0, &n),
                    KVX_ERR_CORRUPT);
    CU_ASSERT_EQUAL(kvx_node_recv(p.rx, 40, 0, NULL, 0, &n), KVX_ERR_NOT_FOUND);
    CU_ASSERT(wait_free(&p, free_rx));
    CU_ASSERT_EQUAL(p.rx->stats.checksum_mismatches, 1);
    CU_ASSERT_EQUAL(p.rx->stats.blocks_verified, 3);
    /* the hook acts only where checksums are verified: none without the
     * flag; the blocks stay pinned for the engine (NO_SPACE with max 0) */
    x = push(&p, 41, src, 4, NULL, 0, 0);
    CU_ASSERT_EQUAL(nut_wait_xfer(p.tx, p.rx, x, NUT_WAIT_MS), KVX_OK);
    kvx_xfer_release(x);
    CU_ASSERT_EQUAL(kvx_node_recv(p.rx, 41, NUT_WAIT_MS, NULL, 0, &n),
                    KVX_ERR_NO_SPACE);
    kvxi_xfer_test_corrupt(p.rx, 0);
    {
        kvx_block_ref_t got[4];

        CU_ASSERT_EQUAL(kvx_node_recv(p.rx, 41, 0, got, 4, &n), KVX_OK);
        nut_unpin_all(p.rx, got, n);
    }
    x = push(&p, 42, src, 4, NULL, 0, KVX_XFER_FLAG_CHECKSUM);
    CU_ASSERT_EQUAL(nut_wait_xfer(p.tx, p.rx, x, NUT_WAIT_MS), KVX_OK);
    kvx_xfer_release(x);
    check_recv(&p, 42, src, 4);
    nut_unpin_all(p.tx, src, 4);
    pair_close(&p);
}

static void test_xfer_checksum_corrupt(void)
{
    checksum_corrupt(NUT_TLS_TCP);
    checksum_corrupt(NUT_TLS_SHM);
}

static void test_xfer_throughput_report(void)
{
    if (tput_am > 0 && tput_rma > 0) {
        printf("\n    push 1.5 MiB: tcp/AM %.2f GB/s, shm/RMA %.2f GB/s "
               "(RMA/AM %.1fx)\n",
               tput_am, tput_rma, tput_rma / tput_am);
    }
}

static const ut_test_t xfer_tests[] = {
    UT_TEST(test_xfer_push_tcp_am),
    UT_TEST(test_xfer_push_shm_rma),
    UT_TEST(test_xfer_push_forced),
    UT_TEST(test_xfer_dedupe),
    UT_TEST(test_xfer_hold),
    UT_TEST(test_xfer_layerwise),
    UT_TEST(test_xfer_no_space),
    UT_TEST(test_xfer_deadline),
    UT_TEST(test_xfer_deadline_hung_peer),
    UT_TEST(test_xfer_sender_abort),
    UT_TEST(test_xfer_late_am_chunk),
    UT_TEST(test_xfer_abort_committing),
    UT_TEST(test_xfer_hold_failed),
    UT_TEST(test_xfer_peer_down),
    UT_TEST(test_xfer_stale_ref),
    UT_TEST(test_xfer_malicious_am),
    UT_TEST(test_xfer_checksum_ok),
    UT_TEST(test_xfer_checksum_corrupt),
    UT_TEST(test_xfer_throughput_report),
    UT_END,
};

int main(void)
{
    static const ut_suite_t suites[] = {
        {"xfer", xfer_tests},
        {NULL, NULL},
    };

    if (!nut_init()) {
        return 77;
    }
    return ut_main(suites);
}
