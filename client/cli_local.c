/*
 * `kvx peers` and `kvx pool`: what the local kvxd knows, asked through its
 * engine socket as an attached engine (kvx/client.h) — so they need the
 * daemon's user (the socket is mode 0600) but no cluster secret.
 */
#include "cli_local.h"

#define PEERS_MAX 4096u

void cli_print_stats_json(const kvx_node_stats_t *s)
{
    printf("{\"blocks_total\":%llu,\"blocks_free\":%llu,"
           "\"blocks_cached\":%llu,\"leases_active\":%llu,"
           "\"leases_fenced\":%llu,\"transfers_ok\":%llu,"
           "\"transfers_failed\":%llu,\"bytes_sent\":%llu,"
           "\"bytes_received\":%llu,\"dedupe_hit_blocks\":%llu,"
           "\"counters_dropped\":%u,\"counters\":{",
           (unsigned long long)s->blocks_total,
           (unsigned long long)s->blocks_free,
           (unsigned long long)s->blocks_cached,
           (unsigned long long)s->leases_active,
           (unsigned long long)s->leases_fenced,
           (unsigned long long)s->transfers_ok,
           (unsigned long long)s->transfers_failed,
           (unsigned long long)s->bytes_sent,
           (unsigned long long)s->bytes_received,
           (unsigned long long)s->dedupe_hit_blocks, s->counters_dropped);
    for (uint32_t i = 0; i < s->n_counters; i++) {
        printf("%s", i ? "," : "");
        cli_json_str(stdout, s->counters[i].name);
        printf(":%llu", (unsigned long long)s->counters[i].value);
    }
    printf("}}");
}

void cli_print_stats_text(const kvx_node_stats_t *s)
{
    printf("  blocks      %llu total, %llu free, %llu cached\n",
           (unsigned long long)s->blocks_total,
           (unsigned long long)s->blocks_free,
           (unsigned long long)s->blocks_cached);
    printf("  leases      %llu active, %llu fenced\n",
           (unsigned long long)s->leases_active,
           (unsigned long long)s->leases_fenced);
    printf("  transfers   %llu ok, %llu failed\n",
           (unsigned long long)s->transfers_ok,
           (unsigned long long)s->transfers_failed);
    printf("  bytes       %llu sent, %llu received\n",
           (unsigned long long)s->bytes_sent,
           (unsigned long long)s->bytes_received);
    printf("  dedupe      %llu blocks not sent (already held)\n",
           (unsigned long long)s->dedupe_hit_blocks);
    for (uint32_t i = 0; i < s->n_counters; i++) {
        printf("  %-30s %llu\n", s->counters[i].name,
               (unsigned long long)s->counters[i].value);
    }
    if (s->counters_dropped > 0) {
        printf("  (%u more counters not shown)\n", s->counters_dropped);
    }
}

static kvx_status_t local_attach(const char *socket, uint32_t timeout_ms,
                                 const char *cmd, int json,
                                 kvx_client_h *client_p)
{
    kvx_client_params_t p = {
        .field_mask =
            KVX_CLIENT_PARAM_FIELD_NAME | KVX_CLIENT_PARAM_FIELD_TIMEOUT,
        .name = cmd,
        .timeout_ms = timeout_ms,
    };
    kvx_status_t st = kvx_client_attach(socket, &p, client_p);

    if (st == KVX_OK) {
        return KVX_OK;
    }
    if (json) {
        printf("{\"command\":\"%s\",\"socket\":", cmd);
        cli_json_str(stdout, socket);
        printf(",\"ok\":false,\"error\":");
        cli_json_str(stdout, kvx_status_string(st));
        printf("}\n");
    }
    fprintf(stderr, "kvx %s: cannot attach to the kvxd at %s: %s%s\n", cmd,
            socket, kvx_status_string(st),
            st == KVX_ERR_PEER_UNREACHABLE
                ? " (is kvxd running? its socket option names the path)"
                : "");
    return st;
}

int cli_peers_run(const char *socket, int json, uint32_t timeout_ms)
{
    kvx_client_peer_t *peers = calloc(PEERS_MAX, sizeof(*peers));
    kvx_client_h client = NULL;
    uint32_t n = 0;
    kvx_status_t st;
    int rc = CLI_EXIT_FAIL;

    if (peers == NULL) {
        fprintf(stderr, "kvx peers: out of memory\n");
        return CLI_EXIT_FAIL;
    }
    if (local_attach(socket, timeout_ms, "peers", json, &client) != KVX_OK) {
        goto out;
    }
    st = kvx_client_peers(client, peers, PEERS_MAX, &n);
    if (st != KVX_OK) {
        fprintf(stderr, "kvx peers: %s\n", kvx_status_string(st));
        goto out;
    }
    n = n < PEERS_MAX ? n : PEERS_MAX;
    if (json) {
        printf("{\"command\":\"peers\",\"node\":");
        cli_json_str(stdout, kvx_client_node_id(client));
        printf(",\"peers\":[");
        for (uint32_t i = 0; i < n; i++) {
            printf("%s{\"addr\":", i ? "," : "");
            cli_json_str(stdout, peers[i].addr);
            printf(",\"node_id\":");
            cli_json_str(stdout, peers[i].node_id);
            printf(",\"status\":\"%s\",\"transport\":\"%s\","
                   "\"rtt_us\":%llu,\"direction\":\"%s\"}",
                   kvx_status_string(peers[i].status),
                   kvx_transport_string(peers[i].transport),
                   (unsigned long long)peers[i].rtt_us,
                   peers[i].outgoing ? "out" : "in");
        }
        printf("],\"ok\":true}\n");
    } else {
        printf("node %s: %u peer(s)\n", kvx_client_node_id(client), n);
        if (n > 0) {
            printf("  %-24s %-20s %-4s %-9s %10s  %s\n", "address", "node",
                   "dir", "transport", "rtt_us", "status");
        }
        for (uint32_t i = 0; i < n; i++) {
            printf("  %-24s %-20s %-4s %-9s %10llu  %s\n", peers[i].addr,
                   peers[i].node_id[0] ? peers[i].node_id : "-",
                   peers[i].outgoing ? "out" : "in",
                   kvx_transport_string(peers[i].transport),
                   (unsigned long long)peers[i].rtt_us,
                   kvx_status_string(peers[i].status));
        }
    }
    rc = CLI_EXIT_OK;
out:
    kvx_client_detach(client);
    free(peers);
    return rc;
}

int cli_pool_run(const char *socket, int json, uint32_t timeout_ms)
{
    kvx_node_stats_t *s = malloc(sizeof(*s));
    kvx_client_h client = NULL;
    const kvx_layout_t *l;
    kvx_status_t st;
    int rc = CLI_EXIT_FAIL;

    if (s == NULL) {
        fprintf(stderr, "kvx pool: out of memory\n");
        return CLI_EXIT_FAIL;
    }
    if (local_attach(socket, timeout_ms, "pool", json, &client) != KVX_OK) {
        goto out;
    }
    if ((st = kvx_client_stats(client, s)) != KVX_OK) {
        fprintf(stderr, "kvx pool: %s\n", kvx_status_string(st));
        goto out;
    }
    l = kvx_client_layout(client);
    if (json) {
        printf("{\"command\":\"pool\",\"node\":");
        cli_json_str(stdout, kvx_client_node_id(client));
        printf(",\"layout\":{\"num_layers\":%u,\"kv_parts\":%u,"
               "\"block_tokens\":%u,\"kv_heads\":%u,\"head_dim\":%u,"
               "\"dtype_size\":%u,\"num_blocks\":%u,\"block_bytes\":%llu},"
               "\"pool_bytes\":%llu,\"stats\":",
               l->num_layers, l->kv_parts, l->block_tokens, l->kv_heads,
               l->head_dim, l->dtype_size, l->num_blocks,
               (unsigned long long)l->block_bytes,
               (unsigned long long)l->block_bytes * l->num_blocks);
        cli_print_stats_json(s);
        printf(",\"ok\":true}\n");
    } else {
        printf("node %s: pool of %u blocks x %llu bytes (%u layers, %s, "
               "%u tokens, %u kv heads x %u, %u-byte elements)\n",
               kvx_client_node_id(client), l->num_blocks,
               (unsigned long long)l->block_bytes, l->num_layers,
               l->kv_parts == 2 ? "K+V" : "latent", l->block_tokens,
               l->kv_heads, l->head_dim, l->dtype_size);
        cli_print_stats_text(s);
    }
    rc = CLI_EXIT_OK;
out:
    kvx_client_detach(client);
    free(s);
    return rc;
}
