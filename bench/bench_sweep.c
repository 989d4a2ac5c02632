/*
 * kvx-bench sweep: options, the baseline at each chunk size and the table.
 * The pushes are in bench_sweep_run.c, the pulls in bench_sweep_pull.c, the
 * JSON in bench_sweep_json.c, the plot in bench_sweep_plot.c.
 */
#include "bench_baseline.h"
#include "bench_pair.h"
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
               "                       [--dir push|pull|both] [--iters N] "
               "[--check] [--no-baseline]\n"
               "                       [--json FILE] [--plot FILE.png|.svg]\n"
               "                       [--path auto|am|rma] [--poll-us US] "
               "[--am-chunk SIZE]\n"
               "                       [--target HOST:PORT]\n"
               "  kvx pushes of BATCH blocks of CHUNK bytes to a forked target "
               "node on 127.0.0.1,\n"
               "  or pulls of BATCH blocks it published; per row: bandwidth, "
               "latency p50/p99,\n"
               "  phase p50s, and the ratio to ucx_perftest at the chunk size "
               "(tcp: ucp_am_bw;\n"
               "  shm: ucp_put_bw for pushes, ucp_get for pulls). Pulls run "
               "without library\n"
               "  checksums (not supported): --check compares their bytes "
               "instead.\n");
}

static int parse(int argc, char **argv, kvxi_sweep_opts_t *o)
{
    const char *v;
    int i, c, t, missing = 0;

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
        } else if ((v = kvxi_bench_opt_arg(argc, argv, &i, "--dir",
                                           &missing))) {
            o->push = strcmp(v, "push") == 0 || strcmp(v, "both") == 0;
            o->pull = strcmp(v, "pull") == 0 || strcmp(v, "both") == 0;
            if (!o->push && !o->pull) {
                return kvxi_bench_bad("unknown direction '%s' (push, pull or "
                                      "both)",
                                      v);
            }
        } else if ((v = kvxi_bench_opt_arg(argc, argv, &i, "--plot",
                                           &missing))) {
            size_t l = strlen(v);

            if (l < 5 || (strcmp(v + l - 4, ".png") != 0 &&
                          strcmp(v + l - 4, ".svg") != 0)) {
                return kvxi_bench_bad("bad --plot '%s': a file ending in .png "
                                      "or .svg",
                                      v);
            }
            o->plot = v;
        } else if ((v = kvxi_bench_opt_arg(argc, argv, &i, "--iters",
                                           &missing))) {
            if (kvxi_bench_parse_ulong(v, MAX_ITERS, &o->iters) < 0) {
                return kvxi_bench_bad("bad --iters '%s': 1 to 100000", v);
            }
        } else if ((v = kvxi_bench_opt_arg(argc, argv, &i, "--json",
                                           &missing))) {
            o->json = v;
        } else if ((v = kvxi_bench_opt_arg(argc, argv, &i, "--target",
                                           &missing))) {
            kvxi_pair_remote = v;
        } else if (missing) {
            return kvxi_bench_bad("%s needs a value", argv[i]);
        } else if ((t = kvxi_bench_parse_tuning(argc, argv, &i)) != 0) {
            if (t == 2) {
                return 2;
            }
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
    if (kvxi_pair_remote != NULL) {
        if (o->pull) {
            return kvxi_bench_bad("--target %s: pull rows need the target "
                                  "to publish blocks first; on two hosts "
                                  "only --dir push runs",
                                  kvxi_pair_remote);
        }
        if (strcmp(o->transport, "shm") == 0) {
            return kvxi_bench_bad("--target %s: shared memory needs both "
                                  "nodes on one host (use tcp)",
                                  kvxi_pair_remote);
        }
        o->baseline = 0; /* ucx_perftest would measure this host's lo */
    }
    return 0;
}

/* The raw figure for PULL rows (else pushes) */
kvxi_pt_test_t kvxi_sweep_base_test(const kvxi_sweep_opts_t *o, int pull)
{
    if (strcmp(o->transport, "shm") != 0) {
        return KVXI_PT_AM_BW;
    }
    return pull ? KVXI_PT_GET : KVXI_PT_PUT_BW;
}

/* The baseline of each direction run at each chunk size; absent ones say
 * why. One test serving both directions runs once. */
static void run_baseline(const kvxi_sweep_opts_t *o,
                         kvxi_pt_result_t base[2][KVXI_SWEEP_MAX])
{
    char exe[4096], sz[32];
    int found = kvxi_bench_find_on_path(PERFTEST, exe, sizeof(exe)) == 0;

    for (int d = 0, c = 0; d < 2; d++, c = 0) {
        if (d == 1 && o->push &&
            kvxi_sweep_base_test(o, 1) == kvxi_sweep_base_test(o, 0)) {
            memcpy(base[1], base[0], sizeof(base[0]));
            break;
        }
        for (; (d ? o->pull : o->push) && c < o->nchunks; c++) {
            kvxi_pt_test_t t = kvxi_sweep_base_test(o, d);

            memset(&base[d][c], 0, sizeof(base[d][c]));
            if (!o->baseline) {
                snprintf(base[d][c].why, sizeof(base[d][c].why),
                         "--no-baseline");
            } else if (!found) {
                snprintf(base[d][c].why, sizeof(base[d][c].why),
                         PERFTEST " not found");
            } else {
                if (o->progress) {
                    fprintf(stderr, "\rsweep: baseline %s %s ...      ",
                            kvxi_pt_test_name(t),
                            kvxi_bench_size_str(o->chunks[c], sz, sizeof(sz)));
                }
                kvxi_pt_run(exe, o->tls, t, o->chunks[c], BASE_ITERS,
                            BASE_TIMEOUT_S, &base[d][c]);
            }
        }
    }
}

const char *kvxi_sweep_dir_name(const kvxi_sweep_opts_t *o)
{
    return o->push && o->pull ? "push+pull" : o->pull ? "pull" : "push";
}

double kvxi_sweep_ratio(const kvxi_sweep_row_t *r, const kvxi_pt_result_t *b)
{
    return b->present && b->value > 0 ? r->bps / b->value : -1;
}

static void print_table(const kvxi_sweep_opts_t *o,
                        const kvxi_sweep_row_t *rows, int nrows,
                        const kvxi_pt_result_t base[2][KVXI_SWEEP_MAX],
                        long cpus)
{
    char sz[32], tune[96];
    int r, p, d;

    printf("kvx-bench sweep: %s, transport %s (UCX_TLS=%s), UCX %s, %ld "
           "CPUs, %s, %lu iterations, checksums %s; baseline ",
           kvxi_sweep_dir_name(o), o->transport, o->tls,
           ucp_get_version_string(), cpus,
           kvxi_bench_tuning_str(tune, sizeof(tune)), o->iters,
           !o->check ? "off"
           : o->push ? "on"
                     : "off");
    if (!o->baseline) {
        printf("off\n");
    } else if (o->push && o->pull &&
               kvxi_sweep_base_test(o, 0) != kvxi_sweep_base_test(o, 1)) {
        printf("%s (push), %s (pull)\n",
               kvxi_pt_test_name(kvxi_sweep_base_test(o, 0)),
               kvxi_pt_test_name(kvxi_sweep_base_test(o, 1)));
    } else {
        printf("%s\n", kvxi_pt_test_name(kvxi_sweep_base_test(o, !o->push)));
    }
    if (o->check && o->pull) {
        printf("pulls: without checksums (KVX_ERR_NOT_SUPPORTED for pulls); "
               "--check compares every pulled byte instead\n");
    }
    printf("%4s %6s %6s %8s %5s %10s %10s %10s", "dir", "chunk", "batch",
           "pattern", "path", "MiB/s", "p50 usec", "p99 usec");
    for (p = 0; p < KVXI_PH_N; p++) {
        printf(" %7s", kvxi_sweep_phase_name(p));
    }
    printf(" %10s %6s\n", "base MiB/s", "ratio");
    for (r = 0; r < nrows; r++) {
        const kvxi_sweep_row_t *w = &rows[r];
        const kvxi_pt_result_t *b = &base[w->pull][w->chunk_idx];

        printf("%4s %6s %6zu %8s", w->pull ? "pull" : "push",
               kvxi_bench_size_str(w->chunk, sz, sizeof(sz)), w->batch,
               w->scatter ? "scatter" : "contig");
        if (w->skipped) {
            printf("  skipped: one transfer is over 1 GiB\n");
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
            printf(" %10.1f %6.3f\n", b->value / 1048576.0,
                   kvxi_sweep_ratio(w, b));
        } else {
            printf(" %10s %6s\n", "absent", "-");
        }
    }
    for (d = 0; o->baseline && d < 2; d++) {
        if (!(d ? o->pull : o->push) ||
            (d && o->push &&
             kvxi_sweep_base_test(o, 0) == kvxi_sweep_base_test(o, 1))) {
            continue; /* not run, or said already */
        }
        for (r = 0; r < o->nchunks; r++) {
            if (!base[d][r].present) {
                printf("absent: %s at %s: %s\n",
                       kvxi_pt_test_name(kvxi_sweep_base_test(o, d)),
                       kvxi_bench_size_str(o->chunks[r], sz, sizeof(sz)),
                       base[d][r].why);
            }
        }
    }
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
        .push = 1,
        .iters = 20,
        .baseline = 1,
    };
    static kvxi_sweep_row_t rows[KVXI_SWEEP_MAX * KVXI_SWEEP_MAX * 4];
    static kvxi_pt_result_t base[2][KVXI_SWEEP_MAX];
    /* C11 takes no base where a const array is wanted: the same, const */
    const kvxi_pt_result_t(*cbase)[KVXI_SWEEP_MAX] =
        (const kvxi_pt_result_t(*)[KVXI_SWEEP_MAX])base;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int rc = parse(argc, argv, &o), n = 0, c;

    if (rc != 0) {
        return rc;
    }
    o.progress = isatty(STDERR_FILENO);
    snprintf((char *)o.secret, sizeof(o.secret), "%08lx%07lx",
             (unsigned long)getpid(), (unsigned long)time(NULL) & 0xfffffff);
    /* rows by chunk, then direction: each (chunk, dir) group one run */
    for (c = 0; c < o.nchunks; c++) {
        for (int d = !o.push; d <= o.pull; d++) {
            for (int b = 0; b < o.nbatches; b++) {
                for (int s = !o.contig; s <= o.scatter; s++) {
                    kvxi_sweep_row_t *w = &rows[n++];

                    memset(w, 0, sizeof(*w));
                    w->chunk = o.chunks[c];
                    w->chunk_idx = c;
                    w->batch = o.batches[b];
                    w->scatter = s;
                    w->pull = d;
                    w->skipped = w->chunk * w->batch > KVXI_SWEEP_PUSH_MAX;
                }
            }
        }
    }
    run_baseline(&o, base);
    for (int g = 0, e; rc == 0 && g < n; g = e) {
        for (e = g; e < n && rows[e].chunk_idx == rows[g].chunk_idx &&
                    rows[e].pull == rows[g].pull;
             e++) {
        }
        rc = kvxi_sweep_run_chunk(&o, rows[g].chunk, rows + g, e - g);
    }
    if (o.progress) {
        fprintf(stderr, "\r%60s\r", "");
    }
    if (rc != 0) {
        return rc;
    }
    print_table(&o, rows, n, cbase, cpus);
    if (o.json != NULL && kvxi_sweep_write_json(&o, rows, n, cbase, cpus) < 0) {
        return 1;
    }
    if (o.plot != NULL) { /* its failure or absence leaves the exit code */
        const char *names[2] = {NULL, NULL};

        for (int d = 0; o.baseline && d < 2; d++) {
            if ((d ? o.pull : o.push) &&
                !(d && o.push &&
                  kvxi_sweep_base_test(&o, 0) == kvxi_sweep_base_test(&o, 1))) {
                names[d] = kvxi_pt_test_name(kvxi_sweep_base_test(&o, d));
            }
        }
        kvxi_sweep_plot(&o, rows, n, cbase, names);
    }
    return 0;
}
