/*
 * Validation of the local engine session's messages (proto/kvx.proto,
 * "Local engine session"): the same rules style as the node-to-node bodies
 * in frame.c, so a session handler can trust counts and sizes.
 */
#include "frame_check_int.h"

#include <kvx/status.h>

/** PeerListReply.peers limit. */
#define LOCAL_PEERS_MAX 4096u

static int keys_for(const ProtobufCBinaryData *k, size_t n)
{
    return k->len == 0 || k->len == n * KVXI_KEY_LEN;
}

static int data_path_or_none(int v)
{
    return v == KVX__V1__DATA_PATH__DATA_PATH_UNSPECIFIED ||
           kvxi_data_path_ok(v);
}

static const char *check_attach_reply(const Kvx__V1__AttachReply *a)
{
    const char *why;

    CHECK(kvxi_status_set(a->status), "attach_reply.status");
    if (a->status != KVX__V1__STATUS__STATUS_OK) {
        CHECK(a->layout == NULL, "attach_reply: failure carries a layout");
        return NULL;
    }
    CHECK(a->version >= 1, "attach_reply.version");
    CHECK(kvxi_str_len_ok(a->node_id, 1, KVXI_NAME_MAX),
          "attach_reply.node_id");
    CHECK(kvxi_str_len_ok(a->listen_addr, 0, KVXI_NAME_MAX),
          "attach_reply.listen_addr");
    if ((why = kvxi_check_layout(a->layout)) != NULL) {
        return why;
    }
    CHECK(a->layout->block_bytes <= UINT64_MAX / a->layout->num_blocks &&
              a->pool_bytes >= a->layout->block_bytes * a->layout->num_blocks,
          "attach_reply.pool_bytes below the layout's blocks");
    return NULL;
}

static const char *check_reserve_reply(const Kvx__V1__ReserveReply *r)
{
    const char *why;

    CHECK(kvxi_status_set(r->status), "reserve_reply.status");
    if (r->status != KVX__V1__STATUS__STATUS_OK) {
        CHECK(kvxi_refs_empty(r->blocks) && r->hit_mask.len == 0 &&
                  r->lease_id == 0,
              "reserve_reply: failure carries blocks or lease");
        return NULL;
    }
    CHECK(r->block_count >= 1 && r->block_count <= KVXI_BLOCKS_MAX,
          "reserve_reply.block_count");
    if ((why = kvxi_check_refs(r->blocks, 1)) != NULL) {
        return why;
    }
    CHECK(r->blocks->n_blocks == r->block_count,
          "reserve_reply: refs count != block_count");
    return kvxi_check_hit_mask(&r->hit_mask, r->block_count, r->lease_id);
}

static const char *check_push_start(const Kvx__V1__PushStart *p)
{
    const char *why;

    CHECK(kvxi_str_len_ok(p->peer, 1, KVXI_NAME_MAX), "push_start.peer");
    if ((why = kvxi_check_refs(p->blocks, 1)) != NULL) {
        return why;
    }
    CHECK(keys_for(&p->keys, p->blocks->n_blocks), "push_start.keys length");
    CHECK(p->deadline_ms <= KVXI_LEASE_MS_MAX, "push_start.deadline_ms");
    return NULL;
}

static const char *check_pull_start(const Kvx__V1__PullStart *p)
{
    CHECK(kvxi_str_len_ok(p->peer, 1, KVXI_NAME_MAX), "pull_start.peer");
    CHECK(p->block_count >= 1 && p->block_count <= KVXI_BLOCKS_MAX,
          "pull_start.block_count");
    CHECK(keys_for(&p->keys, p->block_count), "pull_start.keys length");
    CHECK(p->deadline_ms <= KVXI_LEASE_MS_MAX, "pull_start.deadline_ms");
    return NULL;
}

static const char *check_publish_start(const Kvx__V1__PublishStart *p)
{
    const char *why;

    if ((why = kvxi_check_refs(p->blocks, 1)) != NULL) {
        return why;
    }
    CHECK(keys_for(&p->keys, p->blocks->n_blocks), "publish_start.keys length");
    CHECK(p->lease_ms <= KVXI_LEASE_MS_MAX, "publish_start.lease_ms");
    return NULL;
}

static const char *check_xfer_done(const Kvx__V1__XferDone *d)
{
    CHECK(d->xfer_id != 0, "xfer_done.xfer_id");
    CHECK(kvxi_status_set(d->status) &&
              d->status != KVX__V1__STATUS__STATUS_INPROGRESS,
          "xfer_done.status");
    CHECK(d->block_count <= KVXI_BLOCKS_MAX, "xfer_done.block_count");
    CHECK(d->blocks_hit <= d->block_count &&
              d->blocks_sent <= d->block_count - d->blocks_hit,
          "xfer_done: hit + sent > block_count");
    CHECK(data_path_or_none(d->data_path), "xfer_done.data_path");
    return NULL;
}

static const char *check_recv_reply(const Kvx__V1__RecvReply *r)
{
    const char *why;

    CHECK(kvxi_status_set(r->status), "recv_reply.status");
    CHECK(r->block_count <= KVXI_BLOCKS_MAX, "recv_reply.block_count");
    if (r->status != KVX__V1__STATUS__STATUS_OK) {
        CHECK(kvxi_refs_empty(r->blocks), "recv_reply: failure carries refs");
        return NULL;
    }
    if ((why = kvxi_check_refs(r->blocks, 1)) != NULL) {
        return why;
    }
    CHECK(r->blocks->n_blocks == r->block_count,
          "recv_reply: refs count != block_count");
    return NULL;
}

static const char *check_peer_list_reply(const Kvx__V1__PeerListReply *r)
{
    CHECK(r->n_peers <= LOCAL_PEERS_MAX, "peer_list_reply: too many peers");
    for (size_t i = 0; i < r->n_peers; i++) {
        const Kvx__V1__PeerInfo *p = r->peers[i];

        CHECK(p != NULL, "peer_list_reply: peer missing");
        CHECK(kvxi_str_len_ok(p->addr, 0, KVXI_NAME_MAX), "peer_info.addr");
        CHECK(kvxi_str_len_ok(p->node_id, 0, KVXI_NAME_MAX),
              "peer_info.node_id");
        CHECK(kvxi_status_set(p->status), "peer_info.status");
        CHECK(data_path_or_none(p->data_path), "peer_info.data_path");
    }
    return NULL;
}

const char *kvxi_check_local_body(const kvxi_envelope_t *env)
{
    switch (env->body_case) {
    case KVX__V1__ENVELOPE__BODY_ATTACH:
        CHECK(env->attach != NULL, "body missing");
        CHECK(env->attach->min_version >= 1, "attach.min_version");
        CHECK(env->attach->max_version >= env->attach->min_version,
              "attach.max_version");
        CHECK(kvxi_str_len_ok(env->attach->client_name, 0, KVXI_NAME_MAX),
              "attach.client_name");
        return NULL;
    case KVX__V1__ENVELOPE__BODY_ATTACH_REPLY:
        CHECK(env->attach_reply != NULL, "body missing");
        return check_attach_reply(env->attach_reply);
    case KVX__V1__ENVELOPE__BODY_RESERVE:
        CHECK(env->reserve != NULL, "body missing");
        CHECK(env->reserve->block_count >= 1 &&
                  env->reserve->block_count <= KVXI_BLOCKS_MAX,
              "reserve.block_count");
        CHECK(keys_for(&env->reserve->keys, env->reserve->block_count),
              "reserve.keys length");
        CHECK(env->reserve->lease_ms <= KVXI_LEASE_MS_MAX, "reserve.lease_ms");
        return NULL;
    case KVX__V1__ENVELOPE__BODY_RESERVE_REPLY:
        CHECK(env->reserve_reply != NULL, "body missing");
        return check_reserve_reply(env->reserve_reply);
    case KVX__V1__ENVELOPE__BODY_SEAL:
        CHECK(env->seal != NULL, "body missing");
        CHECK(env->seal->lease_id != 0, "seal.lease_id");
        return NULL;
    case KVX__V1__ENVELOPE__BODY_PUSH_START:
        CHECK(env->push_start != NULL, "body missing");
        return check_push_start(env->push_start);
    case KVX__V1__ENVELOPE__BODY_PULL_START:
        CHECK(env->pull_start != NULL, "body missing");
        return check_pull_start(env->pull_start);
    case KVX__V1__ENVELOPE__BODY_PUBLISH_START:
        CHECK(env->publish_start != NULL, "body missing");
        return check_publish_start(env->publish_start);
    case KVX__V1__ENVELOPE__BODY_UNPUBLISH:
        CHECK(env->unpublish != NULL, "body missing");
        return NULL;
    case KVX__V1__ENVELOPE__BODY_RESULT:
        CHECK(env->result != NULL, "body missing");
        CHECK(kvxi_status_set(env->result->status), "result.status");
        CHECK(kvxi_str_len_ok(env->result->message, 0, KVXI_TEXT_MAX),
              "result.message length");
        return NULL;
    case KVX__V1__ENVELOPE__BODY_XFER_DONE:
        CHECK(env->xfer_done != NULL, "body missing");
        return check_xfer_done(env->xfer_done);
    case KVX__V1__ENVELOPE__BODY_RECV:
        CHECK(env->recv != NULL, "body missing");
        CHECK(env->recv->max_blocks >= 1 &&
                  env->recv->max_blocks <= KVXI_BLOCKS_MAX,
              "recv.max_blocks");
        CHECK(env->recv->timeout_ms <= KVXI_LEASE_MS_MAX, "recv.timeout_ms");
        return NULL;
    case KVX__V1__ENVELOPE__BODY_RECV_REPLY:
        CHECK(env->recv_reply != NULL, "body missing");
        return check_recv_reply(env->recv_reply);
    case KVX__V1__ENVELOPE__BODY_PEER_LIST:
        CHECK(env->peer_list != NULL, "body missing");
        return NULL;
    case KVX__V1__ENVELOPE__BODY_PEER_LIST_REPLY:
        CHECK(env->peer_list_reply != NULL, "body missing");
        return check_peer_list_reply(env->peer_list_reply);
    default: break;
    }
    return "unknown body";
}

const char *kvxi_local_body_name(const kvxi_envelope_t *env)
{
    switch (env->body_case) {
    case KVX__V1__ENVELOPE__BODY_ATTACH: return "attach";
    case KVX__V1__ENVELOPE__BODY_ATTACH_REPLY: return "attach_reply";
    case KVX__V1__ENVELOPE__BODY_RESERVE: return "reserve";
    case KVX__V1__ENVELOPE__BODY_RESERVE_REPLY: return "reserve_reply";
    case KVX__V1__ENVELOPE__BODY_SEAL: return "seal";
    case KVX__V1__ENVELOPE__BODY_PUSH_START: return "push_start";
    case KVX__V1__ENVELOPE__BODY_PULL_START: return "pull_start";
    case KVX__V1__ENVELOPE__BODY_PUBLISH_START: return "publish_start";
    case KVX__V1__ENVELOPE__BODY_UNPUBLISH: return "unpublish";
    case KVX__V1__ENVELOPE__BODY_RESULT: return "result";
    case KVX__V1__ENVELOPE__BODY_XFER_DONE: return "xfer_done";
    case KVX__V1__ENVELOPE__BODY_RECV: return "recv";
    case KVX__V1__ENVELOPE__BODY_RECV_REPLY: return "recv_reply";
    case KVX__V1__ENVELOPE__BODY_PEER_LIST: return "peer_list";
    case KVX__V1__ENVELOPE__BODY_PEER_LIST_REPLY: return "peer_list_reply";
    default: break;
    }
    return "none";
}
