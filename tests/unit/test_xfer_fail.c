/*
 * Unit tests for the failures of push transfers (libkvx/xfer_stop.c,
 * xfer_recv.c, rx_am.c, rx_hold.c): deadlines, also against a receiver
 * that hangs; aborts by the sender, with an AM chunk still landing and
 * after the Commit; uncollected failures; a peer that goes away; stale
 * source refs; a hostile AM writer. Two real nodes in one process over
 * loopback (xfer_ut.h). Exit 77 if UCX cannot start.
 */
#include "xfer_ut.h"

static void test_xfer_deadline(void)
{
    nut_opts_t o = {.tls = NUT_TLS_TCP, .num_blocks = XUT_N_MAX};
    kvx_block_ref_t src[4];
    uint32_t free_rx, free_tx, n;
    uint64_t t0;
    kvx_xfer_h x;
    xut_pair_t p;

    xut_pair_open(&p, &o, &o);
    free_rx = nut_n_free(p.rx);
    free_tx = nut_n_free(p.tx);
    nut_make_src(p.tx, 4, src, 11);
    t0 = kvx_clock_monotonic_ns(NULL);
    x = xut_push(&p, 77, src, 4, NULL, 200, KVX_XFER_FLAG_LAYERWISE);
    CU_ASSERT_EQUAL(kvx_xfer_layer_ready(x, 1), KVX_OK);
    CU_ASSERT_EQUAL(nut_wait_xfer(p.tx, p.rx, x, NUT_WAIT_MS), KVX_ERR_TIMEOUT);
    CU_ASSERT(kvx_clock_monotonic_ns(NULL) - t0 < 2000000000ull);
    CU_ASSERT(xut_wait_free(&p, free_rx));
    CU_ASSERT_EQUAL(kvx_node_recv(p.rx, 77, 0, NULL, 0, &n), KVX_ERR_TIMEOUT);
    CU_ASSERT_EQUAL(kvx_node_recv(p.rx, 77, 0, NULL, 0, &n), KVX_ERR_NOT_FOUND);
    kvx_xfer_release(x);
    nut_unpin_all(p.tx, src, 4);
    CU_ASSERT_EQUAL(nut_n_free(p.tx), free_tx);
    xut_pair_close(&p);
}

/* A receiver that stops reading mid-push, as behind a link that went
 * down: UCX cannot finish (or recall) the sends in flight, yet the push
 * ends by its deadline with KVX_ERR_TIMEOUT. Its source blocks stay pinned
 * while UCX may still read them; once the receiver runs again the writes
 * quiesce and both pools get every block back. */
static void test_xfer_deadline_hung_peer(void)
{
    nut_opts_t o = {.tls = NUT_TLS_TCP, .num_blocks = XUT_N_MAX};
    kvx_block_ref_t src[48];
    kvx_block_info_t info;
    uint32_t free_rx, free_tx, n;
    uint64_t t0, end;
    kvx_xfer_h x;
    xut_pair_t p;

    xut_pair_open(&p, &o, &o);
    free_rx = nut_n_free(p.rx);
    free_tx = nut_n_free(p.tx);
    nut_make_src(p.tx, 48, src, 14);
    t0 = kvx_clock_monotonic_ns(NULL);
    x = xut_push(&p, 80, src, 48, NULL, 300, 0);
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
    CU_ASSERT(xut_wait_free(&p, free_rx));
    end = kvx_clock_monotonic_ns(NULL) + NUT_WAIT_MS * 1000000ull;
    while (nut_n_free(p.tx) != free_tx && kvx_clock_monotonic_ns(NULL) < end) {
        kvx_node_progress(p.tx, 1);
        kvx_node_progress(p.rx, 0);
    }
    CU_ASSERT_EQUAL(nut_n_free(p.tx), free_tx);
    CU_ASSERT_EQUAL(kvx_node_recv(p.rx, 80, 0, NULL, 0, &n), KVX_ERR_TIMEOUT);
    CU_ASSERT_EQUAL(kvx_peer_status(p.peer), KVX_OK);
    xut_pair_close(&p);
}

static void test_xfer_sender_abort(void)
{
    nut_opts_t o = {.tls = NUT_TLS_SHM, .num_blocks = XUT_N_MAX};
    kvx_block_ref_t src[4];
    uint32_t free_rx, n;
    kvx_xfer_h x;
    xut_pair_t p;

    xut_pair_open(&p, &o, &o);
    free_rx = nut_n_free(p.rx);
    nut_make_src(p.tx, 4, src, 12);
    x = xut_push_layers(&p, 78, src, 4, 0, 2);
    CU_ASSERT_EQUAL(kvx_xfer_abort(x), KVX_OK);
    CU_ASSERT_EQUAL(nut_wait_xfer(p.tx, p.rx, x, NUT_WAIT_MS), KVX_ERR_ABORTED);
    CU_ASSERT_EQUAL(kvx_xfer_abort(x), KVX_ERR_BAD_STATE);
    CU_ASSERT(xut_wait_free(&p, free_rx));
    CU_ASSERT_EQUAL(kvx_node_recv(p.rx, 78, 0, NULL, 0, &n), KVX_ERR_ABORTED);
    kvx_xfer_release(x);
    nut_unpin_all(p.tx, src, 4);
    xut_pair_close(&p);
}

/* A layer-wise push of @p src (2 blocks) as request @p rid; UCX admits
 * one AM chunk into its first block (a rendezvous receive now running),
 * then the sender aborts: the push ends ABORTED. Returns the push. */
static kvx_xfer_h late_chunk_abort(xut_pair_t *p, uint64_t rid,
                                   const kvx_block_ref_t *src, uint64_t *tag,
                                   uint64_t *off)
{
    kvx_xfer_h x = xut_push(p, rid, src, 2, NULL, 0, KVX_XFER_FLAG_LAYERWISE);
    kvxi_rx_t *rx;

    nut_spin(p->tx, p->rx, 50);
    CU_ASSERT_EQUAL_FATAL(x->state, KVXI_XFER_RUNNING);
    rx = p->rx->rxs;
    CU_ASSERT_PTR_NOT_NULL_FATAL(rx);
    *tag = rx->tag;
    *off = (uint64_t)rx->refs[0].block * p->bb;
    CU_ASSERT_PTR_NOT_NULL_FATAL(kvxi_rx_am_dest(*tag, *off, 4096, p->rx));
    CU_ASSERT_EQUAL(kvx_xfer_abort(x), KVX_OK);
    CU_ASSERT_EQUAL(nut_wait_xfer(p->tx, p->rx, x, NUT_WAIT_MS),
                    KVX_ERR_ABORTED);
    nut_spin(p->tx, p->rx, 50);
    return x;
}

/* An AM chunk admitted into a transfer's block (a rendezvous receive UCX
 * still runs) keeps the block fenced after the transfer fails, even when
 * the sender says it is quiesced, until the chunk is done; only then may
 * the block be reused. Before, the fence lifted at once and a late chunk
 * could land in a block already given to another transfer (the netns
 * fault test saw a checksum failure after a link outage). */
static void test_xfer_late_am_chunk(void)
{
    nut_opts_t o = {.tls = NUT_TLS_TCP, .num_blocks = XUT_N_MAX};
    kvx_block_ref_t src[2];
    uint32_t free_rx, n;
    uint64_t tag, off;
    kvx_xfer_h x;
    xut_pair_t p;

    xut_pair_open(&p, &o, &o);
    free_rx = nut_n_free(p.rx);
    nut_make_src(p.tx, 2, src, 16);
    x = late_chunk_abort(&p, 82, src, &tag, &off);
    CU_ASSERT_EQUAL(kvx_node_recv(p.rx, 82, 0, NULL, 0, &n), KVX_ERR_ABORTED);
    /* the blocks stay fenced: no other chunk is admitted */
    CU_ASSERT_EQUAL(nut_n_free(p.rx), free_rx - 2);
    CU_ASSERT_PTR_NULL(kvxi_rx_am_dest(tag, off, 4096, p.rx));
    /* ...until its data is in */
    kvxi_rx_am_done(tag, off, 4096, 0, KVX_OK, p.rx);
    CU_ASSERT(xut_wait_free(&p, free_rx));
    CU_ASSERT_PTR_NULL(kvxi_rx_am_dest(tag, off, 4096, p.rx));
    kvx_xfer_release(x);

    /* a chunk UCX never completes is given up after the grace */
    p.rx->late_grace_ms = 300;
    x = late_chunk_abort(&p, 83, src, &tag, &off);
    CU_ASSERT_EQUAL(nut_n_free(p.rx), free_rx - 2);
    CU_ASSERT(xut_wait_free(&p, free_rx));
    CU_ASSERT_EQUAL(p.rx->stats.am_given_up, 1);
    kvxi_rx_am_done(tag, off, 4096, 0, KVX_OK, p.rx); /* too late: ignored */
    CU_ASSERT_EQUAL(nut_n_free(p.rx), free_rx);
    CU_ASSERT_EQUAL(kvx_node_recv(p.rx, 83, 0, NULL, 0, &n), KVX_ERR_ABORTED);
    kvx_xfer_release(x);
    nut_unpin_all(p.tx, src, 2);
    xut_pair_close(&p);
}

/* An abort after the Commit went out is refused: the receiver commits
 * whatever the sender says now, so the push ends with its answer and both
 * sides agree. It used to end ABORTED for a request the receiver had
 * committed (the fault suite's abort test found it). */
static void test_xfer_abort_committing(void)
{
    nut_opts_t o = {.tls = NUT_TLS_TCP, .num_blocks = XUT_N_MAX};
    uint64_t end = kvx_clock_monotonic_ns(NULL) + NUT_WAIT_MS * 1000000ull;
    kvx_block_ref_t src[2];
    kvx_xfer_h x;
    xut_pair_t p;

    xut_pair_open(&p, &o, &o);
    nut_make_src(p.tx, 2, src, 13);
    x = xut_push(&p, 79, src, 2, NULL, 0, 0);
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
    xut_check_recv(&p, 79, src, 2);
    kvx_xfer_release(x);
    nut_unpin_all(p.tx, src, 2);
    xut_pair_close(&p);
}

/* hold_ms also ends a failure nobody collects: an aborted request the
 * receiver's engine never asks about is forgotten after hold_ms (it used to
 * stay for the node's life, one record per cancelled request; the soak test
 * found them piling up). */
static void test_xfer_hold_failed(void)
{
    nut_opts_t orx = {
        .tls = NUT_TLS_TCP, .num_blocks = XUT_N_MAX, .hold_ms = 200};
    nut_opts_t otx = {.tls = NUT_TLS_TCP, .num_blocks = XUT_N_MAX};
    kvx_block_ref_t src[4];
    kvx_node_stats_t st;
    uint32_t free_rx, n;
    uint64_t v = 99;
    kvx_xfer_h x;
    xut_pair_t p;

    xut_pair_open(&p, &orx, &otx);
    free_rx = nut_n_free(p.rx);
    nut_make_src(p.tx, 4, src, 22);
    x = xut_push_layers(&p, 82, src, 4, 0, 1);
    CU_ASSERT_EQUAL(kvx_xfer_abort(x), KVX_OK);
    CU_ASSERT_EQUAL(nut_wait_xfer(p.tx, p.rx, x, NUT_WAIT_MS), KVX_ERR_ABORTED);
    kvx_xfer_release(x);
    CU_ASSERT(xut_wait_free(&p, free_rx));
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
    xut_pair_close(&p);
}

static void test_xfer_peer_down(void)
{
    nut_opts_t o = {.tls = NUT_TLS_TCP, .num_blocks = XUT_N_MAX};
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
    xut_pair_t p;

    xut_pair_open(&p, &o, &o);
    free_tx = nut_n_free(p.tx);
    nut_make_src(p.tx, 4, src, 13);
    x = xut_push_layers(&p, 79, src, 4, 5000, 1);
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
    nut_opts_t o = {.tls = NUT_TLS_TCP, .num_blocks = XUT_N_MAX};
    kvx_xfer_params_t xp = {
        .field_mask =
            KVX_XFER_PARAM_FIELD_REQUEST_ID | KVX_XFER_PARAM_FIELD_BLOCKS,
        .request_id = 80,
        .n_blocks = 2,
    };
    kvx_block_ref_t src[2], bad[2];
    kvx_xfer_h x = NULL;
    uint32_t n, free_rx;
    xut_pair_t p;

    xut_pair_open(&p, &o, &o);
    free_rx = nut_n_free(p.rx);
    nut_make_src(p.tx, 2, src, 14);
    bad[0] = src[0];
    bad[1] = src[1];
    bad[1].gen++;
    xp.blocks = bad;
    CU_ASSERT_EQUAL(kvx_node_push(p.tx, p.peer, &xp, &x), KVX_ERR_STALE_HANDLE);
    CU_ASSERT_PTR_NULL(x);
    bad[1].gen--;
    bad[1].block = XUT_N_MAX + 5;
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
    xut_pair_close(&p);
}

static void mal_post_cb(kvx_status_t status, void *arg)
{
    (void)status;
    *(int *)arg = 1;
}

static void test_xfer_malicious_am(void)
{
    nut_opts_t o = {.tls = NUT_TLS_TCP, .num_blocks = XUT_N_MAX};
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
    xut_pair_t p;

    xut_pair_open(&p, &o, &o);
    nut_make_src(p.tx, 2, src, 15);
    x = xut_push(&p, 81, src, 2, NULL, 0, KVX_XFER_FLAG_LAYERWISE);
    nut_spin(p.tx, p.rx, 50);
    CU_ASSERT_EQUAL_FATAL(x->state, KVXI_XFER_RUNNING);
    victim = kvx_pool_block_addr(kvx_node_pool(p.rx), XUT_N_MAX - 1);
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
    seg.dst_off = (uint64_t)(XUT_N_MAX - 1) * p.bb;
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
    xut_check_recv(&p, 81, src, 2);
    nut_unpin_all(p.tx, src, 2);
    xut_pair_close(&p);
}

static const ut_test_t xfer_fail_tests[] = {
    UT_TEST(test_xfer_deadline),         UT_TEST(test_xfer_deadline_hung_peer),
    UT_TEST(test_xfer_sender_abort),     UT_TEST(test_xfer_late_am_chunk),
    UT_TEST(test_xfer_abort_committing), UT_TEST(test_xfer_hold_failed),
    UT_TEST(test_xfer_peer_down),        UT_TEST(test_xfer_stale_ref),
    UT_TEST(test_xfer_malicious_am),     UT_END,
};

int main(void)
{
    static const ut_suite_t suites[] = {
        {"xfer_fail", xfer_fail_tests},
        {NULL, NULL},
    };

    if (!nut_init()) {
        return 77;
    }
    return ut_main(suites);
}
