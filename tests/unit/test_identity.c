/*
 * Unit tests for libkvx/identity.c: identity checks and copies, peer info
 * copies, and the wire forms of layouts, data paths and memory.
 */
#include "ut.h"
#include "conn_ut.h"

#include <string.h>

static void test_identity_check(void)
{
    kvxi_conn_identity_t *copy = NULL;
    char why[128];
    ut_ident_t u, bad;
    kvxi_hs_t *hs = NULL;

    ut_ident_init(&u, "node:1", 9, 128);
    OK(kvxi_identity_check(&u.id, why, sizeof(why)));
    CU_ASSERT_STRING_EQUAL(why, "");
    OK(kvxi_identity_dup(&u.id, &copy));
    CU_ASSERT_PTR_NOT_EQUAL(copy->node_id, u.id.node_id);
    CU_ASSERT_STRING_EQUAL(copy->node_id, "node:1");
    CU_ASSERT(memcmp(copy->memory.rkey, u.rkey, sizeof(u.rkey)) == 0);
    kvxi_identity_free(copy);
    kvxi_identity_free(NULL);
    kvxi_peer_info_free(NULL);

#define BAD_FIELD(stmt, text)                                                  \
    do {                                                                       \
        bad = u;                                                               \
        stmt;                                                                  \
        ERR(kvxi_identity_check(&bad.id, why, sizeof(why)), INVALID_PARAM);    \
        CU_ASSERT_PTR_NOT_NULL(strstr(why, text));                             \
        ERR(kvxi_hs_create(&bad.id, NULL, 0, 1, &hs), INVALID_PARAM);          \
    } while (0)

    BAD_FIELD(bad.id.node_id = "", "node_id");
    BAD_FIELD(bad.id.instance_id = 0, "instance_id");
    BAD_FIELD(bad.id.min_version = 0, "version");
    BAD_FIELD(bad.id.max_version = 0, "version");
    BAD_FIELD(bad.id.role = 0, "role");
    BAD_FIELD(bad.id.data_paths = 0, "data_paths");
    BAD_FIELD(bad.id.data_paths = 4, "data_paths");
    BAD_FIELD(bad.id.max_frame = 100, "max_frame");
    BAD_FIELD(bad.id.max_frame = KVXI_FRAME_MAX_DEFAULT + 1, "max_frame");
    BAD_FIELD(bad.id.memory.worker_address_len = 0, "worker address");
    BAD_FIELD(bad.id.memory.rkey_len = KVXI_BLOB_MAX + 1, "rkey");
    BAD_FIELD(bad.id.memory.pool_length = 0, "pool");
    BAD_FIELD(bad.id.memory.pool_base = UINT64_MAX, "pool");
    BAD_FIELD(bad.id.layout.num_layers = 0, "layout");
    BAD_FIELD(bad.id.layout.block_bytes++, "block_bytes");
#undef BAD_FIELD
    ERR(kvxi_identity_check(NULL, why, sizeof(why)), INVALID_PARAM);
    ERR(kvxi_identity_dup(NULL, &copy), INVALID_PARAM);
    ERR(kvxi_hs_create(&u.id, NULL, 1, 1, &hs), INVALID_PARAM);
    ERR(kvxi_hs_create(&u.id, "x", KVXI_SECRET_MAX + 1, 1, &hs), INVALID_PARAM);
    CU_ASSERT_PTR_NULL(hs);
    /* An rkey-less (AM only) identity is fine. */
    bad = u;
    bad.id.memory.rkey = NULL;
    bad.id.memory.rkey_len = 0;
    bad.id.memory.pool_length = 0;
    OK(kvxi_identity_check(&bad.id, NULL, 0));
    kvxi_hs_destroy(NULL);
}

static void test_identity_wire_layout(void)
{
    Kvx__V1__Layout w;
    kvx_layout_t back;
    char why[128];
    ut_ident_t u;

    ut_ident_init(&u, "node:1", 9, 128);
    u.id.layout.order = KVX_LAYOUT_LAYER_MAJOR;
    kvxi_wire_layout_to(&u.id.layout, &w);
    CU_ASSERT_EQUAL(w.order, KVX__V1__LAYOUT_ORDER__LAYOUT_ORDER_LAYER_MAJOR);
    CU_ASSERT_EQUAL(w.token_order, KVX__V1__TOKEN_ORDER__TOKEN_ORDER_NHD);
    /* (The layout was built block-major; recompute it layer-major.) */
    OK(kvxi_wire_layout_from(&w, &back, why, sizeof(why)));
    CU_ASSERT_EQUAL(back.order, KVX_LAYOUT_LAYER_MAJOR);
    CU_ASSERT_EQUAL(back.block_bytes, u.id.layout.block_bytes);
    CU_ASSERT_EQUAL(kvx_layout_compat_hash(&back),
                    kvx_layout_compat_hash(&u.id.layout));
    w.block_bytes++;
    ERR(kvxi_wire_layout_from(&w, &back, why, sizeof(why)), LAYOUT_MISMATCH);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "block_bytes"));
    w.block_bytes--;
    w.kv_parts = 3;
    ERR(kvxi_wire_layout_from(&w, &back, why, sizeof(why)), INVALID_PARAM);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "layout invalid"));
}

static void test_identity_wire_paths_memory(void)
{
    Kvx__V1__DataPath paths[2];
    Kvx__V1__Memory w;
    kvxi_conn_memory_t m;
    ut_ident_t u;

    CU_ASSERT_EQUAL(kvxi_wire_paths_to(0, paths), 0);
    CU_ASSERT_EQUAL(kvxi_wire_paths_to(KVXI_DATA_PATH_AM, paths), 1);
    CU_ASSERT_EQUAL(paths[0], KVX__V1__DATA_PATH__DATA_PATH_AM);
    CU_ASSERT_EQUAL(kvxi_wire_paths_to(KVXI_DATA_PATH_ALL, paths), 2);
    CU_ASSERT_EQUAL(kvxi_wire_paths_from(2, paths), KVXI_DATA_PATH_ALL);
    paths[1] = (Kvx__V1__DataPath)77; /* unknown: ignored */
    CU_ASSERT_EQUAL(kvxi_wire_paths_from(2, paths), KVXI_DATA_PATH_RMA);

    ut_ident_init(&u, "node:1", 9, 128);
    u.id.memory.mem_type = KVX_MEM_CUDA;
    kvxi_wire_memory_to(&u.id.memory, &w);
    CU_ASSERT_EQUAL(w.mem_type, KVX__V1__MEM_TYPE__MEM_TYPE_CUDA);
    CU_ASSERT_PTR_EQUAL(w.rkey.data, u.rkey); /* a view */
    kvxi_wire_memory_from(&w, &m);
    CU_ASSERT_EQUAL(m.mem_type, KVX_MEM_CUDA);
    CU_ASSERT_EQUAL(m.pool_base, u.id.memory.pool_base);
    CU_ASSERT_EQUAL(m.worker_address_len, sizeof(u.waddr));
    CU_ASSERT_PTR_EQUAL(m.worker_address, u.waddr);
}

static void test_identity_peer_info(void)
{
    kvxi_peer_info_t *peer = calloc(1, sizeof(*peer)), *copy = NULL;
    kvxi_conn_memory_t empty = {0};
    ut_ident_t u;

    CU_ASSERT_PTR_NOT_NULL_FATAL(peer);
    ut_ident_init(&u, "node:1", 9, 128);
    snprintf(peer->node_id, sizeof(peer->node_id), "%s", u.node);
    peer->instance_id = 9;
    peer->layout = u.id.layout;
    peer->layout_hash = kvx_layout_compat_hash(&u.id.layout);
    OK(kvxi_peer_info_set_memory(&peer, &u.id.memory));
    CU_ASSERT(ut_peer_is(peer, &u));
    CU_ASSERT_PTR_NOT_EQUAL(peer->memory.rkey, u.rkey); /* a copy */
    OK(kvxi_peer_info_dup(peer, &copy));
    kvxi_peer_info_free(peer);
    CU_ASSERT(ut_peer_is(copy, &u));
    /* AM-only peers carry no rkey. */
    OK(kvxi_peer_info_set_memory(&copy, &empty));
    CU_ASSERT_EQUAL(copy->memory.rkey_len, 0);
    kvxi_peer_info_free(copy);
    ERR(kvxi_peer_info_dup(NULL, &copy), INVALID_PARAM);
}

static const ut_test_t identity_tests[] = {
    UT_TEST(test_identity_check),
    UT_TEST(test_identity_wire_layout),
    UT_TEST(test_identity_wire_paths_memory),
    UT_TEST(test_identity_peer_info),
    UT_END,
};

int main(void)
{
    const ut_suite_t suites[] = {{"identity", identity_tests}, {NULL, NULL}};

    return ut_main(suites);
}
