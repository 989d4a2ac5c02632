/*
 * Unit tests for libkvx/engine.c: the engine socket, sessions, Attach with
 * the pool's memfd, frame dispatch, bad input and the output bound, driven
 * by raw unix-socket clients (engine_ut.h). Holds are in
 * test_engine_hold.c, transfers in test_engine_xfer.c.
 */
#include "engine_ut.h"

#include <errno.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static void test_engine_socket_param(void)
{
    kvx_layout_params_t lp = nut_layout(16);
    kvx_node_params_t np = {
        .field_mask = KVX_NODE_PARAM_FIELD_NODE_ID |
                      KVX_NODE_PARAM_FIELD_LAYOUT |
                      KVX_NODE_PARAM_FIELD_ENGINE_SOCKET,
        .node_id = "n",
        .layout = &lp,
    };
    char unix_path[160];
    kvx_node_h node = NULL;

    np.engine_socket = NULL;
    CU_ASSERT_EQUAL(kvx_node_create(&np, &node), KVX_ERR_INVALID_PARAM);
    np.engine_socket = "127.0.0.1:4000"; /* not a unix socket */
    CU_ASSERT_EQUAL(kvx_node_create(&np, &node), KVX_ERR_INVALID_PARAM);
    snprintf(unix_path, sizeof(unix_path), "unix:%s", eut_sock_path);
    np.engine_socket = unix_path;
    CU_ASSERT_EQUAL_FATAL(kvx_node_create(&np, &node), KVX_OK);
    CU_ASSERT_EQUAL(access(eut_sock_path, F_OK), 0);
    kvx_node_destroy(node);
    CU_ASSERT_NOT_EQUAL(access(eut_sock_path, F_OK), 0);
}

/* kvx_node_engine_listen() on a running node: bad arguments refused with
 * nothing changed, one listener per node, a live socket is not taken over,
 * and an attach works through it. */
static void test_engine_listen_later(void)
{
    kvx_layout_params_t lp = nut_layout(16);
    kvx_node_params_t np = {
        .field_mask =
            KVX_NODE_PARAM_FIELD_NODE_ID | KVX_NODE_PARAM_FIELD_LAYOUT,
        .node_id = "later",
        .layout = &lp,
    };
    kvx_node_h node = NULL, other = eut_node(0); /* owns eut_sock_path */
    char second[sizeof(eut_sock_path) + 8];
    tc_t *c;

    CU_ASSERT_EQUAL_FATAL(kvx_node_create(&np, &node), KVX_OK);
    CU_ASSERT_EQUAL(kvx_node_engine_listen(NULL, eut_sock_path),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_node_engine_listen(node, NULL), KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_node_engine_listen(node, "relative.sock"),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_node_engine_listen(node, eut_sock_path),
                    KVX_ERR_EXISTS); /* live: not taken over */
    kvx_node_destroy(other);         /* removes its socket */
    snprintf(second, sizeof(second), "%s.2", eut_sock_path);
    CU_ASSERT_EQUAL_FATAL(kvx_node_engine_listen(node, eut_sock_path), KVX_OK);
    CU_ASSERT_EQUAL(kvx_node_engine_listen(node, second), KVX_ERR_BAD_STATE);
    CU_ASSERT_NOT_EQUAL(access(second, F_OK), 0);
    eut_drive_a = node;
    c = tc_attached();
    CU_ASSERT_PTR_NOT_NULL(c);
    eut_end(c, node);
    eut_drive_a = NULL;
    CU_ASSERT_NOT_EQUAL(access(eut_sock_path, F_OK), 0);
}

static void test_engine_attach_memfd(void)
{
    kvx_node_h node = eut_node(1);
    kvxi_envelope_t *r;
    kvx_pool_attr_t pa;
    struct stat st;
    tc_t *c;
    uint8_t *map, *mine;
    uint64_t off;
    size_t len;

    CU_ASSERT_EQUAL(stat(eut_sock_path, &st), 0);
    CU_ASSERT(S_ISSOCK(st.st_mode) && (st.st_mode & 0777) == 0600);
    c = tc_open();
    r = tc_attach_v(c, 1, 3);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL(r->attach_reply->status, WIRE(KVX_OK));
    CU_ASSERT_EQUAL(r->attach_reply->version, 1);
    CU_ASSERT_STRING_EQUAL(r->attach_reply->node_id, "a");
    CU_ASSERT_STRING_EQUAL(r->attach_reply->listen_addr,
                           kvx_node_listen_addr(node));
    CU_ASSERT_EQUAL(r->attach_reply->layout->num_blocks, EUT_BLOCKS);
    CU_ASSERT_EQUAL(r->attach_reply->layout->block_bytes,
                    kvx_node_layout(node)->block_bytes);
    CU_ASSERT_EQUAL(r->attach_reply->layout_hash,
                    kvx_layout_compat_hash(kvx_node_layout(node)));
    kvx_pool_query(kvx_node_pool(node), &pa);
    CU_ASSERT_EQUAL(r->attach_reply->pool_bytes, pa.length);
    CU_ASSERT_FATAL(c->got_fd >= 0);
    CU_ASSERT_EQUAL(fstat(c->got_fd, &st), 0);
    CU_ASSERT((uint64_t)st.st_size >= r->attach_reply->pool_bytes);
    map = tc_map(c, node, &len);
    mine = kvx_pool_block_addr(kvx_node_pool(node), 3);
    off = eut_block_off(node, 3);
    memset(mine, 0x5a, 64);
    CU_ASSERT_EQUAL(map[off + 63], 0x5a);
    map[off + 100] = 0xc3; /* and the other way round */
    CU_ASSERT_EQUAL(mine[100], 0xc3);
    munmap(map, len);
    kvxi_frame_free(r);
    eut_end(c, node);
    CU_ASSERT_NOT_EQUAL(stat(eut_sock_path, &st), 0); /* removed */
}

static void test_engine_version_refused(void)
{
    kvx_node_h node = eut_node(0);
    kvxi_envelope_t *r, *e = NULL;
    tc_t *c = tc_open();

    r = tc_attach_v(c, 2, 5);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL(r->attach_reply->status, WIRE(KVX_ERR_PROTO_VERSION));
    CU_ASSERT_PTR_NULL(r->attach_reply->layout);
    CU_ASSERT_EQUAL(c->got_fd, -1); /* no memfd with a refusal */
    CU_ASSERT_EQUAL(tc_recv(c, TC_WAIT_MS, &e), KVX_ERR_PEER_DOWN);
    kvxi_frame_free(r);
    eut_end(c, node);
}

/* @p len raw bytes on a new session (attached first if @p attach): the
 * node answers Error{code} and hangs up. */
static void bad_bytes(int attach, const void *p, size_t len, kvx_status_t code)
{
    tc_t *c = attach ? tc_attached() : tc_open();

    tc_write(c, p, len);
    tc_expect_error_eof(c, code);
    tc_close(c);
}

static void test_engine_bad_input(void)
{
    static const uint8_t zero[4] = {0, 0, 0, 0};
    static const uint8_t huge[4] = {0x7f, 0xff, 0xff, 0xff};
    static const uint8_t junk[9] = {0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff};
    kvx_node_h node = eut_node(0);
    kvxi_envelope_t *r;
    tc_t *c;

    /* a request before Attach */
    c = tc_open();
    tc_send_stats(c);
    tc_expect_error_eof(c, KVX_ERR_PROTO_UNEXPECTED);
    tc_close(c);
    /* zero-length, oversize and undecodable frames, attached or not */
    bad_bytes(0, zero, sizeof(zero), KVX_ERR_PROTO_MALFORMED);
    bad_bytes(1, huge, sizeof(huge), KVX_ERR_PROTO_OVERSIZE);
    bad_bytes(1, junk, sizeof(junk), KVX_ERR_PROTO_MALFORMED);
    /* a second Attach */
    c = tc_attached();
    tc_send_attach(c, 1, 1);
    tc_expect_error_eof(c, KVX_ERR_PROTO_UNEXPECTED);
    tc_close(c);
    /* the node still serves a new session */
    c = tc_attached();
    r = tc_stats(c);
    CU_ASSERT(r != NULL && r->stats_reply->blocks_total == EUT_BLOCKS);
    kvxi_frame_free(r);
    eut_end(c, node);
}

/* A node-to-node body on a session: NOT_SUPPORTED, the session stays. */
static void test_engine_node_body_refused(void)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT, *r;
    Kvx__V1__Commit cm = KVX__V1__COMMIT__INIT;
    Kvx__V1__BlockRefs w;
    kvx_block_ref_t ref = {1, 1};
    uint32_t buf[2];
    kvx_node_h node;
    tc_t *c = eut_session(&node);

    refs_to_wire(&w, buf, &ref, 1);
    cm.transfer_id = 1;
    cm.lease_id = 1;
    cm.blocks = &w;
    env.body_case = B(COMMIT);
    env.commit = &cm;
    r = tc_call(c, &env, B(ERROR));
    CU_ASSERT(r != NULL && r->error->code == WIRE(KVX_ERR_NOT_SUPPORTED));
    kvxi_frame_free(r);
    r = tc_peer_list(c);
    CU_ASSERT(r != NULL && r->peer_list_reply->n_peers == 0);
    kvxi_frame_free(r);
    eut_end(c, node);
}

/* A session body on a node-to-node connection: NOT_SUPPORTED. */
static void peer_recv_cb(kvxi_conn_t *conn, const kvxi_envelope_t *env,
                         void *arg)
{
    (void)conn;
    if (env->body_case == B(ERROR)) {
        *(uint32_t *)arg = env->error->code;
    }
}

static void test_engine_session_body_on_peer(void)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT;
    Kvx__V1__PeerList pl = KVX__V1__PEER_LIST__INIT;
    kvxi_conn_cbs_t cbs = {.recv = peer_recv_cb};
    uint32_t code = 0;
    kvx_node_h a, b;
    kvx_peer_h p;

    CU_ASSERT_EQUAL_FATAL(eut_peer("a", 1, &a), KVX_OK);
    CU_ASSERT_EQUAL_FATAL(eut_peer("b", 0, &b), KVX_OK);
    CU_ASSERT_EQUAL_FATAL(kvx_node_connect(b, kvx_node_listen_addr(a), &p),
                          KVX_OK);
    CU_ASSERT_EQUAL_FATAL(nut_wait_peer(a, b, p), KVX_OK);
    cbs.arg = &code;
    kvxi_conn_set_cbs(p->conn, &cbs);
    env.body_case = B(PEER_LIST);
    env.peer_list = &pl;
    CU_ASSERT_EQUAL(kvxi_conn_send(p->conn, &env), KVX_OK);
    for (int i = 0; i < 2000 && code == 0; i++) {
        kvx_node_progress(a, 0);
        kvx_node_progress(b, 1);
    }
    CU_ASSERT_EQUAL(code, WIRE(KVX_ERR_NOT_SUPPORTED));
    kvx_node_destroy(b);
    kvx_node_destroy(a);
}

/* A client that sends requests but never reads the replies is
 * disconnected once its replies pass the output bound; others go on. */
static void test_engine_output_bound(void)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT, *r;
    Kvx__V1__Stats st = KVX__V1__STATS__INIT;
    uint8_t frame[64], *batch;
    size_t len = 0, batch_len, sent = 0, off = 0, reply_len;
    uint64_t end;
    kvx_node_h node;
    int closed = 0;
    tc_t *c = eut_session(&node);

    r = tc_stats(c); /* the size of one reply (the counters' values vary) */
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    reply_len = kvxi_frame_size(r) - 8;
    kvxi_frame_free(r);

    env.version = 1;
    env.request_id = 1000;
    env.body_case = B(STATS);
    env.stats = &st;
    CU_ASSERT_EQUAL_FATAL(kvxi_frame_encode(&env, frame, sizeof(frame), &len),
                          KVX_OK);
    batch_len = 4096 * len;
    batch = malloc(batch_len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(batch);
    for (size_t i = 0; i < 4096; i++) {
        memcpy(batch + i * len, frame, len);
    }
    end = kvx_clock_monotonic_ns(NULL) + 60000000000ull;
    while (!closed && kvx_clock_monotonic_ns(NULL) < end) {
        ssize_t n = send(c->fd, batch + off, batch_len - off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);

        if (n > 0) {
            sent += (size_t)n;
            off = (off + (size_t)n) % batch_len;
        } else if (errno != EAGAIN) {
            closed = 1; /* EPIPE / ECONNRESET: the node hung up */
        }
        kvx_node_progress(node, 0);
    }
    CU_ASSERT(closed);
    /* it took a while: replies past the bound were queued first */
    CU_ASSERT(sent / len * reply_len > KVXI_ENGINE_OUT_MAX);
    free(batch);
    tc_close(c);
    c = tc_attached();
    r = tc_stats(c);
    CU_ASSERT_PTR_NOT_NULL(r);
    kvxi_frame_free(r);
    eut_end(c, node);
}

static const ut_test_t session_tests[] = {
    UT_TEST(test_engine_socket_param),
    UT_TEST(test_engine_listen_later),
    UT_TEST(test_engine_attach_memfd),
    UT_TEST(test_engine_version_refused),
    UT_TEST(test_engine_bad_input),
    UT_TEST(test_engine_node_body_refused),
    UT_TEST(test_engine_session_body_on_peer),
    UT_TEST(test_engine_output_bound),
    UT_END,
};

int main(void)
{
    static const ut_suite_t suites[] = {
        {"session", session_tests},
        {NULL, NULL},
    };

    return eut_main(suites);
}
