/* kvx_status_string(): one text per status value. */
#include <kvx/kvx.h>

#include <time.h>

const char *kvx_status_string(kvx_status_t status)
{
    switch (status) {
    case KVX_OK: return "success";
    case KVX_INPROGRESS: return "operation in progress";
    case KVX_ERR_INVALID_PARAM: return "invalid parameter";
    case KVX_ERR_NO_MEMORY: return "out of memory";
    case KVX_ERR_NO_SPACE: return "no space left (pool or table exhausted)";
    case KVX_ERR_NOT_FOUND: return "not found";
    case KVX_ERR_STALE_HANDLE: return "stale handle (object was reused)";
    case KVX_ERR_BAD_STATE: return "operation not valid in this state";
    case KVX_ERR_OUT_OF_RANGE: return "index or offset out of range";
    case KVX_ERR_OVERFLOW: return "size or counter overflow";
    case KVX_ERR_NOT_SUPPORTED: return "not supported";
    case KVX_ERR_LAYOUT_MISMATCH: return "incompatible KV layouts";
    case KVX_ERR_EXISTS: return "already exists";
    case KVX_ERR_TIMEOUT: return "deadline passed";
    case KVX_ERR_ABORTED: return "aborted";
    case KVX_ERR_IO: return "system call failed";
    case KVX_ERR_CORRUPT: return "data failed its checksum";
    case KVX_ERR_PROTO_MALFORMED: return "malformed protocol frame";
    case KVX_ERR_PROTO_OVERSIZE: return "protocol frame too large";
    case KVX_ERR_PROTO_VERSION: return "unsupported protocol version";
    case KVX_ERR_PROTO_UNEXPECTED: return "unexpected protocol message";
    case KVX_ERR_PEER_DOWN: return "peer down";
    case KVX_ERR_PEER_REFUSED: return "refused by peer";
    case KVX_ERR_PEER_UNREACHABLE: return "peer unreachable";
    case KVX_ERR_AUTH: return "authentication failed";
    case KVX_ERR_CONN_CLOSED: return "connection closed";
    }
    return "unknown status";
}

uint64_t kvx_clock_monotonic_ns(void *arg)
{
    struct timespec ts;

    (void)arg;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

const char *kvx_version(void)
{
    return KVX_VERSION_STRING;
}
