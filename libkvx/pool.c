/*
 * The KV pool: one memfd, mapped shared, cut into fixed-size blocks. The fd
 * is what engines map to see the same bytes as the daemon.
 */
#include <kvx/pool.h>

#include "log_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define POOL_BLOCK_ALIGN 64 /* a cache line: blocks never share one */
#define POOL_DEFAULT_NAME "kvx-pool"
/* memfd names are limited to NAME_MAX minus the "memfd:" prefix. */
#define POOL_NAME_MAX 249

#define POOL_FIELDS_ALL                                                        \
    (KVX_POOL_PARAM_FIELD_BLOCK_SIZE | KVX_POOL_PARAM_FIELD_BLOCK_COUNT |      \
     KVX_POOL_PARAM_FIELD_NAME | KVX_POOL_PARAM_FIELD_FLAGS)
#define POOL_FIELDS_REQUIRED                                                   \
    (KVX_POOL_PARAM_FIELD_BLOCK_SIZE | KVX_POOL_PARAM_FIELD_BLOCK_COUNT)
#define POOL_FLAGS_ALL (KVX_POOL_FLAG_NO_HUGE_PAGES | KVX_POOL_FLAG_POPULATE)
/* Linux 5.14; older headers lack it, older kernels answer EINVAL. */
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

struct kvx_pool {
    void *base;
    size_t length;
    size_t block_size;
    uint32_t block_count;
    int fd;
    int huge_pages;
};

/* One mapping attempt: what to ask for and how loudly to fail. */
typedef struct pool_backing {
    const char *name;
    size_t bytes; /* block_size * block_count */
    size_t align; /* page size the length is rounded to */
    unsigned mfd_flags;
    int quiet; /* a huge-page attempt fails silently */
} pool_backing_t;

static size_t pool_round_up(size_t value, size_t align)
{
    return (value + align - 1) / align * align;
}

/* Default hugetlb page size from /proc/meminfo, 0 when unknown. */
static size_t pool_huge_page_size(void)
{
    char line[128];
    size_t kib = 0;
    FILE *f;

    f = fopen("/proc/meminfo", "re");
    if (f == NULL) {
        return 0;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "Hugepagesize: %zu kB", &kib) == 1) {
            break;
        }
    }
    fclose(f);
    return kib * 1024;
}

static void pool_log_errno(int quiet, const char *what, const pool_backing_t *b,
                           size_t length, int err)
{
    char buf[128];
    const char *text = strerror_r(err, buf, sizeof(buf));

    if (quiet) {
        kvxi_debug("pool '%s': huge pages unavailable, %s of %zu bytes: %s",
                   b->name, what, length, text);
    } else {
        kvxi_error("pool '%s': %s of %zu bytes failed: %s", b->name, what,
                   length, text);
    }
}

/* Creates, sizes, seals and maps one memfd as @p b asks. */
static kvx_status_t pool_map(struct kvx_pool *pool, const pool_backing_t *b)
{
    const char *what;
    kvx_status_t status = KVX_ERR_IO;
    size_t length;
    void *base;
    int fd, err;

    length = pool_round_up(b->bytes, b->align);
    fd = memfd_create(b->name, MFD_CLOEXEC | MFD_ALLOW_SEALING | b->mfd_flags);
    if (fd < 0) {
        err = errno;
        what = "memfd_create";
        goto err;
    }
    if (ftruncate(fd, (off_t)length) != 0) {
        err = errno;
        what = "ftruncate";
        goto err_close;
    }
    /*
     * Engines get this fd: the size seals keep one from shrinking the file
     * under the daemon (a SIGBUS on the next access) or growing it.
     */
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) != 0) {
        char buf[128];

        kvxi_warn("pool '%s': cannot seal the memfd size: %s", b->name,
                  strerror_r(errno, buf, sizeof(buf)));
    }
    base = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) {
        err = errno;
        what = "mmap";
        if (err == ENOMEM) {
            status = KVX_ERR_NO_MEMORY;
        }
        goto err_close;
    }
    pool->base = base;
    pool->length = length;
    pool->fd = fd;
    pool->huge_pages = (b->mfd_flags & MFD_HUGETLB) != 0;
    return KVX_OK;

err_close:
    close(fd);
err:
    pool_log_errno(b->quiet, what, b, length, err);
    return status;
}

static kvx_status_t pool_params_check(const kvx_pool_params_t *params,
                                      kvx_pool_h *pool_p)
{
    uint64_t mask;

    if (params == NULL || pool_p == NULL) {
        kvxi_error("pool: create: NULL %s",
                   params == NULL ? "params" : "pool_p");
        return KVX_ERR_INVALID_PARAM;
    }
    mask = params->field_mask;
    if ((mask & ~(uint64_t)POOL_FIELDS_ALL) != 0) {
        kvxi_error("pool: create: unknown field_mask bits 0x%llx",
                   (unsigned long long)(mask & ~(uint64_t)POOL_FIELDS_ALL));
        return KVX_ERR_INVALID_PARAM;
    }
    if ((mask & POOL_FIELDS_REQUIRED) != POOL_FIELDS_REQUIRED) {
        kvxi_error("pool: create: block_size and block_count are required");
        return KVX_ERR_INVALID_PARAM;
    }
    if (params->block_size == 0 ||
        params->block_size > KVX_POOL_BLOCK_SIZE_MAX) {
        kvxi_error("pool: create: block_size %zu not in 1 .. %llu",
                   params->block_size, KVX_POOL_BLOCK_SIZE_MAX);
        return KVX_ERR_INVALID_PARAM;
    }
    if (params->block_count == 0 ||
        params->block_count > KVX_POOL_BLOCK_COUNT_MAX) {
        kvxi_error("pool: create: block_count %u not in 1 .. %u",
                   params->block_count, KVX_POOL_BLOCK_COUNT_MAX);
        return KVX_ERR_INVALID_PARAM;
    }
    if ((mask & KVX_POOL_PARAM_FIELD_NAME) &&
        (params->name == NULL ||
         strnlen(params->name, POOL_NAME_MAX + 1) > POOL_NAME_MAX)) {
        kvxi_error("pool: create: name is NULL or longer than %d bytes",
                   POOL_NAME_MAX);
        return KVX_ERR_INVALID_PARAM;
    }
    if ((mask & KVX_POOL_PARAM_FIELD_FLAGS) &&
        (params->flags & ~(uint32_t)POOL_FLAGS_ALL) != 0) {
        kvxi_error("pool: create: unknown flags 0x%x",
                   params->flags & ~(uint32_t)POOL_FLAGS_ALL);
        return KVX_ERR_INVALID_PARAM;
    }
    return KVX_OK;
}

kvx_status_t kvx_pool_create(const kvx_pool_params_t *params,
                             kvx_pool_h *pool_p)
{
    struct kvx_pool *pool;
    pool_backing_t backing;
    kvx_status_t status;
    size_t block_size, bytes, huge;
    uint32_t flags;
    long page;

    status = pool_params_check(params, pool_p);
    if (status != KVX_OK) {
        return status;
    }
    block_size = pool_round_up(params->block_size, POOL_BLOCK_ALIGN);
    if (__builtin_mul_overflow(block_size, (size_t)params->block_count,
                               &bytes) ||
        bytes > KVX_POOL_BYTES_MAX) {
        kvxi_error("pool: create: %zu blocks of %zu bytes exceed %llu bytes",
                   (size_t)params->block_count, block_size, KVX_POOL_BYTES_MAX);
        return KVX_ERR_OVERFLOW;
    }
    flags =
        (params->field_mask & KVX_POOL_PARAM_FIELD_FLAGS) ? params->flags : 0;
    page = sysconf(_SC_PAGESIZE);
    if (page <= 0) {
        page = 4096;
    }

    pool = calloc(1, sizeof(*pool));
    if (pool == NULL) {
        kvxi_error("pool: create: cannot allocate the pool object");
        return KVX_ERR_NO_MEMORY;
    }
    pool->block_size = block_size;
    pool->block_count = params->block_count;
    backing.name = (params->field_mask & KVX_POOL_PARAM_FIELD_NAME)
                       ? params->name
                       : POOL_DEFAULT_NAME;
    backing.bytes = bytes;

    /* Huge pages only when reserved; otherwise fall back without a word. */
    huge = (flags & KVX_POOL_FLAG_NO_HUGE_PAGES) ? 0 : pool_huge_page_size();
    if (huge >= (size_t)page) {
        backing.align = huge;
        backing.mfd_flags = MFD_HUGETLB;
        backing.quiet = 1;
        if (pool_map(pool, &backing) == KVX_OK) {
            goto out;
        }
    }
    backing.align = (size_t)page;
    backing.mfd_flags = 0;
    backing.quiet = 0;
    status = pool_map(pool, &backing);
    if (status != KVX_OK) {
        goto err_free;
    }
out:
    if ((flags & KVX_POOL_FLAG_POPULATE) &&
        (status = kvx_pool_populate(pool)) != KVX_OK) {
        kvx_pool_destroy(pool);
        return status;
    }
    kvxi_debug("pool '%s': %u blocks of %zu bytes, %zu bytes mapped%s",
               backing.name, pool->block_count, pool->block_size, pool->length,
               pool->huge_pages ? " on huge pages" : "");
    *pool_p = pool;
    return KVX_OK;

err_free:
    free(pool);
    return status;
}

void kvx_pool_destroy(kvx_pool_h pool)
{
    if (pool == NULL) {
        return;
    }
    munmap(pool->base, pool->length);
    close(pool->fd);
    free(pool);
}

kvx_status_t kvx_pool_query(kvx_pool_h pool, kvx_pool_attr_t *attr)
{
    if (pool == NULL || attr == NULL) {
        kvxi_error("pool: query: NULL %s", pool == NULL ? "pool" : "attr");
        return KVX_ERR_INVALID_PARAM;
    }
    attr->base = pool->base;
    attr->length = pool->length;
    attr->block_size = pool->block_size;
    attr->block_count = pool->block_count;
    attr->fd = pool->fd;
    attr->huge_pages = pool->huge_pages;
    attr->mem_type = KVX_MEM_HOST;
    return KVX_OK;
}

kvx_status_t kvx_pool_populate(kvx_pool_h pool)
{
    volatile uint8_t *p;
    char buf[128];
    long page;
    int err;

    if (pool == NULL) {
        kvxi_error("pool: populate: NULL pool");
        return KVX_ERR_INVALID_PARAM;
    }
    if (madvise(pool->base, pool->length, MADV_POPULATE_WRITE) == 0) {
        return KVX_OK;
    }
    err = errno;
    if (err != EINVAL) {
        /* ENOMEM/EFAULT (no memory, no huge pages left), EHWPOISON... */
        kvxi_error("pool: populate of %zu bytes failed: %s", pool->length,
                   strerror_r(err, buf, sizeof(buf)));
        return KVX_ERR_NO_MEMORY;
    }
    /* Kernel without MADV_POPULATE_WRITE: one write fault per page. */
    page = pool->huge_pages ? 0 : sysconf(_SC_PAGESIZE);
    if (page <= 0) {
        page = 4096; /* a huge page is just touched several times */
    }
    p = pool->base;
    for (size_t off = 0; off < pool->length; off += (size_t)page) {
        p[off] = p[off];
    }
    return KVX_OK;
}

void *kvx_pool_block_addr(kvx_pool_h pool, uint32_t block)
{
    if (pool == NULL || block >= pool->block_count) {
        return NULL;
    }
    return (uint8_t *)pool->base + (size_t)block * pool->block_size;
}
