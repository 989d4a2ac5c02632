/*
 * Soak: three kvxd on 127.0.0.1 (prefill; decode over UCX tcp; decode over
 * shared memory) and six engine processes attached to them (soak.h) move
 * requests with shared prefixes for a fixed time, while this process
 * samples the daemons' memory and kills an engine every few seconds. Then
 * it checks that every transfer ended, every byte arrived as written,
 * nothing leaked (every pool back to free or cached, no lease, no transfer,
 * no request held) and the daemons' memory stayed bounded.
 *
 *     test_soak KVXD [SECONDS]
 *
 * SECONDS (else KVX_SOAK_SECONDS, else 45) is how long load runs;
 * KVX_TEST_SEED seeds it; KVX_SOAK_RSS_MB bounds each daemon's RSS growth
 * after the warm-up (default 64 MiB, 512 under AddressSanitizer, whose
 * quarantine grows). Exit 0 pass, 1 fail, 77 when UCX cannot start here.
 */
#include "kvxd_it.h"
#include "soak.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define SOAK_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SOAK_ASAN 1
#endif
#endif
#ifndef SOAK_ASAN
#define SOAK_ASAN 0
#endif

#define N_KVXD 3
#define N_SLOTS (SOAK_N_PREFILL + SOAK_N_DECODE)
#define KILL_EVERY_MS 7000u
#define SETTLE_MS (SOAK_HOLD_MS + SOAK_PUBLISH_MS + 30000u)
#define DRAIN_MS (SOAK_DEADLINE_MS + 30000u)

static const char *const names[N_KVXD] = {"soak-prefill", "soak-decode-tcp",
                                          "soak-decode-shm"};
static const char *const tls[N_KVXD] = {"tcp,posix,sysv,cma,self", IT_TLS_TCP,
                                        IT_TLS_SHM};
static const char *const pool_blocks[N_KVXD] = {"2048", "1024", "1024"};

static const char *arg_seconds; /* argv[2] */

static struct {
    it_proc_t *kvxd[N_KVXD];
    char sock[N_KVXD][PATH_MAX];
    soak_ctx_t ctx;
    soak_shared_t *sh;
    pid_t pid[N_SLOTS]; /* live engine of each slot, 0 none */
    int n_inst;
    unsigned kills, crashed, hung;
    uint64_t rss_start[N_KVXD], rss_base[N_KVXD], rss_max[N_KVXD];
    uint64_t rss_end[N_KVXD], hwm[N_KVXD];
} s;

static unsigned env_uint(const char *name, unsigned dflt)
{
    const char *v = getenv(name);
    char *end;
    unsigned long n;

    if (v == NULL || *v == '\0') {
        return dflt;
    }
    n = strtoul(v, &end, 10);
    return *end == '\0' && n > 0 && n < 1000000ul ? (unsigned)n : dflt;
}

/* A field of /proc/PID/status in KiB ("VmRSS:"), 0 if absent. */
static uint64_t proc_kb(pid_t pid, const char *field)
{
    char path[64], buf[4096], *p;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    it_read_file(path, buf, sizeof(buf));
    p = strstr(buf, field);
    return p != NULL ? strtoull(p + strlen(field), NULL, 10) : 0;
}

static uint64_t counter(const kvx_node_stats_t *st, const char *name)
{
    for (uint32_t i = 0; i < st->n_counters; i++) {
        if (strcmp(st->counters[i].name, name) == 0) {
            return st->counters[i].value;
        }
    }
    return 0;
}

static it_proc_t *daemon_start(int i)
{
    char conf[PATH_MAX], text[256];
    const char *args[] = {
        "--node_id",    names[i],   "--socket", s.sock[i], "--pool_blocks",
        pool_blocks[i], "--config", conf,       NULL};
    int len;

    snprintf(s.sock[i], sizeof(s.sock[i]), "%s/%s.sock", it_tmp_dir, names[i]);
    snprintf(conf, sizeof(conf), "%s/%s.conf", it_tmp_dir, names[i]);
    len = snprintf(text, sizeof(text),
                   "lease_ms = 10000\nhold_ms = %u\nucx_tls = \"%s\"\n",
                   SOAK_HOLD_MS, tls[i]);
    it_write_file(conf, text, (size_t)len, 0600);
    return it_daemon_start(args);
}

static void engine_spawn(int slot)
{
    int inst = s.n_inst++;
    pid_t pid;

    CU_ASSERT_FATAL(inst < SOAK_MAX_INST);
    fflush(NULL);
    pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        signal(SIGTERM, SIG_DFL); /* not it_run's: that kills the daemons */
        signal(SIGINT, SIG_DFL);
        if (slot < SOAK_N_PREFILL) {
            soak_prefill_main(&s.ctx, inst);
        }
        soak_decode_main(&s.ctx, inst, slot - SOAK_N_PREFILL);
    }
    CU_ASSERT_FATAL(pid > 0);
    s.pid[slot] = pid;
}

/* Reaps the engine of @p slot if it ended: 1 if it did. */
static int engine_reaped(int slot, int *status)
{
    return s.pid[slot] > 0 &&
                   waitpid(s.pid[slot], status, WNOHANG) == s.pid[slot]
               ? (s.pid[slot] = 0, 1)
               : 0;
}

/* The fault: SIGKILL, reaped, replaced. */
static void engine_kill(int slot)
{
    int status;

    kill(s.pid[slot], SIGKILL);
    waitpid(s.pid[slot], &status, 0);
    s.pid[slot] = 0;
    s.kills++;
    engine_spawn(slot);
}

static void sample_rss(int warm)
{
    for (int i = 0; i < N_KVXD; i++) {
        uint64_t kb = proc_kb(s.kvxd[i]->pid, "VmRSS:");

        if (s.rss_start[i] == 0) {
            s.rss_start[i] = kb;
        }
        if (warm) {
            s.rss_base[i] = kb;
        } else if (kb > s.rss_max[i]) {
            s.rss_max[i] = kb;
        }
    }
}

/* Load for @p secs: samples memory, kills an engine every KILL_EVERY_MS
 * after the warm-up, notices engines that died on their own. */
static void run_load(unsigned secs)
{
    uint64_t t0 = it_now_ms(), end = t0 + secs * 1000ull;
    uint64_t warm = t0 + (secs >= 40 ? 10000u : secs * 250u);
    uint64_t next_kill = warm + KILL_EVERY_MS;
    int status;

    for (int slot = 0; slot < N_SLOTS; slot++) {
        engine_spawn(slot);
    }
    for (uint64_t now = t0; now < end; now = it_now_ms()) {
        it_sleep_ms(250);
        sample_rss(now < warm);
        for (int slot = 0; slot < N_SLOTS; slot++) {
            if (engine_reaped(slot, &status)) {
                fprintf(stderr, "soak: engine of slot %d died (status %d)\n",
                        slot, status);
                s.crashed++;
                engine_spawn(slot);
            }
        }
        if (now >= next_kill && s.n_inst < SOAK_MAX_INST) {
            /* prefill 0, decode 0, prefill 1, prefill 2, decode 1, ... */
            static const int order[N_SLOTS] = {0, 4, 1, 2, 5, 3};

            engine_kill(order[s.kills % N_SLOTS]);
            next_kill = now + KILL_EVERY_MS;
        }
    }
}

/* Lets the engines of slots [from, to) finish what they started. */
static void drain(int from, int to, int phase)
{
    uint64_t end = it_now_ms() + DRAIN_MS;
    int left, status;

    s.sh->phase = phase;
    do {
        left = 0;
        for (int slot = from; slot < to; slot++) {
            if (engine_reaped(slot, &status)) {
                s.crashed += !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
            }
            left += s.pid[slot] > 0;
        }
        it_sleep_ms(20);
    } while (left > 0 && it_now_ms() < end);
    for (int slot = from; slot < to; slot++) {
        if (s.pid[slot] > 0) {
            fprintf(stderr, "soak: engine of slot %d hung\n", slot);
            s.hung++;
            kill(s.pid[slot], SIGKILL);
            waitpid(s.pid[slot], &status, 0);
            s.pid[slot] = 0;
        }
    }
}

/* Waits until daemon @p i holds nothing: every block free or cached, no
 * lease, no transfer, no request kept. @return 1 when settled. */
static int settle(int i, kvx_node_stats_t *st)
{
    uint64_t end = it_now_ms() + SETTLE_MS;
    kvx_client_h c = NULL;
    int ok = 0;

    CU_ASSERT_EQUAL_FATAL(kvx_client_attach(s.sock[i], NULL, &c), KVX_OK);
    do {
        CU_ASSERT_EQUAL_FATAL(kvx_client_stats(c, st), KVX_OK);
        ok = st->blocks_free + st->blocks_cached == st->blocks_total &&
             st->leases_active == 0 && st->leases_fenced == 0 &&
             counter(st, "xfers.sending") == 0 &&
             counter(st, "xfers.receiving") == 0 &&
             counter(st, "xfers.uncollected") == 0;
        if (!ok) {
            it_sleep_ms(200);
        }
    } while (!ok && it_now_ms() < end);
    if (!ok) {
        fprintf(stderr,
                "soak: %s did not settle: %llu free + %llu cached of %llu, "
                "%llu leases, %llu fenced, sending %llu, receiving %llu, "
                "uncollected %llu\n",
                names[i], (unsigned long long)st->blocks_free,
                (unsigned long long)st->blocks_cached,
                (unsigned long long)st->blocks_total,
                (unsigned long long)st->leases_active,
                (unsigned long long)st->leases_fenced,
                (unsigned long long)counter(st, "xfers.sending"),
                (unsigned long long)counter(st, "xfers.receiving"),
                (unsigned long long)counter(st, "xfers.uncollected"));
    }
    kvx_client_detach(c);
    return ok;
}

/* Sum of every engine instance's figures; @p abandoned_p: transfers that
 * engines killed mid-flight left to their daemon to end. */
static void sum_engines(soak_eng_t *t, uint64_t *abandoned_p)
{
    memset(t, 0, sizeof(*t));
    *abandoned_p = 0;
    for (int k = 0; k < s.n_inst; k++) {
        const soak_eng_t *e = &s.sh->eng[k];

#define SOAK_SUM(name) t->name += e->name;
        SOAK_COUNTERS(SOAK_SUM)
#undef SOAK_SUM
        if (e->done) {
            CU_ASSERT_EQUAL(e->started, e->ended);
        } else {
            *abandoned_p += e->started - e->ended;
        }
        if (e->bad > 0) {
            fprintf(stderr, "soak: engine %d: %llu unexpected, last %s\n", k,
                    (unsigned long long)e->bad, kvx_status_string(e->last_bad));
        }
    }
}

#define U(x) ((unsigned long long)(x))

/* One line of figures (docs/reliability.md quotes it). */
static void summary(const soak_eng_t *t, uint64_t abandoned,
                    const kvx_node_stats_t *st, unsigned secs)
{
    uint64_t verified = 0, mismatches = 0, dedupe = 0;

    for (int i = 1; i < N_KVXD; i++) {
        verified += counter(&st[i], "blocks.verified");
        mismatches += counter(&st[i], "checksum.mismatches");
        dedupe += st[i].dedupe_hit_blocks;
    }
    printf("soak summary: %u s, seed %llu; transfers: %llu started, %llu "
           "ended by the engines, %llu by their daemon after %u engine "
           "kills; ",
           secs, U(s.sh->seed), U(t->started), U(t->ended), U(abandoned),
           s.kills);
    printf("%llu ok, %llu aborted, %llu no space, %llu timed out, %llu "
           "pulls (%llu missed the publication, %llu publications "
           "withdrawn); ",
           U(t->ok), U(t->aborted), U(t->nospace), U(t->timeout), U(t->pulls),
           U(t->pull_missed), U(t->unpublished));
    printf("blocks: %llu requested, %llu sent (%.1f MiB), %llu dedupe hits "
           "(decode daemons %llu), %llu reused at reserve, %llu reserve "
           "refusals (pool full); ",
           U(t->blocks), U(t->blocks_sent), (double)t->bytes / 1048576.0,
           U(t->hits_xfer), U(dedupe), U(t->hits_reserve), U(t->reserve_full));
    printf("faults: %llu aborts, %llu layer-wise pushes aborted half-way, "
           "%llu handles released running, %llu requests left uncollected, "
           "%u engines killed; ",
           U(t->aborts), U(t->partial), U(t->releases), U(t->skipped), s.kills);
    printf("collected: %llu requests, %llu blocks compared byte by byte, "
           "%llu blocks verified by checksum, %llu failures reported, %llu "
           "failed requests not found; ",
           U(t->collected), U(t->collect_blocks), U(verified),
           U(t->failed_seen), U(t->gave_up));
    printf("lost: %llu requests, %llu byte errors, %llu checksum "
           "mismatches, %llu corrupt, %llu stuck, %llu unexpected\n",
           U(t->lost), U(t->byte_errors), U(mismatches), U(t->corrupt),
           U(t->stuck), U(t->bad));
}

static void test_soak_run(void)
{
    unsigned secs = env_uint("KVX_SOAK_SECONDS", 45);
    unsigned bound_mb = env_uint("KVX_SOAK_RSS_MB", SOAK_ASAN ? 512 : 64);
    kvx_node_stats_t st[N_KVXD];
    uint64_t abandoned, mismatches = 0;
    soak_eng_t t;
    int fds[2];

    if (arg_seconds != NULL) {
        secs = (unsigned)strtoul(arg_seconds, NULL, 10);
        CU_ASSERT_FATAL(secs > 0);
    }
    s.sh = mmap(NULL, sizeof(*s.sh), PROT_READ | PROT_WRITE,
                MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CU_ASSERT_FATAL(s.sh != MAP_FAILED);
    memset(s.sh, 0, sizeof(*s.sh));
    s.sh->seed =
        strtoull(getenv("KVX_TEST_SEED") ? getenv("KVX_TEST_SEED") : "20250605",
                 NULL, 10);
    printf("soak: %u s, seed %llu\n", secs, U(s.sh->seed));
    for (int i = 0; i < N_KVXD; i++) {
        s.kvxd[i] = daemon_start(i);
        CU_ASSERT_PTR_NOT_NULL_FATAL(s.kvxd[i]);
    }
    s.ctx.sh = s.sh;
    s.ctx.psock = s.sock[0];
    s.ctx.paddr = s.kvxd[0]->addr;
    for (int d = 0; d < SOAK_N_DECODE; d++) {
        s.ctx.dsock[d] = s.sock[1 + d];
        s.ctx.daddr[d] = s.kvxd[1 + d]->addr;
        CU_ASSERT_FATAL(pipe(fds) == 0);
        /* A small pipe keeps decode engines close behind the senders. */
        fcntl(fds[0], F_SETPIPE_SZ, 4096);
        fcntl(fds[0], F_SETFL, O_NONBLOCK);
        s.ctx.pipe_r[d] = fds[0];
        s.ctx.pipe_w[d] = fds[1];
    }

    run_load(secs);
    drain(0, SOAK_N_PREFILL, 1);
    drain(SOAK_N_PREFILL, N_SLOTS, 2);
    sum_engines(&t, &abandoned);

    for (int i = 0; i < N_KVXD; i++) {
        CU_ASSERT(settle(i, &st[i]));
        s.rss_end[i] = proc_kb(s.kvxd[i]->pid, "VmRSS:");
        s.hwm[i] = proc_kb(s.kvxd[i]->pid, "VmHWM:");
        mismatches += counter(&st[i], "checksum.mismatches");
    }
    summary(&t, abandoned, st, secs);
    for (int i = 0; i < N_KVXD; i++) {
        printf("soak: %s RSS MiB: start %.1f, after warm-up %.1f, max %.1f, "
               "end %.1f, peak (VmHWM) %.1f\n",
               names[i], (double)s.rss_start[i] / 1024.0,
               (double)s.rss_base[i] / 1024.0, (double)s.rss_max[i] / 1024.0,
               (double)s.rss_end[i] / 1024.0, (double)s.hwm[i] / 1024.0);
        CU_ASSERT(s.rss_max[i] <= s.rss_base[i] + bound_mb * 1024ull);
    }
    CU_ASSERT(t.started > 0 && t.ok > 0 && t.collected > 0);
    CU_ASSERT_EQUAL(s.crashed, 0);
    CU_ASSERT_EQUAL(s.hung, 0);
    CU_ASSERT_EQUAL(t.bad, 0);
    CU_ASSERT_EQUAL(t.stuck, 0);
    CU_ASSERT_EQUAL(t.lost, 0);
    CU_ASSERT_EQUAL(t.byte_errors, 0);
    CU_ASSERT_EQUAL(t.corrupt, 0);
    CU_ASSERT_EQUAL(mismatches, 0);
    for (int i = 0; i < N_KVXD; i++) {
        CU_ASSERT_EQUAL(it_proc_stop(s.kvxd[i]), 0);
        s.kvxd[i] = NULL;
    }
}

static void teardown(void)
{
    int status;

    for (int slot = 0; slot < N_SLOTS; slot++) {
        if (s.pid[slot] > 0) {
            kill(s.pid[slot], SIGKILL);
            waitpid(s.pid[slot], &status, 0);
            s.pid[slot] = 0;
        }
    }
    it_proc_kill_all(1);
}

static const it_test_t tests[] = {
    {"test_soak_run", test_soak_run},
};

int main(int argc, char **argv)
{
    static const it_main_params_t mp = {
        .suite = "soak",
        .tests = tests,
        .n_tests = IT_N_TESTS(tests),
        .teardown = teardown,
        .usage = "KVXD [SECONDS]",
        .log_tag = "soak",
    };

    arg_seconds = argc > 2 ? argv[2] : NULL;
    unsetenv("UCX_TLS"); /* each daemon's ucx_tls decides */
    return it_main(argc, argv, &mp);
}
