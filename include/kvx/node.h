/**
 * @file kvx/node.h
 * @brief The kvx node: the transfer engine an inference engine embeds (or
 *        kvxd runs as a service).
 *
 * A node owns one KV pool (a memfd, block-major, of the node's layout), its
 * allocator with the prefix index, one UCX context and worker (the data
 * path), a control listener, and its peers. It moves blocks between pools:
 *
 *  - Push: the sender calls kvx_node_push() with blocks it holds and their
 *    keys; the receiver allocates with dedupe (blocks it already has are
 *    pinned, never sent), the sender writes only the missing blocks (UCX
 *    RMA put where the transport has native RMA, active messages received
 *    in place otherwise), then commits; the receiving engine collects the
 *    request's blocks with kvx_node_recv().
 *  - Layer-wise: with KVX_XFER_FLAG_LAYERWISE the sender announces layers as
 *    prefill produces them (kvx_xfer_layer_ready()); each layer's segments
 *    go out at once.
 *  - Integrity: with KVX_XFER_FLAG_CHECKSUM the sender sends an XXH3-64 of
 *    every block it wrote; the receiver checks them before committing and
 *    fails the transfer with KVX_ERR_CORRUPT on a mismatch.
 *  - Pull: the holder (prefill) publishes a request's blocks under a lease
 *    (kvx_node_publish()) and hands the ticket to the router; the puller
 *    (decode) reads them with kvx_node_pull(): RMA get where the endpoint
 *    has native RMA, otherwise the holder pushes them over active messages
 *    into the blocks the puller reserved. Blocks the puller already holds
 *    (by key) are not read.
 *  - Stats: kvx_node_stats() (this node) and kvx_peer_stats() (a connected
 *    peer, over the control channel) report occupancy and counters.
 *
 * Threading: a node is single-threaded. Every call on a node and its peers
 * and transfers comes from one thread, which also drives the node with
 * kvx_node_progress() (non-blocking with a 0 timeout, as engines poll every
 * step). An idle node sleeps in the kernel: no busy polling.
 *
 * Every transfer ends: completed, or failed with a status naming the cause
 * (KVX_ERR_TIMEOUT, KVX_ERR_PEER_DOWN, KVX_ERR_NO_SPACE, KVX_ERR_ABORTED,
 * KVX_ERR_LAYOUT_MISMATCH, ...) by its deadline.
 */
#ifndef KVX_NODE_H
#define KVX_NODE_H

#include <kvx/alloc.h>
#include <kvx/common.h>
#include <kvx/key.h>
#include <kvx/layout.h>
#include <kvx/pool.h>
#include <kvx/status.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kvx_node *kvx_node_h;
typedef struct kvx_peer *kvx_peer_h;
typedef struct kvx_xfer *kvx_xfer_h;

/** How a peer's data moves (per endpoint; config can force it). */
typedef enum kvx_transport {
    KVX_TRANSPORT_AUTO = 0, /**< RMA where native (shm, RDMA), else AM */
    KVX_TRANSPORT_RMA = 1,  /**< one-sided UCX put/get */
    KVX_TRANSPORT_AM = 2    /**< UCX active messages, received in place */
} kvx_transport_t;

/** Bits of kvx_node_params_t::field_mask. */
enum kvx_node_param_field {
    KVX_NODE_PARAM_FIELD_NODE_ID = 1u << 0, /**< required */
    KVX_NODE_PARAM_FIELD_LAYOUT = 1u << 1,  /**< required */
    KVX_NODE_PARAM_FIELD_LISTEN = 1u << 2,
    KVX_NODE_PARAM_FIELD_UCX_TLS = 1u << 3,
    KVX_NODE_PARAM_FIELD_TRANSPORT = 1u << 4,
    KVX_NODE_PARAM_FIELD_SECRET = 1u << 5,
    KVX_NODE_PARAM_FIELD_HEARTBEAT = 1u << 6,
    KVX_NODE_PARAM_FIELD_LEASE = 1u << 7,
    KVX_NODE_PARAM_FIELD_HOLD = 1u << 8,
    KVX_NODE_PARAM_FIELD_ENGINE_SOCKET = 1u << 9,
    KVX_NODE_PARAM_FIELD_ENGINE_ALLOW = 1u << 10,
    KVX_NODE_PARAM_FIELD_HANDSHAKE = 1u << 11,
    KVX_NODE_PARAM_FIELD_POLL = 1u << 12,
    KVX_NODE_PARAM_FIELD_AM_CHUNK = 1u << 13
};

/** Default of kvx_node_params_t::poll_us. */
#define KVX_NODE_POLL_US_DEFAULT 100u
/** Most kvx_node_params_t::poll_us (one second). */
#define KVX_NODE_POLL_US_MAX 1000000u
/** Default of kvx_node_params_t::am_chunk (4 MiB). */
#define KVX_NODE_AM_CHUNK_DEFAULT (4ull << 20)
/** Bounds of kvx_node_params_t::am_chunk (4 KiB .. 1 GiB). */
#define KVX_NODE_AM_CHUNK_MIN 4096ull
#define KVX_NODE_AM_CHUNK_MAX (1ull << 30)

/** Most entries in each of kvx_node_params_t's engine allow lists. */
#define KVX_NODE_ENGINE_ALLOW_MAX 64

typedef struct kvx_node_params {
    uint64_t field_mask;
    /** NODE_ID: a stable name for logs and the handshake (1 .. 256 bytes). */
    const char *node_id;
    /** LAYOUT: the pool's model shape; order must be block-major,
        block_bytes a multiple of 64 (pool block alignment), and
        num_blocks is the pool's block count. Copied. */
    const kvx_layout_params_t *layout;
    /** LISTEN: control address peers connect to: "127.0.0.1:0" (port 0 =
        ephemeral, see kvx_node_listen_addr()), "[::1]:4000" or
        "unix:/path". Default: no listener (the node only connects out). */
    const char *listen;
    /** UCX_TLS: UCX transport list as in UCX_TLS ("tcp",
        "posix,sysv,cma,self"); default: UCX's (or the environment's). */
    const char *ucx_tls;
    /** TRANSPORT: data path policy (default KVX_TRANSPORT_AUTO). */
    kvx_transport_t transport;
    /** SECRET: cluster secret for the HMAC-SHA256 handshake (copied);
        default empty: no authentication (peers with an empty secret). */
    const void *secret;
    size_t secret_len;
    /** HEARTBEAT: control heartbeat interval in ms (default 1000); a peer
        silent for 3 intervals is down. */
    uint32_t heartbeat_ms;
    /** LEASE: default lease of blocks reserved for an incoming transfer,
        in ms, when the sender's deadline says less (default 30000). */
    uint32_t lease_ms;
    /** HOLD: how long, in ms, a request whose blocks arrived (committed
        here) waits for kvx_node_recv(). Past it the node releases the
        request: its pins are dropped (keyed blocks become CACHED and still
        serve dedupe, the others are freed), the request is forgotten and a
        later kvx_node_recv() gets KVX_ERR_NOT_FOUND. A failed request
        whose failure kvx_node_recv() did not report within HOLD is
        forgotten the same way. Default 0: held until collected. At most
        86,400,000. */
    uint32_t hold_ms;
    /** ENGINE_SOCKET: unix socket path ("/run/kvxd.sock", or with a
        "unix:" prefix) on which local engines attach (kvx/client.h):
        created mode 0600 (see ENGINE_ALLOW), a stale socket file is
        replaced, removed by
        kvx_node_destroy(). Default: engines cannot attach. */
    const char *engine_socket;
    /** ENGINE_ALLOW: who may attach on the engine socket (this field and
        kvx_node_engine_listen() alike). An attached engine maps the whole
        pool, so the node checks every connection's credentials
        (SO_PEERCRED, taken by the kernel at connect()) when it accepts it:
        allowed are the node's effective uid, root (uid 0), the uids listed
        here, and processes whose gid (primary, or supplementary as
        SO_PEERGROUPS reports them) is listed here. Anyone else's Attach
        is answered with Error{KVX_ERR_AUTH} (the pool's memfd is never
        sent), the connection is closed and a warning names its pid, uid
        and gid. The socket file's mode follows the lists: 0600 without
        them; with gids, its group is engine_allow_gids[0] (the node must
        be root or a member of that group) and its mode 0660 for one gid;
        0666 for more gids or when uids other than the node's and root are
        listed (a file mode cannot name them: anyone on the host may then
        connect, the credential check above is what refuses them). Lists are
        copied, at most KVX_NODE_ENGINE_ALLOW_MAX entries each, and may
        not contain (uint32_t)-1. Default: empty lists. */
    const uint32_t *engine_allow_uids;
    uint32_t n_engine_allow_uids;
    const uint32_t *engine_allow_gids;
    uint32_t n_engine_allow_gids;
    /** HANDSHAKE: time in ms a control connection (accepted or connected)
        has to complete its handshake before it is closed with
        KVX_ERR_TIMEOUT (default 5000; 0 selects it): a peer that connects
        and never speaks holds a socket only this long. */
    uint32_t handshake_ms;
    /** POLL: busy-poll window in microseconds (default
        KVX_NODE_POLL_US_DEFAULT, at most KVX_NODE_POLL_US_MAX). After
        anything happened on the node (UCX completed work, a peer or engine
        frame arrived, a frame was sent), kvx_node_progress() polls instead
        of sleeping until this long has passed without anything happening:
        an answer that comes within the window (an allocation, a CommitAck,
        the next data) is seen without a wake-up from the kernel. 0 never
        polls: the node sleeps whenever nothing is pending (least CPU, each
        round trip then pays the wake-ups). A busy node polls all the time;
        an idle one sleeps. */
    uint32_t poll_us;
    /** AM_CHUNK: largest message of the active-message data path in bytes
        (default KVX_NODE_AM_CHUNK_DEFAULT; KVX_NODE_AM_CHUNK_MIN ..
        KVX_NODE_AM_CHUNK_MAX): a segment larger than this is sent as
        several messages. Only the sender's value matters; RMA paths ignore
        it. */
    uint64_t am_chunk;
} kvx_node_params_t;

/**
 * Creates a node: pool, allocator, UCX context and worker, pool
 * registration, and the listener if asked.
 * @return KVX_OK; KVX_ERR_INVALID_PARAM (NULL, required field missing,
 *         unknown bits, a layout kvx_layout_init() refuses or not
 *         block-major, bad listen address, an engine allow list that is
 *         NULL with a count, too long or holds (uint32_t)-1);
 *         KVX_ERR_EXISTS (listen address
 *         in use); KVX_ERR_NO_MEMORY; KVX_ERR_IO; KVX_ERR_NOT_SUPPORTED (UCX
 *         could not start). @p node_p is written only on success.
 */
KVX_EXPORT kvx_status_t kvx_node_create(const kvx_node_params_t *params,
                                        kvx_node_h *node_p);

/**
 * Destroys the node: running transfers are aborted (peers are told), peers
 * are disconnected, the pool is unmapped. Every peer and transfer handle of
 * the node is freed with it and must not be used afterwards. NULL is a
 * no-op.
 */
KVX_EXPORT void kvx_node_destroy(kvx_node_h node);

/**
 * Runs the node's event loop: handles what is ready, waits at most
 * @p timeout_ms for more (0: never waits). Returns after one round of
 * events or the timeout. Within the poll window (kvx_node_params_t::
 * poll_us: something happened on the node less than that long ago) it
 * does not wait: it polls once and returns, and the caller's loop polls
 * again. Call it in a loop until what you wait for has happened.
 * @return KVX_OK; KVX_ERR_INVALID_PARAM; KVX_ERR_IO (event loop failure).
 */
KVX_EXPORT kvx_status_t kvx_node_progress(kvx_node_h node, uint32_t timeout_ms);

/** The listener's bound address ("127.0.0.1:40123"), or NULL if none. */
KVX_EXPORT const char *kvx_node_listen_addr(kvx_node_h node);

/**
 * Starts serving local engines (kvx/client.h) on the unix socket @p path
 * ("/run/kvxd.sock" or "unix:/run/kvxd.sock"), as
 * kvx_node_params_t::engine_socket does at creation: for callers that
 * treat a missing engine socket as a warning rather than a failure of the
 * whole node (kvxd's default socket). The socket file is created mode
 * 0600, or as kvx_node_params_t::engine_allow_uids / engine_allow_gids
 * say (a stale one is replaced), and removed by kvx_node_destroy(); only
 * the credentials those lists allow may attach.
 * @return KVX_OK; KVX_ERR_INVALID_PARAM (NULL, not a unix socket path);
 *         KVX_ERR_BAD_STATE (the node already serves engines, or is
 *         shutting down); KVX_ERR_EXISTS (a live socket or another file at
 *         @p path); KVX_ERR_IO (the folder is not writable, bind or listen
 *         failed, the socket's group or mode cannot be set);
 *         KVX_ERR_NO_MEMORY. On error nothing changed.
 */
KVX_EXPORT kvx_status_t kvx_node_engine_listen(kvx_node_h node,
                                               const char *path);

/** The node's pool (owned by the node): engines write KV into its blocks. */
KVX_EXPORT kvx_pool_h kvx_node_pool(kvx_node_h node);

/** The node's allocator (owned by the node). */
KVX_EXPORT kvx_alloc_h kvx_node_alloc(kvx_node_h node);

/** The node's pool layout (owned by the node). */
KVX_EXPORT const kvx_layout_t *kvx_node_layout(kvx_node_h node);

/* ---- peers ---- */

/**
 * Starts connecting to a peer node (control channel, then the UCX
 * endpoint). The peer is usable once kvx_peer_status() is KVX_OK.
 * @param addr   the peer's listen address.
 * @param peer_p receives the peer (owned by the node).
 * @return KVX_OK (under way); KVX_ERR_INVALID_PARAM; KVX_ERR_NO_MEMORY;
 *         KVX_ERR_IO.
 */
KVX_EXPORT kvx_status_t kvx_node_connect(kvx_node_h node, const char *addr,
                                         kvx_peer_h *peer_p);

/**
 * Progresses the node until @p peer is connected or failed, at most
 * @p timeout_ms.
 * @return KVX_OK (connected); KVX_INPROGRESS (timeout); the failure:
 *         KVX_ERR_PEER_UNREACHABLE, KVX_ERR_AUTH, KVX_ERR_LAYOUT_MISMATCH,
 *         KVX_ERR_PROTO_VERSION, KVX_ERR_PEER_REFUSED, KVX_ERR_PEER_DOWN.
 */
KVX_EXPORT kvx_status_t kvx_peer_wait(kvx_peer_h peer, uint32_t timeout_ms);

/** KVX_OK when connected, KVX_INPROGRESS while connecting, else why not. */
KVX_EXPORT kvx_status_t kvx_peer_status(kvx_peer_h peer);

/** The data path chosen for this peer (RMA or AM; AUTO until connected). */
KVX_EXPORT kvx_transport_t kvx_peer_transport(kvx_peer_h peer);

/** The peer's node id (empty until connected). */
KVX_EXPORT const char *kvx_peer_name(kvx_peer_h peer);

/**
 * Disconnects @p peer and frees its handle, whatever its state (connecting,
 * connected, or already failed). The remote node sees the connection
 * close. Transfers to and from the peer end as when the connection drops:
 * running pushes and pulls fail (KVX_ERR_PEER_DOWN, or KVX_ERR_ABORTED for
 * ones already being aborted) and their handles stay valid until
 * kvx_xfer_release(); incoming transfers not committed yet fail too.
 * Requests already committed here stay collectable with kvx_node_recv().
 * @p peer must not be used afterwards. NULL is a no-op.
 */
KVX_EXPORT void kvx_peer_close(kvx_peer_h peer);

/* ---- stats ---- */

/** Longest counter name (bytes, without the NUL). */
#define KVX_STAT_NAME_MAX 128
/** Counters one kvx_node_stats_t holds; further ones are counted in
    kvx_node_stats_t::counters_dropped. */
#define KVX_NODE_STATS_COUNTERS_MAX 64

/** One named counter. */
typedef struct kvx_stat_counter {
    char name[KVX_STAT_NAME_MAX + 1]; /**< NUL-terminated */
    uint64_t value;
} kvx_stat_counter_t;

/**
 * A node's counters (kvx_node_stats(), kvx_peer_stats()); the wire form is
 * StatsReply. Transfer and byte counters cover both directions: a node
 * counts the pushes it sends and the ones it receives.
 *
 * Named counters a node reports (more may come; names are stable):
 *  - "peers.connected": peers with an open connection and data path;
 *  - "peer.<node id>.transport": per connected peer, 1 = RMA, 2 = AM
 *    (skipped when the name would exceed KVX_STAT_NAME_MAX);
 *  - "xfers.sending", "xfers.receiving": transfers in flight;
 *  - "xfers.uncollected": received requests, committed or failed, that
 *    wait for kvx_node_recv() (hold_ms bounds how long);
 *  - "blocks.verified", "checksum.mismatches": blocks received with a
 *    checksum that matched / differed;
 *  - "am.refused": active-message chunks refused (no reservation);
 *  - "uptime.ms": since kvx_node_create().
 */
typedef struct kvx_node_stats {
    uint64_t blocks_total;      /**< blocks in the pool */
    uint64_t blocks_free;       /**< FREE blocks */
    uint64_t blocks_cached;     /**< CACHED (unpinned, keyed) blocks */
    uint64_t leases_active;     /**< leases holding reserved blocks */
    uint64_t leases_fenced;     /**< leases waiting for their fence */
    uint64_t transfers_ok;      /**< transfers completed */
    uint64_t transfers_failed;  /**< transfers that failed */
    uint64_t bytes_sent;        /**< payload bytes written to peers */
    uint64_t bytes_received;    /**< payload bytes committed from peers */
    uint64_t dedupe_hit_blocks; /**< blocks not sent: the receiver had them */
    uint32_t n_counters;        /**< entries used in @p counters */
    uint32_t counters_dropped;  /**< counters that did not fit */
    kvx_stat_counter_t counters[KVX_NODE_STATS_COUNTERS_MAX];
} kvx_node_stats_t;

/**
 * This node's counters (a snapshot; no I/O).
 * @return KVX_OK; KVX_ERR_INVALID_PARAM (NULL).
 */
KVX_EXPORT kvx_status_t kvx_node_stats(kvx_node_h node,
                                       kvx_node_stats_t *stats);

/**
 * Asks a connected peer for its counters (a Stats request answered by
 * StatsReply) and progresses the node until the reply arrives or
 * @p timeout_ms passes. @p stats is written only on KVX_OK.
 * @return KVX_OK; KVX_ERR_INVALID_PARAM (NULL); KVX_ERR_BAD_STATE (the peer
 *         is not connected yet, or a kvx_peer_stats() on it is already
 *         waiting); KVX_ERR_TIMEOUT (no reply in time; a late reply is
 *         ignored); the peer's refusal (its Error's code, e.g.
 *         KVX_ERR_NOT_SUPPORTED); KVX_ERR_PEER_DOWN and the other peer
 *         errors when the connection fails meanwhile.
 */
KVX_EXPORT kvx_status_t kvx_peer_stats(kvx_peer_h peer, uint32_t timeout_ms,
                                       kvx_node_stats_t *stats);

/** "auto", "rma", "am". */
KVX_EXPORT const char *kvx_transport_string(kvx_transport_t transport);

/* ---- transfers ---- */

/** Bits of kvx_xfer_params_t::field_mask. */
enum kvx_xfer_param_field {
    KVX_XFER_PARAM_FIELD_REQUEST_ID = 1u << 0, /**< required */
    KVX_XFER_PARAM_FIELD_BLOCKS = 1u << 1,     /**< required */
    KVX_XFER_PARAM_FIELD_KEYS = 1u << 2,       /**< dedupe by key */
    KVX_XFER_PARAM_FIELD_DEADLINE = 1u << 3,
    KVX_XFER_PARAM_FIELD_FLAGS = 1u << 4
};

/** Values of kvx_xfer_params_t::flags. */
enum kvx_xfer_flag {
    /** Send layers only as kvx_xfer_layer_ready() announces them. */
    KVX_XFER_FLAG_LAYERWISE = 1u << 0,
    /** End-to-end integrity: the sender computes an XXH3-64 of every block
        it writes (at commit time, over the whole block, also when it went
        out layer by layer) and sends them with the Commit; the receiver
        recomputes them over its destination blocks before committing. A
        mismatch fails the transfer with KVX_ERR_CORRUPT on both sides
        (kvx_xfer_attr_t::checksum_mismatches says how many blocks; the
        receiver frees them and kvx_node_recv() reports KVX_ERR_CORRUPT).
        Hit blocks are not sent and not checked. Needs a peer whose blocks
        hold the same bytes as ours (same block_tokens, token order and
        head slice): otherwise the push fails with KVX_ERR_NOT_SUPPORTED. */
    KVX_XFER_FLAG_CHECKSUM = 1u << 1
};

typedef struct kvx_xfer_params {
    uint64_t field_mask;
    uint64_t request_id;           /**< the engine's request; names the
                                        blocks on the receiver */
    const kvx_block_ref_t *blocks; /**< READY blocks of the local pool, in
                                        token order; pinned by the transfer
                                        until it ends */
    uint32_t n_blocks;             /**< 1 .. 2^20 */
    const kvx_block_key_t *keys;   /**< KEYS: one per block (dedupe on the
                                        receiver); without: every block is
                                        sent */
    uint32_t deadline_ms;          /**< DEADLINE: from now (default 30000) */
    uint32_t flags;                /**< FLAGS: kvx_xfer_flag bits */
} kvx_xfer_params_t;

/** What a transfer did (kvx_xfer_query()). */
typedef struct kvx_xfer_attr {
    kvx_status_t status;          /**< KVX_INPROGRESS, KVX_OK or the failure */
    uint32_t n_blocks;            /**< blocks of the request */
    uint32_t blocks_hit;          /**< already held by the receiver: not sent */
    uint32_t blocks_sent;         /**< written over the data path */
    uint64_t bytes_sent;          /**< payload bytes written */
    uint32_t segments;            /**< planner segments posted */
    kvx_transport_t transport;    /**< data path used */
    uint64_t elapsed_ns;          /**< start to end (or to now) */
    uint32_t checksum_mismatches; /**< CHECKSUM: blocks the receiver found
                                       corrupt (then status is
                                       KVX_ERR_CORRUPT) */
    /* Phases of a push, on the clock of elapsed_ns
       (kvx_clock_monotonic_ns), each 0 when the phase did not happen or
       has not ended yet: a refused or failed allocation leaves all four 0;
       every block hit leaves post_ns, data_ns and commit_ns 0; a failure
       while writing leaves data_ns and commit_ns 0, one before the
       CommitAck commit_ns. alloc_ns + data_ns + commit_ns <= elapsed_ns
       (between them: the checksums and the Commit's encoding). Pulls fill
       alloc_ns (start until the holder's AllocateReply) and post_ns (their
       RMA gets; 0 over AM, where the holder writes) and leave data_ns and
       commit_ns 0. kvx_client_xfer_query() leaves all four 0. */
    uint64_t alloc_ns;  /**< start until the receiver's allocation answer
                             (AllocateReply) */
    uint64_t post_ns;   /**< time spent inside the data-path posts (sum
                             over all posts) */
    uint64_t data_ns;   /**< allocation answer until every write completed
                             (flushed); LAYERWISE: includes waiting for
                             the announcements */
    uint64_t commit_ns; /**< Commit sent until its answer (CommitAck) */
} kvx_xfer_attr_t;

/**
 * Starts pushing @p params->blocks to @p peer.
 * @param xfer_p receives the transfer; free it with kvx_xfer_release().
 * @return KVX_OK (started: completion through kvx_xfer_test/wait);
 *         KVX_ERR_INVALID_PARAM (NULL, missing fields, unknown bits, zero
 *         blocks); KVX_ERR_STALE_HANDLE / KVX_ERR_BAD_STATE /
 *         KVX_ERR_OUT_OF_RANGE (a block reference the caller does not hold
 *         READY: nothing is sent); KVX_ERR_BAD_STATE (peer still
 *         connecting); the peer's failure, e.g. KVX_ERR_PEER_DOWN (its
 *         connection died: connect again);
 *         KVX_ERR_NOT_SUPPORTED (KVX_XFER_FLAG_CHECKSUM with a peer whose
 *         blocks are arranged differently); KVX_ERR_NO_MEMORY.
 */
KVX_EXPORT kvx_status_t kvx_node_push(kvx_node_h node, kvx_peer_h peer,
                                      const kvx_xfer_params_t *params,
                                      kvx_xfer_h *xfer_p);

/**
 * Layer-wise transfers: layers [0, @p layer_end) are ready; their segments
 * go out as soon as the receiver's allocation is known.
 * @return KVX_OK; KVX_ERR_INVALID_PARAM (not layer-wise, layer_end beyond
 *         the layout or below an earlier announcement); KVX_ERR_BAD_STATE
 *         (transfer already ended).
 */
KVX_EXPORT kvx_status_t kvx_xfer_layer_ready(kvx_xfer_h xfer,
                                             uint32_t layer_end);

/** KVX_INPROGRESS while running, KVX_OK when done, else the failure
 *  (KVX_ERR_CORRUPT: the receiver found blocks that failed their checksum).
 *  A push reports its failure (KVX_ERR_TIMEOUT at its deadline, an abort,
 *  the peer's loss) at once, even while UCX still holds sends a broken link
 *  stalls: its source blocks stay pinned until those writes are quiesced
 *  or the peer is declared down, so kvx_xfer_release() right away is safe
 *  but the blocks may come back a little later. */
KVX_EXPORT kvx_status_t kvx_xfer_test(kvx_xfer_h xfer);

/**
 * Progresses the node until @p xfer ends or @p timeout_ms passes.
 * @return as kvx_xfer_test() (KVX_INPROGRESS on timeout).
 */
KVX_EXPORT kvx_status_t kvx_xfer_wait(kvx_xfer_h xfer, uint32_t timeout_ms);

/** Fills @p attr. @return KVX_OK; KVX_ERR_INVALID_PARAM. */
KVX_EXPORT kvx_status_t kvx_xfer_query(kvx_xfer_h xfer, kvx_xfer_attr_t *attr);

/**
 * Aborts a running transfer: the receiver is told, and its reserved blocks
 * stay fenced until no write of ours can land. Ends with KVX_ERR_ABORTED.
 * @return KVX_OK; KVX_ERR_INVALID_PARAM; KVX_ERR_BAD_STATE (already ended,
 *         or too late: its Commit went out, so it ends with the receiver's
 *         answer, which the receiver's kvx_node_recv() reports too).
 */
KVX_EXPORT kvx_status_t kvx_xfer_abort(kvx_xfer_h xfer);

/** Frees a transfer handle (aborting it if still running). NULL: no-op. */
KVX_EXPORT void kvx_xfer_release(kvx_xfer_h xfer);

/* ---- pull ---- */

struct kvx_ticket; /* kvx/ticket.h */

/** Bits of kvx_publish_params_t::field_mask. */
enum kvx_publish_param_field {
    KVX_PUBLISH_PARAM_FIELD_REQUEST_ID = 1u << 0, /**< required */
    KVX_PUBLISH_PARAM_FIELD_BLOCKS = 1u << 1,     /**< required */
    KVX_PUBLISH_PARAM_FIELD_KEYS = 1u << 2,
    KVX_PUBLISH_PARAM_FIELD_LEASE = 1u << 3
};

typedef struct kvx_publish_params {
    uint64_t field_mask;
    uint64_t request_id;           /**< the name pullers use; one live
                                        publication per id on a node */
    const kvx_block_ref_t *blocks; /**< READY blocks of the local pool, in
                                        token order; the node takes one pin
                                        on each (the caller keeps its own) */
    uint32_t n_blocks;             /**< 1 .. 2^20 */
    const kvx_block_key_t *keys;   /**< KEYS: one per block; accepted and
                                        checked for presence only (pullers
                                        dedupe with their own keys) */
    uint32_t lease_ms;             /**< LEASE: how long the blocks stay
                                        pinned for pullers, from now
                                        (default: the node's lease,
                                        kvx_node_params_t::lease_ms),
                                        at most 3,600,000 */
} kvx_publish_params_t;

/**
 * Publishes blocks for pulling: pins each block under a lease and
 * remembers request_id -> blocks until the lease ends or
 * kvx_node_unpublish(). A puller's read holds its own pin on every block
 * from its request until its Release (or its connection's death), so
 * expiry or unpublish never frees a block a reader is still reading.
 *
 * @param node      the holder node.
 * @param params    see kvx_publish_params_t (the block array is copied).
 * @param ticket_p  receives the ticket to forward to the puller
 *                  (kvx_node_ticket()); may be NULL. Written only on
 *                  KVX_OK.
 * @return KVX_OK; KVX_ERR_INVALID_PARAM (NULL node or params, missing
 *         required fields, unknown bits, zero or too many blocks, KEYS
 *         with NULL keys, lease above the maximum);
 *         KVX_ERR_EXISTS (@p request_id is already published here);
 *         KVX_ERR_STALE_HANDLE / KVX_ERR_BAD_STATE / KVX_ERR_OUT_OF_RANGE
 *         (a block the caller does not hold READY: nothing pinned);
 *         KVX_ERR_BAD_STATE (node shutting down, or @p ticket_p given and
 *         the node has no listener); KVX_ERR_NO_SPACE (listen address too
 *         long for a ticket); KVX_ERR_NO_MEMORY. On error nothing is
 *         published.
 */
KVX_EXPORT kvx_status_t kvx_node_publish(kvx_node_h node,
                                         const kvx_publish_params_t *params,
                                         struct kvx_ticket *ticket_p);

/**
 * Withdraws a publication before its lease ends: the node drops its pins;
 * reads in flight keep theirs until they end. Later pulls of the id get
 * KVX_ERR_NOT_FOUND.
 * @return KVX_OK; KVX_ERR_INVALID_PARAM (NULL node);
 *         KVX_ERR_NOT_FOUND (not published, expired or withdrawn).
 */
KVX_EXPORT kvx_status_t kvx_node_unpublish(kvx_node_h node,
                                           uint64_t request_id);

/** Bits of kvx_pull_params_t::field_mask. */
enum kvx_pull_param_field {
    KVX_PULL_PARAM_FIELD_REQUEST_ID = 1u << 0, /**< required */
    KVX_PULL_PARAM_FIELD_N_BLOCKS = 1u << 1,   /**< required */
    KVX_PULL_PARAM_FIELD_KEYS = 1u << 2,       /**< local dedupe */
    KVX_PULL_PARAM_FIELD_DEADLINE = 1u << 3,
    KVX_PULL_PARAM_FIELD_FLAGS = 1u << 4
};

typedef struct kvx_pull_params {
    uint64_t field_mask;
    uint64_t request_id;         /**< as published on the holder (the
                                      ticket's request_id); also the id
                                      kvx_node_recv() collects here */
    uint32_t n_blocks;           /**< blocks published, 1 .. 2^20 (must
                                      match the publication) */
    const kvx_block_key_t *keys; /**< KEYS: one per block (copied): blocks
                                      this node already holds are pinned
                                      and not read */
    uint32_t deadline_ms;        /**< DEADLINE: from now (default 30000) */
    uint32_t flags;              /**< FLAGS: 0 (KVX_XFER_FLAG_CHECKSUM is
                                      not supported for pulls yet) */
} kvx_pull_params_t;

/**
 * Starts pulling the blocks @p peer published under request_id:
 * reserves local destination blocks (deduped by key), asks the holder for
 * its refs, then reads the missing blocks (RMA get; over an AM endpoint the
 * holder pushes them into the reservation), commits them locally (keys
 * enter the prefix index) and tells the holder to drop its read hold
 * (Release). The blocks are then collected with kvx_node_recv(request_id)
 * like pushed ones (kvx_xfer_query() counts blocks read as blocks_sent).
 *
 * The transfer ends with KVX_OK, or: KVX_ERR_NOT_FOUND (the holder has no
 * such publication: unknown, withdrawn or its lease expired);
 * KVX_ERR_INVALID_PARAM (n_blocks differs from the publication);
 * KVX_ERR_TIMEOUT (deadline); KVX_ERR_PEER_DOWN (the peer went away);
 * KVX_ERR_ABORTED (kvx_xfer_abort()/kvx_xfer_release()); KVX_ERR_IO or
 * another status of the data path. kvx_node_recv() then reports the same
 * failure once.
 *
 * @param xfer_p receives the transfer; free it with kvx_xfer_release().
 *               kvx_xfer_layer_ready() does not apply (INVALID_PARAM).
 * @return KVX_OK (started); KVX_ERR_INVALID_PARAM (NULL, missing fields,
 *         unknown bits, zero or too many blocks, KEYS with NULL keys);
 *         KVX_ERR_NOT_SUPPORTED (KVX_XFER_FLAG_CHECKSUM or other flags);
 *         KVX_ERR_BAD_STATE (peer still connecting, node shutting down);
 *         the peer's failure, e.g. KVX_ERR_PEER_DOWN (connect again);
 *         KVX_ERR_EXISTS (a transfer of request_id is live on this
 *         node); KVX_ERR_NO_SPACE (not enough free blocks: nothing held);
 *         KVX_ERR_NO_MEMORY. On error nothing is held.
 */
KVX_EXPORT kvx_status_t kvx_node_pull(kvx_node_h node, kvx_peer_h peer,
                                      const kvx_pull_params_t *params,
                                      kvx_xfer_h *xfer_p);

/* ---- receiving ---- */

/**
 * Collects the blocks of request @p request_id that arrived from any peer
 * (pushed to this node, or pulled by kvx_node_pull()).
 * On KVX_OK the caller holds one pin on each returned block (hits and
 * received blocks alike, in token order) and releases them with
 * kvx_alloc_unpin() on kvx_node_alloc(); the node forgets the request.
 * @param timeout_ms  0 polls; otherwise progresses the node until the
 *                    request is complete or the time passes.
 * @param refs        room for @p max references.
 * @param n_p         receives the number of blocks.
 * @return KVX_OK; KVX_INPROGRESS (the request is known, e.g. allocated,
 *         but not complete yet: call again); KVX_ERR_NOT_FOUND (nothing
 *         of this request has arrived, or it was collected already);
 *         KVX_ERR_NO_SPACE (@p max too small; *n_p says how many: nothing
 *         taken); the transfer's failure (KVX_ERR_ABORTED, KVX_ERR_TIMEOUT,
 *         KVX_ERR_PEER_DOWN, KVX_ERR_CORRUPT: a block failed its checksum),
 *         reported once; KVX_ERR_INVALID_PARAM.
 */
KVX_EXPORT kvx_status_t kvx_node_recv(kvx_node_h node, uint64_t request_id,
                                      uint32_t timeout_ms,
                                      kvx_block_ref_t *refs, uint32_t max,
                                      uint32_t *n_p);

#ifdef __cplusplus
}
#endif

#endif /* KVX_NODE_H */
