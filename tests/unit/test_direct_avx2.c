/* test_direct_avx2.c: our direct convolution kernels (src/ops/cpu/direct_avx2.c) against a
 * convolution summed in double (plain loops here, on the same blocked data): on nChw8c (AVX2) 1x1 and
 * 3x3 kernels at strides 1 and 2, square, odd and non-square maps, batch > 1, 1 to 6 positions per
 * register block, bias with and without the residual sum and ReLU, the reduction in several chunks
 * (the last one partial), one and two threads, a plan sharing another's weights, the fused network's
 * rule and bad arguments; on nChw16c (AVX-512F, skipped without it) the same kinds of cases with
 * register blocks of 64, 32 and 16 output channels. Skips without AVX2+FMA. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mg_test.h"
#include "ops/cpu/direct_avx2.h"

static uint64_t g_rng = 0x2545F4914F6CDD1Dull;

typedef struct shape {
    int n, c, k, h, w, r, stride, pad;
    int blk; /* the activations' channel block: 8 (0 means 8) or 16 */
} shape;

static int blk_of(const shape *s) { return s->blk ? s->blk : 8; }

static int out_h(const shape *s) { return (s->h + 2 * s->pad - s->r) / s->stride + 1; }
static int out_w(const shape *s) { return (s->w + 2 * s->pad - s->r) / s->stride + 1; }

/* y (nChw8c, or nChw16c for blk 16) = conv(x) + bias (+ res, relu) in double, and per output the sum of
 * the absolute values of everything summed into it (for the error bound in check). */
static void ref_conv(const shape *s, const float *x, const float *wt, const float *bias, const float *res, int relu,
                     double *y, double *mag) {
    const int p = out_h(s), q = out_w(s), c = s->c, r = s->r, B = blk_of(s);
    for (int in = 0; in < s->n; in++)
        for (int o = 0; o < s->k; o++)
            for (int yy = 0; yy < p; yy++)
                for (int xx = 0; xx < q; xx++) {
                    double acc = bias[o], m = fabs(bias[o]);
                    for (int i = 0; i < c; i++)
                        for (int a = 0; a < r; a++)
                            for (int b = 0; b < r; b++) {
                                int iy = yy * s->stride + a - s->pad, ix = xx * s->stride + b - s->pad;
                                if (iy < 0 || iy >= s->h || ix < 0 || ix >= s->w) continue;
                                double t = (double)wt[((size_t)o * c + i) * r * r + a * r + b] *
                                           x[(((size_t)in * (c / B) + i / B) * s->h * s->w + (size_t)iy * s->w + ix) *
                                                 B +
                                             i % B];
                                acc += t;
                                m += fabs(t);
                            }
                    size_t at = (((size_t)in * (s->k / B) + o / B) * p * q + (size_t)yy * q + xx) * B + o % B;
                    if (res) acc += res[at], m += fabs(res[at]);
                    if (relu && acc < 0) acc = 0;
                    y[at] = acc;
                    mag[at] = m;
                }
}

/* Each output is a float sum of nterms products (each rounded once by the FMA) and values: the
 * classic bound for recursive summation, |error| <= nterms * 2^-24 * (sum of |terms|), holds
 * whatever the order. A wrong weight, input index, tap or padding is off by the size of a term. */
static void check(const char *what, const float *got, const double *want, const double *mag, size_t count,
                  int nterms) {
    for (size_t i = 0; i < count; i++) {
        double bound = (nterms + 2) * ldexp(1.0, -24) * mag[i];
        if (!(fabs(got[i] - want[i]) <= bound)) {
            fprintf(stderr, "%s: at %zu got %.9g, want %.9g (bound %.3g)\n", what, i, got[i], want[i], bound);
            fail();
        }
    }
}

static void run_case(shape s, int sum, int relu, int threads) {
    const int p = out_h(&s), q = out_w(&s);
    size_t nx = (size_t)s.n * s.c * s.h * s.w, ny = (size_t)s.n * s.k * p * q;
    float *x = mg_test_rand_buf(&g_rng, nx), *wt = mg_test_rand_buf(&g_rng, (size_t)s.k * s.c * s.r * s.r);
    float *bias = mg_test_rand_buf(&g_rng, s.k), *res = mg_test_rand_buf(&g_rng, ny);
    double *want = malloc(ny * sizeof *want), *mag = malloc(ny * sizeof *mag);
    ref_conv(&s, x, wt, bias, sum ? res : NULL, relu, want, mag);
    mg_dconv *plan;
    mg_assert_ok(mg_dconv_init_block(&plan, blk_of(&s), s.n, s.c, s.k, s.h, s.w, s.r, s.stride, s.pad, wt, bias));
    assert_int_equal(mg_dconv_block(plan), blk_of(&s));
    void *scratch = NULL;
    assert_int_equal(posix_memalign(&scratch, 64, mg_dconv_scratch_bytes(plan) + 64), 0);
    float *y = malloc(ny * sizeof *y);
    for (int rep = 0; rep < 2; rep++) { /* twice: nothing may depend on what the scratch held */
        memset(scratch, rep ? 0x7f : 0xff, mg_dconv_scratch_bytes(plan) + 64); /* NaN, then huge values */
        memcpy(y, res, ny * sizeof *y);
        mg_dconv_forward(plan, x, y, sum, relu, scratch, threads);
        char what[160];
        snprintf(what, sizeof what, "n%d c%d k%d %dx%d r%d stride %d pad %d blk %d sum %d relu %d threads %d", s.n, s.c,
                 s.k, s.h, s.w, s.r, s.stride, s.pad, blk_of(&s), sum, relu, threads);
        check(what, y, want, mag, ny, s.c * s.r * s.r + 2);
    }
    mg_dconv_free(plan);
    free(scratch), free(x), free(wt), free(bias), free(res), free(want), free(mag), free(y);
}

static int skip_without_avx2(void) {
    if (mg_dconv_fits(1, 8, 16, 4, 4, 3, 1, 1)) return 0;
    fprintf(stderr, "test_direct_avx2: no AVX2+FMA on this CPU, skipped\n");
    return 1;
}

/* 3x3 stride 2 (the fused network's use): even and odd maps (output 7x7 and 8x8), non-square ones,
 * a map of one output position. */
static void test_stride2_3x3(void **state) {
    (void)state;
    const int sizes[][2] = {{14, 14}, {15, 15}, {9, 13}, {13, 6}, {2, 2}, {1, 1}};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
        run_case((shape){2, 16, 32, sizes[i][0], sizes[i][1], 3, 2, 1, 8}, 0, 1, 1);
}

/* The other shapes the kernel takes: 3x3 stride 1, 1x1 at strides 1 and 2, no padding on a 3x3. */
static void test_other_shapes(void **state) {
    (void)state;
    run_case((shape){1, 24, 16, 7, 7, 3, 1, 1, 8}, 0, 0, 1);
    run_case((shape){2, 16, 16, 5, 9, 3, 1, 1, 8}, 0, 1, 1);
    run_case((shape){2, 16, 32, 7, 7, 1, 1, 0, 8}, 0, 0, 1);
    run_case((shape){1, 8, 48, 15, 15, 1, 2, 0, 8}, 0, 1, 1);
    run_case((shape){1, 16, 16, 9, 8, 3, 1, 0, 8}, 0, 0, 1);
    run_case((shape){1, 16, 16, 10, 10, 3, 2, 0, 8}, 0, 0, 1);
}

/* Positions per register block: 1 to 6, from maps of 1 to 6 output positions, and 49 (blocks of 5 and
 * 6), 64 and 11 (blocks of 5 and 6 at the end). */
static void test_register_blocks(void **state) {
    (void)state;
    for (int w = 1; w <= 6; w++) run_case((shape){1, 8, 16, 1, w, 1, 1, 0, 8}, 1, 0, 1);
    run_case((shape){1, 8, 16, 7, 7, 1, 1, 0, 8}, 0, 0, 1);
    run_case((shape){1, 8, 16, 8, 8, 1, 1, 0, 8}, 0, 0, 1);
    run_case((shape){1, 8, 16, 1, 11, 1, 1, 0, 8}, 0, 0, 1);
}

static void test_epilogue(void **state) {
    (void)state;
    run_case((shape){1, 8, 32, 11, 10, 3, 2, 1, 8}, 1, 0, 1);
    run_case((shape){1, 24, 16, 12, 12, 3, 2, 1, 8}, 1, 1, 1);
    run_case((shape){3, 32, 48, 7, 9, 3, 2, 1, 8}, 0, 0, 1);
}

/* The reduction in chunks of input channels (direct_avx2.c, CHUNK_BYTES): two 30x30 maps padded to
 * 32x32 are 64 KiB per block of 8 channels, so 3 blocks per chunk; 40 channels are chunks of 3 and 2
 * blocks, 64 of 3, 3 and 2. With and without the sum and ReLU (ReLU only after the last chunk), on
 * one and two threads (48 output channels: 3 blocks of 16 split 1 + 2). */
static void test_chunks_and_threads(void **state) {
    (void)state;
    for (int t = 1; t <= 2; t++) {
        run_case((shape){2, 40, 48, 30, 30, 3, 2, 1, 8}, 1, 1, t);
        run_case((shape){2, 64, 32, 30, 30, 3, 1, 1, 8}, 0, 1, t);
        run_case((shape){1, 64, 64, 14, 14, 3, 2, 1, 8}, 1, 0, t);
    }
}

/* A plan for another batch and map size sharing the first plan's packed weights (and its channel
 * block), run on two threads against the reference. */
static void run_init_like(int blk, int c, int k) {
    float *wt = mg_test_rand_buf(&g_rng, (size_t)k * c * 9), *bias = mg_test_rand_buf(&g_rng, k);
    mg_dconv *a, *b;
    mg_assert_ok(mg_dconv_init_block(&a, blk, 1, c, k, 14, 14, 3, 2, 1, wt, bias));
    mg_assert_ok(mg_dconv_init_like(&b, a, 3, 9, 11));
    assert_true(mg_dconv_matches(b, c, k, 3, 2, 1));
    assert_false(mg_dconv_matches(b, c, k, 3, 1, 1));
    assert_int_equal(mg_dconv_weight_bytes(a), mg_dconv_weight_bytes(b));
    assert_int_equal(mg_dconv_block(b), blk);
    mg_dconv_free(a); /* b keeps the weights */
    shape s = {3, c, k, 9, 11, 3, 2, 1, blk};
    const int p = out_h(&s), q = out_w(&s);
    size_t nx = (size_t)s.n * c * s.h * s.w, ny = (size_t)s.n * k * p * q;
    float *x = mg_test_rand_buf(&g_rng, nx), *y = malloc(ny * sizeof *y);
    double *want = malloc(ny * sizeof *want), *mag = malloc(ny * sizeof *mag);
    ref_conv(&s, x, wt, bias, NULL, 1, want, mag);
    void *scratch = NULL;
    assert_int_equal(posix_memalign(&scratch, 64, mg_dconv_scratch_bytes(b) + 64), 0);
    mg_dconv_forward(b, x, y, 0, 1, scratch, 2);
    check(blk == 8 ? "init_like" : "init_like blk 16", y, want, mag, ny, c * 9 + 2);
    mg_dconv_free(b);
    free(scratch), free(x), free(y), free(want), free(mag), free(wt), free(bias);
}

static void test_init_like(void **state) {
    (void)state;
    run_init_like(8, 16, 32);
}

/* The rule the fused network follows (direct_avx2.h): 3x3 stride 2, at most 64 output positions per
 * image at any batch or 196 in all; off with MG_FNET_OWN_DIRECT=0. */
static void test_rule(void **state) {
    (void)state;
    assert_true(mg_dconv_preferred(1, 512, 512, 14, 14, 3, 2, 1));   /* 7x7 out */
    assert_true(mg_dconv_preferred(8, 512, 512, 14, 14, 3, 2, 1));   /* at any batch */
    assert_true(mg_dconv_preferred(1, 512, 512, 16, 16, 3, 2, 1));   /* 8x8 out */
    assert_true(mg_dconv_preferred(1, 512, 512, 17, 17, 3, 2, 1));   /* 9x9 out, 81 positions in all */
    assert_false(mg_dconv_preferred(4, 512, 512, 17, 17, 3, 2, 1));  /* 324 */
    assert_true(mg_dconv_preferred(1, 256, 256, 28, 28, 3, 2, 1));   /* 14x14 out, 196 */
    assert_false(mg_dconv_preferred(2, 256, 256, 28, 28, 3, 2, 1));  /* 392 */
    assert_false(mg_dconv_preferred(1, 128, 128, 56, 56, 3, 2, 1));  /* 784 */
    assert_false(mg_dconv_preferred(1, 512, 512, 7, 7, 3, 1, 1));
    assert_false(mg_dconv_preferred(1, 1024, 2048, 14, 14, 1, 2, 0));
    assert_false(mg_dconv_preferred(1, 12, 16, 14, 14, 3, 2, 1)); /* does not fit */
    setenv("MG_FNET_OWN_DIRECT", "0", 1);
    assert_false(mg_dconv_preferred(1, 512, 512, 14, 14, 3, 2, 1));
    unsetenv("MG_FNET_OWN_DIRECT");
}

/* nChw16c (16-wide kernels): register blocks of 64 output channels (k 64, 128), 32 (k 32, 96) and 16
 * (k 16, 48); 1 to 6 positions per block (maps of 1 to 6 positions, 49 in blocks of 5 and 6); 1x1
 * and 3x3 at strides 1 and 2 with and without padding; the sum, ReLU and both; batch 2 and 3; the
 * reduction in chunks (two 30x30 maps padded to 32x32 are 128 KiB per block of 16 channels, so one
 * block per chunk: 48 channels are 3 chunks); one and two threads (128 output channels: 2 blocks of
 * 64, one per thread; 96: 3 blocks of 32). */
static void test_block16(void **state) {
    (void)state;
    if (!mg_dconv_fits_block(16, 1, 16, 16, 4, 4, 3, 1, 1)) {
        fprintf(stderr, "test_direct_avx2: no AVX-512F on this CPU, nChw16c cases skipped\n");
        return;
    }
    for (int w = 1; w <= 6; w++) run_case((shape){1, 16, 64, 1, w, 1, 1, 0, 16}, 1, 0, 1);
    run_case((shape){1, 32, 64, 14, 14, 3, 2, 1, 16}, 0, 1, 1);  /* 7x7 out: blocks of 5 and 6 */
    run_case((shape){2, 16, 32, 15, 15, 3, 2, 1, 16}, 1, 1, 1);  /* 8x8 out, k 32 */
    run_case((shape){3, 16, 16, 9, 13, 3, 2, 1, 16}, 0, 0, 1);   /* k 16 */
    run_case((shape){1, 32, 48, 13, 6, 3, 2, 1, 16}, 1, 0, 1);   /* k 48: blocks of 16 */
    run_case((shape){1, 16, 96, 7, 7, 3, 1, 1, 16}, 0, 1, 1);    /* k 96: blocks of 32 */
    run_case((shape){2, 32, 64, 7, 7, 1, 1, 0, 16}, 1, 1, 1);
    run_case((shape){1, 16, 128, 15, 15, 1, 2, 0, 16}, 0, 1, 1);
    run_case((shape){1, 16, 64, 10, 10, 3, 2, 0, 16}, 0, 0, 1);
    run_case((shape){1, 16, 64, 2, 2, 3, 2, 1, 16}, 0, 1, 1);    /* one output position */
    for (int t = 1; t <= 2; t++) {
        run_case((shape){2, 48, 128, 30, 30, 3, 2, 1, 16}, 1, 1, t);
        run_case((shape){1, 64, 96, 14, 14, 3, 2, 1, 16}, 1, 0, t);
        run_case((shape){1, 32, 128, 7, 7, 1, 1, 0, 16}, 0, 1, t);
    }
    run_init_like(16, 32, 64);
    /* channels must be multiples of the block; the 3x3 rule is the same on both blocks, and on blocks
     * of 16 the 1x1 layers with 16 to 196 output positions in all are the kernel's too */
    assert_false(mg_dconv_fits_block(16, 1, 8, 16, 8, 8, 3, 1, 1));
    assert_false(mg_dconv_fits_block(16, 1, 16, 24, 8, 8, 3, 1, 1));
    assert_false(mg_dconv_fits_block(4, 1, 16, 16, 8, 8, 3, 1, 1));
    assert_true(mg_dconv_preferred_block(16, 1, 512, 512, 14, 14, 3, 2, 1));
    assert_true(mg_dconv_preferred_block(16, 8, 512, 512, 14, 14, 3, 2, 1));
    assert_false(mg_dconv_preferred_block(16, 2, 256, 256, 28, 28, 3, 2, 1));
    assert_true(mg_dconv_preferred_block(16, 1, 1024, 256, 14, 14, 1, 1, 0));  /* 196 positions */
    assert_true(mg_dconv_preferred_block(16, 4, 2048, 512, 7, 7, 1, 1, 0));    /* 196 */
    assert_true(mg_dconv_preferred_block(16, 1, 1024, 2048, 14, 14, 1, 2, 0)); /* 49 */
    assert_true(mg_dconv_preferred_block(16, 4, 1024, 2048, 14, 14, 1, 2, 0)); /* 196, 49 per image */
    assert_false(mg_dconv_preferred_block(16, 1, 512, 1024, 28, 28, 1, 2, 0)); /* stride 2, 196 per image */
    assert_true(mg_dconv_preferred_block(16, 1, 256, 1024, 4, 4, 1, 1, 0));    /* 16 */
    assert_false(mg_dconv_preferred_block(16, 2, 1024, 256, 14, 14, 1, 1, 0)); /* 392 */
    assert_false(mg_dconv_preferred_block(16, 1, 512, 2048, 2, 2, 1, 1, 0));   /* 4 */
    assert_false(mg_dconv_preferred_block(8, 1, 1024, 256, 14, 14, 1, 1, 0));  /* not on blocks of 8 */
    setenv("MG_FNET_OWN_DIRECT", "3", 1); /* the 3x3 layers only */
    assert_false(mg_dconv_preferred_block(16, 1, 1024, 256, 14, 14, 1, 1, 0));
    assert_true(mg_dconv_preferred_block(16, 1, 512, 512, 14, 14, 3, 2, 1));
    unsetenv("MG_FNET_OWN_DIRECT");
    assert_false(mg_dconv_preferred_block(16, 1, 24, 32, 14, 14, 3, 2, 1)); /* 24 channels: not blocks of 16 */
    float w0[32 * 24 * 9] = {0};
    mg_dconv *bad = (mg_dconv *)&bad;
    assert_int_equal(mg_dconv_init_block(&bad, 16, 1, 24, 32, 8, 8, 3, 1, 1, w0, NULL), MG_ERR_INVALID_ARG);
    assert_null(bad);
}

static void test_bad_args(void **state) {
    (void)state;
    float wt[16 * 8 * 9] = {0}, bias[16] = {0};
    mg_dconv *p = (mg_dconv *)&p;
    assert_int_equal(mg_dconv_init(&p, 1, 12, 16, 8, 8, 3, 1, 1, wt, bias), MG_ERR_INVALID_ARG); /* c */
    assert_null(p);
    assert_int_equal(mg_dconv_init(&p, 1, 8, 24, 8, 8, 3, 1, 1, wt, bias), MG_ERR_INVALID_ARG); /* k */
    assert_int_equal(mg_dconv_init(&p, 1, 8, 16, 8, 8, 5, 1, 2, wt, bias), MG_ERR_INVALID_ARG); /* r */
    assert_int_equal(mg_dconv_init(&p, 1, 8, 16, 8, 8, 3, 3, 1, wt, bias), MG_ERR_INVALID_ARG); /* stride */
    assert_int_equal(mg_dconv_init(&p, 1, 8, 16, 8, 8, 1, 1, 1, wt, bias), MG_ERR_INVALID_ARG); /* pad >= r */
    assert_int_equal(mg_dconv_init(&p, 0, 8, 16, 8, 8, 3, 1, 1, wt, bias), MG_ERR_INVALID_ARG); /* n */
    assert_int_equal(mg_dconv_init(&p, 1, 8, 16, 1, 1, 3, 1, 0, wt, bias), MG_ERR_INVALID_ARG); /* map */
    assert_int_equal(mg_dconv_init(&p, 1, 8, 16, 8, 8, 3, 1, 1, NULL, bias), MG_ERR_INVALID_ARG);
    assert_int_equal(mg_dconv_init_like(&p, NULL, 1, 8, 8), MG_ERR_INVALID_ARG);
    assert_null(p);
    mg_dconv_free(NULL);
}

int main(void) {
    if (skip_without_avx2()) return 77;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stride2_3x3), cmocka_unit_test(test_other_shapes), cmocka_unit_test(test_register_blocks),
        cmocka_unit_test(test_epilogue),    cmocka_unit_test(test_chunks_and_threads), cmocka_unit_test(test_init_like),
        cmocka_unit_test(test_rule),        cmocka_unit_test(test_block16),           cmocka_unit_test(test_bad_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
