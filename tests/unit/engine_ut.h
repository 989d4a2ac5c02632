/*
 * Raw-session harness shared by test_engine.c, test_engine_hold.c and
 * test_engine_xfer.c (code in engine_ut.c): a node with its engine socket
 * in a temporary directory, driven by raw unix-socket clients in this
 * thread (frames built with the codec, the node progressed while a client
 * waits). Real UCX over loopback for the transfers; eut_main() exits 77 if
 * UCX cannot start.
 */
#ifndef KVX_TEST_ENGINE_UT_H
#define KVX_TEST_ENGINE_UT_H

#include "node_ut.h"

#include "engine_int.h"

#include <sys/types.h>

#define TC_WAIT_MS 5000u
#define EUT_BLOCKS 64u /* blocks in the pool of eut_node() */
#define B(name) KVX__V1__ENVELOPE__BODY_##name
#define WIRE(st) ((Kvx__V1__Status)kvxi_status_to_wire(st))

/* The engine socket of eut_node(), in a directory of its own. */
extern char eut_sock_path[96];

/* The nodes a waiting client progresses (eut_drive_b may be NULL). */
extern kvx_node_h eut_drive_a, eut_drive_b;

/* Creates the temporary directory, runs @p suites, removes it. */
int eut_main(const ut_suite_t *suites);

/* Node "a" (EUT_BLOCKS blocks, TCP, listening on loopback if @p listen)
 * serving eut_sock_path; it becomes eut_drive_a, eut_drive_b is cleared.
 * Fails the test at once if the node cannot start. */
kvx_node_h eut_node(int listen);

/* A plain node over TCP (no engine socket), listening if @p listen. */
kvx_status_t eut_peer(const char *id, int listen, kvx_node_h *node_p);

/* The pool counters of @p node. */
kvx_alloc_attr_t eut_alloc(kvx_node_h node);

/* Progresses @p node (waiting @p tick_ms each round) for up to @p ms
 * until every block is FREE or CACHED; returns the last counters. */
kvx_alloc_attr_t eut_wait_idle(kvx_node_h node, uint32_t ms, uint32_t tick_ms);
/* Progresses @p node until @p leases leases are fenced (CUnit-asserted)
 * or @p ms pass; returns the last counts. */
kvx_alloc_attr_t eut_wait_fenced(kvx_node_h node, uint32_t leases, uint32_t ms);

/* Byte offset of @p block from the start of the pool of @p node. */
uint64_t eut_block_off(kvx_node_h node, uint32_t block);

/* ------------------------------------------------------------------------
 * A raw client.
 */

typedef struct tc {
    int fd;
    int got_fd; /* descriptor received with a frame, or -1 */
    uint64_t next_id;
    uint8_t buf[1 << 16];
    size_t len;
} tc_t;

tc_t *tc_open(void);
void tc_close(tc_t *c);

/* Writes @p len raw bytes, progressing the nodes while the socket is full. */
void tc_write(tc_t *c, const void *p, size_t len);

/* Sends @p env (version 1, a fresh request id unless set); returns the id. */
uint64_t tc_send(tc_t *c, kvxi_envelope_t *env);

/* recvmsg() of up to @p len bytes of @p fd into @p buf (@p flags plus
 * MSG_CMSG_CLOEXEC); a descriptor passed along (SCM_RIGHTS) goes into
 * *@p got_fd_p, which is left alone when none came. Returns recvmsg()'s
 * result. */
ssize_t eut_recv_fd(int fd, void *buf, size_t len, int flags, int *got_fd_p);

/* Reads one frame; KVX_ERR_PEER_DOWN at EOF, KVX_ERR_TIMEOUT. */
kvx_status_t tc_recv(tc_t *c, uint32_t ms, kvxi_envelope_t **env_p);

/* Expects a frame with body @p body; returns it (free with
 * kvxi_frame_free()) or NULL after a failed assertion. */
kvxi_envelope_t *tc_expect(tc_t *c, Kvx__V1__Envelope__BodyCase body);

/* Expects the reply of body @p body to request @p id. */
kvxi_envelope_t *tc_reply(tc_t *c, uint64_t id,
                          Kvx__V1__Envelope__BodyCase body);

/* One request, its reply of body @p body. */
kvxi_envelope_t *tc_call(tc_t *c, kvxi_envelope_t *env,
                         Kvx__V1__Envelope__BodyCase body);

/* Expects Error{code} and then the end of the session. */
void tc_expect_error_eof(tc_t *c, kvx_status_t code);

/* Expects XferDone with status @p st. */
void tc_expect_done(tc_t *c, kvx_status_t st);

void tc_send_attach(tc_t *c, uint32_t min, uint32_t max);
kvxi_envelope_t *tc_attach_v(tc_t *c, uint32_t min, uint32_t max);

/* A new session, attached with version 1. */
tc_t *tc_attached(void);

/* eut_node(0) into *node_p and a session attached to it. */
tc_t *eut_session(kvx_node_h *node_p);

/* Closes @p c, then destroys @p node. */
void eut_end(tc_t *c, kvx_node_h node);

/* Maps the pool of @p node received with Attach, shared and writable;
 * its length into *len_p (for munmap()). */
uint8_t *tc_map(tc_t *c, kvx_node_h node, size_t *len_p);

void refs_to_wire(Kvx__V1__BlockRefs *w, uint32_t *buf,
                  const kvx_block_ref_t *refs, uint32_t n);
void refs_from_wire(kvx_block_ref_t *refs, const Kvx__V1__BlockRefs *w,
                    uint32_t n);

/* ------------------------------------------------------------------------
 * Requests.
 */

/* Reserve of @p n blocks (@p keys and @p lease_ms unless NULL / 0): the
 * ReserveReply, whatever its status. */
kvxi_envelope_t *tc_reserve_req(tc_t *c, uint32_t n,
                                const kvx_block_key_t *keys, uint32_t lease_ms);

/* Reserve that must succeed: returns the lease; refs and hits (may be
 * NULL) filled. */
kvx_lease_id_t tc_reserve(tc_t *c, uint32_t n, const kvx_block_key_t *keys,
                          kvx_block_ref_t *refs, uint8_t *mask);

/* A request answered by Result: its status (xfer id into *xid_p). */
kvx_status_t tc_result(tc_t *c, kvxi_envelope_t *env, uint64_t *xid_p);

kvx_status_t tc_seal(tc_t *c, kvx_lease_id_t lease);

/* Reserve then Seal, which must succeed: @p refs are held by the session. */
void tc_reserve_sealed(tc_t *c, uint32_t n, const kvx_block_key_t *keys,
                       kvx_block_ref_t *refs);

/* Release: returns the ReleaseAck's count. */
uint32_t tc_release(tc_t *c, const kvx_block_ref_t *refs, uint32_t n);

uint64_t tc_send_stats(tc_t *c);
kvxi_envelope_t *tc_stats(tc_t *c);
kvxi_envelope_t *tc_peer_list(tc_t *c);

kvx_status_t tc_push(tc_t *c, const char *peer, uint64_t request_id,
                     const kvx_block_ref_t *refs, uint32_t n, uint64_t *xid_p);
kvx_status_t tc_publish(tc_t *c, uint64_t request_id,
                        const kvx_block_ref_t *refs, uint32_t n);
kvx_status_t tc_abort(tc_t *c, uint64_t xid, kvx_status_t reason);

/* Sends Recv{request_id, up to 8 blocks, timeout @p ms}. */
void tc_send_recv(tc_t *c, uint64_t request_id, uint32_t ms);

#endif /* KVX_TEST_ENGINE_UT_H */
