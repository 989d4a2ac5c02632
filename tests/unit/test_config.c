/* Unit tests for daemon/config.c: kvxd's configuration table. */
#include "ut.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

static const char *doc_path;

static void test_config_defaults_valid(void)
{
    kvxd_config_t cfg;
    char err[256];

    kvxd_config_defaults(&cfg);
    CU_ASSERT_STRING_EQUAL(cfg.listen, "127.0.0.1:7600");
    CU_ASSERT_EQUAL(cfg.pool_blocks, 1024);
    CU_ASSERT_EQUAL(cfg.transport, 0);
    CU_ASSERT_EQUAL(cfg.log_level, KVX_LOG_INFO);
    /* Every default passes its own option's checks. */
    for (const kvxd_opt_t *o = kvxd_opts; o->name != NULL; o++) {
        CU_ASSERT_EQUAL(
            kvxd_config_set(&cfg, o->name, o->def, err, sizeof(err)), KVX_OK);
        CU_ASSERT_PTR_NOT_NULL(o->doc);
    }
}

static void test_config_set_bad_values(void)
{
    kvxd_config_t cfg;
    char err[256], big[2 * KVXD_STR_MAX];

    kvxd_config_defaults(&cfg);
    CU_ASSERT_EQUAL(kvxd_config_set(&cfg, "no_such", "1", err, sizeof(err)),
                    KVX_ERR_NOT_FOUND);
    CU_ASSERT(strstr(err, "no_such") != NULL);
    CU_ASSERT_EQUAL(kvxd_config_set(&cfg, "pool_blocks", "0", err, sizeof(err)),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT(strstr(err, "pool_blocks") != NULL);
    CU_ASSERT_EQUAL(
        kvxd_config_set(&cfg, "pool_blocks", "-5", err, sizeof(err)),
        KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(
        kvxd_config_set(&cfg, "pool_blocks", "12x", err, sizeof(err)),
        KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvxd_config_set(&cfg, "kv_parts", "3", err, sizeof(err)),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvxd_config_set(&cfg, "model_id", "99999999999999999999999",
                                    err, sizeof(err)),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(
        kvxd_config_set(&cfg, "transport", "rdma", err, sizeof(err)),
        KVX_ERR_INVALID_PARAM);
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    CU_ASSERT_EQUAL(kvxd_config_set(&cfg, "node_id", big, err, sizeof(err)),
                    KVX_ERR_INVALID_PARAM);
    /* Failed sets change nothing. */
    CU_ASSERT_EQUAL(cfg.pool_blocks, 1024);
    CU_ASSERT_STRING_EQUAL(cfg.node_id, "kvxd");
    CU_ASSERT_EQUAL(
        kvxd_config_set(&cfg, "pool_blocks", "0x10", err, sizeof(err)), KVX_OK);
    CU_ASSERT_EQUAL(cfg.pool_blocks, 16);
    CU_ASSERT_EQUAL(kvxd_config_set(&cfg, "transport", "am", err, sizeof(err)),
                    KVX_OK);
    CU_ASSERT_EQUAL(cfg.transport, 2);
}

static void test_config_parse_file_text(void)
{
    static const char text[] = "# kvxd\n"
                               "\n"
                               "  node_id = prefill-0  \n"
                               "listen=\"127.0.0.1:9000\"\r\n"
                               "pool_blocks = 64 # not a comment: bad\n";
    kvxd_config_t cfg;
    char err[256];

    kvxd_config_defaults(&cfg);
    CU_ASSERT_EQUAL(
        kvxd_config_parse(&cfg, text, strlen(text), err, sizeof(err)),
        KVX_ERR_INVALID_PARAM);
    CU_ASSERT(strstr(err, "line 5") != NULL);
    CU_ASSERT_STRING_EQUAL(cfg.node_id, "prefill-0");
    CU_ASSERT_STRING_EQUAL(cfg.listen, "127.0.0.1:9000");

    CU_ASSERT_EQUAL(kvxd_config_parse(&cfg, "pool_blocks = 64\nkv_heads=4", 27,
                                      err, sizeof(err)),
                    KVX_OK);
    CU_ASSERT_EQUAL(cfg.pool_blocks, 64);
    CU_ASSERT_EQUAL(cfg.kv_heads, 4);
    CU_ASSERT_EQUAL(
        kvxd_config_parse(&cfg, "just words\n", 11, err, sizeof(err)),
        KVX_ERR_INVALID_PARAM);
    CU_ASSERT(strstr(err, "line 1") != NULL);
    CU_ASSERT_EQUAL(
        kvxd_config_parse(&cfg, "bogus = 1\n", 10, err, sizeof(err)),
        KVX_ERR_NOT_FOUND);
    CU_ASSERT_EQUAL(
        kvxd_config_parse(&cfg, "node_id = a\0b\n", 14, err, sizeof(err)),
        KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(kvxd_config_parse(&cfg, "", 0, err, sizeof(err)), KVX_OK);
}

static void test_config_parse_long_line(void)
{
    size_t len = 10000;
    char *text = malloc(len);
    kvxd_config_t cfg;
    char err[256];

    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    memset(text, 'x', len);
    kvxd_config_defaults(&cfg);
    CU_ASSERT_EQUAL(kvxd_config_parse(&cfg, text, len, err, sizeof(err)),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT(strstr(err, "longer") != NULL);
    free(text);
}

static void test_config_env_and_args(void)
{
    char *envp[] = {"PATH=/bin", "KVX_POOL_BLOCKS=77", "KVX_LISTEN_X=nope",
                    "KVX_LOG_LEVEL=debug", NULL};
    char *bad_env[] = {"KVX_HEAD_DIM=zero", NULL};
    char *argv[] = {"--pool_blocks=99", "--node_id", "decode-1", "--bogus",
                    "x"};
    char *argv_short[] = {"--listen"};
    kvxd_config_t cfg;
    char err[256];
    int next = -1;

    kvxd_config_defaults(&cfg);
    CU_ASSERT_EQUAL(kvxd_config_env(&cfg, envp, err, sizeof(err)), KVX_OK);
    CU_ASSERT_EQUAL(cfg.pool_blocks, 77);
    CU_ASSERT_EQUAL(cfg.log_level, KVX_LOG_DEBUG);
    CU_ASSERT_STRING_EQUAL(cfg.listen, "127.0.0.1:7600");
    CU_ASSERT_EQUAL(kvxd_config_env(&cfg, bad_env, err, sizeof(err)),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT(strstr(err, "head_dim") != NULL);

    /* Flags override the environment; parsing stops at an unknown one. */
    CU_ASSERT_EQUAL(kvxd_config_args(&cfg, 5, argv, &next, err, sizeof(err)),
                    KVX_OK);
    CU_ASSERT_EQUAL(next, 3);
    CU_ASSERT_EQUAL(cfg.pool_blocks, 99);
    CU_ASSERT_STRING_EQUAL(cfg.node_id, "decode-1");
    CU_ASSERT_EQUAL(
        kvxd_config_args(&cfg, 1, argv_short, &next, err, sizeof(err)),
        KVX_ERR_INVALID_PARAM);
    CU_ASSERT(strstr(err, "--listen") != NULL);
}

static void test_config_load_file(void)
{
    char path[] = "/tmp/kvx-config-XXXXXX", err[256];
    kvxd_config_t cfg;
    FILE *f;
    int fd = mkstemp(path);

    CU_ASSERT_FATAL(fd >= 0);
    f = fdopen(fd, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs("head_dim = 64\n", f);
    fclose(f);
    kvxd_config_defaults(&cfg);
    CU_ASSERT_EQUAL(kvxd_config_load(&cfg, path, err, sizeof(err)), KVX_OK);
    CU_ASSERT_EQUAL(cfg.head_dim, 64);
    unlink(path);
    CU_ASSERT_EQUAL(kvxd_config_load(&cfg, path, err, sizeof(err)), KVX_ERR_IO);
    CU_ASSERT(strstr(err, path) != NULL);
}

/* engine_allow_uids / engine_allow_gids: lists of numeric ids; anything
 * else is refused naming the option, and changes nothing. */
static void test_config_engine_allow_ids(void)
{
    static const char *const bad[] = {
        "abc",  "1,,2", "1,",         ",1",          "-1",  "1 2",
        "0x10", "1;2",  "4294967295", "99999999999", "1,x", " , ",
    };
    static const char quoted[] = "engine_allow_uids = \"7,8\"\n";
    static const char spaced[] = "engine_allow_uids = 7 8\n";
    char *envp[] = {"KVX_ENGINE_ALLOW_GIDS=44, 45", NULL};
    char many[64 * 4 + 8] = "", err[256];
    kvxd_config_t cfg;

    kvxd_config_defaults(&cfg);
    CU_ASSERT_EQUAL(cfg.engine_allow_uids.n, 0);
    CU_ASSERT_EQUAL(cfg.engine_allow_gids.n, 0);
    CU_ASSERT_EQUAL(cfg.handshake_ms, 5000);
    CU_ASSERT_EQUAL(kvxd_config_set(&cfg, "engine_allow_uids",
                                    " 1000, 0 ,4294967294", err, sizeof(err)),
                    KVX_OK);
    CU_ASSERT_EQUAL(cfg.engine_allow_uids.n, 3);
    CU_ASSERT_EQUAL(cfg.engine_allow_uids.ids[0], 1000);
    CU_ASSERT_EQUAL(cfg.engine_allow_uids.ids[1], 0);
    CU_ASSERT_EQUAL(cfg.engine_allow_uids.ids[2], 4294967294u);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        CU_ASSERT_EQUAL(kvxd_config_set(&cfg, "engine_allow_uids", bad[i], err,
                                        sizeof(err)),
                        KVX_ERR_INVALID_PARAM);
        CU_ASSERT(strstr(err, "engine_allow_uids") != NULL);
        CU_ASSERT_EQUAL(cfg.engine_allow_uids.n, 3); /* unchanged */
    }
    /* at most KVXD_IDS_MAX ids */
    for (int i = 0; i < KVXD_IDS_MAX; i++) {
        snprintf(many + strlen(many), sizeof(many) - strlen(many), "%s%d",
                 i > 0 ? "," : "", i + 1);
    }
    CU_ASSERT_EQUAL(
        kvxd_config_set(&cfg, "engine_allow_gids", many, err, sizeof(err)),
        KVX_OK);
    CU_ASSERT_EQUAL(cfg.engine_allow_gids.n, KVXD_IDS_MAX);
    snprintf(many + strlen(many), sizeof(many) - strlen(many), ",7");
    CU_ASSERT_EQUAL(
        kvxd_config_set(&cfg, "engine_allow_gids", many, err, sizeof(err)),
        KVX_ERR_INVALID_PARAM);
    CU_ASSERT(strstr(err, "engine_allow_gids") != NULL);
    /* the environment, and "" empties a list again */
    CU_ASSERT_EQUAL(kvxd_config_env(&cfg, envp, err, sizeof(err)), KVX_OK);
    CU_ASSERT_EQUAL(cfg.engine_allow_gids.n, 2);
    CU_ASSERT_EQUAL(cfg.engine_allow_gids.ids[1], 45);
    CU_ASSERT_EQUAL(cfg.engine_allow_gids.ids[2], 0); /* no stale entries */
    CU_ASSERT_EQUAL(
        kvxd_config_set(&cfg, "engine_allow_uids", "", err, sizeof(err)),
        KVX_OK);
    CU_ASSERT_EQUAL(cfg.engine_allow_uids.n, 0);
    /* a file line, quoted or not */
    CU_ASSERT_EQUAL(
        kvxd_config_parse(&cfg, quoted, strlen(quoted), err, sizeof(err)),
        KVX_OK);
    CU_ASSERT_EQUAL(cfg.engine_allow_uids.n, 2);
    CU_ASSERT_EQUAL(
        kvxd_config_parse(&cfg, spaced, strlen(spaced), err, sizeof(err)),
        KVX_ERR_INVALID_PARAM);
    CU_ASSERT(strstr(err, "line 1: engine_allow_uids") != NULL);
    /* handshake_ms: 10 ms .. 10 min */
    CU_ASSERT_EQUAL(
        kvxd_config_set(&cfg, "handshake_ms", "0", err, sizeof(err)),
        KVX_ERR_INVALID_PARAM);
    CU_ASSERT(strstr(err, "handshake_ms") != NULL);
    CU_ASSERT_EQUAL(
        kvxd_config_set(&cfg, "handshake_ms", "600001", err, sizeof(err)),
        KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(
        kvxd_config_set(&cfg, "handshake_ms", "200", err, sizeof(err)), KVX_OK);
    CU_ASSERT_EQUAL(cfg.handshake_ms, 200);
    /* poll_us: 0 (never poll) .. 1 s; am_chunk: 4 KiB .. 1 GiB */
    CU_ASSERT_EQUAL(cfg.poll_us, 100);
    CU_ASSERT_EQUAL(cfg.am_chunk, 4u << 20);
    CU_ASSERT_EQUAL(kvxd_config_set(&cfg, "poll_us", "0", err, sizeof(err)),
                    KVX_OK);
    CU_ASSERT_EQUAL(cfg.poll_us, 0);
    CU_ASSERT_EQUAL(
        kvxd_config_set(&cfg, "poll_us", "1000001", err, sizeof(err)),
        KVX_ERR_INVALID_PARAM);
    CU_ASSERT(strstr(err, "poll_us") != NULL);
    CU_ASSERT_EQUAL(kvxd_config_set(&cfg, "am_chunk", "4095", err, sizeof(err)),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT(strstr(err, "am_chunk") != NULL);
    CU_ASSERT_EQUAL(
        kvxd_config_set(&cfg, "am_chunk", "1048576", err, sizeof(err)), KVX_OK);
    CU_ASSERT_EQUAL(cfg.am_chunk, 1u << 20);
}

/* --print-config output parses back into the same configuration. */
static void test_config_print_round_trip(void)
{
    kvxd_config_t a, b;
    char *text = NULL, err[256];
    size_t len = 0;
    FILE *f;

    kvxd_config_defaults(&a);
    CU_ASSERT_EQUAL(kvxd_config_set(&a, "peers", "10.0.0.2:7600,10.0.0.3:7600",
                                    err, sizeof(err)),
                    KVX_OK);
    CU_ASSERT_EQUAL(kvxd_config_set(&a, "transport", "rma", err, sizeof(err)),
                    KVX_OK);
    CU_ASSERT_EQUAL(kvxd_config_set(&a, "engine_allow_gids", "5, 4294967294",
                                    err, sizeof(err)),
                    KVX_OK);
    CU_ASSERT_EQUAL(
        kvxd_config_set(&a, "engine_allow_uids", "1001", err, sizeof(err)),
        KVX_OK);
    f = open_memstream(&text, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    kvxd_config_print(&a, f);
    fclose(f);
    memset(&b, 0, sizeof(b));
    kvxd_config_defaults(&b);
    b.pool_blocks = 5;
    CU_ASSERT_EQUAL(kvxd_config_parse(&b, text, len, err, sizeof(err)), KVX_OK);
    CU_ASSERT_EQUAL(memcmp(&a, &b, sizeof(a)), 0);
    free(text);
}

/* A string value with a line break (from the environment or a flag) would
 * make --print-config write a file that does not read back (found by
 * fuzz_config); control characters other than tab are refused. */
static void test_config_string_control_chars(void)
{
    char *const envp[] = {(char *)"KVX_NODE_ID=a\nlisten = 0.0.0.0:1", NULL};
    char *argv[] = {(char *)"--peers=10.0.0.2:7600\r\n", NULL};
    kvxd_config_t cfg;
    char err[256];
    int next = -1;

    kvxd_config_defaults(&cfg);
    CU_ASSERT_EQUAL(kvxd_config_env(&cfg, envp, err, sizeof(err)),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT(strstr(err, "node_id") != NULL);
    CU_ASSERT_STRING_EQUAL(cfg.node_id, "kvxd");
    CU_ASSERT_EQUAL(kvxd_config_args(&cfg, 1, argv, &next, err, sizeof(err)),
                    KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(
        kvxd_config_set(&cfg, "ucx_tls", "tcp\x01", err, sizeof(err)),
        KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(
        kvxd_config_set(&cfg, "ucx_tls", "tcp\x7f", err, sizeof(err)),
        KVX_ERR_INVALID_PARAM);
    CU_ASSERT_EQUAL(
        kvxd_config_set(&cfg, "peers", "a:1,\tb:2", err, sizeof(err)), KVX_OK);
    CU_ASSERT_EQUAL(kvxd_config_set(&cfg, "node_id",
                                    "d\xc3\xa9"
                                    "code",
                                    err, sizeof(err)),
                    KVX_OK); /* UTF-8 is fine */
}

/* docs/config.md carries the table exactly as the code prints it. */
static void test_config_doc_is_current(void)
{
    char *table = NULL, *doc;
    size_t len = 0, doc_len;
    FILE *f;

    if (doc_path == NULL) {
        return;
    }
    f = open_memstream(&table, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    kvxd_config_print_doc(f);
    fclose(f);
    f = fopen(doc_path, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    doc = malloc(1 << 20);
    CU_ASSERT_PTR_NOT_NULL_FATAL(doc);
    doc_len = fread(doc, 1, (1 << 20) - 1, f);
    doc[doc_len] = '\0';
    fclose(f);
    if (strstr(doc, table) == NULL) {
        fprintf(stderr,
                "docs/config.md is out of date; its table must be:\n"
                "%s",
                table);
        CU_FAIL("docs/config.md table differs from the option table");
    }
    free(doc);
    free(table);
}

static const ut_test_t config_tests[] = {
    UT_TEST(test_config_defaults_valid),
    UT_TEST(test_config_set_bad_values),
    UT_TEST(test_config_parse_file_text),
    UT_TEST(test_config_parse_long_line),
    UT_TEST(test_config_env_and_args),
    UT_TEST(test_config_load_file),
    UT_TEST(test_config_engine_allow_ids),
    UT_TEST(test_config_print_round_trip),
    UT_TEST(test_config_string_control_chars),
    UT_TEST(test_config_doc_is_current),
    UT_END,
};

int main(int argc, char **argv)
{
    static const ut_suite_t suites[] = {
        {"config", config_tests},
        {NULL, NULL},
    };

    doc_path = argc > 1 ? argv[1] : NULL;
    return ut_main(suites);
}
