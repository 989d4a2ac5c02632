/*
 * Prefix index: 128-bit block key -> block id.
 *
 * A fixed-capacity hash table (open addressing, linear probing, backward-shift
 * deletion, so no tombstones and probe lengths never degrade with churn). The
 * capacity is a power of two chosen at create time; nothing is allocated
 * afterwards. One slot always stays empty so that every probe ends: the index
 * holds at most capacity - 1 keys. The allocator sizes it at >= 2x its block
 * count, so the load factor stays <= 1/2.
 *
 * Keys are mixed (both 64-bit halves through a 64-bit finaliser) before
 * probing: engine-supplied keys may be counters or share bytes, and must
 * still spread over the table.
 *
 * Not thread-safe; owned by one allocator.
 */
#ifndef KVX_PREFIX_INT_H
#define KVX_PREFIX_INT_H

#include <kvx/key.h>
#include <kvx/status.h>

typedef struct kvxi_prefix kvxi_prefix_t;

/** Largest capacity accepted by kvxi_prefix_create(). */
#define KVXI_PREFIX_CAPACITY_MAX (1u << 31)

/**
 * Creates an empty index with @p capacity slots.
 * @param capacity  a power of two, 2 .. KVXI_PREFIX_CAPACITY_MAX.
 * @param prefix_p  receives the index; written only on success.
 * @return KVX_OK; KVX_ERR_INVALID_PARAM (NULL, capacity not a power of two
 *         or out of range); KVX_ERR_NO_MEMORY.
 */
kvx_status_t kvxi_prefix_create(uint32_t capacity, kvxi_prefix_t **prefix_p);

/** Frees the index. NULL is a no-op. */
void kvxi_prefix_destroy(kvxi_prefix_t *prefix);

/**
 * Adds @p key -> @p value.
 * @param value  any value but UINT32_MAX.
 * @return KVX_OK; KVX_ERR_INVALID_PARAM (NULL, value UINT32_MAX);
 *         KVX_ERR_EXISTS (key present: unchanged); KVX_ERR_NO_SPACE (the
 *         index holds capacity - 1 keys).
 */
kvx_status_t kvxi_prefix_insert(kvxi_prefix_t *prefix,
                                const kvx_block_key_t *key, uint32_t value);

/**
 * Removes @p key.
 * @param value_p  receives the removed value; may be NULL.
 * @return KVX_OK; KVX_ERR_INVALID_PARAM; KVX_ERR_NOT_FOUND.
 */
kvx_status_t kvxi_prefix_remove(kvxi_prefix_t *prefix,
                                const kvx_block_key_t *key, uint32_t *value_p);

/**
 * Looks @p key up.
 * @param value_p  receives the value; may be NULL (membership test).
 * @return KVX_OK; KVX_ERR_INVALID_PARAM; KVX_ERR_NOT_FOUND.
 */
kvx_status_t kvxi_prefix_find(const kvxi_prefix_t *prefix,
                              const kvx_block_key_t *key, uint32_t *value_p);

/** Number of keys in the index (0 for NULL). */
uint32_t kvxi_prefix_count(const kvxi_prefix_t *prefix);

/** Number of slots (0 for NULL). */
uint32_t kvxi_prefix_capacity(const kvxi_prefix_t *prefix);

/**
 * Longest distance of any key from its home slot, in slots (an O(capacity)
 * scan, for tests and diagnostics: it shows how well the keys are mixed).
 */
uint32_t kvxi_prefix_max_probe(const kvxi_prefix_t *prefix);

#endif /* KVX_PREFIX_INT_H */
