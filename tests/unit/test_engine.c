/*
 * Unit tests for libkvx/engine.c and engine_xfer.c: the node's side of the
 * local engine session, driven by raw unix-socket clients in this thread
 * (frames built with the codec, the node progressed while waiting). Real
 * UCX over loopback for the pushes; exit 77 if UCX cannot start.
 */
#include "node_ut.h"

#include <errno.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "engine_int.h"

#define TC_WAIT_MS 5000u
#define B(name) KVX__V1__ENVELOPE__BODY_##name
#define WIRE(st) ((Kvx__V1__Status)kvxi_status_to_wire(st))

static char tmp_dir[64];
static char sock_path[96];
static nut_opts_t opts = {.tls = NUT_TLS_TCP};

/* The nodes a waiting client progresses. */
static kvx_node_h drive_a, drive_b;

static void drive(void)
{
    if (drive_b != NULL) {
        kvx_node_progress(drive_b, 0);
    }
    kvx_node_progress(drive_a, 1);
}

static kvx_status_t engine_node(const char *id, int listen, kvx_node_h *node_p)
{
    kvx_layout_params_t lp = nut_layout(64);
    kvx_node_params_t np = {
        .field_mask =
            KVX_NODE_PARAM_FIELD_NODE_ID | KVX_NODE_PARAM_FIELD_LAYOUT |
            KVX_NODE_PARAM_FIELD_UCX_TLS | KVX_NODE_PARAM_FIELD_ENGINE_SOCKET,
        .node_id = id,
        .layout = &lp,
        .ucx_tls = NUT_TLS_TCP,
        .engine_socket = sock_path,
    };

    if (listen) {
        np.field_mask |= KVX_NODE_PARAM_FIELD_LISTEN;
        np.listen = "127.0.0.1:0";
    }
    drive_a = NULL;
    drive_b = NULL;
    return kvx_node_create(&np, node_p);
}

/* ------------------------------------------------------------------------
 * A raw client.
 */

typedef struct tc {
    int fd;
    int got_fd; /* descriptor received with a frame, or -1 */
    uint64_t next_id;
    uint8_t buf[1 << 16];
    size_t len;
} tc_t;

static tc_t *tc_open(void)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    tc_t *c = calloc(1, sizeof(*c));

    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    c->got_fd = -1;
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", sock_path);
    CU_ASSERT_EQUAL_FATAL(connect(c->fd, (struct sockaddr *)&sun, sizeof(sun)),
                          0);
    return c;
}

static void tc_close(tc_t *c)
{
    if (c->got_fd >= 0) {
        close(c->got_fd);
    }
    close(c->fd);
    free(c);
}

static void tc_write(tc_t *c, const void *p, size_t len)
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

/* Sends @p env (version 1, a fresh request id unless set). */
static uint64_t tc_send(tc_t *c, kvxi_envelope_t *env)
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

/* Reads one frame; KVX_ERR_PEER_DOWN at EOF, KVX_ERR_TIMEOUT. */
static kvx_status_t tc_recv(tc_t *c, uint32_t ms, kvxi_envelope_t **env_p)
{
    uint64_t end = kvx_clock_monotonic_ns(NULL) + ms * 1000000ull;

    for (;;) {
        union {
            struct cmsghdr h;
            char b[CMSG_SPACE(sizeof(int))];
        } ctl;
        struct iovec iov = {c->buf + c->len, sizeof(c->buf) - c->len};
        struct msghdr msg = {.msg_iov = &iov,
                             .msg_iovlen = 1,
                             .msg_control = ctl.b,
                             .msg_controllen = sizeof(ctl.b)};
        size_t used = 0;
        ssize_t n;

        if (kvxi_frame_decode(c->buf, c->len, 0, env_p, &used) == KVX_OK) {
            memmove(c->buf, c->buf + used, c->len - used);
            c->len -= used;
            return KVX_OK;
        }
        n = recvmsg(c->fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n == 0) {
            return KVX_ERR_PEER_DOWN;
        }
        if (n > 0) {
            struct cmsghdr *h = CMSG_FIRSTHDR(&msg);

            if (h != NULL && h->cmsg_type == SCM_RIGHTS) {
                memcpy(&c->got_fd, CMSG_DATA(h), sizeof(int));
            }
            c->len += (size_t)n;
            continue;
        }
        if (errno != EAGAIN || kvx_clock_monotonic_ns(NULL) >= end) {
            return errno == EAGAIN ? KVX_ERR_TIMEOUT : KVX_ERR_PEER_DOWN;
        }
        drive();
    }
}

/* Expects a frame with body @p body; returns it (free with
 * kvxi_frame_free()) or NULL after a failed assertion. */
static kvxi_envelope_t *tc_expect(tc_t *c, Kvx__V1__Envelope__BodyCase body)
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

/* Expects Error{code} and then the end of the session. */
static void tc_expect_error_eof(tc_t *c, kvx_status_t code)
{
    kvxi_envelope_t *env = tc_expect(c, B(ERROR));

    if (env != NULL) {
        CU_ASSERT_EQUAL(env->error->code, WIRE(code));
        kvxi_frame_free(env);
    }
    CU_ASSERT_EQUAL(tc_recv(c, TC_WAIT_MS, &env), KVX_ERR_PEER_DOWN);
}

static void tc_send_attach(tc_t *c, uint32_t min, uint32_t max)
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

static kvxi_envelope_t *tc_attach_v(tc_t *c, uint32_t min, uint32_t max)
{
    tc_send_attach(c, min, max);
    return tc_expect(c, B(ATTACH_REPLY));
}

static tc_t *tc_attached(void)
{
    tc_t *c = tc_open();
    kvxi_envelope_t *r = tc_attach_v(c, 1, 1);

    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL(r->attach_reply->status, WIRE(KVX_OK));
    kvxi_frame_free(r);
    return c;
}

/* One request, its reply of body @p body. */
static kvxi_envelope_t *tc_call(tc_t *c, kvxi_envelope_t *env,
                                Kvx__V1__Envelope__BodyCase body)
{
    uint64_t id = tc_send(c, env);
    kvxi_envelope_t *r = tc_expect(c, body);

    CU_ASSERT(r == NULL || r->request_id == id);
    return r;
}

static void refs_to_wire(Kvx__V1__BlockRefs *w, uint32_t *buf,
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

/* Reserve: returns the lease; refs and hits (may be NULL) filled. */
static kvx_lease_id_t tc_reserve(tc_t *c, uint32_t n,
                                 const kvx_block_key_t *keys,
                                 kvx_block_ref_t *refs, uint8_t *mask)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT, *r;
    Kvx__V1__Reserve rq = KVX__V1__RESERVE__INIT;
    kvx_lease_id_t lease;

    rq.block_count = n;
    if (keys != NULL) {
        rq.keys.data = (uint8_t *)keys;
        rq.keys.len = (size_t)n * 16;
    }
    env.body_case = B(RESERVE);
    env.reserve = &rq;
    r = tc_call(c, &env, B(RESERVE_REPLY));
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL_FATAL(r->reserve_reply->status, WIRE(KVX_OK));
    for (uint32_t i = 0; i < n; i++) {
        refs[i].block = r->reserve_reply->blocks->blocks[i];
        refs[i].gen = r->reserve_reply->blocks->gens[i];
    }
    if (mask != NULL) {
        memcpy(mask, r->reserve_reply->hit_mask.data,
               r->reserve_reply->hit_mask.len);
    }
    lease = r->reserve_reply->lease_id;
    kvxi_frame_free(r);
    return lease;
}

/* A request answered by Result: its status (xfer id into *xid_p). */
static kvx_status_t tc_result(tc_t *c, kvxi_envelope_t *env, uint64_t *xid_p)
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

static kvx_status_t tc_seal(tc_t *c, kvx_lease_id_t lease)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT;
    Kvx__V1__Seal s = KVX__V1__SEAL__INIT;

    s.lease_id = lease;
    env.body_case = B(SEAL);
    env.seal = &s;
    return tc_result(c, &env, NULL);
}

/* Release: returns the ReleaseAck's count. */
static uint32_t tc_release(tc_t *c, const kvx_block_ref_t *refs, uint32_t n)
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

static kvx_status_t tc_push(tc_t *c, const char *peer, uint64_t request_id,
                            const kvx_block_ref_t *refs, uint32_t n,
                            uint64_t *xid_p)
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

static kvx_alloc_attr_t alloc_attr(kvx_node_h node)
{
    kvx_alloc_attr_t a;

    kvx_alloc_query(kvx_node_alloc(node), &a);
    return a;
}

/* ------------------------------------------------------------------------
 * Tests.
 */

static void test_engine_attach_memfd(void)
{
    kvx_node_h node;
    kvxi_envelope_t *r;
    kvx_pool_attr_t pa;
    struct stat st;
    tc_t *c;
    uint8_t *map, *mine;
    uint64_t off;

    CU_ASSERT_EQUAL_FATAL(engine_node("a", 1, &node), KVX_OK);
    drive_a = node;
    CU_ASSERT_EQUAL(stat(sock_path, &st), 0);
    CU_ASSERT(S_ISSOCK(st.st_mode) && (st.st_mode & 0777) == 0600);
    c = tc_open();
    r = tc_attach_v(c, 1, 3);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL(r->attach_reply->status, WIRE(KVX_OK));
    CU_ASSERT_EQUAL(r->attach_reply->version, 1);
    CU_ASSERT_STRING_EQUAL(r->attach_reply->node_id, "a");
    CU_ASSERT_STRING_EQUAL(r->attach_reply->listen_addr,
                           kvx_node_listen_addr(node));
    CU_ASSERT_EQUAL(r->attach_reply->layout->num_blocks, 64);
    CU_ASSERT_EQUAL(r->attach_reply->layout->block_bytes,
                    kvx_node_layout(node)->block_bytes);
    CU_ASSERT_EQUAL(r->attach_reply->layout_hash,
                    kvx_layout_compat_hash(kvx_node_layout(node)));
    kvx_pool_query(kvx_node_pool(node), &pa);
    CU_ASSERT_EQUAL(r->attach_reply->pool_bytes, pa.length);
    CU_ASSERT_FATAL(c->got_fd >= 0);
    CU_ASSERT_EQUAL(fstat(c->got_fd, &st), 0);
    CU_ASSERT((uint64_t)st.st_size >= r->attach_reply->pool_bytes);
    map =
        mmap(NULL, pa.length, PROT_READ | PROT_WRITE, MAP_SHARED, c->got_fd, 0);
    CU_ASSERT_FATAL(map != MAP_FAILED);
    mine = kvx_pool_block_addr(kvx_node_pool(node), 3);
    off = (uint64_t)(mine - (uint8_t *)pa.base);
    memset(mine, 0x5a, 64);
    CU_ASSERT_EQUAL(map[off + 63], 0x5a);
    map[off + 100] = 0xc3; /* and the other way round */
    CU_ASSERT_EQUAL(mine[100], 0xc3);
    munmap(map, pa.length);
    kvxi_frame_free(r);
    tc_close(c);
    kvx_node_destroy(node);
    CU_ASSERT_NOT_EQUAL(stat(sock_path, &st), 0); /* removed */
}

static void test_engine_version_refused(void)
{
    kvxi_envelope_t *r, *e = NULL;
    kvx_node_h node;
    tc_t *c;

    CU_ASSERT_EQUAL_FATAL(engine_node("a", 0, &node), KVX_OK);
    drive_a = node;
    c = tc_open();
    r = tc_attach_v(c, 2, 5);
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL(r->attach_reply->status, WIRE(KVX_ERR_PROTO_VERSION));
    CU_ASSERT_PTR_NULL(r->attach_reply->layout);
    CU_ASSERT_EQUAL(c->got_fd, -1); /* no memfd with a refusal */
    CU_ASSERT_EQUAL(tc_recv(c, TC_WAIT_MS, &e), KVX_ERR_PEER_DOWN);
    kvxi_frame_free(r);
    tc_close(c);
    kvx_node_destroy(node);
}

static void test_engine_bad_input(void)
{
    static const uint8_t zero[4] = {0, 0, 0, 0};
    static const uint8_t huge[4] = {0x7f, 0xff, 0xff, 0xff};
    static const uint8_t junk[9] = {0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff};
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT, *r;
    Kvx__V1__Stats st = KVX__V1__STATS__INIT;
    kvx_node_h node;
    tc_t *c;

    CU_ASSERT_EQUAL_FATAL(engine_node("a", 0, &node), KVX_OK);
    drive_a = node;
    /* a request before Attach */
    c = tc_open();
    env.body_case = B(STATS);
    env.stats = &st;
    tc_send(c, &env);
    tc_expect_error_eof(c, KVX_ERR_PROTO_UNEXPECTED);
    tc_close(c);
    /* zero-length, oversize and undecodable frames, attached or not */
    c = tc_open();
    tc_write(c, zero, sizeof(zero));
    tc_expect_error_eof(c, KVX_ERR_PROTO_MALFORMED);
    tc_close(c);
    c = tc_attached();
    tc_write(c, huge, sizeof(huge));
    tc_expect_error_eof(c, KVX_ERR_PROTO_OVERSIZE);
    tc_close(c);
    c = tc_attached();
    tc_write(c, junk, sizeof(junk));
    tc_expect_error_eof(c, KVX_ERR_PROTO_MALFORMED);
    tc_close(c);
    /* a second Attach */
    c = tc_attached();
    tc_send_attach(c, 1, 1);
    tc_expect_error_eof(c, KVX_ERR_PROTO_UNEXPECTED);
    tc_close(c);
    /* the node still serves a new session */
    c = tc_attached();
    env = (kvxi_envelope_t)KVX__V1__ENVELOPE__INIT;
    env.body_case = B(STATS);
    env.stats = &st;
    r = tc_call(c, &env, B(STATS_REPLY));
    CU_ASSERT(r != NULL && r->stats_reply->blocks_total == 64);
    kvxi_frame_free(r);
    tc_close(c);
    kvx_node_destroy(node);
}

/* A node-to-node body on a session: NOT_SUPPORTED, the session stays. */
static void test_engine_node_body_refused(void)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT, *r;
    Kvx__V1__Commit cm = KVX__V1__COMMIT__INIT;
    Kvx__V1__PeerList pl = KVX__V1__PEER_LIST__INIT;
    Kvx__V1__BlockRefs w;
    kvx_block_ref_t ref = {1, 1};
    uint32_t buf[2];
    kvx_node_h node;
    tc_t *c;

    CU_ASSERT_EQUAL_FATAL(engine_node("a", 0, &node), KVX_OK);
    drive_a = node;
    c = tc_attached();
    refs_to_wire(&w, buf, &ref, 1);
    cm.transfer_id = 1;
    cm.lease_id = 1;
    cm.blocks = &w;
    env.body_case = B(COMMIT);
    env.commit = &cm;
    r = tc_call(c, &env, B(ERROR));
    CU_ASSERT(r != NULL && r->error->code == WIRE(KVX_ERR_NOT_SUPPORTED));
    kvxi_frame_free(r);
    env = (kvxi_envelope_t)KVX__V1__ENVELOPE__INIT;
    env.body_case = B(PEER_LIST);
    env.peer_list = &pl;
    r = tc_call(c, &env, B(PEER_LIST_REPLY));
    CU_ASSERT(r != NULL && r->peer_list_reply->n_peers == 0);
    kvxi_frame_free(r);
    tc_close(c);
    kvx_node_destroy(node);
}

static void test_engine_reserve_seal_release(void)
{
    kvx_block_key_t keys[3];
    kvx_block_ref_t refs[4], again[3];
    kvx_block_info_t info;
    kvx_lease_id_t lease;
    kvx_node_h node;
    uint8_t mask[1];
    tc_t *c;

    CU_ASSERT_EQUAL_FATAL(engine_node("a", 0, &node), KVX_OK);
    drive_a = node;
    c = tc_attached();
    lease = tc_reserve(c, 4, NULL, refs, mask);
    CU_ASSERT(lease != 0);
    CU_ASSERT_EQUAL(mask[0], 0);
    CU_ASSERT_EQUAL(alloc_attr(node).n_reserved, 4);
    CU_ASSERT_EQUAL(tc_seal(c, lease), KVX_OK);
    CU_ASSERT_EQUAL(alloc_attr(node).n_ready, 4);
    kvx_alloc_block_query(kvx_node_alloc(node), refs[2].block, &info);
    CU_ASSERT_EQUAL(info.pins, 1);
    CU_ASSERT_EQUAL(tc_seal(c, lease), KVX_ERR_STALE_HANDLE); /* sealed */
    CU_ASSERT_EQUAL(tc_release(c, refs, 4), 4);
    CU_ASSERT_EQUAL(alloc_attr(node).n_free, 64);
    CU_ASSERT_EQUAL(tc_release(c, refs, 4), 0); /* not held any more */
    /* keyed: sealed blocks enter the index, a second reserve hits */
    for (int i = 0; i < 3; i++) {
        memset(&keys[i], 0x10 + i, sizeof(keys[i]));
    }
    lease = tc_reserve(c, 3, keys, refs, mask);
    CU_ASSERT_EQUAL(tc_seal(c, lease), KVX_OK);
    CU_ASSERT_EQUAL(tc_release(c, refs, 3), 3);
    CU_ASSERT_EQUAL(alloc_attr(node).n_cached, 3);
    CU_ASSERT_EQUAL(tc_reserve(c, 3, keys, again, mask), 0);
    CU_ASSERT_EQUAL(mask[0], 0x7);
    CU_ASSERT(memcmp(again, refs, sizeof(again)) == 0);
    CU_ASSERT_EQUAL(alloc_attr(node).n_ready, 3); /* hits held at once */
    CU_ASSERT_EQUAL(tc_release(c, again, 3), 3);
    CU_ASSERT_EQUAL(alloc_attr(node).n_cached, 3);
    tc_close(c);
    kvx_node_destroy(node);
}

/* More blocks than the pool has: NO_SPACE, nothing held. */
static void test_engine_reserve_too_many(void)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT, *r;
    Kvx__V1__Reserve rq = KVX__V1__RESERVE__INIT;
    kvx_node_h node;
    tc_t *c;

    CU_ASSERT_EQUAL_FATAL(engine_node("a", 0, &node), KVX_OK);
    drive_a = node;
    c = tc_attached();
    rq.block_count = 65;
    env.body_case = B(RESERVE);
    env.reserve = &rq;
    r = tc_call(c, &env, B(RESERVE_REPLY));
    CU_ASSERT(r != NULL && r->reserve_reply->status == WIRE(KVX_ERR_NO_SPACE));
    kvxi_frame_free(r);
    CU_ASSERT_EQUAL(alloc_attr(node).n_free, 64);
    tc_close(c);
    kvx_node_destroy(node);
}

/* A client that sends requests but never reads the replies is
 * disconnected once its replies pass the output bound; others go on. */
static void test_engine_output_bound(void)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT, *r;
    Kvx__V1__Stats st = KVX__V1__STATS__INIT;
    uint8_t frame[64], *batch;
    size_t len = 0, batch_len, sent = 0, off = 0;
    uint64_t end;
    kvx_node_h node;
    int closed = 0;
    tc_t *c;

    CU_ASSERT_EQUAL_FATAL(engine_node("a", 0, &node), KVX_OK);
    drive_a = node;
    c = tc_attached();
    env.version = 1;
    env.request_id = 1000;
    env.body_case = B(STATS);
    env.stats = &st;
    CU_ASSERT_EQUAL_FATAL(kvxi_frame_encode(&env, frame, sizeof(frame), &len),
                          KVX_OK);
    batch_len = 4096 * len;
    batch = malloc(batch_len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(batch);
    for (size_t i = 0; i < 4096; i++) {
        memcpy(batch + i * len, frame, len);
    }
    end = kvx_clock_monotonic_ns(NULL) + 60000000000ull;
    while (!closed && kvx_clock_monotonic_ns(NULL) < end) {
        ssize_t n = send(c->fd, batch + off, batch_len - off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);

        if (n > 0) {
            sent += (size_t)n;
            off = (off + (size_t)n) % batch_len;
        } else if (errno != EAGAIN) {
            closed = 1; /* EPIPE / ECONNRESET: the node hung up */
        }
        kvx_node_progress(node, 0);
    }
    CU_ASSERT(closed);
    CU_ASSERT(sent / len * 150 > KVXI_ENGINE_OUT_MAX); /* it took a while */
    free(batch);
    tc_close(c);
    c = tc_attached();
    env = (kvxi_envelope_t)KVX__V1__ENVELOPE__INIT;
    env.body_case = B(STATS);
    env.stats = &st;
    r = tc_call(c, &env, B(STATS_REPLY));
    CU_ASSERT_PTR_NOT_NULL(r);
    kvxi_frame_free(r);
    tc_close(c);
    kvx_node_destroy(node);
}

/* An unsealed lease ends at its deadline: the blocks are free again and
 * a late Seal is refused. */
static void test_engine_lease_expires(void)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT, *r;
    Kvx__V1__Reserve rq = KVX__V1__RESERVE__INIT;
    kvx_lease_id_t lease;
    kvx_node_h node;
    uint64_t end;
    tc_t *c;

    CU_ASSERT_EQUAL_FATAL(engine_node("a", 0, &node), KVX_OK);
    drive_a = node;
    c = tc_attached();
    rq.block_count = 3;
    rq.lease_ms = 100;
    env.body_case = B(RESERVE);
    env.reserve = &rq;
    r = tc_call(c, &env, B(RESERVE_REPLY));
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    lease = r->reserve_reply->lease_id;
    kvxi_frame_free(r);
    CU_ASSERT_EQUAL(alloc_attr(node).n_reserved, 3);
    end = kvx_clock_monotonic_ns(NULL) + 2000000000ull;
    while (alloc_attr(node).n_free != 64 &&
           kvx_clock_monotonic_ns(NULL) < end) {
        kvx_node_progress(node, 1000); /* the lease deadline wakes it */
    }
    CU_ASSERT_EQUAL(alloc_attr(node).n_free, 64);
    CU_ASSERT_EQUAL(alloc_attr(node).leases_fenced, 0);
    CU_ASSERT_EQUAL(tc_seal(c, lease), KVX_ERR_STALE_HANDLE);
    tc_close(c);
    kvx_node_destroy(node);
}

static void test_engine_seal_foreign_lease(void)
{
    kvx_block_ref_t refs[2];
    kvx_lease_id_t lease;
    kvx_node_h node;
    tc_t *a, *b;

    CU_ASSERT_EQUAL_FATAL(engine_node("a", 0, &node), KVX_OK);
    drive_a = node;
    a = tc_attached();
    b = tc_attached();
    lease = tc_reserve(a, 2, NULL, refs, NULL);
    CU_ASSERT_EQUAL(tc_seal(b, lease), KVX_ERR_STALE_HANDLE);
    CU_ASSERT_EQUAL(tc_seal(b, 0x1234567), KVX_ERR_STALE_HANDLE);
    CU_ASSERT_EQUAL(tc_release(b, refs, 2), 0);
    CU_ASSERT_EQUAL(alloc_attr(node).n_reserved, 2); /* untouched */
    CU_ASSERT_EQUAL(tc_seal(a, lease), KVX_OK);
    tc_close(a);
    tc_close(b);
    kvx_node_destroy(node);
}

static void test_engine_unheld_blocks(void)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT;
    Kvx__V1__PublishStart ps = KVX__V1__PUBLISH_START__INIT;
    kvx_block_ref_t src[2], mine[1];
    Kvx__V1__BlockRefs w;
    uint32_t buf[4];
    uint64_t xid = 7;
    kvx_node_h node;
    tc_t *c;

    CU_ASSERT_EQUAL_FATAL(engine_node("a", 0, &node), KVX_OK);
    drive_a = node;
    nut_make_src(node, 2, src, 1); /* READY, but the embedder's */
    c = tc_attached();
    CU_ASSERT_EQUAL(tc_push(c, "127.0.0.1:1", 1, src, 2, &xid),
                    KVX_ERR_STALE_HANDLE);
    CU_ASSERT_EQUAL(xid, 0);
    CU_ASSERT_EQUAL(tc_seal(c, tc_reserve(c, 1, NULL, mine, NULL)), KVX_OK);
    src[1] = mine[0]; /* one held, one not: still refused */
    refs_to_wire(&w, buf, src, 2);
    ps.request_id = 5;
    ps.blocks = &w;
    env.body_case = B(PUBLISH_START);
    env.publish_start = &ps;
    CU_ASSERT_EQUAL(tc_result(c, &env, NULL), KVX_ERR_STALE_HANDLE);
    refs_to_wire(&w, buf, mine, 1);
    env = (kvxi_envelope_t)KVX__V1__ENVELOPE__INIT;
    env.body_case = B(PUBLISH_START);
    env.publish_start = &ps;
    CU_ASSERT_EQUAL(tc_result(c, &env, NULL), KVX_OK);
    CU_ASSERT_EQUAL(kvx_node_unpublish(node, 5), KVX_OK);
    tc_close(c);
    nut_unpin_all(node, src, 1);
    kvx_node_destroy(node);
}

/* A session that ends holding blocks and an unsealed lease leaves the
 * pool as it was. */
static void test_engine_close_frees(void)
{
    kvx_block_ref_t refs[8];
    kvx_block_key_t keys[2];
    kvx_alloc_attr_t a;
    kvx_node_h node;
    uint64_t end;
    tc_t *c;

    CU_ASSERT_EQUAL_FATAL(engine_node("a", 0, &node), KVX_OK);
    drive_a = node;
    c = tc_attached();
    memset(keys, 0x33, sizeof(keys));
    keys[1].bytes[0] = 1;
    CU_ASSERT_EQUAL(tc_seal(c, tc_reserve(c, 2, keys, refs, NULL)), KVX_OK);
    CU_ASSERT_EQUAL(tc_reserve(c, 2, keys, refs + 2, NULL), 0); /* hits */
    CU_ASSERT(tc_reserve(c, 4, NULL, refs + 4, NULL) != 0);     /* unsealed */
    a = alloc_attr(node);
    CU_ASSERT(a.n_ready == 2 && a.n_reserved == 4 && a.leases_active == 1);
    tc_close(c);
    end = kvx_clock_monotonic_ns(NULL) + TC_WAIT_MS * 1000000ull;
    do {
        kvx_node_progress(node, 1);
        a = alloc_attr(node);
    } while (a.n_free + a.n_cached != 64 && kvx_clock_monotonic_ns(NULL) < end);
    CU_ASSERT_EQUAL(a.n_free, 62);
    CU_ASSERT_EQUAL(a.n_cached, 2); /* keyed blocks stay for dedupe */
    CU_ASSERT_EQUAL(a.n_fenced + a.n_ready + a.n_reserved, 0);
    CU_ASSERT_EQUAL(a.leases_active + a.leases_fenced, 0);
    kvx_node_destroy(node);
}

static void tc_recv_req(tc_t *c, uint64_t request_id, uint32_t ms)
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

static void test_engine_recv_timeout(void)
{
    kvxi_envelope_t *r = NULL;
    struct timespec cpu0, cpu1;
    kvx_node_h node;
    uint64_t t0, dt;
    tc_t *c;

    CU_ASSERT_EQUAL_FATAL(engine_node("a", 0, &node), KVX_OK);
    drive_a = node;
    c = tc_attached();
    tc_recv_req(c, 999, 0);
    r = tc_expect(c, B(RECV_REPLY));
    CU_ASSERT(r != NULL && r->recv_reply->status == WIRE(KVX_ERR_NOT_FOUND));
    kvxi_frame_free(r);
    /* parked: the node's timer wakes it at the deadline, no polling */
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu0);
    t0 = kvx_clock_monotonic_ns(NULL);
    tc_recv_req(c, 998, 300);
    r = NULL;
    while (r == NULL && kvx_clock_monotonic_ns(NULL) - t0 < 10000000000ull) {
        kvx_node_progress(node, 5000);
        drive_a = NULL; /* read only what is there */
        if (tc_recv(c, 0, &r) != KVX_OK) {
            r = NULL;
        }
        drive_a = node;
    }
    dt = kvx_clock_monotonic_ns(NULL) - t0;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu1);
    CU_ASSERT((cpu1.tv_sec - cpu0.tv_sec) * 1000000000ll + cpu1.tv_nsec -
                  cpu0.tv_nsec <
              100000000ll); /* slept, did not spin */
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL(r->body_case, B(RECV_REPLY));
    CU_ASSERT_EQUAL(r->recv_reply->status, WIRE(KVX_ERR_NOT_FOUND));
    CU_ASSERT(dt >= 290000000ull && dt < 2000000000ull);
    kvxi_frame_free(r);
    tc_close(c);
    kvx_node_destroy(node);
}

/* A push through a session: Result, then XferDone; the receiver collects
 * what the engine wrote into the mapped pool. */
static void test_engine_push_e2e(void)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT, *r;
    Kvx__V1__PeerList pl = KVX__V1__PEER_LIST__INIT;
    kvx_block_ref_t refs[2], got[2];
    kvx_node_h a, b;
    kvx_pool_attr_t pa;
    uint64_t xid = 0, bb;
    uint32_t n = 0;
    uint8_t *map;
    tc_t *c;

    CU_ASSERT_EQUAL_FATAL(engine_node("a", 1, &a), KVX_OK);
    CU_ASSERT_EQUAL_FATAL(nut_node("b", &opts, 1, &b), KVX_OK);
    drive_a = a;
    drive_b = b;
    c = tc_attached();
    bb = kvx_node_layout(a)->block_bytes;
    kvx_pool_query(kvx_node_pool(a), &pa);
    map =
        mmap(NULL, pa.length, PROT_READ | PROT_WRITE, MAP_SHARED, c->got_fd, 0);
    CU_ASSERT_FATAL(map != MAP_FAILED);
    CU_ASSERT_EQUAL(tc_seal(c, tc_reserve(c, 2, NULL, refs, NULL)), KVX_OK);
    for (int i = 0; i < 2; i++) {
        uint8_t *p =
            (uint8_t *)kvx_pool_block_addr(kvx_node_pool(a), refs[i].block) -
            (uint8_t *)pa.base + map;

        memset(p, 0xa0 + i, bb);
    }
    CU_ASSERT_EQUAL(tc_push(c, kvx_node_listen_addr(b), 77, refs, 2, &xid),
                    KVX_OK);
    CU_ASSERT(xid != 0);
    CU_ASSERT_EQUAL(tc_release(c, refs, 2), 2); /* the push pins its own */
    r = tc_expect(c, B(XFER_DONE));
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL(r->xfer_done->xfer_id, xid);
    CU_ASSERT_EQUAL(r->xfer_done->status, WIRE(KVX_OK));
    CU_ASSERT_EQUAL(r->xfer_done->block_count, 2);
    CU_ASSERT_EQUAL(r->xfer_done->blocks_sent, 2);
    CU_ASSERT_EQUAL(r->xfer_done->bytes_sent, 2 * bb);
    kvxi_frame_free(r);
    CU_ASSERT_EQUAL(kvx_node_recv(b, 77, 0, got, 2, &n), KVX_OK);
    CU_ASSERT_EQUAL(n, 2);
    for (uint32_t i = 0; i < n; i++) {
        uint8_t *p = kvx_pool_block_addr(kvx_node_pool(b), got[i].block);

        CU_ASSERT(p[0] == 0xa0 + i && p[bb - 1] == 0xa0 + i);
    }
    nut_unpin_all(b, got, n);
    /* the node keeps the peer: listed, and reused by node id */
    env.body_case = B(PEER_LIST);
    env.peer_list = &pl;
    r = tc_call(c, &env, B(PEER_LIST_REPLY));
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL_FATAL(r->peer_list_reply->n_peers, 1);
    CU_ASSERT_STRING_EQUAL(r->peer_list_reply->peers[0]->node_id, "b");
    CU_ASSERT_EQUAL(r->peer_list_reply->peers[0]->status, WIRE(KVX_OK));
    CU_ASSERT(r->peer_list_reply->peers[0]->outgoing);
    kvxi_frame_free(r);
    CU_ASSERT_EQUAL(tc_seal(c, tc_reserve(c, 1, NULL, refs, NULL)), KVX_OK);
    CU_ASSERT_EQUAL(tc_push(c, "b", 78, refs, 1, &xid), KVX_OK);
    r = tc_expect(c, B(XFER_DONE));
    CU_ASSERT(r != NULL && r->xfer_done->status == WIRE(KVX_OK));
    kvxi_frame_free(r);
    munmap(map, pa.length);
    tc_close(c);
    kvx_node_destroy(b);
    kvx_node_destroy(a);
}

/* A pull through a session, collected by a parked Recv: the session then
 * holds the blocks until it releases them. */
static void test_engine_pull_recv(void)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT, *r, *done = NULL,
                    *got = NULL;
    Kvx__V1__PullStart ps = KVX__V1__PULL_START__INIT;
    kvx_publish_params_t pub = {
        .field_mask =
            KVX_PUBLISH_PARAM_FIELD_REQUEST_ID | KVX_PUBLISH_PARAM_FIELD_BLOCKS,
        .request_id = 42,
        .n_blocks = 3,
    };
    kvx_block_ref_t src[3], refs[3];
    uint64_t xid = 0;
    kvx_node_h a, b;
    tc_t *c;

    CU_ASSERT_EQUAL_FATAL(engine_node("a", 0, &a), KVX_OK);
    CU_ASSERT_EQUAL_FATAL(nut_node("b", &opts, 1, &b), KVX_OK);
    drive_a = a;
    drive_b = b;
    nut_make_src(b, 3, src, 9);
    pub.blocks = src;
    CU_ASSERT_EQUAL_FATAL(kvx_node_publish(b, &pub, NULL), KVX_OK);
    c = tc_attached();
    ps.peer = (char *)kvx_node_listen_addr(b);
    ps.request_id = 42;
    ps.block_count = 3;
    env.body_case = B(PULL_START);
    env.pull_start = &ps;
    CU_ASSERT_EQUAL(tc_result(c, &env, &xid), KVX_OK);
    CU_ASSERT(xid != 0);
    tc_recv_req(c, 42, 5000);
    for (int i = 0; i < 2; i++) {
        r = NULL;
        CU_ASSERT_EQUAL(tc_recv(c, TC_WAIT_MS, &r), KVX_OK);
        if (r != NULL && r->body_case == B(XFER_DONE) && done == NULL) {
            done = r;
        } else if (r != NULL && r->body_case == B(RECV_REPLY) && got == NULL) {
            got = r;
        } else {
            kvxi_frame_free(r);
        }
    }
    CU_ASSERT_PTR_NOT_NULL_FATAL(done);
    CU_ASSERT_PTR_NOT_NULL_FATAL(got);
    CU_ASSERT_EQUAL(done->xfer_done->xfer_id, xid);
    CU_ASSERT_EQUAL(done->xfer_done->status, WIRE(KVX_OK));
    CU_ASSERT_EQUAL(got->recv_reply->status, WIRE(KVX_OK));
    CU_ASSERT_EQUAL_FATAL(got->recv_reply->block_count, 3);
    for (uint32_t i = 0; i < 3; i++) {
        uint8_t *mine, *theirs;

        refs[i].block = got->recv_reply->blocks->blocks[i];
        refs[i].gen = got->recv_reply->blocks->gens[i];
        mine = kvx_pool_block_addr(kvx_node_pool(a), refs[i].block);
        theirs = kvx_pool_block_addr(kvx_node_pool(b), src[i].block);
        CU_ASSERT(memcmp(mine, theirs, 4096) == 0);
    }
    kvxi_frame_free(done);
    kvxi_frame_free(got);
    CU_ASSERT_EQUAL(alloc_attr(a).n_ready, 3); /* the session's holds */
    CU_ASSERT_EQUAL(tc_release(c, refs, 3), 3);
    CU_ASSERT_EQUAL(alloc_attr(a).n_free, 64);
    tc_close(c);
    nut_unpin_all(b, src, 3);
    kvx_node_destroy(a);
    kvx_node_destroy(b);
}

/* A push to a peer that never answers waits for it; Abort ends it. A peer
 * that refuses ends the push with its status. */
static void test_engine_push_pending(void)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    socklen_t len = sizeof(sin);
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT, *r;
    Kvx__V1__Abort ab = KVX__V1__ABORT__INIT;
    kvx_block_ref_t refs[1];
    uint64_t xid = 0;
    kvx_node_h node;
    char addr[64];
    int mute;
    tc_t *c;

    CU_ASSERT_EQUAL_FATAL(engine_node("a", 0, &node), KVX_OK);
    drive_a = node;
    mute = socket(AF_INET, SOCK_STREAM, 0); /* listens, never speaks */
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CU_ASSERT_EQUAL_FATAL(bind(mute, (struct sockaddr *)&sin, sizeof(sin)), 0);
    CU_ASSERT_EQUAL_FATAL(listen(mute, 4), 0);
    getsockname(mute, (struct sockaddr *)&sin, &len);
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", ntohs(sin.sin_port));
    c = tc_attached();
    CU_ASSERT_EQUAL(tc_seal(c, tc_reserve(c, 1, NULL, refs, NULL)), KVX_OK);
    CU_ASSERT_EQUAL(tc_push(c, addr, 9, refs, 1, &xid), KVX_OK);
    CU_ASSERT(xid != 0);
    CU_ASSERT_EQUAL(tc_release(c, refs, 1), 1);
    CU_ASSERT_EQUAL(alloc_attr(node).n_ready, 1); /* pinned while waiting */
    ab.transfer_id = xid;
    ab.reason = WIRE(KVX_ERR_ABORTED);
    env.body_case = B(ABORT);
    env.abort = &ab;
    CU_ASSERT_EQUAL(tc_result(c, &env, NULL), KVX_OK);
    r = tc_expect(c, B(XFER_DONE));
    CU_ASSERT(r != NULL && r->xfer_done->status == WIRE(KVX_ERR_ABORTED));
    kvxi_frame_free(r);
    CU_ASSERT_EQUAL(alloc_attr(node).n_free, 64);
    env.request_id = 0;
    CU_ASSERT_EQUAL(tc_result(c, &env, NULL), KVX_ERR_BAD_STATE);
    ab.transfer_id = 1000;
    env.request_id = 0;
    CU_ASSERT_EQUAL(tc_result(c, &env, NULL), KVX_ERR_NOT_FOUND);
    /* nobody listens: the transfer ends with the peer's failure */
    close(mute);
    CU_ASSERT_EQUAL(tc_seal(c, tc_reserve(c, 1, NULL, refs, NULL)), KVX_OK);
    CU_ASSERT_EQUAL(tc_push(c, addr, 10, refs, 1, &xid), KVX_OK);
    r = tc_expect(c, B(XFER_DONE));
    CU_ASSERT(r != NULL &&
              r->xfer_done->status == WIRE(KVX_ERR_PEER_UNREACHABLE));
    kvxi_frame_free(r);
    CU_ASSERT_EQUAL(tc_push(c, "no-such-peer", 11, refs, 1, &xid),
                    KVX_ERR_NOT_FOUND);
    tc_close(c);
    kvx_node_destroy(node);
}

static void test_engine_lookup_stats(void)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT, *r;
    Kvx__V1__Lookup lk = KVX__V1__LOOKUP__INIT;
    Kvx__V1__Stats st = KVX__V1__STATS__INIT;
    kvx_block_key_t keys[3];
    kvx_block_ref_t refs[2];
    kvx_node_h node;
    tc_t *c;

    CU_ASSERT_EQUAL_FATAL(engine_node("a", 0, &node), KVX_OK);
    drive_a = node;
    c = tc_attached();
    memset(keys, 0x44, sizeof(keys));
    keys[1].bytes[0] = 1;
    keys[2].bytes[0] = 2;
    CU_ASSERT_EQUAL(tc_seal(c, tc_reserve(c, 2, keys, refs, NULL)), KVX_OK);
    lk.keys.data = (uint8_t *)keys;
    lk.keys.len = sizeof(keys);
    env.body_case = B(LOOKUP);
    env.lookup = &lk;
    r = tc_call(c, &env, B(LOOKUP_REPLY));
    CU_ASSERT(r != NULL && r->lookup_reply->key_count == 3 &&
              r->lookup_reply->prefix_blocks == 2);
    kvxi_frame_free(r);
    env = (kvxi_envelope_t)KVX__V1__ENVELOPE__INIT;
    env.body_case = B(STATS);
    env.stats = &st;
    r = tc_call(c, &env, B(STATS_REPLY));
    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    CU_ASSERT_EQUAL(r->stats_reply->blocks_total, 64);
    CU_ASSERT_EQUAL(r->stats_reply->blocks_free, 62);
    CU_ASSERT(r->stats_reply->n_counters > 0);
    kvxi_frame_free(r);
    tc_close(c);
    kvx_node_destroy(node);
}

/* A session body on a node-to-node connection: NOT_SUPPORTED. */
static void peer_recv_cb(kvxi_conn_t *conn, const kvxi_envelope_t *env,
                         void *arg)
{
    (void)conn;
    if (env->body_case == B(ERROR)) {
        *(uint32_t *)arg = env->error->code;
    }
}

static void test_engine_session_body_on_peer(void)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT;
    Kvx__V1__PeerList pl = KVX__V1__PEER_LIST__INIT;
    kvxi_conn_cbs_t cbs = {.recv = peer_recv_cb};
    uint32_t code = 0;
    kvx_node_h a, b;
    kvx_peer_h p;

    CU_ASSERT_EQUAL_FATAL(nut_node("a", &opts, 1, &a), KVX_OK);
    CU_ASSERT_EQUAL_FATAL(nut_node("b", &opts, 0, &b), KVX_OK);
    CU_ASSERT_EQUAL_FATAL(kvx_node_connect(b, kvx_node_listen_addr(a), &p),
                          KVX_OK);
    CU_ASSERT_EQUAL_FATAL(nut_wait_peer(a, b, p), KVX_OK);
    cbs.arg = &code;
    kvxi_conn_set_cbs(p->conn, &cbs);
    env.body_case = B(PEER_LIST);
    env.peer_list = &pl;
    CU_ASSERT_EQUAL(kvxi_conn_send(p->conn, &env), KVX_OK);
    for (int i = 0; i < 2000 && code == 0; i++) {
        kvx_node_progress(a, 0);
        kvx_node_progress(b, 1);
    }
    CU_ASSERT_EQUAL(code, WIRE(KVX_ERR_NOT_SUPPORTED));
    kvx_node_destroy(b);
    kvx_node_destroy(a);
}

static void test_engine_socket_param(void)
{
    kvx_layout_params_t lp = nut_layout(16);
    kvx_node_params_t np = {
        .field_mask = KVX_NODE_PARAM_FIELD_NODE_ID |
                      KVX_NODE_PARAM_FIELD_LAYOUT |
                      KVX_NODE_PARAM_FIELD_ENGINE_SOCKET,
        .node_id = "n",
        .layout = &lp,
    };
    char unix_path[160];
    kvx_node_h node = NULL;

    np.engine_socket = NULL;
    CU_ASSERT_EQUAL(kvx_node_create(&np, &node), KVX_ERR_INVALID_PARAM);
    np.engine_socket = "127.0.0.1:4000"; /* not a unix socket */
    CU_ASSERT_EQUAL(kvx_node_create(&np, &node), KVX_ERR_INVALID_PARAM);
    snprintf(unix_path, sizeof(unix_path), "unix:%s", sock_path);
    np.engine_socket = unix_path;
    CU_ASSERT_EQUAL_FATAL(kvx_node_create(&np, &node), KVX_OK);
    CU_ASSERT_EQUAL(access(sock_path, F_OK), 0);
    kvx_node_destroy(node);
    CU_ASSERT_NOT_EQUAL(access(sock_path, F_OK), 0);
}

static const ut_test_t session_tests[] = {
    UT_TEST(test_engine_socket_param),
    UT_TEST(test_engine_attach_memfd),
    UT_TEST(test_engine_version_refused),
    UT_TEST(test_engine_bad_input),
    UT_TEST(test_engine_node_body_refused),
    UT_TEST(test_engine_session_body_on_peer),
    UT_TEST(test_engine_output_bound),
    UT_END,
};

static const ut_test_t request_tests[] = {
    UT_TEST(test_engine_reserve_seal_release),
    UT_TEST(test_engine_reserve_too_many),
    UT_TEST(test_engine_lease_expires),
    UT_TEST(test_engine_seal_foreign_lease),
    UT_TEST(test_engine_unheld_blocks),
    UT_TEST(test_engine_close_frees),
    UT_TEST(test_engine_recv_timeout),
    UT_TEST(test_engine_lookup_stats),
    UT_TEST(test_engine_push_e2e),
    UT_TEST(test_engine_push_pending),
    UT_TEST(test_engine_pull_recv),
    UT_END,
};

int main(void)
{
    static const ut_suite_t suites[] = {
        {"session", session_tests},
        {"request", request_tests},
        {NULL, NULL},
    };
    int rc;

    if (!nut_init()) {
        return 77;
    }
    snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/kvx-engine-XXXXXX");
    if (mkdtemp(tmp_dir) == NULL) {
        return 1;
    }
    snprintf(sock_path, sizeof(sock_path), "%s/engine.sock", tmp_dir);
    rc = ut_main(suites);
    unlink(sock_path);
    rmdir(tmp_dir);
    return rc;
}
