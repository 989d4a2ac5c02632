/*
 * The fault suite, peers and engines that die: two kvxd processes on
 * 127.0.0.1 (a prefill and a decode daemon) driven by engines attached to
 * their unix sockets (fault_it.h). The prefill daemon SIGKILLed mid-push,
 * a daemon killed and restarted at its address (nobody else restarts),
 * engine processes killed while holding pins and transfers. Every test
 * ends with the accounting of both pools back at its start; every wait is
 * bounded. Over UCX tcp and shared memory. argv[1]: the kvxd binary.
 * Exit 0 pass, 1 fail, 77 when UCX cannot start here.
 */
#include "fault_it.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define LAYERWISE KVX_XFER_FLAG_LAYERWISE

/* ---- prefill daemon killed mid-push ---- */

/* A decode engine: attached, says so, waits in kvx_client_recv(@p rid)
 * and writes the status it got. */
static void kid_recv(int fd, uint64_t rid)
{
    kvx_block_ref_t got[FT_N_MAX];
    kvx_client_h c = NULL;
    kvx_status_t st = kvx_client_attach(ft.dsock, NULL, &c);
    uint32_t n = 0;

    if (st == KVX_OK && write(fd, "a", 1) == 1) {
        st = kvx_client_recv(c, rid, IT_WAIT_MS, got, FT_N_MAX, &n);
    }
    if (write(fd, &st, sizeof(st)) != (ssize_t)sizeof(st)) {
        _exit(1);
    }
}

/* The decode daemon reserved 8 blocks for a push that stalls after layer
 * 0; the prefill daemon dies. The decode engine waiting for the request
 * gets a peer-down (or aborted) status, and the 8 blocks come back once
 * the fence lifts (the writer's endpoint is gone). */
static void prefill_killed(const char *tls)
{
    kvx_block_ref_t src[8];
    kvx_client_xfer_h x;
    kvx_node_stats_t s;
    kvx_status_t st = KVX_INPROGRESS;
    char ready;
    int fd;

    ft_pair_start(tls, NULL, NULL, 0);
    it_write(ft.pc, src, 8, 5, NULL);
    x = ft_push(ft.daddr, 7, src, 8, 30000, LAYERWISE);
    CU_ASSERT_EQUAL(kvx_client_xfer_layer_ready(x, 1), KVX_OK); /* no more */
    CU_ASSERT_FATAL(ft_wait_leases(ft.dc, 1, 0));
    CU_ASSERT_EQUAL(ft_unheld(ft.dc), ft.dfree0 - 8); /* reserved, not free */
    fd = ft_kid_start(0, kid_recv, 7);
    CU_ASSERT_FATAL(ft_read(fd, &ready, 1, IT_READY_MS));
    it_sleep_ms(200); /* its Recv is parked on the decode daemon */

    ft_daemon_kill(&ft.prefill);
    CU_ASSERT(ft_read(fd, &st, sizeof(st), IT_WAIT_MS));
    fprintf(stderr, "prefill killed over %s: the decode engine got %s\n", tls,
            kvx_status_string(st));
    CU_ASSERT(KVX_STATUS_IS_PEER(st) || st == KVX_ERR_ABORTED);
    close(fd);
    ft_kid_end(0, 0);
    CU_ASSERT_EQUAL(it_pool_wait(ft.dc, ft.dfree0, IT_WAIT_MS), ft.dfree0);
    CU_ASSERT_EQUAL(kvx_client_stats(ft.dc, &s), KVX_OK);
    CU_ASSERT_EQUAL(s.transfers_failed, 1);
    /* The prefill engine's daemon is gone: its calls say so. */
    CU_ASSERT(KVX_STATUS_IS_PEER(kvx_client_xfer_wait(x, IT_WAIT_MS)));
    kvx_client_xfer_release(x);
    kvx_client_detach(ft.pc);
    ft.pc = NULL;
    ft_pair_stop();
}

static void test_fault_prefill_killed_tcp(void)
{
    prefill_killed(IT_TLS_TCP);
}

static void test_fault_prefill_killed_shm(void)
{
    prefill_killed(IT_TLS_SHM);
}

/* ---- a killed daemon restarts ---- */

/* The decode daemon is SIGKILLed mid-push and started again with the same
 * configuration and address: nobody else restarts. The prefill daemon's
 * static peer reconnects by itself; pushes by node id and by address
 * succeed (checksums on). Then a prefill daemon without static peers: after
 * the decode daemon's next restart it reaches it again when asked, by node
 * id (its last address) and by address. */
static void decode_restart(const char *tls)
{
    kvx_block_ref_t src[4];
    kvx_client_xfer_h x;

    ft_pair_start(tls, NULL, NULL, 1);
    it_write(ft.pc, src, 4, 21, NULL);
    CU_ASSERT_FATAL(ft_wait_peer(ft.pc, "kvxd-decode"));
    CU_ASSERT_EQUAL(ft_push_wait("kvxd-decode", 1, src, 4), KVX_OK);
    CU_ASSERT_EQUAL(it_collect(ft.dc, 1, 4, 21), 0);
    x = ft_push("kvxd-decode", 2, src, 4, 30000, LAYERWISE);
    CU_ASSERT_EQUAL(kvx_client_xfer_layer_ready(x, 1), KVX_OK);
    CU_ASSERT_FATAL(ft_wait_leases(ft.dc, 1, 0));

    ft_daemon_kill(&ft.decode);
    CU_ASSERT(KVX_STATUS_IS_PEER(kvx_client_xfer_wait(x, IT_WAIT_MS)));
    kvx_client_xfer_release(x);
    kvx_client_detach(ft.dc);
    ft.decode = ft_daemon_start("kvxd-decode", ft.dsock, ft.daddr, ft.dextra);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ft.decode);
    CU_ASSERT_STRING_EQUAL(ft.decode->addr, ft.daddr);
    ft.dc = it_attach(ft.dsock);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ft.dc);

    CU_ASSERT_FATAL(ft_wait_peer(ft.pc, "kvxd-decode"));
    CU_ASSERT_EQUAL(ft_push_wait("kvxd-decode", 3, src, 4), KVX_OK);
    CU_ASSERT_EQUAL(it_collect(ft.dc, 3, 4, 21), 0);
    CU_ASSERT_EQUAL(ft_push_wait(ft.daddr, 4, src, 4), KVX_OK);
    CU_ASSERT_EQUAL(it_collect(ft.dc, 4, 4, 21), 0);
    CU_ASSERT_EQUAL(it_pool_wait(ft.dc, ft.dfree0, IT_WAIT_MS), ft.dfree0);

    ft_release(ft.pc, src, 4);
    CU_ASSERT_EQUAL(it_pool_wait(ft.pc, ft.pfree0, IT_WAIT_MS), ft.pfree0);

    /* A prefill daemon without static peers reconnects when asked. */
    ft.static_peer = 0;
    kvx_client_detach(ft.pc);
    CU_ASSERT_EQUAL(it_proc_stop(ft.prefill), 0);
    ft.prefill = ft_daemon_start("kvxd-prefill", ft.psock, ft.paddr, ft.pextra);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ft.prefill);
    ft.pc = it_attach(ft.psock);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ft.pc);
    it_write(ft.pc, src, 4, 22, NULL);
    CU_ASSERT_EQUAL(ft_push_wait(ft.daddr, 5, src, 4), KVX_OK);
    CU_ASSERT_EQUAL(it_collect(ft.dc, 5, 4, 22), 0);
    ft_daemon_kill(&ft.decode);
    kvx_client_detach(ft.dc);
    ft.decode = ft_daemon_start("kvxd-decode", ft.dsock, ft.daddr, ft.dextra);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ft.decode);
    ft.dc = it_attach(ft.dsock);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ft.dc);
    CU_ASSERT_EQUAL(ft_push_wait("kvxd-decode", 6, src, 4), KVX_OK);
    CU_ASSERT_EQUAL(it_collect(ft.dc, 6, 4, 22), 0);
    CU_ASSERT_EQUAL(ft_push_wait(ft.daddr, 7, src, 4), KVX_OK);
    CU_ASSERT_EQUAL(it_collect(ft.dc, 7, 4, 22), 0);
    ft_release(ft.pc, src, 4);
    ft_pair_stop();
}

static void test_fault_decode_restart_tcp(void)
{
    decode_restart(IT_TLS_TCP);
}

static void test_fault_decode_restart_shm(void)
{
    decode_restart(IT_TLS_SHM);
}

/* The decode engine pulls from the prefill daemon by its ticket address;
 * the prefill daemon dies and starts again at that address: the decode
 * daemon reconnects for the next pull by itself. */
static void prefill_restart(const char *tls)
{
    kvx_block_ref_t src[4];
    kvx_publish_params_t pp = {
        .field_mask =
            KVX_PUBLISH_PARAM_FIELD_REQUEST_ID | KVX_PUBLISH_PARAM_FIELD_BLOCKS,
        .blocks = src,
        .n_blocks = 4,
    };
    kvx_pull_params_t lp = {
        .field_mask =
            KVX_PULL_PARAM_FIELD_REQUEST_ID | KVX_PULL_PARAM_FIELD_N_BLOCKS,
        .n_blocks = 4,
    };
    kvx_ticket_t ticket;
    kvx_client_xfer_h x;

    ft_pair_start(tls, NULL, NULL, 0);
    for (uint32_t round = 0; round < 2; round++) {
        pp.request_id = lp.request_id = 40 + round;
        it_write(ft.pc, src, 4, 31 + round, NULL);
        CU_ASSERT_EQUAL_FATAL(kvx_client_publish(ft.pc, &pp, &ticket), KVX_OK);
        CU_ASSERT_STRING_EQUAL(ticket.addr, ft.paddr);
        CU_ASSERT_EQUAL_FATAL(kvx_client_pull(ft.dc, ticket.addr, &lp, &x),
                              KVX_OK);
        CU_ASSERT_EQUAL(kvx_client_xfer_wait(x, IT_WAIT_MS), KVX_OK);
        kvx_client_xfer_release(x);
        CU_ASSERT_EQUAL(it_collect(ft.dc, 40 + round, 4, 31 + round), 0);
        CU_ASSERT_EQUAL(kvx_client_unpublish(ft.pc, 40 + round), KVX_OK);
        ft_release(ft.pc, src, 4);
        if (round == 0) {
            ft_daemon_kill(&ft.prefill);
            kvx_client_detach(ft.pc);
            ft.prefill =
                ft_daemon_start("kvxd-prefill", ft.psock, ft.paddr, ft.pextra);
            CU_ASSERT_PTR_NOT_NULL_FATAL(ft.prefill);
            ft.pc = it_attach(ft.psock);
            CU_ASSERT_PTR_NOT_NULL_FATAL(ft.pc);
        }
    }
    ft_pair_stop();
}

static void test_fault_prefill_restart_tcp(void)
{
    prefill_restart(IT_TLS_TCP);
}

static void test_fault_prefill_restart_shm(void)
{
    prefill_restart(IT_TLS_SHM);
}

/* ---- engines killed while holding pins ---- */

/* A decode engine that collects request @p rid (4 blocks, held), seals 2
 * blocks, reserves 2 more unsealed, says 'd' and waits to be killed. */
static void kid_decode(int fd, uint64_t rid)
{
    kvx_block_ref_t got[FT_N_MAX], mine[4];
    kvx_lease_id_t lease;
    kvx_client_h c = NULL;
    uint32_t n = 0;

    if (kvx_client_attach(ft.dsock, NULL, &c) != KVX_OK ||
        kvx_client_recv(c, rid, IT_WAIT_MS, got, FT_N_MAX, &n) != KVX_OK ||
        n != 4 ||
        kvx_client_reserve(c, 2, NULL, 0, mine, NULL, &lease) != KVX_OK ||
        kvx_client_seal(c, lease) != KVX_OK ||
        kvx_client_reserve(c, 2, NULL, 0, mine + 2, NULL, &lease) != KVX_OK ||
        write(fd, "d", 1) != 1) {
        _exit(1);
    }
    it_sleep_ms(3 * IT_WAIT_MS);
}

/* A prefill engine that writes 4 blocks and pushes them as request @p rid,
 * layer 0 only (the push stalls), says 'p' and waits to be killed. */
static void kid_prefill(int fd, uint64_t rid)
{
    kvx_block_ref_t src[4] = {{0, 0}};
    kvx_xfer_params_t xp = it_xfer_params(rid, src, 4, NULL, 30000, LAYERWISE);
    kvx_client_xfer_h x;
    kvx_lease_id_t lease;
    kvx_client_h c = NULL;

    if (kvx_client_attach(ft.psock, NULL, &c) != KVX_OK ||
        kvx_client_reserve(c, 4, NULL, 0, src, NULL, &lease) != KVX_OK) {
        _exit(1);
    }
    for (int i = 0; i < 4; i++) {
        memset(kvx_client_block_addr(c, src[i].block), 0x40 + i, ft.bb);
    }
    if (kvx_client_seal(c, lease) != KVX_OK ||
        kvx_client_push(c, ft.daddr, &xp, &x) != KVX_OK ||
        kvx_client_xfer_layer_ready(x, 1) != KVX_OK || write(fd, "p", 1) != 1) {
        _exit(1);
    }
    it_sleep_ms(3 * IT_WAIT_MS);
}

/* Two engine processes die by SIGKILL holding pins: on the decode daemon
 * blocks collected with recv, sealed blocks and an unsealed reservation;
 * on the prefill daemon the sources of a push in flight (whose reservation
 * on the decode daemon is then aborted and its fence lifted). Both pools
 * come back. */
static void engine_killed(const char *tls)
{
    kvx_block_ref_t src[4];
    char ready = 0;
    int fd_d, fd_p;

    ft_pair_start(tls, NULL, NULL, 0);
    it_write(ft.pc, src, 4, 41, NULL);
    CU_ASSERT_EQUAL(ft_push_wait(ft.daddr, 1, src, 4), KVX_OK);
    ft_release(ft.pc, src, 4);
    fd_d = ft_kid_start(0, kid_decode, 1);
    fd_p = ft_kid_start(1, kid_prefill, 2);
    CU_ASSERT_FATAL(ft_read(fd_d, &ready, 1, IT_READY_MS) && ready == 'd');
    CU_ASSERT_FATAL(ft_read(fd_p, &ready, 1, IT_READY_MS) && ready == 'p');
    /* the kid's unsealed lease and the stalled push's reservation */
    CU_ASSERT_FATAL(ft_wait_leases(ft.dc, 2, 0));
    CU_ASSERT_EQUAL(ft_unheld(ft.dc), ft.dfree0 - 12);
    CU_ASSERT_EQUAL(ft_unheld(ft.pc), ft.pfree0 - 4);
    ft_kid_end(0, 1);
    ft_kid_end(1, 1);
    close(fd_d);
    close(fd_p);
    ft_pair_stop(); /* both pools back at their start */
}

static void test_fault_engine_killed_tcp(void)
{
    engine_killed(IT_TLS_TCP);
}

static void test_fault_engine_killed_shm(void)
{
    engine_killed(IT_TLS_SHM);
}

static const it_test_t tests[] = {
    {"test_fault_prefill_killed_tcp", test_fault_prefill_killed_tcp},
    {"test_fault_prefill_killed_shm", test_fault_prefill_killed_shm},
    {"test_fault_decode_restart_tcp", test_fault_decode_restart_tcp},
    {"test_fault_decode_restart_shm", test_fault_decode_restart_shm},
    {"test_fault_prefill_restart_tcp", test_fault_prefill_restart_tcp},
    {"test_fault_prefill_restart_shm", test_fault_prefill_restart_shm},
    {"test_fault_engine_killed_tcp", test_fault_engine_killed_tcp},
    {"test_fault_engine_killed_shm", test_fault_engine_killed_shm},
};

int main(int argc, char **argv)
{
    return ft_main(argc, argv, "fault", tests, IT_N_TESTS(tests));
}
