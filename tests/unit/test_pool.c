/* Unit tests for libkvx/pool.c (the KV pool of kvx/pool.h). */
#include "ut.h"

#include <kvx/kvx.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static kvx_pool_params_t pool_params(size_t block_size, uint32_t count)
{
    kvx_pool_params_t p = {
        .field_mask = KVX_POOL_PARAM_FIELD_BLOCK_SIZE |
                      KVX_POOL_PARAM_FIELD_BLOCK_COUNT |
                      KVX_POOL_PARAM_FIELD_FLAGS,
        .block_size = block_size,
        .block_count = count,
        .flags = KVX_POOL_FLAG_NO_HUGE_PAGES,
    };

    return p;
}

static void test_pool_create_geometry(void)
{
    kvx_pool_params_t p = pool_params(4096, 10);
    kvx_pool_attr_t attr;
    kvx_pool_h pool = NULL;
    long page = sysconf(_SC_PAGESIZE);

    CU_ASSERT_EQUAL_FATAL(kvx_pool_create(&p, &pool), KVX_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(pool);
    CU_ASSERT_EQUAL(kvx_pool_query(pool, &attr), KVX_OK);
    CU_ASSERT_PTR_NOT_NULL(attr.base);
    CU_ASSERT_EQUAL(attr.block_size, 4096);
    CU_ASSERT_EQUAL(attr.block_count, 10);
    CU_ASSERT(attr.length >= 4096 * 10);
    CU_ASSERT_EQUAL(attr.length % (size_t)page, 0);
    CU_ASSERT_EQUAL((uintptr_t)attr.base % (uintptr_t)page, 0);
    CU_ASSERT(attr.fd >= 0);
    CU_ASSERT_EQUAL(attr.huge_pages, 0);
    CU_ASSERT_EQUAL(attr.mem_type, KVX_MEM_HOST);
    CU_ASSERT_PTR_EQUAL(kvx_pool_block_addr(pool, 0), attr.base);
    kvx_pool_destroy(pool);
}

static void test_pool_block_size_rounding(void)
{
    static const size_t sizes[][2] = {
        {1, 64},
        {63, 64},
        {64, 64},
        {65, 128},
        {1000, 1024},
        {4096, 4096},
        {KVX_POOL_BLOCK_SIZE_MAX - 1, KVX_POOL_BLOCK_SIZE_MAX},
    };

    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        kvx_pool_params_t p = pool_params(sizes[i][0], 3);
        kvx_pool_attr_t attr;
        kvx_pool_h pool;

        CU_ASSERT_EQUAL_FATAL(kvx_pool_create(&p, &pool), KVX_OK);
        CU_ASSERT_EQUAL(kvx_pool_query(pool, &attr), KVX_OK);
        CU_ASSERT_EQUAL(attr.block_size, sizes[i][1]);
        CU_ASSERT(attr.length >= sizes[i][1] * 3);
        for (uint32_t b = 0; b < 3; b++) {
            uintptr_t addr = (uintptr_t)kvx_pool_block_addr(pool, b);

            CU_ASSERT_EQUAL(addr % 64, 0);
            CU_ASSERT_EQUAL(addr - (uintptr_t)attr.base, b * sizes[i][1]);
        }
        kvx_pool_destroy(pool);
    }
}

static void test_pool_blocks_distinct_writable(void)
{
    kvx_pool_params_t p = pool_params(100, 64);
    kvx_pool_h pool;
    size_t bs;

    CU_ASSERT_EQUAL_FATAL(kvx_pool_create(&p, &pool), KVX_OK);
    bs = 128;
    for (uint32_t b = 0; b < 64; b++) {
        memset(kvx_pool_block_addr(pool, b), (int)b, bs);
    }
    for (uint32_t b = 0; b < 64; b++) {
        const uint8_t *addr = kvx_pool_block_addr(pool, b);

        CU_ASSERT_EQUAL(addr[0], b);
        CU_ASSERT_EQUAL(addr[bs - 1], b);
    }
    kvx_pool_destroy(pool);
}

static void test_pool_block_addr_bounds(void)
{
    kvx_pool_params_t p = pool_params(64, 4);
    kvx_pool_h pool;

    CU_ASSERT_EQUAL_FATAL(kvx_pool_create(&p, &pool), KVX_OK);
    CU_ASSERT_PTR_NOT_NULL(kvx_pool_block_addr(pool, 3));
    CU_ASSERT_PTR_NULL(kvx_pool_block_addr(pool, 4));
    CU_ASSERT_PTR_NULL(kvx_pool_block_addr(pool, UINT32_MAX));
    CU_ASSERT_PTR_NULL(kvx_pool_block_addr(NULL, 0));
    kvx_pool_destroy(pool);
}

/* What an engine does with the fd it receives: map it and share bytes. */
static void test_pool_fd_shared_mapping(void)
{
    kvx_pool_params_t p = pool_params(4096, 8);
    kvx_pool_attr_t attr;
    kvx_pool_h pool;
    uint8_t *other, *blk;

    CU_ASSERT_EQUAL_FATAL(kvx_pool_create(&p, &pool), KVX_OK);
    CU_ASSERT_EQUAL(kvx_pool_query(pool, &attr), KVX_OK);
    other =
        mmap(NULL, attr.length, PROT_READ | PROT_WRITE, MAP_SHARED, attr.fd, 0);
    CU_ASSERT_FATAL(other != MAP_FAILED);
    CU_ASSERT_PTR_NOT_EQUAL(other, attr.base);

    blk = kvx_pool_block_addr(pool, 5);
    memcpy(blk, "prefill wrote this", 19);
    CU_ASSERT_STRING_EQUAL((char *)other + 5 * 4096, "prefill wrote this");
    memcpy(other + 7 * 4096 + 10, "engine", 7);
    CU_ASSERT_STRING_EQUAL((char *)kvx_pool_block_addr(pool, 7) + 10, "engine");
    munmap(other, attr.length);
    kvx_pool_destroy(pool);
}

static void test_pool_fd_sealed_cloexec(void)
{
    kvx_pool_params_t p = pool_params(4096, 4);
    kvx_pool_attr_t attr;
    kvx_pool_h pool;
    int seals;

    CU_ASSERT_EQUAL_FATAL(kvx_pool_create(&p, &pool), KVX_OK);
    CU_ASSERT_EQUAL(kvx_pool_query(pool, &attr), KVX_OK);
    CU_ASSERT(fcntl(attr.fd, F_GETFD) & FD_CLOEXEC);
    seals = fcntl(attr.fd, F_GET_SEALS);
    CU_ASSERT(seals >= 0);
    CU_ASSERT(seals & F_SEAL_SHRINK);
    CU_ASSERT(seals & F_SEAL_GROW);
    /* An engine cannot shrink the pool under the daemon. */
    CU_ASSERT_EQUAL(ftruncate(attr.fd, 4096), -1);
    CU_ASSERT_EQUAL(errno, EPERM);
    CU_ASSERT_EQUAL(ftruncate(attr.fd, (off_t)attr.length * 2), -1);
    kvx_pool_destroy(pool);
}

static void test_pool_name(void)
{
    kvx_pool_params_t p = pool_params(64, 1);
    char path[64], target[256];
    kvx_pool_attr_t attr;
    kvx_pool_h pool;
    ssize_t n;

    p.field_mask |= KVX_POOL_PARAM_FIELD_NAME;
    p.name = "kvx-test-pool";
    CU_ASSERT_EQUAL_FATAL(kvx_pool_create(&p, &pool), KVX_OK);
    CU_ASSERT_EQUAL(kvx_pool_query(pool, &attr), KVX_OK);
    snprintf(path, sizeof(path), "/proc/self/fd/%d", attr.fd);
    n = readlink(path, target, sizeof(target) - 1);
    CU_ASSERT_FATAL(n > 0);
    target[n] = '\0';
    CU_ASSERT(strstr(target, "memfd:kvx-test-pool") != NULL);
    kvx_pool_destroy(pool);
}

/* Without the flag huge pages are tried; either way the pool works. */
static void test_pool_huge_pages_fallback(void)
{
    kvx_pool_params_t p = pool_params(3000, 5);
    kvx_pool_attr_t attr;
    kvx_pool_h pool;
    uint8_t *last;

    p.field_mask &= ~(uint64_t)KVX_POOL_PARAM_FIELD_FLAGS;
    CU_ASSERT_EQUAL_FATAL(kvx_pool_create(&p, &pool), KVX_OK);
    CU_ASSERT_EQUAL(kvx_pool_query(pool, &attr), KVX_OK);
    CU_ASSERT(attr.huge_pages == 0 || attr.huge_pages == 1);
    CU_ASSERT_EQUAL(attr.block_size, 3008);
    CU_ASSERT(attr.length >= 3008 * 5);
    last = kvx_pool_block_addr(pool, 4);
    memset(last, 0x5a, attr.block_size);
    CU_ASSERT_EQUAL(last[attr.block_size - 1], 0x5a);
    kvx_pool_destroy(pool);
}

/* Pages of [base, base + length) in memory, by mincore(). */
static size_t pool_resident_pages(void *base, size_t length)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE), n = length / page, in = 0;
    unsigned char *vec = calloc(n, 1);

    CU_ASSERT_PTR_NOT_NULL_FATAL(vec);
    CU_ASSERT_EQUAL_FATAL(mincore(base, length, vec), 0);
    for (size_t i = 0; i < n; i++) {
        in += vec[i] & 1;
    }
    free(vec);
    return in;
}

static void test_pool_populate(void)
{
    kvx_pool_params_t p = pool_params(64 * 1024, 64);
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    kvx_pool_attr_t attr;
    kvx_pool_h pool = NULL;
    uint8_t *b;

    /* Lazy by default: nothing committed. */
    CU_ASSERT_EQUAL_FATAL(kvx_pool_create(&p, &pool), KVX_OK);
    CU_ASSERT_EQUAL(kvx_pool_query(pool, &attr), KVX_OK);
    CU_ASSERT_EQUAL(pool_resident_pages(attr.base, attr.length), 0);
    /* On demand, keeping what is there. */
    b = kvx_pool_block_addr(pool, 3);
    b[5] = 0xa5;
    CU_ASSERT_EQUAL(kvx_pool_populate(pool), KVX_OK);
    CU_ASSERT_EQUAL(pool_resident_pages(attr.base, attr.length),
                    attr.length / page);
    CU_ASSERT_EQUAL(b[5], 0xa5);
    CU_ASSERT_EQUAL(b[6], 0);
    CU_ASSERT_EQUAL(kvx_pool_populate(pool), KVX_OK); /* again: a no-op */
    CU_ASSERT_EQUAL(b[5], 0xa5);
    kvx_pool_destroy(pool);

    /* At creation, with the flag. */
    pool = NULL;
    p.flags |= KVX_POOL_FLAG_POPULATE;
    CU_ASSERT_EQUAL_FATAL(kvx_pool_create(&p, &pool), KVX_OK);
    CU_ASSERT_EQUAL(kvx_pool_query(pool, &attr), KVX_OK);
    CU_ASSERT_EQUAL(pool_resident_pages(attr.base, attr.length),
                    attr.length / page);
    b = attr.base;
    CU_ASSERT_EQUAL(b[0], 0);
    CU_ASSERT_EQUAL(b[attr.length - 1], 0);
    kvx_pool_destroy(pool);

    CU_ASSERT_EQUAL(kvx_pool_populate(NULL), KVX_ERR_INVALID_PARAM);
}

static void test_pool_bad_params(void)
{
    kvx_pool_h pool = (kvx_pool_h)&pool;
    kvx_pool_h sentinel = pool;
    kvx_pool_params_t p;
    char long_name[300];

    p = pool_params(64, 1);
    CU_ASSERT_EQUAL(kvx_pool_create(NULL, &pool), KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvx_pool_create(&p, NULL), KVX_ERR_INVALID_PARAM);

    p.field_mask &= ~(uint64_t)KVX_POOL_PARAM_FIELD_BLOCK_SIZE;
    CU_ASSERT_EQUAL(kvx_pool_create(&p, &pool), KVX_ERR_INVALID_PARAM);
    p = pool_params(64, 1);
    p.field_mask &= ~(uint64_t)KVX_POOL_PARAM_FIELD_BLOCK_COUNT;
    CU_ASSERT_EQUAL(kvx_pool_create(&p, &pool), KVX_ERR_INVALID_PARAM);
    p = pool_params(64, 1);
    p.field_mask |= 1u << 4;
    CU_ASSERT_EQUAL(kvx_pool_create(&p, &pool), KVX_ERR_INVALID_PARAM);
    p.field_mask = pool_params(64, 1).field_mask | (1ull << 63);
    CU_ASSERT_EQUAL(kvx_pool_create(&p, &pool), KVX_ERR_INVALID_PARAM);

    p = pool_params(0, 1);
    CU_ASSERT_EQUAL(kvx_pool_create(&p, &pool), KVX_ERR_INVALID_PARAM);
    p = pool_params(64, 0);
    CU_ASSERT_EQUAL(kvx_pool_create(&p, &pool), KVX_ERR_INVALID_PARAM);
    p = pool_params(KVX_POOL_BLOCK_SIZE_MAX + 1, 1);
    CU_ASSERT_EQUAL(kvx_pool_create(&p, &pool), KVX_ERR_INVALID_PARAM);
    p = pool_params(64, KVX_POOL_BLOCK_COUNT_MAX + 1);
    CU_ASSERT_EQUAL(kvx_pool_create(&p, &pool), KVX_ERR_INVALID_PARAM);

    p = pool_params(64, 1);
    p.flags = 1u << 2;
    CU_ASSERT_EQUAL(kvx_pool_create(&p, &pool), KVX_ERR_INVALID_PARAM);
    p.flags = UINT32_MAX;
    CU_ASSERT_EQUAL(kvx_pool_create(&p, &pool), KVX_ERR_INVALID_PARAM);

    p = pool_params(64, 1);
    p.field_mask |= KVX_POOL_PARAM_FIELD_NAME;
    p.name = NULL;
    CU_ASSERT_EQUAL(kvx_pool_create(&p, &pool), KVX_ERR_INVALID_PARAM);
    memset(long_name, 'n', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    p.name = long_name;
    CU_ASSERT_EQUAL(kvx_pool_create(&p, &pool), KVX_ERR_INVALID_PARAM);
    /* A name field left unset is ignored, whatever it holds. */
    p.field_mask &= ~(uint64_t)KVX_POOL_PARAM_FIELD_NAME;
    p.name = NULL;
    CU_ASSERT_PTR_EQUAL(pool, sentinel);
    CU_ASSERT_EQUAL(kvx_pool_create(&p, &pool), KVX_OK);
    kvx_pool_destroy(pool);
}

static void test_pool_overflow(void)
{
    kvx_pool_h pool = NULL;
    kvx_pool_params_t p;

    /* 2^30 * 2^30 bytes: each factor allowed, the product is not. */
    p = pool_params(KVX_POOL_BLOCK_SIZE_MAX, KVX_POOL_BLOCK_COUNT_MAX);
    CU_ASSERT_EQUAL(kvx_pool_create(&p, &pool), KVX_ERR_OVERFLOW);
    /* One block past 16 TiB. */
    p = pool_params(KVX_POOL_BLOCK_SIZE_MAX,
                    (uint32_t)(KVX_POOL_BYTES_MAX / KVX_POOL_BLOCK_SIZE_MAX) +
                        1);
    CU_ASSERT_EQUAL(kvx_pool_create(&p, &pool), KVX_ERR_OVERFLOW);
    /* Fits as asked; rounding the block up to 64 bytes pushes it over. */
    p = pool_params(KVX_POOL_BYTES_MAX / 16385, 16385);
    CU_ASSERT(p.block_size * 16385 <= KVX_POOL_BYTES_MAX);
    CU_ASSERT_EQUAL(kvx_pool_create(&p, &pool), KVX_ERR_OVERFLOW);
    CU_ASSERT_PTR_NULL(pool);
}

static void test_pool_query_bad(void)
{
    kvx_pool_params_t p = pool_params(64, 1);
    kvx_pool_attr_t attr;
    kvx_pool_h pool;

    CU_ASSERT_EQUAL(kvx_pool_query(NULL, &attr), KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL_FATAL(kvx_pool_create(&p, &pool), KVX_OK);
    CU_ASSERT_EQUAL(kvx_pool_query(pool, NULL), KVX_ERR_INVALID_PARAM);
    kvx_pool_destroy(pool);
}

static void test_pool_destroy_null(void)
{
    kvx_pool_destroy(NULL);
    CU_PASS("destroy(NULL) is a no-op");
}

static int n_errors;

static void count_errors(kvx_log_level_t level, const char *msg, void *arg)
{
    (void)msg;
    (void)arg;
    if (level == KVX_LOG_ERROR) {
        n_errors++;
    }
}

/* A failure is reported once, where it is detected. */
static void test_pool_error_logged_once(void)
{
    kvx_pool_params_t p = pool_params(0, 1);
    kvx_pool_h pool;

    kvx_log_set_cb(count_errors, NULL, KVX_LOG_TRACE);
    n_errors = 0;
    CU_ASSERT_EQUAL(kvx_pool_create(&p, &pool), KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(n_errors, 1);
    n_errors = 0;
    p = pool_params(KVX_POOL_BLOCK_SIZE_MAX, KVX_POOL_BLOCK_COUNT_MAX);
    CU_ASSERT_EQUAL(kvx_pool_create(&p, &pool), KVX_ERR_OVERFLOW);
    CU_ASSERT_EQUAL(n_errors, 1);
    n_errors = 0;
    p = pool_params(64, 2);
    p.field_mask &= ~(uint64_t)KVX_POOL_PARAM_FIELD_FLAGS;
    CU_ASSERT_EQUAL_FATAL(kvx_pool_create(&p, &pool), KVX_OK);
    CU_ASSERT_EQUAL(n_errors, 0);
    kvx_pool_destroy(pool);
    kvx_log_set_cb(NULL, NULL, KVX_LOG_INFO);
}

static const ut_test_t pool_tests[] = {
    UT_TEST(test_pool_create_geometry),
    UT_TEST(test_pool_block_size_rounding),
    UT_TEST(test_pool_blocks_distinct_writable),
    UT_TEST(test_pool_block_addr_bounds),
    UT_TEST(test_pool_fd_shared_mapping),
    UT_TEST(test_pool_fd_sealed_cloexec),
    UT_TEST(test_pool_name),
    UT_TEST(test_pool_huge_pages_fallback),
    UT_TEST(test_pool_populate),
    UT_TEST(test_pool_bad_params),
    UT_TEST(test_pool_overflow),
    UT_TEST(test_pool_query_bad),
    UT_TEST(test_pool_destroy_null),
    UT_TEST(test_pool_error_logged_once),
    UT_END,
};

int main(void)
{
    static const ut_suite_t suites[] = {
        {"pool", pool_tests},
        {NULL, NULL},
    };

    return ut_main(suites);
}
