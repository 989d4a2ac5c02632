/*
 * Helpers shared by the allocator unit tests (test_alloc.c, test_lease.c):
 * status shorthands, an allocator on a fake clock, keys, block and counter
 * checks, and ready-made READY and CACHED blocks. Include once per test
 * binary, after ut.h.
 */
#ifndef KVX_TEST_ALLOC_UT_H
#define KVX_TEST_ALLOC_UT_H

#include "ut.h"

#include <kvx/kvx.h>
#include <string.h>

/* Short forms: most lines below are one call and its expected status. */
#define OK(x) CU_ASSERT_EQUAL((x), KVX_OK)
#define OK_FATAL(x) CU_ASSERT_EQUAL_FATAL((x), KVX_OK)
#define ERR(x, e) CU_ASSERT_EQUAL((x), KVX_ERR_##e)

static uint64_t fake_now = 1000;

static inline uint64_t fake_clock(void *arg)
{
    return *(const uint64_t *)arg;
}

/* A deadline comfortably in the future of the fake clock. */
#define LATER (fake_now + 1000000)

static inline kvx_alloc_h mk_alloc(uint32_t blocks, uint32_t max_leases)
{
    kvx_alloc_params_t params = {
        .field_mask =
            KVX_ALLOC_PARAM_FIELD_BLOCK_COUNT | KVX_ALLOC_PARAM_FIELD_CLOCK,
        .block_count = blocks,
        .clock = fake_clock,
        .clock_arg = &fake_now,
    };
    kvx_alloc_h a = NULL;

    if (max_leases != 0) {
        params.field_mask |= KVX_ALLOC_PARAM_FIELD_MAX_LEASES;
        params.max_leases = max_leases;
    }
    fake_now = 1000;
    OK_FATAL(kvx_alloc_create(&params, &a));
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    return a;
}

static inline kvx_block_key_t key_of(uint32_t n)
{
    kvx_block_key_t key;

    memset(&key, 0x5a, sizeof(key));
    memcpy(key.bytes, &n, sizeof(n));
    return key;
}

static inline kvx_block_info_t binfo(kvx_alloc_h a, uint32_t block)
{
    kvx_block_info_t info;

    memset(&info, 0xee, sizeof(info));
    OK(kvx_alloc_block_query(a, block, &info));
    return info;
}

static inline kvx_alloc_attr_t battr(kvx_alloc_h a)
{
    kvx_alloc_attr_t attr;

    memset(&attr, 0xee, sizeof(attr));
    OK(kvx_alloc_query(a, &attr));
    return attr;
}

#define CHECK_COUNTS(a, f, rs, rd, c, fe)                                      \
    do {                                                                       \
        kvx_alloc_attr_t a_ = battr(a);                                        \
        CU_ASSERT_EQUAL(a_.n_free, (f));                                       \
        CU_ASSERT_EQUAL(a_.n_reserved, (rs));                                  \
        CU_ASSERT_EQUAL(a_.n_ready, (rd));                                     \
        CU_ASSERT_EQUAL(a_.n_cached, (c));                                     \
        CU_ASSERT_EQUAL(a_.n_fenced, (fe));                                    \
    } while (0)

#define CHECK_BLOCK(a, b, st, g, p)                                            \
    do {                                                                       \
        kvx_block_info_t i_ = binfo(a, b);                                     \
        CU_ASSERT_EQUAL(i_.state, (st));                                       \
        CU_ASSERT_EQUAL(i_.gen, (g));                                          \
        CU_ASSERT_EQUAL(i_.pins, (p));                                         \
    } while (0)

/* Reserves @n keyed blocks (all misses), commits and unpins them in order:
 * they end CACHED, the first one least recently used. */
static inline void mk_cached(kvx_alloc_h a, uint32_t first_key, uint32_t n,
                             kvx_block_ref_t *refs)
{
    kvx_block_key_t keys[16];
    uint8_t hit[16];
    kvx_lease_id_t lease;
    uint32_t n_hits = 99;

    CU_ASSERT_FATAL(n <= 16);
    for (uint32_t i = 0; i < n; i++) {
        keys[i] = key_of(first_key + i);
    }
    OK_FATAL(
        kvx_alloc_reserve_keyed(a, keys, n, LATER, &lease, refs, hit, &n_hits));
    CU_ASSERT_EQUAL(n_hits, 0);
    OK_FATAL(kvx_alloc_lease_commit(a, lease));
    for (uint32_t i = 0; i < n; i++) {
        OK(kvx_alloc_unpin(a, refs[i]));
    }
}

/* Reserves and commits @n unkeyed blocks: READY with one pin. */
static inline void mk_ready(kvx_alloc_h a, uint32_t n, kvx_block_ref_t *refs)
{
    kvx_lease_id_t lease;

    OK_FATAL(kvx_alloc_reserve(a, n, LATER, &lease, refs));
    OK_FATAL(kvx_alloc_lease_commit(a, lease));
}

static inline uint32_t n_found(kvx_alloc_h a, uint32_t key)
{
    kvx_block_key_t k = key_of(key);
    uint32_t n = 99;

    OK(kvx_alloc_lookup(a, &k, 1, &n, NULL));
    return n;
}

#endif /* KVX_TEST_ALLOC_UT_H */
