/*
 * UCX data path, part 1: the context and worker, event-fd integration,
 * registered regions and the status translation. Endpoints and the mode
 * choice are in ucx_ep.c, posts and the AM receive path in ucx_xfer.c.
 */
#include "ucx_impl_int.h"

#include "log_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UCX_FIELDS_ALL                                                         \
    (KVXI_UCX_PARAM_FIELD_TLS | KVXI_UCX_PARAM_FIELD_AM_CB |                   \
     KVXI_UCX_PARAM_FIELD_CB_ARG | KVXI_UCX_PARAM_FIELD_WINDOW |               \
     KVXI_UCX_PARAM_FIELD_AM_CHUNK | KVXI_UCX_PARAM_FIELD_CLOSE_MS)
/* The one place UCX statuses become kvx statuses. */
kvx_status_t kvxi_ucx_status(ucs_status_t status)
{
    switch (status) {
    case UCS_OK: return KVX_OK;
    case UCS_INPROGRESS: return KVX_INPROGRESS;
    case UCS_ERR_NO_MEMORY: return KVX_ERR_NO_MEMORY;
    case UCS_ERR_INVALID_PARAM:
    case UCS_ERR_INVALID_ADDR: return KVX_ERR_INVALID_PARAM;
    case UCS_ERR_CANCELED: return KVX_ERR_ABORTED;
    case UCS_ERR_UNREACHABLE: return KVX_ERR_PEER_UNREACHABLE;
    case UCS_ERR_REJECTED: return KVX_ERR_PEER_REFUSED;
    case UCS_ERR_TIMED_OUT: return KVX_ERR_TIMEOUT;
    case UCS_ERR_NOT_CONNECTED:
    case UCS_ERR_CONNECTION_RESET: return KVX_ERR_PEER_DOWN;
    case UCS_ERR_UNSUPPORTED:
    case UCS_ERR_NOT_IMPLEMENTED:
    case UCS_ERR_NO_DEVICE: return KVX_ERR_NOT_SUPPORTED;
    case UCS_ERR_NO_RESOURCE:
    case UCS_ERR_EXCEEDS_LIMIT: return KVX_ERR_NO_SPACE;
    case UCS_ERR_OUT_OF_RANGE: return KVX_ERR_OUT_OF_RANGE;
    case UCS_ERR_MESSAGE_TRUNCATED: return KVX_ERR_PROTO_MALFORMED;
    default:
        if (UCS_IS_LINK_ERROR(status) || UCS_IS_ENDPOINT_ERROR(status)) {
            return KVX_ERR_PEER_DOWN;
        }
        return KVX_ERR_IO;
    }
}

static kvx_status_t ucx_params_check(const kvxi_ucx_params_t *p)
{
    uint64_t mask = p->field_mask;

    if ((mask & ~(uint64_t)UCX_FIELDS_ALL) != 0) {
        kvxi_error("ucx: create: unknown field_mask bits 0x%llx",
                   (unsigned long long)(mask & ~(uint64_t)UCX_FIELDS_ALL));
        return KVX_ERR_INVALID_PARAM;
    }
    if ((mask & KVXI_UCX_PARAM_FIELD_TLS) &&
        (p->tls == NULL || p->tls[0] == '\0')) {
        kvxi_error("ucx: create: empty transport list");
        return KVX_ERR_INVALID_PARAM;
    }
    if ((mask & KVXI_UCX_PARAM_FIELD_WINDOW) &&
        (p->window == 0 || p->window > KVXI_UCX_WINDOW_MAX)) {
        kvxi_error("ucx: create: window %u not in 1 .. %u", p->window,
                   KVXI_UCX_WINDOW_MAX);
        return KVX_ERR_INVALID_PARAM;
    }
    if ((mask & KVXI_UCX_PARAM_FIELD_AM_CHUNK) &&
        p->am_chunk < KVXI_UCX_AM_CHUNK_MIN) {
        kvxi_error("ucx: create: am_chunk %llu below %llu",
                   (unsigned long long)p->am_chunk, KVXI_UCX_AM_CHUNK_MIN);
        return KVX_ERR_INVALID_PARAM;
    }
    return KVX_OK;
}

static void ucx_apply_params(struct kvxi_ucx *ucx, const kvxi_ucx_params_t *p)
{
    uint64_t mask = p != NULL ? p->field_mask : 0;

    ucx->window = KVXI_UCX_WINDOW_DEFAULT;
    ucx->am_chunk = KVXI_UCX_AM_CHUNK_DEFAULT;
    ucx->close_ms = KVXI_UCX_CLOSE_MS_DEFAULT;
    if (mask & KVXI_UCX_PARAM_FIELD_AM_CB) {
        ucx->am_dest_cb = p->am_dest_cb;
        ucx->am_done_cb = p->am_done_cb;
        ucx->am_refused_cb = p->am_refused_cb;
    }
    if (mask & KVXI_UCX_PARAM_FIELD_CB_ARG) {
        ucx->cb_arg = p->cb_arg;
    }
    if (mask & KVXI_UCX_PARAM_FIELD_WINDOW) {
        ucx->window = p->window;
    }
    if (mask & KVXI_UCX_PARAM_FIELD_AM_CHUNK) {
        ucx->am_chunk = p->am_chunk;
    }
    if (mask & KVXI_UCX_PARAM_FIELD_CLOSE_MS) {
        ucx->close_ms = p->close_ms;
    }
}

static kvx_status_t ucx_open(struct kvxi_ucx *ucx, const char *tls)
{
    ucp_params_t params = {
        .field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_NAME,
        .features = UCP_FEATURE_RMA | UCP_FEATURE_AM | UCP_FEATURE_WAKEUP,
        .name = "kvx",
    };
    ucp_config_t *config;
    ucs_status_t s;

    s = ucp_config_read(NULL, NULL, &config);
    if (s != UCS_OK) {
        kvxi_error("ucx: reading the UCX configuration failed: %s",
                   ucs_status_string(s));
        return KVX_ERR_IO;
    }
    if (tls != NULL && (s = ucp_config_modify(config, "TLS", tls)) != UCS_OK) {
        kvxi_error("ucx: transport list '%s' refused: %s", tls,
                   ucs_status_string(s));
        ucp_config_release(config);
        return KVX_ERR_INVALID_PARAM;
    }
    s = ucp_init(&params, config, &ucx->context);
    ucp_config_release(config);
    if (s != UCS_OK) {
        kvxi_error("ucx: ucp_init (transports %s) failed: %s",
                   tls != NULL ? tls : "default", ucs_status_string(s));
        ucx->context = NULL;
        return s == UCS_ERR_NO_MEMORY ? KVX_ERR_NO_MEMORY
                                      : KVX_ERR_NOT_SUPPORTED;
    }
    return KVX_OK;
}

static kvx_status_t ucx_open_worker(struct kvxi_ucx *ucx)
{
    ucp_worker_params_t wp = {
        .field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE,
        .thread_mode = UCS_THREAD_MODE_SINGLE,
    };
    ucp_am_handler_param_t am = {
        .field_mask =
            UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_FLAGS |
            UCP_AM_HANDLER_PARAM_FIELD_CB | UCP_AM_HANDLER_PARAM_FIELD_ARG,
        .id = UCX_AM_ID,
        .flags = UCP_AM_FLAG_WHOLE_MSG,
        .cb = kvxi_ucx_am_recv,
        .arg = ucx,
    };
    ucp_worker_attr_t attr = {.field_mask =
                                  UCP_WORKER_ATTR_FIELD_MAX_AM_HEADER};
    const char *what;
    ucs_status_t s;

    s = ucp_worker_create(ucx->context, &wp, &ucx->worker);
    if (s != UCS_OK) {
        ucx->worker = NULL;
        what = "ucp_worker_create";
        goto err;
    }
    if ((s = ucp_worker_query(ucx->worker, &attr)) != UCS_OK) {
        what = "ucp_worker_query";
        goto err;
    }
    if (attr.max_am_header < sizeof(ucx_am_hdr_t)) {
        kvxi_error("ucx: AM headers limited to %zu bytes, need %zu",
                   attr.max_am_header, sizeof(ucx_am_hdr_t));
        return KVX_ERR_NOT_SUPPORTED;
    }
    if ((s = ucp_worker_set_am_recv_handler(ucx->worker, &am)) != UCS_OK) {
        what = "ucp_worker_set_am_recv_handler";
        goto err;
    }
    s = ucp_worker_get_address(ucx->worker, &ucx->address, &ucx->address_len);
    if (s != UCS_OK) {
        ucx->address = NULL;
        what = "ucp_worker_get_address";
        goto err;
    }
    return KVX_OK;

err:
    kvxi_error("ucx: %s failed: %s", what, ucs_status_string(s));
    return kvxi_ucx_status(s);
}

kvx_status_t kvxi_ucx_create(const kvxi_ucx_params_t *params, kvxi_ucx_h *ucx_p)
{
    const char *tls = NULL;
    struct kvxi_ucx *ucx;
    kvx_status_t status;

    if (ucx_p == NULL) {
        kvxi_error("ucx: create: NULL ucx_p");
        return KVX_ERR_INVALID_PARAM;
    }
    if (params != NULL) {
        if ((status = ucx_params_check(params)) != KVX_OK) {
            return status;
        }
        if (params->field_mask & KVXI_UCX_PARAM_FIELD_TLS) {
            tls = params->tls;
        }
    }
    ucx = calloc(1, sizeof(*ucx));
    if (ucx == NULL) {
        kvxi_error("ucx: create: out of memory");
        return KVX_ERR_NO_MEMORY;
    }
    ucx_list_init(&ucx->eps);
    ucx_list_init(&ucx->mems);
    ucx_list_init(&ucx->kick);
    ucx_list_init(&ucx->done);
    ucx_list_init(&ucx->errs);
    ucx_list_init(&ucx->closing);
    ucx_list_init(&ucx->rx_free);
    ucx_list_init(&ucx->rx_busy);
    ucx_list_init(&ucx->gathers);
    ucx_list_init(&ucx->gathers_busy);
    ucx_list_init(&ucx->free);
    ucx_list_init(&ucx->zombie);
    ucx_apply_params(ucx, params);

    if ((status = ucx_open(ucx, tls)) != KVX_OK) {
        goto err_free;
    }
    if ((status = ucx_open_worker(ucx)) != KVX_OK) {
        goto err_worker;
    }
    kvxi_ucx_scan_resources(ucx);
    kvxi_info("ucx: ready (transports %s; shared memory %s, RDMA %s)",
              tls != NULL ? tls : "default",
              !ucx->resources_known ? "?"
              : ucx->has_shm        ? "yes"
                                    : "no",
              !ucx->resources_known ? "?"
              : ucx->has_rdma       ? "yes"
                                    : "no");
    *ucx_p = ucx;
    return KVX_OK;

err_worker:
    if (ucx->address != NULL) {
        ucp_worker_release_address(ucx->worker, ucx->address);
    }
    if (ucx->worker != NULL) {
        ucp_worker_destroy(ucx->worker);
    }
    ucp_cleanup(ucx->context);
err_free:
    free(ucx);
    return status;
}

void kvxi_ucx_destroy(kvxi_ucx_h ucx)
{
    if (ucx == NULL) {
        return;
    }
    while (!ucx_list_empty(&ucx->eps)) {
        struct kvxi_ucx_ep *ep =
            UCX_CONTAINER(ucx->eps.next, struct kvxi_ucx_ep, link);

        kvxi_warn("ucx: destroy: endpoint %p still open, closing it",
                  (void *)ep);
        kvxi_ucx_ep_destroy(ep);
    }
    if (!kvxi_ucx_wait(ucx, kvxi_ucx_closing_settled, ucx)) {
        kvxi_warn("ucx: destroy: endpoint closes unfinished after %u ms",
                  ucx->close_ms);
    }
    ucx->destroying = 1;
    while (!ucx_list_empty(&ucx->mems)) {
        struct kvxi_ucx_mem *mem =
            UCX_CONTAINER(ucx->mems.next, struct kvxi_ucx_mem, link);

        kvxi_warn("ucx: destroy: region %p still registered",
                  (void *)mem->base);
        mem->users = 0;
        kvxi_ucx_mem_dereg(mem);
    }
    /* Unfinished closes: rkeys go before the worker (they live in its
       pool) unless operations may still use them; structs go after. */
    for (ucx_link_t *l = ucx->closing.next; l != &ucx->closing; l = l->next) {
        struct kvxi_ucx_ep *ep = UCX_CONTAINER(l, struct kvxi_ucx_ep, link);

        if (ep->close_req != NULL) {
            ucp_request_free(ep->close_req);
        }
        if (ep->rkey != NULL && !ep->stuck) {
            ucp_rkey_destroy(ep->rkey);
        }
    }
    ucp_worker_release_address(ucx->worker, ucx->address);
    /* Requests still alive (zombie posts, rendezvous receives) end here;
       their callbacks only touch ucx and its posts. */
    ucp_worker_destroy(ucx->worker);
    while (!ucx_list_empty(&ucx->closing)) {
        ucx_link_t *l = ucx->closing.next;

        ucx_list_del(l);
        free(UCX_CONTAINER(l, struct kvxi_ucx_ep, link));
    }
    kvxi_ucx_posts_free_all(ucx);
    kvxi_ucx_gathers_free_all(ucx);
    ucp_cleanup(ucx->context);
    free(ucx);
}

kvx_status_t kvxi_ucx_event_fd(kvxi_ucx_h ucx, int *fd_p)
{
    ucs_status_t s;

    if (ucx == NULL || fd_p == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    s = ucp_worker_get_efd(ucx->worker, fd_p);
    if (s != UCS_OK) {
        kvxi_error("ucx: ucp_worker_get_efd failed: %s", ucs_status_string(s));
    }
    return kvxi_ucx_status(s);
}

kvx_status_t kvxi_ucx_arm(kvxi_ucx_h ucx)
{
    ucs_status_t s;

    if (ucx == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    if (!ucx_list_empty(&ucx->kick) || !ucx_list_empty(&ucx->done) ||
        !ucx_list_empty(&ucx->errs)) {
        return KVX_INPROGRESS;
    }
    /* RMA posts in flight complete through progress, not through the
     * worker's event fd (shared-memory puts larger than one fragment sat
     * out a whole sleep per fragment: 1 MiB over shm at 60 MiB/s): poll. */
    for (ucx_link_t *l = ucx->eps.next; l != &ucx->eps; l = l->next) {
        struct kvxi_ucx_ep *ep = UCX_CONTAINER(l, struct kvxi_ucx_ep, link);

        if (ep->mode == KVXI_UCX_MODE_RMA && !ucx_list_empty(&ep->posts)) {
            return KVX_INPROGRESS;
        }
    }
    s = ucp_worker_arm(ucx->worker);
    if (s == UCS_ERR_BUSY) {
        return KVX_INPROGRESS;
    }
    if (s != UCS_OK) {
        kvxi_error("ucx: ucp_worker_arm failed: %s", ucs_status_string(s));
    }
    return kvxi_ucx_status(s);
}

static unsigned ucx_deliver_errors(struct kvxi_ucx *ucx)
{
    unsigned n = 0;

    while (!ucx_list_empty(&ucx->errs)) {
        struct kvxi_ucx_ep *ep =
            UCX_CONTAINER(ucx->errs.next, struct kvxi_ucx_ep, err_link);

        ucx_list_del(&ep->err_link);
        ep->error_cb(ep, ep->status, ep->error_arg);
        n++;
    }
    return n;
}

unsigned kvxi_ucx_progress(kvxi_ucx_h ucx)
{
    unsigned n;

    n = ucp_worker_progress(ucx->worker);
    n += kvxi_ucx_run_kicks(ucx);
    n += kvxi_ucx_deliver(ucx);
    n += ucx_deliver_errors(ucx);
    if (!ucx_list_empty(&ucx->closing)) {
        kvxi_ucx_reap_closing(ucx);
    }
    return n;
}

kvx_status_t kvxi_ucx_worker_address(kvxi_ucx_h ucx, const void **buf_p,
                                     size_t *len_p)
{
    if (ucx == NULL || buf_p == NULL || len_p == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    *buf_p = ucx->address;
    *len_p = ucx->address_len;
    return KVX_OK;
}

void kvxi_ucx_stats_get(kvxi_ucx_h ucx, kvxi_ucx_stats_t *stats)
{
    *stats = ucx->stats;
    stats->eps_closing = stats->eps_stuck = 0;
    for (ucx_link_t *l = ucx->closing.next; l != &ucx->closing; l = l->next) {
        if (UCX_CONTAINER(l, struct kvxi_ucx_ep, link)->stuck) {
            stats->eps_stuck++;
        } else {
            stats->eps_closing++;
        }
    }
}

kvx_status_t kvxi_ucx_mem_reg(kvxi_ucx_h ucx, void *base, size_t len,
                              kvx_mem_type_t mem_type, kvxi_ucx_mem_h *mem_p)
{
    ucp_mem_map_params_t mp = {
        .field_mask =
            UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH,
        .address = base,
        .length = len,
    };
    struct kvxi_ucx_mem *mem;
    const char *what;
    ucs_status_t s;

    if (ucx == NULL || base == NULL || len == 0 || mem_p == NULL) {
        kvxi_error("ucx: mem_reg: NULL argument or zero length");
        return KVX_ERR_INVALID_PARAM;
    }
    if (mem_type != KVX_MEM_HOST) {
        kvxi_error("ucx: mem_reg: memory type %d not supported", (int)mem_type);
        return KVX_ERR_NOT_SUPPORTED;
    }
    mem = calloc(1, sizeof(*mem));
    if (mem == NULL) {
        kvxi_error("ucx: mem_reg: out of memory");
        return KVX_ERR_NO_MEMORY;
    }
    if ((s = ucp_mem_map(ucx->context, &mp, &mem->memh)) != UCS_OK) {
        what = "ucp_mem_map";
        goto err_free;
    }
    s = ucp_rkey_pack(ucx->context, mem->memh, &mem->rkey_buf, &mem->rkey_len);
    if (s != UCS_OK) {
        what = "ucp_rkey_pack";
        goto err_unmap;
    }
    mem->ucx = ucx;
    mem->base = base;
    mem->len = len;
    ucx_list_push(&ucx->mems, &mem->link);
    *mem_p = mem;
    return KVX_OK;

err_unmap:
    ucp_mem_unmap(ucx->context, mem->memh);
err_free:
    free(mem);
    kvxi_error("ucx: mem_reg of %zu bytes at %p: %s failed: %s", len, base,
               what, ucs_status_string(s));
    return s == UCS_ERR_NO_MEMORY ? KVX_ERR_NO_MEMORY : KVX_ERR_IO;
}

kvx_status_t kvxi_ucx_mem_dereg(kvxi_ucx_mem_h mem)
{
    if (mem == NULL) {
        return KVX_OK;
    }
    if (mem->users != 0) {
        kvxi_error("ucx: mem_dereg: region %p used by %u open posts",
                   (void *)mem->base, mem->users);
        return KVX_ERR_BAD_STATE;
    }
    ucx_list_del(&mem->link);
    ucp_rkey_buffer_release(mem->rkey_buf);
    ucp_mem_unmap(mem->ucx->context, mem->memh);
    free(mem);
    return KVX_OK;
}

kvx_status_t kvxi_ucx_mem_rkey(kvxi_ucx_mem_h mem, const void **buf_p,
                               size_t *len_p)
{
    if (mem == NULL || buf_p == NULL || len_p == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    *buf_p = mem->rkey_buf;
    *len_p = mem->rkey_len;
    return KVX_OK;
}
