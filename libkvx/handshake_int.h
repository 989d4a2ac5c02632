/*
 * The control-channel handshake as a pure state machine (docs/protocol.md,
 * "Handshake and authentication"):
 *
 *   client                                  server
 *     Hello{versions, identity, nonce_c} ->
 *                                        <- HelloReply{version, identity,
 *                                                      nonce_s, mac_s}
 *     AuthProof{mac_c, Memory_c}         ->
 *                                        <- Accept{Memory_s}
 *
 *   mac_s = HMAC-SHA256(S, "kvx1 server" || nonce_c || nonce_s)
 *   mac_c = HMAC-SHA256(S, "kvx1 client" || nonce_s || nonce_c)
 *
 * It never touches a socket: the connection feeds it received envelopes and
 * it appends its answers to an evbuffer, so tests drive both sides without
 * one. Each side sends its Memory (worker address, rkey) only after the
 * other proved it knows S; MACs are compared in constant time.
 */
#ifndef KVX_HANDSHAKE_INT_H
#define KVX_HANDSHAKE_INT_H

#include "conn_int.h"

/** MAC labels: different per direction, so a reflected MAC fails. */
#define KVXI_HS_LABEL_SERVER "kvx1 server"
#define KVXI_HS_LABEL_CLIENT "kvx1 client"

typedef struct kvxi_hs kvxi_hs_t;

/**
 * Creates one side of a handshake and draws its 32-byte nonce (getrandom).
 *
 * @param local       our identity; borrowed, must outlive @p hs.
 * @param secret      cluster secret, copied (wiped on destroy); may be NULL
 *                    when @p secret_len is 0 (no authentication).
 * @param is_client   1: sends Hello first; 0: waits for Hello.
 * @param hs_p        receives the handshake on KVX_OK.
 * @return KVX_OK; KVX_ERR_INVALID_PARAM (NULL, @p secret_len above
 *         KVXI_SECRET_MAX, kvxi_identity_check() fails);
 *         KVX_ERR_NO_MEMORY; KVX_ERR_IO (no randomness).
 */
kvx_status_t kvxi_hs_create(const kvxi_conn_identity_t *local,
                            const void *secret, size_t secret_len,
                            int is_client, kvxi_hs_t **hs_p);

/** Wipes the secret and nonces and frees @p hs; NULL is a no-op. */
void kvxi_hs_destroy(kvxi_hs_t *hs);

/**
 * Client: appends Hello to @p out.
 * @return KVX_OK; KVX_ERR_BAD_STATE (a server, or already started);
 *         KVX_ERR_NO_MEMORY.
 */
kvx_status_t kvxi_hs_start(kvxi_hs_t *hs, struct evbuffer *out);

/**
 * Feeds one received envelope (anything but Error, which the connection
 * handles) and appends the answer, if any, to @p out. @p env must have
 * passed kvxi_envelope_validate() (kvxi_frame_decode() guarantees it):
 * nonce and MAC lengths are trusted.
 *
 * @param why      receives the refusal text on an error (sent to the peer
 *                 in Error.message), NUL-terminated, truncated to
 *                 @p why_len.
 * @return KVX_INPROGRESS (continue; an answer may have been appended);
 *         KVX_OK (complete: the server appended Accept;
 *         kvxi_hs_take_peer() has the peer);
 *         on refusal, the status to send in Error before closing:
 *         KVX_ERR_PROTO_UNEXPECTED (a body out of order, repeated, or not
 *         a handshake body), KVX_ERR_PROTO_VERSION (no common version, or
 *         a frame in another version than the negotiated one),
 *         KVX_ERR_AUTH (the peer's MAC is wrong: different secret),
 *         KVX_ERR_LAYOUT_MISMATCH (compatibility hashes differ; @p why
 *         names both hashes and the first differing field),
 *         KVX_ERR_PEER_REFUSED (other cluster, no common data path);
 *         KVX_ERR_BAD_STATE (already failed or complete);
 *         KVX_ERR_NO_MEMORY; KVX_ERR_INVALID_PARAM (NULL).
 *         After a refusal every further input fails with BAD_STATE.
 */
kvx_status_t kvxi_hs_input(kvxi_hs_t *hs, const kvxi_envelope_t *env,
                           struct evbuffer *out, char *why, size_t why_len);

/**
 * After kvxi_hs_input() returned KVX_OK: hands over the peer's identity
 * (free with kvxi_peer_info_free()); NULL before, or when already taken.
 */
kvxi_peer_info_t *kvxi_hs_take_peer(kvxi_hs_t *hs);

/** Negotiated protocol version; 0 until known. */
uint32_t kvxi_hs_version(const kvxi_hs_t *hs);

/**
 * Next request id this side will draw: the handshake's own requests used
 * the ids below it (client: Hello = 1, AuthProof = 2).
 */
uint64_t kvxi_hs_next_request_id(const kvxi_hs_t *hs);

/** 1 if @p body is Hello, HelloReply, AuthProof or Accept. */
int kvxi_hs_is_handshake_body(Kvx__V1__Envelope__BodyCase body);

/**
 * mac = HMAC-SHA256(secret, label || first || second), label without its
 * NUL, nonces of KVXI_AUTH_NONCE_LEN bytes.
 * @return KVX_OK; KVX_ERR_INVALID_PARAM (NULL); KVX_ERR_IO (libcrypto
 *         failed).
 */
kvx_status_t kvxi_hs_mac(const void *secret, size_t secret_len,
                         const char *label, const uint8_t *first,
                         const uint8_t *second, uint8_t mac[KVXI_AUTH_MAC_LEN]);

/* ------------------------------------------------------------------------
 * Wire forms of identities (identity.c). The *_to functions make views:
 * the wire structs point into the source, nothing is copied.
 */

/** Fills @p w from @p l (counts, orders, block_bytes, model id). */
void kvxi_wire_layout_to(const kvx_layout_t *l, Kvx__V1__Layout *w);

/**
 * Rebuilds a layout from the wire with kvx_layout_init(), so every derived
 * size is local arithmetic, and checks the sender computed the same
 * block_bytes.
 * @param why  receives what is wrong on error.
 * @return KVX_OK; the errors of kvx_layout_init() (INVALID_PARAM,
 *         OVERFLOW); KVX_ERR_LAYOUT_MISMATCH (block_bytes differs).
 */
kvx_status_t kvxi_wire_layout_from(const Kvx__V1__Layout *w, kvx_layout_t *l,
                                   char *why, size_t why_len);

/** KVXI_DATA_PATH_* mask -> wire list; returns the count (0 .. 2). */
size_t kvxi_wire_paths_to(uint32_t mask, Kvx__V1__DataPath paths[2]);

/** Wire list -> KVXI_DATA_PATH_* mask (unknown values ignored). */
uint32_t kvxi_wire_paths_from(size_t n, const Kvx__V1__DataPath *paths);

/** kvxi_conn_memory_t <-> kvx.v1.Memory (views, no copies). */
void kvxi_wire_memory_to(const kvxi_conn_memory_t *m, Kvx__V1__Memory *w);
void kvxi_wire_memory_from(const Kvx__V1__Memory *w, kvxi_conn_memory_t *m);

/**
 * Resizes *@p peer_p to hold copies of @p m's blobs after the struct and
 * points its memory at them. On KVX_ERR_NO_MEMORY *@p peer_p is unchanged.
 */
kvx_status_t kvxi_peer_info_set_memory(kvxi_peer_info_t **peer_p,
                                       const kvxi_conn_memory_t *m);

#endif /* KVX_HANDSHAKE_INT_H */
