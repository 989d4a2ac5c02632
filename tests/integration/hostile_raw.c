/*
 * The raw control-protocol client of hostile_raw.h.
 */
#include "hostile_raw.h"

#include <errno.h>
#include <event2/buffer.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

kvx_node_h raw_node;

static void progress(uint32_t ms)
{
    if (raw_node != NULL) {
        kvx_node_progress(raw_node, 0);
    }
    if (it_node != NULL) {
        kvx_node_progress(it_node, ms);
    }
}

void raw_open(raw_t *r, const char *addr)
{
    struct sockaddr_storage ss;
    socklen_t len;

    memset(r, 0, sizeof(*r));
    r->fd = -1;
    r->next_id = 1;
    r->sent = evbuffer_new();
    CU_ASSERT_PTR_NOT_NULL_FATAL(r->sent);
    CU_ASSERT_EQUAL_FATAL(kvxi_addr_parse(addr, &ss, &len), KVX_OK);
    r->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CU_ASSERT_FATAL(r->fd >= 0);
    CU_ASSERT_EQUAL_FATAL(connect(r->fd, (struct sockaddr *)&ss, len), 0);
}

void raw_close(raw_t *r)
{
    if (r->fd >= 0) {
        close(r->fd);
    }
    if (r->sent != NULL) {
        evbuffer_free(r->sent);
    }
    kvxi_peer_info_free(r->peer);
    kvxi_hs_destroy(r->hs);
    memset(r, 0, sizeof(*r));
    r->fd = -1;
}

int raw_write(raw_t *r, const void *p, size_t len)
{
    uint64_t end = it_now_ms() + IT_WAIT_MS;

    evbuffer_add(r->sent, p, len);
    while (len > 0) {
        ssize_t n = send(r->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);

        if (n > 0) {
            p = (const uint8_t *)p + n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            return -1;
        }
        if (it_now_ms() >= end) {
            return -1;
        }
        progress(1); /* the daemon reads meanwhile */
    }
    return 0;
}

uint64_t raw_send(raw_t *r, kvxi_envelope_t *env)
{
    size_t size, len = 0;
    uint8_t *buf;

    if (env->version == 0) {
        env->version = 1;
    }
    if (env->request_id == 0) {
        env->request_id = r->next_id++;
    }
    size = kvxi_frame_size(env);
    buf = malloc(size);
    CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
    CU_ASSERT_EQUAL_FATAL(kvxi_frame_encode(env, buf, size, &len), KVX_OK);
    raw_write(r, buf, len);
    free(buf);
    return env->request_id;
}

kvx_status_t raw_recv(raw_t *r, uint32_t ms, kvxi_envelope_t **env_p)
{
    uint64_t end = it_now_ms() + ms;

    *env_p = NULL;
    for (;;) {
        struct pollfd pfd = {.fd = r->fd, .events = POLLIN};
        size_t used = 0;
        kvx_status_t st;
        ssize_t n;

        st = kvxi_frame_decode(r->in, r->in_len, 0, env_p, &used);
        if (st == KVX_OK) {
            memmove(r->in, r->in + used, r->in_len - used);
            r->in_len -= used;
            return KVX_OK;
        }
        if (st != KVX_INPROGRESS) {
            return KVX_ERR_PROTO_MALFORMED;
        }
        if (it_now_ms() >= end) {
            return KVX_ERR_TIMEOUT;
        }
        if (poll(&pfd, 1, 2) <= 0) {
            progress(0); /* the daemon's UCX endpoint to raw_node */
            continue;
        }
        n = recv(r->fd, r->in + r->in_len, sizeof(r->in) - r->in_len, 0);
        if (n <= 0) {
            return KVX_ERR_PEER_DOWN; /* EOF, or reset */
        }
        r->in_len += (size_t)n;
    }
}

kvxi_envelope_t *raw_expect(raw_t *r, Kvx__V1__Envelope__BodyCase body,
                            uint64_t id)
{
    kvxi_envelope_t *env = NULL;
    kvx_status_t st;

    while ((st = raw_recv(r, IT_WAIT_MS, &env)) == KVX_OK &&
           env->body_case == B(HEARTBEAT)) {
        kvxi_frame_free(env);
    }
    if (st != KVX_OK) {
        fprintf(stderr, "raw: expected body %d: %s\n", (int)body,
                kvx_status_string(st));
        CU_FAIL("raw: no frame");
        return NULL;
    }
    if (env->body_case != body || (id != 0 && env->request_id != id)) {
        fprintf(stderr, "raw: expected body %d for %llu, got %s for %llu%s%s\n",
                (int)body, (unsigned long long)id, kvxi_envelope_body_name(env),
                (unsigned long long)env->request_id,
                env->body_case == B(ERROR) ? ": " : "",
                env->body_case == B(ERROR) ? env->error->message : "");
        CU_FAIL("raw: unexpected frame");
        kvxi_frame_free(env);
        return NULL;
    }
    return env;
}

void raw_expect_error_eof(raw_t *r, kvx_status_t code, uint32_t ms)
{
    kvxi_envelope_t *env = NULL;
    int errors = 0;
    kvx_status_t st;

    while ((st = raw_recv(r, ms, &env)) == KVX_OK) {
        CU_ASSERT_NOT_EQUAL(env->body_case, B(ACCEPT));
        if (env->body_case == B(ERROR)) {
            if (env->error->code != WIRE(code)) {
                fprintf(
                    stderr, "raw: Error %s: %s\n",
                    kvx_status_string(kvxi_status_from_wire(env->error->code)),
                    env->error->message);
            }
            CU_ASSERT_EQUAL(env->error->code, WIRE(code));
            errors++;
        }
        kvxi_frame_free(env);
    }
    CU_ASSERT_EQUAL(errors, 1);
    CU_ASSERT_EQUAL(st, KVX_ERR_PEER_DOWN); /* closed, not silent */
}

static void hs_flush(raw_t *r, struct evbuffer *out)
{
    size_t len = evbuffer_get_length(out);

    if (len > 0) {
        raw_write(r, evbuffer_pullup(out, -1), len);
        evbuffer_drain(out, len);
    }
}

void raw_hello(raw_t *r, const char *secret)
{
    struct evbuffer *out = evbuffer_new();

    CU_ASSERT_PTR_NOT_NULL_FATAL(out);
    CU_ASSERT_EQUAL_FATAL(
        kvxi_hs_create(&raw_node->ident, secret, strlen(secret), 1, &r->hs),
        KVX_OK);
    CU_ASSERT_EQUAL_FATAL(kvxi_hs_start(r->hs, out), KVX_OK);
    hs_flush(r, out);
    evbuffer_free(out);
}

kvx_status_t raw_handshake(raw_t *r, const char *secret)
{
    struct evbuffer *out = evbuffer_new();
    kvx_status_t st = KVX_INPROGRESS;
    char why[256];

    raw_hello(r, secret);
    while (st == KVX_INPROGRESS) {
        kvxi_envelope_t *env = NULL;

        st = raw_recv(r, IT_WAIT_MS, &env);
        if (st != KVX_OK) {
            break;
        }
        if (env->body_case == B(ERROR)) {
            st = kvxi_status_from_wire(env->error->code);
        } else {
            st = kvxi_hs_input(r->hs, env, out, why, sizeof(why));
            hs_flush(r, out);
        }
        kvxi_frame_free(env);
    }
    if (st == KVX_OK) {
        r->peer = kvxi_hs_take_peer(r->hs);
        r->next_id = kvxi_hs_next_request_id(r->hs);
    }
    evbuffer_free(out);
    return st;
}

/* ---- transfers ---- */

static void post_cb(kvx_status_t status, void *arg)
{
    (void)status;
    (*(int *)arg)++;
}

void raw_am_write(kvxi_ucx_ep_h ep, uint64_t tag, uint64_t src_off,
                  uint64_t dst_off, uint64_t len)
{
    kvx_segment_t seg = {.src_off = src_off, .dst_off = dst_off, .len = len};
    kvxi_ucx_post_params_t pp = {.dir = KVXI_UCX_PUSH,
                                 .mem = raw_node->mem,
                                 .segs = &seg,
                                 .n_segs = 1,
                                 .transfer_id = tag,
                                 .cb = post_cb};
    uint64_t end = it_now_ms() + IT_WAIT_MS;
    int done = 0;

    pp.arg = &done;
    CU_ASSERT_EQUAL_FATAL(kvxi_ucx_post(ep, &pp, NULL), KVX_OK);
    while (!done && it_now_ms() < end) {
        kvx_node_progress(raw_node, 1);
    }
    CU_ASSERT_EQUAL(done, 1);
}

uint64_t raw_allocate(raw_t *r, uint64_t tid, uint32_t n, kvx_status_t want,
                      kvx_block_ref_t *refs)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT, *rep;
    Kvx__V1__AllocateRequest rq = KVX__V1__ALLOCATE_REQUEST__INIT;
    uint64_t tag = 0;

    rq.transfer_id = tid;
    rq.block_count = n;
    rq.lease_ms = 20000;
    rq.mode = KVX__V1__TRANSFER_MODE__TRANSFER_MODE_PUSH;
    rq.data_path = KVX__V1__DATA_PATH__DATA_PATH_AM;
    rq.request_id = 9000 + tid;
    env.body_case = B(ALLOCATE_REQUEST);
    env.allocate_request = &rq;
    rep = raw_expect(r, B(ALLOCATE_REPLY), raw_send(r, &env));
    CU_ASSERT_PTR_NOT_NULL_FATAL(rep);
    CU_ASSERT_EQUAL(rep->allocate_reply->status, WIRE(want));
    for (uint32_t i = 0; want == KVX_OK && i < n; i++) {
        refs[i].block = rep->allocate_reply->blocks->blocks[i];
        refs[i].gen = rep->allocate_reply->blocks->gens[i];
    }
    tag = rep->allocate_reply->lease_id;
    kvxi_frame_free(rep);
    return tag;
}

kvxi_envelope_t *raw_commit(raw_t *r, uint64_t tid, uint64_t tag,
                            const kvx_block_ref_t *refs, uint32_t n,
                            const uint64_t *sums, uint64_t bytes,
                            Kvx__V1__Envelope__BodyCase body)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT;
    Kvx__V1__Commit c = KVX__V1__COMMIT__INIT;
    Kvx__V1__BlockRefs br = KVX__V1__BLOCK_REFS__INIT;
    uint32_t blocks[8], gens[8];

    for (uint32_t i = 0; i < n; i++) {
        blocks[i] = refs[i].block;
        gens[i] = refs[i].gen;
    }
    br.n_blocks = br.n_gens = n;
    br.blocks = blocks;
    br.gens = gens;
    c.transfer_id = tid;
    c.lease_id = tag;
    c.blocks = &br;
    c.n_checksums = sums != NULL ? n : 0;
    c.checksums = (uint64_t *)(uintptr_t)sums;
    c.data_bytes = bytes;
    env.body_case = B(COMMIT);
    env.commit = &c;
    return raw_expect(r, body, raw_send(r, &env));
}
