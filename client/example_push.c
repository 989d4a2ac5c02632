/*
 * example_push: two kvx nodes in one process push a request's KV blocks
 * from a "prefill" node to a "decode" node over loopback and check them.
 * The walk-through is docs/api.md. Exit 0 on success, 77 if UCX cannot
 * start here, 1 on failure.
 */
#include <kvx/kvx.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_BLOCKS 8

static int fail(const char *what, kvx_status_t st)
{
    fprintf(stderr, "example_push: %s: %s\n", what, kvx_status_string(st));
    return 1;
}

int main(void)
{
    kvx_layout_params_t layout = {
        .field_mask = KVX_LAYOUT_PARAM_FIELD_NUM_LAYERS |
                      KVX_LAYOUT_PARAM_FIELD_BLOCK_TOKENS |
                      KVX_LAYOUT_PARAM_FIELD_KV_HEADS |
                      KVX_LAYOUT_PARAM_FIELD_HEAD_DIM |
                      KVX_LAYOUT_PARAM_FIELD_DTYPE_SIZE |
                      KVX_LAYOUT_PARAM_FIELD_NUM_BLOCKS,
        .num_layers = 4,
        .block_tokens = 16,
        .kv_heads = 2,
        .head_dim = 64,
        .dtype_size = 2,
        .num_blocks = 64,
    };
    kvx_node_params_t np = {
        .field_mask = KVX_NODE_PARAM_FIELD_NODE_ID |
                      KVX_NODE_PARAM_FIELD_LAYOUT |
                      KVX_NODE_PARAM_FIELD_LISTEN | KVX_NODE_PARAM_FIELD_SECRET,
        .layout = &layout,
        .listen = "127.0.0.1:0",
        .secret = "example secret",
        .secret_len = 14,
    };
    kvx_block_ref_t src[N_BLOCKS], dst[N_BLOCKS];
    kvx_node_h decode = NULL, prefill = NULL;
    kvx_xfer_params_t xp = {0};
    kvx_xfer_attr_t attr;
    kvx_lease_id_t lease;
    kvx_xfer_h xfer;
    kvx_peer_h peer;
    kvx_status_t st;
    uint32_t n = 0;
    size_t bb;
    int rc = 1;

    setenv("UCX_NET_DEVICES", "lo", 0);
    np.node_id = "decode-0";
    st = kvx_node_create(&np, &decode);
    if (st == KVX_ERR_NOT_SUPPORTED) {
        return 77;
    } else if (st != KVX_OK) {
        return fail("create decode node", st);
    }
    np.node_id = "prefill-0";
    np.field_mask &= ~(uint64_t)KVX_NODE_PARAM_FIELD_LISTEN;
    if ((st = kvx_node_create(&np, &prefill)) != KVX_OK) {
        fail("create prefill node", st);
        goto out;
    }

    /* Connect (the handshake authenticates and checks the layouts). */
    st = kvx_node_connect(prefill, kvx_node_listen_addr(decode), &peer);
    if (st != KVX_OK) {
        fail("connect", st);
        goto out;
    }
    do {
        kvx_node_progress(decode, 0); /* one process drives both nodes */
        st = kvx_peer_wait(peer, 10);
    } while (st == KVX_INPROGRESS);
    if (st != KVX_OK) {
        fail("connect", st);
        goto out;
    }

    /* Prefill: the engine's KV lives in READY blocks of the node's pool. */
    bb = kvx_node_layout(prefill)->block_bytes;
    st = kvx_alloc_reserve(kvx_node_alloc(prefill), N_BLOCKS,
                           kvx_clock_monotonic_ns(NULL) + 10000000000ull,
                           &lease, src);
    if (st == KVX_OK) {
        st = kvx_alloc_lease_commit(kvx_node_alloc(prefill), lease);
    }
    if (st != KVX_OK) {
        fail("allocate source blocks", st);
        goto out;
    }
    for (int i = 0; i < N_BLOCKS; i++) {
        memset(kvx_pool_block_addr(kvx_node_pool(prefill), src[i].block),
               'a' + i, bb);
    }

    /* Push, layer by layer as "prefill" finishes them. */
    xp.field_mask = KVX_XFER_PARAM_FIELD_REQUEST_ID |
                    KVX_XFER_PARAM_FIELD_BLOCKS | KVX_XFER_PARAM_FIELD_FLAGS;
    xp.request_id = 1001;
    xp.blocks = src;
    xp.n_blocks = N_BLOCKS;
    xp.flags = KVX_XFER_FLAG_LAYERWISE;
    if ((st = kvx_node_push(prefill, peer, &xp, &xfer)) != KVX_OK) {
        fail("push", st);
        goto out;
    }
    for (uint32_t layer = 1; layer <= 4; layer++) {
        kvx_xfer_layer_ready(xfer, layer);
        kvx_node_progress(prefill, 0);
        kvx_node_progress(decode, 1);
    }
    while ((st = kvx_xfer_test(xfer)) == KVX_INPROGRESS) {
        kvx_node_progress(prefill, 1);
        kvx_node_progress(decode, 1);
    }
    kvx_xfer_query(xfer, &attr);
    printf("pushed %u blocks, %llu bytes over %s: %s\n", attr.blocks_sent,
           (unsigned long long)attr.bytes_sent,
           kvx_transport_string(attr.transport), kvx_status_string(st));
    kvx_xfer_release(xfer); /* the source blocks are unpinned again */
    if (st != KVX_OK) {
        goto out;
    }

    /* Decode: collect the request's blocks (one pin each is ours). */
    st = kvx_node_recv(decode, 1001, 5000, dst, N_BLOCKS, &n);
    if (st != KVX_OK || n != N_BLOCKS) {
        fail("recv", st);
        goto out;
    }
    rc = 0;
    for (uint32_t i = 0; i < n; i++) {
        const char *b =
            kvx_pool_block_addr(kvx_node_pool(decode), dst[i].block);

        if (b[0] != 'a' + (int)i || memcmp(b, b + 1, bb - 1) != 0) {
            fprintf(stderr, "example_push: block %u differs\n", i);
            rc = 1;
        }
        kvx_alloc_unpin(kvx_node_alloc(decode), dst[i]);
    }
    for (int i = 0; i < N_BLOCKS; i++) {
        kvx_alloc_unpin(kvx_node_alloc(prefill), src[i]);
    }
    printf("received %u blocks: %s\n", n, rc == 0 ? "intact" : "CORRUPT");
out:
    kvx_node_destroy(prefill);
    kvx_node_destroy(decode);
    return rc;
}
