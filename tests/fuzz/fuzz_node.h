/*
 * fuzz_node: every message handler of a node, and of its engine sessions,
 * fed decoded envelopes.
 *
 * One real node (16 blocks, UCX "self" only, an engine socket in a private
 * temporary folder, removed at exit) lives for the whole fuzzing process.
 * Each input gets fresh peers and engine sessions, runs a short program of
 * operations, and is torn down; afterwards the node must be back where it
 * started: no peer, transfer, receive, publication or session left, every
 * block FREE or CACHED, no lease, no owner entry (fuzz_node_fix.c traps
 * otherwise). The allocator is then recreated, so that block ids,
 * generations and lease ids repeat from one input to the next.
 *
 * Peers. A peer is a socketpair: the node's end is accepted like a
 * listener's connection (kvxi_peer_accept()), the other end is a bare
 * kvxi_conn (the "remote") that completes the handshake as node
 * "remote<slot>" and then sends what the input says. The remote announces
 * the node's own UCX worker and a pool of its own registered there, so the
 * node's data path loops back into the same process (no network, no second
 * UCX context): RMA reads and writes the remotes' pool, AM lands in the
 * node's own receive path.
 *
 * Engine sessions connect to the node's engine socket like an engine; the
 * harness drains the replies (closing any pool fd an AttachReply carries).
 *
 * Input: byte 0 picks the node's setup (FZ_CFG_*), then operations follow,
 * each an op byte (value % FZ_OP_COUNT) and its operands; a missing operand
 * reads as 0. Frames are a 4-byte big-endian length and an Envelope, as on
 * the wire; one that does not decode is skipped. KVX_FUZZ_VERBOSE=1 prints
 * the node's log (to replay one input).
 */
#ifndef KVX_FUZZ_NODE_H
#define KVX_FUZZ_NODE_H

#include <stddef.h>
#include <stdint.h>

/* Byte 0: the node's data path (kvx_transport_t: 0 auto, 1 rma, 2 am) and
 * FZ_CFG_HOLD: hold_ms 2, so that blocks nobody collects are released. */
#define FZ_CFG_TRANSPORT_MASK 3u
#define FZ_CFG_HOLD (1u << 2)

enum fz_op {
    /* peer(1) frame: the remote sends the envelope. A Commit whose lease_id
     * is 1 gets the real lease tag of the node's receive of that transfer
     * (tags are random). */
    FZ_OP_PEER_FRAME = 0,
    /* frame: the engine session sends it (connects first if needed). Peer
     * names that are addresses become a unix path that does not exist. */
    FZ_OP_ENGINE_FRAME = 1,
    /* peer(1) n(1) flags(1) request(1): kvx_node_push() of n of the
     * harness's READY blocks. flags: 1 layer-wise, 2 checksum, 4 keys,
     * 8 deadline 2 ms. */
    FZ_OP_PUSH = 2,
    /* peer(1) n(1) flags(1) request(1): kvx_node_pull(). flags: 4 keys
     * (cached ones or not, by the bits above), 8 deadline 2 ms. */
    FZ_OP_PULL = 3,
    /* request(1) n(1) flags(1): kvx_node_publish(); flags 8: lease 2 ms */
    FZ_OP_PUBLISH = 4,
    FZ_OP_UNPUBLISH = 5, /* request(1) */
    /* index(1) action(1): on the harness's transfer: 0 abort, 1 release,
     * 2 layer_ready(action >> 2), 3 query */
    FZ_OP_XFER = 6,
    FZ_OP_RECV = 7, /* request(1): kvx_node_recv(), collected blocks unpinned */
    FZ_OP_WAIT = 8, /* ms(1): sleeps 1 .. 3 ms (3 times per input at most) */
    /* peer(1) how(1): 0 kvx_peer_close(), 1 the remote goes away (EOF),
     * 2 the remote closes with an Error */
    FZ_OP_PEER_END = 9,
    FZ_OP_ENGINE_END = 10, /* the engine closes its socket */
    /* peer(1) rx(1) mode(1): a well-formed Commit for the node's rx-th
     * receive (right tag, refs and size unless mode says otherwise) */
    FZ_OP_COMMIT = 11,
    /* peer(1) xfer(1) mode(1) bytes(4): an AllocateReply for the node's
     * xfer-th transfer (refs from the bytes) */
    FZ_OP_REPLY = 12,
    /* peer(1) rx(1) mode(1) off(1) len(1): the remote writes AM data as
     * for the node's rx-th receive (its tag unless mode & 1, at offsets
     * around its first missed block). Blocks that no receive owned and that
     * were not fenced must not change. */
    FZ_OP_AM_WRITE = 13,
    FZ_OP_COUNT = 14
};

#define FZ_PEERS 2      /* peer slots an input uses */
#define FZ_SRC_BLOCKS 4 /* READY blocks the harness holds for pushes */
#define FZ_NUM_BLOCKS 16

#endif /* KVX_FUZZ_NODE_H */
