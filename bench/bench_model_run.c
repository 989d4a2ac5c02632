/*
 * kvx-bench model, the run: keys, sources, a link calibration, then the
 * requests. Request 0 goes alone (it brings the shared prefix to the
 * target); the others follow in waves of --concurrency, pushed together
 * and, with --layerwise, announced layer by layer in lockstep as one
 * batched prefill would produce them.
 */
#include "bench_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MODEL_HOST_BYTES_MAX (16ull << 30) /* per pool; there are two */
#define DEADLINE_MS 120000
#define LEASE_NS (3600ull * 1000000000ull)

/* Token i of request r: the shared prefix is the same in every request. */
static uint32_t token_of(uint32_t shared, uint32_t r, uint32_t i)
{
    uint64_t x;

    if (i < shared) {
        return 1000 + i;
    }
    x = ((uint64_t)(r + 1) << 32 | i) * 0x9e3779b97f4a7c15ull;
    return (uint32_t)(x >> 40) + 100000;
}

static int key_cmp(const void *a, const void *b)
{
    return memcmp(a, b, sizeof(kvx_block_key_t));
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile P of V[0..n) (sorts V). */
static uint64_t pct(uint64_t *v, size_t n, unsigned p)
{
    size_t r = (n * p + 99) / 100;

    qsort(v, n, sizeof(*v), cmp_u64);
    return n ? v[r > 0 ? r - 1 : 0] : 0;
}

/* Chained keys of every request (requests x nb); returns the distinct
 * count, 0 on failure. */
static uint32_t make_keys(const kvxi_model_opts_t *o, uint32_t shared,
                          uint32_t nb, kvx_block_key_t *keys)
{
    size_t total = (size_t)o->requests * nb, n = 0;
    uint32_t *tok = malloc((size_t)o->prompt * sizeof(*tok));
    kvx_block_key_t *k = malloc(total * sizeof(*k));
    kvx_key_chain_t chain;
    kvx_status_t st = KVX_ERR_NO_MEMORY;
    uint32_t u = 0;

    for (uint32_t r = 0; tok != NULL && k != NULL && r < o->requests; r++) {
        for (uint32_t i = 0; i < o->prompt; i++) {
            tok[i] = token_of(shared, r, i);
        }
        st = kvx_key_chain_init(&chain, KVX_KEY_ALGO_XXH3_128, "0");
        if (st == KVX_OK) {
            st = kvx_key_chain_blocks(&chain, tok, o->prompt, o->block_tokens,
                                      NULL, 0, keys + (size_t)r * nb, nb, &n);
        }
        if (st != KVX_OK || n != nb) {
            break;
        }
    }
    if (st == KVX_OK) {
        memcpy(k, keys, total * sizeof(*k));
        qsort(k, total, sizeof(*k), key_cmp);
        for (size_t i = 0; i < total; i++) {
            u += i == 0 || key_cmp(&k[i], &k[i - 1]) != 0;
        }
    } else {
        fprintf(stderr, "kvx-bench: block keys: %s\n", kvx_status_string(st));
    }
    free(tok);
    free(k);
    return u;
}

/* READY source blocks, one hold per request, each distinct key once. */
static int make_sources(const kvxi_model_opts_t *o, kvx_node_h node,
                        uint32_t nb, uint64_t bb, const kvx_block_key_t *keys,
                        kvx_block_ref_t *refs)
{
    kvx_alloc_h al = kvx_node_alloc(node);
    uint8_t *hit = malloc(nb);
    kvx_status_t st = KVX_ERR_NO_MEMORY;
    kvx_lease_id_t lease;
    uint32_t r;

    for (r = 0; hit != NULL && r < o->requests; r++) {
        const kvx_block_key_t *k = keys + (size_t)r * nb;
        kvx_block_ref_t *ref = refs + (size_t)r * nb;

        st = kvx_alloc_reserve_keyed(al, k, nb,
                                     kvx_clock_monotonic_ns(NULL) + LEASE_NS,
                                     &lease, ref, hit, NULL);
        if (st != KVX_OK) {
            break;
        }
        for (uint32_t i = 0; i < nb; i++) {
            if (!hit[i]) {
                cli_fill_block(
                    kvx_pool_block_addr(kvx_node_pool(node), ref[i].block), bb,
                    &k[i]);
            }
        }
        if (lease != 0 && (st = kvx_alloc_lease_commit(al, lease)) != KVX_OK) {
            break;
        }
    }
    free(hit);
    if (r < o->requests) {
        fprintf(stderr, "kvx-bench: preparing request %u's blocks: %s\n", r,
                kvx_status_string(st));
        return 1;
    }
    return 0;
}

/* Spins the node for US microseconds: prefill compute of one layer, with
 * the engine polling the transfer engine between kernels. */
static void compute(kvx_node_h node, unsigned long us)
{
    uint64_t end = kvx_clock_monotonic_ns(NULL) + us * 1000ull;

    while (kvx_clock_monotonic_ns(NULL) < end) {
        kvx_node_progress(node, 0);
    }
}

typedef struct wave_ctx {
    const kvxi_model_opts_t *o;
    kvxi_pair_t *p;
    const kvx_block_key_t *keys;
    const kvx_block_ref_t *refs;
    kvxi_model_result_t *r;
    uint64_t *lat, *exposed, *layer, *layer_sent;
    uint32_t nwaves;
    uint64_t busy_ns;
} wave_ctx_t;

/* Requests [first, first + n) together; returns 0, or 1 when one could
 * not even start. */
static int run_wave(wave_ctx_t *w, uint32_t first, uint32_t n)
{
    const kvxi_model_opts_t *o = w->o;
    kvx_xfer_h x[1024];
    uint64_t t0[1024], last = 0, wire = 0, t_start;
    int done[1024] = {0}, left = (int)n;
    uint32_t nb = w->r->nb;

    t_start = kvx_clock_monotonic_ns(NULL);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t q = first + i;
        kvx_xfer_params_t xp = {
            .field_mask =
                KVX_XFER_PARAM_FIELD_REQUEST_ID | KVX_XFER_PARAM_FIELD_BLOCKS |
                KVX_XFER_PARAM_FIELD_KEYS | KVX_XFER_PARAM_FIELD_DEADLINE |
                KVX_XFER_PARAM_FIELD_FLAGS,
            .request_id = KVXI_MODEL_CALIB_IDS + 1 + q,
            .blocks = w->refs + (size_t)q * nb,
            .n_blocks = nb,
            .keys = w->keys + (size_t)q * nb,
            .deadline_ms = DEADLINE_MS,
            .flags = (o->check ? KVX_XFER_FLAG_CHECKSUM : 0u) |
                     (o->layerwise ? KVX_XFER_FLAG_LAYERWISE : 0u),
        };
        kvx_status_t st;

        t0[i] = kvx_clock_monotonic_ns(NULL);
        st = kvx_node_push(w->p->node, w->p->peer, &xp, &x[i]);
        if (st != KVX_OK) {
            fprintf(stderr, "kvx-bench: request %u: push: %s\n", q,
                    kvx_status_string(st));
            for (uint32_t j = 0; j < i; j++) {
                kvx_xfer_release(x[j]);
            }
            return 1;
        }
    }
    for (uint32_t l = 1; o->layerwise && l <= o->layers; l++) {
        compute(w->p->node, o->compute_us);
        last = kvx_clock_monotonic_ns(NULL);
        for (uint32_t i = 0; i < n; i++) {
            kvx_xfer_layer_ready(x[i], l);
        }
    }
    while (left > 0) {
        kvx_node_progress(w->p->node, 0);
        for (uint32_t i = 0; i < n; i++) {
            if (!done[i] && kvx_xfer_test(x[i]) != KVX_INPROGRESS) {
                uint64_t now = kvx_clock_monotonic_ns(NULL);
                uint32_t q = first + i;

                done[i] = 1, left--;
                w->lat[q] = now - t0[i];
                w->exposed[q] = now - (o->layerwise ? last : t0[i]);
            }
        }
    }
    w->busy_ns += kvx_clock_monotonic_ns(NULL) - t_start;
    for (uint32_t i = 0; i < n; i++) {
        kvx_xfer_attr_t a;

        kvx_xfer_query(x[i], &a);
        if (a.status != KVX_OK) {
            fprintf(stderr, "kvx-bench: request %u: %s\n", first + i,
                    kvx_status_string(a.status));
            w->r->failed++;
        }
        w->r->blocks += a.n_blocks;
        w->r->hits += a.blocks_hit;
        w->r->sent += a.blocks_sent;
        w->r->wire += a.bytes_sent;
        wire += a.bytes_sent;
        kvx_xfer_release(x[i]);
    }
    if (w->r->link_bps > 0) {
        w->layer[w->nwaves] =
            (uint64_t)((double)wire / o->layers * 1e9 / w->r->link_bps);
    }
    if (w->r->layered_bps > 0) {
        w->layer_sent[w->nwaves] =
            (uint64_t)((double)wire / o->layers * 1e9 / w->r->layered_bps);
    }
    w->nwaves++;
    return 0;
}

static int run_requests(const kvxi_model_opts_t *o, kvxi_pair_t *p,
                        const kvx_block_key_t *keys,
                        const kvx_block_ref_t *refs, kvxi_model_result_t *r)
{
    uint32_t c = o->concurrency > 1024 ? 1024 : o->concurrency;
    wave_ctx_t w = {.o = o, .p = p, .keys = keys, .refs = refs, .r = r};
    int rc = 0;

    w.lat = calloc(o->requests, sizeof(*w.lat));
    w.exposed = calloc(o->requests, sizeof(*w.exposed));
    w.layer = calloc(o->requests, sizeof(*w.layer));
    w.layer_sent = calloc(o->requests, sizeof(*w.layer_sent));
    if (w.lat == NULL || w.exposed == NULL || w.layer == NULL ||
        w.layer_sent == NULL) {
        fprintf(stderr, "kvx-bench: out of memory\n");
        rc = 1;
    }
    for (uint32_t q = 0; rc == 0 && q < o->requests;) {
        uint32_t n = q == 0 ? 1 : o->requests - q < c ? o->requests - q : c;

        if (o->progress) {
            fprintf(stderr, "\rmodel: requests %u..%u of %u ...   ", q,
                    q + n - 1, o->requests);
        }
        rc = run_wave(&w, q, n);
        q += n;
    }
    if (o->progress) {
        fprintf(stderr, "\r%60s\r", "");
    }
    if (rc == 0) {
        r->lat_p99_ns = pct(w.lat, o->requests, 99);
        r->lat_p50_ns = pct(w.lat, o->requests, 50);
        r->exposed_p99_ns = pct(w.exposed, o->requests, 99);
        r->exposed_p50_ns = pct(w.exposed, o->requests, 50);
        r->layer_ns = pct(w.layer, w.nwaves, 50);
        r->layer_sent_ns = pct(w.layer_sent, w.nwaves, 50);
        r->logical = r->blocks * r->block_bytes;
        r->bps = w.busy_ns ? (double)r->wire * 1e9 / (double)w.busy_ns : 0;
    }
    free(w.lat);
    free(w.exposed);
    free(w.layer);
    free(w.layer_sent);
    return rc;
}

int kvxi_model_run(const kvxi_model_opts_t *o, kvxi_model_result_t *r)
{
    cli_model_t m = *o->model;
    cli_node_opts_t no = {.model = &m, .block_tokens = o->block_tokens};
    uint32_t shared = (uint32_t)(o->shared * o->prompt);
    kvx_block_key_t *keys = NULL;
    kvx_block_ref_t *refs = NULL;
    kvx_layout_params_t lp;
    kvxi_pair_t pair;
    uint64_t nblocks;
    int rc = 1;

    m.layers = o->layers;
    r->nb = o->prompt / o->block_tokens;
    r->shared_blocks = shared / o->block_tokens;
    r->block_bytes = cli_block_bytes(&no);
    r->data_path = "-";
    keys = malloc((size_t)o->requests * r->nb * sizeof(*keys));
    refs = malloc((size_t)o->requests * r->nb * sizeof(*refs));
    if (keys == NULL || refs == NULL) {
        fprintf(stderr, "kvx-bench: out of memory\n");
        goto out;
    }
    if ((r->unique = make_keys(o, shared, r->nb, keys)) == 0) {
        goto out;
    }
    /* the target also holds the in-flight wave's blocks */
    nblocks = (uint64_t)r->unique + (uint64_t)(o->concurrency + 1) * r->nb;
    if (r->block_bytes == 0 || nblocks > KVX_LAYOUT_DIM_MAX ||
        nblocks * r->block_bytes > MODEL_HOST_BYTES_MAX) {
        fprintf(stderr,
                "kvx-bench: the workload needs pools of %llu blocks of %llu "
                "bytes: more than one host holds here (2^20 blocks, 16 GiB "
                "each); use fewer requests or a shorter prompt\n",
                (unsigned long long)nblocks,
                (unsigned long long)r->block_bytes);
        rc = 2;
        goto out;
    }
    lp = cli_layout(&no, (uint32_t)nblocks);
    if (kvxi_pair_open(o->tls, o->secret, &lp, m.name, &pair) != 0) {
        goto out;
    }
    if (make_sources(o, pair.node, r->nb, r->block_bytes, keys, refs) == 0) {
        r->data_path = kvx_transport_string(kvx_peer_transport(pair.peer));
        kvxi_model_calibrate(o, &pair, refs, r);
        rc = run_requests(o, &pair, keys, refs, r);
    }
    kvxi_pair_close(&pair);
    if (rc == 0) { /* after the pair: its processes would share the CPUs */
        kvxi_model_baseline(o, r);
    }
out:
    free(keys);
    free(refs);
    return rc;
}
