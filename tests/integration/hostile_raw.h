/*
 * A raw control-protocol client for tests/integration/test_hostile.c: a
 * blocking TCP socket that writes whatever frames (or bytes) the test
 * crafts with the internal frame API, records every byte it sent (for
 * replays), and can run the client side of the handshake with the
 * internal state machine (handshake_int.h) under the identity of
 * raw_node, a node of the test, so the daemon's UCX endpoint reaches a
 * real worker. Every wait is bounded and progresses the test's nodes.
 */
#ifndef KVX_TEST_HOSTILE_RAW_H
#define KVX_TEST_HOSTILE_RAW_H

#include "kvxd_it.h"

#include "handshake_int.h"
#include "node_int.h"
#include "ucx_int.h"

#define B(name) KVX__V1__ENVELOPE__BODY_##name
#define WIRE(st) ((Kvx__V1__Status)kvxi_status_to_wire(st))

typedef struct raw {
    int fd;
    uint8_t in[1 << 16];
    size_t in_len;
    struct evbuffer *sent;  /* every byte written */
    uint64_t next_id;       /* after the handshake */
    kvxi_peer_info_t *peer; /* the daemon's identity, from Accept */
    kvxi_hs_t *hs;
} raw_t;

/* The node whose identity (worker address, rkey) the raw handshake
 * announces; waits progress it and it_node. */
extern kvx_node_h raw_node;

/* Connects to @p addr ("127.0.0.1:port"); CUnit-fatal on failure. */
void raw_open(raw_t *r, const char *addr);
void raw_close(raw_t *r);

/* Writes @p len bytes (recorded); 0, or -1 when the peer is gone. */
int raw_write(raw_t *r, const void *p, size_t len);

/* Encodes and writes @p env (version 1; a fresh request id when 0);
 * returns the request id. */
uint64_t raw_send(raw_t *r, kvxi_envelope_t *env);

/* One frame within @p ms: KVX_OK; KVX_ERR_PEER_DOWN (EOF, reset);
 * KVX_ERR_TIMEOUT; KVX_ERR_PROTO_MALFORMED (bytes that are no frame). */
kvx_status_t raw_recv(raw_t *r, uint32_t ms, kvxi_envelope_t **env_p);

/* The next frame other than a Heartbeat, which must carry @p body (and
 * answer @p id unless 0); NULL after a failed assertion. */
kvxi_envelope_t *raw_expect(raw_t *r, Kvx__V1__Envelope__BodyCase body,
                            uint64_t id);

/* Expects Error{@p code} and then EOF within @p ms, and no Accept. */
void raw_expect_error_eof(raw_t *r, kvx_status_t code, uint32_t ms);

/* Sends Hello (the state machine with @p secret): the HelloReply is left
 * unread. */
void raw_hello(raw_t *r, const char *secret);

/* The whole client handshake: KVX_OK once Accept arrived (r->peer set),
 * else the refusal (ours, or the daemon's Error code). */
kvx_status_t raw_handshake(raw_t *r, const char *secret);

/* AllocateRequest{PUSH, AM} of @p n blocks as transfer @p tid: expects
 * AllocateReply{@p want}; returns its lease tag, refs into @p refs. */
uint64_t raw_allocate(raw_t *r, uint64_t tid, uint32_t n, kvx_status_t want,
                      kvx_block_ref_t *refs);

/* Commit of @p n <= 8 refs (checksums @p sums unless NULL, @p bytes written);
 * returns the reply, which must carry @p body (CommitAck or Error). */
kvxi_envelope_t *raw_commit(raw_t *r, uint64_t tid, uint64_t tag,
                            const kvx_block_ref_t *refs, uint32_t n,
                            const uint64_t *sums, uint64_t bytes,
                            Kvx__V1__Envelope__BodyCase body);

/* Writes @p len bytes of raw_node's pool at @p src_off into the daemon's
 * pool at @p dst_off as AM chunks tagged @p tag, through @p ep (an endpoint
 * of raw_node's worker); waits for the local completion. */
void raw_am_write(kvxi_ucx_ep_h ep, uint64_t tag, uint64_t src_off,
                  uint64_t dst_off, uint64_t len);

#endif /* KVX_TEST_HOSTILE_RAW_H */
