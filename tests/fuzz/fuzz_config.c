/*
 * libFuzzer target for kvxd's configuration (daemon/config.c): the text of
 * a config file, environment variables and command-line flags, all driven
 * by the option table, and the checks kvxd makes before it starts.
 *
 *  1. The input as a config file. Parsing returns KVX_OK, or
 *     KVX_ERR_NOT_FOUND / KVX_ERR_INVALID_PARAM with a message. A file that
 *     parses prints (--print-config) as text that parses again to the same
 *     configuration: printing both gives the same bytes. Its layout is
 *     checked as kvxd checks it (kvx_layout_init() of the table's bounds).
 *  2. The input as NUL-separated "KVX_NAME=value" strings (environment)
 *     and as NUL-separated arguments (flags): same statuses; the flags stop
 *     at an index within the arguments; what they set prints and parses
 *     back as in 1 (kvxd --print-config writes the environment's values).
 * A broken property traps.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_STRINGS_MAX 64

static void check(int cond)
{
    if (!cond) {
        __builtin_trap();
    }
}

static void check_status(kvx_status_t st, const char *err, size_t err_len)
{
    check(st == KVX_OK || st == KVX_ERR_NOT_FOUND ||
          st == KVX_ERR_INVALID_PARAM);
    if (st != KVX_OK) {
        size_t n = strnlen(err, err_len);

        check(n > 0 && n < err_len);
    }
}

/* The configuration as --print-config writes it (malloc'd, NUL-ended). */
static char *print(const kvxd_config_t *cfg, size_t *len_p)
{
    char *text = NULL;
    FILE *f = open_memstream(&text, len_p);

    if (f == NULL) {
        return NULL;
    }
    kvxd_config_print(cfg, f);
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

/* What kvxd checks before it creates its node (daemon/kvxd.c): the layout
 * the options describe. Only must not misbehave on any accepted value. */
static void check_layout(const kvxd_config_t *cfg)
{
    kvx_layout_params_t lp = {
        .field_mask =
            KVX_LAYOUT_PARAM_FIELD_NUM_LAYERS |
            KVX_LAYOUT_PARAM_FIELD_KV_PARTS |
            KVX_LAYOUT_PARAM_FIELD_BLOCK_TOKENS |
            KVX_LAYOUT_PARAM_FIELD_KV_HEADS | KVX_LAYOUT_PARAM_FIELD_HEAD_DIM |
            KVX_LAYOUT_PARAM_FIELD_DTYPE_SIZE |
            KVX_LAYOUT_PARAM_FIELD_NUM_BLOCKS | KVX_LAYOUT_PARAM_FIELD_ORDER |
            KVX_LAYOUT_PARAM_FIELD_MODEL_ID,
        .order = KVX_LAYOUT_BLOCK_MAJOR,
    };
    kvx_layout_t layout;

    /* the table bounds these counts to 2^30 at most */
    check(cfg->num_layers <= UINT32_MAX && cfg->kv_parts <= UINT32_MAX &&
          cfg->block_tokens <= UINT32_MAX && cfg->kv_heads <= UINT32_MAX &&
          cfg->head_dim <= UINT32_MAX && cfg->dtype_size <= UINT32_MAX &&
          cfg->pool_blocks <= UINT32_MAX);
    lp.num_layers = (uint32_t)cfg->num_layers;
    lp.kv_parts = (uint32_t)cfg->kv_parts;
    lp.block_tokens = (uint32_t)cfg->block_tokens;
    lp.kv_heads = (uint32_t)cfg->kv_heads;
    lp.head_dim = (uint32_t)cfg->head_dim;
    lp.dtype_size = (uint32_t)cfg->dtype_size;
    lp.num_blocks = (uint32_t)cfg->pool_blocks;
    lp.model_id = cfg->model_id;
    if (kvx_layout_init(&layout, &lp) == KVX_OK) {
        check(layout.block_bytes > 0 && layout.num_blocks == lp.num_blocks &&
              layout.region_bytes / layout.num_blocks >= layout.block_bytes);
    }
}

/* --print-config of @p a is a config file that reads back as @p a. */
static void check_round_trip(const kvxd_config_t *a)
{
    kvxd_config_t b;
    char err[512], *text, *again;
    size_t len = 0, len2 = 0;
    kvx_status_t st;

    check_layout(a);
    text = print(a, &len);
    if (text == NULL) {
        return;
    }
    kvxd_config_defaults(&b);
    st = kvxd_config_parse(&b, text, len, err, sizeof(err));
    if (st != KVX_OK) {
        fprintf(stderr, "fuzz_config: printed config does not parse: %s\n",
                err);
    }
    check(st == KVX_OK);
    again = print(&b, &len2);
    check(again != NULL && len2 == len && memcmp(text, again, len) == 0);
    free(again);
    free(text);
}

static void fuzz_file(const uint8_t *data, size_t size)
{
    kvxd_config_t cfg;
    char err[512];
    kvx_status_t st;

    kvxd_config_defaults(&cfg);
    err[0] = '\0';
    st = kvxd_config_parse(&cfg, (const char *)data, size, err, sizeof(err));
    check_status(st, err, sizeof(err));
    if (st == KVX_OK) {
        check_round_trip(&cfg);
    }
}

/* Splits the input at NUL bytes into at most FZ_STRINGS_MAX strings. */
static size_t split(const uint8_t *data, size_t size, char *buf, char **strs)
{
    size_t n = 0, start = 0;

    memcpy(buf, data, size);
    buf[size] = '\0';
    for (size_t i = 0; i <= size && n < FZ_STRINGS_MAX; i++) {
        if (buf[i] == '\0') {
            strs[n++] = buf + start;
            start = i + 1;
        }
    }
    strs[n] = NULL;
    return n;
}

static void fuzz_env_args(const uint8_t *data, size_t size)
{
    char *strs[FZ_STRINGS_MAX + 1], err[512];
    char *buf = malloc(size + 1);
    kvxd_config_t cfg;
    kvx_status_t st;
    size_t n;
    int next = -1;

    if (buf == NULL) {
        return;
    }
    n = split(data, size, buf, strs);
    kvxd_config_defaults(&cfg);
    err[0] = '\0';
    st = kvxd_config_env(&cfg, strs, err, sizeof(err));
    check(st == KVX_OK || st == KVX_ERR_INVALID_PARAM);
    check_status(st, err, sizeof(err));
    if (st == KVX_OK) {
        check_round_trip(&cfg);
    }
    kvxd_config_defaults(&cfg);
    err[0] = '\0';
    st = kvxd_config_args(&cfg, (int)n, strs, &next, err, sizeof(err));
    check_status(st, err, sizeof(err));
    check(st != KVX_OK || (next >= 0 && (size_t)next <= n));
    if (st == KVX_OK) {
        check_round_trip(&cfg);
    }
    if (n >= 2) {
        err[0] = '\0';
        st = kvxd_config_set(&cfg, strs[0], strs[1], err, sizeof(err));
        check_status(st, err, sizeof(err));
    }
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_file(data, size);
    fuzz_env_args(data, size);
    return 0;
}
