/*
 * Internal: the verbs layer behind kvx_rdma_discover(). Every libibverbs call
 * and sysfs read goes through one table of function pointers, so unit tests
 * replace the hardware with stubs (as SPDK stubs ibv_*) and exercise the RDMA
 * branches on hosts without a NIC.
 */
#ifndef KVX_RDMA_INT_H
#define KVX_RDMA_INT_H

#include <kvx/rdma.h>

#include <infiniband/verbs.h>
#include <sys/types.h>

typedef struct kvxi_rdma_ops {
    /* As ibv_get_device_list(): NULL with errno set on failure. */
    struct ibv_device **(*get_device_list)(int *num_devices);
    void (*free_device_list)(struct ibv_device **list);
    const char *(*get_device_name)(struct ibv_device *device);
    /* As ibv_get_device_guid(): network byte order, 0 when unknown. */
    __be64 (*get_device_guid)(struct ibv_device *device);
    /* As ibv_open_device(): NULL with errno set on failure. */
    struct ibv_context *(*open_device)(struct ibv_device *device);
    int (*close_device)(struct ibv_context *context);
    /* The query functions return 0 or an errno value (libibverbs style). */
    int (*query_device)(struct ibv_context *context,
                        struct ibv_device_attr *attr);
    int (*query_port)(struct ibv_context *context, uint8_t port_num,
                      struct ibv_port_attr *attr);
    int (*query_gid)(struct ibv_context *context, uint8_t port_num, int index,
                     union ibv_gid *gid);
    /*
     * Reads up to len - 1 bytes of the sysfs file at path into buf and
     * NUL-terminates it. Returns the bytes read, or -1 with errno set.
     */
    ssize_t (*read_sysfs)(const char *path, char *buf, size_t len);
} kvxi_rdma_ops_t;

/*
 * Replaces the verbs layer; NULL restores the real libibverbs. Every member
 * must be set. Also re-arms the one-time "no RDMA devices" message. Not
 * thread-safe: for tests, before discovery runs.
 */
void kvxi_rdma_set_ops(const kvxi_rdma_ops_t *ops);

/* The real libibverbs table (for tests that wrap it). */
extern const kvxi_rdma_ops_t kvxi_rdma_ops_verbs;

#endif /* KVX_RDMA_INT_H */
