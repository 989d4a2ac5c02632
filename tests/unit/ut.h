/*
 * Tiny CUnit driver shared by the unit test binaries: one binary per source
 * file, one suite per object, exit 0 (pass), 1 (fail) or 77 (skip).
 */
#ifndef KVX_TEST_UT_H
#define KVX_TEST_UT_H

#include <CUnit/Basic.h>
#include <CUnit/CUnit.h>
#include <stdio.h>

typedef struct ut_test {
    const char *name;
    CU_TestFunc fn;
} ut_test_t;

typedef struct ut_suite {
    const char *name;
    const ut_test_t *tests; /* terminated by { NULL, NULL } */
} ut_suite_t;

#define UT_TEST(fn)                                                            \
    {                                                                          \
#fn, fn                                                                \
    }
#define UT_END                                                                 \
    {                                                                          \
        NULL, NULL                                                             \
    }

/* Registers @suites (terminated by { NULL, NULL }) and runs them verbosely. */
static inline int ut_main(const ut_suite_t *suites)
{
    unsigned failures;

    if (CU_initialize_registry() != CUE_SUCCESS) {
        fprintf(stderr, "CUnit: %s\n", CU_get_error_msg());
        return 1;
    }
    for (const ut_suite_t *s = suites; s->name != NULL; s++) {
        CU_pSuite suite = CU_add_suite(s->name, NULL, NULL);

        if (suite == NULL) {
            goto err;
        }
        for (const ut_test_t *t = s->tests; t->name != NULL; t++) {
            if (CU_add_test(suite, t->name, t->fn) == NULL) {
                goto err;
            }
        }
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    failures = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    CU_cleanup_registry();
    return failures == 0 ? 0 : 1;

err:
    fprintf(stderr, "CUnit: %s\n", CU_get_error_msg());
    CU_cleanup_registry();
    return 1;
}

#endif /* KVX_TEST_UT_H */
