/*
 * UCX data path, part 2: endpoints — creation, the per-endpoint choice
 * between RMA and active messages, error handling and the bounded close.
 */
#include "ucx_impl_int.h"

#include "log_int.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define UCX_EP_FIELDS_ALL                                                      \
    (KVXI_UCX_EP_FIELD_ADDRESS | KVXI_UCX_EP_FIELD_RKEY |                      \
     KVXI_UCX_EP_FIELD_REGION | KVXI_UCX_EP_FIELD_MODE |                       \
     KVXI_UCX_EP_FIELD_HOST_ID | KVXI_UCX_EP_FIELD_FLAGS |                     \
     KVXI_UCX_EP_FIELD_ERROR_CB)
#define UCX_EP_FLAGS_ALL                                                       \
    (KVXI_UCX_EP_FLAG_PEER_RDMA | KVXI_UCX_EP_FLAG_ERR_PEER)

const char *kvxi_ucx_mode_string(kvxi_ucx_mode_t mode)
{
    switch (mode) {
    case KVXI_UCX_MODE_AUTO: return "auto";
    case KVXI_UCX_MODE_RMA: return "rma";
    case KVXI_UCX_MODE_AM: return "am";
    }
    return "?";
}

static uint64_t ucx_fnv1a(uint64_t h, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

uint64_t kvxi_ucx_host_id(void)
{
    uint64_t h = 0xcbf29ce484222325ull;
    char buf[256];
    size_t n = 0;
    FILE *f;

    f = fopen("/proc/sys/kernel/random/boot_id", "re");
    if (f != NULL) {
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
    }
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' ')) {
        n--;
    }
    h = ucx_fnv1a(h, buf, n);
    h = ucx_fnv1a(h, "/", 1);
    if (gethostname(buf, sizeof(buf)) == 0) {
        buf[sizeof(buf) - 1] = '\0';
        h = ucx_fnv1a(h, buf, strlen(buf));
    }
    return h == 0 ? 1 : h;
}

/*
 * Transport names are read from UCX's own info printout (UCX 1.13 has no
 * query for them). When the format is not understood nothing is known and
 * the mode choice relies on the owner's hints alone.
 */
static int ucx_tl_is_shm(const char *tl, size_t n)
{
    static const char *const shm[] = {"posix", "sysv", "cma", "knem", "xpmem"};

    for (size_t i = 0; i < sizeof(shm) / sizeof(shm[0]); i++) {
        if (strlen(shm[i]) == n && memcmp(tl, shm[i], n) == 0) {
            return 1;
        }
    }
    return 0;
}

static int ucx_tl_is_rdma(const char *tl, size_t n)
{
    return n >= 2 && (memcmp(tl, "rc", 2) == 0 || memcmp(tl, "dc", 2) == 0 ||
                      memcmp(tl, "ud", 2) == 0);
}

typedef void (*ucx_print_fn_t)(void *obj, FILE *f);

static void ucx_print_context(void *obj, FILE *f)
{
    ucp_context_print_info(obj, f);
}

static void ucx_print_ep(void *obj, FILE *f)
{
    ucp_ep_print_info(obj, f);
}

/* UCX's printout of @p obj in a malloc'ed string (NULL on failure). */
static char *ucx_print(ucx_print_fn_t fn, void *obj)
{
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);

    if (f == NULL) {
        return NULL;
    }
    fn(obj, f);
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* "#  resource 1  :  md 1  dev 1  flags -- tcp/lo": the last word's tl. */
void kvxi_ucx_scan_resources(struct kvxi_ucx *ucx)
{
    char *text = ucx_print(ucx_print_context, ucx->context);

    for (char *line = text; line != NULL && *line != '\0';) {
        char *end = strchr(line, '\n');
        size_t len = end != NULL ? (size_t)(end - line) : strlen(line);
        const char *word;
        size_t n;

        if (memmem(line, len, "resource", 8) != NULL) {
            while (len > 0 && (line[len - 1] == ' ' || line[len - 1] == '\r')) {
                len--;
            }
            word = line + len;
            while (word > line && word[-1] != ' ') {
                word--;
            }
            n = strcspn(word, "/\n");
            ucx->resources_known = 1;
            ucx->has_shm |= ucx_tl_is_shm(word, n);
            ucx->has_rdma |= ucx_tl_is_rdma(word, n);
        }
        line = end != NULL ? end + 1 : NULL;
    }
    free(text);
}

/* "lane[2]:  4:cma/memory.0 md[4] -> ... rma_bw#0": tl of the RMA lane. */
static void ucx_scan_ep_lanes(struct kvxi_ucx_ep *ep)
{
    char *text = ucx_print(ucx_print_ep, ep->ep);

    for (char *line = text; line != NULL && *line != '\0';) {
        char *end = strchr(line, '\n');
        size_t len = end != NULL ? (size_t)(end - line) : strlen(line);
        const char *lane = memmem(line, len, "lane[", 5);
        const char *colon;
        size_t n;

        if (lane != NULL && memmem(line, len, "rma_bw", 6) != NULL &&
            (colon = memchr(lane + 5, ':', len - (size_t)(lane + 5 - line))) !=
                NULL) {
            const char *tl = colon + 1;

            while (*tl == ' ') {
                tl++;
            }
            while (*tl >= '0' && *tl <= '9') {
                tl++;
            }
            tl += *tl == ':';
            n = strcspn(tl, "/ \n");
            if (n > 0 && n < sizeof(ep->rma_tl)) {
                memcpy(ep->rma_tl, tl, n);
                ep->rma_tl[n] = '\0';
                break;
            }
        }
        line = end != NULL ? end + 1 : NULL;
    }
    free(text);
}

/*
 * Progresses the worker (sleeping on the event fd when idle) until
 * @p done(@p arg) or close_ms passed. Returns done's last answer.
 */
int kvxi_ucx_wait(struct kvxi_ucx *ucx, int (*done)(void *), void *arg)
{
    uint64_t deadline, now;
    int fd = -1;

    (void)ucp_worker_get_efd(ucx->worker, &fd);
    deadline = kvx_clock_monotonic_ns(NULL) + ucx->close_ms * 1000000ull;
    while (!done(arg)) {
        now = kvx_clock_monotonic_ns(NULL);
        if (now >= deadline) {
            return 0;
        }
        if (ucp_worker_progress(ucx->worker) == 0 && fd >= 0 &&
            ucp_worker_arm(ucx->worker) == UCS_OK) {
            struct pollfd pfd = {.fd = fd, .events = POLLIN};
            uint64_t ms = (deadline - now) / 1000000ull;

            (void)poll(&pfd, 1, ms >= 10 ? 10 : (int)ms + 1);
        }
    }
    return 1;
}

/* Starts closing @p ep; it waits on ucx->closing until reaped. */
static void ucx_ep_start_close(struct kvxi_ucx *ucx, struct kvxi_ucx_ep *ep,
                               int force)
{
    ucp_request_param_t param = {
        .op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
        .flags = force ? UCP_EP_CLOSE_FLAG_FORCE : 0,
    };
    ucs_status_ptr_t req;

    ep->closing = 1;
    req = ucp_ep_close_nbx(ep->ep, &param);
    if (UCS_PTR_IS_PTR(req)) {
        ep->close_req = req;
    } else if (UCS_PTR_IS_ERR(req)) {
        kvxi_debug("ucx: endpoint %p close: %s", (void *)ep,
                   ucs_status_string(UCS_PTR_STATUS(req)));
    }
    ucx_list_push(&ucx->closing, &ep->link);
}

/* Frees a closing endpoint whose close finished; 1 if freed. */
static int ucx_ep_reap(struct kvxi_ucx_ep *ep)
{
    if (ep->stuck) {
        return 0;
    }
    if (ep->close_req != NULL) {
        if (ucp_request_check_status(ep->close_req) == UCS_INPROGRESS) {
            return 0;
        }
        ucp_request_free(ep->close_req);
        ep->close_req = NULL;
    }
    ucx_list_del(&ep->link);
    if (ep->rkey != NULL) {
        ucp_rkey_destroy(ep->rkey);
    }
    free(ep);
    return 1;
}

unsigned kvxi_ucx_reap_closing(struct kvxi_ucx *ucx)
{
    unsigned n = 0;

    for (ucx_link_t *l = ucx->closing.next, *next; l != &ucx->closing;
         l = next) {
        next = l->next;
        n += (unsigned)ucx_ep_reap(UCX_CONTAINER(l, struct kvxi_ucx_ep, link));
    }
    return n;
}

/* True when every closing endpoint is reaped or given up on. */
int kvxi_ucx_closing_settled(void *arg)
{
    struct kvxi_ucx *ucx = arg;

    kvxi_ucx_reap_closing(ucx);
    for (ucx_link_t *l = ucx->closing.next; l != &ucx->closing; l = l->next) {
        if (!UCX_CONTAINER(l, struct kvxi_ucx_ep, link)->stuck) {
            return 0;
        }
    }
    return 1;
}

static int ucx_ep_idle(void *arg)
{
    return !kvxi_ucx_posts_busy(arg);
}

static void ucx_ep_err_cb(void *arg, ucp_ep_h uep, ucs_status_t s)
{
    struct kvxi_ucx_ep *ep = arg;
    kvx_status_t status = kvxi_ucx_status(s);

    (void)uep;
    if (ep->closing || ep->status != KVX_OK) {
        return;
    }
    ep->status = KVX_STATUS_IS_PEER(status) ? status : KVX_ERR_PEER_DOWN;
    kvxi_warn("ucx: endpoint %p failed: %s", (void *)ep, ucs_status_string(s));
    kvxi_ucx_posts_stop(ep, ep->status);
    if (ep->error_cb != NULL) {
        ucx_list_push(&ep->ucx->errs, &ep->err_link);
    }
}

static kvx_status_t ucx_ep_params_check(const kvxi_ucx_ep_params_t *p)
{
    uint64_t mask = p->field_mask;

    if ((mask & ~(uint64_t)UCX_EP_FIELDS_ALL) != 0 ||
        !(mask & KVXI_UCX_EP_FIELD_ADDRESS) || p->address == NULL ||
        p->address_len == 0) {
        kvxi_error("ucx: ep_create: unknown field bits or no peer address");
        return KVX_ERR_INVALID_PARAM;
    }
    if ((mask & KVXI_UCX_EP_FIELD_RKEY) &&
        (p->rkey == NULL || p->rkey_len == 0)) {
        kvxi_error("ucx: ep_create: empty peer rkey");
        return KVX_ERR_INVALID_PARAM;
    }
    if ((mask & KVXI_UCX_EP_FIELD_REGION) &&
        (p->peer_len == 0 || p->peer_base > UINT64_MAX - p->peer_len)) {
        kvxi_error("ucx: ep_create: bad peer region");
        return KVX_ERR_INVALID_PARAM;
    }
    if ((mask & KVXI_UCX_EP_FIELD_MODE) && p->mode != KVXI_UCX_MODE_AUTO &&
        p->mode != KVXI_UCX_MODE_RMA && p->mode != KVXI_UCX_MODE_AM) {
        kvxi_error("ucx: ep_create: unknown mode %d", (int)p->mode);
        return KVX_ERR_INVALID_PARAM;
    }
    if ((mask & KVXI_UCX_EP_FIELD_FLAGS) &&
        (p->flags & ~(uint32_t)UCX_EP_FLAGS_ALL) != 0) {
        kvxi_error("ucx: ep_create: unknown flags 0x%x", p->flags);
        return KVX_ERR_INVALID_PARAM;
    }
    if ((mask & KVXI_UCX_EP_FIELD_MODE) && p->mode == KVXI_UCX_MODE_RMA &&
        (mask & (KVXI_UCX_EP_FIELD_RKEY | KVXI_UCX_EP_FIELD_REGION)) !=
            (KVXI_UCX_EP_FIELD_RKEY | KVXI_UCX_EP_FIELD_REGION)) {
        kvxi_error("ucx: ep_create: RMA mode needs the peer rkey and region");
        return KVX_ERR_INVALID_PARAM;
    }
    return KVX_OK;
}

/* The mode policy: see kvxi_ucx_ep_create() and docs/transport.md. */
static void ucx_ep_choose(struct kvxi_ucx_ep *ep, const kvxi_ucx_ep_params_t *p)
{
    const struct kvxi_ucx *ucx = ep->ucx;
    uint64_t mask = p->field_mask;
    kvxi_ucx_mode_t want =
        (mask & KVXI_UCX_EP_FIELD_MODE) ? p->mode : KVXI_UCX_MODE_AUTO;
    uint32_t flags = (mask & KVXI_UCX_EP_FIELD_FLAGS) ? p->flags : 0;
    int same_host = (mask & KVXI_UCX_EP_FIELD_HOST_ID) &&
                    p->peer_host_id == kvxi_ucx_host_id();

    if (want != KVXI_UCX_MODE_AUTO) {
        ep->mode = want;
        ep->reason = "forced by configuration";
    } else if (ep->rkey == NULL || ep->peer_len == 0) {
        ep->mode = KVXI_UCX_MODE_AM;
        ep->reason = "auto: no peer rkey/region";
    } else if (same_host && (ucx->has_shm || !ucx->resources_known) &&
               !(flags & KVXI_UCX_EP_FLAG_ERR_PEER)) {
        ep->mode = KVXI_UCX_MODE_RMA;
        ep->reason = "auto: same host, shared memory";
    } else if ((flags & KVXI_UCX_EP_FLAG_PEER_RDMA) &&
               (ucx->has_rdma || !ucx->resources_known)) {
        ep->mode = KVXI_UCX_MODE_RMA;
        ep->reason = "auto: RDMA on both sides";
    } else {
        ep->mode = KVXI_UCX_MODE_AM;
        ep->reason = "auto: no shared memory or RDMA path";
    }
    if (want == KVXI_UCX_MODE_AUTO && ep->mode == KVXI_UCX_MODE_RMA &&
        strcmp(ep->rma_tl, "tcp") == 0) {
        ep->mode = KVXI_UCX_MODE_AM;
        ep->reason = "auto: UCX put the RMA lane on tcp (emulated)";
    }
}

kvx_status_t kvxi_ucx_ep_create(kvxi_ucx_h ucx,
                                const kvxi_ucx_ep_params_t *params,
                                kvxi_ucx_ep_h *ep_p)
{
    ucp_ep_params_t ucp = {
        .field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS |
                      UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                      UCP_EP_PARAM_FIELD_ERR_HANDLER,
    };
    struct kvxi_ucx_ep *ep;
    kvx_status_t status;
    uint64_t mask;
    ucs_status_t s;

    if (ucx == NULL || params == NULL || ep_p == NULL) {
        kvxi_error("ucx: ep_create: NULL argument");
        return KVX_ERR_INVALID_PARAM;
    }
    if ((status = ucx_ep_params_check(params)) != KVX_OK) {
        return status;
    }
    mask = params->field_mask;
    ep = calloc(1, sizeof(*ep));
    if (ep == NULL) {
        kvxi_error("ucx: ep_create: out of memory");
        return KVX_ERR_NO_MEMORY;
    }
    ep->ucx = ucx;
    ucx_list_init(&ep->err_link);
    ucx_list_init(&ep->posts);
    if (mask & KVXI_UCX_EP_FIELD_ERROR_CB) {
        ep->error_cb = params->error_cb;
        ep->error_arg = params->error_arg;
    }
    if (mask & KVXI_UCX_EP_FIELD_REGION) {
        ep->peer_base = params->peer_base;
        ep->peer_len = params->peer_len;
    }
    ucp.address = params->address;
    ucp.err_mode = (mask & KVXI_UCX_EP_FIELD_FLAGS) &&
                           (params->flags & KVXI_UCX_EP_FLAG_ERR_PEER)
                       ? UCP_ERR_HANDLING_MODE_PEER
                       : UCP_ERR_HANDLING_MODE_NONE;
    ucp.err_handler.cb = ucx_ep_err_cb;
    ucp.err_handler.arg = ep;
    s = ucp_ep_create(ucx->worker, &ucp, &ep->ep);
    if (s != UCS_OK) {
        kvxi_error("ucx: ep_create: ucp_ep_create failed: %s",
                   ucs_status_string(s));
        status = kvxi_ucx_status(s);
        goto err_free;
    }
    if ((mask & KVXI_UCX_EP_FIELD_RKEY) &&
        (s = ucp_ep_rkey_unpack(ep->ep, params->rkey, &ep->rkey)) != UCS_OK) {
        kvxi_error("ucx: ep_create: peer rkey refused: %s",
                   ucs_status_string(s));
        ep->rkey = NULL;
        status = KVX_ERR_INVALID_PARAM;
        goto err_close;
    }
    ucx_scan_ep_lanes(ep);
    ucx_ep_choose(ep, params);
    ucx_list_push(&ucx->eps, &ep->link);
    kvxi_info("ucx: endpoint %p: mode %s (%s; RMA lane %s)", (void *)ep,
              kvxi_ucx_mode_string(ep->mode), ep->reason,
              ep->rma_tl[0] != '\0' ? ep->rma_tl : "?");
    *ep_p = ep;
    return KVX_OK;

err_close:
    ucx_ep_start_close(ucx, ep, 1);
    kvxi_ucx_reap_closing(ucx);
    return status;
err_free:
    free(ep);
    return status;
}

void kvxi_ucx_ep_destroy(kvxi_ucx_ep_h ep)
{
    struct kvxi_ucx *ucx;
    int busy;

    if (ep == NULL) {
        return;
    }
    ucx = ep->ucx;
    ucx_list_del(&ep->err_link);
    ucx_list_del(&ep->link);
    busy = kvxi_ucx_posts_busy(ep);
    kvxi_ucx_posts_stop(ep,
                        ep->status != KVX_OK ? ep->status : KVX_ERR_ABORTED);
    /* Force cancels what is in flight, so local buffers are released;
       otherwise the close flushes in the background. */
    ucx_ep_start_close(ucx, ep, busy || ep->status != KVX_OK);
    if (busy && !kvxi_ucx_wait(ucx, ucx_ep_idle, ep)) {
        kvxi_error("ucx: endpoint %p: operations still in UCX after %u ms",
                   (void *)ep, ucx->close_ms);
        ep->stuck = 1; /* its rkey may still be used: never freed */
    }
    kvxi_ucx_posts_detach(ep);
    kvxi_ucx_reap_closing(ucx);
}

kvxi_ucx_mode_t kvxi_ucx_ep_mode(kvxi_ucx_ep_h ep)
{
    return ep != NULL ? ep->mode : KVXI_UCX_MODE_AUTO;
}

kvx_status_t kvxi_ucx_ep_query(kvxi_ucx_ep_h ep, kvxi_ucx_ep_attr_t *attr)
{
    if (ep == NULL || attr == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    attr->mode = ep->mode;
    attr->reason = ep->reason;
    attr->rma_tl = ep->rma_tl;
    attr->status = ep->status;
    return KVX_OK;
}
