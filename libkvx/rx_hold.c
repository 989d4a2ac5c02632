/*
 * Hold limit of received requests (kvx_node_params_t::hold_ms): a request
 * whose blocks were committed here but that no engine collects with
 * kvx_node_recv() within hold_ms is released: its pins are dropped (keyed
 * blocks become CACHED and keep serving dedupe) and the request is
 * forgotten. A failed request whose failure nobody collects within hold_ms
 * is forgotten too (its fenced blocks, if any, still wait for the fence).
 * The hold starts when the node first sees the request committed (right
 * after the Commit, or the pull's local commit) or failed.
 *
 * Also the late-write grace: a failed request whose fence waits for AM
 * chunks UCX admitted but never completed (kvxi_rx_am_done) lifts it
 * after KVXI_RX_LATE_GRACE_MS anyway, with a warning: UCX keeps no
 * receive timeout of its own, and blocks must not stay fenced forever.
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

/* Without this, every failure no engine asked about (a request the engine
 * cancelled, say) stayed in node->rxs for the node's life. */
static void rx_hold_forget(kvxi_rx_t *rx)
{
    kvxi_info("node %s: request %llu failed (%s); not collected within %u "
              "ms: forgotten",
              rx->node->node_id, (unsigned long long)rx->request_id,
              kvx_status_string(rx->status), rx->node->hold_ms);
    rx->reported = 1; /* nobody collects it now: freed once unfenced */
    if (!rx->fenced) {
        kvxi_rx_free(rx);
    }
}

void kvxi_rx_check_holds(struct kvx_node *node, uint64_t now, uint64_t *next_p)
{
    uint64_t t = 0;
    kvxi_rx_t *rx, *next;

    for (rx = node->rxs; rx != NULL; rx = next) {
        next = rx->next;
        if (rx->unfence_deferred) {
            if (now != 0 && rx->late_deadline_ns <= now) {
                kvxi_rx_give_up_late(rx);
                continue;
            }
            if (rx->late_deadline_ns < *next_p) {
                *next_p = rx->late_deadline_ns;
            }
        }
        if (node->hold_ms == 0 || rx->state == KVXI_RX_RESERVED ||
            rx->reported || rx->superseded) {
            continue;
        }
        if (rx->hold_deadline_ns == 0) {
            if (t == 0) {
                t = kvxi_node_now_ns();
            }
            rx->hold_deadline_ns = t + (uint64_t)node->hold_ms * 1000000ull;
        }
        if (now != 0 && rx->hold_deadline_ns <= now) {
            if (rx->state == KVXI_RX_COMMITTED) {
                rx_hold_release(rx);
            } else {
                rx_hold_forget(rx);
            }
        } else if (rx->hold_deadline_ns < *next_p) {
            *next_p = rx->hold_deadline_ns;
        }
    }
}
