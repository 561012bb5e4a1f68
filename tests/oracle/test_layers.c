/* test_layers.c: every layer op (ops_layers.h), forward and backward, on both the reference and the fast
 * implementation, against PyTorch autograd references written by gen_layers.py (float64 torch on the
 * same float32 inputs, so each tolerance below bounds our float32 error against the exact answer). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mg_test.h"
#include "multigrain/ops.h"
#if MG_HAVE_ONEDNN
#include "ops/cpu/batchnorm_internal.h" /* the opt-in oneDNN batch norm, tested here too */
#endif

/* ---- loading helpers: every tensor loaded in a test is freed by free_all() ---- */
static mg_npy g_held[256];
static int g_nheld;

static mg_npy *ld_npy(const char *fmt, const char *tag) {
    char name[256];
    snprintf(name, sizeof name, fmt, tag);
    assert_true(g_nheld < 256);
    mg_npy *a = &g_held[g_nheld++];
    mg_test_load(name, a);
    return a;
}
static float *ld(const char *fmt, const char *tag) { return ld_npy(fmt, tag)->data; }
static float *buf(size_t n) {
    assert_true(g_nheld < 256);
    mg_npy *a = &g_held[g_nheld++];
    memset(a, 0, sizeof *a);
    a->data = calloc(n ? n : 1, sizeof(float));
    assert_non_null(a->data);
    return a->data;
}
static void free_all(void) {
    for (int i = 0; i < g_nheld; i++) mg_npy_free(&g_held[i]);
    g_nheld = 0;
}

static const int IMPLS[2] = {MG_OPS_REFERENCE, MG_OPS_FAST};
static const char *impl_name(int i) { return i == MG_OPS_FAST ? "fast" : "reference"; }
static char g_what[256];
static const char *what(int impl, const char *tag, const char *t) {
    snprintf(g_what, sizeof g_what, "%s %s %s", impl_name(impl), tag, t);
    return g_what;
}

/* ---------------- batch norm ---------------- */
/* tol_y, tol_dx, tol_p: absolute+relative tolerances on y, dx and dw/db, justified at the call sites */
static void bn_case(const char *tag, int n, int c, int h, int w, double tol_y, double tol_dx, double tol_p) {
    size_t N = (size_t)n * c * h * w;
    for (int ii = 0; ii < 2; ii++) {
        int impl = IMPLS[ii];
        mg_layers_force_impl(impl);
        /* modes: TRAIN vs torch training; EVAL and FROZEN both vs torch eval (identical maths in torch:
         * fixed statistics, gradients to weight and bias). */
        const mg_bn_mode modes[3] = {MG_BN_TRAIN, MG_BN_EVAL, MG_BN_FROZEN};
        for (int m = 0; m < 3; m++) {
            const char *ref = m == 0 ? "train" : "eval";
            float *x = ld("%s_x", tag), *wt = ld("%s_w", tag), *b = ld("%s_b", tag), *dy = ld("%s_dy", tag);
            float *rm = ld("%s_rm", tag), *rv = ld("%s_rv", tag);
            char f[64];
            snprintf(f, sizeof f, "%%s_%s_y", ref);
            float *ry = ld(f, tag);
            snprintf(f, sizeof f, "%%s_%s_dx", ref);
            float *rdx = ld(f, tag);
            snprintf(f, sizeof f, "%%s_%s_dw", ref);
            float *rdw = ld(f, tag);
            snprintf(f, sizeof f, "%%s_%s_db", ref);
            float *rdb = ld(f, tag);
            snprintf(f, sizeof f, "%%s_%s_rm", ref);
            float *rrm = ld(f, tag);
            snprintf(f, sizeof f, "%%s_%s_rv", ref);
            float *rrv = ld(f, tag);
            float *y = buf(N), *dx = buf(N), *sm = buf(c), *si = buf(c), *dw = buf(c), *db = buf(c);
            for (int i = 0; i < c; i++) dw[i] = db[i] = 0.25f; /* accumulate: start from non-zero */
            mg_bn2d_args a = mg_bn2d_default_args(modes[m], n, c, h, w);
            mg_assert_ok(mg_bn2d_forward(&a, x, wt, b, rm, rv, sm, si, y));
            mg_assert_ok(mg_bn2d_backward(&a, x, dy, wt, sm, si, dx, dw, db));
            for (int i = 0; i < c; i++) {
                rdw[i] += 0.25f;
                rdb[i] += 0.25f;
            }
            /* y, dx: see tol_y / tol_dx at the call sites. */
            mg_test_assert_close(what(impl, tag, "y"), y, ry, N, tol_y, tol_y);
            mg_test_assert_close(what(impl, tag, "dx"), dx, rdx, N, tol_dx, tol_dx);
            mg_test_assert_close(what(impl, tag, "dw"), dw, rdw, c, tol_p, tol_p);
            mg_test_assert_close(what(impl, tag, "db"), db, rdb, c, tol_p, tol_p);
            /* running stats: one float32 blend of exact-ish statistics */
            mg_test_assert_close(what(impl, tag, "running_mean"), rm, rrm, c, 1e-6, 1e-5);
            mg_test_assert_close(what(impl, tag, "running_var"), rv, rrv, c, 1e-6, 1e-5);
            free_all();
        }
    }
    mg_layers_force_impl(-1);
}

static void test_bn(void **state) {
    (void)state;
    /* |x| <~ 8 and outputs are O(1): float32 rounding of a few operations plus the float32 mean/invstd
     * (rel 6e-8 each) stays under 1e-5 abs; reductions accumulate in double (oneDNN: float over <= 105
     * elements, ~1e-6). dw/db sum up to 105 products of O(1) terms: ~1e-6 relative. */
#if MG_HAVE_ONEDNN
    mg_bn2d_dnnl_set_enabled(0); /* first our loops, whatever MG_BN_ONEDNN says; oneDNN below */
#endif
    bn_case("bn", 2, 3, 5, 7, 2e-5, 2e-5, 2e-5);
    bn_case("bn1", 1, 4, 3, 1, 2e-5, 2e-5, 2e-5);
    /* x = 40 +- 0.1 (|mean| = 400 std): the forward's x*alpha + beta (torch's form) rounds at
     * |x| invstd |w| ~ 400-800, ulp 3e-5..6e-5, so y carries up to ~1e-4; dx inherits the float mean's
     * rounding (2e-6 = 2e-5 std) times invstd-sized factors: ~5e-5 measured on dx ~ 10. dw/db: sums of
     * deviations, ~1e-6 relative. (The finer fast-vs-reference check of this regime, with the mistakes
     * it catches, is test_bn_large_mean in tests/unit/test_layers_fd.c.) */
    bn_case("bnoff", 3, 2, 4, 5, 3e-4, 3e-4, 2e-5);
#if MG_HAVE_ONEDNN
    mg_bn2d_dnnl_set_enabled(1); /* the "fast" pass below now runs oneDNN */
    bn_case("bn", 2, 3, 5, 7, 2e-5, 2e-5, 2e-5);
    bn_case("bn1", 1, 4, 3, 1, 2e-5, 2e-5, 2e-5);
    /* oneDNN's ncsp kernel sums x*dy-style terms in plain float around |x| = 40: dw ~1.5e-4 relative */
    bn_case("bnoff", 3, 2, 4, 5, 3e-4, 3e-4, 5e-4);
    mg_bn2d_dnnl_set_enabled(0);
#endif
}

/* ---------------- pooling ---------------- */
typedef struct pool_case {
    const char *tag;
    int n, c, h, w;
    mg_win2d win;
} pool_case;

static void test_pool(void **state) {
    (void)state;
    const pool_case cases[] = {
        {"p3s2", 2, 3, 7, 9, {3, 3, 2, 2, 1, 1}},
        {"pgen", 1, 2, 6, 5, {2, 3, 1, 2, 1, 1}},
        {"ph1", 2, 1, 1, 5, {1, 3, 1, 2, 0, 1}},
        {"pw1", 1, 2, 5, 1, {3, 1, 2, 1, 1, 0}},
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        const pool_case *pc = &cases[ci];
        for (int ii = 0; ii < 2; ii++) {
            int impl = IMPLS[ii];
            mg_layers_force_impl(impl);
            int oh, ow;
            mg_assert_ok(mg_win2d_out_size(&pc->win, pc->h, pc->w, &oh, &ow));
            mg_npy *ry = ld_npy("%s_max_y", pc->tag);
            assert_int_equal(ry->count, (int64_t)pc->n * pc->c * oh * ow);
            size_t N = (size_t)pc->n * pc->c * pc->h * pc->w, M = (size_t)ry->count;
            float *x = ld("%s_x", pc->tag), *dy = ld("%s_max_dy", pc->tag);
            float *y = buf(M), *dx = buf(N);
            int32_t *am = calloc(M, sizeof *am);
            mg_assert_ok(mg_maxpool2d_forward(pc->n, pc->c, pc->h, pc->w, &pc->win, x, y, am));
            mg_assert_ok(mg_maxpool2d_backward(pc->n, pc->c, pc->h, pc->w, &pc->win, am, dy, dx));
            /* max pool copies values and routes gradients (ties resolved like torch): exact, except
             * that overlapping windows sum up to 4 float32 terms in either order (1 ulp) */
            mg_test_assert_close(what(impl, pc->tag, "max y"), y, ry->data, M, 0, 0);
            mg_test_assert_close(what(impl, pc->tag, "max dx"), dx, ld("%s_max_dx", pc->tag), N, 1e-6, 1e-6);
            free(am);
            mg_assert_ok(mg_avgpool2d_forward(pc->n, pc->c, pc->h, pc->w, &pc->win, x, y));
            mg_assert_ok(mg_avgpool2d_backward(pc->n, pc->c, pc->h, pc->w, &pc->win, dy, dx));
            /* <= 9 float32 additions and one division of O(1) values: a few ulps */
            mg_test_assert_close(what(impl, pc->tag, "avg y"), y, ld("%s_avg_y", pc->tag), M, 1e-6, 1e-6);
            mg_test_assert_close(what(impl, pc->tag, "avg dx"), dx, ld("%s_avg_dx", pc->tag), N, 1e-6, 1e-6);
            free_all();
        }
    }
    int ad[3][2] = {{1, 1}, {3, 2}, {4, 5}};
    for (int k = 0; k < 3; k++)
        for (int ii = 0; ii < 2; ii++) {
            int impl = IMPLS[ii];
            mg_layers_force_impl(impl);
            char tag[16];
            snprintf(tag, sizeof tag, "ad%d%d", ad[k][0], ad[k][1]);
            size_t M = (size_t)2 * 3 * ad[k][0] * ad[k][1], N = 2 * 3 * 7 * 5;
            float *x = ld("%s", "ad_x"), *dy = ld("%s_dy", tag), *y = buf(M), *dx = buf(N);
            mg_assert_ok(mg_adaptive_avgpool2d_forward(2, 3, 7, 5, ad[k][0], ad[k][1], x, y));
            mg_assert_ok(mg_adaptive_avgpool2d_backward(2, 3, 7, 5, ad[k][0], ad[k][1], dy, dx));
            /* <= 35 float32 additions of O(1) values: ~35 * 6e-8 relative worst case */
            mg_test_assert_close(what(impl, tag, "y"), y, ld("%s_y", tag), M, 3e-6, 1e-6);
            mg_test_assert_close(what(impl, tag, "dx"), dx, ld("%s_dx", tag), N, 1e-6, 1e-6);
            free_all();
        }
    mg_layers_force_impl(-1);
}

/* ---------------- GeM ---------------- */
static void test_gem(void **state) {
    (void)state;
    const struct {
        const char *tag;
        int n, c, h, w;
    } cases[] = {{"g", 2, 3, 5, 3}, {"g1", 1, 4, 1, 1}, {"g7", 2, 2, 7, 7}};
    const struct {
        const char *name;
        float p;
    } ps[] = {{"1", 1.0f}, {"3", 3.0f}, {"45", 4.5f}};
    for (size_t ci = 0; ci < 3; ci++)
        for (size_t pi = 0; pi < 3; pi++)
            for (int ii = 0; ii < 2; ii++) {
                int impl = IMPLS[ii];
                mg_layers_force_impl(impl);
                const char *tag = cases[ci].tag;
                int n = cases[ci].n, c = cases[ci].c, h = cases[ci].h, w = cases[ci].w;
                size_t N = (size_t)n * c * h * w, M = (size_t)n * c;
                char t2[64];
                snprintf(t2, sizeof t2, "%s_p%s", tag, ps[pi].name);
                float *x = ld("%s_x", tag), *dy = ld("%s_dy", tag);
                float *y = buf(M), *dx = buf(N), dp = 0.5f;
                mg_assert_ok(mg_gem_forward(n, c, h, w, ps[pi].p, x, y));
                mg_assert_ok(mg_gem_backward(n, c, h, w, ps[pi].p, x, y, dy, dx, &dp));
                /* powf/pow of O(1) values: ~1e-6 relative (powf is within 1 ulp; the 1/p-th root and
                 * y^(1-p) amplify it by at most p) */
                mg_test_assert_close(what(impl, t2, "y"), y, ld("%s_y", t2), M, 1e-6, 5e-6);
                mg_test_assert_close(what(impl, t2, "dx"), dx, ld("%s_dx", t2), N, 1e-6, 2e-5);
                float rdp = ld("%s_dp", t2)[0] + 0.5f; /* dp accumulates onto 0.5 */
                /* dp sums n*c terms in double, each ~1e-6 relative (float y / dy inputs) */
                mg_test_assert_close(what(impl, t2, "dp"), &dp, &rdp, 1, 1e-6, 2e-5);
                free_all();
            }
    mg_layers_force_impl(-1);
}

/* ---------------- linear ---------------- */
static void test_linear(void **state) {
    (void)state;
    const struct {
        const char *tag;
        int n, in, out;
    } cases[] = {{"lin", 3, 5, 4}, {"lin1", 1, 7, 3}, {"lin12", 12, 6, 5}}; /* sgemv, sgemv, sgemm */
    for (size_t ci = 0; ci < 3; ci++)
        for (int ii = 0; ii < 2; ii++) {
            int impl = IMPLS[ii];
            mg_layers_force_impl(impl);
            const char *tag = cases[ci].tag;
            int n = cases[ci].n, in = cases[ci].in, out = cases[ci].out;
            float *x = ld("%s_x", tag), *W = ld("%s_W", tag), *b = ld("%s_b", tag), *dy = ld("%s_dy", tag);
            float *y = buf((size_t)n * out), *dx = buf((size_t)n * in), *dW = buf((size_t)out * in), *db = buf(out);
            float *rdW = ld("%s_dW", tag), *rdb = ld("%s_db", tag);
            for (int i = 0; i < out * in; i++) {
                dW[i] = 1.0f; /* accumulate onto 1 */
                rdW[i] += 1.0f;
            }
            for (int i = 0; i < out; i++) {
                db[i] = 1.0f;
                rdb[i] += 1.0f;
            }
            mg_assert_ok(mg_linear_forward(n, in, out, x, W, b, y));
            mg_assert_ok(mg_linear_backward(n, in, out, x, W, dy, dx, dW, db));
            /* dot products of <= 12 O(1) float32 terms: a few ulps of the largest partial sum */
            mg_test_assert_close(what(impl, tag, "y"), y, ld("%s_y", tag), (size_t)n * out, 2e-6, 2e-6);
            mg_test_assert_close(what(impl, tag, "dx"), dx, ld("%s_dx", tag), (size_t)n * in, 2e-6, 2e-6);
            mg_test_assert_close(what(impl, tag, "dW"), dW, rdW, (size_t)out * in, 2e-6, 2e-6);
            mg_test_assert_close(what(impl, tag, "db"), db, rdb, out, 2e-6, 2e-6);
            free_all();
        }
    mg_layers_force_impl(-1);
}

/* ---------------- L2 norm ---------------- */
static void test_l2norm(void **state) {
    (void)state;
    for (int ii = 0; ii < 2; ii++) {
        int impl = IMPLS[ii];
        mg_layers_force_impl(impl);
        float *x = ld("%s", "l2_x"), *dy = ld("%s", "l2_dy"), *y = buf(36), *dx = buf(36), *nr = buf(4);
        mg_assert_ok(mg_l2norm_forward(4, 9, x, y, nr));
        mg_assert_ok(mg_l2norm_backward(4, 9, x, dy, dx));
        /* outputs are O(1) (row 2: dx = dy / 1e-6, O(1e6), compared relatively): a few float32 ulps */
        mg_test_assert_close(what(impl, "l2", "y"), y, ld("%s", "l2_y"), 36, 1e-6, 1e-6);
        mg_test_assert_close(what(impl, "l2", "dx"), dx, ld("%s", "l2_dx"), 36, 1e-6, 2e-6);
        assert_true(nr[2] == 0.0f);
        free_all();
    }
    mg_layers_force_impl(-1);
}

/* ---------------- element-wise ---------------- */
static void test_eltwise(void **state) {
    (void)state;
    const size_t N = 2 * 3 * 4 * 5;
    for (int ii = 0; ii < 2; ii++) {
        int impl = IMPLS[ii];
        mg_layers_force_impl(impl);
        float *x = ld("%s", "el_x"), *a = ld("%s", "el_a"), *dy = ld("%s", "el_dy"), *s = ld("%s", "el_s");
        float *y = buf(N), *dx = buf(N), *ds = buf(6);
        /* ReLU, add, channel scale: one float32 operation each, exact up to the last rounding */
        mg_assert_ok(mg_relu_forward(N, x, y));
        mg_assert_ok(mg_relu_backward(N, y, dy, dx));
        mg_test_assert_close(what(impl, "relu", "y"), y, ld("%s", "relu_y"), N, 0, 0);
        mg_test_assert_close(what(impl, "relu", "dx"), dx, ld("%s", "relu_dx"), N, 0, 0);
        memcpy(y, x, N * sizeof *y); /* in place */
        mg_assert_ok(mg_relu_forward(N, y, y));
        mg_test_assert_close(what(impl, "relu inplace", "y"), y, ld("%s", "relu_y"), N, 0, 0);
        mg_assert_ok(mg_add_forward(N, x, a, y));
        /* torch added in float64 then rounded once; float32 addition rounds once too: the two can
         * differ by double rounding, at most 1 ulp (rel 1.2e-7) */
        mg_test_assert_close(what(impl, "add", "y"), y, ld("%s", "add_y"), N, 0, 1.2e-7);
        /* the fused residual sum + ReLU: torch's relu(x + a), same one rounding; in place on either
         * input it equals the out-of-place result bit for bit */
        float *yar = buf(N), *yin = buf(N);
        mg_assert_ok(mg_add_relu_forward(N, x, a, yar));
        mg_test_assert_close(what(impl, "add_relu", "y"), yar, ld("%s", "add_relu_y"), N, 0, 1.2e-7);
        memcpy(yin, x, N * sizeof *yin);
        mg_assert_ok(mg_add_relu_forward(N, yin, a, yin));
        mg_test_assert_close(what(impl, "add_relu inplace a", "y"), yin, yar, N, 0, 0);
        memcpy(yin, a, N * sizeof *yin);
        mg_assert_ok(mg_add_relu_forward(N, x, yin, yin));
        mg_test_assert_close(what(impl, "add_relu inplace b", "y"), yin, yar, N, 0, 0);
        /* two gradients summed through a ReLU's backward (mask from its output relu_y): torch's
         * autograd on relu(x) with dy + a, the same one rounding of the sum; in place equal */
        float *ry = ld("%s", "relu_y");
        mg_assert_ok(mg_add_relu_backward(N, dy, a, ry, yar));
        mg_test_assert_close(what(impl, "add_relu_backward", "dx"), yar, ld("%s", "add_relu_bwd_dx"), N, 0, 1.2e-7);
        memcpy(yin, dy, N * sizeof *yin);
        mg_assert_ok(mg_add_relu_backward(N, yin, a, ry, yin));
        mg_test_assert_close(what(impl, "add_relu_backward inplace a", "dx"), yin, yar, N, 0, 0);
        memcpy(yin, a, N * sizeof *yin);
        mg_assert_ok(mg_add_relu_backward(N, dy, yin, ry, yin));
        mg_test_assert_close(what(impl, "add_relu_backward inplace b", "dx"), yin, yar, N, 0, 0);
        assert_int_equal(mg_add_relu_backward(N, dy, a, yin, yin), MG_ERR_INVALID_ARG); /* y is r */
        float *da = buf(N), *db = buf(N);
        mg_assert_ok(mg_add_backward(N, dy, da, db));
        mg_test_assert_close(what(impl, "add", "da"), da, dy, N, 0, 0);
        mg_test_assert_close(what(impl, "add", "db"), db, dy, N, 0, 0);
        /* sigmoid: expf within 1 ulp, then a division: ~2e-7 relative */
        mg_assert_ok(mg_sigmoid_forward(N, x, y));
        mg_assert_ok(mg_sigmoid_backward(N, y, dy, dx));
        mg_test_assert_close(what(impl, "sigmoid", "y"), y, ld("%s", "sig_y"), N, 1e-7, 1e-6);
        mg_test_assert_close(what(impl, "sigmoid", "dx"), dx, ld("%s", "sig_dx"), N, 1e-7, 2e-6);
        mg_assert_ok(mg_chscale_forward(2, 3, 20, x, s, y));
        mg_assert_ok(mg_chscale_backward(2, 3, 20, x, s, dy, dx, ds));
        mg_test_assert_close(what(impl, "chscale", "y"), y, ld("%s", "cs_y"), N, 1e-7, 1e-7);
        mg_test_assert_close(what(impl, "chscale", "dx"), dx, ld("%s", "cs_dx"), N, 1e-7, 1e-7);
        /* ds: 20 products summed in double, one final rounding */
        mg_test_assert_close(what(impl, "chscale", "ds"), ds, ld("%s", "cs_ds"), 6, 1e-6, 1e-6);
        free_all();
    }
    mg_layers_force_impl(-1);
}

/* ---------------- cross-entropy ---------------- */
static void test_cross_entropy(void **state) {
    (void)state;
    const struct {
        const char *tag;
        int n, k;
    } cases[] = {{"ce", 5, 7}, {"ce1", 1, 4}, {"cebig", 3, 6}};
    for (size_t ci = 0; ci < 3; ci++)
        for (int l = 0; l < 2; l++)
            for (int ii = 0; ii < 2; ii++) {
                int impl = IMPLS[ii];
                mg_layers_force_impl(impl);
                const char *tag = cases[ci].tag;
                int n = cases[ci].n, k = cases[ci].k;
                float *z = ld("%s_z", tag), *dz = buf((size_t)n * k), loss = 0;
                mg_npy *lab = &g_held[g_nheld++];
                char f[64];
                snprintf(f, sizeof f, "%s_y", tag);
                mg_test_load_as(f, MG_DTYPE_I32, lab);
                const char *ls = l ? "ls1" : "ls0";
                mg_assert_ok(mg_cross_entropy(n, k, z, lab->data, l ? 0.1f : 0.0f, 1.0f, &loss, dz));
                snprintf(f, sizeof f, "%s_%s_loss", tag, ls);
                /* log-sum-exp in double from float32 logits: loss exact to float32 rounding, also for
                 * logits of size 60 (the stability case) */
                mg_test_assert_close(what(impl, tag, ls), &loss, ld("%s", f), 1, 1e-6, 1e-6);
                snprintf(f, sizeof f, "%s_%s_dz", tag, ls);
                mg_test_assert_close(what(impl, tag, "dz"), dz, ld("%s", f), (size_t)n * k, 1e-7, 1e-6);
                free_all();
            }
    mg_layers_force_impl(-1);
}

/* ---------------- pairwise distances ---------------- */
static void test_pdist(void **state) {
    (void)state;
    for (int ii = 0; ii < 2; ii++) {
        int impl = IMPLS[ii];
        mg_layers_force_impl(impl);
        float *x = ld("%s", "pd_x"), *dD = ld("%s", "pd_dD"), *D = buf(36), *dx = buf(30);
        mg_assert_ok(mg_pdist_forward(6, 5, x, D));
        mg_assert_ok(mg_pdist_backward(6, 5, x, D, dD, dx));
        /* fast path: |xi|^2 + |xj|^2 - 2 xi.xj in float32 cancels; squared norms here are <~ 15, so the
         * squared distance carries ~15 * 2^-23 * 4 = 7e-6 absolute error, i.e. ~7e-6 / (2 D) on D >= ~0.5 */
        double tol = impl == MG_OPS_FAST ? 2e-5 : 1e-6;
        mg_test_assert_close(what(impl, "pd", "D"), D, ld("%s", "pd_D"), 36, tol, tol);
        mg_test_assert_close(what(impl, "pd", "dx"), dx, ld("%s", "pd_dx"), 30, tol * 4, tol * 4);
        free_all();
    }
    mg_layers_force_impl(-1);
}

/* ---------------- SGD ---------------- */
static void test_sgd(void **state) {
    (void)state;
    const int sizes[2] = {10, 7};
    const float wds[2] = {5e-3f, 0.0f};
    for (int nest = 0; nest < 2; nest++)
        for (int ii = 0; ii < 2; ii++) {
            int impl = IMPLS[ii];
            mg_layers_force_impl(impl);
            for (int p = 0; p < 2; p++) {
                char f[64];
                snprintf(f, sizeof f, "sgd_w0_%d", p);
                float *w = ld("%s", f), *v = buf(sizes[p]);
                mg_sgd_args a = {0.1f, 0.9f, wds[p], nest};
                for (int t = 0; t < 4; t++) {
                    snprintf(f, sizeof f, "sgd_g%d_%d", t, p);
                    mg_assert_ok(mg_sgd_step(&a, (size_t)sizes[p], w, ld("%s", f), v, t == 0));
                }
                snprintf(f, sizeof f, "sgd_n%d_w_%d", nest, p);
                /* same float32 operations in the same order as torch; only FMA contraction may differ,
                 * 1 ulp per step on O(1) weights over 4 steps */
                mg_test_assert_close(what(impl, "sgd", f), w, ld("%s", f), (size_t)sizes[p], 1e-6, 1e-6);
            }
            free_all();
        }
    mg_layers_force_impl(-1);
}

int main(void) {
    if (mg_test_oracle_unavailable()) return MG_TEST_SKIP;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bn),          cmocka_unit_test(test_pool),   cmocka_unit_test(test_gem),
        cmocka_unit_test(test_linear),      cmocka_unit_test(test_l2norm), cmocka_unit_test(test_eltwise),
        cmocka_unit_test(test_cross_entropy), cmocka_unit_test(test_pdist), cmocka_unit_test(test_sgd),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
