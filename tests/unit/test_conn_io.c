/*
 * Unit tests for libkvx/conn_io.c: what a connection does with the bytes a
 * peer sends: frames split to single bytes, garbage, zero-length and
 * oversize frames, random bytes from many clients at once, silence
 * (handshake timeout), handshake messages out of order or replayed,
 * transfer messages before the handshake, violations after it, a forged
 * proof. Raw peers (conn_ut.h) play the hostile side; every wait is
 * bounded.
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

/* Two socketpairs joined by a pump that forwards one byte per read: every
 * frame of the handshake and after arrives in 1-byte pieces. */
typedef struct pump {
    struct bufferevent *a, *b;
    size_t moved;
} pump_t;

static void pump_read(struct bufferevent *bev, void *arg)
{
    pump_t *p = arg;
    struct bufferevent *to = bev == p->a ? p->b : p->a;

    p->moved += evbuffer_get_length(bufferevent_get_input(bev));
    bufferevent_write_buffer(to, bufferevent_get_input(bev));
}

static void test_conn_byte_at_a_time(void)
{
    int sv1[2], sv2[2];
    pump_t pump = {0};
    ut_pair_t p;

    ut_loop_init();
    ut_pair_init(&p, "k", "k");
    CU_ASSERT_EQUAL_FATAL(socketpair(AF_UNIX, SOCK_STREAM, 0, sv1), 0);
    CU_ASSERT_EQUAL_FATAL(socketpair(AF_UNIX, SOCK_STREAM, 0, sv2), 0);
    pump.a = bufferevent_socket_new(ut_base, sv1[1], BEV_OPT_CLOSE_ON_FREE);
    pump.b = bufferevent_socket_new(ut_base, sv2[0], BEV_OPT_CLOSE_ON_FREE);
    CU_ASSERT_FATAL(pump.a != NULL && pump.b != NULL);
    bufferevent_setcb(pump.a, pump_read, NULL, NULL, &pump);
    bufferevent_setcb(pump.b, pump_read, NULL, NULL, &pump);
    /* High read watermark 1: each read takes one byte. */
    bufferevent_setwatermark(pump.a, EV_READ, 0, 1);
    bufferevent_setwatermark(pump.b, EV_READ, 0, 1);
    bufferevent_enable(pump.a, EV_READ | EV_WRITE);
    bufferevent_enable(pump.b, EV_READ | EV_WRITE);

    OK_FATAL(kvxi_conn_create_fd(ut_base, sv1[0], 1, &p.ccfg, &p.c.conn));
    OK_FATAL(kvxi_conn_create_fd(ut_base, sv2[1], 0, &p.scfg, &p.s.conn));
    CU_ASSERT_EQUAL(kvxi_conn_state(p.c.conn), KVXI_CONN_HANDSHAKE);
    ut_pair_exchange(&p);
    CU_ASSERT(pump.moved > 200);
    ut_pair_fini(&p);
    bufferevent_free(pump.a);
    bufferevent_free(pump.b);
    ut_loop_fini();
}

/* An attacker that ignores the server's MAC and sends a made-up proof gets
 * Error(AUTH) and no Accept (no rkey). */
static void test_conn_bad_proof(void)
{
    kvx_status_t code;
    int n_accept = 1;
    ut_raw_t raw;
    ut_pair_t p;

    ut_loop_init();
    ut_pair_init(&p, "k", "k");
    ut_pair_listen(&p, "tcp");
    ut_raw_connect(&raw, p.addr, 1, &p.ci, "guess");
    raw.bad_proof = 1;
    UT_RUN_UNTIL(p.s.closed && raw.eof, WAIT_MS);
    CU_ASSERT_EQUAL(p.s.reason, KVX_ERR_AUTH);
    CU_ASSERT_EQUAL(p.s.established, 0);
    CU_ASSERT(raw.eof);
    ut_raw_frames(&raw, KVX__V1__ENVELOPE__BODY_ACCEPT, &n_accept, &code);
    CU_ASSERT_EQUAL(n_accept, 0);
    CU_ASSERT_EQUAL(code, KVX_ERR_AUTH);
    ut_raw_fini(&raw);
    ut_pair_fini(&p);
    ut_loop_fini();
}

/* Sends @p data from a raw client; expects Error(@p code), then EOF, and
 * the server closing with @p code. */
static void expect_refusal(ut_pair_t *p, const void *data, size_t len,
                           kvx_status_t code)
{
    kvx_status_t got;
    ut_raw_t raw;

    p->s.closed = 0;
    ut_raw_connect(&raw, p->addr, -1, NULL, NULL);
    ut_raw_send(&raw, data, len);
    UT_RUN_UNTIL(p->s.closed && raw.eof, WAIT_MS);
    CU_ASSERT(raw.eof);
    CU_ASSERT_EQUAL(p->s.closed, 1);
    CU_ASSERT_EQUAL(p->s.reason, code);
    CU_ASSERT_EQUAL(
        ut_raw_frames(&raw, KVX__V1__ENVELOPE__BODY_ERROR, NULL, &got), 1);
    CU_ASSERT_EQUAL(got, code);
    ut_raw_fini(&raw);
}

static void test_conn_garbage(void)
{
    static const uint8_t zero[] = {0, 0, 0, 0};
    static const uint8_t huge[] = {0x7f, 0xff, 0xff, 0xff, 1, 2, 3};
    static const uint8_t above[] = {0, 1, 0, 1}; /* 64 KiB + 1 */
    uint8_t junk[68];
    ut_pair_t p;

    ut_loop_init();
    ut_pair_init(&p, "k", "k");
    ut_pair_listen(&p, "tcp");
    memset(junk, 0xff, sizeof(junk));
    junk[0] = 0;
    junk[1] = 0;
    junk[2] = 0;
    junk[3] = sizeof(junk) - 4;
    expect_refusal(&p, junk, sizeof(junk), KVX_ERR_PROTO_MALFORMED);
    expect_refusal(&p, zero, sizeof(zero), KVX_ERR_PROTO_MALFORMED);
    expect_refusal(&p, huge, sizeof(huge), KVX_ERR_PROTO_OVERSIZE);
    expect_refusal(&p, above, sizeof(above), KVX_ERR_PROTO_OVERSIZE);
    CU_ASSERT_EQUAL(p.s.established, 0);
    ut_pair_fini(&p);
    ut_loop_fini();
}

static int all_eof(const ut_raw_t *raw, int n)
{
    for (int i = 0; i < n; i++) {
        if (!raw[i].eof) {
            return 0;
        }
    }
    return 1;
}

/* Many raw clients at once send random bytes (small announced lengths so
 * bodies get parsed): every connection ends, nothing crashes or hangs. */
static void test_conn_random_bytes(void)
{
    enum { N = 24 };
    static uint64_t rng = 0x9e3779b97f4a7c15ull;
    ut_raw_t raw[N];
    ut_pair_t p;

    ut_loop_init();
    ut_pair_init(&p, "k", "k");
    p.scfg.handshake_timeout_ms = 300;
    ut_pair_listen(&p, "tcp");
    for (int i = 0; i < N; i++) {
        uint8_t buf[256];
        size_t len = 8 + (size_t)(i * 10);

        for (size_t j = 0; j < len; j++) {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            buf[j] = (uint8_t)rng;
        }
        buf[0] = 0;
        buf[1] = 0;
        ut_raw_connect(&raw[i], p.addr, -1, NULL, NULL);
        ut_raw_send(&raw[i], buf, len);
    }
    UT_RUN_UNTIL(all_eof(raw, N), WAIT_MS);
    for (int i = 0; i < N; i++) {
        CU_ASSERT(raw[i].eof);
        ut_raw_frames(&raw[i], KVX__V1__ENVELOPE__BODY_ERROR, NULL, NULL);
        ut_raw_fini(&raw[i]);
    }
    CU_ASSERT_EQUAL(p.s.established, 0);
    ut_pair_fini(&p);
    ut_loop_fini();
}

/* A client that connects and never speaks is closed by the handshake
 * timeout (with Error(TIMEOUT)). */
static void test_conn_handshake_timeout(void)
{
    kvx_status_t code;
    uint64_t t0;
    ut_raw_t raw;
    ut_pair_t p;

    ut_loop_init();
    ut_pair_init(&p, "k", "k");
    p.scfg.handshake_timeout_ms = 100;
    ut_pair_listen(&p, "unix");
    t0 = ut_now_ms();
    ut_raw_connect(&raw, p.addr, -1, NULL, NULL);
    UT_RUN_UNTIL(p.s.closed && raw.eof, WAIT_MS);
    CU_ASSERT_EQUAL(p.s.reason, KVX_ERR_TIMEOUT);
    CU_ASSERT(ut_now_ms() - t0 >=
              80); /* libevent times from its cached clock */
    CU_ASSERT(ut_now_ms() - t0 < 2000);
    CU_ASSERT_EQUAL(
        ut_raw_frames(&raw, KVX__V1__ENVELOPE__BODY_ERROR, NULL, &code), 1);
    CU_ASSERT_EQUAL(code, KVX_ERR_TIMEOUT);
    ut_raw_fini(&raw);
    ut_pair_fini(&p);
    ut_loop_fini();
}

static void expect_sample_refused(ut_pair_t *p,
                                  Kvx__V1__Envelope__BodyCase body,
                                  kvx_status_t code)
{
    uint8_t buf[4096];
    frame_sample_t s;
    size_t len = 0;

    CU_ASSERT_FATAL(frame_sample_init(&s, body));
    OK_FATAL(kvxi_frame_encode(&s.env, buf, sizeof(buf), &len));
    expect_refusal(p, buf, len, code);
}

/* Before Accept only the handshake's own messages, in order, are valid. */
static void test_conn_unexpected_before_open(void)
{
    ut_pair_t p;

    ut_loop_init();
    ut_pair_init(&p, "k", "k");
    ut_pair_listen(&p, "tcp");
    expect_sample_refused(&p, KVX__V1__ENVELOPE__BODY_AUTH_PROOF,
                          KVX_ERR_PROTO_UNEXPECTED);
    expect_sample_refused(&p, KVX__V1__ENVELOPE__BODY_ACCEPT,
                          KVX_ERR_PROTO_UNEXPECTED);
    expect_sample_refused(&p, KVX__V1__ENVELOPE__BODY_ALLOCATE_REQUEST,
                          KVX_ERR_PROTO_UNEXPECTED);
    expect_sample_refused(&p, KVX__V1__ENVELOPE__BODY_HEARTBEAT,
                          KVX_ERR_PROTO_UNEXPECTED);
    expect_sample_refused(&p, KVX__V1__ENVELOPE__BODY_STATS,
                          KVX_ERR_PROTO_UNEXPECTED);
    CU_ASSERT_EQUAL(p.s.established, 0);
    ut_pair_fini(&p);
    ut_loop_fini();
}

/* A replayed Hello in the middle of the handshake. */
static void test_conn_replayed_hello(void)
{
    frame_sample_t s;
    kvx_status_t code;
    ut_raw_t raw;
    ut_pair_t p;

    ut_loop_init();
    ut_pair_init(&p, "k", "k");
    ut_pair_listen(&p, "tcp");
    ut_raw_connect(&raw, p.addr, 1, &p.ci, "k");
    raw.hs_status = KVX_ERR_BAD_STATE; /* record only: stop at HelloReply */
    UT_RUN_UNTIL(evbuffer_get_length(raw.rx) > 0, WAIT_MS);
    CU_ASSERT_FATAL(frame_sample_init(&s, KVX__V1__ENVELOPE__BODY_HELLO));
    ut_raw_send_env(&raw, &s.env);
    UT_RUN_UNTIL(p.s.closed && raw.eof, WAIT_MS);
    CU_ASSERT_EQUAL(p.s.reason, KVX_ERR_PROTO_UNEXPECTED);
    CU_ASSERT_EQUAL(
        ut_raw_frames(&raw, KVX__V1__ENVELOPE__BODY_ERROR, NULL, &code), 2);
    CU_ASSERT_EQUAL(code, KVX_ERR_PROTO_UNEXPECTED);
    ut_raw_fini(&raw);
    ut_pair_fini(&p);
    ut_loop_fini();
}

/* The client side: a "server" that answers Hello with Accept. */
static void test_conn_client_unexpected(void)
{
    frame_sample_t s;
    kvx_status_t code;
    ut_raw_t raw;
    ut_end_t c = {0};
    ut_ident_t ci;
    kvxi_conn_config_t cfg;
    int sv[2];

    ut_loop_init();
    ut_ident_init(&ci, "client:1", 1, 128);
    cfg = ut_config(&ci, &c, "k");
    CU_ASSERT_EQUAL_FATAL(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    OK_FATAL(kvxi_conn_create_fd(ut_base, sv[0], 1, &cfg, &c.conn));
    ut_raw_fd(&raw, sv[1], -1, NULL, NULL);
    UT_RUN_UNTIL(evbuffer_get_length(raw.rx) > 0, WAIT_MS);
    CU_ASSERT_EQUAL(
        ut_raw_frames(&raw, KVX__V1__ENVELOPE__BODY_HELLO, NULL, NULL), 1);
    CU_ASSERT_FATAL(frame_sample_init(&s, KVX__V1__ENVELOPE__BODY_ACCEPT));
    ut_raw_send_env(&raw, &s.env);
    UT_RUN_UNTIL(c.closed && raw.eof, WAIT_MS);
    CU_ASSERT_EQUAL(c.reason, KVX_ERR_PROTO_UNEXPECTED);
    CU_ASSERT_EQUAL(c.established, 0);
    ut_raw_frames(&raw, KVX__V1__ENVELOPE__BODY_ERROR, NULL, &code);
    CU_ASSERT_EQUAL(code, KVX_ERR_PROTO_UNEXPECTED);
    ut_raw_fini(&raw);
    ut_end_fini(&c);
    ut_loop_fini();
}

/* After the handshake: a handshake message, a frame in another version,
 * and a frame above the post-handshake limit each close the connection. */
static void test_conn_violations_after_open(void)
{
    static const uint8_t huge[] = {0x00, 0x40, 0x00, 0x01}; /* 4 MiB + 1 */
    Kvx__V1__Envelope__BodyCase bodies[] = {KVX__V1__ENVELOPE__BODY_HELLO,
                                            KVX__V1__ENVELOPE__BODY_STATS,
                                            KVX__V1__ENVELOPE__BODY__NOT_SET};
    kvx_status_t want[] = {KVX_ERR_PROTO_UNEXPECTED, KVX_ERR_PROTO_VERSION,
                           KVX_ERR_PROTO_OVERSIZE};

    ut_loop_init();
    for (size_t i = 0; i < 3; i++) {
        frame_sample_t s;
        kvx_status_t code;
        ut_raw_t raw;
        ut_pair_t p;

        ut_pair_init(&p, "k", "k");
        ut_pair_listen(&p, "tcp");
        ut_raw_connect(&raw, p.addr, 1, &p.ci, "k");
        UT_RUN_UNTIL(p.s.established, WAIT_MS);
        CU_ASSERT_EQUAL_FATAL(p.s.established, 1);
        if (bodies[i] == KVX__V1__ENVELOPE__BODY__NOT_SET) {
            ut_raw_send(&raw, huge, sizeof(huge));
        } else {
            CU_ASSERT_FATAL(frame_sample_init(&s, bodies[i]));
            if (want[i] == KVX_ERR_PROTO_VERSION) {
                s.env.version = 2;
            }
            ut_raw_send_env(&raw, &s.env);
        }
        UT_RUN_UNTIL(p.s.closed && raw.eof, WAIT_MS);
        CU_ASSERT_EQUAL(p.s.reason, want[i]);
        ut_raw_frames(&raw, KVX__V1__ENVELOPE__BODY_ERROR, NULL, &code);
        CU_ASSERT_EQUAL(code, want[i]);
        CU_ASSERT_EQUAL(p.s.recv_count, 0);
        ut_raw_fini(&raw);
        ut_pair_fini(&p);
    }
    ut_loop_fini();
}

static const ut_test_t conn_io_tests[] = {
    UT_TEST(test_conn_byte_at_a_time),
    UT_TEST(test_conn_bad_proof),
    UT_TEST(test_conn_garbage),
    UT_TEST(test_conn_random_bytes),
    UT_TEST(test_conn_handshake_timeout),
    UT_TEST(test_conn_unexpected_before_open),
    UT_TEST(test_conn_replayed_hello),
    UT_TEST(test_conn_client_unexpected),
    UT_TEST(test_conn_violations_after_open),
    UT_END,
};

int main(void)
{
    const ut_suite_t suites[] = {{"conn_io", conn_io_tests}, {NULL, NULL}};

    return ut_main(suites);
}
