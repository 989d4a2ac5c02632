/* Unit tests for libkvx/frame.c: the control-channel frame codec. */
#include "ut.h"
#include "status_all.h"

#include <kvx/kvx.h>
#include <stdlib.h>
#include <string.h>

#include "../fuzz/frame_samples.h"
#include "frame_int.h"

#define BUF_MAX 4096

/* xorshift64*: the same garbage on every run. */
static uint64_t rng_state = 0x2545f4914f6cdd1dull;

static uint64_t rng_next(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}

/* Encodes sample @body into @buf; returns the frame length (0 on error). */
static size_t encode_sample(Kvx__V1__Envelope__BodyCase body, uint8_t *buf,
                            size_t cap)
{
    frame_sample_t s;
    size_t len = 0;

    CU_ASSERT_FATAL(frame_sample_init(&s, body));
    CU_ASSERT_EQUAL_FATAL(kvxi_frame_encode(&s.env, buf, cap, &len), KVX_OK);
    CU_ASSERT_EQUAL(len, kvxi_frame_size(&s.env));
    return len;
}

/* Frames @env without validating it (to build semantically invalid frames). */
static size_t pack_raw(const Kvx__V1__Envelope *env, uint8_t *buf)
{
    size_t body = kvx__v1__envelope__get_packed_size(env);

    CU_ASSERT_FATAL(body + 4 <= BUF_MAX);
    buf[0] = (uint8_t)(body >> 24);
    buf[1] = (uint8_t)(body >> 16);
    buf[2] = (uint8_t)(body >> 8);
    buf[3] = (uint8_t)body;
    CU_ASSERT_EQUAL_FATAL(kvx__v1__envelope__pack(env, buf + 4), body);
    return body + 4;
}

static kvx_status_t decode_only(const uint8_t *buf, size_t len,
                                size_t max_frame, size_t *consumed_p)
{
    kvxi_envelope_t *env = NULL;
    size_t consumed = 99;
    kvx_status_t status;

    status = kvxi_frame_decode(buf, len, max_frame, &env, &consumed);
    if (status == KVX_OK) {
        CU_ASSERT_PTR_NOT_NULL(env);
        CU_ASSERT(consumed >= 5 && consumed <= len);
        CU_ASSERT_EQUAL(kvxi_envelope_validate(env), KVX_OK);
        kvxi_frame_free(env);
    } else {
        CU_ASSERT_EQUAL(consumed, 0);
    }
    if (consumed_p != NULL) {
        *consumed_p = consumed;
    }
    return status;
}

static void test_frame_roundtrip_all_bodies(void)
{
    uint8_t buf[BUF_MAX], again[BUF_MAX];

    for (size_t i = 0; i < FRAME_SAMPLE_N_BODIES; i++) {
        kvxi_envelope_t *env = NULL;
        size_t len, len2 = 0, consumed = 0;

        len = encode_sample(frame_sample_bodies[i], buf, sizeof(buf));
        CU_ASSERT_EQUAL_FATAL(kvxi_frame_decode(buf, len, 0, &env, &consumed),
                              KVX_OK);
        CU_ASSERT_EQUAL(consumed, len);
        CU_ASSERT_EQUAL(env->body_case, frame_sample_bodies[i]);
        CU_ASSERT_EQUAL(env->version, KVXI_PROTO_VERSION);
        CU_ASSERT_EQUAL(env->request_id, 42);
        CU_ASSERT_EQUAL(env->deadline_us, 250000);
        CU_ASSERT(protobuf_c_message_check(&env->base));
        /* Packing is deterministic: equal bytes mean equal messages. */
        CU_ASSERT_EQUAL(kvxi_frame_encode(env, again, sizeof(again), &len2),
                        KVX_OK);
        CU_ASSERT_EQUAL(len2, len);
        CU_ASSERT(memcmp(buf, again, len) == 0);
        kvxi_frame_free(env);
    }
}

static void test_frame_roundtrip_fields(void)
{
    uint8_t buf[BUF_MAX];
    kvxi_envelope_t *env = NULL;
    size_t len, consumed;
    frame_sample_t s;

    len =
        encode_sample(KVX__V1__ENVELOPE__BODY_ALLOCATE_REPLY, buf, sizeof(buf));
    CU_ASSERT_EQUAL_FATAL(kvxi_frame_decode(buf, len, 0, &env, &consumed),
                          KVX_OK);
    frame_sample_init(&s, KVX__V1__ENVELOPE__BODY_ALLOCATE_REPLY);
    CU_ASSERT_EQUAL(env->allocate_reply->lease_id, 0x100000003ull);
    CU_ASSERT_EQUAL_FATAL(env->allocate_reply->blocks->n_blocks,
                          FRAME_SAMPLE_BLOCKS);
    CU_ASSERT(memcmp(env->allocate_reply->blocks->blocks, s.blocks,
                     sizeof(s.blocks)) == 0);
    CU_ASSERT(
        memcmp(env->allocate_reply->blocks->gens, s.gens, sizeof(s.gens)) == 0);
    CU_ASSERT_EQUAL(env->allocate_reply->hit_mask.data[0], 0x05);
    kvxi_frame_free(env);

    len = encode_sample(KVX__V1__ENVELOPE__BODY_HELLO, buf, sizeof(buf));
    CU_ASSERT_EQUAL_FATAL(kvxi_frame_decode(buf, len, 0, &env, &consumed),
                          KVX_OK);
    CU_ASSERT_STRING_EQUAL(env->hello->node_id, "prefill-0.example:7070");
    CU_ASSERT_EQUAL(env->hello->layout->head_dim, 128);
    CU_ASSERT_EQUAL(env->hello->nonce.len, KVXI_AUTH_NONCE_LEN);
    CU_ASSERT_EQUAL(env->hello->n_data_paths, 2);
    kvxi_frame_free(env);
}

static void test_frame_byte_at_a_time(void)
{
    uint8_t buf[BUF_MAX];

    for (size_t i = 0; i < FRAME_SAMPLE_N_BODIES; i++) {
        size_t len = encode_sample(frame_sample_bodies[i], buf, sizeof(buf));

        /* Every proper prefix, the header's included, asks for more. */
        for (size_t have = 0; have < len; have++) {
            kvxi_envelope_t *env = NULL;
            size_t consumed = 7;

            CU_ASSERT_EQUAL(
                kvxi_frame_decode(have ? buf : NULL, have, 0, &env, &consumed),
                KVX_INPROGRESS);
            CU_ASSERT_EQUAL(consumed, 0);
            CU_ASSERT_PTR_NULL(env);
        }
        CU_ASSERT_EQUAL(decode_only(buf, len, 0, NULL), KVX_OK);
    }
}

static void test_frame_back_to_back(void)
{
    static uint8_t stream[FRAME_SAMPLE_N_BODIES * BUF_MAX];
    size_t total = 0, pos = 0, n = 0;

    for (size_t i = 0; i < FRAME_SAMPLE_N_BODIES; i++) {
        total += encode_sample(frame_sample_bodies[i], stream + total,
                               sizeof(stream) - total);
    }
    /* A decoder stops at the first frame and never reads past it. */
    while (pos < total) {
        kvxi_envelope_t *env = NULL;
        size_t consumed = 0;

        CU_ASSERT_EQUAL_FATAL(
            kvxi_frame_decode(stream + pos, total - pos, 0, &env, &consumed),
            KVX_OK);
        CU_ASSERT_EQUAL(env->body_case, frame_sample_bodies[n]);
        kvxi_frame_free(env);
        pos += consumed;
        n++;
    }
    CU_ASSERT_EQUAL(pos, total);
    CU_ASSERT_EQUAL(n, FRAME_SAMPLE_N_BODIES);
}

static void test_frame_oversize(void)
{
    uint8_t hdr[4] = {0x00, 0x40, 0x00, 0x01}; /* 4 MiB + 1 */
    uint8_t buf[BUF_MAX];
    size_t len;

    /* Decided from the header alone, before any body byte arrived. */
    CU_ASSERT_EQUAL(decode_only(hdr, 4, 0, NULL), KVX_ERR_PROTO_OVERSIZE);
    hdr[0] = 0xff;
    CU_ASSERT_EQUAL(decode_only(hdr, 4, 0, NULL), KVX_ERR_PROTO_OVERSIZE);
    CU_ASSERT_EQUAL(decode_only(hdr, 4, SIZE_MAX, NULL), KVX_INPROGRESS);
    /* Exactly the limit is fine, one more byte is not. */
    len = encode_sample(KVX__V1__ENVELOPE__BODY_HELLO, buf, sizeof(buf));
    CU_ASSERT_EQUAL(decode_only(buf, len, len - 4, NULL), KVX_OK);
    CU_ASSERT_EQUAL(decode_only(buf, len, len - 5, NULL),
                    KVX_ERR_PROTO_OVERSIZE);
    CU_ASSERT_EQUAL(decode_only(buf, 4, len - 5, NULL), KVX_ERR_PROTO_OVERSIZE);
}

static void test_frame_zero_length(void)
{
    uint8_t zero[8] = {0};

    CU_ASSERT_EQUAL(decode_only(zero, 4, 0, NULL), KVX_ERR_PROTO_MALFORMED);
    CU_ASSERT_EQUAL(decode_only(zero, 8, 0, NULL), KVX_ERR_PROTO_MALFORMED);
    CU_ASSERT_EQUAL(decode_only(zero, 3, 0, NULL), KVX_INPROGRESS);
}

static void test_frame_truncated_body(void)
{
    uint8_t buf[BUF_MAX];

    /* The header claims fewer bytes than the message has: the body ends in
     * the middle of a field, which must not unpack. */
    for (size_t i = 0; i < FRAME_SAMPLE_N_BODIES; i++) {
        size_t len = encode_sample(frame_sample_bodies[i], buf, sizeof(buf));
        size_t body = len - 5;

        buf[0] = (uint8_t)(body >> 24);
        buf[1] = (uint8_t)(body >> 16);
        buf[2] = (uint8_t)(body >> 8);
        buf[3] = (uint8_t)body;
        CU_ASSERT_EQUAL(decode_only(buf, len - 1, 0, NULL),
                        KVX_ERR_PROTO_MALFORMED);
    }
}

static void test_frame_unknown_fields(void)
{
    /* version 1, request 5, then length-delimited field 99 (no body). */
    static const uint8_t no_body[] = {0,    0,    0,    7,    0x08, 0x01,
                                      0x10, 0x05, 0x9a, 0x06, 0x00};
    /* The same plus an empty heartbeat (field 13): valid, the unknown field
     * is ignored for forward compatibility. */
    static const uint8_t with_body[] = {
        0, 0, 0, 9, 0x08, 0x01, 0x10, 0x05, 0x9a, 0x06, 0x00, 0x6a, 0x00};
    /* Field 13 with wire type varint instead of a message. */
    static const uint8_t bad_type[] = {0,    0,    0,    6,    0x08,
                                       0x01, 0x10, 0x05, 0x68, 0x00};

    /* Field number 0 (an over-long tag protobuf-c accepts but no encoder
     * writes), at the top and inside the body. Found by fuzz_frame. */
    static const uint8_t tag0_top[] = {0,    0,    0,    9,    0x08, 0x01, 0x10,
                                       0x05, 0x80, 0x00, 0x00, 0x6a, 0x00};
    static const uint8_t tag0_body[] = {
        0, 0, 0, 9, 0x08, 0x01, 0x10, 0x05, 0x6a, 0x03, 0x80, 0x00, 0x00};

    CU_ASSERT_EQUAL(decode_only(tag0_top, sizeof(tag0_top), 0, NULL),
                    KVX_ERR_PROTO_MALFORMED);
    CU_ASSERT_EQUAL(decode_only(tag0_body, sizeof(tag0_body), 0, NULL),
                    KVX_ERR_PROTO_MALFORMED);
    CU_ASSERT_EQUAL(decode_only(no_body, sizeof(no_body), 0, NULL),
                    KVX_ERR_PROTO_MALFORMED);
    CU_ASSERT_EQUAL(decode_only(with_body, sizeof(with_body), 0, NULL), KVX_OK);
    CU_ASSERT_EQUAL(decode_only(bad_type, sizeof(bad_type), 0, NULL),
                    KVX_ERR_PROTO_MALFORMED);
}

static void test_frame_random_garbage(void)
{
    uint8_t buf[600];
    unsigned n_ok = 0, n_more = 0, n_bad = 0;

    rng_state = 0x2545f4914f6cdd1dull;
    for (unsigned iter = 0; iter < 100000; iter++) {
        size_t len = (size_t)(rng_next() % sizeof(buf));
        size_t max_frame = (iter % 3 == 0) ? 64 : 0;
        size_t consumed;
        kvx_status_t status;

        for (size_t i = 0; i < len; i++) {
            buf[i] = (uint8_t)rng_next();
        }
        /* Mostly a plausible header, so the unpacker sees the bytes. */
        if (len >= 5 && iter % 4 != 0) {
            size_t body = 1 + (size_t)(rng_next() % (len - 4));

            buf[0] = 0;
            buf[1] = 0;
            buf[2] = (uint8_t)(body >> 8);
            buf[3] = (uint8_t)body;
        }
        status = decode_only(buf, len, max_frame, &consumed);
        if (status == KVX_OK) {
            n_ok++;
        } else if (status == KVX_INPROGRESS) {
            n_more++;
        } else {
            CU_ASSERT(status == KVX_ERR_PROTO_MALFORMED ||
                      status == KVX_ERR_PROTO_OVERSIZE);
            n_bad++;
        }
    }
    CU_ASSERT(n_bad > 50000);
    CU_ASSERT_EQUAL(n_ok + n_more + n_bad, 100000);
}

static void test_frame_mutated_valid(void)
{
    uint8_t orig[BUF_MAX], buf[BUF_MAX];

    rng_state = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < FRAME_SAMPLE_N_BODIES; i++) {
        size_t len = encode_sample(frame_sample_bodies[i], orig, sizeof(orig));

        for (unsigned iter = 0; iter < 2000; iter++) {
            unsigned flips = 1 + (unsigned)(rng_next() % 4);

            memcpy(buf, orig, len);
            for (unsigned f = 0; f < flips; f++) {
                size_t at = 4 + (size_t)(rng_next() % (len - 4));

                buf[at] ^= (uint8_t)(1u << (rng_next() % 8));
            }
            (void)decode_only(buf, len, 0, NULL);
        }
    }
}

/* Each case breaks one rule of a valid sample; validate must catch it. */
static void break_sample(frame_sample_t *s, unsigned which)
{
    switch (which) {
    case 0: s->env.version = 0; break;
    case 1: s->env.request_id = 0; break;
    case 2: s->allocate_request.keys.len = sizeof(s->keys) - 1; break;
    case 3: s->allocate_request.block_count = FRAME_SAMPLE_BLOCKS - 1; break;
    case 4: s->allocate_request.mode = 0; break;
    case 5:
        s->allocate_request.mode = KVX__V1__TRANSFER_MODE__TRANSFER_MODE_PULL;
        break;
    case 6: s->allocate_request.data_path = 7; break;
    case 7: s->allocate_request.block_count = 0; break;
    case 8: s->allocate_request.lease_ms = KVXI_LEASE_MS_MAX + 1; break;
    case 9: s->allocate_request.layers->count = 0; break;
    case 10: s->allocate_reply.hit_mask.len = 0; break;
    case 11: s->allocate_reply.hit_mask.data[0] |= 0x80; break;
    case 12: s->allocate_reply.lease_id = 0; break;
    case 13: s->allocate_reply.blocks->n_gens--; break;
    case 14: s->allocate_reply.block_count = 9; break;
    case 15: s->allocate_reply.status = 0; break;
    case 16: s->commit.n_checksums = 2; break;
    case 17: s->commit.lease_id = 0; break;
    case 18: s->layer_ready.layers->first = KVXI_LAYERS_MAX; break;
    case 19: s->hello.nonce.len = KVXI_AUTH_NONCE_LEN - 1; break;
    case 20: s->hello.layout = NULL; break;
    case 21: s->layout.kv_parts = 3; break;
    case 22: s->layout.head_start = 4; break;
    case 23: s->hello.n_data_paths = 0; break;
    case 24: s->hello.node_id = (char *)""; break;
    case 25: s->hello.max_version = 0; break;
    case 26: s->auth_proof.memory = NULL; break;
    case 27: s->memory.pool_length = 0; break;
    case 28: s->memory.pool_base = UINT64_MAX - 8; break;
    case 29: s->error.code = KVX__V1__STATUS__STATUS_OK; break;
    case 30: s->error.request_id = 41; break;
    case 31: s->lookup.keys.len = 0; break;
    case 32: s->lookup.keys.len = 20; break;
    case 33: s->lookup_reply.prefix_blocks = FRAME_SAMPLE_BLOCKS + 1; break;
    case 34: s->entries[1].key = (char *)""; break;
    case 35: s->abort_msg.reason = 0; break;
    case 36: s->hello_reply.auth_mac.len = 16; break;
    case 37: s->memory.worker_address.len = 0; break;
    case 38: s->release.blocks = NULL; break;
    case 39: s->env.body_case = KVX__V1__ENVELOPE__BODY__NOT_SET; break;
    case 40: s->layout.order = 0; break;
    case 41: s->hello.role = 9; break;
    case 42: s->accept.memory->mem_type = 0; break;
    case 43: s->hello.max_frame = 100; break;
    case 44:
        s->allocate_reply.status = KVX__V1__STATUS__STATUS_ERR_NO_SPACE;
        break;
    default: break;
    }
}

static const Kvx__V1__Envelope__BodyCase broken_body[] = {
    KVX__V1__ENVELOPE__BODY_HEARTBEAT,
    KVX__V1__ENVELOPE__BODY_COMMIT_ACK,
    KVX__V1__ENVELOPE__BODY_ALLOCATE_REQUEST,
    KVX__V1__ENVELOPE__BODY_ALLOCATE_REQUEST,
    KVX__V1__ENVELOPE__BODY_ALLOCATE_REQUEST,
    KVX__V1__ENVELOPE__BODY_ALLOCATE_REQUEST,
    KVX__V1__ENVELOPE__BODY_ALLOCATE_REQUEST,
    KVX__V1__ENVELOPE__BODY_ALLOCATE_REQUEST,
    KVX__V1__ENVELOPE__BODY_ALLOCATE_REQUEST,
    KVX__V1__ENVELOPE__BODY_ALLOCATE_REQUEST,
    KVX__V1__ENVELOPE__BODY_ALLOCATE_REPLY,
    KVX__V1__ENVELOPE__BODY_ALLOCATE_REPLY,
    KVX__V1__ENVELOPE__BODY_ALLOCATE_REPLY,
    KVX__V1__ENVELOPE__BODY_ALLOCATE_REPLY,
    KVX__V1__ENVELOPE__BODY_ALLOCATE_REPLY,
    KVX__V1__ENVELOPE__BODY_ALLOCATE_REPLY,
    KVX__V1__ENVELOPE__BODY_COMMIT,
    KVX__V1__ENVELOPE__BODY_COMMIT,
    KVX__V1__ENVELOPE__BODY_LAYER_READY,
    KVX__V1__ENVELOPE__BODY_HELLO,
    KVX__V1__ENVELOPE__BODY_HELLO,
    KVX__V1__ENVELOPE__BODY_HELLO,
    KVX__V1__ENVELOPE__BODY_HELLO_REPLY,
    KVX__V1__ENVELOPE__BODY_HELLO,
    KVX__V1__ENVELOPE__BODY_HELLO,
    KVX__V1__ENVELOPE__BODY_HELLO,
    KVX__V1__ENVELOPE__BODY_AUTH_PROOF,
    KVX__V1__ENVELOPE__BODY_AUTH_PROOF,
    KVX__V1__ENVELOPE__BODY_ACCEPT,
    KVX__V1__ENVELOPE__BODY_ERROR,
    KVX__V1__ENVELOPE__BODY_ERROR,
    KVX__V1__ENVELOPE__BODY_LOOKUP,
    KVX__V1__ENVELOPE__BODY_LOOKUP,
    KVX__V1__ENVELOPE__BODY_LOOKUP_REPLY,
    KVX__V1__ENVELOPE__BODY_STATS_REPLY,
    KVX__V1__ENVELOPE__BODY_ABORT,
    KVX__V1__ENVELOPE__BODY_HELLO_REPLY,
    KVX__V1__ENVELOPE__BODY_ACCEPT,
    KVX__V1__ENVELOPE__BODY_RELEASE,
    KVX__V1__ENVELOPE__BODY_STATS,
    KVX__V1__ENVELOPE__BODY_HELLO,
    KVX__V1__ENVELOPE__BODY_HELLO,
    KVX__V1__ENVELOPE__BODY_ACCEPT,
    KVX__V1__ENVELOPE__BODY_HELLO,
    KVX__V1__ENVELOPE__BODY_ALLOCATE_REPLY,
};
#define N_BROKEN (sizeof(broken_body) / sizeof(broken_body[0]))

static void test_frame_semantic_invalid(void)
{
    uint8_t buf[BUF_MAX];

    for (unsigned i = 0; i < N_BROKEN; i++) {
        frame_sample_t s;
        size_t len, out = 0;

        frame_sample_init(&s, broken_body[i]);
        CU_ASSERT_EQUAL(kvxi_envelope_validate(&s.env), KVX_OK);
        break_sample(&s, i);
        if (kvxi_envelope_validate(&s.env) != KVX_ERR_PROTO_MALFORMED) {
            fprintf(stderr, "\n  rule %u not caught\n", i);
            CU_FAIL("broken sample passed validation");
            continue;
        }
        /* The sender refuses to put it on the wire ... */
        CU_ASSERT_EQUAL(kvxi_frame_encode(&s.env, buf, sizeof(buf), &out),
                        KVX_ERR_INVALID_PARAM);
        /* ... and the receiver refuses it if it arrives anyway. */
        len = pack_raw(&s.env, buf);
        CU_ASSERT_EQUAL(decode_only(buf, len, 0, NULL),
                        KVX_ERR_PROTO_MALFORMED);
    }
}

/* Each case varies a valid sample into another valid form. */
static void vary_sample(frame_sample_t *s, unsigned which)
{
    switch (which) {
    case 0: /* back-pressure: a failure carries nothing */
        s->allocate_reply.status = KVX__V1__STATUS__STATUS_ERR_NO_SPACE;
        s->allocate_reply.lease_id = 0;
        s->allocate_reply.blocks = NULL;
        s->allocate_reply.hit_mask.len = 0;
        break;
    case 1: /* every block hit: no lease */
        s->allocate_reply.lease_id = 0;
        s->hit_mask[0] = 0x1f;
        break;
    case 2: /* pull: the sender's source blocks */
        s->allocate_request.mode = KVX__V1__TRANSFER_MODE__TRANSFER_MODE_PULL;
        s->allocate_request.src_blocks = &s->refs;
        break;
    case 3: /* no dedupe, all layers */
        s->allocate_request.keys.len = 0;
        s->allocate_request.layers = NULL;
        s->allocate_request.lease_ms = 0;
        break;
    case 4: /* answering an undecodable frame */
        s->env.request_id = 0;
        s->error.request_id = 0;
        break;
    case 5: /* default frame limit, AM only, no cluster */
        s->hello.max_frame = 0;
        s->hello.n_data_paths = 1;
        s->hello.data_paths = &s->paths[1];
        s->hello.cluster_id = (char *)"";
        break;
    case 6: /* AM only: no rkey */
        s->memory.rkey.len = 0;
        s->memory.pool_length = 0;
        break;
    case 7: /* a newer peer's error code */ s->error.code = 177; break;
    default: break;
    }
}

static const Kvx__V1__Envelope__BodyCase varied_body[] = {
    KVX__V1__ENVELOPE__BODY_ALLOCATE_REPLY,
    KVX__V1__ENVELOPE__BODY_ALLOCATE_REPLY,
    KVX__V1__ENVELOPE__BODY_ALLOCATE_REQUEST,
    KVX__V1__ENVELOPE__BODY_ALLOCATE_REQUEST,
    KVX__V1__ENVELOPE__BODY_ERROR,
    KVX__V1__ENVELOPE__BODY_HELLO,
    KVX__V1__ENVELOPE__BODY_ACCEPT,
    KVX__V1__ENVELOPE__BODY_ERROR,
};
#define N_VARIED (sizeof(varied_body) / sizeof(varied_body[0]))

static void test_frame_valid_variants(void)
{
    uint8_t buf[BUF_MAX];

    for (unsigned i = 0; i < N_VARIED; i++) {
        frame_sample_t s;
        size_t len = 0;

        frame_sample_init(&s, varied_body[i]);
        vary_sample(&s, i);
        CU_ASSERT_EQUAL(kvxi_envelope_validate(&s.env), KVX_OK);
        CU_ASSERT_EQUAL(kvxi_frame_encode(&s.env, buf, sizeof(buf), &len),
                        KVX_OK);
        CU_ASSERT_EQUAL(decode_only(buf, len, 0, NULL), KVX_OK);
    }
    CU_ASSERT_EQUAL(kvxi_status_from_wire(177), KVX_ERR_PROTO_MALFORMED);
}

static void test_frame_encode_no_space(void)
{
    uint8_t buf[BUF_MAX];
    frame_sample_t s;
    size_t need, len = 0;

    frame_sample_init(&s, KVX__V1__ENVELOPE__BODY_HELLO);
    need = kvxi_frame_size(&s.env);
    CU_ASSERT(need > 4 && need < sizeof(buf));
    for (size_t cap = 0; cap < need; cap++) {
        CU_ASSERT_EQUAL(kvxi_frame_encode(&s.env, buf, cap, &len),
                        KVX_ERR_NO_SPACE);
    }
    CU_ASSERT_EQUAL(len, 0);
    CU_ASSERT_EQUAL(kvxi_frame_encode(&s.env, buf, need, &len), KVX_OK);
    CU_ASSERT_EQUAL(len, need);
    CU_ASSERT_EQUAL(kvxi_frame_size(NULL), 0);
}

static void test_frame_encode_oversize(void)
{
    size_t nkeys = (KVXI_FRAME_MAX_DEFAULT / KVXI_KEY_LEN) + 1;
    uint8_t *keys = calloc(nkeys, KVXI_KEY_LEN);
    uint8_t buf[64];
    frame_sample_t s;
    size_t len = 0;

    CU_ASSERT_PTR_NOT_NULL_FATAL(keys);
    frame_sample_init(&s, KVX__V1__ENVELOPE__BODY_LOOKUP);
    s.lookup.keys.len = nkeys * KVXI_KEY_LEN;
    s.lookup.keys.data = keys;
    CU_ASSERT_EQUAL(kvxi_envelope_validate(&s.env), KVX_OK);
    CU_ASSERT_EQUAL(kvxi_frame_encode(&s.env, buf, sizeof(buf), &len),
                    KVX_ERR_PROTO_OVERSIZE);
    free(keys);
}

static void test_frame_alloc_budget(void)
{
    uint8_t buf[BUF_MAX];
    static uint8_t bomb[4 + 8 + 200000];
    size_t len, n_ok = 0, body = 100000 * 2;

    /* Every allocation failure inside the unpacker is survived (ASan
     * checks for leaks and double frees on each path). */
    len = encode_sample(KVX__V1__ENVELOPE__BODY_STATS_REPLY, buf, sizeof(buf));
    for (size_t budget = 0; budget < 4096; budget += 8) {
        kvxi_envelope_t *env = NULL;
        size_t consumed = 0;
        kvx_status_t status =
            kvxi_frame_decode_budget(buf, len, 0, budget, &env, &consumed);

        if (status == KVX_OK) {
            n_ok++;
            kvxi_frame_free(env);
        } else {
            CU_ASSERT_EQUAL(status, KVX_ERR_PROTO_MALFORMED);
        }
    }
    CU_ASSERT(n_ok > 0);
    len = encode_sample(KVX__V1__ENVELOPE__BODY_HELLO, buf, sizeof(buf));
    for (size_t budget = 0; budget < 4096; budget += 4) {
        kvxi_envelope_t *env = NULL;
        size_t consumed = 0;

        if (kvxi_frame_decode_budget(buf, len, 0, budget, &env, &consumed) ==
            KVX_OK) {
            kvxi_frame_free(env);
        }
    }

    /* A heartbeat carrying 100,000 unknown varint fields: 2 wire bytes
     * each, ~90 bytes each once unpacked. Valid protobuf and a valid
     * envelope, yet refused by the default budget instead of costing 45x
     * its size; an unlimited budget decodes it. */
    len = 4;
    bomb[len++] = 0x08; /* version 1 */
    bomb[len++] = 0x01;
    bomb[len++] = 0x10; /* request_id 1 */
    bomb[len++] = 0x01;
    bomb[len++] = 0x6a; /* field 13 (heartbeat), length-delimited */
    bomb[len++] = (uint8_t)(0x80 | (body & 0x7f)); /* varint length */
    bomb[len++] = (uint8_t)(0x80 | ((body >> 7) & 0x7f));
    bomb[len++] = (uint8_t)(body >> 14);
    for (size_t i = 0; i < 100000; i++) {
        bomb[len++] = 0x78; /* field 15, varint 0: unknown to Heartbeat */
        bomb[len++] = 0x00;
    }
    CU_ASSERT_EQUAL_FATAL(len, sizeof(bomb));
    bomb[0] = (uint8_t)((len - 4) >> 24);
    bomb[1] = (uint8_t)((len - 4) >> 16);
    bomb[2] = (uint8_t)((len - 4) >> 8);
    bomb[3] = (uint8_t)(len - 4);
    CU_ASSERT_EQUAL(decode_only(bomb, len, 0, NULL), KVX_ERR_PROTO_MALFORMED);
    {
        kvxi_envelope_t *env = NULL;
        size_t consumed = 0;

        CU_ASSERT_EQUAL_FATAL(
            kvxi_frame_decode_budget(bomb, len, 0, SIZE_MAX, &env, &consumed),
            KVX_OK);
        CU_ASSERT_EQUAL(env->heartbeat->base.n_unknown_fields, 100000);
        kvxi_frame_free(env);
    }
}

static void test_frame_invalid_args(void)
{
    uint8_t buf[BUF_MAX];
    kvxi_envelope_t *env = NULL;
    size_t len = 0, consumed = 0;
    frame_sample_t s;

    frame_sample_init(&s, KVX__V1__ENVELOPE__BODY_STATS);
    CU_ASSERT_EQUAL(kvxi_frame_encode(NULL, buf, sizeof(buf), &len),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvxi_frame_encode(&s.env, NULL, sizeof(buf), &len),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvxi_frame_encode(&s.env, buf, sizeof(buf), NULL),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvxi_frame_encode(&s.env, buf, sizeof(buf), &len), KVX_OK);
    CU_ASSERT_EQUAL(kvxi_frame_decode(buf, len, 0, NULL, &consumed),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvxi_frame_decode(buf, len, 0, &env, NULL),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvxi_frame_decode(NULL, 5, 0, &env, &consumed),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvxi_frame_decode(NULL, 0, 0, &env, &consumed),
                    KVX_INPROGRESS);
    CU_ASSERT_EQUAL(kvxi_envelope_validate(NULL), KVX_ERR_INVALID_PARAM);
    kvxi_frame_free(NULL);
    CU_ASSERT_STRING_EQUAL(kvxi_envelope_body_name(&s.env), "stats");
    CU_ASSERT_STRING_EQUAL(kvxi_envelope_body_name(NULL), "(null)");
}

static void test_status_wire_roundtrip(void)
{
    for (size_t i = 0; i < N_STATUS; i++) {
        uint32_t wire = kvxi_status_to_wire(all_status[i]);

        CU_ASSERT(wire != 0);
        CU_ASSERT_EQUAL(kvxi_status_from_wire(wire), all_status[i]);
        for (size_t j = 0; j < i; j++) {
            CU_ASSERT(wire != kvxi_status_to_wire(all_status[j]));
        }
        /* The wire keeps the ranges: 150..199 protocol, 200..249 peer. */
        CU_ASSERT_EQUAL(KVX_STATUS_IS_PROTO(all_status[i]),
                        wire >= 150 && wire <= 199);
        CU_ASSERT_EQUAL(KVX_STATUS_IS_PEER(all_status[i]),
                        wire >= 200 && wire <= 249);
    }
    CU_ASSERT_EQUAL(kvxi_status_to_wire(KVX_OK), 1);
    CU_ASSERT_EQUAL(kvxi_status_to_wire(KVX_ERR_PEER_DOWN), 200);
}

static void test_status_wire_unknown(void)
{
    unsigned n_known = 0;

    CU_ASSERT_EQUAL(kvxi_status_from_wire(0), KVX_ERR_PROTO_MALFORMED);
    CU_ASSERT_EQUAL(kvxi_status_from_wire(UINT32_MAX), KVX_ERR_PROTO_MALFORMED);
    CU_ASSERT_EQUAL(kvxi_status_to_wire((kvx_status_t)-77), 0);
    for (uint32_t w = 0; w < 1000; w++) {
        kvx_status_t s = kvxi_status_from_wire(w);

        if (kvxi_status_to_wire(s) == w) {
            n_known++;
        } else {
            CU_ASSERT_EQUAL(s, KVX_ERR_PROTO_MALFORMED);
        }
    }
    CU_ASSERT_EQUAL(n_known, N_STATUS);
}

static const ut_test_t frame_tests[] = {
    UT_TEST(test_frame_roundtrip_all_bodies),
    UT_TEST(test_frame_roundtrip_fields),
    UT_TEST(test_frame_byte_at_a_time),
    UT_TEST(test_frame_back_to_back),
    UT_TEST(test_frame_oversize),
    UT_TEST(test_frame_zero_length),
    UT_TEST(test_frame_truncated_body),
    UT_TEST(test_frame_unknown_fields),
    UT_TEST(test_frame_random_garbage),
    UT_TEST(test_frame_mutated_valid),
    UT_TEST(test_frame_semantic_invalid),
    UT_TEST(test_frame_valid_variants),
    UT_TEST(test_frame_encode_no_space),
    UT_TEST(test_frame_encode_oversize),
    UT_TEST(test_frame_alloc_budget),
    UT_TEST(test_frame_invalid_args),
    UT_END,
};

static const ut_test_t status_wire_tests[] = {
    UT_TEST(test_status_wire_roundtrip),
    UT_TEST(test_status_wire_unknown),
    UT_END,
};

int main(void)
{
    static const ut_suite_t suites[] = {
        {"frame", frame_tests},
        {"status_wire", status_wire_tests},
        {NULL, NULL},
    };

    return ut_main(suites);
}
