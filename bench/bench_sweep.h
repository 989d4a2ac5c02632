/*
 * kvx-bench sweep: kvx pushes and pulls between two nodes of one host (this
 * process and a forked target), per chunk (block) size, batch and block
 * pattern, each row next to ucx_perftest's figure at the chunk size.
 */
#ifndef KVX_BENCH_SWEEP_H
#define KVX_BENCH_SWEEP_H

#include "bench_baseline.h"

#include <kvx/kvx.h>

#include <stddef.h>
#include <stdint.h>

#define KVXI_SWEEP_MAX 32 /* chunk sizes, batches */
#define KVXI_SWEEP_CHUNK_MAX (64u << 20)
#define KVXI_SWEEP_BATCH_MAX 65536u
#define KVXI_SWEEP_PUSH_MAX (1ull << 30) /* bytes of one push; pool = 2x */

/* Phases of a push as kvx_xfer_query() reports them. */
enum { KVXI_PH_ALLOC, KVXI_PH_POST, KVXI_PH_DATA, KVXI_PH_COMMIT, KVXI_PH_N };

typedef struct kvxi_sweep_opts {
    const char *transport; /* "tcp" or "shm" */
    const char *tls;       /* its UCX_TLS */
    size_t chunks[KVXI_SWEEP_MAX];
    int nchunks;
    size_t batches[KVXI_SWEEP_MAX];
    int nbatches;
    int contig, scatter; /* patterns to run */
    int push, pull;      /* directions to run (--dir) */
    unsigned long iters;
    int check, baseline;
    const char *json;
    const char *plot;         /* --plot FILE (.png or .svg) */
    int progress;             /* progress lines on stderr */
    unsigned char secret[16]; /* the run's handshake secret */
} kvxi_sweep_opts_t;

typedef struct kvxi_sweep_row {
    size_t chunk, batch;
    int chunk_idx; /* into kvxi_sweep_opts_t::chunks */
    int scatter;
    int pull;              /* the initiator pulls (else pushes) */
    int skipped;           /* one push over KVXI_SWEEP_PUSH_MAX: not run */
    const char *data_path; /* "rma" or "am" (kvx_peer_transport) */
    double bps;            /* batch * chunk / lat_p50 */
    uint64_t lat_p50_ns, lat_p99_ns;
    int have_phases; /* phase_p50_ns holds figures */
    uint64_t phase_p50_ns[KVXI_PH_N];
    uint64_t phase_p99_ns[KVXI_PH_N];
} kvxi_sweep_row_t;

/* `kvx-bench sweep ...`: returns the exit code (0, 1 failed, 2 bad input). */
int kvxi_sweep_main(int argc, char **argv);

/* The ucx_perftest test that is the raw figure of pull (@p pull) or push
 * rows on @p o's transport. */
kvxi_pt_test_t kvxi_sweep_base_test(const kvxi_sweep_opts_t *o, int pull);
/* "push", "pull" or "push+pull". */
const char *kvxi_sweep_dir_name(const kvxi_sweep_opts_t *o);
/* @p r's bandwidth over @p b's, or -1 when @p b is absent. */
double kvxi_sweep_ratio(const kvxi_sweep_row_t *r, const kvxi_pt_result_t *b);
/* Writes o->json; returns 0 or -1 (with a message). */
int kvxi_sweep_write_json(const kvxi_sweep_opts_t *o,
                          const kvxi_sweep_row_t *rows, int nrows,
                          const kvxi_pt_result_t base[2][KVXI_SWEEP_MAX],
                          long cpus);

/* Runs every row of ROWS (all of one chunk size and one direction, skipped
 * ones left alone): forks the target, connects, pushes or pulls, reaps the
 * target. Returns 0, or 1 after printing why (target did not start,
 * connection or a transfer failed). */
int kvxi_sweep_run_chunk(const kvxi_sweep_opts_t *o, size_t chunk,
                         kvxi_sweep_row_t *rows, int nrows);

/* "alloc", "post", "data", "commit" */
const char *kvxi_sweep_phase_name(int phase);

/* Nearest-rank percentile P of V[0..n) (sorts V). */
uint64_t kvxi_sweep_pct(uint64_t *v, size_t n, unsigned p);

/* A row's figures from its ITERS latencies LAT and, when the row
 * have_phases, its phase times PH (KVXI_PH_N runs of ITERS): p50/p99 of
 * each, and bps. Sorts both. */
void kvxi_sweep_row_stats(kvxi_sweep_row_t *row, uint64_t *lat, uint64_t *ph,
                          size_t iters);

/* Source blocks of row R: ids 0..batch-1, or the even ids 0..2(batch-1) in
 * an order shuffled from R's own seed (no two adjacent in the pool, nor in
 * the list); POOL[i] is block i. */
void kvxi_sweep_row_src(const kvx_block_ref_t *pool, const kvxi_sweep_row_t *r,
                        kvx_block_ref_t *src);

/* Holds all NUM blocks of NODE's pool READY (POOL[i] is block i), block b
 * filled with the byte b * 7 + 1. Returns KVX_OK or why not. */
kvx_status_t kvxi_sweep_hold_pool(kvx_node_h node, size_t chunk, uint32_t num,
                                  kvx_block_ref_t *pool);

/* The target's setup for pull rows (bench_pair.h): ARG is a
 * kvxi_sweep_pub_t; holds the pool and publishes each row's source blocks
 * under kvxi_sweep_pull_id(row index). */
typedef struct kvxi_sweep_pub {
    size_t chunk;
    uint32_t num_blocks;
    const kvxi_sweep_row_t *rows;
    int nrows;
} kvxi_sweep_pub_t;

kvx_status_t kvxi_sweep_publish(kvx_node_h node, void *arg);

/* --plot: bandwidth against chunk size (log x), one line per (dir,
 * pattern, batch) and one per BASE_NAME test (NULL: none), drawn by
 * gnuplot (run by PID, bounded in time) into o->plot. Prints what it did; "plot
 * skipped: gnuplot not found" when it is absent. Returns 0 when written, else
 * -1. */
int kvxi_sweep_plot(const kvxi_sweep_opts_t *o, const kvxi_sweep_row_t *rows,
                    int nrows, const kvxi_pt_result_t base[2][KVXI_SWEEP_MAX],
                    const char *const base_name[2]);

/* Pulls every row of ROWS from PEER iters + 1 times (the first a warm-up),
 * filling their figures; with --check compares every pulled byte. LAT and
 * PH have room for iters and KVXI_PH_N * iters figures. Returns 0 or 1
 * after printing why. */
int kvxi_sweep_run_pulls(const kvxi_sweep_opts_t *o, kvx_node_h node,
                         kvx_peer_h peer, kvxi_sweep_row_t *rows, int nrows,
                         uint64_t *lat, uint64_t *ph);

#endif
