/*
 * Hostile peers against a real kvxd with a cluster secret (argv[1]: the
 * kvxd binary): forged proofs, a replayed handshake, oversize frames,
 * floods of unknown and unserved bodies, half-open connections, and an
 * authenticated peer reaching for another transfer's blocks. Each one must
 * end with a named error (or a refusal counted by the daemon), the
 * connection closed where the protocol says so, and the daemon still
 * serving a good peer with nothing lost. Crafted frames use the internal
 * frame API through hostile_raw.h; the good peer is this process's node.
 * Unit tests cover the same rules inside one process (test_conn_io.c,
 * test_handshake.c, test_xfer_fail.c); this checks them on the daemon.
 * Exit 0 pass, 1 fail, 77 when UCX cannot start here.
 */
#include "hostile_raw.h"
#include "node_ut.h" /* tests/unit: source blocks */

#include <event2/buffer.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#define SECRET "hostile-cluster-secret"
#define HS_MS "300"      /* the daemon's handshake_ms */
#define HS_DEADLINE 3000 /* well below the default handshake timeout */
#define FLOOD_N 2000

static char secret_path[PATH_MAX];

/* A daemon with the secret, a short handshake timeout, no heartbeat
 * pressure on silent raw clients, and received blocks released soon. */
static it_proc_t *daemon_start(void)
{
    const char *args[] = {"--secret_file",
                          secret_path,
                          "--handshake_ms=" HS_MS,
                          "--heartbeat_ms=60000",
                          "--hold_ms=100",
                          getenv("KVX_TEST_VERBOSE") ? "--log_level=debug"
                                                     : "--log_level=info",
                          NULL};
    it_proc_t *d;

    snprintf(secret_path, sizeof(secret_path), "%s/secret", it_tmp_dir);
    it_write_file(secret_path, SECRET "\n", strlen(SECRET) + 1, 0600);
    d = it_daemon_start(args);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    return d;
}

/* This process's two nodes with the secret (no listener): it_node, the
 * good peer, and raw_node, whose identity and UCX worker the raw (hostile)
 * connections use, so the good peer's endpoints never meet theirs. */
static void nodes_new(void)
{
    kvx_layout_params_t lp = it_layout(64);
    kvx_node_params_t np = {
        .field_mask = KVX_NODE_PARAM_FIELD_NODE_ID |
                      KVX_NODE_PARAM_FIELD_LAYOUT | KVX_NODE_PARAM_FIELD_SECRET,
        .node_id = "it-good",
        .layout = &lp,
        .secret = SECRET,
        .secret_len = strlen(SECRET),
    };

    CU_ASSERT_EQUAL_FATAL(kvx_node_create(&np, &it_node), KVX_OK);
    np.node_id = "it-hostile";
    CU_ASSERT_EQUAL_FATAL(kvx_node_create(&np, &raw_node), KVX_OK);
}

/* The daemon's counters, asked by a connected peer of our node. */
static kvx_node_stats_t daemon_stats(kvx_peer_h peer)
{
    kvx_node_stats_t st;

    memset(&st, 0, sizeof(st));
    CU_ASSERT_EQUAL(kvx_peer_stats(peer, IT_WAIT_MS, &st), KVX_OK);
    return st;
}

static uint64_t counter(const kvx_node_stats_t *st, const char *name)
{
    for (uint32_t i = 0; i < st->n_counters; i++) {
        if (strcmp(st->counters[i].name, name) == 0) {
            return st->counters[i].value;
        }
    }
    return 0;
}

/*
 * The good peer: connects with the secret, pushes 3 checksummed blocks,
 * and checks the daemon then returns to an idle pool (its hold of the
 * uncollected request ends after hold_ms): nothing was lost.
 */
static void good_peer_check(const it_proc_t *d, uint64_t am_refused_min)
{
    kvx_xfer_params_t xp;
    kvx_block_ref_t src[3];
    kvx_node_stats_t stats;
    kvx_status_t st;
    kvx_peer_h peer;
    kvx_xfer_h x;
    uint64_t end;

    CU_ASSERT_EQUAL_FATAL(kvx_node_connect(it_node, d->addr, &peer), KVX_OK);
    CU_ASSERT_EQUAL_FATAL(kvx_peer_wait(peer, IT_WAIT_MS), KVX_OK);
    nut_make_src(it_node, 3, src, 77);
    xp = it_xfer_params(777, src, 3, NULL, 0, KVX_XFER_FLAG_CHECKSUM);
    CU_ASSERT_EQUAL_FATAL(kvx_node_push(it_node, peer, &xp, &x), KVX_OK);
    st = kvx_xfer_wait(x, IT_WAIT_MS);
    if (st != KVX_OK) {
        fprintf(stderr, "good peer: push: %s\n", kvx_status_string(st));
    }
    CU_ASSERT_EQUAL(st, KVX_OK);
    kvx_xfer_release(x);
    nut_unpin_all(it_node, src, 3);
    end = it_now_ms() + IT_WAIT_MS;
    do {
        kvx_node_progress(it_node, 20);
        stats = daemon_stats(peer);
    } while (stats.blocks_free + stats.blocks_cached != IT_N_BLOCKS &&
             it_now_ms() < end);
    CU_ASSERT_EQUAL(stats.blocks_free + stats.blocks_cached, IT_N_BLOCKS);
    CU_ASSERT_EQUAL(stats.leases_active, 0);
    CU_ASSERT_EQUAL(counter(&stats, "checksum.mismatches"), 0);
    CU_ASSERT(counter(&stats, "am.refused") >= am_refused_min);
    kvx_peer_close(peer);
}

/* ---- authentication ---- */

/* A proof made without the secret is refused after HelloReply, before any
 * worker address or rkey is sent (test_kvxd_auth covers a whole node with
 * another secret, refused by our side first). */
static void test_hostile_forged_proof(void)
{
    it_proc_t *d = daemon_start();
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT, *r;
    Kvx__V1__AuthProof ap = KVX__V1__AUTH_PROOF__INIT;
    Kvx__V1__Memory mem;
    uint8_t mac[KVXI_AUTH_MAC_LEN];
    char err[IT_OUT_MAX];
    raw_t raw;

    nodes_new();
    raw_open(&raw, d->addr);
    raw_hello(&raw, "not the secret");
    r = raw_expect(&raw, B(HELLO_REPLY), 1);
    kvxi_frame_free(r);
    memset(mac, 0x5a, sizeof(mac));
    kvxi_wire_memory_to(&raw_node->ident.memory, &mem);
    ap.auth_mac.data = mac;
    ap.auth_mac.len = sizeof(mac);
    ap.memory = &mem;
    env.request_id = 2;
    env.body_case = B(AUTH_PROOF);
    env.auth_proof = &ap;
    raw_send(&raw, &env);
    raw_expect_error_eof(&raw, KVX_ERR_AUTH, IT_WAIT_MS);
    raw_close(&raw);
    good_peer_check(d, 0);
    it_read_file(d->err_path, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "closed: authentication failed"));
    CU_ASSERT_EQUAL(it_proc_stop(d), 0);
}

/* The bytes of a complete, legitimate handshake replayed on a new
 * connection: the daemon's nonce differs, the old proof fails. */
static void test_hostile_replay(void)
{
    it_proc_t *d = daemon_start();
    kvxi_envelope_t *r;
    raw_t good, replay;
    size_t len;

    nodes_new();
    raw_open(&good, d->addr);
    CU_ASSERT_EQUAL_FATAL(raw_handshake(&good, SECRET), KVX_OK);
    CU_ASSERT(good.peer->memory.rkey_len > 0); /* we did get the rkey */
    len = evbuffer_get_length(good.sent);
    raw_open(&replay, d->addr);
    raw_write(&replay, evbuffer_pullup(good.sent, -1), len);
    r = raw_expect(&replay, B(HELLO_REPLY), 1);
    kvxi_frame_free(r);
    raw_expect_error_eof(&replay, KVX_ERR_AUTH, IT_WAIT_MS);
    raw_close(&replay);
    /* the replayed session did not disturb the one it copied */
    {
        kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT;
        Kvx__V1__Stats s = KVX__V1__STATS__INIT;
        uint64_t id;

        env.body_case = B(STATS);
        env.stats = &s;
        id = raw_send(&good, &env);
        r = raw_expect(&good, B(STATS_REPLY), id);
        kvxi_frame_free(r);
    }
    raw_close(&good);
    good_peer_check(d, 0);
    CU_ASSERT_EQUAL(it_proc_stop(d), 0);
}

/* ---- framing ---- */

/* Oversize headers before the handshake (above 64 KiB) and after it
 * (above 4 MiB) are refused from the header alone. */
static void test_hostile_oversize(void)
{
    static const uint8_t pre[] = {0x00, 0x01, 0x00, 0x01};  /* 64 KiB + 1 */
    static const uint8_t post[] = {0x00, 0x40, 0x00, 0x01}; /* 4 MiB + 1 */
    it_proc_t *d = daemon_start();
    raw_t raw;

    nodes_new();
    raw_open(&raw, d->addr);
    raw_write(&raw, pre, sizeof(pre));
    raw_expect_error_eof(&raw, KVX_ERR_PROTO_OVERSIZE, IT_WAIT_MS);
    raw_close(&raw);
    raw_open(&raw, d->addr);
    CU_ASSERT_EQUAL_FATAL(raw_handshake(&raw, SECRET), KVX_OK);
    raw_write(&raw, post, sizeof(post));
    raw_expect_error_eof(&raw, KVX_ERR_PROTO_OVERSIZE, IT_WAIT_MS);
    raw_close(&raw);
    good_peer_check(d, 0);
    CU_ASSERT_EQUAL(it_proc_stop(d), 0);
}

/* Frames of a body number no version knows (field 100 of Envelope):
 * malformed at the first, before and after the handshake. */
static void test_hostile_unknown_flood(void)
{
    static const uint8_t unknown[] = {0x00, 0x00, 0x00, 0x07, 0x08, 0x01,
                                      0x10, 0x01, 0xa2, 0x06, 0x00};
    uint8_t *flood = malloc(FLOOD_N * sizeof(unknown));
    it_proc_t *d = daemon_start();
    raw_t raw;

    CU_ASSERT_PTR_NOT_NULL_FATAL(flood);
    nodes_new();
    for (size_t i = 0; i < FLOOD_N; i++) {
        memcpy(flood + i * sizeof(unknown), unknown, sizeof(unknown));
    }
    for (int open = 0; open < 2; open++) {
        raw_open(&raw, d->addr);
        if (open) {
            CU_ASSERT_EQUAL_FATAL(raw_handshake(&raw, SECRET), KVX_OK);
        }
        raw_write(&raw, flood, FLOOD_N * sizeof(unknown)); /* may be cut */
        raw_expect_error_eof(&raw, KVX_ERR_PROTO_MALFORMED, IT_WAIT_MS);
        raw_close(&raw);
    }
    free(flood);
    good_peer_check(d, 0);
    CU_ASSERT_EQUAL(it_proc_stop(d), 0);
}

/* Known bodies a node does not serve (a local engine session's Reserve)
 * from an authenticated peer: each is answered with Error(NOT_SUPPORTED)
 * and the connection stays (docs/protocol.md); one that never reads those
 * answers is closed once they pass the output bound (16 MiB), with one
 * warning, not one per dropped answer; the daemon serves others. */
static void test_hostile_unserved_flood(void)
{
    enum { N_READ = 2000, N_UNREAD = 600000 };
    it_proc_t *d = daemon_start();
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT, *r;
    Kvx__V1__Reserve rq = KVX__V1__RESERVE__INIT;
    char err[IT_OUT_MAX], line[128];
    uint8_t frame[64], *flood;
    size_t len = 0;
    kvx_status_t st;
    raw_t raw;
    int n_err = 0, sent;

    nodes_new();
    raw_open(&raw, d->addr);
    CU_ASSERT_EQUAL_FATAL(raw_handshake(&raw, SECRET), KVX_OK);
    rq.block_count = 1;
    env.body_case = B(RESERVE);
    env.reserve = &rq;
    for (sent = 0; sent < N_READ; sent++) {
        env.request_id = 0;
        raw_send(&raw, &env);
    }
    while (n_err < sent && (st = raw_recv(&raw, IT_WAIT_MS, &r)) == KVX_OK) {
        n_err += r->body_case == B(ERROR) &&
                 r->error->code == WIRE(KVX_ERR_NOT_SUPPORTED);
        kvxi_frame_free(r);
    }
    CU_ASSERT_EQUAL(n_err, sent);

    /* the same frame again and again, never reading */
    env.version = 1;
    env.request_id = 1u << 30; /* a fixed-size id */
    CU_ASSERT_EQUAL_FATAL(kvxi_frame_encode(&env, frame, sizeof(frame), &len),
                          KVX_OK);
    flood = malloc(N_UNREAD * len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(flood);
    for (size_t i = 0; i < N_UNREAD; i++) {
        memcpy(flood + i * len, frame, len);
    }
    raw_write(&raw, flood, N_UNREAD * len); /* fails once closed */
    free(flood);
    n_err = 0;
    while ((st = raw_recv(&raw, IT_WAIT_MS, &r)) == KVX_OK) {
        n_err++;
        kvxi_frame_free(r);
    }
    CU_ASSERT_EQUAL(st, KVX_ERR_PEER_DOWN); /* closed */
    CU_ASSERT(n_err < N_UNREAD);
    raw_close(&raw);
    good_peer_check(d, 0);
    CU_ASSERT_EQUAL(it_proc_stop(d), 0);
    it_read_file(d->err_path, err, sizeof(err));
    snprintf(line, sizeof(line), "bytes unread: closing");
    CU_ASSERT_PTR_NOT_NULL(strstr(err, line));
    CU_ASSERT_PTR_NULL(strstr(err, "sending error failed"));
}

/* ---- half-open connections ---- */

/* Silent, stalled mid-header, or stalled after Hello: each is closed with
 * Error(TIMEOUT) once the daemon's handshake_ms passed (well before the
 * default), and the daemon serves a good peer meanwhile. */
static void test_hostile_half_open(void)
{
    static const uint8_t partial[] = {0x00, 0x00};
    it_proc_t *d = daemon_start();
    raw_t silent, partway, hello;

    nodes_new();
    raw_open(&silent, d->addr);
    raw_open(&partway, d->addr);
    raw_write(&partway, partial, sizeof(partial));
    raw_open(&hello, d->addr);
    raw_hello(&hello, SECRET);
    raw_expect_error_eof(&silent, KVX_ERR_TIMEOUT, HS_DEADLINE);
    raw_expect_error_eof(&partway, KVX_ERR_TIMEOUT, HS_DEADLINE);
    raw_expect_error_eof(&hello, KVX_ERR_TIMEOUT, HS_DEADLINE);
    raw_close(&silent);
    raw_close(&partway);
    raw_close(&hello);
    good_peer_check(d, 0);
    CU_ASSERT_EQUAL(it_proc_stop(d), 0);
}

/* ---- another transfer's blocks ---- */

/* Peer B names peer A's transfer in Commit, Abort and Release, takes the
 * daemon's transfer-id parity, and writes AM chunks with a forged tag and
 * into blocks outside A's reservation: each is refused (a named error, or
 * counted as am.refused), A's transfer commits with its checksums intact,
 * A's own Commit with a wrong lease or wrong refs is refused, and the
 * daemon's pool returns to idle. */
static void test_hostile_foreign_blocks(void)
{
    it_proc_t *d = daemon_start();
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT, *r;
    Kvx__V1__Abort ab = KVX__V1__ABORT__INIT;
    Kvx__V1__Release rl = KVX__V1__RELEASE__INIT;
    Kvx__V1__BlockRefs br = KVX__V1__BLOCK_REFS__INIT;
    kvx_block_ref_t refs[2], refs2[2], src[2], wrong[2], straddle;
    uint32_t blocks[2], gens[2], victim = IT_N_BLOCKS;
    uint64_t tag, tag2, sums[2], bb;
    kvxi_ucx_ep_params_t ep = {.field_mask = KVXI_UCX_EP_FIELD_ADDRESS |
                                             KVXI_UCX_EP_FIELD_MODE,
                               .mode = KVXI_UCX_MODE_AM};
    kvxi_ucx_ep_h uep;
    raw_t a, b;

    nodes_new();
    bb = kvx_node_layout(it_node)->block_bytes;
    raw_open(&a, d->addr);
    raw_open(&b, d->addr);
    CU_ASSERT_EQUAL_FATAL(raw_handshake(&a, SECRET), KVX_OK);
    CU_ASSERT_EQUAL_FATAL(raw_handshake(&b, SECRET), KVX_OK);
    tag = raw_allocate(&a, 1, 2, KVX_OK, refs);
    for (uint32_t i = 0; i < IT_N_BLOCKS && victim == IT_N_BLOCKS; i++) {
        victim = i != refs[0].block && i != refs[1].block ? i : victim;
    }

    /* B: A's transfer is not B's (transfers are per connection) */
    r = raw_commit(&b, 1, tag, refs, 2, NULL, 2 * bb, B(ERROR));
    CU_ASSERT(r != NULL && r->error->code == WIRE(KVX_ERR_NOT_FOUND));
    kvxi_frame_free(r);
    ab.transfer_id = 1;
    ab.lease_id = tag;
    ab.reason = WIRE(KVX_ERR_ABORTED);
    env.body_case = B(ABORT);
    env.abort = &ab;
    r = raw_expect(&b, B(ERROR), raw_send(&b, &env));
    CU_ASSERT(r != NULL && r->error->code == WIRE(KVX_ERR_NOT_FOUND));
    kvxi_frame_free(r);
    blocks[0] = refs[0].block;
    blocks[1] = refs[1].block;
    gens[0] = refs[0].gen;
    gens[1] = refs[1].gen;
    br.n_blocks = br.n_gens = 2;
    br.blocks = blocks;
    br.gens = gens;
    rl.transfer_id = 1;
    rl.blocks = &br;
    kvx__v1__envelope__init(&env);
    env.body_case = B(RELEASE);
    env.release = &rl;
    r = raw_expect(&b, B(RELEASE_ACK), raw_send(&b, &env));
    CU_ASSERT(r != NULL && r->release_ack->released == 0);
    kvxi_frame_free(r);
    raw_allocate(&b, 2, 1, KVX_ERR_INVALID_PARAM, NULL); /* daemon's parity */

    /* forged AM chunks: a tag with another random part; A's tag outside
     * A's blocks */
    nut_make_src(raw_node, 2, src, 31);
    ep.address = a.peer->memory.worker_address;
    ep.address_len = a.peer->memory.worker_address_len;
    CU_ASSERT_EQUAL_FATAL(kvxi_ucx_ep_create(raw_node->ucx, &ep, &uep), KVX_OK);
    raw_am_write(uep, tag ^ (1ull << 40), src[0].block * bb, refs[0].block * bb,
                 bb);
    raw_am_write(uep, tag, src[0].block * bb, victim * bb, bb);
    /* one chunk (below the 4 MiB AM chunk) from one of A's blocks into a
     * block that is not A's, or past the pool */
    straddle = refs[1].block + 1 != refs[0].block ? refs[1] : refs[0];
    raw_am_write(uep, tag, src[0].block * bb, straddle.block * bb, 2 * bb);

    /* A: a wrong lease is stale; then its real data and Commit succeed */
    r = raw_commit(&a, 1, tag + 1, refs, 2, NULL, 2 * bb, B(COMMIT_ACK));
    CU_ASSERT(r != NULL && r->commit_ack->status == WIRE(KVX_ERR_STALE_HANDLE));
    kvxi_frame_free(r);
    for (int i = 0; i < 2; i++) {
        raw_am_write(uep, tag, src[i].block * bb, refs[i].block * bb, bb);
        sums[i] = XXH3_64bits(
            kvx_pool_block_addr(kvx_node_pool(raw_node), src[i].block), bb);
    }
    r = raw_commit(&a, 1, tag, refs, 2, sums, 2 * bb, B(COMMIT_ACK));
    CU_ASSERT(r != NULL && r->commit_ack->status == WIRE(KVX_OK));
    kvxi_frame_free(r);

    /* A: refs that are not the reservation's fail the transfer */
    tag2 = raw_allocate(&a, 3, 2, KVX_OK, refs2);
    wrong[0] = refs2[1];
    wrong[1] = refs2[0];
    r = raw_commit(&a, 3, tag2, wrong, 2, NULL, 0, B(COMMIT_ACK));
    CU_ASSERT(r != NULL &&
              r->commit_ack->status == WIRE(KVX_ERR_PROTO_MALFORMED));
    kvxi_frame_free(r);

    kvxi_ucx_ep_destroy(uep);
    nut_unpin_all(raw_node, src, 2);
    raw_close(&a);
    raw_close(&b);
    good_peer_check(d, 3); /* the three forged chunks were refused */
    CU_ASSERT_EQUAL(it_proc_stop(d), 0);
}

/* ---- driver ---- */

static void teardown(void)
{
    it_proc_kill_all(1);
    kvx_node_destroy(it_node);
    kvx_node_destroy(raw_node);
    it_node = raw_node = NULL;
}

static const it_test_t tests[] = {
    {"test_hostile_forged_proof", test_hostile_forged_proof},
    {"test_hostile_replay", test_hostile_replay},
    {"test_hostile_oversize", test_hostile_oversize},
    {"test_hostile_unknown_flood", test_hostile_unknown_flood},
    {"test_hostile_unserved_flood", test_hostile_unserved_flood},
    {"test_hostile_half_open", test_hostile_half_open},
    {"test_hostile_foreign_blocks", test_hostile_foreign_blocks},
};

int main(int argc, char **argv)
{
    static const it_main_params_t mp = {
        .suite = "hostile",
        .tests = tests,
        .n_tests = IT_N_TESTS(tests),
        .teardown = teardown,
    };

    setenv("UCX_TLS", IT_TLS_TCP, 1);
    return it_main(argc, argv, &mp);
}
