/*
 * Unit tests for libkvx/client_io.c: attaching over a node's unix socket
 * (the memfd mapped, bad arguments, nobody listening), then a scripted fake
 * node for what a real node never does to the frame I/O and the reply
 * dispatch. Exit 77 if UCX cannot start.
 */
#include "client_ut.h"

#include "handshake_int.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>

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
    cut_world_t w;
    uint8_t *node_b;

    cut_up(&w, NULL, NULL);
    c = cut_attach(w.p_sock, "attach-test");
    l = kvx_client_layout(c);
    CU_ASSERT_PTR_NOT_NULL_FATAL(l);
    CU_ASSERT_EQUAL(l->num_layers, 4);
    CU_ASSERT_EQUAL(l->num_blocks, CUT_N_BLOCKS);
    CU_ASSERT_EQUAL(l->block_bytes, CUT_BLOCK_BYTES);
    CU_ASSERT_STRING_EQUAL(kvx_client_node_id(c), "prefill");
    CU_ASSERT_STRING_EQUAL(c->listen_addr, w.p_addr);
    CU_ASSERT_PTR_NOT_NULL(kvx_client_block_addr(c, 0));
    CU_ASSERT_PTR_NOT_NULL(kvx_client_block_addr(c, CUT_N_BLOCKS - 1));
    CU_ASSERT_PTR_NULL(kvx_client_block_addr(c, CUT_N_BLOCKS));
    CU_ASSERT_PTR_NULL(kvx_client_block_addr(NULL, 0));
    CU_ASSERT(c->map_bytes >= (size_t)CUT_N_BLOCKS * l->block_bytes);
    CU_ASSERT((uint8_t *)kvx_client_block_addr(c, CUT_N_BLOCKS - 1) +
                  l->block_bytes <=
              (uint8_t *)c->base + c->map_bytes);

    /* what the engine writes is in the node's pool */
    CU_ASSERT_EQUAL_FATAL(kvx_client_reserve(c, 1, NULL, 0, &ref, NULL, &lease),
                          KVX_OK);
    cut_fill(c, &ref, 1, 7);
    CU_ASSERT_EQUAL(kvx_client_seal(c, lease), KVX_OK);
    cut_stop(&w);
    node_b = kvx_pool_block_addr(w.p_pool, ref.block);
    CU_ASSERT_PTR_NOT_NULL_FATAL(node_b);
    CU_ASSERT_EQUAL(
        memcmp(node_b, kvx_client_block_addr(c, ref.block), l->block_bytes), 0);
    node_b[5] ^= 0xff; /* and the other way round */
    CU_ASSERT_EQUAL(cut_check(c, &ref, 1, 7), 1);
    cut_start(&w);

    /* a second engine, "unix:" prefix and default params */
    snprintf(path, sizeof(path), "unix:%s", w.p_sock);
    CU_ASSERT_EQUAL_FATAL(kvx_client_attach(path, NULL, &c2), KVX_OK);
    CU_ASSERT_EQUAL(cut_check(c2, &ref, 1, 7), 1);
    kvx_client_detach(c2);

    /* bad arguments: nothing attached, nothing written */
    c2 = (kvx_client_h)0x1;
    CUT_INVALID(kvx_client_attach(NULL, NULL, &c2));
    CUT_INVALID(kvx_client_attach(w.p_sock, NULL, NULL));
    CUT_INVALID(kvx_client_attach("", NULL, &c2));
    CUT_INVALID(kvx_client_attach("unix:", NULL, &c2));
    memset(path, 'a', sizeof(path));
    path[0] = '/';
    path[KVXI_CLIENT_PATH_MAX + 1] = '\0';
    CUT_INVALID(kvx_client_attach(path, NULL, &c2));
    cp.field_mask = 1u << 20;
    CUT_INVALID(kvx_client_attach(w.p_sock, &cp, &c2));
    memset(name, 'n', sizeof(name));
    name[KVXI_NAME_MAX + 1] = '\0';
    cp.field_mask = KVX_CLIENT_PARAM_FIELD_NAME;
    cp.name = name;
    CUT_INVALID(kvx_client_attach(w.p_sock, &cp, &c2));
    CU_ASSERT_EQUAL(c2, (kvx_client_h)0x1);
    name[KVXI_NAME_MAX] = '\0'; /* 256 bytes: allowed */
    cp.field_mask |= KVX_CLIENT_PARAM_FIELD_TIMEOUT;
    cp.timeout_ms = 5000;
    CU_ASSERT_EQUAL(kvx_client_attach(w.p_sock, &cp, &c2), KVX_OK);
    CU_ASSERT_EQUAL(c2->timeout_ms, 5000);
    kvx_client_detach(c2);

    cut_release_all(c, &ref, 1);
    kvx_client_detach(c);
    kvx_client_detach(NULL);
    cut_down(&w);
}

static void test_client_attach_missing(void)
{
    kvx_client_h c = (kvx_client_h)0x1;
    char path[128];
    cut_world_t w;
    FILE *f;

    cut_up(&w, NULL, NULL);
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
    cut_down(&w);
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
    /* the session being served */
    int fd;
    uint8_t buf[65536];
    size_t len;
} fake_t;

static int fake_read(fake_t *f, kvxi_envelope_t **env)
{
    for (;;) {
        size_t used;
        ssize_t n;

        if (kvxi_frame_decode(f->buf, f->len, 0, env, &used) == KVX_OK) {
            f->len -= used;
            memmove(f->buf, f->buf + used, f->len);
            return 0;
        }
        n = read(f->fd, f->buf + f->len, sizeof(f->buf) - f->len);
        if (n <= 0) {
            return -1;
        }
        f->len += (size_t)n;
    }
}

/* Reads the next frame into @p env: 0 when its body is @p body, else -1
 * with the fake marked failed. */
static int fake_expect(fake_t *f, Kvx__V1__Envelope__BodyCase body,
                       kvxi_envelope_t **env)
{
    if (fake_read(f, env) != 0) {
        atomic_store(&f->failed, 1);
        return -1;
    }
    if ((*env)->body_case != body) {
        kvxi_frame_free(*env);
        atomic_store(&f->failed, 1);
        return -1;
    }
    return 0;
}

/* Waits for the client to close the session (a frame instead: failed). */
static void fake_expect_eof(fake_t *f)
{
    kvxi_envelope_t *env = NULL;

    if (fake_read(f, &env) == 0) {
        kvxi_frame_free(env);
        atomic_store(&f->failed, 1);
    }
}

static void fake_send(fake_t *f, kvxi_envelope_t *env, const int *fds, int nfds)
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
    CU_ASSERT_EQUAL(sendmsg(f->fd, &msg, MSG_NOSIGNAL), (ssize_t)len);
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
static void fake_session(fake_t *f)
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
    if (fake_expect(f, KVX__V1__ENVELOPE__BODY_PUSH_START, &env) != 0) {
        return;
    }
    res.status = KVX__V1__STATUS__STATUS_OK;
    res.xfer_id = 9;
    out.request_id = env->request_id;
    out.body_case = KVX__V1__ENVELOPE__BODY_RESULT;
    out.result = &res;
    kvxi_frame_free(env);
    fake_send(f, &out, NULL, 0);

    /* Stats -> XferDone (with the same envelope id), a stray Result, then
     * StatsReply */
    if (fake_expect(f, KVX__V1__ENVELOPE__BODY_STATS, &env) != 0) {
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
    fake_send(f, &out, NULL, 0);
    done.xfer_id = 77; /* unknown transfer: ignored */
    fake_send(f, &out, NULL, 0);
    out.request_id = 999;
    out.body_case = KVX__V1__ENVELOPE__BODY_RESULT;
    out.result = &res;
    fake_send(f, &out, NULL, 0);
    st.blocks_total = 1234;
    out.request_id = id;
    out.body_case = KVX__V1__ENVELOPE__BODY_STATS_REPLY;
    out.stats_reply = &st;
    fake_send(f, &out, NULL, 0);

    /* Reserve(2) -> a ReserveReply for 1 block: the client closes */
    if (fake_expect(f, KVX__V1__ENVELOPE__BODY_RESERVE, &env) != 0) {
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
    fake_send(f, &out, NULL, 0);
    fake_expect_eof(f);
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
    int fds[2] = {-1, -1}, nfds = 1;

    f->fd = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);
    if (f->fd < 0) {
        atomic_store(&f->failed, 1);
        return NULL;
    }
    if (fake_expect(f, KVX__V1__ENVELOPE__BODY_ATTACH, &env) != 0) {
        env = NULL;
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
        CU_ASSERT_EQUAL(write(f->fd, garbage, sizeof(garbage)), 4);
    } else if (f->script != FAKE_SILENT) {
        fake_send(f, &out, fds, nfds);
    }
    if (f->script == FAKE_OK) {
        fake_session(f);
    } else {
        fake_expect_eof(f); /* the client gives up */
    }
out:
    kvxi_frame_free(env);
    for (int i = 0; i < 2; i++) {
        if (fds[i] >= 0) {
            close(fds[i]);
        }
    }
    close(f->fd);
    return NULL;
}

static void fake_start(fake_t *f, enum fake_script script)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};

    memset(f, 0, sizeof(*f));
    f->script = script;
    f->fd = -1;
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
    fake_t f;
    kvx_status_t s;

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
    fake_t f;
    kvx_client_h c;

    fake_start(&f, FAKE_OK);
    CU_ASSERT_EQUAL_FATAL(kvx_client_attach(f.path, NULL, &c), KVX_OK);
    CU_ASSERT_STRING_EQUAL(kvx_client_node_id(c), "fake");
    CU_ASSERT_EQUAL(kvx_client_layout(c)->num_blocks, 8);
    CU_ASSERT_EQUAL_FATAL(cut_push(c, "somewhere:1", 5, refs, 2, NULL, 0, &x),
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

static const ut_test_t attach_tests[] = {
    UT_TEST(test_client_attach_detach),
    UT_TEST(test_client_attach_missing),
    UT_END,
};

static const ut_test_t fake_tests[] = {
    UT_TEST(test_client_fake_refusals),
    UT_TEST(test_client_fake_session),
    UT_END,
};

int main(void)
{
    static const ut_suite_t suites[] = {
        {"attach", attach_tests},
        {"fake_node", fake_tests},
        {NULL, NULL},
    };

    return cut_main(suites);
}
