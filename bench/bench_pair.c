/*
 * kvx-bench: the target child and the initiator node (bench_pair.h).
 */
#include "bench_pair.h"
#include "bench_util.h"

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

static void log_cb(kvx_log_level_t level, const char *msg, void *arg)
{
    fprintf(stderr, "kvx-bench%s: [%s] %s\n", (const char *)arg,
            kvx_log_level_string(level), msg);
}

/* One block is one layer's K and V of 16 tokens of one head: 64 bytes of
 * head_dim elements, so head_dim = chunk / 64 gives block_bytes = chunk. */
kvx_layout_params_t kvxi_pair_chunk_layout(size_t chunk, uint32_t num_blocks)
{
    kvx_layout_params_t lp = {
        .field_mask = KVX_LAYOUT_PARAM_FIELD_NUM_LAYERS |
                      KVX_LAYOUT_PARAM_FIELD_BLOCK_TOKENS |
                      KVX_LAYOUT_PARAM_FIELD_KV_HEADS |
                      KVX_LAYOUT_PARAM_FIELD_HEAD_DIM |
                      KVX_LAYOUT_PARAM_FIELD_DTYPE_SIZE |
                      KVX_LAYOUT_PARAM_FIELD_NUM_BLOCKS,
        .num_layers = 1,
        .block_tokens = 16,
        .kv_heads = 1,
        .head_dim = (uint32_t)(chunk / 64),
        .dtype_size = 2,
        .num_blocks = num_blocks,
    };

    return lp;
}

kvx_status_t kvxi_pair_node_create(const char *tls, const unsigned char *secret,
                                   const kvx_layout_params_t *lp,
                                   const char *id, const char *listen,
                                   kvx_node_h *node_p)
{
    kvx_node_params_t np = {
        .field_mask =
            KVX_NODE_PARAM_FIELD_NODE_ID | KVX_NODE_PARAM_FIELD_LAYOUT |
            KVX_NODE_PARAM_FIELD_UCX_TLS | KVX_NODE_PARAM_FIELD_SECRET |
            KVX_NODE_PARAM_FIELD_POLL | KVX_NODE_PARAM_FIELD_AM_CHUNK |
            KVX_NODE_PARAM_FIELD_TRANSPORT,
        .transport = (kvx_transport_t)kvxi_bench_tuning.path,
        .poll_us = (uint32_t)kvxi_bench_tuning.poll_us,
        .am_chunk = kvxi_bench_tuning.am_chunk,
        .node_id = id,
        .layout = lp,
        .ucx_tls = tls,
        .secret = secret, /* both ends: an authenticated handshake */
        .secret_len = 16,
    };
    kvx_status_t st;

    if (listen != NULL) {
        np.field_mask |= KVX_NODE_PARAM_FIELD_LISTEN;
        np.listen = listen;
    }
    st = kvx_node_create(&np, node_p);
    if (st == KVX_OK) {
        /* committed pages now, not page faults inside the timed pushes */
        kvx_pool_populate(kvx_node_pool(*node_p));
    }
    return st;
}

const char *kvxi_pair_remote;
const char *kvxi_pair_listen = "127.0.0.1:0";

/* The target child: never returns. Requests are collected in id order; a
 * later one that completes first waits, held, until its turn. Released
 * blocks with keys stay CACHED and serve dedupe. */
void kvxi_pair_target_main(const char *tls, const unsigned char *secret,
                           const kvx_layout_params_t *lp,
                           kvxi_pair_setup_cb_t setup, void *arg, int fd)
{
    kvx_block_ref_t *refs = malloc(lp->num_blocks * sizeof(*refs));
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    uint64_t next = 1;
    kvx_node_h node;
    kvx_status_t st;
    char line[256];
    uint32_t n;

    prctl(PR_SET_PDEATHSIG, SIGKILL);
    /* errors only: the initiator leaving at the end is no news */
    kvx_log_set_cb(log_cb, " target", KVX_LOG_ERROR);
    st = refs == NULL
             ? KVX_ERR_NO_MEMORY
             : kvxi_pair_node_create(tls, secret, lp, "kvx-bench-target",
                                     kvxi_pair_listen, &node);
    if (st == KVX_OK && setup != NULL) {
        st = setup(node, arg);
    }
    if (st != KVX_OK) {
        snprintf(line, sizeof(line), "ERR %s\n", kvx_status_string(st));
        (void)!write(fd, line, strlen(line));
        _exit(1);
    }
    snprintf(line, sizeof(line), "%s\n", kvx_node_listen_addr(node));
    (void)!write(fd, line, strlen(line));
    for (;;) {
        kvx_node_progress(node, 100);
        for (;;) {
            st = kvx_node_recv(node, next, 0, refs, lp->num_blocks, &n);
            if (st == KVX_INPROGRESS || st == KVX_ERR_NOT_FOUND) {
                break;
            }
            for (uint32_t i = 0; st == KVX_OK && i < n; i++) {
                kvx_alloc_unpin(kvx_node_alloc(node), refs[i]);
            }
            next++; /* collected, or its failure reported */
        }
        if (poll(&pfd, 1, 0) != 0) { /* EOF (or data): the initiator ends */
            break;
        }
    }
    kvx_node_destroy(node);
    _exit(0);
}

/* Reads the target's first line (its address, or "ERR why"). */
static int target_addr(int fd, char *buf, size_t len)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    size_t got = 0;

    while (got + 1 < len) {
        ssize_t r;

        if (poll(&pfd, 1, KVXI_PAIR_CONNECT_MS) <= 0) {
            return -1;
        }
        r = read(fd, buf + got, 1);
        if (r <= 0) {
            return -1;
        }
        if (buf[got] == '\n') {
            break;
        }
        got++;
    }
    buf[got] = '\0';
    return strncmp(buf, "ERR", 3) == 0 || got == 0 ? -1 : 0;
}

void kvxi_pair_close(kvxi_pair_t *p)
{
    int i;

    kvx_node_destroy(p->node);
    p->node = NULL;
    if (p->pid <= 0) { /* a remote target ends when its socket closes */
        if (p->fd >= 0) {
            close(p->fd);
        }
        p->fd = -1;
        return;
    }
    close(p->fd); /* the target exits on EOF; killed after 2 s */
    for (i = 0; i < 200; i++) {
        if (waitpid(p->pid, NULL, WNOHANG) == p->pid) {
            p->pid = 0;
            return;
        }
        usleep(10000);
    }
    kill(p->pid, SIGKILL);
    waitpid(p->pid, NULL, 0);
    p->pid = 0;
}

int kvxi_pair_open(const char *tls, const unsigned char *secret,
                   const kvx_layout_params_t *lp, const char *what,
                   kvxi_pair_t *p)
{
    return kvxi_pair_open_setup(tls, secret, lp, what, NULL, NULL, p);
}

int kvxi_pair_open_setup(const char *tls, const unsigned char *secret,
                         const kvx_layout_params_t *lp, const char *what,
                         kvxi_pair_setup_cb_t setup, void *arg, kvxi_pair_t *p)
{
    char addr[256] = "";
    kvx_status_t st;
    int sv[2];

    memset(p, 0, sizeof(*p));
    p->fd = -1;
    fflush(stdout);
    fflush(stderr);
    if (kvxi_pair_remote != NULL) {
        /* callers refuse --target with a setup (bad input) */
        if (setup != NULL ||
            (p->fd = kvxi_pair_remote_open(tls, secret, lp)) < 0) {
            return 1;
        }
    } else {
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
            fprintf(stderr, "kvx-bench: socketpair: %s\n", strerror(errno));
            return 1;
        }
        p->pid = fork();
        if (p->pid < 0) {
            fprintf(stderr, "kvx-bench: fork: %s\n", strerror(errno));
            close(sv[0]), close(sv[1]);
            return 1;
        }
        if (p->pid == 0) {
            close(sv[0]);
            kvxi_pair_target_main(tls, secret, lp, setup, arg, sv[1]);
        }
        close(sv[1]);
        p->fd = sv[0];
    }
    if (target_addr(p->fd, addr, sizeof(addr)) < 0) {
        fprintf(stderr,
                "kvx-bench: the target (%s, %u blocks) did not start%s%s\n",
                what, lp->num_blocks, addr[0] ? ": " : "", addr);
        goto err;
    }
    kvx_log_set_cb(log_cb, "", KVX_LOG_WARN);
    st = kvxi_pair_node_create(tls, secret, lp, "kvx-bench", NULL, &p->node);
    if (st != KVX_OK) {
        fprintf(stderr, "kvx-bench: cannot create the initiator node: %s\n",
                kvx_status_string(st));
        goto err;
    }
    st = kvx_node_connect(p->node, addr, &p->peer);
    if (st == KVX_OK) {
        st = kvx_peer_wait(p->peer, KVXI_PAIR_CONNECT_MS);
    }
    if (st != KVX_OK) {
        fprintf(stderr, "kvx-bench: cannot connect to the target at %s: %s\n",
                addr, kvx_status_string(st));
        goto err;
    }
    return 0;
err:
    kvxi_pair_close(p);
    return 1;
}
