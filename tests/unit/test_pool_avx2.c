/* test_pool_avx2.c: our max pooling for AVX2 on nChw8c and nChw16c activations
 * (src/ops/cpu/pool_avx2.c) against the maximum over each window taken here with plain loops on the
 * same data: ResNet's 3x3 stride-2 window with padding 1 on even, odd and non-square maps, windows
 * without padding, stride 1, a 5x5 window with stride 3 (PyTorch's floor mode leaving right padding
 * unused), 2x2 and 1x1 windows, batch > 1 and several channel blocks of 8 and of 16, one and two
 * threads, negative inputs (so that a padding read as 0 would show), and the shapes the kernel
 * refuses. A maximum does not round: equality is exact. Skips without AVX2. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mg_test.h"
#include "ops/cpu/pool_avx2.h"

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;

typedef struct shape {
    int n, c, h, w, r, stride, pad;
} shape;

/* Float index of [n][ch][y][x] of an n x c x h x w map in channel blocks of blk. */
static size_t at(int blk, int c, int h, int w, int n, int ch, int y, int x) {
    return (((size_t)n * (c / blk) + ch / blk) * h * w + (size_t)y * w + x) * blk + ch % blk;
}

static void run_case(shape s, int blk, int threads) {
    const int p = (s.h + 2 * s.pad - s.r) / s.stride + 1, q = (s.w + 2 * s.pad - s.r) / s.stride + 1;
    const size_t nx = (size_t)s.n * s.c * s.h * s.w, ny = (size_t)s.n * s.c * p * q;
    float *x = mg_test_rand_buf(&g_rng, nx), *y = malloc(ny * sizeof *y);
    assert_non_null(y);
    for (size_t i = 0; i < nx; i++) x[i] -= 2.0f; /* all negative: a padding read as 0 would win */
    for (size_t i = 0; i < ny; i++) y[i] = NAN;
    mg_maxpool8_forward(x, y, s.n, s.c, s.h, s.w, s.r, s.stride, s.pad, blk, threads);
    size_t bad = 0;
    for (int in = 0; in < s.n; in++)
        for (int ch = 0; ch < s.c; ch++)
            for (int oy = 0; oy < p; oy++)
                for (int ox = 0; ox < q; ox++) {
                    float m = -INFINITY;
                    for (int a = 0; a < s.r; a++)
                        for (int b = 0; b < s.r; b++) {
                            int iy = oy * s.stride - s.pad + a, ix = ox * s.stride - s.pad + b;
                            if (iy < 0 || iy >= s.h || ix < 0 || ix >= s.w) continue;
                            float v = x[at(blk, s.c, s.h, s.w, in, ch, iy, ix)];
                            if (v > m) m = v;
                        }
                    float got = y[at(blk, s.c, p, q, in, ch, oy, ox)];
                    if (got != m && bad++ < 3)
                        fprintf(stderr, "n%d c%d %dx%d r%d stride %d pad %d block %d threads %d: [%d][%d][%d][%d] "
                                        "%g, want %g\n",
                                s.n, s.c, s.h, s.w, s.r, s.stride, s.pad, blk, threads, in, ch, oy, ox, got, m);
                }
    assert_int_equal(bad, 0);
    free(x), free(y);
}

static void test_shapes(void **state) {
    (void)state;
    const shape shapes[] = {
        {1, 8, 112, 112, 3, 2, 1}, /* ResNet's, 112x112 -> 56x56 */
        {2, 16, 23, 19, 3, 2, 1},  /* odd sizes: the last window ends at the map's edge */
        {1, 24, 12, 10, 3, 2, 1},  /* even sizes: the last window overhangs by one column */
        {2, 8, 9, 14, 3, 2, 0},    /* no padding */
        {1, 16, 7, 7, 3, 1, 1},    /* stride 1 */
        {1, 8, 11, 13, 5, 3, 2},   /* 5x5 stride 3: floor mode leaves right padding unused */
        {2, 8, 8, 6, 2, 2, 0},     /* 2x2 */
        {1, 8, 5, 3, 1, 1, 0},     /* 1x1: a copy */
        {1, 8, 3, 3, 3, 2, 1},     /* every window clipped */
        {3, 32, 30, 30, 3, 2, 1},  /* enough rows (3 x 4 x 15) for the threads to split */
        {1, 64, 56, 56, 3, 2, 1},  /* ResNet's channels */
        {2, 48, 13, 11, 3, 2, 1},  /* an odd number of 16-channel blocks */
    };
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
        for (int blk = 8; blk <= 16; blk += 8) {
            const shape s = shapes[i];
            if (s.c % blk) {
                assert_false(mg_maxpool8_fits(s.n, s.c, s.h, s.w, s.r, s.stride, s.pad, blk));
                continue;
            }
            assert_true(mg_maxpool8_fits(s.n, s.c, s.h, s.w, s.r, s.stride, s.pad, blk));
            run_case(s, blk, 1);
            run_case(s, blk, 2);
        }
}

static void test_refused(void **state) {
    (void)state;
    assert_false(mg_maxpool8_fits(1, 12, 8, 8, 3, 2, 1, 8));   /* channels not a multiple of 8 */
    assert_false(mg_maxpool8_fits(1, 24, 8, 8, 3, 2, 1, 16));  /* channels not a multiple of 16 */
    assert_false(mg_maxpool8_fits(1, 32, 8, 8, 3, 2, 1, 4));   /* a block other than 8 and 16 */
    assert_false(mg_maxpool8_fits(1, 8, 8, 8, 3, 2, 2, 8));    /* 2 pad > r: an all-padding window */
    assert_false(mg_maxpool8_fits(1, 8, 2, 8, 5, 1, 1, 8));    /* the window does not fit the padded map */
    assert_false(mg_maxpool8_fits(0, 8, 8, 8, 3, 2, 1, 8));    /* no image */
    assert_false(mg_maxpool8_fits(1, 8, 8, 8, 0, 1, 0, 8));    /* no window */
    assert_false(mg_maxpool8_fits(1, 8, 4, 4096, 3, 2, 1, 8)); /* wider than the kernel's row buffer */
}

int main(void) {
    if (!mg_maxpool8_fits(1, 8, 4, 4, 3, 2, 1, 8)) {
        printf("SKIPPED: no AVX2 on this CPU\n");
        return MG_TEST_SKIP;
    }
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_shapes), cmocka_unit_test(test_refused)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
