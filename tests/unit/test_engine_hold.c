/*
 * Unit tests for libkvx/engine_hold.c: what a local engine session holds.
 * Reserve, Seal and Release, leases and their expiry, Lookup and Stats,
 * and the holds dropped when the session ends; driven by raw unix-socket
 * clients (engine_ut.h).
 */
#include "engine_ut.h"

/* @p n keys of bytes @p fill, told apart by their first byte (0 keeps
 * @p fill, then 1, 2, ...). */
static void make_keys(kvx_block_key_t *keys, int n, int fill)
{
    memset(keys, fill, (size_t)n * sizeof(*keys));
    for (int i = 1; i < n; i++) {
        keys[i].bytes[0] = (uint8_t)i;
    }
}

static void test_engine_reserve_seal_release(void)
{
    kvx_block_key_t keys[3];
    kvx_block_ref_t refs[4], again[3];
    kvx_block_info_t info;
    kvx_lease_id_t lease;
    kvx_node_h node;
    uint8_t mask[1];
    tc_t *c = eut_session(&node);

    lease = tc_reserve(c, 4, NULL, refs, mask);
    CU_ASSERT(lease != 0);
    CU_ASSERT_EQUAL(mask[0], 0);
    CU_ASSERT_EQUAL(eut_alloc(node).n_reserved, 4);
    CU_ASSERT_EQUAL(tc_seal(c, lease), KVX_OK);
    CU_ASSERT_EQUAL(eut_alloc(node).n_ready, 4);
    kvx_alloc_block_query(kvx_node_alloc(node), refs[2].block, &info);
    CU_ASSERT_EQUAL(info.pins, 1);
    CU_ASSERT_EQUAL(tc_seal(c, lease), KVX_ERR_STALE_HANDLE); /* sealed */
    CU_ASSERT_EQUAL(tc_release(c, refs, 4), 4);
    CU_ASSERT_EQUAL(eut_alloc(node).n_free, EUT_BLOCKS);
    CU_ASSERT_EQUAL(tc_release(c, refs, 4), 0); /* not held any more */
    /* keyed: sealed blocks enter the index, a second reserve hits */
    for (int i = 0; i < 3; i++) {
        memset(&keys[i], 0x10 + i, sizeof(keys[i]));
    }
    tc_reserve_sealed(c, 3, keys, refs);
    CU_ASSERT_EQUAL(tc_release(c, refs, 3), 3);
    CU_ASSERT_EQUAL(eut_alloc(node).n_cached, 3);
    CU_ASSERT_EQUAL(tc_reserve(c, 3, keys, again, mask), 0);
    CU_ASSERT_EQUAL(mask[0], 0x7);
    CU_ASSERT(memcmp(again, refs, sizeof(again)) == 0);
    CU_ASSERT_EQUAL(eut_alloc(node).n_ready, 3); /* hits held at once */
    CU_ASSERT_EQUAL(tc_release(c, again, 3), 3);
    CU_ASSERT_EQUAL(eut_alloc(node).n_cached, 3);
    eut_end(c, node);
}

/* More blocks than the pool has: NO_SPACE, nothing held. */
static void test_engine_reserve_too_many(void)
{
    kvxi_envelope_t *r;
    kvx_node_h node;
    tc_t *c = eut_session(&node);

    r = tc_reserve_req(c, EUT_BLOCKS + 1, NULL, 0);
    CU_ASSERT(r != NULL && r->reserve_reply->status == WIRE(KVX_ERR_NO_SPACE));
    kvxi_frame_free(r);
    CU_ASSERT_EQUAL(eut_alloc(node).n_free, EUT_BLOCKS);
    eut_end(c, node);
}

/* An unsealed lease ends at its deadline fenced, not free (the engine may
 * still write through its mapping); the engine's late Seal is refused and
 * lifts the fence. */
static void test_engine_lease_expires(void)
{
    kvxi_envelope_t *r;
    kvx_lease_id_t lease;
    kvx_node_h node;
    tc_t *c = eut_session(&node);

    r = tc_reserve_req(c, 3, NULL, 100);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    lease = r->reserve_reply->lease_id;
    kvxi_frame_free(r);
    CU_ASSERT_EQUAL(eut_alloc(node).n_reserved, 3);
    /* progress waits 1 s a round: the lease deadline wakes it */
    CU_ASSERT_EQUAL(eut_wait_fenced(node, 1, 2000).n_free, EUT_BLOCKS - 3);
    CU_ASSERT_EQUAL(tc_seal(c, lease), KVX_ERR_STALE_HANDLE);
    CU_ASSERT_EQUAL(eut_alloc(node).n_free, EUT_BLOCKS);
    CU_ASSERT_EQUAL(eut_alloc(node).leases_fenced, 0);
    CU_ASSERT_EQUAL(tc_seal(c, lease), KVX_ERR_STALE_HANDLE);
    eut_end(c, node);
}

/* Releasing every block of an unsealed lease gives it back, expired
 * (fence lifted) or not (later Seal refused); a partial release, a
 * wrong generation or a repeated ref gives nothing back. */
static void test_engine_lease_released(void)
{
    kvx_block_ref_t refs[3], wrong[3];
    kvxi_envelope_t *r;
    kvx_lease_id_t lease;
    kvx_node_h node;
    tc_t *c = eut_session(&node);

    lease = tc_reserve(c, 3, NULL, refs, NULL);
    CU_ASSERT_EQUAL(tc_release(c, refs, 2), 0);
    memcpy(wrong, refs, sizeof(refs));
    wrong[2].gen++;
    CU_ASSERT_EQUAL(tc_release(c, wrong, 3), 0);
    wrong[2] = refs[1]; /* three refs, one repeated: not all of the lease */
    CU_ASSERT_EQUAL(tc_release(c, wrong, 3), 0);
    CU_ASSERT_EQUAL(eut_alloc(node).n_reserved, 3);
    CU_ASSERT_EQUAL(tc_release(c, refs, 3), 3);
    CU_ASSERT_EQUAL(eut_alloc(node).n_free, EUT_BLOCKS);
    CU_ASSERT_EQUAL(tc_seal(c, lease), KVX_ERR_STALE_HANDLE);

    r = tc_reserve_req(c, 2, NULL, 100);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL_FATAL(r->reserve_reply->blocks->n_blocks, 2);
    for (uint32_t i = 0; i < 2; i++) {
        refs[i].block = r->reserve_reply->blocks->blocks[i];
        refs[i].gen = r->reserve_reply->blocks->gens[i];
    }
    kvxi_frame_free(r);
    CU_ASSERT_EQUAL(eut_wait_fenced(node, 1, 2000).n_free, EUT_BLOCKS - 2);
    CU_ASSERT_EQUAL(tc_release(c, refs, 2), 2);
    CU_ASSERT_EQUAL(eut_alloc(node).n_free, EUT_BLOCKS);
    CU_ASSERT_EQUAL(eut_alloc(node).leases_fenced, 0);
    eut_end(c, node);
}

static void test_engine_seal_foreign_lease(void)
{
    kvx_block_ref_t refs[2];
    kvx_lease_id_t lease;
    kvx_node_h node;
    tc_t *a = eut_session(&node), *b = tc_attached();

    lease = tc_reserve(a, 2, NULL, refs, NULL);
    CU_ASSERT_EQUAL(tc_seal(b, lease), KVX_ERR_STALE_HANDLE);
    CU_ASSERT_EQUAL(tc_seal(b, 0x1234567), KVX_ERR_STALE_HANDLE);
    CU_ASSERT_EQUAL(tc_release(b, refs, 2), 0);
    CU_ASSERT_EQUAL(eut_alloc(node).n_reserved, 2); /* untouched */
    CU_ASSERT_EQUAL(tc_seal(a, lease), KVX_OK);
    tc_close(b);
    eut_end(a, node);
}

/* A session that ends holding blocks and an unsealed lease leaves the
 * pool as it was. */
static void test_engine_close_frees(void)
{
    kvx_block_ref_t refs[8];
    kvx_block_key_t keys[2];
    kvx_alloc_attr_t a;
    kvx_node_h node;
    tc_t *c = eut_session(&node);

    make_keys(keys, 2, 0x33);
    tc_reserve_sealed(c, 2, keys, refs);
    CU_ASSERT_EQUAL(tc_reserve(c, 2, keys, refs + 2, NULL), 0); /* hits */
    CU_ASSERT(tc_reserve(c, 4, NULL, refs + 4, NULL) != 0);     /* unsealed */
    a = eut_alloc(node);
    CU_ASSERT(a.n_ready == 2 && a.n_reserved == 4 && a.leases_active == 1);
    tc_close(c);
    a = eut_wait_idle(node, TC_WAIT_MS, 1);
    CU_ASSERT_EQUAL(a.n_free, EUT_BLOCKS - 2);
    CU_ASSERT_EQUAL(a.n_cached, 2); /* keyed blocks stay for dedupe */
    CU_ASSERT_EQUAL(a.n_fenced + a.n_ready + a.n_reserved, 0);
    CU_ASSERT_EQUAL(a.leases_active + a.leases_fenced, 0);
    kvx_node_destroy(node);
}

static void test_engine_lookup_stats(void)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT, *r;
    Kvx__V1__Lookup lk = KVX__V1__LOOKUP__INIT;
    kvx_block_key_t keys[3];
    kvx_block_ref_t refs[2];
    kvx_node_h node;
    tc_t *c = eut_session(&node);

    make_keys(keys, 3, 0x44);
    tc_reserve_sealed(c, 2, keys, refs);
    lk.keys.data = (uint8_t *)keys;
    lk.keys.len = sizeof(keys);
    env.body_case = B(LOOKUP);
    env.lookup = &lk;
    r = tc_call(c, &env, B(LOOKUP_REPLY));
    CU_ASSERT(r != NULL && r->lookup_reply->key_count == 3 &&
              r->lookup_reply->prefix_blocks == 2);
    kvxi_frame_free(r);
    r = tc_stats(c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL(r->stats_reply->blocks_total, EUT_BLOCKS);
    CU_ASSERT_EQUAL(r->stats_reply->blocks_free, EUT_BLOCKS - 2);
    CU_ASSERT(r->stats_reply->n_counters > 0);
    kvxi_frame_free(r);
    eut_end(c, node);
}

static const ut_test_t hold_tests[] = {
    UT_TEST(test_engine_reserve_seal_release),
    UT_TEST(test_engine_reserve_too_many),
    UT_TEST(test_engine_lease_expires),
    UT_TEST(test_engine_lease_released),
    UT_TEST(test_engine_seal_foreign_lease),
    UT_TEST(test_engine_close_frees),
    UT_TEST(test_engine_lookup_stats),
    UT_END,
};

int main(void)
{
    static const ut_suite_t suites[] = {
        {"hold", hold_tests},
        {NULL, NULL},
    };

    return eut_main(suites);
}
