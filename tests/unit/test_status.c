/* Unit tests for libkvx/status.c and libkvx/log.c. */
#include "ut.h"
#include "status_all.h"

#include <kvx/kvx.h>
#include <string.h>

#include "log_int.h"

static void test_status_string_distinct(void)
{
    for (size_t i = 0; i < N_STATUS; i++) {
        const char *s = kvx_status_string(all_status[i]);

        CU_ASSERT_PTR_NOT_NULL_FATAL(s);
        CU_ASSERT_STRING_NOT_EQUAL(s, "unknown status");
        for (size_t j = 0; j < i; j++) {
            CU_ASSERT_STRING_NOT_EQUAL(s, kvx_status_string(all_status[j]));
        }
    }
    CU_ASSERT_STRING_EQUAL(kvx_status_string((kvx_status_t)-77),
                           "unknown status");
}

static void test_status_ranges(void)
{
    size_t n_peer = 0, n_proto = 0;

    for (size_t i = 0; i < N_STATUS; i++) {
        kvx_status_t s = all_status[i];

        CU_ASSERT(!(KVX_STATUS_IS_PEER(s) && KVX_STATUS_IS_PROTO(s)));
        n_peer += KVX_STATUS_IS_PEER(s) ? 1 : 0;
        n_proto += KVX_STATUS_IS_PROTO(s) ? 1 : 0;
    }
    CU_ASSERT_EQUAL(n_peer, 5);
    CU_ASSERT_EQUAL(n_proto, 4);
    CU_ASSERT(KVX_STATUS_IS_PEER(KVX_ERR_PEER_DOWN));
    CU_ASSERT(!KVX_STATUS_IS_PEER(KVX_ERR_TIMEOUT));
    CU_ASSERT(!KVX_STATUS_IS_PEER(KVX_OK));
}

static int n_logged;
static char last_msg[64];

static void capture_log(kvx_log_level_t level, const char *msg, void *arg)
{
    (void)level;
    CU_ASSERT_PTR_EQUAL(arg, &n_logged);
    n_logged++;
    strncpy(last_msg, msg, sizeof(last_msg) - 1);
}

static void test_log_level_filter(void)
{
    kvx_log_set_cb(capture_log, &n_logged, KVX_LOG_WARN);
    n_logged = 0;
    kvxi_log(KVX_LOG_ERROR, "pool %u: %s", 3u, "gone");
    CU_ASSERT_EQUAL(n_logged, 1);
    CU_ASSERT_STRING_EQUAL(last_msg, "pool 3: gone");
    kvxi_log(KVX_LOG_DEBUG, "too verbose");
    CU_ASSERT_EQUAL(n_logged, 1);
    CU_ASSERT(!kvxi_log_enabled(KVX_LOG_INFO));
    kvx_log_set_cb(NULL, NULL, KVX_LOG_TRACE);
    kvxi_log(KVX_LOG_ERROR, "dropped");
    CU_ASSERT_EQUAL(n_logged, 1);
    CU_ASSERT_STRING_EQUAL(kvx_log_level_string(KVX_LOG_WARN), "warn");
    CU_ASSERT_STRING_EQUAL(kvx_log_level_string((kvx_log_level_t)9), "?");
}

static void test_version_string(void)
{
    CU_ASSERT_PTR_NOT_NULL_FATAL(kvx_version());
    CU_ASSERT(strchr(kvx_version(), '.') != NULL);
}

static const ut_test_t status_tests[] = {
    UT_TEST(test_status_string_distinct),
    UT_TEST(test_status_ranges),
    UT_END,
};

static const ut_test_t log_tests[] = {
    UT_TEST(test_log_level_filter),
    UT_TEST(test_version_string),
    UT_END,
};

int main(void)
{
    static const ut_suite_t suites[] = {
        {"status", status_tests},
        {"log", log_tests},
        {NULL, NULL},
    };

    return ut_main(suites);
}
