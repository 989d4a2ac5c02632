/*
 * ucx_perftest pairs and memcpy for kvx-bench baseline (bench_baseline.h).
 */
#include "bench_baseline.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* How long a finished client's server may take to exit on its own. */
#define SERVER_GRACE_S 5.0

static const char *const pt_names[KVXI_PT_COUNT + 1] = {
    "ucp_am_bw", "ucp_put_bw", "ucp_am_lat", "ucp_get"};

typedef struct child {
    pid_t pid;
    int done;   /* reaped */
    int status; /* wait status once reaped, -1 if unknown */
} child_t;

const char *kvxi_pt_test_name(kvxi_pt_test_t test)
{
    return pt_names[test];
}

int kvxi_pt_is_latency(kvxi_pt_test_t test)
{
    return test == KVXI_PT_AM_LAT;
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

int kvxi_bench_find_on_path(const char *name, char *buf, size_t len)
{
    const char *dir = getenv("PATH");
    struct stat st;

    while (dir != NULL && *dir != '\0') {
        const char *end = strchr(dir, ':');
        int dlen = end ? (int)(end - dir) : (int)strlen(dir);
        /* an empty PATH entry means the current directory */
        int n = snprintf(buf, len, "%.*s/%s", dlen ? dlen : 1, dlen ? dir : ".",
                         name);

        if (n > 0 && (size_t)n < len && stat(buf, &st) == 0 &&
            S_ISREG(st.st_mode) && access(buf, X_OK) == 0) {
            return 0;
        }
        dir = end ? end + 1 : NULL;
    }
    return -1;
}

/* A TCP port free on 127.0.0.1 now (the kernel's pick), or -1. */
static int free_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t sl = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int port = -1;

    if (fd < 0) {
        return -1;
    }
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &sl) == 0) {
        port = ntohs(sa.sin_port);
    }
    close(fd);
    return port;
}

/* Starts EXE with ARGV, stdout and stderr into OUT_FD, with the UCX
 * environment set in the child only. Returns the PID, or -1. */
static pid_t spawn(const char *exe, char *const argv[], const char *tls,
                   int out_fd)
{
    pid_t pid = fork();
    int nul;

    if (pid != 0) {
        return pid;
    }
    nul = open("/dev/null", O_RDONLY);
    if (nul < 0 || dup2(nul, STDIN_FILENO) < 0 ||
        dup2(out_fd, STDOUT_FILENO) < 0 || dup2(out_fd, STDERR_FILENO) < 0) {
        _exit(127);
    }
    setenv("UCX_TLS", tls, 1);
    setenv("UCX_NET_DEVICES", "lo", 1);
    execv(exe, argv);
    _exit(127);
}

/* Reaps C if it has exited; returns whether it has. */
static int child_poll(child_t *c)
{
    pid_t r;

    if (c->done) {
        return 1;
    }
    r = waitpid(c->pid, &c->status, WNOHANG);
    if (r == c->pid || (r < 0 && errno != EINTR)) {
        if (r < 0) {
            c->status = -1;
        }
        c->done = 1;
    }
    return c->done;
}

/* Kills C by PID (if still running) and reaps it. */
static void child_kill(child_t *c)
{
    if (child_poll(c)) {
        return;
    }
    kill(c->pid, SIGKILL);
    while (waitpid(c->pid, &c->status, 0) < 0 && errno == EINTR) {
    }
    c->done = 1;
}

/* Waits for C until DEADLINE, then kills it. Returns 0, or -1 on timeout. */
static int child_wait(child_t *c, double deadline)
{
    while (!child_poll(c)) {
        if (now_s() >= deadline) {
            child_kill(c);
            return -1;
        }
        sleep_ms(10);
    }
    return 0;
}

/* Reads what the child wrote to FD (from the start) into buf. */
static void read_output(int fd, char *buf, size_t len)
{
    ssize_t n = pread(fd, buf, len - 1, 0);

    buf[n > 0 ? n : 0] = '\0';
}

/* The last non-empty line of OUT, shortened, for a failure message. */
static void last_line(char *out, char *line, size_t len)
{
    char *end = out + strlen(out), *start;

    while (end > out && (end[-1] == '\n' || end[-1] == ' ')) {
        end--;
    }
    *end = '\0';
    start = strrchr(out, '\n');
    snprintf(line, len, "%.120s", start ? start + 1 : out);
}

/* Parses the client's "Final: iters p50 avg overall bw_avg bw_overall ..."
 * line: latency tests give avg usec, bandwidth tests bw_overall in MiB/s. */
static int parse_final(const char *out, kvxi_pt_test_t test, double *value_p)
{
    const char *line = strstr(out, "Final:");
    double iters, p50, avg, overall, bw_avg, bw_overall;

    if (line == NULL ||
        sscanf(line, "Final: %lf %lf %lf %lf %lf %lf", &iters, &p50, &avg,
               &overall, &bw_avg, &bw_overall) != 6) {
        return -1;
    }
    *value_p = kvxi_pt_is_latency(test) ? avg : bw_overall * 1048576.0;
    return 0;
}

void kvxi_pt_run(const char *exe, const char *tls, kvxi_pt_test_t test,
                 size_t size, unsigned iters, unsigned timeout_s,
                 kvxi_pt_result_t *res_p)
{
    char srv_path[] = "/tmp/kvx-bench-srv.XXXXXX";
    char cli_path[] = "/tmp/kvx-bench-cli.XXXXXX";
    char port_s[16], size_s[32], iters_s[16], warm_s[16], line[128];
    static char out[65536];
    char *srv_argv[] = {"ucx_perftest", "-p", port_s, NULL};
    char *cli_argv[] = {"ucx_perftest", "127.0.0.1", "-p",   port_s, "-t",
                        NULL,           "-s",        size_s, "-n",   iters_s,
                        "-w",           warm_s,      NULL};
    double deadline = now_s() + timeout_s;
    int port = free_port(), sfd = -1, cfd = -1;
    child_t srv = {-1, 1, 0}, cli = {-1, 1, 0};

    memset(res_p, 0, sizeof(*res_p));
    cli_argv[5] = (char *)pt_names[test];
    snprintf(port_s, sizeof(port_s), "%d", port);
    snprintf(size_s, sizeof(size_s), "%zu", size);
    snprintf(iters_s, sizeof(iters_s), "%u", iters);
    snprintf(warm_s, sizeof(warm_s), "%u", iters / 10 ? iters / 10 : 1);
    if (port < 0) {
        snprintf(res_p->why, sizeof(res_p->why), "no free port: %s",
                 strerror(errno));
        return;
    }
    sfd = mkstemp(srv_path);
    cfd = mkstemp(cli_path);
    if (sfd >= 0) {
        unlink(srv_path);
    }
    if (cfd >= 0) {
        unlink(cli_path);
    }
    if (sfd < 0 || cfd < 0) {
        snprintf(res_p->why, sizeof(res_p->why), "temporary file: %s",
                 strerror(errno));
        goto out_close;
    }
    srv = (child_t){spawn(exe, srv_argv, tls, sfd), 0, 0};
    if (srv.pid < 0) {
        srv.done = 1;
        snprintf(res_p->why, sizeof(res_p->why), "fork: %s", strerror(errno));
        goto out_close;
    }
    /* The client fails fast with "Connection refused" until the server
     * listens: retry it while the server lives and time is left. */
    for (;;) {
        if (ftruncate(cfd, 0) < 0 || lseek(cfd, 0, SEEK_SET) < 0) {
            snprintf(res_p->why, sizeof(res_p->why), "temporary file: %s",
                     strerror(errno));
            goto out_server;
        }
        cli = (child_t){spawn(exe, cli_argv, tls, cfd), 0, 0};
        if (cli.pid < 0) {
            snprintf(res_p->why, sizeof(res_p->why), "fork: %s",
                     strerror(errno));
            goto out_server;
        }
        if (child_wait(&cli, deadline) < 0) {
            snprintf(res_p->why, sizeof(res_p->why),
                     "%s timed out after %u s (killed)", pt_names[test],
                     timeout_s);
            goto out_server;
        }
        read_output(cfd, out, sizeof(out));
        if (WIFEXITED(cli.status) && WEXITSTATUS(cli.status) == 0) {
            break;
        }
        if (strstr(out, "Connection refused") == NULL || child_poll(&srv) ||
            now_s() + 0.05 >= deadline) {
            last_line(out, line, sizeof(line));
            snprintf(res_p->why, sizeof(res_p->why), "%s failed (%s %d): %s",
                     pt_names[test],
                     WIFSIGNALED(cli.status) ? "signal" : "exit",
                     WIFSIGNALED(cli.status) ? WTERMSIG(cli.status)
                                             : WEXITSTATUS(cli.status),
                     line[0] ? line : "no output");
            goto out_server;
        }
        sleep_ms(50);
    }
    if (parse_final(out, test, &res_p->value) < 0) {
        snprintf(res_p->why, sizeof(res_p->why),
                 "%s: no \"Final:\" result line in its output", pt_names[test]);
        goto out_server;
    }
    res_p->present = 1;
    /* the server exits by itself once its client is done */
    child_wait(&srv, now_s() + SERVER_GRACE_S < deadline
                         ? now_s() + SERVER_GRACE_S
                         : deadline);
out_server:
    child_kill(&srv);
out_close:
    if (cfd >= 0) {
        close(cfd);
    }
    if (sfd >= 0) {
        close(sfd);
    }
}

double kvxi_bench_memcpy_bps(size_t size)
{
    unsigned char *src = malloc(size), *dst = malloc(size);
    /* each timed run copies about 64 MiB, at least one copy */
    size_t reps = ((size_t)64 << 20) / size, i;
    double best = 0.0, t0, dt;
    int run;

    if (src == NULL || dst == NULL) {
        free(src);
        free(dst);
        return -1.0;
    }
    memset(src, 0x5a, size);
    memset(dst, 0, size);
    reps = reps ? reps : 1;
    for (run = 0; run < 5; run++) {
        t0 = now_s();
        for (i = 0; i < reps; i++) {
            memcpy(dst, src, size);
            /* keep every copy: dst is never read otherwise */
            __asm__ __volatile__("" : : "r"(dst) : "memory");
        }
        dt = now_s() - t0;
        if (dt > 0 && (double)size * (double)reps / dt > best) {
            best = (double)size * (double)reps / dt;
        }
    }
    free(src);
    free(dst);
    return best;
}
