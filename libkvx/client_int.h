/*
 * The engine side of a local session (kvx/client.h): the client's state and
 * its socket and frame I/O (client_io.c), shared with the public calls in
 * client.c.
 *
 * No threads and no event loop: one non-blocking SOCK_STREAM unix socket,
 * poll() for every wait, each wait bounded by a deadline. Replies are
 * matched by request id; XferDone frames, which the node sends unasked, are
 * applied to their transfer handles whenever a frame is read, whatever the
 * caller is waiting for. Once the socket breaks (or the node breaks the
 * protocol) the client closes it: every later call gets KVX_ERR_PEER_DOWN
 * and every running transfer ends with it.
 */
#ifndef KVX_CLIENT_INT_H
#define KVX_CLIENT_INT_H

#include <kvx/client.h>
#include <stddef.h>
#include <stdint.h>

#include "frame_int.h"

#define KVXI_CLIENT_TIMEOUT_MS_DEFAULT 10000u
#define KVXI_CLIENT_NAME_DEFAULT "engine"
/** Longest socket path (sun_path without its NUL). */
#define KVXI_CLIENT_PATH_MAX 107u
/** Session version this build speaks (Attach/AttachReply). */
#define KVXI_CLIENT_SESSION_VERSION 1u

struct kvx_client_xfer {
    struct kvx_client *client;
    struct kvx_client_xfer *prev, *next;
    uint64_t xfer_id;     /**< the node's id, != 0 */
    uint64_t t_start_ns;  /**< when PushStart/PullStart was sent */
    kvx_xfer_attr_t attr; /**< status INPROGRESS until XferDone */
};

struct kvx_client {
    int fd;              /**< the session socket; -1 once closed */
    uint32_t timeout_ms; /**< longest wait for a reply */
    uint64_t last_id;    /**< request ids: 1, 2, ... */
    uint8_t *in;         /**< received bytes not decoded yet */
    size_t in_len, in_cap;
    int attach_fd;      /**< the memfd AttachReply carried, or -1 */
    unsigned extra_fds; /**< descriptors received beyond the memfd */
    int attached;       /**< AttachReply handled: fds are unexpected */
    void *base;         /**< this process's mapping of the pool */
    size_t map_bytes;
    kvx_layout_t layout;
    uint64_t layout_hash;
    char node_id[KVXI_NAME_MAX + 1];
    char listen_addr[KVXI_NAME_MAX + 1];
    struct kvx_client_xfer *xfers; /**< live handles */
};

/** DataPath on the wire -> RMA / AM (AUTO for UNSPECIFIED). */
kvx_transport_t kvxi_client_transport(int data_path);

/** CLOCK_MONOTONIC in ns. */
uint64_t kvxi_client_now_ns(void);

/**
 * Connects a non-blocking, close-on-exec unix stream socket to @p path
 * (already stripped of "unix:", 1 .. KVXI_CLIENT_PATH_MAX bytes), retrying
 * while the listener's backlog is full until @p timeout_ms passes.
 * @return KVX_OK (*fd_p set); KVX_ERR_PEER_UNREACHABLE (no socket file,
 *         nobody listening); KVX_ERR_TIMEOUT; KVX_ERR_IO.
 */
kvx_status_t kvxi_client_connect(const char *path, uint32_t timeout_ms,
                                 int *fd_p);

/**
 * Closes the session (idempotent): running transfers end with
 * KVX_ERR_PEER_DOWN, later calls return it. @p why is logged once (warn).
 */
void kvxi_client_close(struct kvx_client *c, const char *why);

/**
 * Sends @p env as the next request: sets its version and a fresh request
 * id (read it back from env->request_id), waits for room in the socket
 * until @p deadline_ns.
 * @return KVX_OK; KVX_ERR_INVALID_PARAM (the envelope does not validate or
 *         exceeds the frame limit: nothing sent); KVX_ERR_NO_MEMORY;
 *         KVX_ERR_TIMEOUT (nothing sent, or the session is closed when part
 *         of the frame went out); KVX_ERR_PEER_DOWN.
 */
kvx_status_t kvxi_client_send(struct kvx_client *c, kvxi_envelope_t *env,
                              uint64_t deadline_ns);

/**
 * Reads and handles frames until the reply to request @p want_id arrives,
 * @p xfer ends, or @p deadline_ns passes (a deadline in the past reads only
 * what is already there, never blocking). XferDone frames update their
 * handles; replies nobody waits for are dropped.
 * @param want_id  the awaited request, 0 for none.
 * @param xfer     the awaited transfer, NULL for none.
 * @param reply_p  receives the reply (free with kvxi_frame_free()); needed
 *                 when @p want_id != 0.
 * @return KVX_OK (reply or transfer end); KVX_ERR_TIMEOUT; KVX_ERR_PEER_DOWN;
 *         KVX_ERR_PROTO_* (the node sent garbage: the session is closed).
 */
kvx_status_t kvxi_client_pump(struct kvx_client *c, uint64_t want_id,
                              const struct kvx_client_xfer *xfer,
                              uint64_t deadline_ns, kvxi_envelope_t **reply_p);

/**
 * One request/reply exchange: sends @p env, waits up to the client's
 * timeout plus @p extra_ms for its reply.
 * @param expect   the reply's body; any other body (but Error) is a
 *                 protocol violation that closes the session.
 * @param reply_p  receives the reply on KVX_OK.
 * @return KVX_OK; the code of the node's Error; the errors of
 *         kvxi_client_send() and kvxi_client_pump();
 *         KVX_ERR_PROTO_UNEXPECTED.
 */
kvx_status_t kvxi_client_call(struct kvx_client *c, kvxi_envelope_t *env,
                              Kvx__V1__Envelope__BodyCase expect,
                              uint32_t extra_ms, kvxi_envelope_t **reply_p);

/**
 * A request answered by Result: sends @p env, returns the Result's status
 * (or the call's failure). @p xfer_id_p (PushStart/PullStart), if not NULL,
 * receives the transfer id, which must be != 0 with KVX_OK.
 */
kvx_status_t kvxi_client_call_result(struct kvx_client *c, kvxi_envelope_t *env,
                                     uint64_t *xfer_id_p);

/**
 * A reply broke the session's contract (@p what, logged as an error): the
 * session is closed, so the node drops whatever it held for us.
 * @return KVX_ERR_PROTO_MALFORMED.
 */
kvx_status_t kvxi_client_violation(struct kvx_client *c, const char *what);

#endif /* KVX_CLIENT_INT_H */
