/*
 * Unit tests for libkvx/handshake.c: the handshake state machine driven
 * through evbuffers (no sockets) and its MACs.
 */
#include "ut.h"
#include "conn_ut.h"

#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

#include "../fuzz/frame_samples.h"

/* Both sides of one handshake plus their output buffers. */
typedef struct hs_pair {
    ut_ident_t ci, si;
    kvxi_hs_t *c, *s;
    struct evbuffer *c_out, *s_out;
    char why[KVXI_TEXT_MAX + 1];
} hs_pair_t;

static void pair_init(hs_pair_t *p, const char *c_secret, const char *s_secret)
{
    memset(p, 0, sizeof(*p));
    ut_ident_init(&p->ci, "client:1", 1, 128);
    ut_ident_init(&p->si, "server:2", 2, 128);
    p->c_out = evbuffer_new();
    p->s_out = evbuffer_new();
    CU_ASSERT_FATAL(p->c_out != NULL && p->s_out != NULL);
    OK_FATAL(kvxi_hs_create(&p->ci.id, c_secret,
                            c_secret ? strlen(c_secret) : 0, 1, &p->c));
    OK_FATAL(kvxi_hs_create(&p->si.id, s_secret,
                            s_secret ? strlen(s_secret) : 0, 0, &p->s));
}

static void pair_fini(hs_pair_t *p)
{
    kvxi_hs_destroy(p->c);
    kvxi_hs_destroy(p->s);
    evbuffer_free(p->c_out);
    evbuffer_free(p->s_out);
}

/* Takes the first frame out of @p buf (NULL if there is none). */
static kvxi_envelope_t *take(struct evbuffer *buf)
{
    size_t len = evbuffer_get_length(buf), used = 0;
    kvxi_envelope_t *env = NULL;

    if (len == 0 || kvxi_frame_decode(evbuffer_pullup(buf, -1), len, 0, &env,
                                      &used) != KVX_OK) {
        return NULL;
    }
    evbuffer_drain(buf, used);
    return env;
}

/* Moves one frame from @p from into @p to_hs; returns its status. */
static kvx_status_t step(hs_pair_t *p, struct evbuffer *from, kvxi_hs_t *to,
                         struct evbuffer *to_out)
{
    kvxi_envelope_t *env = take(from);
    kvx_status_t status;

    CU_ASSERT_PTR_NOT_NULL_FATAL(env);
    status = kvxi_hs_input(to, env, to_out, p->why, sizeof(p->why));
    kvxi_frame_free(env);
    return status;
}

static void test_hs_mac_matches_hmac(void)
{
    uint8_t n1[KVXI_AUTH_NONCE_LEN], n2[KVXI_AUTH_NONCE_LEN];
    uint8_t mac[KVXI_AUTH_MAC_LEN], ref[KVXI_AUTH_MAC_LEN], other[32];
    uint8_t msg[11 + 2 * KVXI_AUTH_NONCE_LEN];
    unsigned ref_len = 0;

    for (size_t i = 0; i < sizeof(n1); i++) {
        n1[i] = (uint8_t)i;
        n2[i] = (uint8_t)(0xff - i);
    }
    memcpy(msg, "kvx1 server", 11);
    memcpy(msg + 11, n1, sizeof(n1));
    memcpy(msg + 11 + sizeof(n1), n2, sizeof(n2));
    OK(kvxi_hs_mac("s3cret", 6, KVXI_HS_LABEL_SERVER, n1, n2, mac));
    CU_ASSERT_PTR_NOT_NULL(
        HMAC(EVP_sha256(), "s3cret", 6, msg, sizeof(msg), ref, &ref_len));
    CU_ASSERT_EQUAL(ref_len, sizeof(ref));
    CU_ASSERT(memcmp(mac, ref, sizeof(mac)) == 0);
    /* Other label, swapped nonces, other or empty key: other MACs. */
    OK(kvxi_hs_mac("s3cret", 6, KVXI_HS_LABEL_CLIENT, n1, n2, other));
    CU_ASSERT(memcmp(mac, other, sizeof(mac)) != 0);
    OK(kvxi_hs_mac("s3cret", 6, KVXI_HS_LABEL_SERVER, n2, n1, other));
    CU_ASSERT(memcmp(mac, other, sizeof(mac)) != 0);
    OK(kvxi_hs_mac(NULL, 0, KVXI_HS_LABEL_SERVER, n1, n2, other));
    CU_ASSERT(memcmp(mac, other, sizeof(mac)) != 0);
    ERR(kvxi_hs_mac(NULL, 3, KVXI_HS_LABEL_SERVER, n1, n2, other),
        INVALID_PARAM);
    ERR(kvxi_hs_mac("k", 1, NULL, n1, n2, other), INVALID_PARAM);
}

static void test_hs_complete(void)
{
    kvxi_peer_info_t *cp, *sp, *copy = NULL;
    hs_pair_t p;

    pair_init(&p, "secret", "secret");
    CU_ASSERT_PTR_NULL(kvxi_hs_take_peer(p.c));
    OK(kvxi_hs_start(p.c, p.c_out));
    ERR(kvxi_hs_start(p.c, p.c_out), BAD_STATE);
    ERR(kvxi_hs_start(p.s, p.s_out), BAD_STATE);
    CU_ASSERT_EQUAL(step(&p, p.c_out, p.s, p.s_out), KVX_INPROGRESS);
    CU_ASSERT_EQUAL(kvxi_hs_version(p.s), KVXI_PROTO_VERSION);
    CU_ASSERT_EQUAL(step(&p, p.s_out, p.c, p.c_out), KVX_INPROGRESS);
    CU_ASSERT_EQUAL(step(&p, p.c_out, p.s, p.s_out), KVX_OK);
    CU_ASSERT_EQUAL(step(&p, p.s_out, p.c, p.c_out), KVX_OK);
    CU_ASSERT_EQUAL(evbuffer_get_length(p.c_out), 0);
    CU_ASSERT_EQUAL(evbuffer_get_length(p.s_out), 0);
    CU_ASSERT_EQUAL(kvxi_hs_next_request_id(p.c), 3);
    CU_ASSERT_EQUAL(kvxi_hs_next_request_id(p.s), 1);

    cp = kvxi_hs_take_peer(p.c);
    sp = kvxi_hs_take_peer(p.s);
    CU_ASSERT_PTR_NULL(kvxi_hs_take_peer(p.c));
    CU_ASSERT(ut_peer_is(cp, &p.si));
    CU_ASSERT(ut_peer_is(sp, &p.ci));
    CU_ASSERT_EQUAL(cp->version, KVXI_PROTO_VERSION);
    CU_ASSERT_EQUAL(sp->max_frame, KVXI_FRAME_MAX_DEFAULT);
    CU_ASSERT_EQUAL(sp->data_paths, KVXI_DATA_PATH_ALL);
    CU_ASSERT_STRING_EQUAL(sp->cluster_id, "test-cluster");
    CU_ASSERT_EQUAL(sp->layout.head_dim, 128);
    CU_ASSERT_EQUAL(sp->memory.mem_type, KVX_MEM_HOST);
    OK(kvxi_peer_info_dup(sp, &copy));
    kvxi_peer_info_free(sp);
    CU_ASSERT(ut_peer_is(copy, &p.ci));
    kvxi_peer_info_free(copy);
    kvxi_peer_info_free(cp);
    pair_fini(&p);
}

static void test_hs_no_auth_mode(void)
{
    hs_pair_t p;

    pair_init(&p, NULL, "");
    OK(kvxi_hs_start(p.c, p.c_out));
    CU_ASSERT_EQUAL(step(&p, p.c_out, p.s, p.s_out), KVX_INPROGRESS);
    CU_ASSERT_EQUAL(step(&p, p.s_out, p.c, p.c_out), KVX_INPROGRESS);
    CU_ASSERT_EQUAL(step(&p, p.c_out, p.s, p.s_out), KVX_OK);
    CU_ASSERT_EQUAL(step(&p, p.s_out, p.c, p.c_out), KVX_OK);
    pair_fini(&p);
}

static void test_hs_version_negotiation(void)
{
    hs_pair_t p;

    pair_init(&p, "k", "k");
    kvxi_hs_destroy(p.c);
    kvxi_hs_destroy(p.s);
    p.ci.id.min_version = 1;
    p.ci.id.max_version = 3;
    p.si.id.min_version = 2;
    p.si.id.max_version = 5;
    OK(kvxi_hs_create(&p.ci.id, "k", 1, 1, &p.c));
    OK(kvxi_hs_create(&p.si.id, "k", 1, 0, &p.s));
    OK(kvxi_hs_start(p.c, p.c_out));
    CU_ASSERT_EQUAL(step(&p, p.c_out, p.s, p.s_out), KVX_INPROGRESS);
    CU_ASSERT_EQUAL(kvxi_hs_version(p.s), 3);
    CU_ASSERT_EQUAL(step(&p, p.s_out, p.c, p.c_out), KVX_INPROGRESS);
    CU_ASSERT_EQUAL(kvxi_hs_version(p.c), 3);
    CU_ASSERT_EQUAL(step(&p, p.c_out, p.s, p.s_out), KVX_OK);
    CU_ASSERT_EQUAL(step(&p, p.s_out, p.c, p.c_out), KVX_OK);
    pair_fini(&p);

    /* Disjoint ranges: refused before anything is answered. */
    pair_init(&p, "k", "k");
    kvxi_hs_destroy(p.c);
    p.ci.id.min_version = 2;
    p.ci.id.max_version = 3;
    OK(kvxi_hs_create(&p.ci.id, "k", 1, 1, &p.c));
    OK(kvxi_hs_start(p.c, p.c_out));
    ERR(step(&p, p.c_out, p.s, p.s_out), PROTO_VERSION);
    CU_ASSERT_PTR_NOT_NULL(strstr(p.why, "disjoint"));
    CU_ASSERT_EQUAL(evbuffer_get_length(p.s_out), 0);
    pair_fini(&p);
}

/* The client's secret differs: it refuses the server's MAC and never sends
 * its AuthProof (its memory). */
static void test_hs_wrong_secret_client_refuses(void)
{
    hs_pair_t p;

    pair_init(&p, "right", "wrong");
    OK(kvxi_hs_start(p.c, p.c_out));
    CU_ASSERT_EQUAL(step(&p, p.c_out, p.s, p.s_out), KVX_INPROGRESS);
    ERR(step(&p, p.s_out, p.c, p.c_out), AUTH);
    CU_ASSERT_PTR_NOT_NULL(strstr(p.why, "secret"));
    CU_ASSERT_EQUAL(evbuffer_get_length(p.c_out), 0);
    CU_ASSERT_PTR_NULL(kvxi_hs_take_peer(p.c));
    pair_fini(&p);
}

/* A client that ignores the failed check and sends a proof anyway (an
 * attacker) is refused by the server, which never sends Accept. */
static void test_hs_wrong_secret_server_refuses(void)
{
    kvxi_envelope_t *env;
    hs_pair_t p;
    uint8_t *mac;

    pair_init(&p, "same", "same");
    OK(kvxi_hs_start(p.c, p.c_out));
    CU_ASSERT_EQUAL(step(&p, p.c_out, p.s, p.s_out), KVX_INPROGRESS);
    CU_ASSERT_EQUAL(step(&p, p.s_out, p.c, p.c_out), KVX_INPROGRESS);
    env = take(p.c_out);
    CU_ASSERT_PTR_NOT_NULL_FATAL(env);
    CU_ASSERT_EQUAL_FATAL(env->body_case, KVX__V1__ENVELOPE__BODY_AUTH_PROOF);
    mac = env->auth_proof->auth_mac.data;
    mac[0] ^= 1;
    ERR(kvxi_hs_input(p.s, env, p.s_out, p.why, sizeof(p.why)), AUTH);
    CU_ASSERT_EQUAL(evbuffer_get_length(p.s_out), 0);
    CU_ASSERT_PTR_NULL(kvxi_hs_take_peer(p.s));
    /* Failed for good: the genuine proof does not help any more. */
    mac[0] ^= 1;
    ERR(kvxi_hs_input(p.s, env, p.s_out, p.why, sizeof(p.why)), BAD_STATE);
    kvxi_frame_free(env);
    pair_fini(&p);
}

/* A server that reflects the client's nonce as its own is refused. */
static void test_hs_reflected_nonce(void)
{
    uint8_t nonce[KVXI_AUTH_NONCE_LEN], mac[KVXI_AUTH_MAC_LEN];
    kvxi_envelope_t *hello, *reply;
    hs_pair_t p;

    pair_init(&p, "k", "k");
    OK(kvxi_hs_start(p.c, p.c_out));
    hello = take(p.c_out);
    CU_ASSERT_PTR_NOT_NULL_FATAL(hello);
    memcpy(nonce, hello->hello->nonce.data, sizeof(nonce));
    CU_ASSERT_EQUAL(kvxi_hs_input(p.s, hello, p.s_out, p.why, sizeof(p.why)),
                    KVX_INPROGRESS);
    reply = take(p.s_out);
    CU_ASSERT_PTR_NOT_NULL_FATAL(reply);
    memcpy(reply->hello_reply->nonce.data, nonce, sizeof(nonce));
    OK(kvxi_hs_mac("k", 1, KVXI_HS_LABEL_SERVER, nonce, nonce, mac));
    memcpy(reply->hello_reply->auth_mac.data, mac, sizeof(mac));
    ERR(kvxi_hs_input(p.c, reply, p.c_out, p.why, sizeof(p.why)), AUTH);
    kvxi_frame_free(hello);
    kvxi_frame_free(reply);
    pair_fini(&p);
}

static void test_hs_layout_mismatch(void)
{
    hs_pair_t p;

    pair_init(&p, "k", "k");
    kvxi_hs_destroy(p.c);
    ut_ident_init(&p.ci, "client:1", 1, 64);
    OK(kvxi_hs_create(&p.ci.id, "k", 1, 1, &p.c));
    OK(kvxi_hs_start(p.c, p.c_out));
    ERR(step(&p, p.c_out, p.s, p.s_out), LAYOUT_MISMATCH);
    CU_ASSERT_PTR_NOT_NULL(strstr(p.why, "layout compat hash 0x"));
    CU_ASSERT_PTR_NOT_NULL(strstr(p.why, "head_dim 64 != 128"));
    CU_ASSERT_EQUAL(evbuffer_get_length(p.s_out), 0);
    pair_fini(&p);
}

/* A Hello whose layout_hash does not belong to its layout. */
static void test_hs_forged_layout_hash(void)
{
    kvxi_envelope_t *hello;
    hs_pair_t p;

    pair_init(&p, "k", "k");
    OK(kvxi_hs_start(p.c, p.c_out));
    hello = take(p.c_out);
    CU_ASSERT_PTR_NOT_NULL_FATAL(hello);
    hello->hello->layout_hash ^= 1;
    ERR(kvxi_hs_input(p.s, hello, p.s_out, p.why, sizeof(p.why)),
        LAYOUT_MISMATCH);
    CU_ASSERT_PTR_NOT_NULL(strstr(p.why, "does not match its layout"));
    kvxi_frame_free(hello);
    pair_fini(&p);
}

static void test_hs_cluster_and_paths(void)
{
    hs_pair_t p;

    pair_init(&p, "k", "k");
    kvxi_hs_destroy(p.s);
    p.si.id.cluster_id = "other\x01";
    OK(kvxi_hs_create(&p.si.id, "k", 1, 0, &p.s));
    OK(kvxi_hs_start(p.c, p.c_out));
    ERR(step(&p, p.c_out, p.s, p.s_out), PEER_REFUSED);
    CU_ASSERT_PTR_NOT_NULL(strstr(p.why, "cluster_id 'test-cluster' (peer)"));
    CU_ASSERT_PTR_NOT_NULL(strstr(p.why, "'other?' (local)"));
    pair_fini(&p);

    pair_init(&p, "k", "k");
    kvxi_hs_destroy(p.c);
    kvxi_hs_destroy(p.s);
    p.ci.id.data_paths = KVXI_DATA_PATH_RMA;
    p.si.id.data_paths = KVXI_DATA_PATH_AM;
    OK(kvxi_hs_create(&p.ci.id, "k", 1, 1, &p.c));
    OK(kvxi_hs_create(&p.si.id, "k", 1, 0, &p.s));
    OK(kvxi_hs_start(p.c, p.c_out));
    ERR(step(&p, p.c_out, p.s, p.s_out), PEER_REFUSED);
    CU_ASSERT_PTR_NOT_NULL(strstr(p.why, "no common data path"));
    pair_fini(&p);
}

static void test_hs_out_of_order(void)
{
    frame_sample_t s;
    hs_pair_t p;

    /* Server: AuthProof, Accept, HelloReply or a transfer message first. */
    const Kvx__V1__Envelope__BodyCase wrong[] = {
        KVX__V1__ENVELOPE__BODY_AUTH_PROOF,
        KVX__V1__ENVELOPE__BODY_ACCEPT,
        KVX__V1__ENVELOPE__BODY_HELLO_REPLY,
        KVX__V1__ENVELOPE__BODY_ALLOCATE_REQUEST,
        KVX__V1__ENVELOPE__BODY_HEARTBEAT,
    };
    for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
        pair_init(&p, "k", "k");
        CU_ASSERT_FATAL(frame_sample_init(&s, wrong[i]));
        ERR(kvxi_hs_input(p.s, &s.env, p.s_out, p.why, sizeof(p.why)),
            PROTO_UNEXPECTED);
        CU_ASSERT(strlen(p.why) > 0);
        CU_ASSERT_EQUAL(evbuffer_get_length(p.s_out), 0);
        ERR(kvxi_hs_input(p.s, &s.env, p.s_out, p.why, sizeof(p.why)),
            BAD_STATE);
        pair_fini(&p);
    }

    /* Server: Hello twice (a replay). */
    pair_init(&p, "k", "k");
    OK(kvxi_hs_start(p.c, p.c_out));
    {
        kvxi_envelope_t *hello = take(p.c_out);

        CU_ASSERT_PTR_NOT_NULL_FATAL(hello);
        CU_ASSERT_EQUAL(
            kvxi_hs_input(p.s, hello, p.s_out, p.why, sizeof(p.why)),
            KVX_INPROGRESS);
        ERR(kvxi_hs_input(p.s, hello, p.s_out, p.why, sizeof(p.why)),
            PROTO_UNEXPECTED);
        CU_ASSERT_PTR_NOT_NULL(strstr(p.why, "out of order"));
        kvxi_frame_free(hello);
    }
    pair_fini(&p);

    /* Client: Accept before HelloReply; input before start. */
    pair_init(&p, "k", "k");
    CU_ASSERT_FATAL(frame_sample_init(&s, KVX__V1__ENVELOPE__BODY_ACCEPT));
    ERR(kvxi_hs_input(p.c, &s.env, p.c_out, p.why, sizeof(p.why)),
        PROTO_UNEXPECTED);
    pair_fini(&p);
    pair_init(&p, "k", "k");
    OK(kvxi_hs_start(p.c, p.c_out));
    ERR(kvxi_hs_input(p.c, &s.env, p.c_out, p.why, sizeof(p.why)),
        PROTO_UNEXPECTED);
    pair_fini(&p);
}

/* After HelloReply every handshake frame must be in the chosen version. */
static void test_hs_frame_version(void)
{
    kvxi_envelope_t *proof;
    hs_pair_t p;

    pair_init(&p, "k", "k");
    OK(kvxi_hs_start(p.c, p.c_out));
    CU_ASSERT_EQUAL(step(&p, p.c_out, p.s, p.s_out), KVX_INPROGRESS);
    CU_ASSERT_EQUAL(step(&p, p.s_out, p.c, p.c_out), KVX_INPROGRESS);
    proof = take(p.c_out);
    CU_ASSERT_PTR_NOT_NULL_FATAL(proof);
    proof->version = 7;
    ERR(kvxi_hs_input(p.s, proof, p.s_out, p.why, sizeof(p.why)),
        PROTO_VERSION);
    kvxi_frame_free(proof);
    pair_fini(&p);
}

static const ut_test_t hs_tests[] = {
    UT_TEST(test_hs_mac_matches_hmac),
    UT_TEST(test_hs_complete),
    UT_TEST(test_hs_no_auth_mode),
    UT_TEST(test_hs_version_negotiation),
    UT_TEST(test_hs_wrong_secret_client_refuses),
    UT_TEST(test_hs_wrong_secret_server_refuses),
    UT_TEST(test_hs_reflected_nonce),
    UT_TEST(test_hs_layout_mismatch),
    UT_TEST(test_hs_forged_layout_hash),
    UT_TEST(test_hs_cluster_and_paths),
    UT_TEST(test_hs_out_of_order),
    UT_TEST(test_hs_frame_version),
    UT_END,
};

int main(void)
{
    const ut_suite_t suites[] = {{"handshake", hs_tests}, {NULL, NULL}};

    return ut_main(suites);
}
