/*
 * kvx-bench sweep: the JSON file (--json) with every figure, the baseline
 * of each direction and the environment.
 */
#include "bench_baseline.h"
#include "bench_sweep.h"
#include "bench_util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static void json_num(FILE *f, const char *key, int present, double v)
{
    if (present) {
        fprintf(f, ", \"%s\": %.6g", key, v);
    } else {
        fprintf(f, ", \"%s\": null", key);
    }
}

int kvxi_sweep_write_json(const kvxi_sweep_opts_t *o,
                          const kvxi_sweep_row_t *rows, int nrows,
                          const kvxi_pt_result_t base[2][KVXI_SWEEP_MAX],
                          long cpus)
{
    FILE *f =
        kvxi_bench_json_open(o->json, "sweep", o->transport, o->tls, cpus);
    int r, p, d, n = 0;

    if (f == NULL) {
        return -1;
    }
    /* check: pushes carry checksums; pulls compare their bytes instead */
    fprintf(f,
            "  \"op\": \"%s\",\n  \"iters\": %lu,\n  \"check\": %s,\n"
            "  \"pull_check\": %s,\n",
            o->push && o->pull ? "both" : kvxi_sweep_dir_name(o), o->iters,
            o->check ? "true" : "false",
            o->check && o->pull ? "\"bytes compared, no checksums\"" : "null");
    for (d = 0; d < 2; d++) {
        fprintf(f, d ? "  \"baseline_test_pull\": " : "  \"baseline_test\": ");
        if (o->baseline && (d ? o->pull : o->push)) {
            fprintf(f, "\"%s\",\n",
                    kvxi_pt_test_name(kvxi_sweep_base_test(o, d)));
        } else {
            fprintf(f, "null,\n");
        }
    }
    fprintf(f, "  \"baseline\": [");
    for (d = 0; d < 2; d++) {
        for (r = 0; (d ? o->pull : o->push) && r < o->nchunks; r++) {
            const kvxi_pt_result_t *b = &base[d][r];

            fprintf(
                f, "%s\n    {\"dir\": \"%s\", \"test\": \"%s\", \"size\": %zu",
                n++ ? "," : "", d ? "pull" : "push",
                kvxi_pt_test_name(kvxi_sweep_base_test(o, d)), o->chunks[r]);
            json_num(f, "bytes_per_s", b->present, b->value);
            fprintf(f, ", \"absent\": ");
            if (b->present) {
                fprintf(f, "null}");
            } else {
                kvxi_bench_json_str(f, b->why);
                fprintf(f, "}");
            }
        }
    }
    n = 0;
    fprintf(f, "\n  ],\n  \"results\": [");
    for (r = 0; r < nrows; r++) {
        const kvxi_sweep_row_t *w = &rows[r];
        const kvxi_pt_result_t *b = &base[w->pull][w->chunk_idx];

        if (w->skipped) {
            continue;
        }
        fprintf(f,
                "%s\n    {\"dir\": \"%s\", \"chunk\": %zu, \"batch\": %zu, "
                "\"pattern\": \"%s\", \"bytes\": %zu, \"data_path\": \"%s\"",
                n++ ? "," : "", w->pull ? "pull" : "push", w->chunk, w->batch,
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
            snprintf(key, sizeof(key), "%s_p99_ns", kvxi_sweep_phase_name(p));
            json_num(f, key, w->have_phases, (double)w->phase_p99_ns[p]);
        }
        json_num(f, "baseline_bytes_per_s", b->present, b->value);
        json_num(f, "ratio", kvxi_sweep_ratio(w, b) >= 0,
                 kvxi_sweep_ratio(w, b));
        fprintf(f, "}");
    }
    fprintf(f, "\n  ],\n  \"skipped\": [");
    for (r = 0, n = 0; r < nrows; r++) {
        if (rows[r].skipped) {
            fprintf(f,
                    "%s\n    {\"dir\": \"%s\", \"chunk\": %zu, \"batch\": "
                    "%zu, \"pattern\": \"%s\", \"why\": \"one transfer over "
                    "1 GiB\"}",
                    n++ ? "," : "", rows[r].pull ? "pull" : "push",
                    rows[r].chunk, rows[r].batch,
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
