/*
 * The fault suite's harness (fault_it.h).
 */
#include "fault_it.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

ft_pair_t ft;
pid_t ft_kids[FT_N_KIDS];

it_proc_t *ft_daemon_start(const char *name, const char *sock,
                           const char *listen, const char *const *extra)
{
    const char *args[10] = {"--node_id", name, "--socket", sock};
    size_t n = 4;

    if (listen != NULL) {
        args[n++] = "--listen";
        args[n++] = listen;
    }
    if (ft.static_peer && strcmp(name, "kvxd-prefill") == 0) {
        args[n++] = "--peers";
        args[n++] = ft.daddr;
    }
    for (; extra != NULL && *extra != NULL && n < 9; extra++) {
        args[n++] = *extra;
    }
    args[n] = NULL;
    unlink(sock);
    return it_daemon_start(args);
}

void ft_pair_start(const char *tls, const char *const *pextra,
                   const char *const *dextra, int static_peer)
{
    memset(&ft, 0, sizeof(ft));
    ft.pextra = pextra;
    ft.dextra = dextra;
    ft.static_peer = static_peer;
    setenv("UCX_TLS", tls, 1);
    snprintf(ft.psock, sizeof(ft.psock), "%s/prefill.sock", it_tmp_dir);
    snprintf(ft.dsock, sizeof(ft.dsock), "%s/decode.sock", it_tmp_dir);
    ft.decode = ft_daemon_start("kvxd-decode", ft.dsock, NULL, dextra);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ft.decode);
    snprintf(ft.daddr, sizeof(ft.daddr), "%s", ft.decode->addr);
    ft.prefill = ft_daemon_start("kvxd-prefill", ft.psock, NULL, pextra);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ft.prefill);
    snprintf(ft.paddr, sizeof(ft.paddr), "%s", ft.prefill->addr);
    ft.pc = it_attach(ft.psock);
    ft.dc = it_attach(ft.dsock);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ft.pc);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ft.dc);
    ft.bb = kvx_client_layout(ft.pc)->block_bytes;
    ft.pfree0 = it_pool_settled(ft.pc);
    ft.dfree0 = it_pool_settled(ft.dc);
    CU_ASSERT_FATAL(ft.pfree0 > 0 && ft.dfree0 > 0);
}

void ft_pair_stop(void)
{
    if (ft.pc != NULL) {
        CU_ASSERT_EQUAL(it_pool_wait(ft.pc, ft.pfree0, IT_WAIT_MS), ft.pfree0);
    }
    if (ft.dc != NULL) {
        CU_ASSERT_EQUAL(it_pool_wait(ft.dc, ft.dfree0, IT_WAIT_MS), ft.dfree0);
    }
    kvx_client_detach(ft.pc);
    kvx_client_detach(ft.dc);
    ft.pc = ft.dc = NULL;
    if (ft.prefill != NULL) {
        CU_ASSERT_EQUAL(it_proc_stop(ft.prefill), 0);
    }
    if (ft.decode != NULL) {
        CU_ASSERT_EQUAL(it_proc_stop(ft.decode), 0);
    }
    ft.prefill = ft.decode = NULL;
}

void ft_daemon_kill(it_proc_t **p)
{
    int status;

    kill((*p)->pid, SIGKILL);
    status = it_proc_reap(*p, IT_STOP_MS);
    CU_ASSERT(status >= 0 && WIFSIGNALED(status) &&
              WTERMSIG(status) == SIGKILL);
    *p = NULL;
}

void ft_release(kvx_client_h c, const kvx_block_ref_t *refs, uint32_t n)
{
    uint32_t rel = 0;

    CU_ASSERT_EQUAL(kvx_client_release(c, refs, n, &rel), KVX_OK);
    CU_ASSERT_EQUAL(rel, n);
}

kvx_client_xfer_h ft_push(const char *peer, uint64_t rid,
                          const kvx_block_ref_t *src, uint32_t n,
                          uint32_t deadline_ms, uint32_t flags)
{
    kvx_xfer_params_t xp =
        it_xfer_params(rid, src, n, NULL, deadline_ms, flags);
    kvx_client_xfer_h x = NULL;

    CU_ASSERT_EQUAL_FATAL(kvx_client_push(ft.pc, peer, &xp, &x), KVX_OK);
    return x;
}

kvx_status_t ft_push_wait(const char *peer, uint64_t rid,
                          const kvx_block_ref_t *src, uint32_t n)
{
    kvx_client_xfer_h x = ft_push(peer, rid, src, n, 0, KVX_XFER_FLAG_CHECKSUM);
    kvx_status_t st = kvx_client_xfer_wait(x, IT_WAIT_MS);

    kvx_client_xfer_release(x);
    return st;
}

int ft_wait_leases(kvx_client_h c, uint64_t active, uint64_t fenced)
{
    uint64_t end = it_now_ms() + IT_WAIT_MS;
    kvx_node_stats_t s;

    do {
        if (kvx_client_stats(c, &s) == KVX_OK && s.leases_active == active &&
            s.leases_fenced == fenced) {
            return 1;
        }
        it_sleep_ms(10);
    } while (it_now_ms() < end);
    return 0;
}

uint64_t ft_unheld(kvx_client_h c)
{
    kvx_node_stats_t s;

    CU_ASSERT_EQUAL_FATAL(kvx_client_stats(c, &s), KVX_OK);
    return s.blocks_free + s.blocks_cached;
}

int ft_wait_peer(kvx_client_h c, const char *node_id)
{
    uint64_t end = it_now_ms() + IT_WAIT_MS;
    kvx_client_peer_t peers[8];
    uint32_t n = 0;

    do {
        if (kvx_client_peers(c, peers, 8, &n) != KVX_OK) {
            n = 0;
        }
        for (uint32_t i = 0; i < n && i < 8; i++) {
            if (peers[i].status == KVX_OK &&
                strcmp(peers[i].node_id, node_id) == 0) {
                return 1;
            }
        }
        it_sleep_ms(20);
    } while (it_now_ms() < end);
    return 0;
}

int ft_read(int fd, void *buf, size_t len, unsigned ms)
{
    uint64_t end = it_now_ms() + ms;
    size_t got = 0;

    while (got < len) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        uint64_t now = it_now_ms();
        ssize_t r;

        if (now >= end || poll(&pfd, 1, (int)(end - now)) <= 0 ||
            (r = read(fd, (char *)buf + got, len - got)) <= 0) {
            return 0;
        }
        got += (size_t)r;
    }
    return 1;
}

int ft_kid_start(int slot, void (*fn)(int fd, uint64_t arg), uint64_t arg)
{
    int fds[2];

    CU_ASSERT_FATAL(pipe2(fds, O_CLOEXEC) == 0);
    ft_kids[slot] = fork();
    CU_ASSERT_FATAL(ft_kids[slot] >= 0);
    if (ft_kids[slot] == 0) {
        close(fds[0]);
        fn(fds[1], arg);
        _exit(0); /* no detach: the socket closes with the process */
    }
    close(fds[1]);
    return fds[0];
}

void ft_kid_end(int slot, int kill_it)
{
    int status;

    if (ft_kids[slot] <= 0) {
        return;
    }
    if (kill_it) {
        kill(ft_kids[slot], SIGKILL);
    }
    CU_ASSERT_EQUAL(waitpid(ft_kids[slot], &status, 0), ft_kids[slot]);
    CU_ASSERT(!kill_it || (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL));
    ft_kids[slot] = 0;
}

/* After every test, pass or fail: no engine process, client or daemon
 * survives. */
static void teardown(void)
{
    for (int i = 0; i < FT_N_KIDS; i++) {
        ft_kid_end(i, 1);
    }
    kvx_client_detach(ft.pc);
    kvx_client_detach(ft.dc);
    ft.pc = ft.dc = NULL;
    it_proc_kill_all(1);
}

int ft_main(int argc, char **argv, const char *name, const it_test_t *tests,
            size_t n)
{
    const it_main_params_t mp = {
        .suite = name,
        .tests = tests,
        .n_tests = n,
        .teardown = teardown,
    };

    return it_main(argc, argv, &mp);
}
