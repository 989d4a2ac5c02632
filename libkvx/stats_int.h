/*
 * The StatsReply -> kvx_node_stats_t conversion (node_stats.c), shared by
 * the node (kvx_peer_stats()) and the engine client library
 * (kvx_client_stats()) without pulling in the node's internals.
 */
#ifndef KVX_STATS_INT_H
#define KVX_STATS_INT_H

#include <kvx/node.h>

#include "frame_int.h"

/**
 * Fills @p s (cleared first) from a received, validated StatsReply @p r:
 * the fixed counters, then the named ones in order; a name already present
 * is skipped, and names beyond KVX_NODE_STATS_COUNTERS_MAX (or not 1 ..
 * KVX_STAT_NAME_MAX bytes long) are counted in s->counters_dropped.
 */
void kvxi_stats_from_wire(const Kvx__V1__StatsReply *r, kvx_node_stats_t *s);

#endif /* KVX_STATS_INT_H */
