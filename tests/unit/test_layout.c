/* Unit tests for libkvx/layout.c. */
#include "ut.h"

#include <kvx/kvx.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

/* compat hash of the layout in test_layout_hash_stable, format 1 */
#define LAYOUT_HASH_GOLDEN 0xea283b0a9591c74eull

#define F_REQUIRED                                                             \
    (KVX_LAYOUT_PARAM_FIELD_NUM_LAYERS | KVX_LAYOUT_PARAM_FIELD_BLOCK_TOKENS | \
     KVX_LAYOUT_PARAM_FIELD_KV_HEADS | KVX_LAYOUT_PARAM_FIELD_HEAD_DIM |       \
     KVX_LAYOUT_PARAM_FIELD_DTYPE_SIZE | KVX_LAYOUT_PARAM_FIELD_NUM_BLOCKS)

/* 4 layers, K+V, 16-token blocks, 8 heads of 128 bf16, 10 blocks. */
static kvx_layout_params_t small_params(kvx_layout_order_t order,
                                        kvx_layout_token_order_t tok)
{
    kvx_layout_params_t p;

    memset(&p, 0, sizeof(p));
    p.field_mask = F_REQUIRED | KVX_LAYOUT_PARAM_FIELD_KV_PARTS |
                   KVX_LAYOUT_PARAM_FIELD_ORDER |
                   KVX_LAYOUT_PARAM_FIELD_TOKEN_ORDER;
    p.num_layers = 4;
    p.kv_parts = 2;
    p.block_tokens = 16;
    p.kv_heads = 8;
    p.head_dim = 128;
    p.dtype_size = 2;
    p.num_blocks = 10;
    p.order = order;
    p.token_order = tok;
    return p;
}

static kvx_layout_t make(const kvx_layout_params_t *p)
{
    kvx_layout_t l;

    CU_ASSERT_EQUAL_FATAL(kvx_layout_init(&l, p), KVX_OK);
    return l;
}

static void expect_init(const kvx_layout_params_t *p, kvx_status_t want)
{
    kvx_layout_t l;

    memset(&l, 0x5a, sizeof(l));
    CU_ASSERT_EQUAL(kvx_layout_init(&l, p), want);
    if (want != KVX_OK) {
        /* Written only on success. */
        CU_ASSERT_EQUAL(l.num_layers, 0x5a5a5a5au);
        CU_ASSERT_EQUAL(l.region_bytes, 0x5a5a5a5a5a5a5a5aull);
    }
}

static void test_layout_init_defaults(void)
{
    kvx_layout_params_t p;
    kvx_layout_t l;

    memset(&p, 0, sizeof(p));
    p.field_mask = F_REQUIRED;
    p.num_layers = 2;
    p.block_tokens = 4;
    p.kv_heads = 3;
    p.head_dim = 8;
    p.dtype_size = 2;
    p.num_blocks = 5;
    /* Fields whose bit is not set are ignored, whatever they hold. */
    p.kv_parts = 7;
    p.order = (kvx_layout_order_t)9;
    p.total_heads = 1;
    p.head_start = 100;
    p.model_id = 42;
    l = make(&p);
    CU_ASSERT_EQUAL(l.kv_parts, 2);
    CU_ASSERT_EQUAL(l.order, KVX_LAYOUT_BLOCK_MAJOR);
    CU_ASSERT_EQUAL(l.token_order, KVX_LAYOUT_NHD);
    CU_ASSERT_EQUAL(l.total_heads, 3);
    CU_ASSERT_EQUAL(l.head_start, 0);
    CU_ASSERT_EQUAL(l.model_id, 0);
    CU_ASSERT_EQUAL(l.head_bytes, 16);
    CU_ASSERT_EQUAL(l.chunk_bytes, 4 * 3 * 16);
    CU_ASSERT_EQUAL(l.block_bytes, 2 * 2 * 4 * 3 * 16);
    CU_ASSERT_EQUAL(l.region_bytes, 5ull * 2 * 2 * 4 * 3 * 16);
}

static void test_layout_init_null(void)
{
    kvx_layout_params_t p =
        small_params(KVX_LAYOUT_BLOCK_MAJOR, KVX_LAYOUT_NHD);
    kvx_layout_t l;

    CU_ASSERT_EQUAL(kvx_layout_init(NULL, &p), KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_layout_init(&l, NULL), KVX_ERR_INVALID_PARAM);
}

static void test_layout_init_missing_required(void)
{
    for (unsigned bit = 0; bit < 64; bit++) {
        kvx_layout_params_t p =
            small_params(KVX_LAYOUT_BLOCK_MAJOR, KVX_LAYOUT_NHD);

        if (!((uint64_t)F_REQUIRED & (1ull << bit))) {
            continue;
        }
        p.field_mask &= ~(1ull << bit);
        expect_init(&p, KVX_ERR_INVALID_PARAM);
    }
}

static void test_layout_init_unknown_bits(void)
{
    kvx_layout_params_t p =
        small_params(KVX_LAYOUT_BLOCK_MAJOR, KVX_LAYOUT_NHD);

    p.field_mask |= 1ull << 11;
    expect_init(&p, KVX_ERR_INVALID_PARAM);
    p.field_mask &= ~(1ull << 11);
    p.field_mask |= 1ull << 63;
    expect_init(&p, KVX_ERR_INVALID_PARAM);
}

/* Pointers to every count field, to vary them one at a time. */
static uint32_t *count_field(kvx_layout_params_t *p, int i)
{
    switch (i) {
    case 0: return &p->num_layers;
    case 1: return &p->block_tokens;
    case 2: return &p->kv_heads;
    case 3: return &p->head_dim;
    case 4: return &p->dtype_size;
    case 5: return &p->num_blocks;
    case 6: return &p->total_heads;
    }
    return NULL;
}

static void test_layout_init_zero_fields(void)
{
    for (int i = 0; i < 7; i++) {
        kvx_layout_params_t p =
            small_params(KVX_LAYOUT_BLOCK_MAJOR, KVX_LAYOUT_NHD);

        p.field_mask |= KVX_LAYOUT_PARAM_FIELD_HEAD_SLICE;
        p.total_heads = 8;
        p.head_start = 0;
        expect_init(&p, KVX_OK);
        *count_field(&p, i) = 0;
        expect_init(&p, KVX_ERR_INVALID_PARAM);
    }
}

static void test_layout_init_dim_max(void)
{
    for (int i = 0; i < 7; i++) {
        kvx_layout_params_t p;

        memset(&p, 0, sizeof(p));
        p.field_mask = F_REQUIRED | KVX_LAYOUT_PARAM_FIELD_HEAD_SLICE |
                       KVX_LAYOUT_PARAM_FIELD_KV_PARTS;
        p.kv_parts = 1;
        p.num_layers = p.block_tokens = p.kv_heads = p.head_dim = 1;
        p.dtype_size = p.num_blocks = 1;
        p.total_heads = 1;
        /* total_heads may exceed kv_heads, so push kv_heads via both. */
        *count_field(&p, i) = KVX_LAYOUT_DIM_MAX;
        if (i == 2) {
            p.total_heads = KVX_LAYOUT_DIM_MAX;
        }
        expect_init(&p, KVX_OK);
        *count_field(&p, i) = KVX_LAYOUT_DIM_MAX + 1;
        if (i == 2) {
            p.total_heads = KVX_LAYOUT_DIM_MAX + 1;
        }
        expect_init(&p, KVX_ERR_INVALID_PARAM);
        *count_field(&p, i) = UINT32_MAX;
        expect_init(&p, KVX_ERR_INVALID_PARAM);
    }
}

static void test_layout_init_kv_parts(void)
{
    kvx_layout_params_t p =
        small_params(KVX_LAYOUT_BLOCK_MAJOR, KVX_LAYOUT_NHD);

    p.kv_parts = 0;
    expect_init(&p, KVX_ERR_INVALID_PARAM);
    p.kv_parts = 3;
    expect_init(&p, KVX_ERR_INVALID_PARAM);
    p.kv_parts = UINT32_MAX;
    expect_init(&p, KVX_ERR_INVALID_PARAM);
    p.kv_parts = 1;
    expect_init(&p, KVX_OK);
    p.kv_parts = 2;
    expect_init(&p, KVX_OK);
}

static void test_layout_init_unknown_enums(void)
{
    kvx_layout_params_t p =
        small_params(KVX_LAYOUT_BLOCK_MAJOR, KVX_LAYOUT_NHD);

    p.order = (kvx_layout_order_t)2;
    expect_init(&p, KVX_ERR_INVALID_PARAM);
    p.order = (kvx_layout_order_t)-1;
    expect_init(&p, KVX_ERR_INVALID_PARAM);
    p.order = KVX_LAYOUT_LAYER_MAJOR;
    p.token_order = (kvx_layout_token_order_t)2;
    expect_init(&p, KVX_ERR_INVALID_PARAM);
    p.token_order = (kvx_layout_token_order_t)-1;
    expect_init(&p, KVX_ERR_INVALID_PARAM);
    p.token_order = KVX_LAYOUT_HND;
    expect_init(&p, KVX_OK);
}

static void test_layout_init_head_slice(void)
{
    kvx_layout_params_t p =
        small_params(KVX_LAYOUT_BLOCK_MAJOR, KVX_LAYOUT_NHD);
    kvx_layout_t l;

    p.field_mask |= KVX_LAYOUT_PARAM_FIELD_HEAD_SLICE;
    p.kv_heads = 2;
    p.total_heads = 8;
    p.head_start = 6; /* [6, 8): the last rank of TP=4 */
    l = make(&p);
    CU_ASSERT_EQUAL(l.total_heads, 8);
    CU_ASSERT_EQUAL(l.head_start, 6);
    CU_ASSERT_EQUAL(l.chunk_bytes, 16 * 2 * 256);
    p.head_start = 7; /* [7, 9) is outside 8 heads */
    expect_init(&p, KVX_ERR_INVALID_PARAM);
    p.head_start = UINT32_MAX; /* would wrap in 32 bits */
    expect_init(&p, KVX_ERR_INVALID_PARAM);
    p.head_start = 0;
    p.total_heads = 1; /* fewer than kv_heads */
    expect_init(&p, KVX_ERR_INVALID_PARAM);
}

static void test_layout_init_overflow(void)
{
    kvx_layout_params_t p;
    kvx_layout_t l;

    memset(&p, 0, sizeof(p));
    p.field_mask = F_REQUIRED | KVX_LAYOUT_PARAM_FIELD_KV_PARTS;
    p.kv_parts = 1;
    p.num_layers = 1;
    p.kv_heads = 1;
    p.num_blocks = 1;
    /* 2^20 * 2^8 * 2^20 = 2^48 exactly: the largest region accepted. */
    p.head_dim = 1u << 20;
    p.dtype_size = 1u << 8;
    p.block_tokens = 1u << 20;
    l = make(&p);
    CU_ASSERT_EQUAL(l.region_bytes, KVX_LAYOUT_BYTES_MAX);
    p.num_blocks = 2;
    expect_init(&p, KVX_ERR_OVERFLOW);
    p.num_blocks = 1;
    p.kv_parts = 2;
    expect_init(&p, KVX_ERR_OVERFLOW);
    p.kv_parts = 1;
    p.num_layers = 2;
    expect_init(&p, KVX_ERR_OVERFLOW);
    /* 2^80 per chunk: wraps 64 bits before any cap is reached. */
    p.num_layers = 1;
    p.dtype_size = 1u << 20;
    p.kv_heads = 1u << 20;
    expect_init(&p, KVX_ERR_OVERFLOW);
    /* Huge num_blocks times a modest block. */
    p = small_params(KVX_LAYOUT_BLOCK_MAJOR, KVX_LAYOUT_NHD);
    p.num_blocks = KVX_LAYOUT_DIM_MAX;
    p.num_layers = 1u << 13; /* block 2^29 bytes, region 2^49 */
    expect_init(&p, KVX_ERR_OVERFLOW);
    p.num_layers = 1u << 12; /* region 2^48: fits */
    expect_init(&p, KVX_OK);
}

static void test_layout_strides_block_major_nhd(void)
{
    kvx_layout_params_t p =
        small_params(KVX_LAYOUT_BLOCK_MAJOR, KVX_LAYOUT_NHD);
    kvx_layout_t l = make(&p);

    CU_ASSERT_EQUAL(l.head_bytes, 256);
    CU_ASSERT_EQUAL(l.chunk_bytes, 32768);
    CU_ASSERT_EQUAL(l.block_bytes, 262144);
    CU_ASSERT_EQUAL(l.region_bytes, 2621440);
    CU_ASSERT_EQUAL(l.stride_head, 256);
    CU_ASSERT_EQUAL(l.stride_token, 2048);
    CU_ASSERT_EQUAL(l.stride_part, 32768);
    CU_ASSERT_EQUAL(l.stride_layer, 65536);
    CU_ASSERT_EQUAL(l.stride_block, 262144);
}

static void test_layout_strides_block_major_hnd(void)
{
    kvx_layout_params_t p =
        small_params(KVX_LAYOUT_BLOCK_MAJOR, KVX_LAYOUT_HND);
    kvx_layout_t l = make(&p);

    CU_ASSERT_EQUAL(l.stride_token, 256);
    CU_ASSERT_EQUAL(l.stride_head, 4096);
    CU_ASSERT_EQUAL(l.stride_part, 32768);
    CU_ASSERT_EQUAL(l.stride_layer, 65536);
    CU_ASSERT_EQUAL(l.stride_block, 262144);
    CU_ASSERT_EQUAL(l.region_bytes, 2621440);
}

static void test_layout_strides_layer_major_nhd(void)
{
    kvx_layout_params_t p =
        small_params(KVX_LAYOUT_LAYER_MAJOR, KVX_LAYOUT_NHD);
    kvx_layout_t l = make(&p);

    CU_ASSERT_EQUAL(l.stride_head, 256);
    CU_ASSERT_EQUAL(l.stride_token, 2048);
    CU_ASSERT_EQUAL(l.stride_block, 32768);
    CU_ASSERT_EQUAL(l.stride_part, 327680);
    CU_ASSERT_EQUAL(l.stride_layer, 655360);
    CU_ASSERT_EQUAL(l.block_bytes, 262144);
    CU_ASSERT_EQUAL(l.region_bytes, 2621440);
}

static void test_layout_strides_layer_major_hnd(void)
{
    kvx_layout_params_t p =
        small_params(KVX_LAYOUT_LAYER_MAJOR, KVX_LAYOUT_HND);
    kvx_layout_t l = make(&p);

    CU_ASSERT_EQUAL(l.stride_token, 256);
    CU_ASSERT_EQUAL(l.stride_head, 4096);
    CU_ASSERT_EQUAL(l.stride_block, 32768);
    CU_ASSERT_EQUAL(l.stride_part, 327680);
    CU_ASSERT_EQUAL(l.stride_layer, 655360);
}

/* DeepSeek-style MLA: one 576-wide latent per token, no separate V. */
static void test_layout_strides_mla(void)
{
    kvx_layout_params_t p =
        small_params(KVX_LAYOUT_LAYER_MAJOR, KVX_LAYOUT_NHD);
    kvx_layout_t l;
    uint64_t off;

    p.num_layers = 3;
    p.kv_parts = 1;
    p.block_tokens = 64;
    p.kv_heads = 1;
    p.head_dim = 576;
    p.num_blocks = 5;
    l = make(&p);
    CU_ASSERT_EQUAL(l.head_bytes, 1152);
    CU_ASSERT_EQUAL(l.chunk_bytes, 73728);
    CU_ASSERT_EQUAL(l.block_bytes, 221184);
    CU_ASSERT_EQUAL(l.stride_block, 73728);
    CU_ASSERT_EQUAL(l.stride_part, 368640);
    CU_ASSERT_EQUAL(l.stride_layer, 368640);
    CU_ASSERT_EQUAL(l.stride_token, 1152);
    CU_ASSERT_EQUAL(kvx_layout_offset(&l, 4, 2, 0, 63, 0, &off), KVX_OK);
    CU_ASSERT_EQUAL(off, 2 * 368640 + 4 * 73728 + 63 * 1152);
    CU_ASSERT_EQUAL(off + l.head_bytes, l.region_bytes);
    CU_ASSERT_EQUAL(kvx_layout_offset(&l, 0, 0, 1, 0, 0, &off),
                    KVX_ERR_OUT_OF_RANGE);
}

static void test_layout_offset_values(void)
{
    kvx_layout_params_t p =
        small_params(KVX_LAYOUT_BLOCK_MAJOR, KVX_LAYOUT_NHD);
    kvx_layout_t l = make(&p);
    uint64_t off;

    CU_ASSERT_EQUAL(kvx_layout_offset(&l, 3, 2, 1, 5, 7, &off), KVX_OK);
    CU_ASSERT_EQUAL(off, 3 * 262144 + 2 * 65536 + 32768 + 5 * 2048 + 7 * 256);
    p = small_params(KVX_LAYOUT_LAYER_MAJOR, KVX_LAYOUT_HND);
    l = make(&p);
    CU_ASSERT_EQUAL(kvx_layout_offset(&l, 3, 2, 1, 5, 7, &off), KVX_OK);
    CU_ASSERT_EQUAL(off, 2 * 655360 + 327680 + 3 * 32768 + 7 * 4096 + 5 * 256);
    /* A TP slice: model-wide head 5 is local head 1 of [4, 6). */
    p = small_params(KVX_LAYOUT_BLOCK_MAJOR, KVX_LAYOUT_NHD);
    p.field_mask |= KVX_LAYOUT_PARAM_FIELD_HEAD_SLICE;
    p.kv_heads = 2;
    p.total_heads = 8;
    p.head_start = 4;
    l = make(&p);
    CU_ASSERT_EQUAL(kvx_layout_offset(&l, 0, 0, 0, 1, 5, &off), KVX_OK);
    CU_ASSERT_EQUAL(off, 1 * 512 + 256);
}

static void test_layout_offset_out_of_range(void)
{
    kvx_layout_params_t p =
        small_params(KVX_LAYOUT_BLOCK_MAJOR, KVX_LAYOUT_NHD);
    kvx_layout_t l;
    uint64_t off = 77;

    p.field_mask |= KVX_LAYOUT_PARAM_FIELD_HEAD_SLICE;
    p.kv_heads = 4;
    p.total_heads = 8;
    p.head_start = 2;
    l = make(&p);
    CU_ASSERT_EQUAL(kvx_layout_offset(&l, 9, 3, 1, 15, 5, &off), KVX_OK);
    CU_ASSERT_EQUAL(off + l.head_bytes, l.region_bytes);
    off = 77;
    CU_ASSERT_EQUAL(kvx_layout_offset(&l, 10, 0, 0, 0, 2, &off),
                    KVX_ERR_OUT_OF_RANGE);
    CU_ASSERT_EQUAL(kvx_layout_offset(&l, 0, 4, 0, 0, 2, &off),
                    KVX_ERR_OUT_OF_RANGE);
    CU_ASSERT_EQUAL(kvx_layout_offset(&l, 0, 0, 2, 0, 2, &off),
                    KVX_ERR_OUT_OF_RANGE);
    CU_ASSERT_EQUAL(kvx_layout_offset(&l, 0, 0, 0, 16, 2, &off),
                    KVX_ERR_OUT_OF_RANGE);
    CU_ASSERT_EQUAL(kvx_layout_offset(&l, 0, 0, 0, 0, 1, &off),
                    KVX_ERR_OUT_OF_RANGE);
    CU_ASSERT_EQUAL(kvx_layout_offset(&l, 0, 0, 0, 0, 6, &off),
                    KVX_ERR_OUT_OF_RANGE);
    CU_ASSERT_EQUAL(kvx_layout_offset(&l, UINT32_MAX, UINT32_MAX, UINT32_MAX,
                                      UINT32_MAX, UINT32_MAX, &off),
                    KVX_ERR_OUT_OF_RANGE);
    CU_ASSERT_EQUAL(off, 77);
    CU_ASSERT_EQUAL(kvx_layout_offset(NULL, 0, 0, 0, 0, 2, &off),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_layout_offset(&l, 0, 0, 0, 0, 2, NULL),
                    KVX_ERR_INVALID_PARAM);
}

/* Every arrangement maps the elements one to one onto the region. */
static void test_layout_offset_bijective(void)
{
    for (int order = 0; order < 2; order++) {
        for (int tok = 0; tok < 2; tok++) {
            kvx_layout_params_t p = small_params((kvx_layout_order_t)order,
                                                 (kvx_layout_token_order_t)tok);
            kvx_layout_t l;
            uint8_t *seen;
            uint64_t n = 0;

            p.num_layers = 3;
            p.block_tokens = 5;
            p.kv_heads = 3;
            p.head_dim = 2;
            p.num_blocks = 4;
            l = make(&p);
            seen = calloc(l.region_bytes / l.head_bytes, 1);
            CU_ASSERT_PTR_NOT_NULL_FATAL(seen);
            /* Element e, decomposed [block][layer][part][token][head]. */
            for (uint64_t e = 0; e < l.region_bytes / l.head_bytes; e++) {
                uint64_t rest = e, off;
                uint32_t h, t, k, y;

                h = (uint32_t)(rest % l.kv_heads);
                rest /= l.kv_heads;
                t = (uint32_t)(rest % l.block_tokens);
                rest /= l.block_tokens;
                k = (uint32_t)(rest % l.kv_parts);
                rest /= l.kv_parts;
                y = (uint32_t)(rest % l.num_layers);
                rest /= l.num_layers;
                CU_ASSERT_EQUAL_FATAL(
                    kvx_layout_offset(&l, (uint32_t)rest, y, k, t, h, &off),
                    KVX_OK);
                CU_ASSERT_EQUAL(off % l.head_bytes, 0);
                CU_ASSERT_FATAL(off < l.region_bytes);
                CU_ASSERT_EQUAL(seen[off / l.head_bytes], 0);
                seen[off / l.head_bytes] = 1;
                n++;
            }
            CU_ASSERT_EQUAL(n * l.head_bytes, l.region_bytes);
            free(seen);
        }
    }
}

static void test_layout_hash_ignores_translated_fields(void)
{
    kvx_layout_params_t p =
        small_params(KVX_LAYOUT_BLOCK_MAJOR, KVX_LAYOUT_NHD);
    kvx_layout_t a = make(&p), b;

    p.order = KVX_LAYOUT_LAYER_MAJOR;
    p.token_order = KVX_LAYOUT_HND;
    p.block_tokens = 32;
    p.num_blocks = 1000;
    p.field_mask |= KVX_LAYOUT_PARAM_FIELD_HEAD_SLICE;
    p.kv_heads = 2;
    p.total_heads = 8;
    p.head_start = 2;
    b = make(&p);
    CU_ASSERT_EQUAL(kvx_layout_compat_hash(&a), kvx_layout_compat_hash(&b));
    CU_ASSERT_EQUAL(kvx_layout_compat_hash(NULL), 0);
}

static void test_layout_hash_covers_model_fields(void)
{
    kvx_layout_params_t base =
        small_params(KVX_LAYOUT_BLOCK_MAJOR, KVX_LAYOUT_NHD);
    uint64_t hashes[7];
    kvx_layout_t l;

    for (int i = 0; i < 7; i++) {
        kvx_layout_params_t p = base;

        switch (i) {
        case 1: p.num_layers = 5; break;
        case 2: p.kv_parts = 1; break;
        case 3:
            p.field_mask |= KVX_LAYOUT_PARAM_FIELD_HEAD_SLICE;
            p.total_heads = 16;
            break;
        case 4: p.head_dim = 64; break;
        case 5: p.dtype_size = 1; break;
        case 6:
            p.field_mask |= KVX_LAYOUT_PARAM_FIELD_MODEL_ID;
            p.model_id = 1;
            break;
        }
        l = make(&p);
        hashes[i] = kvx_layout_compat_hash(&l);
        for (int j = 0; j < i; j++) {
            CU_ASSERT_NOT_EQUAL(hashes[i], hashes[j]);
        }
    }
}

/* The serialisation is fixed little-endian: check it byte by byte and pin
 * the value so that a change of format is noticed (and versioned). */
static void test_layout_hash_stable(void)
{
    static const uint8_t want_bytes[] = {
        'K',  'V',  'X',  'L',  1,    0,    0,    0,
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, /* model_id */
        4,    0,    0,    0,                            /* num_layers */
        2,    0,    0,    0,                            /* kv_parts */
        8,    0,    0,    0,                            /* total_heads */
        128,  0,    0,    0,                            /* head_dim */
        2,    0,    0,    0,                            /* dtype_size */
    };
    kvx_layout_params_t p =
        small_params(KVX_LAYOUT_BLOCK_MAJOR, KVX_LAYOUT_NHD);
    kvx_layout_t l;

    p.field_mask |= KVX_LAYOUT_PARAM_FIELD_MODEL_ID;
    p.model_id = 0x0102030405060708ull;
    l = make(&p);
    CU_ASSERT_EQUAL(kvx_layout_compat_hash(&l),
                    XXH3_64bits(want_bytes, sizeof(want_bytes)));
    CU_ASSERT_EQUAL(kvx_layout_compat_hash(&l), LAYOUT_HASH_GOLDEN);
}

static void check_why(const kvx_layout_params_t *pa,
                      const kvx_layout_params_t *pb, kvx_status_t want,
                      const char *want_why)
{
    kvx_layout_t a, b;
    char why[64];

    CU_ASSERT_EQUAL_FATAL(kvx_layout_init(&a, pa), KVX_OK);
    CU_ASSERT_EQUAL_FATAL(kvx_layout_init(&b, pb), KVX_OK);
    memset(why, 'x', sizeof(why));
    CU_ASSERT_EQUAL(kvx_layout_check(&a, &b, why, sizeof(why)), want);
    CU_ASSERT_STRING_EQUAL(why, want_why);
    CU_ASSERT_EQUAL(kvx_layout_check(&a, &b, NULL, 0), want);
}

static void test_layout_check_reasons(void)
{
    kvx_layout_params_t a =
        small_params(KVX_LAYOUT_BLOCK_MAJOR, KVX_LAYOUT_NHD);
    kvx_layout_params_t b;

    b = a;
    b.order = KVX_LAYOUT_LAYER_MAJOR;
    b.block_tokens = 32;
    check_why(&a, &b, KVX_OK, "");
    b = a;
    b.head_dim = 64;
    check_why(&a, &b, KVX_ERR_LAYOUT_MISMATCH, "head_dim 128 != 64");
    b = a;
    b.num_layers = 80;
    b.head_dim = 64; /* the first mismatching field is named */
    check_why(&a, &b, KVX_ERR_LAYOUT_MISMATCH, "num_layers 4 != 80");
    b = a;
    b.kv_parts = 1;
    check_why(&a, &b, KVX_ERR_LAYOUT_MISMATCH, "kv_parts 2 != 1");
    b = a;
    b.dtype_size = 1;
    check_why(&a, &b, KVX_ERR_LAYOUT_MISMATCH, "dtype_size 2 != 1");
    b = a;
    b.field_mask |= KVX_LAYOUT_PARAM_FIELD_HEAD_SLICE;
    b.total_heads = 16;
    check_why(&a, &b, KVX_ERR_LAYOUT_MISMATCH, "total_heads 8 != 16");
    b = a;
    b.field_mask |= KVX_LAYOUT_PARAM_FIELD_MODEL_ID;
    b.model_id = 0xabc;
    check_why(&a, &b, KVX_ERR_LAYOUT_MISMATCH, "model_id 0x0 != 0xabc");
}

static void test_layout_check_head_slices(void)
{
    kvx_layout_params_t a =
        small_params(KVX_LAYOUT_BLOCK_MAJOR, KVX_LAYOUT_NHD);
    kvx_layout_params_t b;

    a.field_mask |= KVX_LAYOUT_PARAM_FIELD_HEAD_SLICE;
    a.total_heads = 8;
    a.kv_heads = 4;
    a.head_start = 0;
    b = a;
    b.head_start = 4;
    check_why(&a, &b, KVX_ERR_LAYOUT_MISMATCH,
              "head slices [0,4) and [4,8) do not overlap");
    check_why(&b, &a, KVX_ERR_LAYOUT_MISMATCH,
              "head slices [4,8) and [0,4) do not overlap");
    b.head_start = 3; /* [3, 7) overlaps [0, 4) in head 3 */
    check_why(&a, &b, KVX_OK, "");
    b.kv_heads = 2;
    b.head_start = 1; /* [1, 3) inside [0, 4) */
    check_why(&a, &b, KVX_OK, "");
    check_why(&b, &a, KVX_OK, "");
}

static void test_layout_check_args(void)
{
    kvx_layout_params_t p =
        small_params(KVX_LAYOUT_BLOCK_MAJOR, KVX_LAYOUT_NHD);
    kvx_layout_t a = make(&p), b;
    char why[8];

    p.head_dim = 64;
    b = make(&p);
    CU_ASSERT_EQUAL(kvx_layout_check(NULL, &a, NULL, 0), KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_layout_check(&a, NULL, NULL, 0), KVX_ERR_INVALID_PARAM);
    /* Truncated, still terminated. */
    CU_ASSERT_EQUAL(kvx_layout_check(&a, &b, why, 5), KVX_ERR_LAYOUT_MISMATCH);
    CU_ASSERT_STRING_EQUAL(why, "head");
    /* why_len 0: the buffer is not touched. */
    memset(why, 'z', sizeof(why));
    CU_ASSERT_EQUAL(kvx_layout_check(&a, &b, why, 0), KVX_ERR_LAYOUT_MISMATCH);
    CU_ASSERT_EQUAL(why[0], 'z');
}

static const ut_test_t layout_tests[] = {
    UT_TEST(test_layout_init_defaults),
    UT_TEST(test_layout_init_null),
    UT_TEST(test_layout_init_missing_required),
    UT_TEST(test_layout_init_unknown_bits),
    UT_TEST(test_layout_init_zero_fields),
    UT_TEST(test_layout_init_dim_max),
    UT_TEST(test_layout_init_kv_parts),
    UT_TEST(test_layout_init_unknown_enums),
    UT_TEST(test_layout_init_head_slice),
    UT_TEST(test_layout_init_overflow),
    UT_TEST(test_layout_strides_block_major_nhd),
    UT_TEST(test_layout_strides_block_major_hnd),
    UT_TEST(test_layout_strides_layer_major_nhd),
    UT_TEST(test_layout_strides_layer_major_hnd),
    UT_TEST(test_layout_strides_mla),
    UT_TEST(test_layout_offset_values),
    UT_TEST(test_layout_offset_out_of_range),
    UT_TEST(test_layout_offset_bijective),
    UT_TEST(test_layout_hash_ignores_translated_fields),
    UT_TEST(test_layout_hash_covers_model_fields),
    UT_TEST(test_layout_hash_stable),
    UT_TEST(test_layout_check_reasons),
    UT_TEST(test_layout_check_head_slices),
    UT_TEST(test_layout_check_args),
    UT_END,
};

int main(void)
{
    static const ut_suite_t suites[] = {
        {"layout", layout_tests},
        {NULL, NULL},
    };

    return ut_main(suites);
}
