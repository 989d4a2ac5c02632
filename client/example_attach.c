/*
 * example_attach: an engine attached to the host's kvxd instead of
 * embedding a node (kvx/client.h; the walk-through is docs/api.md). It
 * writes a request's KV straight into the daemon's pool and has the daemon
 * push it to a peer.
 *
 *     example_attach [SOCKET [PEER]]
 *
 * SOCKET is the daemon's engine socket (default /run/kvxd.sock), PEER the
 * control address or node id of the node to push to (without it nothing is
 * pushed). Exit 0 on success, 77 when no daemon listens at SOCKET, 1 on
 * failure.
 */
#include <kvx/kvx.h>

#include <stdio.h>
#include <string.h>

#define N_BLOCKS 4
#define REQUEST_ID 1001

static int fail(const char *what, kvx_status_t st)
{
    fprintf(stderr, "example_attach: %s: %s\n", what, kvx_status_string(st));
    return 1;
}

int main(int argc, char **argv)
{
    const char *sock = argc > 1 ? argv[1] : "/run/kvxd.sock";
    const char *peer = argc > 2 ? argv[2] : NULL;
    kvx_client_params_t cp = {
        .field_mask = KVX_CLIENT_PARAM_FIELD_NAME,
        .name = "example_attach",
    };
    kvx_block_ref_t refs[N_BLOCKS];
    kvx_xfer_params_t xp = {0};
    kvx_client_xfer_h xfer;
    kvx_xfer_attr_t attr;
    kvx_lease_id_t lease;
    kvx_client_h c;
    kvx_status_t st;
    uint64_t bb;
    int rc = 1;

    /* Attach: the daemon's pool is mapped into this process. */
    st = kvx_client_attach(sock, &cp, &c);
    if (st == KVX_ERR_PEER_UNREACHABLE) {
        fprintf(stderr, "example_attach: no kvxd listens at %s: skipping\n",
                sock);
        return 77;
    } else if (st != KVX_OK) {
        return fail("attach", st);
    }
    bb = kvx_client_layout(c)->block_bytes;
    printf("attached to %s (%u blocks of %llu bytes)\n", kvx_client_node_id(c),
           kvx_client_layout(c)->num_blocks, (unsigned long long)bb);

    /* Reserve blocks, write the KV in place, seal: now they are READY and
     * held for us until we release them. */
    st = kvx_client_reserve(c, N_BLOCKS, NULL, 0, refs, NULL, &lease);
    if (st != KVX_OK) {
        fail("reserve", st);
        goto out;
    }
    for (int i = 0; i < N_BLOCKS; i++) {
        memset(kvx_client_block_addr(c, refs[i].block), 'a' + i, bb);
    }
    if ((st = kvx_client_seal(c, lease)) != KVX_OK) {
        fail("seal", st);
        goto out;
    }

    /* The daemon pushes them; we only wait for the outcome. */
    if (peer == NULL) {
        printf("no peer given: nothing pushed\n");
        rc = 0;
    } else {
        xp.field_mask =
            KVX_XFER_PARAM_FIELD_REQUEST_ID | KVX_XFER_PARAM_FIELD_BLOCKS;
        xp.request_id = REQUEST_ID;
        xp.blocks = refs;
        xp.n_blocks = N_BLOCKS;
        if ((st = kvx_client_push(c, peer, &xp, &xfer)) != KVX_OK) {
            fail("push", st);
            goto release;
        }
        st = kvx_client_xfer_wait(xfer, 30000);
        kvx_client_xfer_query(xfer, &attr);
        printf("request %d to %s: %u blocks sent (%u already there), "
               "%llu bytes over %s: %s\n",
               REQUEST_ID, peer, attr.blocks_sent, attr.blocks_hit,
               (unsigned long long)attr.bytes_sent,
               kvx_transport_string(attr.transport), kvx_status_string(st));
        kvx_client_xfer_release(xfer);
        rc = st == KVX_OK ? 0 : 1;
    }

release:
    st = kvx_client_release(c, refs, N_BLOCKS, NULL);
    if (st != KVX_OK) {
        rc = fail("release", st);
    }
out:
    kvx_client_detach(c); /* the daemon drops anything still held */
    return rc;
}
