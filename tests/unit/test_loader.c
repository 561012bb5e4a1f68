/* test_loader.c: the threaded loader on a generated folder: identical batches for 1 and 2 worker
 * threads with the same seed, labels/instance ids consistent with the sampler stream, and the
 * bad-file policy (truncated JPEG, text file named .jpg, zero-byte file: logged, counted, replaced;
 * an error once more than max_bad are bad). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <turbojpeg.h>
#include <unistd.h>

#include "core/fileio.h"
#include "mg_test.h"
#include "multigrain/data.h"

static char g_root[1024];

static mg_image synth(int w, int h, int seed) {
    mg_image img;
    mg_assert_ok(mg_image_alloc(&img, w, h));
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = img.data + (size_t)y * img.stride + 3 * x;
            p[0] = (uint8_t)(x * 3 + seed * 40);
            p[1] = (uint8_t)(y * 5 + seed * 17);
            p[2] = (uint8_t)((x ^ y) + seed);
        }
    return img;
}

static void write_jpeg(const char *path, const mg_image *img, size_t keep_bytes) {
    tjhandle tj = tjInitCompress();
    unsigned char *buf = NULL;
    unsigned long size = 0;
    assert_int_equal(tjCompress2(tj, img->data, img->w, img->stride, img->h, TJPF_RGB, &buf, &size, TJSAMP_420, 90, 0), 0);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    size_t n = keep_bytes && keep_bytes < size ? keep_bytes : size;
    assert_int_equal(fwrite(buf, 1, n, f), n);
    fclose(f);
    tjFree(buf);
    tjDestroy(tj);
}

static void put(const char *rel, const char *text) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", g_root, rel);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (text) fputs(text, f);
    fclose(f);
}

static int setup(void **state) {
    (void)state;
    snprintf(g_root, sizeof g_root, "%s/loader_%d", mg_test_tmp_dir(), (int)getpid());
    const char *cls[3] = {"a_cls", "b_cls", "c_cls"};
    char path[4096];
    int k = 0;
    for (int c = 0; c < 3; c++) {
        snprintf(path, sizeof path, "%s/%s", g_root, cls[c]);
        if (mg_dir_create(path) != MG_OK) return -1;
        for (int i = 0; i < 4; i++, k++) {
            mg_image img = synth(40 + 7 * k, 30 + 5 * (k % 4), k);
            snprintf(path, sizeof path, "%s/%s/img%d.%s", g_root, cls[c], i, i % 2 ? "png" : "jpg");
            if (i % 2) mg_assert_ok(mg_image_write_png(path, &img));
            else write_jpeg(path, &img, 0);
            mg_image_free(&img);
        }
    }
    /* bad files: sorted names put them after img0..img3 in their class */
    mg_image img = synth(64, 48, 99);
    snprintf(path, sizeof path, "%s/a_cls/z_truncated.jpg", g_root);
    write_jpeg(path, &img, 300);
    mg_image_free(&img);
    put("b_cls/z_text.jpg", "hello, I am not a JPEG\n");
    put("c_cls/z_empty.JPG", NULL);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_root);
    return system(cmd) == 0 ? 0 : -1;
}

typedef struct run_out {
    float *images;
    int32_t *labels;
    int64_t *inst, *pos;
    int64_t n;
} run_out;

static mg_status run_epoch(mg_dataset *ds, int threads, int prefetch, uint64_t epoch, run_out *o) {
    mg_loader_cfg c;
    mg_loader_cfg_default(&c, true);
    c.threads = threads;
    c.prefetch = prefetch;
    c.transform.size = 24;
    c.sampler.batch = 5;
    c.sampler.reps = 3;
    c.sampler.len_factor = 2.0;
    c.sampler.seed = 7;
    mg_loader *ld;
    MG_TRY(mg_loader_init(&ld, ds, &c));
    mg_status st = mg_loader_start_epoch(ld, epoch);
    size_t per = 3 * 24 * 24, cap = (size_t)ds->n * 2;
    memset(o, 0, sizeof *o);
    o->images = malloc(sizeof(float) * per * cap);
    o->labels = malloc(sizeof(int32_t) * cap);
    o->inst = malloc(sizeof(int64_t) * cap);
    o->pos = malloc(sizeof(int64_t) * cap);
    const mg_batch *b;
    int64_t nb = 0;
    while (st == MG_OK && (st = mg_loader_next(ld, &b)) == MG_OK && b) {
        assert_int_equal(b->index, nb);
        nb++;
        for (int i = 0; i < b->n; i++, o->n++) {
            memcpy(o->images + per * o->n, b->images + per * i, per * sizeof(float));
            o->labels[o->n] = b->labels[i];
            o->inst[o->n] = b->instance[i];
            o->pos[o->n] = b->position[i];
        }
    }
    if (st == MG_OK) assert_int_equal(nb, mg_loader_num_batches(ld));
    mg_loader_free(ld);
    return st;
}

static void run_free(run_out *o) {
    free(o->images);
    free(o->labels);
    free(o->inst);
    free(o->pos);
}

static void test_threads_identical_and_bad_files(void **state) {
    (void)state;
    mg_dataset ds;
    mg_assert_ok(mg_dataset_scan_folder(g_root, NULL, &ds));
    assert_int_equal(ds.n, 15);
    assert_int_equal(ds.n_classes, 3);
    run_out a, b, c;
    mg_assert_ok(run_epoch(&ds, 1, 1, 3, &a));
    /* the three bad files were met (every index appears with f = 2, m = 3? not necessarily all):
     * whatever was met is counted once and never used */
    int64_t bad_after_a = ds.n_bad;
    mg_assert_ok(run_epoch(&ds, 2, 3, 3, &b));
    mg_assert_ok(run_epoch(&ds, 3, 2, 4, &c));
    assert_int_equal(a.n, 30);
    assert_int_equal(b.n, a.n);
    assert_memory_equal(a.images, b.images, sizeof(float) * 3 * 24 * 24 * (size_t)a.n);
    assert_memory_equal(a.labels, b.labels, sizeof(int32_t) * (size_t)a.n);
    assert_memory_equal(a.inst, b.inst, sizeof(int64_t) * (size_t)a.n);
    assert_true(memcmp(a.images, c.images, sizeof(float) * 3 * 24 * 24 * (size_t)a.n) != 0); /* other epoch */
    for (int64_t i = 0; i < a.n; i++) {
        assert_int_equal(a.pos[i], i);
        assert_int_equal(a.labels[i], ds.labels[a.inst[i]]);
        assert_int_equal(ds.bad[a.inst[i]], 0);
        char path[4096];
        mg_assert_ok(mg_dataset_path(&ds, a.inst[i], path, sizeof path));
        assert_null(strstr(path, "/z_"));
    }
    /* copies of one image are augmented differently (different stream positions) */
    assert_true(memcmp(a.images, a.images + 3 * 24 * 24, sizeof(float) * 3 * 24 * 24) != 0);
    /* bad-file accounting: flagged files are exactly the z_* ones */
    int64_t flagged = 0;
    for (int64_t i = 0; i < ds.n; i++) {
        char path[4096];
        mg_assert_ok(mg_dataset_path(&ds, i, path, sizeof path));
        assert_int_equal(ds.bad[i] != 0, strstr(path, "/z_") != NULL && ds.bad[i]);
        flagged += ds.bad[i];
        if (ds.bad[i]) assert_non_null(strstr(path, "/z_"));
    }
    assert_int_equal(flagged, ds.n_bad);
    assert_true(bad_after_a >= 1 && ds.n_bad <= 3);
    run_free(&a);
    run_free(&b);
    run_free(&c);
    mg_dataset_free(&ds);
}

static void test_max_bad_exceeded(void **state) {
    (void)state;
    mg_dataset ds;
    mg_assert_ok(mg_dataset_scan_folder(g_root, NULL, &ds));
    ds.max_bad = 0;
    /* unshuffled, f = 1, m = 1: every file is visited, so the first bad one trips the limit */
    mg_loader_cfg c;
    mg_loader_cfg_default(&c, true);
    c.threads = 2;
    c.transform.size = 16;
    c.sampler.batch = 4;
    c.sampler.shuffle = false;
    mg_loader *ld;
    mg_assert_ok(mg_loader_init(&ld, &ds, &c));
    mg_assert_ok(mg_loader_start_epoch(ld, 0));
    const mg_batch *b;
    mg_status st;
    while ((st = mg_loader_next(ld, &b)) == MG_OK && b) {}
    assert_int_equal(st, MG_ERR_FORMAT);
    assert_non_null(strstr(mg_error_message(), "bad images"));
    mg_loader_free(ld);
    assert_true(ds.n_bad >= 1); /* workers ahead of the consumer may meet more before it stops */
    mg_dataset_free(&ds);
    /* with the default limit every bad file is counted once over a full pass */
    mg_assert_ok(mg_dataset_scan_folder(g_root, NULL, &ds));
    mg_assert_ok(mg_loader_init(&ld, &ds, &c));
    mg_assert_ok(mg_loader_start_epoch(ld, 0));
    int64_t seen = 0;
    while ((st = mg_loader_next(ld, &b)) == MG_OK && b) seen += b->n;
    mg_assert_ok(st);
    assert_int_equal(seen, 15);
    assert_int_equal(ds.n_bad, 3);
    /* restarting an epoch mid-way is allowed */
    mg_assert_ok(mg_loader_start_epoch(ld, 1));
    mg_assert_ok(mg_loader_next(ld, &b));
    assert_non_null(b);
    mg_loader_free(ld);
    mg_dataset_free(&ds);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threads_identical_and_bad_files),
        cmocka_unit_test(test_max_bad_exceeded),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
