/*
 * kvx_sink: a test helper for the kvx CLI (not installed). An embedded kvx
 * node that listens, accepts pushes, and consumes every request that
 * arrives at once, as a decode engine would (its blocks stay CACHED in the
 * prefix index, so later requests with the same prefix are hits). It
 * prints "kvx_sink: listening on ADDR" and serves until SIGTERM/SIGINT.
 *
 *   kvx_sink [--listen ADDR] [--blocks N] [--corrupt] [--verbose]
 *            [node options as kvx: --model --block-tokens --transport
 *             --tls --secret-file]
 *
 * It links the internal archive: finding the requests that arrived walks
 * the node's receive list, and --corrupt sets the checksum test hook
 * (a byte flipped before verification, so checksummed pushes fail).
 */
#include "kvx_cli.h"

#include "node_int.h"

#include <signal.h>

static volatile sig_atomic_t stop;
static int verbose;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static void log_cb(kvx_log_level_t level, const char *msg, void *arg)
{
    (void)arg;
    if (verbose || level <= KVX_LOG_WARN) {
        fprintf(stderr, "kvx_sink: [%s] %s\n", kvx_log_level_string(level),
                msg);
    }
}

/* Takes every finished request: unpins what arrived, reports failures. */
static void collect(kvx_node_h node, kvx_block_ref_t *refs, uint32_t max)
{
    uint64_t ids[64];
    uint32_t n_ids = 0, n;

    for (kvxi_rx_t *rx = node->rxs; rx != NULL && n_ids < 64; rx = rx->next) {
        if (!rx->superseded && !rx->reported &&
            (rx->state == KVXI_RX_COMMITTED || rx->state == KVXI_RX_FAILED)) {
            ids[n_ids++] = rx->request_id;
        }
    }
    for (uint32_t i = 0; i < n_ids; i++) {
        kvx_status_t st = kvx_node_recv(node, ids[i], 0, refs, max, &n);

        if (st == KVX_OK) {
            for (uint32_t j = 0; j < n; j++) {
                kvx_alloc_unpin(kvx_node_alloc(node), refs[j]);
            }
            if (verbose) {
                printf("kvx_sink: request %llu: %u blocks\n",
                       (unsigned long long)ids[i], n);
            }
        } else if (st != KVX_INPROGRESS && st != KVX_ERR_NOT_FOUND) {
            printf("kvx_sink: request %llu: %s\n", (unsigned long long)ids[i],
                   kvx_status_string(st));
        }
    }
    fflush(stdout);
}

int main(int argc, char **argv)
{
    const char *listen = "127.0.0.1:0";
    uint32_t blocks = 1024;
    int corrupt = 0;
    cli_node_opts_t o;
    kvx_block_ref_t *refs;
    kvx_node_h node;
    kvx_status_t st;
    char err[256];

    cli_node_opts_init(&o);
    o.model = cli_model_find("tiny");
    for (int i = 1; i < argc; i++) {
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        int t;

        if (strcmp(argv[i], "--corrupt") == 0) {
            corrupt = 1;
            continue;
        }
        if (strcmp(argv[i], "--verbose") == 0) {
            verbose = 1;
            continue;
        }
        if (val == NULL) {
            fprintf(stderr, "kvx_sink: %s needs a value\n", argv[i]);
            return CLI_EXIT_USAGE;
        }
        i++;
        t = cli_node_opt(&o, argv[i - 1], val, err, sizeof(err));
        if (t == 1) {
            continue;
        } else if (t < 0) {
            fprintf(stderr, "kvx_sink: %s\n", err);
            return CLI_EXIT_USAGE;
        } else if (strcmp(argv[i - 1], "--listen") == 0) {
            listen = val;
        } else if (strcmp(argv[i - 1], "--blocks") == 0 &&
                   cli_parse_u32(val, 1, KVX_LAYOUT_DIM_MAX, &blocks) == 0) {
            continue;
        } else {
            fprintf(stderr, "kvx_sink: bad option %s %s\n", argv[i - 1], val);
            return CLI_EXIT_USAGE;
        }
    }
    if (cli_read_secret(&o, err, sizeof(err)) != 0) {
        fprintf(stderr, "kvx_sink: %s\n", err);
        return CLI_EXIT_USAGE;
    }
    kvx_log_set_cb(log_cb, NULL, verbose ? KVX_LOG_DEBUG : KVX_LOG_WARN);
    refs = malloc(blocks * sizeof(*refs));
    if (refs == NULL) {
        return CLI_EXIT_FAIL;
    }
    st = cli_node_create(&o, "kvx-sink", listen, blocks, &node);
    if (st != KVX_OK) {
        fprintf(stderr, "kvx_sink: cannot start: %s\n", kvx_status_string(st));
        free(refs);
        return st == KVX_ERR_NOT_SUPPORTED ? 77 : CLI_EXIT_FAIL;
    }
    kvxi_xfer_test_corrupt(node, corrupt);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    printf("kvx_sink: listening on %s\n", kvx_node_listen_addr(node));
    fflush(stdout);
    while (!stop) {
        kvx_node_progress(node, 100);
        collect(node, refs, blocks);
    }
    kvx_node_destroy(node);
    free(refs);
    return CLI_EXIT_OK;
}
