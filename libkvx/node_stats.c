/*
 * Node stats: the local snapshot (kvx_node_stats()), the answer to a peer's
 * Stats request (StatsReply), asking a peer (kvx_peer_stats()) and reading
 * a StatsReply back (kvxi_stats_from_wire(), stats_int.h: also used by
 * kvx_client_stats()).
 *
 * One kvx_node_stats_t is both the local form and what a StatsReply is
 * built from and parsed into, so the wire carries exactly what the local
 * call reports.
 */
#include "node_int.h"

#include "log_int.h"
#include "stats_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Adds a named counter unless the name is too long, already present or the
 * table is full (counted as dropped). */
static void stats_add(kvx_node_stats_t *s, uint64_t value, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void stats_add(kvx_node_stats_t *s, uint64_t value, const char *fmt, ...)
{
    char name[KVX_STAT_NAME_MAX + 2];
    va_list ap;
    int len;

    va_start(ap, fmt);
    len = vsnprintf(name, sizeof(name), fmt, ap);
    va_end(ap);
    if (len < 1 || len > KVX_STAT_NAME_MAX) {
        s->counters_dropped++;
        return;
    }
    for (uint32_t i = 0; i < s->n_counters; i++) {
        if (strcmp(s->counters[i].name, name) == 0) {
            return; /* e.g. two connections to one node id */
        }
    }
    if (s->n_counters == KVX_NODE_STATS_COUNTERS_MAX) {
        s->counters_dropped++;
        return;
    }
    memcpy(s->counters[s->n_counters].name, name, (size_t)len + 1);
    s->counters[s->n_counters].value = value;
    s->n_counters++;
}

kvx_status_t kvx_node_stats(kvx_node_h node, kvx_node_stats_t *s)
{
    const kvxi_node_stats_t *c;
    kvx_alloc_attr_t a;
    uint64_t peers = 0, sending = 0, receiving = 0, uncollected = 0;

    if (node == NULL || s == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    c = &node->stats;
    memset(s, 0, sizeof(*s));
    kvx_alloc_query(node->alloc, &a);
    s->blocks_total = a.block_count;
    s->blocks_free = a.n_free;
    s->blocks_cached = a.n_cached;
    s->leases_active = a.leases_active;
    s->leases_fenced = a.leases_fenced;
    s->transfers_ok = c->transfers_ok;
    s->transfers_failed = c->transfers_failed;
    s->bytes_sent = c->bytes_sent;
    s->bytes_received = c->bytes_received;
    s->dedupe_hit_blocks = c->dedupe_hit_blocks;
    for (struct kvx_peer *p = node->peers; p != NULL; p = p->next) {
        peers += p->status == KVX_OK;
    }
    for (struct kvx_xfer *x = node->xfers; x != NULL; x = x->next) {
        sending += x->state != KVXI_XFER_DONE;
    }
    for (kvxi_rx_t *rx = node->rxs; rx != NULL; rx = rx->next) {
        receiving += rx->state == KVXI_RX_RESERVED;
        uncollected +=
            rx->state != KVXI_RX_RESERVED && !rx->reported && !rx->superseded;
    }
    stats_add(s, peers, "peers.connected");
    stats_add(s, sending, "xfers.sending");
    stats_add(s, receiving, "xfers.receiving");
    stats_add(s, uncollected, "xfers.uncollected");
    stats_add(s, c->blocks_verified, "blocks.verified");
    stats_add(s, c->checksum_mismatches, "checksum.mismatches");
    stats_add(s, c->am_refused, "am.refused");
    stats_add(s, c->loop_sleeps, "loop.sleeps");
    stats_add(s, c->loop_polls, "loop.polls");
    stats_add(s, (kvxi_node_now_ns() - node->t_created) / 1000000ull,
              "uptime.ms");
    for (struct kvx_peer *p = node->peers; p != NULL; p = p->next) {
        if (p->status == KVX_OK && p->info != NULL) {
            stats_add(s, (uint64_t)p->transport, "peer.%s.transport",
                      p->info->node_id);
        }
    }
    return KVX_OK;
}

void kvxi_node_stats_wire(struct kvx_node *node, kvxi_stats_wire_t *w)
{
    kvx_node_stats_t *s = &w->stats;
    Kvx__V1__StatsReply *r = &w->reply;

    kvx_node_stats(node, s);
    kvx__v1__stats_reply__init(r);
    r->blocks_total = s->blocks_total;
    r->blocks_free = s->blocks_free;
    r->blocks_cached = s->blocks_cached;
    r->leases_active = s->leases_active;
    r->leases_fenced = s->leases_fenced;
    r->transfers_ok = s->transfers_ok;
    r->transfers_failed = s->transfers_failed;
    r->bytes_sent = s->bytes_sent;
    r->bytes_received = s->bytes_received;
    r->dedupe_hit_blocks = s->dedupe_hit_blocks;
    for (uint32_t i = 0; i < s->n_counters; i++) {
        Kvx__V1__StatsReply__CountersEntry e =
            KVX__V1__STATS_REPLY__COUNTERS_ENTRY__INIT;

        e.key = s->counters[i].name;
        e.value = s->counters[i].value;
        w->ents[i] = e;
        w->ptrs[i] = &w->ents[i];
    }
    r->n_counters = s->n_counters;
    r->counters = w->ptrs;
}

void kvxi_stats_from_wire(const Kvx__V1__StatsReply *r, kvx_node_stats_t *s)
{
    memset(s, 0, sizeof(*s));
    s->blocks_total = r->blocks_total;
    s->blocks_free = r->blocks_free;
    s->blocks_cached = r->blocks_cached;
    s->leases_active = r->leases_active;
    s->leases_fenced = r->leases_fenced;
    s->transfers_ok = r->transfers_ok;
    s->transfers_failed = r->transfers_failed;
    s->bytes_sent = r->bytes_sent;
    s->bytes_received = r->bytes_received;
    s->dedupe_hit_blocks = r->dedupe_hit_blocks;
    /* Names were validated (1 .. 128 bytes) by the frame decoder. */
    for (size_t i = 0; i < r->n_counters; i++) {
        stats_add(s, r->counters[i]->value, "%s", r->counters[i]->key);
    }
}

void kvxi_node_on_stats(struct kvx_peer *peer, const kvxi_envelope_t *env)
{
    kvxi_envelope_t out = KVX__V1__ENVELOPE__INIT;
    kvxi_stats_wire_t *w = malloc(sizeof(*w));

    if (w == NULL) {
        kvxi_peer_send_error(peer, env->request_id, KVX_ERR_NO_MEMORY,
                             "out of memory");
        return;
    }
    kvxi_node_stats_wire(peer->node, w);
    out.request_id = env->request_id;
    out.body_case = KVX__V1__ENVELOPE__BODY_STATS_REPLY;
    out.stats_reply = &w->reply;
    kvxi_peer_send(peer, &out);
    free(w);
}

void kvxi_node_on_stats_reply(struct kvx_peer *peer, const kvxi_envelope_t *env)
{
    if (peer->stats_req == 0 || env->request_id != peer->stats_req) {
        kvxi_debug("node %s: peer %s: StatsReply %llu not awaited: ignored",
                   peer->node->node_id, peer->addr,
                   (unsigned long long)env->request_id);
        return;
    }
    kvxi_stats_from_wire(env->stats_reply, peer->stats_out);
    peer->stats_req = 0;
    peer->stats_status = KVX_OK;
}

int kvxi_node_stats_on_error(struct kvx_peer *peer, const kvxi_envelope_t *env)
{
    kvx_status_t code;

    if (peer->stats_req == 0 || env->error->request_id != peer->stats_req) {
        return 0;
    }
    code = kvxi_status_from_wire(env->error->code);
    peer->stats_req = 0;
    peer->stats_status = code < KVX_OK ? code : KVX_ERR_PEER_REFUSED;
    return 1;
}

kvx_status_t kvx_peer_stats(kvx_peer_h peer, uint32_t timeout_ms,
                            kvx_node_stats_t *stats)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT;
    Kvx__V1__Stats body = KVX__V1__STATS__INIT;
    kvx_node_stats_t *tmp;
    kvx_status_t status;
    uint64_t end;

    if (peer == NULL || stats == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    if (peer->status != KVX_OK || peer->stats_req != 0) {
        return peer->status == KVX_OK || peer->status == KVX_INPROGRESS
                   ? KVX_ERR_BAD_STATE
                   : peer->status;
    }
    tmp = malloc(sizeof(*tmp)); /* written only on success */
    if (tmp == NULL) {
        return KVX_ERR_NO_MEMORY;
    }
    env.deadline_us = (uint64_t)timeout_ms * 1000;
    env.body_case = KVX__V1__ENVELOPE__BODY_STATS;
    env.stats = &body;
    status = kvxi_peer_send(peer, &env);
    if (status != KVX_OK) {
        free(tmp);
        return status;
    }
    peer->stats_req = env.request_id;
    peer->stats_out = tmp;
    peer->stats_status = KVX_INPROGRESS;
    end = kvxi_node_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    while (peer->stats_status == KVX_INPROGRESS && peer->status == KVX_OK) {
        uint64_t now = kvxi_node_now_ns();

        if (now >= end) {
            break;
        }
        kvx_node_progress(peer->node,
                          (uint32_t)((end - now + 999999) / 1000000ull));
    }
    status = peer->stats_status;
    if (status == KVX_INPROGRESS) {
        status = peer->status == KVX_OK ? KVX_ERR_TIMEOUT : peer->status;
    }
    peer->stats_req = 0;
    peer->stats_out = NULL;
    if (status == KVX_OK) {
        memcpy(stats, tmp, sizeof(*stats));
    }
    free(tmp);
    return status;
}
