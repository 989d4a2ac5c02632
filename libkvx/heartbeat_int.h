/*
 * Liveness of a control connection (docs/protocol.md, "Connections"):
 * every interval a side sends a probe, Heartbeat{sequence >= 1,
 * sender_time_us}; the receiver answers a probe at once with an echo,
 * Heartbeat{sequence 0, echo_sequence, echo_time_us} copied from the probe,
 * and never answers an echo (no ping-pong). The prober's round-trip time is
 * its own monotonic clock at the echo minus echo_time_us. Any received
 * byte counts as a sign of life; nothing for `misses` intervals means the
 * peer is down.
 *
 * Pure bookkeeping: the caller owns the timer and the clock, so tests run
 * it on a fake clock.
 */
#ifndef KVX_HEARTBEAT_INT_H
#define KVX_HEARTBEAT_INT_H

#include <stdint.h>

#include "frame_int.h"

struct evbuffer;

typedef struct kvxi_hb {
    uint32_t interval_ms; /**< probe period */
    uint32_t misses;      /**< silent intervals before the peer is down */
    uint64_t seq;         /**< last probe sequence sent */
    uint64_t last_rx_us;  /**< when something last arrived */
    uint64_t rtt_us;      /**< last round trip; 0 = none measured yet */
} kvxi_hb_t;

/** Monotonic clock in microseconds (CLOCK_MONOTONIC). */
uint64_t kvxi_clock_us(void);

/** Starts liveness tracking at @p now_us (counts as "just heard"). */
void kvxi_hb_init(kvxi_hb_t *hb, uint32_t interval_ms, uint32_t misses,
                  uint64_t now_us);

/** Something arrived from the peer at @p now_us. */
void kvxi_hb_heard(kvxi_hb_t *hb, uint64_t now_us);

/**
 * True when nothing arrived for misses * interval_ms at @p now_us; then
 * *silent_ms_p (if not NULL) receives how long it has been.
 */
int kvxi_hb_expired(const kvxi_hb_t *hb, uint64_t now_us,
                    uint64_t *silent_ms_p);

/**
 * Appends the next probe to @p out as envelope (@p version, @p request_id).
 * @return KVX_OK; the errors of kvxi_frame_write().
 */
kvx_status_t kvxi_hb_probe(kvxi_hb_t *hb, uint32_t version, uint64_t request_id,
                           uint64_t now_us, struct evbuffer *out);

/**
 * Handles a received Heartbeat: measures the round trip if it echoes one of
 * our probes, and appends the echo to @p out if it is a probe.
 * @param out  NULL to skip answering (the output is congested).
 * @return 1 if an echo was appended (it used @p request_id), else 0.
 */
int kvxi_hb_input(kvxi_hb_t *hb, const Kvx__V1__Heartbeat *msg,
                  uint32_t version, uint64_t request_id, uint64_t now_us,
                  struct evbuffer *out);

#endif /* KVX_HEARTBEAT_INT_H */
