/**
 * @file kvx/status.h
 * @brief The one status type of libkvx.
 *
 * KVX_OK is 0, KVX_INPROGRESS is 1 and every error is negative. Errors are
 * grouped by kind in ranges, so a caller can test a whole class at once:
 * KVX_STATUS_IS_PEER() says "the peer or the connection is gone: reconnect",
 * KVX_STATUS_IS_PROTO() says "the peer sent something we do not accept".
 */
#ifndef KVX_STATUS_H
#define KVX_STATUS_H

#include <kvx/common.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum kvx_status {
    KVX_OK = 0,         /**< success */
    KVX_INPROGRESS = 1, /**< started, completes later / needs more input */

    /* Local errors: -1 .. -49 */
    KVX_ERR_INVALID_PARAM = -1,    /**< bad argument (NULL, zero, bad mask) */
    KVX_ERR_NO_MEMORY = -2,        /**< host memory allocation failed */
    KVX_ERR_NO_SPACE = -3,         /**< pool/table exhausted (back-pressure) */
    KVX_ERR_NOT_FOUND = -4,        /**< unknown key, id or request */
    KVX_ERR_STALE_HANDLE = -5,     /**< reference to a reused block or lease */
    KVX_ERR_BAD_STATE = -6,        /**< operation not valid in this state */
    KVX_ERR_OUT_OF_RANGE = -7,     /**< index/offset outside the object */
    KVX_ERR_OVERFLOW = -8,         /**< size arithmetic or counter overflow */
    KVX_ERR_NOT_SUPPORTED = -9,    /**< feature not implemented (yet) */
    KVX_ERR_LAYOUT_MISMATCH = -10, /**< layouts cannot be translated */
    KVX_ERR_EXISTS = -11,          /**< key or object already present */
    KVX_ERR_TIMEOUT = -12,         /**< deadline passed */
    KVX_ERR_ABORTED = -13,         /**< cancelled by either side */
    KVX_ERR_IO = -14,              /**< system call failed (see log) */
    KVX_ERR_CORRUPT = -15,         /**< data failed its checksum */

    /* Protocol errors: -50 .. -99 */
    KVX_ERR_PROTO_MALFORMED = -50,  /**< frame or message does not decode */
    KVX_ERR_PROTO_OVERSIZE = -51,   /**< frame longer than the limit */
    KVX_ERR_PROTO_VERSION = -52,    /**< unsupported protocol version */
    KVX_ERR_PROTO_UNEXPECTED = -53, /**< valid message, wrong moment */

    /* Peer and connection errors: -100 .. -149 ("reconnect needed") */
    KVX_ERR_PEER_DOWN = -100,        /**< peer died or connection lost */
    KVX_ERR_PEER_REFUSED = -101,     /**< peer refused us (or we it) */
    KVX_ERR_PEER_UNREACHABLE = -102, /**< could not connect */
    KVX_ERR_AUTH = -103,             /**< authentication failed */
    KVX_ERR_CONN_CLOSED = -104       /**< connection closed locally */
} kvx_status_t;

/** First and last values of the protocol-error range. */
#define KVX_ERR_PROTO_FIRST (-50)
#define KVX_ERR_PROTO_LAST (-99)
/** First and last values of the peer/connection-error range. */
#define KVX_ERR_PEER_FIRST (-100)
#define KVX_ERR_PEER_LAST (-149)

/** True if @p s is a protocol error (the peer sent bad data). */
#define KVX_STATUS_IS_PROTO(s)                                                 \
    ((s) <= KVX_ERR_PROTO_FIRST && (s) >= KVX_ERR_PROTO_LAST)
/** True if @p s means the peer or connection is gone (reconnect). */
#define KVX_STATUS_IS_PEER(s)                                                  \
    ((s) <= KVX_ERR_PEER_FIRST && (s) >= KVX_ERR_PEER_LAST)

/**
 * Returns a static, human-readable description of @p status. Every value of
 * kvx_status_t has its own text; unknown values give "unknown status".
 * Never returns NULL.
 */
KVX_EXPORT const char *kvx_status_string(kvx_status_t status);

#ifdef __cplusplus
}
#endif

#endif /* KVX_STATUS_H */
