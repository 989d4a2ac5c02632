/*
 * kvx-bench model: model-shaped pushes between two nodes of one host
 * (bench_pair.h): N requests of a preset's KV, a shared prefix deduped by
 * chained block keys, optionally layer by layer behind simulated prefill.
 */
#ifndef KVX_BENCH_MODEL_H
#define KVX_BENCH_MODEL_H

#include "bench_baseline.h"
#include "bench_pair.h"
#include "kvx_cli.h" /* the preset table, shared with `kvx send` */

#include <stdint.h>

typedef struct kvxi_model_opts {
    const cli_model_t *model;
    uint32_t layers; /* the preset's, or --layers */
    const char *transport, *tls;
    uint32_t prompt, requests, concurrency, block_tokens;
    double shared; /* --shared-prefix ratio, 0 .. 1 */
    int layerwise;
    unsigned long compute_us; /* per layer, with --layerwise */
    int check, progress, baseline;
    const char *json;
    unsigned char secret[16];
} kvxi_model_opts_t;

typedef struct kvxi_model_result {
    uint32_t nb;            /* blocks per request */
    uint32_t shared_blocks; /* of them, in the shared prefix */
    uint32_t unique;        /* distinct block keys of the workload */
    uint64_t block_bytes;
    uint64_t blocks, hits, sent, logical, wire;
    uint32_t failed;
    const char *data_path; /* "rma" or "am" */
    double bps;            /* wire bytes / time the waves ran */
    double link_bps;       /* one request, every block sent, data phase */
    double req_bps;        /* the same, push start to completion, median */
    double layered_bps;    /* the same, layer by layer without compute */
    kvxi_pt_result_t base; /* the raw figure of the goals (bytes/s) */
    const char *base_what; /* "ucp_am_bw" (tcp) or "memcpy" (shm) */
    uint64_t base_size;    /* its message or copy size */
    uint64_t lat_p50_ns, lat_p99_ns;
    uint64_t exposed_p50_ns, exposed_p99_ns;
    uint64_t layer_ns;      /* one layer of a wave at link_bps (median) */
    uint64_t layer_sent_ns; /* one layer of a wave at layered_bps (median) */
} kvxi_model_result_t;

/* Request ids of the calibration pushes: 1 .. WHOLE whole pushes, then
 * LAYERED layer by layer; the workload's requests follow. */
#define KVXI_MODEL_CALIB_WHOLE 5
#define KVXI_MODEL_CALIB_LAYERED 3
#define KVXI_MODEL_CALIB_IDS (KVXI_MODEL_CALIB_WHOLE + KVXI_MODEL_CALIB_LAYERED)

/* Pushes request 0's blocks (REFS, without keys) to the target: fills
 * link_bps, req_bps and, with --layerwise, layered_bps (bench_model_calib.c).
 */
void kvxi_model_calibrate(const kvxi_model_opts_t *o, kvxi_pair_t *p,
                          const kvx_block_ref_t *refs, kvxi_model_result_t *r);

/* The raw figure the goals name, in this run: base, base_what, base_size
 * (absent with --no-baseline or without ucx_perftest). */
void kvxi_model_baseline(const kvxi_model_opts_t *o, kvxi_model_result_t *r);

/* `kvx-bench model ...`: returns the exit code (0, 1 failed, 2 bad input). */
int kvxi_model_main(int argc, char **argv);

/* Runs the workload. Returns 0, 1 after printing why, 2 when it cannot
 * fit (too many blocks or bytes for one host). */
int kvxi_model_run(const kvxi_model_opts_t *o, kvxi_model_result_t *r);

#endif
