/*
 * The engine client (kvx/client.h): attach to a local node over its unix
 * socket, map its pool, and drive reservations and transfers by requests
 * (proto/kvx.proto, "Local engine session"). Socket and frame I/O are in
 * client_io.c, with attaching and detaching.
 *
 * Every argument is checked before anything is sent. A request that times
 * out may still take effect on the node (its late reply is dropped); what
 * it left held is dropped with the session at detach.
 */
#include "client_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log_int.h"
#include "stats_int.h"

#define CLIENT_XFER_FIELDS_ALL                                                 \
    (KVX_XFER_PARAM_FIELD_REQUEST_ID | KVX_XFER_PARAM_FIELD_BLOCKS |           \
     KVX_XFER_PARAM_FIELD_KEYS | KVX_XFER_PARAM_FIELD_DEADLINE |               \
     KVX_XFER_PARAM_FIELD_FLAGS)
#define CLIENT_PULL_FIELDS_ALL                                                 \
    (KVX_PULL_PARAM_FIELD_REQUEST_ID | KVX_PULL_PARAM_FIELD_N_BLOCKS |         \
     KVX_PULL_PARAM_FIELD_KEYS | KVX_PULL_PARAM_FIELD_DEADLINE |               \
     KVX_PULL_PARAM_FIELD_FLAGS)
#define CLIENT_PUBLISH_FIELDS_ALL                                              \
    (KVX_PUBLISH_PARAM_FIELD_REQUEST_ID | KVX_PUBLISH_PARAM_FIELD_BLOCKS |     \
     KVX_PUBLISH_PARAM_FIELD_KEYS | KVX_PUBLISH_PARAM_FIELD_LEASE)
#define CLIENT_XFER_FLAGS_ALL (KVX_XFER_FLAG_LAYERWISE | KVX_XFER_FLAG_CHECKSUM)

/* A usable session: INVALID_PARAM for NULL, PEER_DOWN once closed. */
static kvx_status_t client_ready(kvx_client_h c)
{
    if (c == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    return c->fd >= 0 ? KVX_OK : KVX_ERR_PEER_DOWN;
}

static int client_count_ok(uint32_t n)
{
    return n >= 1 && n <= KVXI_BLOCKS_MAX;
}

/* The wire form of @p n refs; *arr_p (free it) holds both arrays. */
static kvx_status_t client_refs_to_wire(const kvx_block_ref_t *refs, uint32_t n,
                                        Kvx__V1__BlockRefs *w, uint32_t **arr_p)
{
    uint32_t *arr = malloc(2 * (size_t)n * sizeof(*arr));

    if (arr == NULL) {
        return KVX_ERR_NO_MEMORY;
    }
    for (uint32_t i = 0; i < n; i++) {
        arr[i] = refs[i].block;
        arr[n + i] = refs[i].gen;
    }
    kvx__v1__block_refs__init(w);
    w->n_blocks = w->n_gens = n;
    w->blocks = arr;
    w->gens = arr + n;
    *arr_p = arr;
    return KVX_OK;
}

static void client_refs_from_wire(const Kvx__V1__BlockRefs *w,
                                  kvx_block_ref_t *refs)
{
    for (size_t i = 0; i < w->n_blocks; i++) {
        refs[i].block = w->blocks[i];
        refs[i].gen = w->gens[i];
    }
}

static ProtobufCBinaryData client_keys(const kvx_block_key_t *keys, uint32_t n)
{
    ProtobufCBinaryData b = {0, NULL};

    if (keys != NULL) {
        b.data = (uint8_t *)(uintptr_t)keys;
        b.len = (size_t)n * KVXI_KEY_LEN;
    }
    return b;
}

const kvx_layout_t *kvx_client_layout(kvx_client_h c)
{
    return c != NULL ? &c->layout : NULL;
}

const char *kvx_client_node_id(kvx_client_h c)
{
    return c != NULL ? c->node_id : NULL;
}

void *kvx_client_block_addr(kvx_client_h c, uint32_t block)
{
    if (c == NULL || block >= c->layout.num_blocks) {
        return NULL;
    }
    return (uint8_t *)c->base + (size_t)block * c->layout.stride_block;
}

/* ------------------------------------------------------------------------
 * Blocks: reserve, seal, release.
 */

kvx_status_t kvx_client_reserve(kvx_client_h c, uint32_t count,
                                const kvx_block_key_t *keys, uint32_t lease_ms,
                                kvx_block_ref_t *refs, uint8_t *hit,
                                kvx_lease_id_t *lease_p)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT, *reply;
    Kvx__V1__Reserve r = KVX__V1__RESERVE__INIT;
    const Kvx__V1__ReserveReply *rr;
    kvx_status_t status;

    if (c == NULL || !client_count_ok(count) || refs == NULL ||
        lease_p == NULL || lease_ms > KVXI_LEASE_MS_MAX) {
        return KVX_ERR_INVALID_PARAM;
    }
    if ((status = client_ready(c)) != KVX_OK) {
        return status;
    }
    r.block_count = count;
    r.keys = client_keys(keys, count);
    r.lease_ms = lease_ms;
    env.body_case = KVX__V1__ENVELOPE__BODY_RESERVE;
    env.reserve = &r;
    status = kvxi_client_call(c, &env, KVX__V1__ENVELOPE__BODY_RESERVE_REPLY, 0,
                              &reply);
    if (status != KVX_OK) {
        return status;
    }
    rr = reply->reserve_reply;
    status = kvxi_status_from_wire(rr->status);
    if (status == KVX_OK && rr->block_count != count) {
        status =
            kvxi_client_violation(c, "ReserveReply with another block count");
    } else if (status == KVX_OK) {
        client_refs_from_wire(rr->blocks, refs);
        for (uint32_t i = 0; hit != NULL && i < count; i++) {
            hit[i] = (rr->hit_mask.data[i / 8] >> (i % 8)) & 1u;
        }
        *lease_p = rr->lease_id;
    } else if (status > KVX_OK) {
        status =
            kvxi_client_violation(c, "ReserveReply with status INPROGRESS");
    }
    kvxi_frame_free(reply);
    return status;
}

kvx_status_t kvx_client_seal(kvx_client_h c, kvx_lease_id_t lease)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT;
    Kvx__V1__Seal s = KVX__V1__SEAL__INIT;
    kvx_status_t status;

    if (c == NULL || lease == 0) {
        return KVX_ERR_INVALID_PARAM;
    }
    if ((status = client_ready(c)) != KVX_OK) {
        return status;
    }
    s.lease_id = lease;
    env.body_case = KVX__V1__ENVELOPE__BODY_SEAL;
    env.seal = &s;
    return kvxi_client_call_result(c, &env, NULL);
}

kvx_status_t kvx_client_release(kvx_client_h c, const kvx_block_ref_t *refs,
                                uint32_t n, uint32_t *released_p)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT, *reply;
    Kvx__V1__Release r = KVX__V1__RELEASE__INIT;
    Kvx__V1__BlockRefs w;
    kvx_status_t status;
    uint32_t *arr;

    if (c == NULL || refs == NULL || !client_count_ok(n)) {
        return KVX_ERR_INVALID_PARAM;
    }
    if ((status = client_ready(c)) != KVX_OK) {
        return status;
    }
    if ((status = client_refs_to_wire(refs, n, &w, &arr)) != KVX_OK) {
        return status;
    }
    r.blocks = &w;
    env.body_case = KVX__V1__ENVELOPE__BODY_RELEASE;
    env.release = &r;
    status = kvxi_client_call(c, &env, KVX__V1__ENVELOPE__BODY_RELEASE_ACK, 0,
                              &reply);
    free(arr);
    if (status != KVX_OK) {
        return status;
    }
    status = kvxi_status_from_wire(reply->release_ack->status);
    if (status == KVX_OK && released_p != NULL) {
        *released_p = reply->release_ack->released;
    }
    kvxi_frame_free(reply);
    return status;
}

/* ------------------------------------------------------------------------
 * Transfers.
 */

/* Sends a PushStart/PullStart in @p env; on success links a new handle. */
static kvx_status_t client_xfer_start(kvx_client_h c, kvxi_envelope_t *env,
                                      uint32_t n_blocks,
                                      kvx_client_xfer_h *xfer_p)
{
    struct kvx_client_xfer *x = calloc(1, sizeof(*x));
    kvx_status_t status;

    if (x == NULL) {
        return KVX_ERR_NO_MEMORY;
    }
    x->client = c;
    x->t_start_ns = kvxi_client_now_ns();
    x->attr.status = KVX_INPROGRESS;
    x->attr.n_blocks = n_blocks;
    status = kvxi_client_call_result(c, env, &x->xfer_id);
    if (status != KVX_OK) {
        free(x);
        return status;
    }
    x->next = c->xfers;
    if (c->xfers != NULL) {
        c->xfers->prev = x;
    }
    c->xfers = x;
    *xfer_p = x;
    return KVX_OK;
}

static uint32_t client_deadline_ms(int given, uint32_t ms)
{
    return !given ? 0 : ms < KVXI_LEASE_MS_MAX ? ms : KVXI_LEASE_MS_MAX;
}

static int client_peer_ok(const char *peer)
{
    size_t len = peer != NULL ? strnlen(peer, KVXI_NAME_MAX + 1) : 0;

    return len >= 1 && len <= KVXI_NAME_MAX;
}

kvx_status_t kvx_client_push(kvx_client_h c, const char *peer,
                             const kvx_xfer_params_t *p,
                             kvx_client_xfer_h *xfer_p)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT;
    Kvx__V1__PushStart s = KVX__V1__PUSH_START__INIT;
    Kvx__V1__BlockRefs w;
    kvx_status_t status;
    uint32_t *arr;

    if (c == NULL || !client_peer_ok(peer) || p == NULL || xfer_p == NULL ||
        (p->field_mask & ~(uint64_t)CLIENT_XFER_FIELDS_ALL) ||
        !(p->field_mask & KVX_XFER_PARAM_FIELD_REQUEST_ID) ||
        !(p->field_mask & KVX_XFER_PARAM_FIELD_BLOCKS) || p->blocks == NULL ||
        !client_count_ok(p->n_blocks) ||
        ((p->field_mask & KVX_XFER_PARAM_FIELD_KEYS) && p->keys == NULL) ||
        ((p->field_mask & KVX_XFER_PARAM_FIELD_FLAGS) &&
         (p->flags & ~(uint32_t)CLIENT_XFER_FLAGS_ALL))) {
        return KVX_ERR_INVALID_PARAM;
    }
    if ((status = client_ready(c)) != KVX_OK) {
        return status;
    }
    if ((status = client_refs_to_wire(p->blocks, p->n_blocks, &w, &arr)) !=
        KVX_OK) {
        return status;
    }
    s.peer = (char *)(uintptr_t)peer;
    s.request_id = p->request_id;
    s.blocks = &w;
    if (p->field_mask & KVX_XFER_PARAM_FIELD_KEYS) {
        s.keys = client_keys(p->keys, p->n_blocks);
    }
    s.flags = (p->field_mask & KVX_XFER_PARAM_FIELD_FLAGS) ? p->flags : 0;
    s.deadline_ms = client_deadline_ms(
        (p->field_mask & KVX_XFER_PARAM_FIELD_DEADLINE) != 0, p->deadline_ms);
    env.body_case = KVX__V1__ENVELOPE__BODY_PUSH_START;
    env.push_start = &s;
    status = client_xfer_start(c, &env, p->n_blocks, xfer_p);
    free(arr);
    return status;
}

kvx_status_t kvx_client_pull(kvx_client_h c, const char *peer,
                             const kvx_pull_params_t *p,
                             kvx_client_xfer_h *xfer_p)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT;
    Kvx__V1__PullStart s = KVX__V1__PULL_START__INIT;
    kvx_status_t status;

    if (c == NULL || !client_peer_ok(peer) || p == NULL || xfer_p == NULL ||
        (p->field_mask & ~(uint64_t)CLIENT_PULL_FIELDS_ALL) ||
        !(p->field_mask & KVX_PULL_PARAM_FIELD_REQUEST_ID) ||
        !(p->field_mask & KVX_PULL_PARAM_FIELD_N_BLOCKS) ||
        !client_count_ok(p->n_blocks) ||
        ((p->field_mask & KVX_PULL_PARAM_FIELD_KEYS) && p->keys == NULL) ||
        ((p->field_mask & KVX_PULL_PARAM_FIELD_FLAGS) &&
         (p->flags & ~(uint32_t)CLIENT_XFER_FLAGS_ALL))) {
        return KVX_ERR_INVALID_PARAM;
    }
    if ((status = client_ready(c)) != KVX_OK) {
        return status;
    }
    s.peer = (char *)(uintptr_t)peer;
    s.request_id = p->request_id;
    s.block_count = p->n_blocks;
    if (p->field_mask & KVX_PULL_PARAM_FIELD_KEYS) {
        s.keys = client_keys(p->keys, p->n_blocks);
    }
    s.flags = (p->field_mask & KVX_PULL_PARAM_FIELD_FLAGS) ? p->flags : 0;
    s.deadline_ms = client_deadline_ms(
        (p->field_mask & KVX_PULL_PARAM_FIELD_DEADLINE) != 0, p->deadline_ms);
    env.body_case = KVX__V1__ENVELOPE__BODY_PULL_START;
    env.pull_start = &s;
    return client_xfer_start(c, &env, p->n_blocks, xfer_p);
}

kvx_status_t kvx_client_xfer_layer_ready(kvx_client_xfer_h x,
                                         uint32_t layer_end)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT;
    Kvx__V1__LayerReady lr = KVX__V1__LAYER_READY__INIT;
    Kvx__V1__LayerRange range = KVX__V1__LAYER_RANGE__INIT;
    kvx_status_t status;

    if (x == NULL || layer_end == 0 ||
        layer_end > x->client->layout.num_layers) {
        return KVX_ERR_INVALID_PARAM;
    }
    if (x->attr.status != KVX_INPROGRESS) {
        return KVX_ERR_BAD_STATE;
    }
    if ((status = client_ready(x->client)) != KVX_OK) {
        return status;
    }
    range.first = 0;
    range.count = layer_end;
    lr.transfer_id = x->xfer_id;
    lr.layers = &range;
    env.body_case = KVX__V1__ENVELOPE__BODY_LAYER_READY;
    env.layer_ready = &lr;
    return kvxi_client_call_result(x->client, &env, NULL);
}

kvx_status_t kvx_client_xfer_test(kvx_client_xfer_h x)
{
    if (x == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    if (x->attr.status == KVX_INPROGRESS) {
        kvxi_client_pump(x->client, 0, x, 0, NULL);
    }
    return x->attr.status;
}

kvx_status_t kvx_client_xfer_wait(kvx_client_xfer_h x, uint32_t timeout_ms)
{
    if (x == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    if (x->attr.status == KVX_INPROGRESS) {
        kvxi_client_pump(x->client, 0, x,
                         kvxi_client_now_ns() + timeout_ms * 1000000ull, NULL);
    }
    return x->attr.status;
}

kvx_status_t kvx_client_xfer_query(kvx_client_xfer_h x, kvx_xfer_attr_t *attr)
{
    if (x == NULL || attr == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    *attr = x->attr;
    if (attr->status == KVX_INPROGRESS) {
        attr->elapsed_ns = kvxi_client_now_ns() - x->t_start_ns;
    }
    return KVX_OK;
}

static void client_abort_init(kvx_client_xfer_h x, kvxi_envelope_t *env,
                              Kvx__V1__Abort *a)
{
    kvx__v1__abort__init(a);
    a->transfer_id = x->xfer_id;
    a->reason = (Kvx__V1__Status)kvxi_status_to_wire(KVX_ERR_ABORTED);
    env->body_case = KVX__V1__ENVELOPE__BODY_ABORT;
    env->abort = a;
}

kvx_status_t kvx_client_xfer_abort(kvx_client_xfer_h x)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT;
    Kvx__V1__Abort a;
    kvx_status_t status;

    if (x == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    if (x->attr.status != KVX_INPROGRESS) {
        return KVX_ERR_BAD_STATE;
    }
    if ((status = client_ready(x->client)) != KVX_OK) {
        return status;
    }
    client_abort_init(x, &env, &a);
    return kvxi_client_call_result(x->client, &env, NULL);
}

void kvx_client_xfer_release(kvx_client_xfer_h x)
{
    kvx_client_h c;

    if (x == NULL) {
        return;
    }
    c = x->client;
    if (x->attr.status == KVX_INPROGRESS && c->fd >= 0) {
        kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT;
        Kvx__V1__Abort a;

        /* Fire and forget: its Result and the XferDone find no handle. */
        client_abort_init(x, &env, &a);
        kvxi_client_send(c, &env,
                         kvxi_client_now_ns() + c->timeout_ms * 1000000ull);
    }
    if (x->prev != NULL) {
        x->prev->next = x->next;
    } else {
        c->xfers = x->next;
    }
    if (x->next != NULL) {
        x->next->prev = x->prev;
    }
    free(x);
}

/* ------------------------------------------------------------------------
 * Publishing and collecting.
 */

kvx_status_t kvx_client_publish(kvx_client_h c, const kvx_publish_params_t *p,
                                kvx_ticket_t *ticket_p)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT;
    Kvx__V1__PublishStart s = KVX__V1__PUBLISH_START__INIT;
    Kvx__V1__BlockRefs w;
    kvx_status_t status;
    uint32_t *arr;

    if (c == NULL || p == NULL ||
        (p->field_mask & ~(uint64_t)CLIENT_PUBLISH_FIELDS_ALL) ||
        !(p->field_mask & KVX_PUBLISH_PARAM_FIELD_REQUEST_ID) ||
        !(p->field_mask & KVX_PUBLISH_PARAM_FIELD_BLOCKS) ||
        p->blocks == NULL || !client_count_ok(p->n_blocks) ||
        ((p->field_mask & KVX_PUBLISH_PARAM_FIELD_KEYS) && p->keys == NULL) ||
        ((p->field_mask & KVX_PUBLISH_PARAM_FIELD_LEASE) &&
         p->lease_ms > KVXI_LEASE_MS_MAX)) {
        return KVX_ERR_INVALID_PARAM;
    }
    if ((status = client_ready(c)) != KVX_OK) {
        return status;
    }
    /* Refuse before publishing what no ticket could name. */
    if (ticket_p != NULL && c->listen_addr[0] == '\0') {
        return KVX_ERR_BAD_STATE;
    }
    if (ticket_p != NULL && strlen(c->listen_addr) >= KVX_TICKET_ADDR_MAX) {
        return KVX_ERR_NO_SPACE;
    }
    if ((status = client_refs_to_wire(p->blocks, p->n_blocks, &w, &arr)) !=
        KVX_OK) {
        return status;
    }
    s.request_id = p->request_id;
    s.blocks = &w;
    if (p->field_mask & KVX_PUBLISH_PARAM_FIELD_KEYS) {
        s.keys = client_keys(p->keys, p->n_blocks);
    }
    s.lease_ms =
        (p->field_mask & KVX_PUBLISH_PARAM_FIELD_LEASE) ? p->lease_ms : 0;
    env.body_case = KVX__V1__ENVELOPE__BODY_PUBLISH_START;
    env.publish_start = &s;
    status = kvxi_client_call_result(c, &env, NULL);
    free(arr);
    if (status == KVX_OK && ticket_p != NULL) {
        memset(ticket_p, 0, sizeof(*ticket_p));
        memcpy(ticket_p->addr, c->listen_addr, strlen(c->listen_addr));
        snprintf(ticket_p->node_id, sizeof(ticket_p->node_id), "%s",
                 c->node_id);
        ticket_p->request_id = p->request_id;
        ticket_p->layout_hash = c->layout_hash;
    }
    return status;
}

kvx_status_t kvx_client_unpublish(kvx_client_h c, uint64_t request_id)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT;
    Kvx__V1__Unpublish u = KVX__V1__UNPUBLISH__INIT;
    kvx_status_t status;

    if ((status = client_ready(c)) != KVX_OK) {
        return status;
    }
    u.request_id = request_id;
    env.body_case = KVX__V1__ENVELOPE__BODY_UNPUBLISH;
    env.unpublish = &u;
    return kvxi_client_call_result(c, &env, NULL);
}

kvx_status_t kvx_client_recv(kvx_client_h c, uint64_t request_id,
                             uint32_t timeout_ms, kvx_block_ref_t *refs,
                             uint32_t max, uint32_t *n_p)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT, *reply;
    Kvx__V1__Recv r = KVX__V1__RECV__INIT;
    const Kvx__V1__RecvReply *rr;
    kvx_status_t status;

    if (c == NULL || refs == NULL || n_p == NULL || !client_count_ok(max) ||
        timeout_ms > KVXI_LEASE_MS_MAX) {
        return KVX_ERR_INVALID_PARAM;
    }
    if ((status = client_ready(c)) != KVX_OK) {
        return status;
    }
    r.request_id = request_id;
    r.max_blocks = max;
    r.timeout_ms = timeout_ms;
    env.body_case = KVX__V1__ENVELOPE__BODY_RECV;
    env.recv = &r;
    status = kvxi_client_call(c, &env, KVX__V1__ENVELOPE__BODY_RECV_REPLY,
                              timeout_ms, &reply);
    if (status != KVX_OK) {
        return status;
    }
    rr = reply->recv_reply;
    status = kvxi_status_from_wire(rr->status);
    if (status == KVX_OK && rr->block_count > max) {
        status =
            kvxi_client_violation(c, "RecvReply with more blocks than asked");
    } else if (status == KVX_OK) {
        client_refs_from_wire(rr->blocks, refs);
        *n_p = rr->block_count;
    } else if (status == KVX_ERR_NO_SPACE) {
        *n_p = rr->block_count;
    }
    kvxi_frame_free(reply);
    return status;
}

/* ------------------------------------------------------------------------
 * Queries.
 */

kvx_status_t kvx_client_lookup(kvx_client_h c, const kvx_block_key_t *keys,
                               uint32_t n, uint32_t *prefix_p)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT, *reply;
    Kvx__V1__Lookup l = KVX__V1__LOOKUP__INIT;
    const Kvx__V1__LookupReply *lr;
    kvx_status_t status;

    if (c == NULL || keys == NULL || !client_count_ok(n) || prefix_p == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    if ((status = client_ready(c)) != KVX_OK) {
        return status;
    }
    l.keys = client_keys(keys, n);
    env.body_case = KVX__V1__ENVELOPE__BODY_LOOKUP;
    env.lookup = &l;
    status = kvxi_client_call(c, &env, KVX__V1__ENVELOPE__BODY_LOOKUP_REPLY, 0,
                              &reply);
    if (status != KVX_OK) {
        return status;
    }
    lr = reply->lookup_reply;
    if (lr->key_count != n || lr->prefix_blocks > n) {
        status =
            kvxi_client_violation(c, "LookupReply does not match the Lookup");
    } else {
        *prefix_p = lr->prefix_blocks;
    }
    kvxi_frame_free(reply);
    return status;
}

kvx_status_t kvx_client_stats(kvx_client_h c, kvx_node_stats_t *stats)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT, *reply;
    Kvx__V1__Stats s = KVX__V1__STATS__INIT;
    kvx_status_t status;

    if (c == NULL || stats == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    if ((status = client_ready(c)) != KVX_OK) {
        return status;
    }
    env.body_case = KVX__V1__ENVELOPE__BODY_STATS;
    env.stats = &s;
    status = kvxi_client_call(c, &env, KVX__V1__ENVELOPE__BODY_STATS_REPLY, 0,
                              &reply);
    if (status != KVX_OK) {
        return status;
    }
    kvxi_stats_from_wire(reply->stats_reply, stats);
    kvxi_frame_free(reply);
    return KVX_OK;
}

kvx_status_t kvx_client_peers(kvx_client_h c, kvx_client_peer_t *peers,
                              uint32_t max, uint32_t *n_p)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT, *reply;
    Kvx__V1__PeerList l = KVX__V1__PEER_LIST__INIT;
    const Kvx__V1__PeerListReply *r;
    kvx_status_t status;

    if (c == NULL || n_p == NULL || (peers == NULL && max != 0)) {
        return KVX_ERR_INVALID_PARAM;
    }
    if ((status = client_ready(c)) != KVX_OK) {
        return status;
    }
    env.body_case = KVX__V1__ENVELOPE__BODY_PEER_LIST;
    env.peer_list = &l;
    status = kvxi_client_call(c, &env, KVX__V1__ENVELOPE__BODY_PEER_LIST_REPLY,
                              0, &reply);
    if (status != KVX_OK) {
        return status;
    }
    r = reply->peer_list_reply;
    for (size_t i = 0; i < r->n_peers && i < max; i++) {
        const Kvx__V1__PeerInfo *w = r->peers[i];
        kvx_client_peer_t *p = &peers[i];

        memset(p, 0, sizeof(*p));
        snprintf(p->addr, sizeof(p->addr), "%s", w->addr ? w->addr : "");
        snprintf(p->node_id, sizeof(p->node_id), "%s",
                 w->node_id ? w->node_id : "");
        p->status = kvxi_status_from_wire(w->status);
        p->transport = kvxi_client_transport(w->data_path);
        p->rtt_us = w->rtt_us;
        p->outgoing = w->outgoing ? 1 : 0;
    }
    *n_p = (uint32_t)r->n_peers;
    kvxi_frame_free(reply);
    return KVX_OK;
}
