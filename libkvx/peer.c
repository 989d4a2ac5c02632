/*
 * Peers: control connections (connected out or accepted) and, once the
 * handshake completed, the UCX endpoint to the peer's pool.
 *
 * Same host: the handshake carries no host id, so a peer counts as being on
 * this host when its control connection runs over loopback (127.0.0.0/8,
 * ::1) or a unix socket: then both ends share one kernel, and UCX's shared
 * memory transports are tried (UCX itself still checks reachability; an RMA
 * lane that ends up on TCP falls back to AM in kvxi_ucx_ep_create()).
 */
#include "node_int.h"

#include "engine_int.h"
#include "log_int.h"

#include <stdlib.h>
#include <string.h>

static void peer_established(kvxi_conn_t *conn, const kvxi_peer_info_t *info,
                             void *arg);
static void peer_recv(kvxi_conn_t *conn, const kvxi_envelope_t *env, void *arg);
static void peer_closed(kvxi_conn_t *conn, kvx_status_t reason,
                        const char *text, void *arg);

static void peer_link(struct kvx_node *node, struct kvx_peer *peer)
{
    peer->next = node->peers;
    if (node->peers != NULL) {
        node->peers->prev = peer;
    }
    node->peers = peer;
}

static void peer_unlink(struct kvx_peer *peer)
{
    struct kvx_node *node = peer->node;

    if (peer->prev != NULL) {
        peer->prev->next = peer->next;
    } else {
        node->peers = peer->next;
    }
    if (peer->next != NULL) {
        peer->next->prev = peer->prev;
    }
    peer->next = peer->prev = NULL;
}

static struct kvx_peer *peer_new(struct kvx_node *node)
{
    struct kvx_peer *peer = calloc(1, sizeof(*peer));

    if (peer == NULL) {
        return NULL;
    }
    peer->node = node;
    peer->status = KVX_INPROGRESS;
    peer->transport = KVX_TRANSPORT_AUTO;
    peer->next_transfer = 1;
    return peer;
}

static void peer_set_cbs(struct kvx_peer *peer)
{
    kvxi_conn_cbs_t cbs = {
        .established = peer_established,
        .recv = peer_recv,
        .closed = peer_closed,
        .arg = peer,
    };

    kvxi_conn_set_cbs(peer->conn, &cbs);
}

static int peer_same_host(const char *name)
{
    return strncmp(name, "127.", 4) == 0 || strncmp(name, "[::1]", 5) == 0 ||
           strncmp(name, "localhost", 9) == 0 || strncmp(name, "unix:", 5) == 0;
}

static void peer_ep_error(kvxi_ucx_ep_h ep, kvx_status_t status, void *arg)
{
    struct kvx_peer *peer = arg;

    (void)ep;
    kvxi_warn("node %s: peer %s: UCX endpoint failed: %s", peer->node->node_id,
              peer->addr, kvx_status_string(status));
    if (peer->conn != NULL) {
        kvxi_conn_close(peer->conn, KVX_ERR_PEER_DOWN, "UCX endpoint failed");
    }
}

static void peer_established(kvxi_conn_t *conn, const kvxi_peer_info_t *info,
                             void *arg)
{
    struct kvx_peer *peer = arg;
    struct kvx_node *node = peer->node;
    kvxi_ucx_ep_params_t ep = {
        .field_mask = KVXI_UCX_EP_FIELD_ADDRESS | KVXI_UCX_EP_FIELD_MODE |
                      KVXI_UCX_EP_FIELD_ERROR_CB,
        .address = info->memory.worker_address,
        .address_len = info->memory.worker_address_len,
        .mode = (kvxi_ucx_mode_t)node->transport,
        .error_cb = peer_ep_error,
        .error_arg = peer,
    };
    kvx_status_t status;

    status = kvxi_peer_info_dup(info, &peer->info);
    if (status != KVX_OK) {
        kvxi_conn_close(conn, KVX_ERR_NO_MEMORY, "out of memory");
        return;
    }
    if (info->memory.rkey_len > 0 && info->memory.pool_length > 0) {
        ep.field_mask |= KVXI_UCX_EP_FIELD_RKEY | KVXI_UCX_EP_FIELD_REGION;
        ep.rkey = info->memory.rkey;
        ep.rkey_len = info->memory.rkey_len;
        ep.peer_base = info->memory.pool_base;
        ep.peer_len = info->memory.pool_length;
    }
    if (peer_same_host(kvxi_conn_name(conn))) {
        ep.field_mask |= KVXI_UCX_EP_FIELD_HOST_ID;
        ep.peer_host_id = kvxi_ucx_host_id();
    }
    status = kvxi_ucx_ep_create(node->ucx, &ep, &peer->ep);
    if (status != KVX_OK) {
        kvxi_error("node %s: peer %s: no UCX endpoint: %s", node->node_id,
                   info->node_id, kvx_status_string(status));
        kvxi_conn_close(conn, KVX_ERR_PEER_UNREACHABLE,
                        "UCX endpoint could not be created");
        return;
    }
    peer->transport = (kvx_transport_t)kvxi_ucx_ep_mode(peer->ep);
    peer->status = KVX_OK;
    kvxi_engine_peer_up(peer); /* where to reconnect to it by node id */
    kvxi_info("node %s: peer %s connected (%s), data path %s", node->node_id,
              info->node_id, kvxi_conn_name(conn),
              kvx_transport_string(peer->transport));
}

/* Abort names the writer's transfer id. A pull's id has the puller's
 * parity on both sides: the puller's rx and the holder's serving push. */
static void peer_on_abort(struct kvx_peer *peer, const kvxi_envelope_t *env)
{
    uint64_t tid = env->abort->transfer_id;
    kvxi_rx_t *rx = kvxi_rx_find(peer, tid);
    struct kvx_xfer *x = kvxi_xfer_find(peer, tid);

    if (rx != NULL && rx->pull) {
        kvxi_rx_on_abort(peer, env);
    } else if (x != NULL || kvxi_tid_is_ours(peer, tid)) {
        kvxi_xfer_on_abort(peer, env);
    } else if (rx == NULL && kvxi_pull_is_reader(peer, tid)) {
        kvxi_xfer_on_abort(peer, env); /* nothing written: acks quiesced */
    } else {
        kvxi_rx_on_abort(peer, env);
    }
}

static void peer_recv(kvxi_conn_t *conn, const kvxi_envelope_t *env, void *arg)
{
    struct kvx_peer *peer = arg;
    kvxi_rx_t *rx;

    (void)conn;
    peer->node->activity++;
    if (peer->status != KVX_OK) {
        return;
    }
    switch (env->body_case) {
    case KVX__V1__ENVELOPE__BODY_ALLOCATE_REQUEST:
        if (env->allocate_request->mode ==
            KVX__V1__TRANSFER_MODE__TRANSFER_MODE_PULL) {
            kvxi_pull_on_request(peer, env);
        } else {
            kvxi_rx_on_alloc_request(peer, env);
        }
        break;
    case KVX__V1__ENVELOPE__BODY_ALLOCATE_REPLY:
        if (kvxi_tid_is_ours(peer, env->allocate_reply->transfer_id)) {
            kvxi_xfer_on_alloc_reply(peer, env);
        } else {
            kvxi_pull_on_grant(peer, env); /* a puller's reservation */
        }
        break;
    case KVX__V1__ENVELOPE__BODY_RELEASE:
        kvxi_pull_on_release(peer, env);
        break;
    case KVX__V1__ENVELOPE__BODY_RELEASE_ACK: break;
    case KVX__V1__ENVELOPE__BODY_COMMIT: kvxi_rx_on_commit(peer, env); break;
    case KVX__V1__ENVELOPE__BODY_COMMIT_ACK:
        kvxi_xfer_on_commit_ack(peer, env);
        break;
    case KVX__V1__ENVELOPE__BODY_ABORT: peer_on_abort(peer, env); break;
    case KVX__V1__ENVELOPE__BODY_ABORT_ACK:
        rx = kvxi_rx_find(peer, env->abort_ack->transfer_id);
        if (rx != NULL &&
            (rx->pull ||
             !kvxi_tid_is_ours(peer, env->abort_ack->transfer_id))) {
            kvxi_rx_on_abort_ack(peer, env);
        }
        break;
    case KVX__V1__ENVELOPE__BODY_ERROR:
        if (!kvxi_node_stats_on_error(peer, env)) {
            kvxi_xfer_on_error(peer, env);
        }
        break;
    case KVX__V1__ENVELOPE__BODY_STATS: kvxi_node_on_stats(peer, env); break;
    case KVX__V1__ENVELOPE__BODY_STATS_REPLY:
        kvxi_node_on_stats_reply(peer, env);
        break;
    case KVX__V1__ENVELOPE__BODY_LAYER_READY: break; /* push: informational */
    default:
        kvxi_peer_send_error(peer, env->request_id, KVX_ERR_NOT_SUPPORTED,
                             "message not supported by this node");
        break;
    }
    kvxi_node_timer_rearm(peer->node);
}

/* Tears down what depends on the peer: transfers fail, the endpoint goes
 * (no write can land after it), then the receive fences lift. */
static void peer_down(struct kvx_peer *peer, kvx_status_t reason)
{
    kvx_status_t xs = KVX_STATUS_IS_PEER(reason) ? reason : KVX_ERR_PEER_DOWN;

    if (reason == KVX_ERR_CONN_CLOSED) {
        xs = KVX_ERR_PEER_DOWN;
    }
    kvxi_xfer_peer_down(peer, xs);
    if (peer->ep != NULL) {
        kvxi_ucx_ep_destroy(peer->ep);
        peer->ep = NULL;
    }
    kvxi_rx_peer_down(peer, xs);
    kvxi_xfer_detach_peer(peer);
    kvxi_pull_peer_down(peer);
}

static void peer_closed(kvxi_conn_t *conn, kvx_status_t reason,
                        const char *text, void *arg)
{
    struct kvx_peer *peer = arg;
    struct kvx_node *node = peer->node;
    int was_open = peer->status == KVX_OK;

    kvxi_info("node %s: peer %s closed: %s (%s)", node->node_id, peer->addr,
              kvx_status_string(reason), text != NULL ? text : "");
    if (reason == KVX_ERR_CONN_CLOSED && !was_open) {
        reason = KVX_ERR_PEER_DOWN;
    }
    peer->status = was_open ? KVX_ERR_PEER_DOWN : reason;
    if (peer->status == KVX_OK || peer->status == KVX_INPROGRESS) {
        peer->status = KVX_ERR_PEER_DOWN;
    }
    peer_down(peer, reason);
    kvxi_conn_destroy(conn);
    peer->conn = NULL;
    if (peer->accepted) {
        peer_unlink(peer);
        kvxi_peer_free(peer);
    }
    kvxi_node_timer_rearm(node);
}

void kvxi_peer_accept(kvxi_listener_t *l, kvxi_conn_t *conn, void *arg)
{
    struct kvx_node *node = arg;
    struct kvx_peer *peer;

    (void)l;
    peer = node->shutting_down ? NULL : peer_new(node);
    if (peer == NULL) {
        kvxi_conn_destroy(conn);
        return;
    }
    peer->conn = conn;
    peer->accepted = 1;
    snprintf(peer->addr, sizeof(peer->addr), "%s", kvxi_conn_name(conn));
    peer_set_cbs(peer);
    peer_link(node, peer);
}

kvx_status_t kvx_node_connect(kvx_node_h node, const char *addr,
                              kvx_peer_h *peer_p)
{
    struct kvx_peer *peer;
    kvxi_conn_config_t cfg;
    kvx_status_t status;

    if (node == NULL || addr == NULL || peer_p == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    if (node->shutting_down) {
        return KVX_ERR_BAD_STATE;
    }
    peer = peer_new(node);
    if (peer == NULL) {
        return KVX_ERR_NO_MEMORY;
    }
    peer->is_client = 1;
    snprintf(peer->addr, sizeof(peer->addr), "%s", addr);
    cfg = node->conn_cfg;
    cfg.cbs.established = peer_established;
    cfg.cbs.recv = peer_recv;
    cfg.cbs.closed = peer_closed;
    cfg.cbs.arg = peer;
    status = kvxi_conn_connect(node->base, addr, &cfg, &peer->conn);
    if (status != KVX_OK) {
        free(peer);
        return status;
    }
    peer_link(node, peer);
    *peer_p = peer;
    return KVX_OK;
}

/* Node shutdown: our transfers fail, the peer is told by the close. */
void kvxi_peer_shutdown(struct kvx_peer *peer)
{
    if (peer->conn != NULL) {
        kvxi_conn_destroy(peer->conn);
        peer->conn = NULL;
    }
    if (peer->status == KVX_OK || peer->status == KVX_INPROGRESS) {
        peer->status = KVX_ERR_CONN_CLOSED;
    }
    peer_down(peer, KVX_ERR_PEER_DOWN);
}

void kvx_peer_close(kvx_peer_h peer)
{
    struct kvx_node *node;

    if (peer == NULL) {
        return;
    }
    node = peer->node;
    kvxi_info("node %s: peer %s: closing", node->node_id, peer->addr);
    kvxi_peer_shutdown(peer); /* idempotent on a peer that already failed */
    peer_unlink(peer);
    kvxi_peer_free(peer);
    kvxi_node_timer_rearm(node);
}

void kvxi_peer_free(struct kvx_peer *peer)
{
    if (peer == NULL) {
        return;
    }
    if (peer->conn != NULL) {
        kvxi_conn_destroy(peer->conn);
    }
    if (peer->ep != NULL) {
        kvxi_ucx_ep_destroy(peer->ep);
    }
    kvxi_peer_info_free(peer->info);
    free(peer);
}

kvx_status_t kvxi_peer_send(struct kvx_peer *peer, kvxi_envelope_t *env)
{
    kvx_status_t status;

    if (peer == NULL || peer->conn == NULL || peer->status != KVX_OK) {
        return KVX_ERR_PEER_DOWN;
    }
    peer->node->activity++; /* its answer is likely within the window */
    status = kvxi_conn_send(peer->conn, env);
    if (status == KVX_ERR_NO_SPACE) {
        /* The output bound is full: the peer does not read (or floods us
         * with requests and never reads the answers). Dropping this frame
         * would leave a transfer waiting, and every further one would be
         * dropped (and logged) too: the connection ends instead. */
        kvxi_warn("node %s: peer %s: %zu bytes unread: closing",
                  peer->node->node_id, peer->addr,
                  kvxi_conn_out_pending(peer->conn));
        kvxi_conn_close(peer->conn, KVX_ERR_NO_SPACE,
                        "the peer does not read its control connection");
    } else if (status != KVX_OK) {
        kvxi_warn("node %s: peer %s: sending %s failed: %s",
                  peer->node->node_id, peer->addr, kvxi_envelope_body_name(env),
                  kvx_status_string(status));
    }
    return status;
}

void kvxi_peer_send_error(struct kvx_peer *peer, uint64_t req_id,
                          kvx_status_t code, const char *text)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT;
    Kvx__V1__Error err = KVX__V1__ERROR__INIT;

    err.code = (Kvx__V1__Status)kvxi_status_to_wire(code);
    err.message = (char *)text;
    err.request_id = req_id;
    env.request_id = req_id;
    env.body_case = KVX__V1__ENVELOPE__BODY_ERROR;
    env.error = &err;
    kvxi_peer_send(peer, &env);
}

kvx_status_t kvx_peer_wait(kvx_peer_h peer, uint32_t timeout_ms)
{
    uint64_t end;

    if (peer == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    end = kvxi_node_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    while (peer->status == KVX_INPROGRESS) {
        uint64_t now = kvxi_node_now_ns();

        if (now >= end) {
            break;
        }
        kvx_node_progress(peer->node,
                          (uint32_t)((end - now + 999999) / 1000000ull));
    }
    return peer->status;
}

kvx_status_t kvx_peer_status(kvx_peer_h peer)
{
    return peer != NULL ? peer->status : KVX_ERR_INVALID_PARAM;
}

kvx_transport_t kvx_peer_transport(kvx_peer_h peer)
{
    return peer != NULL ? peer->transport : KVX_TRANSPORT_AUTO;
}

const char *kvx_peer_name(kvx_peer_h peer)
{
    return peer != NULL && peer->info != NULL ? peer->info->node_id : "";
}
