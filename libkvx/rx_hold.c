/*
 * Hold limit of received requests (kvx_node_params_t::hold_ms): a request
 * whose blocks were committed here but that no engine collects with
 * kvx_node_recv() within hold_ms is released: its pins are dropped (keyed
 * blocks become CACHED and keep serving dedupe) and the request is
 * forgotten. The hold starts when the node first sees the request
 * committed (right after the Commit, or the pull's local commit).
 */
#include "node_int.h"

#include "log_int.h"

static void rx_hold_release(kvxi_rx_t *rx)
{
    struct kvx_node *node = rx->node;

    kvxi_info("node %s: request %llu not collected within %u ms: released",
              node->node_id, (unsigned long long)rx->request_id, node->hold_ms);
    for (uint32_t i = 0; i < rx->n_blocks; i++) {
        kvx_alloc_unpin(node->alloc, rx->refs[i]);
    }
    kvxi_rx_free(rx);
}

void kvxi_rx_check_holds(struct kvx_node *node, uint64_t now, uint64_t *next_p)
{
    uint64_t t = 0;
    kvxi_rx_t *rx, *next;

    if (node->hold_ms == 0) {
        return;
    }
    for (rx = node->rxs; rx != NULL; rx = next) {
        next = rx->next;
        if (rx->state != KVXI_RX_COMMITTED || rx->reported || rx->superseded) {
            continue;
        }
        if (rx->hold_deadline_ns == 0) {
            if (t == 0) {
                t = kvxi_node_now_ns();
            }
            rx->hold_deadline_ns = t + (uint64_t)node->hold_ms * 1000000ull;
        }
        if (now != 0 && rx->hold_deadline_ns <= now) {
            rx_hold_release(rx);
        } else if (rx->hold_deadline_ns < *next_p) {
            *next_p = rx->hold_deadline_ns;
        }
    }
}
