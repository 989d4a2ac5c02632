/*
 * Property test for libkvx/plan.c: random layout pairs, the plan executed
 * with memcpy and compared with a reference copy made element by element
 * from kvx_layout_offset(). Seeded by KVX_TEST_SEED (printed).
 */
#include "ut.h"

#include <inttypes.h>
#include <kvx/kvx.h>
#include <stdlib.h>
#include <string.h>

#define SEED_DEFAULT 0x6b76785f706c616eull /* "kvx_plan" */
#define ITERATIONS 20000
#define SENTINEL 0xee

static uint64_t rng_state;
static uint64_t seed;

/* splitmix64: small, good enough, identical everywhere. */
static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint32_t below(uint32_t n)
{
    return (uint32_t)(rnd() % n);
}

typedef struct side {
    kvx_layout_t l;
    uint8_t *mem;
    uint32_t *blocks;
    uint32_t n_blocks;
} side_t;

typedef struct model {
    uint32_t layers, parts, total_heads, head_dim, dtype;
} model_t;

static kvx_status_t init_side(side_t *s, const model_t *m,
                              kvx_layout_order_t order,
                              kvx_layout_token_order_t tok, uint32_t bt,
                              uint32_t h0, uint32_t h1, uint32_t num_blocks)
{
    kvx_layout_params_t p;

    memset(&p, 0, sizeof(p));
    p.field_mask =
        KVX_LAYOUT_PARAM_FIELD_NUM_LAYERS | KVX_LAYOUT_PARAM_FIELD_KV_PARTS |
        KVX_LAYOUT_PARAM_FIELD_BLOCK_TOKENS | KVX_LAYOUT_PARAM_FIELD_KV_HEADS |
        KVX_LAYOUT_PARAM_FIELD_HEAD_DIM | KVX_LAYOUT_PARAM_FIELD_DTYPE_SIZE |
        KVX_LAYOUT_PARAM_FIELD_NUM_BLOCKS | KVX_LAYOUT_PARAM_FIELD_ORDER |
        KVX_LAYOUT_PARAM_FIELD_TOKEN_ORDER | KVX_LAYOUT_PARAM_FIELD_HEAD_SLICE |
        KVX_LAYOUT_PARAM_FIELD_MODEL_ID;
    p.num_layers = m->layers;
    p.kv_parts = m->parts;
    p.block_tokens = bt;
    p.kv_heads = h1 - h0;
    p.head_dim = m->head_dim;
    p.dtype_size = m->dtype;
    p.num_blocks = num_blocks;
    p.order = order;
    p.token_order = tok;
    p.total_heads = m->total_heads;
    p.head_start = h0;
    p.model_id = 0x1234;
    return kvx_layout_init(&s->l, &p);
}

/* n distinct ids below num_blocks: contiguous, reversed or scattered. */
static void pick_blocks(side_t *s, uint32_t n)
{
    uint32_t nb = s->l.num_blocks, start;

    s->n_blocks = n;
    switch (below(3)) {
    case 0:
        start = below(nb - n + 1);
        for (uint32_t i = 0; i < n; i++) {
            s->blocks[i] = start + i;
        }
        break;
    case 1:
        start = below(nb - n + 1);
        for (uint32_t i = 0; i < n; i++) {
            s->blocks[i] = start + n - 1 - i;
        }
        break;
    default: {
        uint32_t pool[64];

        for (uint32_t i = 0; i < nb; i++) {
            pool[i] = i;
        }
        for (uint32_t i = 0; i < n; i++) {
            uint32_t j = i + below(nb - i), tmp = pool[i];

            pool[i] = pool[j];
            pool[j] = tmp;
            s->blocks[i] = pool[i];
        }
        break;
    }
    }
}

/* Copies one head of one token into @p want and marks it in @p cover. */
static int reference_element(const side_t *src, const side_t *dst, uint32_t sb,
                             uint32_t db, uint32_t l, uint32_t p, uint32_t st,
                             uint32_t dt, uint32_t h, uint8_t *want,
                             uint8_t *cover)
{
    uint64_t so, dof;

    if (kvx_layout_offset(&src->l, sb, l, p, st, h, &so) != KVX_OK ||
        kvx_layout_offset(&dst->l, db, l, p, dt, h, &dof) != KVX_OK) {
        return 0;
    }
    memcpy(want + dof, src->mem + so, src->l.head_bytes);
    for (uint64_t i = 0; i < dst->l.head_bytes; i++) {
        if (cover[dof + i]++ != 0) {
            return 0; /* distinct ids never overlap */
        }
    }
    return 1;
}

/* Reference copy into @p want, marking covered destination bytes. */
static int reference_copy(const kvx_plan_request_t *r, const side_t *src,
                          const side_t *dst, uint64_t tokens, uint8_t *want,
                          uint8_t *cover, uint64_t *covered_p)
{
    const kvx_layout_t *sl = &src->l, *dl = &dst->l;
    uint32_t l0 = 0, l1 = sl->num_layers;
    uint32_t h0, h1;
    uint64_t covered = 0;

    if (r->field_mask & KVX_PLAN_REQ_FIELD_LAYERS) {
        l0 = r->layer_begin;
        l1 = r->layer_end;
    }
    h0 = sl->head_start > dl->head_start ? sl->head_start : dl->head_start;
    h1 = sl->head_start + sl->kv_heads;
    if (h1 > dl->head_start + dl->kv_heads) {
        h1 = dl->head_start + dl->kv_heads;
    }
    for (uint64_t t = 0; t < tokens; t++) {
        uint32_t sb = src->blocks[t / sl->block_tokens];
        uint32_t st = (uint32_t)(t % sl->block_tokens);
        uint32_t db = dst->blocks[t / dl->block_tokens];
        uint32_t dt = (uint32_t)(t % dl->block_tokens);

        for (uint32_t l = l0; l < l1; l++) {
            for (uint32_t p = 0; p < sl->kv_parts; p++) {
                for (uint32_t h = h0; h < h1; h++) {
                    if (!reference_element(src, dst, sb, db, l, p, st, dt, h,
                                           want, cover)) {
                        return 0;
                    }
                    covered += dl->head_bytes;
                }
            }
        }
    }
    *covered_p = covered;
    return 1;
}

/*
 * Executes the plan into dst->mem (pre-filled with the sentinel) and checks
 * it against the reference; returns 1 if everything holds.
 */
static int execute_and_check(kvx_plan_h plan, const kvx_plan_request_t *r,
                             const side_t *src, const side_t *dst,
                             uint64_t tokens)
{
    uint64_t dst_bytes = dst->l.region_bytes, covered = 0, sum = 0;
    uint8_t *want = malloc(dst_bytes), *cover = calloc(dst_bytes, 1);
    const kvx_segment_t *seg;
    size_t n;
    int ok = 0;

    CU_ASSERT_PTR_NOT_NULL_FATAL(want);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cover);
    memset(want, SENTINEL, dst_bytes);
    memset(dst->mem, SENTINEL, dst_bytes);
    if (!reference_copy(r, src, dst, tokens, want, cover, &covered)) {
        fprintf(stderr, "reference copy failed\n");
        goto out;
    }
    seg = kvx_plan_segments(plan, &n);
    for (size_t i = 0; i < n; i++) {
        if (seg[i].len == 0 || seg[i].src_off > src->l.region_bytes ||
            seg[i].len > src->l.region_bytes - seg[i].src_off ||
            seg[i].dst_off > dst_bytes ||
            seg[i].len > dst_bytes - seg[i].dst_off) {
            fprintf(stderr, "segment %zu outside a region\n", i);
            goto out;
        }
        if (i > 0 && seg[i - 1].src_off + seg[i - 1].len == seg[i].src_off &&
            seg[i - 1].dst_off + seg[i - 1].len == seg[i].dst_off) {
            fprintf(stderr, "segment %zu should have been merged\n", i);
            goto out;
        }
        /* Every byte written is requested, and written once: cover goes
         * 1 -> 2 here, anything else is an overlap or a stray write. */
        for (uint64_t b = 0; b < seg[i].len; b++) {
            if (cover[seg[i].dst_off + b]++ != 1) {
                fprintf(stderr,
                        "segment %zu: dst byte %" PRIu64
                        " not requested or written twice\n",
                        i, seg[i].dst_off + b);
                goto out;
            }
        }
        memcpy(dst->mem + seg[i].dst_off, src->mem + seg[i].src_off,
               seg[i].len);
        sum += seg[i].len;
    }
    if (sum != covered || kvx_plan_bytes(plan) != covered) {
        fprintf(stderr,
                "bytes: segments %" PRIu64 ", plan %" PRIu64
                ", reference %" PRIu64 "\n",
                sum, kvx_plan_bytes(plan), covered);
        goto out;
    }
    /* Same content, and the sentinel everywhere nothing was requested. */
    if (memcmp(want, dst->mem, dst_bytes) != 0) {
        fprintf(stderr, "destination differs from the reference\n");
        goto out;
    }
    ok = 1;
out:
    free(cover);
    free(want);
    return ok;
}

static void fill_source(side_t *s)
{
    uint64_t salt = rnd();

    for (uint64_t i = 0; i < s->l.region_bytes; i++) {
        uint64_t z = (i + salt) * 0x9e3779b97f4a7c15ull;

        s->mem[i] = (uint8_t)(z >> 56);
    }
}

static void describe(const char *what, const side_t *s)
{
    fprintf(stderr, "  %s: %s %s bt %u heads [%u,%u) of %u, %u blocks {", what,
            s->l.order == KVX_LAYOUT_BLOCK_MAJOR ? "block" : "layer",
            s->l.token_order == KVX_LAYOUT_NHD ? "NHD" : "HND",
            s->l.block_tokens, s->l.head_start, s->l.head_start + s->l.kv_heads,
            s->l.total_heads, s->l.num_blocks);
    for (uint32_t i = 0; i < s->n_blocks; i++) {
        fprintf(stderr, " %u", s->blocks[i]);
    }
    fprintf(stderr, " }\n");
}

static void test_plan_property_random(void)
{
    static const uint32_t bts[] = {1, 2, 3, 4, 8, 16, 16, 32, 32};
    uint32_t src_ids[64], dst_ids[64];
    kvx_plan_h plan = NULL;
    unsigned n_ok = 0, n_mismatch = 0;
    size_t n_segs = 0;

    CU_ASSERT_EQUAL_FATAL(kvx_plan_create(&plan), KVX_OK);
    for (int it = 0; it < ITERATIONS; it++) {
        model_t m;
        side_t sides[2], *src = &sides[0], *dst = &sides[1];
        uint32_t sh[2][2];
        uint64_t tokens, cap;
        kvx_plan_request_t r;
        kvx_status_t status;
        size_t n;

        m.layers = 1 + below(5);
        m.parts = 1 + below(2);
        m.total_heads = 1 + below(8);
        m.head_dim = 1 + below(4);
        m.dtype = 1u << below(3);
        for (int i = 0; i < 2; i++) {
            /* Half the time every head; else a tensor-parallel slice. */
            if (below(2) == 0) {
                sh[i][0] = 0;
                sh[i][1] = m.total_heads;
            } else {
                sh[i][0] = below(m.total_heads);
                sh[i][1] = sh[i][0] + 1 + below(m.total_heads - sh[i][0]);
            }
            CU_ASSERT_EQUAL_FATAL(
                init_side(&sides[i], &m, (kvx_layout_order_t)below(2),
                          (kvx_layout_token_order_t)below(2),
                          bts[below(sizeof(bts) / sizeof(bts[0]))], sh[i][0],
                          sh[i][1], 1 + below(16)),
                KVX_OK);
        }
        src->blocks = src_ids;
        dst->blocks = dst_ids;

        cap = (uint64_t)src->l.num_blocks * src->l.block_tokens;
        if (cap > (uint64_t)dst->l.num_blocks * dst->l.block_tokens) {
            cap = (uint64_t)dst->l.num_blocks * dst->l.block_tokens;
        }
        tokens = 1 + rnd() % cap;
        for (int i = 0; i < 2; i++) {
            uint32_t bt = sides[i].l.block_tokens;
            uint32_t need = (uint32_t)((tokens + bt - 1) / bt);

            /* Sometimes one spare block past the tokens. */
            if (need < sides[i].l.num_blocks && below(4) == 0) {
                need++;
            }
            pick_blocks(&sides[i], need);
        }

        memset(&r, 0, sizeof(r));
        r.src = &src->l;
        r.dst = &dst->l;
        r.src_blocks = src->blocks;
        r.n_src_blocks = src->n_blocks;
        r.dst_blocks = dst->blocks;
        r.n_dst_blocks = dst->n_blocks;
        if (below(2) == 0) {
            r.field_mask |= KVX_PLAN_REQ_FIELD_LAYERS;
            r.layer_begin = below(m.layers);
            r.layer_end = r.layer_begin + 1 + below(m.layers - r.layer_begin);
        }
        cap = (uint64_t)src->n_blocks * src->l.block_tokens;
        if (cap > (uint64_t)dst->n_blocks * dst->l.block_tokens) {
            cap = (uint64_t)dst->n_blocks * dst->l.block_tokens;
        }
        if (tokens != cap || below(2) == 0) {
            r.field_mask |= KVX_PLAN_REQ_FIELD_TOKENS;
            r.num_tokens = (uint32_t)tokens;
        }

        status = kvx_plan_build(plan, &r);
        if (sh[0][0] >= sh[1][1] || sh[1][0] >= sh[0][1]) {
            CU_ASSERT_EQUAL(status, KVX_ERR_LAYOUT_MISMATCH);
            n_mismatch++;
            continue;
        }
        CU_ASSERT_EQUAL_FATAL(status, KVX_OK);

        src->mem = malloc(src->l.region_bytes);
        dst->mem = malloc(dst->l.region_bytes);
        CU_ASSERT_PTR_NOT_NULL_FATAL(src->mem);
        CU_ASSERT_PTR_NOT_NULL_FATAL(dst->mem);
        fill_source(src);
        if (!execute_and_check(plan, &r, src, dst, tokens)) {
            fprintf(stderr,
                    "plan_property: iteration %d failed (seed %" PRIu64
                    "): %u layers, %u parts, head %u x %u B, "
                    "layers [%u,%u), %" PRIu64 " tokens\n",
                    it, seed, m.layers, m.parts, m.head_dim, m.dtype,
                    r.layer_begin, r.layer_end, tokens);
            describe("src", src);
            describe("dst", dst);
            CU_FAIL("plan differs from the reference copy");
            free(src->mem);
            free(dst->mem);
            break;
        }
        kvx_plan_segments(plan, &n);
        n_segs += n;
        n_ok++;
        free(src->mem);
        free(dst->mem);
    }
    printf("\n    %u plans checked (%zu segments), %u mismatches refused\n"
           "    ",
           n_ok, n_segs, n_mismatch);
    CU_ASSERT(n_ok > ITERATIONS / 2);
    kvx_plan_destroy(plan);
}

/*
 * Every decode rank of a TP group takes its slice of one prefill region;
 * together the ranks must reassemble exactly the prefill's bytes.
 */
static void test_plan_property_tp_ranks(void)
{
    static const uint32_t ids[] = {3, 4, 5, 0, 7};
    static const model_t m = {3, 2, 8, 4, 2};
    side_t pre, dec;
    kvx_plan_h plan = NULL;
    uint8_t *whole;

    CU_ASSERT_EQUAL_FATAL(kvx_plan_create(&plan), KVX_OK);
    CU_ASSERT_EQUAL_FATAL(init_side(&pre, &m, KVX_LAYOUT_BLOCK_MAJOR,
                                    KVX_LAYOUT_NHD, 16, 0, 8, 8),
                          KVX_OK);
    pre.mem = malloc(pre.l.region_bytes);
    whole = calloc(pre.l.region_bytes, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(pre.mem);
    CU_ASSERT_PTR_NOT_NULL_FATAL(whole);
    fill_source(&pre);
    pre.blocks = (uint32_t *)ids;
    pre.n_blocks = 5;

    for (uint32_t tp = 1; tp <= 8; tp *= 2) {
        uint32_t hpr = 8 / tp;

        memset(whole, 0, pre.l.region_bytes);
        for (uint32_t rank = 0; rank < tp; rank++) {
            uint32_t dst_ids[10] = {9, 8, 7, 6, 5, 4, 3, 2, 1, 0};
            kvx_plan_request_t r;
            const kvx_segment_t *seg;
            size_t n;

            CU_ASSERT_EQUAL_FATAL(
                init_side(&dec, &m, KVX_LAYOUT_LAYER_MAJOR,
                          rank % 2 ? KVX_LAYOUT_HND : KVX_LAYOUT_NHD, 8,
                          rank * hpr, (rank + 1) * hpr, 10),
                KVX_OK);
            dec.blocks = dst_ids;
            dec.n_blocks = 10;
            dec.mem = malloc(dec.l.region_bytes);
            CU_ASSERT_PTR_NOT_NULL_FATAL(dec.mem);
            memset(&r, 0, sizeof(r));
            r.src = &pre.l;
            r.dst = &dec.l;
            r.src_blocks = pre.blocks;
            r.n_src_blocks = pre.n_blocks;
            r.dst_blocks = dec.blocks;
            r.n_dst_blocks = dec.n_blocks;
            CU_ASSERT_EQUAL_FATAL(kvx_plan_build(plan, &r), KVX_OK);
            CU_ASSERT(execute_and_check(plan, &r, &pre, &dec, 80));
            /* Mark the prefill bytes this rank read. */
            seg = kvx_plan_segments(plan, &n);
            for (size_t i = 0; i < n; i++) {
                for (uint64_t b = 0; b < seg[i].len; b++) {
                    whole[seg[i].src_off + b]++;
                }
            }
            free(dec.mem);
        }
        /* The 5 listed blocks were read exactly once, nothing else. */
        for (uint32_t b = 0; b < pre.l.num_blocks; b++) {
            int listed = b == 3 || b == 4 || b == 5 || b == 0 || b == 7;

            for (uint64_t i = 0; i < pre.l.block_bytes; i++) {
                if (whole[b * pre.l.block_bytes + i] != listed) {
                    CU_FAIL("TP ranks do not partition the prefill blocks");
                    b = pre.l.num_blocks;
                    break;
                }
            }
        }
    }
    free(whole);
    free(pre.mem);
    kvx_plan_destroy(plan);
}

static const ut_test_t plan_property_tests[] = {
    UT_TEST(test_plan_property_random),
    UT_TEST(test_plan_property_tp_ranks),
    UT_END,
};

int main(void)
{
    static const ut_suite_t suites[] = {
        {"plan", plan_property_tests},
        {NULL, NULL},
    };
    const char *env = getenv("KVX_TEST_SEED");
    char *end;

    seed = SEED_DEFAULT;
    if (env != NULL && *env != '\0') {
        seed = strtoull(env, &end, 0);
        if (*end != '\0') {
            fprintf(stderr, "KVX_TEST_SEED: not a number: %s\n", env);
            return 1;
        }
    }
    printf("plan_property: KVX_TEST_SEED=%" PRIu64 "\n", seed);
    rng_state = seed;
    return ut_main(suites);
}
