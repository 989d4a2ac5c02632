/*
 * libFuzzer target: a node's message handlers (peer.c, xfer_*.c, rx_*.c,
 * pull.c, pull_hold.c, node_stats.c) and its engine sessions
 * (engine*.c), driven by a program of operations: envelopes from remote
 * peers and from an engine, the node's own API calls, peers and sessions
 * going away, and short waits for deadlines. See fuzz_node.h for the input
 * and fuzz_node_fix.h for the fixture and the checks after each input.
 */
#include "fuzz_node_fix.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_OPS_MAX 64
#define FZ_FRAME_MAX (64u << 10)

typedef struct fz_in {
    const uint8_t *p;
    size_t len, pos;
} fz_in_t;

static uint8_t in_u8(fz_in_t *in)
{
    return in->pos < in->len ? in->p[in->pos++] : 0;
}

/* The next frame of the input, decoded, or NULL (skipped or none left). */
static kvxi_envelope_t *in_frame(fz_in_t *in)
{
    kvxi_envelope_t *env = NULL;
    size_t consumed = 0, left = in->len - in->pos;
    const uint8_t *p = in->p + in->pos;
    kvx_status_t st;

    st = kvxi_frame_decode(left > 0 ? p : NULL, left, FZ_FRAME_MAX, &env,
                           &consumed);
    if (st == KVX_OK) {
        in->pos += consumed;
        return env;
    }
    if (left >= KVXI_FRAME_HEADER_LEN) {
        size_t body =
            (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];

        in->pos += body <= left - KVXI_FRAME_HEADER_LEN
                       ? KVXI_FRAME_HEADER_LEN + body
                       : left;
    } else {
        in->pos = in->len;
    }
    return NULL;
}

static kvxi_rx_t *nth_rx(struct kvx_node *node, unsigned k)
{
    unsigned n = 0;

    for (kvxi_rx_t *rx = node->rxs; rx != NULL; rx = rx->next) {
        n++;
    }
    if (n == 0) {
        return NULL;
    }
    k %= n;
    for (kvxi_rx_t *rx = node->rxs; rx != NULL; rx = rx->next) {
        if (k-- == 0) {
            return rx;
        }
    }
    return NULL;
}

static struct kvx_xfer *nth_xfer(struct kvx_node *node, unsigned k)
{
    unsigned n = 0;

    for (struct kvx_xfer *x = node->xfers; x != NULL; x = x->next) {
        n++;
    }
    if (n == 0) {
        return NULL;
    }
    k %= n;
    for (struct kvx_xfer *x = node->xfers; x != NULL; x = x->next) {
        if (k-- == 0) {
            return x;
        }
    }
    return NULL;
}

/* The remote of peer slot @p i sends @p env (refused ones are dropped:
 * handshake bodies, heartbeats, or after the remote closed). */
static void remote_send(fz_t *f, unsigned i, kvxi_envelope_t *env)
{
    fz_peer_t *p = fz_peer(f, i);

    if (p != NULL && p->remote != NULL) {
        kvxi_conn_send(p->remote, env);
        fz_settle(f);
    }
}

static void op_peer_frame(fz_t *f, fz_in_t *in)
{
    unsigned i = in_u8(in);
    kvxi_envelope_t *env = in_frame(in);
    fz_peer_t *p;

    if (env == NULL) {
        return;
    }
    p = fz_peer(f, i);
    if (p != NULL && env->body_case == KVX__V1__ENVELOPE__BODY_COMMIT &&
        env->commit->lease_id == 1) {
        kvxi_rx_t *rx = kvxi_rx_find(p->peer, env->commit->transfer_id);

        if (rx != NULL && rx->tag != 0) {
            env->commit->lease_id = rx->tag;
        }
    }
    remote_send(f, i, env);
    kvxi_frame_free(env);
}

/* An engine may name a peer by address; the harness never lets the node
 * connect anywhere but to a unix path nobody listens on. */
static void engine_peer_name(fz_t *f, char **name)
{
    struct sockaddr_storage ss;
    socklen_t len;

    if (*name != NULL && kvxi_addr_parse(*name, &ss, &len) == KVX_OK) {
        *name = f->none;
    }
}

static void op_engine_frame(fz_t *f, fz_in_t *in)
{
    kvxi_envelope_t *env = in_frame(in);
    char **name = NULL, *orig = NULL;
    size_t len = 0, cap;
    uint8_t *buf;

    if (env == NULL) {
        return;
    }
    if (env->body_case == KVX__V1__ENVELOPE__BODY_PUSH_START) {
        name = &env->push_start->peer;
    } else if (env->body_case == KVX__V1__ENVELOPE__BODY_PULL_START) {
        name = &env->pull_start->peer;
    }
    if (name != NULL) {
        orig = *name;
        engine_peer_name(f, name);
    }
    cap = kvxi_frame_size(env);
    buf = malloc(cap);
    if (buf != NULL && kvxi_frame_encode(env, buf, cap, &len) == KVX_OK) {
        fz_engine_send(f, buf, len);
    }
    free(buf);
    if (name != NULL) {
        *name = orig; /* freed with the envelope */
    }
    kvxi_frame_free(env);
}

static void keep_xfer(fz_t *f, kvx_xfer_h x)
{
    if (f->n_xfers < FZ_XFERS) {
        f->xfers[f->n_xfers++] = x;
    } else {
        kvx_xfer_release(x);
    }
}

static void op_push(fz_t *f, fz_in_t *in)
{
    unsigned i = in_u8(in), n = 1 + in_u8(in) % FZ_SRC_BLOCKS;
    unsigned flags = in_u8(in), rot = flags >> 4;
    kvx_block_ref_t refs[FZ_SRC_BLOCKS];
    kvx_block_key_t keys[FZ_SRC_BLOCKS];
    kvx_xfer_params_t xp = {
        .field_mask = KVX_XFER_PARAM_FIELD_REQUEST_ID |
                      KVX_XFER_PARAM_FIELD_BLOCKS | KVX_XFER_PARAM_FIELD_FLAGS,
        .request_id = in_u8(in),
        .blocks = refs,
        .n_blocks = n,
        .keys = keys,
        .deadline_ms = 2,
        .flags = flags & 3u,
    };
    fz_peer_t *p = fz_peer(f, i);
    kvx_xfer_h x = NULL;

    if (p == NULL) {
        return;
    }
    for (unsigned k = 0; k < n; k++) {
        refs[k] = f->src[(k + rot) % FZ_SRC_BLOCKS];
        keys[k] = f->keys[(k + rot) % FZ_SRC_BLOCKS];
    }
    xp.field_mask |= (flags & 4u ? KVX_XFER_PARAM_FIELD_KEYS : 0) |
                     (flags & 8u ? KVX_XFER_PARAM_FIELD_DEADLINE : 0);
    if (kvx_node_push(f->node, p->peer, &xp, &x) == KVX_OK) {
        keep_xfer(f, x);
    }
    fz_settle(f);
}

static void op_pull(fz_t *f, fz_in_t *in)
{
    unsigned i = in_u8(in), n = 1 + in_u8(in) % 20;
    unsigned flags = in_u8(in), rot = flags >> 4;
    kvx_block_key_t keys[20];
    kvx_pull_params_t pp = {
        .field_mask =
            KVX_PULL_PARAM_FIELD_REQUEST_ID | KVX_PULL_PARAM_FIELD_N_BLOCKS,
        .request_id = in_u8(in),
        .n_blocks = n,
        .keys = keys,
        .deadline_ms = 2,
    };
    fz_peer_t *p = fz_peer(f, i);
    kvx_xfer_h x = NULL;

    if (p == NULL) {
        return;
    }
    for (unsigned k = 0; k < n; k++) {
        keys[k] = f->keys[(k + rot) % FZ_KEYS];
    }
    pp.field_mask |= (flags & 4u ? KVX_PULL_PARAM_FIELD_KEYS : 0) |
                     (flags & 8u ? KVX_PULL_PARAM_FIELD_DEADLINE : 0);
    if (kvx_node_pull(f->node, p->peer, &pp, &x) == KVX_OK) {
        keep_xfer(f, x);
    }
    fz_settle(f);
}

static void op_publish(fz_t *f, fz_in_t *in)
{
    uint64_t rid = in_u8(in);
    unsigned n = 1 + in_u8(in) % FZ_SRC_BLOCKS, flags = in_u8(in);
    kvx_block_ref_t refs[FZ_SRC_BLOCKS];
    kvx_publish_params_t pp = {
        .field_mask =
            KVX_PUBLISH_PARAM_FIELD_REQUEST_ID | KVX_PUBLISH_PARAM_FIELD_BLOCKS,
        .request_id = rid,
        .blocks = refs,
        .n_blocks = n,
        .lease_ms = 2,
    };

    for (unsigned k = 0; k < n; k++) {
        refs[k] = f->src[(k + (flags >> 4)) % FZ_SRC_BLOCKS];
    }
    if (flags & 8u) {
        pp.field_mask |= KVX_PUBLISH_PARAM_FIELD_LEASE;
    }
    kvx_node_publish(f->node, &pp, NULL);
}

static void op_xfer(fz_t *f, fz_in_t *in)
{
    unsigned k = in_u8(in), action = in_u8(in);
    kvx_xfer_attr_t attr;
    kvx_xfer_h x;

    if (f->n_xfers == 0) {
        return;
    }
    k %= f->n_xfers;
    x = f->xfers[k];
    switch (action & 3u) {
    case 0: kvx_xfer_abort(x); break;
    case 1:
        kvx_xfer_release(x);
        f->xfers[k] = f->xfers[--f->n_xfers];
        break;
    case 2: kvx_xfer_layer_ready(x, (action >> 2) % 6); break;
    default:
        kvx_xfer_query(x, &attr);
        kvx_xfer_test(x);
        break;
    }
    fz_settle(f);
}

static void op_recv(fz_t *f, fz_in_t *in)
{
    kvx_block_ref_t refs[FZ_NUM_BLOCKS];
    uint32_t n = 0;

    if (kvx_node_recv(f->node, in_u8(in), 0, refs, FZ_NUM_BLOCKS, &n) ==
        KVX_OK) {
        for (uint32_t i = 0; i < n; i++) {
            if (kvx_alloc_unpin(f->node->alloc, refs[i]) != KVX_OK) {
                fz_fail("a received block is not pinned for the caller");
            }
        }
    }
}

/* A well-formed Commit for a receive of the node (see FZ_OP_COMMIT). */
static void op_commit(fz_t *f, fz_in_t *in)
{
    unsigned i = in_u8(in), k = in_u8(in), mode = in_u8(in);
    struct kvx_node *node = f->node;
    kvxi_rx_t *rx = nth_rx(node, k);
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT;
    Kvx__V1__Commit c = KVX__V1__COMMIT__INIT;
    Kvx__V1__BlockRefs br = KVX__V1__BLOCK_REFS__INIT;
    uint32_t blocks[FZ_NUM_BLOCKS + 1], gens[FZ_NUM_BLOCKS + 1];
    uint64_t sums[FZ_NUM_BLOCKS + 1];
    uint32_t n = 0;

    if (rx == NULL || rx->n_blocks > FZ_NUM_BLOCKS) {
        return;
    }
    for (uint32_t b = 0; b < rx->n_blocks; b++) {
        if (rx->hit[b]) {
            continue;
        }
        blocks[n] = rx->refs[b].block;
        gens[n] = rx->refs[b].gen;
        sums[n] = XXH3_64bits(kvx_pool_block_addr(node->pool, blocks[n]),
                              (size_t)node->layout.block_bytes);
        if ((mode & 3u) == 2) {
            sums[n] ^= 1;
        }
        n++;
    }
    if (n == 0 || (mode & 32u)) { /* refs must not be empty on the wire */
        blocks[n] = 0;
        gens[n] = 1;
        sums[n] = 0;
        n++;
    }
    br.n_blocks = br.n_gens = n;
    br.blocks = blocks;
    br.gens = gens;
    c.transfer_id = rx->transfer_id;
    c.lease_id = (mode & 4u) || rx->tag == 0 ? 2 : rx->tag;
    c.blocks = &br;
    c.data_bytes = (mode & 8u)    ? rx->max_bytes + 1
                   : (mode & 16u) ? rx->landed
                                  : (uint64_t)n * node->layout.block_bytes;
    if ((mode & 3u) != 0) {
        c.n_checksums = n;
        c.checksums = sums;
    }
    env.body_case = KVX__V1__ENVELOPE__BODY_COMMIT;
    env.commit = &c;
    remote_send(f, i, &env);
}

/* An AllocateReply for a transfer of the node (see FZ_OP_REPLY). */
static void op_reply(fz_t *f, fz_in_t *in)
{
    unsigned i = in_u8(in), k = in_u8(in), mode = in_u8(in);
    struct kvx_node *node = f->node;
    struct kvx_xfer *x = nth_xfer(node, k);
    uint8_t b[4];
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT;
    Kvx__V1__AllocateReply r = KVX__V1__ALLOCATE_REPLY__INIT;
    Kvx__V1__BlockRefs br = KVX__V1__BLOCK_REFS__INIT;
    uint32_t blocks[FZ_NUM_BLOCKS + 2], gens[FZ_NUM_BLOCKS + 2];
    uint8_t mask[(FZ_NUM_BLOCKS + 2 + 7) / 8] = {0};
    uint32_t n, n_hit = 0;
    kvxi_rx_t *rx;

    for (unsigned j = 0; j < 4; j++) {
        b[j] = in_u8(in);
    }
    if (x == NULL || x->n_blocks > FZ_NUM_BLOCKS) {
        return;
    }
    r.transfer_id = x->transfer_id;
    env.request_id = x->alloc_req_id;
    env.body_case = KVX__V1__ENVELOPE__BODY_ALLOCATE_REPLY;
    env.allocate_reply = &r;
    if ((mode & 3u) == 3) {
        r.status = KVX__V1__STATUS__STATUS_ERR_NO_SPACE;
        remote_send(f, i, &env);
        return;
    }
    n = x->n_blocks + ((mode & 4u) ? 1 : 0);
    for (uint32_t j = 0; j < n; j++) {
        blocks[j] = (uint32_t)(b[j % 4] + j) % FZ_NUM_BLOCKS;
        gens[j] = 1;
        if ((mode & 8u) && ((b[0] >> (j % 8)) & 1u)) {
            mask[j / 8] |= (uint8_t)(1u << (j % 8));
            n_hit++;
        }
    }
    r.status = KVX__V1__STATUS__STATUS_OK;
    r.block_count = n;
    br.n_blocks = br.n_gens = n;
    br.blocks = blocks;
    br.gens = gens;
    r.blocks = &br;
    r.hit_mask.data = mask;
    r.hit_mask.len = (n + 7) / 8;
    rx = (mode & 16u) ? nth_rx(node, b[1]) : NULL;
    r.lease_id = n_hit == n                   ? 0
                 : rx != NULL && rx->tag != 0 ? rx->tag
                                              : 0x100u + b[1];
    remote_send(f, i, &env);
}

static void am_write_cb(kvx_status_t status, void *arg)
{
    fz_write_t *w = arg;

    (void)status;
    w->busy = 0;
}

/* A remote's AM write (see FZ_OP_AM_WRITE): the data comes from the
 * remotes' pool over the node's own endpoint, so it lands in the node's AM
 * receive path like a peer's. */
static void op_am_write(fz_t *f, fz_in_t *in)
{
    unsigned i = in_u8(in), k = in_u8(in), mode = in_u8(in);
    unsigned off = in_u8(in), len = in_u8(in);
    struct kvx_node *node = f->node;
    uint64_t bb = node->layout.block_bytes;
    static uint8_t before[FZ_NUM_BLOCKS][4096];
    int open[FZ_NUM_BLOCKS];
    kvxi_ucx_post_params_t pp = {.dir = KVXI_UCX_PUSH, .mem = f->rmem};
    fz_peer_t *p = fz_peer(f, i); /* connecting runs the node's loop */
    kvxi_rx_t *rx = nth_rx(node, k);
    fz_write_t *w = NULL;
    uint64_t dst = 0;

    for (unsigned j = 0; j < FZ_WRITES && w == NULL; j++) {
        w = f->writes[j].busy ? NULL : &f->writes[j];
    }
    /* over RMA the put would land in the remotes' own pool: nothing to do
       with the node's receive path */
    if (p == NULL || p->peer->ep == NULL || w == NULL || bb > 4096 ||
        kvxi_ucx_ep_mode(p->peer->ep) != KVXI_UCX_MODE_AM) {
        return;
    }
    for (uint32_t b = 0; rx != NULL && b < rx->n_blocks; b++) {
        if (!rx->hit[b]) {
            dst = (uint64_t)rx->refs[b].block * bb;
            break;
        }
    }
    /* around the block: before it, inside, across its end */
    w->seg.src_off = 0;
    w->seg.dst_off = dst + (uint64_t)(off & 0x7f) * 64;
    w->seg.dst_off -= (off & 0x80) && w->seg.dst_off >= bb ? bb : 0;
    w->seg.len = 1 + (uint64_t)len * 64;
    pp.segs = &w->seg;
    pp.n_segs = 1;
    pp.transfer_id = rx != NULL && !(mode & 1u) ? rx->tag : 0x100u + mode;
    pp.cb = am_write_cb;
    pp.arg = w;
    for (uint32_t b = 0; b < FZ_NUM_BLOCKS; b++) {
        kvx_block_info_t info;

        memcpy(before[b], kvx_pool_block_addr(node->pool, b), (size_t)bb);
        open[b] = node->owner[b] != NULL ||
                  (kvx_alloc_block_query(node->alloc, b, &info) == KVX_OK &&
                   info.state == KVX_BLOCK_FENCED);
    }
    if (kvxi_ucx_post(p->peer->ep, &pp, NULL) != KVX_OK) {
        return;
    }
    w->busy = 1;
    fz_settle(f);
    for (uint32_t b = 0; b < FZ_NUM_BLOCKS; b++) {
        if (!open[b] && memcmp(before[b], kvx_pool_block_addr(node->pool, b),
                               (size_t)bb) != 0) {
            fz_fail("an AM write landed in a block no receive owned");
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_t *f = fz_get();
    fz_in_t in = {data, size, 0};
    unsigned ops = 0;

    fz_begin(f, in_u8(&in));
    while (in.pos < in.len && ops++ < FZ_OPS_MAX) {
        unsigned op = in_u8(&in) % FZ_OP_COUNT, a;

        switch (op) {
        case FZ_OP_PEER_FRAME: op_peer_frame(f, &in); break;
        case FZ_OP_ENGINE_FRAME: op_engine_frame(f, &in); break;
        case FZ_OP_PUSH: op_push(f, &in); break;
        case FZ_OP_PULL: op_pull(f, &in); break;
        case FZ_OP_PUBLISH: op_publish(f, &in); break;
        case FZ_OP_UNPUBLISH: kvx_node_unpublish(f->node, in_u8(&in)); break;
        case FZ_OP_XFER: op_xfer(f, &in); break;
        case FZ_OP_RECV: op_recv(f, &in); break;
        case FZ_OP_WAIT:
            a = in_u8(&in);
            if (f->waits < FZ_WAITS_MAX) {
                f->waits++;
                usleep(1000u * (1 + a % 3));
                fz_settle(f);
            }
            break;
        case FZ_OP_PEER_END:
            a = in_u8(&in);
            fz_peer_end(f, a, in_u8(&in));
            break;
        case FZ_OP_ENGINE_END: fz_engine_end(f); break;
        case FZ_OP_COMMIT: op_commit(f, &in); break;
        case FZ_OP_REPLY: op_reply(f, &in); break;
        default: op_am_write(f, &in); break;
        }
    }
    fz_end(f);
    return 0;
}
