/*
 * kvx-bench rawam: what both processes use (bench_rawam_int.h): the clock,
 * whole reads and writes on the socket pair, and one side's region,
 * context and worker.
 */
#include "bench_rawam_int.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

double kvxi_rawam_now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A memfd shared mapping of LEN bytes (as libkvx's pool), every page
 * written with FILL now. NULL with errno set on failure. */
static char *region_map(size_t len, int fill)
{
    int fd = memfd_create("kvx-bench-rawam", MFD_CLOEXEC), err;
    void *base;

    if (fd < 0) {
        return NULL;
    }
    if (ftruncate(fd, (off_t)len) != 0) {
        err = errno;
        close(fd);
        errno = err;
        return NULL;
    }
    base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    err = errno;
    close(fd);
    if (base == MAP_FAILED) {
        errno = err;
        return NULL;
    }
    memset(base, fill, len);
    return base;
}

void kvxi_rawam_side_close(rawam_side_t *s)
{
    if (s->memh != NULL) {
        ucp_mem_unmap(s->ctx, s->memh);
    }
    if (s->worker != NULL) {
        ucp_worker_destroy(s->worker);
    }
    if (s->ctx != NULL) {
        ucp_cleanup(s->ctx);
    }
    if (s->base != NULL) {
        munmap(s->base, s->len);
    }
    memset(s, 0, sizeof(*s));
}

/* Maps the region, then a context (UCP_FEATURE_AM only) and a worker over
 * TLS on lo, with AM_CB (if any) as the handler. 0, or -1 with why. */
int kvxi_rawam_side_open(rawam_side_t *s, const char *tls, size_t len, int fill,
                         ucp_am_recv_callback_t am_cb, void *am_arg, char *why,
                         size_t why_len)
{
    ucp_params_t params = {
        .field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_NAME,
        .features = UCP_FEATURE_AM,
        .name = "kvx-bench-rawam",
    };
    ucp_worker_params_t wp = {
        .field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE,
        .thread_mode = UCS_THREAD_MODE_SINGLE,
    };
    ucp_worker_attr_t attr = {.field_mask =
                                  UCP_WORKER_ATTR_FIELD_MAX_AM_HEADER};
    ucp_am_handler_param_t am = {
        .field_mask =
            UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_FLAGS |
            UCP_AM_HANDLER_PARAM_FIELD_CB | UCP_AM_HANDLER_PARAM_FIELD_ARG,
        .id = RAWAM_AM_ID,
        .flags = UCP_AM_FLAG_WHOLE_MSG,
        .cb = am_cb,
        .arg = am_arg,
    };
    ucp_mem_map_params_t mp = {
        .field_mask =
            UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH,
        .length = len,
    };
    const char *what = "ucp_config_read";
    ucp_config_t *config;
    ucs_status_t st;

    memset(s, 0, sizeof(*s));
    if ((s->base = region_map(len, fill)) == NULL) {
        snprintf(why, why_len, "cannot map %zu bytes: %s", len,
                 strerror(errno));
        return -1;
    }
    s->len = len;
    st = ucp_config_read(NULL, NULL, &config);
    if (st != UCS_OK) {
        goto err;
    }
    what = "ucp_config_modify";
    if ((st = ucp_config_modify(config, "TLS", tls)) == UCS_OK &&
        (st = ucp_config_modify(config, "NET_DEVICES", "lo")) == UCS_OK) {
        what = "ucp_init";
        st = ucp_init(&params, config, &s->ctx);
    }
    ucp_config_release(config);
    if (st != UCS_OK) {
        s->ctx = NULL;
        goto err;
    }
    what = "ucp_worker_create";
    if ((st = ucp_worker_create(s->ctx, &wp, &s->worker)) != UCS_OK) {
        s->worker = NULL;
        goto err;
    }
    what = "ucp_worker_query";
    if ((st = ucp_worker_query(s->worker, &attr)) != UCS_OK) {
        goto err;
    }
    if (attr.max_am_header < sizeof(rawam_hdr_t)) {
        snprintf(why, why_len,
                 "UCX cannot start: AM headers limited to %zu "
                 "bytes",
                 attr.max_am_header);
        kvxi_rawam_side_close(s);
        return -1;
    }
    what = "ucp_worker_set_am_recv_handler";
    if (am_cb != NULL &&
        (st = ucp_worker_set_am_recv_handler(s->worker, &am)) != UCS_OK) {
        goto err;
    }
    what = "ucp_mem_map";
    mp.address = s->base;
    if ((st = ucp_mem_map(s->ctx, &mp, &s->memh)) != UCS_OK) {
        s->memh = NULL;
        goto err;
    }
    return 0;

err:
    snprintf(why, why_len, "UCX cannot start: %s (UCX_TLS=%s): %s", what, tls,
             ucs_status_string(st));
    kvxi_rawam_side_close(s);
    return -1;
}
