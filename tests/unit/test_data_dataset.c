/* test_data_dataset.c: dataset sources: the ImageNet folder scan (torchvision ImageFolder order:
 * classes and files sorted by code point, sub-folders walked in sorted order, extensions
 * case-insensitive), the scan cache, list files (labelled / unlabelled / inconsistent), IDX files,
 * and the errors for missing or empty folders. Expected orders are worked out by hand. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fileio.h"
#include "mg_test.h"
#include "multigrain/data.h"

static char g_root[1024];

static void put(const char *rel, const char *text) {
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", g_root, rel);
    char *slash = strrchr(path, '/');
    *slash = 0;
    mg_assert_ok(mg_dir_create(path));
    *slash = '/';
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (text) fputs(text, f);
    fclose(f);
}

static int setup(void **state) {
    (void)state;
    snprintf(g_root, sizeof g_root, "%s/dataset_%d", mg_test_tmp_dir(), (int)getpid());
    put("tree/b/img.jpeg", "x");
    put("tree/a/9.jpg", "x");
    put("tree/a/10.jpg", "x");
    put("tree/a/A.PNG", "x");
    put("tree/a/notes.txt", "x");
    put("tree/a/sub/x.jpg", "x");
    put("tree/C/z.png", "x");
    put("tree/b/\xff\xfe.jpg", "x"); /* not UTF-8: kept (as bytes) with a warning */
    char path[2048];
    snprintf(path, sizeof path, "%s/tree/d_empty", g_root);
    mg_assert_ok(mg_dir_create(path));
    snprintf(path, sizeof path, "%s/flat", g_root);
    mg_assert_ok(mg_dir_create(path));
    put("flat/loose.jpg", "x");
    return 0;
}

static int teardown(void **state) {
    (void)state;
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_root);
    return system(cmd) == 0 ? 0 : -1;
}

static void check_tree(const mg_dataset *ds) {
    /* byte order: "C" < "a" < "b" < "d_empty" (an empty class keeps its index) */
    assert_int_equal(ds->n_classes, 4);
    assert_string_equal(ds->class_names[0], "C");
    assert_string_equal(ds->class_names[1], "a");
    assert_string_equal(ds->class_names[2], "b");
    assert_string_equal(ds->class_names[3], "d_empty");
    const char *paths[7] = {"C/z.png", "a/10.jpg", "a/9.jpg", "a/A.PNG", "a/sub/x.jpg", "b/img.jpeg", "b/\xff\xfe.jpg"};
    const int labels[7] = {0, 1, 1, 1, 1, 2, 2};
    assert_int_equal(ds->n, 7);
    for (int i = 0; i < 7; i++) {
        assert_string_equal(ds->paths[i], paths[i]);
        assert_int_equal(ds->labels[i], labels[i]);
    }
}

static void test_scan_order_and_cache(void **state) {
    (void)state;
    char root[2048], cache[2048];
    snprintf(root, sizeof root, "%s/tree", g_root);
    snprintf(cache, sizeof cache, "%s/scan.cache", g_root);
    mg_dataset ds;
    mg_assert_ok(mg_dataset_scan_folder(root, NULL, &ds));
    check_tree(&ds);
    char full[4096];
    mg_assert_ok(mg_dataset_path(&ds, 4, full, sizeof full));
    assert_non_null(strstr(full, "/tree/a/sub/x.jpg"));
    mg_dataset_free(&ds);
    mg_scan_opts o = {cache, true};
    mg_assert_ok(mg_dataset_scan_folder(root, &o, &ds)); /* writes the cache */
    check_tree(&ds);
    mg_dataset_free(&ds);
    assert_true(mg_path_exists(cache));
    mg_assert_ok(mg_dataset_scan_folder(root, &o, &ds)); /* reads it */
    check_tree(&ds);
    mg_dataset_free(&ds);
    /* a stale cache (class folder changed) is not used */
    put("tree/b/new.jpg", "x");
    mg_assert_ok(mg_dataset_scan_folder(root, &o, &ds));
    assert_int_equal(ds.n, 8);
    assert_string_equal(ds.paths[6], "b/new.jpg");
    mg_dataset_free(&ds);
    /* non-recursive scan skips the sub-folder */
    mg_scan_opts nr = {NULL, false};
    mg_assert_ok(mg_dataset_scan_folder(root, &nr, &ds));
    assert_int_equal(ds.n, 7);
    mg_dataset_free(&ds);
}

static void test_scan_errors(void **state) {
    (void)state;
    mg_dataset ds;
    char p[2048];
    snprintf(p, sizeof p, "%s/missing", g_root);
    assert_int_equal(mg_dataset_scan_folder(p, NULL, &ds), MG_ERR_IO);
    assert_non_null(strstr(mg_error_message(), "does not exist"));
    snprintf(p, sizeof p, "%s/flat", g_root);
    assert_int_equal(mg_dataset_scan_folder(p, NULL, &ds), MG_ERR_FORMAT);
    assert_non_null(strstr(mg_error_message(), "list file"));
}

static void test_list_files(void **state) {
    (void)state;
    put("lists/l1.txt", "# comment\nimgs/a.jpg 3\n\n/abs/b b.png\t0\r\nc.jpg   12  \n");
    char p[2048];
    snprintf(p, sizeof p, "%s/lists/l1.txt", g_root);
    mg_dataset ds;
    mg_assert_ok(mg_dataset_read_list(p, NULL, &ds));
    assert_int_equal(ds.n, 3);
    assert_string_equal(ds.paths[0], "imgs/a.jpg");
    assert_string_equal(ds.paths[1], "/abs/b b.png");
    assert_string_equal(ds.paths[2], "c.jpg");
    assert_int_equal(ds.labels[0], 3);
    assert_int_equal(ds.labels[1], 0);
    assert_int_equal(ds.labels[2], 12);
    assert_int_equal(ds.n_classes, 13);
    char full[4096];
    mg_assert_ok(mg_dataset_path(&ds, 0, full, sizeof full));
    assert_non_null(strstr(full, "/lists/imgs/a.jpg")); /* relative to the list's folder */
    mg_assert_ok(mg_dataset_path(&ds, 1, full, sizeof full));
    assert_string_equal(full, "/abs/b b.png");
    mg_dataset_free(&ds);
    /* unlabelled retrieval list; the root argument overrides the list folder */
    put("lists/l2.txt", "q/holiday 100000.jpg\nq/x.jpg\n");
    snprintf(p, sizeof p, "%s/lists/l2.txt", g_root);
    mg_assert_ok(mg_dataset_read_list(p, "/data", &ds));
    assert_int_equal(ds.n, 2);
    assert_null(ds.labels);
    mg_assert_ok(mg_dataset_path(&ds, 1, full, sizeof full));
    assert_string_equal(full, "/data/q/x.jpg");
    mg_dataset_free(&ds);
    /* the first line decides; a labelled list with a missing label is an error naming the line */
    put("lists/l3.txt", "a.jpg 1\nb.jpg\n");
    snprintf(p, sizeof p, "%s/lists/l3.txt", g_root);
    assert_int_equal(mg_dataset_read_list(p, NULL, &ds), MG_ERR_FORMAT);
    assert_non_null(strstr(mg_error_message(), "l3.txt:2"));
    put("lists/l4.txt", "# nothing\n\n");
    snprintf(p, sizeof p, "%s/lists/l4.txt", g_root);
    assert_int_equal(mg_dataset_read_list(p, NULL, &ds), MG_ERR_FORMAT);
}

static void write_bytes(const char *rel, const uint8_t *b, size_t n) {
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", g_root, rel);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
}

static void test_idx(void **state) {
    (void)state;
    /* 3 images of 2x4 (h=2, w=4) and 3 labels */
    uint8_t img[16 + 24] = {0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 4};
    for (int i = 0; i < 24; i++) img[16 + i] = (uint8_t)(i * 10);
    uint8_t lab[8 + 3] = {0, 0, 8, 1, 0, 0, 0, 3, 9, 0, 4};
    write_bytes("imgs.idx", img, sizeof img);
    write_bytes("labs.idx", lab, sizeof lab);
    write_bytes("short.idx", lab, sizeof lab - 1);
    char pi[2048], pl[2048], ps[2048];
    snprintf(pi, sizeof pi, "%s/imgs.idx", g_root);
    snprintf(pl, sizeof pl, "%s/labs.idx", g_root);
    snprintf(ps, sizeof ps, "%s/short.idx", g_root);
    mg_dataset ds;
    mg_assert_ok(mg_dataset_read_idx(pi, pl, &ds));
    assert_int_equal(ds.n, 3);
    assert_int_equal(ds.n_classes, 10);
    assert_int_equal(ds.labels[0], 9);
    mg_image im;
    mg_assert_ok(mg_dataset_decode(&ds, 1, NULL, &im));
    assert_int_equal(im.w, 4);
    assert_int_equal(im.h, 2);
    /* image 1, row 1, col 2 = byte 8 + 6 = 14 -> 140, replicated to RGB */
    const uint8_t *px = im.data + im.stride + 3 * 2;
    assert_int_equal(px[0], 140);
    assert_int_equal(px[1], 140);
    assert_int_equal(px[2], 140);
    mg_image_free(&im);
    /* the loader reads IDX images from memory: unshuffled test transform, s = 2 */
    mg_loader_cfg lc;
    mg_loader_cfg_default(&lc, false);
    lc.threads = 2;
    lc.transform.size = 2;
    lc.sampler.batch = 2;
    mg_loader *ld;
    mg_assert_ok(mg_loader_init(&ld, &ds, &lc));
    mg_assert_ok(mg_loader_start_epoch(ld, 0));
    const mg_batch *b;
    int64_t seen = 0;
    while (mg_loader_next(ld, &b) == MG_OK && b) {
        for (int i = 0; i < b->n; i++, seen++) {
            assert_int_equal(b->instance[i], seen);
            assert_int_equal(b->labels[i], ds.labels[seen]);
            /* grey input: the three normalised planes satisfy x_c * std_c + mean_c equal */
            float r = b->images[(size_t)i * 12] * 0.229f + 0.485f, g = b->images[(size_t)i * 12 + 4] * 0.224f + 0.456f;
            assert_true(r - g < 1e-5f && g - r < 1e-5f);
        }
    }
    assert_int_equal(seen, 3);
    mg_loader_free(ld);
    mg_dataset_free(&ds);
    assert_int_equal(mg_dataset_read_idx(pi, ps, &ds), MG_ERR_FORMAT);
    assert_int_equal(mg_dataset_read_idx(pl, pi, &ds), MG_ERR_FORMAT);
}

/* Debian's dataset-fashion-mnist, when installed: the 10k test set has 1000 images of each of the
 * 10 classes (published dataset facts), 28x28. Skipped when the package is absent. */
static void test_fashion_mnist(void **state) {
    (void)state;
    const char *dir = "/usr/share/datasets/fashion-mnist";
    char gi[1200], gl[1200], ri[1200], rl[1200], cmd[5000];
    snprintf(gi, sizeof gi, "%s/t10k-images-idx3-ubyte.gz", dir);
    snprintf(gl, sizeof gl, "%s/t10k-labels-idx1-ubyte.gz", dir);
    if (!mg_path_exists(gi) || !mg_path_exists(gl)) skip();
    mg_dataset ds;
    assert_int_equal(mg_dataset_read_idx(gi, gl, &ds), MG_ERR_UNSUPPORTED); /* gzip: clear refusal */
    assert_non_null(strstr(mg_error_message(), "zcat"));
    snprintf(ri, sizeof ri, "%s/fm_images.idx", g_root);
    snprintf(rl, sizeof rl, "%s/fm_labels.idx", g_root);
    snprintf(cmd, sizeof cmd, "zcat '%s' > '%s' && zcat '%s' > '%s'", gi, ri, gl, rl);
    if (system(cmd) != 0) skip();
    mg_assert_ok(mg_dataset_read_idx(ri, rl, &ds));
    assert_int_equal(ds.n, 10000);
    assert_int_equal(ds.idx_w, 28);
    assert_int_equal(ds.idx_h, 28);
    assert_int_equal(ds.n_classes, 10);
    int count[10] = {0};
    for (int64_t i = 0; i < ds.n; i++) count[ds.labels[i]]++;
    for (int k = 0; k < 10; k++) assert_int_equal(count[k], 1000);
    mg_dataset_free(&ds);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scan_order_and_cache),
        cmocka_unit_test(test_scan_errors),
        cmocka_unit_test(test_list_files),
        cmocka_unit_test(test_idx),
        cmocka_unit_test(test_fashion_mnist),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
