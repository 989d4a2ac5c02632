/*
 * Local engine sessions, node side (engine_int.h): the requests that move
 * blocks between nodes (PushStart, PullStart, LayerReady, Abort,
 * PublishStart, Unpublish), collecting received requests (Recv), and
 * kvxi_engine_poll(), which reports what ended.
 *
 * A push or pull names its peer by node id or control address
 * (kvxi_engine_peer_get(), engine_peer.c). A peer the node is still
 * connecting to is waited for: the session's transfer exists at once
 * (Result carries its id), the node's kvx_node_push() / kvx_node_pull()
 * starts once the peer is connected, and a peer that fails ends the
 * transfer with the peer's status. A transfer that reconnected by node id
 * goes only to a node that answers with that id (KVX_ERR_PEER_REFUSED
 * otherwise).
 */
#include "engine_int.h"

#include "log_int.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------
 * Session transfers.
 */

static kvxi_sess_xfer_t *xfer_find(kvxi_session_t *s, uint64_t id)
{
    kvxi_sess_xfer_t *xf = s->xfers;

    while (xf != NULL && xf->id != id) {
        xf = xf->next;
    }
    return xf;
}

static void xfer_unlink(kvxi_session_t *s, kvxi_sess_xfer_t *xf)
{
    kvxi_sess_xfer_t **pp = &s->xfers;

    while (*pp != xf) {
        pp = &(*pp)->next;
    }
    *pp = xf->next;
}

static void xfer_free(kvxi_session_t *s, kvxi_sess_xfer_t *xf)
{
    if (xf->x != NULL) {
        kvx_xfer_release(xf->x); /* aborts it if it still runs */
    } else if (xf->refs != NULL) {
        kvxi_engine_unpin(s->eng->node, xf->refs, xf->n_blocks);
    }
    free(xf->refs);
    free(xf->keys);
    free(xf->node_id);
    free(xf);
}

/* XferDone for @p xf (unlinked), then frees it. */
static void xfer_done(kvxi_session_t *s, kvxi_sess_xfer_t *xf,
                      kvx_status_t status)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT;
    Kvx__V1__XferDone d = KVX__V1__XFER_DONE__INIT;
    kvx_xfer_attr_t a;

    memset(&a, 0, sizeof(a));
    a.n_blocks = xf->n_blocks;
    a.elapsed_ns = kvxi_node_now_ns() - xf->t_start_ns;
    if (xf->x != NULL) {
        kvx_xfer_query(xf->x, &a);
    }
    d.xfer_id = xf->id;
    d.status = (Kvx__V1__Status)kvxi_status_to_wire(status);
    d.block_count = a.n_blocks;
    d.blocks_hit = a.blocks_hit;
    d.blocks_sent = a.blocks_sent;
    d.bytes_sent = a.bytes_sent;
    d.segments = a.segments;
    d.data_path = a.transport == KVX_TRANSPORT_RMA
                      ? KVX__V1__DATA_PATH__DATA_PATH_RMA
                  : a.transport == KVX_TRANSPORT_AM
                      ? KVX__V1__DATA_PATH__DATA_PATH_AM
                      : KVX__V1__DATA_PATH__DATA_PATH_UNSPECIFIED;
    d.elapsed_ns = a.elapsed_ns;
    d.checksum_mismatches = a.checksum_mismatches;
    env.body_case = KVX__V1__ENVELOPE__BODY_XFER_DONE;
    env.xfer_done = &d;
    xfer_free(s, xf);
    kvxi_session_send(s, &env);
}

/* A transfer that reconnected by node id goes to that node only. */
static kvx_status_t xfer_peer_named(const kvxi_sess_xfer_t *xf)
{
    if (xf->node_id == NULL ||
        strcmp(xf->peer->info->node_id, xf->node_id) == 0) {
        return KVX_OK;
    }
    kvxi_warn("node %s: engine: %s answers as '%s', not '%s': transfer "
              "refused",
              xf->peer->node->node_id, xf->peer->addr, xf->peer->info->node_id,
              xf->node_id);
    return KVX_ERR_PEER_REFUSED;
}

static uint32_t ms_left(uint64_t deadline_ns, uint64_t now)
{
    uint64_t ms = (deadline_ns - now + 999999) / 1000000ull;

    return ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
}

/* Starts the node's transfer of a session transfer that waited for its
 * peer. @return the status kvx_node_push/pull() refused it with. */
static kvx_status_t xfer_start(kvxi_session_t *s, kvxi_sess_xfer_t *xf,
                               uint64_t now)
{
    struct kvx_node *node = s->eng->node;
    uint32_t ms = ms_left(xf->deadline_ns, now);
    kvx_pull_params_t pp = {
        .field_mask = KVX_PULL_PARAM_FIELD_REQUEST_ID |
                      KVX_PULL_PARAM_FIELD_N_BLOCKS |
                      KVX_PULL_PARAM_FIELD_DEADLINE |
                      (xf->keys ? KVX_PULL_PARAM_FIELD_KEYS : 0) |
                      (xf->flags ? KVX_PULL_PARAM_FIELD_FLAGS : 0),
        .request_id = xf->request_id,
        .n_blocks = xf->n_blocks,
        .keys = xf->keys,
        .deadline_ms = ms,
        .flags = xf->flags,
    };
    kvx_xfer_params_t xp = {
        .field_mask = KVX_XFER_PARAM_FIELD_REQUEST_ID |
                      KVX_XFER_PARAM_FIELD_BLOCKS |
                      KVX_XFER_PARAM_FIELD_DEADLINE |
                      (xf->keys ? KVX_XFER_PARAM_FIELD_KEYS : 0) |
                      (xf->flags ? KVX_XFER_PARAM_FIELD_FLAGS : 0),
        .request_id = xf->request_id,
        .blocks = xf->refs,
        .n_blocks = xf->n_blocks,
        .keys = xf->keys,
        .deadline_ms = ms,
        .flags = xf->flags,
    };
    kvx_status_t st = xfer_peer_named(xf);

    if (st != KVX_OK) {
        return st;
    }
    if (xf->pull) {
        return kvx_node_pull(node, xf->peer, &pp, &xf->x);
    }
    st = kvx_node_push(node, xf->peer, &xp, &xf->x);
    if (st == KVX_OK) {
        kvxi_engine_unpin(node, xf->refs, xf->n_blocks); /* push pins them */
        free(xf->refs);
        xf->refs = NULL;
        if (xf->layer_end > 0) {
            kvx_xfer_layer_ready(xf->x, xf->layer_end);
        }
    }
    return st;
}

/* The common part of PushStart and PullStart: a new session transfer on
 * @p name's peer; started at once when the peer is connected. Answers the
 * request (Result) in every case. */
static void xfer_begin(kvxi_session_t *s, const kvxi_envelope_t *env,
                       kvxi_sess_xfer_t *xf, const char *name,
                       uint32_t deadline_ms, const ProtobufCBinaryData *keys)
{
    uint64_t now = kvxi_node_now_ns();
    kvx_status_t st;
    int by_id;

    xf->id = s->next_xfer + 1;
    xf->t_start_ns = now;
    xf->deadline_ns =
        now +
        (uint64_t)(deadline_ms ? deadline_ms : KVXI_NODE_DEADLINE_MS_DEFAULT) *
            1000000ull;
    st = kvxi_engine_peer_get(s->eng, name, &xf->peer, &by_id);
    if (st == KVX_OK && by_id) {
        xf->node_id = strdup(name);
        st = xf->node_id != NULL ? KVX_OK : KVX_ERR_NO_MEMORY;
    }
    if (st == KVX_OK && keys->len > 0) {
        xf->keys = malloc(keys->len);
        st = xf->keys != NULL ? KVX_OK : KVX_ERR_NO_MEMORY;
        if (st == KVX_OK) {
            memcpy(xf->keys, keys->data, keys->len);
        }
    }
    if (st == KVX_OK && xf->peer->status == KVX_OK) {
        st = xfer_start(s, xf, now);
        free(xf->keys);
        xf->keys = NULL;
    }
    if (st != KVX_OK) {
        xf->x = NULL; /* nothing started */
        xfer_free(s, xf);
        kvxi_session_result(s, env->request_id, st, 0);
        return;
    }
    s->next_xfer++;
    xf->next = s->xfers;
    s->xfers = xf;
    kvxi_node_timer_rearm(s->eng->node);
    kvxi_session_result(s, env->request_id, KVX_OK, xf->id);
}

void kvxi_engine_on_push(kvxi_session_t *s, const kvxi_envelope_t *env)
{
    const Kvx__V1__PushStart *ps = env->push_start;
    struct kvx_node *node = s->eng->node;
    kvxi_sess_xfer_t *xf = calloc(1, sizeof(*xf));
    uint32_t n = (uint32_t)ps->blocks->n_blocks, pinned = 0;
    kvx_status_t st = KVX_OK;

    if (xf == NULL || (xf->refs = malloc(n * sizeof(*xf->refs))) == NULL) {
        free(xf);
        kvxi_session_result(s, env->request_id, KVX_ERR_NO_MEMORY, 0);
        return;
    }
    xf->n_blocks = n;
    xf->request_id = ps->request_id;
    xf->flags = ps->flags;
    for (uint32_t i = 0; i < n && st == KVX_OK; i++) {
        xf->refs[i] =
            (kvx_block_ref_t){ps->blocks->blocks[i], ps->blocks->gens[i]};
        st = kvxi_session_holds(s, xf->refs[i]) ? KVX_OK : KVX_ERR_STALE_HANDLE;
    }
    /* Pinned once more while waiting for the peer: the engine may release
     * its holds once PushStart is answered. */
    for (; st == KVX_OK && pinned < n; pinned++) {
        st = kvx_alloc_pin(node->alloc, xf->refs[pinned]);
    }
    if (st != KVX_OK) {
        kvxi_engine_unpin(node, xf->refs, pinned ? pinned - 1 : 0);
        free(xf->refs);
        free(xf);
        kvxi_session_result(s, env->request_id, st, 0);
        return;
    }
    xfer_begin(s, env, xf, ps->peer, ps->deadline_ms, &ps->keys);
}

void kvxi_engine_on_pull(kvxi_session_t *s, const kvxi_envelope_t *env)
{
    const Kvx__V1__PullStart *ps = env->pull_start;
    kvxi_sess_xfer_t *xf = calloc(1, sizeof(*xf));

    if (xf == NULL) {
        kvxi_session_result(s, env->request_id, KVX_ERR_NO_MEMORY, 0);
        return;
    }
    xf->pull = 1;
    xf->n_blocks = ps->block_count;
    xf->request_id = ps->request_id;
    xf->flags = ps->flags;
    xfer_begin(s, env, xf, ps->peer, ps->deadline_ms, &ps->keys);
}

void kvxi_engine_on_layer_ready(kvxi_session_t *s, const kvxi_envelope_t *env)
{
    const Kvx__V1__LayerReady *lr = env->layer_ready;
    kvxi_sess_xfer_t *xf = xfer_find(s, lr->transfer_id);
    uint32_t end = lr->layers->first + lr->layers->count;
    kvx_status_t st = KVX_OK;

    if (xf == NULL) {
        st = lr->transfer_id <= s->next_xfer ? KVX_ERR_BAD_STATE
                                             : KVX_ERR_NOT_FOUND;
    } else if (xf->x != NULL) {
        st = kvx_xfer_layer_ready(xf->x, end);
    } else if (xf->pull || !(xf->flags & KVX_XFER_FLAG_LAYERWISE) ||
               end > s->eng->node->layout.num_layers || end < xf->layer_end) {
        st = KVX_ERR_INVALID_PARAM;
    } else {
        xf->layer_end = end; /* applied when the push starts */
    }
    kvxi_session_result(s, env->request_id, st, 0);
}

void kvxi_engine_on_abort(kvxi_session_t *s, const kvxi_envelope_t *env)
{
    uint64_t id = env->abort->transfer_id;
    kvxi_sess_xfer_t *xf = xfer_find(s, id);

    if (xf == NULL) {
        kvxi_session_result(
            s, env->request_id,
            id <= s->next_xfer ? KVX_ERR_BAD_STATE : KVX_ERR_NOT_FOUND, 0);
    } else if (xf->x != NULL) {
        kvxi_session_result(s, env->request_id, kvx_xfer_abort(xf->x), 0);
    } else {
        xfer_unlink(s, xf);
        kvxi_session_result(s, env->request_id, KVX_OK, 0);
        xfer_done(s, xf, KVX_ERR_ABORTED); /* frees xf even if closing */
    }
}

void kvxi_engine_on_publish(kvxi_session_t *s, const kvxi_envelope_t *env)
{
    const Kvx__V1__PublishStart *ps = env->publish_start;
    uint32_t n = (uint32_t)ps->blocks->n_blocks;
    kvx_block_ref_t *refs = malloc(n * sizeof(*refs));
    kvx_publish_params_t p = {
        .field_mask =
            KVX_PUBLISH_PARAM_FIELD_REQUEST_ID | KVX_PUBLISH_PARAM_FIELD_BLOCKS,
        .request_id = ps->request_id,
        .blocks = refs,
        .n_blocks = n,
        .keys = (const kvx_block_key_t *)ps->keys.data,
        .lease_ms = ps->lease_ms,
    };
    kvx_status_t st = refs != NULL ? KVX_OK : KVX_ERR_NO_MEMORY;

    for (uint32_t i = 0; i < n && st == KVX_OK; i++) {
        refs[i] = (kvx_block_ref_t){ps->blocks->blocks[i], ps->blocks->gens[i]};
        st = kvxi_session_holds(s, refs[i]) ? KVX_OK : KVX_ERR_STALE_HANDLE;
    }
    p.field_mask |= (ps->keys.len > 0 ? KVX_PUBLISH_PARAM_FIELD_KEYS : 0) |
                    (ps->lease_ms > 0 ? KVX_PUBLISH_PARAM_FIELD_LEASE : 0);
    if (st == KVX_OK) {
        st = kvx_node_publish(s->eng->node, &p, NULL);
    }
    free(refs);
    kvxi_session_result(s, env->request_id, st, 0);
}

void kvxi_engine_on_unpublish(kvxi_session_t *s, const kvxi_envelope_t *env)
{
    kvxi_session_result(
        s, env->request_id,
        kvx_node_unpublish(s->eng->node, env->unpublish->request_id), 0);
}

/* Ends every transfer of an ending session; no XferDone is sent. */
void kvxi_engine_xfers_end(kvxi_session_t *s)
{
    while (s->xfers != NULL) {
        kvxi_sess_xfer_t *xf = s->xfers;

        s->xfers = xf->next;
        xfer_free(s, xf);
    }
    while (s->recvs != NULL) {
        kvxi_sess_recv_t *r = s->recvs;

        s->recvs = r->next;
        free(r);
    }
}

/* ------------------------------------------------------------------------
 * Recv.
 */

/* @p wire: room for 2 * @p n words with KVX_OK. */
static void recv_reply(kvxi_session_t *s, uint64_t req_id, kvx_status_t st,
                       uint32_t n, const kvx_block_ref_t *refs, uint32_t *wire)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT;
    Kvx__V1__RecvReply r = KVX__V1__RECV_REPLY__INIT;
    Kvx__V1__BlockRefs b = KVX__V1__BLOCK_REFS__INIT;

    r.status = (Kvx__V1__Status)kvxi_status_to_wire(st);
    r.block_count = st == KVX_OK || st == KVX_ERR_NO_SPACE ? n : 0;
    if (st == KVX_OK) {
        for (uint32_t i = 0; i < n; i++) {
            wire[i] = refs[i].block;
            wire[n + i] = refs[i].gen;
        }
        b.n_blocks = b.n_gens = n;
        b.blocks = wire;
        b.gens = wire + n;
        r.blocks = &b;
    }
    env.request_id = req_id;
    env.body_case = KVX__V1__ENVELOPE__BODY_RECV_REPLY;
    env.recv_reply = &r;
    kvxi_session_send(s, &env);
}

/* Asks the node once (never waits). @return 1 if answered; 0 if the
 * request is not complete (INPROGRESS, NOT_FOUND) and @p last is 0. */
static int recv_try(kvxi_session_t *s, uint64_t req_id, uint64_t request_id,
                    uint32_t max, int last)
{
    struct kvx_node *node = s->eng->node;
    kvx_block_ref_t *refs;
    uint32_t n = 0, *wire;
    kvx_status_t st;

    /* max 0 probes: NO_SPACE with the count when complete, nothing taken */
    st = kvx_node_recv(node, request_id, 0, NULL, 0, &n);
    if (st != KVX_ERR_NO_SPACE || n > max) {
        if (!last && (st == KVX_INPROGRESS || st == KVX_ERR_NOT_FOUND)) {
            return 0;
        }
        recv_reply(s, req_id, st, n, NULL, NULL);
        return 1;
    }
    refs = malloc(n * sizeof(*refs));
    wire = malloc(2 * (size_t)n * sizeof(*wire));
    if (refs == NULL || wire == NULL) {
        st = KVX_ERR_NO_MEMORY; /* nothing taken: the engine may retry */
    } else {
        st = kvx_node_recv(node, request_id, 0, refs, n, &n);
    }
    for (uint32_t i = 0; st == KVX_OK && i < n; i++) {
        kvxi_session_hold_add(s, refs[i]); /* the pins recv handed over */
    }
    recv_reply(s, req_id, st, n, refs, wire);
    free(wire);
    free(refs);
    return 1;
}

void kvxi_engine_on_recv(kvxi_session_t *s, const kvxi_envelope_t *env)
{
    const Kvx__V1__Recv *rv = env->recv;
    kvxi_sess_recv_t *r;

    if (recv_try(s, env->request_id, rv->request_id, rv->max_blocks,
                 rv->timeout_ms == 0)) {
        return;
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        recv_reply(s, env->request_id, KVX_ERR_NO_MEMORY, 0, NULL, NULL);
        return;
    }
    r->req_id = env->request_id;
    r->request_id = rv->request_id;
    r->max_blocks = rv->max_blocks;
    r->deadline_ns = kvxi_node_now_ns() + (uint64_t)rv->timeout_ms * 1000000ull;
    r->next = s->recvs;
    s->recvs = r;
    kvxi_node_timer_rearm(s->eng->node);
}

/* ------------------------------------------------------------------------
 * Progress.
 */

static void xfers_poll(kvxi_session_t *s, uint64_t now)
{
    kvxi_sess_xfer_t *xf = s->xfers, *next;

    for (; xf != NULL && !s->closing; xf = next) {
        kvx_status_t st;

        next = xf->next;
        if (xf->x != NULL) {
            st = kvx_xfer_test(xf->x);
        } else if (!kvxi_engine_peer_alive(s->eng->node, xf->peer)) {
            st = KVX_ERR_PEER_DOWN;
        } else if (xf->peer->status == KVX_OK) {
            st = xfer_start(s, xf, now);
            st = st == KVX_OK ? KVX_INPROGRESS : st;
        } else if (xf->peer->status != KVX_INPROGRESS) {
            st = xf->peer->status;
        } else {
            st = now >= xf->deadline_ns ? KVX_ERR_TIMEOUT : KVX_INPROGRESS;
        }
        if (st != KVX_INPROGRESS) {
            xfer_unlink(s, xf);
            xfer_done(s, xf, st);
        }
    }
}

static void recvs_poll(kvxi_session_t *s, uint64_t now)
{
    kvxi_sess_recv_t **pp = &s->recvs;

    while (!s->closing && *pp != NULL) { /* closing: the list is gone */
        kvxi_sess_recv_t *r = *pp;

        *pp = r->next; /* unlinked while answering */
        if (recv_try(s, r->req_id, r->request_id, r->max_blocks,
                     now >= r->deadline_ns)) {
            free(r);
            continue;
        }
        r->next = *pp;
        *pp = r;
        pp = &r->next;
    }
}

void kvxi_engine_poll(struct kvx_node *node)
{
    struct kvxi_engine *eng = node->engine;
    uint64_t now = kvxi_node_now_ns();

    if (eng == NULL) {
        return;
    }
    for (kvxi_session_t *s = eng->sessions; s != NULL; s = s->next) {
        if (s->closing || !s->attached) {
            continue;
        }
        kvxi_engine_leases_expire(s, now);
        xfers_poll(s, now);
        recvs_poll(s, now);
    }
    kvxi_engine_peers_gc(eng);
}

void kvxi_engine_next_deadline(struct kvx_node *node, uint64_t *next_p)
{
    struct kvxi_engine *eng = node->engine;

    if (eng == NULL) {
        return;
    }
    for (kvxi_session_t *s = eng->sessions; s != NULL; s = s->next) {
        if (s->closing) {
            continue;
        }
        for (kvxi_sess_recv_t *r = s->recvs; r != NULL; r = r->next) {
            if (r->deadline_ns < *next_p) {
                *next_p = r->deadline_ns;
            }
        }
        for (kvxi_sess_xfer_t *xf = s->xfers; xf != NULL; xf = xf->next) {
            if (xf->x == NULL && xf->deadline_ns < *next_p) {
                *next_p = xf->deadline_ns;
            }
        }
    }
}
