/* test_smoke.c: the oracle plumbing: reads torch-written .npy references and compares them with
 * the same formulas evaluated here, using the shared tolerance check. */
#include <math.h>
#include <stdio.h>

#include "mg_test.h"

static void test_wave_matches_formula(void **state) {
    (void)state;
    mg_npy ref;
    mg_test_load("wave", &ref);
    assert_int_equal(ref.ndim, 3);
    assert_int_equal(ref.shape[0], 2);
    assert_int_equal(ref.shape[1], 3);
    assert_int_equal(ref.shape[2], 5);
    float got[30];
    for (int i = 0; i < 30; i++) got[i] = (float)(sin(0.37 * i) * exp(0.05 * i) - 0.5);
    mg_test_assert_close("wave", got, ref.data, 30, 1e-6, 1e-6);
    mg_npy_free(&ref);
}

static void test_softmax_matches_torch(void **state) {
    (void)state;
    mg_npy x, ref;
    mg_test_load("wave", &x);
    mg_test_load("wave_softmax", &ref);
    float got[30];
    const float *in = x.data;
    for (int r = 0; r < 6; r++) {
        double mx = -INFINITY, sum = 0;
        for (int c = 0; c < 5; c++) mx = fmax(mx, in[r * 5 + c]);
        for (int c = 0; c < 5; c++) sum += exp(in[r * 5 + c] - mx);
        for (int c = 0; c < 5; c++) got[r * 5 + c] = (float)(exp(in[r * 5 + c] - mx) / sum);
    }
    mg_test_assert_close("softmax", got, ref.data, 30, 1e-7, 1e-6);
    mg_npy_free(&x);
    mg_npy_free(&ref);
}

static void test_dtypes(void **state) {
    (void)state;
    mg_npy d, l;
    mg_test_load_as("wave_f64", MG_DTYPE_F64, &d);
    assert_int_equal(d.dtype, MG_DTYPE_F64);
    assert_true(fabs(((double *)d.data)[29] - (sin(0.37 * 29) * exp(0.05 * 29) - 0.5)) < 1e-12);
    mg_test_load_as("labels", MG_DTYPE_I64, &l);
    assert_int_equal(l.ndim, 1);
    assert_int_equal(l.shape[0], 5);
    assert_int_equal(((int64_t *)l.data)[4], 5);
    /* float64 must not be read silently as float32 */
    char path[4096];
    snprintf(path, sizeof path, "%s/wave_f64.npy", mg_test_oracle_dir());
    mg_npy bad;
    assert_int_equal(mg_npy_read_as(path, MG_DTYPE_F32, &bad), MG_ERR_FORMAT);
    mg_npy_free(&d);
    mg_npy_free(&l);
}

int main(void) {
    if (mg_test_oracle_unavailable()) return MG_TEST_SKIP;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wave_matches_formula),
        cmocka_unit_test(test_softmax_matches_torch),
        cmocka_unit_test(test_dtypes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
