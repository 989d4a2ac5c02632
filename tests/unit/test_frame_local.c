/*
 * Unit tests for libkvx/frame_local.c: validation of the local engine
 * session's messages. Every body round-trips; every rule refuses a sample
 * broken in exactly that way, on the sending side (encode) and the
 * receiving side (decode); the variants the rules allow pass.
 */
#include "ut.h"

#include <kvx/kvx.h>
#include <stdlib.h>
#include <string.h>

#include "../fuzz/frame_samples_local.h"
#include "frame_int.h"

#define BUF_MAX 4096

static size_t encode_local(frame_local_sample_t *s, uint8_t *buf, size_t cap)
{
    size_t len = 0;

    CU_ASSERT_EQUAL_FATAL(kvxi_frame_encode(&s->base.env, buf, cap, &len),
                          KVX_OK);
    return len;
}

static void test_frame_local_roundtrip(void)
{
    uint8_t buf[BUF_MAX], again[BUF_MAX];

    for (size_t i = 0; i < FRAME_LOCAL_SAMPLE_N_BODIES; i++) {
        frame_local_sample_t s;
        kvxi_envelope_t *env = NULL;
        size_t len, len2 = 0, consumed = 0;

        CU_ASSERT_FATAL(
            frame_local_sample_init(&s, frame_local_sample_bodies[i]));
        len = encode_local(&s, buf, sizeof(buf));
        CU_ASSERT_EQUAL_FATAL(kvxi_frame_decode(buf, len, 0, &env, &consumed),
                              KVX_OK);
        CU_ASSERT_EQUAL(consumed, len);
        CU_ASSERT_EQUAL(env->body_case, frame_local_sample_bodies[i]);
        CU_ASSERT_STRING_NOT_EQUAL(kvxi_envelope_body_name(env), "none");
        CU_ASSERT_EQUAL(kvxi_frame_encode(env, again, sizeof(again), &len2),
                        KVX_OK);
        CU_ASSERT_EQUAL(len2, len);
        CU_ASSERT(memcmp(buf, again, len) == 0);
        kvxi_frame_free(env);
    }
}

/* One broken sample per rule of frame_local.c. */
typedef struct broken {
    Kvx__V1__Envelope__BodyCase body;
    const char *rule;
    void (*brk)(frame_local_sample_t *s);
} broken_t;

#define BROKEN(b, name, stmt)                                                  \
    static void brk_##name(frame_local_sample_t *s)                            \
    {                                                                          \
        stmt;                                                                  \
    }
#define B(x) KVX__V1__ENVELOPE__BODY_##x

BROKEN(ATTACH, attach_min, s->attach.min_version = 0)
BROKEN(ATTACH, attach_max, s->attach.max_version = 0)
BROKEN(ATTACH, attach_name, {
    static char name[KVXI_NAME_MAX + 2];
    memset(name, 'n', sizeof(name) - 1);
    s->attach.client_name = name;
})
BROKEN(ATTACH, attach_missing, s->base.env.attach = NULL)
BROKEN(ATTACH_REPLY, ar_status, s->attach_reply.status = 0)
BROKEN(ATTACH_REPLY, ar_fail_layout,
       s->attach_reply.status = KVX__V1__STATUS__STATUS_ERR_PROTO_VERSION)
BROKEN(ATTACH_REPLY, ar_version, s->attach_reply.version = 0)
BROKEN(ATTACH_REPLY, ar_node_id, s->attach_reply.node_id = (char *)"")
BROKEN(ATTACH_REPLY, ar_layout, s->attach_reply.layout = NULL)
BROKEN(ATTACH_REPLY, ar_layout_bad, s->base.layout.kv_parts = 3)
BROKEN(ATTACH_REPLY, ar_pool_small,
       s->attach_reply.pool_bytes = s->base.layout.block_bytes)
BROKEN(RESERVE, reserve_zero, s->reserve.block_count = 0)
BROKEN(RESERVE, reserve_many, {
    s->reserve.block_count = KVXI_BLOCKS_MAX + 1;
    s->reserve.keys.len = 0;
})
BROKEN(RESERVE, reserve_keys, s->reserve.keys.len -= KVXI_KEY_LEN)
BROKEN(RESERVE, reserve_lease, s->reserve.lease_ms = KVXI_LEASE_MS_MAX + 1)
BROKEN(RESERVE_REPLY, rr_status, s->reserve_reply.status = 0)
BROKEN(RESERVE_REPLY, rr_fail_blocks,
       s->reserve_reply.status = KVX__V1__STATUS__STATUS_ERR_NO_SPACE)
BROKEN(RESERVE_REPLY, rr_count, s->reserve_reply.block_count = 4)
BROKEN(RESERVE_REPLY, rr_refs, s->base.refs.n_gens = 4)
BROKEN(RESERVE_REPLY, rr_mask_len, s->reserve_reply.hit_mask.len = 0)
BROKEN(RESERVE_REPLY, rr_mask_spare, s->base.hit_mask[0] |= 0x80)
BROKEN(RESERVE_REPLY, rr_lease, s->reserve_reply.lease_id = 0)
BROKEN(SEAL, seal_lease, s->seal.lease_id = 0)
BROKEN(PUSH_START, push_peer, s->push_start.peer = (char *)"")
BROKEN(PUSH_START, push_refs, s->push_start.blocks = NULL)
BROKEN(PUSH_START, push_keys, s->push_start.keys.len = KVXI_KEY_LEN)
BROKEN(PUSH_START, push_deadline,
       s->push_start.deadline_ms = KVXI_LEASE_MS_MAX + 1)
BROKEN(PULL_START, pull_peer, s->pull_start.peer = NULL)
BROKEN(PULL_START, pull_count, s->pull_start.block_count = 0)
BROKEN(PULL_START, pull_keys, s->pull_start.block_count = 4)
BROKEN(PULL_START, pull_deadline,
       s->pull_start.deadline_ms = KVXI_LEASE_MS_MAX + 1)
BROKEN(PUBLISH_START, pub_refs, s->base.refs.n_blocks = 0)
BROKEN(PUBLISH_START, pub_keys, s->publish_start.keys.len = KVXI_KEY_LEN)
BROKEN(PUBLISH_START, pub_lease,
       s->publish_start.lease_ms = KVXI_LEASE_MS_MAX + 1)
BROKEN(UNPUBLISH, unpub_missing, s->base.env.unpublish = NULL)
BROKEN(RESULT, result_status, s->result.status = 0)
BROKEN(RESULT, result_text, {
    static char text[KVXI_TEXT_MAX + 2];
    memset(text, 't', sizeof(text) - 1);
    s->result.message = text;
})
BROKEN(XFER_DONE, done_id, s->xfer_done.xfer_id = 0)
BROKEN(XFER_DONE, done_inprogress,
       s->xfer_done.status = KVX__V1__STATUS__STATUS_INPROGRESS)
BROKEN(XFER_DONE, done_sum, s->xfer_done.blocks_sent = 4)
BROKEN(XFER_DONE, done_hit, s->xfer_done.blocks_hit = 6)
BROKEN(XFER_DONE, done_path, s->xfer_done.data_path = 7)
BROKEN(RECV, recv_max, s->recv.max_blocks = 0)
BROKEN(RECV, recv_timeout, s->recv.timeout_ms = KVXI_LEASE_MS_MAX + 1)
BROKEN(RECV_REPLY, rv_status, s->recv_reply.status = 0)
BROKEN(RECV_REPLY, rv_fail_refs,
       s->recv_reply.status = KVX__V1__STATUS__STATUS_ERR_NOT_FOUND)
BROKEN(RECV_REPLY, rv_count, s->recv_reply.block_count = 4)
BROKEN(RECV_REPLY, rv_refs, s->recv_reply.blocks = NULL)
BROKEN(PEER_LIST_REPLY, pl_null, s->peer_ptrs[1] = NULL)
BROKEN(PEER_LIST_REPLY, pl_status, s->peers[0].status = 0)
BROKEN(PEER_LIST_REPLY, pl_path, s->peers[1].data_path = 9)
BROKEN(PEER_LIST_REPLY, pl_addr, {
    static char addr[KVXI_NAME_MAX + 2];
    memset(addr, 'a', sizeof(addr) - 1);
    s->peers[0].addr = addr;
})

#define RULE(b, name)                                                          \
    {                                                                          \
        B(b), #name, brk_##name                                                \
    }

static const broken_t broken[] = {
    RULE(ATTACH, attach_min),
    RULE(ATTACH, attach_max),
    RULE(ATTACH, attach_name),
    RULE(ATTACH, attach_missing),
    RULE(ATTACH_REPLY, ar_status),
    RULE(ATTACH_REPLY, ar_fail_layout),
    RULE(ATTACH_REPLY, ar_version),
    RULE(ATTACH_REPLY, ar_node_id),
    RULE(ATTACH_REPLY, ar_layout),
    RULE(ATTACH_REPLY, ar_layout_bad),
    RULE(ATTACH_REPLY, ar_pool_small),
    RULE(RESERVE, reserve_zero),
    RULE(RESERVE, reserve_many),
    RULE(RESERVE, reserve_keys),
    RULE(RESERVE, reserve_lease),
    RULE(RESERVE_REPLY, rr_status),
    RULE(RESERVE_REPLY, rr_fail_blocks),
    RULE(RESERVE_REPLY, rr_count),
    RULE(RESERVE_REPLY, rr_refs),
    RULE(RESERVE_REPLY, rr_mask_len),
    RULE(RESERVE_REPLY, rr_mask_spare),
    RULE(RESERVE_REPLY, rr_lease),
    RULE(SEAL, seal_lease),
    RULE(PUSH_START, push_peer),
    RULE(PUSH_START, push_refs),
    RULE(PUSH_START, push_keys),
    RULE(PUSH_START, push_deadline),
    RULE(PULL_START, pull_peer),
    RULE(PULL_START, pull_count),
    RULE(PULL_START, pull_keys),
    RULE(PULL_START, pull_deadline),
    RULE(PUBLISH_START, pub_refs),
    RULE(PUBLISH_START, pub_keys),
    RULE(PUBLISH_START, pub_lease),
    RULE(UNPUBLISH, unpub_missing),
    RULE(RESULT, result_status),
    RULE(RESULT, result_text),
    RULE(XFER_DONE, done_id),
    RULE(XFER_DONE, done_inprogress),
    RULE(XFER_DONE, done_sum),
    RULE(XFER_DONE, done_hit),
    RULE(XFER_DONE, done_path),
    RULE(RECV, recv_max),
    RULE(RECV, recv_timeout),
    RULE(RECV_REPLY, rv_status),
    RULE(RECV_REPLY, rv_fail_refs),
    RULE(RECV_REPLY, rv_count),
    RULE(RECV_REPLY, rv_refs),
    RULE(PEER_LIST_REPLY, pl_null),
    RULE(PEER_LIST_REPLY, pl_status),
    RULE(PEER_LIST_REPLY, pl_path),
    RULE(PEER_LIST_REPLY, pl_addr),
};

static void test_frame_local_rules(void)
{
    uint8_t buf[BUF_MAX];

    for (size_t i = 0; i < sizeof(broken) / sizeof(broken[0]); i++) {
        frame_local_sample_t s;
        size_t out = 0;

        CU_ASSERT_FATAL(frame_local_sample_init(&s, broken[i].body));
        CU_ASSERT_EQUAL(kvxi_envelope_validate(&s.base.env), KVX_OK);
        broken[i].brk(&s);
        if (kvxi_envelope_validate(&s.base.env) != KVX_ERR_PROTO_MALFORMED) {
            fprintf(stderr, "\n  rule %s not caught\n", broken[i].rule);
            CU_FAIL("broken local sample passed validation");
            continue;
        }
        CU_ASSERT_EQUAL(kvxi_frame_encode(&s.base.env, buf, sizeof(buf), &out),
                        KVX_ERR_INVALID_PARAM);
    }
}

/* What the rules allow: failures that carry nothing, no keys, an empty
 * peer list, an unset data path on a transfer that failed early. */
static void test_frame_local_variants(void)
{
    frame_local_sample_t s;

    frame_local_sample_init(&s, B(ATTACH_REPLY));
    s.attach_reply.status = KVX__V1__STATUS__STATUS_ERR_PROTO_VERSION;
    s.attach_reply.layout = NULL;
    CU_ASSERT_EQUAL(kvxi_envelope_validate(&s.base.env), KVX_OK);

    frame_local_sample_init(&s, B(RESERVE_REPLY));
    s.reserve_reply.status = KVX__V1__STATUS__STATUS_ERR_NO_SPACE;
    s.reserve_reply.lease_id = 0;
    s.reserve_reply.blocks = NULL;
    s.reserve_reply.hit_mask.len = 0;
    CU_ASSERT_EQUAL(kvxi_envelope_validate(&s.base.env), KVX_OK);

    frame_local_sample_init(&s, B(RESERVE_REPLY)); /* every block hit */
    s.base.hit_mask[0] = 0x1f;
    s.reserve_reply.lease_id = 0;
    CU_ASSERT_EQUAL(kvxi_envelope_validate(&s.base.env), KVX_OK);

    frame_local_sample_init(&s, B(RESERVE));
    s.reserve.keys.len = 0;
    CU_ASSERT_EQUAL(kvxi_envelope_validate(&s.base.env), KVX_OK);

    frame_local_sample_init(&s, B(RECV_REPLY)); /* NO_SPACE says how many */
    s.recv_reply.status = KVX__V1__STATUS__STATUS_ERR_NO_SPACE;
    s.recv_reply.blocks = NULL;
    s.recv_reply.block_count = 9;
    CU_ASSERT_EQUAL(kvxi_envelope_validate(&s.base.env), KVX_OK);

    frame_local_sample_init(&s, B(XFER_DONE));
    s.xfer_done.status = KVX__V1__STATUS__STATUS_ERR_PEER_UNREACHABLE;
    s.xfer_done.data_path = KVX__V1__DATA_PATH__DATA_PATH_UNSPECIFIED;
    s.xfer_done.blocks_hit = s.xfer_done.blocks_sent = 0;
    CU_ASSERT_EQUAL(kvxi_envelope_validate(&s.base.env), KVX_OK);

    frame_local_sample_init(&s, B(PEER_LIST_REPLY));
    s.peer_list_reply.n_peers = 0;
    CU_ASSERT_EQUAL(kvxi_envelope_validate(&s.base.env), KVX_OK);
}

static const ut_test_t frame_local_tests[] = {
    UT_TEST(test_frame_local_roundtrip),
    UT_TEST(test_frame_local_rules),
    UT_TEST(test_frame_local_variants),
    UT_END,
};

int main(void)
{
    static const ut_suite_t suites[] = {
        {"frame_local", frame_local_tests},
        {NULL, NULL},
    };

    return ut_main(suites);
}
