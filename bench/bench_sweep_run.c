/*
 * kvx-bench sweep, the pushes: per chunk size a pair of nodes (bench_pair.h:
 * a forked target and this process's node), which pushes.
 */
#include "bench_pair.h"
#include "bench_sweep.h"
#include "bench_util.h"

#include <kvx/kvx.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PUSH_WAIT_MS 60000

/* The phase times of a push (kvx_xfer_attr_t): returns 1 with ph[] filled
 * (0 would mark a library that does not report them: columns "-"). */
static int xfer_phases(const kvx_xfer_attr_t *a, uint64_t ph[KVXI_PH_N])
{
    ph[KVXI_PH_ALLOC] = a->alloc_ns;
    ph[KVXI_PH_POST] = a->post_ns;
    ph[KVXI_PH_DATA] = a->data_ns;
    ph[KVXI_PH_COMMIT] = a->commit_ns;
    return 1;
}

const char *kvxi_sweep_phase_name(int phase)
{
    static const char *const names[KVXI_PH_N] = {"alloc", "post", "data",
                                                 "commit"};

    return phase >= 0 && phase < KVXI_PH_N ? names[phase] : "?";
}

/* One push of SRC; returns its status, fills *lat_p and ph[]. */
static kvx_status_t push_once(const kvxi_sweep_opts_t *o, kvx_node_h node,
                              kvx_peer_h peer, uint64_t id,
                              const kvx_block_ref_t *src, uint32_t n,
                              uint64_t *lat_p, uint64_t ph[KVXI_PH_N],
                              int *have_ph_p)
{
    kvx_xfer_params_t xp = {
        .field_mask = KVX_XFER_PARAM_FIELD_REQUEST_ID |
                      KVX_XFER_PARAM_FIELD_BLOCKS | KVX_XFER_PARAM_FIELD_FLAGS,
        .request_id = id,
        .blocks = src,
        .n_blocks = n,
        .flags = o->check ? KVX_XFER_FLAG_CHECKSUM : 0u,
    };
    uint64_t t0 = kvx_clock_monotonic_ns(NULL);
    kvx_xfer_attr_t a;
    kvx_xfer_h x;
    kvx_status_t st = kvx_node_push(node, peer, &xp, &x);

    if (st != KVX_OK) {
        return st;
    }
    st = kvx_xfer_wait(x, PUSH_WAIT_MS);
    *lat_p = kvx_clock_monotonic_ns(NULL) - t0;
    kvx_xfer_query(x, &a);
    *have_ph_p = xfer_phases(&a, ph);
    kvx_xfer_release(x);
    return st;
}

static int run_rows(const kvxi_sweep_opts_t *o, kvx_node_h node,
                    kvx_peer_h peer, const kvx_block_ref_t *pool,
                    kvxi_sweep_row_t *rows, int nrows, uint64_t *lat,
                    uint64_t *ph)
{
    kvx_block_ref_t *src = malloc(KVXI_SWEEP_BATCH_MAX * sizeof(*src));
    uint64_t id = 1, one[KVXI_PH_N];
    char sz[32];
    int r, rc = 0;

    for (r = 0; src != NULL && rc == 0 && r < nrows; r++) {
        kvxi_sweep_row_t *row = &rows[r];
        kvx_status_t st = KVX_OK;
        unsigned long i;

        if (row->skipped) {
            continue;
        }
        if (o->progress) {
            fprintf(stderr, "\rsweep: chunk %s batch %zu %s ...      ",
                    kvxi_bench_size_str(row->chunk, sz, sizeof(sz)), row->batch,
                    row->scatter ? "scatter" : "contig");
        }
        kvxi_sweep_row_src(pool, row, src);
        row->have_phases = 1;
        for (i = 0; st == KVX_OK && i <= o->iters; i++) { /* 0: warm-up */
            uint64_t t = 0;
            int have = 0;

            st = push_once(o, node, peer, id++, src, (uint32_t)row->batch, &t,
                           one, &have);
            if (i > 0) {
                lat[i - 1] = t;
                row->have_phases &= have;
                for (int p = 0; p < KVXI_PH_N; p++) {
                    ph[p * o->iters + i - 1] = one[p];
                }
            }
        }
        if (st != KVX_OK) {
            fprintf(stderr,
                    "kvx-bench: push of %zu x %s blocks (%s) failed: "
                    "%s\n",
                    row->batch, sz, row->scatter ? "scatter" : "contig",
                    kvx_status_string(st));
            rc = 1;
            break;
        }
        row->data_path = kvx_transport_string(kvx_peer_transport(peer));
        kvxi_sweep_row_stats(row, lat, ph, o->iters);
    }
    if (src == NULL) {
        fprintf(stderr, "kvx-bench: out of memory\n");
        rc = 1;
    }
    free(src);
    return rc;
}

int kvxi_sweep_run_chunk(const kvxi_sweep_opts_t *o, size_t chunk,
                         kvxi_sweep_row_t *rows, int nrows)
{
    size_t maxb = 0;
    kvx_layout_params_t lp;
    kvx_block_ref_t *pool = NULL;
    uint64_t *lat = NULL, *ph = NULL;
    kvxi_sweep_pub_t pub = {chunk, 0, rows, nrows};
    kvxi_pair_t pair;
    kvx_status_t st;
    char what[64], sz[32];
    int rc = 1;

    for (int r = 0; r < nrows; r++) {
        if (!rows[r].skipped && rows[r].batch > maxb) {
            maxb = rows[r].batch;
        }
    }
    if (maxb == 0) {
        return 0;
    }
    snprintf(what, sizeof(what), "chunk %s%s",
             kvxi_bench_size_str(chunk, sz, sizeof(sz)),
             rows[0].pull ? ", pull" : "");
    lp = kvxi_pair_chunk_layout(chunk, (uint32_t)(2 * maxb));
    pub.num_blocks = lp.num_blocks;
    /* pulls: the target publishes every row before it takes connections */
    if (kvxi_pair_open_setup(o->tls, o->secret, &lp, what,
                             rows[0].pull ? kvxi_sweep_publish : NULL, &pub,
                             &pair) != 0) {
        return 1;
    }
    pool = malloc(lp.num_blocks * sizeof(*pool));
    lat = malloc(o->iters * sizeof(*lat));
    ph = malloc(KVXI_PH_N * o->iters * sizeof(*ph));
    if (pool == NULL || lat == NULL || ph == NULL) {
        fprintf(stderr, "kvx-bench: out of memory\n");
        goto out;
    }
    if (rows[0].pull) { /* into free blocks of ours */
        rc =
            kvxi_sweep_run_pulls(o, pair.node, pair.peer, rows, nrows, lat, ph);
        goto out;
    }
    /* Hold the whole pool READY as the source: block i at pool[i]. */
    st = kvxi_sweep_hold_pool(pair.node, chunk, lp.num_blocks, pool);
    if (st != KVX_OK) {
        fprintf(stderr, "kvx-bench: cannot hold the source blocks: %s\n",
                kvx_status_string(st));
        goto out;
    }
    rc = run_rows(o, pair.node, pair.peer, pool, rows, nrows, lat, ph);
out:
    kvxi_pair_close(&pair);
    free(pool);
    free(lat);
    free(ph);
    return rc;
}
