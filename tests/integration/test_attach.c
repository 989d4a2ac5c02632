/*
 * Two kvxd processes on 127.0.0.1 (a prefill and a decode daemon), driven
 * the way inference engines drive them: this process attaches to each
 * daemon's engine socket (kvx/client.h), writes KV into the prefill
 * daemon's pool through the shared mapping, has the prefill daemon push or
 * publish it, and collects it from the decode daemon's pool. Over UCX tcp
 * and over shared memory. argv[1]: the kvxd binary.
 * Exit 0 pass, 1 fail, 77 when UCX cannot start here.
 */
#include "kvxd_it.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define N_MAX 8

/* One test's daemons and the engines attached to them. */
static struct {
    it_proc_t *prefill, *decode;
    kvx_client_h pc, dc; /* prefill engine, decode engine */
    char psock[PATH_MAX], dsock[PATH_MAX];
    uint64_t bb;
} t;

static it_proc_t *daemon_start(const char *name, const char *sock,
                               const char *head_dim)
{
    const char *args[] = {"--node_id",  name,     "--socket", sock,
                          "--head_dim", head_dim, NULL};

    unlink(sock);
    return it_daemon_start(args);
}

/* Starts both daemons with @p tls and attaches one engine to each. */
static void pair_start(const char *tls)
{
    memset(&t, 0, sizeof(t));
    setenv("UCX_TLS", tls, 1);
    snprintf(t.psock, sizeof(t.psock), "%s/prefill.sock", it_tmp_dir);
    snprintf(t.dsock, sizeof(t.dsock), "%s/decode.sock", it_tmp_dir);
    t.decode = daemon_start("kvxd-decode", t.dsock, "64");
    t.prefill = daemon_start("kvxd-prefill", t.psock, "64");
    CU_ASSERT_PTR_NOT_NULL_FATAL(t.decode);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t.prefill);
    t.pc = it_attach(t.psock);
    t.dc = it_attach(t.dsock);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t.pc);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t.dc);
    CU_ASSERT_STRING_EQUAL(kvx_client_node_id(t.pc), "kvxd-prefill");
    t.bb = kvx_client_layout(t.pc)->block_bytes;
}

static void pair_stop(void)
{
    kvx_client_detach(t.pc);
    kvx_client_detach(t.dc);
    t.pc = t.dc = NULL;
    if (t.prefill != NULL) {
        CU_ASSERT_EQUAL(it_proc_stop(t.prefill), 0);
    }
    if (t.decode != NULL) {
        CU_ASSERT_EQUAL(it_proc_stop(t.decode), 0);
    }
}

static void keys_make(kvx_block_key_t *keys, uint32_t n, uint8_t tag)
{
    memset(keys, 0, n * sizeof(*keys));
    for (uint32_t i = 0; i < n; i++) {
        keys[i].bytes[0] = (uint8_t)(i + 1);
        keys[i].bytes[7] = tag;
        keys[i].bytes[15] = 0x5a;
    }
}

static kvx_client_xfer_h push(uint64_t rid, const kvx_block_ref_t *src,
                              uint32_t n, const kvx_block_key_t *keys,
                              uint32_t deadline_ms, uint32_t flags)
{
    kvx_xfer_params_t xp =
        it_xfer_params(rid, src, n, keys, deadline_ms, flags);
    kvx_client_xfer_h x = NULL;

    CU_ASSERT_EQUAL_FATAL(kvx_client_push(t.pc, t.decode->addr, &xp, &x),
                          KVX_OK);
    return x;
}

static uint64_t pool_free(kvx_client_h c)
{
    uint64_t n = it_pool_settled(c);

    CU_ASSERT_NOT_EQUAL(n, 0);
    return n;
}

/* ---- tests ---- */

/* Push with checksums through the prefill daemon; the second request shares
 * 4 blocks by key, so only 2 cross the wire (byte counters checked on both
 * daemons); the decode engine reads exactly what the prefill engine wrote. */
static void push_dedupe(const char *tls, kvx_transport_t expect)
{
    kvx_block_key_t keys[6];
    kvx_block_ref_t src[6];
    kvx_client_peer_t peers[4];
    kvx_node_stats_t ds;
    kvx_xfer_attr_t a;
    kvx_client_xfer_h x;
    uint64_t free0, dfree0;
    uint32_t n = 0;

    pair_start(tls);
    free0 = pool_free(t.pc);
    dfree0 = pool_free(t.dc);
    keys_make(keys, 6, (uint8_t)expect);
    it_write(t.pc, src, 6, 11, keys);

    x = push(1, src, 4, keys, 0, KVX_XFER_FLAG_CHECKSUM);
    CU_ASSERT_EQUAL(kvx_client_xfer_wait(x, IT_WAIT_MS), KVX_OK);
    CU_ASSERT_EQUAL(kvx_client_xfer_query(x, &a), KVX_OK);
    CU_ASSERT_EQUAL(a.blocks_hit, 0);
    CU_ASSERT_EQUAL(a.blocks_sent, 4);
    CU_ASSERT_EQUAL(a.bytes_sent, 4 * t.bb);
    CU_ASSERT_EQUAL(a.transport, expect);
    kvx_client_xfer_release(x);
    CU_ASSERT_EQUAL(it_collect(t.dc, 1, 4, 11), 0);

    x = push(2, src, 6, keys, 0, KVX_XFER_FLAG_CHECKSUM);
    CU_ASSERT_EQUAL(kvx_client_xfer_wait(x, IT_WAIT_MS), KVX_OK);
    CU_ASSERT_EQUAL(kvx_client_xfer_query(x, &a), KVX_OK);
    CU_ASSERT_EQUAL(a.blocks_hit, 4);
    CU_ASSERT_EQUAL(a.blocks_sent, 2);
    CU_ASSERT_EQUAL(a.bytes_sent, 2 * t.bb);
    kvx_client_xfer_release(x);
    CU_ASSERT_EQUAL(it_collect(t.dc, 2, 6, 11), 0);

    CU_ASSERT_EQUAL(kvx_client_stats(t.dc, &ds), KVX_OK);
    CU_ASSERT_EQUAL(ds.bytes_received, 6 * t.bb);
    CU_ASSERT_EQUAL(ds.dedupe_hit_blocks, 4);
    CU_ASSERT_EQUAL(ds.transfers_ok, 2);

    /* The prefill daemon lists the decode daemon it connected to. */
    CU_ASSERT_EQUAL(kvx_client_peers(t.pc, peers, 4, &n), KVX_OK);
    CU_ASSERT_EQUAL_FATAL(n, 1);
    CU_ASSERT_STRING_EQUAL(peers[0].node_id, "kvxd-decode");
    CU_ASSERT_EQUAL(peers[0].status, KVX_OK);
    CU_ASSERT_EQUAL(peers[0].transport, expect);
    CU_ASSERT_EQUAL(peers[0].outgoing, 1);

    CU_ASSERT_EQUAL(kvx_client_release(t.pc, src, 6, &n), KVX_OK);
    CU_ASSERT_EQUAL(n, 6);
    CU_ASSERT_EQUAL(pool_free(t.pc), free0);
    CU_ASSERT_EQUAL(pool_free(t.dc), dfree0);
    pair_stop();
}

static void test_attach_push_dedupe_tcp(void)
{
    push_dedupe(IT_TLS_TCP, KVX_TRANSPORT_AM);
}

static void test_attach_push_dedupe_shm(void)
{
    push_dedupe(IT_TLS_SHM, KVX_TRANSPORT_RMA);
}

/* Layer-wise: nothing is sent before a layer is announced; each
 * announcement sends that layer's share. */
static void layerwise(const char *tls)
{
    const uint32_t layers = kvx_client_layout(t.pc)->num_layers;
    kvx_block_ref_t src[4];
    kvx_xfer_attr_t a;
    kvx_client_xfer_h x;

    it_write(t.pc, src, 4, 23, NULL);
    x = push(3, src, 4, NULL, 0, KVX_XFER_FLAG_LAYERWISE);
    it_sleep_ms(200);
    CU_ASSERT_EQUAL(kvx_client_xfer_test(x), KVX_INPROGRESS);
    for (uint32_t l = 1; l <= layers; l++) {
        CU_ASSERT_EQUAL(kvx_client_xfer_layer_ready(x, l), KVX_OK);
    }
    CU_ASSERT_EQUAL(kvx_client_xfer_wait(x, IT_WAIT_MS), KVX_OK);
    CU_ASSERT_EQUAL(kvx_client_xfer_query(x, &a), KVX_OK);
    CU_ASSERT_EQUAL(a.blocks_sent, 4);
    CU_ASSERT_EQUAL(a.bytes_sent, 4 * t.bb);
    kvx_client_xfer_release(x);
    CU_ASSERT_EQUAL(it_collect(t.dc, 3, 4, 23), 0);
    CU_ASSERT_EQUAL(kvx_client_release(t.pc, src, 4, NULL), KVX_OK);
    (void)tls;
}

static void test_attach_layerwise_tcp(void)
{
    pair_start(IT_TLS_TCP);
    layerwise(IT_TLS_TCP);
    pair_stop();
}

static void test_attach_layerwise_shm(void)
{
    pair_start(IT_TLS_SHM);
    layerwise(IT_TLS_SHM);
    pair_stop();
}

/* Pull: the prefill engine publishes, the decode engine pulls with the
 * ticket and reads the blocks; a second pull of the same keys reads
 * nothing (the decode pool holds them). */
static void pull(const char *tls)
{
    kvx_block_key_t keys[5];
    kvx_block_ref_t src[5];
    kvx_publish_params_t pp = {
        .field_mask =
            KVX_PUBLISH_PARAM_FIELD_REQUEST_ID | KVX_PUBLISH_PARAM_FIELD_BLOCKS,
        .request_id = 40,
        .blocks = src,
        .n_blocks = 5,
    };
    kvx_pull_params_t lp = {
        .field_mask = KVX_PULL_PARAM_FIELD_REQUEST_ID |
                      KVX_PULL_PARAM_FIELD_N_BLOCKS | KVX_PULL_PARAM_FIELD_KEYS,
        .request_id = 40,
        .n_blocks = 5,
        .keys = keys,
    };
    kvx_ticket_t ticket;
    kvx_xfer_attr_t a;
    kvx_client_xfer_h x;

    pair_start(tls);
    keys_make(keys, 5, 0x77);
    it_write(t.pc, src, 5, 31, keys);
    CU_ASSERT_EQUAL_FATAL(kvx_client_publish(t.pc, &pp, &ticket), KVX_OK);
    CU_ASSERT_STRING_EQUAL(ticket.addr, t.prefill->addr);
    CU_ASSERT_STRING_EQUAL(ticket.node_id, "kvxd-prefill");
    CU_ASSERT_EQUAL_FATAL(kvx_client_pull(t.dc, ticket.addr, &lp, &x), KVX_OK);
    CU_ASSERT_EQUAL(kvx_client_xfer_wait(x, IT_WAIT_MS), KVX_OK);
    CU_ASSERT_EQUAL(kvx_client_xfer_query(x, &a), KVX_OK);
    CU_ASSERT_EQUAL(a.blocks_sent, 5);
    kvx_client_xfer_release(x);
    CU_ASSERT_EQUAL(it_collect(t.dc, 40, 5, 31), 0);

    CU_ASSERT_EQUAL_FATAL(kvx_client_pull(t.dc, ticket.addr, &lp, &x), KVX_OK);
    CU_ASSERT_EQUAL(kvx_client_xfer_wait(x, IT_WAIT_MS), KVX_OK);
    CU_ASSERT_EQUAL(kvx_client_xfer_query(x, &a), KVX_OK);
    CU_ASSERT_EQUAL(a.blocks_hit, 5);
    CU_ASSERT_EQUAL(a.blocks_sent, 0);
    kvx_client_xfer_release(x);
    CU_ASSERT_EQUAL(it_collect(t.dc, 40, 5, 31), 0);

    CU_ASSERT_EQUAL(kvx_client_unpublish(t.pc, 40), KVX_OK);
    CU_ASSERT_EQUAL(kvx_client_release(t.pc, src, 5, NULL), KVX_OK);
    pair_stop();
}

static void test_attach_pull_tcp(void)
{
    pull(IT_TLS_TCP);
}

static void test_attach_pull_shm(void)
{
    pull(IT_TLS_SHM);
}

/* The decode daemon is SIGKILLed mid-transfer: the prefill daemon ends the
 * push with a peer-class status (or TIMEOUT) within its deadline and the
 * engine's blocks come back once it releases them. */
static void test_attach_sigkill_decode(void)
{
    const uint32_t deadline_ms = 4000;
    kvx_block_ref_t src[8];
    kvx_client_xfer_h x;
    uint64_t free0, t0, elapsed;
    kvx_status_t st;
    int status;

    pair_start(IT_TLS_TCP);
    free0 = pool_free(t.pc);
    it_write(t.pc, src, 8, 5, NULL);
    t0 = it_now_ms();
    x = push(7, src, 8, NULL, deadline_ms, KVX_XFER_FLAG_LAYERWISE);
    CU_ASSERT_EQUAL(kvx_client_xfer_layer_ready(x, 1), KVX_OK); /* no more */
    it_sleep_ms(300);
    CU_ASSERT_EQUAL(kvx_client_xfer_test(x), KVX_INPROGRESS);
    kill(t.decode->pid, SIGKILL);
    status = it_proc_reap(t.decode, IT_STOP_MS);
    t.decode = NULL;
    CU_ASSERT(status >= 0 && WIFSIGNALED(status) &&
              WTERMSIG(status) == SIGKILL);
    st = kvx_client_xfer_wait(x, deadline_ms + 2000);
    elapsed = it_now_ms() - t0;
    fprintf(stderr, "sigkill of the decode daemon: %s after %llu ms\n",
            kvx_status_string(st), (unsigned long long)elapsed);
    CU_ASSERT(KVX_STATUS_IS_PEER(st) || st == KVX_ERR_TIMEOUT);
    CU_ASSERT(elapsed <= deadline_ms + 1000);
    kvx_client_xfer_release(x);
    CU_ASSERT_EQUAL(kvx_client_release(t.pc, src, 8, NULL), KVX_OK);
    CU_ASSERT_EQUAL(pool_free(t.pc), free0);
    pair_stop();
}

/* An engine process that dies without detaching: the daemon drops its
 * holds and its unsealed reservation. */
static void test_attach_engine_killed(void)
{
    uint64_t free0;
    pid_t pid;
    int status;

    pair_start(IT_TLS_TCP);
    free0 = pool_free(t.pc);
    pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        kvx_block_ref_t refs[8];
        kvx_client_h c = NULL;
        kvx_lease_id_t lease;

        if (kvx_client_attach(t.psock, NULL, &c) != KVX_OK ||
            kvx_client_reserve(c, 4, NULL, 0, refs, NULL, &lease) != KVX_OK ||
            kvx_client_seal(c, lease) != KVX_OK ||
            kvx_client_reserve(c, 4, NULL, 0, refs + 4, NULL, &lease) !=
                KVX_OK) {
            _exit(1);
        }
        kill(getpid(), SIGKILL); /* no detach, no exit handlers */
        _exit(2);
    }
    CU_ASSERT_EQUAL(waitpid(pid, &status, 0), pid);
    CU_ASSERT(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    it_pool_wait(t.pc, free0, 2000); /* the daemon sees the socket close */
    CU_ASSERT_EQUAL(pool_free(t.pc), free0);
    pair_stop();
}

/* Bad input through the daemons: an unknown request id, a push to a daemon
 * serving another model shape, a push of blocks the engine does not hold. */
static void test_attach_bad_input(void)
{
    kvx_block_ref_t src[2], got[2], stale;
    kvx_client_xfer_h x;
    kvx_xfer_params_t xp = {
        .field_mask =
            KVX_XFER_PARAM_FIELD_REQUEST_ID | KVX_XFER_PARAM_FIELD_BLOCKS,
        .request_id = 9,
        .blocks = src,
        .n_blocks = 2,
    };
    char osock[PATH_MAX];
    it_proc_t *other;
    uint32_t n = 0;

    pair_start(IT_TLS_TCP);
    CU_ASSERT_EQUAL(kvx_client_recv(t.dc, 12345, 0, got, 2, &n),
                    KVX_ERR_NOT_FOUND);
    snprintf(osock, sizeof(osock), "%s/other.sock", it_tmp_dir);
    other = daemon_start("kvxd-other", osock, "32");
    CU_ASSERT_PTR_NOT_NULL_FATAL(other);
    it_write(t.pc, src, 2, 3, NULL);
    CU_ASSERT_EQUAL_FATAL(kvx_client_push(t.pc, other->addr, &xp, &x), KVX_OK);
    CU_ASSERT_EQUAL(kvx_client_xfer_wait(x, IT_WAIT_MS),
                    KVX_ERR_LAYOUT_MISMATCH);
    kvx_client_xfer_release(x);

    stale = src[0];
    stale.gen ^= 1u;
    xp.blocks = &stale;
    xp.n_blocks = 1;
    CU_ASSERT_NOT_EQUAL(kvx_client_push(t.pc, t.decode->addr, &xp, &x), KVX_OK);
    CU_ASSERT_EQUAL(kvx_client_release(t.pc, src, 2, NULL), KVX_OK);
    CU_ASSERT_EQUAL(it_proc_stop(other), 0);
    pair_stop();
}

static void teardown(void)
{
    kvx_client_detach(t.pc);
    kvx_client_detach(t.dc);
    t.pc = t.dc = NULL;
    it_proc_kill_all(1);
}

static const it_test_t tests[] = {
    {"test_attach_push_dedupe_tcp", test_attach_push_dedupe_tcp},
    {"test_attach_push_dedupe_shm", test_attach_push_dedupe_shm},
    {"test_attach_layerwise_tcp", test_attach_layerwise_tcp},
    {"test_attach_layerwise_shm", test_attach_layerwise_shm},
    {"test_attach_pull_tcp", test_attach_pull_tcp},
    {"test_attach_pull_shm", test_attach_pull_shm},
    {"test_attach_sigkill_decode", test_attach_sigkill_decode},
    {"test_attach_engine_killed", test_attach_engine_killed},
    {"test_attach_bad_input", test_attach_bad_input},
};

int main(int argc, char **argv)
{
    static const it_main_params_t mp = {
        .suite = "attach",
        .tests = tests,
        .n_tests = IT_N_TESTS(tests),
        .teardown = teardown,
    };

    return it_main(argc, argv, &mp);
}
