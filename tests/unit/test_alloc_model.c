/*
 * Model-based randomized test of libkvx/alloc.c, lease.c and prefix.c.
 *
 * A reference model written from the header's contract (alloc_ref.c: plain
 * arrays, O(n) scans, its own LRU as a timestamp per block) predicts the
 * status and every output of each random call this driver makes; the
 * allocator must agree, and after every operation every block, the
 * counters, the deadlines and the prefix index are compared in full. The
 * model never asks the allocator what to expect: where the contract leaves
 * a choice (which FREE block a reservation gets, lease id values) the model
 * checks that the allocator's choice is a legal one.
 *
 * KVX_TEST_SEED (default fixed) and KVX_TEST_OPS (default 1000000) set the
 * run; the seed is printed first and a mismatch prints the op number.
 */
#include "ut.h"

#include "alloc_ref.h"

#include <kvx/kvx.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define M_BATCH 12 /* most blocks or keys per request */

/* Coverage of the interesting paths, printed at the end (with the model's
 * n_evicted). */
static unsigned long n_hits_total, n_collisions, n_expired;

static kvx_alloc_h alloc;
static uint64_t rng_state, seed;
static unsigned long op_no;
static const char *op_name;
static jmp_buf fail_jmp;

/* ---- helpers ------------------------------------------------------------ */

static uint64_t rng(void)
{
    /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint32_t rnd(uint32_t n)
{
    return (uint32_t)(rng() % n);
}

void model_fail(int line, const char *what, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr,
            "\nalloc_model: MISMATCH at op %lu (%s), seed %llu, "
            "line %d: %s\n  ",
            op_no, op_name, (unsigned long long)seed, line, what);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    longjmp(fail_jmp, 1);
}

static uint64_t fake_clock(void *arg)
{
    (void)arg;
    return m.now;
}

/* ---- full comparison after every operation ------------------------------ */

static void check_all(void)
{
    kvx_block_key_t keys[M_MAX_BLOCKS];
    kvx_block_ref_t refs[M_MAX_BLOCKS];
    uint32_t owner[M_MAX_BLOCKS], n_keyed = 0, n_found, cnt[5] = {0};
    uint64_t min = UINT64_MAX, d;
    kvx_block_info_t info;
    kvx_alloc_attr_t attr;
    uint8_t key_seen[M_MAX_KEYS];
    int any_active = 0;
    kvx_status_t st;

    memset(key_seen, 0, m.n_keys);
    for (uint32_t i = 0; i < m.nb; i++) {
        const m_block_t *b = &m.b[i];
        kvx_block_key_t k = key_bytes(b->key);

        cnt[b->state]++;
        CHECK(!b->keyed || b->state == KVX_BLOCK_READY ||
                  b->state == KVX_BLOCK_CACHED,
              "model: keyed block %u is %s", i,
              kvx_block_state_string(b->state));
        CHECK((b->pins > 0) == (b->state == KVX_BLOCK_READY),
              "model: block %u pins %u", i, b->pins);
        CHECK_ST(kvx_alloc_block_query(alloc, i, &info), KVX_OK);
        CHECK(info.state == b->state && info.gen == b->gen &&
                  info.pins == b->pins && info.keyed == b->keyed,
              "block %u: %s gen %u pins %u keyed %d; model %s %u %u %d", i,
              kvx_block_state_string(info.state), info.gen, info.pins,
              info.keyed, kvx_block_state_string(b->state), b->gen, b->pins,
              b->keyed);
        CHECK(!b->keyed || memcmp(&info.key, &k, sizeof(k)) == 0,
              "block %u key differs", i);
        if (b->state == KVX_BLOCK_RESERVED || b->state == KVX_BLOCK_FENCED) {
            const m_lease_t *l = &m.l[b->lease];

            CHECK(l->live && l->fenced == (b->state == KVX_BLOCK_FENCED),
                  "model: block %u lease state", i);
            CHECK(info.lease == l->id, "block %u lease %llx, model %llx", i,
                  (unsigned long long)info.lease, (unsigned long long)l->id);
        } else {
            CHECK(info.lease == 0, "block %u has lease %llx", i,
                  (unsigned long long)info.lease);
        }
        if (b->keyed) {
            CHECK(b->key < m.n_keys && !key_seen[b->key],
                  "model: key %u held twice", b->key);
            key_seen[b->key] = 1;
            owner[n_keyed] = i;
            keys[n_keyed++] = k;
        }
    }
    CHECK(cnt[0] + cnt[1] + cnt[2] + cnt[3] + cnt[4] == m.nb, "model sum");
    CHECK_ST(kvx_alloc_query(alloc, &attr), KVX_OK);
    CHECK(attr.block_count == m.nb && attr.n_free == cnt[0] &&
              attr.n_reserved == cnt[1] && attr.n_ready == cnt[2] &&
              attr.n_cached == cnt[3] && attr.n_fenced == cnt[4],
          "counts %u/%u/%u/%u/%u, model %u/%u/%u/%u/%u", attr.n_free,
          attr.n_reserved, attr.n_ready, attr.n_cached, attr.n_fenced, cnt[0],
          cnt[1], cnt[2], cnt[3], cnt[4]);
    CHECK(attr.n_keys == n_keyed, "n_keys %u, model %u", attr.n_keys, n_keyed);
    CHECK(attr.leases_active == m_live_leases(0) &&
              attr.leases_fenced == m_live_leases(1),
          "lease counts %u/%u", attr.leases_active, attr.leases_fenced);
    CHECK(attr.evictions == m.evictions && attr.expirations == m.expirations,
          "evictions %llu expirations %llu", (unsigned long long)attr.evictions,
          (unsigned long long)attr.expirations);
    /* Every keyed block is findable, at its current generation. */
    if (n_keyed > 0) {
        CHECK_ST(kvx_alloc_lookup(alloc, keys, n_keyed, &n_found, refs),
                 KVX_OK);
        CHECK(n_found == n_keyed, "found %u of %u keys", n_found, n_keyed);
        for (uint32_t j = 0; j < n_keyed; j++) {
            CHECK(refs[j].block == owner[j] && refs[j].gen == m.b[owner[j]].gen,
                  "key of block %u", owner[j]);
        }
    }
    for (uint32_t s = 0; s < M_MAX_BLOCKS; s++) {
        if (m.l[s].live && !m.l[s].fenced && m.l[s].deadline <= min) {
            min = m.l[s].deadline;
            any_active = 1;
        }
    }
    st = kvx_alloc_next_deadline(alloc, &d);
    if (!any_active) {
        CHECK_ST(st, KVX_ERR_NOT_FOUND);
    } else {
        CHECK_ST(st, KVX_OK);
        CHECK(d == min, "next deadline %llu, model %llu", (unsigned long long)d,
              (unsigned long long)min);
    }
}

/* ---- random inputs ------------------------------------------------------ */

static uint32_t pick_count(void)
{
    uint32_t r = rnd(100), batch = m.nb / 4 < M_BATCH ? m.nb / 4 : M_BATCH;

    if (r < 92) {
        return 1 + rnd(batch > 0 ? batch : 1);
    }
    if (r < 95) {
        return 1 + rnd(m.nb);
    }
    if (r < 97) {
        return 0;
    }
    return r < 99 ? m.nb + 1 + rnd(3) : UINT32_MAX;
}

static uint64_t pick_deadline(void)
{
    uint32_t r = rnd(100);

    if (r < 88) {
        return m.now + 1 + rnd(400);
    }
    if (r < 93) {
        return m.now;
    }
    if (r < 98) {
        return m.now - (m.now < 50 ? m.now : rnd(50));
    }
    return UINT64_MAX - rnd(2);
}

/* Mostly a block in one of the @states (bit per state), at its current
 * generation; else stale, random or out-of-range references. */
static kvx_block_ref_t pick_ref(unsigned states)
{
    uint32_t start = rnd(m.nb), i, r;

    if (rnd(100) < 80) {
        for (uint32_t j = 0; j < m.nb; j++) {
            i = (start + j) % m.nb;
            if (states & (1u << m.b[i].state)) {
                return (kvx_block_ref_t){i, m.b[i].gen};
            }
        }
    }
    r = rnd(100);
    if (r < 45) {
        return (kvx_block_ref_t){start, m.b[start].gen};
    }
    if (r < 75 && m.n_old > 0) {
        return m.old_refs[rnd(m.n_old < M_RING ? m.n_old : M_RING)];
    }
    if (r < 90) {
        return (kvx_block_ref_t){start, m.b[start].gen + (rnd(2) ? 1 : -1)};
    }
    return (kvx_block_ref_t){r < 97 ? m.nb + rnd(4) : UINT32_MAX, 1};
}

/* Mostly a live lease (active if @fenced is 0, fenced if 1, any if -1);
 * else retired, zero or made-up ids. */
static kvx_lease_id_t pick_lease(int fenced)
{
    uint32_t start = rnd(M_MAX_BLOCKS), s, r;
    uint32_t slots = m.max_leases < 8 ? m.max_leases : 8;

    r = rnd(100);
    for (uint32_t j = 0; j < M_MAX_BLOCKS && r < 85; j++) {
        s = (start + j) % M_MAX_BLOCKS;
        if (m.l[s].live && (fenced < 0 || m.l[s].fenced == fenced)) {
            return m.l[s].id;
        }
    }
    r = rnd(100);
    for (uint32_t j = 0; j < M_MAX_BLOCKS && r < 30; j++) {
        s = (start + j) % M_MAX_BLOCKS;
        if (m.l[s].live) {
            return m.l[s].id;
        }
    }
    if (r < 70 && m.n_retired > 0) {
        return m.retired[rnd(m.n_retired < M_RING ? m.n_retired : M_RING)];
    }
    if (r < 80) {
        return 0;
    }
    return ((uint64_t)rnd(4) << 32) | (uint64_t)rnd(slots + 2);
}

static void pick_keys(uint32_t *kn, uint32_t n)
{
    uint32_t start = rnd(m.n_keys);

    /* Consecutive numbers: requests share prefixes, so hits happen. */
    for (uint32_t i = 0; i < n; i++) {
        kn[i] = (start + i) % m.n_keys;
        if (i > 0 && rnd(12) == 0) {
            kn[i] = kn[i - 1];
        } else if (rnd(16) == 0) {
            kn[i] = rnd(m.n_keys);
        }
    }
}

/* ---- operations --------------------------------------------------------- */

static kvx_status_t op_reserve(void)
{
    kvx_block_ref_t refs[M_MAX_BLOCKS];
    uint32_t count = pick_count(), s;
    uint64_t dl = pick_deadline();
    kvx_lease_id_t id = 0;
    kvx_status_t want, st;

    if (count == 0 || count > m.nb) {
        want = KVX_ERR_INVALID_PARAM;
    } else if (dl <= m.now) {
        want = KVX_ERR_TIMEOUT;
    } else if (count > m_count(KVX_BLOCK_FREE) + m_count(KVX_BLOCK_CACHED) ||
               m_live_leases(-1) >= m.max_leases) {
        want = KVX_ERR_NO_SPACE;
    } else {
        want = KVX_OK;
    }
    st = kvx_alloc_reserve(alloc, count, dl, &id, refs);
    CHECK_ST(st, want);
    if (st == KVX_OK) {
        s = m_open_lease(id, dl);
        for (uint32_t i = 0; i < count; i++) {
            m_take(refs[i], s);
        }
    }
    return st;
}

static kvx_status_t op_reserve_keyed(void)
{
    uint32_t kn[M_MAX_BLOCKS], owner[M_MAX_BLOCKS], hits[M_MAX_BLOCKS];
    kvx_block_key_t keys[M_MAX_BLOCKS];
    kvx_block_ref_t refs[M_MAX_BLOCKS];
    uint8_t hit[M_MAX_BLOCKS];
    uint32_t count = pick_count(), n_miss = 0, n_cached_hits = 0, s;
    uint32_t n_hits = 777, *n_hits_p = rnd(4) ? &n_hits : NULL;
    uint64_t dl = pick_deadline();
    kvx_lease_id_t id = 77;
    kvx_status_t want = KVX_OK, st;

    memset(hits, 0, sizeof(hits));
    if (count == 0 || count > m.nb) {
        want = KVX_ERR_INVALID_PARAM;
    } else {
        pick_keys(kn, count);
        for (uint32_t i = 0; i < count; i++) {
            keys[i] = key_bytes(kn[i]);
            owner[i] = m_owner(kn[i]);
            if (owner[i] == M_NIL) {
                n_miss++;
            } else if (hits[owner[i]]++ == 0 &&
                       m.b[owner[i]].state == KVX_BLOCK_CACHED) {
                n_cached_hits++;
            }
        }
        if (n_miss > 0 && dl <= m.now) {
            want = KVX_ERR_TIMEOUT;
        } else if (n_miss > 0 &&
                   (n_miss > m_count(KVX_BLOCK_FREE) +
                                 m_count(KVX_BLOCK_CACHED) - n_cached_hits ||
                    m_live_leases(-1) >= m.max_leases)) {
            want = KVX_ERR_NO_SPACE;
        }
    }
    st = kvx_alloc_reserve_keyed(alloc, keys, count, dl, &id, refs, hit,
                                 n_hits_p);
    CHECK_ST(st, want);
    if (st != KVX_OK) {
        CHECK(id == 77, "lease id written on error");
        return st;
    }
    CHECK(n_hits_p == NULL || n_hits == count - n_miss, "n_hits %u, model %u",
          n_hits, count - n_miss);
    CHECK((id == 0) == (n_miss == 0), "lease %llx with %u misses",
          (unsigned long long)id, n_miss);
    for (uint32_t i = 0; i < count; i++) {
        uint32_t o = owner[i];

        CHECK(hit[i] == (o != M_NIL), "hit[%u] = %u, owner %u", i, hit[i], o);
        if (o == M_NIL) {
            continue;
        }
        CHECK(refs[i].block == o && refs[i].gen == m.b[o].gen,
              "hit %u: ref %u/%u, model %u/%u", i, refs[i].block, refs[i].gen,
              o, m.b[o].gen);
        m.b[o].state = KVX_BLOCK_READY;
        m.b[o].pins++;
        n_hits_total++;
    }
    if (n_miss > 0) {
        s = m_open_lease(id, dl);
        for (uint32_t i = 0; i < count; i++) {
            if (owner[i] == M_NIL) {
                m_take(refs[i], s);
                m.b[refs[i].block].pending = 1;
                m.b[refs[i].block].pending_key = kn[i];
            }
        }
    }
    return st;
}

static kvx_status_t op_commit(void)
{
    kvx_lease_id_t id = pick_lease(0);
    kvx_status_t want, st;
    uint32_t s = M_NIL;

    want = m_lease_status(id, &s);
    if (want == KVX_OK && m.l[s].fenced) {
        want = KVX_ERR_BAD_STATE;
    }
    st = kvx_alloc_lease_commit(alloc, id);
    CHECK_ST(st, want);
    if (st != KVX_OK) {
        return st;
    }
    for (uint32_t j = 0; j < m.l[s].n; j++) {
        m_block_t *b = &m.b[m.l[s].blocks[j]];

        b->state = KVX_BLOCK_READY;
        b->pins = 1;
        b->lease = M_NIL;
        /* A key another block took meanwhile is skipped. */
        if (b->pending && m_owner(b->pending_key) == M_NIL) {
            b->keyed = 1;
            b->key = b->pending_key;
        } else if (b->pending) {
            n_collisions++;
        }
        b->pending = 0;
    }
    m_retire(s);
    return st;
}

static kvx_status_t op_abort(void)
{
    kvx_lease_id_t id = pick_lease(rnd(4) == 0 ? 1 : 0);
    kvx_status_t want, st;
    uint32_t s = M_NIL;

    want = m_lease_status(id, &s);
    st = kvx_alloc_lease_abort(alloc, id);
    CHECK_ST(st, want);
    if (st == KVX_OK && !m.l[s].fenced) {
        m_fence(s);
    }
    return st;
}

static kvx_status_t op_unfence(void)
{
    kvx_lease_id_t id = pick_lease(rnd(5) == 0 ? 0 : 1);
    kvx_status_t want, st;
    uint32_t s = M_NIL;

    want = m_lease_status(id, &s);
    if (want == KVX_OK && !m.l[s].fenced) {
        want = KVX_ERR_BAD_STATE;
    }
    st = kvx_alloc_lease_unfence(alloc, id);
    CHECK_ST(st, want);
    if (st == KVX_OK) {
        for (uint32_t j = 0; j < m.l[s].n; j++) {
            m_free(m.l[s].blocks[j]);
        }
        m_retire(s);
    }
    return st;
}

static kvx_status_t op_extend(void)
{
    kvx_lease_id_t id = pick_lease(rnd(6) == 0 ? 1 : 0);
    uint64_t dl = pick_deadline();
    kvx_status_t want, st;
    uint32_t s = M_NIL;

    want = m_lease_status(id, &s);
    if (want == KVX_OK && m.l[s].fenced) {
        want = KVX_ERR_BAD_STATE;
    } else if (want == KVX_OK && dl <= m.now) {
        want = KVX_ERR_TIMEOUT;
    }
    st = kvx_alloc_lease_extend(alloc, id, dl);
    CHECK_ST(st, want);
    if (st == KVX_OK) {
        m.l[s].deadline = dl;
    }
    return st;
}

typedef struct expired {
    kvx_lease_id_t ids[M_MAX_BLOCKS + 1];
    uint32_t n;
} expired_t;

static void on_expired(kvx_lease_id_t lease, void *arg)
{
    expired_t *e = arg;

    if (e->n <= M_MAX_BLOCKS) {
        e->ids[e->n] = lease;
    }
    e->n++;
}

static kvx_status_t op_expire(void)
{
    expired_t e = {.n = 0};
    uint32_t n = 777, want_n = 0, s, prev = M_NIL;
    int use_cb = rnd(4) != 0;
    kvx_status_t st;

    m.now += rnd(3) ? rnd(100) : 0;
    for (s = 0; s < M_MAX_BLOCKS; s++) {
        want_n += m.l[s].live && !m.l[s].fenced && m.l[s].deadline <= m.now;
    }
    st = kvx_alloc_expire(alloc, use_cb ? on_expired : NULL, &e,
                          rnd(5) ? &n : NULL);
    CHECK_ST(st, KVX_OK);
    CHECK(n == 777 || n == want_n, "expired %u, model %u", n, want_n);
    if (use_cb) {
        CHECK(e.n == want_n, "callback ran %u times, model %u", e.n, want_n);
        /* Each due lease once, earliest deadline first. */
        for (uint32_t j = 0; j < e.n; j++) {
            s = m_find_lease(e.ids[j]);
            CHECK(s != M_NIL && !m.l[s].fenced && m.l[s].deadline <= m.now,
                  "callback for lease %llx", (unsigned long long)e.ids[j]);
            CHECK(prev == M_NIL || m.l[prev].deadline <= m.l[s].deadline,
                  "expiry out of deadline order");
            m_fence(s);
            prev = s;
        }
    } else {
        for (s = 0; s < M_MAX_BLOCKS; s++) {
            if (m.l[s].live && !m.l[s].fenced && m.l[s].deadline <= m.now) {
                m_fence(s);
            }
        }
    }
    m.expirations += want_n;
    n_expired += want_n;
    return st;
}

#define STATE_BIT(s) (1u << (s))

static kvx_status_t op_pin(void)
{
    kvx_block_ref_t ref =
        pick_ref(STATE_BIT(KVX_BLOCK_READY) | STATE_BIT(KVX_BLOCK_CACHED));
    kvx_status_t want = m_ref_status(ref), st;
    m_block_t *b = ref.block < m.nb ? &m.b[ref.block] : NULL;

    if (want == KVX_OK && b->state != KVX_BLOCK_READY &&
        b->state != KVX_BLOCK_CACHED) {
        want = KVX_ERR_BAD_STATE;
    }
    st = kvx_alloc_pin(alloc, ref);
    CHECK_ST(st, want);
    if (st == KVX_OK) {
        b->state = KVX_BLOCK_READY;
        b->pins++;
    }
    return st;
}

/* One unpin, or a burst on the same reference: a holder letting go of
 * everything, which also ends in double releases. */
static kvx_status_t op_unpin(void)
{
    /* Sometimes aim at CACHED or FREE blocks: double releases. */
    kvx_block_ref_t ref = pick_ref(rnd(8) ? STATE_BIT(KVX_BLOCK_READY)
                                          : STATE_BIT(KVX_BLOCK_CACHED) |
                                                STATE_BIT(KVX_BLOCK_FREE));
    uint32_t n = 1;
    kvx_status_t want, st, first = KVX_OK;

    if (ref.block < m.nb && m.b[ref.block].pins > 0 && rnd(2) == 0) {
        n = m.b[ref.block].pins + rnd(2);
    }
    for (uint32_t j = 0; j < n; j++) {
        m_block_t *b = ref.block < m.nb ? &m.b[ref.block] : NULL;

        want = m_ref_status(ref);
        if (want == KVX_OK && b->state != KVX_BLOCK_READY) {
            want = KVX_ERR_BAD_STATE;
        }
        st = kvx_alloc_unpin(alloc, ref);
        CHECK_ST(st, want);
        if (st == KVX_OK && --b->pins == 0) {
            if (b->keyed) {
                b->state = KVX_BLOCK_CACHED;
                b->stamp = ++m.stamp;
            } else {
                m_free(ref.block);
            }
        }
        first = j == 0 ? st : first;
    }
    return first;
}

static kvx_status_t op_set_key(void)
{
    kvx_block_ref_t ref = pick_ref(STATE_BIT(KVX_BLOCK_READY));
    uint32_t kn = rnd(m.n_keys);
    kvx_block_key_t key = key_bytes(kn);
    kvx_status_t want = m_ref_status(ref), st;
    m_block_t *b = ref.block < m.nb ? &m.b[ref.block] : NULL;

    if (want == KVX_OK && (b->state != KVX_BLOCK_READY || b->keyed)) {
        want = KVX_ERR_BAD_STATE;
    } else if (want == KVX_OK && m_owner(kn) != M_NIL) {
        want = KVX_ERR_EXISTS;
    }
    st = kvx_alloc_set_key(alloc, ref, &key);
    CHECK_ST(st, want);
    if (st == KVX_OK) {
        b->keyed = 1;
        b->key = kn;
    }
    return st;
}

static kvx_status_t op_lookup(void)
{
    uint32_t kn[M_BATCH], count = rnd(M_BATCH + 1), want_n = 0, n = 777, o;
    kvx_block_key_t keys[M_BATCH];
    kvx_block_ref_t refs[M_BATCH];
    int use_refs = rnd(3) != 0;
    kvx_status_t st;

    pick_keys(kn, count);
    for (uint32_t i = 0; i < count; i++) {
        keys[i] = key_bytes(kn[i]);
    }
    while (want_n < count && m_owner(kn[want_n]) != M_NIL) {
        want_n++;
    }
    st = kvx_alloc_lookup(alloc, keys, count, &n, use_refs ? refs : NULL);
    CHECK_ST(st, KVX_OK);
    CHECK(n == want_n, "lookup found %u, model %u", n, want_n);
    for (uint32_t i = 0; use_refs && i < n; i++) {
        o = m_owner(kn[i]);
        CHECK(refs[i].block == o && refs[i].gen == m.b[o].gen, "lookup ref %u",
              i);
    }
    return st;
}

/* Calls that must fail without changing anything. */
static kvx_status_t op_bad(void)
{
    kvx_block_key_t key = key_bytes(0);
    kvx_block_ref_t ref = {0, m.b[0].gen};
    kvx_lease_id_t id;
    kvx_block_info_t info;
    kvx_status_t st = KVX_OK, want = KVX_ERR_INVALID_PARAM;
    uint8_t hit;
    uint32_t n;

    switch (rnd(8)) {
    case 0:
        st = kvx_alloc_block_query(alloc, m.nb + rnd(3), &info);
        want = KVX_ERR_OUT_OF_RANGE;
        break;
    case 1: st = kvx_alloc_reserve(alloc, 1, m.now + 10, NULL, &ref); break;
    case 2:
        st = kvx_alloc_reserve_keyed(alloc, &key, 1, m.now + 10, &id, &ref,
                                     NULL, &n);
        break;
    case 3:
        st = kvx_alloc_reserve_keyed(alloc, NULL, 1, m.now + 10, &id, &ref,
                                     &hit, &n);
        break;
    case 4: st = kvx_alloc_set_key(alloc, ref, NULL); break;
    case 5: st = kvx_alloc_lookup(alloc, &key, 1, NULL, NULL); break;
    case 6: st = kvx_alloc_block_query(alloc, 0, NULL); break;
    default: st = kvx_alloc_next_deadline(alloc, NULL); break;
    }
    CHECK_ST(st, want);
    return st;
}

static kvx_status_t op_tick(void)
{
    m.now += rnd(60);
    return KVX_OK;
}

typedef struct op {
    const char *name;
    kvx_status_t (*fn)(void);
    unsigned weight;
    unsigned long ok, err;
} op_t;

static op_t ops[] = {
    {"reserve", op_reserve, 10, 0, 0},
    {"reserve_keyed", op_reserve_keyed, 14, 0, 0},
    {"commit", op_commit, 10, 0, 0},
    {"abort", op_abort, 5, 0, 0},
    {"unfence", op_unfence, 6, 0, 0},
    {"extend", op_extend, 4, 0, 0},
    {"expire", op_expire, 4, 0, 0},
    {"tick", op_tick, 4, 0, 0},
    {"pin", op_pin, 4, 0, 0},
    {"unpin", op_unpin, 30, 0, 0},
    {"set_key", op_set_key, 5, 0, 0},
    {"lookup", op_lookup, 4, 0, 0},
    {"bad", op_bad, 4, 0, 0},
};
#define N_OPS (sizeof(ops) / sizeof(ops[0]))

/* ---- driver ------------------------------------------------------------- */

static void epoch_start(void)
{
    static const uint32_t sizes[] = {1,  2,  3,   8,   16,  32,
                                     64, 64, 100, 200, 128, 256};
    kvx_alloc_params_t params = {
        .field_mask =
            KVX_ALLOC_PARAM_FIELD_BLOCK_COUNT | KVX_ALLOC_PARAM_FIELD_CLOCK,
        .clock = fake_clock,
    };
    uint32_t r = rnd(4);

    memset(&m, 0, sizeof(m));
    m.nb = sizes[rnd(sizeof(sizes) / sizeof(sizes[0]))];
    m.n_keys = m.nb + 2 + rnd(m.nb + 1);
    m.max_leases = m.nb;
    if (r == 0) {
        m.max_leases = 1 + rnd(4);
    } else if (r == 1) {
        m.max_leases = rnd(2) ? 3 * m.nb : UINT32_MAX;
    }
    if (r < 2) {
        params.field_mask |= KVX_ALLOC_PARAM_FIELD_MAX_LEASES;
        params.max_leases = m.max_leases;
    }
    m.now = rnd(3) ? 1 + rnd(1000000) : 0;
    for (uint32_t i = 0; i < m.nb; i++) {
        m.b[i].gen = 1;
        m.b[i].lease = M_NIL;
    }
    params.block_count = m.nb;
    CHECK_ST(kvx_alloc_create(&params, &alloc), KVX_OK);
}

static unsigned long env_ulong(const char *name, unsigned long dflt)
{
    const char *s = getenv(name);
    char *end;
    unsigned long v;

    if (s == NULL || *s == '\0') {
        return dflt;
    }
    v = strtoul(s, &end, 0);
    return *end == '\0' ? v : dflt;
}

static void model_run(void)
{
    unsigned long total = env_ulong("KVX_TEST_OPS", 1000000);
    unsigned long epoch_left = 0, epochs = 0, total_weight = 0;
    clock_t t0 = clock();

    seed = env_ulong("KVX_TEST_SEED", 20240611);
    rng_state = seed;
    printf("\nalloc_model: seed %llu, %lu ops (KVX_TEST_SEED, KVX_TEST_OPS)\n",
           (unsigned long long)seed, total);
    for (size_t k = 0; k < N_OPS; k++) {
        total_weight += ops[k].weight;
    }
    for (op_no = 0; op_no < total; op_no++) {
        unsigned long w;
        size_t k = 0;
        kvx_status_t st;

        if (epoch_left == 0) {
            op_name = "create";
            kvx_alloc_destroy(alloc);
            alloc = NULL;
            epoch_start();
            epoch_left = 5000 + rnd(25000);
            epochs++;
        }
        epoch_left--;
        w = rnd((uint32_t)total_weight);
        while (w >= ops[k].weight) {
            w -= ops[k++].weight;
        }
        op_name = ops[k].name;
        st = ops[k].fn();
        if (st == KVX_OK) {
            ops[k].ok++;
        } else {
            ops[k].err++;
        }
        check_all();
    }
    printf("alloc_model: %lu epochs, %.1f s cpu, %lu evictions, %lu hits, "
           "%lu commit key collisions, %lu expiries; ok/error per op:",
           epochs, (double)(clock() - t0) / CLOCKS_PER_SEC, n_evicted,
           n_hits_total, n_collisions, n_expired);
    for (size_t k = 0; k < N_OPS; k++) {
        printf("%s %s %lu/%lu", k % 4 ? "," : "\n ", ops[k].name, ops[k].ok,
               ops[k].err);
    }
    printf("\n");
}

static void test_alloc_model_random_ops(void)
{
    alloc = NULL;
    /* A mismatch longjmps here from deep inside an operation. */
    if (setjmp(fail_jmp) != 0) {
        CU_FAIL("model mismatch (details on stderr)");
    } else {
        model_run();
    }
    kvx_alloc_destroy(alloc);
    alloc = NULL;
}

static const ut_test_t alloc_model_tests[] = {
    UT_TEST(test_alloc_model_random_ops),
    UT_END,
};

int main(void)
{
    static const ut_suite_t suites[] = {
        {"alloc_model", alloc_model_tests},
        {NULL, NULL},
    };

    return ut_main(suites);
}
