/**
 * @file kvx/client.h
 * @brief Attach an inference engine to a local kvxd (or any kvx node that
 * serves engines) over its unix socket.
 *
 * The node's KV pool is shared memory: kvx_client_attach() receives its
 * memfd over the socket (SCM_RIGHTS) and maps it, so the engine writes KV
 * straight into the blocks the node sends, and reads what the node received,
 * with no copy between engine and daemon. Everything else (reserving blocks,
 * pushing, publishing, pulling, collecting, releasing) is a request to the
 * node; the node does the networking. The vocabulary is the embedded node's
 * (kvx/node.h): the same kvx_xfer_params_t, kvx_publish_params_t,
 * kvx_pull_params_t and kvx_xfer_attr_t, with a kvx_client_h where the
 * embedded API takes a kvx_node_h.
 *
 * Holds. Every block the client reserves, seals, or collects is held
 * (pinned) for the client until kvx_client_release(); when the client
 * detaches or its process dies (the socket closes), the node drops all of
 * its holds, frees its unsealed reservations and aborts its transfers.
 *
 * Trust. The socket file is mode 0600: only the daemon's user (and root)
 * can attach. An attached engine maps the whole pool read-write and is
 * trusted like the daemon; the node still checks that every block a
 * request names is one the client holds.
 *
 * Threads. A kvx_client_h is used by one thread at a time (like a UCX
 * worker in single-thread mode). Nothing runs in the background: replies
 * and transfer completions are read when the client calls in. Engines that
 * drive transfers from several threads attach once per thread. A forked
 * child shares the parent's socket: it must not use the parent's client
 * (it may attach its own).
 *
 * Calls that wait (attach, the requests, kvx_client_xfer_wait(),
 * kvx_client_recv()) are bounded by a timeout; kvx_client_xfer_test() and
 * kvx_client_recv() with timeout 0 never block. A request that timed out
 * may still take effect on the node (its late answer is dropped): whatever
 * it left held for the client is dropped at detach. When the node goes
 * away, every call returns KVX_ERR_PEER_DOWN and running transfers end
 * with it.
 */
#ifndef KVX_CLIENT_H
#define KVX_CLIENT_H

#include <kvx/alloc.h>
#include <kvx/common.h>
#include <kvx/key.h>
#include <kvx/layout.h>
#include <kvx/node.h>
#include <kvx/status.h>
#include <kvx/ticket.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kvx_client *kvx_client_h;
typedef struct kvx_client_xfer *kvx_client_xfer_h;

/** Bits of kvx_client_params_t::field_mask. */
enum kvx_client_param_field {
    KVX_CLIENT_PARAM_FIELD_NAME = 1u << 0,
    KVX_CLIENT_PARAM_FIELD_TIMEOUT = 1u << 1
};

typedef struct kvx_client_params {
    uint64_t field_mask;
    const char *name;    /**< NAME: shown in the node's logs, 0 .. 256
                              bytes (default "engine") */
    uint32_t timeout_ms; /**< TIMEOUT: longest wait for any reply of the
                              node (default 10000; 0 selects it) */
} kvx_client_params_t;

/**
 * Attaches to the node listening on the unix socket @p path ("/run/kvxd.sock"
 * or "unix:/run/kvxd.sock") and maps its pool.
 * @param params    may be NULL (defaults).
 * @param client_p  receives the client; detach with kvx_client_detach().
 * @return KVX_OK;
 *         KVX_ERR_INVALID_PARAM (NULL path or out-pointer, empty or too
 *         long path (107 bytes after "unix:"), name above 256 bytes,
 *         unknown param bits);
 *         KVX_ERR_PEER_UNREACHABLE (nobody listens at @p path);
 *         KVX_ERR_AUTH (this process's user may not attach: the socket
 *         file's mode kept it out, or the node refused its credentials);
 *         KVX_ERR_TIMEOUT (no answer within the timeout);
 *         KVX_ERR_PROTO_VERSION (no session version in common);
 *         KVX_ERR_PROTO_MALFORMED (the answer is not a valid AttachReply
 *         with one memfd of at least the announced size);
 *         an error status the node refused the attach with;
 *         KVX_ERR_IO (socket or mmap failed); KVX_ERR_NO_MEMORY.
 */
KVX_EXPORT kvx_status_t kvx_client_attach(const char *path,
                                          const kvx_client_params_t *params,
                                          kvx_client_h *client_p);

/**
 * Detaches: closes the socket (the node drops every hold of the client and
 * aborts its transfers), unmaps the pool and frees the client. Transfer
 * handles not released yet are freed too. NULL is a no-op.
 */
KVX_EXPORT void kvx_client_detach(kvx_client_h client);

/** The node's pool layout (block_bytes, num_blocks, ...). */
KVX_EXPORT const kvx_layout_t *kvx_client_layout(kvx_client_h client);

/** The node's id. */
KVX_EXPORT const char *kvx_client_node_id(kvx_client_h client);

/**
 * Address of block @p block in this process's mapping of the pool (its
 * layer/part offsets come from kvx_layout_offset() on kvx_client_layout());
 * NULL for NULL or an index outside the pool.
 */
KVX_EXPORT void *kvx_client_block_addr(kvx_client_h client, uint32_t block);

/**
 * Reserves @p count blocks of the pool for the engine to write, all or
 * nothing. With @p keys, blocks the pool already holds under a key are
 * hits: held for the client at once, marked in @p hit, not to be written.
 * The others are reserved under *@p lease_p until kvx_client_seal(). A
 * lease that ends unsealed is fenced, not freed (this process may still be
 * writing them): its blocks come back when the client seals it (refused:
 * KVX_ERR_STALE_HANDLE), releases all of them, or detaches.
 * @param keys      @p count keys in prefix order, or NULL (no dedupe).
 * @param lease_ms  time to seal; 0 = the node's default lease; at most
 *                  3,600,000.
 * @param refs      receives @p count references.
 * @param hit       receives @p count bytes (1 = hit), or NULL.
 * @param lease_p   receives the lease (0 when every block hit).
 * @return KVX_OK; KVX_ERR_INVALID_PARAM (NULL, count 0 or above 2^20,
 *         lease_ms too long);
 *         KVX_ERR_NO_SPACE (not enough free or evictable blocks: nothing
 *         held, retry later); KVX_ERR_TIMEOUT; KVX_ERR_PEER_DOWN.
 */
KVX_EXPORT kvx_status_t kvx_client_reserve(kvx_client_h client, uint32_t count,
                                           const kvx_block_key_t *keys,
                                           uint32_t lease_ms,
                                           kvx_block_ref_t *refs, uint8_t *hit,
                                           kvx_lease_id_t *lease_p);

/**
 * The engine wrote the blocks of @p lease: they become READY, held by the
 * client, and keyed blocks enter the node's prefix index.
 * @return KVX_OK; KVX_ERR_INVALID_PARAM (lease 0); KVX_ERR_STALE_HANDLE
 *         (unknown, expired or not this client's lease);
 *         KVX_ERR_BAD_STATE (fenced); KVX_ERR_TIMEOUT; KVX_ERR_PEER_DOWN.
 */
KVX_EXPORT kvx_status_t kvx_client_seal(kvx_client_h client,
                                        kvx_lease_id_t lease);

/**
 * Drops the client's hold on each of @p n blocks (a keyed block with no
 * other holder stays cached for dedupe; an unkeyed one is freed). An
 * unsealed (or expired) reservation whose blocks are all among @p refs is
 * given back too: its blocks are freed, its lease is gone.
 * @param released_p  receives how many holds and reserved blocks were
 *                    dropped (refs the client does not hold are skipped);
 *                    may be NULL.
 * @return KVX_OK; KVX_ERR_INVALID_PARAM; KVX_ERR_TIMEOUT; KVX_ERR_PEER_DOWN.
 */
KVX_EXPORT kvx_status_t kvx_client_release(kvx_client_h client,
                                           const kvx_block_ref_t *refs,
                                           uint32_t n, uint32_t *released_p);

/**
 * Pushes blocks the client holds to a peer of the node (kvx_node_push()).
 * @param peer    a connected peer's node id, or a control address the node
 *                connects to first ("10.0.0.7:4000"; later pushes reuse the
 *                connection). Once that connection died the node connects
 *                again: to the address, or for a node id to the address it
 *                last reached that node at (then only a node answering with
 *                that id takes the push: KVX_ERR_PEER_REFUSED otherwise).
 * @param params  as kvx_node_push(); blocks must be held by the client.
 * @param xfer_p  receives the transfer; free with kvx_client_xfer_release().
 * @return KVX_OK (started: completion through kvx_client_xfer_test/wait);
 *         KVX_ERR_INVALID_PARAM; KVX_ERR_STALE_HANDLE / KVX_ERR_BAD_STATE
 *         (a block the client does not hold READY); the node's refusal
 *         (KVX_ERR_NOT_SUPPORTED, KVX_ERR_BAD_STATE when shutting down);
 *         KVX_ERR_NOT_FOUND (@p peer is neither an address nor a node id
 *         the node knows); KVX_ERR_TIMEOUT; KVX_ERR_PEER_DOWN;
 *         KVX_ERR_NO_MEMORY. Failures of the peer (unreachable, refused,
 *         down) end the transfer instead.
 */
KVX_EXPORT kvx_status_t kvx_client_push(kvx_client_h client, const char *peer,
                                        const kvx_xfer_params_t *params,
                                        kvx_client_xfer_h *xfer_p);

/**
 * Pulls the blocks a peer published (kvx_node_pull()); collect them with
 * kvx_client_recv(params->request_id) once the transfer ends.
 * @param peer  as kvx_client_push() (a ticket's addr).
 * @return as kvx_client_push(); KVX_ERR_EXISTS (a transfer of the request
 *         is live on the node); KVX_ERR_NO_SPACE.
 */
KVX_EXPORT kvx_status_t kvx_client_pull(kvx_client_h client, const char *peer,
                                        const kvx_pull_params_t *params,
                                        kvx_client_xfer_h *xfer_p);

/** Layer-wise pushes: layers [0, @p layer_end) are written (as
 *  kvx_xfer_layer_ready()). @return as kvx_xfer_layer_ready(), and
 *  KVX_ERR_TIMEOUT / KVX_ERR_PEER_DOWN. */
KVX_EXPORT kvx_status_t kvx_client_xfer_layer_ready(kvx_client_xfer_h xfer,
                                                    uint32_t layer_end);

/** KVX_INPROGRESS while running, else the outcome. Never blocks: reads
 *  whatever the node already sent. */
KVX_EXPORT kvx_status_t kvx_client_xfer_test(kvx_client_xfer_h xfer);

/** Waits until @p xfer ends or @p timeout_ms passes (KVX_INPROGRESS). */
KVX_EXPORT kvx_status_t kvx_client_xfer_wait(kvx_client_xfer_h xfer,
                                             uint32_t timeout_ms);

/** Fills @p attr (status KVX_INPROGRESS and zero counters while running).
 *  @return KVX_OK; KVX_ERR_INVALID_PARAM. */
KVX_EXPORT kvx_status_t kvx_client_xfer_query(kvx_client_xfer_h xfer,
                                              kvx_xfer_attr_t *attr);

/** Asks the node to abort @p xfer (it ends with KVX_ERR_ABORTED unless it
 *  ended first). @return KVX_OK; KVX_ERR_BAD_STATE (already ended, or too
 *  late: the receiver is committing it, and it ends with the receiver's
 *  answer); KVX_ERR_TIMEOUT; KVX_ERR_PEER_DOWN. */
KVX_EXPORT kvx_status_t kvx_client_xfer_abort(kvx_client_xfer_h xfer);

/** Frees a transfer handle, aborting the transfer if it still runs.
 *  NULL is a no-op. */
KVX_EXPORT void kvx_client_xfer_release(kvx_client_xfer_h xfer);

/**
 * Publishes blocks the client holds for pulling (kvx_node_publish()).
 * @param ticket_p  receives the ticket for the puller (the node's control
 *                  address and id); may be NULL.
 * @return as kvx_node_publish(); KVX_ERR_BAD_STATE also when @p ticket_p
 *         is given and the node has no control listener.
 */
KVX_EXPORT kvx_status_t kvx_client_publish(kvx_client_h client,
                                           const kvx_publish_params_t *params,
                                           kvx_ticket_t *ticket_p);

/** Withdraws a publication (kvx_node_unpublish()). */
KVX_EXPORT kvx_status_t kvx_client_unpublish(kvx_client_h client,
                                             uint64_t request_id);

/**
 * Collects the blocks of request @p request_id that reached the node
 * (kvx_node_recv()): on KVX_OK the client holds each returned block (read
 * it at kvx_client_block_addr(), then kvx_client_release()).
 * @param timeout_ms  0 asks once; otherwise waits for the request to
 *                    complete up to that long (at most 3,600,000).
 * @return as kvx_node_recv() (KVX_ERR_INVALID_PARAM also for @p max 0 or
 *         above 2^20 and @p timeout_ms too long); KVX_ERR_TIMEOUT (no
 *         answer within @p timeout_ms plus the client's timeout);
 *         KVX_ERR_PEER_DOWN.
 */
KVX_EXPORT kvx_status_t kvx_client_recv(kvx_client_h client,
                                        uint64_t request_id,
                                        uint32_t timeout_ms,
                                        kvx_block_ref_t *refs, uint32_t max,
                                        uint32_t *n_p);

/**
 * How many leading keys of @p keys the node's pool holds (its longest
 * cached prefix). Answered from the node's prefix index at once, nothing
 * pinned: the answer can be stale by the time the engine reserves.
 * @return KVX_OK; KVX_ERR_INVALID_PARAM (NULL, n 0 or above 2^20);
 *         KVX_ERR_TIMEOUT; KVX_ERR_PEER_DOWN.
 */
KVX_EXPORT kvx_status_t kvx_client_lookup(kvx_client_h client,
                                          const kvx_block_key_t *keys,
                                          uint32_t n, uint32_t *prefix_p);

/** The node's counters (as kvx_node_stats()).
 *  @return KVX_OK; KVX_ERR_INVALID_PARAM; KVX_ERR_TIMEOUT;
 *  KVX_ERR_PEER_DOWN. */
KVX_EXPORT kvx_status_t kvx_client_stats(kvx_client_h client,
                                         kvx_node_stats_t *stats);

/** Bytes of kvx_client_peer_t::addr with its NUL (the wire allows 256). */
#define KVX_CLIENT_ADDR_MAX 257

/** One peer of the node (kvx_client_peers()). */
typedef struct kvx_client_peer {
    char addr[KVX_CLIENT_ADDR_MAX];       /**< control address */
    char node_id[KVX_TICKET_NODE_ID_MAX]; /**< "" while connecting */
    kvx_status_t status;       /**< OK, INPROGRESS, or why it failed/closed */
    kvx_transport_t transport; /**< data path (AUTO until connected) */
    uint64_t rtt_us;           /**< last heartbeat round trip; 0 = none yet */
    int outgoing;              /**< 1: the node connected to it */
} kvx_client_peer_t;

/**
 * Lists the node's peers.
 * @param peers  room for @p max entries (may be NULL when @p max is 0).
 * @param n_p    receives the number of peers the node has (may exceed
 *               @p max: only the first @p max are written).
 * @return KVX_OK; KVX_ERR_INVALID_PARAM; KVX_ERR_TIMEOUT; KVX_ERR_PEER_DOWN.
 */
KVX_EXPORT kvx_status_t kvx_client_peers(kvx_client_h client,
                                         kvx_client_peer_t *peers, uint32_t max,
                                         uint32_t *n_p);

#ifdef __cplusplus
}
#endif

#endif /* KVX_CLIENT_H */
