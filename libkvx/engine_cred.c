/*
 * Who may attach on a node's engine socket (engine_int.h, "Credentials"):
 * the check of the connecting process's credentials at accept, and the
 * socket file's mode and group that let the allowed users reach it.
 */
#include "engine_int.h"

#include "log_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static int id_listed(const uint32_t *ids, uint32_t n, uint32_t id)
{
    for (uint32_t i = 0; i < n; i++) {
        if (ids[i] == id) {
            return 1;
        }
    }
    return 0;
}

/* Whether one of the peer's supplementary groups is allowed: a member of
 * an allowed group passes the 0660 file's check through any of its
 * groups, so the credential check looks at all of them. */
static int engine_groups_allowed(const struct kvx_node *node, int fd)
{
#ifdef SO_PEERGROUPS
    gid_t small[64], *groups = small;
    socklen_t len = sizeof(small);
    int ok = 0;

    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) != 0) {
        /* ERANGE: len now says how much the list needs */
        if (errno != ERANGE || len == 0 || (groups = malloc(len)) == NULL) {
            return 0;
        }
        if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) != 0) {
            len = 0;
        }
    }
    for (size_t i = 0; i < len / sizeof(gid_t) && !ok; i++) {
        ok = id_listed(node->engine_gids, node->n_engine_gids, groups[i]);
    }
    if (groups != small) {
        free(groups);
    }
    return ok;
#else
    (void)node;
    (void)fd;
    return 0;
#endif
}

int kvxi_engine_cred_allowed(const struct kvx_node *node, kvxi_session_t *s)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);

    if (getsockopt(s->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
        len != sizeof(cred)) {
        return 0;
    }
    s->pid = cred.pid;
    s->uid = cred.uid;
    s->gid = cred.gid;
    return cred.uid == geteuid() || cred.uid == 0 ||
           id_listed(node->engine_uids, node->n_engine_uids, cred.uid) ||
           id_listed(node->engine_gids, node->n_engine_gids, cred.gid) ||
           (node->n_engine_gids > 0 && engine_groups_allowed(node, s->fd));
}

kvx_status_t kvxi_engine_sock_perms(const struct kvx_node *node,
                                    const char *path)
{
    uid_t me = geteuid();
    mode_t mode = node->n_engine_gids > 0 ? 0660 : 0600;
    struct stat st;

    if (node->n_engine_gids > 1) {
        mode = 0666; /* members of the second group are "others" */
    }
    for (uint32_t i = 0; i < node->n_engine_uids; i++) {
        if (node->engine_uids[i] != me && node->engine_uids[i] != 0) {
            mode = 0666;
        }
    }
    if (mode == 0600) {
        return KVX_OK;
    }
    if (lstat(path, &st) != 0 || !S_ISSOCK(st.st_mode)) {
        kvxi_error("node %s: engine socket %s vanished", node->node_id, path);
        return KVX_ERR_IO;
    }
    if (node->n_engine_gids > 0 &&
        lchown(path, (uid_t)-1, (gid_t)node->engine_gids[0]) != 0) {
        kvxi_error("node %s: engine socket %s: cannot set its group to %u "
                   "(engine_allow_gids): %s",
                   node->node_id, path, node->engine_gids[0], strerror(errno));
        return KVX_ERR_IO;
    }
    if (chmod(path, mode) != 0) {
        kvxi_error("node %s: engine socket %s: cannot set mode %03o: %s",
                   node->node_id, path, (unsigned)mode, strerror(errno));
        return KVX_ERR_IO;
    }
    kvxi_info("node %s: engine socket %s: mode %03o%s", node->node_id, path,
              (unsigned)mode,
              mode == 0666 ? " (any local user reaches the socket: the "
                             "credentials of each are checked)"
                           : "");
    return KVX_OK;
}
