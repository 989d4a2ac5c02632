/*
 * kvx-bench scale: many concurrent pushes from several initiator processes
 * to one target node on this host, against a single stream (issue 4: 64
 * requests from 4 processes keep >= 0.8x the single-stream throughput,
 * with memory that stays bounded).
 */
#ifndef KVX_BENCH_SCALE_H
#define KVX_BENCH_SCALE_H

#include <kvx/kvx.h>

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define KVXI_SCALE_PROCS_MAX 64
#define KVXI_SCALE_PER_PROC_MAX 1024
#define KVXI_SCALE_CHUNK_MAX (64u << 20)
#define KVXI_SCALE_BLOCKS_MAX 65536
#define KVXI_SCALE_SECONDS_MAX 3600
#define KVXI_SCALE_POOL_MAX (8ull << 30) /* the target's pool, bytes */
#define KVXI_SCALE_LAT_MAX (1u << 20)    /* latencies kept per process */

typedef struct kvxi_scale_opts {
    const char *transport; /* "tcp" or "shm" */
    const char *tls;       /* its UCX_TLS */
    uint32_t procs;        /* initiator processes of the scale phase */
    uint32_t per_proc;     /* pushes each keeps in flight */
    size_t chunk;          /* block bytes */
    uint32_t blocks;       /* blocks per push */
    uint32_t seconds;      /* per phase */
    int check;             /* KVX_XFER_FLAG_CHECKSUM on every push */
    const char *json;
    unsigned char secret[16]; /* the run's handshake secret */
} kvxi_scale_opts_t;

/* One phase: PROCS initiators with IN_FLIGHT pushes each. */
typedef struct kvxi_scale_phase {
    uint32_t procs, in_flight;
    uint64_t pushes, bytes, failures; /* failures: pushes that did not end OK */
    kvx_status_t first_failure;       /* KVX_OK when none */
    double seconds;                   /* first start to last completion */
    double bps;                       /* bytes / seconds */
    uint64_t lat_p50_ns, lat_p99_ns;  /* over every process's pushes */
    const char *data_path;            /* "am" or "rma" */
    uint64_t hwm_kib[KVXI_SCALE_PROCS_MAX]; /* each initiator's VmHWM */
} kvxi_scale_phase_t;

typedef struct kvxi_scale_result {
    kvxi_scale_phase_t single, scale;
    uint64_t pool_bytes;             /* the target's pool */
    uint64_t rss_before_kib;         /* target VmRSS before the scale phase */
    uint64_t rss_after_kib, hwm_kib; /* target VmRSS, VmHWM after it */
    uint64_t collected, rx_failed, lost; /* the target's requests (both
                                            phases and warm-ups) */
} kvxi_scale_result_t;

/* The target's lanes: lane 0 is the single stream, lane 1 + i initiator i
 * of the scale phase; lane L's request ids are (L + 1) << 40 | 1, 2, ... */
static inline uint64_t kvxi_scale_req_id(uint32_t lane, uint64_t seq)
{
    return ((uint64_t)(lane + 1) << 40) | seq;
}

/* `kvx-bench scale ...`: returns the exit code (0, 1 failed, 2 bad input). */
int kvxi_scale_main(int argc, char **argv);

/* Runs both phases and fills R. Returns 0 (failures are counted in R), or
 * 1 after printing why (the target did not start, an initiator could not
 * connect or died, a phase did not end in time). Every process it started
 * is killed and reaped before it returns. */
int kvxi_scale_run(const kvxi_scale_opts_t *o, kvxi_scale_result_t *r);

/* The target child: never returns. Listens on 127.0.0.1:0, writes its
 * address (or "ERR why") on FD, collects every request of NLANES lanes
 * (lane 0 with one push in flight, the others PER_PROC) in any order and
 * unpins their blocks. A byte 'S' on FD asks for "collected C failed F
 * lost L"; EOF ends it. */
void kvxi_scale_target_main(const kvxi_scale_opts_t *o, uint32_t num_blocks,
                            uint32_t nlanes, int fd);

/* What an initiator child sends its parent after the phase, followed by
 * NLAT latencies (uint64_t, ns). */
typedef struct kvxi_scale_report {
    uint64_t pushes, bytes, failures;
    uint64_t start_ns, end_ns; /* CLOCK_MONOTONIC: first push, last end */
    uint64_t hwm_kib, nlat;
    int32_t first_failure; /* kvx_status_t */
    int32_t transport;     /* kvx_transport_t of the peer */
} kvxi_scale_report_t;

/* The setup message of an initiator: 'R' (ready) or 'E' and why. */
typedef struct kvxi_scale_hello {
    char what; /* 'R' or 'E' */
    char why[199];
} kvxi_scale_hello_t;

/* An initiator child: never returns. Connects to ADDR, pushes once to warm
 * up, writes its hello on OUT, waits for EOF on GO, then keeps IN_FLIGHT
 * pushes of o->blocks blocks in flight on lane LANE for o->seconds, and
 * writes its report on OUT. */
void kvxi_scale_initiator_main(const kvxi_scale_opts_t *o, const char *addr,
                               uint32_t lane, uint32_t in_flight, int go,
                               int out);

/* The processes' log callback: "kvx-bench scale ARG: [level] msg". */
void kvxi_scale_log_cb(kvx_log_level_t level, const char *msg, void *arg);

/* Field NAME ("VmRSS", "VmHWM") of /proc/PID/status in KiB (0: self), or 0
 * when it cannot be read. */
uint64_t kvxi_scale_proc_kib(pid_t pid, const char *name);

#endif
