/* test_all_finite.c: mg_all_finite (the trainer's gradient check) against the definition: false exactly
 * when some element is NaN, +inf or -inf, wherever it sits (vector body, tail, chunk borders of the
 * parallel pass), and true for extreme finite values (FLT_MAX, denormals, -0) whose plain sum would
 * overflow. Both implementations (fast: parallel; reference: serial). */
#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "mg_test.h"
#include "multigrain/ops.h"
#include "multigrain/ops_layers.h"

static bool all_finite(size_t n, const float *x) {
    bool f = false;
    mg_assert_ok(mg_all_finite(n, x, &f));
    return f;
}

static void check(mg_ops_impl impl) {
    mg_ops_set_impl(impl);
    const size_t sizes[] = {1, 7, 8, 9, 1000003};
    const float bad[] = {NAN, INFINITY, -INFINITY};
    uint64_t rng = 5;
    for (int si = 0; si < 5; si++) {
        size_t n = sizes[si];
        float *x = malloc(n * sizeof *x);
        for (size_t i = 0; i < n; i++) x[i] = (mg_test_urand(&rng) - 0.5f) * 1e3f;
        x[0] = FLT_MAX;
        if (n > 1) x[n - 1] = -FLT_MAX;
        if (n > 2) x[1] = FLT_MIN / 8.0f; /* denormal */
        if (n > 3) x[2] = -0.0f;
        assert_true(all_finite(n, x));
        const size_t where[] = {0, n / 2, n - 1, n > 8 ? 8 : 0, n > 131073 ? 131073 : 0};
        for (int w = 0; w < 5; w++)
            for (int b = 0; b < 3; b++) {
                float keep = x[where[w]];
                x[where[w]] = bad[b];
                assert_false(all_finite(n, x));
                x[where[w]] = keep;
            }
        assert_true(all_finite(n, x));
        free(x);
    }
    assert_true(all_finite(0, NULL));
    bool f;
    assert_int_equal(mg_all_finite(4, NULL, &f), MG_ERR_INVALID_ARG);
    mg_ops_set_impl(MG_OPS_FAST);
}

static void test_fast(void **state) {
    (void)state;
    check(MG_OPS_FAST);
}

static void test_reference(void **state) {
    (void)state;
    check(MG_OPS_REFERENCE);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_fast), cmocka_unit_test(test_reference)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
