/*
 * Integration tests for kvxd: real daemon processes on 127.0.0.1 (started
 * with fork/exec, stopped by PID, always reaped), and an embedded node in
 * this process that connects and pushes to them over TCP and over shared
 * memory. argv[1]: the kvxd binary; argv[2]: daemon/kvxd.conf.example.
 * Exit 0 pass, 1 fail, 77 when UCX cannot start here.
 */
#include "kvxd_it.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *example_path;

/* ---- the test's own node ---- */

static kvx_status_t node_new(uint32_t head_dim, const char *secret)
{
    kvx_layout_params_t lp = it_layout(head_dim);
    kvx_node_params_t np = {
        .field_mask =
            KVX_NODE_PARAM_FIELD_NODE_ID | KVX_NODE_PARAM_FIELD_LAYOUT,
        .node_id = "it-prefill",
        .layout = &lp,
    };

    if (secret != NULL) {
        np.field_mask |= KVX_NODE_PARAM_FIELD_SECRET;
        np.secret = secret;
        np.secret_len = strlen(secret);
    }
    kvx_node_destroy(it_node);
    it_node = NULL;
    return kvx_node_create(&np, &it_node);
}

static kvx_status_t node_connect(const it_proc_t *d, kvx_peer_h *peer_p)
{
    kvx_status_t st = kvx_node_connect(it_node, d->addr, peer_p);

    return st != KVX_OK ? st : kvx_peer_wait(*peer_p, IT_WAIT_MS);
}

static uint32_t n_free(void)
{
    kvx_alloc_attr_t a;

    kvx_alloc_query(kvx_node_alloc(it_node), &a);
    CU_ASSERT_EQUAL(a.n_reserved, 0);
    CU_ASSERT_EQUAL(a.n_fenced, 0);
    return a.n_free + a.n_cached;
}

/* @p n READY source blocks with a pattern, one pin each. */
static void make_src(kvx_block_ref_t *refs, uint32_t n, uint32_t seed)
{
    kvx_alloc_h alloc = kvx_node_alloc(it_node);
    uint64_t bb = kvx_node_layout(it_node)->block_bytes;
    kvx_lease_id_t lease;

    CU_ASSERT_EQUAL_FATAL(
        kvx_alloc_reserve(alloc, n,
                          kvx_clock_monotonic_ns(NULL) + 60000000000ull, &lease,
                          refs),
        KVX_OK);
    CU_ASSERT_EQUAL_FATAL(kvx_alloc_lease_commit(alloc, lease), KVX_OK);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t *w =
            kvx_pool_block_addr(kvx_node_pool(it_node), refs[i].block);

        for (uint64_t j = 0; j < bb / 4; j++) {
            w[j] = (seed + i) * 2654435761u ^ (uint32_t)j;
        }
    }
}

static void unpin_all(const kvx_block_ref_t *refs, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        CU_ASSERT_EQUAL(kvx_alloc_unpin(kvx_node_alloc(it_node), refs[i]),
                        KVX_OK);
    }
}

static kvx_xfer_h push(kvx_peer_h peer, uint64_t rid,
                       const kvx_block_ref_t *src, uint32_t n,
                       const kvx_block_key_t *keys, uint32_t deadline_ms,
                       uint32_t flags)
{
    kvx_xfer_params_t xp =
        it_xfer_params(rid, src, n, keys, deadline_ms, flags);
    kvx_xfer_h x = NULL;

    CU_ASSERT_EQUAL_FATAL(kvx_node_push(it_node, peer, &xp, &x), KVX_OK);
    return x;
}

/* Progresses the test node until @p x has sent @p want bytes or @p ms. */
static uint64_t wait_bytes(kvx_xfer_h x, uint64_t want, unsigned ms)
{
    uint64_t end = it_now_ms() + ms;
    kvx_xfer_attr_t attr;

    do {
        kvx_node_progress(it_node, 5);
        kvx_xfer_query(x, &attr);
    } while (attr.bytes_sent < want && attr.status == KVX_INPROGRESS &&
             it_now_ms() < end);
    return attr.bytes_sent;
}

/* ---- tests ---- */

static void push_dedupe(const char *tls, kvx_transport_t expect)
{
    kvx_block_key_t keys[6];
    kvx_block_ref_t src[6];
    kvx_xfer_attr_t attr;
    uint32_t free0;
    kvx_peer_h peer;
    kvx_xfer_h x;
    it_proc_t *d;
    uint64_t bb;

    setenv("UCX_TLS", tls, 1); /* for the daemon and for our node */
    d = it_daemon_start(NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    CU_ASSERT_EQUAL_FATAL(node_new(64, NULL), KVX_OK);
    CU_ASSERT_EQUAL_FATAL(node_connect(d, &peer), KVX_OK);
    CU_ASSERT_EQUAL(kvx_peer_transport(peer), expect);
    CU_ASSERT_STRING_EQUAL(kvx_peer_name(peer), "kvxd-it");
    bb = kvx_node_layout(it_node)->block_bytes;
    free0 = n_free();
    memset(keys, 0, sizeof(keys));
    for (int i = 0; i < 6; i++) {
        keys[i].bytes[0] = (uint8_t)(i + 1);
        keys[i].bytes[7] = (uint8_t)expect;
        keys[i].bytes[15] = 0xa5;
    }
    make_src(src, 6, 11);

    x = push(peer, 1, src, 4, keys, 0, 0);
    CU_ASSERT_EQUAL(kvx_xfer_wait(x, IT_WAIT_MS), KVX_OK);
    CU_ASSERT_EQUAL(kvx_xfer_query(x, &attr), KVX_OK);
    CU_ASSERT_EQUAL(attr.blocks_hit, 0);
    CU_ASSERT_EQUAL(attr.blocks_sent, 4);
    CU_ASSERT_EQUAL(attr.bytes_sent, 4 * bb);
    CU_ASSERT_EQUAL(attr.transport, expect);
    kvx_xfer_release(x);

    /* Same prefix of 4 blocks: the daemon holds them, only 2 go out. */
    x = push(peer, 2, src, 6, keys, 0, 0);
    CU_ASSERT_EQUAL(kvx_xfer_wait(x, IT_WAIT_MS), KVX_OK);
    CU_ASSERT_EQUAL(kvx_xfer_query(x, &attr), KVX_OK);
    CU_ASSERT_EQUAL(attr.blocks_hit, 4);
    CU_ASSERT_EQUAL(attr.blocks_sent, 2);
    CU_ASSERT_EQUAL(attr.bytes_sent, 2 * bb);
    kvx_xfer_release(x);

    unpin_all(src, 6);
    CU_ASSERT_EQUAL(n_free(), free0);
    kvx_node_destroy(it_node);
    it_node = NULL;
    CU_ASSERT_EQUAL(it_proc_stop(d), 0);
}

static void test_kvxd_push_dedupe_tcp(void)
{
    push_dedupe(IT_TLS_TCP, KVX_TRANSPORT_AM);
}

static void test_kvxd_push_dedupe_shm(void)
{
    push_dedupe(IT_TLS_SHM, KVX_TRANSPORT_RMA);
}

static void test_kvxd_layout_mismatch(void)
{
    kvx_peer_h peer;
    it_proc_t *d;

    setenv("UCX_TLS", IT_TLS_TCP, 1);
    d = it_daemon_start(NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    CU_ASSERT_EQUAL_FATAL(node_new(128, NULL), KVX_OK);
    CU_ASSERT_EQUAL(node_connect(d, &peer), KVX_ERR_LAYOUT_MISMATCH);
    /* The refusal is not fatal for the daemon. */
    CU_ASSERT_EQUAL_FATAL(node_new(64, NULL), KVX_OK);
    CU_ASSERT_EQUAL(node_connect(d, &peer), KVX_OK);
    kvx_node_destroy(it_node);
    it_node = NULL;
    CU_ASSERT_EQUAL(it_proc_stop(d), 0);
}

static void test_kvxd_auth(void)
{
    static const char text[] = "it-cluster-secret\n";
    char path[PATH_MAX], err[IT_OUT_MAX];
    const char *args[] = {"--secret_file", path, NULL};
    kvx_peer_h peer;
    it_proc_t *d;

    setenv("UCX_TLS", IT_TLS_TCP, 1);
    snprintf(path, sizeof(path), "%s/secret", it_tmp_dir);
    it_write_file(path, text, sizeof(text) - 1, 0600);
    d = it_daemon_start(args);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    CU_ASSERT_EQUAL_FATAL(node_new(64, "another secret"), KVX_OK);
    CU_ASSERT_EQUAL(node_connect(d, &peer), KVX_ERR_AUTH);
    /* The file's trailing newline is not part of the secret. */
    CU_ASSERT_EQUAL_FATAL(node_new(64, "it-cluster-secret"), KVX_OK);
    CU_ASSERT_EQUAL(node_connect(d, &peer), KVX_OK);
    kvx_node_destroy(it_node);
    it_node = NULL;
    it_read_file(d->err_path, err, sizeof(err));
    CU_ASSERT_PTR_NULL(strstr(err, "group or others"));
    CU_ASSERT_EQUAL(it_proc_stop(d), 0);
}

static void test_kvxd_secret_file_checks(void)
{
    char path[PATH_MAX], big[2048], out[IT_OUT_MAX], err[IT_OUT_MAX];
    const char *args[] = {"--secret_file", path, NULL};
    it_proc_t *d;

    setenv("UCX_TLS", IT_TLS_TCP, 1);
    snprintf(path, sizeof(path), "%s/secret-open", it_tmp_dir);
    it_write_file(path, "s", 1, 0640);
    d = it_daemon_start(args);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    it_read_file(d->err_path, err, sizeof(err));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "group or others"));
    CU_ASSERT_EQUAL(it_proc_stop(d), 0);

    snprintf(path, sizeof(path), "%s/secret-big", it_tmp_dir);
    memset(big, 'x', sizeof(big));
    it_write_file(path, big, sizeof(big), 0600);
    CU_ASSERT_EQUAL(it_run_sync(args, NULL, out, err), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "secret_file"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "larger than"));

    snprintf(path, sizeof(path), "%s/secret-missing", it_tmp_dir);
    CU_ASSERT_EQUAL(it_run_sync(args, NULL, out, err), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "secret_file"));
}

/* The daemon dies mid-transfer: our push ends by its deadline with a
 * peer-class status (or TIMEOUT), and our blocks come back. */
static void sigkill_mid_transfer(const char *tls)
{
    const uint32_t deadline_ms = 4000;
    kvx_block_ref_t src[8];
    uint64_t t0, bb, elapsed;
    kvx_status_t st;
    uint32_t free0;
    kvx_peer_h peer;
    kvx_xfer_h x;
    it_proc_t *d;
    int status;

    setenv("UCX_TLS", tls, 1);
    d = it_daemon_start(NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    CU_ASSERT_EQUAL_FATAL(node_new(64, NULL), KVX_OK);
    CU_ASSERT_EQUAL_FATAL(node_connect(d, &peer), KVX_OK);
    bb = kvx_node_layout(it_node)->block_bytes;
    free0 = n_free();
    make_src(src, 8, 5);
    t0 = it_now_ms();
    x = push(peer, 7, src, 8, NULL, deadline_ms, KVX_XFER_FLAG_LAYERWISE);
    CU_ASSERT_EQUAL(kvx_xfer_layer_ready(x, 1), KVX_OK); /* 2..4 never */
    CU_ASSERT(wait_bytes(x, 8 * bb / 4, 2000) > 0);
    CU_ASSERT_EQUAL(kvx_xfer_test(x), KVX_INPROGRESS);

    kill(d->pid, SIGKILL);
    status = it_proc_reap(d, IT_STOP_MS);
    CU_ASSERT(status >= 0 && WIFSIGNALED(status) &&
              WTERMSIG(status) == SIGKILL);
    st = kvx_xfer_wait(x, deadline_ms + 2000);
    elapsed = it_now_ms() - t0;
    fprintf(stderr, "sigkill over %s: %s after %llu ms\n", tls,
            kvx_status_string(st), (unsigned long long)elapsed);
    CU_ASSERT(KVX_STATUS_IS_PEER(st) || st == KVX_ERR_TIMEOUT);
    CU_ASSERT(elapsed <= deadline_ms + 1000);
    CU_ASSERT(KVX_STATUS_IS_PEER(kvx_peer_status(peer)) ||
              st == KVX_ERR_TIMEOUT);
    kvx_xfer_release(x);
    unpin_all(src, 8);
    CU_ASSERT_EQUAL(n_free(), free0);
    kvx_node_destroy(it_node);
    it_node = NULL;
}

static void test_kvxd_sigkill_tcp(void)
{
    sigkill_mid_transfer(IT_TLS_TCP);
}

static void test_kvxd_sigkill_shm(void)
{
    sigkill_mid_transfer(IT_TLS_SHM);
}

/* SIGTERM with a transfer in flight: kvxd exits 0 within IT_STOP_MS and our
 * transfer fails at once with the peer gone (or aborted). */
static void test_kvxd_sigterm(void)
{
    kvx_block_ref_t src[8];
    uint64_t t0, bb;
    kvx_status_t st;
    uint32_t free0;
    kvx_peer_h peer;
    kvx_xfer_h x;
    it_proc_t *d;

    setenv("UCX_TLS", IT_TLS_TCP, 1);
    d = it_daemon_start(NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    CU_ASSERT_EQUAL_FATAL(node_new(64, NULL), KVX_OK);
    CU_ASSERT_EQUAL_FATAL(node_connect(d, &peer), KVX_OK);
    bb = kvx_node_layout(it_node)->block_bytes;
    free0 = n_free();
    make_src(src, 8, 9);
    x = push(peer, 8, src, 8, NULL, 20000, KVX_XFER_FLAG_LAYERWISE);
    CU_ASSERT_EQUAL(kvx_xfer_layer_ready(x, 1), KVX_OK);
    CU_ASSERT(wait_bytes(x, 8 * bb / 4, 2000) > 0);

    t0 = it_now_ms();
    CU_ASSERT_EQUAL(it_proc_stop(d), 0);
    CU_ASSERT(it_now_ms() - t0 <= IT_STOP_MS);
    st = kvx_xfer_wait(x, IT_STOP_MS);
    CU_ASSERT(KVX_STATUS_IS_PEER(st) || st == KVX_ERR_ABORTED);
    CU_ASSERT(it_now_ms() - t0 <= IT_STOP_MS);
    kvx_xfer_release(x);
    unpin_all(src, 8);
    CU_ASSERT_EQUAL(n_free(), free0);
    kvx_node_destroy(it_node);
    it_node = NULL;
}

/* Counts @p needle in @p p's stderr until there are @p n or @p ms pass. */
static int wait_log(const it_proc_t *p, const char *needle, int n, unsigned ms)
{
    static char buf[4 * IT_OUT_MAX];
    uint64_t end = it_now_ms() + ms;
    int count;

    do {
        const char *at = buf;

        it_read_file(p->err_path, buf, sizeof(buf));
        for (count = 0; (at = strstr(at, needle)) != NULL; count++) {
            at++;
        }
        if (count >= n) {
            break;
        }
        it_sleep_ms(20);
    } while (it_now_ms() < end);
    return count;
}

/* Static peers: an unreachable one is retried without harm, a reachable
 * one connects, and reconnects after its daemon restarts. */
static void test_kvxd_static_peers(void)
{
    char peers[2 * sizeof(((it_proc_t *)0)->addr)], addr[256], want[320];
    const char *b_args[] = {"--node_id", "kvxd-b", "--peers", peers, NULL};
    const char *a_again[] = {"--listen", addr, NULL};
    it_proc_t *a, *b;

    setenv("UCX_TLS", IT_TLS_TCP, 1);
    a = it_daemon_start(NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    snprintf(addr, sizeof(addr), "%s", a->addr);
    snprintf(peers, sizeof(peers), "127.0.0.1:1, %s", addr);
    b = it_daemon_start(b_args);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    snprintf(want, sizeof(want), "peer %s (kvxd-it) connected", addr);
    CU_ASSERT_EQUAL(wait_log(b, want, 1, IT_WAIT_MS), 1);
    /* Retried (the library logs each failed connection at info). */
    CU_ASSERT(wait_log(b, "peer 127.0.0.1:1 closed", 2, IT_WAIT_MS) >= 2);
    CU_ASSERT_EQUAL(
        wait_log(b, "peer 127.0.0.1:1: peer unreachable (try 1)", 1, 0), 1);

    CU_ASSERT_EQUAL(it_proc_stop(a), 0);
    snprintf(want, sizeof(want), "peer %s: peer down", addr);
    CU_ASSERT_EQUAL(wait_log(b, want, 1, IT_WAIT_MS), 1);
    a = it_daemon_start(a_again); /* same port */
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    snprintf(want, sizeof(want), "peer %s (kvxd-it) connected", addr);
    CU_ASSERT_EQUAL(wait_log(b, want, 2, IT_WAIT_MS), 2);
    CU_ASSERT_EQUAL(it_proc_stop(b), 0);
    CU_ASSERT_EQUAL(it_proc_stop(a), 0);
}

static void expect_refused(const char *const *args, const char *const *env,
                           const char *name)
{
    char out[IT_OUT_MAX], err[IT_OUT_MAX];

    CU_ASSERT_EQUAL(it_run_sync(args, env, out, err), 2);
    if (strstr(err, name) == NULL) {
        fprintf(stderr, "expected '%s' in: %s\n", name, err);
        CU_FAIL("option not named");
    }
}

static void test_kvxd_bad_config(void)
{
    const char *flag[] = {"--pool_blocks", "abc", NULL};
    const char *unknown[] = {"--no_such_option=1", NULL};
    const char *env[] = {"KVX_HEAD_DIM=0", NULL};
    const char *block[] = {"--num_layers=1",   "--kv_parts=1",
                           "--block_tokens=1", "--kv_heads=1",
                           "--head_dim=31",    NULL};
    const char *peers[] = {"--listen=127.0.0.1:0", "--pool_blocks=4",
                           "--num_layers=1", "--peers=127.0.0.1:1, nohost",
                           NULL};
    static const char bad_conf[] = "# comment\nkv_parts = 3\n";
    char path[PATH_MAX];
    const char *file[] = {"--config", path, NULL};

    setenv("UCX_TLS", IT_TLS_TCP, 1);
    expect_refused(flag, NULL, "pool_blocks");
    expect_refused(unknown, NULL, "no_such_option");
    expect_refused((const char *[]){NULL}, env, "head_dim");
    expect_refused(block, NULL, "head_dim");
    expect_refused(peers, NULL, "nohost");
    expect_refused((const char *[]){"--engine_allow_uids=1000,kvx", NULL}, NULL,
                   "engine_allow_uids");
    expect_refused((const char *[]){NULL},
                   (const char *[]){"KVX_ENGINE_ALLOW_GIDS=-1", NULL},
                   "engine_allow_gids");
    expect_refused((const char *[]){"--handshake_ms=0", NULL}, NULL,
                   "handshake_ms");
    snprintf(path, sizeof(path), "%s/bad.conf", it_tmp_dir);
    it_write_file(path, bad_conf, strlen(bad_conf), 0600);
    expect_refused(file, NULL, "line 2: kv_parts");
    snprintf(path, sizeof(path), "%s/missing.conf", it_tmp_dir);
    expect_refused(file, NULL, "missing.conf");
}

/* The socket option: a relative path is a configuration error (exit 2);
 * an explicit socket kvxd cannot serve (no such folder, another kvxd owns
 * it) stops it (exit 1, named); a served one lets an engine attach and is
 * removed when kvxd exits. */
static void test_kvxd_engine_socket(void)
{
    char sock[PATH_MAX], nodir[PATH_MAX], out[IT_OUT_MAX], err[IT_OUT_MAX];
    const char *relative[] = {"--socket", "kvxd.sock", NULL};
    const char *in_nodir[] = {"--listen=127.0.0.1:0",
                              "--pool_blocks=4",
                              "--num_layers=1",
                              "--socket",
                              nodir,
                              NULL};
    const char *taken[] = {"--listen=127.0.0.1:0",
                           "--pool_blocks=4",
                           "--num_layers=1",
                           "--socket",
                           sock,
                           NULL};
    const char *serve[] = {"--socket", sock, NULL};
    kvx_client_h client = NULL;
    struct stat st;
    it_proc_t *d;

    setenv("UCX_TLS", IT_TLS_TCP, 1);
    expect_refused(relative, NULL, "socket");
    snprintf(nodir, sizeof(nodir), "%s/no-such-dir/kvxd.sock", it_tmp_dir);
    CU_ASSERT_EQUAL(it_run_sync(in_nodir, NULL, out, err), 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "cannot listen for engines"));

    snprintf(sock, sizeof(sock), "%s/kvxd.sock", it_tmp_dir);
    d = it_daemon_start(serve);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    CU_ASSERT_EQUAL(kvx_client_attach(sock, NULL, &client), KVX_OK);
    CU_ASSERT_STRING_EQUAL(kvx_client_node_id(client), "kvxd-it");
    kvx_client_detach(client);
    CU_ASSERT_EQUAL(it_run_sync(taken, NULL, out, err), 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "cannot listen for engines"));
    CU_ASSERT_EQUAL(it_proc_stop(d), 0);
    CU_ASSERT_EQUAL(stat(sock, &st), -1); /* removed on exit */
}

/* engine_allow_gids reaches the node: the socket gets the group and mode
 * 0660 (the credential checks themselves: tests/unit/test_engine_cred.c). */
static void test_kvxd_engine_allow(void)
{
    char sock[PATH_MAX];
    const char *args[] = {"--socket", sock, "--engine_allow_gids=4300", NULL};
    kvx_client_h client = NULL;
    struct stat st;
    it_proc_t *d;

    if (geteuid() != 0) {
        return; /* only root may give the socket any group */
    }
    setenv("UCX_TLS", IT_TLS_TCP, 1);
    snprintf(sock, sizeof(sock), "%s/allow.sock", it_tmp_dir);
    d = it_daemon_start(args);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    CU_ASSERT_EQUAL(lstat(sock, &st), 0);
    CU_ASSERT_EQUAL(st.st_mode & 0777, 0660);
    CU_ASSERT_EQUAL(st.st_gid, 4300);
    CU_ASSERT_EQUAL(kvx_client_attach(sock, NULL, &client), KVX_OK);
    kvx_client_detach(client);
    CU_ASSERT_EQUAL(it_proc_stop(d), 0);
}

static void test_kvxd_print_config(void)
{
    const char *set[] = {"--listen=127.0.0.1:0",
                         "--head_dim",
                         "96",
                         "--peers=10.0.0.1:7600,10.0.0.2:7600",
                         "--transport=am",
                         "--log_level=debug",
                         "--print-config",
                         NULL};
    char a[IT_OUT_MAX], b[IT_OUT_MAX], err[IT_OUT_MAX], ex[IT_OUT_MAX],
        path[PATH_MAX];
    char env_cfg[PATH_MAX + 16];
    const char *from_file[] = {"--config", path, "--print-config", NULL};
    const char *override[] = {"--config", path, "--head_dim=32",
                              "--print-config", NULL};
    const char *env[] = {env_cfg, "KVX_HEAD_DIM=48", NULL};
    const char *plain[] = {"--print-config", NULL};
    size_t la, lex;

    CU_ASSERT_EQUAL_FATAL(it_run_sync(set, NULL, a, err), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(a, "\nhead_dim = 96\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(a, "\ntransport = am\n"));
    snprintf(path, sizeof(path), "%s/round.conf", it_tmp_dir);
    it_write_file(path, a, strlen(a), 0600);
    CU_ASSERT_EQUAL(it_run_sync(from_file, NULL, b, err), 0);
    CU_ASSERT_STRING_EQUAL(a, b);
    /* flags over the file; environment over the file; KVX_CONFIG. */
    CU_ASSERT_EQUAL(it_run_sync(override, NULL, b, err), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(b, "\nhead_dim = 32\n"));
    snprintf(env_cfg, sizeof(env_cfg), "KVX_CONFIG=%s", path);
    CU_ASSERT_EQUAL(it_run_sync(plain, env, b, err), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(b, "\nhead_dim = 48\n"));
    CU_ASSERT_PTR_NOT_NULL(strstr(b, "\ntransport = am\n"));

    /* daemon/kvxd.conf.example ends with the defaults as printed. */
    CU_ASSERT_EQUAL(it_run_sync(plain, NULL, a, err), 0);
    it_read_file(example_path, ex, sizeof(ex));
    la = strlen(a);
    lex = strlen(ex);
    CU_ASSERT_FATAL(la > 0 && lex >= la);
    CU_ASSERT_STRING_EQUAL(ex + lex - la, a);
}

static void test_kvxd_help_version(void)
{
    const char *help[] = {"--help", NULL};
    const char *version[] = {"--version", NULL};
    char out[IT_OUT_MAX], err[IT_OUT_MAX];

    CU_ASSERT_EQUAL(it_run_sync(help, NULL, out, err), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "--pool_blocks"));
    CU_ASSERT_EQUAL(it_run_sync(version, NULL, out, err), 0);
    CU_ASSERT_EQUAL(strncmp(out, "kvxd ", 5), 0);
}

/* ---- driver ---- */

/* After every test, pass or fail: no daemon and no node survive. */
static void teardown(void)
{
    it_proc_kill_all(1);
    kvx_node_destroy(it_node);
    it_node = NULL;
}

static const it_test_t tests[] = {
    {"test_kvxd_push_dedupe_tcp", test_kvxd_push_dedupe_tcp},
    {"test_kvxd_push_dedupe_shm", test_kvxd_push_dedupe_shm},
    {"test_kvxd_layout_mismatch", test_kvxd_layout_mismatch},
    {"test_kvxd_auth", test_kvxd_auth},
    {"test_kvxd_secret_file_checks", test_kvxd_secret_file_checks},
    {"test_kvxd_sigkill_tcp", test_kvxd_sigkill_tcp},
    {"test_kvxd_sigkill_shm", test_kvxd_sigkill_shm},
    {"test_kvxd_sigterm", test_kvxd_sigterm},
    {"test_kvxd_static_peers", test_kvxd_static_peers},
    {"test_kvxd_bad_config", test_kvxd_bad_config},
    {"test_kvxd_engine_socket", test_kvxd_engine_socket},
    {"test_kvxd_engine_allow", test_kvxd_engine_allow},
    {"test_kvxd_print_config", test_kvxd_print_config},
    {"test_kvxd_help_version", test_kvxd_help_version},
};

int main(int argc, char **argv)
{
    static const it_main_params_t mp = {
        .suite = "kvxd",
        .tests = tests,
        .n_tests = IT_N_TESTS(tests),
        .teardown = teardown,
        .usage = "KVXD EXAMPLE_CONF",
        .n_args = 2,
    };

    example_path = argc > 2 ? argv[2] : NULL;
    setenv("UCX_TLS", IT_TLS_TCP, 1);
    return it_main(argc, argv, &mp);
}
