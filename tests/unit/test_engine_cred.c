/*
 * Unit tests for libkvx/engine_cred.c: who may attach on a node's engine
 * socket (kvx_node_params_t::engine_allow_uids / _gids) and the socket
 * file's mode. Attaching processes are this binary re-executed as
 * "--attach MODE PATH UID GID [GROUP ...]": the child takes those
 * credentials (setgroups, setgid, setuid) before it connects, so the node
 * sees them through SO_PEERCRED, and reports what happened in its exit
 * code. Changing credentials needs root: exits 77 otherwise.
 */
#include "engine_ut.h"

#include <errno.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <kvx/client.h>

/* Exit codes of the attaching child. */
enum {
    CH_ATTACHED = 0,     /* AttachReply OK (and the pool's memfd) */
    CH_REFUSED = 10,     /* Error(AUTH) naming its uid, no memfd, EOF */
    CH_UNREACHABLE = 11, /* raw connect() refused by the file's mode */
    CH_SETUP = 12,       /* could not take the credentials */
    CH_OTHER = 13,       /* anything else (printed) */
    CH_FLOOD_OK = 20     /* "flood": as expected */
};

#define CH_WAIT_MS 4000u
#define FLOOD_N (KVXI_ENGINE_REFUSED_MAX + 4)

static char log_buf[8192];

static void cred_log(kvx_log_level_t level, const char *msg, void *arg)
{
    size_t len = strlen(log_buf);

    (void)arg;
    fprintf(stderr, "[kvx %d] %s\n", (int)level, msg);
    snprintf(log_buf + len, sizeof(log_buf) - len, "%s\n", msg);
}

/* ------------------------------------------------------------------------
 * The child (a fresh process: exec'd, so no state of the parent's node).
 */

static int ch_connect(const char *path)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int ch_send_attach(int fd)
{
    kvxi_envelope_t env = KVX__V1__ENVELOPE__INIT;
    Kvx__V1__Attach a = KVX__V1__ATTACH__INIT;
    uint8_t buf[256];
    size_t len = 0;

    a.min_version = a.max_version = 1;
    a.client_name = (char *)"cred-child";
    env.version = 1;
    env.request_id = 1;
    env.body_case = B(ATTACH);
    env.attach = &a;
    return kvxi_frame_encode(&env, buf, sizeof(buf), &len) == KVX_OK &&
                   send(fd, buf, len, MSG_NOSIGNAL) == (ssize_t)len
               ? 0
               : -1;
}

/* Reads one frame (or EOF: *env_p NULL) within @p ms; notes a received
 * descriptor in *got_fd_p. Returns -1 on timeout or error. */
static int ch_read(int fd, uint32_t ms, kvxi_envelope_t **env_p, int *got_fd_p)
{
    static uint8_t buf[1 << 16];
    static size_t len;
    uint64_t end = kvx_clock_monotonic_ns(NULL) + ms * 1000000ull;

    *env_p = NULL;
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        uint64_t now = kvx_clock_monotonic_ns(NULL);
        int got = -1;
        size_t used = 0;
        ssize_t n;

        if (kvxi_frame_decode(buf, len, 0, env_p, &used) == KVX_OK) {
            memmove(buf, buf + used, len - used);
            len -= used;
            return 0;
        }
        if (now >= end ||
            poll(&pfd, 1, (int)((end - now) / 1000000u) + 1) <= 0) {
            return -1;
        }
        n = eut_recv_fd(fd, buf + len, sizeof(buf) - len, 0, &got);
        if (n <= 0) {
            len = 0;
            return n == 0 || errno == ECONNRESET ? 0 : -1; /* EOF */
        }
        if (got >= 0) {
            *got_fd_p = 1;
            close(got);
        }
        len += (size_t)n;
    }
}

/* Raw attach: the node's answer, checked frame by frame. */
static int ch_attach_raw(const char *path, uid_t uid)
{
    kvxi_envelope_t *env = NULL;
    char want[32];
    int fd = ch_connect(path), got_fd = 0, rc = CH_OTHER;

    if (fd < 0) {
        return errno == EACCES ? CH_UNREACHABLE : CH_OTHER;
    }
    if (ch_send_attach(fd) != 0 || ch_read(fd, CH_WAIT_MS, &env, &got_fd) ||
        env == NULL) {
        fprintf(stderr, "child: no answer to Attach\n");
        close(fd);
        return CH_OTHER;
    }
    snprintf(want, sizeof(want), "uid %u ", (unsigned)uid);
    if (env->body_case == B(ATTACH_REPLY) &&
        env->attach_reply->status == WIRE(KVX_OK) && got_fd) {
        rc = CH_ATTACHED;
    } else if (env->body_case == B(ERROR) &&
               env->error->code == WIRE(KVX_ERR_AUTH) &&
               env->error->request_id == 1 && env->request_id == 1 &&
               strstr(env->error->message, want) != NULL && !got_fd) {
        kvxi_frame_free(env);
        env = NULL;
        /* then the end of the session, and still no descriptor */
        rc = ch_read(fd, CH_WAIT_MS, &env, &got_fd) == 0 && env == NULL &&
                     !got_fd
                 ? CH_REFUSED
                 : CH_OTHER;
    } else {
        fprintf(stderr, "child: unexpected %s (fd %d)\n",
                kvxi_envelope_body_name(env), got_fd);
    }
    kvxi_frame_free(env);
    close(fd);
    return rc;
}

/* Through the client library: the status an engine sees. */
static int ch_attach_client(const char *path)
{
    kvx_client_params_t cp = {.field_mask = KVX_CLIENT_PARAM_FIELD_TIMEOUT,
                              .timeout_ms = CH_WAIT_MS};
    kvx_client_h c = NULL;
    kvx_status_t st = kvx_client_attach(path, &cp, &c);

    kvx_client_detach(c);
    switch (st) {
    case KVX_OK: return CH_ATTACHED;
    case KVX_ERR_AUTH: return CH_REFUSED;
    case KVX_ERR_PEER_UNREACHABLE: return CH_UNREACHABLE;
    default:
        fprintf(stderr, "child: kvx_client_attach: %s\n",
                kvx_status_string(st));
        return CH_OTHER;
    }
}

/*
 * FLOOD_N refused connections at once: the node keeps
 * KVXI_ENGINE_REFUSED_MAX of them to answer and closes the others at once
 * without a word; a refused peer's frame limit is the handshake's (64 KiB):
 * a bigger header ends it with Error(AUTH); the silent ones get Error(AUTH)
 * when the attach timeout ends.
 */
static int ch_flood(const char *path)
{
    static const uint8_t big[] = {0x00, 0x10, 0x00, 0x00}; /* 1 MiB */
    int fds[FLOOD_N], answered[FLOOD_N] = {0}, plain_eof = 0, first = -1;
    uint64_t end;

    for (unsigned i = 0; i < FLOOD_N; i++) {
        fds[i] = ch_connect(path);
        if (fds[i] < 0) {
            return CH_OTHER;
        }
    }
    /* the ones closed at once: EOF without a frame */
    end = kvx_clock_monotonic_ns(NULL) + CH_WAIT_MS * 1000000ull;
    while (plain_eof < (int)(FLOOD_N - KVXI_ENGINE_REFUSED_MAX) &&
           kvx_clock_monotonic_ns(NULL) < end) {
        for (unsigned i = 0; i < FLOOD_N; i++) {
            char b;

            if (!answered[i] &&
                recv(fds[i], &b, 1, MSG_DONTWAIT | MSG_PEEK) == 0) {
                answered[i] = 1;
                plain_eof++;
            }
        }
        usleep(1000);
    }
    for (unsigned i = 0; i < FLOOD_N && first < 0; i++) {
        first = answered[i] ? -1 : (int)i;
    }
    if (plain_eof != (int)(FLOOD_N - KVXI_ENGINE_REFUSED_MAX) || first < 0 ||
        send(fds[first], big, sizeof(big), MSG_NOSIGNAL) != sizeof(big)) {
        fprintf(stderr, "child: %d closed at once\n", plain_eof);
        return CH_OTHER;
    }
    /* every kept one: Error(AUTH), then EOF, never a descriptor */
    for (unsigned i = 0; i < FLOOD_N; i++) {
        kvxi_envelope_t *env = NULL;
        int got_fd = 0, ok;

        if (answered[i]) {
            continue;
        }
        ok = ch_read(fds[i], 3 * KVXI_ENGINE_ATTACH_MS, &env, &got_fd) == 0 &&
             env != NULL && env->body_case == B(ERROR) &&
             env->error->code == WIRE(KVX_ERR_AUTH);
        kvxi_frame_free(env);
        env = NULL;
        ok = ok && ch_read(fds[i], CH_WAIT_MS, &env, &got_fd) == 0 &&
             env == NULL && !got_fd;
        if (!ok) {
            fprintf(stderr, "child: connection %u not refused\n", i);
            return CH_OTHER;
        }
        close(fds[i]);
    }
    return CH_FLOOD_OK;
}

static int child_main(int argc, char **argv)
{
    gid_t groups[8];
    size_t n = 0;
    uid_t uid;
    gid_t gid;

    if (argc < 6) {
        return CH_SETUP;
    }
    uid = (uid_t)strtoul(argv[4], NULL, 10);
    gid = (gid_t)strtoul(argv[5], NULL, 10);
    for (int i = 6; i < argc && n < 8; i++) {
        groups[n++] = (gid_t)strtoul(argv[i], NULL, 10);
    }
    if (setgroups(n, groups) != 0 || setgid(gid) != 0 || setuid(uid) != 0 ||
        getuid() != uid || geteuid() != uid) {
        perror("child: taking credentials");
        return CH_SETUP;
    }
    if (strcmp(argv[2], "raw") == 0) {
        return ch_attach_raw(argv[3], uid);
    }
    if (strcmp(argv[2], "client") == 0) {
        return ch_attach_client(argv[3]);
    }
    return strcmp(argv[2], "flood") == 0 ? ch_flood(argv[3]) : CH_SETUP;
}

/* ------------------------------------------------------------------------
 * The parent's side.
 */

/* Runs the child with @p mode and credentials, progressing the node until
 * it exits; returns its exit code (-1: it hung and was killed). */
static int child_run(const char *mode, unsigned uid, unsigned gid,
                     const unsigned *groups, unsigned n_groups)
{
    char ids[10][16], *argv[16];
    uint64_t end = kvx_clock_monotonic_ns(NULL) + 30000000000ull;
    unsigned na = 0;
    int status;
    pid_t pid;

    argv[na++] = (char *)"test_engine_cred";
    argv[na++] = (char *)"--attach";
    argv[na++] = (char *)mode;
    argv[na++] = eut_sock_path;
    snprintf(ids[0], sizeof(ids[0]), "%u", uid);
    snprintf(ids[1], sizeof(ids[1]), "%u", gid);
    argv[na++] = ids[0];
    argv[na++] = ids[1];
    for (unsigned i = 0; i < n_groups && i < 8; i++) {
        snprintf(ids[2 + i], sizeof(ids[2 + i]), "%u", groups[i]);
        argv[na++] = ids[2 + i];
    }
    argv[na] = NULL;
    pid = fork();
    if (pid == 0) {
        /* root again (test_engine_cred_node_user lowers our euid) */
        if (geteuid() != 0 && seteuid(0) != 0) {
            _exit(CH_SETUP);
        }
        execv("/proc/self/exe", argv);
        _exit(127);
    }
    CU_ASSERT_FATAL(pid > 0);
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (kvx_clock_monotonic_ns(NULL) >= end) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        kvx_node_progress(eut_drive_a, 5);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* A node serving eut_sock_path with these allow lists (ENGINE_ALLOW always
 * set). The socket's folder is opened for the children's search. */
static kvx_node_h cred_node(const uint32_t *uids, uint32_t n_uids,
                            const uint32_t *gids, uint32_t n_gids)
{
    kvx_layout_params_t lp = nut_layout(EUT_BLOCKS); /* eut_wait_idle() */
    kvx_node_params_t np = {
        .field_mask =
            KVX_NODE_PARAM_FIELD_NODE_ID | KVX_NODE_PARAM_FIELD_LAYOUT |
            KVX_NODE_PARAM_FIELD_UCX_TLS | KVX_NODE_PARAM_FIELD_ENGINE_SOCKET |
            KVX_NODE_PARAM_FIELD_ENGINE_ALLOW,
        .node_id = "cred",
        .layout = &lp,
        .ucx_tls = NUT_TLS_TCP,
        .engine_socket = eut_sock_path,
        .engine_allow_uids = uids,
        .n_engine_allow_uids = n_uids,
        .engine_allow_gids = gids,
        .n_engine_allow_gids = n_gids,
    };
    char dir[sizeof(eut_sock_path)];
    kvx_node_h node = NULL;

    snprintf(dir, sizeof(dir), "%s", eut_sock_path);
    *strrchr(dir, '/') = '\0';
    CU_ASSERT_EQUAL_FATAL(chmod(dir, 0711), 0);
    kvx_log_set_cb(cred_log, NULL, KVX_LOG_WARN);
    log_buf[0] = '\0';
    eut_drive_a = eut_drive_b = NULL;
    CU_ASSERT_EQUAL_FATAL(kvx_node_create(&np, &node), KVX_OK);
    eut_drive_a = node;
    return node;
}

/* The socket file's mode and group. */
static void check_sock(mode_t mode, gid_t group)
{
    struct stat st;

    CU_ASSERT_EQUAL_FATAL(lstat(eut_sock_path, &st), 0);
    CU_ASSERT(S_ISSOCK(st.st_mode));
    CU_ASSERT_EQUAL(st.st_mode & 0777, mode);
    CU_ASSERT_EQUAL(st.st_gid, group);
    CU_ASSERT_EQUAL(st.st_uid, geteuid());
}

/* After refusals: the node still serves its own user, nothing is held,
 * no refused session is left. */
static void check_unaffected(kvx_node_h node)
{
    kvx_alloc_attr_t a;
    tc_t *c = tc_attached();

    tc_close(c);
    a = eut_wait_idle(node, TC_WAIT_MS, 5);
    CU_ASSERT_EQUAL(a.n_free + a.n_cached, EUT_BLOCKS);
    CU_ASSERT_EQUAL(node->engine->n_refused, 0);
}

static void test_engine_cred_params(void)
{
    static const uint32_t bad_id[] = {5, UINT32_MAX};
    uint32_t many[KVX_NODE_ENGINE_ALLOW_MAX + 1] = {0};
    kvx_layout_params_t lp = nut_layout(16);
    kvx_node_params_t np = {
        .field_mask = KVX_NODE_PARAM_FIELD_NODE_ID |
                      KVX_NODE_PARAM_FIELD_LAYOUT |
                      KVX_NODE_PARAM_FIELD_ENGINE_SOCKET |
                      KVX_NODE_PARAM_FIELD_ENGINE_ALLOW,
        .node_id = "p",
        .layout = &lp,
        .engine_socket = eut_sock_path,
    };
    kvx_node_h node = NULL;

    np.n_engine_allow_uids = 1; /* NULL with a count */
    CU_ASSERT_EQUAL(kvx_node_create(&np, &node), KVX_ERR_INVALID_PARAM);
    np.n_engine_allow_uids = 0;
    np.n_engine_allow_gids = 1;
    CU_ASSERT_EQUAL(kvx_node_create(&np, &node), KVX_ERR_INVALID_PARAM);
    np.engine_allow_gids = bad_id; /* (uint32_t)-1 */
    np.n_engine_allow_gids = 2;
    CU_ASSERT_EQUAL(kvx_node_create(&np, &node), KVX_ERR_INVALID_PARAM);
    np.engine_allow_gids = NULL;
    np.n_engine_allow_gids = 0;
    np.engine_allow_uids = many; /* too many */
    np.n_engine_allow_uids = KVX_NODE_ENGINE_ALLOW_MAX + 1;
    CU_ASSERT_EQUAL(kvx_node_create(&np, &node), KVX_ERR_INVALID_PARAM);
    CU_ASSERT_PTR_NULL(node);
    CU_ASSERT_NOT_EQUAL(access(eut_sock_path, F_OK), 0);
    np.n_engine_allow_uids = KVX_NODE_ENGINE_ALLOW_MAX; /* empty lists ok */
    CU_ASSERT_EQUAL_FATAL(kvx_node_create(&np, &node), KVX_OK);
    check_sock(0600, getegid()); /* only root (0) listed: nothing widened */
    kvx_node_destroy(node);
}

/* Without lists: 0600, so another user cannot even connect (the client
 * library says KVX_ERR_AUTH); root can. */
static void test_engine_cred_default(void)
{
    kvx_node_h node = cred_node(NULL, 0, NULL, 0);

    check_sock(0600, getegid());
    CU_ASSERT_EQUAL(child_run("raw", 4242, 4242, NULL, 0), CH_UNREACHABLE);
    /* the client names it: a permission problem, not a missing node */
    CU_ASSERT_EQUAL(child_run("client", 4242, 4242, NULL, 0), CH_REFUSED);
    CU_ASSERT_EQUAL(child_run("raw", 0, 0, NULL, 0), CH_ATTACHED);
    check_unaffected(node);
    kvx_node_destroy(node);
}

/* Another uid allowed: the file is 0666, an unlisted uid reaches it and
 * is refused by its credentials (named error, no memfd, a warning with
 * pid, uid and gid); the listed uid attaches. */
static void test_engine_cred_uids(void)
{
    static const uint32_t uids[] = {4243};
    kvx_node_h node = cred_node(uids, 1, NULL, 0);

    check_sock(0666, getegid());
    CU_ASSERT_EQUAL(child_run("raw", 4242, 4242, NULL, 0), CH_REFUSED);
    CU_ASSERT_PTR_NOT_NULL(strstr(log_buf, "refused a connection from pid "));
    CU_ASSERT_PTR_NOT_NULL(strstr(log_buf, "uid 4242 gid 4242"));
    CU_ASSERT_EQUAL(child_run("client", 4242, 4242, NULL, 0), CH_REFUSED);
    CU_ASSERT_EQUAL(child_run("client", 4243, 4243, NULL, 0), CH_ATTACHED);
    CU_ASSERT_EQUAL(child_run("raw", 4243, 4300, NULL, 0), CH_ATTACHED);
    check_unaffected(node);
    kvx_node_destroy(node);
}

/* One gid allowed: 0660 with that group; its members attach through their
 * primary or a supplementary group; others cannot reach the file. */
static void test_engine_cred_gid(void)
{
    static const uint32_t gids[] = {4300};
    static const unsigned sup[] = {4301, 4300};
    kvx_node_h node = cred_node(NULL, 0, gids, 1);

    check_sock(0660, 4300);
    CU_ASSERT_EQUAL(child_run("raw", 4244, 4300, NULL, 0), CH_ATTACHED);
    CU_ASSERT_EQUAL(child_run("client", 4245, 4302, sup, 2), CH_ATTACHED);
    CU_ASSERT_EQUAL(child_run("raw", 4246, 4302, sup, 1), CH_UNREACHABLE);
    check_unaffected(node);
    kvx_node_destroy(node);
}

/* Two gids and a uid: 0666 (members of the second group are "others" to
 * the file), group the first; credentials decide. */
static void test_engine_cred_mixed(void)
{
    static const uint32_t uids[] = {4247}, gids[] = {4300, 4301};
    static const unsigned sup[] = {4301};
    kvx_node_h node = cred_node(uids, 1, gids, 2);

    check_sock(0666, 4300);
    CU_ASSERT_EQUAL(child_run("raw", 4246, 4302, NULL, 0), CH_REFUSED);
    CU_ASSERT_EQUAL(child_run("raw", 4248, 4301, NULL, 0), CH_ATTACHED);
    CU_ASSERT_EQUAL(child_run("raw", 4249, 4302, sup, 1), CH_ATTACHED);
    CU_ASSERT_EQUAL(child_run("client", 4247, 4302, NULL, 0), CH_ATTACHED);
    check_unaffected(node);
    kvx_node_destroy(node);
}

/* The node's own (effective) uid may attach without being listed. */
static void test_engine_cred_node_user(void)
{
    static const uint32_t uids[] = {4252};
    kvx_node_h node = cred_node(uids, 1, NULL, 0);
    int own, other, root;

    /* no FATAL assertion while the euid is changed */
    CU_ASSERT_EQUAL_FATAL(seteuid(4250), 0);
    own = child_run("raw", 4250, 4250, NULL, 0);
    other = child_run("raw", 4251, 4251, NULL, 0);
    root = child_run("raw", 0, 0, NULL, 0);
    CU_ASSERT_EQUAL_FATAL(seteuid(0), 0);
    CU_ASSERT_EQUAL(own, CH_ATTACHED);
    CU_ASSERT_EQUAL(other, CH_REFUSED);
    CU_ASSERT_EQUAL(root, CH_ATTACHED);
    check_unaffected(node);
    kvx_node_destroy(node);
}

/* Refused connections are bounded, answered, and all end. */
static void test_engine_cred_flood(void)
{
    static const uint32_t uids[] = {4243};
    kvx_node_h node = cred_node(uids, 1, NULL, 0);

    CU_ASSERT_EQUAL(child_run("flood", 4242, 4242, NULL, 0), CH_FLOOD_OK);
    check_unaffected(node);
    kvx_node_destroy(node);
}

static const ut_test_t cred_tests[] = {
    UT_TEST(test_engine_cred_params), UT_TEST(test_engine_cred_default),
    UT_TEST(test_engine_cred_uids),   UT_TEST(test_engine_cred_gid),
    UT_TEST(test_engine_cred_mixed),  UT_TEST(test_engine_cred_node_user),
    UT_TEST(test_engine_cred_flood),  UT_END,
};

int main(int argc, char **argv)
{
    static const ut_suite_t suites[] = {
        {"engine_cred", cred_tests},
        {NULL, NULL},
    };

    if (argc > 1 && strcmp(argv[1], "--attach") == 0) {
        return child_main(argc, argv);
    }
    if (geteuid() != 0) {
        fprintf(stderr, "not root: cannot take other credentials: skipping\n");
        return 77;
    }
    signal(SIGPIPE, SIG_IGN);
    return eut_main(suites);
}
