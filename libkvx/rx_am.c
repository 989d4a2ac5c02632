/*
 * Push transfers, receiver side: the AM admission window. A reserved
 * transfer takes an rx slot whose random tag the sender carries as the
 * AM transfer id (kvxi_rx_slot_take); UCX asks kvxi_rx_am_dest() where a
 * chunk goes, and only a chunk whose tag names an open transfer and whose
 * bytes lie in blocks that transfer owns (node->owner) is admitted. The
 * window closes on commit or failure; chunks already admitted keep the slot
 * (and a failed transfer's fence) until they are done or given up.
 */
#include "rx_int.h"

#include "log_int.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

kvx_status_t kvxi_rx_slot_take(struct kvx_node *node, kvxi_rx_t *rx)
{
    uint32_t slot, rnd = 0;

    for (slot = 0; slot < node->n_rx_slots; slot++) {
        if (node->rx_slots[slot] == NULL) {
            break;
        }
    }
    if (slot == node->n_rx_slots) {
        uint32_t n = node->n_rx_slots ? node->n_rx_slots * 2 : 16;
        kvxi_rx_t **s = realloc(node->rx_slots, n * sizeof(*s));

        if (s == NULL) {
            return KVX_ERR_NO_MEMORY;
        }
        memset(s + node->n_rx_slots, 0, (n - node->n_rx_slots) * sizeof(*s));
        node->rx_slots = s;
        node->n_rx_slots = n;
    }
    while (rnd == 0) {
        if (getrandom(&rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
            return KVX_ERR_IO;
        }
    }
    node->rx_slots[slot] = rx;
    rx->slot = slot;
    rx->tag = ((uint64_t)rnd << 32) | slot;
    return KVX_OK;
}

static void rx_release_slot(kvxi_rx_t *rx)
{
    if (rx->slot != KVXI_RX_SLOT_NONE) {
        rx->node->rx_slots[rx->slot] = NULL;
        rx->slot = KVXI_RX_SLOT_NONE;
    }
}

/* No more writes are admitted for @p rx (owner table cleared; the slot too,
 * unless admitted chunks are still landing: kvxi_rx_am_done() finds the rx
 * by it). */
void kvxi_rx_close_window(kvxi_rx_t *rx)
{
    struct kvx_node *node = rx->node;

    for (uint32_t i = 0; i < rx->n_blocks; i++) {
        if (!rx->hit[i] && node->owner[rx->refs[i].block] == rx) {
            node->owner[rx->refs[i].block] = NULL;
        }
    }
    if (rx->am_pending == 0) {
        rx_release_slot(rx);
    }
}

static kvxi_rx_t *rx_by_tag(struct kvx_node *node, uint64_t tag)
{
    uint32_t slot = (uint32_t)tag;
    kvxi_rx_t *rx;

    if (slot >= node->n_rx_slots) {
        return NULL;
    }
    rx = node->rx_slots[slot];
    return rx != NULL && rx->tag == tag ? rx : NULL;
}

/* The rx that admits writes under @p tag (RESERVED), or NULL. */
static kvxi_rx_t *rx_open_by_tag(struct kvx_node *node, uint64_t tag)
{
    kvxi_rx_t *rx = rx_by_tag(node, tag);

    return rx != NULL && rx->state == KVXI_RX_RESERVED ? rx : NULL;
}

void *kvxi_rx_am_dest(uint64_t tag, uint64_t off, uint64_t len, void *arg)
{
    struct kvx_node *node = arg;
    kvxi_rx_t *rx = rx_open_by_tag(node, tag);
    uint64_t bb = node->layout.block_bytes;

    if (rx == NULL || len == 0 || off > node->layout.region_bytes ||
        len > node->layout.region_bytes - off) {
        return NULL;
    }
    for (uint64_t b = off / bb; b <= (off + len - 1) / bb; b++) {
        if (node->owner[b] != rx) {
            return NULL;
        }
    }
    rx->am_pending++; /* until kvxi_rx_am_done(), whatever happens to rx */
    return node->pool_base + off;
}

void kvxi_rx_am_done(uint64_t tag, uint64_t off, uint64_t len, uint32_t seq,
                     kvx_status_t status, void *arg)
{
    kvxi_rx_t *rx = rx_by_tag(arg, tag);

    (void)off;
    (void)seq;
    if (rx == NULL) {
        return;
    }
    if (rx->am_pending > 0) {
        rx->am_pending--;
    }
    if (rx->state != KVXI_RX_RESERVED) {
        /* A late chunk of a closed rx: the last one frees the slot and
         * lifts a fence that waited for it. */
        if (rx->am_pending == 0) {
            rx_release_slot(rx);
            if (rx->unfence_deferred) {
                rx->unfence_deferred = 0;
                kvxi_rx_unfence(rx);
            }
        }
        return;
    }
    if (status != KVX_OK) {
        rx->am_failed = 1;
        return;
    }
    rx->landed += len;
    if (rx->commit_req_id != 0 && rx->landed >= rx->data_bytes) {
        kvxi_rx_commit(rx, rx->commit_req_id);
    }
}

void kvxi_rx_give_up_late(kvxi_rx_t *rx)
{
    kvxi_warn("node %s: incoming transfer %llu (request %llu): %u AM "
              "chunk(s) UCX admitted never completed within %u ms of the "
              "failure: fence lifted",
              rx->node->node_id, (unsigned long long)rx->transfer_id,
              (unsigned long long)rx->request_id, rx->am_pending,
              rx->node->late_grace_ms);
    rx->node->stats.am_given_up += rx->am_pending;
    rx->am_pending = 0;
    rx->unfence_deferred = 0;
    rx_release_slot(rx);
    kvxi_rx_unfence(rx);
}

void kvxi_rx_am_refused(uint64_t tag, uint64_t off, uint64_t len,
                        kvx_status_t reason, void *arg)
{
    struct kvx_node *node = arg;

    node->stats.am_refused++;
    kvxi_debug("node %s: AM chunk refused (tag %llx, off %llu, len %llu): %s",
               node->node_id, (unsigned long long)tag, (unsigned long long)off,
               (unsigned long long)len, kvx_status_string(reason));
}
