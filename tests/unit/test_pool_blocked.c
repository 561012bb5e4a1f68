/* test_pool_blocked.c: max pool and GeM on the channel-blocked layout nChw<B>c (ops_layers.h,
 * mg_maxpool2d_*_blocked, mg_gem_*_blocked) against the NCHW functions. For every case the NCHW op runs
 * on x and the blocked op on mg_layout_to_blocked(x) (dy likewise); the blocked results are converted back
 * with mg_layout_to_nchw (floats) or a local index formula (argmax, int32) and compared. Both
 * implementations (reference and fast: each blocked path against the NCHW path of the same kind), block
 * sizes 8 and 16 (oneDNN's) plus 4 and 32 (the generic lane loop), C = 16 and 32, odd planes (7x7, 13x11),
 * the ResNet stem window 3x3/2 pad 1, 2x2/2 and the fully overlapping 3x3/1 pad 1.
 *  - Max pool is a selection: y (bit patterns: NaN payloads and the sign of zero show WHICH element was
 *    taken), argmax and dx (same additions in the same order) must be exactly equal. The inputs have many
 *    ties, +0/-0, -inf and NaNs with distinct payloads (two in one window: the last wins).
 *  - GeM: the reference paths must be bit-identical (same code, same order); fast tolerances below. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mg_test.h"
#include "multigrain/ops.h"

static const int IMPLS[2] = {MG_OPS_REFERENCE, MG_OPS_FAST};

static uint64_t g_seed = 7;
static double urand(void) { /* xorshift64*, [0,1) */
    g_seed ^= g_seed >> 12;
    g_seed ^= g_seed << 25;
    g_seed ^= g_seed >> 27;
    return (double)((g_seed * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

static float nan_payload(uint32_t k) {
    uint32_t b = 0x7fc00000u | (k & 0x3fffffu);
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    assert_non_null(p);
    return p;
}

/* offset of (n, c, hw) in nChw<B>c: written out here, independently of the library */
static size_t blk_at(int c, int hw, int B, int in, int ic, int pos) {
    return (((size_t)in * (size_t)(c / B) + (size_t)(ic / B)) * (size_t)hw + (size_t)pos) * (size_t)B +
           (size_t)(ic % B);
}

static void assert_bits_equal(const char *what, const float *got, const float *ref, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (memcmp(&got[i], &ref[i], sizeof *got) != 0)
            fail_msg("%s: element %zu differs: blocked %.9g vs NCHW %.9g", what, i, (double)got[i], (double)ref[i]);
}

typedef struct shape {
    int h, w;
} shape;
static const shape SHAPES[2] = {{7, 7}, {13, 11}};
static const int CHANNELS[2] = {16, 32};
static const int BLOCKS[4] = {8, 16, 4, 32};
static const mg_win2d WINS[3] = {
    {3, 3, 2, 2, 1, 1}, /* ResNet stem */
    {2, 2, 2, 2, 0, 0},
    {3, 3, 1, 1, 1, 1}, /* every input in up to 9 windows: dx sums */
};

/* ---------------- max pool ---------------- */
static void maxpool_case(int impl, int n, int c, int h, int w, int B, const mg_win2d *win) {
    int oh, ow;
    mg_assert_ok(mg_win2d_out_size(win, h, w, &oh, &ow));
    size_t N = (size_t)n * c * h * w, M = (size_t)n * c * oh * ow;
    float *x = xmalloc(N * sizeof *x), *dy = xmalloc(M * sizeof *dy);
    /* values on a coarse grid (many ties), +0 and -0, -inf and NaNs with distinct payloads */
    uint32_t nan_k = 1;
    for (size_t i = 0; i < N; i++) {
        double u = urand();
        if (u < 0.02)
            x[i] = nan_payload(nan_k++);
        else if (u < 0.04)
            x[i] = -INFINITY;
        else if (u < 0.10)
            x[i] = -0.0f;
        else if (u < 0.16)
            x[i] = 0.0f;
        else
            x[i] = 0.5f * (float)(int)(urand() * 7) - 1.5f;
    }
    /* two NaNs in the first window of plane 1 (whatever the window): the reference keeps the last */
    x[(size_t)h * w] = nan_payload(0x1111);
    x[(size_t)h * w + 1] = nan_payload(0x2222);
    for (size_t i = 0; i < M; i++) dy[i] = (float)(urand() * 2 - 1);

    float *y0 = xmalloc(M * sizeof *y0), *dx0 = xmalloc(N * sizeof *dx0);
    int32_t *am0 = xmalloc(M * sizeof *am0);
    float *xb = xmalloc(N * sizeof *xb), *dyb = xmalloc(M * sizeof *dyb), *yb = xmalloc(M * sizeof *yb),
          *dxb = xmalloc(N * sizeof *dxb), *y1 = xmalloc(M * sizeof *y1), *dx1 = xmalloc(N * sizeof *dx1);
    int32_t *amb = xmalloc(M * sizeof *amb);

    mg_layers_force_impl(impl);
    mg_assert_ok(mg_maxpool2d_forward(n, c, h, w, win, x, y0, am0));
    mg_assert_ok(mg_maxpool2d_backward(n, c, h, w, win, am0, dy, dx0));

    mg_assert_ok(mg_layout_to_blocked(n, c, h, w, B, x, xb));
    mg_assert_ok(mg_layout_to_blocked(n, c, oh, ow, B, dy, dyb));
    for (size_t i = 0; i < N; i++) dxb[i] = 12345.0f; /* dx must be written everywhere */
    mg_assert_ok(mg_maxpool2d_forward_blocked(n, c, h, w, B, win, xb, yb, amb));
    mg_assert_ok(mg_maxpool2d_backward_blocked(n, c, h, w, B, win, amb, dyb, dxb));
    mg_assert_ok(mg_layout_to_nchw(n, c, oh, ow, B, yb, y1));
    mg_assert_ok(mg_layout_to_nchw(n, c, h, w, B, dxb, dx1));

    char what[160];
    snprintf(what, sizeof what, "maxpool impl %d n%d c%d %dx%d B%d k%d s%d p%d", impl, n, c, h, w, B, win->kh,
             win->sh, win->ph);
    char sub[200];
    snprintf(sub, sizeof sub, "%s y", what);
    assert_bits_equal(sub, y1, y0, M);
    for (int in = 0; in < n; in++)
        for (int ic = 0; ic < c; ic++)
            for (int pos = 0; pos < oh * ow; pos++) {
                size_t i = ((size_t)in * c + ic) * (size_t)(oh * ow) + (size_t)pos;
                int32_t got = amb[blk_at(c, oh * ow, B, in, ic, pos)];
                if (got != am0[i])
                    fail_msg("%s argmax (n %d, c %d, pos %d): blocked %d vs NCHW %d", what, in, ic, pos, (int)got,
                             (int)am0[i]);
            }
    snprintf(sub, sizeof sub, "%s dx", what);
    assert_bits_equal(sub, dx1, dx0, N);
    /* without argmax the forward gives the same y */
    mg_assert_ok(mg_maxpool2d_forward_blocked(n, c, h, w, B, win, xb, yb, NULL));
    mg_assert_ok(mg_layout_to_nchw(n, c, oh, ow, B, yb, y1));
    snprintf(sub, sizeof sub, "%s y (no argmax)", what);
    assert_bits_equal(sub, y1, y0, M);
    /* block 0 is the NCHW op itself */
    mg_assert_ok(mg_maxpool2d_forward_blocked(n, c, h, w, 0, win, x, y1, amb));
    snprintf(sub, sizeof sub, "%s block 0 y", what);
    assert_bits_equal(sub, y1, y0, M);
    assert_memory_equal(amb, am0, M * sizeof *amb);
    mg_assert_ok(mg_maxpool2d_backward_blocked(n, c, h, w, 0, win, am0, dy, dx1));
    snprintf(sub, sizeof sub, "%s block 0 dx", what);
    assert_bits_equal(sub, dx1, dx0, N);
    mg_layers_force_impl(-1);

    free(x), free(dy), free(y0), free(dx0), free(am0), free(xb), free(dyb), free(yb), free(dxb), free(y1);
    free(dx1), free(amb);
}

static void test_maxpool_blocked(void **state) {
    (void)state;
    for (int ii = 0; ii < 2; ii++)
        for (int s = 0; s < 2; s++)
            for (int ci = 0; ci < 2; ci++)
                for (int bi = 0; bi < 4; bi++)
                    for (int wi = 0; wi < 3; wi++) {
                        if (CHANNELS[ci] % BLOCKS[bi]) continue;
                        maxpool_case(IMPLS[ii], 2, CHANNELS[ci], SHAPES[s].h, SHAPES[s].w, BLOCKS[bi], &WINS[wi]);
                    }
}

/* ---------------- GeM ---------------- */
/* Tolerances (fast path; both references must agree bit for bit):
 *  - y, p = 3: the NCHW fast path sums the float cubes in 8 float lanes (<= 18 terms each here) and the
 *    lanes in double; the blocked path sums the same cubes in double. Positive terms: the float sums are
 *    off by < ~20 u (u = 2^-24) relatively at worst, ~sqrt(18) u typically; the cube root divides that by
 *    3 and the final rounding adds 1/2 ulp: < ~4 FLT_EPSILON (= 2^-23, one ulp at the bottom of a
 *    binade) at worst; rtol 8 FLT_EPSILON leaves a factor 2 (observed: <= 1 FLT_EPSILON). A wrong element
 *    (another lane or position) changes y by percents.
 *  - y, p = 1 and other p: the same double sums in the same order: exact in practice; same rtol.
 *  - dx: from each path's own y: p = 3 scales by y^-2 (twice y's relative error) plus the rounding of
 *    the per-element products: rtol 24 FLT_EPSILON (observed: <= 4). Given the SAME y the per-element
 *    arithmetic is the NCHW fast path's own, so dx must then be bit-identical.
 *  - dp: the per-plane terms are the same double expressions, summed in another order (chunks of
 *    (image, channel block) instead of planes): double rounding (~1e-16 relative) then one float cast
 *    each: rtol 4 FLT_EPSILON, plus atol 1e-6 in case the terms nearly cancel. */
static void gem_case(int impl, int n, int c, int h, int w, int B, float p) {
    size_t N = (size_t)n * c * h * w, M = (size_t)n * c;
    float *x = xmalloc(N * sizeof *x), *dy = xmalloc(M * sizeof *dy);
    for (size_t i = 0; i < N; i++) { /* ~15 % below the 1e-6 clamp (zero gradient), a few exactly 0 */
        double u = urand();
        x[i] = u < 0.03 ? 0.0f : (float)(urand() * 2.3 - 0.3);
    }
    for (size_t i = 0; i < M; i++) dy[i] = (float)(urand() * 2 - 1);
    float *y0 = xmalloc(M * sizeof *y0), *y1 = xmalloc(M * sizeof *y1), *dx0 = xmalloc(N * sizeof *dx0);
    float *xb = xmalloc(N * sizeof *xb), *dxb = xmalloc(N * sizeof *dxb), *dx1 = xmalloc(N * sizeof *dx1);
    float dp0 = 0.25f, dp1 = 0.25f; /* accumulated */

    mg_layers_force_impl(impl);
    mg_assert_ok(mg_gem_forward(n, c, h, w, p, x, y0));
    mg_assert_ok(mg_gem_backward(n, c, h, w, p, x, y0, dy, dx0, &dp0));
    mg_assert_ok(mg_layout_to_blocked(n, c, h, w, B, x, xb));
    mg_assert_ok(mg_gem_forward_blocked(n, c, h, w, B, p, xb, y1));
    for (size_t i = 0; i < N; i++) dxb[i] = 12345.0f;
    mg_assert_ok(mg_gem_backward_blocked(n, c, h, w, B, p, xb, y1, dy, dxb, &dp1));
    mg_assert_ok(mg_layout_to_nchw(n, c, h, w, B, dxb, dx1));

    char what[160], sub[200];
    snprintf(what, sizeof what, "gem impl %d n%d c%d %dx%d B%d p%g", impl, n, c, h, w, B, (double)p);
    if (impl == MG_OPS_REFERENCE) {
        snprintf(sub, sizeof sub, "%s y", what);
        assert_bits_equal(sub, y1, y0, M);
        snprintf(sub, sizeof sub, "%s dx", what);
        assert_bits_equal(sub, dx1, dx0, N);
        snprintf(sub, sizeof sub, "%s dp", what);
        assert_bits_equal(sub, &dp1, &dp0, 1);
    } else {
        snprintf(sub, sizeof sub, "%s y", what);
        mg_test_assert_close(sub, y1, y0, M, 0, 8 * FLT_EPSILON);
        snprintf(sub, sizeof sub, "%s dx", what);
        mg_test_assert_close(sub, dx1, dx0, N, 0, 24 * FLT_EPSILON);
        snprintf(sub, sizeof sub, "%s dp", what);
        mg_test_assert_close(sub, &dp1, &dp0, 1, 1e-6, 4 * FLT_EPSILON);
    }
    /* from the NCHW y, dx is the NCHW arithmetic exactly: with dp and alone (the fast path's dx-only
     * kernels) */
    mg_assert_ok(mg_gem_backward(n, c, h, w, p, x, y0, dy, dx0, &dp0));
    mg_assert_ok(mg_gem_backward_blocked(n, c, h, w, B, p, xb, y0, dy, dxb, &dp1));
    mg_assert_ok(mg_layout_to_nchw(n, c, h, w, B, dxb, dx1));
    snprintf(sub, sizeof sub, "%s dx (same y)", what);
    assert_bits_equal(sub, dx1, dx0, N);
    mg_assert_ok(mg_gem_backward(n, c, h, w, p, x, y0, dy, dx0, NULL));
    mg_assert_ok(mg_gem_backward_blocked(n, c, h, w, B, p, xb, y0, dy, dxb, NULL));
    mg_assert_ok(mg_layout_to_nchw(n, c, h, w, B, dxb, dx1));
    snprintf(sub, sizeof sub, "%s dx (no dp, same y)", what);
    assert_bits_equal(sub, dx1, dx0, N);
    /* dp alone (dx NULL), from the same y */
    dp0 = dp1 = 0;
    mg_assert_ok(mg_gem_backward(n, c, h, w, p, x, y0, dy, NULL, &dp0));
    mg_assert_ok(mg_gem_backward_blocked(n, c, h, w, B, p, xb, y0, dy, NULL, &dp1));
    snprintf(sub, sizeof sub, "%s dp (no dx)", what);
    mg_test_assert_close(sub, &dp1, &dp0, 1, 1e-6, 4 * FLT_EPSILON);
    /* block 0 is the NCHW op itself */
    mg_assert_ok(mg_gem_forward_blocked(n, c, h, w, 0, p, x, y1));
    snprintf(sub, sizeof sub, "%s block 0 y", what);
    assert_bits_equal(sub, y1, y0, M);
    mg_layers_force_impl(-1);

    free(x), free(dy), free(y0), free(y1), free(dx0), free(xb), free(dxb), free(dx1);
}

static void test_gem_blocked(void **state) {
    (void)state;
    const float ps[3] = {3.0f, 1.0f, 2.5f};
    for (int ii = 0; ii < 2; ii++)
        for (int s = 0; s < 2; s++)
            for (int ci = 0; ci < 2; ci++)
                for (int bi = 0; bi < 4; bi++)
                    for (int pi = 0; pi < 3; pi++) {
                        if (CHANNELS[ci] % BLOCKS[bi]) continue;
                        gem_case(IMPLS[ii], 2, CHANNELS[ci], SHAPES[s].h, SHAPES[s].w, BLOCKS[bi], ps[pi]);
                    }
    /* more (image, channel block) items than the 64 fixed dp chunks: 5 x 2048 / 16 = 640 */
    for (int ii = 0; ii < 2; ii++) gem_case(IMPLS[ii], 5, 2048, 7, 7, 16, 3.0f);
}

/* ---------------- bad input ---------------- */

static void test_blocked_bad_input(void **state) {
    (void)state;
    enum { C = 16, H = 4, W = 4 };
    static float x[C * H * W], y[C * 4], dx[C * H * W];
    static int32_t am[C * 4];
    float dp = 0;
    mg_win2d win = {2, 2, 2, 2, 0, 0};
    for (int ii = 0; ii < 2; ii++) {
        mg_layers_force_impl(IMPLS[ii]);
        const int bad_blocks[3] = {6, -8, 32}; /* 6 and 32 do not divide 16; negative */
        for (int k = 0; k < 3; k++) {
            int b = bad_blocks[k];
            MG_EXPECT_INVALID(mg_maxpool2d_forward_blocked(1, C, H, W, b, &win, x, y, am));
            MG_EXPECT_INVALID(mg_maxpool2d_backward_blocked(1, C, H, W, b, &win, am, y, dx));
            MG_EXPECT_INVALID(mg_gem_forward_blocked(1, C, H, W, b, 3.0f, x, y));
            MG_EXPECT_INVALID(mg_gem_backward_blocked(1, C, H, W, b, 3.0f, x, y, y, dx, &dp));
        }
        MG_EXPECT_INVALID(mg_maxpool2d_forward_blocked(1, C, H, W, 8, &win, NULL, y, am));
        MG_EXPECT_INVALID(mg_maxpool2d_forward_blocked(1, C, H, W, 8, NULL, x, y, am));
        MG_EXPECT_INVALID(mg_maxpool2d_backward_blocked(1, C, H, W, 8, &win, NULL, y, dx));
        MG_EXPECT_INVALID(mg_maxpool2d_backward_blocked(0, C, H, W, 8, &win, am, y, dx));
        am[5] = H * W; /* outside the plane */
        MG_EXPECT_INVALID(mg_maxpool2d_backward_blocked(1, C, H, W, 8, &win, am, y, dx));
        am[5] = -1;
        MG_EXPECT_INVALID(mg_maxpool2d_backward_blocked(1, C, H, W, 8, &win, am, y, dx));
        am[5] = 0;
        MG_EXPECT_INVALID(mg_gem_forward_blocked(1, C, H, W, 8, 0.0f, x, y));
        MG_EXPECT_INVALID(mg_gem_forward_blocked(1, C, H, W, 8, 3.0f, x, NULL));
        MG_EXPECT_INVALID(mg_gem_backward_blocked(1, C, H, W, 8, 3.0f, x, y, NULL, dx, &dp));
        /* a valid call still works after all that */
        mg_assert_ok(mg_maxpool2d_forward_blocked(1, C, H, W, 8, &win, x, y, am));
        mg_assert_ok(mg_maxpool2d_backward_blocked(1, C, H, W, 8, &win, am, y, dx));
    }
    mg_layers_force_impl(-1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_maxpool_blocked),
        cmocka_unit_test(test_gem_blocked),
        cmocka_unit_test(test_blocked_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
