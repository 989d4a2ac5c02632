/*
 * Shared by the kvx CLI (kvx.c) and its test helper (kvx_sink.c): the model
 * presets, the node options both ends of a connection must agree on
 * (layout, secret, transport), strict number parsing and JSON strings.
 */
#ifndef KVX_CLIENT_CLI_H
#define KVX_CLIENT_CLI_H

#include <kvx/kvx.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Exit codes (docs/cli.md). */
#define CLI_EXIT_OK 0
#define CLI_EXIT_FAIL 1
#define CLI_EXIT_USAGE 2

/** A model's KV shape (bf16, all kv heads in one pool). One table for the
 *  kvx CLI and kvx-bench model; @p alias is the model's full name. */
typedef struct cli_model {
    const char *name;
    const char *desc;
    uint32_t layers, kv_parts, kv_heads, head_dim;
    const char *alias; /* or NULL */
} cli_model_t;

static const cli_model_t cli_models[] = {
    {"llama-8b", "Llama-3.1-8B: 32 layers, 8 kv heads x 128, K+V", 32, 2, 8,
     128, "llama-3.1-8b"},
    {"llama-70b", "Llama-3.1-70B: 80 layers, 8 kv heads x 128, K+V", 80, 2, 8,
     128, "llama-3.1-70b"},
    {"qwen3-235b", "Qwen3-235B-A22B: 94 layers, 4 kv heads x 128, K+V", 94, 2,
     4, 128, "qwen3-235b-a22b"},
    {"deepseek-v3", "DeepSeek-V3 MLA: 61 layers, one 576-wide latent", 61, 1, 1,
     576, NULL},
    {"tiny", "tiny test model: 4 layers, 2 kv heads x 64, K+V", 4, 2, 2, 64,
     NULL},
};
#define CLI_N_MODELS (sizeof(cli_models) / sizeof(cli_models[0]))

/** The preset named @p name (its short name or its alias), or NULL. */
static inline const cli_model_t *cli_model_find(const char *name)
{
    for (size_t i = 0; i < CLI_N_MODELS; i++) {
        const cli_model_t *m = &cli_models[i];

        if (strcmp(m->name, name) == 0 ||
            (m->alias != NULL && strcmp(m->alias, name) == 0)) {
            return m;
        }
    }
    return NULL;
}

/** Strict decimal: digits only, no sign or spaces, within [min, max]. */
static inline int cli_parse_u64(const char *s, uint64_t min, uint64_t max,
                                uint64_t *v_p)
{
    unsigned long long v;
    char *end;

    if (s == NULL || *s < '0' || *s > '9') {
        return -1;
    }
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max) {
        return -1;
    }
    *v_p = v;
    return 0;
}

static inline int cli_parse_u32(const char *s, uint32_t min, uint32_t max,
                                uint32_t *v_p)
{
    uint64_t v;

    if (cli_parse_u64(s, min, max, &v) != 0) {
        return -1;
    }
    *v_p = (uint32_t)v;
    return 0;
}

/** Options that shape the embedded node; both ends must agree on them. */
typedef struct cli_node_opts {
    const cli_model_t *model;
    uint32_t block_tokens;
    kvx_transport_t transport;
    const char *tls;
    const char *secret_file;
    char secret[1025];
    size_t secret_len;
} cli_node_opts_t;

static inline void cli_node_opts_init(cli_node_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->model = cli_model_find("llama-8b");
    o->block_tokens = 16;
    o->transport = KVX_TRANSPORT_AUTO;
}

/**
 * Takes @p flag (with its value) if it is a node option. Returns 1 when
 * taken, 0 when not a node option, -1 with a message in @p err when the
 * value is bad.
 */
static inline int cli_node_opt(cli_node_opts_t *o, const char *flag,
                               const char *val, char *err, size_t err_len)
{
    if (strcmp(flag, "--model") == 0) {
        o->model = cli_model_find(val);
        if (o->model == NULL) {
            snprintf(err, err_len,
                     "unknown model '%s' (llama-8b, llama-70b, deepseek-v3, "
                     "tiny)",
                     val);
            return -1;
        }
    } else if (strcmp(flag, "--block-tokens") == 0) {
        if (cli_parse_u32(val, 1, 4096, &o->block_tokens) != 0) {
            snprintf(err, err_len, "--block-tokens: want 1 .. 4096, not '%s'",
                     val);
            return -1;
        }
    } else if (strcmp(flag, "--transport") == 0) {
        if (strcmp(val, "auto") == 0) {
            o->transport = KVX_TRANSPORT_AUTO;
        } else if (strcmp(val, "rma") == 0) {
            o->transport = KVX_TRANSPORT_RMA;
        } else if (strcmp(val, "am") == 0) {
            o->transport = KVX_TRANSPORT_AM;
        } else {
            snprintf(err, err_len, "--transport: auto, rma or am, not '%s'",
                     val);
            return -1;
        }
    } else if (strcmp(flag, "--tls") == 0) {
        o->tls = val;
    } else if (strcmp(flag, "--secret-file") == 0) {
        o->secret_file = val;
    } else {
        return 0;
    }
    return 1;
}

/** Reads the secret file (1 .. 1024 bytes, trailing newlines dropped). */
static inline int cli_read_secret(cli_node_opts_t *o, char *err, size_t err_len)
{
    FILE *f;
    size_t n;

    if (o->secret_file == NULL) {
        return 0;
    }
    f = fopen(o->secret_file, "rb");
    if (f == NULL) {
        snprintf(err, err_len, "cannot read secret file %s: %s", o->secret_file,
                 strerror(errno));
        return -1;
    }
    n = fread(o->secret, 1, sizeof(o->secret), f);
    fclose(f);
    /* as kvxd: trailing newlines are not part of the secret */
    while (n > 0 && (o->secret[n - 1] == '\n' || o->secret[n - 1] == '\r')) {
        n--;
    }
    if (n == 0 || n >= sizeof(o->secret)) {
        snprintf(err, err_len, "secret file %s: want 1 .. 1024 bytes",
                 o->secret_file);
        return -1;
    }
    o->secret_len = n;
    return 0;
}

/** The preset's layout with @p num_blocks blocks. */
static inline kvx_layout_params_t cli_layout(const cli_node_opts_t *o,
                                             uint32_t num_blocks)
{
    kvx_layout_params_t lp = {
        .field_mask = KVX_LAYOUT_PARAM_FIELD_NUM_LAYERS |
                      KVX_LAYOUT_PARAM_FIELD_KV_PARTS |
                      KVX_LAYOUT_PARAM_FIELD_BLOCK_TOKENS |
                      KVX_LAYOUT_PARAM_FIELD_KV_HEADS |
                      KVX_LAYOUT_PARAM_FIELD_HEAD_DIM |
                      KVX_LAYOUT_PARAM_FIELD_DTYPE_SIZE |
                      KVX_LAYOUT_PARAM_FIELD_NUM_BLOCKS,
        .num_layers = o->model->layers,
        .kv_parts = o->model->kv_parts,
        .block_tokens = o->block_tokens,
        .kv_heads = o->model->kv_heads,
        .head_dim = o->model->head_dim,
        .dtype_size = 2,
        .num_blocks = num_blocks,
    };
    return lp;
}

/** Bytes of one block of the preset (0 if the layout is refused). */
static inline uint64_t cli_block_bytes(const cli_node_opts_t *o)
{
    kvx_layout_params_t lp = cli_layout(o, 1);
    kvx_layout_t l;

    return kvx_layout_init(&l, &lp) == KVX_OK ? l.block_bytes : 0;
}

static inline kvx_status_t cli_node_create(const cli_node_opts_t *o,
                                           const char *id, const char *listen,
                                           uint32_t num_blocks,
                                           kvx_node_h *node_p)
{
    kvx_layout_params_t lp = cli_layout(o, num_blocks);
    kvx_node_params_t np = {
        .field_mask = KVX_NODE_PARAM_FIELD_NODE_ID |
                      KVX_NODE_PARAM_FIELD_LAYOUT |
                      KVX_NODE_PARAM_FIELD_TRANSPORT,
        .node_id = id,
        .layout = &lp,
        .transport = o->transport,
    };

    if (listen != NULL) {
        np.field_mask |= KVX_NODE_PARAM_FIELD_LISTEN;
        np.listen = listen;
    }
    if (o->tls != NULL) {
        np.field_mask |= KVX_NODE_PARAM_FIELD_UCX_TLS;
        np.ucx_tls = o->tls;
    }
    if (o->secret_len > 0) {
        np.field_mask |= KVX_NODE_PARAM_FIELD_SECRET;
        np.secret = o->secret;
        np.secret_len = o->secret_len;
    }
    return kvx_node_create(&np, node_p);
}

/** Writes @p s as a JSON string literal. */
/* KV bytes that depend only on the block's key (a splitmix64 stream): any
 * holder of the block can check it knowing the key alone. */
static inline void cli_fill_block(void *addr, uint64_t bytes,
                                  const kvx_block_key_t *key)
{
    uint64_t *w = addr, s;

    memcpy(&s, key->bytes, sizeof(s));
    for (uint64_t i = 0; i < bytes / sizeof(*w); i++) {
        uint64_t z = (s += 0x9e3779b97f4a7c15ull);

        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        w[i] = z ^ (z >> 31);
    }
}

static inline void cli_json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            fprintf(f, "\\%c", *p);
        } else if (*p < 0x20) {
            fprintf(f, "\\u%04x", *p);
        } else {
            fputc(*p, f);
        }
    }
    fputc('"', f);
}

#endif /* KVX_CLIENT_CLI_H */
