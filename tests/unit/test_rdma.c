/*
 * Unit tests for libkvx/rdma.c. The verbs layer is replaced by stubs (as
 * SPDK stubs ibv_*), so every RDMA branch runs on hosts without a NIC; one
 * test runs the real libibverbs of this host.
 */
#include "ut.h"
#include "rdma_stub.h"

#include <kvx/kvx.h>

#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

/* --- no devices ----------------------------------------------------------- */

static void test_rdma_none_enosys(void)
{
    kvx_rdma_device_t devs[2];
    size_t n = 99;

    stub_reset();
    stub.list_errno = ENOSYS;
    CU_ASSERT_EQUAL(kvx_rdma_discover(devs, 2, &n), KVX_OK);
    CU_ASSERT_EQUAL(n, 0);
    CU_ASSERT_EQUAL(n_log[KVX_LOG_INFO], 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(last_log[KVX_LOG_INFO],
                                  "no RDMA devices: the kernel has no RDMA"));
    CU_ASSERT_PTR_NOT_NULL(
        strstr(last_log[KVX_LOG_INFO], "Function not implemented"));
    /* Once per process: later calls stay below info level. */
    n = 99;
    CU_ASSERT_EQUAL(kvx_rdma_discover(NULL, 0, &n), KVX_OK);
    CU_ASSERT_EQUAL(n, 0);
    CU_ASSERT_EQUAL(n_log[KVX_LOG_INFO], 1);
    CU_ASSERT_EQUAL(n_log[KVX_LOG_WARN] + n_log[KVX_LOG_ERROR], 0);
    CU_ASSERT_EQUAL(kvx_rdma_wire_gbps(devs, 0), 0.0);
    stub_done();
}

static void test_rdma_none_enodev(void)
{
    size_t n = 99;

    stub_reset();
    stub.list_errno = ENODEV;
    CU_ASSERT_EQUAL(kvx_rdma_discover(NULL, 0, &n), KVX_OK);
    CU_ASSERT_EQUAL(n, 0);
    CU_ASSERT_EQUAL(n_log[KVX_LOG_INFO], 1);
    CU_ASSERT_PTR_NOT_NULL(
        strstr(last_log[KVX_LOG_INFO], "no RDMA devices: no RDMA driver"));
    stub_done();
}

static void test_rdma_none_empty_list(void)
{
    kvx_rdma_device_t devs[1];
    size_t n = 99;

    stub_reset();
    CU_ASSERT_EQUAL(kvx_rdma_discover(devs, 1, &n), KVX_OK);
    CU_ASSERT_EQUAL(n, 0);
    CU_ASSERT_EQUAL(stub.opens, 0);
    CU_ASSERT_EQUAL(n_log[KVX_LOG_INFO], 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(last_log[KVX_LOG_INFO],
                                  "no RDMA devices: libibverbs lists none"));
    stub_done();
}

static void test_rdma_list_error(void)
{
    size_t n = 99;

    stub_reset();
    stub.list_errno = ENOMEM;
    CU_ASSERT_EQUAL(kvx_rdma_discover(NULL, 0, &n), KVX_ERR_NO_MEMORY);
    stub.list_errno = EACCES;
    CU_ASSERT_EQUAL(kvx_rdma_discover(NULL, 0, &n), KVX_ERR_IO);
    CU_ASSERT_EQUAL(n, 99); /* not written on failure */
    CU_ASSERT_EQUAL(n_log[KVX_LOG_ERROR], 2);
    CU_ASSERT_PTR_NOT_NULL(
        strstr(last_log[KVX_LOG_ERROR], "cannot list devices"));
    CU_ASSERT_EQUAL(n_log[KVX_LOG_INFO], 0);
    stub_done();
}

static void test_rdma_invalid_param(void)
{
    kvx_rdma_device_t devs[1];
    size_t n = 0;

    stub_reset();
    CU_ASSERT_EQUAL(kvx_rdma_discover(devs, 1, NULL), KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_rdma_discover(NULL, 1, &n), KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(stub.lists_out + stub.opens, 0);
    stub_done();
}

/* --- devices and ports ---------------------------------------------------- */

static void test_rdma_ib_two_ports(void)
{
    kvx_rdma_device_t devs[2];
    const kvx_rdma_port_t *p;
    stub_dev_t *sd;
    size_t n = 0;

    stub_reset();
    sd = stub_add_dev("mlx5_0", 0x0002c90300a1b2c3ull, 1, 2);
    stub_set_port(sd, 1, IBV_PORT_ACTIVE, IBV_LINK_LAYER_INFINIBAND, 64, 2);
    sd->ports[0].attr.active_mtu = IBV_MTU_4096;
    sd->ports[0].attr.lid = 7;
    sd->ports[0].attr.gid_tbl_len = 1;
    sd->ports[0].n_gids = 1;
    sd->ports[0].gids[0] =
        make_gid(0xfe80000000000000ull, 0x0002c90300a1b2c4ull);

    CU_ASSERT_EQUAL_FATAL(kvx_rdma_discover(devs, 2, &n), KVX_OK);
    CU_ASSERT_EQUAL_FATAL(n, 1);
    CU_ASSERT_STRING_EQUAL(devs[0].name, "mlx5_0");
    CU_ASSERT_EQUAL(devs[0].field_mask, KVX_RDMA_DEVICE_FIELD_NODE_GUID |
                                            KVX_RDMA_DEVICE_FIELD_NUMA_NODE |
                                            KVX_RDMA_DEVICE_FIELD_PORTS);
    CU_ASSERT_EQUAL(devs[0].node_guid, 0x0002c90300a1b2c3ull);
    CU_ASSERT_EQUAL(devs[0].numa_node, 1);
    CU_ASSERT_EQUAL(devs[0].port_count, 2);
    CU_ASSERT_EQUAL_FATAL(devs[0].n_ports, 2);

    p = &devs[0].ports[0];
    CU_ASSERT_EQUAL(p->field_mask,
                    KVX_RDMA_PORT_FIELD_ATTR | KVX_RDMA_PORT_FIELD_GID);
    CU_ASSERT_EQUAL(p->port_num, 1);
    CU_ASSERT_EQUAL(p->state, KVX_RDMA_PORT_ACTIVE);
    CU_ASSERT_EQUAL(p->link_layer, KVX_RDMA_LINK_INFINIBAND);
    CU_ASSERT_EQUAL(p->speed_code, 64);
    CU_ASSERT_EQUAL(p->width_code, 2);
    CU_ASSERT_STRING_EQUAL(p->rate.speed_name, "HDR");
    CU_ASSERT_EQUAL(p->rate.lanes, 4);
    CU_ASSERT_EQUAL(p->rate.rate_mbps, 200000);
    CU_ASSERT_EQUAL(p->rate.data_mbps, 200000);
    CU_ASSERT_EQUAL(p->mtu, 4096);
    CU_ASSERT_EQUAL(p->lid, 7);
    CU_ASSERT_EQUAL(p->gid_index, 0);
    CU_ASSERT_EQUAL(p->gid[0], 0xfe);
    CU_ASSERT_EQUAL(p->gid[15], 0xc4);
    CU_ASSERT_STRING_EQUAL(p->ucx_name, "mlx5_0:1");

    p = &devs[0].ports[1];
    CU_ASSERT_EQUAL(p->port_num, 2);
    CU_ASSERT_EQUAL(p->state, KVX_RDMA_PORT_DOWN);
    CU_ASSERT_EQUAL(p->mtu, 2048);
    CU_ASSERT_STRING_EQUAL(p->ucx_name, "mlx5_0:2");
    CU_ASSERT_EQUAL(p->field_mask, KVX_RDMA_PORT_FIELD_ATTR);

    CU_ASSERT_DOUBLE_EQUAL(kvx_rdma_wire_gbps(devs, n), 200.0, 1e-9);
    CU_ASSERT_EQUAL(n_log[KVX_LOG_WARN] + n_log[KVX_LOG_ERROR], 0);
    CU_ASSERT_EQUAL(n_log[KVX_LOG_INFO], 0);
    stub_done();
}

static void test_rdma_roce_port(void)
{
    kvx_rdma_device_t devs[1];
    const kvx_rdma_port_t *p;
    stub_dev_t *sd;
    size_t n = 0;

    stub_reset();
    sd = stub_add_dev("mlx5_4", 0x1070fd0300112233ull, 0, 1);
    stub_set_port(sd, 1, IBV_PORT_ACTIVE, IBV_LINK_LAYER_ETHERNET, 32, 2);
    sd->ports[0].attr.active_mtu = IBV_MTU_1024;
    sd->ports[0].attr.lid = 5; /* meaningless on Ethernet: reported 0 */
    sd->ports[0].attr.gid_tbl_len = 4;
    sd->ports[0].n_gids = 4;
    sd->ports[0].gids[0] =
        make_gid(0xfe80000000000000ull, 0x1270fdfffe112233ull);
    sd->ports[0].gids[1] = sd->ports[0].gids[0]; /* RoCE v2 twin */
    sd->ports[0].gids[2] = make_gid(0, 0x0000ffffc0a80105ull);
    sd->ports[0].gids[3] = sd->ports[0].gids[2];

    CU_ASSERT_EQUAL_FATAL(kvx_rdma_discover(devs, 1, &n), KVX_OK);
    CU_ASSERT_EQUAL_FATAL(n, 1);
    p = &devs[0].ports[0];
    CU_ASSERT_EQUAL(p->link_layer, KVX_RDMA_LINK_ETHERNET);
    CU_ASSERT_EQUAL(p->state, KVX_RDMA_PORT_ACTIVE);
    CU_ASSERT_EQUAL(p->rate.rate_mbps, 100000); /* 100GbE as EDR 4x */
    CU_ASSERT_EQUAL(p->rate.data_mbps, 100000);
    CU_ASSERT_EQUAL(p->mtu, 1024);
    CU_ASSERT_EQUAL(p->lid, 0);
    CU_ASSERT(p->field_mask & KVX_RDMA_PORT_FIELD_GID);
    CU_ASSERT_EQUAL(p->gid_index, 2); /* the IPv4-mapped one */
    CU_ASSERT_EQUAL(p->gid[10], 0xff);
    CU_ASSERT_EQUAL(p->gid[11], 0xff);
    CU_ASSERT_EQUAL(p->gid[12], 192);
    CU_ASSERT_EQUAL(p->gid[15], 5);
    CU_ASSERT_DOUBLE_EQUAL(kvx_rdma_wire_gbps(devs, n), 100.0, 1e-9);

    /* Without an IPv4 GID, index 0; a failing GID query leaves it out. */
    stub_reset();
    sd = stub_add_dev("rxe0", 0, 0, 2);
    stub_set_port(sd, 1, IBV_PORT_ACTIVE, IBV_LINK_LAYER_ETHERNET, 4, 2);
    sd->ports[0].attr.gid_tbl_len = 2;
    sd->ports[0].n_gids = 1; /* index 1 fails */
    sd->ports[0].gids[0] = make_gid(0xfe80000000000000ull, 1);
    stub_set_port(sd, 2, IBV_PORT_ACTIVE, IBV_LINK_LAYER_ETHERNET, 4, 2);
    sd->ports[1].attr.gid_tbl_len = 2; /* n_gids 0: every query fails */
    CU_ASSERT_EQUAL_FATAL(kvx_rdma_discover(devs, 1, &n), KVX_OK);
    CU_ASSERT_EQUAL(devs[0].field_mask & KVX_RDMA_DEVICE_FIELD_NODE_GUID, 0);
    CU_ASSERT_EQUAL(devs[0].node_guid, 0);
    p = &devs[0].ports[0];
    CU_ASSERT(p->field_mask & KVX_RDMA_PORT_FIELD_GID);
    CU_ASSERT_EQUAL(p->gid_index, 0);
    CU_ASSERT_EQUAL(p->gid[0], 0xfe);
    CU_ASSERT_EQUAL(p->rate.rate_mbps, 40000); /* 40GbE as QDR 4x */
    CU_ASSERT_EQUAL(p->rate.data_mbps, 40000); /* no 8b/10b on Ethernet */
    p = &devs[0].ports[1];
    CU_ASSERT_EQUAL(p->field_mask, KVX_RDMA_PORT_FIELD_ATTR);
    stub_done();
}

static void test_rdma_open_failure(void)
{
    kvx_rdma_device_t devs[4];
    stub_dev_t *sd;
    size_t n = 0;

    stub_reset();
    sd = stub_add_dev("mlx5_0", 0x11, 0, 1);
    stub_set_port(sd, 1, IBV_PORT_ACTIVE, IBV_LINK_LAYER_INFINIBAND, 32, 2);
    sd = stub_add_dev("mlx5_1", 0x22, 0, 1);
    sd->open_fail = EACCES;
    sd = stub_add_dev("mlx5_2", 0x33, 1, 1);
    sd->query_fail = EIO;
    sd = stub_add_dev("mlx5_3", 0x44, 1, 1);
    stub_set_port(sd, 1, IBV_PORT_ACTIVE, IBV_LINK_LAYER_INFINIBAND, 128, 2);

    CU_ASSERT_EQUAL_FATAL(kvx_rdma_discover(devs, 4, &n), KVX_OK);
    CU_ASSERT_EQUAL_FATAL(n, 4);
    CU_ASSERT_EQUAL(stub.opens, 4);
    CU_ASSERT_STRING_EQUAL(devs[1].name, "mlx5_1");
    CU_ASSERT_EQUAL(devs[1].field_mask, KVX_RDMA_DEVICE_FIELD_NODE_GUID |
                                            KVX_RDMA_DEVICE_FIELD_NUMA_NODE);
    CU_ASSERT_EQUAL(devs[1].node_guid, 0x22);
    CU_ASSERT_EQUAL(devs[1].n_ports, 0);
    CU_ASSERT_STRING_EQUAL(devs[2].name, "mlx5_2");
    CU_ASSERT_EQUAL(devs[2].field_mask & KVX_RDMA_DEVICE_FIELD_PORTS, 0);
    CU_ASSERT_EQUAL(devs[2].n_ports, 0);
    CU_ASSERT(devs[0].field_mask & KVX_RDMA_DEVICE_FIELD_PORTS);
    CU_ASSERT(devs[3].field_mask & KVX_RDMA_DEVICE_FIELD_PORTS);
    CU_ASSERT_EQUAL(devs[3].ports[0].rate.rate_mbps, 400000); /* NDR 4x */
    CU_ASSERT_EQUAL(n_log[KVX_LOG_WARN], 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(last_log[KVX_LOG_WARN], "mlx5_2"));
    CU_ASSERT_DOUBLE_EQUAL(kvx_rdma_wire_gbps(devs, n), 400.0, 1e-9);
    stub_done(); /* the queried-but-failed device was closed too */
}

static void test_rdma_query_port_failure(void)
{
    kvx_rdma_device_t devs[1];
    const kvx_rdma_port_t *p;
    stub_dev_t *sd;
    size_t n = 0;

    stub_reset();
    sd = stub_add_dev("mlx5_0", 0x11, 0, 2);
    sd->ports[0].fail = EINVAL;
    stub_set_port(sd, 2, IBV_PORT_ACTIVE, IBV_LINK_LAYER_INFINIBAND, 16, 2);
    CU_ASSERT_EQUAL_FATAL(kvx_rdma_discover(devs, 1, &n), KVX_OK);
    CU_ASSERT_EQUAL_FATAL(devs[0].n_ports, 2);
    p = &devs[0].ports[0];
    CU_ASSERT_EQUAL(p->field_mask, 0);
    CU_ASSERT_EQUAL(p->port_num, 1);
    CU_ASSERT_EQUAL(p->state, KVX_RDMA_PORT_UNKNOWN);
    CU_ASSERT_STRING_EQUAL(p->ucx_name, "mlx5_0:1");
    CU_ASSERT_STRING_EQUAL(p->rate.speed_name, "unknown");
    p = &devs[0].ports[1];
    CU_ASSERT(p->field_mask & KVX_RDMA_PORT_FIELD_ATTR);
    CU_ASSERT_STRING_EQUAL(p->rate.speed_name, "FDR");
    CU_ASSERT_EQUAL(p->rate.rate_mbps, 56000);
    CU_ASSERT_EQUAL(p->rate.data_mbps, 54545);
    CU_ASSERT_EQUAL(n_log[KVX_LOG_WARN], 1);
    CU_ASSERT_PTR_NOT_NULL(
        strstr(last_log[KVX_LOG_WARN], "mlx5_0 port 1: query failed"));
    CU_ASSERT_DOUBLE_EQUAL(kvx_rdma_wire_gbps(devs, n), 54.545, 1e-9);
    stub_done();
}

static void test_rdma_port_codes(void)
{
    kvx_rdma_device_t devs[1];
    const kvx_rdma_device_t *d = &devs[0];
    stub_dev_t *sd;
    size_t n = 0;

    stub_reset();
    sd = stub_add_dev("qib0", 0x11, 0, 6); /* more ports than described */
    stub_set_port(sd, 1, IBV_PORT_ACTIVE_DEFER, IBV_LINK_LAYER_UNSPECIFIED, 4,
                  2);
    stub_set_port(sd, 2, IBV_PORT_INIT, 7, 0, 0);
    stub_set_port(sd, 3, IBV_PORT_ARMED, IBV_LINK_LAYER_INFINIBAND, 2, 1);
    stub_set_port(sd, 4, IBV_PORT_NOP, IBV_LINK_LAYER_INFINIBAND, 1, 1);
    sd->ports[1].attr.active_mtu = (enum ibv_mtu)0;
    sd->ports[2].attr.active_mtu = IBV_MTU_256;
    sd->ports[3].attr.active_mtu = (enum ibv_mtu)6;
    CU_ASSERT_EQUAL_FATAL(kvx_rdma_discover(devs, 1, &n), KVX_OK);
    CU_ASSERT_EQUAL(d->port_count, 6);
    CU_ASSERT_EQUAL_FATAL(d->n_ports, KVX_RDMA_PORTS_MAX);
    /* ACTIVE_DEFER is active; an unspecified link layer is InfiniBand. */
    CU_ASSERT_EQUAL(d->ports[0].state, KVX_RDMA_PORT_ACTIVE);
    CU_ASSERT_EQUAL(d->ports[0].link_layer, KVX_RDMA_LINK_INFINIBAND);
    CU_ASSERT_EQUAL(d->ports[0].rate.data_mbps, 32000); /* QDR 4x, 8b/10b */
    CU_ASSERT_EQUAL(d->ports[1].state, KVX_RDMA_PORT_INIT);
    CU_ASSERT_EQUAL(d->ports[1].link_layer, KVX_RDMA_LINK_UNKNOWN);
    CU_ASSERT_STRING_EQUAL(d->ports[1].rate.speed_name, "unknown");
    CU_ASSERT_EQUAL(d->ports[1].rate.rate_mbps, 0);
    CU_ASSERT_EQUAL(d->ports[1].mtu, 0);
    CU_ASSERT_EQUAL(d->ports[2].state, KVX_RDMA_PORT_ARMED);
    CU_ASSERT_EQUAL(d->ports[2].mtu, 256);
    CU_ASSERT_EQUAL(d->ports[2].rate.rate_mbps, 5000); /* DDR 1x */
    CU_ASSERT_EQUAL(d->ports[3].state, KVX_RDMA_PORT_UNKNOWN);
    CU_ASSERT_EQUAL(d->ports[3].mtu, 0);
    CU_ASSERT_STRING_EQUAL(d->ports[3].ucx_name, "qib0:4");
    stub_done();
}

static void test_rdma_numa_from_sysfs(void)
{
    kvx_rdma_device_t devs[5];
    stub_dev_t *sd;
    size_t n = 0;

    stub_reset();
    stub_add_dev("mlx5_0", 1, 0, 0);
    stub_add_dev("mlx5_1", 2, 3, 0);
    stub_add_dev("mlx5_2", 3, STUB_NO_NUMA, 0);
    sd = stub_add_dev("mlx5_3", 4, 0, 0);
    sd->numa_raw = "-1\n"; /* what a single-node machine reports */
    sd = stub_add_dev("mlx5_4", 5, 0, 0);
    sd->numa_raw = "x1\n";
    CU_ASSERT_EQUAL_FATAL(kvx_rdma_discover(devs, 5, &n), KVX_OK);
    CU_ASSERT_EQUAL_FATAL(n, 5);
    CU_ASSERT_EQUAL(devs[0].numa_node, 0);
    CU_ASSERT(devs[0].field_mask & KVX_RDMA_DEVICE_FIELD_NUMA_NODE);
    CU_ASSERT_EQUAL(devs[1].numa_node, 3);
    for (int i = 2; i < 5; i++) {
        CU_ASSERT_EQUAL(devs[i].numa_node, -1);
        CU_ASSERT_EQUAL(devs[i].field_mask & KVX_RDMA_DEVICE_FIELD_NUMA_NODE,
                        0);
    }
    /* Zero ports is still a described device. */
    CU_ASSERT(devs[0].field_mask & KVX_RDMA_DEVICE_FIELD_PORTS);
    CU_ASSERT_EQUAL(devs[0].n_ports, 0);
    CU_ASSERT_EQUAL(kvx_rdma_wire_gbps(devs, n), 0.0);
    stub_done();
}

static void test_rdma_more_than_max(void)
{
    kvx_rdma_device_t devs[3];
    char name[16];
    size_t n = 0;

    stub_reset();
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof(name), "mlx5_%d", i);
        stub_add_dev(name, (uint64_t)i + 1, 0, 1);
    }
    memset(&devs[2], 0xa5, sizeof(devs[2]));
    CU_ASSERT_EQUAL_FATAL(kvx_rdma_discover(devs, 2, &n), KVX_OK);
    CU_ASSERT_EQUAL(n, 5);
    CU_ASSERT_EQUAL(stub.opens, 2);
    CU_ASSERT_STRING_EQUAL(devs[0].name, "mlx5_0");
    CU_ASSERT_STRING_EQUAL(devs[1].name, "mlx5_1");
    CU_ASSERT_EQUAL(((unsigned char *)&devs[2])[0], 0xa5); /* untouched */
    stub_check_balanced();

    /* Counting only: nothing is opened. */
    n = 0;
    CU_ASSERT_EQUAL(kvx_rdma_discover(NULL, 0, &n), KVX_OK);
    CU_ASSERT_EQUAL(n, 5);
    CU_ASSERT_EQUAL(stub.opens, 2);
    stub_done();
}

/* --- rates ---------------------------------------------------------------- */

static void test_rdma_rate_table(void)
{
    static const struct {
        uint32_t code;
        const char *name;
        uint32_t lane_mbps;
        uint32_t ib_data_4x; /* InfiniBand data rate of a 4x link */
    } speeds[] = {
        {1, "SDR", 2500, 8000},       {2, "DDR", 5000, 16000},
        {4, "QDR", 10000, 32000},     {8, "FDR10", 10000, 40000},
        {16, "FDR", 14000, 54545},    {32, "EDR", 25000, 100000},
        {64, "HDR", 50000, 200000},   {128, "NDR", 100000, 400000},
        {256, "XDR", 200000, 800000},
    };
    static const struct {
        uint32_t code;
        uint32_t lanes;
    } widths[] = {{1, 1}, {2, 4}, {4, 8}, {8, 12}, {16, 2}};
    static const uint32_t bad_speeds[] = {0, 3, 5, 255, 512};
    static const uint32_t bad_widths[] = {0, 3, 32, 255};
    kvx_rdma_rate_t r;

    for (size_t s = 0; s < sizeof(speeds) / sizeof(speeds[0]); s++) {
        for (size_t w = 0; w < sizeof(widths) / sizeof(widths[0]); w++) {
            uint32_t rate = speeds[s].lane_mbps * widths[w].lanes;
            /* per-lane data rate, rounded down after scaling */
            uint64_t data_kbps_lane = speeds[s].ib_data_4x * 1000ull / 4;

            if (speeds[s].code == 16) {
                data_kbps_lane = 13636364; /* 14.0625 * 64/66 Gbit/s */
            }
            CU_ASSERT_EQUAL(
                kvx_rdma_rate_from_codes(speeds[s].code, widths[w].code,
                                         KVX_RDMA_LINK_INFINIBAND, &r),
                KVX_OK);
            CU_ASSERT_STRING_EQUAL(r.speed_name, speeds[s].name);
            CU_ASSERT_EQUAL(r.lanes, widths[w].lanes);
            CU_ASSERT_EQUAL(r.lane_mbps, speeds[s].lane_mbps);
            CU_ASSERT_EQUAL(r.rate_mbps, rate);
            CU_ASSERT_EQUAL(r.data_mbps,
                            data_kbps_lane * widths[w].lanes / 1000);
            if (widths[w].lanes == 4) {
                CU_ASSERT_EQUAL(r.data_mbps, speeds[s].ib_data_4x);
            }
            CU_ASSERT_EQUAL(
                kvx_rdma_rate_from_codes(speeds[s].code, widths[w].code,
                                         KVX_RDMA_LINK_ETHERNET, &r),
                KVX_OK);
            CU_ASSERT_EQUAL(r.data_mbps, rate);
        }
    }
    /* The generations people quote. */
    CU_ASSERT_EQUAL(
        kvx_rdma_rate_from_codes(64, 2, KVX_RDMA_LINK_INFINIBAND, &r), KVX_OK);
    CU_ASSERT_EQUAL(r.rate_mbps, 200000);
    CU_ASSERT_EQUAL(
        kvx_rdma_rate_from_codes(128, 2, KVX_RDMA_LINK_INFINIBAND, &r), KVX_OK);
    CU_ASSERT_EQUAL(r.rate_mbps, 400000);
    CU_ASSERT_EQUAL(
        kvx_rdma_rate_from_codes(64, 8, KVX_RDMA_LINK_INFINIBAND, &r), KVX_OK);
    CU_ASSERT_EQUAL(r.rate_mbps, 600000); /* HDR 12x */
    CU_ASSERT_EQUAL(
        kvx_rdma_rate_from_codes(128, 16, KVX_RDMA_LINK_INFINIBAND, &r),
        KVX_OK);
    CU_ASSERT_EQUAL(r.rate_mbps, 200000); /* NDR 2x */
    CU_ASSERT_EQUAL(
        kvx_rdma_rate_from_codes(1, 1, KVX_RDMA_LINK_INFINIBAND, &r), KVX_OK);
    CU_ASSERT_EQUAL(r.rate_mbps, 2500);
    CU_ASSERT_EQUAL(r.data_mbps, 2000);
    CU_ASSERT_EQUAL(kvx_rdma_rate_from_codes(1, 1, KVX_RDMA_LINK_UNKNOWN, &r),
                    KVX_OK);
    CU_ASSERT_EQUAL(r.data_mbps, 2000); /* unknown counts as InfiniBand */

    for (size_t i = 0; i < sizeof(bad_speeds) / sizeof(bad_speeds[0]); i++) {
        CU_ASSERT_EQUAL(kvx_rdma_rate_from_codes(bad_speeds[i], 2,
                                                 KVX_RDMA_LINK_INFINIBAND, &r),
                        KVX_ERR_NOT_SUPPORTED);
        CU_ASSERT_STRING_EQUAL(r.speed_name, "unknown");
        CU_ASSERT_EQUAL(r.rate_mbps + r.data_mbps + r.lanes + r.lane_mbps, 0);
    }
    for (size_t i = 0; i < sizeof(bad_widths) / sizeof(bad_widths[0]); i++) {
        CU_ASSERT_EQUAL(kvx_rdma_rate_from_codes(64, bad_widths[i],
                                                 KVX_RDMA_LINK_INFINIBAND, &r),
                        KVX_ERR_NOT_SUPPORTED);
        CU_ASSERT_EQUAL(r.rate_mbps, 0);
    }
    CU_ASSERT_EQUAL(
        kvx_rdma_rate_from_codes(64, 2, KVX_RDMA_LINK_INFINIBAND, NULL),
        KVX_ERR_INVALID_PARAM);
}

static void test_rdma_strings(void)
{
    CU_ASSERT_STRING_EQUAL(kvx_rdma_port_state_string(KVX_RDMA_PORT_ACTIVE),
                           "active");
    CU_ASSERT_STRING_EQUAL(kvx_rdma_port_state_string(KVX_RDMA_PORT_DOWN),
                           "down");
    CU_ASSERT_STRING_EQUAL(kvx_rdma_port_state_string(KVX_RDMA_PORT_INIT),
                           "init");
    CU_ASSERT_STRING_EQUAL(kvx_rdma_port_state_string(KVX_RDMA_PORT_ARMED),
                           "armed");
    CU_ASSERT_STRING_EQUAL(kvx_rdma_port_state_string(KVX_RDMA_PORT_UNKNOWN),
                           "unknown");
    CU_ASSERT_STRING_EQUAL(
        kvx_rdma_port_state_string((kvx_rdma_port_state_t)42), "unknown");
    CU_ASSERT_STRING_EQUAL(kvx_rdma_link_layer_string(KVX_RDMA_LINK_INFINIBAND),
                           "InfiniBand");
    CU_ASSERT_STRING_EQUAL(kvx_rdma_link_layer_string(KVX_RDMA_LINK_ETHERNET),
                           "Ethernet");
    CU_ASSERT_STRING_EQUAL(kvx_rdma_link_layer_string(KVX_RDMA_LINK_UNKNOWN),
                           "unknown");
    CU_ASSERT_STRING_EQUAL(kvx_rdma_link_layer_string((kvx_rdma_link_layer_t)9),
                           "unknown");
}

/* --- UCX device choice ---------------------------------------------------- */

/* Four devices on NUMA nodes 0, 1, 1 and unknown; see each line. */
static size_t pick_setup(kvx_rdma_device_t *devs, size_t max)
{
    stub_dev_t *sd;
    size_t n = 0;

    stub_reset();
    stub.distance[0] = "10 20 30\n";
    stub.distance[1] = "20 10 30\n";
    stub.distance[2] = "30 20 10\n";
    sd = stub_add_dev("mlx5_0", 1, 0, 1); /* node 0: HDR 4x */
    stub_set_port(sd, 1, IBV_PORT_ACTIVE, IBV_LINK_LAYER_INFINIBAND, 64, 2);
    sd = stub_add_dev("mlx5_1", 2, 1, 1); /* node 1: NDR 4x */
    stub_set_port(sd, 1, IBV_PORT_ACTIVE, IBV_LINK_LAYER_INFINIBAND, 128, 2);
    sd = stub_add_dev("mlx5_2", 3, 1, 2); /* node 1: EDR 4x + a down port */
    stub_set_port(sd, 1, IBV_PORT_ACTIVE, IBV_LINK_LAYER_ETHERNET, 32, 2);
    sd = stub_add_dev("mlx5_3", 4, STUB_NO_NUMA, 1); /* node ?: EDR 1x */
    stub_set_port(sd, 1, IBV_PORT_ACTIVE, IBV_LINK_LAYER_ETHERNET, 32, 1);
    CU_ASSERT_EQUAL(kvx_rdma_discover(devs, max, &n), KVX_OK);
    CU_ASSERT_EQUAL(n, 4);
    return n;
}

static void test_rdma_pick_nearest(void)
{
    kvx_rdma_device_t devs[4];
    char buf[128];
    size_t n = pick_setup(devs, 4);

    CU_ASSERT_EQUAL(kvx_rdma_pick_ucx_devices(devs, n, 1, buf, sizeof(buf)),
                    KVX_OK);
    CU_ASSERT_STRING_EQUAL(buf, "mlx5_1:1,mlx5_2:1");
    CU_ASSERT_EQUAL(kvx_rdma_pick_ucx_devices(devs, n, 0, buf, sizeof(buf)),
                    KVX_OK);
    CU_ASSERT_STRING_EQUAL(buf, "mlx5_0:1");
    /* Node 2 has no NIC: node 1 is nearer (20) than node 0 (30). */
    CU_ASSERT_EQUAL(kvx_rdma_pick_ucx_devices(devs, n, 2, buf, sizeof(buf)),
                    KVX_OK);
    CU_ASSERT_STRING_EQUAL(buf, "mlx5_1:1,mlx5_2:1");
    /* Unknown pool node: every active port, fastest first. */
    CU_ASSERT_EQUAL(kvx_rdma_pick_ucx_devices(devs, n, -1, buf, sizeof(buf)),
                    KVX_OK);
    CU_ASSERT_STRING_EQUAL(buf, "mlx5_1:1,mlx5_0:1,mlx5_2:1,mlx5_3:1");
    /* A node without a distance table: known nodes before unknown ones. */
    CU_ASSERT_EQUAL(kvx_rdma_pick_ucx_devices(devs, n, 3, buf, sizeof(buf)),
                    KVX_OK);
    CU_ASSERT_STRING_EQUAL(buf, "mlx5_1:1,mlx5_0:1,mlx5_2:1");
    /* Only the device of unknown node is active: it is still used. */
    devs[0].ports[0].state = KVX_RDMA_PORT_DOWN;
    devs[1].ports[0].state = KVX_RDMA_PORT_INIT;
    devs[2].ports[0].field_mask = 0; /* its query failed */
    CU_ASSERT_EQUAL(kvx_rdma_pick_ucx_devices(devs, n, 0, buf, sizeof(buf)),
                    KVX_OK);
    CU_ASSERT_STRING_EQUAL(buf, "mlx5_3:1");
    devs[3].field_mask &= ~(uint64_t)KVX_RDMA_DEVICE_FIELD_PORTS;
    CU_ASSERT_EQUAL(kvx_rdma_pick_ucx_devices(devs, n, 0, buf, sizeof(buf)),
                    KVX_OK);
    CU_ASSERT_STRING_EQUAL(buf, "");
    CU_ASSERT_EQUAL(kvx_rdma_wire_gbps(devs, n), 0.0);
    stub_done();
}

static void test_rdma_pick_equal_rates_keep_order(void)
{
    kvx_rdma_device_t devs[4];
    char buf[128];
    size_t n = pick_setup(devs, 4);

    devs[1].ports[0].rate = devs[2].ports[0].rate; /* both EDR 4x */
    devs[0].ports[0].rate = devs[2].ports[0].rate;
    CU_ASSERT_EQUAL(kvx_rdma_pick_ucx_devices(devs, n, -1, buf, sizeof(buf)),
                    KVX_OK);
    CU_ASSERT_STRING_EQUAL(buf, "mlx5_0:1,mlx5_1:1,mlx5_2:1,mlx5_3:1");
    stub_done();
}

static void test_rdma_pick_buffer(void)
{
    static const char want[] = "mlx5_1:1,mlx5_2:1";
    kvx_rdma_device_t devs[4];
    char buf[sizeof(want)];
    size_t n = pick_setup(devs, 4);

    /* Exactly enough room, then one byte short. */
    CU_ASSERT_EQUAL(kvx_rdma_pick_ucx_devices(devs, n, 1, buf, sizeof(want)),
                    KVX_OK);
    CU_ASSERT_STRING_EQUAL(buf, want);
    CU_ASSERT_EQUAL(
        kvx_rdma_pick_ucx_devices(devs, n, 1, buf, sizeof(want) - 1),
        KVX_ERR_NO_SPACE);
    CU_ASSERT_STRING_EQUAL(buf, "");
    CU_ASSERT_EQUAL(kvx_rdma_pick_ucx_devices(devs, n, 1, buf, 1),
                    KVX_ERR_NO_SPACE);
    CU_ASSERT_STRING_EQUAL(buf, "");
    /* No devices: an empty list, not an error. */
    CU_ASSERT_EQUAL(kvx_rdma_pick_ucx_devices(NULL, 0, 0, buf, sizeof(buf)),
                    KVX_OK);
    CU_ASSERT_STRING_EQUAL(buf, "");
    CU_ASSERT_EQUAL(kvx_rdma_pick_ucx_devices(devs, n, 1, NULL, 8),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_rdma_pick_ucx_devices(devs, n, 1, buf, 0),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_rdma_pick_ucx_devices(NULL, 1, 1, buf, sizeof(buf)),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_rdma_wire_gbps(NULL, 3), 0.0);
    stub_done();
}

/* --- the real libibverbs of this host --------------------------------------
 */

static void test_rdma_real_verbs(void)
{
    kvx_rdma_device_t devs[8];
    char buf[256];
    size_t n = 12345;

    memset(last_log, 0, sizeof(last_log));
    kvxi_rdma_set_ops(NULL);
    kvx_log_set_cb(capture_log, NULL, KVX_LOG_DEBUG);
    CU_ASSERT_EQUAL_FATAL(kvx_rdma_discover(devs, 8, &n), KVX_OK);
    CU_ASSERT(n < 12345);
    for (size_t i = 0; i < n && i < 8; i++) {
        CU_ASSERT(devs[i].name[0] != '\0');
        CU_ASSERT(devs[i].n_ports <= KVX_RDMA_PORTS_MAX);
    }
    CU_ASSERT_EQUAL(
        kvx_rdma_pick_ucx_devices(devs, n < 8 ? n : 8, 0, buf, sizeof(buf)),
        KVX_OK);
    printf("\n    real verbs: %zu RDMA device(s), wire %.1f Gbit/s, "
           "UCX devices \"%s\"%s%s\n",
           n, kvx_rdma_wire_gbps(devs, n < 8 ? n : 8), buf, n == 0 ? ": " : "",
           n == 0 ? last_log[KVX_LOG_INFO] : "");
    kvx_log_set_cb(NULL, NULL, KVX_LOG_INFO);
}

static const ut_test_t discover_tests[] = {
    UT_TEST(test_rdma_none_enosys),        UT_TEST(test_rdma_none_enodev),
    UT_TEST(test_rdma_none_empty_list),    UT_TEST(test_rdma_list_error),
    UT_TEST(test_rdma_invalid_param),      UT_TEST(test_rdma_ib_two_ports),
    UT_TEST(test_rdma_roce_port),          UT_TEST(test_rdma_open_failure),
    UT_TEST(test_rdma_query_port_failure), UT_TEST(test_rdma_port_codes),
    UT_TEST(test_rdma_numa_from_sysfs),    UT_TEST(test_rdma_more_than_max),
    UT_TEST(test_rdma_real_verbs),         UT_END,
};

static const ut_test_t rate_tests[] = {
    UT_TEST(test_rdma_rate_table),
    UT_TEST(test_rdma_strings),
    UT_END,
};

static const ut_test_t pick_tests[] = {
    UT_TEST(test_rdma_pick_nearest),
    UT_TEST(test_rdma_pick_equal_rates_keep_order),
    UT_TEST(test_rdma_pick_buffer),
    UT_END,
};

int main(void)
{
    static const ut_suite_t suites[] = {
        {"rdma_discover", discover_tests},
        {"rdma_rate", rate_tests},
        {"rdma_pick", pick_tests},
        {NULL, NULL},
    };

    return ut_main(suites);
}
