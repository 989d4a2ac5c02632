/*
 * Unit tests for libkvx/xfer_send.c, xfer_post.c, xfer_recv.c, rx_am.c and
 * rx_commit.c: push transfers between two real nodes in one process over
 * loopback, under TCP (AM) and shared memory (RMA), with dedupe, the hold
 * limit, layer-wise announcements, a full receiver and checksums. Failures
 * (deadlines, aborts, a lost peer, a hostile AM writer) are in
 * test_xfer_fail.c; both share xfer_ut.h. Exit 77 if UCX cannot start.
 */
#include "xfer_ut.h"

static double tput_am, tput_rma;

static void push_roundtrip(const char *tls, kvx_transport_t force,
                           kvx_transport_t expect, double *tput)
{
    nut_opts_t o = {.tls = tls, .transport = force, .num_blocks = XUT_N_MAX};
    kvx_block_ref_t src[48];
    kvx_xfer_attr_t attr;
    uint32_t free_tx, free_rx;
    kvx_xfer_h x;
    xut_pair_t p;

    xut_pair_open(&p, &o, &o);
    CU_ASSERT_EQUAL(kvx_peer_transport(p.peer), expect);
    free_rx = nut_n_free(p.rx);
    free_tx = nut_n_free(p.tx);
    nut_make_src(p.tx, 48, src, 7);
    x = xut_push(&p, 42, src, 48, NULL, 0, 0);
    CU_ASSERT_EQUAL(nut_wait_xfer(p.tx, p.rx, x, NUT_WAIT_MS), KVX_OK);
    CU_ASSERT_EQUAL(kvx_xfer_query(x, &attr), KVX_OK);
    CU_ASSERT_EQUAL(attr.transport, expect);
    CU_ASSERT_EQUAL(attr.blocks_sent, 48);
    CU_ASSERT_EQUAL(attr.blocks_hit, 0);
    CU_ASSERT_EQUAL(attr.bytes_sent, 48 * p.bb);
    /* Every phase happened, in order, within the whole. */
    CU_ASSERT(attr.alloc_ns > 0);
    CU_ASSERT(attr.post_ns > 0);
    CU_ASSERT(attr.data_ns > 0);
    CU_ASSERT(attr.commit_ns > 0);
    CU_ASSERT(attr.alloc_ns + attr.data_ns + attr.commit_ns <= attr.elapsed_ns);
    if (tput != NULL && attr.elapsed_ns > 0) {
        *tput = (double)attr.bytes_sent / (double)attr.elapsed_ns;
    }
    kvx_xfer_release(x);
    xut_check_recv(&p, 42, src, 48);
    nut_unpin_all(p.tx, src, 48);
    CU_ASSERT_EQUAL(nut_n_free(p.tx), free_tx);
    CU_ASSERT_EQUAL(nut_n_free(p.rx), free_rx);
    xut_pair_close(&p);
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

/* The sender's am_chunk bounds its AM messages: 48 blocks of 32 KiB in
 * 4 KiB messages, every byte still where it belongs. */
static void test_xfer_am_chunk(void)
{
    nut_opts_t orx = {.tls = NUT_TLS_TCP, .num_blocks = XUT_N_MAX};
    nut_opts_t otx = orx;
    kvxi_ucx_stats_t before, after;
    kvx_block_ref_t src[48];
    kvx_xfer_h x;
    xut_pair_t p;

    otx.am_chunk = 4096;
    xut_pair_open(&p, &orx, &otx);
    CU_ASSERT_EQUAL(kvx_peer_transport(p.peer), KVX_TRANSPORT_AM);
    nut_make_src(p.tx, 48, src, 9);
    kvxi_ucx_stats_get(p.tx->ucx, &before);
    x = xut_push(&p, 7, src, 48, NULL, 0, 0);
    CU_ASSERT_EQUAL(nut_wait_xfer(p.tx, p.rx, x, NUT_WAIT_MS), KVX_OK);
    kvxi_ucx_stats_get(p.tx->ucx, &after);
    CU_ASSERT_EQUAL(after.am_tx_bytes - before.am_tx_bytes, 48 * p.bb);
    CU_ASSERT_EQUAL(after.am_tx_chunks - before.am_tx_chunks, 48 * p.bb / 4096);
    kvx_xfer_release(x);
    xut_check_recv(&p, 7, src, 48);
    nut_unpin_all(p.tx, src, 48);
    xut_pair_close(&p);
}

static void test_xfer_dedupe(void)
{
    nut_opts_t o = {.tls = NUT_TLS_TCP, .num_blocks = XUT_N_MAX};
    kvx_block_key_t keys[6];
    kvx_block_ref_t src[6];
    kvx_xfer_attr_t attr;
    kvx_xfer_h x;
    xut_pair_t p;

    memset(keys, 0, sizeof(keys));
    for (int i = 0; i < 6; i++) {
        keys[i].bytes[0] = (uint8_t)(i + 1);
        keys[i].bytes[15] = 0x5a;
    }
    xut_pair_open(&p, &o, &o);
    nut_make_src(p.tx, 6, src, 100);
    x = xut_push(&p, 1, src, 4, keys, 0, 0);
    CU_ASSERT_EQUAL(nut_wait_xfer(p.tx, p.rx, x, NUT_WAIT_MS), KVX_OK);
    kvx_xfer_query(x, &attr);
    CU_ASSERT_EQUAL(attr.blocks_hit, 0);
    kvx_xfer_release(x);
    xut_check_recv(&p, 1, src, 4); /* unpinned: the 4 blocks stay CACHED */
    x = xut_push(&p, 2, src, 6, keys, 0, 0);
    CU_ASSERT_EQUAL(nut_wait_xfer(p.tx, p.rx, x, NUT_WAIT_MS), KVX_OK);
    kvx_xfer_query(x, &attr);
    CU_ASSERT_EQUAL(attr.blocks_hit, 4);
    CU_ASSERT_EQUAL(attr.blocks_sent, 2);
    CU_ASSERT_EQUAL(attr.bytes_sent, 2 * p.bb);
    kvx_xfer_release(x);
    xut_check_recv(&p, 2, src, 6);
    CU_ASSERT_EQUAL(p.rx->stats.dedupe_hit_blocks, 4);
    /* Every block hits: allocation only, no data phase, no Commit. */
    x = xut_push(&p, 3, src, 6, keys, 0, 0);
    CU_ASSERT_EQUAL(nut_wait_xfer(p.tx, p.rx, x, NUT_WAIT_MS), KVX_OK);
    kvx_xfer_query(x, &attr);
    CU_ASSERT_EQUAL(attr.blocks_hit, 6);
    CU_ASSERT_EQUAL(attr.bytes_sent, 0);
    CU_ASSERT(attr.alloc_ns > 0);
    CU_ASSERT(attr.alloc_ns <= attr.elapsed_ns);
    CU_ASSERT_EQUAL(attr.post_ns, 0);
    CU_ASSERT_EQUAL(attr.data_ns, 0);
    CU_ASSERT_EQUAL(attr.commit_ns, 0);
    kvx_xfer_release(x);
    xut_check_recv(&p, 3, src, 6);
    CU_ASSERT_EQUAL(p.rx->stats.dedupe_hit_blocks, 10);
    nut_unpin_all(p.tx, src, 6);
    xut_pair_close(&p);
}

/* hold_ms: a committed request nobody collects is released; its keyed
 * blocks stay CACHED and serve the next push's dedupe. */
static void test_xfer_hold(void)
{
    nut_opts_t orx = {
        .tls = NUT_TLS_TCP, .num_blocks = XUT_N_MAX, .hold_ms = 200};
    nut_opts_t otx = {.tls = NUT_TLS_TCP, .num_blocks = XUT_N_MAX};
    kvx_block_ref_t src[4], got[4];
    kvx_block_key_t keys[4];
    kvx_xfer_attr_t attr;
    kvx_alloc_attr_t a;
    uint32_t n_got = 0;
    kvx_xfer_h x;
    xut_pair_t p;

    memset(keys, 0, sizeof(keys));
    for (int i = 0; i < 4; i++) {
        keys[i].bytes[0] = (uint8_t)(i + 1);
        keys[i].bytes[15] = 0x6b;
    }
    xut_pair_open(&p, &orx, &otx);
    nut_make_src(p.tx, 4, src, 200);
    x = xut_push(&p, 5, src, 4, keys, 0, 0);
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
    x = xut_push(&p, 6, src, 4, keys, 0, 0);
    CU_ASSERT_EQUAL(nut_wait_xfer(p.tx, p.rx, x, NUT_WAIT_MS), KVX_OK);
    kvx_xfer_query(x, &attr);
    CU_ASSERT_EQUAL(attr.blocks_hit, 4);
    CU_ASSERT_EQUAL(attr.blocks_sent, 0);
    kvx_xfer_release(x);
    xut_check_recv(&p, 6, src, 4);
    nut_unpin_all(p.tx, src, 4);
    xut_pair_close(&p);
}

static void layerwise(const char *tls)
{
    nut_opts_t o = {.tls = tls, .num_blocks = XUT_N_MAX};
    kvx_block_ref_t src[8];
    uint64_t layer_bytes;
    kvx_xfer_h x;
    xut_pair_t p;

    xut_pair_open(&p, &o, &o);
    layer_bytes = 8 * p.bb / 4;
    nut_make_src(p.tx, 8, src, 3);
    x = xut_push(&p, 9, src, 8, NULL, 0, KVX_XFER_FLAG_LAYERWISE);
    CU_ASSERT_EQUAL(xut_wait_bytes_ms(&p, x, 1, 200),
                    0); /* nothing announced */
    CU_ASSERT_EQUAL(kvx_xfer_layer_ready(x, 1), KVX_OK);
    CU_ASSERT_EQUAL(xut_wait_bytes(&p, x, layer_bytes), layer_bytes);
    CU_ASSERT_EQUAL(kvx_xfer_layer_ready(x, 0), KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_xfer_layer_ready(x, 3), KVX_OK);
    CU_ASSERT_EQUAL(xut_wait_bytes(&p, x, 3 * layer_bytes), 3 * layer_bytes);
    CU_ASSERT_EQUAL(kvx_xfer_test(x), KVX_INPROGRESS);
    CU_ASSERT_EQUAL(kvx_xfer_layer_ready(x, 5), KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_xfer_layer_ready(x, 4), KVX_OK);
    CU_ASSERT_EQUAL(nut_wait_xfer(p.tx, p.rx, x, NUT_WAIT_MS), KVX_OK);
    CU_ASSERT_EQUAL(kvx_xfer_layer_ready(x, 4), KVX_ERR_BAD_STATE);
    kvx_xfer_release(x);
    xut_check_recv(&p, 9, src, 8);
    nut_unpin_all(p.tx, src, 8);
    xut_pair_close(&p);
}

static void test_xfer_layerwise(void)
{
    layerwise(NUT_TLS_TCP);
    layerwise(NUT_TLS_SHM);
}

static void test_xfer_no_space(void)
{
    nut_opts_t orx = {.tls = NUT_TLS_TCP, .num_blocks = 4};
    nut_opts_t otx = {.tls = NUT_TLS_TCP, .num_blocks = XUT_N_MAX};
    kvx_block_ref_t src[8];
    uint32_t free_tx, free_rx, n;
    kvx_xfer_h x;
    xut_pair_t p;

    xut_pair_open(&p, &orx, &otx);
    free_rx = nut_n_free(p.rx);
    free_tx = nut_n_free(p.tx);
    nut_make_src(p.tx, 8, src, 1);
    x = xut_push(&p, 5, src, 8, NULL, 0, 0);
    CU_ASSERT_EQUAL(nut_wait_xfer(p.tx, p.rx, x, NUT_WAIT_MS),
                    KVX_ERR_NO_SPACE);
    kvx_xfer_release(x);
    nut_unpin_all(p.tx, src, 8);
    CU_ASSERT_EQUAL(nut_n_free(p.tx), free_tx);
    CU_ASSERT_EQUAL(nut_n_free(p.rx), free_rx);
    CU_ASSERT_EQUAL(kvx_node_recv(p.rx, 5, 0, NULL, 0, &n), KVX_ERR_NOT_FOUND);
    xut_pair_close(&p);
}

/* A checksummed push passes over both data paths, layer-wise too, and the
 * receiver verified every block it was sent (hits are not checked). */
static void checksum_ok(const char *tls, uint32_t flags)
{
    nut_opts_t o = {.tls = tls, .num_blocks = XUT_N_MAX};
    kvx_block_key_t keys[6];
    kvx_block_ref_t src[6];
    kvx_node_stats_t st;
    kvx_xfer_attr_t attr;
    kvx_xfer_h x;
    xut_pair_t p;

    memset(keys, 0, sizeof(keys));
    for (int i = 0; i < 6; i++) {
        keys[i].bytes[0] = (uint8_t)(i + 1);
        keys[i].bytes[1] = (uint8_t)flags;
    }
    xut_pair_open(&p, &o, &o);
    nut_make_src(p.tx, 6, src, 21);
    x = xut_push(&p, 30, src, 4, keys, 0, flags | KVX_XFER_FLAG_CHECKSUM);
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
    xut_check_recv(&p, 30, src, 4);
    x = xut_push(&p, 31, src, 6, keys, 0, flags | KVX_XFER_FLAG_CHECKSUM);
    if (flags & KVX_XFER_FLAG_LAYERWISE) {
        CU_ASSERT_EQUAL(kvx_xfer_layer_ready(x, 4), KVX_OK);
    }
    CU_ASSERT_EQUAL(nut_wait_xfer(p.tx, p.rx, x, NUT_WAIT_MS), KVX_OK);
    kvx_xfer_query(x, &attr);
    CU_ASSERT_EQUAL(attr.blocks_hit, 4);
    CU_ASSERT_EQUAL(attr.blocks_sent, 2);
    kvx_xfer_release(x);
    xut_check_recv(&p, 31, src, 6);
    CU_ASSERT_EQUAL(p.rx->stats.blocks_verified, 6);
    CU_ASSERT_EQUAL(p.rx->stats.checksum_mismatches, 0);
    CU_ASSERT_EQUAL(kvx_node_stats(p.rx, &st), KVX_OK);
    CU_ASSERT_EQUAL(st.transfers_ok, 2);
    CU_ASSERT_EQUAL(st.dedupe_hit_blocks, 4);
    CU_ASSERT_EQUAL(st.bytes_received, 6 * p.bb);
    CU_ASSERT_EQUAL(st.blocks_total, XUT_N_MAX);
    CU_ASSERT_EQUAL(kvx_node_stats(p.tx, &st), KVX_OK);
    CU_ASSERT_EQUAL(st.bytes_sent, 6 * p.bb);
    nut_unpin_all(p.tx, src, 6);
    xut_pair_close(&p);
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
    nut_opts_t o = {.tls = tls, .num_blocks = XUT_N_MAX};
    kvx_block_ref_t src[4];
    kvx_xfer_attr_t attr;
    uint32_t free_rx, n;
    kvx_xfer_h x;
    xut_pair_t p;

    xut_pair_open(&p, &o, &o);
    free_rx = nut_n_free(p.rx);
    nut_make_src(p.tx, 4, src, 22);
    kvxi_xfer_test_corrupt(p.rx, 1);
    x = xut_push(&p, 40, src, 4, NULL, 0, KVX_XFER_FLAG_CHECKSUM);
    CU_ASSERT_EQUAL(nut_wait_xfer(p.tx, p.rx, x, NUT_WAIT_MS), KVX_ERR_CORRUPT);
    kvx_xfer_query(x, &attr);
    CU_ASSERT_EQUAL(attr.status, KVX_ERR_CORRUPT);
    CU_ASSERT_EQUAL(attr.checksum_mismatches, 1);
    kvx_xfer_release(x);
    CU_ASSERT_EQUAL(kvx_node_recv(p.rx, 40, NUT_WAIT_MS, NULL, 0, &n),
                    KVX_ERR_CORRUPT);
    CU_ASSERT_EQUAL(kvx_node_recv(p.rx, 40, 0, NULL, 0, &n), KVX_ERR_NOT_FOUND);
    CU_ASSERT(xut_wait_free(&p, free_rx));
    CU_ASSERT_EQUAL(p.rx->stats.checksum_mismatches, 1);
    CU_ASSERT_EQUAL(p.rx->stats.blocks_verified, 3);
    /* the hook acts only where checksums are verified: none without the
     * flag; the blocks stay pinned for the engine (NO_SPACE with max 0) */
    x = xut_push(&p, 41, src, 4, NULL, 0, 0);
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
    x = xut_push(&p, 42, src, 4, NULL, 0, KVX_XFER_FLAG_CHECKSUM);
    CU_ASSERT_EQUAL(nut_wait_xfer(p.tx, p.rx, x, NUT_WAIT_MS), KVX_OK);
    kvx_xfer_release(x);
    xut_check_recv(&p, 42, src, 4);
    nut_unpin_all(p.tx, src, 4);
    xut_pair_close(&p);
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
    UT_TEST(test_xfer_am_chunk),
    UT_TEST(test_xfer_dedupe),
    UT_TEST(test_xfer_hold),
    UT_TEST(test_xfer_layerwise),
    UT_TEST(test_xfer_no_space),
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
