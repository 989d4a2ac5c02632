/*
 * The raw-session harness of engine_ut.h.
 */
#include "engine_ut.h"

#include <errno.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

char eut_sock_path[96];
kvx_node_h eut_drive_a, eut_drive_b;

static const nut_opts_t tcp_opts = {.tls = NUT_TLS_TCP};

int eut_main(const ut_suite_t *suites)
{
    char dir[64];
    int rc;

    if (!nut_init()) {
        return 77;
    }
    snprintf(dir, sizeof(dir), "/tmp/kvx-engine-XXXXXX");
    if (mkdtemp(dir) == NULL) {
        return 1;
    }
    snprintf(eut_sock_path, sizeof(eut_sock_path), "%s/engine.sock", dir);
    rc = ut_main(suites);
    unlink(eut_sock_path);
    rmdir(dir);
    return rc;
}

static void drive(void)
{
    if (eut_drive_b != NULL) {
        kvx_node_progress(eut_drive_b, 0);
    }
    kvx_node_progress(eut_drive_a, 1);
}

kvx_node_h eut_node(int listen)
{
    kvx_layout_params_t lp = nut_layout(EUT_BLOCKS);
    kvx_node_params_t np = {
        .field_mask =
            KVX_NODE_PARAM_FIELD_NODE_ID | KVX_NODE_PARAM_FIELD_LAYOUT |
            KVX_NODE_PARAM_FIELD_UCX_TLS | KVX_NODE_PARAM_FIELD_ENGINE_SOCKET,
        .node_id = "a",
        .layout = &lp,
        .ucx_tls = NUT_TLS_TCP,
        .engine_socket = eut_sock_path,
    };
    kvx_node_h node = NULL;

    if (listen) {
        np.field_mask |= KVX_NODE_PARAM_FIELD_LISTEN;
        np.listen = "127.0.0.1:0";
    }
    eut_drive_a = NULL;
    eut_drive_b = NULL;
    CU_ASSERT_EQUAL_FATAL(kvx_node_create(&np, &node), KVX_OK);
    eut_drive_a = node;
    return node;
}

kvx_status_t eut_peer(const char *id, int listen, kvx_node_h *node_p)
{
    return nut_node(id, &tcp_opts, listen, node_p);
}

kvx_alloc_attr_t eut_alloc(kvx_node_h node)
{
    kvx_alloc_attr_t a;

    kvx_alloc_query(kvx_node_alloc(node), &a);
    return a;
}

kvx_alloc_attr_t eut_wait_idle(kvx_node_h node, uint32_t ms, uint32_t tick_ms)
{
    uint64_t end = kvx_clock_monotonic_ns(NULL) + ms * 1000000ull;
    kvx_alloc_attr_t a;

    for (;;) {
        a = eut_alloc(node);
        if (a.n_free + a.n_cached == EUT_BLOCKS ||
            kvx_clock_monotonic_ns(NULL) >= end) {
            return a;
        }
        kvx_node_progress(node, tick_ms);
    }
}

kvx_alloc_attr_t eut_wait_fenced(kvx_node_h node, uint32_t leases, uint32_t ms)
{
    uint64_t end = kvx_clock_monotonic_ns(NULL) + ms * 1000000ull;
    kvx_alloc_attr_t a;

    for (;;) {
        a = eut_alloc(node);
        if (a.leases_fenced == leases || kvx_clock_monotonic_ns(NULL) >= end) {
            CU_ASSERT_EQUAL(a.leases_fenced, leases);
            return a;
        }
        kvx_node_progress(node, 10);
    }
}

uint64_t eut_block_off(kvx_node_h node, uint32_t block)
{
    kvx_pool_attr_t pa;

    kvx_pool_query(kvx_node_pool(node), &pa);
    return (
        uint64_t)((uint8_t *)kvx_pool_block_addr(kvx_node_pool(node), block) -
                  (uint8_t *)pa.base);
}

/* ------------------------------------------------------------------------
 * A raw client.
 */

tc_t *tc_open(void)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    tc_t *c = calloc(1, sizeof(*c));

    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    c->got_fd = -1;
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", eut_sock_path);
    CU_ASSERT_EQUAL_FATAL(connect(c->fd, (struct sockaddr *)&sun, sizeof(sun)),
                          0);
    return c;
}

void tc_close(tc_t *c)
{
    if (c->got_fd >= 0) {
        close(c->got_fd);
    }
    close(c->fd);
    free(c);
}

void tc_write(tc_t *c, const void *p, size_t len)
{
    uint64_t end = kvx_clock_monotonic_ns(NULL) + TC_WAIT_MS * 1000000ull;

    while (len > 0 && kvx_clock_monotonic_ns(NULL) < end) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);

        if (n > 0) {
            p = (const uint8_t *)p + n;
            len -= (size_t)n;
        } else {
            drive();
        }
    }
    CU_ASSERT_EQUAL(len, 0);
}

uint64_t tc_send(tc_t *c, kvxi_envelope_t *env)
{
    size_t size, len = 0;
    uint8_t *buf;

    if (env->version == 0) {
        env->version = 1;
    }
    if (env->request_id == 0) {
        env->request_id = ++c->next_id;
    }
    size = kvxi_frame_size(env);
    buf = malloc(size);
    CU_ASSERT_EQUAL_FATAL(kvxi_frame_encode(env, buf, size, &len), KVX_OK);
    tc_write(c, buf, len);
    free(buf);
    return env->request_id;
}

ssize_t eut_recv_fd(int fd, void *buf, size_t len, int flags, int *got_fd_p)
{
    union {
        struct cmsghdr h;
        char b[CMSG_SPACE(sizeof(int))];
    } ctl;
    struct iovec iov = {buf, len};
    struct msghdr msg = {.msg_iov = &iov,
                         .msg_iovlen = 1,
                         .msg_control = ctl.b,
                         .msg_controllen = sizeof(ctl.b)};
    ssize_t n = recvmsg(fd, &msg, flags | MSG_CMSG_CLOEXEC);

    if (n > 0) {
        struct cmsghdr *h = CMSG_FIRSTHDR(&msg);

        if (h != NULL && h->cmsg_type == SCM_RIGHTS) {
            memcpy(got_fd_p, CMSG_DATA(h), sizeof(int));
        }
    }
    return n;
}

kvx_status_t tc_recv(tc_t *c, uint32_t ms, kvxi_envelope_t **env_p)
{
    uint64_t end = kvx_clock_monotonic_ns(NULL) + ms * 1000000ull;

    for (;;) {
        size_t used = 0;
        ssize_t n;

        if (kvxi_frame_decode(c->buf, c->len, 0, env_p, &used) == KVX_OK) {
            memmove(c->buf, c->buf + used, c->len - used);
            c->len -= used;
            return KVX_OK;
        }
        n = eut_recv_fd(c->fd, c->buf + c->len, sizeof(c->buf) - c->len,
                        MSG_DONTWAIT, &c->got_fd);
        if (n == 0) {
            return KVX_ERR_PEER_DOWN;
        }
        if (n > 0) {
            c->len += (size_t)n;
            continue;
        }
        if (errno != EAGAIN || kvx_clock_monotonic_ns(NULL) >= end) {
            return errno == EAGAIN ? KVX_ERR_TIMEOUT : KVX_ERR_PEER_DOWN;
        }
        drive();
    }
}

kvxi_envelope_t *tc_expect(tc_t *c, Kvx__V1__Envelope__BodyCase body)
{
    kvxi_envelope_t *env = NULL;

    CU_ASSERT_EQUAL(tc_recv(c, TC_WAIT_MS, &env), KVX_OK);
    if (env != NULL && env->body_case != body) {
        fprintf(stderr, "expected body %d, got %s\n", (int)body,
                kvxi_envelope_body_name(env));
        kvxi_frame_free(env);
        env = NULL;
    }
    CU_ASSERT_PTR_NOT_NULL(env);
    return env;
}

kvxi_envelope_t *tc_reply(tc_t *c, uint64_t id,
                          Kvx__V1__Envelope__BodyCase body)
{
    kvxi_envelope_t *r = tc_expect(c, body);

    CU_ASSERT(r == NULL || r->request_id == id);
    return r;
}

kvxi_envelope_t *tc_call(tc_t *c, kvxi_envelope_t *env,
                         Kvx__V1__Envelope__BodyCase body)
{
    return tc_reply(c, tc_send(c, env), body);
}

void tc_expect_error_eof(tc_t *c, kvx_status_t code)
{
    kvxi_envelope_t *env = tc_expect(c, B(ERROR));

    if (env != NULL) {
        CU_ASSERT_EQUAL(env->error->code, WIRE(code));
        kvxi_frame_free(env);
    }
    CU_ASSERT_EQUAL(tc_recv(c, TC_WAIT_MS, &env), KVX_ERR_PEER_DOWN);
}

void tc_expect_done(tc_t *c, kvx_status_t st)
{
    kvxi_envelope_t *r = tc_expect(c, B(XFER_DONE));

    CU_ASSERT(r != NULL && r->xfer_done->status == WIRE(st));
    kvxi_frame_free(r);
}

void tc_send_attach(tc_t *c, uint32_t min, uint32_t max)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT;
    Kvx__V1__Attach a = KVX__V1__ATTACH__INIT;

    a.min_version = min;
    a.max_version = max;
    a.client_name = (char *)"unit\ttest";
    env.version = max;
    env.body_case = B(ATTACH);
    env.attach = &a;
    tc_send(c, &env);
}

kvxi_envelope_t *tc_attach_v(tc_t *c, uint32_t min, uint32_t max)
{
    tc_send_attach(c, min, max);
    return tc_expect(c, B(ATTACH_REPLY));
}

tc_t *tc_attached(void)
{
    tc_t *c = tc_open();
    kvxi_envelope_t *r = tc_attach_v(c, 1, 1);

    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL(r->attach_reply->status, WIRE(KVX_OK));
    kvxi_frame_free(r);
    return c;
}

tc_t *eut_session(kvx_node_h *node_p)
{
    *node_p = eut_node(0);
    return tc_attached();
}

void eut_end(tc_t *c, kvx_node_h node)
{
    tc_close(c);
    kvx_node_destroy(node);
}

uint8_t *tc_map(tc_t *c, kvx_node_h node, size_t *len_p)
{
    kvx_pool_attr_t pa;
    uint8_t *map;

    kvx_pool_query(kvx_node_pool(node), &pa);
    CU_ASSERT_FATAL(c->got_fd >= 0);
    map =
        mmap(NULL, pa.length, PROT_READ | PROT_WRITE, MAP_SHARED, c->got_fd, 0);
    CU_ASSERT_FATAL(map != MAP_FAILED);
    *len_p = pa.length;
    return map;
}

void refs_to_wire(Kvx__V1__BlockRefs *w, uint32_t *buf,
                  const kvx_block_ref_t *refs, uint32_t n)
{
    kvx__v1__block_refs__init(w);
    for (uint32_t i = 0; i < n; i++) {
        buf[i] = refs[i].block;
        buf[n + i] = refs[i].gen;
    }
    w->n_blocks = w->n_gens = n;
    w->blocks = buf;
    w->gens = buf + n;
}

void refs_from_wire(kvx_block_ref_t *refs, const Kvx__V1__BlockRefs *w,
                    uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        refs[i].block = w->blocks[i];
        refs[i].gen = w->gens[i];
    }
}

/* ------------------------------------------------------------------------
 * Requests.
 */

kvxi_envelope_t *tc_reserve_req(tc_t *c, uint32_t n,
                                const kvx_block_key_t *keys, uint32_t lease_ms)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT;
    Kvx__V1__Reserve rq = KVX__V1__RESERVE__INIT;

    rq.block_count = n;
    rq.lease_ms = lease_ms;
    if (keys != NULL) {
        rq.keys.data = (uint8_t *)keys;
        rq.keys.len = (size_t)n * 16;
    }
    env.body_case = B(RESERVE);
    env.reserve = &rq;
    return tc_call(c, &env, B(RESERVE_REPLY));
}

kvx_lease_id_t tc_reserve(tc_t *c, uint32_t n, const kvx_block_key_t *keys,
                          kvx_block_ref_t *refs, uint8_t *mask)
{
    kvxi_envelope_t *r = tc_reserve_req(c, n, keys, 0);
    kvx_lease_id_t lease;

    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL_FATAL(r->reserve_reply->status, WIRE(KVX_OK));
    refs_from_wire(refs, r->reserve_reply->blocks, n);
    if (mask != NULL) {
        memcpy(mask, r->reserve_reply->hit_mask.data,
               r->reserve_reply->hit_mask.len);
    }
    lease = r->reserve_reply->lease_id;
    kvxi_frame_free(r);
    return lease;
}

kvx_status_t tc_result(tc_t *c, kvxi_envelope_t *env, uint64_t *xid_p)
{
    kvxi_envelope_t *r = tc_call(c, env, B(RESULT));
    kvx_status_t st;

    if (r == NULL) {
        return KVX_ERR_IO;
    }
    st = kvxi_status_from_wire(r->result->status);
    if (xid_p != NULL) {
        *xid_p = r->result->xfer_id;
    }
    kvxi_frame_free(r);
    return st;
}

kvx_status_t tc_seal(tc_t *c, kvx_lease_id_t lease)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT;
    Kvx__V1__Seal s = KVX__V1__SEAL__INIT;

    s.lease_id = lease;
    env.body_case = B(SEAL);
    env.seal = &s;
    return tc_result(c, &env, NULL);
}

void tc_reserve_sealed(tc_t *c, uint32_t n, const kvx_block_key_t *keys,
                       kvx_block_ref_t *refs)
{
    CU_ASSERT_EQUAL(tc_seal(c, tc_reserve(c, n, keys, refs, NULL)), KVX_OK);
}

uint32_t tc_release(tc_t *c, const kvx_block_ref_t *refs, uint32_t n)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT, *r;
    Kvx__V1__Release rl = KVX__V1__RELEASE__INIT;
    Kvx__V1__BlockRefs w;
    uint32_t buf[64], released = UINT32_MAX;

    refs_to_wire(&w, buf, refs, n);
    rl.blocks = &w;
    env.body_case = B(RELEASE);
    env.release = &rl;
    r = tc_call(c, &env, B(RELEASE_ACK));
    if (r != NULL) {
        CU_ASSERT_EQUAL(r->release_ack->status, WIRE(KVX_OK));
        released = r->release_ack->released;
        kvxi_frame_free(r);
    }
    return released;
}

uint64_t tc_send_stats(tc_t *c)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT;
    Kvx__V1__Stats st = KVX__V1__STATS__INIT;

    env.body_case = B(STATS);
    env.stats = &st;
    return tc_send(c, &env);
}

kvxi_envelope_t *tc_stats(tc_t *c)
{
    return tc_reply(c, tc_send_stats(c), B(STATS_REPLY));
}

kvxi_envelope_t *tc_peer_list(tc_t *c)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT;
    Kvx__V1__PeerList pl = KVX__V1__PEER_LIST__INIT;

    env.body_case = B(PEER_LIST);
    env.peer_list = &pl;
    return tc_call(c, &env, B(PEER_LIST_REPLY));
}

kvx_status_t tc_push(tc_t *c, const char *peer, uint64_t request_id,
                     const kvx_block_ref_t *refs, uint32_t n, uint64_t *xid_p)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT;
    Kvx__V1__PushStart ps = KVX__V1__PUSH_START__INIT;
    Kvx__V1__BlockRefs w;
    uint32_t buf[64];

    refs_to_wire(&w, buf, refs, n);
    ps.peer = (char *)peer;
    ps.request_id = request_id;
    ps.blocks = &w;
    env.body_case = B(PUSH_START);
    env.push_start = &ps;
    return tc_result(c, &env, xid_p);
}

kvx_status_t tc_publish(tc_t *c, uint64_t request_id,
                        const kvx_block_ref_t *refs, uint32_t n)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT;
    Kvx__V1__PublishStart ps = KVX__V1__PUBLISH_START__INIT;
    Kvx__V1__BlockRefs w;
    uint32_t buf[64];

    refs_to_wire(&w, buf, refs, n);
    ps.request_id = request_id;
    ps.blocks = &w;
    env.body_case = B(PUBLISH_START);
    env.publish_start = &ps;
    return tc_result(c, &env, NULL);
}

kvx_status_t tc_abort(tc_t *c, uint64_t xid, kvx_status_t reason)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT;
    Kvx__V1__Abort ab = KVX__V1__ABORT__INIT;

    ab.transfer_id = xid;
    ab.reason = WIRE(reason);
    env.body_case = B(ABORT);
    env.abort = &ab;
    return tc_result(c, &env, NULL);
}

void tc_send_recv(tc_t *c, uint64_t request_id, uint32_t ms)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT;
    Kvx__V1__Recv rv = KVX__V1__RECV__INIT;

    rv.request_id = request_id;
    rv.max_blocks = 8;
    rv.timeout_ms = ms;
    env.body_case = B(RECV);
    env.recv = &rv;
    tc_send(c, &env);
}
