/*
 * One valid envelope per body type, shared by tests/unit/test_frame.c and
 * the seed-corpus generator tests/fuzz/gen_frame_corpus.c. Everything lives
 * inside one frame_sample_t, so a sample needs no allocation and tests can
 * mutate a field and expect the validator to refuse the result.
 */
#ifndef KVX_TEST_FRAME_SAMPLES_H
#define KVX_TEST_FRAME_SAMPLES_H

#include <string.h>

#include "frame_int.h"

#define FRAME_SAMPLE_BLOCKS                                                    \
    5 /* blocks per sample transfer (odd: spare bits)                          \
       */

typedef struct frame_sample {
    Kvx__V1__Envelope env;
    Kvx__V1__Layout layout;
    Kvx__V1__LayerRange layers;
    Kvx__V1__BlockRefs refs;
    Kvx__V1__Memory memory;
    Kvx__V1__Hello hello;
    Kvx__V1__HelloReply hello_reply;
    Kvx__V1__AuthProof auth_proof;
    Kvx__V1__Accept accept;
    Kvx__V1__AllocateRequest allocate_request;
    Kvx__V1__AllocateReply allocate_reply;
    Kvx__V1__LayerReady layer_ready;
    Kvx__V1__Commit commit;
    Kvx__V1__CommitAck commit_ack;
    Kvx__V1__Release release;
    Kvx__V1__ReleaseAck release_ack;
    Kvx__V1__Abort abort_msg;
    Kvx__V1__AbortAck abort_ack;
    Kvx__V1__Lookup lookup;
    Kvx__V1__LookupReply lookup_reply;
    Kvx__V1__Heartbeat heartbeat;
    Kvx__V1__Stats stats;
    Kvx__V1__StatsReply stats_reply;
    Kvx__V1__StatsReply__CountersEntry entries[2];
    Kvx__V1__StatsReply__CountersEntry *entry_ptrs[2];
    Kvx__V1__Error error;
    uint32_t blocks[FRAME_SAMPLE_BLOCKS];
    uint32_t gens[FRAME_SAMPLE_BLOCKS];
    uint64_t checksums[FRAME_SAMPLE_BLOCKS];
    uint8_t keys[FRAME_SAMPLE_BLOCKS * KVXI_KEY_LEN];
    uint8_t nonce[KVXI_AUTH_NONCE_LEN];
    uint8_t mac[KVXI_AUTH_MAC_LEN];
    uint8_t worker_address[48];
    uint8_t rkey[24];
    uint8_t hit_mask[(FRAME_SAMPLE_BLOCKS + 7) / 8];
    Kvx__V1__DataPath paths[2];
} frame_sample_t;

/* Every body type, in field-number order. */
static const Kvx__V1__Envelope__BodyCase frame_sample_bodies[] = {
    KVX__V1__ENVELOPE__BODY_ALLOCATE_REQUEST,
    KVX__V1__ENVELOPE__BODY_ALLOCATE_REPLY,
    KVX__V1__ENVELOPE__BODY_LAYER_READY,
    KVX__V1__ENVELOPE__BODY_COMMIT,
    KVX__V1__ENVELOPE__BODY_COMMIT_ACK,
    KVX__V1__ENVELOPE__BODY_RELEASE,
    KVX__V1__ENVELOPE__BODY_RELEASE_ACK,
    KVX__V1__ENVELOPE__BODY_ABORT,
    KVX__V1__ENVELOPE__BODY_ABORT_ACK,
    KVX__V1__ENVELOPE__BODY_HEARTBEAT,
    KVX__V1__ENVELOPE__BODY_LOOKUP,
    KVX__V1__ENVELOPE__BODY_LOOKUP_REPLY,
    KVX__V1__ENVELOPE__BODY_HELLO,
    KVX__V1__ENVELOPE__BODY_HELLO_REPLY,
    KVX__V1__ENVELOPE__BODY_AUTH_PROOF,
    KVX__V1__ENVELOPE__BODY_ACCEPT,
    KVX__V1__ENVELOPE__BODY_STATS,
    KVX__V1__ENVELOPE__BODY_STATS_REPLY,
    KVX__V1__ENVELOPE__BODY_ERROR,
};
#define FRAME_SAMPLE_N_BODIES                                                  \
    (sizeof(frame_sample_bodies) / sizeof(frame_sample_bodies[0]))

static inline void frame_sample_common(frame_sample_t *s)
{
    static const Kvx__V1__Layout layout_init = KVX__V1__LAYOUT__INIT;
    static const Kvx__V1__LayerRange layers_init = KVX__V1__LAYER_RANGE__INIT;
    static const Kvx__V1__BlockRefs refs_init = KVX__V1__BLOCK_REFS__INIT;
    static const Kvx__V1__Memory memory_init = KVX__V1__MEMORY__INIT;
    static const Kvx__V1__Envelope env_init = KVX__V1__ENVELOPE__INIT;

    memset(s, 0, sizeof(*s));
    s->env = env_init;
    s->env.version = KVXI_PROTO_VERSION;
    s->env.request_id = 42;
    s->env.deadline_us = 250000;

    s->layout = layout_init;
    s->layout.num_layers = 32;
    s->layout.kv_parts = 2;
    s->layout.block_tokens = 16;
    s->layout.kv_heads = 8;
    s->layout.total_heads = 8;
    s->layout.head_start = 0;
    s->layout.head_dim = 128;
    s->layout.dtype_size = 2;
    s->layout.order = KVX__V1__LAYOUT_ORDER__LAYOUT_ORDER_BLOCK_MAJOR;
    s->layout.token_order = KVX__V1__TOKEN_ORDER__TOKEN_ORDER_NHD;
    s->layout.num_blocks = 1024;
    s->layout.block_bytes = 32ull * 2 * 16 * 8 * 128 * 2;
    s->layout.model_id = 0x8b1ea3a5c0ffeeull;

    s->layers = layers_init;
    s->layers.first = 0;
    s->layers.count = 32;

    for (unsigned i = 0; i < FRAME_SAMPLE_BLOCKS; i++) {
        s->blocks[i] = 100 + 3 * i;
        s->gens[i] = 7 + i;
        s->checksums[i] = 0x9e3779b97f4a7c15ull * (i + 1);
    }
    for (unsigned i = 0; i < sizeof(s->keys); i++) {
        s->keys[i] = (uint8_t)(i * 37 + 11);
    }
    for (unsigned i = 0; i < KVXI_AUTH_NONCE_LEN; i++) {
        s->nonce[i] = (uint8_t)(0xa0 + i);
        s->mac[i] = (uint8_t)(0x50 ^ i);
    }
    memset(s->worker_address, 0x77, sizeof(s->worker_address));
    memset(s->rkey, 0x3c, sizeof(s->rkey));
    /* Blocks 0 and 2 hit, the rest missed. */
    s->hit_mask[0] = 0x05;
    s->paths[0] = KVX__V1__DATA_PATH__DATA_PATH_RMA;
    s->paths[1] = KVX__V1__DATA_PATH__DATA_PATH_AM;

    s->refs = refs_init;
    s->refs.n_blocks = FRAME_SAMPLE_BLOCKS;
    s->refs.blocks = s->blocks;
    s->refs.n_gens = FRAME_SAMPLE_BLOCKS;
    s->refs.gens = s->gens;

    s->memory = memory_init;
    s->memory.worker_address.len = sizeof(s->worker_address);
    s->memory.worker_address.data = s->worker_address;
    s->memory.mem_type = KVX__V1__MEM_TYPE__MEM_TYPE_HOST;
    s->memory.pool_base = 0x7f0000000000ull;
    s->memory.pool_length = 1024ull << 21;
    s->memory.rkey.len = sizeof(s->rkey);
    s->memory.rkey.data = s->rkey;
}

/* Fills @s with a valid envelope carrying @body; returns 0 for NOT_SET or an
 * unknown case (then @s->env has no body). */
static inline int frame_sample_init(frame_sample_t *s,
                                    Kvx__V1__Envelope__BodyCase body)
{
    frame_sample_common(s);
    s->env.body_case = body;
    switch (body) {
    case KVX__V1__ENVELOPE__BODY_ALLOCATE_REQUEST:
        kvx__v1__allocate_request__init(&s->allocate_request);
        s->allocate_request.transfer_id = 9001;
        s->allocate_request.block_count = FRAME_SAMPLE_BLOCKS;
        s->allocate_request.keys.len = sizeof(s->keys);
        s->allocate_request.keys.data = s->keys;
        s->allocate_request.layers = &s->layers;
        s->allocate_request.lease_ms = 5000;
        s->allocate_request.mode = KVX__V1__TRANSFER_MODE__TRANSFER_MODE_PUSH;
        s->allocate_request.data_path = KVX__V1__DATA_PATH__DATA_PATH_RMA;
        s->env.allocate_request = &s->allocate_request;
        return 1;
    case KVX__V1__ENVELOPE__BODY_ALLOCATE_REPLY:
        kvx__v1__allocate_reply__init(&s->allocate_reply);
        s->allocate_reply.status = KVX__V1__STATUS__STATUS_OK;
        s->allocate_reply.transfer_id = 9001;
        s->allocate_reply.lease_id = 0x100000003ull;
        s->allocate_reply.block_count = FRAME_SAMPLE_BLOCKS;
        s->allocate_reply.blocks = &s->refs;
        s->allocate_reply.hit_mask.len = sizeof(s->hit_mask);
        s->allocate_reply.hit_mask.data = s->hit_mask;
        s->env.allocate_reply = &s->allocate_reply;
        return 1;
    case KVX__V1__ENVELOPE__BODY_LAYER_READY:
        kvx__v1__layer_ready__init(&s->layer_ready);
        s->layer_ready.transfer_id = 9001;
        s->layers.first = 4;
        s->layers.count = 2;
        s->layer_ready.layers = &s->layers;
        s->env.layer_ready = &s->layer_ready;
        return 1;
    case KVX__V1__ENVELOPE__BODY_COMMIT:
        kvx__v1__commit__init(&s->commit);
        s->commit.transfer_id = 9001;
        s->commit.lease_id = 0x100000003ull;
        s->commit.blocks = &s->refs;
        s->commit.n_checksums = FRAME_SAMPLE_BLOCKS;
        s->commit.checksums = s->checksums;
        s->env.commit = &s->commit;
        return 1;
    case KVX__V1__ENVELOPE__BODY_COMMIT_ACK:
        kvx__v1__commit_ack__init(&s->commit_ack);
        s->commit_ack.status = KVX__V1__STATUS__STATUS_OK;
        s->commit_ack.transfer_id = 9001;
        s->env.commit_ack = &s->commit_ack;
        return 1;
    case KVX__V1__ENVELOPE__BODY_RELEASE:
        kvx__v1__release__init(&s->release);
        s->release.transfer_id = 9001;
        s->release.blocks = &s->refs;
        s->env.release = &s->release;
        return 1;
    case KVX__V1__ENVELOPE__BODY_RELEASE_ACK:
        kvx__v1__release_ack__init(&s->release_ack);
        s->release_ack.status = KVX__V1__STATUS__STATUS_OK;
        s->release_ack.transfer_id = 9001;
        s->release_ack.released = FRAME_SAMPLE_BLOCKS;
        s->env.release_ack = &s->release_ack;
        return 1;
    case KVX__V1__ENVELOPE__BODY_ABORT:
        kvx__v1__abort__init(&s->abort_msg);
        s->abort_msg.transfer_id = 9001;
        s->abort_msg.lease_id = 0x100000003ull;
        s->abort_msg.reason = KVX__V1__STATUS__STATUS_ERR_TIMEOUT;
        s->abort_msg.message = (char *)"prefill cancelled";
        s->env.abort = &s->abort_msg;
        return 1;
    case KVX__V1__ENVELOPE__BODY_ABORT_ACK:
        kvx__v1__abort_ack__init(&s->abort_ack);
        s->abort_ack.transfer_id = 9001;
        s->abort_ack.writes_quiesced = 1;
        s->abort_ack.fence_lifted = 1;
        s->env.abort_ack = &s->abort_ack;
        return 1;
    case KVX__V1__ENVELOPE__BODY_HEARTBEAT:
        kvx__v1__heartbeat__init(&s->heartbeat);
        s->heartbeat.sequence = 17;
        s->heartbeat.sender_time_us = 123456789;
        s->heartbeat.echo_sequence = 16;
        s->heartbeat.echo_time_us = 987654321;
        s->env.heartbeat = &s->heartbeat;
        return 1;
    case KVX__V1__ENVELOPE__BODY_LOOKUP:
        kvx__v1__lookup__init(&s->lookup);
        s->lookup.keys.len = sizeof(s->keys);
        s->lookup.keys.data = s->keys;
        s->env.lookup = &s->lookup;
        return 1;
    case KVX__V1__ENVELOPE__BODY_LOOKUP_REPLY:
        kvx__v1__lookup_reply__init(&s->lookup_reply);
        s->lookup_reply.key_count = FRAME_SAMPLE_BLOCKS;
        s->lookup_reply.prefix_blocks = 3;
        s->env.lookup_reply = &s->lookup_reply;
        return 1;
    case KVX__V1__ENVELOPE__BODY_HELLO:
        kvx__v1__hello__init(&s->hello);
        s->hello.min_version = 1;
        s->hello.max_version = KVXI_PROTO_VERSION;
        s->hello.node_id = (char *)"prefill-0.example:7070";
        s->hello.instance_id = 0x5eed5eed5eedull;
        s->hello.cluster_id = (char *)"test-cluster";
        s->hello.role = KVX__V1__ROLE__ROLE_PREFILL;
        s->hello.layout_hash = 0xfeedfacecafebeefull;
        s->hello.layout = &s->layout;
        s->hello.n_data_paths = 2;
        s->hello.data_paths = s->paths;
        s->hello.nonce.len = sizeof(s->nonce);
        s->hello.nonce.data = s->nonce;
        s->hello.max_frame = KVXI_FRAME_MAX_DEFAULT;
        s->env.hello = &s->hello;
        return 1;
    case KVX__V1__ENVELOPE__BODY_HELLO_REPLY:
        kvx__v1__hello_reply__init(&s->hello_reply);
        s->hello_reply.version = KVXI_PROTO_VERSION;
        s->hello_reply.node_id = (char *)"decode-3.example:7070";
        s->hello_reply.instance_id = 0xd3c0d3ull;
        s->hello_reply.cluster_id = (char *)"test-cluster";
        s->hello_reply.role = KVX__V1__ROLE__ROLE_DECODE;
        s->hello_reply.layout_hash = 0xfeedfacecafebeefull;
        s->hello_reply.layout = &s->layout;
        s->hello_reply.n_data_paths = 1;
        s->hello_reply.data_paths = s->paths;
        s->hello_reply.nonce.len = sizeof(s->nonce);
        s->hello_reply.nonce.data = s->nonce;
        s->hello_reply.auth_mac.len = sizeof(s->mac);
        s->hello_reply.auth_mac.data = s->mac;
        s->env.hello_reply = &s->hello_reply;
        return 1;
    case KVX__V1__ENVELOPE__BODY_AUTH_PROOF:
        kvx__v1__auth_proof__init(&s->auth_proof);
        s->auth_proof.auth_mac.len = sizeof(s->mac);
        s->auth_proof.auth_mac.data = s->mac;
        s->auth_proof.memory = &s->memory;
        s->env.auth_proof = &s->auth_proof;
        return 1;
    case KVX__V1__ENVELOPE__BODY_ACCEPT:
        kvx__v1__accept__init(&s->accept);
        s->accept.memory = &s->memory;
        s->env.accept = &s->accept;
        return 1;
    case KVX__V1__ENVELOPE__BODY_STATS:
        kvx__v1__stats__init(&s->stats);
        s->env.stats = &s->stats;
        return 1;
    case KVX__V1__ENVELOPE__BODY_STATS_REPLY:
        kvx__v1__stats_reply__init(&s->stats_reply);
        s->stats_reply.blocks_total = 1024;
        s->stats_reply.blocks_free = 1000;
        s->stats_reply.transfers_ok = 12;
        s->stats_reply.bytes_sent = 1ull << 33;
        for (unsigned i = 0; i < 2; i++) {
            kvx__v1__stats_reply__counters_entry__init(&s->entries[i]);
            s->entry_ptrs[i] = &s->entries[i];
        }
        s->entries[0].key = (char *)"handshakes";
        s->entries[0].value = 3;
        s->entries[1].key = (char *)"lanes";
        s->entries[1].value = 2;
        s->stats_reply.n_counters = 2;
        s->stats_reply.counters = s->entry_ptrs;
        s->env.stats_reply = &s->stats_reply;
        return 1;
    case KVX__V1__ENVELOPE__BODY_ERROR:
        kvx__v1__error__init(&s->error);
        s->error.code = KVX__V1__STATUS__STATUS_ERR_NO_SPACE;
        s->error.message = (char *)"pool full";
        s->error.request_id = s->env.request_id;
        s->env.error = &s->error;
        return 1;
    case KVX__V1__ENVELOPE__BODY__NOT_SET:
    default: break;
    }
    s->env.body_case = KVX__V1__ENVELOPE__BODY__NOT_SET;
    return 0;
}

#endif /* KVX_TEST_FRAME_SAMPLES_H */
