/*
 * The node's private structures (node.c, peer.c; the push sender
 * xfer_send.c, xfer_post.c, xfer_stop.c, whose own helpers are in
 * xfer_int.h; the push receiver xfer_recv.c, rx_am.c, rx_commit.c,
 * rx_hold.c, whose own helpers are in rx_int.h; pull.c, pull_hold.c;
 * engine sessions: engine_int.h).
 *
 * A node is single-threaded: every function here runs on the thread that
 * calls kvx_node_progress(). Objects:
 *  - struct kvx_peer: one control connection (kvxi_conn) plus, once the
 *    handshake completed, one UCX endpoint to the peer's worker.
 *  - struct kvx_xfer: a push we send (sender side), owned by the engine.
 *  - struct kvxi_rx: a push we receive (receiver side): the lease, the
 *    destination refs, and afterwards the request's result until
 *    kvx_node_recv() collects it.
 *
 * Transfer ids are chosen by the allocate sender; the side that connected
 * uses odd ids and the accepting side even ids, so an Abort names one
 * transfer unambiguously when both nodes push to each other.
 *
 * The receiver answers an allocation with a lease id of its own choosing: a
 * random 32-bit tag over the rx slot index. The sender carries it as the
 * transfer id of its AM chunks, so am_dest_cb finds the rx in O(1) and a
 * peer cannot name another peer's transfer by guessing.
 */
#ifndef KVX_NODE_INT_H
#define KVX_NODE_INT_H

#include <kvx/kvx.h>
#include <kvx/node.h>

#include "conn_int.h"
#include "ucx_int.h"

#include <event2/event.h>

#define KVXI_NODE_LEASE_MS_DEFAULT 30000u
#define KVXI_NODE_DEADLINE_MS_DEFAULT 30000u
#define KVXI_NODE_XFER_BLOCKS_MAX (1u << 20)

typedef struct kvxi_rx kvxi_rx_t;

/** Counters of a node (kvx_node_stats(), StatsReply). */
typedef struct kvxi_node_stats {
    uint64_t transfers_ok, transfers_failed;
    uint64_t bytes_sent, bytes_received;
    uint64_t dedupe_hit_blocks;
    uint64_t am_refused;
    uint64_t am_given_up; /**< admitted AM chunks given up (rx_hold.c) */
    uint64_t blocks_verified, checksum_mismatches;
    /** kvx_node_progress() rounds with a timeout: slept in the kernel, or
        polled instead because of the poll window (node.c) */
    uint64_t loop_sleeps, loop_polls;
} kvxi_node_stats_t;

struct kvx_peer {
    struct kvx_node *node;
    struct kvx_peer *next, *prev;
    kvxi_conn_t *conn;      /**< NULL once closed and destroyed */
    kvxi_peer_info_t *info; /**< copy, after established */
    kvxi_ucx_ep_h ep;
    kvx_status_t status; /**< INPROGRESS, OK, or why it failed/closed */
    kvx_transport_t transport;
    int is_client;
    int accepted;           /**< created by the listener: the node frees it */
    uint64_t next_transfer; /**< next transfer id counter */
    uint64_t stats_req;     /**< Stats request we wait for (0: none) */
    kvx_status_t stats_status;   /**< INPROGRESS while waiting */
    kvx_node_stats_t *stats_out; /**< where the reply goes */
    char addr[128];
};

typedef enum kvxi_xfer_state {
    KVXI_XFER_ALLOCATING = 0, /**< AllocateRequest sent */
    KVXI_XFER_RUNNING = 1,    /**< posting layers */
    KVXI_XFER_COMMITTING = 2, /**< Commit sent */
    KVXI_XFER_STOPPING = 3,   /**< failing: posts draining, then flush */
    KVXI_XFER_DONE = 4
} kvxi_xfer_state_t;

/** One post's segments (kept until its callback). */
typedef struct kvxi_xfer_post {
    struct kvx_xfer *xfer;
    kvx_segment_t *segs;
    size_t n_segs;
    uint64_t bytes;
    kvxi_ucx_post_h post;
    struct kvxi_xfer_post *next;
} kvxi_xfer_post_t;

/**
 * xfer_post.c: copies @p n segments into a new post of @p x, starts it on
 * the peer's endpoint (@p dir, AM/RMA @p transfer_id, completion @p cb with
 * the post as its argument) and links it into x->post_list.
 * @return KVX_OK; KVX_ERR_NO_MEMORY; the errors of kvxi_ucx_post().
 */
kvx_status_t kvxi_xfer_post(struct kvx_xfer *x, kvxi_ucx_dir_t dir,
                            const kvx_segment_t *segs, size_t n,
                            uint64_t transfer_id, kvxi_ucx_post_cb_t cb);

/** Unlinks a completed post from its transfer (x->posts drops by one). */
void kvxi_xfer_post_unlink(kvxi_xfer_post_t *p);

struct kvx_xfer {
    struct kvx_node *node;
    struct kvx_peer *peer;        /**< NULL once the peer was torn down */
    struct kvx_xfer *next, *prev; /**< node's list of send transfers */
    kvxi_xfer_state_t state;
    kvx_status_t status;      /**< INPROGRESS, OK or the failure */
    kvx_status_t stop_status; /**< failure to report once stopped */
    uint64_t transfer_id;
    uint64_t request_id;
    uint64_t alloc_req_id, commit_req_id; /**< envelope ids we sent */
    uint64_t abort_ack_req; /**< peer's Abort to answer once quiesced */
    int send_abort;         /**< we stop on our own: tell the receiver */
    int flushing, flushed;
    int released; /**< engine released: free when done */
    uint32_t flags;
    uint32_t n_blocks;
    kvx_block_ref_t *src;          /**< pinned source refs */
    kvx_block_ref_t *dst;          /**< receiver's refs (after the reply) */
    uint8_t *hit;                  /**< 1 per block */
    uint32_t *miss_src, *miss_dst; /**< block ids of the missed blocks */
    uint32_t n_miss, n_hit;
    uint64_t lease;        /**< receiver's wire lease id (AM tag) */
    uint32_t layer_ready;  /**< layers announced */
    uint32_t layer_posted; /**< layers posted */
    unsigned posts;        /**< posts in flight */
    kvxi_xfer_post_t *post_list;
    uint64_t deadline_ns;
    uint64_t t_start, t_end;
    /* Phase timestamps (kvxi_node_now_ns; 0: not reached): the successful
       AllocateReply, every write flushed (Commit about to go out), the
       Commit sent, its CommitAck; post_ns sums time inside the posts. */
    uint64_t t_alloc, t_data, t_commit, t_commit_ack;
    uint64_t post_ns;
    uint64_t bytes_sent;
    uint32_t segments;
    kvx_transport_t transport;
    uint32_t checksum_mismatches; /**< from the CommitAck */
    /* PULL (pull.c): this node reads a request another node published.
       dst holds the holder's refs, src is unused; rx receives the data. */
    int pull;
    kvxi_rx_t *rx;
};

typedef enum kvxi_rx_state {
    KVXI_RX_RESERVED = 0,  /**< waiting for data and Commit */
    KVXI_RX_COMMITTED = 1, /**< blocks READY, pinned for the engine */
    KVXI_RX_FAILED = 2     /**< failed; maybe fenced until quiesced */
} kvxi_rx_state_t;

struct kvxi_rx {
    struct kvx_node *node;
    struct kvx_peer *peer; /**< NULL after the peer was torn down */
    kvxi_rx_t *next, *prev;
    kvxi_rx_state_t state;
    kvx_status_t status;
    uint64_t transfer_id;
    uint64_t request_id;
    uint64_t tag;         /**< wire lease id (0 when every block hit) */
    uint32_t slot;        /**< index in node->rx_slots, or UINT32_MAX */
    kvx_lease_id_t lease; /**< allocator lease, 0 once committed/freed */
    int fenced;           /**< lease aborted, fence not lifted yet */
    int reported;         /**< failure handed to kvx_node_recv() */
    int superseded;       /**< a newer push of the request replaced it */
    int am;               /**< data path AM: count landed bytes */
    uint32_t n_blocks, n_miss;
    kvx_block_ref_t *refs;
    uint8_t *hit;
    uint64_t landed, data_bytes, max_bytes;
    uint32_t am_pending;  /**< AM chunks admitted, not landed: they may still
                               write, so the slot stays and no fence lifts */
    int unfence_deferred; /**< kvxi_rx_unfence() waits for am_pending 0 */
    uint64_t late_deadline_ns; /**< deferred: given up past it (rx_hold.c) */
    int am_failed;
    uint64_t commit_req_id;    /**< Commit waiting for AM bytes (0: none) */
    uint64_t *checksums;       /**< the Commit's, one per missed block */
    uint32_t n_checksums;      /**< 0 (none sent) or n_miss */
    int pull;                  /**< reserved by kvx_node_pull() */
    struct kvx_xfer *pull_x;   /**< PULL: the puller's transfer (or NULL) */
    uint64_t hold_deadline_ns; /**< COMMITTED or FAILED: released or
                                    forgotten past it (rx_hold.c; 0: not
                                    started) */
};

typedef struct kvxi_pub kvxi_pub_t;

struct kvx_node {
    char node_id[KVXI_NAME_MAX + 1];
    kvx_layout_t layout;
    kvx_pool_h pool;
    kvx_alloc_h alloc;
    kvx_plan_h plan; /* reused by every post: no allocation once warm */
    uint8_t *pool_base;
    kvxi_ucx_h ucx;
    kvxi_ucx_mem_h mem;
    struct event_base *base;
    struct event *ucx_ev, *timer_ev, *wake_ev;
    kvxi_listener_t *listener;
    struct kvxi_engine *engine; /**< engine sessions (engine_int.h) or NULL */
    kvxi_conn_identity_t ident;
    kvxi_conn_config_t conn_cfg;
    uint8_t *secret;
    size_t secret_len;
    kvx_transport_t transport;
    uint32_t lease_ms;
    uint32_t hold_ms;       /**< kvx_node_params_t::hold_ms (0: forever) */
    uint32_t late_grace_ms; /**< KVXI_RX_LATE_GRACE_MS (tests shorten it) */
    /* Poll window (params poll_us): activity counts what happened (UCX
     * work, frames in and out); active_ns is when the count last moved. */
    uint64_t poll_ns;
    uint64_t activity, activity_seen, active_ns;
    /** kvx_node_params_t::engine_allow_uids / _gids (engine.c) */
    uint32_t engine_uids[KVX_NODE_ENGINE_ALLOW_MAX];
    uint32_t engine_gids[KVX_NODE_ENGINE_ALLOW_MAX];
    uint32_t n_engine_uids, n_engine_gids;
    int shutting_down;
    struct kvx_peer *peers;
    struct kvx_xfer *xfers;
    kvxi_rx_t *rxs;
    kvxi_rx_t **rx_slots;
    uint32_t n_rx_slots;
    kvxi_rx_t **owner; /**< per block: the rx allowed to write it */
    kvxi_pub_t *pubs;  /**< published requests (pull.c) */
    kvxi_node_stats_t stats;
    uint64_t t_created;
    int test_corrupt; /**< kvxi_xfer_test_corrupt() */
};

/* node.c */
uint64_t kvxi_node_now_ns(void);
void kvxi_node_timer_rearm(struct kvx_node *node);

/* peer.c */
void kvxi_peer_accept(kvxi_listener_t *l, kvxi_conn_t *conn, void *arg);
void kvxi_peer_free(struct kvx_peer *peer);
void kvxi_peer_shutdown(struct kvx_peer *peer);
kvx_status_t kvxi_peer_send(struct kvx_peer *peer, kvxi_envelope_t *env);
/** Sends Error{code, text} answering @p req_id. */
/**
 * Sends an AllocateReply: @p status, and when it is KVX_OK the @p n block
 * references (@p lease names them on the wire, @p hit marks dedupe hits,
 * NULL for none). @p deadline_us 0 leaves the envelope's deadline unset.
 * @return what kvxi_peer_send() returns; KVX_ERR_NO_MEMORY (nothing sent).
 */
kvx_status_t kvxi_peer_send_alloc_reply(struct kvx_peer *peer, uint64_t req_id,
                                        uint64_t deadline_us, uint64_t tid,
                                        kvx_status_t status, uint64_t lease,
                                        const kvx_block_ref_t *refs,
                                        const uint8_t *hit, uint32_t n);

void kvxi_peer_send_error(struct kvx_peer *peer, uint64_t req_id,
                          kvx_status_t code, const char *text);

/* node_stats.c */

/** A StatsReply of this node's counters and the storage it points into. */
typedef struct kvxi_stats_wire {
    Kvx__V1__StatsReply reply;
    kvx_node_stats_t stats;
    Kvx__V1__StatsReply__CountersEntry ents[KVX_NODE_STATS_COUNTERS_MAX];
    Kvx__V1__StatsReply__CountersEntry *ptrs[KVX_NODE_STATS_COUNTERS_MAX];
} kvxi_stats_wire_t;

/** Fills @p w->reply from kvx_node_stats() (answers to peers and engines). */
void kvxi_node_stats_wire(struct kvx_node *node, kvxi_stats_wire_t *w);
void kvxi_node_on_stats(struct kvx_peer *peer, const kvxi_envelope_t *env);
void kvxi_node_on_stats_reply(struct kvx_peer *peer,
                              const kvxi_envelope_t *env);
/** An Error answering our Stats request: returns 1 if it did. */
int kvxi_node_stats_on_error(struct kvx_peer *peer, const kvxi_envelope_t *env);

/* xfer_send.c */
void kvxi_xfer_on_alloc_reply(struct kvx_peer *peer,
                              const kvxi_envelope_t *env);
void kvxi_xfer_on_commit_ack(struct kvx_peer *peer, const kvxi_envelope_t *env);
void kvxi_xfer_free(struct kvx_xfer *x);

/* xfer_stop.c */
void kvxi_xfer_on_abort(struct kvx_peer *peer, const kvxi_envelope_t *env);
void kvxi_xfer_on_error(struct kvx_peer *peer, const kvxi_envelope_t *env);
/** Fails @p x with @p status (stops posts, tells the peer if @p tell). */
void kvxi_xfer_stop(struct kvx_xfer *x, kvx_status_t status, int tell);
void kvxi_xfer_check_deadlines(struct kvx_node *node, uint64_t now,
                               uint64_t *next_p);
/** The peer is going away: its transfers fail with @p status. */
void kvxi_xfer_peer_down(struct kvx_peer *peer, kvx_status_t status);
void kvxi_xfer_detach_peer(struct kvx_peer *peer);

/* pull_hold.c, serving a pull over AM: push the published @p src refs
 * into the puller's reservation described by @p grant (an AllocateReply
 * the puller sent). The transfer frees itself when it ends. */
kvx_status_t kvxi_xfer_serve_pull(struct kvx_peer *peer, uint64_t tid,
                                  uint64_t request_id,
                                  const kvx_block_ref_t *src, uint32_t n,
                                  uint64_t deadline_ns,
                                  const Kvx__V1__AllocateReply *grant);

/* xfer_send.c, also used by the pulls */
void kvxi_xfer_link(struct kvx_node *node, struct kvx_xfer *x);
/** Pins every source ref (READY at its generation). */
kvx_status_t kvxi_xfer_pin_sources(struct kvx_xfer *x);
/** Handles the receiver's AllocateReply for @p x (ALLOCATING). */
void kvxi_xfer_on_reply(struct kvx_peer *peer, struct kvx_xfer *x,
                        const Kvx__V1__AllocateReply *r);
/** The transfer (of either parity) @p tid on @p peer, or NULL. */
struct kvx_xfer *kvxi_xfer_find(struct kvx_peer *peer, uint64_t tid);
void kvxi_xfer_finish(struct kvx_xfer *x, kvx_status_t status);

/* pull.c (puller), pull_hold.c (holder) */
void kvxi_pull_send_abort(struct kvx_peer *peer, uint64_t tid, uint64_t lease,
                          kvx_status_t reason);
void kvxi_pull_on_request(struct kvx_peer *peer, const kvxi_envelope_t *env);
void kvxi_pull_on_grant(struct kvx_peer *peer, const kvxi_envelope_t *env);
void kvxi_pull_on_reply(struct kvx_xfer *x, const kvxi_envelope_t *env);
void kvxi_pull_on_release(struct kvx_peer *peer, const kvxi_envelope_t *env);
/** Ends the pull @p x with @p status (failures only). */
void kvxi_pull_stop(struct kvx_xfer *x, kvx_status_t status);
/** The pull's rx ended (committed or failed). */
void kvxi_pull_rx_done(struct kvx_xfer *x, kvx_status_t status);
void kvxi_pull_check_leases(struct kvx_node *node, uint64_t now,
                            uint64_t *next_p);
void kvxi_pull_peer_down(struct kvx_peer *peer);
/** Whether @p peer holds a read of one of our publications as @p tid. */
int kvxi_pull_is_reader(struct kvx_peer *peer, uint64_t tid);
void kvxi_pull_free_all(struct kvx_node *node);

/* rx_hold.c: committed requests nobody collects within hold_ms are
 * released (@p now 0: only computes the next deadline). */
void kvxi_rx_check_holds(struct kvx_node *node, uint64_t now, uint64_t *next_p);

/** How long a failed rx whose writer is quiesced waits for AM chunks UCX
 *  admitted but never completed before its fence lifts anyway. */
#define KVXI_RX_LATE_GRACE_MS 10000u

/* xfer_recv.c */
void kvxi_rx_link(struct kvx_node *node, kvxi_rx_t *rx);
void kvxi_rx_free(kvxi_rx_t *rx);
/** The live (not collected, not superseded) rx of a request, or NULL. */
kvxi_rx_t *kvxi_rx_by_request(struct kvx_node *node, uint64_t request_id);
/** Reserves @p r's blocks for @p rx (dedupe by key when keys are given). */
kvx_status_t kvxi_rx_reserve(struct kvx_node *node, kvxi_rx_t *rx,
                             const Kvx__V1__AllocateRequest *r);
/** A pull's data is in place: commit the lease locally. */
kvx_status_t kvxi_rx_pull_commit(kvxi_rx_t *rx);
/** Fails a pull's rx; @p quiesced: no read or write can still land. */
void kvxi_rx_pull_fail(kvxi_rx_t *rx, kvx_status_t status, int quiesced);
/** A pull's reads ended after it failed: lift the fence. */
void kvxi_rx_pull_quiesced(kvxi_rx_t *rx);
/** The rx of @p tid on @p peer, or NULL. */
kvxi_rx_t *kvxi_rx_find(struct kvx_peer *peer, uint64_t tid);
void kvxi_rx_on_alloc_request(struct kvx_peer *peer,
                              const kvxi_envelope_t *env);
void kvxi_rx_on_abort(struct kvx_peer *peer, const kvxi_envelope_t *env);
void kvxi_rx_on_abort_ack(struct kvx_peer *peer, const kvxi_envelope_t *env);
void kvxi_rx_expire(struct kvx_node *node);
/** The peer's endpoint is gone: its rx fail and their fences lift. */
void kvxi_rx_peer_down(struct kvx_peer *peer, kvx_status_t status);
void kvxi_rx_free_all(struct kvx_node *node);

/* rx_am.c: the AM callbacks of the node's UCX context (where an AM chunk
 * of @p tag may land; it landed; it was refused). */
void *kvxi_rx_am_dest(uint64_t tag, uint64_t off, uint64_t len, void *arg);
void kvxi_rx_am_done(uint64_t tag, uint64_t off, uint64_t len, uint32_t seq,
                     kvx_status_t status, void *arg);
void kvxi_rx_am_refused(uint64_t tag, uint64_t off, uint64_t len,
                        kvx_status_t reason, void *arg);
/** Gives up on @p rx's admitted AM chunks (node->late_grace_ms passed):
 *  lifts the fence that waited for them; may free @p rx. */
void kvxi_rx_give_up_late(kvxi_rx_t *rx);

/* rx_commit.c */
void kvxi_rx_on_commit(struct kvx_peer *peer, const kvxi_envelope_t *env);
/**
 * Test hook: while @p on, the receiver flips one byte of the first block it
 * verifies before checking the Commit's checksums (so a checksummed push
 * fails with KVX_ERR_CORRUPT). Never set outside tests.
 */
void kvxi_xfer_test_corrupt(struct kvx_node *node, int on);

/** Transfer ids the peer chose (its sends) have the peer's parity. */
static inline int kvxi_tid_is_ours(const struct kvx_peer *peer, uint64_t tid)
{
    return (int)(tid & 1u) == (peer->is_client ? 1 : 0);
}

#endif /* KVX_NODE_INT_H */
