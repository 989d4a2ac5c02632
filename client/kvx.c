/*
 * kvx: the command-line tool of libkvx (docs/cli.md).
 *
 *   kvx [--json] [--verbose] status PEER [node options]
 *   kvx [--json] [--verbose] send PEER [workload options] [node options]
 *   kvx [--json] [--verbose] rdma     (this host's RDMA devices, no peer)
 *   kvx [--json] [--verbose] peers|pool [--socket PATH]   (the local kvxd)
 *
 * status and send run an embedded node that connects to PEER (a kvxd or any
 * kvx node) with the model preset's layout, so the handshake's layout check
 * passes exactly when PEER serves that model; status also lists this host's
 * RDMA devices, as rdma does alone. send --via SOCKET writes the workload
 * into a local kvxd's pool and lets that daemon push it (cli_send.c);
 * peers and pool attach to the local kvxd's engine socket (cli_local.c).
 * Exit codes: 0 success, 1 failure, 2 usage.
 */
#include "kvx_cli.h"
#include "cli_local.h"
#include "cli_send.h"

#include <stdarg.h>
#include <unistd.h>

#define CONNECT_TIMEOUT_MS 10000u
#define STATS_TIMEOUT_MS 5000u
#define RDMA_DEVS_MAX 32u
#define RDMA_NUMA_NODE 0 /* the UCX device list is picked for this node */
#define RDMA_NO_DEVICES                                                        \
    "rdma: no RDMA devices (transfers use TCP and shared memory)"

static struct {
    int json, verbose;
    const char *command;
    char detail[768]; /* why the last connection closed, from the log */
} cli;

static void log_cb(kvx_log_level_t level, const char *msg, void *arg)
{
    const char *closed = strstr(msg, " closed: ");

    (void)arg;
    if (closed != NULL) {
        snprintf(cli.detail, sizeof(cli.detail), "%s", closed + 9);
    }
    if (cli.verbose || level <= KVX_LOG_WARN) {
        if (cli.verbose || strstr(msg, "failed their checksum") == NULL) {
            fprintf(stderr, "kvx: [%s] %s\n", kvx_log_level_string(level), msg);
        }
    }
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: kvx [--json] [--verbose] COMMAND [ARGS]\n"
            "       kvx --help | --version\n"
            "\n"
            "commands:\n"
            "  status PEER       connect to PEER and print its counters\n"
            "                    (and this host's RDMA devices)\n"
            "  send PEER         push a synthetic workload to PEER with\n"
            "                    checksums and report dedupe and throughput\n"
            "  rdma              list this host's RDMA devices (no peer)\n"
            "  peers             the local kvxd's peers\n"
            "  pool              the local kvxd's pool: layout and occupancy\n"
            "\n"
            "node options (status, send; must match PEER's model):\n"
            "  --model NAME          llama-8b (default), llama-70b, "
            "qwen3-235b,\n"
            "                        deepseek-v3, tiny\n"
            "  --block-tokens N      tokens per block (default 16)\n"
            "  --transport T         auto (default), rma, am\n"
            "  --tls LIST            UCX transports (as UCX_TLS)\n"
            "  --secret-file FILE    cluster secret (default: none)\n"
            "  --timeout-ms MS       connect and stats timeout (default "
            "10000)\n"
            "\n"
            "send options:\n"
            "  --requests N          requests to push (default 8)\n"
            "  --prompt TOKENS       tokens per request (default 1024)\n"
            "  --shared-prefix TOKENS  tokens all requests share (default "
            "half the prompt)\n"
            "  --layerwise           announce layers one by one\n"
            "  --no-checksum         push without per-block checksums\n"
            "  --deadline-ms MS      per-transfer deadline (default 30000)\n"
            "  --seed STR            key-chain seed (default \"0\")\n"
            "  --via SOCKET          write into the local kvxd attached at\n"
            "                        SOCKET and let it push (its layout "
            "applies)\n"
            "  --check-at SOCKET     collect every request at the receiving\n"
            "                        kvxd's SOCKET and compare its bytes\n"
            "\n"
            "peers, pool options:\n"
            "  --socket PATH         kvxd's engine socket "
            "(default " CLI_SOCKET_DEFAULT ")\n"
            "  --timeout-ms MS       reply timeout (default 10000)\n"
            "\n"
            "exit: 0 ok, 1 failure (connection, transfer, checksum), 2 "
            "usage\n");
}

static int usage_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
    va_list ap;

    fputs("kvx: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\n(kvx --help for usage)\n", stderr);
    return CLI_EXIT_USAGE;
}

/* Is @p word one of the space-separated words of @p list? */
static int in_list(const char *list, const char *word)
{
    size_t len = strlen(word);

    for (const char *p = list; *p != '\0';) {
        size_t n = strcspn(p, " ");

        if (n == len && strncmp(p, word, len) == 0) {
            return 1;
        }
        p += n;
        p += strspn(p, " ");
    }
    return 0;
}

/*
 * The next option of a command line: "--flag VALUE" or "--flag=VALUE" for
 * flags in @p valued (space-separated list), "--flag" otherwise. Returns 1
 * with *flag_p (and *val_p), 0 at the end, -1 on a positional argument or a
 * missing value (message printed).
 */
static int next_opt(int argc, char **argv, int *i, const char *valued,
                    char *flag, size_t flag_len, const char **val_p)
{
    const char *arg, *eq;
    size_t len;

    if (*i >= argc) {
        return 0;
    }
    arg = argv[(*i)++];
    if (strncmp(arg, "--", 2) != 0) {
        usage_error("unexpected argument '%s'", arg);
        return -1;
    }
    eq = strchr(arg, '=');
    len = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
    if (len >= flag_len) {
        usage_error("unknown option '%s'", arg);
        return -1;
    }
    memcpy(flag, arg, len);
    flag[len] = '\0';
    *val_p = NULL;
    if (!in_list(valued, flag)) {
        if (eq != NULL) {
            usage_error("option %s takes no value", flag);
            return -1;
        }
        return 1;
    }
    if (eq != NULL) {
        *val_p = eq + 1;
    } else if (*i < argc) {
        *val_p = argv[(*i)++];
    } else {
        usage_error("option %s needs a value", flag);
        return -1;
    }
    return 1;
}

#define NODE_VALUED "--model --block-tokens --transport --tls --secret-file "

/* Connects @p node to @p addr; prints why not. */
static int connect_peer(kvx_node_h node, const char *addr, uint32_t timeout_ms,
                        kvx_peer_h *peer_p)
{
    kvx_status_t st = kvx_node_connect(node, addr, peer_p);

    if (st == KVX_ERR_INVALID_PARAM) {
        usage_error("bad peer address '%s' (host:port, [v6]:port or "
                    "unix:/path)",
                    addr);
        return CLI_EXIT_USAGE;
    }
    if (st == KVX_OK) {
        st = kvx_peer_wait(*peer_p, timeout_ms);
    }
    if (st == KVX_OK) {
        return CLI_EXIT_OK;
    }
    if (cli.json) { /* still one JSON object on stdout */
        printf("{\"command\":\"%s\",\"peer\":", cli.command);
        cli_json_str(stdout, addr);
        printf(",\"ok\":false,\"error\":");
        cli_json_str(stdout, st == KVX_INPROGRESS ? "connect timeout"
                                                  : kvx_status_string(st));
        printf(",\"detail\":");
        cli_json_str(stdout, cli.detail);
        printf("}\n");
    }
    if (st == KVX_INPROGRESS) {
        fprintf(stderr, "kvx: cannot connect to %s: no answer in %u ms\n", addr,
                timeout_ms);
    } else {
        fprintf(stderr, "kvx: cannot connect to %s: %s%s%s\n", addr,
                kvx_status_string(st), cli.detail[0] ? ": " : "", cli.detail);
        if (st == KVX_ERR_LAYOUT_MISMATCH) {
            fprintf(stderr, "kvx: the peer serves another model shape "
                            "(check --model and --block-tokens)\n");
        }
    }
    return CLI_EXIT_FAIL;
}

/* ---- this host's RDMA devices (status, rdma) ---- */

typedef struct cli_rdma {
    kvx_status_t status; /* of kvx_rdma_discover() */
    size_t n;            /* devices present */
    size_t shown;        /* described in devs[] */
    kvx_rdma_device_t devs[RDMA_DEVS_MAX];
    kvx_status_t pick_status; /* of kvx_rdma_pick_ucx_devices() */
    char ucx[RDMA_DEVS_MAX * KVX_RDMA_PORTS_MAX * KVX_RDMA_UCX_NAME_MAX];
} cli_rdma_t;

/* Discovers the devices; NULL when out of memory (message printed). */
static cli_rdma_t *rdma_load(void)
{
    cli_rdma_t *r = calloc(1, sizeof(*r));

    if (r == NULL) {
        fprintf(stderr, "kvx: rdma: out of memory\n");
        return NULL;
    }
    r->status = kvx_rdma_discover(r->devs, RDMA_DEVS_MAX, &r->n);
    if (r->status != KVX_OK) {
        r->n = 0;
        return r;
    }
    r->shown = r->n < RDMA_DEVS_MAX ? r->n : RDMA_DEVS_MAX;
    r->pick_status = kvx_rdma_pick_ucx_devices(
        r->devs, r->shown, RDMA_NUMA_NODE, r->ucx, sizeof(r->ucx));
    return r;
}

static int rdma_port_known(const kvx_rdma_port_t *p)
{
    return (p->field_mask & KVX_RDMA_PORT_FIELD_ATTR) != 0;
}

static void rdma_print_text(const cli_rdma_t *r)
{
    if (r->status != KVX_OK) {
        printf("rdma: discovery failed: %s\n", kvx_status_string(r->status));
        return;
    }
    if (r->n == 0) {
        printf("%s\n", RDMA_NO_DEVICES);
        return;
    }
    printf("rdma: %zu device%s on this host\n", r->n, r->n == 1 ? "" : "s");
    for (size_t i = 0; i < r->shown; i++) {
        const kvx_rdma_device_t *d = &r->devs[i];

        printf("  %s", d->name);
        if (d->field_mask & KVX_RDMA_DEVICE_FIELD_NUMA_NODE) {
            printf("  numa %d", d->numa_node);
        } else {
            printf("  numa unknown");
        }
        if (!(d->field_mask & KVX_RDMA_DEVICE_FIELD_PORTS)) {
            printf("  (could not be queried)\n");
            continue;
        }
        printf("  %u port%s\n", d->port_count, d->port_count == 1 ? "" : "s");
        for (uint32_t j = 0; j < d->n_ports; j++) {
            const kvx_rdma_port_t *p = &d->ports[j];

            printf("    %-12s", p->ucx_name);
            if (!rdma_port_known(p)) {
                printf(" (could not be queried)\n");
                continue;
            }
            printf(" %-7s %-10s", kvx_rdma_port_state_string(p->state),
                   kvx_rdma_link_layer_string(p->link_layer));
            if (p->rate.rate_mbps > 0) {
                printf(" %g Gb/s (%s %ux, data %g Gb/s)",
                       p->rate.rate_mbps / 1000.0, p->rate.speed_name,
                       p->rate.lanes, p->rate.data_mbps / 1000.0);
            } else {
                printf(" rate unknown");
            }
            if (p->mtu > 0) {
                printf(", mtu %u", p->mtu);
            }
            printf("\n");
        }
        if (d->port_count > d->n_ports) {
            printf("    (%u more ports not shown)\n",
                   d->port_count - d->n_ports);
        }
    }
    if (r->n > r->shown) {
        printf("  (%zu more not shown)\n", r->n - r->shown);
    }
    if (r->pick_status != KVX_OK) {
        printf("  ucx devices nearest numa %d: (list too long: %s)\n",
               RDMA_NUMA_NODE, kvx_status_string(r->pick_status));
    } else if (r->ucx[0] == '\0') {
        printf("  ucx devices nearest numa %d: none active (UCX uses TCP and "
               "shared memory)\n",
               RDMA_NUMA_NODE);
    } else {
        printf("  ucx devices nearest numa %d: %s\n", RDMA_NUMA_NODE, r->ucx);
    }
}

/* The members "rdma", "rdma_devices_total", "rdma_ucx_devices" (and
 * "rdma_error"), without braces, for the caller's object. */
static void rdma_print_json(const cli_rdma_t *r)
{
    printf("\"rdma\":[");
    for (size_t i = 0; i < r->shown; i++) {
        const kvx_rdma_device_t *d = &r->devs[i];

        printf("%s{\"name\":", i ? "," : "");
        cli_json_str(stdout, d->name);
        if (d->field_mask & KVX_RDMA_DEVICE_FIELD_NUMA_NODE) {
            printf(",\"numa_node\":%d", d->numa_node);
        } else {
            printf(",\"numa_node\":null");
        }
        if (d->field_mask & KVX_RDMA_DEVICE_FIELD_NODE_GUID) {
            printf(",\"node_guid\":\"0x%016llx\"",
                   (unsigned long long)d->node_guid);
        } else {
            printf(",\"node_guid\":null");
        }
        if (!(d->field_mask & KVX_RDMA_DEVICE_FIELD_PORTS)) {
            printf(",\"port_count\":null,\"ports\":null}");
            continue;
        }
        printf(",\"port_count\":%u,\"ports\":[", d->port_count);
        for (uint32_t j = 0; j < d->n_ports; j++) {
            const kvx_rdma_port_t *p = &d->ports[j];

            printf("%s{\"port\":%u,\"ucx_name\":", j ? "," : "", p->port_num);
            cli_json_str(stdout, p->ucx_name);
            if (!rdma_port_known(p)) {
                printf(",\"state\":null}");
                continue;
            }
            printf(",\"state\":\"%s\",\"link_layer\":\"%s\","
                   "\"speed\":\"%s\",\"lanes\":%u,\"rate_gbps\":%g,"
                   "\"rate_mbps\":%u,\"data_mbps\":%u,\"mtu\":%u}",
                   kvx_rdma_port_state_string(p->state),
                   kvx_rdma_link_layer_string(p->link_layer),
                   p->rate.speed_name, p->rate.lanes,
                   p->rate.rate_mbps / 1000.0, p->rate.rate_mbps,
                   p->rate.data_mbps, p->mtu);
        }
        printf("]}");
    }
    printf("],\"rdma_devices_total\":%zu,\"rdma_ucx_devices\":", r->n);
    cli_json_str(stdout, r->pick_status == KVX_OK ? r->ucx : "");
    if (r->status != KVX_OK) {
        printf(",\"rdma_error\":");
        cli_json_str(stdout, kvx_status_string(r->status));
    }
}

static int cmd_rdma(int argc, char **argv)
{
    cli_rdma_t *r;
    int rc;

    if (argc > 0) {
        return usage_error("rdma: unexpected argument '%s'", argv[0]);
    }
    r = rdma_load();
    if (r == NULL) {
        return CLI_EXIT_FAIL;
    }
    if (cli.json) {
        printf("{\"command\":\"rdma\",");
        rdma_print_json(r);
        printf(",\"ok\":%s}\n", r->status == KVX_OK ? "true" : "false");
    } else {
        rdma_print_text(r);
    }
    rc = r->status == KVX_OK ? CLI_EXIT_OK : CLI_EXIT_FAIL;
    free(r);
    return rc;
}

static int cmd_status(int argc, char **argv)
{
    cli_node_opts_t o;
    const char *peer_addr = NULL, *val;
    uint32_t timeout_ms = CONNECT_TIMEOUT_MS;
    char flag[32], err[256], id[64];
    kvx_node_stats_t *s = NULL;
    cli_rdma_t *rdma = NULL;
    kvx_node_h node = NULL;
    kvx_peer_h peer;
    kvx_status_t st;
    int i = 0, r;

    cli_node_opts_init(&o);
    if (argc > 0 && strncmp(argv[0], "--", 2) != 0) {
        peer_addr = argv[i++];
    }
    while ((r = next_opt(argc, argv, &i, NODE_VALUED "--timeout-ms", flag,
                         sizeof(flag), &val)) == 1) {
        int t = cli_node_opt(&o, flag, val, err, sizeof(err));

        if (t < 0) {
            return usage_error("%s", err);
        } else if (t == 1) {
            continue;
        } else if (strcmp(flag, "--timeout-ms") == 0) {
            if (cli_parse_u32(val, 1, 3600000, &timeout_ms) != 0) {
                return usage_error("--timeout-ms: want 1 .. 3600000");
            }
        } else {
            return usage_error("status: unknown option %s", flag);
        }
    }
    if (r < 0) {
        return CLI_EXIT_USAGE;
    }
    if (peer_addr == NULL) {
        return usage_error("status: which PEER? (kvx status HOST:PORT)");
    }
    if (cli_read_secret(&o, err, sizeof(err)) != 0) {
        return usage_error("%s", err);
    }
    snprintf(id, sizeof(id), "kvx-status-%ld", (long)getpid());
    st = cli_node_create(&o, id, NULL, 2, &node);
    if (st != KVX_OK) {
        fprintf(stderr, "kvx: cannot start a node: %s\n",
                kvx_status_string(st));
        return CLI_EXIT_FAIL;
    }
    r = connect_peer(node, peer_addr, timeout_ms, &peer);
    if (r != CLI_EXIT_OK) {
        goto out;
    }
    s = malloc(sizeof(*s));
    st = s != NULL ? kvx_peer_stats(peer, timeout_ms, s) : KVX_ERR_NO_MEMORY;
    if (st != KVX_OK) {
        fprintf(stderr, "kvx: %s: stats: %s\n", peer_addr,
                kvx_status_string(st));
        r = CLI_EXIT_FAIL;
        goto out;
    }
    /* this host's devices: a discovery failure is reported, not fatal */
    rdma = rdma_load();
    if (cli.json) {
        printf("{\"command\":\"status\",\"peer\":");
        cli_json_str(stdout, peer_addr);
        printf(",\"peer_name\":");
        cli_json_str(stdout, kvx_peer_name(peer));
        printf(",\"transport\":\"%s\",\"stats\":",
               kvx_transport_string(kvx_peer_transport(peer)));
        cli_print_stats_json(s);
        if (rdma != NULL) {
            printf(",");
            rdma_print_json(rdma);
        }
        printf("}\n");
    } else {
        printf("peer %s (node %s), data path %s\n", peer_addr,
               kvx_peer_name(peer),
               kvx_transport_string(kvx_peer_transport(peer)));
        cli_print_stats_text(s);
        if (rdma != NULL) {
            rdma_print_text(rdma);
        }
    }
out:
    free(rdma);
    free(s);
    kvx_node_destroy(node);
    return r;
}

static int cmd_send(int argc, char **argv)
{
    cli_send_cfg_t c;
    const char *val;
    char flag[32], err[256];
    int i = 0, r;

    memset(&c, 0, sizeof(c));
    cli_node_opts_init(&c.node);
    c.requests = 8;
    c.prompt = 1024;
    c.shared_prefix = UINT32_MAX; /* default: half the prompt */
    c.deadline_ms = 30000;
    c.timeout_ms = CONNECT_TIMEOUT_MS;
    c.seed = "0";
    c.json = cli.json;
    if (argc > 0 && strncmp(argv[0], "--", 2) != 0) {
        c.peer = argv[i++];
    }
    while ((r = next_opt(argc, argv, &i,
                         NODE_VALUED "--requests --prompt --shared-prefix "
                                     "--deadline-ms --seed --timeout-ms "
                                     "--via --check-at",
                         flag, sizeof(flag), &val)) == 1) {
        int t = cli_node_opt(&c.node, flag, val, err, sizeof(err));

        if (t < 0) {
            return usage_error("%s", err);
        } else if (t == 1) {
            continue;
        } else if (strcmp(flag, "--requests") == 0) {
            if (cli_parse_u32(val, 1, 65536, &c.requests) != 0) {
                return usage_error("--requests: want 1 .. 65536, not '%s'",
                                   val);
            }
        } else if (strcmp(flag, "--prompt") == 0) {
            if (cli_parse_u32(val, 1, 1u << 20, &c.prompt) != 0) {
                return usage_error("--prompt: want 1 .. 1048576 tokens, not "
                                   "'%s'",
                                   val);
            }
        } else if (strcmp(flag, "--shared-prefix") == 0) {
            if (cli_parse_u32(val, 0, 1u << 20, &c.shared_prefix) != 0) {
                return usage_error("--shared-prefix: want 0 .. 1048576 "
                                   "tokens, not '%s'",
                                   val);
            }
        } else if (strcmp(flag, "--deadline-ms") == 0) {
            if (cli_parse_u32(val, 1, 3600000, &c.deadline_ms) != 0) {
                return usage_error("--deadline-ms: want 1 .. 3600000");
            }
        } else if (strcmp(flag, "--timeout-ms") == 0) {
            if (cli_parse_u32(val, 1, 3600000, &c.timeout_ms) != 0) {
                return usage_error("--timeout-ms: want 1 .. 3600000");
            }
        } else if (strcmp(flag, "--seed") == 0) {
            c.seed = val;
        } else if (strcmp(flag, "--via") == 0) {
            c.via = val;
        } else if (strcmp(flag, "--check-at") == 0) {
            c.check_at = val;
        } else if (strcmp(flag, "--layerwise") == 0) {
            c.layerwise = 1;
        } else if (strcmp(flag, "--no-checksum") == 0) {
            c.no_checksum = 1;
        } else {
            return usage_error("send: unknown option %s", flag);
        }
    }
    if (r < 0) {
        return CLI_EXIT_USAGE;
    }
    if (c.peer == NULL) {
        return usage_error("send: which PEER? (kvx send HOST:PORT ...)");
    }
    if (c.shared_prefix == UINT32_MAX) {
        c.shared_prefix = c.prompt / 2;
    } else if (c.shared_prefix > c.prompt) {
        return usage_error("--shared-prefix (%u) is longer than --prompt "
                           "(%u)",
                           c.shared_prefix, c.prompt);
    }
    if (c.via == NULL && c.prompt < c.node.block_tokens) {
        return usage_error("--prompt (%u tokens) is shorter than one block "
                           "(%u tokens): nothing to send",
                           c.prompt, c.node.block_tokens);
    }
    if (cli_read_secret(&c.node, err, sizeof(err)) != 0) {
        return usage_error("%s", err);
    }
    return cli_send_run(&c);
}

/* kvx peers | kvx pool [--socket PATH] [--timeout-ms MS] */
static int cmd_local(int argc, char **argv, int pool)
{
    const char *socket = CLI_SOCKET_DEFAULT, *val;
    uint32_t timeout_ms = CONNECT_TIMEOUT_MS;
    char flag[32];
    int i = 0, r;

    while ((r = next_opt(argc, argv, &i, "--socket --timeout-ms", flag,
                         sizeof(flag), &val)) == 1) {
        if (strcmp(flag, "--socket") == 0) {
            socket = val;
        } else if (strcmp(flag, "--timeout-ms") == 0) {
            if (cli_parse_u32(val, 1, 3600000, &timeout_ms) != 0) {
                return usage_error("--timeout-ms: want 1 .. 3600000");
            }
        } else {
            return usage_error("%s: unknown option %s", cli.command, flag);
        }
    }
    if (r < 0) {
        return CLI_EXIT_USAGE;
    }
    return pool ? cli_pool_run(socket, cli.json, timeout_ms)
                : cli_peers_run(socket, cli.json, timeout_ms);
}

/* For cli_send.c, which shares this file's connection handling. */
int cli_connect(kvx_node_h node, const char *addr, uint32_t timeout_ms,
                kvx_peer_h *peer_p)
{
    return connect_peer(node, addr, timeout_ms, peer_p);
}

int main(int argc, char **argv)
{
    int i = 1;

    for (; i < argc && strncmp(argv[i], "-", 1) == 0; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            cli.json = 1;
        } else if (strcmp(argv[i], "--verbose") == 0 ||
                   strcmp(argv[i], "-v") == 0) {
            cli.verbose = 1;
        } else if (strcmp(argv[i], "--help") == 0 ||
                   strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return CLI_EXIT_OK;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("kvx %s\n", kvx_version());
            return CLI_EXIT_OK;
        } else {
            return usage_error("unknown option '%s'", argv[i]);
        }
    }
    if (i == argc) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    for (int j = i + 1; j < argc; j++) {
        if (strcmp(argv[j], "--help") == 0) {
            usage(stdout);
            return CLI_EXIT_OK;
        }
    }
    kvx_log_set_cb(log_cb, NULL, cli.verbose ? KVX_LOG_DEBUG : KVX_LOG_INFO);
    cli.command = argv[i];
    if (strcmp(argv[i], "status") == 0) {
        return cmd_status(argc - i - 1, argv + i + 1);
    }
    if (strcmp(argv[i], "send") == 0) {
        return cmd_send(argc - i - 1, argv + i + 1);
    }
    if (strcmp(argv[i], "rdma") == 0) {
        return cmd_rdma(argc - i - 1, argv + i + 1);
    }
    if (strcmp(argv[i], "peers") == 0 || strcmp(argv[i], "pool") == 0) {
        return cmd_local(argc - i - 1, argv + i + 1, argv[i][1] == 'o');
    }
    return usage_error("unknown command '%s'", argv[i]);
}
