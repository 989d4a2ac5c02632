/*
 * Local engine sessions, node side (engine_int.h): the peers the sessions
 * name. A push or pull names its peer by node id or control address; a
 * peer not connected yet is connected to. Peers the sessions made the node
 * connect are kept for reuse and closed once they failed, so the next
 * request connects again. A node id whose connection died (the peer was
 * restarted, say) is connected again at the address this node last reached
 * it at: the known-peers table kvxi_engine_peer_up() fills. Also PeerList.
 */
#include "engine_int.h"

#include "log_int.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------
 * Peers.
 */

int kvxi_engine_peer_alive(struct kvx_node *node, const struct kvx_peer *peer)
{
    for (struct kvx_peer *p = node->peers; p != NULL; p = p->next) {
        if (p == peer) {
            return 1;
        }
    }
    return 0;
}

/* A connected peer with that node id or address, else one connecting to
 * that address. */
static struct kvx_peer *peer_find(struct kvx_node *node, const char *name)
{
    struct kvx_peer *p, *connecting = NULL;

    for (p = node->peers; p != NULL; p = p->next) {
        if (p->status == KVX_OK && p->info != NULL &&
            strcmp(p->info->node_id, name) == 0) {
            return p;
        }
    }
    for (p = node->peers; p != NULL; p = p->next) {
        if (strcmp(p->addr, name) != 0) {
            continue;
        }
        if (p->status == KVX_OK) {
            return p;
        }
        if (p->status == KVX_INPROGRESS && connecting == NULL) {
            connecting = p;
        }
    }
    return connecting;
}

static kvxi_known_peer_t *known_find(struct kvxi_engine *eng,
                                     const char *node_id)
{
    for (uint32_t i = 0; i < eng->n_known; i++) {
        if (strcmp(eng->known[i].node_id, node_id) == 0) {
            return &eng->known[i];
        }
    }
    return NULL;
}

void kvxi_engine_peer_up(struct kvx_peer *peer)
{
    struct kvxi_engine *eng = peer->node->engine;
    kvxi_known_peer_t *k;

    if (eng == NULL || !peer->is_client || peer->info == NULL) {
        return; /* an accepted peer's address is its outgoing port */
    }
    k = known_find(eng, peer->info->node_id);
    if (k == NULL && eng->n_known == eng->cap_known &&
        eng->cap_known < KVXI_ENGINE_KNOWN_MAX) {
        uint32_t cap = eng->cap_known ? eng->cap_known * 2 : 16;
        kvxi_known_peer_t *p = realloc(eng->known, cap * sizeof(*p));

        if (p != NULL) {
            eng->known = p;
            eng->cap_known = cap;
        }
    }
    if (k == NULL && eng->n_known < eng->cap_known) {
        k = &eng->known[eng->n_known++];
    } else if (k == NULL && eng->n_known > 0) {
        k = &eng->known[eng->next_known++ % eng->n_known]; /* full */
    }
    if (k != NULL) {
        snprintf(k->node_id, sizeof(k->node_id), "%s", peer->info->node_id);
        snprintf(k->addr, sizeof(k->addr), "%s", peer->addr);
    }
}

/* The peer @p name (a node id or an address): connected, connecting, or
 * connected to now. *@p by_id_p: @p name is a node id whose connection is
 * gone, reached again at its known address. */
kvx_status_t kvxi_engine_peer_get(struct kvxi_engine *eng, const char *name,
                                  struct kvx_peer **peer_p, int *by_id_p)
{
    struct sockaddr_storage ss;
    kvxi_known_peer_t *k;
    socklen_t len;
    kvx_status_t st;

    *by_id_p = 0;
    *peer_p = peer_find(eng->node, name);
    if (*peer_p != NULL) {
        return KVX_OK;
    }
    if (kvxi_addr_parse(name, &ss, &len) != KVX_OK) {
        k = known_find(eng, name);
        if (k == NULL) {
            kvxi_warn("node %s: engine: no peer '%s' (not connected, not an "
                      "address)",
                      eng->node->node_id, name);
            return KVX_ERR_NOT_FOUND;
        }
        kvxi_info("node %s: engine: peer %s is not connected: connecting to "
                  "%s, its last address",
                  eng->node->node_id, name, k->addr);
        *by_id_p = 1;
        name = k->addr;
        *peer_p = peer_find(eng->node, name);
        if (*peer_p != NULL) {
            return KVX_OK;
        }
    }
    if (eng->n_peers == eng->cap_peers) {
        uint32_t cap = eng->cap_peers ? eng->cap_peers * 2 : 8;
        struct kvx_peer **p = realloc(eng->peers, cap * sizeof(*p));

        if (p == NULL) {
            return KVX_ERR_NO_MEMORY;
        }
        eng->peers = p;
        eng->cap_peers = cap;
    }
    st = kvx_node_connect(eng->node, name, peer_p);
    if (st == KVX_OK) {
        eng->peers[eng->n_peers++] = *peer_p;
    }
    return st;
}

/* Forgets peers closed by others; closes failed ones the sessions made. */
void kvxi_engine_peers_gc(struct kvxi_engine *eng)
{
    for (uint32_t i = 0; i < eng->n_peers;) {
        struct kvx_peer *p = eng->peers[i];
        int alive = kvxi_engine_peer_alive(eng->node, p);

        if (alive && (p->status == KVX_OK || p->status == KVX_INPROGRESS)) {
            i++;
            continue;
        }
        if (alive) {
            kvx_peer_close(p);
        }
        eng->peers[i] = eng->peers[--eng->n_peers];
    }
}

/* ------------------------------------------------------------------------
 * PeerList.
 */

void kvxi_engine_on_peer_list(kvxi_session_t *s, const kvxi_envelope_t *env)
{
    kvxi_envelope_t out = KVX__V1__ENVELOPE__INIT;
    Kvx__V1__PeerListReply r = KVX__V1__PEER_LIST_REPLY__INIT;
    Kvx__V1__PeerInfo *infos = NULL, **ptrs = NULL;
    struct kvx_peer *p;
    size_t n = 0;

    for (p = s->eng->node->peers; p != NULL; p = p->next) {
        n += n < KVXI_ENGINE_PEERS_MAX;
    }
    if (n > 0) {
        infos = calloc(n, sizeof(*infos));
        ptrs = calloc(n, sizeof(*ptrs));
        if (infos == NULL || ptrs == NULL) {
            free(infos);
            free(ptrs);
            kvxi_session_error(s, env->request_id, KVX_ERR_NO_MEMORY,
                               "out of memory");
            return;
        }
    }
    p = s->eng->node->peers;
    for (size_t i = 0; i < n; i++, p = p->next) {
        Kvx__V1__PeerInfo *e = &infos[i];

        kvx__v1__peer_info__init(e);
        e->addr = p->addr;
        e->node_id = p->info != NULL ? p->info->node_id : (char *)"";
        e->status = (Kvx__V1__Status)kvxi_status_to_wire(p->status);
        if (p->status == KVX_OK) {
            e->data_path = p->transport == KVX_TRANSPORT_RMA
                               ? KVX__V1__DATA_PATH__DATA_PATH_RMA
                               : KVX__V1__DATA_PATH__DATA_PATH_AM;
        }
        e->rtt_us = p->conn != NULL ? kvxi_conn_rtt_us(p->conn) : 0;
        e->outgoing = p->is_client != 0;
        ptrs[i] = e;
    }
    r.n_peers = n;
    r.peers = ptrs;
    out.request_id = env->request_id;
    out.body_case = KVX__V1__ENVELOPE__BODY_PEER_LIST_REPLY;
    out.peer_list_reply = &r;
    kvxi_session_send(s, &out);
    free(ptrs);
    free(infos);
}
