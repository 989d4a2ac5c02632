/*
 * The harness of the fault suite (test_fault.c, test_fault_lease.c), on
 * top of kvxd_it.h: a prefill and a decode kvxd on 127.0.0.1 with one
 * engine attached to each (kvx/client.h), KV written and checked through
 * the shared pool mappings, bounded waits on the daemons' counters, and
 * engine processes forked by a test (always killed and reaped).
 */
#ifndef KVX_TEST_FAULT_IT_H
#define KVX_TEST_FAULT_IT_H

#include "kvxd_it.h"

#include <sys/types.h>

#define FT_N_MAX IT_N_BLOCKS
#define FT_N_KIDS 2

/* One test's daemons (and their extra arguments, for restarts) and the
 * engines attached to them. */
typedef struct ft_pair {
    it_proc_t *prefill, *decode;
    kvx_client_h pc, dc; /* prefill engine, decode engine */
    const char *const *pextra, *const *dextra;
    int static_peer; /* the prefill daemon has the decode one in "peers" */
    char psock[PATH_MAX], dsock[PATH_MAX], paddr[256], daddr[256];
    uint64_t bb;             /* block bytes */
    uint64_t pfree0, dfree0; /* settled pools at the start */
} ft_pair_t;

extern ft_pair_t ft;
extern pid_t ft_kids[FT_N_KIDS];

/* Starts kvxd "kvxd-prefill" or "kvxd-decode" on @p sock (the prefill one
 * with the decode one as static peer if ft.static_peer); @p listen NULL:
 * any port; @p extra: at most 5 more arguments ("--name=value"). */
it_proc_t *ft_daemon_start(const char *name, const char *sock,
                           const char *listen, const char *const *extra);
/* Starts the decode daemon, then the prefill one, with UCX_TLS @p tls;
 * attaches an engine to each and notes their settled pools (fatal on
 * failure). */
void ft_pair_start(const char *tls, const char *const *pextra,
                   const char *const *dextra, int static_peer);
/* Checks that both pools are back at their start (within IT_WAIT_MS),
 * detaches, and stops the daemons with SIGTERM (exit 0 expected). */
void ft_pair_stop(void);
/* SIGKILLs *@p p, checks that it died of it, and clears *@p p. */
void ft_daemon_kill(it_proc_t **p);

/* Releases @p n holds of @p c (all of them must be held). */
void ft_release(kvx_client_h c, const kvx_block_ref_t *refs, uint32_t n);
/* The prefill engine starts a push (fatal if refused). */
kvx_client_xfer_h ft_push(const char *peer, uint64_t rid,
                          const kvx_block_ref_t *src, uint32_t n,
                          uint32_t deadline_ms, uint32_t flags);
/* A checksummed push to its end: its outcome. */
kvx_status_t ft_push_wait(const char *peer, uint64_t rid,
                          const kvx_block_ref_t *src, uint32_t n);

/* Waits until @p c's node has @p active leases and @p fenced fenced ones;
 * returns 1 if it did within IT_WAIT_MS. */
int ft_wait_leases(kvx_client_h c, uint64_t active, uint64_t fenced);
/* FREE + CACHED blocks of @p c's node now. */
uint64_t ft_unheld(kvx_client_h c);
/* Waits until @p c's node lists @p node_id connected (1) or IT_WAIT_MS. */
int ft_wait_peer(kvx_client_h c, const char *node_id);

/* Reads @p len bytes of @p fd within @p ms; returns 1 if they came. */
int ft_read(int fd, void *buf, size_t len, unsigned ms);
/* Forks engine process @p slot running @p fn(write end of a pipe, @p arg)
 * then _exit(0); returns the read end of the pipe. */
int ft_kid_start(int slot, void (*fn)(int fd, uint64_t arg), uint64_t arg);
/* Reaps engine process @p slot, after SIGKILL if @p kill_it. */
void ft_kid_end(int slot, int kill_it);

/* The binary's main(): it_main() with @p tests as suite @p name and the
 * fault suite's teardown (engine processes, clients, daemons). */
int ft_main(int argc, char **argv, const char *name, const it_test_t *tests,
            size_t n);

#endif /* KVX_TEST_FAULT_IT_H */
