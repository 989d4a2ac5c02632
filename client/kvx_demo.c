/*
 * kvx-demo: an in-process prefill -> decode hand-off of a batch of requests
 * that share a system prompt, on two pools of a Llama-3.1-8B shape.
 *
 * What runs here is everything below the network: memfd pools, the block
 * allocator with leases and the prefix index, vLLM-compatible block keys,
 * and the planner. The "wire" is memcpy of the planner's segments between
 * the two pools; the daemons and the UCX data path replace it later.
 */
#include <kvx/kvx.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#define N_LAYERS 32
#define KV_HEADS 8
#define HEAD_DIM 128
#define DTYPE_SIZE 2
#define BLOCK_TOKS 16
#define POOL_BLOCKS 256
#define N_REQ 8
#define SYS_TOKENS 1024
#define USER_TOKENS 256
#define REQ_TOKENS (SYS_TOKENS + USER_TOKENS)
#define REQ_BLOCKS (REQ_TOKENS / BLOCK_TOKS)
#define LEASE_NS (10ull * 1000 * 1000 * 1000)
#define MIB (1024.0 * 1024.0)

typedef struct side {
    const char *name;
    kvx_pool_h pool;
    kvx_alloc_h alloc;
    kvx_layout_t layout;
    kvx_pool_attr_t attr;
} side_t;

typedef struct request {
    uint32_t tokens[REQ_TOKENS];
    kvx_block_key_t keys[REQ_BLOCKS];
    kvx_block_ref_t prefill[REQ_BLOCKS];
    kvx_block_ref_t decode[REQ_BLOCKS];
    uint8_t prefill_hit[REQ_BLOCKS];
    uint8_t decode_hit[REQ_BLOCKS];
} request_t;

static uint64_t checksum[POOL_BLOCKS]; /* per prefill block, at fill time */

static void print_log(kvx_log_level_t level, const char *msg, void *arg)
{
    (void)arg;
    fprintf(stderr, "kvx %s: %s\n", kvx_log_level_string(level), msg);
}

static double now_s(void)
{
    return (double)kvx_clock_monotonic_ns(NULL) / 1e9;
}

static int check(kvx_status_t st, const char *what)
{
    if (st != KVX_OK) {
        fprintf(stderr, "kvx-demo: %s: %s\n", what, kvx_status_string(st));
        return -1;
    }
    return 0;
}

/* "Prefill" a block: KV bytes that depend only on the block's key, so two
 * requests with the same prefix produce identical blocks, as a model does. */
static void prefill_block(side_t *s, uint32_t block, const kvx_block_key_t *key)
{
    uint64_t *w = kvx_pool_block_addr(s->pool, block);
    uint64_t x;
    size_t n = s->layout.block_bytes / sizeof(*w);

    memcpy(&x, key->bytes, sizeof(x));
    for (size_t i = 0; i < n; i++) {
        /* splitmix64 */
        uint64_t z = (x += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        w[i] = z ^ (z >> 31);
    }
    checksum[block] = XXH3_64bits(w, s->layout.block_bytes);
}

static int side_init(side_t *s, const char *name)
{
    kvx_layout_params_t lp = {
        .field_mask = KVX_LAYOUT_PARAM_FIELD_NUM_LAYERS |
                      KVX_LAYOUT_PARAM_FIELD_BLOCK_TOKENS |
                      KVX_LAYOUT_PARAM_FIELD_KV_HEADS |
                      KVX_LAYOUT_PARAM_FIELD_HEAD_DIM |
                      KVX_LAYOUT_PARAM_FIELD_DTYPE_SIZE |
                      KVX_LAYOUT_PARAM_FIELD_NUM_BLOCKS,
        .num_layers = N_LAYERS,
        .block_tokens = BLOCK_TOKS,
        .kv_heads = KV_HEADS,
        .head_dim = HEAD_DIM,
        .dtype_size = DTYPE_SIZE,
        .num_blocks = POOL_BLOCKS,
    };
    kvx_pool_params_t pp = {
        .field_mask = KVX_POOL_PARAM_FIELD_BLOCK_SIZE |
                      KVX_POOL_PARAM_FIELD_BLOCK_COUNT |
                      KVX_POOL_PARAM_FIELD_NAME,
        .block_count = POOL_BLOCKS,
        .name = name,
    };
    kvx_alloc_params_t ap = {
        .field_mask = KVX_ALLOC_PARAM_FIELD_BLOCK_COUNT,
        .block_count = POOL_BLOCKS,
    };

    s->name = name;
    if (check(kvx_layout_init(&s->layout, &lp), "layout") < 0) {
        return -1;
    }
    pp.block_size = s->layout.block_bytes;
    if (check(kvx_pool_create(&pp, &s->pool), "pool") < 0 ||
        check(kvx_pool_query(s->pool, &s->attr), "pool query") < 0 ||
        check(kvx_alloc_create(&ap, &s->alloc), "allocator") < 0) {
        return -1;
    }
    return 0;
}

static void side_fini(side_t *s)
{
    kvx_alloc_destroy(s->alloc);
    kvx_pool_destroy(s->pool);
}

/* Token ids: a shared system prompt, then tokens of the request's own. */
static void make_tokens(request_t *r, uint32_t req)
{
    for (uint32_t t = 0; t < REQ_TOKENS; t++) {
        r->tokens[t] = t < SYS_TOKENS ? (t * 7919u + 13u) % 128256u
                                      : (req * 104729u + t * 31u) % 128256u;
    }
}

/* Prefill side: its own prefix cache means the shared prompt is computed
 * once; every missed block is "computed" (filled) and committed. */
static int prefill(side_t *p, request_t *r, uint32_t *computed_p)
{
    kvx_lease_id_t lease;
    uint32_t hits;
    uint64_t deadline = kvx_clock_monotonic_ns(NULL) + LEASE_NS;

    if (check(kvx_alloc_reserve_keyed(p->alloc, r->keys, REQ_BLOCKS, deadline,
                                      &lease, r->prefill, r->prefill_hit,
                                      &hits),
              "prefill reserve") < 0) {
        return -1;
    }
    for (uint32_t i = 0; i < REQ_BLOCKS; i++) {
        if (!r->prefill_hit[i]) {
            prefill_block(p, r->prefill[i].block, &r->keys[i]);
        }
    }
    *computed_p = REQ_BLOCKS - hits;
    return lease ? check(kvx_alloc_lease_commit(p->alloc, lease), "commit") : 0;
}

typedef struct hand_off {
    uint32_t hits, sent, segments, bad;
    uint64_t bytes;
    double copy_s;
} hand_off_t;

/* Decode side: allocate with keys, copy only the misses along the plan,
 * commit, then verify every block of the request against its checksum. */
static int hand_off(side_t *p, side_t *d, kvx_plan_h plan, request_t *r,
                    hand_off_t *h)
{
    uint32_t src[REQ_BLOCKS], dst[REQ_BLOCKS];
    kvx_plan_request_t pr = {
        .src = &p->layout,
        .dst = &d->layout,
        .src_blocks = src,
        .dst_blocks = dst,
    };
    kvx_lease_id_t lease;
    const kvx_segment_t *seg;
    size_t n_seg = 0;
    uint64_t deadline = kvx_clock_monotonic_ns(NULL) + LEASE_NS;
    double t0;

    memset(h, 0, sizeof(*h));
    if (check(kvx_alloc_reserve_keyed(d->alloc, r->keys, REQ_BLOCKS, deadline,
                                      &lease, r->decode, r->decode_hit,
                                      &h->hits),
              "decode reserve") < 0) {
        return -1;
    }
    for (uint32_t i = 0; i < REQ_BLOCKS; i++) {
        if (!r->decode_hit[i]) {
            src[h->sent] = r->prefill[i].block;
            dst[h->sent] = r->decode[i].block;
            h->sent++;
        }
    }
    if (h->sent > 0) {
        pr.n_src_blocks = pr.n_dst_blocks = h->sent;
        if (check(kvx_plan_build(plan, &pr), "plan") < 0) {
            return -1;
        }
        seg = kvx_plan_segments(plan, &n_seg);
        t0 = now_s();
        for (size_t i = 0; i < n_seg; i++) {
            memcpy((char *)d->attr.base + seg[i].dst_off,
                   (const char *)p->attr.base + seg[i].src_off, seg[i].len);
        }
        h->copy_s = now_s() - t0;
        h->bytes = kvx_plan_bytes(plan);
        h->segments = (uint32_t)n_seg;
    }
    if (lease && check(kvx_alloc_lease_commit(d->alloc, lease), "commit") < 0) {
        return -1;
    }
    for (uint32_t i = 0; i < REQ_BLOCKS; i++) {
        const void *b = kvx_pool_block_addr(d->pool, r->decode[i].block);

        if (XXH3_64bits(b, d->layout.block_bytes) !=
            checksum[r->prefill[i].block]) {
            h->bad++;
        }
    }
    return 0;
}

/* What the same request costs in segments for other decode layouts. */
static void show_translations(side_t *p, kvx_plan_h plan, const request_t *r)
{
    kvx_layout_params_t lp = {
        .field_mask =
            KVX_LAYOUT_PARAM_FIELD_NUM_LAYERS |
            KVX_LAYOUT_PARAM_FIELD_BLOCK_TOKENS |
            KVX_LAYOUT_PARAM_FIELD_KV_HEADS | KVX_LAYOUT_PARAM_FIELD_HEAD_DIM |
            KVX_LAYOUT_PARAM_FIELD_DTYPE_SIZE |
            KVX_LAYOUT_PARAM_FIELD_NUM_BLOCKS | KVX_LAYOUT_PARAM_FIELD_ORDER,
        .num_layers = N_LAYERS,
        .block_tokens = BLOCK_TOKS,
        .kv_heads = KV_HEADS,
        .head_dim = HEAD_DIM,
        .dtype_size = DTYPE_SIZE,
        .num_blocks = POOL_BLOCKS,
        .order = KVX_LAYOUT_LAYER_MAJOR,
    };
    static const struct {
        const char *what;
        kvx_layout_token_order_t tok;
        uint32_t heads, start;
    } v[] = {
        {"vLLM layer-major NHD, all heads", KVX_LAYOUT_NHD, KV_HEADS, 0},
        {"layer-major HND, all heads", KVX_LAYOUT_HND, KV_HEADS, 0},
        {"layer-major NHD, TP rank heads [4,8)", KVX_LAYOUT_NHD, 4, 4},
    };
    uint32_t src[REQ_BLOCKS], dst[REQ_BLOCKS];

    for (uint32_t i = 0; i < REQ_BLOCKS; i++) {
        src[i] = r->prefill[i].block;
        dst[i] = i;
    }
    printf("\nplanner: the same %u-block request into other decode layouts\n",
           REQ_BLOCKS);
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        kvx_layout_t dl;
        kvx_plan_request_t pr = {
            .src = &p->layout,
            .dst = &dl,
            .src_blocks = src,
            .n_src_blocks = REQ_BLOCKS,
            .dst_blocks = dst,
            .n_dst_blocks = REQ_BLOCKS,
        };
        size_t n = 0;

        lp.token_order = v[i].tok;
        lp.field_mask |= KVX_LAYOUT_PARAM_FIELD_TOKEN_ORDER |
                         KVX_LAYOUT_PARAM_FIELD_HEAD_SLICE;
        lp.kv_heads = v[i].heads;
        lp.total_heads = KV_HEADS;
        lp.head_start = v[i].start;
        if (kvx_layout_init(&dl, &lp) != KVX_OK ||
            kvx_plan_build(plan, &pr) != KVX_OK) {
            printf("  %-40s refused\n", v[i].what);
            continue;
        }
        kvx_plan_segments(plan, &n);
        printf("  %-40s %7zu segments, %8.1f MiB\n", v[i].what, n,
               (double)kvx_plan_bytes(plan) / MIB);
    }
}

int main(void)
{
    static request_t req[N_REQ];
    side_t p = {0}, d = {0};
    kvx_plan_h plan = NULL;
    kvx_key_chain_t root;
    uint64_t logical = 0, wire = 0;
    uint32_t sent = 0, bad = 0, computed_total = 0;
    double copy_s = 0, memcpy_rate, t0;
    int rc = 1;

    kvx_log_set_cb(print_log, NULL, KVX_LOG_WARN);
    if (side_init(&p, "kvx-demo-prefill") < 0 ||
        side_init(&d, "kvx-demo-decode") < 0 ||
        check(kvx_plan_create(&plan), "plan") < 0 ||
        check(kvx_key_chain_init(&root, KVX_KEY_ALGO_XXH3_128, "0"), "key") <
            0) {
        goto out;
    }

    /* Touch every page first, as a daemon does at start, then time one
     * plain memcpy between the pools: the reference the copy along the plan
     * is compared with (a ratio from this run, not an absolute figure). */
    memset(p.attr.base, 0, p.attr.length);
    memset(d.attr.base, 0, d.attr.length);
    t0 = now_s();
    memcpy(d.attr.base, p.attr.base, p.attr.length);
    memcpy_rate = (double)p.attr.length / (now_s() - t0);

    printf("libkvx %s demo: in-process prefill -> decode hand-off "
           "(one process, no network: the logic below the data path)\n\n",
           kvx_version());
    printf("model     Llama-3.1-8B shape: %d layers, K+V, %d kv heads x %d, "
           "bf16, %d-token blocks = %.2f MiB/block\n",
           N_LAYERS, KV_HEADS, HEAD_DIM, BLOCK_TOKS,
           (double)p.layout.block_bytes / MIB);
    printf("pools     prefill and decode: %d blocks each (%.0f MiB, memfd, "
           "huge pages: %s)\n",
           POOL_BLOCKS, (double)p.attr.length / MIB,
           p.attr.huge_pages ? "yes" : "no");
    printf("workload  %d requests = %d-token shared system prompt + %d own "
           "tokens; keys %s (vLLM-compatible)\n\n",
           N_REQ, SYS_TOKENS, USER_TOKENS, kvx_key_algo_name(root.algo));
    printf("req  blocks  prefilled  decode-hits  sent  segments  sent MiB  "
           "checksums\n");

    for (uint32_t i = 0; i < N_REQ; i++) {
        kvx_key_chain_t chain = root;
        request_t *r = &req[i];
        hand_off_t h;
        uint32_t computed;
        size_t n_keys;

        make_tokens(r, i);
        if (check(kvx_key_chain_blocks(&chain, r->tokens, REQ_TOKENS,
                                       BLOCK_TOKS, NULL, 0, r->keys, REQ_BLOCKS,
                                       &n_keys),
                  "keys") < 0 ||
            prefill(&p, r, &computed) < 0 ||
            hand_off(&p, &d, plan, r, &h) < 0) {
            goto out;
        }
        printf("%3u  %6d  %9u  %11u  %4u  %8u  %8.1f  %u/%d %s\n", i,
               REQ_BLOCKS, computed, h.hits, h.sent, h.segments,
               (double)h.bytes / MIB, REQ_BLOCKS - h.bad, REQ_BLOCKS,
               h.bad ? "BAD" : "ok");
        computed_total += computed;
        logical += (uint64_t)REQ_BLOCKS * p.layout.block_bytes;
        wire += h.bytes;
        sent += h.sent;
        bad += h.bad;
        copy_s += h.copy_s;
    }

    printf("\nlogical KV %.0f MiB, moved %.0f MiB: dedupe skipped %.1f%% "
           "(%u of %d blocks never sent)\n",
           logical / MIB, wire / MIB,
           100.0 * (double)(logical - wire) / (double)logical,
           N_REQ * REQ_BLOCKS - sent, N_REQ * REQ_BLOCKS);
    printf("prefill   computed %u blocks for %d requested (its own prefix "
           "cache)\n",
           computed_total, N_REQ * REQ_BLOCKS);

    if (wire > 0) {
        printf("copy      along the plan at %.2fx the speed of one plain "
               "memcpy between the pools (same run)\n",
               ((double)wire / copy_s) / memcpy_rate);
    }
    show_translations(&p, plan, &req[0]);

    for (uint32_t i = 0; i < N_REQ; i++) {
        for (uint32_t b = 0; b < REQ_BLOCKS; b++) {
            kvx_alloc_unpin(p.alloc, req[i].prefill[b]);
            kvx_alloc_unpin(d.alloc, req[i].decode[b]);
        }
    }
    printf("\n%s: %u corrupt blocks\n", bad ? "FAILED" : "all blocks verified",
           bad);
    rc = bad ? 1 : 0;

out:
    kvx_plan_destroy(plan);
    side_fini(&d);
    side_fini(&p);
    return rc;
}
