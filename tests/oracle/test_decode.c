/* test_decode.c: JPEG/PNG decoding against PIL's Image.open().convert('RGB') (gen_decode.py):
 * colour spaces, palettes, alpha, progressive JPEG, DCT-domain scaling (vs PIL's draft()), EXIF
 * orientation, decompression-bomb limits and the errors for broken files. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mg_test.h"
#include "multigrain/data.h"

/* JPEG tolerance: PIL and TurboJPEG both use Debian's libjpeg-turbo with the same defaults (ISLOW
 * IDCT, fancy upsampling), so results are expected identical; we allow 2 grey levels so that a
 * differently built libjpeg (SIMD vs plain C upsampling/colour conversion rounding) still passes.
 * PNG is lossless: exact. */
#define JPEG_ATOL 2.0

static char *opath(const char *name) {
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s", mg_test_oracle_dir(), name);
    return path;
}

static double compare(const char *name, const mg_image *img, const char *ref_name, double atol) {
    mg_npy ref;
    mg_test_load(ref_name, &ref);
    assert_int_equal(ref.ndim, 3);
    if (ref.shape[0] != img->h || ref.shape[1] != img->w)
        fail_msg("%s: got %dx%d, PIL gives %lldx%lld", name, img->w, img->h, (long long)ref.shape[1], (long long)ref.shape[0]);
    size_t n = (size_t)3 * img->w * img->h;
    float *got = malloc(n * sizeof(float));
    for (int y = 0; y < img->h; y++)
        for (int x = 0; x < 3 * img->w; x++) got[(size_t)y * 3 * img->w + x] = img->data[(size_t)y * img->stride + x];
    double e = mg_test_assert_close(name, got, ref.data, n, atol, 0);
    printf("%-18s %4dx%-4d max |diff| vs PIL = %g\n", name, img->w, img->h, e);
    free(got);
    mg_npy_free(&ref);
    return e;
}

static void test_formats(void **state) {
    (void)state;
    FILE *f = fopen(opath("names.txt"), "r");
    assert_non_null(f);
    char name[256];
    int count = 0;
    while (fgets(name, sizeof name, f)) {
        name[strcspn(name, "\n")] = 0;
        if (!name[0]) continue;
        mg_image img;
        mg_assert_ok(mg_image_decode_file(opath(name), NULL, &img));
        compare(name, &img, name, strstr(name, ".jpg") ? JPEG_ATOL : 0.0);
        mg_image_free(&img);
        count++;
    }
    fclose(f);
    assert_true(count >= 10);
}

static void test_dct_scaling(void **state) {
    (void)state;
    void *data;
    size_t size;
    FILE *f = fopen(opath("big.jpg"), "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    data = malloc(size);
    assert_int_equal(fread(data, 1, size, f), size);
    fclose(f);
    struct { int min_w, min_h, want_n; const char *ref; } cases[] = {
        {200, 150, 4, "draft_half"}, {100, 75, 2, "draft_quarter"}, {50, 38, 1, "draft_eighth"}};
    for (int k = 0; k < 3; k++) {
        mg_decode_opts o;
        mg_decode_opts_default(&o);
        o.min_w = cases[k].min_w;
        o.min_h = cases[k].min_h;
        mg_image img;
        int n;
        mg_assert_ok(mg_image_decode_mem(data, size, &o, &img, &n));
        assert_int_equal(n, cases[k].want_n);
        assert_true(img.w >= cases[k].min_w && img.h >= cases[k].min_h);
        compare(cases[k].ref, &img, cases[k].ref, JPEG_ATOL);
        mg_image_free(&img);
    }
    /* 0 = full size; a minimum above the image size also gives full size */
    mg_decode_opts o;
    mg_decode_opts_default(&o);
    o.min_w = 1000;
    mg_image img;
    int n;
    mg_assert_ok(mg_image_decode_mem(data, size, &o, &img, &n));
    assert_int_equal(n, 8);
    assert_int_equal(img.w, 400);
    mg_image_free(&img);
    free(data);
}

static void test_exif_orientation(void **state) {
    (void)state;
    const int ors[3] = {3, 6, 8};
    for (int k = 0; k < 3; k++) {
        char name[64], ref[64];
        snprintf(name, sizeof name, "orient%d.jpg", ors[k]);
        snprintf(ref, sizeof ref, "orient%d", ors[k]);
        mg_decode_opts o;
        mg_decode_opts_default(&o);
        o.exif_orientation = true;
        mg_image img;
        mg_assert_ok(mg_image_decode_file(opath(name), &o, &img));
        compare(name, &img, ref, JPEG_ATOL);
        mg_image_free(&img);
        /* off by default: stored orientation */
        mg_assert_ok(mg_image_decode_file(opath(name), NULL, &img));
        assert_int_equal(img.w, 101);
        assert_int_equal(img.h, 75);
        mg_image_free(&img);
    }
}

static void test_bad_files(void **state) {
    (void)state;
    mg_image img;
    mg_status st = mg_image_decode_file(opath("truncated.jpg"), NULL, &img);
    assert_int_equal(st, MG_ERR_FORMAT);
    assert_non_null(strstr(mg_error_message(), "truncated"));
    mg_decode_opts o;
    mg_decode_opts_default(&o);
    o.allow_truncated = true;
    mg_assert_ok(mg_image_decode_file(opath("truncated.jpg"), &o, &img));
    assert_int_equal(img.w, 101);
    mg_image_free(&img);
    assert_int_equal(mg_image_decode_file(opath("text.jpg"), NULL, &img), MG_ERR_FORMAT);
    assert_non_null(strstr(mg_error_message(), "not a JPEG or PNG"));
    assert_int_equal(mg_image_decode_file(opath("empty.jpg"), NULL, &img), MG_ERR_FORMAT);
    assert_non_null(strstr(mg_error_message(), "empty"));
    assert_int_equal(mg_image_decode_file(opath("badpng.png"), NULL, &img), MG_ERR_FORMAT);
    assert_int_equal(mg_image_decode_file(opath("missing.jpg"), NULL, &img), MG_ERR_IO);
    /* decompression-bomb limits */
    mg_decode_opts_default(&o);
    o.max_pixels = 1000;
    assert_int_equal(mg_image_decode_file(opath("rgb420.jpg"), &o, &img), MG_ERR_FORMAT);
    assert_non_null(strstr(mg_error_message(), "decompression-bomb"));
    mg_decode_opts_default(&o);
    o.max_width = 100;
    assert_int_equal(mg_image_decode_file(opath("rgb.png"), &o, &img), MG_ERR_FORMAT);
}

/* Corrupted inputs (random byte flips and truncations of valid files) must give MG_OK or an error,
 * never a crash; the ASan build turns any out-of-bounds access into a failure. */
static void test_corruption_never_crashes(void **state) {
    (void)state;
    const char *names[4] = {"rgb420.jpg", "progressive.jpg", "cmyk.jpg", "palette.png"};
    uint64_t x = 88172645463325252ULL;
    for (int f = 0; f < 4; f++) {
        FILE *fp = fopen(opath(names[f]), "rb");
        assert_non_null(fp);
        fseek(fp, 0, SEEK_END);
        size_t size = (size_t)ftell(fp);
        fseek(fp, 0, SEEK_SET);
        uint8_t *orig = malloc(size), *buf = malloc(size);
        assert_int_equal(fread(orig, 1, size, fp), size);
        fclose(fp);
        int ok = 0, bad = 0;
        for (int t = 0; t < 60; t++) {
            memcpy(buf, orig, size);
            size_t n = size;
            for (int k = 0; k < 1 + t % 4; k++) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                buf[x % size] ^= (uint8_t)(1u << (x >> 40) % 8);
            }
            if (t % 3 == 0) n = (size_t)(x >> 20) % size;
            mg_image img;
            mg_decode_opts o;
            mg_decode_opts_default(&o);
            o.allow_truncated = t % 2;
            o.min_w = t % 5 ? 0 : 20;
            if (mg_image_decode_mem(buf, n, &o, &img, NULL) == MG_OK) {
                ok++;
                assert_true(img.w > 0 && img.h > 0);
                mg_image_free(&img);
            } else {
                bad++;
            }
        }
        printf("%-16s corrupted: %d decoded, %d refused\n", names[f], ok, bad);
        free(orig);
        free(buf);
    }
}

int main(void) {
    if (mg_test_oracle_unavailable()) return MG_TEST_SKIP;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_formats),
        cmocka_unit_test(test_dct_scaling),
        cmocka_unit_test(test_exif_orientation),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_corruption_never_crashes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
