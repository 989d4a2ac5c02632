/*
 * kvx-bench rawam: the receiver child (bench_rawam_int.h). Its AM handler
 * lands messages as libkvx's does; it busy-polls its worker.
 */
#include "bench_rawam_int.h"
#include "bench_util.h"

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

static void rx_rndv_cb(void *request, ucs_status_t status, size_t length,
                       void *user_data)
{
    rawam_rx_t *rx = user_data;

    (void)length;
    ucp_request_free(request);
    if (status == UCS_OK) {
        rx->landed++;
    } else {
        rx->bad++;
    }
}

/* As libkvx's handler: eager data copied in place, rendezvous data received
 * straight into it. */
static ucs_status_t rx_am_cb(void *arg, const void *header,
                             size_t header_length, void *data, size_t length,
                             const ucp_am_recv_param_t *param)
{
    rawam_rx_t *rx = arg;
    int rndv = (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) != 0;
    ucp_request_param_t rp = {
        .op_attr_mask =
            UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA,
        .cb.recv_am = rx_rndv_cb,
        .user_data = rx,
    };
    const rawam_side_t *s = rx->side;
    ucs_status_ptr_t sp;
    rawam_hdr_t h;

    if (header == NULL || header_length != sizeof(h)) {
        rx->bad++;
        return rndv ? UCS_ERR_REJECTED : UCS_OK;
    }
    memcpy(&h, header, sizeof(h));
    if (h.magic != RAWAM_MAGIC || h.len != length || h.len > s->len ||
        h.off > s->len - h.len) {
        rx->bad++;
        return rndv ? UCS_ERR_REJECTED : UCS_OK;
    }
    if (!rndv) {
        memcpy(s->base + h.off, data, length);
        rx->landed++;
        return UCS_OK;
    }
    sp = ucp_am_recv_data_nbx(s->worker, data, s->base + h.off, length, &rp);
    if (sp == NULL) {
        rx->landed++;
    } else if (UCS_PTR_IS_ERR(sp)) {
        rx->bad++;
    }
    return UCS_OK;
}

/* The receiver child: never returns. Writes its hello on FD, then busy-polls
 * its worker; writes 'W' once WARM messages arrived, 'D' once TOTAL did
 * ('E' instead when one was bad), and ends on EOF on FD (or, should the
 * parent not kill it, some time after timeout_s). */
void kvxi_rawam_rx_main(pid_t parent, const char *tls, size_t footprint,
                        uint64_t warm, uint64_t total, unsigned timeout_s,
                        int fd)
{
    rawam_hello_t hello = {.what = 'A'};
    double deadline = kvxi_rawam_now_s() + timeout_s + RAWAM_RX_SPARE_S;
    rawam_side_t s;
    rawam_rx_t rx = {.side = &s};
    ucp_address_t *addr = NULL;
    size_t addr_len = 0;
    int said_warm = 0, said_done = 0;
    unsigned spin = 0;
    ucs_status_t st;

    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) {
        _exit(1);
    }
    if (kvxi_rawam_side_open(&s, tls, footprint, 0, rx_am_cb, &rx, hello.why,
                             sizeof(hello.why)) != 0) {
        hello.what = 'E';
        (void)kvxi_bench_write_all(fd, &hello, sizeof(hello));
        _exit(1);
    }
    st = ucp_worker_get_address(s.worker, &addr, &addr_len);
    if (st != UCS_OK || addr_len > RAWAM_ADDR_MAX) {
        hello.what = 'E';
        snprintf(hello.why, sizeof(hello.why),
                 "UCX cannot start: ucp_worker_get_address: %s",
                 st != UCS_OK ? ucs_status_string(st) : "too long");
        (void)kvxi_bench_write_all(fd, &hello, sizeof(hello));
        _exit(1);
    }
    hello.addr_len = (uint32_t)addr_len;
    if (kvxi_bench_write_all(fd, &hello, sizeof(hello)) != 0 ||
        kvxi_bench_write_all(fd, addr, addr_len) != 0) {
        _exit(1);
    }
    ucp_worker_release_address(s.worker, addr);
    for (;;) {
        uint64_t got;
        char c;

        ucp_worker_progress(s.worker);
        got = rx.landed + rx.bad;
        if (!said_warm && got >= warm) {
            c = rx.bad != 0 ? 'E' : 'W';
            said_warm = 1;
            (void)kvxi_bench_write_all(fd, &c, 1);
        }
        if (!said_done && got >= total) {
            c = rx.bad != 0 ? 'E' : 'D';
            said_done = 1;
            (void)kvxi_bench_write_all(fd, &c, 1);
        }
        if (++spin % RAWAM_CHECK_EVERY != 0) {
            continue;
        }
        /* the parent never writes: anything readable is its EOF */
        if (recv(fd, &c, 1, MSG_DONTWAIT) >= 0) {
            break;
        }
        if (kvxi_rawam_now_s() >= deadline) {
            _exit(1); /* the parent should have killed it by now */
        }
    }
    if (!said_done) { /* the parent gave up: receives may be pending */
        _exit(1);
    }
    kvxi_rawam_side_close(&s);
    _exit(0);
}

/* Kills the receiver by PID unless it exits within GRACE_S; reaps it. */
void kvxi_rawam_rx_reap(pid_t pid, double grace_s)
{
    double until = kvxi_rawam_now_s() + grace_s;
    struct timespec ms = {0, 1000000L};

    for (;;) {
        pid_t r = waitpid(pid, NULL, WNOHANG);

        if (r == pid || (r < 0 && errno != EINTR)) {
            return;
        }
        if (kvxi_rawam_now_s() >= until) {
            break;
        }
        nanosleep(&ms, NULL);
    }
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
}
