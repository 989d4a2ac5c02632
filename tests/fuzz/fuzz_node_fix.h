/*
 * The fixture of fuzz_node (see fuzz_node.h): the node that lives for the
 * whole process, the peers and engine session of one input, and the
 * teardown that checks the node is back at its start.
 */
#ifndef KVX_FUZZ_NODE_FIX_H
#define KVX_FUZZ_NODE_FIX_H

#include "engine_int.h"
#include "fuzz_node.h"

#define FZ_XFERS 8     /* transfer handles the harness keeps */
#define FZ_KEYS 6      /* keys a pull may name: the first 2 are cached */
#define FZ_WAITS_MAX 3 /* sleeps per input */

typedef struct fz_peer {
    struct kvx_peer *peer; /* NULL: none (yet, or gone) */
    kvxi_conn_t *remote;   /* the other end, until the input ends */
} fz_peer_t;

/* An AM write of a remote in flight (its segment lives until the end). */
typedef struct fz_write {
    kvx_segment_t seg;
    int busy;
} fz_write_t;

#define FZ_WRITES 4

typedef struct fz {
    struct kvx_node *node;
    char dir[64];   /* private temporary folder */
    char sock[96];  /* the engine socket in it */
    char none[96];  /* a unix address nobody listens on */
    char rname[32]; /* node id of the remote being connected */
    kvxi_conn_identity_t rid;
    uint8_t *rpool; /* the remotes' pool (registered in the node's UCX) */
    kvxi_ucx_mem_h rmem;
    kvxi_conn_config_t rcfg;
    fz_peer_t peers[FZ_PEERS];
    unsigned peers_made; /* this input */
    int eng_fd;          /* engine client socket, -1: none */
    unsigned sessions_made;
    kvx_block_ref_t src[FZ_SRC_BLOCKS]; /* READY, pinned by the harness */
    kvx_block_key_t keys[FZ_KEYS];
    kvx_xfer_h xfers[FZ_XFERS];
    unsigned n_xfers;
    unsigned waits;
    fz_write_t writes[FZ_WRITES];
} fz_t;

/** The fixture; creates the node on the first call (exits if it cannot). */
fz_t *fz_get(void);

/** Starts an input with setup byte @p cfg (FZ_CFG_*). */
void fz_begin(fz_t *f, uint8_t cfg);

/** Ends the input: tears everything down, checks the node is back at its
 *  start (traps otherwise) and resets the allocator. */
void fz_end(fz_t *f);

/** Runs the node's loop until the sockets between it, the remotes and the
 *  engine are drained (bounded). */
void fz_settle(fz_t *f);

/** Peer slot @p i, connected (handshake done) if it was not: NULL when it
 *  could not be, or when the input made too many peers. */
fz_peer_t *fz_peer(fz_t *f, unsigned i);

/** Whether @p peer is still one of the node's peers. */
int fz_peer_alive(const fz_t *f, const struct kvx_peer *peer);

/** Ends peer slot @p i (FZ_OP_PEER_END's how). */
void fz_peer_end(fz_t *f, unsigned i, unsigned how);

/** Sends @p len bytes on the engine session (connecting it first). */
void fz_engine_send(fz_t *f, const uint8_t *buf, size_t len);

/** Closes the engine's socket (the session ends). */
void fz_engine_end(fz_t *f);

/** Traps after printing @p what (an invariant broke). */
void fz_fail(const char *what) __attribute__((noreturn));

#endif /* KVX_FUZZ_NODE_FIX_H */
