/*
 * Push transfers, sender side: stopping. A push that fails (a post error,
 * its deadline, kvx_xfer_abort(), the receiver's Abort or Error, a peer
 * that goes away) reports its status at once, cancels its posts and, once
 * every post ended, flushes the endpoint before it tells the receiver
 * (Abort, or AbortAck to the receiver's Abort) that its writes are
 * quiesced; the source pins stay until then.
 */
#include "xfer_int.h"

#include "log_int.h"

static void xfer_send_abort(struct kvx_xfer *x)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT;
    Kvx__V1__Abort a = KVX__V1__ABORT__INIT;

    a.transfer_id = x->transfer_id;
    a.lease_id = x->lease;
    a.reason = (Kvx__V1__Status)kvxi_status_to_wire(x->stop_status);
    a.message = (char *)kvx_status_string(x->stop_status);
    env.body_case = KVX__V1__ENVELOPE__BODY_ABORT;
    env.abort = &a;
    kvxi_peer_send(x->peer, &env);
}

static void xfer_send_abort_ack(struct kvx_peer *peer, uint64_t tid,
                                uint64_t req_id)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT;
    Kvx__V1__AbortAck a = KVX__V1__ABORT_ACK__INIT;

    a.transfer_id = tid;
    a.writes_quiesced = 1;
    env.request_id = req_id;
    env.body_case = KVX__V1__ENVELOPE__BODY_ABORT_ACK;
    env.abort_ack = &a;
    kvxi_peer_send(peer, &env);
}

void kvxi_xfer_settle(struct kvx_xfer *x)
{
    int peer_ok = x->peer != NULL && x->peer->status == KVX_OK;

    if (x->state == KVXI_XFER_RUNNING) {
        kvxi_xfer_pump(x);
        return;
    }
    if (x->state != KVXI_XFER_STOPPING || x->posts > 0) {
        return;
    }
    /* Every post ended; flush so that no write of ours is still on the way
     * before promising "quiesced". */
    if (peer_ok && x->layer_posted > 0 && !x->flushed && x->peer->ep != NULL &&
        (x->send_abort || x->abort_ack_req != 0)) {
        if (kvxi_xfer_post_push(x, NULL, 0) == KVX_OK) {
            x->flushing = 1;
            return;
        }
    }
    if (peer_ok && x->abort_ack_req != 0) {
        xfer_send_abort_ack(x->peer, x->transfer_id, x->abort_ack_req);
    } else if (peer_ok && x->send_abort) {
        xfer_send_abort(x);
    }
    kvxi_xfer_finish(x, x->stop_status);
}

void kvxi_xfer_stop(struct kvx_xfer *x, kvx_status_t status, int tell)
{
    if (x->pull) {
        kvxi_pull_stop(x, status);
        return;
    }
    if (x->state == KVXI_XFER_DONE || x->state == KVXI_XFER_STOPPING) {
        return;
    }
    x->state = KVXI_XFER_STOPPING;
    x->stop_status = status;
    x->send_abort = tell;
    /* The caller learns the failure now: sends in flight may stay in UCX
     * until the link returns or the peer is declared down (3 heartbeats,
     * then the bounded endpoint close), which must not hold the transfer
     * past its deadline. The source pins stay until the writes are
     * quiesced (kvxi_xfer_finish), and so does the receiver's fence. */
    kvxi_xfer_report(x, status);
    for (kvxi_xfer_post_t *p = x->post_list; p != NULL; p = p->next) {
        if (p->n_segs > 0) {
            kvxi_ucx_cancel(p->post);
        }
    }
    kvxi_xfer_settle(x);
}

void kvxi_xfer_on_abort(struct kvx_peer *peer, const kvxi_envelope_t *env)
{
    const Kvx__V1__Abort *a = env->abort;
    struct kvx_xfer *x = kvxi_xfer_find(peer, a->transfer_id);
    kvx_status_t reason = kvxi_status_from_wire(a->reason);

    if (x == NULL || x->state == KVXI_XFER_DONE) {
        /* Nothing of ours is in flight for it. */
        xfer_send_abort_ack(peer, a->transfer_id, env->request_id);
        return;
    }
    if (reason >= KVX_OK) {
        reason = KVX_ERR_ABORTED;
    }
    x->abort_ack_req = env->request_id;
    if (x->state == KVXI_XFER_STOPPING) {
        kvxi_xfer_settle(x);
        return;
    }
    kvxi_xfer_stop(x, reason, 0);
}

void kvxi_xfer_on_error(struct kvx_peer *peer, const kvxi_envelope_t *env)
{
    const Kvx__V1__Error *e = env->error;
    kvx_status_t code = kvxi_status_from_wire(e->code);

    for (struct kvx_xfer *x = peer->node->xfers; x != NULL; x = x->next) {
        if (x->peer == peer && x->state != KVXI_XFER_DONE &&
            (x->alloc_req_id == e->request_id ||
             x->commit_req_id == e->request_id)) {
            kvxi_xfer_stop(x, code < KVX_OK ? code : KVX_ERR_PEER_REFUSED, 0);
            return;
        }
    }
    kvxi_warn("node %s: peer %s: error %s: %s", peer->node->node_id, peer->addr,
              kvx_status_string(code), e->message != NULL ? e->message : "");
}

void kvxi_xfer_check_deadlines(struct kvx_node *node, uint64_t now,
                               uint64_t *next_p)
{
    struct kvx_xfer *x, *next;

    for (x = node->xfers; x != NULL; x = next) {
        next = x->next;
        if (x->state == KVXI_XFER_DONE || x->state == KVXI_XFER_STOPPING) {
            continue;
        }
        if (now != 0 && x->deadline_ns <= now) {
            kvxi_xfer_stop(x, KVX_ERR_TIMEOUT, 1);
        } else if (x->deadline_ns < *next_p) {
            *next_p = x->deadline_ns;
        }
    }
    kvxi_pull_check_leases(node, now, next_p);
}

void kvxi_xfer_peer_down(struct kvx_peer *peer, kvx_status_t status)
{
    struct kvx_xfer *x, *next;

    for (x = peer->node->xfers; x != NULL; x = next) {
        next = x->next;
        if (x->peer == peer) {
            kvxi_xfer_stop(x, status, 0);
        }
    }
}

void kvxi_xfer_detach_peer(struct kvx_peer *peer)
{
    struct kvx_xfer *x, *next;

    for (x = peer->node->xfers; x != NULL; x = next) {
        next = x->next;
        if (x->peer != peer) {
            continue;
        }
        if (x->state != KVXI_XFER_DONE) {
            x->posts = 0;
            kvxi_xfer_finish(x, x->state == KVXI_XFER_STOPPING
                                    ? x->stop_status
                                    : KVX_ERR_PEER_DOWN);
            if (x->released) {
                continue; /* freed */
            }
        }
        x->peer = NULL;
    }
}

kvx_status_t kvx_xfer_abort(kvx_xfer_h x)
{
    if (x == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    /* Once the Commit is out the receiver commits whatever we say now: the
     * transfer ends with its answer, which both sides then agree on. */
    if (x->state == KVXI_XFER_DONE || x->state == KVXI_XFER_STOPPING ||
        x->state == KVXI_XFER_COMMITTING) {
        return KVX_ERR_BAD_STATE;
    }
    kvxi_xfer_stop(x, KVX_ERR_ABORTED, 1);
    return KVX_OK;
}
