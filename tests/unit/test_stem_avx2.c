/* test_stem_avx2.c: our stem kernel (src/ops/cpu/stem_avx2.c) against a convolution summed in double
 * and a max pooling written here with plain loops (plain NCHW images in, blocked activations out): 1 to
 * 4 input channels, 1x1 to 11x11 kernels, strides 1 to 3, padding, square and non-square maps, batch >
 * 1, 1 to 6 positions per register block, 16 to 128 output channels (register blocks of 64, 32, 16),
 * with and without ReLU, pooling windows with and without padding, one and two threads, a plan sharing
 * another's weights, on nChw8c (AVX2+FMA) and nChw16c (AVX-512F; skipped without it), and bad
 * arguments. Skips without AVX2+FMA. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mg_test.h"
#include "ops/cpu/stem_avx2.h"

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;

typedef struct shape {
    int n, c, k, h, w, r, stride, pad;
    int relu;
    int pr, ps, pp; /* max pooling window, stride, padding (pr 0: none) */
    int blk;
} shape;

static int conv_h(const shape *s) { return (s->h + 2 * s->pad - s->r) / s->stride + 1; }
static int conv_w(const shape *s) { return (s->w + 2 * s->pad - s->r) / s->stride + 1; }

/* The convolution (plain n x k x p x q, in double) of plain NCHW x, and per output the sum of the
 * absolute values of its terms (for the error bound). */
static void ref_conv(const shape *s, const float *x, const float *wt, const float *bias, double *y, double *mag) {
    const int p = conv_h(s), q = conv_w(s), c = s->c, r = s->r;
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
                                           x[(((size_t)in * c + i) * s->h + iy) * s->w + ix];
                                acc += t;
                                m += fabs(t);
                            }
                    if (s->relu && acc < 0) acc = 0;
                    size_t at = (((size_t)in * s->k + o) * p + yy) * q + xx;
                    y[at] = acc;
                    mag[at] = m;
                }
}

/* Each convolution output is a float sum of nterms products (each rounded once by the FMA) and the
 * bias: |error| <= nterms * 2^-24 * (sum of |terms|), whatever the order. A maximum does not round, so
 * a pooled output is within the bound of the convolution output it picked, and the largest of its
 * window's bounds covers whichever one the float maximum picked. A wrong weight, input index, tap,
 * padding or window is off by the size of a term. */
static void check(const shape *s, const float *got, const double *conv, const double *mag) {
    const int B = s->blk, p = conv_h(s), q = conv_w(s), nterms = s->c * s->r * s->r + 2;
    const int oh = s->pr ? (p + 2 * s->pp - s->pr) / s->ps + 1 : p, ow = s->pr ? (q + 2 * s->pp - s->pr) / s->ps + 1 : q;
    char what[200];
    snprintf(what, sizeof what, "n%d c%d k%d %dx%d r%d stride %d pad %d relu %d pool %d/%d/%d blk %d", s->n, s->c, s->k,
             s->h, s->w, s->r, s->stride, s->pad, s->relu, s->pr, s->ps, s->pp, B);
    for (int in = 0; in < s->n; in++)
        for (int o = 0; o < s->k; o++)
            for (int i = 0; i < oh; i++)
                for (int j = 0; j < ow; j++) {
                    double want, bound;
                    const double *cv = conv + ((size_t)in * s->k + o) * p * q, *mg = mag + ((size_t)in * s->k + o) * p * q;
                    if (!s->pr) {
                        want = cv[(size_t)i * q + j];
                        bound = mg[(size_t)i * q + j];
                    } else {
                        want = -INFINITY, bound = 0;
                        for (int a = 0; a < s->pr; a++)
                            for (int b = 0; b < s->pr; b++) {
                                int yy = i * s->ps - s->pp + a, xx = j * s->ps - s->pp + b;
                                if (yy < 0 || yy >= p || xx < 0 || xx >= q) continue;
                                want = fmax(want, cv[(size_t)yy * q + xx]);
                                bound = fmax(bound, mg[(size_t)yy * q + xx]);
                            }
                    }
                    bound *= nterms * ldexp(1.0, -24);
                    float g = got[(((size_t)in * (s->k / B) + o / B) * oh * ow + (size_t)i * ow + j) * B + o % B];
                    if (!(fabs(g - want) <= bound)) {
                        fprintf(stderr, "%s: image %d channel %d at (%d, %d) got %.9g, want %.9g (bound %.3g)\n", what,
                                in, o, i, j, g, want, bound);
                        fail();
                    }
                }
}

static int have_block(int blk) { return mg_stem_fits(blk, 1, 16, 4, 4, 3, 1, 1); }

static void run_case(shape s, int threads) {
    if (!have_block(s.blk)) return;
    const int p = conv_h(&s), q = conv_w(&s);
    size_t nx = (size_t)s.n * s.c * s.h * s.w, nc = (size_t)s.n * s.k * p * q;
    float *x = mg_test_rand_buf(&g_rng, nx), *wt = mg_test_rand_buf(&g_rng, (size_t)s.k * s.c * s.r * s.r);
    float *bias = mg_test_rand_buf(&g_rng, s.k);
    double *conv = malloc(nc * sizeof *conv), *mag = malloc(nc * sizeof *mag);
    ref_conv(&s, x, wt, bias, conv, mag);
    mg_stem *plan;
    mg_assert_ok(mg_stem_init(&plan, s.blk, s.c, s.k, s.h, s.w, s.r, s.stride, s.pad, wt, bias, s.relu));
    assert_int_equal(mg_stem_block(plan), s.blk);
    assert_true(mg_stem_matches(plan, s.c, s.k, s.r, s.stride, s.pad));
    if (s.pr) mg_assert_ok(mg_stem_set_pool(plan, s.pr, s.ps, s.pp));
    int oh, ow, ch, cw;
    mg_stem_out_dims(plan, &oh, &ow, &ch, &cw);
    assert_int_equal(ch, p);
    assert_int_equal(cw, q);
    if (s.pr) {
        assert_int_equal(oh, (p + 2 * s.pp - s.pr) / s.ps + 1);
        assert_int_equal(ow, (q + 2 * s.pp - s.pr) / s.ps + 1);
    } else {
        assert_int_equal(oh, p);
        assert_int_equal(ow, q);
    }
    const size_t sb = mg_stem_scratch_bytes(plan, threads), ny = (size_t)s.n * s.k * oh * ow;
    void *scratch = NULL;
    assert_int_equal(posix_memalign(&scratch, 64, sb + 64), 0);
    float *y = malloc(ny * sizeof *y);
    for (int rep = 0; rep < 2; rep++) { /* twice: nothing may depend on what the scratch or y held */
        memset(scratch, rep ? 0x7f : 0xff, sb + 64); /* NaN, then huge values */
        memset(y, rep ? 0xff : 0x7f, ny * sizeof *y);
        mg_stem_forward(plan, x, y, s.n, scratch, threads);
        check(&s, y, conv, mag);
    }
    /* a plan sharing its weights, for another image size (no pooling unless set) */
    mg_stem *like;
    const int h2 = s.h + 3, w2 = s.w + 1;
    mg_assert_ok(mg_stem_init_like(&like, plan, h2, w2));
    mg_stem_free(plan); /* the shared weights stay with the other plan */
    shape s2 = s;
    s2.h = h2, s2.w = w2, s2.pr = 0, s2.n = 1;
    const int p2 = conv_h(&s2), q2 = conv_w(&s2);
    float *x2 = mg_test_rand_buf(&g_rng, (size_t)s.c * h2 * w2), *y2 = malloc((size_t)s.k * p2 * q2 * sizeof *y2);
    double *conv2 = malloc((size_t)s.k * p2 * q2 * sizeof *conv2), *mag2 = malloc((size_t)s.k * p2 * q2 * sizeof *mag2);
    ref_conv(&s2, x2, wt, bias, conv2, mag2);
    free(scratch);
    assert_int_equal(posix_memalign(&scratch, 64, mg_stem_scratch_bytes(like, threads) + 64), 0);
    mg_stem_forward(like, x2, y2, 1, scratch, threads);
    check(&s2, y2, conv2, mag2);
    mg_stem_free(like);
    free(scratch), free(x), free(wt), free(bias), free(conv), free(mag), free(y);
    free(x2), free(y2), free(conv2), free(mag2);
}

static const int blocks[2] = {8, 16};

/* ResNet's stem (7x7 stride 2, pad 3, 3 -> 64, ReLU, pooling 3x3 stride 2 pad 1), on an odd and an
 * even map, with and without the pooling, one and two threads. */
static void test_resnet_stem(void **state) {
    (void)state;
    for (int b = 0; b < 2; b++)
        for (int t = 1; t <= 2; t++) {
            run_case((shape){1, 3, 64, 32, 32, 7, 2, 3, 1, 3, 2, 1, blocks[b]}, t);
            run_case((shape){2, 3, 64, 29, 23, 7, 2, 3, 1, 3, 2, 1, blocks[b]}, t);
            run_case((shape){1, 3, 64, 30, 21, 7, 2, 3, 1, 0, 0, 0, blocks[b]}, t);
        }
}

/* Other convolutions: 1 to 4 channels, kernels of 1 to 11, strides 1 to 3, no padding, no ReLU;
 * output channels 16 to 128 (register blocks of 16, 32 and 64 on nChw16c; 48 = 3 x 16). */
static void test_other_shapes(void **state) {
    (void)state;
    for (int b = 0; b < 2; b++) {
        const int B = blocks[b];
        run_case((shape){1, 1, 16, 9, 11, 3, 1, 1, 0, 0, 0, 0, B}, 1);
        run_case((shape){2, 2, 32, 12, 10, 5, 3, 2, 1, 0, 0, 0, B}, 2);
        run_case((shape){1, 4, 48, 13, 13, 1, 1, 0, 0, 0, 0, 0, B}, 1);
        run_case((shape){1, 3, 128, 15, 14, 11, 2, 5, 1, 0, 0, 0, B}, 2);
        run_case((shape){1, 3, 80, 10, 10, 4, 2, 0, 0, 0, 0, 0, B}, 1);
    }
}

/* Positions per register block: rows of 1 to 6 output positions, 7 and 13 (blocks of 3-4 and 6-7). */
static void test_register_blocks(void **state) {
    (void)state;
    for (int b = 0; b < 2; b++)
        for (int w = 1; w <= 7; w++) run_case((shape){1, 2, 64, 3, w, 1, 1, 0, 1, 0, 0, 0, blocks[b]}, 1);
    for (int b = 0; b < 2; b++) run_case((shape){1, 2, 64, 3, 13, 1, 1, 0, 1, 0, 0, 0, blocks[b]}, 1);
}

/* Pooling windows: 2x2 stride 2 without padding, 3x3 stride 1 pad 1 (windows overlapping by two
 * rows), 5x5 stride 3 pad 2, 1x1 stride 2 (rows skipped), a window as large as the map; on more rows
 * than threads and fewer (two threads, 1 and 2 pooled rows). */
static void test_pooling(void **state) {
    (void)state;
    for (int b = 0; b < 2; b++)
        for (int t = 1; t <= 2; t++) {
            const int B = blocks[b];
            run_case((shape){1, 3, 32, 20, 18, 3, 1, 1, 1, 2, 2, 0, B}, t);
            run_case((shape){2, 3, 16, 17, 16, 3, 2, 1, 0, 3, 1, 1, B}, t);
            run_case((shape){1, 3, 32, 24, 24, 3, 1, 1, 1, 5, 3, 2, B}, t);
            run_case((shape){1, 3, 16, 12, 12, 3, 1, 1, 1, 1, 2, 0, B}, t);
            run_case((shape){1, 1, 16, 5, 5, 3, 1, 1, 0, 5, 1, 0, B}, t);
            run_case((shape){1, 1, 16, 7, 6, 3, 1, 1, 1, 3, 3, 1, B}, t);
        }
}

static void test_bad_args(void **state) {
    (void)state;
    const int B = have_block(16) ? 16 : 8;
    float w[16 * 5 * 9] = {0};
    mg_stem *p = NULL;
    assert_false(mg_stem_fits(B, 5, 16, 8, 8, 3, 1, 1));  /* more channels than MG_STEM_MAX_C */
    assert_false(mg_stem_fits(B, 3, 24, 8, 8, 3, 1, 1));  /* k not a multiple of 16 */
    assert_false(mg_stem_fits(B, 3, 16, 8, 8, 13, 1, 6)); /* kernel larger than MG_STEM_MAX_R */
    assert_false(mg_stem_fits(B, 3, 16, 8, 8, 3, 1, 3));  /* pad >= r */
    assert_false(mg_stem_fits(B, 3, 16, 2, 2, 7, 1, 2));  /* kernel larger than the padded map */
    assert_false(mg_stem_fits(4, 3, 16, 8, 8, 3, 1, 1));  /* no such block */
    assert_int_equal(mg_stem_init(&p, B, 5, 16, 8, 8, 3, 1, 1, w, NULL, 1), MG_ERR_INVALID_ARG);
    assert_null(p);
    assert_non_null(strstr(mg_error_message(), "c=5"));
    assert_int_equal(mg_stem_init(&p, B, 3, 16, 8, 8, 3, 1, 1, NULL, NULL, 1), MG_ERR_INVALID_ARG);
    assert_int_equal(mg_stem_init_like(&p, NULL, 8, 8), MG_ERR_INVALID_ARG);
    mg_assert_ok(mg_stem_init(&p, B, 3, 16, 8, 8, 3, 1, 1, w, NULL, 1)); /* bias NULL: zeros */
    assert_false(mg_stem_pool_fits(p, 3, 2, 2));  /* 2 pad > r */
    assert_false(mg_stem_pool_fits(p, 11, 1, 0)); /* window larger than the map */
    assert_int_equal(mg_stem_set_pool(p, 3, 0, 1), MG_ERR_INVALID_ARG);
    assert_non_null(strstr(mg_error_message(), "max pooling r=3 stride=0"));
    mg_stem_free(p);
    mg_stem_free(NULL);
}

int main(void) {
    if (!have_block(8)) {
        fprintf(stderr, "test_stem_avx2: no AVX2+FMA on this CPU, skipped\n");
        return 77;
    }
    if (!have_block(16)) fprintf(stderr, "test_stem_avx2: no AVX-512F on this CPU, nChw16c cases skipped\n");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resnet_stem), cmocka_unit_test(test_other_shapes),
        cmocka_unit_test(test_register_blocks), cmocka_unit_test(test_pooling), cmocka_unit_test(test_bad_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
