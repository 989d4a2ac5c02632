/*
 * Reference model of the block allocator (see alloc_ref.h): the model's
 * state and the functions that read and change it. Compiled into the
 * test_alloc_model binary only.
 */
#include "alloc_ref.h"

#include <string.h>

m_model_t m;
unsigned long n_evicted;

/* Structured, not random, keys: the index must mix them itself. */
kvx_block_key_t key_bytes(uint32_t n)
{
    kvx_block_key_t key;

    memset(&key, 0, sizeof(key));
    key.bytes[0] = 0x4b;
    key.bytes[14] = (uint8_t)(n >> 8);
    key.bytes[15] = (uint8_t)n;
    return key;
}

static void remember_ref(kvx_block_ref_t ref)
{
    m.old_refs[m.n_old++ % M_RING] = ref;
}

/* ---- the model ---------------------------------------------------------- */

uint32_t m_count(kvx_block_state_t state)
{
    uint32_t n = 0;

    for (uint32_t i = 0; i < m.nb; i++) {
        n += m.b[i].state == state;
    }
    return n;
}

uint32_t m_live_leases(int fenced)
{
    uint32_t n = 0;

    for (uint32_t i = 0; i < M_MAX_BLOCKS; i++) {
        n += m.l[i].live && (fenced < 0 || m.l[i].fenced == fenced);
    }
    return n;
}

/* The block holding @key in the index, or M_NIL. */
uint32_t m_owner(uint32_t key)
{
    for (uint32_t i = 0; i < m.nb; i++) {
        if (m.b[i].keyed && m.b[i].key == key) {
            return i;
        }
    }
    return M_NIL;
}

uint32_t m_lru(void)
{
    uint32_t best = M_NIL;

    for (uint32_t i = 0; i < m.nb; i++) {
        if (m.b[i].state == KVX_BLOCK_CACHED &&
            (best == M_NIL || m.b[i].stamp < m.b[best].stamp)) {
            best = i;
        }
    }
    return best;
}

/* Every move to FREE drops the key and starts a new generation. */
void m_free(uint32_t i)
{
    remember_ref((kvx_block_ref_t){i, m.b[i].gen});
    m.b[i].state = KVX_BLOCK_FREE;
    m.b[i].gen++;
    m.b[i].pins = 0;
    m.b[i].keyed = 0;
    m.b[i].pending = 0;
    m.b[i].lease = M_NIL;
}

uint32_t m_find_lease(kvx_lease_id_t id)
{
    for (uint32_t i = 0; i < M_MAX_BLOCKS; i++) {
        if (m.l[i].live && m.l[i].id == id) {
            return i;
        }
    }
    return M_NIL;
}

void m_retire(uint32_t s)
{
    m.retired[m.n_retired++ % M_RING] = m.l[s].id;
    m.l[s].live = 0;
}

/* Status of a lease operation up to "the id names a live lease". */
kvx_status_t m_lease_status(kvx_lease_id_t id, uint32_t *slot_p)
{
    if (id == 0) {
        return KVX_ERR_INVALID_PARAM;
    }
    *slot_p = m_find_lease(id);
    return *slot_p == M_NIL ? KVX_ERR_STALE_HANDLE : KVX_OK;
}

kvx_status_t m_ref_status(kvx_block_ref_t ref)
{
    if (ref.block >= m.nb) {
        return KVX_ERR_OUT_OF_RANGE;
    }
    return m.b[ref.block].gen == ref.gen ? KVX_OK : KVX_ERR_STALE_HANDLE;
}

/* A new lease id must differ from every live and recently retired one. */
uint32_t m_open_lease(kvx_lease_id_t id, uint64_t deadline)
{
    uint32_t s = M_NIL;

    CHECK(id != 0, "new lease id is 0");
    CHECK(m_find_lease(id) == M_NIL, "lease id %llx reused while live",
          (unsigned long long)id);
    for (uint32_t i = 0; i < M_RING && i < m.n_retired; i++) {
        CHECK(m.retired[i] != id, "lease id %llx reused soon after retiring",
              (unsigned long long)id);
    }
    for (uint32_t i = 0; i < M_MAX_BLOCKS && s == M_NIL; i++) {
        s = m.l[i].live ? M_NIL : i;
    }
    m.l[s] = (m_lease_t){.live = 1, .id = id, .deadline = deadline};
    return s;
}

/* The allocator handed out @ref for a new reservation under lease slot @s:
 * a FREE block while the model has one, else the LRU CACHED one, evicted. */
void m_take(kvx_block_ref_t ref, uint32_t s)
{
    uint32_t i = ref.block, lru;

    CHECK(i < m.nb, "reserved block %u out of range", i);
    if (m_count(KVX_BLOCK_FREE) > 0) {
        CHECK(m.b[i].state == KVX_BLOCK_FREE,
              "reserved block %u is %s in the model, a FREE one exists", i,
              kvx_block_state_string(m.b[i].state));
    } else {
        lru = m_lru();
        CHECK(i == lru, "evicted block %u, LRU is %u", i, lru);
        m_free(i);
        m.evictions++;
        n_evicted++;
    }
    CHECK(ref.gen == m.b[i].gen, "block %u gen %u, model %u", i, ref.gen,
          m.b[i].gen);
    m.b[i].state = KVX_BLOCK_RESERVED;
    m.b[i].lease = s;
    m.l[s].blocks[m.l[s].n++] = i;
    remember_ref(ref);
}

void m_fence(uint32_t s)
{
    m.l[s].fenced = 1;
    for (uint32_t j = 0; j < m.l[s].n; j++) {
        m.b[m.l[s].blocks[j]].state = KVX_BLOCK_FENCED;
        m.b[m.l[s].blocks[j]].pending = 0;
    }
}
