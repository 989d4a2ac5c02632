/*
 * The planner: turns (blocks, layers, tokens) from one layout into another
 * as a list of (src offset, dst offset, length) segments, merging each new
 * segment into the previous one when both sides are contiguous.
 */
#include <kvx/plan.h>

#include <stdlib.h>

#include "log_int.h"

#define PLAN_REQ_FIELDS_ALL                                                    \
    (KVX_PLAN_REQ_FIELD_LAYERS | KVX_PLAN_REQ_FIELD_TOKENS)

#define PLAN_SEGS_INITIAL 64

/* Shape of the segments cut from one token run of one (layer, part). */
typedef enum plan_mode {
    PLAN_MODE_ROWS,   /* both NHD, same head set: the whole run at once */
    PLAN_MODE_TOKENS, /* both NHD, different head sets: one per token */
    PLAN_MODE_HEADS,  /* both HND: one per head */
    PLAN_MODE_ELEMS   /* NHD <-> HND: one per (token, head) */
} plan_mode_t;

struct kvx_plan {
    kvx_segment_t *segs;
    size_t n;
    size_t cap;
    uint64_t bytes;
    struct plan_run *runs; /* scratch: token runs of the current build */
    size_t runs_cap;
};

/* Everything the emission loops need, derived once per build. */
typedef struct plan_ctx {
    const kvx_layout_t *src;
    const kvx_layout_t *dst;
    const uint32_t *src_blocks;
    const uint32_t *dst_blocks;
    uint64_t tokens;
    uint32_t layer_begin, layer_end;
    uint32_t nh;      /* heads in the intersection of both slices */
    uint64_t s_head0; /* offset of the first common head inside a chunk */
    uint64_t d_head0;
    plan_mode_t mode;
    int same_chunk;  /* a block-sized run is the same chunk on both sides */
    int fold_layers; /* ... and both are block-major: layers fold too */
} plan_ctx_t;

/*
 * A run of tokens whose offsets, on both sides, are base + i * stride_token
 * (plus layer, part and head terms). Maximal runs inside one source and one
 * destination block always qualify; consecutive ones that continue each
 * other on both sides are joined.
 */
typedef struct plan_run {
    uint64_t s_base; /* block and token part of the source offset */
    uint64_t d_base;
    uint64_t n; /* tokens in the run */
} plan_run_t;

kvx_status_t kvx_plan_create(kvx_plan_h *plan_p)
{
    struct kvx_plan *plan;

    if (plan_p == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    plan = calloc(1, sizeof(*plan));
    if (plan == NULL) {
        return KVX_ERR_NO_MEMORY;
    }
    *plan_p = plan;
    return KVX_OK;
}

void kvx_plan_destroy(kvx_plan_h plan)
{
    if (plan == NULL) {
        return;
    }
    free(plan->runs);
    free(plan->segs);
    free(plan);
}

const kvx_segment_t *kvx_plan_segments(kvx_plan_h plan, size_t *n_p)
{
    if (plan == NULL) {
        if (n_p != NULL) {
            *n_p = 0;
        }
        return NULL;
    }
    if (n_p != NULL) {
        *n_p = plan->n;
    }
    return plan->segs;
}

uint64_t kvx_plan_bytes(kvx_plan_h plan)
{
    return plan == NULL ? 0 : plan->bytes;
}

/* Doubles the segment array; it never shrinks, so warm builds allocate
 * nothing. */
static kvx_status_t plan_grow(struct kvx_plan *plan)
{
    size_t cap = plan->cap == 0 ? PLAN_SEGS_INITIAL : plan->cap * 2;
    kvx_segment_t *segs;

    if (plan->n >= KVX_PLAN_SEGMENTS_MAX) {
        return KVX_ERR_NO_SPACE;
    }
    if (cap > KVX_PLAN_SEGMENTS_MAX) {
        cap = KVX_PLAN_SEGMENTS_MAX;
    }
    segs = realloc(plan->segs, cap * sizeof(*segs));
    if (segs == NULL) {
        return KVX_ERR_NO_MEMORY;
    }
    plan->segs = segs;
    plan->cap = cap;
    return KVX_OK;
}

static inline kvx_status_t plan_emit(struct kvx_plan *plan, uint64_t s,
                                     uint64_t d, uint64_t len)
{
    kvx_status_t status;

    plan->bytes += len;
    if (plan->n > 0) {
        kvx_segment_t *last = &plan->segs[plan->n - 1];

        if (last->src_off + last->len == s && last->dst_off + last->len == d) {
            last->len += len;
            return KVX_OK;
        }
    }
    if (plan->n == plan->cap) {
        status = plan_grow(plan);
        if (status != KVX_OK) {
            return status;
        }
    }
    plan->segs[plan->n].src_off = s;
    plan->segs[plan->n].dst_off = d;
    plan->segs[plan->n].len = len;
    plan->n++;
    return KVX_OK;
}

/* True if a run of @p n tokens is one whole chunk on both sides (runs of
 * equal block sizes always start on a block boundary). */
static inline int plan_run_is_chunk(const plan_ctx_t *ctx, uint64_t n)
{
    return ctx->same_chunk && n == ctx->src->block_tokens;
}

/* Cuts one token run of one (layer, part) into segments. */
static kvx_status_t plan_emit_run(struct kvx_plan *plan, const plan_ctx_t *ctx,
                                  uint64_t s, uint64_t d, uint64_t n)
{
    const kvx_layout_t *src = ctx->src, *dst = ctx->dst;
    uint64_t hb = src->head_bytes;
    kvx_status_t status = KVX_OK;

    if (plan_run_is_chunk(ctx, n)) {
        return plan_emit(plan, s, d, src->chunk_bytes);
    }
    switch (ctx->mode) {
    case PLAN_MODE_ROWS: return plan_emit(plan, s, d, n * src->stride_token);
    case PLAN_MODE_TOKENS:
        for (uint64_t i = 0; i < n && status == KVX_OK; i++) {
            status = plan_emit(plan, s + i * src->stride_token,
                               d + i * dst->stride_token, ctx->nh * hb);
        }
        return status;
    case PLAN_MODE_HEADS:
        for (uint32_t h = 0; h < ctx->nh && status == KVX_OK; h++) {
            status = plan_emit(plan, s + h * src->stride_head,
                               d + h * dst->stride_head, n * hb);
        }
        return status;
    case PLAN_MODE_ELEMS: break;
    }
    /* Walk in source order so that the source side stays sequential. */
    if (src->token_order == KVX_LAYOUT_NHD) {
        for (uint64_t i = 0; i < n; i++) {
            for (uint32_t h = 0; h < ctx->nh; h++) {
                status = plan_emit(
                    plan, s + i * src->stride_token + h * src->stride_head,
                    d + i * dst->stride_token + h * dst->stride_head, hb);
                if (status != KVX_OK) {
                    return status;
                }
            }
        }
    } else {
        for (uint32_t h = 0; h < ctx->nh; h++) {
            for (uint64_t i = 0; i < n; i++) {
                status = plan_emit(
                    plan, s + i * src->stride_token + h * src->stride_head,
                    d + i * dst->stride_token + h * dst->stride_head, hb);
                if (status != KVX_OK) {
                    return status;
                }
            }
        }
    }
    return KVX_OK;
}

/*
 * Splits the tokens into runs that stay inside one source and one
 * destination block, joining a run to the previous one when it continues
 * it on both sides (the same (layer, part) offsets cancel out, so this
 * holds for every layer and part at once). Walks block indices
 * incrementally: no division per run.
 */
static kvx_status_t plan_collect_runs(struct kvx_plan *plan,
                                      const plan_ctx_t *ctx, size_t *n_p)
{
    const kvx_layout_t *src = ctx->src, *dst = ctx->dst;
    uint64_t t = 0, max_runs;
    uint32_t si = 0, st = 0, di = 0, dt = 0;
    plan_run_t *runs, *last = NULL;
    size_t n_runs = 0;

    /* Each run but the last ends on a block boundary of one side. */
    max_runs =
        ctx->tokens / src->block_tokens + ctx->tokens / dst->block_tokens + 1;
    if (max_runs > plan->runs_cap) {
        /* Grow at least twofold, like the segments: only ever grows. */
        if (max_runs < 2 * (uint64_t)plan->runs_cap) {
            max_runs = 2 * (uint64_t)plan->runs_cap;
        }
        if (max_runs > SIZE_MAX / sizeof(*runs)) {
            return KVX_ERR_NO_MEMORY;
        }
        runs = realloc(plan->runs, max_runs * sizeof(*runs));
        if (runs == NULL) {
            return KVX_ERR_NO_MEMORY;
        }
        plan->runs = runs;
        plan->runs_cap = max_runs;
    }
    runs = plan->runs;

    while (t < ctx->tokens) {
        uint64_t n = ctx->tokens - t, s, d;

        if (n > src->block_tokens - st) {
            n = src->block_tokens - st;
        }
        if (n > dst->block_tokens - dt) {
            n = dst->block_tokens - dt;
        }
        s = ctx->src_blocks[si] * src->stride_block + st * src->stride_token +
            ctx->s_head0;
        d = ctx->dst_blocks[di] * dst->stride_block + dt * dst->stride_token +
            ctx->d_head0;
        if (last != NULL && last->s_base + last->n * src->stride_token == s &&
            last->d_base + last->n * dst->stride_token == d) {
            last->n += n;
        } else {
            last = &runs[n_runs++];
            last->s_base = s;
            last->d_base = d;
            last->n = n;
        }

        t += n;
        st += (uint32_t)n;
        if (st == src->block_tokens) {
            st = 0;
            si++;
        }
        dt += (uint32_t)n;
        if (dt == dst->block_tokens) {
            dt = 0;
            di++;
        }
    }
    *n_p = n_runs;
    return KVX_OK;
}

/* Source block-major: a block's layers and parts are adjacent, so walk
 * blocks outermost and contiguous block ids fold into one segment. */
static kvx_status_t plan_walk_blocks(struct kvx_plan *plan,
                                     const plan_ctx_t *ctx,
                                     const plan_run_t *runs, size_t n_runs)
{
    const kvx_layout_t *src = ctx->src, *dst = ctx->dst;
    uint32_t nl = ctx->layer_end - ctx->layer_begin;
    kvx_status_t status;

    for (size_t i = 0; i < n_runs; i++) {
        const plan_run_t *run = &runs[i];

        if (ctx->fold_layers && plan_run_is_chunk(ctx, run->n)) {
            /* The layer range of a whole block: one piece on both sides. */
            status = plan_emit(
                plan, run->s_base + ctx->layer_begin * src->stride_layer,
                run->d_base + ctx->layer_begin * dst->stride_layer,
                nl * src->stride_layer);
            if (status != KVX_OK) {
                return status;
            }
            continue;
        }
        for (uint32_t l = ctx->layer_begin; l < ctx->layer_end; l++) {
            for (uint32_t p = 0; p < src->kv_parts; p++) {
                status = plan_emit_run(
                    plan, ctx,
                    run->s_base + l * src->stride_layer + p * src->stride_part,
                    run->d_base + l * dst->stride_layer + p * dst->stride_part,
                    run->n);
                if (status != KVX_OK) {
                    return status;
                }
            }
        }
    }
    return KVX_OK;
}

/* Source layer-major: a (layer, part) holds all blocks back to back, so
 * walk layers and parts outermost and the token runs inside. */
static kvx_status_t plan_walk_layers(struct kvx_plan *plan,
                                     const plan_ctx_t *ctx,
                                     const plan_run_t *runs, size_t n_runs)
{
    const kvx_layout_t *src = ctx->src, *dst = ctx->dst;
    kvx_status_t status;

    for (uint32_t l = ctx->layer_begin; l < ctx->layer_end; l++) {
        for (uint32_t p = 0; p < src->kv_parts; p++) {
            uint64_t s_lp = l * src->stride_layer + p * src->stride_part;
            uint64_t d_lp = l * dst->stride_layer + p * dst->stride_part;

            for (size_t i = 0; i < n_runs; i++) {
                status = plan_emit_run(plan, ctx, runs[i].s_base + s_lp,
                                       runs[i].d_base + d_lp, runs[i].n);
                if (status != KVX_OK) {
                    return status;
                }
            }
        }
    }
    return KVX_OK;
}

static kvx_status_t plan_check_blocks(const uint32_t *ids, uint32_t n,
                                      uint32_t num_blocks)
{
    for (uint32_t i = 0; i < n; i++) {
        if (ids[i] >= num_blocks) {
            kvxi_debug("plan: block id %u at %u >= num_blocks %u", ids[i], i,
                       num_blocks);
            return KVX_ERR_OUT_OF_RANGE;
        }
    }
    return KVX_OK;
}

/* Validates @p req and derives the emission context from it. */
static kvx_status_t plan_prepare(const kvx_plan_request_t *req, plan_ctx_t *ctx)
{
    const kvx_layout_t *src = req->src, *dst = req->dst;
    uint64_t src_cap, dst_cap, h0, h1;
    char why[96];
    kvx_status_t status;

    if ((req->field_mask & ~(uint64_t)PLAN_REQ_FIELDS_ALL) != 0 ||
        src == NULL || dst == NULL || req->src_blocks == NULL ||
        req->n_src_blocks == 0 || req->dst_blocks == NULL ||
        req->n_dst_blocks == 0) {
        return KVX_ERR_INVALID_PARAM;
    }
    if ((req->field_mask & KVX_PLAN_REQ_FIELD_LAYERS) &&
        req->layer_begin >= req->layer_end) {
        return KVX_ERR_INVALID_PARAM;
    }
    if ((req->field_mask & KVX_PLAN_REQ_FIELD_TOKENS) && req->num_tokens == 0) {
        return KVX_ERR_INVALID_PARAM;
    }
    status = kvx_layout_check(src, dst, why, sizeof(why));
    if (status != KVX_OK) {
        kvxi_debug("plan: layouts do not match: %s", why);
        return status;
    }

    ctx->src = src;
    ctx->dst = dst;
    ctx->src_blocks = req->src_blocks;
    ctx->dst_blocks = req->dst_blocks;
    if (req->field_mask & KVX_PLAN_REQ_FIELD_LAYERS) {
        if (req->layer_end > src->num_layers) {
            return KVX_ERR_OUT_OF_RANGE;
        }
        ctx->layer_begin = req->layer_begin;
        ctx->layer_end = req->layer_end;
    } else {
        ctx->layer_begin = 0;
        ctx->layer_end = src->num_layers;
    }

    src_cap = (uint64_t)req->n_src_blocks * src->block_tokens;
    dst_cap = (uint64_t)req->n_dst_blocks * dst->block_tokens;
    if (req->field_mask & KVX_PLAN_REQ_FIELD_TOKENS) {
        if (req->num_tokens > src_cap || req->num_tokens > dst_cap) {
            return KVX_ERR_OUT_OF_RANGE;
        }
        ctx->tokens = req->num_tokens;
    } else {
        ctx->tokens = src_cap < dst_cap ? src_cap : dst_cap;
    }

    status =
        plan_check_blocks(req->src_blocks, req->n_src_blocks, src->num_blocks);
    if (status != KVX_OK) {
        return status;
    }
    status =
        plan_check_blocks(req->dst_blocks, req->n_dst_blocks, dst->num_blocks);
    if (status != KVX_OK) {
        return status;
    }

    /* kvx_layout_check() guaranteed that the slices overlap. */
    h0 = src->head_start > dst->head_start ? src->head_start : dst->head_start;
    h1 = (uint64_t)src->head_start + src->kv_heads;
    if (h1 > (uint64_t)dst->head_start + dst->kv_heads) {
        h1 = (uint64_t)dst->head_start + dst->kv_heads;
    }
    ctx->nh = (uint32_t)(h1 - h0);
    ctx->s_head0 = (h0 - src->head_start) * src->stride_head;
    ctx->d_head0 = (h0 - dst->head_start) * dst->stride_head;

    if (src->token_order != dst->token_order) {
        ctx->mode = PLAN_MODE_ELEMS;
    } else if (src->token_order == KVX_LAYOUT_HND) {
        ctx->mode = PLAN_MODE_HEADS;
    } else if (src->head_start == dst->head_start &&
               src->kv_heads == dst->kv_heads) {
        ctx->mode = PLAN_MODE_ROWS;
    } else {
        ctx->mode = PLAN_MODE_TOKENS;
    }
    /* Same heads, token order and block size: a whole-block run is the
     * same chunk, byte for byte, on both sides. */
    ctx->same_chunk = src->token_order == dst->token_order &&
                      src->head_start == dst->head_start &&
                      src->kv_heads == dst->kv_heads &&
                      src->block_tokens == dst->block_tokens;
    ctx->fold_layers = ctx->same_chunk &&
                       src->order == KVX_LAYOUT_BLOCK_MAJOR &&
                       dst->order == KVX_LAYOUT_BLOCK_MAJOR;
    return KVX_OK;
}

kvx_status_t kvx_plan_build(kvx_plan_h plan, const kvx_plan_request_t *req)
{
    plan_ctx_t ctx;
    size_t n_runs;
    kvx_status_t status;

    if (plan == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    plan->n = 0;
    plan->bytes = 0;
    if (req == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    status = plan_prepare(req, &ctx);
    if (status != KVX_OK) {
        return status;
    }
    status = plan_collect_runs(plan, &ctx, &n_runs);
    if (status != KVX_OK) {
        return status;
    }
    if (ctx.src->order == KVX_LAYOUT_BLOCK_MAJOR) {
        status = plan_walk_blocks(plan, &ctx, plan->runs, n_runs);
    } else {
        status = plan_walk_layers(plan, &ctx, plan->runs, n_runs);
    }
    if (status != KVX_OK) {
        goto err_empty;
    }
    return KVX_OK;

err_empty:
    plan->n = 0;
    plan->bytes = 0;
    return status;
}
