/*
 * Inside of a control connection, shared by conn.c (creation, the owner's
 * API) and conn_io.c (what the socket and the timers drive). Nothing else
 * includes it: the rest of libkvx sees the opaque kvxi_conn_t.
 */
#ifndef KVX_CONN_IMPL_INT_H
#define KVX_CONN_IMPL_INT_H

#include <event2/util.h>

#include "conn_int.h"
#include "handshake_int.h"
#include "heartbeat_int.h"

struct bufferevent;
struct event;

#define CONN_NAME_MAX 128

struct kvxi_conn {
    struct event_base *base;
    struct bufferevent *bev; /* owns the socket */
    struct event *timer;     /* connect / handshake / linger deadline */
    struct event *heartbeat; /* periodic tick while open */
    struct event *finish;    /* deferred: close the socket, report */
    kvxi_conn_state_t state;
    int is_client;
    kvxi_conn_cbs_t cbs;
    kvxi_conn_identity_t *identity; /* until open */
    kvxi_hs_t *hs;                  /* until open */
    kvxi_peer_info_t *peer;         /* once open */
    uint32_t version;
    uint64_t next_id;
    size_t rx_max; /* frame body limit in force */
    size_t tx_max; /* the peer's limit */
    size_t high_water;
    uint32_t connect_ms, handshake_ms, linger_ms;
    kvxi_hb_t hb;
    int want_writable; /* a send failed with NO_SPACE */
    int eof_seen;
    int wr_shut;
    unsigned in_cb;      /* owner callbacks on the stack */
    int destroy_pending; /* kvxi_conn_destroy() inside a callback */
    int close_reported;
    kvx_status_t close_reason;
    char close_text[KVXI_TEXT_MAX + 1];
    char name[CONN_NAME_MAX];
};

/** Arms @p ev to fire in @p ms milliseconds. */
void kvxi_conn_timer_add_ms(struct event *ev, uint32_t ms);

/** Frees @p c and everything it holds (closes the socket). */
void kvxi_conn_free(kvxi_conn_t *c);

/**
 * Ends an owner callback (the caller incremented in_cb): frees @p c if the
 * owner destroyed it inside. Returns 0 when freed (return at once), else 1.
 */
int kvxi_conn_cb_leave(kvxi_conn_t *c);

/**
 * Starts closing @p c with @p reason (once; later calls are no-ops). If
 * @p wire is an error the peer gets Error{wire, text, @p request_id}.
 * Graceful closes flush the output, shut down the write side and wait at
 * most linger_ms for the peer's EOF; a dead peer is dropped at once. The
 * closed callback follows from the event loop.
 */
void kvxi_conn_fail(kvxi_conn_t *c, kvx_status_t reason, kvx_status_t wire,
                    uint64_t request_id, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/** Enters the handshake state (client: queues Hello), arms its timeout. */
void kvxi_conn_start_handshake(kvxi_conn_t *c);

/* libevent callbacks (arg = the connection). */
void kvxi_conn_read_cb(struct bufferevent *bev, void *arg);
void kvxi_conn_write_cb(struct bufferevent *bev, void *arg);
void kvxi_conn_event_cb(struct bufferevent *bev, short what, void *arg);
void kvxi_conn_timer_cb(evutil_socket_t fd, short what, void *arg);
void kvxi_conn_heartbeat_cb(evutil_socket_t fd, short what, void *arg);
void kvxi_conn_finish_cb(evutil_socket_t fd, short what, void *arg);

#endif /* KVX_CONN_IMPL_INT_H */
