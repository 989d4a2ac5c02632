/*
 * kvx-bench: kvx's figures next to the raw transport's, in one run (issue 4).
 * Only `baseline` so far: per size, ucx_perftest ucp_am_bw, ucp_put_bw and
 * ucp_am_lat on 127.0.0.1, and a memcpy. See docs/performance.md.
 */
#include "bench_baseline.h"

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
               "       kvx-bench --help\n"
               "  baseline  ucx_perftest (ucp_am_bw, ucp_put_bw, ucp_am_lat) "
               "and memcpy per size\n"
               "  sweep, model: not implemented yet\n");
}

static int bad(const char *fmt, const char *arg)
{
    fprintf(stderr, "kvx-bench: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    return 2;
}

/* One size: decimal bytes with an optional K, M or G (binary) suffix. */
static int parse_size(const char *s, size_t *size_p)
{
    char *end;
    unsigned long long v;
    int shift = 0;

    if (*s < '0' || *s > '9') {
        return -1;
    }
    errno = 0;
    v = strtoull(s, &end, 10);
    switch (*end) {
    case 'k':
    case 'K':
        shift = 10;
        end++;
        break;
    case 'm':
    case 'M':
        shift = 20;
        end++;
        break;
    case 'g':
    case 'G':
        shift = 30;
        end++;
        break;
    default: break;
    }
    if (errno != 0 || *end != '\0' || v == 0 || v > (MAX_SIZE >> shift)) {
        return -1;
    }
    *size_p = (size_t)v << shift;
    return 0;
}

static int parse_sizes(const char *list, baseline_opts_t *o)
{
    char item[32];
    const char *p = list;

    o->nsizes = 0;
    for (;;) {
        size_t n = strcspn(p, ",");

        if (n == 0 || n >= sizeof(item) || o->nsizes == MAX_SIZES) {
            return -1;
        }
        memcpy(item, p, n);
        item[n] = '\0';
        if (parse_size(item, &o->sizes[o->nsizes++]) < 0) {
            return -1;
        }
        if (p[n] == '\0') {
            return 0;
        }
        p += n + 1;
    }
}

static int parse_ulong(const char *s, unsigned long max, unsigned long *v_p)
{
    char *end;

    if (*s < '0' || *s > '9') {
        return -1;
    }
    errno = 0;
    *v_p = strtoul(s, &end, 10);
    return (errno || *end || *v_p == 0 || *v_p > max) ? -1 : 0;
}

/* --name VALUE or --name=VALUE at argv[*i]; NULL if argv[*i] is not it. */
static const char *opt_arg(int argc, char **argv, int *i, const char *name,
                           int *missing_p)
{
    size_t n = strlen(name);

    if (strncmp(argv[*i], name, n) != 0) {
        return NULL;
    }
    if (argv[*i][n] == '=') {
        return argv[*i] + n + 1;
    }
    if (argv[*i][n] != '\0') {
        return NULL;
    }
    if (*i + 1 >= argc) {
        *missing_p = 1;
        return NULL;
    }
    return argv[++*i];
}

static int parse_baseline(int argc, char **argv, baseline_opts_t *o)
{
    const char *v;
    int i, missing = 0;

    for (i = 2; i < argc; i++) {
        if ((v = opt_arg(argc, argv, &i, "--transport", &missing))) {
            if (strcmp(v, "tcp") == 0) {
                o->tls = "tcp";
            } else if (strcmp(v, "shm") == 0) {
                o->tls = "posix,sysv,cma,self";
            } else {
                return bad("unknown transport '%s' (tcp or shm)", v);
            }
            o->transport = v;
        } else if ((v = opt_arg(argc, argv, &i, "--sizes", &missing))) {
            if (parse_sizes(v, o) < 0) {
                return bad("bad size list '%s': sizes are 1 byte to 1G, "
                           "e.g. 4K,64K,1M (at most 32)",
                           v);
            }
        } else if ((v = opt_arg(argc, argv, &i, "--iters", &missing))) {
            if (parse_ulong(v, MAX_ITERS, &o->iters) < 0) {
                return bad("bad --iters '%s': 1 to 10000000", v);
            }
        } else if ((v = opt_arg(argc, argv, &i, "--timeout", &missing))) {
            if (parse_ulong(v, 3600, &o->timeout_s) < 0) {
                return bad("bad --timeout '%s': 1 to 3600 seconds", v);
            }
        } else if ((v = opt_arg(argc, argv, &i, "--json", &missing))) {
            o->json = v;
        } else if (missing) {
            return bad("%s needs a value", argv[i]);
        } else if (strcmp(argv[i], "--help") == 0 ||
                   strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            exit(0);
        } else {
            return bad("unknown option '%s' (see kvx-bench --help)", argv[i]);
        }
    }
    return 0;
}

/* 4096 -> "4K", 1048576 -> "1M", 1000 -> "1000" */
static const char *size_str(size_t size, char *buf, size_t len)
{
    if (size >= (1 << 30) && size % (1 << 30) == 0) {
        snprintf(buf, len, "%zuG", size >> 30);
    } else if (size >= (1 << 20) && size % (1 << 20) == 0) {
        snprintf(buf, len, "%zuM", size >> 20);
    } else if (size >= (1 << 10) && size % (1 << 10) == 0) {
        snprintf(buf, len, "%zuK", size >> 10);
    } else {
        snprintf(buf, len, "%zu", size);
    }
    return buf;
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
        printf("%8s", size_str(rows[r].size, sz, sizeof(sz)));
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
                       size_str(rows[r].size, sz, sizeof(sz)),
                       rows[r].pt[t].why);
            }
        }
    }
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') {
            fprintf(f, "\\%c", *s);
        } else if ((unsigned char)*s < 0x20) {
            fprintf(f, "\\u%04x", (unsigned char)*s);
        } else {
            fputc(*s, f);
        }
    }
    fputc('"', f);
}

static const char *const json_keys[KVXI_PT_COUNT] = {
    "am_bw_bytes_per_s", "put_bw_bytes_per_s", "am_lat_usec"};

static int write_json(const baseline_opts_t *o, const bench_row_t *rows,
                      long cpus)
{
    FILE *f = fopen(o->json, "w");
    int r, t;

    if (f == NULL) {
        fprintf(stderr, "kvx-bench: cannot write %s: %s\n", o->json,
                strerror(errno));
        return -1;
    }
    fprintf(f, "{\n  \"tool\": \"kvx-bench\",\n  \"command\": \"baseline\",\n"
               "  \"env\": {\"transport\": ");
    json_str(f, o->transport);
    fprintf(f, ", \"ucx_tls\": ");
    json_str(f, o->tls);
    fprintf(f, ", \"ucx_net_devices\": \"lo\", \"ucx_version\": ");
    json_str(f, ucp_get_version_string());
    fprintf(f, ", \"cpu_count\": %ld, \"kvx_version\": \"%s\"},\n", cpus,
            KVX_VERSION_STRING);
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
                json_str(f, row->pt[t].why);
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
                        size_str(o->sizes[r], sz, sizeof(sz)));
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
                    size_str(o->sizes[r], sz, sizeof(sz)));
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
    if (strcmp(argv[1], "sweep") == 0 || strcmp(argv[1], "model") == 0) {
        return bad("'%s' is not implemented yet (only 'baseline' is)", argv[1]);
    }
    if (strcmp(argv[1], "baseline") != 0) {
        return bad("unknown command '%s' (see kvx-bench --help)", argv[1]);
    }
    rc = parse_baseline(argc, argv, &o);
    return rc != 0 ? rc : run_baseline(&o);
}
