/*
 * Pull transfers, holder side (pull.c is the puller). The holder (prefill)
 * publishes a request's blocks under a lease; the puller (decode) reserves its
 * destination (deduped by key), sends AllocateRequest{PULL} naming the request,
 * and the holder answers with its refs and takes a read hold (one pin per
 * block) until the puller's Release or the connection's end. Over RMA the
 * puller gets the missing blocks itself; over AM it grants the holder its
 * reservation with an AllocateReply of its own and the holder pushes into it
 * (the push sender of xfer_send.c, the push receiver of xfer_recv.c).
 */
#include "node_int.h"

#include "log_int.h"

#include <kvx/ticket.h>

#include <stdlib.h>
#include <string.h>

#define PUBLISH_FIELDS_ALL                                                     \
    (KVX_PUBLISH_PARAM_FIELD_REQUEST_ID | KVX_PUBLISH_PARAM_FIELD_BLOCKS |     \
     KVX_PUBLISH_PARAM_FIELD_KEYS | KVX_PUBLISH_PARAM_FIELD_LEASE)

typedef struct pub_reader {
    struct kvx_peer *peer;
    uint64_t tid;
    struct pub_reader *next;
} pub_reader_t;

struct kvxi_pub {
    kvxi_pub_t *next;
    uint64_t request_id;
    uint32_t n;
    kvx_block_ref_t *refs;
    uint64_t deadline_ns;
    int live; /**< the node's own pins are held (not expired/withdrawn) */
    pub_reader_t *readers;
};

/* ---- holder ---- */

static void pub_unpin(struct kvx_node *node, const kvxi_pub_t *pub, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        kvx_alloc_unpin(node->alloc, pub->refs[i]);
    }
}

static kvx_status_t pub_pin(struct kvx_node *node, const kvxi_pub_t *pub)
{
    kvx_status_t status;

    for (uint32_t i = 0; i < pub->n; i++) {
        status = kvx_alloc_pin(node->alloc, pub->refs[i]);
        if (status != KVX_OK) {
            pub_unpin(node, pub, i);
            return status;
        }
    }
    return KVX_OK;
}

/* Frees @p pub once neither the node nor any reader holds it. */
static void pub_settle(struct kvx_node *node, kvxi_pub_t *pub)
{
    kvxi_pub_t **pp;

    if (pub->live || pub->readers != NULL) {
        return;
    }
    for (pp = &node->pubs; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == pub) {
            *pp = pub->next;
            break;
        }
    }
    free(pub->refs);
    free(pub);
}

static void pub_end(struct kvx_node *node, kvxi_pub_t *pub)
{
    if (pub->live) {
        pub->live = 0;
        pub_unpin(node, pub, pub->n);
    }
    pub_settle(node, pub);
}

static kvxi_pub_t *pub_live(struct kvx_node *node, uint64_t request_id)
{
    for (kvxi_pub_t *pub = node->pubs; pub != NULL; pub = pub->next) {
        if (pub->live && pub->request_id == request_id) {
            return pub;
        }
    }
    return NULL;
}

static pub_reader_t **reader_find(struct kvx_node *node, struct kvx_peer *peer,
                                  uint64_t tid, kvxi_pub_t **pub_p)
{
    for (kvxi_pub_t *pub = node->pubs; pub != NULL; pub = pub->next) {
        for (pub_reader_t **rp = &pub->readers; *rp != NULL;
             rp = &(*rp)->next) {
            if ((*rp)->peer == peer && (*rp)->tid == tid) {
                *pub_p = pub;
                return rp;
            }
        }
    }
    return NULL;
}

int kvxi_pull_is_reader(struct kvx_peer *peer, uint64_t tid)
{
    kvxi_pub_t *pub;

    return reader_find(peer->node, peer, tid, &pub) != NULL;
}

/* Drops the read hold *rp of @p pub; may free @p pub. Returns the blocks
 * released. */
static uint32_t reader_drop(struct kvx_node *node, kvxi_pub_t *pub,
                            pub_reader_t **rp)
{
    pub_reader_t *r = *rp;
    uint32_t n = pub->n;

    *rp = r->next;
    free(r);
    pub_unpin(node, pub, n);
    pub_settle(node, pub); /* frees it when unpublished and unread */
    return n;
}

kvx_status_t kvx_node_publish(kvx_node_h node, const kvx_publish_params_t *p,
                              kvx_ticket_t *ticket_p)
{
    kvx_ticket_t ticket;
    kvx_block_info_t info;
    kvxi_pub_t *pub;
    uint32_t lease_ms;
    kvx_status_t status;

    if (node == NULL || p == NULL ||
        (p->field_mask & ~(uint64_t)PUBLISH_FIELDS_ALL) ||
        !(p->field_mask & KVX_PUBLISH_PARAM_FIELD_REQUEST_ID) ||
        !(p->field_mask & KVX_PUBLISH_PARAM_FIELD_BLOCKS) ||
        p->blocks == NULL || p->n_blocks == 0 ||
        p->n_blocks > KVXI_NODE_XFER_BLOCKS_MAX ||
        ((p->field_mask & KVX_PUBLISH_PARAM_FIELD_KEYS) && p->keys == NULL) ||
        ((p->field_mask & KVX_PUBLISH_PARAM_FIELD_LEASE) &&
         p->lease_ms > KVXI_LEASE_MS_MAX)) {
        return KVX_ERR_INVALID_PARAM;
    }
    if (node->shutting_down) {
        return KVX_ERR_BAD_STATE;
    }
    if (pub_live(node, p->request_id) != NULL) {
        return KVX_ERR_EXISTS;
    }
    if (ticket_p != NULL) {
        status = kvx_node_ticket(node, p->request_id, &ticket);
        if (status != KVX_OK) {
            return status;
        }
    }
    for (uint32_t i = 0; i < p->n_blocks; i++) {
        status = kvx_alloc_block_query(node->alloc, p->blocks[i].block, &info);
        if (status == KVX_OK && info.gen != p->blocks[i].gen) {
            status = KVX_ERR_STALE_HANDLE;
        } else if (status == KVX_OK && info.state != KVX_BLOCK_READY) {
            status = KVX_ERR_BAD_STATE;
        }
        if (status != KVX_OK) {
            kvxi_error("node %s: publish %llu: block ref %u (gen %u): %s",
                       node->node_id, (unsigned long long)p->request_id,
                       p->blocks[i].block, p->blocks[i].gen,
                       kvx_status_string(status));
            return status;
        }
    }
    pub = calloc(1, sizeof(*pub));
    if (pub == NULL) {
        return KVX_ERR_NO_MEMORY;
    }
    pub->refs = malloc(p->n_blocks * sizeof(*pub->refs));
    if (pub->refs == NULL) {
        free(pub);
        return KVX_ERR_NO_MEMORY;
    }
    memcpy(pub->refs, p->blocks, p->n_blocks * sizeof(*pub->refs));
    pub->n = p->n_blocks;
    pub->request_id = p->request_id;
    status = pub_pin(node, pub);
    if (status != KVX_OK) {
        free(pub->refs);
        free(pub);
        return status;
    }
    lease_ms = (p->field_mask & KVX_PUBLISH_PARAM_FIELD_LEASE) && p->lease_ms
                   ? p->lease_ms
                   : node->lease_ms;
    pub->deadline_ns = kvxi_node_now_ns() + (uint64_t)lease_ms * 1000000ull;
    pub->live = 1;
    pub->next = node->pubs;
    node->pubs = pub;
    kvxi_node_timer_rearm(node);
    if (ticket_p != NULL) {
        *ticket_p = ticket;
    }
    return KVX_OK;
}

kvx_status_t kvx_node_unpublish(kvx_node_h node, uint64_t request_id)
{
    kvxi_pub_t *pub;

    if (node == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    pub = pub_live(node, request_id);
    if (pub == NULL) {
        return KVX_ERR_NOT_FOUND;
    }
    pub_end(node, pub);
    kvxi_node_timer_rearm(node);
    return KVX_OK;
}

void kvxi_pull_check_leases(struct kvx_node *node, uint64_t now,
                            uint64_t *next_p)
{
    kvxi_pub_t *pub, *next;

    for (pub = node->pubs; pub != NULL; pub = next) {
        next = pub->next;
        if (!pub->live) {
            continue;
        }
        if (now != 0 && pub->deadline_ns <= now) {
            kvxi_debug("node %s: publication %llu expired", node->node_id,
                       (unsigned long long)pub->request_id);
            pub_end(node, pub);
        } else if (pub->deadline_ns < *next_p) {
            *next_p = pub->deadline_ns;
        }
    }
}

void kvxi_pull_peer_down(struct kvx_peer *peer)
{
    struct kvx_node *node = peer->node;
    kvxi_pub_t *pub, *next;

    for (pub = node->pubs; pub != NULL; pub = next) {
        pub_reader_t **rp = &pub->readers;

        next = pub->next;
        while (*rp != NULL) {
            int last;

            if ((*rp)->peer != peer) {
                rp = &(*rp)->next;
                continue;
            }
            /* the last reader of a withdrawn publication frees it */
            last = !pub->live && pub->readers == *rp && (*rp)->next == NULL;
            reader_drop(node, pub, rp);
            if (last) {
                break;
            }
        }
    }
}

void kvxi_pull_free_all(struct kvx_node *node)
{
    while (node->pubs != NULL) {
        kvxi_pub_t *pub = node->pubs;

        while (pub->readers != NULL) {
            pub_reader_t *r = pub->readers;

            pub->readers = r->next;
            free(r);
            pub_unpin(node, pub, pub->n);
        }
        pub_end(node, pub);
    }
}

static void pull_reply(struct kvx_peer *peer, uint64_t req_id, uint64_t tid,
                       kvx_status_t status, const kvxi_pub_t *pub)
{
    /* The read hold is named by the transfer: lease_id = tid. */
    kvx_status_t st = kvxi_peer_send_alloc_reply(
        peer, req_id, 0, tid, status, tid, pub != NULL ? pub->refs : NULL, NULL,
        pub != NULL ? pub->n : 0);

    if (st == KVX_ERR_NO_MEMORY) {
        kvxi_peer_send_error(peer, req_id, KVX_ERR_NO_MEMORY, "out of memory");
    }
}

void kvxi_pull_on_request(struct kvx_peer *peer, const kvxi_envelope_t *env)
{
    const Kvx__V1__AllocateRequest *r = env->allocate_request;
    struct kvx_node *node = peer->node;
    kvxi_pub_t *pub = NULL;
    pub_reader_t *reader;
    kvx_status_t status;
    char text[96];

    if (node->shutting_down) {
        pull_reply(peer, env->request_id, r->transfer_id, KVX_ERR_PEER_DOWN,
                   NULL);
        return;
    }
    if (kvxi_tid_is_ours(peer, r->transfer_id)) {
        pull_reply(peer, env->request_id, r->transfer_id, KVX_ERR_INVALID_PARAM,
                   NULL);
        return;
    }
    if (reader_find(node, peer, r->transfer_id, &pub) != NULL) {
        pull_reply(peer, env->request_id, r->transfer_id, KVX_OK, pub);
        return; /* repeated request: same answer */
    }
    pub = pub_live(node, r->request_id);
    if (pub == NULL) {
        snprintf(text, sizeof(text), "pull: request %llu is not published",
                 (unsigned long long)r->request_id);
        kvxi_peer_send_error(peer, env->request_id, KVX_ERR_NOT_FOUND, text);
        return;
    }
    if (r->block_count != pub->n) {
        pull_reply(peer, env->request_id, r->transfer_id, KVX_ERR_INVALID_PARAM,
                   NULL);
        return;
    }
    reader = calloc(1, sizeof(*reader));
    status = reader != NULL ? pub_pin(node, pub) : KVX_ERR_NO_MEMORY;
    if (status != KVX_OK) {
        free(reader);
        pull_reply(peer, env->request_id, r->transfer_id, status, NULL);
        return;
    }
    reader->peer = peer;
    reader->tid = r->transfer_id;
    reader->next = pub->readers;
    pub->readers = reader;
    pull_reply(peer, env->request_id, r->transfer_id, KVX_OK, pub);
}

void kvxi_pull_send_abort(struct kvx_peer *peer, uint64_t tid, uint64_t lease,
                          kvx_status_t reason)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT;
    Kvx__V1__Abort a = KVX__V1__ABORT__INIT;

    a.transfer_id = tid;
    a.lease_id = lease;
    a.reason = (Kvx__V1__Status)kvxi_status_to_wire(reason);
    a.message = (char *)kvx_status_string(reason);
    env.body_case = KVX__V1__ENVELOPE__BODY_ABORT;
    env.abort = &a;
    kvxi_peer_send(peer, &env);
}

void kvxi_pull_on_grant(struct kvx_peer *peer, const kvxi_envelope_t *env)
{
    const Kvx__V1__AllocateReply *r = env->allocate_reply;
    struct kvx_node *node = peer->node;
    kvxi_pub_t *pub;
    uint64_t deadline;
    kvx_status_t status;

    if (reader_find(node, peer, r->transfer_id, &pub) == NULL ||
        kvxi_status_from_wire(r->status) != KVX_OK ||
        r->block_count != pub->n) {
        kvxi_debug("node %s: pull grant for transfer %llu ignored",
                   node->node_id, (unsigned long long)r->transfer_id);
        return;
    }
    deadline = kvxi_node_now_ns() +
               (env->deadline_us > 0
                    ? env->deadline_us * 1000ull
                    : (uint64_t)KVXI_NODE_DEADLINE_MS_DEFAULT * 1000000ull);
    status = kvxi_xfer_serve_pull(peer, r->transfer_id, pub->request_id,
                                  pub->refs, pub->n, deadline, r);
    if (status != KVX_OK && status != KVX_ERR_EXISTS) {
        kvxi_pull_send_abort(peer, r->transfer_id, r->lease_id, status);
    }
}

void kvxi_pull_on_release(struct kvx_peer *peer, const kvxi_envelope_t *env)
{
    const Kvx__V1__Release *rel = env->release;
    kvxi_envelope_t out = KVX__V1__ENVELOPE__INIT;
    Kvx__V1__ReleaseAck a = KVX__V1__RELEASE_ACK__INIT;
    kvxi_pub_t *pub;
    pub_reader_t **rp = reader_find(peer->node, peer, rel->transfer_id, &pub);

    a.status = (Kvx__V1__Status)kvxi_status_to_wire(KVX_OK);
    a.transfer_id = rel->transfer_id;
    if (rp != NULL) {
        a.released = reader_drop(peer->node, pub, rp);
    }
    out.request_id = env->request_id;
    out.body_case = KVX__V1__ENVELOPE__BODY_RELEASE_ACK;
    out.release_ack = &a;
    kvxi_peer_send(peer, &out);
}

kvx_status_t kvxi_xfer_serve_pull(struct kvx_peer *peer, uint64_t tid,
                                  uint64_t request_id,
                                  const kvx_block_ref_t *src, uint32_t n,
                                  uint64_t deadline_ns,
                                  const Kvx__V1__AllocateReply *grant)
{
    struct kvx_node *node = peer->node;
    struct kvx_xfer *x;
    kvx_status_t status;

    if (kvxi_xfer_find(peer, tid) != NULL) {
        return KVX_ERR_EXISTS;
    }
    x = calloc(1, sizeof(*x));
    if (x == NULL) {
        return KVX_ERR_NO_MEMORY;
    }
    x->node = node;
    x->peer = peer;
    x->n_blocks = n;
    x->request_id = request_id;
    x->src = malloc(n * sizeof(*x->src));
    if (x->src == NULL) {
        free(x);
        return KVX_ERR_NO_MEMORY;
    }
    memcpy(x->src, src, n * sizeof(*x->src));
    status = kvxi_xfer_pin_sources(x);
    if (status != KVX_OK) {
        free(x->src);
        free(x);
        return status;
    }
    x->transfer_id = tid;
    x->t_start = kvxi_node_now_ns();
    x->deadline_ns = deadline_ns;
    x->status = KVX_INPROGRESS;
    x->state = KVXI_XFER_ALLOCATING;
    x->transport = peer->transport;
    x->layer_ready = node->layout.num_layers;
    x->released = 1; /* nobody holds a handle: freed when it ends */
    kvxi_xfer_link(node, x);
    kvxi_node_timer_rearm(node);
    kvxi_xfer_on_reply(peer, x, grant);
    return KVX_OK;
}
