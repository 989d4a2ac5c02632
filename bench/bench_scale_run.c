/*
 * kvx-bench scale, the run: forks the target, then per phase the initiators
 * (started together through a barrier), gathers their reports and the
 * target's memory. Every child is killed by PID and reaped on every path.
 */
#include "bench_scale.h"
#include "bench_util.h"
#include "bench_sweep.h" /* kvxi_sweep_pct */

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define TARGET_START_S 30
#define HELLO_S 90  /* connect (10 s) and a warm-up push (up to 60 s) */
#define REPORT_S 90 /* past the phase: the drain (60 s) and the reports */

typedef struct children {
    pid_t pid[KVXI_SCALE_PROCS_MAX];
    int fd[KVXI_SCALE_PROCS_MAX]; /* our end of each report pipe */
    uint32_t n;
} children_t;

static uint64_t deadline_in(unsigned s)
{
    return kvx_clock_monotonic_ns(NULL) + (uint64_t)s * 1000000000ull;
}

/* One line (without its newline) by DEADLINE: 0 or -1. */
static int read_line(int fd, char *buf, size_t len, uint64_t deadline)
{
    size_t got = 0;

    while (got + 1 < len) {
        if (kvxi_bench_read_all(fd, buf + got, 1, deadline) < 0) {
            return -1;
        }
        if (buf[got] == '\n') {
            break;
        }
        got++;
    }
    buf[got] = '\0';
    return 0;
}

/* Waits up to 2 s for PID to exit, then kills it; always reaps it. */
static void reap(pid_t pid)
{
    for (int i = 0; i < 200; i++) {
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            return;
        }
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

/* In a child just forked from PARENT: dies with it (also when it has
 * died already). */
static void die_with(pid_t parent)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) {
        _exit(1);
    }
}

static void children_kill(children_t *c)
{
    for (uint32_t i = 0; i < c->n; i++) {
        kill(c->pid[i], SIGKILL);
        waitpid(c->pid[i], NULL, 0);
        close(c->fd[i]);
    }
    c->n = 0;
}

/* Forks N initiators of lanes LANE0.. with IN_FLIGHT pushes each; their
 * barrier is GO[0]. TARGET_FD is closed in them. Returns 0 or 1. */
static int children_start(const kvxi_scale_opts_t *o, const char *addr,
                          uint32_t lane0, uint32_t n, uint32_t in_flight,
                          const int go[2], int target_fd, children_t *c)
{
    pid_t me = getpid();

    fflush(stdout);
    fflush(stderr);
    for (c->n = 0; c->n < n; c->n++) {
        int p[2];
        pid_t pid;

        if (pipe(p) != 0) {
            fprintf(stderr, "kvx-bench: pipe: %s\n", strerror(errno));
            return 1;
        }
        if ((pid = fork()) < 0) {
            fprintf(stderr, "kvx-bench: fork: %s\n", strerror(errno));
            close(p[0]), close(p[1]);
            return 1;
        }
        if (pid == 0) {
            die_with(me);
            close(target_fd);
            close(go[1]);
            close(p[0]);
            for (uint32_t i = 0; i < c->n; i++) {
                close(c->fd[i]);
            }
            kvxi_scale_initiator_main(o, addr, lane0 + c->n, in_flight, go[0],
                                      p[1]);
        }
        close(p[1]);
        c->pid[c->n] = pid;
        c->fd[c->n] = p[0];
    }
    return 0;
}

/* Reads child I's report and latencies (appended to *LAT_P, *NLAT_P). */
static int children_report(const kvxi_scale_opts_t *o, children_t *c,
                           uint32_t i, kvxi_scale_phase_t *ph,
                           uint64_t *span_ns, uint64_t **lat_p, size_t *nlat_p)
{
    uint64_t deadline = deadline_in(o->seconds + REPORT_S);
    kvxi_scale_report_t rep;
    uint64_t *lat;

    if (kvxi_bench_read_all(c->fd[i], &rep, sizeof(rep), deadline) < 0 ||
        rep.nlat > KVXI_SCALE_LAT_MAX) {
        fprintf(stderr, "kvx-bench: initiator %u of %u sent no report\n", i + 1,
                c->n);
        return 1;
    }
    lat = realloc(*lat_p, (*nlat_p + rep.nlat + 1) * sizeof(*lat));
    if (lat == NULL) {
        fprintf(stderr, "kvx-bench: out of memory\n");
        return 1;
    }
    *lat_p = lat;
    if (kvxi_bench_read_all(c->fd[i], lat + *nlat_p, rep.nlat * sizeof(*lat),
                            deadline) < 0) {
        fprintf(stderr, "kvx-bench: initiator %u of %u: report cut short\n",
                i + 1, c->n);
        return 1;
    }
    *nlat_p += rep.nlat;
    ph->pushes += rep.pushes;
    ph->bytes += rep.bytes;
    if (rep.failures > 0 && ph->failures == 0) {
        ph->first_failure = (kvx_status_t)rep.first_failure;
    }
    ph->failures += rep.failures;
    ph->hwm_kib[i] = rep.hwm_kib;
    ph->data_path = kvx_transport_string((kvx_transport_t)rep.transport);
    span_ns[0] =
        i == 0 || rep.start_ns < span_ns[0] ? rep.start_ns : span_ns[0];
    span_ns[1] = rep.end_ns > span_ns[1] ? rep.end_ns : span_ns[1];
    return 0;
}

/* One phase: N initiators (lanes LANE0..) with IN_FLIGHT pushes each, all
 * started at once. Returns 0 (failures counted in PH) or 1. */
static int run_phase(const kvxi_scale_opts_t *o, const char *addr,
                     int target_fd, uint32_t lane0, uint32_t n,
                     uint32_t in_flight, kvxi_scale_phase_t *ph)
{
    children_t c = {.n = 0};
    uint64_t span[2] = {0, 0}, *lat = NULL;
    size_t nlat = 0;
    int go[2], rc = 1;

    memset(ph, 0, sizeof(*ph));
    ph->procs = n;
    ph->in_flight = in_flight;
    ph->data_path = "-";
    if (pipe(go) != 0) {
        fprintf(stderr, "kvx-bench: pipe: %s\n", strerror(errno));
        return 1;
    }
    if (children_start(o, addr, lane0, n, in_flight, go, target_fd, &c) != 0) {
        goto out;
    }
    for (uint32_t i = 0; i < n; i++) {
        kvxi_scale_hello_t h;

        if (kvxi_bench_read_all(c.fd[i], &h, sizeof(h), deadline_in(HELLO_S)) <
            0) {
            fprintf(stderr, "kvx-bench: initiator %u of %u did not start\n",
                    i + 1, n);
            goto out;
        }
        if (h.what != 'R') {
            h.why[sizeof(h.why) - 1] = '\0';
            fprintf(stderr, "kvx-bench: initiator %u of %u: %s\n", i + 1, n,
                    h.why);
            goto out;
        }
    }
    if (isatty(STDERR_FILENO)) { /* progress on a terminal */
        fprintf(stderr, "\rscale: %s phase, %u x %u in flight for %lu s ...   ",
                lane0 == 0 ? "single" : "scale", n, in_flight,
                (unsigned long)o->seconds);
    }
    close(go[1]); /* the barrier: every initiator starts now */
    go[1] = -1;
    for (uint32_t i = 0; i < n; i++) {
        if (children_report(o, &c, i, ph, span, &lat, &nlat) != 0) {
            goto out;
        }
    }
    for (uint32_t i = 0; i < n; i++) {
        reap(c.pid[i]);
        close(c.fd[i]);
    }
    c.n = 0;
    ph->seconds = (double)(span[1] - span[0]) / 1e9;
    ph->bps = ph->seconds > 0 ? (double)ph->bytes / ph->seconds : 0;
    if (nlat > 0) {
        ph->lat_p99_ns = kvxi_sweep_pct(lat, nlat, 99);
        ph->lat_p50_ns = kvxi_sweep_pct(lat, nlat, 50);
    }
    rc = 0;
out:
    children_kill(&c); /* before the barrier opens: none starts pushing */
    if (go[1] >= 0) {
        close(go[1]);
    }
    close(go[0]);
    free(lat);
    return rc;
}

/* Forks the target; its address in ADDR. Returns 0, or 1 (reaped). */
static int target_start(const kvxi_scale_opts_t *o, uint32_t num_blocks,
                        pid_t *pid_p, int *fd_p, char *addr, size_t len)
{
    pid_t pid, me = getpid();
    int sv[2];

    fflush(stdout);
    fflush(stderr);
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
        fprintf(stderr, "kvx-bench: socketpair: %s\n", strerror(errno));
        return 1;
    }
    if ((pid = fork()) < 0) {
        fprintf(stderr, "kvx-bench: fork: %s\n", strerror(errno));
        close(sv[0]), close(sv[1]);
        return 1;
    }
    if (pid == 0) {
        die_with(me);
        close(sv[0]);
        kvxi_scale_target_main(o, num_blocks, 1 + o->procs, sv[1]);
    }
    close(sv[1]);
    addr[0] = '\0';
    if (read_line(sv[0], addr, len, deadline_in(TARGET_START_S)) < 0 ||
        addr[0] == '\0' || strncmp(addr, "ERR", 3) == 0) {
        fprintf(stderr, "kvx-bench: the target (%u blocks) did not start%s%s\n",
                num_blocks, addr[0] ? ": " : "", addr);
        close(sv[0]);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return 1;
    }
    *pid_p = pid;
    *fd_p = sv[0];
    return 0;
}

/* Asks the target what it collected. Returns 0 or 1. */
static int target_counts(int fd, kvxi_scale_result_t *r)
{
    unsigned long long c, f, l;
    char line[256];

    if (send(fd, "S", 1, MSG_NOSIGNAL) != 1 ||
        read_line(fd, line, sizeof(line), deadline_in(TARGET_START_S)) < 0 ||
        sscanf(line, "collected %llu failed %llu lost %llu", &c, &f, &l) != 3) {
        fprintf(stderr, "kvx-bench: the target did not answer\n");
        return 1;
    }
    r->collected = c;
    r->rx_failed = f;
    r->lost = l;
    return 0;
}

int kvxi_scale_run(const kvxi_scale_opts_t *o, kvxi_scale_result_t *r)
{
    uint32_t num_blocks = 2 * o->procs * o->per_proc * o->blocks;
    char addr[256];
    pid_t pid;
    int fd, rc;

    memset(r, 0, sizeof(*r));
    r->pool_bytes = (uint64_t)num_blocks * o->chunk;
    if (target_start(o, num_blocks, &pid, &fd, addr, sizeof(addr)) != 0) {
        return 1;
    }
    rc = run_phase(o, addr, fd, 0, 1, 1, &r->single);
    if (rc == 0) {
        r->rss_before_kib = kvxi_scale_proc_kib(pid, "VmRSS");
        rc = run_phase(o, addr, fd, 1, o->procs, o->per_proc, &r->scale);
    }
    if (isatty(STDERR_FILENO)) {
        fprintf(stderr, "\r%64s\r", "");
    }
    if (rc == 0) {
        rc = target_counts(fd, r);
        r->rss_after_kib = kvxi_scale_proc_kib(pid, "VmRSS");
        r->hwm_kib = kvxi_scale_proc_kib(pid, "VmHWM");
    }
    close(fd); /* the target exits on EOF */
    reap(pid);
    return rc;
}
