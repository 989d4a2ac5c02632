/*
 * libFuzzer target for the active-message receive handler
 * (kvxi_ucx_am_recv in libkvx/ucx_xfer.c, gathered messages in
 * libkvx/ucx_gather.c): what a peer sends on the data path, so anything
 * may arrive. The input's first byte is the header length (0 .. 40), then
 * the header, then the payload, delivered as an eager message to a UCX
 * instance whose owner admits transfer 7 into [ALLOW_OFF, ALLOW_OFF +
 * ALLOW_LEN) of a region (no UCX context is needed for eager data).
 *
 * Properties (a broken one traps): every chunk the owner admitted is done
 * exactly once, with the bytes it was admitted for; nothing outside the
 * admitted window of the region changes; the landed-bytes counter equals
 * what was done; a message is either malformed, or each of its pieces is
 * admitted or refused.
 */
#include "ucx_impl_int.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define REGION (320u << 10)
#define ALLOW_OFF 4096u
#define ALLOW_LEN (256u << 10)
#define CANARY 0xab

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t region[REGION], canary[REGION];

static struct {
    uint64_t admitted, admitted_bytes, done, done_bytes, refused;
} seen;

static void check(int cond)
{
    if (!cond) {
        __builtin_trap();
    }
}

static void *dest_cb(uint64_t tid, uint64_t off, uint64_t len, void *arg)
{
    (void)arg;
    if (tid != 7 || len == 0 || off < ALLOW_OFF || len > ALLOW_LEN ||
        off - ALLOW_OFF > ALLOW_LEN - len) {
        return NULL;
    }
    seen.admitted++;
    seen.admitted_bytes += len;
    return region + off;
}

static void done_cb(uint64_t tid, uint64_t off, uint64_t len, uint32_t seq,
                    kvx_status_t status, void *arg)
{
    (void)arg;
    (void)seq;
    check(tid == 7 && status == KVX_OK && off >= ALLOW_OFF &&
          off + len <= ALLOW_OFF + ALLOW_LEN);
    seen.done++;
    seen.done_bytes += len;
}

static void refused_cb(uint64_t tid, uint64_t off, uint64_t len,
                       kvx_status_t reason, void *arg)
{
    (void)tid, (void)off, (void)len, (void)arg;
    check(reason == KVX_ERR_OUT_OF_RANGE || reason == KVX_ERR_PROTO_MALFORMED);
    seen.refused++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct kvxi_ucx ucx;
    ucp_am_recv_param_t param = {.recv_attr = 0}; /* eager */
    uint64_t before_bytes;
    size_t hlen;

    if (size < 1) {
        return 0;
    }
    hlen = data[0] % 41;
    if (size - 1 < hlen) {
        return 0;
    }
    memset(&seen, 0, sizeof(seen));
    if (ucx.am_dest_cb == NULL) {
        memset(canary, CANARY, sizeof(canary));
        memset(region, CANARY, sizeof(region));
        ucx.am_dest_cb = dest_cb;
        ucx.am_done_cb = done_cb;
        ucx.am_refused_cb = refused_cb;
    }
    before_bytes = ucx.stats.am_rx_bytes;
    check(kvxi_ucx_am_recv(&ucx, hlen ? data + 1 : NULL, hlen,
                           (void *)(data + 1 + hlen), size - 1 - hlen,
                           &param) == UCS_OK);
    check(seen.done == seen.admitted && seen.done_bytes == seen.admitted_bytes);
    check(ucx.stats.am_rx_bytes - before_bytes == seen.done_bytes);
    check(memcmp(region, canary, ALLOW_OFF) == 0);
    check(memcmp(region + ALLOW_OFF + ALLOW_LEN, canary,
                 REGION - ALLOW_OFF - ALLOW_LEN) == 0);
    return 0;
}
