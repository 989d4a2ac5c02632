/* Control-connection liveness: probes, echoes, round-trip time. */
#include "heartbeat_int.h"

#include <time.h>

#include "conn_int.h"

uint64_t kvxi_clock_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void kvxi_hb_init(kvxi_hb_t *hb, uint32_t interval_ms, uint32_t misses,
                  uint64_t now_us)
{
    hb->interval_ms = interval_ms;
    hb->misses = misses;
    hb->seq = 0;
    hb->last_rx_us = now_us;
    hb->rtt_us = 0;
}

void kvxi_hb_heard(kvxi_hb_t *hb, uint64_t now_us)
{
    if (now_us > hb->last_rx_us) {
        hb->last_rx_us = now_us;
    }
}

int kvxi_hb_expired(const kvxi_hb_t *hb, uint64_t now_us, uint64_t *silent_ms_p)
{
    uint64_t silent = now_us > hb->last_rx_us ? now_us - hb->last_rx_us : 0;
    uint64_t limit = (uint64_t)hb->misses * hb->interval_ms * 1000u;

    if (silent < limit) {
        return 0;
    }
    if (silent_ms_p != NULL) {
        *silent_ms_p = silent / 1000u;
    }
    return 1;
}

static kvx_status_t hb_write(uint32_t version, uint64_t request_id,
                             const Kvx__V1__Heartbeat *hb, struct evbuffer *out)
{
    Kvx__V1__Envelope env = KVX__V1__ENVELOPE__INIT;

    env.version = version;
    env.request_id = request_id;
    env.body_case = KVX__V1__ENVELOPE__BODY_HEARTBEAT;
    env.heartbeat = (Kvx__V1__Heartbeat *)hb;
    return kvxi_frame_write(out, &env);
}

kvx_status_t kvxi_hb_probe(kvxi_hb_t *hb, uint32_t version, uint64_t request_id,
                           uint64_t now_us, struct evbuffer *out)
{
    Kvx__V1__Heartbeat msg = KVX__V1__HEARTBEAT__INIT;
    kvx_status_t status;

    msg.sequence = hb->seq + 1;
    msg.sender_time_us = now_us;
    status = hb_write(version, request_id, &msg, out);
    if (status == KVX_OK) {
        hb->seq++;
    }
    return status;
}

int kvxi_hb_input(kvxi_hb_t *hb, const Kvx__V1__Heartbeat *msg,
                  uint32_t version, uint64_t request_id, uint64_t now_us,
                  struct evbuffer *out)
{
    Kvx__V1__Heartbeat echo = KVX__V1__HEARTBEAT__INIT;

    /* An echo of one of our probes, stamped by our own clock. */
    if (msg->echo_sequence != 0 && msg->echo_sequence <= hb->seq &&
        msg->echo_time_us != 0 && msg->echo_time_us <= now_us) {
        hb->rtt_us = now_us - msg->echo_time_us;
        if (hb->rtt_us == 0) {
            hb->rtt_us = 1; /* 0 means "not measured" */
        }
    }
    if (msg->sequence == 0 || out == NULL) {
        return 0;
    }
    echo.sender_time_us = now_us;
    echo.echo_sequence = msg->sequence;
    echo.echo_time_us = msg->sender_time_us;
    return hb_write(version, request_id, &echo, out) == KVX_OK;
}
