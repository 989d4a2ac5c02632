/*
 * Unit tests for libkvx/client.c, the transfers: an engine on the prefill
 * node pushes (whole, deduplicated, layer by layer, checksummed, to nobody,
 * aborted) or publishes blocks, the engine on the decode node pulls and
 * collects them with kvx_client_recv(). The requests that move no data are
 * in test_client.c. Exit 77 if UCX cannot start.
 */
#include "client_ut.h"

static void test_client_push_recv(void)
{
    kvx_block_ref_t src[4], dst[4];
    kvx_block_key_t keys[4];
    kvx_xfer_attr_t attr;
    kvx_client_xfer_h x;
    kvx_client_h p, d;
    uint32_t n = 0;
    cut_world_t w;

    cut_up(&w, &p, &d);
    cut_keys(keys, 4, 1);
    cut_make_src(p, 4, keys, src, 100);
    CU_ASSERT_EQUAL_FATAL(cut_push(p, w.d_addr, 11, src, 4, keys, 0, &x),
                          KVX_OK);
    CU_ASSERT_EQUAL(kvx_client_xfer_query(x, &attr), KVX_OK);
    CU_ASSERT(attr.status == KVX_INPROGRESS || attr.status == KVX_OK);
    CU_ASSERT_EQUAL(kvx_client_xfer_wait(x, CUT_WAIT_MS), KVX_OK);
    CU_ASSERT_EQUAL(kvx_client_xfer_test(x), KVX_OK);
    CU_ASSERT_EQUAL(kvx_client_xfer_query(x, &attr), KVX_OK);
    CU_ASSERT_EQUAL(attr.status, KVX_OK);
    CU_ASSERT_EQUAL(attr.n_blocks, 4);
    CU_ASSERT_EQUAL(attr.blocks_hit, 0);
    CU_ASSERT_EQUAL(attr.blocks_sent, 4);
    CU_ASSERT_EQUAL(attr.bytes_sent, 4 * CUT_BLOCK_BYTES);
    CU_ASSERT_EQUAL(attr.transport, KVX_TRANSPORT_AM);
    CU_ASSERT(attr.segments >= 1);
    CUT_INVALID(kvx_client_xfer_query(x, NULL));
    CU_ASSERT_EQUAL(kvx_client_xfer_abort(x), KVX_ERR_BAD_STATE);
    CU_ASSERT_EQUAL(kvx_client_xfer_layer_ready(x, 1), KVX_ERR_BAD_STATE);
    kvx_client_xfer_release(x);

    /* the decode engine collects the request and reads the same bytes */
    cut_recv_check(d, 11, 4, 100);
    CU_ASSERT_EQUAL(kvx_client_recv(d, 11, 0, dst, 4, &n), KVX_ERR_NOT_FOUND);
    cut_release_all(p, src, 4);
    cut_down(&w);
}

static void test_client_push_dedupe(void)
{
    kvx_block_ref_t src[4];
    kvx_block_key_t keys[4];
    kvx_xfer_attr_t attr;
    kvx_client_h p, d;
    cut_world_t w;

    cut_up(&w, &p, &d);
    cut_keys(keys, 4, 2);
    cut_make_src(p, 4, keys, src, 200);
    cut_push_wait(p, w.d_addr, 21, src, 4, keys, 0, NULL);
    cut_recv_check(d, 21, 4, 200); /* keyed: stays cached on the decode node */

    cut_push_wait(p, w.d_addr, 22, src, 4, keys, 0, &attr);
    CU_ASSERT_EQUAL(attr.blocks_hit, 4);
    CU_ASSERT_EQUAL(attr.blocks_sent, 0);
    CU_ASSERT_EQUAL(attr.bytes_sent, 0);
    cut_recv_check(d, 22, 4, 200);
    cut_release_all(p, src, 4);
    cut_down(&w);
}

static void test_client_push_layerwise(void)
{
    kvx_block_ref_t src[3];
    kvx_client_xfer_h x;
    kvx_client_h p, d;
    cut_world_t w;

    cut_up(&w, &p, &d);
    cut_make_src(p, 3, NULL, src, 300);
    CU_ASSERT_EQUAL_FATAL(
        cut_push(p, w.d_addr, 31, src, 3, NULL, KVX_XFER_FLAG_LAYERWISE, &x),
        KVX_OK);
    CUT_INVALID(kvx_client_xfer_layer_ready(NULL, 1));
    CUT_INVALID(kvx_client_xfer_layer_ready(x, 0));
    CUT_INVALID(kvx_client_xfer_layer_ready(x, 5));
    /* nothing moves before the layers are ready */
    CU_ASSERT_EQUAL(kvx_client_xfer_wait(x, 100), KVX_INPROGRESS);
    for (uint32_t layer = 1; layer <= 4; layer++) {
        CU_ASSERT_EQUAL(kvx_client_xfer_layer_ready(x, layer), KVX_OK);
    }
    cut_xfer_end(x, KVX_OK, NULL);
    cut_recv_check(d, 31, 3, 300);
    cut_release_all(p, src, 3);
    cut_down(&w);
}

static void test_client_push_checksum(void)
{
    kvx_block_ref_t src[4];
    kvx_node_stats_t st;
    kvx_xfer_attr_t attr;
    kvx_client_h p, d;
    uint64_t verified = 0;
    cut_world_t w;

    cut_up(&w, &p, &d);
    cut_make_src(p, 4, NULL, src, 400);
    cut_push_wait(p, w.d_addr, 41, src, 4, NULL, KVX_XFER_FLAG_CHECKSUM, &attr);
    CU_ASSERT_EQUAL(attr.blocks_sent, 4);
    CU_ASSERT_EQUAL(attr.checksum_mismatches, 0);
    CU_ASSERT_EQUAL(kvx_client_stats(d, &st), KVX_OK);
    CU_ASSERT(nut_counter(&st, "blocks.verified", &verified) && verified == 4);
    cut_recv_check(d, 41, 4, 400);
    cut_release_all(p, src, 4);
    cut_down(&w);
}

static void test_client_push_unreachable(void)
{
    kvx_block_ref_t src[2];
    kvx_client_xfer_h x;
    kvx_client_h p;
    kvx_status_t st;
    cut_world_t w;

    cut_up(&w, &p, NULL);
    cut_make_src(p, 2, NULL, src, 500);
    CU_ASSERT_EQUAL_FATAL(cut_push(p, "127.0.0.1:1", 51, src, 2, NULL, 0, &x),
                          KVX_OK);
    st = kvx_client_xfer_wait(x, CUT_WAIT_MS);
    CU_ASSERT(KVX_STATUS_IS_PEER(st));
    kvx_client_xfer_release(x);
    /* the session is still fine */
    CU_ASSERT_EQUAL(cut_blocks_free(p), CUT_N_BLOCKS - 2);
    cut_release_all(p, src, 2);
    cut_down(&w);
}

/* Abort, and releasing a running transfer (its Result and XferDone are
 * dropped on arrival). */
static void test_client_xfer_abort(void)
{
    kvx_block_ref_t src[2];
    kvx_client_xfer_h x, y;
    kvx_xfer_attr_t attr;
    kvx_client_h p;
    cut_world_t w;

    cut_up(&w, &p, NULL);
    cut_make_src(p, 2, NULL, src, 600);
    CU_ASSERT_EQUAL_FATAL(
        cut_push(p, w.d_addr, 61, src, 2, NULL, KVX_XFER_FLAG_LAYERWISE, &x),
        KVX_OK);
    CU_ASSERT_EQUAL(kvx_client_xfer_test(x), KVX_INPROGRESS);
    CU_ASSERT_EQUAL(kvx_client_xfer_query(x, &attr), KVX_OK);
    CU_ASSERT_EQUAL(attr.status, KVX_INPROGRESS);
    CU_ASSERT_EQUAL(attr.blocks_sent, 0);
    CU_ASSERT_EQUAL(kvx_client_xfer_abort(x), KVX_OK);
    CU_ASSERT_EQUAL(kvx_client_xfer_wait(x, CUT_WAIT_MS), KVX_ERR_ABORTED);
    CU_ASSERT_EQUAL(kvx_client_xfer_abort(x), KVX_ERR_BAD_STATE);
    CUT_INVALID(kvx_client_xfer_abort(NULL));
    kvx_client_xfer_release(x);

    CU_ASSERT_EQUAL_FATAL(
        cut_push(p, w.d_addr, 62, src, 2, NULL, KVX_XFER_FLAG_LAYERWISE, &y),
        KVX_OK);
    kvx_client_xfer_release(y);
    kvx_client_xfer_release(NULL);
    CU_ASSERT_PTR_NULL(p->xfers);
    /* later requests get their own replies */
    CU_ASSERT_EQUAL(cut_blocks_free(p), CUT_N_BLOCKS - 2);
    CUT_INVALID(kvx_client_xfer_test(NULL));
    CUT_INVALID(kvx_client_xfer_wait(NULL, 0));
    cut_release_all(p, src, 2);
    cut_down(&w);
}

static void test_client_publish_pull(void)
{
    kvx_block_ref_t src[4];
    kvx_publish_params_t pp = cut_publish_params(71, src, 4);
    kvx_pull_params_t lp;
    kvx_ticket_t ticket;
    kvx_client_xfer_h x;
    kvx_client_h p, d;
    cut_world_t w;

    cut_up(&w, &p, &d);
    cut_make_src(p, 4, NULL, src, 700);
    CU_ASSERT_EQUAL_FATAL(kvx_client_publish(p, &pp, &ticket), KVX_OK);
    CU_ASSERT_STRING_EQUAL(ticket.addr, w.p_addr);
    CU_ASSERT_STRING_EQUAL(ticket.node_id, "prefill");
    CU_ASSERT_EQUAL(ticket.request_id, 71);
    CU_ASSERT_EQUAL(ticket.layout_hash,
                    kvx_layout_compat_hash(kvx_client_layout(p)));
    CU_ASSERT_EQUAL(kvx_client_publish(p, &pp, NULL), KVX_ERR_EXISTS);

    lp = cut_pull_params(ticket.request_id, 4);
    CU_ASSERT_EQUAL_FATAL(kvx_client_pull(d, ticket.addr, &lp, &x), KVX_OK);
    cut_xfer_end(x, KVX_OK, NULL);
    cut_recv_check(d, 71, 4, 700);

    CU_ASSERT_EQUAL(kvx_client_unpublish(p, 71), KVX_OK);
    CU_ASSERT_EQUAL(kvx_client_unpublish(p, 71), KVX_ERR_NOT_FOUND);
    CUT_INVALID(kvx_client_unpublish(NULL, 71));
    /* a pull of what is not published ends with NOT_FOUND */
    CU_ASSERT_EQUAL_FATAL(kvx_client_pull(d, ticket.addr, &lp, &x), KVX_OK);
    cut_xfer_end(x, KVX_ERR_NOT_FOUND, NULL);
    cut_release_all(p, src, 4);
    cut_down(&w);
}

static const ut_test_t push_tests[] = {
    UT_TEST(test_client_push_recv),
    UT_TEST(test_client_push_dedupe),
    UT_TEST(test_client_push_layerwise),
    UT_TEST(test_client_push_checksum),
    UT_TEST(test_client_push_unreachable),
    UT_TEST(test_client_xfer_abort),
    UT_END,
};

static const ut_test_t publish_tests[] = {
    UT_TEST(test_client_publish_pull),
    UT_END,
};

int main(void)
{
    static const ut_suite_t suites[] = {
        {"push", push_tests},
        {"publish", publish_tests},
        {NULL, NULL},
    };

    return cut_main(suites);
}
