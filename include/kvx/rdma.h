/**
 * @file kvx/rdma.h
 * @brief RDMA device discovery: devices, ports, link rates, NUMA affinity.
 *
 * libkvx reads the RDMA devices of the host through libibverbs for three
 * uses: `kvx status` lists them, the node picks the UCX devices nearest the
 * pool's memory (UCX_NET_DEVICES), and the bench states the wire limit it is
 * measured against.
 *
 * A host without RDMA (no kernel support, no driver, no NIC) is a normal
 * state, not an error: kvx_rdma_discover() returns KVX_OK with zero devices,
 * logs "no RDMA devices: <reason>" once at info level, and traffic goes over
 * TCP and shared memory.
 *
 * Everything here is plain data: discovery fills caller-provided arrays, the
 * helpers only read them. Nothing is allocated that the caller must free.
 * The functions are safe to call from any thread.
 */
#ifndef KVX_RDMA_H
#define KVX_RDMA_H

#include <kvx/common.h>
#include <kvx/status.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Bytes of a device name, with its terminating NUL (as libibverbs). */
#define KVX_RDMA_NAME_MAX 64
/** Bytes of a UCX device name "<device>:<port>", with its NUL. */
#define KVX_RDMA_UCX_NAME_MAX (KVX_RDMA_NAME_MAX + 8)
/** Ports described per device; further ports are counted, not described. */
#define KVX_RDMA_PORTS_MAX 4

/** Logical port state, as the subnet manager / link sees it. */
typedef enum kvx_rdma_port_state {
    KVX_RDMA_PORT_UNKNOWN = 0, /**< not queried or an unknown value */
    KVX_RDMA_PORT_DOWN = 1,    /**< no link */
    KVX_RDMA_PORT_INIT = 2,    /**< link up, not configured by the SM */
    KVX_RDMA_PORT_ARMED = 3,   /**< configured, not yet active */
    KVX_RDMA_PORT_ACTIVE = 4   /**< carries traffic */
} kvx_rdma_port_state_t;

/** What the port speaks on the wire. */
typedef enum kvx_rdma_link_layer {
    KVX_RDMA_LINK_UNKNOWN = 0, /**< not reported */
    KVX_RDMA_LINK_INFINIBAND = 1,
    KVX_RDMA_LINK_ETHERNET = 2 /**< RoCE */
} kvx_rdma_link_layer_t;

/**
 * A link rate derived from the verbs codes of a port (ibv_port_attr
 * active_speed and active_width). Rates are in Mbit/s so that every
 * generation is exact (SDR is 2.5 Gbit/s per lane).
 */
typedef struct kvx_rdma_rate {
    uint32_t lanes;     /**< 1, 2, 4, 8 or 12; 0 when the width is unknown */
    uint32_t lane_mbps; /**< nominal per-lane rate: SDR 2500, DDR 5000,
                             QDR 10000, FDR10 10000, FDR 14000, EDR 25000,
                             HDR 50000, NDR 100000, XDR 200000 */
    uint32_t rate_mbps; /**< lanes * lane_mbps, the "Rate" ibstat prints
                             (HDR 4x: 200000, FDR 4x: 56000) */
    uint32_t data_mbps; /**< payload bits the link can carry after line
                             coding: on InfiniBand SDR/DDR/QDR lose 8b/10b
                             (QDR 4x: 32000), FDR loses 64b/66b (FDR 4x:
                             54545); FDR10 and later are quoted after
                             coding already. On Ethernet equal to rate_mbps
                             (Ethernet speeds are data rates). */
    const char *speed_name; /**< "SDR" .. "XDR", or "unknown" (static) */
} kvx_rdma_rate_t;

/** Bits of kvx_rdma_port_t::field_mask: which fields hold values. */
enum kvx_rdma_port_field {
    /** state, link_layer, speed/width codes, rate, mtu, lid are valid
     *  (the port query succeeded) */
    KVX_RDMA_PORT_FIELD_ATTR = 1u << 0,
    /** gid and gid_index are valid */
    KVX_RDMA_PORT_FIELD_GID = 1u << 1
};

/**
 * One port of an RDMA device. port_num and ucx_name are always valid; the
 * fields under a field_mask bit that is not set are zero, except
 * rate.speed_name which is then "unknown" (never NULL).
 */
typedef struct kvx_rdma_port {
    uint64_t field_mask; /**< kvx_rdma_port_field bits, set by discovery */
    uint32_t port_num;   /**< 1-based port number, always valid */
    kvx_rdma_port_state_t state;
    kvx_rdma_link_layer_t link_layer;
    uint32_t speed_code;  /**< raw ibv active_speed (1 SDR .. 128 NDR) */
    uint32_t width_code;  /**< raw ibv active_width (1=1x 2=4x 4=8x 8=12x
                               16=2x) */
    kvx_rdma_rate_t rate; /**< from speed_code and width_code */
    uint32_t mtu;         /**< active MTU in bytes (256 .. 4096), 0 unknown */
    uint16_t lid;         /**< InfiniBand LID (0 on Ethernet) */
    uint32_t gid_index;   /**< index of gid in the port's GID table */
    uint8_t gid[16];      /**< InfiniBand: index 0 (subnet prefix + port
                               GUID); RoCE: the first IPv4-mapped entry of
                               the first 16, else index 0 (the RoCE version
                               of the entry is not reported) */
    char ucx_name[KVX_RDMA_UCX_NAME_MAX]; /**< "mlx5_0:1", the name UCX
                                               uses in UCX_NET_DEVICES */
} kvx_rdma_port_t;

/** Bits of kvx_rdma_device_t::field_mask: which fields hold values. */
enum kvx_rdma_device_field {
    KVX_RDMA_DEVICE_FIELD_NODE_GUID = 1u << 0, /**< node_guid is valid */
    KVX_RDMA_DEVICE_FIELD_NUMA_NODE = 1u << 1, /**< numa_node is known */
    /** the device was opened and queried: port_count, n_ports, ports[] */
    KVX_RDMA_DEVICE_FIELD_PORTS = 1u << 2
};

/**
 * One RDMA device (an HCA or RoCE NIC function). Fields not named in
 * field_mask are zero, except numa_node which is then -1. name is always
 * valid.
 */
typedef struct kvx_rdma_device {
    uint64_t field_mask;          /**< kvx_rdma_device_field bits */
    char name[KVX_RDMA_NAME_MAX]; /**< kernel device name, "mlx5_0" */
    uint64_t node_guid;           /**< node GUID in host byte order */
    int numa_node;                /**< NUMA node of the PCI function, from
                                       /sys/class/infiniband/<name>/device/
                                       numa_node; -1 when unknown */
    uint32_t port_count;          /**< physical ports the device reports */
    uint32_t n_ports;             /**< entries of ports[] filled, at most
                                       KVX_RDMA_PORTS_MAX; ports[i].port_num is
                                       i + 1 */
    kvx_rdma_port_t ports[KVX_RDMA_PORTS_MAX];
} kvx_rdma_device_t;

/**
 * Lists the RDMA devices of this host with their ports.
 *
 * Devices are described in the order libibverbs lists them. A device that
 * cannot be opened or queried is still listed (name, GUID, NUMA node) without
 * KVX_RDMA_DEVICE_FIELD_PORTS; a port whose query fails is listed without
 * KVX_RDMA_PORT_FIELD_ATTR. Each such failure is logged at warn level.
 *
 * @param devs  array of @p max entries to fill; may be NULL when @p max is 0
 *              (to count the devices). Owned by the caller.
 * @param max   number of entries of @p devs.
 * @param n_p   receives the number of devices present, which may exceed
 *              @p max: then only the first @p max are described (the caller
 *              can retry with a larger array). Written on KVX_OK only.
 * @return KVX_OK, also when the host has no RDMA at all (kernel without
 *         InfiniBand support, no driver, no device: *n_p = 0 and one info
 *         message "no RDMA devices: <reason>" per process);
 *         KVX_ERR_INVALID_PARAM if @p n_p is NULL, or @p devs is NULL while
 *         @p max is not 0;
 *         KVX_ERR_NO_MEMORY if libibverbs ran out of memory listing devices;
 *         KVX_ERR_IO if it fails for another reason (logged at error level).
 */
KVX_EXPORT kvx_status_t kvx_rdma_discover(kvx_rdma_device_t *devs, size_t max,
                                          size_t *n_p);

/**
 * Computes the link rate of a port from its verbs codes.
 *
 * @param speed_code  ibv_port_attr::active_speed (1, 2, 4, 8, 16, 32, 64,
 *                    128; 256 for XDR as rdma-core's active_speed_ex).
 * @param width_code  ibv_port_attr::active_width (1, 2, 4, 8, 16).
 * @param link_layer  decides how data_mbps is derived (see kvx_rdma_rate_t).
 * @param rate        receives the rate; on KVX_ERR_NOT_SUPPORTED it is zeroed
 *                    and its speed_name is "unknown".
 * @return KVX_OK; KVX_ERR_INVALID_PARAM if @p rate is NULL;
 *         KVX_ERR_NOT_SUPPORTED if either code is unknown.
 */
KVX_EXPORT kvx_status_t kvx_rdma_rate_from_codes(
    uint32_t speed_code, uint32_t width_code, kvx_rdma_link_layer_t link_layer,
    kvx_rdma_rate_t *rate);

/**
 * The wire limit: the data rate of the fastest ACTIVE port among @p devs, in
 * Gbit/s (data_mbps / 1000). This is the ceiling the bench reports beside its
 * measured throughput for a single-port path.
 *
 * @param devs  devices from kvx_rdma_discover(); NULL gives 0.0.
 * @param n     entries of @p devs to read (min of the count and the array).
 * @return Gbit/s, or 0.0 when no port is active (or no device exists).
 */
KVX_EXPORT double kvx_rdma_wire_gbps(const kvx_rdma_device_t *devs, size_t n);

/**
 * Builds a UCX_NET_DEVICES value ("mlx5_0:1,mlx5_1:1") from the ACTIVE ports
 * nearest NUMA node @p numa_node.
 *
 * Nearness is the kernel's NUMA distance
 * (/sys/devices/system/node/node<N>/distance): ports of devices on the node
 * itself come first in rank; if there are none, those on the nearest node
 * with any. Devices whose NUMA node is unknown count as farther than any
 * known node. With @p numa_node < 0 (the pool's node is unknown) every active
 * port qualifies. Within the chosen set, ports are ordered by data rate,
 * fastest first, then by discovery order.
 *
 * @param devs       devices from kvx_rdma_discover(); NULL only with @p n 0.
 * @param n          entries of @p devs to read.
 * @param numa_node  NUMA node of the pool's memory, or -1.
 * @param buf        receives the NUL-terminated list; "" when no port is
 *                   active (UCX then uses its own defaults: TCP, shm).
 * @param len        bytes of @p buf.
 * @return KVX_OK;
 *         KVX_ERR_INVALID_PARAM if @p buf is NULL, @p len is 0, or @p devs is
 *         NULL while @p n is not 0;
 *         KVX_ERR_NO_SPACE if the list does not fit in @p len bytes (then
 *         @p buf holds "").
 */
KVX_EXPORT kvx_status_t kvx_rdma_pick_ucx_devices(const kvx_rdma_device_t *devs,
                                                  size_t n, int numa_node,
                                                  char *buf, size_t len);

/** Static name of a port state: "down", "init", "armed", "active",
 *  "unknown". Never NULL. */
KVX_EXPORT const char *kvx_rdma_port_state_string(kvx_rdma_port_state_t state);

/** Static name of a link layer: "InfiniBand", "Ethernet", "unknown". Never
 *  NULL. */
KVX_EXPORT const char *
kvx_rdma_link_layer_string(kvx_rdma_link_layer_t link_layer);

#ifdef __cplusplus
}
#endif

#endif /* KVX_RDMA_H */
