/*
 * kvx-bench scale: an initiator process, which keeps a sliding window of
 * pushes in flight, and the helpers the processes share (bench_scale.h).
 */
#include "bench_pair.h"
#include "bench_scale.h"
#include "bench_sweep.h"
#include "bench_util.h" /* kvxi_sweep_hold_pool */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PROGRESS_MS 10
#define DRAIN_S 60 /* past the phase, in-flight pushes are given this long */

uint64_t kvxi_scale_proc_kib(pid_t pid, const char *name)
{
    char path[64], line[256];
    size_t n = strlen(name);
    unsigned long long kib = 0;
    FILE *f;

    if (pid == 0) {
        snprintf(path, sizeof(path), "/proc/self/status");
    } else {
        snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
    }
    if ((f = fopen(path, "r")) == NULL) {
        return 0;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, name, n) == 0 && line[n] == ':') {
            kib = strtoull(line + n + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kib;
}

void kvxi_scale_log_cb(kvx_log_level_t level, const char *msg, void *arg)
{
    fprintf(stderr, "kvx-bench scale %s: [%s] %s\n", (const char *)arg,
            kvx_log_level_string(level), msg);
}

/* ---- an initiator ---- */

typedef struct slot {
    kvx_xfer_h x; /* NULL: free */
    uint64_t t0;
} slot_t;

typedef struct initiator {
    const kvxi_scale_opts_t *o;
    kvx_node_h node;
    kvx_peer_h peer;
    const kvx_block_ref_t *src;
    uint32_t lane;
    uint64_t seq;
    uint64_t *lat;
    kvxi_scale_report_t rep;
} initiator_t;

static kvx_status_t push_start(initiator_t *in, slot_t *s)
{
    kvx_xfer_params_t xp = {
        .field_mask = KVX_XFER_PARAM_FIELD_REQUEST_ID |
                      KVX_XFER_PARAM_FIELD_BLOCKS | KVX_XFER_PARAM_FIELD_FLAGS,
        .request_id = kvxi_scale_req_id(in->lane, ++in->seq),
        .blocks = in->src,
        .n_blocks = in->o->blocks,
        .flags = in->o->check ? KVX_XFER_FLAG_CHECKSUM : 0u,
    };

    s->t0 = kvx_clock_monotonic_ns(NULL);
    return kvx_node_push(in->node, in->peer, &xp, &s->x);
}

static void push_failed(initiator_t *in, kvx_status_t st)
{
    if (in->rep.failures++ == 0) {
        in->rep.first_failure = st;
    }
}

/* The timed window: IN_FLIGHT slots, refilled until the phase ends. */
static void run_window(initiator_t *in, slot_t *slots, uint32_t in_flight)
{
    uint64_t now = kvx_clock_monotonic_ns(NULL);
    uint64_t end = now + (uint64_t)in->o->seconds * 1000000000ull;
    uint64_t give_up = end + (uint64_t)DRAIN_S * 1000000000ull;
    uint64_t bytes = (uint64_t)in->o->blocks * in->o->chunk;
    uint32_t busy = 0;
    int stop = 0;

    in->rep.start_ns = in->rep.end_ns = now;
    for (;;) {
        stop |= now >= end;
        for (uint32_t i = 0; !stop && i < in_flight; i++) {
            kvx_status_t st;

            if (slots[i].x != NULL) {
                continue;
            }
            st = push_start(in, &slots[i]);
            if (st != KVX_OK) { /* the peer is unusable: stop pushing */
                slots[i].x = NULL;
                push_failed(in, st);
                stop = 1;
            } else {
                busy++;
            }
        }
        if (busy == 0 || now >= give_up) {
            break; /* give_up: the release below aborts what is left */
        }
        kvx_node_progress(in->node, PROGRESS_MS);
        now = kvx_clock_monotonic_ns(NULL);
        for (uint32_t i = 0; i < in_flight; i++) {
            kvx_status_t st = slots[i].x ? kvx_xfer_test(slots[i].x) : KVX_OK;

            if (slots[i].x == NULL || st == KVX_INPROGRESS) {
                continue;
            }
            if (st == KVX_OK) {
                in->rep.pushes++;
                in->rep.bytes += bytes;
                if (in->rep.nlat < KVXI_SCALE_LAT_MAX) {
                    in->lat[in->rep.nlat++] = now - slots[i].t0;
                }
            } else {
                push_failed(in, st);
            }
            kvx_xfer_release(slots[i].x);
            slots[i].x = NULL;
            in->rep.end_ns = now;
            busy--;
        }
    }
    for (uint32_t i = 0; i < in_flight; i++) {
        if (slots[i].x != NULL) {
            push_failed(in, KVX_ERR_TIMEOUT);
            kvx_xfer_release(slots[i].x);
        }
    }
}

/* Node, source blocks, connection and one warm-up push; "" or why not. */
static void initiator_setup(initiator_t *in, const char *addr,
                            kvx_block_ref_t *src, char *why, size_t len)
{
    const kvxi_scale_opts_t *o = in->o;
    kvx_layout_params_t lp = kvxi_pair_chunk_layout(o->chunk, o->blocks);
    char id[64];
    kvx_status_t st;
    slot_t s;

    snprintf(id, sizeof(id), "kvx-bench-scale-%u", in->lane);
    st = kvxi_pair_node_create(o->tls, o->secret, &lp, id, NULL, &in->node);
    if (st != KVX_OK) {
        snprintf(why, len, "cannot create the initiator node: %s",
                 kvx_status_string(st));
        return;
    }
    st = kvxi_sweep_hold_pool(in->node, o->chunk, o->blocks, src);
    if (st != KVX_OK) {
        snprintf(why, len, "cannot hold the source blocks: %s",
                 kvx_status_string(st));
        return;
    }
    in->src = src;
    st = kvx_node_connect(in->node, addr, &in->peer);
    if (st == KVX_OK) {
        st = kvx_peer_wait(in->peer, KVXI_PAIR_CONNECT_MS);
    }
    if (st != KVX_OK) {
        snprintf(why, len, "cannot connect to the target at %s: %s", addr,
                 kvx_status_string(st));
        return;
    }
    st = push_start(in, &s);
    if (st == KVX_OK) {
        st = kvx_xfer_wait(s.x, DRAIN_S * 1000);
        kvx_xfer_release(s.x);
    }
    if (st != KVX_OK) {
        snprintf(why, len, "the warm-up push failed: %s",
                 kvx_status_string(st));
    }
}

void kvxi_scale_initiator_main(const kvxi_scale_opts_t *o, const char *addr,
                               uint32_t lane, uint32_t in_flight, int go,
                               int out)
{
    initiator_t in = {.o = o, .lane = lane};
    kvx_block_ref_t *src = malloc(o->blocks * sizeof(*src));
    slot_t *slots = calloc(in_flight, sizeof(*slots));
    kvxi_scale_hello_t hello = {.what = 'R'};
    char b;

    kvx_log_set_cb(kvxi_scale_log_cb, "initiator", KVX_LOG_ERROR);
    in.lat = malloc(KVXI_SCALE_LAT_MAX * sizeof(*in.lat));
    if (src == NULL || slots == NULL || in.lat == NULL) {
        snprintf(hello.why, sizeof(hello.why), "out of memory");
    } else {
        initiator_setup(&in, addr, src, hello.why, sizeof(hello.why));
    }
    if (hello.why[0] != '\0') {
        hello.what = 'E';
        (void)!kvxi_bench_write_all(out, &hello, sizeof(hello));
        _exit(1);
    }
    if (kvxi_bench_write_all(out, &hello, sizeof(hello)) < 0) {
        _exit(1);
    }
    while (read(go, &b, 1) < 0 && errno == EINTR) {
        /* the barrier: EOF when the parent starts every initiator */
    }
    run_window(&in, slots, in_flight);
    in.rep.transport = (int32_t)kvx_peer_transport(in.peer);
    in.rep.hwm_kib = kvxi_scale_proc_kib(0, "VmHWM");
    if (kvxi_bench_write_all(out, &in.rep, sizeof(in.rep)) < 0 ||
        kvxi_bench_write_all(out, in.lat, in.rep.nlat * sizeof(*in.lat)) < 0) {
        _exit(1);
    }
    kvx_node_destroy(in.node);
    _exit(0);
}
