/*
 * kvx-bench sweep: kvx pushes between two nodes of one host (this process
 * and a forked target), per chunk (block) size, batch and block pattern,
 * each row next to ucx_perftest's figure at the chunk size.
 */
#ifndef KVX_BENCH_SWEEP_H
#define KVX_BENCH_SWEEP_H

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
    unsigned long iters;
    int check, baseline;
    const char *json;
    int progress;             /* progress lines on stderr */
    unsigned char secret[16]; /* the run's handshake secret */
} kvxi_sweep_opts_t;

typedef struct kvxi_sweep_row {
    size_t chunk, batch;
    int chunk_idx; /* into kvxi_sweep_opts_t::chunks */
    int scatter;
    int skipped;           /* one push over KVXI_SWEEP_PUSH_MAX: not run */
    const char *data_path; /* "rma" or "am" (kvx_peer_transport) */
    double bps;            /* batch * chunk / lat_p50 */
    uint64_t lat_p50_ns, lat_p99_ns;
    int have_phases; /* phase_p50_ns holds figures */
    uint64_t phase_p50_ns[KVXI_PH_N];
} kvxi_sweep_row_t;

/* `kvx-bench sweep ...`: returns the exit code (0, 1 failed, 2 bad input). */
int kvxi_sweep_main(int argc, char **argv);

/* Runs every row of ROWS (all of one chunk size, skipped ones left alone):
 * forks the target, connects, pushes, reaps the target. Returns 0, or 1
 * after printing why (target did not start, connection or a push failed). */
int kvxi_sweep_run_chunk(const kvxi_sweep_opts_t *o, size_t chunk,
                         kvxi_sweep_row_t *rows, int nrows);

/* "alloc", "post", "data", "commit" */
const char *kvxi_sweep_phase_name(int phase);

#endif
