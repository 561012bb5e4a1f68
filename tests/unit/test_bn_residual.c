/* test_bn_residual.c: batch norm with a residual (mg_bn2d_args.residual: y = relu?(BN(x) + residual),
 * which a residual block's last unit uses to fold the identity sum and the block's ReLU into its BN
 * pass) gives bit for bit what it replaces: the BN output without ReLU, then mg_add_relu_forward (or
 * mg_add_forward without ReLU). Checked for mg_bn2d_forward, mg_bn2d_apply and the synchronised
 * mg_bn2d_forward_sync (with a one-process reduction), in NCHW and the blocked layouts nChw8c and
 * nChw16c (the fused kernels), on the fast and reference paths, in training and eval mode, out of
 * place and in place (y == x, as the inference activations run); the running statistics and saved
 * statistics equal the plain call's; a residual aliasing x or y is refused. */
#include <stdlib.h>
#include <string.h>

#include "mg_test.h"
#include "multigrain/ops.h"

static uint64_t g_rng = 0x2E51D0A1B10Cull;

static mg_status reduce_one(void *ctx, double *data, size_t n) { /* one process: the sums are the totals */
    (void)ctx, (void)data, (void)n;
    return MG_OK;
}

enum { FWD, APPLY, SYNC };

static void check(mg_ops_impl impl, int op, mg_bn_mode mode, int block, int relu, int inplace) {
    mg_ops_set_impl(impl);
    /* 48 channels: 3 blocks of 16, 6 of 8; 5x7 maps and 3 images: h*w not a multiple of the chunks */
    const int n = 3, c = 48, h = 5, w = 7;
    const size_t cnt = (size_t)n * c * h * w;
    float *x = malloc(cnt * sizeof *x), *res = malloc(cnt * sizeof *res);
    float *y1 = malloc(cnt * sizeof *y1), *y2 = malloc(cnt * sizeof *y2);
    float wt[48], bs[48], rm1[48], rv1[48], rm2[48], rv2[48], sm1[48], si1[48], sm2[48], si2[48];
    assert_non_null(x), assert_non_null(res), assert_non_null(y1), assert_non_null(y2);
    for (size_t i = 0; i < cnt; i++) {
        x[i] = 2.0f + 1.5f * mg_test_urand(&g_rng);
        res[i] = 0.8f * mg_test_urand(&g_rng);
    }
    for (int i = 0; i < c; i++) {
        wt[i] = (i % 5 == 0 ? -1.0f : 1.0f) * (0.5f + 0.5f * mg_test_urand(&g_rng) * mg_test_urand(&g_rng));
        bs[i] = 0.4f * mg_test_urand(&g_rng);
        rm1[i] = rm2[i] = 2.0f + 0.5f * mg_test_urand(&g_rng);
        rv1[i] = rv2[i] = 0.8f + 0.5f * mg_test_urand(&g_rng) * mg_test_urand(&g_rng);
        sm1[i] = sm2[i] = 2.0f + 0.1f * (float)i; /* apply reads saved statistics */
        si1[i] = si2[i] = 1.0f + 0.01f * (float)i;
    }
    mg_bn2d_args a = mg_bn2d_default_args(mode, n, c, h, w);
    a.block = block;
    /* what the block did before: BN without ReLU, then the sum and the block's ReLU */
    a.relu = 0;
    if (op == APPLY)
        mg_assert_ok(mg_bn2d_apply(&a, x, wt, bs, sm1, si1, y1));
    else if (op == SYNC)
        mg_assert_ok(mg_bn2d_forward_sync(&a, x, wt, bs, rm1, rv1, sm1, si1, y1, reduce_one, NULL));
    else
        mg_assert_ok(mg_bn2d_forward(&a, x, wt, bs, rm1, rv1, sm1, si1, y1));
    mg_assert_ok(relu ? mg_add_relu_forward(cnt, y1, res, y1) : mg_add_forward(cnt, y1, res, y1));
    if (relu) {
        size_t zeros = 0;
        for (size_t i = 0; i < cnt; i++) zeros += y1[i] == 0.0f;
        assert_true(zeros > cnt / 8 && zeros < cnt - cnt / 8); /* the ReLU after the sum matters */
    }
    /* one call */
    a.relu = relu;
    a.residual = res;
    float *out = y2;
    if (inplace) memcpy(out, x, cnt * sizeof *out);
    const float *in = inplace ? out : x;
    if (op == APPLY)
        mg_assert_ok(mg_bn2d_apply(&a, x, wt, bs, sm2, si2, out)); /* apply never runs in place */
    else if (op == SYNC)
        mg_assert_ok(mg_bn2d_forward_sync(&a, in, wt, bs, rm2, rv2, sm2, si2, out, reduce_one, NULL));
    else
        mg_assert_ok(mg_bn2d_forward(&a, in, wt, bs, rm2, rv2, sm2, si2, out));
    assert_memory_equal(y1, out, cnt * sizeof *out);
    assert_memory_equal(sm1, sm2, sizeof sm1);
    assert_memory_equal(si1, si2, sizeof si1);
    assert_memory_equal(rm1, rm2, sizeof rm1);
    assert_memory_equal(rv1, rv2, sizeof rv1);
    /* a residual that is x or y */
    a.residual = y2;
    assert_int_equal(mg_bn2d_forward(&a, x, wt, bs, rm2, rv2, sm2, si2, y2), MG_ERR_INVALID_ARG);
    assert_int_equal(mg_bn2d_apply(&a, x, wt, bs, sm2, si2, y2), MG_ERR_INVALID_ARG);
    a.residual = x;
    assert_int_equal(mg_bn2d_forward(&a, x, wt, bs, rm2, rv2, sm2, si2, y2), MG_ERR_INVALID_ARG);
    if (mode == MG_BN_TRAIN)
        assert_int_equal(mg_bn2d_forward_sync(&a, x, wt, bs, rm2, rv2, sm2, si2, y2, reduce_one, NULL),
                         MG_ERR_INVALID_ARG);
    free(x), free(res), free(y1), free(y2);
    mg_ops_set_impl(MG_OPS_FAST);
}

static void all_ops(mg_ops_impl impl, int block) {
    for (int relu = 0; relu < 2; relu++)
        for (int inplace = 0; inplace < 2; inplace++) {
            check(impl, FWD, MG_BN_TRAIN, block, relu, inplace);
            check(impl, FWD, MG_BN_EVAL, block, relu, inplace);
            check(impl, SYNC, MG_BN_TRAIN, block, relu, inplace);
        }
    check(impl, APPLY, MG_BN_TRAIN, block, 1, 0);
    check(impl, APPLY, MG_BN_EVAL, block, 0, 0);
}

static void test_fast_blocked(void **state) {
    (void)state;
    all_ops(MG_OPS_FAST, 16);
    all_ops(MG_OPS_FAST, 8);
}
static void test_fast_nchw(void **state) {
    (void)state;
    all_ops(MG_OPS_FAST, 0);
}
static void test_reference(void **state) {
    (void)state;
    all_ops(MG_OPS_REFERENCE, 0);
    all_ops(MG_OPS_REFERENCE, 8);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fast_blocked),
        cmocka_unit_test(test_fast_nchw),
        cmocka_unit_test(test_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
