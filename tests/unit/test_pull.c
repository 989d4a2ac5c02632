/*
 * Unit tests for libkvx/pull.c: a decode node pulls blocks a prefill node
 * published, over TCP (AM: the holder pushes into the puller's
 * reservation) and shared memory (RMA get), with dedupe, unknown and
 * expired publications and a holder that goes away. Exit 77 if UCX cannot
 * start.
 */
#include "node_ut.h"

#include "node_int.h"

#define N_MAX 64

typedef struct pair {
    kvx_node_h hold, pull; /* holder (prefill, listens), puller (decode) */
    kvx_peer_h peer;       /* pull -> hold */
    uint64_t bb;
} pair_t;

/* The puller connects to the address a published ticket names. */
static void pair_open(pair_t *p, const nut_opts_t *o)
{
    memset(p, 0, sizeof(*p));
    CU_ASSERT_EQUAL_FATAL(nut_node("prefill", o, 1, &p->hold), KVX_OK);
    CU_ASSERT_EQUAL_FATAL(nut_node("decode", o, 0, &p->pull), KVX_OK);
    p->bb = kvx_node_layout(p->hold)->block_bytes;
}

static void pair_connect(pair_t *p, const kvx_ticket_t *t)
{
    CU_ASSERT_EQUAL_FATAL(kvx_node_connect(p->pull, t->addr, &p->peer), KVX_OK);
    CU_ASSERT_EQUAL_FATAL(nut_wait_peer(p->hold, p->pull, p->peer), KVX_OK);
}

static kvx_status_t publish(pair_t *p, uint64_t rid, const kvx_block_ref_t *b,
                            uint32_t n, uint32_t lease_ms, kvx_ticket_t *t)
{
    kvx_publish_params_t pp = {
        .field_mask =
            KVX_PUBLISH_PARAM_FIELD_REQUEST_ID | KVX_PUBLISH_PARAM_FIELD_BLOCKS,
        .request_id = rid,
        .blocks = b,
        .n_blocks = n,
        .lease_ms = lease_ms,
    };

    if (lease_ms) {
        pp.field_mask |= KVX_PUBLISH_PARAM_FIELD_LEASE;
    }
    return kvx_node_publish(p->hold, &pp, t);
}

static kvx_xfer_h pull(pair_t *p, uint64_t rid, uint32_t n,
                       const kvx_block_key_t *keys, uint32_t deadline_ms)
{
    kvx_pull_params_t pp = {
        .field_mask =
            KVX_PULL_PARAM_FIELD_REQUEST_ID | KVX_PULL_PARAM_FIELD_N_BLOCKS,
        .request_id = rid,
        .n_blocks = n,
        .keys = keys,
        .deadline_ms = deadline_ms,
    };
    kvx_xfer_h x = NULL;

    if (keys != NULL) {
        pp.field_mask |= KVX_PULL_PARAM_FIELD_KEYS;
    }
    if (deadline_ms) {
        pp.field_mask |= KVX_PULL_PARAM_FIELD_DEADLINE;
    }
    CU_ASSERT_EQUAL(kvx_node_pull(p->pull, p->peer, &pp, &x), KVX_OK);
    return x;
}

/* Collects request @p rid on the puller and compares every block. */
static void check_recv(pair_t *p, uint64_t rid, const kvx_block_ref_t *src,
                       uint32_t n)
{
    kvx_block_ref_t got[N_MAX];
    uint32_t n_got = 0;

    CU_ASSERT_EQUAL_FATAL(
        kvx_node_recv(p->pull, rid, NUT_WAIT_MS, got, N_MAX, &n_got), KVX_OK);
    CU_ASSERT_EQUAL_FATAL(n_got, n);
    for (uint32_t i = 0; i < n; i++) {
        const void *a =
            kvx_pool_block_addr(kvx_node_pool(p->hold), src[i].block);
        const void *b =
            kvx_pool_block_addr(kvx_node_pool(p->pull), got[i].block);

        CU_ASSERT(memcmp(a, b, p->bb) == 0);
    }
    nut_unpin_all(p->pull, got, n_got);
    CU_ASSERT_EQUAL(kvx_node_recv(p->pull, rid, 0, got, N_MAX, &n_got),
                    KVX_ERR_NOT_FOUND);
}

static void pull_roundtrip(const char *tls, kvx_transport_t expect)
{
    nut_opts_t o = {.tls = tls, .num_blocks = N_MAX};
    char text[KVX_TICKET_TEXT_MAX];
    kvx_ticket_t t, t2;
    kvx_block_ref_t src[48];
    kvx_xfer_attr_t attr;
    uint32_t free_h, free_p;
    kvx_xfer_h x;
    pair_t p;

    pair_open(&p, &o);
    free_h = nut_n_free(p.hold);
    free_p = nut_n_free(p.pull);
    nut_make_src(p.hold, 48, src, 7);
    CU_ASSERT_EQUAL(publish(&p, 42, src, 48, 0, &t), KVX_OK);
    CU_ASSERT_EQUAL(publish(&p, 42, src, 48, 0, NULL), KVX_ERR_EXISTS);
    CU_ASSERT_EQUAL(kvx_ticket_format(&t, text, sizeof(text), NULL), KVX_OK);
    CU_ASSERT_EQUAL(kvx_ticket_parse(text, strlen(text), &t2), KVX_OK);
    CU_ASSERT_EQUAL(t2.request_id, 42);
    pair_connect(&p, &t2);
    CU_ASSERT_EQUAL(kvx_peer_transport(p.peer), expect);
    x = pull(&p, t2.request_id, 48, NULL, 0);
    CU_ASSERT_EQUAL(nut_wait_xfer(p.pull, p.hold, x, NUT_WAIT_MS), KVX_OK);
    kvx_xfer_query(x, &attr);
    CU_ASSERT_EQUAL(attr.blocks_sent, 48);
    CU_ASSERT_EQUAL(attr.bytes_sent, 48 * p.bb);
    CU_ASSERT_EQUAL(attr.transport, expect);
    kvx_xfer_release(x);
    check_recv(&p, 42, src, 48);
    nut_spin(p.pull, p.hold, 50); /* Release reaches the holder */
    CU_ASSERT_EQUAL(kvx_node_unpublish(p.hold, 42), KVX_OK);
    CU_ASSERT_EQUAL(kvx_node_unpublish(p.hold, 42), KVX_ERR_NOT_FOUND);
    nut_unpin_all(p.hold, src, 48);
    CU_ASSERT_EQUAL(nut_n_free(p.hold), free_h);
    CU_ASSERT_EQUAL(nut_n_free(p.pull), free_p);
    kvx_node_destroy(p.pull);
    kvx_node_destroy(p.hold);
}

static void test_pull_tcp_am(void)
{
    pull_roundtrip(NUT_TLS_TCP, KVX_TRANSPORT_AM);
}

static void test_pull_shm_rma(void)
{
    pull_roundtrip(NUT_TLS_SHM, KVX_TRANSPORT_RMA);
}

static void dedupe(const char *tls)
{
    nut_opts_t o = {.tls = tls, .num_blocks = N_MAX};
    kvx_block_key_t keys[6];
    kvx_block_ref_t src[6];
    kvx_xfer_attr_t attr;
    uint32_t free_h, free_p;
    kvx_ticket_t t;
    kvx_xfer_h x;
    pair_t p;

    memset(keys, 0, sizeof(keys));
    for (int i = 0; i < 6; i++) {
        keys[i].bytes[0] = (uint8_t)(i + 1);
        keys[i].bytes[15] = 0xa5;
    }
    pair_open(&p, &o);
    free_h = nut_n_free(p.hold);
    nut_make_src(p.hold, 6, src, 100);
    CU_ASSERT_EQUAL(publish(&p, 1, src, 4, 0, &t), KVX_OK);
    pair_connect(&p, &t);
    free_p = nut_n_free(p.pull);
    x = pull(&p, 1, 4, keys, 0);
    CU_ASSERT_EQUAL(nut_wait_xfer(p.pull, p.hold, x, NUT_WAIT_MS), KVX_OK);
    kvx_xfer_query(x, &attr);
    CU_ASSERT_EQUAL(attr.blocks_hit, 0);
    CU_ASSERT_EQUAL(attr.blocks_sent, 4);
    kvx_xfer_release(x);
    check_recv(&p, 1, src, 4); /* unpinned: the 4 blocks stay CACHED */
    CU_ASSERT_EQUAL(publish(&p, 2, src, 6, 0, NULL), KVX_OK);
    x = pull(&p, 2, 6, keys, 0);
    CU_ASSERT_EQUAL(nut_wait_xfer(p.pull, p.hold, x, NUT_WAIT_MS), KVX_OK);
    kvx_xfer_query(x, &attr);
    CU_ASSERT_EQUAL(attr.blocks_hit, 4);
    CU_ASSERT_EQUAL(attr.blocks_sent, 2);
    CU_ASSERT_EQUAL(attr.bytes_sent, 2 * p.bb);
    kvx_xfer_release(x);
    check_recv(&p, 2, src, 6);
    nut_spin(p.pull, p.hold, 50);
    CU_ASSERT_EQUAL(kvx_node_unpublish(p.hold, 1), KVX_OK);
    CU_ASSERT_EQUAL(kvx_node_unpublish(p.hold, 2), KVX_OK);
    nut_unpin_all(p.hold, src, 6);
    CU_ASSERT_EQUAL(nut_n_free(p.hold), free_h);
    CU_ASSERT_EQUAL(nut_n_free(p.pull), free_p);
    kvx_node_destroy(p.pull);
    kvx_node_destroy(p.hold);
}

static void test_pull_dedupe_am(void)
{
    dedupe(NUT_TLS_TCP);
}

static void test_pull_dedupe_rma(void)
{
    dedupe(NUT_TLS_SHM);
}

static void test_pull_not_found(void)
{
    nut_opts_t o = {.tls = NUT_TLS_TCP, .num_blocks = N_MAX};
    kvx_block_ref_t src[2], got[2];
    uint32_t free_h, free_p, n;
    kvx_ticket_t t;
    kvx_xfer_h x;
    pair_t p;

    pair_open(&p, &o);
    free_h = nut_n_free(p.hold);
    nut_make_src(p.hold, 2, src, 3);
    /* unknown id */
    CU_ASSERT_EQUAL(publish(&p, 5, src, 2, 0, &t), KVX_OK);
    pair_connect(&p, &t);
    free_p = nut_n_free(p.pull);
    x = pull(&p, 6, 2, NULL, 0);
    CU_ASSERT_EQUAL(nut_wait_xfer(p.pull, p.hold, x, NUT_WAIT_MS),
                    KVX_ERR_NOT_FOUND);
    kvx_xfer_release(x);
    CU_ASSERT_EQUAL(kvx_node_recv(p.pull, 6, 0, got, 2, &n), KVX_ERR_NOT_FOUND);
    CU_ASSERT_EQUAL(kvx_node_recv(p.pull, 6, 0, got, 2, &n), KVX_ERR_NOT_FOUND);
    /* wrong block count */
    x = pull(&p, 5, 3, NULL, 0);
    CU_ASSERT_EQUAL(nut_wait_xfer(p.pull, p.hold, x, NUT_WAIT_MS),
                    KVX_ERR_INVALID_PARAM);
    kvx_xfer_release(x);
    CU_ASSERT_EQUAL(kvx_node_recv(p.pull, 5, 0, got, 2, &n),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(nut_n_free(p.pull), free_p);
    /* withdrawn */
    CU_ASSERT_EQUAL(kvx_node_unpublish(p.hold, 5), KVX_OK);
    x = pull(&p, 5, 2, NULL, 0);
    CU_ASSERT_EQUAL(nut_wait_xfer(p.pull, p.hold, x, NUT_WAIT_MS),
                    KVX_ERR_NOT_FOUND);
    kvx_xfer_release(x);
    CU_ASSERT_EQUAL(kvx_node_recv(p.pull, 5, 0, got, 2, &n), KVX_ERR_NOT_FOUND);
    CU_ASSERT_EQUAL(nut_n_free(p.pull), free_p);
    nut_unpin_all(p.hold, src, 2);
    CU_ASSERT_EQUAL(nut_n_free(p.hold), free_h);
    kvx_node_destroy(p.pull);
    kvx_node_destroy(p.hold);
}

static void test_pull_lease_expired(void)
{
    nut_opts_t o = {.tls = NUT_TLS_SHM, .num_blocks = N_MAX};
    kvx_block_ref_t src[3], got[3];
    uint32_t free_h, free_p, n;
    kvx_ticket_t t;
    kvx_xfer_h x;
    pair_t p;

    pair_open(&p, &o);
    free_h = nut_n_free(p.hold);
    nut_make_src(p.hold, 3, src, 9);
    CU_ASSERT_EQUAL(publish(&p, 77, src, 3, 100, &t), KVX_OK);
    pair_connect(&p, &t);
    free_p = nut_n_free(p.pull);
    nut_spin(p.hold, p.pull, 300); /* the lease ends before the pull */
    nut_unpin_all(p.hold, src, 3);
    CU_ASSERT_EQUAL(nut_n_free(p.hold), free_h); /* nothing pinned any more */
    x = pull(&p, 77, 3, NULL, 0);
    CU_ASSERT_EQUAL(nut_wait_xfer(p.pull, p.hold, x, NUT_WAIT_MS),
                    KVX_ERR_NOT_FOUND);
    kvx_xfer_release(x);
    CU_ASSERT_EQUAL(kvx_node_recv(p.pull, 77, 0, got, 3, &n),
                    KVX_ERR_NOT_FOUND);
    CU_ASSERT_EQUAL(kvx_node_unpublish(p.hold, 77), KVX_ERR_NOT_FOUND);
    CU_ASSERT_EQUAL(nut_n_free(p.pull), free_p);
    kvx_node_destroy(p.pull);
    kvx_node_destroy(p.hold);
}

static void peer_down(const char *tls)
{
    nut_opts_t o = {.tls = tls, .num_blocks = N_MAX};
    kvx_block_ref_t src[8], got[8];
    uint32_t free_p, n;
    kvx_ticket_t t;
    uint64_t t0;
    kvx_xfer_h x;
    pair_t p;

    pair_open(&p, &o);
    nut_make_src(p.hold, 8, src, 21);
    CU_ASSERT_EQUAL(publish(&p, 9, src, 8, 0, &t), KVX_OK);
    pair_connect(&p, &t);
    free_p = nut_n_free(p.pull);
    x = pull(&p, 9, 8, NULL, 5000);
    kvx_node_progress(p.pull, 0); /* the request is out, unanswered */
    CU_ASSERT(nut_n_free(p.pull) < free_p);
    kvx_node_destroy(p.hold);
    t0 = kvx_clock_monotonic_ns(NULL);
    CU_ASSERT_EQUAL(kvx_xfer_wait(x, NUT_WAIT_MS), KVX_ERR_PEER_DOWN);
    CU_ASSERT(kvx_clock_monotonic_ns(NULL) - t0 < 5000000000ull);
    kvx_xfer_release(x);
    CU_ASSERT_EQUAL(kvx_node_recv(p.pull, 9, 0, got, 8, &n), KVX_ERR_PEER_DOWN);
    CU_ASSERT_EQUAL(nut_n_free(p.pull), free_p);
    /* a pull from the dead peer names its failure (connect again) */
    x = NULL;
    CU_ASSERT_EQUAL(
        kvx_node_pull(p.pull, p.peer,
                      &(kvx_pull_params_t){
                          .field_mask = KVX_PULL_PARAM_FIELD_REQUEST_ID |
                                        KVX_PULL_PARAM_FIELD_N_BLOCKS,
                          .request_id = 10,
                          .n_blocks = 8,
                      },
                      &x),
        KVX_ERR_PEER_DOWN);
    CU_ASSERT_PTR_NULL(x);
    kvx_node_destroy(p.pull);
}

static void test_pull_peer_down_am(void)
{
    peer_down(NUT_TLS_TCP);
}

static void test_pull_peer_down_rma(void)
{
    peer_down(NUT_TLS_SHM);
}

/* Pins on @p ref's block (the publication's and each reader's). */
static uint32_t pins(kvx_node_h node, kvx_block_ref_t ref)
{
    kvx_block_info_t info;

    CU_ASSERT_EQUAL(
        kvx_alloc_block_query(kvx_node_alloc(node), ref.block, &info), KVX_OK);
    return info.pins;
}

/* Publishes 2 blocks as request @p rid, starts their pull and unpublishes
 * them once the holder answered (the reader's pins remain): the
 * publication lives on for the reader. */
static kvx_xfer_h pull_unpublished(pair_t *p, uint64_t rid,
                                   kvx_block_ref_t *src)
{
    kvx_ticket_t t;
    kvx_xfer_h x;

    nut_make_src(p->hold, 2, src, 31);
    CU_ASSERT_EQUAL(publish(p, rid, src, 2, 0, &t), KVX_OK);
    nut_unpin_all(p->hold, src, 2); /* the publication's pins remain */
    pair_connect(p, &t);
    x = pull(p, rid, 2, NULL, 0);
    for (int i = 0; i < 1000 && pins(p->hold, src[0]) < 2; i++) {
        kvx_node_progress(p->pull, 0);
        kvx_node_progress(p->hold, 1); /* answers: a reader's pins */
    }
    CU_ASSERT_EQUAL(pins(p->hold, src[0]), 2);
    CU_ASSERT_EQUAL(kvx_node_unpublish(p->hold, rid), KVX_OK);
    CU_ASSERT_EQUAL(pins(p->hold, src[0]), 1); /* the reader's */
    return x;
}

/* The reader's Release frees the unpublished publication (found by
 * fuzz_node: the holder read the freed publication to count the released
 * blocks). */
static void test_pull_unpublish_while_read(void)
{
    nut_opts_t o = {.tls = NUT_TLS_SHM, .num_blocks = N_MAX};
    kvx_block_ref_t src[2], got[2];
    uint32_t free_h, n = 0;
    kvx_xfer_h x;
    pair_t p;

    pair_open(&p, &o);
    free_h = nut_n_free(p.hold);
    x = pull_unpublished(&p, 31, src);
    CU_ASSERT_EQUAL(nut_wait_xfer(p.pull, p.hold, x, NUT_WAIT_MS), KVX_OK);
    kvx_xfer_release(x);
    nut_spin(p.pull, p.hold, 50); /* the Release reaches the holder */
    CU_ASSERT_EQUAL(nut_n_free(p.hold), free_h);
    CU_ASSERT_EQUAL(kvx_node_recv(p.pull, 31, 0, got, 2, &n), KVX_OK);
    nut_unpin_all(p.pull, got, n);
    kvx_node_destroy(p.pull);
    kvx_node_destroy(p.hold);
}

/* The reader's connection ends instead (found by fuzz_node: walking the
 * publications went on from the one just freed). */
static void test_pull_unpublish_then_peer_down(void)
{
    nut_opts_t o = {.tls = NUT_TLS_SHM, .num_blocks = N_MAX};
    kvx_block_ref_t src[2];
    uint32_t free_h;
    kvx_xfer_h x;
    pair_t p;

    pair_open(&p, &o);
    free_h = nut_n_free(p.hold);
    x = pull_unpublished(&p, 32, src);
    kvx_xfer_release(x);
    kvx_node_destroy(p.pull); /* before the pull could Release */
    nut_spin(p.hold, NULL, 50);
    CU_ASSERT_EQUAL(nut_n_free(p.hold), free_h);
    kvx_node_destroy(p.hold);
}

static void test_pull_params(void)
{
    nut_opts_t o = {.tls = NUT_TLS_TCP, .num_blocks = N_MAX};
    kvx_pull_params_t pp = {
        .field_mask = KVX_PULL_PARAM_FIELD_REQUEST_ID |
                      KVX_PULL_PARAM_FIELD_N_BLOCKS |
                      KVX_PULL_PARAM_FIELD_FLAGS,
        .request_id = 1,
        .n_blocks = 1,
        .flags = KVX_XFER_FLAG_CHECKSUM,
    };
    kvx_block_ref_t src[1];
    kvx_ticket_t t;
    kvx_xfer_h x = NULL;
    pair_t p;

    pair_open(&p, &o);
    nut_make_src(p.hold, 1, src, 1);
    CU_ASSERT_EQUAL(publish(&p, 1, src, 0, 0, &t), KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_node_publish(p.hold, NULL, &t), KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(publish(&p, 1, src, 1, 0, &t), KVX_OK);
    pair_connect(&p, &t);
    CU_ASSERT_EQUAL(kvx_node_pull(p.pull, p.peer, &pp, &x),
                    KVX_ERR_NOT_SUPPORTED);
    pp.field_mask &= ~(uint64_t)KVX_PULL_PARAM_FIELD_N_BLOCKS;
    CU_ASSERT_EQUAL(kvx_node_pull(p.pull, p.peer, &pp, &x),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_node_pull(p.pull, NULL, &pp, &x),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT_PTR_NULL(x);
    CU_ASSERT_EQUAL(kvx_node_unpublish(NULL, 1), KVX_ERR_INVALID_PARAM);
    nut_unpin_all(p.hold, src, 1);
    kvx_node_destroy(p.pull);
    kvx_node_destroy(p.hold); /* frees the live publication */
}

static const ut_test_t pull_tests[] = {
    UT_TEST(test_pull_tcp_am),
    UT_TEST(test_pull_shm_rma),
    UT_TEST(test_pull_dedupe_am),
    UT_TEST(test_pull_dedupe_rma),
    UT_TEST(test_pull_not_found),
    UT_TEST(test_pull_lease_expired),
    UT_TEST(test_pull_peer_down_am),
    UT_TEST(test_pull_peer_down_rma),
    UT_TEST(test_pull_params),
    UT_TEST(test_pull_unpublish_while_read),
    UT_TEST(test_pull_unpublish_then_peer_down),
    UT_END,
};

int main(void)
{
    static const ut_suite_t suites[] = {
        {"pull", pull_tests},
        {NULL, NULL},
    };

    if (!nut_init()) {
        return 77;
    }
    return ut_main(suites);
}
