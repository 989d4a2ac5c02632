/*
 * Local engine sessions, node side (engine_int.h): the holds and leases of
 * a session. Its per-block hold counts and unsealed leases, the requests
 * that make and drop them (Reserve, Seal, Release), lease expiry, dropping
 * all of them when the session ends, and the other requests served from
 * the allocator alone (Lookup, Stats).
 */
#include "engine_int.h"

#include "log_int.h"

#include <stdlib.h>

#define BODY(name) KVX__V1__ENVELOPE__BODY_##name

/* ------------------------------------------------------------------------
 * Holds: a count per block; the block's generation cannot change while
 * the session pins it, so the allocator's is the held one.
 */

int kvxi_session_holds(const kvxi_session_t *s, kvx_block_ref_t ref)
{
    kvx_block_info_t info;

    return s->holds != NULL && ref.block < s->eng->node->layout.num_blocks &&
           s->holds[ref.block] > 0 &&
           kvx_alloc_block_query(s->eng->node->alloc, ref.block, &info) ==
               KVX_OK &&
           info.gen == ref.gen;
}

void kvxi_session_hold_add(kvxi_session_t *s, kvx_block_ref_t ref)
{
    s->holds[ref.block]++;
}

void kvxi_engine_unpin(struct kvx_node *node, const kvx_block_ref_t *refs,
                       uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        kvx_status_t st = kvx_alloc_unpin(node->alloc, refs[i]);

        if (st != KVX_OK) {
            kvxi_warn("node %s: engine: unpin block %u (gen %u): %s",
                      node->node_id, refs[i].block, refs[i].gen,
                      kvx_status_string(st));
        }
    }
}

/* ------------------------------------------------------------------------
 * Leases.
 */

/* Forgets the session's lease *@p pp; @p free_blocks: abort it and lift
 * the fence at once (nobody writes a session's reservation but the engine,
 * which is gone or gave up). */
static void lease_drop(kvxi_session_t *s, kvxi_sess_lease_t **pp,
                       int free_blocks)
{
    kvxi_sess_lease_t *l = *pp;

    if (free_blocks) {
        kvx_alloc_lease_abort(s->eng->node->alloc, l->id);
        kvx_alloc_lease_unfence(s->eng->node->alloc, l->id);
    }
    *pp = l->next;
    free(l->refs);
    free(l);
}

/*
 * The engine writes its reservation through its own mapping, so only the
 * engine can say it stopped: an expired lease stays fenced (its blocks are
 * not handed out) until the engine seals it (STALE_HANDLE), releases its
 * blocks, or detaches.
 */
void kvxi_engine_leases_expire(kvxi_session_t *s, uint64_t now)
{
    for (kvxi_sess_lease_t *l = s->leases; l != NULL; l = l->next) {
        if (!l->expired && l->deadline_ns <= now) {
            kvxi_info("node %s: engine %s: lease %llx expired unsealed: %u "
                      "blocks fenced until the engine releases them",
                      s->eng->node->node_id, s->name, (unsigned long long)l->id,
                      l->n);
            kvx_alloc_lease_abort(s->eng->node->alloc, l->id);
            l->expired = 1;
        }
    }
}

/* Whether every ref of @p l is among @p b's. */
static int lease_named(const kvxi_sess_lease_t *l, const Kvx__V1__BlockRefs *b)
{
    for (uint32_t i = 0; i < l->n; i++) {
        size_t j = 0;

        while (j < b->n_blocks && (b->blocks[j] != l->refs[i].block ||
                                   b->gens[j] != l->refs[i].gen)) {
            j++;
        }
        if (j == b->n_blocks) {
            return 0;
        }
    }
    return 1;
}

/* Gives back each of the session's unsealed leases whose blocks are all
 * in @p b (the engine is done with them); returns the blocks freed. Each
 * named block counts for the lease the allocator says owns it; a lease
 * counted n times is checked ref by ref (a request may repeat a ref). */
static uint32_t leases_release(kvxi_session_t *s, const Kvx__V1__BlockRefs *b)
{
    kvx_alloc_h alloc = s->eng->node->alloc;
    kvxi_sess_lease_t **pp, *l;
    uint32_t freed = 0;

    for (size_t i = 0; i < b->n_blocks && s->leases != NULL; i++) {
        kvx_block_info_t info;

        if (kvx_alloc_block_query(alloc, b->blocks[i], &info) != KVX_OK ||
            info.lease == 0 || info.gen != b->gens[i]) {
            continue;
        }
        for (l = s->leases; l != NULL && l->id != info.lease; l = l->next) {
        }
        if (l != NULL) {
            l->named++;
        }
    }
    for (pp = &s->leases; (l = *pp) != NULL;) {
        int full = l->named >= l->n && lease_named(l, b);

        l->named = 0;
        if (full) {
            freed += l->n;
            lease_drop(s, pp, 1);
        } else {
            pp = &l->next;
        }
    }
    return freed;
}

void kvxi_engine_holds_end(kvxi_session_t *s)
{
    struct kvx_node *node = s->eng->node;

    while (s->leases != NULL) {
        lease_drop(s, &s->leases, 1);
    }
    for (uint32_t b = 0; s->holds != NULL && b < node->layout.num_blocks; b++) {
        kvx_block_info_t info;

        if (s->holds[b] > 0 &&
            kvx_alloc_block_query(node->alloc, b, &info) == KVX_OK) {
            kvx_block_ref_t ref = {b, info.gen};

            for (; s->holds[b] > 0; s->holds[b]--) {
                kvxi_engine_unpin(node, &ref, 1);
            }
        }
    }
    free(s->holds);
    s->holds = NULL;
}

/* ------------------------------------------------------------------------
 * Reserve, Seal, Release, Lookup, Stats: the requests served from the
 * node's allocator alone.
 */

static void reserve_reply(kvxi_session_t *s, uint64_t req_id, kvx_status_t st,
                          uint64_t lease, uint32_t n, uint32_t *blocks,
                          uint32_t *gens, uint8_t *mask)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT;
    Kvx__V1__ReserveReply r = KVX__V1__RESERVE_REPLY__INIT;
    Kvx__V1__BlockRefs refs = KVX__V1__BLOCK_REFS__INIT;

    r.status = (Kvx__V1__Status)kvxi_status_to_wire(st);
    if (st == KVX_OK) {
        r.lease_id = lease;
        r.block_count = n;
        refs.n_blocks = refs.n_gens = n;
        refs.blocks = blocks;
        refs.gens = gens;
        r.blocks = &refs;
        r.hit_mask.data = mask;
        r.hit_mask.len = ((size_t)n + 7) / 8;
    }
    env.request_id = req_id;
    env.body_case = BODY(RESERVE_REPLY);
    env.reserve_reply = &r;
    kvxi_session_send(s, &env);
}

void kvxi_engine_on_reserve(kvxi_session_t *s, const kvxi_envelope_t *env)
{
    const Kvx__V1__Reserve *rq = env->reserve;
    struct kvx_node *node = s->eng->node;
    /* more than the pool holds: NO_SPACE, before allocating for them */
    uint32_t n = rq->block_count <= node->layout.num_blocks ? rq->block_count
                                                            : 0,
             k = 0;
    uint64_t deadline =
        kvxi_node_now_ns() +
        (uint64_t)(rq->lease_ms ? rq->lease_ms : node->lease_ms) * 1000000ull;
    kvx_block_ref_t *refs = malloc(n * sizeof(*refs));
    uint8_t *hit = calloc(n, 1), *mask = calloc(((size_t)n + 7) / 8, 1);
    uint32_t *wire = malloc(2 * (size_t)n * sizeof(*wire));
    kvxi_sess_lease_t *l = calloc(1, sizeof(*l));
    kvx_lease_id_t lease = 0;
    kvx_status_t st;

    if (n == 0) {
        st = KVX_ERR_NO_SPACE;
    } else if (refs == NULL || hit == NULL || mask == NULL || wire == NULL ||
               l == NULL || (l->refs = malloc(n * sizeof(*l->refs))) == NULL) {
        st = KVX_ERR_NO_MEMORY;
    } else if (rq->keys.len > 0) {
        st = kvx_alloc_reserve_keyed(node->alloc,
                                     (const kvx_block_key_t *)rq->keys.data, n,
                                     deadline, &lease, refs, hit, NULL);
    } else {
        st = kvx_alloc_reserve(node->alloc, n, deadline, &lease, refs);
    }
    if (st != KVX_OK) {
        goto out;
    }
    for (uint32_t i = 0; i < n; i++) {
        wire[i] = refs[i].block;
        wire[n + i] = refs[i].gen;
        if (hit[i]) {
            mask[i / 8] |= (uint8_t)(1u << (i % 8));
            kvxi_session_hold_add(s, refs[i]);
        } else {
            l->refs[k++] = refs[i];
        }
    }
    if (lease != 0) {
        l->id = lease;
        l->deadline_ns = deadline;
        l->n = k;
        l->next = s->leases;
        s->leases = l;
        l = NULL;
    }
out:
    if (l != NULL) {
        free(l->refs);
        free(l);
    }
    reserve_reply(s, env->request_id, st, lease, n, wire, wire + n, mask);
    free(wire);
    free(mask);
    free(hit);
    free(refs);
}

void kvxi_engine_on_seal(kvxi_session_t *s, const kvxi_envelope_t *env)
{
    kvx_lease_id_t id = env->seal->lease_id;
    struct kvx_node *node = s->eng->node;
    kvxi_sess_lease_t **pp = &s->leases, *l;
    kvx_status_t st;

    kvxi_engine_leases_expire(s, kvxi_node_now_ns());
    while (*pp != NULL && (*pp)->id != id) {
        pp = &(*pp)->next;
    }
    if (*pp == NULL || (*pp)->expired) {
        if (*pp != NULL) {
            lease_drop(s, pp, 1); /* the engine learns: no more writes */
        }
        kvxi_session_result(s, env->request_id, KVX_ERR_STALE_HANDLE, 0);
        return;
    }
    l = *pp;
    st = kvx_alloc_lease_commit(node->alloc, id);
    if (st == KVX_OK) {
        for (uint32_t i = 0; i < l->n; i++) {
            kvxi_session_hold_add(s, l->refs[i]);
        }
        lease_drop(s, pp, 0);
    } else if (st == KVX_ERR_BAD_STATE) {
        lease_drop(s, pp, 1); /* fenced: expired meanwhile */
    } else {
        lease_drop(s, pp, 0);
    }
    kvxi_session_result(s, env->request_id, st, 0);
}

void kvxi_engine_on_release(kvxi_session_t *s, const kvxi_envelope_t *env)
{
    const Kvx__V1__BlockRefs *b = env->release->blocks;
    kvxi_envelope_t out = KVX__V1__ENVELOPE__INIT;
    Kvx__V1__ReleaseAck r = KVX__V1__RELEASE_ACK__INIT;
    uint32_t released = 0;

    for (size_t i = 0; i < b->n_blocks; i++) {
        kvx_block_ref_t ref = {b->blocks[i], b->gens[i]};

        if (kvxi_session_holds(s, ref)) {
            kvxi_engine_unpin(s->eng->node, &ref, 1);
            s->holds[ref.block]--;
            released++;
        }
    }
    released += leases_release(s, b);
    r.status = (Kvx__V1__Status)kvxi_status_to_wire(KVX_OK);
    r.transfer_id = env->release->transfer_id;
    r.released = released;
    out.request_id = env->request_id;
    out.body_case = BODY(RELEASE_ACK);
    out.release_ack = &r;
    kvxi_session_send(s, &out);
}

void kvxi_engine_on_lookup(kvxi_session_t *s, const kvxi_envelope_t *env)
{
    const ProtobufCBinaryData *k = &env->lookup->keys;
    kvxi_envelope_t out = KVX__V1__ENVELOPE__INIT;
    Kvx__V1__LookupReply r = KVX__V1__LOOKUP_REPLY__INIT;
    uint32_t n = (uint32_t)(k->len / KVXI_KEY_LEN), found = 0;
    kvx_status_t st;

    st = kvx_alloc_lookup(s->eng->node->alloc, (const kvx_block_key_t *)k->data,
                          n, &found, NULL);
    if (st != KVX_OK) {
        kvxi_session_error(s, env->request_id, st, "lookup failed");
        return;
    }
    r.key_count = n;
    r.prefix_blocks = found;
    out.request_id = env->request_id;
    out.body_case = BODY(LOOKUP_REPLY);
    out.lookup_reply = &r;
    kvxi_session_send(s, &out);
}

void kvxi_engine_on_stats(kvxi_session_t *s, const kvxi_envelope_t *env)
{
    kvxi_envelope_t out = KVX__V1__ENVELOPE__INIT;
    kvxi_stats_wire_t *w = malloc(sizeof(*w));

    if (w == NULL) {
        kvxi_session_error(s, env->request_id, KVX_ERR_NO_MEMORY,
                           "out of memory");
        return;
    }
    kvxi_node_stats_wire(s->eng->node, w);
    out.request_id = env->request_id;
    out.body_case = BODY(STATS_REPLY);
    out.stats_reply = &w->reply;
    kvxi_session_send(s, &out);
    free(w);
}
