/* test_conv2d.c: conv2d forward, backward data, backward weights and bias against PyTorch
 * (gen_conv2d.py: F.conv2d + autograd in float64 on float32 inputs) on awkward shapes: batch 1,
 * odd H/W, stride 2 with padding, 1x1 stride 2, groups, depthwise, dilation 2, H = 1, W = 1, the 7x7
 * stride-2 stem, rectangular kernels with mixed strides/padding/dilation, padding wider than half
 * the kernel, strides that drop the input's tail. Every backend of this build is checked: the
 * reference loops, im2col + sgemm, and oneDNN in its plain, blocked and per-op automatic layouts. Backward
 * weights is called twice from zero and must give exactly twice the gradient (the accumulation rule), while
 * dx must be written (the buffer starts as NaN).
 *
 * Tolerance: |got - ref| <= 1e-6 * L + 1e-5 + 1e-4 * |ref|, L = the output's reduction length. Inputs
 * are N(0, 1) with weights scaled by 1/sqrt(fan_in); a float32 sum of L such products errs by a few
 * ulp of the running sum (<= ~1e-7 * L here), so the bound has a 10x margin and still catches any
 * indexing error (which shows up at the size of the values, ~1). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mg_test.h"
#include "multigrain/ops.h"

typedef struct {
    mg_conv2d_backend backend;
    mg_conv2d_layout layout;
    const char *name;
} variant;

static const variant k_variants[] = {
    {MG_CONV2D_REFERENCE, MG_CONV2D_LAYOUT_AUTO, "reference"},
    {MG_CONV2D_IM2COL, MG_CONV2D_LAYOUT_AUTO, "im2col+sgemm"},
#if MG_HAVE_ONEDNN
    {MG_CONV2D_DNNL, MG_CONV2D_LAYOUT_PLAIN, "onednn/plain"},
    {MG_CONV2D_DNNL, MG_CONV2D_LAYOUT_BLOCKED, "onednn/blocked"},
    {MG_CONV2D_DNNL, MG_CONV2D_LAYOUT_AUTO, "onednn/auto"},
#endif
};

static void load(const char *cname, const char *t, mg_npy *out, size_t expect) {
    char name[256];
    snprintf(name, sizeof name, "%s_%s", cname, t);
    mg_test_load(name, out);
    size_t n = 1;
    for (int i = 0; i < out->ndim; i++) n *= (size_t)out->shape[i];
    if (n != expect) fail_msg("%s: %zu elements in the oracle file, the plan expects %zu", name, n, expect);
}

static void check(const char *cname, const char *vname, const char *what, const float *got, const float *ref,
                  size_t n, double red) {
    char label[256];
    snprintf(label, sizeof label, "%s [%s] %s", cname, vname, what);
    mg_test_assert_close(label, got, ref, n, 1e-6 * red + 1e-5, 1e-4);
}

static void run_case(const char *cname, const mg_conv2d_desc *d) {
    mg_conv2d_plan plan;
    mg_assert_ok(mg_conv2d_plan_init_ex(&plan, d, MG_CONV2D_REFERENCE, MG_CONV2D_LAYOUT_AUTO));
    const size_t nx = mg_conv2d_x_size(&plan), nw = mg_conv2d_w_size(&plan), ny = mg_conv2d_y_size(&plan);
    const size_t nk = (size_t)d->k;
    const double red_fwd = (double)(d->c / d->groups) * d->r * d->s;
    const double red_bd = (double)(d->k / d->groups) * d->r * d->s;
    const double red_bw = (double)d->n * plan.p * plan.q;
    mg_conv2d_plan_free(&plan);
    mg_npy x, w, b, dy, y_ref, dx_ref, dw_ref, db_ref;
    load(cname, "x", &x, nx);
    load(cname, "w", &w, nw);
    load(cname, "b", &b, nk);
    load(cname, "dy", &dy, ny);
    load(cname, "y", &y_ref, ny);
    load(cname, "dx", &dx_ref, nx);
    load(cname, "dw", &dw_ref, nw);
    load(cname, "db", &db_ref, nk);
    float *y = malloc(ny * 4), *dx = malloc(nx * 4), *dw = malloc(nw * 4), *db = malloc(nk * 4);
    float *dw2 = malloc(nw * 4), *db2 = malloc(nk * 4);
    assert_true(y && dx && dw && db && dw2 && db2);
    for (size_t i = 0; i < nw; i++) dw2[i] = 2.0f * ((float *)dw_ref.data)[i];
    for (size_t i = 0; i < nk; i++) db2[i] = 2.0f * ((float *)db_ref.data)[i];
    const float *bias = d->has_bias ? b.data : NULL;
    for (size_t vi = 0; vi < sizeof k_variants / sizeof k_variants[0]; vi++) {
        const variant *v = &k_variants[vi];
        mg_assert_ok(mg_conv2d_plan_init_ex(&plan, d, v->backend, v->layout));
        for (size_t i = 0; i < ny; i++) y[i] = NAN;
        for (size_t i = 0; i < nx; i++) dx[i] = NAN;
        memset(dw, 0, nw * 4);
        memset(db, 0, nk * 4);
        mg_assert_ok(mg_conv2d_forward(&plan, x.data, w.data, bias, y));
        check(cname, v->name, "forward y", y, y_ref.data, ny, red_fwd);
        mg_assert_ok(mg_conv2d_backward_data(&plan, dy.data, w.data, dx));
        check(cname, v->name, "backward dx", dx, dx_ref.data, nx, red_bd);
        mg_assert_ok(mg_conv2d_backward_weights(&plan, x.data, dy.data, dw, d->has_bias ? db : NULL));
        check(cname, v->name, "backward dw", dw, dw_ref.data, nw, red_bw);
        if (d->has_bias) check(cname, v->name, "backward db", db, db_ref.data, nk, red_bw);
        mg_assert_ok(mg_conv2d_backward_weights(&plan, x.data, dy.data, dw, d->has_bias ? db : NULL));
        check(cname, v->name, "backward dw after 2 calls (accumulates)", dw, dw2, nw, 2 * red_bw);
        if (d->has_bias)
            check(cname, v->name, "backward db after 2 calls (accumulates)", db, db2, nk, 2 * red_bw);
        printf("  %-22s %-15s ok (%s)\n", cname, v->name, mg_conv2d_plan_impl_name(&plan));
        mg_conv2d_plan_free(&plan);
    }
    free(y), free(dx), free(dw), free(db), free(dw2), free(db2);
    mg_npy_free(&x), mg_npy_free(&w), mg_npy_free(&b), mg_npy_free(&dy);
    mg_npy_free(&y_ref), mg_npy_free(&dx_ref), mg_npy_free(&dw_ref), mg_npy_free(&db_ref);
}

static void test_conv2d_vs_torch(void **state) {
    (void)state;
    char path[4096];
    snprintf(path, sizeof path, "%s/cases.txt", mg_test_oracle_dir());
    FILE *f = fopen(path, "r");
    if (!f) fail_msg("cannot open %s", path);
    char cname[128];
    mg_conv2d_desc d;
    int cases = 0;
    while (fscanf(f, "%127s %d %d %d %d %d %d %d %d %d %d %d %d %d %d %d", cname, &d.n, &d.c, &d.h, &d.w,
                  &d.k, &d.r, &d.s, &d.stride_h, &d.stride_w, &d.pad_h, &d.pad_w, &d.dil_h, &d.dil_w,
                  &d.groups, &d.has_bias) == 16) {
        run_case(cname, &d);
        cases++;
    }
    fclose(f);
    assert_true(cases >= 10);
}

int main(void) {
    if (mg_test_oracle_unavailable()) return MG_TEST_SKIP;
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_conv2d_vs_torch)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
