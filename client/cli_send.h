/* `kvx send` (cli_send.c), called by kvx.c. */
#ifndef KVX_CLIENT_CLI_SEND_H
#define KVX_CLIENT_CLI_SEND_H

#include "kvx_cli.h"

typedef struct cli_send_cfg {
    cli_node_opts_t node;
    const char *peer;
    const char *seed;       /**< key-chain seed */
    uint32_t requests;      /**< >= 1 */
    uint32_t prompt;        /**< tokens per request, >= block_tokens */
    uint32_t shared_prefix; /**< <= prompt */
    uint32_t deadline_ms;
    uint32_t timeout_ms; /**< connect */
    int layerwise;
    int no_checksum; /**< push without KVX_XFER_FLAG_CHECKSUM */
    int json;
    const char *via;      /**< --via: attach to this kvxd and push from it */
    const char *check_at; /**< --check-at: collect and compare here */
} cli_send_cfg_t;

/** Runs `kvx send`; returns the exit code. */
int cli_send_run(const cli_send_cfg_t *c);

/** Connects (kvx.c): 0, or the exit code after printing why not. */
int cli_connect(kvx_node_h node, const char *addr, uint32_t timeout_ms,
                kvx_peer_h *peer_p);

#endif /* KVX_CLIENT_CLI_SEND_H */
