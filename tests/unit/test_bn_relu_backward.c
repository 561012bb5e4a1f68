/* test_bn_relu_backward.c: mg_bn2d_relu_backward (the backward of relu(BN(x)) with the ReLU's mask
 * recomputed from x, which training uses instead of a pass over the unit's output) gives bit for bit
 * what it replaces: mg_relu_backward on the forward's output, then mg_bn2d_backward. Checked in NCHW
 * and in the blocked layouts nChw8c and nChw16c (the fused kernels), on the fast and reference paths,
 * in training and eval mode, with and without affine parameters; parameter gradients accumulate into
 * non-zero values as mg_bn2d_backward's do; dx == dy is refused. */
#include <stdlib.h>
#include <string.h>

#include "mg_test.h"
#include "multigrain/ops.h"

static uint64_t g_rng = 0x5EEDBA7C4E11ull;

static void check(mg_ops_impl impl, mg_bn_mode mode, int block, int affine) {
    mg_ops_set_impl(impl);
    /* 48 channels: 3 blocks of 16, 6 of 8; 5x7 maps and 3 images: h*w not a multiple of the chunks */
    const int n = 3, c = 48, h = 5, w = 7;
    const size_t cnt = (size_t)n * c * h * w;
    float *x = malloc(cnt * sizeof *x), *y = malloc(cnt * sizeof *y), *dy = malloc(cnt * sizeof *dy);
    float *g1 = malloc(cnt * sizeof *g1), *g2 = malloc(cnt * sizeof *g2);
    float *dx1 = malloc(cnt * sizeof *dx1), *dx2 = malloc(cnt * sizeof *dx2);
    float wt[48], bs[48], rm[48], rv[48], sm[48], si[48], dw1[48], db1[48], dw2[48], db2[48];
    assert_non_null(x), assert_non_null(y), assert_non_null(dy), assert_non_null(g1), assert_non_null(g2);
    assert_non_null(dx1), assert_non_null(dx2);
    for (size_t i = 0; i < cnt; i++) {
        x[i] = 2.0f + 1.5f * mg_test_urand(&g_rng);
        dy[i] = mg_test_urand(&g_rng);
    }
    for (int i = 0; i < c; i++) {
        wt[i] = (i % 5 == 0 ? -1.0f : 1.0f) * (0.5f + 0.5f * mg_test_urand(&g_rng) * mg_test_urand(&g_rng));
        bs[i] = 0.4f * mg_test_urand(&g_rng);
        rm[i] = 2.0f + 0.5f * mg_test_urand(&g_rng);
        rv[i] = 0.8f + 0.5f * mg_test_urand(&g_rng) * mg_test_urand(&g_rng);
        dw1[i] = dw2[i] = 0.25f * (float)i; /* gradients accumulate */
        db1[i] = db2[i] = -0.5f * (float)i;
    }
    const float *pw = affine ? wt : NULL, *pb = affine ? bs : NULL;
    mg_bn2d_args a = mg_bn2d_default_args(mode, n, c, h, w);
    a.block = block;
    a.relu = 1;
    mg_assert_ok(mg_bn2d_forward(&a, x, pw, pb, rm, rv, sm, si, y));
    a.relu = 0; /* backward does not read the flag; the fused call must not need it */
    size_t zeros = 0;
    for (size_t i = 0; i < cnt; i++) zeros += y[i] == 0.0f;
    assert_true(zeros > cnt / 8 && zeros < cnt - cnt / 8); /* the mask matters */
    /* what training did before: the ReLU's backward on the forward's output, then batch norm's */
    memcpy(g1, dy, cnt * sizeof *g1);
    mg_assert_ok(mg_relu_backward(cnt, y, g1, g1));
    mg_assert_ok(mg_bn2d_backward(&a, x, g1, pw, sm, si, dx1, affine ? dw1 : NULL, affine ? db1 : NULL));
    memcpy(g2, dy, cnt * sizeof *g2);
    mg_assert_ok(mg_bn2d_relu_backward(&a, x, g2, pw, pb, sm, si, dx2, affine ? dw2 : NULL, affine ? db2 : NULL));
    assert_memory_equal(dx1, dx2, cnt * sizeof *dx1);
    assert_memory_equal(dw1, dw2, sizeof dw1);
    assert_memory_equal(db1, db2, sizeof db1);
    /* dx only (no parameter gradients) */
    memcpy(g2, dy, cnt * sizeof *g2);
    mg_assert_ok(mg_bn2d_relu_backward(&a, x, g2, pw, pb, sm, si, dx2, NULL, NULL));
    assert_memory_equal(dx1, dx2, cnt * sizeof *dx1);
    /* bad arguments */
    assert_int_equal(mg_bn2d_relu_backward(&a, x, g2, pw, pb, sm, si, g2, NULL, NULL), MG_ERR_INVALID_ARG);
    assert_int_equal(mg_bn2d_relu_backward(&a, NULL, g2, pw, pb, sm, si, dx2, NULL, NULL), MG_ERR_INVALID_ARG);
    assert_int_equal(mg_bn2d_relu_backward(&a, x, g2, pw, pb, NULL, si, dx2, NULL, NULL), MG_ERR_INVALID_ARG);
    free(x), free(y), free(dy), free(g1), free(g2), free(dx1), free(dx2);
    mg_ops_set_impl(MG_OPS_FAST);
}

static void test_fast_blocked(void **state) {
    (void)state;
    for (int affine = 0; affine < 2; affine++) {
        check(MG_OPS_FAST, MG_BN_TRAIN, 16, affine);
        check(MG_OPS_FAST, MG_BN_TRAIN, 8, affine);
        check(MG_OPS_FAST, MG_BN_EVAL, 16, affine);
        check(MG_OPS_FAST, MG_BN_EVAL, 8, affine);
    }
}
static void test_fast_nchw(void **state) {
    (void)state;
    check(MG_OPS_FAST, MG_BN_TRAIN, 0, 1);
    check(MG_OPS_FAST, MG_BN_EVAL, 0, 0);
}
static void test_reference(void **state) {
    (void)state;
    check(MG_OPS_REFERENCE, MG_BN_TRAIN, 0, 1);
    check(MG_OPS_REFERENCE, MG_BN_TRAIN, 8, 1);
    check(MG_OPS_REFERENCE, MG_BN_EVAL, 16, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fast_blocked),
        cmocka_unit_test(test_fast_nchw),
        cmocka_unit_test(test_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
