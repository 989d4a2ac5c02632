/* Control-channel handshake: Hello -> HelloReply -> AuthProof -> Accept. */
#include "handshake_int.h"

#include <errno.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "log_int.h"

typedef enum hs_state {
    HS_CLIENT_START,
    HS_CLIENT_WAIT_REPLY,
    HS_CLIENT_WAIT_ACCEPT,
    HS_SERVER_WAIT_HELLO,
    HS_SERVER_WAIT_PROOF,
    HS_DONE,
    HS_FAILED
} hs_state_t;

struct kvxi_hs {
    const kvxi_conn_identity_t *local;
    uint8_t *secret;
    size_t secret_len;
    int is_client;
    hs_state_t state;
    uint32_t version; /* negotiated, 0 until known */
    uint64_t next_id; /* our request ids */
    uint64_t sent_id; /* id of our Hello / AuthProof (client) */
    kvxi_peer_info_t *peer;
    uint8_t nonce_local[KVXI_AUTH_NONCE_LEN];
    uint8_t nonce_peer[KVXI_AUTH_NONCE_LEN];
};

/* Storage for one outgoing handshake envelope. */
typedef struct hs_msg {
    Kvx__V1__Envelope env;
    Kvx__V1__Layout layout;
    Kvx__V1__Memory memory;
    Kvx__V1__DataPath paths[2];
    Kvx__V1__Hello hello;
    Kvx__V1__HelloReply reply;
    Kvx__V1__AuthProof proof;
    Kvx__V1__Accept accept;
    uint8_t mac[KVXI_AUTH_MAC_LEN];
} hs_msg_t;

/* The fields of Hello and HelloReply that describe the peer. */
typedef struct hs_view {
    const char *node_id;
    const char *cluster_id;
    uint64_t instance_id;
    Kvx__V1__Role role;
    uint64_t layout_hash;
    const Kvx__V1__Layout *layout;
    size_t n_paths;
    const Kvx__V1__DataPath *paths;
    uint32_t max_frame;
} hs_view_t;

/* ------------------------------------------------------------------------
 * Cryptography.
 */

kvx_status_t kvxi_hs_mac(const void *secret, size_t secret_len,
                         const char *label, const uint8_t *first,
                         const uint8_t *second, uint8_t mac[KVXI_AUTH_MAC_LEN])
{
    static const uint8_t no_key[1];
    uint8_t msg[32 + 2 * KVXI_AUTH_NONCE_LEN];
    size_t label_len, out_len = 0;

    if (label == NULL || first == NULL || second == NULL || mac == NULL ||
        (secret == NULL && secret_len > 0)) {
        return KVX_ERR_INVALID_PARAM;
    }
    label_len = strlen(label);
    if (label_len > 32) {
        return KVX_ERR_INVALID_PARAM;
    }
    memcpy(msg, label, label_len);
    memcpy(msg + label_len, first, KVXI_AUTH_NONCE_LEN);
    memcpy(msg + label_len + KVXI_AUTH_NONCE_LEN, second, KVXI_AUTH_NONCE_LEN);
    if (EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL,
                  secret_len > 0 ? secret : no_key, secret_len, msg,
                  label_len + 2 * KVXI_AUTH_NONCE_LEN, mac, KVXI_AUTH_MAC_LEN,
                  &out_len) == NULL ||
        out_len != KVXI_AUTH_MAC_LEN) {
        kvxi_error("handshake: HMAC-SHA256 failed");
        return KVX_ERR_IO;
    }
    return KVX_OK;
}

static kvx_status_t random_bytes(uint8_t *buf, size_t len)
{
    size_t got = 0;

    while (got < len) {
        ssize_t n = getrandom(buf + got, len - got, GRND_NONBLOCK);

        if (n > 0) {
            got += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else {
            break;
        }
    }
    if (got == len) {
        return KVX_OK;
    }
    /* The kernel pool is not initialised yet (early boot): never block,
     * use OpenSSL's DRBG instead. */
    if (RAND_bytes(buf, (int)len) == 1) {
        return KVX_OK;
    }
    kvxi_error("handshake: no randomness for a nonce");
    return KVX_ERR_IO;
}

/* ------------------------------------------------------------------------
 * The state machine.
 */

kvx_status_t kvxi_hs_create(const kvxi_conn_identity_t *local,
                            const void *secret, size_t secret_len,
                            int is_client, kvxi_hs_t **hs_p)
{
    kvx_status_t status;
    char why[128];
    kvxi_hs_t *hs;

    if (local == NULL || hs_p == NULL || secret_len > KVXI_SECRET_MAX ||
        (secret == NULL && secret_len > 0)) {
        return KVX_ERR_INVALID_PARAM;
    }
    if (kvxi_identity_check(local, why, sizeof(why)) != KVX_OK) {
        kvxi_error("handshake: invalid identity: %s", why);
        return KVX_ERR_INVALID_PARAM;
    }
    hs = calloc(1, sizeof(*hs));
    if (hs == NULL) {
        return KVX_ERR_NO_MEMORY;
    }
    hs->secret = malloc(secret_len > 0 ? secret_len : 1);
    if (hs->secret == NULL) {
        status = KVX_ERR_NO_MEMORY;
        goto err_free;
    }
    if (secret_len > 0) {
        memcpy(hs->secret, secret, secret_len);
    }
    hs->secret_len = secret_len;
    status = random_bytes(hs->nonce_local, sizeof(hs->nonce_local));
    if (status != KVX_OK) {
        goto err_secret;
    }
    hs->local = local;
    hs->is_client = is_client != 0;
    hs->state = is_client ? HS_CLIENT_START : HS_SERVER_WAIT_HELLO;
    hs->next_id = 1;
    *hs_p = hs;
    return KVX_OK;

err_secret:
    OPENSSL_cleanse(hs->secret, secret_len);
    free(hs->secret);
err_free:
    free(hs);
    return status;
}

void kvxi_hs_destroy(kvxi_hs_t *hs)
{
    if (hs == NULL) {
        return;
    }
    OPENSSL_cleanse(hs->secret, hs->secret_len);
    free(hs->secret);
    kvxi_peer_info_free(hs->peer);
    OPENSSL_cleanse(hs, sizeof(*hs));
    free(hs);
}

kvxi_peer_info_t *kvxi_hs_take_peer(kvxi_hs_t *hs)
{
    kvxi_peer_info_t *peer;

    if (hs == NULL || hs->state != HS_DONE) {
        return NULL;
    }
    peer = hs->peer;
    hs->peer = NULL;
    return peer;
}

uint32_t kvxi_hs_version(const kvxi_hs_t *hs)
{
    return hs != NULL ? hs->version : 0;
}

uint64_t kvxi_hs_next_request_id(const kvxi_hs_t *hs)
{
    return hs != NULL ? hs->next_id : 0;
}

int kvxi_hs_is_handshake_body(Kvx__V1__Envelope__BodyCase body)
{
    return body == KVX__V1__ENVELOPE__BODY_HELLO ||
           body == KVX__V1__ENVELOPE__BODY_HELLO_REPLY ||
           body == KVX__V1__ENVELOPE__BODY_AUTH_PROOF ||
           body == KVX__V1__ENVELOPE__BODY_ACCEPT;
}

/* Peer-supplied names in refusal texts: printable ASCII only. */
static void printable(char *dst, size_t size, const char *src)
{
    size_t i = 0;

    for (; src != NULL && src[i] != '\0' && i + 1 < size; i++) {
        unsigned char ch = (unsigned char)src[i];

        dst[i] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
    }
    dst[i] = '\0';
}

/* Checks cluster, layout and data paths of the peer and records it. */
static kvx_status_t hs_accept_peer(kvxi_hs_t *hs, const hs_view_t *v, char *why,
                                   size_t why_len)
{
    const kvxi_conn_identity_t *local = hs->local;
    const char *cluster = v->cluster_id != NULL ? v->cluster_id : "";
    const char *ours_cluster =
        local->cluster_id != NULL ? local->cluster_id : "";
    uint64_t ours, theirs;
    kvxi_peer_info_t *peer;
    kvx_layout_t layout;
    char a[72], b[72];
    uint32_t paths;

    if (strcmp(cluster, ours_cluster) != 0) {
        printable(a, sizeof(a), cluster);
        printable(b, sizeof(b), ours_cluster);
        kvxi_why(why, why_len, "cluster_id '%s' (peer) != '%s' (local)", a, b);
        return KVX_ERR_PEER_REFUSED;
    }
    if (kvxi_wire_layout_from(v->layout, &layout, why, why_len) != KVX_OK) {
        return KVX_ERR_LAYOUT_MISMATCH;
    }
    theirs = kvx_layout_compat_hash(&layout);
    ours = kvx_layout_compat_hash(&local->layout);
    if (v->layout_hash != theirs) {
        kvxi_why(why, why_len,
                 "peer layout_hash 0x%016" PRIx64
                 " does not match its layout (0x%016" PRIx64 ")",
                 v->layout_hash, theirs);
        return KVX_ERR_LAYOUT_MISMATCH;
    }
    if (theirs != ours) {
        char field[128];

        kvx_layout_check(&layout, &local->layout, field, sizeof(field));
        kvxi_why(why, why_len,
                 "layout compat hash 0x%016" PRIx64 " (peer) != 0x%016" PRIx64
                 " (local): %s",
                 theirs, ours, field[0] != '\0' ? field : "hash differs");
        return KVX_ERR_LAYOUT_MISMATCH;
    }
    paths = kvxi_wire_paths_from(v->n_paths, v->paths);
    if ((paths & local->data_paths) == 0) {
        kvxi_why(why, why_len, "no common data path (peer 0x%x, local 0x%x)",
                 paths, local->data_paths);
        return KVX_ERR_PEER_REFUSED;
    }
    peer = calloc(1, sizeof(*peer));
    if (peer == NULL) {
        return KVX_ERR_NO_MEMORY;
    }
    snprintf(peer->node_id, sizeof(peer->node_id), "%s", v->node_id);
    snprintf(peer->cluster_id, sizeof(peer->cluster_id), "%s", cluster);
    peer->instance_id = v->instance_id;
    peer->role = v->role;
    peer->layout_hash = theirs;
    peer->layout = layout;
    peer->data_paths = paths;
    peer->max_frame = v->max_frame != 0 ? v->max_frame : KVXI_FRAME_MAX_DEFAULT;
    kvxi_peer_info_free(hs->peer);
    hs->peer = peer;
    return KVX_OK;
}

static void hs_msg_init(hs_msg_t *m, uint32_t version, uint64_t request_id)
{
    memset(m, 0, sizeof(*m));
    kvx__v1__envelope__init(&m->env);
    m->env.version = version;
    m->env.request_id = request_id;
}

kvx_status_t kvxi_hs_start(kvxi_hs_t *hs, struct evbuffer *out)
{
    const kvxi_conn_identity_t *id;
    kvx_status_t status;
    hs_msg_t m;

    if (hs == NULL || out == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    if (!hs->is_client || hs->state != HS_CLIENT_START) {
        return KVX_ERR_BAD_STATE;
    }
    id = hs->local;
    hs->sent_id = hs->next_id++;
    hs_msg_init(&m, id->max_version, hs->sent_id);
    kvx__v1__hello__init(&m.hello);
    kvxi_wire_layout_to(&id->layout, &m.layout);
    m.hello.min_version = id->min_version;
    m.hello.max_version = id->max_version;
    m.hello.node_id = (char *)id->node_id;
    m.hello.instance_id = id->instance_id;
    m.hello.cluster_id = (char *)(id->cluster_id != NULL ? id->cluster_id : "");
    m.hello.role = id->role;
    m.hello.layout_hash = kvx_layout_compat_hash(&id->layout);
    m.hello.layout = &m.layout;
    m.hello.n_data_paths = kvxi_wire_paths_to(id->data_paths, m.paths);
    m.hello.data_paths = m.paths;
    m.hello.nonce.data = hs->nonce_local;
    m.hello.nonce.len = sizeof(hs->nonce_local);
    m.hello.max_frame = id->max_frame;
    m.env.body_case = KVX__V1__ENVELOPE__BODY_HELLO;
    m.env.hello = &m.hello;
    status = kvxi_frame_write(out, &m.env);
    if (status == KVX_OK) {
        hs->state = HS_CLIENT_WAIT_REPLY;
    }
    return status;
}

/* Server: Hello -> HelloReply. */
static kvx_status_t hs_on_hello(kvxi_hs_t *hs, const kvxi_envelope_t *env,
                                struct evbuffer *out, char *why, size_t why_len)
{
    const kvxi_conn_identity_t *id = hs->local;
    const Kvx__V1__Hello *h = env->hello;
    uint32_t lo, hi;
    kvx_status_t status;
    hs_view_t v;
    hs_msg_t m;

    lo = h->min_version > id->min_version ? h->min_version : id->min_version;
    hi = h->max_version < id->max_version ? h->max_version : id->max_version;
    if (lo > hi) {
        kvxi_why(why, why_len,
                 "protocol versions %u..%u (peer) and %u..%u (local) are "
                 "disjoint",
                 h->min_version, h->max_version, id->min_version,
                 id->max_version);
        return KVX_ERR_PROTO_VERSION;
    }
    hs->version = hi;
    v = (hs_view_t){.node_id = h->node_id,
                    .cluster_id = h->cluster_id,
                    .instance_id = h->instance_id,
                    .role = h->role,
                    .layout_hash = h->layout_hash,
                    .layout = h->layout,
                    .n_paths = h->n_data_paths,
                    .paths = h->data_paths,
                    .max_frame = h->max_frame};
    status = hs_accept_peer(hs, &v, why, why_len);
    if (status != KVX_OK) {
        return status;
    }
    hs->peer->version = hi;
    hs->peer->min_version = h->min_version;
    hs->peer->max_version = h->max_version;
    memcpy(hs->nonce_peer, h->nonce.data, sizeof(hs->nonce_peer));

    hs_msg_init(&m, hi, env->request_id);
    status = kvxi_hs_mac(hs->secret, hs->secret_len, KVXI_HS_LABEL_SERVER,
                         hs->nonce_peer, hs->nonce_local, m.mac);
    if (status != KVX_OK) {
        kvxi_why(why, why_len, "%s", "HMAC failed");
        return status;
    }
    kvx__v1__hello_reply__init(&m.reply);
    kvxi_wire_layout_to(&id->layout, &m.layout);
    m.reply.version = hi;
    m.reply.node_id = (char *)id->node_id;
    m.reply.instance_id = id->instance_id;
    m.reply.cluster_id = (char *)(id->cluster_id != NULL ? id->cluster_id : "");
    m.reply.role = id->role;
    m.reply.layout_hash = kvx_layout_compat_hash(&id->layout);
    m.reply.layout = &m.layout;
    m.reply.n_data_paths = kvxi_wire_paths_to(id->data_paths, m.paths);
    m.reply.data_paths = m.paths;
    m.reply.nonce.data = hs->nonce_local;
    m.reply.nonce.len = sizeof(hs->nonce_local);
    m.reply.auth_mac.data = m.mac;
    m.reply.auth_mac.len = sizeof(m.mac);
    m.reply.max_frame = id->max_frame;
    m.env.body_case = KVX__V1__ENVELOPE__BODY_HELLO_REPLY;
    m.env.hello_reply = &m.reply;
    status = kvxi_frame_write(out, &m.env);
    if (status != KVX_OK) {
        kvxi_why(why, why_len, "%s", "cannot queue hello_reply");
        return status;
    }
    hs->state = HS_SERVER_WAIT_PROOF;
    return KVX_INPROGRESS;
}

/* Client: HelloReply -> AuthProof (the server proved it knows S). */
static kvx_status_t hs_on_reply(kvxi_hs_t *hs, const kvxi_envelope_t *env,
                                struct evbuffer *out, char *why, size_t why_len)
{
    const kvxi_conn_identity_t *id = hs->local;
    const Kvx__V1__HelloReply *r = env->hello_reply;
    uint8_t expect[KVXI_AUTH_MAC_LEN];
    kvx_status_t status;
    hs_view_t v;
    hs_msg_t m;

    if (env->request_id != hs->sent_id) {
        kvxi_why(why, why_len,
                 "hello_reply answers request %" PRIu64 ", hello was %" PRIu64,
                 (uint64_t)env->request_id, hs->sent_id);
        return KVX_ERR_PROTO_UNEXPECTED;
    }
    if (r->version < id->min_version || r->version > id->max_version ||
        env->version != r->version) {
        kvxi_why(why, why_len,
                 "server chose protocol version %u (frame in %u), local range "
                 "%u..%u",
                 r->version, env->version, id->min_version, id->max_version);
        return KVX_ERR_PROTO_VERSION;
    }
    hs->version = r->version;
    status = kvxi_hs_mac(hs->secret, hs->secret_len, KVXI_HS_LABEL_SERVER,
                         hs->nonce_local, r->nonce.data, expect);
    if (status != KVX_OK) {
        kvxi_why(why, why_len, "%s", "HMAC failed");
        return status;
    }
    if (CRYPTO_memcmp(expect, r->auth_mac.data, sizeof(expect)) != 0 ||
        CRYPTO_memcmp(hs->nonce_local, r->nonce.data, KVXI_AUTH_NONCE_LEN) ==
            0) {
        kvxi_why(why, why_len, "%s",
                 "server failed to prove the cluster secret");
        return KVX_ERR_AUTH;
    }
    v = (hs_view_t){.node_id = r->node_id,
                    .cluster_id = r->cluster_id,
                    .instance_id = r->instance_id,
                    .role = r->role,
                    .layout_hash = r->layout_hash,
                    .layout = r->layout,
                    .n_paths = r->n_data_paths,
                    .paths = r->data_paths,
                    .max_frame = r->max_frame};
    status = hs_accept_peer(hs, &v, why, why_len);
    if (status != KVX_OK) {
        return status;
    }
    hs->peer->version = r->version;
    hs->peer->min_version = r->version;
    hs->peer->max_version = r->version;
    memcpy(hs->nonce_peer, r->nonce.data, sizeof(hs->nonce_peer));

    hs->sent_id = hs->next_id++;
    hs_msg_init(&m, hs->version, hs->sent_id);
    status = kvxi_hs_mac(hs->secret, hs->secret_len, KVXI_HS_LABEL_CLIENT,
                         hs->nonce_peer, hs->nonce_local, m.mac);
    if (status != KVX_OK) {
        kvxi_why(why, why_len, "%s", "HMAC failed");
        return status;
    }
    kvx__v1__auth_proof__init(&m.proof);
    kvxi_wire_memory_to(&id->memory, &m.memory);
    m.proof.auth_mac.data = m.mac;
    m.proof.auth_mac.len = sizeof(m.mac);
    m.proof.memory = &m.memory;
    m.env.body_case = KVX__V1__ENVELOPE__BODY_AUTH_PROOF;
    m.env.auth_proof = &m.proof;
    status = kvxi_frame_write(out, &m.env);
    if (status != KVX_OK) {
        kvxi_why(why, why_len, "%s", "cannot queue auth_proof");
        return status;
    }
    hs->state = HS_CLIENT_WAIT_ACCEPT;
    return KVX_INPROGRESS;
}

static kvx_status_t hs_take_memory(kvxi_hs_t *hs, const Kvx__V1__Memory *w)
{
    kvxi_conn_memory_t m;

    kvxi_wire_memory_from(w, &m);
    return kvxi_peer_info_set_memory(&hs->peer, &m);
}

/* Server: AuthProof -> Accept (the client proved it knows S). */
static kvx_status_t hs_on_proof(kvxi_hs_t *hs, const kvxi_envelope_t *env,
                                struct evbuffer *out, char *why, size_t why_len)
{
    const Kvx__V1__AuthProof *p = env->auth_proof;
    uint8_t expect[KVXI_AUTH_MAC_LEN];
    kvx_status_t status;
    hs_msg_t m;

    status = kvxi_hs_mac(hs->secret, hs->secret_len, KVXI_HS_LABEL_CLIENT,
                         hs->nonce_local, hs->nonce_peer, expect);
    if (status != KVX_OK) {
        kvxi_why(why, why_len, "%s", "HMAC failed");
        return status;
    }
    if (CRYPTO_memcmp(expect, p->auth_mac.data, sizeof(expect)) != 0) {
        kvxi_why(why, why_len, "%s",
                 "client failed to prove the cluster secret");
        return KVX_ERR_AUTH;
    }
    status = hs_take_memory(hs, p->memory);
    if (status != KVX_OK) {
        kvxi_why(why, why_len, "%s", "out of memory");
        return status;
    }
    hs_msg_init(&m, hs->version, env->request_id);
    kvx__v1__accept__init(&m.accept);
    kvxi_wire_memory_to(&hs->local->memory, &m.memory);
    m.accept.memory = &m.memory;
    m.env.body_case = KVX__V1__ENVELOPE__BODY_ACCEPT;
    m.env.accept = &m.accept;
    status = kvxi_frame_write(out, &m.env);
    if (status != KVX_OK) {
        kvxi_why(why, why_len, "%s", "cannot queue accept");
        return status;
    }
    hs->state = HS_DONE;
    return KVX_OK;
}

/* Client: Accept -> done. */
static kvx_status_t hs_on_accept(kvxi_hs_t *hs, const kvxi_envelope_t *env,
                                 char *why, size_t why_len)
{
    kvx_status_t status;

    if (env->request_id != hs->sent_id) {
        kvxi_why(why, why_len,
                 "accept answers request %" PRIu64 ", auth_proof was %" PRIu64,
                 (uint64_t)env->request_id, hs->sent_id);
        return KVX_ERR_PROTO_UNEXPECTED;
    }
    status = hs_take_memory(hs, env->accept->memory);
    if (status != KVX_OK) {
        kvxi_why(why, why_len, "%s", "out of memory");
        return status;
    }
    hs->state = HS_DONE;
    return KVX_OK;
}

static const char *hs_expected(hs_state_t state)
{
    switch (state) {
    case HS_CLIENT_WAIT_REPLY: return "hello_reply";
    case HS_CLIENT_WAIT_ACCEPT: return "accept";
    case HS_SERVER_WAIT_HELLO: return "hello";
    case HS_SERVER_WAIT_PROOF: return "auth_proof";
    default: return "nothing";
    }
}

kvx_status_t kvxi_hs_input(kvxi_hs_t *hs, const kvxi_envelope_t *env,
                           struct evbuffer *out, char *why, size_t why_len)
{
    Kvx__V1__Envelope__BodyCase want;
    kvx_status_t status;

    if (hs == NULL || env == NULL || out == NULL) {
        return KVX_ERR_INVALID_PARAM;
    }
    kvxi_why(why, why_len, "%s", "");
    switch (hs->state) {
    case HS_CLIENT_WAIT_REPLY:
        want = KVX__V1__ENVELOPE__BODY_HELLO_REPLY;
        break;
    case HS_CLIENT_WAIT_ACCEPT: want = KVX__V1__ENVELOPE__BODY_ACCEPT; break;
    case HS_SERVER_WAIT_HELLO: want = KVX__V1__ENVELOPE__BODY_HELLO; break;
    case HS_SERVER_WAIT_PROOF: want = KVX__V1__ENVELOPE__BODY_AUTH_PROOF; break;
    case HS_CLIENT_START: want = KVX__V1__ENVELOPE__BODY__NOT_SET; break;
    default:
        kvxi_why(why, why_len, "handshake already %s",
                 hs->state == HS_DONE ? "complete" : "failed");
        return KVX_ERR_BAD_STATE;
    }
    if (want == KVX__V1__ENVELOPE__BODY__NOT_SET || env->body_case != want) {
        kvxi_why(why, why_len, "%s %s the handshake (expected %s)",
                 kvxi_envelope_body_name(env),
                 kvxi_hs_is_handshake_body(env->body_case)
                     ? "out of order in"
                     : "before the end of",
                 hs_expected(hs->state));
        hs->state = HS_FAILED;
        return KVX_ERR_PROTO_UNEXPECTED;
    }
    if (hs->version != 0 && env->version != hs->version) {
        kvxi_why(why, why_len, "%s in protocol version %u, negotiated %u",
                 kvxi_envelope_body_name(env), env->version, hs->version);
        hs->state = HS_FAILED;
        return KVX_ERR_PROTO_VERSION;
    }
    switch (want) {
    case KVX__V1__ENVELOPE__BODY_HELLO:
        status = hs_on_hello(hs, env, out, why, why_len);
        break;
    case KVX__V1__ENVELOPE__BODY_HELLO_REPLY:
        status = hs_on_reply(hs, env, out, why, why_len);
        break;
    case KVX__V1__ENVELOPE__BODY_AUTH_PROOF:
        status = hs_on_proof(hs, env, out, why, why_len);
        break;
    default: status = hs_on_accept(hs, env, why, why_len); break;
    }
    if (status != KVX_OK && status != KVX_INPROGRESS) {
        hs->state = HS_FAILED;
    }
    return status;
}
