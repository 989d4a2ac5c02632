/*
 * Unit tests for libkvx/node.c and peer.c: creation, listening, connecting
 * and the handshake's refusals, idle progress. Real UCX over loopback; exit
 * 77 if UCX cannot start.
 */
#include "node_ut.h"

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

static nut_opts_t opts_tcp = {.tls = NUT_TLS_TCP};

static void test_node_create_params(void)
{
    kvx_layout_params_t lp = nut_layout(16);
    kvx_node_params_t np = {
        .field_mask =
            KVX_NODE_PARAM_FIELD_NODE_ID | KVX_NODE_PARAM_FIELD_LAYOUT,
        .node_id = "n",
        .layout = &lp,
    };
    kvx_node_h node = (kvx_node_h)0x1;

    CU_ASSERT_EQUAL(kvx_node_create(NULL, &node), KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_node_create(&np, NULL), KVX_ERR_INVALID_PARAM);
    np.field_mask = KVX_NODE_PARAM_FIELD_NODE_ID;
    CU_ASSERT_EQUAL(kvx_node_create(&np, &node), KVX_ERR_INVALID_PARAM);
    np.field_mask |= KVX_NODE_PARAM_FIELD_LAYOUT | (1u << 30);
    CU_ASSERT_EQUAL(kvx_node_create(&np, &node), KVX_ERR_INVALID_PARAM);
    np.field_mask &= ~(uint64_t)(1u << 30);
    np.node_id = "";
    CU_ASSERT_EQUAL(kvx_node_create(&np, &node), KVX_ERR_INVALID_PARAM);
    np.node_id = "n";
    lp.field_mask |= KVX_LAYOUT_PARAM_FIELD_ORDER;
    lp.order = KVX_LAYOUT_LAYER_MAJOR;
    CU_ASSERT_EQUAL(kvx_node_create(&np, &node), KVX_ERR_INVALID_PARAM);
    lp.order = KVX_LAYOUT_BLOCK_MAJOR;
    lp.head_dim = 0;
    CU_ASSERT_EQUAL(kvx_node_create(&np, &node), KVX_ERR_INVALID_PARAM);
    lp.head_dim = 64;
    np.field_mask |= KVX_NODE_PARAM_FIELD_LISTEN;
    np.listen = "not an address";
    CU_ASSERT_EQUAL(kvx_node_create(&np, &node), KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(node, (kvx_node_h)0x1);
    np.listen = "127.0.0.1:0";
    CU_ASSERT_EQUAL_FATAL(kvx_node_create(&np, &node), KVX_OK);
    CU_ASSERT_PTR_NOT_NULL(kvx_node_listen_addr(node));
    CU_ASSERT_PTR_NOT_NULL(kvx_node_pool(node));
    CU_ASSERT_PTR_NOT_NULL(kvx_node_alloc(node));
    CU_ASSERT_EQUAL(kvx_node_layout(node)->num_layers, 4);
    kvx_node_destroy(node);
    kvx_node_destroy(NULL);
    CU_ASSERT_EQUAL(kvx_node_progress(NULL, 0), KVX_ERR_INVALID_PARAM);
    CU_ASSERT_STRING_EQUAL(kvx_transport_string(KVX_TRANSPORT_AM), "am");
}

static void test_node_listen_port0(void)
{
    kvx_node_h a;
    const char *addr;

    CU_ASSERT_EQUAL_FATAL(nut_node("a", &opts_tcp, 1, &a), KVX_OK);
    addr = kvx_node_listen_addr(a);
    CU_ASSERT_PTR_NOT_NULL_FATAL(addr);
    CU_ASSERT(strncmp(addr, "127.0.0.1:", 10) == 0);
    CU_ASSERT(strcmp(addr, "127.0.0.1:0") != 0);
    kvx_node_destroy(a);
}

static void test_peer_connect_handshake(void)
{
    kvx_node_h a, b;
    kvx_peer_h p;

    CU_ASSERT_EQUAL_FATAL(nut_node("server", &opts_tcp, 1, &a), KVX_OK);
    CU_ASSERT_EQUAL_FATAL(nut_node("client", &opts_tcp, 0, &b), KVX_OK);
    CU_ASSERT_EQUAL_FATAL(kvx_node_connect(b, kvx_node_listen_addr(a), &p),
                          KVX_OK);
    CU_ASSERT_EQUAL(kvx_peer_status(p), KVX_INPROGRESS);
    CU_ASSERT_EQUAL(nut_wait_peer(a, b, p), KVX_OK);
    CU_ASSERT_STRING_EQUAL(kvx_peer_name(p), "server");
    CU_ASSERT_EQUAL(kvx_peer_transport(p), KVX_TRANSPORT_AM);
    kvx_node_destroy(b);
    nut_spin(a, NULL, 50);
    kvx_node_destroy(a);
}

static kvx_status_t connect_with(const nut_opts_t *oa, const nut_opts_t *ob)
{
    kvx_node_h a, b;
    kvx_peer_h p;
    kvx_status_t st;

    CU_ASSERT_EQUAL_FATAL(nut_node("server", oa, 1, &a), KVX_OK);
    CU_ASSERT_EQUAL_FATAL(nut_node("client", ob, 0, &b), KVX_OK);
    CU_ASSERT_EQUAL_FATAL(kvx_node_connect(b, kvx_node_listen_addr(a), &p),
                          KVX_OK);
    st = nut_wait_peer(a, b, p);
    CU_ASSERT_EQUAL(kvx_peer_wait(p, 0), st);
    kvx_node_destroy(b);
    kvx_node_destroy(a);
    return st;
}

static void test_peer_layout_mismatch(void)
{
    nut_opts_t o = opts_tcp;

    o.head_dim = 128;
    CU_ASSERT_EQUAL(connect_with(&opts_tcp, &o), KVX_ERR_LAYOUT_MISMATCH);
}

static void test_peer_wrong_secret(void)
{
    nut_opts_t oa = opts_tcp, ob = opts_tcp;

    oa.secret = "cluster secret";
    ob.secret = "another secret";
    CU_ASSERT_EQUAL(connect_with(&oa, &ob), KVX_ERR_AUTH);
    ob.secret = "cluster secret";
    CU_ASSERT_EQUAL(connect_with(&oa, &ob), KVX_OK);
}

static void test_peer_unreachable(void)
{
    kvx_node_h a, b;
    kvx_peer_h p;
    char addr[64];

    /* A port that was just free: bind one, close it, connect there. */
    CU_ASSERT_EQUAL_FATAL(nut_node("gone", &opts_tcp, 1, &a), KVX_OK);
    snprintf(addr, sizeof(addr), "%s", kvx_node_listen_addr(a));
    kvx_node_destroy(a);
    CU_ASSERT_EQUAL_FATAL(nut_node("client", &opts_tcp, 0, &b), KVX_OK);
    CU_ASSERT_EQUAL_FATAL(kvx_node_connect(b, addr, &p), KVX_OK);
    CU_ASSERT_EQUAL(kvx_peer_wait(p, NUT_WAIT_MS), KVX_ERR_PEER_UNREACHABLE);
    CU_ASSERT_EQUAL(kvx_node_connect(b, "bogus", &p), KVX_ERR_INVALID_PARAM);
    kvx_node_destroy(b);
}

static void test_node_idle_progress(void)
{
    kvx_node_h a;
    uint64_t t0, dt;

    CU_ASSERT_EQUAL_FATAL(nut_node("idle", &opts_tcp, 1, &a), KVX_OK);
    kvx_node_progress(a, 0);
    t0 = kvx_clock_monotonic_ns(NULL);
    CU_ASSERT_EQUAL(kvx_node_progress(a, 100), KVX_OK);
    dt = kvx_clock_monotonic_ns(NULL) - t0;
    CU_ASSERT(dt >= 90000000ull);
    CU_ASSERT(dt < 2000000000ull);
    t0 = kvx_clock_monotonic_ns(NULL);
    CU_ASSERT_EQUAL(kvx_node_progress(a, 0), KVX_OK);
    CU_ASSERT(kvx_clock_monotonic_ns(NULL) - t0 < 50000000ull);
    kvx_node_destroy(a);
}

/* Node "poll" of the test layout with kvx_node_params_t::poll_us US. */
static kvx_node_h poll_node(uint32_t us)
{
    kvx_layout_params_t lp = nut_layout(16);
    kvx_node_params_t np = {
        .field_mask = KVX_NODE_PARAM_FIELD_NODE_ID |
                      KVX_NODE_PARAM_FIELD_LAYOUT | KVX_NODE_PARAM_FIELD_POLL |
                      KVX_NODE_PARAM_FIELD_LISTEN,
        .node_id = "poll",
        .layout = &lp,
        .listen = "127.0.0.1:0",
        .poll_us = us,
    };
    kvx_node_h node = NULL;

    CU_ASSERT_EQUAL(kvx_node_create(&np, &node), KVX_OK);
    return node;
}

static uint64_t counter(kvx_node_h node, const char *name)
{
    kvx_node_stats_t st;
    uint64_t v = UINT64_MAX;

    CU_ASSERT_EQUAL(kvx_node_stats(node, &st), KVX_OK);
    CU_ASSERT(nut_counter(&st, name, &v));
    return v;
}

/* The poll window: right after activity (a peer connecting, frames both
 * ways) a node with a 1 s window polls instead of sleeping; with 0 it
 * sleeps; bounds of poll_us and am_chunk are checked at creation. */
static void test_node_poll_window(void)
{
    kvx_layout_params_t lp = nut_layout(16);
    kvx_node_params_t np = {
        .field_mask = KVX_NODE_PARAM_FIELD_NODE_ID |
                      KVX_NODE_PARAM_FIELD_LAYOUT | KVX_NODE_PARAM_FIELD_POLL,
        .node_id = "bad",
        .layout = &lp,
        .poll_us = KVX_NODE_POLL_US_MAX + 1,
    };
    kvx_node_h node = NULL, b, a;
    kvx_peer_h p;
    uint64_t sleeps, polls;

    CU_ASSERT_EQUAL(kvx_node_create(&np, &node), KVX_ERR_INVALID_PARAM);
    np.field_mask = KVX_NODE_PARAM_FIELD_NODE_ID | KVX_NODE_PARAM_FIELD_LAYOUT |
                    KVX_NODE_PARAM_FIELD_AM_CHUNK;
    np.am_chunk = KVX_NODE_AM_CHUNK_MIN - 1;
    CU_ASSERT_EQUAL(kvx_node_create(&np, &node), KVX_ERR_INVALID_PARAM);
    np.am_chunk = KVX_NODE_AM_CHUNK_MAX + 1;
    CU_ASSERT_EQUAL(kvx_node_create(&np, &node), KVX_ERR_INVALID_PARAM);
    CU_ASSERT_PTR_NULL(node);
    np.am_chunk = KVX_NODE_AM_CHUNK_MIN;
    CU_ASSERT_EQUAL_FATAL(kvx_node_create(&np, &node), KVX_OK);
    kvx_node_destroy(node);

    for (int window = 0; window <= 1; window++) {
        a = poll_node(window ? KVX_NODE_POLL_US_MAX : 0);
        CU_ASSERT_PTR_NOT_NULL_FATAL(a);
        CU_ASSERT_EQUAL_FATAL(nut_node("client", &opts_tcp, 0, &b), KVX_OK);
        CU_ASSERT_EQUAL_FATAL(kvx_node_connect(b, kvx_node_listen_addr(a), &p),
                              KVX_OK);
        CU_ASSERT_EQUAL(nut_wait_peer(a, b, p), KVX_OK); /* frames: activity */
        sleeps = counter(a, "loop.sleeps");
        polls = counter(a, "loop.polls");
        for (int i = 0; i < 5; i++) { /* UCX may have events pending */
            CU_ASSERT_EQUAL(kvx_node_progress(a, 10), KVX_OK);
        }
        if (window) {
            CU_ASSERT_EQUAL(counter(a, "loop.sleeps"), sleeps);
            CU_ASSERT_EQUAL(counter(a, "loop.polls"), polls + 5);
        } else {
            CU_ASSERT(counter(a, "loop.sleeps") > sleeps);
            CU_ASSERT_EQUAL(counter(a, "loop.polls"), 0);
        }
        kvx_node_destroy(b);
        kvx_node_destroy(a);
    }
}

static void test_node_stats_local(void)
{
    kvx_node_stats_t st;
    kvx_node_h a;
    uint64_t v = 99;

    CU_ASSERT_EQUAL_FATAL(nut_node("local", &opts_tcp, 1, &a), KVX_OK);
    CU_ASSERT_EQUAL(kvx_node_stats(NULL, &st), KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_node_stats(a, NULL), KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_node_stats(a, &st), KVX_OK);
    CU_ASSERT_EQUAL(st.blocks_total, 64);
    CU_ASSERT_EQUAL(st.blocks_free, 64);
    CU_ASSERT_EQUAL(st.leases_active, 0);
    CU_ASSERT_EQUAL(st.transfers_ok + st.transfers_failed, 0);
    CU_ASSERT(nut_counter(&st, "peers.connected", &v) && v == 0);
    CU_ASSERT(nut_counter(&st, "uptime.ms", &v));
    CU_ASSERT_EQUAL(st.counters_dropped, 0);
    CU_ASSERT_EQUAL(kvx_peer_stats(NULL, 0, &st), KVX_ERR_INVALID_PARAM);
    kvx_node_destroy(a);
}

/* The answering node lives on its own thread (created, progressed and
 * destroyed there): kvx_peer_stats() progresses only the asking node, as it
 * would against a remote process. */
typedef struct server {
    pthread_t thread;
    char addr[64];
    atomic_int ready, stop, paused;
} server_t;

static void *server_main(void *arg)
{
    server_t *s = arg;
    kvx_node_h node;

    if (nut_node("server", &opts_tcp, 1, &node) != KVX_OK) {
        atomic_store(&s->ready, -1);
        return NULL;
    }
    snprintf(s->addr, sizeof(s->addr), "%s", kvx_node_listen_addr(node));
    atomic_store(&s->ready, 1);
    while (!atomic_load(&s->stop)) {
        if (atomic_load(&s->paused)) {
            usleep(1000);
        } else {
            kvx_node_progress(node, 5);
        }
    }
    kvx_node_destroy(node);
    return NULL;
}

static void test_peer_stats(void)
{
    server_t srv = {0};
    kvx_node_stats_t st;
    kvx_node_h b;
    kvx_peer_h p;
    uint64_t v = 0, t0;

    CU_ASSERT_EQUAL_FATAL(nut_node("client", &opts_tcp, 0, &b), KVX_OK);
    atomic_store(&srv.paused, 1);
    CU_ASSERT_EQUAL_FATAL(pthread_create(&srv.thread, NULL, server_main, &srv),
                          0);
    while (atomic_load(&srv.ready) == 0) {
        usleep(1000);
    }
    CU_ASSERT_EQUAL_FATAL(atomic_load(&srv.ready), 1);
    CU_ASSERT_EQUAL_FATAL(kvx_node_connect(b, srv.addr, &p), KVX_OK);
    CU_ASSERT_EQUAL(kvx_peer_stats(p, 10, &st), KVX_ERR_BAD_STATE);
    atomic_store(&srv.paused, 0);
    CU_ASSERT_EQUAL(kvx_peer_wait(p, NUT_WAIT_MS), KVX_OK);
    nut_spin(b, NULL, 50); /* the server registers the client */
    memset(&st, 0, sizeof(st));
    CU_ASSERT_EQUAL(kvx_peer_stats(p, NUT_WAIT_MS, &st), KVX_OK);
    CU_ASSERT_EQUAL(st.blocks_total, 64);
    CU_ASSERT_EQUAL(st.blocks_free, 64);
    CU_ASSERT(nut_counter(&st, "peers.connected", &v) && v == 1);
    CU_ASSERT(nut_counter(&st, "peer.client.transport", &v) &&
              v == KVX_TRANSPORT_AM);
    CU_ASSERT(nut_counter(&st, "checksum.mismatches", &v) && v == 0);
    /* a server that does not answer in time */
    atomic_store(&srv.paused, 1);
    t0 = kvx_clock_monotonic_ns(NULL);
    CU_ASSERT_EQUAL(kvx_peer_stats(p, 200, &st), KVX_ERR_TIMEOUT);
    CU_ASSERT(kvx_clock_monotonic_ns(NULL) - t0 < 2000000000ull);
    atomic_store(&srv.paused, 0);
    /* the late reply is ignored; the next request gets its own */
    CU_ASSERT_EQUAL(kvx_peer_stats(p, NUT_WAIT_MS, &st), KVX_OK);
    CU_ASSERT(nut_counter(&st, "peers.connected", &v) && v == 1);
    /* the server goes away */
    atomic_store(&srv.stop, 1);
    pthread_join(srv.thread, NULL);
    CU_ASSERT(KVX_STATUS_IS_PEER(kvx_peer_stats(p, NUT_WAIT_MS, &st)));
    kvx_node_destroy(b);
}

static uint64_t peers_connected(kvx_node_h node)
{
    kvx_node_stats_t st;
    uint64_t v = UINT64_MAX;

    CU_ASSERT_EQUAL(kvx_node_stats(node, &st), KVX_OK);
    CU_ASSERT(nut_counter(&st, "peers.connected", &v));
    return v;
}

/* kvx_peer_close(): a connected peer (the server sees the disconnect), a
 * failed one, and NULL. */
static void test_peer_close(void)
{
    kvx_node_h a, b;
    kvx_peer_h p;
    uint64_t end;
    char addr[64];

    CU_ASSERT_EQUAL_FATAL(nut_node("server", &opts_tcp, 1, &a), KVX_OK);
    CU_ASSERT_EQUAL_FATAL(nut_node("client", &opts_tcp, 0, &b), KVX_OK);
    CU_ASSERT_EQUAL_FATAL(kvx_node_connect(b, kvx_node_listen_addr(a), &p),
                          KVX_OK);
    CU_ASSERT_EQUAL_FATAL(nut_wait_peer(a, b, p), KVX_OK);
    CU_ASSERT_EQUAL(peers_connected(a), 1);
    CU_ASSERT_EQUAL(peers_connected(b), 1);
    kvx_peer_close(p);
    CU_ASSERT_EQUAL(peers_connected(b), 0);
    end = kvx_clock_monotonic_ns(NULL) + NUT_WAIT_MS * 1000000ull;
    while (peers_connected(a) != 0 && kvx_clock_monotonic_ns(NULL) < end) {
        kvx_node_progress(a, 1);
        kvx_node_progress(b, 0);
    }
    CU_ASSERT_EQUAL(peers_connected(a), 0);
    /* reconnect works after a close */
    CU_ASSERT_EQUAL_FATAL(kvx_node_connect(b, kvx_node_listen_addr(a), &p),
                          KVX_OK);
    CU_ASSERT_EQUAL(nut_wait_peer(a, b, p), KVX_OK);
    /* a failed peer: its server went away */
    snprintf(addr, sizeof(addr), "%s", kvx_node_listen_addr(a));
    kvx_node_destroy(a);
    end = kvx_clock_monotonic_ns(NULL) + NUT_WAIT_MS * 1000000ull;
    while (kvx_peer_status(p) == KVX_OK && kvx_clock_monotonic_ns(NULL) < end) {
        kvx_node_progress(b, 1);
    }
    CU_ASSERT(KVX_STATUS_IS_PEER(kvx_peer_status(p)));
    kvx_peer_close(p);
    CU_ASSERT_EQUAL_FATAL(kvx_node_connect(b, addr, &p), KVX_OK);
    CU_ASSERT_EQUAL(kvx_peer_wait(p, NUT_WAIT_MS), KVX_ERR_PEER_UNREACHABLE);
    kvx_peer_close(p);
    kvx_peer_close(NULL);
    CU_ASSERT_EQUAL(peers_connected(b), 0);
    kvx_node_destroy(b);
}

static const ut_test_t node_tests[] = {
    UT_TEST(test_node_create_params), UT_TEST(test_node_listen_port0),
    UT_TEST(test_node_idle_progress), UT_TEST(test_node_poll_window),
    UT_TEST(test_node_stats_local),   UT_END,
};

static const ut_test_t peer_tests[] = {
    UT_TEST(test_peer_connect_handshake),
    UT_TEST(test_peer_layout_mismatch),
    UT_TEST(test_peer_wrong_secret),
    UT_TEST(test_peer_unreachable),
    UT_TEST(test_peer_stats),
    UT_TEST(test_peer_close),
    UT_END,
};

int main(void)
{
    static const ut_suite_t suites[] = {
        {"node", node_tests},
        {"peer", peer_tests},
        {NULL, NULL},
    };

    if (!nut_init()) {
        return 77;
    }
    return ut_main(suites);
}
