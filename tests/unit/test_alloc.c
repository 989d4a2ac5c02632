/*
 * Unit tests for libkvx/alloc.c: the allocator (create, reserve, eviction),
 * blocks (pins, keys, references) and keyed reservations (dedupe, lookup).
 * Leases are tested in test_lease.c.
 */
#include "ut.h"

#include "alloc_ut.h"

#include <kvx/kvx.h>
#include <string.h>

/* ---- allocator ---------------------------------------------------------- */

static void test_alloc_create_invalid_params(void)
{
    kvx_alloc_params_t p = {
        .field_mask = KVX_ALLOC_PARAM_FIELD_BLOCK_COUNT,
        .block_count = 8,
    };
    kvx_alloc_h a = (kvx_alloc_h)&p;

    ERR(kvx_alloc_create(NULL, &a), INVALID_PARAM);
    ERR(kvx_alloc_create(&p, NULL), INVALID_PARAM);
    p.field_mask = 0;
    ERR(kvx_alloc_create(&p, &a), INVALID_PARAM);
    p.field_mask = KVX_ALLOC_PARAM_FIELD_MAX_LEASES;
    p.max_leases = 4;
    ERR(kvx_alloc_create(&p, &a), INVALID_PARAM);
    p.field_mask = KVX_ALLOC_PARAM_FIELD_BLOCK_COUNT;
    p.block_count = 0;
    ERR(kvx_alloc_create(&p, &a), INVALID_PARAM);
    p.block_count = KVX_ALLOC_BLOCK_COUNT_MAX + 1;
    ERR(kvx_alloc_create(&p, &a), INVALID_PARAM);
    p.block_count = UINT32_MAX;
    ERR(kvx_alloc_create(&p, &a), INVALID_PARAM);
    p.block_count = 8;
    p.field_mask = KVX_ALLOC_PARAM_FIELD_BLOCK_COUNT | (1u << 3);
    ERR(kvx_alloc_create(&p, &a), INVALID_PARAM);
    p.field_mask = KVX_ALLOC_PARAM_FIELD_BLOCK_COUNT | (1ull << 63);
    ERR(kvx_alloc_create(&p, &a), INVALID_PARAM);
    p.field_mask =
        KVX_ALLOC_PARAM_FIELD_BLOCK_COUNT | KVX_ALLOC_PARAM_FIELD_MAX_LEASES;
    p.max_leases = 0;
    ERR(kvx_alloc_create(&p, &a), INVALID_PARAM);
    /* Written only on success. */
    CU_ASSERT_PTR_EQUAL(a, (kvx_alloc_h)&p);
}

static void test_alloc_create_defaults(void)
{
    kvx_alloc_params_t p = {
        .field_mask = KVX_ALLOC_PARAM_FIELD_BLOCK_COUNT,
        .block_count = 4,
    };
    kvx_alloc_h a = NULL;
    kvx_alloc_attr_t attr;
    kvx_block_info_t info;
    kvx_block_ref_t refs[4];
    kvx_lease_id_t lease;

    OK_FATAL(kvx_alloc_create(&p, &a));
    attr = battr(a);
    CU_ASSERT_EQUAL(attr.block_count, 4);
    CU_ASSERT_EQUAL(attr.n_free, 4);
    CU_ASSERT_EQUAL(attr.n_reserved + attr.n_ready + attr.n_cached +
                        attr.n_fenced + attr.n_keys,
                    0);
    CU_ASSERT_EQUAL(attr.leases_active + attr.leases_fenced, 0);
    CU_ASSERT_EQUAL(attr.evictions + attr.expirations, 0);
    for (uint32_t b = 0; b < 4; b++) {
        info = binfo(a, b);
        CU_ASSERT_EQUAL(info.state, KVX_BLOCK_FREE);
        CU_ASSERT_EQUAL(info.gen, 1);
        CU_ASSERT_EQUAL(info.pins, 0);
        CU_ASSERT_EQUAL(info.keyed, 0);
        CU_ASSERT_EQUAL(info.lease, 0);
    }
    /* Default clock is CLOCK_MONOTONIC. */
    ERR(kvx_alloc_reserve(a, 1, 1, &lease, refs), TIMEOUT);
    OK(kvx_alloc_reserve(a, 4, kvx_clock_monotonic_ns(NULL) + 1000000000ull,
                         &lease, refs));
    /* Default max_leases = block_count: 4 leases of one block fit. */
    OK(kvx_alloc_lease_abort(a, lease));
    OK(kvx_alloc_lease_unfence(a, lease));
    for (int i = 0; i < 4; i++) {
        OK(kvx_alloc_reserve(a, 1, kvx_clock_monotonic_ns(NULL) + 1000000000ull,
                             &lease, refs));
    }
    kvx_alloc_destroy(a);

    /* The clock bit with a NULL clock also selects the default. */
    p.field_mask |= KVX_ALLOC_PARAM_FIELD_CLOCK;
    p.clock = NULL;
    OK_FATAL(kvx_alloc_create(&p, &a));
    ERR(kvx_alloc_reserve(a, 1, 1, &lease, refs), TIMEOUT);
    kvx_alloc_destroy(a);
    kvx_alloc_destroy(NULL);
}

static void test_alloc_create_max_leases_huge(void)
{
    /* More lease slots than blocks can never be used: no table that big. */
    kvx_alloc_h a = mk_alloc(4, UINT32_MAX);
    kvx_block_ref_t ref;
    kvx_lease_id_t lease;

    for (int i = 0; i < 4; i++) {
        OK(kvx_alloc_reserve(a, 1, LATER, &lease, &ref));
    }
    ERR(kvx_alloc_reserve(a, 1, LATER, &lease, &ref), NO_SPACE);
    kvx_alloc_destroy(a);
}

static void test_alloc_null_handle(void)
{
    kvx_block_key_t key = key_of(1);
    kvx_block_ref_t ref = {0, 1};
    kvx_alloc_attr_t attr;
    kvx_block_info_t info;
    kvx_lease_id_t lease;
    uint64_t deadline;
    uint32_t n;
    uint8_t hit;

    ERR(kvx_alloc_reserve(NULL, 1, 5, &lease, &ref), INVALID_PARAM);
    ERR(kvx_alloc_reserve_keyed(NULL, &key, 1, 5, &lease, &ref, &hit, &n),
        INVALID_PARAM);
    ERR(kvx_alloc_lease_commit(NULL, 1), INVALID_PARAM);
    ERR(kvx_alloc_lease_abort(NULL, 1), INVALID_PARAM);
    ERR(kvx_alloc_lease_unfence(NULL, 1), INVALID_PARAM);
    ERR(kvx_alloc_lease_extend(NULL, 1, 5), INVALID_PARAM);
    ERR(kvx_alloc_expire(NULL, NULL, NULL, &n), INVALID_PARAM);
    ERR(kvx_alloc_next_deadline(NULL, &deadline), INVALID_PARAM);
    ERR(kvx_alloc_pin(NULL, ref), INVALID_PARAM);
    ERR(kvx_alloc_unpin(NULL, ref), INVALID_PARAM);
    ERR(kvx_alloc_set_key(NULL, ref, &key), INVALID_PARAM);
    ERR(kvx_alloc_lookup(NULL, &key, 1, &n, NULL), INVALID_PARAM);
    ERR(kvx_alloc_block_query(NULL, 0, &info), INVALID_PARAM);
    ERR(kvx_alloc_query(NULL, &attr), INVALID_PARAM);
}

static void test_alloc_reserve_invalid(void)
{
    kvx_alloc_h a = mk_alloc(4, 0);
    kvx_block_ref_t refs[5];
    kvx_lease_id_t lease = 77;

    ERR(kvx_alloc_reserve(a, 1, LATER, NULL, refs), INVALID_PARAM);
    ERR(kvx_alloc_reserve(a, 1, LATER, &lease, NULL), INVALID_PARAM);
    ERR(kvx_alloc_reserve(a, 0, LATER, &lease, refs), INVALID_PARAM);
    ERR(kvx_alloc_reserve(a, 5, LATER, &lease, refs), INVALID_PARAM);
    ERR(kvx_alloc_reserve(a, UINT32_MAX, LATER, &lease, refs), INVALID_PARAM);
    CU_ASSERT_EQUAL(lease, 77);
    CHECK_COUNTS(a, 4, 0, 0, 0, 0);
    CU_ASSERT_EQUAL(battr(a).leases_active, 0);
    kvx_alloc_destroy(a);
}

static void test_alloc_reserve_basic(void)
{
    kvx_alloc_h a = mk_alloc(8, 0);
    kvx_block_ref_t refs[4];
    kvx_lease_id_t lease = 0;
    kvx_block_info_t info;

    OK_FATAL(kvx_alloc_reserve(a, 4, LATER, &lease, refs));
    CU_ASSERT_NOT_EQUAL(lease, 0);
    for (uint32_t i = 0; i < 4; i++) {
        /* A fresh allocator hands out one ascending run. */
        CU_ASSERT_EQUAL(refs[i].block, i);
        CU_ASSERT_EQUAL(refs[i].gen, 1);
        info = binfo(a, refs[i].block);
        CU_ASSERT_EQUAL(info.state, KVX_BLOCK_RESERVED);
        CU_ASSERT_EQUAL(info.lease, lease);
        CU_ASSERT_EQUAL(info.pins, 0);
    }
    CHECK_COUNTS(a, 4, 4, 0, 0, 0);
    CU_ASSERT_EQUAL(battr(a).leases_active, 1);
    kvx_alloc_destroy(a);
}

static void test_alloc_reserve_deadline_not_future(void)
{
    kvx_alloc_h a = mk_alloc(4, 0);
    kvx_block_ref_t refs[1];
    kvx_lease_id_t lease = 77;

    ERR(kvx_alloc_reserve(a, 1, fake_now, &lease, refs), TIMEOUT);
    ERR(kvx_alloc_reserve(a, 1, fake_now - 1, &lease, refs), TIMEOUT);
    ERR(kvx_alloc_reserve(a, 1, 0, &lease, refs), TIMEOUT);
    CU_ASSERT_EQUAL(lease, 77);
    CHECK_COUNTS(a, 4, 0, 0, 0, 0);
    OK(kvx_alloc_reserve(a, 1, fake_now + 1, &lease, refs));
    kvx_alloc_destroy(a);
}

static void test_alloc_reserve_no_space_changes_nothing(void)
{
    kvx_alloc_h a = mk_alloc(6, 0);
    kvx_block_ref_t cached[2], ready[2], refs[6];
    kvx_lease_id_t lease, lease2 = 77;

    mk_cached(a, 100, 2, cached);
    mk_ready(a, 2, ready);
    OK(kvx_alloc_reserve(a, 1, LATER, &lease, refs));
    CHECK_COUNTS(a, 1, 1, 2, 2, 0);
    /* 1 free + 2 cached = 3 available. */
    ERR(kvx_alloc_reserve(a, 4, LATER, &lease2, refs), NO_SPACE);
    CU_ASSERT_EQUAL(lease2, 77);
    CHECK_COUNTS(a, 1, 1, 2, 2, 0);
    CU_ASSERT_EQUAL(battr(a).evictions, 0);
    CU_ASSERT_EQUAL(battr(a).n_keys, 2);
    CU_ASSERT_EQUAL(battr(a).leases_active, 1);
    CU_ASSERT_EQUAL(n_found(a, 100), 1);
    CU_ASSERT_EQUAL(n_found(a, 101), 1);
    CHECK_BLOCK(a, cached[0].block, KVX_BLOCK_CACHED, 1, 0);
    /* Exactly 3 fits, evicting both cached blocks. */
    OK(kvx_alloc_reserve(a, 3, LATER, &lease2, refs));
    CHECK_COUNTS(a, 0, 4, 2, 0, 0);
    CU_ASSERT_EQUAL(battr(a).evictions, 2);
    ERR(kvx_alloc_reserve(a, 1, LATER, &lease2, refs), NO_SPACE);
    kvx_alloc_destroy(a);
}

static void test_alloc_reserve_no_lease_slot(void)
{
    kvx_alloc_h a = mk_alloc(8, 2);
    kvx_block_ref_t refs[2];
    kvx_lease_id_t l1, l2, l3 = 77;

    OK(kvx_alloc_reserve(a, 1, LATER, &l1, refs));
    OK(kvx_alloc_reserve(a, 1, LATER, &l2, refs));
    ERR(kvx_alloc_reserve(a, 1, LATER, &l3, refs), NO_SPACE);
    CU_ASSERT_EQUAL(l3, 77);
    CHECK_COUNTS(a, 6, 2, 0, 0, 0);
    /* A fenced lease still holds its slot until unfenced. */
    OK(kvx_alloc_lease_abort(a, l1));
    ERR(kvx_alloc_reserve(a, 1, LATER, &l3, refs), NO_SPACE);
    OK(kvx_alloc_lease_unfence(a, l1));
    OK(kvx_alloc_reserve(a, 1, LATER, &l3, refs));
    OK(kvx_alloc_lease_commit(a, l2));
    OK(kvx_alloc_reserve(a, 2, LATER, &l1, refs));
    kvx_alloc_destroy(a);
}

static void test_alloc_evict_lru_order(void)
{
    kvx_alloc_h a = mk_alloc(4, 0);
    kvx_block_key_t keys[4];
    kvx_block_ref_t refs[4], r[4];
    kvx_lease_id_t lease;
    uint8_t hit[4];

    for (uint32_t i = 0; i < 4; i++) {
        keys[i] = key_of(10 + i);
    }
    OK_FATAL(
        kvx_alloc_reserve_keyed(a, keys, 4, LATER, &lease, refs, hit, NULL));
    OK_FATAL(kvx_alloc_lease_commit(a, lease));
    /* Release order 2, 0, 3, 1: that is the LRU order. */
    OK(kvx_alloc_unpin(a, refs[2]));
    OK(kvx_alloc_unpin(a, refs[0]));
    OK(kvx_alloc_unpin(a, refs[3]));
    OK(kvx_alloc_unpin(a, refs[1]));
    /* Touching 2 again (pin + unpin) makes it most recently used. */
    OK(kvx_alloc_pin(a, refs[2]));
    OK(kvx_alloc_unpin(a, refs[2]));
    CHECK_COUNTS(a, 0, 0, 0, 4, 0);

    OK_FATAL(kvx_alloc_reserve(a, 1, LATER, &lease, r));
    CU_ASSERT_EQUAL(r[0].block, refs[0].block);
    CU_ASSERT_EQUAL(r[0].gen, refs[0].gen + 1);
    CU_ASSERT_EQUAL(n_found(a, 10), 0);
    CU_ASSERT_EQUAL(battr(a).evictions, 1);
    CU_ASSERT_EQUAL(battr(a).n_keys, 3);
    ERR(kvx_alloc_pin(a, refs[0]), STALE_HANDLE);

    OK_FATAL(kvx_alloc_reserve(a, 2, LATER, &lease, r));
    CU_ASSERT_EQUAL(r[0].block, refs[3].block);
    CU_ASSERT_EQUAL(r[1].block, refs[1].block);
    CU_ASSERT_EQUAL(n_found(a, 12), 1);
    /* The last cached block, pinned, is no longer evictable. */
    OK(kvx_alloc_pin(a, refs[2]));
    ERR(kvx_alloc_reserve(a, 1, LATER, &lease, r), NO_SPACE);
    CHECK_COUNTS(a, 0, 3, 1, 0, 0);
    CU_ASSERT_EQUAL(battr(a).evictions, 3);
    kvx_alloc_destroy(a);
}

static void test_alloc_evict_only_when_no_free(void)
{
    kvx_alloc_h a = mk_alloc(4, 0);
    kvx_block_ref_t cached[2], r[3];
    kvx_lease_id_t lease;

    mk_cached(a, 1, 2, cached);
    OK_FATAL(kvx_alloc_reserve(a, 2, LATER, &lease, r));
    CU_ASSERT_EQUAL(battr(a).evictions, 0);
    CHECK_COUNTS(a, 0, 2, 0, 2, 0);
    OK(kvx_alloc_lease_abort(a, lease));
    OK(kvx_alloc_lease_unfence(a, lease));
    /* 2 free then 1 eviction, the free ones first in the refs. */
    OK_FATAL(kvx_alloc_reserve(a, 3, LATER, &lease, r));
    CU_ASSERT_EQUAL(battr(a).evictions, 1);
    CU_ASSERT_EQUAL(r[2].block, cached[0].block);
    CU_ASSERT_EQUAL(n_found(a, 2), 1);
    kvx_alloc_destroy(a);
}

static void test_alloc_freed_run_reused_in_order(void)
{
    kvx_alloc_h a = mk_alloc(8, 0);
    kvx_block_ref_t r[3];
    kvx_lease_id_t lease;

    OK_FATAL(kvx_alloc_reserve(a, 3, LATER, &lease, r));
    OK(kvx_alloc_lease_abort(a, lease));
    OK(kvx_alloc_lease_unfence(a, lease));
    OK_FATAL(kvx_alloc_reserve(a, 3, LATER, &lease, r));
    for (uint32_t i = 0; i < 3; i++) {
        CU_ASSERT_EQUAL(r[i].block, i);
        CU_ASSERT_EQUAL(r[i].gen, 2);
    }
    kvx_alloc_destroy(a);
}

static void test_alloc_query_invalid(void)
{
    kvx_alloc_h a = mk_alloc(2, 0);

    ERR(kvx_alloc_query(a, NULL), INVALID_PARAM);
    kvx_alloc_destroy(a);
}

static void test_alloc_state_string(void)
{
    CU_ASSERT_STRING_EQUAL(kvx_block_state_string(KVX_BLOCK_FREE), "free");
    CU_ASSERT_STRING_EQUAL(kvx_block_state_string(KVX_BLOCK_RESERVED),
                           "reserved");
    CU_ASSERT_STRING_EQUAL(kvx_block_state_string(KVX_BLOCK_READY), "ready");
    CU_ASSERT_STRING_EQUAL(kvx_block_state_string(KVX_BLOCK_CACHED), "cached");
    CU_ASSERT_STRING_EQUAL(kvx_block_state_string(KVX_BLOCK_FENCED), "fenced");
    CU_ASSERT_STRING_EQUAL(kvx_block_state_string((kvx_block_state_t)5), "?");
    CU_ASSERT_STRING_EQUAL(kvx_block_state_string((kvx_block_state_t)-1), "?");
}

/* ---- blocks: pins, keys, references ------------------------------------- */

static void test_block_query_invalid(void)
{
    kvx_alloc_h a = mk_alloc(4, 0);
    kvx_block_info_t info;

    ERR(kvx_alloc_block_query(a, 0, NULL), INVALID_PARAM);
    ERR(kvx_alloc_block_query(a, 4, &info), OUT_OF_RANGE);
    ERR(kvx_alloc_block_query(a, UINT32_MAX, &info), OUT_OF_RANGE);
    kvx_alloc_destroy(a);
}

static void test_block_pin_unpin(void)
{
    kvx_alloc_h a = mk_alloc(4, 0);
    kvx_block_ref_t r[1];

    mk_ready(a, 1, r);
    CHECK_BLOCK(a, r[0].block, KVX_BLOCK_READY, 1, 1);
    CU_ASSERT_EQUAL(binfo(a, r[0].block).lease, 0);
    OK(kvx_alloc_pin(a, r[0]));
    OK(kvx_alloc_pin(a, r[0]));
    CHECK_BLOCK(a, r[0].block, KVX_BLOCK_READY, 1, 3);
    OK(kvx_alloc_unpin(a, r[0]));
    OK(kvx_alloc_unpin(a, r[0]));
    CHECK_BLOCK(a, r[0].block, KVX_BLOCK_READY, 1, 1);
    /* Last pin of an unkeyed block: FREE with a new generation. */
    OK(kvx_alloc_unpin(a, r[0]));
    CHECK_BLOCK(a, r[0].block, KVX_BLOCK_FREE, 2, 0);
    CHECK_COUNTS(a, 4, 0, 0, 0, 0);
    kvx_alloc_destroy(a);
}

static void test_block_unpin_double_release(void)
{
    kvx_alloc_h a = mk_alloc(4, 0);
    kvx_block_ref_t r[1], c[1];

    /* Unkeyed: the block went FREE, the reference is stale. */
    mk_ready(a, 1, r);
    OK(kvx_alloc_unpin(a, r[0]));
    ERR(kvx_alloc_unpin(a, r[0]), STALE_HANDLE);
    CHECK_BLOCK(a, r[0].block, KVX_BLOCK_FREE, 2, 0);
    /* Keyed: the block is CACHED at the same generation. */
    mk_cached(a, 7, 1, c);
    ERR(kvx_alloc_unpin(a, c[0]), BAD_STATE);
    CHECK_BLOCK(a, c[0].block, KVX_BLOCK_CACHED, c[0].gen, 0);
    /* A current-generation reference to a FREE block. */
    r[0].gen = binfo(a, r[0].block).gen;
    ERR(kvx_alloc_unpin(a, r[0]), BAD_STATE);
    CHECK_COUNTS(a, 3, 0, 0, 1, 0);
    kvx_alloc_destroy(a);
}

static void test_block_pin_bad_state(void)
{
    kvx_alloc_h a = mk_alloc(4, 0);
    kvx_block_ref_t r[2], f = {3, 1};
    kvx_lease_id_t l1, l2;

    OK_FATAL(kvx_alloc_reserve(a, 1, LATER, &l1, &r[0]));
    OK_FATAL(kvx_alloc_reserve(a, 1, LATER, &l2, &r[1]));
    OK(kvx_alloc_lease_abort(a, l2));
    ERR(kvx_alloc_pin(a, f), BAD_STATE);
    ERR(kvx_alloc_pin(a, r[0]), BAD_STATE);
    ERR(kvx_alloc_pin(a, r[1]), BAD_STATE);
    ERR(kvx_alloc_unpin(a, f), BAD_STATE);
    ERR(kvx_alloc_unpin(a, r[0]), BAD_STATE);
    ERR(kvx_alloc_unpin(a, r[1]), BAD_STATE);
    CHECK_BLOCK(a, 3, KVX_BLOCK_FREE, 1, 0);
    CHECK_BLOCK(a, r[0].block, KVX_BLOCK_RESERVED, 1, 0);
    CHECK_BLOCK(a, r[1].block, KVX_BLOCK_FENCED, 1, 0);
    CHECK_COUNTS(a, 2, 1, 0, 0, 1);
    kvx_alloc_destroy(a);
}

static void test_block_ref_out_of_range(void)
{
    kvx_alloc_h a = mk_alloc(4, 0);
    kvx_block_key_t key = key_of(1);
    kvx_block_ref_t bad[] = {{4, 1}, {UINT32_MAX, 1}, {1u << 30, 1}};

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ERR(kvx_alloc_pin(a, bad[i]), OUT_OF_RANGE);
        ERR(kvx_alloc_unpin(a, bad[i]), OUT_OF_RANGE);
        ERR(kvx_alloc_set_key(a, bad[i], &key), OUT_OF_RANGE);
    }
    CHECK_COUNTS(a, 4, 0, 0, 0, 0);
    kvx_alloc_destroy(a);
}

static void test_block_ref_stale(void)
{
    kvx_alloc_h a = mk_alloc(4, 0);
    kvx_block_key_t key = key_of(1);
    kvx_block_ref_t r[1], old, bad;
    uint32_t gens[4];

    mk_ready(a, 1, r);
    old = r[0];
    OK(kvx_alloc_unpin(a, r[0]));
    mk_ready(a, 1, r);
    /* The same block, reused at generation 2. */
    CU_ASSERT_EQUAL(r[0].block, old.block);
    CU_ASSERT_EQUAL(r[0].gen, 2);
    /* Older, newer, never issued. */
    gens[0] = old.gen;
    gens[1] = 3;
    gens[2] = 0;
    gens[3] = UINT32_MAX;
    for (size_t i = 0; i < 4; i++) {
        bad = r[0];
        bad.gen = gens[i];
        ERR(kvx_alloc_pin(a, bad), STALE_HANDLE);
        ERR(kvx_alloc_unpin(a, bad), STALE_HANDLE);
        ERR(kvx_alloc_set_key(a, bad, &key), STALE_HANDLE);
    }
    CHECK_BLOCK(a, r[0].block, KVX_BLOCK_READY, 2, 1);
    CU_ASSERT_EQUAL(battr(a).n_keys, 0);
    kvx_alloc_destroy(a);
}

static void test_block_pin_cached(void)
{
    kvx_alloc_h a = mk_alloc(2, 0);
    kvx_block_ref_t c[2], r[1];
    kvx_lease_id_t lease;

    mk_cached(a, 1, 2, c);
    OK(kvx_alloc_pin(a, c[0]));
    CHECK_BLOCK(a, c[0].block, KVX_BLOCK_READY, c[0].gen, 1);
    CU_ASSERT_EQUAL(binfo(a, c[0].block).keyed, 1);
    CHECK_COUNTS(a, 0, 0, 1, 1, 0);
    /* Only the other one is evictable. */
    ERR(kvx_alloc_reserve(a, 2, LATER, &lease, r), NO_SPACE);
    OK(kvx_alloc_reserve(a, 1, LATER, &lease, r));
    CU_ASSERT_EQUAL(r[0].block, c[1].block);
    CU_ASSERT_EQUAL(n_found(a, 1), 1);
    CU_ASSERT_EQUAL(n_found(a, 2), 0);
    kvx_alloc_destroy(a);
}

static void test_block_pin_overflow(void)
{
    kvx_alloc_h a = mk_alloc(4, 0);
    kvx_block_key_t keys[2] = {key_of(1), key_of(1)};
    kvx_block_ref_t c[1], refs[2];
    kvx_lease_id_t lease = 77;
    uint32_t limit = 0, n_hits;
    kvx_status_t st = KVX_OK;
    uint8_t hit[2];

    mk_cached(a, 1, 1, c);
    /* Pin until the limit: it exists and is at least 65535. */
    while (limit < UINT32_MAX && (st = kvx_alloc_pin(a, c[0])) == KVX_OK) {
        limit++;
    }
    CU_ASSERT_EQUAL_FATAL(st, KVX_ERR_OVERFLOW);
    CU_ASSERT(limit >= 65535);
    CHECK_BLOCK(a, c[0].block, KVX_BLOCK_READY, c[0].gen, limit);
    ERR(kvx_alloc_pin(a, c[0]), OVERFLOW);
    /* A dedupe hit is a pin too: refused, nothing changed. */
    ERR(kvx_alloc_reserve_keyed(a, keys, 1, LATER, &lease, refs, hit, &n_hits),
        OVERFLOW);
    OK(kvx_alloc_unpin(a, c[0]));
    /* One pin left, but the same key twice needs two. */
    ERR(kvx_alloc_reserve_keyed(a, keys, 2, LATER, &lease, refs, hit, &n_hits),
        OVERFLOW);
    CU_ASSERT_EQUAL(lease, 77);
    CHECK_BLOCK(a, c[0].block, KVX_BLOCK_READY, c[0].gen, limit - 1);
    OK(kvx_alloc_reserve_keyed(a, keys, 1, LATER, &lease, refs, hit, &n_hits));
    CU_ASSERT_EQUAL(lease, 0);
    CHECK_BLOCK(a, c[0].block, KVX_BLOCK_READY, c[0].gen, limit);
    CHECK_COUNTS(a, 3, 0, 1, 0, 0);
    kvx_alloc_destroy(a);
}

static void test_block_set_key(void)
{
    kvx_alloc_h a = mk_alloc(6, 0);
    kvx_block_key_t k1 = key_of(1), k2 = key_of(2);
    kvx_block_ref_t r[2], res[1], fen[1], f = {5, 1};
    kvx_lease_id_t l1, l2;
    kvx_block_info_t info;

    mk_ready(a, 2, r);
    ERR(kvx_alloc_set_key(a, r[0], NULL), INVALID_PARAM);
    OK(kvx_alloc_set_key(a, r[0], &k1));
    info = binfo(a, r[0].block);
    CU_ASSERT_EQUAL(info.keyed, 1);
    CU_ASSERT_EQUAL(memcmp(&info.key, &k1, sizeof(k1)), 0);
    CU_ASSERT_EQUAL(battr(a).n_keys, 1);
    CU_ASSERT_EQUAL(n_found(a, 1), 1);
    /* Already keyed (even with another key), or the key is taken. */
    ERR(kvx_alloc_set_key(a, r[0], &k2), BAD_STATE);
    ERR(kvx_alloc_set_key(a, r[0], &k1), BAD_STATE);
    ERR(kvx_alloc_set_key(a, r[1], &k1), EXISTS);
    CU_ASSERT_EQUAL(binfo(a, r[1].block).keyed, 0);
    /* Keyed: the last unpin caches it; CACHED cannot take a key. */
    OK(kvx_alloc_unpin(a, r[0]));
    CHECK_BLOCK(a, r[0].block, KVX_BLOCK_CACHED, 1, 0);
    ERR(kvx_alloc_set_key(a, r[0], &k2), BAD_STATE);
    /* Neither can FREE, RESERVED or FENCED blocks. */
    OK(kvx_alloc_reserve(a, 1, LATER, &l1, res));
    OK(kvx_alloc_reserve(a, 1, LATER, &l2, fen));
    OK(kvx_alloc_lease_abort(a, l2));
    ERR(kvx_alloc_set_key(a, f, &k2), BAD_STATE);
    ERR(kvx_alloc_set_key(a, res[0], &k2), BAD_STATE);
    ERR(kvx_alloc_set_key(a, fen[0], &k2), BAD_STATE);
    CU_ASSERT_EQUAL(battr(a).n_keys, 1);
    CU_ASSERT_EQUAL(n_found(a, 2), 0);
    kvx_alloc_destroy(a);
}

/* ---- dedupe: keyed reservations and lookup ------------------------------ */

static void test_keyed_reserve_invalid(void)
{
    kvx_alloc_h a = mk_alloc(4, 0);
    kvx_block_key_t keys[5] = {key_of(1), key_of(2), key_of(3), key_of(4),
                               key_of(5)};
    kvx_block_ref_t refs[5];
    kvx_lease_id_t lease = 77;
    uint8_t hit[5];

    ERR(kvx_alloc_reserve_keyed(a, NULL, 1, LATER, &lease, refs, hit, NULL),
        INVALID_PARAM);
    ERR(kvx_alloc_reserve_keyed(a, keys, 1, LATER, NULL, refs, hit, NULL),
        INVALID_PARAM);
    ERR(kvx_alloc_reserve_keyed(a, keys, 1, LATER, &lease, NULL, hit, NULL),
        INVALID_PARAM);
    ERR(kvx_alloc_reserve_keyed(a, keys, 1, LATER, &lease, refs, NULL, NULL),
        INVALID_PARAM);
    ERR(kvx_alloc_reserve_keyed(a, keys, 0, LATER, &lease, refs, hit, NULL),
        INVALID_PARAM);
    ERR(kvx_alloc_reserve_keyed(a, keys, 5, LATER, &lease, refs, hit, NULL),
        INVALID_PARAM);
    ERR(kvx_alloc_reserve_keyed(a, keys, UINT32_MAX, LATER, &lease, refs, hit,
                                NULL),
        INVALID_PARAM);
    /* A miss with a deadline not in the future. */
    ERR(kvx_alloc_reserve_keyed(a, keys, 1, fake_now, &lease, refs, hit, NULL),
        TIMEOUT);
    CU_ASSERT_EQUAL(lease, 77);
    CHECK_COUNTS(a, 4, 0, 0, 0, 0);
    kvx_alloc_destroy(a);
}

static void test_keyed_reserve_miss_then_hit(void)
{
    kvx_alloc_h a = mk_alloc(8, 0);
    kvx_block_key_t keys[4] = {key_of(1), key_of(2), key_of(3), key_of(4)};
    kvx_block_ref_t c[3], refs[4], found[4];
    kvx_lease_id_t lease = 0;
    uint32_t n_hits = 99, n = 0;
    uint8_t hit[4];
    kvx_block_info_t info;

    mk_cached(a, 1, 3, c);
    CU_ASSERT_EQUAL(battr(a).n_keys, 3);
    /* 1 stays cached, 2 is READY (pinned), 3 CACHED; 4 is new. */
    OK(kvx_alloc_pin(a, c[1]));
    OK_FATAL(
        kvx_alloc_reserve_keyed(a, keys, 4, LATER, &lease, refs, hit, &n_hits));
    CU_ASSERT_EQUAL(n_hits, 3);
    CU_ASSERT_NOT_EQUAL(lease, 0);
    for (int i = 0; i < 3; i++) {
        CU_ASSERT_EQUAL(hit[i], 1);
        CU_ASSERT_EQUAL(refs[i].block, c[i].block);
        CU_ASSERT_EQUAL(refs[i].gen, c[i].gen);
        CHECK_BLOCK(a, c[i].block, KVX_BLOCK_READY, c[i].gen, i == 1 ? 2u : 1u);
    }
    CU_ASSERT_EQUAL(hit[3], 0);
    info = binfo(a, refs[3].block);
    CU_ASSERT_EQUAL(info.state, KVX_BLOCK_RESERVED);
    CU_ASSERT_EQUAL(info.lease, lease);
    CU_ASSERT_EQUAL(info.keyed, 0);
    /* The pending key is not visible until commit. */
    OK(kvx_alloc_lookup(a, keys, 4, &n, found));
    CU_ASSERT_EQUAL(n, 3);
    OK(kvx_alloc_lease_commit(a, lease));
    OK(kvx_alloc_lookup(a, keys, 4, &n, found));
    CU_ASSERT_EQUAL(n, 4);
    CU_ASSERT_EQUAL(found[3].block, refs[3].block);
    info = binfo(a, refs[3].block);
    CU_ASSERT_EQUAL(info.keyed, 1);
    CU_ASSERT_EQUAL(memcmp(&info.key, &keys[3], sizeof(keys[3])), 0);
    CU_ASSERT_EQUAL(battr(a).n_keys, 4);
    CHECK_COUNTS(a, 4, 0, 4, 0, 0);
    kvx_alloc_destroy(a);
}

static void test_keyed_reserve_all_hit(void)
{
    kvx_alloc_h a = mk_alloc(4, 0);
    kvx_block_key_t keys[2] = {key_of(1), key_of(2)};
    kvx_block_ref_t c[2], refs[2];
    kvx_lease_id_t lease = 77;
    uint8_t hit[2];

    mk_cached(a, 1, 2, c);
    /* No lease, so the deadline does not matter (even 0), n_hits_p NULL. */
    OK(kvx_alloc_reserve_keyed(a, keys, 2, 0, &lease, refs, hit, NULL));
    CU_ASSERT_EQUAL(lease, 0);
    CU_ASSERT(hit[0] == 1 && hit[1] == 1);
    CHECK_COUNTS(a, 2, 0, 2, 0, 0);
    CU_ASSERT_EQUAL(battr(a).leases_active, 0);
    kvx_alloc_destroy(a);
}

static void test_keyed_reserve_duplicate_keys(void)
{
    kvx_alloc_h a = mk_alloc(4, 0);
    kvx_block_key_t aa[2] = {key_of(1), key_of(1)};
    kvx_block_key_t bb[2] = {key_of(2), key_of(2)};
    kvx_block_ref_t c[1], refs[2];
    kvx_lease_id_t lease;
    uint32_t n_hits;
    uint8_t hit[2];

    /* A cached key twice: two pins on one block. */
    mk_cached(a, 1, 1, c);
    OK(kvx_alloc_reserve_keyed(a, aa, 2, LATER, &lease, refs, hit, &n_hits));
    CU_ASSERT_EQUAL(n_hits, 2);
    CU_ASSERT_EQUAL(refs[0].block, c[0].block);
    CU_ASSERT_EQUAL(refs[1].block, c[0].block);
    CHECK_BLOCK(a, c[0].block, KVX_BLOCK_READY, c[0].gen, 2);
    /* A missing key twice: two blocks; at commit the first one gets it. */
    OK_FATAL(
        kvx_alloc_reserve_keyed(a, bb, 2, LATER, &lease, refs, hit, &n_hits));
    CU_ASSERT_EQUAL(n_hits, 0);
    CU_ASSERT_NOT_EQUAL(refs[0].block, refs[1].block);
    OK(kvx_alloc_lease_commit(a, lease));
    CU_ASSERT_EQUAL(binfo(a, refs[0].block).keyed, 1);
    CU_ASSERT_EQUAL(binfo(a, refs[1].block).keyed, 0);
    CU_ASSERT_EQUAL(battr(a).n_keys, 2);
    kvx_alloc_destroy(a);
}

static void test_keyed_reserve_no_space_counts_hits(void)
{
    kvx_alloc_h a = mk_alloc(4, 0);
    kvx_block_key_t k[4] = {key_of(1), key_of(1), key_of(8), key_of(9)};
    kvx_block_key_t k3[4] = {key_of(1), key_of(7), key_of(8), key_of(9)};
    kvx_block_ref_t c[3], refs[4];
    kvx_lease_id_t lease = 77;
    uint8_t hit[4];

    /* Blocks: 1, 2, 3 cached (LRU first), one free. 2 gets pinned. */
    mk_cached(a, 1, 3, c);
    OK(kvx_alloc_pin(a, c[1]));
    /* Hit on 1 removes it from the evictable; 3 misses > 1 free + 1. */
    ERR(kvx_alloc_reserve_keyed(a, k3, 4, LATER, &lease, refs, hit, NULL),
        NO_SPACE);
    CU_ASSERT_EQUAL(lease, 77);
    CHECK_COUNTS(a, 1, 0, 1, 2, 0);
    CHECK_BLOCK(a, c[0].block, KVX_BLOCK_CACHED, c[0].gen, 0);
    CU_ASSERT_EQUAL(battr(a).evictions, 0);
    /* Key 1 twice counts once: 2 misses fit in 1 free + block 3. The hit
     * is not evicted even though it was least recently used. */
    OK_FATAL(kvx_alloc_reserve_keyed(a, k, 4, LATER, &lease, refs, hit, NULL));
    CU_ASSERT_EQUAL(refs[0].block, c[0].block);
    CU_ASSERT_EQUAL(refs[1].block, c[0].block);
    CHECK_BLOCK(a, c[0].block, KVX_BLOCK_READY, c[0].gen, 2);
    CU_ASSERT_EQUAL(refs[3].block, c[2].block);
    CU_ASSERT_EQUAL(refs[3].gen, c[2].gen + 1);
    CU_ASSERT_EQUAL(battr(a).evictions, 1);
    CU_ASSERT_EQUAL(n_found(a, 3), 0);
    CHECK_COUNTS(a, 0, 2, 2, 0, 0);
    kvx_alloc_destroy(a);
}

static void test_keyed_reserve_failure_leaves_no_marks(void)
{
    kvx_alloc_h a = mk_alloc(2, 0);
    kvx_block_key_t k[2] = {key_of(1), key_of(5)};
    kvx_block_ref_t c[1], refs[2];
    kvx_lease_id_t lease;
    uint8_t hit[2];

    mk_cached(a, 1, 1, c);
    /* Repeated failures (timeout, no space) must not leave the hit
     * counted: afterwards the same request succeeds. */
    for (int i = 0; i < 3; i++) {
        ERR(kvx_alloc_reserve_keyed(a, k, 2, fake_now, &lease, refs, hit, NULL),
            TIMEOUT);
    }
    OK(kvx_alloc_reserve(a, 1, LATER, &lease, refs));
    ERR(kvx_alloc_reserve_keyed(a, k, 2, LATER, &lease, refs, hit, NULL),
        NO_SPACE);
    OK(kvx_alloc_lease_abort(a, lease));
    OK(kvx_alloc_lease_unfence(a, lease));
    OK(kvx_alloc_reserve_keyed(a, k, 2, LATER, &lease, refs, hit, NULL));
    CHECK_BLOCK(a, c[0].block, KVX_BLOCK_READY, c[0].gen, 1);
    kvx_alloc_destroy(a);
}

static void test_keyed_commit_key_collision(void)
{
    kvx_alloc_h a = mk_alloc(4, 0);
    kvx_block_key_t k = key_of(3);
    kvx_block_ref_t r1[1], r2[1], r3[1];
    kvx_lease_id_t l1, l2;
    uint8_t hit[1];

    /* Two transfers of the same block race: both miss. */
    OK(kvx_alloc_reserve_keyed(a, &k, 1, LATER, &l1, r1, hit, NULL));
    OK(kvx_alloc_reserve_keyed(a, &k, 1, LATER, &l2, r2, hit, NULL));
    CU_ASSERT_EQUAL(hit[0], 0);
    OK(kvx_alloc_lease_commit(a, l2));
    OK(kvx_alloc_lease_commit(a, l1));
    CU_ASSERT_EQUAL(binfo(a, r2[0].block).keyed, 1);
    CU_ASSERT_EQUAL(binfo(a, r1[0].block).keyed, 0);
    CU_ASSERT_EQUAL(battr(a).n_keys, 1);
    /* The loser is an ordinary unkeyed block: its last unpin frees it. */
    OK(kvx_alloc_unpin(a, r1[0]));
    CHECK_BLOCK(a, r1[0].block, KVX_BLOCK_FREE, r1[0].gen + 1, 0);
    /* A key taken by set_key meanwhile is skipped the same way. */
    k = key_of(4);
    OK(kvx_alloc_reserve_keyed(a, &k, 1, LATER, &l1, r1, hit, NULL));
    mk_ready(a, 1, r3);
    OK(kvx_alloc_set_key(a, r3[0], &k));
    OK(kvx_alloc_lease_commit(a, l1));
    CU_ASSERT_EQUAL(binfo(a, r1[0].block).keyed, 0);
    CU_ASSERT_EQUAL(binfo(a, r3[0].block).keyed, 1);
    kvx_alloc_destroy(a);
}

static void test_keyed_lookup(void)
{
    kvx_alloc_h a = mk_alloc(4, 0);
    kvx_block_key_t keys[3] = {key_of(1), key_of(7), key_of(2)};
    kvx_block_ref_t c[2], refs[3], r[1];
    kvx_lease_id_t lease;
    uint32_t n = 99;

    mk_cached(a, 1, 2, c);
    ERR(kvx_alloc_lookup(a, NULL, 1, &n, NULL), INVALID_PARAM);
    ERR(kvx_alloc_lookup(a, keys, 1, NULL, NULL), INVALID_PARAM);
    OK(kvx_alloc_lookup(a, keys, 0, &n, refs));
    CU_ASSERT_EQUAL(n, 0);
    /* Leading keys only: 2 is cached but follows a miss. */
    OK(kvx_alloc_lookup(a, keys, 3, &n, refs));
    CU_ASSERT_EQUAL(n, 1);
    CU_ASSERT_EQUAL(refs[0].block, c[0].block);
    CU_ASSERT_EQUAL(refs[0].gen, c[0].gen);
    /* Pins nothing, changes no LRU order: 1 is still evicted first. */
    CHECK_COUNTS(a, 2, 0, 0, 2, 0);
    OK(kvx_alloc_reserve(a, 3, LATER, &lease, refs));
    CU_ASSERT_EQUAL(refs[2].block, c[0].block);
    OK(kvx_alloc_lookup(a, keys, 1, &n, NULL));
    CU_ASSERT_EQUAL(n, 0);
    CU_ASSERT_EQUAL(battr(a).n_keys, 1);
    /* READY keyed blocks are found too. */
    OK(kvx_alloc_pin(a, c[1]));
    OK(kvx_alloc_lookup(a, &keys[2], 1, &n, r));
    CU_ASSERT_EQUAL(n, 1);
    CU_ASSERT_EQUAL(r[0].block, c[1].block);
    kvx_alloc_destroy(a);
}

static const ut_test_t alloc_tests[] = {
    UT_TEST(test_alloc_create_invalid_params),
    UT_TEST(test_alloc_create_defaults),
    UT_TEST(test_alloc_create_max_leases_huge),
    UT_TEST(test_alloc_null_handle),
    UT_TEST(test_alloc_reserve_invalid),
    UT_TEST(test_alloc_reserve_basic),
    UT_TEST(test_alloc_reserve_deadline_not_future),
    UT_TEST(test_alloc_reserve_no_space_changes_nothing),
    UT_TEST(test_alloc_reserve_no_lease_slot),
    UT_TEST(test_alloc_evict_lru_order),
    UT_TEST(test_alloc_evict_only_when_no_free),
    UT_TEST(test_alloc_freed_run_reused_in_order),
    UT_TEST(test_alloc_query_invalid),
    UT_TEST(test_alloc_state_string),
    UT_END,
};

static const ut_test_t block_tests[] = {
    UT_TEST(test_block_query_invalid),
    UT_TEST(test_block_pin_unpin),
    UT_TEST(test_block_unpin_double_release),
    UT_TEST(test_block_pin_bad_state),
    UT_TEST(test_block_ref_out_of_range),
    UT_TEST(test_block_ref_stale),
    UT_TEST(test_block_pin_cached),
    UT_TEST(test_block_pin_overflow),
    UT_TEST(test_block_set_key),
    UT_END,
};

static const ut_test_t keyed_tests[] = {
    UT_TEST(test_keyed_reserve_invalid),
    UT_TEST(test_keyed_reserve_miss_then_hit),
    UT_TEST(test_keyed_reserve_all_hit),
    UT_TEST(test_keyed_reserve_duplicate_keys),
    UT_TEST(test_keyed_reserve_no_space_counts_hits),
    UT_TEST(test_keyed_reserve_failure_leaves_no_marks),
    UT_TEST(test_keyed_commit_key_collision),
    UT_TEST(test_keyed_lookup),
    UT_END,
};

int main(void)
{
    static const ut_suite_t suites[] = {
        {"alloc", alloc_tests},
        {"block", block_tests},
        {"keyed", keyed_tests},
        {NULL, NULL},
    };

    return ut_main(suites);
}
