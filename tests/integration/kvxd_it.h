/*
 * Helpers of the kvxd integration tests: kvxd processes started with
 * fork/exec (stdout a pipe, stderr a file in a private temporary folder),
 * stopped by PID and always reaped, the test's own embedded node, engines
 * attached to a kvxd writing and checking a block pattern, and the
 * binaries' main() (it_main()).
 */
#ifndef KVX_TEST_KVXD_IT_H
#define KVX_TEST_KVXD_IT_H

#include <CUnit/CUnit.h>
#include <kvx/kvx.h>

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define IT_TLS_TCP "tcp"
#define IT_TLS_SHM "posix,sysv,cma,self"
#define IT_WAIT_MS 10000u
#define IT_READY_MS 30000u /* UCX start under sanitizers is slow */
#define IT_STOP_MS 5000u
#define IT_N_BLOCKS 64
#define IT_N_PROCS 4
#define IT_OUT_MAX 8192

typedef struct it_proc {
    pid_t pid; /* 0: slot free */
    int out_fd;
    char err_path[PATH_MAX];
    char addr[256]; /* from "kvxd: listening on ADDR" */
} it_proc_t;

extern const char *it_kvxd_path;
extern char it_tmp_dir[];
/* The test's node (or NULL): waits for daemons progress it. */
extern kvx_node_h it_node;

uint64_t it_now_ms(void);
void it_sleep_ms(unsigned ms);

/* Reads at most @p len - 1 bytes of @p path ("" if unreadable). */
void it_read_file(const char *path, char *buf, size_t len);
/* Writes @p path with @p mode (CUnit-fatal on failure). */
void it_write_file(const char *path, const char *text, size_t len, mode_t mode);

/*
 * Starts kvxd with @p args (NULL-ended) in the test's environment without
 * its KVX_* variables, plus @p env (NULL-ended, may be NULL). When the test
 * runs with KVX_IT_WRAPPER set (an absolute path and its arguments, split
 * on spaces, e.g. valgrind), kvxd runs under that command.
 * @return the process, or NULL.
 */
it_proc_t *it_proc_start(const char *const *args, const char *const *env);
/* Waits up to @p ms for @p p to exit (progressing it_node meanwhile);
 * returns its wait status, or -1 (still running). Prints its stderr. */
int it_proc_reap(it_proc_t *p, unsigned ms);
/* SIGKILL and reap (no-op on a free slot). */
void it_proc_kill(it_proc_t *p);
/* SIGTERM; returns the exit code, -1 (not gone within IT_STOP_MS: killed)
 * or -2 (ended by a signal). */
int it_proc_stop(it_proc_t *p);
/* Kills every process still running (async-signal-safe when !reap). */
void it_proc_kill_all(int reap);

/* Starts a kvxd with the test layout on 127.0.0.1:0, no engine socket
 * (plus @p extra arguments, which win) and waits for its ready line. */
it_proc_t *it_daemon_start(const char *const *extra);
/* Runs kvxd to its end: stdout into @p out, stderr into @p err (both
 * IT_OUT_MAX); returns the exit code, -1 if it hung (killed). */
int it_run_sync(const char *const *args, const char *const *env, char *out,
                char *err);

/* The layout it_daemon_start() gives kvxd (4 layers, 16 tokens, 2 kv heads
 * of @p head_dim, bf16, IT_N_BLOCKS blocks). */
kvx_layout_params_t it_layout(uint32_t head_dim);

/* Push parameters: KEYS only with @p keys, DEADLINE only when not 0. */
kvx_xfer_params_t it_xfer_params(uint64_t rid, const kvx_block_ref_t *src,
                                 uint32_t n, const kvx_block_key_t *keys,
                                 uint32_t deadline_ms, uint32_t flags);

/* Whether a node (hence UCX) can start here at all (KVX_OK). */
kvx_status_t it_ucx_starts(void);

/* Free + cached blocks of @p c's node, or 0 while a lease is active or
 * fenced there (or the node does not answer): "settled" accounting. */
uint64_t it_pool_settled(kvx_client_h c);
/* Waits up to @p ms for it_pool_settled(@p c) to be @p want; returns the
 * last value seen. */
uint64_t it_pool_wait(kvx_client_h c, uint64_t want, unsigned ms);

/* Attaches an engine to the kvxd serving @p sock (CUnit-checked; NULL on
 * failure). */
kvx_client_h it_attach(const char *sock);
/* The engine @p c reserves @p n blocks (keyed with @p keys unless NULL;
 * none may be a hit), writes pattern @p seed into them through its pool
 * mapping and seals them (CUnit-fatal on failure). */
void it_write(kvx_client_h c, kvx_block_ref_t *refs, uint32_t n, uint32_t seed,
              const kvx_block_key_t *keys);
/* The engine @p c collects request @p rid (@p n blocks), checks them
 * against pattern @p seed and releases them; returns the blocks that
 * differ. */
uint32_t it_collect(kvx_client_h c, uint64_t rid, uint32_t n, uint32_t seed);

/* One test of a suite for it_run(). */
typedef struct it_test {
    const char *name;
    CU_TestFunc fn;
} it_test_t;

/*
 * Runs @p n tests as the CUnit suite @p suite in a fresh private temporary
 * folder, @p teardown after each test (pass or fail) and once at the end;
 * SIGTERM/SIGINT kill every daemon started before the test dies.
 * @return the process exit code: 0 all passed, 1 otherwise.
 */
int it_run(const char *suite, const it_test_t *tests, size_t n,
           void (*teardown)(void));

/* What an integration binary's main() hands to it_main(). */
typedef struct it_main_params {
    const char *suite; /* the CUnit suite */
    const it_test_t *tests;
    size_t n_tests;
    void (*teardown)(void); /* see it_run() */
    const char *usage;      /* the arguments; NULL: "KVXD" */
    int n_args;             /* how many are required; 0: 1 (KVXD) */
    const char *log_tag;    /* the library's log lines: "[TAG level]";
                             * NULL: "test" */
} it_main_params_t;

#define IT_N_TESTS(tests) (sizeof(tests) / sizeof((tests)[0]))

/*
 * The main() of an integration binary: argv[1] is kvxd (it_kvxd_path);
 * UCX on lo only; the library logs warnings and errors on stderr (debug
 * with KVX_TEST_VERBOSE); then it_run(). UCX_TLS is the caller's to set.
 * @return 1 (usage), 77 (skip: UCX cannot start here), or it_run()'s.
 */
int it_main(int argc, char **argv, const it_main_params_t *mp);

/* Creates and removes the private temporary folder. */
int it_tmp_create(void);
void it_tmp_remove(void);

#endif /* KVX_TEST_KVXD_IT_H */
