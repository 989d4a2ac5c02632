/*
 * Control-channel listeners (TCP and unix sockets) and the address syntax
 * shared with kvxi_conn_connect().
 */
#include "conn_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log_int.h"

#define ADDR_STR_MAX 160
#define LISTEN_BACKLOG 128
#define ACCEPT_RETRY_MS 100 /* pause after accept() fails (EMFILE) */

struct kvxi_listener {
    struct event_base *base;
    struct evconnlistener *evl;
    struct event *retry;
    kvxi_conn_config_t cfg; /* identity and secret point to the copies */
    kvxi_conn_identity_t *identity;
    uint8_t *secret;
    kvxi_listener_accept_cb_t accept_cb;       /* NULL for a raw listener */
    kvxi_listener_accept_fd_cb_t accept_fd_cb; /* raw: the accepted fd */
    void *arg;
    int is_unix;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    dev_t dev; /* the socket file we created */
    ino_t ino;
    uint16_t port;
    char addr[ADDR_STR_MAX];
};

/* ------------------------------------------------------------------------
 * Addresses.
 */

static int parse_port(const char *s, uint16_t *port_p)
{
    unsigned long v;
    char *end;

    if (s[0] < '0' || s[0] > '9' || strlen(s) > 5) {
        return -1;
    }
    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > 65535) {
        return -1;
    }
    *port_p = (uint16_t)v;
    return 0;
}

kvx_status_t kvxi_addr_parse(const char *addr, struct sockaddr_storage *ss,
                             socklen_t *len_p)
{
    const char *host, *port_str, *end;
    char buf[INET6_ADDRSTRLEN + 1];
    size_t host_len;
    uint16_t port;
    int v6 = 0;

    if (addr == NULL || ss == NULL || len_p == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    memset(ss, 0, sizeof(*ss));
    if (strncmp(addr, "unix:", 5) == 0) {
        struct sockaddr_un *sun = (struct sockaddr_un *)ss;
        size_t n = strlen(addr + 5);

        if (n == 0 || n >= sizeof(sun->sun_path)) {
            return KVX_ERR_INVALID_PARAM;
        }
        sun->sun_family = AF_UNIX;
        memcpy(sun->sun_path, addr + 5, n + 1);
        *len_p = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
        return KVX_OK;
    }
    if (addr[0] == '[') {
        host = addr + 1;
        end = strchr(host, ']');
        if (end == NULL || end[1] != ':') {
            return KVX_ERR_INVALID_PARAM;
        }
        port_str = end + 2;
        v6 = 1;
    } else {
        host = addr;
        end = strrchr(addr, ':');
        if (end == NULL) {
            return KVX_ERR_INVALID_PARAM;
        }
        port_str = end + 1;
    }
    host_len = (size_t)(end - host);
    if (host_len == 0 || host_len >= sizeof(buf) ||
        (!v6 && memchr(host, ':', host_len) != NULL)) {
        return KVX_ERR_INVALID_PARAM; /* IPv6 needs brackets */
    }
    memcpy(buf, host, host_len);
    buf[host_len] = '\0';
    if (parse_port(port_str, &port) != 0) {
        return KVX_ERR_INVALID_PARAM;
    }
    if (v6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

        if (inet_pton(AF_INET6, buf, &sin6->sin6_addr) != 1) {
            return KVX_ERR_INVALID_PARAM;
        }
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        *len_p = sizeof(*sin6);
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;

        if (strcmp(buf, "localhost") == 0) {
            snprintf(buf, sizeof(buf), "%s", "127.0.0.1");
        }
        if (inet_pton(AF_INET, buf, &sin->sin_addr) != 1) {
            return KVX_ERR_INVALID_PARAM;
        }
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        *len_p = sizeof(*sin);
    }
    return KVX_OK;
}

kvx_status_t kvxi_addr_format(const struct sockaddr *sa, socklen_t len,
                              char *buf, size_t size)
{
    char host[INET6_ADDRSTRLEN];

    if (sa == NULL || buf == NULL || size == 0) {
        return KVX_ERR_INVALID_PARAM;
    }
    switch (sa->sa_family) {
    case AF_INET: {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

        if (len < (socklen_t)sizeof(*sin) ||
            inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host)) == NULL) {
            return KVX_ERR_INVALID_PARAM;
        }
        snprintf(buf, size, "%s:%u", host, ntohs(sin->sin_port));
        return KVX_OK;
    }
    case AF_INET6: {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

        if (len < (socklen_t)sizeof(*sin6) ||
            inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host)) == NULL) {
            return KVX_ERR_INVALID_PARAM;
        }
        snprintf(buf, size, "[%s]:%u", host, ntohs(sin6->sin6_port));
        return KVX_OK;
    }
    case AF_UNIX: {
        const struct sockaddr_un *sun = (const struct sockaddr_un *)sa;
        size_t off = offsetof(struct sockaddr_un, sun_path);
        size_t n;

        if (len <= (socklen_t)off || sun->sun_path[0] == '\0') {
            return KVX_ERR_INVALID_PARAM; /* unnamed or abstract */
        }
        n = strnlen(sun->sun_path, (size_t)len - off);
        snprintf(buf, size, "unix:%.*s", (int)n, sun->sun_path);
        return KVX_OK;
    }
    default: return KVX_ERR_INVALID_PARAM;
    }
}

/* ------------------------------------------------------------------------
 * Listeners.
 */

static void listener_accept(struct evconnlistener *evl, evutil_socket_t fd,
                            struct sockaddr *sa, int socklen, void *arg)
{
    kvxi_listener_t *l = arg;
    kvx_status_t status;
    kvxi_conn_t *conn;

    (void)evl;
    (void)socklen;
    if (sa->sa_family != AF_UNIX) {
        int one = 1;

        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    if (l->accept_fd_cb != NULL) {
        l->accept_fd_cb(l, fd, l->arg); /* owns fd; may destroy l */
        return;
    }
    status = kvxi_conn_create_fd(l->base, fd, 0, &l->cfg, &conn);
    if (status != KVX_OK) {
        kvxi_warn("listener %s: dropping a connection: %s", l->addr,
                  kvx_status_string(status));
        evutil_closesocket(fd);
        return;
    }
    l->accept_cb(l, conn, l->arg); /* may destroy the listener */
}

/* accept() failed (EMFILE, ENFILE, ENOBUFS): the socket stays readable, so
 * retrying at once would spin. Pause, then listen again. */
static void listener_error(struct evconnlistener *evl, void *arg)
{
    int err = EVUTIL_SOCKET_ERROR();
    kvxi_listener_t *l = arg;
    struct timeval tv = {0, ACCEPT_RETRY_MS * 1000};

    kvxi_warn("listener %s: accept failed: %s; pausing %d ms", l->addr,
              evutil_socket_error_to_string(err), ACCEPT_RETRY_MS);
    evconnlistener_disable(evl);
    event_add(l->retry, &tv);
}

static void listener_retry(evutil_socket_t fd, short what, void *arg)
{
    kvxi_listener_t *l = arg;

    (void)fd;
    (void)what;
    evconnlistener_enable(l->evl);
}

/*
 * Makes @p path free for bind(): nothing there, or a stale socket (nobody
 * accepts on it), which is removed. A live socket or any other kind of
 * file is left alone.
 */
static kvx_status_t unix_path_prepare(const struct sockaddr_storage *ss,
                                      socklen_t len, const char *path)
{
    struct stat st;
    int probe, r, err;

    if (lstat(path, &st) != 0) {
        if (errno == ENOENT) {
            return KVX_OK;
        }
        kvxi_error("listener: cannot stat %s: %s", path, strerror(errno));
        return KVX_ERR_IO;
    }
    if (!S_ISSOCK(st.st_mode)) {
        kvxi_error("listener: %s exists and is not a socket", path);
        return KVX_ERR_EXISTS;
    }
    probe = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (probe < 0) {
        return KVX_ERR_IO;
    }
    r = connect(probe, (const struct sockaddr *)ss, len);
    err = errno;
    close(probe);
    if (r == 0 || err == EAGAIN || err == EINPROGRESS) {
        kvxi_error("listener: %s is in use by a live listener", path);
        return KVX_ERR_EXISTS;
    }
    if (err != ECONNREFUSED) {
        kvxi_error("listener: cannot probe %s: %s", path, strerror(err));
        return KVX_ERR_IO;
    }
    if (unlink(path) != 0 && errno != ENOENT) {
        kvxi_error("listener: cannot remove stale %s: %s", path,
                   strerror(errno));
        return KVX_ERR_IO;
    }
    kvxi_info("listener: removed stale socket %s", path);
    return KVX_OK;
}

/* Creates, binds and listens; returns the fd or -1 with *status_p set. */
static int listener_socket(kvxi_listener_t *l,
                           const struct sockaddr_storage *ss, socklen_t len,
                           kvx_status_t *status_p)
{
    int fd, one = 1, err;
    struct stat st;

    fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *status_p = KVX_ERR_IO;
        return -1;
    }
    if (l->is_unix) {
        *status_p = unix_path_prepare(ss, len, l->path);
        if (*status_p != KVX_OK) {
            goto err_close;
        }
        /* Linux creates the socket file with the socket's mode (minus the
         * umask): 0600 from the first moment, no window for others. */
        if (fchmod(fd, 0600) != 0) {
            *status_p = KVX_ERR_IO;
            goto err_close;
        }
    } else {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    }
    if (bind(fd, (const struct sockaddr *)ss, len) != 0) {
        err = errno;
        kvxi_error("listener: cannot bind %s: %s", l->addr, strerror(err));
        *status_p = err == EADDRINUSE ? KVX_ERR_EXISTS : KVX_ERR_IO;
        goto err_close;
    }
    if (l->is_unix) {
        if (lstat(l->path, &st) != 0 ||
            ((st.st_mode & 0777) != 0600 && chmod(l->path, 0600) != 0)) {
            kvxi_error("listener: cannot restrict %s to 0600", l->path);
            *status_p = KVX_ERR_IO;
            goto err_unlink;
        }
        l->dev = st.st_dev;
        l->ino = st.st_ino;
    }
    if (listen(fd, LISTEN_BACKLOG) != 0) {
        kvxi_error("listener: cannot listen on %s: %s", l->addr,
                   strerror(errno));
        *status_p = KVX_ERR_IO;
        goto err_unlink;
    }
    return fd;

err_unlink:
    if (l->is_unix) {
        unlink(l->path);
    }
err_close:
    close(fd);
    return -1;
}

static void listener_free(kvxi_listener_t *l)
{
    if (l->secret != NULL) {
        OPENSSL_cleanse(l->secret, l->cfg.secret_len);
        free(l->secret);
    }
    kvxi_identity_free(l->identity);
    free(l);
}

/* The shared part of both listener kinds: @p l has its callbacks (and
 * for a control listener its configuration) set; binds, listens and
 * registers with the event base. Frees @p l on error. */
static kvx_status_t listener_open(kvxi_listener_t *l, const char *addr,
                                  kvxi_listener_t **listener_p)
{
    struct sockaddr_storage ss, bound;
    socklen_t len, blen = sizeof(bound);
    kvx_status_t status;
    int fd;

    status = kvxi_addr_parse(addr, &ss, &len);
    if (status != KVX_OK) {
        kvxi_error("listener: cannot parse address '%s'", addr);
        goto err_free;
    }
    snprintf(l->addr, sizeof(l->addr), "%s", addr);
    l->is_unix = ss.ss_family == AF_UNIX;
    if (l->is_unix) {
        /* NUL-terminated by kvxi_addr_parse(), fits by construction. */
        memcpy(l->path, ((struct sockaddr_un *)&ss)->sun_path, sizeof(l->path));
    }
    fd = listener_socket(l, &ss, len, &status);
    if (fd < 0) {
        goto err_free;
    }
    if (!l->is_unix) {
        if (getsockname(fd, (struct sockaddr *)&bound, &blen) != 0 ||
            kvxi_addr_format((struct sockaddr *)&bound, blen, l->addr,
                             sizeof(l->addr)) != KVX_OK) {
            status = KVX_ERR_IO;
            goto err_close;
        }
        l->port = ntohs(bound.ss_family == AF_INET6
                            ? ((struct sockaddr_in6 *)&bound)->sin6_port
                            : ((struct sockaddr_in *)&bound)->sin_port);
    }
    l->retry = evtimer_new(l->base, listener_retry, l);
    if (l->retry == NULL) {
        status = KVX_ERR_NO_MEMORY;
        goto err_close;
    }
    /* Backlog 0: the socket already listens. */
    l->evl = evconnlistener_new(l->base, listener_accept, l,
                                LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
                                0, fd);
    if (l->evl == NULL) {
        status = KVX_ERR_NO_MEMORY;
        goto err_retry;
    }
    evconnlistener_set_error_cb(l->evl, listener_error);
    if (l->accept_cb != NULL && l->cfg.secret_len == 0 && !l->is_unix) {
        kvxi_warn("listener %s: no cluster secret: any peer that reaches "
                  "the port gets the pool's rkey",
                  l->addr);
    }
    kvxi_info("listener: listening on %s", l->addr);
    *listener_p = l;
    return KVX_OK;

err_retry:
    event_free(l->retry);
err_close:
    close(fd);
    if (l->is_unix) {
        unlink(l->path);
    }
err_free:
    listener_free(l);
    return status;
}

kvx_status_t kvxi_listener_create(struct event_base *base, const char *addr,
                                  const kvxi_conn_config_t *cfg,
                                  kvxi_listener_accept_cb_t accept_cb,
                                  void *arg, kvxi_listener_t **listener_p)
{
    kvx_status_t status;
    kvxi_listener_t *l;

    if (base == NULL || addr == NULL || cfg == NULL || accept_cb == NULL ||
        listener_p == NULL || cfg->secret_len > KVXI_SECRET_MAX ||
        (cfg->secret == NULL && cfg->secret_len > 0)) {
        return KVX_ERR_INVALID_PARAM;
    }
    l = calloc(1, sizeof(*l));
    if (l == NULL) {
        return KVX_ERR_NO_MEMORY;
    }
    l->base = base;
    l->accept_cb = accept_cb;
    l->arg = arg;
    l->cfg = *cfg;
    status = kvxi_identity_dup(cfg->identity, &l->identity);
    if (status != KVX_OK) {
        goto err_free;
    }
    l->cfg.identity = l->identity;
    l->secret = malloc(cfg->secret_len > 0 ? cfg->secret_len : 1);
    if (l->secret == NULL) {
        status = KVX_ERR_NO_MEMORY;
        goto err_free;
    }
    if (cfg->secret_len > 0) {
        memcpy(l->secret, cfg->secret, cfg->secret_len);
    }
    l->cfg.secret = l->secret;
    return listener_open(l, addr, listener_p);

err_free:
    listener_free(l);
    return status;
}

kvx_status_t kvxi_listener_create_raw(struct event_base *base, const char *addr,
                                      kvxi_listener_accept_fd_cb_t accept_fd_cb,
                                      void *arg, kvxi_listener_t **listener_p)
{
    kvxi_listener_t *l;

    if (base == NULL || addr == NULL || accept_fd_cb == NULL ||
        listener_p == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    l = calloc(1, sizeof(*l));
    if (l == NULL) {
        return KVX_ERR_NO_MEMORY;
    }
    l->base = base;
    l->accept_fd_cb = accept_fd_cb;
    l->arg = arg;
    return listener_open(l, addr, listener_p);
}

void kvxi_listener_destroy(kvxi_listener_t *listener)
{
    struct stat st;

    if (listener == NULL) {
        return;
    }
    evconnlistener_free(listener->evl);
    event_free(listener->retry);
    /* Remove the file only if it is still ours (not a successor's). */
    if (listener->is_unix && lstat(listener->path, &st) == 0 &&
        S_ISSOCK(st.st_mode) && st.st_dev == listener->dev &&
        st.st_ino == listener->ino) {
        unlink(listener->path);
    }
    listener_free(listener);
}

uint16_t kvxi_listener_port(const kvxi_listener_t *listener)
{
    return listener != NULL ? listener->port : 0;
}

const char *kvxi_listener_addr(const kvxi_listener_t *listener)
{
    return listener != NULL ? listener->addr : "";
}
