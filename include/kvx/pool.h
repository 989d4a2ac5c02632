/**
 * @file kvx/pool.h
 * @brief The KV pool: one shareable memory region cut into fixed-size blocks.
 *
 * The pool is backed by a memfd so it can be handed to engine processes over
 * a unix socket (SCM_RIGHTS) and mapped there: engine and daemon then see the
 * same bytes without a copy. The mapping is page-aligned; huge pages are used
 * when the system has them reserved, with a silent fallback to normal pages.
 * The pool only owns memory; which block is in use is the allocator's job.
 */
#ifndef KVX_POOL_H
#define KVX_POOL_H

#include <kvx/common.h>
#include <kvx/status.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kvx_pool *kvx_pool_h;

/** Bits of kvx_pool_params_t::field_mask. */
enum kvx_pool_param_field {
    KVX_POOL_PARAM_FIELD_BLOCK_SIZE = 1u << 0,  /**< required */
    KVX_POOL_PARAM_FIELD_BLOCK_COUNT = 1u << 1, /**< required */
    KVX_POOL_PARAM_FIELD_NAME = 1u << 2,
    KVX_POOL_PARAM_FIELD_FLAGS = 1u << 3
};

/** Values for kvx_pool_params_t::flags. */
enum kvx_pool_flag {
    KVX_POOL_FLAG_NO_HUGE_PAGES = 1u << 0, /**< never try huge pages */
    /**
     * Commit every page at creation (kvx_pool_populate()) instead of on
     * first write: a transfer into a fresh pool then does not pay one page
     * fault per 4 KiB on the data path. Costs the whole pool's memory at
     * once.
     */
    KVX_POOL_FLAG_POPULATE = 1u << 1
};

/** Limits checked by kvx_pool_create(). */
#define KVX_POOL_BLOCK_SIZE_MAX (1ull << 30) /**< 1 GiB per block */
#define KVX_POOL_BLOCK_COUNT_MAX (1u << 30)
#define KVX_POOL_BYTES_MAX (1ull << 44) /**< 16 TiB per pool */

typedef struct kvx_pool_params {
    uint64_t field_mask; /**< which fields below are set */
    size_t block_size;   /**< bytes per block, 1 .. KVX_POOL_BLOCK_SIZE_MAX;
                              rounded up to a multiple of 64 */
    uint32_t
        block_count;  /**< number of blocks, 1 .. KVX_POOL_BLOCK_COUNT_MAX */
    const char *name; /**< memfd name, for /proc (default "kvx-pool") */
    uint32_t flags;   /**< kvx_pool_flag bits (default 0) */
} kvx_pool_params_t;

typedef struct kvx_pool_attr {
    void *base;              /**< first byte of block 0 (page-aligned) */
    size_t length;           /**< bytes mapped (>= block_size * block_count) */
    size_t block_size;       /**< bytes per block after rounding */
    uint32_t block_count;    /**< number of blocks */
    int fd;                  /**< the memfd, owned by the pool (do not close) */
    int huge_pages;          /**< 1 if backed by hugetlb pages */
    kvx_mem_type_t mem_type; /**< always KVX_MEM_HOST today */
} kvx_pool_attr_t;

/**
 * Creates a pool and maps it.
 *
 * @param params  block size and count (required), name, flags.
 * @param pool_p  receives the pool; written only on success.
 * @return KVX_OK;
 *         KVX_ERR_INVALID_PARAM (NULL, missing required field, zero size or
 *         count, unknown flag, size or count above its limit);
 *         KVX_ERR_OVERFLOW (block_size * block_count above KVX_POOL_BYTES_MAX);
 *         KVX_ERR_NO_MEMORY; KVX_ERR_IO (memfd/ftruncate/mmap failed).
 */
KVX_EXPORT kvx_status_t kvx_pool_create(const kvx_pool_params_t *params,
                                        kvx_pool_h *pool_p);

/** Unmaps and closes the pool. NULL is a no-op. */
KVX_EXPORT void kvx_pool_destroy(kvx_pool_h pool);

/**
 * Fills @p attr with the pool's geometry and backing.
 * @return KVX_OK; KVX_ERR_INVALID_PARAM if either pointer is NULL.
 */
KVX_EXPORT kvx_status_t kvx_pool_query(kvx_pool_h pool, kvx_pool_attr_t *attr);

/**
 * Commits every page of the pool now, writable, so that later writes (a
 * transfer landing in a block) take no page fault. Uses
 * madvise(MADV_POPULATE_WRITE) and, on kernels without it (before 5.14),
 * rewrites one byte per page with its own value. Safe to call again
 * (committed pages cost nothing); call it before engines write to the pool,
 * since the fallback's read-then-write could undo a concurrent write.
 *
 * @return KVX_OK; KVX_ERR_INVALID_PARAM if @p pool is NULL;
 *         KVX_ERR_NO_MEMORY when the memory cannot be committed (the pool
 *         stays usable, lazily; without MADV_POPULATE_WRITE a shortage
 *         is a SIGBUS or the OOM killer instead).
 */
KVX_EXPORT kvx_status_t kvx_pool_populate(kvx_pool_h pool);

/**
 * Address of block @p block, or NULL when @p pool is NULL or the index is out
 * of range. The address is valid until kvx_pool_destroy().
 */
KVX_EXPORT void *kvx_pool_block_addr(kvx_pool_h pool, uint32_t block);

#ifdef __cplusplus
}
#endif

#endif /* KVX_POOL_H */
