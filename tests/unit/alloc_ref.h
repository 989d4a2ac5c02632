/*
 * Reference model of the block allocator, used by test_alloc_model.c only.
 *
 * Written from the contract in include/kvx/alloc.h alone, never from
 * libkvx/alloc.c or lease.c: plain arrays, O(n) scans, its own LRU as a
 * timestamp per block, leases in a slot array found by their id. It holds
 * what the allocator should hold (m) and applies the effect of each
 * successful call; the driver predicts statuses from it and compares it
 * with the allocator after every operation. Where the contract leaves a
 * choice (which FREE block a reservation gets, lease id values), m_take()
 * and m_open_lease() check that the allocator's choice is a legal one.
 */
#ifndef KVX_TEST_ALLOC_REF_H
#define KVX_TEST_ALLOC_REF_H

#include <kvx/kvx.h>
#include <stdint.h>

#define M_MAX_BLOCKS 256
#define M_MAX_KEYS (2 * M_MAX_BLOCKS + 3)
#define M_RING 32 /* remembered stale references and lease ids */
#define M_NIL UINT32_MAX

typedef struct m_block {
    kvx_block_state_t state;
    uint32_t gen;
    uint32_t pins;
    int keyed;
    uint32_t key; /* key number, see key_bytes() */
    int pending;
    uint32_t pending_key;
    uint32_t lease; /* model lease slot while RESERVED/FENCED */
    uint64_t stamp; /* when it last became CACHED */
} m_block_t;

typedef struct m_lease {
    int live;
    int fenced;
    kvx_lease_id_t id;
    uint64_t deadline;
    uint32_t n;
    uint32_t blocks[M_MAX_BLOCKS]; /* reservation order */
} m_lease_t;

typedef struct m_model {
    uint32_t nb, max_leases, n_keys;
    m_block_t b[M_MAX_BLOCKS];
    m_lease_t l[M_MAX_BLOCKS]; /* live leases <= blocks */
    uint64_t now, stamp, evictions, expirations;
    kvx_lease_id_t retired[M_RING];
    uint32_t n_retired;
    kvx_block_ref_t old_refs[M_RING];
    uint32_t n_old;
} m_model_t;

/* The model of the allocator under test; the driver resets it per epoch. */
extern m_model_t m;

/* Blocks the model saw evicted, over the whole run (coverage). */
extern unsigned long n_evicted;

/* Reports a mismatch (with the op number and seed) and longjmps back to the
 * test; never returns. Defined by the driver, test_alloc_model.c. */
void model_fail(int line, const char *what, const char *fmt, ...);

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            model_fail(__LINE__, #cond, __VA_ARGS__);                          \
        }                                                                      \
    } while (0)

#define CHECK_ST(got, want)                                                    \
    CHECK((got) == (want), "status %d (%s), model expects %d (%s)",            \
          (int)(got), kvx_status_string(got), (int)(want),                     \
          kvx_status_string(want))

/* The key bytes of key number @n. */
kvx_block_key_t key_bytes(uint32_t n);

/* Blocks in @state. */
uint32_t m_count(kvx_block_state_t state);

/* Live leases: active (@fenced 0), fenced (1) or all (-1). */
uint32_t m_live_leases(int fenced);

/* The block holding key number @key in the index, or M_NIL. */
uint32_t m_owner(uint32_t key);

/* The least recently used CACHED block, or M_NIL. */
uint32_t m_lru(void);

/* Block @i becomes FREE: no key, a new generation. */
void m_free(uint32_t i);

/* The live lease slot with id @id, or M_NIL. */
uint32_t m_find_lease(kvx_lease_id_t id);

/* The lease in slot @s retires; its id is remembered as stale. */
void m_retire(uint32_t s);

/* Expected status of a lease operation up to "the id names a live lease";
 * *slot_p gets the slot for a non-zero id. */
kvx_status_t m_lease_status(kvx_lease_id_t id, uint32_t *slot_p);

/* Expected status of a block reference: range, then generation. */
kvx_status_t m_ref_status(kvx_block_ref_t ref);

/* Opens a model lease for the new allocator lease @id; returns its slot. */
uint32_t m_open_lease(kvx_lease_id_t id, uint64_t deadline);

/* Applies one block of a successful reservation under lease slot @s. */
void m_take(kvx_block_ref_t ref, uint32_t s);

/* The lease in slot @s is fenced, with its blocks; pending keys die. */
void m_fence(uint32_t s);

#endif /* KVX_TEST_ALLOC_REF_H */
