/*
 * Leases of the block allocator: the slot table and its free slot stack, lease
 * id encoding, the binary min-heap of active leases on their deadline, and
 * the lease operations (commit, abort and its fence, unfence, extend,
 * expire, next_deadline).
 *
 * An id is (slot generation << 32) | (slot + 1); retiring a lease moves its
 * slot's generation on, so old ids go stale. Blocks, reservations and pins
 * are in alloc.c; the shared structures in alloc_int.h.
 */
#include <kvx/kvx.h>

#include <inttypes.h>

#include "alloc_int.h"
#include "log_int.h"

/* ---- lease deadline heap ------------------------------------------------ */

static int heap_less(kvx_alloc_h alloc, uint32_t a, uint32_t b)
{
    return alloc->leases[alloc->heap[a]].deadline <
           alloc->leases[alloc->heap[b]].deadline;
}

static void heap_swap(kvx_alloc_h alloc, uint32_t a, uint32_t b)
{
    uint32_t tmp = alloc->heap[a];

    alloc->heap[a] = alloc->heap[b];
    alloc->heap[b] = tmp;
    alloc->leases[alloc->heap[a]].heap_pos = a;
    alloc->leases[alloc->heap[b]].heap_pos = b;
}

static void heap_up(kvx_alloc_h alloc, uint32_t pos)
{
    while (pos > 0 && heap_less(alloc, pos, (pos - 1) / 2)) {
        heap_swap(alloc, pos, (pos - 1) / 2);
        pos = (pos - 1) / 2;
    }
}

static void heap_down(kvx_alloc_h alloc, uint32_t pos)
{
    for (;;) {
        uint32_t l = 2 * pos + 1, r = l + 1, min = pos;

        if (l < alloc->heap_len && heap_less(alloc, l, min)) {
            min = l;
        }
        if (r < alloc->heap_len && heap_less(alloc, r, min)) {
            min = r;
        }
        if (min == pos) {
            return;
        }
        heap_swap(alloc, pos, min);
        pos = min;
    }
}

static void heap_insert(kvx_alloc_h alloc, uint32_t slot)
{
    uint32_t pos = alloc->heap_len++;

    alloc->heap[pos] = slot;
    alloc->leases[slot].heap_pos = pos;
    heap_up(alloc, pos);
}

static void heap_remove(kvx_alloc_h alloc, uint32_t slot)
{
    uint32_t pos = alloc->leases[slot].heap_pos;
    uint32_t last = --alloc->heap_len;

    if (pos != last) {
        heap_swap(alloc, pos, last);
        heap_up(alloc, pos);
        heap_down(alloc, pos);
    }
    alloc->leases[slot].heap_pos = ALLOC_NIL;
}

/* ---- leases ------------------------------------------------------------- */

kvx_lease_id_t kvxi_lease_id(kvx_alloc_h alloc, uint32_t slot)
{
    return ((uint64_t)alloc->leases[slot].gen << 32) | (uint64_t)(slot + 1);
}

/* Finds the live lease named by @id for a public call: INVALID_PARAM for
 * 0, STALE_HANDLE for ids never issued or already retired. */
static kvx_status_t lease_get(kvx_alloc_h alloc, kvx_lease_id_t id,
                              uint32_t *slot_p)
{
    uint32_t low = (uint32_t)id;

    if (alloc == NULL || id == 0) {
        return KVX_ERR_INVALID_PARAM;
    }
    if (low == 0 || low > alloc->max_leases ||
        alloc->leases[low - 1].state == LEASE_UNUSED ||
        alloc->leases[low - 1].gen != (uint32_t)(id >> 32)) {
        return KVX_ERR_STALE_HANDLE;
    }
    *slot_p = low - 1;
    return KVX_OK;
}

uint32_t kvxi_lease_open(kvx_alloc_h alloc, uint64_t deadline)
{
    uint32_t slot = alloc->lease_free;
    alloc_lease_t *lease = &alloc->leases[slot];

    alloc->lease_free = lease->next_free;
    lease->state = LEASE_ACTIVE;
    lease->deadline = deadline;
    lease->n_blocks = 0;
    list_init(&lease->blocks);
    heap_insert(alloc, slot);
    return slot;
}

void kvxi_lease_add_block(kvx_alloc_h alloc, uint32_t slot, uint32_t b)
{
    alloc_block_t *blk = &alloc->blocks[b];

    block_set_state(alloc, blk, KVX_BLOCK_RESERVED);
    blk->lease = slot;
    blk->pins = 0;
    list_push_tail(alloc, &alloc->leases[slot].blocks, b);
    alloc->leases[slot].n_blocks++;
}

/* The id stops working: the slot's generation moves on. */
static void lease_retire(kvx_alloc_h alloc, uint32_t slot)
{
    alloc_lease_t *lease = &alloc->leases[slot];

    if (lease->state == LEASE_ACTIVE) {
        heap_remove(alloc, slot);
    } else {
        alloc->leases_fenced--;
    }
    lease->state = LEASE_UNUSED;
    lease->gen++;
    lease->n_blocks = 0;
    list_init(&lease->blocks);
    lease->next_free = alloc->lease_free;
    alloc->lease_free = slot;
}

static void lease_fence(kvx_alloc_h alloc, uint32_t slot)
{
    alloc_lease_t *lease = &alloc->leases[slot];

    heap_remove(alloc, slot);
    lease->state = LEASE_FENCED;
    alloc->leases_fenced++;
    for (uint32_t b = lease->blocks.head; b != ALLOC_NIL;
         b = alloc->blocks[b].next) {
        alloc->blocks[b].flags = 0; /* the pending key dies with the data */
        block_set_state(alloc, &alloc->blocks[b], KVX_BLOCK_FENCED);
    }
}

/* ---- lease operations --------------------------------------------------- */

kvx_status_t kvx_alloc_lease_commit(kvx_alloc_h alloc, kvx_lease_id_t lease)
{
    kvx_status_t status;
    alloc_block_t *blk;
    uint32_t slot;

    status = lease_get(alloc, lease, &slot);
    if (status != KVX_OK) {
        return status;
    }
    if (alloc->leases[slot].state != LEASE_ACTIVE) {
        return KVX_ERR_BAD_STATE;
    }
    /* Reservation order: of two blocks reserved with the same key, the
     * first one gets it. The blocks now belong to their pins, so they leave
     * the lease's list. */
    for (uint32_t b = alloc->leases[slot].blocks.head, next; b != ALLOC_NIL;
         b = next) {
        blk = &alloc->blocks[b];
        next = blk->next;
        blk->prev = ALLOC_NIL;
        blk->next = ALLOC_NIL;
        blk->lease = ALLOC_NIL;
        blk->pins = 1;
        block_set_state(alloc, blk, KVX_BLOCK_READY);
        if (blk->flags & BLOCK_FLAG_PENDING) {
            status = kvxi_prefix_insert(alloc->index, &blk->key, b);
            blk->flags = status == KVX_OK ? BLOCK_FLAG_KEYED : 0;
            if (status != KVX_OK && status != KVX_ERR_EXISTS) {
                kvxi_error("alloc: block %u not indexed: %s", b,
                           kvx_status_string(status));
            }
        }
    }
    lease_retire(alloc, slot);
    return KVX_OK;
}

kvx_status_t kvx_alloc_lease_abort(kvx_alloc_h alloc, kvx_lease_id_t lease)
{
    uint32_t slot;
    kvx_status_t status = lease_get(alloc, lease, &slot);

    /* Already fenced: nothing to do, the abort is idempotent. */
    if (status == KVX_OK && alloc->leases[slot].state == LEASE_ACTIVE) {
        lease_fence(alloc, slot);
    }
    return status;
}

kvx_status_t kvx_alloc_lease_unfence(kvx_alloc_h alloc, kvx_lease_id_t lease)
{
    kvx_status_t status;
    alloc_block_t *blk;
    alloc_lease_t *l;
    uint32_t slot;

    status = lease_get(alloc, lease, &slot);
    if (status != KVX_OK) {
        return status;
    }
    l = &alloc->leases[slot];
    if (l->state != LEASE_FENCED) {
        return KVX_ERR_BAD_STATE;
    }
    for (uint32_t b = l->blocks.head; b != ALLOC_NIL; b = blk->next) {
        blk = &alloc->blocks[b];
        block_new_gen(blk);
        blk->flags = 0;
        blk->lease = ALLOC_NIL;
        block_set_state(alloc, blk, KVX_BLOCK_FREE);
    }
    /* In one piece and in order: the next reservation gets the same run. */
    list_splice_head(alloc, &alloc->free_list, &l->blocks);
    lease_retire(alloc, slot);
    return KVX_OK;
}

kvx_status_t kvx_alloc_lease_extend(kvx_alloc_h alloc, kvx_lease_id_t lease,
                                    uint64_t deadline_ns)
{
    kvx_status_t status;
    alloc_lease_t *l;
    uint32_t slot;

    status = lease_get(alloc, lease, &slot);
    if (status != KVX_OK) {
        return status;
    }
    l = &alloc->leases[slot];
    if (l->state != LEASE_ACTIVE) {
        return KVX_ERR_BAD_STATE;
    }
    status = alloc_check_deadline(alloc, deadline_ns);
    if (status != KVX_OK) {
        return status;
    }
    l->deadline = deadline_ns;
    heap_up(alloc, l->heap_pos);
    heap_down(alloc, l->heap_pos);
    return KVX_OK;
}

kvx_status_t kvx_alloc_expire(kvx_alloc_h alloc, kvx_lease_expired_cb_t cb,
                              void *arg, uint32_t *n_p)
{
    uint32_t n = 0, slot;
    uint64_t now;

    if (alloc == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    now = alloc->clock(alloc->clock_arg);
    /* The heap is re-read after each callback: it may commit, abort or
     * unfence leases, or reserve new ones. */
    while (alloc->heap_len > 0 &&
           alloc->leases[alloc->heap[0]].deadline <= now) {
        slot = alloc->heap[0];
        lease_fence(alloc, slot);
        alloc->expirations++;
        n++;
        kvxi_debug("alloc: lease 0x%" PRIx64 " expired, %u blocks fenced",
                   kvxi_lease_id(alloc, slot), alloc->leases[slot].n_blocks);
        if (cb != NULL) {
            cb(kvxi_lease_id(alloc, slot), arg);
        }
    }
    if (n_p != NULL) {
        *n_p = n;
    }
    return KVX_OK;
}

kvx_status_t kvx_alloc_next_deadline(kvx_alloc_h alloc, uint64_t *deadline_p)
{
    if (alloc == NULL || deadline_p == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    if (alloc->heap_len == 0) {
        return KVX_ERR_NOT_FOUND;
    }
    *deadline_p = alloc->leases[alloc->heap[0]].deadline;
    return KVX_OK;
}
