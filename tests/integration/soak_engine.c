/*
 * The engine processes of the soak test (soak.h): prefill engines that
 * write, push and publish requests through the prefill kvxd, decode engines
 * that pull and collect them from their kvxd and compare every byte.
 */
#include "soak.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define D_PENDING 256
#define PUB_RING 256
#define FAILED_COLLECT_MS 2000u /* wait for a failed request's report */
#define STUCK_MS (SOAK_DEADLINE_MS + 15000u)

enum { ACT_NONE, ACT_ABORT, ACT_RELEASE, ACT_PARTIAL };

/* One request of a prefill engine. */
typedef struct preq {
    int busy, held, abort_sent, action;
    uint32_t polls, countdown, layers, stop_layer, d, flags;
    uint64_t t_start;
    soak_rec_t rec;
    kvx_client_xfer_h x;
    kvx_block_key_t keys[SOAK_MAX_BLOCKS];
    kvx_block_ref_t refs[SOAK_MAX_BLOCKS];
} preq_t;

/* One request a decode engine collects (after pulling it, for a pull). */
typedef struct dreq {
    int busy;
    uint64_t t_start, deadline;
    soak_rec_t rec;
    kvx_client_xfer_h x;
    kvx_block_key_t keys[SOAK_MAX_BLOCKS];
} dreq_t;

/* An engine process. */
typedef struct eng {
    const soak_ctx_t *ctx;
    soak_eng_t *e;
    kvx_client_h c;
    uint64_t rng, seq, bb;
    uint32_t layers;
    int inst;
    uint64_t pub_rid[PUB_RING], pub_t[PUB_RING]; /* publications, oldest */
    uint32_t pub_head, pub_n;                    /* first */
} eng_t;

static uint64_t now_ms(void)
{
    return kvx_clock_monotonic_ns(NULL) / 1000000u;
}

static void nap_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)ms * 1000000L};

    nanosleep(&ts, NULL);
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t rng_next(uint64_t *s)
{
    *s += 0x9e3779b97f4a7c15ull;
    return mix64(*s);
}

/* The chained keys of a request: its prompt's blocks, then its suffix. */
static void rec_keys(const soak_rec_t *r, kvx_block_key_t *keys)
{
    kvx_key_chain_t chain;
    uint32_t tok[16];

    kvx_key_chain_init(&chain, KVX_KEY_ALGO_XXH3_128, "kvx-soak");
    for (uint32_t b = 0; b < r->n; b++) {
        for (uint32_t i = 0; i < 16; i++) {
            tok[i] = b < r->pre ? 100000u * (r->prompt + 1) + 16 * b + i
                                : (uint32_t)mix64(r->suffix_seed + 16 * b + i);
        }
        kvx_key_chain_next(&chain, tok, 16, NULL, 0, &keys[b]);
    }
}

/* A block's bytes follow from its key alone, so any holder can check it. */
static uint64_t block_word(const kvx_block_key_t *k, uint64_t j)
{
    uint64_t a, b;

    memcpy(&a, k->bytes, 8);
    memcpy(&b, k->bytes + 8, 8);
    return mix64(a + j) ^ b;
}

static void block_fill(uint64_t *w, uint64_t bb, const kvx_block_key_t *k)
{
    for (uint64_t j = 0; j < bb / 8; j++) {
        w[j] = block_word(k, j);
    }
}

static int block_ok(const uint64_t *w, uint64_t bb, const kvx_block_key_t *k)
{
    for (uint64_t j = 0; j < bb / 8; j++) {
        if (w[j] != block_word(k, j)) {
            return 0;
        }
    }
    return 1;
}

static void bad(eng_t *g, const char *what, kvx_status_t st)
{
    g->e->bad++;
    g->e->last_bad = st;
    fprintf(stderr, "soak engine %d: %s: %s\n", g->inst, what,
            kvx_status_string(st));
}

static void eng_attach(eng_t *g, const soak_ctx_t *ctx, int inst,
                       const char *sock, const char *name)
{
    kvx_client_params_t cp = {.field_mask = KVX_CLIENT_PARAM_FIELD_NAME,
                              .name = name};
    kvx_status_t st;

    memset(g, 0, sizeof(*g));
    g->ctx = ctx;
    g->inst = inst;
    g->e = &ctx->sh->eng[inst];
    g->rng = ctx->sh->seed ^ mix64((uint64_t)inst + 1);
    st = kvx_client_attach(sock, &cp, &g->c);
    if (st != KVX_OK) {
        bad(g, "attach", st);
        _exit(1);
    }
    g->bb = kvx_client_layout(g->c)->block_bytes;
    g->layers = kvx_client_layout(g->c)->num_layers;
}

static void __attribute__((noreturn)) eng_exit(eng_t *g)
{
    kvx_client_detach(g->c);
    g->e->done = 1;
    _exit(0);
}

/* ------------------------------------------------------------------------
 * Prefill engines.
 */

static void preq_release(eng_t *g, preq_t *q)
{
    kvx_status_t st;

    if (q->held) {
        q->held = 0;
        st = kvx_client_release(g->c, q->refs, q->rec.n, NULL);
        if (st != KVX_OK) {
            bad(g, "release", st);
        }
    }
}

/* Tells the target's decode engine; ends the request. */
static void preq_end(eng_t *g, preq_t *q)
{
    if (write(g->ctx->pipe_w[q->d], &q->rec, sizeof(q->rec)) !=
        (ssize_t)sizeof(q->rec)) {
        bad(g, "pipe write", KVX_ERR_IO);
    }
    preq_release(g, q);
    kvx_client_xfer_release(q->x);
    q->x = NULL;
    q->busy = 0;
    g->e->ended++;
}

/* Writes a request's missing blocks and checks the ones the pool had. */
static kvx_status_t preq_write(eng_t *g, preq_t *q)
{
    uint8_t hit[SOAK_MAX_BLOCKS];
    kvx_lease_id_t lease;
    kvx_status_t st;

    st = kvx_client_reserve(g->c, q->rec.n, q->keys, 0, q->refs, hit, &lease);
    if (st != KVX_OK) {
        return st;
    }
    for (uint32_t i = 0; i < q->rec.n; i++) {
        void *addr = kvx_client_block_addr(g->c, q->refs[i].block);

        if (!hit[i]) {
            block_fill(addr, g->bb, &q->keys[i]);
        } else if (g->e->hits_reserve++, !block_ok(addr, g->bb, &q->keys[i])) {
            g->e->byte_errors++;
        }
    }
    q->held = 1;
    st = lease != 0 ? kvx_client_seal(g->c, lease) : KVX_OK;
    if (st != KVX_OK) {
        bad(g, "seal", st);
        preq_release(g, q);
    }
    return st;
}

/* Publishes the request for the decode engine to pull. */
static void preq_publish(eng_t *g, preq_t *q)
{
    kvx_publish_params_t pp = {
        .field_mask = KVX_PUBLISH_PARAM_FIELD_REQUEST_ID |
                      KVX_PUBLISH_PARAM_FIELD_BLOCKS |
                      KVX_PUBLISH_PARAM_FIELD_KEYS |
                      KVX_PUBLISH_PARAM_FIELD_LEASE,
        .request_id = q->rec.rid,
        .blocks = q->refs,
        .n_blocks = q->rec.n,
        .keys = q->keys,
        .lease_ms = SOAK_PUBLISH_MS,
    };
    kvx_status_t st = kvx_client_publish(g->c, &pp, NULL);

    if (st != KVX_OK) {
        bad(g, "publish", st);
        preq_release(g, q);
        return;
    }
    g->e->published++;
    if (g->pub_n < PUB_RING && q->rec.rid % 4 != 0) { /* 1/4 expire */
        uint32_t k = (g->pub_head + g->pub_n++) % PUB_RING;

        g->pub_rid[k] = q->rec.rid;
        g->pub_t[k] = now_ms();
    }
    q->rec.status = KVX_OK;
    g->e->started++; /* ended at once: the daemon holds the blocks */
    preq_end(g, q);
}

/* Starts a new request in @p q. @return 1 if something happened. */
static int preq_start(eng_t *g, preq_t *q)
{
    uint64_t x = rng_next(&g->rng);
    soak_rec_t *r = &q->rec;
    kvx_xfer_params_t xp;
    kvx_status_t st;

    memset(q, 0, sizeof(*q));
    r->rid = ((uint64_t)(g->inst + 1) << 40) | ++g->seq;
    r->suffix_seed = rng_next(&g->rng);
    r->prompt = (uint32_t)(x % SOAK_PROMPTS);
    r->pre = 1 + (uint32_t)((x >> 8) % SOAK_PROMPT_BLOCKS);
    r->n = r->pre + 1 +
           (uint32_t)((x >> 16) % (SOAK_MAX_BLOCKS - SOAK_PROMPT_BLOCKS));
    r->pull = (x >> 24) % 100 < 5;
    r->collect = (x >> 32) % 100 >= 1;
    q->d = (uint32_t)((x >> 56) % SOAK_N_DECODE);
    rec_keys(r, q->keys);
    st = preq_write(g, q);
    if (st == KVX_ERR_NO_SPACE) {
        g->e->reserve_full++; /* back-pressure: the pool is full of holds */
        nap_ms(5);
        return 0;
    } else if (st != KVX_OK) {
        bad(g, "reserve", st);
        return 0;
    }
    if (r->pull) {
        preq_publish(g, q);
        return 1;
    }
    q->flags = KVX_XFER_FLAG_CHECKSUM;
    q->flags |= (x >> 40) % 100 < 30 ? KVX_XFER_FLAG_LAYERWISE : 0;
    q->action = (x >> 48) % 100 < 5    ? ACT_ABORT
                : (x >> 48) % 100 < 8  ? ACT_RELEASE
                : (x >> 48) % 100 < 11 ? ACT_PARTIAL
                                       : ACT_NONE;
    if (q->action == ACT_PARTIAL) {
        q->flags |= KVX_XFER_FLAG_LAYERWISE;
        q->stop_layer = (uint32_t)((x >> 44) % g->layers); /* < all */
    }
    q->countdown = (uint32_t)((x >> 52) % 6);
    xp = (kvx_xfer_params_t){
        .field_mask = KVX_XFER_PARAM_FIELD_REQUEST_ID |
                      KVX_XFER_PARAM_FIELD_BLOCKS | KVX_XFER_PARAM_FIELD_KEYS |
                      KVX_XFER_PARAM_FIELD_DEADLINE |
                      KVX_XFER_PARAM_FIELD_FLAGS,
        .request_id = r->rid,
        .blocks = q->refs,
        .n_blocks = r->n,
        .keys = q->keys,
        .deadline_ms = SOAK_DEADLINE_MS,
        .flags = q->flags,
    };
    st = kvx_client_push(g->c, g->ctx->daddr[q->d], &xp, &q->x);
    if (st != KVX_OK) {
        bad(g, "push", st);
        preq_release(g, q);
        return 1;
    }
    q->busy = 1;
    q->t_start = now_ms();
    g->e->started++;
    g->e->blocks += r->n;
    if ((x >> 62) & 1) {
        preq_release(g, q); /* allowed once the push is answered */
    }
    return 1;
}

static void preq_outcome(eng_t *g, preq_t *q, kvx_status_t st)
{
    kvx_xfer_attr_t a;
    soak_eng_t *e = g->e;

    q->rec.status = st;
    if (st == KVX_OK && kvx_client_xfer_query(q->x, &a) == KVX_OK) {
        e->ok++;
        e->blocks_sent += a.blocks_sent;
        e->bytes += a.bytes_sent;
        e->hits_xfer += a.blocks_hit;
    } else if (st == KVX_ERR_ABORTED && q->abort_sent) {
        e->aborted++;
    } else if (st == KVX_ERR_NO_SPACE) {
        e->nospace++;
    } else if (st == KVX_ERR_TIMEOUT) {
        e->timeout++;
    } else if (st == KVX_ERR_CORRUPT) {
        e->corrupt++;
    } else {
        bad(g, "push ended", st);
    }
}

/* Drives a running push. @return 1 if something happened. */
static int preq_poll(eng_t *g, preq_t *q)
{
    kvx_status_t st = kvx_client_xfer_test(q->x);

    if (st != KVX_INPROGRESS) {
        preq_outcome(g, q, st);
        preq_end(g, q);
        return 1;
    }
    q->polls++;
    if ((q->flags & KVX_XFER_FLAG_LAYERWISE) && q->layers < g->layers &&
        (q->action != ACT_PARTIAL || q->layers < q->stop_layer)) {
        kvx_client_xfer_layer_ready(q->x, ++q->layers); /* may have ended */
        return 1;
    }
    if ((q->action == ACT_ABORT || q->action == ACT_PARTIAL) &&
        !q->abort_sent && q->polls >= q->countdown) {
        q->abort_sent = 1;
        g->e->aborts += q->action == ACT_ABORT;
        g->e->partial += q->action == ACT_PARTIAL;
        st = kvx_client_xfer_abort(q->x);
        if (st != KVX_OK && st != KVX_ERR_BAD_STATE) {
            bad(g, "abort", st);
        }
        return 1;
    }
    if (q->action == ACT_RELEASE && q->polls >= q->countdown) {
        kvx_client_xfer_release(q->x); /* aborts it: outcome unknown */
        q->x = NULL;
        q->rec.status = KVX_INPROGRESS;
        g->e->releases++;
        preq_end(g, q);
        return 1;
    }
    if (now_ms() - q->t_start > STUCK_MS) {
        g->e->stuck++;
        fprintf(stderr, "soak engine %d: request %llx stuck\n", g->inst,
                (unsigned long long)q->rec.rid);
        q->rec.status = KVX_INPROGRESS;
        preq_end(g, q);
        return 1;
    }
    return 0;
}

/* Withdraws publications older than SOAK_UNPUBLISH_MS (pulled or not). */
static void pub_withdraw(eng_t *g)
{
    uint64_t now = now_ms();

    while (g->pub_n > 0 && now - g->pub_t[g->pub_head] >= SOAK_UNPUBLISH_MS) {
        kvx_status_t st = kvx_client_unpublish(g->c, g->pub_rid[g->pub_head]);

        if (st != KVX_OK && st != KVX_ERR_NOT_FOUND) {
            bad(g, "unpublish", st);
        }
        g->e->unpublished += st == KVX_OK;
        g->pub_head = (g->pub_head + 1) % PUB_RING;
        g->pub_n--;
    }
}

void soak_prefill_main(const soak_ctx_t *ctx, int inst)
{
    preq_t q[SOAK_QUEUE];
    eng_t g;

    memset(q, 0, sizeof(q));
    eng_attach(&g, ctx, inst, ctx->psock, "soak-prefill");
    for (;;) {
        int busy = 0, moved = 0;

        pub_withdraw(&g);
        for (int i = 0; i < SOAK_QUEUE; i++) {
            if (q[i].busy) {
                moved += preq_poll(&g, &q[i]);
            } else if (ctx->sh->phase == 0) {
                moved += preq_start(&g, &q[i]);
            }
            busy += q[i].busy;
        }
        if (ctx->sh->phase != 0 && busy == 0) {
            break;
        }
        if (!moved) {
            nap_ms(1);
        }
    }
    eng_exit(&g);
}

/* ------------------------------------------------------------------------
 * Decode engines.
 */

/* Collects a request from the daemon and checks its bytes. @return 1 once
 * it is done with. */
static int dreq_collect(eng_t *g, dreq_t *q)
{
    kvx_block_ref_t got[SOAK_MAX_BLOCKS];
    soak_eng_t *e = g->e;
    uint32_t m = 0;
    kvx_status_t st =
        kvx_client_recv(g->c, q->rec.rid, 0, got, SOAK_MAX_BLOCKS, &m);

    if (st == KVX_INPROGRESS || st == KVX_ERR_NOT_FOUND) {
        if (now_ms() < q->deadline) {
            return 0;
        }
        if (q->rec.status == KVX_OK) {
            e->lost++; /* ended OK on the sender, never arrived */
            fprintf(stderr, "soak engine %d: request %llx lost: %s\n", g->inst,
                    (unsigned long long)q->rec.rid, kvx_status_string(st));
        } else {
            e->gave_up++;
        }
        return 1;
    }
    if (st != KVX_OK) {
        if (q->rec.status == KVX_OK) {
            bad(g, "recv of a completed request", st);
        }
        e->failed_seen++;
        return 1;
    }
    e->collected++;
    e->collect_blocks += m;
    if (m != q->rec.n) {
        bad(g, "recv: block count", KVX_ERR_INVALID_PARAM);
    }
    for (uint32_t i = 0; i < m && i < q->rec.n; i++) {
        if (!block_ok(kvx_client_block_addr(g->c, got[i].block), g->bb,
                      &q->keys[i])) {
            e->byte_errors++;
            fprintf(stderr, "soak engine %d: request %llx block %u differs\n",
                    g->inst, (unsigned long long)q->rec.rid, i);
        }
    }
    st = kvx_client_release(g->c, got, m, NULL);
    if (st != KVX_OK) {
        bad(g, "release", st);
    }
    return 1;
}

static void dreq_pull(eng_t *g, dreq_t *q)
{
    kvx_pull_params_t lp = {
        .field_mask = KVX_PULL_PARAM_FIELD_REQUEST_ID |
                      KVX_PULL_PARAM_FIELD_N_BLOCKS |
                      KVX_PULL_PARAM_FIELD_KEYS | KVX_PULL_PARAM_FIELD_DEADLINE,
        .request_id = q->rec.rid,
        .n_blocks = q->rec.n,
        .keys = q->keys,
        .deadline_ms = SOAK_DEADLINE_MS,
    };
    kvx_status_t st = kvx_client_pull(g->c, g->ctx->paddr, &lp, &q->x);

    if (st == KVX_ERR_NO_SPACE) {
        g->e->nospace++;
        q->busy = 0;
    } else if (st != KVX_OK) {
        bad(g, "pull", st);
        q->busy = 0;
    } else {
        g->e->started++;
        g->e->pulls++;
        g->e->blocks += q->rec.n;
    }
}

/* How long to wait for a request the sender saw end with @p st. */
static uint64_t collect_deadline(kvx_status_t st)
{
    return now_ms() + (st == KVX_OK ? SOAK_COLLECT_MS : FAILED_COLLECT_MS);
}

/* @return 1 if something happened. */
static int dreq_poll(eng_t *g, dreq_t *q)
{
    uint64_t now = now_ms();
    kvx_xfer_attr_t a;
    kvx_status_t st;

    if (q->x != NULL) {
        st = kvx_client_xfer_test(q->x);
        if (st == KVX_INPROGRESS && now - q->t_start <= STUCK_MS) {
            return 0;
        }
        g->e->ended++;
        if (st == KVX_OK && kvx_client_xfer_query(q->x, &a) == KVX_OK) {
            g->e->ok++;
            g->e->blocks_sent += a.blocks_sent;
            g->e->bytes += a.bytes_sent;
            g->e->hits_xfer += a.blocks_hit;
        } else if (st == KVX_ERR_NOT_FOUND) {
            g->e->pull_missed++; /* the publication expired first */
        } else if (st == KVX_ERR_NO_SPACE) {
            g->e->nospace++;
        } else if (st == KVX_INPROGRESS) {
            g->e->stuck++;
        } else {
            bad(g, "pull ended", st);
        }
        kvx_client_xfer_release(q->x);
        q->x = NULL;
        q->rec.status = st;
        q->deadline = collect_deadline(st);
        return 1;
    }
    if (dreq_collect(g, q)) {
        q->busy = 0;
        return 1;
    }
    return 0;
}

void soak_decode_main(const soak_ctx_t *ctx, int inst, int d)
{
    static dreq_t q[D_PENDING];
    int fd = ctx->pipe_r[d];
    eng_t g;

    eng_attach(&g, ctx, inst, ctx->dsock[d], "soak-decode");
    for (;;) {
        int busy = 0, moved = 0, empty = 0;

        for (int i = 0; i < D_PENDING; i++) {
            if (!q[i].busy && !empty) {
                soak_rec_t r;

                if (read(fd, &r, sizeof(r)) != (ssize_t)sizeof(r)) {
                    empty = 1;
                    continue;
                }
                moved = 1;
                if (!r.collect) {
                    g.e->skipped++; /* left to the daemon's hold_ms */
                } else {
                    memset(&q[i], 0, sizeof(q[i]));
                    q[i].busy = 1;
                    q[i].rec = r;
                    q[i].t_start = now_ms();
                    q[i].deadline = collect_deadline(r.status);
                    rec_keys(&r, q[i].keys);
                    if (r.pull) {
                        dreq_pull(&g, &q[i]);
                    }
                }
            }
            if (q[i].busy) {
                moved += dreq_poll(&g, &q[i]);
            }
            busy += q[i].busy;
        }
        if (ctx->sh->phase == 2 && busy == 0 && empty) {
            break;
        }
        if (!moved) {
            struct pollfd pfd = {.fd = fd, .events = POLLIN};

            poll(&pfd, 1, 1);
        }
    }
    eng_exit(&g);
}
