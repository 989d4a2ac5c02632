/*
 * Helpers shared by the control-channel tests (test_conn.c,
 * test_handshake.c, test_listener.c): identities, an event loop that runs
 * until a condition holds (bounded), endpoints that record callbacks, and
 * "raw" peers that speak bytes or a scripted handshake, and listener +
 * client pairs. Include once per test binary, after ut.h.
 */
#ifndef KVX_TEST_CONN_UT_H
#define KVX_TEST_CONN_UT_H

#include "ut.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <kvx/kvx.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "conn_int.h"
#include "handshake_int.h"

#define OK(x) CU_ASSERT_EQUAL((x), KVX_OK)
#define OK_FATAL(x) CU_ASSERT_EQUAL_FATAL((x), KVX_OK)
#define ERR(x, e) CU_ASSERT_EQUAL((x), KVX_ERR_##e)

#define WAIT_MS 3000 /* generous bound for things that take milliseconds */

/* ------------------------------------------------------------------------
 * Identities.
 */

typedef struct ut_ident {
    kvxi_conn_identity_t id;
    char node[32];
    uint8_t waddr[40];
    uint8_t rkey[24];
} ut_ident_t;

/* A node with a small pool; @p head_dim varies the compatibility hash. */
static inline void ut_ident_init(ut_ident_t *u, const char *node,
                                 uint64_t instance, uint32_t head_dim)
{
    kvx_layout_params_t p = {
        .field_mask =
            KVX_LAYOUT_PARAM_FIELD_NUM_LAYERS |
            KVX_LAYOUT_PARAM_FIELD_BLOCK_TOKENS |
            KVX_LAYOUT_PARAM_FIELD_KV_HEADS | KVX_LAYOUT_PARAM_FIELD_HEAD_DIM |
            KVX_LAYOUT_PARAM_FIELD_DTYPE_SIZE |
            KVX_LAYOUT_PARAM_FIELD_NUM_BLOCKS | KVX_LAYOUT_PARAM_FIELD_MODEL_ID,
        .num_layers = 4,
        .block_tokens = 16,
        .kv_heads = 8,
        .head_dim = head_dim,
        .dtype_size = 2,
        .num_blocks = 64,
        .model_id = 0x5eed,
    };

    memset(u, 0, sizeof(*u));
    snprintf(u->node, sizeof(u->node), "%s", node);
    memset(u->waddr, (int)('W' + instance), sizeof(u->waddr));
    memset(u->rkey, (int)('R' + instance), sizeof(u->rkey));
    CU_ASSERT_EQUAL_FATAL(kvx_layout_init(&u->id.layout, &p), KVX_OK);
    u->id.node_id = u->node;
    u->id.instance_id = instance;
    u->id.cluster_id = "test-cluster";
    u->id.min_version = 1;
    u->id.max_version = KVXI_PROTO_VERSION;
    u->id.role = KVX__V1__ROLE__ROLE_BOTH;
    u->id.data_paths = KVXI_DATA_PATH_ALL;
    u->id.memory.worker_address = u->waddr;
    u->id.memory.worker_address_len = sizeof(u->waddr);
    u->id.memory.mem_type = KVX_MEM_HOST;
    u->id.memory.pool_base = 0x100000ull * instance;
    u->id.memory.pool_length = 1u << 20;
    u->id.memory.rkey = u->rkey;
    u->id.memory.rkey_len = sizeof(u->rkey);
}

/* True if @p peer carries exactly @p u's identity and memory. */
static inline int ut_peer_is(const kvxi_peer_info_t *peer, const ut_ident_t *u)
{
    return peer != NULL && strcmp(peer->node_id, u->node) == 0 &&
           peer->instance_id == u->id.instance_id &&
           peer->layout_hash == kvx_layout_compat_hash(&u->id.layout) &&
           peer->memory.worker_address_len == sizeof(u->waddr) &&
           memcmp(peer->memory.worker_address, u->waddr, sizeof(u->waddr)) ==
               0 &&
           peer->memory.rkey_len == sizeof(u->rkey) &&
           memcmp(peer->memory.rkey, u->rkey, sizeof(u->rkey)) == 0 &&
           peer->memory.pool_base == u->id.memory.pool_base &&
           peer->memory.pool_length == u->id.memory.pool_length;
}

/* ------------------------------------------------------------------------
 * The event loop: one base per test, a 5 ms ticker so every loop step
 * returns, conditions bounded by a deadline.
 */

static struct event_base *ut_base;
static struct event *ut_ticker;

static inline uint64_t ut_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline void ut_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

static inline void ut_loop_init(void)
{
    struct timeval tv = {0, 5000};

    ut_base = event_base_new();
    CU_ASSERT_PTR_NOT_NULL_FATAL(ut_base);
    ut_ticker = event_new(ut_base, -1, EV_PERSIST, ut_tick, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ut_ticker);
    event_add(ut_ticker, &tv);
}

static inline void ut_loop_fini(void)
{
    event_free(ut_ticker);
    event_base_free(ut_base);
    ut_ticker = NULL;
    ut_base = NULL;
}

/* Runs the loop until @p cond holds or @p ms passed (a watchdog: a test
 * never hangs); then asserts nothing, the caller checks @p cond. */
#define UT_RUN_UNTIL(cond, ms)                                                 \
    do {                                                                       \
        uint64_t ut_deadline_ = ut_now_ms() + (ms);                            \
        while (!(cond) && ut_now_ms() < ut_deadline_) {                        \
            event_base_loop(ut_base, EVLOOP_ONCE);                             \
        }                                                                      \
    } while (0)

/* Runs the loop for @p ms whatever happens. */
static inline void ut_run_for(uint64_t ms)
{
    uint64_t deadline = ut_now_ms() + ms;

    while (ut_now_ms() < deadline) {
        event_base_loop(ut_base, EVLOOP_ONCE);
    }
}

/* ------------------------------------------------------------------------
 * Endpoints: record what the callbacks saw.
 */

typedef struct ut_end {
    kvxi_conn_t *conn;
    int established;
    kvxi_peer_info_t *peer; /* copy made in the callback */
    int recv_count;
    Kvx__V1__Envelope__BodyCase last_body;
    uint64_t last_request_id;
    int writable;
    int closed;
    kvx_status_t reason;
    char text[KVXI_TEXT_MAX + 1];
    int answer;                 /* reply to Lookup / Stats */
    int destroy_in_established; /* kvxi_conn_destroy() inside established */
    int destroy_in_recv;        /* kvxi_conn_destroy() inside recv */
    int close_in_recv;          /* kvxi_conn_close() inside recv */
    int destroy_in_close;       /* kvxi_conn_destroy() inside closed */
} ut_end_t;

static inline void ut_on_established(kvxi_conn_t *conn,
                                     const kvxi_peer_info_t *peer, void *arg)
{
    ut_end_t *e = arg;

    CU_ASSERT_PTR_EQUAL(kvxi_conn_peer(conn), peer);
    CU_ASSERT_EQUAL(kvxi_conn_state(conn), KVXI_CONN_OPEN);
    e->conn = conn;
    e->established++;
    kvxi_peer_info_free(e->peer);
    e->peer = NULL;
    CU_ASSERT_EQUAL(kvxi_peer_info_dup(peer, &e->peer), KVX_OK);
    if (e->destroy_in_established) {
        kvxi_conn_destroy(conn);
        e->conn = NULL;
    }
}

static inline void ut_answer(kvxi_conn_t *conn, const kvxi_envelope_t *req)
{
    Kvx__V1__Envelope env = KVX__V1__ENVELOPE__INIT;
    Kvx__V1__LookupReply lr = KVX__V1__LOOKUP_REPLY__INIT;
    Kvx__V1__StatsReply sr = KVX__V1__STATS_REPLY__INIT;

    env.request_id = req->request_id;
    if (req->body_case == KVX__V1__ENVELOPE__BODY_LOOKUP) {
        lr.key_count = (uint32_t)(req->lookup->keys.len / KVXI_KEY_LEN);
        lr.prefix_blocks = 1;
        env.body_case = KVX__V1__ENVELOPE__BODY_LOOKUP_REPLY;
        env.lookup_reply = &lr;
    } else if (req->body_case == KVX__V1__ENVELOPE__BODY_STATS) {
        sr.blocks_total = 64;
        env.body_case = KVX__V1__ENVELOPE__BODY_STATS_REPLY;
        env.stats_reply = &sr;
    } else {
        return;
    }
    CU_ASSERT_EQUAL(kvxi_conn_send(conn, &env), KVX_OK);
}

static inline void ut_on_recv(kvxi_conn_t *conn, const kvxi_envelope_t *env,
                              void *arg)
{
    ut_end_t *e = arg;

    e->recv_count++;
    e->last_body = env->body_case;
    e->last_request_id = env->request_id;
    if (e->answer) {
        ut_answer(conn, env);
    }
    if (e->close_in_recv) {
        CU_ASSERT_EQUAL(kvxi_conn_close(conn, KVX_OK, "done"), KVX_OK);
        /* No callback from inside the call; sends fail from now on. */
        CU_ASSERT_EQUAL(e->closed, 0);
    }
    if (e->destroy_in_recv) {
        kvxi_conn_destroy(conn);
        e->conn = NULL;
    }
}

static inline void ut_on_writable(kvxi_conn_t *conn, void *arg)
{
    ut_end_t *e = arg;

    (void)conn;
    e->writable++;
}

static inline void ut_on_closed(kvxi_conn_t *conn, kvx_status_t reason,
                                const char *text, void *arg)
{
    ut_end_t *e = arg;

    CU_ASSERT_EQUAL(kvxi_conn_state(conn), KVXI_CONN_CLOSED);
    CU_ASSERT_EQUAL(kvxi_conn_close_reason(conn), reason);
    e->conn = conn;
    e->closed++;
    e->reason = reason;
    snprintf(e->text, sizeof(e->text), "%s", text);
    if (e->destroy_in_close) {
        kvxi_conn_destroy(conn);
        e->conn = NULL;
    }
}

static inline kvxi_conn_cbs_t ut_cbs(ut_end_t *e)
{
    kvxi_conn_cbs_t cbs = {ut_on_established, ut_on_recv, ut_on_writable,
                           ut_on_closed, e};

    return cbs;
}

/* Destroys the connection and the peer copy of @p e. */
static inline void ut_end_fini(ut_end_t *e)
{
    kvxi_conn_destroy(e->conn);
    kvxi_peer_info_free(e->peer);
    memset(e, 0, sizeof(*e));
}

/* Short fast timers for tests; callers adjust. */
static inline kvxi_conn_config_t ut_config(const ut_ident_t *u, ut_end_t *e,
                                           const char *secret)
{
    kvxi_conn_config_t cfg;

    memset(&cfg, 0, sizeof(cfg));
    cfg.identity = &u->id;
    cfg.secret = secret;
    cfg.secret_len = secret != NULL ? strlen(secret) : 0;
    cfg.connect_timeout_ms = 2000;
    cfg.handshake_timeout_ms = 2000;
    cfg.heartbeat_interval_ms = 1000;
    cfg.linger_ms = 200;
    cfg.cbs = ut_cbs(e);
    return cfg;
}

/* Sends a Lookup of @p n_keys keys; returns the status. */
static inline kvx_status_t ut_send_lookup(kvxi_conn_t *conn, size_t n_keys,
                                          uint64_t *request_id_p)
{
    static uint8_t keys[KVXI_KEY_LEN * 8192];
    Kvx__V1__Envelope env = KVX__V1__ENVELOPE__INIT;
    Kvx__V1__Lookup lk = KVX__V1__LOOKUP__INIT;
    kvx_status_t status;

    CU_ASSERT_FATAL(n_keys >= 1 && n_keys <= 8192);
    lk.keys.data = keys;
    lk.keys.len = n_keys * KVXI_KEY_LEN;
    env.body_case = KVX__V1__ENVELOPE__BODY_LOOKUP;
    env.lookup = &lk;
    status = kvxi_conn_send(conn, &env);
    if (request_id_p != NULL) {
        *request_id_p = env.request_id;
    }
    return status;
}

/* ------------------------------------------------------------------------
 * Raw peers: a bufferevent that records every byte received and can run a
 * scripted handshake (kvxi_hs_t) or misbehave.
 */

typedef struct ut_raw {
    struct bufferevent *bev;
    struct evbuffer *rx; /* every byte received */
    size_t parsed;       /* bytes of rx already fed to the handshake */
    int eof;
    kvxi_hs_t *hs; /* NULL: bytes only */
    kvx_status_t hs_status;
    int bad_proof; /* answer HelloReply with a wrong MAC */
} ut_raw_t;

static inline void ut_raw_feed(ut_raw_t *r)
{
    char why[KVXI_TEXT_MAX + 1];

    for (;;) {
        size_t len = evbuffer_get_length(r->rx), used = 0;
        kvxi_envelope_t *env = NULL;
        uint8_t *p = evbuffer_pullup(r->rx, -1);

        if (len <= r->parsed ||
            kvxi_frame_decode(p + r->parsed, len - r->parsed, 0, &env, &used) !=
                KVX_OK) {
            return;
        }
        r->parsed += used;
        if (r->hs_status == KVX_INPROGRESS &&
            env->body_case != KVX__V1__ENVELOPE__BODY_ERROR) {
            if (r->bad_proof &&
                env->body_case == KVX__V1__ENVELOPE__BODY_HELLO_REPLY) {
                Kvx__V1__Envelope out = KVX__V1__ENVELOPE__INIT;
                Kvx__V1__AuthProof ap = KVX__V1__AUTH_PROOF__INIT;
                Kvx__V1__Memory m = KVX__V1__MEMORY__INIT;
                uint8_t mac[KVXI_AUTH_MAC_LEN] = {0}, waddr[8] = {1};

                m.worker_address.data = waddr;
                m.worker_address.len = sizeof(waddr);
                m.mem_type = KVX__V1__MEM_TYPE__MEM_TYPE_HOST;
                ap.auth_mac.data = mac;
                ap.auth_mac.len = sizeof(mac);
                ap.memory = &m;
                out.version = env->version;
                out.request_id = 2;
                out.body_case = KVX__V1__ENVELOPE__BODY_AUTH_PROOF;
                out.auth_proof = &ap;
                CU_ASSERT_EQUAL(
                    kvxi_frame_write(bufferevent_get_output(r->bev), &out),
                    KVX_OK);
                r->hs_status = KVX_ERR_AUTH;
            } else {
                r->hs_status =
                    kvxi_hs_input(r->hs, env, bufferevent_get_output(r->bev),
                                  why, sizeof(why));
            }
        }
        kvxi_frame_free(env);
    }
}

static inline void ut_raw_read(struct bufferevent *bev, void *arg)
{
    ut_raw_t *r = arg;

    evbuffer_add_buffer(r->rx, bufferevent_get_input(bev));
    if (r->hs != NULL) {
        ut_raw_feed(r);
    }
}

static inline void ut_raw_event(struct bufferevent *bev, short what, void *arg)
{
    ut_raw_t *r = arg;

    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        r->eof = 1;
        /* Like a real peer: end our side too, the other stops lingering. */
        shutdown(bufferevent_getfd(bev), SHUT_WR);
    }
}

/* Wraps connected socket @p fd; @p hs_role: -1 none, 1 client, 0 server. */
static inline void ut_raw_fd(ut_raw_t *r, int fd, int hs_role,
                             const ut_ident_t *u, const char *secret)
{
    memset(r, 0, sizeof(*r));
    r->hs_status = KVX_INPROGRESS;
    evutil_make_socket_nonblocking(fd);
    r->bev = bufferevent_socket_new(ut_base, fd, BEV_OPT_CLOSE_ON_FREE);
    r->rx = evbuffer_new();
    CU_ASSERT_FATAL(r->bev != NULL && r->rx != NULL);
    bufferevent_setcb(r->bev, ut_raw_read, NULL, ut_raw_event, r);
    bufferevent_enable(r->bev, EV_READ | EV_WRITE);
    if (hs_role >= 0) {
        CU_ASSERT_EQUAL_FATAL(kvxi_hs_create(&u->id, secret,
                                             secret ? strlen(secret) : 0,
                                             hs_role, &r->hs),
                              KVX_OK);
        if (hs_role == 1) {
            OK(kvxi_hs_start(r->hs, bufferevent_get_output(r->bev)));
        }
    }
}

/* Connects a raw peer to @p addr (blocking connect: the listener is local,
 * the kernel completes it without the loop). */
static inline void ut_raw_connect(ut_raw_t *r, const char *addr, int hs_role,
                                  const ut_ident_t *u, const char *secret)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int fd;

    CU_ASSERT_EQUAL_FATAL(kvxi_addr_parse(addr, &ss, &len), KVX_OK);
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL_FATAL(connect(fd, (struct sockaddr *)&ss, len), 0);
    ut_raw_fd(r, fd, hs_role, u, secret);
}

static inline void ut_raw_fini(ut_raw_t *r)
{
    if (r->bev != NULL) {
        bufferevent_free(r->bev);
    }
    if (r->rx != NULL) {
        evbuffer_free(r->rx);
    }
    kvxi_hs_destroy(r->hs);
    memset(r, 0, sizeof(*r));
}

static inline void ut_raw_send(ut_raw_t *r, const void *data, size_t len)
{
    CU_ASSERT_EQUAL(bufferevent_write(r->bev, data, len), 0);
}

static inline void ut_raw_send_env(ut_raw_t *r, const kvxi_envelope_t *env)
{
    CU_ASSERT_EQUAL(kvxi_frame_write(bufferevent_get_output(r->bev), env),
                    KVX_OK);
}

/*
 * Decodes everything @p r received: returns the number of frames, stores
 * how many carried @p body in *n_body_p (if not NULL) and the code of the
 * last Error in *error_p (KVX_OK if none). Trailing bytes that are not a
 * whole frame are a failure.
 */
static inline int ut_raw_frames(ut_raw_t *r, Kvx__V1__Envelope__BodyCase body,
                                int *n_body_p, kvx_status_t *error_p)
{
    size_t len = evbuffer_get_length(r->rx), off = 0;
    uint8_t *p = evbuffer_pullup(r->rx, -1);
    int n = 0, n_body = 0;

    if (error_p != NULL) {
        *error_p = KVX_OK;
    }
    while (off < len) {
        kvxi_envelope_t *env = NULL;
        size_t used = 0;

        if (kvxi_frame_decode(p + off, len - off, 0, &env, &used) != KVX_OK) {
            CU_FAIL("raw peer received bytes that are not a frame");
            break;
        }
        off += used;
        n++;
        if (env->body_case == body) {
            n_body++;
        }
        if (env->body_case == KVX__V1__ENVELOPE__BODY_ERROR &&
            error_p != NULL) {
            *error_p = kvxi_status_from_wire(env->error->code);
        }
        kvxi_frame_free(env);
    }
    if (n_body_p != NULL) {
        *n_body_p = n_body;
    }
    return n;
}

/* ------------------------------------------------------------------------
 * Pairs: a listener, the server end it accepted and a client end.
 */

/* A listener, a server end (whatever it accepted) and a client end. */
typedef struct ut_pair {
    ut_ident_t ci, si;
    ut_end_t c, s;
    kvxi_conn_config_t ccfg, scfg;
    kvxi_listener_t *l;
    int accepted;
    char dir[64];
    char addr[128];
} ut_pair_t;

static inline void ut_pair_on_accept(kvxi_listener_t *l, kvxi_conn_t *conn,
                                     void *arg)
{
    ut_pair_t *p = arg;

    (void)l;
    CU_ASSERT_EQUAL(kvxi_conn_state(conn), KVXI_CONN_HANDSHAKE);
    CU_ASSERT_EQUAL(kvxi_conn_is_client(conn), 0);
    p->accepted++;
    if (p->s.conn != NULL) {
        kvxi_conn_destroy(p->s.conn); /* keep the latest */
    }
    p->s.conn = conn;
}

static inline void ut_pair_init(ut_pair_t *p, const char *c_secret,
                                const char *s_secret)
{
    memset(p, 0, sizeof(*p));
    ut_ident_init(&p->ci, "client:1", 1, 128);
    ut_ident_init(&p->si, "server:2", 2, 128);
    p->ccfg = ut_config(&p->ci, &p->c, c_secret);
    p->scfg = ut_config(&p->si, &p->s, s_secret);
}

/* Listens on @p addr ("tcp" = 127.0.0.1:0, "unix" = a fresh temp path). */
static inline void ut_pair_listen(ut_pair_t *p, const char *kind)
{
    if (strcmp(kind, "unix") == 0) {
        snprintf(p->dir, sizeof(p->dir), "/tmp/kvx-conn-XXXXXX");
        CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(p->dir));
        snprintf(p->addr, sizeof(p->addr), "unix:%s/ctl.sock", p->dir);
    } else {
        snprintf(p->addr, sizeof(p->addr), "127.0.0.1:0");
    }
    OK_FATAL(kvxi_listener_create(ut_base, p->addr, &p->scfg, ut_pair_on_accept,
                                  p, &p->l));
    snprintf(p->addr, sizeof(p->addr), "%s", kvxi_listener_addr(p->l));
}

static inline void ut_pair_connect(ut_pair_t *p)
{
    OK_FATAL(kvxi_conn_connect(ut_base, p->addr, &p->ccfg, &p->c.conn));
    CU_ASSERT_EQUAL(kvxi_conn_is_client(p->c.conn), 1);
}

static inline void ut_pair_fini(ut_pair_t *p)
{
    ut_end_fini(&p->c);
    ut_end_fini(&p->s);
    kvxi_listener_destroy(p->l);
    if (p->dir[0] != '\0') {
        rmdir(p->dir);
    }
}

/* Both handshakes complete; envelopes flow both ways and answer ids. */
static inline void ut_pair_exchange(ut_pair_t *p)
{
    uint64_t id = 0;
    Kvx__V1__Envelope env = KVX__V1__ENVELOPE__INIT;
    Kvx__V1__Stats st = KVX__V1__STATS__INIT;

    UT_RUN_UNTIL(p->c.established && p->s.established, WAIT_MS);
    CU_ASSERT_EQUAL_FATAL(p->c.established, 1);
    CU_ASSERT_EQUAL_FATAL(p->s.established, 1);
    CU_ASSERT(ut_peer_is(p->c.peer, &p->si));
    CU_ASSERT(ut_peer_is(p->s.peer, &p->ci));
    CU_ASSERT_EQUAL(p->c.peer->version, KVXI_PROTO_VERSION);
    CU_ASSERT(ut_peer_is(kvxi_conn_peer(p->s.conn), &p->ci));

    /* client -> server request, server answers with the same id */
    p->s.answer = 1;
    OK(ut_send_lookup(p->c.conn, 3, &id));
    CU_ASSERT_EQUAL(id, 3); /* Hello = 1, AuthProof = 2 */
    UT_RUN_UNTIL(p->c.recv_count == 1, WAIT_MS);
    CU_ASSERT_EQUAL(p->s.recv_count, 1);
    CU_ASSERT_EQUAL(p->s.last_body, KVX__V1__ENVELOPE__BODY_LOOKUP);
    CU_ASSERT_EQUAL(p->c.recv_count, 1);
    CU_ASSERT_EQUAL(p->c.last_body, KVX__V1__ENVELOPE__BODY_LOOKUP_REPLY);
    CU_ASSERT_EQUAL(p->c.last_request_id, 3);

    /* server -> client request */
    p->c.answer = 1;
    env.body_case = KVX__V1__ENVELOPE__BODY_STATS;
    env.stats = &st;
    OK(kvxi_conn_send(p->s.conn, &env));
    CU_ASSERT_EQUAL(env.request_id, 1);
    CU_ASSERT_EQUAL(env.version, KVXI_PROTO_VERSION);
    UT_RUN_UNTIL(p->s.recv_count == 2, WAIT_MS);
    CU_ASSERT_EQUAL(p->c.last_body, KVX__V1__ENVELOPE__BODY_STATS);
    CU_ASSERT_EQUAL(p->s.last_body, KVX__V1__ENVELOPE__BODY_STATS_REPLY);
    CU_ASSERT_EQUAL(p->s.last_request_id, 1);
}

#endif /* KVX_TEST_CONN_UT_H */
