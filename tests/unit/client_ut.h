/*
 * Helpers shared by the client tests (test_client_io.c, test_client.c,
 * test_client_xfer.c): engines attached to real nodes over their unix
 * sockets. The client blocks while it waits, so the nodes run on a second
 * thread (created by cut_up(), then progressed only there until the test
 * stops it). A "prefill" and a "decode" node, each with an engine socket
 * and a TCP control listener; 64 blocks of 32 KiB (node_ut.h's layout).
 * Include once per test binary.
 */
#ifndef KVX_TEST_CLIENT_UT_H
#define KVX_TEST_CLIENT_UT_H

#include "node_ut.h"

#include "client_int.h"

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#define CUT_N_BLOCKS 64u
#define CUT_BLOCK_BYTES 32768u
#define CUT_WAIT_MS 10000u
#define CUT_MAX_RECV 8u /* blocks cut_recv_check() takes at most */

#define CUT_INVALID(x) CU_ASSERT_EQUAL((x), KVX_ERR_INVALID_PARAM)

/* ------------------------------------------------------------------------
 * Fixture: two nodes, a thread progressing them, up to two engines.
 */

typedef struct cut_world {
    char dir[64];
    char p_sock[128], d_sock[128]; /* d_sock with the "unix:" prefix */
    char p_addr[64], d_addr[64];
    kvx_node_h p, d;
    kvx_pool_h p_pool;
    kvx_client_h pe, de; /* the engines cut_up() attached, or NULL */
    pthread_t thread;
    atomic_int stop;
    int running;
} cut_world_t;

static inline void *cut_world_main(void *arg)
{
    cut_world_t *w = arg;

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

static inline void cut_start(cut_world_t *w)
{
    atomic_store(&w->stop, 0);
    CU_ASSERT_EQUAL_FATAL(pthread_create(&w->thread, NULL, cut_world_main, w),
                          0);
    w->running = 1;
}

/* Stops the thread: the test may touch the nodes until cut_start(). */
static inline void cut_stop(cut_world_t *w)
{
    if (w->running) {
        atomic_store(&w->stop, 1);
        pthread_join(w->thread, NULL);
        w->running = 0;
    }
}

static inline kvx_status_t cut_node(const char *id, const char *sock,
                                    kvx_node_h *node_p)
{
    kvx_layout_params_t lp = nut_layout(CUT_N_BLOCKS);
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

static inline kvx_client_h cut_attach(const char *sock, const char *name)
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

/* Starts both nodes and their thread; attaches "prefill-engine" to the
 * prefill node into @p pe_p and "decode-engine" to the decode node into
 * @p de_p, each when not NULL (cut_down() detaches them). */
static inline void cut_up(cut_world_t *w, kvx_client_h *pe_p,
                          kvx_client_h *de_p)
{
    memset(w, 0, sizeof(*w));
    snprintf(w->dir, sizeof(w->dir), "/tmp/kvx-client-XXXXXX");
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(w->dir));
    snprintf(w->p_sock, sizeof(w->p_sock), "%s/prefill.sock", w->dir);
    snprintf(w->d_sock, sizeof(w->d_sock), "unix:%s/decode.sock", w->dir);
    CU_ASSERT_EQUAL_FATAL(cut_node("prefill", w->p_sock, &w->p), KVX_OK);
    CU_ASSERT_EQUAL_FATAL(cut_node("decode", w->d_sock, &w->d), KVX_OK);
    snprintf(w->p_addr, sizeof(w->p_addr), "%s", kvx_node_listen_addr(w->p));
    snprintf(w->d_addr, sizeof(w->d_addr), "%s", kvx_node_listen_addr(w->d));
    w->p_pool = kvx_node_pool(w->p);
    cut_start(w);
    if (pe_p != NULL) {
        *pe_p = w->pe = cut_attach(w->p_sock, "prefill-engine");
    }
    if (de_p != NULL) {
        *de_p = w->de = cut_attach(w->d_sock, "decode-engine");
    }
}

static inline void cut_down(cut_world_t *w)
{
    kvx_client_detach(w->de);
    kvx_client_detach(w->pe);
    cut_stop(w);
    kvx_node_destroy(w->p);
    kvx_node_destroy(w->d);
    /* kvx_node_destroy() removes the socket files */
    CU_ASSERT_EQUAL(rmdir(w->dir), 0);
}

/* ------------------------------------------------------------------------
 * Blocks.
 */

static inline void cut_keys(kvx_block_key_t *keys, uint32_t n, uint32_t seed)
{
    for (uint32_t i = 0; i < n; i++) {
        memset(&keys[i], 0, sizeof(keys[i]));
        memcpy(keys[i].bytes, &seed, sizeof(seed));
        memcpy(keys[i].bytes + 8, &i, sizeof(i));
    }
}

static inline uint32_t cut_pattern(uint32_t seed, uint32_t i, uint64_t j)
{
    return (seed + i) * 2654435761u ^ (uint32_t)j;
}

static inline void cut_fill(kvx_client_h c, const kvx_block_ref_t *refs,
                            uint32_t n, uint32_t seed)
{
    uint64_t bb = kvx_client_layout(c)->block_bytes;

    for (uint32_t i = 0; i < n; i++) {
        uint32_t *b = kvx_client_block_addr(c, refs[i].block);

        CU_ASSERT_PTR_NOT_NULL_FATAL(b);
        for (uint64_t j = 0; j < bb / 4; j++) {
            b[j] = cut_pattern(seed, i, j);
        }
    }
}

/* Number of blocks of @p refs that do not hold pattern @p seed. */
static inline uint32_t cut_check(kvx_client_h c, const kvx_block_ref_t *refs,
                                 uint32_t n, uint32_t seed)
{
    uint64_t bb = kvx_client_layout(c)->block_bytes;
    uint32_t bad = 0;

    for (uint32_t i = 0; i < n; i++) {
        const uint32_t *b = kvx_client_block_addr(c, refs[i].block);

        for (uint64_t j = 0; b != NULL && j < bb / 4; j++) {
            if (b[j] != cut_pattern(seed, i, j)) {
                bad++;
                break;
            }
        }
        bad += b == NULL;
    }
    return bad;
}

/* Reserves, fills and seals @p n blocks (keyed when @p keys). */
static inline void cut_make_src(kvx_client_h c, uint32_t n,
                                const kvx_block_key_t *keys,
                                kvx_block_ref_t *refs, uint32_t seed)
{
    kvx_lease_id_t lease = 0;

    CU_ASSERT_EQUAL_FATAL(kvx_client_reserve(c, n, keys, 0, refs, NULL, &lease),
                          KVX_OK);
    CU_ASSERT_NOT_EQUAL_FATAL(lease, 0);
    cut_fill(c, refs, n, seed);
    CU_ASSERT_EQUAL_FATAL(kvx_client_seal(c, lease), KVX_OK);
}

static inline void cut_release_all(kvx_client_h c, const kvx_block_ref_t *refs,
                                   uint32_t n)
{
    uint32_t released = 0;

    CU_ASSERT_EQUAL(kvx_client_release(c, refs, n, &released), KVX_OK);
    CU_ASSERT_EQUAL(released, n);
}

/* ------------------------------------------------------------------------
 * Transfers.
 */

/* The params of a push of @p n blocks of @p refs as request @p req. */
static inline kvx_xfer_params_t
cut_xfer_params(uint64_t req, const kvx_block_ref_t *refs, uint32_t n)
{
    kvx_xfer_params_t xp = {
        .field_mask =
            KVX_XFER_PARAM_FIELD_REQUEST_ID | KVX_XFER_PARAM_FIELD_BLOCKS,
        .request_id = req,
        .blocks = refs,
        .n_blocks = n,
    };

    return xp;
}

static inline kvx_publish_params_t
cut_publish_params(uint64_t req, const kvx_block_ref_t *refs, uint32_t n)
{
    kvx_publish_params_t pp = {
        .field_mask =
            KVX_PUBLISH_PARAM_FIELD_REQUEST_ID | KVX_PUBLISH_PARAM_FIELD_BLOCKS,
        .request_id = req,
        .blocks = refs,
        .n_blocks = n,
    };

    return pp;
}

static inline kvx_pull_params_t cut_pull_params(uint64_t req, uint32_t n)
{
    kvx_pull_params_t lp = {
        .field_mask =
            KVX_PULL_PARAM_FIELD_REQUEST_ID | KVX_PULL_PARAM_FIELD_N_BLOCKS,
        .request_id = req,
        .n_blocks = n,
    };

    return lp;
}

/* Pushes with @p flags, @p keys when not NULL and a CUT_WAIT_MS deadline. */
static inline kvx_status_t cut_push(kvx_client_h c, const char *peer,
                                    uint64_t req, const kvx_block_ref_t *refs,
                                    uint32_t n, const kvx_block_key_t *keys,
                                    uint32_t flags, kvx_client_xfer_h *x_p)
{
    kvx_xfer_params_t xp = cut_xfer_params(req, refs, n);

    xp.field_mask |= KVX_XFER_PARAM_FIELD_FLAGS | KVX_XFER_PARAM_FIELD_DEADLINE;
    xp.flags = flags;
    xp.deadline_ms = CUT_WAIT_MS;
    if (keys != NULL) {
        xp.field_mask |= KVX_XFER_PARAM_FIELD_KEYS;
        xp.keys = keys;
    }
    return kvx_client_push(c, peer, &xp, x_p);
}

/* Waits for @p x to end with @p want, reads its attributes into @p attr
 * (when not NULL) and releases it. */
static inline void cut_xfer_end(kvx_client_xfer_h x, kvx_status_t want,
                                kvx_xfer_attr_t *attr)
{
    CU_ASSERT_EQUAL(kvx_client_xfer_wait(x, CUT_WAIT_MS), want);
    if (attr != NULL) {
        CU_ASSERT_EQUAL(kvx_client_xfer_query(x, attr), KVX_OK);
    }
    kvx_client_xfer_release(x);
}

/* cut_push() that must start and end with KVX_OK; the transfer's
 * attributes in @p attr when not NULL. */
static inline void cut_push_wait(kvx_client_h c, const char *peer, uint64_t req,
                                 const kvx_block_ref_t *refs, uint32_t n,
                                 const kvx_block_key_t *keys, uint32_t flags,
                                 kvx_xfer_attr_t *attr)
{
    kvx_client_xfer_h x = NULL;

    CU_ASSERT_EQUAL_FATAL(cut_push(c, peer, req, refs, n, keys, flags, &x),
                          KVX_OK);
    cut_xfer_end(x, KVX_OK, attr);
}

/* @p c collects the @p n blocks of request @p req, finds pattern @p seed in
 * them and releases them. */
static inline void cut_recv_check(kvx_client_h c, uint64_t req, uint32_t n,
                                  uint32_t seed)
{
    kvx_block_ref_t dst[CUT_MAX_RECV];
    uint32_t got = 0;

    CU_ASSERT_FATAL(n <= CUT_MAX_RECV);
    CU_ASSERT_EQUAL_FATAL(kvx_client_recv(c, req, CUT_WAIT_MS, dst, n, &got),
                          KVX_OK);
    CU_ASSERT_EQUAL_FATAL(got, n);
    CU_ASSERT_EQUAL(cut_check(c, dst, n, seed), 0);
    cut_release_all(c, dst, n);
}

/* ------------------------------------------------------------------------
 * Stats.
 */

static inline uint64_t cut_blocks_free(kvx_client_h c)
{
    kvx_node_stats_t st;

    CU_ASSERT_EQUAL(kvx_client_stats(c, &st), KVX_OK);
    return st.blocks_free;
}

/* Polls @p c's stats until blocks_free is @p want (the node handles a
 * closed session asynchronously). */
static inline uint64_t cut_wait_free(kvx_client_h c, uint64_t want)
{
    uint64_t end = kvx_clock_monotonic_ns(NULL) + CUT_WAIT_MS * 1000000ull, n;

    while ((n = cut_blocks_free(c)) != want &&
           kvx_clock_monotonic_ns(NULL) < end) {
        usleep(2000);
    }
    return n;
}

/* What every client binary's main() does: UCX without memory hooks (they
 * fight the sanitizers), 77 when UCX cannot start. */
static inline int cut_main(const ut_suite_t *suites)
{
    setenv("UCX_MEM_MALLOC_HOOKS", "no", 0);
    setenv("UCX_MEM_MMAP_HOOK_MODE", "none", 0);
    if (!nut_init()) {
        return 77;
    }
    return ut_main(suites);
}

#endif /* KVX_TEST_CLIENT_UT_H */
