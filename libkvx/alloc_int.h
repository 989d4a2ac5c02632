/*
 * Block allocator internals, shared by alloc.c (blocks, reservations, pins,
 * keys, queries) and lease.c (lease slots, ids, the deadline heap, commit,
 * abort, unfence, extend, expire).
 *
 * Every block sits in at most one list at a time (the free list, the LRU of
 * CACHED blocks, or its lease's list), so one pair of intrusive links per
 * block serves all three. Leases live in a fixed slot table; active ones sit
 * in a binary min-heap on their deadline. Nothing is allocated after create.
 *
 * Not installed; not thread-safe (one allocator, one caller at a time).
 */
#ifndef KVX_ALLOC_INT_H
#define KVX_ALLOC_INT_H

#include <kvx/kvx.h>

#include "prefix_int.h"

#define ALLOC_NIL UINT32_MAX

#define ALLOC_N_STATES 5

enum {
    BLOCK_FLAG_KEYED = 1u << 0,  /* key is in the prefix index */
    BLOCK_FLAG_PENDING = 1u << 1 /* key goes into the index at commit */
};

typedef enum alloc_lease_state {
    LEASE_UNUSED = 0,
    LEASE_ACTIVE = 1,
    LEASE_FENCED = 2
} alloc_lease_state_t;

typedef struct alloc_block {
    kvx_block_key_t key; /* index key (KEYED) or pending key (PENDING) */
    uint32_t gen;
    uint32_t pins;
    uint32_t prev, next; /* free list, LRU or lease list */
    uint32_t lease;      /* lease slot while RESERVED or FENCED */
    uint32_t mark;       /* hits on this block in the running reserve_keyed */
    uint8_t state;
    uint8_t flags;
} alloc_block_t;

typedef struct alloc_list {
    uint32_t head, tail;
} alloc_list_t;

typedef struct alloc_lease {
    uint64_t deadline;
    alloc_list_t blocks; /* in reservation order */
    uint32_t n_blocks;
    uint32_t gen;
    uint32_t heap_pos;  /* index in the deadline heap while ACTIVE */
    uint32_t next_free; /* free slot stack while UNUSED */
    uint8_t state;
} alloc_lease_t;

struct kvx_alloc {
    alloc_block_t *blocks;
    uint32_t block_count;
    uint32_t n_state[ALLOC_N_STATES];
    alloc_list_t free_list;
    alloc_list_t lru; /* head: least recently used */
    kvxi_prefix_t *index;
    alloc_lease_t *leases;
    uint32_t max_leases;
    uint32_t lease_free; /* top of the free slot stack */
    uint32_t *heap;      /* lease slots, min-heap on deadline */
    uint32_t heap_len;
    uint32_t leases_fenced;
    uint64_t evictions;
    uint64_t expirations;
    kvx_clock_cb_t clock;
    void *clock_arg;
};

/* ---- intrusive lists ---------------------------------------------------- */

static inline void list_init(alloc_list_t *list)
{
    list->head = ALLOC_NIL;
    list->tail = ALLOC_NIL;
}

static inline void list_push_tail(kvx_alloc_h alloc, alloc_list_t *list,
                                  uint32_t b)
{
    alloc_block_t *blk = &alloc->blocks[b];

    blk->prev = list->tail;
    blk->next = ALLOC_NIL;
    if (list->tail == ALLOC_NIL) {
        list->head = b;
    } else {
        alloc->blocks[list->tail].next = b;
    }
    list->tail = b;
}

static inline void list_push_head(kvx_alloc_h alloc, alloc_list_t *list,
                                  uint32_t b)
{
    alloc_block_t *blk = &alloc->blocks[b];

    blk->prev = ALLOC_NIL;
    blk->next = list->head;
    if (list->head == ALLOC_NIL) {
        list->tail = b;
    } else {
        alloc->blocks[list->head].prev = b;
    }
    list->head = b;
}

static inline void list_remove(kvx_alloc_h alloc, alloc_list_t *list,
                               uint32_t b)
{
    alloc_block_t *blk = &alloc->blocks[b];

    if (blk->prev == ALLOC_NIL) {
        list->head = blk->next;
    } else {
        alloc->blocks[blk->prev].next = blk->next;
    }
    if (blk->next == ALLOC_NIL) {
        list->tail = blk->prev;
    } else {
        alloc->blocks[blk->next].prev = blk->prev;
    }
    blk->prev = ALLOC_NIL;
    blk->next = ALLOC_NIL;
}

/* Moves all of @src in front of @dst, keeping its order. */
static inline void list_splice_head(kvx_alloc_h alloc, alloc_list_t *dst,
                                    alloc_list_t *src)
{
    if (src->head == ALLOC_NIL) {
        return;
    }
    alloc->blocks[src->tail].next = dst->head;
    if (dst->head == ALLOC_NIL) {
        dst->tail = src->tail;
    } else {
        alloc->blocks[dst->head].prev = src->tail;
    }
    dst->head = src->head;
    list_init(src);
}

/* ---- block state -------------------------------------------------------- */

static inline void block_set_state(kvx_alloc_h alloc, alloc_block_t *blk,
                                   kvx_block_state_t state)
{
    alloc->n_state[blk->state]--;
    alloc->n_state[state]++;
    blk->state = (uint8_t)state;
}

/* Reuse starts here: a new generation makes every older reference stale.
 * Generation 0 is skipped so that a zeroed reference is never valid. */
static inline void block_new_gen(alloc_block_t *blk)
{
    if (++blk->gen == 0) {
        blk->gen = 1;
    }
}

/* KVX_ERR_TIMEOUT unless @deadline_ns is after the allocator's clock. */
static inline kvx_status_t alloc_check_deadline(kvx_alloc_h alloc,
                                                uint64_t deadline_ns)
{
    if (deadline_ns <= alloc->clock(alloc->clock_arg)) {
        return KVX_ERR_TIMEOUT;
    }
    return KVX_OK;
}

/* ---- leases (lease.c) --------------------------------------------------- */

/* The public id of the lease in @slot: generation above, slot + 1 below, so
 * that 0 is never an id. */
kvx_lease_id_t kvxi_lease_id(kvx_alloc_h alloc, uint32_t slot);

/* Takes a free slot (the caller checked that one exists), makes it ACTIVE
 * with @deadline and no blocks, and puts it in the deadline heap. */
uint32_t kvxi_lease_open(kvx_alloc_h alloc, uint64_t deadline);

/* Block @b, out of every list, becomes RESERVED under the lease in @slot,
 * at the tail of its list. */
void kvxi_lease_add_block(kvx_alloc_h alloc, uint32_t slot, uint32_t b);

#endif /* KVX_ALLOC_INT_H */
