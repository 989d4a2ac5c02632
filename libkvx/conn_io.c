/*
 * Control-channel connection, driven by its socket and timers: frames in,
 * the handshake, heartbeats, owner callbacks and the orderly close.
 */
#include "conn_impl_int.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "log_int.h"

/* ------------------------------------------------------------------------
 * Owner callbacks: each returns 0 when the owner destroyed the connection
 * inside (it is freed: the caller returns at once).
 */

static int conn_call_established(kvxi_conn_t *c)
{
    if (c->cbs.established == NULL) {
        return 1;
    }
    c->in_cb++;
    c->cbs.established(c, c->peer, c->cbs.arg);
    return kvxi_conn_cb_leave(c);
}

static int conn_call_recv(kvxi_conn_t *c, const kvxi_envelope_t *env)
{
    if (c->cbs.recv == NULL) {
        return 1;
    }
    c->in_cb++;
    c->cbs.recv(c, env, c->cbs.arg);
    return kvxi_conn_cb_leave(c);
}

/* ------------------------------------------------------------------------
 * Closing: kvxi_conn_fail() decides (once), the finish event closes the socket
 * and reports from the event loop.
 */

static void conn_finish_soon(kvxi_conn_t *c)
{
    event_active(c->finish, EV_TIMEOUT, 1);
}

void kvxi_conn_finish_cb(evutil_socket_t fd, short what, void *arg)
{
    kvxi_conn_t *c = arg;

    (void)fd;
    (void)what;
    if (c->bev != NULL) {
        bufferevent_free(c->bev);
        c->bev = NULL;
    }
    event_del(c->timer);
    event_del(c->heartbeat);
    c->state = KVXI_CONN_CLOSED;
    if (c->close_reported) {
        return;
    }
    c->close_reported = 1;
    if (c->cbs.closed != NULL) {
        c->in_cb++;
        c->cbs.closed(c, c->close_reason, c->close_text, c->cbs.arg);
        kvxi_conn_cb_leave(c);
    }
}

static void conn_shutdown_wr(kvxi_conn_t *c)
{
    if (c->wr_shut) {
        return;
    }
    c->wr_shut = 1;
    shutdown(bufferevent_getfd(c->bev), SHUT_WR);
    if (c->eof_seen) {
        conn_finish_soon(c);
    }
}

/* Best effort: queued even above the high-water mark (it is small). */
static void conn_queue_error(kvxi_conn_t *c, kvx_status_t code,
                             uint64_t request_id, const char *text)
{
    Kvx__V1__Envelope env = KVX__V1__ENVELOPE__INIT;
    Kvx__V1__Error err = KVX__V1__ERROR__INIT;

    err.code = kvxi_status_to_wire(code);
    err.message = (char *)text;
    err.request_id = request_id;
    env.version = c->version;
    if (env.version == 0) {
        env.version = kvxi_hs_version(c->hs);
    }
    if (env.version == 0) {
        env.version =
            c->identity != NULL ? c->identity->max_version : KVXI_PROTO_VERSION;
    }
    env.request_id = request_id;
    env.body_case = KVX__V1__ENVELOPE__BODY_ERROR;
    env.error = &err;
    if (err.code == 0 ||
        kvxi_frame_write(bufferevent_get_output(c->bev), &env) != KVX_OK) {
        kvxi_debug("conn %s: could not queue the error frame", c->name);
    }
}

/*
 * Starts closing with @p reason; if @p wire is an error, tells the peer
 * with Error{wire, text}. Graceful closes flush the output, shut down the
 * write side and wait (linger) for the peer's EOF, so the Error arrives
 * before the connection ends; a dead peer is dropped at once.
 */
void kvxi_conn_fail(kvxi_conn_t *c, kvx_status_t reason, kvx_status_t wire,
                    uint64_t request_id, const char *fmt, ...)
{
    kvxi_conn_state_t prev = c->state;
    struct evbuffer *out;
    va_list ap;

    if (prev == KVXI_CONN_CLOSING || prev == KVXI_CONN_CLOSED) {
        return;
    }
    c->state = KVXI_CONN_CLOSING;
    c->close_reason = reason;
    va_start(ap, fmt);
    vsnprintf(c->close_text, sizeof(c->close_text), fmt, ap);
    va_end(ap);
    for (char *p = c->close_text; *p != '\0'; p++) {
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f) {
            *p = '?'; /* the text may quote the peer */
        }
    }
    kvxi_log(reason == KVX_ERR_CONN_CLOSED ? KVX_LOG_DEBUG : KVX_LOG_INFO,
             "conn %s: closing (%s): %s", c->name, kvx_status_string(reason),
             c->close_text);
    event_del(c->timer);
    event_del(c->heartbeat);
    evbuffer_drain(bufferevent_get_input(c->bev),
                   evbuffer_get_length(bufferevent_get_input(c->bev)));
    if (prev == KVXI_CONN_CONNECTING || reason == KVX_ERR_PEER_DOWN ||
        reason == KVX_ERR_PEER_UNREACHABLE || c->eof_seen) {
        conn_finish_soon(c);
        return;
    }
    if (wire != KVX_OK) {
        conn_queue_error(c, wire, request_id, c->close_text);
    }
    out = bufferevent_get_output(c->bev);
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
    kvxi_conn_timer_add_ms(c->timer, c->linger_ms);
    if (evbuffer_get_length(out) == 0) {
        conn_shutdown_wr(c);
    }
}

/* ------------------------------------------------------------------------
 * Heartbeats (heartbeat.c): skipped while the peer is not reading.
 */

static struct evbuffer *conn_out_if_room(kvxi_conn_t *c)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);

    return evbuffer_get_length(out) <= c->high_water ? out : NULL;
}

void kvxi_conn_heartbeat_cb(evutil_socket_t fd, short what, void *arg)
{
    kvxi_conn_t *c = arg;
    struct evbuffer *out = conn_out_if_room(c);
    uint64_t now = kvxi_clock_us(), silent_ms = 0;

    (void)fd;
    (void)what;
    if (kvxi_hb_expired(&c->hb, now, &silent_ms)) {
        kvxi_conn_fail(c, KVX_ERR_PEER_DOWN, KVX_OK, 0,
                       "nothing received for %" PRIu64 " ms (%u heartbeats)",
                       silent_ms, c->hb.misses);
        return;
    }
    if (out != NULL &&
        kvxi_hb_probe(&c->hb, c->version, c->next_id, now, out) == KVX_OK) {
        c->next_id++;
    }
}

/* ------------------------------------------------------------------------
 * Receiving.
 */

static int conn_open(kvxi_conn_t *c)
{
    uint32_t max_frame = c->identity->max_frame;

    c->peer = kvxi_hs_take_peer(c->hs);
    c->version = kvxi_hs_version(c->hs);
    c->next_id = kvxi_hs_next_request_id(c->hs);
    kvxi_hs_destroy(c->hs);
    c->hs = NULL;
    kvxi_identity_free(c->identity);
    c->identity = NULL;
    c->rx_max = max_frame != 0 ? max_frame : KVXI_FRAME_MAX_DEFAULT;
    c->tx_max = c->peer->max_frame < KVXI_FRAME_MAX_DEFAULT
                    ? c->peer->max_frame
                    : KVXI_FRAME_MAX_DEFAULT;
    bufferevent_setwatermark(c->bev, EV_READ, 0,
                             c->rx_max + KVXI_FRAME_HEADER_LEN);
    event_del(c->timer);
    kvxi_hb_init(&c->hb, c->hb.interval_ms, c->hb.misses, kvxi_clock_us());
    kvxi_conn_timer_add_ms(c->heartbeat, c->hb.interval_ms);
    c->state = KVXI_CONN_OPEN;
    kvxi_info("conn %s: open to %s (instance %016" PRIx64 ", version %u)",
              c->name, c->peer->node_id, c->peer->instance_id, c->version);
    return conn_call_established(c);
}

/* An Error from the peer: fatal during the handshake, or when it answers no
 * request or carries a protocol / auth code (the peer closes after it). */
static int conn_on_error(kvxi_conn_t *c, const kvxi_envelope_t *env)
{
    const Kvx__V1__Error *e = env->error;
    kvx_status_t code = kvxi_status_from_wire(e->code);

    if (c->state == KVXI_CONN_HANDSHAKE || env->request_id == 0 ||
        KVX_STATUS_IS_PROTO(code) || code == KVX_ERR_AUTH) {
        kvxi_conn_fail(c, code, KVX_OK, 0, "refused by peer: %s",
                       e->message != NULL ? e->message : "");
        return 1;
    }
    return conn_call_recv(c, env);
}

/* Returns 0 when the owner destroyed the connection. */
static int conn_dispatch(kvxi_conn_t *c, const kvxi_envelope_t *env)
{
    char why[KVXI_TEXT_MAX + 1];
    kvx_status_t status;

    if (env->body_case == KVX__V1__ENVELOPE__BODY_ERROR) {
        return conn_on_error(c, env);
    }
    if (c->state == KVXI_CONN_HANDSHAKE) {
        status = kvxi_hs_input(c->hs, env, bufferevent_get_output(c->bev), why,
                               sizeof(why));
        if (status == KVX_INPROGRESS) {
            return 1;
        }
        if (status != KVX_OK) {
            kvxi_conn_fail(c, status, status, env->request_id, "%s", why);
            return 1;
        }
        return conn_open(c);
    }
    if (env->version != c->version) {
        kvxi_conn_fail(c, KVX_ERR_PROTO_VERSION, KVX_ERR_PROTO_VERSION,
                       env->request_id,
                       "%s in protocol version %u, negotiated %u",
                       kvxi_envelope_body_name(env), env->version, c->version);
        return 1;
    }
    if (kvxi_hs_is_handshake_body(env->body_case)) {
        kvxi_conn_fail(c, KVX_ERR_PROTO_UNEXPECTED, KVX_ERR_PROTO_UNEXPECTED,
                       env->request_id, "%s after the handshake completed",
                       kvxi_envelope_body_name(env));
        return 1;
    }
    if (env->body_case == KVX__V1__ENVELOPE__BODY_HEARTBEAT) {
        if (kvxi_hb_input(&c->hb, env->heartbeat, c->version, c->next_id,
                          kvxi_clock_us(), conn_out_if_room(c))) {
            c->next_id++;
        }
        return 1;
    }
    return conn_call_recv(c, env);
}

void kvxi_conn_read_cb(struct bufferevent *bev, void *arg)
{
    struct evbuffer *in = bufferevent_get_input(bev);
    kvxi_conn_t *c = arg;

    kvxi_hb_heard(&c->hb, kvxi_clock_us());
    for (;;) {
        size_t avail = evbuffer_get_length(in), consumed = 0, frame;
        kvxi_envelope_t *env = NULL;
        kvx_status_t status;
        uint8_t hdr[KVXI_FRAME_HEADER_LEN];
        const uint8_t *p;
        uint32_t body;
        int alive;

        if (c->state != KVXI_CONN_HANDSHAKE && c->state != KVXI_CONN_OPEN) {
            evbuffer_drain(in, avail); /* closing: discard */
            return;
        }
        if (avail < KVXI_FRAME_HEADER_LEN) {
            return;
        }
        evbuffer_copyout(in, hdr, sizeof(hdr));
        body = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 |
               (uint32_t)hdr[2] << 8 | (uint32_t)hdr[3];
        if (body == 0) {
            kvxi_conn_fail(c, KVX_ERR_PROTO_MALFORMED, KVX_ERR_PROTO_MALFORMED,
                           0, "zero-length frame");
            return;
        }
        if (body > c->rx_max) {
            kvxi_conn_fail(c, KVX_ERR_PROTO_OVERSIZE, KVX_ERR_PROTO_OVERSIZE, 0,
                           "peer announced a %" PRIu32 "-byte frame, limit %zu",
                           body, c->rx_max);
            return;
        }
        frame = KVXI_FRAME_HEADER_LEN + (size_t)body;
        if (avail < frame) {
            return; /* the read watermark leaves room for the whole frame */
        }
        p = evbuffer_pullup(in, (ev_ssize_t)frame);
        status = p == NULL
                     ? KVX_ERR_NO_MEMORY
                     : kvxi_frame_decode(p, frame, c->rx_max, &env, &consumed);
        if (status != KVX_OK) {
            if (status == KVX_INPROGRESS) {
                status = KVX_ERR_PROTO_MALFORMED; /* cannot happen */
            }
            kvxi_conn_fail(c, status, status, 0, "%" PRIu32 "-byte frame: %s",
                           body, kvx_status_string(status));
            return;
        }
        evbuffer_drain(in, consumed);
        alive = conn_dispatch(c, env);
        kvxi_frame_free(env);
        if (!alive) {
            return;
        }
    }
}

void kvxi_conn_write_cb(struct bufferevent *bev, void *arg)
{
    kvxi_conn_t *c = arg;
    size_t pending = evbuffer_get_length(bufferevent_get_output(bev));

    if (c->state == KVXI_CONN_CLOSING) {
        if (pending == 0) {
            conn_shutdown_wr(c);
        }
        return;
    }
    if (c->state == KVXI_CONN_OPEN && c->want_writable &&
        pending <= c->high_water / 2) {
        c->want_writable = 0;
        if (c->cbs.writable != NULL) {
            c->in_cb++;
            c->cbs.writable(c, c->cbs.arg);
            kvxi_conn_cb_leave(c);
        }
    }
}

void kvxi_conn_start_handshake(kvxi_conn_t *c)
{
    kvx_status_t status;

    c->state = KVXI_CONN_HANDSHAKE;
    event_del(c->timer);
    kvxi_conn_timer_add_ms(c->timer, c->handshake_ms);
    if (c->is_client) {
        status = kvxi_hs_start(c->hs, bufferevent_get_output(c->bev));
        if (status != KVX_OK) {
            kvxi_conn_fail(c, status, KVX_OK, 0, "cannot send hello");
        }
    }
}

void kvxi_conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    int err = EVUTIL_SOCKET_ERROR();
    kvxi_conn_t *c = arg;

    if (what & BEV_EVENT_CONNECTED) {
        int one = 1;

        setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one,
                   sizeof(one)); /* fails harmlessly on unix sockets */
        kvxi_conn_start_handshake(c);
        return;
    }
    if (what & BEV_EVENT_EOF) {
        c->eof_seen = 1;
    }
    switch (c->state) {
    case KVXI_CONN_CLOSING: conn_finish_soon(c); break;
    case KVXI_CONN_CONNECTING:
        kvxi_conn_fail(c, KVX_ERR_PEER_UNREACHABLE, KVX_OK, 0,
                       "connect failed: %s",
                       evutil_socket_error_to_string(err));
        break;
    case KVXI_CONN_HANDSHAKE:
    case KVXI_CONN_OPEN:
        if (what & BEV_EVENT_EOF) {
            kvxi_conn_fail(
                c, KVX_ERR_PEER_DOWN, KVX_OK, 0, "peer closed the connection%s",
                c->state == KVXI_CONN_HANDSHAKE ? " in the handshake" : "");
        } else {
            kvxi_conn_fail(c, KVX_ERR_PEER_DOWN, KVX_OK, 0,
                           "connection error: %s",
                           evutil_socket_error_to_string(err));
        }
        break;
    default: break;
    }
}

void kvxi_conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    kvxi_conn_t *c = arg;

    (void)fd;
    (void)what;
    switch (c->state) {
    case KVXI_CONN_CONNECTING:
        kvxi_conn_fail(c, KVX_ERR_PEER_UNREACHABLE, KVX_OK, 0,
                       "connect timed out after %u ms", c->connect_ms);
        break;
    case KVXI_CONN_HANDSHAKE:
        kvxi_conn_fail(c, KVX_ERR_TIMEOUT, KVX_ERR_TIMEOUT, 0,
                       "handshake not completed within %u ms", c->handshake_ms);
        break;
    case KVXI_CONN_CLOSING: conn_finish_soon(c); break; /* linger over */
    default: break;
    }
}
