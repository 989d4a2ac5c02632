/*
 * `kvx send`: a synthetic prefill workload pushed to a peer.
 *
 * Every request has --prompt tokens; the first --shared-prefix are the same
 * in all requests (a system prompt). Block keys are vLLM-compatible chained
 * keys (kvx_key_chain_blocks, seed "0" by default), and a block's bytes
 * depend only on its key, so blocks shared by prefix hold identical bytes,
 * as a model would produce. The local pool holds each distinct block once
 * (the sender dedupes too, through its own prefix index). Requests are
 * pushed one after the other with KVX_XFER_FLAG_CHECKSUM (unless
 * --no-checksum), so on a peer that starts empty the blocks on the wire are
 * exactly the distinct blocks.
 */
#include "cli_send.h"

#include <unistd.h>

/* Bounds that keep the tool's own memory sane. */
#define SEND_TOTAL_BLOCKS_MAX (1u << 22)
#define SEND_POOL_BYTES_MAX (64ull << 30)
#define SOURCE_LEASE_NS (3600ull * 1000000000ull)

typedef struct req_result {
    uint64_t id;
    uint32_t blocks, hits, sent, mismatches;
    uint64_t bytes, elapsed_ns;
    kvx_status_t status;
} req_result_t;

static uint32_t token_of(const cli_send_cfg_t *c, uint32_t r, uint32_t i)
{
    uint64_t x;

    if (i < c->shared_prefix) {
        return 1000 + i;
    }
    x = ((uint64_t)(r + 1) << 32 | i) * 0x9e3779b97f4a7c15ull;
    return (uint32_t)(x >> 40) + 100000; /* 24 bits: a plausible vocab */
}

static int key_cmp(const void *a, const void *b)
{
    return memcmp(a, b, sizeof(kvx_block_key_t));
}

static uint32_t count_unique(const kvx_block_key_t *keys, size_t n)
{
    kvx_block_key_t *k = malloc(n * sizeof(*k));
    uint32_t u = 0;

    if (k == NULL) {
        return 0;
    }
    memcpy(k, keys, n * sizeof(*k));
    qsort(k, n, sizeof(*k), key_cmp);
    for (size_t i = 0; i < n; i++) {
        u += i == 0 || key_cmp(&k[i], &k[i - 1]) != 0;
    }
    free(k);
    return u;
}

/* KV bytes that depend only on the block's key (splitmix64 stream). */
static void fill_block(void *addr, uint64_t bytes, const kvx_block_key_t *key)
{
    uint64_t *w = addr, s;

    memcpy(&s, key->bytes, sizeof(s));
    for (uint64_t i = 0; i < bytes / sizeof(*w); i++) {
        uint64_t z = (s += 0x9e3779b97f4a7c15ull);

        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        w[i] = z ^ (z >> 31);
    }
}

static const char *human(double b, char *buf, size_t len)
{
    static const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;

    while (b >= 1024.0 && u < 4) {
        b /= 1024.0;
        u++;
    }
    snprintf(buf, len, u == 0 ? "%.0f %s" : "%.1f %s", b, unit[u]);
    return buf;
}

static const char *checksum_result(const cli_send_cfg_t *c,
                                   const req_result_t *q)
{
    if (c->no_checksum) {
        return "off";
    }
    if (q->status == KVX_ERR_CORRUPT) {
        return "mismatch";
    }
    if (q->status != KVX_OK) {
        return "-";
    }
    return q->sent > 0 ? "ok" : "none-sent";
}

/* Keys of every request: requests x nb, in request order. */
static int make_keys(const cli_send_cfg_t *c, uint32_t nb,
                     kvx_block_key_t *keys)
{
    uint32_t *tok = malloc((size_t)c->prompt * sizeof(*tok));
    kvx_key_chain_t chain;
    kvx_status_t st = KVX_ERR_NO_MEMORY;
    size_t n = 0;

    for (uint32_t r = 0; tok != NULL && r < c->requests; r++) {
        for (uint32_t i = 0; i < c->prompt; i++) {
            tok[i] = token_of(c, r, i);
        }
        st = kvx_key_chain_init(&chain, KVX_KEY_ALGO_XXH3_128, c->seed);
        if (st == KVX_OK) {
            st = kvx_key_chain_blocks(&chain, tok, c->prompt,
                                      c->node.block_tokens, NULL, 0,
                                      keys + (size_t)r * nb, nb, &n);
        }
        if (st != KVX_OK || n != nb) {
            break;
        }
    }
    free(tok);
    if (st != KVX_OK) {
        fprintf(stderr, "kvx: block keys: %s\n", kvx_status_string(st));
        return -1;
    }
    return 0;
}

/* The sources: READY blocks (one pin each per request) holding each key's
 * bytes. Returns how many requests were prepared. */
static uint32_t make_sources(const cli_send_cfg_t *c, kvx_node_h node,
                             uint32_t nb, const kvx_block_key_t *keys,
                             kvx_block_ref_t *refs)
{
    kvx_alloc_h alloc = kvx_node_alloc(node);
    uint64_t bb = kvx_node_layout(node)->block_bytes;
    uint8_t *hit = malloc(nb);
    kvx_lease_id_t lease;
    kvx_status_t st = KVX_ERR_NO_MEMORY;
    uint32_t r;

    for (r = 0; hit != NULL && r < c->requests; r++) {
        const kvx_block_key_t *k = keys + (size_t)r * nb;
        kvx_block_ref_t *ref = refs + (size_t)r * nb;

        st = kvx_alloc_reserve_keyed(
            alloc, k, nb, kvx_clock_monotonic_ns(NULL) + SOURCE_LEASE_NS,
            &lease, ref, hit, NULL);
        if (st != KVX_OK) {
            break;
        }
        for (uint32_t i = 0; i < nb; i++) {
            if (!hit[i]) {
                fill_block(
                    kvx_pool_block_addr(kvx_node_pool(node), ref[i].block), bb,
                    &k[i]);
            }
        }
        if (lease != 0 &&
            (st = kvx_alloc_lease_commit(alloc, lease)) != KVX_OK) {
            break;
        }
    }
    free(hit);
    if (r < c->requests) {
        fprintf(stderr, "kvx: preparing request %u's blocks: %s\n", r,
                kvx_status_string(st));
    }
    return r;
}

static void push_one(const cli_send_cfg_t *c, kvx_node_h node, kvx_peer_h peer,
                     const kvx_block_ref_t *refs, const kvx_block_key_t *keys,
                     uint32_t nb, req_result_t *q)
{
    kvx_xfer_params_t xp = {
        .field_mask = KVX_XFER_PARAM_FIELD_REQUEST_ID |
                      KVX_XFER_PARAM_FIELD_BLOCKS | KVX_XFER_PARAM_FIELD_KEYS |
                      KVX_XFER_PARAM_FIELD_DEADLINE |
                      KVX_XFER_PARAM_FIELD_FLAGS,
        .request_id = q->id,
        .blocks = refs,
        .n_blocks = nb,
        .keys = keys,
        .deadline_ms = c->deadline_ms,
        .flags = (c->no_checksum ? 0u : KVX_XFER_FLAG_CHECKSUM) |
                 (c->layerwise ? KVX_XFER_FLAG_LAYERWISE : 0u),
    };
    uint32_t layers = kvx_node_layout(node)->num_layers;
    kvx_xfer_attr_t a;
    kvx_xfer_h x;

    q->blocks = nb;
    q->status = kvx_node_push(node, peer, &xp, &x);
    if (q->status != KVX_OK) {
        return;
    }
    for (uint32_t l = 1; c->layerwise && l <= layers; l++) {
        kvx_xfer_layer_ready(x, l); /* as prefill finishes each layer */
        kvx_node_progress(node, 0);
    }
    /* Every transfer ends by its deadline; the margin covers the abort. */
    q->status = kvx_xfer_wait(x, c->deadline_ms + 10000);
    if (q->status == KVX_INPROGRESS) {
        kvx_xfer_abort(x);
        q->status = kvx_xfer_wait(x, 10000);
    }
    kvx_xfer_query(x, &a);
    q->hits = a.blocks_hit;
    q->sent = a.blocks_sent;
    q->bytes = a.bytes_sent;
    q->mismatches = a.checksum_mismatches;
    q->elapsed_ns = a.elapsed_ns;
    kvx_xfer_release(x);
}

typedef struct totals {
    uint64_t blocks, hits, sent, logical, wire, ns;
    uint32_t failed, corrupt, unique;
    double wall_s;
} totals_t;

static void print_json(const cli_send_cfg_t *c, kvx_peer_h peer, uint64_t bb,
                       const req_result_t *res, const totals_t *t)
{
    double saved =
        t->logical ? 100.0 * (1.0 - (double)t->wire / (double)t->logical) : 0.0;

    printf("{\"command\":\"send\",\"peer\":");
    cli_json_str(stdout, c->peer);
    printf(",\"peer_name\":");
    cli_json_str(stdout, kvx_peer_name(peer));
    printf(",\"transport\":\"%s\",\"model\":\"%s\",\"block_tokens\":%u,"
           "\"block_bytes\":%llu,\"prompt_tokens\":%u,"
           "\"shared_prefix_tokens\":%u,\"layerwise\":%s,\"checksum\":%s,"
           "\"requests\":[",
           kvx_transport_string(kvx_peer_transport(peer)), c->node.model->name,
           c->node.block_tokens, (unsigned long long)bb, c->prompt,
           c->shared_prefix, c->layerwise ? "true" : "false",
           c->no_checksum ? "false" : "true");
    for (uint32_t r = 0; r < c->requests; r++) {
        const req_result_t *q = &res[r];

        printf("%s{\"request_id\":%llu,\"blocks\":%u,\"hits\":%u,"
               "\"sent\":%u,\"bytes\":%llu,\"checksum\":\"%s\","
               "\"checksum_mismatches\":%u,\"time_ms\":%.3f,"
               "\"status\":\"%s\",\"ok\":%s}",
               r ? "," : "", (unsigned long long)q->id, q->blocks, q->hits,
               q->sent, (unsigned long long)q->bytes, checksum_result(c, q),
               q->mismatches, (double)q->elapsed_ns / 1e6,
               kvx_status_string(q->status),
               q->status == KVX_OK ? "true" : "false");
    }
    printf("],\"totals\":{\"requests\":%u,\"failed\":%u,"
           "\"checksum_failed\":%u,\"blocks\":%llu,\"unique_blocks\":%u,"
           "\"hit_blocks\":%llu,\"wire_blocks\":%llu,\"logical_bytes\":%llu,"
           "\"wire_bytes\":%llu,\"dedupe_saved_pct\":%.2f,"
           "\"transfer_time_s\":%.6f,\"wall_time_s\":%.6f,"
           "\"throughput_gbps\":%.3f},\"ok\":%s}\n",
           c->requests, t->failed, t->corrupt, (unsigned long long)t->blocks,
           t->unique, (unsigned long long)t->hits, (unsigned long long)t->sent,
           (unsigned long long)t->logical, (unsigned long long)t->wire, saved,
           (double)t->ns / 1e9, t->wall_s,
           t->ns ? (double)t->wire / (double)t->ns : 0.0,
           t->failed == 0 ? "true" : "false");
}

static void print_text(const cli_send_cfg_t *c, kvx_peer_h peer, uint64_t bb,
                       const req_result_t *res, const totals_t *t)
{
    char b1[32], b2[32];

    printf("kvx send: %u request(s) x %llu blocks (%u tokens, %u shared) of "
           "%s, %s per block, to %s (node %s) over %s%s\n",
           c->requests, (unsigned long long)(t->blocks / c->requests),
           c->prompt, c->shared_prefix, c->node.model->name,
           human((double)bb, b1, sizeof(b1)), c->peer, kvx_peer_name(peer),
           kvx_transport_string(kvx_peer_transport(peer)),
           c->layerwise ? ", layer-wise" : "");
    printf("%8s %7s %6s %6s %12s %10s %10s  %s\n", "request", "blocks", "hits",
           "sent", "bytes", "checksum", "time_ms", "status");
    for (uint32_t r = 0; r < c->requests; r++) {
        const req_result_t *q = &res[r];

        printf("%8u %7u %6u %6u %12s %10s %10.3f  %s\n", r, q->blocks, q->hits,
               q->sent, human((double)q->bytes, b1, sizeof(b1)),
               checksum_result(c, q), (double)q->elapsed_ns / 1e6,
               kvx_status_string(q->status));
    }
    printf("total: %llu blocks, %u distinct; %llu hit, %llu sent\n",
           (unsigned long long)t->blocks, t->unique,
           (unsigned long long)t->hits, (unsigned long long)t->sent);
    printf("bytes: logical %s, wire %s: dedupe saved %.1f%%\n",
           human((double)t->logical, b1, sizeof(b1)),
           human((double)t->wire, b2, sizeof(b2)),
           t->logical ? 100.0 * (1.0 - (double)t->wire / (double)t->logical)
                      : 0.0);
    printf("throughput: %.3f GB/s of wire bytes over %.3f ms of transfers "
           "(%.3f ms wall)\n",
           t->ns ? (double)t->wire / (double)t->ns : 0.0, (double)t->ns / 1e6,
           t->wall_s * 1e3);
    if (t->failed > 0) {
        printf("FAILED: %u of %u transfer(s)%s\n", t->failed, c->requests,
               t->corrupt ? ", some failed their checksum" : "");
    }
}

int cli_send_run(const cli_send_cfg_t *c)
{
    uint32_t nb = c->prompt / c->node.block_tokens, prepared = 0;
    uint64_t total = (uint64_t)c->requests * nb, bb, t0;
    kvx_block_key_t *keys = NULL;
    kvx_block_ref_t *refs = NULL;
    req_result_t *res = NULL;
    kvx_node_h node = NULL;
    totals_t t = {0};
    kvx_peer_h peer;
    char id[64], b1[32];
    int rc = CLI_EXIT_FAIL;

    bb = cli_block_bytes(&c->node);
    if (bb == 0 || total > SEND_TOTAL_BLOCKS_MAX) {
        fprintf(stderr, "kvx: %llu blocks in all: too many (at most %u)\n",
                (unsigned long long)total, SEND_TOTAL_BLOCKS_MAX);
        return CLI_EXIT_USAGE;
    }
    keys = malloc(total * sizeof(*keys));
    refs = malloc(total * sizeof(*refs));
    res = calloc(c->requests, sizeof(*res));
    if (keys == NULL || refs == NULL || res == NULL) {
        fprintf(stderr, "kvx: out of memory\n");
        goto out;
    }
    if (make_keys(c, nb, keys) != 0) {
        goto out;
    }
    t.unique = count_unique(keys, total);
    if (t.unique == 0 || t.unique > KVX_LAYOUT_DIM_MAX ||
        (uint64_t)t.unique * bb > SEND_POOL_BYTES_MAX) {
        fprintf(stderr,
                "kvx: the workload needs %u distinct blocks of %s: more "
                "than this tool holds (64 GiB, 2^20 blocks); use fewer "
                "requests or a shorter prompt\n",
                t.unique, human((double)bb, b1, sizeof(b1)));
        rc = CLI_EXIT_USAGE;
        goto out;
    }
    snprintf(id, sizeof(id), "kvx-send-%ld", (long)getpid());
    if (cli_node_create(&c->node, id, NULL, t.unique, &node) != KVX_OK) {
        fprintf(stderr, "kvx: cannot start a node with %u blocks of %s\n",
                t.unique, human((double)bb, b1, sizeof(b1)));
        goto out;
    }
    /* Commit the pool before filling it: one madvise instead of a fault per
     * page (kvxd does the same on the receiving side, pool_prefault). */
    if (kvx_pool_populate(kvx_node_pool(node)) != KVX_OK) {
        fprintf(stderr, "kvx: cannot pre-fault the pool; going on lazily\n");
    }
    rc = cli_connect(node, c->peer, c->timeout_ms, &peer);
    if (rc != CLI_EXIT_OK) {
        goto out;
    }
    rc = CLI_EXIT_FAIL;
    prepared = make_sources(c, node, nb, keys, refs);
    if (prepared < c->requests) {
        goto out;
    }
    t0 = kvx_clock_monotonic_ns(NULL);
    for (uint32_t r = 0; r < c->requests; r++) {
        req_result_t *q = &res[r];

        q->id = ((uint64_t)getpid() << 32) + r + 1;
        push_one(c, node, peer, refs + (size_t)r * nb, keys + (size_t)r * nb,
                 nb, q);
        t.blocks += nb;
        t.hits += q->hits;
        t.sent += q->sent;
        t.wire += q->bytes;
        t.ns += q->elapsed_ns;
        t.failed += q->status != KVX_OK;
        t.corrupt += q->status == KVX_ERR_CORRUPT;
        if (q->status != KVX_OK) {
            fprintf(stderr, "kvx: request %u: %s\n", r,
                    kvx_status_string(q->status));
        }
    }
    t.wall_s = (double)(kvx_clock_monotonic_ns(NULL) - t0) / 1e9;
    t.logical = t.blocks * bb;
    if (c->json) {
        print_json(c, peer, bb, res, &t);
    } else {
        print_text(c, peer, bb, res, &t);
    }
    rc = t.failed == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
out:
    for (uint64_t i = 0; i < (uint64_t)prepared * nb; i++) {
        kvx_alloc_unpin(kvx_node_alloc(node), refs[i]);
    }
    kvx_node_destroy(node);
    free(res);
    free(refs);
    free(keys);
    return rc;
}
