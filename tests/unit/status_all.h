/* Every kvx_status_t value, for tests that must cover them all. Add a new
 * status here and test_status checks its text, test_frame its wire value. */
#ifndef KVX_TEST_STATUS_ALL_H
#define KVX_TEST_STATUS_ALL_H

#include <kvx/status.h>

/* clang-format off */
static const kvx_status_t all_status[] = {
    KVX_OK, KVX_INPROGRESS, KVX_ERR_INVALID_PARAM, KVX_ERR_NO_MEMORY,
    KVX_ERR_NO_SPACE, KVX_ERR_NOT_FOUND, KVX_ERR_STALE_HANDLE,
    KVX_ERR_BAD_STATE, KVX_ERR_OUT_OF_RANGE, KVX_ERR_OVERFLOW,
    KVX_ERR_NOT_SUPPORTED, KVX_ERR_LAYOUT_MISMATCH, KVX_ERR_EXISTS,
    KVX_ERR_TIMEOUT, KVX_ERR_ABORTED, KVX_ERR_IO, KVX_ERR_CORRUPT,
    KVX_ERR_PROTO_MALFORMED,
    KVX_ERR_PROTO_OVERSIZE, KVX_ERR_PROTO_VERSION, KVX_ERR_PROTO_UNEXPECTED,
    KVX_ERR_PEER_DOWN, KVX_ERR_PEER_REFUSED, KVX_ERR_PEER_UNREACHABLE,
    KVX_ERR_AUTH, KVX_ERR_CONN_CLOSED,
};
/* clang-format on */
#define N_STATUS (sizeof(all_status) / sizeof(all_status[0]))

#endif /* KVX_TEST_STATUS_ALL_H */
