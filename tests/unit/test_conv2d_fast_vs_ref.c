/* test_conv2d_fast_vs_ref.c: every fast conv2d backend compiled into this build (oneDNN with its
 * plain and blocked layouts, im2col + sgemm) against the reference loops, on the shape classes of
 * ResNet-50 (7x7/2 stem on 3 channels, 1x1, 3x3, 3x3/2, 1x1/2 downsample) at batch 1-2 and reduced
 * spatial size so it runs in seconds, also under ASan, and small maps where some kernel taps only
 * meet padding (the plans then run the live window). Checks forward, backward data (written: the
 * output buffer starts as garbage) and backward weights (accumulated: dw/db start non-zero), and
 * that plans report what they run. (The API contract and bad input: test_conv2d_api.c.)
 *
 * Tolerance: inputs are U(-1, 1); the reference accumulates in double, the fast paths in float in
 * an unknown order. A float sum of L products of size <= 1 errs by well under 2e-6 * L (about 16 ulp
 * of the largest partial sum L/4 .. L), so atol = 2e-6 * L + 1e-5, rtol = 1e-4 (L = the reduction
 * length of that output). An indexing bug gives errors of order 1. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mg_test.h"
#include "multigrain/ops.h"
#include "multigrain/ops_layers.h"

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;

typedef struct {
    const char *name;
    mg_conv2d_desc d;
    int window[4]; /* the live window the plan should run: r0, s0, R', S' ({0}: every tap live) */
} shape;

#define CONV(nn, cc, hh, kk, rr, st, pd, bias)                                                               \
    {                                                                                                        \
        .n = nn, .c = cc, .h = hh, .w = hh, .k = kk, .r = rr, .s = rr, .stride_h = st, .stride_w = st,       \
        .pad_h = pd, .pad_w = pd, .dil_h = 1, .dil_w = 1, .groups = 1, .has_bias = bias                      \
    }

static const shape k_shapes[] = {
    {"stem 7x7/2 3->64", CONV(2, 3, 30, 64, 7, 2, 3, 0), {0}},
    {"1x1 64->256", CONV(2, 64, 14, 256, 1, 1, 0, 0), {0}},
    {"1x1 256->64 +bias", CONV(1, 256, 14, 64, 1, 1, 0, 1), {0}},
    {"3x3 64->64", CONV(2, 64, 12, 64, 3, 1, 1, 0), {0}},
    {"3x3/2 128->128", CONV(1, 128, 15, 128, 3, 2, 1, 0), {0}},
    {"1x1/2 256->512 downsample", CONV(1, 256, 14, 512, 1, 2, 0, 0), {0}},
    {"1x1/2 128->64 odd map", CONV(2, 128, 15, 64, 1, 2, 0, 0), {0}},
    {"3x3 128->128 7x7 +bias", CONV(1, 128, 7, 128, 3, 1, 1, 1), {0}},
    /* stage 4 of a 64x64 input (the model test's size): 2x2 planes */
    {"1x1 256->512 2x2", CONV(2, 256, 2, 512, 1, 1, 0, 0), {0}},
    {"3x3/2 128->128 4x4->2x2", CONV(2, 128, 4, 128, 3, 2, 1, 0), {0}},
    /* dead taps (the plan runs the live window, see conv2d.c): stage 4 of a 32x32 input */
    {"3x3 1x1 map +bias (centre tap)", CONV(2, 64, 1, 32, 3, 1, 1, 1), {1, 1, 1, 1}},
    {"3x3/2 2x2->1x1 (2x2 window)", CONV(2, 32, 2, 48, 3, 2, 1, 0), {1, 1, 2, 2}},
    {"7x7 2x2 map (3x3 window)", CONV(2, 8, 2, 16, 7, 1, 3, 0), {2, 2, 3, 3}},
    {"3x3 1x5 map (rows only)",
     {.n = 2, .c = 16, .h = 1, .w = 5, .k = 24, .r = 3, .s = 3, .stride_h = 1, .stride_w = 1, .pad_h = 1, .pad_w = 1,
      .dil_h = 1, .dil_w = 1, .groups = 1},
     {1, 0, 1, 3}},
    {"3x3 1x1 map groups 4",
     {.n = 2, .c = 16, .h = 1, .w = 1, .k = 8, .r = 3, .s = 3, .stride_h = 1, .stride_w = 1, .pad_h = 1, .pad_w = 1,
      .dil_h = 1, .dil_w = 1, .groups = 4},
     {1, 1, 1, 1}},
};

typedef struct {
    mg_conv2d_backend backend;
    mg_conv2d_layout layout;
    const char *name;
} variant;

static const variant k_variants[] = {
#if MG_HAVE_ONEDNN
    {MG_CONV2D_DNNL, MG_CONV2D_LAYOUT_PLAIN, "onednn/plain"},
    {MG_CONV2D_DNNL, MG_CONV2D_LAYOUT_BLOCKED, "onednn/blocked"},
    {MG_CONV2D_DNNL, MG_CONV2D_LAYOUT_AUTO, "onednn/auto"},
#endif
    {MG_CONV2D_IM2COL, MG_CONV2D_LAYOUT_AUTO, "im2col+sgemm"},
};

static void check(const char *what, const char *shape_name, const char *variant_name, const float *got,
                  const float *ref, size_t n, double red) {
    char label[256];
    snprintf(label, sizeof label, "%s [%s, %s]", what, shape_name, variant_name);
    mg_test_assert_close(label, got, ref, n, 2e-6 * red + 1e-5, 1e-4);
}

static void test_fast_matches_reference(void **state) {
    (void)state;
    for (size_t si = 0; si < sizeof k_shapes / sizeof k_shapes[0]; si++) {
        const shape *sh = &k_shapes[si];
        mg_conv2d_plan ref;
        mg_assert_ok(mg_conv2d_plan_init_ex(&ref, &sh->d, MG_CONV2D_REFERENCE, MG_CONV2D_LAYOUT_AUTO));
        assert_string_equal(mg_conv2d_plan_impl_name(&ref), "reference");
        const size_t nx = mg_conv2d_x_size(&ref), nw = mg_conv2d_w_size(&ref), ny = mg_conv2d_y_size(&ref);
        const size_t nk = (size_t)sh->d.k;
        float *x = mg_test_rand_buf(&g_rng, nx), *w = mg_test_rand_buf(&g_rng, nw), *b = mg_test_rand_buf(&g_rng, nk), *dy = mg_test_rand_buf(&g_rng, ny);
        float *dw0 = mg_test_rand_buf(&g_rng, nw), *db0 = mg_test_rand_buf(&g_rng, nk); /* accumulation starting values */
        float *y_ref = malloc(ny * 4), *dx_ref = malloc(nx * 4), *dw_ref = malloc(nw * 4),
              *db_ref = malloc(nk * 4);
        float *y = malloc(ny * 4), *dx = malloc(nx * 4), *dw = malloc(nw * 4), *db = malloc(nk * 4);
        const float *bias = sh->d.has_bias ? b : NULL;
        memcpy(dw_ref, dw0, nw * 4);
        memcpy(db_ref, db0, nk * 4);
        mg_assert_ok(mg_conv2d_forward(&ref, x, w, bias, y_ref));
        mg_assert_ok(mg_conv2d_backward_data(&ref, dy, w, dx_ref));
        mg_assert_ok(mg_conv2d_backward_weights(&ref, x, dy, dw_ref, sh->d.has_bias ? db_ref : NULL));
        const double red_fwd = (double)(sh->d.c / sh->d.groups) * sh->d.r * sh->d.s;
        const double red_bd = (double)(sh->d.k / sh->d.groups) * sh->d.r * sh->d.s;
        const double red_bw = (double)sh->d.n * ref.p * ref.q;
        for (size_t vi = 0; vi < sizeof k_variants / sizeof k_variants[0]; vi++) {
            const variant *v = &k_variants[vi];
            mg_conv2d_plan plan;
            mg_assert_ok(mg_conv2d_plan_init_ex(&plan, &sh->d, v->backend, v->layout));
            const char *kf, *kd, *kw;
            mg_conv2d_plan_kernel_names(&plan, &kf, &kd, &kw);
            printf("  %-28s %-15s -> %-15s fwd %s | bwd_data %s | bwd_w %s\n", sh->name, v->name,
                   mg_conv2d_plan_impl_name(&plan), kf, kd, kw);
            const int *win = sh->window;
            if (win[2] == 0) {
                assert_null(plan.trim);
            } else {
                assert_non_null(plan.trim);
                assert_int_equal(plan.trim_r0, win[0]);
                assert_int_equal(plan.trim_s0, win[1]);
                assert_int_equal(plan.trim->d.r, win[2]);
                assert_int_equal(plan.trim->d.s, win[3]);
                assert_int_equal(plan.trim->p, plan.p);
                assert_int_equal(plan.trim->q, plan.q);
            }
            /* outputs start as garbage: forward and backward data must write every element */
            for (size_t i = 0; i < ny; i++) y[i] = NAN;
            for (size_t i = 0; i < nx; i++) dx[i] = NAN;
            memcpy(dw, dw0, nw * 4);
            memcpy(db, db0, nk * 4);
            mg_assert_ok(mg_conv2d_forward(&plan, x, w, bias, y));
            check("forward y", sh->name, v->name, y, y_ref, ny, red_fwd);
            mg_assert_ok(mg_conv2d_backward_data(&plan, dy, w, dx));
            check("backward dx", sh->name, v->name, dx, dx_ref, nx, red_bd);
            mg_assert_ok(mg_conv2d_backward_weights(&plan, x, dy, dw, sh->d.has_bias ? db : NULL));
            check("backward dw (accumulated)", sh->name, v->name, dw, dw_ref, nw, red_bw);
            if (sh->d.has_bias) check("backward db (accumulated)", sh->name, v->name, db, db_ref, nk, red_bw);
            /* a second forward on the same plan gives the same answer (no stale state), also in a
             * workspace given by the caller (as the model shares one between its plans) */
            mg_assert_ok(mg_conv2d_forward(&plan, x, w, bias, y));
            check("forward y (second call)", sh->name, v->name, y, y_ref, ny, red_fwd);
            size_t wsb = mg_conv2d_plan_workspace_size(&plan);
            void *ws = wsb ? aligned_alloc(64, (wsb + 63) / 64 * 64) : NULL;
            mg_assert_ok(mg_conv2d_plan_set_workspace(&plan, ws, wsb));
            memcpy(dw, dw0, nw * 4);
            memcpy(db, db0, nk * 4);
            mg_assert_ok(mg_conv2d_forward(&plan, x, w, bias, y));
            check("forward y (caller's workspace)", sh->name, v->name, y, y_ref, ny, red_fwd);
            mg_assert_ok(mg_conv2d_backward_weights(&plan, x, dy, dw, sh->d.has_bias ? db : NULL));
            check("backward dw (caller's workspace)", sh->name, v->name, dw, dw_ref, nw, red_bw);
            mg_conv2d_plan_free(&plan);
            free(ws);
        }
        mg_conv2d_plan_free(&ref);
        free(x), free(w), free(b), free(dy), free(dw0), free(db0);
        free(y_ref), free(dx_ref), free(dw_ref), free(db_ref), free(y), free(dx), free(dw), free(db);
    }
}

/* Plans on channel-blocked caller buffers (mg_conv2d_plan_init_blocked, the training path's layer
 * chain): x and dy go in as nChw<B>c, y and dx come out so, converted with the layout helpers and
 * checked against the reference like the other variants. B = this CPU's block and 8 (on AVX-512 a
 * block oneDNN's AVX-512 kernels do not use: the plan must still be right, through reorders). A side
 * whose channel count B does not divide stays NCHW (the stem's 3 input channels). */
static void test_blocked_io_matches_reference(void **state) {
    (void)state;
#if MG_HAVE_ONEDNN
    const int native = mg_conv2d_blocked_channels();
    if (!native) skip();
    const int blocks[2] = {native, 8};
    for (int bi = 0; bi < (native == 8 ? 1 : 2); bi++) {
        const int B = blocks[bi];
        for (size_t si = 0; si < sizeof k_shapes / sizeof k_shapes[0]; si++) {
            const shape *sh = &k_shapes[si];
            const int xb = sh->d.c % B == 0 && sh->d.groups == 1 ? B : 0, yb = sh->d.k % B == 0 && sh->d.groups == 1 ? B : 0;
            if (!xb && !yb) continue;
            mg_conv2d_plan ref, plan;
            mg_assert_ok(mg_conv2d_plan_init_ex(&ref, &sh->d, MG_CONV2D_REFERENCE, MG_CONV2D_LAYOUT_AUTO));
            mg_assert_ok(mg_conv2d_plan_init_blocked(&plan, &sh->d, xb, yb));
            const size_t nx = mg_conv2d_x_size(&ref), nw = mg_conv2d_w_size(&ref), ny = mg_conv2d_y_size(&ref);
            const size_t nk = (size_t)sh->d.k;
            float *x = mg_test_rand_buf(&g_rng, nx), *w = mg_test_rand_buf(&g_rng, nw), *b = mg_test_rand_buf(&g_rng, nk),
                  *dy = mg_test_rand_buf(&g_rng, ny), *dw0 = mg_test_rand_buf(&g_rng, nw), *db0 = mg_test_rand_buf(&g_rng, nk);
            float *y_ref = malloc(ny * 4), *dx_ref = malloc(nx * 4), *dw_ref = malloc(nw * 4), *db_ref = malloc(nk * 4);
            float *xB = malloc(nx * 4), *dyB = malloc(ny * 4), *yB = malloc(ny * 4), *dxB = malloc(nx * 4);
            float *y = malloc(ny * 4), *dx = malloc(nx * 4), *dw = malloc(nw * 4), *db = malloc(nk * 4);
            const float *bias = sh->d.has_bias ? b : NULL;
            memcpy(dw_ref, dw0, nw * 4);
            memcpy(db_ref, db0, nk * 4);
            memcpy(dw, dw0, nw * 4);
            memcpy(db, db0, nk * 4);
            mg_assert_ok(mg_conv2d_forward(&ref, x, w, bias, y_ref));
            mg_assert_ok(mg_conv2d_backward_data(&ref, dy, w, dx_ref));
            mg_assert_ok(mg_conv2d_backward_weights(&ref, x, dy, dw_ref, sh->d.has_bias ? db_ref : NULL));
            mg_assert_ok(mg_layout_to_blocked(sh->d.n, sh->d.c, sh->d.h, sh->d.w, xb, x, xB));
            mg_assert_ok(mg_layout_to_blocked(sh->d.n, sh->d.k, ref.p, ref.q, yb, dy, dyB));
            for (size_t i = 0; i < ny; i++) yB[i] = NAN;
            for (size_t i = 0; i < nx; i++) dxB[i] = NAN;
            mg_assert_ok(mg_conv2d_forward(&plan, xB, w, bias, yB));
            mg_assert_ok(mg_conv2d_backward_data(&plan, dyB, w, dxB));
            mg_assert_ok(mg_conv2d_backward_weights(&plan, xB, dyB, dw, sh->d.has_bias ? db : NULL));
            mg_assert_ok(mg_layout_to_nchw(sh->d.n, sh->d.k, ref.p, ref.q, yb, yB, y));
            mg_assert_ok(mg_layout_to_nchw(sh->d.n, sh->d.c, sh->d.h, sh->d.w, xb, dxB, dx));
            char vname[64];
            const char *kf, *kd, *kw;
            mg_conv2d_plan_kernel_names(&plan, &kf, &kd, &kw);
            snprintf(vname, sizeof vname, "blocked io x%d y%d", xb, yb);
            printf("  %-28s %-18s fwd %s | bwd_data %s | bwd_w %s\n", sh->name, vname, kf, kd, kw);
            check("forward y", sh->name, vname, y, y_ref, ny, (double)sh->d.c * sh->d.r * sh->d.s);
            check("backward dx", sh->name, vname, dx, dx_ref, nx, (double)sh->d.k * sh->d.r * sh->d.s);
            check("backward dw (accumulated)", sh->name, vname, dw, dw_ref, nw, (double)sh->d.n * ref.p * ref.q);
            if (sh->d.has_bias) check("backward db (accumulated)", sh->name, vname, db, db_ref, nk, (double)sh->d.n * ref.p * ref.q);
            mg_conv2d_plan_free(&plan);
            mg_conv2d_plan_free(&ref);
            free(x), free(w), free(b), free(dy), free(dw0), free(db0), free(y_ref), free(dx_ref), free(dw_ref), free(db_ref);
            free(xB), free(dyB), free(yB), free(dxB), free(y), free(dx), free(dw), free(db);
        }
    }
    /* a block that does not divide the channels is refused */
    mg_conv2d_plan bad;
    mg_conv2d_desc d = k_shapes[1].d;
    assert_int_equal(mg_conv2d_plan_init_blocked(&bad, &d, 48, 16), MG_ERR_INVALID_ARG);
    mg_error_clear();
#else
    skip();
#endif
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_fast_matches_reference),
                                       cmocka_unit_test(test_blocked_io_matches_reference)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
