/*
 * RDMA device discovery through libibverbs. Every verbs call and sysfs read
 * goes through rdma_ops, so unit tests run the RDMA branches with stubs.
 * A host without RDMA is a normal state: zero devices, one info message.
 */
#include "rdma_int.h"

#include "log_int.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RDMA_GID_SCAN_MAX 16 /* RoCE GID entries looked at for an IPv4 one */
#define RDMA_NUMA_NODES_MAX 1024
/* NUMA distances: the device's own node, a node the table does not list,
 * and a device whose node is unknown (always the farthest). */
#define RDMA_DIST_LOCAL 0
#define RDMA_DIST_UNLISTED (INT_MAX / 2)
#define RDMA_DIST_UNKNOWN (INT_MAX / 2 + 1)

/* --- the real verbs layer ----------------------------------------------- */

static struct ibv_device **rdma_verbs_get_device_list(int *num_devices)
{
    return ibv_get_device_list(num_devices);
}

static void rdma_verbs_free_device_list(struct ibv_device **list)
{
    ibv_free_device_list(list);
}

static const char *rdma_verbs_get_device_name(struct ibv_device *device)
{
    return ibv_get_device_name(device);
}

static __be64 rdma_verbs_get_device_guid(struct ibv_device *device)
{
    return ibv_get_device_guid(device);
}

static struct ibv_context *rdma_verbs_open_device(struct ibv_device *device)
{
    return ibv_open_device(device);
}

static int rdma_verbs_close_device(struct ibv_context *context)
{
    return ibv_close_device(context);
}

static int rdma_verbs_query_device(struct ibv_context *context,
                                   struct ibv_device_attr *attr)
{
    return ibv_query_device(context, attr);
}

/* ibv_query_port is an inline wrapper in verbs.h: it needs a real function
 * to be stored in the table. */
static int rdma_verbs_query_port(struct ibv_context *context, uint8_t port_num,
                                 struct ibv_port_attr *attr)
{
    return ibv_query_port(context, port_num, attr);
}

static int rdma_verbs_query_gid(struct ibv_context *context, uint8_t port_num,
                                int index, union ibv_gid *gid)
{
    return ibv_query_gid(context, port_num, index, gid);
}

static ssize_t rdma_read_sysfs(const char *path, char *buf, size_t len)
{
    ssize_t n;
    int fd, err;

    if (len == 0) {
        errno = EINVAL;
        return -1;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    do {
        n = read(fd, buf, len - 1);
    } while (n < 0 && errno == EINTR);
    err = errno;
    close(fd);
    if (n < 0) {
        errno = err;
        return -1;
    }
    buf[n] = '\0';
    return n;
}

const kvxi_rdma_ops_t kvxi_rdma_ops_verbs = {
    .get_device_list = rdma_verbs_get_device_list,
    .free_device_list = rdma_verbs_free_device_list,
    .get_device_name = rdma_verbs_get_device_name,
    .get_device_guid = rdma_verbs_get_device_guid,
    .open_device = rdma_verbs_open_device,
    .close_device = rdma_verbs_close_device,
    .query_device = rdma_verbs_query_device,
    .query_port = rdma_verbs_query_port,
    .query_gid = rdma_verbs_query_gid,
    .read_sysfs = rdma_read_sysfs,
};

static const kvxi_rdma_ops_t *rdma_ops = &kvxi_rdma_ops_verbs;
static atomic_int rdma_none_logged;

void kvxi_rdma_set_ops(const kvxi_rdma_ops_t *ops)
{
    rdma_ops = (ops != NULL) ? ops : &kvxi_rdma_ops_verbs;
    atomic_store(&rdma_none_logged, 0);
}

/* --- codes and names ---------------------------------------------------- */

typedef struct rdma_speed {
    uint32_t code;         /* ibv active_speed */
    const char *name;      /* generation */
    uint32_t lane_mbps;    /* nominal, as ibstat counts */
    uint32_t ib_data_kbps; /* per lane after InfiniBand line coding */
} rdma_speed_t;

/* SDR..QDR signal at the nominal rate with 8b/10b coding. FDR signals at
 * 14.0625 Gbaud with 64b/66b (13.636 Gbit/s of data); FDR10 (10.3125) and
 * EDR (25.78125) are nominally quoted after 64b/66b, HDR and later after
 * their FEC and coding. */
static const rdma_speed_t rdma_speeds[] = {
    {1, "SDR", 2500, 2000000},       {2, "DDR", 5000, 4000000},
    {4, "QDR", 10000, 8000000},      {8, "FDR10", 10000, 10000000},
    {16, "FDR", 14000, 13636364},    {32, "EDR", 25000, 25000000},
    {64, "HDR", 50000, 50000000},    {128, "NDR", 100000, 100000000},
    {256, "XDR", 200000, 200000000},
};

static uint32_t rdma_width_lanes(uint32_t width_code)
{
    switch (width_code) {
    case 1: return 1;
    case 2: return 4;
    case 4: return 8;
    case 8: return 12;
    case 16: return 2;
    }
    return 0;
}

kvx_status_t kvx_rdma_rate_from_codes(uint32_t speed_code, uint32_t width_code,
                                      kvx_rdma_link_layer_t link_layer,
                                      kvx_rdma_rate_t *rate)
{
    const rdma_speed_t *speed = NULL;
    uint32_t lanes;

    if (rate == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    memset(rate, 0, sizeof(*rate));
    rate->speed_name = "unknown";
    for (size_t i = 0; i < sizeof(rdma_speeds) / sizeof(rdma_speeds[0]); i++) {
        if (rdma_speeds[i].code == speed_code) {
            speed = &rdma_speeds[i];
            break;
        }
    }
    lanes = rdma_width_lanes(width_code);
    if (speed == NULL || lanes == 0) {
        return KVX_ERR_NOT_SUPPORTED;
    }
    rate->lanes = lanes;
    rate->lane_mbps = speed->lane_mbps;
    rate->rate_mbps = lanes * speed->lane_mbps;
    if (link_layer == KVX_RDMA_LINK_ETHERNET) {
        rate->data_mbps = rate->rate_mbps;
    } else {
        rate->data_mbps =
            (uint32_t)(((uint64_t)lanes * speed->ib_data_kbps) / 1000);
    }
    rate->speed_name = speed->name;
    return KVX_OK;
}

const char *kvx_rdma_port_state_string(kvx_rdma_port_state_t state)
{
    switch (state) {
    case KVX_RDMA_PORT_UNKNOWN: return "unknown";
    case KVX_RDMA_PORT_DOWN: return "down";
    case KVX_RDMA_PORT_INIT: return "init";
    case KVX_RDMA_PORT_ARMED: return "armed";
    case KVX_RDMA_PORT_ACTIVE: return "active";
    }
    return "unknown";
}

const char *kvx_rdma_link_layer_string(kvx_rdma_link_layer_t link_layer)
{
    switch (link_layer) {
    case KVX_RDMA_LINK_UNKNOWN: return "unknown";
    case KVX_RDMA_LINK_INFINIBAND: return "InfiniBand";
    case KVX_RDMA_LINK_ETHERNET: return "Ethernet";
    }
    return "unknown";
}

static kvx_rdma_port_state_t rdma_port_state(enum ibv_port_state state)
{
    switch (state) {
    case IBV_PORT_DOWN: return KVX_RDMA_PORT_DOWN;
    case IBV_PORT_INIT: return KVX_RDMA_PORT_INIT;
    case IBV_PORT_ARMED: return KVX_RDMA_PORT_ARMED;
    case IBV_PORT_ACTIVE:
    case IBV_PORT_ACTIVE_DEFER: return KVX_RDMA_PORT_ACTIVE;
    case IBV_PORT_NOP: break;
    }
    return KVX_RDMA_PORT_UNKNOWN;
}

static kvx_rdma_link_layer_t rdma_link_layer(uint8_t link_layer)
{
    switch (link_layer) {
    /* Kernels older than the link_layer attribute leave it unspecified:
     * those ports are InfiniBand. */
    case IBV_LINK_LAYER_UNSPECIFIED:
    case IBV_LINK_LAYER_INFINIBAND: return KVX_RDMA_LINK_INFINIBAND;
    case IBV_LINK_LAYER_ETHERNET: return KVX_RDMA_LINK_ETHERNET;
    }
    return KVX_RDMA_LINK_UNKNOWN;
}

static uint32_t rdma_mtu_bytes(enum ibv_mtu mtu)
{
    if (mtu < IBV_MTU_256 || mtu > IBV_MTU_4096) {
        return 0;
    }
    return 128u << mtu;
}

/* --- discovery ---------------------------------------------------------- */

/* Error of a verbs call that returns 0 or an errno value (or -1 + errno). */
static int rdma_rc_errno(int rc)
{
    if (rc > 0) {
        return rc;
    }
    return (errno != 0) ? errno : EIO;
}

static const char *rdma_strerror(int err, char *buf, size_t len)
{
    return strerror_r(err, buf, len);
}

static void rdma_log_none(const char *reason, int err)
{
    kvx_log_level_t level = KVX_LOG_INFO;
    char ebuf[128];

    if (atomic_exchange(&rdma_none_logged, 1) != 0) {
        level = KVX_LOG_DEBUG;
    }
    if (err != 0) {
        kvxi_log(level,
                 "no RDMA devices: %s (ibv_get_device_list: %s); "
                 "transfers use TCP and shared memory",
                 reason, rdma_strerror(err, ebuf, sizeof(ebuf)));
    } else {
        kvxi_log(level,
                 "no RDMA devices: %s; transfers use TCP and shared memory",
                 reason);
    }
}

/* Reads a decimal integer from a sysfs file; 0 on success. */
static int rdma_read_long(const char *path, long *value_p)
{
    char buf[32], *end;
    long value;

    if (rdma_ops->read_sysfs(path, buf, sizeof(buf)) <= 0) {
        return -1;
    }
    errno = 0;
    value = strtol(buf, &end, 10);
    if (errno != 0 || end == buf || (*end != '\0' && *end != '\n')) {
        return -1;
    }
    *value_p = value;
    return 0;
}

static void rdma_read_numa(kvx_rdma_device_t *d)
{
    char path[128 + KVX_RDMA_NAME_MAX];
    long node;

    /* Kernel names never hold '/'; refuse one rather than leave sysfs. */
    if (strchr(d->name, '/') != NULL || d->name[0] == '.') {
        return;
    }
    snprintf(path, sizeof(path), "/sys/class/infiniband/%s/device/numa_node",
             d->name);
    if (rdma_read_long(path, &node) != 0 || node < 0 ||
        node >= RDMA_NUMA_NODES_MAX) {
        return;
    }
    d->numa_node = (int)node;
    d->field_mask |= KVX_RDMA_DEVICE_FIELD_NUMA_NODE;
}

static int rdma_gid_is_ipv4(const union ibv_gid *gid)
{
    static const uint8_t prefix[12] = {0, 0, 0, 0, 0,    0,
                                       0, 0, 0, 0, 0xff, 0xff};

    return memcmp(gid->raw, prefix, sizeof(prefix)) == 0;
}

/* InfiniBand: GID 0. RoCE: the first IPv4-mapped GID (what RoCE v2 routes
 * by) among the first few, else GID 0. Failures only leave the GID out. */
static void rdma_read_gid(struct ibv_context *ctx, kvx_rdma_port_t *port,
                          const struct ibv_port_attr *attr)
{
    uint8_t port_num = (uint8_t)port->port_num;
    union ibv_gid gid;
    int scan = 1;

    if (port->link_layer == KVX_RDMA_LINK_ETHERNET) {
        scan = attr->gid_tbl_len < RDMA_GID_SCAN_MAX ? attr->gid_tbl_len
                                                     : RDMA_GID_SCAN_MAX;
    }
    if (scan < 1 || rdma_ops->query_gid(ctx, port_num, 0, &gid) != 0) {
        return;
    }
    memcpy(port->gid, gid.raw, sizeof(port->gid));
    port->field_mask |= KVX_RDMA_PORT_FIELD_GID;
    for (int i = 1; i < scan && !rdma_gid_is_ipv4(&gid); i++) {
        if (rdma_ops->query_gid(ctx, port_num, i, &gid) != 0) {
            break;
        }
        if (rdma_gid_is_ipv4(&gid)) {
            memcpy(port->gid, gid.raw, sizeof(port->gid));
            port->gid_index = (uint32_t)i;
        }
    }
}

static void rdma_describe_port(struct ibv_context *ctx,
                               const kvx_rdma_device_t *d,
                               kvx_rdma_port_t *port, uint32_t port_num)
{
    struct ibv_port_attr attr;
    char ebuf[128];
    int rc;

    port->port_num = port_num;
    port->rate.speed_name = "unknown";
    snprintf(port->ucx_name, sizeof(port->ucx_name), "%s:%u", d->name,
             port_num);
    memset(&attr, 0, sizeof(attr));
    errno = 0;
    rc = rdma_ops->query_port(ctx, (uint8_t)port_num, &attr);
    if (rc != 0) {
        kvxi_warn("rdma: %s port %u: query failed: %s", d->name, port_num,
                  rdma_strerror(rdma_rc_errno(rc), ebuf, sizeof(ebuf)));
        return;
    }
    port->state = rdma_port_state(attr.state);
    port->link_layer = rdma_link_layer(attr.link_layer);
    port->speed_code = attr.active_speed;
    port->width_code = attr.active_width;
    (void)kvx_rdma_rate_from_codes(port->speed_code, port->width_code,
                                   port->link_layer, &port->rate);
    port->mtu = rdma_mtu_bytes(attr.active_mtu);
    port->lid = (port->link_layer == KVX_RDMA_LINK_ETHERNET) ? 0 : attr.lid;
    port->field_mask |= KVX_RDMA_PORT_FIELD_ATTR;
    rdma_read_gid(ctx, port, &attr);
}

static void rdma_describe(struct ibv_device *dev, kvx_rdma_device_t *d)
{
    struct ibv_device_attr attr;
    struct ibv_context *ctx;
    const char *name;
    char ebuf[128];
    uint64_t guid;
    int rc;

    memset(d, 0, sizeof(*d));
    d->numa_node = -1;
    name = rdma_ops->get_device_name(dev);
    snprintf(d->name, sizeof(d->name), "%s", name != NULL ? name : "?");
    guid = be64toh(rdma_ops->get_device_guid(dev));
    if (guid != 0) {
        d->node_guid = guid;
        d->field_mask |= KVX_RDMA_DEVICE_FIELD_NODE_GUID;
    }
    rdma_read_numa(d);

    errno = 0;
    ctx = rdma_ops->open_device(dev);
    if (ctx == NULL) {
        kvxi_warn("rdma: cannot open %s: %s; listed without ports", d->name,
                  rdma_strerror(errno != 0 ? errno : EIO, ebuf, sizeof(ebuf)));
        return;
    }
    memset(&attr, 0, sizeof(attr));
    errno = 0;
    rc = rdma_ops->query_device(ctx, &attr);
    if (rc != 0) {
        kvxi_warn("rdma: cannot query %s: %s; listed without ports", d->name,
                  rdma_strerror(rdma_rc_errno(rc), ebuf, sizeof(ebuf)));
        goto out_close;
    }
    d->port_count = attr.phys_port_cnt;
    d->n_ports =
        d->port_count < KVX_RDMA_PORTS_MAX ? d->port_count : KVX_RDMA_PORTS_MAX;
    for (uint32_t i = 0; i < d->n_ports; i++) {
        rdma_describe_port(ctx, d, &d->ports[i], i + 1);
    }
    d->field_mask |= KVX_RDMA_DEVICE_FIELD_PORTS;

out_close:
    rdma_ops->close_device(ctx);
}

/* Errors of ibv_get_device_list() that mean "this host has no RDMA". */
static const char *rdma_absent_reason(int err)
{
    switch (err) {
    case ENOSYS: return "the kernel has no RDMA (InfiniBand) support";
    case ENODEV:
    case ENOENT:
    case ENXIO:
    case EOPNOTSUPP:
    case EAFNOSUPPORT: return "no RDMA driver or device";
    }
    return NULL;
}

kvx_status_t kvx_rdma_discover(kvx_rdma_device_t *devs, size_t max, size_t *n_p)
{
    struct ibv_device **list;
    const char *reason;
    char ebuf[128];
    int num = 0, err;

    if (n_p == NULL || (devs == NULL && max != 0)) {
        return KVX_ERR_INVALID_PARAM;
    }
    errno = 0;
    list = rdma_ops->get_device_list(&num);
    if (list == NULL) {
        err = errno;
        reason = (err == 0) ? "libibverbs lists none" : rdma_absent_reason(err);
        if (reason == NULL) {
            kvxi_error("rdma: cannot list devices: %s",
                       rdma_strerror(err, ebuf, sizeof(ebuf)));
            return (err == ENOMEM) ? KVX_ERR_NO_MEMORY : KVX_ERR_IO;
        }
        rdma_log_none(reason, err);
        *n_p = 0;
        return KVX_OK;
    }
    if (num <= 0) {
        rdma_ops->free_device_list(list);
        rdma_log_none("libibverbs lists none", 0);
        *n_p = 0;
        return KVX_OK;
    }
    for (size_t i = 0; i < max && i < (size_t)num; i++) {
        rdma_describe(list[i], &devs[i]);
    }
    rdma_ops->free_device_list(list);
    *n_p = (size_t)num;
    return KVX_OK;
}

/* --- uses of the list --------------------------------------------------- */

static int rdma_port_active(const kvx_rdma_device_t *d, uint32_t i)
{
    return (d->field_mask & KVX_RDMA_DEVICE_FIELD_PORTS) && i < d->n_ports &&
           i < KVX_RDMA_PORTS_MAX &&
           (d->ports[i].field_mask & KVX_RDMA_PORT_FIELD_ATTR) &&
           d->ports[i].state == KVX_RDMA_PORT_ACTIVE;
}

double kvx_rdma_wire_gbps(const kvx_rdma_device_t *devs, size_t n)
{
    uint32_t best = 0;

    if (devs == NULL) {
        return 0.0;
    }
    for (size_t d = 0; d < n; d++) {
        for (uint32_t i = 0; i < KVX_RDMA_PORTS_MAX; i++) {
            if (rdma_port_active(&devs[d], i) &&
                devs[d].ports[i].rate.data_mbps > best) {
                best = devs[d].ports[i].rate.data_mbps;
            }
        }
    }
    return best / 1000.0;
}

/* NUMA distances from one node (its sysfs distance row). */
typedef struct rdma_numa_row {
    int node;
    int n;
    int dist[RDMA_NUMA_NODES_MAX];
} rdma_numa_row_t;

static void rdma_numa_row_read(rdma_numa_row_t *row, int node)
{
    char path[96], buf[RDMA_NUMA_NODES_MAX * 8], *p, *end;
    long v;

    row->node = node;
    row->n = 0;
    if (node < 0) {
        return;
    }
    snprintf(path, sizeof(path), "/sys/devices/system/node/node%d/distance",
             node);
    if (rdma_ops->read_sysfs(path, buf, sizeof(buf)) <= 0) {
        return;
    }
    p = buf;
    while (row->n < RDMA_NUMA_NODES_MAX) {
        errno = 0;
        v = strtol(p, &end, 10);
        if (end == p || errno != 0 || v < 0 || v > INT_MAX / 4) {
            break;
        }
        row->dist[row->n++] = (int)v;
        p = end;
    }
}

static int rdma_numa_distance(const rdma_numa_row_t *row, int dev_node)
{
    if (row->node < 0) {
        return RDMA_DIST_LOCAL; /* the pool's node is unknown: all equal */
    }
    if (dev_node < 0) {
        return RDMA_DIST_UNKNOWN;
    }
    if (dev_node == row->node) {
        return RDMA_DIST_LOCAL;
    }
    return dev_node < row->n ? row->dist[dev_node] : RDMA_DIST_UNLISTED;
}

static int rdma_append(char *buf, size_t len, size_t *pos_p, const char *name)
{
    size_t need = strlen(name) + (*pos_p > 0 ? 1 : 0);

    if (need >= len - *pos_p) {
        return -1;
    }
    snprintf(buf + *pos_p, len - *pos_p, "%s%s", *pos_p > 0 ? "," : "", name);
    *pos_p += need;
    return 0;
}

kvx_status_t kvx_rdma_pick_ucx_devices(const kvx_rdma_device_t *devs, size_t n,
                                       int numa_node, char *buf, size_t len)
{
    rdma_numa_row_t row_mem, *row = &row_mem;
    int nearest = INT_MAX, found;
    uint64_t prev = UINT64_MAX;
    uint32_t rate;
    size_t pos = 0;

    if (buf == NULL || len == 0 || (devs == NULL && n != 0)) {
        return KVX_ERR_INVALID_PARAM;
    }
    buf[0] = '\0';
    rdma_numa_row_read(row, numa_node);

    for (size_t d = 0; d < n; d++) {
        for (uint32_t i = 0; i < KVX_RDMA_PORTS_MAX; i++) {
            int dist = rdma_numa_distance(row, devs[d].numa_node);

            if (rdma_port_active(&devs[d], i) && dist < nearest) {
                nearest = dist;
            }
        }
    }
    /* The nearest active ports, fastest first, discovery order on ties. */
    for (;;) {
        found = 0;
        rate = 0;
        for (size_t d = 0; d < n; d++) {
            for (uint32_t i = 0; i < KVX_RDMA_PORTS_MAX; i++) {
                uint32_t r = devs[d].ports[i].rate.data_mbps;

                if (rdma_port_active(&devs[d], i) &&
                    rdma_numa_distance(row, devs[d].numa_node) == nearest &&
                    r < prev && (!found || r > rate)) {
                    rate = r;
                    found = 1;
                }
            }
        }
        if (!found) {
            break;
        }
        for (size_t d = 0; d < n; d++) {
            for (uint32_t i = 0; i < KVX_RDMA_PORTS_MAX; i++) {
                if (rdma_port_active(&devs[d], i) &&
                    rdma_numa_distance(row, devs[d].numa_node) == nearest &&
                    devs[d].ports[i].rate.data_mbps == rate &&
                    rdma_append(buf, len, &pos, devs[d].ports[i].ucx_name) !=
                        0) {
                    buf[0] = '\0';
                    return KVX_ERR_NO_SPACE;
                }
            }
        }
        prev = rate;
    }
    return KVX_OK;
}
