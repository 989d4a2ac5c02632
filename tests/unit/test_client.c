/*
 * Unit tests for libkvx/client.c, the requests that move no data: lookup,
 * stats and peers, refusals (bad input, no space), and the holds a session
 * drops when it ends (detach, process exit, node destroyed). Attaching and
 * the frame I/O are in test_client_io.c, the transfers in
 * test_client_xfer.c. Exit 77 if UCX cannot start.
 */
#include "client_ut.h"

#include <sys/wait.h>

/* ------------------------------------------------------------------------
 * Queries.
 */

/* The prefix of @p keys the node holds (the lookup must succeed). */
static uint32_t lookup(kvx_client_h c, const kvx_block_key_t *keys, uint32_t n)
{
    uint32_t prefix = 99;

    CU_ASSERT_EQUAL(kvx_client_lookup(c, keys, n, &prefix), KVX_OK);
    return prefix;
}

static void test_client_lookup(void)
{
    kvx_block_key_t keys[6], other[2];
    kvx_block_ref_t src[4], six[6];
    kvx_lease_id_t lease = 99;
    uint8_t hit[6];
    kvx_client_h p;
    cut_world_t w;

    cut_up(&w, &p, NULL);
    cut_keys(keys, 6, 8);
    CU_ASSERT_EQUAL(lookup(p, keys, 6), 0);
    cut_make_src(p, 4, keys, src, 800);
    CU_ASSERT_EQUAL(lookup(p, keys, 4), 4);
    CU_ASSERT_EQUAL(lookup(p, keys, 6), 4);
    CU_ASSERT_EQUAL(lookup(p, keys, 2), 2);
    cut_keys(other, 2, 9);
    CU_ASSERT_EQUAL(lookup(p, other, 2), 0);
    cut_release_all(p, src, 4);
    /* released keyed blocks stay cached: still a prefix, and reserving the
     * same keys hits */
    CU_ASSERT_EQUAL(lookup(p, keys, 4), 4);
    CU_ASSERT_EQUAL_FATAL(kvx_client_reserve(p, 6, keys, 0, six, hit, &lease),
                          KVX_OK);
    CU_ASSERT(hit[0] && hit[1] && hit[2] && hit[3] && !hit[4] && !hit[5]);
    CU_ASSERT_NOT_EQUAL(lease, 0);
    cut_down(&w);
}

static void test_client_stats_peers(void)
{
    kvx_client_peer_t peers[4];
    kvx_block_ref_t src[5];
    kvx_node_stats_t st;
    kvx_client_h p;
    uint32_t n = 99;
    cut_world_t w;

    cut_up(&w, &p, NULL);
    CU_ASSERT_EQUAL(kvx_client_stats(p, &st), KVX_OK);
    CU_ASSERT_EQUAL(st.blocks_total, CUT_N_BLOCKS);
    CU_ASSERT_EQUAL(st.blocks_free, CUT_N_BLOCKS);
    CU_ASSERT(st.n_counters >= 1);
    CUT_INVALID(kvx_client_stats(p, NULL));
    CU_ASSERT_EQUAL(kvx_client_peers(p, NULL, 0, &n), KVX_OK);
    CU_ASSERT_EQUAL(n, 0);

    cut_make_src(p, 5, NULL, src, 900);
    CU_ASSERT_EQUAL(cut_blocks_free(p), CUT_N_BLOCKS - 5);
    cut_push_wait(p, w.d_addr, 91, src, 5, NULL, 0, NULL);
    CU_ASSERT_EQUAL(kvx_client_stats(p, &st), KVX_OK);
    CU_ASSERT_EQUAL(st.transfers_ok, 1);
    CU_ASSERT_EQUAL(st.bytes_sent, 5 * CUT_BLOCK_BYTES);

    CU_ASSERT_EQUAL(kvx_client_peers(p, NULL, 0, &n), KVX_OK);
    CU_ASSERT_EQUAL_FATAL(n, 1);
    CU_ASSERT_EQUAL(kvx_client_peers(p, peers, 4, &n), KVX_OK);
    CU_ASSERT_EQUAL_FATAL(n, 1);
    CU_ASSERT_STRING_EQUAL(peers[0].addr, w.d_addr);
    CU_ASSERT_STRING_EQUAL(peers[0].node_id, "decode");
    CU_ASSERT_EQUAL(peers[0].status, KVX_OK);
    CU_ASSERT_EQUAL(peers[0].transport, KVX_TRANSPORT_AM);
    CU_ASSERT_EQUAL(peers[0].outgoing, 1);
    CUT_INVALID(kvx_client_peers(p, NULL, 1, &n));
    CUT_INVALID(kvx_client_peers(p, peers, 1, NULL));

    /* a later push reuses the connection, named by node id */
    cut_push_wait(p, "decode", 92, src, 5, NULL, 0, NULL);
    CU_ASSERT_EQUAL(kvx_client_peers(p, peers, 4, &n), KVX_OK);
    CU_ASSERT_EQUAL(n, 1);
    cut_release_all(p, src, 5);
    cut_down(&w);
}

/* ------------------------------------------------------------------------
 * Refusals.
 */

/* What the node answers a request on blocks this session does not hold. */
static int not_held(kvx_status_t s)
{
    return s == KVX_ERR_STALE_HANDLE || s == KVX_ERR_BAD_STATE;
}

static void test_client_bad_input(void)
{
    kvx_block_ref_t refs[2], bogus = {.block = 5, .gen = 12345};
    kvx_xfer_params_t xp = cut_xfer_params(1, &bogus, 1);
    kvx_pull_params_t lp = cut_pull_params(1, 1);
    kvx_publish_params_t pp = cut_publish_params(1, &bogus, 1);
    uint32_t n = 0, released = 99, prefix;
    kvx_block_key_t keys[2];
    kvx_lease_id_t lease;
    kvx_client_xfer_h x = NULL;
    kvx_node_stats_t st;
    kvx_ticket_t ticket;
    kvx_client_h p, q;
    cut_world_t w;
    uint64_t ids;

    cut_up(&w, &p, NULL);
    cut_keys(keys, 2, 10);
    ids = p->last_id;

    /* refused before anything is sent */
    CUT_INVALID(kvx_client_reserve(p, 0, NULL, 0, refs, NULL, &lease));
    CUT_INVALID(
        kvx_client_reserve(p, (1u << 20) + 1, NULL, 0, refs, NULL, &lease));
    CUT_INVALID(kvx_client_reserve(p, 1, NULL, 0, NULL, NULL, &lease));
    CUT_INVALID(kvx_client_reserve(p, 1, NULL, 0, refs, NULL, NULL));
    CUT_INVALID(kvx_client_reserve(NULL, 1, NULL, 0, refs, NULL, &lease));
    CUT_INVALID(kvx_client_seal(p, 0));
    CUT_INVALID(kvx_client_release(p, refs, 0, NULL));
    CUT_INVALID(kvx_client_release(p, NULL, 1, NULL));
    CUT_INVALID(kvx_client_lookup(p, keys, 0, &prefix));
    CUT_INVALID(kvx_client_lookup(p, keys, 2, NULL));
    CUT_INVALID(kvx_client_recv(p, 1, 0, refs, 0, &n));
    CUT_INVALID(kvx_client_recv(p, 1, 3600001, refs, 2, &n));
    CUT_INVALID(kvx_client_push(p, NULL, &xp, &x));
    CUT_INVALID(kvx_client_push(p, "", &xp, &x));
    CUT_INVALID(kvx_client_push(p, w.d_addr, NULL, &x));
    CUT_INVALID(kvx_client_push(p, w.d_addr, &xp, NULL));
    xp.field_mask |= 1u << 20;
    CUT_INVALID(kvx_client_push(p, w.d_addr, &xp, &x));
    xp.field_mask = KVX_XFER_PARAM_FIELD_BLOCKS;
    CUT_INVALID(kvx_client_push(p, w.d_addr, &xp, &x));
    xp.field_mask = KVX_XFER_PARAM_FIELD_REQUEST_ID |
                    KVX_XFER_PARAM_FIELD_BLOCKS | KVX_XFER_PARAM_FIELD_FLAGS;
    xp.flags = 1u << 7;
    CUT_INVALID(kvx_client_push(p, w.d_addr, &xp, &x));
    xp.flags = 0;
    xp.field_mask |= KVX_XFER_PARAM_FIELD_KEYS; /* keys NULL */
    CUT_INVALID(kvx_client_push(p, w.d_addr, &xp, &x));
    xp.field_mask &= ~(uint64_t)KVX_XFER_PARAM_FIELD_KEYS;
    xp.n_blocks = 0;
    CUT_INVALID(kvx_client_push(p, w.d_addr, &xp, &x));
    xp.n_blocks = 1;
    lp.n_blocks = 0;
    CUT_INVALID(kvx_client_pull(p, w.d_addr, &lp, &x));
    lp.n_blocks = 1;
    lp.field_mask |= KVX_PULL_PARAM_FIELD_KEYS;
    CUT_INVALID(kvx_client_pull(p, w.d_addr, &lp, &x));
    pp.field_mask |= KVX_PUBLISH_PARAM_FIELD_LEASE;
    pp.lease_ms = 3600001;
    CUT_INVALID(kvx_client_publish(p, &pp, NULL));
    CUT_INVALID(kvx_client_publish(p, NULL, NULL));
    pp.lease_ms = 0;
    CUT_INVALID(kvx_client_stats(NULL, &st));
    CU_ASSERT_PTR_NULL(x);
    CU_ASSERT_EQUAL(p->last_id, ids);

    /* refused by the node */
    CU_ASSERT_EQUAL(kvx_client_seal(p, 424242), KVX_ERR_STALE_HANDLE);
    CU_ASSERT_EQUAL(kvx_client_release(p, &bogus, 1, &released), KVX_OK);
    CU_ASSERT_EQUAL(released, 0);
    CU_ASSERT(not_held(kvx_client_push(p, w.d_addr, &xp, &x)));
    CU_ASSERT_PTR_NULL(x);
    CU_ASSERT(not_held(kvx_client_publish(p, &pp, &ticket)));
    CU_ASSERT_EQUAL(kvx_client_recv(p, 777, 0, refs, 2, &n), KVX_ERR_NOT_FOUND);

    /* holds of another session are not ours to push or release */
    q = cut_attach(w.p_sock, "other-engine");
    cut_make_src(q, 1, NULL, refs, 1000);
    xp.blocks = refs;
    CU_ASSERT(not_held(kvx_client_push(p, w.d_addr, &xp, &x)));
    CU_ASSERT_EQUAL(kvx_client_release(p, refs, 1, &released), KVX_OK);
    CU_ASSERT_EQUAL(released, 0);
    CU_ASSERT_EQUAL(cut_blocks_free(p), CUT_N_BLOCKS - 1);
    kvx_client_detach(q);
    CU_ASSERT_EQUAL(cut_wait_free(p, CUT_N_BLOCKS), CUT_N_BLOCKS);
    cut_down(&w);
}

static void test_client_no_space(void)
{
    static kvx_block_ref_t refs[CUT_N_BLOCKS + 1];
    kvx_lease_id_t lease = 0, lease2 = 77;
    kvx_client_h p;
    cut_world_t w;

    cut_up(&w, &p, NULL);
    CU_ASSERT_EQUAL(
        kvx_client_reserve(p, CUT_N_BLOCKS + 1, NULL, 0, refs, NULL, &lease2),
        KVX_ERR_NO_SPACE);
    CU_ASSERT_EQUAL(lease2, 77);
    CU_ASSERT_EQUAL(cut_blocks_free(p), CUT_N_BLOCKS);
    CU_ASSERT_EQUAL_FATAL(
        kvx_client_reserve(p, CUT_N_BLOCKS - 4, NULL, 0, refs, NULL, &lease),
        KVX_OK);
    CU_ASSERT_EQUAL(kvx_client_reserve(p, 5, NULL, 0, refs + 60, NULL, &lease2),
                    KVX_ERR_NO_SPACE);
    CU_ASSERT_EQUAL(cut_blocks_free(p), 4);
    CU_ASSERT_EQUAL(kvx_client_seal(p, lease), KVX_OK);
    CU_ASSERT_EQUAL(kvx_client_seal(p, lease), KVX_ERR_STALE_HANDLE);
    cut_release_all(p, refs, CUT_N_BLOCKS - 4);
    CU_ASSERT_EQUAL(cut_blocks_free(p), CUT_N_BLOCKS);
    cut_down(&w);
}

static void test_client_recv_no_space(void)
{
    kvx_block_ref_t src[4], dst[4];
    kvx_client_h p, d;
    uint32_t n = 0;
    cut_world_t w;

    cut_up(&w, &p, &d);
    cut_make_src(p, 4, NULL, src, 1100);
    cut_push_wait(p, w.d_addr, 111, src, 4, NULL, 0, NULL);
    CU_ASSERT_EQUAL(kvx_client_recv(d, 111, CUT_WAIT_MS, dst, 2, &n),
                    KVX_ERR_NO_SPACE);
    CU_ASSERT_EQUAL(n, 4);
    CU_ASSERT_EQUAL(kvx_client_recv(d, 111, 0, dst, 4, &n), KVX_OK);
    CU_ASSERT_EQUAL(n, 4);
    CU_ASSERT_EQUAL(cut_check(d, dst, 4, 1100), 0);
    cut_release_all(d, dst, 4);
    cut_release_all(p, src, 4);
    cut_down(&w);
}

/* ------------------------------------------------------------------------
 * Sessions ending.
 */

static void test_client_detach_drops_holds(void)
{
    kvx_block_ref_t a[8], b[4];
    kvx_lease_id_t lease;
    kvx_client_h obs, c;
    cut_world_t w;

    cut_up(&w, NULL, NULL);
    obs = cut_attach(w.p_sock, "observer");
    c = cut_attach(w.p_sock, "leaver");
    cut_make_src(c, 8, NULL, a, 1200);
    CU_ASSERT_EQUAL(kvx_client_reserve(c, 4, NULL, 0, b, NULL, &lease),
                    KVX_OK); /* reserved, never sealed */
    CU_ASSERT_EQUAL(cut_blocks_free(obs), CUT_N_BLOCKS - 12);
    kvx_client_detach(c);
    CU_ASSERT_EQUAL(cut_wait_free(obs, CUT_N_BLOCKS), CUT_N_BLOCKS);
    kvx_client_detach(obs);
    cut_down(&w);
}

/* A child process attaches, holds blocks and dies without detaching. */
static void test_client_process_exit(void)
{
    int up[2], down[2], status = -1;
    kvx_client_h obs;
    cut_world_t w;
    char byte = 0;
    pid_t pid;

    cut_up(&w, NULL, NULL);
    obs = cut_attach(w.p_sock, "observer");
    CU_ASSERT_EQUAL_FATAL(pipe(up), 0);
    CU_ASSERT_EQUAL_FATAL(pipe(down), 0);
    fflush(NULL);
    pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        kvx_block_ref_t refs[6];
        kvx_lease_id_t lease;
        kvx_client_h c = NULL;
        char ok = 'x';

        if (kvx_client_attach(w.p_sock, NULL, &c) != KVX_OK ||
            kvx_client_reserve(c, 6, NULL, 0, refs, NULL, &lease) != KVX_OK ||
            kvx_client_seal(c, lease) != KVX_OK) {
            ok = 'f';
        }
        if (write(up[1], &ok, 1) != 1 || read(down[0], &ok, 1) != 1) {
            _exit(2);
        }
        _exit(ok == 'g' ? 0 : 1); /* no detach */
    }
    close(up[1]);
    close(down[0]);
    CU_ASSERT_EQUAL(read(up[0], &byte, 1), 1);
    CU_ASSERT_EQUAL(byte, 'x');
    CU_ASSERT_EQUAL(cut_blocks_free(obs), CUT_N_BLOCKS - 6);
    byte = 'g';
    CU_ASSERT_EQUAL(write(down[1], &byte, 1), 1);
    CU_ASSERT_EQUAL(waitpid(pid, &status, 0), pid);
    CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CU_ASSERT_EQUAL(cut_wait_free(obs, CUT_N_BLOCKS), CUT_N_BLOCKS);
    close(up[0]);
    close(down[1]);
    kvx_client_detach(obs);
    cut_down(&w);
}

/* The node goes away under attached engines: one waiting for a transfer
 * (it reads the end of the stream), one whose next call sends first (EPIPE:
 * must not raise SIGPIPE). */
static void test_client_node_destroyed(void)
{
    kvx_block_ref_t src[2], refs[2];
    kvx_client_xfer_h x, y;
    kvx_lease_id_t lease;
    kvx_node_stats_t st;
    kvx_client_h p, q;
    uint32_t n;
    cut_world_t w;

    cut_up(&w, &p, NULL);
    q = cut_attach(w.p_sock, "second-engine");
    cut_make_src(p, 2, NULL, src, 1300);
    CU_ASSERT_EQUAL_FATAL(
        cut_push(p, w.d_addr, 131, src, 2, NULL, KVX_XFER_FLAG_LAYERWISE, &x),
        KVX_OK);
    CU_ASSERT_EQUAL(kvx_client_xfer_test(x), KVX_INPROGRESS);
    cut_stop(&w);
    kvx_node_destroy(w.p);
    w.p = NULL;
    cut_start(&w);

    CU_ASSERT_EQUAL(kvx_client_stats(q, &st), KVX_ERR_PEER_DOWN);
    CU_ASSERT_EQUAL(kvx_client_stats(q, &st), KVX_ERR_PEER_DOWN);
    kvx_client_detach(q);

    /* the running transfer ends with the session, every call says the
     * node is gone */
    CU_ASSERT_EQUAL(kvx_client_xfer_wait(x, CUT_WAIT_MS), KVX_ERR_PEER_DOWN);
    CU_ASSERT_EQUAL(kvx_client_stats(p, &st), KVX_ERR_PEER_DOWN);
    CU_ASSERT_EQUAL(kvx_client_reserve(p, 1, NULL, 0, refs, NULL, &lease),
                    KVX_ERR_PEER_DOWN);
    CU_ASSERT_EQUAL(kvx_client_recv(p, 1, 0, refs, 2, &n), KVX_ERR_PEER_DOWN);
    CU_ASSERT_EQUAL(kvx_client_release(p, src, 2, NULL), KVX_ERR_PEER_DOWN);
    CU_ASSERT_EQUAL(kvx_client_xfer_abort(x), KVX_ERR_BAD_STATE);
    CU_ASSERT_EQUAL(cut_push(p, w.d_addr, 132, src, 2, NULL, 0, &y),
                    KVX_ERR_PEER_DOWN);
    /* the mapping stays readable until detach */
    CU_ASSERT_EQUAL(cut_check(p, src, 2, 1300), 0);
    cut_down(&w); /* detaching p frees the transfer handle too */
}

static const ut_test_t query_tests[] = {
    UT_TEST(test_client_lookup),
    UT_TEST(test_client_stats_peers),
    UT_END,
};

static const ut_test_t refusal_tests[] = {
    UT_TEST(test_client_bad_input),
    UT_TEST(test_client_no_space),
    UT_TEST(test_client_recv_no_space),
    UT_END,
};

static const ut_test_t session_tests[] = {
    UT_TEST(test_client_detach_drops_holds),
    UT_TEST(test_client_process_exit),
    UT_TEST(test_client_node_destroyed),
    UT_END,
};

int main(void)
{
    static const ut_suite_t suites[] = {
        {"query", query_tests},
        {"refusal", refusal_tests},
        {"session", session_tests},
        {NULL, NULL},
    };

    return cut_main(suites);
}
