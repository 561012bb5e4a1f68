/* test_data_transform.c: the composed train/test pipelines: reproducible per (seed, epoch,
 * position), DCT-domain downscaled decoding giving nearly the same crop as full decoding (a wrong
 * box mapping would shift the gradient image and fail), level "none" = the test crop, the test crop's
 * geometry (classic 224/256 and crop_fraction) against libjpeg-turbo's decode, and errors. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

#include "mg_test.h"
#include "multigrain/data.h"

static unsigned char *g_jpeg;
static unsigned long g_size;

/* a smooth 1600x1200 image: gradients in all channels (any box shift changes values) */
static int setup(void **state) {
    (void)state;
    int w = 1600, h = 1200;
    uint8_t *px = malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = px + ((size_t)y * w + x) * 3;
            p[0] = (uint8_t)(x * 255 / (w - 1));
            p[1] = (uint8_t)(y * 255 / (h - 1));
            p[2] = (uint8_t)(127 + 100 * sin(x / 150.0) * cos(y / 110.0));
        }
    tjhandle tj = tjInitCompress();
    int rc = tjCompress2(tj, px, w, 3 * w, h, TJPF_RGB, &g_jpeg, &g_size, TJSAMP_444, 95, 0);
    tjDestroy(tj);
    free(px);
    return rc;
}

static int teardown(void **state) {
    (void)state;
    tjFree(g_jpeg);
    return 0;
}

static void test_reproducible(void **state) {
    (void)state;
    mg_transform_cfg c;
    mg_transform_cfg_default(&c, true);
    c.size = 64;
    size_t n = 3 * 64 * 64;
    float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float)), *d = malloc(n * sizeof(float));
    mg_transform_ws ws = {0};
    int ow, oh;
    mg_assert_ok(mg_transform_apply_mem(&c, g_jpeg, g_size, 5, 2, 17, &ws, a, n, &ow, &oh));
    assert_int_equal(ow, 64);
    mg_assert_ok(mg_transform_apply_mem(&c, g_jpeg, g_size, 5, 2, 17, &ws, b, n, &ow, &oh));
    assert_memory_equal(a, b, n * sizeof(float));
    mg_assert_ok(mg_transform_apply_mem(&c, g_jpeg, g_size, 5, 2, 18, &ws, d, n, &ow, &oh));
    assert_true(memcmp(a, d, n * sizeof(float)) != 0);
    /* a too small output buffer is refused */
    assert_int_equal(mg_transform_apply_mem(&c, g_jpeg, g_size, 5, 2, 17, &ws, d, n - 1, &ow, &oh), MG_ERR_INVALID_ARG);
    mg_transform_ws_free(&ws);
    free(a);
    free(b);
    free(d);
}

static void test_dct_scaling_close_to_full_decode(void **state) {
    (void)state;
    mg_transform_cfg c;
    mg_transform_cfg_default(&c, true);
    c.level = MG_AUG_TORCH; /* geometry only */
    c.size = 96;
    size_t n = 3 * 96 * 96;
    float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
    mg_transform_ws ws = {0};
    int ow, oh;
    for (uint64_t pos = 0; pos < 20; pos++) {
        c.dct_scale = true;
        mg_assert_ok(mg_transform_apply_mem(&c, g_jpeg, g_size, 1, 0, pos, &ws, a, n, &ow, &oh));
        c.dct_scale = false;
        mg_assert_ok(mg_transform_apply_mem(&c, g_jpeg, g_size, 1, 0, pos, &ws, b, n, &ow, &oh));
        double mad = 0;
        for (size_t i = 0; i < n; i++) mad += fabs(a[i] - b[i]);
        mad /= n;
        /* Bound: the two paths differ by the n/8 IDCT and by the box being rounded to whole pixels of
         * the smaller image (<= 1 source pixel shift of a gradient of <= 255/1200 levels per pixel at
         * scale 1/8 -> ~1.7 levels), i.e. a few grey levels = ~0.05 in normalised units; a wrong box
         * mapping moves the crop by tens of pixels and gives > 0.3. */
        if (mad > 0.08) fail_msg("position %llu: mean |dct - full| = %g", (unsigned long long)pos, mad);
    }
    mg_transform_ws_free(&ws);
    free(a);
    free(b);
}

static void test_level_none_is_test_crop(void **state) {
    (void)state;
    mg_transform_cfg tr, te;
    mg_transform_cfg_default(&tr, true);
    mg_transform_cfg_default(&te, false);
    tr.level = MG_AUG_NONE;
    tr.dct_scale = false;
    tr.size = te.size = 50;
    size_t n = 3 * 50 * 50;
    float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
    mg_transform_ws ws = {0};
    int ow, oh;
    mg_assert_ok(mg_transform_apply_mem(&tr, g_jpeg, g_size, 1, 0, 3, &ws, a, n, &ow, &oh));
    mg_assert_ok(mg_transform_apply_mem(&te, g_jpeg, g_size, 9, 9, 9, &ws, b, n, &ow, &oh));
    assert_memory_equal(a, b, n * sizeof(float));
    mg_transform_ws_free(&ws);
    free(a);
    free(b);
    mg_aug_level l;
    mg_assert_ok(mg_aug_level_parse("torch", &l));
    assert_int_equal(l, MG_AUG_TORCH);
    assert_int_equal(mg_aug_level_parse("heavy", &l), MG_ERR_CONFIG);
    assert_string_equal(mg_aug_level_name(MG_AUG_FULL), "full");
    /* rect geometry: longer side to s, other int(s * short / long) */
    mg_transform_cfg_default(&te, false);
    te.eval_mode = MG_EVAL_RECT;
    te.size = 500;
    mg_transform_out_size(&te, 1600, 1200, &ow, &oh);
    assert_int_equal(ow, 500);
    assert_int_equal(oh, 375);
    mg_transform_out_size(&te, 333, 1000, &ow, &oh);
    assert_int_equal(ow, 166); /* int(500 * 333 / 1000) = int(166.5) */
    assert_int_equal(oh, 500);
}

/* The test crop's geometry, checked against libjpeg-turbo's own decode of a 64x48 image: when the
 * resize target equals the short side (48) the image is not resampled, so the output must be the
 * decoded pixels of the centred window, normalised. classic: int(256/224*42) = 48, crop 42;
 * crop_fraction 1: 48 -> crop 48; crop_fraction 0.5: floor(24/0.5) = 48 -> crop 24. */
static void test_crop_fraction_geometry(void **state) {
    (void)state;
    int w = 64, h = 48;
    uint8_t *px = malloc((size_t)w * h * 3), *dec = malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) px[((size_t)y * w + x) * 3 + c] = (uint8_t)((x * 37 + y * 11 + c * 70) & 255);
    unsigned char *jpg = NULL;
    unsigned long jsize = 0;
    tjhandle tj = tjInitCompress();
    assert_int_equal(tjCompress2(tj, px, w, 3 * w, h, TJPF_RGB, &jpg, &jsize, TJSAMP_444, 100, 0), 0);
    tjDestroy(tj);
    tj = tjInitDecompress();
    assert_int_equal(tjDecompress2(tj, jpg, jsize, dec, w, 3 * w, h, TJPF_RGB, 0), 0);
    tjDestroy(tj);
    const struct { int size; double frac; } cases[] = {{42, 0}, {48, 1.0}, {24, 0.5}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        mg_transform_cfg c;
        mg_transform_cfg_default(&c, false);
        c.size = cases[k].size;
        c.crop_fraction = cases[k].frac;
        int s = c.size, x0 = (w - s) / 2, y0 = (h - s) / 2, ow, oh;
        size_t n = (size_t)3 * s * s;
        float *out = malloc(n * sizeof(float));
        mg_transform_ws ws = {0};
        mg_assert_ok(mg_transform_apply_mem(&c, jpg, jsize, 0, 0, 0, &ws, out, n, &ow, &oh));
        assert_int_equal(ow, s);
        assert_int_equal(oh, s);
        double worst = 0;
        for (int ch = 0; ch < 3; ch++)
            for (int y = 0; y < s; y++)
                for (int x = 0; x < s; x++) {
                    double v = dec[((size_t)(y + y0) * w + (x + x0)) * 3 + ch] / 255.0;
                    double want = (v - c.mean[ch]) / c.std[ch];
                    double d = fabs(out[((size_t)ch * s + y) * s + x] - want);
                    if (d > worst) worst = d;
                }
        assert_true(worst < 1e-5);
        mg_transform_ws_free(&ws);
        free(out);
    }
    tjFree(jpg);
    free(px);
    free(dec);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reproducible),
        cmocka_unit_test(test_dct_scaling_close_to_full_decode),
        cmocka_unit_test(test_level_none_is_test_crop),
        cmocka_unit_test(test_crop_fraction_geometry),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
