/* Prefix index: open addressing, linear probing, backward-shift deletion. */
#include "prefix_int.h"

#include <stdlib.h>
#include <string.h>

/* An empty slot has val1 == 0, so calloc() yields an empty (lazily zeroed)
 * table: a slot stores value + 1. */
typedef struct kvxi_prefix_slot {
    kvx_block_key_t key;
    uint32_t val1;
} kvxi_prefix_slot_t;

struct kvxi_prefix {
    kvxi_prefix_slot_t *slots;
    uint32_t mask; /* capacity - 1 */
    uint32_t count;
};

/* MurmurHash3's 64-bit finaliser: every input bit reaches every output bit. */
static uint64_t prefix_fmix64(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ull;
    k ^= k >> 33;
    return k;
}

/* Keys from a good hash are random already, but engines may hand us counters
 * or keys that differ in one byte: mix both halves so any difference moves
 * the home slot. */
static uint32_t prefix_home(const kvxi_prefix_t *prefix,
                            const kvx_block_key_t *key)
{
    uint64_t lo, hi;

    memcpy(&lo, key->bytes, sizeof(lo));
    memcpy(&hi, key->bytes + sizeof(lo), sizeof(hi));
    return (uint32_t)(prefix_fmix64(lo ^
                                    prefix_fmix64(hi + 0x9e3779b97f4a7c15ull)) &
                      prefix->mask);
}

static int prefix_key_eq(const kvx_block_key_t *a, const kvx_block_key_t *b)
{
    return memcmp(a->bytes, b->bytes, sizeof(a->bytes)) == 0;
}

/* Returns the slot holding @key, or the empty slot where the probe ended. */
static uint32_t prefix_probe(const kvxi_prefix_t *prefix,
                             const kvx_block_key_t *key)
{
    uint32_t i = prefix_home(prefix, key);

    while (prefix->slots[i].val1 != 0 &&
           !prefix_key_eq(&prefix->slots[i].key, key)) {
        i = (i + 1) & prefix->mask;
    }
    return i;
}

kvx_status_t kvxi_prefix_create(uint32_t capacity, kvxi_prefix_t **prefix_p)
{
    kvxi_prefix_t *prefix;

    if (prefix_p == NULL || capacity < 2 ||
        capacity > KVXI_PREFIX_CAPACITY_MAX ||
        (capacity & (capacity - 1)) != 0) {
        return KVX_ERR_INVALID_PARAM;
    }
    prefix = calloc(1, sizeof(*prefix));
    if (prefix == NULL) {
        goto err;
    }
    prefix->slots = calloc(capacity, sizeof(*prefix->slots));
    if (prefix->slots == NULL) {
        goto err_free_prefix;
    }
    prefix->mask = capacity - 1;
    *prefix_p = prefix;
    return KVX_OK;

err_free_prefix:
    free(prefix);
err:
    return KVX_ERR_NO_MEMORY;
}

void kvxi_prefix_destroy(kvxi_prefix_t *prefix)
{
    if (prefix == NULL) {
        return;
    }
    free(prefix->slots);
    free(prefix);
}

kvx_status_t kvxi_prefix_insert(kvxi_prefix_t *prefix,
                                const kvx_block_key_t *key, uint32_t value)
{
    uint32_t i;

    if (prefix == NULL || key == NULL || value == UINT32_MAX) {
        return KVX_ERR_INVALID_PARAM;
    }
    i = prefix_probe(prefix, key);
    if (prefix->slots[i].val1 != 0) {
        return KVX_ERR_EXISTS;
    }
    /* Keep one slot empty: probes for absent keys must find an end. */
    if (prefix->count >= prefix->mask) {
        return KVX_ERR_NO_SPACE;
    }
    prefix->slots[i].key = *key;
    prefix->slots[i].val1 = value + 1;
    prefix->count++;
    return KVX_OK;
}

kvx_status_t kvxi_prefix_remove(kvxi_prefix_t *prefix,
                                const kvx_block_key_t *key, uint32_t *value_p)
{
    uint32_t i, j, home;

    if (prefix == NULL || key == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    i = prefix_probe(prefix, key);
    if (prefix->slots[i].val1 == 0) {
        return KVX_ERR_NOT_FOUND;
    }
    if (value_p != NULL) {
        *value_p = prefix->slots[i].val1 - 1;
    }
    /* Backward shift: pull later entries of the run into the hole when the
     * hole lies on their probe path (cyclically in [home, j)), so every key
     * stays reachable from its home without tombstones. */
    j = i;
    for (;;) {
        j = (j + 1) & prefix->mask;
        if (prefix->slots[j].val1 == 0) {
            break;
        }
        home = prefix_home(prefix, &prefix->slots[j].key);
        if (((j - home) & prefix->mask) >= ((j - i) & prefix->mask)) {
            prefix->slots[i] = prefix->slots[j];
            i = j;
        }
    }
    prefix->slots[i].val1 = 0;
    prefix->count--;
    return KVX_OK;
}

kvx_status_t kvxi_prefix_find(const kvxi_prefix_t *prefix,
                              const kvx_block_key_t *key, uint32_t *value_p)
{
    uint32_t i;

    if (prefix == NULL || key == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    i = prefix_probe(prefix, key);
    if (prefix->slots[i].val1 == 0) {
        return KVX_ERR_NOT_FOUND;
    }
    if (value_p != NULL) {
        *value_p = prefix->slots[i].val1 - 1;
    }
    return KVX_OK;
}

uint32_t kvxi_prefix_count(const kvxi_prefix_t *prefix)
{
    return prefix == NULL ? 0 : prefix->count;
}

uint32_t kvxi_prefix_capacity(const kvxi_prefix_t *prefix)
{
    return prefix == NULL ? 0 : prefix->mask + 1;
}

uint32_t kvxi_prefix_max_probe(const kvxi_prefix_t *prefix)
{
    uint32_t max = 0, dist;

    if (prefix == NULL) {
        return 0;
    }
    for (uint32_t i = 0; i <= prefix->mask; i++) {
        if (prefix->slots[i].val1 == 0) {
            continue;
        }
        dist = (i - prefix_home(prefix, &prefix->slots[i].key)) & prefix->mask;
        if (dist > max) {
            max = dist;
        }
    }
    return max;
}
