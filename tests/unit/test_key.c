/* Unit tests for libkvx/key.c (the key chain of kvx/key.h). */
#include "ut.h"

#include <kvx/kvx.h>
#include <openssl/evp.h>
#include <string.h>
#include <xxhash.h>

static const uint32_t toks16[16] = {
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
};

static const kvx_key_algo_t algos[] = {
    KVX_KEY_ALGO_XXH3_128,
    KVX_KEY_ALGO_SHA256_CBOR,
};
#define N_ALGOS (sizeof(algos) / sizeof(algos[0]))

static size_t digest_len(kvx_key_algo_t algo)
{
    return algo == KVX_KEY_ALGO_SHA256_CBOR ? 32 : 16;
}

/* Reference hash of hand-written CBOR bytes (not through key.c). */
static void ref_hash(kvx_key_algo_t algo, const uint8_t *cbor, size_t len,
                     uint8_t *out)
{
    if (algo == KVX_KEY_ALGO_SHA256_CBOR) {
        unsigned int n = 0;

        CU_ASSERT_EQUAL_FATAL(
            EVP_Digest(cbor, len, out, &n, EVP_sha256(), NULL), 1);
        CU_ASSERT_EQUAL(n, 32);
    } else {
        XXH128_canonical_t c;

        XXH128_canonicalFromHash(&c, XXH3_128bits(cbor, len));
        memcpy(out, c.digest, 16);
    }
}

static int chain_equal(const kvx_key_chain_t *a, const kvx_key_chain_t *b)
{
    return a->algo == b->algo && a->len == b->len &&
           memcmp(a->parent, b->parent, a->len) == 0;
}

static int key_equal(const kvx_block_key_t *a, const kvx_block_key_t *b)
{
    return memcmp(a->bytes, b->bytes, sizeof(a->bytes)) == 0;
}

static void test_key_chain_seed_deterministic(void)
{
    for (size_t a = 0; a < N_ALGOS; a++) {
        kvx_key_chain_t c1, c2;
        kvx_block_key_t k1, k2;

        CU_ASSERT_EQUAL_FATAL(kvx_key_chain_init(&c1, algos[a], "42"), KVX_OK);
        CU_ASSERT_EQUAL_FATAL(kvx_key_chain_init(&c2, algos[a], "42"), KVX_OK);
        CU_ASSERT_EQUAL(c1.len, digest_len(algos[a]));
        CU_ASSERT(chain_equal(&c1, &c2));
        for (int i = 0; i < 4; i++) {
            CU_ASSERT_EQUAL(kvx_key_chain_next(&c1, toks16, 16, NULL, 0, &k1),
                            KVX_OK);
            CU_ASSERT_EQUAL(kvx_key_chain_next(&c2, toks16, 16, NULL, 0, &k2),
                            KVX_OK);
            CU_ASSERT(key_equal(&k1, &k2));
            CU_ASSERT(chain_equal(&c1, &c2));
            /* The key is the first 16 bytes of the block's digest. */
            CU_ASSERT(memcmp(k1.bytes, c1.parent, 16) == 0);
            CU_ASSERT_EQUAL(c1.len, digest_len(algos[a]));
        }
    }
}

static void test_key_chain_inputs_change_key(void)
{
    static const uint32_t other[16] = {
        1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 17,
    };
    kvx_key_extra_t lora = {.type = KVX_KEY_EXTRA_INT, .i = 1};
    kvx_key_extra_t salt = {.type = KVX_KEY_EXTRA_TEXT, .data = "s", .len = 1};
    kvx_key_extra_t empty = {
        .type = KVX_KEY_EXTRA_TEXT, .data = NULL, .len = 0};
    kvx_key_extra_t bytes = {
        .type = KVX_KEY_EXTRA_BYTES, .data = "s", .len = 1};
    kvx_block_key_t k[8];
    kvx_key_chain_t c;

    for (size_t a = 0; a < N_ALGOS; a++) {
        CU_ASSERT_EQUAL(kvx_key_chain_init(&c, algos[a], "0"), KVX_OK);
        kvx_key_chain_next(&c, toks16, 16, NULL, 0, &k[0]);
        CU_ASSERT_EQUAL(kvx_key_chain_init(&c, algos[a], "1"), KVX_OK);
        kvx_key_chain_next(&c, toks16, 16, NULL, 0, &k[1]);
        CU_ASSERT_EQUAL(kvx_key_chain_init(&c, algos[a], "0"), KVX_OK);
        kvx_key_chain_next(&c, other, 16, NULL, 0, &k[2]);
        CU_ASSERT_EQUAL(kvx_key_chain_init(&c, algos[a], "0"), KVX_OK);
        kvx_key_chain_next(&c, toks16, 16, &lora, 1, &k[3]);
        CU_ASSERT_EQUAL(kvx_key_chain_init(&c, algos[a], "0"), KVX_OK);
        kvx_key_chain_next(&c, toks16, 16, &salt, 1, &k[4]);
        CU_ASSERT_EQUAL(kvx_key_chain_init(&c, algos[a], "0"), KVX_OK);
        kvx_key_chain_next(&c, toks16, 16, &empty, 1, &k[5]);
        CU_ASSERT_EQUAL(kvx_key_chain_init(&c, algos[a], "0"), KVX_OK);
        kvx_key_chain_next(&c, toks16, 16, &bytes, 1, &k[6]);
        CU_ASSERT_EQUAL(kvx_key_chain_init(&c, algos[a], "0"), KVX_OK);
        kvx_key_chain_next(&c, toks16, 15, NULL, 0, &k[7]);
        for (int i = 0; i < 8; i++) {
            for (int j = 0; j < i; j++) {
                CU_ASSERT(!key_equal(&k[i], &k[j]));
            }
        }
    }
}

static void test_key_chain_algos_differ(void)
{
    kvx_key_chain_t x, s;

    CU_ASSERT_EQUAL(kvx_key_chain_init(&x, KVX_KEY_ALGO_XXH3_128, "0"), KVX_OK);
    CU_ASSERT_EQUAL(kvx_key_chain_init(&s, KVX_KEY_ALGO_SHA256_CBOR, "0"),
                    KVX_OK);
    CU_ASSERT_EQUAL(x.len, 16);
    CU_ASSERT_EQUAL(s.len, 32);
    CU_ASSERT(memcmp(x.parent, s.parent, 16) != 0);
}

static void test_key_chain_random_root(void)
{
    for (size_t a = 0; a < N_ALGOS; a++) {
        kvx_key_chain_t c1, c2;
        kvx_block_key_t k1, k2;

        CU_ASSERT_EQUAL_FATAL(kvx_key_chain_init(&c1, algos[a], NULL), KVX_OK);
        CU_ASSERT_EQUAL_FATAL(kvx_key_chain_init(&c2, algos[a], NULL), KVX_OK);
        /* vLLM draws 32 random bytes whatever the algorithm. */
        CU_ASSERT_EQUAL(c1.len, 32);
        CU_ASSERT_EQUAL(c2.len, 32);
        CU_ASSERT(memcmp(c1.parent, c2.parent, 32) != 0);
        CU_ASSERT_EQUAL(kvx_key_chain_next(&c1, toks16, 16, NULL, 0, &k1),
                        KVX_OK);
        CU_ASSERT_EQUAL(kvx_key_chain_next(&c2, toks16, 16, NULL, 0, &k2),
                        KVX_OK);
        CU_ASSERT(!key_equal(&k1, &k2));
        CU_ASSERT_EQUAL(c1.len, digest_len(algos[a]));
    }
}

/* Known answers: CBOR written out by hand, hashed outside key.c. */
static void test_key_chain_cbor_known_answer(void)
{
    static const uint32_t toks[] = {0,   23,    24,    255,
                                    256, 65535, 65536, UINT32_MAX};
    static const uint8_t tok_cbor[] = {
        0x88, /* array(8) */
        0x00, 0x17, 0x18, 0x18, 0x18, 0xff, 0x19, 0x01, 0x00, 0x19, 0xff,
        0xff, 0x1a, 0x00, 0x01, 0x00, 0x00, 0x1a, 0xff, 0xff, 0xff, 0xff,
    };
    static const uint8_t extra_cbor[] = {
        0x86,                                                 /* array(6) */
        0x20,                                                 /* -1 */
        0x38, 0x18,                                           /* -25 */
        0x3b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, /* INT64_MIN */
        0x1b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, /* INT64_MAX */
        0x62, 'h',  'i',                                      /* "hi" */
        0x40,                                                 /* b'' */
    };
    const kvx_key_extra_t extra[] = {
        {.type = KVX_KEY_EXTRA_INT, .i = -1},
        {.type = KVX_KEY_EXTRA_INT, .i = -25},
        {.type = KVX_KEY_EXTRA_INT, .i = INT64_MIN},
        {.type = KVX_KEY_EXTRA_INT, .i = INT64_MAX},
        {.type = KVX_KEY_EXTRA_TEXT, .data = "hi", .len = 2},
        {.type = KVX_KEY_EXTRA_BYTES, .data = NULL, .len = 0},
    };

    for (size_t a = 0; a < N_ALGOS; a++) {
        size_t dl = digest_len(algos[a]);
        uint8_t root[32], blk1[32], blk2[32], buf[128];
        static const uint8_t seed_cbor[] = {0x62, '4', '2'}; /* "42" */
        kvx_key_chain_t c;
        kvx_block_key_t k;
        size_t n;

        ref_hash(algos[a], seed_cbor, sizeof(seed_cbor), root);
        CU_ASSERT_EQUAL_FATAL(kvx_key_chain_init(&c, algos[a], "42"), KVX_OK);
        CU_ASSERT(memcmp(c.parent, root, dl) == 0);

        /* (root, (0, 23, ...), None) */
        n = 0;
        buf[n++] = 0x83;
        buf[n++] = (uint8_t)(dl == 32 ? 0x58 : 0x50);
        if (dl == 32) {
            buf[n++] = 0x20;
        }
        memcpy(buf + n, root, dl);
        n += dl;
        memcpy(buf + n, tok_cbor, sizeof(tok_cbor));
        n += sizeof(tok_cbor);
        buf[n++] = 0xf6;
        ref_hash(algos[a], buf, n, blk1);
        CU_ASSERT_EQUAL(kvx_key_chain_next(&c, toks, 8, NULL, 0, &k), KVX_OK);
        CU_ASSERT(memcmp(c.parent, blk1, dl) == 0);
        CU_ASSERT(memcmp(k.bytes, blk1, 16) == 0);

        /* (blk1, (0), (-1, -25, INT64_MIN, INT64_MAX, "hi", b'')) */
        n = 0;
        buf[n++] = 0x83;
        buf[n++] = (uint8_t)(dl == 32 ? 0x58 : 0x50);
        if (dl == 32) {
            buf[n++] = 0x20;
        }
        memcpy(buf + n, blk1, dl);
        n += dl;
        buf[n++] = 0x81;
        buf[n++] = 0x00;
        memcpy(buf + n, extra_cbor, sizeof(extra_cbor));
        n += sizeof(extra_cbor);
        ref_hash(algos[a], buf, n, blk2);
        CU_ASSERT_EQUAL(kvx_key_chain_next(&c, toks, 1, extra, 6, &k), KVX_OK);
        CU_ASSERT(memcmp(c.parent, blk2, dl) == 0);
    }
}

static void test_key_chain_fork(void)
{
    static const uint32_t a_toks[16] = {100};
    static const uint32_t b_toks[16] = {200};
    kvx_key_chain_t base, a, b, again;
    kvx_block_key_t ka, kb, kb2;

    CU_ASSERT_EQUAL(kvx_key_chain_init(&base, KVX_KEY_ALGO_XXH3_128, "7"),
                    KVX_OK);
    CU_ASSERT_EQUAL(kvx_key_chain_next(&base, toks16, 16, NULL, 0, NULL),
                    KVX_OK);
    a = base;
    b = base;
    CU_ASSERT_EQUAL(kvx_key_chain_next(&a, a_toks, 16, NULL, 0, &ka), KVX_OK);
    CU_ASSERT_EQUAL(kvx_key_chain_next(&b, b_toks, 16, NULL, 0, &kb), KVX_OK);
    CU_ASSERT(!key_equal(&ka, &kb));

    /* The fork does not depend on what the other branch did. */
    again = base;
    CU_ASSERT_EQUAL(kvx_key_chain_next(&again, b_toks, 16, NULL, 0, &kb2),
                    KVX_OK);
    CU_ASSERT(key_equal(&kb, &kb2));
    CU_ASSERT(chain_equal(&b, &again));
}

static void test_key_chain_init_parent(void)
{
    uint8_t parent[32];
    kvx_key_chain_t c, seeded;
    kvx_block_key_t k1, k2;

    CU_ASSERT_EQUAL(kvx_key_chain_init(&seeded, KVX_KEY_ALGO_SHA256_CBOR, "9"),
                    KVX_OK);
    memcpy(parent, seeded.parent, 32);
    CU_ASSERT_EQUAL(
        kvx_key_chain_init_parent(&c, KVX_KEY_ALGO_SHA256_CBOR, parent, 32),
        KVX_OK);
    CU_ASSERT(chain_equal(&c, &seeded));
    kvx_key_chain_next(&c, toks16, 16, NULL, 0, &k1);
    kvx_key_chain_next(&seeded, toks16, 16, NULL, 0, &k2);
    CU_ASSERT(key_equal(&k1, &k2));

    CU_ASSERT_EQUAL(
        kvx_key_chain_init_parent(&c, KVX_KEY_ALGO_XXH3_128, parent, 1),
        KVX_OK);
    CU_ASSERT_EQUAL(c.len, 1);
}

static void test_key_chain_blocks_count(void)
{
    uint32_t toks[70];
    kvx_block_key_t keys[8], one;
    kvx_key_chain_t c, ref;
    size_t n = 99;

    for (uint32_t i = 0; i < 70; i++) {
        toks[i] = i * 7919u;
    }
    CU_ASSERT_EQUAL(kvx_key_chain_init(&c, KVX_KEY_ALGO_SHA256_CBOR, "3"),
                    KVX_OK);
    ref = c;
    /* 70 tokens of 16: 4 full blocks, the partial fifth has no key. */
    CU_ASSERT_EQUAL(
        kvx_key_chain_blocks(&c, toks, 70, 16, NULL, 0, keys, 8, &n), KVX_OK);
    CU_ASSERT_EQUAL(n, 4);
    for (size_t i = 0; i < 4; i++) {
        CU_ASSERT_EQUAL(
            kvx_key_chain_next(&ref, toks + i * 16, 16, NULL, 0, &one), KVX_OK);
        CU_ASSERT(key_equal(&keys[i], &one));
    }
    CU_ASSERT(chain_equal(&c, &ref));

    /* Fewer tokens than a block: no key, chain unchanged. */
    CU_ASSERT_EQUAL(
        kvx_key_chain_blocks(&c, toks, 15, 16, NULL, 0, NULL, 0, &n), KVX_OK);
    CU_ASSERT_EQUAL(n, 0);
    CU_ASSERT(chain_equal(&c, &ref));
    CU_ASSERT_EQUAL(kvx_key_chain_blocks(&c, NULL, 0, 16, NULL, 0, keys, 8, &n),
                    KVX_OK);
    CU_ASSERT_EQUAL(n, 0);
}

static void test_key_chain_blocks_extra(void)
{
    kvx_key_extra_t e = {
        .type = KVX_KEY_EXTRA_TEXT, .data = "lora-a", .len = 6};
    kvx_key_chain_t c, ref;
    kvx_block_key_t keys[2], one;
    uint32_t toks[32];
    size_t n;

    for (uint32_t i = 0; i < 32; i++) {
        toks[i] = 1000000u + i;
    }
    CU_ASSERT_EQUAL(kvx_key_chain_init(&c, KVX_KEY_ALGO_XXH3_128, "5"), KVX_OK);
    ref = c;
    CU_ASSERT_EQUAL(kvx_key_chain_blocks(&c, toks, 32, 16, &e, 1, keys, 2, &n),
                    KVX_OK);
    CU_ASSERT_EQUAL(n, 2);
    for (size_t i = 0; i < 2; i++) {
        kvx_key_chain_next(&ref, toks + 16 * i, 16, &e, 1, &one);
        CU_ASSERT(key_equal(&keys[i], &one));
    }
}

static void test_key_chain_blocks_no_space(void)
{
    kvx_block_key_t keys[3], canary;
    kvx_key_chain_t c, before;
    uint32_t toks[64] = {0};
    size_t n = 99;

    memset(keys, 0xa5, sizeof(keys));
    canary = keys[0];
    CU_ASSERT_EQUAL(kvx_key_chain_init(&c, KVX_KEY_ALGO_XXH3_128, "1"), KVX_OK);
    before = c;
    CU_ASSERT_EQUAL(
        kvx_key_chain_blocks(&c, toks, 64, 16, NULL, 0, keys, 3, &n),
        KVX_ERR_NO_SPACE);
    CU_ASSERT_EQUAL(n, 0);
    CU_ASSERT(chain_equal(&c, &before));
    for (int i = 0; i < 3; i++) {
        CU_ASSERT(key_equal(&keys[i], &canary));
    }
    CU_ASSERT_EQUAL(
        kvx_key_chain_blocks(&c, toks, 64, 16, NULL, 0, NULL, 0, &n),
        KVX_ERR_NO_SPACE);
    CU_ASSERT(chain_equal(&c, &before));
}

static void test_key_chain_max_tokens(void)
{
    static uint32_t big[KVX_KEY_TOKENS_MAX + 1];
    kvx_key_chain_t c, before;
    kvx_block_key_t k;
    size_t n;

    for (size_t i = 0; i < KVX_KEY_TOKENS_MAX + 1; i++) {
        big[i] = (uint32_t)(i * 2654435761u);
    }
    CU_ASSERT_EQUAL(kvx_key_chain_init(&c, KVX_KEY_ALGO_SHA256_CBOR, "0"),
                    KVX_OK);
    before = c;
    CU_ASSERT_EQUAL(
        kvx_key_chain_next(&c, big, KVX_KEY_TOKENS_MAX + 1, NULL, 0, &k),
        KVX_ERR_INVALID_PARAM);
    CU_ASSERT(chain_equal(&c, &before));
    CU_ASSERT_EQUAL(
        kvx_key_chain_next(&c, big, KVX_KEY_TOKENS_MAX, NULL, 0, &k), KVX_OK);
    CU_ASSERT_EQUAL(kvx_key_chain_blocks(&before, big, KVX_KEY_TOKENS_MAX + 1,
                                         KVX_KEY_TOKENS_MAX, NULL, 0, &k, 1,
                                         &n),
                    KVX_OK);
    CU_ASSERT_EQUAL(n, 1);
    CU_ASSERT(chain_equal(&c, &before));
    CU_ASSERT_EQUAL(kvx_key_chain_blocks(&before, big, 10,
                                         KVX_KEY_TOKENS_MAX + 1, NULL, 0, &k, 1,
                                         &n),
                    KVX_ERR_INVALID_PARAM);
}

static void test_key_chain_next_bad_input(void)
{
    kvx_key_extra_t extra[KVX_KEY_EXTRA_MAX + 1];
    kvx_key_chain_t c, before, bad;
    kvx_block_key_t k;

    memset(extra, 0, sizeof(extra));
    CU_ASSERT_EQUAL(kvx_key_chain_init(&c, KVX_KEY_ALGO_XXH3_128, "0"), KVX_OK);
    before = c;
    CU_ASSERT_EQUAL(kvx_key_chain_next(NULL, toks16, 16, NULL, 0, &k),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_key_chain_next(&c, NULL, 16, NULL, 0, &k),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_key_chain_next(&c, toks16, 0, NULL, 0, &k),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_key_chain_next(&c, toks16, 16, NULL, 1, &k),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(
        kvx_key_chain_next(&c, toks16, 16, extra, KVX_KEY_EXTRA_MAX + 1, &k),
        KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(
        kvx_key_chain_next(&c, toks16, 16, extra, KVX_KEY_EXTRA_MAX, &k),
        KVX_OK);
    c = before;
    extra[0].type = (kvx_key_extra_type_t)3;
    CU_ASSERT_EQUAL(kvx_key_chain_next(&c, toks16, 16, extra, 1, &k),
                    KVX_ERR_INVALID_PARAM);
    extra[0].type = KVX_KEY_EXTRA_TEXT;
    extra[0].data = NULL;
    extra[0].len = 3;
    CU_ASSERT_EQUAL(kvx_key_chain_next(&c, toks16, 16, extra, 1, &k),
                    KVX_ERR_INVALID_PARAM);
    extra[0].type = KVX_KEY_EXTRA_BYTES;
    CU_ASSERT_EQUAL(kvx_key_chain_next(&c, toks16, 16, extra, 1, &k),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT(chain_equal(&c, &before));

    /* A damaged chain value is refused, not hashed. */
    bad = before;
    bad.len = 0;
    CU_ASSERT_EQUAL(kvx_key_chain_next(&bad, toks16, 16, NULL, 0, &k),
                    KVX_ERR_INVALID_PARAM);
    bad.len = KVX_KEY_DIGEST_MAX + 1;
    CU_ASSERT_EQUAL(kvx_key_chain_next(&bad, toks16, 16, NULL, 0, &k),
                    KVX_ERR_INVALID_PARAM);
    bad = before;
    bad.algo = (kvx_key_algo_t)7;
    CU_ASSERT_EQUAL(kvx_key_chain_next(&bad, toks16, 16, NULL, 0, &k),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(bad.algo, (kvx_key_algo_t)7);
}

static void test_key_chain_blocks_bad_input(void)
{
    kvx_key_extra_t extra = {.type = (kvx_key_extra_type_t)-1};
    kvx_key_chain_t c, before, bad;
    kvx_block_key_t keys[4];
    size_t n;

    CU_ASSERT_EQUAL(kvx_key_chain_init(&c, KVX_KEY_ALGO_SHA256_CBOR, "0"),
                    KVX_OK);
    before = c;
    CU_ASSERT_EQUAL(
        kvx_key_chain_blocks(NULL, toks16, 16, 16, NULL, 0, keys, 4, &n),
        KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(
        kvx_key_chain_blocks(&c, NULL, 16, 16, NULL, 0, keys, 4, &n),
        KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(
        kvx_key_chain_blocks(&c, toks16, 16, 0, NULL, 0, keys, 4, &n),
        KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(
        kvx_key_chain_blocks(&c, toks16, 16, 16, NULL, 2, keys, 4, &n),
        KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_key_chain_blocks(&c, toks16, 16, 16, &extra,
                                         KVX_KEY_EXTRA_MAX + 1, keys, 4, &n),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(
        kvx_key_chain_blocks(&c, toks16, 16, 16, &extra, 1, keys, 4, &n),
        KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(
        kvx_key_chain_blocks(&c, toks16, 16, 16, NULL, 0, NULL, 4, &n),
        KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(
        kvx_key_chain_blocks(&c, toks16, 16, 16, NULL, 0, keys, 4, NULL),
        KVX_ERR_INVALID_PARAM);
    bad = c;
    bad.len = 0;
    CU_ASSERT_EQUAL(
        kvx_key_chain_blocks(&bad, toks16, 16, 16, NULL, 0, keys, 4, &n),
        KVX_ERR_INVALID_PARAM);
    CU_ASSERT(chain_equal(&c, &before));
}

static void test_key_chain_init_bad_input(void)
{
    uint8_t parent[KVX_KEY_DIGEST_MAX + 1] = {1};
    kvx_key_chain_t c, before;

    CU_ASSERT_EQUAL(kvx_key_chain_init(NULL, KVX_KEY_ALGO_XXH3_128, "0"),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_key_chain_init(NULL, KVX_KEY_ALGO_XXH3_128, NULL),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_key_chain_init(&c, KVX_KEY_ALGO_XXH3_128, "0"), KVX_OK);
    before = c;
    CU_ASSERT_EQUAL(kvx_key_chain_init(&c, (kvx_key_algo_t)2, "0"),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_key_chain_init(&c, (kvx_key_algo_t)-1, NULL),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(
        kvx_key_chain_init_parent(NULL, KVX_KEY_ALGO_XXH3_128, parent, 16),
        KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(
        kvx_key_chain_init_parent(&c, KVX_KEY_ALGO_XXH3_128, NULL, 16),
        KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(
        kvx_key_chain_init_parent(&c, KVX_KEY_ALGO_XXH3_128, parent, 0),
        KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_key_chain_init_parent(&c, KVX_KEY_ALGO_XXH3_128, parent,
                                              KVX_KEY_DIGEST_MAX + 1),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(
        kvx_key_chain_init_parent(&c, (kvx_key_algo_t)5, parent, 16),
        KVX_ERR_INVALID_PARAM);
    CU_ASSERT(chain_equal(&c, &before));
}

static void test_key_algo_parse_name(void)
{
    kvx_key_algo_t algo = (kvx_key_algo_t)9;

    for (size_t a = 0; a < N_ALGOS; a++) {
        CU_ASSERT_EQUAL(kvx_key_algo_parse(kvx_key_algo_name(algos[a]), &algo),
                        KVX_OK);
        CU_ASSERT_EQUAL(algo, algos[a]);
    }
    CU_ASSERT_STRING_EQUAL(kvx_key_algo_name(KVX_KEY_ALGO_XXH3_128),
                           "xxh3-128");
    CU_ASSERT_STRING_EQUAL(kvx_key_algo_name(KVX_KEY_ALGO_SHA256_CBOR),
                           "sha256-cbor");
    CU_ASSERT_STRING_EQUAL(kvx_key_algo_name((kvx_key_algo_t)2), "?");
    algo = (kvx_key_algo_t)9;
    CU_ASSERT_EQUAL(kvx_key_algo_parse("sha256", &algo), KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_key_algo_parse("XXH3-128", &algo),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_key_algo_parse("", &algo), KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(algo, (kvx_key_algo_t)9);
    CU_ASSERT_EQUAL(kvx_key_algo_parse(NULL, &algo), KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_key_algo_parse("xxh3-128", NULL),
                    KVX_ERR_INVALID_PARAM);
}

static const ut_test_t chain_tests[] = {
    UT_TEST(test_key_chain_seed_deterministic),
    UT_TEST(test_key_chain_inputs_change_key),
    UT_TEST(test_key_chain_algos_differ),
    UT_TEST(test_key_chain_random_root),
    UT_TEST(test_key_chain_cbor_known_answer),
    UT_TEST(test_key_chain_fork),
    UT_TEST(test_key_chain_init_parent),
    UT_TEST(test_key_chain_blocks_count),
    UT_TEST(test_key_chain_blocks_extra),
    UT_TEST(test_key_chain_blocks_no_space),
    UT_TEST(test_key_chain_max_tokens),
    UT_TEST(test_key_chain_next_bad_input),
    UT_TEST(test_key_chain_blocks_bad_input),
    UT_TEST(test_key_chain_init_bad_input),
    UT_END,
};

static const ut_test_t algo_tests[] = {
    UT_TEST(test_key_algo_parse_name),
    UT_END,
};

int main(void)
{
    static const ut_suite_t suites[] = {
        {"key_chain", chain_tests},
        {"key_algo", algo_tests},
        {NULL, NULL},
    };

    return ut_main(suites);
}
