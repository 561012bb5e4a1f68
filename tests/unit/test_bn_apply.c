/* test_bn_apply.c: mg_bn2d_apply (the BN output recomputed from saved statistics, which training
 * backward uses instead of keeping BN+ReLU outputs) reproduces mg_bn2d_forward's output bit for bit,
 * in training and eval mode, on the fast and reference paths; with the relu flag both give exactly
 * relu of the plain output; and it refuses bad arguments. */
#include <stdlib.h>
#include <string.h>

#include "mg_test.h"
#include "multigrain/ops.h"

static uint64_t g_rng = 0x0123456789ABCDEFull;

static void check(mg_ops_impl impl, mg_bn_mode mode) {
    mg_ops_set_impl(impl);
    const int n = 3, c = 5, h = 7, w = 9;
    size_t cnt = (size_t)n * c * h * w;
    float *x = malloc(cnt * sizeof *x), *y = malloc(cnt * sizeof *y), *y2 = malloc(cnt * sizeof *y2);
    float g[5], b[5], rm[5], rv[5], sm[5], si[5];
    for (size_t i = 0; i < cnt; i++) x[i] = 3.0f + 2.0f * mg_test_urand(&g_rng); /* |mean| > std: the shifted sums matter */
    for (int i = 0; i < c; i++) {
        g[i] = 1.0f + 0.5f * mg_test_urand(&g_rng);
        b[i] = 0.3f * mg_test_urand(&g_rng);
        rm[i] = 2.5f + mg_test_urand(&g_rng);
        rv[i] = 1.5f + mg_test_urand(&g_rng);
    }
    mg_bn2d_args a = mg_bn2d_default_args(mode, n, c, h, w);
    mg_assert_ok(mg_bn2d_forward(&a, x, g, b, rm, rv, sm, si, y));
    mg_assert_ok(mg_bn2d_apply(&a, x, g, b, sm, si, y2));
    assert_memory_equal(y, y2, cnt * sizeof *y);
    /* affine = False */
    mg_assert_ok(mg_bn2d_forward(&a, x, NULL, NULL, rm, rv, sm, si, y));
    mg_assert_ok(mg_bn2d_apply(&a, x, NULL, NULL, sm, si, y2));
    assert_memory_equal(y, y2, cnt * sizeof *y);
    /* relu = 1: exactly relu(BN(x)), from forward (out of place and in place) and from apply */
    float rm2[5], rv2[5];
    memcpy(rm2, rm, sizeof rm), memcpy(rv2, rv, sizeof rv);
    mg_assert_ok(mg_bn2d_forward(&a, x, g, b, rm2, rv2, sm, si, y));
    for (size_t i = 0; i < cnt; i++) y[i] = y[i] > 0.0f ? y[i] : 0.0f;
    int negatives = 0;
    for (size_t i = 0; i < cnt; i++) negatives += y[i] == 0.0f;
    assert_true(negatives > 0 && negatives < (int)cnt); /* the ReLU has work to do */
    mg_bn2d_args ar = a;
    ar.relu = 1;
    memcpy(rm2, rm, sizeof rm), memcpy(rv2, rv, sizeof rv);
    mg_assert_ok(mg_bn2d_forward(&ar, x, g, b, rm2, rv2, sm, si, y2));
    assert_memory_equal(y, y2, cnt * sizeof *y);
    float *xin = malloc(cnt * sizeof *xin);
    memcpy(xin, x, cnt * sizeof *xin);
    memcpy(rm2, rm, sizeof rm), memcpy(rv2, rv, sizeof rv);
    mg_assert_ok(mg_bn2d_forward(&ar, xin, g, b, rm2, rv2, sm, si, xin));
    assert_memory_equal(y, xin, cnt * sizeof *y);
    free(xin);
    mg_assert_ok(mg_bn2d_apply(&ar, x, g, b, sm, si, y2));
    assert_memory_equal(y, y2, cnt * sizeof *y);
    assert_int_equal(mg_bn2d_apply(&a, x, g, b, sm, si, x), MG_ERR_INVALID_ARG); /* aliasing */
    assert_int_equal(mg_bn2d_apply(&a, x, g, b, NULL, si, y2), MG_ERR_INVALID_ARG);
    free(x), free(y), free(y2);
    mg_ops_set_impl(MG_OPS_FAST);
}

static void test_fast_train(void **state) {
    (void)state;
    check(MG_OPS_FAST, MG_BN_TRAIN);
}
static void test_fast_eval(void **state) {
    (void)state;
    check(MG_OPS_FAST, MG_BN_EVAL);
}
static void test_reference_train(void **state) {
    (void)state;
    check(MG_OPS_REFERENCE, MG_BN_TRAIN);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fast_train),
        cmocka_unit_test(test_fast_eval),
        cmocka_unit_test(test_reference_train),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
