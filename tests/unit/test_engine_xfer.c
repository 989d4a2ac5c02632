/*
 * Unit tests for libkvx/engine_xfer.c: transfers through a local engine
 * session. Push, pull and publish of the session's blocks, Recv waits with
 * their deadlines, Abort and XferDone; driven by raw unix-socket clients
 * (engine_ut.h), real UCX over loopback to a second node.
 */
#include "engine_ut.h"

#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Push and publish take only blocks the session holds. */
static void test_engine_unheld_blocks(void)
{
    kvx_block_ref_t src[2], mine[1];
    uint64_t xid = 7;
    kvx_node_h node;
    tc_t *c = eut_session(&node);

    nut_make_src(node, 2, src, 1); /* READY, but the embedder's */
    CU_ASSERT_EQUAL(tc_push(c, "127.0.0.1:1", 1, src, 2, &xid),
                    KVX_ERR_STALE_HANDLE);
    CU_ASSERT_EQUAL(xid, 0);
    tc_reserve_sealed(c, 1, NULL, mine);
    src[1] = mine[0]; /* one held, one not: still refused */
    CU_ASSERT_EQUAL(tc_publish(c, 5, src, 2), KVX_ERR_STALE_HANDLE);
    CU_ASSERT_EQUAL(tc_publish(c, 5, mine, 1), KVX_OK);
    CU_ASSERT_EQUAL(kvx_node_unpublish(node, 5), KVX_OK);
    tc_close(c);
    nut_unpin_all(node, src, 1);
    kvx_node_destroy(node);
}

static void test_engine_recv_timeout(void)
{
    kvxi_envelope_t *r = NULL;
    struct timespec cpu0, cpu1;
    kvx_node_h node;
    uint64_t t0, dt;
    tc_t *c = eut_session(&node);

    tc_send_recv(c, 999, 0);
    r = tc_expect(c, B(RECV_REPLY));
    CU_ASSERT(r != NULL && r->recv_reply->status == WIRE(KVX_ERR_NOT_FOUND));
    kvxi_frame_free(r);
    /* parked: the node's timer wakes it at the deadline, no polling */
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu0);
    t0 = kvx_clock_monotonic_ns(NULL);
    tc_send_recv(c, 998, 300);
    r = NULL;
    while (r == NULL && kvx_clock_monotonic_ns(NULL) - t0 < 10000000000ull) {
        kvx_node_progress(node, 5000);
        eut_drive_a = NULL; /* read only what is there */
        if (tc_recv(c, 0, &r) != KVX_OK) {
            r = NULL;
        }
        eut_drive_a = node;
    }
    dt = kvx_clock_monotonic_ns(NULL) - t0;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu1);
    CU_ASSERT((cpu1.tv_sec - cpu0.tv_sec) * 1000000000ll + cpu1.tv_nsec -
                  cpu0.tv_nsec <
              100000000ll); /* slept, did not spin */
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL(r->body_case, B(RECV_REPLY));
    CU_ASSERT_EQUAL(r->recv_reply->status, WIRE(KVX_ERR_NOT_FOUND));
    CU_ASSERT(dt >= 290000000ull && dt < 2000000000ull);
    kvxi_frame_free(r);
    eut_end(c, node);
}

/* A push through a session: Result, then XferDone; the receiver collects
 * what the engine wrote into the mapped pool. */
static void test_engine_push_e2e(void)
{
    kvxi_envelope_t *r;
    kvx_block_ref_t refs[2], got[2];
    kvx_node_h a = eut_node(1), b;
    uint64_t xid = 0, bb = kvx_node_layout(a)->block_bytes;
    uint32_t n = 0;
    uint8_t *map;
    size_t len;
    tc_t *c;

    CU_ASSERT_EQUAL_FATAL(eut_peer("b", 1, &b), KVX_OK);
    eut_drive_b = b;
    c = tc_attached();
    map = tc_map(c, a, &len);
    tc_reserve_sealed(c, 2, NULL, refs);
    for (int i = 0; i < 2; i++) {
        memset(map + eut_block_off(a, refs[i].block), 0xa0 + i, bb);
    }
    CU_ASSERT_EQUAL(tc_push(c, kvx_node_listen_addr(b), 77, refs, 2, &xid),
                    KVX_OK);
    CU_ASSERT(xid != 0);
    CU_ASSERT_EQUAL(tc_release(c, refs, 2), 2); /* the push pins its own */
    r = tc_expect(c, B(XFER_DONE));
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL(r->xfer_done->xfer_id, xid);
    CU_ASSERT_EQUAL(r->xfer_done->status, WIRE(KVX_OK));
    CU_ASSERT_EQUAL(r->xfer_done->block_count, 2);
    CU_ASSERT_EQUAL(r->xfer_done->blocks_sent, 2);
    CU_ASSERT_EQUAL(r->xfer_done->bytes_sent, 2 * bb);
    kvxi_frame_free(r);
    CU_ASSERT_EQUAL(kvx_node_recv(b, 77, 0, got, 2, &n), KVX_OK);
    CU_ASSERT_EQUAL(n, 2);
    for (uint32_t i = 0; i < n; i++) {
        uint8_t *p = kvx_pool_block_addr(kvx_node_pool(b), got[i].block);

        CU_ASSERT(p[0] == 0xa0 + i && p[bb - 1] == 0xa0 + i);
    }
    nut_unpin_all(b, got, n);
    /* the node keeps the peer: listed, and reused by node id */
    r = tc_peer_list(c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL_FATAL(r->peer_list_reply->n_peers, 1);
    CU_ASSERT_STRING_EQUAL(r->peer_list_reply->peers[0]->node_id, "b");
    CU_ASSERT_EQUAL(r->peer_list_reply->peers[0]->status, WIRE(KVX_OK));
    CU_ASSERT(r->peer_list_reply->peers[0]->outgoing);
    kvxi_frame_free(r);
    tc_reserve_sealed(c, 1, NULL, refs);
    CU_ASSERT_EQUAL(tc_push(c, "b", 78, refs, 1, &xid), KVX_OK);
    tc_expect_done(c, KVX_OK);
    munmap(map, len);
    tc_close(c);
    kvx_node_destroy(b);
    kvx_node_destroy(a);
}

/* A pull through a session, collected by a parked Recv: the session then
 * holds the blocks until it releases them. */
static void test_engine_pull_recv(void)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT, *r, *done = NULL,
                    *got = NULL;
    Kvx__V1__PullStart ps = KVX__V1__PULL_START__INIT;
    kvx_publish_params_t pub = {
        .field_mask =
            KVX_PUBLISH_PARAM_FIELD_REQUEST_ID | KVX_PUBLISH_PARAM_FIELD_BLOCKS,
        .request_id = 42,
        .n_blocks = 3,
    };
    kvx_block_ref_t src[3], refs[3];
    uint64_t xid = 0;
    kvx_node_h a = eut_node(0), b;
    tc_t *c;

    CU_ASSERT_EQUAL_FATAL(eut_peer("b", 1, &b), KVX_OK);
    eut_drive_b = b;
    nut_make_src(b, 3, src, 9);
    pub.blocks = src;
    CU_ASSERT_EQUAL_FATAL(kvx_node_publish(b, &pub, NULL), KVX_OK);
    c = tc_attached();
    ps.peer = (char *)kvx_node_listen_addr(b);
    ps.request_id = 42;
    ps.block_count = 3;
    env.body_case = B(PULL_START);
    env.pull_start = &ps;
    CU_ASSERT_EQUAL(tc_result(c, &env, &xid), KVX_OK);
    CU_ASSERT(xid != 0);
    tc_send_recv(c, 42, 5000);
    for (int i = 0; i < 2; i++) {
        r = NULL;
        CU_ASSERT_EQUAL(tc_recv(c, TC_WAIT_MS, &r), KVX_OK);
        if (r != NULL && r->body_case == B(XFER_DONE) && done == NULL) {
            done = r;
        } else if (r != NULL && r->body_case == B(RECV_REPLY) && got == NULL) {
            got = r;
        } else {
            kvxi_frame_free(r);
        }
    }
    CU_ASSERT_PTR_NOT_NULL_FATAL(done);
    CU_ASSERT_PTR_NOT_NULL_FATAL(got);
    CU_ASSERT_EQUAL(done->xfer_done->xfer_id, xid);
    CU_ASSERT_EQUAL(done->xfer_done->status, WIRE(KVX_OK));
    CU_ASSERT_EQUAL(got->recv_reply->status, WIRE(KVX_OK));
    CU_ASSERT_EQUAL_FATAL(got->recv_reply->block_count, 3);
    refs_from_wire(refs, got->recv_reply->blocks, 3);
    for (uint32_t i = 0; i < 3; i++) {
        uint8_t *mine = kvx_pool_block_addr(kvx_node_pool(a), refs[i].block);
        uint8_t *theirs = kvx_pool_block_addr(kvx_node_pool(b), src[i].block);

        CU_ASSERT(memcmp(mine, theirs, 4096) == 0);
    }
    kvxi_frame_free(done);
    kvxi_frame_free(got);
    CU_ASSERT_EQUAL(eut_alloc(a).n_ready, 3); /* the session's holds */
    CU_ASSERT_EQUAL(tc_release(c, refs, 3), 3);
    CU_ASSERT_EQUAL(eut_alloc(a).n_free, EUT_BLOCKS);
    tc_close(c);
    nut_unpin_all(b, src, 3);
    kvx_node_destroy(a);
    kvx_node_destroy(b);
}

/* A TCP socket on loopback that listens and never speaks; its address
 * ("127.0.0.1:port") into @p addr. */
static int mute_listener(char *addr, size_t size)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CU_ASSERT_EQUAL_FATAL(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    CU_ASSERT_EQUAL_FATAL(listen(fd, 4), 0);
    getsockname(fd, (struct sockaddr *)&sin, &len);
    snprintf(addr, size, "127.0.0.1:%u", ntohs(sin.sin_port));
    return fd;
}

/* A push to a peer that never answers waits for it; Abort ends it. A peer
 * that refuses ends the push with its status. */
static void test_engine_push_pending(void)
{
    kvx_block_ref_t refs[1];
    uint64_t xid = 0;
    kvx_node_h node;
    char addr[64];
    tc_t *c = eut_session(&node);
    int mute = mute_listener(addr, sizeof(addr));

    tc_reserve_sealed(c, 1, NULL, refs);
    CU_ASSERT_EQUAL(tc_push(c, addr, 9, refs, 1, &xid), KVX_OK);
    CU_ASSERT(xid != 0);
    CU_ASSERT_EQUAL(tc_release(c, refs, 1), 1);
    CU_ASSERT_EQUAL(eut_alloc(node).n_ready, 1); /* pinned while waiting */
    CU_ASSERT_EQUAL(tc_abort(c, xid, KVX_ERR_ABORTED), KVX_OK);
    tc_expect_done(c, KVX_ERR_ABORTED);
    CU_ASSERT_EQUAL(eut_alloc(node).n_free, EUT_BLOCKS);
    CU_ASSERT_EQUAL(tc_abort(c, xid, KVX_ERR_ABORTED), KVX_ERR_BAD_STATE);
    CU_ASSERT_EQUAL(tc_abort(c, 1000, KVX_ERR_ABORTED), KVX_ERR_NOT_FOUND);
    /* nobody listens: the transfer ends with the peer's failure */
    close(mute);
    tc_reserve_sealed(c, 1, NULL, refs);
    CU_ASSERT_EQUAL(tc_push(c, addr, 10, refs, 1, &xid), KVX_OK);
    tc_expect_done(c, KVX_ERR_PEER_UNREACHABLE);
    CU_ASSERT_EQUAL(tc_push(c, "no-such-peer", 11, refs, 1, &xid),
                    KVX_ERR_NOT_FOUND);
    eut_end(c, node);
}

/* Node @p id over TCP listening on @p addr (a restart at an address). */
static kvx_node_h node_at(const char *id, const char *addr)
{
    kvx_layout_params_t lp = nut_layout(EUT_BLOCKS);
    kvx_node_params_t np = {
        .field_mask =
            KVX_NODE_PARAM_FIELD_NODE_ID | KVX_NODE_PARAM_FIELD_LAYOUT |
            KVX_NODE_PARAM_FIELD_UCX_TLS | KVX_NODE_PARAM_FIELD_LISTEN,
        .node_id = id,
        .layout = &lp,
        .ucx_tls = NUT_TLS_TCP,
        .listen = addr,
    };
    kvx_node_h node = NULL;

    CU_ASSERT_EQUAL_FATAL(kvx_node_create(&np, &node), KVX_OK);
    eut_drive_b = node;
    return node;
}

/* Destroys node b; node a notices its peer went down. */
static void node_b_gone(tc_t *c, kvx_node_h a, kvx_node_h b)
{
    uint64_t end = kvx_clock_monotonic_ns(NULL) + TC_WAIT_MS * 1000000ull;
    int up = 1;

    eut_drive_b = NULL;
    kvx_node_destroy(b);
    while (up && kvx_clock_monotonic_ns(NULL) < end) {
        kvxi_envelope_t *r;

        kvx_node_progress(a, 10);
        r = tc_peer_list(c);
        CU_ASSERT_PTR_NOT_NULL_FATAL(r);
        up = r->peer_list_reply->n_peers > 0 &&
             r->peer_list_reply->peers[0]->status == WIRE(KVX_OK);
        kvxi_frame_free(r);
    }
    CU_ASSERT_FALSE(up);
}

/* A push names a node id whose connection died (the node restarted at its
 * address): the node connects to that address again, and the push goes
 * through; a different node answering there is refused. */
static void test_engine_push_reconnect_by_id(void)
{
    kvx_block_ref_t refs[1], got[1];
    kvx_node_h a = eut_node(0), b;
    uint64_t xid = 0;
    char addr[64];
    uint32_t n = 0;
    tc_t *c;

    CU_ASSERT_EQUAL_FATAL(eut_peer("b", 1, &b), KVX_OK);
    eut_drive_b = b;
    snprintf(addr, sizeof(addr), "%s", kvx_node_listen_addr(b));
    c = tc_attached();
    tc_reserve_sealed(c, 1, NULL, refs);
    CU_ASSERT_EQUAL(tc_push(c, addr, 1, refs, 1, &xid), KVX_OK);
    tc_expect_done(c, KVX_OK);
    node_b_gone(c, a, b);
    CU_ASSERT_EQUAL(tc_push(c, "b", 2, refs, 1, &xid), KVX_OK);
    tc_expect_done(c, KVX_ERR_PEER_UNREACHABLE); /* not back yet */
    b = node_at("b", addr);
    CU_ASSERT_EQUAL(tc_push(c, "b", 2, refs, 1, &xid), KVX_OK);
    tc_expect_done(c, KVX_OK);
    CU_ASSERT_EQUAL(kvx_node_recv(b, 2, 0, got, 1, &n), KVX_OK);
    nut_unpin_all(b, got, n);

    node_b_gone(c, a, b);
    b = node_at("c", addr);
    CU_ASSERT_EQUAL(tc_push(c, "b", 3, refs, 1, &xid), KVX_OK);
    tc_expect_done(c, KVX_ERR_PEER_REFUSED);
    CU_ASSERT_EQUAL(kvx_node_recv(b, 3, 0, got, 1, &n), KVX_ERR_NOT_FOUND);
    CU_ASSERT_EQUAL(tc_push(c, "nobody", 4, refs, 1, &xid), KVX_ERR_NOT_FOUND);
    CU_ASSERT_EQUAL(tc_release(c, refs, 1), 1);
    CU_ASSERT_EQUAL(eut_alloc(a).n_free, EUT_BLOCKS);
    tc_close(c);
    eut_drive_b = NULL;
    kvx_node_destroy(b);
    kvx_node_destroy(a);
}

static const ut_test_t xfer_tests[] = {
    UT_TEST(test_engine_unheld_blocks),
    UT_TEST(test_engine_recv_timeout),
    UT_TEST(test_engine_push_e2e),
    UT_TEST(test_engine_push_pending),
    UT_TEST(test_engine_pull_recv),
    UT_TEST(test_engine_push_reconnect_by_id),
    UT_END,
};

int main(void)
{
    static const ut_suite_t suites[] = {
        {"xfer", xfer_tests},
        {NULL, NULL},
    };

    return eut_main(suites);
}
