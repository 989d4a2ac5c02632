/*
 * The fault suite, leases and the abort fence: a prefill and a decode kvxd
 * on 127.0.0.1 driven by attached engines (fault_it.h). Full pools answer
 * "no space" and nothing leaks; a reservation whose lease expires while
 * its writer is stopped (SIGSTOP) stays fenced, is not handed out, and
 * comes back only when the writer acknowledges; stale leases, block refs
 * and tickets read nothing; aborts with writes in flight never let a later
 * checksummed transfer into the same blocks see a late write. Every test
 * ends with the accounting of both pools back at its start; every wait is
 * bounded. argv[1]: the kvxd binary. Exit 0 pass, 1 fail, 77 when UCX
 * cannot start here.
 */
#include "fault_it.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

#define LAYERWISE KVX_XFER_FLAG_LAYERWISE
#define CHECKSUM KVX_XFER_FLAG_CHECKSUM

/* ---- pool exhaustion ---- */

static kvx_status_t reserve(kvx_client_h c, uint32_t n,
                            const kvx_block_key_t *keys, kvx_block_ref_t *refs,
                            kvx_lease_id_t *lease_p)
{
    return kvx_client_reserve(c, n, keys, 0, refs, NULL, lease_p);
}

/* The decode engine takes @p n blocks (keyed with @p keys) and holds them. */
static void hold(kvx_block_ref_t *refs, uint32_t n, const kvx_block_key_t *keys)
{
    kvx_lease_id_t lease;

    CU_ASSERT_EQUAL_FATAL(reserve(ft.dc, n, keys, refs, &lease), KVX_OK);
    CU_ASSERT_EQUAL_FATAL(kvx_client_seal(ft.dc, lease), KVX_OK);
}

/* Reserve beyond the pool: NO_SPACE and nothing held. A push into a pool
 * whose blocks are all held, and a pull into it: NO_SPACE, nothing
 * reserved; the same push succeeds after the holds are released, and into
 * a pool full of cached (evictable) blocks. */
static void test_fault_pool_full(void)
{
    kvx_block_ref_t all[IT_N_BLOCKS + 1], src[8];
    kvx_block_key_t keys[IT_N_BLOCKS - 4];
    kvx_publish_params_t pp = {
        .field_mask =
            KVX_PUBLISH_PARAM_FIELD_REQUEST_ID | KVX_PUBLISH_PARAM_FIELD_BLOCKS,
        .request_id = 5,
        .blocks = src,
        .n_blocks = 8,
    };
    kvx_pull_params_t lp = {
        .field_mask =
            KVX_PULL_PARAM_FIELD_REQUEST_ID | KVX_PULL_PARAM_FIELD_N_BLOCKS,
        .request_id = 5,
        .n_blocks = 8,
    };
    const uint32_t room = IT_N_BLOCKS - 8;
    kvx_client_xfer_h x;
    kvx_lease_id_t lease;
    uint32_t n = 0;
    kvx_status_t st;

    ft_pair_start(IT_TLS_TCP, NULL, NULL, 0);
    CU_ASSERT_EQUAL(reserve(ft.pc, IT_N_BLOCKS + 1, NULL, all, &lease),
                    KVX_ERR_NO_SPACE);
    it_write(ft.pc, src, 8, 3, NULL);
    CU_ASSERT_EQUAL(reserve(ft.pc, room + 1, NULL, all, &lease),
                    KVX_ERR_NO_SPACE);
    CU_ASSERT_EQUAL_FATAL(reserve(ft.pc, room, NULL, all, &lease), KVX_OK);
    CU_ASSERT_EQUAL(reserve(ft.pc, 1, NULL, all + room, &lease),
                    KVX_ERR_NO_SPACE);
    CU_ASSERT_EQUAL(kvx_client_seal(ft.pc, lease), KVX_OK);
    ft_release(ft.pc, all, room);
    CU_ASSERT_EQUAL(ft_unheld(ft.pc), ft.pfree0 - 8);

    /* decode full: 4 blocks left for a push of 8 */
    hold(all, IT_N_BLOCKS - 4, NULL);
    CU_ASSERT_EQUAL(ft_push_wait(ft.daddr, 1, src, 8), KVX_ERR_NO_SPACE);
    CU_ASSERT_EQUAL(kvx_client_recv(ft.dc, 1, 0, all + 60, 4, &n),
                    KVX_ERR_NOT_FOUND);
    CU_ASSERT_EQUAL(kvx_client_publish(ft.pc, &pp, NULL), KVX_OK);
    st = kvx_client_pull(ft.dc, ft.paddr, &lp, &x);
    if (st == KVX_OK) { /* or refused when it starts */
        st = kvx_client_xfer_wait(x, IT_WAIT_MS);
        kvx_client_xfer_release(x);
    }
    CU_ASSERT_EQUAL(st, KVX_ERR_NO_SPACE);
    CU_ASSERT_EQUAL(kvx_client_unpublish(ft.pc, 5), KVX_OK);
    CU_ASSERT(ft_wait_leases(ft.dc, 0, 0));
    CU_ASSERT_EQUAL(ft_unheld(ft.dc), 4);
    ft_release(ft.dc, all, IT_N_BLOCKS - 4);
    CU_ASSERT_EQUAL(ft_push_wait(ft.daddr, 1, src, 8), KVX_OK);
    CU_ASSERT_EQUAL(it_collect(ft.dc, 1, 8, 3), 0);

    /* a pool full of cached blocks: they are evicted for the push */
    memset(keys, 0, sizeof(keys));
    for (uint32_t i = 0; i < IT_N_BLOCKS - 4; i++) {
        keys[i].bytes[0] = (uint8_t)(i + 1);
        keys[i].bytes[15] = 0xc3;
    }
    hold(all, IT_N_BLOCKS - 4, keys);
    ft_release(ft.dc, all, IT_N_BLOCKS - 4);
    CU_ASSERT_EQUAL(it_pool_settled(ft.dc), ft.dfree0);
    CU_ASSERT_EQUAL(ft_push_wait(ft.daddr, 2, src, 8), KVX_OK);
    CU_ASSERT_EQUAL(it_collect(ft.dc, 2, 8, 3), 0);
    ft_release(ft.pc, src, 8);
    ft_pair_stop();
}

/* ---- leases that expire ---- */

/* The decode daemon's reservation for a push expires (lease_ms 500) while
 * the prefill daemon is stopped (SIGSTOP; heartbeats slowed so it is not
 * declared down): the blocks stay fenced and are not handed out, the
 * decode engine's recv names the cause (TIMEOUT) once, then the request is
 * gone. SIGCONT: the writer acknowledges the Abort, the fence lifts and
 * the push ends with TIMEOUT. Then stale handles: an engine lease that
 * expired unsealed, its block refs, and a ticket whose publication lease
 * ended read nothing. */
static void lease_expiry(const char *tls)
{
    static const char *const pextra[] = {"--heartbeat_ms=600000", NULL};
    static const char *const dextra[] = {"--heartbeat_ms=600000",
                                         "--lease_ms=500", NULL};
    kvx_block_ref_t src[8], refs[IT_N_BLOCKS + 1];
    kvx_publish_params_t pp = {
        .field_mask = KVX_PUBLISH_PARAM_FIELD_REQUEST_ID |
                      KVX_PUBLISH_PARAM_FIELD_BLOCKS |
                      KVX_PUBLISH_PARAM_FIELD_LEASE,
        .request_id = 3,
        .blocks = src,
        .n_blocks = 4,
        .lease_ms = 300,
    };
    kvx_pull_params_t lp = {
        .field_mask =
            KVX_PULL_PARAM_FIELD_REQUEST_ID | KVX_PULL_PARAM_FIELD_N_BLOCKS,
        .request_id = 3,
        .n_blocks = 4,
    };
    kvx_ticket_t ticket;
    kvx_client_xfer_h x;
    kvx_lease_id_t lease;
    uint64_t left;
    uint32_t n = 0;

    ft_pair_start(tls, pextra, dextra, 0);
    it_write(ft.pc, src, 8, 9, NULL);
    x = ft_push(ft.daddr, 1, src, 8, 30000, LAYERWISE | CHECKSUM);
    CU_ASSERT_EQUAL(kvx_client_xfer_layer_ready(x, 1), KVX_OK); /* no more */
    CU_ASSERT_FATAL(ft_wait_leases(ft.dc, 1, 0));
    CU_ASSERT_EQUAL(kill(ft.prefill->pid, SIGSTOP), 0);

    CU_ASSERT_FATAL(ft_wait_leases(ft.dc, 0, 1)); /* expired: fenced */
    left = ft_unheld(ft.dc);
    CU_ASSERT_EQUAL(left, ft.dfree0 - 8);
    CU_ASSERT_EQUAL(kvx_client_recv(ft.dc, 1, 0, refs, 8, &n), KVX_ERR_TIMEOUT);
    CU_ASSERT_EQUAL(kvx_client_recv(ft.dc, 1, 0, refs, 8, &n),
                    KVX_ERR_NOT_FOUND);
    CU_ASSERT_EQUAL(reserve(ft.dc, (uint32_t)left + 1, NULL, refs, &lease),
                    KVX_ERR_NO_SPACE);
    hold(refs, (uint32_t)left, NULL); /* every block but the fenced ones */
    ft_release(ft.dc, refs, (uint32_t)left);
    CU_ASSERT(ft_wait_leases(ft.dc, 0, 1)); /* still fenced */

    CU_ASSERT_EQUAL(kill(ft.prefill->pid, SIGCONT), 0);
    CU_ASSERT_EQUAL(kvx_client_xfer_wait(x, IT_WAIT_MS), KVX_ERR_TIMEOUT);
    kvx_client_xfer_release(x);
    CU_ASSERT_EQUAL(it_pool_wait(ft.dc, ft.dfree0, IT_WAIT_MS), ft.dfree0);

    /* an engine's lease that expired unsealed stays fenced (the engine may
     * still be writing) until the engine learns it: its Seal is refused and
     * lifts the fence; its refs are stale */
    CU_ASSERT_EQUAL_FATAL(
        kvx_client_reserve(ft.pc, 4, NULL, 200, refs, NULL, &lease), KVX_OK);
    CU_ASSERT(ft_wait_leases(ft.pc, 0, 1));
    CU_ASSERT_EQUAL(ft_unheld(ft.pc), ft.pfree0 - 12); /* 4 not handed out */
    {
        kvx_xfer_params_t xp = it_xfer_params(2, refs, 4, NULL, 0, 0);

        CU_ASSERT_EQUAL(kvx_client_push(ft.pc, ft.daddr, &xp, &x),
                        KVX_ERR_STALE_HANDLE);
    }
    CU_ASSERT_EQUAL(kvx_client_seal(ft.pc, lease), KVX_ERR_STALE_HANDLE);
    CU_ASSERT_EQUAL(it_pool_wait(ft.pc, ft.pfree0 - 8, IT_WAIT_MS),
                    ft.pfree0 - 8);
    CU_ASSERT_EQUAL(kvx_client_release(ft.pc, refs, 4, &n), KVX_OK);
    CU_ASSERT_EQUAL(n, 0);

    /* a publication whose lease ended: its ticket reads nothing */
    CU_ASSERT_EQUAL_FATAL(kvx_client_publish(ft.pc, &pp, &ticket), KVX_OK);
    ft_release(ft.pc, src, 8); /* only the publication pins 4 of them */
    CU_ASSERT_EQUAL(it_pool_wait(ft.pc, ft.pfree0, IT_WAIT_MS), ft.pfree0);
    CU_ASSERT_EQUAL_FATAL(kvx_client_pull(ft.dc, ticket.addr, &lp, &x), KVX_OK);
    CU_ASSERT_EQUAL(kvx_client_xfer_wait(x, IT_WAIT_MS), KVX_ERR_NOT_FOUND);
    kvx_client_xfer_release(x);
    CU_ASSERT_EQUAL(kvx_client_recv(ft.dc, 3, 0, refs, 4, &n),
                    KVX_ERR_NOT_FOUND);
    ft_pair_stop();
}

static void test_fault_lease_expiry_tcp(void)
{
    lease_expiry(IT_TLS_TCP);
}

static void test_fault_lease_expiry_shm(void)
{
    lease_expiry(IT_TLS_SHM);
}

/* ---- abort with writes in flight ---- */

#define ABORT_N 48 /* of the decode daemon's 64: a next push reuses >= 32 */
#define ABORT_ROUNDS 6

/* 256 KiB blocks: a push of 48 is 12 MiB. The prefill engine aborts it
 * right after posting (0 .. 10 ms): unless the abort came too late (the
 * Commit was out: the push then succeeds on both sides) the decode engine
 * sees it aborted; the decode daemon's blocks come back only once the
 * fence lifts, and a checksummed push of other data into the same blocks
 * right after reads back exactly what was sent. */
static void abort_in_flight(const char *tls)
{
    static const char *const pextra[] = {"--head_dim=512", "--pool_blocks=128",
                                         NULL};
    static const char *const dextra[] = {"--head_dim=512", NULL};
    static const unsigned delay_ms[ABORT_ROUNDS] = {0, 0, 1, 2, 5, 10};
    kvx_block_ref_t src[2][ABORT_N], got[ABORT_N];
    kvx_client_xfer_h x;
    unsigned aborted = 0;
    uint32_t n = 0;

    ft_pair_start(tls, pextra, dextra, 0);
    it_write(ft.pc, src[0], ABORT_N, 100, NULL);
    it_write(ft.pc, src[1], ABORT_N, 200, NULL);
    CU_ASSERT_EQUAL(ft_push_wait(ft.daddr, 1, src[0], 1), KVX_OK); /* peer */
    CU_ASSERT_EQUAL(it_collect(ft.dc, 1, 1, 100), 0);
    for (uint32_t i = 0; i < ABORT_ROUNDS; i++) {
        uint32_t a = i % 2, b = 1 - a;
        uint64_t rid = 10 + 2 * i;
        kvx_status_t st;

        x = ft_push(ft.daddr, rid, src[a], ABORT_N, 0, CHECKSUM);
        it_sleep_ms(delay_ms[i]);
        st = kvx_client_xfer_abort(x);
        CU_ASSERT(st == KVX_OK || st == KVX_ERR_BAD_STATE);
        st = kvx_client_xfer_wait(x, IT_WAIT_MS);
        kvx_client_xfer_release(x);
        CU_ASSERT(st == KVX_ERR_ABORTED || st == KVX_OK);
        /* both sides agree (the receiver's failure comes once the sender
         * quiesced: recv waits for it) */
        if (st == KVX_OK) {
            CU_ASSERT_EQUAL(it_collect(ft.dc, rid, ABORT_N, 100 * (a + 1)), 0);
        } else {
            aborted++;
            CU_ASSERT_EQUAL(
                kvx_client_recv(ft.dc, rid, IT_WAIT_MS, got, ABORT_N, &n),
                KVX_ERR_ABORTED);
        }
        CU_ASSERT_EQUAL(it_pool_wait(ft.dc, ft.dfree0, IT_WAIT_MS), ft.dfree0);
        CU_ASSERT_EQUAL(ft_push_wait(ft.daddr, rid + 1, src[b], ABORT_N),
                        KVX_OK);
        CU_ASSERT_EQUAL(it_collect(ft.dc, rid + 1, ABORT_N, 100 * (b + 1)), 0);
    }
    fprintf(stderr, "abort in flight over %s: %u of %u pushes aborted\n", tls,
            aborted, ABORT_ROUNDS);
    ft_release(ft.pc, src[0], ABORT_N);
    ft_release(ft.pc, src[1], ABORT_N);
    ft_pair_stop();
}

static void test_fault_abort_in_flight_tcp(void)
{
    abort_in_flight(IT_TLS_TCP);
}

static void test_fault_abort_in_flight_shm(void)
{
    abort_in_flight(IT_TLS_SHM);
}

static const it_test_t tests[] = {
    {"test_fault_pool_full", test_fault_pool_full},
    {"test_fault_lease_expiry_tcp", test_fault_lease_expiry_tcp},
    {"test_fault_lease_expiry_shm", test_fault_lease_expiry_shm},
    {"test_fault_abort_in_flight_tcp", test_fault_abort_in_flight_tcp},
    {"test_fault_abort_in_flight_shm", test_fault_abort_in_flight_shm},
};

int main(int argc, char **argv)
{
    return ft_main(argc, argv, "fault_lease", tests, IT_N_TESTS(tests));
}
