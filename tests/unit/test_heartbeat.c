/*
 * Unit tests for libkvx/heartbeat.c (probes, echoes, round-trip time,
 * expiry, on a fake clock) and for heartbeats on real connections: a peer
 * that goes silent is declared down, live peers measure their RTT.
 */
#include "ut.h"
#include "conn_ut.h"

#include <string.h>

#include "heartbeat_int.h"

/* Takes the single frame in @p buf; asserts it is a Heartbeat. */
static kvxi_envelope_t *take_hb(struct evbuffer *buf)
{
    size_t len = evbuffer_get_length(buf), used = 0;
    kvxi_envelope_t *env = NULL;

    CU_ASSERT_EQUAL_FATAL(
        kvxi_frame_decode(evbuffer_pullup(buf, -1), len, 0, &env, &used),
        KVX_OK);
    CU_ASSERT_EQUAL(used, len);
    evbuffer_drain(buf, used);
    CU_ASSERT_EQUAL_FATAL(env->body_case, KVX__V1__ENVELOPE__BODY_HEARTBEAT);
    return env;
}

static void test_hb_probe_echo_rtt(void)
{
    struct evbuffer *a_out = evbuffer_new(), *b_out = evbuffer_new();
    kvxi_envelope_t *probe, *echo;
    kvxi_hb_t a, b;

    CU_ASSERT_FATAL(a_out != NULL && b_out != NULL);
    kvxi_hb_init(&a, 10, 3, 1000);
    kvxi_hb_init(&b, 10, 3, 1000);
    CU_ASSERT_EQUAL(a.rtt_us, 0);

    /* a probes at t=5000, b answers at once, a hears the echo at t=5250. */
    OK(kvxi_hb_probe(&a, 1, 7, 5000, a_out));
    probe = take_hb(a_out);
    CU_ASSERT_EQUAL(probe->request_id, 7);
    CU_ASSERT_EQUAL(probe->heartbeat->sequence, 1);
    CU_ASSERT_EQUAL(probe->heartbeat->sender_time_us, 5000);
    CU_ASSERT_EQUAL(kvxi_hb_input(&b, probe->heartbeat, 1, 3, 5100, b_out), 1);
    echo = take_hb(b_out);
    CU_ASSERT_EQUAL(echo->request_id, 3);
    CU_ASSERT_EQUAL(echo->heartbeat->sequence, 0);
    CU_ASSERT_EQUAL(echo->heartbeat->echo_sequence, 1);
    CU_ASSERT_EQUAL(echo->heartbeat->echo_time_us, 5000);
    CU_ASSERT_EQUAL(b.rtt_us, 0); /* a probe measures nothing */
    /* An echo is never answered: no ping-pong. */
    CU_ASSERT_EQUAL(kvxi_hb_input(&a, echo->heartbeat, 1, 8, 5250, a_out), 0);
    CU_ASSERT_EQUAL(evbuffer_get_length(a_out), 0);
    CU_ASSERT_EQUAL(a.rtt_us, 250);

    /* Echoes of probes never sent, or from the future, are ignored. */
    echo->heartbeat->echo_sequence = 9;
    kvxi_hb_input(&a, echo->heartbeat, 1, 8, 6000, a_out);
    CU_ASSERT_EQUAL(a.rtt_us, 250);
    echo->heartbeat->echo_sequence = 1;
    echo->heartbeat->echo_time_us = 7000;
    kvxi_hb_input(&a, echo->heartbeat, 1, 8, 6000, a_out);
    CU_ASSERT_EQUAL(a.rtt_us, 250);
    /* Same-microsecond echo still reads as "measured". */
    echo->heartbeat->echo_time_us = 6000;
    kvxi_hb_input(&a, echo->heartbeat, 1, 8, 6000, a_out);
    CU_ASSERT_EQUAL(a.rtt_us, 1);
    /* A congested output skips the answer. */
    CU_ASSERT_EQUAL(kvxi_hb_input(&b, probe->heartbeat, 1, 4, 6000, NULL), 0);
    kvxi_frame_free(probe);
    kvxi_frame_free(echo);
    evbuffer_free(a_out);
    evbuffer_free(b_out);
}

static void test_hb_expiry(void)
{
    uint64_t silent = 0;
    kvxi_hb_t hb;

    kvxi_hb_init(&hb, 20, 3, 1000000);
    CU_ASSERT_FALSE(kvxi_hb_expired(&hb, 1000000, &silent));
    CU_ASSERT_FALSE(kvxi_hb_expired(&hb, 1059999, &silent));
    CU_ASSERT_TRUE(kvxi_hb_expired(&hb, 1060000, &silent));
    CU_ASSERT_EQUAL(silent, 60);
    kvxi_hb_heard(&hb, 1050000);
    CU_ASSERT_FALSE(kvxi_hb_expired(&hb, 1100000, NULL));
    kvxi_hb_heard(&hb, 900000); /* clocks never run backwards here */
    CU_ASSERT_EQUAL(hb.last_rx_us, 1050000);
    CU_ASSERT_FALSE(kvxi_hb_expired(&hb, 1000, NULL));
    CU_ASSERT(kvxi_clock_us() > 0);
}

/* A peer that completes the handshake and then goes silent (answers no
 * heartbeat) is declared down after heartbeat_misses intervals. */
static void test_hb_loss_closes(void)
{
    int n_hb = 0;
    uint64_t t0;
    ut_raw_t raw;
    ut_pair_t p;

    ut_loop_init();
    ut_pair_init(&p, "k", "k");
    p.scfg.heartbeat_interval_ms = 20;
    p.scfg.heartbeat_misses = 3;
    ut_pair_listen(&p, "tcp");
    ut_raw_connect(&raw, p.addr, 1, &p.ci, "k");
    UT_RUN_UNTIL(p.s.established && raw.hs_status == KVX_OK, WAIT_MS);
    CU_ASSERT_EQUAL_FATAL(p.s.established, 1);
    CU_ASSERT_EQUAL(raw.hs_status, KVX_OK);
    t0 = ut_now_ms();
    UT_RUN_UNTIL(p.s.closed, WAIT_MS);
    CU_ASSERT_EQUAL(p.s.reason, KVX_ERR_PEER_DOWN);
    CU_ASSERT_PTR_NOT_NULL(strstr(p.s.text, "nothing received"));
    CU_ASSERT(ut_now_ms() - t0 >= 40);
    CU_ASSERT(ut_now_ms() - t0 < 1000);
    ut_raw_frames(&raw, KVX__V1__ENVELOPE__BODY_HEARTBEAT, &n_hb, NULL);
    CU_ASSERT(n_hb >= 2); /* probes were sent */
    ut_raw_fini(&raw);
    ut_pair_fini(&p);
    ut_loop_fini();
}

/* Live peers answer probes: RTT is measured, nobody is declared down. */
static void test_hb_rtt_live_pair(void)
{
    ut_pair_t p;

    ut_loop_init();
    ut_pair_init(&p, "k", "k");
    p.ccfg.heartbeat_interval_ms = 10;
    p.ccfg.heartbeat_misses = 5;
    p.scfg.heartbeat_interval_ms = 10;
    p.scfg.heartbeat_misses = 5;
    ut_pair_listen(&p, "tcp");
    ut_pair_connect(&p);
    UT_RUN_UNTIL(p.c.established && p.s.established, WAIT_MS);
    CU_ASSERT_EQUAL(kvxi_conn_rtt_us(p.c.conn), 0);
    UT_RUN_UNTIL(kvxi_conn_rtt_us(p.c.conn) > 0 &&
                     kvxi_conn_rtt_us(p.s.conn) > 0,
                 WAIT_MS);
    CU_ASSERT(kvxi_conn_rtt_us(p.c.conn) > 0);
    CU_ASSERT(kvxi_conn_rtt_us(p.s.conn) > 0);
    CU_ASSERT(kvxi_conn_rtt_us(p.c.conn) < 1000000);
    ut_run_for(150);
    CU_ASSERT_EQUAL(p.c.closed + p.s.closed, 0);
    CU_ASSERT_EQUAL(p.c.recv_count + p.s.recv_count, 0); /* internal */
    ut_pair_fini(&p);
    ut_loop_fini();
}

static const ut_test_t hb_tests[] = {
    UT_TEST(test_hb_probe_echo_rtt),
    UT_TEST(test_hb_expiry),
    UT_TEST(test_hb_loss_closes),
    UT_TEST(test_hb_rtt_live_pair),
    UT_END,
};

int main(void)
{
    const ut_suite_t suites[] = {{"heartbeat", hb_tests}, {NULL, NULL}};

    return ut_main(suites);
}
