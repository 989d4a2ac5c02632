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
 *
 * The sending side is either an embedded node of the tool's own (default)
 * or, with --via SOCKET, a local kvxd the tool attaches to as an engine
 * would (kvx/client.h): the blocks are written straight into the daemon's
 * pool and the daemon pushes them. With --check-at SOCKET the tool also
 * attaches to the receiving daemon, collects every request there as a
 * decode engine would (kvx_client_recv()) and compares each block's bytes
 * with what was written.
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
    uint32_t check_bad; /* --check-at: blocks that differ or are missing */
} req_result_t;

/* Where the blocks come from: an embedded node or an attached kvxd. */
typedef struct send_side {
    kvx_node_h node; /* embedded: ours, connected to the peer */
    kvx_peer_h peer;
    kvx_client_h client; /* --via: the local kvxd that pushes */
    kvx_client_h check;  /* --check-at: the receiving kvxd */
    uint64_t block_bytes;
    uint32_t layers;
    uint32_t block_tokens;
    kvx_transport_t transport; /* --via: from the transfers */
    const char *model;         /* preset name, or "custom" */
    char peer_name[KVX_TICKET_NODE_ID_MAX];
} send_side_t;

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
static int make_keys(const cli_send_cfg_t *c, uint32_t block_tokens,
                     uint32_t nb, kvx_block_key_t *keys)
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
            st = kvx_key_chain_blocks(&chain, tok, c->prompt, block_tokens,
                                      NULL, 0, keys + (size_t)r * nb, nb, &n);
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

static kvx_status_t side_reserve(send_side_t *sd, const kvx_block_key_t *k,
                                 uint32_t nb, kvx_block_ref_t *ref,
                                 uint8_t *hit, kvx_lease_id_t *lease_p)
{
    if (sd->client != NULL) {
        return kvx_client_reserve(sd->client, nb, k, 0, ref, hit, lease_p);
    }
    return kvx_alloc_reserve_keyed(kvx_node_alloc(sd->node), k, nb,
                                   kvx_clock_monotonic_ns(NULL) +
                                       SOURCE_LEASE_NS,
                                   lease_p, ref, hit, NULL);
}

static kvx_status_t side_seal(send_side_t *sd, kvx_lease_id_t lease)
{
    return sd->client != NULL
               ? kvx_client_seal(sd->client, lease)
               : kvx_alloc_lease_commit(kvx_node_alloc(sd->node), lease);
}

static void *side_block_addr(send_side_t *sd, uint32_t block)
{
    return sd->client != NULL
               ? kvx_client_block_addr(sd->client, block)
               : kvx_pool_block_addr(kvx_node_pool(sd->node), block);
}

static void side_release(send_side_t *sd, const kvx_block_ref_t *refs,
                         uint64_t n)
{
    if (sd->client != NULL) {
        for (uint64_t i = 0; i < n; i += KVX_LAYOUT_DIM_MAX) {
            uint64_t m =
                n - i < KVX_LAYOUT_DIM_MAX ? n - i : KVX_LAYOUT_DIM_MAX;

            kvx_client_release(sd->client, refs + i, (uint32_t)m, NULL);
        }
        return;
    }
    for (uint64_t i = 0; sd->node != NULL && i < n; i++) {
        kvx_alloc_unpin(kvx_node_alloc(sd->node), refs[i]);
    }
}

/* The sources: READY blocks (one hold each per request) holding each key's
 * bytes. Returns how many requests were prepared. */
static uint32_t make_sources(const cli_send_cfg_t *c, send_side_t *sd,
                             uint32_t nb, const kvx_block_key_t *keys,
                             kvx_block_ref_t *refs)
{
    uint8_t *hit = malloc(nb);
    kvx_lease_id_t lease;
    kvx_status_t st = KVX_ERR_NO_MEMORY;
    uint32_t r;

    for (r = 0; hit != NULL && r < c->requests; r++) {
        const kvx_block_key_t *k = keys + (size_t)r * nb;
        kvx_block_ref_t *ref = refs + (size_t)r * nb;

        st = side_reserve(sd, k, nb, ref, hit, &lease);
        if (st != KVX_OK) {
            break;
        }
        for (uint32_t i = 0; i < nb; i++) {
            if (!hit[i]) {
                cli_fill_block(side_block_addr(sd, ref[i].block),
                               sd->block_bytes, &k[i]);
            }
        }
        if (lease != 0 && (st = side_seal(sd, lease)) != KVX_OK) {
            side_release(sd, ref, nb);
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

static void query_one(req_result_t *q, const kvx_xfer_attr_t *a)
{
    q->hits = a->blocks_hit;
    q->sent = a->blocks_sent;
    q->bytes = a->bytes_sent;
    q->mismatches = a->checksum_mismatches;
    q->elapsed_ns = a->elapsed_ns;
}

/* --via: the attached kvxd pushes the blocks it holds for us. */
static void push_attached(const cli_send_cfg_t *c, send_side_t *sd,
                          const kvx_xfer_params_t *xp, req_result_t *q)
{
    kvx_client_xfer_h x;
    kvx_xfer_attr_t a;

    q->status = kvx_client_push(sd->client, c->peer, xp, &x);
    if (q->status != KVX_OK) {
        return;
    }
    for (uint32_t l = 1; c->layerwise && l <= sd->layers; l++) {
        kvx_client_xfer_layer_ready(x, l);
    }
    q->status = kvx_client_xfer_wait(x, c->deadline_ms + 10000);
    if (q->status == KVX_INPROGRESS) {
        kvx_client_xfer_abort(x);
        q->status = kvx_client_xfer_wait(x, 10000);
    }
    kvx_client_xfer_query(x, &a);
    query_one(q, &a);
    if (a.transport != KVX_TRANSPORT_AUTO) {
        sd->transport = a.transport;
    }
    kvx_client_xfer_release(x);
}

static void push_one(const cli_send_cfg_t *c, send_side_t *sd,
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
    kvx_xfer_attr_t a;
    kvx_xfer_h x;

    q->blocks = nb;
    if (sd->client != NULL) {
        push_attached(c, sd, &xp, q);
        return;
    }
    q->status = kvx_node_push(sd->node, sd->peer, &xp, &x);
    if (q->status != KVX_OK) {
        return;
    }
    for (uint32_t l = 1; c->layerwise && l <= sd->layers; l++) {
        kvx_xfer_layer_ready(x, l); /* as prefill finishes each layer */
        kvx_node_progress(sd->node, 0);
    }
    /* Every transfer ends by its deadline; the margin covers the abort. */
    q->status = kvx_xfer_wait(x, c->deadline_ms + 10000);
    if (q->status == KVX_INPROGRESS) {
        kvx_xfer_abort(x);
        q->status = kvx_xfer_wait(x, 10000);
    }
    kvx_xfer_query(x, &a);
    query_one(q, &a);
    kvx_xfer_release(x);
}

/* --check-at: collect the request on the receiving kvxd, as its decode
 * engine would, and compare every block with the bytes its key stands
 * for. Returns the blocks that are missing or differ. */
static uint32_t check_one(send_side_t *sd, uint64_t id,
                          const kvx_block_key_t *keys, uint32_t nb,
                          kvx_block_ref_t *got)
{
    uint64_t bb = sd->block_bytes;
    uint8_t *want = malloc(bb);
    uint32_t n = 0, bad = 0;
    kvx_status_t st;

    st = kvx_client_recv(sd->check, id, 10000, got, nb, &n);
    if (st != KVX_OK || n != nb || want == NULL) {
        fprintf(stderr,
                "kvx: --check-at: request %llu: %s (%u of %u "
                "blocks)\n",
                (unsigned long long)id, kvx_status_string(st), n, nb);
        free(want);
        if (st == KVX_OK) {
            kvx_client_release(sd->check, got, n, NULL);
        }
        return nb;
    }
    for (uint32_t i = 0; i < n; i++) {
        cli_fill_block(want, bb, &keys[i]);
        bad += memcmp(kvx_client_block_addr(sd->check, got[i].block), want,
                      bb) != 0;
    }
    kvx_client_release(sd->check, got, n, NULL);
    free(want);
    return bad;
}

typedef struct totals {
    uint64_t blocks, hits, sent, logical, wire, ns;
    uint64_t checked, check_bad; /* --check-at */
    uint32_t failed, corrupt, unique;
    double wall_s;
} totals_t;

static void print_json(const cli_send_cfg_t *c, const send_side_t *sd,
                       const req_result_t *res, const totals_t *t)
{
    double saved =
        t->logical ? 100.0 * (1.0 - (double)t->wire / (double)t->logical) : 0.0;

    printf("{\"command\":\"send\",\"peer\":");
    cli_json_str(stdout, c->peer);
    printf(",\"peer_name\":");
    cli_json_str(stdout, sd->peer_name);
    printf(",\"via\":");
    cli_json_str(stdout, c->via != NULL ? c->via : "");
    printf(",\"check_at\":");
    cli_json_str(stdout, c->check_at != NULL ? c->check_at : "");
    printf(",\"transport\":\"%s\",\"model\":\"%s\",\"block_tokens\":%u,"
           "\"block_bytes\":%llu,\"prompt_tokens\":%u,"
           "\"shared_prefix_tokens\":%u,\"layerwise\":%s,\"checksum\":%s,"
           "\"requests\":[",
           kvx_transport_string(sd->transport), sd->model, sd->block_tokens,
           (unsigned long long)sd->block_bytes, c->prompt, c->shared_prefix,
           c->layerwise ? "true" : "false", c->no_checksum ? "false" : "true");
    for (uint32_t r = 0; r < c->requests; r++) {
        const req_result_t *q = &res[r];

        printf("%s{\"request_id\":%llu,\"blocks\":%u,\"hits\":%u,"
               "\"sent\":%u,\"bytes\":%llu,\"checksum\":\"%s\","
               "\"checksum_mismatches\":%u,\"check_bad_blocks\":%u,"
               "\"time_ms\":%.3f,\"status\":\"%s\",\"ok\":%s}",
               r ? "," : "", (unsigned long long)q->id, q->blocks, q->hits,
               q->sent, (unsigned long long)q->bytes, checksum_result(c, q),
               q->mismatches, q->check_bad, (double)q->elapsed_ns / 1e6,
               kvx_status_string(q->status),
               q->status == KVX_OK ? "true" : "false");
    }
    printf("],\"totals\":{\"requests\":%u,\"failed\":%u,"
           "\"checksum_failed\":%u,\"blocks\":%llu,\"unique_blocks\":%u,"
           "\"hit_blocks\":%llu,\"wire_blocks\":%llu,\"logical_bytes\":%llu,"
           "\"wire_bytes\":%llu,\"dedupe_saved_pct\":%.2f,"
           "\"transfer_time_s\":%.6f,\"wall_time_s\":%.6f,"
           "\"throughput_gbps\":%.3f,\"checked_blocks\":%llu,"
           "\"check_bad_blocks\":%llu},\"ok\":%s}\n",
           c->requests, t->failed, t->corrupt, (unsigned long long)t->blocks,
           t->unique, (unsigned long long)t->hits, (unsigned long long)t->sent,
           (unsigned long long)t->logical, (unsigned long long)t->wire, saved,
           (double)t->ns / 1e9, t->wall_s,
           t->ns ? (double)t->wire / (double)t->ns : 0.0,
           (unsigned long long)t->checked, (unsigned long long)t->check_bad,
           t->failed == 0 ? "true" : "false");
}

static void print_text(const cli_send_cfg_t *c, const send_side_t *sd,
                       const req_result_t *res, const totals_t *t)
{
    char b1[32], b2[32];

    printf("kvx send: %u request(s) x %llu blocks (%u tokens, %u shared) of "
           "%s, %s per block, to %s (node %s) over %s%s\n",
           c->requests, (unsigned long long)(t->blocks / c->requests),
           c->prompt, c->shared_prefix, sd->model,
           human((double)sd->block_bytes, b1, sizeof(b1)), c->peer,
           sd->peer_name, kvx_transport_string(sd->transport),
           c->layerwise ? ", layer-wise" : "");
    if (c->via != NULL) {
        printf("written into and pushed by the kvxd at %s\n", c->via);
    }
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
    if (c->check_at != NULL) {
        printf("decode side: %llu block(s) collected at %s and compared "
               "byte for byte: %s\n",
               (unsigned long long)t->checked, c->check_at,
               t->check_bad == 0 ? "all identical" : "MISMATCH");
    }
    if (t->failed > 0) {
        printf("FAILED: %u of %u transfer(s)%s\n", t->failed, c->requests,
               t->corrupt ? ", some failed their checksum" : "");
    }
}

/* The preset a layout matches (for the report), or "custom". */
static const char *model_of(const kvx_layout_t *l)
{
    for (size_t i = 0; i < CLI_N_MODELS; i++) {
        const cli_model_t *m = &cli_models[i];

        if (l->num_layers == m->layers && l->kv_parts == m->kv_parts &&
            l->kv_heads == m->kv_heads && l->head_dim == m->head_dim &&
            l->dtype_size == 2) {
            return m->name;
        }
    }
    return "custom";
}

static kvx_status_t attach(const char *path, const char *what,
                           kvx_client_h *client_p)
{
    kvx_client_params_t p = {
        .field_mask = KVX_CLIENT_PARAM_FIELD_NAME,
        .name = what,
    };
    kvx_status_t st = kvx_client_attach(path, &p, client_p);

    if (st != KVX_OK) {
        fprintf(stderr, "kvx: cannot attach to the kvxd at %s: %s\n", path,
                kvx_status_string(st));
    }
    return st;
}

/* Opens the sending side: attach to --via, or start a node sized for
 * @p unique blocks and connect it to the peer. */
static int side_open(const cli_send_cfg_t *c, uint32_t unique, send_side_t *sd)
{
    char id[64], b1[32];
    int rc;

    if (c->via != NULL) {
        const kvx_layout_t *l;

        if (attach(c->via, "kvx send", &sd->client) != KVX_OK) {
            return CLI_EXIT_FAIL;
        }
        l = kvx_client_layout(sd->client);
        sd->block_bytes = l->block_bytes;
        sd->layers = l->num_layers;
        sd->block_tokens = l->block_tokens;
        sd->model = model_of(l);
        return CLI_EXIT_OK;
    }
    sd->block_bytes = cli_block_bytes(&c->node);
    sd->layers = c->node.model->layers;
    sd->block_tokens = c->node.block_tokens;
    sd->model = c->node.model->name;
    snprintf(id, sizeof(id), "kvx-send-%ld", (long)getpid());
    if (cli_node_create(&c->node, id, NULL, unique, &sd->node) != KVX_OK) {
        fprintf(stderr, "kvx: cannot start a node with %u blocks of %s\n",
                unique, human((double)sd->block_bytes, b1, sizeof(b1)));
        return CLI_EXIT_FAIL;
    }
    /* Commit the pool before filling it: one madvise instead of a fault per
     * page (kvxd does the same on the receiving side, pool_prefault). */
    if (kvx_pool_populate(kvx_node_pool(sd->node)) != KVX_OK) {
        fprintf(stderr, "kvx: cannot pre-fault the pool; going on lazily\n");
    }
    rc = cli_connect(sd->node, c->peer, c->timeout_ms, &sd->peer);
    if (rc == CLI_EXIT_OK) {
        sd->transport = kvx_peer_transport(sd->peer);
        snprintf(sd->peer_name, sizeof(sd->peer_name), "%s",
                 kvx_peer_name(sd->peer));
    }
    return rc;
}

/* --via: the peer's node id as the kvxd knows it (after the first push). */
static void side_peer_name(const cli_send_cfg_t *c, send_side_t *sd)
{
    kvx_client_peer_t *peers;
    uint32_t n = 0;

    if (sd->client == NULL || (peers = calloc(64, sizeof(*peers))) == NULL) {
        return;
    }
    if (kvx_client_peers(sd->client, peers, 64, &n) == KVX_OK) {
        for (uint32_t i = 0; i < n && i < 64; i++) {
            if (strcmp(peers[i].addr, c->peer) == 0 ||
                strcmp(peers[i].node_id, c->peer) == 0) {
                snprintf(sd->peer_name, sizeof(sd->peer_name), "%s",
                         peers[i].node_id);
            }
        }
    }
    free(peers);
}

int cli_send_run(const cli_send_cfg_t *c)
{
    uint32_t nb = 0, bt, prepared = 0;
    uint64_t total, t0;
    kvx_block_key_t *keys = NULL;
    kvx_block_ref_t *refs = NULL, *got = NULL;
    req_result_t *res = NULL;
    send_side_t sd = {.model = "?", .peer_name = "?"};
    totals_t t = {0};
    char b1[32];
    int rc = CLI_EXIT_FAIL;

    if (c->check_at != NULL &&
        attach(c->check_at, "kvx send --check-at", &sd.check) != KVX_OK) {
        return CLI_EXIT_FAIL;
    }
    /* --via: the daemon's layout decides block_tokens and bytes. */
    if (c->via != NULL && (rc = side_open(c, 0, &sd)) != CLI_EXIT_OK) {
        goto out;
    }
    rc = CLI_EXIT_FAIL;
    bt = c->via != NULL ? sd.block_tokens : c->node.block_tokens;
    nb = c->prompt / bt;
    total = (uint64_t)c->requests * nb;
    if (nb == 0 || total > SEND_TOTAL_BLOCKS_MAX) {
        fprintf(stderr, "kvx: %llu blocks in all: need 1 .. %u\n",
                (unsigned long long)total, SEND_TOTAL_BLOCKS_MAX);
        rc = CLI_EXIT_USAGE;
        goto out;
    }
    keys = malloc(total * sizeof(*keys));
    refs = malloc(total * sizeof(*refs));
    got = malloc(nb * sizeof(*got));
    res = calloc(c->requests, sizeof(*res));
    if (keys == NULL || refs == NULL || got == NULL || res == NULL) {
        fprintf(stderr, "kvx: out of memory\n");
        goto out;
    }
    if (make_keys(c, bt, nb, keys) != 0) {
        goto out;
    }
    t.unique = count_unique(keys, total);
    if (c->via == NULL) {
        uint64_t bb = cli_block_bytes(&c->node);

        if (bb == 0 || t.unique == 0 || t.unique > KVX_LAYOUT_DIM_MAX ||
            (uint64_t)t.unique * bb > SEND_POOL_BYTES_MAX) {
            fprintf(stderr,
                    "kvx: the workload needs %u distinct blocks of %s: more "
                    "than this tool holds (64 GiB, 2^20 blocks); use fewer "
                    "requests or a shorter prompt\n",
                    t.unique, human((double)bb, b1, sizeof(b1)));
            rc = CLI_EXIT_USAGE;
            goto out;
        }
        if ((rc = side_open(c, t.unique, &sd)) != CLI_EXIT_OK) {
            goto out;
        }
        rc = CLI_EXIT_FAIL;
    }
    prepared = make_sources(c, &sd, nb, keys, refs);
    if (prepared < c->requests) {
        goto out;
    }
    t0 = kvx_clock_monotonic_ns(NULL);
    for (uint32_t r = 0; r < c->requests; r++) {
        req_result_t *q = &res[r];
        const kvx_block_key_t *k = keys + (size_t)r * nb;

        q->id = ((uint64_t)getpid() << 32) + r + 1;
        push_one(c, &sd, refs + (size_t)r * nb, k, nb, q);
        if (sd.check != NULL && q->status == KVX_OK) {
            q->check_bad = check_one(&sd, q->id, k, nb, got);
            t.checked += nb;
            t.check_bad += q->check_bad;
        }
        t.blocks += nb;
        t.hits += q->hits;
        t.sent += q->sent;
        t.wire += q->bytes;
        t.ns += q->elapsed_ns;
        t.failed += q->status != KVX_OK || q->check_bad != 0;
        t.corrupt += q->status == KVX_ERR_CORRUPT || q->check_bad != 0;
        if (q->status != KVX_OK) {
            fprintf(stderr, "kvx: request %u: %s\n", r,
                    kvx_status_string(q->status));
        }
    }
    t.wall_s = (double)(kvx_clock_monotonic_ns(NULL) - t0) / 1e9;
    t.logical = t.blocks * sd.block_bytes;
    side_peer_name(c, &sd);
    if (c->json) {
        print_json(c, &sd, res, &t);
    } else {
        print_text(c, &sd, res, &t);
    }
    rc = t.failed == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
out:
    side_release(&sd, refs, (uint64_t)prepared * nb);
    kvx_node_destroy(sd.node);
    kvx_client_detach(sd.client);
    kvx_client_detach(sd.check);
    free(res);
    free(got);
    free(refs);
    free(keys);
    return rc;
}
