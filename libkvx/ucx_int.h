/*
 * UCX data path: one UCP context and one worker per instance, endpoints to
 * peers, registered regions, and "posts" that move planner segments between
 * a local region and a peer's region in one of two modes, chosen per
 * endpoint:
 *
 *  - RMA: one-sided ucp_put_nbx (push) / ucp_get_nbx (pull) with the peer's
 *    rkey. Native on shared memory and RDMA (memcpy / wire speed).
 *  - AM:  ucp_am_send_nbx of each segment (split at am_chunk) with a small
 *    header {transfer id, dst offset, length, seq}; the receiver asks its
 *    owner where the bytes may go (am_dest_cb) and receives them straight
 *    into that place. Used where RMA is emulated (TCP: 10-20x slower).
 *
 * Threading: the worker is UCS_THREAD_MODE_SINGLE. Every function of one
 * instance must be called from one thread (the owner's event loop), which
 * waits on kvxi_ucx_event_fd() after kvxi_ucx_arm() returned KVX_OK and
 * calls kvxi_ucx_progress() when it is readable. See docs/transport.md.
 *
 * Callbacks and reentrancy:
 *  - am_dest_cb, am_done_cb and am_refused_cb run inside kvxi_ucx_progress()
 *    (inside UCX's own callbacks). They may record state and call
 *    kvxi_ucx_post(), but must not call kvxi_ucx_progress(),
 *    kvxi_ucx_ep_destroy(), kvxi_ucx_mem_dereg() or kvxi_ucx_destroy().
 *  - Post completion and endpoint error callbacks are deferred: they are
 *    delivered by kvxi_ucx_progress() after UCX returned (or by
 *    kvxi_ucx_ep_destroy() for that endpoint's posts), never from inside
 *    kvxi_ucx_post(). They may call anything except kvxi_ucx_destroy().
 */
#ifndef KVX_UCX_INT_H
#define KVX_UCX_INT_H

#include <kvx/common.h>
#include <kvx/node.h>
#include <kvx/plan.h>
#include <kvx/status.h>

typedef struct kvxi_ucx *kvxi_ucx_h;
typedef struct kvxi_ucx_mem *kvxi_ucx_mem_h;
typedef struct kvxi_ucx_ep *kvxi_ucx_ep_h;
typedef struct kvxi_ucx_post *kvxi_ucx_post_h;

/** How an endpoint moves data. */
typedef enum kvxi_ucx_mode {
    KVXI_UCX_MODE_AUTO = 0, /**< policy only: RMA where native, else AM */
    KVXI_UCX_MODE_RMA = 1,  /**< one-sided put/get with the peer's rkey */
    KVXI_UCX_MODE_AM = 2    /**< active messages received in place */
} kvxi_ucx_mode_t;

/** Direction of a post, seen from the local side. */
typedef enum kvxi_ucx_dir {
    KVXI_UCX_PUSH = 0, /**< local region -> peer region (src local) */
    KVXI_UCX_PULL = 1  /**< peer region -> local region (dst local) */
} kvxi_ucx_dir_t;

/* ---- callbacks (arg last; see the reentrancy rules above) ---- */

/**
 * Where may an incoming AM chunk of @p len bytes for @p transfer_id at
 * destination offset @p dst_off be written? Returns the address to receive
 * into (@p len bytes must be writable there) or NULL to refuse: the chunk is
 * dropped, counted and reported through am_refused_cb. This is the only
 * check between a peer and local memory: only return addresses the peer is
 * allowed to write (e.g. blocks reserved for that transfer).
 */
typedef void *(*kvxi_ucx_am_dest_cb_t)(uint64_t transfer_id, uint64_t dst_off,
                                       uint64_t len, void *arg);

/**
 * An accepted AM chunk has landed (KVX_OK: its bytes are in place) or its
 * rendezvous receive failed (error: the bytes are undefined). @p seq is the
 * chunk's number within its post (0, 1, ...).
 */
typedef void (*kvxi_ucx_am_done_cb_t)(uint64_t transfer_id, uint64_t dst_off,
                                      uint64_t len, uint32_t seq,
                                      kvx_status_t status, void *arg);

/**
 * An incoming AM chunk was dropped: @p reason is KVX_ERR_PROTO_MALFORMED
 * (bad header or length; the ids may be garbage) or KVX_ERR_OUT_OF_RANGE
 * (am_dest_cb refused it, or no am_dest_cb is installed).
 */
typedef void (*kvxi_ucx_am_refused_cb_t)(uint64_t transfer_id, uint64_t dst_off,
                                         uint64_t len, kvx_status_t reason,
                                         void *arg);

/** The endpoint failed (KVX_ERR_PEER_DOWN or another peer error). Once. */
typedef void (*kvxi_ucx_ep_error_cb_t)(kvxi_ucx_ep_h ep, kvx_status_t status,
                                       void *arg);

/** A post finished: exactly once per successful kvxi_ucx_post(). */
typedef void (*kvxi_ucx_post_cb_t)(kvx_status_t status, void *arg);

/* ---- instance ---- */

/** Bits of kvxi_ucx_params_t::field_mask. */
enum kvxi_ucx_param_field {
    KVXI_UCX_PARAM_FIELD_TLS = 1u << 0,      /**< transport list */
    KVXI_UCX_PARAM_FIELD_AM_CB = 1u << 1,    /**< the three AM callbacks */
    KVXI_UCX_PARAM_FIELD_CB_ARG = 1u << 2,   /**< arg of the AM callbacks */
    KVXI_UCX_PARAM_FIELD_WINDOW = 1u << 3,   /**< ops in flight per post */
    KVXI_UCX_PARAM_FIELD_AM_CHUNK = 1u << 4, /**< largest AM payload */
    KVXI_UCX_PARAM_FIELD_CLOSE_MS = 1u << 5  /**< ep close time limit */
};

/** Most operations one post keeps in flight. */
#define KVXI_UCX_WINDOW_MAX 256u
#define KVXI_UCX_WINDOW_DEFAULT 128u
/** Default and smallest AM chunk: segments above it are split. */
#define KVXI_UCX_AM_CHUNK_DEFAULT KVX_NODE_AM_CHUNK_DEFAULT
#define KVXI_UCX_AM_CHUNK_MIN KVX_NODE_AM_CHUNK_MIN
#define KVXI_UCX_CLOSE_MS_DEFAULT 2000u
/** AM chunks up to this size are sent eagerly (UCP_AM_SEND_FLAG_EAGER):
 *  UCX would use rendezvous above a few KiB over tcp, one round trip per
 *  chunk; a layer-wise push sends one chunk per (block, layer). Measured
 *  in docs/performance.md (tuning guide). */
#define KVXI_UCX_AM_EAGER_MAX (256ull << 10)

typedef struct kvxi_ucx_params {
    uint64_t field_mask;
    /** TLS: UCX transport list as in UCX_TLS ("tcp", "posix,sysv,cma,self",
        "^ib"); default: the UCX_TLS environment / UCX's own default. */
    const char *tls;
    /** AM_CB: receive side of AM mode. Without am_dest_cb every incoming
        chunk is refused. done/refused may be NULL. */
    kvxi_ucx_am_dest_cb_t am_dest_cb;
    kvxi_ucx_am_done_cb_t am_done_cb;
    kvxi_ucx_am_refused_cb_t am_refused_cb;
    void *cb_arg;      /**< CB_ARG: passed to the three AM callbacks */
    uint32_t window;   /**< WINDOW: 1 .. KVXI_UCX_WINDOW_MAX (128) */
    uint64_t am_chunk; /**< AM_CHUNK: >= KVXI_UCX_AM_CHUNK_MIN (4 KiB) */
    uint32_t close_ms; /**< CLOSE_MS: ep_destroy waits at most this */
} kvxi_ucx_params_t;

/** Counters of one instance (monotonic since create). */
typedef struct kvxi_ucx_stats {
    uint64_t posts_ok, posts_failed;    /**< completed posts by outcome */
    uint64_t put_bytes, get_bytes;      /**< RMA bytes issued */
    uint64_t am_tx_chunks, am_tx_bytes; /**< AM messages, payload bytes */
    uint64_t am_tx_gathers;             /**< of the messages, gathered ones */
    uint64_t am_rx_gathers;             /**< gathered messages received */
    uint64_t am_rx_eager, am_rx_rndv;   /**< accepted chunks by protocol */
    uint64_t am_rx_bytes;               /**< bytes landed (done, KVX_OK) */
    uint64_t am_rx_refused;             /**< dropped: am_dest_cb said no */
    uint64_t am_rx_malformed;           /**< dropped: bad header/length */
    uint64_t am_rx_failed;              /**< rendezvous receive failed */
    uint64_t eps_closing; /**< destroyed endpoints still closing (gauge) */
    uint64_t eps_stuck;   /**< closes given up on: operations still in UCX
                               after close_ms (gauge; freed at destroy) */
} kvxi_ucx_stats_t;

/**
 * Creates one UCP context (RMA | AM | WAKEUP) and one single-threaded
 * worker, installs the AM receive handler.
 * @param params  see kvxi_ucx_params_t; NULL means all defaults.
 * @param ucx_p   receives the instance; written only on success.
 * @return KVX_OK; KVX_ERR_INVALID_PARAM (NULL ucx_p, unknown mask bits,
 *         window or am_chunk out of range, NULL tls with the TLS bit);
 *         KVX_ERR_NO_MEMORY; KVX_ERR_NOT_SUPPORTED or KVX_ERR_IO (UCX could
 *         not read its config or create the context/worker: see the log).
 */
kvx_status_t kvxi_ucx_create(const kvxi_ucx_params_t *params,
                             kvxi_ucx_h *ucx_p);

/**
 * Destroys endpoints still open (with a warning; their posts complete with
 * KVX_ERR_ABORTED), deregisters regions still registered, then the worker
 * and the context. No callback runs after it returns. NULL is a no-op.
 * Must not be called from any callback.
 */
void kvxi_ucx_destroy(kvxi_ucx_h ucx);

/**
 * The worker's event fd (owned by UCX, valid until destroy; do not close).
 * @return KVX_OK; KVX_ERR_INVALID_PARAM; KVX_ERR_NOT_SUPPORTED.
 */
kvx_status_t kvxi_ucx_event_fd(kvxi_ucx_h ucx, int *fd_p);

/**
 * Arms the event fd before the owner sleeps on it. Call it only after
 * kvxi_ucx_progress() returned 0.
 * @return KVX_OK (armed: sleep until the fd is readable);
 *         KVX_INPROGRESS (events are pending: progress again, don't sleep);
 *         another error from UCX (translated).
 */
kvx_status_t kvxi_ucx_arm(kvxi_ucx_h ucx);

/**
 * Progresses the worker once, issues more operations of open posts and
 * delivers deferred callbacks. Returns how many events it handled (0: idle,
 * time to arm). Never blocks.
 */
unsigned kvxi_ucx_progress(kvxi_ucx_h ucx);

/**
 * The worker's address for the peer's kvxi_ucx_ep_create(). The bytes are
 * owned by the instance and valid until kvxi_ucx_destroy(); copy them.
 * @return KVX_OK; KVX_ERR_INVALID_PARAM.
 */
kvx_status_t kvxi_ucx_worker_address(kvxi_ucx_h ucx, const void **buf_p,
                                     size_t *len_p);

/** Copies the counters into @p stats. Both non-NULL. */
void kvxi_ucx_stats_get(kvxi_ucx_h ucx, kvxi_ucx_stats_t *stats);

/**
 * A stable id of this host for this boot: FNV-1a of
 * /proc/sys/kernel/random/boot_id and the hostname (containers on one
 * kernel with their own hostnames differ). Never 0. Peers exchange it so
 * kvxi_ucx_ep_create() knows whether shared memory can reach the peer.
 */
uint64_t kvxi_ucx_host_id(void);

/** "auto", "rma", "am" ("?" otherwise). */
const char *kvxi_ucx_mode_string(kvxi_ucx_mode_t mode);

/* ---- memory ---- */

/**
 * Registers [base, base + len) for RMA and packs its rkey.
 * @return KVX_OK; KVX_ERR_INVALID_PARAM (NULL, zero len);
 *         KVX_ERR_NOT_SUPPORTED (mem_type other than KVX_MEM_HOST);
 *         KVX_ERR_NO_MEMORY; KVX_ERR_IO (ucp_mem_map/ucp_rkey_pack failed).
 */
kvx_status_t kvxi_ucx_mem_reg(kvxi_ucx_h ucx, void *base, size_t len,
                              kvx_mem_type_t mem_type, kvxi_ucx_mem_h *mem_p);

/**
 * Deregisters. NULL is a no-op (KVX_OK).
 * @return KVX_OK; KVX_ERR_BAD_STATE (a post still uses it: nothing done).
 */
kvx_status_t kvxi_ucx_mem_dereg(kvxi_ucx_mem_h mem);

/**
 * The packed rkey to send to peers. Owned by @p mem, valid until dereg.
 * @return KVX_OK; KVX_ERR_INVALID_PARAM.
 */
kvx_status_t kvxi_ucx_mem_rkey(kvxi_ucx_mem_h mem, const void **buf_p,
                               size_t *len_p);

/* ---- endpoints ---- */

/** Bits of kvxi_ucx_ep_params_t::field_mask. */
enum kvxi_ucx_ep_field {
    KVXI_UCX_EP_FIELD_ADDRESS = 1u << 0, /**< required */
    KVXI_UCX_EP_FIELD_RKEY = 1u << 1,    /**< peer's packed rkey */
    KVXI_UCX_EP_FIELD_REGION = 1u << 2,  /**< peer_base, peer_len */
    KVXI_UCX_EP_FIELD_MODE = 1u << 3,    /**< default AUTO */
    KVXI_UCX_EP_FIELD_HOST_ID = 1u << 4, /**< peer's kvxi_ucx_host_id() */
    KVXI_UCX_EP_FIELD_FLAGS = 1u << 5,
    KVXI_UCX_EP_FIELD_ERROR_CB = 1u << 6
};

/** Values of kvxi_ucx_ep_params_t::flags. */
enum kvxi_ucx_ep_flag {
    /** Both sides have RDMA devices (the owner learnt it from discovery
        and the handshake): AUTO may choose RMA across hosts. */
    KVXI_UCX_EP_FLAG_PEER_RDMA = 1u << 0,
    /** UCP_ERR_HANDLING_MODE_PEER: peer failures become errors instead of
        hangs, but UCX 1.13 then excludes shared-memory transports. */
    KVXI_UCX_EP_FLAG_ERR_PEER = 1u << 1
};

typedef struct kvxi_ucx_ep_params {
    uint64_t field_mask;
    const void *address; /**< ADDRESS: peer's worker address bytes */
    size_t address_len;
    const void *rkey; /**< RKEY: peer's packed rkey (RMA mode needs it) */
    size_t rkey_len;
    uint64_t peer_base;   /**< REGION: peer's region address ... */
    uint64_t peer_len;    /**< ... and length: remote offsets are checked
                               against it (RMA needs it, AM uses it if set) */
    kvxi_ucx_mode_t mode; /**< MODE: AUTO, or force RMA / AM */
    uint64_t peer_host_id;
    uint32_t flags; /**< FLAGS: kvxi_ucx_ep_flag bits */
    kvxi_ucx_ep_error_cb_t error_cb;
    void *error_arg;
} kvxi_ucx_ep_params_t;

/**
 * Creates an endpoint to a peer worker and chooses its mode: RMA when
 * forced, or under AUTO when the peer has an rkey and region and either
 * (same host id and this context has shared-memory transports) or
 * (KVXI_UCX_EP_FLAG_PEER_RDMA and this context has RDMA transports) and
 * UCX did not put the endpoint's RMA on TCP; AM otherwise. The choice is
 * logged at info level and returned by kvxi_ucx_ep_mode().
 * @return KVX_OK; KVX_ERR_INVALID_PARAM (NULL, missing address, unknown
 *         bits, RMA forced without rkey and region, rkey or address
 *         refused by UCX); KVX_ERR_PEER_UNREACHABLE; KVX_ERR_NO_MEMORY;
 *         other translated UCX errors.
 */
kvx_status_t kvxi_ucx_ep_create(kvxi_ucx_h ucx,
                                const kvxi_ucx_ep_params_t *params,
                                kvxi_ucx_ep_h *ep_p);

/**
 * Closes the endpoint; the handle is invalid on return. Its unfinished
 * posts complete — their callbacks run before this returns — with the
 * endpoint's error or KVX_ERR_ABORTED.
 *  - Idle endpoint: a flushing close starts and finishes in the background
 *    (kvxi_ucx_progress() reaps it; the peer must answer). Never blocks.
 *  - Operations in flight, or the endpoint failed: the close is forced and
 *    this waits (progressing the worker) until UCX has released the
 *    operations — local buffers are then no longer read or written — but
 *    at most close_ms. Past that (a hung peer), the endpoint is counted in
 *    kvxi_ucx_stats_t::eps_stuck and its remains are freed by
 *    kvxi_ucx_destroy(); the callbacks still ran, so treat the blocks as
 *    fenced until the peer is declared dead.
 * NULL is a no-op. Not from AM callbacks.
 */
void kvxi_ucx_ep_destroy(kvxi_ucx_ep_h ep);

/** The chosen mode (RMA or AM); KVXI_UCX_MODE_AUTO for NULL. */
kvxi_ucx_mode_t kvxi_ucx_ep_mode(kvxi_ucx_ep_h ep);

/** Why the mode was chosen; the transport of the RMA lane ("cma", "tcp",
    "" when unknown). Static/owned strings valid until ep destroy. */
typedef struct kvxi_ucx_ep_attr {
    kvxi_ucx_mode_t mode;
    const char *reason;
    const char *rma_tl;
    kvx_status_t status; /**< KVX_OK, or the error that failed the ep */
} kvxi_ucx_ep_attr_t;

/** @return KVX_OK; KVX_ERR_INVALID_PARAM. */
kvx_status_t kvxi_ucx_ep_query(kvxi_ucx_ep_h ep, kvxi_ucx_ep_attr_t *attr);

/* ---- posts ---- */

typedef struct kvxi_ucx_post_params {
    kvxi_ucx_dir_t dir;
    kvxi_ucx_mem_h mem; /**< local region (src of a push, dst of a pull) */
    /** Segments: offsets into the local region and the peer region; the
        array must stay valid until the completion callback. */
    const kvx_segment_t *segs;
    size_t n_segs;
    uint64_t transfer_id;  /**< carried in AM headers (am_dest_cb) */
    kvxi_ucx_post_cb_t cb; /**< required */
    void *arg;
} kvxi_ucx_post_params_t;

/**
 * Starts moving @p params->segs. Keeps up to `window` operations in flight;
 * a push ends with an endpoint flush, so KVX_OK in the callback means every
 * byte is remotely complete (RMA: visible in the peer's memory; AM: the
 * receiver's transport has it, and its am_done_cb counts it landed — the
 * receiver must count bytes before acting on a commit, docs/transport.md).
 * Zero segments are allowed (a push then only flushes).
 *
 * @param post_p  receives a handle for kvxi_ucx_cancel() (may be NULL),
 *                valid until the callback returns.
 * @return KVX_OK (the callback will run exactly once, later);
 *         KVX_ERR_INVALID_PARAM (NULL, no cb, mem of another instance);
 *         KVX_ERR_OUT_OF_RANGE (a segment outside the local region or the
 *         peer region: nothing was sent); KVX_ERR_NOT_SUPPORTED (pull on an
 *         AM endpoint: ask the holder to push); the endpoint's error
 *         (KVX_ERR_PEER_DOWN ...); KVX_ERR_NO_MEMORY. On error no callback.
 */
kvx_status_t kvxi_ucx_post(kvxi_ucx_ep_h ep,
                           const kvxi_ucx_post_params_t *params,
                           kvxi_ucx_post_h *post_p);

/**
 * Stops issuing the post's remaining operations; the callback then runs
 * with KVX_ERR_ABORTED once operations already in flight finish (they are
 * not recalled: destroy the endpoint to cut them off).
 * @return KVX_OK; KVX_ERR_INVALID_PARAM (NULL);
 *         KVX_ERR_BAD_STATE (already finished, callback pending).
 */
kvx_status_t kvxi_ucx_cancel(kvxi_ucx_post_h post);

#endif /* KVX_UCX_INT_H */
