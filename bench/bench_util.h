/*
 * kvx-bench: command-line and output helpers its commands share.
 */
#ifndef KVX_BENCH_UTIL_H
#define KVX_BENCH_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Prints "kvx-bench: " FMT (with ARG) on stderr; returns 2 (bad input). */
int kvxi_bench_bad(const char *fmt, const char *arg);

/* One size: decimal bytes with an optional K, M or G (binary) suffix,
 * 1 .. max. Returns 0, or -1 when S is not one. */
int kvxi_bench_parse_size(const char *s, size_t max, size_t *size_p);

/* A comma-separated list of sizes (each as above), at most cap entries.
 * Returns 0 with *n_p set, or -1. */
int kvxi_bench_parse_list(const char *list, size_t max, size_t *out, int cap,
                          int *n_p);

/* "tcp" or "shm": sets *transport_p and the UCX_TLS for it in *tls_p.
 * Returns 0, or -1 for anything else. */
int kvxi_bench_parse_transport(const char *v, const char **transport_p,
                               const char **tls_p);

/* A decimal number 1 .. max. Returns 0 or -1. */
int kvxi_bench_parse_ulong(const char *s, unsigned long max,
                           unsigned long *v_p);

/* --name VALUE or --name=VALUE at argv[*i] (advancing *i past VALUE);
 * NULL if argv[*i] is not it, or it lacks its value (*missing_p = 1). */
const char *kvxi_bench_opt_arg(int argc, char **argv, int *i, const char *name,
                               int *missing_p);

/* The node tuning of a run (--poll-us, --am-chunk), applied to both
 * nodes (bench_pair.c) and written into the JSON's environment. */
typedef struct kvxi_bench_tuning {
    unsigned long poll_us;  /* kvx_node_params_t::poll_us */
    unsigned long am_chunk; /* kvx_node_params_t::am_chunk */
    int path;               /* kvx_node_params_t::transport (--path) */
} kvxi_bench_tuning_t;

extern kvxi_bench_tuning_t kvxi_bench_tuning;

/* --poll-us US, --am-chunk SIZE or --path auto|am|rma at argv[*i]: 1 when
 * it was one (stored in
 * kvxi_bench_tuning), 0 when not, 2 after a message on bad input. */
int kvxi_bench_parse_tuning(int argc, char **argv, int *i);

/* "path auto, poll 100 us, AM chunk 4M" (the tuning, for headers) */
const char *kvxi_bench_tuning_str(char *buf, size_t len);

/* Writes all of BUF to FD (a pipe or socket; no SIGPIPE from a socket):
 * 0, or -1. */
int kvxi_bench_write_all(int fd, const void *buf, size_t len);

/* Reads LEN bytes from FD before DEADLINE_NS (kvx_clock_monotonic_ns()):
 * 0, or -1 (EOF, error or too late). */
int kvxi_bench_read_all(int fd, void *buf, size_t len, uint64_t deadline_ns);

/* 4096 -> "4K", 1048576 -> "1M", 1000 -> "1000" */
const char *kvxi_bench_size_str(size_t size, char *buf, size_t len);

/* Writes S as a JSON string literal. */
void kvxi_bench_json_str(FILE *f, const char *s);

/* Opens @p path and writes the head every kvx-bench JSON file shares: the
 * tool, @p command and the environment (transport, UCX_TLS, devices, UCX
 * version, @p cpus, kvx version), up to the comma after "env". NULL (with
 * a message) if the file cannot be written. */
FILE *kvxi_bench_json_open(const char *path, const char *command,
                           const char *transport, const char *tls, long cpus);

#endif
