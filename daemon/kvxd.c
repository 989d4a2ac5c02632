/*
 * kvxd: the per-node transport daemon. One kvx node (include/kvx/node.h)
 * configured from daemon/config.c's table, listening for peers, connected
 * to the static peers of the configuration, driven until SIGTERM/SIGINT.
 *
 * Exit status: 0 after a signal-initiated shutdown (and for --help,
 * --version, --print-config); 1 when the node cannot run; 2 for a bad
 * command line or configuration.
 */
#include "config.h"

#include <kvx/kvx.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define KVXD_EXIT_OK 0
#define KVXD_EXIT_FAIL 1
#define KVXD_EXIT_CONFIG 2

#define KVXD_SECRET_MAX 1024
#define KVXD_SOCKET_PATH_MAX 107 /* sun_path without its NUL */
#define KVXD_PROGRESS_MS 100
#define KVXD_RETRY_MIN_MS 1000
#define KVXD_RETRY_MAX_MS 8000
/* A peer still down after this many tries is reported again at warn. */
#define KVXD_RETRY_WARN_EVERY 20

extern char **environ;

/* A static peer from the "peers" option: connected, connecting, or waiting
 * for its next try. */
typedef struct kvxd_peer {
    char addr[KVXD_STR_MAX];
    kvx_peer_h peer;      /* NULL while waiting to retry */
    int up;               /* connected (logged once) */
    unsigned failures;    /* consecutive failed tries */
    uint64_t retry_at_ns; /* next try when peer == NULL */
} kvxd_peer_t;

/* What the command line asked for besides table options. */
typedef struct kvxd_args {
    const char *config_path;
    int print_config;
    int help;
    int version;
} kvxd_args_t;

static volatile sig_atomic_t kvxd_stop_signal;
static kvx_log_level_t kvxd_log_level = KVX_LOG_INFO;

static void kvxd_on_signal(int sig)
{
    kvxd_stop_signal = sig;
}

/* "<iso8601 UTC time> kvxd <level>: <msg>" on stderr, one write per line. */
static void kvxd_log_cb(kvx_log_level_t level, const char *msg, void *arg)
{
    char stamp[40] = "";
    struct timespec ts;
    struct tm tm;

    (void)arg;
    if (clock_gettime(CLOCK_REALTIME, &ts) == 0 &&
        gmtime_r(&ts.tv_sec, &tm) != NULL) {
        size_t n = strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);

        snprintf(stamp + n, sizeof(stamp) - n, ".%03ldZ", ts.tv_nsec / 1000000);
    }
    fprintf(stderr, "%s kvxd %s: %s\n", stamp, kvx_log_level_string(level),
            msg);
}

static void kvxd_log(kvx_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void kvxd_log(kvx_log_level_t level, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    if (level > kvxd_log_level) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    kvxd_log_cb(level, msg, NULL);
}

/* Errors before logging is configured: plain "kvxd: ..." on stderr. */
static int kvxd_config_error(const char *what)
{
    fprintf(stderr, "kvxd: %s\n", what);
    return KVXD_EXIT_CONFIG;
}

static const char *kvxd_opt_default(const char *name)
{
    for (const kvxd_opt_t *o = kvxd_opts; o->name != NULL; o++) {
        if (strcmp(o->name, name) == 0) {
            return o->def;
        }
    }
    return "";
}

static void kvxd_usage(FILE *out)
{
    fprintf(out,
            "usage: kvxd [--config PATH] [--name=value | --name value ...]\n"
            "            [--print-config] [--help] [--version]\n"
            "\n"
            "Precedence, lowest first: defaults, config file (--config or\n"
            "KVX_CONFIG), KVX_<NAME> environment, command line.\n"
            "\noptions:\n");
    for (const kvxd_opt_t *o = kvxd_opts; o->name != NULL; o++) {
        fprintf(out, "  --%-14s %s (default \"%s\")\n", o->name, o->doc,
                o->def);
    }
}

/*
 * Walks the command line: table options go to @p cfg (which may be a
 * scratch copy), the others to @p args. Both passes see the same argv, so
 * the first one (into a scratch config) finds --config before the file is
 * read and the second one applies the flags over file and environment.
 */
static kvx_status_t kvxd_parse_args(kvxd_config_t *cfg, int argc, char **argv,
                                    kvxd_args_t *args, char *err,
                                    size_t err_len)
{
    int i = 1;

    memset(args, 0, sizeof(*args));
    while (i < argc) {
        const char *a = argv[i];
        int next = 0;
        kvx_status_t st;

        if (strcmp(a, "--config") == 0) {
            if (i + 1 >= argc) {
                snprintf(err, err_len, "--config needs a path");
                return KVX_ERR_INVALID_PARAM;
            }
            args->config_path = argv[i + 1];
            i += 2;
            continue;
        }
        if (strncmp(a, "--config=", 9) == 0) {
            args->config_path = a + 9;
            i++;
            continue;
        }
        if (strcmp(a, "--print-config") == 0) {
            args->print_config = 1;
            i++;
            continue;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            args->help = 1;
            i++;
            continue;
        }
        if (strcmp(a, "--version") == 0) {
            args->version = 1;
            i++;
            continue;
        }
        st = kvxd_config_args(cfg, argc - i, argv + i, &next, err, err_len);
        if (st != KVX_OK) {
            return st;
        }
        if (next == 0) {
            snprintf(err, err_len, "unknown argument '%s' (see --help)", a);
            return KVX_ERR_NOT_FOUND;
        }
        i += next;
    }
    return KVX_OK;
}

/* defaults -> config file -> environment -> flags. */
static int kvxd_configure(kvxd_config_t *cfg, int argc, char **argv,
                          kvxd_args_t *args)
{
    char err[2 * KVXD_STR_MAX];
    kvxd_config_t scratch;
    const char *path;

    kvxd_config_defaults(&scratch);
    if (kvxd_parse_args(&scratch, argc, argv, args, err, sizeof(err)) !=
        KVX_OK) {
        return kvxd_config_error(err);
    }
    if (args->help || args->version) {
        return KVXD_EXIT_OK;
    }
    kvxd_config_defaults(cfg);
    path = args->config_path != NULL ? args->config_path : getenv("KVX_CONFIG");
    if (path != NULL && path[0] != '\0' &&
        kvxd_config_load(cfg, path, err, sizeof(err)) != KVX_OK) {
        return kvxd_config_error(err);
    }
    if (kvxd_config_env(cfg, environ, err, sizeof(err)) != KVX_OK) {
        return kvxd_config_error(err);
    }
    if (kvxd_parse_args(cfg, argc, argv, args, err, sizeof(err)) != KVX_OK) {
        return kvxd_config_error(err);
    }
    return KVXD_EXIT_OK;
}

/*
 * Reads the cluster secret: a regular file of 1 .. KVXD_SECRET_MAX bytes;
 * trailing newlines are not part of it. Warns when group or others may read
 * it. Returns a kvxd exit code.
 */
static int kvxd_read_secret(const char *path, uint8_t *buf, size_t *len_p)
{
    char msg[2 * KVXD_STR_MAX];
    struct stat sb;
    ssize_t n = 0;
    size_t len = 0;
    int fd;

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        snprintf(msg, sizeof(msg), "secret_file: %s: %s", path,
                 strerror(errno));
        return kvxd_config_error(msg);
    }
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        snprintf(msg, sizeof(msg), "secret_file: %s: not a regular file", path);
        close(fd);
        return kvxd_config_error(msg);
    }
    if ((sb.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
        kvxd_log(KVX_LOG_WARN,
                 "secret_file %s is accessible by group or others (mode "
                 "%03o): chmod 600 it",
                 path, (unsigned)(sb.st_mode & 0777));
    }
    /* Read one byte more than allowed to see an oversized file. */
    while (len <= KVXD_SECRET_MAX) {
        n = read(fd, buf + len, KVXD_SECRET_MAX + 1 - len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        len += (size_t)n;
    }
    close(fd);
    if (n < 0) {
        snprintf(msg, sizeof(msg), "secret_file: %s: %s", path,
                 strerror(errno));
        return kvxd_config_error(msg);
    }
    if (len > KVXD_SECRET_MAX) {
        snprintf(msg, sizeof(msg),
                 "secret_file: %s: larger than %u bytes: refused", path,
                 KVXD_SECRET_MAX);
        return kvxd_config_error(msg);
    }
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r')) {
        len--;
    }
    if (len == 0) {
        snprintf(msg, sizeof(msg), "secret_file: %s: empty", path);
        return kvxd_config_error(msg);
    }
    *len_p = len;
    return KVXD_EXIT_OK;
}

static void kvxd_layout_params(const kvxd_config_t *cfg,
                               kvx_layout_params_t *lp)
{
    memset(lp, 0, sizeof(*lp));
    lp->field_mask =
        KVX_LAYOUT_PARAM_FIELD_NUM_LAYERS | KVX_LAYOUT_PARAM_FIELD_KV_PARTS |
        KVX_LAYOUT_PARAM_FIELD_BLOCK_TOKENS | KVX_LAYOUT_PARAM_FIELD_KV_HEADS |
        KVX_LAYOUT_PARAM_FIELD_HEAD_DIM | KVX_LAYOUT_PARAM_FIELD_DTYPE_SIZE |
        KVX_LAYOUT_PARAM_FIELD_NUM_BLOCKS | KVX_LAYOUT_PARAM_FIELD_ORDER |
        KVX_LAYOUT_PARAM_FIELD_MODEL_ID;
    /* The table bounds every count to 2^30 at most: the casts are exact. */
    lp->num_layers = (uint32_t)cfg->num_layers;
    lp->kv_parts = (uint32_t)cfg->kv_parts;
    lp->block_tokens = (uint32_t)cfg->block_tokens;
    lp->kv_heads = (uint32_t)cfg->kv_heads;
    lp->head_dim = (uint32_t)cfg->head_dim;
    lp->dtype_size = (uint32_t)cfg->dtype_size;
    lp->num_blocks = (uint32_t)cfg->pool_blocks;
    lp->order = KVX_LAYOUT_BLOCK_MAJOR;
    lp->model_id = cfg->model_id;
}

/* Checks what the table cannot: options that only fail together. */
static int kvxd_validate(const kvxd_config_t *cfg)
{
    char msg[2 * KVXD_STR_MAX];
    kvx_layout_params_t lp;
    kvx_layout_t layout;

    if (cfg->node_id[0] == '\0') {
        return kvxd_config_error("node_id: must not be empty");
    }
    kvxd_layout_params(cfg, &lp);
    if (kvx_layout_init(&layout, &lp) != KVX_OK) {
        return kvxd_config_error(
            "pool_blocks, num_layers, kv_parts, block_tokens, kv_heads, "
            "head_dim, dtype_size: the pool would be too large");
    }
    if (layout.block_bytes % 64 != 0) {
        snprintf(msg, sizeof(msg),
                 "num_layers, kv_parts, block_tokens, kv_heads, head_dim, "
                 "dtype_size: a block is %llu bytes, not a multiple of 64",
                 (unsigned long long)layout.block_bytes);
        return kvxd_config_error(msg);
    }
    if (cfg->socket[0] != '\0' &&
        (strlen(cfg->socket) > KVXD_SOCKET_PATH_MAX ||
         (cfg->socket[0] != '/' && strncmp(cfg->socket, "unix:/", 6) != 0))) {
        return kvxd_config_error("socket: must be an absolute path of at most "
                                 "107 bytes (/run/kvxd.sock or "
                                 "unix:/run/kvxd.sock), or empty");
    }
    return KVXD_EXIT_OK;
}

/* Splits "a:1, b:2" into @p peers_p (NULL, 0 when empty). */
static int kvxd_peers_parse(const char *list, kvxd_peer_t **peers_p,
                            size_t *n_p)
{
    kvxd_peer_t *peers;
    size_t n = 0, cap = 1;
    const char *p;

    for (p = list; *p != '\0'; p++) {
        cap += *p == ',';
    }
    peers = calloc(cap, sizeof(*peers));
    if (peers == NULL) {
        return KVXD_EXIT_FAIL;
    }
    for (p = list; *p != '\0';) {
        const char *end = strchr(p, ',');
        size_t len;

        if (end == NULL) {
            end = p + strlen(p);
        }
        while (p < end && (*p == ' ' || *p == '\t')) {
            p++;
        }
        len = (size_t)(end - p);
        while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t')) {
            len--;
        }
        if (len >= KVXD_STR_MAX) {
            fprintf(stderr, "kvxd: peers: an address is longer than %d bytes\n",
                    KVXD_STR_MAX - 1);
            free(peers);
            return KVXD_EXIT_CONFIG;
        }
        if (len > 0) {
            memcpy(peers[n].addr, p, len);
            n++;
        }
        p = *end == ',' ? end + 1 : end;
    }
    *peers_p = peers;
    *n_p = n;
    return KVXD_EXIT_OK;
}

static uint64_t kvxd_retry_delay_ms(unsigned failures)
{
    uint64_t ms = KVXD_RETRY_MIN_MS;

    for (unsigned i = 1; i < failures && ms < KVXD_RETRY_MAX_MS; i++) {
        ms *= 2;
    }
    return ms < KVXD_RETRY_MAX_MS ? ms : KVXD_RETRY_MAX_MS;
}

static void kvxd_peer_failed(kvxd_peer_t *p, kvx_status_t st, uint64_t now)
{
    uint64_t delay = kvxd_retry_delay_ms(++p->failures);
    kvx_log_level_t level = KVX_LOG_DEBUG;

    if (p->up || p->failures == 1 || p->failures % KVXD_RETRY_WARN_EVERY == 0) {
        level = KVX_LOG_WARN;
    }
    kvxd_log(level, "peer %s: %s (try %u); retrying in %llu ms", p->addr,
             kvx_status_string(st), p->failures, (unsigned long long)delay);
    kvx_peer_close(p->peer); /* free the failed handle (NULL: no-op) */
    p->peer = NULL;
    p->up = 0;
    p->retry_at_ns = now + delay * 1000000ull;
}

/* Connects due peers and notices peers that came up or went down. */
static void kvxd_peers_tick(kvx_node_h node, kvxd_peer_t *peers, size_t n)
{
    uint64_t now = kvx_clock_monotonic_ns(NULL);

    for (size_t i = 0; i < n; i++) {
        kvxd_peer_t *p = &peers[i];
        kvx_status_t st;

        if (p->peer == NULL) {
            if (now < p->retry_at_ns) {
                continue;
            }
            st = kvx_node_connect(node, p->addr, &p->peer);
            if (st != KVX_OK) {
                kvxd_peer_failed(p, st, now);
            }
            continue;
        }
        st = kvx_peer_status(p->peer);
        if (st == KVX_OK && !p->up) {
            kvxd_log(KVX_LOG_INFO, "peer %s (%s) connected over %s", p->addr,
                     kvx_peer_name(p->peer),
                     kvx_transport_string(kvx_peer_transport(p->peer)));
            p->up = 1;
            p->failures = 0;
        } else if (st != KVX_OK && st != KVX_INPROGRESS) {
            kvxd_peer_failed(p, st, now);
        }
    }
}

static int kvxd_signals(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = SIG_IGN;
    if (sigaction(SIGPIPE, &sa, NULL) != 0) {
        return -1;
    }
    /* No SA_RESTART. The node's event loop goes back to sleep after an
     * interrupted wait, so shutdown starts within one KVXD_PROGRESS_MS. */
    sa.sa_handler = kvxd_on_signal;
    if (sigaction(SIGTERM, &sa, NULL) != 0 ||
        sigaction(SIGINT, &sa, NULL) != 0) {
        return -1;
    }
    return 0;
}

static kvx_status_t kvxd_node_create(const kvxd_config_t *cfg,
                                     const uint8_t *secret, size_t secret_len,
                                     kvx_node_h *node_p)
{
    kvx_layout_params_t lp;
    kvx_node_params_t np = {
        .field_mask =
            KVX_NODE_PARAM_FIELD_NODE_ID | KVX_NODE_PARAM_FIELD_LAYOUT |
            KVX_NODE_PARAM_FIELD_TRANSPORT | KVX_NODE_PARAM_FIELD_HEARTBEAT |
            KVX_NODE_PARAM_FIELD_LEASE | KVX_NODE_PARAM_FIELD_HOLD |
            KVX_NODE_PARAM_FIELD_HANDSHAKE | KVX_NODE_PARAM_FIELD_ENGINE_ALLOW |
            KVX_NODE_PARAM_FIELD_POLL | KVX_NODE_PARAM_FIELD_AM_CHUNK,
        .node_id = cfg->node_id,
        .layout = &lp,
        .transport = (kvx_transport_t)cfg->transport,
        .heartbeat_ms = (uint32_t)cfg->heartbeat_ms,
        .lease_ms = (uint32_t)cfg->lease_ms,
        .hold_ms = (uint32_t)cfg->hold_ms,
        .handshake_ms = (uint32_t)cfg->handshake_ms,
        .poll_us = (uint32_t)cfg->poll_us,
        .am_chunk = cfg->am_chunk,
        /* the engine socket (kvxd_engines_start()) follows these lists */
        .engine_allow_uids = cfg->engine_allow_uids.ids,
        .n_engine_allow_uids = cfg->engine_allow_uids.n,
        .engine_allow_gids = cfg->engine_allow_gids.ids,
        .n_engine_allow_gids = cfg->engine_allow_gids.n,
    };

    kvxd_layout_params(cfg, &lp);
    if (cfg->listen[0] != '\0') {
        np.field_mask |= KVX_NODE_PARAM_FIELD_LISTEN;
        np.listen = cfg->listen;
    }
    if (cfg->ucx_tls[0] != '\0') {
        np.field_mask |= KVX_NODE_PARAM_FIELD_UCX_TLS;
        np.ucx_tls = cfg->ucx_tls;
    }
    if (secret_len > 0) {
        np.field_mask |= KVX_NODE_PARAM_FIELD_SECRET;
        np.secret = secret;
        np.secret_len = secret_len;
    }
    return kvx_node_create(&np, node_p);
}

/*
 * Serves local engines on the socket option. An explicitly configured
 * socket must work (KVX_ERR_* returned); the default one (/run/kvxd.sock)
 * is best effort: without write access to /run, or with another kvxd
 * owning it, kvxd runs without engine attach and says so.
 */
static kvx_status_t kvxd_engines_start(const kvxd_config_t *cfg,
                                       kvx_node_h node, int *engines_p)
{
    kvx_status_t st;

    *engines_p = 0;
    if (cfg->socket[0] == '\0') {
        return KVX_OK;
    }
    st = kvx_node_engine_listen(node, cfg->socket);
    if (st == KVX_OK) {
        *engines_p = 1;
    } else if (strcmp(cfg->socket, kvxd_opt_default("socket")) == 0) {
        kvxd_log(KVX_LOG_WARN,
                 "socket %s: cannot listen for engines (%s): running without "
                 "engine attach (set socket to a writable path, or \"\" to "
                 "disable it)",
                 cfg->socket, kvx_status_string(st));
        return KVX_OK;
    } else {
        kvxd_log(KVX_LOG_ERROR, "socket %s: cannot listen for engines: %s",
                 cfg->socket, kvx_status_string(st));
    }
    return st;
}

static int kvxd_run(const kvxd_config_t *cfg, const uint8_t *secret,
                    size_t secret_len)
{
    kvxd_peer_t *peers = NULL;
    kvx_node_h node = NULL;
    size_t n_peers = 0;
    kvx_status_t st;
    int rc, engines = 0;

    rc = kvxd_peers_parse(cfg->peers, &peers, &n_peers);
    if (rc != KVXD_EXIT_OK) {
        return rc;
    }
    st = kvxd_node_create(cfg, secret, secret_len, &node);
    if (st != KVX_OK) {
        kvxd_log(KVX_LOG_ERROR, "cannot create the node (listen %s): %s",
                 cfg->listen[0] != '\0' ? cfg->listen : "none",
                 kvx_status_string(st));
        rc = st == KVX_ERR_INVALID_PARAM ? KVXD_EXIT_CONFIG : KVXD_EXIT_FAIL;
        goto out;
    }
    if (kvxd_engines_start(cfg, node, &engines) != KVX_OK) {
        rc = KVXD_EXIT_FAIL;
        goto out;
    }
    /* Faulting pages in while a transfer lands costs more than the copy. */
    if (cfg->pool_prefault) {
        uint64_t t0 = kvx_clock_monotonic_ns(NULL);

        st = kvx_pool_populate(kvx_node_pool(node));
        if (st != KVX_OK) {
            kvxd_log(KVX_LOG_WARN,
                     "pool_prefault: cannot commit the pool (%s): pages "
                     "are committed on first use",
                     kvx_status_string(st));
        } else {
            kvxd_log(KVX_LOG_DEBUG, "pool_prefault: pool committed in %.1f ms",
                     (double)(kvx_clock_monotonic_ns(NULL) - t0) / 1e6);
        }
    }
    /* A malformed address never gets better: refuse it now. */
    for (size_t i = 0; i < n_peers; i++) {
        st = kvx_node_connect(node, peers[i].addr, &peers[i].peer);
        if (st == KVX_ERR_INVALID_PARAM) {
            kvxd_log(KVX_LOG_ERROR, "peers: '%s' is not a control address",
                     peers[i].addr);
            rc = KVXD_EXIT_CONFIG;
            goto out;
        } else if (st != KVX_OK) {
            kvxd_peer_failed(&peers[i], st, kvx_clock_monotonic_ns(NULL));
        }
    }
    kvxd_log(KVX_LOG_INFO,
             "node %s up: %llu blocks of %llu bytes, %zu static peers%s, "
             "engines attach at %s",
             cfg->node_id, (unsigned long long)cfg->pool_blocks,
             (unsigned long long)kvx_node_layout(node)->block_bytes, n_peers,
             secret_len > 0 ? ", authenticated" : ", NO authentication",
             engines ? cfg->socket : "(none)");
    if (kvx_node_listen_addr(node) != NULL) {
        printf("kvxd: listening on %s\n", kvx_node_listen_addr(node));
    } else {
        printf("kvxd: ready, not listening\n");
    }
    fflush(stdout);

    while (!kvxd_stop_signal) {
        st = kvx_node_progress(node, KVXD_PROGRESS_MS);
        if (st != KVX_OK) {
            kvxd_log(KVX_LOG_ERROR, "event loop failed: %s",
                     kvx_status_string(st));
            rc = KVXD_EXIT_FAIL;
            goto out;
        }
        kvxd_peers_tick(node, peers, n_peers);
    }
    kvxd_log(KVX_LOG_INFO, "signal %d: shutting down", (int)kvxd_stop_signal);
out:
    kvx_node_destroy(node);
    free(peers);
    if (rc == KVXD_EXIT_OK) {
        kvxd_log(KVX_LOG_INFO, "stopped");
    }
    return rc;
}

int main(int argc, char **argv)
{
    uint8_t secret[KVXD_SECRET_MAX + 1];
    size_t secret_len = 0;
    kvxd_config_t cfg;
    kvxd_args_t args;
    int rc;

    rc = kvxd_configure(&cfg, argc, argv, &args);
    if (rc != KVXD_EXIT_OK) {
        return rc;
    }
    if (args.help) {
        kvxd_usage(stdout);
        return KVXD_EXIT_OK;
    }
    if (args.version) {
        printf("kvxd %s\n", KVX_VERSION_STRING);
        return KVXD_EXIT_OK;
    }
    if (args.print_config) {
        kvxd_config_print(&cfg, stdout);
        return fflush(stdout) == 0 ? KVXD_EXIT_OK : KVXD_EXIT_FAIL;
    }
    rc = kvxd_validate(&cfg);
    if (rc != KVXD_EXIT_OK) {
        return rc;
    }
    kvxd_log_level = (kvx_log_level_t)cfg.log_level;
    kvx_log_set_cb(kvxd_log_cb, NULL, kvxd_log_level);
    if (kvxd_signals() != 0) {
        kvxd_log(KVX_LOG_ERROR, "sigaction: %s", strerror(errno));
        return KVXD_EXIT_FAIL;
    }
    if (cfg.secret_file[0] != '\0') {
        rc = kvxd_read_secret(cfg.secret_file, secret, &secret_len);
        if (rc != KVXD_EXIT_OK) {
            return rc;
        }
    }
    rc = kvxd_run(&cfg, secret, secret_len);
    memset(secret, 0, sizeof(secret));
    return rc;
}
