/* test_conv2d_api.c: the conv2d API contract apart from the arithmetic: argument validation
 * (bad shapes, NULL buffers, a bias the plan does not expect, a freed plan: MG_ERR_INVALID_ARG with
 * a message, never a crash), output-size arithmetic, implementation selection through
 * mg_ops_set_impl, and caller-provided shared workspaces. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mg_test.h"
#include "multigrain/ops.h"

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;

#define CONV(nn, cc, hh, kk, rr, st, pd, bias)                                                               \
    {                                                                                                        \
        .n = nn, .c = cc, .h = hh, .w = hh, .k = kk, .r = rr, .s = rr, .stride_h = st, .stride_w = st,       \
        .pad_h = pd, .pad_w = pd, .dil_h = 1, .dil_w = 1, .groups = 1, .has_bias = bias                      \
    }

/* Two plans of different shapes sharing one caller-provided workspace (as a network does) give
 * the same results as plans with their own, for every fast backend. */
static void check_shared_workspace(mg_conv2d_backend backend) {
    const mg_conv2d_desc d1 = CONV(2, 16, 9, 32, 3, 2, 1, 1), d2 = CONV(1, 32, 5, 48, 1, 1, 0, 0);
    mg_conv2d_plan own1, own2, sh1, sh2;
    mg_assert_ok(mg_conv2d_plan_init_ex(&own1, &d1, backend, MG_CONV2D_LAYOUT_AUTO));
    mg_assert_ok(mg_conv2d_plan_init_ex(&own2, &d2, backend, MG_CONV2D_LAYOUT_AUTO));
    mg_assert_ok(mg_conv2d_plan_init_ex(&sh1, &d1, backend, MG_CONV2D_LAYOUT_AUTO));
    mg_assert_ok(mg_conv2d_plan_init_ex(&sh2, &d2, backend, MG_CONV2D_LAYOUT_AUTO));
    size_t ws = mg_conv2d_plan_workspace_size(&sh1);
    if (mg_conv2d_plan_workspace_size(&sh2) > ws) ws = mg_conv2d_plan_workspace_size(&sh2);
    void *buf = aligned_alloc(64, (ws + 64) / 64 * 64);
    assert_non_null(buf);
    if (mg_conv2d_plan_workspace_size(&sh1) > 0) {
        assert_int_equal(mg_conv2d_plan_set_workspace(&sh1, (char *)buf + 4, ws),
                         MG_ERR_INVALID_ARG); /* misaligned */
        assert_int_equal(mg_conv2d_plan_set_workspace(&sh1, buf, mg_conv2d_plan_workspace_size(&sh1) - 1),
                         MG_ERR_INVALID_ARG); /* too small */
    }
    mg_assert_ok(mg_conv2d_plan_set_workspace(&sh1, buf, ws));
    mg_assert_ok(mg_conv2d_plan_set_workspace(&sh2, buf, ws));
    const size_t nx1 = mg_conv2d_x_size(&sh1), nw1 = mg_conv2d_w_size(&sh1), ny1 = mg_conv2d_y_size(&sh1);
    const size_t nx2 = mg_conv2d_x_size(&sh2), nw2 = mg_conv2d_w_size(&sh2), ny2 = mg_conv2d_y_size(&sh2);
    float *x1 = mg_test_rand_buf(&g_rng, nx1), *w1 = mg_test_rand_buf(&g_rng, nw1), *b1 = mg_test_rand_buf(&g_rng, 32), *x2 = mg_test_rand_buf(&g_rng, nx2),
          *w2 = mg_test_rand_buf(&g_rng, nw2);
    float *ya = malloc(ny1 * 4), *yb = malloc(ny1 * 4), *za = malloc(ny2 * 4), *zb = malloc(ny2 * 4);
    float *dwa = calloc(nw1, 4), *dwb = calloc(nw1, 4), *dba = calloc(32, 4), *dbb = calloc(32, 4);
    mg_assert_ok(mg_conv2d_forward(&own1, x1, w1, b1, ya));
    mg_assert_ok(mg_conv2d_forward(&own2, x2, w2, NULL, za));
    mg_assert_ok(mg_conv2d_backward_weights(&own1, x1, ya, dwa, dba));
    mg_assert_ok(mg_conv2d_forward(&sh1, x1, w1, b1, yb));
    mg_assert_ok(mg_conv2d_forward(&sh2, x2, w2, NULL, zb)); /* overwrites the shared workspace */
    mg_assert_ok(mg_conv2d_backward_weights(&sh1, x1, yb, dwb, dbb));
    /* Same primitives on the same data: equal up to the summation order a different thread split
     * could give (values are O(1..30), float eps 6e-8). */
    mg_test_assert_close("forward y, shared workspace", yb, ya, ny1, 1e-5, 1e-5);
    mg_test_assert_close("forward z, shared workspace", zb, za, ny2, 1e-5, 1e-5);
    mg_test_assert_close("backward dw, shared workspace", dwb, dwa, nw1, 1e-4, 1e-5);
    mg_test_assert_close("backward db, shared workspace", dbb, dba, 32, 1e-4, 1e-5);
    mg_conv2d_plan_free(&own1), mg_conv2d_plan_free(&own2), mg_conv2d_plan_free(&sh1),
        mg_conv2d_plan_free(&sh2);
    free(buf), free(x1), free(w1), free(b1), free(x2), free(w2), free(ya), free(yb), free(za), free(zb);
    free(dwa), free(dwb), free(dba), free(dbb);
}

static void test_shared_workspace(void **state) {
    (void)state;
    check_shared_workspace(MG_CONV2D_IM2COL);
#if MG_HAVE_ONEDNN
    check_shared_workspace(MG_CONV2D_DNNL);
#endif
}

static mg_conv2d_desc good(void) {
    mg_conv2d_desc d = CONV(1, 4, 5, 6, 3, 1, 1, 1);
    return d;
}

static void expect_bad_desc(mg_conv2d_desc d, const char *why) {
    mg_conv2d_plan plan;
    mg_status s = mg_conv2d_plan_init(&plan, &d);
    if (s != MG_ERR_INVALID_ARG) fail_msg("%s: expected invalid_arg, got %s", why, mg_status_name(s));
    assert_true(strlen(mg_error_message()) > 0);
    printf("  rejected (%s): %s\n", why, mg_error_message());
    mg_conv2d_plan_free(&plan); /* zeroed on failure: freeing is harmless */
    int p, q;
    assert_int_equal(mg_conv2d_out_size(&d, &p, &q), MG_ERR_INVALID_ARG);
}

static void test_bad_shapes(void **state) {
    (void)state;
    mg_conv2d_desc d;
    d = good(), d.n = 0, expect_bad_desc(d, "n = 0");
    d = good(), d.c = -1, expect_bad_desc(d, "c < 0");
    d = good(), d.h = 0, expect_bad_desc(d, "h = 0");
    d = good(), d.k = 0, expect_bad_desc(d, "k = 0");
    d = good(), d.r = 0, expect_bad_desc(d, "r = 0");
    d = good(), d.stride_w = 0, expect_bad_desc(d, "stride 0");
    d = good(), d.dil_h = 0, expect_bad_desc(d, "dilation 0");
    d = good(), d.pad_h = -1, expect_bad_desc(d, "negative padding");
    d = good(), d.groups = 0, expect_bad_desc(d, "groups 0");
    d = good(), d.groups = 3, expect_bad_desc(d, "c not divisible by groups");
    d = good(), d.groups = 4, expect_bad_desc(d, "k not divisible by groups");
    d = good(), d.has_bias = 2, expect_bad_desc(d, "has_bias 2");
    d = good(), d.r = 9, d.pad_h = 1, expect_bad_desc(d, "kernel larger than padded input");
    d = good(), d.dil_w = 4, d.pad_w = 0, expect_bad_desc(d, "dilated kernel larger than input");
    d = good(), d.n = 1 << 30, d.c = 1 << 20, expect_bad_desc(d, "size overflow");
    mg_conv2d_plan plan;
    assert_int_equal(mg_conv2d_plan_init(&plan, NULL), MG_ERR_INVALID_ARG);
    d = good();
    assert_int_equal(mg_conv2d_plan_init(NULL, &d), MG_ERR_INVALID_ARG);
    int p = 0, q = 0;
    d = good(), d.h = 7, d.w = 1, d.r = 3, d.s = 1, d.pad_w = 0, d.stride_h = 2;
    mg_assert_ok(mg_conv2d_out_size(&d, &p, &q));
    assert_int_equal(p, 4);
    assert_int_equal(q, 1);
}

static void test_null_buffers(void **state) {
    (void)state;
    const mg_conv2d_backend backends[] = {
        MG_CONV2D_REFERENCE,
        MG_CONV2D_IM2COL,
#if MG_HAVE_ONEDNN
        MG_CONV2D_DNNL
#endif
    };
    for (size_t i = 0; i < sizeof backends / sizeof backends[0]; i++) {
        mg_conv2d_desc d = good();
        mg_conv2d_plan plan;
        mg_assert_ok(mg_conv2d_plan_init_ex(&plan, &d, backends[i], MG_CONV2D_LAYOUT_AUTO));
        float x[100] = {0}, w[216] = {0}, b[6] = {0}, y[150] = {0};
        assert_int_equal(mg_conv2d_forward(NULL, x, w, b, y), MG_ERR_INVALID_ARG);
        assert_int_equal(mg_conv2d_forward(&plan, NULL, w, b, y), MG_ERR_INVALID_ARG);
        assert_int_equal(mg_conv2d_forward(&plan, x, NULL, b, y), MG_ERR_INVALID_ARG);
        assert_int_equal(mg_conv2d_forward(&plan, x, w, NULL, y), MG_ERR_INVALID_ARG); /* has_bias = 1 */
        assert_int_equal(mg_conv2d_forward(&plan, x, w, b, NULL), MG_ERR_INVALID_ARG);
        assert_int_equal(mg_conv2d_backward_data(&plan, NULL, w, x), MG_ERR_INVALID_ARG);
        assert_int_equal(mg_conv2d_backward_data(&plan, y, NULL, x), MG_ERR_INVALID_ARG);
        assert_int_equal(mg_conv2d_backward_data(&plan, y, w, NULL), MG_ERR_INVALID_ARG);
        assert_int_equal(mg_conv2d_backward_weights(&plan, NULL, y, w, b), MG_ERR_INVALID_ARG);
        assert_int_equal(mg_conv2d_backward_weights(&plan, x, NULL, w, b), MG_ERR_INVALID_ARG);
        assert_int_equal(mg_conv2d_backward_weights(&plan, x, y, NULL, b), MG_ERR_INVALID_ARG);
        assert_int_equal(mg_conv2d_backward_weights(&plan, x, y, w, NULL), MG_ERR_INVALID_ARG);
        mg_assert_ok(mg_conv2d_forward(&plan, x, w, b, y));
        mg_conv2d_plan_free(&plan);
        /* a freed (zeroed) plan is refused, not crashed on */
        assert_int_equal(mg_conv2d_forward(&plan, x, w, b, y), MG_ERR_INVALID_ARG);
        /* a bias given to a plan without one is refused */
        d.has_bias = 0;
        mg_assert_ok(mg_conv2d_plan_init_ex(&plan, &d, backends[i], MG_CONV2D_LAYOUT_AUTO));
        assert_int_equal(mg_conv2d_forward(&plan, x, w, b, y), MG_ERR_INVALID_ARG);
        assert_int_equal(mg_conv2d_backward_weights(&plan, x, y, w, b), MG_ERR_INVALID_ARG);
        mg_conv2d_plan_free(&plan);
    }
#if !MG_HAVE_ONEDNN
    mg_conv2d_desc d = good();
    mg_conv2d_plan plan;
    assert_int_equal(mg_conv2d_plan_init_ex(&plan, &d, MG_CONV2D_DNNL, MG_CONV2D_LAYOUT_AUTO),
                     MG_ERR_UNSUPPORTED);
#endif
}

/* mg_ops_set_impl(REFERENCE) makes new plans use the reference; FAST a fast backend. */
static void test_impl_selection(void **state) {
    (void)state;
    mg_conv2d_desc d = good();
    mg_conv2d_plan plan;
    mg_ops_impl old = mg_ops_get_impl();
    mg_ops_set_impl(MG_OPS_REFERENCE);
    mg_assert_ok(mg_conv2d_plan_init(&plan, &d));
    assert_int_equal(plan.backend, MG_CONV2D_REFERENCE);
    mg_conv2d_plan_free(&plan);
    mg_ops_set_impl(MG_OPS_FAST);
    mg_assert_ok(mg_conv2d_plan_init(&plan, &d));
    assert_int_equal(plan.backend, MG_HAVE_ONEDNN ? MG_CONV2D_DNNL : MG_CONV2D_IM2COL);
    mg_conv2d_plan_free(&plan);
    mg_ops_set_impl(old);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shared_workspace),
        cmocka_unit_test(test_bad_shapes),
        cmocka_unit_test(test_null_buffers),
        cmocka_unit_test(test_impl_selection),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
