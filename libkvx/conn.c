/*
 * Control-channel connection: creation (accepted/connected sockets), the
 * owner's API and frame output. What the socket and the timers drive
 * (reading, the handshake, heartbeats, closing) is in conn_io.c.
 */
#include "conn_impl_int.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log_int.h"

void kvxi_conn_timer_add_ms(struct event *ev, uint32_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};

    event_add(ev, &tv);
}

kvx_status_t kvxi_frame_write(struct evbuffer *out, const kvxi_envelope_t *env)
{
    struct evbuffer_iovec iov;
    size_t size, len = 0;
    kvx_status_t status;

    if (out == NULL || env == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    if (kvxi_envelope_validate(env) != KVX_OK) {
        kvxi_error("conn: refusing to send an invalid %s",
                   kvxi_envelope_body_name(env));
        return KVX_ERR_INVALID_PARAM;
    }
    size = kvxi_frame_size(env);
    if (size - KVXI_FRAME_HEADER_LEN > KVXI_FRAME_MAX_DEFAULT) {
        return KVX_ERR_PROTO_OVERSIZE;
    }
    /* One contiguous extent of the output buffer: encode in place. */
    if (evbuffer_reserve_space(out, (ev_ssize_t)size, &iov, 1) != 1 ||
        iov.iov_len < size) {
        return KVX_ERR_NO_MEMORY;
    }
    status = kvxi_frame_encode(env, iov.iov_base, iov.iov_len, &len);
    if (status != KVX_OK) {
        return status; /* reserved space is not committed: unchanged */
    }
    iov.iov_len = len;
    if (evbuffer_commit_space(out, &iov, 1) != 0) {
        return KVX_ERR_NO_MEMORY;
    }
    return KVX_OK;
}

/* ------------------------------------------------------------------------
 * Freeing, also deferred to the end of an owner callback.
 */

void kvxi_conn_free(kvxi_conn_t *c)
{
    if (c->bev != NULL) {
        bufferevent_free(c->bev); /* closes the socket */
    }
    if (c->timer != NULL) {
        event_free(c->timer);
    }
    if (c->heartbeat != NULL) {
        event_free(c->heartbeat);
    }
    if (c->finish != NULL) {
        event_free(c->finish);
    }
    kvxi_hs_destroy(c->hs);
    kvxi_identity_free(c->identity);
    kvxi_peer_info_free(c->peer);
    free(c);
}

int kvxi_conn_cb_leave(kvxi_conn_t *c)
{
    if (--c->in_cb == 0 && c->destroy_pending) {
        kvxi_conn_free(c);
        return 0;
    }
    return 1;
}

/* ------------------------------------------------------------------------
 * Creation.
 */

/* A peer that closes while we write would kill the process with SIGPIPE
 * (libevent writes with writev()); ignore it unless the process chose. */
void kvxi_conn_ignore_sigpipe(void)
{
    struct sigaction old, ign;

    if (sigaction(SIGPIPE, NULL, &old) == 0 && !(old.sa_flags & SA_SIGINFO) &&
        old.sa_handler == SIG_DFL) {
        memset(&ign, 0, sizeof(ign));
        ign.sa_handler = SIG_IGN;
        sigemptyset(&ign.sa_mask);
        sigaction(SIGPIPE, &ign, NULL);
    }
}

static uint32_t or_default(uint32_t v, uint32_t def)
{
    return v != 0 ? v : def;
}

static kvx_status_t conn_new(struct event_base *base, int is_client,
                             const kvxi_conn_config_t *cfg, kvxi_conn_t **c_p)
{
    kvx_status_t status;
    kvxi_conn_t *c;

    if (base == NULL || cfg == NULL || cfg->identity == NULL ||
        cfg->secret_len > KVXI_SECRET_MAX ||
        (cfg->secret == NULL && cfg->secret_len > 0)) {
        return KVX_ERR_INVALID_PARAM;
    }
    kvxi_conn_ignore_sigpipe();
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return KVX_ERR_NO_MEMORY;
    }
    c->base = base;
    c->is_client = is_client != 0;
    c->cbs = cfg->cbs;
    c->connect_ms =
        or_default(cfg->connect_timeout_ms, KVXI_CONN_CONNECT_TIMEOUT_MS);
    c->handshake_ms =
        or_default(cfg->handshake_timeout_ms, KVXI_CONN_HANDSHAKE_TIMEOUT_MS);
    c->hb.interval_ms =
        or_default(cfg->heartbeat_interval_ms, KVXI_CONN_HEARTBEAT_MS);
    c->hb.misses =
        or_default(cfg->heartbeat_misses, KVXI_CONN_HEARTBEAT_MISSES);
    c->linger_ms = or_default(cfg->linger_ms, KVXI_CONN_LINGER_MS);
    c->high_water = cfg->out_high_water != 0 ? cfg->out_high_water
                                             : KVXI_CONN_OUT_HIGH_WATER;
    c->rx_max = KVXI_FRAME_MAX_HANDSHAKE;
    c->tx_max = KVXI_FRAME_MAX_HANDSHAKE;
    c->close_reason = KVX_OK;
    c->state = KVXI_CONN_CONNECTING;
    status = kvxi_identity_dup(cfg->identity, &c->identity);
    if (status != KVX_OK) {
        goto err;
    }
    status = kvxi_hs_create(c->identity, cfg->secret, cfg->secret_len,
                            is_client, &c->hs);
    if (status != KVX_OK) {
        goto err;
    }
    c->timer = evtimer_new(base, kvxi_conn_timer_cb, c);
    c->heartbeat = event_new(base, -1, EV_PERSIST, kvxi_conn_heartbeat_cb, c);
    c->finish = event_new(base, -1, 0, kvxi_conn_finish_cb, c);
    if (c->timer == NULL || c->heartbeat == NULL || c->finish == NULL) {
        status = KVX_ERR_NO_MEMORY;
        goto err;
    }
    *c_p = c;
    return KVX_OK;

err:
    kvxi_conn_free(c);
    return status;
}

/* Wraps @p fd; on failure the fd stays open (the caller owns it). */
static kvx_status_t conn_attach(kvxi_conn_t *c, int fd)
{
    c->bev = bufferevent_socket_new(c->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (c->bev == NULL) {
        return KVX_ERR_NO_MEMORY;
    }
    bufferevent_setcb(c->bev, kvxi_conn_read_cb, kvxi_conn_write_cb,
                      kvxi_conn_event_cb, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0,
                             KVXI_FRAME_MAX_HANDSHAKE + KVXI_FRAME_HEADER_LEN);
    bufferevent_setwatermark(c->bev, EV_WRITE, c->high_water / 2, 0);
    if (bufferevent_enable(c->bev, EV_READ | EV_WRITE) != 0) {
        bufferevent_setfd(c->bev, -1);
        bufferevent_free(c->bev);
        c->bev = NULL;
        return KVX_ERR_IO;
    }
    return KVX_OK;
}

kvx_status_t kvxi_conn_create_fd(struct event_base *base, int fd, int is_client,
                                 const kvxi_conn_config_t *cfg,
                                 kvxi_conn_t **conn_p)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    kvx_status_t status;
    kvxi_conn_t *c;

    if (fd < 0 || conn_p == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    if (evutil_make_socket_nonblocking(fd) != 0) {
        return KVX_ERR_IO;
    }
    status = conn_new(base, is_client, cfg, &c);
    if (status != KVX_OK) {
        return status;
    }
    status = conn_attach(c, fd);
    if (status != KVX_OK) {
        kvxi_conn_free(c);
        return status;
    }
    memset(&ss, 0, sizeof(ss));
    if (getpeername(fd, (struct sockaddr *)&ss, &len) != 0 ||
        kvxi_addr_format((struct sockaddr *)&ss, len, c->name,
                         sizeof(c->name)) != KVX_OK) {
        snprintf(c->name, sizeof(c->name), "fd %d", fd);
    }
    kvxi_conn_start_handshake(c);
    *conn_p = c;
    return KVX_OK;
}

kvx_status_t kvxi_conn_connect(struct event_base *base, const char *addr,
                               const kvxi_conn_config_t *cfg,
                               kvxi_conn_t **conn_p)
{
    struct sockaddr_storage ss;
    kvx_status_t status;
    kvxi_conn_t *c;
    socklen_t len;
    int fd, err;

    if (base == NULL || addr == NULL || cfg == NULL || conn_p == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    status = kvxi_addr_parse(addr, &ss, &len);
    if (status != KVX_OK) {
        return status;
    }
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        kvxi_error("conn: socket() for %s failed: %s", addr, strerror(errno));
        return KVX_ERR_IO;
    }
    if (ss.ss_family != AF_UNIX) {
        int one = 1;

        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    status = conn_new(base, 1, cfg, &c);
    if (status == KVX_OK) {
        status = conn_attach(c, fd);
        if (status != KVX_OK) {
            kvxi_conn_free(c);
        }
    }
    if (status != KVX_OK) {
        close(fd);
        return status;
    }
    snprintf(c->name, sizeof(c->name), "%s", addr);
    kvxi_conn_timer_add_ms(c->timer, c->connect_ms);
    if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&ss, len) != 0) {
        err = EVUTIL_SOCKET_ERROR();
        /* Refused at once: reported from the loop like a late refusal. */
        kvxi_conn_fail(c, KVX_ERR_PEER_UNREACHABLE, KVX_OK, 0,
                       "connect failed: %s",
                       evutil_socket_error_to_string(err));
    }
    *conn_p = c;
    return KVX_OK;
}

/* ------------------------------------------------------------------------
 * Owner API.
 */

void kvxi_conn_destroy(kvxi_conn_t *conn)
{
    if (conn == NULL) {
        return;
    }
    if (conn->in_cb > 0) {
        /* Inside one of its callbacks: silence it now, free on return. */
        memset(&conn->cbs, 0, sizeof(conn->cbs));
        conn->destroy_pending = 1;
        conn->close_reported = 1;
        if (conn->state != KVXI_CONN_CLOSED) {
            conn->state = KVXI_CONN_CLOSING;
        }
        return;
    }
    kvxi_conn_free(conn);
}

kvx_status_t kvxi_conn_close(kvxi_conn_t *conn, kvx_status_t reason,
                             const char *text)
{
    if (conn == NULL || reason == KVX_INPROGRESS ||
        (reason != KVX_OK && kvxi_status_to_wire(reason) == 0)) {
        return KVX_ERR_INVALID_PARAM;
    }
    kvxi_conn_fail(conn, KVX_ERR_CONN_CLOSED, reason, 0, "%s",
                   text != NULL ? text : "closed locally");
    return KVX_OK;
}

kvx_status_t kvxi_conn_send(kvxi_conn_t *conn, kvxi_envelope_t *env)
{
    struct evbuffer *out;
    size_t size, pending;
    kvx_status_t status;
    int drew_id = 0;

    if (conn == NULL || env == NULL ||
        kvxi_hs_is_handshake_body(env->body_case) ||
        env->body_case == KVX__V1__ENVELOPE__BODY_HEARTBEAT) {
        return KVX_ERR_INVALID_PARAM;
    }
    if (conn->state == KVXI_CONN_CONNECTING ||
        conn->state == KVXI_CONN_HANDSHAKE) {
        return KVX_ERR_BAD_STATE;
    }
    if (conn->state != KVXI_CONN_OPEN) {
        return KVX_ERR_CONN_CLOSED;
    }
    env->version = conn->version;
    if (env->request_id == 0 &&
        env->body_case != KVX__V1__ENVELOPE__BODY_ERROR) {
        env->request_id = conn->next_id;
        drew_id = 1;
    }
    status = kvxi_envelope_validate(env);
    if (status != KVX_OK) {
        status = KVX_ERR_INVALID_PARAM;
        goto err;
    }
    size = kvxi_frame_size(env);
    if (size - KVXI_FRAME_HEADER_LEN > conn->tx_max) {
        status = KVX_ERR_PROTO_OVERSIZE;
        goto err;
    }
    out = bufferevent_get_output(conn->bev);
    pending = evbuffer_get_length(out);
    if (pending > 0 &&
        (pending >= conn->high_water || size > conn->high_water - pending)) {
        conn->want_writable = 1;
        status = KVX_ERR_NO_SPACE;
        goto err;
    }
    status = kvxi_frame_write(out, env);
    if (status != KVX_OK) {
        goto err;
    }
    if (drew_id) {
        conn->next_id++;
    }
    return KVX_OK;

err:
    if (drew_id) {
        env->request_id = 0;
    }
    return status;
}

void kvxi_conn_set_cbs(kvxi_conn_t *conn, const kvxi_conn_cbs_t *cbs)
{
    if (conn == NULL || conn->destroy_pending) {
        return;
    }
    if (cbs == NULL) {
        memset(&conn->cbs, 0, sizeof(conn->cbs));
    } else {
        conn->cbs = *cbs;
    }
}

kvxi_conn_state_t kvxi_conn_state(const kvxi_conn_t *conn)
{
    return conn != NULL ? conn->state : KVXI_CONN_CLOSED;
}

int kvxi_conn_is_client(const kvxi_conn_t *conn)
{
    return conn != NULL && conn->is_client;
}

const kvxi_peer_info_t *kvxi_conn_peer(const kvxi_conn_t *conn)
{
    return conn != NULL ? conn->peer : NULL;
}

uint64_t kvxi_conn_rtt_us(const kvxi_conn_t *conn)
{
    return conn != NULL ? conn->hb.rtt_us : 0;
}

size_t kvxi_conn_out_pending(const kvxi_conn_t *conn)
{
    if (conn == NULL || conn->bev == NULL) {
        return 0;
    }
    return evbuffer_get_length(bufferevent_get_output(conn->bev));
}

kvx_status_t kvxi_conn_close_reason(const kvxi_conn_t *conn)
{
    return conn != NULL ? conn->close_reason : KVX_ERR_INVALID_PARAM;
}

const char *kvxi_conn_close_text(const kvxi_conn_t *conn)
{
    return conn != NULL ? conn->close_text : "";
}

const char *kvxi_conn_name(const kvxi_conn_t *conn)
{
    return conn != NULL ? conn->name : "(null)";
}
