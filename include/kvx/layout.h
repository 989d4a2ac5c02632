/**
 * @file kvx/layout.h
 * @brief How a region arranges KV data: (block, layer, K|V, token, head) to
 *        a byte offset.
 *
 * A layout names the model shape (layers, K+V or a single MLA latent,
 * kv heads, head_dim, dtype size), the paging (block_tokens, num_blocks),
 * the tensor-parallel slice this region holds (heads [head_start,
 * head_start + kv_heads) of total_heads) and the arrangement:
 *
 *  - KVX_LAYOUT_BLOCK_MAJOR: [block][layer][part][chunk] — a block holds all
 *    its layers contiguously (the pool's default: one block = one transfer
 *    unit).
 *  - KVX_LAYOUT_LAYER_MAJOR: [layer][part][block][chunk] — one array of
 *    blocks per layer and part, as vLLM's flash-attention tensors
 *    (2, num_blocks, block_size, heads, head_dim) per layer, laid end to end.
 *
 * Inside a (block, layer, part) chunk the elements are
 *  - KVX_LAYOUT_NHD: [token][head][head_dim], or
 *  - KVX_LAYOUT_HND: [head][token][head_dim].
 *
 * All offsets are in bytes from the region's base.
 */
#ifndef KVX_LAYOUT_H
#define KVX_LAYOUT_H

#include <kvx/common.h>
#include <kvx/status.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum kvx_layout_order {
    KVX_LAYOUT_BLOCK_MAJOR = 0,
    KVX_LAYOUT_LAYER_MAJOR = 1
} kvx_layout_order_t;

typedef enum kvx_layout_token_order {
    KVX_LAYOUT_NHD = 0, /**< [token][head][dim] */
    KVX_LAYOUT_HND = 1  /**< [head][token][dim] */
} kvx_layout_token_order_t;

/** Bits of kvx_layout_params_t::field_mask. */
enum kvx_layout_param_field {
    KVX_LAYOUT_PARAM_FIELD_NUM_LAYERS = 1u << 0,   /**< required */
    KVX_LAYOUT_PARAM_FIELD_KV_PARTS = 1u << 1,     /**< default 2 (K+V) */
    KVX_LAYOUT_PARAM_FIELD_BLOCK_TOKENS = 1u << 2, /**< required */
    KVX_LAYOUT_PARAM_FIELD_KV_HEADS = 1u << 3,     /**< required */
    KVX_LAYOUT_PARAM_FIELD_HEAD_DIM = 1u << 4,     /**< required */
    KVX_LAYOUT_PARAM_FIELD_DTYPE_SIZE = 1u << 5,   /**< required */
    KVX_LAYOUT_PARAM_FIELD_NUM_BLOCKS = 1u << 6,   /**< required */
    KVX_LAYOUT_PARAM_FIELD_ORDER = 1u << 7,        /**< default block-major */
    KVX_LAYOUT_PARAM_FIELD_TOKEN_ORDER = 1u << 8,  /**< default NHD */
    KVX_LAYOUT_PARAM_FIELD_HEAD_SLICE = 1u << 9,   /**< default: all heads */
    KVX_LAYOUT_PARAM_FIELD_MODEL_ID = 1u << 10     /**< default 0 */
};

/** Bounds checked by kvx_layout_init(). */
#define KVX_LAYOUT_DIM_MAX (1u << 20)     /**< any single count or size */
#define KVX_LAYOUT_BYTES_MAX (1ull << 48) /**< whole region */

typedef struct kvx_layout_params {
    uint64_t field_mask;
    uint32_t num_layers;   /**< transformer layers */
    uint32_t kv_parts;     /**< 2 = separate K and V, 1 = one latent (MLA) */
    uint32_t block_tokens; /**< tokens per block (page) */
    uint32_t kv_heads;     /**< heads held by this region */
    uint32_t head_dim;     /**< elements per head */
    uint32_t dtype_size;   /**< bytes per element (2 = bf16/fp16) */
    uint32_t num_blocks;   /**< blocks in the region */
    kvx_layout_order_t order;
    kvx_layout_token_order_t token_order;
    uint32_t total_heads; /**< HEAD_SLICE: kv heads of the whole model */
    uint32_t head_start;  /**< HEAD_SLICE: first head held here */
    uint64_t model_id;    /**< engine-chosen id of the weights (e.g. a hash
                               of name and revision); part of the
                               compatibility hash */
} kvx_layout_params_t;

/**
 * A validated layout. A plain value filled by kvx_layout_init(); read its
 * fields, do not write them.
 */
typedef struct kvx_layout {
    uint32_t num_layers, kv_parts, block_tokens, kv_heads, head_dim;
    uint32_t dtype_size, num_blocks, total_heads, head_start;
    kvx_layout_order_t order;
    kvx_layout_token_order_t token_order;
    uint64_t model_id;
    /* Derived, in bytes. */
    uint64_t head_bytes;   /**< head_dim * dtype_size */
    uint64_t chunk_bytes;  /**< one (block, layer, part): tokens*heads*head */
    uint64_t block_bytes;  /**< one block, all layers and parts */
    uint64_t region_bytes; /**< the whole region */
    uint64_t stride_block, stride_layer, stride_part;
    uint64_t stride_token, stride_head;
} kvx_layout_t;

/**
 * Validates @p params and fills @p layout.
 * @return KVX_OK;
 *         KVX_ERR_INVALID_PARAM (NULL, a required field missing, a zero
 *         count or size, kv_parts not 1 or 2, a count above
 *         KVX_LAYOUT_DIM_MAX, unknown order, head slice outside
 *         total_heads, unknown field bits);
 *         KVX_ERR_OVERFLOW (the region exceeds KVX_LAYOUT_BYTES_MAX).
 *         @p layout is written only on success.
 */
KVX_EXPORT kvx_status_t kvx_layout_init(kvx_layout_t *layout,
                                        const kvx_layout_params_t *params);

/**
 * Byte offset of element 0 of (block, layer, part, token, head); @p head is
 * the model-wide head index (head_start .. head_start + kv_heads - 1).
 * @return KVX_OK; KVX_ERR_INVALID_PARAM (NULL);
 *         KVX_ERR_OUT_OF_RANGE (any index outside the layout).
 */
KVX_EXPORT kvx_status_t kvx_layout_offset(const kvx_layout_t *layout,
                                          uint32_t block, uint32_t layer,
                                          uint32_t part, uint32_t token,
                                          uint32_t head, uint64_t *offset_p);

/**
 * Compatibility hash: covers what both sides must agree on for KV bytes to
 * mean the same thing (model_id, num_layers, kv_parts, total_heads,
 * head_dim, dtype_size). Arrangement, block_tokens, num_blocks and the head
 * slice are not in it: the planner translates those. Exchanged at the
 * handshake; equal layouts give equal hashes on every host.
 */
KVX_EXPORT uint64_t kvx_layout_compat_hash(const kvx_layout_t *layout);

/**
 * Explains whether data can move from @p src to @p dst.
 * @param why  if not NULL, receives a NUL-terminated reason naming the first
 *             mismatching field ("head_dim 128 != 64"), or "" when
 *             compatible; truncated to @p why_len.
 * @return KVX_OK; KVX_ERR_INVALID_PARAM (NULL layout);
 *         KVX_ERR_LAYOUT_MISMATCH (a field of the compatibility hash
 *         differs, or the head slices do not overlap).
 */
KVX_EXPORT kvx_status_t kvx_layout_check(const kvx_layout_t *src,
                                         const kvx_layout_t *dst, char *why,
                                         size_t why_len);

#ifdef __cplusplus
}
#endif

#endif /* KVX_LAYOUT_H */
