/*
 * kvxd configuration table and its four readers (defaults, file,
 * environment, flags) and two writers (--print-config, the docs).
 */
#include "config.h"

#include "log_int.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define CONFIG_FILE_MAX (1u << 20)
#define CONFIG_LINE_MAX 4096

#define OPT_STR(n, field, d, text)                                             \
    {                                                                          \
        .name = n, .type = KVXD_OPT_STRING,                                    \
        .offset = offsetof(kvxd_config_t, field),                              \
        .size = sizeof(((kvxd_config_t *)0)->field), .def = d, .doc = text     \
    }
#define OPT_UINT(n, field, d, lo, hi, text)                                    \
    {                                                                          \
        .name = n, .type = KVXD_OPT_UINT,                                      \
        .offset = offsetof(kvxd_config_t, field), .def = d, .min = lo,         \
        .max = hi, .doc = text                                                 \
    }
#define OPT_IDS(n, field, text)                                                \
    {                                                                          \
        .name = n, .type = KVXD_OPT_IDS,                                       \
        .offset = offsetof(kvxd_config_t, field), .def = "", .doc = text       \
    }
#define OPT_ENUM(n, field, d, names, text)                                     \
    {                                                                          \
        .name = n, .type = KVXD_OPT_ENUM,                                      \
        .offset = offsetof(kvxd_config_t, field), .def = d, .choices = names,  \
        .doc = text                                                            \
    }

static const char *const transport_names[] = {"auto", "rma", "am", NULL};
static const char *const log_names[] = {"error", "warn",  "info",
                                        "debug", "trace", NULL};

/* clang-format off */
const kvxd_opt_t kvxd_opts[] = {
    OPT_STR("node_id", node_id, "kvxd",
            "name of this node in logs and handshakes"),
    OPT_STR("listen", listen, "127.0.0.1:7600",
            "control address peers connect to (host:port, [v6]:port)"),
    OPT_STR("socket", socket, "/run/kvxd.sock",
            "unix socket local engines attach to"),
    OPT_IDS("engine_allow_uids", engine_allow_uids,
            "comma-separated uids that may attach engines besides kvxd's "
            "own and root (socket mode 0666)"),
    OPT_IDS("engine_allow_gids", engine_allow_gids,
            "comma-separated gids whose members may attach engines (socket "
            "group: the first; mode 0660, 0666 with more)"),
    OPT_STR("peers", peers, "",
            "comma-separated control addresses of peers to connect to"),
    OPT_UINT("pool_blocks", pool_blocks, "1024", 1, 1u << 30,
             "blocks in the KV pool"),
    OPT_UINT("pool_prefault", pool_prefault, "1", 0, 1,
             "1 = commit the whole pool at start (no page faults on "
             "transfers), 0 = on first use"),
    OPT_UINT("num_layers", num_layers, "32", 1, 1u << 20,
             "model layers per block"),
    OPT_UINT("kv_parts", kv_parts, "2", 1, 2,
             "2 = separate K and V, 1 = one latent (MLA)"),
    OPT_UINT("block_tokens", block_tokens, "16", 1, 1u << 20,
             "tokens per block"),
    OPT_UINT("kv_heads", kv_heads, "8", 1, 1u << 20, "KV heads"),
    OPT_UINT("head_dim", head_dim, "128", 1, 1u << 20, "elements per head"),
    OPT_UINT("dtype_size", dtype_size, "2", 1, 16,
             "bytes per element (2 = bf16/fp16)"),
    OPT_UINT("model_id", model_id, "0", 0, UINT64_MAX,
             "engine-chosen id of the weights (part of the layout hash)"),
    OPT_ENUM("transport", transport, "auto", transport_names,
             "data path: auto (RMA where native, else AM), rma, am"),
    OPT_STR("ucx_tls", ucx_tls, "",
            "UCX transports as in UCX_TLS (empty: UCX's default)"),
    OPT_STR("secret_file", secret_file, "",
            "file holding the cluster secret (empty: no authentication)"),
    OPT_UINT("heartbeat_ms", heartbeat_ms, "1000", 10, 3600000,
             "control heartbeat interval; 3 missed = peer down"),
    OPT_UINT("handshake_ms", handshake_ms, "5000", 10, 600000,
             "a control connection that has not completed its handshake "
             "after this is closed"),
    OPT_UINT("poll_us", poll_us, "100", 0, 1000000,
             "busy-poll this long after the last activity before sleeping; "
             "0 = always sleep when idle (least CPU, slower round trips)"),
    OPT_UINT("am_chunk", am_chunk, "4194304", 4096, 1073741824,
             "largest active message of the AM data path, bytes"),
    OPT_UINT("lease_ms", lease_ms, "30000", 10, 86400000,
             "default lease of blocks reserved for an incoming transfer"),
    OPT_UINT("hold_ms", hold_ms, "60000", 0, 86400000,
             "release received blocks no engine collected after this; 0 = "
             "never"),
    OPT_ENUM("log_level", log_level, "info", log_names,
             "most verbose level logged: error, warn, info, debug, trace"),
    {.name = NULL},
};
/* clang-format on */

static const kvxd_opt_t *opt_find(const char *name, size_t len)
{
    for (const kvxd_opt_t *o = kvxd_opts; o->name != NULL; o++) {
        if (strlen(o->name) == len && strncmp(o->name, name, len) == 0) {
            return o;
        }
    }
    return NULL;
}

static const char *skip_blanks(const char *p)
{
    while (*p == ' ' || *p == '\t') {
        p++;
    }
    return p;
}

/* "1000, 1001" -> @p list (unchanged on error). Ids are decimal, at most
 * UINT32_MAX - 1 ((uint32_t)-1 means "no id" to the kernel). */
static kvx_status_t ids_parse(kvxd_id_list_t *list, const kvxd_opt_t *o,
                              const char *value, char *err, size_t err_len)
{
    const char *p = skip_blanks(value);
    kvxd_id_list_t tmp;
    int ok = 1;

    memset(&tmp, 0, sizeof(tmp));
    while (*p != '\0') {
        unsigned long long v;
        char *end;

        errno = 0;
        v = strtoull(p, &end, 10);
        if (!isdigit((unsigned char)*p) || errno != 0 || v >= UINT32_MAX ||
            tmp.n == KVXD_IDS_MAX) {
            ok = 0;
            break;
        }
        tmp.ids[tmp.n++] = (uint32_t)v;
        p = skip_blanks(end);
        if (*p == ',') {
            p = skip_blanks(p + 1);
            ok = *p != '\0'; /* no trailing comma */
        } else if (*p != '\0') {
            ok = 0;
        }
        if (!ok) {
            break;
        }
    }
    if (!ok) {
        kvxi_why(err, err_len,
                 "%s: '%s' is not a comma-separated list of at most %u "
                 "numeric ids (0 .. %u)",
                 o->name, value, KVXD_IDS_MAX, UINT32_MAX - 1);
        return KVX_ERR_INVALID_PARAM;
    }
    *list = tmp;
    return KVX_OK;
}

static kvx_status_t opt_set(kvxd_config_t *cfg, const kvxd_opt_t *o,
                            const char *value, char *err, size_t err_len)
{
    char *field = (char *)cfg + o->offset;
    unsigned long long v;
    char *end;

    switch (o->type) {
    case KVXD_OPT_STRING:
        if (strlen(value) >= o->size) {
            kvxi_why(err, err_len, "%s: value longer than %zu bytes", o->name,
                     o->size - 1);
            return KVX_ERR_INVALID_PARAM;
        }
        /* a line break would not survive --print-config (nor belong in a
           name, address or path) */
        for (const char *c = value; *c != '\0'; c++) {
            if ((*c > 0 && *c < ' ' && *c != '\t') || *c == 0x7f) {
                kvxi_why(err, err_len, "%s: control character in the value",
                         o->name);
                return KVX_ERR_INVALID_PARAM;
            }
        }
        memcpy(field, value, strlen(value) + 1);
        return KVX_OK;
    case KVXD_OPT_UINT:
        errno = 0;
        v = strtoull(value, &end, 0);
        if (!isdigit((unsigned char)value[0]) || *end != '\0' || errno != 0 ||
            v < o->min || v > o->max) {
            kvxi_why(err, err_len,
                     "%s: '%s' is not an integer in %" PRIu64 " .. %" PRIu64,
                     o->name, value, o->min, o->max);
            return KVX_ERR_INVALID_PARAM;
        }
        *(uint64_t *)(void *)field = v;
        return KVX_OK;
    case KVXD_OPT_ENUM:
        for (int i = 0; o->choices[i] != NULL; i++) {
            if (strcmp(o->choices[i], value) == 0) {
                *(int *)(void *)field = i;
                return KVX_OK;
            }
        }
        kvxi_why(err, err_len, "%s: '%s' is not one of the allowed values",
                 o->name, value);
        return KVX_ERR_INVALID_PARAM;
    case KVXD_OPT_IDS:
        return ids_parse((kvxd_id_list_t *)(void *)field, o, value, err,
                         err_len);
    }
    return KVX_ERR_INVALID_PARAM;
}

void kvxd_config_defaults(kvxd_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    for (const kvxd_opt_t *o = kvxd_opts; o->name != NULL; o++) {
        /* The table's defaults are valid by construction (tested). */
        (void)opt_set(cfg, o, o->def, NULL, 0);
    }
}

kvx_status_t kvxd_config_set(kvxd_config_t *cfg, const char *name,
                             const char *value, char *err, size_t err_len)
{
    const kvxd_opt_t *o;

    if (cfg == NULL || name == NULL || value == NULL) {
        kvxi_why(err, err_len, "NULL argument");
        return KVX_ERR_INVALID_PARAM;
    }
    o = opt_find(name, strlen(name));
    if (o == NULL) {
        kvxi_why(err, err_len, "unknown option '%s'", name);
        return KVX_ERR_NOT_FOUND;
    }
    return opt_set(cfg, o, value, err, err_len);
}

static const char *skip_space(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t')) {
        p++;
    }
    return p;
}

static const char *trim_end(const char *start, const char *end)
{
    while (end > start &&
           (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r')) {
        end--;
    }
    return end;
}

/* One "name = value" line (without its newline). */
static kvx_status_t parse_line(kvxd_config_t *cfg, const char *p,
                               const char *end, unsigned lineno, char *err,
                               size_t err_len)
{
    char value[CONFIG_LINE_MAX];
    const char *name, *name_end, *eq;
    const kvxd_opt_t *o;
    char sub[KVXD_STR_MAX];
    size_t vlen;
    kvx_status_t st;

    p = skip_space(p, end);
    if (p == end || *p == '#') {
        return KVX_OK;
    }
    eq = memchr(p, '=', (size_t)(end - p));
    if (eq == NULL) {
        kvxi_why(err, err_len, "line %u: expected 'name = value'", lineno);
        return KVX_ERR_INVALID_PARAM;
    }
    name = p;
    name_end = trim_end(name, eq);
    o = opt_find(name, (size_t)(name_end - name));
    if (o == NULL) {
        kvxi_why(err, err_len, "line %u: unknown option '%.*s'", lineno,
                 (int)(name_end - name > 64 ? 64 : name_end - name), name);
        return KVX_ERR_NOT_FOUND;
    }
    p = skip_space(eq + 1, end);
    end = trim_end(p, end);
    if (end - p >= 2 && *p == '"' && end[-1] == '"') {
        p++;
        end--;
    }
    vlen = (size_t)(end - p);
    if (vlen >= sizeof(value) || memchr(p, '\0', vlen) != NULL) {
        kvxi_why(err, err_len, "line %u: %s: value too long or has NUL bytes",
                 lineno, o->name);
        return KVX_ERR_INVALID_PARAM;
    }
    memcpy(value, p, vlen);
    value[vlen] = '\0';
    st = opt_set(cfg, o, value, sub, sizeof(sub));
    if (st != KVX_OK) {
        kvxi_why(err, err_len, "line %u: %s", lineno, sub);
    }
    return st;
}

kvx_status_t kvxd_config_parse(kvxd_config_t *cfg, const char *text, size_t len,
                               char *err, size_t err_len)
{
    const char *p = text, *end = text + len;
    unsigned lineno = 0;

    if (cfg == NULL || (text == NULL && len > 0)) {
        kvxi_why(err, err_len, "NULL argument");
        return KVX_ERR_INVALID_PARAM;
    }
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = nl != NULL ? nl : end;
        kvx_status_t st;

        lineno++;
        if (line_end - p >= CONFIG_LINE_MAX) {
            kvxi_why(err, err_len, "line %u: longer than %u bytes", lineno,
                     CONFIG_LINE_MAX - 1);
            return KVX_ERR_INVALID_PARAM;
        }
        st = parse_line(cfg, p, line_end, lineno, err, err_len);
        if (st != KVX_OK) {
            return st;
        }
        p = nl != NULL ? nl + 1 : end;
    }
    return KVX_OK;
}

kvx_status_t kvxd_config_load(kvxd_config_t *cfg, const char *path, char *err,
                              size_t err_len)
{
    char *text = NULL, sub[KVXD_STR_MAX];
    size_t len = 0;
    kvx_status_t st;
    FILE *f;

    f = fopen(path, "re");
    if (f == NULL) {
        kvxi_why(err, err_len, "%s: %s", path, strerror(errno));
        return KVX_ERR_IO;
    }
    text = malloc(CONFIG_FILE_MAX + 1);
    if (text == NULL) {
        fclose(f);
        return KVX_ERR_NO_MEMORY;
    }
    len = fread(text, 1, CONFIG_FILE_MAX + 1, f);
    if (ferror(f) || len > CONFIG_FILE_MAX) {
        kvxi_why(err, err_len, "%s: unreadable or larger than %u bytes", path,
                 CONFIG_FILE_MAX);
        st = KVX_ERR_IO;
    } else {
        st = kvxd_config_parse(cfg, text, len, sub, sizeof(sub));
        if (st != KVX_OK) {
            kvxi_why(err, err_len, "%s: %s", path, sub);
        }
    }
    fclose(f);
    free(text);
    return st;
}

kvx_status_t kvxd_config_env(kvxd_config_t *cfg, char *const *envp, char *err,
                             size_t err_len)
{
    char env_name[64];

    for (const kvxd_opt_t *o = kvxd_opts; o->name != NULL; o++) {
        size_t n = strlen(o->name);

        memcpy(env_name, "KVX_", 4);
        for (size_t i = 0; i <= n; i++) {
            env_name[4 + i] = (char)toupper((unsigned char)o->name[i]);
        }
        for (char *const *e = envp; e != NULL && *e != NULL; e++) {
            if (strncmp(*e, env_name, n + 4) == 0 && (*e)[n + 4] == '=') {
                kvx_status_t st = opt_set(cfg, o, *e + n + 5, err, err_len);

                if (st != KVX_OK) {
                    return st;
                }
            }
        }
    }
    return KVX_OK;
}

kvx_status_t kvxd_config_args(kvxd_config_t *cfg, int argc, char **argv,
                              int *next_p, char *err, size_t err_len)
{
    int i;

    for (i = 0; i < argc; i++) {
        const char *a = argv[i], *eq, *value;
        const kvxd_opt_t *o;
        kvx_status_t st;

        if (strncmp(a, "--", 2) != 0) {
            break;
        }
        a += 2;
        eq = strchr(a, '=');
        o = opt_find(a, eq != NULL ? (size_t)(eq - a) : strlen(a));
        if (o == NULL) {
            break;
        }
        if (eq != NULL) {
            value = eq + 1;
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            kvxi_why(err, err_len, "--%s needs a value", o->name);
            return KVX_ERR_INVALID_PARAM;
        }
        st = opt_set(cfg, o, value, err, err_len);
        if (st != KVX_OK) {
            return st;
        }
    }
    *next_p = i;
    return KVX_OK;
}

static void opt_print_value(const kvxd_config_t *cfg, const kvxd_opt_t *o,
                            FILE *out)
{
    const char *field = (const char *)cfg + o->offset;

    switch (o->type) {
    case KVXD_OPT_STRING: fprintf(out, "\"%s\"", field); break;
    case KVXD_OPT_UINT:
        fprintf(out, "%" PRIu64, *(const uint64_t *)(const void *)field);
        break;
    case KVXD_OPT_ENUM:
        fprintf(out, "%s", o->choices[*(const int *)(const void *)field]);
        break;
    case KVXD_OPT_IDS: {
        const kvxd_id_list_t *l = (const kvxd_id_list_t *)(const void *)field;

        fputc('"', out);
        for (uint32_t i = 0; i < l->n; i++) {
            fprintf(out, "%s%" PRIu32, i > 0 ? "," : "", l->ids[i]);
        }
        fputc('"', out);
        break;
    }
    }
}

void kvxd_config_print(const kvxd_config_t *cfg, FILE *out)
{
    for (const kvxd_opt_t *o = kvxd_opts; o->name != NULL; o++) {
        fprintf(out, "# %s\n%s = ", o->doc, o->name);
        opt_print_value(cfg, o, out);
        fputc('\n', out);
    }
}

void kvxd_config_print_doc(FILE *out)
{
    fprintf(out, "| option | environment | default | meaning |\n"
                 "|---|---|---|---|\n");
    for (const kvxd_opt_t *o = kvxd_opts; o->name != NULL; o++) {
        fprintf(out, "| `%s` | `KVX_", o->name);
        for (const char *c = o->name; *c != '\0'; c++) {
            fputc(toupper((unsigned char)*c), out);
        }
        fprintf(out, "` | `%s` | %s |\n", o->def[0] != '\0' ? o->def : "\"\"",
                o->doc);
    }
}
