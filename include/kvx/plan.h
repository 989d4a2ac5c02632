/**
 * @file kvx/plan.h
 * @brief The planner: "these blocks, these layers, from region A to region
 *        B" as a list of (src offset, dst offset, length) segments.
 *
 * The planner translates between layouts (block-major and layer-major, NHD
 * and HND, different block_tokens, tensor-parallel head slices: only the
 * heads both sides hold are copied) and merges adjacent runs, so contiguous
 * block ids in matching layouts become one large segment. Executing the
 * segments with memcpy (or RMA puts) moves exactly the requested elements.
 *
 * A plan object keeps its segment buffer across builds: after warm-up,
 * building a plan of a size seen before allocates nothing.
 */
#ifndef KVX_PLAN_H
#define KVX_PLAN_H

#include <kvx/common.h>
#include <kvx/layout.h>
#include <kvx/status.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kvx_plan *kvx_plan_h;

/** One contiguous copy: len bytes from src_off (source region) to dst_off. */
typedef struct kvx_segment {
    uint64_t src_off;
    uint64_t dst_off;
    uint64_t len;
} kvx_segment_t;

/** Bits of kvx_plan_request_t::field_mask. */
enum kvx_plan_request_field {
    KVX_PLAN_REQ_FIELD_LAYERS = 1u << 0, /**< default: all layers */
    KVX_PLAN_REQ_FIELD_TOKENS = 1u << 1  /**< default: see num_tokens */
};

/** Most segments one plan may hold. */
#define KVX_PLAN_SEGMENTS_MAX (1u << 28)

typedef struct kvx_plan_request {
    uint64_t field_mask;
    const kvx_layout_t *src;    /**< source region layout (required) */
    const kvx_layout_t *dst;    /**< destination region layout (required) */
    const uint32_t *src_blocks; /**< source block ids, in token order */
    uint32_t n_src_blocks;
    const uint32_t *dst_blocks; /**< destination block ids, token order */
    uint32_t n_dst_blocks;
    uint32_t layer_begin; /**< LAYERS: first layer */
    uint32_t layer_end;   /**< LAYERS: one past the last layer */
    uint32_t num_tokens;  /**< TOKENS: tokens to move; default the
                               smaller of both sides' capacity */
} kvx_plan_request_t;

/**
 * Creates an empty plan.
 * @return KVX_OK; KVX_ERR_INVALID_PARAM; KVX_ERR_NO_MEMORY.
 */
KVX_EXPORT kvx_status_t kvx_plan_create(kvx_plan_h *plan_p);

/** Frees the plan. NULL is a no-op. */
KVX_EXPORT void kvx_plan_destroy(kvx_plan_h plan);

/**
 * Replaces the plan's segments with those of @p req.
 * @return KVX_OK;
 *         KVX_ERR_INVALID_PARAM (NULL, no blocks on a side, empty layer
 *         range, zero tokens, unknown field bits);
 *         KVX_ERR_LAYOUT_MISMATCH (kvx_layout_check() fails);
 *         KVX_ERR_OUT_OF_RANGE (a block id >= num_blocks of its layout,
 *         layers beyond num_layers, more tokens than a side's blocks hold);
 *         KVX_ERR_NO_SPACE (more than KVX_PLAN_SEGMENTS_MAX segments);
 *         KVX_ERR_NO_MEMORY. On error the plan is empty.
 */
KVX_EXPORT kvx_status_t kvx_plan_build(kvx_plan_h plan,
                                       const kvx_plan_request_t *req);

/**
 * The segments of the last successful build (valid until the next build or
 * destroy), in emission order; *n_p receives their count.
 */
KVX_EXPORT const kvx_segment_t *kvx_plan_segments(kvx_plan_h plan, size_t *n_p);

/** Total bytes of the plan's segments. */
KVX_EXPORT uint64_t kvx_plan_bytes(kvx_plan_h plan);

#ifdef __cplusplus
}
#endif

#endif /* KVX_PLAN_H */
