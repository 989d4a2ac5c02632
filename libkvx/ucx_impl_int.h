/*
 * Private to ucx.c (instance, memory, endpoints) and ucx_xfer.c (posts and
 * the AM receive path): the object layouts and the few functions they share.
 */
#ifndef KVX_UCX_IMPL_INT_H
#define KVX_UCX_IMPL_INT_H

#include "ucx_int.h"

#include <ucp/api/ucp.h>

/* Intrusive doubly linked list with a sentinel head. */
typedef struct ucx_link {
    struct ucx_link *prev, *next;
} ucx_link_t;

static inline void ucx_list_init(ucx_link_t *head)
{
    head->prev = head->next = head;
}

static inline int ucx_list_empty(const ucx_link_t *head)
{
    return head->next == head;
}

static inline void ucx_list_push(ucx_link_t *head, ucx_link_t *l)
{
    l->prev = head->prev;
    l->next = head;
    head->prev->next = l;
    head->prev = l;
}

static inline void ucx_list_del(ucx_link_t *l)
{
    l->prev->next = l->next;
    l->next->prev = l->prev;
    l->prev = l->next = l;
}

#define UCX_CONTAINER(ptr, type, member)                                       \
    ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* AM header on the wire: 32 bytes, little endian. */
#define UCX_AM_ID 17u
#define UCX_AM_MAGIC 0x4b565844u /* "KVXD" */

typedef struct ucx_am_hdr {
    uint32_t magic;
    uint32_t seq;
    uint64_t transfer_id;
    uint64_t dst_off;
    uint64_t len;
} ucx_am_hdr_t;

/*
 * A gathered message (ucx_gather.c): several whole small segments in one
 * eager AM. Header magic UCX_AM_MAGIC_GATHER, dst_off = the number of
 * pieces (1 .. UCX_GATHER_MAX), len = the payload's length; the payload
 * is that many ucx_piece_t (little endian) followed by the pieces' bytes.
 */
#define UCX_AM_MAGIC_GATHER 0x4758564bu /* "KVXG" */
#define UCX_GATHER_MAX 64u

typedef struct ucx_piece {
    uint64_t dst_off;
    uint64_t len;
} ucx_piece_t;

/* The send side of one gathered message (pooled on the instance). */
typedef struct ucx_gather {
    ucx_link_t link; /* ucx->gathers (free) or ucx->gathers_busy */
    ucx_piece_t pieces[UCX_GATHER_MAX];
    ucp_dt_iov_t iov[UCX_GATHER_MAX + 1];
} ucx_gather_t;

struct kvxi_ucx_post;
struct kvxi_ucx;

/*
 * Context of one operation in flight, passed to UCX as user_data and set
 * up before the call: UCX may run the callback before the call returns
 * (seen for flushes on a failing endpoint), so nothing is written into the
 * returned request.
 */
typedef struct ucx_op {
    struct kvxi_ucx_post *post;
    uint32_t idx;         /* in post->ops */
    uint32_t busy;        /* given to UCX, callback not yet run */
    ucx_am_hdr_t hdr;     /* AM: must live until the send completes */
    ucx_gather_t *gather; /* a gathered AM's pieces, until it completes */
} ucx_op_t;

/* A rendezvous receive in flight (pooled on the instance). */
typedef struct ucx_rx {
    ucx_link_t link; /* ucx->rx_free or ucx->rx_busy */
    struct kvxi_ucx *ucx;
    ucx_am_hdr_t hdr; /* host byte order */
    int busy;         /* given to UCX, callback not yet run */
} ucx_rx_t;

struct kvxi_ucx {
    ucp_context_h context;
    ucp_worker_h worker;
    ucp_address_t *address;
    size_t address_len;
    int has_shm, has_rdma, resources_known; /* from the context's list */
    int destroying;                         /* no owner callbacks */

    kvxi_ucx_am_dest_cb_t am_dest_cb;
    kvxi_ucx_am_done_cb_t am_done_cb;
    kvxi_ucx_am_refused_cb_t am_refused_cb;
    void *cb_arg;
    uint32_t window;
    uint64_t am_chunk;
    uint32_t close_ms;

    ucx_link_t eps;     /* open endpoints */
    ucx_link_t mems;    /* registered regions */
    ucx_link_t kick;    /* posts to issue more / finish (progress) */
    ucx_link_t done;    /* finished posts, callback not yet delivered */
    ucx_link_t errs;    /* failed endpoints, error_cb not yet delivered */
    ucx_link_t closing; /* destroyed endpoints whose close still runs */
    ucx_link_t free;    /* recycled post objects */
    ucx_link_t zombie;  /* posts UCX may still call back (freed at destroy) */
    ucx_link_t rx_free, rx_busy;      /* rendezvous receive contexts */
    ucx_link_t gathers, gathers_busy; /* gathered sends: free, in UCX */
    kvxi_ucx_stats_t stats;
};

struct kvxi_ucx_mem {
    struct kvxi_ucx *ucx;
    ucx_link_t link;
    ucp_mem_h memh;
    void *rkey_buf;
    size_t rkey_len;
    char *base;
    size_t len;
    uint32_t users; /* open posts */
};

struct kvxi_ucx_ep {
    struct kvxi_ucx *ucx;
    ucx_link_t link;     /* ucx->eps */
    ucx_link_t err_link; /* ucx->errs while an error waits for delivery */
    ucx_link_t posts;    /* open posts */
    ucp_ep_h ep;
    ucp_rkey_h rkey;
    uint64_t peer_base, peer_len; /* peer_len 0: unknown (AM) */
    kvxi_ucx_mode_t mode;
    const char *reason;
    char rma_tl[16];
    kvx_status_t status; /* KVX_OK until the ep fails */
    int closing;         /* destroyed: ignore UCX errors, on ucx->closing */
    void *close_req;     /* ucp_ep_close_nbx request still running */
    int stuck;           /* close gave up on in-flight operations */
    kvxi_ucx_ep_error_cb_t error_cb;
    void *error_arg;
};

enum ucx_post_state {
    UCX_POST_OPEN,  /* issuing / in flight, on ep->posts */
    UCX_POST_DONE,  /* on ucx->done, callback pending */
    UCX_POST_FREE,  /* on ucx->free */
    UCX_POST_ZOMBIE /* orphaned by a timed-out close */
};

struct kvxi_ucx_post {
    struct kvxi_ucx *ucx;
    struct kvxi_ucx_ep *ep; /* NULL once off the ep */
    struct kvxi_ucx_mem *mem;
    ucx_link_t ep_link; /* ep->posts while OPEN */
    ucx_link_t q_link;  /* kick / done / free / zombie */
    int queued_kick;
    enum ucx_post_state state;
    int stopping; /* cancelled or ep closing: issue nothing more */
    int flush_pending, flushed;
    kvxi_ucx_dir_t dir;
    kvxi_ucx_mode_t mode;
    const kvx_segment_t *segs;
    size_t n_segs, seg_idx;
    uint64_t seg_pos; /* bytes of segs[seg_idx] already issued */
    uint32_t seq;
    uint32_t inflight;
    kvx_status_t status; /* first error */
    uint64_t transfer_id;
    kvxi_ucx_post_cb_t cb;
    void *arg;
    uint32_t n_free_ops;
    uint32_t free_ops[KVXI_UCX_WINDOW_MAX];
    ucx_op_t ops[KVXI_UCX_WINDOW_MAX];
};

/* ucx.c */
kvx_status_t kvxi_ucx_status(ucs_status_t status);

/* ucx_ep.c */
/* Reads which transports the context has (has_shm, has_rdma). */
void kvxi_ucx_scan_resources(struct kvxi_ucx *ucx);
/* Progresses the worker, sleeping on its fd when idle, until done(arg) or
   close_ms passed; returns done's last answer. */
int kvxi_ucx_wait(struct kvxi_ucx *ucx, int (*done)(void *), void *arg);
/* Frees destroyed endpoints whose close finished; returns how many. */
unsigned kvxi_ucx_reap_closing(struct kvxi_ucx *ucx);
/* kvxi_ucx_wait() condition: every closing endpoint reaped or stuck. */
int kvxi_ucx_closing_settled(void *ucx);

/* ucx_xfer.c */
ucs_status_t kvxi_ucx_am_recv(void *arg, const void *header,
                              size_t header_length, void *data, size_t length,
                              const ucp_am_recv_param_t *param);
/* Marks the ep's open posts stopping with @p status (pre-close). */
void kvxi_ucx_posts_stop(struct kvxi_ucx_ep *ep, kvx_status_t status);
/* Issues more / finishes queued posts; delivers done posts' callbacks. */
unsigned kvxi_ucx_run_kicks(struct kvxi_ucx *ucx);
unsigned kvxi_ucx_deliver(struct kvxi_ucx *ucx);
/* True while one of the ep's posts still has operations inside UCX. */
int kvxi_ucx_posts_busy(const struct kvxi_ucx_ep *ep);
/* After a close: finishes the ep's posts (their callbacks run now); posts
   UCX may still call back become zombies. */
void kvxi_ucx_posts_detach(struct kvxi_ucx_ep *ep);
/* Frees recycled and zombie posts and receive contexts (after the worker). */
void kvxi_ucx_posts_free_all(struct kvxi_ucx *ucx);
/* Counts a landed (or failed) AM chunk and tells the owner. */
void kvxi_ucx_am_done(struct kvxi_ucx *ucx, const ucx_am_hdr_t *h,
                      kvx_status_t status);

/* ucx_gather.c */
/* How many whole segments from @p post's current one fit one gathered
 * message (0 or 1: send the segment alone); *end_p: the index after them. */
uint32_t kvxi_ucx_gather_span(const struct kvxi_ucx_post *post, size_t *end_p);
/* Sends segments [seg_idx, end) of @p post as one gathered eager AM on
 * @p op (its header and a pooled gather); @p param as for a chunk. Returns
 * what ucp_am_send_nbx() did, or UCS_STATUS_PTR(UCS_ERR_NO_MEMORY). */
ucs_status_ptr_t kvxi_ucx_gather_send(struct kvxi_ucx_post *post, ucx_op_t *op,
                                      size_t end, ucp_request_param_t *param);
/* Gives @p op's gather back to the pool (no-op without one). */
void kvxi_ucx_gather_put(struct kvxi_ucx *ucx, ucx_op_t *op);
/* Lands a gathered message: every piece admitted by am_dest_cb is copied
 * and done; a refused piece is counted and reported, the rest still land. */
void kvxi_ucx_gather_recv(struct kvxi_ucx *ucx, const ucx_am_hdr_t *h,
                          const void *data, size_t length);
/* Frees the pool (after the worker). */
void kvxi_ucx_gathers_free_all(struct kvxi_ucx *ucx);

#endif /* KVX_UCX_IMPL_INT_H */
