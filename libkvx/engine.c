/*
 * Local engine sessions, node side (engine_int.h): the listener, the life
 * of a session (accepting, sending, closing, freeing), Attach (the pool's
 * memfd as SCM_RIGHTS) and frame dispatch. The session's holds and leases
 * are in engine_hold.c, transfers in engine_xfer.c, the peers they name in
 * engine_peer.c.
 */
#include "engine_int.h"

#include "handshake_int.h"
#include "log_int.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BODY(name) KVX__V1__ENVELOPE__BODY_##name

/* ------------------------------------------------------------------------
 * Sending.
 */

static void session_close(kvxi_session_t *s, kvx_status_t reason,
                          kvx_status_t wire, uint64_t req_id, const char *why);

kvx_status_t kvxi_session_send(kvxi_session_t *s, kvxi_envelope_t *env)
{
    struct evbuffer *out;
    kvx_status_t st;

    if (s->closing) {
        return KVX_ERR_CONN_CLOSED;
    }
    out = bufferevent_get_output(s->bev);
    if (evbuffer_get_length(out) > KVXI_ENGINE_OUT_MAX) {
        session_close(s, KVX_ERR_NO_SPACE, KVX_OK, 0,
                      "the engine does not read its replies");
        return KVX_ERR_NO_SPACE;
    }
    env->version = KVXI_ENGINE_VERSION;
    if (env->request_id == 0 && env->body_case != BODY(ERROR)) {
        env->request_id = ++s->next_id;
    }
    st = kvxi_frame_write(out, env);
    if (st != KVX_OK) {
        session_close(s, st, KVX_OK, 0, "cannot queue a reply");
    }
    return st;
}

void kvxi_session_result(kvxi_session_t *s, uint64_t req_id,
                         kvx_status_t status, uint64_t xfer_id)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT;
    Kvx__V1__Result r = KVX__V1__RESULT__INIT;

    r.status = (Kvx__V1__Status)kvxi_status_to_wire(status);
    r.xfer_id = status == KVX_OK ? xfer_id : 0;
    env.request_id = req_id;
    env.body_case = BODY(RESULT);
    env.result = &r;
    kvxi_session_send(s, &env);
}

static void error_env(kvxi_envelope_t *env, Kvx__V1__Error *e, uint64_t req_id,
                      kvx_status_t code, const char *text)
{
    kvx__v1__error__init(e);
    e->code = (Kvx__V1__Status)kvxi_status_to_wire(code);
    e->message = (char *)text;
    e->request_id = req_id;
    kvx__v1__envelope__init(env);
    env->version = KVXI_ENGINE_VERSION;
    env->request_id = req_id;
    env->body_case = BODY(ERROR);
    env->error = e;
}

void kvxi_session_error(kvxi_session_t *s, uint64_t req_id, kvx_status_t code,
                        const char *text)
{
    kvxi_envelope_t env;
    Kvx__V1__Error e;

    error_env(&env, &e, req_id, code, text);
    kvxi_session_send(s, &env);
}

/* ------------------------------------------------------------------------
 * The end of a session.
 */

/* Releases what the session holds in the node. Publications it made stay
 * until their own lease ends: they are the node's pins, not the
 * session's. */
static void session_teardown(kvxi_session_t *s)
{
    kvxi_engine_xfers_end(s);
    kvxi_engine_holds_end(s);
    kvxi_node_timer_rearm(s->eng->node);
}

static void session_free(kvxi_session_t *s)
{
    struct kvxi_engine *eng = s->eng;

    session_teardown(s);
    if (s->prev != NULL) {
        s->prev->next = s->next;
    } else {
        eng->sessions = s->next;
    }
    if (s->next != NULL) {
        s->next->prev = s->prev;
    }
    if (s->refused) {
        eng->n_refused--;
    }
    kvxi_log(s->attached ? KVX_LOG_INFO : KVX_LOG_DEBUG,
             "node %s: engine %s (pid %d, uid %u) detached", eng->node->node_id,
             s->name, (int)s->pid, (unsigned)s->uid);
    if (s->bev != NULL) {
        bufferevent_free(s->bev);
    }
    if (s->timer != NULL) {
        event_free(s->timer);
    }
    if (s->finish != NULL) {
        event_free(s->finish);
    }
    free(s);
}

static void session_finish_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    session_free(arg);
}

/* Ends @p s: its node resources go now, the socket after the Error
 * (@p wire, unless KVX_OK) is flushed (at most KVXI_ENGINE_LINGER_MS). */
static void session_close(kvxi_session_t *s, kvx_status_t reason,
                          kvx_status_t wire, uint64_t req_id, const char *why)
{
    struct evbuffer *out = bufferevent_get_output(s->bev);
    struct evbuffer *in = bufferevent_get_input(s->bev);
    struct timeval tv = {0, KVXI_ENGINE_LINGER_MS * 1000};

    if (s->closing) {
        return;
    }
    kvxi_log(reason == KVX_ERR_PEER_DOWN ? KVX_LOG_DEBUG : KVX_LOG_INFO,
             "node %s: engine %s (pid %d): closing (%s): %s",
             s->eng->node->node_id, s->name, (int)s->pid,
             kvx_status_string(reason), why);
    s->closing = 1;
    if (wire != KVX_OK && evbuffer_get_length(out) <= KVXI_ENGINE_OUT_MAX) {
        kvxi_envelope_t env;
        Kvx__V1__Error e;

        error_env(&env, &e, req_id, wire, why);
        kvxi_frame_write(out, &env); /* best effort */
    }
    session_teardown(s);
    bufferevent_disable(s->bev, EV_READ);
    evbuffer_drain(in, evbuffer_get_length(in));
    if (reason == KVX_ERR_PEER_DOWN || reason == KVX_ERR_NO_SPACE ||
        evbuffer_get_length(out) == 0) {
        event_active(s->finish, EV_TIMEOUT, 1);
        return;
    }
    event_del(s->timer);
    event_add(s->timer, &tv);
}

/* ------------------------------------------------------------------------
 * Attach.
 */

/* Writes the frame and the pool's fd in one sendmsg(): nothing was queued
 * before it (Attach is the first frame), so the order is kept. */
static kvx_status_t attach_send_fd(kvxi_session_t *s, kvxi_envelope_t *env,
                                   int pool_fd)
{
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctl;
    uint8_t buf[2048]; /* node id, layout and address: well below */
    struct iovec iov = {buf, 0};
    struct msghdr msg = {.msg_iov = &iov,
                         .msg_iovlen = 1,
                         .msg_control = ctl.buf,
                         .msg_controllen = sizeof(ctl.buf)};
    struct cmsghdr *c;
    kvx_status_t st;

    if (evbuffer_get_length(bufferevent_get_output(s->bev)) != 0) {
        return KVX_ERR_BAD_STATE;
    }
    st = kvxi_frame_encode(env, buf, sizeof(buf), &iov.iov_len);
    if (st != KVX_OK) {
        return st;
    }
    memset(&ctl, 0, sizeof(ctl));
    c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &pool_fd, sizeof(int));
    return sendmsg(s->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT) ==
                   (ssize_t)iov.iov_len
               ? KVX_OK
               : KVX_ERR_IO;
}

static void session_on_attach(kvxi_session_t *s, const kvxi_envelope_t *env)
{
    const Kvx__V1__Attach *a = env->attach;
    struct kvx_node *node = s->eng->node;
    kvxi_envelope_t out = KVX__V1__ENVELOPE__INIT;
    Kvx__V1__AttachReply r = KVX__V1__ATTACH_REPLY__INIT;
    Kvx__V1__Layout layout;
    kvx_pool_attr_t pa;
    const char *addr = kvx_node_listen_addr(node);
    kvx_status_t st = KVX_OK;
    size_t i = 0;

    for (const char *p = a->client_name; p != NULL && p[i] != '\0'; i++) {
        unsigned char ch = (unsigned char)p[i];

        s->name[i] = ch < 0x20 || ch >= 0x7f ? '?' : (char)ch;
    }
    s->name[i] = '\0';
    if (i == 0) {
        snprintf(s->name, sizeof(s->name), "%s", "engine");
    }
    out.request_id = env->request_id;
    out.body_case = BODY(ATTACH_REPLY);
    out.attach_reply = &r;
    r.version = KVXI_ENGINE_VERSION;
    if (a->min_version > KVXI_ENGINE_VERSION ||
        a->max_version < KVXI_ENGINE_VERSION) {
        st = KVX_ERR_PROTO_VERSION;
    } else if (kvx_pool_query(node->pool, &pa) != KVX_OK || pa.fd < 0) {
        st = KVX_ERR_NOT_SUPPORTED; /* no memfd to share */
    } else if ((s->holds = calloc(node->layout.num_blocks,
                                  sizeof(*s->holds))) == NULL) {
        st = KVX_ERR_NO_MEMORY;
    }
    if (st != KVX_OK) {
        r.status = kvxi_status_to_wire(st);
        kvxi_session_send(s, &out);
        session_close(s, st, KVX_OK, 0, "attach refused");
        return;
    }
    kvxi_wire_layout_to(&node->layout, &layout);
    r.status = kvxi_status_to_wire(KVX_OK);
    r.node_id = node->node_id;
    r.layout = &layout;
    r.pool_bytes = pa.length;
    r.listen_addr = (char *)(addr != NULL ? addr : "");
    r.layout_hash = kvx_layout_compat_hash(&node->layout);
    out.version = KVXI_ENGINE_VERSION;
    if (attach_send_fd(s, &out, pa.fd) != KVX_OK) {
        session_close(s, KVX_ERR_IO, KVX_OK, 0, "cannot send AttachReply");
        return;
    }
    s->attached = 1;
    event_del(s->timer);
    kvxi_info("node %s: engine %s (pid %d, uid %u, gid %u) attached",
              node->node_id, s->name, (int)s->pid, (unsigned)s->uid,
              (unsigned)s->gid);
}

/* Ends a session whose credentials are not allowed, answering its first
 * frame (@p req_id, 0 when none could be decoded) with Error(AUTH). */
static void session_refuse(kvxi_session_t *s, uint64_t req_id)
{
    char why[KVXI_NAME_MAX + 160];

    snprintf(why, sizeof(why),
             "uid %u gid %u may not attach to node %s (not its user, root, "
             "or in its engine allow lists)",
             (unsigned)s->uid, (unsigned)s->gid, s->eng->node->node_id);
    session_close(s, KVX_ERR_AUTH, KVX_ERR_AUTH, req_id, why);
}

/* ------------------------------------------------------------------------
 * Frames in.
 */

static void session_dispatch(kvxi_session_t *s, const kvxi_envelope_t *env)
{
    s->eng->node->activity++;
    if (s->refused) {
        session_refuse(s, env->request_id);
        return;
    }
    if (!s->attached) {
        if (env->body_case == BODY(ATTACH)) {
            session_on_attach(s, env);
        } else {
            session_close(s, KVX_ERR_PROTO_UNEXPECTED, KVX_ERR_PROTO_UNEXPECTED,
                          env->request_id, "the first frame must be Attach");
        }
        return;
    }
    if (env->version != KVXI_ENGINE_VERSION) {
        session_close(s, KVX_ERR_PROTO_VERSION, KVX_ERR_PROTO_VERSION,
                      env->request_id, "frame in another session version");
        return;
    }
    if (env->body_case == BODY(ERROR)) {
        kvxi_debug("engine %s: Error for request %llu ignored", s->name,
                   (unsigned long long)env->request_id);
        return;
    }
    if (env->body_case == BODY(ATTACH)) {
        session_close(s, KVX_ERR_PROTO_UNEXPECTED, KVX_ERR_PROTO_UNEXPECTED,
                      env->request_id, "already attached");
        return;
    }
    if (s->eng->node->shutting_down) {
        kvxi_session_error(s, env->request_id, KVX_ERR_BAD_STATE,
                           "the node is shutting down");
        return;
    }
    switch (env->body_case) {
    case BODY(RESERVE): kvxi_engine_on_reserve(s, env); break;
    case BODY(SEAL): kvxi_engine_on_seal(s, env); break;
    case BODY(RELEASE): kvxi_engine_on_release(s, env); break;
    case BODY(LOOKUP): kvxi_engine_on_lookup(s, env); break;
    case BODY(STATS): kvxi_engine_on_stats(s, env); break;
    case BODY(PUSH_START): kvxi_engine_on_push(s, env); break;
    case BODY(PULL_START): kvxi_engine_on_pull(s, env); break;
    case BODY(LAYER_READY): kvxi_engine_on_layer_ready(s, env); break;
    case BODY(ABORT): kvxi_engine_on_abort(s, env); break;
    case BODY(PUBLISH_START): kvxi_engine_on_publish(s, env); break;
    case BODY(UNPUBLISH): kvxi_engine_on_unpublish(s, env); break;
    case BODY(RECV): kvxi_engine_on_recv(s, env); break;
    case BODY(PEER_LIST): kvxi_engine_on_peer_list(s, env); break;
    default:
        kvxi_session_error(s, env->request_id, KVX_ERR_NOT_SUPPORTED,
                           "message not served on an engine session");
        break;
    }
}

static void session_read_cb(struct bufferevent *bev, void *arg)
{
    struct evbuffer *in = bufferevent_get_input(bev);
    kvxi_session_t *s = arg;
    /* A refused peer may send what an unauthenticated one may. */
    uint32_t max =
        s->refused ? KVXI_FRAME_MAX_HANDSHAKE : KVXI_FRAME_MAX_DEFAULT;

    while (!s->closing) {
        size_t avail = evbuffer_get_length(in), consumed = 0, frame;
        kvxi_envelope_t *env = NULL;
        uint8_t hdr[KVXI_FRAME_HEADER_LEN];
        const uint8_t *p;
        kvx_status_t st;
        uint32_t body;

        if (avail < KVXI_FRAME_HEADER_LEN) {
            return;
        }
        evbuffer_copyout(in, hdr, sizeof(hdr));
        body = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 |
               (uint32_t)hdr[2] << 8 | (uint32_t)hdr[3];
        if (body == 0 || body > max) {
            st = body == 0 ? KVX_ERR_PROTO_MALFORMED : KVX_ERR_PROTO_OVERSIZE;
            if (s->refused) {
                session_refuse(s, 0);
            } else {
                session_close(s, st, st, 0, "bad frame length");
            }
            return;
        }
        frame = KVXI_FRAME_HEADER_LEN + (size_t)body;
        if (avail < frame) {
            return; /* the read watermark leaves room for the whole frame */
        }
        p = evbuffer_pullup(in, (ev_ssize_t)frame);
        st = p == NULL ? KVX_ERR_NO_MEMORY
                       : kvxi_frame_decode(p, frame, max, &env, &consumed);
        if (st != KVX_OK && s->refused) {
            session_refuse(s, 0);
            return;
        }
        if (st != KVX_OK) {
            st = st == KVX_INPROGRESS ? KVX_ERR_PROTO_MALFORMED : st;
            session_close(s, st, st, 0, "undecodable frame");
            return;
        }
        evbuffer_drain(in, consumed);
        session_dispatch(s, env);
        kvxi_frame_free(env);
    }
}

static void session_write_cb(struct bufferevent *bev, void *arg)
{
    kvxi_session_t *s = arg;

    if (s->closing && evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
        event_active(s->finish, EV_TIMEOUT, 1);
    }
}

static void session_event_cb(struct bufferevent *bev, short what, void *arg)
{
    kvxi_session_t *s = arg;

    (void)bev;
    if (s->closing) {
        event_active(s->finish, EV_TIMEOUT, 1);
        return;
    }
    session_close(s, KVX_ERR_PEER_DOWN, KVX_OK, 0,
                  (what & BEV_EVENT_EOF) ? "the engine closed the socket"
                                         : "socket error");
}

static void session_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    kvxi_session_t *s = arg;

    (void)fd;
    (void)what;
    if (s->closing) {
        event_active(s->finish, EV_TIMEOUT, 1); /* linger over */
    } else if (s->refused) {
        session_refuse(s, 0);
    } else if (!s->attached) {
        session_close(s, KVX_ERR_TIMEOUT, KVX_ERR_TIMEOUT, 0,
                      "no Attach in time");
    }
}

/* ------------------------------------------------------------------------
 * The listener.
 */

static void engine_accept(kvxi_listener_t *l, int fd, void *arg)
{
    struct kvxi_engine *eng = arg;
    struct event_base *base = eng->node->base;
    struct timeval tv = {KVXI_ENGINE_ATTACH_MS / 1000, 0};
    kvxi_session_t *s;

    (void)l;
    s = eng->node->shutting_down ? NULL : calloc(1, sizeof(*s));
    if (s == NULL) {
        close(fd);
        return;
    }
    s->eng = eng;
    s->fd = fd;
    s->pid = -1;
    s->uid = (uid_t)-1;
    s->gid = (gid_t)-1;
    snprintf(s->name, sizeof(s->name), "%s", "(attaching)");
    if (!kvxi_engine_cred_allowed(eng->node, s)) {
        int full = eng->n_refused >= KVXI_ENGINE_REFUSED_MAX;

        /* at warn while answered: a flood of them does not flood the log */
        kvxi_log(full ? KVX_LOG_DEBUG : KVX_LOG_WARN,
                 "node %s: engine socket: refused a connection from pid %d "
                 "uid %u gid %u: not the node's user, root, or in "
                 "engine_allow_uids / engine_allow_gids",
                 eng->node->node_id, (int)s->pid, (unsigned)s->uid,
                 (unsigned)s->gid);
        if (full) {
            close(fd); /* too many waiting to be told: no answer */
            free(s);
            return;
        }
        s->refused = 1;
        eng->n_refused++;
        snprintf(s->name, sizeof(s->name), "%s", "(refused)");
    }
    s->next = eng->sessions; /* linked first: session_free() unlinks */
    if (eng->sessions != NULL) {
        eng->sessions->prev = s;
    }
    eng->sessions = s;
    s->timer = evtimer_new(base, session_timer_cb, s);
    s->finish = event_new(base, -1, 0, session_finish_cb, s);
    s->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (s->bev == NULL) {
        close(fd);
    }
    if (s->timer == NULL || s->finish == NULL || s->bev == NULL ||
        evutil_make_socket_nonblocking(fd) != 0) {
        kvxi_warn("node %s: dropping an engine connection", eng->node->node_id);
        session_free(s);
        return;
    }
    bufferevent_setcb(s->bev, session_read_cb, session_write_cb,
                      session_event_cb, s);
    bufferevent_setwatermark(
        s->bev, EV_READ, 0,
        (s->refused ? KVXI_FRAME_MAX_HANDSHAKE : KVXI_FRAME_MAX_DEFAULT) +
            KVXI_FRAME_HEADER_LEN);
    bufferevent_enable(s->bev, EV_READ | EV_WRITE);
    event_add(s->timer, &tv);
    kvxi_debug("node %s: engine connection from pid %d uid %u gid %u",
               eng->node->node_id, (int)s->pid, (unsigned)s->uid,
               (unsigned)s->gid);
}

kvx_status_t kvxi_engine_create(struct kvx_node *node, const char *path)
{
    char addr[sizeof("unix:") + 108];
    struct kvxi_engine *eng;
    kvx_status_t st;

    if (strncmp(path, "unix:", 5) == 0) {
        snprintf(addr, sizeof(addr), "%s", path);
    } else if (path[0] == '/' && strlen(path) < sizeof(addr) - 5) {
        snprintf(addr, sizeof(addr), "unix:%s", path);
    } else {
        kvxi_error("node %s: engine socket '%s' is not a unix socket path",
                   node->node_id, path);
        return KVX_ERR_INVALID_PARAM;
    }
    eng = calloc(1, sizeof(*eng));
    if (eng == NULL) {
        return KVX_ERR_NO_MEMORY;
    }
    eng->node = node;
    st = kvxi_listener_create_raw(node->base, addr, engine_accept, eng,
                                  &eng->listener);
    if (st == KVX_OK) {
        st = kvxi_engine_sock_perms(node, addr + 5);
        if (st != KVX_OK) {
            kvxi_listener_destroy(eng->listener); /* removes the file */
        }
    }
    if (st != KVX_OK) {
        free(eng);
        return st;
    }
    /* an engine may close while we write (engine_int.h) */
    kvxi_conn_ignore_sigpipe();
    node->engine = eng;
    return KVX_OK;
}

void kvxi_engine_destroy(struct kvx_node *node)
{
    struct kvxi_engine *eng = node->engine;

    if (eng == NULL) {
        return;
    }
    node->engine = NULL; /* no engine deadlines while tearing down */
    kvxi_listener_destroy(eng->listener);
    while (eng->sessions != NULL) {
        session_free(eng->sessions);
    }
    free(eng->peers); /* the node frees the peers themselves */
    free(eng->known);
    free(eng);
}
