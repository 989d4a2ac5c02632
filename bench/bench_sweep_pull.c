/*
 * kvx-bench sweep, the pulls: the target holds its pool and publishes each
 * pull row's source blocks before it reports its address (one publication
 * per row, pulled iters + 1 times); the initiator pulls them into free
 * blocks, collects and releases them. Also the helpers pushes share.
 */
#include "bench_sweep.h"
#include "bench_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PULL_WAIT_MS 60000
#define PULL_ID_BASE (1ull << 40) /* apart from the pushes' ids 1, 2, ... */
#define PUBLISH_LEASE_MS 3600000u /* the most kvx_node_publish() takes */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

static int cmp_ref(const void *a, const void *b)
{
    uint32_t x = ((const kvx_block_ref_t *)a)->block;
    uint32_t y = ((const kvx_block_ref_t *)b)->block;

    return x < y ? -1 : x > y;
}

uint64_t kvxi_sweep_pct(uint64_t *v, size_t n, unsigned p)
{
    size_t r = (n * p + 99) / 100;

    qsort(v, n, sizeof(*v), cmp_u64);
    return v[r > 0 ? r - 1 : 0];
}

void kvxi_sweep_row_stats(kvxi_sweep_row_t *row, uint64_t *lat, uint64_t *ph,
                          size_t iters)
{
    row->lat_p99_ns = kvxi_sweep_pct(lat, iters, 99);
    row->lat_p50_ns = kvxi_sweep_pct(lat, iters, 50);
    row->bps = (double)(row->batch * row->chunk) * 1e9 /
               (double)(row->lat_p50_ns ? row->lat_p50_ns : 1);
    for (int p = 0; row->have_phases && p < KVXI_PH_N; p++) {
        row->phase_p99_ns[p] = kvxi_sweep_pct(ph + p * iters, iters, 99);
        row->phase_p50_ns[p] = kvxi_sweep_pct(ph + p * iters, iters, 50);
    }
}

void kvxi_sweep_row_src(const kvx_block_ref_t *pool, const kvxi_sweep_row_t *r,
                        kvx_block_ref_t *src)
{
    uint64_t seed = 0x9e3779b97f4a7c15ull ^ (r->batch * 0x2545f4914f6cdd1dull);

    for (size_t i = 0; i < r->batch; i++) {
        src[i] = pool[r->scatter ? 2 * i : i];
    }
    for (size_t i = r->batch; r->scatter && i > 1; i--) {
        size_t j;
        kvx_block_ref_t t;

        seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
        j = (size_t)(seed % i);
        t = src[i - 1], src[i - 1] = src[j], src[j] = t;
    }
}

kvx_status_t kvxi_sweep_hold_pool(kvx_node_h node, size_t chunk, uint32_t num,
                                  kvx_block_ref_t *pool)
{
    kvx_lease_id_t lease;
    kvx_status_t st;

    st = kvx_alloc_reserve(kvx_node_alloc(node), num,
                           kvx_clock_monotonic_ns(NULL) + 60000000000ull,
                           &lease, pool);
    if (st == KVX_OK) {
        st = kvx_alloc_lease_commit(kvx_node_alloc(node), lease);
    }
    if (st != KVX_OK) {
        return st;
    }
    qsort(pool, num, sizeof(*pool), cmp_ref); /* by block id */
    for (uint32_t b = 0; b < num; b++) {
        memset(kvx_pool_block_addr(kvx_node_pool(node), b), (int)(b * 7 + 1),
               chunk);
    }
    return KVX_OK;
}

static uint64_t pull_id(int r)
{
    return PULL_ID_BASE + (uint64_t)r;
}

kvx_status_t kvxi_sweep_publish(kvx_node_h node, void *arg)
{
    const kvxi_sweep_pub_t *a = arg;
    kvx_block_ref_t *pool = malloc(a->num_blocks * sizeof(*pool));
    kvx_block_ref_t *src = malloc(a->num_blocks * sizeof(*src));
    kvx_status_t st = pool != NULL && src != NULL ? KVX_OK : KVX_ERR_NO_MEMORY;

    if (st == KVX_OK) {
        st = kvxi_sweep_hold_pool(node, a->chunk, a->num_blocks, pool);
    }
    for (int r = 0; st == KVX_OK && r < a->nrows; r++) {
        kvx_publish_params_t pp = {
            .field_mask = KVX_PUBLISH_PARAM_FIELD_REQUEST_ID |
                          KVX_PUBLISH_PARAM_FIELD_BLOCKS |
                          KVX_PUBLISH_PARAM_FIELD_LEASE,
            .request_id = pull_id(r),
            .blocks = src,
            .n_blocks = (uint32_t)a->rows[r].batch,
            .lease_ms = PUBLISH_LEASE_MS,
        };

        if (a->rows[r].skipped) {
            continue;
        }
        kvxi_sweep_row_src(pool, &a->rows[r], src);
        st = kvx_node_publish(node, &pp, NULL);
    }
    free(pool); /* the blocks stay held: the node copied what it needs */
    free(src);
    return st;
}

/* Every byte of the blocks pulled for ROW (REFS, in token order) is the
 * one the target wrote into the block it published there. */
static int pulled_ok(kvx_node_h node, const kvxi_sweep_row_t *row,
                     const kvx_block_ref_t *refs, kvx_block_ref_t *ids)
{
    for (uint32_t i = 0; i < 2 * row->batch; i++) {
        ids[i] = (kvx_block_ref_t){.block = i};
    }
    kvxi_sweep_row_src(ids, row, ids + 2 * row->batch);
    for (size_t i = 0; i < row->batch; i++) {
        const unsigned char *p =
            kvx_pool_block_addr(kvx_node_pool(node), refs[i].block);
        unsigned char want =
            (unsigned char)(ids[2 * row->batch + i].block * 7 + 1);

        if (p[0] != want || memcmp(p, p + 1, row->chunk - 1) != 0) {
            return 0;
        }
    }
    return 1;
}

/* One pull of row R (timed: start until the transfer ends), then its
 * blocks collected (checked with --check) and unpinned. */
static kvx_status_t pull_once(const kvxi_sweep_opts_t *o, kvx_node_h node,
                              kvx_peer_h peer, const kvxi_sweep_row_t *row,
                              int r, kvx_block_ref_t *refs, uint64_t *lat_p,
                              uint64_t ph[KVXI_PH_N])
{
    kvx_pull_params_t pp = {
        .field_mask = KVX_PULL_PARAM_FIELD_REQUEST_ID |
                      KVX_PULL_PARAM_FIELD_N_BLOCKS |
                      KVX_PULL_PARAM_FIELD_DEADLINE,
        .request_id = pull_id(r),
        .n_blocks = (uint32_t)row->batch,
        .deadline_ms = PULL_WAIT_MS,
    };
    uint64_t t0 = kvx_clock_monotonic_ns(NULL);
    kvx_xfer_attr_t a;
    kvx_xfer_h x;
    uint32_t n = 0;
    kvx_status_t st = kvx_node_pull(node, peer, &pp, &x);

    if (st != KVX_OK) {
        return st;
    }
    st = kvx_xfer_wait(x, PULL_WAIT_MS);
    *lat_p = kvx_clock_monotonic_ns(NULL) - t0;
    kvx_xfer_query(x, &a);
    kvx_xfer_release(x);
    memset(ph, 0, KVXI_PH_N * sizeof(*ph)); /* pulls: data, commit 0 */
    ph[KVXI_PH_ALLOC] = a.alloc_ns;
    ph[KVXI_PH_POST] = a.post_ns;
    if (st == KVX_OK) {
        st = kvx_node_recv(node, pp.request_id, PULL_WAIT_MS, refs,
                           (uint32_t)row->batch, &n);
    }
    if (st == KVX_OK && o->check && !pulled_ok(node, row, refs, refs + n)) {
        st = KVX_ERR_CORRUPT;
    }
    for (uint32_t i = 0; i < n; i++) {
        kvx_alloc_unpin(kvx_node_alloc(node), refs[i]);
    }
    return st;
}

int kvxi_sweep_run_pulls(const kvxi_sweep_opts_t *o, kvx_node_h node,
                         kvx_peer_h peer, kvxi_sweep_row_t *rows, int nrows,
                         uint64_t *lat, uint64_t *ph)
{
    /* refs (batch), then room for pulled_ok(): 2 * batch ids + batch */
    kvx_block_ref_t *refs = malloc(4 * KVXI_SWEEP_BATCH_MAX * sizeof(*refs));
    uint64_t one[KVXI_PH_N];
    char sz[32];
    int r, rc = 0;

    if (refs == NULL) {
        fprintf(stderr, "kvx-bench: out of memory\n");
        return 1;
    }
    for (r = 0; rc == 0 && r < nrows; r++) {
        kvxi_sweep_row_t *row = &rows[r];
        kvx_status_t st = KVX_OK;

        if (row->skipped) {
            continue;
        }
        kvxi_bench_size_str(row->chunk, sz, sizeof(sz));
        if (o->progress) {
            fprintf(stderr, "\rsweep: pull chunk %s batch %zu %s ...      ", sz,
                    row->batch, row->scatter ? "scatter" : "contig");
        }
        for (unsigned long i = 0; st == KVX_OK && i <= o->iters; i++) {
            uint64_t t = 0;

            st = pull_once(o, node, peer, row, r, refs, &t, one);
            for (int p = 0; i > 0 && p < KVXI_PH_N; p++) { /* 0: warm-up */
                lat[i - 1] = t;
                ph[p * o->iters + i - 1] = one[p];
            }
        }
        if (st != KVX_OK) {
            fprintf(stderr,
                    "kvx-bench: pull of %zu x %s blocks (%s) failed: %s\n",
                    row->batch, sz, row->scatter ? "scatter" : "contig",
                    kvx_status_string(st));
            rc = 1;
            break;
        }
        row->data_path = kvx_transport_string(kvx_peer_transport(peer));
        row->have_phases = 1;
        kvxi_sweep_row_stats(row, lat, ph, o->iters);
    }
    free(refs);
    return rc;
}
