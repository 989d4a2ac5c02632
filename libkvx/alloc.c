/*
 * Block allocator: block states and generations, reservations (plain and
 * keyed, with dedupe against the prefix index), pins, keys, the LRU of
 * cached blocks, and the queries.
 *
 * Leases (slot table, ids, the deadline heap, commit, abort, unfence,
 * extend, expire) are in lease.c; the structures both files share, the
 * intrusive lists and the small block helpers in alloc_int.h. Nothing is
 * allocated after create.
 */
#include <kvx/kvx.h>

#include <stdlib.h>
#include <string.h>

#include "alloc_int.h"
#include "log_int.h"

/* ---- block state -------------------------------------------------------- */

static void block_unkey(kvx_alloc_h alloc, uint32_t b)
{
    alloc_block_t *blk = &alloc->blocks[b];

    if (blk->flags & BLOCK_FLAG_KEYED) {
        kvxi_prefix_remove(alloc->index, &blk->key, NULL);
    }
    blk->flags = 0;
}

/* An unpinned, unleased block goes back to the free list. */
static void block_free(kvx_alloc_h alloc, uint32_t b)
{
    alloc_block_t *blk = &alloc->blocks[b];

    block_unkey(alloc, b);
    block_new_gen(blk);
    blk->pins = 0;
    block_set_state(alloc, blk, KVX_BLOCK_FREE);
    list_push_head(alloc, &alloc->free_list, b);
}

/* Takes a FREE block, or evicts the least recently used CACHED one; the
 * caller checked that one exists. The block leaves every list. */
static uint32_t block_take(kvx_alloc_h alloc)
{
    uint32_t b = alloc->free_list.head;

    if (b != ALLOC_NIL) {
        list_remove(alloc, &alloc->free_list, b);
        return b;
    }
    b = alloc->lru.head;
    list_remove(alloc, &alloc->lru, b);
    block_free(alloc, b);
    list_remove(alloc, &alloc->free_list, b);
    alloc->evictions++;
    return b;
}

/* Adds one pin to a READY or CACHED block (the caller checked the limit). */
static void block_pin(kvx_alloc_h alloc, uint32_t b)
{
    alloc_block_t *blk = &alloc->blocks[b];

    if (blk->state == KVX_BLOCK_CACHED) {
        list_remove(alloc, &alloc->lru, b);
        block_set_state(alloc, blk, KVX_BLOCK_READY);
    }
    blk->pins++;
}

/* Validates a reference for a public call: range, then generation. */
static kvx_status_t block_get(kvx_alloc_h alloc, kvx_block_ref_t ref,
                              alloc_block_t **blk_p)
{
    if (alloc == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    if (ref.block >= alloc->block_count) {
        return KVX_ERR_OUT_OF_RANGE;
    }
    if (alloc->blocks[ref.block].gen != ref.gen) {
        return KVX_ERR_STALE_HANDLE;
    }
    *blk_p = &alloc->blocks[ref.block];
    return KVX_OK;
}

/* ---- create / destroy --------------------------------------------------- */

kvx_status_t kvx_alloc_create(const kvx_alloc_params_t *params,
                              kvx_alloc_h *alloc_p)
{
    const uint64_t known = KVX_ALLOC_PARAM_FIELD_BLOCK_COUNT |
                           KVX_ALLOC_PARAM_FIELD_MAX_LEASES |
                           KVX_ALLOC_PARAM_FIELD_CLOCK;
    kvx_alloc_h alloc;
    uint32_t n, max_leases, capacity;
    kvx_status_t status;

    if (params == NULL || alloc_p == NULL ||
        (params->field_mask & ~known) != 0 ||
        !(params->field_mask & KVX_ALLOC_PARAM_FIELD_BLOCK_COUNT) ||
        params->block_count == 0 ||
        params->block_count > KVX_ALLOC_BLOCK_COUNT_MAX) {
        kvxi_error("alloc: invalid parameters");
        return KVX_ERR_INVALID_PARAM;
    }
    n = params->block_count;
    max_leases = n;
    if (params->field_mask & KVX_ALLOC_PARAM_FIELD_MAX_LEASES) {
        if (params->max_leases == 0) {
            kvxi_error("alloc: max_leases must be at least 1");
            return KVX_ERR_INVALID_PARAM;
        }
        /* Every lease holds at least one block: more slots than blocks
         * could never be used. */
        if (params->max_leases < n) {
            max_leases = params->max_leases;
        }
    }

    alloc = calloc(1, sizeof(*alloc));
    if (alloc == NULL) {
        status = KVX_ERR_NO_MEMORY;
        goto err;
    }
    alloc->blocks = calloc(n, sizeof(*alloc->blocks));
    if (alloc->blocks == NULL) {
        status = KVX_ERR_NO_MEMORY;
        goto err_free_alloc;
    }
    alloc->leases = calloc(max_leases, sizeof(*alloc->leases));
    if (alloc->leases == NULL) {
        status = KVX_ERR_NO_MEMORY;
        goto err_free_blocks;
    }
    alloc->heap = calloc(max_leases, sizeof(*alloc->heap));
    if (alloc->heap == NULL) {
        status = KVX_ERR_NO_MEMORY;
        goto err_free_leases;
    }
    /* Power of two, >= 2x the blocks: load factor <= 1/2. */
    capacity = 2;
    while (capacity < 2 * (uint64_t)n) {
        capacity *= 2;
    }
    status = kvxi_prefix_create(capacity, &alloc->index);
    if (status != KVX_OK) {
        goto err_free_heap;
    }

    alloc->block_count = n;
    alloc->max_leases = max_leases;
    alloc->n_state[KVX_BLOCK_FREE] = n;
    list_init(&alloc->free_list);
    list_init(&alloc->lru);
    /* Ascending ids from the head: fresh reservations get contiguous runs,
     * which the planner coalesces. */
    for (uint32_t b = 0; b < n; b++) {
        alloc->blocks[b].gen = 1;
        alloc->blocks[b].lease = ALLOC_NIL;
        list_push_tail(alloc, &alloc->free_list, b);
    }
    alloc->lease_free = ALLOC_NIL;
    for (uint32_t s = max_leases; s-- > 0;) {
        alloc->leases[s].gen = 1;
        alloc->leases[s].heap_pos = ALLOC_NIL;
        alloc->leases[s].next_free = alloc->lease_free;
        alloc->lease_free = s;
    }
    if ((params->field_mask & KVX_ALLOC_PARAM_FIELD_CLOCK) &&
        params->clock != NULL) {
        alloc->clock = params->clock;
        alloc->clock_arg = params->clock_arg;
    } else {
        alloc->clock = kvx_clock_monotonic_ns;
    }
    *alloc_p = alloc;
    return KVX_OK;

err_free_heap:
    free(alloc->heap);
err_free_leases:
    free(alloc->leases);
err_free_blocks:
    free(alloc->blocks);
err_free_alloc:
    free(alloc);
err:
    kvxi_error("alloc: cannot allocate tables for %u blocks: %s", n,
               kvx_status_string(status));
    return status;
}

void kvx_alloc_destroy(kvx_alloc_h alloc)
{
    if (alloc == NULL) {
        return;
    }
    kvxi_prefix_destroy(alloc->index);
    free(alloc->heap);
    free(alloc->leases);
    free(alloc->blocks);
    free(alloc);
}

/* ---- reservations ------------------------------------------------------- */

static kvx_status_t alloc_no_space(kvx_alloc_h alloc, uint32_t need,
                                   uint32_t avail)
{
    if (need > avail) {
        kvxi_debug("alloc: %u blocks wanted, %u free or evictable", need,
                   avail);
        return KVX_ERR_NO_SPACE;
    }
    if (alloc->lease_free == ALLOC_NIL) {
        kvxi_debug("alloc: all %u lease slots in use", alloc->max_leases);
        return KVX_ERR_NO_SPACE;
    }
    return KVX_OK;
}

kvx_status_t kvx_alloc_reserve(kvx_alloc_h alloc, uint32_t count,
                               uint64_t deadline_ns, kvx_lease_id_t *lease_p,
                               kvx_block_ref_t *refs)
{
    kvx_status_t status;
    uint32_t slot, b;

    if (alloc == NULL || lease_p == NULL || refs == NULL || count == 0 ||
        count > alloc->block_count) {
        return KVX_ERR_INVALID_PARAM;
    }
    status = alloc_check_deadline(alloc, deadline_ns);
    if (status != KVX_OK) {
        return status;
    }
    status = alloc_no_space(alloc, count,
                            alloc->n_state[KVX_BLOCK_FREE] +
                                alloc->n_state[KVX_BLOCK_CACHED]);
    if (status != KVX_OK) {
        return status;
    }

    slot = kvxi_lease_open(alloc, deadline_ns);
    for (uint32_t i = 0; i < count; i++) {
        b = block_take(alloc);
        kvxi_lease_add_block(alloc, slot, b);
        refs[i].block = b;
        refs[i].gen = alloc->blocks[b].gen;
    }
    *lease_p = kvxi_lease_id(alloc, slot);
    return KVX_OK;
}

kvx_status_t kvx_alloc_reserve_keyed(kvx_alloc_h alloc,
                                     const kvx_block_key_t *keys,
                                     uint32_t count, uint64_t deadline_ns,
                                     kvx_lease_id_t *lease_p,
                                     kvx_block_ref_t *refs, uint8_t *hit,
                                     uint32_t *n_hits_p)
{
    kvx_status_t status = KVX_OK;
    uint32_t n_miss = 0, n_cached_hits = 0, slot, b;
    alloc_block_t *blk;

    if (alloc == NULL || keys == NULL || lease_p == NULL || refs == NULL ||
        hit == NULL || count == 0 || count > alloc->block_count) {
        return KVX_ERR_INVALID_PARAM;
    }

    /* Pass 1 decides everything before anything changes. refs[i].block
     * remembers the hit block (or NIL); the per-block mark counts the hits
     * of this call, so duplicate keys are counted once as evictable space
     * and fully against the pin limit. */
    for (uint32_t i = 0; i < count; i++) {
        if (kvxi_prefix_find(alloc->index, &keys[i], &b) != KVX_OK) {
            refs[i].block = ALLOC_NIL;
            n_miss++;
            continue;
        }
        refs[i].block = b;
        blk = &alloc->blocks[b];
        if (blk->mark == 0 && blk->state == KVX_BLOCK_CACHED) {
            n_cached_hits++;
        }
        blk->mark++;
        if (blk->pins + blk->mark > KVX_ALLOC_PIN_MAX) {
            status = KVX_ERR_OVERFLOW;
        }
    }
    if (status == KVX_OK && n_miss > 0) {
        status = alloc_check_deadline(alloc, deadline_ns);
        if (status == KVX_OK) {
            status = alloc_no_space(alloc, n_miss,
                                    alloc->n_state[KVX_BLOCK_FREE] +
                                        alloc->n_state[KVX_BLOCK_CACHED] -
                                        n_cached_hits);
        }
    }
    if (status != KVX_OK) {
        for (uint32_t i = 0; i < count; i++) {
            if (refs[i].block != ALLOC_NIL) {
                alloc->blocks[refs[i].block].mark = 0;
            }
        }
        return status;
    }

    /* Pin the hits first: a CACHED hit leaves the LRU, so the misses below
     * cannot evict it. */
    for (uint32_t i = 0; i < count; i++) {
        b = refs[i].block;
        hit[i] = b != ALLOC_NIL;
        if (b != ALLOC_NIL) {
            alloc->blocks[b].mark = 0;
            block_pin(alloc, b);
            refs[i].gen = alloc->blocks[b].gen;
        }
    }
    *lease_p = 0;
    if (n_miss > 0) {
        slot = kvxi_lease_open(alloc, deadline_ns);
        for (uint32_t i = 0; i < count; i++) {
            if (hit[i]) {
                continue;
            }
            b = block_take(alloc);
            kvxi_lease_add_block(alloc, slot, b);
            blk = &alloc->blocks[b];
            blk->key = keys[i];
            blk->flags = BLOCK_FLAG_PENDING;
            refs[i].block = b;
            refs[i].gen = blk->gen;
        }
        *lease_p = kvxi_lease_id(alloc, slot);
    }
    if (n_hits_p != NULL) {
        *n_hits_p = count - n_miss;
    }
    return KVX_OK;
}

/* ---- pins and keys ------------------------------------------------------ */

kvx_status_t kvx_alloc_pin(kvx_alloc_h alloc, kvx_block_ref_t ref)
{
    alloc_block_t *blk = NULL;
    kvx_status_t status = block_get(alloc, ref, &blk);

    if (status != KVX_OK) {
        return status;
    }
    if (blk->state != KVX_BLOCK_READY && blk->state != KVX_BLOCK_CACHED) {
        return KVX_ERR_BAD_STATE;
    }
    if (blk->pins >= KVX_ALLOC_PIN_MAX) {
        kvxi_warn("alloc: block %u has %u pins already", ref.block, blk->pins);
        return KVX_ERR_OVERFLOW;
    }
    block_pin(alloc, ref.block);
    return KVX_OK;
}

kvx_status_t kvx_alloc_unpin(kvx_alloc_h alloc, kvx_block_ref_t ref)
{
    alloc_block_t *blk = NULL;
    kvx_status_t status = block_get(alloc, ref, &blk);

    if (status != KVX_OK) {
        return status;
    }
    if (blk->state != KVX_BLOCK_READY) {
        return KVX_ERR_BAD_STATE;
    }
    if (--blk->pins > 0) {
        return KVX_OK;
    }
    if (blk->flags & BLOCK_FLAG_KEYED) {
        block_set_state(alloc, blk, KVX_BLOCK_CACHED);
        list_push_tail(alloc, &alloc->lru, ref.block);
    } else {
        block_free(alloc, ref.block);
    }
    return KVX_OK;
}

kvx_status_t kvx_alloc_set_key(kvx_alloc_h alloc, kvx_block_ref_t ref,
                               const kvx_block_key_t *key)
{
    alloc_block_t *blk = NULL;
    kvx_status_t status;

    status = key == NULL ? KVX_ERR_INVALID_PARAM : block_get(alloc, ref, &blk);
    if (status != KVX_OK) {
        return status;
    }
    if (blk->state != KVX_BLOCK_READY || (blk->flags & BLOCK_FLAG_KEYED)) {
        return KVX_ERR_BAD_STATE;
    }
    status = kvxi_prefix_insert(alloc->index, key, ref.block);
    if (status != KVX_OK) {
        return status;
    }
    blk->key = *key;
    blk->flags = BLOCK_FLAG_KEYED;
    return KVX_OK;
}

kvx_status_t kvx_alloc_lookup(kvx_alloc_h alloc, const kvx_block_key_t *keys,
                              uint32_t count, uint32_t *n_found_p,
                              kvx_block_ref_t *refs)
{
    uint32_t i, b;

    if (alloc == NULL || keys == NULL || n_found_p == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    for (i = 0; i < count; i++) {
        if (kvxi_prefix_find(alloc->index, &keys[i], &b) != KVX_OK) {
            break;
        }
        if (refs != NULL) {
            refs[i].block = b;
            refs[i].gen = alloc->blocks[b].gen;
        }
    }
    *n_found_p = i;
    return KVX_OK;
}

/* ---- queries ------------------------------------------------------------ */

kvx_status_t kvx_alloc_block_query(kvx_alloc_h alloc, uint32_t block,
                                   kvx_block_info_t *info)
{
    const alloc_block_t *blk;

    if (alloc == NULL || info == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    if (block >= alloc->block_count) {
        return KVX_ERR_OUT_OF_RANGE;
    }
    blk = &alloc->blocks[block];
    memset(info, 0, sizeof(*info));
    info->state = (kvx_block_state_t)blk->state;
    info->gen = blk->gen;
    info->pins = blk->pins;
    if (blk->flags & BLOCK_FLAG_KEYED) {
        info->keyed = 1;
        info->key = blk->key;
    }
    if (blk->state == KVX_BLOCK_RESERVED || blk->state == KVX_BLOCK_FENCED) {
        info->lease = kvxi_lease_id(alloc, blk->lease);
    }
    return KVX_OK;
}

kvx_status_t kvx_alloc_query(kvx_alloc_h alloc, kvx_alloc_attr_t *attr)
{
    if (alloc == NULL || attr == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    memset(attr, 0, sizeof(*attr));
    attr->block_count = alloc->block_count;
    attr->n_free = alloc->n_state[KVX_BLOCK_FREE];
    attr->n_reserved = alloc->n_state[KVX_BLOCK_RESERVED];
    attr->n_ready = alloc->n_state[KVX_BLOCK_READY];
    attr->n_cached = alloc->n_state[KVX_BLOCK_CACHED];
    attr->n_fenced = alloc->n_state[KVX_BLOCK_FENCED];
    attr->n_keys = kvxi_prefix_count(alloc->index);
    attr->leases_active = alloc->heap_len;
    attr->leases_fenced = alloc->leases_fenced;
    attr->evictions = alloc->evictions;
    attr->expirations = alloc->expirations;
    return KVX_OK;
}

const char *kvx_block_state_string(kvx_block_state_t state)
{
    switch (state) {
    case KVX_BLOCK_FREE: return "free";
    case KVX_BLOCK_RESERVED: return "reserved";
    case KVX_BLOCK_READY: return "ready";
    case KVX_BLOCK_CACHED: return "cached";
    case KVX_BLOCK_FENCED: return "fenced";
    }
    return "?";
}
