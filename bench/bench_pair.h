/*
 * kvx-bench: the two nodes of a run on one host. A forked target child
 * (listens on 127.0.0.1:0, collects and releases requests 1, 2, ... in
 * order, exits when its socket to us closes) and this process's node,
 * connected to it. Shared by sweep and model.
 */
#ifndef KVX_BENCH_PAIR_H
#define KVX_BENCH_PAIR_H

#include <kvx/kvx.h>

#include <sys/types.h>

#define KVXI_PAIR_CONNECT_MS 10000

typedef struct kvxi_pair {
    pid_t pid;       /* the target child */
    int fd;          /* our end of the socket to it */
    kvx_node_h node; /* ours (the initiator) */
    kvx_peer_h peer; /* the target, connected */
} kvxi_pair_t;

/* The layout of sweep and scale: 1 layer, K and V, 16 tokens, one head of
 * CHUNK / 64 bf16 elements, so that block_bytes == CHUNK (a multiple of
 * 64); NUM_BLOCKS blocks. */
kvx_layout_params_t kvxi_pair_chunk_layout(size_t chunk, uint32_t num_blocks);

/* A node of layout LP over UCX_TLS TLS, with the run's 16-byte SECRET;
 * LISTEN may be NULL. Its pool is populated (no page faults later). */
kvx_status_t kvxi_pair_node_create(const char *tls, const unsigned char *secret,
                                   const kvx_layout_params_t *lp,
                                   const char *id, const char *listen,
                                   kvx_node_h *node_p);

/* Forks the target (layout LP, both sides), creates our node and connects.
 * WHAT names the run in messages. Returns 0, or 1 after printing why (the
 * pair is then closed). */
int kvxi_pair_open(const char *tls, const unsigned char *secret,
                   const kvx_layout_params_t *lp, const char *what,
                   kvxi_pair_t *p);

/* Runs in the target child on its node before it reports its address
 * (e.g. publishing blocks for pulls): KVX_OK, or the failure the target
 * reports (the open then fails). */
typedef kvx_status_t (*kvxi_pair_setup_cb_t)(kvx_node_h node, void *arg);

/* kvxi_pair_open() with SETUP(node, ARG) run in the target first. */
int kvxi_pair_open_setup(const char *tls, const unsigned char *secret,
                         const kvx_layout_params_t *lp, const char *what,
                         kvxi_pair_setup_cb_t setup, void *arg, kvxi_pair_t *p);

/* Destroys our node, stops and reaps the target. */
void kvxi_pair_close(kvxi_pair_t *p);

/* Two hosts (bench_target.c). kvxi_pair_remote: "HOST:PORT" of a
 * `kvx-bench target` agent (--target); when set, kvxi_pair_open() asks the
 * agent for the target instead of forking one (no setup callback then).
 * kvxi_pair_listen: the control address a target node listens on
 * ("127.0.0.1:0"; the agent's host with port 0). */
extern const char *kvxi_pair_remote;
extern const char *kvxi_pair_listen;

/* The target child's body (used by the agent too): never returns. Writes
 * its node's address (or "ERR why") as one line on FD, then collects
 * requests until FD reaches EOF. */
void kvxi_pair_target_main(const char *tls, const unsigned char *secret,
                           const kvx_layout_params_t *lp,
                           kvxi_pair_setup_cb_t setup, void *arg, int fd);

/* Connects to the agent at kvxi_pair_remote and asks it for a target of
 * layout LP over UCX_TLS=TLS with SECRET and this run's tuning: the
 * socket, from which the target's address line is read next; -1 after a
 * message. */
int kvxi_pair_remote_open(const char *tls, const unsigned char *secret,
                          const kvx_layout_params_t *lp);

/* `kvx-bench target --listen HOST:PORT`: serves targets until killed. */
int kvxi_target_main(int argc, char **argv);

#endif
