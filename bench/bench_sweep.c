/*
 * kvx-bench sweep: options, the baseline at each chunk size, the table and
 * the JSON. The pushes themselves are in bench_sweep_run.c.
 */
#include "bench_baseline.h"
#include "bench_sweep.h"
#include "bench_util.h"

#include <ucp/api/ucp.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_ITERS 100000UL
#define BASE_ITERS 100 /* ucx_perftest -n at each chunk size */
#define BASE_TIMEOUT_S 60
#define PERFTEST "ucx_perftest"

static void usage(FILE *f)
{
    fprintf(f, "usage: kvx-bench sweep [--transport tcp|shm] "
               "[--chunks 4K,64K,1M,4M]\n"
               "                       [--batches 1,16,256] "
               "[--pattern contig|scatter|both]\n"
               "                       [--iters N] [--check] [--no-baseline] "
               "[--json FILE]\n"
               "  kvx pushes of BATCH blocks of CHUNK bytes to a forked target "
               "node on 127.0.0.1;\n"
               "  per row: bandwidth, latency p50/p99, phase p50s, and the "
               "ratio to ucx_perftest\n"
               "  (ucp_am_bw over tcp, ucp_put_bw over shm) at the chunk size. "
               "Pull: not implemented yet.\n");
}

static int parse(int argc, char **argv, kvxi_sweep_opts_t *o)
{
    const char *v;
    int i, c, missing = 0;

    for (i = 2; i < argc; i++) {
        if ((v = kvxi_bench_opt_arg(argc, argv, &i, "--transport", &missing))) {
            if (kvxi_bench_parse_transport(v, &o->transport, &o->tls) < 0) {
                return kvxi_bench_bad("unknown transport '%s' (tcp or shm)", v);
            }
        } else if ((v = kvxi_bench_opt_arg(argc, argv, &i, "--chunks",
                                           &missing))) {
            if (kvxi_bench_parse_list(v, KVXI_SWEEP_CHUNK_MAX, o->chunks,
                                      KVXI_SWEEP_MAX, &o->nchunks) < 0) {
                return kvxi_bench_bad("bad chunk list '%s': chunks are 64 "
                                      "bytes to 64M, multiples of 64, e.g. "
                                      "4K,64K,1M (at most 32)",
                                      v);
            }
            for (c = 0; c < o->nchunks; c++) {
                if (o->chunks[c] % 64 != 0) {
                    return kvxi_bench_bad("bad chunk list '%s': a chunk is "
                                          "a multiple of 64 bytes",
                                          v);
                }
            }
        } else if ((v = kvxi_bench_opt_arg(argc, argv, &i, "--batches",
                                           &missing))) {
            if (kvxi_bench_parse_list(v, KVXI_SWEEP_BATCH_MAX, o->batches,
                                      KVXI_SWEEP_MAX, &o->nbatches) < 0) {
                return kvxi_bench_bad("bad batch list '%s': batches are 1 to "
                                      "65536 blocks, e.g. 1,16,256",
                                      v);
            }
        } else if ((v = kvxi_bench_opt_arg(argc, argv, &i, "--pattern",
                                           &missing))) {
            o->contig = strcmp(v, "contig") == 0 || strcmp(v, "both") == 0;
            o->scatter = strcmp(v, "scatter") == 0 || strcmp(v, "both") == 0;
            if (!o->contig && !o->scatter) {
                return kvxi_bench_bad("unknown pattern '%s' (contig, scatter "
                                      "or both)",
                                      v);
            }
        } else if ((v = kvxi_bench_opt_arg(argc, argv, &i, "--iters",
                                           &missing))) {
            if (kvxi_bench_parse_ulong(v, MAX_ITERS, &o->iters) < 0) {
                return kvxi_bench_bad("bad --iters '%s': 1 to 100000", v);
            }
        } else if ((v = kvxi_bench_opt_arg(argc, argv, &i, "--json",
                                           &missing))) {
            o->json = v;
        } else if (missing) {
            return kvxi_bench_bad("%s needs a value", argv[i]);
        } else if (strcmp(argv[i], "--check") == 0) {
            o->check = 1;
        } else if (strcmp(argv[i], "--no-baseline") == 0) {
            o->baseline = 0;
        } else if (strcmp(argv[i], "--help") == 0 ||
                   strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            exit(0);
        } else {
            return kvxi_bench_bad("unknown option '%s' (see kvx-bench sweep "
                                  "--help)",
                                  argv[i]);
        }
    }
    return 0;
}

static kvxi_pt_test_t base_test(const kvxi_sweep_opts_t *o)
{
    return strcmp(o->transport, "shm") == 0 ? KVXI_PT_PUT_BW : KVXI_PT_AM_BW;
}

/* The baseline at each chunk size; absent ones say why. */
static void run_baseline(const kvxi_sweep_opts_t *o, kvxi_pt_result_t *base)
{
    char exe[4096], sz[32];
    int found = kvxi_bench_find_on_path(PERFTEST, exe, sizeof(exe)) == 0;

    for (int c = 0; c < o->nchunks; c++) {
        memset(&base[c], 0, sizeof(base[c]));
        if (!o->baseline) {
            snprintf(base[c].why, sizeof(base[c].why), "--no-baseline");
        } else if (!found) {
            snprintf(base[c].why, sizeof(base[c].why), PERFTEST " not found");
        } else {
            if (o->progress) {
                fprintf(stderr, "\rsweep: baseline %s %s ...      ",
                        kvxi_pt_test_name(base_test(o)),
                        kvxi_bench_size_str(o->chunks[c], sz, sizeof(sz)));
            }
            kvxi_pt_run(exe, o->tls, base_test(o), o->chunks[c], BASE_ITERS,
                        BASE_TIMEOUT_S, &base[c]);
        }
    }
}

static double ratio(const kvxi_sweep_row_t *r, const kvxi_pt_result_t *b)
{
    return b->present && b->value > 0 ? r->bps / b->value : -1;
}

static void print_table(const kvxi_sweep_opts_t *o,
                        const kvxi_sweep_row_t *rows, int nrows,
                        const kvxi_pt_result_t *base, long cpus)
{
    char sz[32];
    int r, p;

    printf("kvx-bench sweep: push, transport %s (UCX_TLS=%s), UCX %s, %ld "
           "CPUs, %lu iterations, checksums %s; baseline %s\n",
           o->transport, o->tls, ucp_get_version_string(), cpus, o->iters,
           o->check ? "on" : "off",
           o->baseline ? kvxi_pt_test_name(base_test(o)) : "off");
    printf("%6s %6s %8s %5s %10s %10s %10s", "chunk", "batch", "pattern",
           "path", "MiB/s", "p50 usec", "p99 usec");
    for (p = 0; p < KVXI_PH_N; p++) {
        printf(" %7s", kvxi_sweep_phase_name(p));
    }
    printf(" %10s %6s\n", "base MiB/s", "ratio");
    for (r = 0; r < nrows; r++) {
        const kvxi_sweep_row_t *w = &rows[r];
        const kvxi_pt_result_t *b = &base[w->chunk_idx];

        printf("%6s %6zu %8s", kvxi_bench_size_str(w->chunk, sz, sizeof(sz)),
               w->batch, w->scatter ? "scatter" : "contig");
        if (w->skipped) {
            printf("  skipped: one push is over 1 GiB\n");
            continue;
        }
        printf(" %5s %10.1f %10.1f %10.1f", w->data_path, w->bps / 1048576.0,
               w->lat_p50_ns / 1e3, w->lat_p99_ns / 1e3);
        for (p = 0; p < KVXI_PH_N; p++) {
            if (w->have_phases) {
                printf(" %7.1f", w->phase_p50_ns[p] / 1e3);
            } else {
                printf(" %7s", "-");
            }
        }
        if (b->present) {
            printf(" %10.1f %6.3f\n", b->value / 1048576.0, ratio(w, b));
        } else {
            printf(" %10s %6s\n", "absent", "-");
        }
    }
    for (r = 0; o->baseline && r < o->nchunks; r++) {
        if (!base[r].present) {
            printf("absent: %s at %s: %s\n", kvxi_pt_test_name(base_test(o)),
                   kvxi_bench_size_str(o->chunks[r], sz, sizeof(sz)),
                   base[r].why);
        }
    }
}

static void json_num(FILE *f, const char *key, int present, double v)
{
    if (present) {
        fprintf(f, ", \"%s\": %.6g", key, v);
    } else {
        fprintf(f, ", \"%s\": null", key);
    }
}

static int write_json(const kvxi_sweep_opts_t *o, const kvxi_sweep_row_t *rows,
                      int nrows, const kvxi_pt_result_t *base, long cpus)
{
    FILE *f =
        kvxi_bench_json_open(o->json, "sweep", o->transport, o->tls, cpus);
    int r, p, n = 0;

    if (f == NULL) {
        return -1;
    }
    fprintf(f, "  \"op\": \"push\",\n  \"iters\": %lu,\n  \"check\": %s,\n",
            o->iters, o->check ? "true" : "false");
    fprintf(f, "  \"baseline_test\": ");
    if (o->baseline) {
        fprintf(f, "\"%s\",\n", kvxi_pt_test_name(base_test(o)));
    } else {
        fprintf(f, "null,\n");
    }
    fprintf(f, "  \"baseline\": [");
    for (r = 0; r < o->nchunks; r++) {
        fprintf(f, "%s\n    {\"size\": %zu", r ? "," : "", o->chunks[r]);
        json_num(f, "bytes_per_s", base[r].present, base[r].value);
        fprintf(f, ", \"absent\": ");
        if (base[r].present) {
            fprintf(f, "null}");
        } else {
            kvxi_bench_json_str(f, base[r].why);
            fprintf(f, "}");
        }
    }
    fprintf(f, "\n  ],\n  \"results\": [");
    for (r = 0; r < nrows; r++) {
        const kvxi_sweep_row_t *w = &rows[r];
        const kvxi_pt_result_t *b = &base[w->chunk_idx];

        if (w->skipped) {
            continue;
        }
        fprintf(f,
                "%s\n    {\"chunk\": %zu, \"batch\": %zu, \"pattern\": "
                "\"%s\", \"bytes\": %zu, \"data_path\": \"%s\"",
                n++ ? "," : "", w->chunk, w->batch,
                w->scatter ? "scatter" : "contig", w->chunk * w->batch,
                w->data_path);
        fprintf(f,
                ", \"bytes_per_s\": %.6g, \"lat_p50_ns\": %llu, "
                "\"lat_p99_ns\": %llu",
                w->bps, (unsigned long long)w->lat_p50_ns,
                (unsigned long long)w->lat_p99_ns);
        for (p = 0; p < KVXI_PH_N; p++) {
            char key[32];

            snprintf(key, sizeof(key), "%s_p50_ns", kvxi_sweep_phase_name(p));
            json_num(f, key, w->have_phases, (double)w->phase_p50_ns[p]);
        }
        json_num(f, "baseline_bytes_per_s", b->present, b->value);
        json_num(f, "ratio", ratio(w, b) >= 0, ratio(w, b));
        fprintf(f, "}");
    }
    fprintf(f, "\n  ],\n  \"skipped\": [");
    for (r = 0, n = 0; r < nrows; r++) {
        if (rows[r].skipped) {
            fprintf(f,
                    "%s\n    {\"chunk\": %zu, \"batch\": %zu, \"pattern\": "
                    "\"%s\", \"why\": \"one push over 1 GiB\"}",
                    n++ ? "," : "", rows[r].chunk, rows[r].batch,
                    rows[r].scatter ? "scatter" : "contig");
        }
    }
    fprintf(f, "\n  ]\n}\n");
    if (fclose(f) != 0) {
        fprintf(stderr, "kvx-bench: cannot write %s: %s\n", o->json,
                strerror(errno));
        return -1;
    }
    return 0;
}

int kvxi_sweep_main(int argc, char **argv)
{
    static kvxi_sweep_opts_t o = {
        .transport = "tcp",
        .tls = "tcp",
        .chunks = {4 << 10, 64 << 10, 1 << 20, 4 << 20},
        .nchunks = 4,
        .batches = {1, 16, 256},
        .nbatches = 3,
        .contig = 1,
        .scatter = 1,
        .iters = 20,
        .baseline = 1,
    };
    static kvxi_sweep_row_t rows[KVXI_SWEEP_MAX * KVXI_SWEEP_MAX * 2];
    static kvxi_pt_result_t base[KVXI_SWEEP_MAX];
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int rc = parse(argc, argv, &o), n = 0, c;

    if (rc != 0) {
        return rc;
    }
    o.progress = isatty(STDERR_FILENO);
    snprintf((char *)o.secret, sizeof(o.secret), "%08lx%07lx",
             (unsigned long)getpid(), (unsigned long)time(NULL) & 0xfffffff);
    for (c = 0; c < o.nchunks; c++) {
        for (int b = 0; b < o.nbatches; b++) {
            for (int s = !o.contig; s <= o.scatter; s++) {
                kvxi_sweep_row_t *w = &rows[n++];

                memset(w, 0, sizeof(*w));
                w->chunk = o.chunks[c];
                w->chunk_idx = c;
                w->batch = o.batches[b];
                w->scatter = s;
                w->skipped = w->chunk * w->batch > KVXI_SWEEP_PUSH_MAX;
            }
        }
    }
    run_baseline(&o, base);
    for (c = 0, rc = 0; rc == 0 && c < o.nchunks; c++) {
        int per = n / o.nchunks;

        rc = kvxi_sweep_run_chunk(&o, o.chunks[c], rows + c * per, per);
    }
    if (o.progress) {
        fprintf(stderr, "\r%60s\r", "");
    }
    if (rc != 0) {
        return rc;
    }
    print_table(&o, rows, n, base, cpus);
    if (o.json != NULL && write_json(&o, rows, n, base, cpus) < 0) {
        return 1;
    }
    return 0;
}
