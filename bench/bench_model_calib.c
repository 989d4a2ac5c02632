/*
 * kvx-bench model, the calibrations that give its figures a scale, all in
 * the same run as the workload: one request pushed whole (the link and
 * request rates), one request pushed layer by layer with no compute (a
 * layer's transfer time as the layer-wise path really sends it), and the
 * raw figure the goals name (ucx_perftest ucp_am_bw at 1 MiB over tcp, a
 * memcpy of one request's bytes over shm).
 */
#include "bench_baseline.h"
#include "bench_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CALIB_DEADLINE_MS 120000
#define BASE_SIZE (1u << 20)
#define BASE_ITERS 100
#define BASE_TIMEOUT_S 60

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static kvx_status_t start(kvxi_pair_t *p, const kvx_block_ref_t *refs,
                          uint32_t nb, uint64_t id, uint32_t flags,
                          kvx_xfer_h *x_p)
{
    kvx_xfer_params_t xp = {
        .field_mask = KVX_XFER_PARAM_FIELD_REQUEST_ID |
                      KVX_XFER_PARAM_FIELD_BLOCKS | KVX_XFER_PARAM_FIELD_FLAGS,
        .request_id = id,
        .blocks = refs,
        .n_blocks = nb,
        .flags = flags,
    };

    return kvx_node_push(p->node, p->peer, &xp, x_p);
}

/* Whole pushes (ids 1 .. KVXI_MODEL_CALIB_WHOLE): link_bps is the best data
 * phase, req_bps the median of push start to completion. */
static void calib_whole(kvxi_pair_t *p, const kvx_block_ref_t *refs,
                        uint32_t nb, kvxi_model_result_t *r)
{
    double req[KVXI_MODEL_CALIB_WHOLE];
    int n = 0;

    for (uint64_t id = 1; id <= KVXI_MODEL_CALIB_WHOLE; id++) {
        kvx_xfer_attr_t a;
        kvx_xfer_h x;

        if (start(p, refs, nb, id, 0, &x) != KVX_OK) {
            continue;
        }
        if (kvx_xfer_wait(x, CALIB_DEADLINE_MS) == KVX_OK &&
            kvx_xfer_query(x, &a) == KVX_OK && a.data_ns > 0 &&
            a.elapsed_ns > 0) {
            double bps = (double)a.bytes_sent * 1e9 / (double)a.data_ns;

            r->link_bps = bps > r->link_bps ? bps : r->link_bps;
            req[n++] = (double)a.bytes_sent * 1e9 / (double)a.elapsed_ns;
        }
        kvx_xfer_release(x);
    }
    if (n > 0) {
        qsort(req, (size_t)n, sizeof(*req), cmp_double);
        r->req_bps = req[n / 2];
    }
}

/* Layer-wise pushes with every layer announced as soon as the allocation
 * is answered, one announcement (one post) per layer: the rate at which
 * the layer-wise path moves data. Best of KVXI_MODEL_CALIB_LAYERED. */
static void calib_layered(kvxi_pair_t *p, const kvx_block_ref_t *refs,
                          uint32_t nb, uint32_t layers, kvxi_model_result_t *r)
{
    for (uint64_t i = 0; i < KVXI_MODEL_CALIB_LAYERED; i++) {
        uint64_t id = KVXI_MODEL_CALIB_WHOLE + 1 + i, t0, t1;
        kvx_xfer_attr_t a = {0};
        kvx_status_t st;
        kvx_xfer_h x;

        if (start(p, refs, nb, id, KVX_XFER_FLAG_LAYERWISE, &x) != KVX_OK) {
            continue;
        }
        /* the data phase starts with the allocation's answer */
        while ((st = kvx_xfer_query(x, &a)) == KVX_OK &&
               a.status == KVX_INPROGRESS && a.alloc_ns == 0) {
            kvx_node_progress(p->node, 0);
        }
        t0 = kvx_clock_monotonic_ns(NULL);
        for (uint32_t l = 1; l <= layers; l++) {
            kvx_xfer_layer_ready(x, l);
            kvx_node_progress(p->node, 0);
        }
        st = kvx_xfer_wait(x, CALIB_DEADLINE_MS);
        t1 = kvx_clock_monotonic_ns(NULL);
        if (st == KVX_OK && kvx_xfer_query(x, &a) == KVX_OK && t1 > t0) {
            double bps = (double)a.bytes_sent * 1e9 / (double)(t1 - t0);

            r->layered_bps = bps > r->layered_bps ? bps : r->layered_bps;
        }
        kvx_xfer_release(x);
    }
}

void kvxi_model_calibrate(const kvxi_model_opts_t *o, kvxi_pair_t *p,
                          const kvx_block_ref_t *refs, kvxi_model_result_t *r)
{
    calib_whole(p, refs, r->nb, r);
    if (o->layerwise) {
        calib_layered(p, refs, r->nb, o->layers, r);
    }
}

void kvxi_model_baseline(const kvxi_model_opts_t *o, kvxi_model_result_t *r)
{
    kvxi_pt_result_t res;
    char exe[4096];

    r->base.present = 0;
    if (!o->baseline) {
        snprintf(r->base.why, sizeof(r->base.why), "--no-baseline");
        return;
    }
    if (kvxi_pair_remote != NULL) {
        snprintf(r->base.why, sizeof(r->base.why),
                 "two hosts: ucx_perftest here would measure this host's "
                 "loopback; run it between the hosts");
        return;
    }
    if (strcmp(o->transport, "shm") == 0) {
        /* kvx moves the blocks with RMA put there: memcpy speed */
        double bps = kvxi_bench_memcpy_bps(r->nb * r->block_bytes);

        r->base_what = "memcpy";
        r->base_size = r->nb * r->block_bytes;
        r->base.present = bps > 0;
        r->base.value = bps;
        if (bps <= 0) {
            snprintf(r->base.why, sizeof(r->base.why),
                     "cannot allocate two buffers of one request");
        }
        return;
    }
    r->base_what = "ucp_am_bw";
    r->base_size = BASE_SIZE;
    if (kvxi_bench_find_on_path("ucx_perftest", exe, sizeof(exe)) < 0) {
        snprintf(r->base.why, sizeof(r->base.why), "ucx_perftest not found");
        return;
    }
    kvxi_pt_run(exe, o->tls, KVXI_PT_AM_BW, BASE_SIZE, BASE_ITERS,
                BASE_TIMEOUT_S, &res);
    r->base = res;
}
