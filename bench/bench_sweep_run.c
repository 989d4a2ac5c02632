/*
 * kvx-bench sweep, the two nodes: per chunk size a target child (listens on
 * 127.0.0.1:0, collects and releases every request it receives, exits when
 * its socket to us closes) and this process's node, which pushes.
 */
#include "bench_sweep.h"
#include "bench_util.h"

#include <kvx/kvx.h>

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

#define CONNECT_MS 10000
#define PUSH_WAIT_MS 60000

/* The phase times of a push (kvx_xfer_attr_t): returns 1 with ph[] filled
 * (0 would mark a library that does not report them: columns "-"). */
static int xfer_phases(const kvx_xfer_attr_t *a, uint64_t ph[KVXI_PH_N])
{
    ph[KVXI_PH_ALLOC] = a->alloc_ns;
    ph[KVXI_PH_POST] = a->post_ns;
    ph[KVXI_PH_DATA] = a->data_ns;
    ph[KVXI_PH_COMMIT] = a->commit_ns;
    return 1;
}

const char *kvxi_sweep_phase_name(int phase)
{
    static const char *const names[KVXI_PH_N] = {"alloc", "post", "data",
                                                 "commit"};

    return phase >= 0 && phase < KVXI_PH_N ? names[phase] : "?";
}

static void log_cb(kvx_log_level_t level, const char *msg, void *arg)
{
    fprintf(stderr, "kvx-bench%s: [%s] %s\n", (const char *)arg,
            kvx_log_level_string(level), msg);
}

/* One block is one layer's K and V of 16 tokens of one head: 64 bytes of
 * head_dim elements, so head_dim = chunk / 64 gives block_bytes = chunk. */
static kvx_layout_params_t chunk_layout(size_t chunk, uint32_t num_blocks)
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

static kvx_status_t node_create(const kvxi_sweep_opts_t *o,
                                const kvx_layout_params_t *lp, const char *id,
                                const char *listen, kvx_node_h *node_p)
{
    kvx_node_params_t np = {
        .field_mask =
            KVX_NODE_PARAM_FIELD_NODE_ID | KVX_NODE_PARAM_FIELD_LAYOUT |
            KVX_NODE_PARAM_FIELD_UCX_TLS | KVX_NODE_PARAM_FIELD_SECRET,
        .node_id = id,
        .layout = lp,
        .ucx_tls = o->tls,
        .secret = o->secret, /* both ends: an authenticated handshake */
        .secret_len = sizeof(o->secret),
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

/* The target child: never returns. Requests are 1, 2, ... in order (the
 * initiator waits for each push), so collecting needs no registry. */
static void target_main(const kvxi_sweep_opts_t *o,
                        const kvx_layout_params_t *lp, int fd)
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
             : node_create(o, lp, "kvx-bench-target", "127.0.0.1:0", &node);
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

/* Closes our end (the target exits on EOF), then waits up to 2 s before
 * killing it by PID; always reaps it. */
static void target_stop(pid_t pid, int fd)
{
    int i;

    close(fd);
    for (i = 0; i < 200; i++) {
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            return;
        }
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

/* Reads the target's first line (its address, or "ERR why"). */
static int target_addr(int fd, char *buf, size_t len)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    size_t got = 0;

    while (got + 1 < len) {
        ssize_t r;

        if (poll(&pfd, 1, CONNECT_MS) <= 0) {
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

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

static int cmp_ref(const void *a, const void *b)
{
    uint32_t x = ((const kvx_block_ref_t *)a)->block;
    uint32_t y = ((const kvx_block_ref_t *)b)->block;

    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile P of V[0..n) (sorts V). */
static uint64_t pct(uint64_t *v, size_t n, unsigned p)
{
    size_t r = (n * p + 99) / 100;

    qsort(v, n, sizeof(*v), cmp_u64);
    return v[r > 0 ? r - 1 : 0];
}

/* One push of SRC; returns its status, fills *lat_p and ph[]. */
static kvx_status_t push_once(const kvxi_sweep_opts_t *o, kvx_node_h node,
                              kvx_peer_h peer, uint64_t id,
                              const kvx_block_ref_t *src, uint32_t n,
                              uint64_t *lat_p, uint64_t ph[KVXI_PH_N],
                              int *have_ph_p)
{
    kvx_xfer_params_t xp = {
        .field_mask = KVX_XFER_PARAM_FIELD_REQUEST_ID |
                      KVX_XFER_PARAM_FIELD_BLOCKS | KVX_XFER_PARAM_FIELD_FLAGS,
        .request_id = id,
        .blocks = src,
        .n_blocks = n,
        .flags = o->check ? KVX_XFER_FLAG_CHECKSUM : 0u,
    };
    uint64_t t0 = kvx_clock_monotonic_ns(NULL);
    kvx_xfer_attr_t a;
    kvx_xfer_h x;
    kvx_status_t st = kvx_node_push(node, peer, &xp, &x);

    if (st != KVX_OK) {
        return st;
    }
    st = kvx_xfer_wait(x, PUSH_WAIT_MS);
    *lat_p = kvx_clock_monotonic_ns(NULL) - t0;
    kvx_xfer_query(x, &a);
    *have_ph_p = xfer_phases(&a, ph);
    kvx_xfer_release(x);
    return st;
}

/* Source blocks of a row: ids 0..batch-1, or the even ids 0..2(batch-1)
 * in a random order (no two adjacent in the pool, nor in the list). */
static void row_src(const kvx_block_ref_t *pool, const kvxi_sweep_row_t *r,
                    kvx_block_ref_t *src, uint64_t *seed)
{
    for (size_t i = 0; i < r->batch; i++) {
        src[i] = pool[r->scatter ? 2 * i : i];
    }
    for (size_t i = r->batch; r->scatter && i > 1; i--) {
        size_t j;
        kvx_block_ref_t t;

        *seed ^= *seed << 13, *seed ^= *seed >> 7, *seed ^= *seed << 17;
        j = (size_t)(*seed % i);
        t = src[i - 1], src[i - 1] = src[j], src[j] = t;
    }
}

static int run_rows(const kvxi_sweep_opts_t *o, kvx_node_h node,
                    kvx_peer_h peer, const kvx_block_ref_t *pool,
                    kvxi_sweep_row_t *rows, int nrows, uint64_t *lat,
                    uint64_t *ph)
{
    kvx_block_ref_t *src = malloc(KVXI_SWEEP_BATCH_MAX * sizeof(*src));
    uint64_t id = 1, seed = 0x9e3779b97f4a7c15ull, one[KVXI_PH_N];
    char sz[32];
    int r, rc = 0;

    for (r = 0; src != NULL && rc == 0 && r < nrows; r++) {
        kvxi_sweep_row_t *row = &rows[r];
        kvx_status_t st = KVX_OK;
        unsigned long i;

        if (row->skipped) {
            continue;
        }
        if (o->progress) {
            fprintf(stderr, "\rsweep: chunk %s batch %zu %s ...      ",
                    kvxi_bench_size_str(row->chunk, sz, sizeof(sz)), row->batch,
                    row->scatter ? "scatter" : "contig");
        }
        row_src(pool, row, src, &seed);
        row->have_phases = 1;
        for (i = 0; st == KVX_OK && i <= o->iters; i++) { /* 0: warm-up */
            uint64_t t = 0;
            int have = 0;

            st = push_once(o, node, peer, id++, src, (uint32_t)row->batch, &t,
                           one, &have);
            if (i > 0) {
                lat[i - 1] = t;
                row->have_phases &= have;
                for (int p = 0; p < KVXI_PH_N; p++) {
                    ph[p * o->iters + i - 1] = one[p];
                }
            }
        }
        if (st != KVX_OK) {
            fprintf(stderr,
                    "kvx-bench: push of %zu x %s blocks (%s) failed: "
                    "%s\n",
                    row->batch, sz, row->scatter ? "scatter" : "contig",
                    kvx_status_string(st));
            rc = 1;
            break;
        }
        row->data_path = kvx_transport_string(kvx_peer_transport(peer));
        row->lat_p99_ns = pct(lat, o->iters, 99);
        row->lat_p50_ns = pct(lat, o->iters, 50);
        row->bps = (double)(row->batch * row->chunk) * 1e9 /
                   (double)(row->lat_p50_ns ? row->lat_p50_ns : 1);
        for (int p = 0; row->have_phases && p < KVXI_PH_N; p++) {
            row->phase_p50_ns[p] = pct(ph + p * o->iters, o->iters, 50);
        }
    }
    if (src == NULL) {
        fprintf(stderr, "kvx-bench: out of memory\n");
        rc = 1;
    }
    free(src);
    return rc;
}

int kvxi_sweep_run_chunk(const kvxi_sweep_opts_t *o, size_t chunk,
                         kvxi_sweep_row_t *rows, int nrows)
{
    size_t maxb = 0;
    kvx_layout_params_t lp;
    kvx_block_ref_t *pool = NULL;
    uint64_t *lat = NULL, *ph = NULL;
    kvx_lease_id_t lease;
    kvx_node_h node = NULL;
    kvx_peer_h peer;
    kvx_status_t st;
    char addr[256] = "", sz[32];
    int sv[2], rc = 1;
    pid_t pid;

    for (int r = 0; r < nrows; r++) {
        if (!rows[r].skipped && rows[r].batch > maxb) {
            maxb = rows[r].batch;
        }
    }
    if (maxb == 0) {
        return 0;
    }
    kvxi_bench_size_str(chunk, sz, sizeof(sz));
    lp = chunk_layout(chunk, (uint32_t)(2 * maxb));
    fflush(stdout);
    fflush(stderr);
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        fprintf(stderr, "kvx-bench: socketpair: %s\n", strerror(errno));
        return 1;
    }
    pid = fork();
    if (pid < 0) {
        fprintf(stderr, "kvx-bench: fork: %s\n", strerror(errno));
        close(sv[0]), close(sv[1]);
        return 1;
    }
    if (pid == 0) {
        close(sv[0]);
        target_main(o, &lp, sv[1]);
    }
    close(sv[1]);
    if (target_addr(sv[0], addr, sizeof(addr)) < 0) {
        fprintf(stderr,
                "kvx-bench: the target (chunk %s, %u blocks) did not "
                "start%s%s\n",
                sz, lp.num_blocks, addr[0] ? ": " : "", addr);
        goto out;
    }
    kvx_log_set_cb(log_cb, "", KVX_LOG_WARN);
    st = node_create(o, &lp, "kvx-bench", NULL, &node);
    if (st != KVX_OK) {
        fprintf(stderr, "kvx-bench: cannot create the initiator node: %s\n",
                kvx_status_string(st));
        goto out;
    }
    st = kvx_node_connect(node, addr, &peer);
    if (st == KVX_OK) {
        st = kvx_peer_wait(peer, CONNECT_MS);
    }
    if (st != KVX_OK) {
        fprintf(stderr, "kvx-bench: cannot connect to the target at %s: %s\n",
                addr, kvx_status_string(st));
        goto out;
    }
    /* Hold the whole pool READY as the source: block i at pool[i]. */
    pool = malloc(lp.num_blocks * sizeof(*pool));
    lat = malloc(o->iters * sizeof(*lat));
    ph = malloc(KVXI_PH_N * o->iters * sizeof(*ph));
    if (pool == NULL || lat == NULL || ph == NULL) {
        fprintf(stderr, "kvx-bench: out of memory\n");
        goto out;
    }
    st = kvx_alloc_reserve(kvx_node_alloc(node), lp.num_blocks,
                           kvx_clock_monotonic_ns(NULL) + 60000000000ull,
                           &lease, pool);
    if (st == KVX_OK) {
        st = kvx_alloc_lease_commit(kvx_node_alloc(node), lease);
    }
    if (st != KVX_OK) {
        fprintf(stderr, "kvx-bench: cannot hold the source blocks: %s\n",
                kvx_status_string(st));
        goto out;
    }
    qsort(pool, lp.num_blocks, sizeof(*pool), cmp_ref); /* by block id */
    for (uint32_t b = 0; b < lp.num_blocks; b++) {
        memset(kvx_pool_block_addr(kvx_node_pool(node), b), (int)(b * 7 + 1),
               chunk);
    }
    rc = run_rows(o, node, peer, pool, rows, nrows, lat, ph);
out:
    kvx_node_destroy(node);
    target_stop(pid, sv[0]);
    free(pool);
    free(lat);
    free(ph);
    return rc;
}
