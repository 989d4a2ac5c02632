/*
 * kvx-bench model: options, table and JSON (the run: bench_model_run.c).
 */
#include "bench_model.h"
#include "bench_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: kvx-bench model [--preset NAME] [--transport tcp|shm] "
            "[--prompt TOKENS]\n"
            "         [--requests N] [--concurrency C] "
            "[--block-tokens 16|32|64|128]\n"
            "         [--shared-prefix RATIO] [--layerwise] "
            "[--layer-compute-us U]\n"
            "         [--layers N] [--check] [--no-baseline] [--json FILE]\n"
            "         [--path auto|am|rma] [--poll-us US] [--am-chunk SIZE]\n"
            "         [--target HOST:PORT]\n"
            "  presets: llama-3.1-8b (default), llama-3.1-70b, "
            "qwen3-235b-a22b, deepseek-v3\n"
            "  (and the kvx CLI's short names: llama-8b, ..., tiny)\n");
}

static int parse_ratio(const char *s, double *v_p)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(v >= 0.0 && v <= 1.0)) {
        return -1;
    }
    *v_p = v;
    return 0;
}

static int parse(int argc, char **argv, kvxi_model_opts_t *o)
{
    unsigned long u;
    const char *v;
    int i, t, missing = 0;

    for (i = 2; i < argc; i++) {
        if ((v = kvxi_bench_opt_arg(argc, argv, &i, "--preset", &missing))) {
            if ((o->model = cli_model_find(v)) == NULL) {
                return kvxi_bench_bad("unknown preset '%s' (see --help)", v);
            }
        } else if ((v = kvxi_bench_opt_arg(argc, argv, &i, "--transport",
                                           &missing))) {
            if (kvxi_bench_parse_transport(v, &o->transport, &o->tls) < 0) {
                return kvxi_bench_bad("unknown transport '%s' (tcp or shm)", v);
            }
        } else if ((v = kvxi_bench_opt_arg(argc, argv, &i, "--prompt",
                                           &missing))) {
            if (kvxi_bench_parse_ulong(v, 1u << 20, &u) < 0) {
                return kvxi_bench_bad("bad --prompt '%s': 1 to 1048576", v);
            }
            o->prompt = (uint32_t)u;
        } else if ((v = kvxi_bench_opt_arg(argc, argv, &i, "--requests",
                                           &missing))) {
            if (kvxi_bench_parse_ulong(v, 65536, &u) < 0) {
                return kvxi_bench_bad("bad --requests '%s': 1 to 65536", v);
            }
            o->requests = (uint32_t)u;
        } else if ((v = kvxi_bench_opt_arg(argc, argv, &i, "--concurrency",
                                           &missing))) {
            if (kvxi_bench_parse_ulong(v, 1024, &u) < 0) {
                return kvxi_bench_bad("bad --concurrency '%s': 1 to 1024", v);
            }
            o->concurrency = (uint32_t)u;
        } else if ((v = kvxi_bench_opt_arg(argc, argv, &i, "--block-tokens",
                                           &missing))) {
            if (kvxi_bench_parse_ulong(v, 128, &u) < 0 ||
                (u != 16 && u != 32 && u != 64 && u != 128)) {
                return kvxi_bench_bad("bad --block-tokens '%s': 16, 32, 64 "
                                      "or 128",
                                      v);
            }
            o->block_tokens = (uint32_t)u;
        } else if ((v = kvxi_bench_opt_arg(argc, argv, &i, "--shared-prefix",
                                           &missing))) {
            if (parse_ratio(v, &o->shared) < 0) {
                return kvxi_bench_bad("bad --shared-prefix '%s': a ratio "
                                      "0 to 1",
                                      v);
            }
        } else if ((v = kvxi_bench_opt_arg(argc, argv, &i, "--layer-compute-us",
                                           &missing))) {
            if (strcmp(v, "0") != 0 &&
                kvxi_bench_parse_ulong(v, 10000000, &o->compute_us) < 0) {
                return kvxi_bench_bad("bad --layer-compute-us '%s': 0 to "
                                      "10000000",
                                      v);
            }
        } else if ((v = kvxi_bench_opt_arg(argc, argv, &i, "--layers",
                                           &missing))) {
            if (kvxi_bench_parse_ulong(v, 1024, &u) < 0) {
                return kvxi_bench_bad("bad --layers '%s': 1 to 1024", v);
            }
            o->layers = (uint32_t)u;
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
        } else if (strcmp(argv[i], "--layerwise") == 0) {
            o->layerwise = 1;
        } else if (strcmp(argv[i], "--no-baseline") == 0) {
            o->baseline = 0;
        } else if (strcmp(argv[i], "--check") == 0) {
            o->check = 1;
        } else if (strcmp(argv[i], "--help") == 0 ||
                   strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            exit(0);
        } else {
            return kvxi_bench_bad("unknown option '%s' (see kvx-bench model "
                                  "--help)",
                                  argv[i]);
        }
    }
    if (kvxi_pair_remote != NULL && strcmp(o->transport, "shm") == 0) {
        return kvxi_bench_bad("--target %s: shared memory needs both nodes "
                              "on one host (use tcp)",
                              kvxi_pair_remote);
    }
    if (o->prompt < o->block_tokens) {
        return kvxi_bench_bad("--prompt is shorter than one block (%s)",
                              "see --block-tokens");
    }
    return 0;
}

static double ms(uint64_t ns)
{
    return (double)ns / 1e6;
}

static double ratio(uint64_t a, uint64_t b)
{
    return b ? (double)a / (double)b : 0.0;
}

/* "exact", or the wire blocks beyond (or short of) the unique ones. */
static const char *dedupe_str(const kvxi_model_result_t *r, char *buf,
                              size_t len)
{
    if (r->sent == r->unique) {
        return "exact";
    }
    snprintf(buf, len, "%+lld blocks", (long long)r->sent - r->unique);
    return buf;
}

static void print_table(const kvxi_model_opts_t *o,
                        const kvxi_model_result_t *r)
{
    char d[32], tune[96];

    printf("kvx-bench model: %s (%u layers, %s), transport %s (UCX_TLS=%s, "
           "data path %s; %s)\n",
           o->model->alias ? o->model->alias : o->model->name, o->layers,
           o->model->kv_parts == 1 ? "one latent" : "K+V", o->transport, o->tls,
           r->data_path, kvxi_bench_tuning_str(tune, sizeof(tune)));
    printf("  %u requests x %u tokens (%u blocks of %u tokens, %.1f KiB; "
           "%u shared), concurrency %u%s%s\n",
           o->requests, o->prompt, r->nb, o->block_tokens,
           (double)r->block_bytes / 1024.0, r->shared_blocks, o->concurrency,
           o->layerwise ? ", layer-wise" : "", o->check ? ", checksums" : "");
    printf("%10s %10s %10s %14s %14s %10s %10s %10s\n", "blocks", "unique",
           "hits", "logical MiB", "wire MiB", "MiB/s", "p50 ms", "p99 ms");
    printf("%10llu %10u %10llu %14.1f %14.1f %10.1f %10.3f %10.3f\n",
           (unsigned long long)r->blocks, r->unique,
           (unsigned long long)r->hits, (double)r->logical / 1048576.0,
           (double)r->wire / 1048576.0, r->bps / 1048576.0, ms(r->lat_p50_ns),
           ms(r->lat_p99_ns));
    printf("dedupe: wire blocks %llu vs unique %u: %s\n",
           (unsigned long long)r->sent, r->unique, dedupe_str(r, d, sizeof(d)));
    printf("one request, every block sent: link %.1f MiB/s (best data "
           "phase), push %.1f MiB/s (start to end, median of %d)\n",
           r->link_bps / 1048576.0, r->req_bps / 1048576.0,
           KVXI_MODEL_CALIB_WHOLE);
    if (r->base.present) {
        printf("baseline: %s of %s %.1f MiB/s; push / baseline %.3f "
               "(goal >= %s)\n",
               r->base_what, kvxi_bench_size_str(r->base_size, d, sizeof(d)),
               r->base.value / 1048576.0, r->req_bps / r->base.value,
               strcmp(r->base_what, "memcpy") == 0 ? "0.8" : "0.9");
    } else {
        printf("baseline: absent (%s)\n", r->base.why);
    }
    if (o->layerwise) {
        printf("layer-wise: %lu us compute per layer; exposed p50 %.3f ms "
               "(p99 %.3f)\n",
               o->compute_us, ms(r->exposed_p50_ns), ms(r->exposed_p99_ns));
        printf("  one layer at the link rate %.3f ms: ratio %.2f; as sent "
               "layer by layer %.3f ms: ratio %.2f (goal <= 1.5)\n",
               ms(r->layer_ns), ratio(r->exposed_p50_ns, r->layer_ns),
               ms(r->layer_sent_ns),
               ratio(r->exposed_p50_ns, r->layer_sent_ns));
    }
    if (r->failed) {
        printf("FAILED: %u of %u requests\n", r->failed, o->requests);
    }
}

static int write_json(const kvxi_model_opts_t *o, const kvxi_model_result_t *r)
{
    FILE *f = kvxi_bench_json_open(o->json, "model", o->transport, o->tls,
                                   sysconf(_SC_NPROCESSORS_ONLN));
    char d[32];

    if (f == NULL) {
        return -1;
    }
    fprintf(f,
            "  \"preset\": \"%s\", \"layers\": %u, \"kv_parts\": %u, "
            "\"kv_heads\": %u, \"head_dim\": %u, \"dtype_size\": 2,\n"
            "  \"prompt_tokens\": %u, \"requests\": %u, \"concurrency\": %u, "
            "\"block_tokens\": %u, \"shared_prefix\": %.6g,\n"
            "  \"layerwise\": %s, \"layer_compute_us\": %lu, \"check\": %s, "
            "\"data_path\": \"%s\",\n",
            o->model->alias ? o->model->alias : o->model->name, o->layers,
            o->model->kv_parts, o->model->kv_heads, o->model->head_dim,
            o->prompt, o->requests, o->concurrency, o->block_tokens, o->shared,
            o->layerwise ? "true" : "false", o->compute_us,
            o->check ? "true" : "false", r->data_path);
    fprintf(
        f,
        "  \"results\": {\"block_bytes\": %llu, \"blocks_per_request\": "
        "%u, \"shared_blocks\": %u, \"blocks\": %llu, "
        "\"unique_blocks\": %u, \"hit_blocks\": %llu, \"wire_blocks\": "
        "%llu,\n    \"logical_bytes\": %llu, \"wire_bytes\": %llu, "
        "\"dedupe\": \"%s\", \"dedupe_exact\": %s, \"failed\": %u,\n"
        "    \"bytes_per_s\": %.6g, \"link_bytes_per_s\": %.6g, "
        "\"request_bytes_per_s\": %.6g, \"layered_bytes_per_s\": %.6g,\n"
        "    \"lat_p50_ns\": %llu, \"lat_p99_ns\": %llu,\n",
        (unsigned long long)r->block_bytes, r->nb, r->shared_blocks,
        (unsigned long long)r->blocks, r->unique, (unsigned long long)r->hits,
        (unsigned long long)r->sent, (unsigned long long)r->logical,
        (unsigned long long)r->wire, dedupe_str(r, d, sizeof(d)),
        r->sent == r->unique ? "true" : "false", r->failed, r->bps, r->link_bps,
        r->req_bps, r->layered_bps, (unsigned long long)r->lat_p50_ns,
        (unsigned long long)r->lat_p99_ns);
    fprintf(f, "    \"baseline\": {\"test\": ");
    kvxi_bench_json_str(f, r->base_what != NULL ? r->base_what : "");
    fprintf(f, ", \"size\": %llu, ", (unsigned long long)r->base_size);
    if (r->base.present) {
        fprintf(f,
                "\"bytes_per_s\": %.6g, \"absent\": null}, "
                "\"request_ratio\": %.6g,\n",
                r->base.value, r->req_bps / r->base.value);
    } else {
        fprintf(f, "\"bytes_per_s\": null, \"absent\": ");
        kvxi_bench_json_str(f, r->base.why);
        fprintf(f, "}, \"request_ratio\": null,\n");
    }
    if (o->layerwise) {
        fprintf(f,
                "    \"exposed_p50_ns\": %llu, \"exposed_p99_ns\": %llu, "
                "\"layer_ns\": %llu, \"exposed_ratio\": %.6g,\n"
                "    \"layer_sent_ns\": %llu, \"exposed_ratio_sent\": "
                "%.6g}\n}\n",
                (unsigned long long)r->exposed_p50_ns,
                (unsigned long long)r->exposed_p99_ns,
                (unsigned long long)r->layer_ns,
                ratio(r->exposed_p50_ns, r->layer_ns),
                (unsigned long long)r->layer_sent_ns,
                ratio(r->exposed_p50_ns, r->layer_sent_ns));
    } else {
        fprintf(f, "    \"exposed_p50_ns\": null, \"exposed_p99_ns\": null, "
                   "\"layer_ns\": null, \"exposed_ratio\": null,\n"
                   "    \"layer_sent_ns\": null, \"exposed_ratio_sent\": "
                   "null}\n}\n");
    }
    if (fclose(f) != 0) {
        fprintf(stderr, "kvx-bench: cannot write %s: %s\n", o->json,
                strerror(errno));
        return -1;
    }
    return 0;
}

int kvxi_model_main(int argc, char **argv)
{
    kvxi_model_opts_t o = {
        .model = cli_model_find("llama-3.1-8b"),
        .transport = "tcp",
        .tls = "tcp",
        .prompt = 4096,
        .requests = 8,
        .concurrency = 2,
        .block_tokens = 16,
        .shared = 0.5,
        .baseline = 1,
    };
    kvxi_model_result_t r;
    int rc = parse(argc, argv, &o);

    if (rc != 0) {
        return rc;
    }
    if (o.layers == 0) {
        o.layers = o.model->layers;
    }
    o.progress = isatty(STDERR_FILENO);
    snprintf((char *)o.secret, sizeof(o.secret), "%08lx%07lx",
             (unsigned long)getpid(), (unsigned long)time(NULL) & 0xfffffff);
    memset(&r, 0, sizeof(r));
    rc = kvxi_model_run(&o, &r);
    if (rc == 2 || (rc != 0 && r.blocks == 0)) {
        return rc;
    }
    print_table(&o, &r);
    if (o.json != NULL && write_json(&o, &r) < 0) {
        return 1;
    }
    return rc != 0 || r.failed ? 1 : 0;
}
