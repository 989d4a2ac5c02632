/*
 * Unit tests for libkvx/conn.c: connections over real sockets in one
 * process and one event_base: handshakes over TCP and unix sockets,
 * envelopes both ways, refusals (secret, layout, version), back-pressure,
 * sending rules, closing and destroying inside callbacks, unreachable
 * peers. Every wait is bounded (UT_RUN_UNTIL). Hostile peers are in
 * test_conn_io.c, heartbeats in test_heartbeat.c.
 */
#include "ut.h"
#include "conn_ut.h"

#include <errno.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../fuzz/frame_samples.h"

static void test_conn_tcp_pair(void)
{
    ut_pair_t p;

    ut_loop_init();
    ut_pair_init(&p, "cluster secret", "cluster secret");
    ut_pair_listen(&p, "tcp");
    CU_ASSERT(kvxi_listener_port(p.l) != 0);
    ut_pair_connect(&p);
    CU_ASSERT_EQUAL(kvxi_conn_state(p.c.conn), KVXI_CONN_CONNECTING);
    ut_pair_exchange(&p);
    CU_ASSERT_EQUAL(p.accepted, 1);
    CU_ASSERT_STRING_EQUAL(kvxi_conn_name(p.c.conn), p.addr);
    CU_ASSERT_EQUAL(kvxi_conn_close_reason(p.c.conn), KVX_OK);

    /* A polite local close: the closer reports CONN_CLOSED, the peer
     * PEER_DOWN; neither callback runs inside kvxi_conn_close(). */
    OK(kvxi_conn_close(p.c.conn, KVX_OK, NULL));
    CU_ASSERT_EQUAL(p.c.closed, 0);
    CU_ASSERT_EQUAL(kvxi_conn_state(p.c.conn), KVXI_CONN_CLOSING);
    ERR(ut_send_lookup(p.c.conn, 1, NULL), CONN_CLOSED);
    OK(kvxi_conn_close(p.c.conn, KVX_OK, NULL)); /* no-op */
    UT_RUN_UNTIL(p.c.closed && p.s.closed, WAIT_MS);
    CU_ASSERT_EQUAL(p.c.closed, 1);
    CU_ASSERT_EQUAL(p.c.reason, KVX_ERR_CONN_CLOSED);
    CU_ASSERT_EQUAL(p.s.closed, 1);
    CU_ASSERT_EQUAL(p.s.reason, KVX_ERR_PEER_DOWN);
    ut_run_for(20);
    CU_ASSERT_EQUAL(p.c.closed, 1); /* exactly once */
    CU_ASSERT_EQUAL(p.s.closed, 1);
    ut_pair_fini(&p);
    ut_loop_fini();
}

static void test_conn_unix_pair_no_auth(void)
{
    char path[128];
    struct stat st;
    ut_pair_t p;

    ut_loop_init();
    ut_pair_init(&p, NULL, NULL); /* documented "no authentication" mode */
    ut_pair_listen(&p, "unix");
    CU_ASSERT_EQUAL(kvxi_listener_port(p.l), 0);
    snprintf(path, sizeof(path), "%s", p.addr + 5);
    CU_ASSERT_EQUAL_FATAL(lstat(path, &st), 0);
    CU_ASSERT(S_ISSOCK(st.st_mode));
    CU_ASSERT_EQUAL(st.st_mode & 0777, 0600);
    ut_pair_connect(&p);
    ut_pair_exchange(&p);
    kvxi_listener_destroy(p.l);
    p.l = NULL;
    CU_ASSERT_NOT_EQUAL(lstat(path, &st), 0); /* unlinked */
    /* Existing connections outlive the listener. */
    OK(ut_send_lookup(p.c.conn, 1, NULL));
    UT_RUN_UNTIL(p.c.recv_count == 2, WAIT_MS);
    CU_ASSERT_EQUAL(p.c.recv_count, 2);
    ut_pair_fini(&p);
    ut_loop_fini();
}

/* Different secrets: both sides close with AUTH, neither is established
 * and the client never saw the server's memory (or the server its). */
static void test_conn_wrong_secret(void)
{
    ut_pair_t p;

    ut_loop_init();
    ut_pair_init(&p, "secret A", "secret B");
    ut_pair_listen(&p, "tcp");
    ut_pair_connect(&p);
    UT_RUN_UNTIL(p.c.closed && p.s.closed, WAIT_MS);
    CU_ASSERT_EQUAL(p.c.closed, 1);
    CU_ASSERT_EQUAL(p.c.reason, KVX_ERR_AUTH);
    CU_ASSERT_PTR_NOT_NULL(strstr(p.c.text, "server failed to prove"));
    CU_ASSERT_EQUAL(p.s.closed, 1);
    CU_ASSERT_EQUAL(p.s.reason, KVX_ERR_AUTH);
    CU_ASSERT_PTR_NOT_NULL(strstr(p.s.text, "refused by peer"));
    CU_ASSERT_EQUAL(p.c.established, 0);
    CU_ASSERT_EQUAL(p.s.established, 0);
    CU_ASSERT_PTR_NULL(p.c.peer);
    CU_ASSERT_PTR_NULL(kvxi_conn_peer(p.c.conn));
    CU_ASSERT_PTR_NULL(kvxi_conn_peer(p.s.conn));
    ut_pair_fini(&p);
    ut_loop_fini();
}

static void test_conn_layout_mismatch(void)
{
    ut_pair_t p;

    ut_loop_init();
    ut_pair_init(&p, "k", "k");
    ut_ident_init(&p.ci, "client:1", 1, 64);
    ut_pair_listen(&p, "tcp");
    ut_pair_connect(&p);
    UT_RUN_UNTIL(p.c.closed && p.s.closed, WAIT_MS);
    CU_ASSERT_EQUAL(p.s.reason, KVX_ERR_LAYOUT_MISMATCH);
    CU_ASSERT_EQUAL(p.c.reason, KVX_ERR_LAYOUT_MISMATCH);
    /* The refusal names the hashes and the field, on both sides. */
    CU_ASSERT_PTR_NOT_NULL(strstr(p.s.text, "layout compat hash 0x"));
    CU_ASSERT_PTR_NOT_NULL(strstr(p.s.text, "head_dim 64 != 128"));
    CU_ASSERT_PTR_NOT_NULL(strstr(p.c.text, "layout compat hash 0x"));
    CU_ASSERT_PTR_NOT_NULL(strstr(p.c.text, "head_dim 64 != 128"));
    CU_ASSERT_EQUAL(p.c.established + p.s.established, 0);
    ut_pair_fini(&p);
    ut_loop_fini();
}

static void test_conn_version_mismatch(void)
{
    ut_pair_t p;

    ut_loop_init();
    ut_pair_init(&p, "k", "k");
    p.ci.id.min_version = 2;
    p.ci.id.max_version = 3;
    ut_pair_listen(&p, "tcp");
    ut_pair_connect(&p);
    UT_RUN_UNTIL(p.c.closed && p.s.closed, WAIT_MS);
    CU_ASSERT_EQUAL(p.s.reason, KVX_ERR_PROTO_VERSION);
    CU_ASSERT_EQUAL(p.c.reason, KVX_ERR_PROTO_VERSION);
    CU_ASSERT_PTR_NOT_NULL(strstr(p.c.text, "2..3"));
    ut_pair_fini(&p);
    ut_loop_fini();
}

/* A peer that stops reading: sends fail with NO_SPACE at the high-water
 * mark instead of buffering without bound; writable follows the drain. */
static void test_conn_high_water(void)
{
    enum { HWM = 256 << 10, KEYS = 4096 }; /* 64 KiB lookups */
    kvx_status_t status = KVX_OK;
    int sent = 0, sv[2];
    ut_raw_t raw;
    ut_pair_t p;

    ut_loop_init();
    ut_pair_init(&p, "k", "k");
    p.ccfg.out_high_water = HWM;
    CU_ASSERT_EQUAL_FATAL(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    OK_FATAL(kvxi_conn_create_fd(ut_base, sv[0], 1, &p.ccfg, &p.c.conn));
    ut_raw_fd(&raw, sv[1], 0, &p.si, "k");
    UT_RUN_UNTIL(p.c.established, WAIT_MS);
    CU_ASSERT_EQUAL_FATAL(p.c.established, 1);
    bufferevent_disable(raw.bev, EV_READ);

    while (sent < 1000) {
        status = ut_send_lookup(p.c.conn, KEYS, NULL);
        if (status != KVX_OK) {
            break;
        }
        sent++;
        CU_ASSERT(kvxi_conn_out_pending(p.c.conn) <= HWM);
        event_base_loop(ut_base, EVLOOP_NONBLOCK); /* let it write */
    }
    CU_ASSERT_EQUAL(status, KVX_ERR_NO_SPACE);
    CU_ASSERT(sent >= 4);
    CU_ASSERT(kvxi_conn_out_pending(p.c.conn) <= HWM);
    CU_ASSERT(kvxi_conn_out_pending(p.c.conn) > HWM / 2);
    CU_ASSERT_EQUAL(p.c.writable, 0);

    bufferevent_enable(raw.bev, EV_READ);
    UT_RUN_UNTIL(p.c.writable, WAIT_MS);
    CU_ASSERT_EQUAL(p.c.writable, 1);
    OK(ut_send_lookup(p.c.conn, KEYS, NULL));
    CU_ASSERT_EQUAL(p.c.closed, 0);
    ut_raw_fini(&raw);
    ut_pair_fini(&p);
    ut_loop_fini();
}

static void test_conn_send_errors(void)
{
    Kvx__V1__Envelope env = KVX__V1__ENVELOPE__INIT;
    Kvx__V1__Lookup lk = KVX__V1__LOOKUP__INIT;
    frame_sample_t s;
    ut_pair_t p;

    ut_loop_init();
    ut_pair_init(&p, "k", "k");
    p.si.id.max_frame = KVXI_FRAME_MAX_HANDSHAKE; /* server takes 64 KiB */
    ut_pair_listen(&p, "tcp");
    ut_pair_connect(&p);
    ERR(ut_send_lookup(p.c.conn, 1, NULL), BAD_STATE);
    UT_RUN_UNTIL(p.c.established && p.s.established, WAIT_MS);
    CU_ASSERT_EQUAL(p.c.peer->max_frame, KVXI_FRAME_MAX_HANDSHAKE);

    ERR(kvxi_conn_send(NULL, &env), INVALID_PARAM);
    ERR(kvxi_conn_send(p.c.conn, NULL), INVALID_PARAM);
    ERR(kvxi_conn_send(p.c.conn, &env), INVALID_PARAM); /* no body */
    CU_ASSERT_EQUAL(env.request_id, 0);                 /* not consumed */
    env.body_case = KVX__V1__ENVELOPE__BODY_LOOKUP;
    env.lookup = &lk; /* empty keys: invalid */
    ERR(kvxi_conn_send(p.c.conn, &env), INVALID_PARAM);
    CU_ASSERT_FATAL(frame_sample_init(&s, KVX__V1__ENVELOPE__BODY_ACCEPT));
    ERR(kvxi_conn_send(p.c.conn, &s.env), INVALID_PARAM);
    CU_ASSERT_FATAL(frame_sample_init(&s, KVX__V1__ENVELOPE__BODY_HEARTBEAT));
    ERR(kvxi_conn_send(p.c.conn, &s.env), INVALID_PARAM);
    /* 8192 keys = 128 KiB: above the server's limit, fine the other way. */
    ERR(ut_send_lookup(p.c.conn, 8192, NULL), PROTO_OVERSIZE);
    OK(ut_send_lookup(p.s.conn, 8192, NULL));
    UT_RUN_UNTIL(p.c.recv_count == 1, WAIT_MS);
    CU_ASSERT_EQUAL(p.c.last_body, KVX__V1__ENVELOPE__BODY_LOOKUP);
    /* The id counter did not move on the failures. */
    {
        uint64_t id = 0;

        OK(ut_send_lookup(p.c.conn, 1, &id));
        CU_ASSERT_EQUAL(id, 3);
    }
    ERR(kvxi_conn_close(NULL, KVX_OK, NULL), INVALID_PARAM);
    ERR(kvxi_conn_close(p.c.conn, KVX_INPROGRESS, NULL), INVALID_PARAM);
    ERR(kvxi_conn_close(p.c.conn, (kvx_status_t)-77, NULL), INVALID_PARAM);
    kvxi_conn_destroy(NULL);
    CU_ASSERT_EQUAL(kvxi_conn_state(NULL), KVXI_CONN_CLOSED);
    ut_pair_fini(&p);
    ut_loop_fini();
}

/* kvxi_conn_close() with a reason: the peer learns it from the Error. */
static void test_conn_close_with_reason(void)
{
    ut_pair_t p;

    ut_loop_init();
    ut_pair_init(&p, "k", "k");
    ut_pair_listen(&p, "unix");
    ut_pair_connect(&p);
    UT_RUN_UNTIL(p.c.established && p.s.established, WAIT_MS);
    OK(kvxi_conn_close(p.s.conn, KVX_ERR_PEER_REFUSED, "duplicate node"));
    UT_RUN_UNTIL(p.c.closed && p.s.closed, WAIT_MS);
    CU_ASSERT_EQUAL(p.s.reason, KVX_ERR_CONN_CLOSED);
    CU_ASSERT_EQUAL(p.c.reason, KVX_ERR_PEER_REFUSED);
    CU_ASSERT_PTR_NOT_NULL(strstr(p.c.text, "duplicate node"));
    CU_ASSERT_EQUAL(p.c.recv_count, 0);
    ut_pair_fini(&p);
    ut_loop_fini();
}

/* The owner may close or destroy a connection inside its callbacks. */
static void test_conn_destroy_in_callbacks(void)
{
    ut_pair_t p;

    ut_loop_init();
    /* destroy inside recv, while more frames are queued behind */
    ut_pair_init(&p, "k", "k");
    ut_pair_listen(&p, "tcp");
    ut_pair_connect(&p);
    UT_RUN_UNTIL(p.c.established && p.s.established, WAIT_MS);
    p.s.destroy_in_recv = 1;
    for (int i = 0; i < 5; i++) {
        OK(ut_send_lookup(p.c.conn, 1, NULL));
    }
    UT_RUN_UNTIL(p.s.recv_count > 0 && p.c.closed, WAIT_MS);
    CU_ASSERT_EQUAL(p.s.recv_count, 1);
    CU_ASSERT_PTR_NULL(p.s.conn);
    CU_ASSERT_EQUAL(p.s.closed, 0); /* destroyed: no closed callback */
    CU_ASSERT_EQUAL(p.c.reason, KVX_ERR_PEER_DOWN);
    ut_pair_fini(&p);

    /* close inside recv, destroy inside closed */
    ut_pair_init(&p, "k", "k");
    ut_pair_listen(&p, "tcp");
    ut_pair_connect(&p);
    UT_RUN_UNTIL(p.c.established && p.s.established, WAIT_MS);
    p.s.close_in_recv = 1;
    p.s.destroy_in_close = 1;
    p.c.destroy_in_close = 1;
    for (int i = 0; i < 5; i++) {
        OK(ut_send_lookup(p.c.conn, 1, NULL));
    }
    UT_RUN_UNTIL(p.s.closed && p.c.closed, WAIT_MS);
    CU_ASSERT_EQUAL(p.s.recv_count, 1); /* nothing after the close */
    CU_ASSERT_EQUAL(p.s.reason, KVX_ERR_CONN_CLOSED);
    CU_ASSERT_EQUAL(p.c.reason, KVX_ERR_PEER_DOWN);
    CU_ASSERT_PTR_NULL(p.s.conn);
    CU_ASSERT_PTR_NULL(p.c.conn);
    ut_pair_fini(&p);

    /* destroy inside established */
    ut_pair_init(&p, "k", "k");
    p.s.destroy_in_established = 1;
    ut_pair_listen(&p, "tcp");
    ut_pair_connect(&p);
    UT_RUN_UNTIL(p.s.established && p.c.closed, WAIT_MS);
    CU_ASSERT_EQUAL(p.s.established, 1);
    CU_ASSERT_PTR_NULL(p.s.conn);
    CU_ASSERT_EQUAL(p.s.closed, 0);
    CU_ASSERT_EQUAL(p.c.reason, KVX_ERR_PEER_DOWN);
    ut_pair_fini(&p);

    /* destroy right after connect, before anything ran */
    ut_pair_init(&p, "k", "k");
    ut_pair_listen(&p, "tcp");
    ut_pair_connect(&p);
    kvxi_conn_destroy(p.c.conn);
    p.c.conn = NULL;
    ut_run_for(30);
    CU_ASSERT_EQUAL(p.c.closed, 0);
    ut_pair_fini(&p);
    ut_loop_fini();
}

static void test_conn_unreachable(void)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);
    char addr[64];
    ut_ident_t ci;
    ut_end_t c = {0};
    kvxi_conn_config_t cfg;
    int fd;

    ut_loop_init();
    ut_ident_init(&ci, "client:1", 1, 128);
    cfg = ut_config(&ci, &c, "k");

    /* A port that was just free: bind, read it back, close. */
    fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CU_ASSERT_EQUAL_FATAL(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    CU_ASSERT_EQUAL_FATAL(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    close(fd);
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", ntohs(sin.sin_port));
    OK_FATAL(kvxi_conn_connect(ut_base, addr, &cfg, &c.conn));
    CU_ASSERT_EQUAL(c.closed, 0);
    UT_RUN_UNTIL(c.closed, WAIT_MS);
    CU_ASSERT_EQUAL(c.closed, 1);
    CU_ASSERT_EQUAL(c.reason, KVX_ERR_PEER_UNREACHABLE);
    ut_end_fini(&c);

    /* A unix path with nobody behind it. */
    cfg = ut_config(&ci, &c, "k");
    OK_FATAL(kvxi_conn_connect(ut_base, "unix:/nonexistent/kvx.sock", &cfg,
                               &c.conn));
    UT_RUN_UNTIL(c.closed, WAIT_MS);
    CU_ASSERT_EQUAL(c.reason, KVX_ERR_PEER_UNREACHABLE);
    ut_end_fini(&c);

    /* Bad arguments create nothing. */
    ERR(kvxi_conn_connect(ut_base, "no-port", &cfg, &c.conn), INVALID_PARAM);
    ERR(kvxi_conn_connect(ut_base, "example.com:80", &cfg, &c.conn),
        INVALID_PARAM);
    ERR(kvxi_conn_connect(NULL, addr, &cfg, &c.conn), INVALID_PARAM);
    cfg.identity = NULL;
    ERR(kvxi_conn_connect(ut_base, addr, &cfg, &c.conn), INVALID_PARAM);
    CU_ASSERT_PTR_NULL(c.conn);
    ut_loop_fini();
}

/* A listener whose accept queue is full drops our SYN: the connect timeout
 * ends the attempt. */
static void test_conn_connect_timeout(void)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);
    int lfd, fillers[4];
    char addr[64];
    ut_ident_t ci;
    ut_end_t c = {0};
    kvxi_conn_config_t cfg;
    uint64_t t0;

    ut_loop_init();
    ut_ident_init(&ci, "client:1", 1, 128);
    cfg = ut_config(&ci, &c, "k");
    cfg.connect_timeout_ms = 150;
    lfd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CU_ASSERT_EQUAL_FATAL(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    CU_ASSERT_EQUAL_FATAL(listen(lfd, 0), 0);
    CU_ASSERT_EQUAL_FATAL(getsockname(lfd, (struct sockaddr *)&sin, &len), 0);
    for (int i = 0; i < 4; i++) {
        fillers[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fillers[i], (struct sockaddr *)&sin, sizeof(sin));
    }
    ut_run_for(20);
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", ntohs(sin.sin_port));
    t0 = ut_now_ms();
    OK_FATAL(kvxi_conn_connect(ut_base, addr, &cfg, &c.conn));
    UT_RUN_UNTIL(c.closed, WAIT_MS);
    CU_ASSERT_EQUAL(c.closed, 1);
    CU_ASSERT_EQUAL(c.reason, KVX_ERR_PEER_UNREACHABLE);
    CU_ASSERT(ut_now_ms() - t0 >= 140);
    CU_ASSERT_PTR_NOT_NULL(strstr(c.text, "timed out"));
    ut_end_fini(&c);
    for (int i = 0; i < 4; i++) {
        close(fillers[i]);
    }
    close(lfd);
    ut_loop_fini();
}

static const ut_test_t conn_tests[] = {
    UT_TEST(test_conn_tcp_pair),
    UT_TEST(test_conn_unix_pair_no_auth),
    UT_TEST(test_conn_wrong_secret),
    UT_TEST(test_conn_layout_mismatch),
    UT_TEST(test_conn_version_mismatch),
    UT_TEST(test_conn_high_water),
    UT_TEST(test_conn_send_errors),
    UT_TEST(test_conn_close_with_reason),
    UT_TEST(test_conn_destroy_in_callbacks),
    UT_TEST(test_conn_unreachable),
    UT_TEST(test_conn_connect_timeout),
    UT_END,
};

int main(void)
{
    const ut_suite_t suites[] = {{"conn", conn_tests}, {NULL, NULL}};

    return ut_main(suites);
}
