/*
 * The node's side of the local engine session (proto/kvx.proto, "Local
 * engine session"; the engine's side is kvx/client.h): a unix socket on
 * which engines of the same host attach, map the node's pool (its memfd
 * travels with AttachReply) and ask the node to reserve, seal, push, pull,
 * publish, collect and release blocks.
 *
 *  - engine.c: the listener (a raw kvxi_listener), sessions (one per
 *    accepted socket, on a bufferevent), Attach, frame dispatch and the
 *    end of a session.
 *  - engine_hold.c: the session's holds and leases (Reserve, Seal,
 *    Release, lease expiry, dropping them when the session ends), Lookup
 *    and Stats.
 *  - engine_xfer.c: PushStart, PullStart, LayerReady, Abort, PublishStart,
 *    Unpublish, Recv, and kvxi_engine_poll(), which reports transfers that
 *    ended (XferDone), answers parked Recv requests and expires the
 *    session's leases.
 *  - engine_peer.c: the peers those transfers name (by node id or
 *    address; connected on demand, reconnected by node id at the known
 *    address, failed ones closed) and PeerList.
 *
 * Creating the listener sets SIGPIPE to SIG_IGN while it is SIG_DFL (as
 * node-to-node connections do): an engine may close while we write.
 *
 * Everything runs on the node's thread, inside kvx_node_progress(): session
 * callbacks from the event loop, kvxi_engine_poll() after it. Nothing is
 * freed from inside a session's callback: a session that ends releases its
 * node resources at once (session teardown) and frees its socket from the
 * event loop (the finish event).
 *
 * Holds. Every block a session reserved (a hit), sealed or collected is
 * pinned once per hold in the node's allocator; the session counts its
 * holds per block (4 bytes per pool block and session; the block's
 * generation cannot change while pinned, so the allocator's is the held
 * one) and drops exactly those on Release or when it ends. Trust: the engine
 * maps the whole pool, but it can only name blocks it holds in PushStart /
 * PublishStart, and only its own leases in Seal.
 *
 * Credentials. Who may attach at all is decided when the connection is
 * accepted, from SO_PEERCRED (and SO_PEERGROUPS): the node's effective uid,
 * root, and the node's engine allow lists (kvx_node_params_t). A refused
 * connection's first frame is answered with Error(AUTH) and the session
 * closes: no AttachReply, no memfd. The socket file's mode (0600, 0660 with
 * the one allowed group, 0666 when more groups or other uids are allowed)
 * only decides who reaches the check.
 */
#ifndef KVX_ENGINE_INT_H
#define KVX_ENGINE_INT_H

#include "node_int.h"

#include <sys/types.h>

/** The session version this build speaks (Attach, AttachReply). */
#define KVXI_ENGINE_VERSION 1u
/** Time for the first frame (Attach) of a session. */
#define KVXI_ENGINE_ATTACH_MS 5000u
/** Time to flush the last frames (an Error) before closing. */
#define KVXI_ENGINE_LINGER_MS 500u
/** Output bytes a session may queue; a client that does not read its
 *  replies is disconnected beyond it. */
#define KVXI_ENGINE_OUT_MAX ((size_t)16 << 20)
/** PeerListReply entries at most. */
#define KVXI_ENGINE_PEERS_MAX 4096u
/** Refused connections (credentials not allowed) kept open at once to
 *  answer their Attach with Error(AUTH); more are closed at once. */
#define KVXI_ENGINE_REFUSED_MAX 16u

typedef struct kvxi_session kvxi_session_t;

/** A lease the session reserved and has not sealed yet. */
typedef struct kvxi_sess_lease {
    struct kvxi_sess_lease *next;
    kvx_lease_id_t id;
    uint64_t deadline_ns;
    uint32_t n;            /**< reserved (missed) blocks */
    kvx_block_ref_t *refs; /**< their refs: held once sealed */
    int expired;           /**< fenced: until the engine acknowledges */
    uint32_t named;        /**< scratch of a Release: its refs owned here */
} kvxi_sess_lease_t;

/** Nodes whose control address kvxi_engine_peer_up() remembers at most. */
#define KVXI_ENGINE_KNOWN_MAX 4096u

/** A node this node connected to, and where: a push or pull naming that
 *  node id after its connection died connects there again. */
typedef struct kvxi_known_peer {
    char node_id[KVXI_NAME_MAX + 1];
    char addr[sizeof(((struct kvx_peer *)0)->addr)];
} kvxi_known_peer_t;

/** A push or pull the session started. */
typedef struct kvxi_sess_xfer {
    struct kvxi_sess_xfer *next;
    uint64_t id;           /**< the session's xfer id, != 0 */
    kvx_xfer_h x;          /**< NULL until started (peer connecting) */
    struct kvx_peer *peer; /**< the peer, while waiting for it */
    int pull;
    uint64_t request_id;
    uint32_t n_blocks;
    uint32_t flags;
    uint32_t layer_end;    /**< announced while not started yet */
    uint64_t t_start_ns;   /**< PushStart / PullStart received */
    uint64_t deadline_ns;  /**< 0: the node's default from the start */
    kvx_block_ref_t *refs; /**< push not started: pinned once more here */
    kvx_block_key_t *keys; /**< not started: copies, or NULL */
    char *node_id; /**< named by this node id and reconnecting at its known
                        address: only that node may take it (or NULL) */
} kvxi_sess_xfer_t;

/** A parked Recv request. */
typedef struct kvxi_sess_recv {
    struct kvxi_sess_recv *next;
    uint64_t req_id;     /**< envelope request id to answer */
    uint64_t request_id; /**< the engine's request */
    uint32_t max_blocks;
    uint64_t deadline_ns;
} kvxi_sess_recv_t;

struct kvxi_session {
    struct kvxi_engine *eng;
    kvxi_session_t *next, *prev;
    struct bufferevent *bev;
    struct event *timer;  /**< Attach timeout, then linger */
    struct event *finish; /**< frees the session from the event loop */
    int fd;
    int attached;
    int closing;
    int refused; /**< credentials not allowed: Attach gets Error(AUTH) */
    pid_t pid;   /**< SO_PEERCRED: checked at accept, named in logs */
    uid_t uid;
    gid_t gid;
    char name[KVXI_NAME_MAX + 1]; /**< Attach.client_name, printable */
    uint64_t next_id;             /**< request ids of unasked frames */
    uint64_t next_xfer;           /**< xfer ids: 1, 2, ... */
    uint32_t *holds;              /**< per block: pins held (from Attach on) */
    kvxi_sess_lease_t *leases;
    kvxi_sess_xfer_t *xfers;
    kvxi_sess_recv_t *recvs;
};

/** The node's engine listener and its sessions. */
struct kvxi_engine {
    struct kvx_node *node;
    kvxi_listener_t *listener;
    kvxi_session_t *sessions;
    uint32_t n_refused;      /**< refused sessions still open */
    struct kvx_peer **peers; /**< peers the sessions made the node connect */
    uint32_t n_peers, cap_peers;
    kvxi_known_peer_t *known; /**< kvxi_engine_peer_up() */
    uint32_t n_known, cap_known, next_known;
};

/* ---- engine.c ---- */

/**
 * Listens for engines on @p path ("unix:/path" or "/path") for @p node.
 * @return KVX_OK; KVX_ERR_INVALID_PARAM (not a unix socket path); the
 *         errors of kvxi_listener_create_raw(); KVX_ERR_NO_MEMORY.
 */
kvx_status_t kvxi_engine_create(struct kvx_node *node, const char *path);

/** Ends every session (as when its socket closes) and removes the socket
 *  file. Call before the node's peers and transfers go. NULL-safe. */
void kvxi_engine_destroy(struct kvx_node *node);

/**
 * Queues @p env on @p s with the session's version; an unasked frame
 * (request_id 0) gets a fresh id. Ends the session when its output is
 * over KVXI_ENGINE_OUT_MAX or the frame cannot be queued.
 * @return KVX_OK; KVX_ERR_CONN_CLOSED (closing); KVX_ERR_NO_SPACE
 *         (the client does not read: closed); the errors of
 *         kvxi_frame_write().
 */
kvx_status_t kvxi_session_send(kvxi_session_t *s, kvxi_envelope_t *env);

/** Sends Result{@p status, @p xfer_id} answering @p req_id. */
void kvxi_session_result(kvxi_session_t *s, uint64_t req_id,
                         kvx_status_t status, uint64_t xfer_id);

/** Sends Error{@p code, @p text} answering @p req_id. */
void kvxi_session_error(kvxi_session_t *s, uint64_t req_id, kvx_status_t code,
                        const char *text);

/* ---- engine_cred.c ---- */

/**
 * Reads the credentials of @p s's connecting process (SO_PEERCRED, taken
 * by the kernel at its connect(); SO_PEERGROUPS for its supplementary
 * groups) into s->pid, uid, gid.
 * @return 1 if they may attach: the node's effective uid, root, a uid in
 *         the node's engine_uids, or a gid (primary or supplementary) in
 *         its engine_gids; 0 otherwise, and when they cannot be read.
 */
int kvxi_engine_cred_allowed(const struct kvx_node *node, kvxi_session_t *s);

/**
 * Opens the engine socket file at @p path (created 0600) to the users the
 * node's allow lists name: group engine_gids[0] when gids are listed; mode
 * 0660 for one gid, 0666 for more gids or for uids other than the node's
 * and root (a file mode cannot name them); 0600 (nothing done) without
 * lists.
 * @return KVX_OK; KVX_ERR_IO (the file is gone, or its group or mode cannot
 *         be set: logged).
 */
kvx_status_t kvxi_engine_sock_perms(const struct kvx_node *node,
                                    const char *path);

/* ---- engine_hold.c ---- */

/** Whether the session holds @p ref (at its generation). */
int kvxi_session_holds(const kvxi_session_t *s, kvx_block_ref_t ref);

/** Records one more hold of @p ref (the caller took the pin). */
void kvxi_session_hold_add(kvxi_session_t *s, kvx_block_ref_t ref);

/** Expires the session's unsealed leases whose deadline passed (@p now):
 *  their blocks are fenced, not freed, until the engine shows it stopped
 *  writing them (it seals the lease and learns STALE_HANDLE, releases its
 *  blocks, or detaches). */
void kvxi_engine_leases_expire(kvxi_session_t *s, uint64_t now);

/** Unpins @p n refs (pins the caller took and could not hand over). */
void kvxi_engine_unpin(struct kvx_node *node, const kvx_block_ref_t *refs,
                       uint32_t n);

/** Drops the session's unsealed leases (aborted, fence lifted: their
 *  blocks are freed at once) and unpins every hold it has; frees the hold
 *  counts (the session ends). */
void kvxi_engine_holds_end(kvxi_session_t *s);

/*
 * Request handlers served from the node's allocator alone, called by the
 * dispatcher of an attached session with a validated envelope of their
 * body; each answers exactly once echoing env->request_id.
 */
/** Reserve: reserves (or, keyed, finds) blocks under a session lease;
 *  hits are held at once, the rest once the lease is sealed. ReserveReply. */
void kvxi_engine_on_reserve(kvxi_session_t *s, const kvxi_envelope_t *env);
/** Seal: commits one of the session's own leases and holds its blocks
 *  (STALE_HANDLE for a lease it does not have). Result. */
void kvxi_engine_on_seal(kvxi_session_t *s, const kvxi_envelope_t *env);
/** Release: drops one hold of each named block the session holds, and
 *  gives back each unsealed (or expired) lease whose blocks are all named
 *  (freed: the engine stopped writing them); others are skipped.
 *  ReleaseAck. */
void kvxi_engine_on_release(kvxi_session_t *s, const kvxi_envelope_t *env);
/** Lookup: how many leading keys the node has cached. LookupReply. */
void kvxi_engine_on_lookup(kvxi_session_t *s, const kvxi_envelope_t *env);
/** Stats: the node's counters (kvxi_node_stats_wire()). StatsReply. */
void kvxi_engine_on_stats(kvxi_session_t *s, const kvxi_envelope_t *env);

/* ---- engine_xfer.c ---- */

/*
 * Request handlers, called by the dispatcher of an attached session with a
 * validated envelope of their body. Each answers exactly once (Result,
 * RecvReply or Error) echoing env->request_id; a Recv may
 * answer later, from kvxi_engine_poll(). Blocks named in PushStart and
 * PublishStart must be held by the session (else STALE_HANDLE, nothing
 * started); transfer ids are the session's own (Result.xfer_id).
 */
void kvxi_engine_on_push(kvxi_session_t *s, const kvxi_envelope_t *env);
void kvxi_engine_on_pull(kvxi_session_t *s, const kvxi_envelope_t *env);
void kvxi_engine_on_layer_ready(kvxi_session_t *s, const kvxi_envelope_t *env);
void kvxi_engine_on_abort(kvxi_session_t *s, const kvxi_envelope_t *env);
void kvxi_engine_on_publish(kvxi_session_t *s, const kvxi_envelope_t *env);
void kvxi_engine_on_unpublish(kvxi_session_t *s, const kvxi_envelope_t *env);
void kvxi_engine_on_recv(kvxi_session_t *s, const kvxi_envelope_t *env);

/** Aborts and releases the session's transfers, drops its parked Recvs
 *  (the session ends). */
void kvxi_engine_xfers_end(kvxi_session_t *s);

/**
 * After each round of kvx_node_progress(): starts pushes and pulls whose
 * peer connected (or ends them with its failure), sends XferDone for
 * transfers that ended, answers parked Recvs that completed or timed out,
 * expires leases and closes failed peers the sessions connected.
 */
void kvxi_engine_poll(struct kvx_node *node);

/** Lowers *@p next_p to the earliest deadline of a parked Recv or of a
 *  transfer still waiting for its peer (the node's timer). */
void kvxi_engine_next_deadline(struct kvx_node *node, uint64_t *next_p);

/* ---- engine_peer.c ---- */

/** @p peer completed its handshake (peer.c): when this node connected to
 *  it, its node id and address are remembered (at most
 *  KVXI_ENGINE_KNOWN_MAX, the oldest replaced) so that a session naming the
 *  node id reconnects there once the connection died. No-op without an
 *  engine listener. */
void kvxi_engine_peer_up(struct kvx_peer *peer);

/** Whether @p peer is still one of @p node's peers (not closed and freed:
 *  a peer pointer is only compared, never followed, before this). */
int kvxi_engine_peer_alive(struct kvx_node *node, const struct kvx_peer *peer);

/**
 * The peer @p name (a node id or a control address): connected,
 * connecting, or connected to now (kept in eng->peers). *@p by_id_p is set
 * when @p name is a node id whose connection is gone, reached again at its
 * known address.
 * @return KVX_OK; KVX_ERR_NOT_FOUND (neither connected nor an address nor
 *         a known node id); KVX_ERR_NO_MEMORY; the errors of
 *         kvx_node_connect().
 */
kvx_status_t kvxi_engine_peer_get(struct kvxi_engine *eng, const char *name,
                                  struct kvx_peer **peer_p, int *by_id_p);

/** Forgets peers the sessions made that others closed; closes the failed
 *  ones (kvxi_engine_poll()). */
void kvxi_engine_peers_gc(struct kvxi_engine *eng);

/** PeerList: the node's peers. PeerListReply (Error without memory). */
void kvxi_engine_on_peer_list(kvxi_session_t *s, const kvxi_envelope_t *env);

#endif /* KVX_ENGINE_INT_H */
