/*
 * Fixture of test_ucx.c: two UCX instances (A and B) in one process, each
 * with one registered 16 MiB region, an endpoint A -> B, and the loop that
 * drives them the way a node's event loop will (progress, arm, poll).
 */
#ifndef KVX_TEST_UCX_UT_H
#define KVX_TEST_UCX_UT_H

#include "ut.h"

#include <kvx/kvx.h>

#include "ucx_impl_int.h"

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define TLS_TCP "tcp"
#define TLS_SHM "posix,sysv,cma,self"
#define REGION_LEN (16u << 20)
#define DEADLINE_MS 30000
#define BYTE_INIT 0xee

typedef struct side {
    kvxi_ucx_h ucx;
    uint8_t *base;
    kvxi_ucx_mem_h mem;
    /* AM destination policy: one transfer id (or any) and one window. */
    int any_tid;
    uint64_t allow_tid, allow_off, allow_len;
    uint64_t done_bytes, done_chunks, done_errors, refused;
    kvx_status_t last_refusal;
} side_t;

typedef struct fix {
    side_t a, b;
    kvxi_ucx_ep_h ab; /* A -> B, with B's rkey and region */
} fix_t;

typedef struct result {
    int calls;
    kvx_status_t status;
} result_t;

static const char *g_tls = TLS_TCP;
static uint64_t g_seed = 12345;
static unsigned g_wakeups, g_timeouts, g_arm_busy;

static uint64_t now_ms(void)
{
    return kvx_clock_monotonic_ns(NULL) / 1000000u;
}

static uint64_t rnd(void)
{
    g_seed = g_seed * 6364136223846793005ull + 1442695040888963407ull;
    return g_seed >> 33;
}

static void *dest_cb(uint64_t tid, uint64_t off, uint64_t len, void *arg)
{
    side_t *s = arg;

    if ((!s->any_tid && tid != s->allow_tid) || off < s->allow_off ||
        len > s->allow_len || off - s->allow_off > s->allow_len - len) {
        return NULL;
    }
    return s->base + off;
}

static void done_cb(uint64_t tid, uint64_t off, uint64_t len, uint32_t seq,
                    kvx_status_t status, void *arg)
{
    side_t *s = arg;

    (void)tid, (void)off, (void)seq;
    if (status == KVX_OK) {
        s->done_bytes += len;
        s->done_chunks++;
    } else {
        s->done_errors++;
    }
}

static void refused_cb(uint64_t tid, uint64_t off, uint64_t len,
                       kvx_status_t reason, void *arg)
{
    side_t *s = arg;

    (void)tid, (void)off, (void)len;
    s->refused++;
    s->last_refusal = reason;
}

static void post_cb(kvx_status_t status, void *arg)
{
    result_t *r = arg;

    r->calls++;
    r->status = status;
}

static int side_init(side_t *s, uint32_t window)
{
    kvxi_ucx_params_t p = {
        .field_mask = KVXI_UCX_PARAM_FIELD_TLS | KVXI_UCX_PARAM_FIELD_AM_CB |
                      KVXI_UCX_PARAM_FIELD_CB_ARG |
                      KVXI_UCX_PARAM_FIELD_CLOSE_MS,
        .tls = g_tls,
        .am_dest_cb = dest_cb,
        .am_done_cb = done_cb,
        .am_refused_cb = refused_cb,
        .cb_arg = s,
        .close_ms = 500,
    };

    if (window != 0) {
        p.field_mask |= KVXI_UCX_PARAM_FIELD_WINDOW;
        p.window = window;
    }
    memset(s, 0, sizeof(*s));
    s->any_tid = 1;
    s->allow_len = REGION_LEN;
    s->base = mmap(NULL, REGION_LEN, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (s->base == MAP_FAILED) {
        return -1;
    }
    memset(s->base, BYTE_INIT, REGION_LEN);
    if (kvxi_ucx_create(&p, &s->ucx) != KVX_OK) {
        return -1;
    }
    return kvxi_ucx_mem_reg(s->ucx, s->base, REGION_LEN, KVX_MEM_HOST,
                            &s->mem) == KVX_OK
               ? 0
               : -1;
}

static void side_fini(side_t *s)
{
    CU_ASSERT_EQUAL(kvxi_ucx_mem_dereg(s->mem), KVX_OK);
    kvxi_ucx_destroy(s->ucx);
    munmap(s->base, REGION_LEN);
}

static kvx_status_t ep_open(fix_t *f, kvxi_ucx_mode_t mode, uint32_t flags,
                            kvxi_ucx_ep_h *ep_p)
{
    kvxi_ucx_ep_params_t p = {
        .field_mask = KVXI_UCX_EP_FIELD_ADDRESS | KVXI_UCX_EP_FIELD_RKEY |
                      KVXI_UCX_EP_FIELD_REGION | KVXI_UCX_EP_FIELD_MODE |
                      KVXI_UCX_EP_FIELD_HOST_ID | KVXI_UCX_EP_FIELD_FLAGS,
        .peer_base = (uintptr_t)f->b.base,
        .peer_len = REGION_LEN,
        .mode = mode,
        .peer_host_id = kvxi_ucx_host_id(),
        .flags = flags,
    };

    CU_ASSERT_EQUAL(
        kvxi_ucx_worker_address(f->b.ucx, &p.address, &p.address_len), KVX_OK);
    CU_ASSERT_EQUAL(kvxi_ucx_mem_rkey(f->b.mem, &p.rkey, &p.rkey_len), KVX_OK);
    return kvxi_ucx_ep_create(f->a.ucx, &p, ep_p);
}

static int fix_init(fix_t *f, kvxi_ucx_mode_t mode, uint32_t window)
{
    memset(f, 0, sizeof(*f));
    if (side_init(&f->a, window) != 0 || side_init(&f->b, window) != 0) {
        CU_FAIL("cannot create the UCX instances");
        return -1;
    }
    if (ep_open(f, mode, 0, &f->ab) != KVX_OK) {
        CU_FAIL("cannot create the endpoint");
        return -1;
    }
    return 0;
}

static int pump_until(fix_t *f, int (*cond)(const void *), const void *arg);

static int closes_done(const void *arg)
{
    const fix_t *f = arg;
    kvxi_ucx_stats_t st;

    kvxi_ucx_stats_get(f->a.ucx, &st);
    return st.eps_closing == 0;
}

static void fix_fini(fix_t *f)
{
    kvxi_ucx_ep_destroy(f->ab);
    f->ab = NULL;
    if (f->a.ucx != NULL && f->b.ucx != NULL) {
        /* The peer answers the close: both progress (no 1 s wait). */
        CU_ASSERT(pump_until(f, closes_done, f));
    }
    if (f->a.ucx != NULL) {
        side_fini(&f->a);
    }
    if (f->b.ucx != NULL) {
        side_fini(&f->b);
    }
}

/*
 * The node's loop: progress until idle, arm, sleep on the event fds. The
 * poll timeout is a safety net only; returns 0 at the deadline.
 */
static int pump_until(fix_t *f, int (*cond)(const void *), const void *arg)
{
    uint64_t deadline = now_ms() + DEADLINE_MS;
    struct pollfd pfd[2] = {{.events = POLLIN}, {.events = POLLIN}};

    CU_ASSERT_EQUAL(kvxi_ucx_event_fd(f->a.ucx, &pfd[0].fd), KVX_OK);
    CU_ASSERT_EQUAL(kvxi_ucx_event_fd(f->b.ucx, &pfd[1].fd), KVX_OK);
    for (;;) {
        while (kvxi_ucx_progress(f->a.ucx) + kvxi_ucx_progress(f->b.ucx) != 0) {
            if (now_ms() > deadline) {
                return 0;
            }
        }
        if (cond(arg)) {
            return 1;
        }
        if (now_ms() > deadline) {
            return 0;
        }
        if (kvxi_ucx_arm(f->a.ucx) == KVX_INPROGRESS ||
            kvxi_ucx_arm(f->b.ucx) == KVX_INPROGRESS) {
            g_arm_busy++;
            continue;
        }
        if (poll(pfd, 2, 100) > 0) {
            g_wakeups++;
        } else {
            g_timeouts++;
        }
    }
}

static int result_done(const void *arg)
{
    return ((const result_t *)arg)->calls != 0;
}

typedef struct am_wait {
    const result_t *r;
    const side_t *rx;
    uint64_t bytes;
} am_wait_t;

/* AM: the sender's completion and every byte landed at the receiver. */
static int am_done(const void *arg)
{
    const am_wait_t *w = arg;

    return w->r->calls != 0 && w->rx->done_bytes >= w->bytes;
}

static void fill(uint8_t *p, size_t len, uint64_t salt)
{
    for (size_t i = 0; i < len; i++) {
        p[i] = (uint8_t)((i * 131u + salt) ^ (i >> 12));
    }
}

/* Posts @p segs in @p dir, waits, and checks the whole destination. */
static void move_and_check(fix_t *f, kvxi_ucx_dir_t dir,
                           const kvx_segment_t *segs, size_t n)
{
    uint8_t *src = dir == KVXI_UCX_PUSH ? f->a.base : f->b.base;
    uint8_t *dst = dir == KVXI_UCX_PUSH ? f->b.base : f->a.base;
    uint8_t *expect = malloc(REGION_LEN);
    result_t r = {0};
    kvxi_ucx_post_params_t p = {
        .dir = dir,
        .mem = f->a.mem,
        .segs = segs,
        .n_segs = n,
        .transfer_id = 42,
        .cb = post_cb,
        .arg = &r,
    };
    am_wait_t w = {.r = &r, .rx = &f->b};
    uint64_t total = 0;

    CU_ASSERT_PTR_NOT_NULL_FATAL(expect);
    fill(src, REGION_LEN, rnd());
    memcpy(expect, dst, REGION_LEN);
    for (size_t i = 0; i < n; i++) {
        memcpy(expect + segs[i].dst_off, src + segs[i].src_off, segs[i].len);
        total += segs[i].len;
    }
    w.bytes = f->b.done_bytes + total;
    CU_ASSERT_EQUAL_FATAL(kvxi_ucx_post(f->ab, &p, NULL), KVX_OK);
    CU_ASSERT_EQUAL(r.calls, 0); /* never from inside post */
    if (kvxi_ucx_ep_mode(f->ab) == KVXI_UCX_MODE_AM) {
        CU_ASSERT(pump_until(f, am_done, &w));
    } else {
        CU_ASSERT(pump_until(f, result_done, &r));
    }
    CU_ASSERT_EQUAL(r.calls, 1);
    CU_ASSERT_EQUAL(r.status, KVX_OK);
    CU_ASSERT(memcmp(dst, expect, REGION_LEN) == 0);
    free(expect);
}

/* B driven by its own thread, as a peer process would be. */
typedef struct peer_thread {
    pthread_t tid;
    side_t *side;
    atomic_int stop;
} peer_thread_t;

static void *peer_main(void *arg)
{
    peer_thread_t *pt = arg;
    struct pollfd pfd = {.events = POLLIN};

    kvxi_ucx_event_fd(pt->side->ucx, &pfd.fd);
    while (!atomic_load(&pt->stop)) {
        for (int i = 0; i < 1000 && kvxi_ucx_progress(pt->side->ucx); i++) {
        }
        if (kvxi_ucx_arm(pt->side->ucx) == KVX_OK) {
            poll(&pfd, 1, 10);
        }
    }
    return NULL;
}
#endif /* KVX_TEST_UCX_UT_H */
