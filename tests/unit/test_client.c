/*
 * Unit tests for libkvx/client.c and client_io.c: engines attached to real
 * nodes over their unix sockets. The client blocks while it waits, so the
 * nodes run on a second thread (created here, then progressed only there
 * until the test stops it). A "prefill" and a "decode" node, each with an
 * engine socket and a TCP control listener. Exit 77 if UCX cannot start.
 */
#include "node_ut.h"

#include "client_int.h"
#include "handshake_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define N_BLOCKS 64u
#define WAIT_MS 10000u

/* ------------------------------------------------------------------------
 * Fixture: two nodes, a thread progressing them.
 */

typedef struct world {
    char dir[64];
    char p_sock[128], d_sock[128];
    char p_addr[64], d_addr[64];
    kvx_node_h p, d;
    kvx_pool_h p_pool;
    pthread_t thread;
    atomic_int stop;
    int running;
} world_t;

static void *world_main(void *arg)
{
    world_t *w = arg;

    while (!atomic_load(&w->stop)) {
        if (w->p != NULL) {
            kvx_node_progress(w->p, w->d != NULL ? 2 : 5);
        }
        if (w->d != NULL) {
            kvx_node_progress(w->d, w->p != NULL ? 2 : 5);
        }
    }
    return NULL;
}

static void world_start(world_t *w)
{
    atomic_store(&w->stop, 0);
    CU_ASSERT_EQUAL_FATAL(pthread_create(&w->thread, NULL, world_main, w), 0);
    w->running = 1;
}

/* Stops the thread: the test may touch the nodes until world_start(). */
static void world_stop(world_t *w)
{
    if (w->running) {
        atomic_store(&w->stop, 1);
        pthread_join(w->thread, NULL);
        w->running = 0;
    }
}

static kvx_status_t world_node(const char *id, const char *sock,
                               kvx_node_h *node_p)
{
    kvx_layout_params_t lp = nut_layout(N_BLOCKS);
    kvx_node_params_t np = {
        .field_mask =
            KVX_NODE_PARAM_FIELD_NODE_ID | KVX_NODE_PARAM_FIELD_LAYOUT |
            KVX_NODE_PARAM_FIELD_LISTEN | KVX_NODE_PARAM_FIELD_UCX_TLS |
            KVX_NODE_PARAM_FIELD_ENGINE_SOCKET,
        .node_id = id,
        .layout = &lp,
        .listen = "127.0.0.1:0",
        .ucx_tls = NUT_TLS_TCP,
        .engine_socket = sock,
    };

    return kvx_node_create(&np, node_p);
}

static void world_up(world_t *w)
{
    memset(w, 0, sizeof(*w));
    snprintf(w->dir, sizeof(w->dir), "/tmp/kvx-client-XXXXXX");
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(w->dir));
    snprintf(w->p_sock, sizeof(w->p_sock), "%s/prefill.sock", w->dir);
    snprintf(w->d_sock, sizeof(w->d_sock), "unix:%s/decode.sock", w->dir);
    CU_ASSERT_EQUAL_FATAL(world_node("prefill", w->p_sock, &w->p), KVX_OK);
    CU_ASSERT_EQUAL_FATAL(world_node("decode", w->d_sock, &w->d), KVX_OK);
    snprintf(w->p_addr, sizeof(w->p_addr), "%s", kvx_node_listen_addr(w->p));
    snprintf(w->d_addr, sizeof(w->d_addr), "%s", kvx_node_listen_addr(w->d));
    w->p_pool = kvx_node_pool(w->p);
    world_start(w);
}

static void world_down(world_t *w)
{
    world_stop(w);
    kvx_node_destroy(w->p);
    kvx_node_destroy(w->d);
    /* kvx_node_destroy() removes the socket files */
    CU_ASSERT_EQUAL(rmdir(w->dir), 0);
}

static kvx_client_h attach(const char *sock, const char *name)
{
    kvx_client_params_t cp = {
        .field_mask = KVX_CLIENT_PARAM_FIELD_NAME,
        .name = name,
    };
    kvx_client_h c = NULL;

    CU_ASSERT_EQUAL_FATAL(kvx_client_attach(sock, &cp, &c), KVX_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    return c;
}

/* ------------------------------------------------------------------------
 * Helpers.
 */

static void make_keys(kvx_block_key_t *keys, uint32_t n, uint32_t seed)
{
    for (uint32_t i = 0; i < n; i++) {
        memset(&keys[i], 0, sizeof(keys[i]));
        memcpy(keys[i].bytes, &seed, sizeof(seed));
        memcpy(keys[i].bytes + 8, &i, sizeof(i));
    }
}

static uint32_t pattern(uint32_t seed, uint32_t i, uint64_t j)
{
    return (seed + i) * 2654435761u ^ (uint32_t)j;
}

static void fill(kvx_client_h c, const kvx_block_ref_t *refs, uint32_t n,
                 uint32_t seed)
{
    uint64_t bb = kvx_client_layout(c)->block_bytes;

    for (uint32_t i = 0; i < n; i++) {
        uint32_t *b = kvx_client_block_addr(c, refs[i].block);

        CU_ASSERT_PTR_NOT_NULL_FATAL(b);
        for (uint64_t j = 0; j < bb / 4; j++) {
            b[j] = pattern(seed, i, j);
        }
    }
}

/* Number of blocks of @p refs that do not hold pattern @p seed. */
static uint32_t check(kvx_client_h c, const kvx_block_ref_t *refs, uint32_t n,
                      uint32_t seed)
{
    uint64_t bb = kvx_client_layout(c)->block_bytes;
    uint32_t bad = 0;

    for (uint32_t i = 0; i < n; i++) {
        const uint32_t *b = kvx_client_block_addr(c, refs[i].block);

        for (uint64_t j = 0; b != NULL && j < bb / 4; j++) {
            if (b[j] != pattern(seed, i, j)) {
                bad++;
                break;
            }
        }
        bad += b == NULL;
    }
    return bad;
}

/* Reserves, fills and seals @p n blocks (keyed when @p keys). */
static void make_src(kvx_client_h c, uint32_t n, const kvx_block_key_t *keys,
                     kvx_block_ref_t *refs, uint32_t seed)
{
    kvx_lease_id_t lease = 0;

    CU_ASSERT_EQUAL_FATAL(kvx_client_reserve(c, n, keys, 0, refs, NULL, &lease),
                          KVX_OK);
    CU_ASSERT_NOT_EQUAL_FATAL(lease, 0);
    fill(c, refs, n, seed);
    CU_ASSERT_EQUAL_FATAL(kvx_client_seal(c, lease), KVX_OK);
}

static void release_all(kvx_client_h c, const kvx_block_ref_t *refs, uint32_t n)
{
    uint32_t released = 0;

    CU_ASSERT_EQUAL(kvx_client_release(c, refs, n, &released), KVX_OK);
    CU_ASSERT_EQUAL(released, n);
}

static kvx_status_t push(kvx_client_h c, const char *peer, uint64_t req,
                         const kvx_block_ref_t *refs, uint32_t n,
                         const kvx_block_key_t *keys, uint32_t flags,
                         kvx_client_xfer_h *x_p)
{
    kvx_xfer_params_t xp = {
        .field_mask = KVX_XFER_PARAM_FIELD_REQUEST_ID |
                      KVX_XFER_PARAM_FIELD_BLOCKS | KVX_XFER_PARAM_FIELD_FLAGS |
                      KVX_XFER_PARAM_FIELD_DEADLINE,
        .request_id = req,
        .blocks = refs,
        .n_blocks = n,
        .flags = flags,
        .deadline_ms = WAIT_MS,
    };

    if (keys != NULL) {
        xp.field_mask |= KVX_XFER_PARAM_FIELD_KEYS;
        xp.keys = keys;
    }
    return kvx_client_push(c, peer, &xp, x_p);
}

static uint64_t blocks_free(kvx_client_h c)
{
    kvx_node_stats_t st;

    CU_ASSERT_EQUAL(kvx_client_stats(c, &st), KVX_OK);
    return st.blocks_free;
}

/* Polls @p c's stats until blocks_free is @p want (the node handles a
 * closed session asynchronously). */
static uint64_t wait_free(kvx_client_h c, uint64_t want)
{
    uint64_t end = kvx_clock_monotonic_ns(NULL) + WAIT_MS * 1000000ull, n;

    while ((n = blocks_free(c)) != want && kvx_clock_monotonic_ns(NULL) < end) {
        usleep(2000);
    }
    return n;
}

static int counter(const kvx_node_stats_t *st, const char *name,
                   uint64_t *value_p)
{
    for (uint32_t i = 0; i < st->n_counters; i++) {
        if (strcmp(st->counters[i].name, name) == 0) {
            *value_p = st->counters[i].value;
            return 1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Attach.
 */

static void test_client_attach_detach(void)
{
    kvx_client_params_t cp = {0};
    char name[300], path[200];
    kvx_block_ref_t ref;
    kvx_lease_id_t lease;
    const kvx_layout_t *l;
    kvx_client_h c, c2;
    world_t w;
    uint8_t *node_b;

    world_up(&w);
    c = attach(w.p_sock, "attach-test");
    l = kvx_client_layout(c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(l);
    CU_ASSERT_EQUAL(l->num_layers, 4);
    CU_ASSERT_EQUAL(l->num_blocks, N_BLOCKS);
    CU_ASSERT_EQUAL(l->block_bytes, 32768);
    CU_ASSERT_STRING_EQUAL(kvx_client_node_id(c), "prefill");
    CU_ASSERT_STRING_EQUAL(c->listen_addr, w.p_addr);
    CU_ASSERT_PTR_NOT_NULL(kvx_client_block_addr(c, 0));
    CU_ASSERT_PTR_NOT_NULL(kvx_client_block_addr(c, N_BLOCKS - 1));
    CU_ASSERT_PTR_NULL(kvx_client_block_addr(c, N_BLOCKS));
    CU_ASSERT_PTR_NULL(kvx_client_block_addr(NULL, 0));
    CU_ASSERT(c->map_bytes >= (size_t)N_BLOCKS * l->block_bytes);
    CU_ASSERT((uint8_t *)kvx_client_block_addr(c, N_BLOCKS - 1) +
                  l->block_bytes <=
              (uint8_t *)c->base + c->map_bytes);

    /* what the engine writes is in the node's pool */
    CU_ASSERT_EQUAL_FATAL(kvx_client_reserve(c, 1, NULL, 0, &ref, NULL, &lease),
                          KVX_OK);
    fill(c, &ref, 1, 7);
    CU_ASSERT_EQUAL(kvx_client_seal(c, lease), KVX_OK);
    world_stop(&w);
    node_b = kvx_pool_block_addr(w.p_pool, ref.block);
    CU_ASSERT_PTR_NOT_NULL_FATAL(node_b);
    CU_ASSERT_EQUAL(
        memcmp(node_b, kvx_client_block_addr(c, ref.block), l->block_bytes), 0);
    node_b[5] ^= 0xff; /* and the other way round */
    CU_ASSERT_EQUAL(check(c, &ref, 1, 7), 1);
    world_start(&w);

    /* a second engine, "unix:" prefix and default params */
    snprintf(path, sizeof(path), "unix:%s", w.p_sock);
    CU_ASSERT_EQUAL_FATAL(kvx_client_attach(path, NULL, &c2), KVX_OK);
    CU_ASSERT_EQUAL(check(c2, &ref, 1, 7), 1);
    kvx_client_detach(c2);

    /* bad arguments: nothing attached, nothing written */
    c2 = (kvx_client_h)0x1;
    CU_ASSERT_EQUAL(kvx_client_attach(NULL, NULL, &c2), KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_client_attach(w.p_sock, NULL, NULL),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_client_attach("", NULL, &c2), KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_client_attach("unix:", NULL, &c2),
                    KVX_ERR_INVALID_PARAM);
    memset(path, 'a', sizeof(path));
    path[0] = '/';
    path[KVXI_CLIENT_PATH_MAX + 1] = '\0';
    CU_ASSERT_EQUAL(kvx_client_attach(path, NULL, &c2), KVX_ERR_INVALID_PARAM);
    cp.field_mask = 1u << 20;
    CU_ASSERT_EQUAL(kvx_client_attach(w.p_sock, &cp, &c2),
                    KVX_ERR_INVALID_PARAM);
    memset(name, 'n', sizeof(name));
    name[KVXI_NAME_MAX + 1] = '\0';
    cp.field_mask = KVX_CLIENT_PARAM_FIELD_NAME;
    cp.name = name;
    CU_ASSERT_EQUAL(kvx_client_attach(w.p_sock, &cp, &c2),
                    KVX_ERR_INVALID_PARAM);
    name[KVXI_NAME_MAX] = '\0'; /* 256 bytes: allowed */
    cp.field_mask |= KVX_CLIENT_PARAM_FIELD_TIMEOUT;
    cp.timeout_ms = 5000;
    CU_ASSERT_EQUAL(kvx_client_attach(w.p_sock, &cp, &c2), KVX_OK);
    CU_ASSERT_EQUAL(c2->timeout_ms, 5000);
    kvx_client_detach(c2);

    release_all(c, &ref, 1);
    kvx_client_detach(c);
    kvx_client_detach(NULL);
    world_down(&w);
}

static void test_client_attach_missing(void)
{
    kvx_client_h c = (kvx_client_h)0x1;
    char path[128];
    FILE *f;
    world_t w;

    world_up(&w);
    snprintf(path, sizeof(path), "%s/nobody.sock", w.dir);
    CU_ASSERT_EQUAL(kvx_client_attach(path, NULL, &c),
                    KVX_ERR_PEER_UNREACHABLE);
    /* a file that is not a listening socket */
    f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fclose(f);
    CU_ASSERT_EQUAL(kvx_client_attach(path, NULL, &c),
                    KVX_ERR_PEER_UNREACHABLE);
    CU_ASSERT_EQUAL(unlink(path), 0);
    CU_ASSERT_EQUAL(kvx_client_attach("/nonexistent/dir/kvx.sock", NULL, &c),
                    KVX_ERR_PEER_UNREACHABLE);
    CU_ASSERT_EQUAL(c, (kvx_client_h)0x1);
    world_down(&w);
}

/* ------------------------------------------------------------------------
 * A scripted fake node (one session on its own thread), for what a real
 * node never does: bad memfds, refusals, garbage, silence, and frames
 * interleaved at will.
 */

enum fake_script {
    FAKE_OK,         /* a valid attach, then the session script */
    FAKE_UNSEALED,   /* memfd without F_SEAL_SHRINK */
    FAKE_SHORT,      /* memfd smaller than pool_bytes */
    FAKE_NO_FD,      /* AttachReply without a descriptor */
    FAKE_TWO_FDS,    /* two descriptors */
    FAKE_VERSION,    /* session version 2 */
    FAKE_REFUSED,    /* AttachReply with NOT_SUPPORTED */
    FAKE_ERROR,      /* an Error envelope */
    FAKE_WRONG_BODY, /* a Result instead of AttachReply */
    FAKE_GARBAGE,    /* a zero-length frame */
    FAKE_SILENT,     /* no answer */
    FAKE_BAD_HASH,   /* layout_hash not the layout's */
};

typedef struct fake {
    char dir[64], path[128];
    int lfd;
    enum fake_script script;
    pthread_t thread;
    atomic_int failed; /* the fake saw something it did not expect */
} fake_t;

static int fake_read(int fd, uint8_t *buf, size_t *len, kvxi_envelope_t **env)
{
    for (;;) {
        size_t used;
        ssize_t n;

        if (kvxi_frame_decode(buf, *len, 0, env, &used) == KVX_OK) {
            *len -= used;
            memmove(buf, buf + used, *len);
            return 0;
        }
        n = read(fd, buf + *len, 65536 - *len);
        if (n <= 0) {
            return -1;
        }
        *len += (size_t)n;
    }
}

static void fake_send(int fd, kvxi_envelope_t *env, const int *fds, int nfds)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(2 * sizeof(int))];
    } ctl;
    uint8_t out[4096];
    struct msghdr msg = {0};
    struct iovec iov;
    size_t len = 0;

    env->version = 1;
    CU_ASSERT_EQUAL_FATAL(kvxi_frame_encode(env, out, sizeof(out), &len),
                          KVX_OK);
    iov.iov_base = out;
    iov.iov_len = len;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (nfds > 0) {
        struct cmsghdr *cm;

        memset(&ctl, 0, sizeof(ctl));
        msg.msg_control = ctl.buf;
        msg.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
        cm = CMSG_FIRSTHDR(&msg);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
        memcpy(CMSG_DATA(cm), fds, (size_t)nfds * sizeof(int));
    }
    CU_ASSERT_EQUAL(sendmsg(fd, &msg, MSG_NOSIGNAL), (ssize_t)len);
}

static int fake_memfd(uint64_t size, int seal)
{
    int fd = memfd_create("fake-pool", MFD_CLOEXEC | MFD_ALLOW_SEALING);

    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL_FATAL(ftruncate(fd, (off_t)size), 0);
    if (seal) {
        CU_ASSERT_EQUAL(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
    }
    return fd;
}

/* After a valid attach: the frames of one transfer interleaved with other
 * requests (see test_client_fake_session). */
static void fake_session(fake_t *f, int fd, uint8_t *buf, size_t *len)
{
    kvxi_envelope_t out = KVX__V1__ENVELOPE__INIT, *env;
    Kvx__V1__Result res = KVX__V1__RESULT__INIT;
    Kvx__V1__XferDone done = KVX__V1__XFER_DONE__INIT;
    Kvx__V1__StatsReply st = KVX__V1__STATS_REPLY__INIT;
    Kvx__V1__ReserveReply rr = KVX__V1__RESERVE_REPLY__INIT;
    Kvx__V1__BlockRefs refs = KVX__V1__BLOCK_REFS__INIT;
    uint32_t block = 3, gen = 1;
    uint8_t mask = 0;
    uint64_t id;

    /* PushStart -> Result(xfer 9) */
    if (fake_read(fd, buf, len, &env) != 0 ||
        env->body_case != KVX__V1__ENVELOPE__BODY_PUSH_START) {
        atomic_store(&f->failed, 1);
        return;
    }
    res.status = KVX__V1__STATUS__STATUS_OK;
    res.xfer_id = 9;
    out.request_id = env->request_id;
    out.body_case = KVX__V1__ENVELOPE__BODY_RESULT;
    out.result = &res;
    kvxi_frame_free(env);
    fake_send(fd, &out, NULL, 0);

    /* Stats -> XferDone (with the same envelope id), a stray Result, then
     * StatsReply */
    if (fake_read(fd, buf, len, &env) != 0 ||
        env->body_case != KVX__V1__ENVELOPE__BODY_STATS) {
        atomic_store(&f->failed, 1);
        return;
    }
    id = env->request_id;
    kvxi_frame_free(env);
    done.xfer_id = 9;
    done.status = KVX__V1__STATUS__STATUS_OK;
    done.block_count = 2;
    done.blocks_hit = 1;
    done.blocks_sent = 1;
    done.bytes_sent = 4096;
    done.segments = 3;
    done.data_path = KVX__V1__DATA_PATH__DATA_PATH_RMA;
    done.elapsed_ns = 12345;
    out.request_id = id;
    out.body_case = KVX__V1__ENVELOPE__BODY_XFER_DONE;
    out.xfer_done = &done;
    fake_send(fd, &out, NULL, 0);
    done.xfer_id = 77; /* unknown transfer: ignored */
    fake_send(fd, &out, NULL, 0);
    out.request_id = 999;
    out.body_case = KVX__V1__ENVELOPE__BODY_RESULT;
    out.result = &res;
    fake_send(fd, &out, NULL, 0);
    st.blocks_total = 1234;
    out.request_id = id;
    out.body_case = KVX__V1__ENVELOPE__BODY_STATS_REPLY;
    out.stats_reply = &st;
    fake_send(fd, &out, NULL, 0);

    /* Reserve(2) -> a ReserveReply for 1 block: the client closes */
    if (fake_read(fd, buf, len, &env) != 0 ||
        env->body_case != KVX__V1__ENVELOPE__BODY_RESERVE) {
        atomic_store(&f->failed, 1);
        return;
    }
    rr.status = KVX__V1__STATUS__STATUS_OK;
    rr.lease_id = 5;
    rr.block_count = 1;
    refs.n_blocks = refs.n_gens = 1;
    refs.blocks = &block;
    refs.gens = &gen;
    rr.blocks = &refs;
    rr.hit_mask.data = &mask;
    rr.hit_mask.len = 1;
    out.request_id = env->request_id;
    out.body_case = KVX__V1__ENVELOPE__BODY_RESERVE_REPLY;
    out.reserve_reply = &rr;
    kvxi_frame_free(env);
    fake_send(fd, &out, NULL, 0);
    if (fake_read(fd, buf, len, &env) == 0) { /* expect EOF */
        kvxi_frame_free(env);
        atomic_store(&f->failed, 1);
    }
}

static void *fake_main(void *arg)
{
    static const uint8_t garbage[4] = {0, 0, 0, 0};
    kvxi_envelope_t out = KVX__V1__ENVELOPE__INIT, *env = NULL;
    Kvx__V1__AttachReply ar = KVX__V1__ATTACH_REPLY__INIT;
    Kvx__V1__Result res = KVX__V1__RESULT__INIT;
    Kvx__V1__Error err = KVX__V1__ERROR__INIT;
    kvx_layout_params_t lp = nut_layout(8);
    Kvx__V1__Layout wl;
    kvx_layout_t l;
    fake_t *f = arg;
    uint8_t buf[65536];
    int fd, fds[2] = {-1, -1}, nfds = 1;
    size_t len = 0;

    fd = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0 || fake_read(fd, buf, &len, &env) != 0 ||
        env->body_case != KVX__V1__ENVELOPE__BODY_ATTACH) {
        atomic_store(&f->failed, 1);
        goto out;
    }
    CU_ASSERT_EQUAL(env->attach->min_version, 1);
    CU_ASSERT_EQUAL(env->attach->max_version, 1);
    CU_ASSERT_STRING_EQUAL(env->attach->client_name, "engine");
    CU_ASSERT_EQUAL_FATAL(kvx_layout_init(&l, &lp), KVX_OK);
    kvxi_wire_layout_to(&l, &wl);
    ar.status = KVX__V1__STATUS__STATUS_OK;
    ar.version = 1;
    ar.node_id = "fake";
    ar.layout = &wl;
    ar.pool_bytes = l.region_bytes;
    ar.listen_addr = "";
    ar.layout_hash = kvx_layout_compat_hash(&l);
    out.request_id = env->request_id;
    out.body_case = KVX__V1__ENVELOPE__BODY_ATTACH_REPLY;
    out.attach_reply = &ar;
    fds[0] = fake_memfd(l.region_bytes, f->script != FAKE_UNSEALED);
    switch (f->script) {
    case FAKE_SHORT: ar.pool_bytes += 4096; break;
    case FAKE_NO_FD: nfds = 0; break;
    case FAKE_TWO_FDS:
        fds[1] = fake_memfd(4096, 1);
        nfds = 2;
        break;
    case FAKE_VERSION: ar.version = 2; break;
    case FAKE_BAD_HASH: ar.layout_hash ^= 1; break;
    case FAKE_REFUSED:
        memset(&ar, 0, sizeof(ar));
        kvx__v1__attach_reply__init(&ar);
        ar.status = KVX__V1__STATUS__STATUS_ERR_NOT_SUPPORTED;
        nfds = 0;
        break;
    case FAKE_ERROR:
        err.code = KVX__V1__STATUS__STATUS_ERR_BAD_STATE;
        err.request_id = env->request_id;
        out.body_case = KVX__V1__ENVELOPE__BODY_ERROR;
        out.error = &err;
        nfds = 0;
        break;
    case FAKE_WRONG_BODY:
        res.status = KVX__V1__STATUS__STATUS_OK;
        out.body_case = KVX__V1__ENVELOPE__BODY_RESULT;
        out.result = &res;
        nfds = 0;
        break;
    default: break;
    }
    if (f->script == FAKE_GARBAGE) {
        CU_ASSERT_EQUAL(write(fd, garbage, sizeof(garbage)), 4);
    } else if (f->script != FAKE_SILENT) {
        fake_send(fd, &out, fds, nfds);
    }
    if (f->script == FAKE_OK) {
        fake_session(f, fd, buf, &len);
    } else {
        /* wait for the client to give up */
        kvxi_envelope_t *more = NULL;

        if (fake_read(fd, buf, &len, &more) == 0) {
            kvxi_frame_free(more);
            atomic_store(&f->failed, 1);
        }
    }
out:
    kvxi_frame_free(env);
    for (int i = 0; i < 2; i++) {
        if (fds[i] >= 0) {
            close(fds[i]);
        }
    }
    if (fd >= 0) {
        close(fd);
    }
    return NULL;
}

static void fake_start(fake_t *f, enum fake_script script)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};

    memset(f, 0, sizeof(*f));
    f->script = script;
    snprintf(f->dir, sizeof(f->dir), "/tmp/kvx-fake-XXXXXX");
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/fake.sock", f->dir);
    CU_ASSERT_FATAL(strlen(f->path) < sizeof(sa.sun_path));
    memcpy(sa.sun_path, f->path, strlen(f->path) + 1);
    f->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CU_ASSERT_FATAL(f->lfd >= 0);
    CU_ASSERT_EQUAL_FATAL(bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    CU_ASSERT_EQUAL_FATAL(listen(f->lfd, 4), 0);
    CU_ASSERT_EQUAL_FATAL(pthread_create(&f->thread, NULL, fake_main, f), 0);
}

static void fake_stop(fake_t *f)
{
    pthread_join(f->thread, NULL);
    close(f->lfd);
    unlink(f->path);
    rmdir(f->dir);
    CU_ASSERT_EQUAL(atomic_load(&f->failed), 0);
}

/* One attach against @p script, with a short timeout. */
static kvx_status_t fake_attach(enum fake_script script)
{
    kvx_client_params_t cp = {
        .field_mask = KVX_CLIENT_PARAM_FIELD_TIMEOUT,
        .timeout_ms = 300,
    };
    kvx_client_h c = (kvx_client_h)0x1;
    kvx_status_t s;
    fake_t f;

    fake_start(&f, script);
    s = kvx_client_attach(f.path, &cp, &c);
    CU_ASSERT_EQUAL(c, (kvx_client_h)0x1);
    fake_stop(&f);
    return s;
}

static void test_client_fake_refusals(void)
{
    CU_ASSERT_EQUAL(fake_attach(FAKE_UNSEALED), KVX_ERR_PROTO_MALFORMED);
    CU_ASSERT_EQUAL(fake_attach(FAKE_SHORT), KVX_ERR_PROTO_MALFORMED);
    CU_ASSERT_EQUAL(fake_attach(FAKE_NO_FD), KVX_ERR_PROTO_MALFORMED);
    CU_ASSERT_EQUAL(fake_attach(FAKE_TWO_FDS), KVX_ERR_PROTO_MALFORMED);
    CU_ASSERT_EQUAL(fake_attach(FAKE_BAD_HASH), KVX_ERR_PROTO_MALFORMED);
    CU_ASSERT_EQUAL(fake_attach(FAKE_VERSION), KVX_ERR_PROTO_VERSION);
    CU_ASSERT_EQUAL(fake_attach(FAKE_REFUSED), KVX_ERR_NOT_SUPPORTED);
    CU_ASSERT_EQUAL(fake_attach(FAKE_ERROR), KVX_ERR_BAD_STATE);
    CU_ASSERT_EQUAL(fake_attach(FAKE_WRONG_BODY), KVX_ERR_PROTO_UNEXPECTED);
    CU_ASSERT_EQUAL(fake_attach(FAKE_GARBAGE), KVX_ERR_PROTO_MALFORMED);
    CU_ASSERT_EQUAL(fake_attach(FAKE_SILENT), KVX_ERR_TIMEOUT);
}

/* XferDone arriving while another reply is awaited, with that request's
 * envelope id; replies nobody waits for; a reply breaking the contract. */
static void test_client_fake_session(void)
{
    kvx_block_ref_t refs[2] = {{1, 1}, {2, 1}};
    kvx_client_xfer_h x;
    kvx_xfer_attr_t attr;
    kvx_node_stats_t st;
    kvx_lease_id_t lease;
    kvx_client_h c;
    fake_t f;

    fake_start(&f, FAKE_OK);
    CU_ASSERT_EQUAL_FATAL(kvx_client_attach(f.path, NULL, &c), KVX_OK);
    CU_ASSERT_STRING_EQUAL(kvx_client_node_id(c), "fake");
    CU_ASSERT_EQUAL(kvx_client_layout(c)->num_blocks, 8);
    CU_ASSERT_EQUAL_FATAL(push(c, "somewhere:1", 5, refs, 2, NULL, 0, &x),
                          KVX_OK);
    CU_ASSERT_EQUAL(x->xfer_id, 9);
    CU_ASSERT_EQUAL(kvx_client_stats(c, &st), KVX_OK);
    CU_ASSERT_EQUAL(st.blocks_total, 1234);
    /* applied while waiting for the StatsReply */
    CU_ASSERT_EQUAL(x->attr.status, KVX_OK);
    CU_ASSERT_EQUAL(kvx_client_xfer_query(x, &attr), KVX_OK);
    CU_ASSERT_EQUAL(attr.n_blocks, 2);
    CU_ASSERT_EQUAL(attr.blocks_hit, 1);
    CU_ASSERT_EQUAL(attr.blocks_sent, 1);
    CU_ASSERT_EQUAL(attr.bytes_sent, 4096);
    CU_ASSERT_EQUAL(attr.segments, 3);
    CU_ASSERT_EQUAL(attr.transport, KVX_TRANSPORT_RMA);
    CU_ASSERT_EQUAL(attr.elapsed_ns, 12345);
    /* a ReserveReply for the wrong count: refused, session closed */
    CU_ASSERT_EQUAL(kvx_client_reserve(c, 2, NULL, 0, refs, NULL, &lease),
                    KVX_ERR_PROTO_MALFORMED);
    CU_ASSERT_EQUAL(kvx_client_stats(c, &st), KVX_ERR_PEER_DOWN);
    CU_ASSERT_EQUAL(kvx_client_xfer_test(x), KVX_OK);
    kvx_client_xfer_release(x);
    kvx_client_detach(c);
    fake_stop(&f);
}

/* ------------------------------------------------------------------------
 * Pushing.
 */

static void test_client_push_recv(void)
{
    kvx_block_ref_t src[4], dst[4];
    kvx_block_key_t keys[4];
    kvx_xfer_attr_t attr;
    kvx_client_xfer_h x;
    kvx_client_h p, d;
    uint32_t n = 0;
    world_t w;

    world_up(&w);
    p = attach(w.p_sock, "prefill-engine");
    d = attach(w.d_sock, "decode-engine");
    make_keys(keys, 4, 1);
    make_src(p, 4, keys, src, 100);
    CU_ASSERT_EQUAL_FATAL(push(p, w.d_addr, 11, src, 4, keys, 0, &x), KVX_OK);
    CU_ASSERT_EQUAL(kvx_client_xfer_query(x, &attr), KVX_OK);
    CU_ASSERT(attr.status == KVX_INPROGRESS || attr.status == KVX_OK);
    CU_ASSERT_EQUAL(kvx_client_xfer_wait(x, WAIT_MS), KVX_OK);
    CU_ASSERT_EQUAL(kvx_client_xfer_test(x), KVX_OK);
    CU_ASSERT_EQUAL(kvx_client_xfer_query(x, &attr), KVX_OK);
    CU_ASSERT_EQUAL(attr.status, KVX_OK);
    CU_ASSERT_EQUAL(attr.n_blocks, 4);
    CU_ASSERT_EQUAL(attr.blocks_hit, 0);
    CU_ASSERT_EQUAL(attr.blocks_sent, 4);
    CU_ASSERT_EQUAL(attr.bytes_sent, 4 * 32768);
    CU_ASSERT_EQUAL(attr.transport, KVX_TRANSPORT_AM);
    CU_ASSERT(attr.segments >= 1);
    CU_ASSERT_EQUAL(kvx_client_xfer_query(x, NULL), KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_client_xfer_abort(x), KVX_ERR_BAD_STATE);
    CU_ASSERT_EQUAL(kvx_client_xfer_layer_ready(x, 1), KVX_ERR_BAD_STATE);
    kvx_client_xfer_release(x);

    /* the decode engine collects the request and reads the same bytes */
    CU_ASSERT_EQUAL_FATAL(kvx_client_recv(d, 11, WAIT_MS, dst, 4, &n), KVX_OK);
    CU_ASSERT_EQUAL_FATAL(n, 4);
    CU_ASSERT_EQUAL(check(d, dst, 4, 100), 0);
    CU_ASSERT_EQUAL(kvx_client_recv(d, 11, 0, dst, 4, &n), KVX_ERR_NOT_FOUND);
    release_all(d, dst, 4);
    release_all(p, src, 4);
    kvx_client_detach(d);
    kvx_client_detach(p);
    world_down(&w);
}

static void test_client_push_dedupe(void)
{
    kvx_block_ref_t src[4], dst[4];
    kvx_block_key_t keys[4];
    kvx_xfer_attr_t attr;
    kvx_client_xfer_h x;
    kvx_client_h p, d;
    uint32_t n = 0;
    world_t w;

    world_up(&w);
    p = attach(w.p_sock, "prefill-engine");
    d = attach(w.d_sock, "decode-engine");
    make_keys(keys, 4, 2);
    make_src(p, 4, keys, src, 200);
    CU_ASSERT_EQUAL_FATAL(push(p, w.d_addr, 21, src, 4, keys, 0, &x), KVX_OK);
    CU_ASSERT_EQUAL(kvx_client_xfer_wait(x, WAIT_MS), KVX_OK);
    kvx_client_xfer_release(x);
    CU_ASSERT_EQUAL_FATAL(kvx_client_recv(d, 21, WAIT_MS, dst, 4, &n), KVX_OK);
    release_all(d, dst, 4); /* keyed: stays cached on the decode node */

    CU_ASSERT_EQUAL_FATAL(push(p, w.d_addr, 22, src, 4, keys, 0, &x), KVX_OK);
    CU_ASSERT_EQUAL(kvx_client_xfer_wait(x, WAIT_MS), KVX_OK);
    CU_ASSERT_EQUAL(kvx_client_xfer_query(x, &attr), KVX_OK);
    CU_ASSERT_EQUAL(attr.blocks_hit, 4);
    CU_ASSERT_EQUAL(attr.blocks_sent, 0);
    CU_ASSERT_EQUAL(attr.bytes_sent, 0);
    kvx_client_xfer_release(x);
    CU_ASSERT_EQUAL_FATAL(kvx_client_recv(d, 22, WAIT_MS, dst, 4, &n), KVX_OK);
    CU_ASSERT_EQUAL(n, 4);
    CU_ASSERT_EQUAL(check(d, dst, 4, 200), 0);
    release_all(d, dst, 4);
    release_all(p, src, 4);
    kvx_client_detach(d);
    kvx_client_detach(p);
    world_down(&w);
}

static void test_client_push_layerwise(void)
{
    kvx_block_ref_t src[3], dst[3];
    kvx_client_xfer_h x;
    kvx_client_h p, d;
    uint32_t n = 0;
    world_t w;

    world_up(&w);
    p = attach(w.p_sock, "prefill-engine");
    d = attach(w.d_sock, "decode-engine");
    make_src(p, 3, NULL, src, 300);
    CU_ASSERT_EQUAL_FATAL(
        push(p, w.d_addr, 31, src, 3, NULL, KVX_XFER_FLAG_LAYERWISE, &x),
        KVX_OK);
    CU_ASSERT_EQUAL(kvx_client_xfer_layer_ready(NULL, 1),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_client_xfer_layer_ready(x, 0), KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_client_xfer_layer_ready(x, 5), KVX_ERR_INVALID_PARAM);
    /* nothing moves before the layers are ready */
    CU_ASSERT_EQUAL(kvx_client_xfer_wait(x, 100), KVX_INPROGRESS);
    for (uint32_t layer = 1; layer <= 4; layer++) {
        CU_ASSERT_EQUAL(kvx_client_xfer_layer_ready(x, layer), KVX_OK);
    }
    CU_ASSERT_EQUAL(kvx_client_xfer_wait(x, WAIT_MS), KVX_OK);
    kvx_client_xfer_release(x);
    CU_ASSERT_EQUAL_FATAL(kvx_client_recv(d, 31, WAIT_MS, dst, 3, &n), KVX_OK);
    CU_ASSERT_EQUAL(n, 3);
    CU_ASSERT_EQUAL(check(d, dst, 3, 300), 0);
    release_all(d, dst, 3);
    release_all(p, src, 3);
    kvx_client_detach(d);
    kvx_client_detach(p);
    world_down(&w);
}

static void test_client_push_checksum(void)
{
    kvx_block_ref_t src[4], dst[4];
    kvx_node_stats_t st;
    kvx_xfer_attr_t attr;
    kvx_client_xfer_h x;
    kvx_client_h p, d;
    uint64_t verified = 0;
    uint32_t n = 0;
    world_t w;

    world_up(&w);
    p = attach(w.p_sock, "prefill-engine");
    d = attach(w.d_sock, "decode-engine");
    make_src(p, 4, NULL, src, 400);
    CU_ASSERT_EQUAL_FATAL(
        push(p, w.d_addr, 41, src, 4, NULL, KVX_XFER_FLAG_CHECKSUM, &x),
        KVX_OK);
    CU_ASSERT_EQUAL(kvx_client_xfer_wait(x, WAIT_MS), KVX_OK);
    CU_ASSERT_EQUAL(kvx_client_xfer_query(x, &attr), KVX_OK);
    CU_ASSERT_EQUAL(attr.blocks_sent, 4);
    CU_ASSERT_EQUAL(attr.checksum_mismatches, 0);
    kvx_client_xfer_release(x);
    CU_ASSERT_EQUAL(kvx_client_stats(d, &st), KVX_OK);
    CU_ASSERT(counter(&st, "blocks.verified", &verified) && verified == 4);
    CU_ASSERT_EQUAL_FATAL(kvx_client_recv(d, 41, WAIT_MS, dst, 4, &n), KVX_OK);
    CU_ASSERT_EQUAL(check(d, dst, 4, 400), 0);
    release_all(d, dst, 4);
    release_all(p, src, 4);
    kvx_client_detach(d);
    kvx_client_detach(p);
    world_down(&w);
}

static void test_client_push_unreachable(void)
{
    kvx_block_ref_t src[2];
    kvx_client_xfer_h x;
    kvx_client_h p;
    kvx_status_t st;
    world_t w;

    world_up(&w);
    p = attach(w.p_sock, "prefill-engine");
    make_src(p, 2, NULL, src, 500);
    CU_ASSERT_EQUAL_FATAL(push(p, "127.0.0.1:1", 51, src, 2, NULL, 0, &x),
                          KVX_OK);
    st = kvx_client_xfer_wait(x, WAIT_MS);
    CU_ASSERT(KVX_STATUS_IS_PEER(st));
    kvx_client_xfer_release(x);
    /* the session is still fine */
    CU_ASSERT_EQUAL(blocks_free(p), N_BLOCKS - 2);
    release_all(p, src, 2);
    kvx_client_detach(p);
    world_down(&w);
}

/* Abort, and releasing a running transfer (its Result and XferDone are
 * dropped on arrival). */
static void test_client_xfer_abort(void)
{
    kvx_block_ref_t src[2];
    kvx_client_xfer_h x, y;
    kvx_xfer_attr_t attr;
    kvx_client_h p;
    world_t w;

    world_up(&w);
    p = attach(w.p_sock, "prefill-engine");
    make_src(p, 2, NULL, src, 600);
    CU_ASSERT_EQUAL_FATAL(
        push(p, w.d_addr, 61, src, 2, NULL, KVX_XFER_FLAG_LAYERWISE, &x),
        KVX_OK);
    CU_ASSERT_EQUAL(kvx_client_xfer_test(x), KVX_INPROGRESS);
    CU_ASSERT_EQUAL(kvx_client_xfer_query(x, &attr), KVX_OK);
    CU_ASSERT_EQUAL(attr.status, KVX_INPROGRESS);
    CU_ASSERT_EQUAL(attr.blocks_sent, 0);
    CU_ASSERT_EQUAL(kvx_client_xfer_abort(x), KVX_OK);
    CU_ASSERT_EQUAL(kvx_client_xfer_wait(x, WAIT_MS), KVX_ERR_ABORTED);
    CU_ASSERT_EQUAL(kvx_client_xfer_abort(x), KVX_ERR_BAD_STATE);
    CU_ASSERT_EQUAL(kvx_client_xfer_abort(NULL), KVX_ERR_INVALID_PARAM);
    kvx_client_xfer_release(x);

    CU_ASSERT_EQUAL_FATAL(
        push(p, w.d_addr, 62, src, 2, NULL, KVX_XFER_FLAG_LAYERWISE, &y),
        KVX_OK);
    kvx_client_xfer_release(y);
    kvx_client_xfer_release(NULL);
    CU_ASSERT_PTR_NULL(p->xfers);
    /* later requests get their own replies */
    CU_ASSERT_EQUAL(blocks_free(p), N_BLOCKS - 2);
    CU_ASSERT_EQUAL(kvx_client_xfer_test(NULL), KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_client_xfer_wait(NULL, 0), KVX_ERR_INVALID_PARAM);
    release_all(p, src, 2);
    kvx_client_detach(p);
    world_down(&w);
}

/* ------------------------------------------------------------------------
 * Publish and pull.
 */

static void test_client_publish_pull(void)
{
    kvx_publish_params_t pp = {
        .field_mask =
            KVX_PUBLISH_PARAM_FIELD_REQUEST_ID | KVX_PUBLISH_PARAM_FIELD_BLOCKS,
        .request_id = 71,
        .n_blocks = 4,
    };
    kvx_pull_params_t lp = {
        .field_mask =
            KVX_PULL_PARAM_FIELD_REQUEST_ID | KVX_PULL_PARAM_FIELD_N_BLOCKS,
        .n_blocks = 4,
    };
    kvx_block_ref_t src[4], dst[4];
    kvx_ticket_t ticket;
    kvx_client_xfer_h x;
    kvx_client_h p, d;
    uint32_t n = 0;
    world_t w;

    world_up(&w);
    p = attach(w.p_sock, "prefill-engine");
    d = attach(w.d_sock, "decode-engine");
    make_src(p, 4, NULL, src, 700);
    pp.blocks = src;
    CU_ASSERT_EQUAL_FATAL(kvx_client_publish(p, &pp, &ticket), KVX_OK);
    CU_ASSERT_STRING_EQUAL(ticket.addr, w.p_addr);
    CU_ASSERT_STRING_EQUAL(ticket.node_id, "prefill");
    CU_ASSERT_EQUAL(ticket.request_id, 71);
    CU_ASSERT_EQUAL(ticket.layout_hash,
                    kvx_layout_compat_hash(kvx_client_layout(p)));
    CU_ASSERT_EQUAL(kvx_client_publish(p, &pp, NULL), KVX_ERR_EXISTS);

    lp.request_id = ticket.request_id;
    CU_ASSERT_EQUAL_FATAL(kvx_client_pull(d, ticket.addr, &lp, &x), KVX_OK);
    CU_ASSERT_EQUAL(kvx_client_xfer_wait(x, WAIT_MS), KVX_OK);
    kvx_client_xfer_release(x);
    CU_ASSERT_EQUAL_FATAL(kvx_client_recv(d, 71, WAIT_MS, dst, 4, &n), KVX_OK);
    CU_ASSERT_EQUAL(n, 4);
    CU_ASSERT_EQUAL(check(d, dst, 4, 700), 0);
    release_all(d, dst, 4);

    CU_ASSERT_EQUAL(kvx_client_unpublish(p, 71), KVX_OK);
    CU_ASSERT_EQUAL(kvx_client_unpublish(p, 71), KVX_ERR_NOT_FOUND);
    CU_ASSERT_EQUAL(kvx_client_unpublish(NULL, 71), KVX_ERR_INVALID_PARAM);
    /* a pull of what is not published ends with NOT_FOUND */
    CU_ASSERT_EQUAL_FATAL(kvx_client_pull(d, ticket.addr, &lp, &x), KVX_OK);
    CU_ASSERT_EQUAL(kvx_client_xfer_wait(x, WAIT_MS), KVX_ERR_NOT_FOUND);
    kvx_client_xfer_release(x);
    release_all(p, src, 4);
    kvx_client_detach(d);
    kvx_client_detach(p);
    world_down(&w);
}

/* ------------------------------------------------------------------------
 * Queries.
 */

static void test_client_lookup(void)
{
    kvx_block_key_t keys[6], other[2];
    kvx_block_ref_t src[4];
    uint32_t prefix = 99;
    kvx_client_h p;
    world_t w;

    world_up(&w);
    p = attach(w.p_sock, "prefill-engine");
    make_keys(keys, 6, 8);
    CU_ASSERT_EQUAL(kvx_client_lookup(p, keys, 6, &prefix), KVX_OK);
    CU_ASSERT_EQUAL(prefix, 0);
    make_src(p, 4, keys, src, 800);
    CU_ASSERT_EQUAL(kvx_client_lookup(p, keys, 4, &prefix), KVX_OK);
    CU_ASSERT_EQUAL(prefix, 4);
    CU_ASSERT_EQUAL(kvx_client_lookup(p, keys, 6, &prefix), KVX_OK);
    CU_ASSERT_EQUAL(prefix, 4);
    CU_ASSERT_EQUAL(kvx_client_lookup(p, keys, 2, &prefix), KVX_OK);
    CU_ASSERT_EQUAL(prefix, 2);
    make_keys(other, 2, 9);
    CU_ASSERT_EQUAL(kvx_client_lookup(p, other, 2, &prefix), KVX_OK);
    CU_ASSERT_EQUAL(prefix, 0);
    release_all(p, src, 4);
    /* released keyed blocks stay cached: still a prefix, and reserving the
     * same keys hits */
    CU_ASSERT_EQUAL(kvx_client_lookup(p, keys, 4, &prefix), KVX_OK);
    CU_ASSERT_EQUAL(prefix, 4);
    {
        kvx_lease_id_t lease = 99;
        kvx_block_ref_t six[6];
        uint8_t hit[6];

        CU_ASSERT_EQUAL_FATAL(
            kvx_client_reserve(p, 6, keys, 0, six, hit, &lease) == KVX_OK, 1);
        CU_ASSERT(hit[0] && hit[1] && hit[2] && hit[3] && !hit[4] && !hit[5]);
        CU_ASSERT_NOT_EQUAL(lease, 0);
    }
    kvx_client_detach(p);
    world_down(&w);
}

static void test_client_stats_peers(void)
{
    kvx_client_peer_t peers[4];
    kvx_block_ref_t src[5];
    kvx_node_stats_t st;
    kvx_client_xfer_h x;
    kvx_client_h p;
    uint32_t n = 99, i;
    world_t w;

    world_up(&w);
    p = attach(w.p_sock, "prefill-engine");
    CU_ASSERT_EQUAL(kvx_client_stats(p, &st), KVX_OK);
    CU_ASSERT_EQUAL(st.blocks_total, N_BLOCKS);
    CU_ASSERT_EQUAL(st.blocks_free, N_BLOCKS);
    CU_ASSERT(st.n_counters >= 1);
    CU_ASSERT_EQUAL(kvx_client_stats(p, NULL), KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_client_peers(p, NULL, 0, &n), KVX_OK);
    CU_ASSERT_EQUAL(n, 0);

    make_src(p, 5, NULL, src, 900);
    CU_ASSERT_EQUAL(kvx_client_stats(p, &st), KVX_OK);
    CU_ASSERT_EQUAL(st.blocks_free, N_BLOCKS - 5);
    CU_ASSERT_EQUAL_FATAL(push(p, w.d_addr, 91, src, 5, NULL, 0, &x), KVX_OK);
    CU_ASSERT_EQUAL(kvx_client_xfer_wait(x, WAIT_MS), KVX_OK);
    kvx_client_xfer_release(x);
    CU_ASSERT_EQUAL(kvx_client_stats(p, &st), KVX_OK);
    CU_ASSERT_EQUAL(st.transfers_ok, 1);
    CU_ASSERT_EQUAL(st.bytes_sent, 5 * 32768);

    CU_ASSERT_EQUAL(kvx_client_peers(p, NULL, 0, &n), KVX_OK);
    CU_ASSERT_EQUAL_FATAL(n, 1);
    CU_ASSERT_EQUAL(kvx_client_peers(p, peers, 4, &n), KVX_OK);
    CU_ASSERT_EQUAL_FATAL(n, 1);
    i = 0;
    CU_ASSERT_STRING_EQUAL(peers[i].addr, w.d_addr);
    CU_ASSERT_STRING_EQUAL(peers[i].node_id, "decode");
    CU_ASSERT_EQUAL(peers[i].status, KVX_OK);
    CU_ASSERT_EQUAL(peers[i].transport, KVX_TRANSPORT_AM);
    CU_ASSERT_EQUAL(peers[i].outgoing, 1);
    CU_ASSERT_EQUAL(kvx_client_peers(p, NULL, 1, &n), KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_client_peers(p, peers, 1, NULL), KVX_ERR_INVALID_PARAM);

    /* a later push reuses the connection, named by node id */
    CU_ASSERT_EQUAL_FATAL(push(p, "decode", 92, src, 5, NULL, 0, &x), KVX_OK);
    CU_ASSERT_EQUAL(kvx_client_xfer_wait(x, WAIT_MS), KVX_OK);
    kvx_client_xfer_release(x);
    CU_ASSERT_EQUAL(kvx_client_peers(p, peers, 4, &n), KVX_OK);
    CU_ASSERT_EQUAL(n, 1);
    release_all(p, src, 5);
    kvx_client_detach(p);
    world_down(&w);
}

/* ------------------------------------------------------------------------
 * Refusals.
 */

static void test_client_bad_input(void)
{
    kvx_xfer_params_t xp = {
        .field_mask =
            KVX_XFER_PARAM_FIELD_REQUEST_ID | KVX_XFER_PARAM_FIELD_BLOCKS,
        .request_id = 1,
        .n_blocks = 1,
    };
    kvx_pull_params_t lp = {
        .field_mask =
            KVX_PULL_PARAM_FIELD_REQUEST_ID | KVX_PULL_PARAM_FIELD_N_BLOCKS,
        .request_id = 1,
        .n_blocks = 1,
    };
    kvx_publish_params_t pp = {
        .field_mask =
            KVX_PUBLISH_PARAM_FIELD_REQUEST_ID | KVX_PUBLISH_PARAM_FIELD_BLOCKS,
        .request_id = 1,
        .n_blocks = 1,
    };
    kvx_block_ref_t refs[2], bogus = {.block = 5, .gen = 12345};
    kvx_block_key_t keys[2];
    kvx_lease_id_t lease;
    kvx_client_xfer_h x = NULL;
    kvx_node_stats_t st;
    kvx_ticket_t ticket;
    uint32_t n = 0, released = 99, prefix;
    kvx_client_h p;
    uint64_t ids;
    kvx_status_t s;
    world_t w;

    world_up(&w);
    p = attach(w.p_sock, "prefill-engine");
    make_keys(keys, 2, 10);
    xp.blocks = &bogus;
    pp.blocks = &bogus;
    ids = p->last_id;

    /* refused before anything is sent */
    CU_ASSERT_EQUAL(kvx_client_reserve(p, 0, NULL, 0, refs, NULL, &lease),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(
        kvx_client_reserve(p, (1u << 20) + 1, NULL, 0, refs, NULL, &lease),
        KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_client_reserve(p, 1, NULL, 0, NULL, NULL, &lease),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_client_reserve(p, 1, NULL, 0, refs, NULL, NULL),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_client_reserve(NULL, 1, NULL, 0, refs, NULL, &lease),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_client_seal(p, 0), KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_client_release(p, refs, 0, NULL),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_client_release(p, NULL, 1, NULL),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_client_lookup(p, keys, 0, &prefix),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_client_lookup(p, keys, 2, NULL), KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_client_recv(p, 1, 0, refs, 0, &n),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_client_recv(p, 1, 3600001, refs, 2, &n),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_client_push(p, NULL, &xp, &x), KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_client_push(p, "", &xp, &x), KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_client_push(p, w.d_addr, NULL, &x),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_client_push(p, w.d_addr, &xp, NULL),
                    KVX_ERR_INVALID_PARAM);
    xp.field_mask |= 1u << 20;
    CU_ASSERT_EQUAL(kvx_client_push(p, w.d_addr, &xp, &x),
                    KVX_ERR_INVALID_PARAM);
    xp.field_mask = KVX_XFER_PARAM_FIELD_BLOCKS;
    CU_ASSERT_EQUAL(kvx_client_push(p, w.d_addr, &xp, &x),
                    KVX_ERR_INVALID_PARAM);
    xp.field_mask = KVX_XFER_PARAM_FIELD_REQUEST_ID |
                    KVX_XFER_PARAM_FIELD_BLOCKS | KVX_XFER_PARAM_FIELD_FLAGS;
    xp.flags = 1u << 7;
    CU_ASSERT_EQUAL(kvx_client_push(p, w.d_addr, &xp, &x),
                    KVX_ERR_INVALID_PARAM);
    xp.flags = 0;
    xp.field_mask |= KVX_XFER_PARAM_FIELD_KEYS; /* keys NULL */
    CU_ASSERT_EQUAL(kvx_client_push(p, w.d_addr, &xp, &x),
                    KVX_ERR_INVALID_PARAM);
    xp.field_mask &= ~(uint64_t)KVX_XFER_PARAM_FIELD_KEYS;
    xp.n_blocks = 0;
    CU_ASSERT_EQUAL(kvx_client_push(p, w.d_addr, &xp, &x),
                    KVX_ERR_INVALID_PARAM);
    xp.n_blocks = 1;
    lp.n_blocks = 0;
    CU_ASSERT_EQUAL(kvx_client_pull(p, w.d_addr, &lp, &x),
                    KVX_ERR_INVALID_PARAM);
    lp.n_blocks = 1;
    lp.field_mask |= KVX_PULL_PARAM_FIELD_KEYS;
    CU_ASSERT_EQUAL(kvx_client_pull(p, w.d_addr, &lp, &x),
                    KVX_ERR_INVALID_PARAM);
    pp.field_mask |= KVX_PUBLISH_PARAM_FIELD_LEASE;
    pp.lease_ms = 3600001;
    CU_ASSERT_EQUAL(kvx_client_publish(p, &pp, NULL), KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_client_publish(p, NULL, NULL), KVX_ERR_INVALID_PARAM);
    pp.lease_ms = 0;
    CU_ASSERT_EQUAL(kvx_client_stats(NULL, &st), KVX_ERR_INVALID_PARAM);
    CU_ASSERT_PTR_NULL(x);
    CU_ASSERT_EQUAL(p->last_id, ids);

    /* refused by the node */
    CU_ASSERT_EQUAL(kvx_client_seal(p, 424242), KVX_ERR_STALE_HANDLE);
    CU_ASSERT_EQUAL(kvx_client_release(p, &bogus, 1, &released), KVX_OK);
    CU_ASSERT_EQUAL(released, 0);
    s = kvx_client_push(p, w.d_addr, &xp, &x);
    CU_ASSERT(s == KVX_ERR_STALE_HANDLE || s == KVX_ERR_BAD_STATE);
    CU_ASSERT_PTR_NULL(x);
    s = kvx_client_publish(p, &pp, &ticket);
    CU_ASSERT(s == KVX_ERR_STALE_HANDLE || s == KVX_ERR_BAD_STATE);
    CU_ASSERT_EQUAL(kvx_client_recv(p, 777, 0, refs, 2, &n), KVX_ERR_NOT_FOUND);
    /* holds of another session are not ours to push or release */
    {
        kvx_client_h q = attach(w.p_sock, "other-engine");

        make_src(q, 1, NULL, refs, 1000);
        xp.blocks = refs;
        s = kvx_client_push(p, w.d_addr, &xp, &x);
        CU_ASSERT(s == KVX_ERR_STALE_HANDLE || s == KVX_ERR_BAD_STATE);
        CU_ASSERT_EQUAL(kvx_client_release(p, refs, 1, &released), KVX_OK);
        CU_ASSERT_EQUAL(released, 0);
        CU_ASSERT_EQUAL(blocks_free(p), N_BLOCKS - 1);
        kvx_client_detach(q);
    }
    CU_ASSERT_EQUAL(wait_free(p, N_BLOCKS), N_BLOCKS);
    kvx_client_detach(p);
    world_down(&w);
}

static void test_client_no_space(void)
{
    static kvx_block_ref_t refs[N_BLOCKS + 1];
    kvx_lease_id_t lease = 0, lease2 = 77;
    kvx_client_h p;
    world_t w;

    world_up(&w);
    p = attach(w.p_sock, "prefill-engine");
    CU_ASSERT_EQUAL(
        kvx_client_reserve(p, N_BLOCKS + 1, NULL, 0, refs, NULL, &lease2),
        KVX_ERR_NO_SPACE);
    CU_ASSERT_EQUAL(lease2, 77);
    CU_ASSERT_EQUAL(blocks_free(p), N_BLOCKS);
    CU_ASSERT_EQUAL_FATAL(
        kvx_client_reserve(p, N_BLOCKS - 4, NULL, 0, refs, NULL, &lease),
        KVX_OK);
    CU_ASSERT_EQUAL(kvx_client_reserve(p, 5, NULL, 0, refs + 60, NULL, &lease2),
                    KVX_ERR_NO_SPACE);
    CU_ASSERT_EQUAL(blocks_free(p), 4);
    CU_ASSERT_EQUAL(kvx_client_seal(p, lease), KVX_OK);
    CU_ASSERT_EQUAL(kvx_client_seal(p, lease), KVX_ERR_STALE_HANDLE);
    release_all(p, refs, N_BLOCKS - 4);
    CU_ASSERT_EQUAL(blocks_free(p), N_BLOCKS);
    kvx_client_detach(p);
    world_down(&w);
}

static void test_client_recv_no_space(void)
{
    kvx_block_ref_t src[4], dst[4];
    kvx_client_xfer_h x;
    kvx_client_h p, d;
    uint32_t n = 0;
    world_t w;

    world_up(&w);
    p = attach(w.p_sock, "prefill-engine");
    d = attach(w.d_sock, "decode-engine");
    make_src(p, 4, NULL, src, 1100);
    CU_ASSERT_EQUAL_FATAL(push(p, w.d_addr, 111, src, 4, NULL, 0, &x), KVX_OK);
    CU_ASSERT_EQUAL(kvx_client_xfer_wait(x, WAIT_MS), KVX_OK);
    kvx_client_xfer_release(x);
    CU_ASSERT_EQUAL(kvx_client_recv(d, 111, WAIT_MS, dst, 2, &n),
                    KVX_ERR_NO_SPACE);
    CU_ASSERT_EQUAL(n, 4);
    CU_ASSERT_EQUAL(kvx_client_recv(d, 111, 0, dst, 4, &n), KVX_OK);
    CU_ASSERT_EQUAL(n, 4);
    CU_ASSERT_EQUAL(check(d, dst, 4, 1100), 0);
    release_all(d, dst, 4);
    release_all(p, src, 4);
    kvx_client_detach(d);
    kvx_client_detach(p);
    world_down(&w);
}

/* ------------------------------------------------------------------------
 * Sessions ending.
 */

static void test_client_detach_drops_holds(void)
{
    kvx_block_ref_t a[8], b[4];
    kvx_lease_id_t lease;
    kvx_client_h obs, c;
    world_t w;

    world_up(&w);
    obs = attach(w.p_sock, "observer");
    c = attach(w.p_sock, "leaver");
    make_src(c, 8, NULL, a, 1200);
    CU_ASSERT_EQUAL(kvx_client_reserve(c, 4, NULL, 0, b, NULL, &lease),
                    KVX_OK); /* reserved, never sealed */
    CU_ASSERT_EQUAL(blocks_free(obs), N_BLOCKS - 12);
    kvx_client_detach(c);
    CU_ASSERT_EQUAL(wait_free(obs, N_BLOCKS), N_BLOCKS);
    kvx_client_detach(obs);
    world_down(&w);
}

/* A child process attaches, holds blocks and dies without detaching. */
static void test_client_process_exit(void)
{
    int up[2], down[2], status = -1;
    kvx_client_h obs;
    char byte = 0;
    pid_t pid;
    world_t w;

    world_up(&w);
    obs = attach(w.p_sock, "observer");
    CU_ASSERT_EQUAL_FATAL(pipe(up), 0);
    CU_ASSERT_EQUAL_FATAL(pipe(down), 0);
    fflush(NULL);
    pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        kvx_block_ref_t refs[6];
        kvx_lease_id_t lease;
        kvx_client_h c = NULL;
        char ok = 'x';

        if (kvx_client_attach(w.p_sock, NULL, &c) != KVX_OK ||
            kvx_client_reserve(c, 6, NULL, 0, refs, NULL, &lease) != KVX_OK ||
            kvx_client_seal(c, lease) != KVX_OK) {
            ok = 'f';
        }
        if (write(up[1], &ok, 1) != 1 || read(down[0], &ok, 1) != 1) {
            _exit(2);
        }
        _exit(ok == 'g' ? 0 : 1); /* no detach */
    }
    close(up[1]);
    close(down[0]);
    CU_ASSERT_EQUAL(read(up[0], &byte, 1), 1);
    CU_ASSERT_EQUAL(byte, 'x');
    CU_ASSERT_EQUAL(blocks_free(obs), N_BLOCKS - 6);
    byte = 'g';
    CU_ASSERT_EQUAL(write(down[1], &byte, 1), 1);
    CU_ASSERT_EQUAL(waitpid(pid, &status, 0), pid);
    CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CU_ASSERT_EQUAL(wait_free(obs, N_BLOCKS), N_BLOCKS);
    close(up[0]);
    close(down[1]);
    kvx_client_detach(obs);
    world_down(&w);
}

/* The node goes away under attached engines: one waiting for a transfer
 * (it reads the end of the stream), one whose next call sends first (EPIPE:
 * must not raise SIGPIPE). */
static void test_client_node_destroyed(void)
{
    kvx_block_ref_t src[2], refs[2];
    kvx_client_xfer_h x, y;
    kvx_lease_id_t lease;
    kvx_node_stats_t st;
    kvx_client_h p, q;
    kvx_status_t s;
    uint32_t n;
    world_t w;

    world_up(&w);
    p = attach(w.p_sock, "prefill-engine");
    q = attach(w.p_sock, "second-engine");
    make_src(p, 2, NULL, src, 1300);
    CU_ASSERT_EQUAL_FATAL(
        push(p, w.d_addr, 131, src, 2, NULL, KVX_XFER_FLAG_LAYERWISE, &x),
        KVX_OK);
    CU_ASSERT_EQUAL(kvx_client_xfer_test(x), KVX_INPROGRESS);
    world_stop(&w);
    kvx_node_destroy(w.p);
    w.p = NULL;
    world_start(&w);

    CU_ASSERT_EQUAL(kvx_client_stats(q, &st), KVX_ERR_PEER_DOWN);
    CU_ASSERT_EQUAL(kvx_client_stats(q, &st), KVX_ERR_PEER_DOWN);
    kvx_client_detach(q);

    /* the running transfer ends with the session, every call says the
     * node is gone */
    s = kvx_client_xfer_wait(x, WAIT_MS);
    CU_ASSERT_EQUAL(s, KVX_ERR_PEER_DOWN);
    CU_ASSERT_EQUAL(kvx_client_stats(p, &st), KVX_ERR_PEER_DOWN);
    CU_ASSERT_EQUAL(kvx_client_reserve(p, 1, NULL, 0, refs, NULL, &lease),
                    KVX_ERR_PEER_DOWN);
    CU_ASSERT_EQUAL(kvx_client_recv(p, 1, 0, refs, 2, &n), KVX_ERR_PEER_DOWN);
    CU_ASSERT_EQUAL(kvx_client_release(p, src, 2, NULL), KVX_ERR_PEER_DOWN);
    CU_ASSERT_EQUAL(kvx_client_xfer_abort(x), KVX_ERR_BAD_STATE);
    CU_ASSERT_EQUAL(push(p, w.d_addr, 132, src, 2, NULL, 0, &y),
                    KVX_ERR_PEER_DOWN);
    /* the mapping stays readable until detach */
    CU_ASSERT_EQUAL(check(p, src, 2, 1300), 0);
    kvx_client_detach(p); /* frees the transfer handle too */
    world_down(&w);
}

static const ut_test_t attach_tests[] = {
    UT_TEST(test_client_attach_detach),
    UT_TEST(test_client_attach_missing),
    UT_TEST(test_client_fake_refusals),
    UT_TEST(test_client_fake_session),
    UT_END,
};

static const ut_test_t xfer_tests[] = {
    UT_TEST(test_client_push_recv),        UT_TEST(test_client_push_dedupe),
    UT_TEST(test_client_push_layerwise),   UT_TEST(test_client_push_checksum),
    UT_TEST(test_client_push_unreachable), UT_TEST(test_client_xfer_abort),
    UT_TEST(test_client_publish_pull),     UT_END,
};

static const ut_test_t query_tests[] = {
    UT_TEST(test_client_lookup),
    UT_TEST(test_client_stats_peers),
    UT_END,
};

static const ut_test_t refusal_tests[] = {
    UT_TEST(test_client_bad_input),
    UT_TEST(test_client_no_space),
    UT_TEST(test_client_recv_no_space),
    UT_END,
};

static const ut_test_t session_tests[] = {
    UT_TEST(test_client_detach_drops_holds),
    UT_TEST(test_client_process_exit),
    UT_TEST(test_client_node_destroyed),
    UT_END,
};

int main(void)
{
    static const ut_suite_t suites[] = {
        {"attach", attach_tests},   {"xfer", xfer_tests},
        {"query", query_tests},     {"refusal", refusal_tests},
        {"session", session_tests}, {NULL, NULL},
    };

    setenv("UCX_MEM_MALLOC_HOOKS", "no", 0);
    setenv("UCX_MEM_MMAP_HOOK_MODE", "none", 0);
    if (!nut_init()) {
        return 77;
    }
    return ut_main(suites);
}
