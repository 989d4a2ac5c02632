/*
 * Commands that ask the local kvxd through its engine socket (cli_local.c):
 * `kvx peers`, `kvx pool`; and the counters printers `kvx status` shares.
 */
#ifndef KVX_CLIENT_CLI_LOCAL_H
#define KVX_CLIENT_CLI_LOCAL_H

#include "kvx_cli.h"

/** kvxd's default engine socket (daemon/config.c `socket`). */
#define CLI_SOCKET_DEFAULT "/run/kvxd.sock"

/** Prints @p s as one JSON object (no newline). */
void cli_print_stats_json(const kvx_node_stats_t *s);
/** Prints @p s as indented text lines. */
void cli_print_stats_text(const kvx_node_stats_t *s);

/** `kvx peers`: the peers of the kvxd at @p socket. Returns an exit code. */
int cli_peers_run(const char *socket, int json, uint32_t timeout_ms);
/** `kvx pool`: the layout and occupancy of the kvxd's pool. */
int cli_pool_run(const char *socket, int json, uint32_t timeout_ms);

#endif /* KVX_CLIENT_CLI_LOCAL_H */
