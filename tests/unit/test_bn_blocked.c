/* test_bn_blocked.c: batch norm on the channel-blocked layout nChw<B>c (mg_bn2d_args.block = B > 1).
 * Every entry point (forward TRAIN with and without the fused ReLU, in place too, EVAL, FROZEN, apply,
 * backward TRAIN, EVAL and FROZEN, with and without affine parameters, and the synchronised forward and
 * backward with a one-process reduce) runs on NCHW data with block 0 and on the same data converted with
 * mg_layout_to_blocked with block B; the blocked outputs, converted back with mg_layout_to_nchw, and the
 * per-channel results must match the NCHW ones, on the reference and on the fast implementation (and
 * with the opt-in oneDNN path switched on, which declines blocked calls without leaving an error).
 * Shapes cover B = 8 and 16 (one lane group, constant-width kernels) and other B (several lane groups,
 * run-time widths), h*w odd and longer than one summation chunk, and a channel whose mean is large
 * against its std. A c that B does not divide is refused. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mg_test.h"
#include "multigrain/ops.h"
#include "multigrain/ops_layers.h"
#if MG_HAVE_ONEDNN
#include "ops/cpu/batchnorm_internal.h" /* mg_bn2d_dnnl_set_enabled */
#endif

#define MAXC 64

/* Tolerance of the fast path, in float ulps (FLT_EPSILON) of the MAGNITUDE OF THE TERMS a result is
 * made of. The two layouts add the same values in different orders (NCHW: 8 float lanes along h*w;
 * blocked: one float partial per channel over 32 positions; both then in double), so a batch statistic
 * may differ in its last bit, and each output inherits that relative to its terms, not to itself:
 * y = x alpha + beta with alpha = invstd w, beta = b - mean alpha moves by about an ulp of |x alpha| +
 * |beta|, which for the channel with |mean| >> std is thousands of times |y| (the NCHW fast path rounds
 * the same way); dx = (g - mdy - (x - mean) k) scale moves by ulps of |g| and of the sums behind mdy and
 * k. Observed differences stay within 2 such ulps; 8 leaves room without hiding a wrong index (that
 * moves results by whole terms). The reference path sums in double in the same order for both layouts,
 * so it must agree exactly, and so must, on both paths, every output computed without a sum: the EVAL and
 * FROZEN outputs and input gradients, and apply. */
#define TOL_ULPS 8.0

typedef struct shape {
    int n, c, h, w, block;
} shape;

/* Everything a suite run produces: tensors (NCHW) and per-channel vectors. */
enum { Y_TRAIN, Y_RELU, Y_NOAFF, Y_EVAL, Y_FROZEN, Y_APPLY, Y_APPLY_RELU, Y_SYNC, DX_TRAIN, DX_NOAFF, DX_EVAL,
       DX_FROZEN, DX_SYNC, NT };
typedef struct results {
    float *t[NT];
    float sm[MAXC], si[MAXC], rm[MAXC], rv[MAXC];                 /* TRAIN forward */
    float sm_e[MAXC], si_e[MAXC];                                 /* EVAL forward */
    float sm_s[MAXC], si_s[MAXC], rm_s[MAXC], rv_s[MAXC];         /* synchronised forward */
    float dw[MAXC], db[MAXC], dw_e[MAXC], db_e[MAXC], dw_s[MAXC], db_s[MAXC];
} results;

/* The inputs, NCHW. sm/si: statistics for the backward and apply runs (the same for both layouts, so
 * that those runs are compared on their own). */
typedef struct inputs {
    shape s;
    float *x, *dy;
    float w[MAXC], b[MAXC], rm[MAXC], rv[MAXC], sm[MAXC], si[MAXC], dw0[MAXC], db0[MAXC];
} inputs;

static uint64_t g_rng = 0x5EEDB10C4EDull;

static size_t count_of(const shape *s) { return (size_t)s->n * s->c * s->h * s->w; }

static float *alloc(size_t n) {
    float *p = malloc(n * sizeof *p);
    assert_non_null(p);
    return p;
}

static mg_status identity_reduce(void *ctx, double *data, size_t n) {
    (void)ctx, (void)data, (void)n;
    return MG_OK;
}

static void make_inputs(inputs *in, shape s) {
    memset(in, 0, sizeof *in);
    in->s = s;
    size_t hw = (size_t)s.h * s.w, cnt = count_of(&s);
    in->x = alloc(cnt);
    in->dy = alloc(cnt);
    for (int c = 0; c < s.c; c++) {
        /* channel 1: mean 40, std ~0.02 (|mean| / std ~ 2000, where unshifted float sums would fail) */
        float mean = c == 1 ? 40.0f : 1.5f * mg_test_urand(&g_rng);
        float std = c == 1 ? 0.02f : 0.6f + 0.5f * mg_test_urand(&g_rng);
        float gmean = 0.3f * mg_test_urand(&g_rng);
        for (int n = 0; n < s.n; n++)
            for (size_t i = 0; i < hw; i++) {
                size_t k = ((size_t)n * s.c + c) * hw + i;
                in->x[k] = mean + std * mg_test_urand(&g_rng);
                in->dy[k] = gmean + mg_test_urand(&g_rng);
            }
        in->w[c] = c == 2 ? -0.7f : 1.0f + 0.5f * mg_test_urand(&g_rng);
        in->b[c] = 0.3f * mg_test_urand(&g_rng);
        in->rm[c] = mean + 0.1f * mg_test_urand(&g_rng);
        in->rv[c] = std * std * (1.2f + 0.2f * mg_test_urand(&g_rng));
        in->dw0[c] = 0.25f * mg_test_urand(&g_rng); /* parameter gradients accumulate onto these */
        in->db0[c] = 0.25f * mg_test_urand(&g_rng);
    }
    /* statistics for backward/apply: the NCHW batch statistics (reference path) */
    mg_layers_force_impl(MG_OPS_REFERENCE);
    mg_bn2d_args a = mg_bn2d_default_args(MG_BN_TRAIN, s.n, s.c, s.h, s.w);
    float *y = alloc(cnt);
    mg_assert_ok(mg_bn2d_forward(&a, in->x, in->w, in->b, NULL, NULL, in->sm, in->si, y));
    free(y);
    mg_layers_force_impl(-1);
}

static void free_inputs(inputs *in) {
    free(in->x);
    free(in->dy);
}

static void free_results(results *r) {
    for (int i = 0; i < NT; i++) free(r->t[i]);
}

/* Runs every entry point with layout `block` on the NCHW inputs (converted to the layout and back). */
static void run_suite(const inputs *in, int block, results *r) {
    const shape *s = &in->s;
    size_t cnt = count_of(s), cb = (size_t)s->c * sizeof(float);
    memset(r, 0, sizeof *r);
    for (int i = 0; i < NT; i++) r->t[i] = alloc(cnt);
    float *x = alloc(cnt), *dy = alloc(cnt), *out = alloc(cnt), *tmp = alloc(cnt);
    mg_assert_ok(mg_layout_to_blocked(s->n, s->c, s->h, s->w, block, in->x, x));
    mg_assert_ok(mg_layout_to_blocked(s->n, s->c, s->h, s->w, block, in->dy, dy));
#define BACK(i) mg_assert_ok(mg_layout_to_nchw(s->n, s->c, s->h, s->w, block, out, r->t[i]))
    mg_bn2d_args a = mg_bn2d_default_args(MG_BN_TRAIN, s->n, s->c, s->h, s->w);
    a.block = block;
    float rm[MAXC], rv[MAXC], sm[MAXC], si[MAXC], rm0[MAXC], rv0[MAXC];
    memcpy(rm0, in->rm, cb), memcpy(rv0, in->rv, cb); /* EVAL and FROZEN read them */

    /* forward, TRAIN */
    memcpy(r->rm, in->rm, cb), memcpy(r->rv, in->rv, cb);
    mg_assert_ok(mg_bn2d_forward(&a, x, in->w, in->b, r->rm, r->rv, r->sm, r->si, out));
    BACK(Y_TRAIN);
    /* in place (y == x): the same bits */
    memcpy(tmp, x, cnt * sizeof *tmp);
    memcpy(rm, in->rm, cb), memcpy(rv, in->rv, cb);
    mg_assert_ok(mg_bn2d_forward(&a, tmp, in->w, in->b, rm, rv, sm, si, tmp));
    assert_memory_equal(tmp, out, cnt * sizeof *tmp);
    assert_memory_equal(sm, r->sm, cb);
    assert_memory_equal(rv, r->rv, cb);
    /* ReLU fused */
    a.relu = 1;
    memcpy(rm, in->rm, cb), memcpy(rv, in->rv, cb);
    mg_assert_ok(mg_bn2d_forward(&a, x, in->w, in->b, rm, rv, sm, si, out));
    BACK(Y_RELU);
    a.relu = 0;
    /* affine = False */
    memcpy(rm, in->rm, cb), memcpy(rv, in->rv, cb);
    mg_assert_ok(mg_bn2d_forward(&a, x, NULL, NULL, rm, rv, sm, si, out));
    BACK(Y_NOAFF);

    /* forward, EVAL and FROZEN (running statistics; with the ReLU for FROZEN) */
    a.mode = MG_BN_EVAL;
    mg_assert_ok(mg_bn2d_forward(&a, x, in->w, in->b, rm0, rv0, r->sm_e, r->si_e, out));
    BACK(Y_EVAL);
    a.mode = MG_BN_FROZEN;
    a.relu = 1;
    mg_assert_ok(mg_bn2d_forward(&a, x, in->w, in->b, rm0, rv0, sm, si, out));
    BACK(Y_FROZEN);
    a.relu = 0;

    /* apply from saved statistics, without and with the ReLU */
    a.mode = MG_BN_TRAIN;
    mg_assert_ok(mg_bn2d_apply(&a, x, in->w, in->b, in->sm, in->si, out));
    BACK(Y_APPLY);
    a.relu = 1;
    mg_assert_ok(mg_bn2d_apply(&a, x, in->w, in->b, in->sm, in->si, out));
    BACK(Y_APPLY_RELU);
    a.relu = 0;

    /* backward, TRAIN (and in place: dx == dy) */
    memcpy(r->dw, in->dw0, cb), memcpy(r->db, in->db0, cb);
    mg_assert_ok(mg_bn2d_backward(&a, x, dy, in->w, in->sm, in->si, out, r->dw, r->db));
    BACK(DX_TRAIN);
    memcpy(tmp, dy, cnt * sizeof *tmp);
    mg_assert_ok(mg_bn2d_backward(&a, x, tmp, in->w, in->sm, in->si, tmp, NULL, NULL));
    assert_memory_equal(tmp, out, cnt * sizeof *tmp);
    /* no weight, no parameter gradients */
    mg_assert_ok(mg_bn2d_backward(&a, x, dy, NULL, in->sm, in->si, out, NULL, NULL));
    BACK(DX_NOAFF);
    /* parameter gradients only (dx NULL) accumulate the same values */
    memcpy(rm, in->dw0, cb), memcpy(rv, in->db0, cb);
    mg_assert_ok(mg_bn2d_backward(&a, x, dy, in->w, in->sm, in->si, NULL, rm, rv));
    assert_memory_equal(rm, r->dw, cb);
    assert_memory_equal(rv, r->db, cb);

    /* backward, EVAL and FROZEN (statistics are constants) */
    a.mode = MG_BN_EVAL;
    memcpy(r->dw_e, in->dw0, cb), memcpy(r->db_e, in->db0, cb);
    mg_assert_ok(mg_bn2d_backward(&a, x, dy, in->w, in->sm, in->si, out, r->dw_e, r->db_e));
    BACK(DX_EVAL);
    a.mode = MG_BN_FROZEN;
    mg_assert_ok(mg_bn2d_backward(&a, x, dy, in->w, in->sm, in->si, out, NULL, NULL));
    BACK(DX_FROZEN);

    /* synchronised batch norm, one process */
    a.mode = MG_BN_TRAIN;
    a.relu = 1;
    memcpy(r->rm_s, in->rm, cb), memcpy(r->rv_s, in->rv, cb);
    mg_assert_ok(mg_bn2d_forward_sync(&a, x, in->w, in->b, r->rm_s, r->rv_s, r->sm_s, r->si_s, out, identity_reduce,
                                      NULL));
    BACK(Y_SYNC);
    a.relu = 0;
    memcpy(r->dw_s, in->dw0, cb), memcpy(r->db_s, in->db0, cb);
    mg_assert_ok(mg_bn2d_backward_sync(&a, x, dy, in->w, in->sm, in->si, out, r->dw_s, r->db_s, identity_reduce,
                                       NULL));
    BACK(DX_SYNC);
#undef BACK
    free(x), free(dy), free(out), free(tmp);
}

/* ---- comparisons ---- */

static void fail_at(const char *what, const shape *s, size_t i, double got, double ref, double bound) {
    fail_msg("%s (n=%d c=%d h=%d w=%d block=%d): element %zu is %.9g, expected %.9g (|diff| %.3g > bound %.3g)",
             what, s->n, s->c, s->h, s->w, s->block, i, got, ref, fabs(got - ref), bound);
}

/* |got - ref| <= TOL_ULPS ulps of mag[i] (the magnitude of the terms behind element i) */
static void check_terms(const char *what, const shape *s, const float *got, const float *ref, const double *mag,
                        size_t n) {
    for (size_t i = 0; i < n; i++) {
        double bound = TOL_ULPS * FLT_EPSILON * mag[i] + FLT_MIN;
        if (!(fabs((double)got[i] - (double)ref[i]) <= bound)) fail_at(what, s, i, got[i], ref[i], bound);
    }
}

static void check_exact(const char *what, const shape *s, const float *got, const float *ref, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (memcmp(&got[i], &ref[i], sizeof *got) != 0) fail_at(what, s, i, got[i], ref[i], 0.0);
}

/* Term magnitudes of the NCHW results (computed in double from the inputs). */
typedef struct mags {
    double *y_train, *y_noaff, *y_sync, *dx_train, *dx_noaff;
    double mean[MAXC], invstd[MAXC], rm[MAXC], rv[MAXC], dw[MAXC], db[MAXC], dw_e[MAXC], db_e[MAXC];
} mags;

static double *dalloc(size_t n) {
    double *p = calloc(n, sizeof *p);
    assert_non_null(p);
    return p;
}

/* The magnitude behind a batch mean: |mean| + mean |x - x[0, c, 0, 0]| (the mean is summed as deviations
 * from the channel's first value, so its rounding is relative to those) */
static double mean_mag(const inputs *in, int c, double mean) {
    const shape *s = &in->s;
    size_t hw = (size_t)s->h * s->w;
    double shift = in->x[(size_t)c * hw], dev = 0;
    for (int n = 0; n < s->n; n++)
        for (size_t i = 0; i < hw; i++) dev += fabs((double)in->x[((size_t)n * s->c + c) * hw + i] - shift);
    return fabs(mean) + dev / ((double)s->n * (double)hw);
}

/* y = x alpha + beta, alpha = invstd w, beta = b - mean alpha, with the statistics of channel c */
static void y_mags(const inputs *in, const float *mean, const float *invstd, int affine, double *mag) {
    const shape *s = &in->s;
    size_t hw = (size_t)s->h * s->w;
    for (int n = 0; n < s->n; n++)
        for (int c = 0; c < s->c; c++) {
            double w = affine ? in->w[c] : 1.0, b = affine ? in->b[c] : 0.0;
            double alpha = fabs((double)invstd[c] * w), beta = fabs(b) + mean_mag(in, c, mean[c]) * alpha;
            for (size_t i = 0; i < hw; i++) {
                size_t k = ((size_t)n * s->c + c) * hw + i;
                mag[k] = fabs((double)in->x[k]) * alpha + beta;
            }
        }
}

/* dx = (g - mdy - (x - mean) k) scale, TRAIN mode, with in->sm / in->si; plus the parameter-gradient
 * sums sum |g| and sum |g (x - mean)| invstd behind dbias and dweight */
static void dx_mags(const inputs *in, int affine, double *mag, double *sum_g, double *sum_gx) {
    const shape *s = &in->s;
    size_t hw = (size_t)s->h * s->w;
    double count = (double)s->n * (double)hw;
    for (int c = 0; c < s->c; c++) {
        double mean = in->sm[c], invstd = in->si[c], sg = 0, sgx = 0, ag = 0, agx = 0;
        for (int n = 0; n < s->n; n++)
            for (size_t i = 0; i < hw; i++) {
                size_t k = ((size_t)n * s->c + c) * hw + i;
                double g = in->dy[k], d = (double)in->x[k] - mean;
                sg += g, sgx += g * d, ag += fabs(g), agx += fabs(g * d);
            }
        sum_g[c] = ag;
        sum_gx[c] = agx * invstd;
        double scale = fabs(invstd * (affine ? in->w[c] : 1.0)), mdy = fabs(sg / count);
        double kk = fabs(sgx / count) * invstd * invstd;
        /* the sums behind mdy and k are exact to ulps of their absolute sums */
        double mdy_err = ag / count, k_err = agx / count * invstd * invstd;
        for (int n = 0; n < s->n; n++)
            for (size_t i = 0; i < hw; i++) {
                size_t k = ((size_t)n * s->c + c) * hw + i;
                double d = fabs((double)in->x[k] - mean);
                mag[k] = scale * (fabs((double)in->dy[k]) + mdy + mdy_err + d * (kk + k_err));
            }
    }
}

static void make_mags(const inputs *in, const results *ref, mags *m) {
    const shape *s = &in->s;
    size_t cnt = count_of(s);
    m->y_train = dalloc(cnt), m->y_noaff = dalloc(cnt), m->y_sync = dalloc(cnt);
    m->dx_train = dalloc(cnt), m->dx_noaff = dalloc(cnt);
    y_mags(in, ref->sm, ref->si, 1, m->y_train);
    y_mags(in, ref->sm, ref->si, 0, m->y_noaff);
    y_mags(in, ref->sm_s, ref->si_s, 1, m->y_sync);
    double sum_g[MAXC], sum_gx[MAXC];
    dx_mags(in, 0, m->dx_noaff, sum_g, sum_gx);
    dx_mags(in, 1, m->dx_train, sum_g, sum_gx);
    for (int c = 0; c < s->c; c++) {
        m->mean[c] = mean_mag(in, c, ref->sm[c]);
        m->invstd[c] = fabs((double)ref->si[c]);
        m->rm[c] = fabs((double)in->rm[c]) + m->mean[c];
        m->rv[c] = fabs((double)in->rv[c]) + fabs((double)ref->rv[c]);
        m->dw[c] = fabs((double)in->dw0[c]) + sum_gx[c];
        m->db[c] = fabs((double)in->db0[c]) + sum_g[c];
        m->dw_e[c] = m->dw[c];
        m->db_e[c] = m->db[c];
    }
}

static void free_mags(mags *m) {
    free(m->y_train), free(m->y_noaff), free(m->y_sync), free(m->dx_train), free(m->dx_noaff);
}

/* The blocked results `got` against the NCHW results `ref`: exact where the computation is the same,
 * within the term bound where sums run in another order. */
static void compare(const inputs *in, const results *got, const results *ref, int reference_impl) {
    const shape *s = &in->s;
    size_t cnt = count_of(s), C = (size_t)s->c;
    /* no batch statistic involved: the same arithmetic element by element, on both paths */
    check_exact("y EVAL", s, got->t[Y_EVAL], ref->t[Y_EVAL], cnt);
    check_exact("save_mean EVAL", s, got->sm_e, ref->sm_e, C);
    check_exact("save_invstd EVAL", s, got->si_e, ref->si_e, C);
    check_exact("y FROZEN + ReLU", s, got->t[Y_FROZEN], ref->t[Y_FROZEN], cnt);
    check_exact("y apply", s, got->t[Y_APPLY], ref->t[Y_APPLY], cnt);
    check_exact("y apply + ReLU", s, got->t[Y_APPLY_RELU], ref->t[Y_APPLY_RELU], cnt);
    check_exact("dx EVAL", s, got->t[DX_EVAL], ref->t[DX_EVAL], cnt);
    check_exact("dx FROZEN", s, got->t[DX_FROZEN], ref->t[DX_FROZEN], cnt);
    if (reference_impl) {
        /* double sums in the same order in both layouts */
        check_exact("y TRAIN", s, got->t[Y_TRAIN], ref->t[Y_TRAIN], cnt);
        check_exact("y TRAIN + ReLU", s, got->t[Y_RELU], ref->t[Y_RELU], cnt);
        check_exact("y TRAIN affine=False", s, got->t[Y_NOAFF], ref->t[Y_NOAFF], cnt);
        check_exact("save_mean", s, got->sm, ref->sm, C);
        check_exact("save_invstd", s, got->si, ref->si, C);
        check_exact("running_mean", s, got->rm, ref->rm, C);
        check_exact("running_var", s, got->rv, ref->rv, C);
        check_exact("dx TRAIN", s, got->t[DX_TRAIN], ref->t[DX_TRAIN], cnt);
        check_exact("dx TRAIN no weight", s, got->t[DX_NOAFF], ref->t[DX_NOAFF], cnt);
        check_exact("dweight", s, got->dw, ref->dw, C);
        check_exact("dbias", s, got->db, ref->db, C);
        check_exact("dweight EVAL", s, got->dw_e, ref->dw_e, C);
        check_exact("dbias EVAL", s, got->db_e, ref->db_e, C);
    }
    /* the rest (all of it on the fast path; the synchronised op's sums are always the fast kernels) */
    mags m;
    make_mags(in, ref, &m);
    check_terms("y TRAIN", s, got->t[Y_TRAIN], ref->t[Y_TRAIN], m.y_train, cnt);
    check_terms("y TRAIN + ReLU", s, got->t[Y_RELU], ref->t[Y_RELU], m.y_train, cnt); /* ReLU is 1-Lipschitz */
    check_terms("y TRAIN affine=False", s, got->t[Y_NOAFF], ref->t[Y_NOAFF], m.y_noaff, cnt);
    check_terms("save_mean", s, got->sm, ref->sm, m.mean, C);
    check_terms("save_invstd", s, got->si, ref->si, m.invstd, C);
    check_terms("running_mean", s, got->rm, ref->rm, m.rm, C);
    check_terms("running_var", s, got->rv, ref->rv, m.rv, C);
    check_terms("dx TRAIN", s, got->t[DX_TRAIN], ref->t[DX_TRAIN], m.dx_train, cnt);
    check_terms("dx TRAIN no weight", s, got->t[DX_NOAFF], ref->t[DX_NOAFF], m.dx_noaff, cnt);
    check_terms("dweight", s, got->dw, ref->dw, m.dw, C);
    check_terms("dbias", s, got->db, ref->db, m.db, C);
    check_terms("dweight EVAL", s, got->dw_e, ref->dw_e, m.dw_e, C);
    check_terms("dbias EVAL", s, got->db_e, ref->db_e, m.db_e, C);
    check_terms("y sync + ReLU", s, got->t[Y_SYNC], ref->t[Y_SYNC], m.y_sync, cnt);
    check_terms("save_mean sync", s, got->sm_s, ref->sm_s, m.mean, C);
    check_terms("save_invstd sync", s, got->si_s, ref->si_s, m.invstd, C);
    check_terms("running_mean sync", s, got->rm_s, ref->rm_s, m.rm, C);
    check_terms("running_var sync", s, got->rv_s, ref->rv_s, m.rv, C);
    check_terms("dx sync", s, got->t[DX_SYNC], ref->t[DX_SYNC], m.dx_train, cnt);
    check_terms("dweight sync", s, got->dw_s, ref->dw_s, m.dw, C);
    check_terms("dbias sync", s, got->db_s, ref->db_s, m.db, C);
    free_mags(&m);
}

static const shape SHAPES[] = {
    {2, 16, 7, 7, 8},   {2, 16, 7, 7, 16}, /* h*w = 49, odd */
    {3, 32, 5, 3, 16},                      /* h*w = 15, odd */
    {2, 48, 7, 7, 16},  {2, 48, 3, 5, 8},  /* three and six channel blocks */
    {2, 32, 9, 9, 8},                       /* h*w = 81: three summation chunks */
    {2, 64, 3, 3, 32},                      /* two 16-lane groups at stride 32 */
    {1, 48, 7, 7, 24},                      /* lane groups of 16 and 8 at stride 24 */
    {2, 12, 5, 5, 4},                       /* 4 lanes (run-time width) */
};

/* The plain C paths: the NCHW fast path (the comparison's reference) without the opt-in oneDNN batch
 * norm, whatever MG_BN_ONEDNN says (its rounding differs; test_onednn_declines covers it). */
static void check_impl(int impl) {
#if MG_HAVE_ONEDNN
    int was = mg_bn2d_dnnl_enabled();
    mg_bn2d_dnnl_set_enabled(0);
#endif
    for (size_t i = 0; i < sizeof SHAPES / sizeof SHAPES[0]; i++) {
        inputs in;
        make_inputs(&in, SHAPES[i]);
        results ref, got;
        mg_layers_force_impl(impl);
        run_suite(&in, 0, &ref);
        run_suite(&in, SHAPES[i].block, &got);
        mg_layers_force_impl(-1);
        compare(&in, &got, &ref, impl == MG_OPS_REFERENCE);
        free_results(&ref);
        free_results(&got);
        free_inputs(&in);
    }
#if MG_HAVE_ONEDNN
    mg_bn2d_dnnl_set_enabled(was);
#endif
}

static void test_reference(void **state) {
    (void)state;
    check_impl(MG_OPS_REFERENCE);
}

static void test_fast(void **state) {
    (void)state;
    check_impl(MG_OPS_FAST);
}

/* The opt-in oneDNN path declines blocked calls: the C kernels run (the same bits) and no error is left
 * behind by the decline. */
static void test_onednn_declines(void **state) {
    (void)state;
#if MG_HAVE_ONEDNN
    shape s = {2, 32, 5, 5, 16};
    inputs in;
    make_inputs(&in, s);
    results plain, dnnl;
    int was = mg_bn2d_dnnl_enabled(); /* MG_BN_ONEDNN */
    mg_layers_force_impl(MG_OPS_FAST);
    mg_bn2d_dnnl_set_enabled(0);
    run_suite(&in, s.block, &plain);
    mg_bn2d_dnnl_set_enabled(1);
    mg_error_clear();
    run_suite(&in, s.block, &dnnl);
    assert_string_equal(mg_error_message(), "");
    mg_bn2d_dnnl_set_enabled(was);
    mg_layers_force_impl(-1);
    size_t cnt = count_of(&s);
    check_exact("y TRAIN (oneDNN on)", &s, dnnl.t[Y_TRAIN], plain.t[Y_TRAIN], cnt);
    check_exact("y EVAL (oneDNN on)", &s, dnnl.t[Y_EVAL], plain.t[Y_EVAL], cnt);
    check_exact("dx TRAIN (oneDNN on)", &s, dnnl.t[DX_TRAIN], plain.t[DX_TRAIN], cnt);
    check_exact("dweight (oneDNN on)", &s, dnnl.dw, plain.dw, (size_t)s.c);
    free_results(&plain);
    free_results(&dnnl);
    free_inputs(&in);
#else
    skip();
#endif
}

/* c must be a multiple of the block (and the block not negative), on every entry point */
static void test_bad_block(void **state) {
    (void)state;
    enum { N = 2, C = 24, H = 3, W = 3 };
    size_t cnt = (size_t)N * C * H * W;
    float *x = calloc(cnt, sizeof *x), *y = calloc(cnt, sizeof *y), *dy = calloc(cnt, sizeof *dy);
    float rm[C] = {0}, rv[C], sm[C], si[C];
    for (int c = 0; c < C; c++) rv[c] = sm[c] = si[c] = 1.0f;
    const int bad[] = {16, 7, -8};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mg_bn2d_args a = mg_bn2d_default_args(MG_BN_TRAIN, N, C, H, W);
        a.block = bad[i];
        assert_int_equal(mg_bn2d_forward(&a, x, NULL, NULL, rm, rv, sm, si, y), MG_ERR_INVALID_ARG);
        assert_non_null(strstr(mg_error_message(), "block"));
        assert_int_equal(mg_bn2d_apply(&a, x, NULL, NULL, sm, si, y), MG_ERR_INVALID_ARG);
        assert_int_equal(mg_bn2d_backward(&a, x, dy, NULL, sm, si, y, NULL, NULL), MG_ERR_INVALID_ARG);
        assert_int_equal(mg_bn2d_forward_sync(&a, x, NULL, NULL, NULL, NULL, sm, si, y, identity_reduce, NULL),
                         MG_ERR_INVALID_ARG);
        assert_non_null(strstr(mg_error_message(), "block"));
        assert_int_equal(mg_bn2d_backward_sync(&a, x, dy, NULL, sm, si, y, NULL, NULL, identity_reduce, NULL),
                         MG_ERR_INVALID_ARG);
        a.mode = MG_BN_EVAL;
        assert_int_equal(mg_bn2d_forward(&a, x, NULL, NULL, rm, rv, sm, si, y), MG_ERR_INVALID_ARG);
    }
    /* the message names the values */
    mg_bn2d_args a = mg_bn2d_default_args(MG_BN_TRAIN, N, C, H, W);
    a.block = 16;
    assert_int_equal(mg_bn2d_forward(&a, x, NULL, NULL, rm, rv, sm, si, y), MG_ERR_INVALID_ARG);
    assert_non_null(strstr(mg_error_message(), "block=16"));
    assert_non_null(strstr(mg_error_message(), "c=24"));
    /* the defaults are NCHW; 8, 12, 24 (and 1 = NCHW) are accepted */
    assert_int_equal(mg_bn2d_default_args(MG_BN_TRAIN, N, C, H, W).block, 0);
    const int good[] = {1, 8, 12, 24};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        a.block = good[i];
        mg_assert_ok(mg_bn2d_forward(&a, x, NULL, NULL, rm, rv, sm, si, y));
    }
    free(x), free(y), free(dy);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference),
        cmocka_unit_test(test_fast),
        cmocka_unit_test(test_onednn_declines),
        cmocka_unit_test(test_bad_block),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
