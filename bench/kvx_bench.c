/*
 * kvx-bench: kvx's figures next to the raw transport's, in one run (issue 4).
 * `baseline`: per size, ucx_perftest ucp_am_bw, ucp_put_bw and ucp_am_lat on
 * 127.0.0.1, and a memcpy; `sweep` (bench_sweep.c): kvx pushes per chunk
 * size, batch and block pattern, with the ratio to the raw figure;
 * `model` (bench_model.c): preset-shaped requests with dedupe and
 * layer-wise streaming; `scale` (bench_scale.c): concurrent pushes from
 * several initiator processes against a single stream. See
 * docs/bench.md (figures: docs/performance.md).
 */
#include "bench_baseline.h"
#include "bench_model.h"
#include "bench_pair.h"
#include "bench_rawam.h"
#include "bench_scale.h"
#include "bench_sweep.h"
#include "bench_util.h"

#include <ucp/api/ucp.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_SIZES 32
#define MAX_SIZE ((size_t)1 << 30)
#define MAX_ITERS 10000000UL
#define PERFTEST "ucx_perftest"

typedef struct bench_row {
    size_t size;
    kvxi_pt_result_t pt[KVXI_PT_COUNT];
    double memcpy_bps; /* < 0: could not allocate */
} bench_row_t;

typedef struct baseline_opts {
    const char *transport; /* "tcp" or "shm" */
    const char *tls;       /* its UCX_TLS */
    size_t sizes[MAX_SIZES];
    int nsizes;
    unsigned long iters;
    unsigned long timeout_s;
    const char *json;
} baseline_opts_t;

static void usage(FILE *f)
{
    fprintf(f, "usage: kvx-bench baseline [--transport tcp|shm] "
               "[--sizes 4K,64K,1M,4M]\n"
               "                          [--iters N] [--timeout S] "
               "[--json FILE]\n"
               "       kvx-bench sweep --help\n"
               "       kvx-bench model --help\n"
               "       kvx-bench scale --help\n"
               "       kvx-bench target --listen HOST:PORT\n"
               "       kvx-bench --help\n"
               "  baseline  ucx_perftest (ucp_am_bw, ucp_put_bw, ucp_am_lat) "
               "and memcpy per size\n"
               "  sweep     kvx push per chunk size x batch x pattern, with "
               "its ratio to ucx_perftest\n"
               "  model     preset-shaped requests: dedupe, layer-wise, "
               "latency (model --help)\n"
               "  scale     4 initiator processes x 16 pushes in flight vs a "
               "single stream (scale --help)\n");
}

static int parse_baseline(int argc, char **argv, baseline_opts_t *o)
{
    const char *v;
    int i, missing = 0;

    for (i = 2; i < argc; i++) {
        if ((v = kvxi_bench_opt_arg(argc, argv, &i, "--transport", &missing))) {
            if (kvxi_bench_parse_transport(v, &o->transport, &o->tls) < 0) {
                return kvxi_bench_bad("unknown transport '%s' (tcp or shm)", v);
            }
        } else if ((v = kvxi_bench_opt_arg(argc, argv, &i, "--sizes",
                                           &missing))) {
            if (kvxi_bench_parse_list(v, MAX_SIZE, o->sizes, MAX_SIZES,
                                      &o->nsizes) < 0) {
                return kvxi_bench_bad(
                    "bad size list '%s': sizes are 1 byte to 1G, "
                    "e.g. 4K,64K,1M (at most 32)",
                    v);
            }
        } else if ((v = kvxi_bench_opt_arg(argc, argv, &i, "--iters",
                                           &missing))) {
            if (kvxi_bench_parse_ulong(v, MAX_ITERS, &o->iters) < 0) {
                return kvxi_bench_bad("bad --iters '%s': 1 to 10000000", v);
            }
        } else if ((v = kvxi_bench_opt_arg(argc, argv, &i, "--timeout",
                                           &missing))) {
            if (kvxi_bench_parse_ulong(v, 3600, &o->timeout_s) < 0) {
                return kvxi_bench_bad("bad --timeout '%s': 1 to 3600 seconds",
                                      v);
            }
        } else if ((v = kvxi_bench_opt_arg(argc, argv, &i, "--json",
                                           &missing))) {
            o->json = v;
        } else if (missing) {
            return kvxi_bench_bad("%s needs a value", argv[i]);
        } else if (strcmp(argv[i], "--help") == 0 ||
                   strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            exit(0);
        } else {
            return kvxi_bench_bad("unknown option '%s' (see kvx-bench --help)",
                                  argv[i]);
        }
    }
    return 0;
}

static void print_table(const baseline_opts_t *o, const bench_row_t *rows,
                        long cpus)
{
    char sz[32];
    int r, t;

    printf("kvx-bench baseline: transport %s (UCX_TLS=%s), UCX %s, %ld CPUs, "
           "%lu iterations\n",
           o->transport, o->tls, ucp_get_version_string(), cpus, o->iters);
    printf("%8s %14s %14s %12s %14s\n", "size", "am_bw MiB/s", "put_bw MiB/s",
           "am_lat usec", "memcpy MiB/s");
    for (r = 0; r < o->nsizes; r++) {
        printf("%8s", kvxi_bench_size_str(rows[r].size, sz, sizeof(sz)));
        for (t = 0; t < KVXI_PT_COUNT; t++) {
            const kvxi_pt_result_t *p = &rows[r].pt[t];
            int w = kvxi_pt_is_latency((kvxi_pt_test_t)t) ? 12 : 14;

            if (!p->present) {
                printf(" %*s", w, "absent");
            } else if (kvxi_pt_is_latency((kvxi_pt_test_t)t)) {
                printf(" %*.2f", w, p->value);
            } else {
                printf(" %*.1f", w, p->value / 1048576.0);
            }
        }
        if (rows[r].memcpy_bps < 0) {
            printf(" %14s\n", "absent");
        } else {
            printf(" %14.1f\n", rows[r].memcpy_bps / 1048576.0);
        }
    }
    for (r = 0; r < o->nsizes; r++) {
        for (t = 0; t < KVXI_PT_COUNT; t++) {
            if (!rows[r].pt[t].present) {
                printf("absent: %s at %s: %s\n",
                       kvxi_pt_test_name((kvxi_pt_test_t)t),
                       kvxi_bench_size_str(rows[r].size, sz, sizeof(sz)),
                       rows[r].pt[t].why);
            }
        }
    }
}

static const char *const json_keys[KVXI_PT_COUNT] = {
    "am_bw_bytes_per_s", "put_bw_bytes_per_s", "am_lat_usec"};

static int write_json(const baseline_opts_t *o, const bench_row_t *rows,
                      long cpus)
{
    FILE *f =
        kvxi_bench_json_open(o->json, "baseline", o->transport, o->tls, cpus);
    int r, t;

    if (f == NULL) {
        return -1;
    }
    fprintf(f, "  \"iters\": %lu,\n  \"results\": [\n", o->iters);
    for (r = 0; r < o->nsizes; r++) {
        const bench_row_t *row = &rows[r];
        int absent = 0;

        fprintf(f, "    {\"size\": %zu", row->size);
        for (t = 0; t < KVXI_PT_COUNT; t++) {
            if (!row->pt[t].present) {
                fprintf(f, ", \"%s\": null", json_keys[t]);
                absent = 1;
            } else {
                fprintf(f, ", \"%s\": %.6g", json_keys[t], row->pt[t].value);
            }
        }
        if (row->memcpy_bps < 0) {
            fprintf(f, ", \"memcpy_bytes_per_s\": null");
        } else {
            fprintf(f, ", \"memcpy_bytes_per_s\": %.6g", row->memcpy_bps);
        }
        fprintf(f, ", \"absent\": {");
        for (t = 0; absent && t < KVXI_PT_COUNT; t++) {
            if (!row->pt[t].present) {
                fprintf(f, "%s\"%s\": ", absent++ > 1 ? ", " : "",
                        kvxi_pt_test_name((kvxi_pt_test_t)t));
                kvxi_bench_json_str(f, row->pt[t].why);
            }
        }
        fprintf(f, "}}%s\n", r + 1 < o->nsizes ? "," : "");
    }
    fprintf(f, "  ]\n}\n");
    if (fclose(f) != 0) {
        fprintf(stderr, "kvx-bench: cannot write %s: %s\n", o->json,
                strerror(errno));
        return -1;
    }
    return 0;
}

static int run_baseline(const baseline_opts_t *o)
{
    static bench_row_t rows[MAX_SIZES];
    char exe[4096];
    int found = kvxi_bench_find_on_path(PERFTEST, exe, sizeof(exe)) == 0;
    int progress = isatty(STDERR_FILENO), r, t, step = 0;
    int steps = o->nsizes * (KVXI_PT_COUNT + 1);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    char sz[32];

    for (r = 0; r < o->nsizes; r++) {
        rows[r].size = o->sizes[r];
        for (t = 0; t < KVXI_PT_COUNT; t++) {
            kvxi_pt_result_t *p = &rows[r].pt[t];

            if (progress) {
                fprintf(stderr, "\r[%d/%d] %s %s ...   ", ++step, steps,
                        kvxi_pt_test_name((kvxi_pt_test_t)t),
                        kvxi_bench_size_str(o->sizes[r], sz, sizeof(sz)));
            }
            if (found) {
                kvxi_pt_run(exe, o->tls, (kvxi_pt_test_t)t, o->sizes[r],
                            (unsigned)o->iters, (unsigned)o->timeout_s, p);
            } else {
                memset(p, 0, sizeof(*p));
                snprintf(p->why, sizeof(p->why), PERFTEST " not found");
            }
        }
        if (progress) {
            fprintf(stderr, "\r[%d/%d] memcpy %s ...        ", ++step, steps,
                    kvxi_bench_size_str(o->sizes[r], sz, sizeof(sz)));
        }
        rows[r].memcpy_bps = kvxi_bench_memcpy_bps(o->sizes[r]);
    }
    if (progress) {
        fprintf(stderr, "\r%60s\r", "");
    }
    print_table(o, rows, cpus);
    if (o->json != NULL && write_json(o, rows, cpus) < 0) {
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    baseline_opts_t o = {
        .transport = "tcp",
        .tls = "tcp",
        .sizes = {4 << 10, 64 << 10, 1 << 20, 4 << 20},
        .nsizes = 4,
        .iters = 100,
        .timeout_s = 60,
    };
    int rc;

    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "sweep") == 0) {
        return kvxi_sweep_main(argc, argv);
    }
    if (strcmp(argv[1], "model") == 0) {
        return kvxi_model_main(argc, argv);
    }
    if (strcmp(argv[1], "scale") == 0) {
        return kvxi_scale_main(argc, argv);
    }
    if (strcmp(argv[1], "target") == 0) {
        return kvxi_target_main(argc, argv);
    }
    if (strcmp(argv[1], "rawam") == 0) { /* hidden: rawam --help */
        return kvxi_rawam_main(argc, argv);
    }
    if (strcmp(argv[1], "baseline") != 0) {
        return kvxi_bench_bad("unknown command '%s' (see kvx-bench --help)",
                              argv[1]);
    }
    rc = parse_baseline(argc, argv, &o);
    return rc != 0 ? rc : run_baseline(&o);
}
