/*
 * Control-channel frame codec.
 *
 * A frame is a 4-byte big-endian length N followed by N bytes holding one
 * packed kvx.v1.Envelope (proto/kvx.proto, docs/protocol.md). The codec is
 * pure: it never touches a socket, so the event loop feeds it whatever bytes
 * arrived and it says "complete frame", "need more" or "this peer sends
 * garbage".
 *
 * Decoding is safe on hostile input: lengths are checked against the frame
 * limit from the header alone (before the body arrives), protobuf-c unpacks
 * only the announced bytes, its allocations are capped by a budget
 * proportional to the frame length, and kvxi_envelope_validate() checks every
 * body's invariants so the handlers above can trust counts and sizes.
 */
#ifndef KVX_FRAME_INT_H
#define KVX_FRAME_INT_H

#include <kvx/status.h>
#include <stddef.h>
#include <stdint.h>

#include "kvx.pb-c.h"

/** Protocol version this build speaks (Envelope.version, Hello). */
#define KVXI_PROTO_VERSION 1u

/** Bytes of the length prefix. */
#define KVXI_FRAME_HEADER_LEN 4u
/** Default limit on a frame's body (the length the header announces). */
#define KVXI_FRAME_MAX_DEFAULT (4u << 20)
/** Limit to use until the peer has authenticated (Hello .. Accept). */
#define KVXI_FRAME_MAX_HANDSHAKE (64u << 10)

/* Field limits checked by kvxi_envelope_validate(). */
#define KVXI_KEY_LEN 16u           /**< one block key on the wire */
#define KVXI_BLOCKS_MAX (1u << 20) /**< blocks/keys in one message */
#define KVXI_LAYERS_MAX (1u << 20) /**< layer indices */
#define KVXI_AUTH_NONCE_LEN 32u    /**< Hello/HelloReply nonce */
#define KVXI_AUTH_MAC_LEN 32u      /**< HMAC-SHA256 */
#define KVXI_NAME_MAX 256u         /**< node_id, cluster_id */
#define KVXI_TEXT_MAX 1024u        /**< Error/Abort message text */
#define KVXI_BLOB_MAX (16u << 10)  /**< worker address, rkey */
#define KVXI_LEASE_MS_MAX 3600000u /**< one hour */
#define KVXI_STATS_MAX 1024u       /**< StatsReply.counters entries */
#define KVXI_STAT_NAME_MAX 128u    /**< counter name */

/** The generated envelope type, under a shorter name. */
typedef Kvx__V1__Envelope kvxi_envelope_t;

/**
 * Bytes kvxi_frame_encode() will write for @p env (header included), or 0
 * when @p env is NULL. Does not validate.
 */
size_t kvxi_frame_size(const kvxi_envelope_t *env);

/**
 * Validates @p env and writes it as one frame into @p buf.
 *
 * @param env    envelope to send (built with KVX__V1__ENVELOPE__INIT).
 * @param buf    destination, @p cap bytes.
 * @param len_p  receives the frame length (header included) on success.
 * @return KVX_OK;
 *         KVX_ERR_INVALID_PARAM (NULL argument, or @p env fails
 *         kvxi_envelope_validate(): sending it would make the peer close);
 *         KVX_ERR_PROTO_OVERSIZE (body above KVXI_FRAME_MAX_DEFAULT);
 *         KVX_ERR_NO_SPACE (@p cap < kvxi_frame_size(env); nothing written).
 */
kvx_status_t kvxi_frame_encode(const kvxi_envelope_t *env, void *buf,
                               size_t cap, size_t *len_p);

/**
 * Decodes the first frame of a byte stream.
 *
 * Feed it everything received and not yet consumed; it never reads past
 * @p len. The header alone decides oversize, so a peer announcing a huge
 * frame is refused before its body is buffered.
 *
 * @param buf         received bytes (may be NULL when @p len is 0).
 * @param len         bytes at @p buf.
 * @param max_frame   largest accepted body; 0 selects
 *                    KVXI_FRAME_MAX_DEFAULT (UINT32_MAX or more accepts
 *                    every length a header can announce).
 * @param env_p       receives the envelope on KVX_OK only; free it with
 *                    kvxi_frame_free().
 * @param consumed_p  receives the bytes of the frame on KVX_OK, 0 otherwise.
 * @return KVX_OK (one frame decoded and valid);
 *         KVX_INPROGRESS (the header or body is incomplete: read more);
 *         KVX_ERR_PROTO_OVERSIZE (announced length above @p max_frame);
 *         KVX_ERR_PROTO_MALFORMED (zero length, the body does not unpack,
 *         unpacking would exceed KVXI_FRAME_ALLOC_BUDGET(), a field is
 *         numbered 0, or the envelope fails kvxi_envelope_validate());
 *         KVX_ERR_NO_MEMORY (the host ran out of memory);
 *         KVX_ERR_INVALID_PARAM (NULL out-pointer, NULL @p buf with
 *         @p len > 0).
 *         After any error the stream cannot be resynchronised: answer Error
 *         and close the connection.
 */
kvx_status_t kvxi_frame_decode(const void *buf, size_t len, size_t max_frame,
                               kvxi_envelope_t **env_p, size_t *consumed_p);

/**
 * Allocation budget of one decode: protobuf-c may allocate at most this many
 * bytes (each allocation counted with KVXI_FRAME_ALLOC_OVERHEAD extra for the
 * allocator's bookkeeping) while unpacking a body of @p body_len bytes.
 * Honest frames stay far below it; a crafted frame of tiny fields (each a
 * separate allocation) is refused instead of costing ~100x its size.
 * Bounds one 4 MiB frame at 128 MiB + 64 KiB.
 */
#define KVXI_FRAME_ALLOC_FACTOR 32u
#define KVXI_FRAME_ALLOC_SLACK (64u << 10)
#define KVXI_FRAME_ALLOC_OVERHEAD 16u
#define KVXI_FRAME_ALLOC_BUDGET(body_len)                                      \
    ((size_t)KVXI_FRAME_ALLOC_SLACK +                                          \
     (size_t)KVXI_FRAME_ALLOC_FACTOR * (size_t)(body_len))

/**
 * kvxi_frame_decode() with an explicit allocation budget in bytes instead of
 * KVXI_FRAME_ALLOC_BUDGET(body length). Exceeding it gives
 * KVX_ERR_PROTO_MALFORMED. For tests and fuzzers, which drive every
 * allocation-failure path of the unpacker with small budgets.
 */
kvx_status_t kvxi_frame_decode_budget(const void *buf, size_t len,
                                      size_t max_frame, size_t alloc_budget,
                                      kvxi_envelope_t **env_p,
                                      size_t *consumed_p);

/** Frees an envelope returned by kvxi_frame_decode(); NULL is a no-op. */
void kvxi_frame_free(kvxi_envelope_t *env);

/**
 * Checks the protocol invariants of @p env that protobuf cannot express:
 * version >= 1, a non-zero request id (except an Error answering an
 * undecodable frame), exactly one known body, every required sub-message
 * present, no *_UNSPECIFIED enum where a value is required, keys a multiple
 * of 16 bytes and matching block_count, BlockRefs arrays of equal length,
 * hit masks of exactly ceil(block_count / 8) bytes, counts and lengths
 * within the KVXI_*_MAX limits. Unknown fields are ignored (forward
 * compatibility); unknown enum values in *status* fields are accepted
 * (mapped by kvxi_status_from_wire()), in other enums refused.
 * @return KVX_OK; KVX_ERR_PROTO_MALFORMED (which rule failed is logged at
 *         debug level); KVX_ERR_INVALID_PARAM (NULL).
 */
kvx_status_t kvxi_envelope_validate(const kvxi_envelope_t *env);

/**
 * Wire value (enum kvx.v1.Status) of @p status: OK -> 1, INPROGRESS -> 2,
 * error e -> 100 - e. Returns 0 (STATUS_UNSPECIFIED, never valid on the
 * wire) for a value that is not a kvx_status_t.
 */
uint32_t kvxi_status_to_wire(kvx_status_t status);

/**
 * kvx_status_t of wire value @p wire; KVX_ERR_PROTO_MALFORMED for 0 and for
 * values this build does not know. Inverse of kvxi_status_to_wire() for
 * every kvx_status_t.
 */
kvx_status_t kvxi_status_from_wire(uint32_t wire);

/** Name of the body carried by @p env ("allocate_request", ...) for logs. */
const char *kvxi_envelope_body_name(const kvxi_envelope_t *env);

#endif /* KVX_FRAME_INT_H */
