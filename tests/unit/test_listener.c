/*
 * Unit tests for libkvx/listener.c: address syntax, TCP ephemeral ports,
 * unix socket files (mode 0600, stale files, cleanup) and accepting.
 */
#include "ut.h"
#include "conn_ut.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static ut_ident_t ident;
static ut_end_t end_s;
static char dir[64];

static void fixture_init(void)
{
    ut_loop_init();
    ut_ident_init(&ident, "server:2", 2, 128);
    memset(&end_s, 0, sizeof(end_s));
    snprintf(dir, sizeof(dir), "/tmp/kvx-listener-XXXXXX");
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
}

static void fixture_fini(void)
{
    ut_end_fini(&end_s);
    CU_ASSERT_EQUAL(rmdir(dir), 0); /* every test cleaned its files */
    ut_loop_fini();
}

static void on_accept(kvxi_listener_t *l, kvxi_conn_t *conn, void *arg)
{
    int *n = arg;

    (void)l;
    (*n)++;
    kvxi_conn_destroy(end_s.conn);
    end_s.conn = conn;
}

static kvx_status_t listen_at(const char *addr, kvxi_listener_t **l_p,
                              int *accepted)
{
    kvxi_conn_config_t cfg = ut_config(&ident, &end_s, "k");

    return kvxi_listener_create(ut_base, addr, &cfg, on_accept, accepted, l_p);
}

static void test_listener_addr_parse(void)
{
    struct sockaddr_storage ss;
    char buf[160], big[200];
    socklen_t len;

    static const char *const good[] = {
        "127.0.0.1:0", "0.0.0.0:65535",    "[::1]:4000",
        "[::]:1",      "unix:/tmp/x.sock", "unix:rel.sock",
    };
    static const char *const bad[] = {
        "",        "127.0.0.1",    "127.0.0.1:",    "127.0.0.1:65536",
        ":80",     "127.0.0.1:-1", "127.0.0.1:+80", "127.0.0.1:80x",
        "::1:80",  "[::1]80",      "[::1]:",        "[nope]:80",
        "host:80", "1.2.3.4.5:80", "unix:",         "127.0.0.1:000080",
        "[]:80",
    };

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        OK(kvxi_addr_parse(good[i], &ss, &len));
        OK(kvxi_addr_format((struct sockaddr *)&ss, len, buf, sizeof(buf)));
        CU_ASSERT_STRING_EQUAL(buf, good[i]);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ERR(kvxi_addr_parse(bad[i], &ss, &len), INVALID_PARAM);
    }
    OK(kvxi_addr_parse("localhost:80", &ss, &len));
    OK(kvxi_addr_format((struct sockaddr *)&ss, len, buf, sizeof(buf)));
    CU_ASSERT_STRING_EQUAL(buf, "127.0.0.1:80");
    memset(big, 'a', sizeof(big));
    memcpy(big, "unix:/", 6);
    big[5 + 107] = '\0'; /* 107-byte path: the longest that fits */
    OK(kvxi_addr_parse(big, &ss, &len));
    big[5 + 107] = 'a';
    big[5 + 108] = '\0';
    ERR(kvxi_addr_parse(big, &ss, &len), INVALID_PARAM);
    ERR(kvxi_addr_parse(NULL, &ss, &len), INVALID_PARAM);
    ERR(kvxi_addr_parse("127.0.0.1:1", NULL, &len), INVALID_PARAM);
    ERR(kvxi_addr_format(NULL, 0, buf, sizeof(buf)), INVALID_PARAM);
}

static void test_listener_tcp_ephemeral(void)
{
    kvxi_listener_t *l = NULL, *l2 = NULL;
    char expect[64], addr[64];
    int accepted = 0;
    ut_raw_t raw;

    fixture_init();
    OK_FATAL(listen_at("127.0.0.1:0", &l, &accepted));
    CU_ASSERT(kvxi_listener_port(l) != 0);
    snprintf(expect, sizeof(expect), "127.0.0.1:%u", kvxi_listener_port(l));
    CU_ASSERT_STRING_EQUAL(kvxi_listener_addr(l), expect);
    /* The port is taken. */
    snprintf(addr, sizeof(addr), "%s", kvxi_listener_addr(l));
    ERR(listen_at(addr, &l2, &accepted), EXISTS);
    CU_ASSERT_PTR_NULL(l2);
    /* Accepted connections start in the handshake. */
    ut_raw_connect(&raw, addr, -1, NULL, NULL);
    UT_RUN_UNTIL(accepted == 1, WAIT_MS);
    CU_ASSERT_EQUAL(accepted, 1);
    CU_ASSERT_EQUAL(kvxi_conn_state(end_s.conn), KVXI_CONN_HANDSHAKE);
    CU_ASSERT_EQUAL(kvxi_conn_is_client(end_s.conn), 0);
    ut_raw_fini(&raw);
    kvxi_listener_destroy(l);
    kvxi_listener_destroy(NULL);
    CU_ASSERT_EQUAL(kvxi_listener_port(NULL), 0);
    fixture_fini();
}

static void test_listener_unix_mode_and_cleanup(void)
{
    kvxi_listener_t *l = NULL, *l2 = NULL;
    char addr[128], path[96];
    int accepted = 0;
    mode_t old;
    struct stat st;
    ut_raw_t raw;

    fixture_init();
    snprintf(path, sizeof(path), "%s/kvx.sock", dir);
    snprintf(addr, sizeof(addr), "unix:%s", path);
    old = umask(0); /* 0600 must not depend on the caller's umask */
    OK_FATAL(listen_at(addr, &l, &accepted));
    umask(old);
    CU_ASSERT_STRING_EQUAL(kvxi_listener_addr(l), addr);
    CU_ASSERT_EQUAL(kvxi_listener_port(l), 0);
    CU_ASSERT_EQUAL_FATAL(lstat(path, &st), 0);
    CU_ASSERT(S_ISSOCK(st.st_mode));
    CU_ASSERT_EQUAL(st.st_mode & 0777, 0600);
    /* A live listener is never replaced. */
    ERR(listen_at(addr, &l2, &accepted), EXISTS);
    CU_ASSERT_PTR_NULL(l2);
    /* The refused listener's liveness probe was one connection (it closes
     * at once), the raw peer is another. */
    ut_raw_connect(&raw, addr, -1, NULL, NULL);
    UT_RUN_UNTIL(accepted == 2, WAIT_MS);
    CU_ASSERT_EQUAL(accepted, 2);
    ut_raw_fini(&raw);
    kvxi_listener_destroy(l);
    CU_ASSERT_NOT_EQUAL(lstat(path, &st), 0);
    CU_ASSERT_EQUAL(errno, ENOENT);
    fixture_fini();
}

/* A socket file left by a dead process is replaced; a file that is not a
 * socket is never touched. */
static void test_listener_unix_stale_and_foreign(void)
{
    struct sockaddr_un sun;
    kvxi_listener_t *l = NULL;
    char addr[128], path[96];
    int accepted = 0, fd;
    struct stat st;
    FILE *f;

    fixture_init();
    snprintf(path, sizeof(path), "%s/kvx.sock", dir);
    snprintf(addr, sizeof(addr), "unix:%s", path);

    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
    CU_ASSERT_EQUAL_FATAL(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    close(fd); /* stale: the file stays, nobody listens */
    OK(listen_at(addr, &l, &accepted));
    kvxi_listener_destroy(l);
    l = NULL;

    f = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs("precious", f);
    fclose(f);
    ERR(listen_at(addr, &l, &accepted), EXISTS);
    CU_ASSERT_PTR_NULL(l);
    CU_ASSERT_EQUAL(lstat(path, &st), 0);
    CU_ASSERT(S_ISREG(st.st_mode));
    CU_ASSERT_EQUAL(st.st_size, 8);
    CU_ASSERT_EQUAL(unlink(path), 0);

    ERR(listen_at("unix:/nonexistent-dir/kvx.sock", &l, &accepted), IO);
    fixture_fini();
}

/* destroy() removes the socket file only if it is still the one it made. */
static void test_listener_unix_successor_kept(void)
{
    kvxi_listener_t *a = NULL, *b = NULL;
    char addr[128], path[96];
    int accepted = 0;
    struct stat st;

    fixture_init();
    snprintf(path, sizeof(path), "%s/kvx.sock", dir);
    snprintf(addr, sizeof(addr), "unix:%s", path);
    OK_FATAL(listen_at(addr, &a, &accepted));
    CU_ASSERT_EQUAL(unlink(path), 0);         /* somebody removed it ... */
    OK_FATAL(listen_at(addr, &b, &accepted)); /* ... and a successor came */
    kvxi_listener_destroy(a);
    CU_ASSERT_EQUAL(lstat(path, &st), 0); /* the successor's file stays */
    kvxi_listener_destroy(b);
    CU_ASSERT_NOT_EQUAL(lstat(path, &st), 0);
    fixture_fini();
}

static void destroy_on_accept(kvxi_listener_t *l, kvxi_conn_t *conn, void *arg)
{
    int *n = arg;

    (*n)++;
    kvxi_listener_destroy(l); /* allowed inside the callback */
    kvxi_conn_destroy(conn);
}

static void test_listener_destroy_in_accept(void)
{
    kvxi_conn_config_t cfg;
    kvxi_listener_t *l = NULL;
    int accepted = 0;
    ut_raw_t raw[2];
    char addr[64];

    fixture_init();
    cfg = ut_config(&ident, &end_s, "k");
    OK_FATAL(kvxi_listener_create(ut_base, "127.0.0.1:0", &cfg,
                                  destroy_on_accept, &accepted, &l));
    snprintf(addr, sizeof(addr), "%s", kvxi_listener_addr(l));
    ut_raw_connect(&raw[0], addr, -1, NULL, NULL);
    ut_raw_connect(&raw[1], addr, -1, NULL, NULL); /* queued behind */
    UT_RUN_UNTIL(accepted == 1 && raw[0].eof && raw[1].eof, WAIT_MS);
    CU_ASSERT_EQUAL(accepted, 1);
    CU_ASSERT(raw[0].eof && raw[1].eof);
    ut_raw_fini(&raw[0]);
    ut_raw_fini(&raw[1]);
    fixture_fini();
}

static void test_listener_bad_params(void)
{
    kvxi_conn_config_t cfg;
    kvxi_listener_t *l = NULL;
    int accepted = 0;

    fixture_init();
    cfg = ut_config(&ident, &end_s, "k");
    ERR(kvxi_listener_create(NULL, "127.0.0.1:0", &cfg, on_accept, NULL, &l),
        INVALID_PARAM);
    ERR(kvxi_listener_create(ut_base, "127.0.0.1:0", &cfg, NULL, NULL, &l),
        INVALID_PARAM);
    ERR(kvxi_listener_create(ut_base, "nowhere", &cfg, on_accept, NULL, &l),
        INVALID_PARAM);
    cfg.secret_len = KVXI_SECRET_MAX + 1;
    ERR(kvxi_listener_create(ut_base, "127.0.0.1:0", &cfg, on_accept, NULL, &l),
        INVALID_PARAM);
    cfg = ut_config(&ident, &end_s, "k");
    ident.id.instance_id = 0;
    ERR(listen_at("127.0.0.1:0", &l, &accepted), INVALID_PARAM);
    CU_ASSERT_PTR_NULL(l);
    fixture_fini();
}

static const ut_test_t listener_tests[] = {
    UT_TEST(test_listener_addr_parse),
    UT_TEST(test_listener_tcp_ephemeral),
    UT_TEST(test_listener_unix_mode_and_cleanup),
    UT_TEST(test_listener_unix_stale_and_foreign),
    UT_TEST(test_listener_unix_successor_kept),
    UT_TEST(test_listener_destroy_in_accept),
    UT_TEST(test_listener_bad_params),
    UT_END,
};

int main(void)
{
    const ut_suite_t suites[] = {{"listener", listener_tests}, {NULL, NULL}};

    return ut_main(suites);
}
