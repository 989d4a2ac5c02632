/*
 * kvx-bench model: model-shaped pushes between two nodes of one host
 * (bench_pair.h): N requests of a preset's KV, a shared prefix deduped by
 * chained block keys, optionally layer by layer behind simulated prefill.
 */
#ifndef KVX_BENCH_MODEL_H
#define KVX_BENCH_MODEL_H

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
    int check, progress;
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
    uint64_t lat_p50_ns, lat_p99_ns;
    uint64_t exposed_p50_ns, exposed_p99_ns;
    uint64_t layer_ns; /* one layer of a wave at link_bps (median) */
} kvxi_model_result_t;

/* `kvx-bench model ...`: returns the exit code (0, 1 failed, 2 bad input). */
int kvxi_model_main(int argc, char **argv);

/* Runs the workload. Returns 0, 1 after printing why, 2 when it cannot
 * fit (too many blocks or bytes for one host). */
int kvxi_model_run(const kvxi_model_opts_t *o, kvxi_model_result_t *r);

#endif
