/**
 * @file kvx/alloc.h
 * @brief Block allocator with leases, pins, generations, an LRU of cached
 *        blocks and the prefix index.
 *
 * Block life cycle:
 *
 *     FREE --reserve--> RESERVED --commit--> READY (pinned) --unpin to 0-->
 *       ^                  |                   ^   |   keyed: CACHED (LRU)
 *       |               abort/expire           pin |   unkeyed: FREE
 *       |                  v                   |   v
 *       +---unfence---- FENCED               CACHED --evict--> FREE
 *
 * - RESERVED blocks belong to a lease: a transfer in flight, with a
 *   deadline. Commit makes them READY with one pin (the committer's).
 * - Abort or expiry moves a lease's blocks to FENCED: they are not reused
 *   until the owner lifts the fence (kvx_alloc_lease_unfence), i.e. until no
 *   write from the sender can still land in them.
 * - READY blocks are pinned by their holders; when the last pin drops, a
 *   keyed block becomes CACHED (least recently used end last), an unkeyed one
 *   FREE.
 * - CACHED blocks stay findable by key until evicted: a reservation that
 *   finds no FREE block evicts the least recently used CACHED one.
 * - Every move to FREE increments the block's generation, so references
 *   (block, generation) held past the release fail with
 *   KVX_ERR_STALE_HANDLE.
 *
 * Every operation is O(1) per block (O(log leases) for lease deadlines) and
 * allocates nothing after kvx_alloc_create(). The allocator is not
 * thread-safe: one owner (the node's event loop) drives it.
 */
#ifndef KVX_ALLOC_H
#define KVX_ALLOC_H

#include <kvx/common.h>
#include <kvx/key.h>
#include <kvx/status.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kvx_alloc *kvx_alloc_h;

/** Lease identifier: slot and generation. 0 means "no lease". */
typedef uint64_t kvx_lease_id_t;

typedef enum kvx_block_state {
    KVX_BLOCK_FREE = 0,
    KVX_BLOCK_RESERVED = 1,
    KVX_BLOCK_READY = 2,
    KVX_BLOCK_CACHED = 3,
    KVX_BLOCK_FENCED = 4
} kvx_block_state_t;

/** Bits of kvx_alloc_params_t::field_mask. */
enum kvx_alloc_param_field {
    KVX_ALLOC_PARAM_FIELD_BLOCK_COUNT = 1u << 0, /**< required */
    KVX_ALLOC_PARAM_FIELD_MAX_LEASES = 1u << 1,
    KVX_ALLOC_PARAM_FIELD_CLOCK = 1u << 2
};

/** Most pins one block can hold (pin beyond: KVX_ERR_OVERFLOW): far above
 * any real number of holders, yet reachable by a test. */
#define KVX_ALLOC_PIN_MAX ((1u << 24) - 1)

/** Largest block count an allocator manages. */
#define KVX_ALLOC_BLOCK_COUNT_MAX (1u << 30)

typedef struct kvx_alloc_params {
    uint64_t field_mask;
    uint32_t block_count; /**< blocks managed, 1 .. KVX_ALLOC_BLOCK_COUNT_MAX */
    uint32_t max_leases;  /**< concurrent leases (default and most:
                                block_count, as each lease holds a block) */
    kvx_clock_cb_t clock; /**< deadline clock (default monotonic) */
    void *clock_arg;      /**< passed to @p clock */
} kvx_alloc_params_t;

/** Occupancy counters (a snapshot). */
typedef struct kvx_alloc_attr {
    uint32_t block_count;
    uint32_t n_free, n_reserved, n_ready, n_cached, n_fenced;
    uint32_t n_keys;        /**< keys in the prefix index */
    uint32_t leases_active; /**< leases holding RESERVED blocks */
    uint32_t leases_fenced; /**< leases waiting for their fence */
    uint64_t evictions;     /**< CACHED blocks evicted so far */
    uint64_t expirations;   /**< leases expired so far */
} kvx_alloc_attr_t;

/** One block's state (for tools and tests). */
typedef struct kvx_block_info {
    kvx_block_state_t state;
    uint32_t gen;
    uint32_t pins;
    int keyed;            /**< 1 if the block is in the prefix index */
    kvx_block_key_t key;  /**< valid when keyed */
    kvx_lease_id_t lease; /**< owning lease (RESERVED/FENCED), else 0 */
} kvx_block_info_t;

/** Called by kvx_alloc_expire() for each lease it fences. */
typedef void (*kvx_lease_expired_cb_t)(kvx_lease_id_t lease, void *arg);

/**
 * Creates an allocator with every block FREE at generation 1.
 * @param params  block_count required; max_leases, clock optional.
 * @param alloc_p receives the allocator; written only on success.
 * @return KVX_OK; KVX_ERR_INVALID_PARAM (NULL, missing/zero/too large
 *         block_count, zero max_leases, unknown field bits);
 *         KVX_ERR_NO_MEMORY.
 */
KVX_EXPORT kvx_status_t kvx_alloc_create(const kvx_alloc_params_t *params,
                                         kvx_alloc_h *alloc_p);

/** Frees the allocator. NULL is a no-op. */
KVX_EXPORT void kvx_alloc_destroy(kvx_alloc_h alloc);

/**
 * Reserves @p count blocks under a new lease, all or nothing. Evicts least
 * recently used CACHED blocks when FREE ones run out.
 *
 * @param count       1 .. block_count.
 * @param deadline_ns absolute time (allocator clock) at which the lease
 *                    expires; must be in the future.
 * @param lease_p     receives the lease id.
 * @param refs        receives @p count block references.
 * @return KVX_OK; KVX_ERR_INVALID_PARAM (NULL, count 0 or > block_count);
 *         KVX_ERR_TIMEOUT (deadline not in the future);
 *         KVX_ERR_NO_SPACE (not enough FREE + CACHED blocks, or no lease
 *         slot left; nothing changed).
 */
KVX_EXPORT kvx_status_t kvx_alloc_reserve(kvx_alloc_h alloc, uint32_t count,
                                          uint64_t deadline_ns,
                                          kvx_lease_id_t *lease_p,
                                          kvx_block_ref_t *refs);

/**
 * Allocation with dedupe: for each of @p count keys, a block already in the
 * prefix index is a hit (pinned once for the caller, hit[i] = 1); every
 * other key gets a fresh RESERVED block under one new lease (hit[i] = 0), and
 * remembers its key so that commit puts it into the index. All or nothing.
 *
 * @param keys        @p count block keys of one request, in order.
 * @param deadline_ns lease deadline (ignored when every key hits).
 * @param lease_p     receives the lease id, or 0 when every key hit.
 * @param refs        receives @p count references (hits and reservations).
 * @param hit         receives @p count bytes, 1 for a hit, 0 for a miss.
 * @param n_hits_p    receives the number of hits; may be NULL.
 * @return as kvx_alloc_reserve(); KVX_ERR_OVERFLOW if a hit's pin count is
 *         at its limit. On error nothing changed.
 */
KVX_EXPORT kvx_status_t kvx_alloc_reserve_keyed(
    kvx_alloc_h alloc, const kvx_block_key_t *keys, uint32_t count,
    uint64_t deadline_ns, kvx_lease_id_t *lease_p, kvx_block_ref_t *refs,
    uint8_t *hit, uint32_t *n_hits_p);

/**
 * Commits a lease: its blocks become READY with one pin each (the caller's),
 * and those reserved with a key enter the prefix index (a key that another
 * block took meanwhile is skipped: that block stays unkeyed). The lease id
 * is retired.
 * @return KVX_OK; KVX_ERR_INVALID_PARAM (lease 0);
 *         KVX_ERR_STALE_HANDLE (unknown or retired lease);
 *         KVX_ERR_BAD_STATE (lease fenced: aborted or expired).
 */
KVX_EXPORT kvx_status_t kvx_alloc_lease_commit(kvx_alloc_h alloc,
                                               kvx_lease_id_t lease);

/**
 * Aborts a lease: its blocks become FENCED and stay unusable until
 * kvx_alloc_lease_unfence(). Aborting a fenced lease again is KVX_OK
 * (idempotent).
 * @return KVX_OK; KVX_ERR_INVALID_PARAM; KVX_ERR_STALE_HANDLE.
 */
KVX_EXPORT kvx_status_t kvx_alloc_lease_abort(kvx_alloc_h alloc,
                                              kvx_lease_id_t lease);

/**
 * Lifts the fence of an aborted or expired lease: no write can land any
 * more, so its blocks become FREE (new generation) and the lease is retired.
 * @return KVX_OK; KVX_ERR_INVALID_PARAM; KVX_ERR_STALE_HANDLE;
 *         KVX_ERR_BAD_STATE (lease still active: abort it first).
 */
KVX_EXPORT kvx_status_t kvx_alloc_lease_unfence(kvx_alloc_h alloc,
                                                kvx_lease_id_t lease);

/**
 * Moves an active lease's deadline (renewal).
 * @return KVX_OK; KVX_ERR_INVALID_PARAM; KVX_ERR_STALE_HANDLE;
 *         KVX_ERR_BAD_STATE (lease fenced); KVX_ERR_TIMEOUT (deadline not
 *         in the future).
 */
KVX_EXPORT kvx_status_t kvx_alloc_lease_extend(kvx_alloc_h alloc,
                                               kvx_lease_id_t lease,
                                               uint64_t deadline_ns);

/**
 * Fences every active lease whose deadline has passed (deadline <= now),
 * calling @p cb (may be NULL) for each, so the owner can tell the sender and
 * lift the fence when it may.
 * @param n_p receives the number of leases fenced; may be NULL.
 * @return KVX_OK; KVX_ERR_INVALID_PARAM (NULL alloc).
 */
KVX_EXPORT kvx_status_t kvx_alloc_expire(kvx_alloc_h alloc,
                                         kvx_lease_expired_cb_t cb, void *arg,
                                         uint32_t *n_p);

/**
 * Earliest deadline among active leases (to arm a timer).
 * @return KVX_OK; KVX_ERR_NOT_FOUND (no active lease); KVX_ERR_INVALID_PARAM.
 */
KVX_EXPORT kvx_status_t kvx_alloc_next_deadline(kvx_alloc_h alloc,
                                                uint64_t *deadline_p);

/**
 * Adds a pin to a READY block, or takes a CACHED block off the LRU as READY
 * with one pin.
 * @return KVX_OK; KVX_ERR_INVALID_PARAM; KVX_ERR_OUT_OF_RANGE (block index);
 *         KVX_ERR_STALE_HANDLE (generation differs); KVX_ERR_BAD_STATE
 *         (FREE, RESERVED or FENCED); KVX_ERR_OVERFLOW (pin count limit).
 */
KVX_EXPORT kvx_status_t kvx_alloc_pin(kvx_alloc_h alloc, kvx_block_ref_t ref);

/**
 * Drops one pin of a READY block. At zero pins a keyed block becomes CACHED
 * (most recently used), an unkeyed one FREE with a new generation.
 * @return KVX_OK; KVX_ERR_INVALID_PARAM; KVX_ERR_OUT_OF_RANGE;
 *         KVX_ERR_STALE_HANDLE; KVX_ERR_BAD_STATE (not READY: e.g. a double
 *         release that left it CACHED).
 */
KVX_EXPORT kvx_status_t kvx_alloc_unpin(kvx_alloc_h alloc, kvx_block_ref_t ref);

/**
 * Puts a READY block into the prefix index under @p key.
 * @return KVX_OK; KVX_ERR_INVALID_PARAM; KVX_ERR_OUT_OF_RANGE;
 *         KVX_ERR_STALE_HANDLE; KVX_ERR_BAD_STATE (not READY, or already
 *         keyed); KVX_ERR_EXISTS (another block holds the key).
 */
KVX_EXPORT kvx_status_t kvx_alloc_set_key(kvx_alloc_h alloc,
                                          kvx_block_ref_t ref,
                                          const kvx_block_key_t *key);

/**
 * Longest cached prefix: the number of leading keys of @p keys found in the
 * index (READY or CACHED blocks). Pins nothing and changes no LRU order.
 * @param refs  if not NULL, receives references for the found prefix.
 * @return KVX_OK; KVX_ERR_INVALID_PARAM.
 */
KVX_EXPORT kvx_status_t kvx_alloc_lookup(kvx_alloc_h alloc,
                                         const kvx_block_key_t *keys,
                                         uint32_t count, uint32_t *n_found_p,
                                         kvx_block_ref_t *refs);

/**
 * Reports block @p block's state.
 * @return KVX_OK; KVX_ERR_INVALID_PARAM; KVX_ERR_OUT_OF_RANGE.
 */
KVX_EXPORT kvx_status_t kvx_alloc_block_query(kvx_alloc_h alloc, uint32_t block,
                                              kvx_block_info_t *info);

/**
 * Occupancy snapshot.
 * @return KVX_OK; KVX_ERR_INVALID_PARAM.
 */
KVX_EXPORT kvx_status_t kvx_alloc_query(kvx_alloc_h alloc,
                                        kvx_alloc_attr_t *attr);

/** Name of a block state ("free", "reserved", ...; "?" if unknown). */
KVX_EXPORT const char *kvx_block_state_string(kvx_block_state_t state);

#ifdef __cplusplus
}
#endif

#endif /* KVX_ALLOC_H */
