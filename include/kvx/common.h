/**
 * @file kvx/common.h
 * @brief Definitions shared by every libkvx header: export marker, memory
 *        types, the block reference and the monotonic clock callback.
 */
#ifndef KVX_COMMON_H
#define KVX_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Marks a symbol as part of the public ABI (the rest is hidden). */
#if defined(__GNUC__)
#define KVX_EXPORT __attribute__((visibility("default")))
#else
#define KVX_EXPORT
#endif

/**
 * Where a region's memory lives. Every descriptor carries it so that GPU
 * memory can later travel through the same API; only KVX_MEM_HOST is
 * implemented today (other values return KVX_ERR_NOT_SUPPORTED).
 */
typedef enum kvx_mem_type {
    KVX_MEM_HOST = 0, /**< ordinary (shareable) host memory */
    KVX_MEM_CUDA = 1  /**< device memory, reserved for the GPU data path */
} kvx_mem_type_t;

/**
 * A reference to one pool block at one generation. The generation changes
 * every time the block is reused, so a reference kept past the block's
 * release is detected as stale (KVX_ERR_STALE_HANDLE) instead of reaching
 * somebody else's KV data.
 */
typedef struct kvx_block_ref {
    uint32_t block; /**< block index in the pool, 0 .. block_count-1 */
    uint32_t gen;   /**< generation the reference was issued at */
} kvx_block_ref_t;

/**
 * Monotonic clock in nanoseconds. Components that enforce deadlines take one
 * so tests can drive time by hand; NULL selects CLOCK_MONOTONIC.
 */
typedef uint64_t (*kvx_clock_cb_t)(void *arg);

/** Reads CLOCK_MONOTONIC in nanoseconds (the default clock). */
KVX_EXPORT uint64_t kvx_clock_monotonic_ns(void *arg);

#ifdef __cplusplus
}
#endif

#endif /* KVX_COMMON_H */
