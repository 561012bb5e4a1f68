/* test_conv2d_fd.c: finite-difference gradient check of the conv2d backward formulas, in double
 * precision, on the reference kernels (conv2d_ref.c instantiated for double), so it needs no
 * oracle. (The float fast paths are tied to the reference by test_conv2d_fast_vs_ref and all of
 * them to PyTorch by oracle/test_conv2d.)
 *
 * Loss L(x, w, b) = sum(conv(x, w, b) * g) for a fixed random g, so dL/dy = g and the backward
 * kernels must give dL/dx = backward_data(g), dL/dw = backward_weights(g) (accumulated from zero),
 * dL/db = sum of g. Every element of x, w and b is checked with a central difference
 * (L(v + e) - L(v - e)) / 2e. L is linear in each single element (convolution is bilinear in x and
 * w, affine in b), so the central difference has no truncation error at all; only rounding remains,
 * about 1e-16 * |L| / e. With e = 1e-2 and |L| < 1e2 that is ~1e-12, hence atol = rtol = 1e-9: a
 * wrong index or a missed tap changes a gradient by O(0.1..1). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mg_test.h"
#include "ops/cpu/conv2d_internal.h"

static uint64_t g_rng = 0x2545F4914F6CDD1Dull;
static double urand(void) {
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    return (double)(g_rng >> 11) / (double)(1ull << 53) * 2.0 - 1.0;
}
static double *rand_buf(size_t n) {
    double *p = malloc(n * sizeof *p);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) p[i] = urand();
    return p;
}

static double loss(const mg_conv2d_desc *d, int p, int q, const double *x, const double *w, const double *b,
                   const double *g, double *y) {
    mg_conv2d_ref_forward_f64(d, p, q, x, w, b, y);
    double l = 0;
    for (size_t i = 0; i < (size_t)d->n * d->k * p * q; i++) l += y[i] * g[i];
    return l;
}

/* Central-difference gradient of the loss w.r.t. every element of v (which is x, w or b). */
static void fd_grad(const mg_conv2d_desc *d, int p, int q, double *x, double *w, double *b, const double *g,
                    double *y, double *v, size_t n, double *out) {
    const double e = 1e-2;
    for (size_t i = 0; i < n; i++) {
        const double keep = v[i];
        v[i] = keep + e;
        const double lp = loss(d, p, q, x, w, b, g, y);
        v[i] = keep - e;
        const double lm = loss(d, p, q, x, w, b, g, y);
        v[i] = keep;
        out[i] = (lp - lm) / (2 * e);
    }
}

static void check_shape(const char *name, mg_conv2d_desc d) {
    int p, q;
    mg_assert_ok(mg_conv2d_out_size(&d, &p, &q));
    const size_t nx = (size_t)d.n * d.c * d.h * d.w, nw = (size_t)d.k * (d.c / d.groups) * d.r * d.s;
    const size_t ny = (size_t)d.n * d.k * p * q, nk = (size_t)d.k;
    double *x = rand_buf(nx), *w = rand_buf(nw), *b = rand_buf(nk), *g = rand_buf(ny);
    double *y = malloc(ny * sizeof *y), *fd = malloc((nx > nw ? nx : nw) * sizeof *fd);
    double *dx = malloc(nx * sizeof *dx), *dw = calloc(nw, sizeof *dw), *db = calloc(nk, sizeof *db);
    double *bias = d.has_bias ? b : NULL;
    mg_conv2d_ref_backward_data_f64(&d, p, q, g, w, dx);
    mg_conv2d_ref_backward_weights_f64(&d, p, q, x, g, dw, d.has_bias ? db : NULL);
    char label[128];
    fd_grad(&d, p, q, x, w, bias, g, y, x, nx, fd);
    snprintf(label, sizeof label, "%s dL/dx", name);
    mg_test_assert_close_f64(label, dx, fd, nx, 1e-9, 1e-9);
    fd_grad(&d, p, q, x, w, bias, g, y, w, nw, fd);
    snprintf(label, sizeof label, "%s dL/dw", name);
    mg_test_assert_close_f64(label, dw, fd, nw, 1e-9, 1e-9);
    if (d.has_bias) {
        fd_grad(&d, p, q, x, w, bias, g, y, b, nk, fd);
        snprintf(label, sizeof label, "%s dL/db", name);
        mg_test_assert_close_f64(label, db, fd, nk, 1e-9, 1e-9);
    }
    printf("  %-36s out %dx%d: dx, dw%s match finite differences\n", name, p, q, d.has_bias ? ", db" : "");
    free(x), free(w), free(b), free(g), free(y), free(fd), free(dx), free(dw), free(db);
}

static void test_fd(void **state) {
    (void)state;
    check_shape("groups 2, stride 2, pad 1, bias", (mg_conv2d_desc){.n = 2,
                                                                    .c = 4,
                                                                    .h = 5,
                                                                    .w = 6,
                                                                    .k = 6,
                                                                    .r = 3,
                                                                    .s = 3,
                                                                    .stride_h = 2,
                                                                    .stride_w = 2,
                                                                    .pad_h = 1,
                                                                    .pad_w = 1,
                                                                    .dil_h = 1,
                                                                    .dil_w = 1,
                                                                    .groups = 2,
                                                                    .has_bias = 1});
    check_shape("rect 2x3, stride (1,2), pad (1,0), dil (2,1)", (mg_conv2d_desc){.n = 1,
                                                                                 .c = 3,
                                                                                 .h = 7,
                                                                                 .w = 5,
                                                                                 .k = 2,
                                                                                 .r = 2,
                                                                                 .s = 3,
                                                                                 .stride_h = 1,
                                                                                 .stride_w = 2,
                                                                                 .pad_h = 1,
                                                                                 .pad_w = 0,
                                                                                 .dil_h = 2,
                                                                                 .dil_w = 1,
                                                                                 .groups = 1,
                                                                                 .has_bias = 1});
    check_shape("depthwise 3x3, no bias", (mg_conv2d_desc){.n = 1,
                                                           .c = 3,
                                                           .h = 4,
                                                           .w = 4,
                                                           .k = 3,
                                                           .r = 3,
                                                           .s = 3,
                                                           .stride_h = 1,
                                                           .stride_w = 1,
                                                           .pad_h = 1,
                                                           .pad_w = 1,
                                                           .dil_h = 1,
                                                           .dil_w = 1,
                                                           .groups = 3,
                                                           .has_bias = 0});
    check_shape("stride 3 drops the tail, pad 2", (mg_conv2d_desc){.n = 2,
                                                                   .c = 2,
                                                                   .h = 8,
                                                                   .w = 7,
                                                                   .k = 3,
                                                                   .r = 3,
                                                                   .s = 2,
                                                                   .stride_h = 3,
                                                                   .stride_w = 3,
                                                                   .pad_h = 2,
                                                                   .pad_w = 0,
                                                                   .dil_h = 1,
                                                                   .dil_w = 1,
                                                                   .groups = 1,
                                                                   .has_bias = 1});
}

/* The float and double instantiations of the reference are the same code: same answers to float
 * precision (guards against the two copies drifting apart). */
static void test_f32_matches_f64(void **state) {
    (void)state;
    mg_conv2d_desc d = {.n = 2,
                        .c = 4,
                        .h = 6,
                        .w = 5,
                        .k = 4,
                        .r = 3,
                        .s = 3,
                        .stride_h = 2,
                        .stride_w = 1,
                        .pad_h = 1,
                        .pad_w = 2,
                        .dil_h = 1,
                        .dil_w = 2,
                        .groups = 2,
                        .has_bias = 1};
    int p, q;
    mg_assert_ok(mg_conv2d_out_size(&d, &p, &q));
    const size_t nx = (size_t)d.n * d.c * d.h * d.w, nw = (size_t)d.k * (d.c / d.groups) * d.r * d.s;
    const size_t ny = (size_t)d.n * d.k * p * q, nk = (size_t)d.k;
    const size_t nmax = nx + nw + ny + nk;
    double *a = rand_buf(nmax), *out = calloc(nmax, sizeof *out);
    float *af = malloc(nmax * sizeof *af), *outf = calloc(nmax, sizeof *outf);
    double *outd = calloc(nmax, sizeof *outd);
    for (size_t i = 0; i < nmax; i++) af[i] = (float)a[i], a[i] = af[i];
    /* a: x | w | b | dy */
    mg_conv2d_ref_forward_f64(&d, p, q, a, a + nx, a + nx + nw, out);
    mg_conv2d_ref_forward_f32(&d, p, q, af, af + nx, af + nx + nw, outf);
    for (size_t i = 0; i < ny; i++) outd[i] = outf[i];
    mg_test_assert_close_f64("forward f32 vs f64", outd, out, ny, 1e-6, 1e-6);
    mg_conv2d_ref_backward_data_f64(&d, p, q, a + nx + nw + nk, a + nx, out);
    mg_conv2d_ref_backward_data_f32(&d, p, q, af + nx + nw + nk, af + nx, outf);
    for (size_t i = 0; i < nx; i++) outd[i] = outf[i];
    mg_test_assert_close_f64("backward data f32 vs f64", outd, out, nx, 1e-6, 1e-6);
    memset(out, 0, nmax * sizeof *out);
    memset(outf, 0, nmax * sizeof *outf);
    mg_conv2d_ref_backward_weights_f64(&d, p, q, a, a + nx + nw + nk, out, out + nw);
    mg_conv2d_ref_backward_weights_f32(&d, p, q, af, af + nx + nw + nk, outf, outf + nw);
    for (size_t i = 0; i < nw + nk; i++) outd[i] = outf[i];
    mg_test_assert_close_f64("backward weights f32 vs f64", outd, out, nw + nk, 1e-6, 1e-6);
    free(a), free(out), free(af), free(outf), free(outd);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_fd), cmocka_unit_test(test_f32_matches_f64)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
