/* test_wino_avx2.c: our Winograd F(4x4, 3x3) and F(2x2, 3x3) kernels for AVX2 (src/ops/cpu/wino_avx2.c)
 * against a direct 3x3 convolution summed in double (plain loops here, on the same nChw8c data, and
 * nChw16c for the forward plans on AVX-512 CPUs' layout): map
 * sizes that are and are not multiples of the 4x4 and 2x2 tiles, batch > 1, bias with and without the residual sum and
 * ReLU, one and two threads, both ways a run is split (chunks of tiles per thread, or every tile with
 * each phase shared), a plan sharing another's weights, the training forward and backward data (the
 * adjoint convolution), both with weights set per call, and bad arguments. The nChw16c cases run at
 * both vector widths (MG_WINO_WIDTH=8, then 16 on AVX-512F CPUs: the 16-wide kernels). Skips without
 * AVX2+FMA. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mg_test.h"
#include "multigrain/cpu.h"
#include "ops/cpu/wino_avx2.h"

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;

/* The vector width nChw16c plans must run at (set through MG_WINO_WIDTH by each_width), 0: unchecked. */
static int g_want_vw;

/* Runs body once per kernel width an nChw16c plan can take on this CPU: 8-wide AVX2, and 16-wide
 * AVX-512 where the CPU has AVX-512F (MG_WINO_WIDTH picks; the default follows mg_cpu_fma_width). */
static void each_width(void (*body)(void)) {
    for (int vw = 8; vw <= 16; vw += 8) {
        if (vw == 16 && !mg_cpu_fma_width_ok(16)) {
            fprintf(stderr, "test_wino_avx2: no AVX-512F, 16-wide kernels not tested\n");
            break;
        }
        setenv("MG_WINO_WIDTH", vw == 8 ? "8" : "16", 1);
        g_want_vw = vw;
        body();
    }
    unsetenv("MG_WINO_WIDTH");
    g_want_vw = 0;
}

static void assert_width(const mg_wino4 *plan) {
    if (g_want_vw) assert_int_equal(mg_wino4_vector_width(plan), g_want_vw);
}

/* Float index of [n][ch][y][x] of an n x c x h x w map in channel blocks of blk (8: nChw8c, 16: nChw16c). */
static size_t blk_at(int blk, int c, int h, int w, int n, int ch, int y, int x) {
    return (((size_t)n * (c / blk) + ch / blk) * h * w + (size_t)y * w + x) * blk + ch % blk;
}

/* y[n][k][p][q] = sum_c,a,b w[k][c][a][b] x[n][c][s p+a-1][s q+b-1] + bias (+ res, relu), stride s,
 * output p x q = ((h - 1) / s + 1) x ((w - 1) / s + 1), x and y in channel blocks of blk */
static double *ref_conv_blk(const float *x, const float *wt, const float *bias, const float *res, int relu, int n,
                            int c, int k, int h, int w, int s, int blk) {
    const int ho = (h - 1) / s + 1, wo = (w - 1) / s + 1;
    double *y = malloc((size_t)n * k * ho * wo * sizeof *y);
    for (int in = 0; in < n; in++)
        for (int o = 0; o < k; o++)
            for (int yy = 0; yy < ho; yy++)
                for (int xx = 0; xx < wo; xx++) {
                    double acc = bias[o];
                    for (int i = 0; i < c; i++)
                        for (int a = 0; a < 3; a++)
                            for (int b = 0; b < 3; b++) {
                                int iy = s * yy + a - 1, ix = s * xx + b - 1;
                                if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                                acc += (double)wt[((size_t)o * c + i) * 9 + a * 3 + b] *
                                       x[blk_at(blk, c, h, w, in, i, iy, ix)];
                            }
                    size_t at = blk_at(blk, k, ho, wo, in, o, yy, xx);
                    if (res) acc += res[at];
                    if (relu && acc < 0) acc = 0;
                    y[at] = acc;
                }
    return y;
}

/* The same on nChw8c. */
static double *ref_conv_stride(const float *x, const float *wt, const float *bias, const float *res, int relu, int n,
                               int c, int k, int h, int w, int s) {
    return ref_conv_blk(x, wt, bias, res, relu, n, c, k, h, w, s, 8);
}

static double *ref_conv(const float *x, const float *wt, const float *bias, const float *res, int relu, int n, int c,
                        int k, int h, int w) {
    return ref_conv_stride(x, wt, bias, res, relu, n, c, k, h, w, 1);
}

/* Winograd F(4x4) rounds through its transforms (points 0, +-1, +-2; the output transform scales by
 * up to 8x8): its error grows with the reduction length c*9 and the values' scale. With inputs and
 * weights in [-1, 1] and c <= 200, 2e-5 of the output's scale holds with margin: against a float64
 * direct convolution the worst error was 4.6e-6 of scale at c = 64 and 8.8e-6 at c = 512 (weights of
 * 0.1, 56x56 and 7x7 maps at batch 4, measured while the kernel was written; docs/ops.md), 5.7e-6 on
 * test_passes' 200-channel case and 6.4e-6 on its 136-channel one; F(2x2) (points 0, +-1) 5.2e-7
 * there. A wrong transform coefficient or index is off by O(1). */
static void check(const char *what, const float *got, const double *want, size_t count) {
    double scale = 0, worst = 0;
    size_t at = 0;
    for (size_t i = 0; i < count; i++) scale = fmax(scale, fabs(want[i]));
    for (size_t i = 0; i < count; i++) {
        double d = fabs(got[i] - want[i]);
        if (!(d <= worst)) worst = d, at = i;
    }
    if (!(worst <= 2e-5 * scale)) {
        fprintf(stderr, "%s: |diff| %.3g at %zu (got %.7g, want %.7g), scale %.3g\n", what, worst, at, got[at],
                want[at], scale);
        fail();
    }
}

static void run_case_tile(int tile, int n, int c, int k, int h, int w, int sum, int relu, int threads) {
    size_t nx = (size_t)n * c * h * w, ny = (size_t)n * k * h * w;
    float *x = mg_test_rand_buf(&g_rng, nx), *wt = mg_test_rand_buf(&g_rng, (size_t)k * c * 9);
    float *bias = mg_test_rand_buf(&g_rng, k), *res = mg_test_rand_buf(&g_rng, ny);
    double *want = ref_conv(x, wt, bias, sum ? res : NULL, relu, n, c, k, h, w);
    mg_wino4 *plan;
    mg_assert_ok(mg_wino4_init_tile(&plan, tile, n, c, k, h, w, wt, bias));
    void *scratch = NULL;
    assert_int_equal(posix_memalign(&scratch, 64, mg_wino4_scratch_bytes(plan, threads)), 0);
    float *y = malloc(ny * sizeof *y);
    for (int rep = 0; rep < 2; rep++) { /* twice: nothing may depend on what the scratch held */
        memcpy(y, res, ny * sizeof *y);
        mg_wino4_forward(plan, x, y, sum, relu, scratch, threads);
        char what[128];
        snprintf(what, sizeof what, "F(%dx%d) n%d c%d k%d %dx%d sum %d relu %d threads %d", tile, tile, n, c, k, h, w,
                 sum, relu, threads);
        check(what, y, want, ny);
    }
    mg_wino4_free(plan);
    free(scratch), free(x), free(wt), free(bias), free(res), free(want), free(y);
}

static void run_case(int n, int c, int k, int h, int w, int sum, int relu, int threads) {
    run_case_tile(4, n, c, k, h, w, sum, relu, threads);
}

/* The stride-2 plan on an h x w input against the double direct convolution at stride 2, twice. */
static void run_case_s2(int n, int c, int k, int h, int w, int sum, int relu, int threads) {
    const int ho = (h - 1) / 2 + 1, wo = (w - 1) / 2 + 1;
    size_t nx = (size_t)n * c * h * w, ny = (size_t)n * k * ho * wo;
    float *x = mg_test_rand_buf(&g_rng, nx), *wt = mg_test_rand_buf(&g_rng, (size_t)k * c * 9);
    float *bias = mg_test_rand_buf(&g_rng, k), *res = mg_test_rand_buf(&g_rng, ny);
    double *want = ref_conv_stride(x, wt, bias, sum ? res : NULL, relu, n, c, k, h, w, 2);
    mg_wino4 *plan;
    mg_assert_ok(mg_wino4_init_stride2(&plan, n, c, k, h, w, wt, bias));
    void *scratch = NULL;
    assert_int_equal(posix_memalign(&scratch, 64, mg_wino4_scratch_bytes(plan, threads)), 0);
    float *y = malloc(ny * sizeof *y);
    for (int rep = 0; rep < 2; rep++) {
        memcpy(y, res, ny * sizeof *y);
        mg_wino4_forward(plan, x, y, sum, relu, scratch, threads);
        char what[128];
        snprintf(what, sizeof what, "stride 2 n%d c%d k%d %dx%d sum %d relu %d threads %d", n, c, k, h, w, sum, relu,
                 threads);
        check(what, y, want, ny);
    }
    mg_wino4_free(plan);
    free(scratch), free(x), free(wt), free(bias), free(res), free(want), free(y);
}

/* A forward plan (tile 4 or 2 at stride 1, or the stride-2 plan: tile 4, stride 2) on nChw16c
 * activations against the double direct convolution on the same nChw16c data, twice; then a plan for
 * another batch and map made with init_like from it, which keeps the block. */
static void run_case_blk16(int tile, int stride, int n, int c, int k, int h, int w, int sum, int relu, int threads) {
    const int ho = (h - 1) / stride + 1, wo = (w - 1) / stride + 1;
    size_t nx = (size_t)n * c * h * w, ny = (size_t)n * k * ho * wo;
    float *x = mg_test_rand_buf(&g_rng, nx), *wt = mg_test_rand_buf(&g_rng, (size_t)k * c * 9);
    float *bias = mg_test_rand_buf(&g_rng, k), *res = mg_test_rand_buf(&g_rng, ny);
    double *want = ref_conv_blk(x, wt, bias, sum ? res : NULL, relu, n, c, k, h, w, stride, 16);
    mg_wino4 *plan;
    if (stride == 2)
        mg_assert_ok(mg_wino4_init_stride2(&plan, n, c, k, h, w, wt, bias));
    else
        mg_assert_ok(mg_wino4_init_tile(&plan, tile, n, c, k, h, w, wt, bias));
    mg_assert_ok(mg_wino4_set_block(plan, 16));
    assert_width(plan);
    void *scratch = NULL;
    assert_int_equal(posix_memalign(&scratch, 64, mg_wino4_scratch_bytes(plan, threads)), 0);
    float *y = malloc(ny * sizeof *y);
    char what[160];
    snprintf(what, sizeof what, "nChw16c %d-wide tile %d stride %d n%d c%d k%d %dx%d sum %d relu %d threads %d",
             mg_wino4_vector_width(plan), tile, stride, n, c, k, h, w, sum, relu, threads);
    for (int rep = 0; rep < 2; rep++) {
        memcpy(y, res, ny * sizeof *y);
        mg_wino4_forward(plan, x, y, sum, relu, scratch, threads);
        check(what, y, want, ny);
    }
    /* init_like: batch 1 of the first image's map, the block kept */
    mg_wino4 *like;
    mg_assert_ok(mg_wino4_init_like(&like, plan, 1, h, w));
    assert_width(like);
    size_t ny1 = (size_t)k * ho * wo;
    double *want1 = ref_conv_blk(x, wt, bias, NULL, 0, 1, c, k, h, w, stride, 16);
    void *scratch1 = NULL;
    assert_int_equal(posix_memalign(&scratch1, 64, mg_wino4_scratch_bytes(like, threads)), 0);
    mg_wino4_forward(like, x, y, 0, 0, scratch1, threads);
    strncat(what, ", init_like batch 1", sizeof what - strlen(what) - 1);
    check(what, y, want1, ny1);
    mg_wino4_free(like), mg_wino4_free(plan);
    free(scratch), free(scratch1), free(x), free(wt), free(bias), free(res), free(want), free(want1), free(y);
}

static int skip_without_avx2(void) {
    if (mg_wino4_cpu_ok()) return 0;
    fprintf(stderr, "test_wino_avx2: no AVX2+FMA on this CPU, skipped\n");
    return 1;
}

/* Sizes around the 4x4 tile: exact (8, 16), one over (5, 9, 13), odd (7), one tile (4), under (3). */
static void test_map_sizes(void **state) {
    (void)state;
    const int sizes[][2] = {{8, 8}, {16, 16}, {5, 5}, {7, 7}, {9, 13}, {13, 9}, {4, 4}, {3, 6}, {14, 14}};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) run_case(2, 16, 16, sizes[i][0], sizes[i][1], 0, 0, 1);
}

static void test_epilogue(void **state) {
    (void)state;
    run_case(1, 8, 32, 11, 10, 0, 1, 1);
    run_case(1, 24, 16, 12, 12, 1, 0, 1);
    run_case(3, 32, 48, 7, 9, 1, 1, 1);
}

/* How a run is split (wino_avx2.c, split_for): with 64 channels each way a chunk is 48 tiles. Four
 * 30x30 maps (8x8 tiles each, 256) are 6 chunks, the last one partial, shared out between the threads;
 * one 28x28 map (49 tiles) two chunks on two threads, of 30 and 19; one 16x16 map (16 tiles) or four
 * 12x12 ones (36), under 20 tiles per thread, are one chunk, which two threads split phase by phase. */
static void test_threads_and_splits(void **state) {
    (void)state;
    for (int t = 1; t <= 2; t++) {
        run_case(4, 64, 64, 30, 30, 1, 1, t);
        run_case(1, 64, 64, 28, 28, 1, 1, t);
        run_case(1, 64, 64, 16, 16, 0, 1, t);
        run_case(4, 64, 32, 12, 12, 0, 0, t);
    }
}

/* F(2x2, 3x3) (forward plans, the fused network's small maps): map sizes around the 2x2 tile (exact,
 * odd, one tile, under one), batch > 1, the epilogue, and both ways a run is split on two threads (the
 * 512-channel 7x7 map of ResNet-50's stage 4 at batch 1: 16 tiles, one chunk split phase by phase; 4 x
 * 30x30 with 64 channels: chunks per thread). F(2x2) rounds through smaller transforms than F(4x4)
 * (points 0, +-1; scales up to 2x2), so the F(4x4) bound of check() holds with more margin; a wrong
 * coefficient or index is off by O(1). */
static void test_tile2(void **state) {
    (void)state;
    const int sizes[][2] = {{8, 8}, {7, 7}, {5, 9}, {2, 2}, {1, 3}, {14, 14}};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
        run_case_tile(2, 2, 16, 16, sizes[i][0], sizes[i][1], 0, 0, 1);
    run_case_tile(2, 1, 8, 32, 11, 10, 0, 1, 1);
    run_case_tile(2, 3, 32, 48, 7, 9, 1, 1, 1);
    for (int t = 1; t <= 2; t++) {
        run_case_tile(2, 1, 64, 64, 7, 7, 1, 1, t);
        run_case_tile(2, 4, 64, 64, 30, 30, 1, 1, t);
    }
}

/* The stride-2 plan (3x3, padding 1; the fused network's stride-2 layers): input maps of whole 8x8 tiles
 * (16, 56: the entry to ResNet-50's stage 2), a partial tile (9, 20, 28), odd sizes whose last output's
 * third tap is padding (7, 15, 13x11), a single output (1, 2), rectangles, batch > 1, the epilogue,
 * both ways a run is split on two threads (4 x 60x60: 64 tiles each, chunks per thread; one 30x30:
 * 16 tiles, phase by phase), more channels than a pass (200), and a plan sharing the weights. Its
 * transforms scale like F(4x4)'s (F(4, 2)'s output transform up to 8 in one dimension), so check()'s
 * F(4x4) bound holds; a wrong coefficient, index or U matrix is off by O(1). */
static void test_stride2(void **state) {
    (void)state;
    const int sizes[][2] = {{16, 16}, {9, 9}, {7, 7}, {15, 15}, {1, 1}, {2, 2}, {13, 11}, {20, 6}, {28, 28}, {56, 56}};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
        run_case_s2(2, 16, 16, sizes[i][0], sizes[i][1], 0, 0, 1);
    run_case_s2(1, 8, 32, 11, 10, 0, 1, 1);
    run_case_s2(3, 32, 48, 14, 14, 1, 1, 1);
    for (int t = 1; t <= 2; t++) {
        run_case_s2(4, 64, 64, 60, 60, 1, 1, t);
        run_case_s2(1, 64, 32, 30, 30, 0, 1, t);
        run_case_s2(1, 200, 32, 17, 17, 1, 0, t);
    }
    const int c = 16, k = 32;
    float *wt = mg_test_rand_buf(&g_rng, (size_t)k * c * 9), *bias = mg_test_rand_buf(&g_rng, k);
    mg_wino4 *a, *b;
    mg_assert_ok(mg_wino4_init_stride2(&a, 1, c, k, 8, 8, wt, bias));
    mg_assert_ok(mg_wino4_init_like(&b, a, 3, 10, 7));
    assert_true(mg_wino4_matches(b, 4, 2, c, k));
    assert_false(mg_wino4_matches(b, 4, 1, c, k));
    mg_wino4_free(a);
    size_t nx = (size_t)3 * c * 10 * 7, ny = (size_t)3 * k * 5 * 4;
    float *x = mg_test_rand_buf(&g_rng, nx), *y = malloc(ny * sizeof *y);
    void *scratch = NULL;
    assert_int_equal(posix_memalign(&scratch, 64, mg_wino4_scratch_bytes(b, 1)), 0);
    mg_wino4_forward(b, x, y, 0, 0, scratch, 1);
    double *want = ref_conv_stride(x, wt, bias, NULL, 0, 3, c, k, 10, 7, 2);
    check("init_like stride 2", y, want, ny);
    mg_wino4_free(b);
    free(scratch), free(x), free(y), free(want), free(wt), free(bias);
}

/* What the stride-2 plan saves, counted by hand (taps inside the map over 81 products per tile), and
 * the fused network's gate (MG_WINO_S2_MIN_SAVING). */
static void test_s2_saving(void **state) {
    (void)state;
    const double eps = 1e-12;
    assert_true(fabs(mg_wino4_s2_saving(56, 56) - 83.0 * 83 / (81 * 49)) < eps); /* 28 outputs: 84 - 1 taps, 7 tiles */
    assert_true(fabs(mg_wino4_s2_saving(28, 28) - 41.0 * 41 / (81 * 16)) < eps);
    assert_true(fabs(mg_wino4_s2_saving(14, 14) - 20.0 * 20 / (81 * 4)) < eps);
    assert_true(fabs(mg_wino4_s2_saving(7, 7) - 10.0 * 10 / 81) < eps);           /* 4 outputs: 12 - 1 - 1 taps */
    assert_true(fabs(mg_wino4_s2_saving(1, 1) - 1.0 / 81) < eps);
    assert_true(fabs(mg_wino4_s2_saving(16, 9) - 23.0 * 13 / (81 * 2 * 2)) < eps); /* 8 x 5 outputs */
    assert_true(mg_wino4_s2_saving(0, 4) == 0);
    for (int vw = 8; vw <= 16; vw += 8) {
        assert_true(mg_wino4_inference_s2(1, 128, 128, 56, 56, vw));
        assert_false(mg_wino4_inference_s2(1, 12, 16, 56, 56, vw));
        assert_false(mg_wino4_inference_s2(0, 128, 128, 56, 56, vw));
        /* 28x28 (1.30) only 16-wide, 14x14 (1.23) neither */
        assert_true(mg_wino4_inference_s2(1, 256, 256, 28, 28, vw) == (vw == 16));
        assert_false(mg_wino4_inference_s2(1, 512, 512, 14, 14, vw));
    }
}

/* More input channels than one pass of phase 2 takes (wino_avx2.c, pass_rows: 128): 200 channels are
 * a pass of 128 and one of 72, the second summing onto the first's products, for both tiles and both
 * ways a run is split. */
static void test_passes(void **state) {
    (void)state;
    for (int t = 1; t <= 2; t++) {
        run_case_tile(4, 1, 200, 32, 9, 9, 1, 1, t);
        run_case_tile(2, 1, 200, 32, 7, 7, 0, 1, t);
        run_case_tile(4, 2, 136, 16, 16, 16, 0, 0, t);
    }
}

/* Which tile the fused network uses: F(4x4) from MG_WINO2_MIN_TILES4 4x4 tiles up, F(2x2) below, none
 * for channels the kernels do not take. */
static void test_inference_tile(void **state) {
    (void)state;
    assert_int_equal(mg_wino4_inference_tile(1, 512, 512, 7, 7), 2);   /* 4 tiles */
    assert_int_equal(mg_wino4_inference_tile(1, 512, 512, 8, 12), 2);  /* 6 */
    assert_int_equal(mg_wino4_inference_tile(2, 512, 512, 7, 7), 4);   /* 8 */
    assert_int_equal(mg_wino4_inference_tile(8, 512, 512, 7, 7), 4);   /* 32 */
    assert_int_equal(mg_wino4_inference_tile(1, 64, 64, 56, 56), 4);   /* 196 */
    assert_int_equal(mg_wino4_inference_tile(1, 12, 16, 56, 56), 0);   /* c not a multiple of 8 */
    assert_int_equal(mg_wino4_inference_tile(0, 64, 64, 56, 56), 0);
}

/* What Winograd saves over the direct kernels' multiply-adds inside the map, counted by hand:
 * (3h - 2)(3w - 2) taps over (tile + 2)^2 products per tile, whole tiles. And the gate it sets
 * (MG_WINO_MIN_SAVING_DEFAULT 1.3) for the fused network: none on maps of 2x2, 3x3 and 5x5, F(2x2)
 * where F(4x4) saves too little; MG_WINO_MIN_SAVING=0 lifts the gate. */
static void test_saving(void **state) {
    (void)state;
    const double eps = 1e-12;
    assert_true(fabs(mg_wino4_saving(2, 7, 7) - 361.0 / 256) < eps);        /* 19^2 / (16 x 16 tiles) */
    assert_true(fabs(mg_wino4_saving(4, 14, 14) - 1600.0 / 576) < eps);     /* 40^2 / (36 x 16) */
    assert_true(fabs(mg_wino4_saving(2, 2, 2) - 1.0) < eps);                /* 16 / 16 */
    assert_true(fabs(mg_wino4_saving(4, 2, 2) - 16.0 / 36) < eps);
    assert_true(fabs(mg_wino4_saving(2, 3, 3) - 49.0 / 64) < eps);          /* 4 tiles, 7 of 16 outputs lost */
    assert_true(fabs(mg_wino4_saving(2, 5, 5) - 169.0 / 144) < eps);
    assert_true(fabs(mg_wino4_saving(2, 2, 16) - 4.0 * 46 / (16 * 8)) < eps); /* rectangular */
    assert_true(mg_wino4_saving(3, 7, 7) == 0 && mg_wino4_saving(2, 0, 7) == 0);
    /* the fused network's tile */
    assert_int_equal(mg_wino4_inference_tile(1, 512, 512, 2, 2), 0);
    assert_int_equal(mg_wino4_inference_tile(8, 512, 512, 2, 2), 0); /* 8 tiles: F(4x4) 0.44, F(2x2) 1.0 */
    assert_int_equal(mg_wino4_inference_tile(1, 256, 256, 3, 3), 0);
    assert_int_equal(mg_wino4_inference_tile(1, 512, 512, 5, 5), 0);
    assert_int_equal(mg_wino4_inference_tile(1, 256, 256, 4, 4), 2);  /* 100 / 64 = 1.56 */
    assert_int_equal(mg_wino4_inference_tile(8, 256, 256, 4, 4), 4);  /* 8 tiles, 100 / 36 */
    assert_int_equal(mg_wino4_inference_tile(1, 512, 512, 6, 6), 2);  /* 256 / 144 = 1.78 */
    assert_int_equal(mg_wino4_inference_tile(1, 64, 64, 2, 16), 2);   /* 1.44 */
    assert_int_equal(mg_wino4_inference_tile(16, 64, 64, 3, 3), 4);   /* 16 tiles of 4x4: 49 / 36 = 1.36 */
    assert_int_equal(mg_wino4_inference_tile(16, 64, 64, 2, 3), 0);   /* F(4x4) 28 / 36, F(2x2) 28 / 32 */
    setenv("MG_WINO_MIN_SAVING", "0", 1);
    assert_int_equal(mg_wino4_inference_tile(1, 512, 512, 2, 2), 2);
    unsetenv("MG_WINO_MIN_SAVING");
}

/* A plan for another batch and map size sharing the first plan's transformed weights, for both tiles. */
static void test_init_like(void **state) {
    (void)state;
    const int c = 16, k = 32;
    float *wt = mg_test_rand_buf(&g_rng, (size_t)k * c * 9), *bias = mg_test_rand_buf(&g_rng, k);
    for (int tile = 2; tile <= 4; tile += 2) {
        mg_wino4 *a, *b;
        mg_assert_ok(mg_wino4_init_tile(&a, tile, 1, c, k, 8, 8, wt, bias));
        mg_assert_ok(mg_wino4_init_like(&b, a, 3, 10, 6));
        assert_true(mg_wino4_matches(b, tile, 1, c, k));
        assert_false(mg_wino4_matches(b, tile, 1, k, c));
        assert_false(mg_wino4_matches(b, 6 - tile, 1, c, k));
        assert_false(mg_wino4_matches(b, tile, 2, c, k));
        mg_wino4_free(a); /* b keeps the weights */
        size_t nx = (size_t)3 * c * 10 * 6, ny = (size_t)3 * k * 10 * 6;
        float *x = mg_test_rand_buf(&g_rng, nx), *y = malloc(ny * sizeof *y);
        void *scratch = NULL;
        assert_int_equal(posix_memalign(&scratch, 64, mg_wino4_scratch_bytes(b, 1)), 0);
        mg_wino4_forward(b, x, y, 0, 0, scratch, 1);
        double *want = ref_conv(x, wt, bias, NULL, 0, 3, c, k, 10, 6);
        check(tile == 2 ? "init_like F(2x2)" : "init_like F(4x4)", y, want, ny);
        mg_wino4_free(b);
        free(scratch), free(x), free(y), free(want);
    }
    free(wt), free(bias);
}

/* Backward data of a forward layer c -> k: dx[c][y][x] = sum_k,a,b w[k][c][a][b] dy[k][y-a+1][x-b+1]
 * (the adjoint of the forward convolution, summed in double here), through a plan whose weights are
 * set from the forward ones, twice with different weights (they change every training step). */
static void run_bwd_data_blk(int n, int c, int k, int h, int w, int threads, int blk) {
    size_t ndy = (size_t)n * k * h * w, ndx = (size_t)n * c * h * w;
    float *dy = mg_test_rand_buf(&g_rng, ndy), *dx = malloc(ndx * sizeof *dx);
    double *want = malloc(ndx * sizeof *want);
    mg_wino4 *plan;
    mg_assert_ok(mg_wino4_init_bwd_data(&plan, n, c, k, h, w));
    mg_assert_ok(mg_wino4_set_block(plan, blk));
    if (blk == 16) assert_width(plan);
    void *scratch = NULL;
    assert_int_equal(posix_memalign(&scratch, 64, mg_wino4_scratch_bytes(plan, threads)), 0);
    for (int rep = 0; rep < 2; rep++) {
        float *wt = mg_test_rand_buf(&g_rng, (size_t)k * c * 9);
        for (int in = 0; in < n; in++)
            for (int i = 0; i < c; i++)
                for (int yy = 0; yy < h; yy++)
                    for (int xx = 0; xx < w; xx++) {
                        double acc = 0;
                        for (int o = 0; o < k; o++)
                            for (int a = 0; a < 3; a++)
                                for (int b = 0; b < 3; b++) {
                                    int oy = yy - a + 1, ox = xx - b + 1;
                                    if (oy < 0 || oy >= h || ox < 0 || ox >= w) continue;
                                    acc += (double)wt[((size_t)o * c + i) * 9 + a * 3 + b] *
                                           dy[blk_at(blk, k, h, w, in, o, oy, ox)];
                                }
                        want[blk_at(blk, c, h, w, in, i, yy, xx)] = acc;
                    }
        mg_wino4_set_weights_scratch(plan, wt, scratch, threads);
        mg_wino4_forward(plan, dy, dx, 0, 0, scratch, threads);
        char what[128];
        snprintf(what, sizeof what, "backward data n%d c%d k%d %dx%d threads %d block %d %d-wide, weights %d", n, c,
                 k, h, w, threads, blk, mg_wino4_vector_width(plan), rep);
        check(what, dx, want, ndx);
        free(wt);
    }
    mg_wino4_free(plan);
    free(scratch), free(dy), free(dx), free(want);
}

static void run_bwd_data(int n, int c, int k, int h, int w, int threads) {
    run_bwd_data_blk(n, c, k, h, w, threads, 8);
}

static void bwd_data_blk16(void) {
    run_bwd_data_blk(1, 32, 64, 14, 14, 2, 16);
    run_bwd_data_blk(3, 48, 32, 5, 11, 1, 16); /* k 32 -> c 48: three output blocks, a pair and one */
    run_bwd_data_blk(2, 80, 16, 6, 9, 2, 16);  /* five blocks, few tiles over two threads */
}

static void test_backward_data(void **state) {
    (void)state;
    run_bwd_data(2, 16, 8, 9, 7, 1);   /* k 8 -> c 16: the smallest channel counts it takes */
    run_bwd_data(1, 32, 64, 14, 14, 2);
    run_bwd_data(3, 48, 24, 5, 11, 2);
    each_width(bwd_data_blk16); /* nChw16c (the training chain on AVX-512 CPUs) */
    mg_wino4 *p = (mg_wino4 *)&p;
    assert_int_equal(mg_wino4_init_bwd_data(&p, 1, 8, 16, 8, 8), MG_ERR_INVALID_ARG); /* c_fwd 8: not of 16 */
    assert_null(p);
}

/* The training forward: a plan whose transformed weights live in the scratch, set from OIHW weights
 * before each run (twice with different weights, as they change every step), zero bias, against the
 * double direct convolution. Where the channels allow (c a multiple of 16), a backward-data plan of the
 * same layer sets its weights into the same scratch first, as the training chain's plans share one. */
static void run_fwd_scratch_blk(int n, int c, int k, int h, int w, int threads, int blk) {
    size_t nx = (size_t)n * c * h * w, ny = (size_t)n * k * h * w;
    float *x = mg_test_rand_buf(&g_rng, nx), *y = malloc(ny * sizeof *y), *zero = calloc((size_t)k, sizeof *zero);
    mg_wino4 *plan, *bwd = NULL;
    mg_assert_ok(mg_wino4_init_fwd_scratch(&plan, n, c, k, h, w));
    mg_assert_ok(mg_wino4_set_block(plan, blk));
    if (blk == 16) assert_width(plan);
    if (mg_wino4_shape_ok(k, c)) mg_assert_ok(mg_wino4_init_bwd_data(&bwd, n, c, k, h, w));
    assert_int_equal(mg_wino4_weight_bytes(plan), (size_t)k * sizeof(float)); /* U is in the scratch */
    size_t sb = mg_wino4_scratch_bytes(plan, threads), sb2 = bwd ? mg_wino4_scratch_bytes(bwd, threads) : 0;
    void *scratch = NULL;
    assert_int_equal(posix_memalign(&scratch, 64, sb > sb2 ? sb : sb2), 0);
    for (int rep = 0; rep < 2; rep++) {
        float *wt = mg_test_rand_buf(&g_rng, (size_t)k * c * 9);
        if (bwd) mg_wino4_set_weights_scratch(bwd, wt, scratch, threads); /* what the shared scratch held */
        mg_wino4_set_weights_scratch(plan, wt, scratch, threads);
        mg_wino4_forward(plan, x, y, 0, 0, scratch, threads);
        double *want = ref_conv_blk(x, wt, zero, NULL, 0, n, c, k, h, w, 1, blk);
        char what[128];
        snprintf(what, sizeof what, "forward, weights in scratch n%d c%d k%d %dx%d threads %d block %d %d-wide, weights %d",
                 n, c, k, h, w, threads, blk, mg_wino4_vector_width(plan), rep);
        check(what, y, want, ny);
        free(wt), free(want);
    }
    mg_wino4_free(plan), mg_wino4_free(bwd);
    free(scratch), free(x), free(y), free(zero);
}

static void run_fwd_scratch(int n, int c, int k, int h, int w, int threads) {
    run_fwd_scratch_blk(n, c, k, h, w, threads, 8);
}

static void fwd_scratch_blk16(void) {
    run_fwd_scratch_blk(1, 64, 32, 14, 14, 2, 16);
    run_fwd_scratch_blk(3, 32, 48, 5, 11, 1, 16); /* three output blocks: a pair and one */
    run_fwd_scratch_blk(4, 64, 64, 30, 30, 2, 16);
    run_fwd_scratch_blk(1, 16, 80, 6, 9, 2, 16); /* five output blocks, few tiles over two threads */
}

static void test_forward_scratch(void **state) {
    (void)state;
    run_fwd_scratch(2, 8, 16, 9, 7, 1); /* the smallest channel counts it takes */
    run_fwd_scratch(1, 64, 32, 14, 14, 2);
    run_fwd_scratch(3, 32, 48, 5, 11, 2);
    run_fwd_scratch(4, 64, 64, 30, 30, 2); /* chunks of tiles shared out between the threads */
    each_width(fwd_scratch_blk16); /* nChw16c: the training chain's forward on AVX-512 CPUs */
    mg_wino4 *p = (mg_wino4 *)&p;
    assert_int_equal(mg_wino4_init_fwd_scratch(&p, 1, 16, 8, 8, 8), MG_ERR_INVALID_ARG); /* k 8: not of 16 */
    assert_null(p);
}

/* Backward weights: dw[k][c][a][b] += sum_n,y,x dy[k][y][x] x[c][y+a-1][x+b-1] (summed in double),
 * accumulated onto what dw held. Summing over n*h*w positions, the error grows with the count; the
 * tolerance is 2e-5 of the gradient's scale as above (measured ~3e-6). */
static void run_bwd_weights(int n, int c, int k, int h, int w, int threads) {
    size_t nx = (size_t)n * c * h * w, ndy = (size_t)n * k * h * w, nw = (size_t)k * c * 9;
    float *x = mg_test_rand_buf(&g_rng, nx), *dy = mg_test_rand_buf(&g_rng, ndy), *dw = mg_test_rand_buf(&g_rng, nw);
    double *want = malloc(nw * sizeof *want);
    for (size_t i = 0; i < nw; i++) want[i] = dw[i];
    for (int o = 0; o < k; o++)
        for (int i = 0; i < c; i++)
            for (int a = 0; a < 3; a++)
                for (int b = 0; b < 3; b++) {
                    double acc = 0;
                    for (int in = 0; in < n; in++)
                        for (int yy = 0; yy < h; yy++)
                            for (int xx = 0; xx < w; xx++) {
                                int iy = yy + a - 1, ix = xx + b - 1;
                                if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                                acc += (double)dy[(((size_t)in * (k / 8) + o / 8) * h * w + (size_t)yy * w + xx) * 8 + o % 8] *
                                       x[(((size_t)in * (c / 8) + i / 8) * h * w + (size_t)iy * w + ix) * 8 + i % 8];
                            }
                    want[((size_t)o * c + i) * 9 + a * 3 + b] += acc;
                }
    mg_wino4 *plan;
    mg_assert_ok(mg_wino4_init_bwd_weights(&plan, n, c, k, h, w));
    void *scratch = NULL;
    assert_int_equal(posix_memalign(&scratch, 64, mg_wino4_scratch_bytes(plan, threads)), 0);
    mg_wino4_backward_weights(plan, x, dy, dw, scratch, threads);
    char what[128];
    snprintf(what, sizeof what, "backward weights n%d c%d k%d %dx%d threads %d", n, c, k, h, w, threads);
    check(what, dw, want, nw);
    mg_wino4_free(plan);
    free(scratch), free(x), free(dy), free(dw), free(want);
}

static void test_backward_weights(void **state) {
    (void)state;
    /* c 8, 16, 24, 64: the 6-row kernel with a 2-row, a 4-row or no rest kernel */
    run_bwd_weights(2, 8, 16, 9, 7, 1);
    run_bwd_weights(1, 24, 32, 14, 14, 2);
    run_bwd_weights(3, 16, 16, 5, 11, 2);
    run_bwd_weights(4, 64, 64, 30, 30, 2);
    /* dU summed over chunks of tiles: 256 tiles in chunks of 7 (the last one of 4) */
    setenv("MG_WINO_BWDW_TILES", "7", 1);
    run_bwd_weights(4, 64, 64, 30, 30, 1);
    run_bwd_weights(4, 64, 64, 30, 30, 2);
    unsetenv("MG_WINO_BWDW_TILES");
    mg_wino4 *p = (mg_wino4 *)&p;
    assert_int_equal(mg_wino4_init_bwd_weights(&p, 1, 8, 8, 8, 8), MG_ERR_INVALID_ARG); /* k 8: not of 16 */
    assert_null(p);
}

/* nChw16c (the fused network's layout on AVX-512 CPUs): every kind of forward plan, map sizes of whole
 * and partial tiles, several 16-channel blocks in and out (so that an 8-channel half read from the
 * wrong half or block shows), the epilogue, one and two threads, both ways a run is split. */
static void block16_cases(void) {
    const int sizes[][2] = {{8, 8}, {9, 13}, {7, 7}, {14, 14}, {3, 6}};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        const int h = sizes[i][0], w = sizes[i][1];
        run_case_blk16(4, 1, 2, 32, 48, h, w, (int)i % 2, (int)i % 2, 1); /* k 48: a pair of blocks and one */
        run_case_blk16(2, 1, 1, 48, 32, h, w, 1, 1, 2);
        run_case_blk16(4, 2, 2, 32, 48, h, w, (int)(i + 1) % 2, 1, 1 + (int)i % 2);
    }
    run_case_blk16(4, 1, 4, 64, 64, 28, 28, 1, 1, 2); /* many tiles: chunks of tiles per thread */
    run_case_blk16(4, 2, 1, 64, 32, 56, 56, 1, 1, 2);
    run_case_blk16(4, 1, 1, 32, 80, 5, 7, 1, 1, 2); /* few tiles, five output blocks: each phase shared */
    run_case_blk16(2, 1, 1, 16, 112, 4, 4, 0, 1, 2);
}

static void test_block16(void **state) {
    (void)state;
    if (skip_without_avx2()) return;
    each_width(block16_cases);
    /* the block must divide both channel counts; backward-weights plans take none */
    float *wt = mg_test_rand_buf(&g_rng, (size_t)32 * 24 * 9), *bias = mg_test_rand_buf(&g_rng, 32);
    mg_wino4 *p;
    mg_assert_ok(mg_wino4_init(&p, 1, 24, 32, 8, 8, wt, bias));
    assert_int_equal(mg_wino4_set_block(p, 16), MG_ERR_INVALID_ARG);
    assert_int_equal(mg_wino4_set_block(p, 4), MG_ERR_INVALID_ARG);
    mg_assert_ok(mg_wino4_set_block(p, 8));
    mg_wino4_free(p);
    mg_assert_ok(mg_wino4_init_bwd_weights(&p, 1, 32, 32, 8, 8));
    assert_int_equal(mg_wino4_set_block(p, 16), MG_ERR_INVALID_ARG); /* backward weights: nChw8c only */
    mg_wino4_free(p);
    free(wt), free(bias);
}

static void test_bad_args(void **state) {
    (void)state;
    float wt[16 * 8 * 9] = {0}, bias[16] = {0};
    mg_wino4 *p = (mg_wino4 *)&p;
    assert_int_equal(mg_wino4_init(&p, 1, 12, 16, 8, 8, wt, bias), MG_ERR_INVALID_ARG); /* c not a multiple of 8 */
    assert_null(p);
    assert_int_equal(mg_wino4_init(&p, 1, 8, 24, 8, 8, wt, bias), MG_ERR_INVALID_ARG); /* k not of 16 */
    assert_int_equal(mg_wino4_init(&p, 0, 8, 16, 8, 8, wt, bias), MG_ERR_INVALID_ARG);
    assert_int_equal(mg_wino4_init(&p, 1, 8, 16, 8, 8, NULL, bias), MG_ERR_INVALID_ARG);
    assert_int_equal(mg_wino4_init_tile(&p, 3, 1, 8, 16, 8, 8, wt, bias), MG_ERR_INVALID_ARG); /* tile 2 or 4 */
    assert_null(p);
    assert_int_equal(mg_wino4_init_like(&p, NULL, 1, 8, 8), MG_ERR_INVALID_ARG);
    mg_wino4 *bwd;
    mg_assert_ok(mg_wino4_init_bwd_data(&bwd, 1, 16, 8, 8, 8));
    assert_int_equal(mg_wino4_init_like(&p, bwd, 1, 8, 8), MG_ERR_INVALID_ARG); /* its weights are per call */
    assert_null(p);
    mg_wino4_free(bwd);
    assert_false(mg_wino4_shape_ok(8, 8));
    assert_true(mg_wino4_shape_ok(8, 16));
    mg_wino4_free(NULL);
}

int main(void) {
    if (skip_without_avx2()) return 77;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_map_sizes),       cmocka_unit_test(test_epilogue), cmocka_unit_test(test_threads_and_splits),
        cmocka_unit_test(test_init_like),       cmocka_unit_test(test_backward_data), cmocka_unit_test(test_backward_weights),
        cmocka_unit_test(test_forward_scratch), cmocka_unit_test(test_tile2), cmocka_unit_test(test_passes),
        cmocka_unit_test(test_inference_tile),
        cmocka_unit_test(test_saving),
        cmocka_unit_test(test_stride2),
        cmocka_unit_test(test_s2_saving),
        cmocka_unit_test(test_block16),
        cmocka_unit_test(test_bad_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
