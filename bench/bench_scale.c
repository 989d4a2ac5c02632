/*
 * kvx-bench scale: options, table and JSON. The run is in
 * bench_scale_run.c, the target in bench_scale_target.c, an initiator in
 * bench_scale_proc.c.
 */
#include "bench_scale.h"
#include "bench_util.h"

#include <ucp/api/ucp.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define GOAL 0.8

static void usage(FILE *f)
{
    fprintf(f, "usage: kvx-bench scale [--transport tcp|shm] [--procs N] "
               "[--per-proc N]\n"
               "                       [--chunk SIZE] [--blocks N] "
               "[--seconds S] [--check]\n"
               "                       [--json FILE] [--path auto|am|rma] "
               "[--poll-us US]\n"
               "                       [--am-chunk SIZE]\n"
               "  one target node on 127.0.0.1; a single stream (one "
               "initiator, one push of\n"
               "  BLOCKS blocks of CHUNK bytes in flight) for S seconds, then "
               "PROCS initiator\n"
               "  processes keeping PER-PROC pushes in flight each for S "
               "seconds; prints both\n"
               "  throughputs, their ratio (goal >= 0.8) and the target's "
               "memory before and\n"
               "  after. Defaults: tcp, 4 x 16, 1M, 16 blocks, 5 s.\n");
}

static int parse_u32(int argc, char **argv, int *i, const char *name,
                     unsigned long max, uint32_t *v_p, int *missing_p,
                     int *bad_p)
{
    const char *v = kvxi_bench_opt_arg(argc, argv, i, name, missing_p);
    unsigned long u;

    if (v == NULL) {
        return 0;
    }
    if (kvxi_bench_parse_ulong(v, max, &u) < 0) {
        fprintf(stderr, "kvx-bench: bad %s '%s': 1 to %lu\n", name, v, max);
        *bad_p = 1;
    }
    *v_p = (uint32_t)u;
    return 1;
}

static int parse(int argc, char **argv, kvxi_scale_opts_t *o)
{
    const char *v;
    int i, t, missing = 0, bad = 0;

    for (i = 2; i < argc && !bad; i++) {
        if ((v = kvxi_bench_opt_arg(argc, argv, &i, "--transport", &missing))) {
            if (kvxi_bench_parse_transport(v, &o->transport, &o->tls) < 0) {
                return kvxi_bench_bad("unknown transport '%s' (tcp or shm)", v);
            }
        } else if (parse_u32(argc, argv, &i, "--procs", KVXI_SCALE_PROCS_MAX,
                             &o->procs, &missing, &bad) ||
                   parse_u32(argc, argv, &i, "--per-proc",
                             KVXI_SCALE_PER_PROC_MAX, &o->per_proc, &missing,
                             &bad) ||
                   parse_u32(argc, argv, &i, "--blocks", KVXI_SCALE_BLOCKS_MAX,
                             &o->blocks, &missing, &bad) ||
                   parse_u32(argc, argv, &i, "--seconds",
                             KVXI_SCALE_SECONDS_MAX, &o->seconds, &missing,
                             &bad)) {
            continue;
        } else if ((v = kvxi_bench_opt_arg(argc, argv, &i, "--chunk",
                                           &missing))) {
            if (kvxi_bench_parse_size(v, KVXI_SCALE_CHUNK_MAX, &o->chunk) < 0 ||
                o->chunk % 64 != 0) {
                return kvxi_bench_bad("bad --chunk '%s': 64 bytes to 64M, a "
                                      "multiple of 64",
                                      v);
            }
        } else if ((v = kvxi_bench_opt_arg(argc, argv, &i, "--json",
                                           &missing))) {
            o->json = v;
        } else if (missing) {
            return kvxi_bench_bad("%s needs a value", argv[i]);
        } else if ((t = kvxi_bench_parse_tuning(argc, argv, &i)) != 0) {
            if (t == 2) {
                return 2;
            }
        } else if (strcmp(argv[i], "--check") == 0) {
            o->check = 1;
        } else if (strcmp(argv[i], "--help") == 0 ||
                   strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            exit(0);
        } else {
            return kvxi_bench_bad("unknown option '%s' (see kvx-bench scale "
                                  "--help)",
                                  argv[i]);
        }
    }
    if (bad) {
        return 2;
    }
    if (2ull * o->procs * o->per_proc * o->blocks * o->chunk >
        KVXI_SCALE_POOL_MAX) {
        return kvxi_bench_bad("the target's pool (2 x procs x per-proc x "
                              "blocks x chunk) would be over %s",
                              "8G");
    }
    return 0;
}

static void print_phase(const char *name, const kvxi_scale_phase_t *p)
{
    char pf[32];

    snprintf(pf, sizeof(pf), "%u x %u", p->procs, p->in_flight);
    printf("%6s %17s %5s %8llu %10.1f %9.2f %9.2f %9llu\n", name, pf,
           p->data_path, (unsigned long long)p->pushes, p->bps / 1048576.0,
           p->lat_p50_ns / 1e6, p->lat_p99_ns / 1e6,
           (unsigned long long)p->failures);
}

static double ratio(const kvxi_scale_result_t *r)
{
    return r->single.bps > 0 ? r->scale.bps / r->single.bps : 0;
}

static double mib(uint64_t kib)
{
    return (double)kib / 1024.0;
}

static void print_table(const kvxi_scale_opts_t *o,
                        const kvxi_scale_result_t *r, long cpus)
{
    uint64_t lo = 0, hi = 0;
    char sz[32], tune[64];

    printf("kvx-bench scale: transport %s (UCX_TLS=%s), UCX %s, %ld CPUs, "
           "%s; pushes of %u x %s blocks, %u s per phase, checksums %s\n",
           o->transport, o->tls, ucp_get_version_string(), cpus,
           kvxi_bench_tuning_str(tune, sizeof(tune)), o->blocks,
           kvxi_bench_size_str(o->chunk, sz, sizeof(sz)), o->seconds,
           o->check ? "on" : "off");
    printf("%6s %17s %5s %8s %10s %9s %9s %9s\n", "phase", "procs x in-flight",
           "path", "pushes", "MiB/s", "p50 ms", "p99 ms", "failures");
    print_phase("single", &r->single);
    print_phase("scale", &r->scale);
    printf("ratio: %.3f (goal >= %.1f)\n", ratio(r), GOAL);
    printf("memory: target pool %.1f MiB; target VmRSS %.1f MiB before the "
           "scale phase, %.1f MiB after (growth %.1f MiB), VmHWM %.1f MiB\n",
           (double)r->pool_bytes / 1048576.0, mib(r->rss_before_kib),
           mib(r->rss_after_kib),
           mib(r->rss_after_kib) - mib(r->rss_before_kib), mib(r->hwm_kib));
    for (uint32_t i = 0; i < r->scale.procs; i++) {
        lo = i == 0 || r->scale.hwm_kib[i] < lo ? r->scale.hwm_kib[i] : lo;
        hi = r->scale.hwm_kib[i] > hi ? r->scale.hwm_kib[i] : hi;
    }
    printf("memory: initiator VmHWM %.1f to %.1f MiB (single stream: "
           "%.1f MiB)\n",
           mib(lo), mib(hi), mib(r->single.hwm_kib[0]));
    printf("target: %llu requests collected, %llu failed, %llu never "
           "arrived\n",
           (unsigned long long)r->collected, (unsigned long long)r->rx_failed,
           (unsigned long long)r->lost);
    if (r->single.failures + r->scale.failures > 0) {
        printf("FAILED: %llu push(es) failed, the first with %s\n",
               (unsigned long long)(r->single.failures + r->scale.failures),
               kvx_status_string(r->single.failures ? r->single.first_failure
                                                    : r->scale.first_failure));
    }
}

static void json_phase(FILE *f, const char *name, const kvxi_scale_phase_t *p)
{
    fprintf(f,
            "  \"%s\": {\"procs\": %u, \"in_flight\": %u, \"data_path\": "
            "\"%s\", \"pushes\": %llu, \"bytes\": %llu, \"seconds\": %.6f, "
            "\"bytes_per_s\": %.6g, \"lat_p50_ns\": %llu, \"lat_p99_ns\": "
            "%llu, \"failures\": %llu, \"first_failure\": ",
            name, p->procs, p->in_flight, p->data_path,
            (unsigned long long)p->pushes, (unsigned long long)p->bytes,
            p->seconds, p->bps, (unsigned long long)p->lat_p50_ns,
            (unsigned long long)p->lat_p99_ns, (unsigned long long)p->failures);
    if (p->failures > 0) {
        kvxi_bench_json_str(f, kvx_status_string(p->first_failure));
    } else {
        fprintf(f, "null");
    }
    fprintf(f, ", \"initiator_hwm_kib\": [");
    for (uint32_t i = 0; i < p->procs; i++) {
        fprintf(f, "%s%llu", i ? ", " : "", (unsigned long long)p->hwm_kib[i]);
    }
    fprintf(f, "]},\n");
}

static int write_json(const kvxi_scale_opts_t *o, const kvxi_scale_result_t *r,
                      long cpus)
{
    FILE *f =
        kvxi_bench_json_open(o->json, "scale", o->transport, o->tls, cpus);

    if (f == NULL) {
        return -1;
    }
    fprintf(f,
            "  \"procs\": %u, \"per_proc\": %u, \"chunk\": %zu, \"blocks\": "
            "%u,\n  \"push_bytes\": %llu, \"seconds\": %u, \"check\": %s,\n",
            o->procs, o->per_proc, o->chunk, o->blocks,
            (unsigned long long)o->blocks * o->chunk, o->seconds,
            o->check ? "true" : "false");
    json_phase(f, "single", &r->single);
    json_phase(f, "scale", &r->scale);
    fprintf(f, "  \"ratio\": %.6g, \"goal\": %.1f,\n", ratio(r), GOAL);
    fprintf(f,
            "  \"memory\": {\"target_pool_bytes\": %llu, "
            "\"target_rss_before_kib\": %llu, \"target_rss_after_kib\": %llu, "
            "\"target_rss_growth_kib\": %lld, \"target_hwm_kib\": %llu},\n",
            (unsigned long long)r->pool_bytes,
            (unsigned long long)r->rss_before_kib,
            (unsigned long long)r->rss_after_kib,
            (long long)r->rss_after_kib - (long long)r->rss_before_kib,
            (unsigned long long)r->hwm_kib);
    fprintf(f,
            "  \"target\": {\"collected\": %llu, \"failed\": %llu, "
            "\"never_arrived\": %llu}\n}\n",
            (unsigned long long)r->collected, (unsigned long long)r->rx_failed,
            (unsigned long long)r->lost);
    if (fclose(f) != 0) {
        fprintf(stderr, "kvx-bench: cannot write %s: %s\n", o->json,
                strerror(errno));
        return -1;
    }
    return 0;
}

int kvxi_scale_main(int argc, char **argv)
{
    static kvxi_scale_opts_t o = {
        .transport = "tcp",
        .tls = "tcp",
        .procs = 4,
        .per_proc = 16,
        .chunk = 1 << 20,
        .blocks = 16,
        .seconds = 5,
    };
    static kvxi_scale_result_t r;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int rc = parse(argc, argv, &o);

    if (rc != 0) {
        return rc;
    }
    snprintf((char *)o.secret, sizeof(o.secret), "%08lx%07lx",
             (unsigned long)getpid(), (unsigned long)time(NULL) & 0xfffffff);
    if (kvxi_scale_run(&o, &r) != 0) {
        return 1;
    }
    print_table(&o, &r, cpus);
    if (o.json != NULL && write_json(&o, &r, cpus) < 0) {
        return 1;
    }
    return r.single.failures + r.scale.failures > 0 ? 1 : 0;
}
