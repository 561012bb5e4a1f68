/* test_layers_fd.c: finite-difference gradient checks for every layer op with a backward (ops_layers.h),
 * independent of PyTorch. The ops are float32, so the check is built to be meaningful in float32:
 *  - scalar objective L = sum_i r_i y_i with fixed random r, evaluated in double from the float32 outputs;
 *  - fourth-order central stencil (-L(x+2h) + 8L(x+h) - 8L(x-h) + L(x-2h)) / 12h with h = 1e-2:
 *    truncation ~ h^4 |L^(5)| / 30 ~ 1e-9 for our smooth O(1) functions, and rounding noise
 *    ~ 1.5 * sqrt(m) * 6e-8 * |y| / h ~ 1e-4 for m <= 100 outputs of size O(1);
 *  - tolerance |fd - analytic| <= 2e-3 + 2e-3 |analytic|: 10x the noise estimate, while a wrong
 *    formula (a missing term, a wrong factor) is off by O(0.1) or more.
 * Kinks are avoided by construction (ReLU/max-pool inputs on a shuffled grid with spacing 0.07 > 4h,
 * GeM inputs above the clamp). Both implementations are checked. Also: bad input returns
 * MG_ERR_INVALID_ARG with a message, and fast == reference on ResNet-50-like shapes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mg_test.h"
#include "multigrain/ops.h"
#if MG_HAVE_ONEDNN
#include "ops/cpu/batchnorm_internal.h"
#endif

static uint64_t g_seed = 42;
static double urand(void) { /* xorshift64*, [0,1) */
    g_seed ^= g_seed >> 12;
    g_seed ^= g_seed << 25;
    g_seed ^= g_seed >> 27;
    return (double)((g_seed * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}
static float nrand(void) { return (float)(sqrt(-2.0 * log(urand() + 1e-300)) * cos(6.283185307179586 * urand())); }
static float *rnd(size_t n, float scale, float shift) {
    float *p = malloc(n * sizeof *p);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) p[i] = nrand() * scale + shift;
    return p;
}
static float *zeros(size_t n) {
    float *p = calloc(n ? n : 1, sizeof *p);
    assert_non_null(p);
    return p;
}
/* Distinct values on a grid with spacing 0.07, shuffled, centred on `shift`: no ties, no kinks within 2h. */
static float *grid(size_t n, float shift) {
    float *p = malloc(n * sizeof *p);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) p[i] = 0.07f * ((float)i - (float)n / 2) + shift;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(urand() * (double)i);
        float t = p[i - 1];
        p[i - 1] = p[j];
        p[j] = t;
    }
    return p;
}

typedef double (*loss_fn)(void *ctx);
static double dot_r(const float *y, const float *r, size_t m) {
    double s = 0;
    for (size_t i = 0; i < m; i++) s += (double)y[i] * r[i];
    return s;
}

static void fd_check(const char *what, loss_fn f, void *ctx, float *param, size_t n, const float *grad) {
    const float h = 1e-2f;
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        float x0 = param[i];
        double l[4];
        const float off[4] = {2 * h, h, -h, -2 * h};
        for (int k = 0; k < 4; k++) {
            param[i] = x0 + off[k];
            l[k] = f(ctx);
        }
        param[i] = x0;
        /* x0 +- h rounds to float32: the step is off by <= ulp(x0)/2 ~ 1e-7, i.e. 1e-5 of h: negligible */
        double fd = (-l[0] + 8 * l[1] - 8 * l[2] + l[3]) / (12.0 * h);
        double err = fabs(fd - grad[i]);
        if (err > worst) worst = err;
        if (!(err <= 2e-3 + 2e-3 * fabs(grad[i])))
            fail_msg("%s: d/dparam[%zu] analytic %.7g vs finite difference %.7g", what, i, (double)grad[i], fd);
    }
}

static const int IMPLS[2] = {MG_OPS_REFERENCE, MG_OPS_FAST};

/* ---------------- batch norm ---------------- */
typedef struct bn_ctx {
    mg_bn2d_args a;
    float *x, *w, *b, *rm, *rv, *sm, *si, *y, *r;
} bn_ctx;
static double bn_loss(void *v) {
    bn_ctx *t = v;
    float rm[8], rv[8]; /* running stats must not drift between evaluations */
    memcpy(rm, t->rm, (size_t)t->a.c * sizeof *rm);
    memcpy(rv, t->rv, (size_t)t->a.c * sizeof *rv);
    mg_assert_ok(mg_bn2d_forward(&t->a, t->x, t->w, t->b, rm, rv, t->sm, t->si, t->y));
    return dot_r(t->y, t->r, (size_t)t->a.n * t->a.c * t->a.h * t->a.w);
}
static void test_fd_bn(void **state) {
    (void)state;
    for (int ii = 0; ii < 2; ii++)
        for (int mode = 0; mode < 3; mode++) {
            mg_layers_force_impl(IMPLS[ii]);
            int n = 2, c = 3, h = 3, w = 2;
            size_t N = (size_t)n * c * h * w;
            bn_ctx t = {mg_bn2d_default_args((mg_bn_mode)mode, n, c, h, w), rnd(N, 1.5f, 0.3f), rnd(c, 0.3f, 1.0f),
                        rnd(c, 0.5f, 0), rnd(c, 0.3f, 0), rnd(c, 0.2f, 1.0f), zeros(c), zeros(c), zeros(N),
                        rnd(N, 1, 0)};
            float *dx = zeros(N), *dw = zeros(c), *db = zeros(c);
            bn_loss(&t);
            mg_assert_ok(mg_bn2d_backward(&t.a, t.x, t.r, t.w, t.sm, t.si, dx, dw, db));
            char what[64];
            snprintf(what, sizeof what, "bn mode %d impl %d dx", mode, IMPLS[ii]);
            fd_check(what, bn_loss, &t, t.x, N, dx);
            snprintf(what, sizeof what, "bn mode %d impl %d dweight", mode, IMPLS[ii]);
            fd_check(what, bn_loss, &t, t.w, c, dw);
            snprintf(what, sizeof what, "bn mode %d impl %d dbias", mode, IMPLS[ii]);
            fd_check(what, bn_loss, &t, t.b, c, db);
            free(t.x), free(t.w), free(t.b), free(t.rm), free(t.rv), free(t.sm), free(t.si), free(t.y), free(t.r);
            free(dx), free(dw), free(db);
        }
    mg_layers_force_impl(-1);
}

/* ---------------- pooling ---------------- */
typedef struct pool_ctx {
    int kind; /* 0 max, 1 avg, 2 adaptive */
    int n, c, h, w, oh, ow;
    mg_win2d win;
    float *x, *y, *r;
    int32_t *am;
} pool_ctx;
static double pool_loss(void *v) {
    pool_ctx *t = v;
    if (t->kind == 0) mg_assert_ok(mg_maxpool2d_forward(t->n, t->c, t->h, t->w, &t->win, t->x, t->y, t->am));
    if (t->kind == 1) mg_assert_ok(mg_avgpool2d_forward(t->n, t->c, t->h, t->w, &t->win, t->x, t->y));
    if (t->kind == 2)
        mg_assert_ok(mg_adaptive_avgpool2d_forward(t->n, t->c, t->h, t->w, t->oh, t->ow, t->x, t->y));
    return dot_r(t->y, t->r, (size_t)t->n * t->c * t->oh * t->ow);
}
static void test_fd_pool(void **state) {
    (void)state;
    for (int ii = 0; ii < 2; ii++)
        for (int kind = 0; kind < 3; kind++) {
            mg_layers_force_impl(IMPLS[ii]);
            pool_ctx t = {kind, 2, 2, 5, 4, 0, 0, {3, 3, 2, 2, 1, 1}, NULL, NULL, NULL, NULL};
            if (kind == 2) t.oh = 2, t.ow = 3;
            else mg_assert_ok(mg_win2d_out_size(&t.win, t.h, t.w, &t.oh, &t.ow));
            size_t N = (size_t)t.n * t.c * t.h * t.w, M = (size_t)t.n * t.c * t.oh * t.ow;
            t.x = grid(N, 0.1f), t.y = zeros(M), t.r = rnd(M, 1, 0), t.am = calloc(M, sizeof *t.am);
            float *dx = zeros(N);
            pool_loss(&t);
            if (kind == 0) mg_assert_ok(mg_maxpool2d_backward(t.n, t.c, t.h, t.w, &t.win, t.am, t.r, dx));
            if (kind == 1) mg_assert_ok(mg_avgpool2d_backward(t.n, t.c, t.h, t.w, &t.win, t.r, dx));
            if (kind == 2) mg_assert_ok(mg_adaptive_avgpool2d_backward(t.n, t.c, t.h, t.w, t.oh, t.ow, t.r, dx));
            char what[64];
            snprintf(what, sizeof what, "pool kind %d impl %d dx", kind, IMPLS[ii]);
            fd_check(what, pool_loss, &t, t.x, N, dx);
            free(t.x), free(t.y), free(t.r), free(t.am), free(dx);
        }
    mg_layers_force_impl(-1);
}

/* ---------------- GeM ---------------- */
typedef struct gem_ctx {
    int n, c, h, w;
    float p;
    float *x, *y, *r;
} gem_ctx;
static double gem_loss(void *v) {
    gem_ctx *t = v;
    mg_assert_ok(mg_gem_forward(t->n, t->c, t->h, t->w, t->p, t->x, t->y));
    return dot_r(t->y, t->r, (size_t)t->n * t->c);
}
static void test_fd_gem(void **state) {
    (void)state;
    const float ps[3] = {1.0f, 3.0f, 4.5f};
    for (int ii = 0; ii < 2; ii++)
        for (int k = 0; k < 3; k++) {
            mg_layers_force_impl(IMPLS[ii]);
            gem_ctx t = {2, 3, 3, 2, ps[k], NULL, NULL, NULL};
            size_t N = 36, M = 6;
            t.x = rnd(N, 0.3f, 1.0f);
            for (size_t i = 0; i < N; i++) t.x[i] = fabsf(t.x[i]) + 0.1f; /* above the 1e-6 clamp */
            t.y = zeros(M), t.r = rnd(M, 1, 0);
            float *dx = zeros(N), dp = 0;
            gem_loss(&t);
            mg_assert_ok(mg_gem_backward(t.n, t.c, t.h, t.w, t.p, t.x, t.y, t.r, dx, &dp));
            char what[64];
            snprintf(what, sizeof what, "gem p=%g impl %d dx", (double)t.p, IMPLS[ii]);
            fd_check(what, gem_loss, &t, t.x, N, dx);
            if (t.p != 1.0f) { /* at p = 1 the forward switches to the unclamped average: FD around 1 would mix paths */
                snprintf(what, sizeof what, "gem p=%g impl %d dp", (double)t.p, IMPLS[ii]);
                fd_check(what, gem_loss, &t, &t.p, 1, &dp);
            }
            free(t.x), free(t.y), free(t.r), free(dx);
        }
    mg_layers_force_impl(-1);
}

/* ---------------- linear, L2 norm, pdist, CE ---------------- */
typedef struct mat_ctx {
    int op; /* 0 linear, 1 l2norm, 2 pdist, 3 cross-entropy (ls 0.1) */
    int n, in, out;
    float *x, *W, *b, *y, *r;
    int32_t *lab;
} mat_ctx;
static double mat_loss(void *v) {
    mat_ctx *t = v;
    size_t m = 0;
    if (t->op == 0) {
        mg_assert_ok(mg_linear_forward(t->n, t->in, t->out, t->x, t->W, t->b, t->y));
        m = (size_t)t->n * t->out;
    } else if (t->op == 1) {
        mg_assert_ok(mg_l2norm_forward(t->n, t->in, t->x, t->y, NULL));
        m = (size_t)t->n * t->in;
    } else if (t->op == 2) {
        mg_assert_ok(mg_pdist_forward(t->n, t->in, t->x, t->y));
        m = (size_t)t->n * t->n;
    } else {
        float loss;
        mg_assert_ok(mg_cross_entropy(t->n, t->in, t->x, t->lab, 0.1f, 1.0f, &loss, NULL));
        return loss;
    }
    return dot_r(t->y, t->r, m);
}
static void test_fd_matrix_ops(void **state) {
    (void)state;
    for (int ii = 0; ii < 2; ii++)
        for (int op = 0; op < 4; op++) {
            mg_layers_force_impl(IMPLS[ii]);
            mat_ctx t = {op, 3, 5, 4, NULL, NULL, NULL, NULL, NULL, NULL};
            size_t N = 15;
            t.x = rnd(N, 1, 0), t.W = rnd(20, 1, 0), t.b = rnd(4, 1, 0), t.y = zeros(64), t.r = rnd(64, 1, 0);
            int32_t lab[3] = {4, 0, 2};
            t.lab = lab;
            float *dx = zeros(N), *dW = zeros(20), *db = zeros(4);
            char what[64];
            mat_loss(&t);
            if (op == 0) {
                mg_assert_ok(mg_linear_backward(3, 5, 4, t.x, t.W, t.r, dx, dW, db));
                snprintf(what, sizeof what, "linear impl %d dW", IMPLS[ii]);
                fd_check(what, mat_loss, &t, t.W, 20, dW);
                snprintf(what, sizeof what, "linear impl %d db", IMPLS[ii]);
                fd_check(what, mat_loss, &t, t.b, 4, db);
            } else if (op == 1) {
                mg_assert_ok(mg_l2norm_backward(3, 5, t.x, t.r, dx));
            } else if (op == 2) {
                mg_assert_ok(mg_pdist_backward(3, 5, t.x, t.y, t.r, dx));
            } else {
                float loss;
                mg_assert_ok(mg_cross_entropy(3, 5, t.x, lab, 0.1f, 1.0f, &loss, dx));
            }
            snprintf(what, sizeof what, "op %d impl %d dx", op, IMPLS[ii]);
            fd_check(what, mat_loss, &t, t.x, N, dx);
            free(t.x), free(t.W), free(t.b), free(t.y), free(t.r), free(dx), free(dW), free(db);
        }
    mg_layers_force_impl(-1);
}

/* ---------------- element-wise ---------------- */
typedef struct elt_ctx {
    int op; /* 0 relu, 1 sigmoid, 2 chscale, 3 add */
    float *x, *s, *a, *y, *r;
} elt_ctx;
#define EN 24
static double elt_loss(void *v) {
    elt_ctx *t = v;
    if (t->op == 0) mg_assert_ok(mg_relu_forward(EN, t->x, t->y));
    if (t->op == 1) mg_assert_ok(mg_sigmoid_forward(EN, t->x, t->y));
    if (t->op == 2) mg_assert_ok(mg_chscale_forward(2, 3, 4, t->x, t->s, t->y));
    if (t->op == 3) mg_assert_ok(mg_add_forward(EN, t->x, t->a, t->y));
    return dot_r(t->y, t->r, EN);
}
static void test_fd_eltwise(void **state) {
    (void)state;
    for (int ii = 0; ii < 2; ii++)
        for (int op = 0; op < 4; op++) {
            mg_layers_force_impl(IMPLS[ii]);
            elt_ctx t = {op, grid(EN, 0.035f), rnd(6, 0.5f, 0.5f), rnd(EN, 1, 0), zeros(EN), rnd(EN, 1, 0)};
            float *dx = zeros(EN), *ds = zeros(6), *da = zeros(EN);
            elt_loss(&t);
            if (op == 0) mg_assert_ok(mg_relu_backward(EN, t.y, t.r, dx));
            if (op == 1) mg_assert_ok(mg_sigmoid_backward(EN, t.y, t.r, dx));
            if (op == 2) mg_assert_ok(mg_chscale_backward(2, 3, 4, t.x, t.s, t.r, dx, ds));
            if (op == 3) mg_assert_ok(mg_add_backward(EN, t.r, dx, da));
            char what[64];
            snprintf(what, sizeof what, "eltwise op %d impl %d dx", op, IMPLS[ii]);
            fd_check(what, elt_loss, &t, t.x, EN, dx);
            if (op == 2) fd_check("chscale ds", elt_loss, &t, t.s, 6, ds);
            if (op == 3) fd_check("add db", elt_loss, &t, t.a, EN, da);
            free(t.x), free(t.s), free(t.a), free(t.y), free(t.r), free(dx), free(ds), free(da);
        }
    mg_layers_force_impl(-1);
}

/* ---------------- pdist at zero distance ---------------- */
static void test_pdist_zero_distance(void **state) {
    (void)state;
    /* rows 0 and 2 identical: D[0,2] = 0 and the pair contributes the documented subgradient 0 */
    float x[12] = {1, 2, 0.5f, -1, 0, 1, 3, 1, 1, 2, 0.5f, -1}, D[9], dD[9], dx[12];
    for (int i = 0; i < 9; i++) dD[i] = 1.0f;
    for (int ii = 0; ii < 2; ii++) {
        mg_layers_force_impl(IMPLS[ii]);
        mg_assert_ok(mg_pdist_forward(3, 4, x, D));
        mg_assert_ok(mg_pdist_backward(3, 4, x, D, dD, dx));
        /* float32 Gram expansion may leave sqrt(rounding) on the duplicate pair: |x|^2 = 6.25, so
         * at most sqrt(4 * 6.25 * 2^-23) ~ 2e-3 */
        assert_true(D[0] == 0.0f && D[4] == 0.0f && D[8] == 0.0f);
        assert_true(D[2] < 2e-3f && D[6] < 2e-3f);
        for (int i = 0; i < 12; i++) assert_true(isfinite(dx[i]));
        /* dx_0 = 2 (x0 - x1) / D01 (pair 0-2 adds zero: x0 - x2 = 0) */
        double d01 = sqrt(1 + 1 + 6.25 + 4);
        for (int k = 0; k < 4; k++) {
            double want = 2.0 * (x[k] - x[4 + k]) / d01;
            assert_true(fabs(dx[k] - want) < 1e-5); /* float32 rounding of O(1) values */
        }
    }
    mg_layers_force_impl(-1);
}

/* ---------------- max pool: NaN and -inf, hand-computed ---------------- */
static void test_maxpool_nan_inf(void **state) {
    (void)state;
    /* 1x1x3x4, kernel 2x2 stride 2, no padding: windows {0,1,4,5} and {2,3,6,7} of the first two rows.
     * torch CPU: NaN wins and, being compared as "v > best || isnan(v)", the LAST NaN in row-major
     * window order is kept; all -inf keeps the first element (both checked with torch 1.13). Row 2 is
     * not covered (floor mode). */
    float x[12] = {1, NAN, -INFINITY, -INFINITY, NAN, 2, -INFINITY, -INFINITY, 9, 9, 9, 9}, y[2];
    int32_t am[2];
    mg_win2d win = {2, 2, 2, 2, 0, 0};
    for (int ii = 0; ii < 2; ii++) {
        mg_layers_force_impl(IMPLS[ii]);
        mg_assert_ok(mg_maxpool2d_forward(1, 1, 3, 4, &win, x, y, am));
        assert_true(isnan(y[0]));
        assert_int_equal(am[0], 4);
        assert_true(y[1] == -INFINITY);
        assert_int_equal(am[1], 2);
    }
    /* ties without NaN: first maximum in row-major order, also across rows (fast path is separable) */
    float t[16] = {0, 1, 5, 0, 5, 5, 1, 5, 2, 2, 2, 2, 2, 2, 2, 2}, ty[4];
    int32_t tam[4];
    for (int ii = 0; ii < 2; ii++) {
        mg_layers_force_impl(IMPLS[ii]);
        mg_assert_ok(mg_maxpool2d_forward(1, 1, 4, 4, &win, t, ty, tam));
        assert_int_equal(tam[0], 4); /* window {0,1,4,5} = {0,1,5,5}: first 5 at index 4 */
        assert_int_equal(tam[1], 2); /* window {2,3,6,7} = {5,0,1,5}: index 2 */
        assert_int_equal(tam[2], 8);
        assert_int_equal(tam[3], 10);
    }
    mg_layers_force_impl(-1);
}

/* ---------------- SGD against hand-computed steps ---------------- */
static void test_sgd_hand(void **state) {
    (void)state;
    for (int ii = 0; ii < 2; ii++) {
        mg_layers_force_impl(IMPLS[ii]);
        float w = 1.0f, v = 123.0f, g = 0.5f;
        mg_sgd_args a = {0.1f, 0.9f, 0.1f, 0};
        mg_assert_ok(mg_sgd_step(&a, 1, &w, &g, &v, 1)); /* v = 0.5 + 0.1 = 0.6; w = 1 - 0.06 */
        assert_true(fabsf(v - 0.6f) < 1e-7f && fabsf(w - 0.94f) < 1e-7f);
        mg_assert_ok(mg_sgd_step(&a, 1, &w, &g, &v, 0)); /* g' = 0.594; v = 0.54 + 0.594 = 1.134 */
        assert_true(fabsf(v - 1.134f) < 1e-6f && fabsf(w - (0.94f - 0.1134f)) < 1e-6f);
        a.nesterov = 1;
        w = 1.0f;
        mg_assert_ok(mg_sgd_step(&a, 1, &w, &g, &v, 1)); /* v = 0.6; d = 0.6 + 0.54 */
        assert_true(fabsf(w - (1.0f - 0.114f)) < 1e-6f);
    }
    mg_layers_force_impl(-1);
}

/* ---------------- bad input ---------------- */

static void test_bad_input(void **state) {
    (void)state;
    float b4[64] = {0}, s1[8] = {0};
    int32_t am[16] = {0}, lab[2] = {0, 5};
    mg_win2d win = {3, 3, 2, 2, 1, 1}, badpad = {3, 3, 2, 2, 2, 2}, big = {9, 9, 1, 1, 0, 0};
    mg_bn2d_args a = mg_bn2d_default_args(MG_BN_TRAIN, 1, 2, 2, 2);
    mg_bn2d_args one = mg_bn2d_default_args(MG_BN_TRAIN, 1, 2, 1, 1);
    mg_bn2d_args neg = mg_bn2d_default_args(MG_BN_EVAL, 1, -2, 2, 2);
    mg_sgd_args sa = {0.1f, 0.9f, 0, 0};
    for (int ii = 0; ii < 2; ii++) {
        mg_layers_force_impl(IMPLS[ii]);
        MG_EXPECT_INVALID(mg_bn2d_forward(NULL, b4, NULL, NULL, NULL, NULL, s1, s1, b4));
        MG_EXPECT_INVALID(mg_bn2d_forward(&a, NULL, NULL, NULL, NULL, NULL, s1, s1, b4));
        MG_EXPECT_INVALID(mg_bn2d_forward(&one, b4, NULL, NULL, NULL, NULL, s1, s1, b4)); /* 1 value per channel */
        MG_EXPECT_INVALID(mg_bn2d_forward(&neg, b4, NULL, NULL, s1, s1, s1, s1, b4));
        a.mode = MG_BN_EVAL;
        MG_EXPECT_INVALID(mg_bn2d_forward(&a, b4, NULL, NULL, NULL, NULL, s1, s1, b4)); /* eval needs running stats */
        a.mode = MG_BN_TRAIN;
        MG_EXPECT_INVALID(mg_bn2d_backward(&a, b4, NULL, NULL, s1, s1, b4, NULL, NULL));
        MG_EXPECT_INVALID(mg_maxpool2d_forward(1, 1, 4, 4, &badpad, b4, b4, am));
        MG_EXPECT_INVALID(mg_maxpool2d_forward(1, 1, 4, 4, &big, b4, b4, am));
        MG_EXPECT_INVALID(mg_maxpool2d_forward(1, 1, 4, 4, NULL, b4, b4, am));
        MG_EXPECT_INVALID(mg_maxpool2d_forward(0, 1, 4, 4, &win, b4, b4, am));
        MG_EXPECT_INVALID(mg_maxpool2d_backward(1, 1, 4, 4, &win, NULL, b4, b4));
        am[0] = 99; /* not an index of a 4x4 plane */
        MG_EXPECT_INVALID(mg_maxpool2d_backward(1, 1, 4, 4, &win, am, b4, b4));
        MG_EXPECT_INVALID(mg_avgpool2d_forward(1, 1, 4, 4, &win, b4, NULL));
        MG_EXPECT_INVALID(mg_avgpool2d_backward(1, 1, 4, -4, &win, b4, b4));
        MG_EXPECT_INVALID(mg_adaptive_avgpool2d_forward(1, 1, 4, 4, 0, 1, b4, b4));
        MG_EXPECT_INVALID(mg_adaptive_avgpool2d_backward(1, 1, 4, 4, 1, 1, NULL, b4));
        MG_EXPECT_INVALID(mg_gem_forward(1, 1, 2, 2, 0.0f, b4, b4));
        MG_EXPECT_INVALID(mg_gem_forward(1, 1, 2, 2, NAN, b4, b4));
        MG_EXPECT_INVALID(mg_gem_backward(1, 1, 2, 2, 3.0f, b4, NULL, b4, b4, NULL));
        MG_EXPECT_INVALID(mg_linear_forward(2, 0, 3, b4, b4, NULL, b4));
        MG_EXPECT_INVALID(mg_linear_forward(2, 2, 3, b4, NULL, NULL, b4));
        MG_EXPECT_INVALID(mg_linear_backward(2, 2, 3, NULL, b4, b4, NULL, b4, NULL)); /* dW needs x */
        MG_EXPECT_INVALID(mg_l2norm_forward(2, 3, NULL, b4, NULL));
        MG_EXPECT_INVALID(mg_l2norm_backward(2, 3, b4, b4, (float *)b4)); /* dx aliases x */
        MG_EXPECT_INVALID(mg_relu_forward(4, NULL, b4));
        MG_EXPECT_INVALID(mg_relu_backward(4, b4, NULL, b4));
        MG_EXPECT_INVALID(mg_add_forward(4, b4, NULL, b4));
        MG_EXPECT_INVALID(mg_add_backward(4, NULL, b4, b4));
        MG_EXPECT_INVALID(mg_sigmoid_forward(4, b4, NULL));
        MG_EXPECT_INVALID(mg_sigmoid_backward(4, NULL, b4, b4));
        MG_EXPECT_INVALID(mg_chscale_forward(1, 0, 4, b4, s1, b4));
        MG_EXPECT_INVALID(mg_chscale_backward(1, 2, 4, b4, NULL, b4, b4, NULL)); /* dx needs s */
        float loss;
        MG_EXPECT_INVALID(mg_cross_entropy(2, 4, b4, lab, 0.0f, 1.0f, &loss, b4)); /* label 5 >= 4 */
        MG_EXPECT_INVALID(mg_cross_entropy(2, 6, b4, lab, 1.5f, 1.0f, &loss, b4));
        MG_EXPECT_INVALID(mg_cross_entropy(2, 6, b4, NULL, 0.0f, 1.0f, &loss, b4));
        MG_EXPECT_INVALID(mg_cross_entropy(2, 6, b4, lab, 0.0f, 1.0f, NULL, b4));
        MG_EXPECT_INVALID(mg_pdist_forward(2, 3, NULL, b4));
        MG_EXPECT_INVALID(mg_pdist_backward(2, 3, b4, b4, NULL, b4));
        MG_EXPECT_INVALID(mg_sgd_step(&sa, 4, b4, b4, NULL, 1)); /* momentum needs a buffer */
        MG_EXPECT_INVALID(mg_sgd_step(NULL, 4, b4, b4, b4, 1));
        MG_EXPECT_INVALID(mg_win2d_out_size(&win, 4, 4, NULL, NULL));
        am[0] = 0;
    }
    mg_layers_force_impl(-1);
}

/* ---------------- BN on a channel far from zero: fast vs the double-accumulating reference ---------- */
static void test_bn_large_mean(void **state) {
    (void)state;
    /* x = 40 + 0.1 N(0,1) over 2x56x56 = 6272 values per channel (a channel whose mean is 400 standard
     * deviations from zero). Both paths compute y = x alpha + beta (torch's form: rounding at
     * |x alpha| ~ 400-800, ulp 3e-5..6e-5, hence y's 1e-4) and dx as torch does,
     * (dy - mean dy - (x - mean) k) scale, with x - mean formed first; they differ only in how
     * deviations are accumulated (float lanes + double blocks vs double). Measured: dx within 4e-6 abs /
     * 1e-5 rel, dw/db within 3e-6 rel; the tolerances leave 2-3x margin, while the two mistakes this
     * guards against measured far outside them: dx expanded as dy*A + x*B + C (8e-4 rel, cancellation)
     * and raw-x float sums without the first-value shift (dw/db 7e-5 rel, dx 1.4e-3 rel). */
    const int n = 2, c = 4, h = 56, w = 56;
    size_t N = (size_t)n * c * h * w;
    float *x = rnd(N, 0.1f, 40.0f), *dy = rnd(N, 1.0f, 0), *wt = rnd(c, 0.2f, 1.0f), *b = rnd(c, 0.2f, 0);
    float *y[2], *dx[2], *dwb[2];
    for (int ii = 0; ii < 2; ii++) {
        mg_layers_force_impl(IMPLS[ii]);
        y[ii] = zeros(N), dx[ii] = zeros(N), dwb[ii] = zeros(2 * (size_t)c);
        float *sm = zeros(c), *si = zeros(c);
        mg_bn2d_args a = mg_bn2d_default_args(MG_BN_TRAIN, n, c, h, w);
        mg_assert_ok(mg_bn2d_forward(&a, x, wt, b, NULL, NULL, sm, si, y[ii]));
        mg_assert_ok(mg_bn2d_backward(&a, x, dy, wt, sm, si, dx[ii], dwb[ii], dwb[ii] + c));
        free(sm), free(si);
    }
    mg_test_assert_close("bn large mean y", y[1], y[0], N, 1e-4, 0);
    mg_test_assert_close("bn large mean dx", dx[1], dx[0], N, 1e-6, 2e-5);
    mg_test_assert_close("bn large mean dw db", dwb[1], dwb[0], 2 * (size_t)c, 0, 1e-5);
    for (int ii = 0; ii < 2; ii++) free(y[ii]), free(dx[ii]), free(dwb[ii]);
    free(x), free(dy), free(wt), free(b);
    mg_layers_force_impl(-1);
}

/* ---------------- fast == reference on ResNet-50-like shapes ---------------- */
static void cmp_paths(const char *what, float *fast, float *ref, size_t n, double atol, double rtol) {
    mg_test_assert_close(what, fast, ref, n, atol, rtol);
}
static void test_fast_vs_reference(void **state) {
    (void)state;
    /* conv1 output of a batch of 2 at 112x112 would be slow in the reference loops; use 2x64x56x56
     * (layer1), 2x2048x7x7 (layer4 -> GeM), 2x2048 -> 1000 (fc). Both paths compute the same maths in a
     * different order/precision (oneDNN/OpenBLAS float32 sums vs double): agreement to ~1e-5 relative. */
    const int n = 2, c = 64, h = 56, w = 56;
    size_t N = (size_t)n * c * h * w;
    float *x = rnd(N, 1.0f, 0.2f), *dy = rnd(N, 1.0f, 0), *wt = rnd(c, 0.2f, 1.0f), *b = rnd(c, 0.2f, 0);
    float *out[2], *dxs[2], *dws[2], *rms[2], *rvs[2];
    for (int ii = 0; ii < 2; ii++) {
        mg_layers_force_impl(IMPLS[ii]);
        out[ii] = zeros(N), dxs[ii] = zeros(N), dws[ii] = zeros(2 * c), rms[ii] = zeros(c), rvs[ii] = zeros(c);
        for (int i = 0; i < c; i++) rvs[ii][i] = 1.0f;
        float *sm = zeros(c), *si = zeros(c);
        mg_bn2d_args a = mg_bn2d_default_args(MG_BN_TRAIN, n, c, h, w);
        mg_assert_ok(mg_bn2d_forward(&a, x, wt, b, rms[ii], rvs[ii], sm, si, out[ii]));
        mg_assert_ok(mg_bn2d_backward(&a, x, dy, wt, sm, si, dxs[ii], dws[ii], dws[ii] + c));
        free(sm), free(si);
    }
    /* BN over 6272 values per channel: float32 sums in oneDNN vs double here: ~1e-5 relative */
    cmp_paths("bn y", out[1], out[0], N, 1e-4, 1e-4);
    cmp_paths("bn dx", dxs[1], dxs[0], N, 1e-4, 1e-4);
    cmp_paths("bn dw db", dws[1], dws[0], 2 * (size_t)c, 1e-3, 1e-4);
    cmp_paths("bn running mean", rms[1], rms[0], c, 1e-5, 1e-5);
    cmp_paths("bn running var", rvs[1], rvs[0], c, 1e-5, 1e-5);
    /* max pool 3x3/2 on the same tensor, ReLU: pure selection, exact */
    mg_win2d win = {3, 3, 2, 2, 1, 1};
    int oh, ow;
    mg_assert_ok(mg_win2d_out_size(&win, h, w, &oh, &ow));
    size_t M = (size_t)n * c * oh * ow;
    for (int ii = 0; ii < 2; ii++) {
        mg_layers_force_impl(IMPLS[ii]);
        int32_t *am = calloc(M, sizeof *am);
        mg_assert_ok(mg_maxpool2d_forward(n, c, h, w, &win, x, out[ii], am));
        mg_assert_ok(mg_maxpool2d_backward(n, c, h, w, &win, am, dy, dxs[ii]));
        free(am);
    }
    cmp_paths("maxpool y", out[1], out[0], M, 0, 0);
    cmp_paths("maxpool dx", dxs[1], dxs[0], N, 0, 0);
    for (int ii = 0; ii < 2; ii++) {
        mg_layers_force_impl(IMPLS[ii]);
        mg_assert_ok(mg_relu_forward(N, x, out[ii]));
        mg_assert_ok(mg_relu_backward(N, out[ii], dy, dxs[ii]));
    }
    cmp_paths("relu y", out[1], out[0], N, 0, 0);
    cmp_paths("relu dx", dxs[1], dxs[0], N, 0, 0);
    /* GeM p=3 on 2x2048x7x7 (same buffers reinterpreted: 2*2048*49 < N) */
    const int gc = 2048, gh = 7;
    size_t G = (size_t)n * gc * gh * gh;
    for (size_t i = 0; i < G; i++) x[i] = fabsf(x[i]);
    float dp[2] = {0, 0};
    for (int ii = 0; ii < 2; ii++) {
        mg_layers_force_impl(IMPLS[ii]);
        mg_assert_ok(mg_gem_forward(n, gc, gh, gh, 3.0f, x, out[ii]));
        mg_assert_ok(mg_gem_backward(n, gc, gh, gh, 3.0f, x, out[ii], dy, dxs[ii], &dp[ii]));
    }
    /* fast: x*x*x instead of powf (1-2 ulps), x^2 as x^3/x, float logf in d/dp: a few ulps per term */
    cmp_paths("gem y", out[1], out[0], (size_t)n * gc, 1e-6, 1e-6);
    cmp_paths("gem dx", dxs[1], dxs[0], G, 1e-6, 2e-6);
    cmp_paths("gem dp", &dp[1], &dp[0], 1, 1e-5, 1e-5);
    /* fc 2048 -> 1000: sgemm float32 sums of 2048 O(1) products vs double: ~1e-5 of sqrt(2048) */
    float *W = rnd((size_t)1000 * gc, 0.02f, 0), *fb = rnd(1000, 0.1f, 0);
    float *dW[2];
    for (int ii = 0; ii < 2; ii++) {
        mg_layers_force_impl(IMPLS[ii]);
        dW[ii] = zeros((size_t)1000 * gc);
        mg_assert_ok(mg_linear_forward(n, gc, 1000, x, W, fb, out[ii]));
        mg_assert_ok(mg_linear_backward(n, gc, 1000, x, W, dy, dxs[ii], dW[ii], NULL));
    }
    cmp_paths("linear y", out[1], out[0], (size_t)n * 1000, 1e-5, 1e-4);
    cmp_paths("linear dx", dxs[1], dxs[0], (size_t)n * gc, 1e-5, 1e-4);
    cmp_paths("linear dW", dW[1], dW[0], (size_t)1000 * gc, 1e-6, 1e-5);
    /* L2 norm + pdist on 8 x 2048 normalised embeddings; CE on 8 x 1000 */
    for (int ii = 0; ii < 2; ii++) {
        mg_layers_force_impl(IMPLS[ii]);
        mg_assert_ok(mg_l2norm_forward(8, gc, x, out[ii], NULL));
        mg_assert_ok(mg_pdist_forward(8, gc, out[ii], out[ii] + 8 * gc));
        mg_assert_ok(mg_pdist_backward(8, gc, out[ii], out[ii] + 8 * gc, dy, dxs[ii]));
        mg_assert_ok(mg_l2norm_backward(8, gc, x, dxs[ii], dxs[ii]));
        int32_t lab[8] = {1, 999, 5, 0, 500, 77, 3, 3};
        mg_assert_ok(mg_cross_entropy(8, 1000, x, lab, 0.1f, 0.5f, &dp[ii], dxs[ii] + 8 * gc));
    }
    cmp_paths("l2norm y", out[1], out[0], 8 * (size_t)gc, 1e-6, 1e-5);
    /* pdist: float32 Gram expansion on unit vectors: |D^2| error ~ 4 * 2^-23, D ~ 1.4 */
    cmp_paths("pdist D", out[1] + 8 * gc, out[0] + 8 * gc, 64, 2e-6, 1e-5);
    cmp_paths("pdist+l2norm dx", dxs[1], dxs[0], 8 * (size_t)gc, 1e-4, 1e-4);
    cmp_paths("ce dz", dxs[1] + 8 * gc, dxs[0] + 8 * gc, 8000, 0, 0);
    cmp_paths("ce loss", &dp[1], &dp[0], 1, 0, 0);
    /* CE over 130 rows (more rows than its 64 fixed chunks): same per-row code, same chunk order */
    int32_t lab130[130];
    for (int i = 0; i < 130; i++) lab130[i] = (i * 37) % 1000;
    for (int ii = 0; ii < 2; ii++) {
        mg_layers_force_impl(IMPLS[ii]);
        mg_assert_ok(mg_cross_entropy(130, 1000, x, lab130, 0.1f, 1.0f, &dp[ii], dxs[ii]));
    }
    cmp_paths("ce 130 rows dz", dxs[1], dxs[0], 130000, 0, 0);
    cmp_paths("ce 130 rows loss", &dp[1], &dp[0], 1, 0, 0);
    for (int ii = 0; ii < 2; ii++) free(out[ii]), free(dxs[ii]), free(dws[ii]), free(rms[ii]), free(rvs[ii]), free(dW[ii]);
    free(x), free(dy), free(wt), free(b), free(W), free(fb);
    mg_layers_force_impl(-1);
}

int main(void) {
#if MG_HAVE_ONEDNN
    /* these tests hold our own kernels to tight bounds whatever MG_BN_ONEDNN says; the opt-in oneDNN
     * batch norm is checked against torch in tests/oracle/test_layers.c */
    mg_bn2d_dnnl_set_enabled(0);
#endif
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fd_bn),         cmocka_unit_test(test_fd_pool),
        cmocka_unit_test(test_fd_gem),        cmocka_unit_test(test_fd_matrix_ops),
        cmocka_unit_test(test_fd_eltwise),    cmocka_unit_test(test_pdist_zero_distance),
        cmocka_unit_test(test_sgd_hand),      cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_maxpool_nan_inf), cmocka_unit_test(test_bn_large_mean),
        cmocka_unit_test(test_fast_vs_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
