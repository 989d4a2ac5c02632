/*
 * fuzz_node's fixture (fuzz_node_fix.h): one node for the process, peers on
 * socketpairs, an engine session on the node's engine socket, and the
 * teardown of each input with its checks.
 */
#include "fuzz_node_fix.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define FZ_SETTLE_ROUNDS 64
#define FZ_PEERS_PER_INPUT 4
#define FZ_SESSIONS_PER_INPUT 2

static fz_t fz_state;

/* Set by the sanitizers' runtime, when linked in. */
extern void __sanitizer_set_death_callback(void (*cb)(void))
    __attribute__((weak));

/* A crash leaves no socket or folder behind (the node is not destroyed). */
static void fz_remove_files(void)
{
    if (fz_state.node != NULL) {
        unlink(fz_state.sock);
        rmdir(fz_state.dir);
    }
}

void fz_fail(const char *what)
{
    fprintf(stderr, "fuzz_node: invariant broken: %s\n", what);
    fz_remove_files();
    abort(); /* not a trap: UCX's handler (UCX_ERROR_SIGNALS) takes SIGILL */
}

static void fz_log(kvx_log_level_t level, const char *msg, void *arg)
{
    if (arg != NULL) {
        fprintf(stderr, "[kvx %s] %s\n", kvx_log_level_string(level), msg);
    }
}

static void fz_cleanup(void)
{
    fz_t *f = &fz_state;

    if (f->node != NULL) {
        kvxi_ucx_mem_dereg(f->rmem);
        kvx_node_destroy(f->node); /* removes the engine socket */
        free(f->rpool);
        f->node = NULL;
        rmdir(f->dir);
    }
}

static int fz_fd_pending(int fd)
{
    int n = 0;

    return fd >= 0 && ioctl(fd, FIONREAD, &n) == 0 && n > 0;
}

/* ------------------------------------------------------------------------
 * The node.
 */

static void fz_node_create(fz_t *f)
{
    kvx_layout_params_t lp = {
        .field_mask = KVX_LAYOUT_PARAM_FIELD_NUM_LAYERS |
                      KVX_LAYOUT_PARAM_FIELD_BLOCK_TOKENS |
                      KVX_LAYOUT_PARAM_FIELD_KV_HEADS |
                      KVX_LAYOUT_PARAM_FIELD_HEAD_DIM |
                      KVX_LAYOUT_PARAM_FIELD_DTYPE_SIZE |
                      KVX_LAYOUT_PARAM_FIELD_NUM_BLOCKS,
        .num_layers = 4,
        .block_tokens = 16,
        .kv_heads = 2,
        .head_dim = 8,
        .dtype_size = 2,
        .num_blocks = FZ_NUM_BLOCKS,
    };
    kvx_node_params_t np = {
        .field_mask =
            KVX_NODE_PARAM_FIELD_NODE_ID | KVX_NODE_PARAM_FIELD_LAYOUT |
            KVX_NODE_PARAM_FIELD_UCX_TLS | KVX_NODE_PARAM_FIELD_ENGINE_SOCKET,
        .node_id = "fuzz",
        .layout = &lp,
        .ucx_tls = "self",
    };
    const char *tmp = getenv("TMPDIR");
    const void *rkey = NULL;
    kvx_status_t st;
    size_t len;

    snprintf(f->dir, sizeof(f->dir), "%s/kvx-fuzz-node.XXXXXX",
             tmp != NULL && strlen(tmp) < 32 ? tmp : "/tmp");
    if (mkdtemp(f->dir) == NULL) {
        perror("fuzz_node: mkdtemp");
        exit(1);
    }
    snprintf(f->sock, sizeof(f->sock), "%s/engine.sock", f->dir);
    snprintf(f->none, sizeof(f->none), "unix:%s/none", f->dir);
    np.engine_socket = f->sock;
    st = kvx_node_create(&np, &f->node);
    if (st != KVX_OK) {
        /* like the unit tests: no UCX here is a skip (77), not a failure */
        fprintf(stderr, "fuzz_node: kvx_node_create: %s%s\n",
                kvx_status_string(st),
                st == KVX_ERR_NOT_SUPPORTED ? ": skipping" : "");
        rmdir(f->dir);
        exit(st == KVX_ERR_NOT_SUPPORTED ? 77 : 1);
    }
    atexit(fz_cleanup);
    if (__sanitizer_set_death_callback != NULL) {
        __sanitizer_set_death_callback(fz_remove_files);
    }
    /* the remotes: the node's identity under another name, announcing the
       node's own worker (the data path loops back) and a pool of their own
       registered in it (RMA between two regions, not onto itself) */
    f->rid = f->node->ident;
    f->rid.node_id = f->rname;
    len = (size_t)f->node->layout.region_bytes;
    f->rpool = aligned_alloc(4096, len);
    if (f->rpool == NULL ||
        kvxi_ucx_mem_reg(f->node->ucx, f->rpool, len, KVX_MEM_HOST, &f->rmem) !=
            KVX_OK ||
        kvxi_ucx_mem_rkey(f->rmem, &rkey, &f->rid.memory.rkey_len) != KVX_OK) {
        fprintf(stderr, "fuzz_node: cannot register the remotes' pool\n");
        exit(1);
    }
    memset(f->rpool, 0x5a, len);
    f->rid.memory.rkey = rkey;
    f->rid.memory.pool_base = (uint64_t)(uintptr_t)f->rpool;
    f->rid.memory.pool_length = len;
    f->rcfg.identity = &f->rid;
    f->eng_fd = -1;
    for (unsigned i = 0; i < FZ_KEYS; i++) {
        memset(f->keys[i].bytes, 0xa0 + (int)i, sizeof(f->keys[i].bytes));
    }
}

fz_t *fz_get(void)
{
    fz_t *f = &fz_state;

    if (f->node == NULL) {
        setenv("UCX_NET_DEVICES", "lo", 0);
        setenv("UCX_MEM_MALLOC_HOOKS", "no", 0);
        setenv("UCX_MEM_MMAP_HOOK_MODE", "none", 0);
        /* debug messages are formatted (their arguments read) unless
           verbose: a log line that reads freed memory is found too */
        kvx_log_set_cb(fz_log, getenv("KVX_FUZZ_VERBOSE"), KVX_LOG_DEBUG);
        fz_node_create(f);
    }
    return f;
}

/* READY blocks (one pin each, the harness's) that pushes and publications
 * name; the first two keyed, so pulls naming their keys hit. */
static void fz_make_sources(fz_t *f)
{
    struct kvx_node *node = f->node;
    kvx_lease_id_t lease = 0;

    if (kvx_alloc_reserve(node->alloc, FZ_SRC_BLOCKS, UINT64_MAX / 2, &lease,
                          f->src) != KVX_OK ||
        kvx_alloc_lease_commit(node->alloc, lease) != KVX_OK) {
        fz_fail("cannot make the source blocks");
    }
    for (unsigned i = 0; i < FZ_SRC_BLOCKS; i++) {
        memset(kvx_pool_block_addr(node->pool, f->src[i].block), 0x11 * (int)i,
               (size_t)node->layout.block_bytes);
        if (i < 2 &&
            kvx_alloc_set_key(node->alloc, f->src[i], &f->keys[i]) != KVX_OK) {
            fz_fail("cannot key a source block");
        }
    }
}

void fz_begin(fz_t *f, uint8_t cfg)
{
    unsigned t = cfg & FZ_CFG_TRANSPORT_MASK;

    f->node->transport = t == 1   ? KVX_TRANSPORT_RMA
                         : t == 2 ? KVX_TRANSPORT_AM
                                  : KVX_TRANSPORT_AUTO;
    f->node->hold_ms = (cfg & FZ_CFG_HOLD) ? 2 : 0;
    f->peers_made = 0;
    f->sessions_made = 0;
    f->n_xfers = 0;
    f->waits = 0;
    memset(f->writes, 0, sizeof(f->writes));
    fz_make_sources(f);
}

/* ------------------------------------------------------------------------
 * Settling: the node's loop until nothing is on its way.
 */

static void fz_engine_drain(fz_t *f)
{
    for (;;) {
        union {
            struct cmsghdr h;
            char buf[CMSG_SPACE(4 * sizeof(int))];
        } ctl;
        uint8_t buf[4096];
        struct iovec iov = {buf, sizeof(buf)};
        struct msghdr msg = {.msg_iov = &iov,
                             .msg_iovlen = 1,
                             .msg_control = ctl.buf,
                             .msg_controllen = sizeof(ctl.buf)};
        ssize_t n;

        if (f->eng_fd < 0) {
            return;
        }
        n = recvmsg(f->eng_fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); n >= 0 && c != NULL;
             c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);

                for (size_t i = 0; i < k; i++) {
                    int fd;

                    memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
                    close(fd); /* the pool's memfd from AttachReply */
                }
            }
        }
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            close(f->eng_fd); /* the node closed the session */
            f->eng_fd = -1;
            return;
        }
        if (n < 0) {
            return;
        }
    }
}

static int fz_busy(fz_t *f)
{
    struct kvx_node *node = f->node;
    int busy = 0;

    for (unsigned i = 0; i < FZ_PEERS; i++) {
        fz_peer_t *p = &f->peers[i];

        if (p->remote != NULL &&
            (kvxi_conn_out_pending(p->remote) > 0 ||
             kvxi_conn_state(p->remote) == KVXI_CONN_CLOSING)) {
            busy = 1;
        }
    }
    for (struct kvx_peer *peer = node->peers; peer != NULL; peer = peer->next) {
        if (peer->conn != NULL && kvxi_conn_out_pending(peer->conn) > 0) {
            busy = 1;
        }
    }
    fz_engine_drain(f);
    if (node->engine != NULL) {
        for (kvxi_session_t *s = node->engine->sessions; s != NULL;
             s = s->next) {
            if (s->closing || fz_fd_pending(s->fd) ||
                evbuffer_get_length(bufferevent_get_output(s->bev)) > 0) {
                busy = 1;
            }
        }
    }
    return busy;
}

void fz_settle(fz_t *f)
{
    int quiet = 0;

    for (int i = 0; i < FZ_SETTLE_ROUNDS && quiet < 2; i++) {
        kvx_node_progress(f->node, 0);
        quiet = fz_busy(f) ? 0 : quiet + 1;
    }
}

/* ------------------------------------------------------------------------
 * Peers.
 */

int fz_peer_alive(const fz_t *f, const struct kvx_peer *peer)
{
    for (struct kvx_peer *p = f->node->peers; p != NULL; p = p->next) {
        if (p == peer) {
            return peer != NULL;
        }
    }
    return 0;
}

/* Slot 0: the node accepted the connection (it frees the peer when the
 * connection closes); slot 1: the node connected (the owner closes it).
 * The two sides choose transfer ids of opposite parity. */
static struct kvx_peer *fz_connect(fz_t *f, unsigned i, kvxi_conn_t **rem_p)
{
    struct kvx_node *node = f->node;
    int is_client = (int)(i & 1), sv[2];
    kvxi_conn_t *conn = NULL, *rem = NULL;
    struct kvx_peer *peer;

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        return NULL;
    }
    if (kvxi_conn_create_fd(node->base, sv[0], is_client, &node->conn_cfg,
                            &conn) != KVX_OK) {
        close(sv[0]);
        close(sv[1]);
        return NULL;
    }
    kvxi_peer_accept(NULL, conn, node);
    peer = node->peers;
    if (peer == NULL || peer->conn != conn) {
        close(sv[1]);
        return NULL;
    }
    peer->is_client = is_client;
    peer->accepted = !is_client;
    snprintf(f->rname, sizeof(f->rname), "remote%u", i);
    f->rid.instance_id = 0x5eed0000u + f->peers_made;
    if (kvxi_conn_create_fd(node->base, sv[1], !is_client, &f->rcfg, &rem) !=
        KVX_OK) {
        close(sv[1]);
        kvx_peer_close(peer);
        return NULL;
    }
    *rem_p = rem;
    for (int k = 0; k < 200 && fz_peer_alive(f, peer) &&
                    (peer->status == KVX_INPROGRESS ||
                     kvxi_conn_state(rem) != KVXI_CONN_OPEN);
         k++) {
        kvx_node_progress(node, 0);
    }
    if (!fz_peer_alive(f, peer) || peer->status != KVX_OK ||
        kvxi_conn_state(rem) != KVXI_CONN_OPEN) {
        fz_fail("the handshake with a remote did not complete");
    }
    return peer;
}

fz_peer_t *fz_peer(fz_t *f, unsigned i)
{
    fz_peer_t *p = &f->peers[i % FZ_PEERS];

    if (p->peer != NULL && fz_peer_alive(f, p->peer)) {
        return p;
    }
    p->peer = NULL;
    if (f->peers_made >= FZ_PEERS_PER_INPUT) {
        return NULL;
    }
    kvxi_conn_destroy(p->remote);
    p->remote = NULL;
    f->peers_made++;
    p->peer = fz_connect(f, i % FZ_PEERS, &p->remote);
    return p->peer != NULL ? p : NULL;
}

void fz_peer_end(fz_t *f, unsigned i, unsigned how)
{
    fz_peer_t *p = &f->peers[i % FZ_PEERS];

    if (p->peer == NULL || !fz_peer_alive(f, p->peer)) {
        return;
    }
    switch (how % 3) {
    case 0:
        if (!p->peer->accepted) {
            kvx_peer_close(p->peer);
            p->peer = NULL;
            break;
        }
        /* fall through: only the node closes an accepted peer */
    case 1:
        kvxi_conn_destroy(p->remote);
        p->remote = NULL;
        break;
    default:
        kvxi_conn_close(p->remote, KVX_ERR_PEER_REFUSED, "fuzz: go away");
        break;
    }
    fz_settle(f);
}

/* ------------------------------------------------------------------------
 * The engine session.
 */

static int fz_engine_connect(fz_t *f)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct kvxi_engine *eng = f->node->engine;
    kvxi_session_t *before = eng != NULL ? eng->sessions : NULL;
    int fd;

    if (eng == NULL || f->sessions_made >= FZ_SESSIONS_PER_INPUT) {
        return -1;
    }
    f->sessions_made++;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        return -1;
    }
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f->sock);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    f->eng_fd = fd;
    for (int k = 0; k < 200 && eng->sessions == before; k++) {
        kvx_node_progress(f->node, 0);
    }
    return eng->sessions != before ? fd : -1;
}

void fz_engine_send(fz_t *f, const uint8_t *buf, size_t len)
{
    size_t off = 0;

    if (f->eng_fd < 0 && fz_engine_connect(f) < 0) {
        return;
    }
    for (int tries = 0; off < len && tries < 64 && f->eng_fd >= 0; tries++) {
        ssize_t n =
            send(f->eng_fd, buf + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);

        if (n > 0) {
            off += (size_t)n;
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
            break; /* the node closed the session */
        }
        fz_settle(f);
    }
}

void fz_engine_end(fz_t *f)
{
    if (f->eng_fd >= 0) {
        close(f->eng_fd);
        f->eng_fd = -1;
    }
    fz_settle(f);
}

/* ------------------------------------------------------------------------
 * The end of an input.
 */

static void fz_collect(fz_t *f)
{
    struct kvx_node *node = f->node;
    kvx_block_ref_t refs[FZ_NUM_BLOCKS];

    for (int k = 0; k < 256; k++) {
        kvxi_rx_t *rx = node->rxs;
        uint32_t n = 0;
        kvx_status_t st;

        while (rx != NULL && (rx->reported || rx->superseded)) {
            rx = rx->next;
        }
        if (rx == NULL) {
            return;
        }
        st = kvx_node_recv(node, rx->request_id, 0, refs, FZ_NUM_BLOCKS, &n);
        for (kvxi_rx_t *r = node->rxs; r != NULL; r = r->next) {
            if (r == rx && !rx->reported && !rx->superseded) {
                fz_fail("a receive without a peer cannot be collected");
            }
        }
        for (uint32_t i = 0; st == KVX_OK && i < n; i++) {
            if (kvx_alloc_unpin(node->alloc, refs[i]) != KVX_OK) {
                fz_fail("a collected block is not pinned");
            }
        }
    }
    fz_fail("receives keep coming back");
}

static void fz_check(fz_t *f)
{
    struct kvx_node *node = f->node;
    kvx_alloc_attr_t a;

    if (node->peers != NULL) {
        fz_fail("a peer is left");
    }
    if (node->xfers != NULL) {
        fz_fail("a transfer is left");
    }
    if (node->rxs != NULL) {
        fz_fail("a receive is left");
    }
    if (node->pubs != NULL) {
        fz_fail("a publication is left");
    }
    if (node->engine != NULL && node->engine->sessions != NULL) {
        fz_fail("an engine session is left");
    }
    for (uint32_t b = 0; b < node->layout.num_blocks; b++) {
        if (node->owner[b] != NULL) {
            fz_fail("a block still names a receive as its writer");
        }
    }
    for (uint32_t s = 0; s < node->n_rx_slots; s++) {
        if (node->rx_slots[s] != NULL) {
            fz_fail("an AM slot still names a receive");
        }
    }
    if (kvx_alloc_query(node->alloc, &a) != KVX_OK) {
        fz_fail("allocator query");
    }
    if (a.n_reserved != 0 || a.n_ready != 0 || a.n_fenced != 0 ||
        a.leases_active != 0 || a.leases_fenced != 0 ||
        a.n_free + a.n_cached != a.block_count) {
        fprintf(stderr,
                "fuzz_node: free %u reserved %u ready %u cached %u fenced %u "
                "leases %u/%u\n",
                a.n_free, a.n_reserved, a.n_ready, a.n_cached, a.n_fenced,
                a.leases_active, a.leases_fenced);
        fz_fail("blocks leaked: the pool is not back at its start");
    }
}

void fz_end(fz_t *f)
{
    struct kvx_node *node = f->node;
    kvx_alloc_params_t ap = {
        .field_mask = KVX_ALLOC_PARAM_FIELD_BLOCK_COUNT,
        .block_count = node->layout.num_blocks,
    };
    kvx_pool_attr_t pa;

    fz_engine_end(f);
    for (unsigned i = 0; i < f->n_xfers; i++) {
        kvx_xfer_release(f->xfers[i]);
    }
    f->n_xfers = 0;
    fz_settle(f);
    for (unsigned i = 0; i < FZ_PEERS; i++) {
        fz_peer_t *p = &f->peers[i];

        if (p->peer != NULL && fz_peer_alive(f, p->peer)) {
            kvx_peer_close(p->peer);
        }
        kvxi_conn_destroy(p->remote);
        p->peer = NULL;
        p->remote = NULL;
    }
    fz_settle(f); /* the engine forgets the peers it connected */
    if (node->engine != NULL && node->engine->sessions != NULL) {
        fz_fail("an engine session did not end with its socket");
    }
    /* publications outlive their engine session until their lease ends */
    kvxi_pull_free_all(node);
    fz_collect(f);
    for (unsigned i = 0; i < FZ_SRC_BLOCKS; i++) {
        if (kvx_alloc_unpin(node->alloc, f->src[i]) != KVX_OK) {
            fz_fail("a source block lost its pin");
        }
    }
    fz_check(f);
    /* the next input starts from a new allocator: same ids again */
    kvx_alloc_destroy(node->alloc);
    node->alloc = NULL;
    if (kvx_alloc_create(&ap, &node->alloc) != KVX_OK) {
        fz_fail("cannot recreate the allocator");
    }
    if (kvx_pool_query(node->pool, &pa) == KVX_OK) {
        memset(pa.base, 0, pa.length);
    }
}
