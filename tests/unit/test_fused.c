/* test_fused.c: the fused inference network (ops_fused.h) against the reference ops: convolutions
 * with bias, ReLU and a residual sum, strided and padded, 1x1/3x3/7x7, max pooling with odd sizes
 * (PyTorch's floor mode), chains that reuse buffers (liveness planning), Winograd on and off; and
 * the API contract (a consumed residual cannot be read again, bad shapes, bad output). Skips when
 * the build has no oneDNN. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mg_test.h"
#include "multigrain/ops.h"
#include "multigrain/ops_fused.h"
#include "ops/cpu/wino_avx2.h"

static uint64_t g_rng = 0x243F6A8885A308D3ull;

/* reference: y = relu?(conv(x, w) + b (+ res)), through the reference conv2d backend */
static float *ref_conv(const float *x, int n, int c, int h, int w, const float *wt, const float *b, int k, int r,
                       int stride, int pad, const float *res, int relu, int *oh, int *ow) {
    mg_conv2d_desc d = {.n = n, .c = c, .h = h, .w = w, .k = k, .r = r, .s = r, .stride_h = stride,
                        .stride_w = stride, .pad_h = pad, .pad_w = pad, .dil_h = 1, .dil_w = 1, .groups = 1,
                        .has_bias = 1};
    mg_conv2d_plan plan;
    mg_assert_ok(mg_conv2d_plan_init_ex(&plan, &d, MG_CONV2D_REFERENCE, MG_CONV2D_LAYOUT_AUTO));
    *oh = plan.p;
    *ow = plan.q;
    size_t ny = (size_t)n * k * plan.p * plan.q;
    float *y = malloc(ny * sizeof *y);
    mg_assert_ok(mg_conv2d_forward(&plan, x, wt, b, y));
    mg_conv2d_plan_free(&plan);
    for (size_t i = 0; i < ny; i++) {
        if (res) y[i] += res[i];
        if (relu && y[i] < 0) y[i] = 0;
    }
    return y;
}

/* ResNet's max pooling (3x3, stride 2, padding 1) of x (n x c x h x w, plain) by the reference op. */
static float *ref_pool(const float *x, int n, int c, int h, int w, int *oh, int *ow) {
    mg_win2d win = {3, 3, 2, 2, 1, 1};
    mg_assert_ok(mg_win2d_out_size(&win, h, w, oh, ow));
    float *y = malloc((size_t)n * c * *oh * *ow * sizeof *y);
    mg_assert_ok(mg_maxpool2d_forward(n, c, h, w, &win, x, y, NULL));
    return y;
}

static void check_close(const char *what, const float *got, const float *want, size_t n) {
    double mx = 0;
    for (size_t i = 0; i < n; i++) mx = fmax(mx, fabs(want[i]));
    /* float32 sums over up to 64*9 products of values in [-1, 1] in another order (and, for
     * Winograd, through its transforms): 1e-5 of the tensor's scale */
    mg_test_assert_close(what, got, want, n, 1e-5 * mx + 1e-30, 1e-4);
}

/* mg_fnet_run_raw against y, what mg_fnet_run wrote (dims: the output's n, c, h, w): the output left in
 * the network's channel blocks holds the same bits, at the blocked offsets; without blocks it fails.
 * Returns the block. */
static int check_raw(mg_fnet *net, const float *x, const float *y, const int d[4]) {
    const int ob = mg_fnet_output_block(net);
    const float *raw = NULL;
    if (!ob) {
        assert_int_not_equal(mg_fnet_run_raw(net, x, &raw), MG_OK);
        return 0;
    }
    assert_true(ob == 8 || ob == 16);
    assert_int_equal(d[1] % ob, 0);
    mg_assert_ok(mg_fnet_run_raw(net, x, &raw));
    assert_non_null(raw);
    const size_t hw = (size_t)d[2] * d[3];
    for (int n = 0; n < d[0]; n++)
        for (int c = 0; c < d[1]; c++)
            for (size_t p = 0; p < hw; p++) {
                const float a = raw[(((size_t)n * (d[1] / ob) + c / ob) * hw + p) * ob + c % ob];
                const float b = y[((size_t)n * d[1] + c) * hw + p];
                if (memcmp(&a, &b, sizeof a))
                    fail_msg("run_raw: image %d channel %d position %zu: %g against %g", n, c, p, (double)a,
                             (double)b);
            }
    return ob;
}

/* A small residual block: x -> pool -> [a = conv3x3 relu] -> [b = conv3x3, + ds(pooled) 1x1 stride 1,
 * relu] -> conv 3x3 stride 2 -> out; checked against the reference chain. */
static void run_chain(int flags, int per_image) {
    const int n = 2, c = 3, h = 23, w = 19, k = 16;
    float *x = mg_test_rand_buf(&g_rng, (size_t)n * c * h * w);
    float *w0 = mg_test_rand_buf(&g_rng, (size_t)k * c * 49), *b0 = mg_test_rand_buf(&g_rng, k);
    float *w1 = mg_test_rand_buf(&g_rng, (size_t)k * k * 9), *b1 = mg_test_rand_buf(&g_rng, k);
    float *w2 = mg_test_rand_buf(&g_rng, (size_t)k * k * 9), *b2 = mg_test_rand_buf(&g_rng, k);
    float *wd = mg_test_rand_buf(&g_rng, (size_t)k * k), *bd = mg_test_rand_buf(&g_rng, k);
    float *w3 = mg_test_rand_buf(&g_rng, (size_t)8 * k * 9), *b3 = mg_test_rand_buf(&g_rng, 8);
    /* reference */
    int h0, w0o, hp, wp, h1, w1o, h2, w2o, hd, wdo, h3, w3o;
    float *r0 = ref_conv(x, n, c, h, w, w0, b0, k, 7, 2, 3, NULL, 1, &h0, &w0o);
    float *rp = ref_pool(r0, n, k, h0, w0o, &hp, &wp);
    float *rd = ref_conv(rp, n, k, hp, wp, wd, bd, k, 1, 1, 0, NULL, 0, &hd, &wdo);
    float *r1 = ref_conv(rp, n, k, hp, wp, w1, b1, k, 3, 1, 1, NULL, 1, &h1, &w1o);
    float *r2 = ref_conv(r1, n, k, h1, w1o, w2, b2, k, 3, 1, 1, rd, 1, &h2, &w2o);
    float *r3 = ref_conv(r2, n, k, h2, w2o, w3, b3, 8, 3, 2, 1, NULL, 0, &h3, &w3o);
    /* fused; per_image: every leading op that can image by image (a threshold of 1 position) */
    if (per_image) setenv("MG_FNET_MICRO_MIN", "1", 1);
    mg_fnet *net;
    mg_assert_ok(mg_fnet_init(&net, n, c, h, w));
    int v0, vp, vd, v1, v2, v3;
    mg_assert_ok(mg_fnet_add_conv(net, 0, k, 7, 2, 3, w0, b0, -1, MG_FNET_RELU | flags, &v0));
    mg_assert_ok(mg_fnet_add_maxpool(net, v0, 3, 2, 1, &vp));
    mg_assert_ok(mg_fnet_add_conv(net, vp, k, 1, 1, 0, wd, bd, -1, flags, &vd));
    mg_assert_ok(mg_fnet_add_conv(net, vp, k, 3, 1, 1, w1, b1, -1, MG_FNET_RELU | flags, &v1));
    mg_assert_ok(mg_fnet_add_conv(net, v1, k, 3, 1, 1, w2, b2, vd, MG_FNET_RELU | flags, &v2));
    /* the residual was summed into in place: reading it again is refused */
    int bad;
    assert_int_equal(mg_fnet_add_conv(net, vd, k, 1, 1, 0, wd, bd, -1, 0, &bad), MG_ERR_INVALID_ARG);
    mg_assert_ok(mg_fnet_add_conv(net, v2, 8, 3, 2, 1, w3, b3, -1, flags, &v3));
    int dims[4];
    mg_fnet_value_dims(net, vp, dims);
    assert_int_equal(dims[2], hp);
    assert_int_equal(dims[3], wp);
    mg_assert_ok(mg_fnet_finalize(net, v3));
    unsetenv("MG_FNET_MICRO_MIN"); /* read at finalize */
    /* image by image: at least the stem and the pooling (plain NCHW in, blocked out; any of our kernels
     * or oneDNN's primitives); by default none of these small maps (12x10 at most) */
    if (per_image)
        assert_true(mg_fnet_per_image_count(net) >= 2);
    else
        assert_int_equal(mg_fnet_per_image_count(net), 0);
    /* the stem (3 channels, plain NCHW in) runs our kernel with the pooling in the same pass on nChw16c
     * where our kernels run 16-wide (full-width FMAs), and then no op writes the convolution's own
     * output; elsewhere, or with MG_FNET_OWN_STEM=0, oneDNN's convolution, then the pooling */
    const char *stem_env = getenv("MG_FNET_OWN_STEM"), *kp = mg_fnet_value_kernel(net, vp);
    const int own_stem = !(stem_env && stem_env[0] == '0') && mg_conv2d_blocked_channels() == 16 &&
                         mg_wino4_block16_width() == 16;
    assert_non_null(kp);
    if (own_stem) {
        assert_string_equal(kp, "ours:stem+pool");
        assert_null(mg_fnet_value_kernel(net, v0));
    } else {
        assert_true(strncmp(kp, "ours:stem", 9) != 0);
        assert_non_null(mg_fnet_value_kernel(net, v0));
    }
    mg_fnet_value_dims(net, v3, dims);
    assert_int_equal(dims[1], 8);
    assert_int_equal(dims[2], h3);
    assert_int_equal(dims[3], w3o);
    size_t ny = (size_t)n * 8 * h3 * w3o;
    float *y = malloc(ny * sizeof *y);
    /* twice: the second run must not depend on what the first left in the reused buffers */
    for (int rep = 0; rep < 2; rep++) {
        memset(y, 0, ny * sizeof *y);
        mg_assert_ok(mg_fnet_run(net, x, y));
        check_close("fused chain", y, r3, ny);
    }
    check_raw(net, x, y, dims);
    assert_true(mg_fnet_bytes(net) > 0);
    /* the two 3x3 stride-1 convolutions (6x5 outputs) run Winograd where oneDNN has it (AVX-512,
     * not capped by ONEDNN_MAX_CPU_ISA), and our kernel on AVX2 (F(4x4) or F(2x2)) */
    int own = mg_conv2d_blocked_channels() == 8 && mg_wino4_inference_tile(n, k, k, h1, w1o) > 0;
    int want_wino = (flags & MG_FNET_WINOGRAD) && (mg_conv2d_blocked_channels() == 16 || own) ? 2 : 0;
    assert_int_equal(mg_fnet_winograd_count(net), want_wino);
    mg_fnet_free(net);
    float *bufs[] = {x, w0, b0, w1, b1, w2, b2, wd, bd, w3, b3, r0, rp, rd, r1, r2, r3, y};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(bufs[i]);
}

static void test_chain_direct(void **state) {
    (void)state;
    run_chain(0, 0);
    setenv("MG_FNET_OWN_POOL", "0", 1); /* oneDNN's pooling instead of ours (AVX2, nChw8c) */
    run_chain(0, 0);
    run_chain(0, 1);
    unsetenv("MG_FNET_OWN_POOL");
    setenv("MG_FNET_OWN_STEM", "0", 1); /* oneDNN's stem convolution, then our pooling */
    run_chain(0, 0);
    unsetenv("MG_FNET_OWN_STEM");
}

static void test_chain_winograd(void **state) {
    (void)state;
    run_chain(MG_FNET_WINOGRAD, 0);
}

/* A stem whose output another op reads too stays a convolution of its own (ours where it runs),
 * followed by the pooling: x (2 images, 3 channels) -> s = conv 5x5 stride 2 pad 2 (32 channels,
 * ReLU) -> p = pool 3x3 stride 2 pad 1, and d = conv 1x1 stride 2 of s, both against the reference. */
static void test_stem_not_fused(void **state) {
    (void)state;
    const int n = 2, c = 3, h = 21, k = 32;
    float *x = mg_test_rand_buf(&g_rng, (size_t)n * c * h * h), *w0 = mg_test_rand_buf(&g_rng, (size_t)k * c * 25);
    float *b0 = mg_test_rand_buf(&g_rng, k), *w1 = mg_test_rand_buf(&g_rng, (size_t)16 * k);
    float *b1 = mg_test_rand_buf(&g_rng, 16);
    int sh, sw, ph, pw, dh, dw;
    float *rs = ref_conv(x, n, c, h, h, w0, b0, k, 5, 2, 2, NULL, 1, &sh, &sw);
    float *rp = ref_pool(rs, n, k, sh, sw, &ph, &pw);
    float *rd = ref_conv(rs, n, k, sh, sw, w1, b1, 16, 1, 2, 0, NULL, 0, &dh, &dw);
    for (int out = 0; out < 2; out++) { /* the network's output: the pooling, then the 1x1 convolution */
        mg_fnet *net;
        int vs, vp, vd;
        mg_assert_ok(mg_fnet_init(&net, n, c, h, h));
        mg_assert_ok(mg_fnet_add_conv(net, 0, k, 5, 2, 2, w0, b0, -1, MG_FNET_RELU, &vs));
        mg_assert_ok(mg_fnet_add_maxpool(net, vs, 3, 2, 1, &vp));
        mg_assert_ok(mg_fnet_add_conv(net, vs, 16, 1, 2, 0, w1, b1, -1, 0, &vd));
        mg_assert_ok(mg_fnet_finalize(net, out ? vd : vp));
        const char *ks = mg_fnet_value_kernel(net, vs);
        assert_non_null(ks);
        assert_non_null(mg_fnet_value_kernel(net, vp));
        assert_true(strcmp(ks, "ours:stem+pool") != 0);
        const size_t ny = out ? (size_t)n * 16 * dh * dw : (size_t)n * k * ph * pw;
        float *y = malloc(ny * sizeof *y);
        mg_assert_ok(mg_fnet_run(net, x, y));
        check_close(out ? "stem read twice: the 1x1 convolution" : "stem read twice: the pooling", y, out ? rd : rp,
                    ny);
        mg_fnet_free(net);
        free(y);
    }
    free(x), free(w0), free(b0), free(w1), free(b1), free(rs), free(rp), free(rd);
}

/* The batch image by image through every op that can (see mg_fnet_per_image_count): the same
 * outputs as the reference, with Winograd, and our pooling or oneDNN's (above). */
static void test_chain_per_image(void **state) {
    (void)state;
    run_chain(0, 1);
    run_chain(MG_FNET_WINOGRAD, 1);
}

/* Image by image through the first ops, with buffers reused inside them: x (3 images, 16 channels) ->
 * a = conv3x3 (32, relu) -> b = conv1x1 (16, relu) -> c = conv3x3 (16, relu) -> d = conv1x1 (32) + a,
 * relu -> e = conv1x1 (64) -> f = conv3x3 stride 2 (32). Channels in multiples of 16 and
 * MG_FMA512_GAIN=1 while it is built, so that the 3x3 layers run our Winograd on AVX2 and on every
 * AVX-512 CPU at one width (oneDNN's AVX-512 Winograd, which 8 channels would get, picks other weights
 * for one image: no batch-1 twin, the prefix would end at a; the policy itself is
 * test_fma_width_policy's). With MG_FNET_MICRO_MIN=101 the ops up to e (20x20
 * outputs) run image by image and f (10x10) on the batch: b and c are dead within those ops and need
 * one image's room, reused by every image, while e is read after them and must keep all three
 * images; a buffer planned as if the ops ran in order for the whole batch (e in b's or c's dead
 * buffer) has the second image's b written over the first image's e. Checked against the
 * reference, and bit for bit against the same network run on the whole batch. */
static void test_per_image_buffers(void **state) {
    (void)state;
    const int n = 3, c = 16, h = 20;
    float *x = mg_test_rand_buf(&g_rng, (size_t)n * c * h * h);
    const int ks[6] = {32, 16, 16, 32, 64, 32}, rs[6] = {3, 1, 3, 1, 1, 3};
    const int cin[6] = {c, 32, 16, 16, 32, 64};
    float *w[6], *b[6];
    for (int i = 0; i < 6; i++) {
        w[i] = mg_test_rand_buf(&g_rng, (size_t)ks[i] * cin[i] * rs[i] * rs[i]);
        b[i] = mg_test_rand_buf(&g_rng, (size_t)ks[i]);
    }
    int oh, ow;
    float *ra = ref_conv(x, n, c, h, h, w[0], b[0], 32, 3, 1, 1, NULL, 1, &oh, &ow);
    float *rb = ref_conv(ra, n, 32, h, h, w[1], b[1], 16, 1, 1, 0, NULL, 1, &oh, &ow);
    float *rc = ref_conv(rb, n, 16, h, h, w[2], b[2], 16, 3, 1, 1, NULL, 1, &oh, &ow);
    float *rd = ref_conv(rc, n, 16, h, h, w[3], b[3], 32, 1, 1, 0, ra, 1, &oh, &ow);
    float *re = ref_conv(rd, n, 32, h, h, w[4], b[4], 64, 1, 1, 0, NULL, 0, &oh, &ow);
    float *rf = ref_conv(re, n, 64, h, h, w[5], b[5], 32, 3, 2, 1, NULL, 0, &oh, &ow);
    const size_t ny = (size_t)n * 32 * oh * ow;
    float *y[2];
    for (int per_image = 0; per_image < 2; per_image++) {
        setenv("MG_FNET_MICRO_MIN", per_image ? "101" : "0", 1);
        setenv("MG_FMA512_GAIN", "1", 1); /* read while the convolutions are added */
        mg_fnet *net;
        mg_assert_ok(mg_fnet_init(&net, n, c, h, h));
        int va, vb, vc, vd, ve, vf;
        mg_assert_ok(mg_fnet_add_conv(net, 0, 32, 3, 1, 1, w[0], b[0], -1, MG_FNET_RELU | MG_FNET_WINOGRAD, &va));
        mg_assert_ok(mg_fnet_add_conv(net, va, 16, 1, 1, 0, w[1], b[1], -1, MG_FNET_RELU, &vb));
        mg_assert_ok(mg_fnet_add_conv(net, vb, 16, 3, 1, 1, w[2], b[2], -1, MG_FNET_RELU | MG_FNET_WINOGRAD, &vc));
        mg_assert_ok(mg_fnet_add_conv(net, vc, 32, 1, 1, 0, w[3], b[3], va, MG_FNET_RELU, &vd));
        mg_assert_ok(mg_fnet_add_conv(net, vd, 64, 1, 1, 0, w[4], b[4], -1, 0, &ve));
        mg_assert_ok(mg_fnet_add_conv(net, ve, 32, 3, 2, 1, w[5], b[5], -1, 0, &vf));
        mg_assert_ok(mg_fnet_finalize(net, vf));
        unsetenv("MG_FNET_MICRO_MIN");
        unsetenv("MG_FMA512_GAIN");
        /* per image: the five convolutions (and any reorder among them), not the strided one */
        if (per_image) {
            assert_true(mg_fnet_per_image_count(net) >= 5);
            assert_true(mg_fnet_per_image_count(net) < 6 + 2);
        } else {
            assert_int_equal(mg_fnet_per_image_count(net), 0);
        }
        y[per_image] = malloc(ny * sizeof(float));
        for (int rep = 0; rep < 2; rep++) { /* the second run must not depend on what the first left */
            memset(y[per_image], 0, ny * sizeof(float));
            mg_assert_ok(mg_fnet_run(net, x, y[per_image]));
            check_close(per_image ? "per image" : "whole batch", y[per_image], rf, ny);
        }
        mg_fnet_free(net);
    }
    /* the batch-1 twins run the batch's kernels: the same numbers */
    assert_memory_equal(y[0], y[1], ny * sizeof(float));
    for (int i = 0; i < 6; i++) free(w[i]), free(b[i]);
    free(x), free(ra), free(rb), free(rc), free(rd), free(re), free(rf), free(y[0]), free(y[1]);
}

/* Winograd on a shape where it runs (ResNet's layer2 3x3 at 28x28, batch 1), with a residual sum
 * and ReLU in its epilogue: y = relu(conv3x3(x) + b + x). The residual is made by a 1x1 identity
 * convolution of the input (the input itself is the caller's memory and is never summed into). */
static void test_winograd_layer(void **state) {
    (void)state;
    const int n = 1, c = 32, h = 28, k = 32;
    float *x = mg_test_rand_buf(&g_rng, (size_t)n * c * h * h), *wt = mg_test_rand_buf(&g_rng, (size_t)k * c * 9), *b = mg_test_rand_buf(&g_rng, k);
    float *eye = calloc((size_t)k * c, sizeof *eye), *zero = calloc((size_t)k, sizeof *zero);
    for (int i = 0; i < k; i++) eye[(size_t)i * c + i] = 1.0f;
    int oh, ow;
    float *want = ref_conv(x, n, c, h, h, wt, b, k, 3, 1, 1, x, 1, &oh, &ow);
    mg_fnet *net;
    mg_assert_ok(mg_fnet_init(&net, n, c, h, h));
    int vr, vy;
    mg_assert_ok(mg_fnet_add_conv(net, 0, k, 1, 1, 0, eye, zero, -1, 0, &vr));
    mg_assert_ok(mg_fnet_add_conv(net, 0, k, 3, 1, 1, wt, b, vr, MG_FNET_RELU | MG_FNET_WINOGRAD, &vy));
    mg_assert_ok(mg_fnet_finalize(net, vy));
    size_t ny = (size_t)n * k * h * h;
    float *y = malloc(ny * sizeof *y);
    mg_assert_ok(mg_fnet_run(net, x, y));
    check_close("winograd 3x3 + residual + relu", y, want, ny);
    /* Winograd runs: oneDNN's on AVX-512, ours (wino_avx2.c, 49 tiles) on AVX2 with FMA, e.g. under
     * ONEDNN_MAX_CPU_ISA=AVX2 (the test's _avx2 run, tests/CMakeLists.txt) */
    int blk = mg_conv2d_blocked_channels();
    if (blk == 16 || (blk == 8 && mg_test_cpu_avx2_fma() && !getenv("MG_FNET_OWN_WINO")))
        assert_int_equal(mg_fnet_winograd_count(net), 1);
    mg_fnet_free(net);
    free(x), free(wt), free(b), free(want), free(y), free(eye), free(zero);
}

/* Whose kernels run the 3x3 layers on AVX-512 (nChw16c) depends on the CPU's FMA units (cpu.h):
 * where 16-wide FMAs are no faster than 8-wide ones (MG_FMA512_GAIN=1 stands in for the measurement),
 * ours 8-wide; where they are twice as fast (=2), ours 16-wide (wino_avx2.c's AVX-512F kernels, whose
 * width test_wino_avx2 checks): a stride-2 layer on 56x56, then F(4x4) on 28x28 either way, and on
 * AVX2 (nChw8c). Both networks against the reference. */
static void test_fma_width_policy(void **state) {
    (void)state;
    const int n = 1, c = 32, h = 56;
    float *x = mg_test_rand_buf(&g_rng, (size_t)n * c * h * h), *w1 = mg_test_rand_buf(&g_rng, (size_t)c * c * 9);
    float *w2 = mg_test_rand_buf(&g_rng, (size_t)c * c * 9), *b1 = mg_test_rand_buf(&g_rng, c);
    float *b2 = mg_test_rand_buf(&g_rng, c);
    int oh, ow;
    float *r1 = ref_conv(x, n, c, h, h, w1, b1, c, 3, 2, 1, NULL, 1, &oh, &ow);
    float *want = ref_conv(r1, n, c, oh, ow, w2, b2, c, 3, 1, 1, NULL, 1, &oh, &ow);
    const size_t ny = (size_t)n * c * oh * ow;
    float *y = malloc(ny * sizeof *y);
    const int blk = mg_conv2d_blocked_channels();
    const int ours_possible = mg_test_cpu_avx2_fma() && !getenv("MG_FNET_OWN_WINO") && (blk == 8 || blk == 16);
    for (int gain = 1; gain <= 2; gain++) {
        setenv("MG_FMA512_GAIN", gain == 1 ? "1" : "2", 1);
        mg_fnet *net;
        int v1, v2;
        mg_assert_ok(mg_fnet_init(&net, n, c, h, h));
        mg_assert_ok(mg_fnet_add_conv(net, 0, c, 3, 2, 1, w1, b1, -1, MG_FNET_RELU | MG_FNET_WINOGRAD, &v1));
        mg_assert_ok(mg_fnet_add_conv(net, v1, c, 3, 1, 1, w2, b2, -1, MG_FNET_RELU | MG_FNET_WINOGRAD, &v2));
        mg_assert_ok(mg_fnet_finalize(net, v2));
        unsetenv("MG_FMA512_GAIN");
        const char *k1 = mg_fnet_value_kernel(net, v1), *k2 = mg_fnet_value_kernel(net, v2);
        assert_non_null(k1);
        assert_non_null(k2);
        assert_null(mg_fnet_value_kernel(net, 0)); /* the input: no op writes it */
        assert_null(mg_fnet_value_kernel(net, 999));
        printf("block %d, MG_FMA512_GAIN=%d: %s, %s\n", blk, gain, k1, k2);
        if (ours_possible) {
            assert_string_equal(k1, "ours:wino stride 2");
            assert_string_equal(k2, "ours:wino F(4x4,3x3)");
        } else {
            assert_true(strncmp(k1, "ours:", 5) != 0);
            assert_true(strncmp(k2, "ours:", 5) != 0);
        }
        memset(y, 0, ny * sizeof *y);
        mg_assert_ok(mg_fnet_run(net, x, y));
        check_close(gain == 1 ? "8-wide FMAs at peak" : "16-wide FMAs faster", y, want, ny);
        const int dims[4] = {n, c, oh, ow};
        if (blk == 8 || blk == 16) assert_int_equal(check_raw(net, x, y, dims), blk); /* 32 channels */
        mg_fnet_free(net);
    }
    free(x), free(w1), free(w2), free(b1), free(b2), free(r1), free(want), free(y);
}

static int g_calls;
typedef struct {
    const float *w, *b;
    size_t wn, bn;
} weights;
static mg_status give_weights(void *ctx, float *w, float *b) {
    const weights *src = ctx;
    g_calls++;
    memcpy(w, src->w, src->wn * sizeof *w);
    memcpy(b, src->b, src->bn * sizeof *b);
    return MG_OK;
}

/* A network for another input size built "like" a first one shares its weights (the callback is not
 * called again), still computes the right thing after the donor is freed, and a convolution that no
 * longer fits (here: the donor has none at that position) gets its own. */
static void test_shared_weights(void **state) {
    (void)state;
    const int c = 8, k = 16;
    float *wt = mg_test_rand_buf(&g_rng, (size_t)k * c * 9), *b = mg_test_rand_buf(&g_rng, k), *w2 = mg_test_rand_buf(&g_rng, (size_t)4 * k), *b2 = mg_test_rand_buf(&g_rng, 4);
    weights first = {wt, b, (size_t)k * c * 9, (size_t)k}, second = {w2, b2, (size_t)4 * k, 4};
    g_calls = 0;
    mg_fnet *a, *bnet;
    int va, vb;
    mg_assert_ok(mg_fnet_init(&a, 1, c, 20, 12));
    mg_assert_ok(mg_fnet_add_conv_cb(a, 0, k, 3, 1, 1, give_weights, &first, -1, MG_FNET_RELU, &va));
    mg_assert_ok(mg_fnet_finalize(a, va));
    assert_int_equal(g_calls, 1);
    size_t own = mg_fnet_bytes(a);
    /* one thread, whatever the donor was built with: the weights are shared all the same */
    mg_assert_ok(mg_fnet_init_like(&bnet, 1, c, 12, 20, a, 1));
    mg_assert_ok(mg_fnet_add_conv_cb(bnet, 0, k, 3, 1, 1, give_weights, &first, -1, MG_FNET_RELU, &vb));
    assert_int_equal(g_calls, 1); /* shared */
    int extra;
    mg_assert_ok(mg_fnet_add_conv_cb(bnet, vb, 4, 1, 1, 0, give_weights, &second, -1, 0, &extra));
    assert_int_equal(g_calls, 2); /* the donor has no second convolution */
    mg_assert_ok(mg_fnet_finalize(bnet, vb));
    assert_true(mg_fnet_bytes(bnet) < own + 16 * 12 * 20 * 4 * 4); /* its weights are not counted twice */
    mg_fnet_free(a);
    float *x = mg_test_rand_buf(&g_rng, (size_t)c * 12 * 20), *y = malloc((size_t)k * 12 * 20 * sizeof *y);
    int oh, ow;
    float *want = ref_conv(x, 1, c, 12, 20, wt, b, k, 3, 1, 1, NULL, 1, &oh, &ow);
    mg_assert_ok(mg_fnet_run(bnet, x, y));
    check_close("shared weights", y, want, (size_t)k * oh * ow);
    mg_fnet_free(bnet);
    free(wt), free(b), free(w2), free(b2), free(x), free(y), free(want);
}

/* MG_FNET_PROFILE=1 at finalize: the outputs stay those of the reference, and freeing the network
 * writes a table to stderr with a line per op, the run count (the runs after the first, or the first
 * alone when the network ran once), each convolution's GFLOP/s equal to its hand-counted FLOPs over
 * its printed time, and shares that add up to 100 %. */
static void check_profile(int runs) {
    const int n = 2, c = 32, h = 28, k = 64;
    float *x = mg_test_rand_buf(&g_rng, (size_t)n * c * h * h), *w3 = mg_test_rand_buf(&g_rng, (size_t)k * c * 9);
    float *b3 = mg_test_rand_buf(&g_rng, k), *w1 = mg_test_rand_buf(&g_rng, (size_t)16 * k);
    float *b1 = mg_test_rand_buf(&g_rng, 16);
    int oh, ow, ph, pw, qh, qw;
    float *r3 = ref_conv(x, n, c, h, h, w3, b3, k, 3, 1, 1, NULL, 1, &oh, &ow);
    float *rp = ref_pool(r3, n, k, oh, ow, &ph, &pw);
    float *want = ref_conv(rp, n, k, ph, pw, w1, b1, 16, 1, 1, 0, NULL, 0, &qh, &qw);
    setenv("MG_FNET_PROFILE", "1", 1);
    mg_fnet *net;
    mg_assert_ok(mg_fnet_init(&net, n, c, h, h));
    int v3, vp, v1;
    mg_assert_ok(mg_fnet_add_conv(net, 0, k, 3, 1, 1, w3, b3, -1, MG_FNET_RELU, &v3));
    mg_assert_ok(mg_fnet_add_maxpool(net, v3, 3, 2, 1, &vp));
    mg_assert_ok(mg_fnet_add_conv(net, vp, 16, 1, 1, 0, w1, b1, -1, 0, &v1));
    mg_assert_ok(mg_fnet_finalize(net, v1));
    unsetenv("MG_FNET_PROFILE"); /* read at finalize */
    size_t ny = (size_t)n * 16 * qh * qw;
    float *y = malloc(ny * sizeof *y);
    for (int i = 0; i < runs; i++) {
        mg_assert_ok(mg_fnet_run(net, x, y));
        check_close("profiled network", y, want, ny);
    }
    /* the report, from stderr into a file */
    char path[] = "/tmp/mg_test_profile_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    assert_true(saved >= 0 && dup2(fd, 2) == 2);
    mg_fnet_free(net);
    fflush(stderr);
    assert_true(dup2(saved, 2) == 2);
    close(saved);
    close(fd);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[512];
    int header = 0, convs = 0, pools = 0, ops = 0, rated = 0;
    double share = 0;
    /* hand-counted: 2 n k p q c r^2 */
    const double flop3 = 2.0 * n * k * oh * ow * c * 9, flop1 = 2.0 * n * 16 * qh * qw * k;
    while (fgets(line, sizeof line, f)) {
        if (strstr(line, "fused network profile:")) {
            /* the runs after the first; a network run once, the first run's table */
            char want_runs[48];
            if (runs > 1)
                snprintf(want_runs, sizeof want_runs, "%d run(s) after the first, ", runs - 1);
            else
                snprintf(want_runs, sizeof want_runs, "1 run, the first (with its one-time costs)");
            assert_non_null(strstr(line, want_runs));
            if (runs > 1) assert_non_null(strstr(line, "(the first, not counted: "));
            assert_non_null(strstr(line, "input 2x32x28x28"));
            header = 1;
            continue;
        }
        int idx;
        double ms, gf, pct;
        char kind[16];
        if (sscanf(line, "%d %lf %lf %lf %15s", &idx, &ms, &gf, &pct, kind) != 5) continue;
        assert_int_equal(idx, ops);
        ops++;
        share += pct;
        assert_true(ms >= 0 && pct >= 0 && pct <= 100);
        if (strcmp(kind, "conv") == 0) {
            double flop = convs == 0 ? flop3 : flop1;
            convs++;
            if (ms >= 0.05) { /* printed to 1 us and 0.1 GFLOP/s: 2 % covers the rounding at 0.05 ms */
                assert_true(fabs(gf - flop / (ms * 1e6)) <= 0.02 * flop / (ms * 1e6) + 0.1);
                rated++;
            }
        } else if (strcmp(kind, "maxpool") == 0) {
            pools++;
            assert_true(gf == 0);
        } else {
            assert_string_equal(kind, "reorder");
        }
    }
    fclose(f);
    remove(path);
    assert_true(header);
    assert_int_equal(convs, 2);
    assert_int_equal(pools, 1);
    assert_true(rated >= 1); /* the 3x3 convolution (58 MFLOP) takes well over 0.05 ms: its rate was checked */
    assert_true(ops >= 3);
    assert_true(fabs(share - 100.0) <= 0.05 * ops + 1e-9); /* each share printed to 0.1 % */
    free(x), free(w3), free(b3), free(w1), free(b1), free(r3), free(rp), free(want), free(y);
}

static void test_profile(void **state) {
    (void)state;
    check_profile(3);
    check_profile(1);
}

static void test_bad_input(void **state) {
    (void)state;
    mg_fnet *net;
    assert_int_equal(mg_fnet_init(&net, 0, 3, 8, 8), MG_ERR_INVALID_ARG);
    mg_assert_ok(mg_fnet_init(&net, 1, 4, 8, 8));
    float w[4 * 4 * 9] = {0}, b[4] = {0};
    int v;
    assert_int_equal(mg_fnet_add_conv(net, 5, 4, 3, 1, 1, w, b, -1, 0, &v), MG_ERR_INVALID_ARG); /* no value 5 */
    assert_int_equal(mg_fnet_add_conv(net, 0, 4, 3, 1, 1, NULL, b, -1, 0, &v), MG_ERR_INVALID_ARG);
    assert_int_equal(mg_fnet_add_conv(net, 0, 4, 11, 1, 0, w, b, -1, 0, &v), MG_ERR_INVALID_ARG); /* too big */
    assert_int_equal(mg_fnet_add_maxpool(net, 0, 3, 2, 2, &v), MG_ERR_INVALID_ARG);              /* pad > r/2 */
    int a, c2;
    mg_assert_ok(mg_fnet_add_conv(net, 0, 4, 3, 1, 1, w, b, -1, 0, &a));
    mg_assert_ok(mg_fnet_add_conv(net, 0, 4, 3, 2, 1, w, b, -1, 0, &c2));
    /* residual of another shape */
    assert_int_equal(mg_fnet_add_conv(net, 0, 4, 3, 1, 1, w, b, c2, 0, &v), MG_ERR_INVALID_ARG);
    assert_int_equal(mg_fnet_finalize(net, 0), MG_ERR_INVALID_ARG); /* the input is not an output */
    assert_int_equal(mg_fnet_run(net, w, w), MG_ERR_INVALID_ARG);  /* not finalized */
    mg_assert_ok(mg_fnet_finalize(net, a));
    assert_int_equal(mg_fnet_add_conv(net, 0, 4, 3, 1, 1, w, b, -1, 0, &v), MG_ERR_INVALID_ARG); /* finalized */
    mg_fnet_free(net);
    mg_fnet_free(NULL);
}

int main(void) {
    if (!mg_fnet_available()) {
        printf("SKIPPED: this build has no oneDNN, so no fused inference network\n");
        return MG_TEST_SKIP;
    }
    mg_ops_set_threads(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chain_direct),
        cmocka_unit_test(test_chain_winograd),
        cmocka_unit_test(test_chain_per_image),
        cmocka_unit_test(test_stem_not_fused),
        cmocka_unit_test(test_per_image_buffers),
        cmocka_unit_test(test_fma_width_policy),
        cmocka_unit_test(test_winograd_layer),
        cmocka_unit_test(test_shared_weights),
        cmocka_unit_test(test_profile),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
