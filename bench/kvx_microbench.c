/*
 * kvx-microbench: the pure-logic hot paths, single-threaded on one core.
 *   allocator  block reserve + release cycles per second
 *   prefix     key lookups per second (longest cached prefix)
 *   planner    plans and segments per second, 4k-token Llama-3.1-70B
 *   keys       vLLM-compatible block keys per second
 * Figures vary with the machine and its load: compare them within one run.
 * `--quick` runs a few iterations only (the test suite's smoke run).
 */
#include <kvx/kvx.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FAR_FUTURE UINT64_MAX

static int quick;

static double now_s(void)
{
    return (double)kvx_clock_monotonic_ns(NULL) / 1e9;
}

static void die(kvx_status_t st, const char *what)
{
    fprintf(stderr, "kvx-microbench: %s: %s\n", what, kvx_status_string(st));
    exit(1);
}

#define CHECK(call, what)                                                      \
    do {                                                                       \
        kvx_status_t st_ = (call);                                             \
        if (st_ != KVX_OK) {                                                   \
            die(st_, what);                                                    \
        }                                                                      \
    } while (0)

static kvx_alloc_h make_alloc(uint32_t blocks)
{
    kvx_alloc_params_t ap = {
        .field_mask = KVX_ALLOC_PARAM_FIELD_BLOCK_COUNT,
        .block_count = blocks,
    };
    kvx_alloc_h a;

    CHECK(kvx_alloc_create(&ap, &a), "alloc create");
    return a;
}

/* reserve(batch) -> commit -> unpin every block: the full life of a block
 * reserved for a transfer and released after use. */
static void bench_alloc_cycle(uint32_t batch)
{
    kvx_alloc_h a = make_alloc(65536);
    kvx_block_ref_t refs[64];
    kvx_lease_id_t lease;
    uint64_t iters = quick ? 1000 : 4000000 / batch;
    double t0 = now_s(), dt;

    for (uint64_t i = 0; i < iters; i++) {
        CHECK(kvx_alloc_reserve(a, batch, FAR_FUTURE, &lease, refs), "reserve");
        CHECK(kvx_alloc_lease_commit(a, lease), "commit");
        for (uint32_t b = 0; b < batch; b++) {
            CHECK(kvx_alloc_unpin(a, refs[b]), "unpin");
        }
    }
    dt = now_s() - t0;
    printf("alloc    reserve+commit+release, batch %2u   %8.2f M blocks/s\n",
           batch, (double)(iters * batch) / dt / 1e6);
    kvx_alloc_destroy(a);
}

/* reserve -> abort -> unfence: the failure path, same cost class. */
static void bench_alloc_abort(void)
{
    kvx_alloc_h a = make_alloc(65536);
    kvx_block_ref_t refs[16];
    kvx_lease_id_t lease;
    uint64_t iters = quick ? 1000 : 250000;
    double t0 = now_s(), dt;

    for (uint64_t i = 0; i < iters; i++) {
        CHECK(kvx_alloc_reserve(a, 16, FAR_FUTURE, &lease, refs), "reserve");
        CHECK(kvx_alloc_lease_abort(a, lease), "abort");
        CHECK(kvx_alloc_lease_unfence(a, lease), "unfence");
    }
    dt = now_s() - t0;
    printf("alloc    reserve+abort+unfence, batch 16    %8.2f M blocks/s\n",
           (double)(iters * 16) / dt / 1e6);
    kvx_alloc_destroy(a);
}

/* 256 cached chains of 64 keys; look up whole chains (all hits) and
 * chains that miss after half. Then reserve_keyed with the same keys. */
static void bench_prefix(void)
{
    enum { CHAINS = 256, LEN = 64 };
    kvx_alloc_h a = make_alloc(CHAINS * LEN * 2);
    static kvx_block_key_t keys[CHAINS][LEN];
    kvx_block_ref_t refs[LEN];
    uint8_t hit[LEN];
    kvx_lease_id_t lease;
    kvx_key_chain_t root;
    uint32_t tokens[16], n;
    uint64_t iters = quick ? 100 : 20000, found = 0;
    double t0, dt;

    CHECK(kvx_key_chain_init(&root, KVX_KEY_ALGO_XXH3_128, "0"), "key init");
    for (uint32_t c = 0; c < CHAINS; c++) {
        kvx_key_chain_t chain = root;

        for (uint32_t k = 0; k < LEN; k++) {
            for (uint32_t t = 0; t < 16; t++) {
                tokens[t] = c * 100000 + k * 16 + t;
            }
            CHECK(kvx_key_chain_next(&chain, tokens, 16, NULL, 0, &keys[c][k]),
                  "key");
        }
        CHECK(kvx_alloc_reserve_keyed(a, keys[c], LEN, FAR_FUTURE, &lease, refs,
                                      hit, NULL),
              "reserve keyed");
        CHECK(kvx_alloc_lease_commit(a, lease), "commit");
        for (uint32_t k = 0; k < LEN; k++) {
            CHECK(kvx_alloc_unpin(a, refs[k]), "unpin");
        }
    }
    t0 = now_s();
    for (uint64_t i = 0; i < iters; i++) {
        CHECK(kvx_alloc_lookup(a, keys[i % CHAINS], LEN, &n, NULL), "lookup");
        found += n;
    }
    dt = now_s() - t0;
    printf("prefix   longest-prefix lookup             %8.2f M keys/s "
           "(%.0f%% hits)\n",
           (double)(iters * LEN) / dt / 1e6,
           100.0 * (double)found / (double)(iters * LEN));

    t0 = now_s();
    for (uint64_t i = 0; i < iters; i++) {
        uint32_t hits;

        CHECK(kvx_alloc_reserve_keyed(a, keys[i % CHAINS], LEN, FAR_FUTURE,
                                      &lease, refs, hit, &hits),
              "keyed");
        for (uint32_t k = 0; k < LEN; k++) {
            CHECK(kvx_alloc_unpin(a, refs[k]), "unpin");
        }
    }
    dt = now_s() - t0;
    printf("prefix   reserve_keyed all-hit + unpin     %8.2f M blocks/s\n",
           (double)(iters * LEN) / dt / 1e6);
    kvx_alloc_destroy(a);
}

static kvx_layout_t layout_70b(kvx_layout_order_t order,
                               kvx_layout_token_order_t tok, uint32_t heads,
                               uint32_t start)
{
    kvx_layout_params_t lp = {
        .field_mask =
            KVX_LAYOUT_PARAM_FIELD_NUM_LAYERS |
            KVX_LAYOUT_PARAM_FIELD_BLOCK_TOKENS |
            KVX_LAYOUT_PARAM_FIELD_KV_HEADS | KVX_LAYOUT_PARAM_FIELD_HEAD_DIM |
            KVX_LAYOUT_PARAM_FIELD_DTYPE_SIZE |
            KVX_LAYOUT_PARAM_FIELD_NUM_BLOCKS | KVX_LAYOUT_PARAM_FIELD_ORDER |
            KVX_LAYOUT_PARAM_FIELD_TOKEN_ORDER |
            KVX_LAYOUT_PARAM_FIELD_HEAD_SLICE,
        .num_layers = 80,
        .block_tokens = 16,
        .kv_heads = heads,
        .head_dim = 128,
        .dtype_size = 2,
        .num_blocks = 4096,
        .order = order,
        .token_order = tok,
        .total_heads = 8,
        .head_start = start,
    };
    kvx_layout_t l;

    CHECK(kvx_layout_init(&l, &lp), "layout");
    return l;
}

static void bench_plan_case(const char *what, const kvx_layout_t *src,
                            const kvx_layout_t *dst, int scattered)
{
    enum { BLOCKS = 4096 / 16 }; /* a 4k-token prompt */
    uint32_t sb[BLOCKS], db[BLOCKS];
    kvx_plan_request_t req = {
        .src = src,
        .dst = dst,
        .src_blocks = sb,
        .n_src_blocks = BLOCKS,
        .dst_blocks = db,
        .n_dst_blocks = BLOCKS,
    };
    kvx_plan_h plan;
    size_t n = 0;
    uint64_t iters, segs = 0;
    double t0, dt;

    for (uint32_t i = 0; i < BLOCKS; i++) {
        sb[i] = scattered ? (i * 2654435761u) % 4096 : 100 + i;
        db[i] = scattered ? (i * 40503u + 7) % 4096 : 1000 + i;
    }
    CHECK(kvx_plan_create(&plan), "plan create");
    CHECK(kvx_plan_build(plan, &req), "plan"); /* warm-up: grows buffers */
    kvx_plan_segments(plan, &n);
    iters = quick ? 3 : (n > 100000 ? 50 : n > 1000 ? 500 : 20000);
    t0 = now_s();
    for (uint64_t i = 0; i < iters; i++) {
        CHECK(kvx_plan_build(plan, &req), "plan");
        kvx_plan_segments(plan, &n);
        segs += n;
    }
    dt = now_s() - t0;
    printf("planner  %-34s %8zu segs  %9.1f plans/s  %7.2f M segs/s\n", what, n,
           (double)iters / dt, (double)segs / dt / 1e6);
    kvx_plan_destroy(plan);
}

static void bench_plan(void)
{
    kvx_layout_t bm = layout_70b(KVX_LAYOUT_BLOCK_MAJOR, KVX_LAYOUT_NHD, 8, 0);
    kvx_layout_t lm = layout_70b(KVX_LAYOUT_LAYER_MAJOR, KVX_LAYOUT_NHD, 8, 0);
    kvx_layout_t lh = layout_70b(KVX_LAYOUT_LAYER_MAJOR, KVX_LAYOUT_HND, 8, 0);
    kvx_layout_t tp = layout_70b(KVX_LAYOUT_LAYER_MAJOR, KVX_LAYOUT_NHD, 4, 4);

    printf(
        "planner  Llama-3.1-70B, 4096 tokens = 256 blocks of 16, 80 layers\n");
    bench_plan_case("block-major, contiguous ids", &bm, &bm, 0);
    bench_plan_case("block-major, scattered ids", &bm, &bm, 1);
    bench_plan_case("block -> layer-major NHD", &bm, &lm, 1);
    bench_plan_case("block -> layer-major HND", &bm, &lh, 1);
    bench_plan_case("block -> TP rank heads [4,8)", &bm, &tp, 1);
}

static void bench_keys(kvx_key_algo_t algo)
{
    kvx_key_chain_t chain;
    kvx_block_key_t key;
    uint32_t tokens[16] = {0};
    uint64_t iters = quick ? 1000 : 1000000;
    double t0, dt;

    CHECK(kvx_key_chain_init(&chain, algo, "0"), "key init");
    t0 = now_s();
    for (uint64_t i = 0; i < iters; i++) {
        tokens[i & 15] = (uint32_t)i;
        CHECK(kvx_key_chain_next(&chain, tokens, 16, NULL, 0, &key), "key");
    }
    dt = now_s() - t0;
    printf("keys     %-11s chain, 16-token blocks   %8.2f M keys/s\n",
           kvx_key_algo_name(algo), (double)iters / dt / 1e6);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            quick = 1;
        } else {
            fprintf(stderr, "usage: kvx-microbench [--quick]\n");
            return 2;
        }
    }
    printf("kvx-microbench (libkvx %s), one thread%s\n", kvx_version(),
           quick ? ", quick smoke run: figures not meaningful" : "");
    bench_alloc_cycle(1);
    bench_alloc_cycle(16);
    bench_alloc_cycle(64);
    bench_alloc_abort();
    bench_prefix();
    bench_plan();
    bench_keys(KVX_KEY_ALGO_XXH3_128);
    bench_keys(KVX_KEY_ALGO_SHA256_CBOR);
    return 0;
}
