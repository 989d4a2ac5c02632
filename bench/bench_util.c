/*
 * kvx-bench: command-line and output helpers its commands share.
 */
#include "bench_util.h"

#include <kvx/kvx.h>
#include <ucp/api/ucp.h>

#include <errno.h>
#include <unistd.h>
#include <sys/socket.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

int kvxi_bench_bad(const char *fmt, const char *arg)
{
    fprintf(stderr, "kvx-bench: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    return 2;
}

int kvxi_bench_parse_size(const char *s, size_t max, size_t *size_p)
{
    char *end;
    unsigned long long v;
    int shift = 0;

    if (*s < '0' || *s > '9') {
        return -1;
    }
    errno = 0;
    v = strtoull(s, &end, 10);
    switch (*end) {
    case 'k':
    case 'K':
        shift = 10;
        end++;
        break;
    case 'm':
    case 'M':
        shift = 20;
        end++;
        break;
    case 'g':
    case 'G':
        shift = 30;
        end++;
        break;
    default: break;
    }
    if (errno != 0 || *end != '\0' || v == 0 || v > (max >> shift)) {
        return -1;
    }
    *size_p = (size_t)v << shift;
    return 0;
}

int kvxi_bench_parse_list(const char *list, size_t max, size_t *out, int cap,
                          int *n_p)
{
    char item[32];
    const char *p = list;
    int n = 0;

    for (;;) {
        size_t len = strcspn(p, ",");

        if (len == 0 || len >= sizeof(item) || n == cap) {
            return -1;
        }
        memcpy(item, p, len);
        item[len] = '\0';
        if (kvxi_bench_parse_size(item, max, &out[n++]) < 0) {
            return -1;
        }
        if (p[len] == '\0') {
            *n_p = n;
            return 0;
        }
        p += len + 1;
    }
}

int kvxi_bench_parse_ulong(const char *s, unsigned long max, unsigned long *v_p)
{
    char *end;

    if (*s < '0' || *s > '9') {
        return -1;
    }
    errno = 0;
    *v_p = strtoul(s, &end, 10);
    return (errno || *end || *v_p == 0 || *v_p > max) ? -1 : 0;
}

const char *kvxi_bench_opt_arg(int argc, char **argv, int *i, const char *name,
                               int *missing_p)
{
    size_t n = strlen(name);

    if (strncmp(argv[*i], name, n) != 0) {
        return NULL;
    }
    if (argv[*i][n] == '=') {
        return argv[*i] + n + 1;
    }
    if (argv[*i][n] != '\0') {
        return NULL;
    }
    if (*i + 1 >= argc) {
        *missing_p = 1;
        return NULL;
    }
    return argv[++*i];
}

const char *kvxi_bench_size_str(size_t size, char *buf, size_t len)
{
    if (size >= (1 << 30) && size % (1 << 30) == 0) {
        snprintf(buf, len, "%zuG", size >> 30);
    } else if (size >= (1 << 20) && size % (1 << 20) == 0) {
        snprintf(buf, len, "%zuM", size >> 20);
    } else if (size >= (1 << 10) && size % (1 << 10) == 0) {
        snprintf(buf, len, "%zuK", size >> 10);
    } else {
        snprintf(buf, len, "%zu", size);
    }
    return buf;
}

void kvxi_bench_json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') {
            fprintf(f, "\\%c", *s);
        } else if ((unsigned char)*s < 0x20) {
            fprintf(f, "\\u%04x", (unsigned char)*s);
        } else {
            fputc(*s, f);
        }
    }
    fputc('"', f);
}

int kvxi_bench_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;

    while (len > 0) {
        ssize_t w = send(fd, p, len, MSG_NOSIGNAL);

        if (w < 0 && errno == ENOTSOCK) {
            w = write(fd, p, len);
        }
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int kvxi_bench_read_all(int fd, void *buf, size_t len, uint64_t deadline_ns)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    char *p = buf;

    while (len > 0) {
        uint64_t now = kvx_clock_monotonic_ns(NULL);
        ssize_t r;
        int pr;

        if (now >= deadline_ns) {
            return -1;
        }
        pr = poll(&pfd, 1, (int)((deadline_ns - now) / 1000000ull) + 1);
        if (pr < 0 && errno == EINTR) {
            continue;
        }
        if (pr <= 0) {
            return -1;
        }
        r = read(fd, p, len);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            return -1;
        }
        p += r;
        len -= (size_t)r;
    }
    return 0;
}

kvxi_bench_tuning_t kvxi_bench_tuning = {
    .poll_us = KVX_NODE_POLL_US_DEFAULT,
    .am_chunk = KVX_NODE_AM_CHUNK_DEFAULT,
    .path = KVX_TRANSPORT_AUTO,
};

int kvxi_bench_parse_tuning(int argc, char **argv, int *i)
{
    kvxi_bench_tuning_t *t = &kvxi_bench_tuning;
    const char *v;
    size_t size;
    int missing = 0;

    if ((v = kvxi_bench_opt_arg(argc, argv, i, "--poll-us", &missing))) {
        /* 0 is a value here (never poll) */
        if (strcmp(v, "0") == 0) {
            t->poll_us = 0;
        } else if (kvxi_bench_parse_ulong(v, KVX_NODE_POLL_US_MAX,
                                          &t->poll_us) < 0) {
            return kvxi_bench_bad("bad --poll-us '%s': 0 to 1000000", v);
        }
        return 1;
    }
    if (!missing &&
        (v = kvxi_bench_opt_arg(argc, argv, i, "--am-chunk", &missing))) {
        if (kvxi_bench_parse_size(v, KVX_NODE_AM_CHUNK_MAX, &size) < 0 ||
            size < KVX_NODE_AM_CHUNK_MIN) {
            return kvxi_bench_bad("bad --am-chunk '%s': 4K to 1G", v);
        }
        t->am_chunk = size;
        return 1;
    }
    if (!missing &&
        (v = kvxi_bench_opt_arg(argc, argv, i, "--path", &missing))) {
        if (strcmp(v, "auto") == 0) {
            t->path = KVX_TRANSPORT_AUTO;
        } else if (strcmp(v, "am") == 0) {
            t->path = KVX_TRANSPORT_AM;
        } else if (strcmp(v, "rma") == 0) {
            t->path = KVX_TRANSPORT_RMA;
        } else {
            return kvxi_bench_bad("unknown --path '%s' (auto, am or rma)", v);
        }
        return 1;
    }
    if (missing) {
        return kvxi_bench_bad("%s needs a value", argv[*i]);
    }
    return 0;
}

const char *kvxi_bench_tuning_str(char *buf, size_t len)
{
    char sz[32];

    snprintf(buf, len, "path %s, poll %lu us, AM chunk %s",
             kvx_transport_string((kvx_transport_t)kvxi_bench_tuning.path),
             kvxi_bench_tuning.poll_us,
             kvxi_bench_size_str(kvxi_bench_tuning.am_chunk, sz, sizeof(sz)));
    return buf;
}

FILE *kvxi_bench_json_open(const char *path, const char *command,
                           const char *transport, const char *tls, long cpus)
{
    FILE *f = fopen(path, "w");

    if (f == NULL) {
        fprintf(stderr, "kvx-bench: cannot write %s: %s\n", path,
                strerror(errno));
        return NULL;
    }
    fprintf(f, "{\n  \"tool\": \"kvx-bench\",\n  \"command\": ");
    kvxi_bench_json_str(f, command);
    fprintf(f, ",\n  \"env\": {\"transport\": ");
    kvxi_bench_json_str(f, transport);
    fprintf(f, ", \"ucx_tls\": ");
    kvxi_bench_json_str(f, tls);
    fprintf(f, ", \"ucx_net_devices\": \"lo\", \"ucx_version\": ");
    kvxi_bench_json_str(f, ucp_get_version_string());
    fprintf(f,
            ", \"cpu_count\": %ld, \"kvx_version\": \"%s\", "
            "\"path\": \"%s\", \"poll_us\": %lu, \"am_chunk\": %lu},\n",
            cpus, KVX_VERSION_STRING,
            kvx_transport_string((kvx_transport_t)kvxi_bench_tuning.path),
            kvxi_bench_tuning.poll_us, kvxi_bench_tuning.am_chunk);
    return f;
}

int kvxi_bench_parse_transport(const char *v, const char **transport_p,
                               const char **tls_p)
{
    if (strcmp(v, "tcp") == 0) {
        *tls_p = "tcp";
    } else if (strcmp(v, "shm") == 0) {
        *tls_p = "posix,sysv,cma,self";
    } else {
        return -1;
    }
    *transport_p = v;
    return 0;
}
