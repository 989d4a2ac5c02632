/* Control-channel frame codec: length prefix + one kvx.v1.Envelope. */
#include "frame_int.h"

#include <kvx/layout.h>
#include <stdlib.h>
#include <string.h>

#include "frame_check_int.h"
#include "log_int.h"

/*
 * kvx_status_t <-> kvx.v1.Status. The proto fixes wire = s + 1 for OK and
 * INPROGRESS and 100 - s for errors; the static asserts keep the .proto and
 * status.h from drifting apart.
 */
#define WIRE_OF(s) ((s) >= 0 ? (uint32_t)(s) + 1u : (uint32_t)(100 - (s)))

#define STATUS_MAP(X)                                                          \
    X(KVX_OK, STATUS_OK)                                                       \
    X(KVX_INPROGRESS, STATUS_INPROGRESS)                                       \
    X(KVX_ERR_INVALID_PARAM, STATUS_ERR_INVALID_PARAM)                         \
    X(KVX_ERR_NO_MEMORY, STATUS_ERR_NO_MEMORY)                                 \
    X(KVX_ERR_NO_SPACE, STATUS_ERR_NO_SPACE)                                   \
    X(KVX_ERR_NOT_FOUND, STATUS_ERR_NOT_FOUND)                                 \
    X(KVX_ERR_STALE_HANDLE, STATUS_ERR_STALE_HANDLE)                           \
    X(KVX_ERR_BAD_STATE, STATUS_ERR_BAD_STATE)                                 \
    X(KVX_ERR_OUT_OF_RANGE, STATUS_ERR_OUT_OF_RANGE)                           \
    X(KVX_ERR_OVERFLOW, STATUS_ERR_OVERFLOW)                                   \
    X(KVX_ERR_NOT_SUPPORTED, STATUS_ERR_NOT_SUPPORTED)                         \
    X(KVX_ERR_LAYOUT_MISMATCH, STATUS_ERR_LAYOUT_MISMATCH)                     \
    X(KVX_ERR_EXISTS, STATUS_ERR_EXISTS)                                       \
    X(KVX_ERR_TIMEOUT, STATUS_ERR_TIMEOUT)                                     \
    X(KVX_ERR_ABORTED, STATUS_ERR_ABORTED)                                     \
    X(KVX_ERR_IO, STATUS_ERR_IO)                                               \
    X(KVX_ERR_CORRUPT, STATUS_ERR_CORRUPT)                                     \
    X(KVX_ERR_PROTO_MALFORMED, STATUS_ERR_PROTO_MALFORMED)                     \
    X(KVX_ERR_PROTO_OVERSIZE, STATUS_ERR_PROTO_OVERSIZE)                       \
    X(KVX_ERR_PROTO_VERSION, STATUS_ERR_PROTO_VERSION)                         \
    X(KVX_ERR_PROTO_UNEXPECTED, STATUS_ERR_PROTO_UNEXPECTED)                   \
    X(KVX_ERR_PEER_DOWN, STATUS_ERR_PEER_DOWN)                                 \
    X(KVX_ERR_PEER_REFUSED, STATUS_ERR_PEER_REFUSED)                           \
    X(KVX_ERR_PEER_UNREACHABLE, STATUS_ERR_PEER_UNREACHABLE)                   \
    X(KVX_ERR_AUTH, STATUS_ERR_AUTH)                                           \
    X(KVX_ERR_CONN_CLOSED, STATUS_ERR_CONN_CLOSED)

#define STATUS_ASSERT(c, p)                                                    \
    _Static_assert(WIRE_OF(c) == KVX__V1__STATUS__##p, #c " wire value");
STATUS_MAP(STATUS_ASSERT)

#define STATUS_ENTRY(c, p) {c, KVX__V1__STATUS__##p},
static const struct {
    kvx_status_t status;
    uint32_t wire;
} status_wire[] = {STATUS_MAP(STATUS_ENTRY)};

#define N_STATUS_WIRE (sizeof(status_wire) / sizeof(status_wire[0]))

uint32_t kvxi_status_to_wire(kvx_status_t status)
{
    for (size_t i = 0; i < N_STATUS_WIRE; i++) {
        if (status_wire[i].status == status) {
            return status_wire[i].wire;
        }
    }
    return KVX__V1__STATUS__STATUS_UNSPECIFIED;
}

kvx_status_t kvxi_status_from_wire(uint32_t wire)
{
    for (size_t i = 0; i < N_STATUS_WIRE; i++) {
        if (status_wire[i].wire == wire) {
            return status_wire[i].status;
        }
    }
    return KVX_ERR_PROTO_MALFORMED;
}

const char *kvxi_envelope_body_name(const kvxi_envelope_t *env)
{
    if (env == NULL) {
        return "(null)";
    }
    switch (env->body_case) {
    case KVX__V1__ENVELOPE__BODY_ALLOCATE_REQUEST: return "allocate_request";
    case KVX__V1__ENVELOPE__BODY_ALLOCATE_REPLY: return "allocate_reply";
    case KVX__V1__ENVELOPE__BODY_LAYER_READY: return "layer_ready";
    case KVX__V1__ENVELOPE__BODY_COMMIT: return "commit";
    case KVX__V1__ENVELOPE__BODY_COMMIT_ACK: return "commit_ack";
    case KVX__V1__ENVELOPE__BODY_RELEASE: return "release";
    case KVX__V1__ENVELOPE__BODY_RELEASE_ACK: return "release_ack";
    case KVX__V1__ENVELOPE__BODY_ABORT: return "abort";
    case KVX__V1__ENVELOPE__BODY_ABORT_ACK: return "abort_ack";
    case KVX__V1__ENVELOPE__BODY_HEARTBEAT: return "heartbeat";
    case KVX__V1__ENVELOPE__BODY_LOOKUP: return "lookup";
    case KVX__V1__ENVELOPE__BODY_LOOKUP_REPLY: return "lookup_reply";
    case KVX__V1__ENVELOPE__BODY_HELLO: return "hello";
    case KVX__V1__ENVELOPE__BODY_HELLO_REPLY: return "hello_reply";
    case KVX__V1__ENVELOPE__BODY_AUTH_PROOF: return "auth_proof";
    case KVX__V1__ENVELOPE__BODY_ACCEPT: return "accept";
    case KVX__V1__ENVELOPE__BODY_STATS: return "stats";
    case KVX__V1__ENVELOPE__BODY_STATS_REPLY: return "stats_reply";
    case KVX__V1__ENVELOPE__BODY_ERROR: return "error";
    case KVX__V1__ENVELOPE__BODY__NOT_SET: return "none";
    default: break;
    }
    return kvxi_local_body_name(env);
}

/* ------------------------------------------------------------------------
 * Validation. Each check returns 0 or the name of the rule that failed, so
 * the one caller logs what was wrong exactly once.
 */

int kvxi_str_len_ok(const char *s, size_t min, size_t max)
{
    size_t n;

    if (s == NULL) {
        return min == 0;
    }
    n = strnlen(s, max + 1);
    return n >= min && n <= max;
}

/* Status fields: anything but UNSPECIFIED (unknown codes map to
 * PROTO_MALFORMED at use, so a newer peer's error codes still get through). */
int kvxi_status_set(int v)
{
    return v != KVX__V1__STATUS__STATUS_UNSPECIFIED;
}

int kvxi_status_is_error(int v)
{
    return v != KVX__V1__STATUS__STATUS_UNSPECIFIED &&
           v != KVX__V1__STATUS__STATUS_OK &&
           v != KVX__V1__STATUS__STATUS_INPROGRESS;
}

int kvxi_data_path_ok(int v)
{
    return v == KVX__V1__DATA_PATH__DATA_PATH_RMA ||
           v == KVX__V1__DATA_PATH__DATA_PATH_AM;
}

const char *kvxi_check_layout(const Kvx__V1__Layout *l)
{
    CHECK(l != NULL, "layout missing");
    CHECK(l->num_layers >= 1 && l->num_layers <= KVX_LAYOUT_DIM_MAX,
          "layout.num_layers");
    CHECK(l->kv_parts == 1 || l->kv_parts == 2, "layout.kv_parts");
    CHECK(l->block_tokens >= 1 && l->block_tokens <= KVX_LAYOUT_DIM_MAX,
          "layout.block_tokens");
    CHECK(l->kv_heads >= 1 && l->kv_heads <= KVX_LAYOUT_DIM_MAX,
          "layout.kv_heads");
    CHECK(l->total_heads >= 1 && l->total_heads <= KVX_LAYOUT_DIM_MAX,
          "layout.total_heads");
    CHECK(l->head_start <= l->total_heads &&
              l->kv_heads <= l->total_heads - l->head_start,
          "layout head slice outside total_heads");
    CHECK(l->head_dim >= 1 && l->head_dim <= KVX_LAYOUT_DIM_MAX,
          "layout.head_dim");
    CHECK(l->dtype_size >= 1 && l->dtype_size <= KVX_LAYOUT_DIM_MAX,
          "layout.dtype_size");
    CHECK(l->order == KVX__V1__LAYOUT_ORDER__LAYOUT_ORDER_BLOCK_MAJOR ||
              l->order == KVX__V1__LAYOUT_ORDER__LAYOUT_ORDER_LAYER_MAJOR,
          "layout.order");
    CHECK(l->token_order == KVX__V1__TOKEN_ORDER__TOKEN_ORDER_NHD ||
              l->token_order == KVX__V1__TOKEN_ORDER__TOKEN_ORDER_HND,
          "layout.token_order");
    CHECK(l->num_blocks >= 1 && l->num_blocks <= KVX_LAYOUT_DIM_MAX,
          "layout.num_blocks");
    CHECK(l->block_bytes >= 1, "layout.block_bytes");
    return NULL;
}

const char *kvxi_check_layers(const Kvx__V1__LayerRange *r)
{
    CHECK(r->count >= 1, "layer range empty");
    CHECK(r->first < KVXI_LAYERS_MAX && r->count <= KVXI_LAYERS_MAX - r->first,
          "layer range out of bounds");
    return NULL;
}

/* BlockRefs with n entries, min <= n <= KVXI_BLOCKS_MAX. */
const char *kvxi_check_refs(const Kvx__V1__BlockRefs *r, size_t min)
{
    CHECK(r != NULL || min == 0, "block refs missing");
    if (r == NULL) {
        return NULL;
    }
    CHECK(r->n_blocks == r->n_gens, "block refs: blocks and gens differ");
    CHECK(r->n_blocks >= min, "block refs: too few");
    CHECK(r->n_blocks <= KVXI_BLOCKS_MAX, "block refs: too many");
    return NULL;
}

int kvxi_refs_empty(const Kvx__V1__BlockRefs *r)
{
    return r == NULL || (r->n_blocks == 0 && r->n_gens == 0);
}

static const char *check_memory(const Kvx__V1__Memory *m)
{
    CHECK(m != NULL, "memory missing");
    CHECK(m->worker_address.len >= 1 && m->worker_address.len <= KVXI_BLOB_MAX,
          "memory.worker_address length");
    CHECK(m->mem_type == KVX__V1__MEM_TYPE__MEM_TYPE_HOST ||
              m->mem_type == KVX__V1__MEM_TYPE__MEM_TYPE_CUDA,
          "memory.mem_type");
    CHECK(m->rkey.len <= KVXI_BLOB_MAX, "memory.rkey length");
    if (m->rkey.len > 0) {
        CHECK(m->pool_length >= 1, "memory.pool_length zero with rkey");
        CHECK(m->pool_base <= UINT64_MAX - m->pool_length,
              "memory pool wraps around");
    }
    return NULL;
}

static const char *check_data_paths(size_t n, const Kvx__V1__DataPath *p)
{
    CHECK(n >= 1 && n <= 16, "data_paths count");
    for (size_t i = 0; i < n; i++) {
        CHECK(kvxi_data_path_ok(p[i]), "data_paths value");
    }
    return NULL;
}

static const char *check_hello(const Kvx__V1__Hello *h)
{
    const char *why;

    CHECK(h->min_version >= 1, "hello.min_version");
    CHECK(h->max_version >= h->min_version, "hello.max_version");
    CHECK(kvxi_str_len_ok(h->node_id, 1, KVXI_NAME_MAX), "hello.node_id");
    CHECK(h->instance_id != 0, "hello.instance_id");
    CHECK(kvxi_str_len_ok(h->cluster_id, 0, KVXI_NAME_MAX), "hello.cluster_id");
    CHECK(h->role >= KVX__V1__ROLE__ROLE_PREFILL &&
              h->role <= KVX__V1__ROLE__ROLE_BOTH,
          "hello.role");
    CHECK(h->nonce.len == KVXI_AUTH_NONCE_LEN, "hello.nonce length");
    CHECK(h->max_frame == 0 || h->max_frame >= KVXI_FRAME_MAX_HANDSHAKE,
          "hello.max_frame");
    why = check_data_paths(h->n_data_paths, h->data_paths);
    return why != NULL ? why : kvxi_check_layout(h->layout);
}

static const char *check_hello_reply(const Kvx__V1__HelloReply *h)
{
    const char *why;

    CHECK(h->version >= 1, "hello_reply.version");
    CHECK(kvxi_str_len_ok(h->node_id, 1, KVXI_NAME_MAX), "hello_reply.node_id");
    CHECK(h->instance_id != 0, "hello_reply.instance_id");
    CHECK(kvxi_str_len_ok(h->cluster_id, 0, KVXI_NAME_MAX),
          "hello_reply.cluster_id");
    CHECK(h->role >= KVX__V1__ROLE__ROLE_PREFILL &&
              h->role <= KVX__V1__ROLE__ROLE_BOTH,
          "hello_reply.role");
    CHECK(h->nonce.len == KVXI_AUTH_NONCE_LEN, "hello_reply.nonce length");
    CHECK(h->auth_mac.len == KVXI_AUTH_MAC_LEN, "hello_reply.auth_mac");
    CHECK(h->max_frame == 0 || h->max_frame >= KVXI_FRAME_MAX_HANDSHAKE,
          "hello_reply.max_frame");
    why = check_data_paths(h->n_data_paths, h->data_paths);
    return why != NULL ? why : kvxi_check_layout(h->layout);
}

static const char *check_allocate_request(const Kvx__V1__AllocateRequest *a)
{
    const char *why;

    CHECK(a->transfer_id != 0, "allocate.transfer_id");
    CHECK(a->block_count >= 1 && a->block_count <= KVXI_BLOCKS_MAX,
          "allocate.block_count");
    CHECK(a->keys.len == 0 ||
              a->keys.len == (size_t)a->block_count * KVXI_KEY_LEN,
          "allocate.keys length");
    CHECK(a->lease_ms <= KVXI_LEASE_MS_MAX, "allocate.lease_ms");
    CHECK(kvxi_data_path_ok(a->data_path), "allocate.data_path");
    if (a->layers != NULL && (why = kvxi_check_layers(a->layers)) != NULL) {
        return why;
    }
    switch (a->mode) {
    case KVX__V1__TRANSFER_MODE__TRANSFER_MODE_PUSH:
        CHECK(kvxi_refs_empty(a->src_blocks), "allocate: push with src_blocks");
        return NULL;
    case KVX__V1__TRANSFER_MODE__TRANSFER_MODE_PULL:
        why = kvxi_check_refs(a->src_blocks, 1);
        if (why != NULL) {
            return why;
        }
        CHECK(a->src_blocks->n_blocks == a->block_count,
              "allocate: src_blocks count != block_count");
        return NULL;
    default: return "allocate.mode";
    }
}

const char *kvxi_check_hit_mask(const ProtobufCBinaryData *mask,
                                uint32_t block_count, uint64_t lease_id)
{
    size_t mask_len = ((size_t)block_count + 7) / 8, n_hit = 0;

    CHECK(mask->len == mask_len, "hit_mask length");
    if (block_count % 8 != 0) {
        unsigned spare = 0xffu << (block_count % 8);

        CHECK((mask->data[mask_len - 1] & spare) == 0,
              "hit_mask spare bits set");
    }
    for (size_t i = 0; i < mask_len; i++) {
        for (uint8_t b = mask->data[i]; b != 0; b &= (uint8_t)(b - 1)) {
            n_hit++;
        }
    }
    CHECK((lease_id == 0) == (n_hit == block_count),
          "lease_id must be 0 exactly when all blocks hit");
    return NULL;
}

static const char *check_allocate_reply(const Kvx__V1__AllocateReply *a)
{
    const char *why;

    CHECK(kvxi_status_set(a->status), "allocate_reply.status");
    CHECK(a->transfer_id != 0, "allocate_reply.transfer_id");
    if (a->status != KVX__V1__STATUS__STATUS_OK) {
        CHECK(kvxi_refs_empty(a->blocks) && a->hit_mask.len == 0 &&
                  a->lease_id == 0,
              "allocate_reply: failure carries blocks or lease");
        return NULL;
    }
    CHECK(a->block_count >= 1 && a->block_count <= KVXI_BLOCKS_MAX,
          "allocate_reply.block_count");
    why = kvxi_check_refs(a->blocks, 1);
    if (why != NULL) {
        return why;
    }
    CHECK(a->blocks->n_blocks == a->block_count,
          "allocate_reply: refs count != block_count");
    return kvxi_check_hit_mask(&a->hit_mask, a->block_count, a->lease_id);
}

static const char *check_commit(const Kvx__V1__Commit *c)
{
    const char *why;

    CHECK(c->transfer_id != 0, "commit.transfer_id");
    CHECK(c->lease_id != 0, "commit.lease_id");
    why = kvxi_check_refs(c->blocks, 1);
    if (why != NULL) {
        return why;
    }
    CHECK(c->n_checksums == 0 || c->n_checksums == c->blocks->n_blocks,
          "commit.checksums count");
    return NULL;
}

const char *kvxi_check_keys(const ProtobufCBinaryData *k)
{
    CHECK(k->len >= KVXI_KEY_LEN && k->len % KVXI_KEY_LEN == 0,
          "keys length not a positive multiple of 16");
    CHECK(k->len / KVXI_KEY_LEN <= KVXI_BLOCKS_MAX, "too many keys");
    return NULL;
}

static const char *check_stats_reply(const Kvx__V1__StatsReply *s)
{
    CHECK(s->n_counters <= KVXI_STATS_MAX, "stats_reply: too many counters");
    for (size_t i = 0; i < s->n_counters; i++) {
        CHECK(s->counters[i] != NULL, "stats_reply: counter missing");
        CHECK(kvxi_str_len_ok(s->counters[i]->key, 1, KVXI_STAT_NAME_MAX),
              "stats_reply: counter name length");
    }
    return NULL;
}

static const char *check_body(const kvxi_envelope_t *env)
{
    switch (env->body_case) {
    case KVX__V1__ENVELOPE__BODY_ALLOCATE_REQUEST:
        CHECK(env->allocate_request != NULL, "body missing");
        return check_allocate_request(env->allocate_request);
    case KVX__V1__ENVELOPE__BODY_ALLOCATE_REPLY:
        CHECK(env->allocate_reply != NULL, "body missing");
        return check_allocate_reply(env->allocate_reply);
    case KVX__V1__ENVELOPE__BODY_LAYER_READY:
        CHECK(env->layer_ready != NULL, "body missing");
        CHECK(env->layer_ready->transfer_id != 0, "layer_ready.transfer_id");
        CHECK(env->layer_ready->layers != NULL, "layer_ready.layers missing");
        return kvxi_check_layers(env->layer_ready->layers);
    case KVX__V1__ENVELOPE__BODY_COMMIT:
        CHECK(env->commit != NULL, "body missing");
        return check_commit(env->commit);
    case KVX__V1__ENVELOPE__BODY_COMMIT_ACK:
        CHECK(env->commit_ack != NULL, "body missing");
        CHECK(kvxi_status_set(env->commit_ack->status), "commit_ack.status");
        CHECK(env->commit_ack->transfer_id != 0, "commit_ack.transfer_id");
        return NULL;
    case KVX__V1__ENVELOPE__BODY_RELEASE:
        CHECK(env->release != NULL, "body missing");
        return kvxi_check_refs(env->release->blocks, 1);
    case KVX__V1__ENVELOPE__BODY_RELEASE_ACK:
        CHECK(env->release_ack != NULL, "body missing");
        CHECK(kvxi_status_set(env->release_ack->status), "release_ack.status");
        return NULL;
    case KVX__V1__ENVELOPE__BODY_ABORT:
        CHECK(env->abort != NULL, "body missing");
        CHECK(env->abort->transfer_id != 0, "abort.transfer_id");
        CHECK(kvxi_status_is_error(env->abort->reason), "abort.reason");
        CHECK(kvxi_str_len_ok(env->abort->message, 0, KVXI_TEXT_MAX),
              "abort.message length");
        return NULL;
    case KVX__V1__ENVELOPE__BODY_ABORT_ACK:
        CHECK(env->abort_ack != NULL, "body missing");
        CHECK(env->abort_ack->transfer_id != 0, "abort_ack.transfer_id");
        return NULL;
    case KVX__V1__ENVELOPE__BODY_HEARTBEAT:
        CHECK(env->heartbeat != NULL, "body missing");
        return NULL;
    case KVX__V1__ENVELOPE__BODY_LOOKUP:
        CHECK(env->lookup != NULL, "body missing");
        return kvxi_check_keys(&env->lookup->keys);
    case KVX__V1__ENVELOPE__BODY_LOOKUP_REPLY:
        CHECK(env->lookup_reply != NULL, "body missing");
        CHECK(env->lookup_reply->key_count >= 1 &&
                  env->lookup_reply->key_count <= KVXI_BLOCKS_MAX,
              "lookup_reply.key_count");
        CHECK(env->lookup_reply->prefix_blocks <= env->lookup_reply->key_count,
              "lookup_reply.prefix_blocks > key_count");
        return NULL;
    case KVX__V1__ENVELOPE__BODY_HELLO:
        CHECK(env->hello != NULL, "body missing");
        return check_hello(env->hello);
    case KVX__V1__ENVELOPE__BODY_HELLO_REPLY:
        CHECK(env->hello_reply != NULL, "body missing");
        return check_hello_reply(env->hello_reply);
    case KVX__V1__ENVELOPE__BODY_AUTH_PROOF:
        CHECK(env->auth_proof != NULL, "body missing");
        CHECK(env->auth_proof->auth_mac.len == KVXI_AUTH_MAC_LEN,
              "auth_proof.auth_mac length");
        return check_memory(env->auth_proof->memory);
    case KVX__V1__ENVELOPE__BODY_ACCEPT:
        CHECK(env->accept != NULL, "body missing");
        return check_memory(env->accept->memory);
    case KVX__V1__ENVELOPE__BODY_STATS:
        CHECK(env->stats != NULL, "body missing");
        return NULL;
    case KVX__V1__ENVELOPE__BODY_STATS_REPLY:
        CHECK(env->stats_reply != NULL, "body missing");
        return check_stats_reply(env->stats_reply);
    case KVX__V1__ENVELOPE__BODY_ERROR:
        CHECK(env->error != NULL, "body missing");
        CHECK(kvxi_status_is_error(env->error->code), "error.code");
        CHECK(kvxi_str_len_ok(env->error->message, 0, KVXI_TEXT_MAX),
              "error.message length");
        CHECK(env->error->request_id == env->request_id,
              "error.request_id differs from the envelope's");
        return NULL;
    case KVX__V1__ENVELOPE__BODY__NOT_SET: return "no body";
    default: break;
    }
    return kvxi_check_local_body(env);
}

kvx_status_t kvxi_envelope_validate(const kvxi_envelope_t *env)
{
    const char *why;

    if (env == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    if (env->version == 0) {
        why = "version 0";
    } else if (env->request_id == 0 &&
               env->body_case != KVX__V1__ENVELOPE__BODY_ERROR) {
        why = "request_id 0";
    } else {
        why = check_body(env);
    }
    if (why != NULL) {
        kvxi_debug("frame: invalid %s (request %llu): %s",
                   kvxi_envelope_body_name(env),
                   (unsigned long long)env->request_id, why);
        return KVX_ERR_PROTO_MALFORMED;
    }
    return KVX_OK;
}

/* ------------------------------------------------------------------------
 * Encoding.
 */

size_t kvxi_frame_size(const kvxi_envelope_t *env)
{
    if (env == NULL) {
        return 0;
    }
    return KVXI_FRAME_HEADER_LEN + kvx__v1__envelope__get_packed_size(env);
}

kvx_status_t kvxi_frame_encode(const kvxi_envelope_t *env, void *buf,
                               size_t cap, size_t *len_p)
{
    uint8_t *p = buf;
    size_t body, packed;

    if (env == NULL || buf == NULL || len_p == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    if (kvxi_envelope_validate(env) != KVX_OK) {
        kvxi_error("frame: refusing to send an invalid %s",
                   kvxi_envelope_body_name(env));
        return KVX_ERR_INVALID_PARAM;
    }
    body = kvx__v1__envelope__get_packed_size(env);
    if (body > KVXI_FRAME_MAX_DEFAULT) {
        kvxi_error("frame: %s of %zu bytes exceeds the %u-byte frame limit",
                   kvxi_envelope_body_name(env), body, KVXI_FRAME_MAX_DEFAULT);
        return KVX_ERR_PROTO_OVERSIZE;
    }
    if (cap < KVXI_FRAME_HEADER_LEN || cap - KVXI_FRAME_HEADER_LEN < body) {
        return KVX_ERR_NO_SPACE;
    }
    p[0] = (uint8_t)(body >> 24);
    p[1] = (uint8_t)(body >> 16);
    p[2] = (uint8_t)(body >> 8);
    p[3] = (uint8_t)body;
    packed = kvx__v1__envelope__pack(env, p + KVXI_FRAME_HEADER_LEN);
    if (packed != body) {
        /* get_packed_size and pack walk the same message: cannot differ
         * unless the envelope changed under us. */
        kvxi_error("frame: packed %zu bytes, expected %zu", packed, body);
        return KVX_ERR_BAD_STATE;
    }
    *len_p = KVXI_FRAME_HEADER_LEN + body;
    return KVX_OK;
}

/* ------------------------------------------------------------------------
 * Decoding.
 */

/*
 * protobuf-c keeps a field numbered 0 (an over-long varint tag) as an
 * unknown field, although no valid encoder writes one, and it could not be
 * re-encoded. Walks every sub-message present and refuses such fields.
 */
static int unknown_fields_ok(const ProtobufCMessage *m, unsigned depth)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    const char *base = (const char *)m;

    if (depth > 8) {
        return 0;
    }
    for (unsigned i = 0; i < m->n_unknown_fields; i++) {
        if (m->unknown_fields[i].tag == 0) {
            return 0;
        }
    }
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const ProtobufCMessage *sub;

        if (f->type != PROTOBUF_C_TYPE_MESSAGE) {
            continue;
        }
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n;
            ProtobufCMessage *const *arr;

            memcpy(&n, base + f->quantifier_offset, sizeof(n));
            memcpy(&arr, base + f->offset, sizeof(arr));
            for (size_t j = 0; j < n; j++) {
                if (arr[j] != NULL && !unknown_fields_ok(arr[j], depth + 1)) {
                    return 0;
                }
            }
            continue;
        }
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            uint32_t which;

            /* Members of a oneof share storage: only the set one is a
             * pointer of this member's type. */
            memcpy(&which, base + f->quantifier_offset, sizeof(which));
            if (which != f->id) {
                continue;
            }
        }
        memcpy(&sub, base + f->offset, sizeof(sub));
        if (sub != NULL && !unknown_fields_ok(sub, depth + 1)) {
            return 0;
        }
    }
    return 1;
}

/*
 * protobuf-c allocates per field while unpacking; a frame of many tiny
 * fields would cost far more memory than its size. This allocator stops it
 * at a budget. Frees are not credited back: within one unpack they only
 * happen on the error path.
 */
typedef struct frame_budget {
    size_t left;
    int over;  /* the budget refused an allocation */
    int nomem; /* malloc itself failed */
} frame_budget_t;

static void *budget_alloc(void *data, size_t size)
{
    frame_budget_t *b = data;
    size_t cost = size + KVXI_FRAME_ALLOC_OVERHEAD;
    void *p;

    if (size > b->left || cost > b->left) {
        b->over = 1;
        return NULL;
    }
    p = malloc(size != 0 ? size : 1);
    if (p == NULL) {
        b->nomem = 1;
        return NULL;
    }
    b->left -= cost;
    return p;
}

static void budget_free(void *data, void *p)
{
    (void)data;
    free(p);
}

kvx_status_t kvxi_frame_decode_budget(const void *buf, size_t len,
                                      size_t max_frame, size_t alloc_budget,
                                      kvxi_envelope_t **env_p,
                                      size_t *consumed_p)
{
    const uint8_t *p = buf;
    frame_budget_t budget = {alloc_budget, 0, 0};
    ProtobufCAllocator allocator = {budget_alloc, budget_free, &budget};
    kvxi_envelope_t *env;
    uint32_t body;

    if (env_p == NULL || consumed_p == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    *consumed_p = 0;
    if (buf == NULL && len > 0) {
        return KVX_ERR_INVALID_PARAM;
    }
    if (max_frame == 0) {
        max_frame = KVXI_FRAME_MAX_DEFAULT;
    }
    if (len < KVXI_FRAME_HEADER_LEN) {
        return KVX_INPROGRESS;
    }
    body = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           (uint32_t)p[3];
    if (body == 0) {
        kvxi_debug("frame: zero-length frame");
        return KVX_ERR_PROTO_MALFORMED;
    }
    if (body > max_frame) {
        kvxi_debug("frame: peer announced %u bytes, limit %zu", body,
                   max_frame);
        return KVX_ERR_PROTO_OVERSIZE;
    }
    if (len - KVXI_FRAME_HEADER_LEN < body) {
        return KVX_INPROGRESS;
    }
    env =
        kvx__v1__envelope__unpack(&allocator, body, p + KVXI_FRAME_HEADER_LEN);
    if (env == NULL) {
        if (budget.nomem) {
            kvxi_error("frame: out of memory decoding %u bytes", body);
            return KVX_ERR_NO_MEMORY;
        }
        kvxi_debug("frame: %u-byte body does not unpack%s", body,
                   budget.over ? " within the allocation budget" : "");
        return KVX_ERR_PROTO_MALFORMED;
    }
    if (!unknown_fields_ok(&env->base, 0)) {
        kvxi_debug("frame: field number 0 in a %u-byte body", body);
        kvxi_frame_free(env);
        return KVX_ERR_PROTO_MALFORMED;
    }
    if (kvxi_envelope_validate(env) != KVX_OK) {
        kvxi_frame_free(env);
        return KVX_ERR_PROTO_MALFORMED;
    }
    *env_p = env;
    *consumed_p = KVXI_FRAME_HEADER_LEN + (size_t)body;
    return KVX_OK;
}

kvx_status_t kvxi_frame_decode(const void *buf, size_t len, size_t max_frame,
                               kvxi_envelope_t **env_p, size_t *consumed_p)
{
    size_t body = 0;

    if (len >= KVXI_FRAME_HEADER_LEN && buf != NULL) {
        const uint8_t *p = buf;

        body = (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 |
               (size_t)p[3];
    }
    return kvxi_frame_decode_budget(
        buf, len, max_frame, KVXI_FRAME_ALLOC_BUDGET(body), env_p, consumed_p);
}

void kvxi_frame_free(kvxi_envelope_t *env)
{
    /* Allocated by budget_alloc() with malloc(): the default allocator's
     * free() releases it. */
    if (env != NULL) {
        kvx__v1__envelope__free_unpacked(env, NULL);
    }
}
