/*
 * One valid envelope per body of the local engine session (proto/kvx.proto,
 * "Local engine session"), built on the node-to-node samples of
 * frame_samples.h (same layout, refs, keys and hit mask). Shared by
 * tests/unit/test_frame_local.c and the seed-corpus generator.
 */
#ifndef KVX_TEST_FRAME_SAMPLES_LOCAL_H
#define KVX_TEST_FRAME_SAMPLES_LOCAL_H

#include "frame_samples.h"

typedef struct frame_local_sample {
    frame_sample_t base; /* base.env is the envelope */
    Kvx__V1__Attach attach;
    Kvx__V1__AttachReply attach_reply;
    Kvx__V1__Reserve reserve;
    Kvx__V1__ReserveReply reserve_reply;
    Kvx__V1__Seal seal;
    Kvx__V1__PushStart push_start;
    Kvx__V1__PullStart pull_start;
    Kvx__V1__PublishStart publish_start;
    Kvx__V1__Unpublish unpublish;
    Kvx__V1__Result result;
    Kvx__V1__XferDone xfer_done;
    Kvx__V1__Recv recv;
    Kvx__V1__RecvReply recv_reply;
    Kvx__V1__PeerList peer_list;
    Kvx__V1__PeerListReply peer_list_reply;
    Kvx__V1__PeerInfo peers[2];
    Kvx__V1__PeerInfo *peer_ptrs[2];
} frame_local_sample_t;

/* Every local body, in field-number order. */
static const Kvx__V1__Envelope__BodyCase frame_local_sample_bodies[] = {
    KVX__V1__ENVELOPE__BODY_ATTACH,
    KVX__V1__ENVELOPE__BODY_ATTACH_REPLY,
    KVX__V1__ENVELOPE__BODY_RESERVE,
    KVX__V1__ENVELOPE__BODY_RESERVE_REPLY,
    KVX__V1__ENVELOPE__BODY_SEAL,
    KVX__V1__ENVELOPE__BODY_PUSH_START,
    KVX__V1__ENVELOPE__BODY_PULL_START,
    KVX__V1__ENVELOPE__BODY_PUBLISH_START,
    KVX__V1__ENVELOPE__BODY_UNPUBLISH,
    KVX__V1__ENVELOPE__BODY_RESULT,
    KVX__V1__ENVELOPE__BODY_XFER_DONE,
    KVX__V1__ENVELOPE__BODY_RECV,
    KVX__V1__ENVELOPE__BODY_RECV_REPLY,
    KVX__V1__ENVELOPE__BODY_PEER_LIST,
    KVX__V1__ENVELOPE__BODY_PEER_LIST_REPLY,
};
#define FRAME_LOCAL_SAMPLE_N_BODIES                                            \
    (sizeof(frame_local_sample_bodies) / sizeof(frame_local_sample_bodies[0]))

/* Fills @s with a valid envelope carrying local body @body; returns 0 for a
 * body that is not a local one. */
static inline int frame_local_sample_init(frame_local_sample_t *s,
                                          Kvx__V1__Envelope__BodyCase body)
{
    frame_sample_t *b = &s->base;
    Kvx__V1__Envelope *env = &b->env;

    memset(s, 0, sizeof(*s));
    frame_sample_common(b);
    env->body_case = body;
    switch (body) {
    case KVX__V1__ENVELOPE__BODY_ATTACH:
        kvx__v1__attach__init(&s->attach);
        s->attach.min_version = 1;
        s->attach.max_version = 1;
        s->attach.client_name = (char *)"vllm-worker-0";
        env->attach = &s->attach;
        return 1;
    case KVX__V1__ENVELOPE__BODY_ATTACH_REPLY:
        kvx__v1__attach_reply__init(&s->attach_reply);
        s->attach_reply.status = KVX__V1__STATUS__STATUS_OK;
        s->attach_reply.version = 1;
        s->attach_reply.node_id = (char *)"kvxd-prefill-0";
        s->attach_reply.layout = &b->layout;
        s->attach_reply.pool_bytes = b->layout.block_bytes * 1024;
        s->attach_reply.listen_addr = (char *)"10.0.0.7:7600";
        s->attach_reply.layout_hash = 0x9f3c0e1d2b4a5968ull;
        env->attach_reply = &s->attach_reply;
        return 1;
    case KVX__V1__ENVELOPE__BODY_RESERVE:
        kvx__v1__reserve__init(&s->reserve);
        s->reserve.block_count = FRAME_SAMPLE_BLOCKS;
        s->reserve.keys.len = sizeof(b->keys);
        s->reserve.keys.data = b->keys;
        s->reserve.lease_ms = 5000;
        env->reserve = &s->reserve;
        return 1;
    case KVX__V1__ENVELOPE__BODY_RESERVE_REPLY:
        kvx__v1__reserve_reply__init(&s->reserve_reply);
        s->reserve_reply.status = KVX__V1__STATUS__STATUS_OK;
        s->reserve_reply.lease_id = 0x200000001ull;
        s->reserve_reply.block_count = FRAME_SAMPLE_BLOCKS;
        s->reserve_reply.blocks = &b->refs;
        s->reserve_reply.hit_mask.len = sizeof(b->hit_mask);
        s->reserve_reply.hit_mask.data = b->hit_mask;
        env->reserve_reply = &s->reserve_reply;
        return 1;
    case KVX__V1__ENVELOPE__BODY_SEAL:
        kvx__v1__seal__init(&s->seal);
        s->seal.lease_id = 0x200000001ull;
        env->seal = &s->seal;
        return 1;
    case KVX__V1__ENVELOPE__BODY_PUSH_START:
        kvx__v1__push_start__init(&s->push_start);
        s->push_start.peer = (char *)"10.0.0.8:7600";
        s->push_start.request_id = 77;
        s->push_start.blocks = &b->refs;
        s->push_start.keys.len = sizeof(b->keys);
        s->push_start.keys.data = b->keys;
        s->push_start.flags = 3;
        s->push_start.deadline_ms = 30000;
        env->push_start = &s->push_start;
        return 1;
    case KVX__V1__ENVELOPE__BODY_PULL_START:
        kvx__v1__pull_start__init(&s->pull_start);
        s->pull_start.peer = (char *)"10.0.0.7:7600";
        s->pull_start.request_id = 77;
        s->pull_start.block_count = FRAME_SAMPLE_BLOCKS;
        s->pull_start.keys.len = sizeof(b->keys);
        s->pull_start.keys.data = b->keys;
        s->pull_start.deadline_ms = 30000;
        env->pull_start = &s->pull_start;
        return 1;
    case KVX__V1__ENVELOPE__BODY_PUBLISH_START:
        kvx__v1__publish_start__init(&s->publish_start);
        s->publish_start.request_id = 77;
        s->publish_start.blocks = &b->refs;
        s->publish_start.lease_ms = 60000;
        env->publish_start = &s->publish_start;
        return 1;
    case KVX__V1__ENVELOPE__BODY_UNPUBLISH:
        kvx__v1__unpublish__init(&s->unpublish);
        s->unpublish.request_id = 77;
        env->unpublish = &s->unpublish;
        return 1;
    case KVX__V1__ENVELOPE__BODY_RESULT:
        kvx__v1__result__init(&s->result);
        s->result.status = KVX__V1__STATUS__STATUS_OK;
        s->result.xfer_id = 3;
        env->result = &s->result;
        return 1;
    case KVX__V1__ENVELOPE__BODY_XFER_DONE:
        kvx__v1__xfer_done__init(&s->xfer_done);
        s->xfer_done.xfer_id = 3;
        s->xfer_done.status = KVX__V1__STATUS__STATUS_OK;
        s->xfer_done.block_count = FRAME_SAMPLE_BLOCKS;
        s->xfer_done.blocks_hit = 2;
        s->xfer_done.blocks_sent = 3;
        s->xfer_done.bytes_sent = 3 * b->layout.block_bytes;
        s->xfer_done.segments = 1;
        s->xfer_done.data_path = KVX__V1__DATA_PATH__DATA_PATH_AM;
        s->xfer_done.elapsed_ns = 1500000;
        env->xfer_done = &s->xfer_done;
        return 1;
    case KVX__V1__ENVELOPE__BODY_RECV:
        kvx__v1__recv__init(&s->recv);
        s->recv.request_id = 77;
        s->recv.max_blocks = 64;
        s->recv.timeout_ms = 5000;
        env->recv = &s->recv;
        return 1;
    case KVX__V1__ENVELOPE__BODY_RECV_REPLY:
        kvx__v1__recv_reply__init(&s->recv_reply);
        s->recv_reply.status = KVX__V1__STATUS__STATUS_OK;
        s->recv_reply.block_count = FRAME_SAMPLE_BLOCKS;
        s->recv_reply.blocks = &b->refs;
        env->recv_reply = &s->recv_reply;
        return 1;
    case KVX__V1__ENVELOPE__BODY_PEER_LIST:
        kvx__v1__peer_list__init(&s->peer_list);
        env->peer_list = &s->peer_list;
        return 1;
    case KVX__V1__ENVELOPE__BODY_PEER_LIST_REPLY:
        kvx__v1__peer_list_reply__init(&s->peer_list_reply);
        for (int i = 0; i < 2; i++) {
            kvx__v1__peer_info__init(&s->peers[i]);
            s->peers[i].addr = (char *)(i ? "10.0.0.9:7600" : "10.0.0.8:7600");
            s->peers[i].node_id = (char *)(i ? "" : "kvxd-decode-0");
            s->peers[i].status = i ? KVX__V1__STATUS__STATUS_INPROGRESS
                                   : KVX__V1__STATUS__STATUS_OK;
            s->peers[i].data_path =
                i ? KVX__V1__DATA_PATH__DATA_PATH_UNSPECIFIED
                  : KVX__V1__DATA_PATH__DATA_PATH_RMA;
            s->peers[i].rtt_us = i ? 0 : 85;
            s->peers[i].outgoing = 1;
            s->peer_ptrs[i] = &s->peers[i];
        }
        s->peer_list_reply.n_peers = 2;
        s->peer_list_reply.peers = s->peer_ptrs;
        env->peer_list_reply = &s->peer_list_reply;
        return 1;
    default: break;
    }
    env->body_case = KVX__V1__ENVELOPE__BODY__NOT_SET;
    return 0;
}

#endif /* KVX_TEST_FRAME_SAMPLES_LOCAL_H */
