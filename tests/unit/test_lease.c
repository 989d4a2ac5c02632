/*
 * Unit tests for libkvx/lease.c: lease ids, commit, abort and the fence,
 * unfence, extend, expiry with a fake clock and the deadline heap.
 */
#include "ut.h"

#include "alloc_ut.h"

#include <kvx/kvx.h>
#include <stdint.h>

/* ---- leases ------------------------------------------------------------- */

static void test_lease_id_invalid(void)
{
    kvx_alloc_h a = mk_alloc(4, 2);
    kvx_block_ref_t r[1];
    kvx_lease_id_t lease;
    kvx_lease_id_t bad[4];

    OK_FATAL(kvx_alloc_reserve(a, 1, LATER, &lease, r));
    bad[0] = 1ull << 32;           /* no slot */
    bad[1] = 3;                    /* slot beyond max_leases */
    bad[2] = lease + (1ull << 32); /* right slot, wrong generation */
    bad[3] = lease ^ 3;            /* unused slot */
    ERR(kvx_alloc_lease_commit(a, 0), INVALID_PARAM);
    ERR(kvx_alloc_lease_abort(a, 0), INVALID_PARAM);
    ERR(kvx_alloc_lease_unfence(a, 0), INVALID_PARAM);
    ERR(kvx_alloc_lease_extend(a, 0, LATER), INVALID_PARAM);
    for (int i = 0; i < 4; i++) {
        ERR(kvx_alloc_lease_commit(a, bad[i]), STALE_HANDLE);
        ERR(kvx_alloc_lease_abort(a, bad[i]), STALE_HANDLE);
        ERR(kvx_alloc_lease_unfence(a, bad[i]), STALE_HANDLE);
        ERR(kvx_alloc_lease_extend(a, bad[i], LATER), STALE_HANDLE);
    }
    CHECK_COUNTS(a, 3, 1, 0, 0, 0);
    kvx_alloc_destroy(a);
}

static void test_lease_commit(void)
{
    kvx_alloc_h a = mk_alloc(4, 1);
    kvx_block_ref_t r[3];
    kvx_lease_id_t lease, lease2;
    uint64_t deadline;

    OK_FATAL(kvx_alloc_reserve(a, 3, LATER, &lease, r));
    OK(kvx_alloc_lease_commit(a, lease));
    for (int i = 0; i < 3; i++) {
        CHECK_BLOCK(a, r[i].block, KVX_BLOCK_READY, 1, 1);
        CU_ASSERT_EQUAL(binfo(a, r[i].block).lease, 0);
    }
    CHECK_COUNTS(a, 1, 0, 3, 0, 0);
    CU_ASSERT_EQUAL(battr(a).leases_active, 0);
    ERR(kvx_alloc_next_deadline(a, &deadline), NOT_FOUND);
    /* Retired: every use of the old id is stale, even once the slot (the
     * only one) is reused. */
    OK(kvx_alloc_reserve(a, 1, LATER, &lease2, r));
    CU_ASSERT_NOT_EQUAL(lease2, lease);
    ERR(kvx_alloc_lease_commit(a, lease), STALE_HANDLE);
    ERR(kvx_alloc_lease_abort(a, lease), STALE_HANDLE);
    ERR(kvx_alloc_lease_unfence(a, lease), STALE_HANDLE);
    ERR(kvx_alloc_lease_extend(a, lease, LATER), STALE_HANDLE);
    CHECK_BLOCK(a, r[0].block, KVX_BLOCK_RESERVED, 1, 0);
    kvx_alloc_destroy(a);
}

static void test_lease_abort_fence(void)
{
    kvx_alloc_h a = mk_alloc(4, 0);
    kvx_block_ref_t r[2], r2[4];
    kvx_lease_id_t lease, l2;

    OK_FATAL(kvx_alloc_reserve(a, 2, LATER, &lease, r));
    OK(kvx_alloc_lease_abort(a, lease));
    CHECK_COUNTS(a, 2, 0, 0, 0, 2);
    CU_ASSERT_EQUAL(battr(a).leases_active, 0);
    CU_ASSERT_EQUAL(battr(a).leases_fenced, 1);
    CU_ASSERT_EQUAL(binfo(a, r[0].block).lease, lease);
    /* Idempotent; commit refused; not lifted by unfence of an active one. */
    OK(kvx_alloc_lease_abort(a, lease));
    ERR(kvx_alloc_lease_commit(a, lease), BAD_STATE);
    ERR(kvx_alloc_lease_extend(a, lease, LATER), BAD_STATE);
    /* Fenced blocks are never handed out. */
    ERR(kvx_alloc_reserve(a, 3, LATER, &l2, r2), NO_SPACE);
    OK_FATAL(kvx_alloc_reserve(a, 2, LATER, &l2, r2));
    CU_ASSERT(r2[0].block != r[0].block && r2[0].block != r[1].block);
    CU_ASSERT(r2[1].block != r[0].block && r2[1].block != r[1].block);
    ERR(kvx_alloc_lease_unfence(a, l2), BAD_STATE);
    OK(kvx_alloc_lease_commit(a, l2));
    ERR(kvx_alloc_reserve(a, 1, LATER, &l2, r2), NO_SPACE);
    /* Lifting the fence frees the blocks at a new generation. */
    OK(kvx_alloc_lease_unfence(a, lease));
    CHECK_BLOCK(a, r[0].block, KVX_BLOCK_FREE, 2, 0);
    CHECK_BLOCK(a, r[1].block, KVX_BLOCK_FREE, 2, 0);
    CU_ASSERT_EQUAL(binfo(a, r[0].block).lease, 0);
    CHECK_COUNTS(a, 2, 0, 2, 0, 0);
    CU_ASSERT_EQUAL(battr(a).leases_fenced, 0);
    ERR(kvx_alloc_lease_unfence(a, lease), STALE_HANDLE);
    ERR(kvx_alloc_lease_abort(a, lease), STALE_HANDLE);
    kvx_alloc_destroy(a);
}

static void test_lease_abort_drops_pending_keys(void)
{
    kvx_alloc_h a = mk_alloc(4, 0);
    kvx_block_key_t k = key_of(9);
    kvx_block_ref_t r[1];
    kvx_lease_id_t lease;
    uint8_t hit[1];

    OK_FATAL(kvx_alloc_reserve_keyed(a, &k, 1, LATER, &lease, r, hit, NULL));
    OK(kvx_alloc_lease_abort(a, lease));
    OK(kvx_alloc_lease_unfence(a, lease));
    CU_ASSERT_EQUAL(n_found(a, 9), 0);
    OK(kvx_alloc_reserve_keyed(a, &k, 1, LATER, &lease, r, hit, NULL));
    CU_ASSERT_EQUAL(hit[0], 0);
    OK(kvx_alloc_lease_commit(a, lease));
    CU_ASSERT_EQUAL(n_found(a, 9), 1);
    kvx_alloc_destroy(a);
}

static void test_lease_extend(void)
{
    kvx_alloc_h a = mk_alloc(4, 0);
    kvx_block_ref_t r[1];
    kvx_lease_id_t l1, l2;
    uint64_t d = 0;

    OK(kvx_alloc_reserve(a, 1, fake_now + 100, &l1, r));
    OK(kvx_alloc_reserve(a, 1, fake_now + 200, &l2, r));
    ERR(kvx_alloc_next_deadline(a, NULL), INVALID_PARAM);
    OK(kvx_alloc_next_deadline(a, &d));
    CU_ASSERT_EQUAL(d, fake_now + 100);
    OK(kvx_alloc_lease_extend(a, l1, fake_now + 300));
    OK(kvx_alloc_next_deadline(a, &d));
    CU_ASSERT_EQUAL(d, fake_now + 200);
    OK(kvx_alloc_lease_extend(a, l1, fake_now + 50));
    OK(kvx_alloc_next_deadline(a, &d));
    CU_ASSERT_EQUAL(d, fake_now + 50);
    /* Not in the future: refused, deadline kept. */
    ERR(kvx_alloc_lease_extend(a, l1, fake_now), TIMEOUT);
    ERR(kvx_alloc_lease_extend(a, l1, 0), TIMEOUT);
    OK(kvx_alloc_next_deadline(a, &d));
    CU_ASSERT_EQUAL(d, fake_now + 50);
    /* Fenced: BAD_STATE even with a bad deadline. */
    OK(kvx_alloc_lease_abort(a, l1));
    ERR(kvx_alloc_lease_extend(a, l1, LATER), BAD_STATE);
    ERR(kvx_alloc_lease_extend(a, l1, 0), BAD_STATE);
    OK(kvx_alloc_next_deadline(a, &d));
    CU_ASSERT_EQUAL(d, fake_now + 200);
    kvx_alloc_destroy(a);
}

typedef struct expired_log {
    kvx_alloc_h a;
    kvx_lease_id_t ids[8];
    uint32_t n;
    int unfence; /* lift the fence from inside the callback */
} expired_log_t;

static void on_expired(kvx_lease_id_t lease, void *arg)
{
    expired_log_t *log = arg;

    if (log->n < 8) {
        log->ids[log->n] = lease;
    }
    log->n++;
    if (log->unfence) {
        OK(kvx_alloc_lease_unfence(log->a, lease));
    }
}

static void test_lease_expire(void)
{
    kvx_alloc_h a = mk_alloc(8, 0);
    expired_log_t log = {.a = a};
    kvx_block_ref_t r[3][2];
    kvx_lease_id_t l[3];
    uint32_t n = 99;
    uint64_t d;

    /* Deadlines 30, 10, 20 after now. */
    OK(kvx_alloc_reserve(a, 2, fake_now + 30, &l[0], r[0]));
    OK(kvx_alloc_reserve(a, 2, fake_now + 10, &l[1], r[1]));
    OK(kvx_alloc_reserve(a, 2, fake_now + 20, &l[2], r[2]));
    fake_now += 9;
    OK(kvx_alloc_expire(a, on_expired, &log, &n));
    CU_ASSERT_EQUAL(n, 0);
    CU_ASSERT_EQUAL(log.n, 0);
    /* deadline <= now expires, earliest first. */
    fake_now += 11;
    OK(kvx_alloc_expire(a, on_expired, &log, &n));
    CU_ASSERT_EQUAL(n, 2);
    CU_ASSERT_EQUAL_FATAL(log.n, 2);
    CU_ASSERT_EQUAL(log.ids[0], l[1]);
    CU_ASSERT_EQUAL(log.ids[1], l[2]);
    CHECK_COUNTS(a, 2, 2, 0, 0, 4);
    CU_ASSERT_EQUAL(battr(a).expirations, 2);
    CU_ASSERT_EQUAL(battr(a).leases_fenced, 2);
    CU_ASSERT_EQUAL(battr(a).leases_active, 1);
    CHECK_BLOCK(a, r[1][0].block, KVX_BLOCK_FENCED, 1, 0);
    OK(kvx_alloc_next_deadline(a, &d));
    CU_ASSERT_EQUAL(d, fake_now + 10);
    /* An expired lease behaves as an aborted one. */
    ERR(kvx_alloc_lease_commit(a, l[1]), BAD_STATE);
    ERR(kvx_alloc_lease_extend(a, l[1], LATER), BAD_STATE);
    OK(kvx_alloc_lease_abort(a, l[1]));
    OK(kvx_alloc_lease_unfence(a, l[1]));
    OK(kvx_alloc_lease_unfence(a, l[2]));
    CHECK_COUNTS(a, 6, 2, 0, 0, 0);
    /* Not expired again; NULL callback and count are fine. */
    OK(kvx_alloc_expire(a, NULL, NULL, NULL));
    CU_ASSERT_EQUAL(battr(a).expirations, 2);
    fake_now += 10;
    OK(kvx_alloc_expire(a, NULL, NULL, NULL));
    CU_ASSERT_EQUAL(battr(a).expirations, 3);
    ERR(kvx_alloc_next_deadline(a, &d), NOT_FOUND);
    kvx_alloc_destroy(a);
}

static void test_lease_expire_callback_unfences(void)
{
    kvx_alloc_h a = mk_alloc(4, 0);
    expired_log_t log = {.a = a, .unfence = 1};
    kvx_block_ref_t r[2];
    kvx_lease_id_t l[2];
    uint32_t n = 0;

    OK(kvx_alloc_reserve(a, 2, fake_now + 5, &l[0], r));
    OK(kvx_alloc_reserve(a, 2, fake_now + 5, &l[1], r));
    fake_now += 5;
    OK(kvx_alloc_expire(a, on_expired, &log, &n));
    CU_ASSERT_EQUAL(n, 2);
    CHECK_COUNTS(a, 4, 0, 0, 0, 0);
    CU_ASSERT_EQUAL(battr(a).leases_fenced, 0);
    kvx_alloc_destroy(a);
}

/* Many leases with random deadlines and renewals: expiry follows deadline
 * order and next_deadline is always the minimum (checks the heap). */
static void test_lease_deadline_heap(void)
{
    enum { N = 64 };
    kvx_alloc_h a = mk_alloc(N, 0);
    kvx_lease_id_t l[N];
    uint64_t dl[N], seed = 7, d, min;
    kvx_block_ref_t r[1];
    int live[N];

    for (int i = 0; i < N; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        dl[i] = fake_now + 1 + (seed >> 33) % 1000;
        OK_FATAL(kvx_alloc_reserve(a, 1, dl[i], &l[i], r));
        live[i] = 1;
    }
    for (int step = 0; step < 400; step++) {
        int i;

        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        i = (int)((seed >> 33) % N);
        if (live[i] && step % 3 == 0) {
            dl[i] = fake_now + 1 + (seed >> 40) % 1000;
            OK(kvx_alloc_lease_extend(a, l[i], dl[i]));
        } else if (live[i] && step % 7 == 0) {
            OK(kvx_alloc_lease_commit(a, l[i]));
            live[i] = 0;
        }
        fake_now += 3;
        OK(kvx_alloc_expire(a, NULL, NULL, NULL));
        min = UINT64_MAX;
        for (int j = 0; j < N; j++) {
            if (live[j] && dl[j] <= fake_now) {
                live[j] = 0;
                CU_ASSERT_EQUAL(binfo(a, j).state, KVX_BLOCK_FENCED);
            }
            if (live[j] && dl[j] < min) {
                min = dl[j];
            }
        }
        if (min == UINT64_MAX) {
            ERR(kvx_alloc_next_deadline(a, &d), NOT_FOUND);
        } else {
            OK(kvx_alloc_next_deadline(a, &d));
            CU_ASSERT_EQUAL(d, min);
        }
    }
    kvx_alloc_destroy(a);
}

static const ut_test_t lease_tests[] = {
    UT_TEST(test_lease_id_invalid),
    UT_TEST(test_lease_commit),
    UT_TEST(test_lease_abort_fence),
    UT_TEST(test_lease_abort_drops_pending_keys),
    UT_TEST(test_lease_extend),
    UT_TEST(test_lease_expire),
    UT_TEST(test_lease_expire_callback_unfences),
    UT_TEST(test_lease_deadline_heap),
    UT_END,
};

int main(void)
{
    static const ut_suite_t suites[] = {
        {"lease", lease_tests},
        {NULL, NULL},
    };

    return ut_main(suites);
}
