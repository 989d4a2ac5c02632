/*
 * Identities of control-channel nodes: checks, copies, and their wire form
 * in Hello / HelloReply / AuthProof / Accept.
 */
#include "handshake_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log_int.h"

/* ------------------------------------------------------------------------
 * Conversions between the identity and the wire.
 */

void kvxi_wire_layout_to(const kvx_layout_t *l, Kvx__V1__Layout *w)
{
    kvx__v1__layout__init(w);
    w->num_layers = l->num_layers;
    w->kv_parts = l->kv_parts;
    w->block_tokens = l->block_tokens;
    w->kv_heads = l->kv_heads;
    w->total_heads = l->total_heads;
    w->head_start = l->head_start;
    w->head_dim = l->head_dim;
    w->dtype_size = l->dtype_size;
    w->order = l->order == KVX_LAYOUT_LAYER_MAJOR
                   ? KVX__V1__LAYOUT_ORDER__LAYOUT_ORDER_LAYER_MAJOR
                   : KVX__V1__LAYOUT_ORDER__LAYOUT_ORDER_BLOCK_MAJOR;
    w->token_order = l->token_order == KVX_LAYOUT_HND
                         ? KVX__V1__TOKEN_ORDER__TOKEN_ORDER_HND
                         : KVX__V1__TOKEN_ORDER__TOKEN_ORDER_NHD;
    w->num_blocks = l->num_blocks;
    w->block_bytes = l->block_bytes;
    w->model_id = l->model_id;
}

/* Rebuilds a layout from the wire with kvx_layout_init(), so every derived
 * size is our own arithmetic, and checks the peer computed the same. */
kvx_status_t kvxi_wire_layout_from(const Kvx__V1__Layout *w, kvx_layout_t *l,
                                   char *why, size_t why_len)
{
    kvx_layout_params_t p;
    kvx_status_t status;

    memset(&p, 0, sizeof(p));
    p.field_mask =
        KVX_LAYOUT_PARAM_FIELD_NUM_LAYERS | KVX_LAYOUT_PARAM_FIELD_KV_PARTS |
        KVX_LAYOUT_PARAM_FIELD_BLOCK_TOKENS | KVX_LAYOUT_PARAM_FIELD_KV_HEADS |
        KVX_LAYOUT_PARAM_FIELD_HEAD_DIM | KVX_LAYOUT_PARAM_FIELD_DTYPE_SIZE |
        KVX_LAYOUT_PARAM_FIELD_NUM_BLOCKS | KVX_LAYOUT_PARAM_FIELD_ORDER |
        KVX_LAYOUT_PARAM_FIELD_TOKEN_ORDER | KVX_LAYOUT_PARAM_FIELD_HEAD_SLICE |
        KVX_LAYOUT_PARAM_FIELD_MODEL_ID;
    p.num_layers = w->num_layers;
    p.kv_parts = w->kv_parts;
    p.block_tokens = w->block_tokens;
    p.kv_heads = w->kv_heads;
    p.head_dim = w->head_dim;
    p.dtype_size = w->dtype_size;
    p.num_blocks = w->num_blocks;
    p.order = w->order == KVX__V1__LAYOUT_ORDER__LAYOUT_ORDER_LAYER_MAJOR
                  ? KVX_LAYOUT_LAYER_MAJOR
                  : KVX_LAYOUT_BLOCK_MAJOR;
    p.token_order = w->token_order == KVX__V1__TOKEN_ORDER__TOKEN_ORDER_HND
                        ? KVX_LAYOUT_HND
                        : KVX_LAYOUT_NHD;
    p.total_heads = w->total_heads;
    p.head_start = w->head_start;
    p.model_id = w->model_id;
    status = kvx_layout_init(l, &p);
    if (status != KVX_OK) {
        kvxi_why(why, why_len, "layout invalid: %s", kvx_status_string(status));
        return status;
    }
    if (l->block_bytes != w->block_bytes) {
        kvxi_why(why, why_len,
                 "layout block_bytes %" PRIu64 " != %" PRIu64 " computed",
                 (uint64_t)w->block_bytes, l->block_bytes);
        return KVX_ERR_LAYOUT_MISMATCH;
    }
    return KVX_OK;
}

size_t kvxi_wire_paths_to(uint32_t mask, Kvx__V1__DataPath paths[2])
{
    size_t n = 0;

    if (mask & KVXI_DATA_PATH_RMA) {
        paths[n++] = KVX__V1__DATA_PATH__DATA_PATH_RMA;
    }
    if (mask & KVXI_DATA_PATH_AM) {
        paths[n++] = KVX__V1__DATA_PATH__DATA_PATH_AM;
    }
    return n;
}

uint32_t kvxi_wire_paths_from(size_t n, const Kvx__V1__DataPath *paths)
{
    uint32_t mask = 0;

    for (size_t i = 0; i < n; i++) {
        if (paths[i] == KVX__V1__DATA_PATH__DATA_PATH_RMA) {
            mask |= KVXI_DATA_PATH_RMA;
        } else if (paths[i] == KVX__V1__DATA_PATH__DATA_PATH_AM) {
            mask |= KVXI_DATA_PATH_AM;
        }
    }
    return mask;
}

void kvxi_wire_memory_to(const kvxi_conn_memory_t *m, Kvx__V1__Memory *w)
{
    kvx__v1__memory__init(w);
    w->worker_address.data = (uint8_t *)m->worker_address;
    w->worker_address.len = m->worker_address_len;
    w->mem_type = m->mem_type == KVX_MEM_CUDA
                      ? KVX__V1__MEM_TYPE__MEM_TYPE_CUDA
                      : KVX__V1__MEM_TYPE__MEM_TYPE_HOST;
    w->pool_base = m->pool_base;
    w->pool_length = m->pool_length;
    w->rkey.data = (uint8_t *)m->rkey;
    w->rkey.len = m->rkey_len;
}
void kvxi_wire_memory_from(const Kvx__V1__Memory *w, kvxi_conn_memory_t *m)
{
    m->worker_address = w->worker_address.data;
    m->worker_address_len = w->worker_address.len;
    m->mem_type = w->mem_type == KVX__V1__MEM_TYPE__MEM_TYPE_CUDA
                      ? KVX_MEM_CUDA
                      : KVX_MEM_HOST;
    m->pool_base = w->pool_base;
    m->pool_length = w->pool_length;
    m->rkey = w->rkey.data;
    m->rkey_len = w->rkey.len;
}

/* ------------------------------------------------------------------------
 * Identities and peer infos.
 */

#define BAD(...)                                                               \
    do {                                                                       \
        kvxi_why(why, why_len, __VA_ARGS__);                                   \
        return KVX_ERR_INVALID_PARAM;                                          \
    } while (0)

static int name_ok(const char *s, size_t min)
{
    size_t n;

    if (s == NULL) {
        return min == 0;
    }
    n = strnlen(s, KVXI_NAME_MAX + 1);
    return n >= min && n <= KVXI_NAME_MAX;
}

kvx_status_t kvxi_identity_check(const kvxi_conn_identity_t *id, char *why,
                                 size_t why_len)
{
    const kvxi_conn_memory_t *m;
    Kvx__V1__Layout wire;
    kvx_layout_t again;
    char lwhy[128];

    if (id == NULL) {
        BAD("NULL identity");
    }
    m = &id->memory;
    if (!name_ok(id->node_id, 1)) {
        BAD("node_id length not 1 .. %u", KVXI_NAME_MAX);
    }
    if (id->instance_id == 0) {
        BAD("instance_id 0");
    }
    if (!name_ok(id->cluster_id, 0)) {
        BAD("cluster_id longer than %u", KVXI_NAME_MAX);
    }
    if (id->min_version < 1 || id->max_version < id->min_version) {
        BAD("version range %u..%u", id->min_version, id->max_version);
    }
    if (id->role < KVX__V1__ROLE__ROLE_PREFILL ||
        id->role > KVX__V1__ROLE__ROLE_BOTH) {
        BAD("role %d", (int)id->role);
    }
    kvxi_wire_layout_to(&id->layout, &wire);
    if (kvxi_wire_layout_from(&wire, &again, lwhy, sizeof(lwhy)) != KVX_OK) {
        BAD("%s", lwhy);
    }
    if (id->data_paths == 0 || (id->data_paths & ~KVXI_DATA_PATH_ALL) != 0) {
        BAD("data_paths 0x%x", id->data_paths);
    }
    if (id->max_frame != 0 && (id->max_frame < KVXI_FRAME_MAX_HANDSHAKE ||
                               id->max_frame > KVXI_FRAME_MAX_DEFAULT)) {
        BAD("max_frame %u", id->max_frame);
    }
    if (m->worker_address == NULL || m->worker_address_len < 1 ||
        m->worker_address_len > KVXI_BLOB_MAX) {
        BAD("worker address length not 1 .. %u", KVXI_BLOB_MAX);
    }
    if (m->mem_type != KVX_MEM_HOST && m->mem_type != KVX_MEM_CUDA) {
        BAD("mem_type %d", (int)m->mem_type);
    }
    if (m->rkey_len > KVXI_BLOB_MAX || (m->rkey == NULL && m->rkey_len > 0)) {
        BAD("rkey length above %u", KVXI_BLOB_MAX);
    }
    if (m->rkey_len > 0 &&
        (m->pool_length < 1 || m->pool_base > UINT64_MAX - m->pool_length)) {
        BAD("pool base/length with rkey");
    }
    kvxi_why(why, why_len, "%s", "");
    return KVX_OK;
}

kvx_status_t kvxi_identity_dup(const kvxi_conn_identity_t *id,
                               kvxi_conn_identity_t **copy_p)
{
    const char *cluster;
    kvxi_conn_identity_t *c;
    size_t node_len, cluster_len, size;
    char why[128];
    uint8_t *p;

    if (copy_p == NULL || kvxi_identity_check(id, why, sizeof(why)) != 0) {
        if (id != NULL && copy_p != NULL) {
            kvxi_error("conn: invalid identity: %s", why);
        }
        return KVX_ERR_INVALID_PARAM;
    }
    cluster = id->cluster_id != NULL ? id->cluster_id : "";
    node_len = strlen(id->node_id) + 1;
    cluster_len = strlen(cluster) + 1;
    size = sizeof(*c) + node_len + cluster_len + id->memory.worker_address_len +
           id->memory.rkey_len;
    c = malloc(size);
    if (c == NULL) {
        return KVX_ERR_NO_MEMORY;
    }
    *c = *id;
    p = (uint8_t *)(c + 1);
    memcpy(p, id->node_id, node_len);
    c->node_id = (const char *)p;
    p += node_len;
    memcpy(p, cluster, cluster_len);
    c->cluster_id = (const char *)p;
    p += cluster_len;
    memcpy(p, id->memory.worker_address, id->memory.worker_address_len);
    c->memory.worker_address = p;
    p += id->memory.worker_address_len;
    if (id->memory.rkey_len > 0) {
        memcpy(p, id->memory.rkey, id->memory.rkey_len);
    }
    c->memory.rkey = p;
    *copy_p = c;
    return KVX_OK;
}

void kvxi_identity_free(kvxi_conn_identity_t *id)
{
    free(id);
}

/* Resizes @p peer to hold @p w's blobs after the struct and copies them. */
kvx_status_t kvxi_peer_info_set_memory(kvxi_peer_info_t **peer_p,
                                       const kvxi_conn_memory_t *m)
{
    size_t size = sizeof(**peer_p) + m->worker_address_len + m->rkey_len;
    kvxi_peer_info_t *peer = realloc(*peer_p, size);
    uint8_t *p;

    if (peer == NULL) {
        return KVX_ERR_NO_MEMORY;
    }
    *peer_p = peer;
    p = (uint8_t *)(peer + 1);
    peer->memory = *m;
    if (m->worker_address_len > 0) {
        memcpy(p, m->worker_address, m->worker_address_len);
    }
    peer->memory.worker_address = p;
    p += m->worker_address_len;
    if (m->rkey_len > 0) {
        memcpy(p, m->rkey, m->rkey_len);
    }
    peer->memory.rkey = p;
    return KVX_OK;
}

kvx_status_t kvxi_peer_info_dup(const kvxi_peer_info_t *peer,
                                kvxi_peer_info_t **copy_p)
{
    kvxi_peer_info_t *c;
    kvx_status_t status;

    if (peer == NULL || copy_p == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    c = malloc(sizeof(*c));
    if (c == NULL) {
        return KVX_ERR_NO_MEMORY;
    }
    *c = *peer;
    status = kvxi_peer_info_set_memory(&c, &peer->memory);
    if (status != KVX_OK) {
        free(c);
        return status;
    }
    *copy_p = c;
    return KVX_OK;
}

void kvxi_peer_info_free(kvxi_peer_info_t *peer)
{
    free(peer);
}
