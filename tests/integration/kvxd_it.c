/*
 * kvxd processes for the integration tests (see kvxd_it.h).
 */
#include "kvxd_it.h"

#include <CUnit/Basic.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

const char *it_kvxd_path;
char it_tmp_dir[] = "/tmp/kvxd-test-XXXXXX";
kvx_node_h it_node;

static it_proc_t procs[IT_N_PROCS];
static unsigned n_spawned;

uint64_t it_now_ms(void)
{
    return kvx_clock_monotonic_ns(NULL) / 1000000u;
}

void it_sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000,
                          .tv_nsec = (long)(ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

void it_read_file(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "re");
    size_t n = 0;

    if (f != NULL) {
        n = fread(buf, 1, len - 1, f);
        fclose(f);
    }
    buf[n] = '\0';
}

static void dump_stderr(const it_proc_t *p)
{
    char buf[IT_OUT_MAX];

    it_read_file(p->err_path, buf, sizeof(buf));
    if (buf[0] != '\0') {
        fprintf(stderr, "---- kvxd %d stderr ----\n%s", (int)p->pid, buf);
    }
}

/* Waits up to @p ms for @p p to exit; returns its wait status, or -1. */
int it_proc_reap(it_proc_t *p, unsigned ms)
{
    uint64_t end = it_now_ms() + ms;
    int status;

    for (;;) {
        pid_t r = waitpid(p->pid, &status, WNOHANG);

        if (r == p->pid) {
            break;
        }
        if (r < 0 || it_now_ms() >= end) {
            return -1;
        }
        /* Our node answers the daemon's goodbyes while it shuts down. */
        if (it_node != NULL) {
            kvx_node_progress(it_node, 5);
        } else {
            it_sleep_ms(5);
        }
    }
    dump_stderr(p);
    if (p->out_fd >= 0) {
        close(p->out_fd);
    }
    p->pid = 0;
    p->out_fd = -1;
    return status;
}

void it_proc_kill(it_proc_t *p)
{
    if (p->pid > 0) {
        kill(p->pid, SIGKILL);
        if (it_proc_reap(p, IT_STOP_MS) < 0) {
            /* Forget it anyway: never signal a PID that may be reused. */
            fprintf(stderr, "kvxd %d: not reaped\n", (int)p->pid);
            close(p->out_fd);
            p->out_fd = -1;
            p->pid = 0;
        }
    }
}

/* SIGTERM, then the exit code (0..255), or -1 (not within IT_STOP_MS: then it
 * is killed), or -2 (killed by a signal). */
int it_proc_stop(it_proc_t *p)
{
    int status;

    kill(p->pid, SIGTERM);
    /* valgrind's leak check at exit takes seconds */
    status =
        it_proc_reap(p, getenv("KVX_IT_WRAPPER") ? 6 * IT_STOP_MS : IT_STOP_MS);
    if (status < 0) {
        it_proc_kill(p);
        return -1;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -2;
}

/*
 * KVX_IT_WRAPPER: a command that runs every kvxd the tests start, words
 * split on spaces, the first an absolute path (e.g. "/usr/bin/valgrind
 * --error-exitcode=99"). Fills @p argv with at most @p max words; returns
 * how many.
 */
static size_t it_wrapper_argv(char **argv, size_t max)
{
    static char words[512];
    const char *w = getenv("KVX_IT_WRAPPER");
    size_t n = 0;

    if (w == NULL || w[0] != '/') {
        return 0;
    }
    snprintf(words, sizeof(words), "%s", w);
    for (char *s = words, *save = NULL; n < max; s = NULL) {
        char *word = strtok_r(s, " ", &save);

        if (word == NULL) {
            break;
        }
        argv[n++] = word;
    }
    return n;
}

/*
 * Starts kvxd with @p args (NULL-ended) and the test's environment minus
 * KVX_* plus @p env (NULL-ended, may be NULL). stdout is a pipe, stderr a
 * file in it_tmp_dir.
 */
it_proc_t *it_proc_start(const char *const *args, const char *const *env)
{
    char *argv[32], *envp[512];
    size_t na = 0, ne = 0;
    pid_t parent = getpid();
    int out[2], err_fd;
    it_proc_t *p = NULL;

    for (int i = 0; i < IT_N_PROCS; i++) {
        if (procs[i].pid == 0) {
            p = &procs[i];
            break;
        }
    }
    if (p == NULL) {
        return NULL;
    }
    na = it_wrapper_argv(argv, 16);
    argv[na++] = (char *)it_kvxd_path;
    for (size_t i = 0; args[i] != NULL && na < 31; i++) {
        argv[na++] = (char *)args[i];
    }
    argv[na] = NULL;
    for (char **e = environ; *e != NULL && ne < 500; e++) {
        if (strncmp(*e, "KVX_", 4) != 0) {
            envp[ne++] = *e;
        }
    }
    for (; env != NULL && *env != NULL && ne < 510; env++) {
        envp[ne++] = (char *)*env;
    }
    envp[ne] = NULL;
    snprintf(p->err_path, sizeof(p->err_path), "%s/stderr.%u", it_tmp_dir,
             n_spawned++);
    err_fd = open(p->err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (err_fd < 0) {
        return NULL;
    }
    if (pipe2(out, O_CLOEXEC) != 0) {
        close(err_fd);
        return NULL;
    }
    p->pid = fork();
    if (p->pid == 0) {
        /* The daemon never outlives the test. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent || dup2(out[1], 1) < 0 || dup2(err_fd, 2) < 0) {
            _exit(127);
        }
        execve(argv[0], argv, envp);
        _exit(127);
    }
    close(out[1]);
    close(err_fd);
    if (p->pid < 0) {
        p->pid = 0;
        close(out[0]);
        return NULL;
    }
    p->out_fd = out[0];
    p->addr[0] = '\0';
    return p;
}

/* Reads stdout until @p want bytes, EOF or @p ms; returns bytes read. */
static size_t proc_read(it_proc_t *p, char *buf, size_t len, int line,
                        unsigned ms)
{
    uint64_t end = it_now_ms() + ms;
    size_t n = 0;

    while (n + 1 < len) {
        struct pollfd pfd = {.fd = p->out_fd, .events = POLLIN};
        uint64_t now = it_now_ms();
        ssize_t r;

        if (now >= end || poll(&pfd, 1, (int)(end - now)) <= 0) {
            break;
        }
        r = read(p->out_fd, buf + n, line ? 1 : len - 1 - n);
        if (r <= 0) {
            break;
        }
        n += (size_t)r;
        if (line && buf[n - 1] == '\n') {
            break;
        }
    }
    buf[n] = '\0';
    return n;
}

/* Starts kvxd and waits for "kvxd: listening on ADDR". */
it_proc_t *it_daemon_start(const char *const *extra)
{
    static const char prefix[] = "kvxd: listening on ";
    const char *args[26] = {
        "--listen",     "127.0.0.1:0", "--pool_blocks", "64",
        "--num_layers", "4",           "--kv_heads",    "2",
        "--head_dim",   "64",          "--node_id",     "kvxd-it",
        "--log_level",  "info",        "--socket",      ""};
    char line[256];
    size_t na = 16;
    it_proc_t *p;

    for (; extra != NULL && *extra != NULL && na < 25; extra++) {
        args[na++] = *extra;
    }
    args[na] = NULL;
    p = it_proc_start(args, NULL);
    if (p == NULL) {
        return NULL;
    }
    proc_read(p, line, sizeof(line), 1, IT_READY_MS);
    if (strncmp(line, prefix, sizeof(prefix) - 1) != 0) {
        fprintf(stderr, "kvxd: no ready line (got '%s')\n", line);
        it_proc_kill(p);
        return NULL;
    }
    line[strcspn(line, "\r\n")] = '\0';
    snprintf(p->addr, sizeof(p->addr), "%s", line + sizeof(prefix) - 1);
    return p;
}

/* Runs kvxd to completion; returns the exit code (-1: hung, killed). */
int it_run_sync(const char *const *args, const char *const *env, char *out,
                char *err)
{
    it_proc_t *p = it_proc_start(args, env);
    char path[PATH_MAX];
    int status;

    if (p == NULL) {
        return -1;
    }
    proc_read(p, out, IT_OUT_MAX, 0, IT_WAIT_MS);
    snprintf(path, sizeof(path), "%s", p->err_path);
    status = it_proc_reap(p, IT_WAIT_MS);
    if (status < 0) {
        it_proc_kill(p);
        return -1;
    }
    it_read_file(path, err, IT_OUT_MAX);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -2;
}

void it_write_file(const char *path, const char *text, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);

    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_FATAL(write(fd, text, len) == (ssize_t)len);
    CU_ASSERT_FATAL(fchmod(fd, mode) == 0); /* whatever the umask */
    close(fd);
}

void it_proc_kill_all(int reap)
{
    for (int i = 0; i < IT_N_PROCS; i++) {
        if (!reap && procs[i].pid > 0) {
            kill(procs[i].pid, SIGKILL);
        } else if (reap) {
            it_proc_kill(&procs[i]);
        }
    }
}

int it_tmp_create(void)
{
    for (int i = 0; i < IT_N_PROCS; i++) {
        procs[i].out_fd = -1;
    }
    return mkdtemp(it_tmp_dir) != NULL ? 0 : -1;
}

void it_tmp_remove(void)
{
    DIR *dir = opendir(it_tmp_dir);
    struct dirent *e;
    char path[PATH_MAX];

    while (dir != NULL && (e = readdir(dir)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            snprintf(path, sizeof(path), "%s/%s", it_tmp_dir, e->d_name);
            unlink(path);
        }
    }
    if (dir != NULL) {
        closedir(dir);
    }
    rmdir(it_tmp_dir);
}

static void it_on_fatal_signal(int sig)
{
    it_proc_kill_all(0);
    signal(sig, SIG_DFL);
    raise(sig);
}

int it_run(const char *suite_name, const it_test_t *tests, size_t n,
           void (*teardown)(void))
{
    unsigned failures;
    CU_pSuite suite;

    if (it_tmp_create() != 0) {
        perror("mkdtemp");
        return 1;
    }
    signal(SIGTERM, it_on_fatal_signal);
    signal(SIGINT, it_on_fatal_signal);
    signal(SIGPIPE, SIG_IGN);
    if (CU_initialize_registry() != CUE_SUCCESS) {
        it_tmp_remove();
        return 1;
    }
    suite = CU_add_suite_with_setup_and_teardown(suite_name, NULL, NULL, NULL,
                                                 teardown);
    for (size_t i = 0; suite != NULL && i < n; i++) {
        if (CU_add_test(suite, tests[i].name, tests[i].fn) == NULL) {
            suite = NULL;
        }
    }
    if (suite == NULL) {
        fprintf(stderr, "CUnit: %s\n", CU_get_error_msg());
        CU_cleanup_registry();
        it_tmp_remove();
        return 1;
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    failures = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    CU_cleanup_registry();
    teardown();
    it_tmp_remove();
    return failures == 0 ? 0 : 1;
}

static const char *log_tag = "test";

static void it_log(kvx_log_level_t level, const char *msg, void *arg)
{
    (void)arg;
    fprintf(stderr, "[%s %s] %s\n", log_tag, kvx_log_level_string(level), msg);
}

int it_main(int argc, char **argv, const it_main_params_t *mp)
{
    if (argc < 1 + (mp->n_args > 0 ? mp->n_args : 1)) {
        fprintf(stderr, "usage: %s %s\n", argc > 0 ? argv[0] : "test",
                mp->usage != NULL ? mp->usage : "KVXD");
        return 1;
    }
    it_kvxd_path = argv[1];
    if (mp->log_tag != NULL) {
        log_tag = mp->log_tag;
    }
    setenv("UCX_NET_DEVICES", "lo", 1);
    kvx_log_set_cb(it_log, NULL,
                   getenv("KVX_TEST_VERBOSE") ? KVX_LOG_DEBUG : KVX_LOG_WARN);
    if (it_ucx_starts() != KVX_OK) {
        fprintf(stderr, "UCX cannot start: skipping\n");
        return 77;
    }
    return it_run(mp->suite, mp->tests, mp->n_tests, mp->teardown);
}

kvx_layout_params_t it_layout(uint32_t head_dim)
{
    kvx_layout_params_t lp = {
        .field_mask = KVX_LAYOUT_PARAM_FIELD_NUM_LAYERS |
                      KVX_LAYOUT_PARAM_FIELD_BLOCK_TOKENS |
                      KVX_LAYOUT_PARAM_FIELD_KV_HEADS |
                      KVX_LAYOUT_PARAM_FIELD_HEAD_DIM |
                      KVX_LAYOUT_PARAM_FIELD_DTYPE_SIZE |
                      KVX_LAYOUT_PARAM_FIELD_NUM_BLOCKS,
        .num_layers = 4,
        .block_tokens = 16,
        .kv_heads = 2,
        .head_dim = head_dim,
        .dtype_size = 2,
        .num_blocks = IT_N_BLOCKS,
    };

    return lp;
}

kvx_xfer_params_t it_xfer_params(uint64_t rid, const kvx_block_ref_t *src,
                                 uint32_t n, const kvx_block_key_t *keys,
                                 uint32_t deadline_ms, uint32_t flags)
{
    kvx_xfer_params_t xp = {
        .field_mask = KVX_XFER_PARAM_FIELD_REQUEST_ID |
                      KVX_XFER_PARAM_FIELD_BLOCKS | KVX_XFER_PARAM_FIELD_FLAGS,
        .request_id = rid,
        .blocks = src,
        .n_blocks = n,
        .keys = keys,
        .deadline_ms = deadline_ms,
        .flags = flags,
    };

    xp.field_mask |= keys != NULL ? KVX_XFER_PARAM_FIELD_KEYS : 0;
    xp.field_mask |= deadline_ms ? KVX_XFER_PARAM_FIELD_DEADLINE : 0;
    return xp;
}

kvx_status_t it_ucx_starts(void)
{
    kvx_layout_params_t lp = it_layout(64);
    kvx_node_params_t np = {
        .field_mask =
            KVX_NODE_PARAM_FIELD_NODE_ID | KVX_NODE_PARAM_FIELD_LAYOUT,
        .node_id = "it-probe",
        .layout = &lp,
    };
    kvx_node_h node = NULL;
    kvx_status_t st = kvx_node_create(&np, &node);

    kvx_node_destroy(node);
    return st;
}

uint64_t it_pool_settled(kvx_client_h c)
{
    kvx_node_stats_t s;

    if (kvx_client_stats(c, &s) != KVX_OK || s.leases_active != 0 ||
        s.leases_fenced != 0) {
        return 0;
    }
    return s.blocks_free + s.blocks_cached;
}

uint64_t it_pool_wait(kvx_client_h c, uint64_t want, unsigned ms)
{
    uint64_t end = it_now_ms() + ms, n;

    while ((n = it_pool_settled(c)) != want && it_now_ms() < end) {
        it_sleep_ms(10);
    }
    return n;
}

kvx_client_h it_attach(const char *sock)
{
    kvx_client_h c = NULL;

    CU_ASSERT_EQUAL(kvx_client_attach(sock, NULL, &c), KVX_OK);
    return c;
}

static uint32_t pattern(uint32_t seed, uint32_t i, uint64_t j)
{
    return (seed + i) * 2654435761u ^ (uint32_t)j;
}

void it_write(kvx_client_h c, kvx_block_ref_t *refs, uint32_t n, uint32_t seed,
              const kvx_block_key_t *keys)
{
    uint64_t bb = kvx_client_layout(c)->block_bytes;
    uint8_t hit[IT_N_BLOCKS];
    kvx_lease_id_t lease;

    CU_ASSERT_FATAL(n <= IT_N_BLOCKS);
    CU_ASSERT_EQUAL_FATAL(kvx_client_reserve(c, n, keys, 0, refs, hit, &lease),
                          KVX_OK);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t *w = kvx_client_block_addr(c, refs[i].block);

        CU_ASSERT_EQUAL(hit[i], 0);
        for (uint64_t j = 0; j < bb / 4; j++) {
            w[j] = pattern(seed, i, j);
        }
    }
    CU_ASSERT_EQUAL_FATAL(kvx_client_seal(c, lease), KVX_OK);
}

uint32_t it_collect(kvx_client_h c, uint64_t rid, uint32_t n, uint32_t seed)
{
    uint64_t bb = kvx_client_layout(c)->block_bytes;
    kvx_block_ref_t got[IT_N_BLOCKS];
    uint32_t m = 0, bad = 0, rel = 0;

    CU_ASSERT_EQUAL_FATAL(
        kvx_client_recv(c, rid, IT_WAIT_MS, got, IT_N_BLOCKS, &m), KVX_OK);
    CU_ASSERT_EQUAL_FATAL(m, n);
    for (uint32_t i = 0; i < m; i++) {
        const uint32_t *w = kvx_client_block_addr(c, got[i].block);

        for (uint64_t j = 0; j < bb / 4; j++) {
            if (w[j] != pattern(seed, i, j)) {
                bad++;
                break;
            }
        }
    }
    CU_ASSERT_EQUAL(kvx_client_release(c, got, m, &rel), KVX_OK);
    CU_ASSERT_EQUAL(rel, m);
    return bad;
}
