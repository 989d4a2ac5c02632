/*
 * The node: pool + allocator + UCX + control listener, and its event loop.
 *
 * Event loop discipline (ucx_int.h): UCX is progressed until idle, then
 * armed; only when arming says "nothing pending" does the loop sleep in
 * event_base_loop(EVLOOP_ONCE), bounded by a timer. The worker's event fd
 * is a persistent read event; deadlines (sender transfers, receiver leases)
 * are one one-shot timer re-armed to the earliest.
 */
#include "node_int.h"

#include "engine_int.h"
#include "log_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define NODE_PARAM_FIELDS_ALL                                                  \
    (KVX_NODE_PARAM_FIELD_NODE_ID | KVX_NODE_PARAM_FIELD_LAYOUT |              \
     KVX_NODE_PARAM_FIELD_LISTEN | KVX_NODE_PARAM_FIELD_UCX_TLS |              \
     KVX_NODE_PARAM_FIELD_TRANSPORT | KVX_NODE_PARAM_FIELD_SECRET |            \
     KVX_NODE_PARAM_FIELD_HEARTBEAT | KVX_NODE_PARAM_FIELD_LEASE |             \
     KVX_NODE_PARAM_FIELD_HOLD | KVX_NODE_PARAM_FIELD_ENGINE_SOCKET |          \
     KVX_NODE_PARAM_FIELD_ENGINE_ALLOW | KVX_NODE_PARAM_FIELD_HANDSHAKE |      \
     KVX_NODE_PARAM_FIELD_POLL | KVX_NODE_PARAM_FIELD_AM_CHUNK)

#define NODE_HOLD_MS_MAX 86400000u

/* Bound on UCX progress rounds before giving the event loop a turn. */
#define NODE_UCX_DRAIN_MAX 4096

uint64_t kvxi_node_now_ns(void)
{
    return kvx_clock_monotonic_ns(NULL);
}

const char *kvx_transport_string(kvx_transport_t transport)
{
    switch (transport) {
    case KVX_TRANSPORT_AUTO: return "auto";
    case KVX_TRANSPORT_RMA: return "rma";
    case KVX_TRANSPORT_AM: return "am";
    }
    return "?";
}

static void node_ucx_drain(struct kvx_node *node)
{
    for (int i = 0; i < NODE_UCX_DRAIN_MAX; i++) {
        if (kvxi_ucx_progress(node->ucx) == 0) {
            break;
        }
        node->activity++;
    }
}

/*
 * The poll window (kvx_node_params_t::poll_us): whether something happened
 * on the node less than poll_ns ago. Activity is counted, not timed, where
 * it happens; the clock is read here, once per round.
 */
static int node_polling(struct kvx_node *node)
{
    uint64_t now;

    if (node->poll_ns == 0) {
        return 0;
    }
    now = kvxi_node_now_ns();
    if (node->activity != node->activity_seen) {
        node->activity_seen = node->activity;
        node->active_ns = now;
        return 1;
    }
    return now - node->active_ns < node->poll_ns;
}

static void node_ucx_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    node_ucx_drain(arg);
}

static void node_wake_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

static void node_deadlines(struct kvx_node *node)
{
    uint64_t next = UINT64_MAX;

    kvxi_xfer_check_deadlines(node, kvxi_node_now_ns(), &next);
    kvxi_rx_expire(node);
    kvxi_rx_check_holds(node, kvxi_node_now_ns(), &next);
}

static void node_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    node_deadlines(arg);
}

void kvxi_node_timer_rearm(struct kvx_node *node)
{
    uint64_t next = UINT64_MAX, lease_next, now = kvxi_node_now_ns();
    struct timeval tv;

    kvxi_xfer_check_deadlines(node, 0, &next);
    kvxi_rx_check_holds(node, 0, &next);
    kvxi_engine_next_deadline(node, &next);
    if (kvx_alloc_next_deadline(node->alloc, &lease_next) == KVX_OK &&
        lease_next < next) {
        next = lease_next;
    }
    if (next == UINT64_MAX) {
        event_del(node->timer_ev);
        return;
    }
    next = next > now ? next - now : 0;
    next += 1000000; /* 1 ms late rather than early: deadline <= now */
    tv.tv_sec = (time_t)(next / 1000000000ull);
    tv.tv_usec = (suseconds_t)((next % 1000000000ull) / 1000);
    event_add(node->timer_ev, &tv);
}

/* An engine allow list: NULL only when empty, bounded, no (uint32_t)-1
 * (the "no change" id of chown(), never a real uid or gid). */
static int node_id_list_ok(const uint32_t *ids, uint32_t n)
{
    if (n > KVX_NODE_ENGINE_ALLOW_MAX || (ids == NULL && n > 0)) {
        return 0;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (ids[i] == UINT32_MAX) {
            return 0;
        }
    }
    return 1;
}

static kvx_status_t node_check_params(const kvx_node_params_t *p)
{
    size_t id_len;

    if (p == NULL) {
        kvxi_error("node: create: NULL params");
        return KVX_ERR_INVALID_PARAM;
    }
    if ((p->field_mask & ~(uint64_t)NODE_PARAM_FIELDS_ALL) != 0 ||
        !(p->field_mask & KVX_NODE_PARAM_FIELD_NODE_ID) ||
        !(p->field_mask & KVX_NODE_PARAM_FIELD_LAYOUT) || p->node_id == NULL ||
        p->layout == NULL) {
        kvxi_error("node: create: node_id and layout are required (mask "
                   "0x%llx)",
                   (unsigned long long)p->field_mask);
        return KVX_ERR_INVALID_PARAM;
    }
    id_len = strnlen(p->node_id, KVXI_NAME_MAX + 1);
    if (id_len == 0 || id_len > KVXI_NAME_MAX) {
        kvxi_error("node: create: node_id must be 1 .. %u bytes",
                   KVXI_NAME_MAX);
        return KVX_ERR_INVALID_PARAM;
    }
    if ((p->field_mask & KVX_NODE_PARAM_FIELD_LISTEN) && p->listen == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    if ((p->field_mask & KVX_NODE_PARAM_FIELD_UCX_TLS) && p->ucx_tls == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    if ((p->field_mask & KVX_NODE_PARAM_FIELD_ENGINE_SOCKET) &&
        p->engine_socket == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    if ((p->field_mask & KVX_NODE_PARAM_FIELD_POLL) &&
        p->poll_us > KVX_NODE_POLL_US_MAX) {
        kvxi_error("node: create: poll_us %u over %u", p->poll_us,
                   KVX_NODE_POLL_US_MAX);
        return KVX_ERR_INVALID_PARAM;
    }
    if ((p->field_mask & KVX_NODE_PARAM_FIELD_AM_CHUNK) &&
        (p->am_chunk < KVX_NODE_AM_CHUNK_MIN ||
         p->am_chunk > KVX_NODE_AM_CHUNK_MAX)) {
        kvxi_error("node: create: am_chunk %llu not in %llu .. %llu",
                   (unsigned long long)p->am_chunk, KVX_NODE_AM_CHUNK_MIN,
                   KVX_NODE_AM_CHUNK_MAX);
        return KVX_ERR_INVALID_PARAM;
    }
    if ((p->field_mask & KVX_NODE_PARAM_FIELD_TRANSPORT) &&
        p->transport != KVX_TRANSPORT_AUTO &&
        p->transport != KVX_TRANSPORT_RMA && p->transport != KVX_TRANSPORT_AM) {
        return KVX_ERR_INVALID_PARAM;
    }
    if ((p->field_mask & KVX_NODE_PARAM_FIELD_SECRET) &&
        (p->secret_len > KVXI_SECRET_MAX ||
         (p->secret == NULL && p->secret_len > 0))) {
        return KVX_ERR_INVALID_PARAM;
    }
    if ((p->field_mask & KVX_NODE_PARAM_FIELD_LEASE) &&
        p->lease_ms > KVXI_LEASE_MS_MAX) {
        return KVX_ERR_INVALID_PARAM;
    }
    if ((p->field_mask & KVX_NODE_PARAM_FIELD_HOLD) &&
        p->hold_ms > NODE_HOLD_MS_MAX) {
        return KVX_ERR_INVALID_PARAM;
    }
    if ((p->field_mask & KVX_NODE_PARAM_FIELD_ENGINE_ALLOW) &&
        (!node_id_list_ok(p->engine_allow_uids, p->n_engine_allow_uids) ||
         !node_id_list_ok(p->engine_allow_gids, p->n_engine_allow_gids))) {
        kvxi_error("node: create: engine allow lists: at most %u ids each, "
                   "none of them %u",
                   KVX_NODE_ENGINE_ALLOW_MAX, UINT32_MAX);
        return KVX_ERR_INVALID_PARAM;
    }
    return KVX_OK;
}

static kvx_status_t node_init_memory(struct kvx_node *node,
                                     const kvx_node_params_t *p)
{
    kvx_pool_params_t pp = {
        .field_mask =
            KVX_POOL_PARAM_FIELD_BLOCK_SIZE | KVX_POOL_PARAM_FIELD_BLOCK_COUNT,
    };
    kvx_alloc_params_t ap = {.field_mask = KVX_ALLOC_PARAM_FIELD_BLOCK_COUNT};
    kvx_pool_attr_t attr;
    kvx_status_t status;

    status = kvx_layout_init(&node->layout, p->layout);
    if (status != KVX_OK) {
        return status == KVX_ERR_OVERFLOW ? KVX_ERR_INVALID_PARAM : status;
    }
    if (node->layout.order != KVX_LAYOUT_BLOCK_MAJOR ||
        node->layout.block_bytes % 64 != 0) {
        kvxi_error("node: create: the pool layout must be block-major with "
                   "block_bytes a multiple of 64");
        return KVX_ERR_INVALID_PARAM;
    }
    pp.block_size = node->layout.block_bytes;
    pp.block_count = node->layout.num_blocks;
    status = kvx_pool_create(&pp, &node->pool);
    if (status != KVX_OK) {
        return status;
    }
    kvx_pool_query(node->pool, &attr);
    node->pool_base = attr.base;
    ap.block_count = node->layout.num_blocks;
    status = kvx_alloc_create(&ap, &node->alloc);
    if (status == KVX_OK) {
        status = kvx_plan_create(&node->plan);
    }
    if (status != KVX_OK) {
        return status;
    }
    node->owner = calloc(node->layout.num_blocks, sizeof(*node->owner));
    return node->owner == NULL ? KVX_ERR_NO_MEMORY : KVX_OK;
}

static kvx_status_t node_init_ucx(struct kvx_node *node,
                                  const kvx_node_params_t *p)
{
    kvxi_ucx_params_t up = {
        .field_mask = KVXI_UCX_PARAM_FIELD_AM_CB | KVXI_UCX_PARAM_FIELD_CB_ARG,
        .am_dest_cb = kvxi_rx_am_dest,
        .am_done_cb = kvxi_rx_am_done,
        .am_refused_cb = kvxi_rx_am_refused,
        .cb_arg = node,
    };
    kvx_status_t status;
    int fd;

    if (p->field_mask & KVX_NODE_PARAM_FIELD_UCX_TLS) {
        up.field_mask |= KVXI_UCX_PARAM_FIELD_TLS;
        up.tls = p->ucx_tls;
    }
    if (p->field_mask & KVX_NODE_PARAM_FIELD_AM_CHUNK) {
        up.field_mask |= KVXI_UCX_PARAM_FIELD_AM_CHUNK;
        up.am_chunk = p->am_chunk;
    }
    status = kvxi_ucx_create(&up, &node->ucx);
    if (status != KVX_OK) {
        return status == KVX_ERR_IO ? KVX_ERR_NOT_SUPPORTED : status;
    }
    status =
        kvxi_ucx_mem_reg(node->ucx, node->pool_base, node->layout.region_bytes,
                         KVX_MEM_HOST, &node->mem);
    if (status != KVX_OK) {
        return status;
    }
    status = kvxi_ucx_event_fd(node->ucx, &fd);
    if (status != KVX_OK) {
        return status;
    }
    node->ucx_ev =
        event_new(node->base, fd, EV_READ | EV_PERSIST, node_ucx_cb, node);
    if (node->ucx_ev == NULL || event_add(node->ucx_ev, NULL) != 0) {
        return KVX_ERR_NO_MEMORY;
    }
    return KVX_OK;
}

static kvx_status_t node_init_identity(struct kvx_node *node,
                                       const kvx_node_params_t *p)
{
    kvxi_conn_identity_t *id = &node->ident;
    const void *buf;
    size_t len;
    kvx_status_t status;

    id->node_id = node->node_id;
    do {
        if (getrandom(&id->instance_id, sizeof(id->instance_id), 0) !=
            (ssize_t)sizeof(id->instance_id)) {
            return KVX_ERR_IO;
        }
    } while (id->instance_id == 0);
    id->cluster_id = NULL;
    id->min_version = KVXI_PROTO_VERSION;
    id->max_version = KVXI_PROTO_VERSION;
    id->role = KVX__V1__ROLE__ROLE_BOTH;
    id->layout = node->layout;
    id->data_paths = KVXI_DATA_PATH_ALL;
    status = kvxi_ucx_worker_address(node->ucx, &buf, &len);
    if (status != KVX_OK) {
        return status;
    }
    id->memory.worker_address = buf;
    id->memory.worker_address_len = len;
    id->memory.mem_type = KVX_MEM_HOST;
    id->memory.pool_base = (uint64_t)(uintptr_t)node->pool_base;
    id->memory.pool_length = node->layout.region_bytes;
    status = kvxi_ucx_mem_rkey(node->mem, &buf, &len);
    if (status != KVX_OK) {
        return status;
    }
    id->memory.rkey = buf;
    id->memory.rkey_len = len;
    if ((p->field_mask & KVX_NODE_PARAM_FIELD_SECRET) && p->secret_len > 0) {
        node->secret = malloc(p->secret_len);
        if (node->secret == NULL) {
            return KVX_ERR_NO_MEMORY;
        }
        memcpy(node->secret, p->secret, p->secret_len);
        node->secret_len = p->secret_len;
    }
    node->conn_cfg.identity = &node->ident;
    node->conn_cfg.secret = node->secret;
    node->conn_cfg.secret_len = node->secret_len;
    if (p->field_mask & KVX_NODE_PARAM_FIELD_HEARTBEAT) {
        node->conn_cfg.heartbeat_interval_ms = p->heartbeat_ms;
    }
    if (p->field_mask & KVX_NODE_PARAM_FIELD_HANDSHAKE) {
        node->conn_cfg.handshake_timeout_ms = p->handshake_ms;
    }
    return kvxi_identity_check(id, NULL, 0);
}

kvx_status_t kvx_node_create(const kvx_node_params_t *params,
                             kvx_node_h *node_p)
{
    struct kvx_node *node;
    kvx_status_t status;

    if (node_p == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    status = node_check_params(params);
    if (status != KVX_OK) {
        return status;
    }
    node = calloc(1, sizeof(*node));
    if (node == NULL) {
        return KVX_ERR_NO_MEMORY;
    }
    snprintf(node->node_id, sizeof(node->node_id), "%s", params->node_id);
    node->t_created = kvxi_node_now_ns();
    node->transport = (params->field_mask & KVX_NODE_PARAM_FIELD_TRANSPORT)
                          ? params->transport
                          : KVX_TRANSPORT_AUTO;
    node->lease_ms = (params->field_mask & KVX_NODE_PARAM_FIELD_LEASE) &&
                             params->lease_ms > 0
                         ? params->lease_ms
                         : KVXI_NODE_LEASE_MS_DEFAULT;
    node->hold_ms =
        (params->field_mask & KVX_NODE_PARAM_FIELD_HOLD) ? params->hold_ms : 0;
    node->late_grace_ms = KVXI_RX_LATE_GRACE_MS;
    node->poll_ns = 1000ull * ((params->field_mask & KVX_NODE_PARAM_FIELD_POLL)
                                   ? params->poll_us
                                   : KVX_NODE_POLL_US_DEFAULT);
    if (params->field_mask & KVX_NODE_PARAM_FIELD_ENGINE_ALLOW) {
        node->n_engine_uids = params->n_engine_allow_uids;
        node->n_engine_gids = params->n_engine_allow_gids;
        if (node->n_engine_uids > 0) {
            memcpy(node->engine_uids, params->engine_allow_uids,
                   node->n_engine_uids * sizeof(uint32_t));
        }
        if (node->n_engine_gids > 0) {
            memcpy(node->engine_gids, params->engine_allow_gids,
                   node->n_engine_gids * sizeof(uint32_t));
        }
    }
    node->base = event_base_new();
    if (node->base == NULL) {
        status = KVX_ERR_NO_MEMORY;
        goto err;
    }
    node->timer_ev = evtimer_new(node->base, node_timer_cb, node);
    node->wake_ev = evtimer_new(node->base, node_wake_cb, node);
    if (node->timer_ev == NULL || node->wake_ev == NULL) {
        status = KVX_ERR_NO_MEMORY;
        goto err;
    }
    if ((status = node_init_memory(node, params)) != KVX_OK ||
        (status = node_init_ucx(node, params)) != KVX_OK ||
        (status = node_init_identity(node, params)) != KVX_OK) {
        goto err;
    }
    node->conn_cfg.cbs.arg = node;
    if (params->field_mask & KVX_NODE_PARAM_FIELD_LISTEN) {
        status =
            kvxi_listener_create(node->base, params->listen, &node->conn_cfg,
                                 kvxi_peer_accept, node, &node->listener);
        if (status != KVX_OK) {
            goto err;
        }
    }
    if (params->field_mask & KVX_NODE_PARAM_FIELD_ENGINE_SOCKET) {
        status = kvx_node_engine_listen(node, params->engine_socket);
        if (status != KVX_OK) {
            goto err;
        }
    }
    kvxi_info("node %s: created (%u blocks of %llu bytes)", node->node_id,
              node->layout.num_blocks,
              (unsigned long long)node->layout.block_bytes);
    *node_p = node;
    return KVX_OK;

err:
    kvx_node_destroy(node);
    return status;
}

void kvx_node_destroy(kvx_node_h node)
{
    struct kvx_peer *peer, *next_peer;
    struct kvx_xfer *x, *next_x;

    if (node == NULL) {
        return;
    }
    node->shutting_down = 1;
    kvxi_engine_destroy(node); /* its transfers end while peers are up */
    kvxi_listener_destroy(node->listener);
    node->listener = NULL;
    for (peer = node->peers; peer != NULL; peer = peer->next) {
        kvxi_peer_shutdown(peer);
    }
    for (peer = node->peers; peer != NULL; peer = next_peer) {
        next_peer = peer->next;
        kvxi_peer_free(peer);
    }
    for (x = node->xfers; x != NULL; x = next_x) {
        next_x = x->next;
        kvxi_xfer_free(x);
    }
    kvxi_rx_free_all(node);
    kvxi_pull_free_all(node);
    if (node->mem != NULL) {
        kvxi_ucx_mem_dereg(node->mem);
    }
    if (node->ucx_ev != NULL) {
        event_free(node->ucx_ev);
    }
    kvxi_ucx_destroy(node->ucx);
    if (node->timer_ev != NULL) {
        event_free(node->timer_ev);
    }
    if (node->wake_ev != NULL) {
        event_free(node->wake_ev);
    }
    if (node->base != NULL) {
        event_base_free(node->base);
    }
    free(node->rx_slots);
    free(node->owner);
    kvx_plan_destroy(node->plan);
    kvx_alloc_destroy(node->alloc);
    kvx_pool_destroy(node->pool);
    if (node->secret != NULL) {
        memset(node->secret, 0, node->secret_len);
        free(node->secret);
    }
    free(node);
}

kvx_status_t kvx_node_progress(kvx_node_h node, uint32_t timeout_ms)
{
    int sleep = timeout_ms > 0;
    int rc;

    if (node == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    node_ucx_drain(node);
    if (sleep && node_polling(node)) {
        sleep = 0; /* something happened within the poll window */
        node->stats.loop_polls++;
    }
    if (sleep) {
        kvx_status_t s = kvxi_ucx_arm(node->ucx);

        if (s != KVX_OK) {
            sleep = 0; /* events pending (or arming failed): poll */
        }
    }
    if (sleep) {
        struct timeval tv = {
            .tv_sec = timeout_ms / 1000,
            .tv_usec = (suseconds_t)(timeout_ms % 1000) * 1000,
        };

        node->stats.loop_sleeps++;
        event_add(node->wake_ev, &tv);
        rc = event_base_loop(node->base, EVLOOP_ONCE);
        event_del(node->wake_ev);
    } else {
        rc = event_base_loop(node->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    }
    node_ucx_drain(node);
    node_deadlines(node);
    kvxi_engine_poll(node);
    kvxi_node_timer_rearm(node);
    return rc < 0 ? KVX_ERR_IO : KVX_OK;
}

kvx_status_t kvx_node_engine_listen(kvx_node_h node, const char *path)
{
    if (node == NULL || path == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    if (node->engine != NULL || node->shutting_down) {
        kvxi_error("node %s: engine socket %s: %s", node->node_id, path,
                   node->engine != NULL ? "already serving engines"
                                        : "shutting down");
        return KVX_ERR_BAD_STATE;
    }
    return kvxi_engine_create(node, path);
}

const char *kvx_node_listen_addr(kvx_node_h node)
{
    return node != NULL && node->listener != NULL
               ? kvxi_listener_addr(node->listener)
               : NULL;
}

kvx_status_t kvx_node_ticket(kvx_node_h node, uint64_t request_id,
                             kvx_ticket_t *ticket)
{
    const char *addr;
    kvx_ticket_t t;

    if (node == NULL || ticket == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    addr = kvx_node_listen_addr(node);
    if (addr == NULL) {
        kvxi_error("node %s: ticket: the node has no listener", node->node_id);
        return KVX_ERR_BAD_STATE;
    }
    memset(&t, 0, sizeof(t));
    if (strlen(addr) >= sizeof(t.addr)) {
        kvxi_error("node %s: ticket: listen address longer than %zu bytes",
                   node->node_id, sizeof(t.addr) - 1);
        return KVX_ERR_NO_SPACE;
    }
    memcpy(t.addr, addr, strlen(addr));
    _Static_assert(sizeof(t.node_id) >= sizeof(node->node_id),
                   "a node id fits a ticket");
    memcpy(t.node_id, node->node_id, strlen(node->node_id));
    t.request_id = request_id;
    t.layout_hash = kvx_layout_compat_hash(&node->layout);
    *ticket = t;
    return KVX_OK;
}

kvx_pool_h kvx_node_pool(kvx_node_h node)
{
    return node != NULL ? node->pool : NULL;
}

kvx_alloc_h kvx_node_alloc(kvx_node_h node)
{
    return node != NULL ? node->alloc : NULL;
}

const kvx_layout_t *kvx_node_layout(kvx_node_h node)
{
    return node != NULL ? &node->layout : NULL;
}
