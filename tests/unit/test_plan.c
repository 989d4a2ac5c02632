/* Unit tests for libkvx/plan.c. */
#include "ut.h"

#include <kvx/kvx.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

typedef struct shape {
    kvx_layout_order_t order;
    kvx_layout_token_order_t tok;
    uint32_t layers, parts, bt, total_heads, kv_heads, head_start;
    uint32_t head_dim, dtype, num_blocks;
} shape_t;

/* 4 layers, K+V, 16-token blocks, 8 heads of 128 bf16, 10 blocks. */
static const shape_t SMALL = {
    KVX_LAYOUT_BLOCK_MAJOR, KVX_LAYOUT_NHD, 4, 2, 16, 8, 8, 0, 128, 2, 10,
};

static kvx_layout_t mk(const shape_t *s)
{
    kvx_layout_params_t p;
    kvx_layout_t l;

    memset(&p, 0, sizeof(p));
    p.field_mask =
        KVX_LAYOUT_PARAM_FIELD_NUM_LAYERS | KVX_LAYOUT_PARAM_FIELD_KV_PARTS |
        KVX_LAYOUT_PARAM_FIELD_BLOCK_TOKENS | KVX_LAYOUT_PARAM_FIELD_KV_HEADS |
        KVX_LAYOUT_PARAM_FIELD_HEAD_DIM | KVX_LAYOUT_PARAM_FIELD_DTYPE_SIZE |
        KVX_LAYOUT_PARAM_FIELD_NUM_BLOCKS | KVX_LAYOUT_PARAM_FIELD_ORDER |
        KVX_LAYOUT_PARAM_FIELD_TOKEN_ORDER | KVX_LAYOUT_PARAM_FIELD_HEAD_SLICE;
    p.num_layers = s->layers;
    p.kv_parts = s->parts;
    p.block_tokens = s->bt;
    p.kv_heads = s->kv_heads;
    p.head_dim = s->head_dim;
    p.dtype_size = s->dtype;
    p.num_blocks = s->num_blocks;
    p.order = s->order;
    p.token_order = s->tok;
    p.total_heads = s->total_heads;
    p.head_start = s->head_start;
    CU_ASSERT_EQUAL_FATAL(kvx_layout_init(&l, &p), KVX_OK);
    return l;
}

static kvx_plan_request_t req_for(const kvx_layout_t *src,
                                  const kvx_layout_t *dst, const uint32_t *sb,
                                  uint32_t nsb, const uint32_t *db,
                                  uint32_t ndb)
{
    kvx_plan_request_t r;

    memset(&r, 0, sizeof(r));
    r.src = src;
    r.dst = dst;
    r.src_blocks = sb;
    r.n_src_blocks = nsb;
    r.dst_blocks = db;
    r.n_dst_blocks = ndb;
    return r;
}

/* Builds @p r and returns the segment count (SIZE_MAX on failure). */
static size_t build(kvx_plan_h plan, const kvx_plan_request_t *r)
{
    size_t n;

    CU_ASSERT_EQUAL(kvx_plan_build(plan, r), KVX_OK);
    if (kvx_plan_segments(plan, &n) == NULL) {
        return SIZE_MAX;
    }
    return n;
}

static kvx_plan_h new_plan(void)
{
    kvx_plan_h plan = NULL;

    CU_ASSERT_EQUAL_FATAL(kvx_plan_create(&plan), KVX_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(plan);
    return plan;
}

static const uint32_t ids_0_9[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};

static void test_plan_create_destroy(void)
{
    kvx_plan_h plan = new_plan();
    size_t n = 99;

    CU_ASSERT_EQUAL(kvx_plan_create(NULL), KVX_ERR_INVALID_PARAM);
    kvx_plan_segments(plan, &n);
    CU_ASSERT_EQUAL(n, 0);
    CU_ASSERT_EQUAL(kvx_plan_bytes(plan), 0);
    n = 99;
    CU_ASSERT_PTR_NULL(kvx_plan_segments(NULL, &n));
    CU_ASSERT_EQUAL(n, 0);
    CU_ASSERT_EQUAL(kvx_plan_bytes(NULL), 0);
    kvx_plan_destroy(plan);
    kvx_plan_destroy(NULL);
}

static void test_plan_build_invalid_params(void)
{
    kvx_layout_t l = mk(&SMALL);
    kvx_plan_h plan = new_plan();
    kvx_plan_request_t ok = req_for(&l, &l, ids_0_9, 2, ids_0_9, 2), r;

    CU_ASSERT_EQUAL(kvx_plan_build(plan, &ok), KVX_OK);
    CU_ASSERT_EQUAL(kvx_plan_build(NULL, &ok), KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_plan_build(plan, NULL), KVX_ERR_INVALID_PARAM);
    r = ok;
    r.field_mask = 1u << 2;
    CU_ASSERT_EQUAL(kvx_plan_build(plan, &r), KVX_ERR_INVALID_PARAM);
    r = ok;
    r.src = NULL;
    CU_ASSERT_EQUAL(kvx_plan_build(plan, &r), KVX_ERR_INVALID_PARAM);
    r = ok;
    r.dst = NULL;
    CU_ASSERT_EQUAL(kvx_plan_build(plan, &r), KVX_ERR_INVALID_PARAM);
    r = ok;
    r.src_blocks = NULL;
    CU_ASSERT_EQUAL(kvx_plan_build(plan, &r), KVX_ERR_INVALID_PARAM);
    r = ok;
    r.n_src_blocks = 0;
    CU_ASSERT_EQUAL(kvx_plan_build(plan, &r), KVX_ERR_INVALID_PARAM);
    r = ok;
    r.dst_blocks = NULL;
    CU_ASSERT_EQUAL(kvx_plan_build(plan, &r), KVX_ERR_INVALID_PARAM);
    r = ok;
    r.n_dst_blocks = 0;
    CU_ASSERT_EQUAL(kvx_plan_build(plan, &r), KVX_ERR_INVALID_PARAM);
    r = ok;
    r.field_mask = KVX_PLAN_REQ_FIELD_LAYERS;
    r.layer_begin = r.layer_end = 2; /* empty */
    CU_ASSERT_EQUAL(kvx_plan_build(plan, &r), KVX_ERR_INVALID_PARAM);
    r.layer_begin = 3;
    r.layer_end = 1; /* reversed */
    CU_ASSERT_EQUAL(kvx_plan_build(plan, &r), KVX_ERR_INVALID_PARAM);
    r = ok;
    r.field_mask = KVX_PLAN_REQ_FIELD_TOKENS;
    r.num_tokens = 0;
    CU_ASSERT_EQUAL(kvx_plan_build(plan, &r), KVX_ERR_INVALID_PARAM);
    /* Fields whose bit is clear are ignored. */
    r = ok;
    r.layer_begin = 9;
    r.num_tokens = 0;
    CU_ASSERT_EQUAL(kvx_plan_build(plan, &r), KVX_OK);
    kvx_plan_destroy(plan);
}

static void test_plan_build_mismatch(void)
{
    shape_t s = SMALL;
    kvx_layout_t a = mk(&SMALL), b;
    kvx_plan_h plan = new_plan();
    kvx_plan_request_t r;

    s.head_dim = 64;
    b = mk(&s);
    r = req_for(&a, &b, ids_0_9, 1, ids_0_9, 1);
    CU_ASSERT_EQUAL(kvx_plan_build(plan, &r), KVX_ERR_LAYOUT_MISMATCH);
    s = SMALL;
    s.kv_heads = 4;
    a = mk(&s);
    s.head_start = 4;
    b = mk(&s);
    r = req_for(&a, &b, ids_0_9, 1, ids_0_9, 1);
    CU_ASSERT_EQUAL(kvx_plan_build(plan, &r), KVX_ERR_LAYOUT_MISMATCH);
    kvx_plan_destroy(plan);
}

static void test_plan_build_out_of_range(void)
{
    kvx_layout_t l = mk(&SMALL);
    kvx_plan_h plan = new_plan();
    const uint32_t bad[] = {0, 10};
    const uint32_t huge[] = {UINT32_MAX};
    kvx_plan_request_t r;

    r = req_for(&l, &l, bad, 2, ids_0_9, 2);
    CU_ASSERT_EQUAL(kvx_plan_build(plan, &r), KVX_ERR_OUT_OF_RANGE);
    r = req_for(&l, &l, ids_0_9, 2, bad, 2);
    CU_ASSERT_EQUAL(kvx_plan_build(plan, &r), KVX_ERR_OUT_OF_RANGE);
    r = req_for(&l, &l, huge, 1, ids_0_9, 1);
    CU_ASSERT_EQUAL(kvx_plan_build(plan, &r), KVX_ERR_OUT_OF_RANGE);
    /* Every listed id is checked, even one past the tokens moved. */
    r = req_for(&l, &l, bad, 2, ids_0_9, 2);
    r.field_mask = KVX_PLAN_REQ_FIELD_TOKENS;
    r.num_tokens = 1;
    CU_ASSERT_EQUAL(kvx_plan_build(plan, &r), KVX_ERR_OUT_OF_RANGE);

    r = req_for(&l, &l, ids_0_9, 2, ids_0_9, 2);
    r.field_mask = KVX_PLAN_REQ_FIELD_LAYERS;
    r.layer_begin = 2;
    r.layer_end = 5;
    CU_ASSERT_EQUAL(kvx_plan_build(plan, &r), KVX_ERR_OUT_OF_RANGE);
    r.layer_begin = 4;
    r.layer_end = UINT32_MAX;
    CU_ASSERT_EQUAL(kvx_plan_build(plan, &r), KVX_ERR_OUT_OF_RANGE);
    r.layer_begin = 3;
    r.layer_end = 4;
    CU_ASSERT_EQUAL(kvx_plan_build(plan, &r), KVX_OK);

    r = req_for(&l, &l, ids_0_9, 2, ids_0_9, 3);
    r.field_mask = KVX_PLAN_REQ_FIELD_TOKENS;
    r.num_tokens = 33; /* source holds 32 */
    CU_ASSERT_EQUAL(kvx_plan_build(plan, &r), KVX_ERR_OUT_OF_RANGE);
    r = req_for(&l, &l, ids_0_9, 3, ids_0_9, 2);
    r.field_mask = KVX_PLAN_REQ_FIELD_TOKENS;
    r.num_tokens = 33; /* destination holds 32 */
    CU_ASSERT_EQUAL(kvx_plan_build(plan, &r), KVX_ERR_OUT_OF_RANGE);
    r.num_tokens = UINT32_MAX;
    CU_ASSERT_EQUAL(kvx_plan_build(plan, &r), KVX_ERR_OUT_OF_RANGE);
    r.num_tokens = 32;
    CU_ASSERT_EQUAL(kvx_plan_build(plan, &r), KVX_OK);
    kvx_plan_destroy(plan);
}

static void test_plan_build_error_empties(void)
{
    kvx_layout_t l = mk(&SMALL);
    kvx_plan_h plan = new_plan();
    const uint32_t bad[] = {10};
    kvx_plan_request_t r = req_for(&l, &l, ids_0_9, 2, ids_0_9, 2);
    size_t n;

    CU_ASSERT_EQUAL(build(plan, &r), 1);
    CU_ASSERT_NOT_EQUAL(kvx_plan_bytes(plan), 0);
    r.src_blocks = bad;
    r.n_src_blocks = 1;
    CU_ASSERT_EQUAL(kvx_plan_build(plan, &r), KVX_ERR_OUT_OF_RANGE);
    kvx_plan_segments(plan, &n);
    CU_ASSERT_EQUAL(n, 0);
    CU_ASSERT_EQUAL(kvx_plan_bytes(plan), 0);
    kvx_plan_destroy(plan);
}

static void test_plan_merge_contiguous_block_major(void)
{
    kvx_layout_t l = mk(&SMALL);
    kvx_plan_h plan = new_plan();
    kvx_plan_request_t r = req_for(&l, &l, ids_0_9 + 2, 6, ids_0_9, 6);
    const kvx_segment_t *seg;

    CU_ASSERT_EQUAL_FATAL(build(plan, &r), 1);
    seg = kvx_plan_segments(plan, NULL);
    CU_ASSERT_EQUAL(seg[0].src_off, 2 * l.block_bytes);
    CU_ASSERT_EQUAL(seg[0].dst_off, 0);
    CU_ASSERT_EQUAL(seg[0].len, 6 * l.block_bytes);
    CU_ASSERT_EQUAL(kvx_plan_bytes(plan), 6 * l.block_bytes);
    kvx_plan_destroy(plan);
}

static void test_plan_scattered_block_major(void)
{
    kvx_layout_t l = mk(&SMALL);
    kvx_plan_h plan = new_plan();
    const uint32_t scattered[] = {5, 2, 9, 0};
    const uint32_t runs[] = {3, 4, 5, 9};
    const uint32_t even[] = {0, 2, 4, 6};
    const kvx_segment_t *seg;
    kvx_plan_request_t r;

    r = req_for(&l, &l, scattered, 4, ids_0_9, 4);
    CU_ASSERT_EQUAL_FATAL(build(plan, &r), 4);
    seg = kvx_plan_segments(plan, NULL);
    for (int i = 0; i < 4; i++) {
        CU_ASSERT_EQUAL(seg[i].src_off, scattered[i] * l.block_bytes);
        CU_ASSERT_EQUAL(seg[i].dst_off, i * l.block_bytes);
        CU_ASSERT_EQUAL(seg[i].len, l.block_bytes);
    }
    r = req_for(&l, &l, runs, 4, ids_0_9, 4);
    CU_ASSERT_EQUAL(build(plan, &r), 2);
    /* Contiguous on one side only: no merge. */
    r = req_for(&l, &l, ids_0_9, 4, even, 4);
    CU_ASSERT_EQUAL(build(plan, &r), 4);
    CU_ASSERT_EQUAL(kvx_plan_bytes(plan), 4 * l.block_bytes);
    kvx_plan_destroy(plan);
}

static void test_plan_layer_range_block_major(void)
{
    kvx_layout_t l = mk(&SMALL);
    kvx_plan_h plan = new_plan();
    kvx_plan_request_t r = req_for(&l, &l, ids_0_9, 3, ids_0_9 + 4, 3);
    const kvx_segment_t *seg;

    r.field_mask = KVX_PLAN_REQ_FIELD_LAYERS;
    r.layer_begin = 1;
    r.layer_end = 3;
    CU_ASSERT_EQUAL_FATAL(build(plan, &r), 3);
    seg = kvx_plan_segments(plan, NULL);
    CU_ASSERT_EQUAL(seg[1].src_off, l.block_bytes + l.stride_layer);
    CU_ASSERT_EQUAL(seg[1].dst_off, 5 * l.block_bytes + l.stride_layer);
    CU_ASSERT_EQUAL(seg[1].len, 2 * l.stride_layer);
    kvx_plan_destroy(plan);
}

static void test_plan_layer_major_same(void)
{
    shape_t s = SMALL;
    kvx_layout_t l;
    kvx_plan_h plan = new_plan();
    kvx_plan_request_t r;
    const kvx_segment_t *seg;

    s.order = KVX_LAYOUT_LAYER_MAJOR;
    l = mk(&s);
    r = req_for(&l, &l, ids_0_9, 6, ids_0_9 + 1, 6);
    CU_ASSERT_EQUAL_FATAL(build(plan, &r), 4 * 2);
    seg = kvx_plan_segments(plan, NULL);
    CU_ASSERT_EQUAL(seg[3].src_off, l.stride_layer + l.stride_part);
    CU_ASSERT_EQUAL(seg[3].dst_off,
                    l.stride_layer + l.stride_part + l.chunk_bytes);
    CU_ASSERT_EQUAL(seg[3].len, 6 * l.chunk_bytes);
    /* Every block of the region: the parts and layers join up too. */
    r = req_for(&l, &l, ids_0_9, 10, ids_0_9, 10);
    CU_ASSERT_EQUAL_FATAL(build(plan, &r), 1);
    seg = kvx_plan_segments(plan, NULL);
    CU_ASSERT_EQUAL(seg[0].len, l.region_bytes);
    kvx_plan_destroy(plan);
}

static void test_plan_cross_arrangement(void)
{
    shape_t s = SMALL;
    kvx_layout_t bm = mk(&SMALL), lm;
    kvx_plan_h plan = new_plan();
    kvx_plan_request_t r;

    s.order = KVX_LAYOUT_LAYER_MAJOR;
    lm = mk(&s);
    r = req_for(&bm, &lm, ids_0_9, 3, ids_0_9, 3);
    CU_ASSERT_EQUAL(build(plan, &r), 3 * 4 * 2);
    CU_ASSERT_EQUAL(kvx_plan_segments(plan, NULL)[1].len, bm.chunk_bytes);
    r = req_for(&lm, &bm, ids_0_9, 3, ids_0_9, 3);
    CU_ASSERT_EQUAL(build(plan, &r), 3 * 4 * 2);
    CU_ASSERT_EQUAL(kvx_plan_bytes(plan), 3 * bm.block_bytes);
    kvx_plan_destroy(plan);
}

/* A decode rank holding heads [2, 6) of a prefill block holding all 8. */
static void test_plan_head_slice_nhd(void)
{
    shape_t s = SMALL;
    kvx_layout_t full = mk(&SMALL), part;
    kvx_plan_h plan = new_plan();
    kvx_plan_request_t r;
    const kvx_segment_t *seg;

    s.kv_heads = 4;
    s.head_start = 2;
    part = mk(&s);
    r = req_for(&full, &part, ids_0_9, 2, ids_0_9, 2);
    CU_ASSERT_EQUAL_FATAL(build(plan, &r), 32 * 4 * 2);
    seg = kvx_plan_segments(plan, NULL);
    CU_ASSERT_EQUAL(seg[0].src_off, 2 * full.head_bytes);
    CU_ASSERT_EQUAL(seg[0].dst_off, 0);
    CU_ASSERT_EQUAL(seg[0].len, 4 * full.head_bytes);
    CU_ASSERT_EQUAL(seg[1].src_off, full.stride_token + 2 * full.head_bytes);
    CU_ASSERT_EQUAL(seg[1].dst_off, part.stride_token);
    CU_ASSERT_EQUAL(kvx_plan_bytes(plan), part.block_bytes * 2);
    /* The other way round. */
    r = req_for(&part, &full, ids_0_9, 2, ids_0_9, 2);
    CU_ASSERT_EQUAL_FATAL(build(plan, &r), 32 * 4 * 2);
    seg = kvx_plan_segments(plan, NULL);
    CU_ASSERT_EQUAL(seg[0].src_off, 0);
    CU_ASSERT_EQUAL(seg[0].dst_off, 2 * full.head_bytes);
    kvx_plan_destroy(plan);
}

static void test_plan_hnd(void)
{
    shape_t s = SMALL;
    kvx_layout_t full, part;
    kvx_plan_h plan = new_plan();
    kvx_plan_request_t r;

    s.tok = KVX_LAYOUT_HND;
    full = mk(&s);
    r = req_for(&full, &full, ids_0_9, 2, ids_0_9 + 5, 2);
    CU_ASSERT_EQUAL(build(plan, &r), 1);
    /* Heads [2, 6) of full blocks are contiguous on both sides: one
     * segment per (block, layer, part). */
    s.kv_heads = 4;
    s.head_start = 2;
    part = mk(&s);
    r = req_for(&full, &part, ids_0_9, 2, ids_0_9, 2);
    CU_ASSERT_EQUAL(build(plan, &r), 2 * 4 * 2);
    CU_ASSERT_EQUAL(kvx_plan_segments(plan, NULL)[0].len,
                    4 * 16 * full.head_bytes);
    /* A partial block: per head. 20 tokens = 16 + 4. */
    r.field_mask = KVX_PLAN_REQ_FIELD_TOKENS;
    r.num_tokens = 20;
    CU_ASSERT_EQUAL(build(plan, &r), 4 * 2 + 4 * 2 * 4);
    CU_ASSERT_EQUAL(kvx_plan_bytes(plan), 20 * 4 * 2 * 4 * full.head_bytes);
    kvx_plan_destroy(plan);
}

static void test_plan_mixed_token_order(void)
{
    shape_t s = SMALL;
    kvx_layout_t nhd, hnd;
    kvx_plan_h plan = new_plan();
    kvx_plan_request_t r;
    const kvx_segment_t *seg;

    s.layers = 1;
    s.bt = 4;
    s.total_heads = s.kv_heads = 2;
    nhd = mk(&s);
    s.tok = KVX_LAYOUT_HND;
    hnd = mk(&s);
    /* 4 tokens x 2 heads x 2 parts, but the last element of K and the
     * first of V are adjacent on both sides: one merge. */
    r = req_for(&nhd, &hnd, ids_0_9, 1, ids_0_9, 1);
    CU_ASSERT_EQUAL_FATAL(build(plan, &r), 4 * 2 * 2 - 1);
    seg = kvx_plan_segments(plan, NULL);
    /* Source order: token 0 head 1 is the second segment. */
    CU_ASSERT_EQUAL(seg[1].src_off, nhd.head_bytes);
    CU_ASSERT_EQUAL(seg[1].dst_off, 4 * hnd.head_bytes);
    CU_ASSERT_EQUAL(seg[1].len, nhd.head_bytes);
    r = req_for(&hnd, &nhd, ids_0_9, 1, ids_0_9, 1);
    CU_ASSERT_EQUAL_FATAL(build(plan, &r), 4 * 2 * 2 - 1);
    seg = kvx_plan_segments(plan, NULL);
    CU_ASSERT_EQUAL(seg[1].src_off, hnd.head_bytes);
    CU_ASSERT_EQUAL(seg[1].dst_off, nhd.stride_token);
    /* One head: tokens are contiguous on both sides again. */
    s.total_heads = s.kv_heads = 1;
    hnd = mk(&s);
    s.tok = KVX_LAYOUT_NHD;
    nhd = mk(&s);
    r = req_for(&hnd, &nhd, ids_0_9, 3, ids_0_9, 3);
    CU_ASSERT_EQUAL(build(plan, &r), 1);
    kvx_plan_destroy(plan);
}

static void test_plan_block_tokens_differ(void)
{
    shape_t s = SMALL;
    kvx_layout_t b16 = mk(&SMALL), b32, l16, l32;
    kvx_plan_h plan = new_plan();
    kvx_plan_request_t r;
    const kvx_segment_t *seg;

    s.bt = 32;
    b32 = mk(&s);
    /* 4 runs x 8 chunks; the end of dst block 3 meets the start of
     * block 4 while the source goes on from block 1 to 2: one merge. */
    r = req_for(&b16, &b32, ids_0_9, 4, ids_0_9 + 3, 2);
    CU_ASSERT_EQUAL_FATAL(build(plan, &r), 4 * 4 * 2 - 1);
    seg = kvx_plan_segments(plan, NULL);
    /* The second source block lands in the second half of dst block 3. */
    CU_ASSERT_EQUAL(seg[8].src_off, b16.block_bytes);
    CU_ASSERT_EQUAL(seg[8].dst_off,
                    3 * b32.block_bytes + 16 * b32.stride_token);
    CU_ASSERT_EQUAL(seg[8].len, 16 * b16.stride_token);
    s.order = KVX_LAYOUT_LAYER_MAJOR;
    l32 = mk(&s);
    s.bt = 16;
    l16 = mk(&s);
    r = req_for(&l16, &l32, ids_0_9, 4, ids_0_9 + 3, 2);
    CU_ASSERT_EQUAL(build(plan, &r), 4 * 2);
    r = req_for(&l32, &l16, ids_0_9, 2, ids_0_9 + 3, 4);
    CU_ASSERT_EQUAL(build(plan, &r), 4 * 2);
    CU_ASSERT_EQUAL(kvx_plan_bytes(plan), 2 * l32.block_bytes);
    /* A 32-token block-major source into two contiguous 16-token
     * layer-major blocks: the halves join, one segment per chunk. */
    r = req_for(&b32, &l16, ids_0_9 + 1, 1, ids_0_9 + 3, 2);
    CU_ASSERT_EQUAL_FATAL(build(plan, &r), 4 * 2);
    seg = kvx_plan_segments(plan, NULL);
    CU_ASSERT_EQUAL(seg[1].src_off, b32.block_bytes + b32.stride_part);
    CU_ASSERT_EQUAL(seg[1].dst_off, l16.stride_part + 3 * l16.chunk_bytes);
    CU_ASSERT_EQUAL(seg[1].len, b32.chunk_bytes);
    /* Not contiguous on the destination: one per (half, layer, part). */
    r.dst_blocks = (const uint32_t[]){7, 3};
    r.n_dst_blocks = 2;
    CU_ASSERT_EQUAL(build(plan, &r), 2 * 4 * 2);
    kvx_plan_destroy(plan);
}

static void test_plan_partial_tokens(void)
{
    kvx_layout_t l = mk(&SMALL);
    kvx_plan_h plan = new_plan();
    kvx_plan_request_t r = req_for(&l, &l, ids_0_9, 2, ids_0_9, 2);
    const kvx_segment_t *seg;

    r.field_mask = KVX_PLAN_REQ_FIELD_TOKENS;
    r.num_tokens = 20;
    /* Block 0 whole, merged with block 1's first chunk (4 tokens), then
     * the other 7 chunks of block 1 on their own. */
    CU_ASSERT_EQUAL_FATAL(build(plan, &r), 1 + 7);
    seg = kvx_plan_segments(plan, NULL);
    CU_ASSERT_EQUAL(seg[0].len, l.block_bytes + 4 * l.stride_token);
    CU_ASSERT_EQUAL(seg[1].src_off, l.block_bytes + l.stride_part);
    CU_ASSERT_EQUAL(seg[1].len, 4 * l.stride_token);
    CU_ASSERT_EQUAL(kvx_plan_bytes(plan), 20 * 4 * 2 * l.stride_token);
    kvx_plan_destroy(plan);
}

static void test_plan_default_tokens(void)
{
    shape_t s = SMALL;
    kvx_layout_t b16 = mk(&SMALL), b32;
    kvx_plan_h plan = new_plan();
    kvx_plan_request_t r;

    s.bt = 32;
    b32 = mk(&s);
    /* 64 tokens on the source, 32 on the destination: 32 move. */
    r = req_for(&b16, &b32, ids_0_9, 4, ids_0_9, 1);
    CU_ASSERT_EQUAL(kvx_plan_build(plan, &r), KVX_OK);
    CU_ASSERT_EQUAL(kvx_plan_bytes(plan), b32.block_bytes);
    r = req_for(&b32, &b16, ids_0_9, 1, ids_0_9, 4);
    CU_ASSERT_EQUAL(kvx_plan_build(plan, &r), KVX_OK);
    CU_ASSERT_EQUAL(kvx_plan_bytes(plan), b32.block_bytes);
    kvx_plan_destroy(plan);
}

static void test_plan_reuse_buffer(void)
{
    shape_t s = SMALL;
    kvx_layout_t bm = mk(&SMALL), lm;
    kvx_plan_h plan = new_plan();
    kvx_plan_request_t r;
    const kvx_segment_t *first;

    s.order = KVX_LAYOUT_LAYER_MAJOR;
    lm = mk(&s);
    r = req_for(&bm, &lm, ids_0_9, 10, ids_0_9, 10);
    CU_ASSERT_EQUAL(build(plan, &r), 10 * 4 * 2);
    first = kvx_plan_segments(plan, NULL);
    CU_ASSERT_EQUAL(build(plan, &r), 10 * 4 * 2);
    CU_ASSERT_PTR_EQUAL(kvx_plan_segments(plan, NULL), first);
    r = req_for(&bm, &bm, ids_0_9, 1, ids_0_9, 1);
    CU_ASSERT_EQUAL(build(plan, &r), 1);
    CU_ASSERT_PTR_EQUAL(kvx_plan_segments(plan, NULL), first);
    kvx_plan_destroy(plan);
}

static double now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* Plans @p r a few times and prints the count and the best time. */
static size_t time_build(kvx_plan_h plan, const kvx_plan_request_t *r,
                         const char *what)
{
    double best = 1e30;
    size_t n = 0;

    for (int i = 0; i < 5; i++) {
        double t0 = now_us();

        CU_ASSERT_EQUAL(kvx_plan_build(plan, r), KVX_OK);
        t0 = now_us() - t0;
        best = t0 < best ? t0 : best;
    }
    kvx_plan_segments(plan, &n);
    printf("\n    70B 4k tokens, %-34s %8zu segments %9.1f us", what, n, best);
    return n;
}

/* Llama-3.1-70B: 80 layers, 8 kv heads of 128 bf16, 16-token blocks;
 * 4096 tokens = 256 blocks. Counts are checked, times only printed. */
static void test_plan_llama70b_shapes(void)
{
    static uint32_t fwd[256], rev[256];
    shape_t s = {KVX_LAYOUT_BLOCK_MAJOR,
                 KVX_LAYOUT_NHD,
                 80,
                 2,
                 16,
                 8,
                 8,
                 0,
                 128,
                 2,
                 1024};
    kvx_layout_t bm, lm, lm_tp, hnd_tp;
    kvx_plan_h plan = new_plan();
    kvx_plan_request_t r;

    for (uint32_t i = 0; i < 256; i++) {
        fwd[i] = 100 + i;
        rev[i] = 1000 - 3 * i;
    }
    bm = mk(&s);
    s.order = KVX_LAYOUT_LAYER_MAJOR;
    lm = mk(&s);
    s.kv_heads = 2;
    s.head_start = 2; /* decode rank 1 of TP=4 */
    lm_tp = mk(&s);
    s.tok = KVX_LAYOUT_HND;
    hnd_tp = mk(&s);

    r = req_for(&bm, &bm, fwd, 256, fwd, 256);
    CU_ASSERT_EQUAL(time_build(plan, &r, "block-major, contiguous:"), 1);
    r = req_for(&bm, &bm, rev, 256, fwd, 256);
    CU_ASSERT_EQUAL(time_build(plan, &r, "block-major, scattered:"), 256);
    r = req_for(&lm, &lm, fwd, 256, fwd, 256);
    CU_ASSERT_EQUAL(time_build(plan, &r, "layer-major, contiguous:"), 160);
    r = req_for(&lm, &lm, rev, 256, fwd, 256);
    CU_ASSERT_EQUAL(time_build(plan, &r, "layer-major, scattered:"), 256 * 160);
    r = req_for(&bm, &lm, fwd, 256, fwd, 256);
    CU_ASSERT_EQUAL(time_build(plan, &r, "block- to layer-major:"), 256 * 160);
    r = req_for(&bm, &lm_tp, fwd, 256, fwd, 256);
    CU_ASSERT_EQUAL(time_build(plan, &r, "to layer-major TP rank (NHD):"),
                    4096 * 160);
    r = req_for(&bm, &hnd_tp, fwd, 256, fwd, 256);
    CU_ASSERT_EQUAL(time_build(plan, &r, "to layer-major TP rank (HND):"),
                    4096 * 160 * 2);
    printf("\n    ");
    kvx_plan_destroy(plan);
}

static const ut_test_t plan_tests[] = {
    UT_TEST(test_plan_create_destroy),
    UT_TEST(test_plan_build_invalid_params),
    UT_TEST(test_plan_build_mismatch),
    UT_TEST(test_plan_build_out_of_range),
    UT_TEST(test_plan_build_error_empties),
    UT_TEST(test_plan_merge_contiguous_block_major),
    UT_TEST(test_plan_scattered_block_major),
    UT_TEST(test_plan_layer_range_block_major),
    UT_TEST(test_plan_layer_major_same),
    UT_TEST(test_plan_cross_arrangement),
    UT_TEST(test_plan_head_slice_nhd),
    UT_TEST(test_plan_hnd),
    UT_TEST(test_plan_mixed_token_order),
    UT_TEST(test_plan_block_tokens_differ),
    UT_TEST(test_plan_partial_tokens),
    UT_TEST(test_plan_default_tokens),
    UT_TEST(test_plan_reuse_buffer),
    UT_TEST(test_plan_llama70b_shapes),
    UT_END,
};

int main(void)
{
    static const ut_suite_t suites[] = {
        {"plan", plan_tests},
        {NULL, NULL},
    };

    return ut_main(suites);
}
