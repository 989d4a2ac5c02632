/*
 * Control-channel connections: one kvx.v1 byte stream (TCP or a unix socket)
 * between two nodes, on a libevent event_base the owner runs.
 *
 * A connection reads frames with the frame codec (frame_int.h), runs the
 * handshake of docs/protocol.md (Hello -> HelloReply -> AuthProof -> Accept,
 * handshake_int.h), then hands every further validated envelope to its
 * owner and keeps the link alive with heartbeats. Whatever a peer sends, the
 * connection answers with an Error and closes, or keeps going; it never
 * crashes, never buffers without bound and never waits forever:
 *
 *  - frames above the limit are refused from their 4 header bytes (64 KiB
 *    until the handshake completes, the announced max_frame afterwards);
 *  - the input buffer holds at most one frame (reading pauses beyond it);
 *  - the output buffer is capped by a high-water mark: kvxi_conn_send()
 *    fails with KVX_ERR_NO_SPACE beyond it instead of queueing more;
 *  - connecting, the handshake, a silent peer (heartbeats) and flushing the
 *    last Error before closing (linger) are all bounded by timers.
 *
 * Threading: everything runs on the event_base passed at creation, from the
 * thread that runs it; no function here may be called from another thread.
 * Nothing blocks: sockets are non-blocking, host names must be numeric.
 * Writing to a socket the peer closed raises SIGPIPE: creating a connection
 * sets SIGPIPE to SIG_IGN while it is SIG_DFL (a handler the process
 * installed is left alone).
 *
 * Callback rules (kvxi_conn_cbs_t):
 *  - Callbacks run from the event loop only, never from inside a kvxi_*
 *    call: kvxi_conn_close() or a failed send never re-enter the owner.
 *  - Inside any callback the owner may call every kvxi_conn_* function on
 *    any connection, including kvxi_conn_destroy() of the connection whose
 *    callback is running (it must not touch that handle afterwards).
 *  - established runs at most once, before any recv; recv runs only while
 *    the connection is open; closed runs exactly once per connection
 *    (unless the owner destroys it first) and nothing runs after it.
 *  - The owner destroys every connection it received (from
 *    kvxi_conn_connect(), kvxi_conn_create_fd() or a listener's accept
 *    callback) with kvxi_conn_destroy(), also after closed has run.
 */
#ifndef KVX_CONN_INT_H
#define KVX_CONN_INT_H

#include <kvx/common.h>
#include <kvx/layout.h>
#include <kvx/status.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "frame_int.h"

struct event_base;
struct evbuffer;

/** Data paths a node serves (kvxi_conn_identity_t::data_paths bits). */
#define KVXI_DATA_PATH_RMA (1u << 0) /**< one-sided UCX put/get */
#define KVXI_DATA_PATH_AM (1u << 1)  /**< UCX active messages */
#define KVXI_DATA_PATH_ALL (KVXI_DATA_PATH_RMA | KVXI_DATA_PATH_AM)

/** Longest cluster secret accepted (bytes). */
#define KVXI_SECRET_MAX 1024u

/* Defaults of kvxi_conn_config_t (a 0 field selects them). */
#define KVXI_CONN_CONNECT_TIMEOUT_MS 5000u
#define KVXI_CONN_HANDSHAKE_TIMEOUT_MS 5000u
#define KVXI_CONN_HEARTBEAT_MS 1000u
#define KVXI_CONN_HEARTBEAT_MISSES 3u
#define KVXI_CONN_LINGER_MS 500u
#define KVXI_CONN_OUT_HIGH_WATER ((size_t)16 << 20)

/**
 * What a peer needs to reach a node's pool over UCX (kvx.v1.Memory). Sent
 * only to a peer that proved it knows the cluster secret.
 */
typedef struct kvxi_conn_memory {
    const uint8_t *worker_address; /**< ucp worker address, 1 .. 16 KiB */
    size_t worker_address_len;
    kvx_mem_type_t mem_type; /**< where the pool lives */
    uint64_t pool_base;      /**< remote virtual address of block 0 */
    uint64_t pool_length;    /**< bytes registered from pool_base */
    const uint8_t *rkey;     /**< packed rkey, 0 .. 16 KiB; empty = AM only;
                                  otherwise pool_length >= 1 and
                                  base + length must not wrap */
    size_t rkey_len;
} kvxi_conn_memory_t;

/**
 * A node's own identity, announced in the handshake. A view: the pointers
 * are the owner's; functions that keep an identity copy it.
 */
typedef struct kvxi_conn_identity {
    const char *node_id;       /**< stable name, 1 .. 256 bytes */
    uint64_t instance_id;      /**< random per process start, != 0 */
    const char *cluster_id;    /**< 0 .. 256 bytes (NULL = ""); must equal the
                                    peer's */
    uint32_t min_version;      /**< oldest protocol version spoken, >= 1 */
    uint32_t max_version;      /**< newest, >= min_version (this build speaks
                                    KVXI_PROTO_VERSION) */
    Kvx__V1__Role role;        /**< PREFILL, DECODE or BOTH */
    kvx_layout_t layout;       /**< pool geometry (from kvx_layout_init()); its
                                    kvx_layout_compat_hash() is announced */
    uint32_t data_paths;       /**< KVXI_DATA_PATH_* served, at least one */
    uint32_t max_frame;        /**< largest frame body accepted once the peer
                                    is authenticated: 0 = KVXI_FRAME_MAX_DEFAULT,
                                    otherwise KVXI_FRAME_MAX_HANDSHAKE ..
                                    KVXI_FRAME_MAX_DEFAULT */
    kvxi_conn_memory_t memory; /**< sent after the peer authenticated */
} kvxi_conn_identity_t;

/**
 * The peer's identity as the handshake established it: copies of every
 * field of its Hello/HelloReply and AuthProof/Accept. One allocation; the
 * memory blobs point into it.
 */
typedef struct kvxi_peer_info {
    char node_id[KVXI_NAME_MAX + 1];
    char cluster_id[KVXI_NAME_MAX + 1];
    uint64_t instance_id;
    Kvx__V1__Role role;
    uint32_t version;          /**< protocol version of the connection */
    uint32_t min_version;      /**< the peer's range (a server announces only */
    uint32_t max_version;      /**< the chosen version: both equal it) */
    uint64_t layout_hash;      /**< kvx_layout_compat_hash(&layout) */
    kvx_layout_t layout;       /**< the peer's pool geometry */
    uint32_t data_paths;       /**< KVXI_DATA_PATH_* the peer serves */
    uint32_t max_frame;        /**< largest body the peer accepts (resolved:
                                    never 0) */
    kvxi_conn_memory_t memory; /**< the peer's pool; blobs owned by this
                                    struct */
} kvxi_peer_info_t;

/**
 * Checks that @p id can be announced: sizes and ranges of every field as
 * kvxi_envelope_validate() will check them on the wire.
 * @param why      if not NULL, receives the first problem ("node_id
 *                 length"), NUL-terminated, truncated to @p why_len.
 * @return KVX_OK; KVX_ERR_INVALID_PARAM (NULL or a field out of range).
 */
kvx_status_t kvxi_identity_check(const kvxi_conn_identity_t *id, char *why,
                                 size_t why_len);

/**
 * Deep copy of @p id (strings and blobs included) in one allocation.
 * @param copy_p  receives the copy on KVX_OK; free with kvxi_identity_free().
 * @return KVX_OK; KVX_ERR_INVALID_PARAM (NULL, or kvxi_identity_check()
 *         fails); KVX_ERR_NO_MEMORY.
 */
kvx_status_t kvxi_identity_dup(const kvxi_conn_identity_t *id,
                               kvxi_conn_identity_t **copy_p);

/** Frees a copy made by kvxi_identity_dup(); NULL is a no-op. */
void kvxi_identity_free(kvxi_conn_identity_t *id);

/**
 * Deep copy of @p peer, for owners that keep it beyond the connection.
 * @param copy_p  receives the copy on KVX_OK; free with kvxi_peer_info_free().
 * @return KVX_OK; KVX_ERR_INVALID_PARAM (NULL); KVX_ERR_NO_MEMORY.
 */
kvx_status_t kvxi_peer_info_dup(const kvxi_peer_info_t *peer,
                                kvxi_peer_info_t **copy_p);

/** Frees a kvxi_peer_info_t from kvxi_peer_info_dup(); NULL is a no-op. */
void kvxi_peer_info_free(kvxi_peer_info_t *peer);

/* ------------------------------------------------------------------------
 * Connections
 */

typedef struct kvxi_conn kvxi_conn_t;

/** Life of a connection; it only moves forward. */
typedef enum kvxi_conn_state {
    KVXI_CONN_CONNECTING = 0, /**< client: TCP/unix connect in progress */
    KVXI_CONN_HANDSHAKE = 1,  /**< connected, Hello .. Accept running */
    KVXI_CONN_OPEN = 2,       /**< authenticated: envelopes flow */
    KVXI_CONN_CLOSING = 3,    /**< flushing the last frames, then closed */
    KVXI_CONN_CLOSED = 4      /**< socket closed, closed callback done */
} kvxi_conn_state_t;

/**
 * The handshake completed: @p peer is the authenticated peer, owned by the
 * connection and valid until kvxi_conn_destroy() (kvxi_conn_peer() returns
 * it too; kvxi_peer_info_dup() keeps a copy).
 */
typedef void (*kvxi_conn_established_cb_t)(kvxi_conn_t *conn,
                                           const kvxi_peer_info_t *peer,
                                           void *arg);

/**
 * One decoded, validated envelope from the open connection, in arrival
 * order. Handshake messages and heartbeats are handled inside and never
 * delivered; Error envelopes that answer a request are. @p env belongs to
 * the connection and is freed when the callback returns: copy what is
 * needed.
 */
typedef void (*kvxi_conn_recv_cb_t)(kvxi_conn_t *conn,
                                    const kvxi_envelope_t *env, void *arg);

/**
 * The output buffer fell to half the high-water mark after a
 * kvxi_conn_send() failed with KVX_ERR_NO_SPACE: sending may resume.
 */
typedef void (*kvxi_conn_writable_cb_t)(kvxi_conn_t *conn, void *arg);

/**
 * The connection closed; runs once, after the socket is closed.
 * @param reason  why: KVX_ERR_PEER_DOWN (EOF, reset, heartbeats lost),
 *                KVX_ERR_PEER_UNREACHABLE (connect failed or timed out),
 *                KVX_ERR_TIMEOUT (handshake not completed in time),
 *                KVX_ERR_PROTO_* (the peer broke the protocol, or refused
 *                us with that code), KVX_ERR_AUTH (secret mismatch, either
 *                side), KVX_ERR_LAYOUT_MISMATCH / KVX_ERR_PEER_REFUSED
 *                (handshake refusal, either side), KVX_ERR_CONN_CLOSED
 *                (kvxi_conn_close()), KVX_ERR_NO_MEMORY, or the code of a
 *                connection-level Error the peer sent.
 * @param text    what happened, for logs (the peer's Error message when the
 *                peer refused us); valid during the callback.
 */
typedef void (*kvxi_conn_closed_cb_t)(kvxi_conn_t *conn, kvx_status_t reason,
                                      const char *text, void *arg);

/** The owner's callbacks; NULL members are skipped. */
typedef struct kvxi_conn_cbs {
    kvxi_conn_established_cb_t established;
    kvxi_conn_recv_cb_t recv;
    kvxi_conn_writable_cb_t writable;
    kvxi_conn_closed_cb_t closed;
    void *arg; /**< passed to every callback */
} kvxi_conn_cbs_t;

/**
 * How to run a connection. Zero-initialise, set identity (and secret), set
 * what differs from the defaults. Everything is copied at creation.
 */
typedef struct kvxi_conn_config {
    const kvxi_conn_identity_t *identity; /**< required */
    const void *secret;                   /**< cluster secret for HMAC-SHA256 */
    size_t secret_len; /**< 0 .. KVXI_SECRET_MAX; 0 = no authentication:
                            every peer with an empty secret passes */
    uint32_t connect_timeout_ms;    /**< client connect; 0 = 5000 */
    uint32_t handshake_timeout_ms;  /**< connected -> open; 0 = 5000 */
    uint32_t heartbeat_interval_ms; /**< 0 = 1000 */
    uint32_t heartbeat_misses;      /**< intervals without any received byte
                                         before PEER_DOWN; 0 = 3 */
    uint32_t linger_ms;             /**< closing: time to flush the last frames
                                         and see the peer's EOF; 0 = 500 */
    size_t out_high_water;          /**< output bytes beyond which sends fail
                                         with KVX_ERR_NO_SPACE; 0 = 16 MiB */
    kvxi_conn_cbs_t cbs;            /**< callbacks (listener: the initial ones
                                         of every accepted connection) */
} kvxi_conn_config_t;

/**
 * Connects to @p addr and runs the client side of the handshake.
 *
 * @param base    event base that runs the connection (not owned).
 * @param addr    "host:port" (numeric IPv4 or "localhost"), "[v6]:port", or
 *                "unix:/path".
 * @param cfg     configuration, copied.
 * @param conn_p  receives the connection on KVX_OK.
 * @return KVX_OK: the attempt is under way; its outcome arrives through the
 *         callbacks (established, or closed with KVX_ERR_PEER_UNREACHABLE
 *         when the peer refuses or does not answer within
 *         connect_timeout_ms, or another reason from the handshake);
 *         KVX_ERR_INVALID_PARAM (NULL, bad address, bad configuration or
 *         identity); KVX_ERR_NO_MEMORY; KVX_ERR_IO (no socket).
 *         Nothing is created on error.
 */
kvx_status_t kvxi_conn_connect(struct event_base *base, const char *addr,
                               const kvxi_conn_config_t *cfg,
                               kvxi_conn_t **conn_p);

/**
 * Wraps a connected stream socket (an accepted socket, or one end of a
 * socketpair).
 *
 * @param fd         connected stream socket; made non-blocking. Owned by
 *                   the connection on KVX_OK only (closed when it closes).
 * @param is_client  1: this side sends Hello (queued at once); 0: it waits
 *                   for Hello. Both start the handshake timeout.
 * @return KVX_OK; KVX_ERR_INVALID_PARAM (NULL, fd < 0, bad configuration);
 *         KVX_ERR_NO_MEMORY; KVX_ERR_IO.
 */
kvx_status_t kvxi_conn_create_fd(struct event_base *base, int fd, int is_client,
                                 const kvxi_conn_config_t *cfg,
                                 kvxi_conn_t **conn_p);

/**
 * Sets SIGPIPE to SIG_IGN while it is SIG_DFL (a handler or SA_SIGINFO
 * action the process installed is left alone), so that writing to a socket
 * the other end closed fails instead of killing the process. Creating a
 * connection calls it; other socket owners (the engine listener) do too.
 */
void kvxi_conn_ignore_sigpipe(void);

/**
 * Frees @p conn at once: closes the socket (queued output is dropped) and
 * cancels every timer; no callback runs afterwards. Safe inside any
 * callback of @p conn (the memory is released when the callback returns).
 * NULL is a no-op.
 */
void kvxi_conn_destroy(kvxi_conn_t *conn);

/**
 * Closes @p conn politely: stops delivering envelopes, sends
 * Error{@p reason, @p text} unless @p reason is KVX_OK, flushes the output
 * (at most linger_ms), then closes; the closed callback follows from the
 * event loop with KVX_ERR_CONN_CLOSED. No-op once closing.
 * @param reason  KVX_OK (no Error) or an error status for the peer, e.g.
 *                KVX_ERR_PEER_REFUSED; the peer closes with it.
 * @param text    message for the peer's logs, or NULL; truncated to
 *                KVXI_TEXT_MAX bytes.
 * @return KVX_OK; KVX_ERR_INVALID_PARAM (NULL conn, or @p reason is
 *         KVX_INPROGRESS / not a status).
 */
kvx_status_t kvxi_conn_close(kvxi_conn_t *conn, kvx_status_t reason,
                             const char *text);

/**
 * Queues one envelope on the open connection.
 *
 * Sets @p env->version to the negotiated version, and draws a fresh request
 * id into @p env->request_id when it is 0 (except for Error, where 0 means
 * "answers no request"); replies keep the id of the request they answer.
 * The frame is encoded straight into the output buffer: nothing of @p env
 * is referenced after the call.
 *
 * @return KVX_OK (queued);
 *         KVX_ERR_INVALID_PARAM (NULL, a handshake or heartbeat body, which
 *         the connection sends itself, or an envelope that fails
 *         kvxi_envelope_validate());
 *         KVX_ERR_BAD_STATE (the handshake has not completed);
 *         KVX_ERR_CONN_CLOSED (closing or closed);
 *         KVX_ERR_NO_SPACE (the output buffer would exceed the high-water
 *         mark; a frame is always accepted into an empty buffer; the
 *         writable callback follows once it drained to half);
 *         KVX_ERR_PROTO_OVERSIZE (larger than the peer's max_frame);
 *         KVX_ERR_NO_MEMORY.
 */
kvx_status_t kvxi_conn_send(kvxi_conn_t *conn, kvxi_envelope_t *env);

/** Replaces the callbacks of @p conn (e.g. in a listener's accept cb). */
void kvxi_conn_set_cbs(kvxi_conn_t *conn, const kvxi_conn_cbs_t *cbs);

/** Current state; KVXI_CONN_CLOSED for NULL. */
kvxi_conn_state_t kvxi_conn_state(const kvxi_conn_t *conn);

/** 1 if @p conn sent Hello (connected out), 0 if it accepted. */
int kvxi_conn_is_client(const kvxi_conn_t *conn);

/**
 * The authenticated peer, owned by @p conn until kvxi_conn_destroy();
 * NULL before the handshake completed (and for NULL).
 */
const kvxi_peer_info_t *kvxi_conn_peer(const kvxi_conn_t *conn);

/**
 * Last heartbeat round-trip time in microseconds, measured on the local
 * monotonic clock; 0 until the first echo arrived.
 */
uint64_t kvxi_conn_rtt_us(const kvxi_conn_t *conn);

/** Bytes queued in the output buffer (not yet written to the socket). */
size_t kvxi_conn_out_pending(const kvxi_conn_t *conn);

/**
 * Why the connection is closing or closed (as the closed callback reports
 * it); KVX_OK while it is not.
 */
kvx_status_t kvxi_conn_close_reason(const kvxi_conn_t *conn);

/** Text of the close reason ("" while open); valid until destroy. */
const char *kvxi_conn_close_text(const kvxi_conn_t *conn);

/** The peer's address for logs ("127.0.0.1:4000", "unix:/path", "fd 7"). */
const char *kvxi_conn_name(const kvxi_conn_t *conn);

/**
 * Validates @p env and appends it as one frame to @p out, encoding in place
 * (no intermediate buffer). Used by the connection and the handshake.
 * @return KVX_OK; the errors of kvxi_frame_encode() (INVALID_PARAM,
 *         PROTO_OVERSIZE); KVX_ERR_NO_MEMORY (the buffer cannot grow).
 *         @p out is unchanged on error.
 */
kvx_status_t kvxi_frame_write(struct evbuffer *out, const kvxi_envelope_t *env);

/* ------------------------------------------------------------------------
 * Addresses and listeners
 */

/**
 * Parses "host:port" (numeric IPv4 or "localhost"), "[v6]:port" or
 * "unix:/path" (path 1 .. 107 bytes) into a socket address. Port 0 is
 * allowed (listen on an ephemeral port). Never resolves names.
 * @param ss     receives the address on KVX_OK.
 * @param len_p  receives its length.
 * @return KVX_OK; KVX_ERR_INVALID_PARAM (NULL or malformed).
 */
kvx_status_t kvxi_addr_parse(const char *addr, struct sockaddr_storage *ss,
                             socklen_t *len_p);

/**
 * Writes @p sa as kvxi_addr_parse() reads it ("127.0.0.1:4000",
 * "[::1]:4000", "unix:/path") into @p buf, truncated to @p size.
 * @return KVX_OK; KVX_ERR_INVALID_PARAM (NULL, unknown family, or an
 *         unnamed unix socket).
 */
kvx_status_t kvxi_addr_format(const struct sockaddr *sa, socklen_t len,
                              char *buf, size_t size);

typedef struct kvxi_listener kvxi_listener_t;

/**
 * A new connection was accepted: @p conn (server side, in the handshake
 * state, handshake timeout running) now belongs to the owner, who must
 * kvxi_conn_destroy() it eventually. Its callbacks are the listener
 * config's; kvxi_conn_set_cbs() may change them here. The owner may destroy
 * the listener inside this callback.
 */
typedef void (*kvxi_listener_accept_cb_t)(kvxi_listener_t *listener,
                                          kvxi_conn_t *conn, void *arg);

/**
 * Listens on @p addr.
 *
 * TCP: port 0 picks an ephemeral port (kvxi_listener_port()); the address
 * is reusable at once after a restart. Unix: the socket file is created
 * with mode 0600 (whatever the umask); an existing file at the path is
 * removed only if it is a socket nobody listens on (stale: a probe
 * connect() is refused; on a live listener the probe shows up as one
 * connection that closes at once); the file is unlinked by
 * kvxi_listener_destroy() if it is still the one created.
 *
 * @param cfg        configuration of every accepted connection, copied.
 * @param accept_cb  required.
 * @return KVX_OK; KVX_ERR_INVALID_PARAM (NULL, bad address or config);
 *         KVX_ERR_EXISTS (address in use, a live socket or a non-socket
 *         file at the path); KVX_ERR_IO (socket, bind, listen or chmod
 *         failed otherwise); KVX_ERR_NO_MEMORY.
 */
kvx_status_t kvxi_listener_create(struct event_base *base, const char *addr,
                                  const kvxi_conn_config_t *cfg,
                                  kvxi_listener_accept_cb_t accept_cb,
                                  void *arg, kvxi_listener_t **listener_p);

/**
 * A raw listener accepted a connection: @p fd (non-blocking, close-on-exec)
 * now belongs to the owner, who must close it eventually. The owner may
 * destroy the listener inside this callback.
 */
typedef void (*kvxi_listener_accept_fd_cb_t)(kvxi_listener_t *listener, int fd,
                                             void *arg);

/**
 * Listens on @p addr like kvxi_listener_create() (same address syntax,
 * same unix socket handling: mode 0600, stale-socket replacement, unlink
 * by kvxi_listener_destroy()), but hands every accepted socket to
 * @p accept_fd_cb as a bare fd instead of starting a node-to-node
 * connection on it: for protocols other than the handshake's, such as the
 * local engine session (engine_int.h).
 * @param accept_fd_cb  required.
 * @return as kvxi_listener_create().
 */
kvx_status_t kvxi_listener_create_raw(struct event_base *base, const char *addr,
                                      kvxi_listener_accept_fd_cb_t accept_fd_cb,
                                      void *arg, kvxi_listener_t **listener_p);

/**
 * Stops listening, closes the socket and removes the unix socket file.
 * Connections accepted earlier are not affected. NULL is a no-op.
 */
void kvxi_listener_destroy(kvxi_listener_t *listener);

/** Bound TCP port (the ephemeral one for port 0); 0 for unix sockets. */
uint16_t kvxi_listener_port(const kvxi_listener_t *listener);

/**
 * The bound address in kvxi_addr_parse() form ("127.0.0.1:40123",
 * "[::1]:40123", "unix:/path"): pass it to kvxi_conn_connect().
 */
const char *kvxi_listener_addr(const kvxi_listener_t *listener);

#endif /* KVX_CONN_INT_H */
