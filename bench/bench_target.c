/*
 * kvx-bench on two hosts. `kvx-bench target --listen HOST:PORT` is an
 * agent: for each initiator that connects (sweep or model with
 * `--target HOST:PORT`) it forks a target node with the layout, UCX_TLS,
 * secret and tuning the initiator asks for, listening on HOST:0; the
 * target writes its address back on that connection and lives until the
 * initiator closes it (bench_pair.c's target child, unchanged).
 *
 * The request, one line:
 *   KVXB1 TLS SECRET(32 hex) LAYERS PARTS TOKENS HEADS HEAD_DIM DTYPE
 *         BLOCKS POLL_US AM_CHUNK PATH
 * The agent serves whoever reaches its port; what it creates is bounded
 * (one bench node per connection, pools of at most 16 GiB, at most
 * TARGETS_MAX at once). Run it on a benchmark network.
 */
#include "bench_pair.h"
#include "bench_util.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define REQ_MAX 512
#define POOL_BYTES_MAX (16ull << 30)
#define TARGETS_MAX 16
#define CONNECT_MS 10000

/* HOST:PORT or [V6]:PORT into its parts; 0 or -1. */
static int split_addr(const char *addr, char *host, size_t hlen, char *port,
                      size_t plen)
{
    const char *colon = strrchr(addr, ':');
    size_t n;

    if (colon == NULL || colon == addr || colon[1] == '\0') {
        return -1;
    }
    n = (size_t)(colon - addr);
    if (addr[0] == '[' && n >= 2 && addr[n - 1] == ']') {
        addr++, n -= 2;
    }
    if (n >= hlen || strlen(colon + 1) >= plen) {
        return -1;
    }
    memcpy(host, addr, n);
    host[n] = '\0';
    snprintf(port, plen, "%s", colon + 1);
    return 0;
}

/* A connected (or listening) TCP socket for ADDR; -1 with errno. */
static int tcp_socket(const char *addr, int listening)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res, *ai;
    char host[256], port[32];
    int fd = -1, one = 1;

    if (split_addr(addr, host, sizeof(host), port, sizeof(port)) < 0) {
        errno = EINVAL;
        return -1;
    }
    hints.ai_flags = listening ? AI_PASSIVE : 0;
    if (getaddrinfo(host, port, &hints, &res) != 0) {
        errno = EHOSTUNREACH;
        return -1;
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            continue;
        }
        if (listening) {
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
            if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
                listen(fd, 8) == 0) {
                break;
            }
        } else if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            break;
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

int kvxi_pair_remote_open(const char *tls, const unsigned char *secret,
                          const kvx_layout_params_t *lp)
{
    const kvxi_bench_tuning_t *t = &kvxi_bench_tuning;
    char req[REQ_MAX], hex[33];
    int fd, n;

    for (int i = 0; i < 16; i++) {
        snprintf(hex + 2 * i, 3, "%02x", secret[i]);
    }
    n = snprintf(
        req, sizeof(req), "KVXB1 %s %s %u %u %u %u %u %u %u %lu %lu %d\n", tls,
        hex, lp->num_layers,
        (lp->field_mask & KVX_LAYOUT_PARAM_FIELD_KV_PARTS) ? lp->kv_parts : 2,
        lp->block_tokens, lp->kv_heads, lp->head_dim, lp->dtype_size,
        lp->num_blocks, t->poll_us, t->am_chunk, t->path);
    fd = tcp_socket(kvxi_pair_remote, 0);
    if (fd < 0) {
        fprintf(stderr, "kvx-bench: cannot reach the target agent at %s: %s\n",
                kvxi_pair_remote, strerror(errno));
        return -1;
    }
    if (kvxi_bench_write_all(fd, req, (size_t)n) != 0) {
        fprintf(stderr, "kvx-bench: target agent %s: %s\n", kvxi_pair_remote,
                strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* Parses a request into the target's parameters; 0 or -1 (WHY set). */
static int parse_request(char *line, char *tls, size_t tls_len,
                         unsigned char secret[16], kvx_layout_params_t *lp,
                         char *why, size_t why_len)
{
    char tok_tls[64], hex[40];
    unsigned v[7];
    unsigned long poll_us, am_chunk;
    int path;
    kvx_layout_t l;

    memset(lp, 0, sizeof(*lp));
    if (sscanf(line, "KVXB1 %63s %39s %u %u %u %u %u %u %u %lu %lu %d", tok_tls,
               hex, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &poll_us,
               &am_chunk, &path) != 12 ||
        strlen(hex) != 32 || strspn(hex, "0123456789abcdef") != 32 ||
        strspn(tok_tls, "abcdefghijklmnopqrstuvwxyz0123456789_,") !=
            strlen(tok_tls) ||
        poll_us > KVX_NODE_POLL_US_MAX || am_chunk < KVX_NODE_AM_CHUNK_MIN ||
        am_chunk > KVX_NODE_AM_CHUNK_MAX || path < KVX_TRANSPORT_AUTO ||
        path > KVX_TRANSPORT_AM) {
        snprintf(why, why_len, "malformed request");
        return -1;
    }
    for (int i = 0; i < 16; i++) {
        unsigned b;

        sscanf(hex + 2 * i, "%2x", &b);
        secret[i] = (unsigned char)b;
    }
    lp->field_mask =
        KVX_LAYOUT_PARAM_FIELD_NUM_LAYERS | KVX_LAYOUT_PARAM_FIELD_KV_PARTS |
        KVX_LAYOUT_PARAM_FIELD_BLOCK_TOKENS | KVX_LAYOUT_PARAM_FIELD_KV_HEADS |
        KVX_LAYOUT_PARAM_FIELD_HEAD_DIM | KVX_LAYOUT_PARAM_FIELD_DTYPE_SIZE |
        KVX_LAYOUT_PARAM_FIELD_NUM_BLOCKS;
    lp->num_layers = v[0], lp->kv_parts = v[1], lp->block_tokens = v[2];
    lp->kv_heads = v[3], lp->head_dim = v[4], lp->dtype_size = v[5];
    lp->num_blocks = v[6];
    if (kvx_layout_init(&l, lp) != KVX_OK || l.region_bytes > POOL_BYTES_MAX) {
        snprintf(why, why_len, "layout refused (or a pool over 16 GiB)");
        return -1;
    }
    snprintf(tls, tls_len, "%s", tok_tls);
    kvxi_bench_tuning.poll_us = poll_us;
    kvxi_bench_tuning.am_chunk = am_chunk;
    kvxi_bench_tuning.path = path;
    return 0;
}

/* One connection, in its own child: never returns. */
static void serve(int fd)
{
    char line[REQ_MAX] = "", tls[64], why[96];
    unsigned char secret[16];
    kvx_layout_params_t lp;
    size_t got = 0;

    /* the request line, bounded in size and time */
    while (got + 1 < sizeof(line)) {
        uint64_t deadline = kvx_clock_monotonic_ns(NULL) + 5000000000ull;

        if (kvxi_bench_read_all(fd, line + got, 1, deadline) != 0) {
            _exit(1);
        }
        if (line[got] == '\n') {
            break;
        }
        got++;
    }
    line[got] = '\0';
    if (parse_request(line, tls, sizeof(tls), secret, &lp, why, sizeof(why)) !=
        0) {
        char err[128];
        int n = snprintf(err, sizeof(err), "ERR %s\n", why);

        (void)kvxi_bench_write_all(fd, err, (size_t)n);
        _exit(1);
    }
    kvxi_pair_target_main(tls, secret, &lp, NULL, NULL, fd);
}

int kvxi_target_main(int argc, char **argv)
{
    static char listen_node[300];
    const char *listen_addr = NULL, *v;
    char host[256], port[32];
    int lfd, missing = 0, running = 0;

    for (int i = 2; i < argc; i++) {
        if ((v = kvxi_bench_opt_arg(argc, argv, &i, "--listen", &missing))) {
            listen_addr = v;
        } else if (missing) {
            return kvxi_bench_bad("%s needs a value", argv[i]);
        } else {
            return kvxi_bench_bad("unknown option '%s' (usage: kvx-bench "
                                  "target --listen HOST:PORT)",
                                  argv[i]);
        }
    }
    if (listen_addr == NULL ||
        split_addr(listen_addr, host, sizeof(host), port, sizeof(port)) < 0) {
        return kvxi_bench_bad("target needs --listen HOST:PORT (%s)",
                              listen_addr ? listen_addr : "missing");
    }
    /* target nodes listen on the agent's host, on a port of their own */
    snprintf(listen_node, sizeof(listen_node),
             strchr(host, ':') ? "[%s]:0" : "%s:0", host);
    kvxi_pair_listen = listen_node;
    if ((lfd = tcp_socket(listen_addr, 1)) < 0) {
        fprintf(stderr, "kvx-bench: target: cannot listen on %s: %s\n",
                listen_addr, strerror(errno));
        return 1;
    }
    printf("kvx-bench target: serving on %s (targets listen on %s)\n",
           listen_addr, listen_node);
    fflush(stdout);
    for (;;) {
        struct pollfd pfd = {.fd = lfd, .events = POLLIN};
        pid_t pid;
        int fd;

        /* targets that ended are reaped at least twice a second */
        while (running > 0 && waitpid(-1, NULL, WNOHANG) > 0) {
            running--;
        }
        if (poll(&pfd, 1, 500) <= 0) {
            continue;
        }
        fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            fprintf(stderr, "kvx-bench: target: accept: %s\n", strerror(errno));
            return 1;
        }
        if (running >= TARGETS_MAX) {
            (void)kvxi_bench_write_all(fd, "ERR busy\n", 9);
            close(fd);
            continue;
        }
        fflush(stdout);
        pid = fork();
        if (pid == 0) {
            close(lfd);
            serve(fd);
        }
        running += pid > 0;
        close(fd);
    }
}
