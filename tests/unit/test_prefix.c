/* Unit tests for libkvx/prefix.c: the prefix index. */
#include "ut.h"

#include <kvx/kvx.h>
#include <string.h>

#include "prefix_int.h"

static kvx_block_key_t key_of(uint64_t n)
{
    kvx_block_key_t key;

    memset(&key, 0, sizeof(key));
    for (int i = 0; i < 8; i++) {
        key.bytes[i] = (uint8_t)(n >> (8 * i));
    }
    return key;
}

/* xorshift64*: deterministic test randomness. */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545f4914f6cdd1dull;
}

static void test_prefix_create_invalid(void)
{
    kvxi_prefix_t *p = (kvxi_prefix_t *)&p;

    CU_ASSERT_EQUAL(kvxi_prefix_create(16, NULL), KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvxi_prefix_create(0, &p), KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvxi_prefix_create(1, &p), KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvxi_prefix_create(3, &p), KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvxi_prefix_create(3000, &p), KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvxi_prefix_create(0x80000001u, &p), KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvxi_prefix_create(UINT32_MAX, &p), KVX_ERR_INVALID_PARAM);
    /* Written only on success. */
    CU_ASSERT_PTR_EQUAL(p, (kvxi_prefix_t *)&p);
}

static void test_prefix_create_empty(void)
{
    kvxi_prefix_t *p = NULL;
    kvx_block_key_t k = key_of(1);

    CU_ASSERT_EQUAL_FATAL(kvxi_prefix_create(2, &p), KVX_OK);
    CU_ASSERT_EQUAL(kvxi_prefix_count(p), 0);
    CU_ASSERT_EQUAL(kvxi_prefix_capacity(p), 2);
    CU_ASSERT_EQUAL(kvxi_prefix_find(p, &k, NULL), KVX_ERR_NOT_FOUND);
    CU_ASSERT_EQUAL(kvxi_prefix_max_probe(p), 0);
    kvxi_prefix_destroy(p);
    kvxi_prefix_destroy(NULL);
    CU_ASSERT_EQUAL(kvxi_prefix_count(NULL), 0);
    CU_ASSERT_EQUAL(kvxi_prefix_capacity(NULL), 0);
    CU_ASSERT_EQUAL(kvxi_prefix_max_probe(NULL), 0);
}

static void test_prefix_null_args(void)
{
    kvxi_prefix_t *p = NULL;
    kvx_block_key_t k = key_of(1);
    uint32_t v;

    CU_ASSERT_EQUAL_FATAL(kvxi_prefix_create(8, &p), KVX_OK);
    CU_ASSERT_EQUAL(kvxi_prefix_insert(NULL, &k, 1), KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvxi_prefix_insert(p, NULL, 1), KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvxi_prefix_remove(NULL, &k, &v), KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvxi_prefix_remove(p, NULL, &v), KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvxi_prefix_find(NULL, &k, &v), KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvxi_prefix_find(p, NULL, &v), KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvxi_prefix_count(p), 0);
    kvxi_prefix_destroy(p);
}

static void test_prefix_insert_find_remove(void)
{
    kvxi_prefix_t *p = NULL;
    kvx_block_key_t a = key_of(10), b = key_of(11);
    uint32_t v = 0;

    CU_ASSERT_EQUAL_FATAL(kvxi_prefix_create(16, &p), KVX_OK);
    CU_ASSERT_EQUAL(kvxi_prefix_insert(p, &a, 7), KVX_OK);
    CU_ASSERT_EQUAL(kvxi_prefix_insert(p, &b, 0), KVX_OK);
    CU_ASSERT_EQUAL(kvxi_prefix_count(p), 2);
    CU_ASSERT_EQUAL(kvxi_prefix_find(p, &a, &v), KVX_OK);
    CU_ASSERT_EQUAL(v, 7);
    CU_ASSERT_EQUAL(kvxi_prefix_find(p, &b, &v), KVX_OK);
    CU_ASSERT_EQUAL(v, 0);
    CU_ASSERT_EQUAL(kvxi_prefix_find(p, &a, NULL), KVX_OK);

    v = 99;
    CU_ASSERT_EQUAL(kvxi_prefix_remove(p, &a, &v), KVX_OK);
    CU_ASSERT_EQUAL(v, 7);
    CU_ASSERT_EQUAL(kvxi_prefix_count(p), 1);
    CU_ASSERT_EQUAL(kvxi_prefix_find(p, &a, &v), KVX_ERR_NOT_FOUND);
    CU_ASSERT_EQUAL(kvxi_prefix_remove(p, &a, &v), KVX_ERR_NOT_FOUND);
    CU_ASSERT_EQUAL(kvxi_prefix_remove(p, &b, NULL), KVX_OK);
    CU_ASSERT_EQUAL(kvxi_prefix_count(p), 0);
    /* Reinsert after removal. */
    CU_ASSERT_EQUAL(kvxi_prefix_insert(p, &a, 3), KVX_OK);
    CU_ASSERT_EQUAL(kvxi_prefix_find(p, &a, &v), KVX_OK);
    CU_ASSERT_EQUAL(v, 3);
    kvxi_prefix_destroy(p);
}

static void test_prefix_insert_exists(void)
{
    kvxi_prefix_t *p = NULL;
    kvx_block_key_t a = key_of(5);
    uint32_t v = 0;

    CU_ASSERT_EQUAL_FATAL(kvxi_prefix_create(4, &p), KVX_OK);
    CU_ASSERT_EQUAL(kvxi_prefix_insert(p, &a, 1), KVX_OK);
    CU_ASSERT_EQUAL(kvxi_prefix_insert(p, &a, 2), KVX_ERR_EXISTS);
    CU_ASSERT_EQUAL(kvxi_prefix_find(p, &a, &v), KVX_OK);
    CU_ASSERT_EQUAL(v, 1);
    CU_ASSERT_EQUAL(kvxi_prefix_count(p), 1);
    kvxi_prefix_destroy(p);
}

static void test_prefix_insert_value_range(void)
{
    kvxi_prefix_t *p = NULL;
    kvx_block_key_t a = key_of(5);
    uint32_t v = 0;

    CU_ASSERT_EQUAL_FATAL(kvxi_prefix_create(4, &p), KVX_OK);
    CU_ASSERT_EQUAL(kvxi_prefix_insert(p, &a, UINT32_MAX),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvxi_prefix_count(p), 0);
    CU_ASSERT_EQUAL(kvxi_prefix_insert(p, &a, UINT32_MAX - 1), KVX_OK);
    CU_ASSERT_EQUAL(kvxi_prefix_find(p, &a, &v), KVX_OK);
    CU_ASSERT_EQUAL(v, UINT32_MAX - 1);
    kvxi_prefix_destroy(p);
}

static void test_prefix_insert_full(void)
{
    kvxi_prefix_t *p = NULL;
    kvx_block_key_t k;
    uint32_t v;

    CU_ASSERT_EQUAL_FATAL(kvxi_prefix_create(8, &p), KVX_OK);
    for (uint32_t i = 0; i < 7; i++) {
        k = key_of(100 + i);
        CU_ASSERT_EQUAL(kvxi_prefix_insert(p, &k, i), KVX_OK);
    }
    k = key_of(200);
    CU_ASSERT_EQUAL(kvxi_prefix_insert(p, &k, 7), KVX_ERR_NO_SPACE);
    CU_ASSERT_EQUAL(kvxi_prefix_count(p), 7);
    /* A present key still reports EXISTS, and an absent one's probe ends. */
    k = key_of(103);
    CU_ASSERT_EQUAL(kvxi_prefix_insert(p, &k, 9), KVX_ERR_EXISTS);
    k = key_of(200);
    CU_ASSERT_EQUAL(kvxi_prefix_find(p, &k, &v), KVX_ERR_NOT_FOUND);
    CU_ASSERT_EQUAL(kvxi_prefix_remove(p, &k, &v), KVX_ERR_NOT_FOUND);
    for (uint32_t i = 0; i < 7; i++) {
        k = key_of(100 + i);
        CU_ASSERT_EQUAL(kvxi_prefix_find(p, &k, &v), KVX_OK);
        CU_ASSERT_EQUAL(v, i);
    }
    /* Room again after one removal. */
    k = key_of(100);
    CU_ASSERT_EQUAL(kvxi_prefix_remove(p, &k, NULL), KVX_OK);
    k = key_of(200);
    CU_ASSERT_EQUAL(kvxi_prefix_insert(p, &k, 7), KVX_OK);
    kvxi_prefix_destroy(p);
}

/* Builds keys that differ only in a narrow, structured way. */
static kvx_block_key_t key_structured(int kind, uint32_t n)
{
    kvx_block_key_t key;

    memset(&key, 0, sizeof(key));
    switch (kind) {
    case 0: /* little-endian counter in the first bytes */
        memcpy(key.bytes, &n, sizeof(n));
        break;
    case 1: /* counter in the last bytes */
        memcpy(key.bytes + 12, &n, sizeof(n));
        break;
    case 2: /* counter in the middle, constant non-zero background */
        memset(key.bytes, 0xab, sizeof(key.bytes));
        memcpy(key.bytes + 6, &n, sizeof(n));
        break;
    default: /* big-endian counter at the end, multiples of 4096 */
        n *= 4096;
        for (int i = 0; i < 4; i++) {
            key.bytes[15 - i] = (uint8_t)(n >> (8 * i));
        }
        break;
    }
    return key;
}

static void test_prefix_mix_structured_keys(void)
{
    const uint32_t n = 2048, cap = 8192;

    for (int kind = 0; kind < 4; kind++) {
        kvxi_prefix_t *p = NULL;
        kvx_block_key_t k;
        uint32_t v;

        CU_ASSERT_EQUAL_FATAL(kvxi_prefix_create(cap, &p), KVX_OK);
        for (uint32_t i = 0; i < n; i++) {
            k = key_structured(kind, i);
            CU_ASSERT_EQUAL(kvxi_prefix_insert(p, &k, i), KVX_OK);
        }
        CU_ASSERT_EQUAL(kvxi_prefix_count(p), n);
        /* Load 1/4: a well mixed table has runs of a few slots; a poor
         * hash of counters would cluster into runs of hundreds. */
        CU_ASSERT(kvxi_prefix_max_probe(p) < 24);
        for (uint32_t i = 0; i < n; i++) {
            k = key_structured(kind, i);
            CU_ASSERT_EQUAL(kvxi_prefix_find(p, &k, &v), KVX_OK);
            CU_ASSERT_EQUAL(v, i);
        }
        kvxi_prefix_destroy(p);
    }
}

/* Random churn at high load against a plain array: backward-shift deletion
 * must keep every remaining key reachable, including across the wrap. */
static void test_prefix_churn_matches_model(void)
{
    enum { UNIVERSE = 40 };
    static const uint32_t caps[] = {2, 4, 8, 16, 64};
    uint64_t seed = 0x1234567887654321ull;

    for (size_t c = 0; c < sizeof(caps) / sizeof(caps[0]); c++) {
        uint32_t model[UNIVERSE]; /* value + 1, 0 when absent */
        uint32_t cap = caps[c], count = 0, v;
        kvxi_prefix_t *p = NULL;
        kvx_block_key_t k;
        kvx_status_t st;

        memset(model, 0, sizeof(model));
        CU_ASSERT_EQUAL_FATAL(kvxi_prefix_create(cap, &p), KVX_OK);
        for (int op = 0; op < 20000; op++) {
            uint32_t u = (uint32_t)(rng_next(&seed) % UNIVERSE);
            uint32_t val = (uint32_t)(rng_next(&seed) % 1000);

            /* Structured keys collide on home slots in small tables. */
            k = key_structured((int)(u % 4), u);
            if (rng_next(&seed) % 2 == 0) {
                st = kvxi_prefix_insert(p, &k, val);
                if (model[u] != 0) {
                    CU_ASSERT_EQUAL_FATAL(st, KVX_ERR_EXISTS);
                } else if (count == cap - 1) {
                    CU_ASSERT_EQUAL_FATAL(st, KVX_ERR_NO_SPACE);
                } else {
                    CU_ASSERT_EQUAL_FATAL(st, KVX_OK);
                    model[u] = val + 1;
                    count++;
                }
            } else {
                v = UINT32_MAX;
                st = kvxi_prefix_remove(p, &k, &v);
                if (model[u] == 0) {
                    CU_ASSERT_EQUAL_FATAL(st, KVX_ERR_NOT_FOUND);
                } else {
                    CU_ASSERT_EQUAL_FATAL(st, KVX_OK);
                    CU_ASSERT_EQUAL_FATAL(v, model[u] - 1);
                    model[u] = 0;
                    count--;
                }
            }
            CU_ASSERT_EQUAL_FATAL(kvxi_prefix_count(p), count);
            for (uint32_t i = 0; i < UNIVERSE; i++) {
                k = key_structured((int)(i % 4), i);
                st = kvxi_prefix_find(p, &k, &v);
                if (model[i] == 0) {
                    CU_ASSERT_EQUAL_FATAL(st, KVX_ERR_NOT_FOUND);
                } else {
                    CU_ASSERT_EQUAL_FATAL(st, KVX_OK);
                    CU_ASSERT_EQUAL_FATAL(v, model[i] - 1);
                }
            }
        }
        kvxi_prefix_destroy(p);
    }
}

/* After heavy churn a table at low load must not keep long runs (what
 * tombstones would cause). */
static void test_prefix_churn_keeps_probes_short(void)
{
    kvxi_prefix_t *p = NULL;
    uint64_t seed = 42;
    kvx_block_key_t k;

    CU_ASSERT_EQUAL_FATAL(kvxi_prefix_create(1024, &p), KVX_OK);
    for (uint32_t i = 0; i < 1000; i++) {
        k = key_of(i);
        CU_ASSERT_EQUAL(kvxi_prefix_insert(p, &k, i), KVX_OK);
    }
    for (uint32_t i = 0; i < 1000; i++) {
        k = key_of(i);
        CU_ASSERT_EQUAL(kvxi_prefix_remove(p, &k, NULL), KVX_OK);
    }
    CU_ASSERT_EQUAL(kvxi_prefix_count(p), 0);
    CU_ASSERT_EQUAL(kvxi_prefix_max_probe(p), 0);
    for (uint32_t i = 0; i < 256; i++) {
        k = key_of(rng_next(&seed));
        CU_ASSERT_EQUAL(kvxi_prefix_insert(p, &k, i), KVX_OK);
    }
    CU_ASSERT(kvxi_prefix_max_probe(p) < 16);
    kvxi_prefix_destroy(p);
}

static const ut_test_t prefix_tests[] = {
    UT_TEST(test_prefix_create_invalid),
    UT_TEST(test_prefix_create_empty),
    UT_TEST(test_prefix_null_args),
    UT_TEST(test_prefix_insert_find_remove),
    UT_TEST(test_prefix_insert_exists),
    UT_TEST(test_prefix_insert_value_range),
    UT_TEST(test_prefix_insert_full),
    UT_TEST(test_prefix_mix_structured_keys),
    UT_TEST(test_prefix_churn_matches_model),
    UT_TEST(test_prefix_churn_keeps_probes_short),
    UT_END,
};

int main(void)
{
    static const ut_suite_t suites[] = {
        {"prefix", prefix_tests},
        {NULL, NULL},
    };

    return ut_main(suites);
}
