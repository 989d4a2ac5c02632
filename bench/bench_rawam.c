/*
 * kvx-bench rawam: the raw UCP active-message stream (bench_rawam.h) and
 * its command, which prints it next to ucx_perftest ucp_am_bw.
 */
#include "bench_rawam_int.h"

#include "bench_baseline.h"
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

#define PERFTEST "ucx_perftest"

/* ---- the sender ---- */

static void tx_send_cb(void *request, ucs_status_t status, void *user_data)
{
    rawam_op_t *op = user_data;
    rawam_tx_t *tx = op->tx;

    ucp_request_free(request);
    tx->free_ops[tx->n_free++] = op->idx;
    if (status != UCS_OK && tx->status == UCS_OK) {
        tx->status = status;
    }
}

/* Sends message SEQ as libkvx sends an AM chunk. */
static void tx_send(rawam_tx_t *tx, uint64_t seq)
{
    rawam_op_t *op = &tx->ops[tx->free_ops[--tx->n_free]];
    size_t off = (size_t)(seq % tx->slots) * tx->msg;
    ucp_request_param_t param = {
        .op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK |
                        UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_MEMH,
        .cb.send = tx_send_cb,
        .user_data = op,
        .memh = tx->side->memh,
    };
    ucs_status_ptr_t sp;

    op->hdr = (rawam_hdr_t){
        .magic = RAWAM_MAGIC, .seq = (uint32_t)seq, .off = off, .len = tx->msg};
    if (tx->msg <= KVXI_RAWAM_EAGER_MAX) {
        param.op_attr_mask |= UCP_OP_ATTR_FIELD_FLAGS;
        param.flags = UCP_AM_SEND_FLAG_EAGER;
    }
    sp = ucp_am_send_nbx(tx->ep, RAWAM_AM_ID, &op->hdr, sizeof(op->hdr),
                         tx->side->base + off, tx->msg, &param);
    if (sp == NULL || UCS_PTR_IS_ERR(sp)) { /* no callback will come */
        tx->free_ops[tx->n_free++] = op->idx;
        if (sp != NULL && tx->status == UCS_OK) {
            tx->status = UCS_PTR_STATUS(sp);
        }
    }
}

/* Keeps up to the window of N messages in flight, then busy-polls until
 * the receiver writes WANT on FD. 0, or -1 with why. */
static int tx_stream(rawam_tx_t *tx, uint64_t n, char want, int fd,
                     double deadline, unsigned timeout_s, char *why,
                     size_t why_len)
{
    uint64_t seq = 0;
    unsigned spin = 0;

    for (;;) {
        while (seq < n && tx->n_free > 0 && tx->status == UCS_OK) {
            tx_send(tx, seq++);
        }
        ucp_worker_progress(tx->side->worker);
        if (tx->status != UCS_OK) {
            snprintf(why, why_len, "ucp_am_send_nbx failed: %s",
                     ucs_status_string(tx->status));
            return -1;
        }
        if (seq == n) {
            char c;
            ssize_t r = recv(fd, &c, 1, MSG_DONTWAIT);

            if (r == 1) {
                if (c == want) {
                    return 0;
                }
                snprintf(why, why_len, "the receiver refused a message");
                return -1;
            }
            if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
                snprintf(why, why_len, "the receiver died");
                return -1;
            }
        }
        if (++spin % RAWAM_CHECK_EVERY == 0 && kvxi_rawam_now_s() >= deadline) {
            snprintf(why, why_len, "timed out after %u s", timeout_s);
            return -1;
        }
    }
}

/* Progresses until every send has called back. 0, or -1 with why. */
static int tx_drain(rawam_tx_t *tx, double deadline, unsigned timeout_s,
                    char *why, size_t why_len)
{
    while (tx->n_free < KVXI_RAWAM_WINDOW) {
        if (kvxi_rawam_now_s() >= deadline) {
            snprintf(why, why_len, "timed out after %u s", timeout_s);
            return -1;
        }
        ucp_worker_progress(tx->side->worker);
    }
    return 0;
}

static void tx_ep_close(rawam_tx_t *tx, int force, double until)
{
    ucp_request_param_t p = {
        .op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
        .flags = force ? UCP_EP_CLOSE_FLAG_FORCE : 0,
    };
    ucs_status_ptr_t sp = ucp_ep_close_nbx(tx->ep, &p);

    tx->ep = NULL;
    if (sp == NULL || UCS_PTR_IS_ERR(sp)) {
        return;
    }
    while (ucp_request_check_status(sp) == UCS_INPROGRESS &&
           kvxi_rawam_now_s() < until) {
        ucp_worker_progress(tx->side->worker);
    }
    ucp_request_free(sp); /* released when done, if not yet */
}

/* Connects to the receiver's worker address, read from FD. */
static int tx_connect(rawam_tx_t *tx, int fd, double deadline,
                      unsigned timeout_s, char *why, size_t why_len)
{
    ucp_ep_params_t ep = {.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS};
    rawam_hello_t hello;
    void *addr;
    ucs_status_t st;

    if (kvxi_bench_read_all(fd, &hello, sizeof(hello),
                            (uint64_t)(deadline * 1e9)) != 0) {
        if (kvxi_rawam_now_s() >= deadline) {
            snprintf(why, why_len, "timed out after %u s", timeout_s);
        } else {
            snprintf(why, why_len, "the receiver did not start");
        }
        return -1;
    }
    if (hello.what != 'A' || hello.addr_len == 0 ||
        hello.addr_len > RAWAM_ADDR_MAX) {
        hello.why[sizeof(hello.why) - 1] = '\0';
        snprintf(why, why_len, "receiver: %s",
                 hello.what == 'E' ? hello.why : "bad hello");
        return -1;
    }
    if ((addr = malloc(hello.addr_len)) == NULL ||
        kvxi_bench_read_all(fd, addr, hello.addr_len,
                            (uint64_t)(deadline * 1e9)) != 0) {
        snprintf(why, why_len, "cannot read the receiver's address");
        free(addr);
        return -1;
    }
    ep.address = addr;
    st = ucp_ep_create(tx->side->worker, &ep, &tx->ep);
    free(addr);
    if (st != UCS_OK) {
        tx->ep = NULL;
        snprintf(why, why_len, "ucp_ep_create failed: %s",
                 ucs_status_string(st));
        return -1;
    }
    return 0;
}

int kvxi_rawam_run(const char *tls, size_t msg, size_t footprint,
                   unsigned iters, unsigned timeout_s, double *bps_p, char *why,
                   size_t why_len)
{
    double deadline = kvxi_rawam_now_s() + timeout_s, t0, t1;
    size_t slots = msg != 0 ? footprint / msg : 0;
    rawam_side_t side;
    rawam_tx_t *tx;
    int sv[2], ok = 0;
    pid_t pid, parent;

    if (tls == NULL || slots == 0 || msg > KVXI_RAWAM_MSG_MAX ||
        footprint > KVXI_RAWAM_FOOTPRINT_MAX || iters == 0 || timeout_s == 0 ||
        bps_p == NULL) {
        snprintf(why, why_len, "invalid argument");
        return -1;
    }
    footprint = slots * msg;
    if ((tx = calloc(1, sizeof(*tx))) == NULL) {
        snprintf(why, why_len, "out of memory");
        return -1;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        snprintf(why, why_len, "socketpair: %s", strerror(errno));
        free(tx);
        return -1;
    }
    fflush(stdout);
    fflush(stderr);
    parent = getpid();
    pid = fork();
    if (pid == 0) {
        close(sv[0]);
        kvxi_rawam_rx_main(parent, tls, footprint, slots, slots + iters,
                           timeout_s, sv[1]);
    }
    close(sv[1]);
    if (pid < 0) {
        snprintf(why, why_len, "fork: %s", strerror(errno));
        goto out_fd;
    }
    /* set up while the receiver does */
    if (kvxi_rawam_side_open(&side, tls, footprint, 0x5a, NULL, NULL, why,
                             why_len) != 0) {
        goto out_child;
    }
    tx->side = &side;
    tx->msg = msg;
    tx->slots = slots;
    tx->n_free = KVXI_RAWAM_WINDOW;
    for (uint32_t i = 0; i < KVXI_RAWAM_WINDOW; i++) {
        tx->free_ops[i] = i;
        tx->ops[i].tx = tx;
        tx->ops[i].idx = i;
    }
    if (tx_connect(tx, sv[0], deadline, timeout_s, why, why_len) != 0) {
        goto out_side;
    }
    /* warm-up: one pass over the footprint, every send called back */
    if (tx_stream(tx, slots, 'W', sv[0], deadline, timeout_s, why, why_len) !=
            0 ||
        tx_drain(tx, deadline, timeout_s, why, why_len) != 0) {
        goto out_ep;
    }
    t0 = kvxi_rawam_now_s();
    if (tx_stream(tx, iters, 'D', sv[0], deadline, timeout_s, why, why_len) !=
        0) {
        goto out_ep;
    }
    t1 = kvxi_rawam_now_s();
    if (tx_drain(tx, deadline, timeout_s, why, why_len) == 0) {
        *bps_p = (double)iters * (double)msg / (t1 - t0);
        ok = 1;
    }
out_ep:
    if (!ok) { /* no peer to flush to */
        kill(pid, SIGKILL);
    }
    tx_ep_close(tx, !ok, kvxi_rawam_now_s() + RAWAM_CLOSE_S);
out_side:
    kvxi_rawam_side_close(&side);
out_child:
    close(sv[0]); /* EOF: the receiver ends */
    sv[0] = -1;
    kvxi_rawam_rx_reap(pid, ok ? RAWAM_CLOSE_S : 0);
out_fd:
    if (sv[0] >= 0) {
        close(sv[0]);
    }
    free(tx);
    return ok ? 0 : -1;
}

/* ---- kvx-bench rawam ---- */

static void usage(FILE *f)
{
    fprintf(f, "usage: kvx-bench rawam [--transport tcp|shm] [--msg 1M] "
               "[--footprint 512M]\n"
               "                       [--iters N] [--timeout S]\n"
               "  a raw UCP active-message stream (libkvx's AM pattern: eager "
               "up to 256K,\n"
               "  128 in flight) of MSG-byte messages over FOOTPRINT distinct "
               "bytes per side,\n"
               "  then ucx_perftest ucp_am_bw at MSG (one buffer, in cache) "
               "for comparison\n");
}

int kvxi_rawam_main(int argc, char **argv)
{
    const char *transport = "tcp", *tls = "tcp", *v;
    size_t msg = (size_t)1 << 20, footprint = (size_t)512 << 20;
    unsigned long iters = 1024, timeout_s = 120;
    char exe[4096], why[256], m[32], fp[32];
    kvxi_pt_result_t pt;
    int i, missing = 0;
    double bps;

    for (i = 2; i < argc; i++) {
        if ((v = kvxi_bench_opt_arg(argc, argv, &i, "--transport", &missing))) {
            if (kvxi_bench_parse_transport(v, &transport, &tls) < 0) {
                return kvxi_bench_bad("unknown transport '%s' (tcp or shm)", v);
            }
        } else if ((v = kvxi_bench_opt_arg(argc, argv, &i, "--msg",
                                           &missing))) {
            if (kvxi_bench_parse_size(v, KVXI_RAWAM_MSG_MAX, &msg) < 0) {
                return kvxi_bench_bad("bad --msg '%s': 1 byte to 1G", v);
            }
        } else if ((v = kvxi_bench_opt_arg(argc, argv, &i, "--footprint",
                                           &missing))) {
            if (kvxi_bench_parse_size(v, KVXI_RAWAM_FOOTPRINT_MAX, &footprint) <
                0) {
                return kvxi_bench_bad("bad --footprint '%s': 1 byte to 8G", v);
            }
        } else if ((v = kvxi_bench_opt_arg(argc, argv, &i, "--iters",
                                           &missing))) {
            if (kvxi_bench_parse_ulong(v, 10000000, &iters) < 0) {
                return kvxi_bench_bad("bad --iters '%s': 1 to 10000000", v);
            }
        } else if ((v = kvxi_bench_opt_arg(argc, argv, &i, "--timeout",
                                           &missing))) {
            if (kvxi_bench_parse_ulong(v, 3600, &timeout_s) < 0) {
                return kvxi_bench_bad("bad --timeout '%s': 1 to 3600 seconds",
                                      v);
            }
        } else if (missing) {
            return kvxi_bench_bad("%s needs a value", argv[i]);
        } else if (strcmp(argv[i], "--help") == 0 ||
                   strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            return kvxi_bench_bad("unknown option '%s' (see rawam --help)",
                                  argv[i]);
        }
    }
    kvxi_bench_size_str(msg, m, sizeof(m));
    if (footprint < msg) {
        snprintf(why, sizeof(why), "--footprint %s is smaller than --msg %s",
                 kvxi_bench_size_str(footprint, fp, sizeof(fp)), m);
        return kvxi_bench_bad("%s", why);
    }
    footprint -= footprint % msg; /* whole messages */
    kvxi_bench_size_str(footprint, fp, sizeof(fp));
    printf("kvx-bench rawam: transport %s (UCX_TLS=%s), UCX %s, %lu "
           "iterations\n",
           transport, tls, ucp_get_version_string(), iters);
    fflush(stdout);
    if (kvxi_rawam_run(tls, msg, footprint, (unsigned)iters,
                       (unsigned)timeout_s, &bps, why, sizeof(why)) != 0) {
        fprintf(stderr,
                "kvx-bench: raw UCX AM: msg %s over a %s footprint: "
                "%s\n",
                m, fp, why);
        return 1;
    }
    printf("raw UCX AM: msg %s over a %s footprint: %.1f MiB/s\n", m, fp,
           bps / 1048576.0);
    fflush(stdout);
    if (kvxi_bench_find_on_path(PERFTEST, exe, sizeof(exe)) != 0) {
        printf("ucx_perftest ucp_am_bw: msg %s (one buffer): absent: " PERFTEST
               " not found\n",
               m);
        return 0;
    }
    kvxi_pt_run(exe, tls, KVXI_PT_AM_BW, msg, (unsigned)iters,
                (unsigned)timeout_s, &pt);
    if (pt.present) {
        printf("ucx_perftest ucp_am_bw: msg %s (one buffer): %.1f MiB/s\n", m,
               pt.value / 1048576.0);
    } else {
        printf("ucx_perftest ucp_am_bw: msg %s (one buffer): absent: %s\n", m,
               pt.why);
    }
    return 0;
}
