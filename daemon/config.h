/*
 * kvxd configuration: one table drives the config file, the KVX_*
 * environment, the command-line flags, --print-config and docs/config.md.
 *
 * Precedence, lowest first: built-in default, config file (--config PATH or
 * KVX_CONFIG), environment (KVX_<NAME>), command line (--name=value or
 * --name value).
 */
#ifndef KVXD_CONFIG_H
#define KVXD_CONFIG_H

#include <kvx/kvx.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define KVXD_STR_MAX 256
#define KVXD_IDS_MAX KVX_NODE_ENGINE_ALLOW_MAX

/* A list of numeric uids or gids ("1000,1001"); unused entries are 0. */
typedef struct kvxd_id_list {
    uint32_t n;
    uint32_t ids[KVXD_IDS_MAX];
} kvxd_id_list_t;

typedef struct kvxd_config {
    char node_id[KVXD_STR_MAX];
    char listen[KVXD_STR_MAX]; /* control address for peers */
    char socket[KVXD_STR_MAX]; /* unix socket for local engines */
    kvxd_id_list_t engine_allow_uids;
    kvxd_id_list_t engine_allow_gids;
    char peers[4 * KVXD_STR_MAX]; /* comma-separated peer addresses */
    char ucx_tls[KVXD_STR_MAX];
    char secret_file[KVXD_STR_MAX];
    uint64_t pool_blocks;
    uint64_t pool_prefault; /* 0/1 */
    uint64_t num_layers;
    uint64_t kv_parts;
    uint64_t block_tokens;
    uint64_t kv_heads;
    uint64_t head_dim;
    uint64_t dtype_size;
    uint64_t model_id;
    uint64_t heartbeat_ms;
    uint64_t handshake_ms;
    uint64_t poll_us;
    uint64_t am_chunk;
    uint64_t lease_ms;
    uint64_t hold_ms;
    int transport; /* kvx_transport_t */
    int log_level; /* kvx_log_level_t */
} kvxd_config_t;

typedef enum kvxd_opt_type {
    KVXD_OPT_STRING,
    KVXD_OPT_UINT,
    KVXD_OPT_ENUM,
    KVXD_OPT_IDS /* kvxd_id_list_t: comma-separated numeric uids/gids */
} kvxd_opt_type_t;

/* One row of the table. */
typedef struct kvxd_opt {
    const char *name; /* file key and --flag; env is KVX_ + upper */
    kvxd_opt_type_t type;
    size_t offset;              /* in kvxd_config_t */
    size_t size;                /* STRING: buffer size */
    const char *def;            /* default, as text */
    uint64_t min, max;          /* UINT bounds */
    const char *const *choices; /* ENUM: names, index = value; NULL-ended */
    const char *doc;            /* one line for --print-config and the docs */
} kvxd_opt_t;

/** The table, terminated by a row with a NULL name. */
extern const kvxd_opt_t kvxd_opts[];

/** Fills @p cfg with every default. */
void kvxd_config_defaults(kvxd_config_t *cfg);

/**
 * Sets option @p name from text @p value (bounds, enum names and string
 * lengths checked). @p err gets a message naming the option on failure.
 * @return KVX_OK; KVX_ERR_NOT_FOUND (no such option);
 *         KVX_ERR_INVALID_PARAM (bad value).
 */
kvx_status_t kvxd_config_set(kvxd_config_t *cfg, const char *name,
                             const char *value, char *err, size_t err_len);

/**
 * Parses a config file's text: "name = value" lines, '#' comments, blank
 * lines; values may be "quoted". @p err names the line on failure.
 * @return KVX_OK; KVX_ERR_NOT_FOUND; KVX_ERR_INVALID_PARAM.
 */
kvx_status_t kvxd_config_parse(kvxd_config_t *cfg, const char *text, size_t len,
                               char *err, size_t err_len);

/** Reads @p path and parses it. Adds KVX_ERR_IO (unreadable, > 1 MiB). */
kvx_status_t kvxd_config_load(kvxd_config_t *cfg, const char *path, char *err,
                              size_t err_len);

/** Applies every KVX_<NAME> variable found in @p envp (NULL-ended). */
kvx_status_t kvxd_config_env(kvxd_config_t *cfg, char *const *envp, char *err,
                             size_t err_len);

/**
 * Applies command-line flags (--name=value, --name value); stops at the
 * first argument that is not an option of the table and reports its index
 * in *next_p (argc when all were consumed). "--config", "--print-config",
 * "--help" and "--version" are not table options: the caller handles them
 * before.
 */
kvx_status_t kvxd_config_args(kvxd_config_t *cfg, int argc, char **argv,
                              int *next_p, char *err, size_t err_len);

/** Writes @p cfg in config-file syntax, each option with its doc. */
void kvxd_config_print(const kvxd_config_t *cfg, FILE *out);

/** Writes the option table as a markdown table (docs/config.md body). */
void kvxd_config_print_doc(FILE *out);

#endif /* KVXD_CONFIG_H */
