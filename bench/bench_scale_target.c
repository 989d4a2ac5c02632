/*
 * kvx-bench scale: the target process (bench_scale.h), which collects the
 * requests of several initiators, completing in any order, and unpins
 * their blocks.
 */
#include "bench_pair.h"
#include "bench_scale.h"
#include "bench_util.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PROGRESS_MS 10

/* A lane's ids: below BASE all settled; DONE[seq % W] marks settled ids in
 * [BASE, BASE + W); SEEN is the highest id the node knew. With at most
 * IN_FLIGHT pushes in flight, an id IN_FLIGHT below one the node knew has
 * ended on the initiator: not found then, it never reached us (a refused
 * allocation leaves nothing to collect) and is settled as lost. */
typedef struct lane {
    uint64_t base, seen;
    uint32_t in_flight, w;
    unsigned char *done;
} lane_t;

typedef struct target_counts {
    uint64_t collected, failed, lost;
} target_counts_t;

/* One pass over every lane: returns how many ids it settled. */
static uint64_t collect_pass(kvx_node_h node, lane_t *lanes, uint32_t nlanes,
                             kvx_block_ref_t *refs, uint32_t max,
                             target_counts_t *c)
{
    uint64_t settled = 0;

    for (uint32_t l = 0; l < nlanes; l++) {
        lane_t *ln = &lanes[l];
        uint64_t hi =
            (ln->seen >= ln->base ? ln->seen : ln->base - 1) + ln->in_flight;

        if (hi > ln->base + ln->w - 1) {
            hi = ln->base + ln->w - 1;
        }
        for (uint64_t seq = ln->base; seq <= hi; seq++) {
            unsigned char *d = &ln->done[seq % ln->w];
            kvx_status_t st;
            uint32_t n = 0;

            if (*d) {
                continue;
            }
            st = kvx_node_recv(node, kvxi_scale_req_id(l, seq), 0, refs, max,
                               &n);
            if (st == KVX_ERR_NOT_FOUND) {
                if (seq + ln->in_flight <= ln->seen) {
                    *d = 1;
                    c->lost++;
                    settled++;
                }
                continue;
            }
            ln->seen = seq > ln->seen ? seq : ln->seen;
            if (st == KVX_INPROGRESS) {
                continue;
            }
            *d = 1;
            settled++;
            if (st != KVX_OK) { /* its failure, reported once */
                c->failed++;
                continue;
            }
            for (uint32_t i = 0; i < n; i++) {
                kvx_alloc_unpin(kvx_node_alloc(node), refs[i]);
            }
            c->collected++;
        }
        while (ln->done[ln->base % ln->w]) {
            ln->done[ln->base % ln->w] = 0;
            ln->base++;
        }
    }
    return settled;
}

static kvx_status_t target_lanes(const kvxi_scale_opts_t *o, uint32_t nlanes,
                                 lane_t **lanes_p)
{
    lane_t *lanes = calloc(nlanes, sizeof(*lanes));

    for (uint32_t l = 0; lanes != NULL && l < nlanes; l++) {
        lanes[l].base = 1;
        lanes[l].in_flight = l == 0 ? 1 : o->per_proc;
        lanes[l].w = 2 * lanes[l].in_flight + 2;
        lanes[l].done = calloc(lanes[l].w, 1);
        if (lanes[l].done == NULL) {
            return KVX_ERR_NO_MEMORY; /* the child exits: nothing to free */
        }
    }
    *lanes_p = lanes;
    return lanes != NULL ? KVX_OK : KVX_ERR_NO_MEMORY;
}

void kvxi_scale_target_main(const kvxi_scale_opts_t *o, uint32_t num_blocks,
                            uint32_t nlanes, int fd)
{
    kvx_layout_params_t lp = kvxi_pair_chunk_layout(o->chunk, num_blocks);
    kvx_block_ref_t *refs = malloc(o->blocks * sizeof(*refs));
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    target_counts_t c = {0, 0, 0};
    lane_t *lanes = NULL;
    kvx_node_h node;
    kvx_status_t st;
    char line[256], b;

    kvx_log_set_cb(kvxi_scale_log_cb, "target", KVX_LOG_ERROR);
    st = refs == NULL ? KVX_ERR_NO_MEMORY : target_lanes(o, nlanes, &lanes);
    if (st == KVX_OK) {
        st = kvxi_pair_node_create(o->tls, o->secret, &lp,
                                   "kvx-bench-scale-target", "127.0.0.1:0",
                                   &node);
    }
    if (st != KVX_OK) {
        snprintf(line, sizeof(line), "ERR %s\n", kvx_status_string(st));
        (void)!kvxi_bench_write_all(fd, line, strlen(line));
        _exit(1);
    }
    snprintf(line, sizeof(line), "%s\n", kvx_node_listen_addr(node));
    (void)!kvxi_bench_write_all(fd, line, strlen(line));
    for (;;) {
        kvx_node_progress(node, PROGRESS_MS);
        collect_pass(node, lanes, nlanes, refs, o->blocks, &c);
        if (poll(&pfd, 1, 0) == 0) {
            continue;
        }
        if (read(fd, &b, 1) != 1 || b != 'S') {
            break; /* EOF: the run ends */
        }
        /* every push has ended: settle what is left, then answer */
        do {
            kvx_node_progress(node, 0);
        } while (collect_pass(node, lanes, nlanes, refs, o->blocks, &c) > 0);
        snprintf(line, sizeof(line), "collected %llu failed %llu lost %llu\n",
                 (unsigned long long)c.collected, (unsigned long long)c.failed,
                 (unsigned long long)c.lost);
        (void)!kvxi_bench_write_all(fd, line, strlen(line));
    }
    kvx_node_destroy(node);
    _exit(0);
}
