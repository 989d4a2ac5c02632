/*
 * The engine client's session (client_int.h): connecting and attaching
 * (the pool's memfd arrives with AttachReply as SCM_RIGHTS and is mapped),
 * sending requests, reading frames and dispatching them, all bounded by
 * deadlines; detaching.
 */
#include "client_int.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "handshake_int.h"
#include "log_int.h"

/** Read at least this much room per recvmsg(). */
#define CLIENT_READ_CHUNK (64u << 10)
/** Descriptors one recvmsg() can take (more are a protocol violation). */
#define CLIENT_FDS_MAX 4
/** Frames up to this size are encoded on the stack. */
#define CLIENT_SEND_STACK 512u
/** Retry interval while a listener's backlog is full. */
#define CLIENT_CONNECT_RETRY_MS 5
#define CLIENT_PARAM_FIELDS_ALL                                                \
    (KVX_CLIENT_PARAM_FIELD_NAME | KVX_CLIENT_PARAM_FIELD_TIMEOUT)

/* An optional string of a decoded message, "" when absent. */
static const char *client_text(const char *s)
{
    return s != NULL ? s : "";
}

uint64_t kvxi_client_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Milliseconds left until @p deadline_ns, rounded up, for poll(). */
static int client_ms_left(uint64_t deadline_ns)
{
    uint64_t now = kvxi_client_now_ns(), ms;

    if (now >= deadline_ns) {
        return 0;
    }
    ms = (deadline_ns - now + 999999) / 1000000;
    return ms > (uint64_t)INT32_MAX ? INT32_MAX : (int)ms;
}

/* Waits for @p events on @p fd until the deadline: 1 ready, 0 timed out,
 * -1 poll failed (errno). */
static int client_wait_fd(int fd, short events, uint64_t deadline_ns)
{
    struct pollfd pfd = {.fd = fd, .events = events};
    int rc;

    do {
        int ms = client_ms_left(deadline_ns);

        if (ms == 0) {
            return 0;
        }
        rc = poll(&pfd, 1, ms);
    } while (rc == 0 || (rc < 0 && errno == EINTR));
    return rc < 0 ? -1 : 1;
}

kvx_status_t kvxi_client_connect(const char *path, uint32_t timeout_ms,
                                 int *fd_p)
{
    uint64_t deadline = kvxi_client_now_ns() + timeout_ms * 1000000ull;
    struct sockaddr_un sa;
    size_t len = strlen(path);
    int fd, err;

    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, len + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        kvxi_error("client: socket: %s", strerror(errno));
        return KVX_ERR_IO;
    }
    /* A unix stream connect completes at once, or fails with EAGAIN while
     * the listener's backlog is full (the node is busy): retry. */
    while (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        err = errno;
        if (err == EINTR) {
            continue;
        }
        if (err == EAGAIN && kvxi_client_now_ns() < deadline) {
            poll(NULL, 0, CLIENT_CONNECT_RETRY_MS);
            continue;
        }
        close(fd);
        if (err == ENOENT || err == ECONNREFUSED || err == ENOTDIR) {
            kvxi_debug("client: connect %s: %s", path, strerror(err));
            return KVX_ERR_PEER_UNREACHABLE;
        }
        if (err == EAGAIN) {
            kvxi_debug("client: connect %s: backlog full until the timeout",
                       path);
            return KVX_ERR_TIMEOUT;
        }
        if (err == EACCES || err == EPERM) {
            kvxi_error("client: connect %s: %s: the node does not let this "
                       "user attach (its engine allow lists)",
                       path, strerror(err));
            return KVX_ERR_AUTH;
        }
        kvxi_error("client: connect %s: %s", path, strerror(err));
        return KVX_ERR_IO;
    }
    *fd_p = fd;
    return KVX_OK;
}

void kvxi_client_close(struct kvx_client *c, const char *why)
{
    uint64_t now = kvxi_client_now_ns();

    if (c->fd < 0) {
        return;
    }
    kvxi_warn("client: session with node %s closed: %s", c->node_id, why);
    close(c->fd);
    c->fd = -1;
    for (struct kvx_client_xfer *x = c->xfers; x != NULL; x = x->next) {
        if (x->attr.status == KVX_INPROGRESS) {
            x->attr.status = KVX_ERR_PEER_DOWN;
            x->attr.elapsed_ns = now - x->t_start_ns;
        }
    }
}

kvx_status_t kvxi_client_send(struct kvx_client *c, kvxi_envelope_t *env,
                              uint64_t deadline_ns)
{
    uint8_t stack[CLIENT_SEND_STACK], *buf = stack;
    size_t size, len, off = 0;
    kvx_status_t status;

    if (c->fd < 0) {
        return KVX_ERR_PEER_DOWN;
    }
    env->version = KVXI_PROTO_VERSION;
    env->request_id = ++c->last_id;
    size = kvxi_frame_size(env);
    if (size > sizeof(stack) && (buf = malloc(size)) == NULL) {
        return KVX_ERR_NO_MEMORY;
    }
    status = kvxi_frame_encode(env, buf, size, &len);
    if (status != KVX_OK) {
        kvxi_error("client: cannot encode %s: %s", kvxi_envelope_body_name(env),
                   kvx_status_string(status));
        status = KVX_ERR_INVALID_PARAM;
        goto out;
    }
    while (off < len) {
        ssize_t n =
            send(c->fd, buf + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        int rc;

        if (n >= 0) {
            off += (size_t)n;
            continue;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            kvxi_client_close(c, strerror(errno));
            status = KVX_ERR_PEER_DOWN;
            goto out;
        }
        rc = client_wait_fd(c->fd, POLLOUT, deadline_ns);
        if (rc == 0) {
            /* Half a frame on the wire cannot be taken back. */
            if (off > 0) {
                kvxi_client_close(c, "send timed out within a frame");
            }
            status = KVX_ERR_TIMEOUT;
            goto out;
        }
        if (rc < 0) {
            kvxi_client_close(c, strerror(errno));
            status = KVX_ERR_PEER_DOWN;
            goto out;
        }
    }
out:
    if (buf != stack) {
        free(buf);
    }
    return status;
}

/* Grows the input buffer so one read has room, and the next frame (its
 * length is in the header once that arrived) fits whole. */
static kvx_status_t client_in_reserve(struct kvx_client *c)
{
    size_t want = c->in_len + CLIENT_READ_CHUNK;
    uint8_t *p;

    if (c->in_len >= KVXI_FRAME_HEADER_LEN) {
        size_t frame = ((size_t)c->in[0] << 24 | (size_t)c->in[1] << 16 |
                        (size_t)c->in[2] << 8 | c->in[3]) +
                       KVXI_FRAME_HEADER_LEN;

        /* Oversized headers are refused by the decoder, not buffered. */
        if (frame <= KVXI_FRAME_MAX_DEFAULT + KVXI_FRAME_HEADER_LEN &&
            frame > want) {
            want = frame;
        }
    }
    if (want <= c->in_cap) {
        return KVX_OK;
    }
    p = realloc(c->in, want);
    if (p == NULL) {
        return KVX_ERR_NO_MEMORY;
    }
    c->in = p;
    c->in_cap = want;
    return KVX_OK;
}

/* Takes the descriptors of one message: AttachReply's memfd is kept, any
 * other is closed and counted (the attach refuses a reply with several). */
static void client_take_fds(struct kvx_client *c, struct msghdr *msg)
{
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(msg); cm != NULL;
         cm = CMSG_NXTHDR(msg, cm)) {
        size_t n;

        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) {
            continue;
        }
        n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < n; i++) {
            int fd;

            memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
            if (!c->attached && c->attach_fd < 0) {
                c->attach_fd = fd;
                continue;
            }
            close(fd);
            c->extra_fds++;
        }
    }
}

/* One recvmsg(), waiting until the deadline for data. */
static kvx_status_t client_read(struct kvx_client *c, uint64_t deadline_ns)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(CLIENT_FDS_MAX * sizeof(int))];
    } ctl;
    struct msghdr msg;
    struct iovec iov;
    kvx_status_t status;
    ssize_t n;

    status = client_in_reserve(c);
    if (status != KVX_OK) {
        return status;
    }
    for (;;) {
        int rc;

        iov.iov_base = c->in + c->in_len;
        iov.iov_len = c->in_cap - c->in_len;
        memset(&msg, 0, sizeof(msg));
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = ctl.buf;
        msg.msg_controllen = sizeof(ctl.buf);
        n = recvmsg(c->fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n > 0) {
            client_take_fds(c, &msg);
            if (msg.msg_flags & MSG_CTRUNC) {
                c->extra_fds++; /* the kernel dropped some descriptors */
            }
            c->in_len += (size_t)n;
            return KVX_OK;
        }
        if (n == 0) {
            kvxi_client_close(c, "the node closed the socket");
            return KVX_ERR_PEER_DOWN;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            kvxi_client_close(c, strerror(errno));
            return KVX_ERR_PEER_DOWN;
        }
        rc = client_wait_fd(c->fd, POLLIN, deadline_ns);
        if (rc == 0) {
            return KVX_ERR_TIMEOUT;
        }
        if (rc < 0) {
            kvxi_client_close(c, strerror(errno));
            return KVX_ERR_PEER_DOWN;
        }
    }
}

kvx_transport_t kvxi_client_transport(int data_path)
{
    switch (data_path) {
    case KVX__V1__DATA_PATH__DATA_PATH_RMA: return KVX_TRANSPORT_RMA;
    case KVX__V1__DATA_PATH__DATA_PATH_AM: return KVX_TRANSPORT_AM;
    default: return KVX_TRANSPORT_AUTO;
    }
}

static void client_on_xfer_done(struct kvx_client *c,
                                const Kvx__V1__XferDone *d)
{
    struct kvx_client_xfer *x = c->xfers;

    while (x != NULL && x->xfer_id != d->xfer_id) {
        x = x->next;
    }
    if (x == NULL || x->attr.status != KVX_INPROGRESS) {
        kvxi_debug("client: XferDone for transfer %llu not running: ignored",
                   (unsigned long long)d->xfer_id);
        return;
    }
    x->attr.status = kvxi_status_from_wire(d->status);
    x->attr.n_blocks = d->block_count;
    x->attr.blocks_hit = d->blocks_hit;
    x->attr.blocks_sent = d->blocks_sent;
    x->attr.bytes_sent = d->bytes_sent;
    x->attr.segments = d->segments;
    x->attr.transport = kvxi_client_transport(d->data_path);
    x->attr.elapsed_ns = d->elapsed_ns;
    x->attr.checksum_mismatches = d->checksum_mismatches;
}

kvx_status_t kvxi_client_pump(struct kvx_client *c, uint64_t want_id,
                              const struct kvx_client_xfer *xfer,
                              uint64_t deadline_ns, kvxi_envelope_t **reply_p)
{
    kvxi_envelope_t *env;
    kvx_status_t status;
    size_t used;

    for (;;) {
        /* Whole frames already buffered first, in order. */
        while ((status = kvxi_frame_decode(c->in, c->in_len, 0, &env, &used)) ==
               KVX_OK) {
            c->in_len -= used;
            memmove(c->in, c->in + used, c->in_len);
            if (env->body_case == KVX__V1__ENVELOPE__BODY_XFER_DONE) {
                client_on_xfer_done(c, env->xfer_done);
                kvxi_frame_free(env);
                if (xfer != NULL && xfer->attr.status != KVX_INPROGRESS) {
                    return KVX_OK;
                }
                continue;
            }
            if (want_id != 0 && env->request_id == want_id) {
                *reply_p = env;
                return KVX_OK;
            }
            if (env->body_case == KVX__V1__ENVELOPE__BODY_ERROR &&
                env->request_id == 0) {
                kvxi_error(
                    "client: the node refused a frame: %s: %s",
                    kvx_status_string(kvxi_status_from_wire(env->error->code)),
                    client_text(env->error->message));
                kvxi_frame_free(env);
                kvxi_client_close(c, "the node could not decode a frame");
                return KVX_ERR_PEER_DOWN;
            }
            kvxi_debug("client: %s for request %llu not awaited: ignored",
                       kvxi_envelope_body_name(env),
                       (unsigned long long)env->request_id);
            kvxi_frame_free(env);
        }
        if (status != KVX_INPROGRESS) {
            kvxi_error("client: undecodable frame from node %s: %s", c->node_id,
                       kvx_status_string(status));
            kvxi_client_close(c, "protocol error");
            c->in_len = 0;
            return status;
        }
        if (xfer != NULL && xfer->attr.status != KVX_INPROGRESS) {
            return KVX_OK;
        }
        if (c->fd < 0) {
            return KVX_ERR_PEER_DOWN;
        }
        status = client_read(c, deadline_ns);
        if (status != KVX_OK) {
            return status;
        }
    }
}

kvx_status_t kvxi_client_call(struct kvx_client *c, kvxi_envelope_t *env,
                              Kvx__V1__Envelope__BodyCase expect,
                              uint32_t extra_ms, kvxi_envelope_t **reply_p)
{
    uint64_t wait_ms = (uint64_t)c->timeout_ms + extra_ms;
    uint64_t deadline = kvxi_client_now_ns() + wait_ms * 1000000ull;
    kvxi_envelope_t *reply = NULL;
    kvx_status_t status;

    env->deadline_us = wait_ms * 1000;
    status = kvxi_client_send(c, env, deadline);
    if (status != KVX_OK) {
        return status;
    }
    status = kvxi_client_pump(c, env->request_id, NULL, deadline, &reply);
    if (status != KVX_OK) {
        if (status == KVX_ERR_TIMEOUT) {
            kvxi_debug("client: no reply to %s %llu within %llu ms",
                       kvxi_envelope_body_name(env),
                       (unsigned long long)env->request_id,
                       (unsigned long long)wait_ms);
        }
        return status;
    }
    if (reply->body_case == KVX__V1__ENVELOPE__BODY_ERROR) {
        status = kvxi_status_from_wire(reply->error->code);
        kvxi_debug("client: node %s refused %s: %s%s%s", c->node_id,
                   kvxi_envelope_body_name(env), kvx_status_string(status),
                   client_text(reply->error->message)[0] ? ": " : "",
                   client_text(reply->error->message));
        kvxi_frame_free(reply);
        return status < KVX_OK ? status : KVX_ERR_PROTO_MALFORMED;
    }
    if (reply->body_case != expect) {
        kvxi_error("client: node %s answered %s with %s", c->node_id,
                   kvxi_envelope_body_name(env),
                   kvxi_envelope_body_name(reply));
        kvxi_frame_free(reply);
        kvxi_client_close(c, "unexpected reply");
        return KVX_ERR_PROTO_UNEXPECTED;
    }
    *reply_p = reply;
    return KVX_OK;
}

/* A reply that breaks the session's contract: the session is closed (the
 * node then drops whatever it held for us). */
kvx_status_t kvxi_client_violation(struct kvx_client *c, const char *what)
{
    kvxi_error("client: node %s: %s", c->node_id, what);
    kvxi_client_close(c, "protocol violation");
    return KVX_ERR_PROTO_MALFORMED;
}

/* A request answered by Result: its status. */
kvx_status_t kvxi_client_call_result(struct kvx_client *c, kvxi_envelope_t *env,
                                     uint64_t *xfer_id_p)
{
    kvxi_envelope_t *reply;
    kvx_status_t status;

    status =
        kvxi_client_call(c, env, KVX__V1__ENVELOPE__BODY_RESULT, 0, &reply);
    if (status != KVX_OK) {
        return status;
    }
    status = kvxi_status_from_wire(reply->result->status);
    if (status > KVX_OK) {
        status = kvxi_client_violation(c, "Result with status INPROGRESS");
    } else if (status < KVX_OK) {
        kvxi_debug("client: node %s refused %s: %s%s%s", c->node_id,
                   kvxi_envelope_body_name(env), kvx_status_string(status),
                   client_text(reply->result->message)[0] ? ": " : "",
                   client_text(reply->result->message));
    } else if (xfer_id_p != NULL) {
        if (reply->result->xfer_id == 0) {
            status = kvxi_client_violation(c, "Result without a transfer id");
        }
        *xfer_id_p = reply->result->xfer_id;
    }
    kvxi_frame_free(reply);
    return status;
}

/* ------------------------------------------------------------------------
 * Attach and detach.
 */

static kvx_status_t client_map(struct kvx_client *c,
                               const Kvx__V1__AttachReply *r)
{
    char why[128];
    struct stat st;
    int seals;

    if (r->version != KVXI_CLIENT_SESSION_VERSION) {
        kvxi_error("client: node chose session version %u", r->version);
        return KVX_ERR_PROTO_VERSION;
    }
    if (c->attach_fd < 0 || c->extra_fds != 0) {
        kvxi_error("client: AttachReply carries %u descriptors, not one",
                   (c->attach_fd >= 0) + c->extra_fds);
        return KVX_ERR_PROTO_MALFORMED;
    }
    why[0] = '\0';
    if (kvxi_wire_layout_from(r->layout, &c->layout, why, sizeof(why)) !=
            KVX_OK ||
        c->layout.order != KVX_LAYOUT_BLOCK_MAJOR ||
        kvx_layout_compat_hash(&c->layout) != r->layout_hash) {
        kvxi_error("client: AttachReply layout unusable: %s",
                   why[0] == '\0' ? "order or layout_hash" : why);
        return KVX_ERR_PROTO_MALFORMED;
    }
    if (fstat(c->attach_fd, &st) != 0) {
        kvxi_error("client: fstat of the pool memfd: %s", strerror(errno));
        return KVX_ERR_IO;
    }
    /* Without F_SEAL_SHRINK the node could shrink the file under our
     * mapping, turning our reads into SIGBUS. */
    seals = fcntl(c->attach_fd, F_GET_SEALS);
    if (r->pool_bytes > (uint64_t)st.st_size || r->pool_bytes > SIZE_MAX ||
        seals < 0 || !(seals & F_SEAL_SHRINK)) {
        kvxi_error("client: the pool memfd (%lld bytes, seals %#x) cannot "
                   "back %llu bytes safely",
                   (long long)st.st_size, (unsigned)seals,
                   (unsigned long long)r->pool_bytes);
        return KVX_ERR_PROTO_MALFORMED;
    }
    c->base = mmap(NULL, (size_t)r->pool_bytes, PROT_READ | PROT_WRITE,
                   MAP_SHARED, c->attach_fd, 0);
    if (c->base == MAP_FAILED) {
        c->base = NULL;
        kvxi_error("client: mmap of %llu pool bytes: %s",
                   (unsigned long long)r->pool_bytes, strerror(errno));
        return KVX_ERR_IO;
    }
    c->map_bytes = (size_t)r->pool_bytes;
    c->layout_hash = r->layout_hash;
    snprintf(c->node_id, sizeof(c->node_id), "%s", r->node_id);
    snprintf(c->listen_addr, sizeof(c->listen_addr), "%s",
             r->listen_addr ? r->listen_addr : "");
    return KVX_OK;
}

kvx_status_t kvx_client_attach(const char *path,
                               const kvx_client_params_t *params,
                               kvx_client_h *client_p)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT, *reply;
    Kvx__V1__Attach a = KVX__V1__ATTACH__INIT;
    const char *name = KVXI_CLIENT_NAME_DEFAULT;
    uint32_t timeout_ms = KVXI_CLIENT_TIMEOUT_MS_DEFAULT;
    kvx_status_t status;
    kvx_client_h c;
    size_t len;

    if (path == NULL || client_p == NULL ||
        (params != NULL &&
         (params->field_mask & ~(uint64_t)CLIENT_PARAM_FIELDS_ALL))) {
        return KVX_ERR_INVALID_PARAM;
    }
    if (params != NULL && (params->field_mask & KVX_CLIENT_PARAM_FIELD_NAME)) {
        name = params->name != NULL ? params->name : "";
        if (strnlen(name, KVXI_NAME_MAX + 1) > KVXI_NAME_MAX) {
            return KVX_ERR_INVALID_PARAM;
        }
    }
    if (params != NULL &&
        (params->field_mask & KVX_CLIENT_PARAM_FIELD_TIMEOUT) &&
        params->timeout_ms != 0) {
        timeout_ms = params->timeout_ms;
    }
    if (strncmp(path, "unix:", 5) == 0) {
        path += 5;
    }
    len = strnlen(path, KVXI_CLIENT_PATH_MAX + 1);
    if (len == 0 || len > KVXI_CLIENT_PATH_MAX) {
        return KVX_ERR_INVALID_PARAM;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return KVX_ERR_NO_MEMORY;
    }
    c->fd = c->attach_fd = -1;
    c->timeout_ms = timeout_ms;
    /* named by its socket in logs until AttachReply gives its id */
    snprintf(c->node_id, sizeof(c->node_id), "unix:%s", path);
    status = kvxi_client_connect(path, timeout_ms, &c->fd);
    if (status != KVX_OK) {
        goto err_free;
    }
    a.min_version = a.max_version = KVXI_CLIENT_SESSION_VERSION;
    a.client_name = (char *)(uintptr_t)name;
    env.body_case = KVX__V1__ENVELOPE__BODY_ATTACH;
    env.attach = &a;
    status = kvxi_client_call(c, &env, KVX__V1__ENVELOPE__BODY_ATTACH_REPLY, 0,
                              &reply);
    if (status != KVX_OK) {
        goto err_close;
    }
    c->attached = 1;
    status = kvxi_status_from_wire(reply->attach_reply->status);
    if (status == KVX_OK) {
        status = client_map(c, reply->attach_reply);
    } else {
        kvxi_debug("client: %s refused the attach: %s", path,
                   kvx_status_string(status));
        status = status < KVX_OK ? status : KVX_ERR_PROTO_MALFORMED;
    }
    kvxi_frame_free(reply);
    if (status != KVX_OK) {
        goto err_close;
    }
    close(c->attach_fd);
    c->attach_fd = -1;
    *client_p = c;
    return KVX_OK;

err_close:
    if (c->attach_fd >= 0) {
        close(c->attach_fd);
    }
    if (c->fd >= 0) {
        close(c->fd);
    }
err_free:
    free(c->in);
    free(c);
    return status;
}

void kvx_client_detach(kvx_client_h c)
{
    if (c == NULL) {
        return;
    }
    if (c->fd >= 0) {
        close(c->fd);
    }
    while (c->xfers != NULL) {
        struct kvx_client_xfer *x = c->xfers;

        c->xfers = x->next;
        free(x);
    }
    munmap(c->base, c->map_bytes);
    free(c->in);
    free(c);
}
