/*
 * kvx-bench baseline: the raw figures kvx is measured against. Each
 * ucx_perftest run is a server + client pair on 127.0.0.1 (a free port,
 * UCX_TLS for the transport, UCX_NET_DEVICES=lo), both bounded in time and
 * waited for by PID; memcpy is measured in this process.
 */
#ifndef KVX_BENCH_BASELINE_H
#define KVX_BENCH_BASELINE_H

#include <stddef.h>

/* The ucx_perftest tests of a baseline, in table order. */
typedef enum {
    KVXI_PT_AM_BW,
    KVXI_PT_PUT_BW,
    KVXI_PT_AM_LAT,
    KVXI_PT_COUNT,              /* the tests of `kvx-bench baseline` end here */
    KVXI_PT_GET = KVXI_PT_COUNT /* ucp_get: sweep's pulls over shm only */
} kvxi_pt_test_t;

typedef struct kvxi_pt_result {
    int present;   /* 1: value holds a figure; 0: absent, see why */
    double value;  /* bytes/s for bandwidth tests, usec for latency */
    char why[192]; /* why the figure is absent */
} kvxi_pt_result_t;

/* "ucp_am_bw", "ucp_put_bw", "ucp_am_lat", "ucp_get" */
const char *kvxi_pt_test_name(kvxi_pt_test_t test);

/* 1 when TEST reports a latency (usec), 0 for a bandwidth (bytes/s) */
int kvxi_pt_is_latency(kvxi_pt_test_t test);

/* Writes the full path of executable NAME found on $PATH into buf.
 * Returns 0 when found, -1 when not. */
int kvxi_bench_find_on_path(const char *name, char *buf, size_t len);

/* Runs one ucx_perftest test (server, then client) of SIZE bytes with
 * ITERS iterations over UCX_TLS=tls; the pair is killed after timeout_s.
 * Fills *res_p: the client's "Final:" figure, or absent with the reason. */
void kvxi_pt_run(const char *exe, const char *tls, kvxi_pt_test_t test,
                 size_t size, unsigned iters, unsigned timeout_s,
                 kvxi_pt_result_t *res_p);

/* Best of a few timed runs of memcpy of SIZE bytes between two buffers of
 * this process, in bytes/s; -1 when the buffers cannot be allocated. */
double kvxi_bench_memcpy_bps(size_t size);

#endif
