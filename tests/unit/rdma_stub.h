/*
 * A stub verbs layer for test_rdma.c (as SPDK stubs ibv_*): fake devices,
 * ports and GID tables, failures on demand, a fake sysfs for numa_node and
 * NUMA distances, counters that catch leaked device lists and contexts, and
 * a log capture. Include once per test binary, after ut.h.
 */
#ifndef KVX_TEST_RDMA_STUB_H
#define KVX_TEST_RDMA_STUB_H

#include "ut.h"

#include <kvx/kvx.h>

#include <endian.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "rdma_int.h"

/* --- stub verbs layer ---------------------------------------------------- */

#define STUB_DEVS_MAX 8
#define STUB_PORTS_MAX 8
#define STUB_GIDS_MAX 4
#define STUB_NODES_MAX 4
#define STUB_NO_NUMA (-100) /* no numa_node file */

typedef struct stub_port {
    int fail; /* query_port returns this errno */
    struct ibv_port_attr attr;
    int n_gids;
    union ibv_gid gids[STUB_GIDS_MAX];
} stub_port_t;

typedef struct stub_dev {
    struct ibv_device dev; /* first: a device pointer is a stub pointer */
    struct ibv_context ctx;
    uint64_t guid;
    int numa;             /* STUB_NO_NUMA: no sysfs file */
    const char *numa_raw; /* if set, the file's text instead of numa */
    int open_fail;        /* errno of a failing open_device */
    int query_fail;       /* errno of a failing query_device */
    uint8_t n_ports;
    stub_port_t ports[STUB_PORTS_MAX];
} stub_dev_t;

static struct {
    int list_errno; /* != 0: get_device_list fails with it */
    int n_devs;
    stub_dev_t devs[STUB_DEVS_MAX];
    struct ibv_device *list[STUB_DEVS_MAX + 1];
    int lists_out; /* get_device_list - free_device_list */
    int opens_out; /* open_device - close_device */
    int opens;     /* open_device calls */
    const char *distance[STUB_NODES_MAX]; /* sysfs distance rows */
} stub;

static stub_dev_t *stub_of_dev(struct ibv_device *device)
{
    return (stub_dev_t *)(void *)((char *)device - offsetof(stub_dev_t, dev));
}

static stub_dev_t *stub_of_ctx(struct ibv_context *context)
{
    return stub_of_dev(context->device);
}

static struct ibv_device **stub_get_device_list(int *num_devices)
{
    if (stub.list_errno != 0) {
        errno = stub.list_errno;
        return NULL;
    }
    for (int i = 0; i < stub.n_devs; i++) {
        stub.list[i] = &stub.devs[i].dev;
    }
    stub.list[stub.n_devs] = NULL;
    stub.lists_out++;
    *num_devices = stub.n_devs;
    return stub.list;
}

static void stub_free_device_list(struct ibv_device **list)
{
    CU_ASSERT_PTR_EQUAL(list, stub.list);
    stub.lists_out--;
}

static const char *stub_get_device_name(struct ibv_device *device)
{
    return device->name;
}

static __be64 stub_get_device_guid(struct ibv_device *device)
{
    return htobe64(stub_of_dev(device)->guid);
}

static struct ibv_context *stub_open_device(struct ibv_device *device)
{
    stub_dev_t *sd = stub_of_dev(device);

    stub.opens++;
    if (sd->open_fail != 0) {
        errno = sd->open_fail;
        return NULL;
    }
    sd->ctx.device = device;
    stub.opens_out++;
    return &sd->ctx;
}

static int stub_close_device(struct ibv_context *context)
{
    CU_ASSERT_PTR_NOT_NULL(context->device);
    stub.opens_out--;
    return 0;
}

static int stub_query_device(struct ibv_context *context,
                             struct ibv_device_attr *attr)
{
    stub_dev_t *sd = stub_of_ctx(context);

    if (sd->query_fail != 0) {
        return sd->query_fail;
    }
    memset(attr, 0, sizeof(*attr));
    attr->node_guid = htobe64(sd->guid);
    attr->phys_port_cnt = sd->n_ports;
    return 0;
}

static int stub_query_port(struct ibv_context *context, uint8_t port_num,
                           struct ibv_port_attr *attr)
{
    stub_dev_t *sd = stub_of_ctx(context);

    if (port_num < 1 || port_num > sd->n_ports) {
        return EINVAL;
    }
    if (sd->ports[port_num - 1].fail != 0) {
        return sd->ports[port_num - 1].fail;
    }
    *attr = sd->ports[port_num - 1].attr;
    return 0;
}

static int stub_query_gid(struct ibv_context *context, uint8_t port_num,
                          int index, union ibv_gid *gid)
{
    stub_dev_t *sd = stub_of_ctx(context);

    if (port_num < 1 || port_num > sd->n_ports || index < 0 ||
        index >= sd->ports[port_num - 1].n_gids) {
        return EINVAL;
    }
    *gid = sd->ports[port_num - 1].gids[index];
    return 0;
}

static ssize_t stub_put(char *buf, size_t len, const char *text)
{
    int n = snprintf(buf, len, "%s", text);

    return n < (int)len ? n : (ssize_t)len - 1;
}

static ssize_t stub_read_sysfs(const char *path, char *buf, size_t len)
{
    char expect[256], num[16];

    for (int i = 0; i < stub.n_devs; i++) {
        const stub_dev_t *sd = &stub.devs[i];

        snprintf(expect, sizeof(expect),
                 "/sys/class/infiniband/%s/device/numa_node", sd->dev.name);
        if (strcmp(path, expect) != 0) {
            continue;
        }
        if (sd->numa_raw != NULL) {
            return stub_put(buf, len, sd->numa_raw);
        }
        if (sd->numa == STUB_NO_NUMA) {
            break;
        }
        snprintf(num, sizeof(num), "%d\n", sd->numa);
        return stub_put(buf, len, num);
    }
    for (int node = 0; node < STUB_NODES_MAX; node++) {
        snprintf(expect, sizeof(expect),
                 "/sys/devices/system/node/node%d/distance", node);
        if (strcmp(path, expect) == 0 && stub.distance[node] != NULL) {
            return stub_put(buf, len, stub.distance[node]);
        }
    }
    errno = ENOENT;
    return -1;
}

static const kvxi_rdma_ops_t stub_ops = {
    .get_device_list = stub_get_device_list,
    .free_device_list = stub_free_device_list,
    .get_device_name = stub_get_device_name,
    .get_device_guid = stub_get_device_guid,
    .open_device = stub_open_device,
    .close_device = stub_close_device,
    .query_device = stub_query_device,
    .query_port = stub_query_port,
    .query_gid = stub_query_gid,
    .read_sysfs = stub_read_sysfs,
};

/* --- log capture ---------------------------------------------------------- */

static int n_log[KVX_LOG_TRACE + 1];
static char last_log[KVX_LOG_TRACE + 1][256];

static void capture_log(kvx_log_level_t level, const char *msg, void *arg)
{
    (void)arg;
    n_log[level]++;
    snprintf(last_log[level], sizeof(last_log[level]), "%s", msg);
}

static void stub_reset(void)
{
    memset(&stub, 0, sizeof(stub));
    memset(n_log, 0, sizeof(n_log));
    memset(last_log, 0, sizeof(last_log));
    kvxi_rdma_set_ops(&stub_ops);
    kvx_log_set_cb(capture_log, NULL, KVX_LOG_INFO);
}

/* Checks that every list and context the stubs handed out came back. */
static void stub_check_balanced(void)
{
    CU_ASSERT_EQUAL(stub.lists_out, 0);
    CU_ASSERT_EQUAL(stub.opens_out, 0);
}

static void stub_done(void)
{
    stub_check_balanced();
    kvxi_rdma_set_ops(NULL);
    kvx_log_set_cb(NULL, NULL, KVX_LOG_INFO);
}

static stub_dev_t *stub_add_dev(const char *name, uint64_t guid, int numa,
                                uint8_t n_ports)
{
    stub_dev_t *sd = &stub.devs[stub.n_devs++];

    snprintf(sd->dev.name, sizeof(sd->dev.name), "%s", name);
    sd->guid = guid;
    sd->numa = numa;
    sd->n_ports = n_ports;
    for (int i = 0; i < n_ports; i++) {
        sd->ports[i].attr.state = IBV_PORT_DOWN;
        sd->ports[i].attr.link_layer = IBV_LINK_LAYER_INFINIBAND;
        sd->ports[i].attr.active_speed = 1;
        sd->ports[i].attr.active_width = 1;
        sd->ports[i].attr.active_mtu = IBV_MTU_2048;
    }
    return sd;
}

static void stub_set_port(stub_dev_t *sd, int port_num,
                          enum ibv_port_state state, uint8_t link_layer,
                          uint8_t speed, uint8_t width)
{
    struct ibv_port_attr *a = &sd->ports[port_num - 1].attr;

    a->state = state;
    a->link_layer = link_layer;
    a->active_speed = speed;
    a->active_width = width;
}

/* An IPv6 GID from its 16 bytes given as two 64-bit halves. */
static union ibv_gid make_gid(uint64_t hi, uint64_t lo)
{
    union ibv_gid gid;

    gid.global.subnet_prefix = htobe64(hi);
    gid.global.interface_id = htobe64(lo);
    return gid;
}

#endif /* KVX_TEST_RDMA_STUB_H */
