/* Layouts: validation, strides, offsets and the compatibility hash. */
#include <kvx/layout.h>

#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <xxhash.h>

#include "log_int.h"

#define LAYOUT_FIELDS_REQUIRED                                                 \
    (KVX_LAYOUT_PARAM_FIELD_NUM_LAYERS | KVX_LAYOUT_PARAM_FIELD_BLOCK_TOKENS | \
     KVX_LAYOUT_PARAM_FIELD_KV_HEADS | KVX_LAYOUT_PARAM_FIELD_HEAD_DIM |       \
     KVX_LAYOUT_PARAM_FIELD_DTYPE_SIZE | KVX_LAYOUT_PARAM_FIELD_NUM_BLOCKS)

#define LAYOUT_FIELDS_ALL                                                      \
    (LAYOUT_FIELDS_REQUIRED | KVX_LAYOUT_PARAM_FIELD_KV_PARTS |                \
     KVX_LAYOUT_PARAM_FIELD_ORDER | KVX_LAYOUT_PARAM_FIELD_TOKEN_ORDER |       \
     KVX_LAYOUT_PARAM_FIELD_HEAD_SLICE | KVX_LAYOUT_PARAM_FIELD_MODEL_ID)

/*
 * Bumped whenever the serialisation below or the meaning of a field
 * changes, so that peers running different formats never look compatible.
 */
#define LAYOUT_HASH_VERSION 1u

static int dim_ok(uint32_t v)
{
    return v != 0 && v <= KVX_LAYOUT_DIM_MAX;
}

/* Multiplies into *acc; returns 0 on overflow of 64 bits or the region cap. */
static int mul_ok(uint64_t *acc, uint64_t v)
{
    uint64_t r;

    if (__builtin_mul_overflow(*acc, v, &r) || r > KVX_LAYOUT_BYTES_MAX) {
        return 0;
    }
    *acc = r;
    return 1;
}

kvx_status_t kvx_layout_init(kvx_layout_t *layout,
                             const kvx_layout_params_t *params)
{
    kvx_layout_t l;
    uint64_t mask, chunk, block, region;

    if (layout == NULL || params == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    mask = params->field_mask;
    if ((mask & ~(uint64_t)LAYOUT_FIELDS_ALL) != 0 ||
        (mask & LAYOUT_FIELDS_REQUIRED) != LAYOUT_FIELDS_REQUIRED) {
        return KVX_ERR_INVALID_PARAM;
    }

    memset(&l, 0, sizeof(l));
    l.num_layers = params->num_layers;
    l.block_tokens = params->block_tokens;
    l.kv_heads = params->kv_heads;
    l.head_dim = params->head_dim;
    l.dtype_size = params->dtype_size;
    l.num_blocks = params->num_blocks;
    l.kv_parts =
        (mask & KVX_LAYOUT_PARAM_FIELD_KV_PARTS) ? params->kv_parts : 2;
    l.order = (mask & KVX_LAYOUT_PARAM_FIELD_ORDER) ? params->order
                                                    : KVX_LAYOUT_BLOCK_MAJOR;
    l.token_order = (mask & KVX_LAYOUT_PARAM_FIELD_TOKEN_ORDER)
                        ? params->token_order
                        : KVX_LAYOUT_NHD;
    if (mask & KVX_LAYOUT_PARAM_FIELD_HEAD_SLICE) {
        l.total_heads = params->total_heads;
        l.head_start = params->head_start;
    } else {
        l.total_heads = params->kv_heads;
        l.head_start = 0;
    }
    l.model_id =
        (mask & KVX_LAYOUT_PARAM_FIELD_MODEL_ID) ? params->model_id : 0;

    if (!dim_ok(l.num_layers) || !dim_ok(l.block_tokens) ||
        !dim_ok(l.kv_heads) || !dim_ok(l.head_dim) || !dim_ok(l.dtype_size) ||
        !dim_ok(l.num_blocks) || !dim_ok(l.total_heads)) {
        return KVX_ERR_INVALID_PARAM;
    }
    if (l.kv_parts != 1 && l.kv_parts != 2) {
        return KVX_ERR_INVALID_PARAM;
    }
    /* Enums may hold any int: compare as unsigned to catch negatives too. */
    if ((unsigned)l.order > KVX_LAYOUT_LAYER_MAJOR ||
        (unsigned)l.token_order > KVX_LAYOUT_HND) {
        return KVX_ERR_INVALID_PARAM;
    }
    if ((uint64_t)l.head_start + l.kv_heads > l.total_heads) {
        return KVX_ERR_INVALID_PARAM;
    }

    /* Each count is at most 2^20, so only the products can overflow. */
    l.head_bytes = (uint64_t)l.head_dim * l.dtype_size;
    chunk = l.head_bytes;
    if (!mul_ok(&chunk, l.block_tokens) || !mul_ok(&chunk, l.kv_heads)) {
        return KVX_ERR_OVERFLOW;
    }
    block = chunk;
    if (!mul_ok(&block, l.kv_parts) || !mul_ok(&block, l.num_layers)) {
        return KVX_ERR_OVERFLOW;
    }
    region = block;
    if (!mul_ok(&region, l.num_blocks)) {
        return KVX_ERR_OVERFLOW;
    }
    l.chunk_bytes = chunk;
    l.block_bytes = block;
    l.region_bytes = region;

    if (l.token_order == KVX_LAYOUT_NHD) {
        l.stride_head = l.head_bytes;
        l.stride_token = l.head_bytes * l.kv_heads;
    } else {
        l.stride_token = l.head_bytes;
        l.stride_head = l.head_bytes * l.block_tokens;
    }
    if (l.order == KVX_LAYOUT_BLOCK_MAJOR) {
        l.stride_part = chunk;
        l.stride_layer = chunk * l.kv_parts;
        l.stride_block = block;
    } else {
        l.stride_block = chunk;
        l.stride_part = chunk * l.num_blocks;
        l.stride_layer = chunk * l.num_blocks * l.kv_parts;
    }

    *layout = l;
    return KVX_OK;
}

kvx_status_t kvx_layout_offset(const kvx_layout_t *layout, uint32_t block,
                               uint32_t layer, uint32_t part, uint32_t token,
                               uint32_t head, uint64_t *offset_p)
{
    if (layout == NULL || offset_p == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    if (block >= layout->num_blocks || layer >= layout->num_layers ||
        part >= layout->kv_parts || token >= layout->block_tokens ||
        head < layout->head_start ||
        head - layout->head_start >= layout->kv_heads) {
        return KVX_ERR_OUT_OF_RANGE;
    }
    /* Every index is in range, so the sum stays below region_bytes. */
    *offset_p = block * layout->stride_block + layer * layout->stride_layer +
                part * layout->stride_part + token * layout->stride_token +
                (head - layout->head_start) * layout->stride_head;
    return KVX_OK;
}

static uint8_t *put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        *p++ = (uint8_t)(v >> (8 * i));
    }
    return p;
}

static uint8_t *put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        *p++ = (uint8_t)(v >> (8 * i));
    }
    return p;
}

uint64_t kvx_layout_compat_hash(const kvx_layout_t *layout)
{
    /* "KVXL", version, model_id, then five u32: fixed little-endian. */
    uint8_t buf[4 + 4 + 8 + 5 * 4];
    uint8_t *p = buf;

    if (layout == NULL) {
        return 0;
    }
    memcpy(p, "KVXL", 4);
    p += 4;
    p = put_le32(p, LAYOUT_HASH_VERSION);
    p = put_le64(p, layout->model_id);
    p = put_le32(p, layout->num_layers);
    p = put_le32(p, layout->kv_parts);
    p = put_le32(p, layout->total_heads);
    p = put_le32(p, layout->head_dim);
    p = put_le32(p, layout->dtype_size);
    return XXH3_64bits(buf, (size_t)(p - buf));
}

kvx_status_t kvx_layout_check(const kvx_layout_t *src, const kvx_layout_t *dst,
                              char *why, size_t why_len)
{
    static const struct {
        const char *name;
        size_t off;
    } fields[] = {
        {"num_layers", offsetof(kvx_layout_t, num_layers)},
        {"kv_parts", offsetof(kvx_layout_t, kv_parts)},
        {"total_heads", offsetof(kvx_layout_t, total_heads)},
        {"head_dim", offsetof(kvx_layout_t, head_dim)},
        {"dtype_size", offsetof(kvx_layout_t, dtype_size)},
    };
    uint32_t s_end, d_end;

    if (src == NULL || dst == NULL) {
        kvxi_why(why, why_len, "%s", "NULL layout");
        return KVX_ERR_INVALID_PARAM;
    }
    if (src->model_id != dst->model_id) {
        kvxi_why(why, why_len, "model_id 0x%" PRIx64 " != 0x%" PRIx64,
                 src->model_id, dst->model_id);
        return KVX_ERR_LAYOUT_MISMATCH;
    }
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        uint32_t a, b;

        memcpy(&a, (const char *)src + fields[i].off, sizeof(a));
        memcpy(&b, (const char *)dst + fields[i].off, sizeof(b));
        if (a != b) {
            kvxi_why(why, why_len, "%s %" PRIu32 " != %" PRIu32, fields[i].name,
                     a, b);
            return KVX_ERR_LAYOUT_MISMATCH;
        }
    }
    s_end = src->head_start + src->kv_heads;
    d_end = dst->head_start + dst->kv_heads;
    if (src->head_start >= d_end || dst->head_start >= s_end) {
        kvxi_why(why, why_len,
                 "head slices [%" PRIu32 ",%" PRIu32 ") and [%" PRIu32
                 ",%" PRIu32 ") do not overlap",
                 src->head_start, s_end, dst->head_start, d_end);
        return KVX_ERR_LAYOUT_MISMATCH;
    }
    kvxi_why(why, why_len, "%s", "");
    return KVX_OK;
}
