/*
 * Writes the seed corpus of fuzz_node (fuzz_node.h): every node-to-node
 * body sent by a remote, every engine-session body after an Attach, and
 * short scenarios that reach deep states (a push received and committed, a
 * push sent and acknowledged, pulls both ways, publications, engine
 * transfers, aborts, expiry, peers going away).
 *
 *   gen_node_corpus DIR          write the seeds into DIR (must exist)
 *   gen_node_corpus --check DIR  exit 1 if DIR's seeds differ from what
 *                                this build would write (stale corpus)
 *
 * Regenerate after changing kvx.proto, the samples or fuzz_node.h:
 *   build/tests/fuzz/gen_node_corpus tests/fuzz/corpus/node
 * Other files there (regress-*.node: inputs that once broke the node) are
 * kept by hand and not checked.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kvx/alloc.h>

#include "frame_samples_local.h"
#include "fuzz_node.h"
#include "seed_file.h"

#define SEED_MAX 8192

typedef struct seed {
    uint8_t buf[SEED_MAX];
    size_t len;
    int failed;
} seed_t;

typedef int (*emit_fn)(const char *dir, const char *name, const seed_t *s);

static int write_seed(const char *dir, const char *name, const seed_t *s)
{
    return seed_file("gen_node_corpus", 0, dir, name, "node", s->buf, s->len);
}

static int check_seed(const char *dir, const char *name, const seed_t *s)
{
    return seed_file("gen_node_corpus", 1, dir, name, "node", s->buf, s->len);
}

static void put(seed_t *s, size_t n, const uint8_t *bytes)
{
    if (s->len + n > sizeof(s->buf)) {
        s->failed = 1;
        return;
    }
    memcpy(s->buf + s->len, bytes, n);
    s->len += n;
}

#define PUT(s, ...)                                                            \
    do {                                                                       \
        const uint8_t b_[] = {__VA_ARGS__};                                    \
        put(s, sizeof(b_), b_);                                                \
    } while (0)

static void put_frame(seed_t *s, const kvxi_envelope_t *env)
{
    size_t len = 0;

    if (kvxi_frame_encode(env, s->buf + s->len, sizeof(s->buf) - s->len,
                          &len) != KVX_OK) {
        fprintf(stderr, "gen_node_corpus: cannot encode %s\n",
                kvxi_envelope_body_name(env));
        s->failed = 1;
        return;
    }
    s->len += len;
}

static void start(seed_t *s, uint8_t cfg)
{
    s->len = 0;
    s->failed = 0;
    PUT(s, cfg);
}

/* The node-to-node sample of @p body, fitted to the fuzzed node: blocks
 * 4.. of its 16, generation 1, 3 blocks, the remote's transfer id (odd on
 * slot 0, where the node accepted), 4 layers. */
static void sample(frame_local_sample_t *ls, Kvx__V1__Envelope__BodyCase body,
                   uint64_t req)
{
    frame_sample_t *s = &ls->base;

    if (!frame_local_sample_init(ls, body)) {
        frame_sample_init(s, body);
    }
    for (unsigned i = 0; i < FRAME_SAMPLE_BLOCKS; i++) {
        s->blocks[i] = 4 + i;
        s->gens[i] = 1;
    }
    s->layers.count = 4;
    s->env.request_id = req;
    s->error.request_id = req;
}

static void peer_frame(seed_t *s, unsigned slot, const kvxi_envelope_t *env)
{
    PUT(s, FZ_OP_PEER_FRAME, (uint8_t)slot);
    put_frame(s, env);
}

static void engine_frame(seed_t *s, const kvxi_envelope_t *env)
{
    PUT(s, FZ_OP_ENGINE_FRAME);
    put_frame(s, env);
}

static void engine_attach(seed_t *s)
{
    frame_local_sample_t ls;

    sample(&ls, KVX__V1__ENVELOPE__BODY_ATTACH, 1);
    engine_frame(s, &ls.base.env);
}

/* A remote's AllocateRequest{PUSH} for @p n blocks as transfer @p tid. */
static void alloc_request(seed_t *s, unsigned slot, uint64_t tid, uint32_t n,
                          int rma, int keyed, uint32_t lease_ms)
{
    frame_local_sample_t ls;
    Kvx__V1__AllocateRequest *r = &ls.base.allocate_request;
    uint8_t keys[3 * KVXI_KEY_LEN];

    sample(&ls, KVX__V1__ENVELOPE__BODY_ALLOCATE_REQUEST, 50 + tid);
    r->transfer_id = tid;
    r->request_id = 7;
    r->block_count = n;
    r->lease_ms = lease_ms;
    r->layers = NULL;
    r->data_path = rma ? KVX__V1__DATA_PATH__DATA_PATH_RMA
                       : KVX__V1__DATA_PATH__DATA_PATH_AM;
    r->keys.len = 0;
    if (keyed && n <= 3) {
        /* the first is a key of the harness's cached source blocks */
        memset(keys, 0xa0, sizeof(keys));
        memset(keys + KVXI_KEY_LEN, 0x42, sizeof(keys) - KVXI_KEY_LEN);
        keys[2 * KVXI_KEY_LEN] = 0x43;
        r->keys.data = keys;
        r->keys.len = (size_t)n * KVXI_KEY_LEN;
    }
    peer_frame(s, slot, &ls.base.env);
}

static void simple(seed_t *s, unsigned slot, Kvx__V1__Envelope__BodyCase body,
                   uint64_t tid, uint64_t req)
{
    frame_local_sample_t ls;
    frame_sample_t *b = &ls.base;

    sample(&ls, body, req);
    b->allocate_reply.transfer_id = tid;
    b->commit_ack.transfer_id = tid;
    b->abort_msg.transfer_id = tid;
    b->abort_ack.transfer_id = tid;
    b->release.transfer_id = tid;
    b->refs.n_blocks = b->refs.n_gens = 2;
    peer_frame(s, slot, &b->env);
}

static const Kvx__V1__Envelope__BodyCase engine_node_bodies[] = {
    KVX__V1__ENVELOPE__BODY_LAYER_READY, KVX__V1__ENVELOPE__BODY_RELEASE,
    KVX__V1__ENVELOPE__BODY_ABORT,       KVX__V1__ENVELOPE__BODY_LOOKUP,
    KVX__V1__ENVELOPE__BODY_STATS,
};

static int emit_samples(emit_fn emit, const char *dir)
{
    static seed_t s;
    char name[96];
    int failed = 0;

    for (size_t i = 0; i < FRAME_SAMPLE_N_BODIES; i++) {
        frame_local_sample_t ls;

        start(&s, 0);
        sample(&ls, frame_sample_bodies[i], 42);
        peer_frame(&s, 0, &ls.base.env);
        snprintf(name, sizeof(name), "peer-%s",
                 kvxi_envelope_body_name(&ls.base.env));
        failed |= s.failed || emit(dir, name, &s) != 0;
    }
    for (size_t i = 0; i < FRAME_LOCAL_SAMPLE_N_BODIES; i++) {
        frame_local_sample_t ls;

        start(&s, 0);
        if (frame_local_sample_bodies[i] != KVX__V1__ENVELOPE__BODY_ATTACH) {
            engine_attach(&s);
        }
        sample(&ls, frame_local_sample_bodies[i], 42);
        ls.push_start.peer = (char *)"remote0";
        ls.pull_start.peer = (char *)"remote1";
        engine_frame(&s, &ls.base.env);
        snprintf(name, sizeof(name), "engine-%s",
                 kvxi_envelope_body_name(&ls.base.env));
        failed |= s.failed || emit(dir, name, &s) != 0;
    }
    /* node-to-node bodies an engine session serves too */
    for (size_t i = 0;
         i < sizeof(engine_node_bodies) / sizeof(engine_node_bodies[0]); i++) {
        frame_local_sample_t ls;

        start(&s, 0);
        engine_attach(&s);
        sample(&ls, engine_node_bodies[i], 42);
        ls.base.layer_ready.transfer_id = 1;
        ls.base.abort_msg.transfer_id = 1;
        engine_frame(&s, &ls.base.env);
        snprintf(name, sizeof(name), "engine-%s",
                 kvxi_envelope_body_name(&ls.base.env));
        failed |= s.failed || emit(dir, name, &s) != 0;
    }
    return failed;
}

/* The allocator of the node as fuzz_node starts each input: the harness's
 * source blocks taken; @p lease_p and @p refs get what an engine's first
 * Reserve of @p n unkeyed blocks receives. */
static int engine_reserve_replica(uint32_t n, uint64_t *lease_p,
                                  kvx_block_ref_t *refs)
{
    kvx_alloc_params_t ap = {.field_mask = KVX_ALLOC_PARAM_FIELD_BLOCK_COUNT,
                             .block_count = FZ_NUM_BLOCKS};
    kvx_block_ref_t src[FZ_SRC_BLOCKS];
    kvx_lease_id_t lease = 0;
    kvx_alloc_h a;
    int ok;

    if (kvx_alloc_create(&ap, &a) != KVX_OK) {
        return 0;
    }
    ok = kvx_alloc_reserve(a, FZ_SRC_BLOCKS, UINT64_MAX / 2, &lease, src) ==
             KVX_OK &&
         kvx_alloc_lease_commit(a, lease) == KVX_OK &&
         kvx_alloc_reserve(a, n, UINT64_MAX / 2, lease_p, refs) == KVX_OK;
    kvx_alloc_destroy(a);
    return ok;
}

/* Attach, Reserve 2, Seal: the session holds 2 blocks (@p refs). */
static void engine_hold2(seed_t *s, kvx_block_ref_t *refs, uint32_t *blocks,
                         uint32_t *gens)
{
    frame_local_sample_t ls;
    uint64_t lease = 0;

    if (!engine_reserve_replica(2, &lease, refs)) {
        s->failed = 1;
        return;
    }
    engine_attach(s);
    sample(&ls, KVX__V1__ENVELOPE__BODY_RESERVE, 2);
    ls.reserve.block_count = 2;
    ls.reserve.keys.len = 0;
    engine_frame(s, &ls.base.env);
    sample(&ls, KVX__V1__ENVELOPE__BODY_SEAL, 3);
    ls.seal.lease_id = lease;
    engine_frame(s, &ls.base.env);
    for (int i = 0; i < 2; i++) {
        blocks[i] = refs[i].block;
        gens[i] = refs[i].gen;
    }
}

static int emit_scenarios(emit_fn emit, const char *dir)
{
    static seed_t s;
    frame_local_sample_t ls;
    kvx_block_ref_t refs[2];
    uint32_t blocks[2], gens[2];
    int failed = 0;

#define EMIT(name) failed |= s.failed || emit(dir, name, &s) != 0

    /* the node receives a push, it is committed and collected */
    for (int rma = 0; rma < 2; rma++) {
        start(&s, rma ? 1 : 2);
        alloc_request(&s, 0, 9001, 3, rma, 0, 5000);
        /* AM: the remote wrote nothing (data_bytes = landed = 0) */
        PUT(&s, FZ_OP_COMMIT, 0, 0, rma ? 1 : 1 | 16, FZ_OP_RECV, 7);
        EMIT(rma ? "push-in-rma" : "push-in-am");
    }
    start(&s, 0);
    alloc_request(&s, 0, 9001, 3, 0, 1, 5000);
    PUT(&s, FZ_OP_COMMIT, 0, 0, 0, FZ_OP_RECV, 7);
    EMIT("push-in-dedupe");
    start(&s, 0);
    alloc_request(&s, 0, 9001, 3, 0, 0, 5000);
    simple(&s, 0, KVX__V1__ENVELOPE__BODY_ABORT, 9001, 60);
    PUT(&s, FZ_OP_RECV, 7);
    EMIT("push-in-abort");
    start(&s, FZ_CFG_HOLD);
    alloc_request(&s, 0, 9001, 2, 0, 0, 1);
    PUT(&s, FZ_OP_WAIT, 1, FZ_OP_COMMIT, 0, 0, 1, FZ_OP_RECV, 7);
    EMIT("push-in-expire");
    start(&s, 0);
    alloc_request(&s, 0, 9001, 2, 0, 0, 1);
    PUT(&s, FZ_OP_WAIT, 1);
    simple(&s, 0, KVX__V1__ENVELOPE__BODY_ABORT_ACK, 9001, 68);
    PUT(&s, FZ_OP_RECV, 7);
    EMIT("push-in-expire-ack");
    /* the remote writes 2 blocks over AM, in 3 pieces, then commits */
    start(&s, 2);
    alloc_request(&s, 0, 9001, 2, 0, 0, 5000);
    PUT(&s, FZ_OP_AM_WRITE, 0, 0, 0, 0, 63, FZ_OP_AM_WRITE, 0, 0, 0, 63, 63);
    PUT(&s, FZ_OP_AM_WRITE, 0, 0, 0, 126, 1, FZ_OP_AM_WRITE, 0, 0, 1, 0, 9);
    PUT(&s, FZ_OP_COMMIT, 0, 0, 1 | 16, FZ_OP_RECV, 7);
    EMIT("push-in-am-data");
    start(&s, 0);
    alloc_request(&s, 0, 9001, 2, 0, 0, 5000);
    alloc_request(&s, 1, 9002, 2, 0, 0, 5000);
    PUT(&s, FZ_OP_PEER_END, 0, 1, FZ_OP_PEER_END, 1, 0);
    EMIT("peers-end");

    /* the node pushes: reply, layers, acknowledgement or abort */
    start(&s, 2);
    PUT(&s, FZ_OP_PUSH, 0, 1, 2, 5, FZ_OP_REPLY, 0, 0, 0, 4, 5, 6, 7);
    simple(&s, 0, KVX__V1__ENVELOPE__BODY_COMMIT_ACK, 2, 61);
    EMIT("push-out");
    start(&s, 1);
    PUT(&s, FZ_OP_PUSH, 0, 1, 1, 5, FZ_OP_REPLY, 0, 0, 8, 0x0e, 5, 6, 7);
    PUT(&s, FZ_OP_XFER, 0, 2 | (4 << 2));
    simple(&s, 0, KVX__V1__ENVELOPE__BODY_COMMIT_ACK, 2, 61);
    EMIT("push-out-layerwise");
    start(&s, 2);
    PUT(&s, FZ_OP_PUSH, 1, 3, 2, 5, FZ_OP_REPLY, 1, 0, 0, 4, 5, 6, 7);
    simple(&s, 1, KVX__V1__ENVELOPE__BODY_ABORT, 3, 62);
    PUT(&s, FZ_OP_XFER, 0, 1);
    EMIT("push-out-abort");
    start(&s, 2);
    PUT(&s, FZ_OP_PUSH, 0, 3, 1, 5, FZ_OP_REPLY, 0, 0, 0, 4, 5, 6, 7);
    PUT(&s, FZ_OP_XFER, 0, 2 | (1 << 2), FZ_OP_XFER, 0, 0);
    simple(&s, 0, KVX__V1__ENVELOPE__BODY_ABORT_ACK, 2, 62);
    PUT(&s, FZ_OP_XFER, 0, 3);
    EMIT("push-out-abort-ack");

    /* the node pulls (RMA: it reads; AM: it grants, the remote commits) */
    start(&s, 1);
    PUT(&s, FZ_OP_PULL, 1, 2, 0, 9, FZ_OP_REPLY, 1, 0, 0, 4, 5, 6, 7);
    PUT(&s, FZ_OP_RECV, 9);
    EMIT("pull-out-rma");
    start(&s, 2);
    PUT(&s, FZ_OP_PULL, 1, 2, 4, 9, FZ_OP_REPLY, 1, 0, 0, 4, 5, 6, 7);
    PUT(&s, FZ_OP_COMMIT, 1, 0, 1, FZ_OP_RECV, 9);
    EMIT("pull-out-am");

    /* the node holds a publication a remote pulls; variants 2 and 3: it is
     * unpublished while read, and the Release or the remote's end frees it
     * (the node used to read it after freeing it) */
    for (int v = 0; v < 4; v++) {
        static const char *const names[] = {"pull-hold", "pull-hold-grant",
                                            "pull-hold-unpublished",
                                            "pull-hold-unpublished-peer-end"};
        Kvx__V1__AllocateRequest *r = &ls.base.allocate_request;

        start(&s, 2);
        PUT(&s, FZ_OP_PUBLISH, 5, 1, 0);
        sample(&ls, KVX__V1__ENVELOPE__BODY_ALLOCATE_REQUEST, 63);
        r->mode = KVX__V1__TRANSFER_MODE__TRANSFER_MODE_PULL;
        r->transfer_id = 9001;
        r->request_id = 5;
        r->block_count = 2;
        r->keys.len = 0;
        r->layers = NULL;
        ls.base.refs.n_blocks = ls.base.refs.n_gens = 2;
        r->src_blocks = &ls.base.refs;
        peer_frame(&s, 0, &ls.base.env);
        if (v >= 2) {
            PUT(&s, FZ_OP_UNPUBLISH, 5);
        } else if (v == 1) {
            sample(&ls, KVX__V1__ENVELOPE__BODY_ALLOCATE_REPLY, 64);
            ls.base.allocate_reply.transfer_id = 9001;
            ls.base.allocate_reply.block_count = 2;
            ls.base.allocate_reply.lease_id = 0x1234;
            ls.base.hit_mask[0] = 0;
            ls.base.allocate_reply.hit_mask.len = 1;
            ls.base.refs.n_blocks = ls.base.refs.n_gens = 2;
            peer_frame(&s, 0, &ls.base.env);
        }
        if (v == 3) {
            PUT(&s, FZ_OP_PEER_END, 0, 1);
        } else {
            simple(&s, 0, KVX__V1__ENVELOPE__BODY_RELEASE, 9001, 65);
            PUT(&s, FZ_OP_UNPUBLISH, 5);
        }
        EMIT(names[v]);
    }

    /* engine sessions: transfers through the remotes, publications */
    start(&s, 2);
    simple(&s, 0, KVX__V1__ENVELOPE__BODY_STATS, 0, 66);
    engine_hold2(&s, refs, blocks, gens);
    sample(&ls, KVX__V1__ENVELOPE__BODY_PUSH_START, 4);
    ls.push_start.peer = (char *)"remote0";
    ls.base.refs.n_blocks = ls.base.refs.n_gens = 2;
    ls.base.refs.blocks = blocks;
    ls.base.refs.gens = gens;
    ls.push_start.keys.len = 0;
    ls.push_start.flags = 2;
    engine_frame(&s, &ls.base.env);
    PUT(&s, FZ_OP_REPLY, 0, 0, 0, 4, 5, 6, 7);
    simple(&s, 0, KVX__V1__ENVELOPE__BODY_COMMIT_ACK, 2, 67);
    EMIT("engine-push");
    start(&s, 1);
    simple(&s, 1, KVX__V1__ENVELOPE__BODY_STATS, 0, 66);
    engine_attach(&s);
    sample(&ls, KVX__V1__ENVELOPE__BODY_PULL_START, 4);
    ls.pull_start.peer = (char *)"remote1";
    ls.pull_start.block_count = 2;
    ls.pull_start.keys.len = 0;
    ls.pull_start.request_id = 11;
    engine_frame(&s, &ls.base.env);
    PUT(&s, FZ_OP_REPLY, 1, 0, 0, 4, 5, 6, 7);
    sample(&ls, KVX__V1__ENVELOPE__BODY_RECV, 5);
    ls.recv.request_id = 11;
    engine_frame(&s, &ls.base.env);
    EMIT("engine-pull");
    start(&s, 0);
    engine_hold2(&s, refs, blocks, gens);
    sample(&ls, KVX__V1__ENVELOPE__BODY_PUBLISH_START, 4);
    ls.base.refs.n_blocks = ls.base.refs.n_gens = 2;
    ls.base.refs.blocks = blocks;
    ls.base.refs.gens = gens;
    engine_frame(&s, &ls.base.env);
    sample(&ls, KVX__V1__ENVELOPE__BODY_RELEASE, 5);
    ls.base.refs.n_blocks = ls.base.refs.n_gens = 2;
    ls.base.refs.blocks = blocks;
    ls.base.refs.gens = gens;
    engine_frame(&s, &ls.base.env);
    PUT(&s, FZ_OP_ENGINE_END);
    EMIT("engine-publish");
    start(&s, 0);
    engine_attach(&s);
    sample(&ls, KVX__V1__ENVELOPE__BODY_PULL_START, 4);
    engine_frame(&s, &ls.base.env); /* an address: connects nowhere */
    PUT(&s, FZ_OP_WAIT, 0);
    EMIT("engine-connect");
#undef EMIT
    return failed;
}

int main(int argc, char **argv)
{
    emit_fn emit;
    const char *dir;

    if (argc == 2) {
        emit = write_seed;
        dir = argv[1];
    } else if (argc == 3 && strcmp(argv[1], "--check") == 0) {
        emit = check_seed;
        dir = argv[2];
    } else {
        fprintf(stderr, "usage: %s [--check] DIR\n", argv[0]);
        return 2;
    }
    return emit_samples(emit, dir) | emit_scenarios(emit, dir) ? 1 : 0;
}
